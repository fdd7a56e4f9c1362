/**
 * Failover safety on real etcd and PostgreSQL, 3 keepers behind one proxy:
 * (a) `stolonctl failkeeper` on the primary: the old primary, whose keeper is live, is shut down
 *     before the new one is promoted, so a client writing straight to its port never overlaps
 *     with a client writing to the new primary;
 * (b) zone loss: the primary node dies, then (at once) the node of the standby the sentinel chose
 *     to promote: the third keeper becomes primary in bounded time;
 * (c) the old primary's node dies as a switchover starts (the standbys hold their promotion 3 s
 *     with failpoint keeperBeforePromote, so the kill lands while it runs): the switchover becomes
 *     a failover, a primary exists again in bounded time, and `stolonctl switchover` says so;
 * (d) no keeper holding a DB is left (a standby down, then the primary and the standby chosen in its
 *     place): the old primary's keeper, restarted without a DB, gets its DB back as a standby and is
 *     promoted again, with every row it had;
 * (e) after a failover, the standby chosen in a second one is killed before its promotion and
 *     restarted: it keeps every row acknowledged on the second primary's timeline (found by
 *     test:chaos, chosenStandbyDiesMidPromotion after killLeaderSentinelWithPrimary).
 * The decisions are table-tested in packages/cluster/src/decide.test.ts and switchover.test.ts.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseClusterData, type ClusterData } from '@stolon-ts/cluster';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';
import { createStore, type Store } from '@stolon-ts/store';

let store: Store;
const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-failover-safety-e2e-',
  keepers: 3,
  clusterName: 'ffs',
  logLevel: 'debug',
  failpoints: true,
  setup: async (c) => {
    store = await createStore({ backend: 'etcdv3', endpoints: c.etcd.endpoints, clusterName: 'ffs' });
    await query(c.proxyClientConfig(0), 'create table a (id serial primary key, who int)');
  },
  teardown: async () => {
    await store?.close().catch(() => undefined);
  },
});

/** Straight to keeper `i`'s PostgreSQL, with client-side limits so a dying server cannot hang a loop. */
function direct(i: number): pg.ClientConfig {
  return { ...e2e.cluster.directClientConfig(i), connectionTimeoutMillis: 1000, query_timeout: 2000 };
}

async function clusterData(): Promise<ClusterData> {
  const rec = await store.getClusterData();
  if (rec === null) {
    throw new Error('no clusterdata');
  }
  return parseClusterData(rec.text);
}

const keeperIndex = (uid: string): number => e2e.cluster.keepers.findIndex((k) => k.uid === uid);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until a write through the proxy succeeds; returns the keeper index of the primary then. */
async function writableThroughProxy(timeoutMs: number): Promise<number> {
  await waitFor(
    async () => {
      try {
        await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000, query_timeout: 2000 }, 'insert into a (who) values (-1)');
        return true;
      } catch {
        return undefined;
      }
    },
    { timeoutMs, what: 'a write through the proxy', intervalMs: 200 },
  );
  return e2e.cluster.primaryIndex();
}

/**
 * Kills the primary node `old`, then the node of the standby the sentinel names to replace it the
 * moment clusterdata names it, before it can converge. @returns the chosen keeper's index.
 */
async function killPrimaryAndChosen(old: number): Promise<number> {
  const oldMaster = (await clusterData()).cluster.status.master;
  let chosen: number | undefined;
  let killing: Promise<void> | undefined;
  const watch = await store.watch(['clusterdata'], () => {
    void clusterData()
      .then((cd) => {
        const m = cd.dbs[cd.cluster.status.master];
        if (chosen === undefined && m !== undefined && m.uid !== oldMaster) {
          chosen = keeperIndex(m.spec.keeperUID);
          killing = e2e.cluster.killKeeperNode(chosen);
        }
      })
      .catch(() => undefined);
  });
  try {
    await e2e.cluster.killKeeperNode(old);
    await waitFor(() => (killing !== undefined ? true : undefined), { timeoutMs: 30_000, what: 'the sentinel to choose a standby', intervalMs: 5 });
    await killing;
  } finally {
    await watch.close();
  }
  return chosen!;
}

