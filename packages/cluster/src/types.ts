/**
 * The cluster data model: the one JSON document (`clusterdata`) the leader sentinel writes, and
 * the info objects keepers, sentinels and proxies publish under leases. JSON field names are
 * Stolon's (including its `systemdID` typo and the capitalised ProxyInfo/SentinelInfo keys) so
 * that tools and operators moving from Stolon recognise them.
 * @see https://github.com/sorintlab/stolon/blob/master/internal/cluster/cluster.go (Stolon's model)
 *
 * LSNs (`xLogPos`) are JSON numbers: exact up to 2^53 bytes of WAL (8 PiB), which no cluster
 * reaches; Stolon uses uint64.
 */

/** The only clusterdata format this code reads or writes. */
export const CURRENT_FORMAT_VERSION = 1;

export type InitMode = 'new' | 'existing' | 'pitr';
export type DBInitMode = 'none' | InitMode | 'resync';
export type Role = 'master' | 'standby';
export type ClusterPhase = 'initializing' | 'normal';
/**
 * Who may log in as the superuser or the replication role over TCP (pg_hba.conf; docs/security.md):
 * `all` (Stolon's default): from anywhere; `strict` (Stolon): on the primary only, from the other
 * keepers; `keepers` (ours, the default): on every node, from every keeper (itself included).
 * `strict` and `keepers` also admit the superuser from `suAllowedCIDRs` and reject both roles
 * from anywhere else, whatever `pgHBA` says.
 */
export type SUReplAccessMode = 'all' | 'strict' | 'keepers';

/**
 * The user's cluster spec, as stored (JSON form). Every field optional; durations are Go-style
 * strings ("20s"). Use `resolveSpec` to get the defaulted, millisecond form.
 */
export interface ClusterSpec {
  sleepInterval?: string;
  requestTimeout?: string;
  convergenceTimeout?: string;
  initTimeout?: string;
  syncTimeout?: string;
  dbWaitReadyTimeout?: string;
  failInterval?: string;
  deadKeeperRemovalInterval?: string;
  proxyCheckInterval?: string;
  proxyTimeout?: string;
  /**
   * Our addition: how long a planned switchover may take from the request being accepted to the
   * target's promotion being ordered; past it the switchover is aborted (the old primary resumes).
   */
  switchoverTimeout?: string;
  /**
   * Our addition: during a planned switchover, from the fence until the new primary is routed,
   * proxies accept new client connections and hold them (not connected to any backend) for at
   * most this long each, then connect them to the new primary; past it a held connection is
   * closed, as a connection with no primary is otherwise. `0s`: no holding (closed at once).
   */
  switchoverHoldTimeout?: string;
  /**
   * Our addition (Patroni's `failsafe_mode`): while the store is unreachable, the primary keeps
   * its role as long as every keeper in clusterdata confirms it over the member API
   * (docs/architecture.md, "Store outages: failsafe mode").
   */
  failsafeMode?: boolean;
  maxStandbys?: number;
  maxStandbysPerSender?: number;
  maxStandbyLag?: number;
  synchronousReplication?: boolean;
  minSynchronousStandbys?: number;
  maxSynchronousStandbys?: number;
  additionalWalSenders?: number;
  additionalMasterReplicationSlots?: string[] | null;
  usePgrewind?: boolean;
  initMode?: InitMode;
  mergePgParameters?: boolean;
  role?: Role;
  newConfig?: { locale?: string; encoding?: string; dataChecksums?: boolean };
  pitrConfig?: PITRConfig;
  existingConfig?: { keeperUID?: string };
  standbyConfig?: StandbyConfig;
  defaultSUReplAccessMode?: SUReplAccessMode;
  /**
   * Our addition: CIDR ranges the superuser may also log in from (with its password) when
   * `defaultSUReplAccessMode` is `keepers` or `strict`, e.g. the proxies' network, on every node.
   */
  suAllowedCIDRs?: string[];
  pgParameters?: Record<string, string> | null;
  pgHBA?: string[] | null;
  automaticPgRestart?: boolean;
  /**
   * Our addition: continuous WAL archiving and base backups with pgBackRest (docs/backup.md).
   * Absent: no archiving (Stolon's behaviour; `archive_command` in `pgParameters` still works).
   */
  backup?: BackupSpec;
  /**
   * Our addition (`stolonctl pause`/`resume`): the sentinel keeps observing but takes no failover,
   * standby-assignment or routing action. Patroni calls this maintenance mode.
   */
  paused?: boolean;
}

