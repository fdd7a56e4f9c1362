/**
 * Probes: what PostgreSQL reports about itself (`observe`: role, system id, timeline, WAL
 * position, replication, slots, pending_restart), pg_controldata of a stopped instance, the
 * timeline history files in pg_wal, and whether recovery has ended. Never changes anything.
 * The manager as a whole: pg-manager.ts.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Client } from 'pg';
import { StolonError, errorMessage, type TimelineHistoryEntry } from '@stolon-ts/cluster';
import { parseClusterState, parseControlData, parseLsn, parseTimelineHistory } from './config.js';
import type { ArchiverObservation, DbClusterState, PgObservation } from './manager.js';
import type { PgContext } from './pg-context.js';
import { exitText, lastLines } from './pg-exec.js';
import { endQuietly } from './pg-socket.js';
import { exists, readIfExists } from './pgdata.js';
import { isRunning } from './postmaster-pid.js';

/**
 * Probes the instance; never throws. When no connection can be made, `running` is false,
 * `role` comes from `standby.signal`, and `systemId`/`timelineId`/`xLogPos`/`clusterState`
 * come from pg_controldata (latest checkpoint) when PGDATA is initialised.
 *
 * Connected: a standby also reports its received LSN, whether its WAL receiver streams, and the
 * commit time of the last transaction it replayed. The timeline of a primary is the one of its current WAL file (a promotion is
 * visible at once, before the next checkpoint); of a standby `received_tli` from
 * pg_stat_wal_receiver, else the latest checkpoint's. `pendingRestart` is
 * `pg_settings.pending_restart` (meaningful after a reload). `timelinesHistory` is parsed from
 * `pg_wal/<timeline>.history` (a standby receives it from its primary), running or not.
 *
 * @see https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-RECOVERY-INFO-TABLE
 * @see https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-CONTROL-CHECKPOINT
 * @see https://www.postgresql.org/docs/current/view-pg-settings.html
 */
export async function observe(ctx: PgContext): Promise<PgObservation> {
  const empty: PgObservation = {
    initialized: false,
    running: false,
    role: undefined,
    systemId: '',
    timelineId: 0,
    xLogPos: 0,
    replication: [],
    slots: [],
    olderWalFile: '',
    pendingRestart: [],
    timelinesHistory: [],
  };
  try {
    if (!(await exists(join(ctx.pgData, 'PG_VERSION')))) {
      return { ...empty, error: `${ctx.pgData} is not initialised` };
    }
    const fileRole = (await exists(join(ctx.pgData, 'standby.signal'))) ? 'standby' : 'master';
    const olderWalFile = await oldestWalFile(ctx);
    const base: PgObservation = { ...empty, initialized: true, role: fileRole, olderWalFile };
    // The kept probe connection (PgSocket.probe); a reused one the server closed since (a restart,
    // a fence) is dropped and the probe tried once more on a new connection, so a pass does not
    // report a failed probe for a connection it did not need. A timeout is not retried: the
    // instance is slow, not the connection stale.
    for (let attempt = 0; ; attempt++) {
      let conn: { readonly client: Client; readonly reused: boolean };
      try {
        conn = await ctx.socket.probe();
      } catch (err) {
        const control = await controlData(ctx);
        const why = (await isRunning(ctx.pgData))
          ? `postgres is running but not accepting connections: ${errorMessage(err)}`
          : 'postgres is not running';
        const timelinesHistory = await timelineHistory(ctx, control.timelineId ?? 0);
        return { ...base, ...control, timelinesHistory, error: why };
      }
      try {
        const probed = await probeQuery(conn.client);
        const timelinesHistory = await timelineHistory(ctx, probed.timelineId ?? 0);
        return { ...base, ...probed, timelinesHistory, running: true };
      } catch (err) {
        await ctx.socket.dropProbe(conn.client);
        if (attempt > 0 || !conn.reused || isTimeout(err)) {
          return { ...base, running: true, error: `probe query failed: ${errorMessage(err)}` };
        }
      }
    }
  } catch (err) {
    return { ...empty, error: `probe failed: ${errorMessage(err)}` };
  }
}

