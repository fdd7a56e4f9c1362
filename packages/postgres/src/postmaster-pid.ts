/**
 * `postmaster.pid`: whether a postmaster runs on PGDATA, and clearing the lock files of a crashed
 * postmaster that is still a zombie. The postmaster's lifecycle itself: postmaster.ts.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { PgContext } from './pg-context.js';
import { readIfExists } from './pgdata.js';

/**
 * The pid on the first line of `postmaster.pid`, or undefined when there is no such file or no
 * valid pid in it (says nothing about whether that process runs: see {@link isRunning}).
 */
export async function postmasterPid(pgData: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile(join(pgData, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * True when the first line of `postmaster.pid` names a live process (`kill(pid, 0)`); on Linux
 * a process that is a zombie or not a postgres binary (pid reuse after a crash) does not count.
 */
export async function isRunning(pgData: string): Promise<boolean> {
  const pid = await postmasterPid(pgData);
  if (pid === undefined) {
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

/**
 * After a crash, clears the way for a new postmaster when the one named by a stale
 * `postmaster.pid` is a zombie. A killed postmaster stays a zombie until its parent (init, or
 * whatever adopted it) reaps it — on some hosts over a second later — and PostgreSQL's
 * lock-file check (`kill(pid, 0)`) takes a zombie for a live postmaster: a start or single-user
 * run would fail with "lock file postmaster.pid already exists". A zombie can do nothing, so
 * its two lock files (`postmaster.pid` and the socket's `.s.PGSQL.<port>.lock`, when they name
 * that pid) are removed; PostgreSQL's own shared-memory check still refuses to start while any
 * orphaned backend of the crashed postmaster is attached. {@link isRunning} already counts a
 * zombie as stopped.
 * @see https://www.postgresql.org/docs/current/server-start.html (lock files, shared memory)
 */
export async function waitForDeadPostmaster(ctx: PgContext): Promise<void> {
  const pidFile = join(ctx.pgData, 'postmaster.pid');
  let text: string;
  try {
    text = await fs.readFile(pidFile, 'utf8');
  } catch {
    return;
  }
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  if (!Number.isSafeInteger(pid) || pid <= 0 || !(await isZombie(pid))) {
    return;
  }
  const socketLock = join(ctx.socket.dir, `.s.PGSQL.${ctx.listen.port}.lock`);
  ctx.log.warn({ pgData: ctx.pgData, pid }, `the crashed postmaster (pid ${pid}) is a zombie not reaped yet: removing its lock files`);
  await fs.rm(pidFile, { force: true });
  const lock = await readIfExists(socketLock);
  if (lock !== null && Number.parseInt(lock.split('\n')[0] ?? '', 10) === pid) {
    await fs.rm(socketLock, { force: true });
  }
}

/** True when `pid` exists in the process table as a zombie (Linux `/proc`; false elsewhere). */
async function isZombie(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}
