/**
 * Who may log in to PostgreSQL, and over what (issue #15, hole 4), on real etcd and PostgreSQL: a
 * 2-keeper cluster behind one proxy, with server TLS (`--pg-ssl-cert-file`, `--pg-ssl-key-file`,
 * `--pg-ssl-ca-file`) and the default `defaultSUReplAccessMode` (`keepers`).
 *
 * - The superuser and the replication role are refused from an address that is no keeper's
 *   (127.0.0.2; every keeper and the proxy are on 127.0.0.1), while an ordinary role gets in from
 *   there; before the fix the superuser got in from anywhere.
 * - `psql "sslmode=verify-full"` through the proxy works: the proxy passes TLS through, and the
 *   session is encrypted end to end (`pg_stat_ssl`).
 * - The standby replicates over verified TLS (`sslmode=verify-full` in its conninfo, `ssl` in the
 *   primary's `pg_stat_ssl` for the walsender).
 * - Certificates rotate without downtime: a CA bundle (old and new CA) first, then the new
 *   certificate and key; the keeper reloads PostgreSQL (same postmaster, an open session keeps
 *   working) and the new certificate is served.
 * - After a failover the former primary rejoins with pg_rewind (a superuser connection from a
 *   keeper's address, over verified TLS).
 * - A second cluster on the same etcd, its keepers started with `--pg-ssl-required`: a login
 *   without TLS is rejected (even the superuser's from a keeper's address), with TLS it works,
 *   directly and through the proxy, and the standby replicates.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, makeEtcdTestCerts, query, waitFor, waitKeepersConverged, type LocalCluster } from '@stolon-ts/harness';

const PSQL = '/usr/lib/postgresql/15/bin/psql';
/** The operator's files the keepers read (rotated in place by the last test). */
const certDir = mkdtempSync(join(tmpdir(), 'stolon-pg-tls-'));
const src = { cert: join(certDir, 'pg.crt'), key: join(certDir, 'pg.key'), ca: join(certDir, 'pg-ca.crt') };

beforeAll(async () => {
  const a = await makeEtcdTestCerts(await mkdirp(join(certDir, 'a')));
  await copyFile(a.serverCertFile, src.cert);
  await copyFile(a.serverKeyFile, src.key);
  await copyFile(a.caFile, src.ca);
});
afterAll(async () => {
  await rm(certDir, { recursive: true, force: true });
});

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-pg-access-e2e-',
  clusterName: 'pgaccess',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  // A former primary rejoins with pg_rewind: its superuser connection to the new primary goes
  // through pg_hba (a keeper's address) and TLS (verify-full) too.
  spec: { initMode: 'new', usePgrewind: true },
  keeperArgs: ['--pg-ssl-cert-file', src.cert, '--pg-ssl-key-file', src.key, '--pg-ssl-ca-file', src.ca],
  setup: async (c) => {
    await query(c.proxyClientConfig(0), "create role app login password 'app-secret'");
    await waitKeepersConverged(c, 2, 90_000);
  },
});

async function mkdirp(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A `pg` stream factory whose connections leave from `localAddress` (any 127/8 address is local on Linux). */
function from(localAddress: string): () => net.Socket {
  return () => {
    const s = new net.Socket();
    const connect = s.connect.bind(s);
    (s as unknown as { connect: (port: number, host: string) => net.Socket }).connect = (port, host) => connect({ port, host, localAddress });
    return s;
  };
}

/** Connects (and disconnects); resolves with the server's error message, or 'ok'. */
async function login(config: pg.ClientConfig): Promise<string> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Runs the real psql with a connection string; the password in PGPASSWORD, never in argv. */
function psql(conninfo: string, sql: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      PSQL,
      ['-X', '-At', '-d', conninfo, '-c', sql],
      { env: { PATH: process.env['PATH'] ?? '', PGPASSWORD: e2e.cluster.suPassword, PGCONNECT_TIMEOUT: '5' }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout: stdout.trim(), stderr }),
    );
  });
}

function proxyConninfo(rootCert: string): string {
  return `host=127.0.0.1 port=${e2e.cluster.proxies[0]!.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${rootCert}`;
}

async function primaryAndStandby(): Promise<{ primary: number; standby: number }> {
  const primary = await e2e.cluster.primaryIndex();
  expect(primary).toBeGreaterThanOrEqual(0);
  return { primary, standby: 1 - primary };
}

describe('pg_hba: superuser and replication from the keepers only (defaultSUReplAccessMode keepers)', () => {
  it('refuses the superuser and the replication role from 127.0.0.2, lets an ordinary role in from there, and the superuser from 127.0.0.1', async () => {
    const { primary } = await primaryAndStandby();
    const direct = e2e.cluster.directClientConfig(primary);
    const replPassword = (await readFile(e2e.cluster.replPasswordFile, 'utf8')).trim();
    expect(await login({ ...direct, stream: from('127.0.0.2') })).toMatch(/pg_hba\.conf rejects connection for host "127\.0\.0\.2", user "postgres"/);
    expect(await login({ ...direct, user: 'repluser', password: replPassword, replication: 'true', stream: from('127.0.0.2') } as pg.ClientConfig)).toMatch(
      /pg_hba\.conf rejects replication connection for host "127\.0\.0\.2", user "repluser"/,
    );
    expect(await login({ ...direct, user: 'app', password: 'app-secret', stream: from('127.0.0.2') })).toBe('ok');
    expect(await login({ ...direct, stream: from('127.0.0.1') })).toBe('ok');
    expect(await login({ ...direct, user: 'repluser', password: replPassword, replication: 'true' } as pg.ClientConfig)).toBe('ok');
  });
});

