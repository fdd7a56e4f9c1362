/**
 * PgExec's supervised runs (child-supervisor-bin.ts): output, exit code and signal pass through,
 * and an abort ends the command with every process it started. A keeper SIGKILLed during a
 * supervised command: test/e2e/keeper-process.e2e.test.ts.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('with startAfter, start the command only once that promise is fulfilled', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'supervised-'));
    // The command runs as the OS user (postgres) when these tests run as root.
    await chmod(dir, 0o777);
    try {
      // The command succeeds only if the file the gate's step writes is there when it starts.
      const marker = join(dir, 'slot-created');
      let go!: () => void;
      const gate = new Promise<void>((r) => (go = r));
      const p = exec.run('/bin/sh', ['-c', `test -e ${marker} && echo started`], { supervised: true, startAfter: gate });
      // The supervisor is up well within this; the command must still wait for the gate.
      await new Promise((r) => setTimeout(r, 300));
      await writeFile(marker, '');
      go();
      expect(await p).toMatchObject({ code: 0, stdout: 'started\n', aborted: false });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('with startAfter rejected, never start the command and reject with its reason', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'supervised-'));
    // The command runs as the OS user (postgres) when these tests run as root.
    await chmod(dir, 0o777);
    try {
      const marker = join(dir, 'ran');
      let fail!: (err: Error) => void;
      const gate = new Promise<void>((_, reject) => (fail = reject));
      const p = exec.run('/bin/sh', ['-c', `touch ${marker}`], { supervised: true, startAfter: gate });
      setTimeout(() => fail(new Error('slot creation failed')), 200);
      await expect(p).rejects.toThrow('slot creation failed');
      expect(existsSync(marker)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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
