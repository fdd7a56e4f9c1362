/**
 * The sentinel daemon: publishes its info, campaigns for the leader lease, and while leader runs
 * passes that read the store, call the pure `decide`, and write the result with compare-and-set
 * guarded by its election (`Store.putClusterData` with `leader`: the store refuses the write
 * once this sentinel no longer leads; docs/design.md#pure-decisions). Passes run on store watch events (clusterdata, keeper and proxy infos) and
 * every `sleepInterval` as a safety net; a publish that changed only a progress marker is recorded
 * without a full pass (progress-only.ts).
 *
 * State: starting → running → stopping → stopped (or failed on a fatal error).
 */
import { BUG_SENTENCE, PassTracker, monoMs, newUid, nowIso, startPassLoop, stopOnce, type Logger, type PassContext, type PassResult } from '@stolon-ts/common';
import {
  ClusterDataInvalidError,
  NotLeaderError,
  StoreConflictError,
  decide,
  emptyMemory,
  newClusterData,
  parseClusterData,
  repairClusterData,
  resolveSpec,
  serializeClusterData,
  STOLON_TS_VERSION,
  type ClusterData,
  type ClusterDataRepair,
  type ClusterSpec,
  type KeeperInfo,
  type ProxyInfo,
  type SentinelMemory,
} from '@stolon-ts/cluster';
import type { ClusterDataRecord, Election, Store } from '@stolon-ts/store';
import { Registry } from 'prom-client';
import { SentinelMetrics } from './metrics.js';
import { rememberingInfoCheck, type InfoCheck } from './info-check.js';
import { WatchPasses } from './progress-only.js';
import { RepublishWait } from './republish.js';
import type { SentinelHealthSnapshot } from './health.js';
import { ViewCache } from './view-cache.js';

/** The leader's read: usable (maybe repaired, malformed infos left out), or refused with the sentence to log. */
type LeaderRead =
  | {
      readonly ok: true;
      readonly repair: ClusterDataRepair;
      /** The keeper infos `decide` may use. */
      readonly keeperInfos: Record<string, KeeperInfo>;
      /** One sentence per keeper info left out. */
      readonly ignored: readonly string[];
    }
  | { readonly ok: false; readonly sentence: string };

const REFUSING = 'refusing to act (no failover, no standby or proxy change; leadership and sentinel info kept)';

/**
 * The leader's read (docs/architecture.md#invalid-clusterdata): `repairClusterData`, which drops
 * malformed clusterdata entries not needed for safety, and the infos checked against their types.
 * A malformed proxy info refuses the pass: that proxy might still route to a primary, and a
 * failover must wait for it. A malformed info of the primary's keeper refuses too (the sentinel
 * does not guess whether the primary is alive); any other malformed keeper info is left out, so
 * that keeper counts as not live.
 * @throws what `repairClusterData` throws other than ClusterDataInvalidError (a bug)
 */
function readForDecide(
  text: string,
  allKeeperInfos: Readonly<Record<string, KeeperInfo>>,
  proxyInfos: Readonly<Record<string, ProxyInfo>>,
  check: InfoCheck,
): LeaderRead {
  for (const [uid, problems] of check('proxies', proxyInfos)) {
    if (problems.length > 0) {
      return {
        ok: false,
        sentence: `the info of proxy ${uid} is malformed (${problems.join('; ')}); ${REFUSING}: a proxy whose generation cannot be read may still route to the primary; fix or stop that proxy`,
      };
    }
  }
  const keeperInfos: Record<string, KeeperInfo> = {};
  const bad: Record<string, string[]> = {};
  for (const [uid, problems] of check('keepers', allKeeperInfos)) {
    if (problems.length === 0) {
      keeperInfos[uid] = allKeeperInfos[uid]!;
    } else {
      bad[uid] = [...problems];
    }
  }
  let repair: ClusterDataRepair;
  try {
    repair = repairClusterData(text, keeperInfos);
  } catch (err) {
    if (err instanceof ClusterDataInvalidError) {
      return { ok: false, sentence: `clusterdata unusable, ${REFUSING}: ${err.message}` };
    }
    throw err;
  }
  const { cd } = repair;
  const primaryKeeper = cd.dbs[cd.cluster.status.master]?.spec.keeperUID;
  if (primaryKeeper !== undefined && bad[primaryKeeper] !== undefined) {
    return {
      ok: false,
      sentence: `the info of keeper ${primaryKeeper}, which holds the primary, is malformed (${bad[primaryKeeper].join('; ')}); ${REFUSING} rather than guess whether the primary is alive; fix that keeper (a version mismatch?)`,
    };
  }
  const ignored = Object.entries(bad).map(([uid, problems]) => `ignored the malformed info of keeper ${uid} (${problems.join('; ')}): it counts as not live`);
  return { ok: true, repair, keeperInfos, ignored };
}

