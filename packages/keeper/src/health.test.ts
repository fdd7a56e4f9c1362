/** Table tests of the keeper's liveness and readiness (the status endpoint's checks), with a fake clock. */
import { describe, expect, it } from 'vitest';
import type { ClusterData } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import {
  KeeperStatus,
  keeperChecks,
  keeperLiveness,
  keeperReadiness,
  livenessLimits,
  reportPasses,
  reportedHealthy,
  type KeeperStatusSnapshot,
  type PublishedView,
} from './health.js';

/** Keeper k1 holds the primary d1, k2 the standby d2; both registered with their boot ids. */
function cluster(mutate: (cd: ClusterData) => void = () => undefined): ClusterData {
  const reported = { generation: 3, listenAddress: '10.0.0.1', port: '5432', systemId: 'sys1', xLogPos: 100 };
  const cd = aCluster({ uid: 'c1' })
    .initialized()
    .withPrimary('k1', { uid: 'd1', ...reported })
    .withStandby('k2', { uid: 'd2', ...reported })
    .build();
  mutate(cd);
  return cd;
}

const runningPrimary = { initialized: true, running: true, role: 'master' as const, systemId: 'sys1' };
const runningStandby = { initialized: true, running: true, role: 'standby' as const, systemId: 'sys1' };

function view(over: Partial<PublishedView> = {}): PublishedView {
  return { cd: cluster(), local: { uid: 'd1', generation: 3, clusterUID: 'c1' }, obs: runningPrimary, task: undefined, bootUuid: 'boot-k1', ...over };
}

/** A snapshot whose last pass settled at 10 000 ms with `v` published (`null`: nothing published). */
function snap(over: Partial<KeeperStatusSnapshot> = {}, v: PublishedView | null = view(), error?: string): KeeperStatusSnapshot {
  return {
    state: 'running',
    createdAtMs: 0,
    passInProgressSinceMs: undefined,
    lastPass: { startedAtMs: 9_900, settledAtMs: 10_000, error, view: v ?? undefined },
    passes: 10,
    ...over,
  };
}

interface ReadyCase {
  readonly title: string;
  readonly keeper?: string;
  readonly snapshot: KeeperStatusSnapshot;
  /** Monotonic ms of the check. @default 10 500 (500 ms after the last pass settled) */
  readonly now?: number;
  readonly ok: boolean;
  readonly reason: RegExp;
}

const NOW = 10_500;

