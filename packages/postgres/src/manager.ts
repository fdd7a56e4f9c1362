/**
 * The contract of the PostgreSQL manager: everything the keeper does to its instance goes through
 * it, so the keeper's planning stays pure and testable without PostgreSQL. The implementation (`pg-manager.ts`) runs the PostgreSQL 15+ binaries,
 * as an unprivileged OS user when the keeper runs as root, and writes config files atomically.
 * Units: LSNs and sizes are byte counts (`number`, exact up to 8 PiB), durations are ms.
 */
import type { TimelineHistoryEntry } from '@stolon-ts/cluster';

/** How to connect to some instance (the followed primary, or the local one). */
export interface ConnTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Never logged, never put in argv (passed via a password file or the `pg` driver). */
  readonly password: string;
}

/** An internal standby's settings: it follows another DB of this cluster. */
export interface StandbySettings {
  /** Followed primary, connected to as the replication role. */
  readonly primary: ConnTarget;
  /** application_name to use, e.g. `stolon_<dbuid>`; names the standby in pg_stat_replication. */
  readonly applicationName: string;
  /** Physical slot on the primary, e.g. `stolon_<dbuid>`. */
  readonly slotName: string;
}

/**
 * Where point-in-time recovery stops (Stolon `recoveryTargetSettings`). At most one of
 * `recoveryTarget`, `recoveryTargetLsn`, `recoveryTargetName`, `recoveryTargetTime`,
 * `recoveryTargetXid`; each value is written verbatim (quoted) as the parameter of that name.
 * @see https://www.postgresql.org/docs/current/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET
 */
export interface RecoveryTarget {
  /** `recovery_target`: only `immediate` (end of the base backup) is valid. */
  readonly recoveryTarget?: string | undefined;
  /** `recovery_target_lsn`, e.g. `0/3000060`. */
  readonly recoveryTargetLsn?: string | undefined;
  /** `recovery_target_name`: a restore point made with pg_create_restore_point(). */
  readonly recoveryTargetName?: string | undefined;
  /** `recovery_target_time`, e.g. `2024-01-01 12:00:00+00`. */
  readonly recoveryTargetTime?: string | undefined;
  /** `recovery_target_xid`. */
  readonly recoveryTargetXid?: string | undefined;
  /** `recovery_target_timeline`: `current`, `latest` or a number. */
  readonly recoveryTargetTimeline?: string | undefined;
}

/**
 * How the instance recovers, for PostgreSQL ≥ 12 (parameters in postgresql.conf, activated by a
 * signal file); `null` in {@link PostgresManager.writeConfig} means a primary (no signal file).
 *
 * - `standby`: an internal standby (standby.signal); the replication password goes to a password
 *   file in PGDATA, never into postgresql.conf.
 * - `standby-external`: the primary of a standby cluster, following a primary outside the
 *   cluster (Stolon `standbyConfig`); `primaryConninfo` is written verbatim.
 * - `recovery`: point-in-time recovery (recovery.signal) from an archive; with a `target`,
 *   `recovery_target_action = 'promote'` is added, without one `recovery_target_timeline =
 *   'latest'` (recover to the end of the archive). `restoreCommand` is required in practice
 *   (PostgreSQL refuses recovery.signal without it; the manager throws `CONFIG_INVALID`).
 *
 * Standby modes always set `recovery_target_timeline = 'latest'` to follow promotions. An
 * `undefined` or empty optional value leaves the parameter out.
 * @see https://www.postgresql.org/docs/current/recovery-config.html
 */
export type RecoveryConfig =
  | {
      readonly mode: 'standby';
      readonly standby: StandbySettings;
      /** `restore_command` (e.g. the keeper's pgBackRest `archive-get`): WAL from the archive when streaming has none. */
      readonly restoreCommand?: string | undefined;
    }
  | {
      readonly mode: 'standby-external';
      readonly primaryConninfo: string;
      readonly primarySlotName?: string | undefined;
      /** `recovery_min_apply_delay`, PostgreSQL syntax, e.g. `5min`. */
      readonly recoveryMinApplyDelay?: string | undefined;
      readonly restoreCommand?: string | undefined;
    }
  | {
      readonly mode: 'recovery';
      /** `restore_command`, e.g. `cp /archive/%f %p`. */
      readonly restoreCommand?: string | undefined;
      readonly target?: RecoveryTarget | undefined;
    };