/** A statement or client-side query timeout (SQLSTATE 57014, or the driver's `Query read timeout`). */
function isTimeout(err: unknown): boolean {
  return (err as { code?: unknown }).code === '57014' || /timeout/i.test(errorMessage(err));
}

/**
 * `Database system identifier` from pg_controldata; works while stopped.
 * @returns undefined when PGDATA has no PG_VERSION.
 * @throws StolonError `DATA_DIR_INVALID` when pg_controldata fails or prints no identifier.
 * @see https://www.postgresql.org/docs/current/app-pgcontroldata.html
 */
export async function systemIdentifier(ctx: PgContext): Promise<string | undefined> {
  if (!(await exists(join(ctx.pgData, 'PG_VERSION')))) {
    return undefined;
  }
  const id = (await readControlData(ctx)).get('Database system identifier');
  if (id === undefined || !/^\d+$/.test(id)) {
    throw new StolonError('DATA_DIR_INVALID', `pg_controldata printed no system identifier for ${ctx.pgData}`);
  }
  return id;
}

/**
 * Waits until this standby's WAL receiver no longer streams: `pg_stat_wal_receiver` has no row
 * or a status other than `streaming`, asked every `pollMs` on one connection (a new one after an
 * error). When its primary shuts down cleanly, the walsender exits only once the standby confirmed
 * it flushed every WAL record up to the shutdown checkpoint, so the end of streaming is the moment
 * the standby holds the primary's final WAL.
 * @param timeoutMs how long to wait at most, ms
 * @param wanted asked before every check; waiting ends when it returns false
 * @returns true when streaming ended; false when `wanted` turned false or the time ran out
 * @see https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-WAL-RECEIVER-VIEW
 * @see https://www.postgresql.org/docs/current/server-shutdown.html
 */
