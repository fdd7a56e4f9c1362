/**
 * Sentinel scenarios on real etcd and PostgreSQL, after Stolon's tests/integration/ha_test.go: a
 * failover promotes the most advanced of two standbys (Stolon takes the least advanced),
 * failkeeper moves the primary, removekeeper drops a stopped standby, a failover still happens
 * when the leader sentinel dies together with the primary node (the other sentinel takes the
 * lease), and a dead keeper with no DB is dropped after deadKeeperRemovalInterval (Stolon
 * TestKeeperRemoval).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { childPids, e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

interface StatusJson {
  sentinels: { uid: string; leader: boolean }[];
  keepers: {
    uid: string;
    healthy: boolean;
    role?: string;
    db_uid?: string | null;
    pg_healthy?: boolean;
    pg_wanted_generation?: number;
    pg_current_generation?: number;
  }[];
}

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-sentinel-e2e-',
  keepers: 3,
  sentinels: 2,
  clusterName: 'sent',
  logLevel: 'debug',
  setup: async (c) => {
    await query(c.proxyClientConfig(0), 'create table t (id serial primary key)');
    await waitKeepersConverged(c, 3, 90_000);
  },
});

/** The keeper killed (with the leader sentinel) in the second test; it has no DB left afterwards. */
let killedKeeper = '';

