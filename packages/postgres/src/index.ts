/**
 * @stolon-ts/postgres: the PostgreSQL manager the keeper acts through, and the pure renderers and
 * parsers of the files and tool output it deals with in PGDATA.
 */
export type {
  ArchiverObservation,
  BaseBackupOptions,
  BaseBackupProgress,
  ConnTarget,
  DataRestoreProgram,
  DbClusterState,
  PgConfig,
  PgObservation,
  PgSslFiles,
  PostgresManager,
  RecoveryConfig,
  RecoveryTarget,
  RewindResult,
  StandbySettings,
  SyncSlotsOptions,
  ToolResult,
  WriteConfigResult,
} from './manager.js';
export { PgManager, type PgManagerOptions } from './pg-manager.js';
export { osUserIds } from './pg-exec.js';
export { preloadPgLib } from './pg-lib.js';
export { DEFAULT_PG_BIN_DIR, resolvePgBinDir, type ResolvePgBinDirOptions } from './pg-bin.js';
export {
  MANAGED_PARAMETERS,
  MAX_SAFE_LSN,
  buildConnInfo,
  defaultHbaLines,
  expandDataRestoreCommand,
  formatLsn,
  parseBaseBackupProgress,
  parseClusterState,
  parseConfigErrors,
  parseControlData,
  parseLsn,
  parseRewindOutput,
  parseTimelineHistory,
  quoteParameter,
  recoveryParameters,
  renderHba,
  renderHbaLines,
  renderPgpassLine,
  renderPostgresqlConf,
  syncfsUsable,
  renderSynchronousStandbyNames,
  type ConfigProblem,
  type HbaOptions,
  type PeerSsl,
  type RenderOptions,
  type RewindOutput,
  type SynchronousStandbysSpec,
} from './config.js';
export { SCRAM_ITERATIONS, scramSha256Verifier } from './scram.js';
