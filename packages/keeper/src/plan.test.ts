/** Table tests of the keeper's pure planner. */
import { describe, expect, it } from 'vitest';
import { newClusterData, restartWorthy, validateSpec, type ClusterData, type DB } from '@stolon-ts/cluster';
import { T0, aDb } from '@stolon-ts/cluster/testing';
import { internalOnlyHba, planKeeperAction, type InternalOnlyInputs, type LocalDbState, type LocalObservation } from './plan.js';

function db(uid: string, keeperUID: string, role: 'master' | 'standby', extra: Partial<DB['spec']> = {}, port = '5432'): DB {
  return aDb(keeperUID, role, { uid, generation: 2, port, systemId: '1', xLogPos: 100, spec: extra });
}

function cluster(dbs: DB[], boots: Record<string, string> = { k1: 'b1', k2: 'b2' }): ClusterData {
  const cd = newClusterData(validateSpec({ initMode: 'new' }), 'c1', T0);
  cd.cluster.status.phase = 'normal';
  for (const [uid, bootUUID] of Object.entries(boots)) {
    cd.keepers[uid] = { uid, generation: 1, changeTime: T0, spec: {}, status: { healthy: true, lastHealthyTime: T0, bootUUID } };
  }
  for (const d of dbs) {
    cd.dbs[d.uid] = structuredClone(d);
  }
  cd.cluster.status.master = dbs.find((d) => d.spec.role === 'master')?.uid ?? '';
  return cd;
}

const stopped: LocalObservation = { initialized: true, running: false, role: undefined };
const runningPrimary: LocalObservation = { initialized: true, running: true, role: 'master' };
const runningStandby: LocalObservation = { initialized: true, running: true, role: 'standby' };
const empty: LocalObservation = { initialized: false, running: false, role: undefined };

interface Case {
  title: string;
  cd: ClusterData;
  keeper: string;
  boot: string;
  local: LocalDbState;
  obs: LocalObservation;
  kind: string;
  reason: RegExp;
  extra?: (a: ReturnType<typeof planKeeperAction>) => void;
}

const primary = db('d1', 'k1', 'master', { followers: ['d2', 'd3'] }, '5433');
const standby = db('d2', 'k2', 'standby', { followConfig: { type: 'internal', dbuid: 'd1' } });

