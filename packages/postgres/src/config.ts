/**
 * Pure rendering of the files the keeper owns in PGDATA (STYLE.md rule 12): postgresql.conf with
 * the managed parameters (Stolon `createPGParameters`, reference §5.6), pg_hba.conf (Stolon
 * `generateHBA`, §5.7), libpq connection strings and password files, and LSN conversions.
 * No I/O here: everything is a function of its arguments, covered by table tests.
 */
import { StolonError } from '@stolon-ts/cluster';
import type { PgConfig, StandbySettings } from './manager.js';

/**
 * Parameter names the manager always sets or clears itself; a user value for any of them
 * (compared case-insensitively, as PostgreSQL does) is dropped from postgresql.conf.
 *
 * Besides Stolon's list (§5.6) this holds the recovery parameters (they are written only for a
 * standby, from {@link StandbySettings}), the file-location parameters and include directives
 * (any of them would let pg_hba.conf or postgresql.conf be read from somewhere the keeper does
 * not own), and `allow_alter_system` (forced off on PostgreSQL ≥ 17).
 *
 * `wal_level` and `wal_keep_size` are managed too but honour a user value, see
 * {@link renderPostgresqlConf}, so they are not listed here.
 *
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html
 */
export const MANAGED_PARAMETERS: readonly string[] = Object.freeze([
  'listen_addresses',
  'port',
  'unix_socket_directories',
  'hot_standby',
  'wal_keep_segments',
  'max_replication_slots',
  'max_wal_senders',
  'wal_log_hints',
  'synchronous_standby_names',
  'allow_alter_system',
  'primary_conninfo',
  'primary_slot_name',
  'restore_command',
  'recovery_target',
  'recovery_target_action',
  'recovery_target_inclusive',
  'recovery_target_lsn',
  'recovery_target_name',
  'recovery_target_time',
  'recovery_target_timeline',
  'recovery_target_xid',
  'data_directory',
  'config_file',
  'hba_file',
  'ident_file',
  'include',
  'include_dir',
  'include_if_exists',
]);

const MANAGED_SET: ReadonlySet<string> = new Set(MANAGED_PARAMETERS);

/** A GUC name as postgresql.conf accepts it (custom `ext.name` included). */
const PARAMETER_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/;

/**
 * Quotes a value for postgresql.conf: wraps it in single quotes, doubling single quotes and
 * doubling backslashes (the configuration lexer treats `\` as an escape inside quoted strings).
 * Newlines and carriage returns, which cannot appear literally inside a quoted value, are
 * written as the `\n` and `\r` escapes.
 *
 * @example quoteParameter("it's") === "'it''s'"
 * @see https://www.postgresql.org/docs/current/config-setting.html#CONFIG-SETTING-CONFIGURATION-FILE
 */
