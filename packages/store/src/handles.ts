/**
 * The open/closed state of a store client and what it must end when it closes: its watches and
 * its elections. Shared by the etcd and Kubernetes stores. (The memory store resigns its
 * elections before it counts as closed, and keeps its own.)
 * @internal
 */
import { StoreUnavailableError } from '@stolon-ts/cluster';
import { OpenElections, type ElectionBackend } from './election.js';
import type { Election, StoreWatch } from './store.js';
import { checkTtl } from './util.js';

/**
 * A store client's open watches and elections, and whether it is closed. Once closed, every
 * guarded call throws `StoreUnavailableError` naming the client and the call.
 * @internal
 */
export class StoreHandles {
  private closed = false;
  private readonly watches = new Set<StoreWatch>();
  private readonly elections = new OpenElections();

  /**
   * @param label the client in error messages, e.g. `etcd store for cluster c1`.
   * @param timeoutMs the store's request timeout in ms: how long resigning waits for an
   *   election attempt in flight.
   */
  constructor(
    private readonly label: string,
    private readonly timeoutMs: number,
  ) {}

  /** True once {@link StoreHandles.markClosed} was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The error a call gets once the client is closed: `<label> is closed (<what>)`. */
  closedError(what: string): StoreUnavailableError {
    return new StoreUnavailableError(`${this.label} is closed (${what})`);
  }

  /** @throws StoreUnavailableError ({@link StoreHandles.closedError}) once the client is closed. */
  ensureOpen(what: string): void {
    if (this.closed) {
      throw this.closedError(what);
    }
  }

  /**
   * Marks the client closed: every later `ensureOpen` throws.
   * @returns false when it already was closed (close is then a no-op for the caller).
   */
  markClosed(): boolean {
    if (this.closed) {
      return false;
    }
    this.closed = true;
    return true;
  }

  /**
   * What every `Store.watch` does with a new watch: keeps `w` open with the client until
   * {@link StoreHandles.forgetWatch} (its own close), then waits for `establish`; if that fails,
   * closes `w` and rethrows.
   * @returns `w`, established.
   * @throws whatever `establish` rejects with.
   */
  async openWatch<W extends StoreWatch>(w: W, establish: () => Promise<void>): Promise<W> {
    this.watches.add(w);
    try {
      await establish();
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  /** Forgets a watch that closed. */
  forgetWatch(w: StoreWatch): void {
    this.watches.delete(w);
  }

  /**
   * What every `Store.campaign` does around its backend: checks `ttlMs` and that the client is
   * open, then on a later microtask starts a `LeaderElection` on `backend()` (built only then)
   * and keeps it until it stops. Leadership is reported later still, never before this resolves.
   * @throws RangeError when `ttlMs` is not positive; StoreUnavailableError when closed.
   */
  async campaign(ttlMs: number, backend: () => ElectionBackend): Promise<Election> {
    checkTtl(ttlMs);
    this.ensureOpen('campaign');
    await Promise.resolve();
    return this.elections.start(backend(), this.timeoutMs);
  }

  /**
   * Resigns every election and closes every watch, all at once (each bounded by the store
   * timeout). Resolves when all are done.
   */
  resignAndCloseAll(): Promise<void> {
    return Promise.all([this.elections.resignAll(), ...[...this.watches].map((w) => w.close())]).then(() => undefined);
  }

  /** Crash hook: stops every election without releasing anything (see `LeaderElection.abandon`). */
  abandonElections(): void {
    this.elections.abandonAll();
  }

  /** Closes every watch, in parallel; resolves when all are closed. */
  closeWatches(): Promise<void> {
    return Promise.all([...this.watches].map((w) => w.close())).then(() => undefined);
  }
}
