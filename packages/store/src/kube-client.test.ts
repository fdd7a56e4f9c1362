/**
 * resolveKubeConfig: which configuration, context and namespace the Kubernetes backend uses
 * (kubeconfig files in temp dirs, an in-cluster service account directory in a temp dir).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configErrorOf } from '@stolon-ts/cluster/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SERVICE_ACCOUNT_DIR, resolveKubeConfig } from './kube-client.js';

const KUBECONFIG = `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
- name: local
  cluster:
    server: http://127.0.0.1:8001
users:
- name: alice
  user:
    token: t0ken
contexts:
- name: prod-alpha
  context:
    cluster: prod
    user: alice
    namespace: alpha
- name: local-nons
  context:
    cluster: local
    user: alice
current-context: prod-alpha
`;

describe('resolveKubeConfig', () => {
  let dir: string;
  let file: string;
  let emptyHome: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stolon-kubecfg-'));
    file = join(dir, 'config');
    await writeFile(file, KUBECONFIG);
    emptyHome = join(dir, 'home-empty');
    await mkdir(emptyHome);
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** No ambient configuration: no KUBECONFIG, an empty HOME, not in a pod. */
  const isolate = (): void => {
    vi.stubEnv('KUBECONFIG', '');
    vi.stubEnv('HOME', emptyHome);
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '');
  };

  it('--kubeconfig: the current context’s server and namespace', () => {
    isolate();
    const r = resolveKubeConfig({ kubeconfig: file });
    expect(r).toMatchObject({ server: 'https://prod.example:6443', namespace: 'alpha', namespaceSource: 'kubeconfig' });
    expect(r.source).toContain('context prod-alpha');
  });

  it('--kube-context picks another context; without a namespace there it is "default"', () => {
    isolate();
    const r = resolveKubeConfig({ kubeconfig: file, context: 'local-nons' });
    expect(r).toMatchObject({ server: 'http://127.0.0.1:8001', namespace: 'default', namespaceSource: 'default' });
    // A plain-http server (kubectl proxy) is usable: client-node would refuse it otherwise.
    expect(r.kubeConfig.getCurrentCluster()?.skipTLSVerify).toBe(true);
  });

  it('--kube-namespace wins over the context’s namespace', () => {
    isolate();
    expect(resolveKubeConfig({ kubeconfig: file, namespace: 'beta' })).toMatchObject({ namespace: 'beta', namespaceSource: 'flag' });
  });

  it('errors name the flag and what to do', () => {
    isolate();
    const ctx = configErrorOf(() => resolveKubeConfig({ kubeconfig: file, context: 'nope' }));
    expect(ctx.field).toBe('kube-context');
    expect(ctx.message).toContain('contexts: prod-alpha, local-nons');
    const missing = configErrorOf(() => resolveKubeConfig({ kubeconfig: join(dir, 'absent') }));
    expect(missing.field).toBe('kubeconfig');
    const ns = configErrorOf(() => resolveKubeConfig({ kubeconfig: file, namespace: 'Bad_NS' }));
    expect(ns.field).toBe('kube-namespace');
    const none = configErrorOf(() => resolveKubeConfig({}));
    expect(none.field).toBe('kubeconfig');
    expect(none.message).toMatch(/no Kubernetes client configuration found.*pass --kubeconfig/);
  });

  it('KUBECONFIG (missing entries skipped) and ~/.kube/config are used when --kubeconfig is not given', async () => {
    isolate();
    vi.stubEnv('KUBECONFIG', [join(dir, 'absent'), file].join(':'));
    expect(resolveKubeConfig({}).namespace).toBe('alpha');
    vi.stubEnv('KUBECONFIG', '');
    const home = join(dir, 'home');
    await mkdir(join(home, '.kube'), { recursive: true });
    await writeFile(join(home, '.kube', 'config'), KUBECONFIG);
    vi.stubEnv('HOME', home);
    expect(resolveKubeConfig({ context: 'local-nons' }).server).toBe('http://127.0.0.1:8001');
  });

  it('in a pod: the service account’s server, token and namespace file; --kube-namespace still wins', async () => {
    isolate();
    const root = join(dir, 'pod');
    const sa = join(root, SERVICE_ACCOUNT_DIR);
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'token'), 'sa-token');
    await writeFile(join(sa, 'ca.crt'), '');
    await writeFile(join(sa, 'namespace'), 'prod\n');
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '10.0.0.1');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '443');
    const r = resolveKubeConfig({ inClusterRoot: root });
    expect(r).toMatchObject({ server: 'https://10.0.0.1:443', namespace: 'prod', namespaceSource: 'in-cluster', source: 'in-cluster' });
    const opts: { headers?: Record<string, string> } = {};
    await r.kubeConfig.applyToHTTPSOptions(opts);
    expect(opts.headers?.['Authorization']).toBe('Bearer sa-token');
    expect(resolveKubeConfig({ inClusterRoot: root, namespace: 'other' })).toMatchObject({ namespace: 'other', namespaceSource: 'flag' });
    // An explicit kubeconfig wins over the pod's own configuration.
    expect(resolveKubeConfig({ inClusterRoot: root, kubeconfig: file }).namespace).toBe('alpha');
  });
});
