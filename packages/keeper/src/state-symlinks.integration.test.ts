/**
 * Issue #15, hole 1: a root keeper must never write, append to or chown what a link planted by
 * PostgreSQL's OS user points to. The data directory here is laid out as older keepers made it
 * (owned by `postgres`, mode 0700), so the OS user could plant links at every predictable name;
 * each test plants them, pointing at a root-owned file outside, runs the real code and checks
 * that file's content, owner and mode are unchanged and the intended file was written.
 * Needs root (CI runs as root): as another user it fails, it does not skip.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, lstat, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeDir, startRootVictim, waitFor, type RootVictim, type VictimState } from '@stolon-ts/harness';
import { createLogger } from '@stolon-ts/common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readDbState, writeDbState } from './dbstate.js';
import { startFencer } from './fencer.js';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'fencer-bin.js');
const VICTIM_TEXT = 'root-owned file outside the data directory\n';
const log = createLogger({ level: 'silent', component: 'test' });

let fixture: RootVictim;
let root = '';
let victim = '';
let pg = { uid: -1, gid: -1 };
let dataDir = '';

const victimState = (): Promise<VictimState> => fixture.state();
const UNTOUCHED = { text: VICTIM_TEXT, uid: 0, gid: 0, mode: 0o640, nlink: 1 };

/** A link at `name` in the data dir to the victim, owned by the OS user as if it planted it. */
async function plant(name: string): Promise<void> {
  await symlink(victim, join(dataDir, name));
  execFileSync('chown', ['-h', `${pg.uid}:${pg.gid}`, join(dataDir, name)]);
}

beforeAll(async () => {
  fixture = await startRootVictim('stolon-symlinks-', VICTIM_TEXT);
  ({ root, victim, pg } = fixture);
  expect(existsSync(SCRIPT), `${SCRIPT} missing: run npm run build`).toBe(true);
});

afterAll(async () => {
  await removeDir(root);
});

beforeEach(async () => {
  await fixture.reset();
  // The data directory as older root keepers left it: the OS user's, mode 0700.
  dataDir = join(root, `data-${Date.now()}`);
  await mkdir(dataDir, { mode: 0o700 });
  await chown(dataDir, pg.uid, pg.gid);
});

describe('a root keeper and links planted in its data directory', () => {
  it('writeDbState writes dbstate, not what a link at .dbstate.<pid>.tmp or dbstate points to', async () => {
    await plant(`.dbstate.${process.pid}.tmp`);
    await plant('dbstate');
    const state = { uid: 'db1', generation: 3, clusterUID: 'c1' };
    await writeDbState(dataDir, state);
    expect(await victimState()).toEqual(UNTOUCHED);
    const st = await lstat(join(dataDir, 'dbstate'));
    expect(st.isFile()).toBe(true);
    expect(st.uid).toBe(0);
    expect(st.mode & 0o777).toBe(0o600);
    expect(await readDbState(dataDir)).toEqual(state);
    expect(existsSync(join(dataDir, `.dbstate.${process.pid}.tmp`))).toBe(false);
  });

  it("the fencer's pid file is written as a new file, not through a link at fencer.pid.tmp", async () => {
    await plant('fencer.pid.tmp');
    const pidFile = join(dataDir, 'fencer.pid');
    const fencer = startFencer(log, { script: SCRIPT, pidFile });
    try {
      expect(await victimState()).toEqual(UNTOUCHED);
      const st = await lstat(pidFile);
      expect(st.isFile()).toBe(true);
      expect(st.uid).toBe(0);
      const pid = Number((await readFile(pidFile, 'utf8')).trim());
      expect(Number.isInteger(pid) && pid > 0 && pid !== process.pid).toBe(true);
    } finally {
      await fencer.stop();
    }
    expect(await victimState()).toEqual(UNTOUCHED);
  });

  it('an orphaned fencer does not append its log lines to what a link at fencer.log points to', async () => {
    await plant('fencer.log');
    const pidFile = join(dataDir, 'fencer.pid');
    // A fencer armed for a PGDATA where no postmaster runs, whose keeper then goes away: it logs
    // "keeper gone" to fencer.log (no keeper listens), finds nothing to fence and exits.
    const child = fork(SCRIPT, [pidFile], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], execArgv: [] });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await new Promise<void>((r) => child.once('message', () => r()));
    child.send({ type: 'arm', pgData: join(dataDir, 'postgres'), validForMs: 60_000 });
    await new Promise((r) => setTimeout(r, 100));
    child.disconnect();
    await waitFor(() => (child.exitCode !== null || child.signalCode !== null ? true : undefined), { timeoutMs: 10_000, what: 'the fencer to exit' });
    await exited;
    expect(await victimState()).toEqual(UNTOUCHED);
    expect((await lstat(join(dataDir, 'fencer.log'))).isSymbolicLink()).toBe(true);
  });

  it("the fencer never signals a root process that PGDATA's owner names in postmaster.pid", async () => {
    const pgData = join(dataDir, 'postgres');
    await mkdir(pgData, { mode: 0o700 });
    await chown(pgData, pg.uid, pg.gid);
    // A root process whose command line names PGDATA, as a postmaster's does.
    const rootProc = spawn('bash', ['-c', `exec -a "postgres -D ${pgData}" sleep 600`], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 150));
      await writeFile(join(pgData, 'postmaster.pid'), `${rootProc.pid}\n${pgData}\n`);
      await chown(join(pgData, 'postmaster.pid'), pg.uid, pg.gid);
      const fencer = startFencer(log, { script: SCRIPT, pidFile: join(dataDir, 'fencer.pid') });
      try {
        fencer.update({ armed: true, pgData, leaseRemainingMs: -Infinity, ttlMs: 6000 });
        await new Promise((r) => setTimeout(r, 800));
        expect(rootProc.exitCode === null && rootProc.signalCode === null).toBe(true);
      } finally {
        await fencer.stop();
      }
    } finally {
      rootProc.kill('SIGKILL');
    }
  });
});
