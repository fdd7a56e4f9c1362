/**
 * The leader's copy of its last full read (view-cache.ts): unit rules, and the sentinel on a
 * memory store that reads and watches as etcd does (`readClusterView` with a revision,
 * `watchInfoValues` with the revision of each change).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { serializeClusterData, type KeeperInfo } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import { waitFor } from '@stolon-ts/harness';
import { MemoryBackend, MemoryStore, type ClusterView, type InfoChange, type InfoKind, type Store, type WatchTopic } from '@stolon-ts/store';
import { msUntilStalledKeeperFailed, publishingKeepers } from '../test/keepers.js';
import { start, type SentinelHandle } from './sentinel.js';
import { ViewCache, copyMaxAgeMs } from './view-cache.js';

const info = (uid: string, marker: string) => ({ uid, infoUID: marker }) as unknown as KeeperInfo;
const view = (revision: string, keepers: Record<string, KeeperInfo>): ClusterView => ({ clusterData: { text: '{}', revision: '1' }, keepers, proxies: {}, revision });
const put = (uid: string, marker: string, revision: string): InfoChange => ({ kind: 'keepers', uid, text: JSON.stringify(info(uid, marker)), revision });

describe('ViewCache', () => {
  it('serves one pass after a settled one, with the changes newer than the read applied; never after a pass that did not settle', async () => {
    const c = new ViewCache();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const reading = c.read(async () => {
      await gate;
      return view('10', { k1: info('k1', 'a') });
    }, 0);
    // Seen while the read is in flight: one already in it (revision 9), one newer (11).
    c.onInfo(put('k1', 'old', '9'));
    c.onInfo(put('k2', 'b', '11'));
    release();
    await reading;
    expect(c.take(1), 'no pass settled yet').toBeUndefined();
    c.settled(false);
    c.onInfo(put('k1', 'c', '12'));
    c.onInfo(put('k1', 'stale', '10'));
    const v = c.take(2);
    expect(v?.keepers).toEqual({ k1: info('k1', 'c'), k2: info('k2', 'b') });
    // Taken once per settle; the taken maps do not follow later changes.
    expect(c.take(3)).toBeUndefined();
    c.onInfo(put('k1', 'd', '13'));
    expect(v?.keepers['k1']).toEqual(info('k1', 'c'));
    // An info that is not a JSON object is left out, as readClusterView leaves it out.
    c.onInfo({ kind: 'keepers', uid: 'k2', text: '[1]', revision: '14' });
    c.settled(false);
    const w = c.take(4);
    expect(w?.keepers['k1']).toEqual(info('k1', 'd'));
    expect(Object.keys(w?.keepers ?? {})).toEqual(['k1']);
    // A pass that wrote: the next one reads.
    c.settled(true);
    expect(c.take(5)).toBeUndefined();
    // Too old (the default spec: 1.5 s): read again.
    c.settled(false);
    expect(c.take(1499)).toBeDefined();
    c.settled(false);
    expect(c.take(1500)).toBeUndefined();
  });

  it('drops the copy on a clusterdata event, a resync, a deleted info, a change without revision, or a read without revision', async () => {
    const ready = async (): Promise<ViewCache> => {
      const c = new ViewCache();
      await c.read(async () => view('10', { k1: info('k1', 'a') }), 0);
      c.settled(false);
      return c;
    };
    const cases: ((c: ViewCache) => void)[] = [
      (c) => c.onTopic('clusterdata'),
      (c) => c.onInfo({ kind: 'keepers', resync: true }),
      (c) => c.onInfo({ kind: 'keepers', uid: 'k1', text: null, revision: '11' }),
      (c) => c.onInfo({ kind: 'keepers', uid: 'k1', text: '{}' }),
      (c) => c.drop(),
    ];
    for (const spoil of cases) {
      const c = await ready();
      spoil(c);
      expect(c.take(1)).toBeUndefined();
    }
    const c = new ViewCache();
    await c.read(async () => ({ clusterData: null, keepers: {}, proxies: {} }), 0);
    c.settled(false);
    expect(c.take(1)).toBeUndefined();
    // A clusterdata event while the read is in flight spoils its answer.
    const d = new ViewCache();
    await d.read(async () => {
      d.onTopic('clusterdata');
      return view('10', {});
    }, 0);
    d.settled(false);
    expect(d.take(1)).toBeUndefined();
  });

  it('copyMaxAgeMs: half of the smaller of failInterval and the readiness bound, less sleepInterval; never negative', () => {
    expect(copyMaxAgeMs(6000, 5000, 1000)).toBe(1500);
    expect(copyMaxAgeMs(2000, 5000, 200)).toBe(800);
    expect(copyMaxAgeMs(6000, 9000, 3000)).toBe(0);
  });
});

/**
 * `inner` with etcd's two optional reads: `readClusterView` (one revision for the whole view) and
 * `watchInfoValues` (each info change with a newer revision, found by listing the infos of the
 * topic an event names). Counts the view reads.
 */