/**
 * A program that fills an empty PGDATA for {@link PostgresManager.restoreData} (the keeper's
 * `pgbackrest restore`), run as the OS user without a shell parsing its arguments.
 */
export interface DataRestoreProgram {
  /** Names it in logs and errors, e.g. `pgbackrest restore (pitrConfig.fromBackup)`. */
  readonly what: string;
  /** Absolute, or a bare name looked up in the child's PATH (the PostgreSQL binaries, then the keeper's PATH). */
  readonly program: string;
  /** Its arguments, PGDATA among them where it needs it; never a secret (argv is visible). */
  readonly args: readonly string[];
}

/** The result of {@link PostgresManager.runTool}. */
export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** What the keeper wants in postgresql.conf and pg_hba.conf, besides the recovery settings. */
export interface PgConfig {
  readonly listenAddress: string;
  readonly port: number;
  /** User parameters (spec.pgParameters); managed ones are overridden by the manager. */
  readonly parameters: Readonly<Record<string, string>>;
  readonly maxStandbys: number;
  readonly additionalWalSenders: number;
  readonly synchronousStandbyNames: string;
  /**
   * Ignored by rendering: `wal_log_hints` is always on (see `renderPostgresqlConf`), so any DB
   * can be rewound. Whether to *try* pg_rewind is the keeper's decision.
   * @deprecated kept so existing callers compile; will be removed.
   */
  readonly usePgrewind?: boolean;
  /** pg_hba.conf lines, complete (the keeper renders them with `renderHbaLines`). */
  readonly hba: readonly string[];
  /** Server TLS: absent, PostgreSQL's own (or pgParameters') `ssl` settings stay as they are. */
  readonly ssl?: PgSslFiles | undefined;
}

/**
 * The server certificate files PostgreSQL is to use (`ssl = on`), as the keeper installed them
 * (absolute paths readable by PostgreSQL's OS user; the key file of mode 0600, or 0640 owned by
 * root, as PostgreSQL requires).
 * @see https://www.postgresql.org/docs/current/ssl-tcp.html#SSL-SERVER-FILES
 */
export interface PgSslFiles {
  /** `ssl_cert_file`: the server certificate (PEM), possibly followed by intermediates. */
  readonly certFile: string;
  /** `ssl_key_file`: its private key (PEM). */
  readonly keyFile: string;
  /** `ssl_ca_file`: CA certificates (PEM); absent: not set. */
  readonly caFile?: string | undefined;
  /**
   * A digest of the three files' contents, written as a comment into postgresql.conf: new files
   * change postgresql.conf, so the keeper reloads PostgreSQL, which then reads them.
   */
  readonly digest: string;
}

/** Result of {@link PostgresManager.writeConfig}. */
export interface WriteConfigResult {
  /** postgresql.conf or pg_hba.conf content differed from what was on disk (a reload is due). */
  readonly changed: boolean;
  /**
   * Parameters (lower-case names) whose new value only takes effect after a restart, when the
   * instance is running: restart-only (`postmaster` context) settings whose value in the new
   * file differs from the running one. Empty when stopped. A restart-only parameter *removed*
   * from the file is not listed here; it appears in {@link PgObservation.pendingRestart} after
   * the reload.
   */
  readonly pendingRestart: readonly string[];
}

/**
 * The `Database cluster state` pg_controldata prints (the `DBState` of pg_control).
 * `in production` / `in crash recovery` / `in archive recovery` / `starting up` on a stopped
 * instance mean it was not shut down cleanly.
 * @see https://www.postgresql.org/docs/current/app-pgcontroldata.html
 */
export type DbClusterState =
  | 'starting up'
  | 'shut down'
  | 'shut down in recovery'
  | 'shutting down'
  | 'in crash recovery'
  | 'in archive recovery'
  | 'in production';

