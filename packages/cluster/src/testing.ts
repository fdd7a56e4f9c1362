/**
 * `@stolon-ts/cluster/testing`: fixture builders for tests of every package. Small, chainable
 * builders for cluster data, single DBs and the infos keepers and proxies publish, so that a test
 * states only what matters to it (`aCluster().initialized().withPrimary('k1').withStandby('k2')`)
 * instead of a 200-line literal. Pure, like the rest of this package: no I/O.
 *
 * Conventions, so that tests can name things without looking them up:
 * - the DB of keeper `k1` has uid `db-k1` (override with `{ uid }`);
 * - DB specs are built exactly as the sentinel builds them from the cluster spec, so a cluster
 *   built here and observed through `keeperInfo` is a fixed point of `decide` (no spec drift,
 *   no generation bump) unless the test changes something;
 * - keeper infos report what the cluster data says their DB is (uid, generation, LSN,
 *   timeline), i.e. "the keeper applied everything", unless overridden;
 * - in a standby cluster (`aCluster({ spec: STANDBY_SPEC })`) `withPrimary` builds the DB that
 *   follows the external primary (role standby, followConfig external), as the sentinel does.
 */
import { emptyMemory, type DecideInput, type SentinelMemory } from './decide.js';
import { ConfigError } from './errors.js';
import { formatDurationMs } from './duration.js';
import { resolveSpec } from './spec.js';
import {
  CURRENT_FORMAT_VERSION,
  type ClusterData,
  type ClusterPhase,
  type ClusterSpec,
  type DB,
  type DBInitMode,
  type DBSpec,
  type DiscardedWal,
  type FollowConfig,
  type KeeperInfo,
  type ProxyInfo,
  type ResolvedSpec,
  type Role,
} from './types.js';

/**
 * The ConfigError `fn` throws, for a test to check its field and message.
 * @throws `fn`'s error when it is not a ConfigError, and an Error when `fn` returns.
 */
export function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) {
      return err;
    }
    throw err;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

/** Wall-clock time every fixture is stamped with. */
export const T0 = '2025-01-01T00:00:00.000Z';
/** The cluster uid of every `aCluster()`. */
export const CLUSTER_UID = 'c1a55e00';
/** A valid minimal cluster spec (everything else defaulted). */
export const MINIMAL_SPEC: ClusterSpec = { initMode: 'new' };
/** Primary conninfo of the external primary `STANDBY_SPEC` follows. */
export const EXTERNAL_CONNINFO = 'host=10.9.9.9 port=5432 user=repl';
/**
 * A standby cluster (role standby, initialised by pitr): its primary DB follows an external
 * primary (role standby, followConfig external), its other DBs follow that DB.
 */
export const STANDBY_SPEC: ClusterSpec = {
  initMode: 'pitr',
  role: 'standby',
  pitrConfig: { dataRestoreCommand: 'pg_basebackup -D %d -h 10.9.9.9 -U repl' },
  standbyConfig: {
    standbySettings: { primaryConninfo: EXTERNAL_CONNINFO, primarySlotName: 'standby_cluster' },
    archiveRecoverySettings: { restoreCommand: 'cp /archive/%f %p' },
  },
};

/** `T0` plus `ms` milliseconds, as an RFC 3339 string. */
export function wallAt(ms: number): string {
  return new Date(Date.parse(T0) + ms).toISOString();
}

/** Default DB uid of a keeper's DB. */
export function dbOf(keeperUid: string): string {
  return `db-${keeperUid}`;
}

/** Options describing one DB (and the keeper owning it) in a built cluster. */
export interface DbOptions {
  /** DB uid; default `db-<keeperUid>`. */
  readonly uid?: string;
  /** Last LSN the DB reported (bytes); default 0x3000000. */
  readonly xLogPos?: number;
  /** Timeline the DB reported; default 1. */
  readonly timeline?: number;
  /** Spec generation; default 1. */
  readonly generation?: number;
  /** Generation the keeper reported as applied; default = `generation` (converged). */
  readonly currentGeneration?: number;
  /** `status.healthy` as last recorded; default true. */
  readonly healthy?: boolean;
  /** DB spec init mode; default "none". */
  readonly initMode?: DBInitMode;
  /** PostgreSQL system identifier; default "7000000000000000001". */
  readonly systemId?: string;
  /** `status.pendingRestart` as last recorded; default absent. */
  readonly pendingRestart?: readonly string[];
  /** `status.discardedWal` as last recorded; default absent. */
  readonly discardedWal?: DiscardedWal;
  /**
   * Primary only: `spec.synchronousStandbys` (DB uids); default []. The primary's
   * `spec.synchronousReplication` follows the cluster spec, as the sentinel sets it.
   */
  readonly synchronousStandbys?: readonly string[];
  /** Primary only: `spec.externalSynchronousStandbys`; default []. */
  readonly externalSynchronousStandbys?: readonly string[];
  /** Primary only: `status.synchronousStandbys`, the sentinel's known-in-sync list; default []. */
  readonly knownSynchronousStandbys?: readonly string[];
  /** `status.listenAddress` as last recorded; default "127.0.0.1". */
  readonly listenAddress?: string;
  /** `status.port` as last recorded; default "5432" plus the DB's index in the cluster. */
  readonly port?: string;
}

