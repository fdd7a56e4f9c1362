/** The harness's own checks: waitFor's failure report, process groups and cleanup, free ports. */
import { describe, expect, it } from 'vitest';
import { freePort } from './ports.js';
import { livePids, startProcess } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';
import { waitFor } from './wait.js';
import { stat } from 'node:fs/promises';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('waitFor', () => {
  it('resolves with the first truthy value', async () => {
    let n = 0;
    expect(await waitFor(() => (++n >= 3 ? n : undefined), { timeoutMs: 2000, what: 'n', intervalMs: 1 })).toBe(3);
  });

  it('fails with the last value and last error, pointing at the caller', async () => {
    let n = 0;
    const err = await waitFor(
      () => {
        n++;
        if (n % 2 === 0) {
          throw new Error(`boom ${n}`);
        }
        return false;
      },
      { timeoutMs: 200, what: 'the impossible', intervalMs: 10 },
    ).then(() => new Error('waitFor resolved'), (e: unknown) => e as Error);
    expect(err.message).toMatch(/^timed out after \d+ ms waiting for the impossible \(\d+ checks\); last value: /);
    expect(err.message).toMatch(/last error: (none|Error: boom \d+)/);
    expect(err.stack).toContain('harness.test.ts');
  });
});

describe('startProcess', () => {
  it('captures prefixed output and waits for a log line', async () => {
    const p = startProcess({ name: 'echo', cmd: 'sh', args: ['-c', 'echo one; echo two >&2; sleep 0.1; echo ready'] });
    await p.waitForLog(/ready/, 5000);
    expect(await p.exited).toBe(0);
    expect(p.logs().split('\n').sort()).toEqual(['[echo] one', '[echo] ready', '[echo] two']);
    await p.stop();
  });

  it('waitForLog fails with the last lines when the process exits first', async () => {
    const p = startProcess({ name: 'quit', cmd: 'sh', args: ['-c', 'echo bye; exit 3'] });
    await expect(p.waitForLog('never', 5000)).rejects.toThrow(/exited with code 3[\s\S]*\[quit\] bye/);
    await p.stop();
  });

  it('stop escalates to SIGKILL and kills grandchildren', async () => {
    const p = startProcess({
      name: 'stubborn',
      cmd: 'sh',
      args: ['-c', 'trap "" TERM; sleep 60 & echo child $!; wait'],
    });
    await p.waitForLog(/child \d+/, 5000);
    const child = Number(/child (\d+)/.exec(p.logs())?.[1]);
    expect(alive(child)).toBe(true);
    const t0 = performance.now();
    await p.stop('SIGTERM', 300);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(p.running()).toBe(false);
    await waitFor(() => !alive(child), { timeoutMs: 2000, what: 'grandchild to die' });
    expect(livePids()).not.toContain(p.pid);
  });

  it('pause and resume', async () => {
    const p = startProcess({ name: 'ticker', cmd: 'sh', args: ['-c', 'while true; do echo tick; sleep 0.05; done'] });
    await p.waitForLog('tick', 5000);
    p.pause();
    await new Promise((r) => setTimeout(r, 100));
    const n = p.logs().split('\n').length;
    await new Promise((r) => setTimeout(r, 300));
    expect(p.logs().split('\n').length).toBe(n);
    p.resume();
    await waitFor(() => p.logs().split('\n').length > n, { timeoutMs: 2000, what: 'more ticks' });
    await p.kill();
    expect(p.running()).toBe(false);
  });

  it('pauseGroup stops the child and what it started in its group; resumeGroup continues them; stop works on a paused group', async () => {
    // The ticker is a grandchild: pausing the shell alone would not stop it.
    const p = startProcess({ name: 'group', cmd: 'sh', args: ['-c', '(while true; do echo tick; sleep 0.05; done) & wait'] });
    await p.waitForLog('tick', 5000);
    p.pauseGroup();
    await new Promise((r) => setTimeout(r, 100));
    const n = p.logs().split('\n').length;
    await new Promise((r) => setTimeout(r, 300));
    expect(p.logs().split('\n').length).toBe(n);
    p.resumeGroup();
    await waitFor(() => p.logs().split('\n').length > n, { timeoutMs: 2000, what: 'more ticks' });
    p.pauseGroup();
    await p.stop('SIGTERM', 2000);
    expect(p.running()).toBe(false);
  });

  it('a missing binary shows up as an exit with a log line', async () => {
    const p = startProcess({ name: 'nope', cmd: '/nonexistent/binary', args: [] });
    await p.exited;
    expect(p.logs()).toContain('failed to start');
    await p.stop();
  });
});

describe('freePort and makeTempDir', () => {
  it('never hands out the same port twice', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    expect(new Set(ports).size).toBe(20);
  });

  it('creates a 0755 directory and removes it', async () => {
    const dir = await makeTempDir('stolon-harness-test-');
    expect((await stat(dir)).mode & 0o777).toBe(0o755);
    await removeDir(dir);
    await expect(stat(dir)).rejects.toThrow();
    await removeDir(dir);
  });
});
