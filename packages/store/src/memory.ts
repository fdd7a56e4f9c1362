/**
 * The in-memory store: the same contract as the etcd store, in one process, for unit and daemon
 * tests. A `MemoryBackend` is the shared "etcd" (revisions, leases with TTL timers, candidate keys,
 * watch fan-out); each `MemoryStore` is one client "process" on it, owning its own leases,
 * keepalives, watches and elections, so several sentinels/keepers/proxies can share one backend.
 * `backend.setUnavailable(true)` simulates an unreachable store: every call throws
 * `StoreUnavailableError`, keepalives fail (so leases expire), and watch events are dropped until
 * it is reachable again, when every watch is called once per topic (as after an etcd reconnect).
 *
 * Passes the same conformance suite as the etcd store (`test/conformance.ts`).
 */
import { NotLeaderError, StoreConflictError, StoreUnavailableError } from '@stolon-ts/cluster';
import type {
  ClusterDataRecord,
  Election,
  InfoKind,
  InfoTypes,
  Store,
  StoreWatch,
  WatchTopic,
} from './store.js';
import { LEADER_VALID_FRACTION, LeadershipNotifier, TopicDispatcher, checkTtl, checkUid, parseInfoText } from './util.js';

interface MemLease {
  readonly id: number;
  readonly ttlMs: number;
  timer: NodeJS.Timeout;
  /** Removes the keys attached to this lease (run on expiry and revoke). */
  readonly detach: Set<() => void>;
}

interface InfoEntry {
  readonly text: string;
  readonly leaseId: number | null;
  /** Registered on the lease; removes this entry when the lease ends. */
  readonly detach?: () => void;
}

interface Candidate {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
}

interface ClusterSpace {
  clusterData: { text: string; revision: number } | null;
  readonly infos: Record<InfoKind, Map<string, InfoEntry>>;
  /** Election candidates by key. */
  readonly candidates: Map<string, Candidate>;
  readonly subscribers: Set<Subscriber>;
}

interface Subscriber {
  readonly topics: ReadonlySet<WatchTopic>;
  /** Called synchronously by the backend; the subscriber defers its own listener. */
  readonly onEvent: (topic: WatchTopic) => void;
  /** When true, still called while the backend is unavailable (elections use it internally). */
  readonly internal: boolean;
}

/**
 * The shared state several `MemoryStore` clients talk to, like one etcd cluster. Lease timers are
 * unref'd, so a forgotten backend never keeps a process alive.
 */
export class MemoryBackend {
  private revision = 0;
  private nextLeaseId = 1;
  private unavailable = false;
  private readonly clusters = new Map<string, ClusterSpace>();
  private readonly leases = new Map<number, MemLease>();

  /**
   * Test hook: while `true`, every call of every `MemoryStore` on this backend throws
   * `StoreUnavailableError`, keepalives fail (leases expire after their TTL) and watch events
   * are dropped. Setting it back to `false` calls every watch listener once per topic.
   */
  setUnavailable(unavailable: boolean): void {
    const was = this.unavailable;
    this.unavailable = unavailable;
    if (was && !unavailable) {
      for (const space of this.clusters.values()) {
        for (const s of space.subscribers) {
          for (const t of s.topics) {
            s.onEvent(t);
          }
        }
      }
    }
  }

  /** True while {@link MemoryBackend.setUnavailable} is in effect. */
  isUnavailable(): boolean {
    return this.unavailable;
  }

  /**
   * Test hook: writes `text` verbatim (no JSON check, no lease) as the info of `uid`, to test
   * how readers handle invalid entries. Works even while unavailable.
   */
  putRawInfo(clusterName: string, kind: InfoKind, uid: string, text: string): void {
    const space = this.space(clusterName);
    this.removeInfoLease(space, kind, uid);
    space.infos[kind].set(uid, { text, leaseId: null });
    this.bump();
    this.emit(space, kind);
  }

  // ---- everything below is used by MemoryStore only ----

  /** @internal @throws StoreUnavailableError while unavailable. */
  check(what: string): void {
    if (this.unavailable) {
      throw new StoreUnavailableError(`memory store unavailable (test hook) during ${what}`);
    }
  }

  /** @internal */
  space(clusterName: string): ClusterSpace {
    let s = this.clusters.get(clusterName);
    if (s === undefined) {
      s = {
        clusterData: null,
        infos: { keepers: new Map(), sentinels: new Map(), proxies: new Map() },
        candidates: new Map(),
        subscribers: new Set(),
      };
      this.clusters.set(clusterName, s);
    }
    return s;
  }

