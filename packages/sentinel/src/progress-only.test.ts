import { describe, expect, it } from 'vitest';
import { emptyMemory, type KeeperInfo, type ProxyInfo, type SentinelMemory } from '@stolon-ts/cluster';
import { progressOnly, steadyView } from './progress-only.js';

const limits = { failIntervalMs: 6000, proxyTimeoutMs: 15_000 };

function keeper(uid: string, infoUID: string, extra: Record<string, unknown> = {}): KeeperInfo {
  return { infoUID, uid, clusterUID: 'c1', bootUUID: 'b1', postgresState: { healthy: true, xLogPos: 100 }, ...extra } as unknown as KeeperInfo;
}

function proxy(uid: string, infoUID: string): ProxyInfo {
  return { infoUID, UID: uid, Generation: 3, ProxyTimeout: 15e9 } as ProxyInfo;
}

/** The memory after a full pass at `at` that saw these markers. */
function memoryAt(at: number, keepers: Record<string, string>, proxies: Record<string, string> = {}): SentinelMemory {
  const track = (m: Record<string, string>) => Object.fromEntries(Object.entries(m).map(([uid, infoUID]) => [uid, { infoUID, since: at }]));
  return { ...emptyMemory(), keeperProgress: track(keepers), proxyProgress: track(proxies) };
}

describe('progressOnly', () => {
  const keepers = { k0: keeper('k0', 'a0'), k1: keeper('k1', 'a1') };
  const proxies = { p0: proxy('p0', 'x0') };
  const view = steadyView(keepers, proxies);
  const memory = memoryAt(1000, { k0: 'a0', k1: 'a1' }, { p0: 'x0' });

  it('records a keeper publish that changed only its marker, stamped with the time it was seen', () => {
    const next = progressOnly(view, memory, { keepers: { k0: keeper('k0', 'b0'), k1: keeper('k1', 'a1') } }, 1900, limits);
    expect(next?.keeperProgress).toEqual({ k0: { infoUID: 'b0', since: 1900 }, k1: { infoUID: 'a1', since: 1000 } });
    expect(next?.proxyProgress).toEqual(memory.proxyProgress);
    const proxyNext = progressOnly(view, next!, { proxies: { p0: proxy('p0', 'x1') } }, 2000, limits);
    expect(proxyNext?.proxyProgress).toEqual({ p0: { infoUID: 'x1', since: 2000 } });
    expect(proxyNext?.keeperProgress).toEqual(next?.keeperProgress);
  });

  it('asks for a full pass when an info says something new, appears or goes away', () => {
    expect(progressOnly(view, memory, { keepers: { k0: keeper('k0', 'b0', { postgresState: { healthy: false } }), k1: keeper('k1', 'a1') } }, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { keepers: { k0: keeper('k0', 'b0') } }, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { keepers: { ...keepers, k2: keeper('k2', 'c2') } }, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { keepers: { k0: keeper('k0', 'b0'), k9: keeper('k9', 'a1') } }, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { proxies: {} }, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { keepers: { k0: { ...keeper('k0', 'b0'), infoUID: 7 as unknown as string }, k1: keeper('k1', 'a1') } }, 1900, limits)).toBeUndefined();
    expect(progressOnly(undefined, memory, { keepers }, 1900, limits)).toBeUndefined();
  });

  it('asks for a full pass once a keeper made no progress for failInterval, a proxy for proxyTimeout', () => {
    // k1 publishes on, k0 stopped at 1000: at 7000 it is not yet stalled, just after it is.
    expect(progressOnly(view, memory, { keepers: { k0: keeper('k0', 'a0'), k1: keeper('k1', 'z1') } }, 7000, limits)).toBeDefined();
    expect(progressOnly(view, memory, { keepers: { k0: keeper('k0', 'a0'), k1: keeper('k1', 'z1') } }, 7001, limits)).toBeUndefined();
    const keepersMoving = memoryAt(15_000, { k0: 'a0', k1: 'a1' }, {});
    const withProxy = { ...keepersMoving, proxyProgress: { p0: { infoUID: 'x0', since: 1000 } } };
    expect(progressOnly(view, withProxy, { keepers: { k0: keeper('k0', 'q0'), k1: keeper('k1', 'q1') } }, 16_001, limits)).toBeUndefined();
  });

  it('asks for a full pass while any timer of the memory runs', () => {
    const read = { keepers: { k0: keeper('k0', 'b0'), k1: keeper('k1', 'a1') } };
    expect(progressOnly(view, { ...memory, dbErrorSince: { d0: 1000 } }, read, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, { ...memory, dbConvergingSince: { d0: { generation: 2, since: 1000 } } }, read, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, { ...memory, switchoverSince: { id: 'e1', since: 1000 } }, read, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, { ...memory, syncCatchUp: { d1: { lsn: 5 } as never } }, read, 1900, limits)).toBeUndefined();
  });

  it('records no marker decide does not track (a keeper of another cluster)', () => {
    const other = { ...keepers, k7: keeper('k7', 'o1', { clusterUID: 'old' }) };
    const v = steadyView(other, proxies);
    const next = progressOnly(v, memory, { keepers: { ...other, k7: keeper('k7', 'o2', { clusterUID: 'old' }) } }, 1900, limits);
    expect(next?.keeperProgress).toEqual(memory.keeperProgress);
  });
});