/**
 * The decided clusterdata as it is written, checked as keepers and proxies read it: never write
 * what they would refuse to read. Only what is written is checked (most passes write nothing).
 * @returns the text, or the pass's error result when the check fails (a bug in `decide`)
 * @throws what `parseClusterData` throws other than ClusterDataInvalidError
 */
function writable(next: ClusterData): string | PassResult {
  const text = serializeClusterData(next);
  try {
    parseClusterData(text);
  } catch (err) {
    if (err instanceof ClusterDataInvalidError) {
      return { sentence: `${BUG_SENTENCE}: the decided clusterdata is invalid, not writing it: ${err.message}`, level: 'error' };
    }
    throw err;
  }
  return text;
}

export type SentinelState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface SentinelConfig {
  readonly uid: string;
  /** When set and no clusterdata exists, the sentinel creates the cluster with this spec. */
  readonly initialClusterSpec?: ClusterSpec;
  /**
   * TTL of the leader lease in ms: after a leader dies, another sentinel leads within this.
   * @default 5000
   */
  readonly leaderTtlMs?: number;
}

export interface SentinelDeps {
  readonly store: Store;
  readonly logger: Logger;
  /**
   * Where to register the sentinel's metrics (metrics.ts; the status endpoint's `/metrics`).
   * Default: a private registry nobody scrapes.
   */
  readonly registry?: Registry;
}

export interface SentinelHandle {
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  stop(reason: string): Promise<void>;
  state(): SentinelState;
  isLeader(): boolean;
  /** What the status endpoint's checks decide from (health.ts: `sentinelChecks`). */
  health(): SentinelHealthSnapshot;
}

const DEFAULT_SLEEP_MS = 1000;

/**
 * Whether the sentinel must write its info (`{ UID }`, which never changes) in this pass: never
 * written, its TTL changed, the store holds no live lease for it any more (`leaseRemainingMs`
 * undefined or ≤ 0: lost in a store outage), or it was written a TTL ago or more (a slow refresh,
 * should someone have deleted the key). Otherwise the lease's keepalives keep it, and the pass, which
 * runs on every keeper and proxy publish, writes nothing: every write is an fsync on every store
 * member.
 * @param last when it was last written (monotonic ms) and with which TTL (ms)
 */
export function infoNeedsPublish(
  last: { readonly ttlMs: number; readonly atMs: number } | undefined,
  ttlMs: number,
  leaseRemainingMs: number | undefined,
  nowMs: number,
): boolean {
  return last === undefined || last.ttlMs !== ttlMs || leaseRemainingMs === undefined || leaseRemainingMs <= 0 || nowMs - last.atMs >= ttlMs;
}

/** Writes the sentinel's info under a lease of `ttlMs` when {@link infoNeedsPublish} says so. */
function infoPublisher(store: Store, uid: string): (ttlMs: number) => Promise<void> {
  let last: { readonly ttlMs: number; readonly atMs: number } | undefined;
  return async (ttlMs) => {
    if (infoNeedsPublish(last, ttlMs, store.infoLeaseRemainingMs('sentinels', uid), monoMs())) {
      await store.setInfo('sentinels', uid, { UID: uid, Version: STOLON_TS_VERSION }, ttlMs);
      last = { ttlMs, atMs: monoMs() };
    }
  };
}

