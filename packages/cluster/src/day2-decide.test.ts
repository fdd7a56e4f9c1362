/**
 * Unit tier: the sentinel's side of the day-2 commands — consuming a `stolonctl reinit` request,
 * and completing recorded failovers with the new timeline and the discarded WAL (`stolonctl history`).
 */
import { describe, expect, it } from 'vitest';
import { decide } from './decide.js';
import { recordEventOutcomes } from './trace.js';
import { aCluster, dbOf, decideInput, keeperInfo, proxyInfo } from './testing.js';
import type { ClusterData, FailoverEvent } from './types.js';

const LSN = 0x3000000;

function pair(): ClusterData {
  return aCluster().initialized().withPrimary('k1', { xLogPos: LSN }).withStandby('k2', { xLogPos: LSN }).routedTo('k1', ['p1'], 2).build();
}

function pass(cd: ClusterData): ClusterData {
  return decide(decideInput(cd, { keepers: [keeperInfo('k1', cd), keeperInfo('k2', cd)], proxies: [proxyInfo('p1', 2)], newUid: () => 'fresh' })).next;
}

describe('reinit request', () => {
  it('replaces the standby DB by a new resync DB marked for a full clone, and is consumed', () => {
    const cd = pair();
    cd.cluster.status.reinitRequest = { keeperUID: 'k2', dbUid: dbOf('k2'), requestedAt: '2026-01-01T00:00:00.000Z' };
    const next = pass(cd);
    expect(next.cluster.status.reinitRequest).toBeUndefined();
    expect(next.dbs[dbOf('k2')]).toBeUndefined();
    expect(next.dbs['fresh']?.spec).toMatchObject({ keeperUID: 'k2', initMode: 'resync', role: 'standby', reinitRequestedAt: '2026-01-01T00:00:00.000Z', followConfig: { type: 'internal', dbuid: dbOf('k1') } });
    expect(next.dbs[dbOf('k1')]?.spec.followers).toEqual(['fresh']);
  });

  it('is dropped for the primary and for a DB already replaced', () => {
    for (const req of [
      { keeperUID: 'k1', dbUid: dbOf('k1'), requestedAt: 't' },
      { keeperUID: 'k2', dbUid: 'gone', requestedAt: 't' },
    ]) {
      const cd = pair();
      cd.cluster.status.reinitRequest = req;
      const next = pass(cd);
      expect(next.cluster.status.reinitRequest).toBeUndefined();
      expect(Object.keys(next.dbs).sort()).toEqual([dbOf('k1'), dbOf('k2')]);
    }
  });
});

describe('recordEventOutcomes', () => {
  const event = (over: Partial<FailoverEvent> = {}): FailoverEvent => ({
    id: 'e1',
    kind: 'failover',
    cause: 'c',
    oldPrimary: { keeperUID: 'k0', dbUid: 'db-k0', xLogPos: LSN + 0x200, timelineID: 1 },
    newPrimary: { keeperUID: 'k1', dbUid: dbOf('k1'), xLogPos: LSN + 0x100 },
    phases: { declaredFailed: '2026-01-01T00:00:01.000Z', promoted: '2026-01-01T00:00:02.000Z' },
    result: 'completed',
    ...over,
  });

  it('records the new timeline and switch point, then the discard the old primary reports', () => {
    const cd = aCluster().initialized().withPrimary('k1', { xLogPos: LSN, timeline: 2 }).withStandby('k0').routedTo('k1', ['p1'], 2).build();
    cd.dbs[dbOf('k1')]!.status.timelinesHistory = [{ timelineID: 1, switchPoint: LSN + 0x100, reason: '' }];
    cd.failoverHistory = [event()];
    expect(recordEventOutcomes(cd)).toHaveLength(1);
    expect(cd.failoverHistory[0]!.newTimeline).toEqual({ timelineID: 2, switchPoint: LSN + 0x100 });
    expect(cd.failoverHistory[0]!.discardedWal).toBeUndefined();
    // A discard from before the promotion is not this event's.
    const early = { fromLsn: 1, toLsn: 2, timelineID: 1, method: 'pg_rewind' as const, at: '2026-01-01T00:00:00.000Z' };
    cd.dbs[dbOf('k0')]!.status.discardedWal = early;
    expect(recordEventOutcomes(cd)).toEqual([]);
    const d = { fromLsn: LSN + 0x100, toLsn: LSN + 0x200, timelineID: 1, method: 'pg_rewind' as const, at: '2026-01-01T00:00:05.000Z' };
    cd.dbs[dbOf('k0')]!.status.discardedWal = d;
    expect(recordEventOutcomes(cd)).toHaveLength(1);
    expect(cd.failoverHistory[0]!.discardedWal).toEqual(d);
    // Complete events are left alone.
    expect(recordEventOutcomes(cd)).toEqual([]);
  });

  it('records nothing while the new primary still reports the old timeline', () => {
    const cd = aCluster().initialized().withPrimary('k1', { xLogPos: LSN, timeline: 1 }).routedTo('k1', ['p1'], 2).build();
    cd.failoverHistory = [event()];
    expect(recordEventOutcomes(cd)).toEqual([]);
    expect(cd.failoverHistory[0]!.newTimeline).toBeUndefined();
  });
});
