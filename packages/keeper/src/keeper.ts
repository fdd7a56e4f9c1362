/**
 * The keeper daemon: owns one PostgreSQL data directory. Each pass observes PostgreSQL, reads
 * clusterdata, publishes KeeperInfo under a lease whose TTL is the spec's failInterval, plans one
 * step with `planKeeperAction` and executes it through the PostgresManager. Long steps (initdb,
 * pg_basebackup, pg_rewind, a PITR restore) run as a tracked background task while passes keep
 * publishing, with progress (STYLE.md rule 12). Passes run on clusterdata watch events and every
 * sleepInterval.
 *
 * State: starting → running → stopping → stopped.
 */
import { chown, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BUG_SENTENCE, newUid, nowIso, redactConninfo, startSerialLoop, type Logger, type SerialLoop } from '@stolon-ts/common';
import {
  ClusterDataInvalidError,
  DEFAULT_SPEC,
  StolonError,
  errorMessage,
  parseClusterData,
  parseDurationMs,
  resolveSpec,
  type ClusterData,
  type DB,
  type DiscardedWal,
  type KeeperInfo,
  type PostgresState,
  type ResolvedSpec,
} from '@stolon-ts/cluster';
import {
  formatLsn,
  renderHbaLines,
  renderSynchronousStandbyNames,
  type PgConfig,
  type PgObservation,
  type PostgresManager,
  type RecoveryConfig,
  type StandbySettings,
} from '@stolon-ts/postgres';
import type { Store, StoreWatch } from '@stolon-ts/store';
import type { FenceControl } from './fencer.js';
import { reportPasses, reportedHealthy, type KeeperStatusSink } from './health.js';
import {
  internalOnlyHba,
  planKeeperAction,
  restartWorthy,
  type ExternalFollow,
  type FollowTarget,
  type KeeperAction,
  type LocalDbState,
} from './plan.js';

export type KeeperState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface KeeperConfig {
  readonly uid: string;
  /** Keeper data dir: holds `dbstate` and `postgres/` (PGDATA). */
  readonly dataDir: string;
  /** Address and port other keepers and proxies use to reach this PostgreSQL. */
  readonly pgAdvertiseAddress: string;
  readonly pgPort: number;
  readonly suUsername: string;
  /** Needed as the pg_rewind source credentials; never logged. */
  readonly suPassword: string;
  readonly replUsername: string;
  /** Needed to build the standby's connection to its primary; never logged. */
  readonly replPassword: string;
  readonly canBeMaster: boolean;
  readonly canBeSynchronousReplica: boolean;
  /** Higher is preferred among equally advanced failover candidates. */
  readonly priority: number;
  /** uid/gid to chown keeper-written files to (set when running as root). */
  readonly fileOwner?: { readonly uid: number; readonly gid: number };
}

export interface KeeperDeps {
  readonly store: Store;
  readonly logger: Logger;
  readonly pg: PostgresManager;
  /** New per process start. */
  readonly bootUuid: string;
  /** Self-fencing (fencer.ts); absent in tests that fake PostgreSQL. */
  readonly fencer?: FenceControl;
  /** Hears about every pass and publish (the status endpoint's liveness and readiness). */
  readonly status?: KeeperStatusSink;
}

export interface KeeperHandle {
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  stop(reason: string): Promise<void>;
  state(): KeeperState;
}

interface Task {
  readonly name: string;
  readonly promise: Promise<void>;
}

/** What the keeper keeps in `<dataDir>/dbstate`, plus the last WAL range it discarded. */
interface PersistedState extends LocalDbState {
  readonly discardedWal?: DiscardedWal;
}

