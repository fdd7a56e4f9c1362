import { describe, expect, it } from 'vitest';
import { aCluster, deepFreeze, T0 } from './testing.js';
import { newClusterData, parseClusterData, serializeClusterData } from './clusterdata.js';
import { ClusterDataInvalidError, SpecValidationError } from './errors.js';
import type { ClusterSpec } from './types.js';

function parseError(text: string): ClusterDataInvalidError {
  try {
    parseClusterData(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ClusterDataInvalidError);
    return err as ClusterDataInvalidError;
  }
  throw new Error('expected a ClusterDataInvalidError, nothing was thrown');
}

/** A valid document as a plain object, to break one piece of. */
function validDoc(): Record<string, unknown> {
  return JSON.parse(serializeClusterData(newClusterData({ initMode: 'new' }, 'c1', T0))) as Record<string, unknown>;
}

function withCluster(patch: Record<string, unknown>): string {
  const doc = validDoc();
  doc['cluster'] = { ...(doc['cluster'] as Record<string, unknown>), ...patch };
  return JSON.stringify(doc);
}

describe('parseClusterData rejects', () => {
  it.each<[string, string, string | undefined, string]>([
    ['bad JSON', '{"formatVersion": 1,', undefined, 'clusterdata is not valid JSON'],
    ['empty input', '', undefined, 'not valid JSON'],
    ['a JSON array', '[]', undefined, 'not a JSON object'],
    ['JSON null', 'null', undefined, 'not a JSON object'],
    ['formatVersion 2', JSON.stringify({ ...validDoc(), formatVersion: 2 }), 'formatVersion', 'unsupported clusterdata format version 2; this version reads only 1'],
    ['formatVersion "1" (a string)', JSON.stringify({ ...validDoc(), formatVersion: '1' }), 'formatVersion', 'format version "1"'],
    ['no formatVersion', JSON.stringify({ ...validDoc(), formatVersion: undefined }), 'formatVersion', 'unsupported clusterdata format version'],
    ['no cluster', JSON.stringify({ ...validDoc(), cluster: undefined }), 'cluster', 'clusterdata.cluster is missing'],
    ['no keepers', JSON.stringify({ ...validDoc(), keepers: undefined }), 'keepers', 'clusterdata.keepers is missing'],
    ['dbs not an object', JSON.stringify({ ...validDoc(), dbs: [] }), 'dbs', 'clusterdata.dbs is missing or not an object'],
    ['no proxy', JSON.stringify({ ...validDoc(), proxy: null }), 'proxy', 'clusterdata.proxy is missing'],
    ['a cluster without uid', withCluster({ uid: 7 }), 'cluster', 'lacks uid or status'],
    ['a cluster without status', withCluster({ status: undefined }), 'cluster', 'lacks uid or status'],
    ['a spec with a timing violation', withCluster({ spec: { initMode: 'new', proxyCheckInterval: '5s' } }), 'cluster.spec.proxyCheckInterval', 'clusterdata.cluster.spec is invalid: invalid cluster spec: proxyCheckInterval: 5s'],
    ['a spec with a wrong type', withCluster({ spec: { initMode: 'new', maxStandbys: 'many' } }), 'cluster.spec.maxStandbys', 'maxStandbys:'],
    ['a spec with an unknown nested field', withCluster({ spec: { initMode: 'new', newConfig: { x: 1 } } }), 'cluster.spec.newConfig.x', 'newConfig.x: unknown field'],
    ['a spec without initMode', withCluster({ spec: {} }), 'cluster.spec.initMode', 'initMode: is required'],
  ])('%s', (_title, text, field, message) => {
    const err = parseError(text);
    expect(err.code).toBe('CLUSTERDATA_INVALID');
    expect(err.field).toBe(field);
    expect(err.message).toContain(message);
  });

  it('keeps the JSON error as cause', () => {
    expect(parseError('{').cause).toBeInstanceOf(SyntaxError);
  });

  it('keeps the spec error, with every issue, as cause', () => {
    const err = parseError(withCluster({ spec: { initMode: 'new', foo: 1, bar: 2 } }));
    expect(err.cause).toBeInstanceOf(SpecValidationError);
    expect((err.cause as SpecValidationError).issues).toEqual([
      'foo, bar: unknown fields; see docs/cluster-spec.md for the fields a spec may have',
    ]);
  });
});

describe('parseClusterData accepts', () => {
  it('a fresh document, round-tripping through serializeClusterData', () => {
    const cd = newClusterData({ initMode: 'new' }, 'c1', T0);
    expect(parseClusterData(serializeClusterData(cd))).toEqual(cd);
  });

  it('a populated cluster', () => {
    const cd = aCluster().initialized().withPrimary('k1').withStandby('k2').withKeeper('k3').routedTo('k1', ['p1']).build();
    expect(parseClusterData(serializeClusterData(cd))).toEqual(cd);
  });
});

describe('newClusterData', () => {
  it('starts initializing, with no primary, keepers or DBs and proxies routed nowhere', () => {
    expect(newClusterData({ initMode: 'new' }, 'c1', T0)).toEqual({
      formatVersion: 1,
      changeTime: T0,
      cluster: { uid: 'c1', generation: 1, changeTime: T0, spec: { initMode: 'new' }, status: { phase: 'initializing', master: '' } },
      keepers: {},
      dbs: {},
      proxy: { uid: '', generation: 1, changeTime: T0, spec: { masterDbUid: '', enabledProxies: [] }, status: {} },
    });
  });

  it('copies the spec instead of sharing it', () => {
    const spec = deepFreeze<ClusterSpec>({ initMode: 'new', pgParameters: { a: '1' } });
    const cd = newClusterData(spec, 'c1', T0);
    (cd.cluster.spec.pgParameters as Record<string, string>)['b'] = '2';
    expect(spec.pgParameters).toEqual({ a: '1' });
  });
});
