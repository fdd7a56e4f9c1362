/** Planned switchover, pass after pass through `decide`. */
import { describe, expect, it } from 'vitest';
import { aCluster, decideInput, dbOf, keeperInfo, proxyInfo, republished, seqUids, wallAt } from './testing.js';
import { SCHEDULED_SWITCHOVER_MAX_LATE_MS, scheduleState } from './switchover.js';
import { decide, emptyMemory, type SentinelMemory } from './decide.js';
import type { ClusterData, KeeperInfo, ProxyInfo } from './types.js';

const LSN = 50_000_000;

class Loop {
  memory: SentinelMemory = emptyMemory();
  now = 10_000;
  private readonly newUid = seqUids('n');
  constructor(public cd: ClusterData) {}
  pass(observe: (cd: ClusterData) => { keepers: KeeperInfo[]; proxies: ProxyInfo[] }, advanceMs = 100) {
    this.now += advanceMs;
    const o = observe(this.cd);
    const out = decide(
      decideInput(this.cd, {
        keepers: republished(o.keepers, this.now),
        proxies: republished(o.proxies, this.now),
        memory: this.memory,
        now: this.now,
        newUid: this.newUid,
      }),
    );
    this.cd = out.next;
    this.memory = out.memory;
    return out;
  }
}

function threeKeepers(): ClusterData {
  const cd = aCluster({ spec: { initMode: 'new' } })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN })
    .withStandby('k2', { follows: 'k1', xLogPos: LSN })
    .withStandby('k3', { follows: 'k1', xLogPos: LSN - 100 })
    .routedTo('k1', ['p1'], 2)
    .build();
  return cd;
}

/** k1 → k2 switchover requested on {@link threeKeepers}, proxies fenced and k1 told to shut down. */
function switchoverToK2Fenced() {
  const loop = new Loop(threeKeepers());
  loop.cd.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k2' };
  /** The three keepers' infos; `k1` overrides k1's (e.g. stopped). */
  const all = (c: ClusterData, k1: Parameters<typeof keeperInfo>[2] = {}) => [
    keeperInfo('k1', c, { xLogPos: LSN, ...k1 }),
    keeperInfo('k2', c, { xLogPos: LSN }),
    keeperInfo('k3', c, { xLogPos: LSN - 100 }),
  ];
  loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
  loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 3)] }));
  return { loop, all, gen: loop.cd.dbs[dbOf('k1')]!.generation };
}