export interface StandbyOptions extends DbOptions {
  /** Keeper uid of the DB this standby follows; default the primary's keeper. */
  readonly follows?: string;
}

export interface KeeperOptions {
  /** `status.healthy` as last recorded; default true. */
  readonly healthy?: boolean;
  readonly canBeMaster?: boolean;
  /** Set by `stolonctl failkeeper`. */
  readonly forceFail?: boolean;
  /** The keeper's `--priority` as last recorded; default absent (0). */
  readonly priority?: number;
  /** `--can-be-synchronous-replica` as last recorded; default absent (true). */
  readonly canBeSynchronousReplica?: boolean;
  /** `status.lastHealthyTime`; default `T0`. */
  readonly lastHealthyTime?: string;
}

/** Options of the keeper owning a DB (`healthy` there is the DB's; this is the keeper's). */
export interface OwnerOptions {
  /** The keeper's `status.healthy` as last recorded; default true. */
  readonly keeperHealthy?: boolean;
  readonly canBeMaster?: boolean;
  readonly forceFail?: boolean;
  readonly priority?: number;
  readonly canBeSynchronousReplica?: boolean;
}

const DEFAULT_SYSTEM_ID = '7000000000000000001';
const DEFAULT_LSN = 0x3000000;

interface PendingDb {
  readonly keeperUid: string;
  readonly role: 'master' | 'standby';
  readonly opts: StandbyOptions;
}

/** Builder of a `ClusterData` document; `build()` returns a fresh, unshared object every time. */
export class ClusterBuilder {
  private phase: ClusterPhase = 'initializing';
  private readonly keepers = new Map<string, KeeperOptions>();
  private readonly dbs: PendingDb[] = [];
  private primaryKeeper: string | undefined;
  private proxy: { masterKeeper: string | undefined; enabled: readonly string[]; generation: number } = {
    masterKeeper: undefined,
    enabled: [],
    generation: 1,
  };

  constructor(
    private readonly spec: ClusterSpec,
    private readonly uid: string = CLUSTER_UID,
  ) {}

  /** Phase `normal` (initialisation finished). */
  initialized(): this {
    this.phase = 'normal';
    return this;
  }

  /** A registered keeper (with no DB unless `withPrimary`/`withStandby` gives it one). */
  withKeeper(uid: string, opts: KeeperOptions = {}): this {
    this.keepers.set(uid, { ...this.keepers.get(uid), ...opts });
    return this;
  }

  /**
   * Keeper `keeperUid` (added if needed) owns the primary DB; `cluster.status.master` points at it.
   * Calling it again for the same keeper amends that DB (`healthyPair().withPrimary('k1', { forceFail: true })`).
   */
  withPrimary(keeperUid: string, opts: DbOptions & OwnerOptions = {}): this {
    this.withKeeper(keeperUid, ownerOptions(opts));
    this.putDb({ keeperUid, role: 'master', opts });
    this.primaryKeeper = keeperUid;
    return this;
  }

  /** Keeper `keeperUid` (added if needed) owns a standby DB following `opts.follows` (default: the primary). */
  withStandby(keeperUid: string, opts: StandbyOptions & OwnerOptions = {}): this {
    this.withKeeper(keeperUid, ownerOptions(opts));
    this.putDb({ keeperUid, role: 'standby', opts });
    return this;
  }

  /** Adds a keeper's DB; declaring it again amends it (options merged, role replaced). */
  private putDb(d: PendingDb): void {
    const i = this.dbs.findIndex((x) => x.keeperUid === d.keeperUid);
    if (i < 0) {
      this.dbs.push(d);
    } else {
      this.dbs[i] = { ...d, opts: { ...this.dbs[i]?.opts, ...d.opts } };
    }
  }

