/**
 * prepareDataDir (datadir.ts) as a root keeper runs it at startup: a new data directory is root's,
 * and one laid out by an older keeper (owned by PostgreSQL's OS user, with links that user may
 * have planted) is taken back with nothing lost and nothing outside touched. Needs root (CI runs
 * as root): as another user it fails, it does not skip.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, link, lstat, mkdir, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { removeDir, startRootVictim, type RootVictim, type VictimState } from '@stolon-ts/harness';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { prepareDataDir } from './datadir.js';
import { readDbState, writeDbState } from './dbstate.js';

const VICTIM_TEXT = 'root-owned file outside the data directory\n';

let fixture: RootVictim;
let root = '';
let victim = '';
let pg = { uid: -1, gid: -1 };
let dataDir = '';

const victimState = (): Promise<VictimState> => fixture.state();
const UNTOUCHED = { text: VICTIM_TEXT, uid: 0, gid: 0, mode: 0o640, nlink: 1 };

async function plant(name: string): Promise<void> {
  await symlink(victim, join(dataDir, name));
  execFileSync('chown', ['-h', `${pg.uid}:${pg.gid}`, join(dataDir, name)]);
}

/** Runs `cmd` as the OS user; true when it succeeded. */
function asPostgres(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { uid: pg.uid, gid: pg.gid, stdio: 'ignore' }).status === 0;
}

beforeAll(async () => {
  fixture = await startRootVictim('stolon-datadir-', VICTIM_TEXT);
  ({ root, victim, pg } = fixture);
});

afterAll(async () => {
  await removeDir(root);
});

beforeEach(async () => {
  await fixture.reset();
  dataDir = join(root, `data-${Date.now()}`);
});

/** A data directory as older root keepers left it, with links the OS user planted. */
async function oldLayout(): Promise<void> {
  await mkdir(dataDir, { mode: 0o700 });
  await chown(dataDir, pg.uid, pg.gid);
  await writeDbState(dataDir, { uid: 'db7', generation: 4, clusterUID: 'c9' });
  await chown(join(dataDir, 'dbstate'), pg.uid, pg.gid);
  await writeFile(join(dataDir, 'keeperstate'), JSON.stringify({ UID: 'keeper0' }), { mode: 0o600 });
  await writeFile(join(dataDir, 'keeper.lock'), '{"pid":1}', { mode: 0o644 });
  await writeFile(join(dataDir, 'fencer.pid'), '123\n', { mode: 0o644 });
  await chown(join(dataDir, 'fencer.pid'), pg.uid, pg.gid);
  await mkdir(join(dataDir, 'postgres'), { mode: 0o700 });
  await writeFile(join(dataDir, 'postgres', 'PG_VERSION'), '15\n');
  execFileSync('chown', ['-R', `${pg.uid}:${pg.gid}`, join(dataDir, 'postgres')]);
  await plant('fencer.log');
  await plant('fencer.pid.tmp');
  await plant('.dbstate.4242.tmp');
  await plant('postgres.log');
  await plant('replication.pgpass');
}

describe('prepareDataDir as root', () => {
  it('makes a new data directory root-owned, not writable by the OS user, but traversable', async () => {
    expect(await prepareDataDir(dataDir, pg)).toEqual([]);
    const st = await stat(dataDir);
    expect([st.uid, st.mode & 0o022, st.mode & 0o011]).toEqual([0, 0, 0o011]);
    expect(asPostgres('ln', ['-s', victim, join(dataDir, 'fencer.pid.tmp')])).toBe(false);
  });

  it('takes an old-layout data directory back: state kept, planted links gone, victim untouched, PGDATA still the OS user’s', async () => {
    await oldLayout();
    const changes = await prepareDataDir(dataDir, pg);
    expect(changes.length).toBeGreaterThan(0);
    expect(await victimState()).toEqual(UNTOUCHED);
    const st = await stat(dataDir);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o711]);
    // Nothing lost.
    expect(await readDbState(dataDir)).toEqual({ uid: 'db7', generation: 4, clusterUID: 'c9' });
    expect(JSON.parse(await readFile(join(dataDir, 'keeperstate'), 'utf8'))).toEqual({ UID: 'keeper0' });
    expect(await readFile(join(dataDir, 'keeper.lock'), 'utf8')).toBe('{"pid":1}');
    expect(await readFile(join(dataDir, 'fencer.pid'), 'utf8')).toBe('123\n');
    for (const name of ['dbstate', 'keeperstate', 'keeper.lock', 'fencer.pid']) {
      const f = await lstat(join(dataDir, name));
      expect([name, f.isFile(), f.uid, f.mode & 0o077]).toEqual([name, true, 0, 0]);
    }
    // Planted links gone; PGDATA untouched and still the OS user's.
    expect((await readdir(dataDir)).sort()).toEqual(['dbstate', 'fencer.pid', 'keeper.lock', 'keeperstate', 'postgres']);
    const pgd = await stat(join(dataDir, 'postgres'));
    expect([pgd.uid, pgd.mode & 0o777]).toEqual([pg.uid, 0o700]);
    expect(await readFile(join(dataDir, 'postgres', 'PG_VERSION'), 'utf8')).toBe('15\n');
    // The OS user can no longer plant anything where root writes, and can still write PGDATA.
    expect(asPostgres('ln', ['-s', victim, join(dataDir, 'fencer.pid.tmp')])).toBe(false);
    expect(asPostgres('touch', [join(dataDir, 'postgres', 'postmaster.opts')])).toBe(true);
    // A second start changes nothing, not even a root-owned temp file (a live keeper's write).
    await writeFile(join(dataDir, '.dbstate.99.tmp'), '{}', { mode: 0o600 });
    expect(await prepareDataDir(dataDir, pg)).toEqual([]);
    expect(existsSync(join(dataDir, '.dbstate.99.tmp'))).toBe(true);
  });

  it('replaces a state file hard-linked to a file outside by a copy, leaving that file alone', async () => {
    await mkdir(dataDir, { mode: 0o700 });
    await chown(dataDir, pg.uid, pg.gid);
    await link(victim, join(dataDir, 'fencer.pid'));
    await prepareDataDir(dataDir, pg);
    expect(await victimState()).toEqual(UNTOUCHED);
    const f = await lstat(join(dataDir, 'fencer.pid'));
    expect([f.nlink, f.uid, f.mode & 0o777]).toEqual([1, 0, 0o600]);
  });

  it('refuses a link at dbstate or at PGDATA rather than read or follow it, and touches nothing', async () => {
    await mkdir(dataDir, { mode: 0o700 });
    await chown(dataDir, pg.uid, pg.gid);
    await plant('dbstate');
    await expect(prepareDataDir(dataDir, pg)).rejects.toThrow(ConfigError);
    await expect(prepareDataDir(dataDir, pg)).rejects.toThrow(/dbstate is not a regular file/);
    expect((await lstat(join(dataDir, 'dbstate'))).isSymbolicLink()).toBe(true);
    await removeDir(join(dataDir, 'dbstate'));
    await plant('postgres');
    await expect(prepareDataDir(dataDir, pg)).rejects.toThrow(/PGDATA\) is a symbolic link/);
    expect(await victimState()).toEqual(UNTOUCHED);
  });

  it('leaves a data directory of a keeper not run as root as it was made (mode 0700)', async () => {
    expect(await prepareDataDir(dataDir, undefined)).toEqual([]);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect(existsSync(join(dataDir, 'dbstate'))).toBe(false);
  });
});
