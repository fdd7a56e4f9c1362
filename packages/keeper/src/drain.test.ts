/** The keeper's drain on stop (drain.ts): when it asks, how long it waits, and why it gives up. */
import { describe, expect, it } from 'vitest';
import { serializeClusterData, type ClusterData } from '@stolon-ts/cluster';
import { aCluster, dbOf } from '@stolon-ts/cluster/testing';
import { silentLogger } from '@stolon-ts/common';
import type { Store } from '@stolon-ts/store';
import { drainBlocker, drainPrimary } from './drain.js';
import type { KeeperRuntime } from './runtime.js';

const pair = (o: { standbyHealthy?: boolean; keeperHealthy?: boolean; canBeMaster?: boolean } = {}): ClusterData =>
  aCluster({ spec: { initMode: 'new' } })
    .initialized()
    .withPrimary('k1')
    .withStandby('k2', {
      follows: 'k1',
      healthy: o.standbyHealthy ?? true,
      ...(o.keeperHealthy !== undefined ? { keeperHealthy: o.keeperHealthy } : {}),
    })
    .build();

/** What clusterdata looks like once k2 was promoted and k1 follows it. */
const swapped = (): ClusterData =>
  aCluster({ spec: { initMode: 'new' } })
    .initialized()
    .withPrimary('k2')
    .withStandby('k1', { follows: 'k2' })
    .build();

/** A runtime holding only what drainPrimary uses: k1, the primary, reading clusterdata from `read`. */
function runtime(read: () => Promise<ClusterData | null>): KeeperRuntime & { triggers: string[] } {
  const triggers: string[] = [];
  const store = {
    getClusterData: async () => {
      const cd = await read();
      return cd === null ? null : { text: serializeClusterData(cd), revision: '1' };
    },
  } as unknown as Store;
  return {
    isPrimary: true,
    log: silentLogger(),
    store,
    local: { uid: dbOf('k1') },
    config: { uid: 'k1' },
    switchoverRequestedAt: undefined,
    trigger: (r: string) => triggers.push(r),
    triggers,
  } as unknown as KeeperRuntime & { triggers: string[] };
}

describe('drainBlocker', () => {
  it('lets a primary with a healthy standby that may become primary ask, and says why not otherwise', () => {
    const cd = pair();
    expect(drainBlocker(cd, cd.dbs[dbOf('k1')])).toBeUndefined();
    for (const bad of [pair({ standbyHealthy: false }), pair({ keeperHealthy: false })]) {
      expect(drainBlocker(bad, bad.dbs[dbOf('k1')])).toMatch(/no healthy standby/);
    }
    const noMaster = pair();
    noMaster.keepers['k2']!.status.canBeMaster = false;
    expect(drainBlocker(noMaster, noMaster.dbs[dbOf('k1')])).toMatch(/no healthy standby/);
    const paused = pair();
    paused.cluster.spec.paused = true;
    expect(drainBlocker(paused, paused.dbs[dbOf('k1')])).toMatch(/paused/);
    expect(drainBlocker(undefined, undefined)).toMatch(/no clusterdata/);
  });
});

describe('drainPrimary', () => {
  it('does nothing for a standby, nor with the drain disabled (0)', async () => {
    const rt = runtime(async () => pair());
    expect(await drainPrimary(rt, 0)).toBe('disabled');
    rt.isPrimary = false;
    expect(await drainPrimary(rt, 5000)).toBe('not-primary');
    expect(rt.switchoverRequestedAt).toBeUndefined();
  });

  it('stops at once, without asking, when no standby can take over or the store fails', async () => {
    const blocked = runtime(async () => pair({ standbyHealthy: false }));
    expect(await drainPrimary(blocked, 5000)).toBe('blocked');
    expect(blocked.switchoverRequestedAt).toBeUndefined();
    const failing = runtime(() => Promise.reject(new Error('connection refused')));
    const t0 = performance.now();
    expect(await drainPrimary(failing, 5000)).toBe('store-unreachable');
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('never waits past the bound: a store that does not answer, a sentinel that does not act', async () => {
    const hanging = runtime(() => new Promise<never>(() => undefined));
    let t0 = performance.now();
    expect(await drainPrimary(hanging, 300)).toBe('store-unreachable');
    expect(performance.now() - t0).toBeLessThan(800);

    const idle = runtime(async () => pair());
    t0 = performance.now();
    expect(await drainPrimary(idle, 600)).toBe('timed-out');
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(590);
    expect(took).toBeLessThan(1200);
    // It asked: its info carries the request, and a pass was asked for to publish it.
    expect(idle.switchoverRequestedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(idle.triggers).toEqual(['switchover requested on stop']);
  });

  it('ends once clusterdata names another primary after its switchover, or when the sentinel aborted it', async () => {
    let reads = 0;
    const switched = runtime(async () => {
      reads += 1;
      const cd = reads >= 3 ? swapped() : pair();
      if (reads >= 3) {
        cd.failoverHistory = [
          {
            id: 'x',
            kind: 'switchover',
            cause: `requested by keeper k1, stopping at ${switched.switchoverRequestedAt ?? '?'}`,
            oldPrimary: { keeperUID: 'k1', dbUid: dbOf('k1'), xLogPos: 1 },
            newPrimary: { keeperUID: 'k2', dbUid: dbOf('k2'), xLogPos: 2 },
            result: 'completed',
            phases: { declaredFailed: 'now', primaryLastSeen: 'now' },
          },
        ];
      }
      return cd;
    });
    expect(await drainPrimary(switched, 10_000)).toBe('switched-over');

    // Another primary without this keeper's switchover: a failover took it.
    reads = 0;
    const failedOver = runtime(async () => {
      reads += 1;
      return reads >= 2 ? swapped() : pair();
    });
    expect(await drainPrimary(failedOver, 10_000)).toBe('stopped-by-failover');

    reads = 0;
    const aborted = runtime(async () => {
      reads += 1;
      const cd = pair();
      if (reads >= 2) {
        cd.failoverHistory = [
          {
            id: 'x',
            kind: 'switchover',
            cause: `requested by keeper k1, stopping at ${aborted.switchoverRequestedAt ?? '?'}`,
            oldPrimary: { keeperUID: 'k1', dbUid: dbOf('k1'), xLogPos: 1 },
            result: 'aborted',
            choice: 'aborted: target db is gone or unhealthy',
            phases: { declaredFailed: 'now', primaryLastSeen: 'now' },
          },
        ];
      }
      return cd;
    });
    const t0 = performance.now();
    expect(await drainPrimary(aborted, 10_000)).toBe('aborted');
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
