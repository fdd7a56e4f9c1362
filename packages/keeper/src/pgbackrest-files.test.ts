/** The keeper's pgBackRest configuration file and directory, and where the S3 secrets come from. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '@stolon-ts/cluster';
import { pgbackrestLocal } from './archiving.js';
import { installPgbackrestFiles, readBackupSecrets } from './pgbackrest-files.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'stolon-pgbackrest-files-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) {
    rmSync(d, { recursive: true, force: true });
  }
});

describe('readBackupSecrets', () => {
  it('reads the key and secret from files or the environment, and needs both', async () => {
    const d = tmp();
    writeFileSync(join(d, 'key'), 'AKIA1\n');
    writeFileSync(join(d, 'secret'), 's3cr3t\n');
    expect(await readBackupSecrets({ backupS3KeyFile: join(d, 'key'), backupS3KeySecretFile: join(d, 'secret') }, {})).toEqual({ s3Key: 'AKIA1', s3KeySecret: 's3cr3t', s3Ca: undefined });
    expect(await readBackupSecrets({}, { STKEEPER_BACKUP_S3_KEY: 'K', STKEEPER_BACKUP_S3_KEY_SECRET: 'S' })).toMatchObject({ s3Key: 'K', s3KeySecret: 'S' });
    expect(await readBackupSecrets({}, {})).toEqual({ s3Ca: undefined });
    await expect(readBackupSecrets({ backupS3KeyFile: join(d, 'key') }, {})).rejects.toThrow(ConfigError);
    await expect(readBackupSecrets({}, { STKEEPER_BACKUP_S3_KEY_SECRET: 'S' })).rejects.toThrow(/^--backup-s3-key-file is required/);
    await expect(readBackupSecrets({ backupS3CaFile: join(d, 'missing') }, {})).rejects.toThrow(/^--backup-s3-ca-file: cannot read/);
  });
});

describe('installPgbackrestFiles', () => {
  it('writes the configuration file (0600) with the secrets and the CA copy, and makes the directory (0700)', async () => {
    const d = tmp();
    const local = pgbackrestLocal('main', d, join(d, 'postgres'), join(d, 'run'));
    await installPgbackrestFiles(local, { s3Key: 'K', s3KeySecret: 'S', s3Ca: Buffer.from('PEM') }, undefined);
    expect(readFileSync(local.configFile, 'utf8')).toBe(`[global]\nrepo1-s3-key=K\nrepo1-s3-key-secret=S\nrepo1-storage-ca-file=${join(d, 'pgbackrest-s3-ca.crt')}\n`);
    expect(statSync(local.configFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(d, 'pgbackrest-s3-ca.crt'), 'utf8')).toBe('PEM');
    expect(statSync(local.dir).mode & 0o777).toBe(0o700);
    // Again, without secrets: the file loses them, the directory stays.
    await installPgbackrestFiles(local, {}, undefined);
    expect(readFileSync(local.configFile, 'utf8')).toBe('[global]\n');
  });
  it('refuses a file where its directory goes', async () => {
    const d = tmp();
    writeFileSync(join(d, 'pgbackrest'), 'x');
    await expect(installPgbackrestFiles(pgbackrestLocal('main', d, join(d, 'postgres'), ''), {}, undefined)).rejects.toThrow(/is not a directory/);
  });
});
