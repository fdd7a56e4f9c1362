/**
 * The keeper's public shapes: its configuration, its dependencies, the handle `start` returns,
 * and what it persists in `<data-dir>/dbstate`. No logic here, so every other keeper module can
 * import it without an import cycle.
 */
import type { ClusterData, DiscardedWal } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import type { Store } from '@stolon-ts/store';
import type { PgbackrestLocal } from './archiving.js';
import type { BackupServerConfig } from './backup-server.js';
import type { MemberApiConfig } from './failsafe.js';
import type { FenceControl } from './fencer.js';
import type { PgObservation, PgSslFiles, PostgresManager } from '@stolon-ts/postgres';
import type { LocalDbState } from './plan.js';
import type { PodRole } from './role-label.js';
import type { SpecCommand } from './spec-commands.js';

/** starting → running → stopping → stopped. */
export type KeeperState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface KeeperConfig {
  readonly uid: string;
  /** Keeper data dir: holds `dbstate` and `postgres/` (PGDATA). */
  readonly dataDir: string;
  /** Address and port other keepers and proxies use to reach this PostgreSQL. */
  readonly pgAdvertiseAddress: string;
  readonly pgPort: number;
  readonly suUsername: string;
  /**
   * Needed as the pg_rewind source credentials; never logged. The value at start: with
   * {@link KeeperDeps.passwords}, the runtime's copy follows the files (passwords.ts).
   */
  readonly suPassword: string;
  readonly replUsername: string;
  /** Needed to build the standby's connection to its primary; never logged. Like {@link suPassword}. */
  readonly replPassword: string;
  readonly canBeMaster: boolean;
  readonly canBeSynchronousReplica: boolean;
  /** Higher is preferred among equally advanced failover candidates. */
  readonly priority: number;
  /**
   * Backoff of a background task (initdb, clone, rewind, restore) that failed: the same task is
   * retried after `baseMs`, then twice as long after each further failure, at most `maxMs`.
   * @default { baseMs: 1000, maxMs: 30000 }
   */
  readonly taskRetry?: { readonly baseMs: number; readonly maxMs: number };
  /** The member API (failsafe mode); absent: not served, and this keeper cannot take part in failsafe mode. */
  readonly member?: MemberApiConfig;
  /**
   * `--allow-spec-commands`: the command-bearing spec settings this keeper applies (spec-commands.ts).
   * Absent: none, the flag's default.
   */
  readonly allowSpecCommands?: ReadonlySet<SpecCommand>;
  /** `--pg-ssl-required`: PostgreSQL rejects every TCP login without TLS (pg_hba.conf). */
  readonly pgSslRequired?: boolean;
  /** This keeper's pgBackRest files (archiving.ts); absent: the spec's `backup` section is never applied. */
  readonly pgbackrest?: PgbackrestLocal;
  /** This keeper's pgBackRest TLS server (backup-server.ts); absent: none runs, and backups are not taken from this keeper's standby. */
  readonly backupServer?: BackupServerConfig;
  /**
   * `--shutdown-switchover-timeout` in ms: on `stop`, a primary asks for a switchover and waits
   * at most this long for it before it stops (drain.ts); 0 disables. Absent: no drain.
   */
  readonly shutdownSwitchoverTimeoutMs?: number;
}

export interface KeeperDeps {
  readonly store: Store;
  readonly logger: Logger;
  readonly pg: PostgresManager;
  /**
   * The boot id at process start (new per process). The runtime takes a new one when its primary
   * was fenced (`KeeperRuntime.bootUuid`).
   */
  readonly bootUuid: string;
  /** Self-fencing (fencer.ts); absent in tests that fake PostgreSQL. */
  readonly fencer?: FenceControl;
  /** Hears about every pass and publish (the status endpoint's liveness and readiness). */
  readonly status?: KeeperStatusSink;
  /**
   * Reads the current superuser and replication passwords (the `--pg-*-password-file` files, or
   * the environment's static values), at the start of every pass (passwords.ts); absent: the
   * configuration's values stay. Throws when a file cannot be read or is empty (the previous
   * values are kept then).
   */
  readonly passwords?: () => { readonly su: string; readonly repl: string };
  /** Keeps the pod's role label current (role-label.ts, `--kube-pod-name`); absent: no label. */
  readonly roleLabel?: { update(role: PodRole): void; stop(): Promise<void> };
  /** PostgreSQL's server TLS files (tls.ts), refreshed whenever the configuration is derived; absent: no TLS. */
  readonly tls?: { refresh(log: Logger): Promise<PgSslFiles> };
}

