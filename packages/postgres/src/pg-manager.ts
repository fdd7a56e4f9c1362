/**
 * The PostgreSQL manager (STYLE.md rule 12): runs initdb, pg_ctl, pg_basebackup and postgres for
 * one PGDATA, writes the keeper-owned files atomically, and probes the instance with the `pg`
 * driver. Behaviour follows Stolon's `internal/postgresql/postgresql.go` (reference §5.4–5.9).
 *
 * Running as root: PostgreSQL refuses to run as root, so when `process.getuid() === 0` every
 * binary is spawned with the uid/gid of `osUser` (default `postgres`) and every file or
 * directory the manager creates is chowned to it. Secrets never appear in argv or logs: initdb
 * reads the superuser password from a temporary `--pwfile`, pg_basebackup from a temporary
 * PGPASSFILE, the walreceiver from a password file in PGDATA, and roles get a SCRAM verifier
 * computed here rather than a cleartext password.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, escapeIdentifier, escapeLiteral } from 'pg';
import type { Logger } from 'pino';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import { parseLsn, renderHba, renderPgpassLine, renderPostgresqlConf } from './config.js';
import type { PgConfig, PgObservation, PostgresManager, StandbySettings } from './manager.js';
import { scramSha256Verifier } from './scram.js';

/** Constructor options of {@link PgManager}. */
export interface PgManagerOptions {
  /** PGDATA; made absolute. Its parent also holds `postgres.log` and (usually) the socket dir. */
  readonly pgData: string;
  /** Directory of the PostgreSQL binaries, e.g. `/usr/lib/postgresql/15/bin`. */
  readonly binPath: string;
  /**
   * OS user that runs every PostgreSQL binary and owns every created file when this process
   * runs as root. Ignored otherwise (the current user is used).
   * @default 'postgres'
   */
  readonly osUser?: string;
  /** Superuser role created by initdb and used for every local SQL connection. */
  readonly suUsername: string;
  /** Never logged, never in argv. */
  readonly suPassword: string;
  /** Replication role created by {@link PgManager.init} (may equal `suUsername`). */
  readonly replUsername: string;
  /** Never logged, never in argv. */
  readonly replPassword: string;
  /**
   * The keeper's `--pg-listen-address`, replaced by the one of the last
   * {@link PgManager.writeConfig}. The manager itself always connects through the Unix socket,
   * so a wildcard (`*`, `0.0.0.0`) is fine here.
   */
  readonly listenAddress: string;
  /**
   * TCP port, also naming the Unix socket `.s.PGSQL.<port>` the manager connects to; replaced by
   * the one of the last {@link PgManager.writeConfig} (and used by init's temporary instance).
   */
  readonly port: number;
  /** Injected pino logger (STYLE.md rule 17). */
  readonly logger: Logger;
  /**
   * Directory for the Unix-domain socket. Default: `<PGDATA parent>/run`, or a per-PGDATA
   * directory under `os.tmpdir()` when that path would make the socket path longer than the
   * ~100 bytes a socket address can hold.
   */
  readonly socketDir?: string;
}

/** Result of one spawned binary. */
interface ExecResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly aborted: boolean;
}

interface ExecOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal | undefined;
  /** Kill the child (SIGTERM, then SIGKILL) after this many ms. */
  readonly timeoutMs?: number;
  /** New process group/session, so a signal to ours does not reach the child. */
  readonly detached?: boolean;
}

interface Identity {
  readonly uid: number;
  readonly gid: number;
}

/** Password file for the walreceiver's `primary_conninfo` (`passfile=`), inside PGDATA. */
const REPL_PASSFILE = 'stolon-replication.pgpass';
/** Longest stdout/stderr kept from a child, in characters (the tail is kept). */
const OUTPUT_LIMIT = 64 * 1024;
/** Connection and statement timeouts of the probe connection, in ms. */
const CONNECT_TIMEOUT_MS = 2000;
const STATEMENT_TIMEOUT_MS = 5000;
/** How long init waits for the temporary instance to start, in ms. */
const INIT_START_TIMEOUT_MS = 60_000;
/** pg_ctl stop wait, in seconds. */
const STOP_TIMEOUT_S = 60;

/**
 * {@link PostgresManager} over the PostgreSQL ≥ 12 binaries in `binPath` (tested with 15).
 *
 * Files: `<PGDATA>/postgresql.conf`, `pg_hba.conf`, `postgresql.auto.conf` (kept empty),
 * `standby.signal` and `stolon-replication.pgpass` (standby only) are owned by the manager;
 * `<PGDATA>/../postgres.log` receives the server log; base backups are made in
 * `<PGDATA>.basebackup` and renamed over PGDATA once complete.
 */
export class PgManager implements PostgresManager {
  /** Absolute PGDATA. */
  readonly pgData: string;
  /** Server log file (`pg_ctl -l`): `<PGDATA>/../postgres.log`. */
  readonly logFile: string;
  /** Unix socket directory (`unix_socket_directories`), see {@link PgManagerOptions.socketDir}. */
  readonly socketDir: string;

