/**
 * Property: `decide` never throws on store content. Any clusterdata that `parseClusterData`
 * accepts (schema, cross-field rules and spec), with any keeper and proxy infos of their types
 * (what the leader sentinel lets through, see `infoIssues`), gives a result,
 * and that result is itself a document every reader accepts (the sentinel never writes what
 * keepers and proxies would refuse). Bounded: a fixed number of runs, each a few decide calls.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseClusterData, serializeClusterData } from './clusterdata.js';
import { clusterDataIssues, infoIssues } from './clusterdata-schema.js';
import { decide, emptyMemory, type SentinelMemory } from './decide.js';
import { validateSpec } from './spec.js';
import { CLUSTER_UID, STANDBY_SPEC, T0, seqUids, wallAt } from './testing.js';
import type { ClusterData, ClusterSpec, DB, FailoverEvent, Keeper, KeeperInfo, ProxyInfo } from './types.js';

const KEEPERS = ['k1', 'k2', 'k3', 'k4'] as const;
const dbUidOf = (k: string): string => `d-${k}`;
/** DB uids that may be referenced, including ones no DB has. */
const ANY_DB = fc.constantFrom('d-k1', 'd-k2', 'd-k3', 'd-k4', 'd-gone', '');
const ANY_KEEPER = fc.constantFrom('k1', 'k2', 'k3', 'k4', 'k9', '');
const lsn = fc.nat({ max: 0x5000000 });
const smallGen = fc.nat({ max: 6 });
const wall = fc.oneof(fc.constant(T0), fc.constant('not a time'), fc.nat({ max: 10_000_000 }).map(wallAt));

const specArb: fc.Arbitrary<ClusterSpec> = fc.oneof(
  fc.record(
    {
      initMode: fc.constantFrom('new' as const, 'existing' as const),
      synchronousReplication: fc.boolean(),
      minSynchronousStandbys: fc.nat({ max: 2 }),
      maxSynchronousStandbys: fc.integer({ min: 2, max: 3 }),
      maxStandbys: fc.integer({ min: 1, max: 3 }),
      maxStandbyLag: fc.nat({ max: 0x100000 }),
      paused: fc.boolean(),
      additionalMasterReplicationSlots: fc.constantFrom<string[] | null>(null, ['extra_slot']),
      existingConfig: fc.constant({ keeperUID: 'k1' }),
    },
    { requiredKeys: ['initMode', 'existingConfig'] },
  ),
  fc.constant(STANDBY_SPEC),
).filter((s) => {
  try {
    validateSpec(s);
    return true;
  } catch {
    return false;
  }
});

function history(): fc.Arbitrary<DB['status']['timelinesHistory']> {
  return fc.array(fc.record({ timelineID: fc.nat({ max: 4 }), switchPoint: lsn, reason: fc.constant('x') }), { maxLength: 3 });
}

function dbArb(keeperUID: string): fc.Arbitrary<DB> {
  return fc.record({
    generation: smallGen,
    currentGeneration: smallGen,
    role: fc.constantFrom('master' as const, 'standby' as const),
    initMode: fc.constantFrom('none' as const, 'new' as const, 'existing' as const, 'pitr' as const, 'resync' as const),
    follow: fc.option(fc.oneof(fc.record({ type: fc.constant('internal' as const), dbuid: ANY_DB }), fc.constant({ type: 'external' as const }))),
    followers: fc.array(ANY_DB, { maxLength: 3 }),
    syncSpec: fc.array(ANY_DB, { maxLength: 3 }),
    syncStatus: fc.array(ANY_DB, { maxLength: 3 }),
    synchronousReplication: fc.boolean(),
    shutdownForSwitchover: fc.option(fc.boolean(), { nil: undefined }),
    healthy: fc.boolean(),
    timelineID: fc.nat({ max: 4 }),
    xLogPos: lsn,
    history: history(),
  }).map((r) => ({
    uid: dbUidOf(keeperUID),
    generation: r.generation,
    changeTime: T0,
    spec: {
      keeperUID,
      requestTimeout: '2s',
      maxStandbys: 20,
      synchronousReplication: r.synchronousReplication,
      usePgrewind: false,
      additionalWalSenders: 5,
      additionalReplicationSlots: null,
      initMode: r.initMode,
      pgParameters: {},
      pgHBA: null,
      role: r.role,
      followConfig: r.follow,
      followers: r.followers,
      includePreviousConfig: false,
      synchronousStandbys: r.syncSpec,
      externalSynchronousStandbys: [],
      ...(r.shutdownForSwitchover === undefined ? {} : { shutdownForSwitchover: r.shutdownForSwitchover }),
    },
    status: {
      healthy: r.healthy,
      currentGeneration: r.currentGeneration,
      listenAddress: '127.0.0.1',
      port: '5432',
      systemdID: '7000',
      timelineID: r.timelineID,
      xLogPos: r.xLogPos,
      timelinesHistory: r.history,
      pgParameters: {},
      synchronousStandbys: r.syncStatus,
      olderWalFile: '',
    },
  }));
}

