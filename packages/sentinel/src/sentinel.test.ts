/**
 * The sentinel loop in-process on the memory store: its clusterdata writes are guarded by its
 * election (`Store.putClusterData` with `leader`), a write the store refuses because this
 * sentinel no longer leads is dropped, not retried as a conflict; and a proxy whose info lives
 * but never changes (its checks fail) does not block a failover.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NotLeaderError, STOLON_TS_VERSION, StoreUnavailableError, parseClusterData, serializeClusterData, type ClusterData } from '@stolon-ts/cluster';
import { aCluster, keeperInfo, proxyInfo } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import { waitFor } from '@stolon-ts/harness';
import { MemoryBackend, MemoryStore, type Election, type Store } from '@stolon-ts/store';
import { msUntilStalledKeeperFailed, publishingKeepers } from '../test/keepers.js';
import { infoNeedsPublish, start, type SentinelHandle } from './sentinel.js';

interface Put {
  readonly expectedRevision: string | null;
  readonly leader: Election | undefined;
}

/** Wraps `inner`: records every putClusterData; `refuse()` true makes it throw NotLeaderError instead. */
function recording(inner: MemoryStore, puts: Put[], refuse: () => boolean): Store {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'putClusterData') {
        return async (text: string, expectedRevision: string | null, leader?: Election) => {
          puts.push({ expectedRevision, leader });
          if (refuse()) {
            throw new NotLeaderError('not the sentinel leader of c1 (any more); clusterdata not written');
          }
          return target.putClusterData(text, expectedRevision, leader);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The republish-wait tests' world on the memory store: keepers k1 (primary) and k2 and proxy p1,
 * fast timings (failInterval 2 s). `publish(who)` writes the infos of `who` (default all three)
 * with new progress markers under 10 s leases: they outlive an outage in the store, as etcd's do
 * until it revokes the leases that expired while it was frozen, a moment after it runs again.
 */
async function republishRig(): Promise<{ backend: MemoryBackend; admin: MemoryStore; publish: (who?: readonly string[]) => Promise<void> }> {
  const backend = new MemoryBackend();
  const admin = new MemoryStore(backend, { clusterName: 'c1' });
  const spec = { initMode: 'new', sleepInterval: '200ms', requestTimeout: '500ms', failInterval: '2s', proxyCheckInterval: '200ms', proxyTimeout: '1s' } as const;
  await admin.overwriteClusterData(serializeClusterData(aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').routedTo('k1', ['p1'], 2).build()));
  let n = 0;
  const publish = async (who: readonly string[] = ['k1', 'k2', 'p1']): Promise<void> => {
    const cd = parseClusterData((await admin.getClusterData())?.text ?? '');
    n += 1;
    for (const k of who.filter((w) => w.startsWith('k'))) {
      await admin.setInfo('keepers', k, { ...keeperInfo(k, cd), infoUID: `${k}-${n}` }, 10_000);
    }
    if (who.includes('p1')) {
      await admin.setInfo('proxies', 'p1', { ...proxyInfo('p1', cd.proxy.generation), infoUID: `p1-${n}` }, 10_000);
    }
  };
  return { backend, admin, publish };
}

const handles: SentinelHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) {
    await h.stop('test over');
  }
});

/**
 * Starts sentinel s1 on `backend` with its log lines captured, waits until it leads and 600 ms
 * more, and returns it with the lines and the clusterdata read then.
 */
async function leadingLogged(
  backend: MemoryBackend,
  admin: MemoryStore,
  leaderTtlMs: number,
): Promise<{ h: SentinelHandle; lines: { msg: string }[]; before: ClusterData }> {
  const lines: { msg: string }[] = [];
  const logger = createLogger({ level: 'info', component: 'sentinel', dest: { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) } });
  const h = await start({ uid: 's1', leaderTtlMs }, { store: new MemoryStore(backend, { clusterName: 'c1' }), logger });
  handles.push(h);
  await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
  await new Promise((r) => setTimeout(r, 600));
  return { h, lines, before: parseClusterData((await admin.getClusterData())?.text ?? '') };
}

