/**
 * The manager's process context: runs the PostgreSQL binaries of `binPath`, and creates files, as
 * the OS user (PostgreSQL refuses to run as root, so a root keeper spawns them with that user's
 * uid/gid and chowns what it creates), with a minimal environment ({@link childEnv}: none of the
 * keeper's variables beyond PATH, locale, TZ and TMPDIR, so no `STKEEPER_*` secret reaches
 * PostgreSQL) and secrets in temporary password files rather than argv. Also the helpers that
 * turn a command's result into a StolonError. The manager as a whole: pg-manager.ts.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, existsSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { StolonError, errorMessage } from '@stolon-ts/cluster';

/** Result of one spawned binary. */
export interface ExecResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly aborted: boolean;
}

interface ExecOptions {
  /** Variables of this call (PGPASSFILE, PGAPPNAME, LC_ALL, PGDATA…), added to {@link childEnv}'s. */
  readonly env?: Readonly<Record<string, string>>;
  /** Called with every stderr chunk as it arrives (for progress reports). */
  readonly onStderr?: (chunk: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** Kill the child (SIGTERM, then SIGKILL) after this many ms. */
  readonly timeoutMs?: number;
  /** New process group/session, so a signal to ours does not reach the child. */
  readonly detached?: boolean;
  /**
   * Run the binary under the child supervisor (`child-supervisor-bin.ts`), which ends it and every
   * process it started once this process is gone, even by SIGKILL: for the long commands that
   * write to PGDATA (pg_basebackup, pg_rewind, a dataRestoreCommand, single-user recovery), so a
   * killed keeper's copy never runs on beside its successor's. Costs a Node start (~50 ms).
   */
  readonly supervised?: boolean;
  /**
   * With `supervised`: the supervisor is spawned at once but starts the binary only when this
   * settles fulfilled, so the supervisor's own start overlaps the step it waits for. When it
   * rejects, the binary never starts and {@link PgExec.run} rejects with that reason.
   */
  readonly startAfter?: Promise<unknown>;
}

/**
 * The compiled child supervisor: next to this module in dist, in dist when run from src (tests),
 * or, when this module is part of a program's bundle (`packages/keeper/dist/stolon-keeper.cjs`, see
 * packages/keeper/scripts/bundle.mjs), in this package's dist beside that program's.
 */
const SUPERVISOR = [
  new URL('./child-supervisor-bin.js', import.meta.url),
  new URL('../dist/child-supervisor-bin.js', import.meta.url),
  new URL('../../postgres/dist/child-supervisor-bin.js', import.meta.url),
]
  .map((u) => fileURLToPath(u))
  .find((f) => existsSync(f));

/** An OS user's uid and primary gid. */
export interface Identity {
  readonly uid: number;
  readonly gid: number;
}

/** Flags of a file root creates where the OS user may write: a new file, never through a link. */
const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * The variables a child may take from the keeper's environment: `LANG`, `LANGUAGE` and `LC_*`
 * (initdb's default locale and encoding, the server's and the tools' message language), `TZ`
 * (initdb writes it as `timezone` and `log_timezone`), `TMPDIR` (for archive and restore
 * commands). None of them is a secret.
 */
const INHERITED_ENV = /^(LANG|LANGUAGE|LC_[A-Z_]+|TZ|TMPDIR)$/;

/**
 * The environment every PostgreSQL binary, and so the postmaster, every backend, `archive_command`,
 * `restore_command` and a dataRestoreCommand, starts from. It is built, not inherited: the keeper's
 * environment may hold its secrets (`STKEEPER_PG_SU_PASSWORD`, `STKEEPER_PG_REPL_PASSWORD`,
 * `STKEEPER_MEMBER_TOKEN`, store credentials) and anything else the operator set, and any SQL
 * superuser can read a backend's environment (`COPY … FROM PROGRAM 'env'`). It holds only:
 * - `PATH`: `binPath` first (so commands find the server's own `pg_*` tools), then the keeper's
 *   `PATH` (where the operator installed archive tools), else `/usr/local/bin:/usr/bin:/bin`;
 * - `HOME`: `home` (the OS user's home directory when the keeper runs as root), where libpq looks
 *   for `~/.pgpass` and `~/.postgresql/` and archive tools for their configuration;
 * - the keeper's `LANG`, `LANGUAGE`, `LC_*`, `TZ` and `TMPDIR`, when set ({@link INHERITED_ENV}).
 * Not `PG*` (the caller's PGDATA, PGPORT or PGPASSWORD must not change what a binary does: what a
 * call needs, such as PGPASSFILE, it passes itself), nor `USER`/`LOGNAME` (libpq and initdb take the
 * user name from the uid; a root keeper's would be wrong).
 * @param parent the keeper's environment, usually `process.env`.
 * @returns a new object; the caller adds the variables of its call.
 */
export function childEnv(parent: NodeJS.ProcessEnv, opts: { readonly binPath: string; readonly home: string }): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parent)) {
    if (v !== undefined && INHERITED_ENV.test(k)) {
      env[k] = v;
    }
  }
  const path = parent['PATH'] !== undefined && parent['PATH'] !== '' ? parent['PATH'] : '/usr/local/bin:/usr/bin:/bin';
  env['PATH'] = `${opts.binPath}:${path}`;
  env['HOME'] = opts.home;
  return env;
}

