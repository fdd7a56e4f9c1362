/**
 * The leader sentinel's copy of its last full read (clusterdata and the keeper and proxy infos,
 * `Store.readClusterView`), kept current by the info values its watch carries
 * (`Store.watchInfoValues`), so that a full pass the timer asks for (every sleepInterval) needs no
 * store read while nothing but infos changed. The keeper does the same for clusterdata (its
 * `readClusterData`); here every keeper and proxy publish is a watch event, so the copy follows
 * them instead of being dropped by them.
 *
 * The copy is used only when all of this holds, else the pass reads the store:
 * - the read and every info change since carry a store revision (etcd), so a change is applied
 *   only when it is newer than the read (a change at or below the read's revision is in it);
 * - no clusterdata event, no `resync` (events may have been missed), no deleted or expired info
 *   since the read was sent;
 * - the pass that made or last used the copy ended in a stored decision that changed nothing
 *   (`settled`): a write, a refusal, a republish wait or an error read again;
 * - the read was sent less than `maxAgeMs` ago (see {@link copyMaxAgeMs}; 1.5 s with the default
 *   spec, so every other pass reads): a watch that stopped delivering without the store client
 *   noticing delays what the leader learns by at most that, and a store outage is seen by the
 *   next read, as before (a pass on the copy is not a store read for the republish wait and readiness).
 * `decide` still runs every pass with the current time, so a keeper or proxy that stopped
 * publishing is judged exactly as after a read (its info, unchanged, is what the read would return).
 */
import { resolveSpec, type KeeperInfo, type ProxyInfo, type ResolvedSpec } from '@stolon-ts/cluster';
import { storeFreshMs } from './health.js';
import { infoObjectOf, type ClusterDataRecord, type ClusterView, type InfoChange, type WatchTopic } from '@stolon-ts/store';

/** A full read's content, as the pass takes it. */
interface CachedView {
  readonly clusterData: ClusterDataRecord | null;
  readonly keepers: Record<string, KeeperInfo>;
  readonly proxies: Record<string, ProxyInfo>;
}

/**
 * How old (since it was sent) the read behind the copy may be, in ms: half the smaller of
 * failInterval (a longer gap between store reads opens the republish wait, republish.ts) and the
 * readiness bound on the last store read (`storeFreshMs`, health.ts), less one sleepInterval (the
 * pass that finds the copy too old may come that much later). Reads are then never further apart
 * than half of either bound plus a pass's own time, so neither sees a gap it would treat as an
 * outage. 0 (never use the copy) when sleepInterval is that long.
 * @param failIntervalMs the spec's failInterval, ms
 * @param storeFreshMs the readiness bound, ms
 * @param sleepMs the spec's sleepInterval, ms
 */
export function copyMaxAgeMs(failIntervalMs: number, storeFreshMs: number, sleepMs: number): number {
  return Math.max(0, Math.min(failIntervalMs, storeFreshMs) / 2 - sleepMs);
}

export class ViewCache {
  private copy:
    | {
        keepers: Record<string, KeeperInfo>;
        proxies: Record<string, ProxyInfo>;
        clusterData: ClusterDataRecord | null;
        revision: bigint;
        sentAt: number;
        /** The latest text of each info changed since the copy was last taken, parsed only when it is taken. */
        texts: Map<string, { readonly kind: 'keepers' | 'proxies'; readonly uid: string; readonly text: string }>;
      }
    | undefined;
  /** The changes seen while a read is in flight (applied over its answer); `spoiled`: drop that answer. */
  private inFlight: { changes: InfoChange[]; spoiled: boolean } | undefined;
  /** Set by {@link settled}, cleared by every use: the copy serves one pass after a pass that changed nothing. */
  private usable = false;
  /** {@link copyMaxAgeMs} of the spec in force (the default until one is read). */
  private maxAgeMs = ViewCache.maxAgeOf(resolveSpec({ initMode: 'new' }));

