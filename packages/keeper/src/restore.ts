/**
 * Restoring a cluster from the backup repository (`initMode: pitr` with `pitrConfig.fromBackup`,
 * docs/backup.md "Restoring (point-in-time recovery)"): which backup to start from, read from
 * `pgbackrest info --output=json`, and the `pgbackrest restore` arguments. pgBackRest only copies
 * the files (`--type=none`: it writes no recovery settings); the keeper writes `restore_command`
 * (`archive-get` from the source stanza) and the recovery target itself, as for any restore
 * (pgconfig.ts `pitrRecovery`). Pure: no I/O; table-tested in restore.test.ts.
 */
import { StolonError, backupStanza, type BackupSpec, type ClusterData, type DB, type RestoreTarget } from '@stolon-ts/cluster';
import { formatLsn, parseLsn } from '@stolon-ts/postgres';
import { archiveRestoreCommand, pgbackrestCommand, type PgbackrestLocal } from './archiving.js';
import { archivingFor, type KeeperIdentity } from './pgconfig.js';
import { describeRefusedSpecCommands } from './spec-commands.js';

/** One backup of a stanza, as `pgbackrest info --output=json` lists it. */
export interface BackupSet {
  /** e.g. `20261206-221603F`. */
  readonly label: string;
  /** `full`, `diff` or `incr`. */
  readonly type: string;
  /** When the backup ended (pgBackRest's `timestamp.stop`, whole seconds), ms since the epoch. */
  readonly stopMs: number;
  /** Where it ended (`lsn.stop`), a byte position; undefined when pgBackRest did not record it. */
  readonly stopLsn: number | undefined;
}

const FROM_BACKUP = 'pitrConfig.fromBackup';
const TARGET = 'pitrConfig.recoveryTargetSettings';

interface InfoJsonBackup {
  label?: unknown;
  type?: unknown;
  timestamp?: { stop?: unknown };
  lsn?: { stop?: unknown };
}

interface InfoJsonStanza {
  name?: unknown;
  status?: { code?: unknown; message?: unknown };
  backup?: InfoJsonBackup[];
}

