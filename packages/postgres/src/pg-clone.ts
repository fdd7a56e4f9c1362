/**
 * Making PGDATA a copy of another instance: a base backup of the primary (pg_basebackup, with its
 * progress), or a restore by the user's dataRestoreCommand followed by archive recovery
 * (waitRecoveryDone). pg_rewind, which repairs PGDATA instead of replacing it: pg-rewind.ts. The
 * manager as a whole: pg-manager.ts.
 */
import { existsSync, promises as fs } from 'node:fs';
import { release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import { clientSslParams, expandDataRestoreCommand, parseBaseBackupProgress, renderPgpassLine, syncfsUsable, type PeerSsl } from './config.js';
import type { BaseBackupOptions, DataRestoreProgram, StandbySettings } from './manager.js';
import type { PgContext } from './pg-context.js';
import { commandFailed, throwIfAborted } from './pg-exec.js';
import { removeTree } from './pg-remove.js';
import { stillInRecovery } from './pg-probe.js';
import { exists, fsyncDir, removeNodeLeftovers } from './pgdata.js';
import { isRunning } from './postmaster-pid.js';
import { serverLogTail } from './postmaster.js';

/** pg_basebackup progress callbacks are throttled to one per this many ms. */
const PROGRESS_INTERVAL_MS = 1000;

/** coreutils' `sync`: `sync -f <path>…` calls syncfs(2) on the filesystem of each path (coreutils ≥ 8.24). */
const SYNC = ['/usr/bin/sync', '/bin/sync'].find((f) => existsSync(f));

/**
 * Whether a base backup is taken with `pg_basebackup --no-sync` and made durable by one syncfs(2)
 * per filesystem ({@link syncCopy}) instead of pg_basebackup's fsync of every file: Linux ≥ 5.8
 * (see `syncfsUsable`: before 5.8 syncfs() does not report writeback errors) with `sync` found.
 */
const SYNCFS_COPY = SYNC !== undefined && syncfsUsable(process.platform, release());

/**
 * `pg_basebackup -D <PGDATA>.basebackup -X stream -c fast --slot <slotName> --progress --verbose
 * -h -p -U -w` (with `opts.createSlot`, after creating the slot when missing) with the password
 * in a temporary PGPASSFILE, `PGAPPNAME` = `stolon-ts-clone-<applicationName>` and `PGSSLMODE`
 * (`prefer`, or the manager's `peerSsl` mode with `PGSSLROOTCERT`); on success replaces PGDATA by the backup (without the source's `last-good` files, nor the
 * replication password file an earlier version kept in PGDATA) and adds
 * an empty `standby.signal` (so it can never start as a primary); the keeper then writes the
 * standby configuration with writeConfig (pg-conf-files.ts). On failure or abort the temporary
 * directory is removed and PGDATA is left as it was.
 *
 * Durability: by default pg_basebackup fsyncs every file of the copy before it exits. Where
 * syncfs(2) reports writeback errors (Linux ≥ 5.8, {@link SYNCFS_COPY}) it runs with `--no-sync`
 * instead, which "causes pg_basebackup to return without waiting [for all files to be written
 * safely to disk] … a subsequent operating system crash can leave the base backup corrupt"
 * (PostgreSQL docs, pg_basebackup); so the copy then counts as taken only once `sync -f` (one
 * syncfs() per filesystem: the copy's and each tablespace's) has returned 0, and only then is it
 * renamed into place as PGDATA, the step after which the keeper treats the clone as done and
 * may start PostgreSQL from it. A failed sync fails the copy like a failed pg_basebackup.
 * This is PostgreSQL's own `recovery_init_sync_method = syncfs` rule, applied to the copy, with
 * its one caveat: a writeback error that another process's syncfs() of the same filesystem
 * collected first is not reported again.
 *
 * @param opts.onProgress receives `N/M kB` progress lines as bytes, at most once per second.
 * @throws StolonError `PG_COMMAND_FAILED` (transient) with pg_basebackup's stderr, e.g. when
 *   the slot does not exist yet; `ABORTED` when `opts.signal` fired (the child is killed);
 *   `DATA_DIR_INVALID` when a postmaster is running on PGDATA.
 * @see https://www.postgresql.org/docs/current/app-pgbasebackup.html
 */
export async function baseBackup(ctx: PgContext, standby: StandbySettings, opts: BaseBackupOptions = {}): Promise<void> {
  if (await isRunning(ctx.pgData)) {
    throw new StolonError('DATA_DIR_INVALID', `cannot replace ${ctx.pgData} by a base backup while postgres runs on it; stop it first`);
  }
  const tmp = `${ctx.pgData}.basebackup`;
  await removeTree(ctx.exec, tmp);
  await fs.mkdir(dirname(tmp), { recursive: true });
  await fs.mkdir(tmp, { mode: 0o700 });
  await ctx.exec.own(tmp);
  await ctx.exec.checkReachable(tmp);
  const { host, port, user, password } = standby.primary;
  ctx.log.info(
    { pgData: ctx.pgData, host, port, slot: standby.slotName, ...(opts.createSlot === true ? { createSlot: true } : {}) },
    `taking a base backup from ${host}:${port}`,
  );
  const progress = opts.onProgress === undefined ? undefined : progressReporter(ctx, opts.onProgress);
  let ok = false;
  try {
    const res = await ctx.exec.withSecretFile(renderPgpassLine(user, password), async (pgpass) => {
      const env = { PGPASSFILE: pgpass, PGAPPNAME: `stolon-ts-clone-${standby.applicationName}`, ...sslEnv(ctx.peerSsl) };
      const conn = ['-h', host, '-p', String(port), '-U', user, '-w'];
      // pg_basebackup's supervisor starts while the slot is being created, and runs it once the
      // slot exists (pg-exec.ts, startAfter).
      const slotReady = opts.createSlot === true ? createSlotIfMissing(ctx, standby.slotName, conn, env, opts.signal) : undefined;
      slotReady?.catch(() => undefined);
      return ctx.exec.run(
        'pg_basebackup',
        ['-D', tmp, '-X', 'stream', '-c', 'fast', '--slot', standby.slotName, '--progress', '--verbose', ...(SYNCFS_COPY ? ['--no-sync'] : []), ...conn],
        {
          // Not the standby's own name: under synchronous replication the copy's WAL stream would
          // otherwise count as the synchronous standby and acknowledge commits it never keeps.
          env,
          signal: opts.signal,
          supervised: true,
          ...(slotReady === undefined ? {} : { startAfter: slotReady }),
          ...(progress === undefined ? {} : { onStderr: progress }),
        },
      );
    });
    throwIfAborted(res, 'pg_basebackup');
    if (res.code !== 0) {
      throw commandFailed('pg_basebackup', res, 'the previous PGDATA is untouched; retry later', true);
    }
    // The source's last good configuration is not this node's (other port, other role).
    await removeNodeLeftovers(tmp);
    // The OS user owns `tmp`: a new file, never written or chowned through a link.
    await ctx.exec.writeAtomic(join(tmp, 'standby.signal'), '');
    const syncStart = performance.now();
    if (SYNCFS_COPY) {
      // Before the rename below: PGDATA must never be a copy that is not on disk yet.
      await syncCopy(ctx, tmp, opts.signal);
    }
    const syncMs = Math.round(performance.now() - syncStart);
    await removeTree(ctx.exec, ctx.pgData);
    await fs.rename(tmp, ctx.pgData);
    await fsyncDir(dirname(ctx.pgData));
    ok = true;
    ctx.log.info({ pgData: ctx.pgData, ...(SYNCFS_COPY ? { syncfsMs: syncMs } : {}) }, 'base backup complete');
  } finally {
    if (!ok) {
      await removeTree(ctx.exec, tmp);
    }
  }
}

/**
 * `sync -f` on the copy at `dir` and the target of every tablespace link in `dir/pg_tblspc`
 * (possibly on other filesystems): syncfs(2) of each filesystem, which on Linux ≥ 5.8 waits for
 * the writeback of every dirty page and reports a writeback error as a failure.
 * @throws StolonError `PG_COMMAND_FAILED` (transient) when sync exits non-zero; `ABORTED` when
 *   `signal` fired
 * @see https://www.postgresql.org/docs/current/app-pgbasebackup.html (--no-sync)
 * @see https://man7.org/linux/man-pages/man2/syncfs.2.html
 */
async function syncCopy(ctx: PgContext, dir: string, signal: AbortSignal | undefined): Promise<void> {
  const targets = [dir];
  const tblspc = join(dir, 'pg_tblspc');
  for (const name of await fs.readdir(tblspc).catch(() => [] as string[])) {
    targets.push(resolve(tblspc, await fs.readlink(join(tblspc, name))));
  }
  const res = await ctx.exec.run(SYNC ?? 'sync', ['-f', ...targets], { signal });
  throwIfAborted(res, 'sync -f');
  if (res.code !== 0) {
    throw commandFailed(`sync -f ${targets.join(' ')} (syncfs of the base backup taken with --no-sync)`, res, 'the previous PGDATA is untouched; retry later', true);
  }
}

/**
 * Creates the physical replication slot `slot` on the server `conn` points at unless it exists
 * (`pg_receivewal --create-slot --if-not-exists`, which creates it and exits), as the primary's
 * keeper would (`pg_create_physical_replication_slot`, no WAL reserved until pg_basebackup's WAL
 * stream uses it). Both tolerate the other having created it first.
 * @throws StolonError `PG_COMMAND_FAILED` (transient) on a non-zero exit; `ABORTED` when `signal` fired
 * @see https://www.postgresql.org/docs/current/app-pgreceivewal.html
 */
async function createSlotIfMissing(ctx: PgContext, slot: string, conn: string[], env: Record<string, string>, signal: AbortSignal | undefined): Promise<void> {
  const res = await ctx.exec.run('pg_receivewal', ['--create-slot', '--if-not-exists', '--slot', slot, ...conn], { env, signal, timeoutMs: 60_000 });
  throwIfAborted(res, 'pg_receivewal --create-slot');
  if (res.code !== 0) {
    throw commandFailed(`pg_receivewal --create-slot --slot ${slot}`, res, 'the previous PGDATA is untouched; retry later', true);
  }
  ctx.log.info({ slot }, `replication slot ${slot} is on the primary (created now unless it was there already)`);
}

/** {@link clientSslParams} as libpq environment variables (`PGSSLMODE`, `PGSSLROOTCERT`). */
function sslEnv(peer: PeerSsl | undefined): Record<string, string> {
  const p = clientSslParams(peer);
  return { PGSSLMODE: p['sslmode'] ?? 'prefer', ...(p['sslrootcert'] !== undefined ? { PGSSLROOTCERT: p['sslrootcert'] } : {}) };
}

/** Wraps a progress callback: parses pg_basebackup's stderr lines, one call per second at most. */
function progressReporter(ctx: PgContext, onProgress: NonNullable<BaseBackupOptions['onProgress']>): (chunk: string) => void {
  let partial = '';
  let lastCall = Number.NEGATIVE_INFINITY;
  return (chunk) => {
    const parts = (partial + chunk).split(/[\r\n]/);
    partial = parts.pop() ?? '';
    for (const line of parts) {
      const p = parseBaseBackupProgress(line);
      const now = performance.now();
      if (p === undefined || now - lastCall < PROGRESS_INTERVAL_MS) {
        continue;
      }
      lastCall = now;
      try {
        onProgress(p);
      } catch (err) {
        ctx.log.debug({ err: errorMessage(err) }, 'base backup progress callback threw; ignored');
      }
    }
  };
}

/**
 * Point-in-time recovery, step 1: removes PGDATA (and a leftover `<PGDATA>.basebackup`),
 * recreates it empty (0700, owned by the OS user), and runs `/bin/sh -c <command>` as the OS
 * user, cwd `/`, with `%d` → PGDATA and `%%` → `%` ({@link expandDataRestoreCommand}) and the
 * minimal environment of every child (`childEnv` in pg-exec.ts: PATH with the PostgreSQL
 * binaries first, HOME of the OS user, LANG/LANGUAGE/LC_*, TZ, TMPDIR) plus PGDATA. The command
 * is visible in the process list, as in Stolon: keep secrets in files it reads, not in its text.
 * With a {@link DataRestoreProgram} instead of a command (the keeper's `pgbackrest restore`), that
 * program runs with its arguments as given, found in the same PATH, no shell parsing them.
 *
 * Afterwards PGDATA is set to 0700 (a copy may carry the backup directory's mode, which
 * PostgreSQL refuses), and `postmaster.pid`, `postmaster.opts`, the `last-good` files and the
 * replication password file an earlier version kept in PGDATA are removed (they describe
 * another instance).
 *
 * @throws StolonError `PG_COMMAND_FAILED` (transient; PGDATA removed) when the command fails
 *   (with its stderr tail) or leaves no PG_VERSION; `CONFIG_INVALID` when `%d` cannot be
 *   substituted safely; `DATA_DIR_INVALID` when postgres runs on PGDATA; `ABORTED`.
 * @see https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-PITR-RECOVERY
 */
export async function restoreData(ctx: PgContext, source: string | DataRestoreProgram, signal?: AbortSignal): Promise<void> {
  if (await isRunning(ctx.pgData)) {
    throw new StolonError('DATA_DIR_INVALID', `refusing to replace ${ctx.pgData} while postgres runs on it; stop it first`);
  }
  const what = typeof source === 'string' ? 'the dataRestoreCommand' : source.what;
  // `exec "$0" "$@"`: the program is found in the child's PATH as the shell finds archive and
  // restore commands, and its arguments reach it untouched.
  const argv = typeof source === 'string' ? ['-c', expandDataRestoreCommand(source, ctx.pgData)] : ['-c', 'exec "$0" "$@"', source.program, ...source.args];
  await removeTree(ctx.exec, ctx.pgData);
  await removeTree(ctx.exec, `${ctx.pgData}.basebackup`);
  await fs.mkdir(dirname(ctx.pgData), { recursive: true });
  await fs.mkdir(ctx.pgData, { mode: 0o700 });
  await ctx.exec.own(ctx.pgData);
  let ok = false;
  try {
    await ctx.exec.checkReachable(ctx.pgData);
    // The command itself is not logged: it may name credentials files or buckets.
    ctx.log.info({ pgData: ctx.pgData }, `restoring the data directory with ${what}`);
    const res = await ctx.exec.run('/bin/sh', argv, {
      env: { PGDATA: ctx.pgData },
      signal,
      supervised: true,
    });
    throwIfAborted(res, what);
    if (res.code !== 0) {
      throw commandFailed(what, res, 'PGDATA was removed; the next attempt starts from scratch', true);
    }
    if (!(await exists(join(ctx.pgData, 'PG_VERSION')))) {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `${what} succeeded but left no PG_VERSION in ${ctx.pgData}; check that it restores a base backup into ${typeof source === 'string' ? '%d' : 'PGDATA'}`,
        { transient: true },
      );
    }
    await fs.chmod(ctx.pgData, 0o700);
    await removeNodeLeftovers(ctx.pgData);
    await fs.rm(join(ctx.pgData, 'postmaster.pid'), { force: true });
    await fs.rm(join(ctx.pgData, 'postmaster.opts'), { force: true });
    await fsyncDir(ctx.pgData);
    ok = true;
    ctx.log.info({ pgData: ctx.pgData }, 'data directory restored');
  } finally {
    if (!ok) {
      await removeTree(ctx.exec, ctx.pgData);
    }
  }
}

