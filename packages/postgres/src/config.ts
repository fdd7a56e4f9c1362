/**
 * Pure rendering of the files the keeper owns in PGDATA: postgresql.conf with the managed
 * parameters and the recovery settings of a standby or a restore, pg_hba.conf, libpq connection
 * strings and password files, LSN conversions, and the parsers of what the PostgreSQL tools print
 * (pg_controldata, pg_rewind, pg_basebackup progress, configuration errors, timeline history
 * files). The rules follow Stolon's keeper (`createPGParameters` and `generateHBA` in Stolon's
 * cmd/keeper/cmd/keeper.go). No I/O here: everything is a function of its arguments, covered by
 * table tests (docs/design.md#pure-decisions).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { StolonError, isCidr, type TimelineHistoryEntry } from '@stolon-ts/cluster';
import type { DbClusterState, PgConfig, RecoveryConfig } from './manager.js';

/**
 * Parameter names the manager always sets or clears itself; a user value for any of them
 * (compared case-insensitively, as PostgreSQL does) is dropped from postgresql.conf.
 *
 * Besides the parameters Stolon's keeper forces (the first nine below) this holds the recovery
 * parameters (they are written only from a {@link RecoveryConfig}), the file-location parameters
 * and include directives
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
  'recovery_min_apply_delay',
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

/** Set by the manager, a user value dropped, only when the keeper has TLS files ({@link PgConfig.ssl}). */
const SSL_PARAMETERS: ReadonlySet<string> = new Set(['ssl', 'ssl_cert_file', 'ssl_key_file', 'ssl_ca_file']);

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
   * For an internal standby (`mode: 'standby'`): absolute path of a libpq password file holding
   * the replication password. When set, `primary_conninfo` references it with `passfile=` and
   * contains no password; when absent the password is written into `primary_conninfo` (the
   * file is 0600 either way). Ignored in the other recovery modes.
   */
  readonly passfile?: string;
  /**
   * For an internal standby: how `primary_conninfo` verifies the primary's certificate, see
   * {@link clientSslParams}; absent: `sslmode=prefer`.
   */
  readonly peerSsl?: PeerSsl | undefined;
  /**
   * Whether `recovery_init_sync_method = syncfs` may be the default (PostgreSQL ≥ 14, when
   * pgParameters does not set it): see {@link syncfsUsable}. @default false (PostgreSQL's fsync)
   */
  readonly syncfs?: boolean;
}

/**
 * Whether `recovery_init_sync_method = syncfs` is usable and safe on this system: Linux only
 * (PostgreSQL offers the value only where syncfs(2) exists, and refuses to start with it
 * elsewhere), and a kernel of 5.8 or later, since before 5.8 syncfs() does not report writeback
 * errors, so PostgreSQL could start recovery on files that never reached the disk.
 * @param platform `process.platform`
 * @param kernelRelease `os.release()`, e.g. `6.1.0-18-amd64`
 * @see https://www.postgresql.org/docs/15/runtime-config-error-handling.html#GUC-RECOVERY-INIT-SYNC-METHOD
 */
export function syncfsUsable(platform: string, kernelRelease: string): boolean {
  if (platform !== 'linux') {
    return false;
  }
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (m === null) {
    return false;
  }
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 8);
}

/**
 * How a keeper's connections to another keeper use TLS: `verify-full` (the certificate chains to
 * the CA file `rootCert` — PEM, absolute, readable by PostgreSQL's OS user — and names the address
 * connected to), `verify-ca` (the chain only), or `require` (encrypted, not verified; no CA).
 */
export type PeerSsl =
  | { readonly mode: 'verify-full' | 'verify-ca'; readonly rootCert: string }
  | { readonly mode: 'require' };

/**
 * The libpq TLS settings of the keepers' own connections to another keeper (a standby's
 * walreceiver, pg_basebackup, pg_rewind): with {@link PeerSsl}, its `sslmode` (`verify-full`:
 * encrypted, the server's certificate chains to the CA and names the host connected to;
 * `verify-ca`: the chain only; both with `sslrootcert`; `require`: encrypted, unverified);
 * without, `sslmode=prefer` (encrypted when the server offers TLS, unverified).
 * @returns libpq keywords → values, e.g. `{ sslmode: 'verify-full', sslrootcert: '/data/pg-ca.crt' }`.
 * @see https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION
 */
