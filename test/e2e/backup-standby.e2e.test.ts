/**
 * `stolonctl backup` from a standby, on real etcd, PostgreSQL and pgBackRest, with a POSIX
 * repository in a temp directory: a 2-keeper cluster whose keepers allow `backup` and run a
 * pgBackRest TLS server (`backupTls`: a private CA, one certificate per keeper). Both keepers
 * publish their server, and the primary's keeper starts its server again after it is killed; with pgbench writing through the proxy, `stolonctl backup` names the
 * standby's keeper and succeeds (`--backup-standby`, the primary reached over mutual TLS);
 * `stolonctl backups --format json` lists the backup; `pgbackrest restore` of it into a new
 * directory, started as a plain PostgreSQL recovered to the end of the backup, passes
 * `pg_amcheck --all` and holds the scale's pgbench_accounts rows.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { keeperBackupServer } from '@stolon-ts/cluster';
import { e2eCluster, runAs, startPlainPostgres, waitFor, waitKeepersConverged, type PlainPostgres } from '@stolon-ts/harness';
import { makeTestRepo, pgbackrestCli } from './backup-common.js';

const repo = makeTestRepo('stolon-backup-standby-repo-');
const STANZA = 'bkstandby';
const BIN = '/usr/lib/postgresql/15/bin';
const SCALE = 2;

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-backup-standby-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  clusterName: STANZA,
  spec: { initMode: 'new', backup: repo.backup },
  keeperArgs: ['--allow-spec-commands', 'backup'],
  backupTls: true,
  teardown: async () => {
    await restored?.stop();
    repo.remove();
  },
});

let restored: PlainPostgres | undefined;

interface Listing {
  keeperUID: string;
  backups: { label: string; type: string; walStop: string }[];
}

/** uid/gid of the postgres OS user (the tests run as root). */
function postgresIds(): { uid: number; gid: number } {
  const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

describe('stolonctl backup from a standby (pgBackRest TLS server, POSIX repository)', () => {
  it('backs up the standby while pgbench writes, and the restored backup passes pg_amcheck', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const primary = await waitFor(async () => ((await c.primaryIndex()) >= 0 ? c.primaryIndex() : undefined), { timeoutMs: 60_000, what: 'a primary' });
    const primaryUid = c.keepers[primary]!.uid;
    const standbyUid = c.keepers[1 - primary]!.uid;

    // Both keepers publish their TLS server once the spec's backup section is applied.
    const store = await c.openStore();
    try {
      const servers = await waitFor(
        async () => {
          const infos = await store.listInfos('keepers');
          const s = [primaryUid, standbyUid].map((k) => keeperBackupServer(infos[k]));
          return s.every((x) => x !== undefined) ? s : undefined;
        },
        { timeoutMs: 90_000, what: 'both keepers to publish backupServer', intervalMs: 1000 },
      );
      expect(servers[0]).toMatchObject({ host: 'localhost', pgData: join(c.keepers[primary]!.dataDir, 'postgres'), pgPort: c.keepers[primary]!.pgPort, user: 'postgres' });
    } finally {
      await store.close();
    }
    // The stanza exists (the primary's keeper publishes the catalog).
    await waitFor(async () => ((await c.stolonctl(['backups', '--format', 'json'])).code === 0 ? true : undefined), {
      timeoutMs: 90_000,
      what: 'stolonctl backups to list the stanza',
      intervalMs: 1000,
    });

    // The keeper restarts its server when it dies: SIGKILL the primary keeper's one (found by its
    // configuration file), and a new one serves the backup below.
    const conf = join(c.keepers[primary]!.dataDir, 'pgbackrest.conf');
    const serverPids = (): number[] =>
      spawnSync('pgrep', ['-f', `^/[^ ]*pgbackrest --config=${conf} .* server$`], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((l) => l.trim() !== '')
        .map(Number);
    const [killed] = serverPids();
    expect(killed).toBeGreaterThan(0);
    process.kill(killed!, 'SIGKILL');
    await waitFor(async () => (serverPids().some((p) => p !== killed) ? true : undefined), { timeoutMs: 30_000, what: "the primary keeper's pgBackRest server to be started again", intervalMs: 500 });

    const proxy = c.proxyClientConfig(0);
    const pgbenchEnv = { PGPASSWORD: c.suPassword, PGHOST: String(proxy.host), PGPORT: String(proxy.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
    const init = await runAs(null, join(BIN, 'pgbench'), ['-i', '-s', String(SCALE), '-q'], { env: pgbenchEnv, timeoutMs: 120_000 });
    expect(init.code, init.stderr).toBe(0);
    const bench = runAs(null, join(BIN, 'pgbench'), ['-c', '2', '-T', '20', '-n'], { env: pgbenchEnv, timeoutMs: 120_000 });
    await new Promise((r) => setTimeout(r, 2000));
    const started = performance.now();
    const backup = await c.stolonctl(['backup', '--type', 'full', '--timeout', '5m']);
    const backupMs = performance.now() - started;
    const benchRes = await bench;
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(backup.stdout).toContain(`from the standby of keeper ${standbyUid}`);
    const done = /full backup (\d{8}-\d{6}F) done on keeper (\S+) in /.exec(backup.stdout);
    expect(done?.[2]).toBe(standbyUid);
    const label = done?.[1] ?? '';
    expect(benchRes.code, benchRes.stderr).toBe(0);
    const tps = /tps = ([\d.]+)/.exec(benchRes.stdout)?.[1];
    console.log(`backup-standby e2e: full ${label} from ${standbyUid} in ${(backupMs / 1000).toFixed(1)} s (stolonctl backup) while pgbench ran at ${tps ?? '?'} tps`);

    const listed = await waitFor(
      async () => {
        const l = JSON.parse((await c.stolonctl(['backups', '--format', 'json'])).stdout) as Listing;
        return l.backups.some((b) => b.label === label) ? l : undefined;
      },
      { timeoutMs: 30_000, what: `backup ${label} in stolonctl backups`, intervalMs: 1000 },
    );
    expect(listed.backups.find((b) => b.label === label)).toMatchObject({ type: 'full' });

    // Restore it into a new directory and recover to the end of the backup.
    const dataDir = join(repo.root, 'restored');
    mkdirSync(dataDir, { mode: 0o700 });
    const ids = postgresIds();
    chownSync(dataDir, ids.uid, ids.gid);
    const res = pgbackrestCli(repo, STANZA, 'restore', [`--pg1-path=${dataDir}`, `--set=${label}`, '--type=immediate', '--target-action=promote']);
    expect(res.code, res.stderr).toBe(0);
    writeFileSync(join(dataDir, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
    chownSync(join(dataDir, 'pg_hba.conf'), ids.uid, ids.gid);
    restored = await startPlainPostgres({
      dataDir,
      init: false,
      settings: { archive_mode: 'off', primary_conninfo: '', primary_slot_name: '', synchronous_standby_names: '', ssl: 'off' },
    });
    const r = restored;
    await waitFor(async () => ((await r.query<{ rec: boolean }>('select pg_is_in_recovery() as rec'))[0]?.rec === false ? true : undefined), {
      timeoutMs: 60_000,
      what: 'the restored PostgreSQL to end recovery',
      intervalMs: 500,
    });
    const check = await runAs(null, join(BIN, 'pg_amcheck'), ['--all', '--install-missing', '-h', '127.0.0.1', '-p', String(r.port), '-U', 'postgres'], { timeoutMs: 120_000 });
    expect(check.code, `${check.stdout}\n${check.stderr}`).toBe(0);
    const rows = await r.query<{ n: string }>('select count(*) as n from pgbench_accounts');
    expect(Number(rows[0]?.n)).toBe(SCALE * 100_000);
  });
});
