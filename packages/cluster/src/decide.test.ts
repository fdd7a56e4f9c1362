/**
 * The leader sentinel's decisions (docs/design.md#decision-tests-are-tables): one table of
 * numbered, described scenarios, each a single `decide` pass over deep-frozen inputs, then a few multi-pass sequences
 * where each pass's output feeds the next. A failing case prints a structural diff of `next`.
 */
import { describe, expect, it } from 'vitest';
import {
  aCluster,
  CLUSTER_UID,
  dbOf,
  decideInput,
  keeperInfo,
  MINIMAL_SPEC,
  proxyInfo,
  republished,
  seqUids,
  STANDBY_SPEC,
  T0,
  wallAt,
  type Observed,
} from './testing.js';
import { newClusterData } from './clusterdata.js';
import { decide, emptyMemory, POSITIONS_WRITE_INTERVAL_MS, type DecideInput, type DecideOutput, type SentinelMemory } from './decide.js';
import type { ClusterData, ClusterSpec, DiscardedWal, FollowConfig, KeeperInfo, ProxyInfo } from './types.js';

type DeepPartial<T> = T extends readonly (infer U)[]
  ? readonly DeepPartial<U>[]
  : T extends object
    ? { readonly [K in keyof T]?: DeepPartial<T[K]> }
    : T;

interface Expected {
  /** Fragments `next` must contain (`toMatchObject`: arrays compared whole). */
  readonly next?: DeepPartial<ClusterData>;
  /** Exactly these DB uids in `next.dbs`. */
  readonly dbs?: readonly string[];
  /** Exactly these keeper uids in `next.keepers`. */
  readonly keepers?: readonly string[];
  /** Each must be a substring of some reason. */
  readonly reasons?: readonly string[];
  /** None may be a substring of any reason. */
  readonly notReasons?: readonly string[];
  readonly changed?: boolean;
  readonly memory?: DeepPartial<SentinelMemory>;
  /** Anything the fields above cannot say (absent keys, exact reason lists). */
  readonly check?: (out: DecideOutput, input: DecideInput) => void;
}

interface Case {
  readonly n: number;
  readonly title: string;
  /** Numbers of the Stolon TestUpdateCluster cases this one ports (see STOLON_CASES). */
  readonly stolon?: readonly number[];
  /** Builds a fresh, deep-frozen input. */
  readonly given: () => DecideInput;
  readonly expect: Expected;
}

const LSN = 5_000_000;
/** 48 hours in ms, Stolon's default deadKeeperRemovalInterval. */
const DAY2 = 48 * 3_600_000;
const MIB = 1_048_576;

/** Observations of `cd`: keepers given by uid (consistent infos) or as ready infos. */
function observe(
  cd: ClusterData,
  keepers: readonly (string | KeeperInfo)[],
  proxies: readonly ProxyInfo[] = [],
  more: Omit<Observed, 'keepers' | 'proxies'> = {},
): DecideInput {
  return decideInput(cd, {
    ...more,
    keepers: keepers.map((k) => (typeof k === 'string' ? keeperInfo(k, cd) : k)),
    proxies,
  });
}

/** Primary k1 and standby k2, both converged at LSN 5 000 000, proxies routed to k1 for [p1] at generation 2. */
const healthyPair = () =>
  aCluster()
    .initialized()
    .withPrimary('k1', { xLogPos: LSN })
    .withStandby('k2', { xLogPos: LSN })
    .routedTo('k1', ['p1'], 2);

/** Adopt keeper k2's data directory as the primary. */
const EXISTING_SPEC: ClusterSpec = { initMode: 'existing', existingConfig: { keeperUID: 'k2' } };

/** Restore the first primary from a backup, to a point in time. */
const PITR_SPEC: ClusterSpec = {
  initMode: 'pitr',
  pitrConfig: {
    dataRestoreCommand: 'restore-backup %d',
    archiveRecoverySettings: { restoreCommand: 'cp /archive/%f %p' },
    recoveryTargetSettings: { recoveryTargetTime: '2025-01-01 00:00:00+00' },
  },
};

/** The followConfig of a standby cluster's primary DB under `STANDBY_SPEC`. */
const EXTERNAL_FOLLOW: FollowConfig = {
  type: 'external',
  standbySettings: STANDBY_SPEC.standbyConfig!.standbySettings!,
  archiveRecoverySettings: STANDBY_SPEC.standbyConfig!.archiveRecoverySettings!,
};

/** A standby cluster: k1's DB follows the external primary, k2's follows k1's; proxies routed to k1. */
const standbyClusterPair = () =>
  aCluster({ spec: STANDBY_SPEC })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN })
    .withStandby('k2', { xLogPos: LSN })
    .routedTo('k1', ['p1'], 2);

/** What a keeper reports after pg_rewind threw away WAL its old timeline had past the fork. */
const DISCARDED: DiscardedWal = { fromLsn: 0x3000060, toLsn: 0x3001000, timelineID: 1, method: 'pg_rewind', at: T0 };

/** As after a fence pass: k1 (primary) lost, proxies at generation 3 routed nowhere, no proxy alive. */
const k1LostAndFenced = () =>
  aCluster()
    .initialized()
    .withPrimary('k1', { xLogPos: LSN, keeperHealthy: false, healthy: false })
    .fenced(3);

/** Synchronous replication, Stolon's defaults: min = max = 1 synchronous standby. */
const SYNC_SPEC: ClusterSpec = { initMode: 'new', synchronousReplication: true };
/** Synchronous replication with up to two synchronous standbys. */
const SYNC2_SPEC: ClusterSpec = { ...SYNC_SPEC, maxSynchronousStandbys: 2 };

/**
 * Sync on: primary k1 with standbys k2 and k3 (all at LSN 5 000 000), proxies routed to k1;
 * k2 is the synchronous standby, in the spec and known in sync (k1 reports it `sync`).
 */
const syncTrio = (spec: ClusterSpec = SYNC_SPEC, sync: readonly string[] = ['db-k2'], known: readonly string[] = sync) =>
  aCluster({ spec })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN, synchronousStandbys: sync, knownSynchronousStandbys: known })
    .withStandby('k2', { xLogPos: LSN })
    .withStandby('k3', { xLogPos: LSN })
    .routedTo('k1', ['p1'], 2);

/** As `syncTrio`, but k1 was lost and proxies are fenced at generation 3 (none alive): the next pass promotes. */
const syncPrimaryLost = (sync: readonly string[], known: readonly string[] = sync, spec: ClusterSpec = SYNC_SPEC) =>
  aCluster({ spec })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN, keeperHealthy: false, healthy: false, synchronousStandbys: sync, knownSynchronousStandbys: known })
    .fenced(3);

/**
 * After a failover: primary k1 promoted onto timeline 2 at LSN (history: timeline 1 ended at LSN),
 * standby k2 following it on timeline 2, and standby k3 as given (its timeline-1 history entry,
 * when on timeline 2, ends at `k3Switch`); proxies routed to k1.
 */
const forkedTrio = (k3: { timeline: number; xLogPos: number }, k3Switch = LSN): ClusterData => {
  const cd = aCluster()
    .initialized()
    .withPrimary('k1', { xLogPos: LSN + 1000, timeline: 2 })
    .withStandby('k2', { xLogPos: LSN + 1000, timeline: 2 })
    .withStandby('k3', k3)
    .routedTo('k1', ['p1'], 2)
    .build();
  const history = (at: number) => [{ timelineID: 1, switchPoint: at, reason: 'no recovery target specified' }];
  cd.dbs['db-k1']!.status.timelinesHistory = history(LSN);
  cd.dbs['db-k2']!.status.timelinesHistory = history(LSN);
  if (k3.timeline === 2) {
    cd.dbs['db-k3']!.status.timelinesHistory = history(k3Switch);
  }
  return cd;
};

const FAKE = 'stolonfakestandby';
const SYNC_ONLY_REASON = 'synchronous replication is on and only a standby known to be in sync may be promoted';

/**
 * The pass after a promotion ordered by a failover, produced by `decide` itself: primary k1 lost
 * (sync lists as given), standbys k2 (at LSN) and k3 (at `k3Lsn`), proxies fenced at generation 3
 * and acknowledged by p1; k2 (most advanced) was chosen, db-k1 deleted, db-k2 not yet converged
 * as primary, db-k3 already told to follow db-k2 (in the same write).
 */
const k2Chosen = (spec: ClusterSpec = MINIMAL_SPEC, sync: readonly string[] = [], k3Lsn = LSN - 100): ClusterData => {
  const cd = aCluster({ spec })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN, keeperHealthy: false, healthy: false, synchronousStandbys: sync, knownSynchronousStandbys: sync })
    .withStandby('k2', { xLogPos: LSN })
    .withStandby('k3', { xLogPos: k3Lsn })
    .fenced(3, ['p1'])
    .build();
  const out = decide(observe(cd, ['k2', 'k3'], [proxyInfo('p1', 3)]));
  expect(out.next.cluster.status.master).toBe('db-k2');
  expect(out.next.dbs['db-k3']?.spec.followConfig?.dbuid).toBe('db-k2');
  return out.next;
};

/**
 * Primary k1 (keeper live, forced failed or unhealthy) already told to shut down by a failover in
 * progress (`shutdownForSwitchover` at generation 2, applied), standby k2; proxies fenced at
 * generation 3, no proxy alive.
 */
const k1Stopping = (): ClusterData => {
  const cd = aCluster()
    .initialized()
    .withPrimary('k1', { xLogPos: LSN, forceFail: true, generation: 2 })
    .withStandby('k2', { xLogPos: LSN })
    .fenced(3)
    .build();
  cd.dbs['db-k1']!.spec.shutdownForSwitchover = true;
  cd.cluster.status.failover = {
    id: 'db-k1-x',
    kind: 'failover',
    cause: 'keeper k1 lost (info lease expired) or failed by stolonctl failkeeper',
    oldPrimary: { keeperUID: 'k1', dbUid: 'db-k1', xLogPos: LSN },
    phases: { declaredFailed: T0, proxiesFenced: T0 },
  };
  return cd;
};

