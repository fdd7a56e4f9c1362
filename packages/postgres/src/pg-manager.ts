/**
 * The PostgreSQL manager: runs initdb, pg_ctl, pg_basebackup and postgres for one PGDATA, writes
 * the keeper-owned files atomically (temporary file, fsync, rename), and probes the instance with
 * the `pg` driver. Behaviour follows Stolon's internal/postgresql/postgresql.go.
 *
 * Running as root: PostgreSQL refuses to run as root, so when `process.getuid() === 0` every
 * binary is spawned with the uid/gid of `osUser` (default `postgres`) and every file or
 * directory the manager creates is chowned to it. Secrets never appear in argv or logs: initdb
 * reads the superuser password from a temporary `--pwfile`, pg_basebackup from a temporary
 * PGPASSFILE, the walreceiver from a password file in PGDATA, and roles get a SCRAM verifier
 * computed here rather than a cleartext password.
 */
import { promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Client } from 'pg';
import type { Logger } from 'pino';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import {
  buildConnInfo,
  parseClusterState,
  parseLsn,
  parseRewindOutput,
  renderPgpassLine,
} from './config.js';
import type {
  BaseBackupOptions,
  ConnTarget,
  DbClusterState,
  PgConfig,
  PgObservation,
  PostgresManager,
  RecoveryConfig,
  RewindResult,
  StandbySettings,
  WriteConfigResult,
} from './manager.js';
import { baseBackup, restoreData, waitRecoveryDone } from './pg-clone.js';
import { restoreLastGoodConfig, writeConfig } from './pg-conf-files.js';
import { initDataDir, removeDataDir } from './pg-init.js';
import type { PgContext } from './pg-context.js';
import { OUTPUT_LIMIT, PgExec, commandFailed, lastLines, throwIfAborted, type ExecResult } from './pg-exec.js';
import { observe, readControlData, systemIdentifier } from './pg-probe.js';
import { syncSlots } from './pg-slots.js';
import { CONNECT_TIMEOUT_MS, PgSocket, defaultSocketDir, endQuietly } from './pg-socket.js';
import {
  LAST_GOOD,
  REPL_PASSFILE,
  dataWrite,
  ensureEmptyFile,
  exists,
  fsyncDir,
  putBack,
  readIfExists,
  requireInitialized,
} from './pgdata.js';
import { isRunning, waitForDeadPostmaster } from './postmaster-pid.js';
import {
  promoteStandby,
  reloadPostmaster,
  restartPostmaster,
  startPostmaster,
  stopPostmaster,
} from './postmaster.js';

/** Constructor options of {@link PgManager}. */
export interface PgManagerOptions {
  /** PGDATA; made absolute. Its parent also holds `postgres.log` and (usually) the socket dir. */
  readonly pgData: string;
  /** Directory of the PostgreSQL binaries, e.g. what `resolvePgBinDir` returns. */
  readonly binPath: string;
  /**
   * OS user that runs every PostgreSQL binary and owns every created file when this process
   * runs as root. Ignored otherwise (the current user is used).
   * @default 'postgres'
   */
  readonly osUser?: string;
  /** Superuser role created by initdb and used for every local SQL connection. */
  readonly suUsername: string;
  /** Never logged, never in argv. */
  readonly suPassword: string;
  /** Replication role created by {@link PgManager.init} (may equal `suUsername`). */
  readonly replUsername: string;
  /** Never logged, never in argv. */
  readonly replPassword: string;
  /**
   * The keeper's `--pg-listen-address`, replaced by the one of the last
   * {@link PgManager.writeConfig}. The manager itself always connects through the Unix socket,
   * so a wildcard (`*`, `0.0.0.0`) is fine here.
   */
  readonly listenAddress: string;
  /**
   * TCP port, also naming the Unix socket `.s.PGSQL.<port>` the manager connects to; replaced by
   * the one of the last {@link PgManager.writeConfig} (and used by init's temporary instance).
   */
  readonly port: number;
  /** Injected pino logger (docs/design.md#logging). */
  readonly logger: Logger;
  /**
   * Directory for the Unix-domain socket. Default: `<PGDATA parent>/run`, or a per-PGDATA
   * directory under `os.tmpdir()` when that path would make the socket path longer than the
   * ~100 bytes a socket address can hold.
   */
  readonly socketDir?: string;
}

