/** createStore: backend selection and its configuration errors. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { configErrorOf } from '@stolon-ts/cluster/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulStore } from './consul.js';
import { EtcdStore } from './etcd.js';
import { createStore, type CreateStoreOptions } from './factory.js';
import { KubernetesStore } from './kubernetes.js';


describe('createStore', () => {
  let dir: string;
  let kubeconfig: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stolon-factory-'));
    kubeconfig = join(dir, 'config');
    await writeFile(
      kubeconfig,
      'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: ns1\ncurrent-context: x\n',
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds an EtcdStore for etcdv3 without connecting', async () => {
    const s = createStore({ backend: 'etcdv3', endpoints: ['http://127.0.0.1:1'], clusterName: 'c', timeoutMs: 100 });
    expect(s).toBeInstanceOf(EtcdStore);
    await s.close();
  });

  it('builds a KubernetesStore for kubernetes with --kube-resource-kind configmap, without connecting; endpoints are ignored', async () => {
    const s = createStore({ backend: 'kubernetes', endpoints: [], clusterName: 'c1', kubeResourceKind: 'configmap', kubeconfig, timeoutMs: 100 });
    expect(s).toBeInstanceOf(KubernetesStore);
    expect((s as KubernetesStore).namespace).toBe('ns1');
    const other = createStore({ backend: 'kubernetes', endpoints: [], clusterName: 'c1', kubeResourceKind: 'configmap', kubeconfig, kubeNamespace: 'ns2' });
    expect((other as KubernetesStore).namespace).toBe('ns2');
    await Promise.all([s.close(), other.close()]);
  });

  it('kubernetes: --kube-resource-kind is required and must be configmap; the cluster name must fit object names', () => {
    const base: CreateStoreOptions = { backend: 'kubernetes', endpoints: [], clusterName: 'c1', kubeconfig };
    const missing = configErrorOf(() => createStore(base));
    expect(missing.field).toBe('kube-resource-kind');
    expect(missing.message).toMatch(/required with --store-backend kubernetes: pass --kube-resource-kind configmap/);
    const secret = configErrorOf(() => createStore({ ...base, kubeResourceKind: 'secret' }));
    expect(secret.field).toBe('kube-resource-kind');
    expect(secret.message).toMatch(/"secret" is not supported; use configmap/);
    expect(configErrorOf(() => createStore({ ...base, kubeResourceKind: 'configmap', clusterName: 'My_Cluster' })).field).toBe('cluster-name');
    expect(configErrorOf(() => createStore({ ...base, kubeResourceKind: 'configmap', kubeContext: 'nope' })).field).toBe('kube-context');
  });

  it.each(['etcdv2', 'etcd', 'zookeeper', ''])('rejects backend %j with a ConfigError on store-backend', (backend) => {
    const err = configErrorOf(() => createStore({ backend, endpoints: ['http://127.0.0.1:2379'], clusterName: 'c' }));
    expect(err.field).toBe('store-backend');
    expect(err.message).toMatch(/use etcdv3, consul or kubernetes/);
  });

  it('builds a ConsulStore for consul; an endpoint that is not http(s) is a ConfigError on store-endpoints', async () => {
    const s = createStore({ backend: 'consul', endpoints: ['http://127.0.0.1:8500'], clusterName: 'c', token: 't' });
    expect(s).toBeInstanceOf(ConsulStore);
    await s.close();
    expect(configErrorOf(() => createStore({ backend: 'consul', endpoints: ['unix:///x'], clusterName: 'c' })).field).toBe('store-endpoints');
    expect(configErrorOf(() => createStore({ backend: 'consul', endpoints: [], clusterName: 'c' })).field).toBe('store-endpoints');
    expect(
      configErrorOf(() => createStore({ backend: 'consul', endpoints: ['http://127.0.0.1:8500'], clusterName: 'c', tls: { skipVerify: true } })).message,
    ).toMatch(/not https:\/\/, but TLS flags were given/);
  });

  it('rejects an empty endpoint list with a ConfigError on store-endpoints', () => {
    expect(() => createStore({ backend: 'etcdv3', endpoints: [], clusterName: 'c' })).toThrow(ConfigError);
  });
});

describe('start-up cost', () => {
  // A module-resolution hook reports any import of @kubernetes/client-node (ESM imports do not show
  // up in require.cache).
  const hook = `export async function resolve(s, c, next) {
    if (s.includes('@kubernetes/client-node')) process.stderr.write('CLIENT_NODE_LOADED\\n');
    return next(s, c);
  }`;
  const registerHook = `data:text/javascript,${encodeURIComponent(
    `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`,
  )}`;
  const run = async (code: string): Promise<string> => {
    const { execFile } = await import('node:child_process');
    return new Promise((res, rej) => {
      execFile(process.execPath, ['--import', registerHook, '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 }, (err, _out, stderr) =>
        err === null ? res(stderr) : rej(new Error(`${err.message}\n${stderr}`)),
      );
    });
  };

  // Two Node start-ups: generous on a loaded 2-core machine.
  it('importing @stolon-ts/store does not load @kubernetes/client-node (it doubles start-up time; loaded on first use)', { timeout: 60_000 }, async () => {
    const { fileURLToPath } = await import('node:url');
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(await run(`await import(${JSON.stringify(dist)});`)).not.toContain('CLIENT_NODE_LOADED');
    // The probe itself works: a direct import is seen.
    expect(await run(`await import('@kubernetes/client-node');`)).toContain('CLIENT_NODE_LOADED');
  });
});
