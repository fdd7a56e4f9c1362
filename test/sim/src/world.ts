/**
 * The simulated world: keepers with their data directories and PostgreSQL instances, proxies,
 * the store (clusterdata plus info objects under TTLs) and the leader sentinel, driven tick by
 * tick. The decisions are the real ones: the sentinel's `decide`, the keeper's
 * `planKeeperAction`, the proxy's `resolveTarget`; only their effects on PostgreSQL, the clock
 * and the store are simulated. Deterministic: no clock, no randomness, no I/O.
 */
import {
  FAKE_SYNC_STANDBY,
  decide,
  emptyMemory,
  newClusterData,
  type ClusterData,
  type ClusterSpec,
  type KeeperInfo,
  type ProxyInfo,
  type SentinelMemory,
  type TimelineHistoryEntry,
} from '@stolon-ts/cluster';
import { planKeeperAction, type KeeperAction } from '@stolon-ts/keeper';
import { resolveTarget, type ProxyTarget } from '@stolon-ts/proxy';
import { HEAL_TICK, MAX_STANDBY_LAG, WRITE_BYTES, type Fault, type Scenario } from './model.js';

const T0_MS = Date.parse('2025-01-01T00:00:00.000Z');
const TICK_MS = 1000;
const CLUSTER_UID = 'c0ffee00';
const HOST = '127.0.0.1';
/** Size of a shutdown checkpoint record (bytes): what a clean shutdown adds to the WAL. */
const CHECKPOINT_BYTES = 104;
/** Ticks a clone (pg_basebackup), an initdb and a promotion take. */
const CLONE_TICKS = 3;
const INIT_TICKS = 2;
const PROMOTE_TICKS = 1;

/** The cluster spec of every simulated cluster: short timers, so a sequence fits in ~60 ticks. */
function simSpec(sync: boolean): ClusterSpec {
  return {
    initMode: 'new',
    sleepInterval: '1s',
    requestTimeout: '500ms',
    failInterval: '3s',
    proxyCheckInterval: '1s',
    proxyTimeout: '3s',
    convergenceTimeout: '10s',
    initTimeout: '10s',
    // Shorter than the 60 s default, so that a switchover that cannot finish is given up within
    // the liveness window.
    switchoverTimeout: '10s',
    maxStandbyLag: MAX_STANDBY_LAG,
    ...(sync ? { synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 1 } : {}),
  };
}

type Proc = 'up' | 'dead' | 'hung' | 'partitioned';

/** A keeper's data directory. */
interface DataDir {
  uid: string;
  generation: number;
  initialized: boolean;
  systemId: string;
  timeline: number;
  /** End of WAL (bytes): flushed on a primary, received on a standby. */
  lsn: number;
  /** Last checkpoint location, what a stopped instance reports. */
  checkpoint: number;
  history: TimelineHistoryEntry[];
  /** Role the instance had when it last ran. */
  role: 'master' | 'standby';
}

interface Pg {
  running: boolean;
  /** Whether the last stop was a clean shutdown (pg_controldata `shut down`), not a crash. */
  clean: boolean;
  /** Port of the instance a standby streams from. */
  followPort: number | undefined;
  /** DB uids in synchronous_standby_names (primary), FAKE_SYNC_STANDBY included. */
  syncNames: string[];
  /** Standbys that streamed from this primary in the last tick. */
  streaming: Set<string>;
  startError: string | undefined;
}

interface Task {
  readonly kind: 'clone' | 'init' | 'promote';
  readonly doneAt: number;
  readonly action: KeeperAction;
}

interface SimKeeper {
  readonly uid: string;
  readonly port: number;
  proc: Proc;
  /** Until when a transient fault lasts: true means until the heal tick, 'forever' never. */
  procForever: boolean;
  boot: number;
  data: DataDir;
  pg: Pg;
  task: Task | undefined;
  lag: boolean;
  /** Lagging, and not even a clean shutdown of its primary reaches it. */
  stalled: boolean;
  refuseClone: boolean;
  wontStart: boolean;
  /** Highest commit position written on this primary (bytes). */
  commitLsn: number;
  info: KeeperInfo | undefined;
  infoExpires: number;
}

