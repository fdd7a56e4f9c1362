/**
 * A real two-node Patroni 3.0.2 cluster (Debian's patroni, PostgreSQL 15, run as the postgres OS
 * user) with Patroni's Kubernetes DCS (ConfigMaps, `use_endpoints: false`) against the Kubernetes
 * API server stand-in: an independent client's whole HA loop — bootstrap, leader ConfigMap, the
 * replica joining, pod role labels, a switchover — and no hot loop of lists or watches while it
 * idles. Patroni's configuration comes from the failover bench (test/bench/src/patroni.ts).
 */
import { appendFile, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolvePgBinDir } from '@stolon-ts/postgres';
import { freePort, makeTempDir, removeDir, startKubeApiServerStandin, startProcess, waitFor, writeStandinKubeconfig, type KubeApiServerStandin, type ProcessHandle } from '@stolon-ts/harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { osIdentity } from '../bench/src/common.js';
import { patroniNodeConfig } from '../bench/src/patroni.js';

const NS = 'patroni';
const SCOPE = 'kstest';
const LABELS = { application: 'patroni', 'cluster-name': SCOPE };
const TOKEN = 'patroni-tok';

interface Node {
  readonly name: string;
  readonly dir: string;
  readonly restPort: number;
  readonly config: string;
  process?: ProcessHandle;
}

