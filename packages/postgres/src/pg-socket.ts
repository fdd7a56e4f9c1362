/**
 * The instance's Unix-domain socket: where its directory is, that directory's ownership, and the
 * superuser connections (`pg` driver) every SQL probe and command of the manager goes through.
 * The manager never connects over TCP to its own instance. The manager as a whole: pg-manager.ts.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Client } from 'pg';
import { pgLib } from './pg-lib.js';
import type { Logger } from 'pino';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { PgExec } from './pg-exec.js';

/** Connection and statement timeouts of the probe connection, in ms. */
export const CONNECT_TIMEOUT_MS = 2000;
const STATEMENT_TIMEOUT_MS = 5000;

/** The socket directory and superuser connections of one instance. */
export class PgSocket {
  /** Unix socket directory (`unix_socket_directories`). */
  readonly dir: string;
  readonly #listen: { readonly port: number };
  readonly #su: { readonly user: string; readonly password: string };
  readonly #exec: PgExec;
  readonly #log: Logger;

  /**
   * @param opts.listen the port last written to postgresql.conf, read at every connection (it
   *   names the socket `.s.PGSQL.<port>`); the caller updates it in place.
   * @param opts.su the superuser role every connection uses; the password, read at every
   *   connection (the caller replaces it in place), is never logged.
   */
  constructor(opts: {
    readonly dir: string;
    readonly listen: { readonly port: number };
    readonly su: { readonly user: string; readonly password: string };
    readonly exec: PgExec;
    readonly log: Logger;
  }) {
    this.dir = opts.dir;
    this.#listen = opts.listen;
    this.#su = opts.su;
    this.#exec = opts.exec;
    this.#log = opts.log;
  }

  /**
   * Creates the socket directory (0755) when missing and chowns it to the OS user.
   * @throws StolonError `DATA_DIR_INVALID` when it is not a directory owned by this user or the
   *   OS user.
   */
  async ensureDir(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
    const st = await fs.lstat(this.dir);
    const id = await this.#exec.identity();
    const me = process.getuid?.() ?? -1;
    if (!st.isDirectory() || (st.uid !== me && st.uid !== id?.uid)) {
      throw new StolonError(
        'DATA_DIR_INVALID',
        `socket directory ${this.dir} is not a directory owned by this user or ${this.#exec.osUser}; remove it or pass socketDir`,
      );
    }
    await this.#exec.own(this.dir);
  }

