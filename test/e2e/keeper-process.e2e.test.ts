/**
 * A keeper's long-running children end with it, and one data directory has one keeper
 * (docs/architecture.md, "Keeper processes"). One keeper restoring a new cluster (initMode pitr)
 * with a dataRestoreCommand that never finishes (`sleep 613`), as a long pg_basebackup or
 * pg_rewind would:
 * 1. the keeper process alone SIGKILLed (not its group; the OOM killer, `systemctl kill -s KILL
 *    --kill-who=main`): the restore command is gone within a few seconds;
 * 2. the keeper started again takes over its dead predecessor's data-directory lock; a second
 *    keeper on the same data directory exits non-zero naming the running keeper's pid.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, waitFor } from '@stolon-ts/harness';

const MARKER = '613';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-keeper-proc-e2e-',
  clusterName: 'kproc',
  keepers: 1,
  expect: 'none',
  spec: { initMode: 'pitr', pitrConfig: { dataRestoreCommand: `sleep ${MARKER}` } },
  // The spec's restore command is run only when the keeper's operator allows it.
  keeperArgs: ['--allow-spec-commands', 'data_restore_command'],
  logTailLines: 150,
});

/** Pids of processes running `sleep 613` (the restore command). */
async function restorePids(): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) {
      continue;
    }
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd === `sleep\0${MARKER}\0`) {
      out.push(pid);
    }
  }
  return out;
}

function killAll(pids: readonly number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

describe('keeper processes', () => {
  it('the keeper SIGKILLed alone during a long restore command: the command ends within seconds', async () => {
    const keeper = e2e.cluster.keepers[0]!;
    const running = await waitFor(async () => ((await restorePids()).length > 0 ? restorePids() : undefined), {
      timeoutMs: 60_000,
      what: 'the dataRestoreCommand to run',
    });
    process.kill(keeper.process.pid, 'SIGKILL');
    const killedAt = Date.now();
    try {
      await waitFor(async () => ((await restorePids()).length === 0 ? true : undefined), {
        timeoutMs: 10_000,
        what: `the restore command (pids ${running.join(', ')}) to end after its keeper was killed`,
        intervalMs: 100,
      });
      process.stdout.write(`restore command gone ${Date.now() - killedAt} ms after its keeper's SIGKILL\n`);
      expect(Date.now() - killedAt).toBeLessThan(5000);
    } finally {
      killAll(await restorePids());
    }
  });

  it("a restarted keeper takes over its dead predecessor's data-directory lock; a second keeper on the same data directory exits non-zero naming the first one's pid", async () => {
    const c = e2e.cluster;
    const keeper = c.keepers[0]!;
    await c.startKeeper(0);
    await keeper.process.waitForLog('keeper started', 30_000);
    const argv = (await readFile(`/proc/${keeper.process.pid}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
    const second = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(argv[0]!, argv.slice(1), { timeout: 20_000 }, (err, _stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stderr });
      });
    });
    expect(second.code, second.stderr).not.toBe(0);
    expect(second.code, 'exited by itself, not killed by the timeout').not.toBeNull();
    expect(second.stderr).toContain(`is in use by another keeper (pid ${keeper.process.pid}`);
    // The first keeper is untouched and keeps its lock.
    expect(keeper.process.running()).toBe(true);
    const lock = JSON.parse(await readFile(`${keeper.dataDir}/keeper.lock`, 'utf8')) as { pid: number };
    expect(lock.pid).toBe(keeper.process.pid);
    killAll(await restorePids());
  });
});
