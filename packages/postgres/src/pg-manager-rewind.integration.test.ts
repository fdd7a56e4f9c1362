/**
 * PgManager's recovery paths against real PostgreSQL, one cluster story for the whole file (the
 * steps build on each other and run in order):
 *
 * - P is initialised and streams to S, which holds a slot while still a standby;
 * - S is promoted (timeline 2, one history entry); P keeps writing on timeline 1 and crashes;
 * - P is rewound onto S (after single-user crash recovery) and follows it, without its own
 *   diverged rows;
 * - rewinding X, a separately initialised cluster, or from an unreachable source fails and leaves
 *   X's files as they were;
 * - R is restored from a base backup of S plus S's WAL archive, up to a target LSN.
 *
 * Temp directories are 0755 so the postgres OS user can traverse them when the tests run as root.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { Client } from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, makeTempDir, removeDir, waitFor } from '@stolon-ts/harness';
import { defaultHbaLines, formatLsn, parseLsn } from './config.js';
import type { ConnTarget, PgConfig, RecoveryConfig, StandbySettings } from './manager.js';
import { resolvePgBinDir } from './pg-bin.js';
import { PgManager } from './pg-manager.js';

const BIN = resolvePgBinDir();
const isRoot = process.getuid?.() === 0;
const suffix = Math.random().toString(36).slice(2, 10);
const SU_PASSWORD = `su-S3cret'"\\:pw ${suffix}`;
const REPL_PASSWORD = `repl-S3cret:'\\ pw ${suffix}`;

const logLines: string[] = [];
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString('utf8'));
      cb();
    },
  }),
);

let root = '';
let archiveDir = '';
const port: Record<'p' | 's' | 'x' | 'r', number> = { p: 0, s: 0, x: 0, r: 0 };
const pg = {} as Record<'p' | 's' | 'x' | 'r', PgManager>;
let pgUser: { uid: number; gid: number } | undefined;

function configFor(name: keyof typeof port, archive = false): PgConfig {
  return {
    listenAddress: '127.0.0.1',
    port: port[name],
    parameters: {
      shared_buffers: '16MB',
      max_connections: '30',
      ...(archive
        ? { archive_mode: 'on', archive_command: `test ! -f ${archiveDir}/%f && cp %p ${archiveDir}/%f` }
        : {}),
    },
    maxStandbys: 5,
    additionalWalSenders: 0,
    synchronousStandbyNames: '',
    hba: defaultHbaLines({ suUsername: 'stolon', replUsername: 'repl', userLines: null }),
  };
}

function standbyOf(name: keyof typeof port, me: string): StandbySettings {
  return {
    primary: { host: '127.0.0.1', port: port[name], user: 'repl', password: REPL_PASSWORD },
    applicationName: `stolon_${me}`,
    slotName: `stolon_${me}`,
  };
}

function following(name: keyof typeof port, me: string): RecoveryConfig {
  return { mode: 'standby', standby: standbyOf(name, me) };
}

function superuserOf(name: keyof typeof port): ConnTarget {
  return { host: '127.0.0.1', port: port[name], user: 'stolon', password: SU_PASSWORD };
}

function makeManager(name: keyof typeof port): PgManager {
  const pgData = join(root, name, 'pgdata');
  return new PgManager({
    pgData,
    binPath: BIN,
    suUsername: 'stolon',
    suPassword: SU_PASSWORD,
    replUsername: 'repl',
    replPassword: REPL_PASSWORD,
    listenAddress: '127.0.0.1',
    port: port[name],
    logger: logger.child({ pg: name }),
  });
}

async function sql<T extends Record<string, unknown>>(name: keyof typeof port, text: string): Promise<T[]> {
  const client = new Client({
    host: '127.0.0.1',
    port: port[name],
    user: 'stolon',
    password: SU_PASSWORD,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
  });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

async function ids(name: keyof typeof port): Promise<string[]> {
  return (await sql<{ id: string }>(name, 'select id from t order by id')).map((r) => r.id);
}

/** Pids of the processes whose working directory is `dir` (every postgres process chdirs to PGDATA). */
function processesIn(dir: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dir) {
        out.push(Number(entry));
      }
    } catch {
      // Gone meanwhile, or not ours to inspect.
    }
  }
  return out;
}