export async function waitStreamingEnd(ctx: PgContext, timeoutMs: number, pollMs: number, wanted: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let client: Client | undefined;
  try {
    while (wanted() && Date.now() < deadline) {
      try {
        client ??= await ctx.socket.connect();
        const r = await client.query<{ status: string }>('select status from pg_stat_wal_receiver');
        if (r.rows[0]?.status !== 'streaming') {
          return true;
        }
      } catch {
        if (client !== undefined) {
          await endQuietly(client);
          client = undefined;
        }
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
    return false;
  } finally {
    if (client !== undefined) {
      await endQuietly(client);
    }
  }
}

/** Undefined once the instance answers and is out of recovery; otherwise why not (for messages). */
export async function stillInRecovery(ctx: PgContext): Promise<string | undefined> {
  try {
    const client = await ctx.socket.connect();
    try {
      const r = await client.query<{ in_recovery: boolean }>('select pg_is_in_recovery() as in_recovery');
      return r.rows[0]?.in_recovery === false ? undefined : 'still in recovery';
    } finally {
      await endQuietly(client);
    }
  } catch (err) {
    return errorMessage(err);
  }
}

/**
 * pg_controldata output as label → value ({@link parseControlData}).
 * @throws StolonError `DATA_DIR_INVALID` when pg_controldata fails (no or unreadable pg_control).
 */
export async function readControlData(ctx: PgContext): Promise<Map<string, string>> {
  const res = await ctx.exec.run('pg_controldata', ['-D', ctx.pgData], { env: { LC_ALL: 'C' }, timeoutMs: 10_000 });
  if (res.code !== 0) {
    throw new StolonError(
      'DATA_DIR_INVALID',
      `pg_controldata -D ${ctx.pgData} failed (${exitText(res)}): ${lastLines(res.stderr || res.stdout, 5)}`,
    );
  }
  return parseControlData(res.stdout);
}

/** The head of {@link PROBE_SQL}: role, system id, checkpoint timeline, postmaster start. */
const HEAD_SQL = `select pg_is_in_recovery() as in_recovery,
            (select system_identifier::text from pg_control_system()) as system_id,
            (select timeline_id from pg_control_checkpoint()) as checkpoint_tli,
            (extract(epoch from pg_postmaster_start_time()) * 1000)::bigint::text as started_ms`;

/** The streaming standbys of {@link PROBE_SQL}. */
const REPLICATION_SQL = "select application_name, sync_state from pg_stat_replication where application_name <> '' order by application_name";

/**
 * The WAL positions of {@link PROBE_SQL}, for either role in one statement: a primary's insert
 * position and its WAL file (the functions that fail during recovery are guarded by
 * `pg_is_in_recovery()`; a primary never goes back into recovery while running), a standby's
 * received and replayed positions, its WAL receiver and the newest segment's timeline (the
 * directory listing only in recovery). The standby functions return NULL on a primary.
 */
const POSITIONS_SQL = `select case when not pg_is_in_recovery() then pg_current_wal_lsn()::text end as lsn,
            case when not pg_is_in_recovery() then pg_walfile_name(pg_current_wal_lsn()) end as walfile,
            pg_last_wal_receive_lsn()::text as received, pg_last_wal_replay_lsn()::text as replayed,
            (select received_tli from pg_stat_wal_receiver) as received_tli,
            (select status from pg_stat_wal_receiver) as receiver_status,
            (extract(epoch from pg_last_xact_replay_timestamp()) * 1000)::bigint::text as replay_ms,
            case when pg_is_in_recovery() then
              (select max(substr(name, 1, 8)) from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$') end as segment_tli`;

/** The kept physical replication slots of {@link PROBE_SQL}. */
const SLOTS_SQL = "select slot_name from pg_replication_slots where slot_type = 'physical' and not temporary order by slot_name";

/** The settings waiting for a restart, of {@link PROBE_SQL}. */
const PENDING_SQL = 'select name from pg_settings where pending_restart order by name';

/**
 * `pg_stat_archiver` and the `.ready` files with their segments' sizes, of {@link PROBE_SQL}.
 * With archive_mode off PostgreSQL makes no .ready files: the one-time filters skip listing
 * archive_status and pg_wal on every keeper pass of a cluster that does not archive.
 */
const ARCHIVER_SQL = `with ready as (select left(name, -6) as wal from pg_ls_archive_statusdir()
                     where name like '%.ready' and current_setting('archive_mode') <> 'off')
     select archived_count::text as archived, last_archived_wal as last_archived,
            (extract(epoch from last_archived_time) * 1000)::bigint::text as archived_ms,
            failed_count::text as failed, last_failed_wal as last_failed,
            (extract(epoch from last_failed_time) * 1000)::bigint::text as failed_ms,
            (select count(*) from ready)::text as ready,
            (select coalesce(sum(w.size), 0) from ready
               join (select name, size from pg_ls_waldir() where current_setting('archive_mode') <> 'off') w on w.name = ready.wal)::text as ready_bytes
       from pg_stat_archiver`;

/**
 * Every statement of {@link probeQuery}, sent as one simple-protocol query: one round trip (one
 * wake-up of the keeper and of the backend) per pass instead of six. The statements run in order,
 * in one implicit transaction; `statement_timeout` applies to each. Replication comes before the
 * WAL position: a standby reported `sync` there is already in synchronous_standby_names, so every
 * commit acknowledged without it lies below the position read next. The sentinel counts a new
 * synchronous standby as in sync only once it reaches that position (packages/cluster/src/sync.ts,
 * SyncCatchUp).
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT
 */
const PROBE_SQL = [HEAD_SQL, REPLICATION_SQL, POSITIONS_SQL, SLOTS_SQL, PENDING_SQL, ARCHIVER_SQL].join(';\n');

/** A row of {@link HEAD_SQL}. */
interface HeadRow {
  readonly in_recovery: boolean;
  readonly system_id: string;
  readonly checkpoint_tli: number;
  readonly started_ms: string;
}

/** A row of {@link POSITIONS_SQL}. */
interface PositionsRow {
  readonly lsn: string | null;
  readonly walfile: string | null;
  readonly received: string | null;
  readonly replayed: string | null;
  readonly received_tli: number | null;
  readonly receiver_status: string | null;
  readonly replay_ms: string | null;
  readonly segment_tli: string | null;
}

/** A row of {@link ARCHIVER_SQL}. */
interface ArchiverRow {
  readonly archived: string;
  readonly last_archived: string | null;
  readonly archived_ms: string | null;
  readonly failed: string;
  readonly last_failed: string | null;
  readonly failed_ms: string | null;
  readonly ready: string;
  readonly ready_bytes: string;
}

/**
 * The connected part of {@link observe}: role, system id, timeline, WAL position (received and
 * replayed on a standby), replication, slots, pending_restart and the archiver, in one round trip
 * ({@link PROBE_SQL}).
 * @throws the driver's error when the query fails; Error when it returns fewer results than statements
 */
async function probeQuery(client: Client): Promise<Partial<PgObservation>> {
  const results = (await client.query(PROBE_SQL)) as unknown as { rows: unknown[] }[];
  if (!Array.isArray(results) || results.length !== 6) {
    throw new Error('the probe query returned fewer results than statements');
  }
  const rows = <T>(i: number): T[] => (results[i]?.rows ?? []) as T[];
  const h = rows<HeadRow>(0)[0];
  if (h === undefined) {
    throw new Error('no row from the probe query');
  }
  const repl = rows<{ application_name: string; sync_state: string }>(1);
  const row = rows<PositionsRow>(2)[0];
  let timelineId: number;
  let xLogPos: number;
  let replayedXLogPos: number | undefined;
  let standby: Pick<PgObservation, 'receivedXLogPos' | 'walReceiverStreaming' | 'lastReplayAtMs'> = {};
  if (h.in_recovery) {
    xLogPos = Math.max(
      row?.received === null || row?.received === undefined ? 0 : parseLsn(row.received),
      row?.replayed === null || row?.replayed === undefined ? 0 : parseLsn(row.replayed),
    );
    // Without a walreceiver (its primary just died, or between reconnects) there is no
    // received_tli, and the last restartpoint's timeline lags a promotion by as long as the new
    // primary's first checkpoint takes (minutes when spread). The newest WAL segment in pg_wal
    // is named after the timeline last received, which is what received_tli said. A stale
    // timeline makes the sentinel see a standby that cannot be promoted ("on timeline 3,
    // primary was on 4") or one that forked from the primary.
    const segmentTli = Number.parseInt(row?.segment_tli ?? '', 16);
    timelineId = row?.received_tli ?? Math.max(h.checkpoint_tli, Number.isSafeInteger(segmentTli) ? segmentTli : 0);
    replayedXLogPos = row?.replayed === null || row?.replayed === undefined ? undefined : parseLsn(row.replayed);
    standby = {
      ...(row?.received !== null && row?.received !== undefined ? { receivedXLogPos: parseLsn(row.received) } : {}),
      walReceiverStreaming: row?.receiver_status === 'streaming',
      ...(row?.replay_ms !== null && row?.replay_ms !== undefined ? { lastReplayAtMs: Number(row.replay_ms) } : {}),
    };
  } else {
    xLogPos = row?.lsn === null || row?.lsn === undefined ? 0 : parseLsn(row.lsn);
    // The WAL file name starts with the insert timeline: right after a promotion it is already
    // the new one, while pg_control_checkpoint() shows the old one until the next checkpoint.
    const tli = Number.parseInt(row?.walfile?.slice(0, 8) ?? '', 16);
    timelineId = Number.isSafeInteger(tli) && tli > 0 ? tli : h.checkpoint_tli;
  }
  return {
    role: h.in_recovery ? 'standby' : 'master',
    systemId: h.system_id,
    startedAtMs: Number(h.started_ms),
    timelineId,
    xLogPos,
    ...(replayedXLogPos !== undefined ? { replayedXLogPos } : {}),
    ...standby,
    replication: repl.map((r) => ({ applicationName: r.application_name, syncState: r.sync_state })),
    slots: rows<{ slot_name: string }>(3).map((r) => r.slot_name),
    pendingRestart: rows<{ name: string }>(4).map((r) => r.name),
    archiver: archiverOf(rows<ArchiverRow>(5)[0]),
  };
}

/** The archiver part of {@link probeQuery}, from its {@link ARCHIVER_SQL} row. */
function archiverOf(row: ArchiverRow | undefined): ArchiverObservation {
  const num = (v: string | null | undefined): number | undefined => (v === null || v === undefined ? undefined : Number(v));
  const archivedMs = num(row?.archived_ms);
  const failedMs = num(row?.failed_ms);
  return {
    archivedCount: num(row?.archived) ?? 0,
    ...(row?.last_archived !== null && row?.last_archived !== undefined ? { lastArchivedWal: row.last_archived } : {}),
    ...(archivedMs !== undefined ? { lastArchivedAtMs: archivedMs } : {}),
    failedCount: num(row?.failed) ?? 0,
    ...(row?.last_failed !== null && row?.last_failed !== undefined ? { lastFailedWal: row.last_failed } : {}),
    ...(failedMs !== undefined ? { lastFailedAtMs: failedMs } : {}),
    readyCount: num(row?.ready) ?? 0,
    readyBytes: num(row?.ready_bytes) ?? 0,
  };
}

/**
 * System id, checkpoint timeline, checkpoint LSN and cluster state of a stopped instance;
 * `{}` on any error.
 */
async function controlData(ctx: PgContext): Promise<{
  systemId?: string;
  timelineId?: number;
  xLogPos?: number;
  clusterState?: DbClusterState;
}> {
  try {
    const control = await readControlData(ctx);
    const out: { systemId?: string; timelineId?: number; xLogPos?: number; clusterState?: DbClusterState } = {};
    const sys = control.get('Database system identifier');
    if (sys !== undefined) {
      out.systemId = sys;
    }
    const tli = Number(control.get("Latest checkpoint's TimeLineID"));
    if (Number.isSafeInteger(tli) && tli > 0) {
      out.timelineId = tli;
    }
    const lsn = control.get('Latest checkpoint location');
    if (lsn !== undefined) {
      out.xLogPos = parseLsn(lsn);
    }
    const state = parseClusterState(control.get('Database cluster state'));
    if (state !== undefined) {
      out.clusterState = state;
    }
    return out;
  } catch {
    return {};
  }
}

/**
 * Entries of `pg_wal/<timeline>.history` ({@link parseTimelineHistory}); `[]` for timeline 1
 * or when the file is missing or unreadable (logged at debug).
 */
async function timelineHistory(ctx: PgContext, timelineId: number): Promise<TimelineHistoryEntry[]> {
  if (!Number.isSafeInteger(timelineId) || timelineId <= 1) {
    return [];
  }
  const name = `${timelineId.toString(16).toUpperCase().padStart(8, '0')}.history`;
  try {
    // Not through a link: the OS user could point one at a file of root's.
    return parseTimelineHistory((await readIfExists(join(ctx.pgData, 'pg_wal', name))) ?? '');
  } catch (err) {
    ctx.log.debug({ err: errorMessage(err), file: name }, 'cannot read the timeline history file');
    return [];
  }
}

/** Lexicographically first 24-hex-digit file in pg_wal, "" when unknown. */
async function oldestWalFile(ctx: PgContext): Promise<string> {
  try {
    const names = (await fs.readdir(join(ctx.pgData, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
    return names[0] ?? '';
  } catch {
    return '';
  }
}
