/**
 * pg_rewind: repairs a stopped former primary's PGDATA so it can follow the new primary, instead
 * of copying it all again. Crash recovery in single-user mode first when it was not shut down
 * cleanly, a CHECKPOINT of the source, and this node's own files kept across the rewind.
 * Replacing PGDATA instead: pg-clone.ts. The manager as a whole: pg-manager.ts.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { pgLib } from './pg-lib.js';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import { buildConnInfo, clientSslParams, parseClusterState, parseLsn, parseRewindOutput, renderPgpassLine } from './config.js';
import type { ConnTarget, DbClusterState, RewindResult } from './manager.js';
import type { PgContext } from './pg-context.js';
import { OUTPUT_LIMIT, commandFailed, lastLines, throwIfAborted, type ExecResult } from './pg-exec.js';
import { readControlData } from './pg-probe.js';
import { CONNECT_TIMEOUT_MS, endQuietly } from './pg-socket.js';
import {
  LAST_GOOD,
  LEGACY_REPL_PASSFILE,
  dataWrite,
  ensureEmptyFile,
  exists,
  fsyncDir,
  putBack,
  readIfExists,
  requireInitialized,
} from './pgdata.js';
import { isRunning, waitForDeadPostmaster } from './postmaster-pid.js';

/**
 * Files of PGDATA that belong to this node, not to the data: pg_rewind would replace them by
 * the source's (or delete them), so they are saved before and put back after it. (The
 * replication password file is outside PGDATA, out of pg_rewind's reach.)
 */
const NODE_FILES = [
  'postgresql.conf',
  'pg_hba.conf',
  'postgresql.auto.conf',
  `postgresql.conf${LAST_GOOD}`,
  `pg_hba.conf${LAST_GOOD}`,
] as const;

/**
 * pg_rewind of the stopped instance onto `source`'s timeline:
 *
 * 1. pg_control must say "shut down" or "shut down in recovery"; otherwise crash recovery runs
 *    first in single-user mode (`postgres --single -D PGDATA -c archive_mode=on -c
 *    archive_command=false template1 < /dev/null`, as Patroni does: the archive settings keep
 *    the end-of-recovery checkpoint from recycling WAL that pg_rewind still has to read), with
 *    the signal files moved away meanwhile (single-user mode refuses standby mode);
 * 2. `localEnd` is read from pg_control, see {@link RewindResult.localEnd}; a symlinked
 *    postgresql.auto.conf (Stolon's `/dev/null` trick, which pg_rewind rejects) is replaced by
 *    an empty file; the source gets a CHECKPOINT, so its control file shows its new timeline
 *    even right after its promotion;
 * 3. this node's files ({@link NODE_FILES}: configuration, last-good copies) are saved, because
 *    pg_rewind replaces them by the source's;
 * 4. `pg_rewind --target-pgdata=PGDATA --source-server='<conninfo>' --progress` as the OS user;
 *    the conninfo has `dbname=postgres`, `sslmode=prefer` (`verify-full` with the manager's
 *    `peerSsl`, see `clientSslParams`), `connect_timeout=10`,
 *    `options='-c synchronous_commit=off'` (Stolon's, so a synchronous primary without a
 *    standby cannot block it) and `passfile=` pointing at a temporary password file;
 * 5. the saved files are put back (also after a failure), a replication password file an
 *    earlier version kept in PGDATA (ours, or the source's copied over) is removed, and on
 *    success `standby.signal` replaces any `recovery.signal`.
 *
 * @param source the new primary, as a superuser (pg_rewind reads its files with
 *   pg_read_binary_file).
 * @param signal aborting kills the running step; PGDATA is then unusable (base backup next).
 * @throws StolonError `DATA_DIR_INVALID` when running or not initialised;
 *   `PG_COMMAND_FAILED` (transient) when single-user crash recovery failed;
 *   `PG_COMMAND_FAILED` (not transient) with pg_rewind's stderr tail (never a password);
 *   `ABORTED`.
 * @see https://www.postgresql.org/docs/current/app-pgrewind.html
 * @see https://www.postgresql.org/docs/current/app-postgres.html (single-user mode)
 */
