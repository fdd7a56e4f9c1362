/** LeaderElection, the shared election loop, driven by a scripted fake backend on fake timers. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LeaderElection, OpenElections, type ElectionAttempt, type ElectionBackend, type ElectionLoop } from './election.js';
import type { Election, StoreWatch } from './store.js';

/** A backend whose attempts run `step`; it records what the loop asked of it and when. */
class FakeBackend implements ElectionBackend {
  openWatch: 'before-attempts' | 'before-sleeps' = 'before-sleeps';
  stepDownTimer = true;
  validUntil = Number.NEGATIVE_INFINITY;
  /** Times (fake ms) at which attempts started. */
  readonly attemptTimes: number[] = [];
  /** The `leading` argument of each recover call. */
  readonly recovered: boolean[] = [];
  pauseMs = 100;
  released: Array<Promise<void>> = [];
  abandoned = 0;
  watchOpens = 0;
  watchCloses = 0;
  wakeWatch: (() => void) | undefined;
  endWatch: (() => void) | undefined;
  lastLoop: ElectionLoop | undefined;

  constructor(public step: (loop: ElectionLoop, n: number) => Promise<ElectionAttempt>) {}

  async tryAcquireOrRenew(loop: ElectionLoop): Promise<ElectionAttempt> {
    this.lastLoop = loop;
    this.attemptTimes.push(performance.now());
    return this.step(loop, this.attemptTimes.length);
  }

  leaderValidUntil(): number {
    return this.validUntil;
  }

  async recover(leading: boolean): Promise<number> {
    this.recovered.push(leading);
    return this.pauseMs;
  }

  async release(loopEnded: Promise<void>): Promise<void> {
    this.released.push(loopEnded);
    await loopEnded;
  }

  abandon(): void {
    this.abandoned += 1;
  }

  async watch(wake: () => void, ended: () => void): Promise<StoreWatch> {
    this.watchOpens += 1;
    this.wakeWatch = wake;
    this.endWatch = ended;
    return {
      close: async () => {
        this.watchCloses += 1;
      },
    };
  }
}

const VALID_MS = 750;
const RENEW_MS = 250;

/** An attempt that renews: valid for VALID_MS from now, next attempt in RENEW_MS. */
function renew(b: FakeBackend): Promise<ElectionAttempt> {
  b.validUntil = performance.now() + VALID_MS;
  return Promise.resolve({ leader: true, nextMs: RENEW_MS });
}

/** A promise that never settles unless `release` is called. */
function hanging<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Fake timers for setTimeout and the clocks; setImmediate stays real (see `tick`). */
const FAKE = { toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] } as const;

/** Lets pending immediates run (the loop's start, onChange dispatch), then advances the clock by `ms`. */
async function tick(ms = 0): Promise<void> {
  const immediates = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
    }
  };
  await immediates();
  await vi.advanceTimersByTimeAsync(ms);
  await immediates();
}

function track(e: Election): boolean[] {
  const changes: boolean[] = [];
  e.onChange((l) => changes.push(l));
  return changes;
}

