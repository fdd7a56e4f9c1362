/** The pgBackRest commands and parameters the keeper derives from the spec's `backup` section. */
import { describe, expect, it } from 'vitest';
import { aCluster } from '@stolon-ts/cluster/testing';
import { archiveParameters, archiveRestoreCommand, archiveStateFor, catchUpSegments, pgbackrestCommand, pgbackrestLocal, renderPgbackrestConf, shellQuote } from './archiving.js';
import { archivingFor, pgConfigFor, recoveryFor, refusedFor, type KeeperIdentity } from './pgconfig.js';
import { parseAllowSpecCommands } from './spec-commands.js';

const LOCAL = pgbackrestLocal('main', '/data/k0', '/data/k0/postgres', '/data/k0/run');
const BACKUP = { repository: { path: '/backup' } };

describe('pgbackrestCommand', () => {
  it('gives every command the keeper-owned paths and the repository options, less what the command refuses', () => {
    expect(pgbackrestCommand('archive-push', BACKUP, LOCAL)).toEqual([
      '--config=/data/k0/pgbackrest.conf',
      '--stanza=main',
      '--repo1-path=/backup',
      '--compress-type=lz4',
      '--process-max=1',
      '--lock-path=/data/k0/pgbackrest/lock',
      '--log-path=/data/k0/pgbackrest/log',
      '--pg1-path=/data/k0/postgres',
      'archive-push',
    ]);
    expect(pgbackrestCommand('stanza-create', { ...BACKUP, stanza: 'other', archiveAsync: true }, LOCAL, { port: 5433, user: 'su' })).toEqual([
      '--config=/data/k0/pgbackrest.conf',
      '--stanza=other',
      '--repo1-path=/backup',
      '--lock-path=/data/k0/pgbackrest/lock',
      '--log-path=/data/k0/pgbackrest/log',
      '--pg1-path=/data/k0/postgres',
      '--pg1-port=5433',
      '--pg1-socket-path=/data/k0/run',
      '--pg1-user=su',
      'stanza-create',
    ]);
    expect(pgbackrestCommand('archive-get', { ...BACKUP, archiveAsync: true }, LOCAL)).toContain('--spool-path=/data/k0/pgbackrest/spool');
  });
});

describe('archive_command and restore_command', () => {
  it('archive_mode on, archive-push %p; archive-get %f "%p"; % in a path doubled, odd characters quoted', () => {
    const odd = pgbackrestLocal('main', "/data/it's 100%", "/data/it's 100%/postgres", '/run');
    const params = archiveParameters(BACKUP, odd);
    expect(params['archive_mode']).toBe('on');
    expect(params['archive_command']).toBe(
      "pgbackrest '--config=/data/it'\\''s 100%%/pgbackrest.conf' --stanza=main --repo1-path=/backup --compress-type=lz4 --process-max=1 " +
        "'--lock-path=/data/it'\\''s 100%%/pgbackrest/lock' '--log-path=/data/it'\\''s 100%%/pgbackrest/log' '--pg1-path=/data/it'\\''s 100%%/postgres' archive-push %p",
    );
    expect(archiveRestoreCommand(BACKUP, LOCAL)).toBe(
      'pgbackrest --config=/data/k0/pgbackrest.conf --stanza=main --repo1-path=/backup --process-max=1 --lock-path=/data/k0/pgbackrest/lock ' +
        '--log-path=/data/k0/pgbackrest/log --pg1-path=/data/k0/postgres archive-get %f "%p"',
    );
    expect(shellQuote('a$b`c"d')).toBe(`'a$b\`c"d'`);
  });
});

describe('renderPgbackrestConf', () => {
  it('holds only the secrets given, and refuses a line break without repeating the value', () => {
    expect(renderPgbackrestConf({})).toBe('[global]\n');
    expect(renderPgbackrestConf({ s3Key: 'AK', s3KeySecret: 's/e+c', s3CaFile: '/d/ca.crt' })).toBe(
      '[global]\nrepo1-s3-key=AK\nrepo1-s3-key-secret=s/e+c\nrepo1-storage-ca-file=/d/ca.crt\n',
    );
    expect(() => renderPgbackrestConf({ s3KeySecret: 'top\nsecret' })).toThrow(/^repo1-s3-key-secret: the value holds a line break/);
    expect(() => renderPgbackrestConf({ s3KeySecret: 'top\nsecret' })).not.toThrow(/top/);
  });
});

