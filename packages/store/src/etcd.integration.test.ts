/**
 * EtcdStore against a real etcd (one per file, started by the harness): the conformance suite,
 * then etcd-specific behaviour (bounded failure when etcd is gone, recovery after a restart).
 */
import { NotLeaderError, StoreUnavailableError } from '@stolon-ts/cluster';
import { startEtcd, waitFor, type EtcdHandle } from '@stolon-ts/harness';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeStoreConformance } from '../test/conformance.js';
import { EtcdStore } from './etcd.js';
import type { InfoChange, WatchTopic } from './store.js';

const PREFIX = 'stolon/cluster';

describeStoreConformance('etcd', async () => {
  const etcd = await startEtcd();
  const raw = new Etcd3({ hosts: etcd.endpoints });
  return {
    store: (clusterName) => new EtcdStore({ endpoints: etcd.endpoints, clusterName, timeoutMs: 3000 }),
    writeRawInfo: async (clusterName, kind, uid, text) => {
      await raw.put(`${PREFIX}/${clusterName}/${kind}/info/${uid}`).value(text);
    },
    crash: async (store) => (store as EtcdStore).abandon(),
    // etcd grants whole seconds and at least 2 s with its default timing.
    ttlMs: 2000,
    expirySlackMs: 4000,
    cleanup: async () => {
      raw.close();
      await etcd.stop();
    },
  };
});

describe('EtcdStore with etcd going away', () => {
  let etcd: EtcdHandle;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('fails with StoreUnavailableError within about timeoutMs once etcd is killed, and recovers after a restart', async () => {
    const timeoutMs = 2000;
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'gone', timeoutMs });
    const seen: WatchTopic[] = [];
    const w = await store.watch(['clusterdata'], (t) => seen.push(t));
    const rev = await store.putClusterData('{"v":1}', null);
    await store.setInfo('keepers', 'k1', { infoUID: 'i', uid: 'k1', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 20_000);
    await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'clusterdata event' });

    await etcd.kill();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['getClusterData', () => store.getClusterData()],
      ['putClusterData', () => store.putClusterData('{"v":2}', rev)],
      ['overwriteClusterData', () => store.overwriteClusterData('{"v":3}')],
      ['setInfo', () => store.setInfo('sentinels', 's1', { UID: 's1' }, 20_000)],
      ['listInfos', () => store.listInfos('keepers')],
      ['getLeader', () => store.getLeader()],
      ['watch', () => store.watch(['proxies'], () => undefined)],
    ];
    for (const [name, call] of calls) {
      const t0 = performance.now();
      const err = await call().then(
        () => new Error(`${name} succeeded with etcd killed`),
        (e: unknown) => e,
      );
      const elapsed = performance.now() - t0;
      expect(err, name).toBeInstanceOf(StoreUnavailableError);
      expect(elapsed, `${name} took ${Math.round(elapsed)} ms`).toBeLessThan(timeoutMs + 2000);
    }

    // Same data dir and ports: the store reconnects by itself and the watch reports the reconnect.
    seen.length = 0;
    await etcd.restart();
    const cd = await waitFor(async () => store.getClusterData(), { timeoutMs: 15_000, what: 'etcd to answer again' });
    expect(cd).toEqual({ text: '{"v":1}', revision: rev });
    await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 15_000, what: 'watch callback after reconnect' });
    await store.setInfo('sentinels', 's1', { UID: 's1' }, 20_000);
    expect(Object.keys(await store.listInfos('sentinels'))).toEqual(['s1']);

    const t0 = performance.now();
    await w.close();
    await store.close();
    expect(performance.now() - t0).toBeLessThan(timeoutMs * 2 + 1000);
  });

  it('close() returns within a bounded time when etcd is gone', async () => {
    const timeoutMs = 1000;
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'gone2', timeoutMs });
    await store.setInfo('proxies', 'p1', { infoUID: 'i', UID: 'p1', Generation: 1, ProxyTimeout: 1 }, 20_000);
    const e = await store.campaign('s1', 20_000);
    await waitFor(() => e.isLeader(), { timeoutMs: 10_000, what: 's1 to lead' });
    await store.watch(['keepers'], () => undefined);
    await etcd.kill();
    const t0 = performance.now();
    await store.close();
    expect(performance.now() - t0).toBeLessThan(timeoutMs * 2 + 2000);
    expect(e.isLeader()).toBe(false);
    await etcd.restart();
  });

  it('gives up leadership before the lease can expire when etcd stops answering', async () => {
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'paused', timeoutMs: 1000 });
    const e = await store.campaign('s1', 3000);
    await waitFor(() => e.isLeader(), { timeoutMs: 10_000, what: 's1 to lead' });
    etcd.process.pause();
    try {
      const t0 = performance.now();
      await waitFor(() => !e.isLeader(), { timeoutMs: 5000, what: 's1 to give up leadership', intervalMs: 20 });
      // Lease TTL 3 s: leadership must end by 3/4 of it after the last confirmed keepalive.
      expect(performance.now() - t0).toBeLessThan(3000 * 0.75 + 100);
    } finally {
      etcd.process.resume();
    }
    await waitFor(() => e.isLeader(), { timeoutMs: 15_000, what: 's1 to lead again after etcd resumed' });
    await store.close();
  });

  it('a guarded clusterdata write fails once the leader\'s candidate key is gone, whether or not the election noticed yet', async () => {
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'guard', timeoutMs: 2000 });
    const raw = new Etcd3({ hosts: etcd.endpoints });
    try {
      const e = await store.campaign('s1', 20_000);
      await waitFor(() => e.isLeader(), { timeoutMs: 10_000, what: 's1 to lead' });
      const rev = await store.putClusterData('{"v":1}', null, e);
      // Another party removes the key (as an expired lease would); the transaction compares it.
      await raw.delete().prefix(`${PREFIX}/guard/sentinel-leader/`).exec();
      await expect(store.putClusterData('{"v":2}', rev, e)).rejects.toBeInstanceOf(NotLeaderError);
      expect((await store.getClusterData())?.text).toBe('{"v":1}');
      await store.close();
    } finally {
      raw.close();
    }
  });
});