describe('failover safety', () => {
  it('failkeeper on the primary: the old primary stops taking direct writes before the new one takes its first (overlap 0)', async () => {
    await waitKeepersConverged(e2e.cluster, 3);
    const old = await e2e.cluster.primaryIndex();
    expect(old).toBeGreaterThanOrEqual(0);
    const others = [0, 1, 2].filter((i) => i !== old);
    const deadline = Date.now() + 90_000;
    let stop = false;
    let lastOldAck = 0;
    let oldAcks = 0;
    let firstNew: { sentAt: number; keeper: number } | undefined;

    const oldWriter = (async () => {
      while (!stop && Date.now() < deadline) {
        try {
          await query(direct(old), 'insert into a (who) values ($1)', [old]);
          lastOldAck = Date.now();
          oldAcks += 1;
        } catch {
          await sleep(10);
        }
      }
    })();
    await waitFor(() => (oldAcks >= 10 ? true : undefined), { timeoutMs: 20_000, what: 'direct writes to the old primary' });
    const newChecker = (async () => {
      while (!stop && firstNew === undefined && Date.now() < deadline) {
        for (const i of others) {
          const sentAt = Date.now();
          try {
            await query(direct(i), 'insert into a (who) values ($1)', [i]);
            firstNew ??= { sentAt, keeper: i };
          } catch {
            // A standby refuses writes; a stopped server refuses connections.
          }
        }
        await sleep(10);
      }
    })();

    const r = await e2e.cluster.stolonctl(['failkeeper', e2e.cluster.keepers[old]!.uid]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(() => firstNew, { timeoutMs: 60_000, what: 'a direct write accepted by the new primary', intervalMs: 50 });
    stop = true;
    await Promise.all([oldWriter, newChecker]);

    const gap = firstNew!.sentAt - lastOldAck;
    process.stdout.write(`failkeeper: last direct write to the old primary acknowledged ${gap} ms before the first write to the new one was sent\n`);
    expect(lastOldAck).toBeGreaterThan(0);
    expect(gap).toBeGreaterThan(0);
    expect(e2e.cluster.logs()).toMatch(/its keeper is live and reports postgres running: shutting it down before promoting a standby/);
    expect(await writableThroughProxy(30_000)).toBe(firstNew!.keeper);
  });

  it('zone loss: the primary and the standby chosen to replace it die together; the third keeper becomes primary', async () => {
    await waitKeepersConverged(e2e.cluster, 3);
    const old = await e2e.cluster.primaryIndex();
    expect(old).toBeGreaterThanOrEqual(0);
    const chosen = await killPrimaryAndChosen(old);
    const killedAt = Date.now();
    const third = [0, 1, 2].find((i) => i !== old && i !== chosen)!;

    expect(await writableThroughProxy(45_000)).toBe(third);
    process.stdout.write(`zone loss: writable through the proxy on the third keeper ${Date.now() - killedAt} ms after the chosen standby was killed\n`);
    const last = (await clusterData()).failoverHistory?.at(-1);
    expect(last).toMatchObject({ kind: 'failover', result: 'completed', newPrimary: { keeperUID: e2e.cluster.keepers[third]!.uid } });
    expect(last?.choice).toMatch(/failed before its promotion completed/);

    await e2e.cluster.startKeeper(old);
    await e2e.cluster.startKeeper(chosen);
  });

  it('the old primary\'s node dies as a switchover starts: it becomes a failover, a primary exists again, and stolonctl switchover says so', async () => {
    await waitKeepersConverged(e2e.cluster, 3);
    const old = await e2e.cluster.primaryIndex();
    expect(old).toBeGreaterThanOrEqual(0);

    let killing: Promise<void> | undefined;
    const watch = await store.watch(['clusterdata'], () => {
      void clusterData()
        .then((cd) => {
          if (killing === undefined && cd.cluster.status.failover?.kind === 'switchover') {
            killing = e2e.cluster.killKeeperNode(old);
          }
        })
        .catch(() => undefined);
    });
    // The standbys wait 3 s before promoting (failpoint keeperBeforePromote): without it a
    // switchover can complete (a few hundred ms) before the watch has seen it and the kill landed.
    const standbys = e2e.cluster.keepers.filter((_, i) => i !== old);
    await Promise.all(standbys.map((k) => writeFile(join(k.failpointsDir!, 'keeperBeforePromote'), 'sleep(3000)')));
    let sw: Awaited<ReturnType<typeof e2e.cluster.stolonctl>>;
    try {
      sw = await e2e.cluster.stolonctl(['switchover', '--yes']);
      await killing;
    } finally {
      await watch.close();
      await Promise.all(standbys.map((k) => rm(join(k.failpointsDir!, 'keeperBeforePromote'), { force: true })));
    }
    expect(killing).toBeDefined();
    process.stdout.write(`stolonctl switchover said:\n${sw.stdout}${sw.stderr}\n`);
    expect(sw.code).toBe(1);
    expect(sw.stdout).toMatch(/switchover aborted: .*continuing as a failover/);
    expect(sw.stdout).toMatch(/switchover became a failover/);
    expect(sw.stdout).toMatch(/failover completed/);

    const now = await writableThroughProxy(30_000);
    expect(now).toBeGreaterThanOrEqual(0);
    expect(now).not.toBe(old);
    await e2e.cluster.startKeeper(old);
    await waitKeepersConverged(e2e.cluster, 3);
  });

  it('every keeper holding a DB is gone (a standby down, the primary and the chosen standby killed): the old primary, restarted, gets its DB back and is primary again', async () => {
    await waitKeepersConverged(e2e.cluster, 3);
    const old = await e2e.cluster.primaryIndex();
    expect(old).toBeGreaterThanOrEqual(0);
    const rows = Number((await query<{ n: string }>(direct(old), 'select count(*) as n from a'))[0]!.n);
    const others = [0, 1, 2].filter((i) => i !== old);
    // One standby down first (and seen lost, so it is not the one chosen), then the primary and the
    // standby chosen in its place: no DB holder is left.
    await e2e.cluster.killKeeperNode(others[1]!);
    const lost = e2e.cluster.keepers[others[1]!]!.uid;
    await waitFor(async () => ((await clusterData()).keepers[lost]?.status.healthy === false ? true : undefined), {
      timeoutMs: 30_000,
      what: `the sentinel to see keeper ${lost} lost`,
    });
    const chosen = await killPrimaryAndChosen(old);
    expect(chosen).toBe(others[0]);
    await e2e.cluster.startKeeper(old);
    const startedAt = Date.now();

    expect(await writableThroughProxy(60_000)).toBe(old);
    process.stdout.write(`no DB holder left: the old primary writable again through the proxy ${Date.now() - startedAt} ms after its keeper was started\n`);
    expect(e2e.cluster.logs()).toMatch(/holds no db but has data of db \S+ \(timeline \d+\): giving it back as a standby/);
    const after = Number((await query<{ n: string }>(direct(old), 'select count(*) as n from a'))[0]!.n);
    expect(after).toBeGreaterThan(rows);
    expect((await clusterData()).failoverHistory?.at(-1)).toMatchObject({ kind: 'failover', result: 'completed', newPrimary: { keeperUID: e2e.cluster.keepers[old]!.uid } });

    await e2e.cluster.startKeeper(others[0]!);
    await e2e.cluster.startKeeper(others[1]!);
    await waitKeepersConverged(e2e.cluster, 3);
  });

  it('a chosen standby killed before its promotion and restarted still has every write acknowledged on its upstream\'s new timeline (it replays them in recovery before promoting)', async () => {
    await waitKeepersConverged(e2e.cluster, 3);
    const first = await e2e.cluster.primaryIndex();
    await e2e.cluster.killKeeperNode(first);
    const second = await writableThroughProxy(45_000);
    expect(second).not.toBe(first);
    const third = [0, 1, 2].find((i) => i !== first && i !== second)!;
    // Rows acknowledged on the second primary's timeline, received by the third keeper's standby.
    await query(e2e.cluster.proxyClientConfig(0), 'create table if not exists tl (id int primary key)');
    await query(e2e.cluster.proxyClientConfig(0), 'insert into tl select g from generate_series(1, 500) g on conflict do nothing');
    const lsn = (await query<{ lsn: string }>(direct(second), 'select pg_current_wal_flush_lsn()::text as lsn'))[0]!.lsn;
    await waitFor(
      async () => {
        const r = await query<{ ok: boolean }>(direct(third), 'select pg_last_wal_receive_lsn() >= $1::pg_lsn as ok', [lsn]).catch(() => []);
        return r[0]?.ok === true ? true : undefined;
      },
      { timeoutMs: 20_000, what: 'the third keeper to receive the rows' },
    );
    const chosen = await killPrimaryAndChosen(second);
    expect(chosen).toBe(third);
    await e2e.cluster.startKeeper(third);
    expect(await writableThroughProxy(60_000)).toBe(third);
    const n = (await query<{ n: string }>(e2e.cluster.proxyClientConfig(0), 'select count(*) as n from tl'))[0]!.n;
    expect(Number(n)).toBe(500);
    expect(e2e.cluster.keepers[third]!.process.logs()).toContain('in recovery first: it replays every WAL record it received');

    await e2e.cluster.startKeeper(first);
    await e2e.cluster.startKeeper(second);
    await waitKeepersConverged(e2e.cluster, 3);
  });
});
