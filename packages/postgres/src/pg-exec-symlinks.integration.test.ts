/**
 * Issue #15, hole 1, PGDATA's side: PGDATA belongs to PostgreSQL's OS user, so whoever acts as
 * that user (any SQL superuser, through `COPY … TO PROGRAM`) can plant links in it, or swap a
 * file root just wrote for a link before root chowns it. PgExec, run as root, must never write or
 * chown what such a link points to: a root-owned file outside keeps its content, owner and mode.
 * Removing such a tree (removeTree, pg-remove.ts) is left to the OS user. Nor may root read a file
 * of its own through such a link and copy it where the OS user reads (the last good configuration).
 * Needs root (CI runs as root): as another user it fails, it does not skip.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { chown, link, lstat, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { removeDir, startRootVictim, type RootVictim, type VictimState } from '@stolon-ts/harness';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { restoreLastGoodConfig, saveLastGoodConfig } from './pg-conf-files.js';
import type { PgContext } from './pg-context.js';
import { PgExec } from './pg-exec.js';
import { removeTree } from './pg-remove.js';

const VICTIM_TEXT = 'root-owned file outside PGDATA\n';

let fixture: RootVictim;
let root = '';
let victim = '';
let pgData = '';
let pg = { uid: -1, gid: -1 };
const exec = new PgExec({ binPath: '/usr/lib/postgresql/15/bin', osUser: 'postgres', log: pino({ level: 'silent' }) });

const victimState = (): Promise<VictimState> => fixture.state();
const UNTOUCHED = { text: VICTIM_TEXT, uid: 0, gid: 0, mode: 0o640, nlink: 1 };

/** What the OS user can do in its own directory: replace `path` by a link to the victim. */
async function swapForLink(path: string): Promise<void> {
  await rm(path, { force: true });
  await symlink(victim, path);
  execFileSync('chown', ['-h', `${pg.uid}:${pg.gid}`, path]);
}

beforeAll(async () => {
  fixture = await startRootVictim('stolon-pgexec-links-', VICTIM_TEXT);
  ({ root, victim, pg } = fixture);
});

afterAll(async () => {
  await removeDir(root);
});

beforeEach(async () => {
  await fixture.reset();
  pgData = join(root, `pgdata-${Date.now()}`);
  await mkdir(pgData, { mode: 0o700 });
  await chown(pgData, pg.uid, pg.gid);
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('PgExec as root in a PGDATA the OS user controls', () => {
  it('writeAtomic replaces a link planted at the target and writes a file of the OS user', async () => {
    const conf = join(pgData, 'postgresql.conf');
    await swapForLink(conf);
    await exec.writeAtomic(conf, "port = 5432\n");
    expect(await victimState()).toEqual(UNTOUCHED);
    const st = await lstat(conf);
    expect(st.isFile()).toBe(true);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([pg.uid, pg.gid, 0o600]);
    expect(await readFile(conf, 'utf8')).toBe('port = 5432\n');
    expect(await readdir(pgData)).toEqual(['postgresql.conf']);
  });

  it('writeAtomic never chowns what its temp file was swapped for once written', async () => {
    // The OS user replaces the temp file by a link as soon as root closed it.
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      const path = String(args[0]);
      if (path.includes('.tmp-')) {
        const close = fh.close.bind(fh);
        fh.close = async () => {
          await close();
          await swapForLink(path);
        };
      }
      return fh;
    });
    await exec.writeAtomic(join(pgData, 'pg_hba.conf'), 'local all all scram-sha-256\n').catch(() => undefined);
    expect(await victimState()).toEqual(UNTOUCHED);
  });

  it('writeAtomic creates a new temp file: a link planted at the temp name is never written through', async () => {
    // The temp name is random; plant a link at every name open() is asked to create.
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const path = String(args[0]);
      if (path.includes('.tmp-')) {
        await swapForLink(path);
      }
      return realOpen(...args);
    });
    await expect(exec.writeAtomic(join(pgData, 'standby.signal'), 'x')).rejects.toThrow();
    expect(await victimState()).toEqual(UNTOUCHED);
  });

  it('own() chowns a link itself, not what it points to', async () => {
    const link = join(pgData, 'run');
    await swapForLink(link);
    await exec.own(link);
    expect(await victimState()).toEqual(UNTOUCHED);
    expect((await lstat(link)).uid).toBe(pg.uid);
  });
});

describe('removeTree as root', () => {
  it('removes an OS-user tree with links inside, following none of them', async () => {
    await mkdir(join(pgData, 'base', '1'), { recursive: true });
    await writeFile(join(pgData, 'base', '1', '1259'), 'x');
    await symlink(join(root, 'outside'), join(pgData, 'base', 'outside-dir'));
    await symlink(victim, join(pgData, 'global'));
    execFileSync('chown', ['-hR', `${pg.uid}:${pg.gid}`, pgData]);
    await removeTree(exec, pgData);
    await expect(lstat(pgData)).rejects.toThrow(/ENOENT/);
    expect(await victimState()).toEqual(UNTOUCHED);
    await removeTree(exec, pgData); // missing: fine
  });

  it('leaves the removal of the content to the OS user: what it may not remove stays, with a clear error', async () => {
    // A root-owned directory with a file: root could remove it, the OS user cannot. A recursive
    // removal by root would also descend into whatever the OS user swapped in for a subdirectory.
    await mkdir(join(pgData, 'rootdir'));
    await writeFile(join(pgData, 'rootdir', 'f'), 'x');
    await expect(removeTree(exec, pgData)).rejects.toThrow(/removing the content of .* as postgres/);
    expect(await readFile(join(pgData, 'rootdir', 'f'), 'utf8')).toBe('x');
  });
});

describe('files root reads in PGDATA and copies', () => {
  /** The parts of the context the last-good functions use. */
  const ctx = (): PgContext => ({ pgData, exec, log: pino({ level: 'silent' }) }) as unknown as PgContext;

  it('restoreLastGoodConfig does not copy what a link or hard link at a .last-good name points to', async () => {
    await swapForLink(join(pgData, 'postgresql.conf.last-good'));
    expect(await restoreLastGoodConfig(ctx())).toBe(false);
    await rm(join(pgData, 'postgresql.conf.last-good'));
    await writeFile(join(pgData, 'postgresql.conf.last-good'), 'port = 5433\n');
    await link(victim, join(pgData, 'pg_hba.conf.last-good'));
    expect(await restoreLastGoodConfig(ctx())).toBe(true);
    expect(await readFile(join(pgData, 'postgresql.conf'), 'utf8')).toBe('port = 5433\n');
    expect(existsSync(join(pgData, 'pg_hba.conf'))).toBe(false);
    expect({ ...(await victimState()) }).toMatchObject({ text: VICTIM_TEXT, uid: 0, mode: 0o640 });
  });

  it('saveLastGoodConfig does not copy what a link at postgresql.conf points to', async () => {
    await swapForLink(join(pgData, 'postgresql.conf'));
    await writeFile(join(pgData, 'pg_hba.conf'), 'local all all trust\n');
    await saveLastGoodConfig(ctx());
    expect(existsSync(join(pgData, 'postgresql.conf.last-good'))).toBe(false);
    expect(await readFile(join(pgData, 'pg_hba.conf.last-good'), 'utf8')).toBe('local all all trust\n');
    expect(await victimState()).toEqual(UNTOUCHED);
  });
});
