/**
 * @stolon-ts/postgres: the PostgreSQL manager the keeper acts through (STYLE.md rule 12), and the
 * pure renderers of the files it owns in PGDATA.
 */
export type { ConnTarget, PgConfig, PgObservation, PostgresManager, StandbySettings } from './manager.js';
export { PgManager, type PgManagerOptions } from './pg-manager.js';
export {
  MANAGED_PARAMETERS,
  MAX_SAFE_LSN,
  buildConnInfo,
  defaultHbaLines,
  formatLsn,
  parseLsn,
  quoteParameter,
  renderHba,
  renderPgpassLine,
  renderPostgresqlConf,
  type RenderOptions,
} from './config.js';
export { SCRAM_ITERATIONS, scramSha256Verifier } from './scram.js';