  /** Proxies route to `keeperUid`'s DB; `enabled` proxies may route; proxy generation `generation`. */
  routedTo(keeperUid: string, enabled: readonly string[], generation = 2): this {
    this.proxy = { masterKeeper: keeperUid, enabled, generation };
    return this;
  }

  /** Proxies route nowhere (a fence), at proxy generation `generation`. */
  fenced(generation: number, enabled: readonly string[] = []): this {
    this.proxy = { masterKeeper: undefined, enabled, generation };
    return this;
  }

  /** The cluster data as declared; `dbs[*].spec.followers` computed as the sentinel computes them. */
  build(): ClusterData {
    const r = resolveSpec(this.spec);
    const uidOf = (keeperUid: string): string =>
      this.dbs.find((d) => d.keeperUid === keeperUid)?.opts.uid ?? dbOf(keeperUid);
    const masterUid = this.primaryKeeper === undefined ? '' : uidOf(this.primaryKeeper);

    const cd: ClusterData = {
      formatVersion: CURRENT_FORMAT_VERSION,
      changeTime: T0,
      cluster: {
        uid: this.uid,
        generation: 1,
        changeTime: T0,
        spec: structuredClone(this.spec),
        status: { phase: this.phase, master: masterUid },
      },
      keepers: {},
      dbs: {},
      proxy: {
        uid: 'proxy0',
        generation: this.proxy.generation,
        changeTime: T0,
        spec: {
          masterDbUid: this.proxy.masterKeeper === undefined ? '' : uidOf(this.proxy.masterKeeper),
          enabledProxies: [...this.proxy.enabled],
        },
        status: {},
      },
    };

    for (const [uid, k] of this.keepers) {
      cd.keepers[uid] = {
        uid,
        generation: 1,
        changeTime: T0,
        spec: {},
        status: {
          healthy: k.healthy ?? true,
          lastHealthyTime: k.lastHealthyTime ?? T0,
          bootUUID: `boot-${uid}`,
          postgresBinaryVersion: { Maj: 15, Min: 0 },
          ...(k.canBeMaster === undefined ? {} : { canBeMaster: k.canBeMaster }),
          ...(k.forceFail === undefined ? {} : { forceFail: k.forceFail }),
          ...(k.priority === undefined ? {} : { priority: k.priority }),
          ...(k.canBeSynchronousReplica === undefined ? {} : { canBeSynchronousReplica: k.canBeSynchronousReplica }),
        },
      };
    }

    for (const [i, d] of this.dbs.entries()) {
      const uid = d.opts.uid ?? dbOf(d.keeperUid);
      const followed = d.role === 'standby' ? (d.opts.follows ?? this.primaryKeeper) : undefined;
      cd.dbs[uid] = buildDb(r, {
        keeperUid: d.keeperUid,
        role: d.role,
        uid,
        followedDb: followed === undefined ? undefined : uidOf(followed),
        isMasterDb: uid === masterUid,
        defaultPort: String(5432 + i),
        opts: d.opts,
      });
    }
    // Followers as the sentinel computes them: sorted uids of the DBs following each DB.
    for (const db of Object.values(cd.dbs)) {
      db.spec.followers = Object.values(cd.dbs)
        .filter((f) => f.spec.followConfig?.dbuid === db.uid)
        .map((f) => f.uid)
        .sort();
    }
    return cd;
  }
}

/** What `buildDb` needs beyond the options: where the DB sits in its cluster. */
interface DbPlace {
  readonly keeperUid: string;
  /** The role the sentinel gave the DB in its cluster (a standby cluster's primary is 'master'). */
  readonly role: Role;
  readonly uid: string;
  /** DB uid an internal standby follows. */
  readonly followedDb: string | undefined;
  /** Whether it is `cluster.status.master` (it then gets `additionalMasterReplicationSlots`). */
  readonly isMasterDb: boolean;
  readonly defaultPort: string;
  readonly opts: DbOptions;
}

