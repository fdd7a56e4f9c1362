/** Where the PostgreSQL server binaries are: one resolver for the keeper, the harness and the tests. */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';

/** The last default of {@link resolvePgBinDir}: PostgreSQL 15 in Debian's layout. */
export const DEFAULT_PG_BIN_DIR = '/usr/lib/postgresql/15/bin';

/** Inputs of {@link resolvePgBinDir}. */
export interface ResolvePgBinDirOptions {
  /** The `--pg-bin-path` value; undefined or "" when not given. */
  readonly flag?: string | undefined;
  /** Environment holding `PG_BIN` and the `PATH` on which `pg_config` is looked up. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** The last default. @default DEFAULT_PG_BIN_DIR */
  readonly fallback?: string;
}

/** True when `dir` holds an executable regular file `postgres`. */
function hasPostgres(dir: string): boolean {
  const file = join(dir, 'postgres');
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** What `pg_config --bindir` prints (trimmed), or undefined when there is no pg_config or it fails. */
function pgConfigBindir(env: NodeJS.ProcessEnv): string | undefined {
  try {
    const out = execFileSync('pg_config', ['--bindir'], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    }).trim();
    return out === '' ? undefined : out;
  } catch {
    return undefined;
  }
}

/**
 * The directory of the PostgreSQL server binaries (the one holding `postgres`, `initdb`,
 * `pg_ctl`, `pg_basebackup`, `pg_rewind`, …), in this order:
 * 1. `opts.flag` (the `--pg-bin-path` value) when given and not empty;
 * 2. else the environment variable `PG_BIN` when set and not empty;
 * 3. else what `pg_config --bindir` prints, when `pg_config` is on `PATH` and that directory
 *    holds a `postgres` executable (Debian's `/usr/bin/pg_config` wrapper may name another
 *    major version, or client-only binaries: then this step is skipped);
 * 4. else `opts.fallback`, by default {@link DEFAULT_PG_BIN_DIR}.
 * An explicit choice (1 or 2) is never replaced by a later step. The path is returned as given
 * (not made absolute). Runs `pg_config` synchronously (at most 10 s); meant for startup.
 * @returns a directory holding an executable `postgres`.
 * @throws ConfigError (field `pg-bin-path`) when the chosen directory has no `postgres`
 *   executable: for a flag or `PG_BIN` naming that directory; for the last default naming
 *   `--pg-bin-path` and `PG_BIN` as the ways to point at the binaries.
 */
export function resolvePgBinDir(opts: ResolvePgBinDirOptions = {}): string {
  const env = opts.env ?? process.env;
  if (opts.flag !== undefined && opts.flag !== '') {
    if (!hasPostgres(opts.flag)) {
      throw new ConfigError(
        `--pg-bin-path: no postgres executable in ${opts.flag}; give the directory of the PostgreSQL server binaries`,
        { field: 'pg-bin-path' },
      );
    }
    return opts.flag;
  }
  const fromEnv = env['PG_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!hasPostgres(fromEnv)) {
      throw new ConfigError(
        `PG_BIN: no postgres executable in ${fromEnv}; set PG_BIN (or pass --pg-bin-path) to the directory of the PostgreSQL server binaries`,
        { field: 'pg-bin-path' },
      );
    }
    return fromEnv;
  }
  const fromPgConfig = pgConfigBindir(env);
  if (fromPgConfig !== undefined && hasPostgres(fromPgConfig)) {
    return fromPgConfig;
  }
  const fallback = opts.fallback ?? DEFAULT_PG_BIN_DIR;
  if (!hasPostgres(fallback)) {
    const pgConfig = fromPgConfig === undefined ? 'no usable pg_config on PATH' : `pg_config --bindir names ${fromPgConfig}, which has none`;
    throw new ConfigError(
      `no PostgreSQL server binaries found: no postgres executable in ${fallback} (the default), ${pgConfig}, PG_BIN unset; ` +
        'pass --pg-bin-path DIR or set PG_BIN=DIR (DIR holding postgres and initdb)',
      { field: 'pg-bin-path' },
    );
  }
  return fallback;
}
