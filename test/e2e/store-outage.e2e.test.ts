/**
 * Store outages with failsafe mode (docs/architecture.md, "Store outages: failsafe mode"), on real
 * etcd and PostgreSQL: 2 keepers with the member API, 1 sentinel, 1 proxy, default timings
 * (failInterval 6 s, proxyTimeout 4 s). A writer through the proxy and direct writers to each
 * keeper's PostgreSQL run through each outage (the chaos recorder):
 * (a) etcd frozen with SIGSTOP for 60 s: writes go on through the proxy and directly (largest gap
 *     ≤ 1 s), nothing acknowledged is lost, the same primary afterwards, no failover; meanwhile
 *     `stolonctl status --member-address` says the primary is confirmed by 1/1 members, and after
 *     it `stolonctl events` shows the spell;
 * (b) etcd killed and restarted 30 s later: the same;
 * (c) etcd frozen and the primary's keeper unable to reach the other keeper's member API (here:
 *     that keeper frozen with SIGSTOP; the chaos suite cuts the network instead): the primary
 *     fences itself within the lease deadline, as without failsafe mode, and the standby never
 *     accepts a write;
 * (d) a standby keeper restarted while etcd is frozen (it confirms without clusterdata, for its
 *     own cluster) and a proxy started while etcd is frozen (it routes nowhere until it can read
 *     the store): the primary keeps serving through the first proxy;
 * (e) the proxies' info leases revoked, as etcd does after a freeze shorter than failInterval that
 *     outlived them (proxyTimeout 4 s) while the sentinel kept its leadership: the proxies stay
 *     enabled, the proxy generation does not move, writes through the proxy go on.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RECORDER_TABLES_SQL, e2eCluster, failoverEvents, query, waitFor, waitKeepersConverged, type AckedWrite, type CommandResult } from '@stolon-ts/harness';
import {
  expectGapsWithin,
  expectNothingLost,
  expectOperatorView,
  failsafeSpells,
  outageRecorder,
  proxyState,
  revokeInfoLeases,
  sleep,
  statusDuringOutage,
} from './store-outage-common.js';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-store-outage-e2e-',
  keepers: 2,
  proxies: 2,
  clusterName: 'outage',
  memberApi: true,
  setup: async (c) => {
    await query(c.proxyClientConfig(0), RECORDER_TABLES_SQL);
  },
});

/** Runs `outage` under the writers; returns what they saw from its start to 2 s after it ended. */
async function underWriters(outage: () => Promise<void>): Promise<{ acked: AckedWrite[]; from: number; to: number }> {
  const rec = await outageRecorder(e2e.cluster);
  rec.start();
  try {
    await rec.waitForProxyAcks(20, 20_000);
    const from = Date.now();
    await outage();
    await sleep(2000);
    const to = Date.now();
    return { acked: [...rec.acked], from, to };
  } finally {
    await rec.stop();
  }
}

