/**
 * Unit tier: the pure parts of the day-2 commands — reinit's refusal rules, the history derived
 * from clusterdata, version-skew detection, and reload's per-keeper outcome.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseClusterData, serializeClusterData, type ClusterData, type FailoverEvent } from '@stolon-ts/cluster';
import { aCluster, dbOf, keeperInfo } from '@stolon-ts/cluster/testing';
import { MemoryBackend, MemoryStore } from '@stolon-ts/store';
import {
  buildHistory,
  buildVersions,
  describeDiscarded,
  reinitRefusal,
  reloadOutcomes,
  renderHistoryTable,
  runReinit,
  runReload,
  versionSkew,
  type CommandContext,
} from './index.js';

const LSN = 0x3000000;

function twoStandbys(spec = {}): ClusterData {
  return aCluster({ spec: { initMode: 'new', ...spec } })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN })
    .withStandby('k2', { xLogPos: LSN })
    .withStandby('k3', { xLogPos: LSN })
    .routedTo('k1', ['p1'], 2)
    .build();
}

describe('reinitRefusal', () => {
  it('allows an asynchronous standby', () => {
    const r = reinitRefusal(twoStandbys(), 'k2', false);
    expect(r.refusal).toBeUndefined();
    expect(r.db?.uid).toBe(dbOf('k2'));
  });

  it('refuses the primary, even with --force, and says to switch over first', () => {
    for (const force of [false, true]) {
      expect(reinitRefusal(twoStandbys(), 'k1', force).refusal).toMatch(/holds the primary db .*stolonctl switchover.*stolonctl reinit k1/);
    }
  });

  it('refuses a paused cluster, a failover in progress and a pending reinit', () => {
    const paused = twoStandbys({ paused: true });
    expect(reinitRefusal(paused, 'k2', true).refusal).toMatch(/paused.*stolonctl resume/);
    const failing = twoStandbys();
    failing.cluster.status.failover = { id: 'x', kind: 'failover', cause: 'c', oldPrimary: { keeperUID: 'k1', dbUid: dbOf('k1'), xLogPos: LSN }, phases: { declaredFailed: '2026-01-01T00:00:00.000Z' } };
    expect(reinitRefusal(failing, 'k2', true).refusal).toMatch(/failover is in progress/);
    const pending = twoStandbys();
    pending.cluster.status.reinitRequest = { keeperUID: 'k3', dbUid: dbOf('k3'), requestedAt: 'now' };
    expect(reinitRefusal(pending, 'k2', true).refusal).toMatch(/reinit of keeper k3 is pending/);
  });

  it('refuses the only synchronous standby unless --force', () => {
    const cd = twoStandbys({ synchronousReplication: true, minSynchronousStandbys: 1 });
    cd.dbs[dbOf('k1')]!.spec.synchronousStandbys = [dbOf('k2')];
    cd.dbs[dbOf('k2')]!.status.healthy = true;
    expect(reinitRefusal(cd, 'k2', false).refusal).toMatch(/synchronous standby and only 0 other .*minSynchronousStandbys \(1\).*--force/);
    expect(reinitRefusal(cd, 'k2', true).refusal).toBeUndefined();
    // Not a synchronous standby: no refusal.
    expect(reinitRefusal(cd, 'k3', false).refusal).toBeUndefined();
  });

  it('allows a synchronous standby when enough others stay in sync', () => {
    const cd = twoStandbys({ synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 2 });
    cd.dbs[dbOf('k1')]!.spec.synchronousStandbys = [dbOf('k2'), dbOf('k3')];
    cd.dbs[dbOf('k3')]!.status.healthy = true;
    expect(reinitRefusal(cd, 'k2', false).refusal).toBeUndefined();
    cd.dbs[dbOf('k3')]!.status.healthy = false;
    expect(reinitRefusal(cd, 'k2', false).refusal).toMatch(/only 0 other healthy/);
  });

  it('throws for an unknown keeper', () => {
    expect(() => reinitRefusal(twoStandbys(), 'nope', false)).toThrow(/keeper nope is not in the cluster \(known: k1, k2, k3\)/);
  });
});

/** A completed failover from k1 to k2; `over` replaces fields, `undefined` removes one. */
function failoverEvent(over: { [K in keyof FailoverEvent]?: FailoverEvent[K] | undefined } = {}): FailoverEvent {
  const ev: Record<string, unknown> = {
    id: 'e1',
    kind: 'failover',
    cause: 'keeper k1 lost',
    oldPrimary: { keeperUID: 'k1', dbUid: 'db-old', xLogPos: 0x3000200, timelineID: 1 },
    newPrimary: { keeperUID: 'k2', dbUid: dbOf('k2'), xLogPos: 0x3000100 },
    phases: { declaredFailed: '2026-01-01T00:00:01.000Z', promoted: '2026-01-01T00:00:02.000Z', proxiesRouted: '2026-01-01T00:00:03.000Z' },
    result: 'completed',
    ...over,
  };
  for (const k of Object.keys(ev)) {
    if (ev[k] === undefined) {
      delete ev[k];
    }
  }
  return ev as unknown as FailoverEvent;
}

