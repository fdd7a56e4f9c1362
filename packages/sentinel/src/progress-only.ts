/**
 * The leader sentinel's cheap answer to a keeper or proxy publish in a steady cluster. Every
 * keeper publishes its info each sleepInterval with a new progress marker (`infoUID`) and nothing
 * else changed, and so does every proxy after each successful check: a full pass for each publish
 * (read clusterdata and every info, check them, `decide`, check the result) was most of an idle
 * sentinel's CPU. When the infos read again differ from those of the last full pass only in their
 * markers, the sentinel stamps each new marker in its memory with the time it saw it — what the
 * full pass's `decide` would have recorded (docs/architecture.md, "Alive means making progress") —
 * and skips the rest. The full pass still runs every sleepInterval (sentinel.ts), at once on a
 * clusterdata event, and at once whenever a marker has been unchanged for failInterval (a keeper
 * that stalls or dies is then judged as soon as before), so failure detection keeps its resolution.
 */
import type { KeeperInfo, ProxyInfo, ResolvedSpec, SentinelMemory } from '@stolon-ts/cluster';
import { infoObjectOf, type InfoChange, type Store, type WatchTopic } from '@stolon-ts/store';

/** The infos of the last full pass without their progress markers, as JSON, by uid. */
export interface SteadyView {
  readonly keepers: ReadonlyMap<string, string>;
  readonly proxies: ReadonlyMap<string, string>;
}

/** An info as JSON without its top-level `infoUID` (no info type nests one). */
function withoutMarker(info: object): string {
  return JSON.stringify(info, (k, v: unknown) => (k === 'infoUID' ? undefined : v));
}

/** The view a full pass leaves for the next watch passes to compare against. */
export function steadyView(keeperInfos: Readonly<Record<string, KeeperInfo>>, proxyInfos: Readonly<Record<string, ProxyInfo>>): SteadyView {
  const view = (infos: Readonly<Record<string, object>>) => new Map(Object.entries(infos).map(([uid, i]) => [uid, withoutMarker(i)]));
  return { keepers: view(keeperInfos), proxies: view(proxyInfos) };
}

/**
 * What a watch pass read: the infos of the topics its events named, all of them (listed again),
 * or with `partial` only those the watch events carried (the others did not change since).
 */
export interface WatchRead {
  readonly keepers?: Readonly<Record<string, { readonly infoUID?: unknown }>>;
  readonly proxies?: Readonly<Record<string, { readonly infoUID?: unknown }>>;
  /** Only the infos that changed: an info of `view` missing here is unchanged, not gone. */
  readonly partial?: boolean;
}

/**
 * The infos the watch events carried (`Store.watchInfoValues`), the last value of each uid.
 * @returns the partial read; `'full'` when an info was deleted or expired, or is not a JSON
 *   object (the full pass judges it); `'list'` when events may have been missed (a `resync`):
 *   list the infos again
 */
export function readFromChanges(changes: readonly InfoChange[]): WatchRead | 'full' | 'list' {
  const out: { keepers?: Record<string, object>; proxies?: Record<string, object> } = {};
  for (const c of changes) {
    if (c.kind === 'sentinels') {
      continue;
    }
    if ('resync' in c) {
      return 'list';
    }
    if (c.text === null) {
      return 'full';
    }
    const v = infoObjectOf(c.text);
    if (v === undefined) {
      return 'full';
    }
    (out[c.kind] ??= {})[c.uid] = v;
  }
  return { ...out, partial: true };
}

type Progress = NonNullable<SentinelMemory['keeperProgress']>;

/**
 * `progress` with every changed marker of `infos` stamped `now`; undefined when an info differs
 * from `view` beyond its marker, or (all infos listed, not `partial`) one appeared or went away.
 */
function stamp(view: ReadonlyMap<string, string>, progress: Progress | undefined, infos: WatchRead['keepers'], now: number, partial: boolean): Progress | undefined {
  if (infos === undefined) {
    return progress;
  }
  const uids = Object.keys(infos);
  if (partial ? uids.some((uid) => !view.has(uid)) : uids.length !== view.size) {
    return undefined;
  }
  const out = { ...progress };
  for (const uid of uids) {
    const info = infos[uid]!;
    if (typeof info.infoUID !== 'string' || view.get(uid) !== withoutMarker(info)) {
      return undefined;
    }
    const p = out[uid];
    // Only markers decide already tracks (infos of this cluster); another cluster's keeper counts for nothing.
    if (p !== undefined && p.infoUID !== info.infoUID) {
      out[uid] = { infoUID: info.infoUID, since: now };
    }
  }
  return out;
}

/**
 * Whether a pass that only keeper and proxy publishes asked for can be replaced by recording their
 * progress markers, and the memory that records them.
 * @param view the last full pass's infos ({@link steadyView}); undefined when that pass did not
 *   end in a stored decision (refused, waiting, failed) or leadership changed since
 * @param memory the sentinel's memory after that pass
 * @param read the infos read now, of the kinds the events named
 * @param now monotonic ms, the same clock as `decide`'s `now`
 * @param limits failInterval and proxyTimeout of the spec, in ms
 * @returns the memory with each new marker stamped `now`; undefined when a full pass must run: no
 *   view, something besides a marker changed (an info appeared, went away or says something new),
 *   the memory has a timer running (a DB failing or converging, a switchover, a synchronous standby
 *   catching up), or a marker has not changed for failInterval (keepers) or proxyTimeout (proxies)
 */