function etcdLike(inner: MemoryStore, counts: { views: number }): Store {
  let revision = 1;
  const extra: Pick<Store, 'readClusterView' | 'watchInfoValues'> = {
    async readClusterView() {
      counts.views++;
      const rev = revision;
      const [clusterData, keepers, proxies] = await Promise.all([inner.getClusterData(), inner.listInfos('keepers'), inner.listInfos('proxies')]);
      return { clusterData, keepers, proxies, revision: String(rev) };
    },
    async watchInfoValues(topics, listener, onInfo) {
      const seen: Record<string, Record<string, string>> = {};
      for (const kind of ['keepers', 'proxies'] as const) {
        seen[kind] = Object.fromEntries(Object.entries(await inner.listInfos(kind)).map(([u, i]) => [u, JSON.stringify(i)]));
      }
      return inner.watch(topics, (topic: WatchTopic) => {
        if (topic !== 'keepers' && topic !== 'proxies') {
          listener(topic);
          return;
        }
        const kind: InfoKind = topic;
        void inner.listInfos(kind).then((now) => {
          const before = seen[kind]!;
          for (const [uid, i] of Object.entries(now)) {
            const text = JSON.stringify(i);
            if (before[uid] !== text) {
              before[uid] = text;
              revision += 1;
              onInfo({ kind, uid, text, revision: String(revision) });
            }
          }
          for (const uid of Object.keys(before).filter((u) => now[u] === undefined)) {
            delete before[uid];
            revision += 1;
            onInfo({ kind, uid, text: null, revision: String(revision) });
          }
          listener(topic);
        });
      });
    },
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'readClusterView' || prop === 'watchInfoValues') {
        return extra[prop];
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const handles: SentinelHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) {
    await h.stop('test over');
  }
});

describe('sentinel with the view copy', () => {
  it('reads the store about once per copyMaxAgeMs, not every full pass, while only infos change; a keeper that stops is still failed after failInterval', { timeout: 20_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    // failInterval 2 s, sleepInterval 200 ms: the copy serves up to 800 ms; a full pass every 200 ms.
    const spec = { initMode: 'new', sleepInterval: '200ms', requestTimeout: '200ms', failInterval: '2s' } as const;
    await admin.overwriteClusterData(serializeClusterData(aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').build()));
    const counts = { views: 0 };
    const store = etcdLike(new MemoryStore(backend, { clusterName: 'c1' }), counts);
    const keepers = publishingKeepers(admin, ['k1', 'k2']);
    await keepers.publish();
    const ticker = setInterval(() => void keepers.publish().catch(() => undefined), 100);
    try {
      const h = await start({ uid: 's1', leaderTtlMs: 1000 }, { store, logger: createLogger({ level: 'silent', component: 'sentinel' }) });
      handles.push(h);
      await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      await new Promise((r) => setTimeout(r, 1500));
      const before = { views: counts.views, passes: h.health().loop.passes };
      await new Promise((r) => setTimeout(r, 3000));
      // A full pass every 200 ms (15 in 3 s) besides the watch passes; a store read about every 1 s.
      expect(h.health().loop.passes - before.passes).toBeGreaterThanOrEqual(12);
      expect(counts.views - before.views).toBeGreaterThanOrEqual(2);
      expect(counts.views - before.views).toBeLessThanOrEqual(5);
      expect(h.health().lastStoreReadAtMs).toBeGreaterThan(h.health().nowMs - 1500);

      // k2 stops making progress (its info lives on under its 10 s lease): failed once failInterval passed.
      const tookMs = await msUntilStalledKeeperFailed(admin, keepers, 'k2');
      expect(tookMs).toBeGreaterThan(1900);
      expect(tookMs).toBeLessThan(3000);
    } finally {
      clearInterval(ticker);
      await admin.close();
    }
  });
});
