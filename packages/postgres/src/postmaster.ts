/**
 * The postmaster's lifecycle through pg_ctl: start (waiting for readiness, explaining a failed
 * start from the server log), stop, restart, reload, and promotion (waiting for the end of
 * recovery); and reading the server log (`<PGDATA>/../postgres.log`). Whether one runs:
 * postmaster-pid.ts. The manager as a whole: pg-manager.ts.
 */
import { constants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'pg';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import { parseConfigErrors } from './config.js';
import { describeProblem, saveLastGoodConfig } from './pg-conf-files.js';
import type { PgContext } from './pg-context.js';
import { endQuietly } from './pg-socket.js';
import { OUTPUT_LIMIT, commandFailed, exitText, lastLines } from './pg-exec.js';
import { LAST_GOOD, exists, requireInitialized } from './pgdata.js';
import { isRunning, postmasterPid, waitForDeadPostmaster } from './postmaster-pid.js';

/** How often {@link promoteStandby} asks `pg_is_in_recovery()` after `pg_promote(false)`, ms. */
const PROMOTE_POLL_MS = 5;

/**
 * {@link promoteStandby}'s question: still in recovery, and is the startup process sleeping out
 * wal_retrieve_retry_interval (wait event `RecoveryRetrieveRetryInterval`, PostgreSQL ≥ 13).
 * @see https://www.postgresql.org/docs/current/monitoring-stats.html#WAIT-EVENT-TIMEOUT-TABLE
 */
const PROMOTE_POLL_SQL = `select pg_is_in_recovery() as in_recovery,
  exists (select 1 from pg_stat_activity where backend_type = 'startup' and wait_event = 'RecoveryRetrieveRetryInterval') as retry_wait`;
/** How long a stop waits for the postmaster to exit, in seconds. */
const STOP_TIMEOUT_S = 60;

/**
 * Creates the server log if missing and hands it to the OS user, through its descriptor: a link
 * at its name is refused, not followed (its directory may have been the OS user's).
 * @returns the log's size in bytes, where this start's lines begin.
 * @throws StolonError `DATA_DIR_INVALID` when the log is a symbolic link or has other hard links.
 */
async function openServerLog(ctx: PgContext): Promise<number> {
  const fh = await fs.open(ctx.logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new StolonError('DATA_DIR_INVALID', `the server log ${ctx.logFile} is a symbolic link; remove it (the keeper makes the file)`, { cause: err });
    }
    throw err;
  });
  try {
    const st = await fh.stat();
    if (st.nlink !== 1) {
      throw new StolonError('DATA_DIR_INVALID', `the server log ${ctx.logFile} has ${st.nlink} hard links; remove it (the keeper makes the file)`);
    }
    const id = await ctx.exec.identity();
    if (id !== null) {
      await fh.chown(id.uid, id.gid);
    }
    return st.size;
  } finally {
    await fh.close();
  }
}

/**
 * `pg_ctl start -w -t <ceil(timeoutMs/1000)> -D PGDATA -l <logFile>`: the postmaster runs in its
 * own session and outlives this process. Does nothing when a postmaster is already running.
 * A postmaster still starting when the wait expires is left running. After a successful
 * start, postgresql.conf and pg_hba.conf are saved as the `last-good` configuration.
 *
 * A failed start is explained from the server log lines it wrote: a message naming a
 * parameter (`invalid value for parameter "shared_buffers": "lots"`) or a pg_hba.conf line
 * becomes `CONFIG_INVALID`.
 *
 * @param saveLastGood false for init's temporary instance, which listens on no TCP address.
 * @throws StolonError `CONFIG_INVALID` (not transient; `field` = `pgParameters.<name>` or
 *   `pgHBA`) as above — restoreLastGoodConfig (pg-conf-files.ts) then start again;
 *   `DATA_DIR_INVALID` when PGDATA is not initialised; `PG_COMMAND_FAILED` (transient) with
 *   pg_ctl's output and the last lines of the server log otherwise.
 * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
 */