/** Longest stdout/stderr kept from a child, in characters (the tail is kept). */
export const OUTPUT_LIMIT = 64 * 1024;

/**
 * Runs the binaries of one PostgreSQL installation and creates files as one OS user: that user
 * when this process runs as root, the current user otherwise.
 */
export class PgExec {
  /** The OS user named in the options (used only when this process is root). */
  readonly osUser: string;
  readonly #binPath: string;
  readonly #log: Logger;
  #identity: Promise<Identity | null> | undefined;
  #version: { Maj: number; Min: number } | undefined;
  #home: string | undefined;

  /**
   * @param opts.binPath directory of the PostgreSQL binaries.
   * @param opts.osUser OS user that runs them and owns created files when this process is root.
   */
  constructor(opts: { readonly binPath: string; readonly osUser: string; readonly log: Logger }) {
    this.#binPath = opts.binPath;
    this.osUser = opts.osUser;
    this.#log = opts.log;
  }

  /**
   * Major/minor of `postgres -V` (e.g. `postgres (PostgreSQL) 15.10 (Debian …)` → 15/10);
   * cached after the first success.
   * @throws StolonError `PG_COMMAND_FAILED` when the binary cannot run or prints no version.
   */
  async binaryVersion(): Promise<{ Maj: number; Min: number }> {
    if (this.#version !== undefined) {
      return this.#version;
    }
    const res = await this.run('postgres', ['-V']);
    const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(res.stdout);
    if (res.code !== 0 || m === null) {
      throw commandFailed('postgres -V', res, `check binPath (${this.#binPath})`);
    }
    this.#version = { Maj: Number(m[1]), Min: Number(m[2] ?? '0') };
    return this.#version;
  }

