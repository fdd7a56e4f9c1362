/**
 * @stolon-ts/harness: the cross-process test harness (docs/design.md#the-harness): free ports,
 * temp dirs, the `waitFor` helper, child-process handles with guaranteed cleanup, a real etcd,
 * the Kubernetes API stand-in, the Consul HTTP API stand-in, a real Prometheus, a local S3 server (s3rver) and a plain
 * PostgreSQL instance for the backup tests and benchmarks.
 */
export { freePort } from './ports.js';
export { makeBackupTls, type BackupTlsFiles } from './backup-tls.js';
export { startS3Server, type S3ServerHandle, type StartS3ServerOptions } from './s3.js';
export {
  runAs,
  startPlainPostgres,
  type PlainPostgres,
  type PgIdentity,
  type RunAsResult,
  type StartPlainPostgresOptions,
} from './plain-postgres.js';
export { makeTempDir, removeDir } from './tmp.js';
export { npmPackagesLoaded } from './module-cache.js';
export { startRootVictim, type RootVictim, type VictimState } from './root-victim.js';
export { waitFor, waitUntilSteady, scaleTimeout, timeoutFactor, type WaitForOptions } from './wait.js';
export { startProcess, stopAll, livePids, childPids, type ProcessHandle, type StartProcessOptions } from './process.js';
export {
  startEtcd,
  startEtcdCluster,
  ETCD_BIN,
  type EtcdClusterHandle,
  type EtcdHandle,
  type StartEtcdClusterOptions,
  type StartEtcdOptions,
} from './etcd.js';
export { enableEtcdAuth, makeEtcdTestCerts, type EtcdTestCerts, type EtcdTestUser } from './etcd-security.js';
export {
  binPath,
  defaultTestStore,
  runNode,
  startLocalCluster,
  type CommandResult,
  type KeeperProc,
  type KubeIdentity,
  type LocalCluster,
  type LocalClusterOptions,
  type LocalClusterStore,
} from './cluster.js';
export { e2eCluster, type E2eCluster, type E2eClusterOptions, type FixtureHooks } from './fixture.js';
export { query } from './sql.js';
export {
  prometheusBinary,
  prometheusConfig,
  runPromtool,
  scrapeMetrics,
  startPrometheus,
  type PrometheusHandle,
  type PrometheusJob,
  type PromSample,
  type PromtoolResult,
  type StartPrometheusOptions,
} from './prometheus.js';
export { failoverEvents, waitKeepersConverged, type FailoverEventJson } from './converge.js';
export { startRelay, type RelayHandle } from './relay.js';
export {
  startKubeApiServerStandin,
  writeStandinKubeconfig,
  type KubeApiServerStandin,
  type KubeApiServerStandinOptions,
  type KubeObject,
  type KubeObjectMeta,
  type StandinError,
  type StandinLoggedRequest,
  type StandinRequest,
  type StandinResource,
  type StandinKubeconfigOptions,
  type StandinUnavailableMode,
  type StandinVerb,
} from './kube-apiserver-standin.js';
export {
  parseGoDuration,
  startConsulStandin,
  type ConsulFault,
  type ConsulKvEntry,
  type ConsulStandin,
  type ConsulStandinOptions,
} from './consul-standin.js';
// The chaos suite (docs/chaos.md).
export {
  MAX_FAILED,
  RECORDER_TABLES_SQL,
  Recorder,
  parseLsn,
  serverKey,
  type AckedWrite,
  type FailedWrite,
  type RecorderOptions,
  type ServerIdentity,
} from './chaos/recorder.js';
export {
  longestGap,
  lostBytesPastFork,
  missingWrites,
  parseTimelineHistory,
  percentile,
  primaryKeeperIndex,
  readClusterData,
  readPresentWrites,
  readTimelineHistory,
  rowKey,
  serverWindows,
  splitBrainWindows,
  unhealthyReason,
  waitHealthy,
  writesAfterDeposition,
  type HealthyResult,
  type Outage,
  type ServerWindow,
  type SplitBrainWindow,
  type TimelineSwitch,
  type WaitHealthyOptions,
} from './chaos/checker.js';
export {
  FAULTS,
  FAULT_NAMES,
  LONG_FORM_ONLY_FAULTS,
  crashPrimaryPostgres,
  killEtcdMember,
  killLeaderSentinelWithPrimary,
  killPrimaryNode,
  killProxy,
  partitionPrimary,
  zombiePrimaryKeeper,
  type ChaosTarget,
  type FaultDef,
  type FaultExpectation,
  type FaultName,
  type FaultOptions,
  type InjectedFault,
} from './chaos/faults.js';
export {
  NETNS_PREFIX,
  createChaosNetwork,
  netnsUnavailableReason,
  removeStaleNetworks,
  type ChaosNetwork,
  type CreateChaosNetworkOptions,
  type CutOptions,
  type NetnsNode,
} from './chaos/netns.js';
export { describeCycle, runFaultCycle, type CycleOptions, type CycleResult, type PhaseOffsets } from './chaos/cycle.js';
export { renderMarkdown, renderText, summarize, type FaultSummary } from './chaos/report.js';
export { startChaosEnv, type ChaosEnv, type ChaosEnvOptions } from './chaos/env.js';
export { FAST_PROFILE } from './chaos/profiles.js';