/** Stolon's `archiveRecoverySettings`. */
export interface ArchiveRecoverySettings {
  /** `restore_command`, e.g. `cp /archive/%f %p`. */
  restoreCommand?: string;
}

/** Stolon's `recoveryTargetSettings` (PostgreSQL recovery_target_* parameters). */
export interface RecoveryTargetSettings {
  recoveryTarget?: string;
  recoveryTargetLsn?: string;
  recoveryTargetName?: string;
  recoveryTargetTime?: string;
  recoveryTargetXid?: string;
  recoveryTargetTimeline?: string;
}

/** How to restore the first primary for `initMode: "pitr"`. */
export interface PITRConfig {
  /** Shell command that fills the data directory; `%d` is replaced by its path, `%%` by `%`. */
  dataRestoreCommand?: string;
  /**
   * Our addition: restore from a pgBackRest backup in `backup.repository` instead of running
   * `dataRestoreCommand` (exactly one of the two); WAL comes from the same repository, so
   * `archiveRecoverySettings` is not needed. `recoveryTargetSettings` picks the target (absent:
   * the end of the archive).
   */
  fromBackup?: BackupSource;
  archiveRecoverySettings?: ArchiveRecoverySettings;
  recoveryTargetSettings?: RecoveryTargetSettings;
}

/** Our addition: the pgBackRest repository and what to keep there (docs/backup.md). */
export interface BackupSpec {
  repository: BackupRepository;
  /** pgBackRest stanza name; default: the cluster name. `^[A-Za-z0-9_-]+$`. */
  stanza?: string;
  /** Full backups kept (`repo1-retention-full`); default 2. */
  retentionFull?: number;
  /** Differential backups kept (`repo1-retention-diff`); default: pgBackRest's (as many as full). */
  retentionDiff?: number;
  /** `compress-type`; default `lz4`. */
  compressType?: BackupCompressType;
  /** `compress-level`; default: pgBackRest's for the type. */
  compressLevel?: number;
  /** `archive-async` (WAL pushed in batches by a background process, spooled beside PGDATA); default false. */
  archiveAsync?: boolean;
  /** Parallel processes for backup and restore (`process-max`); default 1. */
  processMax?: number;
  /**
   * Bytes of WAL waiting to be archived (`pg_wal/archive_status/*.ready`) past which the keeper
   * warns and publishes the condition; default 1 GiB. Archiving never drops WAL to stay under it.
   */
  archiveWarnBytes?: number;
}

export type BackupCompressType = 'none' | 'gz' | 'lz4' | 'zst' | 'bz2';

/**
 * Where pgBackRest keeps backups and archived WAL: a POSIX directory (a volume every keeper
 * mounts at the same path) or, with `s3`, S3-compatible object storage. Credentials never go
 * in the spec: keepers read them from files or the environment (docs/backup.md).
 */
export interface BackupRepository {
  /** POSIX: an absolute directory. S3: the path inside the bucket (absolute, e.g. `/stolon`). */
  path: string;
  s3?: {
    bucket: string;
    /** Host name (optionally `host:port`) of the S3 endpoint, e.g. `s3.eu-west-1.amazonaws.com`. */
    endpoint: string;
    region: string;
    /** `repo1-s3-uri-style`; default `host`. */
    uriStyle?: 'host' | 'path';
    /** Verify the endpoint's TLS certificate (`repo1-storage-verify-tls`); default true. */
    verifyTls?: boolean;
  };
}

/** Our addition: which backup `pitrConfig.fromBackup` restores. */
export interface BackupSource {
  /** The stanza the backup was taken in (the source cluster's); default: `backup.stanza`. */
  stanza?: string;
  /** A backup label from `stolonctl backups` (e.g. `20261206-101500F`); default: the latest that reaches the target. */
  set?: string;
}

/** Stolon's `standbySettings`: how a standby cluster's primary follows the external primary. */
export interface StandbySettingsSpec {
  primaryConninfo?: string;
  primarySlotName?: string;
  recoveryMinApplyDelay?: string;
}