  /**
   * uid/gid to run binaries as and own files with; null when not root.
   * @throws StolonError `CONFIG_INVALID` (`field` = `osUser`) when root and the OS user does not
   *   exist or is root itself; the lookup is retried on the next call.
   */
  identity(): Promise<Identity | null> {
    if (this.#identity === undefined) {
      this.#identity = resolveIdentity(this.osUser);
      // A failed lookup is retried next time (the user may be created meanwhile).
      this.#identity.catch(() => {
        this.#identity = undefined;
      });
    }
    return this.#identity;
  }

  /**
   * Chowns `path` to the OS user when root; does nothing otherwise. A symbolic link at `path` is
   * chowned itself, never what it points to (lchown): the OS user may have planted it.
   */
  async own(path: string): Promise<void> {
    const id = await this.identity();
    if (id !== null) {
      await fs.lchown(path, id.uid, id.gid);
    }
  }

  /**
   * When root, checks that the OS user can traverse every ancestor of `path`; postgres
   * otherwise fails with a bare "permission denied" far from the cause.
   * @throws StolonError `DATA_DIR_INVALID` naming the first ancestor it cannot traverse.
   */
  async checkReachable(path: string): Promise<void> {
    const id = await this.identity();
    if (id === null) {
      return;
    }
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      const st = await fs.stat(dir);
      const bit = st.uid === id.uid ? 0o100 : st.gid === id.gid ? 0o010 : 0o001;
      if ((st.mode & bit) === 0) {
        throw new StolonError(
          'DATA_DIR_INVALID',
          `the OS user ${this.osUser} cannot reach ${path}: ${dir} is not traversable for it; chmod o+x ${dir} or choose another directory`,
        );
      }
      if (dir === dirname(dir)) {
        return;
      }
    }
  }

  /**
   * Writes `path` atomically: a new temp file in the same directory (created with
   * `O_EXCL | O_NOFOLLOW`, mode 0600), written, fsynced, chowned to the OS user through its
   * descriptor, renamed over `path`. The directory may be the OS user's (PGDATA): nothing is
   * written or chowned through a link it planted, and a link at `path` is replaced.
   * @throws the file system's error; the temp file is removed then.
   */
  async writeAtomic(path: string, content: string): Promise<void> {
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    const id = await this.identity();
    const fh = await fs.open(tmp, NEW_FILE, 0o600);
    try {
      try {
        await fh.writeFile(content);
        await fh.sync();
        if (id !== null) {
          await fh.chown(id.uid, id.gid);
        }
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, path);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Runs `fn` with a file holding `content` (mode 0600, owned by the OS user) in a fresh
   * directory under os.tmpdir() (this process's; mode 0700, 0711 when root so that the OS user can
   * reach the file); removes both afterwards, whatever happens.
   */
  async withSecretFile<T>(content: string, fn: (path: string) => Promise<T>): Promise<T> {
    const dir = await fs.mkdtemp(join(tmpdir(), 'stolon-pg-'));
    try {
      const id = await this.identity();
      if (id !== null) {
        // Root keeps the directory (the OS user only traverses it to read the file), so the
        // recursive removal below never meets a link the OS user made.
        await fs.chmod(dir, 0o711);
      }
      const file = join(dir, 'secret');
      const fh = await fs.open(file, NEW_FILE, 0o600);
      try {
        await fh.writeFile(content);
        if (id !== null) {
          await fh.chown(id.uid, id.gid);
        }
      } finally {
        await fh.close();
      }
      return await fn(file);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Spawns `<binPath>/<bin>` (or `bin` itself when absolute) as the OS user (when root), with
   * cwd `/`, the minimal environment of {@link childEnv} plus `opts.env`, stdout/stderr captured
   * (tails of up to 64 KiB). Argv must never hold a secret.
   * @returns the exit status and output; `aborted` when `opts.signal` fired (before or during).
   * @throws StolonError `PG_COMMAND_FAILED` when the binary cannot be spawned.
   */
  async run(bin: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const id = await this.identity();
    const env = childEnv(process.env, { binPath: this.#binPath, home: await this.#osUserHome() });
    Object.assign(env, opts.env);
    const file = bin.startsWith('/') ? bin : join(this.#binPath, bin);
    this.#log.debug({ cmd: file, args }, `running ${bin}`);
    if (opts.signal?.aborted === true) {
      return { code: null, signal: null, stdout: '', stderr: '', aborted: true };
    }
    if (opts.supervised === true && SUPERVISOR === undefined) {
      throw new StolonError('PG_COMMAND_FAILED', `cannot run ${bin}: child-supervisor-bin.js is missing next to pg-exec.js; rebuild the package (npm run build)`);
    }
    return new Promise<ExecResult>((resolvePromise, rejectPromise) => {
      // Supervised: the supervisor holds the pipe's read end as its stdin; this process writes
      // to it only the one go byte of startAfter, and its exit (SIGKILL included) closes it. The supervisor starts as this
      // process's user and runs the binary as the OS user.
      const waitFor = opts.supervised === true ? opts.startAfter : undefined;
      const child =
        opts.supervised === true && SUPERVISOR !== undefined
          ? spawn(process.execPath, [SUPERVISOR, file, ...args], {
              cwd: '/',
              env: {
                ...env,
                ...(id === null ? {} : { STOLON_SUPERVISED_ID: `${id.uid}:${id.gid}` }),
                ...(waitFor === undefined ? {} : { STOLON_SUPERVISED_WAIT: '1' }),
              },
              stdio: ['pipe', 'pipe', 'pipe'],
            })
          : spawn(file, args, {
              cwd: '/',
              env,
              stdio: ['ignore', 'pipe', 'pipe'],
              detached: opts.detached ?? false,
              ...(id === null ? {} : { uid: id.uid, gid: id.gid }),
            });
      let stdout = '';
      let stderr = '';
      let aborted = false;
      let killTimer: NodeJS.Timeout | undefined;
      const kill = (): void => {
        child.kill('SIGTERM');
        killTimer ??= setTimeout(() => child.kill('SIGKILL'), 5000);
      };
      const onAbort = (): void => {
        aborted = true;
        kill();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              stderr += `\n(killed after ${opts.timeoutMs} ms)`;
              kill();
            }, opts.timeoutMs);
      child.stdin?.on('error', () => undefined);
      // The reason startAfter rejected with: the binary was not started.
      let notStarted: { reason: unknown } | undefined;
      waitFor?.then(
        // One byte, and the pipe stays open: its end still means "keeper gone".
        () => child.stdin?.write('g'),
        (reason: unknown) => {
          notStarted = { reason };
          child.kill('SIGTERM');
        },
      );
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout = (stdout + d).slice(-OUTPUT_LIMIT);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-OUTPUT_LIMIT);
        opts.onStderr?.(d);
      });
      const cleanup = (): void => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      child.on('error', (err) => {
        cleanup();
        rejectPromise(
          new StolonError('PG_COMMAND_FAILED', `cannot run ${file}: ${err.message}; check binPath and osUser`, {
            cause: err,
          }),
        );
      });
      child.on('close', (code, signal) => {
        cleanup();
        if (notStarted !== undefined) {
          rejectPromise(notStarted.reason);
          return;
        }
        resolvePromise({ code, signal, stdout, stderr, aborted });
      });
    });
  }

  /**
   * Home directory of the OS user (from /etc/passwd when root, read once), else ours; `/` when
   * unknown.
   */
  async #osUserHome(): Promise<string> {
    if ((await this.identity()) === null) {
      return process.env['HOME'] ?? '/';
    }
    if (this.#home === undefined) {
      try {
        const passwd = await fs.readFile('/etc/passwd', 'utf8');
        const line = passwd.split('\n').find((l) => l.startsWith(`${this.osUser}:`));
        this.#home = line?.split(':')[5] || '/';
      } catch {
        return '/';
      }
    }
    return this.#home;
  }
}

/** Lookups of {@link osUserIds} by user name: one `id` process per user and keeper process. */
const OS_USER_IDS = new Map<string, Promise<Identity>>();

/**
 * uid and primary gid of the OS user `user`, from one `id <user>` run with `LC_ALL=C` (the user
 * database through NSS, as `id -u` / `id -g` would); the answer is kept for the life of the
 * process, so the keeper's start and its PostgreSQL manager share one lookup.
 * @throws Error when `id` fails (no such user) or prints no `uid=N… gid=N`; a failed lookup is
 *   not kept, the next call runs `id` again (the user may be created meanwhile).
 */
export function osUserIds(user: string): Promise<Identity> {
  let ids = OS_USER_IDS.get(user);
  if (ids === undefined) {
    ids = new Promise<string>((res, rej) => {
      const child = spawn('id', [user], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        text += d;
      });
      child.on('error', rej);
      child.on('close', (code) => (code === 0 ? res(text) : rej(new Error(`id ${user} exited with ${code}`))));
    }).then((out) => {
      const m = /^uid=(\d+)\S* gid=(\d+)/.exec(out.trim());
      if (m === null) {
        throw new Error(`id ${user} printed ${JSON.stringify(out)}`);
      }
      return { uid: Number(m[1]), gid: Number(m[2]) };
    });
    OS_USER_IDS.set(user, ids);
    ids.catch(() => OS_USER_IDS.delete(user));
  }
  return ids;
}

