/**
 * The keeper's side of `stolonctl backup` and `stolonctl backups` (docs/backup.md, "Taking and
 * listing backups"):
 * - **Backup requests.** When `cluster.status.backupRequest` names this keeper, it runs
 *   `pgbackrest backup --type=<type> --start-fast` in the background (never holding up a pass)
 *   and publishes the run in its info (`KeeperInfo.backup`: running with pgBackRest's percent,
 *   then done with the label and size, or failed with pgBackRest's error). Each request id is
 *   recorded in `<data-dir>/backup-requests` before the backup starts, so a request runs at most
 *   once, across restarts too; a run the keeper process did not see end is reported failed.
 *   A request naming a primary (`BackupRequest.primary`) is for this keeper's standby: it adds
 *   `--backup-standby` and reaches that primary through its keeper's pgBackRest TLS server
 *   (backup-server.ts).
 *   A request is refused (reported failed, with why) when the spec's `backup` section is not
 *   applied here (`--allow-spec-commands backup`), when this keeper no longer runs the primary
 *   (or, for a standby request, a standby of the primary it names, or has no TLS server
 *   configured), or when it is first seen more than `BACKUP_START_WINDOW_MS` after it was made.
 * - **The catalog.** The primary's keeper reads `pgbackrest info --output=json` after each backup
 *   it ran and every {@link CATALOG_REFRESH_MS} (every {@link CATALOG_RETRY_MS} after a failed
 *   read), and publishes the newest backups (`KeeperInfo.backups`); a standby's keeper publishes
 *   the catalog it read after its own backup until its next pass as primary.
 * `--no-archive-mode-check`: see {@link runBackup}. `--start-fast`: without it pgBackRest's `pg_backup_start` waits for the next scheduled
 * checkpoint (up to `checkpoint_timeout`, 5 min by default) before copying anything
 * (https://pgbackrest.org/command.html#command-backup). The decision is pure ({@link nextBackupStep},
 * table-tested in backup-run.test.ts); the rest is I/O.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BACKUP_START_WINDOW_MS,
  backupCatalogFromInfo,
  backupStanza,
  errorMessage,
  formatDurationMs,
  type BackupCatalog,
  type BackupRequest,
  type ClusterData,
  type KeeperBackupRun,
} from '@stolon-ts/cluster';
import { nowIso } from '@stolon-ts/common';
import { maintainBackupServer, standbyBackupOptions } from './backup-server.js';
import { PGBACKREST, pgbackrestCommand } from './archiving.js';
import { archivingFor } from './pgconfig.js';
import type { KeeperRuntime } from './runtime.js';
import { writeStateFile } from './state-file.js';

/** Request ids remembered in `<data-dir>/backup-requests` (the newest). */
const LEDGER_IDS = 20;
/** How often the primary's keeper reads the repository's catalog, ms (5 min). */
const CATALOG_REFRESH_MS = 300_000;
/** How soon a failed catalog read is tried again, ms. */
const CATALOG_RETRY_MS = 30_000;
/** Bound of one `pgbackrest info`, ms. */
const INFO_TIMEOUT_MS = 60_000;

/** What `<data-dir>/backup-requests` holds. */
interface BackupLedger {
  /** Ids of the requests this keeper started or refused, oldest first. */
  readonly ran: readonly string[];
  /** The last run, as published. */
  readonly last?: KeeperBackupRun;
}

/** A keeper process's backup state (on the runtime). */
export interface BackupState {
  ledger: BackupLedger;
  /** True while `pgbackrest backup` runs. */
  running: boolean;
  catalog: BackupCatalog | undefined;
  /** Wall-clock ms of the next catalog read; 0: at the next pass. */
  catalogDueMs: number;
  catalogReading: boolean;
  /** True when `catalog` was read after a backup of this keeper's standby (kept while not primary). */
  catalogFromStandbyRun?: boolean;
}

/** What this pass does about the stored backup request. */
type BackupStep =
  | { readonly kind: 'none' }
  | { readonly kind: 'run'; readonly request: BackupRequest }
  | { readonly kind: 'refuse'; readonly request: BackupRequest; readonly reason: string };

/**
 * The step for `request` on keeper `keeperUID`: nothing when it names another keeper, was run or
 * refused already (`ran`), or a backup runs in this process now; else refused when it is past
 * its start window, the `backup` section is not applied here, or this keeper's PostgreSQL is not
 * the running primary — for a request naming a primary (`request.primary`, a standby backup):
 * not a running standby of the current primary, whose keeper is the one named, or this keeper
 * has no pgBackRest TLS server configured; else run.
 * @param nowMs wall-clock ms
 */
