/**
 * The store conformance suite (docs/design.md#the-store-contract): one vitest suite that every
 * `Store` backend runs, the in-memory one included, so daemon tests on `MemoryStore` mean the same
 * as on etcd.
 * Each test uses its own cluster name, so tests never see each other's keys.
 */
import { NotLeaderError, StoreConflictError, StoreUnavailableError } from '@stolon-ts/cluster';
import type { KeeperInfo, ProxyInfo, SentinelInfo } from '@stolon-ts/cluster';
import { waitFor } from '@stolon-ts/harness';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Election, InfoKind, Store, WatchTopic } from '../src/store.js';

/** What a backend gives the conformance suite. */
export interface StoreConformanceContext {
  /** Opens a new client ("process") of the backend for `clusterName`. */
  readonly store: (clusterName: string) => Store;
  /** Writes `text` verbatim at the info key of `uid`, bypassing JSON encoding and leases. */
  readonly writeRawInfo: (clusterName: string, kind: InfoKind, uid: string, text: string) => Promise<void>;
  /**
   * Stops `store` as a crashed process would: keepalives stop, nothing is revoked or deleted.
   * (`close()` revokes leases, so it cannot test TTL expiry.)
   */
  readonly crash: (store: Store) => Promise<void>;
  /**
   * TTL in ms used by the expiry and election tests, and how much later than the TTL an expiry
   * may be observed (etcd rounds to seconds, raises TTLs to its minimum and reaps every 500 ms).
   * Give the TTL the backend really applies (etcd: whole seconds, at least its minimum of 2 s).
   * @default ttlMs 1000, expirySlackMs 4000
   */
  readonly ttlMs?: number;
  readonly expirySlackMs?: number;
  /** Releases the backend (stops etcd, …) after the suite. */
  readonly cleanup?: () => Promise<void>;
}

/** Per-test timeout in ms for the tests that wait for TTLs (the unit tier's default is 5 s). */
const SLOW_TEST_MS = 30_000;

let clusterCounter = 0;
/** A cluster name no other test (or earlier run against the same etcd) uses. */
function uniqueCluster(): string {
  clusterCounter += 1;
  return `conf-${Date.now().toString(36)}-${process.pid}-${clusterCounter}`;
}

const keeperInfo = (uid: string, infoUID = 'i1'): KeeperInfo => ({
  infoUID,
  uid,
  clusterUID: 'cu1',
  bootUUID: 'b1',
  postgresBinaryVersion: { Maj: 16, Min: 4 },
  canBeMaster: true,
});
const sentinelInfo = (uid: string): SentinelInfo => ({ UID: uid });
const proxyInfo = (uid: string): ProxyInfo => ({ infoUID: 'p1', UID: uid, Generation: 3, ProxyTimeout: 15_000_000_000 });

async function expectRejects(p: Promise<unknown>, cls: new (...args: never[]) => Error): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(cls);
    return err as Error;
  }
  throw new Error(`expected a ${cls.name}, but the call succeeded`);
}

/**
 * Registers the conformance suite for one backend.
 * @param name backend name for the suite title.
 * @param makeStore called once before the suite; its `cleanup` once after it.
 */
