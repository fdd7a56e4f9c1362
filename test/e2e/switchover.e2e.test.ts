/**
 * Planned switchover with a writer running through the proxy that opens a new connection per
 * INSERT: zero acknowledged writes lost, zero failed connection attempts (the proxy holds new
 * connections from the fence until the new primary is routed), the write outage measured, the old
 * primary kept as a standby without a clone, and the trace visible in `stolonctl events`; then a
 * held connection past `switchoverHoldTimeout` is closed.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import { proxyRowWriter, waitConvergedInStatus, type WriterError } from './switchover-common.js';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, { tmpPrefix: 'stolon-switchover-e2e-', keepers: 2, clusterName: 'sw', logLevel: 'debug', failpoints: true });

function direct(i: number): pg.ClientConfig {
  return e2e.cluster.directClientConfig(i);
}

function primaryIndex(): Promise<number> {
  return e2e.cluster.primaryIndex();
}

/**
 * The proxy's fences since epoch ms `since` (its "target changed from … to none" lines): when it
 * logged each (after the connections to the old primary were closed) and how many it closed.
 */
function proxyFences(since: number): { at: number; closed: number }[] {
  return e2e.cluster
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('[proxy') && l.includes('"msg":"target changed from') && / to none \(proxy generation/.test(l))
    .map((l) => ({ at: Number(/"time":(\d+)/.exec(l)?.[1] ?? NaN), closed: Number(/"closed":(\d+)/.exec(l)?.[1] ?? NaN) }))
    .filter((f) => f.at >= since);
}

/** The longest gap between two consecutive acknowledged writes, ms. */
function largestGap(acked: readonly { at: number }[]): number {
  let gap = 0;
  for (let i = 1; i < acked.length; i++) {
    gap = Math.max(gap, acked[i]!.at - acked[i - 1]!.at);
  }
  return gap;
}

