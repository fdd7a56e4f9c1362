#!/usr/bin/env node
/**
 * The `stolonctl` program: parses the command line (global flags from `COMMON_FLAGS`, with
 * `STOLONCTL_*` environment fallback), builds the store, runs one subcommand from `index.ts` and
 * exits with its code. Every failure is one line on stderr naming the flag or field and the fix:
 * exit 2 for usage and validation errors, 1 for store and runtime errors.
 */
import { createInterface } from 'node:readline/promises';
import { ConfigError, errorMessage } from '@stolon-ts/cluster';
import { BUG_SENTENCE, COMMON_FLAGS, STOLONCTL_STOLON_FLAGS, addFlags, baseYargs, readMemberToken } from '@stolon-ts/common';
import type { Argv } from 'yargs';
import {
  ENV_PREFIX,
  ExitCode,
  storeFromFlags,
  type CommandContext,
  type ExitCodeValue,
  type StoreSetup,
} from './context.js';
import { BACKUP_TYPES, runBackup } from './backup.js';
import { BACKUPS_FORMATS, runBackups, type BackupsFormat } from './backups.js';
import { EVENTS_FORMATS, runEvents, type EventsFormat } from './events.js';
import { runFailkeeper } from './failkeeper.js';
import { HISTORY_FORMATS, runHistory, type HistoryFormat } from './history.js';
import { runInit } from './init.js';
import { runPause } from './pause.js';
import { runPromote } from './promote.js';
import { runReinit } from './reinit.js';
import { runReload } from './reload.js';
import { runSwitchover } from './switchover.js';
import { runRemovekeeper } from './removekeeper.js';
import { runRestart } from './restart.js';
import { runResume } from './resume.js';
import { runSpec } from './spec.js';
import { STATUS_FORMATS, runStatus, type StatusFormat } from './status.js';
import { runUpdate } from './update.js';
import { VERSION_FORMATS, runVersion, type VersionFormat } from './version.js';

const PROGRAM = 'stolonctl';
const COMMANDS = 'init, status, events, history, spec, update, pause, resume, reload, failkeeper, removekeeper, reinit, promote, switchover, restart, backup, backups or version';

type CommandName =
  | 'init'
  | 'status'
  | 'events'
  | 'spec'
  | 'update'
  | 'pause'
  | 'resume'
  | 'failkeeper'
  | 'removekeeper'
  | 'promote'
  | 'switchover'
  | 'restart'
  | 'history'
  | 'reload'
  | 'reinit'
  | 'version'

  | 'backup'
  | 'backups';

/** A command-line problem found by yargs (unknown flag, missing required flag, bad choice). */
class UsageError extends Error {}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The options of `switchover`. */
function switchoverOptions(y: Argv): Argv {
  return y
    .option('to', { type: 'string', describe: 'keeper to promote (default: the most up-to-date eligible standby)' })
    .option('yes', { alias: 'y', type: 'boolean', default: false, describe: 'switch over without asking' })
    .option('wait', { type: 'boolean', default: true, describe: 'wait for the outcome (--no-wait to return at once)' })
    .option('at', {
      type: 'string',
      describe:
        'schedule it: an RFC 3339 time with a time zone (2026-12-07T03:00:00Z) or a duration from now (10m); returns once recorded; ' +
        'the leader sentinel starts it then, or drops it if it cannot start within 5m of that time',
    })
    .option('cancel', { type: 'boolean', default: false, describe: 'remove the switchover requested or scheduled and not started yet' })
    .option('timeout', {
      type: 'string',
      describe: "how long to wait for the outcome (default: the cluster spec's switchoverTimeout + 30s, so the sentinel's verdict is seen)",
    });
}

/** The options of `restart`. */
function restartOptions(y: Argv): Argv {
  return y
    .option('keeper', { type: 'string', describe: "restart only this keeper's PostgreSQL (a primary is switched over first unless --in-place)" })
    .option('pending-only', { type: 'boolean', default: false, describe: 'only instances with a parameter pending restart (pg_settings.pending_restart)' })
    .option('in-place', { type: 'boolean', default: false, describe: 'restart the primary in place (writes stop while it restarts) instead of switching over' })
    .option('yes', { alias: 'y', type: 'boolean', default: false, describe: 'restart without asking' })
    .option('timeout', { type: 'string', default: '2m', describe: 'how long each step (one instance, or the switchover) may take before the restart stops' });
}