interface SimProxy {
  readonly uid: string;
  state: 'up' | 'failing' | 'partitioned';
  forever: boolean;
  target: ProxyTarget | null;
  generation: number;
  lastOk: number;
  /** The last info published (a new infoUID per successful check), kept alive by the lease. */
  info: ProxyInfo | undefined;
  infoExpires: number;
}

/** A property violation: which property, at which tick, and a sentence saying what was seen. */
export interface Violation {
  readonly property: 'a-liveness' | 'b-two-primaries' | 'c-sync-promotion' | 'd-fenced-proxy';
  readonly tick: number;
  readonly detail: string;
}

/** The acknowledged commit with the highest position: on `timeline`, at `lsn`. */
interface Acked {
  timeline: number;
  lsn: number;
}

/** Contains `ack`: the data's timeline history reaches at least `ack.lsn` on `ack.timeline`. */
function contains(d: DataDir, ack: Acked): boolean {
  if (d.timeline === ack.timeline) {
    return d.lsn >= ack.lsn;
  }
  if (d.timeline < ack.timeline) {
    return false;
  }
  const h = d.history.find((e) => e.timelineID === ack.timeline);
  return h !== undefined && h.switchPoint >= ack.lsn;
}

/** The simulated cluster. Create with {@link World.create}, copy with {@link World.clone}. */
export class World {
  /** Ticks since the simulated cluster was created (the clock never goes back). */
  tick = 0;
  /** The tick the warm-up ended at: sequence tick 0. */
  base = 0;
  cd: ClusterData;
  memory: SentinelMemory = emptyMemory();
  keepers: SimKeeper[];
  proxies: SimProxy[];
  private uidSeq = 0;
  private systemSeq = 0;
  acked: Acked = { timeline: 1, lsn: 0 };
  violations: Violation[] = [];
  /** The sentinel's next clusterdata write fails. */
  private sentinelWriteFails = false;
  /** The last `decide` reasons, for the failure report. */
  lastReasons: readonly string[] = [];

  private constructor(readonly scenario: Scenario) {
    this.cd = newClusterData(simSpec(scenario.sync), CLUSTER_UID, new Date(T0_MS).toISOString());
    this.keepers = Array.from({ length: scenario.keepers }, (_, i) => ({
      uid: `k${i + 1}`,
      port: 5433 + i,
      proc: 'up',
      procForever: false,
      boot: 1,
      data: { uid: '', generation: 0, initialized: false, systemId: '', timeline: 0, lsn: 0, checkpoint: 0, history: [], role: 'standby' },
      pg: { running: false, clean: true, followPort: undefined, syncNames: [], streaming: new Set(), startError: undefined },
      task: undefined,
      lag: false,
      stalled: false,
      refuseClone: false,
      wontStart: false,
      commitLsn: 0,
      info: undefined,
      infoExpires: 0,
    }));
    this.proxies = Array.from({ length: scenario.proxies }, (_, i) => ({
      uid: `p${i + 1}`,
      state: 'up',
      forever: false,
      target: null,
      generation: 0,
      lastOk: 0,
      info: undefined,
      infoExpires: 0,
    }));
  }

  /** A new cluster, initialised from scratch without faults until it routes to a primary with every standby streaming. */
  static create(scenario: Scenario): World {
    const w = new World(scenario);
    for (let i = 0; i < 60 && !w.settled(); i++) {
      w.step([]);
    }
    if (!w.settled()) {
      throw new Error(`the simulated cluster did not settle without faults: ${w.lastReasons.join('; ')}`);
    }
    w.base = w.tick;
    return w;
  }

  /** A deep copy (the warmed-up world is copied for every sequence). */
  clone(): World {
    const w = Object.create(World.prototype) as World;
    Object.assign(w, structuredClone({ ...this }));
    return w;
  }