/** One DB, its spec derived from the resolved cluster spec `r` as the sentinel derives it. */
function buildDb(r: ResolvedSpec, p: DbPlace): DB {
  const o = p.opts;
  const generation = o.generation ?? 1;
  const initMode = o.initMode ?? 'none';
  // In a standby cluster the primary DB follows the external primary, as the sentinel makes it.
  const externalPrimary = p.role === 'master' && r.role === 'standby';
  let followConfig: FollowConfig | null = null;
  if (p.followedDb !== undefined) {
    followConfig = { type: 'internal', dbuid: p.followedDb };
  } else if (externalPrimary) {
    followConfig = { type: 'external' };
    if (r.standbyConfig?.standbySettings !== undefined) {
      followConfig.standbySettings = { ...r.standbyConfig.standbySettings };
    }
    if (r.standbyConfig?.archiveRecoverySettings !== undefined) {
      followConfig.archiveRecoverySettings = { ...r.standbyConfig.archiveRecoverySettings };
    }
  }
  return {
    uid: p.uid,
    generation,
    changeTime: T0,
    spec: {
      keeperUID: p.keeperUid,
      requestTimeout: formatDurationMs(r.requestTimeoutMs),
      maxStandbys: r.maxStandbys,
      // The sentinel turns it on for a real primary only (never in a standby cluster).
      synchronousReplication: p.role === 'master' && r.synchronousReplication && r.role === 'master',
      usePgrewind: r.usePgrewind,
      additionalWalSenders: r.additionalWalSenders,
      additionalReplicationSlots:
        p.isMasterDb && r.additionalMasterReplicationSlots !== null ? [...r.additionalMasterReplicationSlots] : null,
      initMode,
      pgParameters: { ...r.pgParameters },
      pgHBA: r.pgHBA === null ? null : [...r.pgHBA],
      suReplAccessMode: r.defaultSUReplAccessMode,
      suAllowedCIDRs: [...r.suAllowedCIDRs],
      automaticPgRestart: r.automaticPgRestart,
      role: externalPrimary ? 'standby' : p.role,
      followConfig,
      followers: [],
      includePreviousConfig: false,
      synchronousStandbys: [...(o.synchronousStandbys ?? [])],
      externalSynchronousStandbys: [...(o.externalSynchronousStandbys ?? [])],
      ...(initMode === 'new' ? { newConfig: { ...r.newConfig } } : {}),
      ...(initMode === 'pitr' && r.pitrConfig !== null ? { pitrConfig: structuredClone(r.pitrConfig) } : {}),
    },
    status: {
      healthy: o.healthy ?? true,
      currentGeneration: o.currentGeneration ?? generation,
      listenAddress: o.listenAddress ?? '127.0.0.1',
      port: o.port ?? p.defaultPort,
      systemdID: o.systemId ?? DEFAULT_SYSTEM_ID,
      timelineID: o.timeline ?? 1,
      xLogPos: o.xLogPos ?? DEFAULT_LSN,
      timelinesHistory: [],
      pgParameters: {},
      synchronousStandbys: [...(o.knownSynchronousStandbys ?? [])],
      olderWalFile: '',
      ...(o.pendingRestart === undefined ? {} : { pendingRestart: [...o.pendingRestart] }),
      ...(o.discardedWal === undefined ? {} : { discardedWal: { ...o.discardedWal } }),
    },
  };
}

/** Options of a stand-alone DB built by `aDb`. */
export interface StandaloneDbOptions extends DbOptions {
  /** Cluster spec the DB spec is derived from, as the sentinel derives it; default `MINIMAL_SPEC`. */
  readonly clusterSpec?: ClusterSpec;
  /**
   * Fields that replace the derived spec's, applied last: `followConfig`, `followers`, or a spec
   * no sentinel would write (the planner's and the proxy's tests feed such DBs on purpose).
   */
  readonly spec?: Partial<DBSpec>;
}

/**
 * One DB of keeper `keeperUid`, outside any cluster builder, for tests that assemble cluster data
 * themselves. Its spec is derived from `opts.clusterSpec` as the sentinel derives it (a primary
 * is `cluster.status.master`; in a standby cluster it follows the external primary); it follows
 * no DB and has no followers unless `opts.spec` says so. Its status is that of `DbOptions`, port
 * "5432" unless given. Returns a fresh object every call.
 * @throws SpecValidationError when `opts.clusterSpec` is invalid
 */
export function aDb(keeperUid: string, role: Role, opts: StandaloneDbOptions = {}): DB {
  const uid = opts.uid ?? dbOf(keeperUid);
  const db = buildDb(resolveSpec(opts.clusterSpec ?? MINIMAL_SPEC), {
    keeperUid,
    role,
    uid,
    followedDb: undefined,
    isMasterDb: role === 'master',
    defaultPort: '5432',
    opts,
  });
  if (opts.spec !== undefined) {
    db.spec = { ...db.spec, ...structuredClone(opts.spec) };
  }
  return db;
}

