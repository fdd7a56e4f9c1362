/**
 * The `backup` spec section turned into pgBackRest options (docs/backup.md). Pure: no I/O.
 * The keeper gives every pgBackRest command it runs — `archive-push` and `archive-get` from
 * PostgreSQL, `stanza-create`, `backup`, `info`, `restore`, `check` — the same repository options
 * from {@link pgbackrestRepoOptions}, less those the command refuses ({@link pgbackrestArgs}:
 * pgBackRest 2.45 fails `archive-get` given `--compress-type`, `archive-push` given
 * `--repo1-retention-full`, …), so they all agree on where the repository is; its own
 * `<data-dir>/pgbackrest.conf` holds only what may not be on a command line (the S3 keys, the CA, the
 * TLS server's settings). {@link pgbackrestRepoSettings} and {@link renderPgbackrestConf} write the
 * same settings as a configuration file (where pgBackRest ignores options a command does not take),
 * for tools run by hand, the tests and `bench:backup`. Options and files follow
 * https://pgbackrest.org/command.html and https://pgbackrest.org/configuration.html.
 */
import type { BackupSpec } from './types.js';

/** Defaults of the `backup` section's optional fields. */
export const DEFAULT_BACKUP = Object.freeze({
  retentionFull: 2,
  compressType: 'lz4',
  archiveAsync: false,
  processMax: 1,
  /** 1 GiB of WAL waiting to be archived. */
  archiveWarnBytes: 1024 * 1024 * 1024,
} as const);

/**
 * The stanza of a cluster: `backup.stanza`, else the cluster name.
 * @param clusterName the `--cluster-name` of the keepers and sentinels.
 */
export function backupStanza(backup: BackupSpec, clusterName: string): string {
  return backup.stanza ?? clusterName;
}

/**
 * Repository, retention and compression settings of the `backup` section, by pgBackRest option
 * name (no leading `--`), for the `[global]` section of a configuration file. Credentials are not
 * included.
 * @returns e.g. `{ 'repo1-path': '/backup', 'repo1-retention-full': '2', 'compress-type': 'lz4', 'process-max': '1' }`.
 */
export function pgbackrestRepoSettings(backup: BackupSpec): Record<string, string> {
  const out: Record<string, string> = {};
  for (const opt of pgbackrestRepoOptions(backup, '')) {
    if (opt.startsWith('--stanza=')) {
      continue;
    }
    const m = /^--(no-)?([a-z0-9-]+)(?:=(.*))?$/.exec(opt)!;
    out[m[2]!] = m[1] !== undefined ? 'n' : (m[3] ?? 'y');
  }
  return out;
}

/**
 * A pgBackRest configuration file: `[global]` then one section per stanza, `name=value` lines.
 * @throws Error when a name or value holds a newline or a name is not a pgBackRest option name
 *   (values come from the validated spec and the keeper's own paths, so this is a bug guard).
 */
export function renderPgbackrestConf(global: Readonly<Record<string, string>>, stanzas: Readonly<Record<string, Readonly<Record<string, string>>>> = {}): string {
  const section = (name: string, opts: Readonly<Record<string, string>>): string[] => [
    `[${name}]`,
    ...Object.entries(opts).map(([k, v]) => {
      if (!/^[a-z0-9-]+$/.test(k) || /[\r\n]/.test(v)) {
        throw new Error(`pgBackRest option ${JSON.stringify(k)}=${JSON.stringify(v)}: names are lower-case words joined by "-", values one line`);
      }
      return `${k}=${v}`;
    }),
    '',
  ];
  return [...section('global', global), ...Object.entries(stanzas).flatMap(([name, opts]) => section(name, opts))].join('\n');
}

/**
 * Repository, retention, compression and archiving options for pgBackRest, as argv entries, plus
 * `--stanza`. Credentials are not included. Valid on the command line of `backup` only (other
 * commands refuse some of them): prefer a configuration file from {@link pgbackrestRepoSettings}.
 * @param stanza the stanza to use (normally {@link backupStanza}; a restore passes the source's).
 * @returns e.g. `['--stanza=main', '--repo1-path=/backup', '--repo1-retention-full=2', '--compress-type=lz4', ...]`.
 */
