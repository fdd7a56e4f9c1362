/** Table tests of the keeper's Patroni-style role endpoints and the role facts its metrics export. */
import { describe, expect, it } from 'vitest';
import type { ClusterData } from '@stolon-ts/cluster';
import { aCluster, STANDBY_SPEC } from '@stolon-ts/cluster/testing';
import type { PgObservation } from '@stolon-ts/postgres';
import { healthCheck, parseLag, primaryCheck, readOnlyCheck, replicaCheck, roleFacts, syncCheck, type RoleCheckInput } from './role-checks.js';
import type { KeeperFacts, KeeperState, PublishedView } from './types.js';

const MB = 1024 * 1024;

/** k1 holds the primary db-k1 (at 100 MB), k2 and k3 standbys; proxies route to db-k1; sync on, db-k2 known in sync. */
function cluster(mutate: (cd: ClusterData) => void = () => undefined): ClusterData {
  const cd = aCluster({ uid: 'c1', spec: { initMode: 'new', synchronousReplication: true } })
    .initialized()
    .withPrimary('k1', { xLogPos: 100 * MB, synchronousStandbys: ['db-k2', 'stolonfakestandby'], knownSynchronousStandbys: ['db-k2'] })
    .withStandby('k2')
    .withStandby('k3')
    .routedTo('k1', ['p1'])
    .build();
  mutate(cd);
  return cd;
}

const base: PgObservation = {
  initialized: true,
  running: true,
  role: 'master',
  systemId: '7000000000000000001',
  timelineId: 2,
  xLogPos: 100 * MB,
  replication: [],
  slots: [],
  olderWalFile: '',
  pendingRestart: [],
  timelinesHistory: [],
};
const primaryObs = base;
/** A standby 1 MB behind the primary's position in clusterdata, streaming; last replayed commit 3 s before the observation. */
const standbyObs: PgObservation = { ...base, role: 'standby', xLogPos: 99 * MB, receivedXLogPos: 99 * MB, replayedXLogPos: 99 * MB, walReceiverStreaming: true, lastReplayAtMs: 1_000_000 - 3000 };

const NOW = 50_000;

interface Setup {
  readonly keeper?: string;
  readonly state?: KeeperState;
  readonly cd?: ClusterData | undefined;
  readonly obs?: PgObservation | undefined;
  readonly view?: Partial<PublishedView>;
  /** Monotonic ms of the last publish and of the last observation; default 1 s before NOW. */
  readonly viewAtMs?: number;
  readonly obsAtMs?: number;
}

function input(s: Setup): RoleCheckInput {
  const keeper = s.keeper ?? 'k1';
  const obs = 'obs' in s ? s.obs : keeper === 'k1' ? primaryObs : standbyObs;
  const cd = 'cd' in s ? s.cd : cluster();
  const facts: KeeperFacts = {
    view: { cd, local: { uid: `db-${keeper}`, generation: 1, clusterUID: 'c1' }, obs: obs ?? base, task: undefined, bootUuid: 'b', healthy: true, ...s.view },
    viewAtMs: s.viewAtMs ?? NOW - 1000,
    obs,
    obsAtMs: obs === undefined ? undefined : (s.obsAtMs ?? NOW - 1000),
    obsWallMs: 1_000_000,
    errors: { store: 0, pass: 0, task: 0 },
    lastErrorWallMs: undefined,
    lastSuccessWallMs: undefined,
    lastValidCdWallMs: undefined,
  };
  return { keeperUid: keeper, state: s.state ?? 'running', facts, nowMs: NOW };
}

interface Case {
  readonly title: string;
  readonly setup: Setup;
  readonly query?: string;
  readonly ok: boolean;
  readonly reason: RegExp;
}

