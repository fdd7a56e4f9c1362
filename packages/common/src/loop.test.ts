/** The daemons' pass loop: serial passes, the watch with its timer fallback, one sentence per pass, stop once. */
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError, StolonError } from '@stolon-ts/cluster';
import { MemoryBackend, MemoryStore, type Store, type WatchTopic } from '@stolon-ts/store';
import { createLogger, BUG_SENTENCE } from './index.js';
import { describePassFailure, startPassLoop, stopOnce, timerDelayMs, TIMER_JITTER, type PassLoop, type PassResult } from './loop.js';

interface Line {
  level: number;
  msg: string;
  pass?: number;
  [k: string]: unknown;
}
const DEBUG = 20;
const INFO = 30;
const WARN = 40;
const ERROR = 50;

const loops: PassLoop[] = [];
afterEach(async () => {
  for (const l of loops.splice(0)) {
    await l.stop();
  }
});

function capture(): { log: ReturnType<typeof createLogger>; lines: Line[] } {
  const lines: Line[] = [];
  return { log: createLogger({ level: 'debug', component: 'test', dest: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } }), lines };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(5);
  }
}

/** A store watch the test fires by hand: `emit(topic)` calls the loop's listener. */
function manualWatch(): { store: Pick<Store, 'watch'>; emit: (topic: WatchTopic) => void } {
  let listener: ((topic: WatchTopic) => void) | undefined;
  return {
    store: {
      watch: (_topics, l) => {
        listener = l;
        return Promise.resolve({ close: () => Promise.resolve() });
      },
    },
    emit: (topic) => {
      if (listener === undefined) {
        throw new Error('the watch was not started');
      }
      listener(topic);
    },
  };
}

/** A pass as a loop saw it: its trigger, and the topics of the watch events alone that asked for it (sorted, joined). */
interface SeenPass {
  readonly trigger: string;
  readonly topics: string | undefined;
}

/**
 * A pass loop on a hand-fired watch ({@link manualWatch}) that records every pass in `seen` and
 * holds each pass `hold` picks until `release()`; `held()` says whether one is held now.
 */
function recordingLoop(opts: { readonly intervalMs: number; readonly random?: () => number; readonly topics: WatchTopic[]; readonly hold?: (p: SeenPass) => boolean }) {
  const { log } = capture();
  const { store, emit } = manualWatch();
  const seen: SeenPass[] = [];
  let releaseHeld: (() => void) | undefined;
  const loop = startPassLoop({
    log,
    intervalMs: () => opts.intervalMs,
    ...(opts.random !== undefined ? { random: opts.random } : {}),
    watch: { store, topics: opts.topics },
    run: async ({ trigger, watchTopics }) => {
      const p = { trigger, topics: watchTopics === undefined ? undefined : [...watchTopics].sort().join(',') };
      seen.push(p);
      if (opts.hold?.(p) === true) {
        await new Promise<void>((r) => (releaseHeld = r));
      }
      return undefined;
    },
  });
  loops.push(loop);
  const release = (): void => {
    const r = releaseHeld;
    releaseHeld = undefined;
    r?.();
  };
  return { loop, seen, emit, held: () => releaseHeld !== undefined, release };
}