  private get now(): number {
    return this.tick * TICK_MS + 100_000;
  }

  private wallTime(): string {
    return new Date(T0_MS + this.now).toISOString();
  }

  /** Ready for faults: a routed primary, every standby streaming, and (sync mode) a known synchronous standby. */
  private settled(): boolean {
    const m = this.cd.dbs[this.cd.cluster.status.master];
    if (this.cd.cluster.status.phase !== 'normal' || m === undefined || this.primaryServing() === undefined) {
      return false;
    }
    if (this.scenario.sync && m.status.synchronousStandbys.length === 0) {
      return false;
    }
    const primary = this.keepers.find((k) => k.uid === m.spec.keeperUID);
    return primary !== undefined && primary.pg.streaming.size === this.keepers.length - 1;
  }

  /**
   * The keeper of the clusterdata primary if its PostgreSQL runs as that DB's primary and every
   * proxy that can check routes to it (liveness goal), else undefined.
   */
  primaryServing(): SimKeeper | undefined {
    const m = this.cd.dbs[this.cd.cluster.status.master];
    const k = m === undefined ? undefined : this.keepers.find((x) => x.uid === m.spec.keeperUID);
    if (m === undefined || k === undefined || !k.pg.running || k.data.role !== 'master' || k.data.uid !== m.uid || k.task !== undefined) {
      return undefined;
    }
    const routed = this.proxies.every((p) => p.state !== 'up' || (p.target?.dbUid === m.uid && p.target.port === k.port));
    return routed ? k : undefined;
  }

  /** One tick: faults, keeper passes, client writes, replication, proxy checks, sentinel pass, safety checks. */
  step(faults: readonly Fault[]): void {
    if (this.tick - this.base === HEAL_TICK) {
      this.heal();
    }
    for (const f of faults) {
      this.apply(f);
    }
    for (const k of this.keepers) {
      this.keeperPass(k);
    }
    this.writesAndReplication();
    for (const k of this.keepers) {
      this.publishKeeper(k);
    }
    for (const p of this.proxies) {
      this.proxyCheck(p);
    }
    this.sentinelPass();
    this.checkSafety();
    this.tick += 1;
  }

  /** Whether a transient fault (one that ends at the heal tick) is still in effect. */
  transientFaultActive(): boolean {
    return (
      this.keepers.some((k) => (k.proc !== 'up' && !k.procForever) || k.lag || k.refuseClone || k.wontStart) ||
      this.proxies.some((p) => p.state !== 'up' && !p.forever)
    );
  }

  /** The heal tick: every transient fault ends. */
  private heal(): void {
    for (const k of this.keepers) {
      if (k.proc !== 'up' && !k.procForever) {
        this.restartKeeper(k);
      }
      k.lag = false;
      k.stalled = false;
      k.refuseClone = false;
      k.wontStart = false;
    }
    for (const p of this.proxies) {
      if (!p.forever) {
        p.state = 'up';
      }
    }
  }

  private restartKeeper(k: SimKeeper): void {
    k.proc = 'up';
    k.procForever = false;
    k.boot += 1;
    k.task = undefined;
  }

  private stopPg(k: SimKeeper, clean = true): void {
    if (k.pg.running) {
      k.pg.clean = clean;
    }
    k.pg.running = false;
    k.pg.followPort = undefined;
    k.pg.streaming = new Set();
  }

