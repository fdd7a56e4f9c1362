import { describe, expect, it } from 'vitest';
import { aCluster, CLUSTER_UID, deepFreeze, T0 } from './testing.js';
import { newClusterData, parseClusterData, repairClusterData, serializeClusterData } from './clusterdata.js';
import { ClusterDataInvalidError, SpecValidationError } from './errors.js';
import type { ClusterData, ClusterSpec, KeeperInfo } from './types.js';

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
    ['a cluster without uid', withCluster({ uid: 7 }), 'cluster.uid', 'cluster.uid: expected string, got number 7'],
    ['a cluster without status', withCluster({ status: undefined }), 'cluster.status', 'cluster.status: expected object, got nothing (the field is missing)'],
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

/** A populated cluster (primary k1, standbys k2 and k3, keeper k4 without DB) as a plain object, to break one piece of. */
function populated(): Record<string, unknown> {
  const cd = aCluster().initialized().withPrimary('k1').withStandby('k2').withStandby('k3').withKeeper('k4').routedTo('k1', ['p1']).build();
  return JSON.parse(serializeClusterData(cd)) as Record<string, unknown>;
}

/**
 * A stored document as JSON: the tests break it on purpose, so they edit it untyped.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- hand-broken JSON has no type
type LooseDoc = Record<string, any>;

/** `populated()` with `edit` applied to it (the document as a mutable plain object). */
function broken(edit: (doc: LooseDoc) => void): string {
  const doc = populated();
  edit(doc);
  return JSON.stringify(doc);
}

const FIX_SENTENCE = 'correct the named fields in the stored document, or restore a good copy of it';

describe('parseClusterData validates the whole document, naming the path', () => {
  it.each<[string, string, string, string]>([
    ['a DB entry that is null', broken((d) => (d.dbs['x'] = null)), 'dbs.x', 'dbs.x: expected object, got null'],
    ['a DB without spec', broken((d) => delete d.dbs['db-k2'].spec), 'dbs.db-k2.spec', 'dbs.db-k2.spec: expected object, got nothing'],
    ['a DB keeperUID of the wrong type', broken((d) => (d.dbs['db-k2'].spec.keeperUID = null)), 'dbs.db-k2.spec.keeperUID', 'dbs.db-k2.spec.keeperUID: expected string, got null'],
    ['a DB xLogPos as a string', broken((d) => (d.dbs['db-k2'].status.xLogPos = '0/3000000')), 'dbs.db-k2.status.xLogPos', 'expected number, got string "0/3000000"'],
    ['a negative DB generation', broken((d) => (d.dbs['db-k2'].generation = -1)), 'dbs.db-k2.generation', 'dbs.db-k2.generation: '],
    ['an unknown DB role', broken((d) => (d.dbs['db-k2'].spec.role = 'replica')), 'dbs.db-k2.spec.role', 'expected one of "master", "standby", got string "replica"'],
    ['followers not a list', broken((d) => (d.dbs['db-k1'].spec.followers = 'db-k2')), 'dbs.db-k1.spec.followers', 'expected array'],
    ['a keeper with a non-object status', broken((d) => (d.keepers['k2'].status = 'ok')), 'keepers.k2.status', 'keepers.k2.status: expected object, got string "ok"'],
    ['a keeper healthy flag as a string', broken((d) => (d.keepers['k2'].status.healthy = 'true')), 'keepers.k2.status.healthy', 'expected boolean'],
    ['enabledProxies not an array', broken((d) => (d.proxy.spec.enabledProxies = 'p1')), 'proxy.spec.enabledProxies', 'proxy.spec.enabledProxies: expected array, got string "p1"'],
    ['a proxy generation as a string', broken((d) => (d.proxy.generation = '3')), 'proxy.generation', 'expected number'],
    ['an unknown cluster phase', broken((d) => (d.cluster.status.phase = 'running')), 'cluster.status.phase', 'cluster.status.phase: expected one of "initializing", "normal"'],
    ['a failoverHistory that is not a list', broken((d) => (d.failoverHistory = {})), 'failoverHistory', 'failoverHistory: expected array'],
    ['a failoverHistory event without phases', broken((d) => (d.failoverHistory = [{ id: 'e1', kind: 'failover', cause: 'x', oldPrimary: { keeperUID: 'k', dbUid: 'd', xLogPos: 0 } }])), 'failoverHistory.0.phases', 'failoverHistory.0.phases: expected object'],
    ['a DB stored under another key', broken((d) => (d.dbs['db-k2'].uid = 'db-k9')), 'dbs.db-k2.uid', 'dbs.db-k2.uid: is "db-k9", not the entry\'s key "db-k2"'],
    ['a keeper stored under another key', broken((d) => (d.keepers['k4'].uid = 'k5')), 'keepers.k4.uid', 'not the entry\'s key "k4"'],
    ['a DB naming a keeper not in keepers', broken((d) => delete d.keepers['k3']), 'dbs.db-k3.spec.keeperUID', 'dbs.db-k3.spec.keeperUID: names keeper "k3", which is not in keepers'],
    ['a primary that is not in dbs', broken((d) => (d.cluster.status.master = 'gone')), 'cluster.status.master', 'cluster.status.master: names DB "gone", which is not in dbs'],
    ['a primary whose DB is a standby', broken((d) => (d.cluster.status.master = 'db-k2')), 'cluster.status.master', 'whose spec.role is "standby"'],
  ])('%s', (_title, text, field, message) => {
    const err = parseError(text);
    expect(err.code).toBe('CLUSTERDATA_INVALID');
    expect(err.field).toBe(field);
    expect(err.message).toContain(message);
    expect(err.message).toContain(FIX_SENTENCE);
  });

  it('lists every problem, at most five, then how many more', () => {
    const err = parseError(broken((d) => {
      for (const k of ['k1', 'k2', 'k3', 'k4']) {
        d.keepers[k].generation = 'x';
        d.keepers[k].changeTime = 1;
      }
    }));
    expect(err.message).toContain('keepers.k1.generation: expected number');
    expect(err.message).toContain('; and 3 more;');
  });

  it('accepts and keeps fields a newer minor version may add, outside the spec', () => {
    const text = broken((d) => {
      d.newTopLevel = { a: 1 };
      d.dbs['db-k2'].status.newStatusField = 'x';
      d.keepers['k2'].status.newFlag = true;
      d.proxy.spec.newRoutingHint = 'y';
    });
    const cd = parseClusterData(text) as unknown as LooseDoc;
    expect(cd.newTopLevel).toEqual({ a: 1 });
    expect(cd.dbs['db-k2'].status.newStatusField).toBe('x');
    expect(JSON.parse(serializeClusterData(cd as unknown as ClusterData))).toEqual(JSON.parse(text));
  });
});