async function resolveIdentity(user: string): Promise<Identity | null> {
  if (process.getuid?.() !== 0) {
    return null;
  }
  try {
    const { uid, gid } = await osUserIds(user);
    if (uid === 0) {
      throw new Error(`${user} is root`);
    }
    return { uid, gid };
  } catch (err) {
    throw new StolonError(
      'CONFIG_INVALID',
      `running as root, PostgreSQL must run as an unprivileged OS user, but ${JSON.stringify(user)} is unusable (${errorMessage(err)}); create it or pass osUser`,
      { field: 'osUser', cause: err },
    );
  }
}

/** The last `n` lines of `text`, trailing whitespace trimmed. */
export function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

/** How a command ended, for messages: `exit <code>` or `killed by <signal>`. */
export function exitText(res: ExecResult): string {
  return res.signal !== null ? `killed by ${res.signal}` : `exit ${res.code}`;
}

/**
 * `PG_COMMAND_FAILED` for a failed command: how it ended, the last 10 lines of its stderr (else
 * stdout), and `hint` (what happens next or what to do).
 */
export function commandFailed(what: string, res: ExecResult, hint: string, transient = false): StolonError {
  return new StolonError(
    'PG_COMMAND_FAILED',
    `${what} failed (${exitText(res)}): ${lastLines(res.stderr || res.stdout, 10) || 'no output'}; ${hint}`,
    { transient },
  );
}

/** @throws StolonError `ABORTED` (`<what> aborted`) when the command was aborted by its signal. */
export function throwIfAborted(res: ExecResult, what: string): void {
  if (res.aborted) {
    throw new StolonError('ABORTED', `${what} aborted`);
  }
}