  private apply(f: Fault): void {
    const k = this.keepers[f.target % this.keepers.length];
    const p = this.proxies[f.target % this.proxies.length];
    if (k === undefined || p === undefined) {
      return;
    }
    switch (f.kind) {
      case 'keeper-dies':
      case 'keeper-dies-forever':
        k.proc = 'dead';
        k.procForever = f.kind === 'keeper-dies-forever';
        k.task = undefined;
        this.stopPg(k, false);
        return;
      case 'keeper-returns':
        if (k.proc !== 'up') {
          this.restartKeeper(k);
        }
        return;
      case 'keeper-hangs':
      case 'keeper-hangs-forever':
        if (k.proc === 'up') {
          k.proc = 'hung';
          k.procForever = f.kind === 'keeper-hangs-forever';
        }
        return;
      case 'keeper-partitioned':
        if (k.proc === 'up') {
          k.proc = 'partitioned';
        }
        return;
      case 'keeper-lags':
        k.lag = true;
        return;
      case 'replication-stalls':
        k.lag = true;
        k.stalled = true;
        return;
      case 'refuse-clone':
        k.refuseClone = true;
        return;
      case 'pg-crash':
      case 'pg-wont-start':
        if (k.task?.kind !== 'clone') {
          this.stopPg(k, false);
          k.wontStart ||= f.kind === 'pg-wont-start';
        }
        return;
      case 'proxy-check-fails':
      case 'proxy-check-fails-forever':
      case 'proxy-partitioned':
        p.state = f.kind === 'proxy-partitioned' ? 'partitioned' : 'failing';
        p.forever ||= f.kind === 'proxy-check-fails-forever';
        return;
      case 'switchover': {
        const cd = structuredClone(this.cd);
        cd.cluster.status.switchoverRequest = {
          requestedAt: this.wallTime(),
          ...(f.target % 2 === 1 ? { targetKeeperUID: k.uid } : {}),
        };
        this.cd = cd;
        return;
      }
      case 'force-fail': {
        const cd = structuredClone(this.cd);
        const keeper = cd.keepers[k.uid];
        if (keeper !== undefined) {
          keeper.status.forceFail = true;
        }
        this.cd = cd;
        return;
      }
      case 'stale-db': {
        const cd = structuredClone(this.cd);
        const master = cd.dbs[cd.cluster.status.master];
        if (master !== undefined) {
          const stale = structuredClone(master);
          stale.uid = `stale${f.target}`;
          stale.spec.keeperUID = `kgone${f.target}`;
          stale.spec.role = 'standby';
          stale.spec.followConfig = { type: 'internal', dbuid: master.uid };
          stale.spec.synchronousStandbys = [];
          stale.spec.externalSynchronousStandbys = [];
          stale.spec.synchronousReplication = false;
          stale.status.healthy = false;
          stale.status.synchronousStandbys = [];
          cd.dbs[stale.uid] = stale;
        }
        this.cd = cd;
        return;
      }
      case 'sentinel-restart':
        this.memory = emptyMemory();
        return;
      case 'sentinel-write-fails':
        this.sentinelWriteFails = true;
        return;
    }
  }

  private keeperAt(port: number | undefined): SimKeeper | undefined {
    return this.keepers.find((x) => x.port === port);
  }

  /** Starts PostgreSQL as `role`; a standby data directory started as primary ends recovery (promotion). */
  private startPg(k: SimKeeper, role: 'master' | 'standby', followPort: number | undefined): void {
    if (k.wontStart) {
      k.pg.startError = 'could not start postgres: simulated fault';
      return;
    }
    k.pg.startError = undefined;
    k.pg.running = true;
    k.pg.followPort = role === 'standby' ? followPort : undefined;
    k.pg.streaming = new Set();
    if (role === 'master' && k.data.role === 'standby') {
      this.promoteData(k);
    }
    k.data.role = role;
  }