const primaryCases: Case[] = [
  { title: 'the running primary clusterdata wants, routed to', setup: {}, ok: true, reason: /^primary db db-k1$/ },
  { title: 'a standby', setup: { keeper: 'k2' }, ok: false, reason: /in recovery/ },
  { title: 'postgres down', setup: { obs: { ...primaryObs, running: false, error: 'postgres is not running' } }, ok: false, reason: /not running/ },
  { title: 'probe failed (shutting down)', setup: { obs: { ...primaryObs, error: 'probe query failed: 57P03' } }, ok: false, reason: /not answering/ },
  { title: 'keeper stopping', setup: { state: 'stopping' }, ok: false, reason: /keeper stopping/ },
  { title: 'stale observation (stuck passes)', setup: { obsAtMs: NOW - 7000 }, ok: false, reason: /last observed 7000 ms ago/ },
  { title: 'stale publish (store unreachable)', setup: { viewAtMs: NOW - 6001 }, ok: false, reason: /last published 6001 ms ago.*another primary/ },
  { title: 'self-fenced', setup: { view: { fenced: true } }, ok: false, reason: /self-fenced/ },
  { title: 'no clusterdata', setup: { cd: undefined }, ok: false, reason: /no db assigned/ },
  {
    title: 'clusterdata made another db the primary (this one still running writable)',
    setup: { cd: cluster((cd) => (cd.cluster.status.master = 'db-k2')) },
    ok: false,
    reason: /wants db db-k1 as a standby \(the primary is db-k2\)/,
  },
  { title: 'proxies fenced by a failover in progress', setup: { cd: cluster((cd) => (cd.proxy.spec.masterDbUid = '')) }, ok: false, reason: /proxies are fenced/ },
  {
    title: 'shut down for a switchover',
    setup: { cd: cluster((cd) => (cd.dbs['db-k1']!.spec.shutdownForSwitchover = true)) },
    ok: false,
    reason: /shut down for a switchover/,
  },
];

const replicaCases: Case[] = [
  { title: 'a streaming standby', setup: { keeper: 'k2' }, ok: true, reason: /^standby db db-k2 streaming, 1048576 bytes behind$/ },
  { title: 'the primary', setup: {}, ok: false, reason: /not in recovery/ },
  { title: 'WAL receiver not streaming', setup: { keeper: 'k2', obs: { ...standbyObs, walReceiverStreaming: false } }, ok: false, reason: /not streaming/ },
  { title: 'lag within ?lag=16MB', setup: { keeper: 'k2' }, query: 'lag=16MB', ok: true, reason: /streaming/ },
  { title: 'lag in bytes, exactly at the limit', setup: { keeper: 'k2' }, query: `lag=${MB}`, ok: true, reason: /streaming/ },
  { title: 'lag over ?lag=1kB', setup: { keeper: 'k2' }, query: 'lag=1kB', ok: false, reason: /lag 1048576 bytes is over 1024/ },
  { title: 'an invalid lag', setup: { keeper: 'k2' }, query: 'lag=lots', ok: false, reason: /not a size/ },
  {
    title: 'lag unknown (no primary position)',
    setup: { keeper: 'k2', cd: cluster((cd) => (cd.dbs['db-k1']!.status.xLogPos = 0)) },
    query: 'lag=1GB',
    ok: false,
    reason: /lag unknown/,
  },
  { title: 'still serves through a store outage (stale publish)', setup: { keeper: 'k2', viewAtMs: NOW - 60_000 }, ok: true, reason: /streaming/ },
  {
    title: 'in recovery but clusterdata wants it primary (promotion pending)',
    setup: { keeper: 'k2', cd: cluster((cd) => (cd.dbs['db-k2']!.spec.role = 'master')) },
    ok: false,
    reason: /wants db db-k2 as the primary/,
  },
  { title: 'postgres down', setup: { keeper: 'k2', obs: { ...standbyObs, running: false } }, ok: false, reason: /not running/ },
];

const readOnlyCases: Case[] = [
  { title: 'the primary', setup: {}, ok: true, reason: /^primary db db-k1$/ },
  { title: 'a streaming standby', setup: { keeper: 'k3' }, ok: true, reason: /standby db db-k3/ },
  { title: 'a standby over ?lag=', setup: { keeper: 'k3' }, query: 'lag=100', ok: false, reason: /neither the primary .* nor a readable standby .*over 100/ },
  { title: 'a deposed primary', setup: { cd: cluster((cd) => (cd.cluster.status.master = 'db-k2')) }, ok: false, reason: /neither/ },
];

const syncCases: Case[] = [
  { title: 'a standby known in sync', setup: { keeper: 'k2' }, ok: true, reason: /^synchronous standby db db-k2$/ },
  { title: 'an asynchronous standby', setup: { keeper: 'k3' }, ok: false, reason: /db-k3 is not a synchronous standby/ },
  {
    title: 'wanted but not known in sync yet',
    setup: { keeper: 'k2', cd: cluster((cd) => (cd.dbs['db-k1']!.status.synchronousStandbys = [])) },
    ok: false,
    reason: /not a synchronous standby known in sync/,
  },
  { title: 'the primary', setup: {}, ok: false, reason: /not in recovery/ },
];

