/**
 * Restoring from the backup repository (`initMode: pitr` with `pitrConfig.fromBackup`) on real
 * etcd, PostgreSQL and pgBackRest with a POSIX repository in the test's temp dir: a source cluster
 * (2 keepers) archives through its backup section; the test takes a full backup, writes rows
 * (recording the server time between batches), fails the primary over, writes more, and forces
 * the last WAL into the archive. New clusters restored from the source stanza then hold exactly
 * the rows committed before their target: a time after the failover (its standby clones from the
 * restored primary and streams, and it archives into its own stanza), a time before the failover,
 * and the end of the archive. A target before every backup is refused, naming
 * `pitrConfig.recoveryTargetSettings`, with no data directory left behind. At most two clusters
 * run at a time.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, type LocalCluster } from '@stolon-ts/harness';
import { archivedWalFiles, makeTestRepo } from './backup-common.js';

const SOURCE = 'src';
/** The POSIX repository every cluster of this file uses (made at load: the source spec names it). */
const REPO = makeTestRepo('stolon-restore-e2e-repo-');
const BACKUP = { ...REPO.backup, compressType: 'none' } as const;

afterAll(() => {
  // Registered before the fixture's hooks, so it runs after every cluster stopped; kept after a failure.
  if (!e2e.failed) {
    REPO.remove();
  }
});

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-restore-e2e-',
  subdir: SOURCE,
  clusterName: SOURCE,
  keepers: 2,
  keeperArgs: ['--allow-spec-commands', 'backup'],
  spec: { initMode: 'new', backup: BACKUP },
  logLevel: 'debug',
  startTimeoutMs: 240_000,
  stopTimeoutMs: 240_000,
});

/** One row per id, with the batch it was written in. */
async function insertRows(c: LocalCluster, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) {
    await query(c.proxyClientConfig(0), 'insert into t (id) values ($1)', [i]);
  }
}

/** The server's clock now, as PostgreSQL prints a timestamptz (with its offset): a recovery target. */
async function serverNow(c: LocalCluster): Promise<string> {
  const r = await query<{ now: string }>(c.proxyClientConfig(0), "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as now");
  return r[0]!.now;
}

/** Switches WAL on the primary of `c` and waits until the switched segment is in the repository, in `stanza`. */
async function archiveCurrentWal(c: LocalCluster, stanza: string): Promise<void> {
  const sw = await query<{ f: string }>(c.proxyClientConfig(0), 'select pg_walfile_name(pg_switch_wal()) as f');
  const file = sw[0]!.f;
  await waitFor(() => (archivedWalFiles(REPO, stanza).includes(file) ? true : undefined), {
    timeoutMs: 120_000,
    what: `WAL segment ${file} to be archived in stanza ${stanza}`,
    intervalMs: 500,
  });
}

/** Ids in table t of `c`, sorted. */
async function ids(c: LocalCluster, i?: number): Promise<number[]> {
  const cfg = i === undefined ? c.proxyClientConfig(0) : c.directClientConfig(i);
  const r = await query<{ id: number }>(cfg, 'select id from t order by id');
  return r.map((x) => x.id);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, k) => from + k);
}

/** A restored copy keeps the source cluster's roles, so the new cluster uses the same passwords. */
function samePasswords(from: LocalCluster, toDir: string): void {
  mkdirSync(toDir, { recursive: true, mode: 0o755 });
  copyFileSync(from.suPasswordFile, join(toDir, 'su-password'));
  copyFileSync(from.replPasswordFile, join(toDir, 'repl-password'));
}

/** Starts cluster `name` restored from the source stanza with `pitrConfig` extras; waits until writable. */
async function restore(name: string, keepers: number, recoveryTargetSettings?: Record<string, string>): Promise<LocalCluster> {
  const dir = join(e2e.dir, name);
  samePasswords(e2e.cluster, dir);
  const startedAt = Date.now();
  const c = await e2e.startCluster({
    dir,
    etcd: e2e.cluster.etcd,
    clusterName: name,
    keepers,
    keeperArgs: ['--allow-spec-commands', 'backup'],
    spec: {
      initMode: 'pitr',
      backup: BACKUP,
      pitrConfig: { fromBackup: { stanza: SOURCE }, ...(recoveryTargetSettings !== undefined ? { recoveryTargetSettings } : {}) },
    },
  });
  process.stdout.write(`restore ${name} (${JSON.stringify(recoveryTargetSettings ?? 'latest')}): writable after ${Date.now() - startedAt} ms\n`);
  return c;
}

