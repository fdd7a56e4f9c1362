/** Table tests of the pure postgresql.conf / pg_hba.conf / conninfo / LSN functions. */
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StolonError } from '@stolon-ts/cluster';
import {
  MANAGED_PARAMETERS,
  buildConnInfo,
  clientSslParams,
  defaultHbaLines,
  expandDataRestoreCommand,
  formatLsn,
  parseBaseBackupProgress,
  parseClusterState,
  parseConfigErrors,
  parseControlData,
  parseLsn,
  parseRewindOutput,
  parseTimelineHistory,
  quoteParameter,
  recoveryParameters,
  renderHba,
  renderHbaLines,
  renderIdentConf,
  renderPgpassLine,
  renderPostgresqlConf,
  renderSynchronousStandbyNames,
  syncfsUsable,
  type HbaOptions,
  type SynchronousStandbysSpec,
} from './config.js';
import type { PgConfig, RecoveryConfig, StandbySettings } from './manager.js';
import { scramSha256Verifier } from './scram.js';

const baseConfig: PgConfig = {
  listenAddress: '10.0.0.5',
  port: 5433,
  parameters: {},
  maxStandbys: 20,
  additionalWalSenders: 5,
  synchronousStandbyNames: '',
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

describe('clientSslParams', () => {
  it.each([
    [undefined, { sslmode: 'prefer' }],
    [{ rootCert: '/d/ca.crt', mode: 'verify-full' as const }, { sslmode: 'verify-full', sslrootcert: '/d/ca.crt' }],
    [{ rootCert: '/d/ca.crt', mode: 'verify-ca' as const }, { sslmode: 'verify-ca', sslrootcert: '/d/ca.crt' }],
    [{ mode: 'require' as const }, { sslmode: 'require' }],
  ])('%j → %j', (peer, expected) => {
    expect(clientSslParams(peer)).toEqual(expected);
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
        wal_log_hints: "'on'",
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
    ['9. wal_log_hints is always on, usePgrewind or not', { usePgrewind: false }, 15, { wal_log_hints: "'on'" }],
    ['9b. a user cannot turn wal_log_hints off', { parameters: { wal_log_hints: 'off' } }, 12, { wal_log_hints: "'on'" }],
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
    const got = settings(renderPostgresqlConf(baseConfig, { mode: 'standby', standby }, 15));
    // libpq: password='p\'a\\ss w'; postgresql.conf then doubles ' and \.
    const conninfo =
      "application_name='stolon_abc' host='10.0.0.1' password='p\\'a\\\\ss w' port='5432' sslmode='prefer' user='repl'";
    expect(got.get('primary_conninfo')).toBe(quoteParameter(conninfo));
    expect(got.get('primary_slot_name')).toBe("'stolon_abc'");
    expect(got.get('recovery_target_timeline')).toBe("'latest'");
  });

  it('standby with a passfile: no password in postgresql.conf', () => {
    const conf = renderPostgresqlConf(baseConfig, { mode: 'standby', standby }, 15, { passfile: '/data/pg/stolon.pgpass' });
    expect(conf).not.toContain('ss w');
    expect(conf).not.toContain('password=');
    expect(settings(conf).get('primary_conninfo')).toBe(
      quoteParameter(
        "application_name='stolon_abc' host='10.0.0.1' passfile='/data/pg/stolon.pgpass' port='5432' sslmode='prefer' user='repl'",
      ),
    );
  });

  it('standby with a CA file: sslmode=verify-full and sslrootcert in primary_conninfo', () => {
    const conf = renderPostgresqlConf(baseConfig, { mode: 'standby', standby }, 15, { passfile: '/d/r.pgpass', peerSsl: { rootCert: '/d/pg-ca.crt', mode: 'verify-full' } });
    expect(settings(conf).get('primary_conninfo')).toBe(
      quoteParameter(
        "application_name='stolon_abc' host='10.0.0.1' passfile='/d/r.pgpass' port='5432' sslmode='verify-full' sslrootcert='/d/pg-ca.crt' user='repl'",
      ),
    );
  });

  it('server TLS files: ssl on with the keeper\'s files, user ssl settings dropped, the digest in a comment', () => {
    const user = { ssl: 'off', SSL_Cert_File: '/elsewhere.crt', ssl_key_file: '/elsewhere.key', ssl_ca_file: '/x', ssl_min_protocol_version: 'TLSv1.3' };
    const ssl = { certFile: '/d/pg-server.crt', keyFile: '/d/pg-server.key', caFile: '/d/pg-ca.crt', digest: '0123abcd' };
    const conf = renderPostgresqlConf({ ...baseConfig, parameters: user, ssl }, null, 15);
    const got = settings(conf);
    expect([got.get('ssl'), got.get('ssl_cert_file'), got.get('ssl_key_file'), got.get('ssl_ca_file')]).toEqual([
      "'on'",
      "'/d/pg-server.crt'",
      "'/d/pg-server.key'",
      "'/d/pg-ca.crt'",
    ]);
    expect(got.get('ssl_min_protocol_version')).toBe("'TLSv1.3'");
    expect(conf).not.toContain('/elsewhere');
    expect(conf).toContain('# TLS files (keeper --pg-ssl-*-file): digest 0123abcd');
    expect(renderPostgresqlConf({ ...baseConfig, parameters: user, ssl: { ...ssl, digest: 'ffff' } }, null, 15)).not.toBe(conf);
  });

  it('no server TLS files: the user\'s ssl settings are kept (Stolon users set them in pgParameters)', () => {
    const got = settings(renderPostgresqlConf({ ...baseConfig, parameters: { ssl: 'on', ssl_cert_file: 'server.crt' } }, null, 15));
    expect([got.get('ssl'), got.get('ssl_cert_file')]).toEqual(["'on'", "'server.crt'"]);
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

describe('renderSynchronousStandbyNames', () => {
  const on = (synchronousStandbys: string[], externalSynchronousStandbys: string[] = []): SynchronousStandbysSpec => ({
    synchronousReplication: true,
    synchronousStandbys,
    externalSynchronousStandbys,
  });
  it.each<[string, SynchronousStandbysSpec, string]>([
    ['1. synchronous replication off: empty, whatever the lists say', { ...on(['a1'], ['stolonfakestandby']), synchronousReplication: false }, ''],
    ['2. on with no standby at all: empty (asynchronous)', on([]), ''],
    ['3. one standby: its stolon_ name alone, no count', on(['1a2b3c4d']), 'stolon_1a2b3c4d'],
    ['4. two standbys: all must acknowledge, "2 (a,b)"', on(['a1', 'b2']), '2 (stolon_a1,stolon_b2)'],
    ['5. three standbys keep the spec order', on(['c3', 'a1', 'b2']), '3 (stolon_c3,stolon_a1,stolon_b2)'],
    ['6. only the fake standby: its name alone (commits block)', on([], ['stolonfakestandby']), 'stolonfakestandby'],
    ['7. standbys then external names, counted together', on(['a1'], ['stolonfakestandby']), '2 (stolon_a1,stolonfakestandby)'],
    ['8. a name that is not a plain identifier is double-quoted', on(['db-k1', 'b2']), '2 ("stolon_db-k1",stolon_b2)'],
    ['9. a double quote inside a name is doubled', on([], ['we"ird']), '"we""ird"'],
  ])('%s', (_title, spec, expected) => {
    expect(renderSynchronousStandbyNames(spec)).toBe(expected);
  });

  it('renders into postgresql.conf quoted as any value', () => {
    const conf = renderPostgresqlConf({ ...baseConfig, synchronousStandbyNames: renderSynchronousStandbyNames(on(['a1', 'b2'])) }, null, 15);
    expect(conf).toContain("synchronous_standby_names = '2 (stolon_a1,stolon_b2)'");
  });
});

describe('recoveryParameters / renderPostgresqlConf with a recovery mode', () => {
  const recoverySettings = (recovery: RecoveryConfig | null): Map<string, string> =>
    settings(renderPostgresqlConf(baseConfig, recovery, 15, { passfile: '/pg/stolon.pgpass' }));
  const RECOVERY_NAMES = [
    'primary_conninfo',
    'primary_slot_name',
    'recovery_min_apply_delay',
    'restore_command',
    'recovery_target',
    'recovery_target_lsn',
    'recovery_target_name',
    'recovery_target_time',
    'recovery_target_xid',
    'recovery_target_timeline',
    'recovery_target_action',
  ];

  it.each<[string, RecoveryConfig | null, Record<string, string>]>([
    ['1. primary: no recovery parameter at all', null, {}],
    [
      '2. internal standby: conninfo with passfile, slot, latest timeline',
      { mode: 'standby', standby },
      {
        primary_conninfo: quoteParameter(
          "application_name='stolon_abc' host='10.0.0.1' passfile='/pg/stolon.pgpass' port='5432' sslmode='prefer' user='repl'",
        ),
        primary_slot_name: "'stolon_abc'",
        recovery_target_timeline: "'latest'",
      },
    ],
    [
      '3. external standby, conninfo only: written verbatim, quoted for postgresql.conf',
      { mode: 'standby-external', primaryConninfo: "host=ext.example port=5432 user=repl password='p''w'" },
      {
        primary_conninfo: "'host=ext.example port=5432 user=repl password=''p''''w'''",
        recovery_target_timeline: "'latest'",
      },
    ],
    [
      '4. external standby with slot, apply delay and restore command',
      {
        mode: 'standby-external',
        primaryConninfo: 'host=ext',
        primarySlotName: 'standby_cluster',
        recoveryMinApplyDelay: '5min',
        restoreCommand: "cp '/archive/%f' %p",
      },
      {
        primary_conninfo: "'host=ext'",
        primary_slot_name: "'standby_cluster'",
        recovery_min_apply_delay: "'5min'",
        restore_command: "'cp ''/archive/%f'' %p'",
        recovery_target_timeline: "'latest'",
      },
    ],
    [
      '5. external standby: empty optional values are left out',
      { mode: 'standby-external', primaryConninfo: 'host=ext', primarySlotName: '', restoreCommand: undefined },
      { primary_conninfo: "'host=ext'", recovery_target_timeline: "'latest'" },
    ],
    [
      '6. PITR without a target: to the end of the archive, latest timeline',
      { mode: 'recovery', restoreCommand: 'cp /archive/%f %p' },
      { restore_command: "'cp /archive/%f %p'", recovery_target_timeline: "'latest'" },
    ],
    [
      '7. PITR to a time: target plus promote, no implicit timeline',
      { mode: 'recovery', restoreCommand: 'cp /a/%f %p', target: { recoveryTargetTime: '2024-01-02 03:04:05+00' } },
      {
        restore_command: "'cp /a/%f %p'",
        recovery_target_time: "'2024-01-02 03:04:05+00'",
        recovery_target_action: "'promote'",
      },
    ],
    [
      '8. PITR to an LSN on a given timeline',
      { mode: 'recovery', restoreCommand: 'x', target: { recoveryTargetLsn: '0/3000060', recoveryTargetTimeline: '2' } },
      {
        restore_command: "'x'",
        recovery_target_lsn: "'0/3000060'",
        recovery_target_timeline: "'2'",
        recovery_target_action: "'promote'",
      },
    ],
    [
      '9. PITR to a named restore point with a quote in the name',
      { mode: 'recovery', restoreCommand: 'x', target: { recoveryTargetName: "before 'upgrade'" } },
      { restore_command: "'x'", recovery_target_name: "'before ''upgrade'''", recovery_target_action: "'promote'" },
    ],
    [
      '10. PITR to the end of the backup (immediate)',
      { mode: 'recovery', restoreCommand: 'x', target: { recoveryTarget: 'immediate' } },
      { restore_command: "'x'", recovery_target: "'immediate'", recovery_target_action: "'promote'" },
    ],
    [
      '11. PITR to an xid',
      { mode: 'recovery', restoreCommand: 'x', target: { recoveryTargetXid: '1234' } },
      { restore_command: "'x'", recovery_target_xid: "'1234'", recovery_target_action: "'promote'" },
    ],
  ])('%s', (_title, recovery, expected) => {
    const got = recoverySettings(recovery);
    const present = Object.fromEntries(RECOVERY_NAMES.filter((n) => got.has(n)).map((n) => [n, got.get(n)]));
    expect(present).toEqual(expected);
  });

  it('writes the recovery parameters after every other one', () => {
    const conf = renderPostgresqlConf(baseConfig, { mode: 'recovery', restoreCommand: 'x' }, 15);
    const names = conf.split('\n').filter((l) => / = /.test(l)).map((l) => l.split(' = ')[0]);
    expect(names.slice(-2)).toEqual(['restore_command', 'recovery_target_timeline']);
  });

  it('user values for recovery parameters are ignored', () => {
    const conf = renderPostgresqlConf(
      { ...baseConfig, parameters: { restore_command: 'evil', recovery_min_apply_delay: '1h', recovery_target_action: 'shutdown' } },
      null,
      15,
    );
    expect(conf).not.toMatch(/evil|1h|shutdown/);
  });

  it('inlines the password without a passfile', () => {
    const [conninfo] = recoveryParameters({ mode: 'standby', standby });
    expect(conninfo?.[1]).toContain("password='p\\'a\\\\ss w'");
  });

  it.each<[string, RecoveryConfig, string]>([
    ['recovery without a restore command', { mode: 'recovery' }, 'pitrConfig.archiveRecoverySettings.restoreCommand'],
    ['recovery with an empty restore command', { mode: 'recovery', restoreCommand: '' }, 'pitrConfig.archiveRecoverySettings.restoreCommand'],
    [
      'two recovery targets',
      { mode: 'recovery', restoreCommand: 'x', target: { recoveryTargetLsn: '0/1', recoveryTargetTime: 'now' } },
      'pitrConfig.recoveryTargetSettings',
    ],
    [
      'recovery_target other than immediate',
      { mode: 'recovery', restoreCommand: 'x', target: { recoveryTarget: 'latest' } },
      'pitrConfig.recoveryTargetSettings.recoveryTarget',
    ],
  ])('rejects %s with CONFIG_INVALID', (_title, recovery, field) => {
    expect(() => renderPostgresqlConf(baseConfig, recovery, 15)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', field }),
    );
  });
});

describe('renderHbaLines / defaultHbaLines / renderHba', () => {
  const local = ['local all su peer map=stolon_keeper', 'local replication repl scram-sha-256'];
  const allMode = [
    'host all su 0.0.0.0/0 scram-sha-256',
    'host all su ::/0 scram-sha-256',
    'host replication repl 0.0.0.0/0 scram-sha-256',
    'host replication repl ::/0 scram-sha-256',
  ];
  const everyone = ['host all all 0.0.0.0/0 scram-sha-256', 'host all all ::/0 scram-sha-256'];
  const base: HbaOptions = {
    suUsername: 'su',
    replUsername: 'repl',
    mode: 'all',
    isPrimary: true,
    peerAddresses: [],
    userLines: null,
  };

  const reject = ['host all su all reject', 'host replication su all reject', 'host replication repl all reject'];
  it.each<[string, Partial<HbaOptions>, string[]]>([
    ['1. all, primary, null user lines: open to everyone with a password', {}, [...local, ...allMode, ...everyone]],
    ['2. all, standby: same su/repl access (mode all ignores the role)', { isPrimary: false }, [...local, ...allMode, ...everyone]],
    ['3. all, empty user lines: only su and repl', { userLines: [] }, [...local, ...allMode]],
    [
      '4. all, user lines appended verbatim; suCidrs and ownAddress ignored',
      { userLines: ['hostssl app app 10.0.0.0/8 scram-sha-256'], suCidrs: ['10.1.0.0/16'], ownAddress: '10.0.0.5' },
      [...local, ...allMode, 'hostssl app app 10.0.0.0/8 scram-sha-256'],
    ],
    [
      '5. strict primary: IPv4 peers get /32, sorted, su and repl per peer, scram for both; su and repl rejected from elsewhere',
      { mode: 'strict', peerAddresses: ['10.0.0.9', '10.0.0.2'], ownAddress: '10.0.0.5' },
      [
        ...local,
        'host all su 10.0.0.2/32 scram-sha-256',
        'host replication repl 10.0.0.2/32 scram-sha-256',
        'host all su 10.0.0.9/32 scram-sha-256',
        'host replication repl 10.0.0.9/32 scram-sha-256',
        ...reject,
        ...everyone,
      ],
    ],
    [
      '6. strict primary: IPv6 peers get /128, duplicates written once',
      { mode: 'strict', peerAddresses: ['fd00::2', 'fd00::2'], userLines: [] },
      [...local, 'host all su fd00::2/128 scram-sha-256', 'host replication repl fd00::2/128 scram-sha-256', ...reject],
    ],
    [
      '7. strict primary: a host name is written without a mask',
      { mode: 'strict', peerAddresses: ['keeper-1.db.svc'], userLines: [] },
      [...local, 'host all su keeper-1.db.svc scram-sha-256', 'host replication repl keeper-1.db.svc scram-sha-256', ...reject],
    ],
    [
      '8. strict standby: only local su/repl access, and the su CIDRs',
      { mode: 'strict', isPrimary: false, peerAddresses: ['10.0.0.2'], suCidrs: ['10.1.0.0/16'] },
      [...local, 'host all su 10.1.0.0/16 scram-sha-256', ...reject, ...everyone],
    ],
    ['9. internalOnly: no user lines, no defaults', { internalOnly: true, userLines: ['host all app 0.0.0.0/0 trust'] }, [...local, ...allMode]],
    ['10. internalOnly with null user lines: no defaults either', { internalOnly: true }, [...local, ...allMode]],
    [
      '11. internalOnly, strict primary: only the peers',
      { internalOnly: true, mode: 'strict', peerAddresses: ['10.0.0.2'] },
      [...local, 'host all su 10.0.0.2/32 scram-sha-256', 'host replication repl 10.0.0.2/32 scram-sha-256', ...reject],
    ],
    [
      '12. keepers (the default), standby: every keeper, itself included, sorted; then the su CIDRs in order; then the rejects before the user lines',
      {
        mode: 'keepers',
        isPrimary: false,
        peerAddresses: ['10.0.0.9', '10.0.0.2'],
        ownAddress: '10.0.0.5',
        suCidrs: ['10.2.0.0/16', 'fd00:1::/64'],
        userLines: ['host all all 0.0.0.0/0 scram-sha-256'],
      },
      [
        ...local,
        'host all su 10.0.0.2/32 scram-sha-256',
        'host replication repl 10.0.0.2/32 scram-sha-256',
        'host all su 10.0.0.5/32 scram-sha-256',
        'host replication repl 10.0.0.5/32 scram-sha-256',
        'host all su 10.0.0.9/32 scram-sha-256',
        'host replication repl 10.0.0.9/32 scram-sha-256',
        'host all su 10.2.0.0/16 scram-sha-256',
        'host all su fd00:1::/64 scram-sha-256',
        ...reject,
        'host all all 0.0.0.0/0 scram-sha-256',
      ],
    ],
    [
      '13. keepers, a single keeper: itself only',
      { mode: 'keepers', ownAddress: '127.0.0.1', userLines: [] },
      [...local, 'host all su 127.0.0.1/32 scram-sha-256', 'host replication repl 127.0.0.1/32 scram-sha-256', ...reject],
    ],
    [
      '13a. requireSsl: every TCP login without TLS rejected first, before the keepers, the su CIDRs and the user lines',
      { mode: 'keepers', ownAddress: '127.0.0.1', suCidrs: ['10.0.0.0/8'], userLines: ['host all all 0.0.0.0/0 trust'], requireSsl: true },
      [
        ...local,
        'hostnossl all all all reject',
        'hostnossl replication all all reject',
        'host all su 127.0.0.1/32 scram-sha-256',
        'host replication repl 127.0.0.1/32 scram-sha-256',
        'host all su 10.0.0.0/8 scram-sha-256',
        ...reject,
        'host all all 0.0.0.0/0 trust',
      ],
    ],
    [
      '13b. keepers: a wildcard advertise address (listen "*" reused) is left out, not refused',
      { mode: 'keepers', peerAddresses: ['0.0.0.0', '10.0.0.2'], ownAddress: '*', userLines: [] },
      [...local, 'host all su 10.0.0.2/32 scram-sha-256', 'host replication repl 10.0.0.2/32 scram-sha-256', ...reject],
    ],
    [
      '14. keepers, superuser and replication role the same: one reject for replication',
      { mode: 'keepers', replUsername: 'su', ownAddress: '127.0.0.1', userLines: [] },
      [
        'local all su peer map=stolon_keeper',
        'local replication su scram-sha-256',
        'host all su 127.0.0.1/32 scram-sha-256',
        'host replication su 127.0.0.1/32 scram-sha-256',
        'host all su all reject',
        'host replication su all reject',
      ],
    ],
  ])('%s', (_title, patch, expected) => {
    expect(renderHbaLines({ ...base, ...patch })).toEqual(expected);
  });

  it.each<[string, string[] | null, string[]]>([
    ['null user lines', null, [...local, ...allMode, ...everyone]],
    ['empty user lines', [], [...local, ...allMode]],
    ['user lines', ['host app app 10.0.0.0/8 scram-sha-256'], [...local, ...allMode, 'host app app 10.0.0.0/8 scram-sha-256']],
  ])('defaultHbaLines is mode all: %s', (_title, userLines, expected) => {
    expect(defaultHbaLines({ suUsername: 'su', replUsername: 'repl', userLines })).toEqual(expected);
  });

  it('quotes role names that are keywords or unusual', () => {
    const lines = defaultHbaLines({ suUsername: 'all', replUsername: 'Repl User', userLines: [] });
    expect(lines[0]).toBe('local all "all" peer map=stolon_keeper');
    expect(lines[1]).toBe('local replication "Repl User" scram-sha-256');
  });

  it('refuses a role name pg_hba.conf cannot hold', () => {
    expect(() => defaultHbaLines({ suUsername: 'a"b', replUsername: 'r', userLines: null })).toThrow(StolonError);
  });

  it.each([
    ['\n', 1],
    ['\r', 1],
  ])('refuses a user line containing %j, naming pgHBA[i]', (brk, i) => {
    const userLines = ['host all all 10.0.0.0/8 scram-sha-256', `host all all 0.0.0.0/0 trust${brk}local all all trust`];
    expect(() => renderHbaLines({ ...base, userLines })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', field: `pgHBA[${i}]` }),
    );
  });

  it.each(['10.0.0.1', 'all', '0.0.0.0/0 trust', '10.0.0.0/33', '::/129', 'samenet', ''])('refuses the su CIDR %j, naming suAllowedCIDRs', (cidr) => {
    expect(() => renderHbaLines({ ...base, mode: 'keepers', suCidrs: ['10.9.0.0/16', cidr] })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', field: 'suAllowedCIDRs' }),
    );
  });

  it.each(['10.0.0.0/8', 'host all', 'a;b', ''])('refuses the peer address %j', (address) => {
    expect(() => renderHbaLines({ ...base, mode: 'strict', peerAddresses: [address] })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', field: 'peerAddresses' }),
    );
  });

  it.each([
    [[], ''],
    [['a', 'b'], 'a\nb\n'],
  ])('renderHba(%j)', (lines, expected) => {
    expect(renderHba(lines)).toBe(expected);
  });
});

describe('parseTimelineHistory', () => {
  it.each<[string, string, { timelineID: number; switchPoint: number; reason: string }[]]>([
    ['empty file (timeline 1 has none)', '', []],
    [
      'one promotion',
      '1\t0/3000060\tno recovery target specified\n',
      [{ timelineID: 1, switchPoint: 0x3000060, reason: 'no recovery target specified' }],
    ],
    [
      'two switches, a PITR reason with spaces and quotes',
      '1\t0/3000060\tno recovery target specified\n\n2\t1/A0\tat restore point "before upgrade"\n',
      [
        { timelineID: 1, switchPoint: 0x3000060, reason: 'no recovery target specified' },
        { timelineID: 2, switchPoint: 2 ** 32 + 0xa0, reason: 'at restore point "before upgrade"' },
      ],
    ],
    ['comments and a missing reason', '# comment\n1\t0/10\n', [{ timelineID: 1, switchPoint: 16, reason: '' }]],
  ])('%s', (_title, text, expected) => {
    expect(parseTimelineHistory(text)).toEqual(expected);
  });

  it.each(['x\t0/1\treason', '1\tnot-an-lsn\treason', '0\t0/1\treason'])('rejects %j', (text) => {
    expect(() => parseTimelineHistory(text)).toThrow(StolonError);
  });
});

describe('parseControlData / parseClusterState', () => {
  const sample = [
    'pg_control version number:            1300',
    'Database system identifier:           7711325579355661522',
    'Database cluster state:               in production',
    'Latest checkpoint location:           0/2000060',
    "Latest checkpoint's TimeLineID:       1",
    "Latest checkpoint's oldestCommitTsXid:0",
    'Minimum recovery ending location:     0/0',
  ].join('\n');

  it('reads labels with spaces, values with spaces, and values glued to the colon', () => {
    const c = parseControlData(sample);
    expect(c.get('Database system identifier')).toBe('7711325579355661522');
    expect(c.get('Database cluster state')).toBe('in production');
    expect(c.get('Latest checkpoint location')).toBe('0/2000060');
    expect(c.get("Latest checkpoint's TimeLineID")).toBe('1');
    expect(c.get("Latest checkpoint's oldestCommitTsXid")).toBe('0');
  });

  it.each([
    ['shut down', 'shut down'],
    ['shut down in recovery', 'shut down in recovery'],
    ['in production', 'in production'],
    ['in crash recovery', 'in crash recovery'],
    ['in archive recovery', 'in archive recovery'],
    ['unrecognized status code', undefined],
    [undefined, undefined],
  ])('parseClusterState(%j)', (value, expected) => {
    expect(parseClusterState(value)).toBe(expected);
  });
});

describe('parseRewindOutput', () => {
  it.each([
    [
      'rewound',
      'pg_rewind: connected to server\npg_rewind: servers diverged at WAL location 0/3000060 on timeline 1\npg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1\npg_rewind: Done!\n',
      { divergedAt: 0x3000060, divergedTimeline: 1, rewound: true },
    ],
    [
      'nothing to do',
      'pg_rewind: servers diverged at WAL location 1/0 on timeline 2\npg_rewind: no rewind required\n',
      { divergedAt: 2 ** 32, divergedTimeline: 2, rewound: false },
    ],
    ['same timeline: no divergence line', 'pg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required\n', undefined],
  ])('%s', (_title, text, expected) => {
    expect(parseRewindOutput(text)).toEqual(expected);
  });
});

describe('parseBaseBackupProgress', () => {
  it.each([
    ['23025/23025 kB (100%), 1/1 tablespace', { doneBytes: 23025 * 1024, totalBytes: 23025 * 1024 }],
    ['    0/23025 kB (0%), 0/1 tablespace (/tmp/bb/global/pg_control      )', { doneBytes: 0, totalBytes: 23025 * 1024 }],
    ['30000/23025 kB (100%), 0/1 tablespace', { doneBytes: 30000 * 1024, totalBytes: 23025 * 1024 }],
    ['pg_basebackup: checkpoint completed', undefined],
    ['', undefined],
  ])('%j', (line, expected) => {
    expect(parseBaseBackupProgress(line)).toEqual(expected);
  });
});

describe('parseConfigErrors', () => {
  const prefix = '2026-11-23 11:21:42.307 UTC [25848] ';
  it.each<[string, string, ReturnType<typeof parseConfigErrors>]>([
    [
      'invalid values (postgres -C), summary line skipped',
      `${prefix}LOG:  invalid value for parameter "shared_buffers": "lots"\n${prefix}LOG:  invalid value for parameter "work_mem": "x"\n${prefix}FATAL:  configuration file "/d/postgresql.conf" contains errors`,
      [
        { parameter: 'shared_buffers', message: 'invalid value for parameter "shared_buffers": "lots"' },
        { parameter: 'work_mem', message: 'invalid value for parameter "work_mem": "x"' },
      ],
    ],
    [
      'unrecognized parameter: file position dropped',
      'LOG:  unrecognized configuration parameter "foo_bar" in file "/d/postgresql.conf" line 821\nFATAL:  configuration file "/d/postgresql.conf" contains errors',
      [{ parameter: 'foo_bar', message: 'unrecognized configuration parameter "foo_bar"' }],
    ],
    [
      'HINT and DETAIL appended',
      'LOG:  invalid value for parameter "wal_level": "foo"\nHINT:  Available values: minimal, replica, logical.',
      [{ parameter: 'wal_level', message: 'invalid value for parameter "wal_level": "foo" Available values: minimal, replica, logical.' }],
    ],
    [
      'out of range',
      'LOG:  0 8kB is outside the valid range for parameter "shared_buffers" (16 .. 1073741823)',
      [{ parameter: 'shared_buffers', message: '0 8kB is outside the valid range for parameter "shared_buffers" (16 .. 1073741823)' }],
    ],
    [
      'pg_hba.conf line at start',
      `${prefix}LOG:  invalid authentication method "bogus"\n${prefix}CONTEXT:  line 9 of configuration file "/d/pg_hba.conf"\n${prefix}FATAL:  could not load /d/pg_hba.conf`,
      [{ hbaLine: 9, message: 'invalid authentication method "bogus"' }],
    ],
    [
      'unrelated start failure: nothing',
      `${prefix}FATAL:  could not create shared memory segment: Cannot allocate memory\n${prefix}LOG:  database system is shut down`,
      [],
    ],
    ['duplicates reported once', 'LOG:  parameter "port" requires a numeric value\nLOG:  parameter "port" requires a numeric value', [{ parameter: 'port', message: 'parameter "port" requires a numeric value' }]],
  ])('%s', (_title, text, expected) => {
    expect(parseConfigErrors(text)).toEqual(expected);
  });
});

describe('expandDataRestoreCommand', () => {
  it.each([
    ['%d replaced', 'cp -a /backup/. %d', '/var/lib/pg/data', 'cp -a /backup/. /var/lib/pg/data'],
    ['every %d replaced', 'x %d %d', '/d', 'x /d /d'],
    ['%% is a percent sign', 'echo 100%% > %d/x', '/d', 'echo 100% > /d/x'],
    ['%%d is a literal %d', 'echo %%d', '/d', 'echo %d'],
    ['other sequences kept', 'date +%s', '/d', 'date +%s'],
    ['no %d: any path accepted', 'true', '/path with space', 'true'],
  ])('%s', (_title, command, pgData, expected) => {
    expect(expandDataRestoreCommand(command, pgData)).toBe(expected);
  });

  it.each(['/data dir', "/d'; rm -rf /", '/d$(x)'])('refuses %j as %d', (pgData) => {
    expect(() => expandDataRestoreCommand('cp -a /b/. %d', pgData)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', field: 'pitrConfig.dataRestoreCommand' }),
    );
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

describe('renderIdentConf', () => {
  it('maps each OS user once to the superuser in map stolon_keeper, quoting unusual names', () => {
    expect(renderIdentConf(['root', 'postgres', 'root'], 'postgres').split('\n').slice(1)).toEqual([
      'stolon_keeper root postgres',
      'stolon_keeper postgres postgres',
      '',
    ]);
    expect(renderIdentConf(['Some User'], 'all')).toContain('stolon_keeper "Some User" "all"\n');
  });

  it('refuses a name pg_ident.conf cannot hold', () => {
    expect(() => renderIdentConf(['a"b'], 'su')).toThrow(StolonError);
    expect(() => renderIdentConf(['root'], '')).toThrow(StolonError);
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

describe('recovery_init_sync_method default', () => {
  const base = { listenAddress: '127.0.0.1', port: 5432, parameters: {}, maxStandbys: 20, additionalWalSenders: 5, synchronousStandbyNames: '', hba: [] };
  const clone: RecoveryConfig = { mode: 'standby', standby };
  it('is syncfs on PostgreSQL ≥ 14 where syncfs is usable, for a primary and a standby (the first start after a clone included), unless the user sets it', () => {
    expect(renderPostgresqlConf(base, null, 15, { syncfs: true })).toContain("recovery_init_sync_method = 'syncfs'");
    expect(renderPostgresqlConf(base, clone, 15, { syncfs: true })).toContain("recovery_init_sync_method = 'syncfs'");
    const user = renderPostgresqlConf({ ...base, parameters: { recovery_init_sync_method: 'fsync' } }, clone, 15, { syncfs: true });
    expect(user).toContain("recovery_init_sync_method = 'fsync'");
    expect(user).not.toContain("'syncfs'");
    expect(renderPostgresqlConf(base, null, 13, { syncfs: true })).not.toContain('recovery_init_sync_method');
  });

  it("is PostgreSQL's own (fsync, not written) where syncfs is not usable; a user value is written as given", () => {
    expect(renderPostgresqlConf(base, clone, 15)).not.toContain('recovery_init_sync_method');
    expect(renderPostgresqlConf(base, clone, 15, { syncfs: false })).not.toContain('recovery_init_sync_method');
    expect(renderPostgresqlConf({ ...base, parameters: { recovery_init_sync_method: 'syncfs' } }, null, 15, { syncfs: false })).toContain(
      "recovery_init_sync_method = 'syncfs'",
    );
  });

  it('syncfs is usable on Linux 5.8 and later only', () => {
    expect(syncfsUsable('linux', '6.1.0-18-amd64')).toBe(true);
    expect(syncfsUsable('linux', '5.8.0')).toBe(true);
    expect(syncfsUsable('linux', '5.10.209-fc')).toBe(true);
    expect(syncfsUsable('linux', '5.4.0-150-generic')).toBe(false);
    expect(syncfsUsable('linux', '4.19.0')).toBe(false);
    expect(syncfsUsable('linux', 'weird')).toBe(false);
    expect(syncfsUsable('darwin', '23.1.0')).toBe(false);
    expect(syncfsUsable('freebsd', '14.0-RELEASE')).toBe(false);
  });
});

describe('wal_retrieve_retry_interval default', () => {
  const base = { listenAddress: '127.0.0.1', port: 5432, parameters: {}, maxStandbys: 20, additionalWalSenders: 5, synchronousStandbyNames: '', hba: [] };
  it('is 1s (PostgreSQL: 5s) unless the user sets it, so a standby reconnects to a restarted or new primary quickly', () => {
    expect(renderPostgresqlConf(base, null, 15)).toContain("wal_retrieve_retry_interval = '1s'");
    expect(renderPostgresqlConf(base, null, 13)).toContain("wal_retrieve_retry_interval = '1s'");
    const user = renderPostgresqlConf({ ...base, parameters: { wal_retrieve_retry_interval: '3s' } }, null, 15);
    expect(user).toContain("wal_retrieve_retry_interval = '3s'");
    expect(user.match(/wal_retrieve_retry_interval/g)).toHaveLength(1);
  });
  it('wal_receiver_status_interval is 1s (PostgreSQL: 10s) unless the user sets it, so a standby finds a connection to a vanished primary broken quickly', () => {
    expect(renderPostgresqlConf(base, null, 15)).toContain("wal_receiver_status_interval = '1s'");
    const user = renderPostgresqlConf({ ...base, parameters: { wal_receiver_status_interval: '5s' } }, null, 15);
    expect(user).toContain("wal_receiver_status_interval = '5s'");
    expect(user.match(/wal_receiver_status_interval/g)).toHaveLength(1);
  });
});