describe('planned switchover', () => {
  it('moves the primary with a writer running: nothing acknowledged lost, old primary kept as a standby', async () => {
    await query(e2e.cluster.proxyClientConfig(0), 'create table w (id int primary key)');
    const before = await primaryIndex();
    expect(before).toBeGreaterThanOrEqual(0);
    const other = 1 - before;
    // The standby must be streaming before it can be a target.
    await waitFor(async () => ((await query<{ n: string }>(direct(before), "select count(*) as n from pg_stat_replication where state = 'streaming' and application_name like 'stolon\\_%'"))[0]?.n === '1' ? true : undefined), {
      timeoutMs: 30_000,
      what: 'the standby to stream',
    });
    // …and the sentinel must have recorded it healthy and converged, or the switchover is refused.
    await waitConvergedInStatus(e2e.cluster, 2, 30_000);
    const dbDirBefore = await query<{ id: string }>(direct(other), 'select system_identifier::text as id from pg_control_system()');

    const acked: { id: number; at: number }[] = [];
    const errors: WriterError[] = [];
    let stop = false;
    const w = proxyRowWriter(e2e.cluster, () => stop, acked, { maxMs: 60_000, errors });
    await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });

    const requestedAt = Date.now();
    const sw = await e2e.cluster.stolonctl(['switchover', '--yes', '--to', e2e.cluster.keepers[other]!.uid]);
    expect(sw.code, sw.stderr + sw.stdout).toBe(0);
    await waitFor(async () => ((await primaryIndex()) === other ? true : undefined), { timeoutMs: 60_000, what: 'the target to be primary' });
    const switchedAt = Date.now();
    await waitFor(() => (acked.some((a) => a.at > switchedAt + 1000) ? true : undefined), { timeoutMs: 30_000, what: 'writes to resume' });
    stop = true;
    await w;

    // Zero acknowledged writes lost.
    const ids = new Set((await query<{ id: number }>(e2e.cluster.proxyClientConfig(0), 'select id from w')).map((r) => r.id));
    const lost = acked.filter((a) => !ids.has(a.id));
    expect(lost).toEqual([]);
    // The longest gap between two acknowledged writes is the write outage.
    const gap = largestGap(acked);
    // An attempt that started before the proxy's fence was connected to the old primary: a
    // session on it, which the fence ends (at most the connections the proxy says it closed). Every
    // attempt that started after it was held and then connected to the new primary: none failed.
    const fences = proxyFences(requestedAt);
    expect(fences, 'one fence logged by the proxy').toHaveLength(1);
    const fence = fences[0]!;
    const failedAttempts = errors.filter((e) => e.startedAt >= fence.at);
    const cut = errors.filter((e) => e.startedAt < fence.at);
    process.stdout.write(
      `switchover write outage (largest gap between acknowledged writes): ${gap} ms; ${acked.length} writes acknowledged, ` +
        `${failedAttempts.length} failed connection attempts, ${cut.length} attempts in flight on the old primary ended by the fence ` +
        `(the proxy closed ${fence.closed}), 0 acknowledged writes lost\n`,
    );
    expect(failedAttempts).toEqual([]);
    expect(cut.length).toBeLessThanOrEqual(fence.closed);
    expect(gap).toBeLessThanOrEqual(2000);
    expect(e2e.cluster.logs()).toMatch(/connected \d+ held connections? to the new primary/);

    // The old primary follows the new one, same data directory (no clone), with every row.
    await waitFor(
      async () => {
        try {
          const r = await query<{ rec: boolean; n: string }>(direct(before), 'select pg_is_in_recovery() as rec, (select count(*) from w) as n');
          return r[0]?.rec === true && Number(r[0]?.n) === ids.size ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'the old primary to follow the new one with every row' },
    );
    expect(e2e.cluster.logs()).not.toMatch(new RegExp(`\\[keeper ${e2e.cluster.keepers[before]!.uid}\\].*resync of db`));
    const dbDirAfter = await query<{ id: string }>(direct(before), 'select system_identifier::text as id from pg_control_system()');
    expect(dbDirAfter[0]?.id).toBe(dbDirBefore[0]?.id);

    const ev = await e2e.cluster.stolonctl(['events', '--format', 'json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.stdout).toContain('"switchover"');
    expect(ev.stdout).toContain('"completed"');
    expect(e2e.cluster.logs()).not.toContain('please report this as a bug');
  });

  it('closes a connection held past switchoverHoldTimeout (here 100 ms; the promotion delayed 600 ms by a failpoint)', async () => {
    const patch = await e2e.cluster.stolonctl(['update', '--patch', '{"switchoverHoldTimeout":"100ms"}']);
    expect(patch.code, patch.stderr).toBe(0);
    await waitConvergedInStatus(e2e.cluster, 2, 60_000);
    const before = await primaryIndex();
    const other = 1 - before;
    await waitFor(async () => ((await query<{ n: string }>(direct(before), "select count(*) as n from pg_stat_replication where state = 'streaming' and application_name like 'stolon\\_%'"))[0]?.n === '1' ? true : undefined), {
      timeoutMs: 60_000,
      what: 'the standby to stream',
    });
    await query(e2e.cluster.proxyClientConfig(0), 'truncate w');
    const acked: { id: number; at: number }[] = [];
    const errors: WriterError[] = [];
    let stop = false;
    const w = proxyRowWriter(e2e.cluster, () => stop, acked, { maxMs: 60_000, errors });
    try {
      await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });
      // A switchover can leave no primary for less than 100 ms on a fast machine: the target's
      // promotion waits 600 ms (failpoint keeperBeforePromote), so held connections outlast the hold.
      await writeFile(join(e2e.cluster.keepers[other]!.failpointsDir!, 'keeperBeforePromote'), 'sleep(600)');
      const requestedAt = Date.now();
      const sw = await e2e.cluster.stolonctl(['switchover', '--yes', '--to', e2e.cluster.keepers[other]!.uid]);
      expect(sw.code, sw.stderr + sw.stdout).toBe(0);
      await waitFor(async () => ((await primaryIndex()) === other ? true : undefined), { timeoutMs: 60_000, what: 'the target to be primary' });
      const switchedAt = Date.now();
      await waitFor(() => (acked.some((a) => a.at > switchedAt + 500) ? true : undefined), { timeoutMs: 30_000, what: 'writes to resume' });
      stop = true;
      await w;
      const fence = proxyFences(requestedAt)[0];
      expect(fence).toBeDefined();
      const failedAttempts = errors.filter((e) => e.startedAt >= fence!.at);
      process.stdout.write(`switchoverHoldTimeout 100ms: ${failedAttempts.length} connection attempts closed after being held\n`);
      // The switchover left no primary for at least 600 ms: held connections were closed.
      expect(failedAttempts.length).toBeGreaterThan(0);
      expect(failedAttempts.every((e) => e.stage === 'connect')).toBe(true);
      expect(e2e.cluster.logs()).toMatch(/closed held connection from [^"]*: no new primary routed within switchoverHoldTimeout \(100 ms\)/);
      const ids = new Set((await query<{ id: number }>(e2e.cluster.proxyClientConfig(0), 'select id from w')).map((r) => r.id));
      expect(acked.filter((a) => !ids.has(a.id))).toEqual([]);
    } finally {
      stop = true;
      await w;
      await rm(join(e2e.cluster.keepers[other]!.failpointsDir!, 'keeperBeforePromote'), { force: true });
    }
  });
});
