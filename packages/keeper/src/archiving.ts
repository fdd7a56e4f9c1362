/**
 * Continuous WAL archiving with pgBackRest from the cluster spec's `backup` section (docs/backup.md,
 * "How archiving works"): the `archive_mode`/`archive_command` of every keeper's PostgreSQL, the
 * `restore_command` of internal standbys, and the argv of the pgBackRest commands the keeper runs
 * itself (`stanza-create`). Pure: no I/O; table-tested in archiving.test.ts.
 *
 * Every command gets the repository options of `pgbackrestRepoOptions` plus the keeper's own
 * paths: `--config` (the keeper-written file holding the S3 credentials, never argv), and the
 * lock, log and spool directories under `<data-dir>/pgbackrest`, owned by PostgreSQL's OS user and
 * outside PGDATA (datadir.ts).
 */
import { join } from 'node:path';
import { DEFAULT_BACKUP, backupStanza, pgbackrestArgs, pgbackrestRepoOptions, type ArchiveState, type BackupSpec, type PgbackrestCommand } from '@stolon-ts/cluster';
import type { ArchiverObservation } from '@stolon-ts/postgres';

/** The pgBackRest executable, looked up in PATH (the keeper's PATH reaches PostgreSQL's commands). */
export const PGBACKREST = 'pgbackrest';

/** Where this keeper keeps pgBackRest's files; built once at start (bin.ts). */
export interface PgbackrestLocal {
  /** `--cluster-name`: the stanza when `backup.stanza` is unset. */
  readonly clusterName: string;
  /** `--config`: the keeper-written configuration file (S3 credentials), `<data-dir>/pgbackrest.conf`. */
  readonly configFile: string;
  /** `<data-dir>/pgbackrest`: holds `lock/`, `log/` and `spool/`, owned by PostgreSQL's OS user. */
  readonly dir: string;
  /** PGDATA (`--pg1-path`). */
  readonly pgData: string;
  /** PostgreSQL's Unix socket directory (`--pg1-socket-path`, for commands that connect). */
  readonly socketDir: string;
}

/** The pgBackRest files of a keeper with data directory `dataDir` (see {@link PgbackrestLocal}). */
export function pgbackrestLocal(clusterName: string, dataDir: string, pgData: string, socketDir: string): PgbackrestLocal {
  return { clusterName, configFile: join(dataDir, 'pgbackrest.conf'), dir: join(dataDir, 'pgbackrest'), pgData, socketDir };
}

/**
 * The argv after `pgbackrest` for `command` run by or for this keeper: `--config`, the repository
 * options ({@link pgbackrestRepoOptions}, with `--stanza`), the keeper's lock and log paths, the
 * spool path and `--archive-async` when `backup.archiveAsync`, `--pg1-path`, and with `connect`
 * (commands that talk to PostgreSQL: `stanza-create`, `check`, `backup`) `--pg1-port`,
 * `--pg1-socket-path` and `--pg1-user` (peer authentication over the socket, as the keeper's own
 * connections) — less what `command` does not take (`pgbackrestArgs`) — then `command`.
 * @see https://pgbackrest.org/configuration.html
 */
export function pgbackrestCommand(
  command: PgbackrestCommand,
  backup: BackupSpec,
  local: PgbackrestLocal,
  connect?: { readonly port: number; readonly user: string },
): string[] {
  const out = [
    `--config=${local.configFile}`,
    ...pgbackrestRepoOptions(backup, backupStanza(backup, local.clusterName)),
    `--lock-path=${join(local.dir, 'lock')}`,
    `--log-path=${join(local.dir, 'log')}`,
  ];
  if (backup.archiveAsync === true) {
    out.push('--archive-async', `--spool-path=${join(local.dir, 'spool')}`);
  }
  out.push(`--pg1-path=${local.pgData}`);
  if (connect !== undefined) {
    out.push(`--pg1-port=${connect.port}`, `--pg1-socket-path=${local.socketDir}`, `--pg1-user=${connect.user}`);
  }
  return pgbackrestArgs(command, out);
}

/**
 * Quotes `arg` for `/bin/sh`: unchanged when made only of characters the shell never interprets,
 * else in single quotes (a `'` inside written `'\''`).
 * @example shellQuote("/a b") === "'/a b'"
 */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * A shell command line PostgreSQL runs as `archive_command` or `restore_command`: the quoted
 * argv with every `%` doubled (PostgreSQL replaces `%p`, `%f` and `%%`), then `tail` verbatim.
 * @see https://www.postgresql.org/docs/current/runtime-config-wal.html#GUC-ARCHIVE-COMMAND
 */
function commandLine(argv: readonly string[], tail: string): string {
  return `${argv.map((a) => shellQuote(a).replace(/%/g, '%%')).join(' ')} ${tail}`;
}

