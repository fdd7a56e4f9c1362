/**
 * The keeper's `--data-dir` and who may write in it (docs/security.md, "The data directory and
 * the root keeper"). A keeper run as root keeps its own state — `keeperstate`, `dbstate`,
 * `keeper.lock`, `fencer.pid`, `fencer.log`, `backup-requests` — in `<data-dir>`, owned by root (mode 0755), and
 * hands the PostgreSQL OS user only what PostgreSQL uses: PGDATA (`<data-dir>/postgres`), the
 * base backup in progress (`postgres.basebackup`), the socket directory (`run`), the server log
 * (`postgres.log`), a standby's `replication.pgpass` (written by the keeper, read by
 * PostgreSQL), and pgBackRest's files (pgbackrest-files.ts: `pgbackrest/` for its lock, log and
 * spool directories; `pgbackrest.conf` and `pgbackrest-s3-ca.crt`, written by the keeper). The TLS copies (`pg-server.crt`, `pg-server.key`, `pg-ca.crt`, tls.ts) stay
 * root's; PostgreSQL reads the key through its group. Whoever can act as that user (any SQL superuser, through `COPY … TO PROGRAM`) can
 * then not plant a link where root writes its state. A keeper run as another user owns everything
 * itself (mode 0700), as before.
 *
 * Older versions chowned the whole `<data-dir>` to the OS user; {@link prepareDataDir} takes such a
 * directory back, keeping every file's content.
 */