describe('repairClusterData (the leader sentinel\'s read)', () => {
  const none = {};
  /** Live infos of keepers `uids` (this cluster's uid unless `clusterUID` says otherwise). */
  const live = (uids: string[], clusterUID = CLUSTER_UID): Record<string, KeeperInfo> =>
    Object.fromEntries(uids.map((uid) => [uid, { infoUID: 'i', uid, clusterUID, bootUUID: 'b', postgresBinaryVersion: { Maj: 15, Min: 0 } }]));

  it('returns a valid document unchanged, dropping nothing', () => {
    const text = JSON.stringify(populated());
    expect(repairClusterData(text, none)).toEqual({ cd: JSON.parse(text), dropped: [] });
  });

  it.each<[string, string, Record<string, KeeperInfo>, string[], string[]]>([
    ['a malformed standby DB is dropped', broken((d) => (d.dbs['db-k2'].status.xLogPos = 'x')), none, ['db-k2'], [
      'dropped standby DB db-k2 (dbs.db-k2.status.xLogPos: expected number, got string "x"); its keeper gets a new standby DB (a resync)',
    ]],
    ['a null DB entry is dropped', broken((d) => (d.dbs['x'] = null)), none, ['x'], ['dropped standby DB x (dbs.x: expected object, got null)']],
    ['a malformed keeper entry is dropped, its live keeper\'s standby kept', broken((d) => (d.keepers['k2'].status = 'ok')), live(['k2']), [], [
      'dropped keeper entry k2 (keepers.k2.status: expected object, got string "ok"); it is registered again from its keeper\'s live info',
    ]],
    ['a malformed keeper entry of a dead keeper takes its standby DB with it', broken((d) => (d.keepers['k3'].generation = null)), live(['k3'], 'another-cluster'), ['db-k3'], [
      'dropped keeper entry k3',
      'dropped standby DB db-k3 (dbs.db-k3.spec.keeperUID: names keeper "k3", which is not in keepers)',
    ]],
    ['a keeper without DB is dropped', broken((d) => (d.keepers['k4'].uid = 'k5')), none, [], ['dropped keeper entry k4 (keepers.k4.uid: is "k5"']],
    ['a malformed failoverHistory element is dropped, the others kept', broken((d) => (d.failoverHistory = [{ id: 'bad' }])), none, [], ['dropped failoverHistory[0]']],
  ])('%s', (_title, text, live, goneDbs, sentences) => {
    const { cd, dropped } = repairClusterData(text, live);
    for (const uid of goneDbs) {
      expect(cd.dbs[uid]).toBeUndefined();
    }
    expect(dropped).toHaveLength(sentences.length);
    sentences.forEach((s, i) => expect(dropped[i]).toContain(s));
    expect(cd.dbs['db-k1']).toBeDefined();
    expect(cd.cluster.status.master).toBe('db-k1');
  });

  it.each<[string, string, string]>([
    ['a malformed primary DB', broken((d) => (d.dbs['db-k1'].spec.role = 7)), 'not repaired: dbs.db-k1.spec.role: DB db-k1 is the primary'],
    ['a primary that is not in dbs', broken((d) => (d.cluster.status.master = 'gone')), 'not repaired: cluster.status.master: not inside a keeper, DB or failoverHistory entry'],
    ['a malformed proxy object', broken((d) => (d.proxy.spec.enabledProxies = 'p1')), 'not repaired: proxy.spec.enabledProxies'],
    ['a malformed cluster status', broken((d) => (d.cluster.status.phase = 'x')), 'not repaired: cluster.status.phase'],
    ['a malformed keeper entry of the primary\'s keeper', broken((d) => (d.keepers['k1'].status = null)), 'keeper k1 holds the primary DB'],
    ['a malformed synchronous standby', broken((d) => {
      d.dbs['db-k1'].spec.synchronousStandbys = ['db-k2'];
      d.dbs['db-k2'].status.healthy = 'yes';
    }), 'DB db-k2 is the primary, the proxies\' target, part of a failover in progress or a synchronous standby'],
    ['a DB on a dead keeper that the proxies route to', broken((d) => {
      d.proxy.spec.masterDbUid = 'db-k3';
      delete d.keepers['k3'];
    }), 'not repaired: dbs.db-k3.spec.keeperUID'],
  ])('refuses %s', (_title, text, message) => {
    let caught: unknown;
    try {
      repairClusterData(text, none);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ClusterDataInvalidError);
    expect((caught as Error).message).toContain(message);
    expect((caught as Error).message).toContain(FIX_SENTENCE);
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