describe('planned switchover', () => {
  it('fences, shuts the primary down cleanly, waits for the target to have its last WAL, promotes, and keeps the old primary as a standby without a clone', () => {
    const cd = threeKeepers();
    cd.cluster.status.switchoverRequest = { requestedAt: '2025-01-01T00:00:00.000Z' };
    const loop = new Loop(cd);
    const all = (c: ClusterData, o: { k1?: Parameters<typeof keeperInfo>[2]; k2?: Parameters<typeof keeperInfo>[2] } = {}) => [
      keeperInfo('k1', c, { xLogPos: LSN, ...(o.k1 ?? {}) }),
      keeperInfo('k2', c, { xLogPos: LSN, ...(o.k2 ?? {}) }),
      keeperInfo('k3', c, { xLogPos: LSN - 100 }),
    ];

    // 1. Request accepted: k2 (most advanced) chosen, proxies fenced.
    let out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.cluster.status.switchoverRequest).toBeUndefined();
    expect(out.next.cluster.status.failover).toMatchObject({ kind: 'switchover', newPrimary: { keeperUID: 'k2' } });
    expect(out.next.proxy).toMatchObject({ generation: 3, spec: { masterDbUid: '' } });

    // 2. Proxy still behind: wait. Then acknowledged: the primary is told to shut down.
    out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    expect(out.reasons.join(' ')).toMatch(/waiting for proxies p1/);
    out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.dbs[dbOf('k1')]?.spec.shutdownForSwitchover).toBe(true);
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));

    // 3. k1 stopped at LSN+500 but k2 has received only LSN: wait, no failover of the "down" primary.
    const k1Gen = out.next.dbs[dbOf('k1')]!.generation;
    const stopped = { running: false, pgHealthy: false, xLogPos: LSN + 500, generation: k1Gen } as const;
    out = loop.pass((c) => ({ keepers: all(c, { k1: stopped }), proxies: [proxyInfo('p1', 3)] }), 10_000);
    expect(out.reasons.join(' ')).toMatch(/waiting for keeper k2 to receive the primary's final WAL/);
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));

    // 4. k2 has received past the shutdown checkpoint: promoted; k1's DB follows it, same uid.
    out = loop.pass((c) => ({ keepers: all(c, { k1: stopped, k2: { xLogPos: LSN + 600 } }), proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.cluster.status.master).toBe(dbOf('k2'));
    expect(out.next.dbs[dbOf('k2')]?.spec).toMatchObject({ role: 'master', followConfig: null });
    expect(out.next.dbs[dbOf('k1')]?.spec).toMatchObject({ role: 'standby', followConfig: { type: 'internal', dbuid: dbOf('k2') } });
    expect(out.next.dbs[dbOf('k1')]?.spec.shutdownForSwitchover).toBeUndefined();

    // 5. k2 applied the promotion: proxies routed to it, the event completed.
    out = loop.pass((c) => ({ keepers: all(c, { k1: stopped, k2: { xLogPos: LSN + 700 } }), proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.proxy.spec.masterDbUid).toBe(dbOf('k2'));
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'completed', oldPrimary: { xLogPos: LSN + 500 } });
    expect(Object.keys(out.next.dbs).sort()).toEqual([dbOf('k1'), dbOf('k2'), dbOf('k3')].sort());
    expect(out.next.dbs[dbOf('k3')]?.spec.followConfig?.dbuid).toBe(dbOf('k2'));
  });

  it('goes to the requested keeper, and refuses one that cannot be promoted', () => {
    const cd = threeKeepers();
    cd.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k3' };
    const infos = (c: ClusterData) => [keeperInfo('k1', c, { xLogPos: LSN }), keeperInfo('k2', c, { xLogPos: LSN }), keeperInfo('k3', c, { xLogPos: LSN - 100 })];
    let out = decide(decideInput(cd, { keepers: infos(cd), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.cluster.status.failover?.newPrimary?.keeperUID).toBe('k3');

    const lagging = threeKeepers();
    lagging.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k3' };
    out = decide(
      decideInput(lagging, {
        keepers: [keeperInfo('k1', lagging, { xLogPos: LSN + 10_000_000 }), keeperInfo('k2', lagging, { xLogPos: LSN }), keeperInfo('k3', lagging, { xLogPos: LSN - 100 })],
        proxies: [proxyInfo('p1', 2)],
      }),
    );
    expect(out.reasons.join(' ')).toMatch(/switchover refused: keeper k3 cannot be promoted now: lags/);
    expect(out.next.cluster.status.switchoverRequest).toBeUndefined();
    expect(out.next.proxy.spec.masterDbUid).toBe(dbOf('k1'));
  });

  it('aborts when the target dies before the promotion, and the primary comes back', () => {
    const cd = threeKeepers();
    cd.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k2' };
    const loop = new Loop(cd);
    loop.pass((c) => ({ keepers: [keeperInfo('k1', c, { xLogPos: LSN }), keeperInfo('k2', c, { xLogPos: LSN }), keeperInfo('k3', c, { xLogPos: LSN })], proxies: [proxyInfo('p1', 2)] }));
    const out = loop.pass((c) => ({ keepers: [keeperInfo('k1', c, { xLogPos: LSN }), keeperInfo('k3', c, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }));
    expect(out.reasons.join(' ')).toMatch(/switchover aborted: target db .* is gone or unhealthy/);
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'aborted' });
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));
    expect(out.next.dbs[dbOf('k1')]?.spec.shutdownForSwitchover).toBeUndefined();
  });

  it('becomes a failover when the old primary\'s keeper is lost before the promotion: recorded as aborted, then the most advanced standby is promoted', () => {
    const loop = new Loop(threeKeepers());
    loop.cd.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k3' };
    const all = (c: ClusterData) => [keeperInfo('k1', c, { xLogPos: LSN }), keeperInfo('k2', c, { xLogPos: LSN }), keeperInfo('k3', c, { xLogPos: LSN - 100 })];
    loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    let out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.dbs[dbOf('k1')]?.spec.shutdownForSwitchover).toBe(true);
    // k1's keeper and postgres die while it shuts down: its info lapses.
    const k2k3 = (c: ClusterData) => ({ keepers: all(c).slice(1), proxies: [proxyInfo('p1', 3)] });
    out = loop.pass(k2k3);
    expect(out.reasons.join(' | ')).toMatch(/switchover aborted: keeper k1 of the old primary was lost before the promotion; continuing as a failover/);
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'aborted' });
    expect(out.next.failoverHistory?.at(-1)?.choice).toMatch(/continuing as a failover$/);
    // The failover rules (not the switchover's requested target) choose: k2 is the most advanced.
    expect(out.next.cluster.status.master).toBe(dbOf('k2'));
    expect(out.next.cluster.status.failover).toMatchObject({ kind: 'failover', newPrimary: { keeperUID: 'k2' } });
    out = loop.pass((c) => ({ keepers: [keeperInfo('k2', c, { xLogPos: LSN + 10, timeline: 2 }), keeperInfo('k3', c, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.proxy.spec.masterDbUid).toBe(dbOf('k2'));
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'failover', result: 'completed' });
  });

  it('aborts past switchoverTimeout when the target never gets the final WAL: the old primary resumes and proxies go back to it', () => {
    const { loop, all, gen } = switchoverToK2Fenced();
    const stopped = { running: false, pgHealthy: false, xLogPos: LSN + 500, generation: gen } as const;
    // k2 was disconnected: it never receives past LSN. 59.8 s after the request: still waiting.
    let out = loop.pass((c) => ({ keepers: all(c, stopped), proxies: [proxyInfo('p1', 3)] }), 59_600);
    expect(out.reasons.join(' ')).toMatch(/waiting for keeper k2 to receive the primary's final WAL/);
    expect(out.memory.switchoverSince).toMatchObject({ id: out.next.cluster.status.failover?.id });
    // Past the default switchoverTimeout (60s): aborted, k1 told to run again, with a fresh failInterval.
    out = loop.pass((c) => ({ keepers: all(c, stopped), proxies: [proxyInfo('p1', 3)] }), 400);
    expect(out.reasons.join(' | ')).toMatch(/switchover aborted: switchoverTimeout 1m0s passed before the target could be promoted/);
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'aborted' });
    expect(out.next.cluster.status.failover).toBeUndefined();
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));
    expect(out.next.dbs[dbOf('k1')]?.spec.shutdownForSwitchover).toBeUndefined();
    expect(out.memory.switchoverSince).toBeUndefined();
    expect(out.reasons.join(' ')).not.toMatch(/promoting keeper/);
    // k1 restarted and applied the new generation: proxies routed to it.
    out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', c.proxy.generation)] }));
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));
    expect(out.next.proxy.spec.masterDbUid).toBe(dbOf('k1'));
  });

  it('the primary crashes during its clean shutdown (its LSN is its last checkpoint): aborted at once, it restarts and stays primary, nothing promoted', () => {
    const { loop, all, gen } = switchoverToK2Fenced();
    // Stopped, but by a crash: the last checkpoint is far behind what it acknowledged (LSN).
    const crashed = { running: false, pgHealthy: false, xLogPos: LSN - 10_000, generation: gen, cleanShutdown: false } as const;
    const out = loop.pass((c) => ({ keepers: all(c, crashed), proxies: [proxyInfo('p1', 3)] }));
    expect(out.reasons.join(' | ')).toMatch(/switchover aborted: primary k1 stopped without a clean shutdown \(crashed\)/);
    expect(out.reasons.join(' ')).not.toMatch(/promoting/);
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));
    expect(out.next.dbs[dbOf('k1')]?.spec.shutdownForSwitchover).toBeUndefined();
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'aborted' });
  });

  it('a new leader (empty memory) starts switchoverTimeout again from its first pass', () => {
    const loop = new Loop(threeKeepers());
    loop.cd.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k2' };
    const all = (c: ClusterData) => [keeperInfo('k1', c, { xLogPos: LSN }), keeperInfo('k2', c, { xLogPos: LSN }), keeperInfo('k3', c, { xLogPos: LSN })];
    loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    loop.memory = emptyMemory();
    const out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }), 120_000);
    expect(out.reasons.join(' ')).toMatch(/switchover: waiting for proxies p1/);
    expect(out.memory.switchoverSince?.since).toBe(loop.now);
  });

  it('the target dies after its promotion was ordered but before it converged: the old primary, now its standby with every WAL record, is promoted again', () => {
    const loop = new Loop(threeKeepers());
    loop.cd.cluster.status.switchoverRequest = { requestedAt: 'now', targetKeeperUID: 'k2' };
    const all = (c: ClusterData, k1: Parameters<typeof keeperInfo>[2] = {}, k2: Parameters<typeof keeperInfo>[2] = {}) => [
      keeperInfo('k1', c, { xLogPos: LSN, ...k1 }),
      keeperInfo('k2', c, { xLogPos: LSN, ...k2 }),
      keeperInfo('k3', c, { xLogPos: LSN - 100 }),
    ];
    loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 3)] }));
    const gen = loop.cd.dbs[dbOf('k1')]!.generation;
    const stopped = { running: false, pgHealthy: false, xLogPos: LSN + 500, generation: gen } as const;
    let out = loop.pass((c) => ({ keepers: all(c, stopped, { xLogPos: LSN + 600 }), proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.cluster.status.master).toBe(dbOf('k2'));
    // k2's node dies before it applied the promotion; k1 restarted as a standby at its shutdown checkpoint.
    out = loop.pass((c) => ({ keepers: [keeperInfo('k1', c, { xLogPos: LSN + 500 }), keeperInfo('k3', c, { xLogPos: LSN - 100 })], proxies: [proxyInfo('p1', 3)] }));
    expect(out.reasons.join(' | ')).toMatch(/primary k2 \(db db-k2\) failed before its promotion completed: promoting keeper k1/);
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));
    expect(out.next.dbs[dbOf('k2')]).toBeUndefined();
    expect(out.next.dbs[dbOf('k1')]?.spec).toMatchObject({ role: 'master', followConfig: null });
  });

  it("starts a switchover for a stopping primary's keeper (its info's switchoverRequestedAt), once per request, and only when it can start", () => {
    const AT = '2025-01-01T00:00:00.000Z';
    const loop = new Loop(threeKeepers());
    /** k1 asks (or not), k2 is healthy or not. */
    const infos = (c: ClusterData, o: { ask?: boolean; k2Healthy?: boolean } = {}) => {
      const k1 = keeperInfo('k1', c, { xLogPos: LSN });
      return [
        o.ask === false ? k1 : { ...k1, switchoverRequestedAt: AT },
        keeperInfo('k2', c, { xLogPos: LSN, pgHealthy: o.k2Healthy ?? true }),
        keeperInfo('k3', c, { xLogPos: LSN - 100 }),
      ];
    };
    // Nothing asked: nothing happens.
    let out = loop.pass((c) => ({ keepers: infos(c, { ask: false }), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.cluster.status.failover).toBeUndefined();
    // Asked: the switchover starts at once, its trace naming the keeper that asked.
    out = loop.pass((c) => ({ keepers: infos(c), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.cluster.status.switchoverRequest).toBeUndefined();
    expect(out.next.cluster.status.failover).toMatchObject({
      kind: 'switchover',
      cause: `requested by keeper k1, stopping at ${AT}`,
      newPrimary: { keeperUID: 'k2' },
    });
    // The target fails: aborted. The same request is not made again while k1 keeps asking.
    out = loop.pass((c) => ({ keepers: [infos(c)[0]!, infos(c)[2]!], proxies: [proxyInfo('p1', 3)] }));
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'aborted', cause: `requested by keeper k1, stopping at ${AT}` });
    for (let i = 0; i < 3; i++) {
      out = loop.pass((c) => ({ keepers: infos(c), proxies: [proxyInfo('p1', 3)] }));
      expect(out.next.cluster.status.failover).toBeUndefined();
      expect(out.next.cluster.status.switchoverRequest).toBeUndefined();
    }
  });

  it("leaves no request behind when a stopping primary's keeper asks while the switchover cannot start", () => {
    const cd = threeKeepers();
    // A failover is in progress: the request is not recorded (it would outlive the keeper that asked).
    cd.cluster.status.failover = {
      id: 'x',
      kind: 'failover',
      cause: 'test',
      oldPrimary: { keeperUID: 'k1', dbUid: dbOf('k1'), xLogPos: LSN },
      phases: { declaredFailed: 'now', primaryLastSeen: 'now' },
    };
    const loop = new Loop(cd);
    const out = loop.pass((c) => ({
      keepers: [{ ...keeperInfo('k1', c, { xLogPos: LSN }), switchoverRequestedAt: 'now' }, keeperInfo('k2', c, { xLogPos: LSN })],
      proxies: [proxyInfo('p1', 2)],
    }));
    expect(out.next.cluster.status.switchoverRequest).toBeUndefined();
    expect(out.next.cluster.status.failover?.kind).not.toBe('switchover');
  });
});

