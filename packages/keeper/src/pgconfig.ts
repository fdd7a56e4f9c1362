/**
 * Pure derivation of what the keeper writes for PostgreSQL from clusterdata: postgresql.conf
 * inputs and pg_hba lines ({@link pgConfigFor}), the recovery settings of a standby, a
 * standby-cluster primary or a point-in-time restore, the replication slots to keep, the WAL
 * range a rejoin discards, and the keeper's published PostgreSQL state. No I/O; table-tested in
 * pgconfig.test.ts.
 */
import type { ArchiveState, BackupSpec, ClusterData, DB, DiscardedWal, PostgresState } from '@stolon-ts/cluster';
import { DEFAULT_SPEC, StolonError } from '@stolon-ts/cluster';
import {
  formatLsn,
  renderHbaLines,
  renderSynchronousStandbyNames,
  type PgConfig,
  type PgObservation,
  type RecoveryConfig,
  type StandbySettings,
} from '@stolon-ts/postgres';
import { archiveParameters, archiveRestoreCommand, type PgbackrestLocal } from './archiving.js';
import type { ExternalFollow, FollowTarget } from './plan.js';
import { allowedPgParameters, describeRefusedSpecCommands, refusedSpecCommands, type SpecCommand } from './spec-commands.js';

/** The parts of the keeper's configuration the derivations need. */
export interface KeeperIdentity {
  readonly pgAdvertiseAddress: string;
  readonly pgPort: number;
  readonly suUsername: string;
  readonly replUsername: string;
  /** Goes into the standby's primary_conninfo (through a password file); never logged. */
  readonly replPassword: string;
  /** The keeper's uid, for messages. */
  readonly uid?: string;
  /** `--allow-spec-commands` (spec-commands.ts); absent: none allowed. */
  readonly allowSpecCommands?: ReadonlySet<SpecCommand>;
  /** `--pg-ssl-required`: pg_hba rejects every TCP login without TLS. */
  readonly pgSslRequired?: boolean;
  /** This keeper's pgBackRest files (archiving.ts); absent: the `backup` section is never applied. */
  readonly pgbackrest?: PgbackrestLocal;
}

const NONE_ALLOWED: ReadonlySet<SpecCommand> = new Set();

function allowedOf(id: KeeperIdentity): ReadonlySet<SpecCommand> {
  return id.allowSpecCommands ?? NONE_ALLOWED;
}

/** The command-bearing settings of `db`'s spec (and of the cluster spec's `backup`) this keeper does not apply (none: empty). */
export function refusedFor(id: KeeperIdentity, db: DB, backup?: BackupSpec | null): string[] {
  return refusedSpecCommands(db, allowedOf(id), backup);
}

/**
 * The cluster spec's `backup` section when this keeper applies it: set, allowed by
 * `--allow-spec-commands backup`, and the keeper has its pgBackRest files.
 * @returns the section and the keeper's files, or undefined when archiving is off here
 */
export function archivingFor(id: KeeperIdentity, cd: ClusterData | undefined): { backup: BackupSpec; local: PgbackrestLocal } | undefined {
  const backup = cd?.cluster.spec.backup;
  if (backup === undefined || id.pgbackrest === undefined || !allowedOf(id).has('backup')) {
    return undefined;
  }
  return { backup, local: id.pgbackrest };
}

/** Prefix of application_name and replication slot names: `stolon_<db uid>`, as Stolon names them. */
const STANDBY_NAME_PREFIX = 'stolon_';

/** The application_name and slot name of DB `dbUid`'s standby connection. */
function standbyName(dbUid: string): string {
  return `${STANDBY_NAME_PREFIX}${dbUid}`;
}

/**
 * DB uids PostgreSQL reports `sync` in pg_stat_replication (standbys connect as `stolon_<uid>`;
 * other clients are ignored).
 */
export function syncStandbyUids(obs: Pick<PgObservation, 'replication'>): string[] {
  return obs.replication
    .filter((r) => r.syncState === 'sync' && r.applicationName.startsWith(STANDBY_NAME_PREFIX))
    .map((r) => r.applicationName.slice(STANDBY_NAME_PREFIX.length));
}

/**
 * The configuration to write for `db`: listen address and port, the spec's pgParameters and
 * sender counts, synchronous_standby_names, and pg_hba lines that let the keepers' addresses
 * (the other DBs' and, in mode `keepers`, this one's) replicate and log in as the superuser. `internalOnly` keeps normal users out (see `internalOnlyHba` in plan.ts).
 * With the spec's `backup` applied ({@link archivingFor}), `archive_mode` and `archive_command`
 * are pgBackRest's (archiving.ts), whatever pgParameters says.
 */
