/** Table tests of the pure postgresql.conf / pg_hba.conf / conninfo / LSN functions. */
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StolonError } from '@stolon-ts/cluster';
import {
  MANAGED_PARAMETERS,
  buildConnInfo,
  defaultHbaLines,
  formatLsn,
  parseLsn,
  quoteParameter,
  renderHba,
  renderPgpassLine,
  renderPostgresqlConf,
} from './config.js';
import type { PgConfig, StandbySettings } from './manager.js';
import { scramSha256Verifier } from './scram.js';

const baseConfig: PgConfig = {
  listenAddress: '10.0.0.5',
  port: 5433,
  parameters: {},
  maxStandbys: 20,
  additionalWalSenders: 5,
  synchronousStandbyNames: '',
  usePgrewind: false,
  hba: [],
};

const standby: StandbySettings = {
  primary: { host: '10.0.0.1', port: 5432, user: 'repl', password: "p'a\\ss w" },
  applicationName: 'stolon_abc',
  slotName: 'stolon_abc',
};

/** postgresql.conf as name → raw (quoted) value; later lines win, as in PostgreSQL. */
function settings(conf: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of conf.split('\n')) {
    const m = /^([A-Za-z_.]+) = (.*)$/.exec(line);
    if (m !== null) {
      out.set((m[1] ?? '').toLowerCase(), m[2] ?? '');
    }
  }
  return out;
}

describe('quoteParameter', () => {
  it.each([
    ['plain value', 'on', "'on'"],
    ['empty string', '', "''"],
    ['single quote doubled', "it's", "'it''s'"],
    ['backslash doubled', 'C:\\dir', "'C:\\\\dir'"],
    ['quote and backslash', "\\'", "'\\\\'''"],
    ['newline escaped', 'a\nb', "'a\\nb'"],
    ['spaces kept', 'a b  c', "'a b  c'"],
  ])('%s', (_title, value, expected) => {
    expect(quoteParameter(value)).toBe(expected);
  });
});

describe('buildConnInfo', () => {
  it.each([
    ['keys sorted', { user: 'u', host: 'h', port: '1' }, "host='h' port='1' user='u'"],
    ['quote escaped', { password: "a'b" }, "password='a\\'b'"],
    ['backslash escaped', { password: 'a\\b' }, "password='a\\\\b'"],
    ['space kept inside quotes', { application_name: 'a b' }, "application_name='a b'"],
    ['empty value', { password: '' }, "password=''"],
    ['no params', {}, ''],
  ])('%s', (_title, params, expected) => {
    expect(buildConnInfo(params)).toBe(expected);
  });

  it('rejects a keyword that could inject another one', () => {
    expect(() => buildConnInfo({ 'host=x port': '1' })).toThrow(StolonError);
  });
});

describe('renderPgpassLine', () => {
  it.each([
    ['plain', 'repl', 'secret', '*:*:*:repl:secret\n'],
    ['colon and backslash escaped', 'a:b', 'p:w\\d', '*:*:*:a\\:b:p\\:w\\\\d\n'],
  ])('%s', (_title, user, password, expected) => {
    expect(renderPgpassLine(user, password)).toBe(expected);
  });

  it('refuses a newline', () => {
    expect(() => renderPgpassLine('u', 'a\nb')).toThrow(/newline/);
  });
});