const cases: readonly Case[] = [
  // --- initialisation ---------------------------------------------------------------------
  {
    n: 1,
    title: 'initializing, no keeper registered: waits, writes nothing',
    given: () => observe(aCluster().build(), []),
    expect: {
      dbs: [],
      keepers: [],
      next: { cluster: { status: { phase: 'initializing', master: '' } } },
      reasons: ['initializing: waiting for a healthy keeper that can be primary to register'],
      changed: false,
    },
  },
  {
    n: 2,
    title: 'initializing, keepers k2 and k1 register: k1 (lowest uid) gets a new primary DB with initMode new',
    given: () => {
      const cd = aCluster().build();
      return observe(cd, ['k2', 'k1']);
    },
    expect: {
      keepers: ['k1', 'k2'],
      dbs: ['u1'],
      next: {
        cluster: { status: { phase: 'initializing', master: 'u1' } },
        keepers: { k1: { status: { healthy: true, lastHealthyTime: wallAt(10_000) } }, k2: { status: { healthy: true } } },
        dbs: {
          u1: {
            generation: 1,
            spec: { keeperUID: 'k1', role: 'master', initMode: 'new', followConfig: null, followers: [], newConfig: {} },
            status: { currentGeneration: 0, healthy: false },
          },
        },
      },
      reasons: ['new keeper k1 registered', 'new keeper k2 registered', 'initializing: keeper k1 chosen as initial primary (db u1, initMode new)'],
      changed: true,
    },
  },
  {
    n: 3,
    title: 'initializing, k1 has canBeMaster=false: k2 gets the primary DB',
    given: () => {
      const cd = aCluster().build();
      return observe(cd, [keeperInfo('k1', cd, { canBeMaster: false }), 'k2']);
    },
    expect: {
      dbs: ['u1'],
      next: { keepers: { k1: { status: { canBeMaster: false } } }, dbs: { u1: { spec: { keeperUID: 'k2', initMode: 'new' } } } },
      reasons: ['keeper k2 chosen as initial primary'],
    },
  },
  {
    n: 4,
    title: 'initializing, the only keeper has canBeMaster=false: waits',
    given: () => {
      const cd = aCluster().build();
      return observe(cd, [keeperInfo('k1', cd, { canBeMaster: false })]);
    },
    expect: { dbs: [], keepers: ['k1'], reasons: ['waiting for a healthy keeper that can be primary'] },
  },
  {
    n: 5,
    title: 'initializing, the new primary converged and is healthy: phase normal, initMode none',
    given: () => {
      const cd = aCluster().withPrimary('k1', { initMode: 'new', currentGeneration: 0, healthy: false }).build();
      return observe(cd, ['k1']);
    },
    expect: {
      next: {
        cluster: { status: { phase: 'normal', master: 'db-k1' } },
        dbs: { 'db-k1': { generation: 2, spec: { initMode: 'none', role: 'master' }, status: { healthy: true, currentGeneration: 1 } } },
      },
      reasons: ['initialized: primary k1 (db db-k1) is up; cluster phase normal'],
    },
  },
  {
    n: 6,
    title: 'initializing, the keeper has not applied the new DB yet: waits, convergence timer started',
    given: () => {
      const cd = aCluster().withPrimary('k1', { initMode: 'new', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 0 })]);
    },
    expect: {
      next: { cluster: { status: { phase: 'initializing', master: 'db-k1' } }, dbs: { 'db-k1': { generation: 1, spec: { initMode: 'new' } } } },
      memory: { dbConvergingSince: { 'db-k1': { generation: 1, since: 10_000 } } },
      reasons: ['initializing: waiting for keeper k1 to initialize db db-k1'],
    },
  },
  {
    n: 7,
    title: 'initializing, the DB converged but postgres is unhealthy: still waits',
    given: () => {
      const cd = aCluster().withPrimary('k1', { initMode: 'new', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k1', cd, { pgHealthy: false })]);
    },
    expect: {
      next: { cluster: { status: { phase: 'initializing' } } },
      reasons: ['waiting for keeper k1 to initialize db db-k1'],
    },
  },
  {
    n: 8,
    title: 'initializing, not initialized at exactly initTimeout (5m): still waits',
    given: () => {
      const cd = aCluster().withPrimary('k1', { initMode: 'new', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 0 })], [], {
        now: 300_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 1, since: 0 } } },
      });
    },
    expect: { dbs: ['db-k1'], reasons: ['waiting for keeper k1 to initialize db db-k1'] },
  },
  {
    n: 9,
    title: 'initializing, not initialized 1 ms past initTimeout: DB removed, master cleared',
    given: () => {
      const cd = aCluster().withPrimary('k1', { initMode: 'new', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 0 })], [], {
        now: 300_001,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 1, since: 0 } } },
      });
    },
    expect: {
      dbs: [],
      next: { cluster: { status: { phase: 'initializing', master: '' } } },
      memory: { dbConvergingSince: {}, dbErrorSince: {} },
      reasons: ['keeper k1 did not initialize db db-k1 within initTimeout 5m0s; choosing again'],
    },
  },

  // --- standbys ----------------------------------------------------------------------------
  {
    n: 10,
    title: 'normal, healthy primary, free keeper k2: resync standby following the primary; only changed DB specs get a new generation',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1').withStandby('k3').withKeeper('k2').routedTo('k1', ['p1']).build();
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k3', 'u1'],
      next: {
        dbs: {
          u1: {
            generation: 1,
            spec: { keeperUID: 'k2', role: 'standby', initMode: 'resync', followConfig: { type: 'internal', dbuid: 'db-k1' }, followers: [] },
          },
          'db-k1': { generation: 2, spec: { role: 'master', followers: ['db-k3', 'u1'] } },
          'db-k3': { generation: 1 },
        },
        proxy: { generation: 2 },
      },
      reasons: ['keeper k2 assigned new standby db u1 following primary db db-k1'],
      changed: true,
    },
  },
  {
    n: 11,
    title: 'normal, a resync standby converged and healthy: its initMode becomes none (generation bumped)',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1').withStandby('k2', { initMode: 'resync' }).routedTo('k1', ['p1']).build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k2': { generation: 2, spec: { initMode: 'none' } }, 'db-k1': { generation: 1 } } },
    },
  },
  {
    n: 12,
    title: 'normal, maxStandbysPerSender (1) good standbys already: a free keeper gets no DB',
    given: () => {
      const cd = aCluster({ spec: { ...MINIMAL_SPEC, maxStandbysPerSender: 1 } })
        .initialized()
        .withPrimary('k1')
        .withStandby('k2')
        .withKeeper('k3')
        .routedTo('k1', ['p1'])
        .build();
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { dbs: ['db-k1', 'db-k2'], changed: false },
  },
  {
    n: 13,
    title: 'normal, a standby reports another system id than the primary: its DB is removed and its keeper resynced',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1').withStandby('k2', { systemId: '7999' }).routedTo('k1', ['p1']).build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'u1'],
      next: {
        dbs: { 'db-k1': { spec: { followers: ['u1'] }, generation: 2 }, u1: { spec: { keeperUID: 'k2', initMode: 'resync' } } },
      },
      reasons: ['removing db db-k2 of keeper k2: system id differs', 'keeper k2 assigned new standby db u1'],
    },
  },

  // --- proxies -----------------------------------------------------------------------------
  {
    n: 14,
    title: 'primary converged, p1 acknowledged the current proxy generation: proxies routed to it, generation +1',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1').build();
      return observe(cd, ['k1'], [proxyInfo('p1', 1)]);
    },
    expect: {
      next: { proxy: { generation: 2, spec: { masterDbUid: 'db-k1', enabledProxies: ['p1'] } } },
      reasons: ['routing proxies [p1] to primary k1 (db db-k1), proxy generation 2'],
      changed: true,
    },
  },
  {
    n: 15,
    title: 'primary converged, p1 still enforces an older proxy generation: not routed yet',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1').fenced(3, ['p1']).build();
      return observe(cd, ['k1'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { proxy: { generation: 3, spec: { masterDbUid: '' } } },
      reasons: ['waiting for proxies p1 to acknowledge proxy generation 3 before routing'],
    },
  },
  {
    n: 16,
    title: 'primary not converged yet (promotion pending): not routed yet',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1', { generation: 2, currentGeneration: 1 }).fenced(3, ['p1']).build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 1 })], [proxyInfo('p1', 3)]);
    },
    expect: {
      next: { proxy: { generation: 3, spec: { masterDbUid: '' } } },
      reasons: ['waiting for primary k1 (db db-k1) to converge before routing proxies to it'],
    },
  },
  {
    n: 17,
    title: 'routed, a new proxy p2 appears: enabled, proxy generation +1',
    given: () => observe(healthyPair().build(), ['k1', 'k2'], [proxyInfo('p1', 2), proxyInfo('p2', 0)]),
    expect: {
      next: { proxy: { generation: 3, spec: { masterDbUid: 'db-k1', enabledProxies: ['p1', 'p2'] } } },
      reasons: ['enabled proxies now [p1, p2], proxy generation 3'],
    },
  },
  {
    n: 18,
    title: 'routed, proxy p2 disappears: kept enabled while absent for up to proxyTimeout + 1 s (an info lease that expired in a short store outage must not fence it)',
    given: () => observe(healthyPair().routedTo('k1', ['p1', 'p2'], 2).build(), ['k1', 'k2'], [proxyInfo('p1', 2)]),
    expect: {
      next: { proxy: { generation: 2, spec: { masterDbUid: 'db-k1', enabledProxies: ['p1', 'p2'] } } },
      memory: { proxyAbsentSince: { p2: 10_000 } },
      notReasons: ['enabled proxies now'],
    },
  },
  {
    n: 163,
    title: 'routed, proxy p2 absent for more than proxyTimeout + 1 s: removed from the enabled list',
    given: () =>
      observe(healthyPair().routedTo('k1', ['p1', 'p2'], 2).build(), ['k1', 'k2'], [proxyInfo('p1', 2)], {
        memory: { ...emptyMemory(), proxyAbsentSince: { p2: 10_000 - 5_001 } },
      }),
    expect: {
      next: { proxy: { generation: 3, spec: { masterDbUid: 'db-k1', enabledProxies: ['p1'] } } },
      reasons: ['enabled proxies now [p1], proxy generation 3'],
    },
  },
  {
    n: 164,
    title: 'routed, proxy p2 publishes again after 5 s absent: still enabled, no proxy generation change, absence forgotten',
    given: () =>
      observe(healthyPair().routedTo('k1', ['p1', 'p2'], 2).build(), ['k1', 'k2'], [proxyInfo('p1', 2), proxyInfo('p2', 2)], {
        memory: { ...emptyMemory(), proxyAbsentSince: { p2: 10_000 - 5_000 } },
      }),
    expect: {
      next: { proxy: { generation: 2, spec: { masterDbUid: 'db-k1', enabledProxies: ['p1', 'p2'] } } },
      notReasons: ['enabled proxies now'],
    },
  },
  {
    n: 165,
    title: 'primary k1 lost while enabled proxy p2 is absent: the fence waits for p1 only and the new primary enables the live proxies only',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3)], { memory: { ...emptyMemory(), proxyAbsentSince: { p2: 9_000 } } });
    },
    expect: { reasons: ['promoting keeper k2'], notReasons: ['waiting for proxies'] },
  },

  // --- failover ------------------------------------------------------------------------------
  {
    n: 19,
    title: 'primary keeper lost (no info), p1 still on the old generation: proxies fenced, NO promotion in this pass',
    given: () => observe(healthyPair().build(), ['k2'], [proxyInfo('p1', 2)]),
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: {
        cluster: { status: { master: 'db-k1' } },
        keepers: { k1: { status: { healthy: false } } },
        dbs: { 'db-k1': { spec: { role: 'master' } }, 'db-k2': { spec: { role: 'standby' }, generation: 1 } },
        proxy: { generation: 3, spec: { masterDbUid: '', enabledProxies: ['p1'] } },
      },
      reasons: [
        'keeper k1 lost: its info lease expired',
        'primary k1 (db db-k1) failed: fencing proxies with proxy generation 3',
        'waiting for proxies p1 to acknowledge fence generation 3 before promoting',
      ],
      notReasons: ['promoting keeper'],
      changed: true,
    },
  },
  {
    n: 20,
    title: 'fence acknowledged by p1: the most advanced standby k3 is promoted (Stolon would take k2), old primary DB removed, k2 told to follow k3 in the same write',
    given: () => {
      const cd = k1LostAndFenced()
        .fenced(3, ['p1'])
        .withStandby('k2', { xLogPos: LSN - 1_000 })
        .withStandby('k3', { xLogPos: LSN })
        .build();
      return observe(cd, ['k2', 'k3'], [proxyInfo('p1', 3)]);
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: {
        cluster: { status: { phase: 'normal', master: 'db-k3' } },
        dbs: {
          'db-k3': { generation: 2, spec: { role: 'master', followConfig: null } },
          'db-k2': { generation: 2, spec: { role: 'standby', followConfig: { type: 'internal', dbuid: 'db-k3' } } },
        },
        proxy: { generation: 3, spec: { masterDbUid: '' } },
      },
      reasons: ['primary k1 (db db-k1) failed: promoting keeper k3 (db db-k3, LSN 5000000, primary\'s last LSN 5000000)'],
    },
  },
  {
    n: 21,
    title: 'standbys tie on LSN: the lower DB uid is promoted',
    given: () => {
      const cd = k1LostAndFenced().withStandby('k3', { uid: 'bbbb' }).withStandby('k2', { uid: 'aaaa' }).build();
      return observe(cd, ['k2', 'k3']);
    },
    expect: { next: { cluster: { status: { master: 'aaaa' } } }, dbs: ['aaaa', 'bbbb'] },
  },
  {
    n: 22,
    title: 'lag exactly at maxStandbyLag: the standby is promoted',
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2', { xLogPos: LSN - MIB }).build();
      return observe(cd, ['k2']);
    },
    expect: { next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2'] },
  },
  {
    n: 23,
    title: 'no eligible candidate: the only standby reports postgres unhealthy (first time, within failInterval)',
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2').build();
      return observe(cd, [keeperInfo('k2', cd, { pgHealthy: false })]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: { cluster: { status: { master: 'db-k1' } }, dbs: { 'db-k2': { spec: { role: 'standby' } } } },
      reasons: ['primary k1 (db db-k1) failed: no eligible standby to promote (k2: unhealthy)'],
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 24,
    title: 'no eligible candidate: the only standby lags one byte past maxStandbyLag',
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2', { xLogPos: LSN - MIB - 1 }).build();
      return observe(cd, ['k2']);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: ['no eligible standby to promote (k2: lags 1048577 bytes behind the primary (maxStandbyLag 1048576))'],
    },
  },
  {
    n: 25,
    title: 'no eligible candidate: the only standby is on another timeline',
    given: () => {
      const cd = aCluster()
        .initialized()
        .withPrimary('k1', { xLogPos: LSN, timeline: 2, keeperHealthy: false, healthy: false })
        .withStandby('k2', { timeline: 1 })
        .fenced(3)
        .build();
      return observe(cd, ['k2']);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: ['no eligible standby to promote (k2: on timeline 1, primary was on 2)'],
    },
  },
  {
    n: 26,
    title: 'no eligible candidate: every standby explained, per keeper',
    given: () => {
      const cd = k1LostAndFenced()
        .withStandby('k2')
        .withStandby('k3', { xLogPos: 0 })
        .withStandby('k4', { canBeMaster: false })
        .withStandby('k5', { generation: 2, currentGeneration: 1 })
        .build();
      return observe(cd, ['k3', 'k4', keeperInfo('k5', cd, { generation: 1 })]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'db-k3', 'db-k4', 'db-k5'],
      reasons: [
        'no eligible standby to promote (k2: unhealthy; k3: lags 5000000 bytes behind the primary (maxStandbyLag 1048576); ' +
          'k4: keeper has canBeMaster=false; k5: not converged (generation 1/2))',
      ],
    },
  },
  {
    n: 27,
    title: 'normal phase with no primary DB at all: asks for manual intervention',
    given: () => observe(aCluster().initialized().withKeeper('k1').build(), ['k1']),
    expect: { dbs: [], reasons: ['no primary db and none can be chosen safely; manual intervention needed'] },
  },

  // --- foreign keepers ------------------------------------------------------------------------
  {
    n: 28,
    title: 'a keeper info carrying another cluster uid is ignored (not added to keepers)',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', 'k2', keeperInfo('k9', cd, { clusterUID: 'other000' })], [proxyInfo('p1', 2)]);
    },
    expect: { keepers: ['k1', 'k2'], dbs: ['db-k1', 'db-k2'], notReasons: ['k9'], changed: false },
  },
  {
    n: 29,
    title: 'initializing, only a keeper of another cluster registered: it is not given the primary DB',
    given: () => {
      const cd = aCluster().build();
      return observe(cd, [keeperInfo('k1', cd, { clusterUID: 'other000' })]);
    },
    expect: { keepers: [], dbs: [], reasons: ['waiting for a healthy keeper'], changed: false },
  },
  {
    n: 30,
    title: 'a known keeper whose info now carries another cluster uid counts as lost',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { clusterUID: 'other000' })], [proxyInfo('p1', 2)]);
    },
    expect: { next: { keepers: { k2: { status: { healthy: false } } } }, reasons: ['keeper k2 lost'] },
  },

  // --- the old primary returns ---------------------------------------------------------------
  {
    n: 31,
    title: 'after failover, the old primary keeper comes back still holding its old DB: it gets a new resync standby DB',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k2').withKeeper('k1', { healthy: false }).routedTo('k2', ['p1'], 4).build();
      return observe(cd, ['k2', keeperInfo('k1', cd, { dbUid: dbOf('k1'), xLogPos: LSN + 100 })], [proxyInfo('p1', 4)]);
    },
    expect: {
      dbs: ['db-k2', 'u1'],
      next: {
        keepers: { k1: { status: { healthy: true } } },
        dbs: {
          u1: { spec: { keeperUID: 'k1', role: 'standby', initMode: 'resync', followConfig: { type: 'internal', dbuid: 'db-k2' } } },
          'db-k2': { spec: { role: 'master', followers: ['u1'] } },
        },
        proxy: { spec: { masterDbUid: 'db-k2' } },
      },
      reasons: ['keeper k1 assigned new standby db u1 following primary db db-k2'],
    },
  },

  // --- forceFail --------------------------------------------------------------------------
  {
    n: 32,
    title: 'forceFail on the primary keeper, no proxies, its postgres still running: told to shut down first, no promotion yet, forceFail kept (see 120)',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1', { forceFail: true }).withStandby('k2').build();
      return observe(cd, ['k1', 'k2']);
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: {
        cluster: { status: { master: 'db-k1' } },
        dbs: { 'db-k1': { generation: 2, spec: { role: 'master', shutdownForSwitchover: true } }, 'db-k2': { spec: { role: 'standby' } } },
        keepers: { k1: { status: { forceFail: true } } },
      },
      reasons: ['keeper k1 forced failed by stolonctl failkeeper', 'its keeper is live and reports postgres running: shutting it down'],
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 33,
    title: 'forceFail on the primary keeper with a live proxy: proxies fenced, forceFail kept until the failover completes',
    given: () => {
      const cd = healthyPair().withPrimary('k1', { forceFail: true }).build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: {
        cluster: { status: { master: 'db-k1' } },
        keepers: { k1: { status: { healthy: false, forceFail: true } } },
        proxy: { generation: 3, spec: { masterDbUid: '' } },
      },
      reasons: ['keeper k1 forced failed', 'fencing proxies with proxy generation 3', 'waiting for proxies p1'],
    },
  },
  {
    n: 34,
    title: 'forceFail on a primary with no eligible standby: nothing to promote, forceFail cleared (one-shot)',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1', { forceFail: true }).build();
      return observe(cd, ['k1']);
    },
    expect: {
      dbs: ['db-k1'],
      reasons: ['no eligible standby to promote'],
      check: (out) => expect(out.next.keepers['k1']?.status).not.toHaveProperty('forceFail'),
    },
  },

  // --- failInterval ------------------------------------------------------------------------
  {
    n: 35,
    title: 'primary postgres reported unhealthy by its live keeper, first time: not failed, error timer started',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { pgHealthy: false }), 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: {
        cluster: { status: { master: 'db-k1' } },
        dbs: { 'db-k1': { status: { healthy: false } } },
        proxy: { generation: 2, spec: { masterDbUid: 'db-k1' } },
      },
      memory: { dbErrorSince: { 'db-k1': 10_000 } },
      reasons: ['primary k1 (db db-k1) reported unhealthy for 0 ms; it is failed after failInterval 6s'],
      notReasons: ['no change', 'fencing'],
      changed: true,
    },
  },
  {
    n: 36,
    title: 'primary postgres unhealthy for exactly failInterval: not failed yet',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { pgHealthy: false }), 'k2'], [proxyInfo('p1', 2)], {
        now: 10_000,
        memory: { dbErrorSince: { 'db-k1': 4_000 }, dbConvergingSince: {} },
      });
    },
    expect: {
      next: { proxy: { generation: 2, spec: { masterDbUid: 'db-k1' } } },
      memory: { dbErrorSince: { 'db-k1': 4_000 } },
      reasons: ['primary k1 (db db-k1) reported unhealthy for 6000 ms'],
      notReasons: ['fencing'],
    },
  },
  {
    n: 37,
    title: 'primary postgres unhealthy for failInterval + 1 ms: failed, proxies fenced',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { pgHealthy: false }), 'k2'], [proxyInfo('p1', 2)], {
        now: 10_000,
        memory: { dbErrorSince: { 'db-k1': 3_999 }, dbConvergingSince: {} },
      });
    },
    expect: {
      next: { proxy: { generation: 3, spec: { masterDbUid: '' } }, cluster: { status: { master: 'db-k1' } } },
      reasons: ['primary k1 (db db-k1) failed: fencing proxies with proxy generation 3'],
    },
  },
  {
    n: 38,
    title: 'primary postgres healthy again: error timer forgotten',
    given: () =>
      observe(healthyPair().build(), ['k1', 'k2'], [proxyInfo('p1', 2)], {
        memory: { dbErrorSince: { 'db-k1': 3_999 }, dbConvergingSince: {} },
      }),
    expect: { memory: { dbErrorSince: {} }, changed: false },
  },

  // --- the fence handshake and vanished proxies ------------------------------------------------
  {
    n: 39,
    title: 'fence pending, p2 vanished from proxyInfos, p1 acknowledged: p2 no longer blocks, k2 promoted',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2').build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3)]);
    },
    expect: { next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2'] },
  },
  {
    n: 40,
    title: 'fence pending, p2 still live on the old generation: promotion waits for p2',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2').build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3), proxyInfo('p2', 2)]);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: ['waiting for proxies p2 to acknowledge fence generation 3 before promoting'],
      notReasons: ['promoting keeper'],
    },
  },

  // --- steady state ------------------------------------------------------------------------
  {
    n: 41,
    title: 'steady state: nothing to do, no write, one "no change" sentence',
    given: () => observe(healthyPair().build(), ['k1', 'k2'], [proxyInfo('p1', 2)]),
    expect: {
      changed: false,
      check: (out, input) => {
        expect(out.reasons).toEqual(['no change: primary k1 (db db-k1) healthy, 1/1 standbys healthy']);
        expect(out.next).toEqual(input.cd);
      },
    },
  },
  {
    n: 42,
    title: 'steady state a minute later: lastHealthyTime refreshed (a write), said so',
    given: () => observe(healthyPair().build(), ['k1', 'k2'], [proxyInfo('p1', 2)], { now: 61_000 }),
    expect: {
      changed: true,
      next: { changeTime: wallAt(61_000), keepers: { k1: { status: { lastHealthyTime: wallAt(61_000) } } } },
      reasons: ['primary k1 (db db-k1) healthy'],
      notReasons: ['no change'],
    },
  },
  // --- initMode existing ------------------------------------------------------------------------
  {
    n: 43,
    title: 'initializing, initMode existing: the keeper named in existingConfig (k2, not the lowest uid) gets the primary DB',
    given: () => observe(aCluster({ spec: EXISTING_SPEC }).build(), ['k1', 'k2']),
    expect: {
      dbs: ['u1'],
      next: {
        cluster: { status: { phase: 'initializing', master: 'u1' } },
        dbs: { u1: { generation: 1, spec: { keeperUID: 'k2', initMode: 'existing', role: 'master', followConfig: null, followers: [] } } },
      },
      reasons: ['initializing: keeper k2 chosen as initial primary (db u1, initMode existing)'],
      check: (out) => {
        expect(out.next.dbs['u1']?.spec).not.toHaveProperty('newConfig');
        expect(out.next.dbs['u1']?.spec).not.toHaveProperty('pitrConfig');
      },
    },
  },
  {
    n: 44,
    title: 'initializing, initMode existing, the named keeper k9 has not registered: waits naming it, no other keeper is chosen',
    given: () => observe(aCluster({ spec: { initMode: 'existing', existingConfig: { keeperUID: 'k9' } } }).build(), ['k1', 'k2']),
    expect: {
      dbs: [],
      keepers: ['k1', 'k2'],
      next: { cluster: { status: { phase: 'initializing', master: '' } } },
      reasons: ['initializing: waiting for keeper k9 (existingConfig.keeperUID) to register'],
      notReasons: ['chosen as initial primary'],
    },
  },
  {
    n: 45,
    title: 'initializing, initMode existing, not converged an hour later: no failure path, still waits',
    given: () => {
      const cd = aCluster({ spec: EXISTING_SPEC }).withPrimary('k2', { initMode: 'existing', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k2', cd, { generation: 0 })], [], {
        now: 3_600_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k2': { generation: 1, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k2'],
      next: { cluster: { status: { phase: 'initializing', master: 'db-k2' } } },
      reasons: ['initializing: waiting for keeper k2 to initialize db db-k2'],
      notReasons: ['choosing again'],
    },
  },

  // --- initMode pitr ---------------------------------------------------------------------------
  {
    n: 46,
    title: 'initializing, initMode pitr: the chosen keeper gets a primary DB with initMode pitr carrying pitrConfig',
    given: () => observe(aCluster({ spec: PITR_SPEC }).build(), ['k1']),
    expect: {
      dbs: ['u1'],
      next: {
        cluster: { status: { master: 'u1' } },
        dbs: { u1: { spec: { keeperUID: 'k1', initMode: 'pitr', role: 'master', followConfig: null } } },
      },
      reasons: ['keeper k1 chosen as initial primary (db u1, initMode pitr)'],
      check: (out) => {
        expect(out.next.dbs['u1']?.spec.pitrConfig).toEqual(PITR_SPEC.pitrConfig);
        expect(out.next.dbs['u1']?.spec).not.toHaveProperty('newConfig');
      },
    },
  },
  {
    n: 47,
    title: 'initializing, pitr restore still running a day later with syncTimeout 0: no init timeout, still waits',
    given: () => {
      const cd = aCluster({ spec: PITR_SPEC }).withPrimary('k1', { initMode: 'pitr', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 0 })], [], {
        now: 86_400_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 1, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k1'],
      next: { cluster: { status: { phase: 'initializing', master: 'db-k1' } }, dbs: { 'db-k1': { generation: 1, spec: { initMode: 'pitr' } } } },
      reasons: ['initializing: waiting for keeper k1 to initialize db db-k1'],
      notReasons: ['choosing again'],
      check: (out) => expect(out.next.dbs['db-k1']?.spec.pitrConfig).toEqual(PITR_SPEC.pitrConfig),
    },
  },
  {
    n: 48,
    title: 'initializing, pitr restore with syncTimeout 10m not done 1 ms past it: DB removed, the reason names syncTimeout',
    given: () => {
      const cd = aCluster({ spec: { ...PITR_SPEC, syncTimeout: '10m' } })
        .withPrimary('k1', { initMode: 'pitr', currentGeneration: 0, healthy: false })
        .build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 0 })], [], {
        now: 600_001,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 1, since: 0 } } },
      });
    },
    expect: {
      dbs: [],
      next: { cluster: { status: { phase: 'initializing', master: '' } } },
      reasons: ['keeper k1 did not initialize db db-k1 within syncTimeout 10m0s; choosing again'],
      notReasons: ['initTimeout'],
    },
  },

  // --- standby clusters (role standby) ---------------------------------------------------------------
  {
    n: 49,
    title: 'initializing a standby cluster (role standby, pitr): the primary DB is role standby following the external primary',
    given: () => observe(aCluster({ spec: STANDBY_SPEC }).build(), ['k1', 'k2']),
    expect: {
      dbs: ['u1'],
      next: {
        cluster: { status: { phase: 'initializing', master: 'u1' } },
        dbs: { u1: { generation: 1, spec: { keeperUID: 'k1', initMode: 'pitr', role: 'standby', followers: [] } } },
      },
      reasons: ['keeper k1 chosen as initial primary (db u1, initMode pitr)'],
      check: (out) => {
        expect(out.next.dbs['u1']?.spec.followConfig).toEqual(EXTERNAL_FOLLOW);
        expect(out.next.dbs['u1']?.spec.pitrConfig).toEqual(STANDBY_SPEC.pitrConfig);
      },
    },
  },
  {
    n: 50,
    title: 'standby cluster, the restored primary DB converged: phase normal, it stays an external follower, pitrConfig dropped',
    given: () => {
      const cd = aCluster({ spec: STANDBY_SPEC }).withPrimary('k1', { initMode: 'pitr', currentGeneration: 0, healthy: false }).build();
      return observe(cd, ['k1']);
    },
    expect: {
      next: {
        cluster: { status: { phase: 'normal', master: 'db-k1' } },
        dbs: { 'db-k1': { generation: 2, spec: { initMode: 'none', role: 'standby' } } },
      },
      reasons: ['initialized: primary k1 (db db-k1) is up; cluster phase normal'],
      check: (out) => {
        expect(out.next.dbs['db-k1']?.spec.followConfig).toEqual(EXTERNAL_FOLLOW);
        expect(out.next.dbs['db-k1']?.spec).not.toHaveProperty('pitrConfig');
      },
    },
  },
  {
    n: 51,
    title: 'standby cluster, steady state: no write, and the primary DB is not counted as a standby',
    given: () => observe(standbyClusterPair().build(), ['k1', 'k2'], [proxyInfo('p1', 2)]),
    expect: {
      changed: false,
      check: (out, input) => {
        expect(out.reasons).toEqual(['no change: primary k1 (db db-k1) healthy, 1/1 standbys healthy']);
        expect(out.next).toEqual(input.cd);
      },
    },
  },
  {
    n: 52,
    title: 'standby cluster, spec role changed to master (stolonctl promote): primary DB becomes role master, followConfig null, generation +1',
    given: () => {
      const cd = standbyClusterPair().build();
      cd.cluster.spec = { ...cd.cluster.spec, role: 'master' };
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: {
        cluster: { status: { master: 'db-k1' } },
        dbs: {
          'db-k1': { generation: 2, spec: { role: 'master', followConfig: null, followers: ['db-k2'] } },
          'db-k2': { generation: 1, spec: { role: 'standby', followConfig: { type: 'internal', dbuid: 'db-k1' } } },
        },
        proxy: { generation: 2, spec: { masterDbUid: 'db-k1' } },
      },
      reasons: ['cluster role is now master: promoting db db-k1 on keeper k1'],
      changed: true,
    },
  },
  {
    n: 53,
    title: 'standby cluster, primary lost: the best standby becomes the new external follower (role standby), not a real primary',
    given: () => {
      const cd = aCluster({ spec: STANDBY_SPEC })
        .initialized()
        .withPrimary('k1', { xLogPos: LSN, keeperHealthy: false, healthy: false })
        .withStandby('k2', { xLogPos: LSN })
        .fenced(3)
        .build();
      return observe(cd, ['k2']);
    },
    expect: {
      dbs: ['db-k2'],
      next: {
        cluster: { status: { master: 'db-k2' } },
        dbs: { 'db-k2': { generation: 2, spec: { role: 'standby', followers: [] } } },
      },
      reasons: ['primary k1 (db db-k1) failed: promoting keeper k2'],
      check: (out) => expect(out.next.dbs['db-k2']?.spec.followConfig).toEqual(EXTERNAL_FOLLOW),
    },
  },

  // --- keeper priority --------------------------------------------------------------------------
  {
    n: 54,
    title: 'failover, two standbys at the same LSN: the higher-priority keeper k3 wins over the lower DB uid',
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2', { xLogPos: LSN }).withStandby('k3', { xLogPos: LSN, priority: 5 }).build();
      return observe(cd, ['k2', 'k3']);
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k3' } }, dbs: { 'db-k3': { spec: { role: 'master' } } } },
      reasons: ['promoting keeper k3'],
    },
  },
  {
    n: 55,
    title: 'failover, standbys at different LSNs: the more advanced k2 wins over the higher-priority k3',
    given: () => {
      const cd = k1LostAndFenced()
        .withStandby('k2', { xLogPos: LSN })
        .withStandby('k3', { xLogPos: LSN - 1_000, priority: 10 })
        .build();
      return observe(cd, ['k2', 'k3']);
    },
    expect: { next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2 (db db-k2, LSN 5000000'] },
  },
  {
    n: 56,
    title: 'initializing, keepers with priorities 1, 5, 5: the initial primary is the highest priority, then the lowest uid (k2)',
    given: () => {
      const cd = aCluster().build();
      return observe(cd, [keeperInfo('k1', cd, { priority: 1 }), keeperInfo('k3', cd, { priority: 5 }), keeperInfo('k2', cd, { priority: 5 })]);
    },
    expect: {
      dbs: ['u1'],
      next: {
        keepers: { k1: { status: { priority: 1 } }, k2: { status: { priority: 5 } }, k3: { status: { priority: 5 } } },
        dbs: { u1: { spec: { keeperUID: 'k2', initMode: 'new' } } },
      },
      reasons: ['keeper k2 chosen as initial primary'],
    },
  },
  {
    n: 57,
    title: 'a registered keeper restarted with another --priority: its keeper status follows',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { priority: 3 })], [proxyInfo('p1', 2)]);
    },
    expect: { next: { keepers: { k2: { status: { priority: 3 } } } }, changed: true },
  },

  // --- reported DB status --------------------------------------------------------------------------
  {
    n: 58,
    title: 'the primary keeper reports parameters pending a restart: copied to the DB status',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { pendingRestart: ['max_connections', 'shared_buffers'] }), 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k1': { generation: 1, status: { pendingRestart: ['max_connections', 'shared_buffers'] } } } },
      changed: true,
      check: (out) => expect(out.next.dbs['db-k2']?.status).not.toHaveProperty('pendingRestart'),
    },
  },
  {
    n: 59,
    title: 'the keeper restarted postgres and reports no pending parameters ([]): pendingRestart removed from the DB status',
    given: () => {
      const cd = healthyPair().withPrimary('k1', { pendingRestart: ['shared_buffers'] }).build();
      return observe(cd, [keeperInfo('k1', cd, { pendingRestart: [] }), 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: { changed: true, check: (out) => expect(out.next.dbs['db-k1']?.status).not.toHaveProperty('pendingRestart') },
  },
  {
    n: 60,
    title: 'a keeper info without a pendingRestart field: pendingRestart removed from the DB status',
    given: () => {
      const cd = healthyPair().withPrimary('k1', { pendingRestart: ['shared_buffers'] }).build();
      const info = keeperInfo('k1', cd);
      delete info.postgresState?.pendingRestart;
      return observe(cd, [info, 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: { changed: true, check: (out) => expect(out.next.dbs['db-k1']?.status).not.toHaveProperty('pendingRestart') },
  },
  {
    n: 61,
    title: 'a keeper reports the WAL range it discarded on rejoin: copied to its DB status',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { discardedWal: DISCARDED })], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k2': { generation: 1, status: { discardedWal: DISCARDED } } } },
      changed: true,
      check: (out) => expect(out.next.dbs['db-k1']?.status).not.toHaveProperty('discardedWal'),
    },
  },
  // --- synchronous replication (Stolon's strict mode; see sync.ts) ------------------------------
  {
    n: 62,
    title: 'sync on, steady: k2 in the spec, known and reported in sync: no change',
    given: () => observe(syncTrio().build(), ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]),
    expect: {
      changed: false,
      next: { dbs: { 'db-k1': { spec: { synchronousReplication: true, synchronousStandbys: ['db-k2'], externalSynchronousStandbys: [] } } } },
      reasons: ['no change: primary k1 (db db-k1) healthy, 2/2 standbys healthy'],
    },
  },
  {
    n: 63,
    title: 'sync turned on in the spec: the best standby (equal LSNs: lower uid k2) becomes the synchronous standby, nothing known yet',
    given: () => {
      const cd = aCluster().initialized().withPrimary('k1', { xLogPos: LSN }).withStandby('k2', { xLogPos: LSN }).withStandby('k3', { xLogPos: LSN }).routedTo('k1', ['p1'], 2).build();
      cd.cluster.spec = SYNC_SPEC;
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: {
        dbs: {
          'db-k1': {
            generation: 2,
            spec: { synchronousReplication: true, synchronousStandbys: ['db-k2'], externalSynchronousStandbys: [] },
            status: { synchronousStandbys: [] },
          },
          'db-k2': { generation: 1, spec: { synchronousReplication: false, synchronousStandbys: [] } },
        },
      },
      reasons: ['synchronous replication on for primary k1 (db db-k1)', 'synchronous standbys of primary k1 (db db-k1) now [db-k2] (were [])'],
      changed: true,
    },
  },
  {
    n: 64,
    title: 'sync on, no synchronous standby yet: the most advanced standby k3 is chosen',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, []).withStandby('k3', { xLogPos: LSN + 100 }).build();
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] } } } } },
  },
  {
    n: 65,
    title: 'sync on, the most advanced standby k2 has canBeSynchronousReplica=false: k3 is chosen',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, []).withStandby('k2', { xLogPos: LSN + 100, canBeSynchronousReplica: false }).build();
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { next: { dbs: { 'db-k1': { spec: { synchronousStandbys: ['db-k3'] } } } } },
  },
  {
    n: 66,
    title: 'sync on, no standby can be synchronous (k2 canBeSynchronousReplica=false, k3 lost): the fake standby blocks commits (strict mode)',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, []).withStandby('k2', { canBeSynchronousReplica: false }).build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousReplication: true, synchronousStandbys: [], externalSynchronousStandbys: [FAKE] } } } },
      reasons: [
        `only 0 synchronous standby(s) available for primary k1 (db db-k1), minSynchronousStandbys is 1: adding ${FAKE}, commits block until enough standbys are in sync (keepers with canBeSynchronousReplica=false: k2)`,
      ],
    },
  },
  {
    n: 67,
    title: 'sync on, the fake standby listed and k2 becomes good: k2 chosen, the fake standby removed',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, []).build();
      const m = cd.dbs['db-k1']!;
      m.spec.externalSynchronousStandbys = [FAKE];
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k2'], externalSynchronousStandbys: [] } } } },
      reasons: ['now [db-k2] (were [])', `has enough synchronous standbys again: ${FAKE} removed`],
    },
  },
  {
    n: 68,
    title: 'sync on, k2 in the spec but not yet reported in sync: wait, change nothing',
    given: () => observe(syncTrio(SYNC_SPEC, ['db-k2'], []).build(), ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]),
    expect: {
      changed: false,
      next: { dbs: { 'db-k1': { generation: 1, spec: { synchronousStandbys: ['db-k2'] }, status: { synchronousStandbys: [] } } } },
      reasons: ['waiting for synchronous standbys [db-k2] of primary k1 (db db-k1) to be reported in sync (known in sync: [])'],
    },
  },
  {
    n: 69,
    title: 'sync on, k1 reports k2 in sync: k2 becomes known in sync (a status change only, no generation bump)',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2'], []).build();
      return observe(cd, [keeperInfo('k1', cd, { syncStandbys: ['db-k2'] }), 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      changed: true,
      next: { dbs: { 'db-k1': { generation: 1, spec: { synchronousStandbys: ['db-k2'] }, status: { synchronousStandbys: ['db-k2'] } } } },
      notReasons: ['waiting for synchronous standbys'],
    },
  },
  {
    n: 70,
    title: 'sync on, a reported standby outside the spec (k3) is not learnt as known',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2'], []).build();
      return observe(cd, [keeperInfo('k1', cd, { syncStandbys: ['db-k3'] }), 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { changed: false, next: { dbs: { 'db-k1': { status: { synchronousStandbys: [] } } } }, reasons: ['waiting for synchronous standbys [db-k2]'] },
  },
  {
    n: 71,
    title: 'sync on, k2 pending and its keeper lost before it was in sync: the change is abandoned and k3 chosen instead',
    given: () => observe(syncTrio(SYNC_SPEC, ['db-k2'], []).build(), ['k1', 'k3'], [proxyInfo('p1', 2)]),
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: [] } } } },
      reasons: [
        'synchronous standbys [db-k2] of primary k1 (db db-k1) failed or were removed before being in sync: expecting only the known in-sync ones []',
        'synchronous standbys of primary k1 (db db-k1) now [db-k3] (were [])',
      ],
    },
  },
  {
    n: 72,
    title: 'sync on, the known synchronous standby k2 fails: k3 added and k2 kept (old ∪ new) until k3 is known in sync',
    given: () => observe(syncTrio().build(), ['k1', 'k3'], [proxyInfo('p1', 2)]),
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k2', 'db-k3'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: ['db-k2'] } } } },
      reasons: ['synchronous standbys of primary k1 (db db-k1) now [db-k2, db-k3] (were [db-k2])'],
    },
  },
  {
    n: 73,
    title: 'sync on, after 72: k3 reported in sync, so all are known; failed k2 dropped, k3 alone remains',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2', 'db-k3'], ['db-k2']).build();
      return observe(cd, [keeperInfo('k1', cd, { syncStandbys: ['db-k3'] }), 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k3'] }, status: { synchronousStandbys: ['db-k3'] } } } },
      reasons: ['now [db-k3] (were [db-k2, db-k3])'],
    },
  },
  {
    n: 130,
    title: 'sync on, after 72: k3 reported in sync but behind the primary\'s WAL position of that report: not known yet (it may lack commits only k2 acknowledged); the position is remembered',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2', 'db-k3'], ['db-k2']).build();
      return observe(cd, [keeperInfo('k1', cd, { syncStandbys: ['db-k3'] }), keeperInfo('k3', cd, { xLogPos: LSN - 1000 })], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k1': { spec: { synchronousStandbys: ['db-k2', 'db-k3'] }, status: { synchronousStandbys: ['db-k2'] } } } },
      memory: { syncCatchUp: { 'db-k3': { primaryUid: 'db-k1', lsn: LSN } } },
      reasons: [
        `synchronous standby db db-k3 is reported in sync by primary k1 but not yet known in sync: it must reach the primary's WAL position ${LSN} when it was first reported (it reports ${LSN - 1000})`,
        'waiting for synchronous standbys [db-k3]',
      ],
    },
  },
  {
    n: 131,
    title: 'sync on, after 130: k3 reached the remembered position (the primary moved on since): known in sync, failed k2 dropped',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2', 'db-k3'], ['db-k2']).build();
      return observe(
        cd,
        [keeperInfo('k1', cd, { syncStandbys: ['db-k3'], xLogPos: LSN + 50_000 }), keeperInfo('k3', cd, { xLogPos: LSN })],
        [proxyInfo('p1', 2)],
        { memory: { ...emptyMemory(), syncCatchUp: { 'db-k3': { primaryUid: 'db-k1', lsn: LSN } } } },
      );
    },
    expect: {
      next: { dbs: { 'db-k1': { spec: { synchronousStandbys: ['db-k3'] }, status: { synchronousStandbys: ['db-k3'] } } } },
      reasons: ['now [db-k3] (were [db-k2, db-k3])'],
      check: (out) => expect(out.memory.syncCatchUp).toBeUndefined(),
    },
  },
  {
    n: 74,
    title: 'sync on, the only synchronous standby k2 fails and no other is good: k2 stays listed (re-added up to min), no fake standby',
    given: () => {
      const cd = aCluster({ spec: SYNC_SPEC })
        .initialized()
        .withPrimary('k1', { xLogPos: LSN, synchronousStandbys: ['db-k2'], knownSynchronousStandbys: ['db-k2'] })
        .withStandby('k2', { xLogPos: LSN })
        .routedTo('k1', ['p1'], 2)
        .build();
      return observe(cd, ['k1'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: { dbs: { 'db-k1': { generation: 1, spec: { synchronousStandbys: ['db-k2'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: ['db-k2'] } } } },
      notReasons: ['synchronous standbys of primary', FAKE],
    },
  },
  {
    n: 75,
    title: 'sync on, maxSynchronousStandbys 2 and k3 good: k3 added next to k2',
    given: () => observe(syncTrio(SYNC2_SPEC).build(), ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]),
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k2', 'db-k3'] }, status: { synchronousStandbys: ['db-k2'] } } } },
      reasons: ['now [db-k2, db-k3] (were [db-k2])'],
    },
  },
  {
    n: 76,
    title: 'sync on, maxSynchronousStandbys lowered from 2 to 1: the surplus is dropped, keeping the most advanced (k3)',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2', 'db-k3']).withStandby('k3', { xLogPos: LSN + 100 }).build();
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k1': { generation: 2, spec: { synchronousStandbys: ['db-k3'] }, status: { synchronousStandbys: ['db-k3'] } } } },
      reasons: ['now [db-k3] (were [db-k2, db-k3])'],
    },
  },
  {
    n: 77,
    title: 'sync turned off in the spec: every synchronous list of the primary is cleared',
    given: () => {
      const cd = syncTrio().build();
      cd.cluster.spec = MINIMAL_SPEC;
      cd.dbs['db-k1']!.spec.externalSynchronousStandbys = [FAKE];
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: {
        dbs: {
          'db-k1': { generation: 2, spec: { synchronousReplication: false, synchronousStandbys: [], externalSynchronousStandbys: [] }, status: { synchronousStandbys: [] } },
        },
      },
      reasons: ['synchronous replication off: primary k1 (db db-k1) no longer waits for standbys'],
    },
  },
  {
    n: 78,
    title: 'sync on, a standby DB carrying synchronous settings (a former primary\'s): they are cleared',
    given: () => {
      const cd = syncTrio().build();
      cd.dbs['db-k3']!.spec.synchronousReplication = true;
      cd.dbs['db-k3']!.spec.synchronousStandbys = ['db-k1'];
      cd.dbs['db-k3']!.status.synchronousStandbys = ['db-k1'];
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: { dbs: { 'db-k3': { generation: 2, spec: { synchronousReplication: false, synchronousStandbys: [] }, status: { synchronousStandbys: [] } } } },
    },
  },
  {
    n: 79,
    title: 'sync on in a standby cluster: never used, the external follower gets no synchronous settings',
    given: () => {
      const cd = standbyClusterPair().build();
      cd.cluster.spec = { ...cd.cluster.spec, synchronousReplication: true };
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: { changed: false, next: { dbs: { 'db-k1': { spec: { synchronousReplication: false, synchronousStandbys: [], externalSynchronousStandbys: [] } } } } },
  },
  {
    n: 80,
    title: 'sync on, enough good standbys (maxStandbysPerSender 2): the failed synchronous standby k2 is kept, another failed one removed',
    given: () => {
      const spec: ClusterSpec = { ...SYNC_SPEC, maxStandbysPerSender: 2 };
      const cd = syncTrio(spec).withStandby('k4', { xLogPos: LSN }).withStandby('k5', { xLogPos: LSN }).build();
      return observe(cd, ['k1', 'k3', 'k4'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'db-k3', 'db-k4'],
      next: { dbs: { 'db-k1': { spec: { synchronousStandbys: ['db-k2', 'db-k3'] } } } },
      reasons: ['removing failed standby db db-k5'],
      notReasons: ['removing failed standby db db-k2'],
    },
  },
  {
    n: 81,
    title: 'sync on, the primary\'s keeper reports another DB\'s state: nothing is learnt from it',
    given: () => {
      const cd = syncTrio(SYNC_SPEC, ['db-k2'], []).build();
      return observe(cd, [keeperInfo('k1', cd, { syncStandbys: ['db-k2'], dbUid: 'other' }), 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { next: { dbs: { 'db-k1': { status: { synchronousStandbys: [] } } } } },
  },
  // failover with synchronous replication
  {
    n: 82,
    title: 'sync on, primary lost: the known synchronous standby k3 is promoted over the more advanced asynchronous k2',
    given: () => {
      const cd = syncPrimaryLost(['db-k3']).withStandby('k2', { xLogPos: LSN + 1_000 }).withStandby('k3', { xLogPos: LSN - 1_000 }).build();
      return observe(cd, ['k2', 'k3']);
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: {
        cluster: { status: { master: 'db-k3' } },
        dbs: {
          'db-k3': {
            spec: { role: 'master', synchronousReplication: true, synchronousStandbys: ['db-k2'], externalSynchronousStandbys: [] },
            status: { synchronousStandbys: [] },
          },
          'db-k2': { spec: { role: 'standby', followConfig: { type: 'internal', dbuid: 'db-k3' } } },
        },
      },
      reasons: ['primary k1 (db db-k1) failed: promoting keeper k3', 'new primary db db-k3 waits for synchronous standbys [db-k2] from the start'],
    },
  },
  {
    n: 83,
    title: 'sync on, primary lost, its only known synchronous standby k2 is down too: no promotion, the reason says why',
    given: () => {
      const cd = syncPrimaryLost(['db-k2']).withStandby('k2', { xLogPos: LSN, healthy: false, keeperHealthy: false }).withStandby('k3', { xLogPos: LSN }).build();
      return observe(cd, ['k3']);
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k1' } }, dbs: { 'db-k3': { spec: { role: 'standby' } } } },
      reasons: [`no eligible standby to promote (k2: unhealthy; k3: not a synchronous standby known to be in sync); ${SYNC_ONLY_REASON} (known in sync: [db-k2])`],
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 84,
    title: 'sync on, primary lost, k2 in the spec but never reported in sync: no promotion',
    given: () => {
      const cd = syncPrimaryLost(['db-k2'], []).withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, ['k2']);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: [`(k2: not a synchronous standby known to be in sync); ${SYNC_ONLY_REASON} (known in sync: [])`],
    },
  },
  {
    n: 85,
    title: 'sync on, primary lost, the known synchronous standby lags past maxStandbyLag: promoted anyway (it has every acknowledged commit)',
    given: () => {
      const cd = syncPrimaryLost(['db-k2']).withStandby('k2', { xLogPos: LSN - 10 * MIB }).build();
      return observe(cd, ['k2']);
    },
    expect: { next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2'] },
  },
  {
    n: 86,
    title: 'sync on with two synchronous standbys, primary lost: the more advanced k3 wins; its list is k2, the one standby left (Stolon: k2 plus the old primary, which blocks commits until a later pass drops it)',
    given: () => {
      const cd = syncPrimaryLost(['db-k2', 'db-k3'], ['db-k2', 'db-k3'], SYNC2_SPEC)
        .withStandby('k2', { xLogPos: LSN })
        .withStandby('k3', { xLogPos: LSN + 10 })
        .build();
      return observe(cd, ['k2', 'k3']);
    },
    expect: {
      next: {
        cluster: { status: { master: 'db-k3' } },
        dbs: { 'db-k3': { spec: { synchronousReplication: true, synchronousStandbys: ['db-k2'], externalSynchronousStandbys: [] } } },
      },
    },
  },
  {
    n: 87,
    title: 'sync on, primary lost with only the fake standby known: no promotion',
    given: () => {
      const cd = syncPrimaryLost([]).withStandby('k2', { xLogPos: LSN }).build();
      cd.dbs['db-k1']!.spec.externalSynchronousStandbys = [FAKE];
      return observe(cd, ['k2']);
    },
    expect: { next: { cluster: { status: { master: 'db-k1' } } }, reasons: [SYNC_ONLY_REASON] },
  },
  {
    n: 88,
    title: 'sync on, the new primary converged: the old primary\'s entry (deleted) is dropped and k3, on its timeline, chosen',
    given: () => {
      const cd = aCluster({ spec: SYNC_SPEC })
        .initialized()
        .withPrimary('k2', { xLogPos: LSN, timeline: 2, synchronousStandbys: ['db-k1'] })
        .withStandby('k3', { xLogPos: LSN, timeline: 2 })
        .fenced(3)
        .build();
      return observe(cd, ['k2', 'k3'], [proxyInfo('p1', 3)]);
    },
    expect: {
      next: {
        proxy: { spec: { masterDbUid: 'db-k2' } },
        dbs: { 'db-k2': { spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: [] } } },
      },
      reasons: ['synchronous standbys [db-k1] of primary k2 (db db-k2) failed or were removed', 'now [db-k3] (were [])'],
    },
  },
  {
    n: 89,
    title: 'sync on, the new primary converged but its standby is still on the old timeline: the fake standby until it follows',
    given: () => {
      const cd = aCluster({ spec: SYNC_SPEC })
        .initialized()
        .withPrimary('k2', { xLogPos: LSN, timeline: 2, synchronousStandbys: ['db-k1'] })
        .withStandby('k3', { xLogPos: LSN, timeline: 1 })
        .fenced(3)
        .build();
      return observe(cd, ['k2', 'k3'], [proxyInfo('p1', 3)]);
    },
    expect: { next: { dbs: { 'db-k2': { spec: { synchronousStandbys: [], externalSynchronousStandbys: [FAKE] } } } } },
  },
  {
    n: 158,
    title: 'sync on, the new primary converged and waits for k3 from its promotion; k3, re-pointed, is still converging: kept, no fake standby, nothing written',
    given: () => {
      const cd = aCluster({ spec: SYNC_SPEC })
        .initialized()
        .withPrimary('k2', { xLogPos: LSN, timeline: 2, synchronousStandbys: ['db-k3'] })
        .withStandby('k3', { xLogPos: LSN, timeline: 1, generation: 2, currentGeneration: 1 })
        .routedTo('k2', ['p1'], 4)
        .build();
      return observe(cd, ['k2', 'k3'], [proxyInfo('p1', 4)]);
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { dbs: { 'db-k2': { spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: [] } } } },
      reasons: ['waiting for synchronous standbys [db-k3] of primary k2 (db db-k2) to be reported in sync'],
      notReasons: ['failed or were removed', `adding ${FAKE}`],
    },
  },
  {
    n: 159,
    title: 'as 158, but k3\'s keeper is lost: the pending entry is abandoned and commits block on the fake standby',
    given: () => {
      const cd = aCluster({ spec: SYNC_SPEC })
        .initialized()
        .withPrimary('k2', { xLogPos: LSN, timeline: 2, synchronousStandbys: ['db-k3'] })
        .withStandby('k3', { xLogPos: LSN, timeline: 1, generation: 2, currentGeneration: 1, keeperHealthy: false })
        .routedTo('k2', ['p1'], 4)
        .build();
      return observe(cd, ['k2'], [proxyInfo('p1', 4)]);
    },
    expect: {
      next: { dbs: { 'db-k2': { spec: { synchronousStandbys: [], externalSynchronousStandbys: [FAKE] } } } },
      reasons: ['synchronous standbys [db-k3] of primary k2 (db db-k2) failed or were removed before being in sync', `adding ${FAKE}`],
    },
  },
  {
    n: 160,
    title: 'as 158, but k2 already knows k3 in sync while k3 applies another generation: nothing is abandoned (known = spec)',
    given: () => {
      const cd = aCluster({ spec: SYNC_SPEC })
        .initialized()
        .withPrimary('k2', { xLogPos: LSN, timeline: 2, synchronousStandbys: ['db-k3'], knownSynchronousStandbys: ['db-k3'] })
        .withStandby('k3', { xLogPos: LSN, timeline: 2, generation: 3, currentGeneration: 2 })
        .routedTo('k2', ['p1'], 4)
        .build();
      return observe(cd, ['k2', 'k3'], [proxyInfo('p1', 4)]);
    },
    expect: { next: { dbs: { 'db-k2': { spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: ['db-k3'] } } } } },
  },
  {
    n: 161,
    title: 'sync on, primary lost, 4 keepers: k3 (known in sync) promoted; it waits for the old sync list\'s survivors first, then the most advanced, up to maxSynchronousStandbys; every standby follows it in the same write',
    given: () => {
      const cd = syncPrimaryLost(['db-k3', 'db-k4'], ['db-k3', 'db-k4'], SYNC2_SPEC)
        .withStandby('k2', { xLogPos: LSN + 500 })
        .withStandby('k3', { xLogPos: LSN + 10 })
        .withStandby('k4', { xLogPos: LSN })
        .build();
      return observe(cd, ['k2', 'k3', 'k4']);
    },
    expect: {
      dbs: ['db-k2', 'db-k3', 'db-k4'],
      next: {
        cluster: { status: { master: 'db-k3' } },
        dbs: {
          'db-k3': { spec: { synchronousStandbys: ['db-k2', 'db-k4'], externalSynchronousStandbys: [], followers: ['db-k2', 'db-k4'] } },
          'db-k2': { spec: { followConfig: { type: 'internal', dbuid: 'db-k3' } } },
          'db-k4': { spec: { followConfig: { type: 'internal', dbuid: 'db-k3' } } },
        },
      },
    },
  },
  {
    n: 162,
    title: 'sync on, primary lost, the other standby k2 is down (keeper lost too): the new primary waits for the old primary\'s entry as before (Stolon), never for a down standby',
    given: () => {
      const cd = syncPrimaryLost(['db-k3']).withStandby('k2', { xLogPos: LSN, healthy: false, keeperHealthy: false }).withStandby('k3', { xLogPos: LSN }).build();
      return observe(cd, ['k3']);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k3' } }, dbs: { 'db-k3': { spec: { synchronousStandbys: ['db-k1'], externalSynchronousStandbys: [] } } } },
      reasons: ['new primary db db-k3 waits for synchronous standbys [db-k1] until the sentinel picks standbys of its own'],
    },
  },

  // --- dead keeper removal (deadKeeperRemovalInterval, default 48h) ------------------------
  {
    n: 90,
    title: 'a keeper with no DB, unhealthy for 48h + 1 ms: removed from clusterdata',
    given: () => observe(healthyPair().withKeeper('k3', { healthy: false, lastHealthyTime: wallAt(10_000 - DAY2 - 1) }).build(), ['k1', 'k2'], [proxyInfo('p1', 2)]),
    expect: { keepers: ['k1', 'k2'], reasons: ['removed dead keeper k3: no DB and not healthy since', 'deadKeeperRemovalInterval 48h'], changed: true },
  },
  {
    n: 91,
    title: 'a keeper with no DB, unhealthy for exactly 48h: kept',
    given: () => observe(healthyPair().withKeeper('k3', { healthy: false, lastHealthyTime: wallAt(10_000 - DAY2) }).build(), ['k1', 'k2'], [proxyInfo('p1', 2)]),
    expect: { keepers: ['k1', 'k2', 'k3'], notReasons: ['removed dead keeper'], changed: false },
  },
  {
    n: 92,
    title: 'a dead keeper that still owns a standby DB: kept, however long it has been down',
    given: () =>
      observe(
        healthyPair().withStandby('k3', { keeperHealthy: false, healthy: false }).withKeeper('k3', { lastHealthyTime: wallAt(10_000 - 3 * DAY2) }).build(),
        ['k1', 'k2'],
        [proxyInfo('p1', 2)],
      ),
    expect: { keepers: ['k1', 'k2', 'k3'], dbs: ['db-k1', 'db-k2', 'db-k3'], notReasons: ['removed dead keeper'] },
  },
  {
    n: 93,
    title: 'a healthy keeper (lastHealthyTime refreshed once a minute) is lost: lastHealthyTime pinned to this pass, so removal counts from the loss',
    given: () => observe(healthyPair().withKeeper('k3', { lastHealthyTime: wallAt(10_000 - 59_000) }).build(), ['k1', 'k2'], [proxyInfo('p1', 2)]),
    expect: {
      keepers: ['k1', 'k2', 'k3'],
      next: { keepers: { k3: { status: { healthy: false, lastHealthyTime: wallAt(10_000) } } } },
      reasons: ['keeper k3 lost: its info lease expired'],
    },
  },
  {
    n: 94,
    title: 'paused: a keeper with no DB dead for 3 days is not removed',
    given: () =>
      observe(
        aCluster({ spec: { ...MINIMAL_SPEC, paused: true } })
          .initialized()
          .withPrimary('k1', { xLogPos: LSN })
          .withKeeper('k3', { healthy: false, lastHealthyTime: wallAt(10_000 - 3 * DAY2) })
          .routedTo('k1', ['p1'], 2)
          .build(),
        ['k1'],
        [proxyInfo('p1', 2)],
      ),
    expect: { keepers: ['k1', 'k3'], notReasons: ['removed dead keeper'] },
  },
  {
    n: 95,
    title: 'deadKeeperRemovalInterval 10s: a keeper with no DB down for 10.001 s is removed',
    given: () =>
      observe(
        aCluster({ spec: { ...MINIMAL_SPEC, deadKeeperRemovalInterval: '10s' } })
          .initialized()
          .withPrimary('k1', { xLogPos: LSN })
          .withKeeper('k3', { healthy: false, lastHealthyTime: wallAt(10_000 - 10_001) })
          .routedTo('k1', ['p1'], 2)
          .build(),
        ['k1'],
        [proxyInfo('p1', 2)],
      ),
    expect: { keepers: ['k1'], reasons: ['deadKeeperRemovalInterval 10s'] },
  },

  // --- the rest of Stolon's TestUpdateCluster (cases numbered there in `stolon`) -------------
  {
    n: 96,
    title: 'after a failover the new primary k2 converged and k1 is a free keeper: k1 gets a resync standby following k2, proxies routed',
    stolon: [6],
    given: () => {
      const cd = aCluster().initialized().withPrimary('k2', { xLogPos: LSN, timeline: 2 }).withKeeper('k1').fenced(3).build();
      return observe(cd, ['k1', 'k2']);
    },
    expect: {
      dbs: ['db-k2', 'u1'],
      next: {
        cluster: { status: { master: 'db-k2' } },
        dbs: {
          u1: { spec: { keeperUID: 'k1', role: 'standby', initMode: 'resync', followConfig: { type: 'internal', dbuid: 'db-k2' } } },
          'db-k2': { spec: { role: 'master', followers: ['u1'] } },
        },
        proxy: { generation: 4, spec: { masterDbUid: 'db-k2' } },
      },
      reasons: ['keeper k1 assigned new standby db u1 following primary db db-k2', 'routing proxies [] to primary k2 (db db-k2)'],
    },
  },
  {
    n: 97,
    title: 'primary lost, the only standby has not converged to its generation: not a candidate, nothing promoted',
    stolon: [7],
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2', { xLogPos: LSN, generation: 2, currentGeneration: 1 }).build();
      return observe(cd, [keeperInfo('k2', cd, { generation: 1 })]);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      dbs: ['db-k1', 'db-k2'],
      reasons: ['no eligible standby to promote (k2: not converged (generation 1/2))'],
    },
  },
  {
    n: 98,
    title: 'primary healthy but not converged 1 ms past convergenceTimeout (30s): failed, its keeper live and postgres running, so it is told to shut down before the standby is promoted',
    stolon: [8],
    given: () => {
      const cd = aCluster()
        .initialized()
        .withPrimary('k1', { xLogPos: LSN, generation: 2, currentGeneration: 1 })
        .withStandby('k2', { xLogPos: LSN })
        .routedTo('k1', [], 2)
        .build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 1 }), 'k2'], [], {
        now: 30_001,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 2, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: {
        cluster: { status: { master: 'db-k1', failover: { cause: 'db db-k1 did not converge within convergenceTimeout' } } },
        dbs: { 'db-k1': { generation: 3, spec: { shutdownForSwitchover: true } }, 'db-k2': { spec: { role: 'standby' } } },
        proxy: { generation: 3, spec: { masterDbUid: '' } },
      },
      reasons: ['shutting it down before promoting a standby'],
      notReasons: ['promoting keeper k2'],
    },
  },
  {
    n: 99,
    title: 'maxStandbysPerSender 1, the standby k2 did not converge to a later generation within convergenceTimeout: free keeper k3 gets a new standby, k2 kept for now',
    stolon: [10],
    given: () => {
      const cd = aCluster({ spec: { ...MINIMAL_SPEC, maxStandbysPerSender: 1 } })
        .initialized()
        .withPrimary('k1', { xLogPos: LSN })
        .withStandby('k2', { xLogPos: LSN, generation: 2, currentGeneration: 1 })
        .withKeeper('k3')
        .routedTo('k1', ['p1'], 2)
        .build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { generation: 1 }), 'k3'], [proxyInfo('p1', 2)], {
        now: 40_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k2': { generation: 2, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'u1'],
      next: {
        dbs: {
          u1: { spec: { keeperUID: 'k3', initMode: 'resync', followConfig: { type: 'internal', dbuid: 'db-k1' } } },
          'db-k1': { spec: { followers: ['db-k2', 'u1'] } },
        },
      },
      reasons: ['keeper k3 assigned new standby db u1'],
    },
  },
  {
    n: 100,
    title: 'maxStandbysPerSender 1, after 99: the new standby on k3 converged, so the failed standby k2 is removed',
    stolon: [11],
    given: () => {
      const cd = aCluster({ spec: { ...MINIMAL_SPEC, maxStandbysPerSender: 1 } })
        .initialized()
        .withPrimary('k1', { xLogPos: LSN })
        .withStandby('k2', { xLogPos: LSN, generation: 2, currentGeneration: 1 })
        .withStandby('k3', { xLogPos: LSN })
        .routedTo('k1', ['p1'], 2)
        .build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { generation: 1 }), 'k3'], [proxyInfo('p1', 2)], {
        now: 40_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k2': { generation: 2, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k1', 'db-k3'],
      keepers: ['k1', 'k2', 'k3'],
      next: { dbs: { 'db-k1': { spec: { followers: ['db-k3'] } } } },
      reasons: ['removing failed standby db db-k2 of keeper k2: enough good standbys'],
    },
  },
  {
    n: 101,
    title: 'a standby still cloning (resync, first generation) with syncTimeout 0 keeps its place however long it takes: no extra standby',
    given: () => {
      const cd = aCluster({ spec: { ...MINIMAL_SPEC, maxStandbysPerSender: 1 } })
        .initialized()
        .withPrimary('k1', { xLogPos: LSN })
        .withStandby('k2', { initMode: 'resync', generation: 1, currentGeneration: 0, healthy: false })
        .withKeeper('k3')
        .routedTo('k1', ['p1'], 2)
        .build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { generation: 0, pgHealthy: false }), 'k3'], [proxyInfo('p1', 2)], {
        now: 3_600_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k2': { generation: 1, since: 0 } } },
      });
    },
    expect: { dbs: ['db-k1', 'db-k2'], notReasons: ['assigned new standby'] },
  },
  {
    n: 102,
    title: 'cluster-wide settings changed in the spec (requestTimeout, maxStandbys, additionalWalSenders, usePgrewind, pgParameters): copied into every DB spec, generations bumped',
    stolon: [14],
    given: () => {
      const cd = healthyPair().build();
      cd.cluster.spec = {
        ...MINIMAL_SPEC,
        requestTimeout: '1500ms',
        maxStandbys: 40,
        additionalWalSenders: 10,
        usePgrewind: true,
        pgParameters: { param01: 'value01', param02: 'value02' },
      };
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: {
        dbs: {
          'db-k1': {
            generation: 2,
            spec: { requestTimeout: '1.5s', maxStandbys: 40, additionalWalSenders: 10, usePgrewind: true, pgParameters: { param01: 'value01', param02: 'value02' } },
          },
          'db-k2': {
            generation: 2,
            spec: { requestTimeout: '1.5s', maxStandbys: 40, additionalWalSenders: 10, usePgrewind: true, pgParameters: { param01: 'value01', param02: 'value02' } },
          },
        },
      },
      changed: true,
    },
  },
  {
    n: 103,
    title: 'sync just turned on in the spec, the primary (never synchronous) lost: the async rule applies, k2 promoted with the fake standby until it has one',
    stolon: [15, 16],
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2', { xLogPos: LSN }).build();
      cd.cluster.spec = SYNC_SPEC;
      return observe(cd, ['k2']);
    },
    expect: {
      dbs: ['db-k2'],
      next: {
        cluster: { status: { master: 'db-k2' } },
        dbs: { 'db-k2': { spec: { role: 'master', synchronousReplication: true, synchronousStandbys: [], externalSynchronousStandbys: [FAKE] } } },
      },
      reasons: ['promoting keeper k2'],
    },
  },
  {
    n: 104,
    title: 'sync on, primary lost: the known synchronous standby k3 (spec [k3], known [k2, k3], k2 down) is promoted; the election is limited to spec ∩ known',
    stolon: [24],
    given: () => {
      const cd = syncPrimaryLost(['db-k3'], ['db-k2', 'db-k3'])
        .withStandby('k2', { xLogPos: LSN + 1_000, healthy: false })
        .withStandby('k3', { xLogPos: LSN })
        .build();
      return observe(cd, [keeperInfo('k2', cd, { pgHealthy: false }), 'k3']);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k3' } }, dbs: { 'db-k3': { spec: { role: 'master', synchronousStandbys: ['db-k1'] } } } },
      reasons: ['promoting keeper k3'],
    },
  },
  {
    n: 105,
    title: 'sync on, primary lost, the only known synchronous standby k2 has canBeMaster=false: nothing promoted',
    stolon: [27],
    given: () => {
      const cd = syncPrimaryLost(['db-k2']).withStandby('k2', { xLogPos: LSN, canBeMaster: false }).build();
      return observe(cd, ['k2']);
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: ['k2: keeper has canBeMaster=false'],
    },
  },
  {
    n: 106,
    title: 'a standby keeper with a higher --priority than the healthy primary\'s: NO automatic switchover (Stolon switches; use stolonctl switchover)',
    stolon: [28],
    given: () => {
      const cd = aCluster()
        .initialized()
        .withPrimary('k1', { xLogPos: LSN })
        .withStandby('k2', { xLogPos: LSN, priority: 1 })
        .routedTo('k1', ['p1'], 2)
        .build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: { next: { cluster: { status: { master: 'db-k1' } } }, changed: false },
  },

  // --- a keeper that cannot start its postgres (startError) ---------------------------------
  {
    n: 107,
    title: 'the primary keeper reports postgres could not be started, first report: failed at once (no failInterval wait), proxies fenced, the cause names the error',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { pgHealthy: false, startError: 'could not bind: Address in use' }), 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: {
      next: {
        proxy: { generation: 3, spec: { masterDbUid: '' } },
        cluster: { status: { failover: { cause: 'postgres of keeper k1 cannot be started: could not bind: Address in use' } } },
      },
      reasons: ['fencing proxies with proxy generation 3'],
    },
  },
  {
    n: 108,
    title: 'a startError reported while postgres is healthy again is ignored (stale): no failover',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { startError: 'old' }), 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: { changed: false, next: { proxy: { generation: 2 } } },
  },
  {
    n: 109,
    title: 'primary lost, the only standby reports a startError: not a candidate',
    given: () => {
      const cd = k1LostAndFenced().withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, [keeperInfo('k2', cd, { pgHealthy: false, startError: 'disk full' })]);
    },
    expect: { next: { cluster: { status: { master: 'db-k1' } } }, reasons: ['k2: unhealthy'] },
  },

  // --- a keeper that fails to initialise is not picked again first ----------------------------
  {
    n: 110,
    title: 'initializing, k1 failed initTimeout once (memory): the next initial primary is k2, not the lowest uid again',
    given: () => observe(aCluster().withKeeper('k1').withKeeper('k2').build(), ['k1', 'k2'], [], {
      memory: { dbErrorSince: {}, dbConvergingSince: {}, initFailures: { k1: 1 } },
    }),
    expect: {
      next: { cluster: { status: { master: 'u1' } }, dbs: { u1: { spec: { keeperUID: 'k2', initMode: 'new' } } } },
      memory: { initFailures: { k1: 1 } },
    },
  },
  {
    n: 111,
    title: 'initializing, not initialized 1 ms past initTimeout: the failure is remembered against k1',
    given: () => {
      const cd = aCluster().withKeeper('k2').withPrimary('k1', { initMode: 'new', currentGeneration: 0, healthy: false }).build();
      return observe(cd, [keeperInfo('k1', cd, { generation: 0 }), 'k2'], [], {
        now: 300_001,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 1, since: 0 } } },
      });
    },
    expect: { dbs: [], memory: { initFailures: { k1: 1 } } },
  },
  {
    n: 112,
    title: 'initializing, every keeper failed once: back to the usual order (priority, then lowest uid)',
    given: () => observe(aCluster().withKeeper('k1').withKeeper('k2').build(), ['k1', 'k2'], [], {
      memory: { dbErrorSince: {}, dbConvergingSince: {}, initFailures: { k1: 1, k2: 1 } },
    }),
    expect: { next: { dbs: { u1: { spec: { keeperUID: 'k1' } } } } },
  },

  // --- what the proxy's read-only listener reads ------------------------------------------------
  // (merged from the proxy branch, renumbered 113-114)
  {
    n: 113,
    title: "a standby reports its replayed LSN behind its received one: both copied into the DB status (the read-only listener's lag)",
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', keeperInfo('k2', cd, { xLogPos: LSN, replayedXLogPos: LSN - 4096 })], [proxyInfo('p1', 2)]);
    },
    expect: { next: { dbs: { 'db-k2': { status: { xLogPos: LSN, replayedXLogPos: LSN - 4096 } } } }, changed: true },
  },
  {
    n: 114,
    title: 'a DB whose keeper stops reporting a replayed LSN (promoted, or an older keeper): the field is removed',
    given: () => {
      const built = healthyPair().build();
      const withReplay = structuredClone(built) as ClusterData;
      const k2 = withReplay.dbs['db-k2'];
      if (k2 !== undefined) {
        k2.status.replayedXLogPos = LSN - 4096;
      }
      return observe(withReplay, ['k1', keeperInfo('k2', withReplay)], [proxyInfo('p1', 2)]);
    },
    expect: {
      changed: true,
      check: (out) => expect(out.next.dbs['db-k2']?.status).not.toHaveProperty('replayedXLogPos'),
    },
  },

  // --- forked timelines (Stolon dbValidity "different timeline branch", TestTimelineFork) ----
  {
    n: 115,
    title: 'primary on timeline 2 (forked from 1 at LSN), standby k3 still on timeline 1 past that point: its DB is removed and k3 resynced',
    given: () => {
      const cd = forkedTrio({ timeline: 1, xLogPos: LSN + 100 });
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'u1'],
      next: { dbs: { u1: { spec: { keeperUID: 'k3', initMode: 'resync' } } } },
      reasons: [
        `removing db db-k3 of keeper k3: has WAL of timeline 1 up to ${LSN + 100}, past where the primary's timeline 2 forked from it (${LSN}); it will be resynced`,
        'keeper k3 assigned new standby db u1',
      ],
    },
  },
  {
    n: 116,
    title: 'primary on timeline 2 (forked from 1 at LSN), standby k3 on timeline 1 exactly at that point: kept (it can follow)',
    given: () => {
      const cd = forkedTrio({ timeline: 1, xLogPos: LSN });
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { dbs: ['db-k1', 'db-k2', 'db-k3'], notReasons: ['removing db'] },
  },
  {
    n: 117,
    title: 'standby k3 on the primary\'s timeline 2 but its timeline 2 forked from 1 at another LSN: removed and resynced',
    given: () => {
      const cd = forkedTrio({ timeline: 2, xLogPos: LSN + 500 }, LSN - 64);
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'u1'],
      reasons: [`removing db db-k3 of keeper k3: timeline 2 forked at ${LSN - 64}, the primary's at ${LSN}; it will be resynced`],
    },
  },
  {
    n: 118,
    title: 'sync on: the primary reports k3 in sync, but k3\'s keeper reports timeline 1 past the fork (walreceiver down, restartpoint not yet on 2): kept, it streams from the primary',
    given: () => {
      const cd = forkedTrio({ timeline: 1, xLogPos: LSN + 100 });
      cd.cluster.spec = { ...cd.cluster.spec, synchronousReplication: true };
      cd.dbs['db-k1']!.spec.synchronousReplication = true;
      cd.dbs['db-k1']!.spec.synchronousStandbys = ['db-k3'];
      cd.dbs['db-k1']!.status.synchronousStandbys = ['db-k3'];
      return observe(cd, ['k1', 'k2', 'k3'], [proxyInfo('p1', 2)]);
    },
    expect: { dbs: ['db-k1', 'db-k2', 'db-k3'], notReasons: ['removing db'] },
  },
  {
    n: 119,
    title: "the primary's report has timeline 0 (unknown: its probe query failed while postgres shut down): the standby on timeline 1 is not \"ahead\" and keeps its DB",
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, [keeperInfo('k1', cd, { timeline: 0, xLogPos: 0 }), 'k2'], [proxyInfo('p1', 2)]);
    },
    expect: { dbs: ['db-k1', 'db-k2'], notReasons: ['removing db'] },
  },  // --- progress markers: a live lease is not enough, the info must change ----------------------
  {
    n: 150,
    title: 'primary keeper k1 keeps its lease but its info (infoUID) has not changed for more than failInterval: treated as lost, fencing starts',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)], {
        memory: { ...emptyMemory(), keeperProgress: { k1: { infoUID: 'info-k1', since: 3_000 }, k2: { infoUID: 'old', since: 3_000 } } },
      });
    },
    expect: {
      next: {
        keepers: { k1: { status: { healthy: false } }, k2: { status: { healthy: true } } },
        dbs: { 'db-k1': { status: { healthy: false } } },
        proxy: { generation: 3, spec: { masterDbUid: '' } },
      },
      reasons: [
        'keeper k1 lost: no progress for 7000 ms (its info did not change for more than failInterval 6s)',
        'primary k1 (db db-k1) failed: fencing proxies with proxy generation 3',
      ],
      memory: { keeperProgress: { k1: { infoUID: 'info-k1', since: 3_000 }, k2: { infoUID: 'info-k2', since: 10_000 } } },
    },
  },
  {
    n: 151,
    title: 'primary keeper k1 unchanged for exactly failInterval: still healthy, nothing happens',
    given: () => {
      const cd = healthyPair().build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2)], {
        memory: { ...emptyMemory(), keeperProgress: { k1: { infoUID: 'info-k1', since: 4_000 } } },
      });
    },
    expect: { changed: false, notReasons: ['lost', 'fencing'], memory: { keeperProgress: { k1: { since: 4_000 } } } },
  },
  {
    n: 152,
    title: 'standby keeper k2 stalled (no progress for more than failInterval): its DB is not healthy and it is not promoted',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1']).withStandby('k2', { xLogPos: LSN }).withStandby('k3', { xLogPos: LSN - 1_000 }).build();
      return observe(cd, ['k2', 'k3'], [proxyInfo('p1', 3)], {
        memory: { ...emptyMemory(), keeperProgress: { k2: { infoUID: 'info-k2', since: 1_000 } } },
      });
    },
    expect: {
      next: { cluster: { status: { master: 'db-k3' } }, dbs: { 'db-k2': { status: { healthy: false } } } },
      reasons: ['keeper k2 lost: no progress for 9000 ms', 'promoting keeper k3'],
    },
  },
  {
    n: 153,
    title: 'fence pending, proxy p2 behind with a frozen info for more than proxyTimeout + 1 s: dropped from the fence wait, k2 promoted',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3), proxyInfo('p2', 2)], {
        memory: { ...emptyMemory(), proxyProgress: { p2: { infoUID: 'pinfo-p2', since: 4_999 } } },
      });
    },
    expect: {
      next: { cluster: { status: { master: 'db-k2' } } },
      reasons: [
        'proxy p2 made no progress for 5001 ms (no successful check; more than its proxyTimeout 4s + 1s): its watchdog has stopped it forwarding, not waiting for it',
        'promoting keeper k2',
      ],
      notReasons: ['waiting for proxies'],
      memory: { proxyProgress: { p1: { infoUID: 'pinfo-p1', since: 10_000 }, p2: { since: 4_999 } } },
    },
  },
  {
    n: 154,
    title: 'fence pending, proxy p2 behind with a frozen info for exactly proxyTimeout + 1 s: still waited for',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3), proxyInfo('p2', 2)], {
        memory: { ...emptyMemory(), proxyProgress: { p2: { infoUID: 'pinfo-p2', since: 5_000 } } },
      });
    },
    expect: {
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: ['waiting for proxies p2 to acknowledge fence generation 3 before promoting'],
      notReasons: ['promoting keeper', 'made no progress'],
    },
  },
  {
    n: 155,
    title: 'a proxy publishing a longer ProxyTimeout than the spec is given its own: p2 (10 s) frozen for 6 s is still waited for',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3), { ...proxyInfo('p2', 2), ProxyTimeout: 10_000_000_000 }], {
        memory: { ...emptyMemory(), proxyProgress: { p2: { infoUID: 'pinfo-p2', since: 4_000 } } },
      });
    },
    expect: { reasons: ['waiting for proxies p2'], notReasons: ['promoting keeper'] },
  },
  {
    n: 156,
    title: 'new leader (empty memory): frozen markers are first seen now, so nobody is stalled yet (the new leader waits a full interval)',
    given: () => {
      const cd = k1LostAndFenced().fenced(3, ['p1', 'p2']).withStandby('k2', { xLogPos: LSN }).build();
      return observe(cd, ['k2'], [proxyInfo('p1', 3), proxyInfo('p2', 2)]);
    },
    expect: {
      reasons: ['waiting for proxies p2'],
      memory: { keeperProgress: { k2: { since: 10_000 } }, proxyProgress: { p1: { since: 10_000 }, p2: { since: 10_000 } } },
    },
  },
  {
    n: 157,
    title: 'routed proxy p2 stalled: dropped from enabledProxies (as if its lease expired), with a reason naming it',
    given: () => {
      const cd = healthyPair().routedTo('k1', ['p1', 'p2'], 2).build();
      return observe(cd, ['k1', 'k2'], [proxyInfo('p1', 2), proxyInfo('p2', 2)], {
        memory: { ...emptyMemory(), proxyProgress: { p2: { infoUID: 'pinfo-p2', since: 0 } } },
      });
    },
    expect: {
      next: { proxy: { generation: 3, spec: { masterDbUid: 'db-k1', enabledProxies: ['p1'] } } },
      reasons: ['proxy p2 made no progress for 10000 ms', 'enabled proxies now [p1], proxy generation 3'],
    },
  },
  {
    n: 120,
    title: 'after 32: the forced-failed primary\'s keeper reports its postgres stopped: k2 promoted, the old primary DB removed, forceFail cleared',
    given: () => {
      const cd = k1Stopping();
      return observe(cd, [keeperInfo('k1', cd, { running: false, pgHealthy: false }), 'k2']);
    },
    expect: {
      dbs: ['db-k2'],
      next: { cluster: { status: { master: 'db-k2' } }, dbs: { 'db-k2': { spec: { role: 'master' } } } },
      reasons: ['keeper k1 forced failed by stolonctl failkeeper', 'promoting keeper k2'],
      check: (out) => expect(out.next.keepers['k1']?.status).not.toHaveProperty('forceFail'),
    },
  },
  {
    n: 121,
    title: 'primary told to shut down, then its keeper info lapses: k2 promoted at once (the keeper\'s self-fencing stops postgres before its lease can expire)',
    given: () => observe(k1Stopping(), ['k2']),
    expect: { dbs: ['db-k2'], next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2'], notReasons: ['LIVENESS'] },
  },
  {
    n: 122,
    title: 'primary told to shut down still reports postgres running 1 ms past convergenceTimeout: k2 promoted anyway, with a LIVENESS reason',
    given: () => {
      const cd = k1Stopping();
      return observe(cd, [keeperInfo('k1', cd, { generation: 1, running: true }), 'k2'], [], {
        now: 30_001,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 2, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k2'],
      next: { cluster: { status: { master: 'db-k2' } } },
      reasons: ['LIVENESS: primary k1 (db db-k1) still reports postgres running convergenceTimeout 30s after it was told to shut down', 'promoting keeper k2'],
    },
  },
  {
    n: 123,
    title: 'primary told to shut down still running within convergenceTimeout: waiting, no promotion, forceFail kept',
    given: () => {
      const cd = k1Stopping();
      return observe(cd, [keeperInfo('k1', cd, { generation: 1, running: true }), 'k2'], [], {
        now: 20_000,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k1': { generation: 2, since: 0 } } },
      });
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: { cluster: { status: { master: 'db-k1' } }, keepers: { k1: { status: { forceFail: true } } } },
      reasons: ['waiting for its keeper to stop postgres before promoting a standby'],
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 124,
    title: 'primary told to shut down, but no standby can replace it any more (k2 lost): the order is withdrawn, it may run again',
    given: () => {
      const cd = k1Stopping();
      return observe(cd, [keeperInfo('k1', cd, { running: false, pgHealthy: false })]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2'],
      next: { cluster: { status: { master: 'db-k1' } } },
      reasons: ['no eligible standby to promote', 'no standby can replace primary k1 (db db-k1) now: it may run again'],
      check: (out) => expect(out.next.dbs['db-k1']?.spec).not.toHaveProperty('shutdownForSwitchover'),
    },
  },
  {
    n: 125,
    title: 'the standby chosen by a failover (k2) loses its keeper before its promotion completed: the other standby k3, still following the deleted old primary, is promoted in its place',
    given: () => observe(k2Chosen(), ['k3'], [proxyInfo('p1', 3)]),
    expect: {
      dbs: ['db-k3'],
      next: {
        cluster: { status: { master: 'db-k3', failover: { oldPrimary: { dbUid: 'db-k1', timelineID: 1 }, newPrimary: { keeperUID: 'k3' } } } },
        dbs: { 'db-k3': { spec: { role: 'master', followConfig: null } } },
        proxy: { generation: 3, spec: { masterDbUid: '' } },
      },
      reasons: ['primary k2 (db db-k2) failed before its promotion completed: promoting keeper k3 (db db-k3, LSN 4999900, primary\'s last LSN 5000000)'],
      check: (out) => expect(out.next.cluster.status.failover?.choice).toMatch(/keeper k2 \(db db-k2\) failed before its promotion completed; then most advanced/),
    },
  },
  {
    n: 126,
    title: 'as 125, but k3 lags the OLD primary\'s last LSN by more than maxStandbyLag: not promoted (compared with the old primary, not the unconverged choice)',
    given: () => observe(k2Chosen(MINIMAL_SPEC, [], LSN - 2 * MIB), ['k3'], [proxyInfo('p1', 3)]),
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k2' } } },
      reasons: ['no eligible standby to promote (k3: lags 2097152 bytes behind the primary (maxStandbyLag 1048576))'],
    },
  },
  {
    n: 127,
    title: 'sync on (two synchronous standbys k2, k3, both known): the chosen k2 fails before its promotion completed: k3, in the old primary\'s sync set, is promoted',
    given: () => observe(k2Chosen(SYNC2_SPEC, ['db-k2', 'db-k3']), ['k3'], [proxyInfo('p1', 3)]),
    expect: {
      dbs: ['db-k3'],
      next: {
        cluster: { status: { master: 'db-k3', failover: { oldPrimary: { synchronousStandbys: ['db-k2', 'db-k3'] } } } },
        dbs: { 'db-k3': { spec: { role: 'master', synchronousReplication: true } } },
      },
      reasons: ['failed before its promotion completed: promoting keeper k3'],
    },
  },
  {
    n: 128,
    title: 'sync on (only k2 known in sync): the chosen k2 fails before its promotion completed: k3 is outside the old primary\'s sync set and is NOT promoted',
    given: () => observe(k2Chosen(SYNC_SPEC, ['db-k2']), ['k3'], [proxyInfo('p1', 3)]),
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k2' } } },
      reasons: ['no eligible standby to promote (k3: not a synchronous standby known to be in sync)', 'known in sync: [db-k2]'],
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 129,
    title: 'the chosen k2 never converges within convergenceTimeout while its keeper is live and reports postgres running: it is told to shut down first, like an old primary',
    given: () => {
      const cd = k2Chosen();
      return observe(cd, [keeperInfo('k2', cd, { generation: 1, running: true }), 'k3'], [proxyInfo('p1', 3)], {
        now: 40_001,
        memory: { dbErrorSince: {}, dbConvergingSince: { 'db-k2': { generation: 2, since: 10_000 } } },
      });
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k2' } }, dbs: { 'db-k2': { spec: { shutdownForSwitchover: true } } } },
      reasons: ['primary k2 (db db-k2) failed but its keeper is live and reports postgres running: shutting it down'],
    },
  },
  {
    n: 132,
    title: 'the chosen k2 and the other standby k3 lost before the promotion completed; the old primary\'s keeper k1 is back without a DB, with the data of db-k1: db-k1 is given back as a standby of the failed choice (initMode none), no promotion yet',
    given: () => {
      const cd = k2Chosen();
      return observe(cd, [keeperInfo('k1', cd, { dbUid: 'db-k1', generation: 2, xLogPos: LSN - 1000, running: false, pgHealthy: false })], [proxyInfo('p1', 3)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k2', 'db-k3'],
      next: {
        cluster: { status: { master: 'db-k2' } },
        dbs: { 'db-k1': { generation: 3, spec: { keeperUID: 'k1', role: 'standby', initMode: 'none', followConfig: { type: 'internal', dbuid: 'db-k2' } } } },
      },
      reasons: ['no eligible standby to promote', 'keeper k1 holds no db but has data of db db-k1 (timeline 1): giving it back as a standby'],
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 133,
    title: 'as 132, but k1\'s data directory is of another system (or k1 cannot be primary): not given a DB',
    given: () => {
      const cd = k2Chosen();
      cd.keepers['k4'] = structuredClone(cd.keepers['k1']!);
      cd.keepers['k4'].uid = 'k4';
      return observe(
        cd,
        [
          keeperInfo('k1', cd, { dbUid: 'db-k1', generation: 2, running: false, pgHealthy: false, systemId: '999' }),
          keeperInfo('k4', cd, { dbUid: 'db-k4', generation: 2, running: false, pgHealthy: false, canBeMaster: false }),
        ],
        [proxyInfo('p1', 3)],
      );
    },
    expect: { dbs: ['db-k2', 'db-k3'], notReasons: ['giving it back'] },
  },
  {
    n: 134,
    title: 'after 132: db-k1 runs as a standby with no upstream at the old primary\'s last LSN: promoted in place of the failed choice',
    given: () => {
      const first = decide(
        observe(k2Chosen(), [keeperInfo('k1', k2Chosen(), { dbUid: 'db-k1', generation: 2, running: false, pgHealthy: false })], [proxyInfo('p1', 3)]),
      ).next;
      return observe(first, [keeperInfo('k1', first, { generation: 3, xLogPos: LSN, running: true })], [proxyInfo('p1', 3)]);
    },
    expect: {
      dbs: ['db-k1', 'db-k3'],
      next: { cluster: { status: { master: 'db-k1' } }, dbs: { 'db-k1': { spec: { role: 'master', followConfig: null } } } },
      reasons: ['primary k2 (db db-k2) failed before its promotion completed: promoting keeper k1 (db db-k1'],
    },
  },
  {
    n: 135,
    title: 'the chosen k2, failing for longer than failInterval, comes back as a new keeper process (new boot id) while k3 could replace it: k2 gets a fresh failInterval to finish its promotion, k3 is not promoted',
    given: () => {
      const cd = k2Chosen();
      const k2 = { ...keeperInfo('k2', cd, { running: false, pgHealthy: false }), bootUUID: 'boot-k2-again' };
      return observe(cd, [k2, 'k3'], [proxyInfo('p1', 3)], { now: 100_000, memory: { ...emptyMemory(), dbErrorSince: { 'db-k2': 0 } } });
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k2' } }, keepers: { k2: { status: { bootUUID: 'boot-k2-again' } } } },
      memory: { dbErrorSince: { 'db-k2': 100_000 } },
      notReasons: ['promoting keeper'],
    },
  },
  {
    n: 136,
    title: 'as 135, but the same keeper process (same boot id): the choice has failed for longer than failInterval; its keeper is live with postgres down, so it is told to keep it down before k3 is promoted',
    given: () => {
      const cd = k2Chosen();
      return observe(cd, [keeperInfo('k2', cd, { running: false, pgHealthy: false }), 'k3'], [proxyInfo('p1', 3)], {
        now: 100_000,
        memory: { ...emptyMemory(), dbErrorSince: { 'db-k2': 0 } },
      });
    },
    expect: {
      dbs: ['db-k2', 'db-k3'],
      next: { cluster: { status: { master: 'db-k2' } }, dbs: { 'db-k2': { spec: { shutdownForSwitchover: true } } } },
      reasons: ['primary k2 (db db-k2) failed; its keeper is live (postgres down): telling it to keep postgres down before promoting a standby'],
      notReasons: ['promoting keeper'],
    },
  },
];

/**
 * Stolon's `TestUpdateCluster` (cmd/sentinel/cmd/sentinel_test.go in
 * https://github.com/sorintlab/stolon, cases #0–#28) mapped to the cases above that cover each
 * scenario, with our fixes. Where the outcome differs on purpose the case title says so: #0 waits instead of
 * erroring; #5/#8/#15 fence proxies before promoting; #6 the old primary DB is already gone;
 * #28 priority never moves a healthy primary.
 */
const STOLON_CASES: Readonly<Record<number, readonly number[]>> = {
  0: [1],
  1: [2],
  2: [2],
  3: [9],
  4: [41],
  5: [19, 20, 32],
  9: [12],
  12: [41],
  13: [90, 95],
  17: [82],
  18: [74],
  19: [72],
  20: [83],
  21: [68],
  22: [71],
  23: [73],
  25: [86],
  26: [65, 66],
};

function check(out: DecideOutput, input: DecideInput, e: Expected): void {
  if (e.next !== undefined) {
    expect(out.next).toMatchObject(e.next);
  }
  if (e.dbs !== undefined) {
    expect(Object.keys(out.next.dbs).sort()).toEqual([...e.dbs].sort());
  }
  if (e.keepers !== undefined) {
    expect(Object.keys(out.next.keepers).sort()).toEqual([...e.keepers].sort());
  }
  if (e.reasons !== undefined) {
    expect(out.reasons).toEqual(expect.arrayContaining(e.reasons.map((r) => expect.stringContaining(r))));
  }
  for (const r of e.notReasons ?? []) {
    expect(out.reasons.filter((x) => x.includes(r))).toEqual([]);
  }
  if (e.changed !== undefined) {
    expect(out.changed).toBe(e.changed);
  }
  if (e.memory !== undefined) {
    expect(out.memory).toMatchObject(e.memory);
  }
  e.check?.(out, input);
  expect(out.reasons.length).toBeGreaterThan(0);
}

describe('decide', () => {
  it('has uniquely numbered cases', () => {
    const ns = cases.map((c) => c.n);
    expect(new Set(ns).size).toBe(ns.length);
  });

  it('covers every case #0-#28 of Stolon\'s TestUpdateCluster', () => {
    const covered = new Map<number, number[]>();
    for (const [s, ours] of Object.entries(STOLON_CASES)) {
      covered.set(Number(s), [...ours]);
    }
    for (const c of cases) {
      for (const s of c.stolon ?? []) {
        covered.set(s, [...(covered.get(s) ?? []), c.n]);
      }
    }
    const missing = Array.from({ length: 29 }, (_, i) => i).filter((i) => (covered.get(i) ?? []).length === 0);
    expect(missing).toEqual([]);
    const ns = new Set(cases.map((c) => c.n));
    expect([...covered.values()].flat().filter((n) => !ns.has(n))).toEqual([]);
  });

  it.each(cases.map((c) => [`${c.n}. ${c.title}`, c] as const))('%s', (_name, c) => {
    const input = c.given();
    check(decide(input), input, c.expect);
  });

  // Scenario 15 of the brief: decide never mutates its input. Every input above is deep-frozen,
  // so a write would throw; this also checks that the input still equals a snapshot taken
  // before, and that `changed` agrees with a deep comparison.
  it.each(cases.map((c) => [`${c.n}. ${c.title}`, c] as const))('leaves its frozen input intact: %s', (_name, c) => {
    const input = c.given();
    expect(Object.isFrozen(input.cd.dbs) && Object.isFrozen(input.keeperInfos) && Object.isFrozen(input.memory)).toBe(true);
    const before = structuredClone({ cd: input.cd, keeperInfos: input.keeperInfos, proxyInfos: input.proxyInfos, memory: input.memory });
    const out = decide(input);
    expect({ cd: input.cd, keeperInfos: input.keeperInfos, proxyInfos: input.proxyInfos, memory: input.memory }).toEqual(before);
    const { changeTime: _a, ...nextRest } = out.next;
    const { changeTime: _b, ...prevRest } = input.cd;
    if (!out.changed) {
      expect(out.next).toEqual(input.cd);
    } else {
      expect(JSON.stringify(nextRest)).not.toBe(JSON.stringify(prevRest));
    }
  });

  it('stamps changeTime only when something changed', () => {
    const steady = decide(observe(healthyPair().build(), ['k1', 'k2'], [proxyInfo('p1', 2)]));
    expect(steady.next.changeTime).toBe(T0);
    const moved = decide(observe(healthyPair().build(), ['k2'], [proxyInfo('p1', 2)]));
    expect(moved.next.changeTime).toBe(wallAt(10_000));
  });

  it('uses newUid only for the DBs it creates', () => {
    let calls = 0;
    const newUid = () => `n${++calls}`;
    decide(decideInput(healthyPair().build(), { keepers: [], proxies: [proxyInfo('p1', 2)], newUid }));
    expect(calls).toBe(0);
  });
});

describe('decide: a change of reported WAL positions alone (positionsDue)', () => {
  /** Pass at 10 s over the healthy pair stored at LSN, the keepers reporting the given positions. */
  const pass = (o: { k1: number; k2?: number; lastWriteAt?: number; spec?: ClusterSpec; k2Healthy?: boolean; k2Replayed?: number }) => {
    const cd = (o.spec === undefined ? healthyPair() : aCluster({ spec: o.spec }).initialized().withPrimary('k1', { xLogPos: LSN }).withStandby('k2', { xLogPos: LSN }).routedTo('k1', ['p1'], 2)).build();
    const memory: SentinelMemory = { ...emptyMemory(), ...(o.lastWriteAt === undefined ? {} : { lastWriteAt: o.lastWriteAt }) };
    const keepers = [
      keeperInfo('k1', cd, { xLogPos: o.k1 }),
      keeperInfo('k2', cd, { xLogPos: o.k2 ?? LSN, ...(o.k2Healthy === false ? { pgHealthy: false } : {}), ...(o.k2Replayed === undefined ? {} : { replayedXLogPos: o.k2Replayed }) }),
    ];
    return decide(decideInput(cd, { keepers, proxies: [proxyInfo('p1', 2)], memory, now: 10_000 }));
  };
  const QUARTER_MIB = 262_144;

  it.each([
    { title: 'no write since this sentinel leads: written', o: { k1: LSN + 1000 }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, the primary 1000 B further: held', o: { k1: LSN + 1000, lastWriteAt: 8_000 }, changed: false, lastWriteAt: 8_000 },
    { title: `written ${POSITIONS_WRITE_INTERVAL_MS} ms ago: written`, o: { k1: LSN + 1000, lastWriteAt: 10_000 - POSITIONS_WRITE_INTERVAL_MS }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, the primary a quarter of maxStandbyLag further: written', o: { k1: LSN + QUARTER_MIB, lastWriteAt: 8_000 }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, the primary 1 B less than a quarter of maxStandbyLag further: held', o: { k1: LSN + QUARTER_MIB - 1, lastWriteAt: 8_000 }, changed: false, lastWriteAt: 8_000 },
    { title: 'written 2 s ago, the standby a quarter of maxStandbyLag further: written', o: { k1: LSN, k2: LSN + QUARTER_MIB, lastWriteAt: 8_000 }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, the primary and the standby 4 MiB further (the lag unchanged): held', o: { k1: LSN + 4 * 1048576, k2: LSN + 4 * 1048576, lastWriteAt: 8_000 }, changed: false, lastWriteAt: 8_000 },
    { title: 'written 2 s ago, both 4 MiB further and the standby a quarter of maxStandbyLag less: written', o: { k1: LSN + 4 * 1048576, k2: LSN + 4 * 1048576 - QUARTER_MIB, lastWriteAt: 8_000 }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, the standby reports a replayed position for the first time: written', o: { k1: LSN, k2Replayed: LSN, lastWriteAt: 8_000 }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, a new position and the standby unhealthy: written (not positions alone)', o: { k1: LSN + 1000, k2Healthy: false, lastWriteAt: 8_000 }, changed: true, lastWriteAt: 10_000 },
    { title: 'written 2 s ago, maxStandbyLag 0: every new position is written', o: { k1: LSN + 1, lastWriteAt: 8_000, spec: { ...MINIMAL_SPEC, maxStandbyLag: 0 } }, changed: true, lastWriteAt: 10_000 },
  ])('$title', ({ o, changed, lastWriteAt }) => {
    const out = pass(o);
    expect(out.changed).toBe(changed);
    expect(out.memory.lastWriteAt).toBe(lastWriteAt);
    // Either way `next` carries what the keepers reported (the metrics and the log read it).
    expect(out.next.dbs['db-k1']!.status.xLogPos).toBe(o.k1);
    if (!changed) {
      expect(out.reasons.join('; ')).toContain('no change (new WAL positions only');
      expect(out.next.changeTime).toBe(T0);
    }
  });

  it('held positions are written every POSITIONS_WRITE_INTERVAL_MS under a steady write load, from the stored clusterdata', () => {
    let stored = healthyPair().build();
    let memory = emptyMemory();
    const written: number[] = [];
    for (let i = 1; i <= 12; i++) {
      const now = i * 1000;
      const keepers = republished([keeperInfo('k1', stored, { xLogPos: LSN + i * 10_000 }), keeperInfo('k2', stored, { xLogPos: LSN + i * 10_000 })], now);
      const out = decide(decideInput(stored, { keepers, proxies: republished([proxyInfo('p1', 2)], now), memory, now }));
      memory = out.memory;
      if (out.changed) {
        written.push(i);
        stored = out.next; // only a written decision is what the next pass reads
      }
    }
    expect(written).toEqual([1, 6, 11]);
    expect(stored.dbs['db-k1']!.status.xLogPos).toBe(LSN + 110_000);
  });

  it('a WAL rate of more than a quarter of maxStandbyLag per pass is written every POSITIONS_WRITE_INTERVAL_MS too while the lag stays', () => {
    let stored = healthyPair().build();
    let memory = emptyMemory();
    const written: number[] = [];
    for (let i = 1; i <= 12; i++) {
      const now = i * 1000;
      // 600 kB of WAL a second; the standby streams, 2 kB behind.
      const keepers = republished([keeperInfo('k1', stored, { xLogPos: LSN + i * 600_000 }), keeperInfo('k2', stored, { xLogPos: LSN + i * 600_000 - 2_000 })], now);
      const out = decide(decideInput(stored, { keepers, proxies: republished([proxyInfo('p1', 2)], now), memory, now }));
      memory = out.memory;
      // Held or not, the decision carries what the keepers reported.
      expect(out.next.dbs['db-k1']!.status.xLogPos).toBe(LSN + i * 600_000);
      if (out.changed) {
        written.push(i);
        stored = out.next;
        expect(out.memory.heldPositions).toBeUndefined();
      } else {
        expect(out.memory.heldPositions?.['db-k1']?.xLogPos).toBe(LSN + i * 600_000);
      }
    }
    // The first write records the standby's 2 kB lag; after it the lag does not move.
    expect(written).toEqual([1, 6, 11]);
  });

  it('a pass starts from the positions the last one held back: a primary that stopped reporting is judged by the last position seen', () => {
    const stored = healthyPair().build();
    const first = decide(
      decideInput(stored, {
        keepers: [keeperInfo('k1', stored, { xLogPos: LSN + 50_000 }), keeperInfo('k2', stored, { xLogPos: LSN + 50_000 })],
        proxies: [proxyInfo('p1', 2)],
        memory: { ...emptyMemory(), lastWriteAt: 8_000 },
        now: 9_000,
      }),
    );
    expect(first.changed).toBe(false);
    expect(first.memory.heldPositions?.['db-k1']).toEqual({ xLogPos: LSN + 50_000 });
    // The primary's keeper reports no more; the stored clusterdata still says LSN.
    const second = decide(
      decideInput(stored, { keepers: [keeperInfo('k2', stored, { xLogPos: LSN + 50_000 })], proxies: [proxyInfo('p1', 2)], memory: first.memory, now: 10_000 }),
    );
    expect(stored.dbs['db-k1']!.status.xLogPos).toBe(LSN);
    expect(second.next.dbs['db-k1']!.status.xLogPos).toBe(LSN + 50_000);
  });
});

/** A leader sentinel loop in miniature: each pass observes the current cd, then commits output and memory. */
class Loop {
  cd: ClusterData;
  memory: SentinelMemory = emptyMemory();
  now = 0;
  private readonly newUid = seqUids();

  constructor(cd: ClusterData) {
    this.cd = cd;
  }

  /**
   * One pass. Every keeper and proxy info gets a new `infoUID`, as a keeper publishes every pass
   * and a proxy after every successful check, except those of the uids in `stalled`, whose
   * marker stays as given (a hung keeper pass, a proxy whose checks fail).
   */
  pass(
    observeFn: (cd: ClusterData) => { keepers: readonly KeeperInfo[]; proxies?: readonly ProxyInfo[]; stalled?: readonly string[] },
    advanceMs = 1_000,
  ): DecideOutput {
    this.now += advanceMs;
    const o = observeFn(this.cd);
    const keepers = republished(o.keepers, this.now, o.stalled);
    const proxies = republished(o.proxies ?? [], this.now, o.stalled);
    const out = decide(
      decideInput(this.cd, { keepers, proxies, memory: this.memory, now: this.now, newUid: this.newUid }),
    );
    this.cd = out.next;
    this.memory = out.memory;
    return out;
  }
}

describe('decide, pass after pass', () => {
  it('bootstrap, add a standby, lose the primary, fence, promote the standby, route, and re-add the old primary as a standby', () => {
    const loop = new Loop(newClusterData(MINIMAL_SPEC, CLUSTER_UID, T0));
    const both = (cd: ClusterData) => [keeperInfo('k1', cd, { xLogPos: LSN }), keeperInfo('k2', cd, { xLogPos: LSN })];

    // 1. Keepers register; k1 gets the primary DB.
    let out = loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 1)] }));
    check(out, decideInput(loop.cd), { dbs: ['u1'], next: { cluster: { status: { phase: 'initializing', master: 'u1' } } } });

    // 2. k1 initialised u1: phase normal.
    out = loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 1)] }));
    check(out, decideInput(loop.cd), {
      next: { cluster: { status: { phase: 'normal' } }, dbs: { u1: { generation: 2, spec: { initMode: 'none' } } } },
      reasons: ['initialized: primary k1 (db u1) is up'],
    });

    // 3. u1 converged: proxies routed to it; k2 gets a resync standby.
    out = loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 1)] }));
    check(out, decideInput(loop.cd), {
      dbs: ['u1', 'u2'],
      next: {
        proxy: { generation: 2, spec: { masterDbUid: 'u1', enabledProxies: ['p1'] } },
        dbs: { u1: { generation: 3, spec: { followers: ['u2'] } }, u2: { spec: { keeperUID: 'k2', initMode: 'resync', followConfig: { dbuid: 'u1' } } } },
      },
      reasons: ['routing proxies [p1] to primary k1 (db u1), proxy generation 2', 'keeper k2 assigned new standby db u2'],
    });

    // 4. u2 synced: initMode none. 5. k2 applied that (a status write). 5b. Steady: no write.
    out = loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] }));
    check(out, decideInput(loop.cd), { next: { dbs: { u2: { generation: 2, spec: { initMode: 'none' } } } } });
    out = loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] }));
    check(out, decideInput(loop.cd), { changed: true, next: { dbs: { u2: { generation: 2, status: { currentGeneration: 2 } } } } });
    out = loop.pass((cd) => ({ keepers: both(cd), proxies: [proxyInfo('p1', 2)] }));
    check(out, decideInput(loop.cd), { changed: false, reasons: ['no change: primary k1 (db u1) healthy, 1/1 standbys healthy'] });

    // 6. k1's lease expires: fence, wait for p1.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd)], proxies: [proxyInfo('p1', 2)] }));
    check(out, decideInput(loop.cd), {
      dbs: ['u1', 'u2'],
      next: { cluster: { status: { master: 'u1' } }, proxy: { generation: 3, spec: { masterDbUid: '' } } },
      notReasons: ['promoting keeper'],
    });

    // 7. Still waiting while p1 lags.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd)], proxies: [proxyInfo('p1', 2)] }));
    check(out, decideInput(loop.cd), { changed: false, reasons: ['waiting for proxies p1 to acknowledge fence generation 3'] });

    // 8. p1 acknowledges: u2 promoted, u1 removed.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd)], proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), {
      dbs: ['u2'],
      next: { cluster: { status: { master: 'u2' } }, dbs: { u2: { generation: 3, spec: { role: 'master', followConfig: null } } } },
      reasons: ['promoting keeper k2 (db u2'],
    });

    // 9. k2 has not promoted yet: no routing.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { generation: 2 })], proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), { next: { proxy: { spec: { masterDbUid: '' } } }, reasons: ['waiting for primary k2 (db u2) to converge'] });

    // 10. k2 promoted: proxies routed to u2.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd)], proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), {
      next: { proxy: { generation: 4, spec: { masterDbUid: 'u2', enabledProxies: ['p1'] } } },
      reasons: ['routing proxies [p1] to primary k2 (db u2), proxy generation 4'],
    });

    // 11. k1 comes back, still holding u1's data: a free keeper, given a new resync standby u3.
    out = loop.pass((cd) => ({
      keepers: [keeperInfo('k2', cd), keeperInfo('k1', cd, { dbUid: 'u1', xLogPos: LSN })],
      proxies: [proxyInfo('p1', 4)],
    }));
    check(out, decideInput(loop.cd), {
      dbs: ['u2', 'u3'],
      next: {
        keepers: { k1: { status: { healthy: true } } },
        dbs: { u3: { spec: { keeperUID: 'k1', role: 'standby', initMode: 'resync', followConfig: { dbuid: 'u2' } } }, u2: { spec: { followers: ['u3'] } } },
        proxy: { generation: 4, spec: { masterDbUid: 'u2' } },
      },
      reasons: ['keeper k1 assigned new standby db u3 following primary db u2'],
    });
  });

  it('forceFail on the primary with a live proxy: the fence handshake, then the old primary stopped, then the promotion', () => {
    const loop = new Loop(healthyPair().withPrimary('k1', { forceFail: true }).build());
    let k1Running = true;
    const keepers = (cd: ClusterData) => [
      keeperInfo('k1', cd, k1Running ? { running: true } : { running: false, pgHealthy: false }),
      keeperInfo('k2', cd),
    ];

    let out = loop.pass((cd) => ({ keepers: keepers(cd), proxies: [proxyInfo('p1', 2)] }));
    check(out, decideInput(loop.cd), {
      next: { proxy: { generation: 3, spec: { masterDbUid: '' } }, keepers: { k1: { status: { forceFail: true } } } },
      reasons: ['keeper k1 forced failed by stolonctl failkeeper', 'fencing proxies with proxy generation 3'],
    });

    // The proxy enforces the fence; k1's keeper is live and its postgres runs: stop it first.
    out = loop.pass((cd) => ({ keepers: keepers(cd), proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), {
      dbs: ['db-k1', 'db-k2'],
      next: { dbs: { 'db-k1': { spec: { shutdownForSwitchover: true } } }, keepers: { k1: { status: { forceFail: true } } } },
      reasons: ['shutting it down before promoting a standby'],
      notReasons: ['promoting keeper'],
    });
    out = loop.pass((cd) => ({ keepers: keepers(cd), proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), { dbs: ['db-k1', 'db-k2'], reasons: ['waiting for its keeper to stop postgres'], notReasons: ['promoting keeper'] });

    k1Running = false;
    out = loop.pass((cd) => ({ keepers: keepers(cd), proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), {
      dbs: ['db-k2'],
      next: { cluster: { status: { master: 'db-k2' } } },
      reasons: ['promoting keeper k2'],
      notReasons: ['routing proxies'],
      check: (o) => expect(o.next.keepers['k1']?.status).not.toHaveProperty('forceFail'),
    });

    out = loop.pass((cd) => ({ keepers: keepers(cd), proxies: [proxyInfo('p1', 3)] }));
    check(out, decideInput(loop.cd), {
      dbs: ['db-k2', 'u1'],
      next: {
        proxy: { generation: 4, spec: { masterDbUid: 'db-k2' } },
        keepers: { k1: { status: { healthy: true } } },
        dbs: { u1: { spec: { keeperUID: 'k1', initMode: 'resync', followConfig: { dbuid: 'db-k2' } } } },
      },
    });
  });

  it('zone loss: the primary and the standby chosen to replace it both die; the third keeper is promoted within a pass, and the chosen one returns as a standby, never a second primary', () => {
    const loop = new Loop(
      aCluster().initialized().withPrimary('k1', { xLogPos: LSN }).withStandby('k2', { xLogPos: LSN }).withStandby('k3', { xLogPos: LSN - 100 }).routedTo('k1', ['p1'], 2).build(),
    );
    const p1 = (cd: ClusterData) => [proxyInfo('p1', cd.proxy.generation)];
    loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd), keeperInfo('k3', cd)], proxies: [proxyInfo('p1', 2)] })); // k1 lost: fenced
    let out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd), keeperInfo('k3', cd)], proxies: p1(cd) }));
    check(out, decideInput(loop.cd), { next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2'] });
    // k2 dies before applying the promotion.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k3', cd)], proxies: p1(cd) }));
    check(out, decideInput(loop.cd), { dbs: ['db-k3'], next: { cluster: { status: { master: 'db-k3' } } }, reasons: ['promoting keeper k3'] });
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k3', cd, { timeline: 2 })], proxies: p1(cd) }));
    check(out, decideInput(loop.cd), { next: { proxy: { spec: { masterDbUid: 'db-k3' } } } });
    expect(out.next.failoverHistory?.at(-1)).toMatchObject({ result: 'completed', newPrimary: { keeperUID: 'k3' } });
    // k2 comes back with its data directory of db-k2 (possibly promoted): no DB of its own, then a resync standby.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { dbUid: 'db-k2', timeline: 2 }), keeperInfo('k3', cd, { timeline: 2 })], proxies: p1(cd) }));
    check(out, decideInput(loop.cd), {
      next: { cluster: { status: { master: 'db-k3' } }, dbs: { u1: { spec: { keeperUID: 'k2', role: 'standby', initMode: 'resync' } } } },
    });
  });

  it('primary postgres down with its keeper alive: failed only after failInterval, then fenced and promoted', () => {
    const loop = new Loop(healthyPair().build());
    const k1Down = (cd: ClusterData) => ({
      keepers: [keeperInfo('k1', cd, { pgHealthy: false }), keeperInfo('k2', cd)],
      proxies: [proxyInfo('p1', cd.proxy.generation)],
    });

    let out = loop.pass(k1Down, 1_000); // t = 1000: first seen
    check(out, decideInput(loop.cd), { memory: { dbErrorSince: { 'db-k1': 1_000 } }, next: { proxy: { spec: { masterDbUid: 'db-k1' } } } });
    out = loop.pass(k1Down, 6_000); // t = 7000: exactly failInterval
    check(out, decideInput(loop.cd), { next: { proxy: { generation: 2, spec: { masterDbUid: 'db-k1' } } }, notReasons: ['fencing'] });
    out = loop.pass((cd) => ({ ...k1Down(cd), proxies: [proxyInfo('p1', 2)] }), 1); // t = 7001
    check(out, decideInput(loop.cd), {
      next: { cluster: { status: { master: 'db-k1' } }, proxy: { generation: 3, spec: { masterDbUid: '' } } },
      reasons: ['fencing proxies with proxy generation 3', 'waiting for proxies p1'],
    });
    out = loop.pass(k1Down, 100); // p1 now reports 3; k1's keeper is live: it must keep postgres down first
    check(out, decideInput(loop.cd), {
      next: { cluster: { status: { master: 'db-k1' } }, dbs: { 'db-k1': { spec: { shutdownForSwitchover: true } } } },
      reasons: ['its keeper is live (postgres down): telling it to keep postgres down before promoting a standby'],
    });
    out = loop.pass(k1Down, 100); // k1 applied that generation, postgres still down
    check(out, decideInput(loop.cd), { dbs: ['db-k2'], next: { cluster: { status: { master: 'db-k2' } } }, reasons: ['promoting keeper k2'] });
  });

  it('a proxy whose checks keep failing (frozen marker, live lease) delays a failover by at most proxyTimeout + 1 s', () => {
    const loop = new Loop(healthyPair().withStandby('k2', { xLogPos: LSN }).routedTo('k1', ['p1', 'p2'], 2).build());
    // p2 read clusterdata at generation 2 once, then every check failed (e.g. it cannot parse the
    // clusterdata): its info keeps its lease but never changes again.
    const p2 = proxyInfo('p2', 2);
    const k1Gone = (cd: ClusterData) => ({ keepers: [keeperInfo('k2', cd)], proxies: [proxyInfo('p1', cd.proxy.generation), p2], stalled: ['p2'] });

    let out = loop.pass((cd) => ({ keepers: [keeperInfo('k1', cd), keeperInfo('k2', cd)], proxies: [proxyInfo('p1', 2), p2], stalled: ['p2'] }), 1_000);
    check(out, decideInput(loop.cd), { changed: false, memory: { proxyProgress: { p2: { since: 1_000 } } } }); // t = 1000: p2 first seen
    out = loop.pass(k1Gone, 1_000); // t = 2000: k1 lost, fence at generation 3
    check(out, decideInput(loop.cd), { next: { proxy: { generation: 3, spec: { masterDbUid: '' } } }, reasons: ['waiting for proxies p1, p2'] });
    out = loop.pass(k1Gone, 1_000); // t = 3000: p1 acknowledged
    check(out, decideInput(loop.cd), { reasons: ['waiting for proxies p2 to'] });
    out = loop.pass(k1Gone, 3_000); // t = 6000: exactly proxyTimeout + 1 s after p2 was last seen changing
    check(out, decideInput(loop.cd), { next: { cluster: { status: { master: 'db-k1' } } }, reasons: ['waiting for proxies p2'] });
    out = loop.pass(k1Gone, 1); // t = 6001
    check(out, decideInput(loop.cd), {
      next: { cluster: { status: { master: 'db-k2' } } },
      reasons: ['proxy p2 made no progress for 5001 ms', 'promoting keeper k2'],
    });
    out = loop.pass(k1Gone, 100);
    check(out, decideInput(loop.cd), { next: { proxy: { generation: 4, spec: { masterDbUid: 'db-k2', enabledProxies: ['p1'] } } } });
  });

  it('a keeper whose passes hang (frozen marker, live lease) while its postgres is down: failed over after failInterval', () => {
    const loop = new Loop(healthyPair().build());
    // k1's last publish said all is well; then its pass hung (the disk under it), so it keeps
    // reporting that while the store backend keeps its lease alive.
    let k1: KeeperInfo | undefined;
    const hung = (cd: ClusterData) => {
      k1 ??= keeperInfo('k1', cd);
      return { keepers: [k1, keeperInfo('k2', cd)], proxies: [proxyInfo('p1', cd.proxy.generation)], stalled: ['k1'] };
    };
    let out = loop.pass(hung, 1_000); // t = 1000: first seen
    check(out, decideInput(loop.cd), { changed: false });
    out = loop.pass(hung, 6_000); // t = 7000: exactly failInterval
    check(out, decideInput(loop.cd), { changed: false, notReasons: ['lost'] });
    out = loop.pass(hung, 1); // t = 7001
    check(out, decideInput(loop.cd), {
      next: { keepers: { k1: { status: { healthy: false } } }, proxy: { generation: 3, spec: { masterDbUid: '' } } },
      reasons: ['keeper k1 lost: no progress for 6001 ms', 'fencing proxies with proxy generation 3'],
    });
    out = loop.pass(hung, 100);
    check(out, decideInput(loop.cd), { dbs: ['db-k2'], reasons: ['promoting keeper k2'] });
  });

  it('primary postgres recovers within failInterval: the timer restarts from the next failure', () => {
    const loop = new Loop(healthyPair().build());
    const k1 = (pgHealthy: boolean) => (cd: ClusterData) => ({
      keepers: [keeperInfo('k1', cd, { pgHealthy }), keeperInfo('k2', cd)],
      proxies: [proxyInfo('p1', 2)],
    });
    loop.pass(k1(false), 1_000); // t = 1000
    const healed = loop.pass(k1(true), 4_000); // t = 5000
    expect(healed.memory.dbErrorSince).toEqual({});
    const again = loop.pass(k1(false), 3_000); // t = 8000: 7 s after the first failure, 0 s after this one
    check(again, decideInput(loop.cd), { memory: { dbErrorSince: { 'db-k1': 8_000 } }, notReasons: ['fencing'] });
  });

  it('init timeout: the DB is dropped and another keeper chosen (not the one that failed)', () => {
    const loop = new Loop(newClusterData(MINIMAL_SPEC, CLUSTER_UID, T0));
    const silent = (cd: ClusterData) => ({ keepers: [keeperInfo('k1', cd, { dbUid: '', generation: 0 }), keeperInfo('k2', cd, { dbUid: '' })] });
    check(loop.pass(silent, 1_000), decideInput(loop.cd), { dbs: ['u1'], next: { dbs: { u1: { spec: { keeperUID: 'k1' } } } } });
    check(loop.pass(silent, 300_000), decideInput(loop.cd), { dbs: ['u1'], reasons: ['waiting for keeper k1 to initialize db u1'] });
    check(loop.pass(silent, 1), decideInput(loop.cd), { dbs: [], reasons: ['did not initialize db u1 within initTimeout 5m0s'] });
    check(loop.pass(silent, 1_000), decideInput(loop.cd), { dbs: ['u2'], reasons: ['keeper k2 chosen as initial primary (db u2, initMode new)'] });
  });
});