function keeperArb(uid: string): fc.Arbitrary<Keeper> {
  return fc
    .record({
      healthy: fc.boolean(),
      lastHealthyTime: wall,
      forceFail: fc.option(fc.boolean(), { nil: undefined }),
      canBeMaster: fc.option(fc.boolean(), { nil: undefined }),
      canBeSynchronousReplica: fc.option(fc.boolean(), { nil: undefined }),
      priority: fc.option(fc.integer({ min: -2, max: 2 }), { nil: undefined }),
    })
    .map((s) => {
      const status: Keeper['status'] = { healthy: s.healthy, lastHealthyTime: s.lastHealthyTime, bootUUID: `boot-${uid}` };
      for (const k of ['forceFail', 'canBeMaster', 'canBeSynchronousReplica', 'priority'] as const) {
        if (s[k] !== undefined) {
          (status as unknown as Record<string, unknown>)[k] = s[k];
        }
      }
      return { uid, generation: 1, changeTime: T0, spec: {}, status };
    });
}

const eventArb: fc.Arbitrary<FailoverEvent> = fc
  .record({
    kind: fc.constantFrom('failover' as const, 'switchover' as const),
    oldKeeper: ANY_KEEPER,
    oldDb: ANY_DB,
    newPrimary: fc.option(fc.record({ keeperUID: ANY_KEEPER, dbUid: ANY_DB, xLogPos: lsn }), { nil: undefined }),
    fenced: fc.option(wall, { nil: undefined }),
    chosen: fc.option(wall, { nil: undefined }),
    promoted: fc.option(wall, { nil: undefined }),
    result: fc.option(fc.constantFrom('completed' as const, 'aborted' as const), { nil: undefined }),
  })
  .map((r) => ({
    id: 'ev1',
    kind: r.kind,
    cause: 'test',
    oldPrimary: { keeperUID: r.oldKeeper, dbUid: r.oldDb, xLogPos: 0 },
    ...(r.newPrimary === undefined ? {} : { newPrimary: r.newPrimary }),
    phases: {
      declaredFailed: T0,
      ...(r.fenced === undefined ? {} : { proxiesFenced: r.fenced }),
      ...(r.chosen === undefined ? {} : { candidateChosen: r.chosen }),
      ...(r.promoted === undefined ? {} : { promoted: r.promoted }),
    },
    ...(r.result === undefined ? {} : { result: r.result }),
  }));

