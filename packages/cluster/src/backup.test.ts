import { describe, expect, it } from 'vitest';
import { backupStanza, pgbackrestArgs, pgbackrestRepoOptions, pgbackrestRepoSettings, renderPgbackrestConf } from './backup.js';
import { resolveSpec, validateSpec } from './spec.js';

describe('pgbackrestArgs', () => {
  it('leaves out the options a command refuses on its command line, then appends the command', () => {
    const opts = pgbackrestRepoOptions({ repository: { path: '/b', s3: { bucket: 'x', endpoint: 'e', region: 'r', verifyTls: false } }, compressLevel: 3 }, 'main');
    expect(pgbackrestArgs('stanza-create', [...opts, '--spool-path=/s', '--archive-async'])).toEqual([
      '--stanza=main',
      '--repo1-path=/b',
      '--repo1-type=s3',
      '--repo1-s3-bucket=x',
      '--repo1-s3-endpoint=e',
      '--repo1-s3-region=r',
      '--repo1-s3-uri-style=host',
      '--no-repo1-storage-verify-tls',
      'stanza-create',
    ]);
    expect(pgbackrestArgs('backup', opts)).toEqual([...opts, 'backup']);
    expect(pgbackrestArgs('archive-push', ['--repo1-retention-full=2', '--compress-type=lz4'])).toEqual(['--compress-type=lz4', 'archive-push']);
  });
});

describe('backup spec section', () => {
  it('defaults the stanza to the cluster name and renders POSIX options', () => {
    const b = { repository: { path: '/var/lib/backup' } };
    expect(backupStanza(b, 'kube-stolon')).toBe('kube-stolon');
    expect(pgbackrestRepoOptions(b, 'main')).toEqual([
      '--stanza=main',
      '--repo1-path=/var/lib/backup',
      '--repo1-retention-full=2',
      '--compress-type=lz4',
      '--process-max=1',
    ]);
  });

  it('renders S3 options without credentials', () => {
    const opts = pgbackrestRepoOptions(
      { repository: { path: '/stolon', s3: { bucket: 'pg-backups', endpoint: '127.0.0.1:9000', region: 'us-east-1', uriStyle: 'path', verifyTls: false } }, retentionDiff: 3, compressType: 'zst', compressLevel: 3 },
      's',
    );
    expect(opts).toContain('--repo1-type=s3');
    expect(opts).toContain('--repo1-s3-uri-style=path');
    expect(opts).toContain('--no-repo1-storage-verify-tls');
    expect(opts).toContain('--repo1-retention-diff=3');
    expect(opts.join(' ')).not.toMatch(/key/i);
  });

  it.each([
    [{ repository: { path: 'relative' } }, 'backup.repository.path'],
    [{ repository: { path: '/x' }, stanza: 'a b' }, 'backup.stanza'],
    [{ repository: { path: '/x' }, compressType: 'xz' }, 'backup.compressType'],
    [{ repository: { path: '/x', s3: { bucket: 'B', endpoint: 'h', region: 'r' } } }, 'backup.repository.s3.bucket'],
    [{ repository: { path: '/x', s3: { bucket: 'bucket', endpoint: 'https://h', region: 'r' } } }, 'backup.repository.s3.endpoint'],
    [{ repository: { path: '/x' }, unknown: 1 }, 'backup.unknown'],
  ])('refuses %j naming %s', (backup, field) => {
    expect(() => validateSpec({ initMode: 'new', backup })).toThrow(field);
  });

  it('pitrConfig.fromBackup replaces dataRestoreCommand and needs the backup section', () => {
    const backup = { repository: { path: '/b' } };
    expect(resolveSpec({ initMode: 'pitr', backup, pitrConfig: { fromBackup: { stanza: 'old' } } }).pitrConfig?.fromBackup).toEqual({ stanza: 'old' });
    expect(() => validateSpec({ initMode: 'pitr', pitrConfig: { fromBackup: {} } })).toThrow('pitrConfig.fromBackup: needs a backup section');
    expect(() => validateSpec({ initMode: 'pitr', backup, pitrConfig: { fromBackup: {}, dataRestoreCommand: 'cp -a /x %d' } })).toThrow('keep one of the two');
    expect(() => validateSpec({ initMode: 'pitr', backup, pitrConfig: {} })).toThrow('pitrConfig.dataRestoreCommand: is required');
    expect(resolveSpec({ initMode: 'new' }).backup).toBeNull();
  });
});

describe('pgBackRest configuration file', () => {
  it('renders the repository settings and stanza sections', () => {
    const settings = pgbackrestRepoSettings({ repository: { path: '/r', s3: { bucket: 'bkt', endpoint: 'h:9000', region: 'r1', verifyTls: false } } });
    expect(settings).toMatchObject({ 'repo1-path': '/r', 'repo1-type': 's3', 'repo1-storage-verify-tls': 'n', 'compress-type': 'lz4' });
    expect(settings).not.toHaveProperty('stanza');
    expect(renderPgbackrestConf({ 'repo1-path': '/r' }, { main: { 'pg1-path': '/d', 'pg1-port': '5432' } })).toBe('[global]\nrepo1-path=/r\n\n[main]\npg1-path=/d\npg1-port=5432\n');
    expect(() => renderPgbackrestConf({ 'repo1-path': '/r\nrepo2-path=/x' })).toThrow('values one line');
  });
});
