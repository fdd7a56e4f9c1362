/**
 * The keeper's actions: one function per kind of step the planner (plan.ts) returns, each
 * driving PostgreSQL through the PostgresManager. The long ones (initdb, a point-in-time restore,
 * a resync by pg_rewind or pg_basebackup) start a background task and return at once.
 */
import { StolonError, errorMessage, parseClusterData, restartRequested, restartWorthy, restoreTargetOf, type ClusterData, type DB, type DiscardedWal } from '@stolon-ts/cluster';
import { failpoint, nowIso } from '@stolon-ts/common';
import type { DataRestoreProgram, PgConfig, PgObservation, RecoveryConfig } from '@stolon-ts/postgres';
import { PGBACKREST } from './archiving.js';
import { NO_DB } from './dbstate.js';
import { internalOnlyHba, type KeeperAction } from './plan.js';
import {
  configKey,
  describeDiscard,
  discardedRange,
  pitrRecovery,
  recoveryFor,
  slotsFor,
  slotsWantedIn,
  standbySettings,
  syncStandbyUids,
} from './pgconfig.js';
import { backupRestoreFor, chooseBackupSet, describeTarget, infoArgs, parseBackupInfo, restoreCommandArgs, type BackupRestore } from './restore.js';
import type { KeeperRuntime } from './runtime.js';

type Action<K extends KeeperAction['kind']> = Extract<KeeperAction, { kind: K }>;

/**
 * Runs one planned step. Background tasks are started, not awaited.
 * @returns whether the step changed something the keeper should report at once (PostgreSQL
 *   stopped, started, promoted, restarted or reconfigured, slots or the applied generation
 *   changed); false for a converge that found everything as wanted and for background tasks (they
 *   trigger a pass when they settle).
 */
export async function execute(rt: KeeperRuntime, action: KeeperAction, cd: ClusterData, obs: PgObservation): Promise<boolean> {
  switch (action.kind) {
    case 'wait':
    case 'refuse':
      return false;
    case 'stop-postgres':
      await rt.pg.stop('fast');
      return true;
    case 'switchover-stop':
      await switchoverStop(rt, action, cd);
      return true;
    case 'init-new':
      initNew(rt, action, cd);
      return false;
    case 'init-existing':
      await initExisting(rt, action, cd);
      return false;
    case 'init-pitr':
      initPitr(rt, action, cd);
      return false;
    case 'resync':
      resync(rt, action, cd, obs);
      return false;
    case 'converge':
      return converge(rt, action, cd, obs);
  }
}

/** The name of the background task an action starts, or undefined for actions that run in the pass. */
export function taskName(action: KeeperAction): string | undefined {
  switch (action.kind) {
    case 'init-new':
      return `initdb for db ${action.db.uid}`;
    case 'init-pitr':
      return `point-in-time restore of db ${action.db.uid}`;
    case 'resync':
      return `resync of db ${action.db.uid} from db ${action.from.dbUid}`;
    case 'wait':
    case 'refuse':
    case 'stop-postgres':
    case 'switchover-stop':
    case 'init-existing':
    case 'converge':
      return undefined;
  }
}

/** Planned switchover: a clean (fast) shutdown, then the DB's generation is recorded as applied. */
async function switchoverStop(rt: KeeperRuntime, action: Action<'switchover-stop'>, cd: ClusterData): Promise<void> {
  await rt.pg.stop('fast');
  if (rt.local.generation !== action.db.generation) {
    await rt.setLocal({ ...rt.local, generation: action.db.generation, clusterUID: cd.cluster.uid });
  }
}

/** initdb of a new DB into a wiped data directory (background task). */
function initNew(rt: KeeperRuntime, action: Action<'init-new'>, cd: ClusterData): void {
  const { db } = action;
  rt.tasks.run(taskName(action) ?? '', async () => {
    await rt.pg.stop('immediate');
    await rt.setLocal(NO_DB);
    await rt.pg.removeData();
    const nc = db.spec.newConfig ?? {};
    await rt.pg.init({
      ...(nc.locale !== undefined ? { locale: nc.locale } : {}),
      ...(nc.encoding !== undefined ? { encoding: nc.encoding } : {}),
      ...(nc.dataChecksums !== undefined ? { dataChecksums: nc.dataChecksums } : {}),
    });
    rt.appliedConfigKey = '';
    rt.appliedRecovery = undefined;
    await rt.setLocal({ uid: db.uid, generation: 0, clusterUID: cd.cluster.uid });
  });
}