/** The keeper and proxy infos, listed. */
async function listInfos(store: Store): Promise<{ keepers: Record<string, KeeperInfo>; proxies: Record<string, ProxyInfo> }> {
  const [keepers, proxies] = await Promise.all([store.listInfos('keepers'), store.listInfos('proxies')]);
  return { keepers, proxies };
}

/**
 * The pass's first read: clusterdata, and for a leader on a store that can (`readClusterView`)
 * the infos with it in the same request, so an idle leader's pass is one store read, not three;
 * that read goes through `cache`, which keeps it for the next passes (view-cache.ts), and is
 * recorded in `republish` (also for readiness). With `mayUseCopy` a leader takes the cache's copy
 * instead when it may: that is no store read, and is not recorded.
 * @returns the view and `readAt` (monotonic ms, once it was read or taken)
 */
async function readView(
  store: Store,
  leader: boolean,
  opts: { readonly cache: ViewCache; readonly mayUseCopy: boolean; readonly republish: RepublishWait },
): Promise<{ clusterData: ClusterDataRecord | null; infos?: { keepers: Record<string, KeeperInfo>; proxies: Record<string, ProxyInfo> }; readAt: number }> {
  const { cache, republish } = opts;
  const copy = leader && opts.mayUseCopy ? cache.take(monoMs()) : undefined;
  if (copy !== undefined) {
    return { clusterData: copy.clusterData, infos: copy, readAt: monoMs() };
  }
  const readClusterView = store.readClusterView?.bind(store);
  const v = leader && readClusterView !== undefined ? await cache.read(readClusterView, monoMs()) : undefined;
  const out = v !== undefined ? { clusterData: v.clusterData, infos: v } : { clusterData: await store.getClusterData() };
  const readAt = monoMs();
  republish.read(readAt);
  return { ...out, readAt };
}

/**
 * The store as the pass loop's watch sees it: on a store with `watchInfoValues`, every info
 * change and every clusterdata event also reach `cache` (view-cache.ts).
 */
function cachingWatchStore(store: Store, cache: ViewCache): Pick<Store, 'watch' | 'watchInfoValues'> {
  const valued = store.watchInfoValues?.bind(store);
  const watch = store.watch.bind(store);
  if (valued === undefined) {
    return { watch };
  }
  return {
    watch,
    watchInfoValues: (topics, listener, onInfo) =>
      valued(
        topics,
        (topic) => {
          cache.onTopic(topic);
          listener(topic);
        },
        (change) => {
          cache.onInfo(change);
          onInfo(change);
        },
      ),
  };
}

/** A promise and the function that resolves it (Node 20 has no `Promise.withResolvers`). */
function doneSignal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * The loop's pass: when only keeper and proxy publishes asked for it and they changed nothing but
 * progress markers, the markers are recorded and nothing else is done (progress-only.ts); otherwise
 * the full pass runs, and its end is recorded: the next one is due sleepInterval later (the loop's
 * interval), however many watch passes ran in between.
 */
function watchOrFullPass(
  watchPasses: WatchPasses,
  fullPass: (mayUseCopy: boolean) => Promise<PassResult | undefined>,
  sentinel: { isLeader(): boolean; memory(): SentinelMemory; adopt(m: SentinelMemory): void; sleepMs(): number },
): (ctx: PassContext) => Promise<PassResult | undefined> {
  return async ({ trigger, watchTopics }) => {
    // Every pass takes the info changes the watch carried so far: a full pass reads everything.
    const changes = watchPasses.takeChanges();
    const done =
      watchTopics === undefined ? undefined : await watchPasses.check(watchTopics, () => sentinel.isLeader(), sentinel.memory(), sentinel.sleepMs(), monoMs, changes);
    if (done !== undefined) {
      if (done.memory !== undefined) {
        sentinel.adopt(done.memory);
      }
      return undefined;
    }
    watchPasses.forget();
    // The timer, or info publishes only: the copy of the last read may serve (view-cache.ts);
    // anything else (a clusterdata event, a new term, a conflict, the watch re-established) reads.
    const mayUseCopy = watchTopics === undefined ? trigger === 'interval' : !watchTopics.has('clusterdata');
    try {
      return await fullPass(mayUseCopy);
    } finally {
      watchPasses.fullPassEnded(monoMs());
    }
  };
}

