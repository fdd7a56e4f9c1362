/**
 * PgManager against real PostgreSQL: one primary and one standby for the whole file, in a temp
 * directory (mode 0755 so the postgres OS user can traverse it when the tests run as root).
 * The steps build on each other and run in order.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultHbaLines } from './config.js';
import type { BaseBackupProgress, PgConfig, PgObservation, RecoveryConfig, StandbySettings } from './manager.js';
import { resolvePgBinDir } from './pg-bin.js';
import { PgManager } from './pg-manager.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = server.address();
      server.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}

/** Polls `check` until it returns a value; fails with the last value/error seen. */
async function waitFor<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) {
        return v;
      }
      last = 'undefined';
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${String(last)}`);
    }
    await sleep(200);
  }
}

const isRoot = process.getuid?.() === 0;
const suffix = Math.random().toString(36).slice(2, 10);
// Quotes, backslashes, colons and spaces exercise every escaping path (pgpass, conninfo, SQL).
const SU_PASSWORD = `su-S3cret'"\\:pw ${suffix}`;
const REPL_PASSWORD = `repl-S3cret:'\\ pw ${suffix}`;
/**
 * Secrets a keeper may be given as environment variables (its own flags' fallbacks), set in this
 * process's environment for the whole file: none of them may reach PostgreSQL.
 */
const KEEPER_SECRET_ENV: Record<string, string> = {
  STKEEPER_PG_SU_PASSWORD: SU_PASSWORD,
  STKEEPER_PG_REPL_PASSWORD: REPL_PASSWORD,
  STKEEPER_MEMBER_TOKEN: `member-token-${suffix}`,
  STKEEPER_STORE_PASSWORD: `store-${suffix}`,
};
/**
 * What the postmaster's (and a backend's shell's) environment may hold: the keeper's allow-list,
 * what pg_ctl and postgres set themselves (PGDATA, PG_GRANDPARENT_PID, PGLOCALEDIR, PGSYSCONFDIR,
 * the locale categories) and what a shell adds (PWD, SHLVL, _).
 */
const CHILD_ENV_ALLOWED = /^(PATH|HOME|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|PGDATA|PG_GRANDPARENT_PID|PGLOCALEDIR|PGSYSCONFDIR|PWD|OLDPWD|SHLVL|_)$/;
/** Replication password file of the standby: next to its PGDATA, outside it. */
const REPL_PASSFILE_NAME = 'replication.pgpass';
/** Where the replication password file used to be, inside PGDATA. */
const LEGACY_REPL_PASSFILE_NAME = 'stolon-replication.pgpass';

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
let primary: PgManager;
let standby: PgManager;
let primaryPort = 0;
let standbyPort = 0;

function configFor(port: number): PgConfig {
  return {
    listenAddress: '127.0.0.1',
    port,
    parameters: { shared_buffers: '16MB', max_connections: '30' },
    maxStandbys: 5,
    additionalWalSenders: 0,
    synchronousStandbyNames: '',
    hba: defaultHbaLines({ suUsername: 'stolon', replUsername: 'repl', userLines: null }),
  };
}

function standbySettings(slotName: string): StandbySettings {
  return {
    primary: { host: '127.0.0.1', port: primaryPort, user: 'repl', password: REPL_PASSWORD },
    applicationName: 'stolon_s1',
    slotName,
  };
}

function standbyRecovery(slotName: string): RecoveryConfig {
  return { mode: 'standby', standby: standbySettings(slotName) };
}

function conf(m: PgManager, suffixName = ''): string {
  return readFileSync(join(m.pgData, `postgresql.conf${suffixName}`), 'utf8');
}

function makeManager(pgData: string, port: number): PgManager {
  return new PgManager({
    pgData,
    binPath: resolvePgBinDir(),
    suUsername: 'stolon',
    suPassword: SU_PASSWORD,
    replUsername: 'repl',
    replPassword: REPL_PASSWORD,
    listenAddress: '127.0.0.1',
    port,
    logger: logger.child({ pgData }),
  });
}

