/** `PodLabels` (kube-pod.ts) against the harness's Kubernetes API stand-in: a JSON merge patch of one pod's labels. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKubeApiServerStandin, writeStandinKubeconfig, type KubeApiServerStandin } from '@stolon-ts/harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PodLabels } from './kube-pod.js';

const NS = 'stolon';
let api: KubeApiServerStandin;
let dir: string;
let kubeconfig: string;

beforeAll(async () => {
  api = await startKubeApiServerStandin({ token: 'labels', namespaces: [NS] });
  dir = await mkdtemp(join(tmpdir(), 'stolon-kube-pod-'));
  kubeconfig = await writeStandinKubeconfig(join(dir, 'kubeconfig'), api.url, { namespace: NS, tokens: ['labels'] });
});

afterAll(async () => {
  await api.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('PodLabels', () => {
  it('sets and removes labels of the named pod by merge patch, keeping the others; a PATCH is the only request', async () => {
    api.putObject('pods', NS, { metadata: { name: 'stolon-keeper-0', labels: { app: 'keeper' } }, spec: { containers: [] } });
    const before = api.requestLog().length;
    const labels = new PodLabels({ kubeconfig, pod: 'stolon-keeper-0', timeoutMs: 2000 });
    expect(labels.namespace).toBe(NS);
    await labels.set({ 'stolon-ts/role': 'primary' });
    expect(api.getObject('pods', NS, 'stolon-keeper-0')?.metadata.labels).toEqual({ app: 'keeper', 'stolon-ts/role': 'primary' });
    expect(api.getObject('pods', NS, 'stolon-keeper-0')?.['spec']).toEqual({ containers: [] });
    await labels.set({ 'stolon-ts/role': null });
    expect(api.getObject('pods', NS, 'stolon-keeper-0')?.metadata.labels).toEqual({ app: 'keeper' });
    expect(api.requestLog().slice(before)).toEqual([`PATCH /api/v1/namespaces/${NS}/pods/stolon-keeper-0`, `PATCH /api/v1/namespaces/${NS}/pods/stolon-keeper-0`]);
  });

  it('throws the API error: a missing pod, a refusal, no answer within the timeout', async () => {
    await expect(new PodLabels({ kubeconfig, pod: 'nope', timeoutMs: 2000 }).set({ 'stolon-ts/role': 'standby' })).rejects.toThrow(/not found/);
    api.putObject('pods', NS, { metadata: { name: 'stolon-keeper-1' } });
    api.setInterceptor((r) => (r.resource === 'pods' ? { code: 403, reason: 'Forbidden', message: 'pods "stolon-keeper-1" is forbidden' } : undefined));
    await expect(new PodLabels({ kubeconfig, pod: 'stolon-keeper-1', timeoutMs: 2000 }).set({ 'stolon-ts/role': 'standby' })).rejects.toThrow(/forbidden/);
    api.setInterceptor(undefined);
    api.setUnavailable('hang');
    const t0 = performance.now();
    await expect(new PodLabels({ kubeconfig, pod: 'stolon-keeper-1', timeoutMs: 300 }).set({ 'stolon-ts/role': 'standby' })).rejects.toThrow(/no answer/);
    expect(performance.now() - t0).toBeLessThan(1500);
    api.setUnavailable(false);
  });
});
