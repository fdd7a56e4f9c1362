/**
 * The sentinel daemon: publishes its info, campaigns for the leader lease, and while leader runs
 * passes that read the store, call the pure `decide`, and write the result with compare-and-set
 * (docs/design.md#pure-decisions). Passes run on store watch events (clusterdata, keeper and proxy infos) and
 * every `sleepInterval` as a safety net.
 *
 * State: starting → running → stopping → stopped (or failed on a fatal error).
 */
import {
  BUG_SENTENCE,
  monoMs,
  newUid,
  nowIso,
  startSerialLoop,
  type Logger,
  type SerialLoop,
} from '@stolon-ts/common';
import {
  ClusterDataInvalidError,
  StolonError,
  StoreConflictError,
  decide,
  emptyMemory,
  errorMessage,
  newClusterData,
  parseClusterData,
  resolveSpec,
  serializeClusterData,
  type ClusterSpec,
  type SentinelMemory,
} from '@stolon-ts/cluster';
import type { Election, Store, StoreWatch } from '@stolon-ts/store';

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
  let pass = 0;
  let lastReason = '';
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const election: Election = await store.campaign(config.uid, config.leaderTtlMs ?? 5000);
  election.onChange((leader) => {
    // A new term starts with empty memory, as Stolon resets its timers on (re)gaining leadership.
    memory = emptyMemory();
    log.info({ leader }, leader ? 'became the leader sentinel' : 'no longer the leader sentinel');
    loop.trigger();
  });

  const runPass = async (): Promise<void> => {
    pass += 1;
    const plog = log.child({ pass });
    await store.setInfo('sentinels', config.uid, { UID: config.uid }, Math.max(3 * sleepMs, 5000));
    let rec = await store.getClusterData();
    if (rec === null) {
      if (config.initialClusterSpec === undefined) {
        say(plog, 'no clusterdata: waiting for `stolonctl init`');
        return;
      }
      if (!election.isLeader()) {
        return;
      }
      const cd = newClusterData(config.initialClusterSpec, newUid(), nowIso());
      await store.putClusterData(serializeClusterData(cd), null);
      say(plog, `created cluster ${cd.cluster.uid} from the initial cluster spec`);
      rec = await store.getClusterData();
      if (rec === null) {
        return;
      }
    }
    let cd;
    try {
      cd = parseClusterData(rec.text);
    } catch (err) {
      if (err instanceof ClusterDataInvalidError) {
        say(plog, `clusterdata unusable, doing nothing: ${err.message}`, 'warn');
        return;
      }
      throw err;
    }
    const spec = resolveSpec(cd.cluster.spec);
    sleepMs = spec.sleepIntervalMs;
    if (!election.isLeader()) {
      say(plog, 'not the leader: observing');
      return;
    }
    const [keeperInfos, proxyInfos] = await Promise.all([store.listInfos('keepers'), store.listInfos('proxies')]);
    const out = decide({ cd, keeperInfos, proxyInfos, memory, now: monoMs(), wallTime: nowIso(), newUid });
    if (out.changed) {
      if (!election.isLeader()) {
        return;
      }
      try {
        await store.putClusterData(serializeClusterData(out.next), rec.revision);
      } catch (err) {
        if (err instanceof StoreConflictError) {
          plog.info('clusterdata changed while deciding; recomputing');
          loop.trigger();
          return;
        }
        throw err;
      }
    }
    // Memory is committed only once the decision it belongs to is stored (Stolon saves its
    // histories only after a successful put).
    memory = out.memory;
    say(plog, out.reasons.join('; '), 'info', out.changed);
  };

  const say = (plog: Logger, reason: string, level: 'info' | 'warn' = 'info', changed = false) => {
    // Repeated identical sentences go to debug so a steady cluster does not flood the log.
    if (reason !== lastReason || changed) {
      plog[level]({ changed }, reason);
      lastReason = reason;
    } else {
      plog.debug(reason);
    }
  };

  const loop: SerialLoop = startSerialLoop({
    run: runPass,
    intervalMs: () => sleepMs,
    onError: (err) => {
      if (err instanceof StolonError && err.transient) {
        log.warn({ err }, `pass failed, retrying: ${errorMessage(err)}`);
      } else {
        log.error({ err }, `${BUG_SENTENCE}: ${errorMessage(err)}`);
      }
    },
  });
  let watch: StoreWatch | undefined;
  try {
    watch = await store.watch(['clusterdata', 'keepers', 'proxies'], () => loop.trigger());
  } catch (err) {
    log.warn({ err }, `cannot watch the store yet, relying on the periodic pass: ${errorMessage(err)}`);
  }
  state = 'running';
  log.info({ uid: config.uid }, 'sentinel started');

  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      state = 'stopping';
      log.info({ reason }, 'sentinel stopping');
      await loop.stop();
      await watch?.close().catch(() => undefined);
      await election.resign().catch(() => undefined);
      await store.deleteInfo('sentinels', config.uid).catch(() => undefined);
      await store.close().catch(() => undefined);
      state = 'stopped';
      resolveDone();
    })();
    return stopping;
  };

  return {
    ready: Promise.resolve(),
    done,
    stop,
    state: () => state,
    isLeader: () => election.isLeader(),
  };
}
