/**
 * The keeper's Prometheus metrics (`GET /metrics` on `--metrics-listen-address`), registered on
 * the daemon's registry (`createDaemonMetrics` in @stolon-ts/common). Every gauge is computed at
 * scrape time from the facts the keeper cached in its last pass ({@link KeeperFacts}): a scrape
 * runs no SQL and reads nothing from the store. Names keep Stolon's where Stolon had the metric
 * (`stolon_keeper_local_role`, `stolon_keeper_target_role`, `stolon_keeper_needs_restart`,
 * `stolon_keeper_needs_reload`, `stolon_keeper_clusterdata_last_valid_update_seconds`,
 * `stolon_keeper_last_sync_success_seconds`, `stolon_keeper_sleep_interval`); docs/metrics.md
 * lists every one with its type, labels and meaning.
 * @see Stolon's cmd/keeper/cmd/keeper.go (its keeper metrics)
 */
import { DEFAULT_BACKUP, DEFAULT_SPEC, parseDurationMs, resolveSpec } from '@stolon-ts/cluster';
import { promClient } from '@stolon-ts/common';
import type { Registry } from 'prom-client';
import { roleFacts, type MetricRole, type RoleFacts } from './role-checks.js';
import type { KeeperErrorKind, KeeperFacts } from './types.js';

/** Buckets of `stolon_keeper_pass_duration_seconds`: a steady pass takes ms, a promotion or a start seconds. */
const PASS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

const ROLES: readonly MetricRole[] = ['primary', 'standby', 'none'];
const ERROR_KINDS: readonly KeeperErrorKind[] = ['store', 'pass', 'task'];

/** What a scrape reads: the cached facts and this keeper's uid. */
interface Source {
  readonly facts: () => KeeperFacts;
  readonly keeperUid: string;
}

/** A gauge without labels whose value is computed at scrape time; `undefined` reads as 0. */
function computed(registry: Registry, name: string, help: string, value: (f: KeeperFacts, r: RoleFacts) => number | undefined, src: Source): void {
  new (promClient().Gauge)({
    name,
    help,
    registers: [registry],
    collect() {
      const f = src.facts();
      this.set(value(f, roleFacts(f, src.keeperUid)) ?? 0);
    },
  });
}

const flag = (b: boolean | undefined): number => (b === true ? 1 : 0);
const seconds = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : ms / 1000);

/** The LSN gauges: each only for the role it belongs to, else 0. */
function registerWal(registry: Registry, src: Source): void {
  computed(registry, 'stolon_keeper_timeline', 'Timeline of the local PostgreSQL as last observed (0: unknown)', (f) => f.obs?.timelineId, src);
  computed(
    registry,
    'stolon_keeper_wal_current_lsn_bytes',
    'Primary only: pg_current_wal_lsn() as a byte position, as of the last pass (0 otherwise)',
    (f, r) => (r.localRole === 'primary' ? f.obs?.xLogPos : undefined),
    src,
  );
  computed(
    registry,
    'stolon_keeper_wal_receive_lsn_bytes',
    'Standby only: pg_last_wal_receive_lsn() as a byte position, as of the last pass (0 otherwise)',
    (f, r) => (r.localRole === 'standby' ? f.obs?.receivedXLogPos : undefined),
    src,
  );
  computed(
    registry,
    'stolon_keeper_wal_replay_lsn_bytes',
    'Standby only: pg_last_wal_replay_lsn() as a byte position, as of the last pass (0 otherwise)',
    (f, r) => (r.localRole === 'standby' ? f.obs?.replayedXLogPos : undefined),
    src,
  );
  computed(
    registry,
    'stolon_keeper_replication_lag_bytes',
    "Standby only: the primary's WAL position in clusterdata minus this standby's replay position, in bytes, at least 0",
    (_f, r) => r.lagBytes,
    src,
  );
  computed(
    registry,
    'stolon_keeper_replication_lag_seconds',
    'Standby only: 0 when caught up with the primary position clusterdata holds, else the age of the last replayed commit at the last pass',
    (_f, r) => r.lagSeconds,
    src,
  );
}