describe('server TLS', () => {
  it('psql sslmode=verify-full through the proxy: the proxy passes TLS through, the session is encrypted', async () => {
    const r = await psql(proxyConninfo(src.ca), 'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('t');
  });

  it('the standby replicates over TLS verified against the CA (sslmode=verify-full)', async () => {
    const { primary, standby } = await primaryAndStandby();
    const [receiver] = await query<{ conninfo: string }>(e2e.cluster.directClientConfig(standby), 'select conninfo from pg_stat_wal_receiver');
    expect(receiver?.conninfo).toMatch(/sslmode=verify-full/);
    expect(receiver?.conninfo).toMatch(/sslrootcert=\S+pg-ca\.crt/);
    const senders = await query<{ ssl: boolean }>(
      e2e.cluster.directClientConfig(primary),
      "select s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid) where r.application_name like 'stolon_%'",
    );
    expect(senders).toEqual([{ ssl: true }]);
  });

  it('rotates the certificate with no restart: CA bundle first, then the new certificate is served', async () => {
    const { primary } = await primaryAndStandby();
    const b = await makeEtcdTestCerts(await mkdirp(join(certDir, 'b')));
    const pidBefore = await e2e.cluster.keepers[primary]!.postmasterPid();
    const held = new pg.Client(e2e.cluster.directClientConfig(primary));
    held.on('error', () => undefined);
    await held.connect();
    try {
      // Before: the server's certificate does not chain to the new CA.
      expect((await psql(proxyConninfo(b.caFile), 'select 1')).code).not.toBe(0);
      // 1. Trust both CAs everywhere, 2. then switch certificate and key.
      await writeFile(src.ca, `${await readFile(src.ca, 'utf8')}${await readFile(b.caFile, 'utf8')}`);
      await waitFor(async () => ((await psql(proxyConninfo(src.ca), "select current_setting('ssl_ca_file')")).code === 0 ? true : undefined), {
        timeoutMs: 10_000,
        what: 'the server after the CA bundle',
      });
      await writeFile(src.key, await readFile(b.serverKeyFile));
      await writeFile(src.cert, await readFile(b.serverCertFile));
      await waitFor(async () => ((await psql(proxyConninfo(b.caFile), 'select 1')).stdout === '1' ? true : undefined), {
        timeoutMs: 20_000,
        intervalMs: 500,
        what: 'the new certificate served through the proxy',
      });
      expect((await held.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }]);
      expect(await e2e.cluster.keepers[primary]!.postmasterPid()).toBe(pidBefore);
      // Replication still verified: the standby's copy of the CA bundle trusts the new certificate.
      await waitKeepersConverged(e2e.cluster, 2, 30_000);
    } finally {
      await held.end().catch(() => undefined);
    }
  });

  it('after a failover the former primary rejoins with pg_rewind over verified TLS, and replicates over it again', async () => {
    const { primary, standby } = await primaryAndStandby();
    await query(e2e.cluster.proxyClientConfig(0), 'create table if not exists f (id int)');
    await e2e.cluster.killKeeperNode(primary);
    await waitFor(async () => ((await e2e.cluster.primaryIndex()) === standby ? true : undefined), { timeoutMs: 60_000, what: 'the standby promoted' });
    await e2e.cluster.startKeeper(primary);
    await waitKeepersConverged(e2e.cluster, 2, 90_000);
    const logs = e2e.cluster.logs();
    expect(logs).toContain('pg_rewind complete');
    expect(logs).not.toContain('pg_rewind failed');
    const [receiver] = await query<{ conninfo: string }>(e2e.cluster.directClientConfig(primary), 'select conninfo from pg_stat_wal_receiver');
    expect(receiver?.conninfo).toMatch(/sslmode=verify-full/);
  });
});

describe('--pg-ssl-required', () => {
  let c2: LocalCluster;
  let tls: pg.ClientConfig['ssl'];

  it('rejects every login without TLS, even the superuser\'s from a keeper\'s address; with TLS it works, directly and through the proxy', async () => {
    c2 = await e2e.startCluster({
      dir: join(e2e.dir, 'required'),
      etcd: e2e.cluster.etcd,
      clusterName: 'pgsslreq',
      keepers: 2,
      expect: 'none',
      keeperArgs: ['--pg-ssl-cert-file', src.cert, '--pg-ssl-key-file', src.key, '--pg-ssl-ca-file', src.ca, '--pg-ssl-required'],
    });
    tls = { ca: await readFile(src.ca, 'utf8') };
    await waitFor(
      async () => {
        try {
          const rows = await query<{ r: boolean }>({ ...c2.proxyClientConfig(0), ssl: tls }, 'select pg_is_in_recovery() as r');
          return rows[0]?.r === false ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 120_000, intervalMs: 500, what: 'a writable primary through the proxy, over TLS' },
    );
    await waitKeepersConverged(c2, 2, 90_000);
    for (let i = 0; i < 2; i++) {
      expect(await login(c2.directClientConfig(i))).toMatch(/pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption/);
      expect(await login({ ...c2.directClientConfig(i), ssl: tls })).toBe('ok');
    }
    expect(await login(c2.proxyClientConfig(0))).toMatch(/no encryption/);
  });

  it('the standby replicates over verified TLS', async () => {
    let primary = -1;
    for (let i = 0; i < 2; i++) {
      const [row] = await query<{ r: boolean }>({ ...c2.directClientConfig(i), ssl: tls }, 'select pg_is_in_recovery() as r');
      primary = row?.r === false ? i : primary;
    }
    expect(primary).toBeGreaterThanOrEqual(0);
    const senders = await query<{ ssl: boolean }>(
      { ...c2.directClientConfig(primary), ssl: tls },
      "select s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid) where r.application_name like 'stolon_%'",
    );
    expect(senders).toEqual([{ ssl: true }]);
  });
});
