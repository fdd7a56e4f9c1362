/**
 * Drain on stop with synchronous replication (strict: minSynchronousStandbys 1): SIGTERM to the
 * primary's keeper of a 3-keeper cluster under a writer through the proxy hands the primary to a
 * standby by a switchover before the keeper exits; every write the primary acknowledged (hence
 * written on a synchronous standby first) is on the new primary, and writes resume through the
 * proxy with the third keeper as the new synchronous standby.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import { proxyRowWriter, waitConvergedInStatus } from './switchover-common.js';

const BOUND_S = 25;
const e2e = e2eCluster(
  { beforeAll, afterAll, beforeEach },
  {
    tmpPrefix: 'stolon-keeper-drain-sync-e2e-',
    keepers: 3,
    clusterName: 'drainsync',
    spec: { initMode: 'new', synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 1 },
    shutdownSwitchoverTimeout: `${BOUND_S}s`,
    startTimeoutMs: 150_000,
  },
);

describe('keeper drain on SIGTERM, synchronous replication', () => {
  it("SIGTERM to the primary's keeper: switched over before it exits, nothing acknowledged lost, writes resume", async () => {
    const c = e2e.cluster;
    await query(c.proxyClientConfig(0), 'create table w (id int primary key)');
    const before = await c.primaryIndex();
    expect(before).toBeGreaterThanOrEqual(0);
    // Both standbys streaming, one of them synchronous, and the sentinel sees everyone healthy and converged.
    await waitFor(
      async () => {
        const rows = await query<{ n: string; s: string }>(
          c.directClientConfig(before),
          "select count(*) as n, count(*) filter (where sync_state = 'sync') as s from pg_stat_replication where state = 'streaming' and application_name like 'stolon\\_%'",
        );
        return rows[0]?.n === '2' && rows[0]?.s === '1' ? true : undefined;
      },
      { timeoutMs: 90_000, what: 'two streaming standbys, one synchronous' },
    );
    await waitConvergedInStatus(c, 3, 60_000);

    const acked: { id: number; at: number }[] = [];
    let stop = false;
    const w = proxyRowWriter(c, () => stop, acked, { maxMs: 120_000 });
    await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });

    const keeper = c.keepers[before]!;
    const sentAt = Date.now();
    await keeper.process.stop('SIGTERM', (BOUND_S + 30) * 1000);
    const exitedAt = Date.now();
    expect(await keeper.process.exited, 'the keeper exits by itself').toBe(0);
    expect(exitedAt - sentAt).toBeLessThan((BOUND_S + 10) * 1000);
    expect(keeper.process.logs()).toMatch(/switched over to keeper keeper\d; stopping/);
    const after = await c.primaryIndex();
    expect([0, 1, 2].filter((i) => i !== before)).toContain(after);

    const resumedFrom = Date.now();
    await waitFor(() => (acked.some((a) => a.at > resumedFrom) ? true : undefined), { timeoutMs: 60_000, what: 'writes through the proxy to resume' });
    stop = true;
    await w;
    const ids = new Set((await query<{ id: number }>(c.proxyClientConfig(0), 'select id from w')).map((r) => r.id));
    expect(acked.filter((a) => !ids.has(a.id))).toEqual([]);
    // The new primary waits for a synchronous standby: the remaining keeper (the old one is stopped).
    await waitFor(
      async () => ((await query<{ s: string }>(c.directClientConfig(after), "select count(*) as s from pg_stat_replication where sync_state = 'sync' and state = 'streaming'"))[0]?.s === '1' ? true : undefined),
      { timeoutMs: 60_000, what: 'the third keeper streaming as the synchronous standby of the new primary' },
    );
  }, 240_000);
});
