/**
 * The Consul store (`--store-backend consul`), on the `consul` npm client with Stolon's key layout
 * (see `store.ts`) under `--store-prefix` (default `stolon/cluster`), as Stolon's consul backend.
 * How the contract maps onto Consul's HTTP API (https://developer.hashicorp.com/consul/api-docs):
 *
 * - Clusterdata: one KV entry; its revision is the entry's `ModifyIndex`. Compare-and-set is a
 *   transaction (`/v1/txn`) with a `cas` op (index 0: only if absent), because a plain
 *   `PUT ?cas=` answers only true/false and the new index is needed. A write guarded by the
 *   sentinel election adds a `check-session` op on the leader key, so the write and "this
 *   session still holds the leader lock" are checked in one transaction, as strong as etcd's.
 * - Infos: one session per (kind, uid), TTL = the info TTL in whole seconds (raised to the
 *   server's `session_ttl_min`, 10 s by default), `Behavior=delete`, `LockDelay=0s`; the key is
 *   written with `?acquire=<session>`, so Consul deletes it when the session is invalidated. A
 *   session is renewed every TTL/3 (every 250 ms after a failure). Consul invalidates a session
 *   between TTL and 2×TTL after its last renewal (its timers run at TTL × 2), so an entry of a
 *   dead process lives up to 2×TTL; `infoLeaseRemainingMs` counts from the send time of the last
 *   confirmed renewal with the plain TTL, so it errs early, never late. A key still locked by an
 *   older session of the same uid (a crashed predecessor, or our own before a TTL change) is
 *   taken over in one transaction (`unlock` with the old session, `lock` with the new one), so the
 *   entry never disappears meanwhile; the predecessor's session is destroyed afterwards.
 * - Sentinel election: a session lock on `<prefix>/<cluster>/sentinel-leader` (value: the
 *   candidate uid), `Behavior=release`, `LockDelay=0s`; the holder leads while its last confirmed
 *   renewal was sent within 3/4 of the TTL. No lock-delay is needed for safety: the holder stops
 *   acting before its session can be invalidated, and clusterdata writes check the session in
 *   the same transaction. Resign releases the lock (`?release=`), then destroys the session.
 * - Watches: one blocking query per topic (`?index=&wait=`), following Consul's rules for
 *   blocking queries: an index that goes backwards or is 0 restarts from 0, an answer with the
 *   same index is a timeout (no event), errors back off from 100 ms to 2 s; after an error, the
 *   next answer is reported as a change (events may have been missed).
 * - ACL: the token from `--store-token-file` travels in `X-Consul-Token`.
 */
import { ConfigError, NotLeaderError, StoreConflictError, StoreUnavailableError } from '@stolon-ts/cluster';
import { ConsulHttp, type ConsulTlsOptions } from './consul-http.js';
import { LeaderElection, type ElectionAttempt, type ElectionBackend, type ElectionLoop } from './election.js';
import { StoreHandles } from './handles.js';
import { KeptLease } from './kept-lease.js';
import type { ClusterDataRecord, Election, InfoKind, InfoTypes, Store, StoreWatch, WatchTopic } from './store.js';
import {
  DEFAULT_PREFIX,
  DEFAULT_TIMEOUT_MS,
  KeyLayout,
  KeyedSerializer,
  TopicDispatcher,
  checkTtl,
  checkUid,
  monotonicMs,
  parseInfoText,
} from './util.js';

export type { ConsulTlsOptions } from './consul-http.js';

/** Options of {@link ConsulStore}. */
export interface ConsulStoreOptions {
  /** Consul HTTP addresses, e.g. `['http://127.0.0.1:8500']`; tried in order. */
  readonly endpoints: readonly string[];
  readonly clusterName: string;
  /** Key prefix, as Stolon's `--store-prefix`. @default 'stolon/cluster' */
  readonly prefix?: string;
  /** Per-call timeout in ms. @default 5000 */
  readonly timeoutMs?: number;
  /** ACL token (`--store-token-file`); never logged. */
  readonly token?: string | undefined;
  /** TLS material for `https://` endpoints. */
  readonly tls?: ConsulTlsOptions | undefined;
  /** How long a watch's blocking query waits on the server, in ms. @default 30000 */
  readonly watchWaitMs?: number;
}

