/**
 * What every stolonctl subcommand shares: the in-process context (store, output sinks, stdin),
 * exit codes, the error-to-exit-code mapping, reading the stored clusterdata, and reading a JSON
 * document from an argument, a file or stdin, and the read–change–compare-and-set loop every
 * writing command goes through. Subcommands stay a few dozen lines each because
 * everything that is not their own decision lives here.
 */
import { readFile } from 'node:fs/promises';
import {
  ClusterDataInvalidError,
  ConfigError,
  SpecValidationError,
  StolonError,
  StoreConflictError,
  StoreUnavailableError,
  errorMessage,
  parseClusterData,
  serializeClusterData,
  type ClusterData,
  type Keeper,
} from '@stolon-ts/cluster';
import { BUG_SENTENCE, COMMON_FLAGS, pickFlags, storeFromConfig, type CommonConfig } from '@stolon-ts/common';
import type { ClusterDataRecord, Store } from '@stolon-ts/store';

/** Prefix of the environment variables that stand in for unset flags (`STOLONCTL_CLUSTER_NAME`). */
export const ENV_PREFIX = 'STOLONCTL';

/** Process exit codes of stolonctl. */
export const ExitCode = {
  /** The command did what was asked. */
  ok: 0,
  /** The store or the stored data stopped the command (unreachable, conflict, not initialised, refused). */
  runtime: 1,
  /** The command line or the given spec is wrong; nothing was written. */
  usage: 2,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Everything a subcommand needs, so the same function runs in-process (tests) and from the bin.
 * The store is owned by the caller: commands never close it.
 */
export interface CommandContext {
  /** The store of the cluster named by `clusterName`. */
  readonly store: Store;
  /** Cluster name, for messages ("cluster <name> is not initialized"). @default "(unnamed)" */
  readonly clusterName?: string;
  /** Receives normal output, one call per chunk; the chunk carries no trailing newline. */
  readonly out: (text: string) => void;
  /** Receives error output, one call per line; the line carries no trailing newline. */
  readonly err: (line: string) => void;
  /** The whole of standard input, when the command was told to read it (`-f -`). */
  readonly stdin?: string;
  /**
   * Asks the operator a yes/no question. Only set when a human can answer (stdin is a TTY and
   * is not being read as data); when absent, destructive commands refuse unless `--yes` is given.
   */
  readonly confirm?: (question: string) => Promise<boolean>;
}

/**
 * An expected failure of a subcommand: a one-line message saying what is wrong and what to do,
 * and the exit code. Thrown inside commands, turned into output by {@link runCommand}.
 *
 * This is CLI presentation, not part of the shared taxonomy (`StolonError`): the conditions it
 * covers (refusal to overwrite, "not initialised") have no `code` in @stolon-ts/cluster.
 */
export class CommandError extends Error {
  /** The exit code the command ends with. */
  readonly exitCode: ExitCodeValue;
  /** Flag or spec field the message is about, when there is one. */
  readonly field: string | undefined;

  constructor(message: string, exitCode: ExitCodeValue, opts: { field?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CommandError';
    this.exitCode = exitCode;
    this.field = opts.field;
  }
}

function clusterLabel(ctx: CommandContext): string {
  return ctx.clusterName ?? '(unnamed)';
}

/**
 * Runs one subcommand body and turns every failure into lines on `ctx.err` and an exit code:
 * {@link CommandError} → its own code; `SpecValidationError` → one line per issue, 2;
 * `ConfigError` → 2; other `StolonError`s (store unavailable, conflict, invalid clusterdata) → 1;
 * anything else is a bug: {@link BUG_SENTENCE} with the message and stack, 1.
 * @param command subcommand name, used as the message prefix (`stolonctl update: …`).
 * @returns the exit code; never throws.
 */
export async function runCommand(
  ctx: CommandContext,
  command: string,
  body: () => Promise<ExitCodeValue | void>,
): Promise<ExitCodeValue> {
  const prefix = `stolonctl ${command}:`;
  try {
    return (await body()) ?? ExitCode.ok;
  } catch (err) {
    if (err instanceof CommandError) {
      ctx.err(`${prefix} ${err.message}`);
      return err.exitCode;
    }
    if (err instanceof SpecValidationError) {
      // Every issue on its own line, each starting with the field it is about.
      for (const issue of err.issues) {
        ctx.err(`${prefix} invalid cluster spec: ${issue}`);
      }
      return ExitCode.usage;
    }
    if (err instanceof ConfigError) {
      ctx.err(`${prefix} ${err.message}`);
      return ExitCode.usage;
    }
    if (err instanceof ClusterDataInvalidError) {
      ctx.err(
        `${prefix} the stored clusterdata of cluster ${clusterLabel(ctx)} is unusable: ${err.message}; ` +
          'no component will act on it until it is fixed (stolonctl init --yes replaces it with a new, empty cluster)',
      );
      return ExitCode.runtime;
    }
    if (err instanceof StoreUnavailableError) {
      // The store's own message says which endpoint failed and what to check.
      ctx.err(`${prefix} store unavailable: ${err.message}`);
      return ExitCode.runtime;
    }
    if (err instanceof StoreConflictError) {
      ctx.err(`${prefix} ${err.message}; another writer changed clusterdata, retry the command`);
      return ExitCode.runtime;
    }
    if (err instanceof StolonError) {
      ctx.err(`${prefix} ${err.message}`);
      return ExitCode.runtime;
    }
    ctx.err(`${prefix} ${BUG_SENTENCE}: ${errorMessage(err)}`);
    if (err instanceof Error && err.stack !== undefined) {
      ctx.err(err.stack);
    }
    return ExitCode.runtime;
  }
}

/** Stored clusterdata, parsed and validated, with the revision it was read at. */
export interface LoadedClusterData {
  readonly cd: ClusterData;
  readonly record: ClusterDataRecord;
}

/**
 * Reads and validates the stored clusterdata (format version, spec), as every component does on
 * every read (docs/design.md#the-cluster-spec).
 * @throws CommandError (exit 1) when the cluster was never initialised.
 * @throws ClusterDataInvalidError when the stored document is unusable.
 * @throws StoreUnavailableError when the store does not answer.
 */
export async function loadClusterData(ctx: CommandContext): Promise<LoadedClusterData> {
  const record = await ctx.store.getClusterData();
  if (record === null) {
    throw new CommandError(
      `cluster ${clusterLabel(ctx)} is not initialized; run stolonctl init`,
      ExitCode.runtime,
    );
  }
  return { cd: parseClusterData(record.text), record };
}

/**
 * How many compare-and-set writes a command tries before giving up (Stolon: 3). More than Stolon:
 * while a cluster settles (a switchover just finished, a standby catching up) the leader sentinel
 * rewrites clusterdata several times a second, and three back-to-back attempts were seen to lose
 * every race (bench:switchover). Attempts after the first wait {@link casBackoffMs}.
 */
export const CAS_ATTEMPTS = 8;

/**
 * Pause before compare-and-set attempt `attempt` (2, 3, …): 25 ms × (attempt − 1) plus up to
 * 25 ms of jitter, so a retry does not land in step with the sentinel's next write. All eight
 * attempts together wait about 0.8 s at most.
 */
function casBackoffMs(attempt: number): number {
  return 25 * (attempt - 1) + Math.floor(Math.random() * 25);
}

/**
 * What the `change` step of {@link updateClusterData} decided for the clusterdata it was given:
 * write `write` (by compare-and-set on the revision it was read at) and then return `result`, or,
 * without `write`, write nothing and return `result` (already as asked, nothing to do).
 */
export interface ClusterDataChange<T> {
  readonly write?: ClusterData;
  readonly result: T;
}

/**
 * The read–change–compare-and-set loop of every command that writes clusterdata: reads it,
 * lets `change` decide on that exact document, and writes the result only if the revision has
 * not moved; on a conflict it reads again and asks `change` again, so every check `change` makes
 * (and every refusal it throws) holds for the document actually written.
 * @param change decides from one freshly read document; `attempt` counts from 1. It may throw
 *   (a `CommandError` refusal); it must not mutate `loaded.cd` and has no other side effects.
 * @param opts.first an already-read document to use for the first attempt (read before asking
 *   the operator to confirm, say), instead of reading again.
 * @param opts.attempts @default {@link CAS_ATTEMPTS}
 * @returns the `result` of the attempt that wrote (or decided not to write).
 * @throws CommandError (exit 1) when every attempt lost to a concurrent writer; nothing was written.
 * @throws whatever `change` or {@link loadClusterData} throws; nothing was written.
 */
export async function updateClusterData<T>(
  ctx: CommandContext,
  change: (loaded: LoadedClusterData, attempt: number) => ClusterDataChange<T>,
  opts: { readonly first?: LoadedClusterData; readonly attempts?: number } = {},
): Promise<T> {
  const attempts = opts.attempts ?? CAS_ATTEMPTS;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) {
      await new Promise((r) => setTimeout(r, casBackoffMs(attempt)));
    }
    const loaded = attempt === 1 && opts.first !== undefined ? opts.first : await loadClusterData(ctx);
    const decided = change(loaded, attempt);
    if (decided.write === undefined) {
      return decided.result;
    }
    try {
      await ctx.store.putClusterData(serializeClusterData(decided.write), loaded.record.revision);
    } catch (err) {
      if (err instanceof StoreConflictError) {
        continue;
      }
      throw err;
    }
    return decided.result;
  }
  throw new CommandError(
    `clusterdata changed under every one of ${attempts} attempts (other writers are active); ` +
      'nothing was written, run the command again',
    ExitCode.runtime,
  );
}