export function pgbackrestRepoOptions(backup: BackupSpec, stanza: string): string[] {
  const repo = backup.repository;
  const out = [`--stanza=${stanza}`, `--repo1-path=${repo.path}`];
  if (repo.s3 !== undefined) {
    out.push(
      '--repo1-type=s3',
      `--repo1-s3-bucket=${repo.s3.bucket}`,
      `--repo1-s3-endpoint=${repo.s3.endpoint}`,
      `--repo1-s3-region=${repo.s3.region}`,
      `--repo1-s3-uri-style=${repo.s3.uriStyle ?? 'host'}`,
    );
    if (repo.s3.verifyTls === false) {
      out.push('--no-repo1-storage-verify-tls');
    }
  }
  out.push(`--repo1-retention-full=${backup.retentionFull ?? DEFAULT_BACKUP.retentionFull}`);
  if (backup.retentionDiff !== undefined) {
    out.push(`--repo1-retention-diff=${backup.retentionDiff}`);
  }
  out.push(`--compress-type=${backup.compressType ?? DEFAULT_BACKUP.compressType}`);
  if (backup.compressLevel !== undefined) {
    out.push(`--compress-level=${backup.compressLevel}`);
  }
  out.push(`--process-max=${backup.processMax ?? DEFAULT_BACKUP.processMax}`);
  return out;
}

/** The pgBackRest commands stolon-ts runs. */
export type PgbackrestCommand = 'archive-push' | 'archive-get' | 'stanza-create' | 'check' | 'info' | 'backup' | 'restore' | 'expire' | 'verify';

/**
 * Options pgBackRest refuses on the command line of each command (`ERROR: [031]: option '…' not
 * valid for command '…'`), by name without `--`, `--no-` or value. Measured against pgBackRest
 * 2.45 for every option {@link pgbackrestRepoOptions} and the keeper give; each command's valid
 * options are listed on https://pgbackrest.org/command.html.
 */
const INVALID_OPTIONS: Readonly<Record<PgbackrestCommand, readonly string[]>> = {
  'archive-push': ['repo1-retention-full', 'repo1-retention-diff', 'pg1-port', 'pg1-socket-path', 'pg1-user'],
  'archive-get': ['repo1-retention-full', 'repo1-retention-diff', 'compress-type', 'compress-level', 'pg1-port', 'pg1-socket-path', 'pg1-user'],
  'stanza-create': ['repo1-retention-full', 'repo1-retention-diff', 'compress-type', 'compress-level', 'process-max', 'archive-async', 'spool-path'],
  check: ['repo1-retention-full', 'repo1-retention-diff', 'compress-type', 'compress-level', 'process-max', 'archive-async', 'spool-path', 'lock-path'],
  info: ['repo1-retention-full', 'repo1-retention-diff', 'compress-type', 'compress-level', 'process-max', 'archive-async', 'spool-path', 'pg1-path', 'pg1-port', 'pg1-socket-path', 'pg1-user'],
  backup: ['archive-async', 'spool-path'],
  restore: ['repo1-retention-full', 'repo1-retention-diff', 'compress-type', 'compress-level', 'archive-async', 'pg1-port', 'pg1-socket-path', 'pg1-user'],
  expire: ['compress-type', 'compress-level', 'process-max', 'archive-async', 'spool-path', 'pg1-path', 'pg1-port', 'pg1-socket-path', 'pg1-user'],
  verify: ['repo1-retention-full', 'repo1-retention-diff', 'compress-type', 'compress-level', 'archive-async', 'spool-path', 'lock-path', 'pg1-path', 'pg1-port', 'pg1-socket-path', 'pg1-user'],
};

/**
 * `options` (e.g. from {@link pgbackrestRepoOptions}, plus paths) without those `command` refuses
 * on its command line, then `command`: the argv after `pgbackrest`. pgBackRest fails a command
 * given an option it does not take (`--compress-type` for `stanza-create`, `--repo1-retention-full`
 * for `archive-push`), so the same option list can serve every command only through this.
 * @param options `--name=value`, `--name` or `--no-name` entries.
 * @example pgbackrestArgs('stanza-create', ['--stanza=main', '--compress-type=lz4']) → ['--stanza=main', 'stanza-create']
 */
export function pgbackrestArgs(command: PgbackrestCommand, options: readonly string[]): string[] {
  const invalid = new Set(INVALID_OPTIONS[command]);
  const name = (opt: string): string => opt.replace(/^--(no-)?/, '').replace(/=.*$/s, '');
  return [...options.filter((o) => !invalid.has(name(o))), command];
}