/** Delay between renewals after a failed one, in ms. */
const RENEW_RETRY_MS = 250;
/** Pause before a campaign starts over after an error, in ms (capped by TTL/4). */
const CAMPAIGN_RETRY_MS = 1000;

/**
 * A Consul session kept alive by a renewal every TTL/3 (every 250 ms after a failure); see
 * `KeptLease` for the timing rules.
 * @internal
 */
class ConsulSession extends KeptLease {
  constructor(
    private readonly http: ConsulHttp,
    id: string,
    ttlMs: number,
    lastConfirmed: number,
    onClose: (s: KeptLease) => void,
  ) {
    super(id, ttlMs, lastConfirmed, http.timeoutMs, RENEW_RETRY_MS, onClose);
  }

  /** One `PUT /v1/session/renew/<id>`; Consul answers 404 for a session it invalidated. */
  protected async renewOnce(limitMs: number): Promise<boolean> {
    return (await this.http.renewSession(this.id, limitMs)) !== undefined;
  }

  /** Stops renewals and destroys the session; a session Consul no longer knows is fine. */
  async destroy(): Promise<void> {
    this.close();
    await this.http.destroySession(this.id);
  }
}

const TOPIC_READ: Record<WatchTopic, (k: KeyLayout) => { key: string; recurse: boolean }> = {
  clusterdata: (k) => ({ key: k.clusterData, recurse: false }),
  keepers: (k) => ({ key: k.infoDir('keepers'), recurse: true }),
  sentinels: (k) => ({ key: k.infoDir('sentinels'), recurse: true }),
  proxies: (k) => ({ key: k.infoDir('proxies'), recurse: true }),
  'sentinel-leader': (k) => ({ key: k.election, recurse: false }),
};

/**
 * A store backed by Consul's KV store and sessions (see the module comment for the mapping).
 *
 * Every method throws `StoreUnavailableError` when Consul cannot be reached, answers with an
 * error, or does not answer within `timeoutMs`, and after {@link ConsulStore.close}.
 */
export class ConsulStore implements Store {
  /** @internal */
  readonly http: ConsulHttp;
  /** @internal */
  readonly keys: KeyLayout;
  /** @internal */
  readonly timeoutMs: number;
  /** @internal */
  readonly watchWaitMs: number;
  private readonly clusterName: string;
  private readonly handles: StoreHandles;
  private readonly infoSessions = new Map<string, { session: ConsulSession; ttlSec: number }>();
  private readonly infoLocks = new KeyedSerializer();
  private readonly sessions = new Set<KeptLease>();

  /**
   * Creates the client; nothing is sent until the first call.
   * @throws ConfigError (`store-endpoints`) when `endpoints` is empty or holds something other
   *   than http(s) URLs, or TLS flags come with an `http://` endpoint.
   */
  constructor(opts: ConsulStoreOptions) {
    if (opts.endpoints.length === 0) {
      throw new ConfigError('no Consul endpoints given: pass --store-endpoints, e.g. http://127.0.0.1:8500', { field: 'store-endpoints' });
    }
    this.clusterName = opts.clusterName;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.watchWaitMs = opts.watchWaitMs ?? 30_000;
    this.keys = new KeyLayout(opts.prefix ?? DEFAULT_PREFIX, opts.clusterName);
    this.handles = new StoreHandles(`Consul store for cluster ${opts.clusterName}`, this.timeoutMs);
    this.http = new ConsulHttp(opts.endpoints, this.timeoutMs, opts.token, opts.tls, this.keys.base);
  }

  // ---- clusterdata ----