export async function rewind(ctx: PgContext, source: ConnTarget, signal?: AbortSignal): Promise<RewindResult> {
  if (await isRunning(ctx.pgData)) {
    throw new StolonError('DATA_DIR_INVALID', `cannot rewind ${ctx.pgData} while postgres runs on it; stop it first`);
  }
  await requireInitialized(ctx.pgData, 'rewind');
  let control = await readControlData(ctx);
  let state = parseClusterState(control.get('Database cluster state'));
  if (state !== 'shut down' && state !== 'shut down in recovery') {
    await crashRecover(ctx, state, signal);
    control = await readControlData(ctx);
    state = parseClusterState(control.get('Database cluster state'));
    if (state !== 'shut down' && state !== 'shut down in recovery') {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `after single-user crash recovery pg_control still says ${JSON.stringify(state ?? control.get('Database cluster state'))}; fall back to a base backup`,
        { transient: true },
      );
    }
  }
  const lsnOf = (label: string): number => {
    const v = control.get(label);
    return v === undefined ? 0 : parseLsn(v);
  };
  const localEnd = Math.max(lsnOf('Latest checkpoint location'), lsnOf('Minimum recovery ending location'));
  const localTimeline = Number(control.get("Latest checkpoint's TimeLineID") ?? '0');

  // Stolon's postgresql.auto.conf → /dev/null symlink makes pg_rewind fail; ours is a file.
  const auto = join(ctx.pgData, 'postgresql.auto.conf');
  if ((await fs.lstat(auto).catch(() => undefined))?.isSymbolicLink() === true) {
    await dataWrite(ctx.pgData, 'replacing the postgresql.auto.conf symlink', () => ctx.exec.writeAtomic(auto, ''));
  }
  await checkpointSource(ctx, source);
  const saved = await snapshotNodeFiles(ctx);
  ctx.log.info(
    { pgData: ctx.pgData, host: source.host, port: source.port, localEnd },
    `rewinding onto the timeline of ${source.host}:${source.port} (pg_rewind)`,
  );
  let output = '';
  let res: ExecResult;
  try {
    res = await ctx.exec.withSecretFile(renderPgpassLine(source.user, source.password), (pgpass) => {
      const conninfo = buildConnInfo({
        application_name: 'stolon-ts-rewind',
        connect_timeout: '10',
        dbname: 'postgres',
        host: source.host,
        options: '-c synchronous_commit=off',
        passfile: pgpass,
        port: String(source.port),
        ...clientSslParams(ctx.peerSsl),
        user: source.user,
      });
      return ctx.exec.run('pg_rewind', [`--target-pgdata=${ctx.pgData}`, `--source-server=${conninfo}`, '--progress'], {
        env: { LC_ALL: 'C' },
        signal,
        supervised: true,
        // The divergence line comes first; the stderr kept at the end is only a tail.
        onStderr: (chunk) => {
          if (output.length < OUTPUT_LIMIT) {
            output += chunk;
          }
        },
      });
    });
  } finally {
    await dataWrite(ctx.pgData, 'putting back the node configuration after pg_rewind', () => restoreNodeFiles(ctx, saved));
  }
  throwIfAborted(res, 'pg_rewind');
  if (res.code !== 0) {
    throw commandFailed('pg_rewind', res, 'fall back to a base backup');
  }
  const parsed = parseRewindOutput(output);
  let result: RewindResult;
  if (parsed !== undefined) {
    result = { ...parsed, localEnd };
  } else if (/no rewind required/.test(output)) {
    // Same timeline as the source ("source and target cluster are on the same timeline"):
    // nothing diverged, the local WAL simply ends earlier.
    result = { divergedAt: localEnd, divergedTimeline: localTimeline, localEnd, rewound: false };
  } else {
    throw new StolonError(
      'PG_COMMAND_FAILED',
      `pg_rewind succeeded but printed no divergence point: ${lastLines(output, 10)}; fall back to a base backup`,
    );
  }
  await dataWrite(ctx.pgData, 'writing standby.signal after pg_rewind', async () => {
    // A rewound PGDATA must replay the source's WAL before it is consistent: never start it
    // as a primary.
    await fs.rm(join(ctx.pgData, 'recovery.signal'), { force: true });
    await ensureEmptyFile(ctx.exec, join(ctx.pgData, 'standby.signal'));
    await fsyncDir(ctx.pgData);
  });
  ctx.log.info({ pgData: ctx.pgData, ...result }, 'pg_rewind complete');
  return result;
}

/**
 * Crash recovery of a stopped, uncleanly shut down instance in single-user mode, so that
 * pg_rewind gets a cleanly shut down target (Patroni's `ensure_clean_shutdown`). The signal
 * files are moved away meanwhile and put back afterwards, whatever happens.
 * @throws StolonError `PG_COMMAND_FAILED` (transient) with the server's stderr tail; `ABORTED`.
 */