async function status(): Promise<StatusJson> {
  const r = await e2e.cluster.stolonctl(['status', '--format', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

async function writable(what: string): Promise<void> {
  await waitFor(
    async () => {
      try {
        await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, 'insert into t values (default)');
        return true;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 60_000, what, intervalMs: 200 },
  );
}

async function newPrimary(not: number): Promise<number> {
  return waitFor(async () => {
    const p = await e2e.cluster.primaryIndex();
    return p >= 0 && p !== not ? p : undefined;
  }, { timeoutMs: 60_000, what: `a primary other than keeper${not}` });
}

/** Every keeper healthy, its PostgreSQL healthy and converged, as the sentinel sees it. */

describe('sentinel', () => {
  it('after kill -9 of the primary node, promotes the more advanced of two standbys even when the DB-uid tie-break favours the other', async () => {
    const st = await status();
    const p = await e2e.cluster.primaryIndex();
    const standbys = st.keepers.filter((k) => k.role === 'standby' && typeof k.db_uid === 'string');
    expect(standbys).toHaveLength(2);
    // Hold back the standby that would win the tie-break (lower DB uid): Stolon's least-advanced
    // rule and a tie-break would both pick it; only ranking by LSN picks the other one.
    const [behind, ahead] = [...standbys].sort((a, b) => (a.db_uid! < b.db_uid! ? -1 : 1));
    const bi = e2e.cluster.keepers.findIndex((k) => k.uid === behind!.uid);
    const postmaster = await e2e.cluster.keepers[bi]!.postmasterPid();
    expect(postmaster).toBeDefined();
    const receivers = await childPids(postmaster!, /walreceiver/);
    expect(receivers).toHaveLength(1);
    process.kill(receivers[0]!, 'SIGSTOP');
    try {
      // A few KiB of WAL that only the other standby receives (well under maxStandbyLag, so both stay eligible).
      for (let i = 0; i < 20; i++) {
        await query(e2e.cluster.proxyClientConfig(0), 'insert into t values (default)');
      }
      const primaryLsn = (await query<{ l: string }>(e2e.cluster.directClientConfig(p), 'select pg_current_wal_lsn()::text as l'))[0]!.l;
      const ai = e2e.cluster.keepers.findIndex((k) => k.uid === ahead!.uid);
      await waitFor(async () => {
        const r = await query<{ ok: boolean }>(e2e.cluster.directClientConfig(ai), `select pg_last_wal_receive_lsn() >= '${primaryLsn}'::pg_lsn as ok`);
        return r[0]?.ok === true ? true : undefined;
      }, { timeoutMs: 20_000, what: `${ahead!.uid} to receive up to ${primaryLsn}` });
      // Let both keepers publish their LSNs before the primary goes.
      await new Promise((r) => setTimeout(r, 2500));
      await e2e.cluster.killKeeperNode(p);
      const np = await newPrimary(p);
      expect(e2e.cluster.keepers[np]!.uid).toBe(ahead!.uid);
    } finally {
      process.kill(receivers[0]!, 'SIGCONT');
    }
    await writable('a write after the failover to the most advanced standby');
    await e2e.cluster.startKeeper(p);
    await waitKeepersConverged(e2e.cluster, 3, 90_000);
  });

  it('failkeeper fails the primary over to a standby, and the trace names the cause', async () => {
    const p = await e2e.cluster.primaryIndex();
    expect(p).toBeGreaterThanOrEqual(0);
    const r = await e2e.cluster.stolonctl(['failkeeper', e2e.cluster.keepers[p]!.uid]);
    expect(r.code, r.stderr).toBe(0);
    await newPrimary(p);
    await writable('a write after failkeeper');
    const ev = await e2e.cluster.stolonctl(['events', '--format', 'json']);
    expect(ev.stdout).toMatch(/failkeeper/);
    expect(ev.stdout).toContain('"completed"');
  });

  it('keeps failing over when the leader sentinel dies together with the primary node', async () => {
    // Everything healthy again first (the failed keeper rejoined as a standby).
    await waitKeepersConverged(e2e.cluster, 3, 90_000);
    const st = await status();
    const leaderUid = st.sentinels.find((s) => s.leader)?.uid;
    expect(leaderUid).toBeDefined();
    const leader = e2e.cluster.sentinels.find((s) => s.logs().includes(`"uid":"${leaderUid}"`));
    expect(leader).toBeDefined();
    const p = await e2e.cluster.primaryIndex();
    killedKeeper = e2e.cluster.keepers[p]!.uid;
    await Promise.all([leader!.kill(), e2e.cluster.killKeeperNode(p)]);
    await newPrimary(p);
    await writable('a write after losing the leader sentinel and the primary');
    const after = await status();
    expect(after.sentinels.find((s) => s.leader)?.uid).not.toBe(leaderUid);
  });

  it('removekeeper drops a stopped standby from the cluster, and refuses the primary', async () => {
    const p = await e2e.cluster.primaryIndex();
    const refused = await e2e.cluster.stolonctl(['removekeeper', '--yes', e2e.cluster.keepers[p]!.uid]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds the primary/);
    // A standby that is up: stop it, then remove it.
    const s = await waitFor(async () => {
      const st = await status();
      const k = st.keepers.find((x) => x.healthy && x.role === 'standby');
      return k === undefined ? undefined : e2e.cluster.keepers.findIndex((x) => x.uid === k.uid);
    }, { timeoutMs: 60_000, what: 'a healthy standby' });
    await e2e.cluster.keepers[s]!.process.stop();
    const r = await e2e.cluster.stolonctl(['removekeeper', '--yes', e2e.cluster.keepers[s]!.uid]);
    expect(r.code, r.stderr).toBe(0);
    expect((await status()).keepers.map((k) => k.uid)).not.toContain(e2e.cluster.keepers[s]!.uid);
    await writable('a write after removekeeper');
  });

  it('dead keeper removal drops the killed keeper (no DB left) once deadKeeperRemovalInterval passed, and no other', async () => {
    expect(killedKeeper).not.toBe('');
    const before = (await status()).keepers;
    expect(before.find((k) => k.uid === killedKeeper)?.healthy).toBe(false);
    const r = await e2e.cluster.stolonctl(['update', '--patch', '{"deadKeeperRemovalInterval":"3s"}']);
    expect(r.code, r.stderr).toBe(0);
    const after = await waitFor(async () => {
      const ks = (await status()).keepers;
      return ks.some((k) => k.uid === killedKeeper) ? undefined : ks;
    }, { timeoutMs: 30_000, what: `keeper ${killedKeeper} removed as dead` });
    expect(after.map((k) => k.uid).sort()).toEqual(before.map((k) => k.uid).filter((u) => u !== killedKeeper).sort());
    expect(e2e.cluster.logs()).toContain(`removed dead keeper ${killedKeeper}`);
    await writable('a write after the dead keeper was removed');
  });
});
