/** The failover trace and maintenance mode, pass after pass through `decide`. */
import { describe, expect, it } from 'vitest';
import { aCluster, decideInput, dbOf, keeperInfo, proxyInfo, republished, seqUids, wallAt } from './testing.js';
import { decide, emptyMemory, type SentinelMemory } from './decide.js';
import { FAILOVER_HISTORY_LIMIT, FAILSAFE_HISTORY_LIMIT } from './trace.js';
import type { ClusterData, FailsafeEpisode, KeeperInfo, ProxyInfo } from './types.js';

const LSN = 50_000_000;

function routedPair(spec = {}): ClusterData {
  return aCluster({ spec: { initMode: 'new', ...spec } })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN })
    .withStandby('k2', { follows: 'k1', xLogPos: LSN })
    .routedTo('k1', ['p1'], 2)
    .build();
}

class Loop {
  memory: SentinelMemory = emptyMemory();
  now = 10_000;
  private readonly newUid = seqUids('n');
  constructor(public cd: ClusterData) {}
  pass(observe: (cd: ClusterData) => { keepers: KeeperInfo[]; proxies: ProxyInfo[] }, advanceMs = 500, stalled: readonly string[] = []) {
    this.now += advanceMs;
    const o = observe(this.cd);
    const out = decide(
      decideInput(this.cd, {
        keepers: republished(o.keepers, this.now, stalled),
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

describe('failover trace', () => {
  it('records declared, fenced, chosen, promoted and routed with timestamps, then moves the event to the history', () => {
    const loop = new Loop(routedPair());
    const both = (cd: ClusterData) => [keeperInfo('k1', cd, { xLogPos: LSN }), keeperInfo('k2', cd, { xLogPos: LSN })];
    loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] })); // k1 last seen here (t=10500)
    const lastSeenAt = loop.now;

    // k1 lost: declared, proxies fenced (generation 3), p1 still on 2.
    let out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 2)] }), 6_000);
    const declaredAt = loop.now;
    let ev = out.next.cluster.status.failover;
    expect(ev).toMatchObject({
      kind: 'failover',
      oldPrimary: { keeperUID: 'k1', dbUid: dbOf('k1'), xLogPos: LSN },
      phases: { primaryLastSeen: wallAt(lastSeenAt), declaredFailed: wallAt(declaredAt) },
    });
    expect(ev?.cause).toMatch(/keeper k1 lost/);
    expect(ev?.phases.proxiesFenced).toBeUndefined();

    // p1 acknowledges: fenced and k2 chosen in the same pass.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }), 40);
    ev = out.next.cluster.status.failover;
    expect(ev?.phases.proxiesFenced).toBe(wallAt(loop.now));
    expect(ev?.phases.candidateChosen).toBe(wallAt(loop.now));
    expect(ev?.newPrimary).toMatchObject({ keeperUID: 'k2', dbUid: dbOf('k2') });
    expect(ev?.choice).toMatch(/most advanced eligible standby/);

    // k2 has not applied the promotion yet.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN, generation: 1 })], proxies: [proxyInfo('p1', 3)] }), 300);
    expect(out.next.cluster.status.failover?.phases.promoted).toBeUndefined();

    // k2 promoted: routed in the same pass; the event ends completed and is in the history.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }), 200);
    expect(out.next.cluster.status.failover).toBeUndefined();
    const done = out.next.failoverHistory?.at(-1);
    expect(done?.result).toBe('completed');
    expect(done?.phases.promoted).toBe(wallAt(loop.now));
    expect(done?.phases.proxiesRouted).toBe(wallAt(loop.now));
    expect(out.reasons.join(' ')).toMatch(/routing proxies \[p1\] to primary k2/);
  });

  it("takes primary last seen from the primary keeper's last observed progress, not from the last pass its info was still there", () => {
    // The keeper was killed at T0: its progress marker freezes, but its lease keeps its info in the
    // store until the lease expires; the sentinel only notices then. The outage started at T0.
    const loop = new Loop(routedPair());
    const both = (cd: ClusterData) => [keeperInfo('k1', cd, { xLogPos: LSN }), keeperInfo('k2', cd, { xLogPos: LSN })];
    loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] }), 500, ['k1']); // k1's last marker, first seen at T0
    const t0 = loop.now;
    loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] }), 1_500, ['k1']); // lease alive, no progress
    loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] }), 1_500, ['k1']);
    const out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 2)] }), 1_500);
    const ev = out.next.cluster.status.failover;
    expect(ev?.phases.declaredFailed).toBe(wallAt(loop.now));
    expect(ev?.phases.primaryLastSeen).toBe(wallAt(t0));
  });

  it('takes primary last seen from the first report of its postgres failing when its keeper kept making progress', () => {
    const loop = new Loop(routedPair());
    const k2 = (cd: ClusterData) => keeperInfo('k2', cd, { xLogPos: LSN });
    loop.pass((cd) => ({ keepers: [keeperInfo('k1', cd, { xLogPos: LSN }), k2(cd)], proxies: [proxyInfo('p1', 2)] }));
    // k1's postgres is reported down from here on; its keeper keeps publishing.
    const down = (cd: ClusterData) => ({ keepers: [keeperInfo('k1', cd, { xLogPos: LSN, pgHealthy: false }), k2(cd)], proxies: [proxyInfo('p1', 2)] });
    loop.pass(down);
    const firstReport = loop.now;
    let out = loop.pass(down, 2_000);
    for (let i = 0; i < 10 && out.next.cluster.status.failover === undefined; i++) {
      out = loop.pass(down, 2_000);
    }
    const ev = out.next.cluster.status.failover;
    expect(ev?.cause).toMatch(/postgres of keeper k1/);
    expect(ev?.phases.primaryLastSeen).toBe(wallAt(firstReport));
  });

  it('ends as aborted when the old primary serves again before any standby could be promoted', () => {
    const loop = new Loop(routedPair());
    // Only the primary's postgres is reported down: no candidate (k2 unhealthy too).
    loop.pass((cd) => ({ keepers: [keeperInfo('k1', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 2)] }));
    let out = loop.pass(() => ({ keepers: [], proxies: [proxyInfo('p1', 2)] }), 7_000);
    expect(out.next.cluster.status.failover).toBeDefined();
    out = loop.pass(() => ({ keepers: [], proxies: [proxyInfo('p1', 3)] }), 100);
    expect(out.next.cluster.status.failover?.choice).toMatch(/no eligible standby/);
    // k1 is back and healthy: routed back to it, the event is closed as aborted.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k1', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }), 100);
    expect(out.next.cluster.status.failover).toBeUndefined();
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ result: 'aborted' });
  });

  it('keeps at most FAILOVER_HISTORY_LIMIT finished events', () => {
    const cd = routedPair();
    const old = Array.from({ length: FAILOVER_HISTORY_LIMIT }, (_, i) => ({
      id: `e${i}`,
      kind: 'failover' as const,
      cause: 'x',
      oldPrimary: { keeperUID: 'k0', dbUid: 'd0', xLogPos: 0 },
      phases: { declaredFailed: wallAt(i) },
      result: 'completed' as const,
    }));
    cd.failoverHistory = old;
    const loop = new Loop(cd);
    loop.pass((c) => ({ keepers: [keeperInfo('k2', c, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }), 7_000);
    loop.pass((c) => ({ keepers: [keeperInfo('k2', c, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }), 100);
    const out = loop.pass((c) => ({ keepers: [keeperInfo('k2', c, { xLogPos: LSN })], proxies: [proxyInfo('p1', 3)] }), 100);
    expect(out.next.failoverHistory).toHaveLength(FAILOVER_HISTORY_LIMIT);
    expect(out.next.failoverHistory?.[0]?.id).toBe('e1');
    expect(out.next.failoverHistory?.at(-1)?.result).toBe('completed');
  });
});

describe('maintenance mode (spec.paused)', () => {
  it('observes but does not fail over, and says so', () => {
    const cd = routedPair({ paused: true });
    const out = decide(decideInput(cd, { keepers: [keeperInfo('k2', cd, { xLogPos: LSN })], proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.proxy.spec.masterDbUid).toBe(dbOf('k1'));
    expect(out.next.cluster.status.master).toBe(dbOf('k1'));
    expect(out.next.keepers['k1']?.status.healthy).toBe(false);
    expect(out.reasons.join(' ')).toMatch(/paused .* primary k1 .* is UNHEALTHY and will not be failed over/);
  });

  it('does not assign a free keeper a standby while paused', () => {
    const cd = aCluster({ spec: { initMode: 'new', paused: true } }).initialized().withPrimary('k1', { xLogPos: LSN }).withKeeper('k3').routedTo('k1', ['p1'], 2).build();
    const out = decide(decideInput(cd, { keepers: [keeperInfo('k1', cd, { xLogPos: LSN }), keeperInfo('k3', cd)], proxies: [proxyInfo('p1', 2)] }));
    expect(Object.values(out.next.dbs).map((d) => d.spec.keeperUID)).toEqual(['k1']);
  });
});

describe('failsafe spells (failsafeHistory)', () => {
  const spell = (since: string, extra: Partial<FailsafeEpisode> = {}): FailsafeEpisode => ({
    keeperUID: 'k1',
    since,
    until: '2026-12-06T10:01:00.000Z',
    rounds: 60,
    confirmedRounds: 60,
    members: 1,
    fenced: false,
    ...extra,
  });
  const infos = (cd: ClusterData, ep?: FailsafeEpisode): KeeperInfo[] => [
    { ...keeperInfo('k1', cd, { xLogPos: LSN }), ...(ep !== undefined ? { failsafeEpisode: ep } : {}) },
    keeperInfo('k2', cd, { xLogPos: LSN }),
  ];

  it('records the spell a primary keeper publishes once, keeps it when the info no longer carries it, and says so', () => {
    const cd = routedPair();
    const ep = spell('2026-12-06T10:00:00.000Z');
    const first = decide(decideInput(cd, { keepers: infos(cd, ep), proxies: [proxyInfo('p1', 2)] }));
    expect(first.next.failsafeHistory).toEqual([ep]);
    expect(first.changed).toBe(true);
    expect(first.reasons.join(' ')).toMatch(/recorded a failsafe spell of keeper k1 \(store unreachable .*: 60\/60 rounds confirmed by all 1 members\)/);
    const again = decide(decideInput(first.next, { keepers: infos(first.next, ep), proxies: [proxyInfo('p1', 2)] }));
    expect(again.next.failsafeHistory).toEqual([ep]);
    expect(again.reasons.join(' ')).not.toMatch(/recorded a failsafe spell/);
    const gone = decide(decideInput(again.next, { keepers: infos(again.next), proxies: [proxyInfo('p1', 2)] }));
    expect(gone.next.failsafeHistory).toEqual([ep]);
  });

  it('keeps the last FAILSAFE_HISTORY_LIMIT spells and drops stored entries that are not spells (a record only)', () => {
    const cd = routedPair();
    const old = Array.from({ length: FAILSAFE_HISTORY_LIMIT }, (_, i) => spell(`2026-12-05T10:00:${String(i).padStart(2, '0')}.000Z`));
    cd.failsafeHistory = [...old, { keeperUID: 7 } as unknown as FailsafeEpisode];
    const ep = spell('2026-12-06T10:00:00.000Z', { fenced: true, confirmedRounds: 2, rounds: 3, lastFailure: 'k2: unreachable' });
    const out = decide(decideInput(cd, { keepers: infos(cd, ep), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.failsafeHistory).toHaveLength(FAILSAFE_HISTORY_LIMIT);
    expect(out.next.failsafeHistory?.[0]).toEqual(old[1]);
    expect(out.next.failsafeHistory?.at(-1)).toEqual(ep);
    expect(out.reasons.join(' ')).toMatch(/2\/3 rounds confirmed by all 1 members; it fenced itself/);
  });

  it('a malformed spell in a keeper info is not recorded', () => {
    const cd = routedPair();
    const out = decide(decideInput(cd, { keepers: infos(cd, { ...spell('x'), rounds: -1 }), proxies: [proxyInfo('p1', 2)] }));
    expect(out.next.failsafeHistory).toBeUndefined();
  });
});
