/**
 * A data directory's beginning and end: initdb into an empty PGDATA (SCRAM authentication, the
 * superuser password from a temporary file), the replication role created on a temporary
 * socket-only instance, and removeData. The manager as a whole: pg-manager.ts.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { pgLib } from './pg-lib.js';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { PgContext } from './pg-context.js';
import { commandFailed, throwIfAborted } from './pg-exec.js';
import { removeTree } from './pg-remove.js';
import { readIfExists } from './pgdata.js';
import { endQuietly, unloggedTransaction } from './pg-socket.js';
import { isRunning } from './postmaster-pid.js';
import { startPostmaster, stopPostmaster } from './postmaster.js';
import { scramSha256Verifier } from './scram.js';

/** A role and its password (never logged, never in argv). */
interface Role {
  readonly user: string;
  readonly password: string;
}

/** How long init waits for the temporary instance to start, in ms. */
const INIT_START_TIMEOUT_MS = 60_000;

/**
 * initdb (scram-sha-256 for local and host connections, superuser password from a temporary
 * `--pwfile`), then starts the instance on its Unix socket only, creates the replication role
 * with a SCRAM verifier (the cleartext password never reaches the server), and stops it.
 * PGDATA is removed again on any failure so the call can be retried.
 *
 * @param roles the superuser initdb creates and the replication role created afterwards (may be
 *   the same user); passwords are never logged nor put in argv.
 * @throws StolonError `DATA_DIR_INVALID` when PGDATA exists and is not empty or the OS user
 *   cannot reach it; `PG_COMMAND_FAILED` with initdb's stderr or the server log tail;
 *   `ABORTED` when `signal` fired; `CONFIG_INVALID` for a password with a newline.
 * @see https://www.postgresql.org/docs/current/app-initdb.html
 */
export async function initDataDir(
  ctx: PgContext,
  roles: { readonly su: Role; readonly repl: Role },
  opts: {
    locale?: string;
    encoding?: string;
    dataChecksums?: boolean;
    signal?: AbortSignal;
  },
): Promise<void> {
  if (await isRunning(ctx.pgData)) {
    throw new StolonError('DATA_DIR_INVALID', `cannot init ${ctx.pgData}: a postmaster is running on it; stop it first`);
  }
  const entries = await fs.readdir(ctx.pgData).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      return [];
    }
    throw new StolonError('DATA_DIR_INVALID', `cannot read ${ctx.pgData}: ${err.message}`, { cause: err });
  });
  if (entries.length > 0) {
    throw new StolonError(
      'DATA_DIR_INVALID',
      `cannot init ${ctx.pgData}: the directory is not empty; remove it first (removeData)`,
    );
  }
  if (/[\r\n]/.test(roles.su.password)) {
    throw new StolonError('CONFIG_INVALID', 'the superuser password contains a newline, which initdb cannot read');
  }
  await fs.mkdir(ctx.pgData, { recursive: true, mode: 0o700 });
  await ctx.exec.own(ctx.pgData);
  await ctx.exec.checkReachable(ctx.pgData);
  ctx.log.info({ pgData: ctx.pgData }, 'initialising a new PostgreSQL data directory (initdb)');
  try {
    const args = [
      '-D',
      ctx.pgData,
      '-U',
      roles.su.user,
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
    const res = await ctx.exec.withSecretFile(`${roles.su.password}\n`, (pwfile) =>
      ctx.exec.run('initdb', [...args, `--pwfile=${pwfile}`], { signal: opts.signal, supervised: true }),
    );
    throwIfAborted(res, 'initdb');
    if (res.code !== 0) {
      throw commandFailed('initdb', res, 'PGDATA was removed; the next attempt starts from scratch');
    }

    // Temporary settings for role creation: appended, so they win over initdb's defaults;
    // the keeper's writeConfig replaces the whole file afterwards.
    const confPath = join(ctx.pgData, 'postgresql.conf');
    const initdbConf = await readIfExists(confPath);
    if (initdbConf === null) {
      throw new StolonError('PG_COMMAND_FAILED', `initdb left no postgresql.conf of its own in ${ctx.pgData}; PGDATA was removed, the next attempt starts from scratch`);
    }
    await ctx.exec.writeAtomic(
      confPath,
      `${initdbConf}\n# stolon-ts: temporary settings while creating roles\n` +
        `listen_addresses = ''\nport = ${ctx.listen.port}\n` +
        `unix_socket_directories = '${ctx.socket.dir.replace(/\\/g, '\\\\').replace(/'/g, "''")}'\n` +
        // PostgreSQL 13 still defaults to md5; the hba rules require SCRAM verifiers.
        `password_encryption = 'scram-sha-256'\n` +
        // pg_rewind needs hint-bit changes WAL-logged from the very start (see
        // renderPostgresqlConf); nothing can diverge here, but it costs nothing either.
        `wal_log_hints = on\n`,
    );
    if (opts.signal?.aborted === true) {
      throw new StolonError('ABORTED', 'init aborted');
    }
    // Not a last-good configuration: it listens on no TCP address.
    await startPostmaster(ctx, INIT_START_TIMEOUT_MS, false);
    const client = await ctx.socket.connectOrThrow();
    try {
      // The password verifier stays out of the server log whatever the logging settings are.
      await unloggedTransaction(client, [
        roles.repl.user === roles.su.user
          ? `ALTER ROLE ${pgLib().escapeIdentifier(roles.su.user)} WITH LOGIN REPLICATION`
          : `CREATE ROLE ${pgLib().escapeIdentifier(roles.repl.user)} WITH LOGIN REPLICATION PASSWORD ${pgLib().escapeLiteral(scramSha256Verifier(roles.repl.password))}`,
      ]);
    } catch (err) {
      throw new StolonError('PG_COMMAND_FAILED', `creating the replication role failed: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      await endQuietly(client);
    }
    await stopPostmaster(ctx, 'fast');
    ctx.log.info({ pgData: ctx.pgData }, 'PostgreSQL data directory initialised');
  } catch (err) {
    await stopPostmaster(ctx, 'immediate').catch(() => undefined);
    await removeTree(ctx.exec, ctx.pgData);
    throw err;
  }
}

/**
 * Removes PGDATA (and a leftover `<PGDATA>.basebackup`), nothing else.
 * @throws StolonError `DATA_DIR_INVALID` when a postmaster is running on it.
 */
export async function removeDataDir(ctx: PgContext): Promise<void> {
  if (await isRunning(ctx.pgData)) {
    throw new StolonError('DATA_DIR_INVALID', `refusing to remove ${ctx.pgData} while postgres runs on it; stop it first`);
  }
  ctx.log.warn({ pgData: ctx.pgData }, 'removing the PostgreSQL data directory');
  await removeTree(ctx.exec, ctx.pgData);
  await removeTree(ctx.exec, `${ctx.pgData}.basebackup`);
}
