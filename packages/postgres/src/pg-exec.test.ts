import { describe, expect, it } from 'vitest';
import { childEnv } from './pg-exec.js';

describe('childEnv', () => {
  const keeper = {
    PATH: '/opt/walg/bin:/usr/bin:/bin',
    HOME: '/root',
    USER: 'root',
    LANG: 'en_US.UTF-8',
    LANGUAGE: 'en',
    LC_ALL: 'C.UTF-8',
    LC_MESSAGES: 'C',
    TZ: 'Europe/Paris',
    TMPDIR: '/var/tmp',
    STKEEPER_PG_SU_PASSWORD: 'su-secret',
    STKEEPER_PG_REPL_PASSWORD: 'repl-secret',
    STKEEPER_MEMBER_TOKEN: 'token',
    STKEEPER_DATA_DIR: '/data',
    STOLON_FAILPOINTS_DIR: '/tmp/fp',
    PGPASSWORD: 'pw',
    PGDATA: '/elsewhere',
    AWS_SECRET_ACCESS_KEY: 'aws',
    KUBERNETES_SERVICE_HOST: '10.0.0.1',
    NODE_OPTIONS: '--require /x.js',
  };

  it('keeps only PATH (binaries first), HOME (given), locale, TZ and TMPDIR', () => {
    expect(childEnv(keeper, { binPath: '/usr/lib/postgresql/15/bin', home: '/var/lib/postgresql' })).toEqual({
      PATH: '/usr/lib/postgresql/15/bin:/opt/walg/bin:/usr/bin:/bin',
      HOME: '/var/lib/postgresql',
      LANG: 'en_US.UTF-8',
      LANGUAGE: 'en',
      LC_ALL: 'C.UTF-8',
      LC_MESSAGES: 'C',
      TZ: 'Europe/Paris',
      TMPDIR: '/var/tmp',
    });
  });

  it('gives a default PATH when the keeper has none', () => {
    expect(childEnv({ STKEEPER_PG_SU_PASSWORD: 'x' }, { binPath: '/pg/bin', home: '/' })).toEqual({
      PATH: '/pg/bin:/usr/local/bin:/usr/bin:/bin',
      HOME: '/',
    });
  });
});
