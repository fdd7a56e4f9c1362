/** MemoryStore: the conformance suite, plus the unavailability test hook. */
import { StoreUnavailableError } from '@stolon-ts/cluster';
import { waitFor } from '@stolon-ts/harness';
import { describe, expect, it } from 'vitest';
import { describeStoreConformance } from '../test/conformance.js';
import { MemoryBackend, MemoryStore } from './memory.js';
import type { WatchTopic } from './store.js';

describeStoreConformance('memory', async () => {
  const backend = new MemoryBackend();
  return {
    store: (clusterName) => new MemoryStore(backend, { clusterName }),
    writeRawInfo: async (clusterName, kind, uid, text) => backend.putRawInfo(clusterName, kind, uid, text),
    crash: async (store) => (store as MemoryStore).abandon(),
    ttlMs: 1000,
    expirySlackMs: 1000,
  };
});

describe('MemoryBackend.setUnavailable', () => {
  it('makes every call throw StoreUnavailableError until reset', async () => {
    const backend = new MemoryBackend();
    const s = new MemoryStore(backend, { clusterName: 'c' });
    const rev = await s.putClusterData('{}', null);
    backend.setUnavailable(true);
    await expect(s.getClusterData()).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.putClusterData('{}', rev)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.setInfo('sentinels', 's1', { UID: 's1' }, 1000)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.listInfos('keepers')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.getLeader()).rejects.toBeInstanceOf(StoreUnavailableError);
    backend.setUnavailable(false);
    expect(await s.getClusterData()).toEqual({ text: '{}', revision: rev });
    await s.close();
  });

  it('lets infos expire, and calls every watch once per topic when reachable again', async () => {
    const backend = new MemoryBackend();
    const s = new MemoryStore(backend, { clusterName: 'c' });
    const seen: WatchTopic[] = [];
    const w = await s.watch(['clusterdata', 'keepers'], (t) => seen.push(t));
    await s.setInfo('keepers', 'k1', { infoUID: 'i', uid: 'k1', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 300);
    await waitFor(() => seen.includes('keepers'), { timeoutMs: 1000, what: 'keepers event' });
    seen.length = 0;
    backend.setUnavailable(true);
    // Keepalives fail while unavailable, so the lease runs out; events are dropped meanwhile.
    await new Promise((r) => setTimeout(r, 600));
    expect(seen).toEqual([]);
    backend.setUnavailable(false);
    expect(await s.listInfos('keepers')).toEqual({});
    await waitFor(() => (seen.includes('clusterdata') && seen.includes('keepers') ? seen : undefined), {
      timeoutMs: 1000,
      what: 'one call per topic after reconnect',
    });
    await w.close();
    await s.close();
  });

  it('takes leadership away from a leader that cannot reach the store, before its TTL ends', async () => {
    const backend = new MemoryBackend();
    const a = new MemoryStore(backend, { clusterName: 'c' });
    const e = await a.campaign('sA', 400);
    await waitFor(() => e.isLeader(), { timeoutMs: 1000, what: 'sA to lead' });
    const changes: boolean[] = [];
    e.onChange((l) => changes.push(l));
    backend.setUnavailable(true);
    const t0 = performance.now();
    await waitFor(() => !e.isLeader(), { timeoutMs: 1000, what: 'sA to lose leadership', intervalMs: 10 });
    expect(performance.now() - t0).toBeLessThan(400);
    await waitFor(() => changes.includes(false), { timeoutMs: 1000, what: 'onChange(false)' });
    backend.setUnavailable(false);
    await waitFor(() => e.isLeader(), { timeoutMs: 2000, what: 'sA to lead again' });
    await a.close();
  });
});
