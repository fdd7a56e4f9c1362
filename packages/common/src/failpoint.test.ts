/** Failpoints: off without a directory, and the hang / error / sleep(ms) actions from `<dir>/NAME`. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FailpointError, failpoint, failpointsIn } from './failpoint.js';

const dirs: string[] = [];
function fpDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'failpoints-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) {
    rmSync(d, { recursive: true, force: true });
  }
});

/** 'settled' or 'pending' after `ms`. */
async function stateAfter(p: Promise<unknown>, ms: number): Promise<'settled' | 'pending'> {
  return Promise.race([p.then(() => 'settled' as const, () => 'settled' as const), new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
}

describe('failpoints', () => {
  it('are no-ops without STOLON_FAILPOINTS_DIR (the test process has none)', async () => {
    expect(process.env['STOLON_FAILPOINTS_DIR']).toBeUndefined();
    await expect(failpoint('keeperPassHang')).resolves.toBeUndefined();
    await expect(failpointsIn(undefined)('proxyCheckFail')).resolves.toBeUndefined();
    await expect(failpointsIn('')('proxyCheckFail')).resolves.toBeUndefined();
  });

  it('are no-ops while the directory has no file of that name', async () => {
    const fp = failpointsIn(fpDir());
    await expect(fp('keeperPassHang')).resolves.toBeUndefined();
  });

  it('error: throws FailpointError naming the failpoint, only for the named one', async () => {
    const d = fpDir();
    writeFileSync(join(d, 'proxyCheckFail'), 'error\n');
    const fp = failpointsIn(d);
    await expect(fp('proxyCheckFail')).rejects.toThrow(FailpointError);
    await expect(fp('proxyCheckFail')).rejects.toThrow(/failpoint proxyCheckFail/);
    await expect(fp('keeperPassHang')).resolves.toBeUndefined();
    rmSync(join(d, 'proxyCheckFail'));
    await expect(fp('proxyCheckFail')).resolves.toBeUndefined();
  });

  it('sleep(ms): waits about that long, then goes on', async () => {
    const d = fpDir();
    writeFileSync(join(d, 'keeperPassHang'), 'sleep(200)');
    const t0 = performance.now();
    await failpointsIn(d)('keeperPassHang');
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(2000);
  });

  it('hang: blocks until the file is removed', { timeout: 10_000 }, async () => {
    const d = fpDir();
    writeFileSync(join(d, 'keeperPassHang'), 'hang');
    const p = failpointsIn(d)('keeperPassHang');
    expect(await stateAfter(p, 400)).toBe('pending');
    rmSync(join(d, 'keeperPassHang'));
    expect(await stateAfter(p, 1000)).toBe('settled');
    await expect(p).resolves.toBeUndefined();
  });

  it('hang: a changed action takes over (hang → error throws)', { timeout: 10_000 }, async () => {
    const d = fpDir();
    writeFileSync(join(d, 'keeperPassHang'), 'hang');
    const p = failpointsIn(d)('keeperPassHang');
    expect(await stateAfter(p, 300)).toBe('pending');
    writeFileSync(join(d, 'keeperPassHang'), 'error');
    await expect(p).rejects.toThrow(FailpointError);
  });

  it('an unknown action is ignored', async () => {
    const d = fpDir();
    writeFileSync(join(d, 'keeperPassHang'), 'explode');
    await expect(failpointsIn(d)('keeperPassHang')).resolves.toBeUndefined();
  });
});
