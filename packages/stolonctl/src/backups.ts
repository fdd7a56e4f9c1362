/**
 * `stolonctl backups [--format table|json]`: the backups in the cluster's pgBackRest repository
 * (docs/backup.md, "Taking and listing backups"). Only a keeper can read the repository, so this
 * shows what keepers publish in their info (`KeeperInfo.backups`): the primary's keeper reads
 * `pgbackrest info` after every backup it runs and every few minutes. The list is as fresh as that
 * read, whose time is printed.
 */
import { keeperBackupCatalog, type BackupCatalog, type KeeperInfo } from '@stolon-ts/cluster';
import { CommandError, ExitCode, loadClusterData, runCommand, type CommandContext, type ExitCodeValue } from './context.js';
import { table } from './status.js';

/** The `--format` values of `backups`. */
export const BACKUPS_FORMATS = ['table', 'json'] as const;
export type BackupsFormat = (typeof BACKUPS_FORMATS)[number];

/** Options of {@link runBackups}. */
export interface BackupsOptions {
  /** @default 'table' */
  readonly format?: BackupsFormat;
}

/** `1536` → `1.5 KiB`; IEC units, one decimal from KiB on. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/**
 * The catalog to show: the one the primary's keeper publishes, unless a catalog read later lists a
 * newer backup (a standby's keeper's, read after it took a backup, before the primary's next
 * read); without the primary's, the most recently read one any keeper publishes (e.g. a former
 * primary's, while its info lasts). Labels sort by time (pgBackRest's `YYYYMMDD-HHMMSS` form).
 */
function pickCatalog(primaryKeeper: string | undefined, infos: Readonly<Record<string, KeeperInfo>>): { keeperUID: string; catalog: BackupCatalog } | undefined {
  const all = Object.entries(infos)
    .map(([keeperUID, info]) => ({ keeperUID, catalog: keeperBackupCatalog(info) }))
    .filter((c): c is { keeperUID: string; catalog: BackupCatalog } => c.catalog !== undefined)
    .sort((a, b) => Date.parse(b.catalog.refreshedAt) - Date.parse(a.catalog.refreshedAt));
  const newest = (c: BackupCatalog): string => c.backups.at(-1)?.label ?? '';
  const ofPrimary = all.find((c) => c.keeperUID === primaryKeeper);
  const later = all.find((c) => ofPrimary !== undefined && Date.parse(c.catalog.refreshedAt) > Date.parse(ofPrimary.catalog.refreshedAt) && newest(c.catalog) > newest(ofPrimary.catalog));
  return later ?? ofPrimary ?? all[0];
}

function render(keeperUID: string, c: BackupCatalog, nowMs: number): string {
  const age = Math.max(0, Math.round((nowMs - Date.parse(c.refreshedAt)) / 1000));
  const lines = [`stanza ${c.stanza}, as keeper ${keeperUID} read the repository at ${c.refreshedAt} (${age} s ago)`];
  if (c.walMin !== undefined || c.walMax !== undefined) {
    lines.push(`archived WAL: ${c.walMin ?? '?'} to ${c.walMax ?? '?'}`);
  }
  lines.push('');
  if (c.backups.length === 0) {
    lines.push('no backups');
  } else {
    lines.push(
      table(
        ['LABEL', 'TYPE', 'START', 'STOP', 'WAL START', 'WAL STOP', 'SIZE', 'IN REPO', 'REFERENCE'],
        c.backups.map((b) => [
          b.label + (b.error === true ? ' (page checksum errors)' : ''),
          b.type,
          b.startTime,
          b.stopTime,
          b.walStart,
          b.walStop,
          formatBytes(b.sizeBytes),
          formatBytes(b.repoSizeBytes),
          b.reference ?? '',
        ]),
      ),
    );
  }
  if (c.omitted !== undefined) {
    lines.push(`(${c.omitted} older backups not shown; pgbackrest info on a keeper lists them all)`);
  }
  return lines.join('\n');
}

/**
 * Prints the backups a keeper last read from the repository.
 * @returns 0; 1 when no keeper publishes a backup list (no backup section, or the primary's keeper
 *   has not read the repository yet) or when the last read failed (the error printed, and the
 *   last good list if any); 2 for an unknown format.
 */
export function runBackups(ctx: CommandContext, opts: BackupsOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'backups', async () => {
    const format = opts.format ?? 'table';
    if (!BACKUPS_FORMATS.includes(format)) {
      throw new CommandError(`--format: "${String(format)}" is not one of table, json`, ExitCode.usage, { field: 'format' });
    }
    const { cd } = await loadClusterData(ctx);
    const infos = await ctx.store.listInfos('keepers');
    const picked = pickCatalog(cd.dbs[cd.cluster.status.master]?.spec.keeperUID, infos);
    if (picked === undefined) {
      throw new CommandError(
        cd.cluster.spec.backup === undefined
          ? 'the cluster spec has no backup section, so no keeper reads a backup repository (docs/backup.md)'
          : "no keeper publishes the backup list yet: the primary's keeper reads the repository once archiving is set up, " +
              'which needs --allow-spec-commands backup on the keepers (stolonctl status shows refused settings)',
        ExitCode.runtime,
      );
    }
    const { keeperUID, catalog } = picked;
    ctx.out(format === 'json' ? JSON.stringify({ keeperUID, ...catalog }, null, 2) : render(keeperUID, catalog, Date.now()));
    if (catalog.error !== undefined) {
      throw new CommandError(`keeper ${keeperUID} could not read the repository at ${catalog.refreshedAt}: ${catalog.error}`, ExitCode.runtime);
    }
    return ExitCode.ok;
  });
}
