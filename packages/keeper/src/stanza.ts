/**
 * `pgbackrest stanza-create` on the primary (docs/architecture.md, "How archiving works"): archive-push
 * refuses to archive into a stanza that does not exist, so the primary's keeper creates it once
 * PostgreSQL runs as primary — after `init`, and again on each keeper that becomes primary (after
 * a failover or switchover), where it finds the stanza in place and checks it matches this
 * database (stanza-create is idempotent). Then it pushes the complete segments of older timelines
 * still in `pg_wal` (`catchUpSegments`: what a promoted standby received and the failed primary may
 * not have archived). It runs in the background, never holding up a pass; a failure is logged,
 * published (`postgresState.archive.stanzaError`) and retried, never fatal: the WAL waits in
 * `pg_wal` meanwhile.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { errorMessage, type BackupSpec, type ClusterData } from '@stolon-ts/cluster';
import { PGBACKREST, catchUpSegments, pgbackrestCommand, type PgbackrestLocal } from './archiving.js';
import { archivingFor } from './pgconfig.js';
import type { KeeperRuntime } from './runtime.js';

/** Bound of one stanza-create, in ms (a repository that does not answer must not block the next attempt forever). */
const STANZA_CREATE_TIMEOUT_MS = 120_000;
/** Wait after a failed stanza-create before the next attempt, in ms. */
const STANZA_RETRY_MS = 30_000;

/** The last `n` non-empty lines of `text`, joined with ` / ` (pgBackRest's error is on its last lines). */
function lastLinesOf(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-n)
    .join(' / ');
}

/** The stanza-create state of one keeper process. */
export interface StanzaState {
  /** The pgBackRest options it ran (or runs) with, joined: another spec means another run. */
  readonly key: string;
  readonly stanza: string;
  running: boolean;
  done: boolean;
  /** The last failure's message; undefined after a success. */
  error: string | undefined;
  /** When (monotonic ms) the last attempt ended. */
  endedAtMs: number;
}

/**
 * Starts `stanza-create` in the background when this keeper's PostgreSQL runs as the primary, the
 * spec's `backup` section is applied here, and it has not succeeded yet with these options (a
 * failed one is tried again after {@link STANZA_RETRY_MS}). Not primary: forgets the state, so the
 * next time this keeper becomes primary it runs again. Never throws.
 */
export function maintainStanza(
  rt: KeeperRuntime,
  cd: ClusterData | undefined,
  obs: { readonly running: boolean; readonly role?: string | undefined; readonly timelineId: number },
): void {
  const archiving = archivingFor(rt.config, cd);
  if (archiving === undefined || !rt.isPrimary || !obs.running || obs.role !== 'master') {
    if (rt.stanza !== undefined && !rt.stanza.running) {
      rt.stanza = undefined;
    }
    return;
  }
  const args = pgbackrestCommand('stanza-create', archiving.backup, archiving.local, { port: rt.config.pgPort, user: rt.config.suUsername });
  const key = args.join(' ');
  const cur = rt.stanza;
  if (cur !== undefined && cur.key === key && (cur.running || cur.done || performance.now() - cur.endedAtMs < STANZA_RETRY_MS)) {
    return;
  }
  if (cur?.running === true) {
    return;
  }
  const stanza = args.find((a) => a.startsWith('--stanza='))?.slice('--stanza='.length) ?? '';
  const state: StanzaState = { key, stanza, running: true, done: false, error: cur?.key === key ? cur.error : undefined, endedAtMs: 0 };
  rt.stanza = state;
  rt.log.info({ stanza }, `pgbackrest stanza-create for stanza ${stanza} (this keeper's PostgreSQL is the primary)`);
  void rt.pg
    .runTool(PGBACKREST, args, { timeoutMs: STANZA_CREATE_TIMEOUT_MS })
    .then(
      async (res) =>
        res.code === 0
          ? catchUp(rt, archiving.backup, archiving.local, obs.timelineId)
          : `pgbackrest stanza-create exited with ${res.code ?? 'a signal'}: ${lastLinesOf(`${res.stdout}\n${res.stderr}`, 3)}`,
      (err: unknown) => `pgbackrest stanza-create could not run: ${errorMessage(err)}`,
    )
    .then((error) => {
      state.running = false;
      state.endedAtMs = performance.now();
      state.done = error === undefined;
      state.error = error;
      if (error === undefined) {
        rt.log.info({ stanza }, `pgbackrest stanza ${stanza} is in place: WAL archiving can proceed`);
      } else {
        rt.log.error({ stanza, err: error }, `${error}; WAL waits in pg_wal, retried in ${STANZA_RETRY_MS / 1000} s`);
      }
      rt.trigger('stanza-create ended');
    });
}

/**
 * Pushes {@link catchUpSegments} of this primary's `pg_wal` with `pgbackrest archive-push`, one at a
 * time (a segment already archived with the same content is accepted).
 * @returns undefined when every push succeeded, else the first failure's sentence
 */
async function catchUp(rt: KeeperRuntime, backup: BackupSpec, local: PgbackrestLocal, timeline: number): Promise<string | undefined> {
  let files: string[];
  try {
    files = catchUpSegments(await fs.readdir(join(local.pgData, 'pg_wal')), timeline);
  } catch (err) {
    return `cannot list pg_wal to push the older timelines' segments: ${errorMessage(err)}`;
  }
  const push = pgbackrestCommand('archive-push', backup, local);
  for (const f of files) {
    const res = await rt.pg.runTool(PGBACKREST, [...push, join(local.pgData, 'pg_wal', f)], { timeoutMs: STANZA_CREATE_TIMEOUT_MS }).catch((err: unknown) => errorMessage(err));
    if (typeof res === 'string' || res.code !== 0) {
      return `pgbackrest archive-push of ${f} (a segment of an older timeline this primary received as a standby) failed: ${typeof res === 'string' ? res : lastLinesOf(`${res.stdout}\n${res.stderr}`, 3)}`;
    }
  }
  if (files.length > 0) {
    rt.log.info({ segments: files.length, first: files[0], last: files[files.length - 1] }, `pushed ${files.length} segments of older timelines from pg_wal to the archive`);
  }
  return undefined;
}