/** Required when the cluster `role` is `standby`. */
export interface StandbyConfig {
  standbySettings?: StandbySettingsSpec;
  archiveRecoverySettings?: ArchiveRecoverySettings;
}

/** The spec with every default applied and durations in milliseconds. */
export interface ResolvedSpec {
  sleepIntervalMs: number;
  requestTimeoutMs: number;
  convergenceTimeoutMs: number;
  initTimeoutMs: number;
  syncTimeoutMs: number;
  dbWaitReadyTimeoutMs: number;
  failIntervalMs: number;
  deadKeeperRemovalIntervalMs: number;
  proxyCheckIntervalMs: number;
  proxyTimeoutMs: number;
  switchoverTimeoutMs: number;
  switchoverHoldTimeoutMs: number;
  failsafeMode: boolean;
  maxStandbys: number;
  maxStandbysPerSender: number;
  /** Bytes of WAL a standby may be behind the primary and still be promoted (async mode). */
  maxStandbyLag: number;
  synchronousReplication: boolean;
  minSynchronousStandbys: number;
  maxSynchronousStandbys: number;
  additionalWalSenders: number;
  additionalMasterReplicationSlots: string[] | null;
  usePgrewind: boolean;
  initMode: InitMode;
  mergePgParameters: boolean;
  role: Role;
  newConfig: { locale?: string; encoding?: string; dataChecksums?: boolean };
  pitrConfig: PITRConfig | null;
  existingConfig: { keeperUID?: string } | null;
  standbyConfig: StandbyConfig | null;
  defaultSUReplAccessMode: SUReplAccessMode;
  suAllowedCIDRs: string[];
  pgParameters: Record<string, string>;
  pgHBA: string[] | null;
  automaticPgRestart: boolean;
  paused: boolean;
  backup: BackupSpec | null;
}

export interface ClusterStatus {
  phase: ClusterPhase;
  /** DB uid of the wanted primary ("" when none chosen yet). */
  master: string;
  /** Our addition: the failover or switchover in progress, phase by phase. */
  failover?: FailoverEvent;
  /** Our addition: a planned switchover asked for by `stolonctl switchover`, not yet started. */
  switchoverRequest?: SwitchoverRequest;
  /**
   * Our addition (`stolonctl reload`): keepers re-render postgresql.conf and pg_hba.conf and reload
   * PostgreSQL once per new `generation`, and acknowledge it in their info (`reloadGeneration`).
   * Kept after it was acted on: its generation only grows.
   */
  reloadRequest?: ReloadRequest;
  /**
   * Our addition (`stolonctl reinit`): a standby to wipe and clone again from the primary; the
   * leader sentinel consumes it (removes it) by giving the keeper a new DB with initMode `resync`.
   */
  reinitRequest?: ReinitRequest;
  /**
   * Our addition: the last base backup asked for by `stolonctl backup`. Written by stolonctl only
   * (compare-and-set); the sentinel keeps it as it is; the keeper it names runs it once and
   * reports in its info (`KeeperInfo.backup`). Replaced by the next request.
   */
  backupRequest?: BackupRequest;
}

/** Written by `stolonctl reload`; read by every keeper. */
export interface ReloadRequest {
  /** Grows by one per request; a keeper reloads once per generation it has not acknowledged. */
  generation: number;
  /** RFC 3339 time of the request. */
  requestedAt: string;
  /** Keeper UIDs to reload; absent: every keeper. */
  keeperUIDs?: string[];
}

/** Written by `stolonctl reinit`; consumed by the leader sentinel. */
export interface ReinitRequest {
  keeperUID: string;
  /** The DB uid the keeper held when the request was made: the request is for that DB only. */
  dbUid: string;
  /** RFC 3339 time of the request. */
  requestedAt: string;
}

/** pgBackRest's backup types (`--type`): full, differential (since the last full), incremental (since the last backup). */
export type BackupType = 'full' | 'diff' | 'incr';

/** Our addition: one `stolonctl backup` (docs/backup.md, "Taking and listing backups"). */
export interface BackupRequest {
  /** Random 8-hex id; a keeper runs each id at most once, across restarts. */
  id: string;
  /** The keeper chosen at request time to run `pgbackrest backup`. */
  keeperUID: string;
  type: BackupType;
  /** RFC 3339 time of the request (stolonctl's clock). */
  requestedAt: string;
  /** Why that keeper, as stolonctl printed it. */
  choice?: string;
  /**
   * Our addition: set when `keeperUID` runs a standby and backs it up with pgBackRest's
   * `--backup-standby`: the primary's keeper and its pgBackRest TLS server, as published then.
   */
  primary?: BackupPrimary;
}