export function nextBackupStep(
  request: BackupRequest | undefined,
  keeperUID: string,
  ran: readonly string[],
  nowMs: number,
  here: { readonly busy: boolean; readonly archiving: boolean; readonly primary: boolean; readonly standbyOf?: string | undefined; readonly tls?: boolean },
): BackupStep {
  if (request === undefined || request.keeperUID !== keeperUID || ran.includes(request.id) || here.busy) {
    return { kind: 'none' };
  }
  const ageMs = nowMs - Date.parse(request.requestedAt);
  if (!(ageMs <= BACKUP_START_WINDOW_MS)) {
    return {
      kind: 'refuse',
      request,
      reason: `keeper ${keeperUID} first saw the request ${formatDurationMs(Math.max(0, ageMs))} after it was made, past the ${formatDurationMs(BACKUP_START_WINDOW_MS)} start window (was it down?); run stolonctl backup again`,
    };
  }
  if (!here.archiving) {
    return {
      kind: 'refuse',
      request,
      reason: `keeper ${keeperUID} does not apply the spec's backup section: start it with --allow-spec-commands backup (stolonctl status shows refused settings)`,
    };
  }
  if (request.primary !== undefined) {
    if (here.tls !== true) {
      return { kind: 'refuse', request, reason: `keeper ${keeperUID} has no pgBackRest TLS server configured (--backup-server-port); run stolonctl backup again` };
    }
    if (here.standbyOf !== request.primary.keeperUID) {
      return {
        kind: 'refuse',
        request,
        reason: `keeper ${keeperUID} no longer runs a standby of the primary of keeper ${request.primary.keeperUID}; run stolonctl backup again (it picks anew)`,
      };
    }
    return { kind: 'run', request };
  }
  if (!here.primary) {
    return { kind: 'refuse', request, reason: `keeper ${keeperUID} no longer runs the primary; run stolonctl backup again (it picks the primary)` };
  }
  return { kind: 'run', request };
}

/** pgBackRest's percent from its `DETAIL: backup file … (8KB, 57.31%)` lines in `chunk`; undefined when none. */
export function backupPercent(chunk: string): number | undefined {
  let last: number | undefined;
  for (const m of chunk.matchAll(/backup file .* \([^,()]+, ([\d.]+)%\)/g)) {
    last = Number(m[1]);
  }
  return last !== undefined && Number.isFinite(last) ? Math.min(100, last) : undefined;
}

/** The label from pgBackRest's `INFO: new backup label = 20261206-222410F`; undefined when absent. */
export function backupLabel(output: string): string | undefined {
  return /new backup label = (\S+)/.exec(output)?.[1];
}

/** pgBackRest's error from its output: from the first `ERROR:` line on (with its HINTs), else the last 3 lines; ` / `-joined, at most 1000 characters. */
export function pgbackrestError(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('DETAIL: backup file'));
  const first = lines.findIndex((l) => l.includes('ERROR:'));
  const picked = first >= 0 ? lines.slice(first, first + 4) : lines.slice(-3);
  return picked.join(' / ').slice(0, 1000) || 'no output';
}

const LEDGER_FILE = 'backup-requests';

/**
 * Reads `<data-dir>/backup-requests`; a missing or unreadable file is an empty ledger (logged).
 * A last run still `running` was cut short by this keeper process's end: reported failed.
 */
async function readLedger(rt: KeeperRuntime): Promise<BackupLedger> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(join(rt.config.dataDir, LEDGER_FILE), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      rt.log.error({ err }, `cannot read ${LEDGER_FILE}: ${errorMessage(err)}; a backup request seen before may run again`);
    }
    return { ran: [] };
  }
  const r = raw as Partial<BackupLedger>;
  const ran = Array.isArray(r.ran) ? r.ran.filter((x): x is string => typeof x === 'string') : [];
  const last = r.last;
  if (last?.state === 'running') {
    return { ran, last: { ...last, state: 'failed', finishedAt: nowIso(), error: 'the keeper process stopped while the backup ran (the next backup resumes or removes the partial one)' } };
  }
  return { ran, ...(last !== undefined ? { last } : {}) };
}

async function saveLedger(rt: KeeperRuntime, ledger: BackupLedger): Promise<void> {
  const dir = rt.config.dataDir;
  await writeStateFile(join(dir, LEDGER_FILE), join(dir, `.${LEDGER_FILE}.tmp`), JSON.stringify(ledger), 0o600);
}