/** The command line of process `pid`, or why it cannot be read. */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch (err) {
    return `(${(err as Error).message})`;
  }
}

/** relative path → sha256 of every file under `dir` (symlinks by target). */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        walk(p);
      } else if (e.isSymbolicLink()) {
        out.set(relative(dir, p), `-> ${readlinkSync(p)}`);
      } else {
        out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
      }
    }
  };
  walk(dir);
  return out;
}

/** A directory owned by the postgres OS user (when root), for what the server or its tools write. */
async function postgresDir(path: string, mode: number): Promise<string> {
  await mkdir(path, { mode });
  if (pgUser !== undefined) {
    await chown(path, pgUser.uid, pgUser.gid);
  }
  return path;
}

beforeAll(async () => {
  root = await makeTempDir('stolon-pgrw-');
  if (isRoot) {
    const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    pgUser = { uid: id('-u'), gid: id('-g') };
  }
  for (const name of ['p', 's', 'x', 'r'] as const) {
    await mkdir(join(root, name), { mode: 0o755 });
    port[name] = await freePort();
    pg[name] = makeManager(name);
  }
  archiveDir = await postgresDir(join(root, 'archive'), 0o755);
});

afterAll(async () => {
  for (const m of Object.values(pg)) {
    await m.stop('immediate').catch(() => undefined);
  }
  // On an immediate shutdown the postmaster signals its children's process groups, so an
  // archive_command or restore_command shell (and its cp) gets SIGQUIT too, but the postmaster
  // waits only for its own children: such a process may still be exiting when pg_ctl returns.
  // Give them a moment; anything still there then is a leak, named by its command line.
  const all = () => Object.values(pg).flatMap((m) => processesIn(m.pgData));
  await waitFor(() => all().length === 0, { timeoutMs: 5_000, what: 'processes in the data directories to exit' }).catch(() => undefined);
  const leftovers = all().map((pid) => `${pid}: ${cmdline(pid)}`);
  if (root !== '') {
    await removeDir(root);
  }
  expect(leftovers).toEqual([]);
});

