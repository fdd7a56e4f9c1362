/**
 * The harness's last-resort cleanup: a process that started a local cluster and exits without
 * stopping it (a test that timed out inside startLocalCluster, a killed worker) leaves no
 * postmaster behind, although postmasters run in their own session, out of the group kill.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { waitFor } from './wait.js';

const dir = await mkdtemp(join(tmpdir(), 'stolon-exit-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

it('kills the postmaster of a cluster its process never stopped', async () => {
  const clusterModule = fileURLToPath(new URL('../dist/cluster.js', import.meta.url));
  const script = `
    const { startLocalCluster } = await import(${JSON.stringify(clusterModule)});
    const c = await startLocalCluster({ dir: ${JSON.stringify(dir)}, keepers: 1, proxies: 1 });
    console.log('PID ' + (await c.keepers[0].postmasterPid()));
    process.exit(0);
  `;
  const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 110_000 });
  const pid = Number(/PID (\d+)/.exec(res.stdout)?.[1]);
  expect(pid, `${res.stdout}\n${res.stderr}`).toBeGreaterThan(0);
  await waitFor(() => !alive(pid), { timeoutMs: 10_000, what: `postmaster ${pid} to exit after its harness process exited` });
}, 120_000);