  /** @internal */
  bump(): number {
    this.revision += 1;
    return this.revision;
  }

  /** @internal Notifies subscribers of `space` interested in `topic`. */
  emit(space: ClusterSpace, topic: WatchTopic): void {
    for (const s of space.subscribers) {
      if (s.topics.has(topic) && (s.internal || !this.unavailable)) {
        s.onEvent(topic);
      }
    }
  }

  /** @internal */
  grantLease(ttlMs: number): number {
    const id = this.nextLeaseId++;
    const lease: MemLease = { id, ttlMs, timer: this.expiryTimer(id, ttlMs), detach: new Set() };
    this.leases.set(id, lease);
    return id;
  }

  private expiryTimer(id: number, ttlMs: number): NodeJS.Timeout {
    const t = setTimeout(() => this.revokeLease(id), ttlMs);
    t.unref();
    return t;
  }

  /** @internal Restarts the TTL of a live lease. @returns false when the lease is gone. */
  keepAlive(id: number): boolean {
    const lease = this.leases.get(id);
    if (lease === undefined) {
      return false;
    }
    clearTimeout(lease.timer);
    lease.timer = this.expiryTimer(id, lease.ttlMs);
    return true;
  }

  /** @internal */
  leaseExists(id: number): boolean {
    return this.leases.has(id);
  }

  /** @internal Deletes the lease and every key attached to it. */
  revokeLease(id: number): void {
    const lease = this.leases.get(id);
    if (lease === undefined) {
      return;
    }
    clearTimeout(lease.timer);
    this.leases.delete(id);
    for (const d of lease.detach) {
      d();
    }
  }

  private removeInfoLease(space: ClusterSpace, kind: InfoKind, uid: string): void {
    const prev = space.infos[kind].get(uid);
    if (prev !== undefined && prev.leaseId !== null && prev.detach !== undefined) {
      this.leases.get(prev.leaseId)?.detach.delete(prev.detach);
    }
  }

  /** @internal Writes an info attached to `leaseId`. @returns false when the lease is gone. */
  putInfo(space: ClusterSpace, kind: InfoKind, uid: string, text: string, leaseId: number): boolean {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) {
      return false;
    }
    this.removeInfoLease(space, kind, uid);
    const detach = (): void => {
      if (space.infos[kind].get(uid) === entry) {
        space.infos[kind].delete(uid);
        this.bump();
        this.emit(space, kind);
      }
    };
    const entry: InfoEntry = { text, leaseId, detach };
    space.infos[kind].set(uid, entry);
    lease.detach.add(detach);
    this.bump();
    this.emit(space, kind);
    return true;
  }

  /** @internal */
  deleteInfo(space: ClusterSpace, kind: InfoKind, uid: string): void {
    if (!space.infos[kind].has(uid)) {
      return;
    }
    this.removeInfoLease(space, kind, uid);
    space.infos[kind].delete(uid);
    this.bump();
    this.emit(space, kind);
  }

  /** @internal Creates a candidate key attached to `leaseId` (idempotent). @returns false when the lease is gone. */
  addCandidate(space: ClusterSpace, key: string, value: string, leaseId: number): boolean {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) {
      return false;
    }
    if (!space.candidates.has(key)) {
      space.candidates.set(key, { key, value, createRevision: this.bump() });
      lease.detach.add(() => {
        if (space.candidates.delete(key)) {
          this.bump();
          this.emit(space, 'sentinel-leader');
        }
      });
      this.emit(space, 'sentinel-leader');
    }
    return true;
  }

  /** @internal The candidate with the lowest create revision. */
  leader(space: ClusterSpace): Candidate | undefined {
    let best: Candidate | undefined;
    for (const c of space.candidates.values()) {
      if (best === undefined || c.createRevision < best.createRevision) {
        best = c;
      }
    }
    return best;
  }
}

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Cluster name; stores with different names on one backend share nothing. */
  readonly clusterName: string;
}

interface OwnLease {
  readonly id: number;
  readonly ttlMs: number;
  timer: NodeJS.Timeout | undefined;
  /** `performance.now()` when the grant or the last keepalive that reached the backend was made. */
  confirmedAt: number;
}

/**
 * One client "process" of a {@link MemoryBackend}, implementing the {@link Store} contract with
 * exact millisecond TTLs (no rounding to seconds). Calls never block; every call throws
 * `StoreUnavailableError` while the backend is unavailable or after {@link MemoryStore.close}.
 *
 * @example
 * const backend = new MemoryBackend();
 * const sentinelStore = new MemoryStore(backend, { clusterName: 'c1' });
 * const keeperStore = new MemoryStore(backend, { clusterName: 'c1' });
 */