const readyCases: ReadyCase[] = [
  { title: '1. primary running at its DB generation, store answered: ready', snapshot: snap(), ok: true, reason: /^primary db d1 running at generation 3$/ },
  {
    title: '2. standby following its primary at its generation: ready',
    keeper: 'k2',
    snapshot: snap({}, view({ local: { uid: 'd2', generation: 3, clusterUID: 'c1' }, obs: runningStandby, bootUuid: 'boot-k2' })),
    ok: true,
    reason: /^standby db d2 running at generation 3$/,
  },
  { title: '3. keeper starting: not ready', snapshot: snap({ state: 'starting' }), ok: false, reason: /^keeper starting$/ },
  { title: '4. keeper stopping: not ready', snapshot: snap({ state: 'stopping' }), ok: false, reason: /^keeper stopping$/ },
  { title: '5. no pass completed yet: not ready', snapshot: snap({ lastPass: undefined }), ok: false, reason: /no keeper pass has completed yet/ },
  {
    title: '6. store unreachable in the last pass (nothing published): not ready, with the error',
    snapshot: snap({}, null, 'store unavailable: etcd timed out'),
    ok: false,
    reason: /^store not reachable in the last pass: store unavailable: etcd timed out$/,
  },
  {
    title: '7. last pass failed after publishing (postgres would not start): not ready, with the error',
    snapshot: snap({}, view(), 'postgres did not start within 60000 ms'),
    ok: false,
    reason: /^last pass failed: postgres did not start/,
  },
  { title: '8. no clusterdata yet: not ready', snapshot: snap({}, view({ cd: undefined })), ok: false, reason: /stolonctl init/ },
  { title: '9. keeper has no DB assigned: not ready', keeper: 'k3', snapshot: snap(), ok: false, reason: /no db assigned to this keeper/ },
  {
    title: '10. clone in progress: not ready, naming the task',
    keeper: 'k2',
    snapshot: snap({}, view({ local: { uid: '', generation: 0, clusterUID: '' }, obs: { initialized: false, running: false, role: undefined, systemId: '' }, task: 'resync of db d2 from db d1', bootUuid: 'boot-k2' })),
    ok: false,
    reason: /^resync of db d2 from db d1 in progress$/,
  },
  {
    title: '11. sentinel has not registered this keeper process yet: not ready, with the planner sentence',
    snapshot: snap({}, view({ cd: cluster((cd) => (cd.keepers.k1!.status.bootUUID = 'older-boot')) })),
    ok: false,
    reason: /^not converged: waiting for the sentinel to register this keeper process$/,
  },
  {
    title: '11b. primary fenced, its new boot id not recorded by the sentinel yet: not ready',
    snapshot: snap({}, view({ bootUuid: 'boot-after-fence', obs: { ...runningPrimary, running: false, role: undefined } })),
    ok: false,
    reason: /^not converged: waiting for the sentinel to register this keeper process$/,
  },
  {
    title: '12. DB spec says primary, postgres still a standby (promotion due): not ready',
    snapshot: snap({}, view({ obs: runningStandby })),
    ok: false,
    reason: /^not converged: promoting db d1 to primary$/,
  },
  {
    title: '13. DB spec says standby, postgres still a primary (old primary after failover): not ready',
    keeper: 'k2',
    snapshot: snap({}, view({ local: { uid: 'd2', generation: 3, clusterUID: 'c1' }, obs: runningPrimary, bootUuid: 'boot-k2' })),
    ok: false,
    reason: /^not converged: db d2 must be a standby but the local instance is a primary/,
  },
  {
    title: '14. postgres not running: not ready',
    snapshot: snap({}, view({ obs: { ...runningPrimary, running: false, role: undefined } })),
    ok: false,
    reason: /^postgres of db d1 is not running$/,
  },
  {
    title: '15. new DB generation not applied yet: not ready',
    snapshot: snap({}, view({ local: { uid: 'd1', generation: 2, clusterUID: 'c1' } })),
    ok: false,
    reason: /^db d1 generation 3 not applied yet \(applied: 2\)$/,
  },
  {
    title: '16. data dir holds another DB (new DB assigned, resync due): not ready',
    keeper: 'k2',
    snapshot: snap({}, view({ cd: cluster((cd) => {
      cd.dbs.d2!.spec.initMode = 'resync';
      cd.dbs.d1!.spec.followers = ['d2'];
    }), local: { uid: 'old', generation: 5, clusterUID: 'c1' }, obs: runningStandby, bootUuid: 'boot-k2' })),
    ok: false,
    reason: /^not converged: resyncing db d2 from db d1/,
  },
  {
    title: '17. primary shutting down for a switchover: not ready',
    snapshot: snap({}, view({ cd: cluster((cd) => (cd.dbs.d1!.spec.shutdownForSwitchover = true)) })),
    ok: false,
    reason: /^not converged: switchover: shutting down primary db d1 cleanly$/,
  },
  {
    title: '18. loop stalled (no pass for longer than sleepInterval + slack): not ready, because not alive',
    snapshot: snap(),
    now: 10_000 + 31_001,
    ok: false,
    reason: /^keeper loop stalled: no pass for 31001 ms \(limit 31000 ms\)$/,
  },
];

describe('keeperReadiness', () => {
  for (const c of readyCases) {
    it(c.title, () => {
      const r = keeperReadiness(c.snapshot, c.keeper ?? 'k1', c.now ?? NOW);
      expect(r.reason).toMatch(c.reason);
      expect(r.ok).toBe(c.ok);
    });
  }
});

