/**
 * The PostgreSQL manager: `PgManager`, the {@link PostgresManager} the keeper drives, for one
 * PGDATA. It holds the context its parts share (pg-context.ts) and hands each call to the module
 * whose job it is; docs/architecture.md, "PostgreSQL manager", lists them. Behaviour follows
 * Stolon's internal/postgresql/postgresql.go.
 *
 * Running as root: PostgreSQL refuses to run as root, so when `process.getuid() === 0` every
 * binary is spawned with the uid/gid of `osUser` (default `postgres`) and every file or
 * directory the manager creates is chowned to it. Secrets never appear in argv, logs, PGDATA or
 * the environment of PostgreSQL: initdb reads the superuser password from a temporary
 * `--pwfile`, pg_basebackup from a temporary PGPASSFILE, the walreceiver from a password file
 * next to PGDATA (not in it, so base backups of the node do not carry it), roles get a SCRAM
 * verifier computed here rather than a cleartext password, and every binary starts from a
 * minimal environment (`childEnv` in pg-exec.ts), not the keeper's.
 */
import { accessSync, constants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { StolonError } from '@stolon-ts/cluster';
import type {
  BaseBackupOptions,
  ConnTarget,
  DataRestoreProgram,
  PgConfig,
  PgObservation,
  PostgresManager,
  RecoveryConfig,
  RewindResult,
  StandbySettings,
  SyncSlotsOptions,
  ToolResult,
  WriteConfigResult,
} from './manager.js';
import type { PeerSsl } from './config.js';
import { baseBackup, restoreData, waitRecoveryDone } from './pg-clone.js';
import { restoreLastGoodConfig, writeConfig } from './pg-conf-files.js';
import type { PgContext } from './pg-context.js';
import { PgExec } from './pg-exec.js';
import { initDataDir, removeDataDir } from './pg-init.js';
import { observe, systemIdentifier, waitStreamingEnd } from './pg-probe.js';
import { rewind } from './pg-rewind.js';
import { setRolePassword } from './pg-roles.js';
import { syncSlots } from './pg-slots.js';
import { PgSocket, defaultSocketDir } from './pg-socket.js';
import { REPL_PASSFILE } from './pgdata.js';
import { isRunning } from './postmaster-pid.js';
import { checkpoint, promoteStandby, reloadPostmaster, restartPostmaster, startPostmaster, stopPostmaster } from './postmaster.js';

/** How often {@link PgManager.waitStreamingEnd} asks pg_stat_wal_receiver, ms. */
const STREAMING_END_POLL_MS = 10;

/** Constructor options of {@link PgManager}. */
export interface PgManagerOptions {
  /**
   * PGDATA; made absolute. Its parent also holds `postgres.log`, the replication password file
   * `replication.pgpass` and (usually) the socket dir.
   */
  readonly pgData: string;
  /** Directory of the PostgreSQL binaries, e.g. what `resolvePgBinDir` returns. */
  readonly binPath: string;
  /**
   * OS user that runs every PostgreSQL binary and owns every created file when this process
   * runs as root. Ignored otherwise (the current user is used).
   * @default 'postgres'
   */
  readonly osUser?: string;
  /**
   * Superuser role created by initdb and used for every local SQL connection (peer
   * authentication through pg_ident.conf, see `renderIdentConf` in config.ts).
   */
  readonly suUsername: string;
  /** Never logged, never in argv. The value at start; {@link PgManager.setPasswords} replaces it. */
  readonly suPassword: string;
  /** Replication role created by {@link PgManager.init} (may equal `suUsername`). */
  readonly replUsername: string;
  /** Never logged, never in argv. The value at start; {@link PgManager.setPasswords} replaces it. */
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
  /**
   * How connections to the other keepers (a standby's walreceiver, pg_basebackup, pg_rewind and
   * its CHECKPOINT) use TLS: a CA file (PEM, readable by the OS user) and `verify-full` or
   * `verify-ca`, or `require` (encrypted, unverified). Absent: `sslmode=prefer` (encrypted when
   * offered, unverified; the CHECKPOINT connection unencrypted). See `clientSslParams`.
   */
  readonly peerSsl?: PeerSsl | undefined;
}

/**
 * {@link PostgresManager} over the PostgreSQL ≥ 12 binaries in `binPath` (tested with 15).
 *
 * Files: `<PGDATA>/postgresql.conf`, `pg_hba.conf`, `pg_ident.conf`, `postgresql.auto.conf` (kept empty),
 * `standby.signal` / `recovery.signal` and `postgresql.conf.last-good` / `pg_hba.conf.last-good`
 * (the last files PostgreSQL accepted) are owned by the manager, and so is
 * `<PGDATA>/../replication.pgpass` (internal standby only; outside PGDATA so that no base backup
 * carries it); `<PGDATA>/../postgres.log` receives the server log; base backups are made in
 * `<PGDATA>.basebackup` and renamed over PGDATA once complete.
 */
export class PgManager implements PostgresManager {
  /** Absolute PGDATA. */
  readonly pgData: string;
  /** Server log file (`pg_ctl -l`): `<PGDATA>/../postgres.log`. */
  readonly logFile: string;
  /**
   * The walreceiver's password file (`primary_conninfo`'s `passfile=`):
   * `<PGDATA>/../replication.pgpass`, mode 0600, owned by the OS user; present only while
   * configured as an internal standby.
   */
  readonly replPassfile: string;
  /** Unix socket directory (`unix_socket_directories`), see {@link PgManagerOptions.socketDir}. */
  readonly socketDir: string;

  readonly #ctx: PgContext;
  /** Passwords replaced in place by {@link setPasswords}: the socket reads `su` at every connection. */
  readonly #roles: {
    readonly su: { readonly user: string; password: string };
    readonly repl: { readonly user: string; password: string };
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
    this.replPassfile = join(dirname(this.pgData), REPL_PASSFILE);
    this.socketDir = opts.socketDir ?? defaultSocketDir(this.pgData);
    this.#roles = {
      su: { user: opts.suUsername, password: opts.suPassword },
      repl: { user: opts.replUsername, password: opts.replPassword },
    };
    const log = opts.logger;
    const exec = new PgExec({ binPath: opts.binPath, osUser: opts.osUser ?? 'postgres', log });
    const listen = { address: opts.listenAddress, port: opts.port };
    const socket = new PgSocket({ dir: this.socketDir, listen, su: this.#roles.su, exec, log });
    this.#ctx = {
      pgData: this.pgData,
      suUser: opts.suUsername,
      logFile: this.logFile,
      replPassfile: this.replPassfile,
      log,
      exec,
      socket,
      listen,
      ...(opts.peerSsl !== undefined ? { peerSsl: opts.peerSsl } : {}),
    };
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

  /** `CHECKPOINT`, see {@link checkpoint} in postmaster.ts. */
  checkpoint(): Promise<void> {
    return checkpoint(this.#ctx);
  }

  /** Stops the postmaster (as `pg_ctl stop`), see {@link stopPostmaster} in postmaster.ts. */
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

  /** Waits for the WAL receiver to stop streaming, see {@link waitStreamingEnd} in pg-probe.ts. */
  waitStreamingEnd(timeoutMs: number, wanted: () => boolean): Promise<boolean> {
    return waitStreamingEnd(this.#ctx, timeoutMs, STREAMING_END_POLL_MS, wanted);
  }

  /** Replaces PGDATA by a base backup of the primary, see {@link baseBackup} in pg-clone.ts. */
  baseBackup(standby: StandbySettings, opts: BaseBackupOptions = {}): Promise<void> {
    return baseBackup(this.#ctx, standby, opts);
  }

  /** pg_rewind onto `source`'s timeline, see {@link rewind} in pg-rewind.ts. */
  rewind(source: ConnTarget, signal?: AbortSignal): Promise<RewindResult> {
    return rewind(this.#ctx, source, signal);
  }

  /** Recreates PGDATA with the dataRestoreCommand, see {@link restoreData} in pg-clone.ts. */
  restoreData(command: string | DataRestoreProgram, signal?: AbortSignal): Promise<void> {
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
  syncSlots(wanted: readonly string[], opts?: SyncSlotsOptions): Promise<void> {
    return syncSlots(this.#ctx, wanted, opts);
  }

  /** Replaces the passwords used from now on (nothing changes in PostgreSQL), see {@link PostgresManager.setPasswords}. */
  setPasswords(passwords: { readonly su: string; readonly repl: string }): void {
    this.#roles.su.password = passwords.su;
    this.#roles.repl.password = passwords.repl;
  }

  /** ALTER ROLE with a client-side SCRAM verifier, see {@link setRolePassword} in pg-roles.ts. */
  setRolePassword(role: string, password: string): Promise<void> {
    return setRolePassword(this.#ctx, role, password);
  }

  /** Whether a postmaster runs on PGDATA, see {@link isRunning} in postmaster-pid.ts. */
  isRunning(): Promise<boolean> {
    return isRunning(this.pgData);
  }

  /** The kept probe connection as a crash signal, see {@link PostgresManager.watchConnection} and `PgSocket.onProbeClosed`. */
  watchConnection(onClosed: () => void): { open(): boolean; stop(): void } {
    const socket = this.#ctx.socket;
    const stop = socket.onProbeClosed(onClosed);
    return { open: () => socket.probeOpen(), stop };
  }

  /** Runs a tool as the OS user, see {@link PostgresManager.runTool}. */
  async runTool(
    file: string,
    args: readonly string[],
    opts: { readonly timeoutMs?: number; readonly onStderr?: (chunk: string) => void; readonly supervised?: boolean; readonly signal?: AbortSignal } = {},
  ): Promise<ToolResult> {
    const res = await this.#ctx.exec.run(file.startsWith('/') ? file : whichInPath(file), args, opts);
    return { code: res.code, stdout: res.stdout, stderr: res.stderr };
  }
}

/**
 * The absolute path of executable `name` in the keeper's PATH (else /usr/local/bin, /usr/bin, /bin).
 * @throws StolonError `PG_COMMAND_FAILED` naming it when none is found.
 */
function whichInPath(name: string): string {
  const path = process.env['PATH'] !== undefined && process.env['PATH'] !== '' ? process.env['PATH'] : '/usr/local/bin:/usr/bin:/bin';
  for (const dir of path.split(':')) {
    const file = join(dir === '' ? '.' : dir, name);
    try {
      accessSync(file, constants.X_OK);
      return resolve(file);
    } catch {
      // Not here.
    }
  }
  throw new StolonError('PG_COMMAND_FAILED', `cannot find ${name} in PATH (${path}); install it or add its directory to the keeper's PATH`);
}