  /** A promotion: a new timeline starts at the end of WAL. Checks property (c). */
  private promoteData(k: SimKeeper): void {
    const d = k.data;
    d.history = [...d.history, { timelineID: d.timeline, switchPoint: d.lsn, reason: 'promotion' }];
    d.timeline += 1;
    d.role = 'master';
    k.commitLsn = 0; // no commit on the new timeline yet (the end of WAL may be a shutdown checkpoint)
    const ev = this.cd.cluster.status.failover;
    const mustHaveAll = this.scenario.sync || ev?.kind === 'switchover';
    const hasAll = contains({ ...d, timeline: d.timeline - 1, history: d.history.slice(0, -1) }, this.acked);
    if (mustHaveAll && !hasAll) {
      this.violations.push({
        property: 'c-sync-promotion',
        tick: this.tick - this.base,
        detail:
          `keeper ${k.uid} promoted db ${d.uid} at LSN ${d.lsn} on timeline ${d.timeline - 1}, but commit at LSN ${this.acked.lsn} ` +
          `on timeline ${this.acked.timeline} was acknowledged (${ev?.kind ?? 'no failover event'})`,
      });
    }
    if (!hasAll) {
      // Asynchronous replication: commits past this point are lost, as maxStandbyLag allows.
      this.acked = { timeline: d.timeline, lsn: d.lsn };
    }
  }

  private keeperPass(k: SimKeeper): void {
    if (k.proc !== 'up') {
      return;
    }
    if (k.task !== undefined) {
      if (this.tick < k.task.doneAt) {
        return;
      }
      const t = k.task;
      k.task = undefined;
      this.finishTask(k, t);
      return;
    }
    const action = planKeeperAction(
      this.cd,
      k.uid,
      `boot-${k.uid}-${k.boot}`,
      { uid: k.data.uid, generation: k.data.generation, clusterUID: k.data.initialized ? CLUSTER_UID : '' },
      { initialized: k.data.initialized, running: k.pg.running, role: k.pg.running ? k.data.role : undefined, systemId: k.data.systemId },
    );
    this.execute(k, action);
  }

  private execute(k: SimKeeper, a: KeeperAction): void {
    switch (a.kind) {
      case 'wait':
      case 'refuse':
        return;
      case 'stop-postgres':
        this.stopPg(k);
        return;
      case 'switchover-stop':
        if (k.pg.running) {
          // A clean shutdown: the walsenders send everything, the shutdown checkpoint included.
          k.data.checkpoint = k.data.lsn;
          k.data.lsn += CHECKPOINT_BYTES;
          for (const s of this.keepers) {
            if (k.pg.streaming.has(s.data.uid) && s.data.uid !== '' && !s.stalled && s.pg.followPort === k.port && s.data.timeline === k.data.timeline) {
              s.data.lsn = Math.max(s.data.lsn, k.data.lsn);
            }
          }
          this.stopPg(k);
        }
        k.data.generation = a.db.generation;
        return;
      case 'init-new':
        this.stopPg(k);
        k.task = { kind: 'init', doneAt: this.tick + INIT_TICKS, action: a };
        return;
      case 'init-existing':
      case 'init-pitr':
        return;
      case 'resync':
        this.stopPg(k);
        k.data.initialized = false;
        k.task = { kind: 'clone', doneAt: this.tick + (k.refuseClone ? 1 : CLONE_TICKS), action: a };
        return;
      case 'converge':
        this.converge(k, a);
        return;
    }
  }

  private converge(k: SimKeeper, a: Extract<KeeperAction, { kind: 'converge' }>): void {
    if (a.role === 'master') {
      if (a.promote) {
        k.pg.followPort = undefined;
        k.task = { kind: 'promote', doneAt: this.tick + PROMOTE_TICKS, action: a };
        return;
      }
      if (!k.pg.running) {
        this.startPg(k, 'master', undefined);
        if (!k.pg.running) {
          return;
        }
      }
      k.pg.syncNames = a.db.spec.synchronousReplication ? [...a.db.spec.synchronousStandbys, ...a.db.spec.externalSynchronousStandbys] : [];
    } else {
      const port = a.follow?.port;
      if (!k.pg.running) {
        this.startPg(k, 'standby', port);
        if (!k.pg.running) {
          return;
        }
      } else if (k.pg.followPort !== port) {
        k.pg.followPort = port;
      }
      k.pg.syncNames = [];
    }
    k.data.generation = a.db.generation;
  }

