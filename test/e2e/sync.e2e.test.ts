/**
 * Synchronous replication (Stolon's strict mode) on real etcd and PostgreSQL: 3 keepers with
 * min = max = 1 synchronous standby. (a) the primary names one standby in
 * synchronous_standby_names and commits through the proxy return; (b) kill -9 of the primary's
 * node under a write load loses no acknowledged write and promotes the former synchronous
 * standby; (c) with no synchronous standby left, commits block, and return once it is back.
 * The sentinel's side is in packages/cluster/src/sync.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseClusterData, type ClusterData } from '@stolon-ts/cluster';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import type { Store } from '@stolon-ts/store';

const SPEC = { initMode: 'new', synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 1 };

let store: Store;
const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-sync-e2e-',
  subdir: 'c',
  keepers: 3,
  clusterName: 'sync',
  spec: SPEC,
  logLevel: 'debug',
  startTimeoutMs: 120_000,
  setup: async (c) => {
    store = await c.openStore();
  },
  teardown: async () => {
    await store?.close().catch(() => undefined);
  },
});

function direct(i: number): pg.ClientConfig {
  return e2e.cluster.directClientConfig(i);
}

/** The proxy, with a client-side limit so a blocked commit cannot hang a helper. */
function proxy(queryTimeoutMs = 5000): pg.ClientConfig {
  return { ...e2e.cluster.proxyClientConfig(0), query_timeout: queryTimeoutMs };
}

async function clusterData(): Promise<ClusterData> {
  const rec = await store.getClusterData();
  if (rec === null) {
    throw new Error('no clusterdata');
  }
  return parseClusterData(rec.text);
}

const keeperIndex = (uid: string): number => e2e.cluster.keepers.findIndex((k) => k.uid === uid);

/** What the sentinel says about synchronous replication right now. */
interface SyncView {
  readonly primary: number;
  /** Keeper index of each spec synchronous standby. */
  readonly syncKeepers: number[];
  readonly specUids: string[];
  readonly known: string[];
  readonly external: string[];
}

async function syncView(): Promise<SyncView> {
  const cd = await clusterData();
  const m = cd.dbs[cd.cluster.status.master];
  if (m === undefined) {
    throw new Error('no primary db');
  }
  return {
    primary: keeperIndex(m.spec.keeperUID),
    syncKeepers: m.spec.synchronousStandbys.map((u) => keeperIndex(cd.dbs[u]?.spec.keeperUID ?? '')),
    specUids: [...m.spec.synchronousStandbys],
    known: [...m.status.synchronousStandbys],
    external: [...m.spec.externalSynchronousStandbys],
  };
}

/**
 * Waits until the primary has exactly one synchronous standby, known in sync by the sentinel,
 * named in the primary's synchronous_standby_names and `sync` in its pg_stat_replication.
 */
async function settledSync(what: string, timeoutMs: number): Promise<SyncView> {
  return waitFor(
    async () => {
      const v = await syncView();
      const uid = v.specUids[0];
      if (v.specUids.length !== 1 || uid === undefined || v.external.length > 0 || v.known.join() !== uid) {
        return undefined;
      }
      const [names] = await query<{ synchronous_standby_names: string }>(direct(v.primary), 'show synchronous_standby_names');
      const rows = await query<{ application_name: string; sync_state: string }>(
        direct(v.primary),
        'select application_name, sync_state from pg_stat_replication',
      );
      const app = `stolon_${uid}`;
      return names?.synchronous_standby_names === app && rows.some((r) => r.application_name === app && r.sync_state === 'sync')
        ? v
        : undefined;
    },
    { timeoutMs, what, intervalMs: 200 },
  );
}

