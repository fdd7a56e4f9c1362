/** `resolveTarget` and `resolveReadOnlyTargets`: one case per rule, each built from one valid clusterdata. */
import { describe, expect, it } from 'vitest';
import { ClusterDataInvalidError, newClusterData, validateSpec, type ClusterData } from '@stolon-ts/cluster';
import { resolveReadOnlyTargets, resolveTarget, sameTarget, type ProxyTarget } from './target.js';

function cd(mutate: (c: ClusterData & Record<string, unknown>) => void = () => undefined): ClusterData {
  const c = newClusterData(validateSpec({ initMode: 'new' }), 'c1', '2024-01-01T00:00:00.000Z');
  c.proxy.generation = 7;
  c.proxy.spec = { masterDbUid: 'db1', enabledProxies: ['px1'] };
  // Only the fields the proxy reads; the rest of a DB does not matter here.
  (c.dbs as Record<string, unknown>)['db1'] = { uid: 'db1', spec: { role: 'master' }, status: { listenAddress: '127.0.0.1', port: '5433' } };
  mutate(c as ClusterData & Record<string, unknown>);
  return JSON.parse(JSON.stringify(c)) as ClusterData;
}

function setDbStatus(c: ClusterData, status: unknown): void {
  (c.dbs as Record<string, unknown>)['db1'] = { uid: 'db1', spec: { role: 'master' }, status };
}

describe('resolveTarget', () => {
  const cases: Array<[string, ClusterData, string]> = [
    ['1. enabled, primary with an address: routes', cd(), 'routing to 127.0.0.1:5433 (db db1, proxy generation 7)'],
    ['2. masterDbUid "": fenced', cd((c) => (c.proxy.spec.masterDbUid = '')), 'fenced: no primary published (proxy generation 7)'],
    [
      '3. masterDbUid absent (Stolon omits empty values): fenced',
      cd((c) => (c.proxy.spec = { enabledProxies: ['px1'] } as never)),
      'fenced: no primary published (proxy generation 7)',
    ],
    [
      '4. not in enabledProxies: fenced',
      cd((c) => (c.proxy.spec.enabledProxies = ['px2'])),
      'fenced: this proxy (px1) is not in enabledProxies (proxy generation 7)',
    ],
    [
      '5. enabledProxies null: fenced',
      cd((c) => ((c.proxy.spec as { enabledProxies: unknown }).enabledProxies = null)),
      'fenced: this proxy (px1) is not in enabledProxies (proxy generation 7)',
    ],
    [
      '6. primary DB missing: fenced',
      cd((c) => (c.proxy.spec.masterDbUid = 'db9')),
      'fenced: primary db db9 is not in clusterdata (proxy generation 7)',
    ],
    [
      '7. primary without an address yet: fenced',
      cd((c) => setDbStatus(c, { listenAddress: '', port: '' })),
      'fenced: primary db db1 has not published its address yet (proxy generation 7)',
    ],
    [
      '8. IPv6 address: bracketed in the sentence',
      cd((c) => setDbStatus(c, { listenAddress: '::1', port: '5433' })),
      'routing to [::1]:5433 (db db1, proxy generation 7)',
    ],
    [
      '9. the published primary is a standby in its spec (clusterdata wrong): fenced, never routed to',
      cd((c) => ((c.dbs as Record<string, unknown>)['db1'] = { uid: 'db1', spec: { role: 'standby' }, status: { listenAddress: '127.0.0.1', port: '5433' } })),
      'fenced: db db1 is published as the primary but its spec role is "standby", not "master" (proxy generation 7)',
    ],
    [
      "10. standby cluster: the DB following the external primary (role standby, followConfig external) is routed to",
      cd((c) => ((c.dbs as Record<string, unknown>)['db1'] = {
        uid: 'db1',
        spec: { role: 'standby', followConfig: { type: 'external' } },
        status: { listenAddress: '127.0.0.1', port: '5433' },
      })),
      'routing to 127.0.0.1:5433 (db db1, proxy generation 7)',
    ],
  ];
  it.each(cases)('%s', (_title, input, reason) => {
    expect(resolveTarget(input, 'px1').reason).toBe(reason);
  });

  it('returns the target and generation', () => {
    expect(resolveTarget(cd(), 'px1')).toMatchObject({ target: { dbUid: 'db1', host: '127.0.0.1', port: 5433 }, generation: 7 });
    expect(resolveTarget(cd((c) => (c.proxy.spec.masterDbUid = '')), 'px1').target).toBeNull();
  });

  const invalid: Array<[string, ClusterData, string]> = [
    ['generation not a number', cd((c) => ((c.proxy as { generation: unknown }).generation = '7')), 'proxy.generation'],
    ['enabledProxies a string', cd((c) => ((c.proxy.spec as { enabledProxies: unknown }).enabledProxies = 'px1')), 'proxy.spec.enabledProxies'],
    ['masterDbUid a number', cd((c) => ((c.proxy.spec as { masterDbUid: unknown }).masterDbUid = 1)), 'proxy.spec.masterDbUid'],
    ['DB without status', cd((c) => ((c.dbs as Record<string, unknown>)['db1'] = { uid: 'db1' })), 'dbs.db1.status'],
    ['port out of range', cd((c) => setDbStatus(c, { listenAddress: 'h', port: '70000' })), 'dbs.db1.status.port'],
    ['port not numeric', cd((c) => setDbStatus(c, { listenAddress: 'h', port: '54x' })), 'dbs.db1.status.port'],
  ];
  it.each(invalid)('malformed: %s → ClusterDataInvalidError naming the field', (_title, input, field) => {
    let caught: unknown;
    try {
      resolveTarget(input, 'px1');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ClusterDataInvalidError);
    expect((caught as ClusterDataInvalidError).field).toBe(field);
  });

  it('holds new clients only while a planned switchover is in progress and there is no target', () => {
    const withEvent = (kind: 'switchover' | 'failover', routed: boolean, result?: 'completed' | 'aborted') =>
      cd((c) => {
        if (!routed) {
          c.proxy.spec.masterDbUid = '';
        }
        c.cluster.status.failover = {
          id: 'e',
          kind,
          cause: 'test',
          oldPrimary: { keeperUID: 'k1', dbUid: 'db1', xLogPos: 0 },
          phases: { declaredFailed: '2024-01-01T00:00:00.000Z' },
          ...(result === undefined ? {} : { result }),
        };
      });
    const sw = resolveTarget(withEvent('switchover', false), 'px1');
    expect(sw.target).toBeNull();
    expect(sw.hold).toBe(true);
    expect(sw.reason).toBe(
      'fenced: no primary published (proxy generation 7); planned switchover in progress: holding new connections until the new primary is routed',
    );
    expect(resolveTarget(withEvent('failover', false), 'px1').hold).toBe(false);
    expect(resolveTarget(withEvent('switchover', false, 'aborted'), 'px1').hold).toBe(false);
    expect(resolveTarget(withEvent('switchover', true), 'px1')).toMatchObject({ hold: false, target: { dbUid: 'db1' } });
    expect(resolveTarget(cd((c) => (c.proxy.spec.masterDbUid = '')), 'px1').hold).toBe(false);
  });

  it('sameTarget compares db, host and port', () => {
    const t = { dbUid: 'a', host: 'h', port: 1 };
    expect(sameTarget(null, null)).toBe(true);
    expect(sameTarget(t, null)).toBe(false);
    expect(sameTarget(t, { ...t })).toBe(true);
    expect(sameTarget(t, { ...t, port: 2 })).toBe(false);
    expect(sameTarget(t, { ...t, dbUid: 'b' })).toBe(false);
  });
});

