import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

/** Counts the synchronous reads of `postmaster.pid` files isRunning makes. */
const pidFileReads = vi.hoisted(() => ({ n: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((path: Parameters<typeof fs.readFileSync>[0], ...rest: unknown[]) => {
    if (String(path).endsWith('postmaster.pid')) {
      pidFileReads.n += 1;
    }
    return (fs.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFileSync;
  return { ...fs, readFileSync, default: { ...fs, readFileSync } };
});

const { isRunning } = await import('./postmaster-pid.js');

describe('isRunning', () => {
  let dir: string;
  let fake: ChildProcess;
  let other: ChildProcess;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'postmaster-pid-'));
    // Processes whose command name is "postgres", as a postmaster's is.
    copyFileSync('/bin/sleep', join(dir, 'postgres'));
    fake = spawn(join(dir, 'postgres'), ['60'], { stdio: 'ignore' });
    other = spawn(join(dir, 'postgres'), ['60'], { stdio: 'ignore' });
  });
  afterAll(() => {
    fake.kill('SIGKILL');
    other.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads postmaster.pid again only when the file changed, and follows every change', async () => {
    const pidFile = join(dir, 'postmaster.pid');
    writeFileSync(pidFile, `${fake.pid}\n${dir}\n`);
    pidFileReads.n = 0;
    for (let i = 0; i < 5; i++) {
      expect(await isRunning(dir)).toBe(true);
    }
    // The crash watch asks every 100 ms: an unchanged file is read once.
    expect(pidFileReads.n).toBe(1);

    // A new postmaster writes a new file; a file naming a process that is not postgres is not running.
    writeFileSync(pidFile, `${process.pid}\n${dir}\n`);
    expect(await isRunning(dir)).toBe(false);
    expect(pidFileReads.n).toBe(2);
    writeFileSync(pidFile, `${other.pid}\n${dir}\n`);
    expect(await isRunning(dir)).toBe(true);
    expect(pidFileReads.n).toBe(3);

    // The postmaster dies while its file stays (a crash): not running, without reading the file again.
    other.kill('SIGKILL');
    await new Promise((r) => other.once('exit', r));
    expect(await isRunning(dir)).toBe(false);
    expect(pidFileReads.n).toBe(3);

    unlinkSync(pidFile);
    expect(await isRunning(dir)).toBe(false);
  });
});