/** The options of `status`. */
function statusOptions(y: Argv): Argv {
  return y
    .option('format', {
      alias: 'f',
      type: 'string',
      choices: [...STATUS_FORMATS, 'text'],
      default: 'table',
      describe: "output format (text: Stolon's name of table)",
      // Stolon's `status -f text` is our table.
      coerce: (v: unknown) => (v === 'text' ? 'table' : v),
    })
    .option('member-address', {
      type: 'string',
      requiresArg: true,
      describe:
        'comma-separated keeper member API addresses (host:port) to ask when the store cannot be read (or set STOLONCTL_MEMBER_ADDRESS): shows whether the primary keeps serving under failsafe mode',
    })
    .option('member-token-file', {
      type: 'string',
      requiresArg: true,
      describe: "file holding the keepers' member API token for --member-address (or set STOLONCTL_MEMBER_TOKEN)",
    });
}

/** Stolon's stolonctl commands that are not here, each refused with why and what to use instead. */
const STOLON_ONLY_COMMANDS: Readonly<Record<string, string>> = {
  clusterdata:
    "Stolon's clusterdata read/write is not available: stolonctl status --format json and stolonctl spec show the cluster; " +
    'moving clusterdata between stores or adopting a Stolon cluster is not supported yet (docs/differences-from-stolon.md)',
  register: "Stolon's register (DBs as Consul services) is not available (docs/differences-from-stolon.md)",
};

/** The `--format table|json` option of `history` and `version`. */
function formatOption(formats: readonly string[]): (y: Argv) => Argv {
  return (y) => y.option('format', { type: 'string', choices: [...formats], default: 'table', describe: 'output format' });
}

/** Registers {@link STOLON_ONLY_COMMANDS}, hidden from the help, with any arguments (e.g. `clusterdata read --pretty`). */
function refuseStolonCommands(y: Argv): Argv {
  let out = y;
  for (const [name, why] of Object.entries(STOLON_ONLY_COMMANDS)) {
    out = out.command({
      command: name,
      describe: false,
      builder: (b: Argv) => b.strict(false),
      handler: () => {
        throw new UsageError(`${name}: ${why}`);
      },
    });
  }
  return out;
}

/** The day-2 commands: history, reload, reinit and version (Patroni's names). */
function day2Commands(y: Argv, select: (name: CommandName, argv: Record<string, unknown>) => void): Argv {
  return y
    .command(
      'history',
      "show the timelines: each failover and switchover with when, why, from and to which keeper, and the old primary's discarded WAL",
      formatOption(HISTORY_FORMATS),
      (argv) => select('history', argv),
    )
    .command(
      'reload',
      'make the keepers rewrite postgresql.conf and pg_hba.conf and reload PostgreSQL now; lists parameters pending a restart',
      (b) =>
        b
          .option('keeper', { type: 'string', requiresArg: true, describe: 'reload only this keeper (default: every keeper)' })
          .option('timeout', { type: 'string', requiresArg: true, default: '30s', describe: 'how long to wait for the keepers to acknowledge' }),
      (argv) => select('reload', argv),
    )
    .command(
      'reinit <keeper>',
      "wipe a standby's data and clone it again from the primary (never the primary; a synchronous standby needed for commits only with --force)",
      (b) =>
        b
          .positional('keeper', { type: 'string', describe: 'the keeper UID (see stolonctl status)' })
          .option('force', { type: 'boolean', default: false, describe: 'also re-clone a synchronous standby whose loss makes commits wait (fewer than minSynchronousStandbys would remain)' })
          .option('yes', { alias: 'y', type: 'boolean', default: false, describe: 're-clone without asking' })
          .option('wait', { type: 'boolean', default: true, describe: 'wait until it streams again (--no-wait to return at once)' })
          .option('timeout', { type: 'string', requiresArg: true, default: '10m', describe: 'how long to wait for it to stream again' }),
      (argv) => select('reinit', argv),
    )
    .command(
      'version',
      "show stolonctl's version and every keeper's, sentinel's and proxy's, with a WARNING line on version skew (exit 0)",
      formatOption(VERSION_FORMATS),
      (argv) => select('version', argv),
    );
}

