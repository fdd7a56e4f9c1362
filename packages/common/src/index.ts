/** @stolon-ts/common: what the four programs share (flags, logger, ids, store from flags). */
export {
  COMMON_FLAGS,
  addFlags,
  baseYargs,
  envName,
  parseEndpoints,
  pickFlags,
  readSecret,
  type CommonConfig,
  type FlagSpec,
  type FlagTable,
  type StolonFlags,
  type StolonOnlyFlag,
} from './flags.js';
export { DAEMON_STOLON_FLAGS, STOLONCTL_STOLON_FLAGS } from './stolon-flags.js';
export { BUG_SENTENCE, REDACT_PATHS, createLogger, silentLogger, type Logger } from './logger.js';
export { monoMs, newBootUuid, newUid, nowIso } from './ids.js';
export { failpoint } from './failpoint.js';
export { storeFromConfig } from './store-config.js';
export { STALL_WARN_MS, exitOnConfigError, logConfiguration, runDaemon, watchEventLoopStalls, type DaemonHandle, type DaemonStatus } from './run.js';
export { describePassFailure, startPassLoop, stopOnce, withTimeout, type PassContext, type PassLoop, type PassLoopOptions, type PassResult } from './loop.js';
export { UNPARSEABLE_CONNINFO, redactConninfo } from './conninfo.js';
export {
  listenHttp,
  parseListenAddress,
  startStatusServer,
  statusListenOf,
  type CheckResult,
  type ListenAddress,
  type StatusChecks,
  type StatusServer,
} from './status-server.js';
export { createDaemonMetrics, promClient, type DaemonMetrics, type MetricsComponent } from './metrics.js';
export { PassTracker, loopLiveness, type LoopLimits, type LoopSnapshot } from './liveness.js';
export { MIN_MEMBER_TOKEN_LENGTH, bearerMatches, memberRequest, readMemberToken, type MemberFailsafeStatus, type MemberResponse } from './member.js';