/** Observed instance state (a probe; never throws for a stopped instance). */
export interface PgObservation {
  /** PGDATA exists and holds an initialised cluster (PG_VERSION present). */
  readonly initialized: boolean;
  /** The postmaster is running and accepts connections. */
  readonly running: boolean;
  readonly role: 'master' | 'standby' | undefined;
  /** Running only: `pg_postmaster_start_time()` as ms since the epoch (changes on every restart). */
  readonly startedAtMs?: number;
  readonly systemId: string;
  readonly timelineId: number;
  /** Current LSN in bytes: pg_current_wal_lsn() on a primary, max(received, replayed) on a standby. */
  readonly xLogPos: number;
  /** Standby only: pg_last_wal_replay_lsn() in bytes, what readers of the standby see. */
  readonly replayedXLogPos?: number;
  /** Standby only: pg_last_wal_receive_lsn() in bytes; absent before the standby received any WAL by streaming. */
  readonly receivedXLogPos?: number;
  /**
   * Standby only: a WAL receiver runs and streams from the primary (`pg_stat_wal_receiver.status`
   * is `streaming`); false while it is starting, catching up from the archive, or gone.
   */
  readonly walReceiverStreaming?: boolean;
  /**
   * Standby only: `pg_last_xact_replay_timestamp()` as ms since the epoch, the commit time on the
   * primary of the last transaction replayed; absent before any was replayed since the start.
   */
  readonly lastReplayAtMs?: number;
  /** application_names of standbys currently streaming, with their sync_state. */
  readonly replication: readonly { applicationName: string; syncState: string }[];
  /** Existing physical replication slots (non-temporary). */
  readonly slots: readonly string[];
  /** Oldest WAL segment file name in pg_wal, "" if unknown. */
  readonly olderWalFile: string;
  /**
   * Running only: parameters changed in the configuration files (as of the last reload) that
   * wait for a restart (`pg_settings.pending_restart`), sorted; `[]` when stopped.
   */
  readonly pendingRestart: readonly string[];
  /**
   * Ancestors of the current timeline, from `pg_wal/<timeline>.history` (also read while
   * stopped): one entry per earlier timeline with the LSN where it ended. `[]` on timeline 1.
   */
  readonly timelinesHistory: readonly TimelineHistoryEntry[];
  /**
   * pg_controldata's cluster state, set only when the probe could not connect (stopped, or not
   * accepting connections); tells a clean shutdown from a crash.
   */
  readonly clusterState?: DbClusterState;
  /** Why the probe could not see more (not running, auth failure...), for the keeper's reason. */
  readonly error?: string;
  /** Running only: WAL archiving as PostgreSQL reports it (`pg_stat_archiver`, `pg_wal/archive_status`). */
  readonly archiver?: ArchiverObservation;
}

/**
 * WAL archiving of a running instance: `pg_stat_archiver` (counts since the last statistics
 * reset; times in epoch ms) and the WAL files waiting to be archived (`pg_wal/archive_status/*.ready`,
 * their bytes the files' sizes in `pg_wal`).
 * @see https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ARCHIVER-VIEW
 */
export interface ArchiverObservation {
  readonly archivedCount: number;
  readonly lastArchivedWal?: string;
  readonly lastArchivedAtMs?: number;
  readonly failedCount: number;
  readonly lastFailedWal?: string;
  readonly lastFailedAtMs?: number;
  /** WAL files waiting (`.ready`). */
  readonly readyCount: number;
  /** Their bytes. */
  readonly readyBytes: number;
}

/** pg_basebackup progress, see {@link BaseBackupOptions.onProgress}. */
export interface BaseBackupProgress {
  /** Bytes received so far (KiB precision). */
  readonly doneBytes: number;
  /** The server's estimate of the total, in bytes; `doneBytes` may exceed it. */
  readonly totalBytes: number;
}

/** Options of {@link PostgresManager.baseBackup}. */
export interface BaseBackupOptions {
  /** Aborting kills pg_basebackup; the call then rejects with `ABORTED`. */
  readonly signal?: AbortSignal | undefined;
  /**
   * Called with pg_basebackup's progress reports, at most once per second (the first report at
   * once). Exceptions thrown by the callback are logged and ignored.
   */
  readonly onProgress?: ((progress: BaseBackupProgress) => void) | undefined;
  /**
   * The primary's keeper may not have created the slot yet: create it first unless it exists
   * (`pg_receivewal --create-slot --if-not-exists`). Default false: the slot must exist.
   */
  readonly createSlot?: boolean | undefined;
}

/** Result of {@link PostgresManager.rewind}. */
export interface RewindResult {
  /** LSN (bytes) where the local timeline diverged from the source's (pg_rewind's "servers diverged at"). */
  readonly divergedAt: number;
  /** Timeline on which they diverged (the local one, an ancestor of the source's). */
  readonly divergedTimeline: number;
  /**
   * LSN (bytes) where the local WAL ended before the rewind: max(`Latest checkpoint location`,
   * `Minimum recovery ending location`) of pg_controldata after the clean shutdown. For a
   * primary the shutdown checkpoint is the last record it wrote; for a standby shut down in
   * recovery the checkpoint is the last restartpoint, possibly far behind, while the minimum
   * recovery point is at least as far as the WAL it applied. `localEnd − divergedAt` is the
   * WAL the rewind threw away (≥ 0, about 0 when nothing was lost).
   */
  readonly localEnd: number;
  /** False when pg_rewind found nothing to do ("no rewind required"). */
  readonly rewound: boolean;
}