/** Adopts the data directory as it is (`initMode: existing`); the next pass writes the configuration and starts it. */
async function initExisting(rt: KeeperRuntime, action: Action<'init-existing'>, cd: ClusterData): Promise<void> {
  await rt.setLocal({ uid: action.db.uid, generation: 0, clusterUID: cd.cluster.uid });
  rt.appliedConfigKey = '';
  rt.appliedRecovery = undefined;
}

/**
 * Restores the data with `pitrConfig.dataRestoreCommand`, or with `pgbackrest restore` for
 * `pitrConfig.fromBackup` (restore.ts), then recovers it (background task). Everything that can be
 * checked is checked before the data directory is touched; when the restore or the recovery fails
 * the data directory is removed, so nothing half-restored remains (the DB is recorded only after
 * recovery ended).
 */
function initPitr(rt: KeeperRuntime, action: Action<'init-pitr'>, cd: ClusterData): void {
  const { db } = action;
  rt.tasks.run(taskName(action) ?? '', async () => {
    // Checked before anything is touched: an impossible recovery must not wipe the data directory.
    const fromBackup = action.external === undefined ? backupRestoreFor(rt.config, db, cd) : undefined;
    const recovery = pitrRecovery(rt.config, db, action.external, fromBackup);
    const source = fromBackup === undefined ? (db.spec.pitrConfig?.dataRestoreCommand ?? '') : await backupRestoreProgram(rt, db, fromBackup);
    await rt.pg.stop('immediate');
    await rt.setLocal(NO_DB);
    let restored = false;
    try {
      await rt.pg.restoreData(source);
      restored = true;
      await rt.pg.writeConfig(await rt.pgConfig(cd, db, action.external === undefined), recovery);
      await startPostgres(rt);
      if (recovery?.mode === 'recovery') {
        // Archive recovery ends with a promotion (or at the end of the archive).
        await rt.pg.waitRecoveryDone(rt.spec?.syncTimeoutMs || Infinity);
      }
    } catch (err) {
      await rt.pg.stop('immediate').catch(() => undefined);
      await rt.pg.removeData().catch((e: unknown) => rt.log.warn({ err: e }, `could not remove the data directory of the failed restore: ${errorMessage(e)}`));
      throw typeof source === 'string' ? err : fromBackupFailure(source, restored, err);
    }
    rt.appliedConfigKey = '';
    rt.appliedRecovery = undefined;
    await rt.setLocal({ uid: db.uid, generation: 0, clusterUID: cd.cluster.uid });
  });
}

/** What a restore from the backup repository runs: `pgbackrest restore`, and the target in words. */
interface BackupRestoreProgram extends DataRestoreProgram {
  readonly target: string;
}

/**
 * The error of a failed restore from the backup repository, naming the spec field to look at:
 * `pitrConfig.fromBackup` when `pgbackrest restore` failed, `pitrConfig.recoveryTargetSettings`
 * when PostgreSQL's recovery did (e.g. "recovery ended before configured recovery target was
 * reached"). Transient: the task is retried.
 */
function fromBackupFailure(source: BackupRestoreProgram, restored: boolean, err: unknown): StolonError {
  const message = restored
    ? `pitrConfig.recoveryTargetSettings: recovery to ${source.target} after the ${source.what} failed; the data directory was removed: ${errorMessage(err)}`
    : `pitrConfig.fromBackup: ${errorMessage(err)}`;
  return new StolonError('PG_COMMAND_FAILED', message, { transient: true, cause: err, field: restored ? 'pitrConfig.recoveryTargetSettings' : 'pitrConfig.fromBackup' });
}

