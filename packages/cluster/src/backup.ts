/**
 * The `backup` spec section turned into pgBackRest options (docs/backup.md). Pure: no I/O.
 * Every pgBackRest command the keeper or stolonctl runs — `archive-push` and `archive-get` from
 * PostgreSQL, `stanza-create`, `backup`, `info`, `restore`, `check` — gets the same repository
 * options from {@link pgbackrestRepoOptions}, so they all agree on where the repository is.
 * Options are pgBackRest's command-line spelling (`--name=value`; see
 * https://pgbackrest.org/command.html); S3 credentials are never among them (the keeper passes
 * them in a configuration file or pgBackRest's `PGBACKREST_REPO1_S3_KEY*` variables).
 */
import type { BackupSpec } from './types.js';

/** Defaults of the `backup` section's optional fields. */
export const DEFAULT_BACKUP = Object.freeze({
  retentionFull: 2,
  compressType: 'lz4',
  archiveAsync: false,
  processMax: 1,
  /** 1 GiB of WAL waiting to be archived. */
  archiveWarnBytes: 1024 * 1024 * 1024,
} as const);

/**
 * The stanza of a cluster: `backup.stanza`, else the cluster name.
 * @param clusterName the `--cluster-name` of the keepers and sentinels.
 */
export function backupStanza(backup: BackupSpec, clusterName: string): string {
  return backup.stanza ?? clusterName;
}

/**
 * Repository, retention, compression and archiving options for pgBackRest, as argv entries, plus
 * `--stanza`. Credentials are not included.
 * @param stanza the stanza to use (normally {@link backupStanza}; a restore passes the source's).
 * @returns e.g. `['--stanza=main', '--repo1-path=/backup', '--repo1-retention-full=2', '--compress-type=lz4', ...]`.
 */
export function pgbackrestRepoOptions(backup: BackupSpec, stanza: string): string[] {
  const repo = backup.repository;
  const out = [`--stanza=${stanza}`, `--repo1-path=${repo.path}`];
  if (repo.s3 !== undefined) {
    out.push(
      '--repo1-type=s3',
      `--repo1-s3-bucket=${repo.s3.bucket}`,
      `--repo1-s3-endpoint=${repo.s3.endpoint}`,
      `--repo1-s3-region=${repo.s3.region}`,
      `--repo1-s3-uri-style=${repo.s3.uriStyle ?? 'host'}`,
    );
    if (repo.s3.verifyTls === false) {
      out.push('--no-repo1-storage-verify-tls');
    }
  }
  out.push(`--repo1-retention-full=${backup.retentionFull ?? DEFAULT_BACKUP.retentionFull}`);
  if (backup.retentionDiff !== undefined) {
    out.push(`--repo1-retention-diff=${backup.retentionDiff}`);
  }
  out.push(`--compress-type=${backup.compressType ?? DEFAULT_BACKUP.compressType}`);
  if (backup.compressLevel !== undefined) {
    out.push(`--compress-level=${backup.compressLevel}`);
  }
  out.push(`--process-max=${backup.processMax ?? DEFAULT_BACKUP.processMax}`);
  return out;
}
