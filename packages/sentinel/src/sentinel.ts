/**
 * The sentinel daemon: publishes its info, campaigns for the leader lease, and while leader runs
 * passes that read the store, call the pure `decide`, and write the result with compare-and-set
 * guarded by its election (`Store.putClusterData` with `leader`: the store refuses the write
 * once this sentinel no longer leads; docs/design.md#pure-decisions). Passes run on store watch events (clusterdata, keeper and proxy infos) and
 * every `sleepInterval` as a safety net.
 *
 * State: starting → running → stopping → stopped (or failed on a fatal error).
 */
import { monoMs, newUid, nowIso, startPassLoop, stopOnce, type Logger, type PassResult } from '@stolon-ts/common';
import {
  ClusterDataInvalidError,
  NotLeaderError,
  StoreConflictError,
  decide,
  emptyMemory,
  newClusterData,
  parseClusterData,
  resolveSpec,
  serializeClusterData,
  type ClusterSpec,
  type SentinelMemory,
} from '@stolon-ts/cluster';
import type { Election, Store } from '@stolon-ts/store';

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
}

export interface SentinelHandle {
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  stop(reason: string): Promise<void>;
  state(): SentinelState;
  isLeader(): boolean;
}

const DEFAULT_SLEEP_MS = 1000;

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
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const election: Election = await store.campaign(config.uid, config.leaderTtlMs ?? 5000);
  election.onChange((leader) => {
    // A new term starts with empty memory, as Stolon resets its timers on (re)gaining leadership.
    memory = emptyMemory();
    log.info({ leader }, leader ? 'became the leader sentinel' : 'no longer the leader sentinel');
    loop.trigger(leader ? 'became leader' : 'lost leadership');
  });

  const runPass = async (): Promise<PassResult | undefined> => {
    await store.setInfo('sentinels', config.uid, { UID: config.uid }, Math.max(3 * sleepMs, 5000));
    let rec = await store.getClusterData();
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
      log.info(`created cluster ${cd.cluster.uid} from the initial cluster spec`);
      rec = await store.getClusterData();
      if (rec === null) {
        return undefined;
      }
    }
    let cd;
    try {
      cd = parseClusterData(rec.text);
    } catch (err) {
      if (err instanceof ClusterDataInvalidError) {
        return { sentence: `clusterdata unusable, doing nothing: ${err.message}`, level: 'warn' };
      }
      throw err;
    }
    const spec = resolveSpec(cd.cluster.spec);
    sleepMs = spec.sleepIntervalMs;
    if (!election.isLeader()) {
      return { sentence: 'not the leader: observing' };
    }
    const [keeperInfos, proxyInfos] = await Promise.all([store.listInfos('keepers'), store.listInfos('proxies')]);
    const out = decide({ cd, keeperInfos, proxyInfos, memory, now: monoMs(), wallTime: nowIso(), newUid });
    if (out.changed) {
      if (!election.isLeader()) {
        return undefined;
      }
      try {
        await store.putClusterData(serializeClusterData(out.next), rec.revision, election);
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
    }
    // Memory is committed only once the decision it belongs to is stored (Stolon saves its
    // histories only after a successful put).
    memory = out.memory;
    return { sentence: out.reasons.join('; '), force: out.changed, fields: { changed: out.changed } };
  };

  const loop = startPassLoop({
    log,
    run: runPass,
    intervalMs: () => sleepMs,
    watch: { store, topics: ['clusterdata', 'keepers', 'proxies'] },
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
  };
}
