/**
 * The fencer process (fencer-bin.ts) against a stand-in postmaster: a `sleep` whose command line
 * names the PGDATA, as `postgres -D <pgdata>` does, with its pid in PGDATA/postmaster.pid. Real
 * PostgreSQL is fenced in the e2e tests (test/e2e/fencing.e2e.test.ts).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, removeDir, waitFor } from '@stolon-ts/harness';
import { createLogger } from '@stolon-ts/common';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fenceMarginMs, startFencer, type FenceControl } from './fencer.js';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'fencer-bin.js');

let dir = '';
const started: ChildProcess[] = [];
const fencers: FenceControl[] = [];

/** A process whose /proc cmdline contains `postgres -D <pgData>`, registered in postmaster.pid. */
async function fakePostmaster(pgData: string, register = true): Promise<ChildProcess> {
  await mkdir(pgData, { recursive: true });
  const p = spawn('bash', ['-c', `exec -a "postgres -D ${pgData}" sleep 600`], { stdio: 'ignore' });
  started.push(p);
  await waitFor(() => (p.pid !== undefined ? true : undefined), { timeoutMs: 5000, what: 'the stand-in to start' });
  if (register) {
    await writeFile(join(pgData, 'postmaster.pid'), `${p.pid}\n${pgData}\n`);
  }
  // Let exec replace bash, so the cmdline is the stand-in's.
  await new Promise((r) => setTimeout(r, 100));
  return p;
}

function exited(p: ChildProcess): Promise<NodeJS.Signals | null> {
  return new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(p.signalCode) : p.once('exit', (_c, s) => r(s))));
}

const log = createLogger({ level: 'silent', component: 'test' });

beforeAll(async () => {
  expect(existsSync(SCRIPT), `${SCRIPT} missing: run npm run build`).toBe(true);
  dir = await makeTempDir('stolon-fencer-');
  return async () => {
    await removeDir(dir);
  };
});

afterEach(async () => {
  await Promise.all(fencers.splice(0).map((f) => f.stop()));
  for (const p of started.splice(0)) {
    p.kill('SIGKILL');
  }
});