/** Schema-valid clusterdata: each keeper maybe with a DB, a primary that is "" or a DB of role master. */
const clusterDataArb: fc.Arbitrary<ClusterData> = fc
  .record({
    spec: specArb,
    phase: fc.constantFrom('initializing' as const, 'normal' as const),
    keepers: fc.subarray([...KEEPERS]),
    withDb: fc.subarray([...KEEPERS]),
    master: fc.option(fc.constantFrom(...KEEPERS)),
    masterDbUid: ANY_DB,
    enabledProxies: fc.subarray(['p1', 'p2', 'p9']),
    proxyGeneration: fc.integer({ min: 1, max: 5 }),
    failover: fc.option(eventArb, { nil: undefined }),
    switchoverTo: fc.option(fc.option(ANY_KEEPER, { nil: undefined }), { nil: null }),
    failoverHistory: fc.option(fc.array(eventArb, { maxLength: 2 }), { nil: undefined }),
    keeperArbs: fc.tuple(...KEEPERS.map(keeperArb)),
    dbArbs: fc.tuple(...KEEPERS.map(dbArb)),
  })
  .map((r) => {
    const keepers: Record<string, Keeper> = {};
    const dbs: Record<string, DB> = {};
    r.keepers.forEach((k) => (keepers[k] = r.keeperArbs[KEEPERS.indexOf(k as (typeof KEEPERS)[number])]!));
    for (const k of r.withDb) {
      if (keepers[k] !== undefined) {
        dbs[dbUidOf(k)] = r.dbArbs[KEEPERS.indexOf(k as (typeof KEEPERS)[number])]!;
      }
    }
    let master = '';
    if (r.master !== null && dbs[dbUidOf(r.master)] !== undefined) {
      master = dbUidOf(r.master);
      const m = dbs[master]!;
      if (m.spec.followConfig?.type !== 'external') {
        m.spec.role = 'master';
      }
    }
    const cd: ClusterData = {
      formatVersion: 1,
      changeTime: T0,
      cluster: {
        uid: CLUSTER_UID,
        generation: 1,
        changeTime: T0,
        spec: r.spec,
        status: {
          phase: r.phase,
          master,
          ...(r.failover === undefined ? {} : { failover: r.failover }),
          ...(r.switchoverTo === null
            ? {}
            : { switchoverRequest: { requestedAt: T0, ...(r.switchoverTo === undefined ? {} : { targetKeeperUID: r.switchoverTo }) } }),
        },
      },
      keepers,
      dbs,
      proxy: { uid: 'px', generation: r.proxyGeneration, changeTime: T0, spec: { masterDbUid: r.masterDbUid, enabledProxies: r.enabledProxies }, status: {} },
      ...(r.failoverHistory === undefined ? {} : { failoverHistory: r.failoverHistory }),
    };
    return cd;
  });

const keeperInfoArb = (uid: string): fc.Arbitrary<KeeperInfo> =>
  fc
    .record({
      otherCluster: fc.boolean(),
      state: fc.option(
        fc.record({
          uid: ANY_DB,
          generation: smallGen,
          healthy: fc.boolean(),
          timelineID: fc.nat({ max: 4 }),
          xLogPos: lsn,
          replayed: fc.option(lsn, { nil: undefined }),
          history: history(),
          sync: fc.array(ANY_DB, { maxLength: 3 }),
          role: fc.option(fc.constantFrom('master' as const, 'standby' as const), { nil: undefined }),
          running: fc.option(fc.boolean(), { nil: undefined }),
          startError: fc.option(fc.constant('could not start'), { nil: undefined }),
          pendingRestart: fc.option(fc.constant<string[]>(['shared_buffers']), { nil: undefined }),
        }),
        { nil: undefined },
      ),
      canBeMaster: fc.option(fc.boolean(), { nil: undefined }),
      priority: fc.option(fc.integer({ min: -2, max: 2 }), { nil: undefined }),
    })
    .map((r) => ({
      infoUID: `i-${uid}`,
      uid,
      clusterUID: r.otherCluster ? 'another' : CLUSTER_UID,
      bootUUID: `boot-${uid}`,
      postgresBinaryVersion: { Maj: 15, Min: 0 },
      ...(r.canBeMaster === undefined ? {} : { canBeMaster: r.canBeMaster }),
      ...(r.priority === undefined ? {} : { priority: r.priority }),
      ...(r.state === undefined
        ? {}
        : {
            postgresState: {
              uid: r.state.uid,
              generation: r.state.generation,
              listenAddress: '127.0.0.1',
              port: '5432',
              healthy: r.state.healthy,
              systemID: '7000',
              timelineID: r.state.timelineID,
              xLogPos: r.state.xLogPos,
              ...(r.state.replayed === undefined ? {} : { replayedXLogPos: r.state.replayed }),
              timelinesHistory: r.state.history,
              pgParameters: {},
              synchronousStandbys: r.state.sync,
              olderWalFile: '',
              ...(r.state.role === undefined ? {} : { role: r.state.role }),
              ...(r.state.running === undefined ? {} : { running: r.state.running }),
              ...(r.state.startError === undefined ? {} : { startError: r.state.startError }),
              ...(r.state.pendingRestart === undefined ? {} : { pendingRestart: r.state.pendingRestart }),
            },
          }),
    }));