/** Where a keeper's pgBackRest TLS server is reached and what it serves (`KeeperInfo.backupServer`). */
export interface BackupServer {
  /** Host name other keepers connect to (`--backup-server-host`; in the keeper's certificate). */
  host: string;
  /** TCP port of `pgbackrest server` (`--backup-server-port`). */
  port: number;
  /** PGDATA of this keeper's PostgreSQL (`pgN-path`). */
  pgData: string;
  /** PostgreSQL's port (`pgN-port`). */
  pgPort: number;
  /** PostgreSQL's Unix socket directory on that host (`pgN-socket-path`). */
  socketPath: string;
  /** Role pgBackRest connects as over that socket (`pgN-user`: the keeper's superuser). */
  user: string;
}

/** The primary of a standby backup request: its keeper and {@link BackupServer}. */
export interface BackupPrimary extends BackupServer {
  keeperUID: string;
}

/**
 * Written by `stolonctl switchover`, or by the leader sentinel for a primary's keeper that is
 * stopping (`KeeperInfo.switchoverRequestedAt`); consumed (and removed) by the leader sentinel.
 */
export interface SwitchoverRequest {
  /** Keeper to promote; absent: the best candidate. */
  targetKeeperUID?: string;
  /** RFC 3339 time of the request. */
  requestedAt: string;
  /**
   * Our addition: who asked, for the trace's `cause` (e.g. "keeper keeper0, stopping"); absent:
   * `stolonctl switchover`.
   */
  requestedBy?: string;
  /**
   * Our addition (`stolonctl switchover --at`; Patroni's `switchover --scheduled`): RFC 3339 time
   * before which the leader sentinel does not start it. A request found more than
   * `SCHEDULED_SWITCHOVER_MAX_LATE_MS` past this time (no leader sentinel, or no healthy primary
   * until then) is dropped and recorded as an aborted switchover instead of starting late.
   * Absent: start at once.
   */
  scheduledAt?: string;
}

/**
 * Our addition: one spell of a primary keeper's failsafe confirmation rounds (the store looked
 * unreachable to it; docs/architecture.md, "Store outages: failsafe mode"), as that keeper
 * publishes it once the store answers again and the sentinel records it in `failsafeHistory`.
 */
export interface FailsafeEpisode {
  /** The primary's keeper that ran the rounds. */
  keeperUID: string;
  /** Wall-clock RFC 3339 time of its first round, and of the first pass that reached the store again. */
  since: string;
  until: string;
  /** Rounds run, and how many of them every member confirmed. */
  rounds: number;
  confirmedRounds: number;
  /** How many other keepers each round asked (the keepers of its last clusterdata). */
  members: number;
  /** Whether its fencer stopped PostgreSQL during the spell (a round failed and the lease ran out). */
  fenced: boolean;
  /** Why the last failed round failed (which member, what it said), when one did. */
  lastFailure?: string;
}