  private finishTask(k: SimKeeper, t: Task): void {
    const a = t.action;
    if (t.kind === 'promote') {
      if (k.pg.running && a.kind === 'converge') {
        this.promoteData(k);
        k.pg.syncNames = a.db.spec.synchronousReplication ? [...a.db.spec.synchronousStandbys, ...a.db.spec.externalSynchronousStandbys] : [];
        k.data.generation = a.db.generation;
      }
      return;
    }
    if (t.kind === 'init' && a.kind === 'init-new') {
      this.systemSeq += 1;
      k.data = {
        uid: a.db.uid,
        generation: a.db.generation,
        initialized: true,
        systemId: `7${String(this.systemSeq).padStart(18, '0')}`,
        timeline: 1,
        lsn: 1000,
        checkpoint: 1000,
        history: [],
        role: 'master',
      };
      this.acked = { timeline: 1, lsn: 1000 };
      this.startPg(k, 'master', undefined);
      return;
    }
    if (t.kind === 'clone' && a.kind === 'resync') {
      const src = this.keeperAt(a.from.port);
      if (k.refuseClone || src === undefined || !src.pg.running || src.data.uid !== a.from.dbUid) {
        return; // the clone failed; the next pass plans it again
      }
      k.data = { ...structuredClone(src.data), uid: a.db.uid, generation: a.db.generation, role: 'standby', checkpoint: src.data.lsn };
      this.startPg(k, 'standby', src.port);
    }
  }

  /** Clients write through the proxies; standbys receive WAL; commits are acknowledged. */
  private writesAndReplication(): void {
    const routed = new Set(this.proxies.map((p) => p.target?.port).filter((x) => x !== undefined));
    for (const k of this.keepers) {
      if (k.pg.running && k.data.role === 'master' && routed.has(k.port) && k.task === undefined) {
        k.data.lsn += WRITE_BYTES;
        k.commitLsn = k.data.lsn;
      }
      k.pg.streaming = new Set();
    }
    for (const s of this.keepers) {
      const src = this.keeperAt(s.pg.followPort);
      if (!s.pg.running || s.data.role !== 'standby' || src === undefined || !src.pg.running || s.task !== undefined) {
        continue;
      }
      if (src.data.systemId !== s.data.systemId || src.data.timeline < s.data.timeline) {
        continue;
      }
      if (src.data.timeline > s.data.timeline) {
        const h = src.data.history.find((e) => e.timelineID === s.data.timeline);
        if (h === undefined || s.data.lsn > h.switchPoint) {
          continue; // forked off: PostgreSQL refuses to follow
        }
        s.data.timeline = src.data.timeline;
        s.data.history = structuredClone(src.data.history);
      }
      if (s.data.lsn > src.data.lsn) {
        continue;
      }
      src.pg.streaming.add(s.data.uid);
      if (!s.lag) {
        s.data.lsn = src.data.lsn;
      }
    }
    for (const k of this.keepers) {
      if (!k.pg.running || k.data.role !== 'master' || !contains(k.data, this.acked)) {
        continue;
      }
      let ack = k.commitLsn;
      for (const name of k.pg.syncNames) {
        const s = name === FAKE_SYNC_STANDBY ? undefined : this.keepers.find((x) => x.data.uid === name && k.pg.streaming.has(name));
        ack = Math.min(ack, s === undefined ? 0 : s.data.lsn);
      }
      if (ack > this.acked.lsn) {
        this.acked = { timeline: k.data.timeline, lsn: ack };
      }
    }
  }