const infosArb = fc.record({
  keepers: fc.tuple(...[...KEEPERS, 'k9'].map((k) => fc.option(keeperInfoArb(k), { nil: undefined }))),
  proxies: fc.subarray(['p1', 'p2', 'p9']).chain((uids) =>
    fc.tuple(...uids.map((UID) => fc.integer({ min: 0, max: 6 }).map((Generation): ProxyInfo => ({ infoUID: `pi-${UID}`, UID, Generation, ProxyTimeout: 4e9 })))),
  ),
  now: fc.integer({ min: 0, max: 100_000 }),
  memoryAge: fc.nat({ max: 60_000 }),
});

function byUid<T>(items: readonly (T | undefined)[], key: (t: T) => string): Record<string, T> {
  const out: Record<string, T> = {};
  for (const i of items) {
    if (i !== undefined) {
      out[key(i)] = i;
    }
  }
  return out;
}

/** Memory as an earlier pass may have left it: every DB failing and converging for a while. */
function oldMemory(cd: ClusterData, since: number): SentinelMemory {
  const m = emptyMemory();
  const dbErrorSince: Record<string, number> = {};
  const dbConvergingSince: Record<string, { generation: number; since: number }> = {};
  for (const db of Object.values(cd.dbs)) {
    dbErrorSince[db.uid] = since;
    dbConvergingSince[db.uid] = { generation: db.generation, since };
  }
  return { ...m, dbErrorSince, dbConvergingSince, initFailures: { k1: 1 } };
}

describe('decide never throws on store content (property)', () => {
  it('any valid clusterdata and any infos: decide returns, three passes in a row, and writes only valid clusterdata', () => {
    fc.assert(
      fc.property(clusterDataArb, infosArb, fc.boolean(), (cd, obs, remembered) => {
        // The generated document is what a reader accepts (else the generator is wrong).
        expect(clusterDataIssues(cd)).toEqual([]);
        let current = parseClusterData(serializeClusterData(cd));
        let memory = remembered ? oldMemory(current, obs.now - obs.memoryAge) : emptyMemory();
        const keeperInfos = byUid(obs.keepers, (i) => i.uid);
        const proxyInfos = byUid(obs.proxies, (p) => p.UID);
        // Infos as the leader sentinel lets through (it leaves out or refuses malformed ones).
        expect(Object.values(keeperInfos).flatMap((i) => infoIssues('keepers', i))).toEqual([]);
        expect(Object.values(proxyInfos).flatMap((i) => infoIssues('proxies', i))).toEqual([]);
        const newUid = seqUids();
        for (let pass = 0; pass < 3; pass++) {
          const now = obs.now + pass * 1000;
          const out = decide({ cd: current, keeperInfos, proxyInfos, memory, now, wallTime: wallAt(now), newUid });
          expect(clusterDataIssues(out.next)).toEqual([]);
          current = parseClusterData(serializeClusterData(out.next));
          memory = out.memory;
        }
      }),
      { numRuns: 400, seed: 20261206 },
    );
  }, 30_000);
});
