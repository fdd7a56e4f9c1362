/**
 * What a secured etcd needs in tests: certificates made with `openssl` (a CA, a server
 * certificate for 127.0.0.1, a client certificate, and a second, unrelated CA with its own client
 * certificate to play the wrong CA and the wrong key), and etcd's user/role authentication
 * switched on over its JSON gateway (`/v3/auth/*`, the same calls `etcdctl user add`,
 * `role grant-permission --prefix` and `auth enable` make).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of the PEM files {@link makeEtcdTestCerts} writes (all in one directory). */
export interface EtcdTestCerts {
  readonly dir: string;
  /** The CA that signed the server and client certificates. */
  readonly caFile: string;
  /** Server certificate for IP 127.0.0.1 (serverAuth and clientAuth: etcd's gateway dials itself with it). */
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  /** Client certificate (CN `stolon-client`) signed by {@link EtcdTestCerts.caFile}. */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** A CA that signed nothing etcd trusts or serves: the "wrong CA". */
  readonly otherCaFile: string;
  /** A client certificate signed by {@link EtcdTestCerts.otherCaFile}: etcd rejects it. */
  readonly otherClientCertFile: string;
  readonly otherClientKeyFile: string;
}

async function openssl(dir: string, args: readonly string[]): Promise<void> {
  try {
    await run('openssl', [...args], { cwd: dir });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0] ?? ''} failed: ${e.stderr ?? e.message}`);
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, ['req', '-x509', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`]);
}

async function makeLeaf(dir: string, name: string, ca: string, cn: string, ext: string): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(dir, ['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  await openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`,
  ]);
}

/**
 * Writes a test PKI into `dir` with `openssl` (P-256 keys, valid two days).
 * @param dir an existing directory (e.g. from `makeTempDir`).
 * @throws Error with openssl's stderr when a command fails.
 */
export async function makeEtcdTestCerts(dir: string): Promise<EtcdTestCerts> {
  await makeCa(dir, 'ca');
  await makeCa(dir, 'other-ca');
  await makeLeaf(dir, 'server', 'ca', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  await makeLeaf(dir, 'client', 'ca', 'stolon-client', 'extendedKeyUsage=clientAuth\n');
  await makeLeaf(dir, 'other-client', 'other-ca', 'stolon-client', 'extendedKeyUsage=clientAuth\n');
  const f = (n: string) => join(dir, n);
  return {
    dir,
    caFile: f('ca.crt'),
    serverCertFile: f('server.crt'),
    serverKeyFile: f('server.key'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    otherCaFile: f('other-ca.crt'),
    otherClientCertFile: f('other-client.crt'),
    otherClientKeyFile: f('other-client.key'),
  };
}

/** One etcd user {@link enableEtcdAuth} creates. */
export interface EtcdTestUser {
  readonly name: string;
  readonly password: string;
  /** Key prefix the user's role (named after the user) may read and write. */
  readonly readWritePrefix?: string;
  /** Key prefix the user's role may only read. Neither prefix nor key: no permission at all. */
  readonly readPrefix?: string;
  /** One key the user's role may read and write (as `grant-permission` without `--prefix`). */
  readonly readWriteKey?: string;
}

async function gateway(endpoint: string, path: string, body: unknown, token?: string): Promise<void> {
  const res = await fetch(`${endpoint}/v3/auth/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token !== undefined ? { authorization: token } : {}) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) {
    throw new Error(`etcd /v3/auth/${path}: HTTP ${res.status} ${await res.text()}`);
  }
}

/** The end of etcd's `--prefix` range: the prefix with its last byte incremented. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1] = end[end.length - 1]! + 1;
  return end;
}

/**
 * Switches on etcd authentication on a plain-http etcd: creates `root` (role root) with
 * `rootPassword`, each user with a role of its own name granted readwrite and/or read on its
 * prefixes only (as `etcdctl role grant-permission <user> readwrite --prefix <prefix>`), then
 * `auth enable`.
 * @param endpoint an `http://` client URL of the etcd.
 * @throws Error naming the gateway call that failed.
 */
export async function enableEtcdAuth(endpoint: string, rootPassword: string, users: readonly EtcdTestUser[]): Promise<void> {
  await gateway(endpoint, 'user/add', { name: 'root', password: rootPassword });
  await gateway(endpoint, 'role/add', { name: 'root' });
  await gateway(endpoint, 'user/grant', { user: 'root', role: 'root' });
  for (const u of users) {
    await gateway(endpoint, 'user/add', { name: u.name, password: u.password });
    await gateway(endpoint, 'role/add', { name: u.name });
    const grants: [string, string | undefined][] = [['READWRITE', u.readWritePrefix], ['READ', u.readPrefix]];
    for (const [permType, prefix] of grants) {
      if (prefix !== undefined) {
        await gateway(endpoint, 'role/grant', {
          name: u.name,
          perm: { permType, key: Buffer.from(prefix).toString('base64'), range_end: prefixEnd(prefix).toString('base64') },
        });
      }
    }
    if (u.readWriteKey !== undefined) {
      await gateway(endpoint, 'role/grant', { name: u.name, perm: { permType: 'READWRITE', key: Buffer.from(u.readWriteKey).toString('base64') } });
    }
    await gateway(endpoint, 'user/grant', { user: u.name, role: u.name });
  }
  await gateway(endpoint, 'enable', {});
}