describe('startPassLoop', () => {
  it('runs passes one at a time; triggers during a pass coalesce into one more pass with the last reason', async () => {
    const { log } = capture();
    let inPass = 0;
    let maxInPass = 0;
    const triggers: string[] = [];
    let release: (() => void) | undefined;
    const loop = startPassLoop({
      log,
      intervalMs: () => 60_000,
      run: async (ctx) => {
        triggers.push(ctx.trigger);
        inPass += 1;
        maxInPass = Math.max(maxInPass, inPass);
        if (ctx.pass === 1) {
          await new Promise<void>((r) => (release = r));
        }
        inPass -= 1;
        return undefined;
      },
    });
    loops.push(loop);
    await until('the first pass', () => release !== undefined);
    loop.trigger('a');
    loop.trigger('b');
    loop.trigger('c');
    release?.();
    await until('the second pass', () => triggers.length === 2);
    await sleep(50);
    expect(triggers).toEqual(['start', 'c']);
    expect(maxInPass).toBe(1);
  });

  it('logs one sentence per pass: a repeat goes to debug unless forced; an error every time', async () => {
    const { log, lines } = capture();
    const results: PassResult[] = [
      { sentence: 'same' },
      { sentence: 'same' },
      { sentence: 'same', force: true },
      { sentence: 'other', level: 'warn' },
      { sentence: 'other', level: 'warn' },
      { sentence: 'broken', level: 'error' },
      { sentence: 'broken', level: 'error' },
      { sentence: 'x', key: 'k' },
      { sentence: 'y', key: 'k' },
    ];
    let n = 0;
    const loop = startPassLoop({ log, intervalMs: () => 1, run: () => Promise.resolve(results[n++]) });
    loops.push(loop);
    await until('all passes', () => n >= results.length);
    await loop.stop();
    expect(lines.slice(0, results.length).map((l) => [l.level, l.msg, l.pass])).toEqual([
      [INFO, 'same', 1],
      [DEBUG, 'same', 2],
      [INFO, 'same', 3],
      [WARN, 'other', 4],
      [DEBUG, 'other', 5],
      [ERROR, 'broken', 6],
      [ERROR, 'broken', 7],
      [INFO, 'x', 8],
      [DEBUG, 'y', 9],
    ]);
  });

  it('a pass that throws is logged by one rule and the loop goes on', async () => {
    const { log, lines } = capture();
    const errors = [new StoreUnavailableError('etcd: deadline exceeded'), new StolonError('PG_COMMAND_FAILED', 'pg_ctl start failed'), new TypeError('x is undefined')];
    let n = 0;
    const loop = startPassLoop({
      log,
      intervalMs: () => 1,
      run: () => (n < errors.length ? Promise.reject(errors[n++]!) : ((n += 1), Promise.resolve({ sentence: 'fine' }))),
    });
    loops.push(loop);
    await until('recovered', () => n > errors.length);
    await loop.stop();
    expect(lines.slice(0, 4).map((l) => [l.level, l.msg])).toEqual([
      [WARN, 'pass failed, retrying at the next pass: etcd: deadline exceeded'],
      [ERROR, 'pass failed (PG_COMMAND_FAILED), retrying at the next pass: pg_ctl start failed'],
      [ERROR, `${BUG_SENTENCE}: x is undefined`],
      [INFO, 'fine'],
    ]);
    expect(lines[0]?.['err']).toBeDefined();
    expect(describePassFailure(new StoreUnavailableError('down')).level).toBe('warn');
  });

  it('the store watch triggers passes; while it cannot be had, the timer passes go on and it is asked again', async () => {
    const { log, lines } = capture();
    const backend = new MemoryBackend();
    const store = new MemoryStore(backend, { clusterName: 'c' });
    const writer = new MemoryStore(backend, { clusterName: 'c' });
    let watchCalls = 0;
    let failWatch = true;
    const flaky: Pick<Store, 'watch'> = {
      watch: (topics, listener) => {
        watchCalls += 1;
        return failWatch ? Promise.reject(new StoreUnavailableError('no watch today')) : store.watch(topics, listener);
      },
    };
    const triggers: string[] = [];
    const loop = startPassLoop({
      log,
      intervalMs: () => 50,
      watch: { store: flaky, topics: ['clusterdata'] },
      run: (ctx) => {
        triggers.push(ctx.trigger);
        return Promise.resolve(undefined);
      },
    });
    loops.push(loop);
    await until('a few timer passes', () => triggers.filter((t) => t === 'interval').length >= 2);
    expect(loop.watching()).toBe(false);
    expect(watchCalls).toBeGreaterThanOrEqual(2);
    // Warned once, then quiet.
    expect(lines.filter((l) => l.level === WARN && l.msg.startsWith('cannot watch the store (no watch today)'))).toHaveLength(1);
    failWatch = false;
    await until('the watch', () => loop.watching());
    await until('the pass after the watch started', () => triggers.includes('watch established'));
    await writer.putClusterData('{}', null);
    await until('a pass from the watch', () => triggers.includes('clusterdata changed'));
    await loop.stop();
    expect(loop.watching()).toBe(false);
    await writer.close();
    await store.close();
  });

  it('tells a pass the topics of the watch events that alone asked for it, and nothing when anything else did', async () => {
    const { loop, seen, emit, held, release } = recordingLoop({ intervalMs: 60_000, topics: ['clusterdata', 'keepers', 'proxies'], hold: (p) => p.trigger === 'hold' });
    await until('the pass after the watch started', () => seen.some((p) => p.trigger === 'watch established'));
    expect(seen.every((p) => p.topics === undefined)).toBe(true);
    emit('keepers');
    await until('a pass from the event', () => seen.at(-1)?.topics === 'keepers');
    expect(seen.at(-1)).toEqual({ trigger: 'clusterdata, keepers, proxies changed', topics: 'keepers' });
    // Events during a pass coalesce into the next one, with every topic.
    loop.trigger('hold');
    await until('the held pass', held);
    emit('proxies');
    emit('keepers');
    release();
    await until('the pass after the held one', () => seen.at(-1)?.topics === 'keepers,proxies');
    // A trigger of the daemon's own among the events: a full pass, told no topics.
    loop.trigger('hold');
    await until('the second held pass', held);
    emit('keepers');
    loop.trigger('fenced');
    release();
    await until('the pass after it', () => seen.at(-1)?.trigger === 'fenced');
    expect(seen.at(-1)?.topics).toBeUndefined();
  });

  it('watch events do not postpone the timer pass: it still comes every interval, as a full pass', async () => {
    const { seen, emit } = recordingLoop({ intervalMs: 150, random: () => 0, topics: ['keepers'] });
    await until('the pass after the watch started', () => seen.some((p) => p.trigger === 'watch established'));
    // An event every 30 ms for 700 ms: each used to re-arm the 150 ms timer, which then never fired.
    for (let i = 0; i < 24; i++) {
      emit('keepers');
      await sleep(30);
    }
    const timerPasses = seen.filter((p) => p.trigger === 'interval');
    expect(timerPasses.length).toBeGreaterThanOrEqual(3);
    expect(timerPasses.every((p) => p.topics === undefined)).toBe(true);
    expect(seen.filter((p) => p.topics === 'keepers').length).toBeGreaterThanOrEqual(10);
  });

  it('the timer that fires during a watch pass asks for a full pass after it', async () => {
    let watchPasses = 0;
    // Holds the first watch pass only.
    const { seen, emit, held, release } = recordingLoop({ intervalMs: 100, random: () => 0, topics: ['keepers'], hold: (p) => p.topics !== undefined && watchPasses++ === 0 });
    await until('the pass after the watch started', () => seen.some((p) => p.trigger === 'watch established'));
    const before = seen.length;
    emit('keepers');
    await until('the held watch pass', held);
    await sleep(200); // the timer fires while the watch pass holds
    emit('keepers');
    release();
    await until('the pass after it', () => seen.length >= before + 2);
    expect(seen[before]).toEqual({ trigger: 'keepers changed', topics: 'keepers' });
    expect(seen[before + 1]?.topics).toBeUndefined();
  });

  it('a watch that answers only after its timeout is closed, not kept', async () => {
    const { log } = capture();
    let closed = 0;
    let resolveWatch!: (w: { close(): Promise<void> }) => void;
    const slow: Pick<Store, 'watch'> = { watch: () => new Promise((r) => (resolveWatch = r)) };
    const loop = startPassLoop({ log, intervalMs: () => 60_000, watch: { store: slow, topics: ['clusterdata'], timeoutMs: () => 20 }, run: () => Promise.resolve(undefined) });
    loops.push(loop);
    await sleep(60);
    resolveWatch({ close: () => ((closed += 1), Promise.resolve()) });
    await until('the late watch closed', () => closed === 1);
    expect(loop.watching()).toBe(false);
  });

  it('stop waits for the pass in progress, runs no pass after it, and is idempotent', async () => {
    const { log } = capture();
    let passes = 0;
    let release!: () => void;
    const loop = startPassLoop({
      log,
      intervalMs: () => 1,
      run: async () => {
        passes += 1;
        await new Promise<void>((r) => (release = r));
        return undefined;
      },
    });
    await until('a pass', () => passes === 1);
    const s1 = loop.stop();
    const s2 = loop.stop();
    expect(s1).toBe(s2);
    loop.trigger('after stop');
    let stopped = false;
    void s1.then(() => (stopped = true));
    await sleep(20);
    expect(stopped).toBe(false);
    release();
    await s1;
    await sleep(20);
    expect(passes).toBe(1);
  });
});

describe('timerDelayMs', () => {
  it.each([
    [1000, 0, 1000],
    [1000, 0.5, 950],
    [1000, 0.999, 900],
    [5000, 0.25, 4875],
    [5, 0, 10],
    [0, 0.5, 10],
  ])('interval %i ms, random %f: %i ms', (interval, random, want) => {
    expect(timerDelayMs(interval, random)).toBe(want);
  });

  it('is never later than the interval and at most TIMER_JITTER early', () => {
    for (let i = 0; i < 100; i++) {
      const d = timerDelayMs(1000, Math.random());
      expect(d).toBeLessThanOrEqual(1000);
      expect(d).toBeGreaterThanOrEqual(1000 * (1 - TIMER_JITTER));
    }
  });
});

describe('stopOnce', () => {
  it('runs the stop sequence once and hands every caller the same promise', async () => {
    let runs = 0;
    const stop = stopOnce(async (reason) => {
      runs += 1;
      await sleep(5);
      expect(reason).toBe('first');
    });
    const a = stop('first');
    const b = stop('second');
    expect(a).toBe(b);
    await a;
    expect(runs).toBe(1);
  });
});
