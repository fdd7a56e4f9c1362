/**
 * Drain on stop (`--shutdown-switchover-timeout`, packages/keeper/src/drain.ts): SIGTERM to the
 * primary's keeper, as a node drain or a rolling update sends it, hands the primary over by a
 * planned switchover before that keeper exits (with a writer running through the proxy: writes
 * resume, nothing acknowledged lost), within the bound; and SIGTERM to a primary's keeper with no
 * standby left stops it at once, without waiting for the bound.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import { proxyRowWriter, waitConvergedInStatus } from './switchover-common.js';

/** The bound under test: long enough for a switchover on a loaded 2-core machine, short enough to tell a wait from none. */
const BOUND_S = 25;

const e2e = e2eCluster(
  { beforeAll, afterAll, beforeEach },
  { tmpPrefix: 'stolon-keeper-drain-e2e-', keepers: 2, clusterName: 'drain', shutdownSwitchoverTimeout: `${BOUND_S}s` },
);

function direct(i: number): pg.ClientConfig {
  return { ...e2e.cluster.directClientConfig(i), connectionTimeoutMillis: 1000 };
}

/** Whether keeper `i`'s PostgreSQL is up and not in recovery; false when it cannot be reached. */
async function isPrimary(i: number): Promise<boolean> {
  try {
    return (await query<{ r: boolean }>(direct(i), 'select pg_is_in_recovery() as r'))[0]?.r === false;
  } catch {
    return false;
  }
}

interface Event {
  kind: string;
  cause?: string;
  result?: string;
  old_primary?: string;
  new_primary?: string;
}

async function events(): Promise<Event[]> {
  const r = await e2e.cluster.stolonctl(['events', '--format', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Event[];
}

describe('keeper drain on SIGTERM', () => {
  it("SIGTERM to the primary's keeper: a switchover to the standby happens before that keeper exits, within the bound; writes resume, nothing acknowledged lost", async () => {
    const c = e2e.cluster;
    await query(c.proxyClientConfig(0), 'create table w (id int primary key)');
    const before = await c.primaryIndex();
    expect(before).toBeGreaterThanOrEqual(0);
    const other = 1 - before;
    // The keeper only asks when clusterdata shows a healthy standby, and the sentinel only starts
    // from a converged primary: wait for both as stolonctl status shows them.
    await waitConvergedInStatus(c, 2, 60_000);

    const acked: { id: number; at: number }[] = [];
    let stop = false;
    const w = proxyRowWriter(c, () => stop, acked, { maxMs: 120_000 });
    await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });

    // Watch, every 100 ms, when the standby becomes primary, while the old primary's keeper stops.
    let promotedAt: number | undefined;
    let watching = true;
    const watch = (async () => {
      while (watching && promotedAt === undefined) {
        if (await isPrimary(other)) {
          promotedAt = Date.now();
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const keeper = c.keepers[before]!;
    const sentAt = Date.now();
    // The harness SIGKILLs past its timeout: give it more than the bound so a hang shows as a kill (exit code null).
    await keeper.process.stop('SIGTERM', (BOUND_S + 30) * 1000);
    const exitedAt = Date.now();
    const code = await keeper.process.exited;
    watching = false;
    await watch;

    expect(code, 'the keeper exits by itself (0), not killed').toBe(0);
    expect(promotedAt, 'the standby became primary').toBeDefined();
    expect(promotedAt!, 'the standby was primary before the old keeper exited').toBeLessThanOrEqual(exitedAt);
    // The bound plus the stop after it (PostgreSQL is already down after a switchover).
    expect(exitedAt - sentAt).toBeLessThan((BOUND_S + 10) * 1000);
    expect(keeper.process.logs()).toMatch(/asking for a switchover before stopping/);
    expect(keeper.process.logs()).toMatch(new RegExp(`switched over to keeper ${c.keepers[other]!.uid}; stopping`));
    expect(keeper.process.logs()).not.toMatch(/stopping the primary without a switchover/);
    // The trace says it was a switchover, asked by the stopping keeper, and completed.
    const last = (await events()).filter((e) => e.kind === 'switchover').at(-1);
    expect(last).toMatchObject({ kind: 'switchover', result: 'completed' });
    expect(last?.cause).toMatch(new RegExp(`requested by keeper ${keeper.uid}, stopping at `));

    const resumedFrom = Date.now();
    await waitFor(() => (acked.some((a) => a.at > resumedFrom) ? true : undefined), { timeoutMs: 30_000, what: 'writes through the proxy to resume' });
    stop = true;
    await w;
    const ids = new Set((await query<{ id: number }>(c.proxyClientConfig(0), 'select id from w')).map((r) => r.id));
    expect(acked.filter((a) => !ids.has(a.id))).toEqual([]);
    expect(await c.primaryIndex()).toBe(other);
  }, 180_000);

  it("SIGTERM to a primary's keeper with no standby left: it stops at once, without a switchover", async () => {
    const c = e2e.cluster;
    const primary = await c.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    expect(c.keepers[1 - primary]!.process.running()).toBe(false);
    // Until the sentinel has marked the stopped keeper unhealthy (failInterval), clusterdata still
    // shows it as a healthy standby and the keeper would ask (and wait) for a switchover.
    const gone = c.keepers[1 - primary]!.uid;
    await waitFor(
      async () => {
        const st = await c.stolonctl(['status', '--format', 'json']);
        const k = (JSON.parse(st.stdout) as { keepers: { uid: string; healthy?: boolean }[] }).keepers.find((x) => x.uid === gone);
        return k !== undefined && k.healthy !== true ? true : undefined;
      },
      { timeoutMs: 60_000, what: `keeper ${gone} unhealthy in stolonctl status` },
    );
    const switchovers = async () => (await events()).filter((e) => e.kind === 'switchover').length;
    const countBefore = await switchovers();
    const keeper = c.keepers[primary]!;
    const sentAt = Date.now();
    await keeper.process.stop('SIGTERM', (BOUND_S + 30) * 1000);
    const took = Date.now() - sentAt;
    expect(await keeper.process.exited).toBe(0);
    // Well below the bound: it did not wait for a switchover that cannot happen.
    expect(took).toBeLessThan((BOUND_S * 1000) / 2);
    expect(keeper.process.logs()).toMatch(/stopping the primary without a switchover: no healthy standby/);
    expect(keeper.process.logs().match(/asking for a switchover before stopping/g) ?? []).toHaveLength(0);
    // (The sentinel then records a failover with no candidate: the primary's keeper is gone.)
    expect(await switchovers()).toBe(countBefore);
  }, 120_000);
});
