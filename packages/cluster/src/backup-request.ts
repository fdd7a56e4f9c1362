/**
 * `stolonctl backup` and `stolonctl backups` in the cluster model (docs/backup.md, "Taking and
 * listing backups"): which keeper a backup request names, whether one is still outstanding, and
 * the readers of what keepers publish about backups (`KeeperInfo.backup`, `KeeperInfo.backups`,
 * the latter built from `pgbackrest info --output=json` by {@link backupCatalogFromInfo}). Pure:
 * no I/O, no clock reads (times come in as arguments).
 *
 * Where a backup comes from: a healthy, caught-up standby when its keeper and the primary's keeper
 * both run a pgBackRest TLS server (`KeeperInfo.backupServer`), else the primary. pgBackRest takes
 * a backup from a standby only with `--backup-standby`, and then still runs
 * `pg_backup_start()`/`pg_backup_stop()` on the primary through a pgBackRest process on the
 * primary's host (its TLS server), because it connects to PostgreSQL over the local socket only
 * (https://pgbackrest.org/user-guide.html#standby-backup); the files are copied from the standby.
 */
import { z } from 'zod';
import { ineligibility } from './candidates.js';
import type { BackupCatalog, BackupCatalogEntry, BackupPrimary, BackupServer, BackupRequest, BackupType, ClusterData, KeeperBackupRun, KeeperInfo, ResolvedSpec } from './types.js';

/** Backups kept in a keeper info's {@link BackupCatalog}: the newest 50 (the info stays a few KiB). */
export const BACKUP_CATALOG_LIMIT = 50;

/**
 * How long after `requestedAt` a keeper may still start a request it has not run, in ms (2 min).
 * A keeper that was down longer does not run it when it comes back, and stolonctl accepts a new
 * request once it is past (clocks of stolonctl's and the keeper's hosts are compared).
 */
export const BACKUP_START_WINDOW_MS = 120_000;

const backupType = z.enum(['full', 'diff', 'incr']);
const bytes = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const runSchema = z.looseObject({
  requestId: z.string(),
  type: backupType,
  state: z.enum(['running', 'done', 'failed']),
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  label: z.string().optional(),
  error: z.string().optional(),
  percent: z.number().min(0).max(100).optional(),
  sizeBytes: bytes.optional(),
});

const catalogSchema = z.looseObject({
  refreshedAt: z.string(),
  stanza: z.string(),
  backups: z.array(
    z.looseObject({
      label: z.string(),
      type: backupType,
      startTime: z.string(),
      stopTime: z.string(),
      walStart: z.string(),
      walStop: z.string(),
      lsnStart: z.string().optional(),
      lsnStop: z.string().optional(),
      sizeBytes: bytes,
      repoSizeBytes: bytes,
      reference: z.string().optional(),
      error: z.boolean().optional(),
    }),
  ),
  omitted: z.number().int().min(0).optional(),
  walMin: z.string().optional(),
  walMax: z.string().optional(),
  error: z.string().optional(),
});

/**
 * A keeper info's `backup` field, checked (the sentinel does not check it: a malformed one must
 * not make it drop the keeper's info).
 * @returns the run, or undefined when absent or malformed
 */
export function keeperBackupRun(info: KeeperInfo | undefined): KeeperBackupRun | undefined {
  const r = runSchema.safeParse(info?.backup);
  return r.success ? (r.data as KeeperBackupRun) : undefined;
}

/** A keeper info's `backups` field, checked like {@link keeperBackupRun}; undefined when absent or malformed. */
export function keeperBackupCatalog(info: KeeperInfo | undefined): BackupCatalog | undefined {
  const r = catalogSchema.safeParse(info?.backups);
  return r.success ? (r.data as BackupCatalog) : undefined;
}

const serverSchema = z.looseObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  pgData: z.string().min(1),
  pgPort: z.number().int().min(1).max(65535),
  socketPath: z.string().min(1),
  user: z.string().min(1),
});

/** A keeper info's `backupServer` field, checked like {@link keeperBackupRun}; undefined when absent or malformed. */
export function keeperBackupServer(info: KeeperInfo | undefined): BackupServer | undefined {
  const r = serverSchema.safeParse(info?.backupServer);
  return r.success ? (r.data as BackupServer) : undefined;
}

/**
 * Where a new backup request should go, or why none can be made now. `primary` is set when the
 * chosen keeper runs a standby (its backup reaches the primary through `primary`'s TLS server).
 */
export type BackupChoice =
  | { readonly ok: true; readonly keeperUID: string; readonly choice: string; readonly primary?: BackupPrimary }
  | { readonly ok: false; readonly reason: string };

