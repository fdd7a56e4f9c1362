/** The data-directory lock: a live keeper's lock refuses; a dead one's, another boot's, a reused pid's or garbage is taken over. */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireDataDirLock, type LockSystem } from './datadir-lock.js';

const dirs: string[] = [];
function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'keeper-lock-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) {
    rmSync(d, { recursive: true, force: true });
  }
});

/** A system where `running` maps pid → start ticks of the processes alive now. */
function sys(pid: number, running: Record<number, number>, bootId = 'boot-1'): LockSystem {
  return { self: { pid, startTicks: running[pid] ?? 0, bootId }, startTicks: (p) => running[p] };
}

const lockOf = (dir: string): unknown => JSON.parse(readFileSync(join(dir, 'keeper.lock'), 'utf8'));

describe('data-directory lock', () => {
  it('is taken when free, and released only by its holder', () => {
    const d = dataDir();
    const l = acquireDataDirLock(d, sys(100, { 100: 5 }));
    expect(lockOf(d)).toEqual({ pid: 100, startTicks: 5, bootId: 'boot-1' });
    l.release();
    expect(existsSync(join(d, 'keeper.lock'))).toBe(false);
  });

  it('refuses while a live keeper holds it, naming its pid and the data dir', () => {
    const d = dataDir();
    acquireDataDirLock(d, sys(100, { 100: 5, 200: 9 }));
    let err: unknown;
    try {
      acquireDataDirLock(d, sys(200, { 100: 5, 200: 9 }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(new RegExp(`^--data-dir: ${d} is in use by another keeper \\(pid 100, `));
    expect((err as ConfigError).field).toBe('data-dir');
    expect(lockOf(d)).toMatchObject({ pid: 100 });
  });

  it.each([
    ['its holder no longer runs (a killed keeper)', { 300: 1 }, 'boot-1'],
    ['its pid now runs another process (other start time)', { 100: 77, 300: 1 }, 'boot-1'],
    ['it was taken before a reboot (other boot id), even with the same pid and start time', { 100: 5, 300: 1 }, 'boot-2'],
  ])('is taken over when %s', (_name, running, bootId) => {
    const d = dataDir();
    writeFileSync(join(d, 'keeper.lock'), JSON.stringify({ pid: 100, startTicks: 5, bootId: 'boot-1' }));
    acquireDataDirLock(d, sys(300, running, bootId));
    expect(lockOf(d)).toMatchObject({ pid: 300 });
  });

  it('is taken over when unreadable, and kept when it is this process own', () => {
    const d = dataDir();
    writeFileSync(join(d, 'keeper.lock'), 'garbage');
    const s = sys(300, { 300: 1 });
    acquireDataDirLock(d, s);
    expect(lockOf(d)).toMatchObject({ pid: 300 });
    acquireDataDirLock(d, s);
    expect(lockOf(d)).toMatchObject({ pid: 300 });
  });

  it('reads this process from /proc by default', () => {
    const d = dataDir();
    const l = acquireDataDirLock(d);
    expect(lockOf(d)).toMatchObject({ pid: process.pid });
    expect(() => acquireDataDirLock(d, { self: { pid: 1, startTicks: 1, bootId: (lockOf(d) as { bootId: string }).bootId }, startTicks: (p) => (p === process.pid ? (lockOf(d) as { startTicks: number }).startTicks : undefined) })).toThrow(
      new RegExp(`pid ${process.pid}`),
    );
    l.release();
  });
});
