/**
 * `postmaster.pid`: whether a postmaster runs on PGDATA, and clearing the lock files of a crashed
 * postmaster that is still a zombie. The postmaster's lifecycle itself: postmaster.ts.
 */
import { promises as fs, readFileSync, statSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { PgContext } from './pg-context.js';
import { readIfExists } from './pgdata.js';

/** The pid last read from a `postmaster.pid`, with the file's identity when it was read. */
interface PidFileRead {
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly pid: number;
}

/** Per `postmaster.pid` path, the last read ({@link pidFromFile}); one entry per PGDATA a process manages. */
const pidFileReads = new Map<string, PidFileRead>();

/**
 * The pid on the first line of `file` (NaN when not a number), or undefined when the file cannot
 * be read. The file is read again only when its inode, size, mtime or ctime changed since the last
 * read: the keeper asks every 100 ms (its crash watch) and on every pass, and an unchanged file
 * names the same pid, while a read through `fs.promises` costs four thread-pool round trips.
 * PostgreSQL rewrites the file in place when its status line changes (mtime changes), and a new
 * postmaster writes a new file.
 */
function pidFromFile(file: string): number | undefined {
  let st: BigIntStats;
  try {
    st = statSync(file, { bigint: true });
  } catch {
    pidFileReads.delete(file);
    return undefined;
  }
  const last = pidFileReads.get(file);
  if (last !== undefined && last.ino === st.ino && last.size === st.size && last.mtimeNs === st.mtimeNs && last.ctimeNs === st.ctimeNs) {
    return last.pid;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    pidFileReads.delete(file);
    return undefined;
  }
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  pidFileReads.set(file, { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, pid });
  return pid;
}

/**
 * The pid on the first line of `postmaster.pid`, or undefined when there is no such file or no
 * valid pid in it (says nothing about whether that process runs: see {@link isRunning}). Read as
 * {@link isRunning} reads it: again only when the file changed.
 */
export function postmasterPid(pgData: string): Promise<number | undefined> {
  const pid = pidFromFile(join(pgData, 'postmaster.pid'));
  return Promise.resolve(pid !== undefined && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined);
}

/**
 * True when the first line of `postmaster.pid` names a live process (`kill(pid, 0)`); on Linux
 * a process that is a zombie or not a postgres binary (pid reuse after a crash) does not count.
 * Synchronous system calls only (a stat of the pid file, which is read again only when it changed,
 * and `/proc/<pid>/stat`): cheap enough for the keeper's 100 ms crash watch.
 */
export function isRunning(pgData: string): Promise<boolean> {
  return Promise.resolve(postmasterRuns(pgData));
}

/** {@link isRunning}, synchronously. */
function postmasterRuns(pgData: string): boolean {
  const pid = pidFromFile(join(pgData, 'postmaster.pid'));
  if (pid === undefined || !Number.isSafeInteger(pid) || pid <= 0) {
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
    // A pseudo-file: a synchronous read never waits for a disk.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
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
