import { describe, expect, it } from 'vitest';
import { emptyMemory, type KeeperInfo, type ProxyInfo, type SentinelMemory } from '@stolon-ts/cluster';
import type { InfoChange, Store, StoreWatch, WatchTopic } from '@stolon-ts/store';
import { WatchPasses, progressOnly, readFromChanges, steadyView } from './progress-only.js';

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

describe('watch passes from the values the watch carried', () => {
  const keepers = { k0: keeper('k0', 'a0'), k1: keeper('k1', 'a1') };
  const proxies = { p0: proxy('p0', 'x0') };
  const view = steadyView(keepers, proxies);
  const memory = memoryAt(1000, { k0: 'a0', k1: 'a1' }, { p0: 'x0' });
  const put = (kind: 'keepers' | 'proxies', info: { infoUID: string }, uid: string): InfoChange => ({ kind, uid, text: JSON.stringify(info) });

  it('readFromChanges keeps the last value of each uid; a delete or a non-object asks for a full pass, a resync for a listing', () => {
    const read = readFromChanges([put('keepers', keeper('k0', 'b0'), 'k0'), put('keepers', keeper('k0', 'c0'), 'k0'), put('proxies', proxy('p0', 'x1'), 'p0')]);
    expect(read).toEqual({ keepers: { k0: keeper('k0', 'c0') }, proxies: { p0: proxy('p0', 'x1') }, partial: true });
    expect(readFromChanges([put('keepers', keeper('k0', 'b0'), 'k0'), { kind: 'keepers', uid: 'k1', text: null }])).toBe('full');
    expect(readFromChanges([{ kind: 'keepers', uid: 'k1', text: '[1]' }])).toBe('full');
    expect(readFromChanges([{ kind: 'keepers', uid: 'k1', text: '{' }])).toBe('full');
    expect(readFromChanges([put('keepers', keeper('k0', 'b0'), 'k0'), { kind: 'keepers', resync: true }])).toBe('list');
    expect(readFromChanges([])).toEqual({ partial: true });
  });

  it('a partial read stamps the changed markers and leaves the others as they were', () => {
    const next = progressOnly(view, memory, { keepers: { k1: keeper('k1', 'b1') }, partial: true }, 1900, limits);
    expect(next?.keeperProgress).toEqual({ k0: { infoUID: 'a0', since: 1000 }, k1: { infoUID: 'b1', since: 1900 } });
    // An info that says something new, or a uid the last full pass did not see, still asks for a full pass.
    expect(progressOnly(view, memory, { keepers: { k1: keeper('k1', 'b1', { postgresState: { healthy: false } }) }, partial: true }, 1900, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { keepers: { k9: keeper('k9', 'b1') }, partial: true }, 1900, limits)).toBeUndefined();
    // Stalls are judged as before: k0 last moved at 1000.
    expect(progressOnly(view, memory, { keepers: { k1: keeper('k1', 'b1') }, partial: true }, 7001, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { partial: true }, 7001, limits)).toBeUndefined();
    expect(progressOnly(view, memory, { partial: true }, 1900, limits)).toEqual(memory);
  });

  /** WatchPasses over a store whose watch carries values; `listed` counts the listings. */
  function passesWithValues() {
    let listed = 0;
    let onInfo: ((c: InfoChange) => void) | undefined;
    const store = {
      listInfos: (kind: string) => {
        listed += 1;
        return Promise.resolve((kind === 'keepers' ? keepers : proxies) as never);
      },
    } as Pick<Store, 'listInfos'>;
    const passes = new WatchPasses(store);
    const watched = passes.watchStore({
      watch: () => Promise.reject(new Error('not this one')),
      watchInfoValues: (_t: readonly WatchTopic[], _l: (t: WatchTopic) => void, on: (c: InfoChange) => void) => {
        onInfo = on;
        return Promise.resolve({ close: () => Promise.resolve() } as StoreWatch);
      },
    });
    return { passes, watched, emit: (c: InfoChange) => onInfo?.(c), listed: () => listed };
  }

  it('takes the infos from the watch events without listing them, and lists them again after a resync', async () => {
    const { passes, watched, emit, listed } = passesWithValues();
    expect(passes.takeChanges()).toBeUndefined();
    await watched.watch(['clusterdata', 'keepers', 'proxies'], () => undefined);
    passes.settled(keepers, proxies, { failIntervalMs: 6000, proxyTimeoutMs: 15_000 } as never, false);
    passes.fullPassEnded(1000);
    emit(put('keepers', keeper('k1', 'b1'), 'k1'));
    const done = await passes.check(new Set(['keepers']), () => true, memory, 1000, () => 1500, passes.takeChanges());
    expect(done?.memory?.keeperProgress?.k1).toEqual({ infoUID: 'b1', since: 1500 });
    expect(listed()).toBe(0);
    // The changes were taken: the next pass starts empty.
    expect(passes.takeChanges()).toEqual([]);
    emit({ kind: 'keepers', resync: true });
    const relisted = await passes.check(new Set(['keepers']), () => true, memory, 1000, () => 1600, passes.takeChanges());
    expect(relisted?.memory).toBeDefined();
    expect(listed()).toBe(1);
    emit({ kind: 'keepers', uid: 'k1', text: null });
    expect(await passes.check(new Set(['keepers']), () => true, memory, 1000, () => 1700, passes.takeChanges())).toBeUndefined();
    expect(listed()).toBe(1);
  });

  it('uses the plain watch and lists the infos when the store carries no values', async () => {
    let listed = 0;
    const passes = new WatchPasses({ listInfos: () => ((listed += 1), Promise.resolve(keepers as never)) });
    const plain = { watch: () => Promise.resolve({ close: () => Promise.resolve() }) };
    expect(passes.watchStore(plain)).toBe(plain);
    passes.settled(keepers, proxies, { failIntervalMs: 6000, proxyTimeoutMs: 15_000 } as never, false);
    passes.fullPassEnded(1000);
    const done = await passes.check(new Set(['keepers']), () => true, memory, 1000, () => 1500, passes.takeChanges());
    expect(done?.memory).toBeDefined();
    expect(listed).toBe(1);
  });
});
