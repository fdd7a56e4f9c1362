/**
 * PgExec's supervised runs (child-supervisor-bin.ts): output, exit code and signal pass through,
 * and an abort ends the command with every process it started. A keeper SIGKILLed during a
 * supervised command: test/e2e/keeper-process.e2e.test.ts.
 */
import { readFile, readdir } from 'node:fs/promises';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PgExec } from './pg-exec.js';

const exec = new PgExec({ binPath: '/usr/bin', osUser: 'postgres', log: pino({ level: 'silent' }) });

async function pidsRunning(cmdline: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (/^\d+$/.test(e) && (await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')) === cmdline) {
      out.push(Number(e));
    }
  }
  return out;
}

describe('supervised commands', () => {
  it('pass stdout, stderr and the exit code through', async () => {
    const res = await exec.run('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3'], { supervised: true });
    expect(res).toMatchObject({ code: 3, signal: null, aborted: false });
    expect(res.stdout).toBe('out\n');
    expect(res.stderr).toBe('err\n');
  });

  it('report the signal that ended the command', async () => {
    const res = await exec.run('/bin/sh', ['-c', 'kill -KILL $$'], { supervised: true });
    expect(res.signal).toBe('SIGKILL');
    expect(res.code).toBeNull();
  });

  it('an abort ends the command and the processes it started', { timeout: 15_000 }, async () => {
    const ac = new AbortController();
    const p = exec.run('/bin/sh', ['-c', 'sleep 617 & wait'], { supervised: true, signal: ac.signal });
    for (let i = 0; i < 50 && (await pidsRunning('sleep\u0000617\u0000')).length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await pidsRunning('sleep\u0000617\u0000')).length).toBe(1);
    ac.abort();
    const res = await p;
    expect(res.aborted).toBe(true);
    for (let i = 0; i < 50 && (await pidsRunning('sleep\u0000617\u0000')).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await pidsRunning('sleep\u0000617\u0000')).toEqual([]);
  });
});