  /** @inheritDoc */
  async getClusterData(): Promise<ClusterDataRecord | null> {
    this.handles.ensureOpen('getClusterData');
    const { kvs } = await this.http.read(this.keys.clusterData, { consistent: true });
    const kv = kvs[0];
    return kv === undefined ? null : { text: kv.value, revision: String(kv.modifyIndex) };
  }

  /**
   * @inheritDoc
   * One transaction: `cas` on clusterdata (index 0 when `expectedRevision` is null) and, with
   * `leader`, `check-session` on the leader key with the candidate's session.
   */
  async putClusterData(text: string, expectedRevision: string | null, leader?: Election): Promise<string> {
    this.handles.ensureOpen('putClusterData');
    if (expectedRevision !== null && !/^[1-9][0-9]*$/.test(expectedRevision)) {
      throw new StoreConflictError(`clusterdata revision "${expectedRevision}" is not a Consul index; read it and retry`, { revision: expectedRevision });
    }
    const claim = leader === undefined ? undefined : this.leaderClaim(leader);
    const res = await this.http.txn('compare-and-set clusterdata', [
      { verb: 'cas', key: this.keys.clusterData, value: text, index: expectedRevision === null ? 0 : Number(expectedRevision) },
      ...(claim === undefined ? [] : [{ verb: 'check-session' as const, key: this.keys.election, session: claim }]),
    ]);
    if (res.ok) {
      return String(res.modifyIndexes[0] ?? 0);
    }
    if (claim !== undefined && res.failedOp === 1) {
      throw new NotLeaderError(`not the sentinel leader of ${this.clusterName} any more: its session no longer holds ${this.keys.election} (${res.what}); clusterdata not written`);
    }
    const found = await this.getClusterData().catch(() => undefined);
    throw new StoreConflictError(
      expectedRevision === null
        ? `clusterdata of ${this.clusterName} already exists (revision ${found?.revision ?? '?'}); read it and retry`
        : `clusterdata of ${this.clusterName} changed: expected revision ${expectedRevision}, found ${found === undefined ? '?' : (found?.revision ?? 'none')}; read it and retry`,
      expectedRevision === null ? {} : { revision: expectedRevision },
    );
  }

  /** The session of `leader`, a leading election of this client. @throws NotLeaderError otherwise. */
  private leaderClaim(leader: Election): string {
    const backend = leader instanceof LeaderElection ? leader.backend : undefined;
    const session = backend instanceof ConsulElectionBackend ? backend.sessionOn(this) : undefined;
    if (session === undefined) {
      throw new NotLeaderError(`the election given is not a candidacy of this Consul client for ${this.clusterName}; clusterdata not written`);
    }
    if (!leader.isLeader()) {
      throw new NotLeaderError(`not the sentinel leader of ${this.clusterName} (any more); clusterdata not written`);
    }
    return session;
  }

  /** @inheritDoc */
  async overwriteClusterData(text: string): Promise<string> {
    this.handles.ensureOpen('overwriteClusterData');
    const res = await this.http.txn('put clusterdata', [{ verb: 'set', key: this.keys.clusterData, value: text }]);
    if (!res.ok) {
      throw new StoreUnavailableError(`Consul refused to write clusterdata of ${this.clusterName}: ${res.what}`);
    }
    return String(res.modifyIndexes[0] ?? 0);
  }

  // ---- infos ----

  /**
   * Creates a session kept alive by this client.
   * @internal
   */
  async keptSession(name: string, ttlSec: number, behavior: 'release' | 'delete'): Promise<ConsulSession> {
    const sentAt = monotonicMs();
    const created = await this.http.createSession(name, ttlSec, behavior);
    const session = new ConsulSession(this.http, created.id, created.ttlSec * 1000, sentAt, (s) => this.sessions.delete(s));
    if (this.handles.isClosed) {
      await session.destroy().catch(() => undefined);
      throw this.handles.closedError(`create session ${name}`);
    }
    this.sessions.add(session);
    return session;
  }