/** One failover (or switchover), with a wall-clock RFC 3339 timestamp (ms) per phase. */
export interface FailoverEvent {
  /** Random 8-hex id. */
  id: string;
  kind: 'failover' | 'switchover';
  /** Why the primary was declared failed (or who asked for the switchover). */
  cause: string;
  oldPrimary: {
    keeperUID: string;
    dbUid: string;
    xLogPos: number;
    /**
     * The timeline it was on, recorded when a candidate is chosen: if the chosen standby fails
     * before its promotion completed (it never served clients), the next candidate is compared
     * with the old primary's timeline and LSN, not the failed one's.
     */
    timelineID?: number;
    /**
     * Synchronous replication only: the DB uids known to have every commit it acknowledged
     * (its known-in-sync ∩ spec list, recorded when a candidate is chosen). Only these may be
     * promoted in place of a chosen standby that fails before its promotion completed.
     */
    synchronousStandbys?: string[];
  };
  newPrimary?: { keeperUID: string; dbUid: string; xLogPos: number };
  /** Why this candidate (or why none could be chosen). */
  choice?: string;
  phases: {
    /**
     * The old primary's last observed progress: when the leader sentinel first saw its keeper's
     * last progress marker (`KeeperInfo.infoUID`), or first saw its postgres reported failing if
     * that came earlier. Not the last time its info was there (a killed keeper's info outlives it
     * until its lease expires). A switchover records its start.
     */
    primaryLastSeen?: string;
    declaredFailed: string;
    /** Every live proxy acknowledged the fence generation. */
    proxiesFenced?: string;
    candidateChosen?: string;
    /** The new primary reported the promotion applied (converged, healthy). */
    promoted?: string;
    /** Proxies pointed at the new primary. */
    proxiesRouted?: string;
  };
  /** Set when the event ended. */
  result?: 'completed' | 'aborted';
  /**
   * Our addition, recorded once the new primary reports its promotion: the timeline it started and
   * the LSN (bytes) where it left the previous one (`pg_wal/<timeline>.history`).
   */
  newTimeline?: { timelineID: number; switchPoint: number };
  /**
   * Our addition: the WAL the old primary's keeper discarded when it rejoined as a standby after
   * this event (its `DBStatus.discardedWal`), once it reported one.
   */
  discardedWal?: DiscardedWal;
}

export interface Cluster {
  uid: string;
  generation: number;
  changeTime: string;
  spec: ClusterSpec;
  status: ClusterStatus;
}

export interface KeeperStatus {
  healthy: boolean;
  /** RFC 3339 wall-clock time the keeper was last seen healthy. */
  lastHealthyTime: string;
  bootUUID: string;
  postgresBinaryVersion?: { Maj: number; Min: number };
  /** One-shot flag set by `stolonctl failkeeper`; cleared by the sentinel. */
  forceFail?: boolean;
  canBeMaster?: boolean;
  canBeSynchronousReplica?: boolean;
  /** Our addition: higher is preferred among equally advanced failover candidates. */
  priority?: number;
  /**
   * Our addition: where the keeper's member API listens (`host:port`, from its info), for the
   * primary's failsafe confirmations and the proxies (docs/architecture.md, "Store outages: failsafe mode").
   */
  memberAddress?: string;
}

export interface Keeper {
  uid: string;
  generation: number;
  changeTime: string;
  spec: Record<string, never>;
  status: KeeperStatus;
}

export interface FollowConfig {
  type: 'internal' | 'external';
  /** DB uid of the followed DB (internal). */
  dbuid?: string;
  /** External primary settings (type external: the primary DB of a standby cluster). */
  standbySettings?: StandbySettingsSpec;
  archiveRecoverySettings?: ArchiveRecoverySettings;
}

export interface DBSpec {
  keeperUID: string;
  requestTimeout: string;
  maxStandbys: number;
  synchronousReplication: boolean;
  usePgrewind: boolean;
  additionalWalSenders: number;
  additionalReplicationSlots: string[] | null;
  initMode: DBInitMode;
  newConfig?: { locale?: string; encoding?: string; dataChecksums?: boolean };
  pitrConfig?: PITRConfig;
  pgParameters: Record<string, string>;
  pgHBA: string[] | null;
  /** Our addition: `defaultSUReplAccessMode` copied from the cluster spec. */
  suReplAccessMode?: SUReplAccessMode;
  /** Our addition: `suAllowedCIDRs` copied from the cluster spec (absent: none). */
  suAllowedCIDRs?: string[];
  /** Our addition: `automaticPgRestart` copied from the cluster spec. */
  automaticPgRestart?: boolean;
  /**
   * Our addition: RFC 3339 time of the `stolonctl reinit` this DB was made for: its keeper clones
   * it with pg_basebackup, never pg_rewind (which would keep the data). Removed once it streams.
   */
  reinitRequestedAt?: string;
  /**
   * Our addition, set on the primary during a planned switchover, and on a failed primary whose
   * keeper is still live before a standby is promoted in its place (fencing it): shut PostgreSQL
   * down cleanly (so every standby receives all its WAL) and keep it down until told otherwise.
   */
  shutdownForSwitchover?: boolean;
  /**
   * Our addition (`stolonctl restart`): restart PostgreSQL once. Written by stolonctl together
   * with a new DB `generation` (this request's `generation`); the keeper restarts a running
   * PostgreSQL when the generation it last applied is below it, then reports the new generation
   * as applied (its acknowledgement, with `PostgresState.startedAt`). Left in place afterwards:
   * it is acted on once.
   */
  restartRequest?: RestartRequest;
  role: Role;
  followConfig?: FollowConfig | null;
  /** DB uids following this one (a replication slot `stolon_<uid>` is kept for each). */
  followers: string[];
  includePreviousConfig: boolean;
  synchronousStandbys: string[];
  externalSynchronousStandbys: string[];
}