/**
 * The keeper `uid` of `cd`.
 * @throws CommandError (exit 1) "keeper X is not in the cluster (known: a, b)" when there is none.
 */
export function requireKeeper(cd: ClusterData, uid: string): Keeper {
  const keeper = cd.keepers[uid];
  if (keeper === undefined) {
    const known = Object.keys(cd.keepers).sort();
    throw new CommandError(
      `keeper ${uid} is not in the cluster (known: ${known.length === 0 ? 'none' : known.join(', ')})`,
      ExitCode.runtime,
      { field: 'keeper' },
    );
  }
  return keeper;
}

/**
 * Checks the KEEPER argument of `failkeeper`/`removekeeper` before the store is read.
 * @throws CommandError (exit 2) when it is empty.
 */
export function checkKeeperArg(uid: string): void {
  if (uid.trim() === '') {
    throw new CommandError('KEEPER: empty keeper UID; give the UID shown by stolonctl status', ExitCode.usage, {
      field: 'keeper',
    });
  }
}

/** Where a JSON document given to a command came from. */
export interface JsonInput {
  /** The text itself. */
  readonly text: string;
  /** For messages: "the spec-json argument", "file spec.json", "stdin". */
  readonly source: string;
}

/**
 * Picks the document a command was given: the positional argument or `-f FILE` (`-` = stdin).
 * @param file the `--file` value, if given.
 * @returns the text and where it came from, or undefined when neither was given.
 * @throws CommandError (exit 2) when both are given, the file cannot be read, or `-` is used
 *   without stdin.
 */