export interface KeeperHandle {
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  stop(reason: string): Promise<void>;
  state(): KeeperState;
}

/** What the keeper keeps in `<dataDir>/dbstate`: the DB it holds, plus the last WAL range it discarded. */
export interface PersistedState extends LocalDbState {
  readonly discardedWal?: DiscardedWal;
}

/** What the keeper had in hand when it published its info: proof that the store answered this pass. */
export interface PublishedView {
  /** Parsed clusterdata; undefined when there is none yet or it is invalid. */
  readonly cd: ClusterData | undefined;
  /** The keeper's persisted DB state at publish time. */
  readonly local: LocalDbState;
  /** What the keeper observed of PostgreSQL for this publish. */
  readonly obs: Pick<PgObservation, 'initialized' | 'running' | 'role' | 'systemId'> & Partial<PgObservation>;
  /** Name of the background task in progress (initdb, pg_basebackup, pg_rewind, PITR), if any. */
  readonly task: string | undefined;
  /** The boot id this publish carried (the planner waits until the sentinel has recorded it). */
  readonly bootUuid: string;
  /** The info's `postgresState.healthy` (see `reportedHealthy`); absent in views built by tests: unknown. */
  readonly healthy?: boolean;
  /** The fencer shut PostgreSQL down and it has not run since (activity `fenced`). */
  readonly fenced?: boolean;
  /** The process wrote a configuration of a running PostgreSQL and has not reloaded it yet (Stolon's needsReload). */
  readonly needsReload?: boolean;
  /** The spec's pgParameters/pgHBA were rejected, or PostgreSQL runs on its last good configuration. */
  readonly configRejected?: boolean;
  /** pg_basebackup's progress while a resync clones this DB, in bytes; absent otherwise. */
  readonly resync?: { readonly doneBytes: number; readonly totalBytes: number };
}

/** Kinds of error {@link KeeperStatusSink.errorSeen} counts. */
export type KeeperErrorKind = 'store' | 'pass' | 'task';

/**
 * What the keeper tells whoever watches its passes. Implementations must be cheap and must not
 * throw: the calls sit on the keeper's pass path.
 */
export interface KeeperStatusSink {
  /** A pass begins. */
  passStarted(): void;
  /** The pass ended; `error` is what it threw, undefined when it succeeded. */
  passSettled(error: unknown): void;
  /** The keeper info was written to the store (after clusterdata was read) during the current pass. */
  published(view: PublishedView): void;
  /** PostgreSQL was observed (the pass's first step, before the store is read). */
  observed?(obs: PgObservation): void;
  /** A background task (initdb, clone, rewind, restore) failed. Pass errors arrive through `passSettled`. */
  errorSeen?(kind: KeeperErrorKind): void;
}

/**
 * What the keeper last saw, for the metrics and the role endpoints (keeper-metrics.ts,
 * role-checks.ts): cached by the pass, read per scrape or check, never queried then.
 */
export interface KeeperFacts {
  /** The last publish of any pass (also of one still running), and when it happened (monotonic ms). */
  readonly view: PublishedView | undefined;
  readonly viewAtMs: number | undefined;
  /** The last observation of PostgreSQL (each pass's first step), when (monotonic ms), and its wall time (epoch ms). */
  readonly obs: PgObservation | undefined;
  readonly obsAtMs: number | undefined;
  readonly obsWallMs: number | undefined;
  /** Errors so far by kind (`store`: a pass failed before it could publish; `pass`: after; `task`: a background task). */
  readonly errors: Readonly<Record<KeeperErrorKind, number>>;
  /** Wall times (epoch ms) of the last error of any kind, the last pass that succeeded, and the last publish that read valid clusterdata. */
  readonly lastErrorWallMs: number | undefined;
  readonly lastSuccessWallMs: number | undefined;
  readonly lastValidCdWallMs: number | undefined;
}
