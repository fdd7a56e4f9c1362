/**
 * @stolon-ts/stolonctl: the admin CLI's subcommands as functions, so they run in-process (tests,
 * other tools) exactly as the `stolonctl` bin runs them. Each takes a {@link CommandContext}
 * (store, output sinks, stdin) and resolves to an exit code; none throws for expected failures.
 */
export {
  CAS_ATTEMPTS,
  CommandError,
  ENV_PREFIX,
  ExitCode,
  loadClusterData,
  requireKeeper,
  runCommand,
  storeFromFlags,
  updateClusterData,
  type ClusterDataChange,
  type CommandContext,
  type ExitCodeValue,
  type LoadedClusterData,
  type StoreSetup,
} from './context.js';
export {
  EVENTS_FORMATS,
  PHASES,
  buildEvents,
  describePhases,
  eventsJson,
  renderEventsTable,
  runEvents,
  viewEvent,
  type EventView,
  type EventsFormat,
  type EventsOptions,
  type EventsReport,
  type PhaseName,
} from './events.js';
export { runFailkeeper, type FailkeeperOptions } from './failkeeper.js';
export { DEFAULT_INIT_SPEC, runInit, type InitOptions } from './init.js';
export { runPause } from './pause.js';
export { PROMOTE_ATTEMPTS, runPromote, type PromoteOptions } from './promote.js';
export { runRemovekeeper, type RemovekeeperOptions } from './removekeeper.js';
export { runResume } from './resume.js';
export { runSpec, type SpecOptions } from './spec.js';
export {
  PAUSED_BANNER,
  STATUS_FORMATS,
  buildStatus,
  describeDiscardedWal,
  formatLsn,
  outageHeadline,
  renderOutage,
  renderStatusTable,
  runStatus,
  statusJson,
  type KeeperRow,
  type MemberAnswer,
  type OutageReport,
  type ProxyRow,
  type SentinelRow,
  type StatusFormat,
  type StatusInputs,
  type StatusOptions,
  type StatusReport,
  type TreeNode,
} from './status.js';
export {
  UPDATE_ATTEMPTS,
  patchSpec,
  runUpdate,
  writeSpec,
  type SpecWrite,
  type UpdateOptions,
} from './update.js';
export { runSwitchover, type SwitchoverOptions } from './switchover.js';
export { BACKUP_TYPES, runBackup, type BackupOptions } from './backup.js';
export { BACKUPS_FORMATS, formatBytes, runBackups, type BackupsFormat, type BackupsOptions } from './backups.js';
