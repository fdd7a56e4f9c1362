/**
 * @stolon-ts/stolonctl: the admin CLI's subcommands as functions, so they run in-process (tests,
 * other tools) exactly as the `stolonctl` bin runs them. Each takes a {@link CommandContext}
 * (store, output sinks, stdin) and resolves to an exit code; none throws for expected failures.
 */
export {
  CommandError,
  ENV_PREFIX,
  ExitCode,
  loadClusterData,
  runCommand,
  storeFromFlags,
  type CommandContext,
  type ExitCodeValue,
  type LoadedClusterData,
  type StoreSetup,
} from './context.js';
export { UNPARSEABLE_CONNINFO, redactConninfo } from './conninfo.js';
export { DEFAULT_INIT_SPEC, runInit, type InitOptions } from './init.js';
export { PROMOTE_ATTEMPTS, runPromote, type PromoteOptions } from './promote.js';
export { runSpec, type SpecOptions } from './spec.js';
export {
  STATUS_FORMATS,
  buildStatus,
  describeDiscardedWal,
  formatLsn,
  renderStatusTable,
  runStatus,
  statusJson,
  type KeeperRow,
  type ProxyRow,
  type SentinelRow,
  type StatusFormat,
  type StatusInputs,
  type StatusOptions,
  type StatusReport,
  type TreeNode,
} from './status.js';
export { UPDATE_ATTEMPTS, runUpdate, type UpdateOptions } from './update.js';