export function clientSslParams(peer: PeerSsl | undefined): Record<string, string> {
  if (peer === undefined) {
    return { sslmode: 'prefer' };
  }
  return peer.mode === 'require' ? { sslmode: 'require' } : { sslmode: peer.mode, sslrootcert: peer.rootCert };
}

/** The `recovery_target*` settings, in {@link RecoveryTarget} order, with their names. */
const RECOVERY_TARGET_PARAMETERS = [
  ['recoveryTarget', 'recovery_target'],
  ['recoveryTargetLsn', 'recovery_target_lsn'],
  ['recoveryTargetName', 'recovery_target_name'],
  ['recoveryTargetTime', 'recovery_target_time'],
  ['recoveryTargetXid', 'recovery_target_xid'],
  ['recoveryTargetTimeline', 'recovery_target_timeline'],
] as const;

/** A value that is set: `undefined` and `''` both mean "leave the PostgreSQL default". */
function isSet(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}

/**
 * The recovery parameters of `recovery` (PostgreSQL ≥ 12 reads them from postgresql.conf; the
 * signal file that activates them is written by the manager), in file order.
 *
 * | mode | parameters |
 * |---|---|
 * | `standby` | `primary_conninfo` (built, see {@link RenderOptions.passfile}), `primary_slot_name`, `restore_command` when set, `recovery_target_timeline = 'latest'` |
 * | `standby-external` | `primary_conninfo` verbatim, `primary_slot_name`, `recovery_min_apply_delay`, `restore_command` when set, `recovery_target_timeline = 'latest'` |
 * | `recovery` with a target | `restore_command`, the given `recovery_target*` values, `recovery_target_action = 'promote'` |
 * | `recovery` without a target | `restore_command`, `recovery_target_timeline = 'latest'` |
 *
 * @throws StolonError `CONFIG_INVALID` when `recovery` mode has no `restoreCommand` (PostgreSQL
 *   refuses recovery.signal without one), when more than one of `recoveryTarget`,
 *   `recoveryTargetLsn`, `recoveryTargetName`, `recoveryTargetTime`, `recoveryTargetXid` is set
 *   (PostgreSQL refuses to start), or when `recoveryTarget` is not `immediate`.
 * @see https://www.postgresql.org/docs/current/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html#RUNTIME-CONFIG-REPLICATION-STANDBY
 */