export async function startPostmaster(ctx: PgContext, timeoutMs: number, saveLastGood: boolean): Promise<void> {
  await requireInitialized(ctx.pgData, 'start');
  if (await isRunning(ctx.pgData)) {
    ctx.log.debug({ pgData: ctx.pgData }, 'postgres already running, not starting it');
    return;
  }
  await ctx.exec.checkReachable(ctx.pgData);
  await ctx.socket.ensureDir();
  await waitForDeadPostmaster(ctx);
  const logOffset = await openServerLog(ctx);
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  ctx.log.info({ pgData: ctx.pgData, timeoutMs }, 'starting postgres');
  const res = await ctx.exec.run('pg_ctl', ['start', '-w', '-t', String(seconds), '-D', ctx.pgData, '-l', ctx.logFile], {
    detached: true,
    timeoutMs: timeoutMs + 15_000,
  });
  if (res.code !== 0) {
    const problems = parseConfigErrors(await serverLogSince(ctx, logOffset)).map((p) => describeProblem(p, undefined));
    if (problems.length > 0 && !(await isRunning(ctx.pgData))) {
      const hasLastGood = await exists(join(ctx.pgData, `postgresql.conf${LAST_GOOD}`));
      throw new StolonError(
        'CONFIG_INVALID',
        `postgres did not start because of its configuration: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}; ` +
          (hasLastGood
            ? 'restoreLastGoodConfig() puts the last configuration it accepted back'
            : 'fix the cluster spec'),
        { field: problems[0]?.field ?? 'pgParameters' },
      );
    }
    const tail = await serverLogTail(ctx);
    throw new StolonError(
      'PG_COMMAND_FAILED',
      `pg_ctl start failed (${exitText(res)}): ${lastLines(res.stderr || res.stdout, 5)}\n` +
        `last lines of ${ctx.logFile}:\n${tail}`,
      { transient: true },
    );
  }
  ctx.log.info({ pgData: ctx.pgData }, 'postgres started');
  if (saveLastGood) {
    await saveLastGoodConfig(ctx);
  }
}

/**
 * Stops (`fast`) and starts again, so restart-only parameters take effect; only starts when
 * stopped. Equivalent to `pg_ctl restart -m fast -w`, but through {@link stopPostmaster} and
 * {@link startPostmaster} so a failed start is explained the same way.
 * @param timeoutMs bound of the start; the stop has its own 60 s bound.
 * @throws StolonError as {@link stopPostmaster} and {@link startPostmaster}.
 * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
 */
export async function restartPostmaster(ctx: PgContext, timeoutMs: number): Promise<void> {
  await stopPostmaster(ctx, 'fast');
  await startPostmaster(ctx, timeoutMs, true);
}

/**
 * `CHECKPOINT` on a running instance (the caller bounds nothing: the statement timeout of the
 * socket connection, 5 s, ends the wait, not the checkpoint, which the checkpointer finishes).
 * Before a planned shutdown it leaves the shutdown checkpoint little to write, so the shutdown is
 * short (Patroni checkpoints before demoting a primary for the same reason).
 * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made; the driver's
 *   error when the statement fails or times out.
 * @see https://www.postgresql.org/docs/current/sql-checkpoint.html
 */
export async function checkpoint(ctx: PgContext): Promise<void> {
  const client = await ctx.socket.connectOrThrow();
  try {
    await client.query('checkpoint');
  } finally {
    await endQuietly(client);
  }
}

/** How often {@link stopPostmaster} checks whether the postmaster exited, ms (50 ms after the first 2 s). */
const STOP_POLL_MS = 5;