export class MemoryStore implements Store {
  private readonly backend: MemoryBackend;
  private readonly clusterName: string;
  private closed = false;
  private readonly infoLeases = new Map<string, OwnLease>();
  private readonly watches = new Set<MemoryWatch>();
  private readonly elections = new Set<MemoryElection>();

  constructor(backend: MemoryBackend, opts: MemoryStoreOptions) {
    this.backend = backend;
    this.clusterName = opts.clusterName;
  }

  private space(what: string): ClusterSpace {
    if (this.closed) {
      throw new StoreUnavailableError(`memory store for cluster ${this.clusterName} is closed (${what})`);
    }
    this.backend.check(what);
    return this.backend.space(this.clusterName);
  }

  /** @inheritDoc */
  async getClusterData(): Promise<ClusterDataRecord | null> {
    await Promise.resolve();
    const cd = this.space('getClusterData').clusterData;
    return cd === null ? null : { text: cd.text, revision: String(cd.revision) };
  }

  /**
   * @inheritDoc
   * With `leader`, checked in the same synchronous step as the revision: the candidate's key
   * still exists and is the lowest (the leader), and its leadership is still valid.
   */
  async putClusterData(text: string, expectedRevision: string | null, leader?: Election): Promise<string> {
    await Promise.resolve();
    const space = this.space('putClusterData');
    if (leader !== undefined) {
      if (!(leader instanceof MemoryElection) || !this.elections.has(leader)) {
        throw new NotLeaderError(`the election given is not a candidacy of this memory store client for ${this.clusterName}; clusterdata not written`);
      }
      if (!leader.isLeader() || !leader.holdsLeaderKey()) {
        throw new NotLeaderError(`not the sentinel leader of ${this.clusterName} (any more); clusterdata not written`);
      }
    }
    const cur = space.clusterData;
    if (expectedRevision === null ? cur !== null : cur === null || String(cur.revision) !== expectedRevision) {
      throw new StoreConflictError(
        expectedRevision === null
          ? `clusterdata of ${this.clusterName} already exists (revision ${cur?.revision}); read it and retry`
          : `clusterdata of ${this.clusterName} changed: expected revision ${expectedRevision}, found ${cur === null ? 'none' : cur.revision}; read it and retry`,
        expectedRevision === null ? {} : { revision: expectedRevision },
      );
    }
    return this.writeClusterData(space, text);
  }

  /** @inheritDoc */
  async overwriteClusterData(text: string): Promise<string> {
    await Promise.resolve();
    return this.writeClusterData(this.space('overwriteClusterData'), text);
  }

  private writeClusterData(space: ClusterSpace, text: string): string {
    const revision = this.backend.bump();
    space.clusterData = { text, revision };
    this.backend.emit(space, 'clusterdata');
    return String(revision);
  }

  /**
   * @inheritDoc
   * The TTL is exactly `ttlMs`; this client refreshes the lease every `ttlMs / 3`.
   * @throws RangeError when `ttlMs` is not positive or `uid` is empty or contains `/`.
   */
  async setInfo<K extends InfoKind>(kind: K, uid: string, info: InfoTypes[K], ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    checkUid(uid);
    await Promise.resolve();
    const space = this.space('setInfo');
    const k = `${kind}/${uid}`;
    let own = this.infoLeases.get(k);
    let stale: OwnLease | undefined;
    if (own !== undefined && (own.ttlMs !== ttlMs || !this.backend.leaseExists(own.id))) {
      // TTL changed or the lease expired (keepalives failed): start over with a new lease.
      stale = own;
      own = undefined;
    }
    if (own === undefined) {
      own = { id: this.backend.grantLease(ttlMs), ttlMs, timer: undefined, confirmedAt: performance.now() };
      this.infoLeases.set(k, own);
      this.keepInfoLeaseAlive(k, own);
    }
    this.backend.putInfo(space, kind, uid, JSON.stringify(info), own.id);
    if (stale !== undefined) {
      // Only now: the entry moved to the new lease, so revoking the old one does not delete it.
      clearTimeout(stale.timer);
      this.backend.revokeLease(stale.id);
    }
  }

  /** @inheritDoc */
  infoLeaseRemainingMs(kind: InfoKind, uid: string): number | undefined {
    const own = this.infoLeases.get(`${kind}/${uid}`);
    if (own === undefined) {
      return undefined;
    }
    return this.backend.leaseExists(own.id) ? own.confirmedAt + own.ttlMs - performance.now() : -Infinity;
  }

