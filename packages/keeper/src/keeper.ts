/**
 * The keeper daemon: owns one PostgreSQL data directory. Each pass observes PostgreSQL, reads
 * clusterdata, publishes KeeperInfo under a lease whose TTL is the spec's failInterval, plans one
 * step with `planKeeperAction` and executes it through the PostgresManager. Long steps (initdb,
 * pg_basebackup) run as a tracked background task while passes keep publishing
 * (STYLE.md rule 12). Passes run on clusterdata watch events and every sleepInterval.
 *
 * State: starting → running → stopping → stopped.
 */
import { mkdir, readFile, rename, writeFile, chown } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BUG_SENTENCE,
  newUid,
  startSerialLoop,
  type Logger,
  type SerialLoop,
} from '@stolon-ts/common';
import {
  ClusterDataInvalidError,
  DEFAULT_SPEC,
  StolonError,
  errorMessage,
  parseClusterData,
  parseDurationMs,
  resolveSpec,
  type ClusterData,
  type KeeperInfo,
  type PostgresState,
  type ResolvedSpec,
} from '@stolon-ts/cluster';
import { defaultHbaLines, type PgConfig, type PgObservation, type PostgresManager, type StandbySettings } from '@stolon-ts/postgres';
import type { Store, StoreWatch } from '@stolon-ts/store';
import { planKeeperAction, type KeeperAction, type LocalDbState } from './plan.js';

export type KeeperState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface KeeperConfig {
  readonly uid: string;
  /** Keeper data dir: holds `dbstate` and `postgres/` (PGDATA). */
  readonly dataDir: string;
  /** Address and port other keepers and proxies use to reach this PostgreSQL. */
  readonly pgAdvertiseAddress: string;
  readonly pgPort: number;
  readonly suUsername: string;
  readonly replUsername: string;
  /** Needed to build the standby's connection to its primary; never logged. */
  readonly replPassword: string;
  readonly canBeMaster: boolean;
  /** uid/gid to chown keeper-written files to (set when running as root). */
  readonly fileOwner?: { readonly uid: number; readonly gid: number };
}