  /**
   * A superuser connection over the Unix socket (database `postgres`, application_name
   * `stolon-ts-keeper`, 2 s to connect, 5 s statement timeout); the caller ends it. The keeper's
   * pg_hba.conf authenticates it by peer (`renderHbaLines`, `renderIdentConf` in config.ts), so
   * no password is asked; the current superuser password is sent only when the server asks for
   * one (initdb's temporary instance, a pg_hba.conf written by an earlier version).
   * @throws the driver's error when no connection can be made.
   */
  async connect(): Promise<Client> {
    const client = new (pgLib().Client)({
      host: this.dir,
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

  /** The kept probe connection ({@link probe}), while it is open. */
  #probe: Client | undefined;

  /**
   * The probe connection the keeper observes PostgreSQL with every pass: kept open between calls
   * (a new backend every pass costs a fork, a login and a catalog cache per second per node) and
   * opened again ({@link connect}) once it was dropped or the server closed it (a restart, a
   * fence, `pg_terminate_backend`). The caller must not end it: on a failed query it calls
   * {@link dropProbe}.
   * @returns the client, and whether it was opened before this call (a reused connection may have
   *   been closed by the server since: the caller retries once on a fresh one)
   * @throws the driver's error when no connection can be made.
   */
  async probe(): Promise<{ readonly client: Client; readonly reused: boolean }> {
    const kept = this.#probe;
    if (kept !== undefined) {
      return { client: kept, reused: true };
    }
    const client = await this.connect();
    const forget = (): void => {
      if (this.#probe === client) {
        this.#forgetProbe();
      }
    };
    client.once('end', forget);
    client.on('error', forget);
    this.#probe = client;
    return { client, reused: false };
  }

  /** Ends `client` if it is the kept probe connection (after a failed query), so the next {@link probe} opens a new one. */
  async dropProbe(client?: Client): Promise<void> {
    const kept = this.#probe;
    if (kept === undefined || (client !== undefined && client !== kept)) {
      return;
    }
    this.#forgetProbe();
    await endQuietly(kept);
  }

  /** Listeners of {@link onProbeClosed}. */
  readonly #probeClosedListeners = new Set<() => void>();

  /** Forgets the kept probe connection and tells the {@link onProbeClosed} listeners (errors ignored). */
  #forgetProbe(): void {
    this.#probe = undefined;
    for (const listener of this.#probeClosedListeners) {
      try {
        listener();
      } catch {
        // A listener's failure is its own; the others still hear of the close.
      }
    }
  }

  /** True while the kept probe connection ({@link probe}) is open. */
  probeOpen(): boolean {
    return this.#probe !== undefined;
  }

  /**
   * Calls `listener` (synchronously) whenever the kept probe connection goes away: the server
   * closed it or it failed (a postmaster that dies ends every backend's connection at once: an
   * idle backend waits on the postmaster-death pipe too), or {@link dropProbe} dropped it.
   * @returns a function that removes the listener
   * @see https://www.postgresql.org/docs/current/server-shutdown.html
   */
  onProbeClosed(listener: () => void): () => void {
    this.#probeClosedListeners.add(listener);
    return () => {
      this.#probeClosedListeners.delete(listener);
    };
  }

  /**
   * {@link connect}, with the failure as a StolonError.
   * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made.
   */
  async connectOrThrow(): Promise<Client> {
    try {
      return await this.connect();
    } catch (err) {
      throw new StolonError(
        'PG_NOT_RUNNING',
        `cannot connect to postgres on ${this.dir} port ${this.#listen.port}: ${errorMessage(err)}`,
        { cause: err, transient: true },
      );
    }
  }
}

/**
 * The socket directory when none is given: `<PGDATA parent>/run`, or a per-PGDATA directory
 * under `os.tmpdir()` when that path would make the socket path longer than a socket address
 * can hold.
 */
export function defaultSocketDir(pgData: string): string {
  const preferred = join(dirname(pgData), 'run');
  // sun_path holds 108 bytes; PostgreSQL appends "/.s.PGSQL.<port>.lock" (≤ 21 bytes).
  if (Buffer.byteLength(preferred) + 21 < 100) {
    return preferred;
  }
  const hash = createHash('sha256').update(pgData).digest('hex').slice(0, 12);
  return join(tmpdir(), `stolon-pg-${hash}`);
}

/**
 * Runs `statements` in one transaction with `log_statement`, `log_min_duration_statement` and
 * `log_min_error_statement` turned off for it, so that a statement carrying a secret (a password
 * verifier) never reaches the server log, whatever the logging settings.
 * @throws the driver's error of the statement that failed (the caller ends the client, which rolls
 *   the transaction back)
 * @see https://www.postgresql.org/docs/current/runtime-config-logging.html
 */
export async function unloggedTransaction(client: Client, statements: readonly string[]): Promise<void> {
  await client.query('BEGIN');
  await client.query("SET LOCAL log_statement = 'none'");
  await client.query('SET LOCAL log_min_duration_statement = -1');
  await client.query('SET LOCAL log_min_error_statement = panic');
  for (const statement of statements) {
    await client.query(statement);
  }
  await client.query('COMMIT');
}

/** Ends a `pg` client, ignoring errors (already closed, never connected). */
export async function endQuietly(client: Client): Promise<void> {
  try {
    await client.end();
  } catch {
    // Already closed or never connected: nothing to release.
  }
}
