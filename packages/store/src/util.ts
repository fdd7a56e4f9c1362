/**
 * Helpers shared by the store backends (key layout, info decoding, TTL rules, listener
 * dispatch). Not exported from the package index, except `infoObjectOf`.
 * @internal
 */
import type { InfoKind, WatchTopic } from './store.js';

/** Default key prefix, as Stolon's `--store-prefix`. @internal */
export const DEFAULT_PREFIX = 'stolon/cluster';

/** Default per-request timeout in ms, as Stolon's `--store-timeout` (5s). @internal */
export const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Fraction of the lease TTL after the last confirmed keepalive during which a leader may still
 * act. The remaining quarter is the margin that lets a leader give up before its lease can
 * expire and another candidate win (docs/design.md#fail-closed).
 * @internal
 */
export const LEADER_VALID_FRACTION = 3 / 4;

/**
 * The monotonic clock every lease and election timing uses, in ms (`performance.now()`): wall
 * clock steps cannot shorten or stretch a TTL.
 * @internal
 */
export function monotonicMs(): number {
  return performance.now();
}

/** Key layout under `<prefix>/<cluster>`, Stolon's (see `store.ts`). @internal */
export class KeyLayout {
  readonly base: string;
  constructor(prefix: string, clusterName: string) {
    this.base = `${prefix}/${clusterName}`;
  }
  get clusterData(): string {
    return `${this.base}/clusterdata`;
  }
  infoDir(kind: InfoKind): string {
    return `${this.base}/${kind}/info/`;
  }
  info(kind: InfoKind, uid: string): string {
    return `${this.infoDir(kind)}${uid}`;
  }
  /** The election prefix; candidate keys are `<electionPrefix>/<lease id in hex>`, as etcd's Go client. */
  get election(): string {
    return `${this.base}/sentinel-leader`;
  }
}

/**
 * Decodes an info entry.
 * @throws Error when `text` is not JSON or not a JSON object.
 * @internal
 */
export function parseInfoText(text: string): object {
  const v: unknown = JSON.parse(text);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new Error(`info is not a JSON object: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`);
  }
  return v;
}

/**
 * `text` as an info, by the rule of {@link parseInfoText}, or undefined when it is not a JSON
 * object (for callers that judge such an info themselves instead of failing).
 */
export function infoObjectOf(text: string): object | undefined {
  try {
    return parseInfoText(text);
  } catch {
    return undefined;
  }
}

/**
 * Checks a TTL argument.
 * @throws RangeError when `ttlMs` is not a positive finite number (a programming error).
 * @internal
 */
export function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive number of milliseconds, got ${ttlMs}`);
  }
}

/**
 * Checks an info uid (it becomes the last key segment).
 * @throws RangeError when empty or containing `/`.
 * @internal
 */
export function checkUid(uid: string): void {
  if (uid.length === 0 || uid.includes('/')) {
    throw new RangeError(`info uid must be non-empty and contain no '/', got "${uid}"`);
  }
}

/**
 * Runs async functions one after the other per key: `run(key, fn)` starts `fn` once every earlier
 * call for the same key has settled (fulfilled or rejected) and settles as `fn` does; calls for
 * other keys run alongside. A key with nothing in flight takes no memory.
 * @internal
 */
export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** @returns what `fn` returns; rejects as `fn` does (an earlier call's failure does not matter). */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(key) === tail) {
        this.tails.delete(key);
      }
    }
  }
}

/**
 * Dispatches watch events to a listener on a later macrotask, coalescing repeats of a topic
 * that is already queued. A throwing listener cannot break the watch (its error is dropped:
 * listeners are expected to only schedule work).
 * @internal
 */
export class TopicDispatcher {
  private readonly pending = new Set<WatchTopic>();
  private closed = false;
  constructor(private readonly listener: (topic: WatchTopic) => void) {}

  notify(topic: WatchTopic): void {
    if (this.closed || this.pending.has(topic)) {
      return;
    }
    this.pending.add(topic);
    setImmediate(() => {
      this.pending.delete(topic);
      if (this.closed) {
        return;
      }
      try {
        this.listener(topic);
      } catch {
        // See class comment: a listener error must not kill the watch.
      }
    });
  }

  close(): void {
    this.closed = true;
    this.pending.clear();
  }
}

/**
 * Leadership change notifications for `Election.onChange`: always asynchronous, in order.
 * @internal
 */
export class LeadershipNotifier {
  private readonly listeners: Array<(leader: boolean) => void> = [];
  private current = false;

  get leader(): boolean {
    return this.current;
  }

  on(listener: (leader: boolean) => void): void {
    this.listeners.push(listener);
  }

  set(leader: boolean): void {
    if (leader === this.current) {
      return;
    }
    this.current = leader;
    setImmediate(() => {
      for (const l of this.listeners) {
        try {
          l(leader);
        } catch {
          // A listener error must not stop the others or the election.
        }
      }
    });
  }
}