describe('renderPostgresqlConf', () => {
  it.each<[string, Partial<PgConfig>, number, Record<string, string | undefined>]>([
    [
      '1. managed parameters with defaults (pg 15)',
      {},
      15,
      {
        listen_addresses: "'10.0.0.5'",
        port: "'5433'",
        unix_socket_directories: "'/tmp'",
        wal_level: "'replica'",
        hot_standby: "'on'",
        wal_keep_size: "'128MB'",
        wal_keep_segments: undefined,
        max_replication_slots: "'20'",
        max_wal_senders: "'47'",
        wal_log_hints: undefined,
        synchronous_standby_names: "''",
        allow_alter_system: undefined,
        primary_conninfo: undefined,
      },
    ],
    [
      '2. max_wal_senders = 2 × maxStandbys + 2 + additionalWalSenders',
      { maxStandbys: 3, additionalWalSenders: 0 },
      15,
      { max_wal_senders: "'8'", max_replication_slots: "'3'" },
    ],
    [
      '3. managed names override user values, whatever their case',
      { parameters: { port: '1', Listen_Addresses: '*', max_wal_senders: '1', hot_standby: 'off', work_mem: '8MB' } },
      15,
      { port: "'5433'", listen_addresses: "'10.0.0.5'", max_wal_senders: "'47'", hot_standby: "'on'", work_mem: "'8MB'" },
    ],
    ['4. user wal_level logical is kept', { parameters: { wal_level: 'logical' } }, 15, { wal_level: "'logical'" }],
    ['5. user wal_level minimal is replaced', { parameters: { wal_level: 'minimal' } }, 15, { wal_level: "'replica'" }],
    ['6. user wal_keep_size kept', { parameters: { wal_keep_size: '1GB' } }, 15, { wal_keep_size: "'1GB'" }],
    [
      '7. pg 12 uses wal_keep_segments, at least 8',
      { parameters: { wal_keep_segments: '4' } },
      12,
      { wal_keep_segments: "'8'", wal_keep_size: undefined },
    ],
    ['8. pg 12 keeps a larger wal_keep_segments', { parameters: { wal_keep_segments: '64' } }, 12, { wal_keep_segments: "'64'" }],
    ['9. usePgrewind sets wal_log_hints', { usePgrewind: true }, 15, { wal_log_hints: "'on'" }],
    [
      '10. synchronous_standby_names is quoted',
      { synchronousStandbyNames: '2 (stolon_a,"stolon_b")' },
      15,
      { synchronous_standby_names: "'2 (stolon_a,\"stolon_b\")'" },
    ],
    ['11. pg 17 forbids ALTER SYSTEM', {}, 17, { allow_alter_system: "'off'" }],
    [
      '12. include directives and file locations from users are dropped',
      { parameters: { include: '/etc/evil.conf', hba_file: '/etc/hba', primary_conninfo: 'host=evil' } },
      15,
      { include: undefined, hba_file: undefined, primary_conninfo: undefined },
    ],
    ['13. user values with quotes are escaped', { parameters: { search_path: "'$user', public" } }, 15, { search_path: "'''$user'', public'" }],
  ])('%s', (_title, patch, major, expected) => {
    const conf = renderPostgresqlConf({ ...baseConfig, ...patch }, null, major);
    const got = settings(conf);
    for (const [name, value] of Object.entries(expected)) {
      expect(got.get(name), name).toBe(value);
    }
  });

  it('writes user parameters before the managed ones, each managed name once', () => {
    const conf = renderPostgresqlConf({ ...baseConfig, parameters: { work_mem: '8MB', port: '1' } }, null, 15);
    const names = conf
      .split('\n')
      .filter((l) => / = /.test(l))
      .map((l) => l.split(' = ')[0]);
    expect(names[0]).toBe('work_mem');
    expect(names.filter((n) => n === 'port')).toHaveLength(1);
  });

  it('every managed name is ignored as a user parameter', () => {
    const parameters = Object.fromEntries(MANAGED_PARAMETERS.map((n) => [n, 'user-value']));
    const conf = renderPostgresqlConf({ ...baseConfig, parameters }, null, 15);
    expect(conf).not.toContain('user-value');
  });

  it('uses the given socket directory', () => {
    const conf = renderPostgresqlConf(baseConfig, null, 15, { socketDir: "/var/run/it's" });
    expect(settings(conf).get('unix_socket_directories')).toBe("'/var/run/it''s'");
  });

  it('standby with the password inline: conninfo escaped for libpq, then for postgresql.conf', () => {
    const got = settings(renderPostgresqlConf(baseConfig, standby, 15));
    // libpq: password='p\'a\\ss w'; postgresql.conf then doubles ' and \.
    const conninfo =
      "application_name='stolon_abc' host='10.0.0.1' password='p\\'a\\\\ss w' port='5432' sslmode='prefer' user='repl'";
    expect(got.get('primary_conninfo')).toBe(quoteParameter(conninfo));
    expect(got.get('primary_slot_name')).toBe("'stolon_abc'");
    expect(got.get('recovery_target_timeline')).toBe("'latest'");
  });

  it('standby with a passfile: no password in postgresql.conf', () => {
    const conf = renderPostgresqlConf(baseConfig, standby, 15, { passfile: '/data/pg/stolon.pgpass' });
    expect(conf).not.toContain('ss w');
    expect(conf).not.toContain('password=');
    expect(settings(conf).get('primary_conninfo')).toBe(
      quoteParameter(
        "application_name='stolon_abc' host='10.0.0.1' passfile='/data/pg/stolon.pgpass' port='5432' sslmode='prefer' user='repl'",
      ),
    );
  });

  it.each([
    ['name with a newline', { parameters: { 'a\nport': '1' } }],
    ['name with an equals sign', { parameters: { 'a=b': '1' } }],
    ['negative maxStandbys', { maxStandbys: -1 }],
  ])('rejects %s with CONFIG_INVALID', (_title, patch) => {
    expect(() => renderPostgresqlConf({ ...baseConfig, ...patch }, null, 15)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});

describe('defaultHbaLines / renderHba', () => {
  const head = [
    'local all su scram-sha-256',
    'local replication repl scram-sha-256',
    'host all su 0.0.0.0/0 scram-sha-256',
    'host all su ::0/0 scram-sha-256',
    'host replication repl 0.0.0.0/0 scram-sha-256',
    'host replication repl ::0/0 scram-sha-256',
  ];
  it.each<[string, string[] | null, string[]]>([
    ['null user lines: open to everyone with a password', null, [...head, 'host all all 0.0.0.0/0 scram-sha-256', 'host all all ::0/0 scram-sha-256']],
    ['empty user lines: only su and repl', [], head],
    ['user lines appended verbatim', ['hostssl app app 10.0.0.0/8 scram-sha-256'], [...head, 'hostssl app app 10.0.0.0/8 scram-sha-256']],
  ])('%s', (_title, userLines, expected) => {
    expect(defaultHbaLines({ suUsername: 'su', replUsername: 'repl', userLines })).toEqual(expected);
  });

  it('quotes role names that are keywords or unusual', () => {
    const lines = defaultHbaLines({ suUsername: 'all', replUsername: 'Repl User', userLines: [] });
    expect(lines[0]).toBe('local all "all" scram-sha-256');
    expect(lines[1]).toBe('local replication "Repl User" scram-sha-256');
  });

  it('refuses a role name pg_hba.conf cannot hold', () => {
    expect(() => defaultHbaLines({ suUsername: 'a"b', replUsername: 'r', userLines: null })).toThrow(StolonError);
  });

  it.each([
    [[], ''],
    [['a', 'b'], 'a\nb\n'],
  ])('renderHba(%j)', (lines, expected) => {
    expect(renderHba(lines)).toBe(expected);
  });
});

describe('parseLsn / formatLsn', () => {
  it.each([
    ['0/0', 0],
    ['0/1', 1],
    ['1/0', 2 ** 32],
    ['16/B374D848', 0x16b374d848],
    ['0/FFFFFFFF', 2 ** 32 - 1],
    ['1FFFFF/FFFFFFFF', Number.MAX_SAFE_INTEGER],
  ])('%s ↔ %d', (text, value) => {
    expect(parseLsn(text)).toBe(value);
    expect(formatLsn(value)).toBe(text);
  });

  it('accepts lower case', () => {
    expect(parseLsn('16/b374d848')).toBe(0x16b374d848);
  });

  it.each([
    ['above 2^53 (FFFFFFFF/FFFFFFFF)', 'FFFFFFFF/FFFFFFFF'],
    ['just above 2^53 - 1', '200000/0'],
    ['no slash', '16B374D848'],
    ['too many digits', '123456789/0'],
    ['empty', ''],
  ])('parseLsn rejects %s', (_title, text) => {
    expect(() => parseLsn(text)).toThrow(StolonError);
  });

  it.each([-1, 0.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN])('formatLsn rejects %d', (n) => {
    expect(() => formatLsn(n)).toThrow(StolonError);
  });
});

describe('scramSha256Verifier', () => {
  it('has the pg_authid shape and depends on the salt', () => {
    const salt = Buffer.alloc(16, 1);
    const v = scramSha256Verifier('secret', salt);
    expect(v).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(v).toBe(scramSha256Verifier('secret', salt));
    expect(v).not.toBe(scramSha256Verifier('secret', Buffer.alloc(16, 2)));
    expect(v).not.toContain('secret');
  });

  it('matches the RFC 7677 exchange (user "user", password "pencil")', () => {
    const v = scramSha256Verifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
    const m = /^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$([^:]+):(.+)$/.exec(v);
    expect(m).not.toBeNull();
    const storedKey = Buffer.from(m?.[1] ?? '', 'base64');
    const serverKey = Buffer.from(m?.[2] ?? '', 'base64');
    const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    const authMessage =
      `n=user,r=rOprNGfwEbeRWgbNEkqO,r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=${nonce}`;
    // The server's proof of knowing ServerKey...
    expect(createHmac('sha256', serverKey).update(authMessage).digest('base64')).toBe(
      '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
    );
    // ...and the client's proof checked against StoredKey, as the server does.
    const signature = createHmac('sha256', storedKey).update(authMessage).digest();
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const clientKey = Buffer.from(proof.map((b, i) => b ^ (signature[i] ?? 0)));
    expect(createHash('sha256').update(clientKey).digest().equals(storedKey)).toBe(true);
  });
});
