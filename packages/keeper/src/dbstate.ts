/**
 * The keeper's `<data-dir>/dbstate` file: which DB uid and generation the data directory holds,
 * for which cluster (Stolon keeps the same file). Written atomically; a missing file means no DB.
 */
import { chown, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { KeeperConfig, PersistedState } from './types.js';

/** The state of a data directory that holds no DB. */
export const NO_DB: PersistedState = Object.freeze({ uid: '', generation: 0, clusterUID: '' });

/**
 * Reads `<dataDir>/dbstate`.
 * @returns the persisted state; {@link NO_DB} when the file does not exist. Fields of the wrong
 *   type read as empty.
 * @throws StolonError DATA_DIR_INVALID when the file cannot be read or is not JSON.
 */
export async function readDbState(dataDir: string): Promise<PersistedState> {
  try {
    const raw = JSON.parse(await readFile(join(dataDir, 'dbstate'), 'utf8')) as Partial<PersistedState>;
    return {
      uid: typeof raw.uid === 'string' ? raw.uid : '',
      generation: typeof raw.generation === 'number' ? raw.generation : 0,
      clusterUID: typeof raw.clusterUID === 'string' ? raw.clusterUID : '',
      ...(raw.discardedWal !== undefined ? { discardedWal: raw.discardedWal } : {}),
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return NO_DB;
    }
    throw new StolonError('DATA_DIR_INVALID', `cannot read ${join(dataDir, 'dbstate')}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Writes `<dataDir>/dbstate` atomically: a temp file (mode 0600, flushed), chowned to `owner`
 * when given, renamed over the old one. A crash leaves the old file or the new one, never half.
 * @throws the file system's error (ENOSPC, EACCES…)
 */
export async function writeDbState(dataDir: string, s: PersistedState, owner: KeeperConfig['fileOwner']): Promise<void> {
  const tmp = join(dataDir, `.dbstate.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(s), { mode: 0o600, flush: true });
  if (owner !== undefined) {
    await chown(tmp, owner.uid, owner.gid);
  }
  await rename(tmp, join(dataDir, 'dbstate'));
}