async function crashRecover(ctx: PgContext, state: DbClusterState | undefined, signal: AbortSignal | undefined): Promise<void> {
  ctx.log.warn(
    { pgData: ctx.pgData, clusterState: state },
    'postgres was not shut down cleanly; running crash recovery in single-user mode before pg_rewind',
  );
  await waitForDeadPostmaster(ctx);
  const signals: string[] = [];
  for (const name of ['standby.signal', 'recovery.signal']) {
    if (await exists(join(ctx.pgData, name))) {
      signals.push(name);
      await fs.rm(join(ctx.pgData, name));
    }
  }
  try {
    const res = await ctx.exec.run(
      'postgres',
      ['--single', '-D', ctx.pgData, '-c', 'archive_mode=on', '-c', 'archive_command=false', 'template1'],
      { env: { LC_ALL: 'C' }, signal, supervised: true },
    );
    throwIfAborted(res, 'single-user crash recovery');
    if (res.code !== 0) {
      throw commandFailed('postgres --single (crash recovery)', res, 'retry later or fall back to a base backup', true);
    }
  } finally {
    for (const name of signals) {
      await ensureEmptyFile(ctx.exec, join(ctx.pgData, name));
    }
  }
}

/**
 * Runs CHECKPOINT on the rewind source. pg_rewind takes the source's timeline from its control
 * file, which a freshly promoted primary updates only at its first checkpoint after the
 * promotion; before that pg_rewind finds both servers "on the same timeline", rewinds nothing,
 * and the target then cannot follow (its WAL is past the fork). Patroni checkpoints after a
 * promotion for the same reason.
 * @throws StolonError `PG_COMMAND_FAILED` (not transient, as a failed pg_rewind: fall back to a
 *   base backup) when the source cannot be reached or the checkpoint fails.
 * @see https://www.postgresql.org/docs/current/app-pgrewind.html
 */
async function checkpointSource(ctx: PgContext, source: ConnTarget): Promise<void> {
  const client = new (pgLib().Client)({
    host: source.host,
    port: source.port,
    user: source.user,
    password: source.password,
    database: 'postgres',
    application_name: 'stolon-ts-rewind',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: 60_000,
    // As pg_rewind's own connection: verified TLS with a CA (node's TLS checks the host name or
    // IP, unless the mode is verify-ca).
    ...(ctx.peerSsl === undefined
      ? {}
      : ctx.peerSsl.mode === 'require'
        ? { ssl: { rejectUnauthorized: false } }
        : {
            ssl: {
              ca: await fs.readFile(ctx.peerSsl.rootCert, 'utf8'),
              ...(ctx.peerSsl.mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
            },
          }),
  });
  client.on('error', (err) => ctx.log.debug({ err: errorMessage(err) }, 'rewind source connection error'));
  try {
    await client.connect();
    await client.query('CHECKPOINT');
  } catch (err) {
    throw new StolonError(
      'PG_COMMAND_FAILED',
      `cannot CHECKPOINT the rewind source ${source.host}:${source.port} before pg_rewind: ${errorMessage(err)}; fall back to a base backup`,
      { transient: false, cause: err },
    );
  } finally {
    await endQuietly(client);
  }
}

/** Contents of {@link NODE_FILES} (null = absent), to put back after pg_rewind. */
async function snapshotNodeFiles(ctx: PgContext): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (const name of NODE_FILES) {
    out.set(name, await readIfExists(join(ctx.pgData, name)));
  }
  return out;
}

/**
 * Puts back what {@link snapshotNodeFiles} saw (files already identical are not rewritten) and
 * removes {@link LEGACY_REPL_PASSFILE}.
 */
async function restoreNodeFiles(ctx: PgContext, saved: ReadonlyMap<string, string | null>): Promise<void> {
  await fs.rm(join(ctx.pgData, LEGACY_REPL_PASSFILE), { force: true });
  for (const [name, content] of saved) {
    const path = join(ctx.pgData, name);
    const lst = await fs.lstat(path).catch(() => undefined);
    if (content === null ? lst === undefined : lst?.isFile() === true && (await readIfExists(path)) === content) {
      continue;
    }
    await putBack(ctx.exec, path, content);
  }
  await fsyncDir(ctx.pgData);
}
