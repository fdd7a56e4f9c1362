/** storeFromConfig and the common --kube-* flags: parsing, ST*_ fallbacks, the kubernetes backend's errors. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { ConsulStore, KubernetesStore } from '@stolon-ts/store/backends';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMON_FLAGS, addFlags, baseYargs, pickFlags, type CommonConfig } from './flags.js';
import { storeFromConfig } from './store-config.js';

function parse(args: readonly string[], env: NodeJS.ProcessEnv = {}): CommonConfig {
  const argv = addFlags(baseYargs(args, 'test'), COMMON_FLAGS, 'STSENTINEL', env).exitProcess(false).parseSync();
  return pickFlags(argv as Record<string, unknown>, COMMON_FLAGS);
}

describe('storeFromConfig with --store-backend kubernetes', () => {
  let dir: string;
  let kubeconfig: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stolon-common-k8s-'));
    kubeconfig = join(dir, 'config');
    await writeFile(
      kubeconfig,
      'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: from-context\ncurrent-context: x\n',
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parses the --kube-* flags, with STSENTINEL_* fallbacks', () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'kubernetes', '--kube-resource-kind', 'configmap', '--kubeconfig', kubeconfig], {
      STSENTINEL_KUBE_NAMESPACE: 'from-env',
      STSENTINEL_KUBE_CONTEXT: 'x',
    });
    expect(c).toMatchObject({ storeBackend: 'kubernetes', kubeResourceKind: 'configmap', kubeconfig, kubeContext: 'x', kubeNamespace: 'from-env' });
    expect(parse(['--cluster-name', 'c1', '--store-backend', 'etcdv3']).kubeResourceKind).toBeUndefined();
  });

  // The first kubernetes store loads @kubernetes/client-node: seconds on a loaded 2-core machine.
  it('builds a KubernetesStore in the namespace the flags resolve to; --store-endpoints is not even parsed', { timeout: 30_000 }, async () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'kubernetes', '--kube-resource-kind', 'configmap', '--kubeconfig', kubeconfig, '--store-endpoints', 'ftp://not-used']);
    const s = await storeFromConfig(c, 'STSENTINEL', {});
    expect(s).toBeInstanceOf(KubernetesStore);
    expect((s as KubernetesStore).namespace).toBe('from-context');
    await s.close();
  });

  it('without --kube-resource-kind: a ConfigError naming the flag and the fix', async () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'kubernetes', '--kubeconfig', kubeconfig]);
    let err: unknown;
    try {
      await storeFromConfig(c, 'STSENTINEL', {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('kube-resource-kind');
    expect((err as Error).message).toBe(
      '--kube-resource-kind is required with --store-backend kubernetes: pass --kube-resource-kind configmap (the only kind supported, as in Stolon)',
    );
  });

  it('consul: Stolon\'s default endpoint http://127.0.0.1:8500; the ACL token from --store-token-file or <PREFIX>_STORE_TOKEN, refused with another backend', async () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'consul']);
    expect(c.storeEndpoints).toBeUndefined();
    const s = await storeFromConfig(c, 'STSENTINEL', { STSENTINEL_STORE_TOKEN: 'tok' });
    expect(s).toBeInstanceOf(ConsulStore);
    expect((s as unknown as { http: { endpoints: string[] } }).http.endpoints).toEqual(['http://127.0.0.1:8500']);
    await s.close();
    let err: unknown;
    try {
      await storeFromConfig(parse(['--cluster-name', 'c1', '--store-backend', 'etcdv3']), 'STSENTINEL', { STSENTINEL_STORE_TOKEN: 'tok' });
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).field).toBe('store-token-file');
    expect((err as Error).message).not.toContain('tok ');
  });
});

describe('the store TLS and authentication flags (etcdv3)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stolon-common-tls-'));
    await writeFile(join(dir, 'not-a-cert.pem'), 'hello\n');
    await writeFile(join(dir, 'empty-password'), '\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function configError(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<ConfigError> {
    let err: unknown;
    try {
      await storeFromConfig(parse(['--cluster-name', 'c1', '--store-backend', 'etcdv3', ...args], env), 'STSENTINEL', env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }

  it("parses Stolon's --store-ca-file, --store-cert-file, --store-key, --store-skip-tls-verify and --store-user, --store-password-file, with STSENTINEL_* fallbacks", () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'etcdv3', '--store-ca-file', '/ca', '--store-cert-file', '/cert', '--store-skip-tls-verify'], {
      STSENTINEL_STORE_KEY: '/key',
      STSENTINEL_STORE_USER: 'u',
      STSENTINEL_STORE_PASSWORD_FILE: '/pw',
    });
    expect(c).toMatchObject({ storeCaFile: '/ca', storeCertFile: '/cert', storeKey: '/key', storeSkipTlsVerify: true, storeUser: 'u', storePasswordFile: '/pw' });
    expect(parse(['--cluster-name', 'c1', '--store-backend', 'etcdv3']).storeSkipTlsVerify).toBe(false);
  });

  it('never takes the store password as a flag', () => {
    expect(() => parse(['--cluster-name', 'c1', '--store-backend', 'etcdv3', '--store-password', 'x'])).toThrow(/Unknown argument/);
  });

  it('refuses TLS flags with http:// endpoints, naming --store-endpoints', async () => {
    const err = await configError(['--store-endpoints', 'http://127.0.0.1:2379', '--store-skip-tls-verify']);
    expect(err.field).toBe('store-endpoints');
    expect(err.message).toMatch(/use https:\/\/ endpoints/);
  });

  it('refuses --store-cert-file without --store-key, a CA file that is not a certificate, and a missing file, each naming its flag', async () => {
    expect((await configError(['--store-endpoints', 'https://127.0.0.1:2379', '--store-cert-file', join(dir, 'not-a-cert.pem')])).field).toBe('store-key');
    const bad = await configError(['--store-endpoints', 'https://127.0.0.1:2379', '--store-ca-file', join(dir, 'not-a-cert.pem')]);
    expect(bad.field).toBe('store-ca-file');
    expect(bad.message).toMatch(/^--store-ca-file: .* is not a PEM certificate/);
    expect((await configError(['--store-endpoints', 'https://127.0.0.1:2379', '--store-ca-file', join(dir, 'missing.pem')])).message).toMatch(/^--store-ca-file: cannot read /);
  });

  it('refuses an empty password file and a password without a user', async () => {
    expect((await configError(['--store-user', 'u', '--store-password-file', join(dir, 'empty-password')])).message).toMatch(/^--store-password-file: .* is empty/);
    const err = await configError([], { STSENTINEL_STORE_PASSWORD: 'secret' });
    expect(err.field).toBe('store-user');
    expect(err.message).not.toContain('secret');
  });
});
