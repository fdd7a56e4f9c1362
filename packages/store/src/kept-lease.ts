/**
 * A lease on the store kept alive by this process (an etcd lease, a Consul session): one renewal
 * every TTL/3, every `retryMs` after a failed one, with the time of the last confirmed renewal
 * known exactly. Shared by the etcd and Consul stores; each supplies its one renewal call.
 * @internal
 */
import { LEADER_VALID_FRACTION, monotonicMs } from './util.js';

/**
 * A store lease kept alive by a renewal every TTL/3, counted from when the last confirmed one (or
 * the grant) was sent (every `retryMs` after a failure).
 * `lastConfirmed` is the monotonic time at which the last successful renewal (or the grant) was
 * *sent*: the store extends the lease when it receives it, so the lease cannot expire before
 * `lastConfirmed + ttlMs`. A renewal the store answers with "gone" loses the lease at once; after
 * failed renewals it is lost once a whole TTL passed since the last confirmed one.
 * @internal
 */
export abstract class KeptLease {
  private state: 'alive' | 'lost' | 'closed' = 'alive';
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;
  private readonly listeners = new Set<() => void>();

  /**
   * Starts the renewals.
   * @param id the store's id of the lease (etcd lease id, Consul session id)
   * @param ttlMs the TTL the store granted, in ms
   * @param lastConfirmed monotonic ms at which the grant was sent
   * @param renewTimeoutMs the longest a renewal may take, in ms (capped by TTL/3)
   * @param retryMs delay before the next renewal after a failed one, in ms
   * @param onClose called once the lease is lost or closed (the store forgets it)
   */
  constructor(
    readonly id: string,
    readonly ttlMs: number,
    private lastConfirmed: number,
    private readonly renewTimeoutMs: number,
    private readonly retryMs: number,
    private readonly onClose: (l: KeptLease) => void,
  ) {
    // Due TTL/3 after the grant was sent, not after it was answered: a grant answered late (a
    // store that was stalled) leaves less of the TTL, and the first renewal must come in time.
    this.schedule(this.dueInMs(lastConfirmed));
  }

  /** Ms from now until a renewal is due when the last one confirmed was sent at `sentAt`. */
  private dueInMs(sentAt: number): number {
    return Math.max(0, sentAt + this.intervalMs() - monotonicMs());
  }

  /**
   * One renewal round trip, bounded by `limitMs`.
   * @returns true when the store renewed the lease, false when it says the lease is gone.
   * @throws anything when the store could not be asked (the lease is then kept until its TTL).
   */
  protected abstract renewOnce(limitMs: number): Promise<boolean>;

  private intervalMs(): number {
    return Math.max(100, this.ttlMs / 3);
  }

  /** True while the lease can still exist on the store. */
  alive(): boolean {
    return this.state === 'alive' && monotonicMs() - this.lastConfirmed < this.ttlMs;
  }

  /**
   * Ms from now until the earliest moment the store could expire the lease (`lastConfirmed +
   * ttlMs` − now); 0 or less once it may have; -Infinity after it was lost or closed.
   */
  remainingMs(): number {
    return this.state === 'alive' ? this.lastConfirmed + this.ttlMs - monotonicMs() : -Infinity;
  }

  /** Until when (monotonic ms) a leader holding this lease may act; -Infinity once lost or closed. */
  leaderValidUntil(): number {
    return this.state === 'alive' ? this.lastConfirmed + this.ttlMs * LEADER_VALID_FRACTION : Number.NEGATIVE_INFINITY;
  }

  /**
   * Renews now rather than at the timer, unless a renewal is in flight or the lease is no longer
   * kept. For a caller that has just reached the store (a successful write) while this lease's
   * renewals were failing: without it the lease would stay close to its TTL until the retry timer,
   * and whoever bounds its own deadline by {@link remainingMs} (a proxy's watchdog) could give up
   * meanwhile.
   */
  renewNow(): void {
    if (this.state !== 'alive' || this.renewing) {
      return;
    }
    clearTimeout(this.timer);
    void this.tick();
  }

  /** True when the last confirmed renewal is older than a renewal interval: one (or more) failed. */
  overdue(): boolean {
    return this.state === 'alive' && monotonicMs() - this.lastConfirmed > this.intervalMs() * 1.5;
  }

  /**
   * {@link renewNow} when {@link overdue}: what a store calls after a write through this lease
   * succeeded, i.e. the store answers again while the renewals were failing.
   */
  renewIfOverdue(): void {
    if (this.overdue()) {
      this.renewNow();
    }
  }

  /** Calls `fn` after every renewal attempt and when the lease is lost or closed. */
  onUpdate(fn: () => void): void {
    this.listeners.add(fn);
  }

  private emit(): void {
    for (const l of this.listeners) {
      l();
    }
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    if (this.state !== 'alive') {
      return;
    }
    const sentAt = monotonicMs();
    // After a failed renewal: retry sooner.
    let next = Math.min(this.intervalMs(), this.retryMs);
    this.renewing = true;
    try {
      if (await this.renewOnce(Math.min(this.renewTimeoutMs, this.intervalMs()))) {
        this.lastConfirmed = sentAt;
        next = this.dueInMs(sentAt);
      } else {
        this.state = 'lost'; // the store says the lease is gone (expired or revoked elsewhere)
      }
    } catch {
      if (monotonicMs() - this.lastConfirmed >= this.ttlMs) {
        this.state = 'lost';
      }
    } finally {
      this.renewing = false;
    }
    if (this.state === 'alive') {
      this.schedule(next);
    } else {
      this.close();
    }
    this.emit();
  }

  /** Stops renewals without giving the lease up (it expires by TTL). Idempotent. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state === 'alive') {
      this.state = 'closed';
    }
    this.onClose(this);
    this.emit();
    this.listeners.clear();
  }
}
