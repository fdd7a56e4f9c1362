/**
 * Command-bearing settings of the cluster spec, and the keeper's `--allow-spec-commands` rule.
 *
 * Whoever can write clusterdata in the store can set these, and each one makes PostgreSQL or the
 * keeper run a shell command as the postgres OS user on every keeper. A keeper applies only the
 * ones its operator allowed on its own command line (docs/security.md); the others are left out
 * of the configuration, logged and published (`postgresState.refusedSpecCommands`, shown by
 * `stolonctl status`). Pure; table-tested in spec-commands.test.ts.
 */
import { ConfigError, type BackupSpec, type DB } from '@stolon-ts/cluster';

/**
 * The command-bearing settings, by the name `--allow-spec-commands` takes:
 * - `archive_command`, `archive_cleanup_command`, `recovery_end_command`, `ssl_passphrase_command`:
 *   those `pgParameters` (PostgreSQL runs them through the shell);
 * - `restore_command`: `archiveRecoverySettings.restoreCommand` of `standbyConfig` and of
 *   `pitrConfig` (written as PostgreSQL's `restore_command`; a `pgParameters` value for it is
 *   always dropped, the keeper manages it);
 * - `data_restore_command`: `pitrConfig.dataRestoreCommand`, which the keeper itself runs to
 *   restore the data of an `initMode: pitr` cluster;
 * - `backup`: the cluster spec's `backup` section, which makes PostgreSQL and the keeper run
 *   pgBackRest (`archive-push`, `archive-get`, `stanza-create`; `info` and `restore` for
 *   `pitrConfig.fromBackup`) against the repository it names: whoever writes it can send the WAL,
 *   and so every row, anywhere, or start a new cluster from someone else's backup.
 */
export const SPEC_COMMANDS = Object.freeze([
  'archive_command',
  'archive_cleanup_command',
  'recovery_end_command',
  'ssl_passphrase_command',
  'restore_command',
  'data_restore_command',
  'backup',
] as const);

/** One of {@link SPEC_COMMANDS}. */
export type SpecCommand = (typeof SPEC_COMMANDS)[number];

/** The `pgParameters` names among {@link SPEC_COMMANDS}. */
const COMMAND_PARAMETERS: ReadonlySet<string> = new Set<SpecCommand>(['archive_command', 'archive_cleanup_command', 'recovery_end_command', 'ssl_passphrase_command']);

/** The default of `--allow-spec-commands`: the spec may not make keepers run commands. */
export const DEFAULT_ALLOW_SPEC_COMMANDS = 'none';

/**
 * Parses `--allow-spec-commands`: `none`, `all`, or a comma-separated list of
 * {@link SPEC_COMMANDS} names (case-insensitive, spaces ignored).
 * @returns the allowed names (empty for `none` or an empty value).
 * @throws ConfigError (field `allow-spec-commands`) naming an unknown entry and the known ones.
 */
export function parseAllowSpecCommands(text: string | undefined): ReadonlySet<SpecCommand> {
  const items = (text ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  if (items.length === 1 && items[0] === 'all') {
    return new Set(SPEC_COMMANDS);
  }
  if (items.length === 0 || (items.length === 1 && items[0] === 'none')) {
    return new Set();
  }
  const out = new Set<SpecCommand>();
  for (const item of items) {
    if (!(SPEC_COMMANDS as readonly string[]).includes(item)) {
      throw new ConfigError(
        `--allow-spec-commands: "${item}" is not a command-bearing setting; give none, all, or a comma-separated list of ${SPEC_COMMANDS.join(', ')}`,
        { field: 'allow-spec-commands' },
      );
    }
    out.add(item as SpecCommand);
  }
  return out;
}

function set(v: string | undefined | null): boolean {
  return v !== undefined && v !== null && v.trim() !== '';
}

/**
 * The command-bearing settings `db`'s spec gives a non-empty value, sorted as {@link SPEC_COMMANDS}.
 * `pgParameters` names are compared case-insensitively, as PostgreSQL does.
 * @param backup the cluster spec's `backup` section (DB specs do not carry it); absent or null: none.
 */
export function specCommandsIn(db: DB, backup?: BackupSpec | null): SpecCommand[] {
  const found = new Set<SpecCommand>();
  for (const [name, value] of Object.entries(db.spec.pgParameters ?? {})) {
    const lower = name.toLowerCase();
    if (COMMAND_PARAMETERS.has(lower) && set(value)) {
      found.add(lower as SpecCommand);
    }
  }
  if (set(db.spec.followConfig?.archiveRecoverySettings?.restoreCommand) || set(db.spec.pitrConfig?.archiveRecoverySettings?.restoreCommand)) {
    found.add('restore_command');
  }
  if (set(db.spec.pitrConfig?.dataRestoreCommand)) {
    found.add('data_restore_command');
  }
  if (backup !== undefined && backup !== null) {
    found.add('backup');
  }
  return SPEC_COMMANDS.filter((c) => found.has(c));
}

/**
 * The command-bearing settings `db`'s spec (and the cluster spec's `backup`) sets that `allowed`
 * does not allow (in {@link SPEC_COMMANDS} order).
 */
export function refusedSpecCommands(db: DB, allowed: ReadonlySet<SpecCommand>, backup?: BackupSpec | null): SpecCommand[] {
  return specCommandsIn(db, backup).filter((c) => !allowed.has(c));
}

/** `params` without the command-bearing parameters `allowed` does not allow (names compared case-insensitively). */
export function allowedPgParameters(params: Readonly<Record<string, string>>, allowed: ReadonlySet<SpecCommand>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(params)) {
    const lower = name.toLowerCase();
    if (!COMMAND_PARAMETERS.has(lower) || allowed.has(lower as SpecCommand)) {
      out[name] = value;
    }
  }
  return out;
}

/** The sentence logged and shown by `stolonctl status` for refused settings of keeper `keeperUid`. */
export function describeRefusedSpecCommands(refused: readonly SpecCommand[], keeperUid: string): string {
  return (
    `keeper ${keeperUid} refuses ${refused.join(', ')} from the cluster spec (commands run as the postgres user; ` +
    `not applied): allow ${refused.length === 1 ? 'it' : 'them'} with --allow-spec-commands ${refused.join(',')} on the keeper if the spec is trusted`
  );
}
