/**
 * The Kubernetes API server stand-in checked by an independent client, kubectl (>= 1.27, on PATH):
 * discovery, typed get/create/replace/delete and `get -w` of the types the stand-in serves,
 * server-side field validation, MicroTime and namespace errors, each as kubectl reports them from
 * a real API server. kubectl talks to the stand-in through a kubeconfig file and nothing else.
 * The stand-in here has no token: it serves plain HTTP, and kubectl does not send a kubeconfig's
 * bearer token over plain HTTP (it got 401 on every request with `token` set).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeApiServerStandin, writeStandinKubeconfig, type KubeApiServerStandin } from './kube-apiserver-standin.js';
import { makeTempDir, removeDir } from './tmp.js';
import { waitFor } from './wait.js';

const NS = 'kubectl-ns';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('kubectl against the Kubernetes API server stand-in', { timeout: 30_000 }, () => {
  let api: KubeApiServerStandin;
  let dir: string;
  let kubeconfig: string;
  const children: ChildProcess[] = [];

  /** Runs kubectl with the stand-in's kubeconfig; `input` goes to its stdin (for `-f -`). */
  const kubectl = (args: readonly string[], input?: string): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn('kubectl', ['--kubeconfig', kubeconfig, '--request-timeout=10s', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input ?? '');
    });

  beforeAll(async () => {
    dir = await makeTempDir('stolon-standin-kubectl-');
    api = await startKubeApiServerStandin({ namespaces: [NS], logRequests: true });
    kubeconfig = await writeStandinKubeconfig(join(dir, 'kubeconfig'), api.url, { namespace: NS, tokens: ['unused'] });
  });
  afterAll(async () => {
    for (const c of children) {
      c.kill('SIGKILL');
    }
    await api?.stop();
    if (dir !== undefined) {
      await removeDir(dir);
    }
  });

  it('discovery: kubectl finds configmaps, leases, namespaces and pods by name and short name', async () => {
    const res = await kubectl(['api-resources', '--no-headers']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const lines = res.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
    expect(lines.map((l) => l[0]).sort()).toEqual(['configmaps', 'leases', 'namespaces', 'pods']);
    expect(lines.find((l) => l[0] === 'leases')).toEqual(['leases', 'coordination.k8s.io/v1', 'true', 'Lease']);
    const version = await kubectl(['version', '-o', 'json']);
    expect(JSON.parse(version.stdout)).toMatchObject({ serverVersion: { major: '1', gitVersion: expect.stringMatching(/^v1\.\d+\.\d+$/) } });
  });

  it('create, get, replace and delete a ConfigMap; unknown fields refused by default (Strict), dropped with a warning with --validate=warn', async () => {
    const manifest = (v: string, extra = ''): string =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-a\n  labels:\n    app: kubectl\ndata:\n  key: "${v}"\n${extra}`;
    const created = await kubectl(['create', '-f', '-'], manifest('one'));
    expect(created).toMatchObject({ code: 0, stdout: 'configmap/cm-a created\n' });
    const got = JSON.parse((await kubectl(['get', 'configmap', 'cm-a', '-o', 'json'])).stdout) as { data: Record<string, string>; metadata: { resourceVersion: string } };
    expect(got.data).toEqual({ key: 'one' });
    expect(got.metadata.resourceVersion).toBe(api.getObject('configmaps', NS, 'cm-a')?.metadata.resourceVersion);
    const names = await kubectl(['get', 'cm', '-l', 'app=kubectl', '-o', 'name']);
    expect(names.stdout).toBe('configmap/cm-a\n');

    const replaced = await kubectl(['replace', '-f', '-'], manifest('two'));
    expect(replaced).toMatchObject({ code: 0, stdout: 'configmap/cm-a replaced\n' });
    expect(api.getObject('configmaps', NS, 'cm-a')?.['data']).toEqual({ key: 'two' });

    const strict = await kubectl(['replace', '-f', '-'], manifest('three', 'bogus: 1\n'));
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toContain('strict decoding error: unknown field "bogus"');
    expect(api.getObject('configmaps', NS, 'cm-a')?.['data']).toEqual({ key: 'two' });
    const warned = await kubectl(['replace', '--validate=warn', '-f', '-'], manifest('three', 'bogus: 1\n'));
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain('Warning: unknown field "bogus"');
    expect(api.getObject('configmaps', NS, 'cm-a')).not.toHaveProperty('bogus');

    const deleted = await kubectl(['delete', 'configmap', 'cm-a']);
    expect(deleted).toMatchObject({ code: 0, stdout: 'configmap "cm-a" deleted\n' });
    expect(api.getObject('configmaps', NS, 'cm-a')).toBeUndefined();
    const missing = await kubectl(['get', 'configmap', 'cm-a']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('Error from server (NotFound): configmaps "cm-a" not found');
  });

  it('Leases: create and replace with MicroTimes of six fractional digits; three digits are a BadRequest', async () => {
    const lease = (renew: string): string =>
      `apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: lease-a\nspec:\n  holderIdentity: me\n  leaseDurationSeconds: 15\n  renewTime: "${renew}"\n`;
    expect(await kubectl(['create', '-f', '-'], lease('2024-05-06T07:08:09.123456Z'))).toMatchObject({ code: 0, stdout: 'lease.coordination.k8s.io/lease-a created\n' });
    const bad = await kubectl(['replace', '-f', '-'], lease('2024-05-06T07:08:09.123Z'));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Error from server (BadRequest)');
    expect(bad.stderr).toContain('cannot parse ".123Z" as ".000000"');
    expect(await kubectl(['replace', '-f', '-'], lease('2024-05-06T09:08:09.000001+02:00'))).toMatchObject({ code: 0 });
    const got = JSON.parse((await kubectl(['get', 'lease', 'lease-a', '-o', 'json'])).stdout) as { spec: Record<string, unknown> };
    expect(got.spec).toMatchObject({ holderIdentity: 'me', renewTime: '2024-05-06T07:08:09.000001Z' });
    expect(await kubectl(['delete', 'lease', 'lease-a'])).toMatchObject({ code: 0 });
  });

  it('namespaces: creating in a missing one is NotFound until kubectl creates it', async () => {
    const early = await kubectl(['create', 'configmap', 'cm-n', '-n', 'later', '--from-literal=a=b']);
    expect(early.code).not.toBe(0);
    expect(early.stderr).toContain('namespaces "later" not found');
    expect(await kubectl(['create', 'namespace', 'later'])).toMatchObject({ code: 0, stdout: 'namespace/later created\n' });
    expect(await kubectl(['create', 'configmap', 'cm-n', '-n', 'later', '--from-literal=a=b'])).toMatchObject({ code: 0 });
    const ns = await kubectl(['get', 'namespaces', '-o', 'name']);
    expect(ns.stdout.trim().split('\n')).toEqual(expect.arrayContaining(['namespace/default', `namespace/${NS}`, 'namespace/later']));
    expect(await kubectl(['delete', 'namespace', 'later'])).toMatchObject({ code: 0 });
    expect(api.getObject('configmaps', 'later', 'cm-n')).toBeUndefined();
  });

  it('pods put in-process: kubectl gets and labels them (a JSON merge patch)', async () => {
    api.putObject('pods', NS, { metadata: { name: 'pod-0', labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'i' }] } });
    expect((await kubectl(['get', 'pods', '-o', 'name'])).stdout).toBe('pod/pod-0\n');
    expect(await kubectl(['label', 'pod', 'pod-0', 'role=primary'])).toMatchObject({ code: 0, stdout: 'pod/pod-0 labeled\n' });
    expect(api.getObject('pods', NS, 'pod-0')?.metadata.labels).toEqual({ app: 'x', role: 'primary' });
  });

  it('kubectl get -w: the list, then each change as the watch delivers it', async () => {
    api.putObject('configmaps', NS, { metadata: { name: 'cm-w0' } });
    const child = spawn('kubectl', ['--kubeconfig', kubeconfig, 'get', 'configmaps', '-w', '-o', 'name'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(() => out.includes('configmap/cm-w0'), { timeoutMs: 10_000, what: 'the initial list' });
    await waitFor(() => api.watchCount() > 0, { timeoutMs: 10_000, what: 'kubectl to open its watch' });
    api.putObject('configmaps', NS, { metadata: { name: 'cm-w1' } });
    await waitFor(() => out.includes('configmap/cm-w1'), { timeoutMs: 10_000, what: 'the watched ADDED of cm-w1' });
    const watch = api.requests().find((r) => r.verb === 'watch' && r.resource === 'configmaps');
    expect(watch?.query).toMatch(/watch=true/);
    child.kill('SIGTERM');
  });
});