  private publishKeeper(k: SimKeeper): void {
    if (k.proc === 'hung') {
      k.infoExpires = this.now + this.ttlMs(); // the lease keepalive runs apart from the passes
      return;
    }
    if (k.proc !== 'up') {
      return;
    }
    const d = k.data;
    const running = k.pg.running;
    k.info = {
      infoUID: `i${this.tick}`,
      uid: k.uid,
      clusterUID: CLUSTER_UID,
      bootUUID: `boot-${k.uid}-${k.boot}`,
      postgresBinaryVersion: { Maj: 15, Min: 0 },
      postgresState: {
        uid: d.uid,
        generation: d.generation,
        listenAddress: HOST,
        port: String(k.port),
        healthy: running && d.initialized && k.task?.kind !== 'clone' && k.task?.kind !== 'init',
        systemID: d.systemId,
        timelineID: d.timeline,
        xLogPos: running ? d.lsn : d.checkpoint,
        timelinesHistory: d.history.slice(-2),
        pgParameters: {},
        synchronousStandbys: running && d.role === 'master' ? k.pg.syncNames.filter((n) => k.pg.streaming.has(n)).sort() : [],
        olderWalFile: '',
        ...(running ? { role: d.role } : {}),
        running,
        ...(!running && d.initialized ? { cleanShutdown: k.pg.clean } : {}),
        pendingRestart: [],
        ...(k.pg.startError !== undefined && !running ? { startError: k.pg.startError } : {}),
      },
      canBeMaster: true,
    };
    k.infoExpires = this.now + this.ttlMs();
  }

  private ttlMs(): number {
    return 3000; // failInterval of simSpec
  }

  private proxyCheck(p: SimProxy): void {
    if (p.state === 'up') {
      const decision = resolveTarget(this.cd, p.uid);
      p.target = decision.target;
      p.generation = decision.generation;
      p.lastOk = this.now;
      p.info = { infoUID: `pi${this.tick}`, UID: p.uid, Generation: decision.generation, ProxyTimeout: 3e9 };
      p.infoExpires = this.now + 3000; // proxyTimeout of simSpec
      return;
    }
    if (this.now - p.lastOk >= 3000) {
      p.target = null; // the watchdog: no successful check within proxyTimeout
    }
    if (p.state === 'failing') {
      p.infoExpires = this.now + 3000; // the lease keepalive still runs
    }
  }

  private sentinelPass(): void {
    const keeperInfos: Record<string, KeeperInfo> = {};
    for (const k of this.keepers) {
      if (k.info !== undefined && k.infoExpires > this.now) {
        keeperInfos[k.uid] = k.info;
      }
    }
    const proxyInfos: Record<string, ProxyInfo> = {};
    for (const p of this.proxies) {
      if (p.info !== undefined && p.infoExpires > this.now) {
        proxyInfos[p.uid] = p.info;
      }
    }
    const before = this.cd;
    const out = decide({
      cd: before,
      keeperInfos,
      proxyInfos,
      memory: this.memory,
      now: this.now,
      wallTime: this.wallTime(),
      newUid: () => `d${++this.uidSeq}`,
    });
    this.lastReasons = out.reasons;
    if (out.changed && this.sentinelWriteFails) {
      // The loop commits the memory only with a successful write (or when nothing needed writing).
      this.sentinelWriteFails = false;
      return;
    }
    this.sentinelWriteFails = false;
    this.memory = out.memory;
    if (out.changed) {
      this.cd = out.next;
      this.checkSyncChoice(before, out.next);
    }
  }

  /** Property (c), the sentinel's side: in sync mode a failover promotes only a standby known in sync. */
  private checkSyncChoice(before: ClusterData, next: ClusterData): void {
    const oldUid = before.cluster.status.master;
    const newUid = next.cluster.status.master;
    const old = before.dbs[oldUid];
    if (oldUid === newUid || old === undefined || !old.spec.synchronousReplication || next.cluster.status.failover?.kind !== 'failover') {
      return;
    }
    const known = old.status.synchronousStandbys.filter((u) => old.spec.synchronousStandbys.includes(u));
    if (!known.includes(newUid)) {
      this.violations.push({
        property: 'c-sync-promotion',
        tick: this.tick - this.base,
        detail: `failover promoted db ${newUid}, not in the synchronous set known in sync [${known.join(', ')}] of db ${oldUid}`,
      });
    }
  }