  private keepInfoLeaseAlive(k: string, own: OwnLease): void {
    own.timer = setTimeout(() => {
      own.timer = undefined;
      if (this.closed || this.infoLeases.get(k) !== own) {
        return;
      }
      // While unavailable the keepalive fails and the lease runs out, as with a partitioned etcd client.
      const sentAt = performance.now();
      if (!this.backend.isUnavailable() && !this.backend.keepAlive(own.id)) {
        return; // lost; the next setInfo grants a new one
      }
      if (!this.backend.isUnavailable()) {
        own.confirmedAt = sentAt;
      }
      this.keepInfoLeaseAlive(k, own);
    }, Math.max(1, own.ttlMs / 3));
    own.timer.unref();
  }

  private dropOwnLease(k: string, own: OwnLease, revoke: boolean): void {
    clearTimeout(own.timer);
    own.timer = undefined;
    this.infoLeases.delete(k);
    if (revoke && !this.backend.isUnavailable()) {
      this.backend.revokeLease(own.id);
    }
  }

  /** @inheritDoc */
  async deleteInfo(kind: InfoKind, uid: string): Promise<void> {
    await Promise.resolve();
    const space = this.space('deleteInfo');
    this.backend.deleteInfo(space, kind, uid);
    const k = `${kind}/${uid}`;
    const own = this.infoLeases.get(k);
    if (own !== undefined) {
      this.dropOwnLease(k, own, true);
    }
  }