function buildParser(args: readonly string[], select: (name: CommandName, argv: Record<string, unknown>) => void, warnings: string[]): Argv {
  const fileOpt = {
    alias: 'f',
    type: 'string',
    describe: 'read the spec from this file; - reads standard input',
    requiresArg: true,
  } as const;
  const parser = refuseStolonCommands(addFlags(baseYargs(args, PROGRAM), COMMON_FLAGS, ENV_PREFIX, process.env, { flags: STOLONCTL_STOLON_FLAGS, warnings }))
    .command(
      'init [spec-json]',
      'initialize a new cluster (default spec {"initMode":"new"})',
      (y) =>
        y
          .positional('spec-json', { type: 'string', describe: 'the cluster spec as JSON' })
          .option('file', fileOpt)
          .option('yes', {
            alias: 'y',
            type: 'boolean',
            default: false,
            describe: 'overwrite an existing cluster without asking',
          }),
      (argv) => select('init', argv),
    )
    .command(
      'status',
      'show the cluster status',
      statusOptions,
      (argv) => select('status', argv),
    )
    .command(
      'events',
      'show the recorded failovers and switchovers, and the one in progress, phase by phase',
      (y) =>
        y
          .option('format', {
            type: 'string',
            choices: [...EVENTS_FORMATS],
            default: 'table',
            describe: 'output format',
          })
          .option('last', {
            type: 'number',
            requiresArg: true,
            describe: 'show only the N newest events',
          }),
      (argv) => select('events', argv),
    )
    .command(
      'spec',
      'print the stored cluster spec as JSON',
      (y) =>
        y.option('defaults', {
          type: 'boolean',
          default: false,
          describe: 'fill in every field with its default',
        }),
      (argv) => select('spec', argv),
    )
    .command(
      'update [spec-json]',
      'replace the cluster spec, or patch it with --patch',
      (y) =>
        y
          .positional('spec-json', { type: 'string', describe: 'the new spec (or merge patch) as JSON' })
          .option('file', fileOpt)
          .option('patch', {
            alias: 'p',
            type: 'boolean',
            default: false,
            describe: 'apply the document as an RFC 7386 JSON merge patch to the stored spec',
          }),
      (argv) => select('update', argv),
    )
    .command(
      'pause',
      'stop the sentinel from taking any failover or standby action (spec paused: true)',
      (y) => y,
      (argv) => select('pause', argv),
    )
    .command(
      'resume',
      'let the sentinel act again after pause',
      (y) => y,
      (argv) => select('resume', argv),
    )
    .command(
      'failkeeper <keeper>',
      'mark a keeper failed once: the sentinel fails over if it holds the primary',
      (y) => y.positional('keeper', { type: 'string', describe: 'the keeper UID (see stolonctl status)' }),
      (argv) => select('failkeeper', argv),
    )
    .command(
      'removekeeper <keeper>',
      'delete a keeper that is not the primary, and its DB, from the cluster data',
      (y) =>
        y.positional('keeper', { type: 'string', describe: 'the keeper UID (see stolonctl status)' }).option('yes', {
          alias: 'y',
          type: 'boolean',
          default: false,
          describe: 'remove without asking',
        }),
      (argv) => select('removekeeper', argv),
    )
    .command(
      'promote',
      'turn a standby cluster into a primary cluster (spec role master); cannot be undone',
      (y) =>
        y.option('yes', {
          alias: 'y',
          type: 'boolean',
          default: false,
          describe: 'promote without asking',
        }),
      (argv) => select('promote', argv),
    )
    .command(
      'switchover',
      'planned change of primary: fence proxies, stop the primary cleanly, promote a caught-up standby; nothing acknowledged is lost',
      switchoverOptions,
      (argv) => select('switchover', argv),
    )
    .command(
      'restart',
      'rolling restart of PostgreSQL: standbys one at a time, each back and streaming before the next, then the primary through a switchover',
      restartOptions,
      (argv) => select('restart', argv),
    )
    .command(
      'backup',
      "take a pgBackRest base backup into the spec's backup repository, on a standby's keeper when the keepers run pgBackRest TLS servers, else the primary's",
      (y) =>
        y
          .option('type', { type: 'string', choices: [...BACKUP_TYPES], default: 'full', describe: 'full, diff (changes since the last full) or incr (since the last backup)' })
          .option('wait', { type: 'boolean', default: true, describe: 'wait for the backup to end, printing progress (--no-wait to return once requested)' })
          .option('timeout', { type: 'string', default: '1h', describe: 'how long to wait for the backup to end (it goes on after)' }),
      (argv) => select('backup', argv),
    )
    .command(
      'backups',
      'list the backups in the repository, as a keeper last read them (the primary\'s, or a standby\'s after its own backup; time shown)',
      (y) => y.option('format', { type: 'string', choices: [...BACKUPS_FORMATS], default: 'table', describe: 'output format' }),
      (argv) => select('backups', argv),
    );
  return day2Commands(parser, select)
    .demandCommand(1, `give a command: ${COMMANDS}`)
    .fail((msg: string | null, err: Error | null) => {
      // Thrown so that parsing stops here; turned into one stderr line by main().
      throw new UsageError(oneLine(msg ?? (err === null ? 'invalid command line' : err.message)));
    });
}