/**
 * The archiving parameters of every keeper's PostgreSQL when `backup` is set and allowed:
 * `archive_mode = on` and `archive_command = pgbackrest … archive-push %p`.
 *
 * `on`, not `always`: pgBackRest refuses `backup` and `check` on a primary running
 * `archive_mode = always` (`ERROR: [067]: archive_mode=always not supported`, pgBackRest 2.45), and
 * a promoted standby keeps its `archive_mode` until a restart, so standbys cannot run `always`
 * either without breaking backups after every failover. With `on` a standby archives nothing, so a
 * segment it received that the failed primary had not archived yet would never be archived: the
 * new primary's keeper pushes the old timelines' complete segments still in its `pg_wal` after the
 * promotion ({@link catchUpSegments}, stanza.ts); pgBackRest's `archive-push` accepts a segment
 * already archived with the same content.
 * @see https://www.postgresql.org/docs/current/warm-standby.html#CONTINUOUS-ARCHIVING-IN-STANDBY
 * @see https://pgbackrest.org/command.html#command-archive-push
 */
export function archiveParameters(backup: BackupSpec, local: PgbackrestLocal): Record<string, string> {
  return {
    archive_mode: 'on',
    archive_command: commandLine([PGBACKREST, ...pgbackrestCommand('archive-push', backup, local)], '%p'),
  };
}

/**
 * The `restore_command` of an internal standby when `backup` is set and allowed:
 * `pgbackrest … archive-get %f "%p"`, so a standby that fell behind what its primary still keeps
 * catches up from the archive (PostgreSQL tries it whenever streaming has nothing).
 * @see https://pgbackrest.org/command.html#command-archive-get
 */
export function archiveRestoreCommand(backup: BackupSpec, local: PgbackrestLocal): string {
  return commandLine([PGBACKREST, ...pgbackrestCommand('archive-get', backup, local)], '%f "%p"');
}

/** What goes in the keeper's pgBackRest configuration file: secrets and file paths only. */
export interface PgbackrestSecrets {
  /** `repo1-s3-key`. */
  readonly s3Key?: string | undefined;
  /** `repo1-s3-key-secret`. */
  readonly s3KeySecret?: string | undefined;
  /** `repo1-storage-ca-file`: CA certificate(s) the S3 endpoint's certificate chains to. */
  readonly s3CaFile?: string | undefined;
}

/**
 * The keeper's pgBackRest configuration file: a `[global]` section with the S3 key, secret and CA
 * file when given (none: an empty section, so no system-wide `/etc/pgbackrest` file is read).
 * @throws Error when a value holds a line break (an INI file cannot hold it); the message names
 *   the option, never the value.
 * @see https://pgbackrest.org/configuration.html#introduction
 */
export function renderPgbackrestConf(s: PgbackrestSecrets): string {
  const lines = ['[global]'];
  for (const [name, value] of [
    ['repo1-s3-key', s.s3Key],
    ['repo1-s3-key-secret', s.s3KeySecret],
    ['repo1-storage-ca-file', s.s3CaFile],
  ] as const) {
    if (value === undefined || value === '') {
      continue;
    }
    if (/[\r\n]/.test(value)) {
      throw new Error(`${name}: the value holds a line break, which pgBackRest's configuration file cannot hold`);
    }
    lines.push(`${name}=${value}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The published archiving state (`postgresState.archive`): the stanza, the last stanza-create
 * failure, and what PostgreSQL reports of archiving while it runs, with `failing` (the last
 * failure is newer than the last success) and `backlogWarning` (the waiting WAL is above
 * `backup.archiveWarnBytes`, default 1 GiB).
 * @param archiver the pass's observation; undefined while PostgreSQL does not run.
 */
export function archiveStateFor(backup: BackupSpec, stanza: string, stanzaError: string | undefined, archiver: ArchiverObservation | undefined): ArchiveState {
  const out: ArchiveState = { stanza, ...(stanzaError !== undefined ? { stanzaError } : {}) };
  if (archiver === undefined) {
    return out;
  }
  const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());
  const archivedTime = iso(archiver.lastArchivedAtMs);
  const failedTime = iso(archiver.lastFailedAtMs);
  return {
    ...out,
    archivedCount: archiver.archivedCount,
    ...(archiver.lastArchivedWal !== undefined ? { lastArchivedWal: archiver.lastArchivedWal } : {}),
    ...(archivedTime !== undefined ? { lastArchivedTime: archivedTime } : {}),
    failedCount: archiver.failedCount,
    ...(archiver.lastFailedWal !== undefined ? { lastFailedWal: archiver.lastFailedWal } : {}),
    ...(failedTime !== undefined ? { lastFailedTime: failedTime } : {}),
    failing: archiver.lastFailedAtMs !== undefined && archiver.lastFailedAtMs > (archiver.lastArchivedAtMs ?? 0),
    readyCount: archiver.readyCount,
    readyBytes: archiver.readyBytes,
    backlogWarning: archiver.readyBytes > (backup.archiveWarnBytes ?? DEFAULT_BACKUP.archiveWarnBytes),
  };
}

/**
 * The WAL files a newly promoted primary pushes to the archive itself: the complete segments of
 * timelines older than `timeline` among `pgWalFiles` (names in `pg_wal`), sorted. Those are what it
 * received as a standby; with `archive_mode = on` nothing archived them there, and the failed
 * primary may not have.
 */
export function catchUpSegments(pgWalFiles: readonly string[], timeline: number): string[] {
  return pgWalFiles.filter((f) => /^[0-9A-F]{24}$/.test(f) && Number.parseInt(f.slice(0, 8), 16) < timeline).sort();
}