describe('keeperLiveness', () => {
  const fast = cluster((cd) => (cd.cluster.spec = { ...cd.cluster.spec, sleepInterval: '1s', dbWaitReadyTimeout: '10s' }));
  it('1. limits come from the last spec seen: 2 × dbWaitReadyTimeout + 60 s per pass, sleepInterval + 30 s between passes', () => {
    expect(livenessLimits(fast)).toEqual({ maxPassMs: 80_000, maxIdleMs: 31_000 });
    expect(livenessLimits(undefined)).toEqual({ maxPassMs: 180_000, maxIdleMs: 31_000 });
  });
  it('2. a long pass within the limit (a promote waiting for postgres) is alive', () => {
    const s = snap({ passInProgressSinceMs: 0 }, view({ cd: fast }));
    expect(keeperLiveness(s, 79_000)).toEqual({ ok: true, reason: 'keeper loop alive: pass 10 running for 79000 ms' });
  });
  it('3. a pass stuck past the limit is not alive', () => {
    const s = snap({ passInProgressSinceMs: 0 }, view({ cd: fast }));
    expect(keeperLiveness(s, 80_001)).toEqual({ ok: false, reason: 'keeper loop stalled: pass 10 running for 80001 ms (limit 80000 ms)' });
  });
  it('4. the store down for minutes is still alive as long as passes keep settling', () => {
    const s = snap({}, null, 'store unavailable');
    expect(keeperLiveness(s, 10_000 + 30_000).ok).toBe(true);
    expect(keeperReadiness(s, 'k1', 10_000 + 30_000).ok).toBe(false);
  });
  it('5. no pass since creation past the idle limit is not alive', () => {
    expect(keeperLiveness(snap({ lastPass: undefined }), 31_001)).toEqual({ ok: false, reason: 'keeper loop stalled: no pass for 31001 ms (limit 31000 ms)' });
  });
  it('6. stopping and stopped count as alive (a restart would not help)', () => {
    expect(keeperLiveness(snap({ state: 'stopped', lastPass: undefined }), 1e9)).toEqual({ ok: true, reason: 'keeper stopped' });
  });
});

describe('KeeperStatus and reportPasses', () => {
  it('records passes, publishes and errors; the checks read them through keeperChecks', async () => {
    let now = 1000;
    const status = new KeeperStatus({ nowMs: () => now });
    const checks = keeperChecks(status, () => 'running', 'k1');
    expect(checks.readyz()).toEqual({ ok: false, reason: 'no keeper pass has completed yet' });

    const okPass = reportPasses(status, async () => {
      now += 50;
      status.published(view());
    });
    await okPass();
    expect(checks.readyz()).toEqual({ ok: true, reason: 'primary db d1 running at generation 3' });
    expect(checks.healthz()).toEqual({ ok: true, reason: 'keeper loop alive: 1 passes, last one settled 0 ms ago' });

    const failing = reportPasses(status, () => {
      now += 10;
      return Promise.reject(new Error('etcd unreachable'));
    });
    await expect(failing()).rejects.toThrow('etcd unreachable');
    expect(checks.readyz()).toEqual({ ok: false, reason: 'store not reachable in the last pass: etcd unreachable' });
    expect(checks.healthz().ok).toBe(true);

    // In the middle of a pass the checks still answer from the last settled one.
    let release!: () => void;
    const slow = reportPasses(status, () => new Promise<void>((r) => (release = r)));
    const p = slow();
    now += 5;
    expect(checks.healthz()).toEqual({ ok: true, reason: 'keeper loop alive: pass 3 running for 5 ms' });
    expect(checks.readyz().reason).toMatch(/^store not reachable/);
    release();
    await p;
    expect(checks.readyz()).toEqual({ ok: false, reason: 'store not reachable in the last pass: no keeper info published' });
  });

  it('without a sink the pass runs unwrapped', () => {
    const run = () => Promise.resolve();
    expect(reportPasses(undefined, run)).toBe(run);
  });
});

describe('reportedHealthy', () => {
  it.each([
    [{ running: true }, false, true],
    [{ running: true }, true, false],
    [{ running: false, error: 'postgres is not running' }, false, false],
    // Connected, then the probe query failed (shutting down): timeline/LSN unknown, not healthy.
    [{ running: true, error: 'probe query failed: the database system is shutting down' }, false, false],
  ])('%j busy=%s → %s', (obs, busy, want) => {
    expect(reportedHealthy(obs, busy)).toBe(want);
  });
});