/** Bound of `pgbackrest info`, ms: a repository that does not answer fails the attempt (retried). */
const PGBACKREST_INFO_TIMEOUT_MS = 120_000;

/**
 * Chooses the backup of a restore from the backup repository (`pgbackrest info` of the source
 * stanza, restore.ts `chooseBackupSet`) and returns the `pgbackrest restore` to run. Warns when the
 * restored cluster will archive into the stanza it restores from (docs/backup.md, "Restoring into
 * the stanza of the source").
 * @throws StolonError `CONFIG_INVALID` naming `pitrConfig.fromBackup` (the repository cannot be
 *   read, no such stanza or backup) or `pitrConfig.recoveryTargetSettings` (no backup ends before
 *   the target); nothing has been touched then.
 */
async function backupRestoreProgram(rt: KeeperRuntime, db: DB, r: BackupRestore): Promise<BackupRestoreProgram> {
  const target = restoreTargetOf(db.spec.pitrConfig?.recoveryTargetSettings);
  if ('problem' in target) {
    throw new StolonError('CONFIG_INVALID', target.problem, { field: 'pitrConfig.recoveryTargetSettings' });
  }
  const res = await rt.pg.runTool(PGBACKREST, infoArgs(r), { timeoutMs: PGBACKREST_INFO_TIMEOUT_MS });
  if (res.code !== 0) {
    const tail = `${res.stdout}\n${res.stderr}`.trim().split('\n').slice(-3).join(' / ');
    throw new StolonError(
      'CONFIG_INVALID',
      `pitrConfig.fromBackup: cannot read stanza ${r.sourceStanza} in the backup repository ${r.backup.repository.path} (pgbackrest info exited with ${res.code ?? 'a signal'}): ${tail}`,
      { field: 'pitrConfig.fromBackup' },
    );
  }
  const sets = parseBackupInfo(res.stdout, r.sourceStanza, r.backup.repository.path);
  const chosen = chooseBackupSet(sets, r.sourceStanza, db.spec.pitrConfig?.fromBackup?.set, target);
  rt.log.info({ stanza: r.sourceStanza, set: chosen.label, target: describeTarget(target) }, `restoring ${chosen.why} from stanza ${r.sourceStanza}, recovering to ${describeTarget(target)}`);
  if (r.sourceStanza === r.ownStanza) {
    rt.log.warn(
      { stanza: r.ownStanza },
      `pitrConfig.fromBackup: restoring from stanza ${r.sourceStanza}, which is also this cluster's own (backup.stanza): once promoted it archives into it. ` +
        'If the cluster that wrote it still runs, stop it or give this cluster another backup.stanza: two clusters archiving into one stanza collide (docs/backup.md)',
    );
  }
  return {
    what: `pgbackrest restore of backup ${chosen.label} from stanza ${r.sourceStanza}`,
    program: PGBACKREST,
    args: restoreCommandArgs(r, chosen.label),
    target: describeTarget(target),
  };
}

/**
 * Makes this data directory a standby of `action.from` (background task): pg_rewind when
 * allowed, else (or when it fails) a full pg_basebackup over the DB's replication slot. The WAL
 * the local timeline had past the fork is reported (logged, kept in dbstate, published).
 */
function resync(rt: KeeperRuntime, action: Action<'resync'>, cd: ClusterData, obs: PgObservation): void {
  rt.tasks.run(taskName(action) ?? '', async (progress) => {
    try {
      await resyncTask(rt, action, cd, obs, progress);
    } finally {
      rt.resyncProgress = undefined;
    }
  });
}