describe('sentinel', () => {
  it('guards every clusterdata write with its election; a write refused as not leader is dropped with a warning', { timeout: 15_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    const puts: Put[] = [];
    let refusing = false;
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger({
      level: 'debug',
      component: 'sentinel',
      uid: 's1',
      cluster: 'c1',
      dest: { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) },
    });
    const store = recording(new MemoryStore(backend, { clusterName: 'c1' }), puts, () => refusing);
    const h = await start({ uid: 's1', initialClusterSpec: { initMode: 'new' }, leaderTtlMs: 1000 }, { store, logger });
    handles.push(h);
    await waitFor(async () => (await admin.getClusterData()) !== null, { timeoutMs: 5000, what: 'the cluster created' });
    expect(puts.length).toBeGreaterThan(0);
    expect(puts.every((p) => p.leader !== undefined && p.leader.isLeader())).toBe(true);

    // A keeper appears: the decision needs a write, which the store refuses.
    refusing = true;
    const before = puts.length;
    const rec = await admin.getClusterData();
    await admin.setInfo(
      'keepers',
      'k1',
      {
        infoUID: 'i1',
        uid: 'k1',
        clusterUID: parseClusterData(rec?.text ?? '').cluster.uid,
        bootUUID: 'b1',
        postgresBinaryVersion: { Maj: 15, Min: 0 },
      },
      5000,
    );
    await waitFor(() => lines.find((l) => l.msg.startsWith('lost the leadership before writing: not the sentinel leader')), {
      timeoutMs: 5000,
      what: 'the refused write logged',
    });
    expect(puts.length).toBeGreaterThan(before);
    expect((await admin.getClusterData())?.revision).toBe(rec?.revision);
    await admin.close();
  });

  it("writes its own info once and lets the lease keep it, though every keeper publish runs a pass; writes it again when the lease is lost", { timeout: 25_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    const spec = { initMode: 'new', sleepInterval: '200ms', requestTimeout: '500ms', failInterval: '2s' } as const;
    await admin.overwriteClusterData(serializeClusterData(aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').build()));
    let infoWrites = 0;
    const inner = new MemoryStore(backend, { clusterName: 'c1' });
    const store = new Proxy(inner, {
      get(target, prop) {
        const v: unknown = Reflect.get(target, prop, target);
        if (prop === 'setInfo') {
          return (...args: Parameters<Store['setInfo']>) => {
            if (args[0] === 'sentinels') {
              infoWrites++;
            }
            return target.setInfo(...args);
          };
        }
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    let n = 0;
    const publish = async (): Promise<void> => {
      const cd = parseClusterData((await admin.getClusterData())?.text ?? '');
      n += 1;
      for (const k of ['k1', 'k2']) {
        await admin.setInfo('keepers', k, { ...keeperInfo(k, cd), infoUID: `${k}-${n}` }, 2000);
      }
    };
    const ticker = setInterval(() => void publish().catch(() => undefined), 50);
    try {
      const h = await start({ uid: 's1', leaderTtlMs: 1000 }, { store, logger: createLogger({ level: 'silent', component: 'sentinel' }) });
      handles.push(h);
      await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      await waitFor(async () => (await admin.listInfos('sentinels'))['s1'], { timeoutMs: 5000, what: "s1's info" });
      const before = infoWrites;
      // 2 s: about 80 keeper publishes, each waking the sentinel for a pass; the info TTL is 5 s.
      await new Promise((r) => setTimeout(r, 2000));
      expect(n).toBeGreaterThan(20);
      expect(infoWrites - before).toBe(0);
      expect((await admin.listInfos('sentinels'))['s1']).toEqual({ UID: 's1', Version: STOLON_TS_VERSION });
      // An outage longer than the info's TTL (5 s): the lease expires with the key; once the store
      // answers again, the next pass writes it anew.
      backend.setUnavailable(true);
      await new Promise((r) => setTimeout(r, 5500));
      backend.setUnavailable(false);
      await waitFor(async () => (await admin.listInfos('sentinels'))['s1'], { timeoutMs: 5000, what: "s1's info written again" });
      expect(infoWrites).toBeGreaterThan(before);
    } finally {
      clearInterval(ticker);
      await admin.close();
    }
  });

  it('in a steady cluster, a keeper publish that changes only its progress marker runs no full pass; a keeper that stops is still failed after failInterval', { timeout: 20_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    const spec = { initMode: 'new', sleepInterval: '1s', requestTimeout: '200ms', failInterval: '2s' } as const;
    await admin.overwriteClusterData(serializeClusterData(aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').build()));
    let reads = 0;
    const inner = new MemoryStore(backend, { clusterName: 'c1' });
    const store = new Proxy(inner, {
      get(target, prop) {
        const v: unknown = Reflect.get(target, prop, target);
        if (prop === 'getClusterData') {
          return () => {
            reads++;
            return target.getClusterData();
          };
        }
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const keepers = publishingKeepers(admin, ['k1', 'k2']);
    await keepers.publish();
    const ticker = setInterval(() => void keepers.publish().catch(() => undefined), 50);
    try {
      const h = await start({ uid: 's1', leaderTtlMs: 1000 }, { store, logger: createLogger({ level: 'silent', component: 'sentinel' }) });
      handles.push(h);
      await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      await new Promise((r) => setTimeout(r, 1500));
      const before = { reads, n: keepers.n };
      await new Promise((r) => setTimeout(r, 2000));
      // About 80 keeper publishes in 2 s; a full pass (which reads clusterdata) about every sleepInterval.
      expect(keepers.n - before.n).toBeGreaterThan(20);
      expect(reads - before.reads).toBeLessThanOrEqual(5);

      // k2 stops making progress (its info lives on under its 10 s lease): failed once failInterval passed.
      const tookMs = await msUntilStalledKeeperFailed(admin, keepers, 'k2');
      expect(tookMs).toBeGreaterThan(1900);
      expect(tookMs).toBeLessThan(3000);
    } finally {
      clearInterval(ticker);
      await admin.close();
    }
  });

  it('infoNeedsPublish: first time, TTL changed, lease lost or gone, or a TTL since the last write', () => {
    const last = { ttlMs: 5000, atMs: 1000 };
    expect(infoNeedsPublish(undefined, 5000, undefined, 0)).toBe(true);
    expect(infoNeedsPublish(last, 5000, 4000, 2000)).toBe(false);
    expect(infoNeedsPublish(last, 6000, 4000, 2000)).toBe(true);
    expect(infoNeedsPublish(last, 5000, undefined, 2000)).toBe(true);
    expect(infoNeedsPublish(last, 5000, 0, 2000)).toBe(true);
    expect(infoNeedsPublish(last, 5000, 4000, 5999)).toBe(false);
    expect(infoNeedsPublish(last, 5000, 4000, 6000)).toBe(true);
  });

  it('a proxy whose info lives but never changes (its checks fail) delays a failover by about proxyTimeout + 1 s, no more', { timeout: 20_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    const spec = { initMode: 'new', sleepInterval: '200ms', requestTimeout: '500ms', failInterval: '2s', proxyCheckInterval: '200ms', proxyTimeout: '1s' } as const;
    await admin.overwriteClusterData(
      serializeClusterData(aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').routedTo('k1', ['p1'], 2).build()),
    );
    // p1 published once at generation 2, then every check failed: the lease is kept alive (by
    // this client's keepalive), the info never changes again.
    await admin.setInfo('proxies', 'p1', { ...proxyInfo('p1', 2), ProxyTimeout: 1_000_000_000 }, 1000);
    // The keepers publish every 200 ms (a new infoUID each time), as a keeper does every pass.
    let keepers = ['k1', 'k2'];
    let n = 0;
    const publish = async (): Promise<ClusterData> => {
      const cd = parseClusterData((await admin.getClusterData())?.text ?? '');
      n += 1;
      for (const k of keepers) {
        await admin.setInfo('keepers', k, { ...keeperInfo(k, cd), infoUID: `${k}-${n}` }, 2000);
      }
      return cd;
    };
    await publish();
    const ticker = setInterval(() => void publish().catch(() => undefined), 200);
    try {
      const lines: { msg: string }[] = [];
      const logger = createLogger({
        level: 'info',
        component: 'sentinel',
        dest: { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) },
      });
      const h = await start({ uid: 's1', leaderTtlMs: 1000 }, { store: new MemoryStore(backend, { clusterName: 'c1' }), logger });
      handles.push(h);
      await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      await new Promise((r) => setTimeout(r, 500));

      // k1 (the primary's keeper) is lost.
      keepers = ['k2'];
      await admin.deleteInfo('keepers', 'k1');
      const lostAt = performance.now();
      const cd = await waitFor(
        async () => {
          const c = await publish();
          return c.cluster.status.master === 'db-k2' ? c : undefined;
        },
        { timeoutMs: 6000, what: 'db-k2 promoted', intervalMs: 100 },
      );
      // Fenced at once, then p1 was waited for until 1 s + 1 s after its marker was first seen.
      expect(performance.now() - lostAt).toBeLessThan(4000);
      expect(cd.proxy.spec.masterDbUid).toBe('');
      expect(lines.some((l) => /proxy p1 made no progress for \d+ ms .*not waiting for it/.test(l.msg))).toBe(true);
    } finally {
      clearInterval(ticker);
      await admin.close();
    }
  });
  it('after a store outage, infos that survived it under expired leases do not end the republish wait: their disappearance right after is no failover', { timeout: 30_000 }, async () => {
    const { backend, admin, publish } = await republishRig();
    await publish();
    let ticker: NodeJS.Timeout | undefined = setInterval(() => void publish().catch(() => undefined), 200);
    try {
      const { h, lines, before } = await leadingLogged(backend, admin, 1000);

      // The store is unreachable for 3 s (> failInterval): nobody publishes.
      clearInterval(ticker);
      ticker = undefined;
      backend.setUnavailable(true);
      await new Promise((r) => setTimeout(r, 3000));
      backend.setUnavailable(false);
      const back = lines.length;
      await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead again' });
      await new Promise((r) => setTimeout(r, 400));
      // The expired leases are revoked: the old infos vanish; the members publish again 400 ms later.
      for (const k of ['k1', 'k2']) {
        await admin.deleteInfo('keepers', k);
      }
      await admin.deleteInfo('proxies', 'p1');
      await new Promise((r) => setTimeout(r, 400));
      await publish();
      ticker = setInterval(() => void publish().catch(() => undefined), 200);
      await new Promise((r) => setTimeout(r, 1500));

      const after = parseClusterData((await admin.getClusterData())?.text ?? '');
      expect(after.cluster.status.failover).toBeUndefined();
      expect(after.failoverHistory ?? []).toEqual([]);
      expect(after.proxy.generation).toBe(before.proxy.generation);
      expect(after.cluster.status.master).toBe('db-k1');
      expect(lines.slice(back).some((l) => /waiting up to 2000 ms for keeper k1, keeper k2, proxy p1 to publish their infos again/.test(l.msg))).toBe(true);
    } finally {
      if (ticker !== undefined) {
        clearInterval(ticker);
      }
      await admin.close();
    }
  });
  it('a store outage shorter than failInterval during which the proxy info lease expired: the proxy stays enabled, no proxy generation change', { timeout: 30_000 }, async () => {
    const { backend, admin, publish } = await republishRig();
    await publish();
    let ticker: NodeJS.Timeout | undefined = setInterval(() => void publish().catch(() => undefined), 200);
    try {
      // leaderTtlMs 10 s: the leadership outlives the outage, so no new term (and no republish wait).
      const { h, lines, before } = await leadingLogged(backend, admin, 10_000);

      // 1.2 s unreachable: below failInterval (2 s), above 2/3 of proxyTimeout (1 s), so p1's info
      // lease can expire. The store revokes it right after it answers again; p1 publishes at its next
      // check, 400 ms later, the keepers went on publishing.
      clearInterval(ticker);
      backend.setUnavailable(true);
      await new Promise((r) => setTimeout(r, 1200));
      backend.setUnavailable(false);
      await admin.deleteInfo('proxies', 'p1');
      ticker = setInterval(() => void publish(['k1', 'k2']).catch(() => undefined), 200);
      await new Promise((r) => setTimeout(r, 400));
      clearInterval(ticker);
      await publish();
      ticker = setInterval(() => void publish().catch(() => undefined), 200);
      await new Promise((r) => setTimeout(r, 1000));

      expect(h.isLeader()).toBe(true);
      const after = parseClusterData((await admin.getClusterData())?.text ?? '');
      expect(after.proxy.generation).toBe(before.proxy.generation);
      expect(after.proxy.spec.enabledProxies).toEqual(['p1']);
      expect(after.cluster.status.master).toBe('db-k1');
      expect(lines.filter((l) => /enabled proxies now/.test(l.msg)).map((l) => l.msg)).toEqual([]);
    } finally {
      if (ticker !== undefined) {
        clearInterval(ticker);
      }
      await admin.close();
    }
  });
  it('a sentinel that takes over after a later store outage waits for infos to be republished, although it saw an earlier outage only as an observer', { timeout: 40_000 }, async () => {
    const { backend, admin, publish } = await republishRig();
    let who: readonly string[] = ['k1', 'k2', 'p1'];
    await publish();
    let ticker: NodeJS.Timeout | undefined = setInterval(() => void publish(who).catch(() => undefined), 200);
    const outage = async (ms: number, during: () => Promise<void> = async () => undefined): Promise<void> => {
      clearInterval(ticker);
      backend.setUnavailable(true);
      await during();
      await new Promise((r) => setTimeout(r, ms));
      backend.setUnavailable(false);
      ticker = setInterval(() => void publish(who).catch(() => undefined), 200);
    };
    const lines: { msg: string; uid?: string }[] = [];
    const logger = (uid: string) =>
      createLogger({ level: 'info', component: 'sentinel', uid, dest: { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; uid?: string }) } });
    try {
      const h1 = await start({ uid: 's1', leaderTtlMs: 1000 }, { store: new MemoryStore(backend, { clusterName: 'c1' }), logger: logger('s1') });
      handles.push(h1);
      await waitFor(() => h1.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      // s2 cannot reach the store for 3 s (> failInterval) while it observes; s1 goes on leading.
      let s2Cut = false;
      const s2Store = new Proxy(new MemoryStore(backend, { clusterName: 'c1' }), {
        get(target, prop) {
          const v: unknown = Reflect.get(target, prop, target);
          if (typeof v !== 'function') {
            return v;
          }
          return (...a: unknown[]) => {
            if (s2Cut && (prop === 'getClusterData' || prop === 'setInfo' || prop === 'listInfos')) {
              return Promise.reject(new StoreUnavailableError('s2 is cut off from the store'));
            }
            return (v as (...x: unknown[]) => unknown).apply(target, a);
          };
        },
      });
      const h2 = await start({ uid: 's2', leaderTtlMs: 1000 }, { store: s2Store, logger: logger('s2') });
      handles.push(h2);
      await new Promise((r) => setTimeout(r, 600));
      s2Cut = true;
      await new Promise((r) => setTimeout(r, 3000));
      s2Cut = false;
      await new Promise((r) => setTimeout(r, 3000));
      expect(h1.isLeader()).toBe(true);
      const before = parseClusterData((await admin.getClusterData())?.text ?? '');
      expect(before.cluster.status.master).toBe('db-k1');
      // A second outage, during which s1 goes away: s2 takes over once the store answers. k1's
      // info expired meanwhile and k1 publishes again only 700 ms after the return (a keeper that
      // fenced its primary and was cut off a little longer).
      who = ['k2', 'p1'];
      await outage(3000, async () => {
        await admin.deleteInfo('keepers', 'k1').catch(() => undefined);
        void h1.stop('gone');
      });
      const back = lines.length;
      await admin.deleteInfo('keepers', 'k1').catch(() => undefined);
      await new Promise((r) => setTimeout(r, 700));
      who = ['k1', 'k2', 'p1'];
      await waitFor(() => h2.isLeader(), { timeoutMs: 5000, what: 's2 to lead' });
      await new Promise((r) => setTimeout(r, 1500));

      const after = parseClusterData((await admin.getClusterData())?.text ?? '');
      expect(lines.slice(back).filter((l) => l.uid === 's2' && / lost: /.test(l.msg)).map((l) => l.msg)).toEqual([]);
      expect(after.cluster.status.failover).toBeUndefined();
      expect(after.proxy.generation).toBe(before.proxy.generation);
      expect(after.cluster.status.master).toBe('db-k1');
      expect(lines.slice(back).some((l) => l.uid === 's2' && /to publish their infos again before judging anyone lost/.test(l.msg))).toBe(true);
    } finally {
      clearInterval(ticker);
      await admin.close();
    }
  });
});
