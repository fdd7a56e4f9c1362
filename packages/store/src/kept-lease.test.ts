/** KeptLease's renewal timing, on fake timers with a scripted store. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KeptLease } from './kept-lease.js';

/** A lease whose renewals succeed or fail as `store.up` says, counting the attempts. */
class ScriptedLease extends KeptLease {
  attempts = 0;
  constructor(private readonly store: { up: boolean }) {
    super('l1', 3000, performance.now(), 1000, 250, () => undefined);
  }
  protected renewOnce(): Promise<boolean> {
    this.attempts += 1;
    return this.store.up ? Promise.resolve(true) : Promise.reject(new Error('store unreachable'));
  }
}

describe('KeptLease', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('renews every TTL/3, every retryMs after a failure, and at once on renewNow once overdue', async () => {
    const store = { up: true };
    const lease = new ScriptedLease(store);
    await vi.advanceTimersByTimeAsync(1000);
    expect(lease.attempts).toBe(1);
    expect(lease.overdue()).toBe(false);
    // The store stops answering for 1.6 s: retries every 250 ms, the lease runs down.
    store.up = false;
    await vi.advanceTimersByTimeAsync(1600);
    expect(lease.overdue()).toBe(true);
    expect(lease.remainingMs()).toBeLessThan(1500);
    // It answers again; the caller that just wrote through it asks for a renewal now, without
    // waiting for the retry timer.
    store.up = true;
    const before = lease.attempts;
    lease.renewNow();
    await vi.advanceTimersByTimeAsync(0);
    expect(lease.attempts).toBe(before + 1);
    expect(lease.overdue()).toBe(false);
    expect(lease.remainingMs()).toBe(3000);
    // Back on the regular interval: no renewal before TTL/3.
    await vi.advanceTimersByTimeAsync(999);
    expect(lease.attempts).toBe(before + 1);
    await vi.advanceTimersByTimeAsync(1);
    expect(lease.attempts).toBe(before + 2);
    lease.close();
  });

  it('does nothing on renewNow while a renewal is in flight, or once closed', async () => {
    let release: (ok: boolean) => void = () => undefined;
    class SlowLease extends KeptLease {
      attempts = 0;
      constructor() {
        super('l2', 3000, performance.now(), 1000, 250, () => undefined);
      }
      protected renewOnce(): Promise<boolean> {
        this.attempts += 1;
        return new Promise((res) => (release = res));
      }
    }
    const lease = new SlowLease();
    await vi.advanceTimersByTimeAsync(1000);
    expect(lease.attempts).toBe(1);
    lease.renewNow();
    expect(lease.attempts).toBe(1);
    release(true);
    await vi.advanceTimersByTimeAsync(0);
    lease.close();
    lease.renewNow();
    expect(lease.attempts).toBe(1);
    expect(lease.remainingMs()).toBe(-Infinity);
  });

  it('renews a lease whose grant was answered late TTL/3 after the grant was sent, not after the answer', async () => {
    // The grant was sent 2.5 s before its answer came (a store stalled, then answering again):
    // 0.5 s of the 3 s TTL is left. The first renewal used to come TTL/3 after the answer, when
    // the lease had already run out on this side (a sentinel lost the leadership it had just won).
    class LateGrant extends KeptLease {
      attempts = 0;
      constructor() {
        super('l3', 3000, performance.now() - 2500, 1000, 250, () => undefined);
      }
      protected renewOnce(): Promise<boolean> {
        this.attempts += 1;
        return Promise.resolve(true);
      }
    }
    const lease = new LateGrant();
    expect(lease.remainingMs()).toBe(500);
    await vi.advanceTimersByTimeAsync(0);
    expect(lease.attempts).toBe(1);
    expect(lease.remainingMs()).toBe(3000);
    await vi.advanceTimersByTimeAsync(600);
    expect(lease.alive()).toBe(true);
    // Then every TTL/3 from the renewal's send time.
    await vi.advanceTimersByTimeAsync(399);
    expect(lease.attempts).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(lease.attempts).toBe(2);
    lease.close();
  });
});
