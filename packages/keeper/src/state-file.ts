/**
 * Atomic writes of the keeper's own small files (`dbstate`, `keeperstate`, `fencer.pid`) that
 * never write through a link: the temp file is removed first (unlink removes a symbolic link, not
 * what it points to), then created with `O_CREAT | O_EXCL | O_NOFOLLOW` — a fresh inode of this
 * process, so neither a symbolic link nor a hard link planted at the temp name is followed —
 * written, flushed and renamed over the file (a rename replaces a link, it does not write
 * through it). With a root keeper these files live in a directory only root can write
 * (datadir.ts); this is the second line, for a data directory laid out the old way or a
 * directory handed over by mistake.
 */
import { closeSync, constants, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';

/** Flags of a temp file: create a new file, never open an existing one or follow a link. */
const TMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Writes `content` to `path` atomically (temp file `tmp` in the same directory, mode `mode`,
 * fsynced, renamed over `path`). A crash leaves the old file or the new one, never half of one;
 * a link at `tmp` or `path` is replaced, never written through.
 * @param tmp the temp file's path; must be in the directory of `path`.
 * @param mode permission bits of the new file, e.g. 0o600 (set exactly, whatever the umask).
 * @param owner uid/gid given to the new file before anything is written into it (root only);
 *   absent: this process's.
 * @throws the file system's error (ENOSPC, EACCES; EEXIST when something re-appeared at `tmp`
 *   between its removal and its creation); the temp file is removed then.
 */
export async function writeStateFile(
  path: string,
  tmp: string,
  content: string | Uint8Array,
  mode: number,
  owner?: { readonly uid: number; readonly gid: number },
): Promise<void> {
  await rm(tmp, { force: true });
  const fh = await open(tmp, TMP_FLAGS, mode);
  try {
    try {
      if (owner !== undefined) {
        await fh.chown(owner.uid, owner.gid);
      }
      // Exactly `mode`, whatever the umask.
      await fh.chmod(mode);
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * {@link writeStateFile}, synchronous and not flushed (for callers that cannot await and whose
 * file need not survive a power loss: the fencer's pid file); same throws.
 */
export function writeStateFileSync(path: string, tmp: string, content: string, mode: number): void {
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, TMP_FLAGS, mode);
  try {
    try {
      writeSync(fd, content);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