/** Reads `<dataDir>/dbstate`; a missing file means no DB yet. */
async function readDbState(dataDir: string): Promise<PersistedState> {
  try {
    const raw = JSON.parse(await readFile(join(dataDir, 'dbstate'), 'utf8')) as Partial<PersistedState>;
    return {
      uid: typeof raw.uid === 'string' ? raw.uid : '',
      generation: typeof raw.generation === 'number' ? raw.generation : 0,
      clusterUID: typeof raw.clusterUID === 'string' ? raw.clusterUID : '',
      ...(raw.discardedWal !== undefined ? { discardedWal: raw.discardedWal } : {}),
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { uid: '', generation: 0, clusterUID: '' };
    }
    throw new StolonError('DATA_DIR_INVALID', `cannot read ${join(dataDir, 'dbstate')}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Writes `<dataDir>/dbstate` atomically (temp file, fsync, rename). */
async function writeDbState(dataDir: string, s: PersistedState, owner: KeeperConfig['fileOwner']): Promise<void> {
  const tmp = join(dataDir, `.dbstate.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(s), { mode: 0o600, flush: true });
  if (owner !== undefined) {
    await chown(tmp, owner.uid, owner.gid);
  }
  await rename(tmp, join(dataDir, 'dbstate'));
}

/**
 * Starts a keeper.
 * @throws StolonError DATA_DIR_INVALID when the data dir cannot be created or its dbstate read.
 */
export async function start(config: KeeperConfig, deps: KeeperDeps): Promise<KeeperHandle> {
  const { store, pg } = deps;
  const log = deps.logger;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  let local = await readDbState(config.dataDir);
  const version = await pg.binaryVersion();
  let state: KeeperState = 'starting';
  let spec: ResolvedSpec | undefined;
  let task: Task | undefined;
  let lastTaskError: string | undefined;
  /** Sentence about a long action's progress or the last configuration problem, published in the info. */
  let activity: string | undefined;
  let appliedConfigKey = '';
  /**
   * Reference §4.5.2: true while this primary (synchronous replication on, started by this keeper
   * after it was found stopped) keeps normal users out with internal-only pg_hba, until every
   * synchronous standby of its spec is reported `sync` again. See `internalOnlyHba`.
   */
  let internalOnly = false;
  let lastReason = '';
  let pass = 0;
  /** True while the last clusterdata read makes this keeper's DB the (writable) primary. */
  let isPrimary = false;
  /** The last failed start's error while postgres should run; published so the sentinel acts at once. */
  let startError: string | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const sleepMs = () => spec?.sleepIntervalMs ?? parseDurationMs(DEFAULT_SPEC.sleepInterval) ?? 1000;
  const infoTtlMs = () => spec?.failIntervalMs ?? parseDurationMs(DEFAULT_SPEC.failInterval) ?? 6000;

  /** DB uids PostgreSQL reports `sync` in pg_stat_replication (standbys connect as `stolon_<uid>`). */
  const syncStandbys = (obs: PgObservation): string[] =>
    obs.replication
      .filter((r) => r.syncState === 'sync' && r.applicationName.startsWith('stolon_'))
      .map((r) => r.applicationName.slice('stolon_'.length));

  const postgresState = (obs: PgObservation): PostgresState => ({
    uid: local.uid,
    generation: local.generation,
    listenAddress: config.pgAdvertiseAddress,
    port: String(config.pgPort),
    healthy: reportedHealthy(obs, task !== undefined),
    systemID: obs.systemId,
    timelineID: obs.timelineId,
    xLogPos: obs.xLogPos,
    ...(obs.replayedXLogPos !== undefined ? { replayedXLogPos: obs.replayedXLogPos } : {}),
    timelinesHistory: obs.timelinesHistory.slice(-2),
    pgParameters: {},
    synchronousStandbys: syncStandbys(obs),
    olderWalFile: obs.olderWalFile,
    ...(obs.role !== undefined ? { role: obs.role } : {}),
    running: obs.running,
    pendingRestart: [...obs.pendingRestart],
    ...(local.discardedWal !== undefined ? { discardedWal: local.discardedWal } : {}),
    ...(activity !== undefined ? { activity } : {}),
    ...(startError !== undefined && !obs.running ? { startError } : {}),
  });

  const publish = async (cd: ClusterData | undefined, obs: PgObservation): Promise<void> => {
    const info: KeeperInfo = {
      infoUID: newUid(),
      uid: config.uid,
      clusterUID: cd?.cluster.uid ?? '',
      bootUUID: deps.bootUuid,
      postgresBinaryVersion: version,
      postgresState: postgresState(obs),
      canBeMaster: config.canBeMaster,
      canBeSynchronousReplica: config.canBeSynchronousReplica,
      priority: config.priority,
    };
    await store.setInfo('keepers', config.uid, info, infoTtlMs());
    deps.status?.published({ cd, local, obs, task: task?.name });
  };

  const pgConfig = (cd: ClusterData, db: DB, isPrimary: boolean, internalOnlyHbaLines = false): PgConfig => ({
    listenAddress: config.pgAdvertiseAddress,
    port: config.pgPort,
    parameters: db.spec.pgParameters,
    maxStandbys: db.spec.maxStandbys,
    additionalWalSenders: db.spec.additionalWalSenders,
    synchronousStandbyNames: renderSynchronousStandbyNames(db.spec),
    usePgrewind: db.spec.usePgrewind,
    hba: renderHbaLines({
      suUsername: config.suUsername,
      replUsername: config.replUsername,
      mode: db.spec.suReplAccessMode ?? 'all',
      isPrimary,
      peerAddresses: [
        ...new Set(
          Object.values(cd.dbs)
            .filter((d) => d.uid !== db.uid && d.status.listenAddress !== '')
            .map((d) => d.status.listenAddress),
        ),
      ].sort(),
      userLines: db.spec.pgHBA,
      internalOnly: internalOnlyHbaLines,
    }),
  });

  const standbySettings = (dbUid: string, from: { host: string; port: number }): StandbySettings => ({
    primary: { host: from.host, port: from.port, user: config.replUsername, password: config.replPassword },
    applicationName: `stolon_${dbUid}`,
    slotName: `stolon_${dbUid}`,
  });

  const recoveryFor = (dbUid: string, follow: FollowTarget | undefined, external: ExternalFollow | undefined): RecoveryConfig | null => {
    if (follow !== undefined) {
      return { mode: 'standby', standby: standbySettings(dbUid, follow) };
    }
    if (external !== undefined) {
      const ss = external.standbySettings;
      return {
        mode: 'standby-external',
        primaryConninfo: ss.primaryConninfo ?? '',
        ...(ss.primarySlotName !== undefined ? { primarySlotName: ss.primarySlotName } : {}),
        ...(ss.recoveryMinApplyDelay !== undefined ? { recoveryMinApplyDelay: ss.recoveryMinApplyDelay } : {}),
        ...(external.archiveRecoverySettings?.restoreCommand !== undefined
          ? { restoreCommand: external.archiveRecoverySettings.restoreCommand }
          : {}),
      };
    }
    return null;
  };

  const runTask = (name: string, fn: () => Promise<void>) => {
    lastTaskError = undefined;
    activity = `${name} in progress`;
    const promise = fn()
      .then(() => {
        log.info({ task: name }, `${name}: done`);
        activity = undefined;
      })
      .catch((err: unknown) => {
        lastTaskError = `${name} failed: ${errorMessage(err)}`;
        activity = lastTaskError;
        log.error({ err, task: name }, lastTaskError);
      })
      .finally(() => {
        task = undefined;
        loop.trigger();
      });
    task = { name, promise };
  };

  const setLocal = async (s: PersistedState) => {
    await writeDbState(config.dataDir, s, config.fileOwner);
    local = s;
  };

  /** Writes the configuration; when it is invalid while running, the previous one is kept and reported. */
  const applyConfig = async (cfg: PgConfig, recovery: RecoveryConfig | null, running: boolean, key: string): Promise<void> => {
    if (key === appliedConfigKey) {
      return;
    }
    try {
      const res = await pg.writeConfig(cfg, recovery);
      if (running && res.changed) {
        await pg.reload();
      }
      appliedConfigKey = key;
      if (activity?.startsWith('configuration rejected') === true) {
        activity = undefined;
      }
    } catch (err) {
      if (err instanceof StolonError && err.code === 'CONFIG_INVALID') {
        // A bad pgParameters value must not stop the DB from converging (a primary would be
        // failed over for a typo): keep the last good configuration and say so loudly.
        activity = `configuration rejected, previous one kept: ${err.message}`;
        log.warn({ err, field: err.field }, activity);
        appliedConfigKey = key;
        return;
      }
      throw err;
    }
  };

  /** Starts postgres; if the current configuration prevents it, falls back to the last good one. */
  const startPostgres = async (waitMs: number): Promise<void> => {
    try {
      await pg.start(waitMs);
    } catch (err) {
      if (err instanceof StolonError && err.code === 'CONFIG_INVALID' && (await pg.restoreLastGoodConfig())) {
        activity = `postgres refused the configuration, started with the last good one: ${err.message}`;
        log.warn({ err }, activity);
        await pg.start(waitMs);
        return;
      }
      throw err;
    }
  };

  const lostRange = (db: DB, cd: ClusterData, before: PgObservation, method: DiscardedWal['method'], divergedAt?: number, localEnd?: number): DiscardedWal | undefined => {
    // Where the local timeline forked from the new primary's history, and how far it went.
    const followed = cd.dbs[db.spec.followConfig?.dbuid ?? ''];
    const fork =
      divergedAt ?? followed?.status.timelinesHistory.find((h) => h.timelineID === before.timelineId)?.switchPoint;
    const end = localEnd ?? before.xLogPos;
    if (fork === undefined || end <= fork) {
      return undefined;
    }
    return { fromLsn: fork, toLsn: end, timelineID: before.timelineId, method, at: nowIso() };
  };

  const execute = async (action: KeeperAction, cd: ClusterData, obs: PgObservation): Promise<void> => {
    const waitMs = spec?.dbWaitReadyTimeoutMs ?? 60_000;
    switch (action.kind) {
      case 'wait':
      case 'refuse':
        return;
      case 'stop-postgres':
        await pg.stop('fast');
        return;
      case 'switchover-stop':
        await pg.stop('fast');
        if (local.generation !== action.db.generation) {
          await setLocal({ ...local, generation: action.db.generation, clusterUID: cd.cluster.uid });
        }
        return;
      case 'init-new':
        runTask(`initdb for db ${action.db.uid}`, async () => {
          await pg.stop('immediate');
          await setLocal({ uid: '', generation: 0, clusterUID: '' });
          await pg.removeData();
          const nc = action.db.spec.newConfig ?? {};
          await pg.init({
            ...(nc.locale !== undefined ? { locale: nc.locale } : {}),
            ...(nc.encoding !== undefined ? { encoding: nc.encoding } : {}),
            ...(nc.dataChecksums !== undefined ? { dataChecksums: nc.dataChecksums } : {}),
          });
          appliedConfigKey = '';
          await setLocal({ uid: action.db.uid, generation: 0, clusterUID: cd.cluster.uid });
        });
        return;
      case 'init-existing':
        // Adopt the data as it is: the next pass writes our configuration and starts it.
        await setLocal({ uid: action.db.uid, generation: 0, clusterUID: cd.cluster.uid });
        appliedConfigKey = '';
        return;
      case 'init-pitr': {
        const pitr = action.db.spec.pitrConfig ?? {};
        const db = action.db;
        runTask(`point-in-time restore of db ${db.uid}`, async () => {
          await pg.stop('immediate');
          await setLocal({ uid: '', generation: 0, clusterUID: '' });
          await pg.restoreData(pitr.dataRestoreCommand ?? '');
          const target = pitr.recoveryTargetSettings;
          const restoreCommand = pitr.archiveRecoverySettings?.restoreCommand;
          // Without an archive (a self-contained base backup) there is nothing to recover from but
          // the copied WAL: PostgreSQL's crash recovery replays it on a plain start. Archive
          // recovery needs restore_command (PostgreSQL refuses recovery.signal without it).
          const recovery: RecoveryConfig | null =
            action.external !== undefined
              ? recoveryFor(db.uid, undefined, action.external)
              : restoreCommand !== undefined
                ? { mode: 'recovery', restoreCommand, ...(target !== undefined ? { target } : {}) }
                : null;
          if (recovery === null && target !== undefined) {
            throw new StolonError(
              'CONFIG_INVALID',
              'pitrConfig.recoveryTargetSettings: needs pitrConfig.archiveRecoverySettings.restoreCommand (recovery to a target reads WAL from the archive)',
              { field: 'pitrConfig.recoveryTargetSettings' },
            );
          }
          await pg.writeConfig(pgConfig(cd, db, action.external === undefined), recovery);
          await startPostgres(waitMs);
          if (recovery?.mode === 'recovery') {
            // Archive recovery ends with a promotion (or at the end of the archive).
            await pg.waitRecoveryDone(spec?.syncTimeoutMs || Infinity);
          }
          appliedConfigKey = '';
          await setLocal({ uid: db.uid, generation: 0, clusterUID: cd.cluster.uid });
        });
        return;
      }
      case 'resync': {
        const { db, from } = action;
        runTask(`resync of db ${db.uid} from db ${from.dbUid}`, async () => {
          await pg.stop('fast').catch(() => pg.stop('immediate'));
          let discarded: DiscardedWal | undefined;
          let rewound = false;
          if (action.tryRewind) {
            try {
              const r = await pg.rewind({ host: from.host, port: from.port, user: config.suUsername, password: config.suPassword });
              discarded = lostRange(db, cd, obs, 'pg_rewind', r.divergedAt, r.localEnd);
              rewound = true;
            } catch (err) {
              log.warn({ err }, `pg_rewind failed, falling back to pg_basebackup: ${errorMessage(err)}`);
            }
          }
          if (!rewound) {
            if (obs.initialized) {
              discarded = lostRange(db, cd, obs, 'pg_basebackup');
            }
            if (discarded !== undefined) {
              // Say what is about to be thrown away before it is gone.
              log.warn({ discardedWal: discarded }, describeDiscard(discarded, config.uid));
            }
            await setLocal({ uid: '', generation: 0, clusterUID: '', ...(discarded !== undefined ? { discardedWal: discarded } : {}) });
            let lastLog = 0;
            await pg.baseBackup(standbySettings(db.uid, from), {
              onProgress: (p) => {
                const pct = p.totalBytes > 0 ? Math.floor((100 * p.doneBytes) / p.totalBytes) : 0;
                activity = `pg_basebackup from db ${from.dbUid}: ${mib(p.doneBytes)}/${mib(p.totalBytes)} MiB (${pct}%)`;
                if (Date.now() - lastLog > 5000) {
                  lastLog = Date.now();
                  log.info({ doneBytes: p.doneBytes, totalBytes: p.totalBytes }, activity);
                }
              },
            });
          } else if (discarded !== undefined) {
            log.warn({ discardedWal: discarded }, describeDiscard(discarded, config.uid));
          }
          appliedConfigKey = '';
          await setLocal({
            uid: db.uid,
            generation: 0,
            clusterUID: cd.cluster.uid,
            ...(discarded !== undefined ? { discardedWal: discarded } : local.discardedWal !== undefined ? { discardedWal: local.discardedWal } : {}),
          });
        });
        return;
      }
      case 'converge': {
        const { db } = action;
        const running = await pg.isRunning();
        if (action.promote) {
          // Promote first: the manager (like pg_ctl) needs the instance still in standby mode,
          // and rewriting the config below removes standby.signal.
          await pg.promote(waitMs);
        }
        // Reference §4.5.2: a stopped primary with synchronous replication starts internal-only
        // and opens to users once its synchronous standbys are reported `sync` again (the key
        // below changes then, so the normal pg_hba is written and reloaded).
        const wasInternalOnly = internalOnly;
        internalOnly = internalOnlyHba({
          current: internalOnly,
          db,
          isPrimary: action.role === 'master',
          starting: !running,
          reportedSync: running ? syncStandbys(obs) : [],
        });
        if (internalOnly !== wasInternalOnly) {
          log.info(
            { synchronousStandbys: db.spec.synchronousStandbys },
            internalOnly
              ? `starting primary db ${db.uid} with internal-only pg_hba until its synchronous standbys are in sync again`
              : `synchronous standbys of db ${db.uid} in sync: normal pg_hba restored`,
          );
        }
        const cfg = pgConfig(cd, db, action.role === 'master', internalOnly);
        const recovery = action.role === 'standby' ? recoveryFor(db.uid, action.follow, action.external) : null;
        const key = JSON.stringify({ cfg, recovery: redactRecovery(recovery) });
        await applyConfig(cfg, recovery, running, key);
        if (!running) {
          try {
            await startPostgres(waitMs);
            startError = undefined;
          } catch (err) {
            // Say so now: the sentinel fails a primary that cannot start at once (no failInterval wait).
            startError = errorMessage(err);
            await publish(cd, await pg.observe()).catch(() => undefined);
            throw err;
          }
        } else if (db.spec.automaticPgRestart === true) {
          const worthy = restartWorthy((await pg.observe()).pendingRestart, action.role === 'master');
          if (worthy.length > 0) {
            log.info({ parameters: worthy }, `restarting postgres to apply ${worthy.join(', ')} (automaticPgRestart)`);
            await pg.restart(waitMs);
          }
        }
        // Slots: on the primary one per follower plus the additional ones. On an internal standby,
        // one per sibling standby, so they exist if this one is promoted; created without
        // reserving WAL (restart_lsn stays NULL until used), they pin nothing meanwhile.
        if (action.role === 'master' || action.external !== undefined) {
          // (A standby cluster's primary serves its own standbys too: they need their slots.)
          await pg.syncSlots([
            ...db.spec.followers.map((f) => `stolon_${f}`),
            ...(db.spec.additionalReplicationSlots ?? []).map((n) => `stolon_${n}`),
          ]);
        } else if (action.follow !== undefined) {
          const primaryUid = action.follow.dbUid;
          await pg.syncSlots(
            Object.values(cd.dbs)
              .filter((d) => d.uid !== db.uid && d.spec.followConfig?.type === 'internal' && d.spec.followConfig.dbuid === primaryUid)
              .map((d) => `stolon_${d.uid}`)
              .sort(),
          );
        }
        if (local.generation !== db.generation) {
          await setLocal({ ...local, generation: db.generation, clusterUID: cd.cluster.uid });
        }
        return;
      }
    }
  };

  const runPass = async (): Promise<void> => {
    pass += 1;
    const plog = log.child({ pass });
    const obs = await pg.observe();
    let cd: ClusterData | undefined;
    try {
      const rec = await store.getClusterData();
      cd = rec === null ? undefined : parseClusterData(rec.text);
    } catch (err) {
      if (!(err instanceof ClusterDataInvalidError)) {
        throw err;
      }
      // Invalid clusterdata: keep publishing (so the sentinel knows we are alive) but do nothing.
      await publish(undefined, obs);
      say(plog, `clusterdata unusable, doing nothing: ${err.message}`, 'warn');
      return;
    }
    if (cd !== undefined) {
      spec = resolveSpec(cd.cluster.spec);
      const mine = local.uid === '' ? undefined : cd.dbs[local.uid];
      isPrimary = mine !== undefined && mine.spec.keeperUID === config.uid && mine.spec.role === 'master';
    }
    await publish(cd, obs);
    updateFence();
    if (cd === undefined) {
      say(plog, 'no clusterdata: waiting for `stolonctl init`');
      return;
    }
    if (task !== undefined) {
      say(plog, activity ?? `${task.name} in progress`);
      return;
    }
    const action = planKeeperAction(cd, config.uid, deps.bootUuid, local, {
      initialized: obs.initialized,
      running: obs.running,
      role: obs.role,
      systemId: obs.systemId,
    });
    if (action.kind === 'refuse') {
      activity = action.reason;
      say(plog, action.reason, 'warn');
      return;
    }
    const reason = action.reason + (lastTaskError !== undefined && action.kind !== 'converge' ? ` (last attempt: ${lastTaskError})` : '');
    await execute(action, cd, obs);
    say(plog, action.kind === 'converge' && action.external !== undefined
      ? `${reason} (${redactConninfo(action.external.standbySettings.primaryConninfo ?? '')})`
      : reason);
    if (action.kind === 'converge' || action.kind === 'stop-postgres' || action.kind === 'switchover-stop') {
      // Report the result of the step at once instead of at the next tick.
      await publish(cd, await pg.observe());
    }
  };

  /**
   * Tells the fencer whether to guard PostgreSQL and how long the info lease surely lives. Runs
   * after every publish and every 250 ms, so a frozen or cut-off keeper stops refreshing it.
   */
  const pgData = join(config.dataDir, 'postgres');
  const updateFence = (): void => {
    if (deps.fencer === undefined || state === 'stopping' || state === 'stopped') {
      return;
    }
    const leaseRemainingMs = store.infoLeaseRemainingMs('keepers', config.uid);
    deps.fencer.update(isPrimary ? { armed: true, pgData, leaseRemainingMs: leaseRemainingMs ?? -Infinity, ttlMs: infoTtlMs() } : { armed: false });
    if (leaseRemainingMs !== undefined) {
      // Our info is under our own lease now (and, if primary, our fencer is armed with it).
      deps.fencer.retirePrevious();
    }
  };
  deps.fencer?.onFenced(({ pid, at }) => {
    activity = `self-fenced at ${at}: postgres (postmaster ${pid}) shut down because the store lease could not be renewed; it restarts once the lease is renewed and this keeper is still the primary`;
    log.warn({ postmaster: pid, at }, activity);
    loop.trigger();
  });
  const fenceTimer = deps.fencer === undefined ? undefined : setInterval(updateFence, 250);
  fenceTimer?.unref();

  // Crash detection without waiting for the next pass: postmaster.pid plus kill(pid, 0) every
  // 100 ms (no connection, no query); a change of running state triggers a pass at once, which
  // restarts a crashed postgres (crash recovery) or reports why it cannot.
  let lastRunning: boolean | undefined;
  let checkingRunning = false;
  const runningTimer = setInterval(() => {
    if (checkingRunning || state !== 'running') {
      return;
    }
    checkingRunning = true;
    void pg
      .isRunning()
      .then((r) => {
        if (lastRunning === true && !r && task === undefined) {
          log.warn('postgres is no longer running: checking it now');
          loop.trigger();
        }
        lastRunning = r;
      })
      .catch(() => undefined)
      .finally(() => {
        checkingRunning = false;
      });
  }, 100);
  runningTimer.unref();

  const say = (plog: Logger, reason: string, level: 'info' | 'warn' = 'info') => {
    if (reason !== lastReason) {
      plog[level](reason);
      lastReason = reason;
    } else {
      plog.debug(reason);
    }
  };

  const loop: SerialLoop = startSerialLoop({
    run: reportPasses(deps.status, runPass),
    intervalMs: sleepMs,
    onError: (err) => {
      if (err instanceof StolonError) {
        log.warn({ err, code: err.code }, `pass failed, retrying next tick: ${errorMessage(err)}`);
      } else {
        log.error({ err }, `${BUG_SENTENCE}: ${errorMessage(err)}`);
      }
    },
  });
  let watch: StoreWatch | undefined;
  try {
    watch = await store.watch(['clusterdata'], () => loop.trigger());
  } catch (err) {
    log.warn({ err }, `cannot watch the store yet, relying on the periodic pass: ${errorMessage(err)}`);
  }
  state = 'running';
  log.info({ dataDir: config.dataDir, pgPort: config.pgPort }, 'keeper started');

  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      state = 'stopping';
      log.info({ reason }, 'keeper stopping');
      await loop.stop();
      await task?.promise;
      await watch?.close().catch(() => undefined);
      clearInterval(fenceTimer);
      clearInterval(runningTimer);
      // Before PostgreSQL is stopped below: a clean stop must not be reported as a fence.
      await deps.fencer?.stop();
      // A clean stop takes PostgreSQL down too: the keeper owns it, and leaving a primary running
      // without its keeper would leave it unfenced.
      await pg.stop('fast').catch((err: unknown) => log.warn({ err }, 'stopping postgres failed'));
      await store.deleteInfo('keepers', config.uid).catch(() => undefined);
      await store.close().catch(() => undefined);
      state = 'stopped';
      resolveDone();
    })();
    return stopping;
  };

  return { ready: Promise.resolve(), done, stop, state: () => state };
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(0);
}

/** The recovery config without secrets, for change detection keys. */
function redactRecovery(r: RecoveryConfig | null): unknown {
  if (r === null) {
    return null;
  }
  if (r.mode === 'standby') {
    return { ...r, standby: { ...r.standby, primary: { ...r.standby.primary, password: '' } } };
  }
  return r;
}

/** The sentence logged (and shown by stolonctl) when a keeper throws WAL away. */
export function describeDiscard(d: DiscardedWal, keeperUid: string): string {
  return (
    `keeper ${keeperUid} discards WAL ${formatLsn(d.fromLsn)}–${formatLsn(d.toLsn)} (${d.toLsn - d.fromLsn} bytes) ` +
    `of timeline ${d.timelineID} that the new primary never had (${d.method})`
  );
}
