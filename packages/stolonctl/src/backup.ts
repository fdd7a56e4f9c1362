/**
 * `stolonctl backup [--type full|diff|incr] [--no-wait] [--timeout 1h]`: a pgBackRest base backup
 * of the cluster, taken by a keeper (docs/backup.md, "Taking and listing backups"). Like
 * `switchover`, it only writes a request into clusterdata (`cluster.status.backupRequest`, by
 * compare-and-set) naming the keeper chosen now (`chooseBackupKeeper`: a standby's when it and
 * the primary's keeper run a pgBackRest TLS server, else the primary's) and why;
 * that keeper runs `pgbackrest backup` once and reports in its info (`KeeperInfo.backup`), which
 * this command follows until the backup is done or failed.
 */
import { randomBytes } from 'node:crypto';
import {
  BACKUP_START_WINDOW_MS,
  chooseBackupKeeper,
  formatDurationMs,
  keeperBackupRun,
  outstandingBackup,
  parseDurationMs,
  resolveSpec,
  type BackupPrimary,
  type BackupType,
  type ClusterData,
  type KeeperBackupRun,
  type KeeperInfo,
} from '@stolon-ts/cluster';
import { nowIso } from '@stolon-ts/common';
import { CommandError, ExitCode, loadClusterData, runCommand, updateClusterData, type CommandContext, type ExitCodeValue } from './context.js';
import { formatBytes } from './backups.js';

/** The `--type` values, pgBackRest's. */
export const BACKUP_TYPES: readonly BackupType[] = ['full', 'diff', 'incr'];

/** Options of {@link runBackup}. */
export interface BackupOptions {
  /** `--type`. @default 'full' */
  readonly type?: BackupType;
  /** `--no-wait`: return once the request is recorded. @default false */
  readonly noWait?: boolean;
  /** `--timeout` as a duration string: how long to wait for the backup to end. @default '1h' */
  readonly timeout?: string;
  /** Poll period while waiting, ms. @default 1000 */
  readonly pollMs?: number;
}

const DEFAULT_TIMEOUT = '1h';
/** Progress lines are printed at most this often, ms. */
const PROGRESS_EVERY_MS = 5_000;

/** Refuses a request while another one is outstanding, and when no keeper can take the backup. */
function precheck(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>): { keeperUID: string; choice: string; primary?: BackupPrimary } {
  const busy = outstandingBackup(cd, infos, Date.now());
  if (busy !== undefined) {
    const r = busy.request;
    if (busy.state === 'running') {
      throw new CommandError(
        `backup request ${r.id} (${r.type}) is already running on keeper ${r.keeperUID} since ${busy.run?.startedAt ?? r.requestedAt}${progressText(busy.run)}; ` +
          'wait for it to end (stolonctl backups lists it once done)',
        ExitCode.runtime,
      );
    }
    const expires = new Date(Date.parse(r.requestedAt) + BACKUP_START_WINDOW_MS).toISOString();
    throw new CommandError(
      `backup request ${r.id} (${r.type}, made at ${r.requestedAt}) waits for keeper ${r.keeperUID} to start it; ` +
        `wait for it, or ask again after ${expires}, when the keeper will no longer start it`,
      ExitCode.runtime,
    );
  }
  const choice = chooseBackupKeeper(cd, infos, resolveSpec(cd.cluster.spec));
  if (!choice.ok) {
    throw new CommandError(`cannot back up now: ${choice.reason}`, ExitCode.runtime);
  }
  return choice;
}

/** `, 30% copied` once pgBackRest reports its progress, else ''. */
function progressText(run: KeeperBackupRun | undefined): string {
  return run?.percent === undefined ? '' : `, ${Math.floor(run.percent)}% copied`;
}

