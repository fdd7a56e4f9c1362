/** @stolon-ts/cluster: the cluster model, spec rules and the sentinel's pure decisions. No I/O. */
export * from './errors.js';
export * from './duration.js';
export * from './types.js';
export { DEFAULT_SPEC, validateSpec, resolveSpec, withDefaults, validateSpecUpdate, mergePatch } from './spec.js';
export { parseClusterData, repairClusterData, newClusterData, serializeClusterData, type ClusterDataRepair } from './clusterdata.js';
export { infoIssues, isFailsafeEpisode } from './clusterdata-schema.js';
export { compareFailoverCandidates, findBestCandidates, ineligibility, type Candidate, type EligibilityOptions } from './candidates.js';
export { decide, emptyMemory, isMasterType, REPORTED_POSITION_KEYS, type DecideInput, type DecideOutput, type SentinelMemory } from './decide.js';
export { FAKE_SYNC_STANDBY } from './sync.js';
export { SCHEDULED_SWITCHOVER_MAX_LATE_MS, SWITCHOVER_BECAME_FAILOVER, scheduleState } from './switchover.js';
export { FAILSAFE_HISTORY_LIMIT } from './trace.js';
export { STOLON_TS_VERSION } from './version.js';
export { isCidr } from './cidr.js';
export {
  DEFAULT_BACKUP,
  backupStanza,
  pgbackrestArgs,
  pgbackrestRepoOptions,
  pgbackrestRepoSettings,
  renderPgbackrestConf,
  type PgbackrestCommand,
} from './backup.js';
export {
  BACKUP_CATALOG_LIMIT,
  BACKUP_START_WINDOW_MS,
  backupCatalogFromInfo,
  chooseBackupKeeper,
  keeperBackupCatalog,
  keeperBackupRun,
  keeperBackupServer,
  outstandingBackup,
  type BackupChoice,
  type OutstandingBackup,
} from './backup-request.js';
export { instancesDown, planRestart, restartPending, restartRequested, restartWorthy, type RestartPlan, type RestartPlanOptions } from './restart.js';
export { restoreTargetOf, type RestoreTarget } from './restore-target.js';
