/**
 * The sentinel in-process on the memory store, for what its pass does with malformed clusterdata
 * (docs/architecture.md#invalid-clusterdata): it refuses to act on a document it cannot repair
 * safely, logging an error naming the path and the fix on every pass while keeping its leadership
 * and its info, and it drops malformed entries not needed for safety (a standby DB, a keeper entry).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseClusterData, serializeClusterData, type ClusterData } from '@stolon-ts/cluster';
import { aCluster, keeperInfo } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import { MemoryBackend, MemoryStore } from '@stolon-ts/store';
import { start, type SentinelHandle } from './sentinel.js';

interface Line {
  level: number;
  msg: string;
}
const ERROR = 50;

const handles: SentinelHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) {
    await h.stop('test over');
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(20);
  }
}

/** Primary k1, standby k2, both keepers live (infos published). */
function healthyPair(): ClusterData {
  return aCluster().initialized().withPrimary('k1').withStandby('k2').routedTo('k1', []).build();
}

/** A sentinel on a memory store holding `text` as clusterdata, with live infos of keepers k1 and k2 of `cd`. */
async function startWith(cd: ClusterData, text: string): Promise<{ store: MemoryStore; lines: Line[]; handle: SentinelHandle }> {
  const backend = new MemoryBackend();
  const store = new MemoryStore(backend, { clusterName: 'c' });
  await store.overwriteClusterData(text);
  for (const k of ['k1', 'k2']) {
    await store.setInfo('keepers', k, keeperInfo(k, cd), 60_000);
  }
  const lines: Line[] = [];
  const logger = createLogger({ level: 'debug', component: 'sentinel', dest: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  const handle = await start({ uid: 's1', leaderTtlMs: 2000 }, { store: new MemoryStore(backend, { clusterName: 'c' }), logger });
  handles.push(handle);
  return { store, lines, handle };
}

const errors = (lines: readonly Line[]) => lines.filter((l) => l.level === ERROR).map((l) => l.msg);

describe('sentinel with malformed clusterdata', () => {
  it('refuses to act on a malformed primary DB: an error naming the path and the fix every pass; leadership, info and the stored bytes kept', async () => {
    const cd = healthyPair();
    const doc = JSON.parse(serializeClusterData(cd)) as { dbs: Record<string, { spec: Record<string, unknown> }> };
    doc.dbs['db-k1']!.spec['keeperUID'] = 7;
    const text = JSON.stringify(doc);
    const { store, lines, handle } = await startWith(cd, text);
    await until('two refusals', () => errors(lines).filter((m) => m.startsWith('clusterdata unusable, refusing to act')).length >= 2);
    const msg = errors(lines).find((m) => m.startsWith('clusterdata unusable'))!;
    expect(msg).toContain('dbs.db-k1.spec.keeperUID: expected string, got number 7');
    expect(msg).toContain('not repaired: dbs.db-k1.spec.keeperUID: DB db-k1 is the primary');
    expect(msg).toContain('correct the named fields in the stored document, or restore a good copy of it');
    expect(handle.isLeader()).toBe(true);
    expect(Object.keys(await store.listInfos('sentinels'))).toEqual(['s1']);
    expect((await store.getClusterData())!.text).toBe(text);
  });

  it('drops a malformed standby DB with a reason and goes on deciding: the keeper gets a new standby DB', async () => {
    const cd = healthyPair();
    const doc = JSON.parse(serializeClusterData(cd)) as { dbs: Record<string, { status: Record<string, unknown> }> };
    doc.dbs['db-k2']!.status['xLogPos'] = '0/3000000';
    const { store, lines } = await startWith(cd, JSON.stringify(doc));
    await until('the repaired document stored', async () => (await store.getClusterData())!.text.includes('"db-k2"') === false);
    const after = parseClusterData((await store.getClusterData())!.text);
    expect(after.cluster.status.master).toBe('db-k1');
    expect(Object.values(after.dbs).map((d) => d.spec.keeperUID).sort()).toEqual(['k1', 'k2']);
    expect(errors(lines).join('\n')).toContain(
      'repaired: dropped standby DB db-k2 (dbs.db-k2.status.xLogPos: expected number, got string "0/3000000"); its keeper gets a new standby DB (a resync)',
    );
  });

  it('drops a malformed keeper entry of a live keeper: registered again, its standby DB kept', async () => {
    const cd = healthyPair();
    const doc = JSON.parse(serializeClusterData(cd)) as { keepers: Record<string, Record<string, unknown>> };
    doc.keepers['k2']!['status'] = 'ok';
    const { store, lines } = await startWith(cd, JSON.stringify(doc));
    await until('the repaired document stored', async () => !(await store.getClusterData())!.text.includes('"status":"ok"'));
    const after = parseClusterData((await store.getClusterData())!.text);
    expect(after.keepers['k2']?.status.healthy).toBe(true);
    expect(after.dbs['db-k2']?.spec.keeperUID).toBe('k2');
    expect(errors(lines).join('\n')).toContain("dropped keeper entry k2 (keepers.k2.status: expected object, got string \"ok\"); it is registered again from its keeper's live info");
  });

  it.each<[string, 'keepers' | 'proxies', string, Record<string, unknown>, string]>([
    ['a malformed proxy info refuses the pass (a failover must wait for that proxy)', 'proxies', 'p1', { infoUID: 'i', UID: 'p1', ProxyTimeout: 4e9 },
      'the info of proxy p1 is malformed (Generation: expected number, got nothing (the field is missing)); refusing to act'],
    ['a malformed info of the primary\'s keeper refuses the pass', 'keepers', 'k1', { infoUID: 'i', uid: 'k1', clusterUID: 'c1a55e00', bootUUID: 'b', postgresBinaryVersion: { Maj: 15, Min: 0 }, postgresState: null },
      'the info of keeper k1, which holds the primary, is malformed (postgresState: expected object, got null); refusing to act'],
  ])('%s', async (_title, kind, uid, info, message) => {
    const cd = healthyPair();
    const text = serializeClusterData(cd);
    const { store, lines } = await startWith(cd, text);
    await store.setInfo(kind, uid, info as never, 60_000);
    await until('a refusal', () => errors(lines).some((m) => m.includes(message)));
    expect((await store.getClusterData())!.text).toBe(text);
  });

  it('leaves out a malformed info of a standby\'s keeper, which then counts as not live', async () => {
    const cd = healthyPair();
    const { store, lines } = await startWith(cd, serializeClusterData(cd));
    await store.setInfo('keepers', 'k2', { ...keeperInfo('k2', cd), postgresState: { uid: 'db-k2' } } as never, 60_000);
    await until('k2 marked unhealthy', async () => parseClusterData((await store.getClusterData())!.text).keepers['k2']?.status.healthy === false);
    expect(errors(lines).join('\n')).toContain('ignored the malformed info of keeper k2 (postgresState.generation: expected number, got nothing (the field is missing)');
  });
});
