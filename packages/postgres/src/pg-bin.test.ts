/** resolvePgBinDir: the order flag, PG_BIN, pg_config, last default, on fake bin directories. */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_PG_BIN_DIR, resolvePgBinDir } from './pg-bin.js';

const root = mkdtempSync(join(tmpdir(), 'stolon-pg-bin-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A directory holding the given files, each an executable shell script unless `mode` says otherwise. */
function dirWith(name: string, files: Record<string, string>, mode = 0o755): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, body] of Object.entries(files)) {
    writeFileSync(join(dir, file), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, file), mode);
  }
  return dir;
}

const flagBin = dirWith('flag-bin', { postgres: 'exit 0', initdb: 'exit 0' });
const envBin = dirWith('env-bin', { postgres: 'exit 0', initdb: 'exit 0' });
const configBin = dirWith('config-bin', { postgres: 'exit 0', initdb: 'exit 0' });
const fallbackBin = dirWith('fallback-bin', { postgres: 'exit 0', initdb: 'exit 0' });
/** What a client-only install looks like: psql, pg_dump, no server. */
const clientOnly = dirWith('client-only', { psql: 'exit 0', pg_dump: 'exit 0' });
const notExecutable = dirWith('not-executable', { postgres: 'exit 0' }, 0o644);
const missing = join(root, 'does-not-exist');
/** PATH directories: one whose pg_config names `configBin`, one naming the client-only dir, one failing, one empty. */
const pathGood = dirWith('path-good', { pg_config: `echo ${configBin}` });
const pathClientOnly = dirWith('path-client-only', { pg_config: `echo ${clientOnly}` });
const pathFailing = dirWith('path-failing', { pg_config: 'echo "You need to install postgresql-server-dev-NN" >&2; exit 1' });
const pathEmpty = dirWith('path-empty', {});

describe('resolvePgBinDir', () => {
  it('the flag wins over PG_BIN, pg_config and the default', () => {
    expect(resolvePgBinDir({ flag: flagBin, env: { PG_BIN: envBin, PATH: pathGood }, fallback: fallbackBin })).toBe(flagBin);
  });

  it('an empty flag counts as not given', () => {
    expect(resolvePgBinDir({ flag: '', env: { PG_BIN: envBin, PATH: pathGood }, fallback: fallbackBin })).toBe(envBin);
  });

  it('PG_BIN wins over pg_config and the default', () => {
    expect(resolvePgBinDir({ env: { PG_BIN: envBin, PATH: pathGood }, fallback: fallbackBin })).toBe(envBin);
  });

  it('pg_config --bindir when it names a directory with postgres', () => {
    expect(resolvePgBinDir({ env: { PATH: pathGood }, fallback: fallbackBin })).toBe(configBin);
    expect(resolvePgBinDir({ env: { PG_BIN: '', PATH: pathGood }, fallback: fallbackBin })).toBe(configBin);
  });

  it('skips pg_config when it names client-only binaries, fails, or is not on PATH', () => {
    for (const PATH of [pathClientOnly, pathFailing, pathEmpty]) {
      expect(resolvePgBinDir({ env: { PATH }, fallback: fallbackBin }), PATH).toBe(fallbackBin);
    }
  });

  it('a flag or PG_BIN without a postgres executable is an error naming it, never silently replaced', () => {
    for (const bad of [clientOnly, notExecutable, missing]) {
      expect(() => resolvePgBinDir({ flag: bad, env: { PATH: pathGood }, fallback: fallbackBin })).toThrow(
        new ConfigError(`--pg-bin-path: no postgres executable in ${bad}; give the directory of the PostgreSQL server binaries`, {
          field: 'pg-bin-path',
        }),
      );
      expect(() => resolvePgBinDir({ env: { PG_BIN: bad, PATH: pathGood }, fallback: fallbackBin })).toThrow(
        new RegExp(`^PG_BIN: no postgres executable in ${bad}; set PG_BIN \\(or pass --pg-bin-path\\)`),
      );
    }
  });

  it('nothing found: a ConfigError on field pg-bin-path naming --pg-bin-path and PG_BIN', () => {
    let err: unknown;
    try {
      resolvePgBinDir({ env: { PATH: pathClientOnly }, fallback: missing });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('pg-bin-path');
    expect((err as ConfigError).message).toBe(
      `no PostgreSQL server binaries found: no postgres executable in ${missing} (the default), ` +
        `pg_config --bindir names ${clientOnly}, which has none, PG_BIN unset; pass --pg-bin-path DIR or set PG_BIN=DIR (DIR holding postgres and initdb)`,
    );
    expect(() => resolvePgBinDir({ env: { PATH: pathEmpty }, fallback: missing })).toThrow(/no usable pg_config on PATH, PG_BIN unset; pass --pg-bin-path DIR or set PG_BIN=DIR/);
  });

  it('the last default is PostgreSQL 15 in the Debian layout', () => {
    expect(DEFAULT_PG_BIN_DIR).toBe('/usr/lib/postgresql/15/bin');
  });
});