/** `ran` plus `id`, the newest {@link LEDGER_IDS}. */
function withId(ran: readonly string[], id: string): string[] {
  return [...ran.filter((x) => x !== id), id].slice(-LEDGER_IDS);
}

/**
 * Runs every pass (after the publish): loads the ledger once, acts on the stored backup request
 * ({@link nextBackupStep}) and keeps the primary's catalog fresh. Starts background work only;
 * never throws.
 */
export function maintainBackups(rt: KeeperRuntime, cd: ClusterData | undefined, obs: { readonly running: boolean; readonly role?: string | undefined }): void {
  if (rt.backups === undefined) {
    rt.backups = 'loading';
    void readLedger(rt).then((ledger) => {
      // Acted on from the next pass (sleepInterval at most): no extra pass.
      rt.backups = { ledger, running: false, catalog: undefined, catalogDueMs: 0, catalogReading: false };
    });
    return;
  }
  if (rt.backups === 'loading') {
    return;
  }
  const st = rt.backups;
  const archiving = archivingFor(rt.config, cd);
  maintainBackupServer(rt, archiving !== undefined);
  const primary = rt.isPrimary && obs.running && obs.role === 'master';
  const step = nextBackupStep(cd?.cluster.status.backupRequest, rt.config.uid, st.ledger.ran, Date.now(), {
    busy: st.running,
    archiving: archiving !== undefined,
    primary,
    standbyOf: standbyOf(rt, cd, obs),
    tls: rt.config.backupServer !== undefined,
  });
  if (step.kind === 'refuse') {
    const at = nowIso();
    const last: KeeperBackupRun = { requestId: step.request.id, type: step.request.type, state: 'failed', startedAt: at, finishedAt: at, error: step.reason };
    st.ledger = { ran: withId(st.ledger.ran, step.request.id), last };
    rt.log.error({ request: step.request.id }, `backup request ${step.request.id} refused: ${step.reason}`);
    saveLedger(rt, st.ledger).catch((err: unknown) => rt.log.error({ err }, `cannot write ${LEDGER_FILE}: ${errorMessage(err)}`));
  } else if (step.kind === 'run' && archiving !== undefined) {
    void runBackup(rt, st, step.request, archiving);
  }
  if (!primary || archiving === undefined) {
    if (st.catalogFromStandbyRun !== true || archiving === undefined) {
      st.catalog = undefined;
      st.catalogFromStandbyRun = false;
    }
    st.catalogDueMs = 0;
  } else if (!st.catalogReading && !st.running && Date.now() >= st.catalogDueMs) {
    void refreshCatalog(rt, st, archiving);
  }
}

type Archiving = NonNullable<ReturnType<typeof archivingFor>>;

/** The keeper of the primary this keeper's running standby follows (clusterdata), else undefined. */
function standbyOf(rt: KeeperRuntime, cd: ClusterData | undefined, obs: { readonly running: boolean; readonly role?: string | undefined }): string | undefined {
  if (cd === undefined || rt.isPrimary || !obs.running || obs.role !== 'standby') {
    return undefined;
  }
  const mine = Object.values(cd.dbs).find((d) => d.spec.keeperUID === rt.config.uid);
  const follow = mine?.spec.followConfig;
  if (follow?.type !== 'internal' || follow.dbuid !== cd.cluster.status.master) {
    return undefined;
  }
  return cd.dbs[follow.dbuid]?.spec.keeperUID;
}

/** `pgbackrest <opts> <extra> <command>`: `extra` goes before the command word, which is last. */
function withOptions(args: readonly string[], extra: readonly string[]): string[] {
  return [...args.slice(0, -1), ...extra, ...args.slice(-1)];
}