async function sql<T extends Record<string, unknown>>(port: number, text: string): Promise<T[]> {
  const client = new Client({
    host: '127.0.0.1',
    port,
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

function postmasterPid(pgData: string): number {
  return Number(readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** `NAME=value` entries (NUL- or newline-separated) as a map. */
function parseEnv(text: string, sep: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of text.split(sep)) {
    const eq = entry.indexOf('=');
    if (eq > 0) {
      out.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
  }
  return out;
}

/** Fails when `env` holds a keeper secret, a variable outside {@link CHILD_ENV_ALLOWED}, or the wrong HOME. */
function assertMinimalEnv(env: Map<string, string>, where: string): void {
  expect(env.size, where).toBeGreaterThan(0);
  for (const [k, v] of env) {
    expect(v, `${where}: ${k}`).not.toContain(suffix);
  }
  expect([...env.keys()].filter((k) => !CHILD_ENV_ALLOWED.test(k)).sort(), where).toEqual([]);
  expect(env.get('PATH'), where).toMatch(new RegExp(`^${resolvePgBinDir()}:`));
  if (isRoot) {
    expect(env.get('HOME'), where).toBe(execFileSync('sh', ['-c', 'getent passwd postgres | cut -d: -f6'], { encoding: 'utf8' }).trim());
  }
}

/** Every regular file under `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const found: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(e.parentPath, e.name);
    try {
      if (e.isFile() && readFileSync(path).includes(needle)) {
        found.push(path);
      }
    } catch (err) {
      // A running server removes files (pg_stat_tmp, WAL segments) while we read.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw err;
      }
    }
  }
  return found;
}

function assertNoSecretsInPs(): void {
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  expect(ps).not.toContain(SU_PASSWORD);
  expect(ps).not.toContain(REPL_PASSWORD);
  expect(ps).not.toContain(suffix);
}

beforeAll(async () => {
  Object.assign(process.env, KEEPER_SECRET_ENV);
  root = await mkdtemp(join(tmpdir(), 'stolon-pgm-'));
  await chmod(root, 0o755);
  await mkdir(join(root, 'p'), { mode: 0o755 });
  await mkdir(join(root, 's'), { mode: 0o755 });
  primaryPort = await freePort();
  standbyPort = await freePort();
  primary = makeManager(join(root, 'p', 'pgdata'), primaryPort);
  standby = makeManager(join(root, 's', 'pgdata'), standbyPort);
});

afterAll(async () => {
  for (const k of Object.keys(KEEPER_SECRET_ENV)) {
    delete process.env[k];
  }
  for (const m of [standby, primary]) {
    await m?.stop('immediate').catch(() => undefined);
  }
  if (root !== '') {
    await rm(root, { recursive: true, force: true });
  }
});

describe('PgManager (real PostgreSQL)', () => {
  it('reads the binary version', async () => {
    const v = await primary.binaryVersion();
    expect(v.Maj).toBeGreaterThanOrEqual(12);
    expect(v.Min).toBeGreaterThanOrEqual(0);
  });

  it('observes an uninitialised PGDATA without throwing, and refuses to start it', async () => {
    const obs = await primary.observe();
    expect(obs).toMatchObject({ initialized: false, running: false, role: undefined });
    await expect(primary.start(5000)).rejects.toMatchObject({ code: 'DATA_DIR_INVALID' });
    await expect(primary.syncSlots([])).rejects.toMatchObject({ code: 'PG_NOT_RUNNING', transient: true });
  });

  it('inits the primary and leaves it stopped', async () => {
    await primary.init({ encoding: 'UTF8', locale: 'C', dataChecksums: true });
    expect(await primary.isRunning()).toBe(false);
    const obs = await primary.observe();
    expect(obs).toMatchObject({ initialized: true, running: false, role: 'master', timelineId: 1 });
    // From pg_controldata while stopped.
    expect(obs.systemId).toMatch(/^\d+$/);
    await expect(primary.init({})).rejects.toMatchObject({ code: 'DATA_DIR_INVALID' });
  });

  it('rejects a bad parameter value while stopped (postgres -C) and keeps the previous file', async () => {
    const initdbConf = conf(primary);
    expect(initdbConf).toContain('wal_log_hints = on'); // init's temporary settings
    await expect(
      primary.writeConfig({ ...configFor(primaryPort), parameters: { Shared_Buffers: 'lots' } }, null),
    ).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      field: 'pgParameters.Shared_Buffers',
      message: expect.stringContaining(
        'pgParameters.Shared_Buffers: invalid value for parameter "Shared_Buffers": "lots"; the previous configuration is kept',
      ) as unknown,
    });
    expect(conf(primary)).toBe(initdbConf);
    expect(readdirSync(primary.pgData).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('explains a start that fails on a parameter, with no last-good configuration yet', async () => {
    const good = conf(primary);
    writeFileSync(join(primary.pgData, 'postgresql.conf'), `${good}shared_buffers = 'lots'\n`);
    const err: unknown = await primary.start(10_000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID', transient: false, field: 'pgParameters.shared_buffers' });
    expect((err as Error).message).toContain('invalid value for parameter "shared_buffers": "lots"');
    expect((err as Error).message).toContain('fix the cluster spec');
    expect(await primary.isRunning()).toBe(false);
    // init's temporary instance does not count as a last good configuration.
    expect(await primary.restoreLastGoodConfig()).toBe(false);
    writeFileSync(join(primary.pgData, 'postgresql.conf'), good);
  });

  it('writes the config atomically and starts the primary', async () => {
    expect(await primary.writeConfig(configFor(primaryPort), null)).toEqual({ changed: true, pendingRestart: [] });
    for (const f of ['postgresql.conf', 'pg_hba.conf', 'postgresql.auto.conf']) {
      const st = statSync(join(primary.pgData, f));
      expect(st.mode & 0o777, f).toBe(0o600);
      if (isRoot) {
        expect(st.uid, f).not.toBe(0);
      }
    }
    expect(readFileSync(join(primary.pgData, 'postgresql.auto.conf'), 'utf8')).toBe('');
    expect(existsSync(join(primary.pgData, 'standby.signal'))).toBe(false);
    expect(readdirSync(primary.pgData).filter((n) => n.includes('.tmp-'))).toEqual([]);

    await primary.start(30_000);
    expect(await primary.isRunning()).toBe(true);
    await primary.start(30_000); // already running: no-op
    const obs = await primary.observe();
    expect(obs).toMatchObject({ initialized: true, running: true, role: 'master', timelineId: 1 });
    expect(obs.error).toBeUndefined();
    expect(obs.systemId).toMatch(/^\d+$/);
    expect(obs.xLogPos).toBeGreaterThan(0);
    expect(obs.olderWalFile).toMatch(/^[0-9A-F]{24}$/);
    const settings = await sql<{ name: string; setting: string }>(
      primaryPort,
      "select name, setting from pg_settings where name in ('max_wal_senders', 'wal_log_hints', 'shared_buffers', 'data_checksums')",
    );
    expect(Object.fromEntries(settings.map((r) => [r.name, r.setting]))).toEqual({
      max_wal_senders: '12',
      wal_log_hints: 'on',
      shared_buffers: '2048', // 16MB in 8kB pages
      data_checksums: 'on',
    });
    await primary.reload();
    // A successful start makes the files the last good configuration.
    expect(conf(primary, '.last-good')).toBe(conf(primary));
    expect(readFileSync(join(primary.pgData, 'pg_hba.conf.last-good'), 'utf8')).toBe(
      readFileSync(join(primary.pgData, 'pg_hba.conf'), 'utf8'),
    );
    expect(await primary.writeConfig(configFor(primaryPort), null)).toEqual({ changed: false, pendingRestart: [] });
  });

  it('rejects bad values, unknown names and bad pg_hba.conf lines on a running instance, keeping the previous files', async () => {
    const cfg = configFor(primaryPort);
    const before = { conf: conf(primary), hba: readFileSync(join(primary.pgData, 'pg_hba.conf'), 'utf8') };
    await expect(
      primary.writeConfig({ ...cfg, parameters: { ...cfg.parameters, work_mem: 'lots' } }, null),
    ).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      field: 'pgParameters.work_mem',
      message: expect.stringMatching(
        /^pgParameters\.work_mem: invalid value for parameter "work_mem": "lots".*; the previous configuration is kept$/,
      ) as unknown,
    });
    expect(conf(primary)).toBe(before.conf);
    await expect(
      primary.writeConfig({ ...cfg, parameters: { ...cfg.parameters, Foo_Bar: '1' } }, null),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID', field: 'pgParameters.Foo_Bar' });
    expect(conf(primary)).toBe(before.conf);
    const badHba = [...cfg.hba, 'host all all 0.0.0.0/0 bogus-method'];
    await expect(primary.writeConfig({ ...cfg, hba: badHba }, null)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      field: 'pgHBA',
      message: expect.stringContaining(`pg_hba.conf line ${badHba.length} ("host all all 0.0.0.0/0 bogus-method")`) as unknown,
    });
    expect(readFileSync(join(primary.pgData, 'pg_hba.conf'), 'utf8')).toBe(before.hba);
    expect(readdirSync(primary.pgData).filter((n) => n.includes('.tmp-'))).toEqual([]);
    // Still healthy and reloadable with the kept files.
    await primary.reload();
    const obs = await primary.observe();
    expect(obs).toMatchObject({ running: true, role: 'master', pendingRestart: [] });
    expect(obs.error).toBeUndefined();
    const rows = await sql<{ setting: string }>(primaryPort, "select setting from pg_settings where name = 'work_mem'");
    expect(rows[0]?.setting).toBe('4096');
  });

  it('reports restart-only changes as pending until restart(), then keeps them as last good', async () => {
    const cfg = configFor(primaryPort);
    const more = { ...cfg, parameters: { ...cfg.parameters, max_connections: '40', work_mem: '8MB' } };
    const lastGoodBefore = conf(primary, '.last-good');
    expect(await primary.writeConfig(more, null)).toEqual({ changed: true, pendingRestart: ['max_connections'] });
    // Not proven until a restart: the last good configuration stays the previous one.
    expect(conf(primary, '.last-good')).toBe(lastGoodBefore);
    await primary.reload();
    await waitFor(async () => {
      const o = await primary.observe();
      return o.pendingRestart.includes('max_connections') ? true : undefined;
    }, 'max_connections to be pending restart after the reload');
    expect(await primary.writeConfig(more, null)).toEqual({ changed: false, pendingRestart: ['max_connections'] });

    const startedBefore = (await primary.observe()).startedAtMs;
    expect(startedBefore).toBeGreaterThan(0);
    await primary.restart(30_000);
    const after = await primary.observe();
    expect(after.pendingRestart).toEqual([]);
    // pg_postmaster_start_time() moves with the restart (stolonctl restart's acknowledgement).
    expect(after.startedAtMs).toBeGreaterThan(startedBefore!);
    const rows = await sql<{ setting: string }>(primaryPort, "select setting from pg_settings where name = 'max_connections'");
    expect(rows[0]?.setting).toBe('40');
    expect(conf(primary, '.last-good')).toBe(conf(primary));

    // A start that fails on a value postgres -C could not see: fall back to the last good files.
    await primary.stop('fast');
    const good = conf(primary);
    writeFileSync(join(primary.pgData, 'postgresql.conf'), `${good}max_connections = 'many'\n`);
    const err: unknown = await primary.start(10_000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID', field: 'pgParameters.max_connections' });
    expect((err as Error).message).toContain('restoreLastGoodConfig()');
    expect(await primary.restoreLastGoodConfig()).toBe(true);
    expect(conf(primary)).toBe(good);
    await primary.start(30_000);

    // Back to the file's standard settings (the standby needs max_connections >= the primary's).
    expect(await primary.writeConfig(cfg, null)).toMatchObject({ changed: true, pendingRestart: ['max_connections'] });
    await primary.restart(30_000);
    expect((await primary.observe()).pendingRestart).toEqual([]);
  });

  it('creates and drops stolon_* slots, leaving other slots alone', async () => {
    await primary.syncSlots(['stolon_s1', 'stolon_extra']);
    expect((await primary.observe()).slots).toEqual(['stolon_extra', 'stolon_s1']);
    await sql(primaryPort, "select pg_create_physical_replication_slot('user_slot')");
    await primary.syncSlots(['stolon_s1']);
    expect((await primary.observe()).slots).toEqual(['stolon_s1', 'user_slot']);
    await sql(primaryPort, "select pg_drop_replication_slot('user_slot')");
  });

  it('drops only the unwanted slots mayDrop allows, asked after the list; none when it rejects', async () => {
    await primary.syncSlots(['stolon_s1', 'stolon_keep', 'stolon_drop']);
    let asked: readonly string[] = [];
    await primary.syncSlots(['stolon_s1'], {
      mayDrop: (names) => {
        asked = names;
        return Promise.resolve(names.filter((n) => n !== 'stolon_keep'));
      },
    });
    expect([...asked].sort()).toEqual(['stolon_drop', 'stolon_keep']);
    expect((await primary.observe()).slots).toEqual(['stolon_keep', 'stolon_s1']);
    await primary.syncSlots(['stolon_s1'], { mayDrop: () => Promise.reject(new Error('store unreachable')) });
    expect((await primary.observe()).slots).toEqual(['stolon_keep', 'stolon_s1']);
    expect(logLines.some((l) => l.includes('not dropping replication slots stolon_keep now') && l.includes('store unreachable'))).toBe(true);
    await primary.syncSlots(['stolon_s1']);
    expect((await primary.observe()).slots).toEqual(['stolon_s1']);
  });

  it('counts a slot that appears between its list and its creation as created', async () => {
    // A temporary slot is not in the list syncSlots reads, and holds the name: the creation meets
    // "already exists", as when a new standby created its slot first.
    const holder = new Client({ host: '127.0.0.1', port: primaryPort, user: 'stolon', password: SU_PASSWORD, database: 'postgres' });
    await holder.connect();
    try {
      await holder.query("select pg_create_physical_replication_slot('stolon_race', true, true)");
      await primary.syncSlots(['stolon_s1', 'stolon_race']);
    } finally {
      await holder.end();
    }
    expect(logLines.some((l) => l.includes('replication slot stolon_race exists already'))).toBe(true);
  });

  it('observes over one kept connection; one the server closed is replaced within the same observation', async () => {
    const probes = async (): Promise<{ pid: number }[]> =>
      sql<{ pid: number }>(primaryPort, "select pid from pg_stat_activity where application_name = 'stolon-ts-keeper' order by pid");
    expect((await primary.observe()).error).toBeUndefined();
    const first = await probes();
    expect(first).toHaveLength(1);
    for (let i = 0; i < 3; i++) {
      expect((await primary.observe()).error).toBeUndefined();
    }
    expect(await probes()).toEqual(first);
    // The crash watch's signal: the kept connection is open, and its close by the server is heard.
    let closes = 0;
    const conn = primary.watchConnection(() => (closes += 1));
    expect(conn.open()).toBe(true);
    // Closed by the server between two observations: the next one still succeeds, on a new backend.
    await sql(primaryPort, `select pg_terminate_backend(${first[0]!.pid})`);
    await waitFor(() => Promise.resolve(closes === 1 ? true : undefined), 'the close of the probe connection', 5000);
    expect(conn.open()).toBe(false);
    conn.stop();
    const obs = await primary.observe();
    expect(obs.error).toBeUndefined();
    expect(obs.running).toBe(true);
    const second = await probes();
    expect(second).toHaveLength(1);
    expect(second[0]!.pid).not.toBe(first[0]!.pid);
  });

  it('a failed base backup (missing slot) leaves nothing behind', async () => {
    await sql(primaryPort, 'create table t (id int primary key)');
    await sql(primaryPort, 'insert into t values (1)');
    await expect(standby.baseBackup(standbySettings('stolon_missing'))).rejects.toMatchObject({
      code: 'PG_COMMAND_FAILED',
      transient: true,
    });
    expect(existsSync(standby.pgData)).toBe(false);
    expect(existsSync(`${standby.pgData}.basebackup`)).toBe(false);
    const aborted = new AbortController();
    aborted.abort();
    await expect(standby.baseBackup(standbySettings('stolon_s1'), { signal: aborted.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(existsSync(`${standby.pgData}.basebackup`)).toBe(false);
  });

  it('a base backup asked to create its slot creates it, and copies through it when it exists already', async () => {
    await standby.baseBackup(standbySettings('stolon_created'), { createSlot: true });
    expect(logLines.some((l) => l.includes('replication slot stolon_created is on the primary'))).toBe(true);
    const created = await sql<{ restart_lsn: string | null; temporary: boolean }>(
      primaryPort,
      "select restart_lsn::text as restart_lsn, temporary from pg_replication_slots where slot_name = 'stolon_created'",
    );
    expect(created).toEqual([{ restart_lsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/), temporary: false }]);
    expect(existsSync(join(standby.pgData, 'standby.signal'))).toBe(true);
    // Created meanwhile (by the primary's keeper): the copy is taken through it.
    await standby.baseBackup(standbySettings('stolon_created'), { createSlot: true });
    expect(existsSync(join(standby.pgData, 'standby.signal'))).toBe(true);
    expect(existsSync(`${standby.pgData}.basebackup`)).toBe(false);
    await sql(primaryPort, "select pg_drop_replication_slot('stolon_created')");
  });

  it('makes a standby by base backup that streams from the primary through its slot', async () => {
    const progress: BaseBackupProgress[] = [];
    await standby.baseBackup(standbySettings('stolon_s1'), { onProgress: (p) => progress.push(p) });
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress[0]?.totalBytes).toBeGreaterThan(1024 * 1024);
    expect(existsSync(join(standby.pgData, 'standby.signal'))).toBe(true);
    // The primary's last good configuration is not copied along.
    expect(existsSync(join(standby.pgData, 'postgresql.conf.last-good'))).toBe(false);
    expect(await standby.writeConfig(configFor(standbyPort), standbyRecovery('stolon_s1'))).toMatchObject({ changed: true });
    expect(readFileSync(join(standby.pgData, 'postgresql.conf'), 'utf8')).not.toContain(suffix);
    await standby.start(30_000);

    const primaryObs = await primary.observe();
    const obs = await waitFor(async () => {
      const o = await standby.observe();
      return o.running && o.role === 'standby' && o.xLogPos > 0 ? o : undefined;
    }, 'the standby to run in recovery');
    expect(obs.systemId).toBe(primaryObs.systemId);
    expect(obs.timelineId).toBe(1);
    expect(obs.timelinesHistory).toEqual([]);
    // The replayed LSN (what readers of the standby see) is reported apart, never past xLogPos.
    expect(obs.replayedXLogPos).toBeGreaterThan(0);
    expect(obs.replayedXLogPos).toBeLessThanOrEqual(obs.xLogPos);
    expect(primaryObs.replayedXLogPos).toBeUndefined();

    await sql(primaryPort, 'insert into t values (2)');
    await waitFor(async () => {
      const rows = await sql<{ n: string }>(standbyPort, 'select count(*) as n from t');
      return rows[0]?.n === '2' ? true : undefined;
    }, 'row 2 to be replicated to the standby');
    // What the keeper's role checks and metrics read: streaming, the received LSN, the replayed commit's time.
    const receiving = await waitFor(async () => {
      const o = await standby.observe();
      return o.walReceiverStreaming === true && o.lastReplayAtMs !== undefined ? o : undefined;
    }, 'the standby to stream and to have replayed a commit');
    expect(receiving.receivedXLogPos).toBeGreaterThanOrEqual(receiving.replayedXLogPos ?? Infinity);
    expect(Math.abs(Date.now() - (receiving.lastReplayAtMs ?? 0))).toBeLessThan(60_000);
    expect(primaryObs.walReceiverStreaming).toBeUndefined();

    const streaming = await waitFor(async () => {
      const o: PgObservation = await primary.observe();
      return o.replication.length > 0 ? o.replication : undefined;
    }, 'the primary to list the standby in pg_stat_replication');
    expect(streaming).toEqual([{ applicationName: 'stolon_s1', syncState: 'async' }]);
    const slot = await sql<{ active: boolean }>(primaryPort, "select active from pg_replication_slots where slot_name = 'stolon_s1'");
    expect(slot[0]?.active).toBe(true);

    // An active slot cannot be dropped: logged at warn, not thrown.
    await primary.syncSlots([]);
    expect((await primary.observe()).slots).toEqual(['stolon_s1']);
    expect(logLines.some((l) => l.includes('"level":40') && l.includes('stolon_s1'))).toBe(true);
  });

  it('runs postgres as the unprivileged OS user in its own session, with no password in any argv', () => {
    assertNoSecretsInPs();
    for (const m of [primary, standby]) {
      const pid = postmasterPid(m.pgData);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after "(comm)": state ppid pgrp session — the postmaster leads its own session
      // (pg_ctl calls setsid), so signals to the keeper's process group do not reach it.
      const [, , pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      expect(Number(pgrp), m.pgData).toBe(pid);
      expect(Number(session), m.pgData).toBe(pid);
    }
    if (!isRoot) {
      return;
    }
    const pgUid = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    for (const m of [primary, standby]) {
      const status = readFileSync(`/proc/${postmasterPid(m.pgData)}/status`, 'utf8');
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/);
      expect(uids, m.pgData).toEqual([pgUid, pgUid, pgUid, pgUid]);
    }
  });

  it('gives the postmaster and its backends a minimal environment, without the keeper secrets', async () => {
    for (const m of [primary, standby]) {
      const pid = postmasterPid(m.pgData);
      const environ = parseEnv(readFileSync(`/proc/${pid}/environ`, 'utf8'), '\0');
      for (const name of Object.keys(KEEPER_SECRET_ENV)) {
        expect(environ.has(name), `${name} in the postmaster of ${m.pgData}`).toBe(false);
      }
      assertMinimalEnv(environ, `postmaster of ${m.pgData}`);
    }
    // What any SQL superuser (COPY … FROM PROGRAM, archive_command) sees: a backend's shell.
    const client = new Client({ host: '127.0.0.1', port: primaryPort, user: 'stolon', password: SU_PASSWORD, database: 'postgres' });
    await client.connect();
    try {
      await client.query('create temp table environ (line text)');
      // base64: one line, whatever the values hold (COPY's text format would parse tabs and backslashes).
      await client.query("copy environ from program 'env -0 | base64 -w0'");
      const rows = await client.query<{ line: string }>('select line from environ');
      expect(rows.rows).toHaveLength(1);
      assertMinimalEnv(parseEnv(Buffer.from(rows.rows[0]?.line ?? '', 'base64').toString('utf8'), '\0'), 'a backend');
    } finally {
      await client.end();
    }
  });

  it('keeps the replication password out of PGDATA: a base backup of the standby has none; its file is next to PGDATA (0600, the OS user)', async () => {
    expect(filesContaining(standby.pgData, suffix)).toEqual([]);
    // The real thing: a base backup of the standby, as a tar stream.
    const tar = execFileSync(
      join(resolvePgBinDir(), 'pg_basebackup'),
      ['-D', '-', '-F', 't', '-X', 'none', '-c', 'fast', '-h', '127.0.0.1', '-p', String(standbyPort), '-U', 'repl', '-w'],
      { env: { PGPASSWORD: REPL_PASSWORD }, maxBuffer: 1024 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    expect(tar.length).toBeGreaterThan(1024 * 1024);
    expect(tar.includes('PG_VERSION')).toBe(true);
    expect(tar.includes(suffix)).toBe(false);

    const passfile = join(root, 's', REPL_PASSFILE_NAME);
    const st = statSync(passfile);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(Number(execFileSync('id', ['-u', ...(isRoot ? ['postgres'] : [])], { encoding: 'utf8' }).trim()));
    expect(readFileSync(passfile, 'utf8')).toContain(suffix);
    const [conninfo] = await sql<{ setting: string }>(standbyPort, "select setting from pg_settings where name = 'primary_conninfo'");
    expect(conninfo?.setting).toContain(`passfile='${passfile}'`);

    // A PGDATA written by an earlier version, which kept the password file inside it: the next
    // writeConfig removes it.
    writeFileSync(join(standby.pgData, LEGACY_REPL_PASSFILE_NAME), `*:*:*:repl:old-${suffix}\n`, { mode: 0o600 });
    expect(await standby.writeConfig(configFor(standbyPort), standbyRecovery('stolon_s1'))).toMatchObject({ changed: false });
    expect(existsSync(join(standby.pgData, LEGACY_REPL_PASSFILE_NAME))).toBe(false);
    expect(existsSync(passfile)).toBe(true);
  });

  it('waits for the end of streaming only while the standby streams, bounded, and only while wanted', async () => {
    const started = Date.now();
    expect(await standby.waitStreamingEnd(300, () => true)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(await standby.waitStreamingEnd(30_000, () => false)).toBe(false);
  });

  it('promotes the standby of a stopped primary onto timeline 2 without sleeping out wal_retrieve_retry_interval, bound from its first commit by the synchronous_standby_names written before, with no postgres -C for either write', async () => {
    // A failover: the primary is gone and the standby tries to stream again every
    // wal_retrieve_retry_interval, 5 s here so that sleeping it out would show.
    await primary.stop('immediate');
    const base = configFor(standbyPort);
    const slow = { ...base, parameters: { ...base.parameters, wal_retrieve_retry_interval: '5s' } };
    await standby.writeConfig(slow, standbyRecovery('stolon_s1'));
    await standby.reload();
    await waitFor(async () => {
      const rows = await sql<{ n: string }>(standbyPort, "select count(*) as n from pg_stat_activity where backend_type = 'startup' and wait_event = 'RecoveryRetrieveRetryInterval'");
      return rows[0]?.n === '1' ? true : undefined;
    }, 'the standby sleeping between two streaming attempts');
    const parses = () => logLines.filter((l) => l.includes('"-C"')).length;
    // Any other value is still parsed: a standby named like a keyword of the setting's grammar.
    const parsedFirst = parses();
    await expect(standby.writeConfig({ ...slow, synchronousStandbyNames: 'first' }, standbyRecovery('stolon_s1'))).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    expect(parses()).toBe(parsedFirst + 1);
    const parsedBefore = parses();
    // What the keeper does first with synchronous replication: the primary's
    // synchronous_standby_names, the standby's recovery settings kept, reloaded before the promotion.
    const sync = { ...slow, synchronousStandbyNames: 'stolon_s9' };
    expect(await standby.writeConfig(sync, standbyRecovery('stolon_s1'))).toMatchObject({ changed: true });
    expect(existsSync(join(standby.pgData, 'standby.signal'))).toBe(true);
    // The reload wakes the startup process into a new streaming attempt: a promotion requested
    // meanwhile would end recovery only 5 s after that attempt, unless the startup process is woken.
    await standby.reload();
    const promoteStarted = Date.now();
    await standby.promote(30_000);
    expect(Date.now() - promoteStarted).toBeLessThan(2500);
    // The first commit as a primary waits for stolon_s9, which is not connected: no window
    // between the promotion and the keeper's next reload in which it commits unsynced.
    const writer = new Client({ host: '127.0.0.1', port: standbyPort, user: 'stolon', password: SU_PASSWORD, database: 'postgres' });
    await writer.connect();
    const insert = writer.query('insert into t values (30)').then(
      () => undefined,
      (err: unknown) => err,
    );
    await waitFor(async () => {
      const rows = await sql<{ n: string }>(standbyPort, "select count(*) as n from pg_stat_activity where wait_event = 'SyncRep'");
      return rows[0]?.n === '1' ? true : undefined;
    }, 'the first commit waiting for its synchronous standby');
    await sql(standbyPort, "select pg_cancel_backend(pid) from pg_stat_activity where wait_event = 'SyncRep'");
    await insert;
    await writer.end();
    // No WAL receiver any more: streaming has ended.
    expect(await standby.waitStreamingEnd(1000, () => true)).toBe(true);
    const obs = await standby.observe();
    expect(obs).toMatchObject({ running: true, role: 'master', timelineId: 2 });
    expect(obs.timelinesHistory).toEqual([
      { timelineID: 1, switchPoint: expect.any(Number) as unknown, reason: 'no recovery target specified' },
    ]);
    expect(obs.timelinesHistory[0]?.switchPoint).toBeGreaterThan(0);
    // What the keeper does next: rewrite the config as a primary.
    await standby.writeConfig(slow, null);
    expect(parses()).toBe(parsedBefore);
    expect(existsSync(join(standby.pgData, 'standby.signal'))).toBe(false);
    expect(existsSync(join(root, 's', REPL_PASSFILE_NAME))).toBe(false);
    await standby.reload();
    await sql(standbyPort, 'insert into t values (3)');
    await standby.promote(5000); // already a primary: returns at once
    await primary.start(30_000);
  });

  it('rotates a password with a client-side SCRAM verifier: the new one logs in, the old one no longer, and the manager still connects (peer)', async () => {
    const ident = readFileSync(join(primary.pgData, 'pg_ident.conf'), 'utf8');
    expect(ident).toContain(isRoot ? 'stolon_keeper root stolon\nstolon_keeper postgres stolon\n' : 'stolon_keeper ');
    const login = async (user: string, password: string): Promise<string> => {
      const c = new Client({ host: '127.0.0.1', port: primaryPort, user, password, database: 'postgres', connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        await c.end();
        return 'ok';
      } catch (err) {
        return (err as Error).message;
      }
    };
    const newSu = `su-rotated'"\\:${suffix}-x`;
    const newRepl = `repl rotated ${suffix}-y`;
    await primary.setRolePassword('repl', newRepl);
    await primary.setRolePassword('stolon', newSu);
    expect(await login('repl', newRepl)).toBe('ok');
    expect(await login('repl', REPL_PASSWORD)).toMatch(/password authentication failed/);
    expect(await login('stolon', newSu)).toBe('ok');
    expect(await login('stolon', SU_PASSWORD)).toMatch(/password authentication failed/);
    const stored = await new Client({ host: '127.0.0.1', port: primaryPort, user: 'stolon', password: newSu, database: 'postgres' });
    await stored.connect();
    const rows = (await stored.query<{ rolpassword: string }>("select rolpassword from pg_authid where rolname = 'stolon'")).rows;
    await stored.end();
    expect(rows[0]?.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    // The keeper's own connection needs no password: peer authentication over the socket.
    const obs = await primary.observe();
    expect(obs).toMatchObject({ running: true, role: 'master' });
    expect(obs.error).toBeUndefined();
    // Neither the password nor its verifier reached the server log.
    const serverLog = readFileSync(join(root, 'p', 'postgres.log'), 'utf8');
    expect(serverLog).not.toContain(suffix);
    expect(serverLog).not.toContain(rows[0]?.rolpassword ?? 'none');
    await primary.setRolePassword('stolon', SU_PASSWORD);
    await primary.setRolePassword('repl', REPL_PASSWORD);
    expect(await login('stolon', SU_PASSWORD)).toBe('ok');
    await expect(primary.setRolePassword('no_such_role', 'x')).rejects.toMatchObject({ code: 'PG_COMMAND_FAILED' });
  });

  it('drops the now inactive slot, stops both, and observes them stopped', async () => {
    await waitFor(async () => {
      await primary.syncSlots([]);
      const o = await primary.observe();
      return o.slots.length === 0 ? true : undefined;
    }, 'stolon_s1 to be dropped once the standby disconnected');

    await primary.checkpoint();
    await standby.stop('fast');
    await primary.stop('immediate');
    await primary.stop(); // already stopped: no-op
    await expect(primary.checkpoint()).rejects.toMatchObject({ code: 'PG_NOT_RUNNING' });
    for (const m of [primary, standby]) {
      expect(await m.isRunning()).toBe(false);
      const obs = await m.observe();
      expect(obs).toMatchObject({ initialized: true, running: false, role: 'master', pendingRestart: [] });
      expect(obs.error).toBe('postgres is not running');
    }
    // pg_controldata tells the clean stop from the crash stop.
    expect((await primary.observe()).clusterState).toBe('in production');
    const stopped = await standby.observe();
    expect(stopped).toMatchObject({ clusterState: 'shut down', timelineId: 2 });
    expect(stopped.timelinesHistory.map((h) => h.timelineID)).toEqual([1]);
    expect(await standby.systemIdentifier()).toBe(stopped.systemId);
    await expect(primary.reload()).rejects.toMatchObject({ code: 'PG_NOT_RUNNING' });
    await expect(primary.promote(1000)).rejects.toMatchObject({ code: 'PG_NOT_RUNNING' });
  });

  it('removes only PGDATA', async () => {
    await primary.removeData();
    expect(existsSync(primary.pgData)).toBe(false);
    expect(existsSync(join(root, 'p'))).toBe(true);
    expect((await primary.observe()).initialized).toBe(false);
    expect(await primary.systemIdentifier()).toBeUndefined();
  });

  it('never logged a password', () => {
    expect(logLines.length).toBeGreaterThan(10);
    const all = logLines.join('');
    expect(all).not.toContain(SU_PASSWORD);
    expect(all).not.toContain(REPL_PASSWORD);
    expect(all).not.toContain(suffix);
    const serverLogs = ['p', 's'].map((d) => readFileSync(join(root, d, 'postgres.log'), 'utf8')).join('');
    expect(serverLogs).not.toContain(suffix);
  });
});