/** The role gauges, one series per role label value. */
function registerRoles(registry: Registry, src: Source): void {
  const labelled = (name: string, help: string, pick: (r: RoleFacts) => MetricRole): void => {
    new (promClient().Gauge)({
      name,
      help,
      labelNames: ['role'] as const,
      registers: [registry],
      collect() {
        const role = pick(roleFacts(src.facts(), src.keeperUid));
        for (const r of ROLES) {
          this.set({ role: r }, r === role ? 1 : 0);
        }
      },
    });
  };
  labelled('stolon_keeper_local_role', 'The role the local PostgreSQL is in (1 for the current one), as last observed', (r) => r.localRole);
  labelled('stolon_keeper_target_role', 'The role clusterdata gives this keeper\'s DB (1 for it; none: no DB assigned)', (r) => r.targetRole);
}

/** The state flags and timestamps. */
function registerState(registry: Registry, src: Source): void {
  computed(registry, 'stolon_keeper_healthy', 'The keeper\'s own health as it publishes it (postgresState.healthy): 1 or 0', (f) => flag(f.view?.healthy), src);
  computed(registry, 'stolon_keeper_postgres_up', 'The local PostgreSQL runs and answered the last probe: 1 or 0', (f) => flag(f.obs?.running === true && f.obs.error === undefined), src);
  computed(registry, 'stolon_keeper_fenced', 'The fencer shut the local PostgreSQL down and it has not run since: 1 or 0', (f) => flag(f.view?.fenced), src);
  computed(registry, 'stolon_keeper_needs_restart', 'PostgreSQL has parameters waiting for a restart (pg_settings.pending_restart): 1 or 0', (f) => flag((f.obs?.pendingRestart.length ?? 0) > 0), src);
  computed(registry, 'stolon_keeper_needs_reload', 'A changed configuration was written and not reloaded yet: 1 or 0', (f) => flag(f.view?.needsReload), src);
  computed(registry, 'stolon_keeper_config_rejected', 'The spec\'s pgParameters or pgHBA were rejected, or PostgreSQL runs on its last good configuration: 1 or 0', (f) => flag(f.view?.configRejected), src);
  computed(registry, 'stolon_keeper_synchronous_standby', 'This standby is in the primary\'s synchronous set and known in sync (clusterdata): 1 or 0', (_f, r) => flag(r.synchronousStandby), src);
  computed(registry, 'stolon_keeper_synchronous_standbys', 'Primary only: its synchronous standbys known in sync (clusterdata)', (_f, r) => r.synchronousStandbys, src);
  computed(registry, 'stolon_keeper_synchronous_standbys_wanted', 'Primary only: the synchronous standbys it waits for (synchronous_standby_names, fake standby excluded)', (_f, r) => r.synchronousStandbysWanted, src);
  computed(registry, 'stolon_keeper_resync_done_bytes', 'Bytes pg_basebackup copied so far while this keeper resyncs (0 when none)', (f) => f.view?.resync?.doneBytes, src);
  computed(registry, 'stolon_keeper_resync_total_bytes', 'The source\'s estimated size while this keeper resyncs with pg_basebackup (0 when none)', (f) => f.view?.resync?.totalBytes, src);
  computed(registry, 'stolon_keeper_last_error_timestamp_seconds', 'Time of the last error of any kind, seconds since the epoch (0: none yet)', (f) => seconds(f.lastErrorWallMs), src);
  computed(
    registry,
    'stolon_keeper_clusterdata_last_valid_update_seconds',
    'Time of the last pass that read valid clusterdata and published, seconds since the epoch (Stolon\'s)',
    (f) => seconds(f.lastValidCdWallMs),
    src,
  );
  computed(registry, 'stolon_keeper_last_sync_success_seconds', 'Time of the last pass that succeeded, seconds since the epoch (Stolon\'s)', (f) => seconds(f.lastSuccessWallMs), src);
  computed(
    registry,
    'stolon_keeper_sleep_interval',
    'The spec\'s sleepInterval the keeper passes by, in seconds (Stolon\'s)',
    (f) => seconds(f.view?.cd === undefined ? parseDurationMs(DEFAULT_SPEC.sleepInterval) : resolveSpec(f.view.cd.cluster.spec).sleepIntervalMs),
    src,
  );
  new (promClient().Counter)({
    name: 'stolon_keeper_errors_total',
    help: 'Errors by kind: store (a pass failed before it could publish), pass (a pass failed after it), task (a background task failed)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const errors = src.facts().errors;
      this.reset();
      for (const kind of ERROR_KINDS) {
        this.inc({ kind }, errors[kind]);
      }
    },
  });
}