/** Reads the catalog (`pgbackrest info --output=json`) into `st.catalog`; a failure keeps the last list with the error. */
async function refreshCatalog(rt: KeeperRuntime, st: BackupState, archiving: Archiving): Promise<void> {
  st.catalogReading = true;
  st.catalogFromStandbyRun = false;
  const stanza = backupStanza(archiving.backup, archiving.local.clusterName);
  let catalog: BackupCatalog;
  try {
    const args = withOptions(pgbackrestCommand('info', archiving.backup, archiving.local), ['--output=json', '--log-level-console=off', '--log-level-stderr=error']);
    const res = await rt.pg.runTool(PGBACKREST, args, { timeoutMs: INFO_TIMEOUT_MS });
    if (res.code !== 0) {
      throw new Error(`pgbackrest info exited with ${res.code ?? 'a signal'}: ${pgbackrestError(res.stderr || res.stdout)}`);
    }
    catalog = backupCatalogFromInfo(res.stdout, stanza, nowIso());
  } catch (err) {
    catalog = { ...(st.catalog ?? { stanza, backups: [] }), refreshedAt: nowIso(), error: errorMessage(err) };
  }
  if (catalog.error !== undefined && st.catalog?.error !== catalog.error) {
    rt.log.warn({ stanza }, `cannot read the backup catalog: ${catalog.error}; retried in ${CATALOG_RETRY_MS / 1000} s`);
  }
  st.catalog = catalog;
  st.catalogDueMs = Date.now() + (catalog.error === undefined ? CATALOG_REFRESH_MS : CATALOG_RETRY_MS);
  st.catalogReading = false;
}

/** Runs one backup request (recorded in the ledger first), then reads the catalog for its size. */
async function runBackup(rt: KeeperRuntime, st: BackupState, request: BackupRequest, archiving: Archiving): Promise<void> {
  st.running = true;
  const run: KeeperBackupRun = { requestId: request.id, type: request.type, state: 'running', startedAt: nowIso() };
  st.ledger = { ran: withId(st.ledger.ran, request.id), last: run };
  try {
    await saveLedger(rt, st.ledger);
  } catch (err) {
    // Not run: without the record it could run twice.
    st.ledger = { ran: st.ledger.ran, last: { ...run, state: 'failed', finishedAt: nowIso(), error: `cannot record the request in ${LEDGER_FILE}: ${errorMessage(err)}` } };
    st.running = false;
    return;
  }
  rt.log.info({ request: request.id, type: request.type }, `pgbackrest backup --type=${request.type} (request ${request.id}${request.choice !== undefined ? `, ${request.choice}` : ''})`);
  // --no-archive-mode-check: with archive_mode = always (archiving.ts decides it) pgBackRest's
  // backup refuses to run otherwise ("[067]: archive_mode=always not supported": its check guards
  // against several archivers pushing segments that differ in checksum, which archive-push refuses
  // anyway); with archive_mode = on it changes nothing.
  const extra = [`--type=${request.type}`, '--start-fast', '--no-archive-mode-check', '--log-level-console=off', '--log-level-stderr=detail'];
  const server = rt.config.backupServer;
  if (request.primary !== undefined && server !== undefined) {
    extra.push(...standbyBackupOptions(server, request.primary));
  }
  const args = withOptions(pgbackrestCommand('backup', archiving.backup, archiving.local, { port: rt.config.pgPort, user: rt.config.suUsername }), extra);
  let end: Partial<KeeperBackupRun>;
  try {
    const res = await rt.pg.runTool(PGBACKREST, args, {
      supervised: true,
      onStderr: (chunk) => {
        const pct = backupPercent(chunk);
        if (pct !== undefined && st.ledger.last?.requestId === request.id) {
          st.ledger = { ...st.ledger, last: { ...run, percent: pct } };
        }
      },
    });
    const label = backupLabel(res.stderr);
    end =
      res.code === 0 && label !== undefined
        ? { state: 'done', label, percent: 100 }
        : { state: 'failed', error: `pgbackrest backup exited with ${res.code ?? 'a signal'}: ${pgbackrestError(res.stderr || res.stdout)}` };
  } catch (err) {
    end = { state: 'failed', error: errorMessage(err) };
  }
  if (end.state === 'done') {
    await refreshCatalog(rt, st, archiving);
    st.catalogFromStandbyRun = request.primary !== undefined;
    const size = st.catalog?.backups.find((b) => b.label === end.label)?.sizeBytes;
    end = { ...end, ...(size !== undefined ? { sizeBytes: size } : {}) };
    rt.log.info({ request: request.id, label: end.label }, `backup ${end.label ?? ''} done`);
  } else {
    rt.log.error({ request: request.id }, `backup request ${request.id} failed: ${end.error ?? ''}`);
  }
  st.ledger = { ran: st.ledger.ran, last: { ...run, ...end, finishedAt: nowIso() } as KeeperBackupRun };
  st.running = false;
  await saveLedger(rt, st.ledger).catch((err: unknown) => rt.log.error({ err }, `cannot write ${LEDGER_FILE}: ${errorMessage(err)}`));
  rt.trigger('backup ended');
}