export function quoteParameter(value: string): string {
  const escaped = value
    .replace(/\\/g, '\\\\')
    .replace(/'/g, "''")
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r');
  return `'${escaped}'`;
}

/**
 * Builds a libpq keyword/value connection string: `key='value'` pairs sorted by key, every value
 * single-quoted with `\` and `'` backslash-escaped, so the result does not depend on the order
 * of `params` and survives any value (spaces, quotes, empty strings).
 *
 * @param params keyword → value, e.g. `{ host: '10.0.0.1', port: '5432', user: 'repl' }`.
 * @throws StolonError `CONFIG_INVALID` when a keyword is not a plain identifier.
 * @see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-KEYWORD-VALUE
 */
export function buildConnInfo(params: Readonly<Record<string, string>>): string {
  return Object.keys(params)
    .sort()
    .map((key) => {
      if (!/^[a-z_]+$/.test(key)) {
        throw new StolonError('CONFIG_INVALID', `invalid libpq connection keyword ${JSON.stringify(key)}`, {
          field: key,
        });
      }
      const value = (params[key] ?? '').replace(/\\/g, '\\\\').replace(/'/g, "\\'");
      return `${key}='${value}'`;
    })
    .join(' ');
}

/**
 * One line of a libpq password file matching any host, port and database for `user`:
 * `*:*:*:<user>:<password>` with `\` and `:` backslash-escaped, newline-terminated.
 *
 * @throws StolonError `CONFIG_INVALID` when the user or password contains a newline (a password
 *   file cannot represent it).
 * @see https://www.postgresql.org/docs/current/libpq-pgpass.html
 */
export function renderPgpassLine(user: string, password: string): string {
  if (/[\r\n]/.test(user) || /[\r\n]/.test(password)) {
    throw new StolonError(
      'CONFIG_INVALID',
      'a PostgreSQL user name or password contains a newline, which a password file cannot hold; choose another password',
    );
  }
  const esc = (s: string): string => s.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  return `*:*:*:${esc(user)}:${esc(password)}\n`;
}

/** Paths and version-dependent choices {@link renderPostgresqlConf} needs besides the config. */
export interface RenderOptions {
  /**
   * Directory for the Unix-domain socket (`unix_socket_directories`). The socket path
   * (`<dir>/.s.PGSQL.<port>`) must stay under ~100 bytes.
   * @default '/tmp' (Stolon's choice)
   */
  readonly socketDir?: string;
  /**
   * For a standby: absolute path of a libpq password file holding the replication password.
   * When set, `primary_conninfo` references it with `passfile=` and contains no password;
   * when absent the password is written into `primary_conninfo` (the file is 0600 either way).
   */
  readonly passfile?: string;
}

/**
 * Renders the whole postgresql.conf. User parameters come first (sorted by name, managed names
 * dropped — see {@link MANAGED_PARAMETERS}), then the managed ones:
 *
 * | parameter | value |
 * |---|---|
 * | `listen_addresses`, `port` | from `config` |
 * | `unix_socket_directories` | `options.socketDir` (default `/tmp`) |
 * | `wal_level` | `replica`, or `logical` if the user asked for it |
 * | `hot_standby` | `on` |
 * | `wal_keep_size` (pg ≥ 13) | the user value, else `128MB` |
 * | `wal_keep_segments` (pg < 13) | max(8, user value when an integer) |
 * | `max_replication_slots` | `maxStandbys` |
 * | `max_wal_senders` | 2 × `maxStandbys` + 2 + `additionalWalSenders` |
 * | `wal_log_hints` | `on` when `usePgrewind` (absent otherwise) |
 * | `synchronous_standby_names` | `config.synchronousStandbyNames` |
 * | `allow_alter_system` (pg ≥ 17) | `off` |
 * | standby only: `primary_conninfo`, `primary_slot_name`, `recovery_target_timeline` | from `standby`, `latest` |
 *
 * `primary_conninfo` holds `application_name`, `host`, `port`, `sslmode=prefer`, `user` and
 * either `passfile` or `password` (see {@link RenderOptions.passfile}).
 *
 * @param pgVersionMajor major version of the binaries, e.g. 15.
 * @throws StolonError `CONFIG_INVALID` (with `field` = `pgParameters.<name>`) for a parameter
 *   name postgresql.conf cannot hold, and for a numeric setting that is not a non-negative integer.
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html
 * @see https://www.postgresql.org/docs/current/warm-standby.html#STANDBY-SERVER-SETUP
 */
export function renderPostgresqlConf(
  config: PgConfig,
  standby: StandbySettings | null,
  pgVersionMajor: number,
  options: RenderOptions = {},
): string {
  for (const [field, n] of [
    ['maxStandbys', config.maxStandbys],
    ['additionalWalSenders', config.additionalWalSenders],
    ['port', config.port],
  ] as const) {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new StolonError('CONFIG_INVALID', `${field} must be a non-negative integer, got ${n}`, { field });
    }
  }

  const user = new Map<string, { name: string; value: string }>();
  for (const name of Object.keys(config.parameters).sort()) {
    if (!PARAMETER_NAME.test(name)) {
      throw new StolonError(
        'CONFIG_INVALID',
        `pgParameters has an invalid parameter name ${JSON.stringify(name)}; use a PostgreSQL setting name`,
        { field: `pgParameters.${name}` },
      );
    }
    const value = config.parameters[name] ?? '';
    user.set(name.toLowerCase(), { name, value });
  }

  const lines: string[] = [
    '# Generated by the stolon-ts keeper; any change here is overwritten.',
    '# Set parameters through the cluster spec (pgParameters) instead.',
  ];
  for (const [lower, { name, value }] of user) {
    if (MANAGED_SET.has(lower) || lower === 'wal_level' || lower === 'wal_keep_size') {
      continue;
    }
    lines.push(`${name} = ${quoteParameter(value)}`);
  }

  lines.push('', '# Managed by stolon-ts');
  const managed: [string, string][] = [
    ['listen_addresses', config.listenAddress],
    ['port', String(config.port)],
    ['unix_socket_directories', options.socketDir ?? '/tmp'],
    // `logical` is a superset of `replica`, so a user asking for it keeps it; anything lower
    // (minimal) would make streaming replication impossible.
    ['wal_level', user.get('wal_level')?.value.toLowerCase() === 'logical' ? 'logical' : 'replica'],
    ['hot_standby', 'on'],
  ];
  if (pgVersionMajor >= 13) {
    managed.push(['wal_keep_size', user.get('wal_keep_size')?.value ?? '128MB']);
  } else {
    const wanted = Number(user.get('wal_keep_segments')?.value);
    managed.push(['wal_keep_segments', String(Number.isSafeInteger(wanted) ? Math.max(8, wanted) : 8)]);
  }
  managed.push(
    ['max_replication_slots', String(config.maxStandbys)],
    ['max_wal_senders', String(2 * config.maxStandbys + 2 + config.additionalWalSenders)],
  );
  if (config.usePgrewind) {
    managed.push(['wal_log_hints', 'on']);
  }
  managed.push(['synchronous_standby_names', config.synchronousStandbyNames]);
  if (pgVersionMajor >= 17) {
    // postgresql.auto.conf is emptied on every write, but ALTER SYSTEM could still change a
    // setting until then; PostgreSQL 17 can refuse it outright.
    managed.push(['allow_alter_system', 'off']);
  }
  if (standby !== null) {
    const conn: Record<string, string> = {
      application_name: standby.applicationName,
      host: standby.primary.host,
      port: String(standby.primary.port),
      sslmode: 'prefer',
      user: standby.primary.user,
    };
    if (options.passfile !== undefined) {
      conn['passfile'] = options.passfile;
    } else {
      conn['password'] = standby.primary.password;
    }
    managed.push(
      ['primary_conninfo', buildConnInfo(conn)],
      ['primary_slot_name', standby.slotName],
      // Follow a promoted primary onto its new timeline instead of stopping at the old one.
      ['recovery_target_timeline', 'latest'],
    );
  }
  for (const [name, value] of managed) {
    lines.push(`${name} = ${quoteParameter(value)}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Renders pg_hba.conf from complete lines (one rule per line, trailing newline).
 * @see https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
export function renderHba(lines: readonly string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * The pg_hba.conf rules Stolon generates with `defaultSUReplAccessMode: all` (reference §5.7),
 * with `scram-sha-256` instead of `md5`: local and any-address access for the superuser (all
 * databases) and the replication user (replication), then `userLines` when non-null (an empty
 * array means "no other access"), else access for everyone from any address.
 *
 * @param opts.suUsername superuser role name; `opts.replUsername` replication role name.
 * @param opts.userLines spec.pgHBA: `null` for the defaults, otherwise the lines verbatim.
 * @throws StolonError `CONFIG_INVALID` for an empty role name or one containing `"` or a newline.
 * @see https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
export function defaultHbaLines(opts: {
  readonly suUsername: string;
  readonly replUsername: string;
  readonly userLines: readonly string[] | null;
}): string[] {
  const su = hbaName(opts.suUsername);
  const repl = hbaName(opts.replUsername);
  const lines = [
    `local all ${su} scram-sha-256`,
    `local replication ${repl} scram-sha-256`,
    `host all ${su} 0.0.0.0/0 scram-sha-256`,
    `host all ${su} ::0/0 scram-sha-256`,
    `host replication ${repl} 0.0.0.0/0 scram-sha-256`,
    `host replication ${repl} ::0/0 scram-sha-256`,
  ];
  if (opts.userLines !== null) {
    lines.push(...opts.userLines);
  } else {
    lines.push('host all all 0.0.0.0/0 scram-sha-256', 'host all all ::0/0 scram-sha-256');
  }
  return lines;
}

/**
 * A role name as a pg_hba.conf field: verbatim when it is a plain lower-case name that is not a
 * keyword, else double-quoted (which also stops `all`, `+group` or `@file` being interpreted).
 * pg_hba.conf has no escape for a double quote, so such names are refused.
 */
function hbaName(name: string): string {
  if (name === '' || /["\r\n]/.test(name)) {
    throw new StolonError('CONFIG_INVALID', `role name ${JSON.stringify(name)} cannot be written in pg_hba.conf`);
  }
  if (/^[a-z_][a-z0-9_]*$/.test(name) && !['all', 'sameuser', 'samerole', 'replication'].includes(name)) {
    return name;
  }
  return `"${name}"`;
}

/** Largest LSN that {@link parseLsn} can return exactly: `1FFFFF/FFFFFFFF` (2^53 − 1 bytes, 8 PiB). */
export const MAX_SAFE_LSN = Number.MAX_SAFE_INTEGER;

/**
 * Parses a PostgreSQL LSN (`pg_lsn` text, `X/Y` with X and Y up to 8 hex digits) into a byte
 * position `X × 2^32 + Y`.
 *
 * @example parseLsn('16/B374D848') === 0x16B374D848
 * @throws StolonError `INTERNAL` when the text is not an LSN, or when it is above
 *   {@link MAX_SAFE_LSN} (a JavaScript number cannot hold it exactly; that needs 8 PiB of WAL).
 * @see https://www.postgresql.org/docs/current/datatype-pg-lsn.html
 */
export function parseLsn(text: string): number {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (m === null) {
    throw new StolonError('INTERNAL', `not a PostgreSQL LSN: ${JSON.stringify(text)}`);
  }
  const hi = parseInt(m[1] ?? '0', 16);
  const lo = parseInt(m[2] ?? '0', 16);
  const value = hi * 2 ** 32 + lo;
  if (value > MAX_SAFE_LSN) {
    throw new StolonError('INTERNAL', `LSN ${text} is above ${formatLsn(MAX_SAFE_LSN)}, the largest exact number`);
  }
  return value;
}

/**
 * Formats a byte position as PostgreSQL prints an LSN: upper-case hex `X/Y`, no padding.
 *
 * @example formatLsn(0) === '0/0'
 * @throws StolonError `INTERNAL` for a negative, fractional or unsafe number.
 * @see https://www.postgresql.org/docs/current/datatype-pg-lsn.html
 */
export function formatLsn(pos: number): string {
  if (!Number.isSafeInteger(pos) || pos < 0) {
    throw new StolonError('INTERNAL', `not an LSN byte position: ${pos}`);
  }
  const hi = Math.floor(pos / 2 ** 32);
  const lo = pos % 2 ** 32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}