describe('buildHistory', () => {
  const base = (): ClusterData => aCluster({ spec: { initMode: 'new' } }).initialized().withPrimary('k2', { xLogPos: LSN, timeline: 2 }).withStandby('k3').routedTo('k2', ['p1'], 3).build();

  it('shows a failover with its timeline, keepers and the discarded range its keeper reported', () => {
    const cd = base();
    cd.failoverHistory = [
      failoverEvent({
        newTimeline: { timelineID: 2, switchPoint: 0x3000100 },
        discardedWal: { fromLsn: 0x3000100, toLsn: 0x3000200, timelineID: 1, method: 'pg_rewind', at: '2026-01-01T00:00:09.000Z' },
      }),
    ];
    const h = buildHistory(cd);
    expect(h.primary).toEqual({ keeperUID: 'k2', timeline: 2 });
    expect(h.rows).toHaveLength(1);
    expect(h.rows[0]).toMatchObject({ timeline: 2, switchPoint: 0x3000100, kind: 'failover', fromKeeper: 'k1', toKeeper: 'k2', at: '2026-01-01T00:00:02.000Z' });
    expect(describeDiscarded(h.rows[0]!.discarded)).toBe('0/3000100–0/3000200 (256 bytes, pg_rewind)');
    expect(renderHistoryTable(h)).toMatch(/current primary: keeper k2, timeline 2\nTL\s+SWITCH LSN/);
  });

  it('says "at least" from the last reported position when no discard was reported, unknown without a timeline', () => {
    const cd = base();
    cd.failoverHistory = [failoverEvent({ newTimeline: { timelineID: 2, switchPoint: 0x3000100 } })];
    expect(describeDiscarded(buildHistory(cd).rows[0]!.discarded)).toMatch(/^at least 0\/3000100–0\/3000200 \(256 bytes; not reported/);
    cd.failoverHistory = [failoverEvent()];
    const row = buildHistory(cd).rows.find((r) => r.kind === 'failover')!;
    expect(row.timeline).toBeNull();
    expect(describeDiscarded(row.discarded)).toBe('unknown (the new timeline was not recorded)');
  });

  it('switchovers and aborted events discard nothing; the one in progress is unknown', () => {
    const cd = base();
    cd.failoverHistory = [
      failoverEvent({ id: 's', kind: 'switchover', cause: 'stolonctl switchover', newTimeline: { timelineID: 2, switchPoint: 0x3000100 } }),
      failoverEvent({ id: 'a', result: 'aborted', newPrimary: undefined }),
    ];
    cd.cluster.status.failover = failoverEvent({ id: 'p', result: undefined, phases: { declaredFailed: '2026-01-01T00:01:00.000Z' } });
    const rows = buildHistory(cd).rows.filter((r) => r.kind !== 'unrecorded');
    expect(rows.map((r) => r.discarded.status)).toEqual(['none', 'none', 'unknown']);
    expect(rows[1]!.toKeeper).toBe('k1');
    expect(rows[2]!.result).toBe('in progress');
  });

  it("lists the primary's timeline-history entries no event started as unrecorded", () => {
    const cd = base();
    cd.dbs[dbOf('k2')]!.status.timelinesHistory = [{ timelineID: 1, switchPoint: 0x3000100, reason: 'no recovery target specified' }];
    const h = buildHistory(cd);
    expect(h.rows).toEqual([
      expect.objectContaining({ kind: 'unrecorded', timeline: 2, switchPoint: 0x3000100, at: null, cause: expect.stringMatching(/no recovery target specified/) }),
    ]);
    cd.failoverHistory = [failoverEvent({ newTimeline: { timelineID: 2, switchPoint: 0x3000100 } })];
    expect(buildHistory(cd).rows.map((r) => r.kind)).toEqual(['failover']);
  });
});

describe('versionSkew', () => {
  const cd = twoStandbys();
  const k = (uid: string, version?: string, maj = 15) => ({ ...keeperInfo(uid, cd), postgresBinaryVersion: { Maj: maj, Min: 4 }, ...(version !== undefined ? { version } : {}) });

  it('is empty when every program runs the same release', () => {
    const rows = buildVersions({ keepers: { k1: k('k1', '1.0.0'), k2: k('k2', '1.0.0') }, sentinels: { s1: { UID: 's1', Version: '1.0.0' } }, proxies: {} }, '1.0.0');
    expect(rows.map((r) => `${r.component}:${r.uid}:${r.version}:${r.postgres ?? ''}`)).toEqual(['stolonctl::1.0.0:', 'keeper:k1:1.0.0:15.4', 'keeper:k2:1.0.0:15.4', 'sentinel:s1:1.0.0:']);
    expect(versionSkew(rows)).toEqual([]);
  });

  it('names every version and who runs it, and programs that publish none', () => {
    const rows = buildVersions(
      { keepers: { k1: k('k1', '1.1.0'), k2: k('k2') }, sentinels: { s1: { UID: 's1', Version: '1.0.0' } }, proxies: { p1: { infoUID: 'i', UID: 'p1', Generation: 1, ProxyTimeout: 1, Version: '1.0.0' } } },
      '1.0.0',
    );
    const w = versionSkew(rows);
    expect(w).toHaveLength(2);
    expect(w[0]).toBe('version skew: more than one stolon-ts version runs: 1.0.0 (stolonctl, sentinel s1, proxy p1); 1.1.0 (keeper k1); finish the upgrade so that every program runs the same release');
    expect(w[1]).toMatch(/^version skew: keeper k2 publish no version/);
  });

  it('warns about keepers on different PostgreSQL major versions', () => {
    const rows = buildVersions({ keepers: { k1: k('k1', '1.0.0', 15), k2: k('k2', '1.0.0', 16) }, sentinels: {}, proxies: {} }, '1.0.0');
    expect(versionSkew(rows)).toEqual([expect.stringMatching(/different PostgreSQL major versions \(15, 16\)/)]);
  });
});

describe('reloadOutcomes', () => {
  it('acknowledged keepers with their pending restarts; the others with why', () => {
    const cd = twoStandbys();
    const acked = { ...keeperInfo('k1', cd, { pendingRestart: ['max_connections'] }), reloadGeneration: 3 };
    const old = { ...keeperInfo('k2', cd), reloadGeneration: 2 };
    const out = reloadOutcomes(cd, ['k1', 'k2', 'k3'], { k1: acked, k2: old }, 3);
    expect(out).toEqual([
      { keeperUID: 'k1', role: 'primary', reloaded: true, pendingRestart: ['max_connections'] },
      { keeperUID: 'k2', role: 'standby', reloaded: false, pendingRestart: [], why: 'it has not run a pass that converged its DB since the request' },
      { keeperUID: 'k3', role: 'standby', reloaded: false, pendingRestart: [], why: 'it publishes no info: is the keeper running?' },
    ]);
  });
});

describe('the commands against the in-memory store', () => {
  const stores: MemoryStore[] = [];
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((x) => x.close()));
  });

  async function setup(cd: ClusterData): Promise<{ ctx: CommandContext; store: MemoryStore; out: string[]; errs: string[] }> {
    const store = new MemoryStore(new MemoryBackend(), { clusterName: 'c1' });
    stores.push(store);
    await store.overwriteClusterData(serializeClusterData(cd));
    const out: string[] = [];
    const errs: string[] = [];
    return { ctx: { store, clusterName: 'c1', out: (t) => out.push(t), err: (l) => errs.push(l) }, store, out, errs };
  }

  it('reinit of the primary exits 1 and writes nothing; of a standby (--no-wait) records the request', async () => {
    const h = await setup(twoStandbys());
    const before = (await h.store.getClusterData())!.text;
    expect(await runReinit(h.ctx, { keeper: 'k1', yes: true })).toBe(1);
    expect(h.errs.join('\n')).toMatch(/^stolonctl reinit: keeper k1 holds the primary/);
    expect((await h.store.getClusterData())!.text).toBe(before);
    expect(await runReinit(h.ctx, { keeper: 'k2', noWait: true })).toBe(1);
    expect(h.errs.at(-1)).toMatch(/--yes/);
    expect(await runReinit(h.ctx, { keeper: 'k2', yes: true, noWait: true })).toBe(0);
    const cd = parseClusterData((await h.store.getClusterData())!.text);
    expect(cd.cluster.status.reinitRequest).toMatchObject({ keeperUID: 'k2', dbUid: dbOf('k2') });
    expect(await runReinit(h.ctx, { keeper: '', yes: true })).toBe(2);
    expect(await runReinit(h.ctx, { keeper: 'k3', yes: true, timeout: 'soon' })).toBe(2);
  });

  it('reload bumps the generation and reports each keeper; exit 1 when one does not acknowledge in time', async () => {
    const cd = twoStandbys();
    const h = await setup(cd);
    await h.store.setInfo('keepers', 'k1', { ...keeperInfo('k1', cd, { pendingRestart: ['shared_buffers'] }), reloadGeneration: 1 }, 10_000);
    await h.store.setInfo('keepers', 'k2', { ...keeperInfo('k2', cd), reloadGeneration: 1 }, 10_000);
    expect(await runReload(h.ctx, { keeper: 'k1', timeout: '1s', pollMs: 20 })).toBe(0);
    expect(h.out.join('\n')).toMatch(/generation 1\) for keeper k1\nkeeper k1 \(primary\): reloaded; pending restart: shared_buffers/);
    expect(parseClusterData((await h.store.getClusterData())!.text).cluster.status.reloadRequest).toMatchObject({ generation: 1, keeperUIDs: ['k1'] });
    h.out.length = 0;
    expect(await runReload(h.ctx, { timeout: '1s', pollMs: 50 })).toBe(1);
    expect(parseClusterData((await h.store.getClusterData())!.text).cluster.status.reloadRequest?.generation).toBe(2);
    expect(h.out.join('\n')).toMatch(/keeper k3 \(standby\): not reloaded within 1s: it publishes no info/);
    expect(h.errs.at(-1)).toMatch(/3 keeper\(s\) holding a DB did not reload within 1s/);
    expect(await runReload(h.ctx, { keeper: 'nope' })).toBe(1);
    expect(await runReload(h.ctx, { timeout: '0s' })).toBe(2);
  });
});
