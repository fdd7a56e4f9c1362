/**
 * Removing a directory tree the OS user owns (PGDATA, `<PGDATA>.basebackup`). A recursive removal
 * by root would follow a link the OS user swaps in for a subdirectory between root's check and
 * root's listing of it (Node's `fs.rm` checks with lstat, then reads the directory by name), and
 * delete, as root, what the link points to. So when this process is root the tree's content is
 * removed by the OS user itself (`find -mindepth 1 -delete`, which never follows links, run with
 * its uid), and root removes only the then empty top directory. The manager as a whole:
 * pg-manager.ts.
 */
import { existsSync, promises as fs } from 'node:fs';
import { StolonError } from '@stolon-ts/cluster';
import { commandFailed, type PgExec } from './pg-exec.js';

/** `find` from findutils (Debian: essential), at its merged-/usr or its historical place. */
const FIND = ['/usr/bin/find', '/bin/find'].find((f) => existsSync(f)) ?? '/usr/bin/find';

/**
 * Removes `path` and everything below it; a missing path is fine, a file or a link is unlinked
 * (a link is never followed). As root, the content of a directory is removed as the OS user
 * (see the module comment); otherwise like `fs.rm(path, { recursive: true, force: true })`.
 * @throws StolonError `DATA_DIR_INVALID` naming `path` and find's output when the OS user cannot
 *   remove something in it (e.g. a root-owned subdirectory); the file system's error otherwise.
 */
export async function removeTree(exec: PgExec, path: string): Promise<void> {
  let st;
  try {
    st = await fs.lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return;
    }
    throw err;
  }
  if (!st.isDirectory() || (await exec.identity()) === null) {
    await fs.rm(path, { recursive: true, force: true });
    return;
  }
  // The OS user needs to own the top directory to remove its entries.
  await exec.own(path);
  const res = await exec.run(FIND, [path, '-mindepth', '1', '-delete']);
  if (res.code !== 0) {
    throw new StolonError('DATA_DIR_INVALID', commandFailed(`removing the content of ${path} as ${exec.osUser}`, res, `remove ${path} by hand`).message);
  }
  await fs.rmdir(path);
}