/** The body of {@link resync}'s background task; `progress` replaces the published activity sentence. */
async function resyncTask(rt: KeeperRuntime, action: Action<'resync'>, cd: ClusterData, obs: PgObservation, progress: (sentence: string) => void): Promise<void> {
  const { db, from } = action;
  const { config, log, pg } = rt;
  await pg.stop('fast').catch(() => pg.stop('immediate'));
  let discarded: DiscardedWal | undefined;
  let rewound = false;
  if (action.tryRewind) {
    try {
      const r = await pg.rewind({ host: from.host, port: from.port, user: config.suUsername, password: config.suPassword });
      discarded = discardedRange(cd, db, obs, 'pg_rewind', nowIso(), r.divergedAt, r.localEnd);
      rewound = true;
    } catch (err) {
      log.warn({ err }, `pg_rewind failed, falling back to pg_basebackup: ${errorMessage(err)}`);
    }
  }
  if (!rewound) {
    if (obs.initialized) {
      discarded = discardedRange(cd, db, obs, 'pg_basebackup', nowIso());
    }
    if (discarded !== undefined) {
      // Say what is about to be thrown away before it is gone.
      log.warn({ discardedWal: discarded }, describeDiscard(discarded, config.uid));
    }
    await rt.setLocal({ ...NO_DB, ...(discarded !== undefined ? { discardedWal: discarded } : {}) });
    let lastLog = 0;
    await pg.baseBackup(standbySettings(config, db.uid, from), {
      createSlot: action.createSlot,
      onProgress: (p) => {
        rt.resyncProgress = { doneBytes: p.doneBytes, totalBytes: p.totalBytes };
        const pct = p.totalBytes > 0 ? Math.floor((100 * p.doneBytes) / p.totalBytes) : 0;
        const sentence = `pg_basebackup from db ${from.dbUid}: ${mib(p.doneBytes)}/${mib(p.totalBytes)} MiB (${pct}%)`;
        progress(sentence);
        if (Date.now() - lastLog > 5000) {
          lastLog = Date.now();
          log.info({ doneBytes: p.doneBytes, totalBytes: p.totalBytes }, sentence);
        }
      },
    });
  } else if (discarded !== undefined) {
    log.warn({ discardedWal: discarded }, describeDiscard(discarded, config.uid));
  }
  rt.appliedConfigKey = '';
  rt.appliedRecovery = undefined;
  const keep = discarded ?? rt.local.discardedWal;
  await rt.setLocal({ uid: db.uid, generation: 0, clusterUID: cd.cluster.uid, ...(keep !== undefined ? { discardedWal: keep } : {}) });
}

/**
 * Of the slots `names` that this pass's clusterdata no longer wants, those that the clusterdata in
 * the store, read now (after syncSlots listed the slots), does not want either
 * ({@link slotsWantedIn}). A new standby's keeper creates its own slot as soon as it reads
 * the generation that lists its DB as a follower, which may be after this pass read its
 * clusterdata: the fresh read, later than that creation, lists it.
 * @returns the names that may be dropped; none when the store has no clusterdata
 * @throws what the store's read throws, and ClusterDataInvalidError (syncSlots then drops nothing)
 */
async function slotsUnwantedNow(rt: KeeperRuntime, dbUid: string, names: readonly string[]): Promise<string[]> {
  const rec = await rt.store.getClusterData();
  if (rec === null) {
    return [];
  }
  const keep = slotsWantedIn(parseClusterData(rec.text), dbUid);
  return names.filter((n) => !keep.has(n));
}

/**
 * Brings a DB that is in place to what its spec wants: promotes a standby that must be primary,
 * writes the configuration (reload when running), starts a stopped instance, restarts for
 * restart-only settings (`automaticPgRestart`), keeps the replication slots, and records the
 * generation as applied.
 * @returns whether anything changed (see {@link execute}); in the steady state nothing does, and
 *   the slots are checked against the pass's observation without another connection.
 * @throws what the PostgresManager throws (a failed start is recorded as `startError` first)
 */