/** See {@link DBSpec.restartRequest}. */
export interface RestartRequest {
  /** RFC 3339 time stolonctl asked. */
  requestedAt: string;
  /** The DB generation written with the request; applied generations from it on include the restart. */
  generation: number;
}

export interface TimelineHistoryEntry {
  timelineID: number;
  /** LSN (bytes) where this timeline ended and the next began. */
  switchPoint: number;
  reason: string;
}

export interface DBStatus {
  healthy: boolean;
  /** Generation the keeper reports as applied (0 = unknown). */
  currentGeneration: number;
  listenAddress: string;
  port: string;
  /** PostgreSQL system identifier (Stolon's JSON tag has this typo; kept for compatibility). */
  systemdID: string;
  timelineID: number;
  /** Last reported LSN in bytes: flush LSN on a primary, last received/replayed on a standby. */
  xLogPos: number;
  /**
   * Our addition: on a standby, the last replayed LSN in bytes (`pg_last_wal_replay_lsn()`), what
   * its readers see; absent on a primary and from keepers that do not report it. The proxy's
   * read-only listener measures lag with it (`xLogPos` may be ahead: WAL received, not applied).
   */
  replayedXLogPos?: number;
  timelinesHistory: TimelineHistoryEntry[];
  pgParameters: Record<string, string>;
  synchronousStandbys: string[];
  olderWalFile: string;
  /** Our addition: parameters changed but waiting for a restart. */
  pendingRestart?: string[];
  /** Our addition: WAL this DB's keeper threw away when it rejoined after a failover. */
  discardedWal?: DiscardedWal;
}

/** A WAL range a keeper discarded (pg_rewind or re-clone) when its timeline had diverged. */
export interface DiscardedWal {
  /** LSN (bytes) where the local timeline diverged from the new primary's. */
  fromLsn: number;
  /** Last local LSN (bytes) before discarding. */
  toLsn: number;
  timelineID: number;
  /** How the data was replaced. */
  method: 'pg_rewind' | 'pg_basebackup';
  /** RFC 3339 time of the discard. */
  at: string;
}

export interface DB {
  uid: string;
  generation: number;
  changeTime: string;
  spec: DBSpec;
  status: DBStatus;
}

export interface ProxySpec {
  /** DB uid proxies route to; "" means route nowhere (fenced). */
  masterDbUid: string;
  /** Proxy UIDs allowed to route; a proxy not listed routes nowhere. */
  enabledProxies: string[];
}

export interface Proxy {
  uid: string;
  generation: number;
  changeTime: string;
  spec: ProxySpec;
  status: Record<string, never>;
}

/** The whole desired + observed state of one cluster, stored as `<prefix>/<name>/clusterdata`. */
export interface ClusterData {
  formatVersion: number;
  changeTime: string;
  cluster: Cluster;
  keepers: Record<string, Keeper>;
  dbs: Record<string, DB>;
  proxy: Proxy;
  /** Our addition: the last finished failovers/switchovers, newest last (at most 20). */
  failoverHistory?: FailoverEvent[];
  /** Our addition: the last failsafe spells of primaries during store outages, newest last (at most 20). */
  failsafeHistory?: FailsafeEpisode[];
}