describe('the keeper applies the backup section only when allowed', () => {
  const id: KeeperIdentity = {
    pgAdvertiseAddress: '10.0.0.5',
    pgPort: 5433,
    suUsername: 'postgres',
    replUsername: 'repl',
    replPassword: 'x',
    uid: 'k0',
    allowSpecCommands: parseAllowSpecCommands('backup'),
    pgbackrest: LOCAL,
  };
  const cd = aCluster({ spec: { initMode: 'new', backup: BACKUP } }).initialized().withPrimary('k0').withStandby('k1').build();
  const db = cd.dbs['db-k0']!;
  db.spec.pgParameters = { ARCHIVE_MODE: 'off', archive_command: '/bin/true', work_mem: '8MB' };
  const follow = { dbUid: 'db-k0', host: '10.0.0.1', port: 5432, systemId: '1' };

  it('allowed: pgBackRest archiving on primary and standby (pgParameters archive settings replaced), archive-get on standbys', () => {
    expect(archivingFor(id, cd)).toBeDefined();
    const params = pgConfigFor(id, cd, db, true).parameters;
    expect(params['archive_mode']).toBe('on');
    expect(params['archive_command']).toMatch(/ archive-push %p$/);
    expect(params['ARCHIVE_MODE']).toBeUndefined();
    expect(params['work_mem']).toBe('8MB');
    const rec = recoveryFor(id, 'db-k1', follow, undefined, cd);
    expect(rec?.mode === 'standby' ? rec.restoreCommand : undefined).toMatch(/ archive-get %f "%p"$/);
    // archive_command of pgParameters is still not allowed (and would be replaced anyway).
    expect(refusedFor(id, db, cd.cluster.spec.backup)).toEqual(['archive_command']);
  });
  it('not allowed: nothing applied, `backup` refused; no backup section: nothing', () => {
    const strict = { ...id, allowSpecCommands: new Set<never>() };
    expect(archivingFor(strict, cd)).toBeUndefined();
    expect(pgConfigFor(strict, cd, db, true).parameters).toEqual({ ARCHIVE_MODE: 'off', work_mem: '8MB' });
    const rec = recoveryFor(strict, 'db-k1', follow, undefined, cd);
    expect(rec?.mode === 'standby' ? rec.restoreCommand : 'x').toBeUndefined();
    expect(refusedFor(strict, db, cd.cluster.spec.backup)).toEqual(['archive_command', 'backup']);
    const plain = aCluster().initialized().withPrimary('k0').build();
    expect(archivingFor(id, plain)).toBeUndefined();
    const { pgbackrest: _files, ...withoutFiles } = id;
    expect(archivingFor(withoutFiles, cd)).toBeUndefined();
  });
});

describe('catchUpSegments and archiveStateFor', () => {
  it('a promoted primary pushes the complete segments of older timelines only', () => {
    const files = ['000000020000000000000005', '000000010000000000000004', '000000010000000000000003', '000000010000000000000005.partial', '00000002.history', 'archive_status'];
    expect(catchUpSegments(files, 2)).toEqual(['000000010000000000000003', '000000010000000000000004']);
    expect(catchUpSegments(files, 1)).toEqual([]);
  });
  it('failing when the last failure is newer than the last success; the backlog warning past archiveWarnBytes', () => {
    const a = { archivedCount: 3, lastArchivedWal: 'A', lastArchivedAtMs: 1000, failedCount: 1, lastFailedWal: 'B', lastFailedAtMs: 2000, readyCount: 2, readyBytes: 32 };
    expect(archiveStateFor({ ...BACKUP, archiveWarnBytes: 31 }, 's', undefined, a)).toEqual({
      stanza: 's',
      archivedCount: 3,
      lastArchivedWal: 'A',
      lastArchivedTime: '1970-01-01T00:00:01.000Z',
      failedCount: 1,
      lastFailedWal: 'B',
      lastFailedTime: '1970-01-01T00:00:02.000Z',
      failing: true,
      readyCount: 2,
      readyBytes: 32,
      backlogWarning: true,
    });
    expect(archiveStateFor(BACKUP, 's', 'boom', { ...a, lastArchivedAtMs: 3000 })).toMatchObject({ stanzaError: 'boom', failing: false, backlogWarning: false });
    expect(archiveStateFor(BACKUP, 's', undefined, undefined)).toEqual({ stanza: 's' });
  });
});