/**
 * Chooses the keeper that runs a backup requested now, when the cluster is up, has a `backup`
 * section, and the primary is healthy and publishing: the best healthy, caught-up standby
 * (streaming, within `maxStandbyLag`, not a synchronous standby when another qualifies, then the
 * most advanced) when its keeper and the primary's keeper both publish a `backupServer`, else the
 * primary's keeper. The sentence says which keeper and why (see the module comment).
 * @param cd the stored clusterdata
 * @param infos keeper infos by uid, as read from the store
 * @param spec `resolveSpec(cd.cluster.spec)`
 */
export function chooseBackupKeeper(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>, spec: ResolvedSpec): BackupChoice {
  if (spec.backup === null) {
    return { ok: false, reason: 'the cluster spec has no backup section; add one (stolonctl update --patch \'{"backup":{"repository":{"path":"/backups"}}}\', docs/backup.md)' };
  }
  if (cd.cluster.status.phase !== 'normal') {
    return { ok: false, reason: 'the cluster is still initializing; back up once it is up' };
  }
  if (cd.cluster.status.failover !== undefined) {
    return { ok: false, reason: `a ${cd.cluster.status.failover.kind} is in progress; back up once it ended (stolonctl events)` };
  }
  const master = cd.dbs[cd.cluster.status.master];
  if (master === undefined) {
    return { ok: false, reason: 'the cluster has no primary now (stolonctl status)' };
  }
  const primaryKeeper = master.spec.keeperUID;
  if (cd.keepers[primaryKeeper]?.status.healthy !== true || !master.status.healthy) {
    return { ok: false, reason: `the primary's keeper ${primaryKeeper} is not healthy (stolonctl status)` };
  }
  if (infos[primaryKeeper] === undefined) {
    return { ok: false, reason: `the primary's keeper ${primaryKeeper} publishes no info (its lease expired: is it running?)` };
  }
  const standbys = Object.values(cd.dbs)
    .filter((d) => d.spec.followConfig?.type === 'internal' && d.spec.followConfig.dbuid === master.uid)
    .filter((d) => {
      const k = cd.keepers[d.spec.keeperUID];
      const healthy = d.status.healthy && k?.status.healthy === true && infos[d.spec.keeperUID] !== undefined;
      return ineligibility({ db: d, canBeMaster: true }, master, { healthy, maxStandbyLag: spec.maxStandbyLag }) === undefined;
    })
    .sort((a, b) => {
      const sa = master.spec.synchronousStandbys.includes(a.uid) ? 1 : 0;
      const sb = master.spec.synchronousStandbys.includes(b.uid) ? 1 : 0;
      return sa - sb || b.status.xLogPos - a.status.xLogPos || a.spec.keeperUID.localeCompare(b.spec.keeperUID);
    });
  const primaryServer = keeperBackupServer(infos[primaryKeeper]);
  const served = standbys.find((d) => keeperBackupServer(infos[d.spec.keeperUID]) !== undefined);
  if (primaryServer !== undefined && served !== undefined) {
    return {
      ok: true,
      keeperUID: served.spec.keeperUID,
      choice: `from the standby of keeper ${served.spec.keeperUID} (healthy, caught up; the primary's keeper ${primaryKeeper} serves pgBackRest over TLS)`,
      primary: { keeperUID: primaryKeeper, ...pickServer(primaryServer) },
    };
  }
  const best = standbys[0];
  const why =
    best === undefined
      ? 'no healthy, caught-up standby'
      : `keeper ${best.spec.keeperUID} holds a healthy, caught-up standby, but ${primaryServer === undefined ? `the primary's keeper ${primaryKeeper} runs no` : 'no such standby\'s keeper runs a'} ` +
        'pgBackRest TLS server (--backup-server-port, docs/backup.md), which a backup from a standby needs';
  return { ok: true, keeperUID: primaryKeeper, choice: `from the primary's keeper ${primaryKeeper}: ${why}` };
}

/** The fields of {@link BackupServer} only (an info may carry more). */
function pickServer(s: BackupServer): BackupServer {
  return { host: s.host, port: s.port, pgData: s.pgData, pgPort: s.pgPort, socketPath: s.socketPath, user: s.user };
}

/** A request that stops a new one: started and still running, or not started yet but still startable. */
export interface OutstandingBackup {
  readonly request: BackupRequest;
  readonly state: 'pending' | 'running';
  /** The keeper's run (state `running`). */
  readonly run?: KeeperBackupRun;
}

/**
 * The stored backup request, if it is still outstanding: its keeper reports it running, or has
 * not reported it yet while it is within {@link BACKUP_START_WINDOW_MS} of `requestedAt` and that
 * keeper publishes an info. A request its keeper reports done or failed, or that can no longer
 * start, is not outstanding (pgBackRest's own stanza lock still stops two backups at once).
 * @param nowMs wall-clock ms (Date.now())
 */