  /** Properties (b) and (d) after every tick. */
  private checkSafety(): void {
    const masters = Object.values(this.cd.dbs).filter((d) => d.spec.role === 'master');
    if (masters.length > 1) {
      this.violations.push({
        property: 'b-two-primaries',
        tick: this.tick - this.base,
        detail: `clusterdata has ${masters.length} DBs with role master: ${masters.map((d) => `${d.uid} (${d.spec.keeperUID})`).join(', ')}`,
      });
    }
    const routedPrimaries = new Set(
      this.proxies
        .map((p) => this.keeperAt(p.target?.port))
        .filter((k) => k !== undefined && k.pg.running && k.data.role === 'master')
        .map((k) => k?.uid),
    );
    if (routedPrimaries.size > 1) {
      this.violations.push({
        property: 'b-two-primaries',
        tick: this.tick - this.base,
        detail: `proxies route to two writable primaries: ${[...routedPrimaries].join(', ')}`,
      });
    }
    const master = this.cd.cluster.status.master;
    const published = this.cd.proxy.spec.masterDbUid;
    for (const p of this.proxies) {
      if (p.target !== null && (p.target.dbUid !== master || (published !== '' && published !== p.target.dbUid))) {
        this.violations.push({
          property: 'd-fenced-proxy',
          tick: this.tick - this.base,
          detail: `proxy ${p.uid} (${p.state}) routes to db ${p.target.dbUid} but the primary is ${master || 'none'} and the proxies' target ${published || 'none'}`,
        });
      }
    }
  }

  /**
   * Whether liveness (a) is owed at the end: some available keeper could be primary. Available:
   * its keeper process runs (not dead, hung or partitioned). Could be primary: the primary's own
   * keeper; or in async mode a keeper whose data is on the newest timeline within
   * maxStandbyLag/2 of the most advanced data; in sync mode a keeper the sentinel knows in sync.
   */
  livenessOwed(): boolean {
    const avail = this.keepers.filter((k) => k.proc === 'up');
    if (avail.length === this.keepers.length) {
      return true;
    }
    const m = this.cd.dbs[this.cd.cluster.status.master];
    if (m !== undefined && avail.some((k) => k.uid === m.spec.keeperUID)) {
      return true;
    }
    if (this.scenario.sync) {
      const known = m === undefined ? [] : m.status.synchronousStandbys.filter((u) => m.spec.synchronousStandbys.includes(u));
      return avail.some((k) => known.includes(k.data.uid));
    }
    const init = this.keepers.filter((k) => k.data.initialized);
    const tl = Math.max(...init.map((k) => k.data.timeline));
    const top = Math.max(...init.filter((k) => k.data.timeline === tl).map((k) => k.data.lsn));
    return avail.some((k) => k.data.initialized && k.data.timeline === tl && k.data.lsn >= top - MAX_STANDBY_LAG / 2);
  }

  /** A short description of the state, for failure reports. */
  describe(): string {
    const ks = this.keepers.map(
      (k) =>
        `${k.uid}[${k.proc}${k.procForever ? '!' : ''} db=${k.data.uid || '-'} g${k.data.generation} ${k.pg.running ? k.data.role : 'stopped'}` +
        ` tl${k.data.timeline} lsn${k.data.lsn}${k.task ? ` task=${k.task.kind}` : ''}]`,
    );
    const ps = this.proxies.map((p) => `${p.uid}[${p.state} ->${p.target?.dbUid ?? 'none'} g${p.generation}]`);
    const dbs = Object.values(this.cd.dbs).map(
      (d) => `${d.uid}:${d.spec.keeperUID}:${d.spec.role}${d.spec.followConfig?.dbuid ? `->${d.spec.followConfig.dbuid}` : ''}`,
    );
    return (
      `tick ${this.tick - this.base}; master ${this.cd.cluster.status.master || 'none'}; proxy target ${this.cd.proxy.spec.masterDbUid || 'none'} ` +
      `g${this.cd.proxy.generation}; dbs ${dbs.join(' ')}; ${ks.join(' ')}; ${ps.join(' ')}; sentinel: ${this.lastReasons.join(' | ')}`
    );
  }
}