/**
 * Polls every 200 ms until archive recovery is over: `recovery.signal` removed by the server
 * and `pg_is_in_recovery()` false (PostgreSQL ≥ 12; with a target, `recovery_target_action =
 * promote` ends it there, without one the end of the archive does).
 * @param timeoutMs overall bound; `Infinity` waits for ever (Stolon's syncTimeout 0).
 * @throws StolonError `PG_COMMAND_FAILED` (not transient) with the server log tail when the
 *   postmaster exited (e.g. "recovery ended before configured recovery target was reached");
 *   `PG_COMMAND_FAILED` (transient) on timeout; `ABORTED` when `signal` fired.
 * @see https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-PITR-RECOVERY
 */
export async function waitRecoveryDone(ctx: PgContext, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (signal?.aborted === true) {
      throw new StolonError('ABORTED', 'waiting for the end of recovery aborted');
    }
    if (!(await isRunning(ctx.pgData))) {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `postgres exited during archive recovery; last lines of ${ctx.logFile}:\n${await serverLogTail(ctx)}`,
      );
    }
    if (await exists(join(ctx.pgData, 'recovery.signal'))) {
      last = 'recovery.signal still present';
    } else {
      const notYet = await stillInRecovery(ctx);
      if (notYet === undefined) {
        ctx.log.info({ pgData: ctx.pgData }, 'archive recovery finished');
        return;
      }
      last = notYet;
    }
    if (performance.now() >= deadline) {
      throw new StolonError('PG_COMMAND_FAILED', `archive recovery not finished after ${timeoutMs} ms: ${last}`, {
        transient: true,
      });
    }
    await sleep(200);
  }
}
