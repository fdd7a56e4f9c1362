/** storeFromConfig and the common --kube-* flags: parsing, ST*_ fallbacks, the kubernetes backend's errors. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { KubernetesStore } from '@stolon-ts/store';
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

  it('builds a KubernetesStore in the namespace the flags resolve to; --store-endpoints is not even parsed', async () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'kubernetes', '--kube-resource-kind', 'configmap', '--kubeconfig', kubeconfig, '--store-endpoints', 'ftp://not-used']);
    const s = storeFromConfig(c);
    expect(s).toBeInstanceOf(KubernetesStore);
    expect((s as KubernetesStore).namespace).toBe('from-context');
    await s.close();
  });

  it('without --kube-resource-kind: a ConfigError naming the flag and the fix', () => {
    const c = parse(['--cluster-name', 'c1', '--store-backend', 'kubernetes', '--kubeconfig', kubeconfig]);
    let err: unknown;
    try {
      storeFromConfig(c);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('kube-resource-kind');
    expect((err as Error).message).toBe(
      '--kube-resource-kind is required with --store-backend kubernetes: pass --kube-resource-kind configmap (the only kind supported, as in Stolon)',
    );
  });

  it('consul is still refused by the flag table', () => {
    expect(() => parse(['--cluster-name', 'c1', '--store-backend', 'consul'])).toThrow(/store-backend/);
  });
});
