/** Rolling-restart rules: order, --pending-only/--keeper/--in-place, when a step is done, "never two down", and the keeper's once-only rule. */
import { describe, expect, it } from 'vitest';
import { aCluster, byUid, dbOf, keeperInfo } from './testing.js';
import { instancesDown, planRestart, restartPending, restartRequested, restartWorthy } from './restart.js';
import type { ClusterData, KeeperInfo } from './types.js';

/** Primary k2, standbys k3 and k1 (so the order is by keeper uid, not insertion). */
function cluster(): ClusterData {
  return aCluster({ spec: { initMode: 'new' } })
    .initialized()
    .withPrimary('k2', { xLogPos: 100 })
    .withStandby('k3', { follows: 'k2', xLogPos: 100 })
    .withStandby('k1', { follows: 'k2', xLogPos: 100 })
    .routedTo('k2', ['p1'], 2)
    .build();
}

function infos(cd: ClusterData, pending: Record<string, readonly string[]> = {}, extra: Record<string, Partial<NonNullable<KeeperInfo['postgresState']>>> = {}) {
  return byUid(
    ...['k1', 'k2', 'k3'].map((k) => {
      const i = keeperInfo(k, cd, { running: true, ...(pending[k] !== undefined ? { pendingRestart: pending[k] } : {}) });
      return { ...i, postgresState: { ...i.postgresState!, streaming: k !== 'k2', ...(extra[k] ?? {}) } };
    }),
  );
}

describe('planRestart', () => {
  it.each([
    { name: 'everything: standbys by keeper uid, then the primary by switchover', opts: {}, pending: {}, standbys: ['k1', 'k3'], primary: { keeperUID: 'k2', how: 'switchover' } },
    { name: '--in-place: the primary restarted in place, still last', opts: { inPlace: true }, pending: {}, standbys: ['k1', 'k3'], primary: { keeperUID: 'k2', how: 'in-place' } },
    { name: '--pending-only: only the instances reporting a pending parameter', opts: { pendingOnly: true }, pending: { k3: ['max_connections'], k2: ['max_connections'] }, standbys: ['k3'], primary: { keeperUID: 'k2', how: 'switchover' } },
    { name: '--pending-only: a recovery-only setting on the primary is no reason', opts: { pendingOnly: true }, pending: { k2: ['recovery_target_timeline'] }, standbys: [], primary: undefined },
    { name: '--keeper on a standby: that one only', opts: { keeper: 'k3' }, pending: {}, standbys: ['k3'], primary: undefined },
    { name: '--keeper on the primary: switched over', opts: { keeper: 'k2' }, pending: {}, standbys: [], primary: { keeperUID: 'k2', how: 'switchover' } },
    { name: '--keeper --pending-only with nothing pending: nothing', opts: { keeper: 'k1', pendingOnly: true }, pending: { k3: ['shared_buffers'] }, standbys: [], primary: undefined },
  ])('$name', ({ opts, pending, standbys, primary }) => {
    const cd = cluster();
    const plan = planRestart(cd, infos(cd, pending), opts);
    expect(plan.standbys).toEqual(standbys);
    expect(plan.primary).toEqual(primary);
  });

  it.each([
    { name: 'unknown --keeper', opts: { keeper: 'k9' }, err: /--keeper: keeper k9 is not in the cluster \(known: k1, k2, k3\)/ },
  ])('refuses: $name', ({ opts, err }) => {
    const cd = cluster();
    expect(() => planRestart(cd, infos(cd), opts)).toThrow(err);
  });

  it('refuses to switch over a primary without standby; --in-place restarts it', () => {
    const cd = aCluster({ spec: { initMode: 'new' } }).initialized().withPrimary('k1').routedTo('k1', ['p1'], 2).build();
    expect(() => planRestart(cd, {}, {})).toThrow(/has no standby to switch over to; give --in-place/);
    expect(planRestart(cd, {}, { inPlace: true }).primary).toEqual({ keeperUID: 'k1', how: 'in-place' });
  });

  it('refuses without a primary', () => {
    const cd = cluster();
    cd.cluster.status.master = '';
    expect(() => planRestart(cd, {}, {})).toThrow(/no primary/);
  });
});