/**
 * Stops the postmaster as `pg_ctl stop -w -m <mode>` does — SIGINT for `fast`, SIGQUIT for
 * `immediate` — but sends the signal itself and checks every {@link STOP_POLL_MS} ms whether it
 * exited (`pg_ctl` waits 100 ms between checks, PostgreSQL's WAITS_PER_SEC, so a fast shutdown of
 * ~50 ms took at least 100 ms plus starting pg_ctl; every ms here is write outage in a
 * switchover). Falls back to `pg_ctl stop` when the signal cannot be sent (EPERM: the postmaster
 * runs as a user this process may not signal). Does nothing when no postmaster is running.
 * @param mode `fast` (default: disconnects clients, checkpoints) or `immediate` (crash stop).
 * @throws StolonError `PG_COMMAND_FAILED` (transient) when the postmaster is still alive after
 *   60 s.
 * @see https://www.postgresql.org/docs/current/server-shutdown.html (the signals)
 * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
 */
export async function stopPostmaster(ctx: PgContext, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  const pid = await postmasterPid(ctx.pgData);
  if (pid === undefined || !(await isRunning(ctx.pgData))) {
    return;
  }
  ctx.log.info({ pgData: ctx.pgData, mode }, 'stopping postgres');
  const startedAt = Date.now();
  try {
    process.kill(pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') {
      return;
    }
    if (code !== 'EPERM') {
      throw err;
    }
    const res = await ctx.exec.run('pg_ctl', ['stop', '-w', '-t', String(STOP_TIMEOUT_S), '-m', mode, '-D', ctx.pgData], {
      timeoutMs: STOP_TIMEOUT_S * 1000 + 15_000,
    });
    if (res.code !== 0 && (await isRunning(ctx.pgData))) {
      throw commandFailed(`pg_ctl stop -m ${mode}`, res, 'try again, or stop it with mode immediate', true);
    }
    return;
  }
  while (await isRunning(ctx.pgData)) {
    const elapsed = Date.now() - startedAt;
    if (elapsed >= STOP_TIMEOUT_S * 1000) {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `postgres (postmaster ${pid}) still running ${STOP_TIMEOUT_S} s after the ${mode} shutdown request; try again, or stop it with mode immediate`,
        { transient: true },
      );
    }
    await sleep(elapsed < 2000 ? STOP_POLL_MS : 50);
  }
  ctx.log.info({ pgData: ctx.pgData, mode, durationMs: Date.now() - startedAt }, 'postgres stopped');
}

/**
 * Reloads the configuration as `pg_ctl reload` does: SIGHUP to the postmaster, sent from here
 * (starting pg_ctl cost ~5–15 ms, on the path of a promotion); through `pg_ctl reload` when the
 * signal cannot be sent (EPERM). PostgreSQL re-reads postgresql.conf and pg_hba.conf
 * asynchronously, as with pg_ctl.
 * @throws StolonError `PG_NOT_RUNNING` (transient) when stopped; `PG_COMMAND_FAILED` otherwise.
 * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
 */
export async function reloadPostmaster(ctx: PgContext): Promise<void> {
  const pid = await postmasterPid(ctx.pgData);
  if (pid === undefined || !(await isRunning(ctx.pgData))) {
    throw new StolonError('PG_NOT_RUNNING', `cannot reload: postgres is not running on ${ctx.pgData}`, {
      transient: true,
    });
  }
  try {
    process.kill(pid, 'SIGHUP');
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') {
      throw new StolonError('PG_NOT_RUNNING', `cannot reload: postgres (postmaster ${pid}) is gone: ${errorMessage(err)}`, {
        transient: true,
      });
    }
  }
  const res = await ctx.exec.run('pg_ctl', ['reload', '-D', ctx.pgData], { timeoutMs: 30_000 });
  if (res.code !== 0) {
    throw commandFailed('pg_ctl reload', res, 'check the server log', true);
  }
}