  /** @inheritDoc */
  async listInfos<K extends InfoKind>(
    kind: K,
    onInvalid?: (uid: string, err: Error) => void,
  ): Promise<Record<string, InfoTypes[K]>> {
    await Promise.resolve();
    const space = this.space('listInfos');
    const out: Record<string, InfoTypes[K]> = {};
    for (const [uid, e] of space.infos[kind]) {
      try {
        out[uid] = parseInfoText(e.text) as InfoTypes[K];
      } catch (err) {
        onInvalid?.(uid, err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }

  /** @inheritDoc */
  async watch(topics: readonly WatchTopic[], listener: (topic: WatchTopic) => void): Promise<StoreWatch> {
    await Promise.resolve();
    const space = this.space('watch');
    const w = new MemoryWatch(space, new Set(topics), listener, (x) => this.watches.delete(x));
    this.watches.add(w);
    return w;
  }

  /**
   * @inheritDoc
   * Leadership is reported lost once no keepalive was confirmed for 3/4 of `ttlMs`.
   * @throws RangeError when `ttlMs` is not positive.
   */
  async campaign(candidateUid: string, ttlMs: number): Promise<Election> {
    checkTtl(ttlMs);
    await Promise.resolve();
    const space = this.space('campaign');
    const e = new MemoryElection(this.backend, space, candidateUid, ttlMs, (x) => this.elections.delete(x));
    this.elections.add(e);
    e.start();
    return e;
  }

  /** @inheritDoc */
  async getLeader(): Promise<string | null> {
    await Promise.resolve();
    const space = this.space('getLeader');
    return this.backend.leader(space)?.value ?? null;
  }

  /**
   * Closes this client: resigns its elections, closes its watches and revokes its info leases
   * (their entries disappear at once; while the backend is unavailable they expire by TTL
   * instead). Idempotent; never throws.
   */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    await Promise.all([...this.elections].map((e) => e.resign()));
    await Promise.all([...this.watches].map((w) => w.close()));
    for (const [k, own] of [...this.infoLeases]) {
      this.dropOwnLease(k, own, true);
    }
    this.closed = true;
  }

  /**
   * Test hook: stops this client as a crash would. Keepalives stop, watches and campaigns end,
   * nothing is revoked or deleted: its infos expire after their TTL and a leadership it held
   * passes on once its lease expires.
   */
  async abandon(): Promise<void> {
    await Promise.resolve();
    this.closed = true;
    for (const e of [...this.elections]) {
      e.abandon();
    }
    for (const w of [...this.watches]) {
      await w.close();
    }
    for (const [k, own] of [...this.infoLeases]) {
      this.dropOwnLease(k, own, false);
    }
  }
}

class MemoryWatch implements StoreWatch {
  private readonly dispatcher: TopicDispatcher;
  private readonly subscriber: Subscriber;
  private closed = false;

  constructor(
    private readonly space: ClusterSpace,
    topics: ReadonlySet<WatchTopic>,
    listener: (topic: WatchTopic) => void,
    private readonly onClose: (w: MemoryWatch) => void,
  ) {
    this.dispatcher = new TopicDispatcher(listener);
    this.subscriber = { topics, onEvent: (t) => this.dispatcher.notify(t), internal: false };
    space.subscribers.add(this.subscriber);
  }

  async close(): Promise<void> {
    await Promise.resolve();
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.dispatcher.close();
    this.space.subscribers.delete(this.subscriber);
    this.onClose(this);
  }
}

/**
 * A candidacy on a memory backend, with the etcd store's rules: a lease with keepalives every
 * TTL/3, a candidate key per lease, leader = lowest create revision, leadership given up once no
 * keepalive was confirmed for 3/4 of the TTL, a new candidacy when the lease is lost.
 */
class MemoryElection implements Election {
  private readonly notifier = new LeadershipNotifier();
  private readonly subscriber: Subscriber;
  private leaseId: number | null = null;
  private key: string | null = null;
  private lastConfirmed = 0;
  private stopped = false;
  private tickTimer: NodeJS.Timeout | undefined;
  private validityTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly backend: MemoryBackend,
    private readonly space: ClusterSpace,
    private readonly uid: string,
    private readonly ttlMs: number,
    private readonly onStop: (e: MemoryElection) => void,
  ) {
    this.subscriber = { topics: new Set(['sentinel-leader']), onEvent: () => this.recheck(), internal: true };
  }

  start(): void {
    this.space.subscribers.add(this.subscriber);
    // First candidacy on the next tick: campaign() resolves before any leadership is reported.
    setImmediate(() => this.tick());
  }

  isLeader(): boolean {
    return this.notifier.leader && performance.now() - this.lastConfirmed < this.ttlMs * LEADER_VALID_FRACTION;
  }

  onChange(listener: (leader: boolean) => void): void {
    this.notifier.on(listener);
  }

  /** True while this candidacy's key exists on a live lease and is the lowest (the leader's). */
  holdsLeaderKey(): boolean {
    return (
      !this.stopped &&
      this.key !== null &&
      this.leaseId !== null &&
      this.backend.leaseExists(this.leaseId) &&
      this.backend.leader(this.space)?.key === this.key
    );
  }

  private tick(): void {
    this.tickTimer = undefined;
    if (this.stopped) {
      return;
    }
    if (!this.backend.isUnavailable()) {
      if (this.leaseId !== null && this.backend.keepAlive(this.leaseId)) {
        this.lastConfirmed = performance.now();
      } else if (this.leaseId === null || !this.backend.leaseExists(this.leaseId)) {
        // Lost (or never had) a lease: campaign anew.
        this.leaseId = this.backend.grantLease(this.ttlMs);
        this.key = `sentinel-leader/${this.leaseId.toString(16)}`;
        this.lastConfirmed = performance.now();
        this.backend.addCandidate(this.space, this.key, this.uid, this.leaseId);
      }
    }
    this.recheck();
    this.tickTimer = setTimeout(() => this.tick(), Math.max(1, this.ttlMs / 3));
    this.tickTimer.unref();
  }

  private recheck(): void {
    if (this.stopped) {
      return;
    }
    const leader = this.backend.leader(this.space);
    const validFor = this.ttlMs * LEADER_VALID_FRACTION - (performance.now() - this.lastConfirmed);
    const isLeader =
      this.key !== null &&
      this.leaseId !== null &&
      this.backend.leaseExists(this.leaseId) &&
      leader?.key === this.key &&
      validFor > 0;
    this.notifier.set(isLeader);
    clearTimeout(this.validityTimer);
    this.validityTimer = undefined;
    if (isLeader) {
      // Give up leadership exactly when it stops being valid, even between ticks.
      this.validityTimer = setTimeout(() => this.recheck(), validFor + 1);
      this.validityTimer.unref();
    }
  }

  private stop(): void {
    this.stopped = true;
    clearTimeout(this.tickTimer);
    clearTimeout(this.validityTimer);
    this.space.subscribers.delete(this.subscriber);
    this.notifier.set(false);
    this.onStop(this);
  }

  async resign(): Promise<void> {
    await Promise.resolve();
    if (this.stopped) {
      return;
    }
    this.stop();
    if (this.leaseId !== null && !this.backend.isUnavailable()) {
      this.backend.revokeLease(this.leaseId);
    }
  }

  /** Stops without revoking: the candidate key stays until the lease expires. */
  abandon(): void {
    if (!this.stopped) {
      this.stop();
    }
  }
}