describe('LeaderElection', () => {
  let elections: OpenElections;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: [...FAKE.toFake] });
    elections = new OpenElections();
  });

  afterEach(async () => {
    await elections.resignAll();
    vi.useRealTimers();
  });

  it('gains leadership on a later tick and keeps it while renewals succeed', async () => {
    const b: FakeBackend = new FakeBackend(() => renew(b));
    const e = elections.start(b, 1000);
    const changes = track(e);
    expect(b.attemptTimes).toEqual([]);
    expect(e.isLeader()).toBe(false);
    await tick();
    expect(b.attemptTimes).toHaveLength(1);
    expect(e.isLeader()).toBe(true);
    expect(changes).toEqual([true]);
    await tick(3000);
    // One attempt every RENEW_MS, leadership never interrupted.
    expect(b.attemptTimes.length).toBeGreaterThanOrEqual(12);
    expect(e.isLeader()).toBe(true);
    expect(changes).toEqual([true]);
  });

  it('a follower stays follower and attempts at the pace the backend sets', async () => {
    const b: FakeBackend = new FakeBackend(async () => ({ leader: false, nextMs: 400 }));
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick(1000);
    expect(b.attemptTimes.map((t) => Math.round(t - (b.attemptTimes[0] ?? 0)))).toEqual([0, 400, 800]);
    expect(e.isLeader()).toBe(false);
    expect(changes).toEqual([]);
  });

  it('loses leadership when renewals fail: at the end of validity, even while an attempt hangs', async () => {
    const stuck = hanging<ElectionAttempt>();
    const b: FakeBackend = new FakeBackend((_, n) => (n === 1 ? renew(b) : stuck.promise));
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick();
    const validUntil = b.validUntil;
    expect(changes).toEqual([true]);
    await tick(validUntil - performance.now() - 5);
    expect(e.isLeader()).toBe(true);
    await tick(5);
    // isLeader reads the validity itself; the timer reports the loss 1 ms after it ended.
    expect(e.isLeader()).toBe(false);
    await tick(2);
    expect(changes).toEqual([true, false]);
    expect(b.attemptTimes).toHaveLength(2);
    stuck.reject(new Error('timeout'));
    await tick();
    expect(b.recovered).toEqual([false]);
  });

  it('without the step-down timer the loss is reported by the next attempt', async () => {
    const b: FakeBackend = new FakeBackend(async (_, n) => {
      if (n === 1) {
        b.validUntil = performance.now() + VALID_MS;
        return { leader: true, nextMs: VALID_MS + 1 };
      }
      return { leader: performance.now() < b.validUntil, nextMs: RENEW_MS };
    });
    b.stepDownTimer = false;
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick(VALID_MS);
    expect(e.isLeader()).toBe(false);
    expect(changes).toEqual([true]);
    await tick(2);
    expect(b.attemptTimes).toHaveLength(2);
    expect(changes).toEqual([true, false]);
  });

  it('after a failed attempt: pauses as recover says, keeps leadership while valid, then reports the loss', async () => {
    const b: FakeBackend = new FakeBackend((_, n) => (n === 1 ? renew(b) : Promise.reject(new Error('unreachable'))));
    b.stepDownTimer = false;
    b.pauseMs = 200;
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick();
    const t0 = b.attemptTimes[0] ?? 0;
    await tick(1000);
    // Attempts at 0, then RENEW_MS, then every pauseMs after each failure.
    expect(b.attemptTimes.map((t) => Math.round(t - t0))).toEqual([0, 250, 450, 650, 850]);
    // Still valid at 250, 450 and 650; the failure at 850 ends the leadership.
    expect(b.recovered).toEqual([true, true, true, false]);
    expect(changes).toEqual([true, false]);
    expect(e.isLeader()).toBe(false);
  });

  it('a backend that gives its lease up when an attempt fails loses leadership at once', async () => {
    const b: FakeBackend = new FakeBackend(async (_, n) => {
      if (n === 1) {
        return renew(b);
      }
      b.validUntil = Number.NEGATIVE_INFINITY;
      throw new Error('lost');
    });
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick(RENEW_MS + 1);
    expect(b.attemptTimes).toHaveLength(2);
    expect(b.recovered).toEqual([false]);
    expect(e.isLeader()).toBe(false);
    await tick();
    expect(changes).toEqual([true, false]);
  });

  it('an inconclusive attempt keeps the reported state', async () => {
    const b: FakeBackend = new FakeBackend((_, n) => (n === 1 ? renew(b) : Promise.resolve({ leader: undefined, nextMs: 100 })));
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick(VALID_MS - 10);
    expect(e.isLeader()).toBe(true);
    await tick(20);
    expect(e.isLeader()).toBe(false);
    expect(changes).toEqual([true, false]);
  });

  it('a watch event ends the sleep at once; a wake-up during an attempt is dropped', async () => {
    let inFlight: ReturnType<typeof hanging<ElectionAttempt>> | undefined;
    const b: FakeBackend = new FakeBackend((_, n) => {
      if (n === 2) {
        inFlight = hanging<ElectionAttempt>();
        return inFlight.promise;
      }
      return Promise.resolve({ leader: false, nextMs: 10_000 });
    });
    elections.start(b, 1000);
    await tick();
    expect(b.watchOpens).toBe(1);
    b.wakeWatch?.();
    await tick();
    expect(b.attemptTimes).toHaveLength(2);
    // While attempt 2 is in flight a wake-up changes nothing: it then sleeps its full nextMs.
    b.wakeWatch?.();
    inFlight?.resolve({ leader: false, nextMs: 10_000 });
    await tick(9000);
    expect(b.attemptTimes).toHaveLength(2);
    await tick(1000);
    expect(b.attemptTimes).toHaveLength(3);
    // The backend's own wake-up (e.g. a lease update) works the same way.
    b.lastLoop?.wake();
    await tick();
    expect(b.attemptTimes).toHaveLength(4);
  });

  it("'before-sleeps' opens the watch after the first attempt, 'before-attempts' before it", async () => {
    const order: string[] = [];
    const sleepy: FakeBackend = new FakeBackend(async () => {
      order.push(`attempt, ${sleepy.watchOpens} watches`);
      return { leader: false, nextMs: 10_000 };
    });
    elections.start(sleepy, 1000);
    await tick();
    expect(order).toEqual(['attempt, 0 watches']);
    expect(sleepy.watchOpens).toBe(1);

    order.length = 0;
    const eager: FakeBackend = new FakeBackend(async () => {
      order.push(`attempt, ${eager.watchOpens} watches`);
      return { leader: false, nextMs: 10_000 };
    });
    eager.openWatch = 'before-attempts';
    elections.start(eager, 1000);
    await tick();
    expect(order).toEqual(['attempt, 1 watches']);
  });

  it('a watch that ended by itself wakes the loop and is opened again; one that failed to open too', async () => {
    const b: FakeBackend = new FakeBackend(async () => ({ leader: false, nextMs: 10_000 }));
    b.openWatch = 'before-attempts';
    const openWatch = b.watch.bind(b);
    let failNext = false;
    b.watch = async (wake, ended) => {
      if (failNext) {
        failNext = false;
        b.watchOpens += 1;
        throw new Error('cannot watch');
      }
      return openWatch(wake, ended);
    };
    elections.start(b, 1000);
    await tick();
    expect([b.watchOpens, b.attemptTimes.length]).toEqual([1, 1]);
    failNext = true;
    b.endWatch?.();
    await tick();
    // The ended watch woke the loop; the attempt opened a new watch, which failed.
    expect([b.watchOpens, b.attemptTimes.length, b.watchCloses]).toEqual([2, 2, 0]);
    await tick(10_000);
    expect([b.watchOpens, b.attemptTimes.length]).toEqual([3, 3]);
  });

  it('resign: reports the loss at once, waits for the attempt in flight, releases, stops the loop', async () => {
    let inFlight: ReturnType<typeof hanging<ElectionAttempt>> | undefined;
    const b: FakeBackend = new FakeBackend((_, n) => {
      if (n === 1) {
        return renew(b);
      }
      inFlight = hanging<ElectionAttempt>();
      return inFlight.promise;
    });
    const e = elections.start(b, 1000);
    const changes = track(e);
    await tick(RENEW_MS);
    expect(b.attemptTimes).toHaveLength(2);
    let resigned = false;
    const r = e.resign().then(() => {
      resigned = true;
    });
    expect(e.isLeader()).toBe(false);
    expect(b.lastLoop?.stopped()).toBe(true);
    expect(b.released).toHaveLength(1);
    expect(b.watchCloses).toBe(1);
    await tick(100);
    expect(resigned).toBe(false);
    // The attempt in flight renewed after all: that is not reported, and no attempt follows.
    inFlight?.resolve({ leader: true, nextMs: RENEW_MS });
    await tick();
    expect(resigned).toBe(true);
    await r;
    await tick(5000);
    expect(b.attemptTimes).toHaveLength(2);
    expect(changes).toEqual([true, false]);
    // Idempotent: a second resign neither releases again nor throws.
    await e.resign();
    expect(b.released).toHaveLength(1);
    expect(b.abandoned).toBe(0);
  });

  it('resign waits for an attempt in flight at most timeoutMs', async () => {
    const b: FakeBackend = new FakeBackend(() => new Promise<ElectionAttempt>(() => undefined));
    const e = elections.start(b, 1000);
    await tick();
    let resigned = false;
    void e.resign().then(() => {
      resigned = true;
    });
    await tick(999);
    expect(resigned).toBe(false);
    await tick(1);
    expect(resigned).toBe(true);
  });

  it('resign during a sleep ends the loop at once, without another attempt', async () => {
    const b: FakeBackend = new FakeBackend(async () => ({ leader: false, nextMs: 10_000 }));
    const e = elections.start(b, 1000);
    await tick();
    let resigned = false;
    void e.resign().then(() => {
      resigned = true;
    });
    await tick();
    expect(resigned).toBe(true);
    await tick(20_000);
    expect(b.attemptTimes).toHaveLength(1);
  });

  it('abandon: stops without releasing and tells the backend; resign afterwards only waits', async () => {
    const b: FakeBackend = new FakeBackend(() => renew(b));
    const e = elections.start(b, 1000) as LeaderElection;
    const changes = track(e);
    await tick();
    e.abandon();
    e.abandon();
    expect(e.isLeader()).toBe(false);
    expect(b.abandoned).toBe(1);
    await tick(5000);
    expect(b.attemptTimes).toHaveLength(1);
    expect(changes).toEqual([true, false]);
    await e.resign();
    expect(b.released).toHaveLength(0);
  });

  it('a watch still being opened when the election stops is closed once open', async () => {
    const b: FakeBackend = new FakeBackend(async () => ({ leader: false, nextMs: 10_000 }));
    const opening = hanging<StoreWatch>();
    let closed = 0;
    b.watch = () => opening.promise;
    const e = elections.start(b, 1000);
    await tick();
    await e.resign();
    opening.resolve({
      close: async () => {
        closed += 1;
      },
    });
    await tick();
    expect(closed).toBe(1);
  });
});

describe('OpenElections', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: [...FAKE.toFake] });
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('resignAll resigns every running election once; stopped ones leave the set', async () => {
    const open = new OpenElections();
    const backends = [0, 1, 2].map(() => new FakeBackend(async () => ({ leader: false, nextMs: 10_000 })));
    const es = backends.map((b) => open.start(b, 1000));
    await tick();
    await es[0]?.resign();
    await open.resignAll();
    expect(backends.map((b) => b.released.length)).toEqual([1, 1, 1]);
    await open.resignAll();
    expect(backends.map((b) => b.released.length)).toEqual([1, 1, 1]);
  });

  it('abandonAll abandons every running election', async () => {
    const open = new OpenElections();
    const backends = [0, 1].map(() => new FakeBackend(async () => ({ leader: false, nextMs: 10_000 })));
    backends.forEach((b) => open.start(b, 1000));
    await tick();
    open.abandonAll();
    open.abandonAll();
    expect(backends.map((b) => [b.abandoned, b.released.length])).toEqual([
      [1, 0],
      [1, 0],
    ]);
  });
});