export function outstandingBackup(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>, nowMs: number): OutstandingBackup | undefined {
  const request = cd.cluster.status.backupRequest;
  if (request === undefined) {
    return undefined;
  }
  const info = infos[request.keeperUID];
  const run = keeperBackupRun(info);
  if (run?.requestId === request.id) {
    return run.state === 'running' ? { request, state: 'running', run } : undefined;
  }
  const age = nowMs - Date.parse(request.requestedAt);
  return info !== undefined && age < BACKUP_START_WINDOW_MS ? { request, state: 'pending' } : undefined;
}

/** The pieces of `pgbackrest info --output=json` read here (https://pgbackrest.org/command.html#command-info). */
const infoJson = z.array(
  z.looseObject({
    name: z.string(),
    status: z.looseObject({ code: z.number(), message: z.string() }),
    db: z.array(z.looseObject({ id: z.number() })).optional(),
    archive: z.array(z.looseObject({ database: z.looseObject({ id: z.number() }), min: z.string().nullable(), max: z.string().nullable() })).optional(),
    backup: z
      .array(
        z.looseObject({
          label: z.string(),
          type: backupType,
          timestamp: z.looseObject({ start: z.number(), stop: z.number() }),
          archive: z.looseObject({ start: z.string().nullable(), stop: z.string().nullable() }),
          lsn: z.looseObject({ start: z.string().nullable(), stop: z.string().nullable() }).optional(),
          info: z.looseObject({ size: z.number(), repository: z.looseObject({ size: z.number() }) }),
          prior: z.string().nullable().optional(),
          error: z.boolean().optional(),
        }),
      )
      .optional(),
  }),
);

/** `{ [key]: v }`, or `{}` when pgBackRest gave null or nothing. */
function field<K extends string>(key: K, v: string | null | undefined): Partial<Record<K, string>> {
  return v === null || v === undefined ? {} : ({ [key]: v } as Record<K, string>);
}

/** pgBackRest's stanza status code "no valid backups": an empty list, not an error. */
const NO_VALID_BACKUPS = 2;

/**
 * Turns `pgbackrest info --output=json` (of one stanza, or all) into the catalog a keeper
 * publishes: the stanza's newest {@link BACKUP_CATALOG_LIMIT} backups, oldest first, and the
 * archived WAL range of its current database. A stanza status other than ok or "no valid backups"
 * (e.g. "missing stanza path") becomes `error`.
 * @param stdout the command's standard output
 * @param refreshedAt RFC 3339 time of the read
 * @throws Error when the output is not the JSON pgBackRest 2.x prints (message says what is wrong)
 */
export function backupCatalogFromInfo(stdout: string, stanza: string, refreshedAt: string): BackupCatalog {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new Error(`pgbackrest info printed no JSON: ${stdout.slice(0, 200)}`);
  }
  const parsed = infoJson.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new Error(`pgbackrest info printed unexpected JSON at ${first?.path.join('.') ?? '?'}: ${first?.message ?? ''}`);
  }
  const entry = parsed.data.find((s) => s.name === stanza);
  if (entry === undefined) {
    return { refreshedAt, stanza, backups: [], error: `pgbackrest info does not list stanza ${stanza}` };
  }
  const all: BackupCatalogEntry[] = (entry.backup ?? []).map((b) => ({
    label: b.label,
    type: b.type as BackupType,
    startTime: new Date(b.timestamp.start * 1000).toISOString(),
    stopTime: new Date(b.timestamp.stop * 1000).toISOString(),
    walStart: b.archive.start ?? '',
    walStop: b.archive.stop ?? '',
    ...field('lsnStart', b.lsn?.start),
    ...field('lsnStop', b.lsn?.stop),
    sizeBytes: b.info.size,
    repoSizeBytes: b.info.repository.size,
    ...field('reference', b.prior),
    ...(b.error === true ? { error: true } : {}),
  }));
  const backups = all.slice(-BACKUP_CATALOG_LIMIT);
  const dbId = entry.db?.at(-1)?.id;
  const archive = entry.archive?.find((a) => a.database.id === dbId);
  const ok = entry.status.code === 0 || entry.status.code === NO_VALID_BACKUPS;
  return {
    refreshedAt,
    stanza,
    backups,
    ...(all.length > backups.length ? { omitted: all.length - backups.length } : {}),
    ...field('walMin', archive?.min),
    ...field('walMax', archive?.max),
    ...(ok ? {} : { error: `stanza ${stanza}: ${entry.status.message} (pgBackRest status ${entry.status.code})` }),
  };
}