const cases: Case[] = [
  { title: '1. boot id not yet recorded by the sentinel: wait', cd: cluster([primary]), keeper: 'k1', boot: 'other', local: { uid: 'd1', generation: 2 }, obs: runningPrimary, kind: 'wait', reason: /register this keeper/ },
  { title: '2. no db assigned and postgres running: stop it (a former primary must not take writes)', cd: cluster([standby]), keeper: 'k1', boot: 'b1', local: { uid: 'old', generation: 3 }, obs: runningPrimary, kind: 'stop-postgres', reason: /no db assigned/ },
  { title: '3. no db assigned and postgres stopped: wait', cd: cluster([]), keeper: 'k1', boot: 'b1', local: { uid: '', generation: 0 }, obs: empty, kind: 'wait', reason: /no db assigned/ },
  { title: '4. new db with initMode new: initdb', cd: cluster([db('d1', 'k1', 'master', { initMode: 'new' })]), keeper: 'k1', boot: 'b1', local: { uid: '', generation: 0 }, obs: empty, kind: 'init-new', reason: /initdb/ },
  {
    title: '5. new db with initMode resync: basebackup from the followed primary address',
    cd: cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', followConfig: { type: 'internal', dbuid: 'd1' } })]),
    keeper: 'k2', boot: 'b2', local: { uid: 'old', generation: 1 }, obs: runningPrimary, kind: 'resync', reason: /pg_basebackup/,
    extra: (a) => {
      expect(a.kind === 'resync' && a.from).toEqual({ dbUid: 'd1', host: '127.0.0.1', port: 5433, systemId: '1' });
      // The primary has applied the generation that lists d3: its slot exists.
      expect(a.kind === 'resync' && a.createSlot).toBe(false);
    },
  },
  {
    title: '6. resync while the primary has not reported its address: wait',
    cd: (() => { const c = cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', followConfig: { type: 'internal', dbuid: 'd1' } })]); c.dbs['d1']!.status.listenAddress = ''; return c; })(),
    keeper: 'k2', boot: 'b2', local: { uid: '', generation: 0 }, obs: empty, kind: 'wait', reason: /not reported its address/,
  },
  { title: '7. primary db, instance stopped: converge as master without promote', cd: cluster([primary, standby]), keeper: 'k1', boot: 'b1', local: { uid: 'd1', generation: 2 }, obs: stopped, kind: 'converge', reason: /primary db d1/, extra: (a) => expect(a.kind === 'converge' && a.promote).toBe(false) },
  { title: '8. db became master while the instance runs as standby: promote', cd: cluster([db('d2', 'k2', 'master')]), keeper: 'k2', boot: 'b2', local: { uid: 'd2', generation: 1 }, obs: runningStandby, kind: 'converge', reason: /promoting/, extra: (a) => expect(a.kind === 'converge' && a.promote).toBe(true) },
  { title: '9. standby db follows the primary', cd: cluster([primary, standby]), keeper: 'k2', boot: 'b2', local: { uid: 'd2', generation: 2 }, obs: runningStandby, kind: 'converge', reason: /following db d1 at 127.0.0.1:5433/ },
  { title: '10. standby db but the instance is a primary: stop it until resynced', cd: cluster([primary, standby]), keeper: 'k2', boot: 'b2', local: { uid: 'd2', generation: 2 }, obs: runningPrimary, kind: 'stop-postgres', reason: /local instance is a primary/ },
  {
    title: '12. data directory of another cluster: refuse, never wipe it',
    cd: cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', followConfig: { type: 'internal', dbuid: 'd1' } })]),
    keeper: 'k2', boot: 'b2', local: { uid: 'old', generation: 4, clusterUID: 'other-cluster' }, obs: { ...stopped, systemId: '9' }, kind: 'refuse', reason: /holds db old of cluster other-cluster, but the store's cluster is c1/,
  },
  {
    title: '13. data directory replaced under a known db (system id differs): refuse to start it',
    cd: cluster([primary, standby]), keeper: 'k2', boot: 'b2', local: { uid: 'd2', generation: 2, clusterUID: 'c1' }, obs: { ...stopped, systemId: '77' }, kind: 'refuse', reason: /system identifier 77, but db d2 was 1/,
  },
  {
    title: '14. resync with usePgrewind and the same system id: try pg_rewind first',
    cd: cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', usePgrewind: true, followConfig: { type: 'internal', dbuid: 'd1' } })]),
    keeper: 'k2', boot: 'b2', local: { uid: 'old', generation: 1, clusterUID: 'c1' }, obs: { ...stopped, systemId: '1' }, kind: 'resync', reason: /pg_rewind, else pg_basebackup/,
    extra: (a) => expect(a.kind === 'resync' && a.tryRewind).toBe(true),
  },
  {
    title: '15. resync with usePgrewind but another system id: clone',
    cd: cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', usePgrewind: true, followConfig: { type: 'internal', dbuid: 'd1' } })]),
    keeper: 'k2', boot: 'b2', local: { uid: 'old', generation: 1, clusterUID: 'c1' }, obs: { ...stopped, systemId: '2' }, kind: 'resync', reason: /\(pg_basebackup\)/,
    extra: (a) => expect(a.kind === 'resync' && a.tryRewind).toBe(false),
  },
  {
    title: '16. initMode existing: adopt the initialized data directory, even from another cluster',
    cd: cluster([db('d1', 'k1', 'master', { initMode: 'existing' })]), keeper: 'k1', boot: 'b1', local: { uid: 'x', generation: 3, clusterUID: 'other' }, obs: { ...stopped, systemId: '5' }, kind: 'init-existing', reason: /adopting/,
  },
  {
    title: '17. initMode existing on an empty data directory: refuse',
    cd: cluster([db('d1', 'k1', 'master', { initMode: 'existing' })]), keeper: 'k1', boot: 'b1', local: { uid: '', generation: 0 }, obs: empty, kind: 'refuse', reason: /holds no initialized PostgreSQL cluster/,
  },
  {
    title: '18. initMode pitr: restore',
    cd: cluster([db('d1', 'k1', 'master', { initMode: 'pitr', pitrConfig: { dataRestoreCommand: 'cp -a /b/. %d' } })]), keeper: 'k1', boot: 'b1', local: { uid: '', generation: 0 }, obs: empty, kind: 'init-pitr', reason: /point-in-time recovery/,
    extra: (a) => expect(a.kind === 'init-pitr' && a.external).toBeUndefined(),
  },
  {
    title: '19. standby-cluster primary: converge as a standby of the external primary',
    cd: cluster([db('d1', 'k1', 'standby', { followConfig: { type: 'external', standbySettings: { primaryConninfo: 'host=10.0.0.1 password=s3cret' } } })]),
    keeper: 'k1', boot: 'b1', local: { uid: 'd1', generation: 2 }, obs: runningStandby, kind: 'converge', reason: /following the external primary/,
    extra: (a) => expect(a.kind === 'converge' && a.external?.standbySettings.primaryConninfo).toBe('host=10.0.0.1 password=s3cret'),
  },
  {
    title: '20. resync while the clusterdata does not list the db as a follower of the primary (whose keeper would drop its slot): wait',
    cd: cluster([db('d1', 'k1', 'master', { followers: [] }, '5433'), db('d3', 'k2', 'standby', { initMode: 'resync', followConfig: { type: 'internal', dbuid: 'd1' } })]),
    keeper: 'k2', boot: 'b2', local: { uid: '', generation: 0 }, obs: empty, kind: 'wait', reason: /waiting for the sentinel to list it as a follower of db d1 \(its replication slot stolon_d3\)/,
  },
  {
    title: '20b. resync listed as a follower before the primary applied that generation (its slot may not exist yet): copy, creating the slot',
    cd: (() => { const c = cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', followConfig: { type: 'internal', dbuid: 'd1' } })]); c.dbs['d1']!.generation = 3; return c; })(),
    keeper: 'k2', boot: 'b2', local: { uid: '', generation: 0 }, obs: empty, kind: 'resync', reason: /\(pg_basebackup\)/,
    extra: (a) => expect(a.kind === 'resync' && a.createSlot).toBe(true),
  },
  {
    title: '20c. the same with pg_rewind to try (it starts the standby at once, on the slot): wait for the primary to create the slot',
    cd: (() => { const c = cluster([primary, db('d3', 'k2', 'standby', { initMode: 'resync', usePgrewind: true, followConfig: { type: 'internal', dbuid: 'd1' } })]); c.dbs['d1']!.generation = 3; return c; })(),
    keeper: 'k2', boot: 'b2', local: { uid: 'old', generation: 1, clusterUID: 'c1' }, obs: { ...stopped, systemId: '1' }, kind: 'wait', reason: /waiting for the primary to create replication slot stolon_d3/,
  },
  {
    title: '21. standby whose followed db is gone (replaced by a failover in progress), instance stopped: start it as a standby with no upstream, so it can be a failover candidate',
    cd: cluster([db('d2', 'k2', 'standby', { followConfig: { type: 'internal', dbuid: 'd1' } }), db('d3', 'k1', 'master')]),
    keeper: 'k2', boot: 'b2', local: { uid: 'd2', generation: 2 }, obs: stopped, kind: 'converge', reason: /followed db d1 is not in clusterdata: running as a standby with no upstream/,
    extra: (a) => {
      expect(a.kind === 'converge' && a.role).toBe('standby');
      expect(a.kind === 'converge' && a.external).toEqual({ standbySettings: {}, archiveRecoverySettings: undefined });
      expect(a.kind === 'converge' && a.promote).toBe(false);
    },
  },
  {
    title: '22. standby whose followed db is gone, instance running as a standby: converge as a standby with no upstream too (a DB spec changed meanwhile gets applied)',
    cd: cluster([db('d2', 'k2', 'standby', { followConfig: { type: 'internal', dbuid: 'd1' } }), db('d3', 'k1', 'master')]),
    keeper: 'k2', boot: 'b2', local: { uid: 'd2', generation: 2 }, obs: runningStandby, kind: 'converge', reason: /followed db d1 is not in clusterdata: running as a standby with no upstream/,
    extra: (a) => expect(a.kind === 'converge' && a.external).toEqual({ standbySettings: {}, archiveRecoverySettings: undefined }),
  },
  {
    title: '23. a failover stops the failed primary before promoting a standby: the reason says failover, not switchover',
    cd: (() => {
      const c = cluster([db('d1', 'k1', 'master', { shutdownForSwitchover: true }), standby]);
      c.cluster.status.failover = { id: 'f1', kind: 'failover', cause: 'failkeeper', oldPrimary: { keeperUID: 'k1', dbUid: 'd1', xLogPos: 100 }, phases: { declaredFailed: T0 } };
      return c;
    })(),
    keeper: 'k1', boot: 'b1', local: { uid: 'd1', generation: 2 }, obs: runningPrimary, kind: 'switchover-stop', reason: /^failover: shutting down primary db d1 cleanly$/,
  },
  { title: '11. known db but data dir not initialized: wait', cd: cluster([primary]), keeper: 'k1', boot: 'b1', local: { uid: 'd1', generation: 2 }, obs: empty, kind: 'wait', reason: /not initialized/ },
];

describe('planKeeperAction', () => {
  for (const c of cases) {
    it(c.title, () => {
      const a = planKeeperAction(c.cd, c.keeper, c.boot, c.local, c.obs);
      expect(a.kind).toBe(c.kind);
      expect(a.reason).toMatch(c.reason);
      c.extra?.(a);
    });
  }
});

describe('internalOnlyHba (a restarted sync primary keeps normal users out)', () => {
  const syncPrimary = db('m', 'k1', 'master', { synchronousReplication: true, synchronousStandbys: ['s1', 's2'] });
  const base: InternalOnlyInputs = { current: false, db: syncPrimary, isPrimary: true, starting: false, reportedSync: [] };
  it.each<[string, Partial<InternalOnlyInputs>, boolean]>([
    ['1. a stopped sync primary is started internal-only', { starting: true }, true],
    ['2. it stays internal-only while one spec sync standby is not reported sync', { current: true, reportedSync: ['s1'] }, true],
    ['3. it opens once every spec sync standby is reported sync', { current: true, reportedSync: ['s2', 's1'] }, false],
    ['4. extra reported standbys do not matter', { current: true, reportedSync: ['s1', 's2', 'x'] }, false],
    ['5. a running primary is never closed (only a restart opens the hole)', { reportedSync: [] }, false],
    ['6. without synchronous replication: normal pg_hba, even when starting', { starting: true, db: db('m', 'k1', 'master') }, false],
    ['7. a standby: normal pg_hba', { starting: true, isPrimary: false }, false],
    [
      '8. only the fake standby (no spec standbys): normal pg_hba, commits block anyway',
      { starting: true, db: db('m', 'k1', 'master', { synchronousReplication: true, externalSynchronousStandbys: ['stolonfakestandby'] }) },
      false,
    ],
    ['9. sync turned off while internal-only: opens', { current: true, db: db('m', 'k1', 'master') }, false],
  ])('%s', (_title, over, expected) => {
    expect(internalOnlyHba({ ...base, ...over })).toBe(expected);
  });
});

describe('restartWorthy (automaticPgRestart)', () => {
  it.each([
    // Right after a promotion PostgreSQL flags the dropped recovery_target_timeline: no restart.
    [['recovery_target_timeline'], true, []],
    [['shared_buffers', 'recovery_target_timeline'], true, ['shared_buffers']],
    [['recovery_target_timeline', 'max_connections'], false, ['recovery_target_timeline', 'max_connections']],
    [[], true, []],
  ])('%j, primary %s → %j', (pending, isPrimary, want) => {
    expect(restartWorthy(pending, isPrimary)).toEqual(want);
  });
});
