/**
 * The Kubernetes API server stand-in checked by an independent client: Patroni's own Kubernetes
 * client (patroni.dcs.kubernetes, Debian's patroni package; scripts/setup.sh installs it), driven
 * by test/harness/scripts/patroni-kube-client.py with ConfigMaps (`use_endpoints: false`). Patroni
 * sends `watch=True`, which a real API server reads as true (a stream, not a list to hot-loop on),
 * patches with `application/strategic-merge-patch+json`, and uses a resourceVersion in a patch as
 * an optimistic lock.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeApiServerStandin, writeStandinKubeconfig, type KubeApiServerStandin } from './kube-apiserver-standin.js';
import { makeTempDir, removeDir } from './tmp.js';
import { waitFor } from './wait.js';

const NS = 'patroni-ns';
const LABELS = { application: 'patroni', 'cluster-name': 'demo' };
const SCRIPT = fileURLToPath(new URL('../scripts/patroni-kube-client.py', import.meta.url));
/** Debian's patroni program; the script runs with its interpreter (where its `patroni` module is). */
const PATRONI_BIN = '/usr/bin/patroni';
/** How long the test watches the request log for a hot loop while Patroni's client idles. */
const QUIET_MS = 2000;

describe("Patroni's Kubernetes client against the stand-in", { timeout: 40_000 }, () => {
  let api: KubeApiServerStandin;
  let dir: string;
  let python: string;

  beforeAll(async () => {
    const shebang = (await readFile(PATRONI_BIN, 'utf8').catch(() => '')).split('\n')[0] ?? '';
    if (!shebang.startsWith('#!')) {
      throw new Error(`no ${PATRONI_BIN} (Debian's patroni package): run scripts/setup.sh`);
    }
    python = shebang.slice(2).trim();
    dir = await makeTempDir('stolon-standin-patroni-');
    api = await startKubeApiServerStandin({ namespaces: [NS], logRequests: true });
  });
  afterAll(async () => {
    await api?.stop();
    if (dir !== undefined) {
      await removeDir(dir);
    }
  });

  it('lists and watches (no hot loop on watch=True), acquires and renews the leader ConfigMap, labels its pod, sees a write through its watch', async () => {
    // Plain HTTP: the kubeconfig's token is sent by Patroni but the stand-in has none to check.
    const kubeconfig = await writeStandinKubeconfig(join(dir, 'kubeconfig'), api.url, { namespace: NS, tokens: ['patroni'] });
    api.putObject('pods', NS, { metadata: { name: 'node1', labels: { ...LABELS } }, spec: {} });

    const child = spawn(python, [SCRIPT, kubeconfig, 'ctx-patroni', NS, '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Array<Record<string, unknown>> = [];
    let stderr = '';
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await waitFor(() => lines.length >= 1 || child.exitCode !== null, { timeoutMs: 20_000, what: "Patroni's client to get ready" });
      expect(lines[0], stderr).toEqual({ ready: true, initial_leader: null, acquired: true, touched: true });
      const leader = api.getObject('configmaps', NS, 'demo-leader');
      expect(leader?.metadata.labels).toEqual(LABELS);
      expect(leader?.metadata.annotations).toMatchObject({ leader: 'node1', ttl: '30', transitions: '0' });
      const pod = api.getObject('pods', NS, 'node1');
      expect(pod?.metadata.labels).toEqual({ ...LABELS, role: 'master' });
      expect(JSON.parse(pod?.metadata.annotations?.['status'] ?? '{}')).toMatchObject({ state: 'running', role: 'master' });

      // Both caches are watching now; an idle client sends nothing (a hot loop re-lists many times a second).
      const collection = (r: { resource: string | undefined; name: string | undefined; method: string }): boolean =>
        r.method === 'GET' && r.name === undefined && (r.resource === 'configmaps' || r.resource === 'pods');
      const watches = api.requests().filter((r) => collection(r) && r.verb === 'watch');
      expect(watches.map((r) => r.resource).sort()).toEqual(['configmaps', 'pods']);
      expect(watches.every((r) => /(^|&)watch=True(&|$)/.test(r.query))).toBe(true);
      const before = api.requests().length;
      await new Promise((r) => setTimeout(r, QUIET_MS));
      expect(api.requests().slice(before).filter(collection)).toEqual([]);
      expect(api.watchCount()).toBe(2);

      api.putObject('configmaps', NS, { metadata: { name: 'from-outside', labels: { ...LABELS }, annotations: { note: 'hello' } } });
      const code = await exited;
      expect(code, stderr).toBe(0);
      expect(lines[1], stderr).toEqual({
        done: true,
        seen_outside_write: { note: 'hello' },
        leader: 'node1',
        members: ['node1'],
        renewed: true,
        stale_accepted: false,
      });
      // The renewal was a strategic merge patch at the current resourceVersion; the stale one a 409.
      const patches = api.requests().filter((r) => r.method === 'PATCH' && r.name === 'demo-leader');
      expect(patches).toHaveLength(2);
      expect(Number(api.getObject('configmaps', NS, 'demo-leader')?.metadata.resourceVersion)).toBeGreaterThan(Number(leader?.metadata.resourceVersion));
      expect(stderr).toContain('Could not take out TTL lock');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