describe('scheduled switchover (switchoverRequest.scheduledAt)', () => {
  const all = (c: ClusterData) => [
    keeperInfo('k1', c, { xLogPos: LSN }),
    keeperInfo('k2', c, { xLogPos: LSN }),
    keeperInfo('k3', c, { xLogPos: LSN - 100 }),
  ];
  // Loop starts at now = 10_000 ms after T0 and each pass advances 100 ms.
  it.each([
    { name: 'before its time: waits, the request stays', atMs: 60_000, started: false, kept: true, reason: /switchover scheduled at .*: waiting/ },
    { name: 'at its time: starts', atMs: 10_100, started: true, kept: false, reason: /fencing proxies/ },
    { name: 'a little late (no leader until now): starts', atMs: 10_100 - 4 * 60_000, started: true, kept: false, reason: /fencing proxies/ },
    { name: 'more than 5m late: dropped and recorded as aborted', atMs: 10_100 - 5 * 60_000 - 1, started: false, kept: false, reason: /not started: more than 5m0s late/ },
  ])('$name', ({ atMs, started, kept, reason }) => {
    const loop = new Loop(threeKeepers());
    loop.cd.cluster.status.switchoverRequest = { requestedAt: wallAt(0), scheduledAt: wallAt(atMs) };
    const out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    expect(out.reasons.join('\n')).toMatch(reason);
    expect(out.next.cluster.status.failover?.kind === 'switchover').toBe(started);
    expect(out.next.cluster.status.switchoverRequest !== undefined).toBe(kept);
    if (!started && !kept) {
      expect(out.next.failoverHistory?.at(-1)).toMatchObject({ kind: 'switchover', result: 'aborted' });
    }
  });

  it('waits pass after pass, then starts once the sentinel clock reaches it', () => {
    const loop = new Loop(threeKeepers());
    loop.cd.cluster.status.switchoverRequest = { requestedAt: wallAt(0), scheduledAt: wallAt(10_350), targetKeeperUID: 'k3' };
    for (let i = 0; i < 3; i++) {
      const out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
      expect(out.next.cluster.status.failover).toBeUndefined();
      expect(out.next.proxy.generation).toBe(2);
    }
    const out = loop.pass((c) => ({ keepers: all(c), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.cluster.status.failover).toMatchObject({
      kind: 'switchover',
      newPrimary: { keeperUID: 'k3' },
      cause: `requested with stolonctl switchover at ${wallAt(0)}, scheduled for ${wallAt(10_350)}`,
    });
  });

  it('a stopping primary keeper replaces a scheduled switchover that is not due', () => {
    const loop = new Loop(threeKeepers());
    loop.cd.cluster.status.switchoverRequest = { requestedAt: wallAt(0), scheduledAt: wallAt(3_600_000) };
    const out = loop.pass((c) => ({
      keepers: [{ ...keeperInfo('k1', c, { xLogPos: LSN }), switchoverRequestedAt: wallAt(9_000) }, ...all(c).slice(1)],
      proxies: [proxyInfo('p1', 2)],
    }));
    expect(out.reasons.join('\n')).toMatch(/replaced by the stopping primary keeper's request/);
    expect(out.next.cluster.status.failover).toMatchObject({ kind: 'switchover', cause: expect.stringMatching(/keeper k1, stopping/) });
  });
});

describe('scheduleState', () => {
  it.each([
    { scheduledAt: undefined, now: 0, want: 'start' },
    { scheduledAt: '2025-01-01T00:01:00.000Z', now: Date.parse('2025-01-01T00:00:59.999Z'), want: 'wait' },
    { scheduledAt: '2025-01-01T00:01:00.000Z', now: Date.parse('2025-01-01T00:01:00.000Z'), want: 'start' },
    { scheduledAt: '2025-01-01T00:01:00.000Z', now: Date.parse('2025-01-01T00:06:00.000Z'), want: 'start' },
    { scheduledAt: '2025-01-01T00:01:00.000Z', now: Date.parse('2025-01-01T00:06:00.001Z'), want: 'expired' },
    { scheduledAt: 'not a time', now: 0, want: 'expired' },
  ] as const)('$scheduledAt at $now → $want', ({ scheduledAt, now, want }) => {
    expect(scheduleState(scheduledAt === undefined ? {} : { scheduledAt }, now)).toBe(want);
  });
  it('the bound is 5 minutes', () => {
    expect(SCHEDULED_SWITCHOVER_MAX_LATE_MS).toBe(300_000);
  });
});