/**
 * Asks for the promotion with `pg_promote(wait => false)` and then asks `pg_is_in_recovery()`
 * every {@link PROMOTE_POLL_MS} ms (200 ms after the first second) until it is false, within
 * `timeoutMs` overall, both on one superuser connection over the socket (a new connection for
 * each question cost ~5–10 ms each). Not `pg_ctl promote -w` nor `pg_promote(wait => true)`: both
 * wait 100 ms between their checks, while a PostgreSQL 15 promotion (an end-of-recovery record,
 * no checkpoint) ends in tens of ms, and every ms here is write outage in a failover or
 * switchover; nor `pg_ctl promote -W`, which costs starting a program. A standby already out of
 * recovery is not asked again. When the connection breaks, the next check opens a new one.
 *
 * A standby whose upstream is gone (a failover) tries to stream again every
 * wal_retrieve_retry_interval; when the promotion request finds its startup process waiting for
 * the WAL receiver, PostgreSQL (15) notices the request, then still sleeps out the rest of that
 * interval before it ends recovery: up to 1 s more with the keeper's default (and a reload just
 * before the promotion, which wakes the startup process into a new streaming attempt, makes that
 * likely). So while the startup process shows that wait after the request, the postmaster is sent
 * SIGHUP (what `pg_reload_conf()` does; the files are unchanged), whose handler in the startup
 * process sets the latch it sleeps on: it wakes, finds the promotion requested and ends recovery.
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-WAL-RETRIEVE-RETRY-INTERVAL
 * @throws StolonError `PG_NOT_RUNNING` (transient) when stopped; `PG_COMMAND_FAILED`
 *   (transient) when the promotion cannot be asked for or recovery does not end in time.
 * @see https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-RECOVERY-CONTROL
 */
export async function promoteStandby(ctx: PgContext, timeoutMs: number): Promise<void> {
  const startedAt = Date.now();
  const deadline = startedAt + timeoutMs;
  if (!(await isRunning(ctx.pgData))) {
    throw new StolonError('PG_NOT_RUNNING', `cannot promote: postgres is not running on ${ctx.pgData}`, {
      transient: true,
    });
  }
  let client: Client | undefined;
  let asked = false;
  /** SIGHUPs sent to wake the startup process from its wal_retrieve_retry_interval sleep. */
  let woken = 0;
  let last = 'no answer yet';
  try {
    for (;;) {
      try {
        client ??= await ctx.socket.connect();
        const r = await client.query<{ in_recovery: boolean; retry_wait: boolean }>(PROMOTE_POLL_SQL);
        if (r.rows[0]?.in_recovery === false) {
          ctx.log.info({ pgData: ctx.pgData, ...(woken > 0 ? { wokenFromRetryWait: woken } : {}) }, 'postgres promoted');
          return;
        }
        if (!asked) {
          ctx.log.info({ pgData: ctx.pgData }, 'promoting postgres');
          await client.query('select pg_promote(false)');
          asked = true;
          continue;
        }
        if (r.rows[0]?.retry_wait === true) {
          await reloadPostmaster(ctx);
          woken += 1;
        }
        last = 'still in recovery';
      } catch (err) {
        last = errorMessage(err);
        if (client !== undefined) {
          await endQuietly(client);
          client = undefined;
        }
      }
      if (Date.now() >= deadline) {
        throw new StolonError(
          'PG_COMMAND_FAILED',
          `promotion ${asked ? 'not finished' : 'could not be asked for'} after ${timeoutMs} ms: ${last}; check the server log`,
          { transient: true },
        );
      }
      // A promotion that still has WAL to replay can take long: poll fast only at first.
      await sleep(Date.now() - startedAt < 1000 ? PROMOTE_POLL_MS : 200);
    }
  } finally {
    if (client !== undefined) {
      await endQuietly(client);
    }
  }
}

/** Reading the server log: never through a link (its tail goes into errors and the published info). */
const READ_LOG = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The last 20 lines of the server log (from its last 8 KiB), or why it cannot be read. */
export async function serverLogTail(ctx: PgContext): Promise<string> {
  try {
    const fh = await fs.open(ctx.logFile, READ_LOG);
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

/** The server log written since byte `offset` (at most the last 64 KiB of it). */
async function serverLogSince(ctx: PgContext, offset: number): Promise<string> {
  try {
    const fh = await fs.open(ctx.logFile, READ_LOG);
    try {
      const { size } = await fh.stat();
      const from = Math.max(offset, size - OUTPUT_LIMIT);
      const buf = Buffer.alloc(Math.max(0, size - from));
      await fh.read(buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}