/** Follows the keeper's run of request `id` until it ends. */
async function follow(ctx: CommandContext, keeperUID: string, id: string, type: BackupType, timeoutMs: number, timeoutText: string, pollMs: number): Promise<ExitCodeValue> {
  const startedWaiting = Date.now();
  const deadline = startedWaiting + timeoutMs;
  let lastLine = '';
  let lastPrinted = 0;
  for (;;) {
    const run = keeperBackupRun((await ctx.store.listInfos('keepers'))[keeperUID]);
    const mine = run?.requestId === id ? run : undefined;
    if (mine?.state === 'done') {
      const took = mine.finishedAt === undefined ? '' : ` in ${formatDurationMs(Date.parse(mine.finishedAt) - Date.parse(mine.startedAt))}`;
      const size = mine.sizeBytes === undefined ? '' : `, ${formatBytes(mine.sizeBytes)}`;
      ctx.out(`${type} backup ${mine.label ?? '(no label reported)'} done on keeper ${keeperUID}${took}${size}`);
      return ExitCode.ok;
    }
    if (mine?.state === 'failed') {
      throw new CommandError(`the ${type} backup on keeper ${keeperUID} failed: ${mine.error ?? 'no reason reported'}`, ExitCode.runtime);
    }
    const line = mine === undefined ? `waiting for keeper ${keeperUID} to start the backup` : `running since ${mine.startedAt}${progressText(mine)}`;
    if (line !== lastLine && Date.now() - lastPrinted >= PROGRESS_EVERY_MS) {
      ctx.out(line);
      lastLine = line;
      lastPrinted = Date.now();
    }
    if (mine === undefined && Date.now() - startedWaiting > BACKUP_START_WINDOW_MS + 10_000) {
      throw new CommandError(
        `keeper ${keeperUID} did not start the backup within ${formatDurationMs(BACKUP_START_WINDOW_MS)} and will no longer start it; ` +
          'is it running, with --allow-spec-commands backup? (stolonctl status; its log says why)',
        ExitCode.runtime,
      );
    }
    if (Date.now() > deadline) {
      throw new CommandError(
        `the backup did not end within ${timeoutText} (--timeout); it goes on on keeper ${keeperUID}: stolonctl backups lists it once done`,
        ExitCode.runtime,
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Requests a backup and (unless `noWait`) waits for its end, printing progress.
 * @returns 0 when the backup is done (its label printed) or, with `noWait`, recorded; 1 when
 *   refused (another backup outstanding, no backup section, no healthy primary), failed (the
 *   keeper's error printed), or not ended within the timeout; 2 for a bad `--type` or `--timeout`.
 */
export function runBackup(ctx: CommandContext, opts: BackupOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'backup', async () => {
    const type = opts.type ?? 'full';
    if (!BACKUP_TYPES.includes(type)) {
      throw new CommandError(`--type: "${String(type)}" is not one of full, diff, incr`, ExitCode.usage, { field: 'type' });
    }
    const timeoutText = opts.timeout ?? DEFAULT_TIMEOUT;
    const timeoutMs = parseDurationMs(timeoutText);
    if (timeoutMs === undefined || timeoutMs <= 0) {
      throw new CommandError(`--timeout: "${timeoutText}" is not a positive duration such as 30m`, ExitCode.usage, { field: 'timeout' });
    }
    const loaded = await loadClusterData(ctx);
    const infos = await ctx.store.listInfos('keepers');
    precheck(loaded.cd, infos);
    const id = randomBytes(4).toString('hex');
    const requestedAt = nowIso();
    const chosen = await updateClusterData(
      ctx,
      ({ cd }) => {
        const c = precheck(cd, infos);
        const next = structuredClone(cd);
        next.cluster.status.backupRequest = { id, keeperUID: c.keeperUID, type, requestedAt, choice: c.choice, ...(c.primary !== undefined ? { primary: c.primary } : {}) };
        return { write: next, result: c };
      },
      { first: loaded },
    );
    ctx.out(`${type} backup requested (request ${id}) ${chosen.choice}`);
    if (opts.noWait === true) {
      return ExitCode.ok;
    }
    return follow(ctx, chosen.keeperUID, id, type, timeoutMs, timeoutText, opts.pollMs ?? 1000);
  });
}