function lsnOf(text: unknown): number | undefined {
  try {
    return typeof text === 'string' ? parseLsn(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The backups of `stanza`, oldest first, from `pgbackrest info --output=json`.
 * pgBackRest's stanza status codes: 0 ok, 1 missing stanza path, 2 no valid backups, 3 missing
 * stanza data; any other is reported with its message.
 * @param repository the repository path, for messages.
 * @throws StolonError `CONFIG_INVALID` (field `pitrConfig.fromBackup`) when the stanza is not in
 *   the repository or has no backup; `PG_COMMAND_FAILED` (transient) when the output is not what
 *   pgBackRest prints.
 * @see https://pgbackrest.org/command.html#command-info
 */
export function parseBackupInfo(stdout: string, stanza: string, repository: string): BackupSet[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new StolonError('PG_COMMAND_FAILED', `pgbackrest info printed no JSON for stanza ${stanza}: ${stdout.slice(0, 200)}`, { transient: true });
  }
  const entry = Array.isArray(parsed) ? (parsed as InfoJsonStanza[]).find((s) => s.name === stanza) : undefined;
  if (entry === undefined) {
    throw new StolonError('PG_COMMAND_FAILED', `pgbackrest info did not list stanza ${stanza}`, { transient: true });
  }
  const code = typeof entry.status?.code === 'number' ? entry.status.code : 99;
  const message = typeof entry.status?.message === 'string' ? entry.status.message : 'unknown status';
  const where = `stanza ${stanza} in the backup repository ${repository}`;
  if (code === 1 || code === 3) {
    throw new StolonError(
      'CONFIG_INVALID',
      `${FROM_BACKUP}: ${where} does not exist (pgBackRest: ${message}); check pitrConfig.fromBackup.stanza (the source cluster's backup.stanza, default its cluster name) and backup.repository`,
      { field: `${FROM_BACKUP}.stanza` },
    );
  }
  const sets = (entry.backup ?? [])
    .map((b): BackupSet | undefined => {
      const stop = b.timestamp?.stop;
      return typeof b.label === 'string' && typeof stop === 'number'
        ? { label: b.label, type: typeof b.type === 'string' ? b.type : 'full', stopMs: stop * 1000, stopLsn: lsnOf(b.lsn?.stop) }
        : undefined;
    })
    .filter((b): b is BackupSet => b !== undefined);
  if (code === 2 || sets.length === 0) {
    throw new StolonError('CONFIG_INVALID', `${FROM_BACKUP}: ${where} has no backup to restore; take one first (stolonctl backup)`, {
      field: FROM_BACKUP,
    });
  }
  if (code !== 0) {
    throw new StolonError('CONFIG_INVALID', `${FROM_BACKUP}: ${where} cannot be restored from: ${message} (pgBackRest status ${code})`, {
      field: FROM_BACKUP,
    });
  }
  return sets;
}

/** The target in words, for messages. */
export function describeTarget(t: RestoreTarget): string {
  switch (t.type) {
    case 'default':
      return 'the end of the archive';
    case 'immediate':
      return 'the end of the backup (recoveryTarget immediate)';
    case 'time':
      return `recoveryTargetTime ${t.target}`;
    case 'lsn':
      return `recoveryTargetLsn ${t.target}`;
    case 'name':
      return `restore point ${JSON.stringify(t.target)} (recoveryTargetName)`;
    case 'xid':
      return `recoveryTargetXid ${t.target}`;
  }
}

/**
 * Whether recovery from backup `b` can stop at `t`: a time or LSN target must lie after the end
 * of the backup (recovery cannot stop before the data is consistent). The stop time is whole
 * seconds, rounded down, so the target must be at least a second later. Other targets cannot be
 * checked before recovery: true.
 */
function reaches(b: BackupSet, t: RestoreTarget): boolean {
  if (t.type === 'time') {
    return b.stopMs + 1000 <= t.atMs;
  }
  if (t.type === 'lsn') {
    return b.stopLsn !== undefined && b.stopLsn <= t.lsn;
  }
  return true;
}

function stopOf(b: BackupSet): string {
  return `${new Date(b.stopMs).toISOString()}${b.stopLsn === undefined ? '' : `, LSN ${formatLsn(b.stopLsn)}`}`;
}

/**
 * The backup a restore starts from, as pgBackRest chooses it for `--type=time` and `--type=lsn`
 * (https://pgbackrest.org/command.html#command-restore): `set` when given (it must exist and end
 * before a time or LSN target); otherwise, for a time or LSN target, the newest backup that ends
 * before it; for the other targets, the newest backup (a restore point or xid older than it needs
 * `set`, which the keeper cannot check: PostgreSQL then fails with "recovery ended before
 * configured recovery target was reached").
 * @param sets the stanza's backups, oldest first ({@link parseBackupInfo}).
 * @returns the label and a sentence saying why it was chosen
 * @throws StolonError `CONFIG_INVALID` with field `pitrConfig.fromBackup.set` (no such backup) or
 *   `pitrConfig.recoveryTargetSettings` (no backup, or not the given one, ends before the target).
 */
export function chooseBackupSet(sets: readonly BackupSet[], stanza: string, set: string | undefined, target: RestoreTarget): { label: string; why: string } {
  const what = describeTarget(target);
  if (set !== undefined) {
    const b = sets.find((s) => s.label === set);
    if (b === undefined) {
      throw new StolonError(
        'CONFIG_INVALID',
        `${FROM_BACKUP}.set: stanza ${stanza} has no backup ${set}; it has ${sets.map((s) => s.label).join(', ')}`,
        { field: `${FROM_BACKUP}.set` },
      );
    }
    if (!reaches(b, target)) {
      throw new StolonError(
        'CONFIG_INVALID',
        `${TARGET}: backup ${set} (${FROM_BACKUP}.set) ends at ${stopOf(b)}, not before ${what}; recovery cannot stop before the end of its backup: choose an older backup or a later target`,
        { field: TARGET },
      );
    }
    return { label: b.label, why: `backup ${b.label} (${FROM_BACKUP}.set), ended ${stopOf(b)}` };
  }
  const candidates = sets.filter((b) => reaches(b, target));
  const chosen = candidates.reduce<BackupSet | undefined>((best, b) => (best === undefined || b.stopMs >= best.stopMs ? b : best), undefined);
  if (chosen === undefined) {
    const oldest = sets.reduce((a, b) => (b.stopMs < a.stopMs ? b : a));
    throw new StolonError(
      'CONFIG_INVALID',
      `${TARGET}: no backup of stanza ${stanza} ends before ${what} (the oldest, ${oldest.label}, ended ${stopOf(oldest)}); ` +
        'a point-in-time recovery starts from a backup taken before the target: choose a later target',
      { field: TARGET },
    );
  }
  return {
    label: chosen.label,
    why:
      target.type === 'time' || target.type === 'lsn'
        ? `backup ${chosen.label}, the newest that ended before ${what} (ended ${stopOf(chosen)})`
        : `backup ${chosen.label}, the newest (ended ${stopOf(chosen)})`,
  };
}

/**
 * The options added to `pgbackrest … restore` (after the command; the common options come from
 * `pgbackrestCommand` with the source stanza): the backup `label`, and `--type=none` so pgBackRest
 * writes no recovery settings (the keeper writes them, with the target).
 * @see https://pgbackrest.org/command.html#command-restore
 */
export function restoreArgs(label: string): string[] {
  return [`--set=${label}`, '--type=none'];
}

/** What a restore from the backup repository uses on this keeper ({@link backupRestoreFor}). */
export interface BackupRestore {
  readonly backup: BackupSpec;
  readonly local: PgbackrestLocal;
  /** The stanza read from: `fromBackup.stanza`, else the cluster's own. */
  readonly sourceStanza: string;
  /** The stanza the restored cluster archives into after its promotion (`backup.stanza`, else the cluster name). */
  readonly ownStanza: string;
  /** `restore_command`: `pgbackrest … archive-get %f "%p"` for the source stanza. */
  readonly restoreCommand: string;
}

/**
 * The pgBackRest settings of `db`'s restore from the backup repository (`pitrConfig.fromBackup`):
 * the cluster spec's `backup` section and this keeper's pgBackRest files, with the source stanza.
 * @returns undefined when `db` has no `fromBackup`
 * @throws StolonError `CONFIG_INVALID` (field `pitrConfig.fromBackup`) when this keeper does not
 *   allow `backup` (`--allow-spec-commands`), or the spec has no backup section
 */
export function backupRestoreFor(id: KeeperIdentity, db: DB, cd: ClusterData | undefined): BackupRestore | undefined {
  const from = db.spec.pitrConfig?.fromBackup;
  if (from === undefined) {
    return undefined;
  }
  const backup = cd?.cluster.spec.backup;
  if (backup === undefined) {
    throw new StolonError('CONFIG_INVALID', `${FROM_BACKUP}: needs the cluster spec's backup section (backup.repository is where the backup is read from)`, {
      field: FROM_BACKUP,
    });
  }
  const archiving = archivingFor(id, cd);
  if (archiving === undefined) {
    throw new StolonError('CONFIG_INVALID', `${FROM_BACKUP}: ${describeRefusedSpecCommands(['backup'], id.uid ?? '(this keeper)')}`, { field: FROM_BACKUP });
  }
  const ownStanza = backupStanza(backup, archiving.local.clusterName);
  const sourceStanza = from.stanza ?? ownStanza;
  return {
    backup,
    local: archiving.local,
    sourceStanza,
    ownStanza,
    restoreCommand: archiveRestoreCommand({ ...backup, stanza: sourceStanza }, archiving.local),
  };
}

/** The argv after `pgbackrest` of `info --output=json` for the source stanza. */
export function infoArgs(r: BackupRestore): string[] {
  return [...pgbackrestCommand('info', { ...r.backup, stanza: r.sourceStanza }, r.local), '--output=json'];
}

/** The argv after `pgbackrest` of the restore of backup `label` from the source stanza into this keeper's PGDATA. */
export function restoreCommandArgs(r: BackupRestore, label: string): string[] {
  return [...pgbackrestCommand('restore', { ...r.backup, stanza: r.sourceStanza }, r.local), ...restoreArgs(label)];
}