export function recoveryParameters(recovery: RecoveryConfig, options: RenderOptions = {}): [string, string][] {
  switch (recovery.mode) {
    case 'standby': {
      const { standby } = recovery;
      const conn: Record<string, string> = {
        application_name: standby.applicationName,
        host: standby.primary.host,
        port: String(standby.primary.port),
        ...clientSslParams(options.peerSsl),
        user: standby.primary.user,
      };
      if (options.passfile !== undefined) {
        conn['passfile'] = options.passfile;
      } else {
        conn['password'] = standby.primary.password;
      }
      return [
        ['primary_conninfo', buildConnInfo(conn)],
        ['primary_slot_name', standby.slotName],
        ...(isSet(recovery.restoreCommand) ? [['restore_command', recovery.restoreCommand] as [string, string]] : []),
        // Follow a promoted primary onto its new timeline instead of stopping at the old one.
        ['recovery_target_timeline', 'latest'],
      ];
    }
    case 'standby-external': {
      const out: [string, string][] = [['primary_conninfo', recovery.primaryConninfo]];
      if (isSet(recovery.primarySlotName)) {
        out.push(['primary_slot_name', recovery.primarySlotName]);
      }
      if (isSet(recovery.recoveryMinApplyDelay)) {
        out.push(['recovery_min_apply_delay', recovery.recoveryMinApplyDelay]);
      }
      if (isSet(recovery.restoreCommand)) {
        out.push(['restore_command', recovery.restoreCommand]);
      }
      out.push(['recovery_target_timeline', 'latest']);
      return out;
    }
    case 'recovery': {
      if (!isSet(recovery.restoreCommand)) {
        throw new StolonError(
          'CONFIG_INVALID',
          'point-in-time recovery needs a restore command (PostgreSQL refuses recovery.signal without restore_command); set pitrConfig.archiveRecoverySettings.restoreCommand',
          { field: 'pitrConfig.archiveRecoverySettings.restoreCommand' },
        );
      }
      const out: [string, string][] = [['restore_command', recovery.restoreCommand]];
      const target = recovery.target;
      if (target === undefined) {
        out.push(['recovery_target_timeline', 'latest']);
        return out;
      }
      const stops = RECOVERY_TARGET_PARAMETERS.filter(([key]) => key !== 'recoveryTargetTimeline' && isSet(target[key]));
      if (stops.length > 1) {
        throw new StolonError(
          'CONFIG_INVALID',
          `pitrConfig.recoveryTargetSettings sets ${stops.map(([k]) => k).join(' and ')}; PostgreSQL accepts at most one recovery target, keep one`,
          { field: 'pitrConfig.recoveryTargetSettings' },
        );
      }
      if (isSet(target.recoveryTarget) && target.recoveryTarget !== 'immediate') {
        throw new StolonError(
          'CONFIG_INVALID',
          `pitrConfig.recoveryTargetSettings.recoveryTarget must be "immediate", got ${JSON.stringify(target.recoveryTarget)}`,
          { field: 'pitrConfig.recoveryTargetSettings.recoveryTarget' },
        );
      }
      for (const [key, name] of RECOVERY_TARGET_PARAMETERS) {
        const value = target[key];
        if (isSet(value)) {
          out.push([name, value]);
        }
      }
      // The default (pause) would leave the instance read-only until someone resumes it.
      out.push(['recovery_target_action', 'promote']);
      return out;
    }
  }
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
 * | `wal_log_hints` | always `on` (Stolon: only with usePgrewind), see below |
 * | `synchronous_standby_names` | `config.synchronousStandbyNames` |
 * | `allow_alter_system` (pg ≥ 17) | `off` |
 * | `ssl`, `ssl_cert_file`, `ssl_key_file`, `ssl_ca_file` | with `config.ssl` only: `on` and its files (user values dropped) |
 * | recovery parameters | from `recovery`, see {@link recoveryParameters} |
 *
 * `wal_log_hints` is always on: pg_rewind needs it (or data checksums) on the *target* for the
 * whole time since the timelines diverged, and whether a node will ever need a rewind is only
 * known after the fact — turning it on with `usePgrewind` would be too late for the WAL already
 * written. The cost is a full-page image in WAL the first time a page's hint bits change after
 * a checkpoint, the same as with data checksums.
 *
 * @param recovery `null` for a primary; otherwise the recovery mode and its settings.
 * @param pgVersionMajor major version of the binaries, e.g. 15.
 * @throws StolonError `CONFIG_INVALID` (with `field` = `pgParameters.<name>`) for a parameter
 *   name postgresql.conf cannot hold, for a numeric setting that is not a non-negative integer,
 *   and for the recovery settings {@link recoveryParameters} rejects.
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html
 * @see https://www.postgresql.org/docs/current/app-pgrewind.html
 */
export function renderPostgresqlConf(
  config: PgConfig,
  recovery: RecoveryConfig | null,
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
    if (MANAGED_SET.has(lower) || lower === 'wal_level' || lower === 'wal_keep_size' || (config.ssl !== undefined && SSL_PARAMETERS.has(lower))) {
      continue;
    }
    lines.push(`${name} = ${quoteParameter(value)}`);
  }
  const defaults: string[] = [];
  if (pgVersionMajor >= 14 && options.syncfs === true && !user.has('recovery_init_sync_method')) {
    // Default, not managed: after a crash or a fresh clone (a base backup's control file says "in
    // production") PostgreSQL fsyncs every file of PGDATA before recovery, although pg_basebackup
    // has just synced them; one syncfs() per filesystem is much faster (0.2-0.45 s → 6 ms on a
    // 1 GiB clone in bench:clone). Every start, not only the first after a clone: a crash
    // restart gains the same, and on Linux ≥ 5.8 (options.syncfs, see syncfsUsable) syncfs()
    // reports writeback errors as fsync() does. A user value wins; one PostgreSQL cannot take
    // (syncfs where it has no syncfs) is refused by the `postgres -C` check of writeConfig.
    // @see https://www.postgresql.org/docs/15/runtime-config-error-handling.html
    defaults.push("recovery_init_sync_method = 'syncfs'");
  }
  if (!user.has('wal_retrieve_retry_interval')) {
    // Default, not managed: a standby whose primary went away (a crash restarted in place, a
    // failover) tries to stream again only after this long; PostgreSQL's 5 s became ~5 s of
    // blocked commits after a primary crash with synchronousReplication (measured by the chaos
    // suite), because the restarted primary waits for its synchronous standby to reconnect.
    // 1 s still keeps a restore_command from running more than once a second. A user value wins.
    // @see https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-WAL-RETRIEVE-RETRY-INTERVAL
    defaults.push("wal_retrieve_retry_interval = '1s'");
  }
  if (!user.has('wal_receiver_status_interval')) {
    // Default, not managed: a standby whose primary vanished without closing the connection (a
    // network partition, then the primary fenced and restarted) notices only when it sends on that
    // connection again and gets a reset; PostgreSQL's 10 s status interval kept a synchronous
    // standby away ~4 s after the heal, and commits waited for it (chaos
    // freezeStoreAndPartitionPrimary). One status message a second is nothing. A user value wins.
    // @see https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-WAL-RECEIVER-STATUS-INTERVAL
    defaults.push("wal_receiver_status_interval = '1s'");
  }
  if (defaults.length > 0) {
    lines.push('', '# Defaults of stolon-ts (pgParameters may override)', ...defaults);
  }

  lines.push('', '# Managed by stolon-ts');
  if (config.ssl !== undefined) {
    // New certificate files change this file, so the keeper reloads and PostgreSQL reads them.
    lines.push(`# TLS files (keeper --pg-ssl-*-file): digest ${config.ssl.digest.replace(/[^0-9a-f]/g, '')}`);
  }
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
    // Always: see the doc comment (pg_rewind needs it from before the divergence).
    ['wal_log_hints', 'on'],
    ['synchronous_standby_names', config.synchronousStandbyNames],
  );
  if (pgVersionMajor >= 17) {
    // postgresql.auto.conf is emptied on every write, but ALTER SYSTEM could still change a
    // setting until then; PostgreSQL 17 can refuse it outright.
    managed.push(['allow_alter_system', 'off']);
  }
  if (config.ssl !== undefined) {
    managed.push(['ssl', 'on'], ['ssl_cert_file', config.ssl.certFile], ['ssl_key_file', config.ssl.keyFile]);
    if (config.ssl.caFile !== undefined) {
      managed.push(['ssl_ca_file', config.ssl.caFile]);
    }
  }
  if (recovery !== null) {
    managed.push(...recoveryParameters(recovery, options));
  }
  for (const [name, value] of managed) {
    lines.push(`${name} = ${quoteParameter(value)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The synchronous replication settings of a DB spec that {@link renderSynchronousStandbyNames} reads. */
export interface SynchronousStandbysSpec {
  readonly synchronousReplication: boolean;
  /** DB uids; each standby connects with application_name `stolon_<uid>`. */
  readonly synchronousStandbys: readonly string[];
  /** Names used verbatim, e.g. the sentinel's `stolonfakestandby` that never connects. */
  readonly externalSynchronousStandbys: readonly string[];
}

/** A name as synchronous_standby_names accepts it unquoted; anything else is double-quoted. */
const PLAIN_STANDBY_NAME = /^[A-Za-z_][A-Za-z0-9_$]*$/;

function standbyName(name: string): string {
  return PLAIN_STANDBY_NAME.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/**
 * The value of `synchronous_standby_names` for a DB spec, as Stolon's keeper writes it:
 * `stolon_<uid>` for each synchronous standby, then the external names, in the spec's order;
 * more than one name → `N (a,b,…)` with N the number of names, so *every* listed standby must
 * acknowledge a commit (deliberately not `FIRST k`/`ANY k`: with fewer, a commit could be
 * acknowledged by a standby the sentinel does not know to be in sync); one name → that name;
 * none, or synchronous replication off → `''` (asynchronous).
 * Names that are not plain identifiers are double-quoted (Stolon writes them bare).
 *
 * @example renderSynchronousStandbyNames({ synchronousReplication: true, synchronousStandbys: ['a1', 'b2'],
 *   externalSynchronousStandbys: [] }) === '2 (stolon_a1,stolon_b2)'
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-SYNCHRONOUS-STANDBY-NAMES
 */
export function renderSynchronousStandbyNames(spec: SynchronousStandbysSpec): string {
  if (!spec.synchronousReplication) {
    return '';
  }
  const names = [...spec.synchronousStandbys.map((uid) => `stolon_${uid}`), ...spec.externalSynchronousStandbys].map(standbyName);
  return names.length > 1 ? `${names.length} (${names.join(',')})` : (names[0] ?? '');
}

/**
 * Renders pg_hba.conf from complete lines (one rule per line, trailing newline).
 * @see https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
export function renderHba(lines: readonly string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** Options of {@link renderHbaLines}. */
export interface HbaOptions {
  /** Superuser role name. */
  readonly suUsername: string;
  /** Replication role name. */
  readonly replUsername: string;
  /**
   * spec.defaultSUReplAccessMode: `all` lets the superuser and the replication role in from any
   * address on every node; `strict` only on the primary, and only from the other keepers'
   * addresses (`peerAddresses`); `keepers` on every node, from `peerAddresses` and `ownAddress`.
   */
  readonly mode: 'all' | 'strict' | 'keepers';
  /** Whether this node is (or is about to become) the primary; matters for `strict` only. */
  readonly isPrimary: boolean;
  /**
   * `strict` and `keepers`: advertised addresses of the other DBs (IPv4, IPv6 or host names),
   * written sorted and deduplicated; an IPv4 address gets `/32`, an IPv6 one `/128`, a host name
   * no mask.
   */
  readonly peerAddresses: readonly string[];
  /** `keepers` only: this node's own advertised address, admitted like a peer's. */
  readonly ownAddress?: string;
  /**
   * `strict` and `keepers`: spec.suAllowedCIDRs, CIDR ranges the superuser may also log in from
   * (on every node), written in the given order.
   * @default []
   */
  readonly suCidrs?: readonly string[];
  /** spec.pgHBA: `null` for the defaults (everyone with a password), otherwise lines verbatim. */
  readonly userLines: readonly string[] | null;
  /**
   * The keeper's `--pg-ssl-required`: every TCP login without TLS is rejected, first thing after
   * the `local` lines, whoever and whatever the lines below say.
   * @default false
   */
  readonly requireSsl?: boolean;
  /**
   * Only the superuser/replication rules, no user lines nor defaults: the "internal only"
   * state Stolon uses to keep clients out of a primary that has not got its synchronous
   * standbys yet (see `internalOnlyHba` in the keeper's plan.ts).
   * @default false
   */
  readonly internalOnly?: boolean;
}

/**
 * The pg_hba.conf rules (as Stolon's keeper `generateHBA`, plus mode `keepers`), with
 * `scram-sha-256` everywhere but the keeper's own socket login. pg_hba.conf is read top down and
 * the first matching line decides:
 *
 * 1. `local all <su> peer map=stolon_keeper` ({@link KEEPER_IDENT_MAP}: the OS users that own
 *    PGDATA, see {@link renderIdentConf}; the keeper's local connections so need no password
 *    and survive a password rotation) and `local replication <repl> scram-sha-256`, always; with
 *    `requireSsl`, then `hostnossl all all all reject` and `hostnossl replication all all reject`;
 * 2. mode `all`: `host all <su>` and `host replication <repl>` from `0.0.0.0/0` and `::/0`;
 *    mode `strict`: on the primary only, for each peer address A (sorted),
 *    `host all <su> A scram-sha-256` then `host replication <repl> A scram-sha-256` (Stolon
 *    used `/32` for IPv6 addresses too, and the replication auth method for the superuser —
 *    both bugs, not copied);
 *    mode `keepers`: the same on every node, for the peers and `ownAddress` (wildcards such as
 *    `*` or `0.0.0.0`, which name no host, are left out);
 * 3. modes `strict` and `keepers`: `host all <su> C scram-sha-256` for each of `suCidrs`, then
 *    `host all <su> all reject`, `host replication <su> all reject` and
 *    `host replication <repl> all reject`, so that neither role gets in from elsewhere through
 *    the lines below (`host all all 0.0.0.0/0` matches the superuser too; Stolon's strict mode
 *    let it in that way);
 * 4. unless `internalOnly`: `userLines` verbatim when non-null (`[]` = nobody else), else
 *    `host all all 0.0.0.0/0 scram-sha-256` and `host all all ::/0 scram-sha-256`.
 *
 * @throws StolonError `CONFIG_INVALID` for a role name pg_hba.conf cannot hold (empty, `"` or
 *   a newline), a peer or own address that is neither an IP address nor a host name (`field`
 *   `peerAddresses`), a range of `suCidrs` that is not a CIDR (`field` `suAllowedCIDRs`), and a
 *   user line containing a newline (`field` `pgHBA[i]`).
 * @see https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
export function renderHbaLines(opts: HbaOptions): string[] {
  const su = hbaName(opts.suUsername);
  const repl = hbaName(opts.replUsername);
  const lines = [`local all ${su} peer map=${KEEPER_IDENT_MAP}`, `local replication ${repl} scram-sha-256`];
  if (opts.requireSsl === true) {
    lines.push('hostnossl all all all reject', 'hostnossl replication all all reject');
  }
  if (opts.mode === 'all') {
    lines.push(
      `host all ${su} 0.0.0.0/0 scram-sha-256`,
      `host all ${su} ::/0 scram-sha-256`,
      `host replication ${repl} 0.0.0.0/0 scram-sha-256`,
      `host replication ${repl} ::/0 scram-sha-256`,
    );
  } else {
    const keepers =
      opts.mode === 'keepers' ? [...opts.peerAddresses, ...(opts.ownAddress !== undefined ? [opts.ownAddress] : [])] : opts.isPrimary ? opts.peerAddresses : [];
    // A wildcard advertise address (a listen address reused as it) names no host: nothing to admit.
    for (const address of [...new Set(keepers.filter((a) => !WILDCARD_ADDRESSES.has(a)).map(hbaAddress))].sort()) {
      lines.push(`host all ${su} ${address} scram-sha-256`, `host replication ${repl} ${address} scram-sha-256`);
    }
    for (const cidr of opts.suCidrs ?? []) {
      if (!isCidr(cidr)) {
        throw new StolonError('CONFIG_INVALID', `suAllowedCIDRs: ${JSON.stringify(cidr)} is not a CIDR address range such as "10.0.0.0/8"`, {
          field: 'suAllowedCIDRs',
        });
      }
      lines.push(`host all ${su} ${cidr} scram-sha-256`);
    }
    lines.push(`host all ${su} all reject`, `host replication ${su} all reject`);
    if (repl !== su) {
      lines.push(`host replication ${repl} all reject`);
    }
  }
  if (opts.internalOnly === true) {
    return lines;
  }
  if (opts.userLines === null) {
    lines.push('host all all 0.0.0.0/0 scram-sha-256', 'host all all ::/0 scram-sha-256');
    return lines;
  }
  opts.userLines.forEach((line, i) => {
    if (/[\r\n]/.test(line)) {
      throw new StolonError(
        'CONFIG_INVALID',
        `pgHBA[${i}] contains a line break; write one pg_hba.conf rule per array element`,
        { field: `pgHBA[${i}]` },
      );
    }
    lines.push(line);
  });
  return lines;
}

/**
 * Name of the user name map (pg_ident.conf) of the superuser's `local` line of pg_hba.conf: peer
 * authentication through it lets the OS users of {@link renderIdentConf} log in as the superuser
 * over the Unix socket without a password.
 * @see https://www.postgresql.org/docs/current/auth-username-maps.html
 */
const KEEPER_IDENT_MAP = 'stolon_keeper';

/**
 * pg_ident.conf: one line `stolon_keeper <os user> <superuser>` for each of `osUsers`
 * (deduplicated, in order), names double-quoted when they are not plain lower-case identifiers.
 * With the `local all <su> peer map=stolon_keeper` line of {@link renderHbaLines}, those OS users
 * (the keeper's own, root when it runs as root, and the OS user that runs PostgreSQL — who can
 * read and change PGDATA anyway) connect over the Unix socket as the superuser without a
 * password, as Debian's packaging does for `postgres`.
 * @throws StolonError `CONFIG_INVALID` for a name pg_ident.conf cannot hold (empty, `"`, a newline).
 * @see https://www.postgresql.org/docs/current/auth-username-maps.html
 * @see https://www.postgresql.org/docs/current/auth-peer.html
 */
export function renderIdentConf(osUsers: readonly string[], suUsername: string): string {
  const role = identName(suUsername);
  const lines = [...new Set(osUsers)].map((u) => `${KEEPER_IDENT_MAP} ${identName(u)} ${role}`);
  return `# Written by the stolon-ts keeper; replaced whenever it writes pg_hba.conf.\n${lines.join('\n')}\n`;
}

function identName(name: string): string {
  if (name === '' || /["\r\n]/.test(name)) {
    throw new StolonError('CONFIG_INVALID', `name ${JSON.stringify(name)} cannot be written in pg_ident.conf`);
  }
  return /^[a-z_][a-z0-9_]*$/.test(name) && name !== 'all' ? name : `"${name}"`;
}

/** Listen addresses that mean "every interface": never a keeper's own address in pg_hba.conf. */
const WILDCARD_ADDRESSES: ReadonlySet<string> = new Set(['*', '0.0.0.0', '::']);

/**
 * {@link renderHbaLines} with mode `all` (Stolon's default `defaultSUReplAccessMode`), kept for
 * callers that do not know about the access mode.
 *
 * @param opts.suUsername superuser role name; `opts.replUsername` replication role name.
 * @param opts.userLines spec.pgHBA: `null` for the defaults, otherwise the lines verbatim.
 * @throws StolonError `CONFIG_INVALID` as {@link renderHbaLines}.
 * @see https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
export function defaultHbaLines(opts: {
  readonly suUsername: string;
  readonly replUsername: string;
  readonly userLines: readonly string[] | null;
}): string[] {
  return renderHbaLines({ ...opts, mode: 'all', isPrimary: true, peerAddresses: [] });
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

/** A peer address as a pg_hba.conf address field: `/32` for IPv4, `/128` for IPv6, host names bare. */
function hbaAddress(address: string): string {
  if (isIPv4(address)) {
    return `${address}/32`;
  }
  if (isIPv6(address)) {
    return `${address}/128`;
  }
  // A host name (pg_hba.conf resolves it both ways); anything else could inject fields.
  if (/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(address)) {
    return address;
  }
  throw new StolonError(
    'CONFIG_INVALID',
    `peer address ${JSON.stringify(address)} is neither an IP address nor a host name; check the keepers' --pg-advertise-address`,
    { field: 'peerAddresses' },
  );
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

/**
 * Parses a timeline history file (`pg_wal/0000000N.history`): one line per ancestor timeline,
 * `<parent tli>\t<switch LSN>\t<reason>`; blank lines and `#` comments are skipped, as
 * PostgreSQL does. Timeline N's file lists timelines 1 … N−1 with the LSN where each ended.
 *
 * @example parseTimelineHistory('1\t0/3000060\tno recovery target specified\n')
 *   // → [{ timelineID: 1, switchPoint: 0x3000060, reason: 'no recovery target specified' }]
 * @throws StolonError `INTERNAL` for a line that is not of that form.
 * @see https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-TIMELINES
 */
export function parseTimelineHistory(text: string): TimelineHistoryEntry[] {
  const out: TimelineHistoryEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const m = /^(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)(?:\s+(.*))?$/.exec(line);
    const tli = Number(m?.[1]);
    if (m === null || !Number.isSafeInteger(tli) || tli < 1) {
      throw new StolonError('INTERNAL', `not a timeline history line: ${JSON.stringify(raw)}`);
    }
    out.push({ timelineID: tli, switchPoint: parseLsn(m[2] ?? ''), reason: m[3] ?? '' });
  }
  return out;
}

/**
 * Parses `pg_controldata` output (run with `LC_ALL=C`) into label → value, e.g.
 * `'Database cluster state'` → `'in production'`, `'Latest checkpoint location'` → `'0/2000060'`.
 * @see https://www.postgresql.org/docs/current/app-pgcontroldata.html
 */
export function parseControlData(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([^:]+):\s*(.*?)\s*$/.exec(line);
    if (m !== null) {
      out.set(m[1] ?? '', m[2] ?? '');
    }
  }
  return out;
}

const CLUSTER_STATES: readonly DbClusterState[] = [
  'starting up',
  'shut down',
  'shut down in recovery',
  'shutting down',
  'in crash recovery',
  'in archive recovery',
  'in production',
];

/**
 * The `Database cluster state` of {@link parseControlData} as a {@link DbClusterState};
 * `undefined` for anything else (e.g. `unrecognized status code`).
 */
export function parseClusterState(value: string | undefined): DbClusterState | undefined {
  return CLUSTER_STATES.find((s) => s === value);
}

/** What {@link parseRewindOutput} finds in pg_rewind's messages. */
export interface RewindOutput {
  /** LSN (bytes) where the timelines of source and target diverged. */
  readonly divergedAt: number;
  /** Timeline (of the target's history) on which they diverged. */
  readonly divergedTimeline: number;
  /** False when pg_rewind printed `no rewind required` (the target had not written past it). */
  readonly rewound: boolean;
}

/**
 * Finds `servers diverged at WAL location X/Y on timeline N` (and `no rewind required`) in
 * pg_rewind's stderr; `undefined` when the divergence line is missing.
 * @see https://www.postgresql.org/docs/current/app-pgrewind.html
 */
export function parseRewindOutput(text: string): RewindOutput | undefined {
  const m = /servers diverged at WAL location ([0-9A-Fa-f]+\/[0-9A-Fa-f]+) on timeline (\d+)/.exec(text);
  if (m === null) {
    return undefined;
  }
  return {
    divergedAt: parseLsn(m[1] ?? ''),
    divergedTimeline: Number(m[2]),
    rewound: !/no rewind required/.test(text),
  };
}

/**
 * Parses one pg_basebackup `--progress` line (`  1234/5678 kB (21%), 0/1 tablespace (…)`)
 * into bytes; `undefined` for any other line. The total is the server's estimate and the done
 * figure can exceed it.
 * @see https://www.postgresql.org/docs/current/app-pgbasebackup.html
 */
export function parseBaseBackupProgress(line: string): { doneBytes: number; totalBytes: number } | undefined {
  const m = /^\s*(\d+)\/(\d+) kB \(\d+%\)/.exec(line);
  if (m === null) {
    return undefined;
  }
  return { doneBytes: Number(m[1]) * 1024, totalBytes: Number(m[2]) * 1024 };
}

/** One configuration problem found in PostgreSQL's messages, see {@link parseConfigErrors}. */
export interface ConfigProblem {
  /** The parameter the message names, as PostgreSQL wrote it (usually lower case). */
  readonly parameter?: string;
  /** 1-based line of pg_hba.conf the message is about. */
  readonly hbaLine?: number;
  /** PostgreSQL's message, with its DETAIL/HINT lines appended, without file positions. */
  readonly message: string;
}

/**
 * Extracts configuration problems from server messages — the stderr of `postgres -C` or the
 * server log of a failed start — in the default `lc_messages = C` wording:
 *
 * - any message naming `parameter "x"` (invalid value, out of range, unrecognized, needs a
 *   Boolean…) → `{ parameter: 'x' }`;
 * - any message whose CONTEXT is `line N of configuration file ".../pg_hba.conf"` →
 *   `{ hbaLine: N }`.
 *
 * Lines may carry any `log_line_prefix`; the summaries `configuration file … contains errors`
 * and `could not load pg_hba.conf` are not problems themselves.
 * @see https://www.postgresql.org/docs/current/config-setting.html
 */
export function parseConfigErrors(text: string): ConfigProblem[] {
  interface Entry {
    message: string;
    extra: string[];
    context: string;
  }
  const entries: Entry[] = [];
  let current: Entry | undefined;
  for (const line of text.split('\n')) {
    const m = /^(?:.*?\s)?(LOG|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT):\s+(.*)$/.exec(line);
    if (m === null) {
      continue;
    }
    const [, severity = '', message = ''] = m;
    if (severity === 'DETAIL' || severity === 'HINT') {
      current?.extra.push(message.trim());
    } else if (severity === 'CONTEXT') {
      if (current !== undefined) {
        current.context = message;
      }
    } else {
      current = { message: message.trim(), extra: [], context: '' };
      entries.push(current);
    }
  }
  const out: ConfigProblem[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    if (/^configuration file ".*" contains errors/.test(e.message) || /^could not load .*pg_hba\.conf/.test(e.message)) {
      continue;
    }
    const message = [e.message.replace(/ in file ".*" line \d+$/, ''), ...e.extra].join(' ');
    const hba = /line (\d+) of configuration file ".*pg_hba\.conf"/.exec(e.context);
    const param = /parameter "([^"]+)"/.exec(e.message);
    let problem: ConfigProblem | undefined;
    if (hba !== null) {
      problem = { hbaLine: Number(hba[1]), message };
    } else if (param !== null) {
      problem = { parameter: param[1] ?? '', message };
    }
    const key = JSON.stringify(problem);
    if (problem !== undefined && !seen.has(key)) {
      seen.add(key);
      out.push(problem);
    }
  }
  return out;
}

/**
 * Expands a `dataRestoreCommand`: `%d` → `pgData`, `%%` → `%`; other `%` sequences are kept.
 * The path is substituted unquoted (as Stolon and PostgreSQL's `%p` do), so it must not hold
 * characters the shell would interpret.
 *
 * @throws StolonError `CONFIG_INVALID` when the command uses `%d` and `pgData` contains anything
 *   but letters, digits, `/`, `.`, `_`, `-` and `+`.
 * @see https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-PITR-RECOVERY
 */
export function expandDataRestoreCommand(command: string, pgData: string): string {
  let usesData = false;
  const out = command.replace(/%[%d]/g, (token) => {
    if (token === '%%') {
      return '%';
    }
    usesData = true;
    return pgData;
  });
  if (usesData && !/^[A-Za-z0-9/._+-]+$/.test(pgData)) {
    throw new StolonError(
      'CONFIG_INVALID',
      `the data directory ${JSON.stringify(pgData)} cannot be substituted for %d in pitrConfig.dataRestoreCommand without shell quoting; use a plain path`,
      { field: 'pitrConfig.dataRestoreCommand' },
    );
  }
  return out;
}