describe('EtcdStore election at rest', () => {
  let etcd: EtcdHandle;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('a leader reads the candidates again only after a watch event or once a TTL, and still steps down at once when its key is deleted', async () => {
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'rest', timeoutMs: 2000 });
    const raw = new Etcd3({ hosts: etcd.endpoints });
    let reads = 0;
    const candidates = store.candidates.bind(store);
    store.candidates = async (deadline: number) => {
      reads += 1;
      return candidates(deadline);
    };
    try {
      // TTL 3 s: a keepalive and a recheck every 1 s, each an attempt.
      const e = await store.campaign('s1', 3000);
      await waitFor(() => e.isLeader(), { timeoutMs: 10_000, what: 's1 to lead' });
      await new Promise((r) => setTimeout(r, 500));
      const before = reads;
      await new Promise((r) => setTimeout(r, 6000));
      // About 12 attempts in 6 s; the candidates read at most once a TTL (2, a third at a boundary).
      expect(reads - before).toBeLessThanOrEqual(3);
      expect(reads - before).toBeGreaterThanOrEqual(1);
      expect(e.isLeader()).toBe(true);

      // Another party deletes the key: the watch event makes the next attempt read, and s1 steps down.
      const t0 = performance.now();
      await raw.delete().prefix(`${PREFIX}/rest/sentinel-leader/`).exec();
      await waitFor(() => !e.isLeader(), { timeoutMs: 3000, what: 's1 to step down', intervalMs: 10 });
      expect(performance.now() - t0).toBeLessThan(1000);
      await store.close();
    } finally {
      raw.close();
    }
  });
});

describe('EtcdStore.watchInfoValues and readClusterView', () => {
  let etcd: EtcdHandle;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('gives every info put and delete with its value, in order, and a resync after a reconnect', async () => {
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'values', timeoutMs: 2000 });
    const topics: WatchTopic[] = [];
    const changes: InfoChange[] = [];
    const w = await store.watchInfoValues(['clusterdata', 'keepers'], (t) => topics.push(t), (c) => changes.push(c));
    const info = (infoUID: string) => ({ infoUID, uid: 'k1', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } });
    await store.setInfo('keepers', 'k1', info('a'), 20_000);
    await store.setInfo('keepers', 'k1', info('b'), 20_000);
    await store.setInfo('proxies', 'p1', { infoUID: 'x', UID: 'p1', Generation: 1, ProxyTimeout: 1 }, 20_000);
    await store.putClusterData('{"v":1}', null);
    await store.deleteInfo('keepers', 'k1');
    await waitFor(() => changes.length >= 3 && topics.includes('clusterdata'), { timeoutMs: 5000, what: 'the events' });
    expect(changes.map((c) => ({ ...c, revision: undefined }))).toEqual([
      { kind: 'keepers', uid: 'k1', text: JSON.stringify(info('a')) },
      { kind: 'keepers', uid: 'k1', text: JSON.stringify(info('b')) },
      { kind: 'keepers', uid: 'k1', text: null },
    ]);
    // Each with the store revision of its put or delete, in order, and at or below a read made after them.
    const revisions = changes.map((c) => BigInt(('revision' in c && c.revision) || '0'));
    expect(revisions.every((r, i) => r > 0n && (i === 0 || r > revisions[i - 1]!))).toBe(true);
    expect(BigInt((await store.readClusterView()).revision ?? '0')).toBeGreaterThanOrEqual(revisions[2]!);
    expect(topics).toContain('keepers');
    expect(topics).not.toContain('proxies');

    changes.length = 0;
    await etcd.kill();
    await etcd.restart();
    await waitFor(() => changes.some((c) => 'resync' in c), { timeoutMs: 15_000, what: 'a resync after the reconnect' });
    expect(changes).toContainEqual({ kind: 'keepers', resync: true });
    await w.close();
    await store.close();
  });

  it('readClusterView gives what getClusterData and listInfos give, in one read, and nothing of another cluster', async () => {
    const store = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'view', timeoutMs: 2000 });
    const other = new EtcdStore({ endpoints: etcd.endpoints, clusterName: 'view2', timeoutMs: 2000 });
    expect(await store.readClusterView()).toEqual({ clusterData: null, keepers: {}, proxies: {}, revision: expect.stringMatching(/^\d+$/) });
    await store.putClusterData('{"v":1}', null);
    await store.setInfo('keepers', 'k1', { infoUID: 'a', uid: 'k1', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 20_000);
    await store.setInfo('proxies', 'p1', { infoUID: 'x', UID: 'p1', Generation: 1, ProxyTimeout: 1 }, 20_000);
    await store.setInfo('sentinels', 's1', { UID: 's1' }, 20_000);
    await other.putClusterData('{"v":2}', null);
    await other.setInfo('keepers', 'k9', { infoUID: 'z', uid: 'k9', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 20_000);
    const view = await store.readClusterView();
    expect(view).toEqual({ clusterData: await store.getClusterData(), keepers: await store.listInfos('keepers'), proxies: await store.listInfos('proxies'), revision: view.revision });
    // The read's revision: the store's at the read, at or above that of every key it returned.
    expect(BigInt(view.revision ?? '0')).toBeGreaterThanOrEqual(BigInt(view.clusterData?.revision ?? '1'));
    expect(Object.keys(view.keepers)).toEqual(['k1']);
    await other.close();
    await store.close();
  });
});