function ownerOptions(o: OwnerOptions): KeeperOptions {
  return {
    ...(o.keeperHealthy === undefined ? {} : { healthy: o.keeperHealthy }),
    ...(o.canBeMaster === undefined ? {} : { canBeMaster: o.canBeMaster }),
    ...(o.forceFail === undefined ? {} : { forceFail: o.forceFail }),
    ...(o.priority === undefined ? {} : { priority: o.priority }),
    ...(o.canBeSynchronousReplica === undefined ? {} : { canBeSynchronousReplica: o.canBeSynchronousReplica }),
  };
}

/**
 * A cluster builder; `spec` defaults to `MINIMAL_SPEC`, the cluster uid `uid` to `CLUSTER_UID`.
 * Phase `initializing` until `.initialized()`. The spec is validated by `build()`.
 */
export function aCluster(opts: { readonly spec?: ClusterSpec; readonly uid?: string } = {}): ClusterBuilder {
  return new ClusterBuilder(opts.spec ?? MINIMAL_SPEC, opts.uid ?? CLUSTER_UID);
}

export interface KeeperInfoOptions {
  /** Postgres reports healthy; default true. */
  readonly pgHealthy?: boolean;
  /** DB uid found in the data directory; default the uid of the keeper's DB in `cd` ("" if none). */
  readonly dbUid?: string;
  readonly xLogPos?: number;
  /** Standby's replayed LSN (absent by default, as a primary reports it). */
  readonly replayedXLogPos?: number;
  readonly timeline?: number;
  /** Applied DB generation; default the DB's `generation` in `cd` (converged), 0 when it has none. */
  readonly generation?: number;
  readonly systemId?: string;
  readonly canBeMaster?: boolean;
  /** Default `cd.cluster.uid`. */
  readonly clusterUID?: string;
  /** The keeper has no postgres state to report at all. */
  readonly noPostgresState?: boolean;
  /** `--priority`; default the keeper's `status.priority` in `cd` (absent if none). */
  readonly priority?: number;
  /** Parameters waiting for a restart; default the DB's `status.pendingRestart` in `cd` (absent if none). */
  readonly pendingRestart?: readonly string[];
  /** WAL range discarded on rejoin; default the DB's `status.discardedWal` in `cd` (absent if none). */
  readonly discardedWal?: DiscardedWal;
  /** Whether the postmaster runs (absent by default). */
  readonly running?: boolean;
  /** `postgresState.cleanShutdown` (set only with it). */
  readonly cleanShutdown?: boolean;
  /**
   * DB uids reported `sync` in pg_stat_replication; default the DB's known list
   * (`status.synchronousStandbys`), i.e. everything the sentinel knows in sync still is.
   */
  readonly syncStandbys?: readonly string[];
  /** `--can-be-synchronous-replica`; default the keeper's status in `cd` (absent if none). */
  readonly canBeSynchronousReplica?: boolean;
  /** The keeper's last start attempt failed with this message (absent by default). */
  readonly startError?: string;
}

/**
 * The info keeper `uid` publishes, consistent with `cd`: same cluster uid, its DB's uid and
 * generation, and that DB's last recorded LSN, timeline and system id, unless overridden.
 */