  private static maxAgeOf(spec: ResolvedSpec): number {
    return copyMaxAgeMs(spec.failIntervalMs, storeFreshMs(spec.sleepIntervalMs), spec.sleepIntervalMs);
  }

  /** The spec just read: its failInterval and sleepInterval bound the copy's age. */
  setSpec(spec: ResolvedSpec): void {
    this.maxAgeMs = ViewCache.maxAgeOf(spec);
  }

  /** An info change from the watch, in the store's order for its kind. */
  onInfo(c: InfoChange): void {
    this.inFlight?.changes.push(c);
    if (this.copy !== undefined && !this.apply(c)) {
      this.copy = undefined;
    }
  }

  /** A watch event of `topic` (the loop's listener): a clusterdata change drops the copy. */
  onTopic(topic: WatchTopic): void {
    if (topic === 'clusterdata') {
      this.drop();
    }
  }

  /** Drops the copy and spoils a read in flight (leadership changed, clusterdata changed). */
  drop(): void {
    this.copy = undefined;
    this.usable = false;
    if (this.inFlight !== undefined) {
      this.inFlight.spoiled = true;
    }
  }

  /**
   * Reads through `read` and keeps its answer (with the changes seen meanwhile applied) when it
   * carries a revision and nothing spoiled it.
   * @param now monotonic ms at the send
   * @throws what `read` throws (the copy is then dropped)
   */
  async read(read: () => Promise<ClusterView>, now: number): Promise<ClusterView> {
    this.copy = undefined;
    this.usable = false;
    const flight = { changes: [] as InfoChange[], spoiled: false };
    this.inFlight = flight;
    try {
      const v = await read();
      if (!flight.spoiled && v.revision !== undefined && /^\d+$/.test(v.revision)) {
        this.copy = { clusterData: v.clusterData, keepers: { ...v.keepers }, proxies: { ...v.proxies }, revision: BigInt(v.revision), sentAt: now, texts: new Map() };
        for (const c of flight.changes) {
          if (this.copy === undefined) {
            break;
          }
          if (!this.apply(c)) {
            this.copy = undefined;
          }
        }
      }
      return v;
    } finally {
      if (this.inFlight === flight) {
        this.inFlight = undefined;
      }
    }
  }

  /** The pass that read or used the copy ended in a stored decision; only one that `changed` nothing lets the next pass use the copy. */
  settled(changed: boolean): void {
    this.usable = !changed && this.copy !== undefined;
  }

  /**
   * The copy for this pass (new objects: later changes never alter what a pass holds), or
   * undefined when the pass must read: see the module comment.
   * @param now monotonic ms
   */
  take(now: number): CachedView | undefined {
    const c = this.copy;
    const ok = this.usable && c !== undefined && now - c.sentAt < this.maxAgeMs;
    this.usable = false;
    if (!ok) {
      return undefined;
    }
    for (const { kind, uid, text } of c.texts.values()) {
      const info = infoObjectOf(text);
      const infos: Record<string, object> = c[kind];
      if (info === undefined) {
        // readClusterView skips what is not a JSON object.
        delete infos[uid];
      } else {
        infos[uid] = info;
      }
    }
    c.texts.clear();
    return { clusterData: c.clusterData, keepers: { ...c.keepers }, proxies: { ...c.proxies } };
  }

  /** Applies `c` to the copy; false when the copy cannot follow it (the copy must go). */
  private apply(c: InfoChange): boolean {
    const copy = this.copy!;
    if ('resync' in c || c.text === null || c.revision === undefined || !/^\d+$/.test(c.revision)) {
      return false;
    }
    if (c.kind === 'sentinels' || BigInt(c.revision) <= copy.revision) {
      return true;
    }
    // Kept as text: an info publishes every sleepInterval, and only the last text before a take counts.
    copy.texts.set(`${c.kind}/${c.uid}`, { kind: c.kind, uid: c.uid, text: c.text });
    return true;
  }
}
