/**
 * Self-fencing primary (docs/architecture.md, "Self-fencing primary"), on real etcd and
 * PostgreSQL. Each keeper reaches etcd through its own cuttable TCP relay (the partition stand-in
 * on one host's loopback; the chaos suite does the same with `ip netns`).
 *
 * 1. The primary's keeper cut off from etcd just long enough for its fencer to act, then healed
 *    before its lease expires: PostgreSQL was shut down (direct clients refused), and comes back
 *    on the same keeper as the primary with no failover.
 * 2. The primary's keeper frozen (SIGSTOP, the "zombie primary") past its lease: its PostgreSQL is
 *    shut down before the sentinel promotes the standby, so no client — proxy or direct — can
 *    write to it after the promotion; after SIGCONT it rejoins as a standby.
 * 3. The same with the keeper's whole process group frozen (`kill -STOP -<pgid>`, what a shell's
 *    job control or a cgroup freeze of the keeper does): the fencer runs in its own session, so it
 *    is not frozen with the keeper.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { e2eCluster, failoverEvents, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-fencing-e2e-',
  keepers: 2,
  clusterName: 'fence',
  keeperStoreRelays: true,
  logLevel: 'debug',
  logTailLines: 250,
  setup: async (c) => {
    await query(c.proxyClientConfig(0), 'create table f (id serial primary key)');
    await waitKeepersConverged(c, 2);
  },
});

async function directWrite(i: number): Promise<boolean> {
  try {
    await query({ ...e2e.cluster.directClientConfig(i), connectionTimeoutMillis: 1000 }, 'insert into f values (default)');
    return true;
  } catch {
    return false;
  }
}

async function writableThroughProxy(what: string): Promise<void> {
  await waitFor(
    async () => {
      try {
        await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, 'insert into f values (default)');
        return true;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 60_000, what, intervalMs: 100 },
  );
}

describe('self-fencing primary', () => {
  it('cut off from etcd until its fencer acts, healed before the lease expires: postgres refused writes, then the same keeper serves again with no failover', async () => {
    const p = await e2e.cluster.primaryIndex();
    expect(p).toBeGreaterThanOrEqual(0);
    const keeper = e2e.cluster.keepers[p]!;
    const before = (await failoverEvents(e2e.cluster)).length;
    const logBefore = keeper.process.logs().length;
    const cutAt = Date.now();
    keeper.storeRelay!.cut();
    await waitFor(() => (keeper.process.logs().slice(logBefore).includes('self-fencing: ') ? true : undefined), {
      timeoutMs: 15_000,
      what: 'the fencer to act',
      intervalMs: 20,
    });
    const fencedAfterMs = Date.now() - cutAt;
    // Fenced: a client that bypasses the proxy cannot write (the postmaster refuses or is gone).
    await waitFor(async () => ((await directWrite(p)) ? undefined : true), { timeoutMs: 3000, what: 'direct writes refused', intervalMs: 50 });
    keeper.storeRelay!.heal();
    process.stdout.write(`self-fence after ${fencedAfterMs} ms cut off from etcd (failInterval 6s lease)\n`);
    // The lease (TTL 6 s) cannot have run out before the fence: at most TTL − margin after the last renewal.
    expect(fencedAfterMs).toBeLessThan(6000);
    await writableThroughProxy('writes through the proxy after the fence is lifted');
    expect(await e2e.cluster.primaryIndex()).toBe(p);
    expect(await directWrite(p)).toBe(true);
    expect((await failoverEvents(e2e.cluster)).length).toBe(before);
    expect(keeper.process.logs().slice(logBefore)).toContain('self-fenced at');
    await waitKeepersConverged(e2e.cluster, 2);
  });

  it('the primary keeper alone killed (postgres and its fencer live on) and restarted within its lease: the new keeper retires the old fencer, postgres is not fenced, no failover', async () => {
    const p = await e2e.cluster.primaryIndex();
    const keeper = e2e.cluster.keepers[p]!;
    // The new keeper must take its own lease before the old one could expire. With the file's 6 s
    // lease that leaves ~3.7 s from the kill, less than a keeper restart takes on a loaded 2-core
    // machine; a 16 s lease (failInterval) leaves ~11 s. The keepers re-grant their info leases at
    // their next publish (every sleepInterval, 1 s) once they read the new spec.
    const patch = await e2e.cluster.stolonctl(['update', '--patch', '{"failInterval":"16s"}']);
    expect(patch.code, patch.stderr).toBe(0);
    try {
      await new Promise((r) => setTimeout(r, 3000));
      await waitKeepersConverged(e2e.cluster, 2);
      const before = (await failoverEvents(e2e.cluster)).length;
      const postmaster = await keeper.postmasterPid();
      expect(postmaster).toBeDefined();
      const fencerLog = join(keeper.dataDir, 'fencer.log');
      const fencerLogBefore = await readFile(fencerLog, 'utf8').catch(() => '');
      // SIGKILL of the keeper process only (not its group): its armed fencer is orphaned and would
      // fence at the old lease's deadline (at most TTL 16 s − margin 4 s from now).
      const killedAt = Date.now();
      process.kill(keeper.process.pid, 'SIGKILL');
      // The orphaned fencer holds none of the keeper's output pipes, so the handle sees the exit.
      await keeper.process.exited;
      await e2e.cluster.startKeeper(p);
      await waitFor(() => (keeper.process.logs().includes("stopped the previous keeper process's fencer") ? true : undefined), {
        timeoutMs: 15_000,
        what: 'the new keeper to retire the old fencer',
      });
      // The orphaned fencer said when it would have fenced: past 4.5 s (the most a 6 s lease leaves,
      // TTL − margin 1.5 s), so the 16 s lease was the one in force.
      const gone = /will be fenced in (\d+(?:\.\d+)?) ms/.exec((await readFile(fencerLog, 'utf8')).slice(fencerLogBefore.length));
      expect(gone, 'the orphaned fencer logs its deadline in fencer.log').not.toBeNull();
      const deadlineMs = Number(gone![1]);
      process.stdout.write(`orphaned fencer's deadline ${Math.round(deadlineMs)} ms after the keeper's exit; retired ${Date.now() - killedAt} ms after the kill\n`);
      expect(deadlineMs).toBeGreaterThan(4500);
      // Past the old lease's deadline: the postmaster is the same process, so it was never fenced.
      await new Promise((r) => setTimeout(r, Math.max(0, killedAt + deadlineMs + 1000 - Date.now())));
      expect(await keeper.postmasterPid()).toBe(postmaster);
      expect(await directWrite(p)).toBe(true);
      expect(await e2e.cluster.primaryIndex()).toBe(p);
      expect((await failoverEvents(e2e.cluster)).length).toBe(before);
      await waitKeepersConverged(e2e.cluster, 2);
    } finally {
      const back = await e2e.cluster.stolonctl(['update', '--patch', '{"failInterval":null}']);
      expect(back.code, back.stderr).toBe(0);
      // Back to the default (6 s): the next tests count on 6 s leases again.
      await new Promise((r) => setTimeout(r, 3000));
    }
  });

  it('a frozen primary keeper (SIGSTOP past its lease) has its postgres shut down before the standby is promoted; after SIGCONT it rejoins as a standby', async () => {
    const p = await e2e.cluster.primaryIndex();
    const other = 1 - p;
    const keeper = e2e.cluster.keepers[p]!;
    const logBefore = keeper.process.logs().length;
    // Probe direct writes to the old primary every 20 ms and remember the last one that succeeded.
    let lastDirectOk = 0;
    let probing = true;
    const probe = (async () => {
      while (probing) {
        if (await directWrite(p)) {
          lastDirectOk = Date.now();
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    keeper.process.pause();
    try {
      await waitFor(async () => ((await e2e.cluster.primaryIndex()) === other ? true : undefined), {
        timeoutMs: 60_000,
        what: 'the standby to be promoted',
      });
      await writableThroughProxy('writes through the proxy to the new primary');
      probing = false;
      await probe;
      const ev = (await failoverEvents(e2e.cluster)).at(-1)!;
      expect(ev.kind).toBe('failover');
      expect(ev.oldPrimary.keeperUID).toBe(keeper.uid);
      expect(ev.newPrimary?.keeperUID).toBe(e2e.cluster.keepers[other]!.uid);
      const chosenAt = Date.parse(ev.phases['candidateChosen'] ?? '');
      expect(Number.isFinite(chosenAt)).toBe(true);
      // No direct write reached the old primary once the sentinel chose the new one.
      expect(lastDirectOk).toBeGreaterThan(0);
      expect(lastDirectOk).toBeLessThan(chosenAt);
      process.stdout.write(`zombie primary: last direct write ${chosenAt - lastDirectOk} ms before the new primary was chosen\n`);
      expect(await directWrite(p)).toBe(false);
    } finally {
      probing = false;
      keeper.process.resume();
    }
    await waitKeepersConverged(e2e.cluster, 2);
    const r = await query<{ rec: boolean }>(e2e.cluster.directClientConfig(p), 'select pg_is_in_recovery() as rec');
    expect(r[0]?.rec).toBe(true);
    expect(keeper.process.logs().slice(logBefore)).toContain('self-fencing: ');
    expect(e2e.cluster.logs()).not.toContain('please report this as a bug');
  });

  it('a frozen primary keeper process group (SIGSTOP of the keeper and everything in its group) still has its postgres fenced before the standby is promoted', async () => {
    await waitKeepersConverged(e2e.cluster, 2);
    const p = await e2e.cluster.primaryIndex();
    const other = 1 - p;
    const keeper = e2e.cluster.keepers[p]!;
    const postmaster = await keeper.postmasterPid();
    expect(postmaster).toBeDefined();
    const logBefore = keeper.process.logs().length;
    let lastDirectOk = 0;
    let probing = true;
    const probe = (async () => {
      while (probing) {
        if (await directWrite(p)) {
          lastDirectOk = Date.now();
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    keeper.process.pauseGroup();
    try {
      await waitFor(async () => ((await e2e.cluster.primaryIndex()) === other ? true : undefined), {
        timeoutMs: 60_000,
        what: 'the standby to be promoted',
      });
      await writableThroughProxy('writes through the proxy to the new primary');
      probing = false;
      await probe;
      const ev = (await failoverEvents(e2e.cluster)).at(-1)!;
      expect(ev.kind).toBe('failover');
      expect(ev.oldPrimary.keeperUID).toBe(keeper.uid);
      const chosenAt = Date.parse(ev.phases['candidateChosen'] ?? '');
      expect(Number.isFinite(chosenAt)).toBe(true);
      // Fenced while its keeper was frozen: the old postmaster is gone and took no direct write
      // once the sentinel chose the new primary.
      expect(lastDirectOk).toBeGreaterThan(0);
      expect(lastDirectOk).toBeLessThan(chosenAt);
      expect(await directWrite(p)).toBe(false);
      expect(await keeper.postmasterPid().then((pid) => pid !== undefined && pid === postmaster && alive(pid))).toBe(false);
    } finally {
      probing = false;
      keeper.process.resumeGroup();
    }
    await waitKeepersConverged(e2e.cluster, 2);
    const r = await query<{ rec: boolean }>(e2e.cluster.directClientConfig(p), 'select pg_is_in_recovery() as rec');
    expect(r[0]?.rec).toBe(true);
    // The fencer's own log line, relayed by the keeper once it runs again.
    await keeper.process.waitForLog('self-fencing: ', 10_000);
    expect(keeper.process.logs().slice(logBefore)).toContain('self-fencing: ');
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
