/**
 * Per-test temporary directories. They are created with mode 0755 because a keeper running as
 * root drops to the `postgres` OS user, which must be able to traverse them.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Creates a fresh directory `<os.tmpdir()>/<prefix>XXXXXX` with mode 0755.
 * @param prefix name prefix, e.g. `stolon-etcd-`.
 * @returns the absolute path.
 */
export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // mkdtemp creates 0700; the postgres user must traverse it (see module comment).
  await chmod(dir, 0o755);
  return dir;
}

/** Removes `dir` and everything below it; a missing directory is fine. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
