/** Unit tier: the keeper's pgBackRest TLS server settings (backup-server.ts). */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeBackupTls } from '@stolon-ts/harness';
import { readBackupTls, serverConfLines, standbyBackupOptions, type BackupServerConfig } from './backup-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stolon-backup-server-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const where = (d: string) => ({ dataDir: d, listenAddress: '10.0.0.5', advertiseAddress: 'keeper-0.db' });

describe('readBackupTls', () => {
  it('is undefined without the flags', async () => {
    expect(await readBackupTls({}, where(dir), undefined)).toBeUndefined();
  });

  it('names the missing flag when only some are given', async () => {
    const tls = await makeBackupTls(join(dir, 'tls-partial'), ['partial']);
    const c = tls.keepers['partial']!;
    await expect(readBackupTls({ backupTlsCertFile: c.certFile, backupServerPort: 8432 }, where(dir), undefined)).rejects.toThrow(/--backup-tls-key-file is required/);
    await expect(readBackupTls({ backupTlsCertFile: c.certFile, backupTlsKeyFile: c.keyFile, backupTlsCaFile: c.certFile }, where(dir), undefined)).rejects.toThrow(/--backup-server-port is required/);
  });

  it('copies the files (0600), takes the CN of its certificate first, and refuses a wildcard CN', async () => {
    const tls = await makeBackupTls(join(dir, 'tls'), ['keeper0']);
    const c = tls.keepers['keeper0']!;
    const data = mkdtempSync(join(dir, 'data-'));
    const flags = { backupTlsCertFile: c.certFile, backupTlsKeyFile: c.keyFile, backupTlsCaFile: tls.caFile, backupServerPort: 8432, backupTlsClientCns: 'keeper1, keeper0,keeper2' };
    const got = await readBackupTls(flags, where(data), undefined);
    expect(got).toMatchObject({ listenAddress: '10.0.0.5', port: 8432, host: 'keeper-0.db', clientCns: ['keeper0', 'keeper1', 'keeper2'], keyFile: join(data, 'pgbackrest-tls.key') });
    expect(readFileSync(got!.keyFile, 'utf8')).toBe(readFileSync(c.keyFile, 'utf8'));
    expect(statSync(got!.keyFile).mode & 0o777).toBe(0o600);
    await expect(readBackupTls({ ...flags, backupTlsClientCns: '*' }, where(data), undefined)).rejects.toThrow(/--backup-tls-client-cns/);
    await expect(readBackupTls({ ...flags, backupServerPort: 70000 }, where(data), undefined)).rejects.toThrow(/--backup-server-port: 70000 is not a TCP port/);
  });
});

describe('pgBackRest options', () => {
  const cfg: BackupServerConfig = { listenAddress: '10.0.0.5', port: 8432, host: 'keeper-0.db', certFile: '/d/c.crt', keyFile: '/d/c.key', caFile: '/d/ca.crt', clientCns: ['keeper0', 'keeper1'] };
  it('the [global:server] section accepts each CN for every stanza', () => {
    expect(serverConfLines(cfg)).toEqual([
      '[global:server]',
      'tls-server-address=10.0.0.5',
      'tls-server-port=8432',
      'tls-server-cert-file=/d/c.crt',
      'tls-server-key-file=/d/c.key',
      'tls-server-ca-file=/d/ca.crt',
      'tls-server-auth=keeper0=*',
      'tls-server-auth=keeper1=*',
    ]);
  });
  it('a standby backup reaches the primary as pg2 over TLS', () => {
    const primary = { keeperUID: 'keeper1', host: 'keeper-1.db', port: 8433, pgData: '/data/postgres', pgPort: 5433, socketPath: '/data/run', user: 'postgres' };
    expect(standbyBackupOptions(cfg, primary)).toEqual([
      '--backup-standby',
      '--pg2-host=keeper-1.db',
      '--pg2-host-type=tls',
      '--pg2-host-port=8433',
      '--pg2-host-cert-file=/d/c.crt',
      '--pg2-host-key-file=/d/c.key',
      '--pg2-host-ca-file=/d/ca.crt',
      '--pg2-path=/data/postgres',
      '--pg2-port=5433',
      '--pg2-socket-path=/data/run',
      '--pg2-user=postgres',
    ]);
  });
});