// ------------------------------------------------------------------ read-only listener

const PRIMARY_LSN = 10_000_000;
const MAX_LAG = 1_000_000;
const PRIMARY: ProxyTarget = { dbUid: 'db1', host: '127.0.0.1', port: 5433 };

interface DbFields {
  role?: string;
  generation?: number;
  currentGeneration?: number;
  healthy?: boolean;
  port?: string;
  timelineID?: number;
  xLogPos?: number;
  replayedXLogPos?: number;
}

function aDb(uid: string, f: DbFields): unknown {
  const status: Record<string, unknown> = {
    healthy: f.healthy ?? true,
    currentGeneration: f.currentGeneration ?? f.generation ?? 2,
    listenAddress: '127.0.0.1',
    port: f.port ?? '5433',
    timelineID: f.timelineID ?? 1,
    xLogPos: f.xLogPos ?? PRIMARY_LSN,
  };
  if (f.replayedXLogPos !== undefined) {
    status['replayedXLogPos'] = f.replayedXLogPos;
  }
  return { uid, generation: f.generation ?? 2, spec: { role: f.role ?? 'standby' }, status };
}

/** Primary db1 (LSN 10 000 000, timeline 1) routed to; standbys db2 (port 5434) and db3 (5435) in sync. */
function roCd(mutate: (dbs: Record<string, unknown>, c: ClusterData) => void = () => undefined): ClusterData {
  return cd((c) => {
    c.cluster.status.master = 'db1';
    const dbs = c.dbs as Record<string, unknown>;
    dbs['db1'] = aDb('db1', { role: 'master' });
    dbs['db2'] = aDb('db2', { port: '5434', replayedXLogPos: PRIMARY_LSN });
    dbs['db3'] = aDb('db3', { port: '5435', replayedXLogPos: PRIMARY_LSN - 500 });
    mutate(dbs, c);
  });
}

