/**
 * PGDATA on disk: the names of the files in it that belong to this node rather than to the data,
 * and the small file operations every part of the manager shares (read if present, replace
 * atomically or remove, fsync a directory, the "is it initialised" check). Atomic writes
 * themselves are {@link PgExec.writeAtomic}. The manager as a whole: pg-manager.ts.
 */
import { constants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { PgExec } from './pg-exec.js';

/**
 * Name of the walreceiver's password file (`primary_conninfo`'s `passfile=`), in the directory
 * that holds PGDATA (the keeper's `<data-dir>`), never in PGDATA itself: whatever is in PGDATA
 * goes into every base backup taken from the node, and so would the replication password.
 */
export const REPL_PASSFILE = 'replication.pgpass';
/**
 * Where earlier versions kept the replication password file: inside PGDATA. Removed wherever it
 * is found (writeConfig, after a base backup, a restore or pg_rewind).
 */
export const LEGACY_REPL_PASSFILE = 'stolon-replication.pgpass';
/** Suffix of the copies of the last configuration files PostgreSQL accepted. */
export const LAST_GOOD = '.last-good';

/**
 * Removes the files of PGDATA that describe the instance it was copied from (its last good
 * configuration; the replication password file an earlier version kept in PGDATA), after a base
 * backup or a restore.
 */
export async function removeNodeLeftovers(pgData: string): Promise<void> {
  for (const name of [`postgresql.conf${LAST_GOOD}`, `pg_hba.conf${LAST_GOOD}`, LEGACY_REPL_PASSFILE]) {
    await fs.rm(join(pgData, name), { force: true });
  }
}

/**
 * @throws StolonError `DATA_DIR_INVALID` ("cannot `what`: … run init or baseBackup first") when
 *   `pgData` has no PG_VERSION.
 */
export async function requireInitialized(pgData: string, what: string): Promise<void> {
  if (!(await exists(join(pgData, 'PG_VERSION')))) {
    throw new StolonError(
      'DATA_DIR_INVALID',
      `cannot ${what}: ${pgData} is not an initialised data directory (no PG_VERSION); run init or baseBackup first`,
    );
  }
}

/**
 * Runs file writes in PGDATA, turning any failure into a transient `DATA_DIR_INVALID`.
 * @throws StolonError `DATA_DIR_INVALID` (transient) "`what` in `pgData` failed: …".
 */
export async function dataWrite(pgData: string, what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    throw new StolonError('DATA_DIR_INVALID', `${what} in ${pgData} failed: ${errorMessage(err)}`, {
      cause: err,
      transient: true,
    });
  }
}

/** Writes `content` to `path` atomically, or removes `path` when `content` is null. */
export async function putBack(exec: PgExec, path: string, content: string | null): Promise<void> {
  if (content === null) {
    await fs.rm(path, { force: true });
  } else {
    await exec.writeAtomic(path, content);
  }
}

/** Creates an empty file (0600, owned by the OS user) unless one already exists. */
export async function ensureEmptyFile(exec: PgExec, path: string): Promise<void> {
  if ((await readIfExists(path)) !== '') {
    await exec.writeAtomic(path, '');
  }
}

/**
 * Content of a file in PGDATA, or null when it does not exist or is not a regular file of its own
 * (a symbolic link, a file with other hard links, a FIFO…). The OS user owns PGDATA and could put
 * such a thing there to make a root keeper read a file of root's and copy it where the OS user
 * reads (the last good configuration, the files kept across pg_rewind); so it is opened with
 * `O_NOFOLLOW | O_NONBLOCK` and checked on the descriptor, and read as absent: the next write
 * replaces it.
 * @throws the file system's error other than ENOENT and ELOOP (EACCES…).
 */
export async function readIfExists(path: string): Promise<string | null> {
  let fh;
  try {
    fh = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') {
      return null;
    }
    throw err;
  }
  try {
    const st = await fh.stat();
    return st.isFile() && st.nlink === 1 ? await fh.readFile('utf8') : null;
  } finally {
    await fh.close();
  }
}

/** True when `path` exists (and is accessible). */
export async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}

/** fsyncs a directory, so the renames and removals in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