describe('restore a new cluster from the backup repository', () => {
  /** Server times: after batch 2 (before the failover), after batch 4 (after it). */
  let beforeFailover = '';
  let afterFailover = '';

  it('source: full backup, rows around a failover, every WAL archived', async () => {
    const c = e2e.cluster;
    await query(c.proxyClientConfig(0), 'create table t (id int primary key)');
    await insertRows(c, 1, 10);
    const primary = await c.primaryIndex();
    const backupStarted = Date.now();
    // The primary's keeper creates the stanza once its PostgreSQL runs as the primary; stolonctl
    // backup asks it for a full backup and waits for the result.
    await waitFor(async () => ((await c.stolonctl(['backups', '--format', 'json'])).code === 0 ? true : undefined), {
      timeoutMs: 90_000,
      what: `stanza ${SOURCE} to be listed by stolonctl backups`,
      intervalMs: 1000,
    });
    const backup = await c.stolonctl(['backup', '--type', 'full', '--timeout', '3m']);
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toMatch(/full backup \d{8}-\d{6}F done on keeper /);
    process.stdout.write(`full backup: ${Date.now() - backupStarted} ms\n`);
    await insertRows(c, 11, 20);
    await new Promise((r) => setTimeout(r, 300));
    beforeFailover = await serverNow(c);
    await new Promise((r) => setTimeout(r, 300));
    await insertRows(c, 21, 30);
    // Everything up to here is in the archive before the primary dies.
    await archiveCurrentWal(c, SOURCE);
    await c.killKeeperNode(primary);
    await waitFor(
      async () => {
        try {
          await query(c.proxyClientConfig(0), 'insert into t (id) values (31)');
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 90_000, what: 'a write through the proxy after the failover', intervalMs: 250 },
    );
    await insertRows(c, 32, 40);
    await new Promise((r) => setTimeout(r, 300));
    afterFailover = await serverNow(c);
    await new Promise((r) => setTimeout(r, 300));
    await insertRows(c, 41, 50);
    await archiveCurrentWal(c, SOURCE);
    expect(await ids(c)).toEqual(range(1, 50));
    // The failover put the source on a new timeline, whose history file is in the archive.
    const tl = await query<{ f: string }>(c.proxyClientConfig(0), 'select pg_walfile_name(pg_current_wal_lsn()) as f');
    const timeline = tl[0]!.f.slice(0, 8);
    expect(timeline).not.toBe('00000001');
    expect(archivedWalFiles(REPO, SOURCE)).toContain(`${timeline}.history`);
  });

  it('restores to a time after the failover: exactly the rows before it; the standby clones from the restored primary and streams', async () => {
    expect(afterFailover, 'the source test did not get this far').not.toBe('');
    const r = await restore('r1', 2, { recoveryTargetTime: afterFailover });
    expect(await ids(r)).toEqual(range(1, 40));
    // The second keeper clones the restored primary and streams from it.
    const p = await r.primaryIndex();
    const s = 1 - p;
    await query(r.proxyClientConfig(0), 'insert into t (id) values (1000)');
    await waitFor(
      async () => {
        const rows = await query<{ n: string }>(r.directClientConfig(p), "select count(*) as n from pg_stat_replication where state = 'streaming'");
        return Number(rows[0]?.n) === 1 ? true : undefined;
      },
      { timeoutMs: 120_000, what: 'the restored standby to stream from the restored primary' },
    );
    await waitFor(async () => ((await ids(r, s)).includes(1000) ? true : undefined), { timeoutMs: 60_000, what: 'the standby to replay a new row' });
    const rec = await query<{ r: boolean }>(r.directClientConfig(s), 'select pg_is_in_recovery() as r');
    expect(rec[0]?.r).toBe(true);
    // After the promotion the restored cluster archives into its own stanza (its cluster name).
    await archiveCurrentWal(r, 'r1');
    await r.stop();
  });

  it('restores to a time before the failover: exactly the rows before it', async () => {
    expect(beforeFailover, 'the source test did not get this far').not.toBe('');
    const r = await restore('r2', 1, { recoveryTargetTime: beforeFailover });
    expect(await ids(r)).toEqual(range(1, 20));
    await r.stop();
  });

  it('restores to the end of the archive without a target', async () => {
    expect(afterFailover, 'the source test did not get this far').not.toBe('');
    const r = await restore('r3', 1);
    expect(await ids(r)).toEqual(range(1, 50));
    await r.stop();
  });

  it('refuses a target before every backup, naming pitrConfig.recoveryTargetSettings, and leaves no data directory', async () => {
    const dir = join(e2e.dir, 'r4');
    samePasswords(e2e.cluster, dir);
    const r = await e2e.startCluster({
      dir,
      etcd: e2e.cluster.etcd,
      clusterName: 'r4',
      keepers: 1,
      expect: 'none',
      keeperArgs: ['--allow-spec-commands', 'backup'],
      spec: {
        initMode: 'pitr',
        backup: BACKUP,
        pitrConfig: { fromBackup: { stanza: SOURCE }, recoveryTargetSettings: { recoveryTargetTime: '2001-01-01 00:00:00+00' } },
      },
    });
    await waitFor(() => (r.logs().includes('pitrConfig.recoveryTargetSettings: no backup of stanza src ends before') ? true : undefined), {
      timeoutMs: 60_000,
      what: 'the keeper to refuse the restore',
    });
    expect(existsSync(join(r.keepers[0]!.dataDir, 'postgres', 'PG_VERSION'))).toBe(false);
    await r.stop();
  });
});