/**
 * Files of PGDATA that belong to this node, not to the data: pg_rewind would replace them by
 * the source's (or delete them), so they are saved before and put back after it.
 */
const NODE_FILES = [
  'postgresql.conf',
  'pg_hba.conf',
  'postgresql.auto.conf',
  `postgresql.conf${LAST_GOOD}`,
  `pg_hba.conf${LAST_GOOD}`,
  REPL_PASSFILE,
] as const;
/**
 * {@link PostgresManager} over the PostgreSQL ≥ 12 binaries in `binPath` (tested with 15).
 *
 * Files: `<PGDATA>/postgresql.conf`, `pg_hba.conf`, `postgresql.auto.conf` (kept empty),
 * `standby.signal` / `recovery.signal`, `stolon-replication.pgpass` (internal standby only) and
 * `postgresql.conf.last-good` / `pg_hba.conf.last-good` (the last files PostgreSQL accepted)
 * are owned by the manager; `<PGDATA>/../postgres.log` receives the server log; base backups
 * are made in `<PGDATA>.basebackup` and renamed over PGDATA once complete.
 */
export class PgManager implements PostgresManager {
  /** Absolute PGDATA. */
  readonly pgData: string;
  /** Server log file (`pg_ctl -l`): `<PGDATA>/../postgres.log`. */
  readonly logFile: string;
  /** Unix socket directory (`unix_socket_directories`), see {@link PgManagerOptions.socketDir}. */
  readonly socketDir: string;

