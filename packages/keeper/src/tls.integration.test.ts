/**
 * The keeper's TLS files (tls.ts) with certificates made by `openssl`: the flags' combinations,
 * the startup checks (each error names its flag), the copies' owners and modes (root keeper: key
 * root:<PostgreSQL's group> 0640, as PostgreSQL accepts it), and a rotation, including the moment
 * in between where the certificate is new and the key not yet.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, lstat, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { configErrorOf } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import { makeEtcdTestCerts, makeTempDir, removeDir, type EtcdTestCerts } from '@stolon-ts/harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TlsFiles, tlsSources, type TlsSources } from './tls.js';

let root = '';
let a: EtcdTestCerts;
let b: EtcdTestCerts;
const lines: { msg: string }[] = [];
const log = createLogger({ level: 'info', component: 'test', dest: { write: (l: string) => void lines.push(JSON.parse(l) as { msg: string }) } });

beforeAll(async () => {
  root = await makeTempDir('stolon-keeper-tls-');
  await mkdir(join(root, 'a'));
  await mkdir(join(root, 'b'));
  a = await makeEtcdTestCerts(join(root, 'a'));
  b = await makeEtcdTestCerts(join(root, 'b'));
});
afterAll(async () => {
  await removeDir(root);
});


async function rejected(p: Promise<unknown>): Promise<ConfigError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe('tlsSources', () => {
  it('none set: no TLS', () => {
    expect(tlsSources({})).toBeUndefined();
    expect(tlsSources({ pgSslCertFile: '', pgSslKeyFile: '' })).toBeUndefined();
  });
  it.each([
    [{ pgSslKeyFile: '/k' }, 'pg-ssl-cert-file'],
    [{ pgSslCertFile: '/c' }, 'pg-ssl-key-file'],
    [{ pgSslCaFile: '/ca' }, 'pg-ssl-ca-file'],
  ])('%j is refused, naming %s', (flags, field) => {
    expect(configErrorOf(() => tlsSources(flags)).field).toBe(field);
  });
  it('certificate and key, CA optional', () => {
    expect(tlsSources({ pgSslCertFile: '/c', pgSslKeyFile: '/k' })).toEqual({ certFile: '/c', keyFile: '/k', caFile: undefined });
  });
});

describe('TlsFiles', () => {
  const srcOf = (c: EtcdTestCerts): TlsSources => ({ certFile: c.serverCertFile, keyFile: c.serverKeyFile, caFile: c.caFile });

  it.each<[string, (s: TlsSources) => TlsSources, string, RegExp]>([
    ['an unreadable certificate', (s) => ({ ...s, certFile: '/nonexistent/c.crt' }), 'pg-ssl-cert-file', /cannot read \/nonexistent\/c\.crt/],
    ['a key that is not the certificate\'s', (s) => ({ ...s, keyFile: b.serverKeyFile }), 'pg-ssl-key-file', /is not the private key of the certificate/],
    ['a certificate that is a key', (s) => ({ ...s, certFile: a.serverKeyFile }), 'pg-ssl-cert-file', /is not a PEM certificate/],
    ['a key that is a certificate', (s) => ({ ...s, keyFile: a.serverCertFile }), 'pg-ssl-key-file', /is not a PEM private key/],
    ['a CA that is a key', (s) => ({ ...s, caFile: a.caFile.replace(/\.crt$/, '.key') }), 'pg-ssl-ca-file', /is not a PEM certificate/],
  ])('refuses %s at startup, naming the flag, without writing anything', async (_t, patch, field, message) => {
    const dir = join(root, `refused-${field}-${Math.random().toString(16).slice(2)}`);
    await mkdir(dir);
    const err = await rejected(new TlsFiles(patch(srcOf(a)), dir, undefined).install());
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('PRIVATE KEY');
    await expect(lstat(join(dir, 'pg-server.key'))).rejects.toThrow(/ENOENT/);
  });

  it('root keeper: the copies are root\'s, the key 0640 with PostgreSQL\'s group; a link at a copy\'s name is replaced, not followed', async () => {
    const dir = join(root, 'root-owned');
    await mkdir(dir);
    const outside = join(root, 'outside.txt');
    await writeFile(outside, 'untouched\n');
    await symlink(outside, join(dir, 'pg-server.key'));
    const pgGid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    const files = await new TlsFiles(srcOf(a), dir, pgGid).install();
    expect(files).toMatchObject({ certFile: join(dir, 'pg-server.crt'), keyFile: join(dir, 'pg-server.key'), caFile: join(dir, 'pg-ca.crt') });
    const key = await lstat(files.keyFile);
    expect({ file: key.isFile(), uid: key.uid, gid: key.gid, mode: key.mode & 0o777 }).toEqual({ file: true, uid: 0, gid: pgGid, mode: 0o640 });
    expect((await lstat(files.certFile)).mode & 0o777).toBe(0o644);
    expect(await readFile(files.keyFile, 'utf8')).toBe(await readFile(a.serverKeyFile, 'utf8'));
    expect(await readFile(outside, 'utf8')).toBe('untouched\n');
  });

  it('rotation: a half-rotated set is logged once and the copies in place kept; the full new set is installed with a new digest', async () => {
    const dir = join(root, 'rotate');
    await mkdir(dir);
    const src = { certFile: join(root, 'rot.crt'), keyFile: join(root, 'rot.key'), caFile: join(root, 'rot-ca.crt') };
    await copyFile(a.serverCertFile, src.certFile);
    await copyFile(a.serverKeyFile, src.keyFile);
    await copyFile(a.caFile, src.caFile);
    const tls = new TlsFiles(src, dir, undefined);
    const first = await tls.install();
    expect(first.keyFile).toBe(join(dir, 'pg-server.key'));
    expect((await lstat(first.keyFile)).mode & 0o777).toBe(0o600);
    expect(await tls.refresh(log)).toEqual(first);

    await copyFile(b.serverCertFile, src.certFile);
    lines.length = 0;
    expect(await tls.refresh(log)).toEqual(first);
    expect(await tls.refresh(log)).toEqual(first);
    expect(lines.map((l) => l.msg)).toEqual([expect.stringMatching(/^TLS files not reloaded, the ones in place stay: --pg-ssl-key-file: .* is not the private key/)]);
    expect(await readFile(join(dir, 'pg-server.crt'), 'utf8')).toBe(await readFile(a.serverCertFile, 'utf8'));

    await copyFile(b.serverKeyFile, src.keyFile);
    const next = await tls.refresh(log);
    expect(next.digest).not.toBe(first.digest);
    expect(await readFile(join(dir, 'pg-server.crt'), 'utf8')).toBe(await readFile(b.serverCertFile, 'utf8'));
    expect(await readFile(join(dir, 'pg-server.key'), 'utf8')).toBe(await readFile(b.serverKeyFile, 'utf8'));
    expect(tls.caCopy).toBe(join(dir, 'pg-ca.crt'));
  });
});
