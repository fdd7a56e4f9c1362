/**
 * The keeper's pgBackRest files in `<data-dir>` (archiving.ts, docs/security.md): the configuration
 * file `pgbackrest.conf` holding the S3 credentials (`--backup-s3-key-file`,
 * `--backup-s3-key-secret-file`, or `STKEEPER_BACKUP_S3_KEY` / `STKEEPER_BACKUP_S3_KEY_SECRET`),
 * a copy of `--backup-s3-ca-file` (`pgbackrest-s3-ca.crt`), and the directory `pgbackrest/` where
 * pgBackRest keeps its lock, log and spool directories. All owned by PostgreSQL's OS user (the
 * files of mode 0600, the directory 0700), outside PGDATA so base backups never carry the
 * credentials. The files are new files renamed into place in the root-owned `<data-dir>`
 * (state-file.ts), never written through a link; root never writes inside `pgbackrest/`.
 */
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { readSecret } from '@stolon-ts/common';
import { renderPgbackrestConf, type PgbackrestLocal } from './archiving.js';
import { serverConfLines, type BackupServerConfig } from './backup-server.js';
import { writeStateFile } from './state-file.js';

/** The S3 secrets, read at start; both absent for a POSIX repository. */
export interface BackupSecrets {
  readonly s3Key?: string | undefined;
  readonly s3KeySecret?: string | undefined;
  /** Content of `--backup-s3-ca-file`. */
  readonly s3Ca?: Buffer | undefined;
}

function given(file: string | undefined, envVar: string, env: NodeJS.ProcessEnv): boolean {
  return (file !== undefined && file !== '') || (env[envVar] !== undefined && env[envVar] !== '');
}

/**
 * Reads the S3 credentials and CA file the flags name.
 * @throws ConfigError naming the flag: a file that cannot be read or is empty, a key without its
 *   secret or the other way round.
 */
export async function readBackupSecrets(
  flags: { readonly backupS3KeyFile?: string | undefined; readonly backupS3KeySecretFile?: string | undefined; readonly backupS3CaFile?: string | undefined },
  env: NodeJS.ProcessEnv,
): Promise<BackupSecrets> {
  const hasKey = given(flags.backupS3KeyFile, 'STKEEPER_BACKUP_S3_KEY', env);
  const hasSecret = given(flags.backupS3KeySecretFile, 'STKEEPER_BACKUP_S3_KEY_SECRET', env);
  if (hasKey !== hasSecret) {
    const missing = hasKey ? 'backup-s3-key-secret-file' : 'backup-s3-key-file';
    throw new ConfigError(
      `--${missing} is required with ${hasKey ? '--backup-s3-key-file' : '--backup-s3-key-secret-file'}: S3 needs both the access key and its secret (or set STKEEPER_BACKUP_S3_KEY and STKEEPER_BACKUP_S3_KEY_SECRET)`,
      { field: missing },
    );
  }
  let s3Ca: Buffer | undefined;
  if (flags.backupS3CaFile !== undefined && flags.backupS3CaFile !== '') {
    try {
      s3Ca = await fs.readFile(flags.backupS3CaFile);
    } catch (err) {
      throw new ConfigError(`--backup-s3-ca-file: cannot read ${flags.backupS3CaFile}: ${(err as Error).message}`, { field: 'backup-s3-ca-file' });
    }
  }
  if (!hasKey) {
    return { s3Ca };
  }
  return {
    s3Key: readSecret(flags.backupS3KeyFile, 'STKEEPER_BACKUP_S3_KEY', 'backup-s3-key-file', env),
    s3KeySecret: readSecret(flags.backupS3KeySecretFile, 'STKEEPER_BACKUP_S3_KEY_SECRET', 'backup-s3-key-secret-file', env),
    s3Ca,
  };
}

/**
 * Writes the keeper's pgBackRest configuration file (and the CA copy; with `server`, a
 * `[global:server]` section for its TLS server, backup-server.ts) and makes `local.dir`, all
 * owned by `owner` (PostgreSQL's OS user) when this process is root. Run at start, after
 * `prepareDataDir` (which removes a link planted at `pgbackrest`).
 * @param owner uid/gid of PostgreSQL's OS user when root, else undefined.
 * @throws ConfigError (field `data-dir`) when `<data-dir>/pgbackrest` is not a directory; the file
 *   system's error otherwise; Error from {@link renderPgbackrestConf} for a value with a line break.
 */
export async function installPgbackrestFiles(
  local: PgbackrestLocal,
  secrets: BackupSecrets,
  owner: { readonly uid: number; readonly gid: number } | undefined,
  server?: BackupServerConfig,
): Promise<void> {
  let caFile: string | undefined;
  if (secrets.s3Ca !== undefined) {
    caFile = join(dirname(local.configFile), 'pgbackrest-s3-ca.crt');
    await writeStateFile(caFile, `${caFile}.tmp`, secrets.s3Ca, 0o600, owner);
  }
  const conf =
    renderPgbackrestConf({ s3Key: secrets.s3Key, s3KeySecret: secrets.s3KeySecret, s3CaFile: caFile }) + (server !== undefined ? `${serverConfLines(server).join('\n')}\n` : '');
  await writeStateFile(local.configFile, `${local.configFile}.tmp`, conf, 0o600, owner);
  await fs.mkdir(local.dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') {
      throw err;
    }
  });
  const st = await fs.lstat(local.dir);
  if (!st.isDirectory()) {
    throw new ConfigError(`--data-dir: ${local.dir} is not a directory; remove it and start again (the keeper makes it for pgBackRest)`, { field: 'data-dir' });
  }
  if (owner !== undefined && (st.uid !== owner.uid || st.gid !== owner.gid)) {
    await fs.lchown(local.dir, owner.uid, owner.gid);
  }
  if ((st.mode & 0o777) !== 0o700) {
    await fs.chmod(local.dir, 0o700);
  }
}