/** What a keeper observes of its PostgreSQL instance (Stolon's PostgresState, plus `role`/`running`). */
export interface PostgresState {
  /** DB uid the local data directory belongs to ("" when none). */
  uid: string;
  /** Last DB generation the keeper applied successfully. */
  generation: number;
  listenAddress: string;
  port: string;
  healthy: boolean;
  systemID: string;
  timelineID: number;
  xLogPos: number;
  /** Our addition: standby only, `pg_last_wal_replay_lsn()` in bytes (see DBStatus). */
  replayedXLogPos?: number;
  timelinesHistory: TimelineHistoryEntry[];
  pgParameters: Record<string, string>;
  /** DB uids currently `sync` in pg_stat_replication (primary only). */
  synchronousStandbys: string[];
  olderWalFile: string;
  /** Our addition: role PostgreSQL is actually in (from pg_is_in_recovery()). */
  role?: Role;
  /** Our addition: whether the postmaster is running. */
  running?: boolean;
  /** Our addition: running only, `pg_postmaster_start_time()` as RFC 3339 (changes on every restart). */
  startedAt?: string;
  /** Our addition: standby only, whether its WAL receiver streams from its upstream (`pg_stat_wal_receiver`). */
  streaming?: boolean;
  /**
   * Our addition, set while PostgreSQL is stopped: whether pg_controldata says it was shut down
   * cleanly (`shut down`). After a crash the reported `xLogPos` (the last checkpoint) is not the
   * end of its WAL, so a switchover must not take it as the primary's final LSN.
   */
  cleanShutdown?: boolean;
  /** Our addition: parameters changed but waiting for a restart. */
  pendingRestart?: string[];
  /** Our addition: the last WAL range this keeper discarded on rejoin. */
  discardedWal?: DiscardedWal;
  /** Our addition: a human sentence about a long action (clone progress) or the last error. */
  activity?: string;
  /**
   * Our addition: set while the keeper wants PostgreSQL running but its last start attempt
   * failed (the error message). The sentinel fails such a primary at once instead of waiting
   * failInterval: a primary whose keeper cannot restart PostgreSQL is failed over as soon as the
   * keeper says so.
   */
  startError?: string;
  /**
   * Our addition: command-bearing settings of this DB's spec the keeper does not apply, because
   * its `--allow-spec-commands` does not allow them (e.g. `archive_command`, `data_restore_command`).
   */
  refusedSpecCommands?: string[];
  /** Our addition: pgBackRest archiving as this keeper sees it; absent when the spec's `backup` section is not applied here. */
  archive?: ArchiveState;
}

/** Our addition: a keeper's view of WAL archiving with pgBackRest (docs/backup.md, "How archiving works"). */
export interface ArchiveState {
  /** The pgBackRest stanza. */
  stanza: string;
  /** Primary only: why the last `pgbackrest stanza-create` (or the push of older timelines' segments after it) failed; absent once one succeeded. */
  stanzaError?: string;
  /** PostgreSQL's `pg_stat_archiver` (counts since its last statistics reset), while it runs. */
  archivedCount?: number;
  lastArchivedWal?: string;
  /** RFC 3339. */
  lastArchivedTime?: string;
  failedCount?: number;
  lastFailedWal?: string;
  /** RFC 3339. */
  lastFailedTime?: string;
  /** The last attempt failed: a failure newer than the last success. */
  failing?: boolean;
  /** WAL files waiting to be archived (`pg_wal/archive_status/*.ready`), and their bytes. */
  readyCount?: number;
  readyBytes?: number;
  /** `readyBytes` is above `backup.archiveWarnBytes` (archiving never drops WAL: `pg_wal` keeps growing). */
  backlogWarning?: boolean;
}

/** Published by each keeper under its lease at `keepers/info/<uid>`. */
export interface KeeperInfo {
  /**
   * New random value on every publish (Stolon's heartbeat token): the keeper's progress marker,
   * new in every pass that observed PostgreSQL and read clusterdata. The sentinel fails a keeper
   * whose marker did not change for failInterval, whatever its lease (docs/architecture.md,
   * "Alive means making progress").
   */
  infoUID: string;
  uid: string;
  clusterUID: string;
  /** New per keeper process start. */
  bootUUID: string;
  postgresBinaryVersion: { Maj: number; Min: number };
  postgresState?: PostgresState;
  canBeMaster?: boolean;
  canBeSynchronousReplica?: boolean;
  /** Our addition (`--priority`): higher is preferred among equally advanced candidates. */
  priority?: number;
  /** Our addition (`--member-advertise-address`): where this keeper's member API listens, `host:port`. */
  memberAddress?: string;
  /** Our addition: this keeper process's last finished failsafe spell, if any (the sentinel records it). */
  failsafeEpisode?: FailsafeEpisode;
  /**
   * Our addition: RFC 3339 time this keeper process was asked to stop (SIGTERM) while it ran the
   * primary, and asked for a switchover before it stops (`--shutdown-switchover-timeout`). Keepers
   * cannot write clusterdata, so the leader sentinel turns it into a `switchoverRequest`, once per
   * value.
   */
  switchoverRequestedAt?: string;
  /** Our addition (`stolonctl reload`): the last `ReloadRequest.generation` this keeper process acted on. */
  reloadGeneration?: number;
  /** Our addition: the stolon-ts version of the keeper program (`STOLON_TS_VERSION`). */
  version?: string;
  /** Our addition: the last `stolonctl backup` request this keeper ran (or refused), and how it went. */
  backup?: KeeperBackupRun;
  /**
   * Our addition: the primary's keeper's summary of the backups in the repository (`pgbackrest
   * info`), refreshed after each backup it runs and every few minutes; what `stolonctl backups` shows.
   */
  backups?: BackupCatalog;
  /**
   * Our addition: this keeper's pgBackRest TLS server (`pgbackrest server`), while it runs; a
   * standby's keeper reaches the primary's through it to back up the standby (docs/backup.md).
   */
  backupServer?: BackupServer;
}