/** Options of {@link PostgresManager.syncSlots}. */
export interface SyncSlotsOptions {
  /**
   * Asked, after the slots were listed, which of the unwanted `stolon_*` slots (`names`) may be
   * dropped now; only those are. The keeper answers from the clusterdata read afresh, so a slot a
   * new standby created after the caller's clusterdata was read is kept. A rejection drops none.
   */
  readonly mayDrop?: (names: readonly string[]) => Promise<readonly string[]>;
}

/**
 * Everything the keeper does to its local PostgreSQL instance. Implementations own PGDATA's
 * configuration files and run the PostgreSQL binaries; they never log or pass secrets in argv.
 * Errors are `StolonError`s (`PG_COMMAND_FAILED`, `PG_NOT_RUNNING`, `DATA_DIR_INVALID`,
 * `CONFIG_INVALID`, `ABORTED`) whose `transient` flag says whether the next keeper pass may
 * retry. Calls are not meant to run concurrently on one PGDATA: the keeper serialises them.
 * @see `PgManager` in `pg-manager.ts`, the implementation over the PostgreSQL binaries
 */
export interface PostgresManager {
  /** The PGDATA directory this manager owns. */
  readonly pgData: string;
  /** `postgres -V` major/minor, e.g. {Maj: 15, Min: 10}. */
  binaryVersion(): Promise<{ Maj: number; Min: number }>;
  /**
   * Runs initdb into an empty PGDATA with the superuser `suUsername` and its password, then
   * (with the instance started briefly on its Unix socket, `wal_log_hints = on`) creates the
   * replication role `replUsername` with REPLICATION LOGIN and its password. Leaves the
   * instance stopped; writes no `last-good` configuration.
   * @throws StolonError `PG_COMMAND_FAILED` with initdb's stderr (passwords never included);
   *   `DATA_DIR_INVALID` when PGDATA is not empty; `ABORTED`.
   * @see https://www.postgresql.org/docs/current/app-initdb.html
   */
  init(opts: {
    locale?: string;
    encoding?: string;
    dataChecksums?: boolean;
    signal?: AbortSignal;
  }): Promise<void>;
  /**
   * Writes postgresql.conf (owned entirely by the keeper), pg_ident.conf (the keeper's OS users
   * mapped to the superuser, for the peer-authenticated socket login), pg_hba.conf and an empty
   * postgresql.auto.conf atomically, then the signal files: `standby.signal` for the standby
   * modes, `recovery.signal` for `recovery`, neither for `null`. Does not reload.
   *
   * When the content changed, the new files are validated before anything else is touched:
   * `postgres -C` parses postgresql.conf (running or not), and when running
   * `pg_file_settings` / `pg_hba_file_rules` are checked too. On a problem the previous files
   * are put back and nothing else changes. When running and nothing waits for a restart, the
   * files become the `last-good` configuration.
   *
   * @returns whether the files changed and what would wait for a restart.
   * @throws StolonError `CONFIG_INVALID` naming the field (`pgParameters.<name>`, `pgHBA`, a
   *   recovery field) with PostgreSQL's message, e.g. `pgParameters.work_mem: invalid value for
   *   parameter "work_mem": "lots"; the previous configuration is kept`; `DATA_DIR_INVALID`
   *   when PGDATA is not initialised or a write fails.
   * @see https://www.postgresql.org/docs/current/view-pg-file-settings.html
   * @see https://www.postgresql.org/docs/current/view-pg-hba-file-rules.html
   */
  writeConfig(config: PgConfig, recovery: RecoveryConfig | null): Promise<WriteConfigResult>;
  /**
   * Puts the last configuration PostgreSQL accepted (saved after every successful start, and
   * after a running validation with nothing pending restart) back as postgresql.conf and
   * pg_hba.conf. Signal files are left alone; does not reload or start.
   * @returns false when there is no saved configuration (nothing was changed).
   * @throws StolonError `DATA_DIR_INVALID` when a write fails.
   */
  restoreLastGoodConfig(): Promise<boolean>;
  /**
   * Starts postgres and waits until it accepts connections (up to `timeoutMs`); no-op when
   * running. On success the current files become the `last-good` configuration.
   * @throws StolonError `CONFIG_INVALID` (not transient, `field` set) when the server log names
   *   a parameter or pg_hba.conf line, e.g. `invalid value for parameter "shared_buffers":
   *   "lots"` — call {@link restoreLastGoodConfig} and start again; `PG_COMMAND_FAILED`
   *   (transient) with the server log tail otherwise; `DATA_DIR_INVALID` when not initialised.
   * @see https://www.postgresql.org/docs/current/app-pg-ctl.html
   */
  start(timeoutMs: number): Promise<void>;
  /**
   * Stops (fast) then starts, applying restart-only parameters; starts when stopped.
   * `timeoutMs` bounds the start (the stop has its own 60 s bound). Throws as {@link stop}
   * and {@link start}.
   */
  restart(timeoutMs: number): Promise<void>;
  /**
   * `CHECKPOINT` (before a planned shutdown: the shutdown checkpoint then has little to write).
   * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made; the
   *   driver's error otherwise (a statement timeout after 5 s ends the wait, not the checkpoint).
   */
  checkpoint(): Promise<void>;
  /**
   * Stops postgres as `pg_ctl stop -m fast` does by default (`immediate` for a crash stop),
   * checking every 5 ms whether it exited.
   */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Reloads configuration (pg_ctl reload). */
  reload(): Promise<void>;
  /** Promotes a standby (`pg_promote(wait => false)`) and waits until it is out of recovery (checked every 5 ms). */
  promote(timeoutMs: number): Promise<void>;
  /**
   * Waits until the standby's WAL receiver no longer streams (its primary went away: after a
   * clean shutdown of the primary, the standby then holds every WAL record the primary wrote),
   * checking every 10 ms, at most `timeoutMs`, while `wanted()` returns true.
   * @returns true when streaming ended; false when `wanted` turned false or the time ran out.
   */
  waitStreamingEnd(timeoutMs: number, wanted: () => boolean): Promise<boolean>;
  /**
   * Replaces PGDATA with a base backup of `primary` (pg_basebackup -X stream, using `slotName`),
   * leaving standby.signal in place. The old PGDATA is removed only after the backup succeeded
   * into a temporary directory (nothing half-written is left as PGDATA). The source's
   * `last-good` files are not kept.
   * @throws StolonError `PG_COMMAND_FAILED` (transient); `ABORTED`; `DATA_DIR_INVALID` when
   *   postgres runs on PGDATA.
   * @see https://www.postgresql.org/docs/current/app-pgbasebackup.html
   */
  baseBackup(standby: StandbySettings, opts?: BaseBackupOptions): Promise<void>;
  /**
   * Rewinds the stopped local instance onto the timeline of `source` (the new primary, as a
   * superuser) with pg_rewind, so it can follow it without a full base backup. Crash-recovers
   * first in single-user mode when pg_control says the instance was not shut down cleanly.
   * The local configuration files are kept; on success `standby.signal` is written (a rewound
   * PGDATA must start as a standby) and the keeper writes the standby configuration and starts.
   * When pg_rewind fails before changing anything (other system, source unreachable) PGDATA
   * is left as it was; after a failure half-way it is not usable: fall back to a base backup.
   * @throws StolonError `DATA_DIR_INVALID` when running or not initialised; `PG_COMMAND_FAILED`
   *   (not transient) with pg_rewind's stderr tail; `PG_COMMAND_FAILED` (transient) when crash
   *   recovery failed; `ABORTED`.
   * @see https://www.postgresql.org/docs/current/app-pgrewind.html
   */
  rewind(source: ConnTarget, signal?: AbortSignal): Promise<RewindResult>;
  /**
   * Point-in-time recovery, step 1 (Stolon `dataRestoreCommand`): wipes PGDATA, recreates it
   * (0700, owned by the OS user) and runs `/bin/sh -c <command>` as the OS user with `%d`
   * replaced by PGDATA and `%%` by `%`, with a minimal environment (PATH with the PostgreSQL
   * binaries first, HOME, locale, TZ, PGDATA — none of the keeper's variables); or, given a
   * {@link DataRestoreProgram}, that program with its arguments. Then the keeper
   * writes a `recovery` configuration, starts, and calls {@link waitRecoveryDone}.
   * @throws StolonError `PG_COMMAND_FAILED` (transient; PGDATA removed) with the command's
   *   stderr tail, or when it left no PG_VERSION; `CONFIG_INVALID` for a PGDATA path `%d` cannot
   *   hold; `DATA_DIR_INVALID` when postgres runs on PGDATA; `ABORTED`.
   * @see https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-PITR-RECOVERY
   */
  restoreData(command: string | DataRestoreProgram, signal?: AbortSignal): Promise<void>;
  /**
   * Waits until archive recovery has finished: `recovery.signal` is gone and
   * `pg_is_in_recovery()` is false (PostgreSQL ≥ 12). For the `recovery` mode only — a standby
   * never finishes. `timeoutMs` may be `Infinity`.
   * @throws StolonError `PG_COMMAND_FAILED` (not transient) with the server log tail when
   *   postgres stopped (e.g. the recovery target was not reached); `PG_COMMAND_FAILED`
   *   (transient) on timeout; `ABORTED`.
   */
  waitRecoveryDone(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /** Removes PGDATA entirely (the keeper calls this only when the sentinel asks for a resync). */
  removeData(): Promise<void>;
  /** Probes the instance. Never throws. */
  observe(): Promise<PgObservation>;
  /**
   * The `Database system identifier` from pg_controldata (works while stopped); `undefined`
   * when PGDATA is not initialised (no PG_VERSION).
   * @throws StolonError `DATA_DIR_INVALID` when pg_control cannot be read.
   */
  systemIdentifier(): Promise<string | undefined>;
  /**
   * Creates the physical slots in `wanted` that are missing and drops `stolon_*` slots not
   * wanted (only those `opts.mayDrop` returns, when given). Works on a standby too (slots there
   * survive its promotion, so its followers keep their WAL).
   */
  syncSlots(wanted: readonly string[], opts?: SyncSlotsOptions): Promise<void>;
  /**
   * Replaces the passwords the manager uses from now on: the superuser's for initdb and for a
   * socket that still asks for one (an instance whose pg_hba.conf predates peer authentication),
   * the replication role's for the role initdb creates. Changes nothing in PostgreSQL.
   */
  setPasswords(passwords: { readonly su: string; readonly repl: string }): void;
  /**
   * Sets `role`'s password on the running instance: `ALTER ROLE … PASSWORD '<SCRAM-SHA-256
   * verifier>'`, the verifier computed here (`scramSha256Verifier`), in a transaction that turns
   * statement logging off, so that neither the password nor its verifier reaches the server log
   * or pg_stat_activity. Only meaningful on a primary (a standby is read-only).
   * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made;
   *   `PG_COMMAND_FAILED` (transient) when the statement fails (the message never holds the password).
   * @see https://www.postgresql.org/docs/current/sql-alterrole.html
   */
  setRolePassword(role: string, password: string): Promise<void>;
  /** True when the postmaster process is alive (postmaster.pid points at a live process). */
  isRunning(): Promise<boolean>;
  /**
   * The connection-based part of crash detection, when the implementation keeps a connection to
   * its instance between observations (`observe`'s probe connection): `open()` is true while it
   * is open, and `onClosed` is called (synchronously) whenever it goes away — the server closed
   * it, which a dying postmaster makes every backend do at once, or it was dropped. Optional: a
   * caller without it polls {@link isRunning}.
   * @returns `open`, and `stop` to remove the listener
   */
  watchConnection?(onClosed: () => void): { open(): boolean; stop(): void };
  /**
   * Runs a tool other than PostgreSQL's own (e.g. `pgbackrest stanza-create`) as the OS user, with
   * the minimal environment PostgreSQL's commands get (no keeper variable: argv and files carry
   * what it needs; never a secret in argv). `file` is absolute, or a bare name looked up in the
   * keeper's PATH. `timeoutMs` kills it (SIGTERM, then SIGKILL 5 s later). `onStderr` gets its
   * stderr as it comes (progress); `supervised` ends it with the keeper, even a SIGKILLed one (the
   * child supervisor, as for pg_basebackup), for a long command that must not outlive its keeper.
   * `signal` ends it (SIGTERM, then SIGKILL 5 s later) when aborted.
   * @returns its exit code (null when killed) and output tails (64 KiB each)
   * @throws StolonError `PG_COMMAND_FAILED` when it cannot be found or spawned.
   */
  runTool(
    file: string,
    args: readonly string[],
    opts?: { readonly timeoutMs?: number; readonly onStderr?: (chunk: string) => void; readonly supervised?: boolean; readonly signal?: AbortSignal },
  ): Promise<ToolResult>;
}
