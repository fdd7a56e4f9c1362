/** Table tests of the shared loop liveness rule and the pass tracker, with a fake clock. */
import { describe, expect, it } from 'vitest';
import { PassTracker, loopLiveness, type LoopSnapshot } from './liveness.js';

const limits = { maxPassMs: 1000, maxIdleMs: 500 };

const cases: { title: string; snapshot: LoopSnapshot; now: number; ok: boolean; reason: string }[] = [
  {
    title: 'no pass yet, within maxIdleMs of creation: alive',
    snapshot: { createdAtMs: 100, passInProgressSinceMs: undefined, lastSettledAtMs: undefined, passes: 0 },
    now: 600,
    ok: true,
    reason: 'x loop alive: 0 passes, last one settled 500 ms ago',
  },
  {
    title: 'no pass since creation past maxIdleMs: stalled',
    snapshot: { createdAtMs: 100, passInProgressSinceMs: undefined, lastSettledAtMs: undefined, passes: 0 },
    now: 601,
    ok: false,
    reason: 'x loop stalled: no pass for 501 ms (limit 500 ms)',
  },
  {
    title: 'a pass running at maxPassMs: alive',
    snapshot: { createdAtMs: 0, passInProgressSinceMs: 2000, lastSettledAtMs: 1900, passes: 5 },
    now: 3000,
    ok: true,
    reason: 'x loop alive: pass 5 running for 1000 ms',
  },
  {
    title: 'a pass running past maxPassMs: stalled',
    snapshot: { createdAtMs: 0, passInProgressSinceMs: 2000, lastSettledAtMs: 1900, passes: 5 },
    now: 3001,
    ok: false,
    reason: 'x loop stalled: pass 5 running for 1001 ms (limit 1000 ms)',
  },
  {
    title: 'idle past maxIdleMs since the last settle: stalled',
    snapshot: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 1000, passes: 5 },
    now: 1501,
    ok: false,
    reason: 'x loop stalled: no pass for 501 ms (limit 500 ms)',
  },
];

describe('loopLiveness', () => {
  it.each(cases)('$title', ({ snapshot, now, ok, reason }) => {
    expect(loopLiveness('x', snapshot, limits, now)).toEqual({ ok, reason });
  });
});

describe('PassTracker', () => {
  it('records starts and settles of wrapped passes, also of failed ones', async () => {
    let now = 10;
    const t = new PassTracker(() => now);
    expect(t.snapshot()).toEqual({ createdAtMs: 10, passInProgressSinceMs: undefined, lastSettledAtMs: undefined, passes: 0 });
    let release!: () => void;
    const run = t.wrap((fail: boolean) => new Promise<string>((res, rej) => (release = () => (fail ? rej(new Error('no')) : res('done')))));
    now = 20;
    const p = run(false);
    expect(t.snapshot()).toMatchObject({ passInProgressSinceMs: 20, passes: 1 });
    now = 30;
    release();
    await expect(p).resolves.toBe('done');
    expect(t.snapshot()).toMatchObject({ passInProgressSinceMs: undefined, lastSettledAtMs: 30, passes: 1 });
    now = 40;
    const q = run(true);
    now = 50;
    release();
    await expect(q).rejects.toThrow('no');
    expect(t.snapshot()).toEqual({ createdAtMs: 10, passInProgressSinceMs: undefined, lastSettledAtMs: 50, passes: 2 });
    expect(t.nowMs()).toBe(50);
  });
});