/** A keeper's run of one {@link BackupRequest}. */
export interface KeeperBackupRun {
  /** `BackupRequest.id`. */
  requestId: string;
  type: BackupType;
  state: 'running' | 'done' | 'failed';
  /** RFC 3339 times (the keeper's clock). */
  startedAt: string;
  finishedAt?: string;
  /** pgBackRest's backup label, e.g. `20261206-221500F` (done only). */
  label?: string;
  /** Why it failed (failed only). */
  error?: string;
  /** Share of the data directory copied, 0–100, from pgBackRest's log while it runs. */
  percent?: number;
  /** The size of the data directory the backup restores, in bytes (done only; `pgbackrest info`). */
  sizeBytes?: number;
}

/** The backups of a stanza, as a keeper last read them from the repository. */
export interface BackupCatalog {
  /** RFC 3339 time of the read (the keeper's clock). */
  refreshedAt: string;
  stanza: string;
  /** The newest backups, oldest first (at most `BACKUP_CATALOG_LIMIT`, 50). */
  backups: BackupCatalogEntry[];
  /** How many older backups the repository holds beyond `backups`. */
  omitted?: number;
  /** Archived WAL range of the current database: first and last segment (`pgbackrest info` archive min/max). */
  walMin?: string;
  walMax?: string;
  /** Why the repository could not be read (then `backups` is the last good read's, or empty). */
  error?: string;
}

/** One backup in the repository (fields of `pgbackrest info --output=json`). */
export interface BackupCatalogEntry {
  label: string;
  type: BackupType;
  /** RFC 3339 times. */
  startTime: string;
  stopTime: string;
  /** First and last WAL segment the backup needs to be consistent. */
  walStart: string;
  walStop: string;
  /** LSNs as PostgreSQL prints them (`0/3000028`), when pgBackRest reports them. */
  lsnStart?: string;
  lsnStop?: string;
  /** Size of the data directory it restores, and what it stored in the repository, in bytes. */
  sizeBytes: number;
  repoSizeBytes: number;
  /** diff/incr: the backup it is based on (pgBackRest's `prior`); absent for full. */
  reference?: string;
  /** pgBackRest found a checksum error in a page. */
  error?: boolean;
}

/** Published by each sentinel at `sentinels/info/<uid>` (capitalised key, as in Stolon). */
export interface SentinelInfo {
  UID: string;
  /** Our addition: the stolon-ts version of the sentinel program (`STOLON_TS_VERSION`). */
  Version?: string;
}

/** Published by each proxy at `proxies/info/<uid>` (keys as in Stolon; ProxyTimeout in ns). */
export interface ProxyInfo {
  /**
   * New random value after every successful check only: the proxy's progress marker. The
   * sentinel stops waiting for a proxy whose marker did not change for its proxyTimeout + 1 s.
   */
  infoUID: string;
  UID: string;
  /** The proxy generation this proxy enforces right now. */
  Generation: number;
  /** The proxy's own timeout in nanoseconds (Go time.Duration). */
  ProxyTimeout: number;
  /** Our addition: the stolon-ts version of the proxy program (`STOLON_TS_VERSION`). */
  Version?: string;
}