export function pgConfigFor(id: KeeperIdentity, cd: ClusterData, db: DB, isPrimary: boolean, internalOnly = false): PgConfig {
  const archiving = archivingFor(id, cd);
  return {
    listenAddress: id.pgAdvertiseAddress,
    port: id.pgPort,
    // Command-bearing parameters only when the operator allowed them (spec-commands.ts).
    parameters: {
      ...allowedPgParameters(withoutArchiveParameters(db.spec.pgParameters, archiving !== undefined), allowedOf(id)),
      ...(archiving !== undefined ? archiveParameters(archiving.backup, archiving.local) : {}),
    },
    maxStandbys: db.spec.maxStandbys,
    additionalWalSenders: db.spec.additionalWalSenders,
    synchronousStandbyNames: renderSynchronousStandbyNames(db.spec),
    usePgrewind: db.spec.usePgrewind,
    hba: renderHbaLines({
      suUsername: id.suUsername,
      replUsername: id.replUsername,
      // A DB spec from before the field existed: the secure default, not Stolon's open one.
      mode: db.spec.suReplAccessMode ?? DEFAULT_SPEC.defaultSUReplAccessMode,
      isPrimary,
      ownAddress: id.pgAdvertiseAddress,
      suCidrs: db.spec.suAllowedCIDRs ?? [],
      peerAddresses: [
        ...new Set(
          Object.values(cd.dbs)
            .filter((d) => d.uid !== db.uid && d.status.listenAddress !== '')
            .map((d) => d.status.listenAddress),
        ),
      ].sort(),
      userLines: db.spec.pgHBA,
      internalOnly,
      requireSsl: id.pgSslRequired === true,
    }),
  };
}

/** `params` without `archive_mode` and `archive_command` (any case) when `drop`, else as is. */
function withoutArchiveParameters(params: Readonly<Record<string, string>>, drop: boolean): Readonly<Record<string, string>> {
  if (!drop) {
    return params;
  }
  return Object.fromEntries(Object.entries(params).filter(([name]) => !['archive_mode', 'archive_command'].includes(name.toLowerCase())));
}

/** How DB `dbUid` connects to the primary it follows (replication role, its slot, its application_name). */
export function standbySettings(id: KeeperIdentity, dbUid: string, from: { host: string; port: number }): StandbySettings {
  return {
    primary: { host: from.host, port: from.port, user: id.replUsername, password: id.replPassword },
    applicationName: standbyName(dbUid),
    slotName: standbyName(dbUid),
  };
}

/**
 * The recovery settings of a standby: following an internal primary (`follow`) or, for a
 * standby cluster's primary, the external one (`external`). An internal standby also reads WAL
 * from the pgBackRest archive (`restore_command`) when `cd`'s `backup` section is applied here
 * ({@link archivingFor}); a standby cluster's primary uses `standbyConfig`'s restore command only.
 * @returns null when it follows nothing (a primary)
 */
export function recoveryFor(
  id: KeeperIdentity,
  dbUid: string,
  follow: FollowTarget | undefined,
  external: ExternalFollow | undefined,
  cd?: ClusterData,
): RecoveryConfig | null {
  if (follow !== undefined) {
    const archiving = archivingFor(id, cd);
    return {
      mode: 'standby',
      standby: standbySettings(id, dbUid, follow),
      ...(archiving !== undefined ? { restoreCommand: archiveRestoreCommand(archiving.backup, archiving.local) } : {}),
    };
  }
  if (external !== undefined) {
    const ss = external.standbySettings;
    return {
      mode: 'standby-external',
      primaryConninfo: ss.primaryConninfo ?? '',
      ...(ss.primarySlotName !== undefined ? { primarySlotName: ss.primarySlotName } : {}),
      ...(ss.recoveryMinApplyDelay !== undefined ? { recoveryMinApplyDelay: ss.recoveryMinApplyDelay } : {}),
      ...(external.archiveRecoverySettings?.restoreCommand !== undefined && allowedOf(id).has('restore_command')
        ? { restoreCommand: external.archiveRecoverySettings.restoreCommand }
        : {}),
    };
  }
  return null;
}

/**
 * The recovery settings of a point-in-time restore (`initMode: pitr`) once the data is restored.
 * A standby cluster's primary follows its external primary. Otherwise, with
 * `archiveRecoverySettings.restoreCommand`, archive recovery to the spec's target (PostgreSQL
 * refuses recovery.signal without restore_command). Without an archive, nothing: a plain start's
 * crash recovery replays the WAL the base backup carries. With `pitrConfig.fromBackup`, archive
 * recovery with `fromBackup.restoreCommand` (pgBackRest's `archive-get` of the source stanza,
 * restore.ts `backupRestoreFor`) to the spec's target, or to the end of the archive.
 * @returns the recovery settings, or null for a plain start
 * @throws StolonError CONFIG_INVALID (field `pitrConfig.recoveryTargetSettings`) when a recovery
 *   target is set without a restore command
 * @see https://www.postgresql.org/docs/current/runtime-config-wal.html#RUNTIME-CONFIG-WAL-ARCHIVE-RECOVERY
 */
