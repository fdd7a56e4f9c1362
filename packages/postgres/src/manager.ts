/**
 * The contract of the PostgreSQL manager: everything the keeper does to its instance goes through
 * it (STYLE.md rule 12). The implementation (`pg-manager.ts`) runs the PostgreSQL 15+ binaries,
 * as an unprivileged OS user when the keeper runs as root, and writes config files atomically.
 */

/** How to connect to some instance (the followed primary, or the local one). */
export interface ConnTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Never logged, never put in argv (passed via PGPASSFILE or the `pg` driver). */
  readonly password: string;
}

/** Parameters that configure a standby (PostgreSQL ≥ 12: standby.signal + postgresql.conf). */
export interface StandbySettings {
  /** Followed primary. */
  readonly primary: ConnTarget;
  /** application_name to use, e.g. `stolon_<dbuid>`; names the standby in pg_stat_replication. */
  readonly applicationName: string;
  /** Physical slot on the primary, e.g. `stolon_<dbuid>`. */
  readonly slotName: string;
}

/** What the keeper wants in postgresql.conf, besides the standby settings. */
export interface PgConfig {
  readonly listenAddress: string;
  readonly port: number;
  /** User parameters (spec.pgParameters); managed ones are overridden by the manager. */
  readonly parameters: Readonly<Record<string, string>>;
  readonly maxStandbys: number;
  readonly additionalWalSenders: number;
  readonly synchronousStandbyNames: string;
  readonly usePgrewind: boolean;
  /** pg_hba.conf lines, complete (the keeper renders them with `renderHba`). */
  readonly hba: readonly string[];
}

/** Observed instance state (a probe; never throws for a stopped instance). */
export interface PgObservation {
  /** PGDATA exists and holds an initialised cluster (PG_VERSION present). */
  readonly initialized: boolean;
  /** The postmaster is running and accepts connections. */
  readonly running: boolean;
  readonly role: 'master' | 'standby' | undefined;
  readonly systemId: string;
  readonly timelineId: number;
  /** Current LSN in bytes: pg_current_wal_lsn() on a primary, max(received, replayed) on a standby. */
  readonly xLogPos: number;
  /** application_names of standbys currently streaming, with their sync_state. */
  readonly replication: readonly { applicationName: string; syncState: string }[];
  /** Existing physical replication slots (non-temporary). */
  readonly slots: readonly string[];
  /** Oldest WAL segment file name in pg_wal, "" if unknown. */
  readonly olderWalFile: string;
  /** Why the probe could not see more (not running, auth failure...), for the keeper's reason. */
  readonly error?: string;
}

/**
 * Everything the keeper does to its local PostgreSQL instance. Implementations own PGDATA's
 * configuration files and run the PostgreSQL binaries; they never log or pass secrets in argv.
 * Errors are `StolonError`s (`PG_COMMAND_FAILED`, `PG_NOT_RUNNING`, `DATA_DIR_INVALID`) whose
 * `transient` flag says whether the next keeper pass may retry.
 * @see `PgManager` in `pg-manager.ts`, the implementation over the PostgreSQL binaries
 */
export interface PostgresManager {
  /** The PGDATA directory this manager owns. */
  readonly pgData: string;
  /** `postgres -V` major/minor, e.g. {Maj: 15, Min: 10}. */
  binaryVersion(): Promise<{ Maj: number; Min: number }>;
  /**
   * Runs initdb into an empty PGDATA with the superuser `suUsername` and its password, then
   * (with the instance started briefly or via single-user mode) creates the replication role
   * `replUsername` with REPLICATION LOGIN and its password. Leaves the instance stopped.
   * @throws StolonError PG_COMMAND_FAILED with initdb's stderr (passwords never included).
   */
  init(opts: {
    locale?: string;
    encoding?: string;
    dataChecksums?: boolean;
    signal?: AbortSignal;
  }): Promise<void>;
  /** Writes postgresql.conf (owned entirely by the keeper) and pg_hba.conf atomically. */
  writeConfig(config: PgConfig, standby: StandbySettings | null): Promise<void>;
  /** Starts postgres and waits until it accepts connections (up to `timeoutMs`). */
  start(timeoutMs: number): Promise<void>;
  /** Stops postgres (`pg_ctl stop -m fast` by default; `immediate` for a crash stop). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Reloads configuration (pg_ctl reload). */
  reload(): Promise<void>;
  /** Promotes a standby (pg_ctl promote -w) and waits until it is out of recovery. */
  promote(timeoutMs: number): Promise<void>;
  /**
   * Replaces PGDATA with a base backup of `primary` (pg_basebackup -X stream, using `slotName`),
   * leaving standby.signal in place. The old PGDATA is removed only after the backup succeeded
   * into a temporary directory (nothing half-written is left as PGDATA).
   */
  baseBackup(standby: StandbySettings, signal?: AbortSignal): Promise<void>;
  /** Removes PGDATA entirely (the keeper calls this only when the sentinel asks for a resync). */
  removeData(): Promise<void>;
  /** Probes the instance. Never throws. */
  observe(): Promise<PgObservation>;
  /** Creates the physical slots in `wanted` that are missing and drops `stolon_*` slots not wanted. */
  syncSlots(wanted: readonly string[]): Promise<void>;
  /** True when the postmaster process is alive (postmaster.pid points at a live process). */
  isRunning(): Promise<boolean>;
}