export function keeperInfo(uid: string, cd: ClusterData, opts: KeeperInfoOptions = {}): KeeperInfo {
  const db = Object.values(cd.dbs).find((d) => d.spec.keeperUID === uid);
  const keeper = cd.keepers[uid];
  const canBeMaster = opts.canBeMaster ?? keeper?.status.canBeMaster;
  const priority = opts.priority ?? keeper?.status.priority;
  const canBeSynchronousReplica = opts.canBeSynchronousReplica ?? keeper?.status.canBeSynchronousReplica;
  const info: KeeperInfo = {
    infoUID: `info-${uid}`,
    uid,
    clusterUID: opts.clusterUID ?? cd.cluster.uid,
    bootUUID: `boot-${uid}`,
    postgresBinaryVersion: { Maj: 15, Min: 0 },
    ...(canBeMaster === undefined ? {} : { canBeMaster }),
    ...(priority === undefined ? {} : { priority }),
    ...(canBeSynchronousReplica === undefined ? {} : { canBeSynchronousReplica }),
  };
  if (opts.noPostgresState === true) {
    return info;
  }
  info.postgresState = {
    uid: opts.dbUid ?? db?.uid ?? '',
    generation: opts.generation ?? db?.generation ?? 0,
    listenAddress: db?.status.listenAddress ?? '127.0.0.1',
    port: db?.status.port ?? '5432',
    healthy: opts.pgHealthy ?? true,
    systemID: opts.systemId ?? (db?.status.systemdID || DEFAULT_SYSTEM_ID),
    timelineID: opts.timeline ?? (db?.status.timelineID || 1),
    xLogPos: opts.xLogPos ?? db?.status.xLogPos ?? 0,
    ...(opts.replayedXLogPos !== undefined ? { replayedXLogPos: opts.replayedXLogPos } : {}),
    timelinesHistory: structuredClone(db?.status.timelinesHistory ?? []),
    pgParameters: structuredClone(db?.status.pgParameters ?? {}),
    synchronousStandbys: [...(opts.syncStandbys ?? db?.status.synchronousStandbys ?? [])],
    olderWalFile: db?.status.olderWalFile ?? '',
    ...(opts.running !== undefined ? { running: opts.running } : {}),
    ...(opts.cleanShutdown !== undefined ? { cleanShutdown: opts.cleanShutdown } : {}),
    ...(opts.startError !== undefined ? { startError: opts.startError } : {}),
  };
  const pendingRestart = opts.pendingRestart ?? db?.status.pendingRestart;
  if (pendingRestart !== undefined) {
    info.postgresState.pendingRestart = [...pendingRestart];
  }
  const discardedWal = opts.discardedWal ?? db?.status.discardedWal;
  if (discardedWal !== undefined) {
    info.postgresState.discardedWal = { ...discardedWal };
  }
  return info;
}

/** The info proxy `uid` publishes while enforcing proxy generation `generation`. */
export function proxyInfo(uid: string, generation: number): ProxyInfo {
  return { infoUID: `pinfo-${uid}`, UID: uid, Generation: generation, ProxyTimeout: 4_000_000_000 };
}

/** Keys infos by uid, as the store lists them. */
export function byUid<T extends KeeperInfo | ProxyInfo>(...infos: readonly T[]): Record<string, T> {
  const out: Record<string, T> = {};
  for (const i of infos) {
    out['uid' in i ? i.uid : i.UID] = i;
  }
  return out;
}

/**
 * `infos` as published again at `now`: each gets a new progress marker (`infoUID`), as a keeper
 * publishes every pass and a proxy after every successful check; those whose uid is in `stalled`
 * keep theirs (a hung keeper pass, a proxy whose checks fail). For multi-pass tests.
 */
export function republished<T extends KeeperInfo | ProxyInfo>(infos: readonly T[], now: number, stalled: readonly string[] = []): T[] {
  return infos.map((i) => (stalled.includes('uid' in i ? i.uid : i.UID) ? i : { ...i, infoUID: `${i.infoUID}@${now}` }));
}

/** A deterministic `newUid`: "u1", "u2", ... (a fresh sequence per call). */
export function seqUids(prefix = 'u'): () => string {
  let n = 0;
  return () => `${prefix}${++n}`;
}

/** Freezes `value` and everything reachable from it; returns it typed as readonly. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) {
      deepFreeze(v);
    }
  }
  return value;
}

/** What one sentinel pass observes, for `decideInput`. */
export interface Observed {
  readonly keepers?: readonly KeeperInfo[];
  readonly proxies?: readonly ProxyInfo[];
  readonly memory?: SentinelMemory;
  /** Monotonic ms; default 10 000. */
  readonly now?: number;
  /** Default `wallAt(now)`. */
  readonly wallTime?: string;
  /** Default `seqUids()`. */
  readonly newUid?: () => string;
}

/** A deep-frozen `decide` input: any mutation of it inside `decide` throws in these (strict) modules. */
export function decideInput(cd: ClusterData, o: Observed = {}): DecideInput {
  const now = o.now ?? 10_000;
  return {
    cd: deepFreeze(cd),
    keeperInfos: deepFreeze(byUid(...(o.keepers ?? []))),
    proxyInfos: deepFreeze(byUid(...(o.proxies ?? []))),
    memory: deepFreeze(o.memory ?? emptyMemory()),
    now,
    wallTime: o.wallTime ?? wallAt(now),
    newUid: o.newUid ?? seqUids(),
  };
}