export function pitrRecovery(id: KeeperIdentity, db: DB, external: ExternalFollow | undefined, fromBackup?: { readonly restoreCommand: string }): RecoveryConfig | null {
  if (external !== undefined) {
    return recoveryFor(id, db.uid, undefined, external);
  }
  const pitr = db.spec.pitrConfig ?? {};
  if (pitr.fromBackup !== undefined) {
    if (fromBackup === undefined) {
      throw new StolonError('INTERNAL', 'pitrConfig.fromBackup: the restore from the backup repository was not prepared (backupRestoreFor)');
    }
    // pgBackRest's archive-get of the source stanza; the target as for any restore.
    return { mode: 'recovery', restoreCommand: fromBackup.restoreCommand, ...(pitr.recoveryTargetSettings !== undefined ? { target: pitr.recoveryTargetSettings } : {}) };
  }
  // A restore the operator did not allow is refused as a whole, before anything is touched: a
  // PITR without its restore_command would silently stop at the end of the base backup.
  const refused = refusedSpecCommands(db, allowedOf(id)).filter((c) => c === 'data_restore_command' || c === 'restore_command');
  if (refused.length > 0) {
    throw new StolonError(
      'CONFIG_INVALID',
      `${refused.includes('data_restore_command') ? 'pitrConfig.dataRestoreCommand' : 'pitrConfig.archiveRecoverySettings.restoreCommand'}: ${describeRefusedSpecCommands(refused as SpecCommand[], id.uid ?? '(this keeper)')}`,
      { field: refused.includes('data_restore_command') ? 'pitrConfig.dataRestoreCommand' : 'pitrConfig.archiveRecoverySettings.restoreCommand' },
    );
  }
  const target = pitr.recoveryTargetSettings;
  const restoreCommand = pitr.archiveRecoverySettings?.restoreCommand;
  if (restoreCommand !== undefined) {
    return { mode: 'recovery', restoreCommand, ...(target !== undefined ? { target } : {}) };
  }
  if (target !== undefined) {
    throw new StolonError(
      'CONFIG_INVALID',
      'pitrConfig.recoveryTargetSettings: needs pitrConfig.archiveRecoverySettings.restoreCommand (recovery to a target reads WAL from the archive)',
      { field: 'pitrConfig.recoveryTargetSettings' },
    );
  }
  return null;
}

/**
 * A key that changes exactly when the configuration to write changes (the replication password
 * left out, so it never sits in memory twice or in a log).
 */
export function configKey(cfg: PgConfig, recovery: RecoveryConfig | null): string {
  const redacted =
    recovery?.mode === 'standby'
      ? { ...recovery, standby: { ...recovery.standby, primary: { ...recovery.standby.primary, password: '' } } }
      : recovery;
  return JSON.stringify({ cfg, recovery: redacted });
}

/**
 * The replication slots `db` keeps. A primary (or a standby cluster's primary, which serves its
 * own standbys): one per follower plus the spec's additional ones. An internal standby: one per
 * sibling standby of the same primary, so the slots exist if this one is promoted; created
 * without reserving WAL, they pin nothing meanwhile. Anything else: undefined (slots untouched).
 * @returns slot names, or undefined when this DB's slots are left as they are
 */
export function slotsFor(cd: ClusterData, db: DB, role: 'master' | 'standby', follow: FollowTarget | undefined, external: ExternalFollow | undefined): string[] | undefined {
  return slotsOf(cd, db, role === 'master' || external !== undefined, follow?.dbUid);
}

/**
 * The slots the DB `dbUid` keeps under `cd` by its own spec there: {@link slotsFor} with the role
 * and the followed DB that `cd` gives it. Empty when `cd` has no such DB.
 */
export function slotsWantedIn(cd: ClusterData, dbUid: string): Set<string> {
  const db = cd.dbs[dbUid];
  const follow = db?.spec.followConfig;
  const slots = db === undefined ? undefined : slotsOf(cd, db, db.spec.role === 'master' || follow?.type === 'external', follow?.type === 'internal' ? follow.dbuid : undefined);
  return new Set(slots ?? []);
}