async function converge(rt: KeeperRuntime, action: Action<'converge'>, cd: ClusterData, obs: PgObservation): Promise<boolean> {
  const { db } = action;
  const { pg, log } = rt;
  const wasRunning = await pg.isRunning();
  let running = wasRunning;
  let changed = false;
  let promoted = false;
  if (action.role === 'master' && !running && obs.role === 'standby') {
    await recoverThenPromote(rt, cd, db);
    running = true;
    changed = true;
    promoted = true;
  }
  // With synchronous replication: whether the primary's configuration is in force before the promotion.
  let configured = false;
  if (action.promote) {
    if (db.spec.synchronousReplication) {
      configured = await configureBeforePromotion(rt, cd, db);
    }
    // Promote first: the manager (like pg_ctl) needs the instance still in standby mode, and
    // rewriting the configuration below removes standby.signal.
    await failpoint('keeperBeforePromote');
    await pg.promote(rt.waitReadyMs());
    changed = true;
    promoted = true;
  }
  if (promoted && earlyReport(rt, db, configured && slotsInPlace(cd, db, obs))) {
    // The new primary takes writes now: report it converged at once, so that the sentinel routes
    // the proxies to it while the configuration (the primary's pg_hba lines for its standbys, the
    // recovery settings dropped) and its standbys' replication slots are written below; the
    // published generation does not wait for them, the passes keep applying them.
    await rt.setLocal({ ...rt.local, generation: db.generation, clusterUID: cd.cluster.uid });
    await rt.publish(cd, await rt.observe());
  }
  updateInternalOnly(rt, db, action.role === 'master', wasRunning, obs);
  const cfg = await rt.pgConfig(cd, db, action.role === 'master', rt.internalOnly);
  const recovery = action.role === 'standby' ? recoveryFor(rt.config, db.uid, action.follow, action.external, cd) : null;
  changed = (await applyConfig(rt, cfg, recovery, running)) || changed;
  if (!running) {
    try {
      await startPostgres(rt);
      rt.startError = undefined;
    } catch (err) {
      // Published by the pass at once: the sentinel fails a primary that cannot start without
      // waiting failInterval.
      rt.startError = errorMessage(err);
      throw err;
    }
    changed = true;
  } else if (restartRequested(db, rt.local.generation)) {
    // `stolonctl restart`: once; the generation recorded below is the acknowledgement.
    log.info({ requestedAt: db.spec.restartRequest?.requestedAt }, `restarting postgres of db ${db.uid} as requested by stolonctl restart`);
    await pg.restart(rt.waitReadyMs());
    changed = true;
  } else if (db.spec.automaticPgRestart === true) {
    const worthy = restartWorthy((await pg.observe()).pendingRestart, action.role === 'master');
    if (worthy.length > 0) {
      log.info({ parameters: worthy }, `restarting postgres to apply ${worthy.join(', ')} (automaticPgRestart)`);
      await pg.restart(rt.waitReadyMs());
      changed = true;
    }
  }
  const slots = slotsFor(cd, db, action.role, action.follow, action.external);
  if (slots !== undefined && (changed || !slotsMatch(obs, slots))) {
    await pg.syncSlots(slots, { mayDrop: (names) => slotsUnwantedNow(rt, db.uid, names) });
    changed = true;
  }
  if (rt.local.generation !== db.generation) {
    await rt.setLocal({ ...rt.local, generation: db.generation, clusterUID: cd.cluster.uid });
    changed = true;
  }
  return changed;
}

/**
 * With synchronous replication, the standby about to be promoted gets the primary's
 * postgresql.conf and pg_hba.conf (its synchronous_standby_names above all) and reloads before
 * `pg_promote`, so PostgreSQL never runs as a primary without them: written after the promotion
 * (as before), a client connecting to the new primary directly in between could commit with no
 * synchronous standby's acknowledgement. The recovery settings the keeper last wrote stay: the
 * standby keeps streaming from its upstream until the promotion, and standby.signal must still
 * be there when PostgreSQL removes it at the end of recovery. When this process has written no
 * standby settings yet (it just started), nothing is written before the promotion and the window
 * stays, as the recovery files on disk are not known. During recovery PostgreSQL keeps
 * synchronous_standby_names without using it; its checkpointer, which runs in recovery too,
 * applies the reload to the shared `sync_standbys_defined` flag that commits check within
 * milliseconds, while the promotion itself takes tens of them. Costs no `postgres -C`
 * (writeConfig skips it for a new synchronous_standby_names of the keeper's standbys only), makes
 * the configuration write after the promotion one that only drops lines (skipped as well), and
 * lets the promoted primary report as early as with asynchronous replication (see earlyReport).
 * @see https://www.postgresql.org/docs/current/warm-standby.html#SYNCHRONOUS-REPLICATION
 * @returns true when that configuration is in force (written and reloaded, or already there);
 *   false when it was not written (no standby settings known, or PostgreSQL refused it: the write
 *   after the promotion meets the same refusal and reports it)
 * @throws what writeConfig and reload throw but CONFIG_INVALID (the promotion is then retried by the next pass)
 */