  readonly #binPath: string;
  readonly #osUser: string;
  readonly #su: { readonly user: string; readonly password: string };
  readonly #repl: { readonly user: string; readonly password: string };
  readonly #log: Logger;
  /** Address and port last written to postgresql.conf (constructor values until then). */
  #listen: { address: string; port: number };
  #identity: Promise<Identity | null> | undefined;
  #version: { Maj: number; Min: number } | undefined;

  /** @throws StolonError `CONFIG_INVALID` when `pgData` resolves to `/`. */
  constructor(opts: PgManagerOptions) {
    this.pgData = resolve(opts.pgData);
    if (this.pgData === dirname(this.pgData)) {
      throw new StolonError('CONFIG_INVALID', `refusing to use ${this.pgData} as PGDATA; pass a dedicated directory`, {
        field: 'pgData',
      });
    }
    this.logFile = join(dirname(this.pgData), 'postgres.log');
    this.socketDir = opts.socketDir ?? defaultSocketDir(this.pgData);
    this.#binPath = opts.binPath;
    this.#osUser = opts.osUser ?? 'postgres';
    this.#su = { user: opts.suUsername, password: opts.suPassword };
    this.#repl = { user: opts.replUsername, password: opts.replPassword };
    this.#log = opts.logger;
    this.#listen = { address: opts.listenAddress, port: opts.port };
  }

  /**
   * Major/minor of `postgres -V` (e.g. `postgres (PostgreSQL) 15.10 (Debian …)` → 15/10);
   * cached after the first success.
   * @throws StolonError `PG_COMMAND_FAILED` when the binary cannot run or prints no version.
   */
  async binaryVersion(): Promise<{ Maj: number; Min: number }> {
    if (this.#version !== undefined) {
      return this.#version;
    }
    const res = await this.#exec('postgres', ['-V']);
    const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(res.stdout);
    if (res.code !== 0 || m === null) {
      throw commandFailed('postgres -V', res, `check binPath (${this.#binPath})`);
    }
    this.#version = { Maj: Number(m[1]), Min: Number(m[2] ?? '0') };
    return this.#version;
  }