describe('restartPending (is the restarted instance back?)', () => {
  const cd = cluster();
  const db = cd.dbs[dbOf('k1')]!;
  const base = infos(cd)['k1']!;
  const st = (o: Partial<NonNullable<KeeperInfo['postgresState']>>): KeeperInfo => ({ ...base, postgresState: { ...base.postgresState!, generation: 5, startedAt: 'T2', ...o } });
  it.each([
    { name: 'back: new generation applied, running, healthy, new start time, streaming', info: st({}), want: undefined },
    { name: 'generation not applied yet', info: st({ generation: 4 }), want: /not applied generation 5 yet \(at 4\)/ },
    { name: 'not running', info: st({ running: false }), want: /not running and healthy/ },
    { name: 'unhealthy', info: st({ healthy: false }), want: /not running and healthy/ },
    { name: 'same postmaster start time', info: st({ startedAt: 'T1' }), want: /start time did not change/ },
    { name: 'standby not streaming yet', info: st({ streaming: false }), want: /not streaming/ },
    { name: 'another DB in its data directory', info: st({ uid: 'other' }), want: /no state for the DB/ },
    { name: 'no info (keeper gone)', info: undefined, want: /no state for the DB/ },
  ])('$name', ({ info, want }) => {
    const got = restartPending(info, db, 5, 'T1', true);
    if (want === undefined) {
      expect(got).toBeUndefined();
    } else {
      expect(got).toMatch(want);
    }
  });
  it('a primary need not stream', () => {
    expect(restartPending(st({ streaming: false }), db, 5, 'T1', false)).toBeUndefined();
  });
});

describe('instancesDown (never two down)', () => {
  it.each([
    { name: 'all up', extra: {}, except: undefined, want: [] },
    { name: 'a standby not streaming counts as down', extra: { k3: { streaming: false } }, except: undefined, want: ['k3'] },
    { name: 'a stopped primary counts as down', extra: { k2: { running: false } }, except: undefined, want: ['k2'] },
    { name: 'the instance being restarted is not counted', extra: { k1: { running: false } }, except: 'k1', want: [] },
    { name: 'another one down while restarting k1', extra: { k1: { running: false }, k3: { healthy: false } }, except: 'k1', want: ['k3'] },
  ])('$name', ({ extra, except, want }) => {
    const cd = cluster();
    expect(instancesDown(cd, infos(cd, {}, extra), except)).toEqual(want);
  });
  it('a DB whose keeper publishes no info counts as down', () => {
    const cd = cluster();
    const i = infos(cd);
    delete i['k3'];
    expect(instancesDown(cd, i)).toEqual(['k3']);
  });
});

describe('restartRequested (the keeper acts once)', () => {
  const cd = cluster();
  const db = structuredClone(cd.dbs[dbOf('k1')]!);
  it.each([
    { name: 'no request', req: undefined, applied: 3, want: false },
    { name: 'request at a generation not applied yet', req: { requestedAt: 'T', generation: 4 }, applied: 3, want: true },
    { name: 'request applied (restart done)', req: { requestedAt: 'T', generation: 4 }, applied: 4, want: false },
    { name: 'later generations keep it done', req: { requestedAt: 'T', generation: 4 }, applied: 7, want: false },
  ])('$name', ({ req, applied, want }) => {
    const d = { spec: { ...db.spec, ...(req !== undefined ? { restartRequest: req } : {}) } };
    expect(restartRequested(d, applied)).toBe(want);
  });
});

describe('restartWorthy', () => {
  it('keeps recovery-only settings out on a primary only', () => {
    expect(restartWorthy(['max_connections', 'recovery_target_timeline'], true)).toEqual(['max_connections']);
    expect(restartWorthy(['max_connections', 'recovery_target_timeline'], false)).toEqual(['max_connections', 'recovery_target_timeline']);
  });
});