describe('fencer', () => {
  it('fast-shuts the postmaster (SIGINT) once an armed lease runs out without a newer update, and reports it', async () => {
    const pgData = join(dir, 'a');
    const pm = await fakePostmaster(pgData);
    const f = startFencer(log, { script: SCRIPT });
    fencers.push(f);
    const fenced: number[] = [];
    f.onFenced(({ pid }) => fenced.push(pid));
    const armedAt = performance.now();
    // Lease certain for margin + 300 ms: the fencer acts ~300 ms from now.
    f.update({ armed: true, pgData, leaseRemainingMs: fenceMarginMs(6000) + 300, ttlMs: 6000 });
    const signal = await exited(pm);
    const after = performance.now() - armedAt;
    expect(signal).toBe('SIGINT');
    expect(after).toBeGreaterThanOrEqual(250);
    expect(after).toBeLessThan(2000);
    await waitFor(() => (fenced.length === 1 ? true : undefined), { timeoutMs: 2000, what: 'the fenced report' });
    expect(fenced).toEqual([pm.pid]);
  });

  it('does not fence while updates keep extending the lease, nor once disarmed', async () => {
    const pgData = join(dir, 'b');
    const pm = await fakePostmaster(pgData);
    const f = startFencer(log, { script: SCRIPT });
    fencers.push(f);
    for (let i = 0; i < 8; i++) {
      f.update({ armed: true, pgData, leaseRemainingMs: fenceMarginMs(6000) + 300, ttlMs: 6000 });
      await new Promise((r) => setTimeout(r, 100));
    }
    f.update({ armed: false });
    await new Promise((r) => setTimeout(r, 800));
    expect(pm.exitCode === null && pm.signalCode === null).toBe(true);
  });

  it('fences at once when the keeper has no lease (-Infinity)', async () => {
    const pgData = join(dir, 'c');
    const pm = await fakePostmaster(pgData);
    const f = startFencer(log, { script: SCRIPT });
    fencers.push(f);
    f.update({ armed: true, pgData, leaseRemainingMs: -Infinity, ttlMs: 6000 });
    expect(await exited(pm)).toBe('SIGINT');
  });

  it('never signals a pid from postmaster.pid whose command line does not name the PGDATA (a reused pid)', async () => {
    const pgData = join(dir, 'd');
    const other = await fakePostmaster(join(dir, 'elsewhere'), false);
    await mkdir(pgData, { recursive: true });
    await writeFile(join(pgData, 'postmaster.pid'), `${other.pid}\n${pgData}\n`);
    const f = startFencer(log, { script: SCRIPT });
    fencers.push(f);
    f.update({ armed: true, pgData, leaseRemainingMs: 0, ttlMs: 6000 });
    await new Promise((r) => setTimeout(r, 600));
    expect(other.exitCode === null && other.signalCode === null).toBe(true);
  });

  it('outlives its keeper: once the IPC channel closes an armed fencer fences at its deadline, then exits', { timeout: 20_000 }, async () => {
    const pgData = join(dir, 'e');
    const pm = await fakePostmaster(pgData);
    // What a killed keeper leaves behind: the channel closes (the same 'disconnect' a SIGKILL gives).
    const fencer = fork(SCRIPT, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    started.push(fencer);
    await new Promise((r) => fencer.once('message', r));
    await new Promise<void>((r) => fencer.send({ type: 'arm', pgData, validForMs: 700 }, () => r()));
    fencer.disconnect();
    const goneAt = performance.now();
    expect(await exited(pm)).toBe('SIGINT');
    expect(performance.now() - goneAt).toBeLessThan(3000);
    expect(await exited(fencer)).toBeNull();
    expect(fencer.exitCode).toBe(0);
  });

  it('a new keeper process retires the fencer its killed predecessor left armed, once it holds its own lease; never another process', { timeout: 20_000 }, async () => {
    const pgData = join(dir, 'g');
    const pm = await fakePostmaster(pgData);
    const pidFile = join(dir, 'g-fencer.pid');
    // The predecessor's fencer, tagged with the pid file as startFencer tags it, armed for 1.2 s,
    // then orphaned (its keeper was SIGKILLed).
    const orphan = fork(SCRIPT, [pidFile], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    started.push(orphan);
    await new Promise((r) => orphan.once('message', r));
    await writeFile(pidFile, `${orphan.pid}\n`);
    await new Promise<void>((r) => orphan.send({ type: 'arm', pgData, validForMs: 1200 }, () => r()));
    orphan.disconnect();
    const f = startFencer(log, { script: SCRIPT, pidFile });
    fencers.push(f);
    // The new keeper has published under its own lease: the orphan is SIGKILLed, not left to fence.
    f.retirePrevious();
    expect(await exited(orphan)).toBe('SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    expect(pm.exitCode === null && pm.signalCode === null, 'the postmaster was not fenced').toBe(true);
    // The new fencer's own pid is recorded for the next keeper process.
    await waitFor(async () => (Number((await readFile(pidFile, 'utf8')).trim()) !== orphan.pid ? true : undefined), { timeoutMs: 5000, what: 'the new pid' });

    // A pid file naming something else (here the postmaster: a reused pid) is never signalled.
    const other = join(dir, 'h-fencer.pid');
    await writeFile(other, `${pm.pid}\n`);
    const f2 = startFencer(log, { script: SCRIPT, pidFile: other });
    fencers.push(f2);
    f2.retirePrevious();
    await new Promise((r) => setTimeout(r, 300));
    expect(pm.exitCode === null && pm.signalCode === null).toBe(true);
    // A clean stop removes the pid file.
    await f2.stop();
    expect(existsSync(other)).toBe(false);
  });

  it('runs in its own session with no inherited stdio; its log lines reach the keeper over IPC', { timeout: 20_000 }, async () => {
    const pgData = join(dir, 'i');
    const pm = await fakePostmaster(pgData);
    const pidFile = join(dir, 'i-fencer.pid');
    const lines: { msg: string; fencerPid?: number }[] = [];
    const keeperLog = createLogger({ level: 'info', component: 'test', dest: { write: (l: string) => lines.push(JSON.parse(l)) } });
    const f = startFencer(keeperLog, { script: SCRIPT, pidFile });
    fencers.push(f);
    const pid = await waitFor(async () => Number((await readFile(pidFile, 'utf8').catch(() => '')).trim()) || undefined, {
      timeoutMs: 5000,
      what: 'the fencer pid',
    });
    // /proc/<pid>/stat: "pid (comm) state ppid pgrp session …": a session leader of its own.
    const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    expect(Number(stat[3])).toBe(pid);
    expect(Number(stat[2])).toBe(pid);
    for (const fd of [0, 1, 2]) {
      expect(await readlink(`/proc/${pid}/fd/${fd}`)).toBe('/dev/null');
    }
    f.update({ armed: true, pgData, leaseRemainingMs: 0, ttlMs: 6000 });
    expect(await exited(pm)).toBe('SIGINT');
    await waitFor(() => (lines.some((l) => l.msg.startsWith('self-fencing: ') && l.fencerPid === pid) ? true : undefined), {
      timeoutMs: 5000,
      what: "the fencer's log line through the keeper's logger",
    });
  });

  it('an armed fencer whose keeper is gone exits at once when no postmaster runs any more (the whole node was killed), logging to fencer.log', { timeout: 20_000 }, async () => {
    const pgData = join(dir, 'j');
    const pm = await fakePostmaster(pgData);
    const pidFile = join(dir, 'j', 'fencer.pid');
    const fencer = fork(SCRIPT, [pidFile], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    started.push(fencer);
    await new Promise((r) => fencer.once('message', r));
    await new Promise<void>((r) => fencer.send({ type: 'arm', pgData, validForMs: 60_000 }, () => r()));
    fencer.disconnect();
    await new Promise((r) => setTimeout(r, 300));
    expect(fencer.exitCode).toBeNull();
    pm.kill('SIGKILL');
    const t0 = performance.now();
    expect(await exited(fencer)).toBeNull();
    expect(fencer.exitCode).toBe(0);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await readFile(join(dir, 'j', 'fencer.log'), 'utf8')).toContain('keeper gone; postgres in');
  });

  it('a disarmed fencer exits at once when its keeper goes away', async () => {
    const fencer = fork(SCRIPT, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    started.push(fencer);
    await new Promise<void>((r) => fencer.send({ type: 'disarm' }, () => r()));
    fencer.disconnect();
    expect(await exited(fencer)).toBeNull();
    expect(fencer.exitCode).toBe(0);
  });

  it('hears the keeper only when the fence deadline moves or the state changes, not on every update', async () => {
    // A stand-in fencer that says ready and reports every message it receives as a log line.
    const stub = join(dir, 'stub-fencer.cjs');
    await writeFile(
      stub,
      "process.on('message', (m) => process.send({ type: 'log', level: 'info', msg: 'got', fields: { got: m } }));\nprocess.send({ type: 'ready' });\n",
    );
    const got: { type: string; validForMs?: number }[] = [];
    const keeperLog = createLogger({
      level: 'info',
      component: 'test',
      dest: { write: (l: string) => void ((JSON.parse(l) as { got?: { type: string } }).got !== undefined && got.push((JSON.parse(l) as { got: { type: string } }).got)) },
    });
    const f = startFencer(keeperLog, { script: stub });
    fencers.push(f);
    const pgData = join(dir, 'k');
    // The lease's end stays put: every update computes the same absolute deadline.
    const leaseEnd = performance.now() + 5000;
    for (let i = 0; i < 12; i++) {
      f.update({ armed: true, pgData, leaseRemainingMs: leaseEnd - performance.now(), ttlMs: 6000 });
      await new Promise((r) => setTimeout(r, 25));
    }
    await waitFor(() => (got.length >= 1 ? true : undefined), { timeoutMs: 5000, what: 'the first arm' });
    await new Promise((r) => setTimeout(r, 200));
    expect(got.map((m) => m.type)).toEqual(['arm']);
    // Sent with the time left at the send: about the lease's end less the margin, less the time waited.
    expect(got[0]!.validForMs).toBeLessThanOrEqual(5000 - fenceMarginMs(6000));
    expect(got[0]!.validForMs).toBeGreaterThan(5000 - fenceMarginMs(6000) - 3000);
    // A renewal moves the deadline: told again, once.
    const renewed = leaseEnd + 2000;
    f.update({ armed: true, pgData, leaseRemainingMs: renewed - performance.now(), ttlMs: 6000 });
    f.update({ armed: true, pgData, leaseRemainingMs: renewed - performance.now(), ttlMs: 6000 });
    // Disarmed: told once however often it is said.
    f.update({ armed: false });
    f.update({ armed: false });
    await waitFor(() => (got.length >= 3 ? true : undefined), { timeoutMs: 5000, what: 'the renewal and the disarm' });
    await new Promise((r) => setTimeout(r, 200));
    expect(got.map((m) => m.type)).toEqual(['arm', 'arm', 'disarm']);
  });

  it('an armed fencer sleeps until its deadline instead of polling (no wake-ups while nothing happens)', async () => {
    const pgData = join(dir, 'l');
    await fakePostmaster(pgData);
    const pidFile = join(dir, 'l-fencer.pid');
    const f = startFencer(log, { script: SCRIPT, pidFile });
    fencers.push(f);
    const pid = await waitFor(async () => Number((await readFile(pidFile, 'utf8').catch(() => '')).trim()) || undefined, { timeoutMs: 5000, what: 'the fencer pid' });
    f.update({ armed: true, pgData, leaseRemainingMs: 60_000, ttlMs: 6000 });
    // /proc/<pid>/status counts the main thread's voluntary context switches: one per wake-up from epoll.
    const switches = async () => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]);
    await new Promise((r) => setTimeout(r, 500));
    const before = await switches();
    await new Promise((r) => setTimeout(r, 2000));
    // A 50 ms poll wakes it ~40 times in 2 s.
    expect((await switches()) - before).toBeLessThan(10);
  });

  it('a clean stop exits the fencer without fencing', async () => {
    const pgData = join(dir, 'f');
    const pm = await fakePostmaster(pgData);
    const f = startFencer(log, { script: SCRIPT });
    f.update({ armed: true, pgData, leaseRemainingMs: fenceMarginMs(6000) + 400, ttlMs: 6000 });
    await f.stop();
    await new Promise((r) => setTimeout(r, 800));
    expect(pm.exitCode === null && pm.signalCode === null).toBe(true);
  });
});
