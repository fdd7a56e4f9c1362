/**
 * A postgres crash with its keeper alive, on real etcd and PostgreSQL:
 * 1. SIGKILL of the primary's postmaster: the keeper notices within ~100 ms and restarts it (crash
 *    recovery); the same keeper stays primary, no failover; the write outage is printed.
 * 2. The same, but postgres cannot start again (pg_control unreadable): the keeper reports the start
 *    error and the sentinel fails over at once, without waiting failInterval.
 */
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, failoverEvents, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-crash-e2e-',
  keepers: 2,
  clusterName: 'crash',
  logLevel: 'debug',
  logTailLines: 250,
  setup: async (c) => {
    await query(c.proxyClientConfig(0), 'create table c (id serial primary key)');
    await waitKeepersConverged(c, 2);
  },
});

/** Inserts through the proxy back to back (reconnecting) and returns the acknowledgement times. */
function writer(): { acks: number[]; stop: () => Promise<void> } {
  const acks: number[] = [];
  let stopped = false;
  const done = (async () => {
    const deadline = Date.now() + 120_000;
    while (!stopped && Date.now() < deadline) {
      try {
        await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, 'insert into c values (default)');
        acks.push(Date.now());
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    acks,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

function longestGap(acks: readonly number[], from: number): number {
  let gap = 0;
  const xs = acks.filter((a) => a >= from - 1000);
  for (let i = 1; i < xs.length; i++) {
    gap = Math.max(gap, xs[i]! - xs[i - 1]!);
  }
  return gap;
}

describe('postgres crash with its keeper alive', () => {
  it('SIGKILL of the postmaster: the keeper restarts it at once, the same keeper stays primary, no failover', async () => {
    const p = await e2e.cluster.primaryIndex();
    const before = (await failoverEvents(e2e.cluster)).length;
    const w = writer();
    await waitFor(() => (w.acks.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });
    const pid = await e2e.cluster.keepers[p]!.postmasterPid();
    expect(pid).toBeDefined();
    const killedAt = Date.now();
    process.kill(pid!, 'SIGKILL');
    await waitFor(() => (w.acks.some((a) => a > killedAt + 500) ? true : undefined), { timeoutMs: 30_000, what: 'writes to resume' });
    await w.stop();
    const gap = longestGap(w.acks, killedAt);
    process.stdout.write(`postgres crash (SIGKILL of the postmaster), keeper alive: write outage ${gap} ms through the proxy\n`);
    // Where the time went: the keeper's own account, ms after the kill.
    for (const line of e2e.cluster.keepers[p]!.process.logs().split('\n')) {
      const m = /"time":(\d+).*"msg":"([^"]*)"/.exec(line);
      if (m !== null && Number(m[1]) >= killedAt && Number(m[1]) <= killedAt + gap + 1000 && !line.includes('"level":20')) {
        process.stdout.write(`  +${Number(m[1]) - killedAt} ms ${m[2]!.slice(0, 120)}\n`);
      }
    }
    expect(await e2e.cluster.primaryIndex()).toBe(p);
    expect((await failoverEvents(e2e.cluster)).length).toBe(before);
    expect(e2e.cluster.keepers[p]!.process.logs()).toContain('postgres is no longer running');
    // Well inside failInterval (6 s): the restart, not a failover, ended the outage.
    expect(gap).toBeLessThan(6000);
  });

  it('postgres that cannot start again (pg_control unreadable): the keeper reports it and the sentinel fails over without waiting failInterval', async () => {
    await waitKeepersConverged(e2e.cluster, 2);
    const p = await e2e.cluster.primaryIndex();
    const keeper = e2e.cluster.keepers[p]!;
    const w = writer();
    await waitFor(() => (w.acks.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });
    const pid = await keeper.postmasterPid();
    // Make the restart fail for sure (racing the keeper for the port loses now that it restarts
    // within ~100 ms): pg_control unreadable for the postgres OS user, then the postmaster killed.
    const control = join(keeper.dataDir, 'postgres', 'global', 'pg_control');
    await chmod(control, 0o000);
    const killedAt = Date.now();
    process.kill(pid!, 'SIGKILL');
    // After the failover the keeper may already be re-cloning this data directory (pg_control absent
    // until pg_basebackup ends): then there is nothing to restore.
    const restore = () =>
      chmod(control, 0o600).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') {
          throw err;
        }
      });
    try {
      await waitFor(async () => ((await e2e.cluster.primaryIndex()) === 1 - p ? true : undefined), { timeoutMs: 30_000, what: 'the standby to be promoted' });
      await waitFor(() => (w.acks.some((a) => a > killedAt + 500) ? true : undefined), { timeoutMs: 30_000, what: 'writes to resume' });
      await w.stop();
      const gap = longestGap(w.acks, killedAt);
      process.stdout.write(`postgres crash that cannot restart: failover, write outage ${gap} ms through the proxy\n`);
      const ev = (await failoverEvents(e2e.cluster)).at(-1)!;
      expect(ev.oldPrimary.keeperUID).toBe(keeper.uid);
      expect(ev.cause).toContain('cannot be started');
      // failInterval is 6 s: without the start-error report the sentinel would still be waiting.
      expect(gap).toBeLessThan(6000);
    } finally {
      await w.stop();
      await restore();
    }
    await waitKeepersConverged(e2e.cluster, 2);
  });
});