/** `GET path` on a node's REST API: the status, 0 when it does not answer. */
async function rest(n: Node, path: string): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${n.restPort}${path}`, { signal: AbortSignal.timeout(1000) });
    await res.text();
    return res.status;
  } catch {
    return 0;
  }
}

describe('a two-node Patroni cluster on the Kubernetes API stand-in', () => {
  let api: KubeApiServerStandin;
  let dir: string;
  const nodes: Node[] = [];

  beforeAll(async () => {
    dir = await makeTempDir('stolon-patroni-kube-');
    api = await startKubeApiServerStandin({ token: TOKEN, namespaces: [NS], logRequests: true });
  });
  afterAll(async () => {
    // Patroni stops its PostgreSQL on SIGTERM; then make sure no postmaster outlives the test.
    await Promise.allSettled(nodes.map((n) => n.process?.stop('SIGTERM', 15_000)));
    for (const n of nodes) {
      const pid = Number((await readFile(join(n.dir, 'data', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    await Promise.allSettled(nodes.map((n) => n.process?.kill()));
    await api?.stop();
    if (dir !== undefined) {
      await removeDir(dir);
    }
  });

  it('bootstraps, labels the pods, switches over, and does not re-list while idle', async () => {
    const id = await osIdentity('postgres');
    expect(id, 'runs as root, with a postgres OS user (scripts/setup.sh)').not.toBeNull();
    const { uid, gid } = id!;
    const kubeconfig = await writeStandinKubeconfig(join(dir, 'kubeconfig'), api.url, { namespace: NS, tokens: [TOKEN] });
    await chown(kubeconfig, uid, gid);
    await chown(dir, uid, gid);
    const pgBinDir = resolvePgBinDir({});
    const log = join(dir, 'patroni.log');
    for (const name of ['patroni0', 'patroni1']) {
      const nodeDir = join(dir, name);
      await mkdir(nodeDir, { recursive: true, mode: 0o700 });
      await chown(nodeDir, uid, gid);
      const pgPort = await freePort();
      const restPort = await freePort();
      const cfg = patroniNodeConfig({
        scope: SCOPE,
        name,
        dir: nodeDir,
        pgPort,
        restPort,
        pgBinDir,
        password: 'patroni-kube',
        timings: { ttl: 10, loopWait: 2, retryTimeout: 4 },
        dcs: {
          kubernetes: { namespace: NS, labels: { application: 'patroni' }, use_endpoints: false, context: `ctx-${TOKEN}`, pod_ip: '127.0.0.1', ports: [{ name: 'postgresql', port: pgPort }] },
        },
      });
      const config = join(nodeDir, 'patroni.yml');
      await writeFile(config, JSON.stringify(cfg, null, 2), { mode: 0o600 });
      await chown(config, uid, gid);
      // Patroni labels and annotates its own pod: it must exist (the StatefulSet made it).
      api.putObject('pods', NS, { metadata: { name, labels: { ...LABELS } }, spec: {} });
      nodes.push({ name, dir: nodeDir, restPort, config });
    }
    const start = (n: Node): void => {
      n.process = startProcess({
        name: n.name,
        cmd: 'setpriv',
        args: ['--reuid', String(uid), '--regid', String(gid), '--init-groups', 'patroni', n.config],
        env: { HOME: n.dir, KUBECONFIG: kubeconfig },
        cwd: n.dir,
        logFile: log,
      });
      void n.process.exited.then((code) => appendFile(log, `[${n.name}] exited, code ${code}\n`).catch(() => undefined));
    };
    const logs = (): string => nodes.map((n) => n.process?.logs().split('\n').slice(-25).join('\n') ?? '').join('\n');
    const [n0, n1] = nodes as [Node, Node];
    /** waitFor, failing with the Patroni logs of the moment it gave up. */
    const waitOrLogs = async (check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> => {
      try {
        await waitFor(check, { timeoutMs, what });
      } catch (err) {
        throw new Error(`${(err as Error).message}\nPatroni logs:\n${logs()}`);
      }
    };

    start(n0);
    await waitOrLogs(async () => (await rest(n0, '/primary')) === 200, 90_000, 'patroni0 to lead');
    start(n1);
    await waitOrLogs(async () => (await rest(n1, '/replica')) === 200, 90_000, 'patroni1 to replicate');
    expect(api.getObject('configmaps', NS, `${SCOPE}-leader`)?.metadata.annotations?.['leader']).toBe('patroni0');
    expect(api.getObject('configmaps', NS, `${SCOPE}-config`)?.metadata.annotations?.['initialize']).toMatch(/^\d+$/);
    await waitFor(() => api.getObject('pods', NS, 'patroni1')?.metadata.labels?.['role'] === 'replica', { timeoutMs: 20_000, what: 'patroni1 labelled replica' });
    expect(api.getObject('pods', NS, 'patroni0')?.metadata.labels?.['role']).toBe('master');

    // Idle: each node's two caches watch; the HA loop renews the leader every loop_wait (2 s). A
    // watch answered as a list (the stand-in's old watch=True) made them re-list without pause.
    const before = api.requests().length;
    await new Promise((r) => setTimeout(r, 6000));
    const window = api.requests().slice(before);
    const collection = window.filter((r) => r.method === 'GET' && r.name === undefined && r.namespace === NS);
    expect(collection.length, collection.map((r) => `${r.verb} ${r.path}?${r.query}`).join('\n')).toBeLessThanOrEqual(4);
    expect(window.filter((r) => r.verb === 'patch' && r.name === `${SCOPE}-leader`).length).toBeGreaterThanOrEqual(2);
    expect(window.every((r) => r.user === 'standin-admin')).toBe(true);

    const res = await fetch(`http://127.0.0.1:${n0.restPort}/switchover`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ leader: 'patroni0', candidate: 'patroni1' }),
      signal: AbortSignal.timeout(30_000),
    });
    expect(res.status, await res.text()).toBe(200);
    await waitOrLogs(async () => (await rest(n1, '/primary')) === 200 && (await rest(n0, '/replica')) === 200, 60_000, 'the switchover to patroni1');
    expect(api.getObject('configmaps', NS, `${SCOPE}-leader`)?.metadata.annotations?.['leader']).toBe('patroni1');
    await waitFor(() => api.getObject('pods', NS, 'patroni1')?.metadata.labels?.['role'] === 'master', { timeoutMs: 20_000, what: 'patroni1 labelled master' });
  });
});
