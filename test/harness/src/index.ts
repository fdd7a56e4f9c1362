/**
 * @stolon-ts/harness: the cross-process test harness (STYLE.md rules 18 and 19): free ports,
 * temp dirs, the `waitFor` helper, child-process handles with guaranteed cleanup, and a real etcd.
 */
export { freePort } from './ports.js';
export { makeTempDir, removeDir } from './tmp.js';
export { waitFor, scaleTimeout, timeoutFactor, type WaitForOptions } from './wait.js';
export { startProcess, stopAll, livePids, childPids, type ProcessHandle, type StartProcessOptions } from './process.js';
export { startEtcd, ETCD_BIN, type EtcdHandle, type StartEtcdOptions } from './etcd.js';
export {
  binPath,
  runNode,
  startLocalCluster,
  type CommandResult,
  type KeeperProc,
  type LocalCluster,
  type LocalClusterOptions,
} from './cluster.js';
export { query } from './sql.js';
export { startRelay, type RelayHandle } from './relay.js';
export {
  startKubeApiServerStandin,
  type KubeApiServerStandin,
  type KubeApiServerStandinOptions,
  type KubeObject,
  type KubeObjectMeta,
  type StandinError,
  type StandinRequest,
  type StandinResource,
  type StandinUnavailableMode,
} from './kube-apiserver-standin.js';
