/**
 * The keeper's `<data-dir>/dbstate` file: which DB uid and generation the data directory holds,
 * for which cluster (Stolon keeps the same file). Written atomically; a missing file means no DB.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import { writeStateFile } from './state-file.js';
import type { PersistedState } from './types.js';

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
 * Writes `<dataDir>/dbstate` atomically: a new temp file `.dbstate.<pid>.tmp` (mode 0600, owned by
 * this process's user, flushed) renamed over the old one. A crash leaves the old file or the new
 * one, never half; a link planted at either name is replaced, never written through
 * ({@link writeStateFile}).
 * @throws the file system's error (ENOSPC, EACCES…)
 */
export async function writeDbState(dataDir: string, s: PersistedState): Promise<void> {
  await writeStateFile(join(dataDir, 'dbstate'), join(dataDir, `.dbstate.${process.pid}.tmp`), JSON.stringify(s), 0o600);
}
