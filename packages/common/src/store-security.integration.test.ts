/**
 * The secured etcd store, end to end from the command-line flags: a real etcd started by the
 * harness with TLS and client-certificate auth (certificates made here with openssl), then one
 * with etcd authentication and a role limited to the cluster's prefix. Each failure must be one
 * line naming the flag to fix.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, StolonError, StoreUnavailableError } from '@stolon-ts/cluster';
import { enableEtcdAuth, makeEtcdTestCerts, makeTempDir, removeDir, startEtcd, waitFor, type EtcdHandle, type EtcdTestCerts } from '@stolon-ts/harness';
import type { Store } from '@stolon-ts/store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMON_FLAGS, addFlags, baseYargs, pickFlags, type CommonConfig } from './flags.js';
import { storeFromConfig } from './store-config.js';

const PREFIX = 'STSENTINEL';

function parse(args: readonly string[], env: NodeJS.ProcessEnv = {}): CommonConfig {
  const argv = addFlags(baseYargs(args, 'test'), COMMON_FLAGS, PREFIX, env).exitProcess(false).parseSync();
  return pickFlags(argv as Record<string, unknown>, COMMON_FLAGS);
}

/** A store from a command line; `timeoutMs` 3 s so failures come quickly. */
async function storeFrom(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Store> {
  return await storeFromConfig(parse(['--store-backend', 'etcdv3', '--store-timeout', '3s', ...args], env), PREFIX, env);
}

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error,
  );
}

/** A store call's failure: one line, naming `flag`; the store is closed. */
async function expectStoreFailure(store: Store, flag: RegExp): Promise<StolonError> {
  try {
    const err = await failure(store.getClusterData());
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).not.toContain('\n');
    expect(err.message).toMatch(flag);
    return err as StolonError;
  } finally {
    await store.close();
  }
}