export async function readJsonInput(
  ctx: CommandContext,
  arg: string | undefined,
  file: string | undefined,
): Promise<JsonInput | undefined> {
  if (arg !== undefined && file !== undefined) {
    throw new CommandError(
      'give the spec either as the spec-json argument or with --file, not both',
      ExitCode.usage,
      { field: 'file' },
    );
  }
  if (arg !== undefined) {
    return { text: arg, source: 'the spec-json argument' };
  }
  if (file === undefined) {
    return undefined;
  }
  if (file === '-') {
    if (ctx.stdin === undefined) {
      throw new CommandError('--file -: no standard input was provided', ExitCode.usage, { field: 'file' });
    }
    return { text: ctx.stdin, source: 'stdin' };
  }
  if (file === '') {
    throw new CommandError('--file: empty path; give a file name, or - for stdin', ExitCode.usage, {
      field: 'file',
    });
  }
  try {
    return { text: await readFile(file, 'utf8'), source: `file ${file}` };
  } catch (err) {
    throw new CommandError(`--file: cannot read ${file}: ${errorMessage(err)}`, ExitCode.usage, {
      field: 'file',
      cause: err,
    });
  }
}

/**
 * Parses a JSON document given by the operator.
 * @throws CommandError (exit 2) "invalid JSON in <source>: <parser message>".
 */
export function parseJsonInput(input: JsonInput): unknown {
  try {
    return JSON.parse(input.text) as unknown;
  } catch (err) {
    throw new CommandError(`invalid JSON in ${input.source}: ${errorMessage(err)}`, ExitCode.usage, {
      cause: err,
    });
  }
}

/** The common flags, checked, and the store they describe. */
export interface StoreSetup {
  readonly config: CommonConfig;
  readonly store: Store;
}

/**
 * Builds the store from parsed global flags (`--cluster-name`, `--store-*`): the one place the
 * bin turns flags into a store, so every subcommand gets the same checks.
 * Only the chosen backend's client library is imported (see `createStore`).
 * @param argv parsed yargs arguments.
 * @returns a promise of the setup; errors reject it.
 * @throws ConfigError naming the flag when a value is unusable.
 */
export async function storeFromFlags(argv: Record<string, unknown>): Promise<StoreSetup> {
  const config = pickFlags(argv, COMMON_FLAGS);
  return { config, store: await storeFromConfig(config, ENV_PREFIX) };
}
