/** Unit tier: the keeper's side of `stolonctl reload` and `stolonctl reinit` in the planner. */
import { describe, expect, it } from 'vitest';
import { aCluster, dbOf } from '@stolon-ts/cluster/testing';
import { planKeeperAction, reloadDue } from './plan.js';

describe('reloadDue', () => {
  const cd = aCluster().initialized().withPrimary('k1').withStandby('k2').build();

  it('is the request generation once per generation, for the keepers it names', () => {
    expect(reloadDue(cd, 'k1', 0)).toBeUndefined();
    cd.cluster.status.reloadRequest = { generation: 2, requestedAt: 't' };
    expect(reloadDue(cd, 'k1', 0)).toBe(2);
    expect(reloadDue(cd, 'k1', 1)).toBe(2);
    expect(reloadDue(cd, 'k1', 2)).toBeUndefined();
    cd.cluster.status.reloadRequest = { generation: 3, requestedAt: 't', keeperUIDs: ['k2'] };
    expect(reloadDue(cd, 'k1', 2)).toBeUndefined();
    expect(reloadDue(cd, 'k2', 2)).toBe(3);
  });
});

describe('reinit resync', () => {
  it('never tries pg_rewind for a DB made by stolonctl reinit', () => {
    const cd = aCluster({ spec: { initMode: 'new', usePgrewind: true } }).initialized().withPrimary('k1').withStandby('k2', { uid: 'fresh', initMode: 'resync' }).build();
    cd.dbs[dbOf('k1')]!.spec.followers = ['fresh'];
    const sys = cd.dbs[dbOf('k1')]!.status.systemdID;
    const obs = { initialized: true, running: true, role: 'standby' as const, systemId: sys };
    const local = { uid: 'old', generation: 3, clusterUID: cd.cluster.uid };
    const boot = cd.keepers['k2']!.status.bootUUID;
    expect(planKeeperAction(cd, 'k2', boot, local, obs)).toMatchObject({ kind: 'resync', tryRewind: true });
    cd.dbs['fresh']!.spec.reinitRequestedAt = 't';
    expect(planKeeperAction(cd, 'k2', boot, local, obs)).toMatchObject({ kind: 'resync', tryRewind: false });
  });
});