describe('decide, pass after pass, with synchronous replication', () => {
  it('bootstrap blocks on the fake standby, a standby becomes synchronous and known, the primary is lost, the known one is promoted', () => {
    const loop = new Loop(newClusterData(SYNC_SPEC, CLUSTER_UID, T0));
    const proxies = (cd: ClusterData) => [proxyInfo('p1', cd.proxy.generation)];
    const both = (cd: ClusterData, k1: Parameters<typeof keeperInfo>[2] = {}) => ({
      keepers: [keeperInfo('k1', cd, { xLogPos: LSN, ...k1 }), keeperInfo('k2', cd, { xLogPos: LSN })],
      proxies: proxies(cd),
    });

    loop.pass(both); // k1 chosen, u1
    loop.pass(both); // initialized
    // u1 converged: routed, k2 gets u2; no standby can be synchronous yet → the fake standby.
    let out = loop.pass(both);
    check(out, decideInput(loop.cd), {
      dbs: ['u1', 'u2'],
      next: { dbs: { u1: { spec: { synchronousReplication: true, synchronousStandbys: [], externalSynchronousStandbys: [FAKE] } } } },
      reasons: [`adding ${FAKE}`],
    });

    // u2 synced: it becomes the synchronous standby, the fake one goes.
    out = loop.pass(both);
    check(out, decideInput(loop.cd), {
      next: { dbs: { u1: { spec: { synchronousStandbys: ['u2'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: [] } } } },
      reasons: ['now [u2] (were [])', `${FAKE} removed`],
    });
    // Not yet reported in sync: waiting.
    out = loop.pass(both);
    check(out, decideInput(loop.cd), { reasons: ['waiting for synchronous standbys [u2]'] });
    // k1 reports u2 `sync`: known.
    out = loop.pass((cd) => both(cd, { syncStandbys: ['u2'] }));
    check(out, decideInput(loop.cd), { next: { dbs: { u1: { status: { synchronousStandbys: ['u2'] } } } } });
    out = loop.pass((cd) => both(cd, { syncStandbys: ['u2'] }));
    check(out, decideInput(loop.cd), { changed: false });

    // k1 lost: fence, then promote u2 (known in sync), which inherits [u1] until the next pass.
    const k2Only = (cd: ClusterData) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN })], proxies: proxies(cd) });
    loop.pass(k2Only);
    out = loop.pass(k2Only);
    check(out, decideInput(loop.cd), {
      dbs: ['u2'],
      next: { cluster: { status: { master: 'u2' } }, dbs: { u2: { spec: { role: 'master', synchronousStandbys: ['u1'], externalSynchronousStandbys: [] } } } },
      reasons: ['promoting keeper k2 (db u2', 'new primary db u2 waits for synchronous standbys [u1]'],
    });
    // u2 promoted and converged: the deleted u1 dropped; no standby left → the fake standby.
    out = loop.pass((cd) => ({ keepers: [keeperInfo('k2', cd, { xLogPos: LSN, timeline: 2 })], proxies: proxies(cd) }));
    check(out, decideInput(loop.cd), {
      next: { proxy: { spec: { masterDbUid: 'u2' } }, dbs: { u2: { spec: { synchronousStandbys: [], externalSynchronousStandbys: [FAKE] } } } },
      reasons: ['routing proxies [p1] to primary k2 (db u2)', 'synchronous standbys [u1] of primary k2 (db u2) failed or were removed', `adding ${FAKE}`],
    });
  });
});

