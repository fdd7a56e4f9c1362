/** createStore: backend selection, its configuration errors, and which client libraries it loads. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulStore } from './consul.js';
import { EtcdStore } from './etcd.js';
import { createStore, type CreateStoreOptions } from './factory.js';
import { KubernetesStore } from './kubernetes.js';


/** The ConfigError `p` rejects with (fails the test when it resolves or rejects with another error). */
async function configErrorOf(p: Promise<unknown>): Promise<ConfigError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

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
    const s = await createStore({ backend: 'etcdv3', endpoints: ['http://127.0.0.1:1'], clusterName: 'c', timeoutMs: 100 });
    expect(s).toBeInstanceOf(EtcdStore);
    await s.close();
  });

  // The first kubernetes store loads @kubernetes/client-node: seconds on a loaded 2-core machine.
  it('builds a KubernetesStore for kubernetes with --kube-resource-kind configmap, without connecting; endpoints are ignored', { timeout: 30_000 }, async () => {
    const s = await createStore({ backend: 'kubernetes', endpoints: [], clusterName: 'c1', kubeResourceKind: 'configmap', kubeconfig, timeoutMs: 100 });
    expect(s).toBeInstanceOf(KubernetesStore);
    expect((s as KubernetesStore).namespace).toBe('ns1');
    const other = await createStore({ backend: 'kubernetes', endpoints: [], clusterName: 'c1', kubeResourceKind: 'configmap', kubeconfig, kubeNamespace: 'ns2' });
    expect((other as KubernetesStore).namespace).toBe('ns2');
    await Promise.all([s.close(), other.close()]);
  });

  it('kubernetes: --kube-resource-kind is required and must be configmap; the cluster name must fit object names', async () => {
    const base: CreateStoreOptions = { backend: 'kubernetes', endpoints: [], clusterName: 'c1', kubeconfig };
    const missing = await configErrorOf(createStore(base));
    expect(missing.field).toBe('kube-resource-kind');
    expect(missing.message).toMatch(/required with --store-backend kubernetes: pass --kube-resource-kind configmap/);
    const secret = await configErrorOf(createStore({ ...base, kubeResourceKind: 'secret' }));
    expect(secret.field).toBe('kube-resource-kind');
    expect(secret.message).toMatch(/"secret" is not supported; use configmap/);
    expect((await configErrorOf(createStore({ ...base, kubeResourceKind: 'configmap', clusterName: 'My_Cluster' }))).field).toBe('cluster-name');
    expect((await configErrorOf(createStore({ ...base, kubeResourceKind: 'configmap', kubeContext: 'nope' }))).field).toBe('kube-context');
  });

  it.each(['etcdv2', 'etcd', 'zookeeper', ''])('rejects backend %j with a ConfigError on store-backend', async (backend) => {
    const err = await configErrorOf(createStore({ backend, endpoints: ['http://127.0.0.1:2379'], clusterName: 'c' }));
    expect(err.field).toBe('store-backend');
    expect(err.message).toMatch(/use etcdv3, consul or kubernetes/);
  });

  it('builds a ConsulStore for consul; an endpoint that is not http(s) is a ConfigError on store-endpoints', async () => {
    const s = await createStore({ backend: 'consul', endpoints: ['http://127.0.0.1:8500'], clusterName: 'c', token: 't' });
    expect(s).toBeInstanceOf(ConsulStore);
    await s.close();
    expect((await configErrorOf(createStore({ backend: 'consul', endpoints: ['unix:///x'], clusterName: 'c' }))).field).toBe('store-endpoints');
    expect((await configErrorOf(createStore({ backend: 'consul', endpoints: [], clusterName: 'c' }))).field).toBe('store-endpoints');
    expect(
      (await configErrorOf(createStore({ backend: 'consul', endpoints: ['http://127.0.0.1:8500'], clusterName: 'c', tls: { skipVerify: true } }))).message,
    ).toMatch(/not https:\/\/, but TLS flags were given/);
  });

  it('rejects an empty endpoint list with a ConfigError on store-endpoints', async () => {
    expect((await configErrorOf(createStore({ backend: 'etcdv3', endpoints: [], clusterName: 'c' }))).field).toBe('store-endpoints');
  });
});

describe('start-up cost', () => {
  const LIBS = ['@kubernetes/client-node', 'etcd3', 'consul'];
  // A module-resolution hook reports every import of a store client library (ESM imports do not
  // show up in require.cache): one line per library, the first time it is resolved. A library
  // loaded with `require` (etcd3 is: etcd.ts) does not pass the hook; `loaded` reports those from
  // require.cache once the code has run.
  const hook = `const seen = new Set();
  export async function resolve(s, c, next) {
    for (const lib of ${JSON.stringify(LIBS)}) {
      if ((s === lib || s.startsWith(lib + '/')) && !seen.has(lib)) {
        seen.add(lib);
        process.stderr.write('LOADED ' + lib + '\\n');
      }
    }
    return next(s, c);
  }`;
  const registerHook = `data:text/javascript,${encodeURIComponent(
    `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`,
  )}`;
  /** The client libraries a Node process running `code` (an ES module) loads, sorted. */
  const loaded = async (code: string): Promise<string[]> => {
    const { execFile } = await import('node:child_process');
    const stderr = await new Promise<string>((res, rej) => {
      const cjs = `const { createRequire } = await import('node:module');
for (const lib of ${JSON.stringify(LIBS)}) {
  if (Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('/node_modules/' + lib + '/'))) process.stderr.write('LOADED ' + lib + '\\n');
}`;
      execFile(process.execPath, ['--import', registerHook, '--input-type=module', '-e', `${code}\n${cjs}`], { encoding: 'utf8', timeout: 60_000 }, (err, _out, e) =>
        err === null ? res(e) : rej(new Error(`${err.message}\n${e}`)),
      );
    });
    return [...new Set([...stderr.matchAll(/^LOADED (.+)$/gm)].map((m) => m[1] ?? ''))].sort();
  };
  const dist = async (file: string): Promise<string> => {
    const { fileURLToPath } = await import('node:url');
    return JSON.stringify(fileURLToPath(new URL(`../dist/${file}`, import.meta.url)));
  };

  // Node start-ups in child processes: generous on a loaded 2-core machine.
  it('importing @stolon-ts/store loads no store client library (etcd3 with gRPC, consul, @kubernetes/client-node)', { timeout: 60_000 }, async () => {
    expect(await loaded(`await import(${await dist('index.js')});`)).toEqual([]);
    // The probe itself works: a direct import is seen.
    expect(await loaded(`await import('@kubernetes/client-node');`)).toEqual(['@kubernetes/client-node']);
  });

  it('createStore loads the chosen backend\'s client library only', { timeout: 120_000 }, async () => {
    const create = async (opts: string): Promise<string[]> =>
      loaded(`const { createStore } = await import(${await dist('index.js')}); const s = await createStore(${opts}); await s.close();`);
    expect(await create(`{ backend: 'etcdv3', endpoints: ['http://127.0.0.1:1'], clusterName: 'c', timeoutMs: 100 }`)).toEqual(['etcd3']);
    expect(await create(`{ backend: 'consul', endpoints: ['http://127.0.0.1:1'], clusterName: 'c', timeoutMs: 100 }`)).toEqual(['consul']);
    // A configuration error is reported before any backend is loaded.
    expect(await loaded(`const { createStore } = await import(${await dist('index.js')}); await createStore({ backend: 'zookeeper', endpoints: [], clusterName: 'c' }).catch(() => undefined);`)).toEqual([]);
  });
});