import { constants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { writeStateFile } from './state-file.js';

/** The keeper's own files in `<data-dir>`; with a root keeper, owned by root. */
const STATE_FILES = ['keeperstate', 'dbstate', 'keeper.lock', 'fencer.pid', 'fencer.log', 'backup-requests'] as const;
/** State files whose loss would lose something (the keeper's uid, which DB the directory holds). */
const PRECIOUS = new Set<string>(['keeperstate', 'dbstate']);
/** Temp and aside names the keeper uses for its state files: removed when found at startup. */
const LEFTOVER = [/^\.backup-requests\.tmp$/, /^\.dbstate\.\d+\.tmp$/, /^fencer\.pid\.tmp$/, /^keeperstate\.tmp$/, /^keeper\.lock\.stale\.\d+$/, /\.secure\.tmp$/];
/** Entries the OS user owns; a link at one of these names was planted, never made by a keeper. */
const PG_ENTRIES = new Set(['run', 'postgres.basebackup', 'postgres.log', 'replication.pgpass', 'pgbackrest']);

/**
 * Creates `dataDir` if missing and makes it safe for this process. Not root (`pgOwner`
 * undefined): mode 0700 on creation, nothing else. Root: `dataDir` becomes owned by root and not
 * writable by group or others (group and others keep traverse, which PostgreSQL needs to reach
 * PGDATA); then, for a directory laid out by an older keeper (owned by the OS user):
 * - a state file not owned by root, with other hard links, or readable by others is rewritten as
 *   a new root-owned file (mode 0600) with the same content;
 * - a link (or other non-file) at a state-file name is removed, except at `keeperstate` and
 *   `dbstate`, which are refused (their content cannot be known);
 * - a link at `run`, `postgres.basebackup`, `postgres.log`, `replication.pgpass` or `pgbackrest`
 *   is removed;
 *   a link at `postgres` (PGDATA) is refused;
 * - links or files of another user at the temp names of the keeper's atomic writes
 *   (`.dbstate.<pid>.tmp`, `fencer.pid.tmp`, `keeperstate.tmp`, `keeper.lock.stale.<pid>`,
 *   `.backup-requests.tmp`, `<state file>.secure.tmp`) are removed.
 * A directory already laid out this way is left as it is, so running this while another keeper
 * uses the directory (before the data-dir lock refuses the second one) disturbs nothing.
 * Nothing is ever written through a link. Run it before anything else touches the data dir.
 * @param pgOwner uid/gid of the PostgreSQL OS user when this process is root, else undefined.
 * @returns one sentence per change made (empty when none), for the log.
 * @throws ConfigError (field `data-dir`) naming the entry and what to do when one is refused, or
 *   when the directory cannot be created (a path under a file, no permission, a read-only file
 *   system); the file system's error otherwise (ENOSPC…).
 */
export async function prepareDataDir(dataDir: string, pgOwner: { readonly uid: number; readonly gid: number } | undefined): Promise<string[]> {
  try {
    await fs.mkdir(dataDir, { recursive: true, mode: pgOwner === undefined ? 0o700 : 0o755 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR' || code === 'EEXIST' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new ConfigError(
        `--data-dir: cannot create ${dataDir} (${(err as Error).message}); give a directory this keeper may create and write, where it keeps its state and PGDATA`,
        { field: 'data-dir' },
      );
    }
    throw err;
  }
  if (pgOwner === undefined) {
    return [];
  }
  const done: string[] = [];
  // First the directory itself: once root owns it and nobody else may write in it, the OS user
  // can no longer add, remove or rename entries, so what is checked below stays as checked.
  const st = await fs.stat(dataDir);
  const mode = (st.mode & 0o755) | 0o711;
  if (st.uid !== 0 || st.gid === pgOwner.gid) {
    await fs.chown(dataDir, 0, 0);
    done.push(`${dataDir} was owned by uid ${st.uid} gid ${st.gid}; now by root, so that PostgreSQL's OS user cannot write where the keeper keeps its state`);
  }
  if ((st.mode & 0o7777) !== mode) {
    await fs.chmod(dataDir, mode);
    done.push(`${dataDir}: mode ${(st.mode & 0o7777).toString(8)} → ${mode.toString(8)}`);
  }
  for (const name of await fs.readdir(dataDir)) {
    const path = join(dataDir, name);
    if (LEFTOVER.some((re) => re.test(name))) {
      // Only what root did not make: a root-owned one may be a live keeper's write in progress
      // (this runs before the data-dir lock), and is replaced by the next write anyway.
      const lst = await fs.lstat(path);
      if (!lst.isDirectory() && (lst.isSymbolicLink() || lst.uid !== 0)) {
        await fs.rm(path, { force: true });
        done.push(`removed ${path}: a temp name of the keeper, made by uid ${lst.uid}`);
      }
    } else if ((STATE_FILES as readonly string[]).includes(name)) {
      done.push(...(await secureStateFile(path, PRECIOUS.has(name))));
    } else if (PG_ENTRIES.has(name) || name === 'postgres') {
      const lst = await fs.lstat(path);
      if (lst.isSymbolicLink()) {
        if (name === 'postgres') {
          throw new ConfigError(
            `--data-dir: ${path} (PGDATA) is a symbolic link; the keeper makes PGDATA itself and does not follow a link there as root. Check where it points, move that directory to ${path}, and start again`,
            { field: 'data-dir' },
          );
        }
        await fs.rm(path, { force: true });
        done.push(`removed the symbolic link ${path}; the keeper makes it again`);
      }
    }
  }
  return done;
}

/** Makes the state file at `path` a root-owned, singly linked regular file of mode 0600, same content. */
async function secureStateFile(path: string, precious: boolean): Promise<string[]> {
  const lst = await fs.lstat(path);
  if (!lst.isFile()) {
    if (precious) {
      throw new ConfigError(
        `--data-dir: ${path} is not a regular file (${lst.isSymbolicLink() ? 'a symbolic link' : 'a directory or special file'}); the keeper does not read it as root. Check it, put the keeper's own file back or remove it, and start again`,
        { field: 'data-dir' },
      );
    }
    if (lst.isDirectory()) {
      throw new ConfigError(`--data-dir: ${path} is a directory; remove it and start again`, { field: 'data-dir' });
    }
    await fs.rm(path, { force: true });
    return [`removed ${path}: it was not a regular file`];
  }
  if (lst.uid === 0 && lst.nlink === 1 && (lst.mode & 0o077) === 0) {
    return [];
  }
  // Read without following a link, then write a new inode: the old one (maybe a hard link to a
  // file elsewhere) is left as it was.
  const fh = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  let content: Buffer;
  try {
    content = await fh.readFile();
  } finally {
    await fh.close();
  }
  await writeStateFile(path, `${path}.secure.tmp`, content, 0o600);
  return [`${path} (owner uid ${lst.uid}, ${lst.nlink} links, mode ${(lst.mode & 0o7777).toString(8)}) rewritten as a root-owned file of mode 0600`];
}
