/** Table tests of the sentinel's liveness and readiness (the status endpoint's checks), with a fake clock. */
import { describe, expect, it } from 'vitest';
import { sentinelChecks, sentinelLiveness, sentinelReadiness, storeFreshMs, type SentinelHealthSnapshot } from './health.js';

/** A running leader whose last pass read the store at 10 000 ms and settled at 10 020; now 10 500; sleepInterval 1 s. */
function snap(over: Partial<SentinelHealthSnapshot> = {}): SentinelHealthSnapshot {
  return {
    state: 'running',
    leader: true,
    loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 10_020, passes: 8 },
    lastStoreReadAtMs: 10_000,
    sleepMs: 1000,
    nowMs: 10_500,
    ...over,
  };
}

interface Case {
  readonly title: string;
  readonly snapshot: SentinelHealthSnapshot;
  readonly ok: boolean;
  readonly reason: RegExp;
}

const liveCases: Case[] = [
  { title: 'loop turning: alive', snapshot: snap(), ok: true, reason: /^sentinel loop alive: 8 passes, last one settled 480 ms ago$/ },
  {
    title: 'store unreachable for a minute, passes still settle: alive',
    snapshot: snap({ lastStoreReadAtMs: 10_000, nowMs: 70_000, loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 69_000, passes: 20 } }),
    ok: true,
    reason: /alive/,
  },
  { title: 'no pass for sleepInterval + 30 s: stalled', snapshot: snap({ nowMs: 41_021 }), ok: false, reason: /^sentinel loop stalled: no pass for 31001 ms \(limit 31000 ms\)$/ },
  {
    title: 'a pass stuck for more than 60 s: stalled',
    snapshot: snap({ loop: { createdAtMs: 0, passInProgressSinceMs: 10_000, lastSettledAtMs: 9_000, passes: 9 }, nowMs: 70_001 }),
    ok: false,
    reason: /^sentinel loop stalled: pass 9 running for 60001 ms \(limit 60000 ms\)$/,
  },
  { title: 'stopping: alive (no restart)', snapshot: snap({ state: 'stopping', nowMs: 1e9 }), ok: true, reason: /^sentinel stopping$/ },
];

const readyCases: Case[] = [
  { title: 'leader, store read 500 ms ago: ready', snapshot: snap(), ok: true, reason: /^leader; store read 500 ms ago$/ },
  { title: 'not the leader, store read: ready, and says so', snapshot: snap({ leader: false }), ok: true, reason: /^not the leader; store read 500 ms ago$/ },
  {
    title: 'store not read for longer than 3 × sleepInterval (at least 5 s): not ready',
    snapshot: snap({ nowMs: 15_001, loop: { createdAtMs: 0, passInProgressSinceMs: 15_000, lastSettledAtMs: 14_000, passes: 12 } }),
    ok: false,
    reason: /^store not read for 5001 ms \(limit 5000 ms; leader\)$/,
  },
  {
    title: 'store read exactly at the bound: ready',
    snapshot: snap({ nowMs: 15_000, loop: { createdAtMs: 0, passInProgressSinceMs: 15_000, lastSettledAtMs: 14_000, passes: 12 } }),
    ok: true,
    reason: /^leader; store read 5000 ms ago$/,
  },
  {
    title: 'longer sleepInterval widens the bound',
    snapshot: snap({ sleepMs: 4000, nowMs: 21_000, loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 20_000, passes: 12 } }),
    ok: true,
    reason: /store read 11000 ms ago/,
  },
  { title: 'store never read: not ready', snapshot: snap({ lastStoreReadAtMs: undefined, leader: false }), ok: false, reason: /^store not read yet \(not the leader\)$/ },
  { title: 'starting: not ready', snapshot: snap({ state: 'starting' }), ok: false, reason: /^sentinel starting$/ },
  { title: 'stopping: not ready', snapshot: snap({ state: 'stopping' }), ok: false, reason: /^sentinel stopping$/ },
  { title: 'loop stalled: not ready, because not alive', snapshot: snap({ nowMs: 41_021, lastStoreReadAtMs: 41_000 }), ok: false, reason: /^sentinel loop stalled/ },
];

describe('sentinelLiveness', () => {
  it.each(liveCases)('$title', ({ snapshot, ok, reason }) => {
    const r = sentinelLiveness(snapshot);
    expect(r.ok).toBe(ok);
    expect(r.reason).toMatch(reason);
  });
});

describe('sentinelReadiness', () => {
  it.each(readyCases)('$title', ({ snapshot, ok, reason }) => {
    const r = sentinelReadiness(snapshot);
    expect(r.ok).toBe(ok);
    expect(r.reason).toMatch(reason);
  });
});

describe('storeFreshMs and sentinelChecks', () => {
  it('is the sentinel info TTL: 3 × sleepInterval, at least 5 s', () => {
    expect(storeFreshMs(1000)).toBe(5000);
    expect(storeFreshMs(2500)).toBe(7500);
  });

  it('answers each probe from a fresh snapshot', () => {
    let s = snap();
    const checks = sentinelChecks(() => s);
    expect(checks.readyz().ok).toBe(true);
    s = snap({ lastStoreReadAtMs: undefined });
    expect(checks.readyz().ok).toBe(false);
    expect(checks.healthz().ok).toBe(true);
    expect(checks.more).toBeUndefined();
  });
});