async function configureBeforePromotion(rt: KeeperRuntime, cd: ClusterData, db: DB): Promise<boolean> {
  const recovery = rt.appliedRecovery;
  if (recovery === undefined || recovery === null) {
    rt.log.warn(`promoting db ${db.uid} before its synchronous_standby_names are written: this keeper has not written its standby configuration yet`);
    return false;
  }
  const cfg = await rt.pgConfig(cd, db, true, rt.internalOnly);
  try {
    if ((await rt.pg.writeConfig(cfg, recovery)).changed) {
      rt.needsReload = true;
      await rt.pg.reload();
      rt.needsReload = false;
    }
  } catch (err) {
    if (err instanceof StolonError && err.code === 'CONFIG_INVALID') {
      // The previous files stay; the write after the promotion meets the same refusal and reports it.
      rt.log.warn({ err }, `promoting db ${db.uid} with its previous configuration: ${err.message}`);
      return false;
    }
    throw err;
  }
  rt.appliedConfigKey = configKey(cfg, recovery);
  return true;
}

/**
 * Whether the replication slots a primary `db` keeps for its followers (and the spec's additional
 * ones) all exist in the observation `obs` of its standby: a standby keeps its siblings' slots
 * (`slotsFor`), so after a promotion its standbys find theirs at once.
 */
function slotsInPlace(cd: ClusterData, db: DB, obs: PgObservation): boolean {
  const wanted = slotsFor(cd, db, 'master', undefined, undefined) ?? [];
  return obs.running && obs.error === undefined && wanted.every((n) => obs.slots.includes(n));
}

/**
 * Whether a just-promoted primary may report its generation applied before its configuration and
 * replication slots are written (see converge): only when nothing the rest of converge does can
 * matter to the writes the proxies then send it. With synchronous replication only when `syncReady`:
 * its synchronous_standby_names (and pg_hba) were in force before the promotion
 * ({@link configureBeforePromotion}) and its standbys' slots already exist ({@link slotsInPlace});
 * otherwise a write could commit unsynced, or wait for a standby that reconnects only after
 * wal_retrieve_retry_interval. Never when a restart could follow (`stolonctl restart` pending, or
 * `automaticPgRestart`).
 */
function earlyReport(rt: KeeperRuntime, db: DB, syncReady: boolean): boolean {
  return (
    (!db.spec.synchronousReplication || syncReady) && db.spec.automaticPgRestart !== true && !restartRequested(db, rt.local.generation) && rt.local.generation !== db.generation
  );
}

/**
 * Whether the pass's observation shows the replication slots exactly as `wanted`: PostgreSQL was
 * probed (running, no probe error), every wanted slot exists and no other `stolon_` slot does (what
 * `syncSlots` would create or drop). Slots not named `stolon_*` are the operator's and not counted.
 */
function slotsMatch(obs: Pick<PgObservation, 'running' | 'error' | 'slots'>, wanted: readonly string[]): boolean {
  if (!obs.running || obs.error !== undefined) {
    return false;
  }
  const have = new Set(obs.slots);
  const want = new Set(wanted);
  return wanted.every((n) => have.has(n)) && obs.slots.every((n) => !n.startsWith('stolon_') || want.has(n));
}

/**
 * Promotes a stopped standby's data directory (a chosen standby whose keeper or node died before
 * the promotion, then came back): started as a standby with no upstream first, so that PostgreSQL
 * replays every WAL record it had received, following the timeline history files to the newest
 * timeline (`recovery_target_timeline = latest`), and only then promoted; a promotion request takes
 * effect once no more local WAL is available. Started without standby.signal it would run crash
 * recovery instead, which replays only the timeline in pg_control (the last restartpoint's) and
 * ends there: every commit the standby had received on a later timeline (after its upstream's own
 * promotion) would be lost, acknowledged synchronous commits included.
 * @see https://www.postgresql.org/docs/current/warm-standby.html#STANDBY-SERVER-OPERATION
 */