/**
 * Starts a sentinel.
 * @returns once its info is published and it campaigns; `done` settles when it stops.
 */
export async function start(config: SentinelConfig, deps: SentinelDeps): Promise<SentinelHandle> {
  const { store } = deps;
  const log = deps.logger;
  let state: SentinelState = 'starting';
  let memory: SentinelMemory = emptyMemory();
  let sleepMs = DEFAULT_SLEEP_MS;
  const viewCache = new ViewCache();
  const { promise: done, resolve: resolveDone } = doneSignal();

  // After this sentinel could not read the store for a while, and at the start of each of its
  // terms as leader, keepers and proxies need a moment to publish their infos again (leases that
  // expired during a store outage are granted anew): see republish.ts.
  const republish = new RepublishWait();
  const election: Election = await store.campaign(config.uid, config.leaderTtlMs ?? 5000);
  const metrics = new SentinelMetrics(deps.registry ?? new Registry(), () => election.isLeader());
  election.onChange((leader) => {
    if (leader) {
      metrics.becameLeader();
    }
    // A new term starts with empty memory, as Stolon resets its timers on (re)gaining leadership,
    // and with a republish wait (republish.ts).
    memory = emptyMemory();
    viewCache.drop();
    if (leader) {
      republish.newTerm();
    }
    log.info({ leader }, leader ? 'became the leader sentinel' : 'no longer the leader sentinel');
    loop.trigger(leader ? 'became leader' : 'lost leadership');
  });
  const passes = new PassTracker(monoMs);
  const watchPasses = new WatchPasses(store);
  const infoCheck = rememberingInfoCheck();
  const publishInfo = infoPublisher(store, config.uid);
  const runPass = async (mayUseCopy: boolean): Promise<PassResult | undefined> => {
    await publishInfo(Math.max(3 * sleepMs, 5000));
    const view = await readView(store, election.isLeader(), { cache: viewCache, mayUseCopy: mayUseCopy && loop.watching(), republish });
    let rec = view.clusterData;
    const { readAt } = view;
    if (rec === null) {
      if (config.initialClusterSpec === undefined) {
        return { sentence: 'no clusterdata: waiting for `stolonctl init`' };
      }
      if (!election.isLeader()) {
        return undefined;
      }
      const cd = newClusterData(config.initialClusterSpec, newUid(), nowIso());
      try {
        await store.putClusterData(serializeClusterData(cd), null, election);
      } catch (err) {
        if (err instanceof NotLeaderError) {
          return { sentence: `lost the leadership before creating the cluster: ${err.message}`, level: 'warn' };
        }
        throw err;
      }
      metrics.decided(undefined, cd);
      log.info(`created cluster ${cd.cluster.uid} from the initial cluster spec`);
      rec = await store.getClusterData();
      if (rec === null) {
        return undefined;
      }
    }
    if (!election.isLeader()) {
      // Observers read as every other component does; only the leader repairs.
      try {
        const observedCd = parseClusterData(rec.text);
        const observed = resolveSpec(observedCd.cluster.spec);
        metrics.checked(observedCd, Date.now());
        sleepMs = observed.sleepIntervalMs;
        // The spec's failInterval, not the default, decides what counts as an outage for a
        // sentinel that has not led yet (and how long its wait would be once it leads).
        republish.setSpec(observed);
      } catch (err) {
        if (err instanceof ClusterDataInvalidError) {
          return { sentence: `not the leader; clusterdata is unusable: ${err.message}`, level: 'warn' };
        }
        throw err;
      }
      return { sentence: 'not the leader: observing' };
    }
    const { keepers: allKeeperInfos, proxies: proxyInfos } = view.clusterData === rec && view.infos !== undefined ? view.infos : await listInfos(store);
    const read = readForDecide(rec.text, allKeeperInfos, proxyInfos, infoCheck);
    if (!read.ok) {
      // Leadership and the sentinel info are kept (above); nothing else is done (fail closed).
      return { sentence: read.sentence, level: 'error', key: read.sentence };
    }
    const { keeperInfos } = read;
    const { cd } = read.repair;
    const dropped = [...read.ignored, ...read.repair.dropped];
    const spec = resolveSpec(cd.cluster.spec);
    sleepMs = spec.sleepIntervalMs;
    republish.setSpec(spec);
    viewCache.setSpec(spec);
    const waiting = republish.check(cd, keeperInfos, proxyInfos, readAt);
    if (waiting !== undefined) {
      return { sentence: waiting, key: 'republish-wait' };
    }
    const out = decide({ cd, keeperInfos, proxyInfos, memory, now: monoMs(), wallTime: nowIso(), newUid });
    if (out.changed || read.repair.dropped.length > 0) {
      const text = writable(out.next);
      if (typeof text !== 'string') {
        return text;
      }
      if (!election.isLeader()) {
        return undefined;
      }
      try {
        await store.putClusterData(text, rec.revision, election);
      } catch (err) {
        if (err instanceof NotLeaderError) {
          // The store refused: another sentinel may lead by now. Nothing of this pass is kept.
          return { sentence: `lost the leadership before writing: ${err.message}; this decision is dropped`, level: 'warn', force: true };
        }
        if (err instanceof StoreConflictError) {
          loop.trigger('clusterdata changed while deciding');
          return { sentence: 'clusterdata changed while deciding; recomputing', force: true };
        }
        throw err;
      }
      metrics.decided(cd, out.next);
    }
    metrics.checked(out.next, Date.now());
    if (dropped.length > 0) {
      memory = out.memory;
      return {
        sentence: `malformed store content not needed for safety; repaired: ${dropped.join('; ')}; then: ${out.reasons.join('; ')}`,
        level: 'error',
        fields: { changed: true, dropped },
      };
    }
    // Memory is committed only once the decision it belongs to is stored (Stolon saves its
    // histories only after a successful put).
    memory = out.memory;
    watchPasses.settled(allKeeperInfos, proxyInfos, spec, out.changed);
    viewCache.settled(out.changed);
    return { sentence: out.reasons.join('; '), force: out.changed, fields: { changed: out.changed } };
  };

  const loop = startPassLoop({
    log,
    run: passes.wrap(watchOrFullPass(watchPasses, metrics.timed(runPass), { isLeader: () => election.isLeader(), memory: () => memory, adopt: (m) => (memory = m), sleepMs: () => sleepMs })),
    intervalMs: () => watchPasses.nextFullInMs(sleepMs, monoMs()),
    watch: { store: watchPasses.watchStore(cachingWatchStore(store, viewCache)), topics: ['clusterdata', 'keepers', 'proxies'] },
  });
  state = 'running';
  log.info({ uid: config.uid }, 'sentinel started');

  const stop = stopOnce(async (reason) => {
    state = 'stopping';
    log.info({ reason }, 'sentinel stopping');
    await loop.stop();
    await election.resign().catch(() => undefined);
    await store.deleteInfo('sentinels', config.uid).catch(() => undefined);
    await store.close().catch(() => undefined);
    state = 'stopped';
    resolveDone();
  });

  return {
    ready: Promise.resolve(),
    done,
    stop,
    state: () => state,
    isLeader: () => election.isLeader(),
    health: () => ({ state, leader: election.isLeader(), loop: passes.snapshot(), lastStoreReadAtMs: republish.lastReadAt, sleepMs, nowMs: monoMs() }),
  };
}