describe('decide, pass after pass, synchronous failover with 3 keepers', () => {
  it('the promotion re-points k3 and lists it at once; k3 still converging is kept; k2 reports it sync and it caught up: known, with no sync-set write in between', () => {
    const loop = new Loop(syncTrio().build());
    const proxies = (cd: ClusterData) => [proxyInfo('p1', cd.proxy.generation)];
    // k1 lost: the first pass fences the proxies, the next one promotes k2 (known in sync).
    const survivors = (cd: ClusterData, k2: Parameters<typeof keeperInfo>[2] = {}, k3: Parameters<typeof keeperInfo>[2] = {}) => ({
      keepers: [keeperInfo('k2', cd, { xLogPos: LSN, ...k2 }), keeperInfo('k3', cd, { xLogPos: LSN, ...k3 })],
      proxies: proxies(cd),
    });
    loop.pass(survivors, 7_000);
    let out = loop.pass(survivors);
    check(out, decideInput(loop.cd), {
      dbs: ['db-k2', 'db-k3'],
      next: {
        cluster: { status: { master: 'db-k2' } },
        dbs: {
          'db-k2': { spec: { role: 'master', synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [], followers: ['db-k3'] }, status: { synchronousStandbys: [] } },
          'db-k3': { spec: { followConfig: { type: 'internal', dbuid: 'db-k2' } } },
        },
      },
      reasons: ['promoting keeper k2', 'new primary db db-k2 waits for synchronous standbys [db-k3] from the start'],
    });
    const k3Generation = loop.cd.dbs['db-k3']!.generation;
    // k2 promoted and converged; k3 has not applied the re-pointing yet: routed, k3 kept, no fake standby.
    out = loop.pass((cd) => survivors(cd, { timeline: 2 }, { generation: k3Generation - 1 }));
    check(out, decideInput(loop.cd), {
      next: { proxy: { spec: { masterDbUid: 'db-k2' } }, dbs: { 'db-k2': { spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] } } } },
      reasons: ['routing proxies [p1] to primary k2 (db db-k2)', 'waiting for synchronous standbys [db-k3]'],
      notReasons: ['failed or were removed', `adding ${FAKE}`],
    });
    // k3 follows on timeline 2 and k2 reports it `sync`: first report records the threshold, k3 is there: known.
    out = loop.pass((cd) => survivors(cd, { timeline: 2, syncStandbys: ['db-k3'] }, { timeline: 2 }));
    check(out, decideInput(loop.cd), {
      next: { dbs: { 'db-k2': { spec: { synchronousStandbys: ['db-k3'], externalSynchronousStandbys: [] }, status: { synchronousStandbys: ['db-k3'] } } } },
    });
  });
});

describe('decide: keeper addresses for pg_hba', () => {
  it("records a keeper's address on its DB before its data directory holds that DB (its first clone), so the primary admits its replication", () => {
    const cd = healthyPair().build();
    const info = keeperInfo('k2', cd, { dbUid: '' });
    info.postgresState!.listenAddress = '10.0.0.9';
    const out = decide(observe(cd, ['k1', info], [proxyInfo('p1', 2)]));
    const db = Object.values(out.next.dbs).find((d) => d.spec.keeperUID === 'k2');
    expect(db?.status).toMatchObject({ listenAddress: '10.0.0.9', healthy: false });
  });
});