export function describeStoreConformance(name: string, makeStore: () => Promise<StoreConformanceContext>): void {
  describe(`Store conformance: ${name}`, () => {
    let ctx: StoreConformanceContext;
    let opened: Store[] = [];
    let ttlMs = 1000;
    let expiryBoundMs = 5000;

    /** A client that is closed after the test. */
    const open = (cluster: string): Store => {
      const s = ctx.store(cluster);
      opened.push(s);
      return s;
    };

    beforeAll(async () => {
      ctx = await makeStore();
      ttlMs = ctx.ttlMs ?? 1000;
      expiryBoundMs = ttlMs + (ctx.expirySlackMs ?? 4000);
    });

    afterEach(async () => {
      const stores = opened;
      opened = [];
      await Promise.all(stores.map((s) => s.close()));
    });

    afterAll(async () => {
      await ctx?.cleanup?.();
    });

    describe('clusterdata', () => {
      it('get on an empty cluster returns null', async () => {
        const s = open(uniqueCluster());
        expect(await s.getClusterData()).toBeNull();
      });

      it('put with null creates; a second put with null conflicts', async () => {
        const s = open(uniqueCluster());
        const rev = await s.putClusterData('{"v":1}', null);
        expect(typeof rev).toBe('string');
        expect(await s.getClusterData()).toEqual({ text: '{"v":1}', revision: rev });
        await expectRejects(s.putClusterData('{"v":2}', null), StoreConflictError);
        expect((await s.getClusterData())?.text).toBe('{"v":1}');
      });

      it('CAS with the current revision succeeds and returns a new revision', async () => {
        const s = open(uniqueCluster());
        const r1 = await s.putClusterData('{"v":1}', null);
        const r2 = await s.putClusterData('{"v":2}', r1);
        expect(r2).not.toBe(r1);
        expect(await s.getClusterData()).toEqual({ text: '{"v":2}', revision: r2 });
        const r3 = await s.putClusterData('{"v":3}', r2);
        expect(await s.getClusterData()).toEqual({ text: '{"v":3}', revision: r3 });
      });

      it('CAS with a stale revision conflicts and leaves the stored text byte-for-byte unchanged', async () => {
        const s = open(uniqueCluster());
        const text = '{ "v": 2,\n  "name": "ünïcødé ✓" }\n';
        const r1 = await s.putClusterData('{"v":1}', null);
        const r2 = await s.putClusterData(text, r1);
        const err = await expectRejects(s.putClusterData('{"v":3}', r1), StoreConflictError);
        expect((err as StoreConflictError).code).toBe('STORE_CONFLICT');
        expect(await s.getClusterData()).toEqual({ text, revision: r2 });
      });

      it('CAS with a revision when no clusterdata exists conflicts', async () => {
        const s = open(uniqueCluster());
        const other = open(uniqueCluster());
        const foreignRev = await other.putClusterData('{}', null);
        await expectRejects(s.putClusterData('{"v":1}', foreignRev), StoreConflictError);
        expect(await s.getClusterData()).toBeNull();
      });

      it('two concurrent CAS writers from the same revision: exactly one wins', async () => {
        const cluster = uniqueCluster();
        const a = open(cluster);
        const b = open(cluster);
        const r1 = await a.putClusterData('{"v":1}', null);
        const results = await Promise.allSettled([a.putClusterData('{"w":"a"}', r1), b.putClusterData('{"w":"b"}', r1)]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(StoreConflictError);
        const winnerText = results[0]?.status === 'fulfilled' ? '{"w":"a"}' : '{"w":"b"}';
        const cd = await b.getClusterData();
        expect(cd?.text).toBe(winnerText);
        expect(cd?.revision).toBe((won[0] as PromiseFulfilledResult<string>).value);
      });

      it('two concurrent creators (expected null): exactly one wins', async () => {
        const cluster = uniqueCluster();
        const a = open(cluster);
        const b = open(cluster);
        const results = await Promise.allSettled([a.putClusterData('{"w":"a"}', null), b.putClusterData('{"w":"b"}', null)]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const lost = results.find((r) => r.status === 'rejected');
        expect(lost?.reason).toBeInstanceOf(StoreConflictError);
      });

      it('overwrite writes unconditionally and moves the revision', async () => {
        const s = open(uniqueCluster());
        const r0 = await s.overwriteClusterData('{"v":0}');
        expect(await s.getClusterData()).toEqual({ text: '{"v":0}', revision: r0 });
        const r1 = await s.overwriteClusterData('{"v":1}');
        expect(r1).not.toBe(r0);
        expect(await s.getClusterData()).toEqual({ text: '{"v":1}', revision: r1 });
        await expectRejects(s.putClusterData('{"v":2}', r0), StoreConflictError);
        await s.putClusterData('{"v":2}', r1);
      });
    });

    describe('infos', () => {
      it('setInfo/listInfos round trip for keepers, sentinels and proxies', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        const reader = open(cluster);
        await s.setInfo('keepers', 'k1', keeperInfo('k1'), 20_000);
        await s.setInfo('keepers', 'k2', keeperInfo('k2'), 20_000);
        await s.setInfo('sentinels', 's1', sentinelInfo('s1'), 20_000);
        await s.setInfo('proxies', 'p1', proxyInfo('p1'), 20_000);
        expect(await reader.listInfos('keepers')).toEqual({ k1: keeperInfo('k1'), k2: keeperInfo('k2') });
        expect(await reader.listInfos('sentinels')).toEqual({ s1: sentinelInfo('s1') });
        expect(await reader.listInfos('proxies')).toEqual({ p1: proxyInfo('p1') });
        expect(await open(uniqueCluster()).listInfos('keepers')).toEqual({});
      });

      it('setInfo again replaces the entry, also when the TTL changes', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        await s.setInfo('keepers', 'k1', keeperInfo('k1', 'a'), 20_000);
        await s.setInfo('keepers', 'k1', keeperInfo('k1', 'b'), 20_000);
        expect(await s.listInfos('keepers')).toEqual({ k1: keeperInfo('k1', 'b') });
        await s.setInfo('keepers', 'k1', keeperInfo('k1', 'c'), 30_000);
        expect(await open(cluster).listInfos('keepers')).toEqual({ k1: keeperInfo('k1', 'c') });
      });

      it('deleteInfo removes the entry at once; a missing entry is fine', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        await s.setInfo('proxies', 'p1', proxyInfo('p1'), 20_000);
        await s.setInfo('proxies', 'p2', proxyInfo('p2'), 20_000);
        await s.deleteInfo('proxies', 'p1');
        expect(await open(cluster).listInfos('proxies')).toEqual({ p2: proxyInfo('p2') });
        await s.deleteInfo('proxies', 'p1');
        await s.deleteInfo('keepers', 'never-there');
      });

      it('clean close removes the store’s infos at once', async () => {
        const cluster = uniqueCluster();
        const s = ctx.store(cluster);
        const reader = open(cluster);
        await s.setInfo('sentinels', 's1', sentinelInfo('s1'), 20_000);
        expect(Object.keys(await reader.listInfos('sentinels'))).toEqual(['s1']);
        await s.close();
        expect(await reader.listInfos('sentinels')).toEqual({});
      });

      it('an info expires after its TTL when its process dies without deleting it, and watches see it', async () => {
        const cluster = uniqueCluster();
        const s = ctx.store(cluster);
        const reader = open(cluster);
        const seen: WatchTopic[] = [];
        const w = await reader.watch(['keepers'], (t) => seen.push(t));
        await s.setInfo('keepers', 'k1', keeperInfo('k1'), ttlMs);
        await waitFor(() => seen.length > 0, { timeoutMs: 5000, what: 'watch event for the new keeper info' });
        const crashedAt = performance.now();
        await ctx.crash(s);
        // Still there right after the crash: only the TTL removes it.
        expect(Object.keys(await reader.listInfos('keepers'))).toEqual(['k1']);
        seen.length = 0;
        await waitFor(async () => Object.keys(await reader.listInfos('keepers')).length === 0, {
          timeoutMs: expiryBoundMs,
          what: `keeper info to expire (ttl ${ttlMs} ms)`,
        });
        // Expiry counts from the last keepalive (at most TTL/3 before the crash), not from the crash.
        expect(performance.now() - crashedAt).toBeGreaterThanOrEqual(ttlMs * 0.5);
        await waitFor(() => seen.includes('keepers'), { timeoutMs: 5000, what: 'watch event for the expiry' });
        await w.close();
      }, SLOW_TEST_MS);

      it('a live process keeps its info beyond the TTL (keepalive)', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        await s.setInfo('sentinels', 's1', sentinelInfo('s1'), ttlMs);
        // This test is about elapsed time: the entry must survive several TTLs without new setInfo calls.
        const bound = ttlMs * 2.5;
        await new Promise((r) => setTimeout(r, bound));
        expect(Object.keys(await open(cluster).listInfos('sentinels'))).toEqual(['s1']);
      }, SLOW_TEST_MS);

      it('infoLeaseRemainingMs: undefined without a lease, within (0, TTL] while kept alive, undefined after deleteInfo', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        expect(s.infoLeaseRemainingMs('keepers', 'k1')).toBeUndefined();
        await s.setInfo('keepers', 'k1', keeperInfo('k1'), ttlMs);
        const first = s.infoLeaseRemainingMs('keepers', 'k1');
        expect(first).toBeGreaterThan(0);
        expect(first).toBeLessThanOrEqual(ttlMs);
        // Keepalives (every TTL/3) keep it from running down, with no further setInfo.
        await new Promise((r) => setTimeout(r, ttlMs * 1.5));
        const later = s.infoLeaseRemainingMs('keepers', 'k1');
        expect(later).toBeGreaterThan(ttlMs / 4);
        expect(Object.keys(await open(cluster).listInfos('keepers'))).toEqual(['k1']);
        expect(s.infoLeaseRemainingMs('proxies', 'k1')).toBeUndefined();
        await s.deleteInfo('keepers', 'k1');
        expect(s.infoLeaseRemainingMs('keepers', 'k1')).toBeUndefined();
      }, SLOW_TEST_MS);

      it('invalid entries are skipped and reported', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        await s.setInfo('keepers', 'good', keeperInfo('good'), 20_000);
        await ctx.writeRawInfo(cluster, 'keepers', 'broken', '{"uid": "broken", ');
        await ctx.writeRawInfo(cluster, 'keepers', 'scalar', '42');
        await ctx.writeRawInfo(cluster, 'keepers', 'list', '[1,2]');
        const invalid: string[] = [];
        const infos = await s.listInfos('keepers', (uid, err) => {
          expect(err).toBeInstanceOf(Error);
          invalid.push(uid);
        });
        expect(infos).toEqual({ good: keeperInfo('good') });
        expect(invalid.sort()).toEqual(['broken', 'list', 'scalar']);
        // Without onInvalid they are skipped silently.
        expect(Object.keys(await s.listInfos('keepers'))).toEqual(['good']);
      });
    });

    describe('watch', () => {
      it('fires on clusterdata writes, asynchronously, with the topic', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        const writer = open(cluster);
        const seen: WatchTopic[] = [];
        const w = await s.watch(['clusterdata'], (t) => seen.push(t));
        const rev = await writer.putClusterData('{"v":1}', null);
        await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'clusterdata watch event (create)' });
        seen.length = 0;
        await writer.putClusterData('{"v":2}', rev);
        await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'clusterdata watch event (CAS)' });
        seen.length = 0;
        await writer.overwriteClusterData('{"v":3}');
        await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'clusterdata watch event (overwrite)' });
        expect(seen.every((t) => t === 'clusterdata')).toBe(true);
        await w.close();
      });

      it('fires on info put and delete for the watched kinds only', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        const seen: WatchTopic[] = [];
        const w = await s.watch(['proxies', 'sentinels'], (t) => seen.push(t));
        await s.setInfo('keepers', 'k1', keeperInfo('k1'), 20_000);
        await s.setInfo('proxies', 'p1', proxyInfo('p1'), 20_000);
        await waitFor(() => seen.includes('proxies'), { timeoutMs: 5000, what: 'proxies watch event (put)' });
        seen.length = 0;
        await s.deleteInfo('proxies', 'p1');
        await waitFor(() => seen.includes('proxies'), { timeoutMs: 5000, what: 'proxies watch event (delete)' });
        await s.setInfo('sentinels', 's1', sentinelInfo('s1'), 20_000);
        await waitFor(() => seen.includes('sentinels'), { timeoutMs: 5000, what: 'sentinels watch event' });
        expect(seen).not.toContain('keepers');
        await w.close();
      });

      it('stops firing after close', async () => {
        const cluster = uniqueCluster();
        const s = open(cluster);
        const seen: WatchTopic[] = [];
        const w = await s.watch(['clusterdata'], (t) => seen.push(t));
        await w.close();
        await w.close(); // idempotent
        await s.putClusterData('{}', null);
        // A second, still open watch proves the event was delivered: the closed one must stay silent.
        const seen2: WatchTopic[] = [];
        const w2 = await s.watch(['clusterdata'], (t) => seen2.push(t));
        await s.overwriteClusterData('{"v":2}');
        await waitFor(() => seen2.length > 0, { timeoutMs: 5000, what: 'event on the open watch' });
        expect(seen).toEqual([]);
        await w2.close();
      });
    });

    describe('election', () => {
      const leaderOf = (elections: ReadonlyArray<readonly [string, Election]>): string[] =>
        elections.filter(([, e]) => e.isLeader()).map(([uid]) => uid);

      it('getLeader is null without candidates', async () => {
        expect(await open(uniqueCluster()).getLeader()).toBeNull();
      });

      it('two candidates: exactly one leader, reported asynchronously, and getLeader names it', async () => {
        const cluster = uniqueCluster();
        const a = open(cluster);
        const b = open(cluster);
        const changes: Record<string, boolean[]> = { sA: [], sB: [] };
        const [ea, eb] = await Promise.all([a.campaign('sA', ttlMs), b.campaign('sB', ttlMs)]);
        ea.onChange((l) => changes['sA']?.push(l));
        eb.onChange((l) => changes['sB']?.push(l));
        expect(changes).toEqual({ sA: [], sB: [] }); // never synchronous
        const both = [
          ['sA', ea],
          ['sB', eb],
        ] as const;
        const leaders = await waitFor(() => (leaderOf(both).length === 1 ? leaderOf(both) : undefined), {
          timeoutMs: 10_000,
          what: 'exactly one leader',
        });
        const leader = leaders[0] ?? '';
        const follower = leader === 'sA' ? 'sB' : 'sA';
        await waitFor(() => changes[leader]?.length === 1, { timeoutMs: 2000, what: 'onChange(true) on the leader' });
        expect(changes).toEqual({ [leader]: [true], [follower]: [] });
        expect(await open(cluster).getLeader()).toBe(leader);
        // This test is about elapsed time: leadership stays put over a few keepalive rounds.
        await new Promise((r) => setTimeout(r, ttlMs * 1.5));
        expect(leaderOf(both)).toEqual([leader]);
        expect(await b.getLeader()).toBe(leader);
        expect(changes).toEqual({ [leader]: [true], [follower]: [] });
      }, SLOW_TEST_MS);

      it('when the leader resigns the other becomes leader within the TTL', async () => {
        const cluster = uniqueCluster();
        const a = open(cluster);
        const b = open(cluster);
        const ea = await a.campaign('sA', ttlMs);
        await waitFor(() => ea.isLeader(), { timeoutMs: 10_000, what: 'sA to lead' });
        const eb = await b.campaign('sB', ttlMs);
        const bChanges: boolean[] = [];
        eb.onChange((l) => bChanges.push(l));
        const aChanges: boolean[] = [];
        ea.onChange((l) => aChanges.push(l));
        await ea.resign();
        await ea.resign(); // idempotent
        expect(ea.isLeader()).toBe(false);
        await waitFor(() => eb.isLeader(), { timeoutMs: ttlMs + 2000, what: 'sB to lead after sA resigned' });
        expect(await a.getLeader()).toBe('sB');
        await waitFor(() => aChanges.includes(false) && bChanges.includes(true), {
          timeoutMs: 2000,
          what: 'onChange(false) on sA and onChange(true) on sB',
        });
      }, SLOW_TEST_MS);

      it('when the leader’s store is closed the other becomes leader within the TTL', async () => {
        const cluster = uniqueCluster();
        const a = ctx.store(cluster);
        const b = open(cluster);
        const ea = await a.campaign('sA', ttlMs);
        await waitFor(() => ea.isLeader(), { timeoutMs: 10_000, what: 'sA to lead' });
        const eb = await b.campaign('sB', ttlMs);
        await a.close();
        expect(ea.isLeader()).toBe(false);
        await waitFor(() => eb.isLeader(), { timeoutMs: ttlMs + 2000, what: 'sB to lead after sA’s store closed' });
        expect(await b.getLeader()).toBe('sB');
      }, SLOW_TEST_MS);

      it('when the leader crashes the other becomes leader once its lease expires', async () => {
        const cluster = uniqueCluster();
        const a = ctx.store(cluster);
        const b = open(cluster);
        const ea = await a.campaign('sA', ttlMs);
        await waitFor(() => ea.isLeader(), { timeoutMs: 10_000, what: 'sA to lead' });
        const eb = await b.campaign('sB', ttlMs);
        await waitFor(async () => (await b.getLeader()) === 'sA', { timeoutMs: 5000, what: 'getLeader = sA' });
        await ctx.crash(a);
        expect(ea.isLeader()).toBe(false);
        await waitFor(() => eb.isLeader(), { timeoutMs: expiryBoundMs, what: 'sB to lead after sA crashed' });
        expect(await b.getLeader()).toBe('sB');
      }, SLOW_TEST_MS);

      it('a clusterdata write guarded by the election succeeds for the leader only: a follower, a resigned leader and another client\'s election get NotLeaderError', async () => {
        const cluster = uniqueCluster();
        const a = open(cluster);
        const b = open(cluster);
        const ea = await a.campaign('sA', ttlMs);
        await waitFor(() => ea.isLeader(), { timeoutMs: 10_000, what: 'sA to lead' });
        const eb = await b.campaign('sB', ttlMs);
        await waitFor(async () => (await b.getLeader()) === 'sA', { timeoutMs: 5000, what: 'getLeader = sA' });

        const created = await a.putClusterData('{"v":1}', null, ea);
        const rev = await a.putClusterData('{"v":2}', created, ea);
        await expectRejects(b.putClusterData('{"v":"follower"}', rev, eb), NotLeaderError);
        await expectRejects(a.putClusterData('{"v":"foreign"}', rev, eb), NotLeaderError);
        expect(await b.getClusterData()).toEqual({ text: '{"v":2}', revision: rev });

        await ea.resign();
        await expectRejects(a.putClusterData('{"v":"resigned"}', rev, ea), NotLeaderError);
        await waitFor(() => eb.isLeader(), { timeoutMs: ttlMs + 2000, what: 'sB to lead after sA resigned' });
        const rev3 = await b.putClusterData('{"v":3}', rev, eb);
        // The old leader's write loses on leadership even with the current revision.
        await expectRejects(a.putClusterData('{"v":"old leader"}', rev3, ea), NotLeaderError);
        expect((await a.getClusterData())?.text).toBe('{"v":3}');
      }, SLOW_TEST_MS);

      it('a resigned candidate does not come back', async () => {
        const cluster = uniqueCluster();
        const a = open(cluster);
        const ea = await a.campaign('sA', ttlMs);
        await ea.resign();
        const eb = await open(cluster).campaign('sB', ttlMs);
        await waitFor(() => eb.isLeader(), { timeoutMs: 10_000, what: 'sB to lead' });
        expect(ea.isLeader()).toBe(false);
        expect(await a.getLeader()).toBe('sB');
      }, SLOW_TEST_MS);
    });

    describe('lifecycle', () => {
      it('calls after close throw StoreUnavailableError; close is idempotent', async () => {
        const s = ctx.store(uniqueCluster());
        await s.getClusterData();
        await s.close();
        await s.close();
        await expectRejects(s.getClusterData(), StoreUnavailableError);
        await expectRejects(s.putClusterData('{}', null), StoreUnavailableError);
        await expectRejects(s.listInfos('keepers'), StoreUnavailableError);
      });
    });
  });
}
