/**
 * Failover and fencing on the stand-in store backends, in `npm test` (the full e2e matrix on
 * every backend is `npm run test:backends`). No Kubernetes API server and no Consul server can be
 * had on this machine: each runs as a stand-in API server inside the test process, checked
 * separately with clients nobody here wrote (kubectl and Patroni's Kubernetes client; python-consul
 * and Patroni's Consul DCS). For each backend, one 2-keeper cluster whose keepers reach the store
 * through their own cuttable relays:
 *
 * 1. kill -9 of the primary's keeper and postgres: the standby is promoted with every row it had,
 *    writes through the proxy resume, and the killed keeper rejoins as a standby.
 * 2. the primary's keeper cut off from the store (its relay cut, everything else still reaches
 *    the store): its fencer shuts PostgreSQL down before the sentinel chooses the standby, so no
 *    direct client writes to it after that; once healed it rejoins as a standby.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, failoverEvents, query, waitFor, waitKeepersConverged, type E2eCluster } from '@stolon-ts/harness';

/** A write straight to keeper `i`'s PostgreSQL; false when refused or unreachable. */
async function directWrite(e2e: E2eCluster, i: number): Promise<boolean> {
  try {
    await query({ ...e2e.cluster.directClientConfig(i), connectionTimeoutMillis: 1000 }, 'insert into t (note) values ($1)', ['direct']);
    return true;
  } catch {
    return false;
  }
}

/** Waits until a write through the proxy succeeds. */
async function writableThroughProxy(e2e: E2eCluster, what: string): Promise<void> {
  await waitFor(
    async () => {
      try {
        await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, 'insert into t (note) values ($1)', ['proxy']);
        return true;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 60_000, what, intervalMs: 100 },
  );
}

/** Waits until keeper `i` runs PostgreSQL in recovery with at least `rows` rows of t. */
async function rejoinedAsStandby(e2e: E2eCluster, i: number, rows: number): Promise<void> {
  await waitFor(
    async () => {
      try {
        const r = await query<{ rec: boolean; n: string }>(e2e.cluster.directClientConfig(i), 'select pg_is_in_recovery() as rec, (select count(*) from t) as n');
        return r[0]?.rec === true && Number(r[0]?.n) >= rows ? true : undefined;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 90_000, what: `keeper ${i} to rejoin as a standby with ${rows} rows`, intervalMs: 500 },
  );
}

describe.each(['kubernetes', 'consul'] as const)('failover and fencing on the %s store (stand-in)', (store) => {
  const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
    tmpPrefix: `stolon-backend-${store}-e2e-`,
    store,
    keepers: 2,
    clusterName: `backend-${store === 'kubernetes' ? 'kube' : store}`,
    keeperStoreRelays: true,
    logLevel: 'debug',
    setup: async (c) => {
      await query(c.proxyClientConfig(0), 'create table t (id serial primary key, note text)');
      await waitKeepersConverged(c, 2);
    },
  });

  it('kill -9 of the primary keeper and postgres: the standby is promoted with every row, writes resume, the old primary rejoins', async () => {
    const proxy = e2e.cluster.proxyClientConfig(0);
    for (let i = 0; i < 20; i++) {
      await query(proxy, 'insert into t (note) values ($1)', [`row ${i}`]);
    }
    const p = await e2e.cluster.primaryIndex();
    expect(p).toBeGreaterThanOrEqual(0);
    const standby = 1 - p;
    const received = await waitFor(
      async () => {
        const [primaryRows, standbyRows] = await Promise.all([p, standby].map((i) => query<{ n: string }>(e2e.cluster.directClientConfig(i), 'select count(*) as n from t')));
        return Number(standbyRows?.[0]?.n) === Number(primaryRows?.[0]?.n) ? Number(standbyRows?.[0]?.n) : undefined;
      },
      { timeoutMs: 30_000, what: 'the standby to replay every row' },
    );
    const killedAt = Date.now();
    await e2e.cluster.killKeeperNode(p);
    await writableThroughProxy(e2e, 'a write through the proxy after the primary was killed');
    process.stdout.write(`${store}: write outage after kill -9 of the primary node: ${Date.now() - killedAt} ms\n`);
    expect(await e2e.cluster.primaryIndex()).toBe(standby);
    const after = await query<{ n: string }>(proxy, 'select count(*) as n from t');
    expect(Number(after[0]?.n)).toBeGreaterThanOrEqual(received + 1);
    const ev = (await failoverEvents(e2e.cluster)).at(-1);
    expect(ev?.kind).toBe('failover');
    expect(ev?.oldPrimary.keeperUID).toBe(e2e.cluster.keepers[p]!.uid);
    await e2e.cluster.startKeeper(p);
    await rejoinedAsStandby(e2e, p, received + 1);
    await waitKeepersConverged(e2e.cluster, 2);
  });

  it('the primary keeper cut off from the store: postgres fenced before the standby is chosen; healed, it rejoins as a standby', async () => {
    const p = await e2e.cluster.primaryIndex();
    expect(p).toBeGreaterThanOrEqual(0);
    const other = 1 - p;
    const keeper = e2e.cluster.keepers[p]!;
    const before = (await failoverEvents(e2e.cluster)).length;
    let lastDirectOk = 0;
    let probing = true;
    const probe = (async () => {
      while (probing) {
        if (await directWrite(e2e, p)) {
          lastDirectOk = Date.now();
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const cutAt = Date.now();
    keeper.storeRelay!.cut();
    try {
      await waitFor(async () => ((await e2e.cluster.primaryIndex()) === other ? true : undefined), { timeoutMs: 60_000, what: 'the standby to be promoted' });
      await writableThroughProxy(e2e, 'writes through the proxy to the new primary');
      probing = false;
      await probe;
      const events = await failoverEvents(e2e.cluster);
      expect(events.length).toBe(before + 1);
      const ev = events.at(-1)!;
      expect(ev.oldPrimary.keeperUID).toBe(keeper.uid);
      const chosenAt = Date.parse(ev.phases['candidateChosen'] ?? '');
      expect(Number.isFinite(chosenAt)).toBe(true);
      process.stdout.write(`${store}: cut off at ${cutAt}, last direct write ${lastDirectOk - cutAt} ms later, standby chosen ${chosenAt - cutAt} ms later\n`);
      expect(lastDirectOk).toBeGreaterThan(0);
      expect(lastDirectOk).toBeLessThan(chosenAt);
      expect(await directWrite(e2e, p)).toBe(false);
      expect(keeper.process.logs()).toContain('self-fencing: ');
    } finally {
      probing = false;
      keeper.storeRelay!.heal();
    }
    await waitKeepersConverged(e2e.cluster, 2);
    await rejoinedAsStandby(e2e, p, 1);
  });
});
