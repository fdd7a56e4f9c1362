/**
 * A plain PostgreSQL instance (no keeper) for the pgBackRest tests and benchmarks: `initdb` (or an
 * existing data directory, such as a restore), extra `postgresql.conf` settings, `pg_ctl start` as
 * the `postgres` OS user when this process is root (PostgreSQL refuses to run as root), `trust`
 * authentication on 127.0.0.1 only.
 */
import { execFile, type ExecFileOptions } from 'node:child_process';
import { appendFile, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import pg from 'pg';
import { freePort } from './ports.js';

const run = promisify(execFile);

/** uid/gid of an OS user, or null when this process is not root (then it runs as itself). */
export interface PgIdentity {
  readonly uid: number;
  readonly gid: number;
}

/** The `postgres` OS user's ids when this process is root, else null. */
async function postgresIdentity(): Promise<PgIdentity | null> {
  if (process.getuid?.() !== 0) {
    return null;
  }
  const id = async (flag: string): Promise<number> => Number.parseInt((await run('id', [flag, 'postgres'])).stdout.trim(), 10);
  return { uid: await id('-u'), gid: await id('-g') };
}

/** Result of {@link runAs}. */
export interface RunAsResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command without a shell as `identity` (null: as this process) with `env` merged over
 * this process's environment minus every `PG*` variable. Never rejects for a non-zero exit.
 * @param timeoutMs killed (SIGTERM) after this long; the result then has code -1.
 */
export async function runAs(
  identity: PgIdentity | null,
  cmd: string,
  args: readonly string[],
  opts: { env?: Readonly<Record<string, string>>; timeoutMs?: number; cwd?: string } = {},
): Promise<RunAsResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('PG')) {
      env[k] = v;
    }
  }
  Object.assign(env, opts.env);
  const o: ExecFileOptions = { env, cwd: opts.cwd ?? '/', timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, ...(identity ?? {}) };
  try {
    const r = await run(cmd, [...args], o);
    return { code: 0, stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: String(e.stdout ?? ''), stderr: String(e.stderr ?? e.message) };
  }
}

/** Options of {@link startPlainPostgres}. */
export interface StartPlainPostgresOptions {
  /** The data directory; its parent must exist and be traversable by the postgres user. */
  readonly dataDir: string;
  /** Run `initdb` first (false: start what is there, e.g. a restored backup). @default true */
  readonly init?: boolean;
  /** Appended to `postgresql.conf` (later lines win), e.g. `{ archive_mode: 'on' }`; values are quoted here. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Environment of the postmaster (and so of `archive_command`), e.g. pgBackRest's S3 key variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** @default {@link DEFAULT_PG_BIN_DIR} */
  readonly binDir?: string;
}

/** A running plain PostgreSQL. */
export interface PlainPostgres {
  readonly dataDir: string;
  readonly port: number;
  /** Directory of its Unix socket (also where pgBackRest's `--pg1-socket-path` points). */
  readonly socketDir: string;
  readonly binDir: string;
  readonly identity: PgIdentity | null;
  /** Connection settings for `pg` (127.0.0.1, user postgres, database postgres, trust). */
  readonly pgConfig: pg.ClientConfig;
  /** Runs one statement on a fresh connection. */
  query<T extends pg.QueryResultRow>(sql: string): Promise<T[]>;
  /** `pg_ctl stop -m fast` (then `-m immediate`). Idempotent. */
  stop(): Promise<void>;
}

const quote = (v: string): string => `'${v.replaceAll("'", "''")}'`;

async function pgCtl(p: { identity: PgIdentity | null; binDir: string; dataDir: string }, args: readonly string[], env?: Readonly<Record<string, string>>): Promise<RunAsResult> {
  return runAs(p.identity, join(p.binDir, 'pg_ctl'), ['-D', p.dataDir, ...args], { env: env ?? {}, timeoutMs: 120_000 });
}

/**
 * Starts PostgreSQL on a free port with its socket in `<dataDir>.sock/`.
 * @throws Error with initdb's or pg_ctl's output (and the server log's tail) when either fails.
 */
export async function startPlainPostgres(opts: StartPlainPostgresOptions): Promise<PlainPostgres> {
  const binDir = opts.binDir ?? DEFAULT_PG_BIN_DIR;
  const identity = await postgresIdentity();
  const { dataDir } = opts;
  const own = async (path: string): Promise<void> => {
    if (identity !== null) {
      await chown(path, identity.uid, identity.gid);
    }
  };
  if (opts.init ?? true) {
    await mkdir(dataDir, { mode: 0o700 });
    await own(dataDir);
    const r = await runAs(identity, join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      throw new Error(`initdb ${dataDir} failed (exit ${r.code}):\n${r.stderr || r.stdout}`);
    }
  }
  const socketDir = `${dataDir}.sock`;
  await mkdir(socketDir, { recursive: true, mode: 0o755 });
  await own(socketDir);
  const port = await freePort();
  const settings: Record<string, string> = { listen_addresses: '127.0.0.1', port: String(port), unix_socket_directories: socketDir, ...opts.settings };
  await appendFile(join(dataDir, 'postgresql.conf'), `\n# test harness\n${Object.entries(settings).map(([k, v]) => `${k} = ${quote(v)}`).join('\n')}\n`);
  const log = `${dataDir}.log`;
  await writeFile(log, '', { flag: 'a' });
  await own(log);
  const p = { identity, binDir, dataDir };
  const started = await pgCtl(p, ['-l', log, '-w', '-t', '120', 'start'], opts.env);
  if (started.code !== 0) {
    const tail = await runAs(null, 'tail', ['-n', '30', log]);
    throw new Error(`pg_ctl start ${dataDir} failed (exit ${started.code}):\n${started.stderr || started.stdout}\n${tail.stdout}`);
  }
  const pgConfig: pg.ClientConfig = { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' };
  let stopped: Promise<void> | undefined;
  return {
    dataDir,
    port,
    socketDir,
    binDir,
    identity,
    pgConfig,
    async query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
      const c = new pg.Client(pgConfig);
      c.on('error', () => undefined);
      try {
        await c.connect();
        return (await c.query<T>(sql)).rows;
      } finally {
        await c.end().catch(() => undefined);
      }
    },
    stop: () =>
      (stopped ??= (async () => {
        const r = await pgCtl(p, ['-w', '-t', '60', '-m', 'fast', 'stop']);
        if (r.code !== 0 && !/Is server running\?/.test(r.stderr)) {
          await pgCtl(p, ['-w', '-m', 'immediate', 'stop']);
        }
      })()),
  };
}