async function recoverThenPromote(rt: KeeperRuntime, cd: ClusterData, db: DB): Promise<void> {
  const noUpstream = { standbySettings: {}, archiveRecoverySettings: undefined };
  await applyConfig(rt, await rt.pgConfig(cd, db, false, false), recoveryFor(rt.config, db.uid, undefined, noUpstream), false);
  rt.log.info(`starting db ${db.uid} in recovery first: it replays every WAL record it received, on every timeline, before its promotion`);
  await startPostgres(rt);
  await rt.pg.promote(rt.waitReadyMs());
}

/**
 * A stopped primary with synchronous replication starts with internal-only pg_hba and opens to
 * users once its synchronous standbys are reported `sync` again (Stolon does the same after a
 * primary restart; see `internalOnlyHba`). The configuration key changes with it, so the normal
 * pg_hba is written and reloaded then.
 */
function updateInternalOnly(rt: KeeperRuntime, db: DB, isPrimary: boolean, running: boolean, obs: PgObservation): void {
  const was = rt.internalOnly;
  rt.internalOnly = internalOnlyHba({ current: was, db, isPrimary, starting: !running, reportedSync: running ? syncStandbyUids(obs) : [] });
  if (rt.internalOnly !== was) {
    rt.log.info(
      { synchronousStandbys: db.spec.synchronousStandbys },
      rt.internalOnly
        ? `starting primary db ${db.uid} with internal-only pg_hba until its synchronous standbys are in sync again`
        : `synchronous standbys of db ${db.uid} in sync: normal pg_hba restored`,
    );
  }
}

/**
 * Writes the configuration when it changed, reloading a running instance. An invalid one
 * (CONFIG_INVALID: a bad pgParameters value, a pg_hba line PostgreSQL rejects) is not retried
 * and does not stop the DB from converging: the previous files stay, and the activity says so
 * (a primary must not be failed over for a typo).
 * @returns true when it wrote (or refused) a configuration, false when it was already applied
 * @throws any other error of the write or the reload
 */
async function applyConfig(rt: KeeperRuntime, cfg: PgConfig, recovery: RecoveryConfig | null, running: boolean): Promise<boolean> {
  const key = configKey(cfg, recovery);
  if (key === rt.appliedConfigKey) {
    return false;
  }
  try {
    const res = await rt.pg.writeConfig(cfg, recovery);
    if (running && res.changed) {
      rt.needsReload = true;
      await rt.pg.reload();
    }
    rt.needsReload = false;
    rt.appliedConfigKey = key;
    rt.appliedRecovery = recovery;
    rt.clearActivity('config-rejected');
    return true;
  } catch (err) {
    if (err instanceof StolonError && err.code === 'CONFIG_INVALID') {
      rt.activity = { kind: 'config-rejected', message: err.message };
      rt.log.warn({ err, field: err.field }, `configuration rejected, previous one kept: ${err.message}`);
      rt.appliedConfigKey = key;
      return true;
    }
    throw err;
  }
}

/**
 * Starts PostgreSQL (waiting up to dbWaitReadyTimeout); when the current configuration keeps it
 * from starting, falls back to the last good one and says so.
 * @throws the start's error when there is no last good configuration or it fails too
 */
async function startPostgres(rt: KeeperRuntime): Promise<void> {
  const waitMs = rt.waitReadyMs();
  try {
    await rt.pg.start(waitMs);
  } catch (err) {
    if (err instanceof StolonError && err.code === 'CONFIG_INVALID' && (await rt.pg.restoreLastGoodConfig())) {
      rt.activity = { kind: 'config-fallback', message: err.message };
      rt.log.warn({ err }, `postgres refused the configuration, started with the last good one: ${err.message}`);
      await rt.pg.start(waitMs);
      return;
    }
    throw err;
  }
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(0);
}