describe('store outages with failsafe mode', () => {
  it('(a) etcd frozen for 60 s: writes continue through the proxy and directly, nothing lost, same primary, no failover', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const p = await c.primaryIndex();
    const events = (await failoverEvents(c)).length;
    const spellsBefore = await failsafeSpells(c);
    let during: CommandResult | undefined;
    const r = await underWriters(async () => {
      c.etcd.process.pause();
      await sleep(20_000);
      // What an operator sees meanwhile: the store cannot be read, the keepers say who serves.
      during = await statusDuringOutage(c);
      await sleep(40_000);
      c.etcd.process.resume();
    });
    expectGapsWithin(c, r, 'etcd frozen 60 s', 1000);
    await expectNothingLost(c, r.acked, p);
    expect(await c.primaryIndex()).toBe(p);
    expect((await failoverEvents(c)).length).toBe(events);
    expect(c.keepers[p]!.process.logs()).toMatch(/store unreachable, failsafe: primary confirmed by 1\/1 members/);
    expect(c.logs()).not.toMatch(/self-fencing: /);
    await expectOperatorView(c, p, during, { spellsBefore, minRounds: 40 });
  });

  it('(b) etcd killed and restarted 30 s later: the same', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const p = await c.primaryIndex();
    const events = (await failoverEvents(c)).length;
    const r = await underWriters(async () => {
      await c.etcd.kill();
      await sleep(30_000);
      await c.etcd.restart();
    });
    expectGapsWithin(c, r, 'etcd killed for 30 s', 1000);
    await expectNothingLost(e2e.cluster, r.acked, p);
    expect(await c.primaryIndex()).toBe(p);
    expect((await failoverEvents(c)).length).toBe(events);
  });

  it('(c) etcd frozen and the other keeper unreachable: the primary fences itself within the lease deadline; the standby never accepts a write', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const p = await c.primaryIndex();
    const s = 1 - p;
    const logBefore = c.keepers[p]!.process.logs().length;
    const rec = await outageRecorder(c);
    rec.start();
    let frozenAt = 0;
    let fencedAfterMs = -1;
    try {
      await rec.waitForProxyAcks(20, 20_000);
      c.keepers[s]!.process.pause();
      frozenAt = Date.now();
      c.etcd.process.pause();
      await waitFor(() => (c.keepers[p]!.process.logs().slice(logBefore).includes('self-fencing: ') ? true : undefined), {
        timeoutMs: 15_000,
        what: 'the primary to fence itself',
        intervalMs: 20,
      });
      fencedAfterMs = Date.now() - frozenAt;
      // The round that asked the frozen keeper may still be waiting for its answer when the lease
      // runs out (a round starts once a keepalive is 500 ms overdue and waits up to 1 s): the
      // standby stays frozen until that round has failed and said so.
      await waitFor(() => (/failsafe: primary confirmed by 0\/1 members/.test(c.keepers[p]!.process.logs().slice(logBefore)) ? true : undefined), {
        timeoutMs: 3000,
        what: 'a failed confirmation round logged while the standby keeper is frozen',
        intervalMs: 20,
      });
    } finally {
      c.etcd.process.resume();
      c.keepers[s]!.process.resume();
      await rec.stop();
    }
    process.stdout.write(`etcd frozen and the standby keeper unreachable: the primary fenced itself ${fencedAfterMs} ms in\n`);
    // Lease TTL 6 s from the last keepalive, which was at most TTL/3 before the freeze.
    expect(fencedAfterMs).toBeGreaterThan(0);
    expect(fencedAfterMs).toBeLessThan(6000);
    const standbyServer = `${c.keepers[s]!.pgHost}:${c.keepers[s]!.pgPort}`;
    expect(rec.acked.filter((a) => a.kind === 'direct' && `${a.server.addr}:${a.server.port}` === standbyServer)).toEqual([]);
    await waitKeepersConverged(c, 2);
  });

  it('(d) a standby keeper restarted and a proxy started while etcd is frozen: the primary keeps serving; the new proxy routes nowhere until the store is back', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    // After (c) the fenced primary restarts only once a sentinel has recorded its new boot id, and
    // the clusterdata that waitKeepersConverged reads can still show it healthy from before (c):
    // wait for PostgreSQL itself to run as the primary.
    const p = await waitFor(async () => {
      const i = await c.primaryIndex();
      return i >= 0 ? i : undefined;
    }, { timeoutMs: 30_000, what: 'a running primary' });
    const s = 1 - p;
    const events = (await failoverEvents(c)).length;
    let newProxyRefused = false;
    await c.proxies[1]!.process.stop();
    const r = await underWriters(async () => {
      c.etcd.process.pause();
      await sleep(2000);
      await c.keepers[s]!.process.kill();
      await c.startKeeper(s);
      await c.startProxy(1, { waitListening: false });
      await sleep(8000);
      try {
        await query({ ...c.proxyClientConfig(1), connectionTimeoutMillis: 1500, query_timeout: 1500 }, 'select 1');
      } catch {
        newProxyRefused = true;
      }
      await sleep(5000);
      c.etcd.process.resume();
    });
    expectGapsWithin(c, r, 'standby keeper restarted during a 15 s freeze', 1000, ['direct']);
    expect(newProxyRefused).toBe(true);
    await expectNothingLost(e2e.cluster, r.acked, p);
    expect(await c.primaryIndex()).toBe(p);
    expect((await failoverEvents(c)).length).toBe(events);
    await waitFor(async () => ((await query(c.proxyClientConfig(1), 'select 1').catch(() => undefined)) === undefined ? undefined : true), {
      timeoutMs: 20_000,
      what: 'the new proxy to route once the store is back',
    });
  });

  it('(e) the proxies\' info leases revoked as after a short freeze: the proxies stay enabled and keep routing', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    await waitFor(async () => ((await query(c.proxyClientConfig(1), 'select 1').catch(() => undefined)) === undefined ? undefined : true), {
      timeoutMs: 20_000,
      what: 'both proxies routing',
    });
    // A proxy stopped in (d) stays enabled for proxyTimeout + 1 s after its info went: wait until
    // exactly the two running proxies are enabled.
    const { generation } = await waitFor(async () => {
      const s = await proxyState(c);
      return s.enabled.length === 2 ? s : undefined;
    }, { timeoutMs: 20_000, what: 'exactly the two running proxies enabled' });
    const p = await c.primaryIndex();
    const notEnabled = (): number => (c.logs().match(/is not in enabledProxies/g) ?? []).length;
    const notEnabledBefore = notEnabled();
    let revoked = 0;
    const r = await underWriters(async () => {
      revoked = await revokeInfoLeases(c, 'proxies');
      await sleep(3000);
    });
    expect(revoked).toBe(2);
    expectGapsWithin(c, r, 'proxy info leases revoked', 1000, ['proxy']);
    await expectNothingLost(c, r.acked, p);
    expect((await proxyState(c)).generation).toBe(generation);
    expect(notEnabled()).toBe(notEnabledBefore);
  });
});