/**
 * Folds a yargs message into one line. For missing required flags yargs prints a generic first
 * line followed by each flag's own message (which names the flag and its environment variable);
 * only the latter are kept.
 */
function oneLine(msg: string): string {
  const lines = msg
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.length > 1 && lines[0]!.startsWith('Missing required argument')) {
    return lines.slice(1).join('; ');
  }
  return lines.join(' ');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function confirmOnTty(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} `);
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

async function main(args: readonly string[]): Promise<ExitCodeValue> {
  let selected: { name: CommandName; argv: Record<string, unknown> } | undefined;
  const warnings: string[] = [];
  try {
    await buildParser(
      args,
      (name, argv) => {
        selected = { name, argv };
      },
      warnings,
    ).parseAsync();
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`${PROGRAM}: ${err.message}; run ${PROGRAM} --help for usage\n`);
      return ExitCode.usage;
    }
    throw err;
  }
  for (const w of warnings) {
    process.stderr.write(`${PROGRAM}: warning: ${w}\n`);
  }
  if (selected === undefined) {
    // --help was handled by yargs (it exits itself); nothing else leaves no command selected.
    return ExitCode.ok;
  }
  const { name, argv } = selected;

  let setup: StoreSetup;
  try {
    setup = await storeFromFlags(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${PROGRAM}: ${err.message}\n`);
      return ExitCode.usage;
    }
    throw err;
  }
  const file = str(argv['file']);
  const readsStdin = file === '-';
  const ctx: CommandContext = {
    store: setup.store,
    clusterName: setup.config.clusterName,
    out: (text) => process.stdout.write(`${text}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    ...(readsStdin ? { stdin: await readStdin() } : {}),
    // Asking only makes sense when a human is at the terminal and stdin is not the spec.
    ...(process.stdin.isTTY === true && !readsStdin ? { confirm: confirmOnTty } : {}),
  };
  const specJson = str(argv['spec-json']);
  try {
    switch (name) {
      case 'init':
        return await runInit(ctx, {
          ...(specJson !== undefined ? { specJson } : {}),
          ...(file !== undefined ? { file } : {}),
          yes: argv['yes'] === true,
        });
      case 'status': {
        const addresses = (str(argv['member-address']) ?? process.env['STOLONCTL_MEMBER_ADDRESS'] ?? '')
          .split(',')
          .map((a) => a.trim())
          .filter((a) => a !== '');
        // Read only when addresses are given: a bad token file is then a usage error (exit 2).
        let token: string | undefined;
        try {
          token = addresses.length > 0 ? readMemberToken(str(argv['member-token-file']), 'STOLONCTL_MEMBER_TOKEN', 'member-token-file', process.env) : undefined;
        } catch (err) {
          if (err instanceof ConfigError) {
            process.stderr.write(`${PROGRAM} status: ${err.message}\n`);
            return ExitCode.usage;
          }
          throw err;
        }
        return await runStatus(ctx, {
          format: argv['format'] as StatusFormat,
          ...(addresses.length > 0 ? { memberAddresses: addresses } : {}),
          ...(token !== undefined ? { memberToken: token } : {}),
        });
      }
      case 'events':
        return await runEvents(ctx, {
          format: argv['format'] as EventsFormat,
          ...(argv['last'] !== undefined ? { last: argv['last'] as number } : {}),
        });
      case 'spec':
        return await runSpec(ctx, { defaults: argv['defaults'] === true });
      case 'update':
        return await runUpdate(ctx, {
          ...(specJson !== undefined ? { specJson } : {}),
          ...(file !== undefined ? { file } : {}),
          patch: argv['patch'] === true,
        });
      case 'pause':
        return await runPause(ctx);
      case 'resume':
        return await runResume(ctx);
      case 'failkeeper':
        return await runFailkeeper(ctx, { keeper: String(argv['keeper']) });
      case 'removekeeper':
        return await runRemovekeeper(ctx, { keeper: String(argv['keeper']), yes: argv['yes'] === true });
      case 'promote':
        return await runPromote(ctx, { yes: argv['yes'] === true });
      case 'history':
        return await runHistory(ctx, { format: argv['format'] as HistoryFormat });
      case 'version':
        return await runVersion(ctx, { format: argv['format'] as VersionFormat });
      case 'reload':
        return await runReload(ctx, {
          ...(typeof argv['keeper'] === 'string' ? { keeper: argv['keeper'] } : {}),
          ...(typeof argv['timeout'] === 'string' ? { timeout: argv['timeout'] } : {}),
        });
      case 'reinit':
        return await runReinit(ctx, {
          keeper: String(argv['keeper']),
          force: argv['force'] === true,
          yes: argv['yes'] === true,
          noWait: argv['wait'] === false,
          ...(typeof argv['timeout'] === 'string' ? { timeout: argv['timeout'] } : {}),
        });
      case 'switchover':
        return await runSwitchover(ctx, {
          ...(typeof argv['to'] === 'string' ? { to: argv['to'] } : {}),
          yes: argv['yes'] === true,
          noWait: argv['wait'] === false,
          ...(typeof argv['timeout'] === 'string' ? { timeout: argv['timeout'] } : {}),
          ...(typeof argv['at'] === 'string' ? { at: argv['at'] } : {}),
          cancel: argv['cancel'] === true,
        });
      case 'restart':
        return await runRestart(ctx, {
          ...(typeof argv['keeper'] === 'string' ? { keeper: argv['keeper'] } : {}),
          pendingOnly: argv['pending-only'] === true,
          inPlace: argv['in-place'] === true,
          yes: argv['yes'] === true,
          ...(typeof argv['timeout'] === 'string' ? { timeout: argv['timeout'] } : {}),
        });
      case 'backup':
        return await runBackup(ctx, {
          type: argv['type'] as (typeof BACKUP_TYPES)[number],
          noWait: argv['wait'] === false,
          ...(typeof argv['timeout'] === 'string' ? { timeout: argv['timeout'] } : {}),
        });
      case 'backups':
        return await runBackups(ctx, { format: argv['format'] as BackupsFormat });
    }
  } finally {
    await setup.store.close().catch(() => undefined);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${PROGRAM}: ${BUG_SENTENCE}: ${errorMessage(err)}\n`);
    if (err instanceof Error && err.stack !== undefined) {
      process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = ExitCode.runtime;
  },
);