  /**
   * initdb (scram-sha-256 for local and host connections, superuser password from a temporary
   * `--pwfile`), then starts the instance on its Unix socket only, creates the replication role
   * with a SCRAM verifier (the cleartext password never reaches the server), and stops it.
   * PGDATA is removed again on any failure so the call can be retried.
   *
   * @throws StolonError `DATA_DIR_INVALID` when PGDATA exists and is not empty or the OS user
   *   cannot reach it; `PG_COMMAND_FAILED` with initdb's stderr or the server log tail;
   *   `ABORTED` when `signal` fired; `CONFIG_INVALID` for a password with a newline.
   * @see https://www.postgresql.org/docs/current/app-initdb.html
   */
  async init(opts: {
    locale?: string;
    encoding?: string;
    dataChecksums?: boolean;
    signal?: AbortSignal;
  }): Promise<void> {
    if (await this.isRunning()) {
      throw new StolonError('DATA_DIR_INVALID', `cannot init ${this.pgData}: a postmaster is running on it; stop it first`);
    }
    const entries = await fs.readdir(this.pgData).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        return [];
      }
      throw new StolonError('DATA_DIR_INVALID', `cannot read ${this.pgData}: ${err.message}`, { cause: err });
    });
    if (entries.length > 0) {
      throw new StolonError(
        'DATA_DIR_INVALID',
        `cannot init ${this.pgData}: the directory is not empty; remove it first (removeData)`,
      );
    }
    if (/[\r\n]/.test(this.#su.password)) {
      throw new StolonError('CONFIG_INVALID', 'the superuser password contains a newline, which initdb cannot read');
    }
    await fs.mkdir(this.pgData, { recursive: true, mode: 0o700 });
    await this.#own(this.pgData);
    await this.#checkReachable(this.pgData);
    this.#log.info({ pgData: this.pgData }, 'initialising a new PostgreSQL data directory (initdb)');
    try {
      const args = [
        '-D',
        this.pgData,
        '-U',
        this.#su.user,
        '--auth-local=scram-sha-256',
        '--auth-host=scram-sha-256',
      ];
      if (opts.locale !== undefined) {
        args.push(`--locale=${opts.locale}`);
      }
      if (opts.encoding !== undefined) {
        args.push(`--encoding=${opts.encoding}`);
      }
      if (opts.dataChecksums === true) {
        args.push('--data-checksums');
      }
      const res = await this.#withSecretFile(`${this.#su.password}\n`, (pwfile) =>
        this.#exec('initdb', [...args, `--pwfile=${pwfile}`], { signal: opts.signal }),
      );
      throwIfAborted(res, 'initdb');
      if (res.code !== 0) {
        throw commandFailed('initdb', res, 'PGDATA was removed; the next attempt starts from scratch');
      }

      // Temporary settings for role creation: appended, so they win over initdb's defaults;
      // the keeper's writeConfig replaces the whole file afterwards.
      const confPath = join(this.pgData, 'postgresql.conf');
      const initdbConf = await fs.readFile(confPath, 'utf8');
      await this.#writeAtomic(
        confPath,
        `${initdbConf}\n# stolon-ts: temporary settings while creating roles\n` +
          `listen_addresses = ''\nport = ${this.#listen.port}\n` +
          `unix_socket_directories = '${this.socketDir.replace(/\\/g, '\\\\').replace(/'/g, "''")}'\n` +
          // PostgreSQL 13 still defaults to md5; the hba rules require SCRAM verifiers.
          `password_encryption = 'scram-sha-256'\n`,
      );
      if (opts.signal?.aborted === true) {
        throw new StolonError('ABORTED', 'init aborted');
      }
      await this.start(INIT_START_TIMEOUT_MS);
      const client = await this.#connectOrThrow();
      try {
        await client.query('BEGIN');
        // Keep the statement out of the server log whatever the logging settings are.
        await client.query("SET LOCAL log_statement = 'none'");
        await client.query('SET LOCAL log_min_duration_statement = -1');
        await client.query('SET LOCAL log_min_error_statement = panic');
        if (this.#repl.user === this.#su.user) {
          await client.query(`ALTER ROLE ${escapeIdentifier(this.#su.user)} WITH LOGIN REPLICATION`);
        } else {
          await client.query(
            `CREATE ROLE ${escapeIdentifier(this.#repl.user)} WITH LOGIN REPLICATION PASSWORD ${escapeLiteral(
              scramSha256Verifier(this.#repl.password),
            )}`,
          );
        }
        await client.query('COMMIT');
      } catch (err) {
        throw new StolonError('PG_COMMAND_FAILED', `creating the replication role failed: ${errorMessage(err)}`, {
          cause: err,
        });
      } finally {
        await endQuietly(client);
      }
      await this.stop('fast');
      this.#log.info({ pgData: this.pgData }, 'PostgreSQL data directory initialised');
    } catch (err) {
      await this.stop('immediate').catch(() => undefined);
      await fs.rm(this.pgData, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Writes postgresql.conf ({@link renderPostgresqlConf}), pg_hba.conf ({@link renderHba}) and an
   * empty postgresql.auto.conf (discarding anything ALTER SYSTEM stored), each atomically
   * (temp file, fsync, rename, mode 0600, owned by the OS user). For a standby also writes
   * `standby.signal` and the replication password file; for a primary removes both.
   * Does not reload: call {@link reload} or restart.
   *
   * @throws StolonError `DATA_DIR_INVALID` when PGDATA is not initialised or a write fails;
   *   `CONFIG_INVALID` for parameters postgresql.conf cannot hold.
   * @see https://www.postgresql.org/docs/current/runtime-config-replication.html
   */
  async writeConfig(config: PgConfig, standby: StandbySettings | null): Promise<void> {
    await this.#requireInitialized('write its configuration');
    const { Maj } = await this.binaryVersion();
    const passfile = join(this.pgData, REPL_PASSFILE);
    const conf = renderPostgresqlConf(
      config,
      standby,
      Maj,
      standby === null ? { socketDir: this.socketDir } : { socketDir: this.socketDir, passfile },
    );
    const hba = renderHba(config.hba);
    try {
      await this.#ensureSocketDir();
      if (standby !== null) {
        await this.#writeAtomic(passfile, renderPgpassLine(standby.primary.user, standby.primary.password));
      }
      await this.#writeAtomic(join(this.pgData, 'postgresql.conf'), conf);
      await this.#writeAtomic(join(this.pgData, 'pg_hba.conf'), hba);
      await this.#writeAtomic(join(this.pgData, 'postgresql.auto.conf'), '');
      if (standby !== null) {
        await this.#writeAtomic(join(this.pgData, 'standby.signal'), '');
      } else {
        await fs.rm(join(this.pgData, 'standby.signal'), { force: true });
        await fs.rm(passfile, { force: true });
      }
      await fsyncDir(this.pgData);
    } catch (err) {
      throw new StolonError('DATA_DIR_INVALID', `writing the configuration into ${this.pgData} failed: ${errorMessage(err)}`, {
        cause: err,
        transient: true,
      });
    }
    this.#listen = { address: config.listenAddress, port: config.port };
    this.#log.debug(
      { pgData: this.pgData, standby: standby !== null, port: config.port },
      'wrote postgresql.conf and pg_hba.conf',
    );
  }

  /**
   * `pg_ctl start -w -t <ceil(timeoutMs/1000)> -D PGDATA -l <logFile>`: the postmaster runs in its
   * own session and outlives this process. Does nothing when a postmaster is already running.
   * A postmaster still starting when the wait expires is left running.
   *
   * @throws StolonError `DATA_DIR_INVALID` when PGDATA is not initialised; `PG_COMMAND_FAILED`
   *   (transient) with pg_ctl's output and the last lines of the server log.
   * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
   */
  async start(timeoutMs: number): Promise<void> {
    await this.#requireInitialized('start');
    if (await this.isRunning()) {
      this.#log.debug({ pgData: this.pgData }, 'postgres already running, not starting it');
      return;
    }
    await this.#checkReachable(this.pgData);
    await this.#ensureSocketDir();
    const fh = await fs.open(this.logFile, 'a', 0o600);
    await fh.close();
    await this.#own(this.logFile);
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    this.#log.info({ pgData: this.pgData, timeoutMs }, 'starting postgres');
    const res = await this.#exec('pg_ctl', ['start', '-w', '-t', String(seconds), '-D', this.pgData, '-l', this.logFile], {
      detached: true,
      timeoutMs: timeoutMs + 15_000,
    });
    if (res.code !== 0) {
      const tail = await this.#logTail();
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `pg_ctl start failed (${exitText(res)}): ${lastLines(res.stderr || res.stdout, 5)}\n` +
          `last lines of ${this.logFile}:\n${tail}`,
        { transient: true },
      );
    }
    this.#log.info({ pgData: this.pgData }, 'postgres started');
  }

  /**
   * `pg_ctl stop -w -m <mode>`; does nothing when no postmaster is running.
   * @param mode `fast` (default: disconnects clients, checkpoints) or `immediate` (crash stop).
   * @throws StolonError `PG_COMMAND_FAILED` (transient) when the postmaster is still alive after
   *   60 s.
   * @see https://www.postgresql.org/docs/current/server-shutdown.html
   */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!(await this.isRunning())) {
      return;
    }
    this.#log.info({ pgData: this.pgData, mode }, 'stopping postgres');
    const res = await this.#exec('pg_ctl', ['stop', '-w', '-t', String(STOP_TIMEOUT_S), '-m', mode, '-D', this.pgData], {
      timeoutMs: STOP_TIMEOUT_S * 1000 + 15_000,
    });
    if (res.code !== 0 && (await this.isRunning())) {
      throw commandFailed(`pg_ctl stop -m ${mode}`, res, 'try again, or stop it with mode immediate', true);
    }
  }

  /**
   * `pg_ctl reload`: re-reads postgresql.conf and pg_hba.conf.
   * @throws StolonError `PG_NOT_RUNNING` (transient) when stopped; `PG_COMMAND_FAILED` otherwise.
   * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
   */
  async reload(): Promise<void> {
    if (!(await this.isRunning())) {
      throw new StolonError('PG_NOT_RUNNING', `cannot reload: postgres is not running on ${this.pgData}`, {
        transient: true,
      });
    }
    const res = await this.#exec('pg_ctl', ['reload', '-D', this.pgData], { timeoutMs: 30_000 });
    if (res.code !== 0) {
      throw commandFailed('pg_ctl reload', res, 'check the server log', true);
    }
  }

  /**
   * `pg_ctl promote -w` (skipped when `standby.signal` is already gone), then polls
   * `pg_is_in_recovery()` every 200 ms until it is false, within `timeoutMs` overall.
   * @throws StolonError `PG_NOT_RUNNING` (transient) when stopped; `PG_COMMAND_FAILED`
   *   (transient) when pg_ctl fails or recovery does not end in time.
   * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
   */
  async promote(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    if (!(await this.isRunning())) {
      throw new StolonError('PG_NOT_RUNNING', `cannot promote: postgres is not running on ${this.pgData}`, {
        transient: true,
      });
    }
    if (await exists(join(this.pgData, 'standby.signal'))) {
      this.#log.info({ pgData: this.pgData }, 'promoting postgres');
      const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
      const res = await this.#exec('pg_ctl', ['promote', '-w', '-t', String(seconds), '-D', this.pgData], {
        timeoutMs: timeoutMs + 15_000,
      });
      if (res.code !== 0) {
        throw commandFailed('pg_ctl promote', res, 'check the server log', true);
      }
    }
    let last = 'no answer yet';
    for (;;) {
      try {
        const client = await this.#connect();
        try {
          const r = await client.query<{ in_recovery: boolean }>('select pg_is_in_recovery() as in_recovery');
          if (r.rows[0]?.in_recovery === false) {
            this.#log.info({ pgData: this.pgData }, 'postgres promoted');
            return;
          }
          last = 'still in recovery';
        } finally {
          await endQuietly(client);
        }
      } catch (err) {
        last = errorMessage(err);
      }
      if (Date.now() >= deadline) {
        throw new StolonError('PG_COMMAND_FAILED', `promotion not finished after ${timeoutMs} ms: ${last}`, {
          transient: true,
        });
      }
      await sleep(200);
    }
  }

  /**
   * `pg_basebackup -D <PGDATA>.basebackup -X stream -c fast --slot <slotName> -h -p -U -w` with
   * the password in a temporary PGPASSFILE and `PGAPPNAME` = `applicationName`; on success
   * replaces PGDATA by the backup and adds an empty `standby.signal` (so it can never start as
   * a primary), the keeper then writes the standby configuration with {@link writeConfig}.
   * On failure or abort the temporary directory is removed and PGDATA is left as it was.
   *
   * @throws StolonError `PG_COMMAND_FAILED` (transient) with pg_basebackup's stderr, e.g. when
   *   the slot does not exist yet; `ABORTED` when `signal` fired (the child is killed);
   *   `DATA_DIR_INVALID` when a postmaster is running on PGDATA.
   * @see https://www.postgresql.org/docs/current/app-pgbasebackup.html
   */
  async baseBackup(standby: StandbySettings, signal?: AbortSignal): Promise<void> {
    if (await this.isRunning()) {
      throw new StolonError('DATA_DIR_INVALID', `cannot replace ${this.pgData} by a base backup while postgres runs on it; stop it first`);
    }
    const tmp = `${this.pgData}.basebackup`;
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.mkdir(dirname(tmp), { recursive: true });
    await fs.mkdir(tmp, { mode: 0o700 });
    await this.#own(tmp);
    await this.#checkReachable(tmp);
    const { host, port, user, password } = standby.primary;
    this.#log.info(
      { pgData: this.pgData, host, port, slot: standby.slotName },
      `taking a base backup from ${host}:${port}`,
    );
    let ok = false;
    try {
      const res = await this.#withSecretFile(renderPgpassLine(user, password), (pgpass) =>
        this.#exec(
          'pg_basebackup',
          ['-D', tmp, '-X', 'stream', '-c', 'fast', '--slot', standby.slotName, '-h', host, '-p', String(port), '-U', user, '-w'],
          { env: { PGPASSFILE: pgpass, PGAPPNAME: standby.applicationName }, signal },
        ),
      );
      throwIfAborted(res, 'pg_basebackup');
      if (res.code !== 0) {
        throw commandFailed('pg_basebackup', res, 'the previous PGDATA is untouched; retry later', true);
      }
      await fs.writeFile(join(tmp, 'standby.signal'), '', { mode: 0o600 });
      await this.#own(join(tmp, 'standby.signal'));
      await fs.rm(this.pgData, { recursive: true, force: true });
      await fs.rename(tmp, this.pgData);
      await fsyncDir(dirname(this.pgData));
      ok = true;
      this.#log.info({ pgData: this.pgData }, 'base backup complete');
    } finally {
      if (!ok) {
        await fs.rm(tmp, { recursive: true, force: true });
      }
    }
  }

  /**
   * Removes PGDATA (and a leftover `<PGDATA>.basebackup`), nothing else.
   * @throws StolonError `DATA_DIR_INVALID` when a postmaster is running on it.
   */
  async removeData(): Promise<void> {
    if (await this.isRunning()) {
      throw new StolonError('DATA_DIR_INVALID', `refusing to remove ${this.pgData} while postgres runs on it; stop it first`);
    }
    this.#log.warn({ pgData: this.pgData }, 'removing the PostgreSQL data directory');
    await fs.rm(this.pgData, { recursive: true, force: true });
    await fs.rm(`${this.pgData}.basebackup`, { recursive: true, force: true });
  }

  /**
   * Probes the instance; never throws. When no connection can be made, `running` is false,
   * `role` comes from `standby.signal`, and `systemId`/`timelineId`/`xLogPos` come from
   * pg_controldata (latest checkpoint) when PGDATA is initialised.
   *
   * Connected: the timeline of a primary is the one of its current WAL file (a promotion is
   * visible at once, before the next checkpoint); of a standby `received_tli` from
   * pg_stat_wal_receiver, else the latest checkpoint's.
   *
   * @see https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-RECOVERY-INFO-TABLE
   * @see https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-CONTROL-CHECKPOINT
   */
  async observe(): Promise<PgObservation> {
    const empty: PgObservation = {
      initialized: false,
      running: false,
      role: undefined,
      systemId: '',
      timelineId: 0,
      xLogPos: 0,
      replication: [],
      slots: [],
      olderWalFile: '',
    };
    try {
      if (!(await exists(join(this.pgData, 'PG_VERSION')))) {
        return { ...empty, error: `${this.pgData} is not initialised` };
      }
      const fileRole = (await exists(join(this.pgData, 'standby.signal'))) ? 'standby' : 'master';
      const olderWalFile = await this.#oldestWalFile();
      const base: PgObservation = { ...empty, initialized: true, role: fileRole, olderWalFile };
      let client: Client;
      try {
        client = await this.#connect();
      } catch (err) {
        const control = await this.#controlData();
        const why = (await this.isRunning())
          ? `postgres is running but not accepting connections: ${errorMessage(err)}`
          : 'postgres is not running';
        return { ...base, ...control, error: why };
      }
      try {
        return { ...base, ...(await this.#query(client)), running: true };
      } catch (err) {
        return { ...base, running: true, error: `probe query failed: ${errorMessage(err)}` };
      } finally {
        await endQuietly(client);
      }
    } catch (err) {
      return { ...empty, error: `probe failed: ${errorMessage(err)}` };
    }
  }

  /**
   * Creates the physical slots in `wanted` that are missing (`pg_create_physical_replication_slot`)
   * and drops non-temporary physical `stolon_*` slots not in `wanted`; other slots are never
   * touched. A drop failure (e.g. the slot is still active) is logged at warn and retried by
   * the next call.
   * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made;
   *   `PG_COMMAND_FAILED` (transient) when a creation failed (after trying every slot).
   * @see https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION
   */
  async syncSlots(wanted: readonly string[]): Promise<void> {
    const client = await this.#connectOrThrow();
    try {
      const res = await client.query<{ slot_name: string }>(
        "select slot_name from pg_replication_slots where slot_type = 'physical' and not temporary",
      );
      const existing = new Set(res.rows.map((r) => r.slot_name));
      const want = new Set(wanted);
      const failures: string[] = [];
      for (const name of want) {
        if (existing.has(name)) {
          continue;
        }
        try {
          await client.query('select pg_create_physical_replication_slot($1)', [name]);
          this.#log.info({ slot: name }, `created replication slot ${name}`);
        } catch (err) {
          failures.push(`${name}: ${errorMessage(err)}`);
        }
      }
      for (const name of existing) {
        if (!name.startsWith('stolon_') || want.has(name)) {
          continue;
        }
        try {
          await client.query('select pg_drop_replication_slot($1)', [name]);
          this.#log.info({ slot: name }, `dropped replication slot ${name}`);
        } catch (err) {
          this.#log.warn({ slot: name, err: errorMessage(err) }, `could not drop replication slot ${name}; will retry`);
        }
      }
      if (failures.length > 0) {
        throw new StolonError('PG_COMMAND_FAILED', `creating replication slots failed: ${failures.join('; ')}`, {
          transient: true,
        });
      }
    } catch (err) {
      if (err instanceof StolonError) {
        throw err;
      }
      throw new StolonError('PG_COMMAND_FAILED', `syncing replication slots failed: ${errorMessage(err)}`, {
        cause: err,
        transient: true,
      });
    } finally {
      await endQuietly(client);
    }
  }

  /**
   * True when the first line of `postmaster.pid` names a live process (`kill(pid, 0)`); on Linux
   * a process that is a zombie or not a postgres binary (pid reuse after a crash) does not count.
   */
  async isRunning(): Promise<boolean> {
    let text: string;
    try {
      text = await fs.readFile(join(this.pgData, 'postmaster.pid'), 'utf8');
    } catch {
      return false;
    }
    const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
    if (!Number.isSafeInteger(pid) || pid <= 0) {
      return false;
    }
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') {
        return false;
      }
    }
    try {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const state = stat.slice(close + 2, close + 3);
      if (state === 'Z' || state === 'X' || !/postgres|postmaster/.test(comm)) {
        return false;
      }
    } catch {
      // No /proc (not Linux) or the process just exited: trust kill(0) above.
    }
    return true;
  }

  // ---------------------------------------------------------------- internals

  async #query(client: Client): Promise<Partial<PgObservation>> {
    const head = await client.query<{ in_recovery: boolean; system_id: string; checkpoint_tli: number }>(
      `select pg_is_in_recovery() as in_recovery,
              (select system_identifier::text from pg_control_system()) as system_id,
              (select timeline_id from pg_control_checkpoint()) as checkpoint_tli`,
    );
    const h = head.rows[0];
    if (h === undefined) {
      throw new Error('no row from the probe query');
    }
    let timelineId: number;
    let xLogPos: number;
    if (h.in_recovery) {
      const r = await client.query<{ received: string | null; replayed: string | null; received_tli: number | null }>(
        `select pg_last_wal_receive_lsn()::text as received, pg_last_wal_replay_lsn()::text as replayed,
                (select received_tli from pg_stat_wal_receiver) as received_tli`,
      );
      const row = r.rows[0];
      xLogPos = Math.max(
        row?.received === null || row?.received === undefined ? 0 : parseLsn(row.received),
        row?.replayed === null || row?.replayed === undefined ? 0 : parseLsn(row.replayed),
      );
      timelineId = row?.received_tli ?? h.checkpoint_tli;
    } else {
      const r = await client.query<{ lsn: string; walfile: string }>(
        'select pg_current_wal_lsn()::text as lsn, pg_walfile_name(pg_current_wal_lsn()) as walfile',
      );
      const row = r.rows[0];
      xLogPos = row === undefined ? 0 : parseLsn(row.lsn);
      // The WAL file name starts with the insert timeline: right after a promotion it is already
      // the new one, while pg_control_checkpoint() shows the old one until the next checkpoint.
      const tli = Number.parseInt(row?.walfile.slice(0, 8) ?? '', 16);
      timelineId = Number.isSafeInteger(tli) && tli > 0 ? tli : h.checkpoint_tli;
    }
    const repl = await client.query<{ application_name: string; sync_state: string }>(
      "select application_name, sync_state from pg_stat_replication where application_name <> '' order by application_name",
    );
    const slots = await client.query<{ slot_name: string }>(
      "select slot_name from pg_replication_slots where slot_type = 'physical' and not temporary order by slot_name",
    );
    return {
      role: h.in_recovery ? 'standby' : 'master',
      systemId: h.system_id,
      timelineId,
      xLogPos,
      replication: repl.rows.map((r) => ({ applicationName: r.application_name, syncState: r.sync_state })),
      slots: slots.rows.map((r) => r.slot_name),
    };
  }

  /** System id, checkpoint timeline and checkpoint LSN of a stopped instance; `{}` on any error. */
  async #controlData(): Promise<Partial<PgObservation>> {
    try {
      const res = await this.#exec('pg_controldata', ['-D', this.pgData], { env: { LC_ALL: 'C' }, timeoutMs: 10_000 });
      if (res.code !== 0) {
        return {};
      }
      const field = (label: string): string | undefined =>
        new RegExp(`^${label}:\\s*(\\S+)`, 'm').exec(res.stdout)?.[1];
      const out: { systemId?: string; timelineId?: number; xLogPos?: number } = {};
      const sys = field('Database system identifier');
      if (sys !== undefined) {
        out.systemId = sys;
      }
      const tli = Number(field("Latest checkpoint's TimeLineID"));
      if (Number.isSafeInteger(tli)) {
        out.timelineId = tli;
      }
      const lsn = field('Latest checkpoint location');
      if (lsn !== undefined) {
        out.xLogPos = parseLsn(lsn);
      }
      return out;
    } catch {
      return {};
    }
  }

  /** Lexicographically first 24-hex-digit file in pg_wal, "" when unknown. */
  async #oldestWalFile(): Promise<string> {
    try {
      const names = (await fs.readdir(join(this.pgData, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
      return names[0] ?? '';
    } catch {
      return '';
    }
  }

  /** A superuser connection over the Unix socket; the caller ends it. */
  async #connect(): Promise<Client> {
    const client = new Client({
      host: this.socketDir,
      port: this.#listen.port,
      user: this.#su.user,
      password: this.#su.password,
      database: 'postgres',
      application_name: 'stolon-ts-keeper',
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      query_timeout: STATEMENT_TIMEOUT_MS + 1000,
    });
    // Without a listener, a server-side disconnect would be an uncaught 'error' event.
    client.on('error', (err) => {
      this.#log.debug({ err: errorMessage(err) }, 'postgres connection error');
    });
    try {
      await client.connect();
    } catch (err) {
      await endQuietly(client);
      throw err;
    }
    return client;
  }

  async #connectOrThrow(): Promise<Client> {
    try {
      return await this.#connect();
    } catch (err) {
      throw new StolonError(
        'PG_NOT_RUNNING',
        `cannot connect to postgres on ${this.socketDir} port ${this.#listen.port}: ${errorMessage(err)}`,
        { cause: err, transient: true },
      );
    }
  }

  async #requireInitialized(what: string): Promise<void> {
    if (!(await exists(join(this.pgData, 'PG_VERSION')))) {
      throw new StolonError(
        'DATA_DIR_INVALID',
        `cannot ${what}: ${this.pgData} is not an initialised data directory (no PG_VERSION); run init or baseBackup first`,
      );
    }
  }

  /** uid/gid to run binaries as and own files with; null when not root. */
  #identityOf(): Promise<Identity | null> {
    if (this.#identity === undefined) {
      this.#identity = resolveIdentity(this.#osUser);
      // A failed lookup is retried next time (the user may be created meanwhile).
      this.#identity.catch(() => {
        this.#identity = undefined;
      });
    }
    return this.#identity;
  }

  async #own(path: string): Promise<void> {
    const id = await this.#identityOf();
    if (id !== null) {
      await fs.chown(path, id.uid, id.gid);
    }
  }

  /**
   * When root, checks that the OS user can traverse every ancestor of `path`; postgres
   * otherwise fails with a bare "permission denied" far from the cause.
   */
  async #checkReachable(path: string): Promise<void> {
    const id = await this.#identityOf();
    if (id === null) {
      return;
    }
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      const st = await fs.stat(dir);
      const bit = st.uid === id.uid ? 0o100 : st.gid === id.gid ? 0o010 : 0o001;
      if ((st.mode & bit) === 0) {
        throw new StolonError(
          'DATA_DIR_INVALID',
          `the OS user ${this.#osUser} cannot reach ${path}: ${dir} is not traversable for it; chmod o+x ${dir} or choose another directory`,
        );
      }
      if (dir === dirname(dir)) {
        return;
      }
    }
  }

  async #ensureSocketDir(): Promise<void> {
    await fs.mkdir(this.socketDir, { recursive: true, mode: 0o755 });
    const st = await fs.lstat(this.socketDir);
    const id = await this.#identityOf();
    const me = process.getuid?.() ?? -1;
    if (!st.isDirectory() || (st.uid !== me && st.uid !== id?.uid)) {
      throw new StolonError(
        'DATA_DIR_INVALID',
        `socket directory ${this.socketDir} is not a directory owned by this user or ${this.#osUser}; remove it or pass socketDir`,
      );
    }
    await this.#own(this.socketDir);
  }

  /** Writes `path` atomically: temp file in the same directory, fsync, chown, rename; mode 0600. */
  async #writeAtomic(path: string, content: string): Promise<void> {
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await this.#own(tmp);
      await fs.rename(tmp, path);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Runs `fn` with a file holding `content` (mode 0600, owned by the OS user) in a fresh 0700
   * directory under os.tmpdir(); removes both afterwards, whatever happens.
   */
  async #withSecretFile<T>(content: string, fn: (path: string) => Promise<T>): Promise<T> {
    const dir = await fs.mkdtemp(join(tmpdir(), 'stolon-pg-'));
    try {
      await this.#own(dir);
      const file = join(dir, 'secret');
      await fs.writeFile(file, content, { mode: 0o600, flag: 'wx' });
      await this.#own(file);
      return await fn(file);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async #logTail(): Promise<string> {
    try {
      const fh = await fs.open(this.logFile, 'r');
      try {
        const { size } = await fh.stat();
        const len = Math.min(size, 8192);
        const buf = Buffer.alloc(len);
        await fh.read(buf, 0, len, size - len);
        return lastLines(buf.toString('utf8'), 20);
      } finally {
        await fh.close();
      }
    } catch (err) {
      return `(cannot read it: ${errorMessage(err)})`;
    }
  }

  /**
   * Spawns `<binPath>/<bin>` as the OS user (when root), with cwd `/`, no inherited `PG*`
   * variables, stdout/stderr captured (tails of up to 64 KiB). Argv must never hold a secret.
   */
  async #exec(bin: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const id = await this.#identityOf();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      // PGDATA, PGPORT, PGPASSWORD… of the caller must not change what the binaries do.
      if (v !== undefined && !k.startsWith('PG')) {
        env[k] = v;
      }
    }
    Object.assign(env, opts.env);
    const file = join(this.#binPath, bin);
    this.#log.debug({ cmd: file, args }, `running ${bin}`);
    if (opts.signal?.aborted === true) {
      return { code: null, signal: null, stdout: '', stderr: '', aborted: true };
    }
    return new Promise<ExecResult>((resolvePromise, rejectPromise) => {
      const child = spawn(file, args, {
        cwd: '/',
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: opts.detached ?? false,
        ...(id === null ? {} : { uid: id.uid, gid: id.gid }),
      });
      let stdout = '';
      let stderr = '';
      let aborted = false;
      let killTimer: NodeJS.Timeout | undefined;
      const kill = (): void => {
        child.kill('SIGTERM');
        killTimer ??= setTimeout(() => child.kill('SIGKILL'), 5000);
      };
      const onAbort = (): void => {
        aborted = true;
        kill();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              stderr += `\n(killed after ${opts.timeoutMs} ms)`;
              kill();
            }, opts.timeoutMs);
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout = (stdout + d).slice(-OUTPUT_LIMIT);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-OUTPUT_LIMIT);
      });
      const cleanup = (): void => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      child.on('error', (err) => {
        cleanup();
        rejectPromise(
          new StolonError('PG_COMMAND_FAILED', `cannot run ${file}: ${err.message}; check binPath and osUser`, {
            cause: err,
          }),
        );
      });
      child.on('close', (code, signal) => {
        cleanup();
        resolvePromise({ code, signal, stdout, stderr, aborted });
      });
    });
  }
}