describe('etcd with TLS and client-certificate auth (--client-cert-auth --trusted-ca-file)', () => {
  let dir: string;
  let certs: EtcdTestCerts;
  let etcd: EtcdHandle;
  let url: string;
  beforeAll(async () => {
    dir = await makeTempDir('stolon-store-tls-');
    certs = await makeEtcdTestCerts(dir);
    etcd = await startEtcd({ tls: certs });
    url = etcd.endpoints[0]!;
  });
  afterAll(async () => {
    await etcd?.stop();
    await removeDir(dir);
  });

  it('works with --store-ca-file, --store-cert-file and --store-key', async () => {
    expect(url).toMatch(/^https:\/\//);
    const store = await storeFrom(['--cluster-name', 'tls1', '--store-endpoints', url, '--store-ca-file', certs.caFile, '--store-cert-file', certs.clientCertFile, '--store-key', certs.clientKeyFile]);
    try {
      const rev = await store.putClusterData('{"v":1}', null);
      expect(await store.getClusterData()).toEqual({ text: '{"v":1}', revision: rev });
      const seen: string[] = [];
      const w = await store.watch(['clusterdata'], (t) => seen.push(t));
      await store.putClusterData('{"v":2}', rev);
      await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'clusterdata event over TLS' });
      await w.close();
    } finally {
      await store.close();
    }
  });

  it('takes the flags from STSENTINEL_STORE_* too', async () => {
    const store = await storeFrom(['--cluster-name', 'tls2', '--store-endpoints', url], {
      STSENTINEL_STORE_CA_FILE: certs.caFile,
      STSENTINEL_STORE_CERT_FILE: certs.clientCertFile,
      STSENTINEL_STORE_KEY: certs.clientKeyFile,
    });
    try {
      expect(await store.getClusterData()).toBeNull();
    } finally {
      await store.close();
    }
  });

  it('with the wrong CA: one line naming --store-ca-file', async () => {
    const store = await storeFrom(['--cluster-name', 'tls3', '--store-endpoints', url, '--store-ca-file', certs.otherCaFile, '--store-cert-file', certs.clientCertFile, '--store-key', certs.clientKeyFile]);
    const err = await expectStoreFailure(store, /--store-ca-file/);
    expect(err.message).toMatch(/not trusted|verify/);
  });

  it('without any CA (system roots only): one line naming --store-ca-file', async () => {
    const store = await storeFrom(['--cluster-name', 'tls4', '--store-endpoints', url, '--store-cert-file', certs.clientCertFile, '--store-key', certs.clientKeyFile]);
    await expectStoreFailure(store, /--store-ca-file/);
  });

  it('with a client certificate etcd does not trust (the wrong key pair): one line naming --store-cert-file and --store-key', async () => {
    const store = await storeFrom(['--cluster-name', 'tls5', '--store-endpoints', url, '--store-ca-file', certs.caFile, '--store-cert-file', certs.otherClientCertFile, '--store-key', certs.otherClientKeyFile]);
    const err = await expectStoreFailure(store, /--store-cert-file/);
    expect(err.message).toMatch(/--store-key/);
  });

  it('without a client certificate: one line naming --store-cert-file and --store-key', async () => {
    const store = await storeFrom(['--cluster-name', 'tls6', '--store-endpoints', url, '--store-ca-file', certs.caFile]);
    const err = await expectStoreFailure(store, /--store-cert-file/);
    expect(err.message).toMatch(/--store-key/);
  });

  it('a key that does not belong to the certificate is a ConfigError naming --store-key, before any connection', async () => {
    let err: unknown;
    try {
      await storeFrom(['--cluster-name', 'tls7', '--store-endpoints', url, '--store-ca-file', certs.caFile, '--store-cert-file', certs.clientCertFile, '--store-key', certs.otherClientKeyFile]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('store-key');
    expect((err as Error).message).toMatch(/^--store-key: .*does not match.*--store-cert-file/);
  });

  it('--store-skip-tls-verify connects without a CA (the client certificate is still sent)', async () => {
    const store = await storeFrom(['--cluster-name', 'tls8', '--store-endpoints', url, '--store-skip-tls-verify', '--store-cert-file', certs.clientCertFile, '--store-key', certs.clientKeyFile]);
    try {
      expect(await store.getClusterData()).toBeNull();
    } finally {
      await store.close();
    }
  });

  it('--store-user against an etcd without authentication: one line naming --store-user', async () => {
    const store = await storeFrom(['--cluster-name', 'tls10', '--store-endpoints', url, '--store-ca-file', certs.caFile, '--store-cert-file', certs.clientCertFile, '--store-key', certs.clientKeyFile, '--store-user', 'u'], {
      STSENTINEL_STORE_PASSWORD: 'pw',
    });
    const err = await expectStoreFailure(store, /--store-user/);
    expect(err.message).toMatch(/does not have authentication enabled/);
  });

  it('plain http endpoints against this etcd: one line saying to use https', async () => {
    const store = await storeFrom(['--cluster-name', 'tls9', '--store-endpoints', url.replace('https://', 'http://')]);
    await expectStoreFailure(store, /https:\/\//);
  });
});

describe('etcd with authentication and a role limited to the cluster prefix', () => {
  let dir: string;
  let etcd: EtcdHandle;
  let url: string;
  let passwordFile: string;
  beforeAll(async () => {
    dir = await makeTempDir('stolon-store-auth-');
    etcd = await startEtcd();
    url = etcd.endpoints[0]!;
    // The role covers cluster "a1" only (with the trailing slash: not "a10").
    await enableEtcdAuth(url, 'root-secret', [
      { name: 'stolon-a1', password: 'a1-secret', readWritePrefix: 'stolon/cluster/a1/' },
      { name: 'nobody', password: 'nobody-secret' },
      // What keeper k2 needs and no more: read the cluster, write its own info.
      { name: 'keeper-a1', password: 'keeper-secret', readPrefix: 'stolon/cluster/a1/', readWriteKey: 'stolon/cluster/a1/keepers/info/k2' },
    ]);
    passwordFile = join(dir, 'store-password');
    await writeFile(passwordFile, 'a1-secret\n', { mode: 0o600 });
  });
  afterAll(async () => {
    await etcd?.stop();
    await removeDir(dir);
  });

  it('the store works for the user within its prefix (password from --store-password-file)', async () => {
    const store = await storeFrom(['--cluster-name', 'a1', '--store-endpoints', url, '--store-user', 'stolon-a1', '--store-password-file', passwordFile]);
    try {
      const rev = await store.putClusterData('{"v":1}', null);
      expect(await store.getClusterData()).toEqual({ text: '{"v":1}', revision: rev });
      const seen: string[] = [];
      const w = await store.watch(['keepers'], (t) => seen.push(t));
      await store.setInfo('keepers', 'k1', { infoUID: 'i', uid: 'k1', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 10_000);
      expect(Object.keys(await store.listInfos('keepers'))).toEqual(['k1']);
      await waitFor(() => seen.includes('keepers'), { timeoutMs: 5000, what: 'keepers event with auth' });
      await w.close();
      const election = await store.campaign('s1', 10_000);
      await waitFor(() => election.isLeader(), { timeoutMs: 10_000, what: 'leadership with auth' });
      expect(await store.getLeader()).toBe('s1');
      await election.resign();
    } finally {
      await store.close();
    }
  });

  it("a keeper's own role (read the cluster, write its info's key) publishes its info and watches, but cannot write clusterdata or another keeper's info", async () => {
    const store = await storeFrom(['--cluster-name', 'a1', '--store-endpoints', url, '--store-user', 'keeper-a1'], { STSENTINEL_STORE_PASSWORD: 'keeper-secret' });
    try {
      const seen: string[] = [];
      const w = await store.watch(['clusterdata'], (t) => seen.push(t));
      const cd = await store.getClusterData();
      expect(cd?.text).toBe('{"v":1}');
      await store.setInfo('keepers', 'k2', { infoUID: 'i', uid: 'k2', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 10_000);
      expect(Object.keys(await store.listInfos('keepers'))).toContain('k2');
      const err = await failure(store.putClusterData('{"v":"forged"}', cd!.revision));
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(err.message).toMatch(/permission denied to --store-user keeper-a1/);
      const forged = await failure(store.setInfo('keepers', 'k1', { infoUID: 'i', uid: 'k1', clusterUID: 'c', bootUUID: 'b', postgresBinaryVersion: { Maj: 16, Min: 0 } }, 10_000));
      expect(forged.message).toMatch(/permission denied/);
      await store.deleteInfo('keepers', 'k2');
      await w.close();
    } finally {
      await store.close();
    }
  });

  it('the password may come from STSENTINEL_STORE_PASSWORD', async () => {
    const store = await storeFrom(['--cluster-name', 'a1', '--store-endpoints', url, '--store-user', 'stolon-a1'], { STSENTINEL_STORE_PASSWORD: 'a1-secret' });
    try {
      expect((await store.getClusterData())?.text).toBe('{"v":1}');
    } finally {
      await store.close();
    }
  });

  it('another cluster is outside the role: permission denied, one line naming the prefix to grant', async () => {
    const store = await storeFrom(['--cluster-name', 'a10', '--store-endpoints', url, '--store-user', 'stolon-a1', '--store-password-file', passwordFile]);
    const err = await expectStoreFailure(store, /permission denied/);
    expect(err.message).toContain('stolon/cluster/a10/');
    expect(err.message).toMatch(/--store-user stolon-a1/);
    expect(err.message).not.toContain('a1-secret');
  });

  it('a user without any permission: permission denied', async () => {
    const store = await storeFrom(['--cluster-name', 'a1', '--store-endpoints', url, '--store-user', 'nobody'], { STSENTINEL_STORE_PASSWORD: 'nobody-secret' });
    await expectStoreFailure(store, /permission denied/);
  });

  it('a wrong password: one line naming --store-user and --store-password-file, without the password', async () => {
    const store = await storeFrom(['--cluster-name', 'a1', '--store-endpoints', url, '--store-user', 'stolon-a1'], { STSENTINEL_STORE_PASSWORD: 'wrong-secret' });
    const err = await expectStoreFailure(store, /--store-password-file/);
    expect(err.message).toMatch(/--store-user/);
    expect(err.message).not.toContain('wrong-secret');
  });

  it('no user while etcd requires one: one line naming --store-user', async () => {
    const store = await storeFrom(['--cluster-name', 'a1', '--store-endpoints', url]);
    await expectStoreFailure(store, /--store-user/);
  });

  it('--store-user without a password is a ConfigError naming --store-password-file', async () => {
    await expect(storeFrom(['--cluster-name', 'a1', '--store-endpoints', url, '--store-user', 'stolon-a1'])).rejects.toThrow(
      /--store-password-file is required \(or set STSENTINEL_STORE_PASSWORD\)/,
    );
  });
});