/** A counter whose value is PostgreSQL's own count, set at scrape time (it drops when its statistics are reset, which Prometheus reads as a counter reset). */
function mirroredCounter(registry: Registry, name: string, help: string, value: (f: KeeperFacts) => number | undefined, src: Source): void {
  new (promClient().Counter)({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(value(src.facts()) ?? 0);
    },
  });
}

/**
 * WAL archiving, from the last observation's `pg_stat_archiver` and `pg_wal/archive_status` (0
 * while PostgreSQL does not run), whatever runs `archive_command` (docs/architecture.md, "How
 * archiving works").
 */
function registerArchive(registry: Registry, src: Source): void {
  const arch = (f: KeeperFacts) => (f.obs?.running === true ? f.obs.archiver : undefined);
  mirroredCounter(registry, 'stolon_keeper_archive_archived_total', 'WAL files archived successfully (pg_stat_archiver.archived_count)', (f) => arch(f)?.archivedCount, src);
  mirroredCounter(registry, 'stolon_keeper_archive_failed_total', 'Failed attempts to archive a WAL file (pg_stat_archiver.failed_count)', (f) => arch(f)?.failedCount, src);
  computed(registry, 'stolon_keeper_archive_last_archived_timestamp_seconds', 'Time of the last WAL file archived, seconds since the epoch (0: none)', (f) => seconds(arch(f)?.lastArchivedAtMs), src);
  computed(registry, 'stolon_keeper_archive_last_failed_timestamp_seconds', 'Time of the last failed archiving attempt, seconds since the epoch (0: none)', (f) => seconds(arch(f)?.lastFailedAtMs), src);
  computed(
    registry,
    'stolon_keeper_archive_failing',
    'The last archiving attempt failed (a failure newer than the last success): 1 or 0',
    (f) => {
      const a = arch(f);
      return flag(a?.lastFailedAtMs !== undefined && a.lastFailedAtMs > (a.lastArchivedAtMs ?? 0));
    },
    src,
  );
  computed(registry, 'stolon_keeper_archive_ready_files', 'WAL files waiting to be archived (pg_wal/archive_status/*.ready)', (f) => arch(f)?.readyCount, src);
  computed(registry, 'stolon_keeper_archive_ready_bytes', 'Bytes of the WAL files waiting to be archived', (f) => arch(f)?.readyBytes, src);
  computed(
    registry,
    'stolon_keeper_archive_backlog_warning',
    'The spec has a backup section and the WAL waiting to be archived is above backup.archiveWarnBytes: 1 or 0',
    (f) => {
      const backup = f.view?.cd?.cluster.spec.backup;
      return flag(backup !== undefined && (arch(f)?.readyBytes ?? 0) > (backup.archiveWarnBytes ?? DEFAULT_BACKUP.archiveWarnBytes));
    },
    src,
  );
}

/**
 * Registers every keeper metric on `registry`.
 * @param facts the keeper's cached facts (`KeeperStatus.facts`), read at every scrape; must be cheap
 * @param keeperUid this keeper's uid
 * @returns the hook that feeds `stolon_keeper_pass_duration_seconds` (`KeeperStatusOptions.onPassSettled`)
 */
export function registerKeeperMetrics(registry: Registry, facts: () => KeeperFacts, keeperUid: string): (seconds: number) => void {
  const src: Source = { facts, keeperUid };
  registerRoles(registry, src);
  registerWal(registry, src);
  registerState(registry, src);
  registerArchive(registry, src);
  const passes = new (promClient().Histogram)({
    name: 'stolon_keeper_pass_duration_seconds',
    help: 'Duration of the keeper\'s passes (observe, read clusterdata, publish, plan, act), in seconds',
    buckets: PASS_BUCKETS,
    registers: [registry],
  });
  return (s) => passes.observe(s);
}