// ------------------------------------------------------------------ helpers

function defaultSocketDir(pgData: string): string {
  const preferred = join(dirname(pgData), 'run');
  // sun_path holds 108 bytes; PostgreSQL appends "/.s.PGSQL.<port>.lock" (≤ 21 bytes).
  if (Buffer.byteLength(preferred) + 21 < 100) {
    return preferred;
  }
  const hash = createHash('sha256').update(pgData).digest('hex').slice(0, 12);
  return join(tmpdir(), `stolon-pg-${hash}`);
}

async function resolveIdentity(user: string): Promise<Identity | null> {
  if (process.getuid?.() !== 0) {
    return null;
  }
  const id = async (flag: string): Promise<number> => {
    const out = await new Promise<string>((res, rej) => {
      const child = spawn('id', [flag, user], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        text += d;
      });
      child.on('error', rej);
      child.on('close', (code) => (code === 0 ? res(text) : rej(new Error(`id ${flag} ${user} exited with ${code}`))));
    });
    const n = Number.parseInt(out.trim(), 10);
    if (!Number.isSafeInteger(n)) {
      throw new Error(`id ${flag} ${user} printed ${JSON.stringify(out)}`);
    }
    return n;
  };
  try {
    const uid = await id('-u');
    const gid = await id('-g');
    if (uid === 0) {
      throw new Error(`${user} is root`);
    }
    return { uid, gid };
  } catch (err) {
    throw new StolonError(
      'CONFIG_INVALID',
      `running as root, PostgreSQL must run as an unprivileged OS user, but ${JSON.stringify(user)} is unusable (${errorMessage(err)}); create it or pass osUser`,
      { field: 'osUser', cause: err },
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function endQuietly(client: Client): Promise<void> {
  try {
    await client.end();
  } catch {
    // Already closed or never connected: nothing to release.
  }
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

function exitText(res: ExecResult): string {
  return res.signal !== null ? `killed by ${res.signal}` : `exit ${res.code}`;
}

function commandFailed(what: string, res: ExecResult, hint: string, transient = false): StolonError {
  return new StolonError(
    'PG_COMMAND_FAILED',
    `${what} failed (${exitText(res)}): ${lastLines(res.stderr || res.stdout, 10) || 'no output'}; ${hint}`,
    { transient },
  );
}

function throwIfAborted(res: ExecResult, what: string): void {
  if (res.aborted) {
    throw new StolonError('ABORTED', `${what} aborted`);
  }
}