const healthCases: Case[] = [
  { title: 'a running primary', setup: {}, ok: true, reason: /running as primary/ },
  { title: 'a running standby, even one clusterdata does not want', setup: { keeper: 'k2', cd: undefined }, ok: true, reason: /running as standby/ },
  { title: 'postgres down', setup: { obs: { ...primaryObs, running: false } }, ok: false, reason: /not running/ },
  { title: 'never observed', setup: { obs: undefined }, ok: false, reason: /not observed yet/ },
];

const checks: Record<string, (i: RoleCheckInput, q: URLSearchParams) => { ok: boolean; reason: string }> = {
  '/primary': (i) => primaryCheck(i),
  '/replica': replicaCheck,
  '/read-only': readOnlyCheck,
  '/sync': (i) => syncCheck(i),
  '/health': (i) => healthCheck(i),
};

describe.each([
  ['/primary', primaryCases],
  ['/replica', replicaCases],
  ['/read-only', readOnlyCases],
  ['/sync', syncCases],
  ['/health', healthCases],
] as const)('GET %s', (path, cases) => {
  it.each(cases)('$title', (c) => {
    const r = checks[path]!(input(c.setup), new URLSearchParams(c.query ?? ''));
    expect(r.ok, r.reason).toBe(c.ok);
    expect(r.reason).toMatch(c.reason);
  });
});

describe('a standby cluster\'s primary', () => {
  const cd = aCluster({ uid: 'c1', spec: STANDBY_SPEC }).initialized().withPrimary('k1').withStandby('k2').routedTo('k1', ['p1']).build();
  it('is not /primary, but is /replica and /read-only while it streams from the external primary', () => {
    const i = input({ keeper: 'k1', cd, obs: { ...standbyObs } });
    expect(primaryCheck(i).ok).toBe(false);
    expect(replicaCheck(i, new URLSearchParams()).ok).toBe(true);
    expect(readOnlyCheck(i, new URLSearchParams()).ok).toBe(true);
  });
});

describe('parseLag (Patroni\'s max-lag: bytes or PostgreSQL memory units)', () => {
  it.each([
    ['1048576', 1048576],
    ['16MB', 16 * MB],
    ['1GB', 1024 * MB],
    ['1024kB', MB],
    ['64 mb', 64 * MB],
    ['0', 0],
    ['512B', 512],
    ['1.5MB', 1.5 * MB],
  ])('%s → %d bytes', (text, bytes) => expect(parseLag(text)).toBe(bytes));
  it.each(['', 'MB', '-1', '16XB', '1e3', 'lots'])('%j is not a size', (text) => expect(parseLag(text)).toBeUndefined());
});

describe('roleFacts (the metrics\' roles, lag and synchronous figures)', () => {
  it('a primary: local and target primary, its known-in-sync and wanted synchronous standbys (fake one excluded)', () => {
    const r = roleFacts(input({}).facts, 'k1');
    expect(r).toMatchObject({ localRole: 'primary', targetRole: 'primary', lagBytes: undefined, synchronousStandby: false, synchronousStandbys: 1, synchronousStandbysWanted: 1 });
  });
  it('a standby behind: lag in bytes against the primary position in clusterdata, seconds since the last replayed commit', () => {
    const r = roleFacts(input({ keeper: 'k2' }).facts, 'k2');
    expect(r).toMatchObject({ localRole: 'standby', targetRole: 'standby', lagBytes: MB, lagSeconds: 3, synchronousStandby: true, synchronousStandbys: 0 });
  });
  it('a standby caught up (ahead of the stale position in clusterdata): 0 bytes, 0 s whatever its last commit\'s age', () => {
    const r = roleFacts(input({ keeper: 'k3', obs: { ...standbyObs, replayedXLogPos: 101 * MB, lastReplayAtMs: 0 } }).facts, 'k3');
    expect(r).toMatchObject({ lagBytes: 0, lagSeconds: 0, synchronousStandby: false });
  });
  it('postgres down: local role none; a keeper without a DB: target role none', () => {
    expect(roleFacts(input({ obs: { ...primaryObs, running: false } }).facts, 'k1').localRole).toBe('none');
    expect(roleFacts(input({ keeper: 'k9' }).facts, 'k9').targetRole).toBe('none');
  });
});
