/**
 * The keeper-owned configuration files of PGDATA: postgresql.conf, pg_hba.conf, an empty
 * postgresql.auto.conf, the signal files; the replication password file next to PGDATA; their
 * validation by PostgreSQL itself, and the last configuration it accepted (`*.last-good`).
 * Rendering and parsing are pure and live in config.ts. The manager as a whole: pg-manager.ts.
 */
import { promises as fs } from 'node:fs';
import { release, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'pg';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import { parseConfigErrors, renderHba, renderIdentConf, renderPgpassLine, renderPostgresqlConf, syncfsUsable, type ConfigProblem } from './config.js';
import type { PgConfig, RecoveryConfig, WriteConfigResult } from './manager.js';
import type { PgContext } from './pg-context.js';
import { exitText, lastLines } from './pg-exec.js';
import { endQuietly } from './pg-socket.js';
import {
  LAST_GOOD,
  LEGACY_REPL_PASSFILE,
  dataWrite,
  ensureEmptyFile,
  fsyncDir,
  putBack,
  readIfExists,
  requireInitialized,
} from './pgdata.js';
import { isRunning } from './postmaster-pid.js';

/**
 * Writes postgresql.conf ({@link renderPostgresqlConf}), pg_ident.conf ({@link identConf}, before
 * pg_hba.conf, whose superuser `local` line names its map), pg_hba.conf ({@link renderHba}) and an
 * empty postgresql.auto.conf (discarding anything ALTER SYSTEM stored), each atomically
 * (temp file, fsync, rename, mode 0600, owned by the OS user). Then the recovery files:
 * `standby.signal` for the standby modes, `recovery.signal` for `recovery`, none of them for
 * `null`; for `standby` also the replication password file `ctx.replPassfile` (outside PGDATA,
 * 0600, owned by the OS user; removed in the other modes), which `primary_conninfo` names with
 * `passfile=`. A password file an earlier version left inside PGDATA is removed in every mode.
 * Does not reload.
 *
 * Validation, when postgresql.conf or pg_hba.conf changed: `postgres -C port` parses the new
 * postgresql.conf exactly as a start would (names, value syntax and ranges; it is safe on a
 * running server), and when running, `pg_file_settings` (sourcefile = our file) and
 * `pg_hba_file_rules` are checked too. `pg_file_settings` says "setting could not be applied"
 * both for a bad value and for a changed restart-only setting; since `postgres -C` already
 * accepted the value, such a row of a `postmaster`-context parameter means "pending restart".
 * Any other problem: the previous files are put back atomically and `CONFIG_INVALID` thrown.
 * What `postgres -C` cannot know (memory that cannot be allocated, a pg_hba.conf error while
 * stopped) surfaces in the next start (postmaster.ts), which points at {@link restoreLastGoodConfig}.
 *
 * @throws StolonError `CONFIG_INVALID` (`field` = `pgParameters.<name>` as the caller spelt it,
 *   `pgHBA`, or a recovery field) with PostgreSQL's message; `DATA_DIR_INVALID` (transient)
 *   when PGDATA is not initialised or a write fails; `PG_COMMAND_FAILED` (transient) when
 *   `postgres -C` fails without naming a problem (the previous files are kept).
 * @see https://www.postgresql.org/docs/current/view-pg-file-settings.html
 * @see https://www.postgresql.org/docs/current/view-pg-hba-file-rules.html
 * @see https://www.postgresql.org/docs/current/app-postgres.html (`-C`)
 */
/** `recovery_init_sync_method = syncfs` may be the default on this system (Linux ≥ 5.8): see `syncfsUsable`. */
const SYNCFS = syncfsUsable(process.platform, release());

export async function writeConfig(ctx: PgContext, config: PgConfig, recovery: RecoveryConfig | null): Promise<WriteConfigResult> {
  await requireInitialized(ctx.pgData, 'write its configuration');
  const { Maj } = await ctx.exec.binaryVersion();
  const passfile = ctx.replPassfile;
  const conf = renderPostgresqlConf(
    config,
    recovery,
    Maj,
    recovery?.mode === 'standby' ? { socketDir: ctx.socket.dir, passfile, peerSsl: ctx.peerSsl, syncfs: SYNCFS } : { socketDir: ctx.socket.dir, syncfs: SYNCFS },
  );
  const hba = renderHba(config.hba);
  const ident = await identConf(ctx);
  const confPath = join(ctx.pgData, 'postgresql.conf');
  const hbaPath = join(ctx.pgData, 'pg_hba.conf');
  const identPath = join(ctx.pgData, 'pg_ident.conf');
  const autoPath = join(ctx.pgData, 'postgresql.auto.conf');
  let previous: { conf: string | null; hba: string | null; ident: string | null } = { conf: null, hba: null, ident: null };
  await dataWrite(ctx.pgData, 'reading the current configuration', async () => {
    previous = { conf: await readIfExists(confPath), hba: await readIfExists(hbaPath), ident: await readIfExists(identPath) };
  });
  // pg_rewind and pg_basebackup bring the source's pg_ident.conf: compared on its own.
  const changed = previous.conf !== conf || previous.hba !== hba || previous.ident !== ident;
  const running = await isRunning(ctx.pgData);

  await dataWrite(ctx.pgData, 'writing the configuration', async () => {
    await ctx.socket.ensureDir();
    // Only the files whose content changed: each write is an fsync, on the promoted primary's path too.
    if (previous.conf !== conf) {
      await ctx.exec.writeAtomic(confPath, conf);
    }
    if (previous.ident !== ident) {
      await ctx.exec.writeAtomic(identPath, ident);
    }
    if (previous.hba !== hba) {
      await ctx.exec.writeAtomic(hbaPath, hba);
    }
    // Before validation: postgres -C reads postgresql.auto.conf too. A symlink (Stolon points
    // it at /dev/null) is replaced as well, since pg_rewind refuses one.
    const auto = await fs.lstat(autoPath).catch(() => undefined);
    if (auto === undefined || !auto.isFile() || auto.size > 0) {
      await ctx.exec.writeAtomic(autoPath, '');
    }
  });

  // Files that parse if the ones in place did (see parsesIfPreviousDid) skip `postgres -C`, which
  // costs a postgres start (~0.1-0.2 s) on the promoted primary's path to accepting writes.
  const check = await checkConfig(ctx, config, { parse: changed && !parsesIfPreviousDid({ conf, hba, ident }, previous), running });
  if (check.problems.length > 0) {
    await dataWrite(ctx.pgData, 'restoring the previous configuration', async () => {
      await putBack(ctx.exec, confPath, previous.conf);
      await putBack(ctx.exec, hbaPath, previous.hba);
      await fsyncDir(ctx.pgData);
    });
    const unexplained = check.problems.find((p) => p.field === undefined);
    if (unexplained !== undefined) {
      throw new StolonError(
        'PG_COMMAND_FAILED',
        `validating postgresql.conf with postgres -C failed: ${unexplained.message}; the previous configuration is kept`,
        { transient: true },
      );
    }
    const text = check.problems.map((p) => `${p.field}: ${p.message}`).join('; ');
    ctx.log.warn({ pgData: ctx.pgData, problems: check.problems }, 'rejected an invalid configuration');
    throw new StolonError('CONFIG_INVALID', `${text}; the previous configuration is kept`, {
      field: check.problems[0]?.field ?? 'pgParameters',
    });
  }

  await dataWrite(ctx.pgData, 'writing the recovery files', async () => {
    const standbySignal = join(ctx.pgData, 'standby.signal');
    const recoverySignal = join(ctx.pgData, 'recovery.signal');
    if (recovery?.mode === 'standby') {
      const line = renderPgpassLine(recovery.standby.primary.user, recovery.standby.primary.password);
      if ((await readIfExists(passfile)) !== line) {
        await ctx.exec.writeAtomic(passfile, line);
      }
    } else {
      await fs.rm(passfile, { force: true });
    }
    // After the new file is in place: until the reload, a reconnecting walreceiver still reads this one.
    await fs.rm(join(ctx.pgData, LEGACY_REPL_PASSFILE), { force: true });
    if (recovery === null) {
      await fs.rm(standbySignal, { force: true });
      await fs.rm(recoverySignal, { force: true });
    } else if (recovery.mode === 'recovery') {
      // Both files present would mean standby mode: PostgreSQL gives standby.signal precedence.
      await fs.rm(standbySignal, { force: true });
      await ensureEmptyFile(ctx.exec, recoverySignal);
    } else {
      await fs.rm(recoverySignal, { force: true });
      await ensureEmptyFile(ctx.exec, standbySignal);
    }
    await fsyncDir(ctx.pgData);
  });
  ctx.listen.address = config.listenAddress;
  ctx.listen.port = config.port;
  // A restart-only value is only proven by a restart; until then the previous last-good stays.
  if (changed && check.verifiedRunning && check.pendingRestart.length === 0) {
    await saveLastGoodConfig(ctx);
  }
  ctx.log.debug(
    { pgData: ctx.pgData, recovery: recovery?.mode ?? null, port: config.port, changed, pendingRestart: check.pendingRestart },
    'wrote postgresql.conf and pg_hba.conf',
  );
  return { changed, pendingRestart: check.pendingRestart };
}

/**
 * pg_ident.conf for this manager ({@link renderIdentConf}): this process's OS user (root when
 * it runs as root) and, when root, the OS user that runs PostgreSQL, mapped to the superuser.
 * A process user without a passwd entry is left out (peer authentication could not name it
 * either); its keeper then cannot connect over the socket, which the start reports.
 */
async function identConf(ctx: PgContext): Promise<string> {
  const users: string[] = [];
  try {
    users.push(userInfo().username);
  } catch (err) {
    ctx.log.warn({ err: errorMessage(err) }, 'this process has no OS user name: it cannot use peer authentication over the socket');
  }
  if ((await ctx.exec.identity()) !== null) {
    users.push(ctx.exec.osUser);
  }
  return renderIdentConf(users, ctx.suUser);
}

/**
 * Copies `postgresql.conf.last-good` and `pg_hba.conf.last-good` (saved by a successful start,
 * postmaster.ts, and by {@link writeConfig}) back over postgresql.conf and pg_hba.conf, atomically. Signal files
 * and the replication password file (outside PGDATA) are left alone; does not reload or start.
 * @returns false (and changes nothing) when no last-good postgresql.conf exists.
 * @throws StolonError `DATA_DIR_INVALID` (transient) when a write fails.
 */
export async function restoreLastGoodConfig(ctx: PgContext): Promise<boolean> {
  const conf = await readIfExists(join(ctx.pgData, `postgresql.conf${LAST_GOOD}`));
  if (conf === null) {
    return false;
  }
  const hba = await readIfExists(join(ctx.pgData, `pg_hba.conf${LAST_GOOD}`));
  await dataWrite(ctx.pgData, 'restoring the last good configuration', async () => {
    await ctx.exec.writeAtomic(join(ctx.pgData, 'postgresql.conf'), conf);
    if (hba !== null) {
      await ctx.exec.writeAtomic(join(ctx.pgData, 'pg_hba.conf'), hba);
    }
    await fsyncDir(ctx.pgData);
  });
  ctx.log.warn({ pgData: ctx.pgData }, 'restored the last configuration PostgreSQL accepted');
  return true;
}

/** Whether every line of `next` is also a line of `prev` or matches `extra` (`next` only dropped lines, or added such). */
function linesSubset(next: string, prev: string, extra?: RegExp): boolean {
  const have = new Set(prev.split('\n'));
  return next.split('\n').every((l) => have.has(l) || extra?.test(l) === true);
}

/**
 * A `synchronous_standby_names` line as {@link renderPostgresqlConf} writes it for the keeper's
 * own standbys only (`renderSynchronousStandbyNames`): empty, `stolon_<uid>`, or
 * `N (stolon_<uid>,…)` with N ≥ 1. Every name is a plain identifier starting with `stolon_`, so
 * none is a keyword of the setting's grammar (`FIRST`, `ANY`) and the value always parses;
 * external synchronous standbys (any name) do not match and are checked by `postgres -C`.
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-SYNCHRONOUS-STANDBY-NAMES
 */
const KEEPER_SYNC_NAMES_LINE = /^synchronous_standby_names = '(?:stolon_\w+|[1-9]\d* \(stolon_\w+(?:,stolon_\w+)*\))?'$/;

/**
 * Whether new configuration files parse if the ones in place did, so that `postgres -C` (and the
 * pg_hba_file_rules check) can be skipped: pg_ident.conf unchanged; pg_hba.conf only lost lines
 * (one rule per line, none continued with a backslash: each line parses on its own); and
 * postgresql.conf only lost lines (a promotion drops the standby's recovery settings) or got a
 * new synchronous_standby_names of the keeper's standbys ({@link KEEPER_SYNC_NAMES_LINE}: a
 * synchronous standby's promotion, a change of the synchronous standbys). A primary's DB whose
 * peer left clusterdata drops that peer's pg_hba lines in the same write.
 * @param next the files about to be checked
 * @param prev the files they replaced (null: there was none)
 */
function parsesIfPreviousDid(
  next: { readonly conf: string; readonly hba: string; readonly ident: string },
  prev: { readonly conf: string | null; readonly hba: string | null; readonly ident: string | null },
): boolean {
  return (
    prev.conf !== null &&
    prev.hba !== null &&
    prev.ident === next.ident &&
    !/\\\s*$/m.test(prev.hba) &&
    linesSubset(next.hba, prev.hba) &&
    linesSubset(next.conf, prev.conf, KEEPER_SYNC_NAMES_LINE)
  );
}

/**
 * Copies postgresql.conf and pg_hba.conf to their `.last-good` names. A failure is logged,
 * not thrown: the start or write it follows did succeed.
 */
export async function saveLastGoodConfig(ctx: PgContext): Promise<void> {
  try {
    for (const name of ['postgresql.conf', 'pg_hba.conf']) {
      const content = await readIfExists(join(ctx.pgData, name));
      const saved = join(ctx.pgData, `${name}${LAST_GOOD}`);
      if (content !== null && (await readIfExists(saved)) !== content) {
        await ctx.exec.writeAtomic(saved, content);
      }
    }
  } catch (err) {
    ctx.log.warn({ err: errorMessage(err), pgData: ctx.pgData }, 'could not save the last good configuration');
  }
}

/**
 * Validation of the configuration files on disk for {@link writeConfig}.
 * `parse`: run `postgres -C port` (its LOG lines name every bad parameter); `running`: also
 * read `pg_file_settings` (our file only) and, with `parse`, `pg_hba_file_rules`.
 * `verifiedRunning` is true when the SQL checks could run.
 */
async function checkConfig(
  ctx: PgContext,
  config: PgConfig,
  opts: { parse: boolean; running: boolean },
): Promise<{ problems: { field?: string; message: string }[]; pendingRestart: string[]; verifiedRunning: boolean }> {
  const problems: { field?: string; message: string }[] = [];
  const reported = new Set<string>();
  if (opts.parse) {
    const res = await ctx.exec.run('postgres', ['-D', ctx.pgData, '-C', 'port'], {
      env: { LC_ALL: 'C' },
      timeoutMs: 30_000,
    });
    if (res.code !== 0) {
      const found = parseConfigErrors(res.stderr);
      for (const p of found) {
        problems.push(describeProblem(p, config));
        if (p.parameter !== undefined) {
          reported.add(p.parameter.toLowerCase());
        }
      }
      if (found.length === 0) {
        problems.push({ message: `${exitText(res)}: ${lastLines(res.stderr || res.stdout, 5) || 'no output'}` });
      }
    }
  }
  const pendingRestart: string[] = [];
  if (!opts.running || problems.length > 0) {
    return { problems, pendingRestart, verifiedRunning: false };
  }
  let client: Client;
  try {
    client = await ctx.socket.connect();
  } catch (err) {
    // Starting, or shutting down: postgres -C already vouched for the values.
    ctx.log.debug({ err: errorMessage(err) }, 'cannot connect to check the new configuration; relying on postgres -C');
    return { problems, pendingRestart, verifiedRunning: false };
  }
  try {
    const rows = await client.query<{ name: string | null; setting: string | null; error: string; context: string | null }>(
      `select f.name, f.setting, f.error, s.context
         from pg_file_settings f left join pg_settings s on s.name = lower(f.name)
        where f.error is not null and f.sourcefile = current_setting('config_file')
        order by f.seqno`,
    );
    for (const row of rows.rows) {
      const name = row.name?.toLowerCase();
      if (name !== undefined && reported.has(name)) {
        continue;
      }
      if (name !== undefined && row.context === 'postmaster' && row.error === 'setting could not be applied') {
        // A bad value would have failed postgres -C; so this is a change waiting for a restart.
        if (!pendingRestart.includes(name)) {
          pendingRestart.push(name);
        }
        continue;
      }
      if (opts.parse) {
        problems.push({
          field: name === undefined ? 'pgParameters' : `pgParameters.${userParameterName(name, config)}`,
          message: `${row.error}${row.setting === null ? '' : ` (value ${JSON.stringify(row.setting)})`}`,
        });
      }
    }
    if (opts.parse) {
      const hba = await client.query<{ line_number: number; error: string }>(
        'select line_number, error from pg_hba_file_rules where error is not null order by line_number',
      );
      for (const row of hba.rows) {
        problems.push(describeProblem({ hbaLine: row.line_number, message: row.error }, config));
      }
    }
    return { problems, pendingRestart: pendingRestart.sort(), verifiedRunning: true };
  } catch (err) {
    ctx.log.debug({ err: errorMessage(err) }, 'cannot query pg_file_settings; relying on postgres -C');
    return { problems, pendingRestart, verifiedRunning: false };
  } finally {
    await endQuietly(client);
  }
}

/** A {@link ConfigProblem} as the spec field it is about and a message. */
export function describeProblem(p: ConfigProblem, config: PgConfig | undefined): { field: string; message: string } {
  if (p.hbaLine !== undefined) {
    const line = config?.hba[p.hbaLine - 1];
    return {
      field: 'pgHBA',
      message: `pg_hba.conf line ${p.hbaLine}${line === undefined ? '' : ` (${JSON.stringify(line)})`}: ${p.message}`,
    };
  }
  return { field: `pgParameters.${userParameterName(p.parameter ?? '', config)}`, message: p.message };
}

/** The key of `config.parameters` naming `name` (PostgreSQL names are case-insensitive). */
function userParameterName(name: string, config: PgConfig | undefined): string {
  const lower = name.toLowerCase();
  return Object.keys(config?.parameters ?? {}).find((k) => k.toLowerCase() === lower) ?? name;
}
