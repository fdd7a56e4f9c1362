/** When the switchover target's keeper watches for the end of streaming, and when the old primary's checkpoints (final-wal.ts). */
import { describe, expect, it } from 'vitest';
import type { ClusterData, FailoverEvent } from '@stolon-ts/cluster';
import { aCluster, T0 } from '@stolon-ts/cluster/testing';
import { awaitsFinalWal, switchoverStarting } from './final-wal.js';

/** k1 primary, k2 and k3 its standbys; a switchover to `target` (db-<target>) in progress when `ev` is given. */
function cluster(opts: { ev?: Partial<FailoverEvent>; shutdown?: boolean; target?: string } = {}): ClusterData {
  const cd = aCluster().initialized().withPrimary('k1').withStandby('k2').withStandby('k3').build();
  const target = opts.target ?? 'k2';
  if (opts.ev !== undefined) {
    cd.cluster.status.failover = {
      id: 'ev1',
      kind: 'switchover',
      cause: 'requested with stolonctl switchover',
      oldPrimary: { keeperUID: 'k1', dbUid: 'db-k1', xLogPos: 0 },
      newPrimary: { keeperUID: target, dbUid: `db-${target}`, xLogPos: 0 },
      phases: { declaredFailed: T0 },
      ...opts.ev,
    };
  }
  if (opts.shutdown === true) {
    cd.dbs['db-k1']!.spec.shutdownForSwitchover = true;
  }
  return cd;
}

describe('awaitsFinalWal', () => {
  const promoted = (() => {
    const cd = cluster({ ev: {}, shutdown: true });
    cd.cluster.status.master = 'db-k2';
    cd.dbs['db-k2']!.spec.role = 'master';
    return cd;
  })();
  const cases: { name: string; cd: ClusterData | undefined; keeper: string; db: string; want: boolean }[] = [
    { name: 'the target, primary told to shut down', cd: cluster({ ev: {}, shutdown: true }), keeper: 'k2', db: 'db-k2', want: true },
    { name: 'the target, proxies not fenced yet (no shutdown ordered)', cd: cluster({ ev: {} }), keeper: 'k2', db: 'db-k2', want: false },
    { name: 'another standby of the same primary', cd: cluster({ ev: {}, shutdown: true }), keeper: 'k3', db: 'db-k3', want: false },
    { name: 'the old primary itself', cd: cluster({ ev: {}, shutdown: true }), keeper: 'k1', db: 'db-k1', want: false },
    { name: 'the target keeper holding another DB (resynced since)', cd: cluster({ ev: {}, shutdown: true }), keeper: 'k2', db: 'db-other', want: false },
    { name: 'the target keeper holding no DB', cd: cluster({ ev: {}, shutdown: true }), keeper: 'k2', db: '', want: false },
    { name: 'a failover (kind failover) stopping its primary', cd: cluster({ ev: { kind: 'failover' }, shutdown: true }), keeper: 'k2', db: 'db-k2', want: false },
    { name: 'a switchover already ended', cd: cluster({ ev: { result: 'aborted' }, shutdown: true }), keeper: 'k2', db: 'db-k2', want: false },
    { name: 'the target once its promotion is ordered', cd: promoted, keeper: 'k2', db: 'db-k2', want: false },
    { name: 'no switchover in progress', cd: cluster({ shutdown: true }), keeper: 'k2', db: 'db-k2', want: false },
    { name: 'no clusterdata read yet', cd: undefined, keeper: 'k2', db: 'db-k2', want: false },
  ];
  it.each(cases)('$name: $want', ({ cd, keeper, db, want }) => {
    expect(awaitsFinalWal(cd, keeper, db)).toBe(want);
  });
});

describe('switchoverStarting', () => {
  const cases: { name: string; cd: ClusterData | undefined; db: string; want: boolean }[] = [
    { name: 'the old primary while the proxies are fenced', cd: cluster({ ev: {} }), db: 'db-k1', want: true },
    { name: 'the old primary once its shutdown is ordered', cd: cluster({ ev: {}, shutdown: true }), db: 'db-k1', want: false },
    { name: 'the target', cd: cluster({ ev: {} }), db: 'db-k2', want: false },
    { name: 'a keeper holding no DB', cd: cluster({ ev: {} }), db: '', want: false },
    { name: 'a failover', cd: cluster({ ev: { kind: 'failover' } }), db: 'db-k1', want: false },
    { name: 'a switchover already ended', cd: cluster({ ev: { result: 'completed' } }), db: 'db-k1', want: false },
    { name: 'a switchover of another primary', cd: cluster({ ev: { oldPrimary: { keeperUID: 'k9', dbUid: 'db-k9', xLogPos: 0 } } }), db: 'db-k1', want: false },
    { name: 'no switchover in progress', cd: cluster(), db: 'db-k1', want: false },
    { name: 'no clusterdata read yet', cd: undefined, db: 'db-k1', want: false },
  ];
  it.each(cases)('$name: $want', ({ cd, db, want }) => {
    expect(switchoverStarting(cd, db)).toBe(want);
  });
});