  /**
   * @inheritDoc
   * The session TTL is `ceil(ttlMs / 1000)` seconds, raised to the server's minimum (10 s by
   * default); Consul deletes the entry between TTL and 2×TTL after the last renewal.
   * @throws RangeError when `ttlMs` is not positive or `uid` is empty or contains `/`.
   */
  async setInfo<K extends InfoKind>(kind: K, uid: string, info: InfoTypes[K], ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    checkUid(uid);
    this.handles.ensureOpen('setInfo');
    const k = `${kind}/${uid}`;
    const ttlSec = Math.max(1, Math.ceil(ttlMs / 1000));
    const key = this.keys.info(kind, uid);
    const value = JSON.stringify(info);
    await this.infoLocks.run(k, async () => {
      let entry = this.infoSessions.get(k);
      if (entry !== undefined && (entry.ttlSec !== ttlSec || !entry.session.alive())) {
        entry = undefined; // TTL changed or renewals failed: a new session takes the key over below
      }
      if (entry === undefined) {
        entry = { session: await this.keptSession(`stolon-ts ${this.clusterName} ${kind} ${uid}`, ttlSec, 'delete'), ttlSec };
      }
      const session = entry.session;
      if (!(await this.http.lock('acquire', key, value, session.id))) {
        // Locked by another session: our previous one (TTL change, lost renewals) or a crashed
        // predecessor with the same uid. Move the lock in one transaction (unlock, lock), so the
        // entry never disappears: a reader that saw it gone would take the keeper for lost.
        const holder = (await this.http.read(key)).kvs[0]?.session;
        const moved =
          holder !== undefined &&
          holder !== session.id &&
          (await this.http.txn(`take over ${key}`, [
            { verb: 'unlock', key, value, session: holder },
            { verb: 'lock', key, value, session: session.id },
          ])).ok;
        if (!moved && !(await this.http.lock('acquire', key, value, session.id))) {
          throw new StoreUnavailableError(`Consul did not let session ${session.id} take ${key} (held by ${holder ?? 'nobody'}); retrying at the next publish`);
        }
        const previous = this.infoSessions.get(k);
        if (holder !== undefined && holder !== previous?.session.id && holder !== session.id) {
          // A crashed predecessor's session: it holds nothing now, so destroying it deletes nothing.
          await this.http.destroySession(holder).catch(() => undefined);
        }
      }
      session.renewIfOverdue();
      const previous = this.infoSessions.get(k);
      this.infoSessions.set(k, entry);
      if (previous !== undefined && previous.session !== session) {
        // Only now: the key moved to the new session, so destroying the old one does not delete it.
        await previous.session.destroy().catch(() => undefined);
      }
    });
  }

  /** @inheritDoc */
  infoLeaseRemainingMs(kind: InfoKind, uid: string): number | undefined {
    const entry = this.infoSessions.get(`${kind}/${uid}`);
    return entry === undefined ? undefined : entry.session.remainingMs();
  }

  /** @inheritDoc */
  async deleteInfo(kind: InfoKind, uid: string): Promise<void> {
    this.handles.ensureOpen('deleteInfo');
    const k = `${kind}/${uid}`;
    await this.infoLocks.run(k, async () => {
      await this.http.delete(this.keys.info(kind, uid));
      const entry = this.infoSessions.get(k);
      if (entry !== undefined) {
        this.infoSessions.delete(k);
        await entry.session.destroy();
      }
    });
  }

