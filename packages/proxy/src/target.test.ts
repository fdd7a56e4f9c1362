/** `resolveTarget`: one case per rule, built from one valid clusterdata. */
import { describe, expect, it } from 'vitest';
import { ClusterDataInvalidError, newClusterData, validateSpec, type ClusterData } from '@stolon-ts/cluster';
import { resolveTarget, sameTarget } from './target.js';

function cd(mutate: (c: ClusterData & Record<string, unknown>) => void = () => undefined): ClusterData {
  const c = newClusterData(validateSpec({ initMode: 'new' }), 'c1', '2024-01-01T00:00:00.000Z');
  c.proxy.generation = 7;
  c.proxy.spec = { masterDbUid: 'db1', enabledProxies: ['px1'] };
  // Only the fields the proxy reads; the rest of a DB does not matter here.
  (c.dbs as Record<string, unknown>)['db1'] = { uid: 'db1', status: { listenAddress: '127.0.0.1', port: '5433' } };
  mutate(c as ClusterData & Record<string, unknown>);
  return JSON.parse(JSON.stringify(c)) as ClusterData;
}

function setDbStatus(c: ClusterData, status: unknown): void {
  (c.dbs as Record<string, unknown>)['db1'] = { uid: 'db1', status };
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

  it('sameTarget compares db, host and port', () => {
    const t = { dbUid: 'a', host: 'h', port: 1 };
    expect(sameTarget(null, null)).toBe(true);
    expect(sameTarget(t, null)).toBe(false);
    expect(sameTarget(t, { ...t })).toBe(true);
    expect(sameTarget(t, { ...t, port: 2 })).toBe(false);
    expect(sameTarget(t, { ...t, dbUid: 'b' })).toBe(false);
  });
});