describe('resolveReadOnlyTargets', () => {
  const cases: Array<[string, ClusterData, { fallback?: ProxyTarget; targets: string[]; reason: string }]> = [
    [
      '1. two standbys in sync: both, sorted by uid, lag in the sentence',
      roCd(),
      { targets: ['db2', 'db3'], reason: 'read-only: 2 standbys (db2 lag 0 B, db3 lag 500 B)' },
    ],
    [
      '2. replayed LSN behind the bound while received WAL is fresh: excluded (replay lag counts)',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', xLogPos: PRIMARY_LSN, replayedXLogPos: PRIMARY_LSN - MAX_LAG - 1 }))),
      { targets: ['db2'], reason: 'read-only: 1 standby (db2 lag 0 B); excluded db3: lag 1000001 B > 1000000 B' },
    ],
    [
      '3. exactly at the bound: included',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', replayedXLogPos: PRIMARY_LSN - MAX_LAG }))),
      { targets: ['db2', 'db3'], reason: 'read-only: 2 standbys (db2 lag 0 B, db3 lag 1000000 B)' },
    ],
    [
      '4. no replayedXLogPos (an older keeper): xLogPos is used',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', xLogPos: PRIMARY_LSN - 2 * MAX_LAG }))),
      { targets: ['db2'], reason: 'read-only: 1 standby (db2 lag 0 B); excluded db3: lag 2000000 B > 1000000 B' },
    ],
    [
      '5. a standby reported ahead of the primary (reports taken at different moments): lag 0',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', replayedXLogPos: PRIMARY_LSN + 100 }))),
      { targets: ['db2', 'db3'], reason: 'read-only: 2 standbys (db2 lag 0 B, db3 lag 0 B)' },
    ],
    [
      '6. unhealthy standby: excluded',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', healthy: false }))),
      { targets: ['db2'], reason: 'read-only: 1 standby (db2 lag 0 B); excluded db3: unhealthy' },
    ],
    [
      '7. standby not converged to its spec: excluded (it may still be a primary being demoted)',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', generation: 3, currentGeneration: 2 }))),
      { targets: ['db2'], reason: 'read-only: 1 standby (db2 lag 0 B); excluded db3: not converged (generation 2 of 3)' },
    ],
    [
      '8. standby on another timeline than the primary: excluded',
      roCd((dbs) => (dbs['db3'] = aDb('db3', { port: '5435', timelineID: 2 }))),
      { targets: ['db2'], reason: 'read-only: 1 standby (db2 lag 0 B); excluded db3: timeline 2, primary on 1' },
    ],
    [
      '9. standby chosen for promotion (role master, now the wanted primary): not a read-only target; the others measured against it',
      roCd((dbs, c) => {
        dbs['db2'] = aDb('db2', { port: '5434', role: 'master', generation: 3 });
        c.cluster.status.master = 'db2';
        c.proxy.spec.masterDbUid = '';
      }),
      { targets: ['db3'], reason: 'read-only: 1 standby (db3 lag 500 B)' },
    ],
    [
      '10. no standby qualifies, fallback given: the primary',
      roCd((dbs) => {
        delete dbs['db2'];
        delete dbs['db3'];
      }),
      { fallback: PRIMARY, targets: ['db1'], reason: 'read-only: no standby within 1000000 B, falling back to the primary 127.0.0.1:5433 (db db1)' },
    ],
    [
      '11. standby without an address yet: excluded',
      roCd((dbs) => (dbs['db2'] = aDb('db2', { port: '', replayedXLogPos: PRIMARY_LSN }))),
      { targets: ['db3'], reason: 'read-only: 1 standby (db3 lag 500 B); excluded db2: no address' },
    ],
    [
      '12. standbys qualify, fallback given: standbys only (the primary is not added)',
      roCd(),
      { fallback: PRIMARY, targets: ['db2', 'db3'], reason: 'read-only: 2 standbys (db2 lag 0 B, db3 lag 500 B)' },
    ],
    [
      '13. a malformed standby object: excluded, the others still served',
      roCd((dbs) => (dbs['db3'] = { uid: 'db3', spec: 'x' })),
      { targets: ['db2'], reason: 'read-only: 1 standby (db2 lag 0 B); excluded db3: malformed' },
    ],
    [
      '14. the wanted primary missing from dbs: no reference LSN, nowhere',
      roCd((_dbs, c) => (c.cluster.status.master = 'db9')),
      {
        targets: [],
        reason: 'read-only: no standby within 1000000 B, routing nowhere; excluded db2: no primary LSN to measure lag against, db3: no primary LSN to measure lag against',
      },
    ],
  ];
  it.each(cases)('%s', (_title, input, e) => {
    const out = resolveReadOnlyTargets(input, { maxLagBytes: MAX_LAG, ...(e.fallback ? { fallback: e.fallback } : {}) });
    expect(out.targets.map((t) => t.dbUid)).toEqual(e.targets);
    expect(out.reason).toBe(e.reason);
    expect(out.fallback).toBe(e.fallback !== undefined && e.targets[0] === 'db1');
  });

  it('returns each standby\'s address', () => {
    expect(resolveReadOnlyTargets(roCd(), { maxLagBytes: MAX_LAG }).targets).toEqual([
      { dbUid: 'db2', host: '127.0.0.1', port: 5434 },
      { dbUid: 'db3', host: '127.0.0.1', port: 5435 },
    ]);
  });
});