  /** @inheritDoc */
  async listInfos<K extends InfoKind>(kind: K, onInvalid?: (uid: string, err: Error) => void): Promise<Record<string, InfoTypes[K]>> {
    this.handles.ensureOpen('listInfos');
    const dir = this.keys.infoDir(kind);
    const { kvs } = await this.http.read(dir, { recurse: true });
    const out: Record<string, InfoTypes[K]> = {};
    for (const kv of kvs) {
      const uid = kv.key.slice(dir.length);
      if (uid === '' || uid.includes('/')) {
        continue;
      }
      try {
        out[uid] = parseInfoText(kv.value) as InfoTypes[K];
      } catch (err) {
        onInvalid?.(uid, err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }

  // ---- watches ----

  /**
   * @inheritDoc
   * One blocking-query loop per topic; resolves once each has its first index.
   * @throws StoreUnavailableError when a topic's first read fails.
   */
  async watch(topics: readonly WatchTopic[], listener: (topic: WatchTopic) => void): Promise<StoreWatch> {
    this.handles.ensureOpen('watch');
    const w = new ConsulWatch(this, [...new Set(topics)], listener, (x) => this.handles.forgetWatch(x));
    return this.handles.openWatch(w, () => w.established);
  }

  // ---- election ----

  /**
   * @inheritDoc
   * The session TTL is `ceil(ttlMs / 1000)` seconds (raised to the server's minimum); leadership
   * is reported lost once no renewal was confirmed for 3/4 of it.
   * @throws RangeError when `ttlMs` is not positive.
   */
  async campaign(candidateUid: string, ttlMs: number): Promise<Election> {
    return this.handles.campaign(ttlMs, () => new ConsulElectionBackend(this, candidateUid, Math.max(1, Math.ceil(ttlMs / 1000))));
  }

  /** @inheritDoc */
  async getLeader(): Promise<string | null> {
    this.handles.ensureOpen('getLeader');
    const kv = (await this.http.read(this.keys.election)).kvs[0];
    return kv?.session === undefined ? null : kv.value;
  }

  // ---- lifecycle ----

  /**
   * @inheritDoc
   * Resigns elections, closes watches and destroys info sessions (which deletes their keys) in
   * parallel, each bounded by `timeoutMs`; failures are ignored (the sessions then expire).
   */
  async close(): Promise<void> {
    if (!this.handles.markClosed()) {
      return;
    }
    await Promise.all([this.handles.resignAndCloseAll(), ...[...this.infoSessions.values()].map((e) => e.session.destroy().catch(() => undefined))]);
    this.infoSessions.clear();
    for (const s of this.sessions) {
      s.close();
    }
    this.http.destroy();
  }

  /** Test hook: stops this client as a crash would (renewals stop, nothing destroyed). */
  async abandon(): Promise<void> {
    if (!this.handles.markClosed()) {
      return;
    }
    this.handles.abandonElections();
    for (const s of this.sessions) {
      s.close();
    }
    await this.handles.closeWatches();
    this.http.destroy();
  }
}

/** Error back-off of a watch loop, in ms. */
const WATCH_BACKOFF_MIN_MS = 100;
const WATCH_BACKOFF_MAX_MS = 2000;

/**
 * One blocking-query loop per topic (see the module comment for Consul's index rules).
 * @internal
 */
class ConsulWatch implements StoreWatch {
  readonly established: Promise<void>;
  private readonly dispatcher: TopicDispatcher;
  private readonly abort = new AbortController();
  private closed = false;
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly store: ConsulStore,
    topics: readonly WatchTopic[],
    listener: (topic: WatchTopic) => void,
    private readonly onClose: (w: ConsulWatch) => void,
  ) {
    this.dispatcher = new TopicDispatcher(listener);
    const firsts = topics.map((t) => {
      const target = TOPIC_READ[t](store.keys);
      return store.http.read(target.key, { recurse: target.recurse, cancel: this.abort.signal }).then((r) => {
        this.loops.push(this.run(t, r.index));
      });
    });
    this.established = Promise.all(firsts).then(() => undefined);
  }

  private async run(topic: WatchTopic, firstIndex: number): Promise<void> {
    const target = TOPIC_READ[topic](this.store.keys);
    let index = firstIndex;
    let backoff = 0;
    while (!this.closed) {
      try {
        const r = await this.store.http.read(target.key, {
          recurse: target.recurse,
          index: index > 0 ? index : 1,
          waitMs: this.store.watchWaitMs,
          cancel: this.abort.signal,
        });
        if (this.closed) {
          return;
        }
        const missed = backoff > 0;
        backoff = 0;
        if (r.index !== index || missed) {
          this.dispatcher.notify(topic);
        }
        // Consul's rules: an index that went backwards (or 0) restarts from 0.
        index = r.index > 0 && r.index >= index ? r.index : 0;
        if (index === 0) {
          await this.pause(WATCH_BACKOFF_MIN_MS);
        }
      } catch {
        if (this.closed) {
          return;
        }
        backoff = backoff === 0 ? WATCH_BACKOFF_MIN_MS : Math.min(WATCH_BACKOFF_MAX_MS, backoff * 2);
        await this.pause(backoff);
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.abort.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.dispatcher.close();
    this.onClose(this);
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }
}

/** Thrown inside an attempt when the candidacy is over (session lost): handled as a failure. */
class CandidacyOver extends Error {}

/**
 * The Consul steps of a candidacy for the sentinel leader lock: create a session, acquire
 * `<prefix>/<cluster>/sentinel-leader` with it, and lead while the key names this session and
 * the last renewal was confirmed within 3/4 of the TTL. A lost session ends the candidacy: it
 * is destroyed and, after min(1 s, TTL/4), the next attempt starts over with a new session.
 * @internal
 */
class ConsulElectionBackend implements ElectionBackend {
  readonly openWatch = 'before-attempts';
  readonly stepDownTimer = true;
  private session: ConsulSession | undefined;
  private giveUp: Promise<void> | undefined;

  constructor(
    private readonly store: ConsulStore,
    private readonly uid: string,
    private readonly ttlSec: number,
  ) {}

  leaderValidUntil(): number {
    return this.session === undefined ? Number.NEGATIVE_INFINITY : this.session.leaderValidUntil();
  }

  /** The session of this candidacy when it runs on `store`. */
  sessionOn(store: ConsulStore): string | undefined {
    return store === this.store ? this.session?.id : undefined;
  }

  async tryAcquireOrRenew(loop: ElectionLoop): Promise<ElectionAttempt> {
    let session = this.session;
    const key = this.store.keys.election;
    try {
      if (session === undefined) {
        const created = await this.store.keptSession(`stolon-ts ${this.store.keys.base} sentinel ${this.uid}`, this.ttlSec, 'release');
        if (loop.stopped()) {
          await created.destroy().catch(() => undefined);
          return { leader: false, nextMs: 0 };
        }
        session = created;
        this.session = session;
        session.onUpdate(() => loop.wake());
      }
      if (!session.alive()) {
        throw new CandidacyOver('sentinel-leader session lost');
      }
      const held = (await this.store.http.read(key)).kvs[0];
      let mine = held?.session === session.id;
      if (held?.session === undefined && !loop.stopped()) {
        mine = await this.store.http.lock('acquire', key, this.uid, session.id);
      }
      const validFor = session.leaderValidUntil() - monotonicMs();
      const recheckMs = Math.max(100, session.ttlMs / 3);
      const leader = mine && validFor > 0;
      return { leader, nextMs: leader ? Math.min(recheckMs, validFor + 1) : recheckMs };
    } catch (err) {
      if (session !== undefined && this.session === session) {
        this.session = undefined;
        if (!loop.stopped()) {
          this.giveUp = session.destroy().catch(() => undefined);
        }
      }
      throw err;
    }
  }

  async recover(): Promise<number> {
    const giveUp = this.giveUp;
    this.giveUp = undefined;
    await giveUp;
    return Math.min(CAMPAIGN_RETRY_MS, (this.ttlSec * 1000) / 4);
  }

  /** Releases the lock (no lock-delay for others), then destroys the session. Never throws. */
  async release(loopEnded: Promise<void>): Promise<void> {
    await loopEnded;
    const session = this.session;
    if (session === undefined) {
      return;
    }
    await this.store.http.lock('release', this.store.keys.election, this.uid, session.id).catch(() => false);
    await session.destroy().catch(() => undefined);
  }

  abandon(): void {
    this.session?.close();
  }

  /** Watches the leader key so that a release or an invalidation wakes the loop at once. */
  watch(wake: () => void): Promise<StoreWatch> {
    return this.store.watch(['sentinel-leader'], () => wake());
  }
}