  readonly #ctx: PgContext;
  readonly #roles: {
    readonly su: { readonly user: string; readonly password: string };
    readonly repl: { readonly user: string; readonly password: string };
  };

  /** @throws StolonError `CONFIG_INVALID` when `pgData` resolves to `/`. */
  constructor(opts: PgManagerOptions) {
    this.pgData = resolve(opts.pgData);
    if (this.pgData === dirname(this.pgData)) {
      throw new StolonError('CONFIG_INVALID', `refusing to use ${this.pgData} as PGDATA; pass a dedicated directory`, {
        field: 'pgData',
      });
    }
    this.logFile = join(dirname(this.pgData), 'postgres.log');
    this.socketDir = opts.socketDir ?? defaultSocketDir(this.pgData);
    this.#roles = {
      su: { user: opts.suUsername, password: opts.suPassword },
      repl: { user: opts.replUsername, password: opts.replPassword },
    };
    const log = opts.logger;
    const exec = new PgExec({ binPath: opts.binPath, osUser: opts.osUser ?? 'postgres', log });
    const listen = { address: opts.listenAddress, port: opts.port };
    const socket = new PgSocket({ dir: this.socketDir, listen, su: this.#roles.su, exec, log });
    this.#ctx = { pgData: this.pgData, logFile: this.logFile, log, exec, socket, listen };
  }

  /** `postgres -V` major/minor, see {@link PgExec.binaryVersion}. */
  binaryVersion(): Promise<{ Maj: number; Min: number }> {
    return this.#ctx.exec.binaryVersion();
  }

  /** initdb and the replication role, see {@link initDataDir} in pg-init.ts. */
  init(opts: { locale?: string; encoding?: string; dataChecksums?: boolean; signal?: AbortSignal }): Promise<void> {
    return initDataDir(this.#ctx, this.#roles, opts);
  }

  /** Writes and validates the configuration files, see {@link writeConfig} in pg-conf-files.ts. */
  writeConfig(config: PgConfig, recovery: RecoveryConfig | null): Promise<WriteConfigResult> {
    return writeConfig(this.#ctx, config, recovery);
  }

  /** Puts the last accepted configuration back, see {@link restoreLastGoodConfig} in pg-conf-files.ts. */
  restoreLastGoodConfig(): Promise<boolean> {
    return restoreLastGoodConfig(this.#ctx);
  }

  /** Starts the postmaster with pg_ctl, see {@link startPostmaster} in postmaster.ts. */
  start(timeoutMs: number): Promise<void> {
    return startPostmaster(this.#ctx, timeoutMs, true);
  }

  /** Stops (`fast`) and starts again, see {@link restartPostmaster} in postmaster.ts. */
  restart(timeoutMs: number): Promise<void> {
    return restartPostmaster(this.#ctx, timeoutMs);
  }

  /** `pg_ctl stop`, see {@link stopPostmaster} in postmaster.ts. */
  stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    return stopPostmaster(this.#ctx, mode);
  }

  /** `pg_ctl reload`, see {@link reloadPostmaster} in postmaster.ts. */
  reload(): Promise<void> {
    return reloadPostmaster(this.#ctx);
  }

  /** Promotes the standby and waits for the end of recovery, see {@link promoteStandby} in postmaster.ts. */
  promote(timeoutMs: number): Promise<void> {
    return promoteStandby(this.#ctx, timeoutMs);
  }

  /** Replaces PGDATA by a base backup of the primary, see {@link baseBackup} in pg-clone.ts. */
  baseBackup(standby: StandbySettings, opts: BaseBackupOptions = {}): Promise<void> {
    return baseBackup(this.#ctx, standby, opts);
  }

  /**
   * pg_rewind of the stopped instance onto `source`'s timeline:
   *
   * 1. pg_control must say "shut down" or "shut down in recovery"; otherwise crash recovery runs
   *    first in single-user mode (`postgres --single -D PGDATA -c archive_mode=on -c
   *    archive_command=false template1 < /dev/null`, as Patroni does: the archive settings keep
   *    the end-of-recovery checkpoint from recycling WAL that pg_rewind still has to read), with
   *    the signal files moved away meanwhile (single-user mode refuses standby mode);
   * 2. `localEnd` is read from pg_control, see {@link RewindResult.localEnd}; a symlinked
   *    postgresql.auto.conf (Stolon's `/dev/null` trick, which pg_rewind rejects) is replaced by
   *    an empty file; the source gets a CHECKPOINT, so its control file shows its new timeline
   *    even right after its promotion;
   * 3. this node's files ({@link NODE_FILES}: configuration, last-good copies, replication
   *    password file) are saved, because pg_rewind replaces them by the source's;
   * 4. `pg_rewind --target-pgdata=PGDATA --source-server='<conninfo>' --progress` as the OS user;
   *    the conninfo has `dbname=postgres`, `sslmode=prefer`, `connect_timeout=10`,
   *    `options='-c synchronous_commit=off'` (Stolon's, so a synchronous primary without a
   *    standby cannot block it) and `passfile=` pointing at a temporary password file;
   * 5. the saved files are put back (also after a failure), and on success `standby.signal`
   *    replaces any `recovery.signal`.
   *
   * @param source the new primary, as a superuser (pg_rewind reads its files with
   *   pg_read_binary_file).
   * @param signal aborting kills the running step; PGDATA is then unusable (base backup next).
   * @throws StolonError `DATA_DIR_INVALID` when running or not initialised;
   *   `PG_COMMAND_FAILED` (transient) when single-user crash recovery failed;
   *   `PG_COMMAND_FAILED` (not transient) with pg_rewind's stderr tail (never a password);
   *   `ABORTED`.
   * @see https://www.postgresql.org/docs/current/app-pgrewind.html
   * @see https://www.postgresql.org/docs/current/app-postgres.html (single-user mode)
   */
  async rewind(source: ConnTarget, signal?: AbortSignal): Promise<RewindResult> {
    if (await this.isRunning()) {
      throw new StolonError('DATA_DIR_INVALID', `cannot rewind ${this.pgData} while postgres runs on it; stop it first`);
    }
    await requireInitialized(this.pgData, 'rewind');
    let control = await readControlData(this.#ctx);
    let state = parseClusterState(control.get('Database cluster state'));
    if (state !== 'shut down' && state !== 'shut down in recovery') {
      await this.#crashRecover(state, signal);
      control = await readControlData(this.#ctx);
      state = parseClusterState(control.get('Database cluster state'));
      if (state !== 'shut down' && state !== 'shut down in recovery') {
        throw new StolonError(
          'PG_COMMAND_FAILED',
          `after single-user crash recovery pg_control still says ${JSON.stringify(state ?? control.get('Database cluster state'))}; fall back to a base backup`,
          { transient: true },
        );
      }
    }
    const lsnOf = (label: string): number => {
      const v = control.get(label);
      return v === undefined ? 0 : parseLsn(v);
    };
    const localEnd = Math.max(lsnOf('Latest checkpoint location'), lsnOf('Minimum recovery ending location'));
    const localTimeline = Number(control.get("Latest checkpoint's TimeLineID") ?? '0');

    // Stolon's postgresql.auto.conf → /dev/null symlink makes pg_rewind fail; ours is a file.
    const auto = join(this.pgData, 'postgresql.auto.conf');
    if ((await fs.lstat(auto).catch(() => undefined))?.isSymbolicLink() === true) {
      await dataWrite(this.pgData, 'replacing the postgresql.auto.conf symlink', () => this.#ctx.exec.writeAtomic(auto, ''));
    }
    await this.#checkpointSource(source);
    const saved = await this.#snapshotNodeFiles();
    this.#ctx.log.info(
      { pgData: this.pgData, host: source.host, port: source.port, localEnd },
      `rewinding onto the timeline of ${source.host}:${source.port} (pg_rewind)`,
    );
    let output = '';
    let res: ExecResult;
    try {
      res = await this.#ctx.exec.withSecretFile(renderPgpassLine(source.user, source.password), (pgpass) => {
        const conninfo = buildConnInfo({
          application_name: 'stolon-ts-rewind',
          connect_timeout: '10',
          dbname: 'postgres',
          host: source.host,
          options: '-c synchronous_commit=off',
          passfile: pgpass,
          port: String(source.port),
          sslmode: 'prefer',
          user: source.user,
        });
        return this.#ctx.exec.run('pg_rewind', [`--target-pgdata=${this.pgData}`, `--source-server=${conninfo}`, '--progress'], {
          env: { LC_ALL: 'C' },
          signal,
          // The divergence line comes first; the stderr kept at the end is only a tail.
          onStderr: (chunk) => {
            if (output.length < OUTPUT_LIMIT) {
              output += chunk;
            }
          },
        });
      });
    } finally {
      await dataWrite(this.pgData, 'putting back the node configuration after pg_rewind', () => this.#restoreNodeFiles(saved));
    }
    throwIfAborted(res, 'pg_rewind');
    if (res.code !== 0) {
      throw commandFailed('pg_rewind', res, 'fall back to a base backup');
    }
    const parsed = parseRewindOutput(output);
    let result: RewindResult;
    if (parsed !== undefined) {
      result = { ...parsed, localEnd };
    } else if (/no rewind required/.test(output)) {
      // Same timeline as the source ("source and target cluster are on the same timeline"):
      // nothing diverged, the local WAL simply ends earlier.
      result = { divergedAt: localEnd, divergedTimeline: localTimeline, localEnd, rewound: false };
    } else {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `pg_rewind succeeded but printed no divergence point: ${lastLines(output, 10)}; fall back to a base backup`,
      );
    }
    await dataWrite(this.pgData, 'writing standby.signal after pg_rewind', async () => {
      // A rewound PGDATA must replay the source's WAL before it is consistent: never start it
      // as a primary.
      await fs.rm(join(this.pgData, 'recovery.signal'), { force: true });
      await ensureEmptyFile(this.#ctx.exec, join(this.pgData, 'standby.signal'));
      await fsyncDir(this.pgData);
    });
    this.#ctx.log.info({ pgData: this.pgData, ...result }, 'pg_rewind complete');
    return result;
  }

  /** Recreates PGDATA with the dataRestoreCommand, see {@link restoreData} in pg-clone.ts. */
  restoreData(command: string, signal?: AbortSignal): Promise<void> {
    return restoreData(this.#ctx, command, signal);
  }

  /** Waits for the end of archive recovery, see {@link waitRecoveryDone} in pg-clone.ts. */
  waitRecoveryDone(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return waitRecoveryDone(this.#ctx, timeoutMs, signal);
  }

  /** `Database system identifier` from pg_controldata, see {@link systemIdentifier} in pg-probe.ts. */
  systemIdentifier(): Promise<string | undefined> {
    return systemIdentifier(this.#ctx);
  }

  /** Removes PGDATA, see {@link removeDataDir} in pg-init.ts. */
  removeData(): Promise<void> {
    return removeDataDir(this.#ctx);
  }

  /** Probes the instance (never throws), see {@link observe} in pg-probe.ts. */
  observe(): Promise<PgObservation> {
    return observe(this.#ctx);
  }

  /** Creates wanted slots, drops unwanted `stolon_*` ones, see {@link syncSlots} in pg-slots.ts. */
  syncSlots(wanted: readonly string[]): Promise<void> {
    return syncSlots(this.#ctx, wanted);
  }

  /** Whether a postmaster runs on PGDATA, see {@link isRunning} in postmaster-pid.ts. */
  isRunning(): Promise<boolean> {
    return isRunning(this.pgData);
  }

  // ---------------------------------------------------------------- internals

  /** Contents of {@link NODE_FILES} (null = absent), to put back after pg_rewind. */
  async #snapshotNodeFiles(): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    for (const name of NODE_FILES) {
      out.set(name, await readIfExists(join(this.pgData, name)));
    }
    return out;
  }

  /** Puts back what {@link #snapshotNodeFiles} saw; files already identical are not rewritten. */
  async #restoreNodeFiles(saved: ReadonlyMap<string, string | null>): Promise<void> {
    for (const [name, content] of saved) {
      const path = join(this.pgData, name);
      const lst = await fs.lstat(path).catch(() => undefined);
      if (content === null ? lst === undefined : lst?.isFile() === true && (await readIfExists(path)) === content) {
        continue;
      }
      await putBack(this.#ctx.exec, path, content);
    }
    await fsyncDir(this.pgData);
  }

  /**
   * Crash recovery of a stopped, uncleanly shut down instance in single-user mode, so that
   * pg_rewind gets a cleanly shut down target (Patroni's `ensure_clean_shutdown`). The signal
   * files are moved away meanwhile and put back afterwards, whatever happens.
   * @throws StolonError `PG_COMMAND_FAILED` (transient) with the server's stderr tail; `ABORTED`.
   */
  async #crashRecover(state: DbClusterState | undefined, signal: AbortSignal | undefined): Promise<void> {
    this.#ctx.log.warn(
      { pgData: this.pgData, clusterState: state },
      'postgres was not shut down cleanly; running crash recovery in single-user mode before pg_rewind',
    );
    await waitForDeadPostmaster(this.#ctx);
    const signals: string[] = [];
    for (const name of ['standby.signal', 'recovery.signal']) {
      if (await exists(join(this.pgData, name))) {
        signals.push(name);
        await fs.rm(join(this.pgData, name));
      }
    }
    try {
      const res = await this.#ctx.exec.run(
        'postgres',
        ['--single', '-D', this.pgData, '-c', 'archive_mode=on', '-c', 'archive_command=false', 'template1'],
        { env: { LC_ALL: 'C' }, signal },
      );
      throwIfAborted(res, 'single-user crash recovery');
      if (res.code !== 0) {
        throw commandFailed('postgres --single (crash recovery)', res, 'retry later or fall back to a base backup', true);
      }
    } finally {
      for (const name of signals) {
        await ensureEmptyFile(this.#ctx.exec, join(this.pgData, name));
      }
    }
  }

  /**
   * Runs CHECKPOINT on the rewind source. pg_rewind takes the source's timeline from its control
   * file, which a freshly promoted primary updates only at its first checkpoint after the
   * promotion; before that pg_rewind finds both servers "on the same timeline", rewinds nothing,
   * and the target then cannot follow (its WAL is past the fork). Patroni checkpoints after a
   * promotion for the same reason.
   * @throws StolonError `PG_COMMAND_FAILED` (not transient, as a failed pg_rewind: fall back to a
   *   base backup) when the source cannot be reached or the checkpoint fails.
   * @see https://www.postgresql.org/docs/current/app-pgrewind.html
   */
  async #checkpointSource(source: ConnTarget): Promise<void> {
    const client = new Client({
      host: source.host,
      port: source.port,
      user: source.user,
      password: source.password,
      database: 'postgres',
      application_name: 'stolon-ts-rewind',
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: 60_000,
    });
    client.on('error', (err) => this.#ctx.log.debug({ err: errorMessage(err) }, 'rewind source connection error'));
    try {
      await client.connect();
      await client.query('CHECKPOINT');
    } catch (err) {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `cannot CHECKPOINT the rewind source ${source.host}:${source.port} before pg_rewind: ${errorMessage(err)}; fall back to a base backup`,
        { transient: false, cause: err },
      );
    } finally {
      await endQuietly(client);
    }
  }

}

// ------------------------------------------------------------------ helpers
