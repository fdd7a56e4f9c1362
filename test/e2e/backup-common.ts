/**
 * What the WAL-archiving e2e files share: a POSIX pgBackRest repository in a temp directory
 * (owned by the postgres OS user, as the keepers' PostgreSQL writes it), and the pgBackRest CLI run
 * as that user with the same repository options as the keepers (`pgbackrestRepoOptions`).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pgbackrestArgs, pgbackrestRepoOptions, type BackupSpec, type PgbackrestCommand } from '@stolon-ts/cluster';

/** uid/gid of the postgres OS user, which runs the keepers' PostgreSQL (the tests run as root). */
function postgresIds(): { uid: number; gid: number } {
  const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** A POSIX repository for one test file: `<tmp>/repo` (the repository) and `<tmp>/cli` (the CLI's lock and spool). */
export interface TestRepo {
  readonly root: string;
  readonly path: string;
  /** The spec's `backup` section for this repository. */
  readonly backup: BackupSpec;
  /** Removes the temp directory. */
  remove(): void;
}

/** Makes a {@link TestRepo} (synchronously, so that the spec can name it at module load). */
export function makeTestRepo(prefix: string): TestRepo {
  const root = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(root, 0o755);
  const { uid, gid } = postgresIds();
  for (const d of ['repo', 'cli']) {
    mkdirSync(join(root, d), { mode: 0o750 });
    chownSync(join(root, d), uid, gid);
  }
  const path = join(root, 'repo');
  return { root, path, backup: { repository: { path } }, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** The result of {@link pgbackrestCli}. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `pgbackrest <repository options> <extra> <command>` as the postgres OS user (no
 * configuration file, no log file; options the command does not take left out), bounded to 120 s.
 * @param extra more options, e.g. `['--pg1-path=…', '--pg1-port=…']` for `backup` and `check`.
 */
export function pgbackrestCli(repo: TestRepo, stanza: string, command: PgbackrestCommand, extra: readonly string[] = []): CliResult {
  const { uid, gid } = postgresIds();
  const args = pgbackrestArgs(command, [
    '--config=/dev/null',
    ...pgbackrestRepoOptions(repo.backup, stanza),
    `--lock-path=${join(repo.root, 'cli')}`,
    '--log-level-file=off',
    '--log-level-console=warn',
    ...extra,
  ]);
  const res = spawnSync('/usr/bin/pgbackrest', args, { uid, gid, cwd: '/', encoding: 'utf8', timeout: 120_000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** One archive range of `pgbackrest info --output=json`. */
export interface ArchiveRange {
  readonly id: string;
  readonly min: string | null;
  readonly max: string | null;
}

/** The stanza's archive ranges from `pgbackrest info --output=json` (empty when none or the stanza is missing). */
export function archiveRanges(repo: TestRepo, stanza: string): ArchiveRange[] {
  const res = pgbackrestCli(repo, stanza, 'info', ['--output=json']);
  if (res.code !== 0) {
    return [];
  }
  const info = JSON.parse(res.stdout) as { name: string; archive?: ArchiveRange[] }[];
  return info.find((s) => s.name === stanza)?.archive ?? [];
}

/**
 * The WAL file names (24 hex digits, `.partial` and `.history` files included, without pgBackRest's
 * checksum and compression suffix) in the repository's `archive/<stanza>/<archive id>/` directories.
 */
export function archivedWalFiles(repo: TestRepo, stanza: string): string[] {
  const base = join(repo.path, 'archive', stanza);
  const out: string[] = [];
  for (const archiveId of readdirSync(base).filter((d) => /^\d+-\d+$/.test(d))) {
    for (const entry of readdirSync(join(base, archiveId))) {
      if (/^[0-9A-F]{8}\.history$/.test(entry)) {
        out.push(entry);
      } else if (/^[0-9A-F]{16}$/.test(entry)) {
        for (const f of readdirSync(join(base, archiveId, entry))) {
          const m = /^([0-9A-F]{24}(?:\.partial)?)-[0-9a-f]{40}/.exec(f);
          if (m?.[1] !== undefined) {
            out.push(m[1]);
          }
        }
      }
    }
  }
  return out.sort();
}