export interface KeeperDeps {
  readonly store: Store;
  readonly logger: Logger;
  readonly pg: PostgresManager;
  /** New per process start. */
  readonly bootUuid: string;
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

/** Reads `<dataDir>/dbstate`; a missing file means no DB yet. */
async function readDbState(dataDir: string): Promise<LocalDbState> {
  try {
    const raw = JSON.parse(await readFile(join(dataDir, 'dbstate'), 'utf8')) as Partial<LocalDbState>;
    return { uid: typeof raw.uid === 'string' ? raw.uid : '', generation: typeof raw.generation === 'number' ? raw.generation : 0 };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { uid: '', generation: 0 };
    }
    throw new StolonError('DATA_DIR_INVALID', `cannot read ${join(dataDir, 'dbstate')}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Writes `<dataDir>/dbstate` atomically (temp file, rename). */
async function writeDbState(dataDir: string, s: LocalDbState, owner: KeeperConfig['fileOwner']): Promise<void> {
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
  let appliedConfigKey = '';
  let lastReason = '';
  let pass = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const sleepMs = () => spec?.sleepIntervalMs ?? parseDurationMs(DEFAULT_SPEC.sleepInterval) ?? 1000;
  const infoTtlMs = () => spec?.failIntervalMs ?? parseDurationMs(DEFAULT_SPEC.failInterval) ?? 6000;

  const postgresState = (obs: PgObservation): PostgresState => ({
    uid: local.uid,
    generation: local.generation,
    listenAddress: config.pgAdvertiseAddress,
    port: String(config.pgPort),
    healthy: obs.running && task === undefined,
    systemID: obs.systemId,
    timelineID: obs.timelineId,
    xLogPos: obs.xLogPos,
    timelinesHistory: [],
    pgParameters: {},
    synchronousStandbys: obs.replication
      .filter((r) => r.syncState === 'sync' && r.applicationName.startsWith('stolon_'))
      .map((r) => r.applicationName.slice('stolon_'.length)),
    olderWalFile: obs.olderWalFile,
    ...(obs.role !== undefined ? { role: obs.role } : {}),
    running: obs.running,
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
    };
    await store.setInfo('keepers', config.uid, info, infoTtlMs());
  };

  const pgConfig = (action: Extract<KeeperAction, { kind: 'converge' }>): PgConfig => ({
    listenAddress: config.pgAdvertiseAddress,
    port: config.pgPort,
    parameters: action.db.spec.pgParameters,
    maxStandbys: action.db.spec.maxStandbys,
    additionalWalSenders: action.db.spec.additionalWalSenders,
    synchronousStandbyNames: '',
    usePgrewind: action.db.spec.usePgrewind,
    hba: defaultHbaLines({ suUsername: config.suUsername, replUsername: config.replUsername, userLines: action.db.spec.pgHBA }),
  });

  const standbySettings = (dbUid: string, from: { host: string; port: number }): StandbySettings => ({
    primary: { host: from.host, port: from.port, user: config.replUsername, password: config.replPassword },
    applicationName: `stolon_${dbUid}`,
    slotName: `stolon_${dbUid}`,
  });

  const runTask = (name: string, fn: () => Promise<void>) => {
    lastTaskError = undefined;
    const promise = fn()
      .then(() => log.info({ task: name }, `${name}: done`))
      .catch((err: unknown) => {
        lastTaskError = `${name} failed: ${errorMessage(err)}`;
        log.error({ err, task: name }, lastTaskError);
      })
      .finally(() => {
        task = undefined;
        loop.trigger();
      });
    task = { name, promise };
  };

  const setLocal = async (s: LocalDbState) => {
    await writeDbState(config.dataDir, s, config.fileOwner);
    local = s;
  };

  const execute = async (action: KeeperAction): Promise<void> => {
    switch (action.kind) {
      case 'wait':
        return;
      case 'stop-postgres':
        await pg.stop('fast');
        return;
      case 'init-new':
        runTask(`initdb for db ${action.db.uid}`, async () => {
          await pg.stop('immediate');
          await setLocal({ uid: '', generation: 0 });
          await pg.removeData();
          const nc = action.db.spec.newConfig ?? {};
          await pg.init({
            ...(nc.locale !== undefined ? { locale: nc.locale } : {}),
            ...(nc.encoding !== undefined ? { encoding: nc.encoding } : {}),
            ...(nc.dataChecksums !== undefined ? { dataChecksums: nc.dataChecksums } : {}),
          });
          appliedConfigKey = '';
          await setLocal({ uid: action.db.uid, generation: 0 });
        });
        return;
      case 'resync':
        runTask(`pg_basebackup of db ${action.db.uid} from db ${action.from.dbUid}`, async () => {
          await pg.stop('immediate');
          await setLocal({ uid: '', generation: 0 });
          await pg.baseBackup(standbySettings(action.db.uid, action.from));
          appliedConfigKey = '';
          await setLocal({ uid: action.db.uid, generation: 0 });
        });
        return;
      case 'converge': {
        const cfg = pgConfig(action);
        const standby = action.role === 'standby' && action.follow !== undefined ? standbySettings(action.db.uid, action.follow) : null;
        const key = JSON.stringify({ cfg, standby: standby === null ? null : { ...standby, primary: { ...standby.primary, password: '' } } });
        const running = await pg.isRunning();
        const waitMs = spec?.dbWaitReadyTimeoutMs ?? 60_000;
        if (action.promote) {
          // Promote first: the manager (like pg_ctl) needs the instance still in standby mode,
          // and rewriting the config below removes standby.signal.
          await pg.promote(waitMs);
        }
        if (key !== appliedConfigKey) {
          await pg.writeConfig(cfg, standby);
          if (running) {
            await pg.reload();
          }
          appliedConfigKey = key;
        }
        if (!running) {
          await pg.start(waitMs);
        }
        if (action.role === 'master') {
          await pg.syncSlots(action.db.spec.followers.map((f) => `stolon_${f}`));
        }
        if (local.generation !== action.db.generation) {
          await setLocal({ uid: local.uid, generation: action.db.generation });
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
    }
    await publish(cd, obs);
    if (cd === undefined) {
      say(plog, 'no clusterdata: waiting for `stolonctl init`');
      return;
    }
    if (task !== undefined) {
      say(plog, `${task.name} in progress`);
      return;
    }
    const action = planKeeperAction(cd, config.uid, deps.bootUuid, local, {
      initialized: obs.initialized,
      running: obs.running,
      role: obs.role,
    });
    const reason = action.reason + (lastTaskError !== undefined && action.kind !== 'converge' ? ` (last attempt: ${lastTaskError})` : '');
    await execute(action);
    say(plog, reason);
    if (action.kind === 'converge' || action.kind === 'stop-postgres') {
      // Report the result of the step at once instead of at the next tick.
      await publish(cd, await pg.observe());
    }
  };

  const say = (plog: Logger, reason: string, level: 'info' | 'warn' = 'info') => {
    if (reason !== lastReason) {
      plog[level](reason);
      lastReason = reason;
    } else {
      plog.debug(reason);
    }
  };

  const loop: SerialLoop = startSerialLoop({
    run: runPass,
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
