/**
 * For tests of what a root keeper does in directories PostgreSQL's OS user controls (issue #15,
 * hole 1; docs/security.md): a temp directory with a root-owned "victim" file outside the data
 * directory, which links planted by the OS user point at, and a way to check it was not touched.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from './tmp.js';

/** What a test checks of the victim: content, owner, mode (permission bits), hard links. */
export interface VictimState {
  readonly text: string;
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  readonly nlink: number;
}

/** The fixture {@link startRootVictim} returns. */
export interface RootVictim {
  /** The temp directory (remove it with `removeDir`). */
  readonly root: string;
  /** `<root>/outside/victim`. */
  readonly victim: string;
  /** The `postgres` OS user's ids. */
  readonly pg: { readonly uid: number; readonly gid: number };
  /** The victim as it must stay: `text`, root:root, mode 0640, one link. */
  readonly untouched: VictimState;
  /** Writes the victim anew (a new inode, so links a test left to the old one do not count) as {@link RootVictim.untouched}. */
  reset(): Promise<void>;
  /** The victim now. */
  state(): Promise<VictimState>;
}

/**
 * Creates the fixture (call in `beforeAll`, then `reset()` in `beforeEach`).
 * @throws Error when not run as root: such a test must fail, not skip (CI runs it as root)
 */
export async function startRootVictim(prefix: string, text: string): Promise<RootVictim> {
  if (process.getuid?.() !== 0) {
    throw new Error('this test must run as root (it checks what a root keeper does); CI runs it as root');
  }
  const pg = {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
  };
  const root = await makeTempDir(prefix);
  await mkdir(join(root, 'outside'), { mode: 0o700 });
  const victim = join(root, 'outside', 'victim');
  return {
    root,
    victim,
    pg,
    untouched: { text, uid: 0, gid: 0, mode: 0o640, nlink: 1 },
    async reset() {
      await rm(victim, { force: true });
      await writeFile(victim, text);
      await chown(victim, 0, 0);
      await chmod(victim, 0o640);
    },
    async state() {
      const st = await stat(victim);
      return { text: await readFile(victim, 'utf8'), uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, nlink: st.nlink };
    },
  };
}