export function progressOnly(
  view: SteadyView | undefined,
  memory: SentinelMemory,
  read: WatchRead,
  now: number,
  limits: { readonly failIntervalMs: number; readonly proxyTimeoutMs: number },
): SentinelMemory | undefined {
  if (
    view === undefined ||
    Object.keys(memory.dbErrorSince).length > 0 ||
    Object.keys(memory.dbConvergingSince).length > 0 ||
    memory.switchoverSince !== undefined ||
    Object.keys(memory.syncCatchUp ?? {}).length > 0
  ) {
    return undefined;
  }
  const partial = read.partial === true;
  const keeperProgress = stamp(view.keepers, memory.keeperProgress, read.keepers, now, partial);
  const proxyProgress = stamp(view.proxies, memory.proxyProgress, read.proxies, now, partial);
  if (keeperProgress === undefined || proxyProgress === undefined) {
    return undefined;
  }
  const stalled = (progress: Progress, limitMs: number) => Object.values(progress).some((p) => now - p.since > limitMs);
  if (stalled(keeperProgress, limits.failIntervalMs) || stalled(proxyProgress, limits.proxyTimeoutMs)) {
    return undefined;
  }
  return { ...memory, keeperProgress, proxyProgress };
}

/**
 * The sentinel's bookkeeping for its watch passes: the view of the last full leader pass that
 * stored its decision, when the last full pass ended, and the spec's timeouts.
 */
export class WatchPasses {
  private view: SteadyView | undefined;
  private lastFullAt = -Infinity;
  private limits = { failIntervalMs: 0, proxyTimeoutMs: 0 };
  /** Info changes the watch carried since the last pass began; undefined: the watch carries none. */
  private changes: InfoChange[] | undefined;

  constructor(private readonly store: Pick<Store, 'listInfos'>) {}

  /**
   * The loop's watch, taking the values of info changes from its events when the store can
   * (`Store.watchInfoValues`) so that a watch pass reads nothing; otherwise `store.watch`.
   */
  watchStore(store: Pick<Store, 'watch' | 'watchInfoValues'>): Pick<Store, 'watch'> {
    const valued = store.watchInfoValues?.bind(store);
    if (valued === undefined) {
      return store;
    }
    return {
      watch: (topics, listener) => {
        this.changes ??= [];
        return valued(topics, listener, (c) => this.changes?.push(c));
      },
    };
  }

  /**
   * Takes the info changes the watch carried since the last call (each pass begins with it: a
   * full pass reads everything anyway).
   * @returns undefined when the watch carries no values
   */
  takeChanges(): readonly InfoChange[] | undefined {
    const c = this.changes;
    if (c !== undefined) {
      this.changes = [];
    }
    return c;
  }

  /** Forgets the view: a full pass starts, or leadership changed. */
  forget(): void {
    this.view = undefined;
  }

  /**
   * A full leader pass committed its memory on these infos and spec. When it `changed` clusterdata
   * no view is kept: the write's own watch event runs the next full pass.
   */
  settled(keeperInfos: Readonly<Record<string, KeeperInfo>>, proxyInfos: Readonly<Record<string, ProxyInfo>>, spec: ResolvedSpec, changed: boolean): void {
    this.view = changed ? undefined : steadyView(keeperInfos, proxyInfos);
    this.limits = { failIntervalMs: spec.failIntervalMs, proxyTimeoutMs: spec.proxyTimeoutMs };
  }

  /** A full pass ended at `now` (monotonic ms). */
  fullPassEnded(now: number): void {
    this.lastFullAt = now;
  }

  /** Ms until the next full pass is due (sleepInterval after the last one ended; watch passes do not delay it). */
  nextFullInMs(sleepMs: number, now: number): number {
    return Math.max(0, sleepMs - (now - this.lastFullAt));
  }

  /**
   * Whether the pass only keeper and proxy publishes asked for is done without a full one: never
   * when clusterdata changed or a full pass is due; at once for a sentinel that does not lead (it
   * reads only clusterdata); for the leader when the infos changed only in their progress markers
   * ({@link progressOnly}).
   * @param topics the topics of the events (the pass loop's `watchTopics`)
   * @param changes the info changes the watch carried since the last pass ({@link takeChanges});
   *   when given, the infos are taken from them and not listed again, unless one was missed
   * @returns `{ memory }` to adopt (the leader; `memory` undefined for an observer), or undefined
   *   when a full pass must run (also when the store cannot be read: the full pass says why)
   */
  async check(
    topics: ReadonlySet<WatchTopic>,
    isLeader: () => boolean,
    memory: SentinelMemory,
    sleepMs: number,
    now: () => number,
    changes?: readonly InfoChange[],
  ): Promise<{ readonly memory: SentinelMemory | undefined } | undefined> {
    if (topics.has('clusterdata') || this.nextFullInMs(sleepMs, now()) === 0) {
      return undefined;
    }
    if (!isLeader()) {
      return { memory: undefined };
    }
    if (this.view === undefined) {
      return undefined;
    }
    const fromEvents = changes === undefined ? 'list' : readFromChanges(changes);
    if (fromEvents === 'full') {
      return undefined;
    }
    const read = fromEvents === 'list' ? await this.list(topics) : fromEvents;
    if (read === undefined) {
      return undefined;
    }
    const next = isLeader() ? progressOnly(this.view, memory, read, now(), this.limits) : undefined;
    return next === undefined ? undefined : { memory: next };
  }

  /** Lists the infos of the topics again; undefined when the store cannot be read (the full pass says why). */
  private async list(topics: ReadonlySet<WatchTopic>): Promise<WatchRead | undefined> {
    try {
      const [keepers, proxies] = await Promise.all([
        topics.has('keepers') ? this.store.listInfos('keepers') : undefined,
        topics.has('proxies') ? this.store.listInfos('proxies') : undefined,
      ]);
      return { ...(keepers !== undefined ? { keepers } : {}), ...(proxies !== undefined ? { proxies } : {}) };
    } catch {
      return undefined;
    }
  }
}