describe('PgManager rewind and point-in-time recovery (real PostgreSQL)', () => {
  let switchPoint = 0;

  it('streams P to S, and creates a replication slot on the standby S', async () => {
    await pg.p.init({ encoding: 'UTF8', locale: 'C' });
    await pg.p.writeConfig(configFor('p'), null);
    await pg.p.start(30_000);
    await sql('p', 'create table t (id text primary key)');
    await sql('p', "insert into t values ('before')");
    await pg.p.syncSlots(['stolon_s']);

    await pg.s.baseBackup(standbyOf('p', 's'));
    await pg.s.writeConfig(configFor('s', true), following('p', 's'));
    await pg.s.start(30_000);
    await waitFor(async () => (await ids('s')).includes('before'), { timeoutMs: 20_000, what: 'row "before" on S' });

    // (g) A physical slot can be created on a standby (for its own followers after a promotion).
    await pg.s.syncSlots(['stolon_p']);
    const obs = await pg.s.observe();
    expect(obs).toMatchObject({ role: 'standby', slots: ['stolon_p'], timelineId: 1, timelinesHistory: [] });
  });

  it('promotes S onto timeline 2 with a one-entry history, keeping its slot', async () => {
    await pg.s.promote(30_000);
    await pg.s.writeConfig(configFor('s', true), null);
    await pg.s.reload();
    const obs = await pg.s.observe();
    expect(obs).toMatchObject({ running: true, role: 'master', timelineId: 2, slots: ['stolon_p'] });
    expect(obs.timelinesHistory).toHaveLength(1);
    const [entry] = obs.timelinesHistory;
    expect(entry).toMatchObject({ timelineID: 1, reason: 'no recovery target specified' });
    switchPoint = entry?.switchPoint ?? 0;
    expect(switchPoint).toBeGreaterThan(0);
    expect((await pg.p.observe()).timelinesHistory).toEqual([]);
  });

  it('rewinds the crashed old primary P onto S; P then follows S without its diverged rows', async () => {
    // P, still a primary on timeline 1, diverges; S writes on timeline 2.
    await sql('p', "insert into t select 'p-diverged-' || g from generate_series(1, 100) g");
    await sql('s', "insert into t values ('s-new')");
    const pid = Number(readFileSync(join(pg.p.pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => processesIn(pg.p.pgData).length === 0, { timeoutMs: 20_000, what: "P's processes to exit" });
    const crashed = await pg.p.observe();
    expect(crashed).toMatchObject({ running: false, clusterState: 'in production', timelineId: 1 });
    const before = {
      conf: readFileSync(join(pg.p.pgData, 'postgresql.conf'), 'utf8'),
      lastGood: readFileSync(join(pg.p.pgData, 'postgresql.conf.last-good'), 'utf8'),
    };

    const result = await pg.p.rewind(superuserOf('s'));
    expect(result).toMatchObject({ divergedTimeline: 1, rewound: true });
    expect(result.divergedAt).toBe(switchPoint);
    expect(result.divergedAt).toBeGreaterThan(0);
    expect(result.localEnd).toBeGreaterThanOrEqual(result.divergedAt);
    expect(formatLsn(result.localEnd)).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(logLines.some((l) => l.includes('single-user mode'))).toBe(true);
    // This node's files are kept, and a rewound PGDATA can only start as a standby.
    expect(readFileSync(join(pg.p.pgData, 'postgresql.conf'), 'utf8')).toBe(before.conf);
    expect(readFileSync(join(pg.p.pgData, 'postgresql.conf.last-good'), 'utf8')).toBe(before.lastGood);
    expect(existsSync(join(pg.p.pgData, 'standby.signal'))).toBe(true);
    expect((await pg.p.observe()).clusterState).not.toBe('in production');

    await pg.p.writeConfig(configFor('p'), following('s', 'p'));
    await pg.p.start(30_000);
    await waitFor(async () => (await ids('p')).includes('s-new'), { timeoutMs: 20_000, what: 'row "s-new" on P' });
    expect((await ids('p')).filter((id) => id.startsWith('p-diverged'))).toEqual([]);
    const streaming = await waitFor(
      async () => {
        const o = await pg.s.observe();
        return o.replication.some((r) => r.applicationName === 'stolon_p') ? o : undefined;
      },
      { timeoutMs: 20_000, what: 'S to list P in pg_stat_replication' },
    );
    expect(streaming.slots).toEqual(['stolon_p']);
    // (f) on a standby: the history of timeline 2, received from S.
    const p = await pg.p.observe();
    expect(p).toMatchObject({ role: 'standby', timelineId: 2 });
    expect(p.timelinesHistory.map((h) => [h.timelineID, h.switchPoint])).toEqual([[1, switchPoint]]);
  });

  it('a rewind that cannot work throws and leaves PGDATA as it was', async () => {
    await pg.x.init({ encoding: 'UTF8', locale: 'C' });
    await pg.x.writeConfig(configFor('x'), null);
    expect(await pg.x.systemIdentifier()).not.toBe(await pg.s.systemIdentifier());
    const files = snapshot(pg.x.pgData);

    const otherSystem: unknown = await pg.x.rewind(superuserOf('s')).catch((e: unknown) => e);
    expect(otherSystem).toMatchObject({ code: 'PG_COMMAND_FAILED', transient: false });
    expect((otherSystem as Error).message).toContain('different systems');
    expect(snapshot(pg.x.pgData)).toEqual(files);

    const unreachable: unknown = await pg.x
      .rewind({ ...superuserOf('s'), port: await freePort() })
      .catch((e: unknown) => e);
    expect(unreachable).toMatchObject({ code: 'PG_COMMAND_FAILED', transient: false });
    expect((unreachable as Error).message).not.toContain(suffix);
    expect(snapshot(pg.x.pgData)).toEqual(files);

    await expect(pg.s.rewind(superuserOf('p'))).rejects.toMatchObject({ code: 'DATA_DIR_INVALID' });
  });

  it('restores a base backup of S and replays its archive up to a target LSN', async () => {
    // A base backup without WAL: everything comes from the archive.
    const backupDir = await postgresDir(join(root, 'backup'), 0o700);
    const pgpass = join(root, 'backup.pgpass');
    await writeFile(pgpass, `*:*:*:repl:${REPL_PASSWORD.replace(/\\/g, '\\\\').replace(/:/g, '\\:')}\n`, { mode: 0o600 });
    if (pgUser !== undefined) {
      await chown(pgpass, pgUser.uid, pgUser.gid);
    }
    execFileSync(
      join(BIN, 'pg_basebackup'),
      ['-D', backupDir, '-X', 'none', '-c', 'fast', '-h', '127.0.0.1', '-p', String(port.s), '-U', 'repl', '-w'],
      { ...(pgUser ?? {}), env: { PGPASSFILE: pgpass }, stdio: 'pipe' },
    );
    await sql('s', "insert into t values ('a-after-backup')");
    const [target] = await sql<{ lsn: string }>('s', 'select pg_current_wal_lsn()::text as lsn');
    await sql('s', "insert into t values ('b-after-target')");
    const [switched] = await sql<{ wal: string }>('s', 'select pg_walfile_name(pg_switch_wal()) as wal');
    await waitFor(
      async () => {
        const [a] = await sql<{ last: string | null }>('s', 'select last_archived_wal as last from pg_stat_archiver');
        return (a?.last ?? '') >= (switched?.wal ?? 'Z') ? true : undefined;
      },
      { timeoutMs: 20_000, what: `${switched?.wal} to be archived` },
    );

    // A failing command: PGDATA removed, stderr reported, none of our environment visible.
    process.env['STOLON_TEST_SECRET'] = suffix;
    try {
      const failed: unknown = await pg.r
        .restoreData('echo "secret=[$STOLON_TEST_SECRET] path=$PATH data=%d" >&2; exit 3')
        .catch((e: unknown) => e);
      expect(failed).toMatchObject({ code: 'PG_COMMAND_FAILED', transient: true });
      expect((failed as Error).message).toContain(`secret=[] path=${BIN}:`);
      expect((failed as Error).message).toContain(`data=${pg.r.pgData}`);
      expect(existsSync(pg.r.pgData)).toBe(false);
    } finally {
      delete process.env['STOLON_TEST_SECRET'];
    }

    // A program (the keeper's pgbackrest restore): its arguments reach it as given, no shell parses them.
    const failedProgram: unknown = await pg.r
      .restoreData({ what: 'the test restore program', program: 'sh', args: ['-c', 'echo "got [$1]" >&2; exit 4', 'sh', 'a b; $HOME'] })
      .catch((e: unknown) => e);
    expect(failedProgram).toMatchObject({ code: 'PG_COMMAND_FAILED', transient: true });
    expect((failedProgram as Error).message).toMatch(/^the test restore program .*got \[a b; \$HOME\]/s);
    expect(existsSync(pg.r.pgData)).toBe(false);
    await pg.r.restoreData({ what: 'cp of the base backup', program: 'cp', args: ['-a', `${backupDir}/.`, pg.r.pgData] });
    expect(statSync(pg.r.pgData).mode & 0o777).toBe(0o700);
    expect(existsSync(join(pg.r.pgData, 'postgresql.conf.last-good'))).toBe(false);
    expect(await pg.r.systemIdentifier()).toBe(await pg.s.systemIdentifier());
    await pg.r.writeConfig(configFor('r'), {
      mode: 'recovery',
      restoreCommand: `cp ${archiveDir}/%f %p`,
      target: { recoveryTargetLsn: target?.lsn },
    });
    expect(existsSync(join(pg.r.pgData, 'recovery.signal'))).toBe(true);
    expect(existsSync(join(pg.r.pgData, 'standby.signal'))).toBe(false);
    await pg.r.start(30_000);
    await pg.r.waitRecoveryDone(30_000);
    expect(existsSync(join(pg.r.pgData, 'recovery.signal'))).toBe(false);

    const obs = await pg.r.observe();
    expect(obs).toMatchObject({ running: true, role: 'master', timelineId: 3 });
    expect(obs.timelinesHistory.map((h) => h.timelineID)).toEqual([1, 2]);
    expect(obs.timelinesHistory[1]?.switchPoint).toBeGreaterThanOrEqual(parseLsn(target?.lsn ?? '0/0'));
    expect(await ids('r')).toEqual(['a-after-backup', 'before', 's-new']);
    // Back to a plain primary configuration, as the keeper does next.
    await pg.r.writeConfig(configFor('r'), null);
    await pg.r.reload();
    await sql('r', "insert into t values ('r-own')");
  });

  it('never logged a password', () => {
    const all = logLines.join('');
    expect(all).not.toContain(SU_PASSWORD);
    expect(all).not.toContain(REPL_PASSWORD);
    expect(all).not.toContain(suffix);
  });
});