/** Resolves with 'done' or 'pending' after `ms`, whichever first; a rejection propagates. */
function within<T>(p: Promise<T>, ms: number): Promise<'done' | 'pending'> {
  return Promise.race([p.then(() => 'done' as const), new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
}

describe('synchronous replication (strict mode)', () => {
  let syncStandby = -1;

  it('(a) once converged the primary names one standby synchronous, and a commit through the proxy returns', async () => {
    const v = await settledSync('one synchronous standby, known in sync, named and streaming sync', 60_000);
    expect(v.syncKeepers).toHaveLength(1);
    syncStandby = v.syncKeepers[0]!;
    expect(syncStandby).not.toBe(v.primary);
    expect(syncStandby).toBeGreaterThanOrEqual(0);
    await query(proxy(), 'create table t (id int primary key)');
    await query(proxy(), 'insert into t values (0)');
    // synchronous_commit on waits for the standby's flush, not its replay: allow the replay a moment.
    await waitFor(
      async () => Number((await query<{ n: string }>(direct(syncStandby), 'select count(*) as n from t'))[0]?.n) === 1 || undefined,
      { timeoutMs: 10_000, what: 'the synchronous standby to replay the first row' },
    );
  });

  it('(b) kill -9 of the primary node under writes: no acknowledged write lost, the synchronous standby promoted', async () => {
    expect(syncStandby).toBeGreaterThanOrEqual(0);
    const { primary } = await syncView();
    const acked: number[] = [];
    /** When each acknowledged insert was sent, and when its acknowledgement arrived. */
    const sentAt: number[] = [];
    const ackedAt: number[] = [];
    let stop = false;
    let killedAt = 0;

    // Bounded writer: 300 inserts or 40 s, one at a time, each with a client-side limit; any
    // error means "not acknowledged" (the connection is replaced and the next id tried).
    const writer = (async () => {
      const deadline = Date.now() + 40_000;
      let client: pg.Client | undefined;
      for (let id = 1; id <= 300 && !stop && Date.now() < deadline; id++) {
        try {
          if (client === undefined) {
            client = new pg.Client(proxy(8000));
            client.on('error', () => undefined);
            await client.connect();
          }
          const sent = Date.now();
          await client.query('insert into t values ($1)', [id]);
          acked.push(id);
          sentAt.push(sent);
          ackedAt.push(Date.now());
        } catch {
          await client?.end().catch(() => undefined);
          client = undefined;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await client?.end().catch(() => undefined);
    })();

    try {
      await waitFor(() => acked.length >= 40, { timeoutMs: 20_000, what: '40 acknowledged inserts before the kill' });
      await e2e.cluster.killKeeperNode(primary);
      // From here on nothing the old primary answers can arrive: only inserts sent after this
      // instant count as written through the new primary.
      killedAt = Date.now();
      const firstAfter = await waitFor(
        () => {
          const i = sentAt.findIndex((t) => t >= killedAt);
          return i >= 0 ? { sent: sentAt[i]!, acked: ackedAt[i]!, ackedBefore: i } : undefined;
        },
        { timeoutMs: 45_000, what: 'an acknowledged insert through the proxy sent after the kill', intervalMs: 50 },
      );
      process.stdout.write(
        `sync e2e: write outage after kill -9 of the primary node: ${firstAfter.acked - killedAt} ms until the first ` +
          `acknowledged insert sent after the kill (sent at +${firstAfter.sent - killedAt} ms; ${firstAfter.ackedBefore} acknowledged before the kill)\n`,
      );
      await waitFor(() => sentAt.filter((t) => t >= killedAt).length >= 20 || undefined, {
        timeoutMs: 20_000,
        what: '20 acknowledged inserts after the failover',
      });
    } finally {
      stop = true;
      await writer;
    }

    const after = await syncView();
    expect(after.primary).toBe(syncStandby);
    const rows = await query<{ id: number }>(direct(after.primary), 'select id from t');
    const present = new Set(rows.map((r) => r.id));
    const lost = acked.filter((id) => !present.has(id));
    process.stdout.write(`sync e2e: ${acked.length} inserts acknowledged, ${lost.length} missing on the new primary\n`);
    expect(lost).toEqual([]);
  });

  it('(c) with the synchronous standby stopped (and no other standby up) commits block, then return once it is back', async () => {
    // The new primary picks the remaining standby as its synchronous standby.
    const v = await settledSync('the new primary to have a synchronous standby again', 40_000);
    const standby = v.syncKeepers[0]!;
    const others = e2e.cluster.keepers.map((_, i) => i).filter((i) => i !== v.primary && i !== standby);
    for (const i of others) {
      // The old primary was killed in (b); make sure no other standby could acknowledge.
      expect(e2e.cluster.keepers[i]!.process.running()).toBe(false);
    }
    await e2e.cluster.keepers[standby]!.process.stop('SIGTERM', 20_000);

    const client = new pg.Client(e2e.cluster.proxyClientConfig(0));
    client.on('error', () => undefined);
    await client.connect();
    try {
      // Client side only: a server-side cancel (statement_timeout) of a commit waiting for its
      // synchronous standby returns success with a warning, which is not what is measured here.
      const blocked = client.query('insert into t values (100000)');
      expect(await within(blocked, 4_000)).toBe('pending');

      const restartedAt = Date.now();
      await e2e.cluster.startKeeper(standby);
      expect(await within(blocked, 45_000)).toBe('done');
      process.stdout.write(`sync e2e: the blocked commit returned ${Date.now() - restartedAt} ms after restarting the synchronous standby's keeper\n`);
      await query(proxy(), 'insert into t values (100001)');
      const rows = await query<{ n: string }>(proxy(), 'select count(*) as n from t where id >= 100000');
      expect(Number(rows[0]?.n)).toBe(2);
    } finally {
      await client.end().catch(() => undefined);
    }
    expect(e2e.cluster.logs()).not.toContain('please report this as a bug');
  });
});
