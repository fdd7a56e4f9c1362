/**
 * Rotating the superuser and replication passwords with no downtime (docs/security.md, "Rotating
 * the passwords"): with a writer running through the proxy as an ordinary application role, the
 * password files every keeper reads are rewritten; the primary's keeper applies them, the keepers
 * stay healthy with no failover, the standby streams again with the new replication password, and
 * a switchover and a rejoin by pg_rewind afterwards use the new passwords.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';

const e2e = e2eCluster(
  { beforeAll, afterAll, beforeEach },
  {
    tmpPrefix: 'stolon-rotation-e2e-',
    keepers: 2,
    clusterName: 'rot',
    logLevel: 'debug',
    spec: { initMode: 'new', usePgrewind: true },
  },
);

const APP = { user: 'app', password: 'app-password-1' } as const;
const NEW_SU = 'su-rotated-Secret-2';
const NEW_REPL = 'repl-rotated-Secret-2';

function direct(i: number): pg.ClientConfig {
  return e2e.cluster.directClientConfig(i);
}

/** '' when `config` logs in, else the error message. */
async function login(config: pg.ClientConfig): Promise<string> {
  try {
    await query(config, 'select 1');
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

/** The failovers and switchovers `stolonctl events` lists. */
async function failovers(): Promise<number> {
  const ev = await e2e.cluster.stolonctl(['events', '--format', 'json']);
  expect(ev.code, ev.stderr).toBe(0);
  return (JSON.parse(ev.stdout) as { kind: string }[]).filter((e) => e.kind === 'failover' || e.kind === 'switchover').length;
}

/** Both keepers and their PostgreSQL healthy and converged, as `stolonctl status` shows them. */
async function allHealthy(): Promise<boolean> {
  const st = await e2e.cluster.stolonctl(['status', '--format', 'json']);
  if (st.code !== 0) {
    return false;
  }
  const keepers = (JSON.parse(st.stdout) as { keepers: { healthy?: boolean; pg_healthy?: boolean; pg_wanted_generation?: number; pg_current_generation?: number }[] }).keepers;
  return keepers.length === 2 && keepers.every((k) => k.healthy === true && k.pg_healthy === true && k.pg_wanted_generation === k.pg_current_generation);
}

/** The pid of the walsender of the standby streaming from keeper `i`, or undefined. */
async function walsenderPid(i: number): Promise<number | undefined> {
  try {
    const rows = await query<{ pid: number }>(direct(i), "select pid from pg_stat_replication where state = 'streaming' and application_name like 'stolon\\_%'");
    return rows[0]?.pid;
  } catch {
    return undefined;
  }
}

/** Writes rows one at a time as the application role through the proxy, a new connection each. */
async function writer(stopAt: () => boolean, acked: number[], errors: string[]): Promise<void> {
  let id = 0;
  const deadline = Date.now() + 240_000;
  while (!stopAt() && Date.now() < deadline) {
    id += 1;
    try {
      await query({ ...e2e.cluster.proxyClientConfig(0), ...APP, connectionTimeoutMillis: 3000 }, 'insert into w values ($1)', [id]);
      acked.push(id);
    } catch (err) {
      errors.push((err as Error).message);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('password rotation', () => {
  it('rotates both passwords on every keeper with a writer running: no failed write, no failover, replication and a later switchover and rejoin use the new ones', async () => {
    const oldSu = e2e.cluster.suPassword;
    await query(e2e.cluster.proxyClientConfig(0), `create role ${APP.user} login password '${APP.password}'`);
    await query(e2e.cluster.proxyClientConfig(0), 'create table w (id int primary key)');
    await query(e2e.cluster.proxyClientConfig(0), `grant insert, select on w to ${APP.user}`);
    const primary = await e2e.cluster.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    const standby = 1 - primary;
    const streamingPid = await waitFor(() => walsenderPid(primary), { timeoutMs: 60_000, what: 'the standby to stream' });
    await waitFor(async () => ((await allHealthy()) ? true : undefined), { timeoutMs: 60_000, what: 'both keepers healthy and converged' });
    const failoversBefore = await failovers();

    const acked: number[] = [];
    const errors: string[] = [];
    let stop = false;
    const w = writer(() => stop, acked, errors);
    await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });

    await e2e.cluster.rewritePasswords({ su: NEW_SU, repl: NEW_REPL });
    const su = (password: string): pg.ClientConfig => ({ ...e2e.cluster.proxyClientConfig(0), password });
    await waitFor(async () => ((await login(su(NEW_SU))) === '' ? true : undefined), { timeoutMs: 30_000, what: 'the superuser to log in with the new password' });
    expect(await login(su(oldSu))).toMatch(/password authentication failed/);
    const primaryUid = e2e.cluster.keepers[primary]!.uid;
    await waitFor(() => (new RegExp(`\\[keeper ${primaryUid}\\].*password of role repluser rotated`).test(e2e.cluster.logs()) ? true : undefined), {
      timeoutMs: 30_000,
      what: "the primary's keeper to rotate the replication role",
    });
    const standbyUid = e2e.cluster.keepers[standby]!.uid;
    await waitFor(() => (new RegExp(`\\[keeper ${standbyUid}\\].*password file changed for the superuser \\(postgres\\) and replication`).test(e2e.cluster.logs()) ? true : undefined), {
      timeoutMs: 30_000,
      what: "the standby's keeper to take the new passwords",
    });
    // The standby's keeper wrote replication.pgpass again; its next connection uses it.
    await new Promise((r) => setTimeout(r, 2000));
    await query(direct(primary), "select pg_terminate_backend(pid) from pg_stat_replication where application_name like 'stolon\\_%'");
    const newPid = await waitFor(async () => {
      const pid = await walsenderPid(primary);
      return pid !== undefined && pid !== streamingPid ? pid : undefined;
    }, { timeoutMs: 30_000, what: 'the standby to stream again with the new replication password' });
    expect(newPid).not.toBe(streamingPid);
    expect(await login({ ...direct(primary), user: 'repluser', password: NEW_REPL })).toBe('');
    expect(await login({ ...direct(primary), user: 'repluser', password: 'nope' })).toMatch(/password authentication failed/);

    // The keepers never lost their own connections: healthy, same primary, no failover.
    await new Promise((r) => setTimeout(r, 8000));
    expect(await allHealthy()).toBe(true);
    expect(await e2e.cluster.primaryIndex()).toBe(primary);
    expect(await failovers()).toBe(failoversBefore);
    expect(e2e.cluster.logs()).not.toMatch(/cannot connect to postgres/);
    // The writer, logging in as an ordinary role all along, never failed.
    const ackedBefore = acked.length;
    await waitFor(() => (acked.length > ackedBefore + 20 ? true : undefined), { timeoutMs: 20_000, what: 'more writes' });
    stop = true;
    await w;
    expect(errors).toEqual([]);
    const ids = new Set((await query<{ id: number }>({ ...e2e.cluster.proxyClientConfig(0), ...APP }, 'select id from w')).map((r) => r.id));
    expect(acked.filter((id) => !ids.has(id))).toEqual([]);

    // A switchover afterwards: the old primary follows the new one with the new replication password.
    const sw = await e2e.cluster.stolonctl(['switchover', '--yes', '--to', standbyUid]);
    expect(sw.code, sw.stderr + sw.stdout).toBe(0);
    await waitFor(async () => ((await e2e.cluster.primaryIndex()) === standby ? true : undefined), { timeoutMs: 60_000, what: 'the switchover target to be primary' });
    await waitFor(() => walsenderPid(standby), { timeoutMs: 60_000, what: 'the old primary to stream from the new one' });

    // The new primary's node dies: the other keeper's DB is promoted, and the dead one comes back
    // by pg_rewind (else pg_basebackup), connecting to the new primary with the new passwords.
    // Through the proxy, which follows a new primary a moment after it is one.
    const insert = (from: number): Promise<boolean> =>
      waitFor(async () => ((await query(su(NEW_SU), `insert into w select g from generate_series(${from}, ${from + 100}) g`).then(() => true, () => undefined))), {
        timeoutMs: 60_000,
        what: 'an insert through the proxy as the superuser',
      });
    await insert(1_000_000);
    await e2e.cluster.killKeeperNode(standby);
    await waitFor(async () => ((await e2e.cluster.primaryIndex()) === primary ? true : undefined), { timeoutMs: 90_000, what: 'the failover to the old primary' });
    await insert(2_000_000);
    await e2e.cluster.startKeeper(standby);
    await waitFor(() => walsenderPid(primary), { timeoutMs: 90_000, what: 'the killed node to rejoin and stream' });
    await waitFor(async () => ((await allHealthy()) ? true : undefined), { timeoutMs: 60_000, what: 'both keepers healthy again' });
    const logs = e2e.cluster.logs();
    expect(logs).not.toMatch(/pg_rewind failed/);
    expect(logs).toMatch(new RegExp(`\\[keeper ${standbyUid}\\].*pg_rewind complete`));
    expect(logs).not.toMatch(/password authentication failed/);
    for (const secret of [NEW_SU, NEW_REPL, oldSu]) {
      expect(logs).not.toContain(secret);
    }
  });
});