/** {@link slotsFor}'s rule: a DB that serves followers, else an internal standby of `followedUid`. */
function slotsOf(cd: ClusterData, db: DB, servesFollowers: boolean, followedUid: string | undefined): string[] | undefined {
  if (servesFollowers) {
    return [...db.spec.followers.map(standbyName), ...(db.spec.additionalReplicationSlots ?? []).map(standbyName)];
  }
  if (followedUid === undefined) {
    return undefined;
  }
  return Object.values(cd.dbs)
    .filter((d) => d.uid !== db.uid && d.spec.followConfig?.type === 'internal' && d.spec.followConfig.dbuid === followedUid)
    .map((d) => standbyName(d.uid))
    .sort();
}

/**
 * The WAL range a rejoining DB throws away: from where its timeline forked from the followed
 * primary's history (`divergedAt`, from pg_rewind, else the followed DB's timeline history) to
 * where its own WAL ended (`localEnd`, else the last observed LSN).
 * @returns the range, or undefined when nothing is lost (no fork found, or it ended at the fork)
 */
export function discardedRange(
  cd: ClusterData,
  db: DB,
  before: Pick<PgObservation, 'timelineId' | 'xLogPos'>,
  method: DiscardedWal['method'],
  at: string,
  divergedAt?: number,
  localEnd?: number,
): DiscardedWal | undefined {
  const followed = cd.dbs[db.spec.followConfig?.dbuid ?? ''];
  const fork = divergedAt ?? followed?.status.timelinesHistory.find((h) => h.timelineID === before.timelineId)?.switchPoint;
  const end = localEnd ?? before.xLogPos;
  if (fork === undefined || end <= fork) {
    return undefined;
  }
  return { fromLsn: fork, toLsn: end, timelineID: before.timelineId, method, at };
}

/** The sentence logged (and shown by stolonctl) when a keeper throws WAL away. */
export function describeDiscard(d: DiscardedWal, keeperUid: string): string {
  return (
    `keeper ${keeperUid} discards WAL ${formatLsn(d.fromLsn)}–${formatLsn(d.toLsn)} (${d.toLsn - d.fromLsn} bytes) ` +
    `of timeline ${d.timelineID} that the new primary never had (${d.method})`
  );
}

/** What {@link postgresStateFor} reports besides the observation. */
export interface ReportInputs {
  readonly id: KeeperIdentity;
  readonly local: { readonly uid: string; readonly generation: number; readonly discardedWal?: DiscardedWal | undefined };
  /** The keeper's reportedHealthy verdict for this observation. */
  readonly healthy: boolean;
  readonly activity: string | undefined;
  /** The last failed start's error, reported only while PostgreSQL is down. */
  readonly startError: string | undefined;
  /** Command-bearing spec settings not applied (`--allow-spec-commands`); empty or absent: none. */
  readonly refusedSpecCommands?: readonly string[];
  /** pgBackRest archiving as this keeper sees it; absent when the `backup` section is not applied here. */
  readonly archive?: ArchiveState | undefined;
}

/** The `postgresState` of the keeper's info, from what it observed of PostgreSQL. */
export function postgresStateFor(inp: ReportInputs, obs: PgObservation): PostgresState {
  return {
    uid: inp.local.uid,
    generation: inp.local.generation,
    listenAddress: inp.id.pgAdvertiseAddress,
    port: String(inp.id.pgPort),
    healthy: inp.healthy,
    systemID: obs.systemId,
    timelineID: obs.timelineId,
    xLogPos: obs.xLogPos,
    ...(obs.replayedXLogPos !== undefined ? { replayedXLogPos: obs.replayedXLogPos } : {}),
    timelinesHistory: obs.timelinesHistory.slice(-2),
    pgParameters: {},
    synchronousStandbys: syncStandbyUids(obs),
    olderWalFile: obs.olderWalFile,
    ...(obs.role !== undefined ? { role: obs.role } : {}),
    running: obs.running,
    ...(obs.running && obs.startedAtMs !== undefined ? { startedAt: new Date(obs.startedAtMs).toISOString() } : {}),
    ...(obs.walReceiverStreaming !== undefined ? { streaming: obs.walReceiverStreaming } : {}),
    ...(!obs.running && obs.clusterState !== undefined ? { cleanShutdown: obs.clusterState === 'shut down' } : {}),
    pendingRestart: [...obs.pendingRestart],
    ...(inp.local.discardedWal !== undefined ? { discardedWal: inp.local.discardedWal } : {}),
    ...(inp.activity !== undefined ? { activity: inp.activity } : {}),
    ...(inp.startError !== undefined && !obs.running ? { startError: inp.startError } : {}),
    ...(inp.refusedSpecCommands !== undefined && inp.refusedSpecCommands.length > 0 ? { refusedSpecCommands: [...inp.refusedSpecCommands] } : {}),
    ...(inp.archive !== undefined ? { archive: inp.archive } : {}),
  };
}
