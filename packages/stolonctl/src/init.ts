/**
 * `stolonctl init [spec-json] [-f FILE|-] [-y]`: creates a new cluster (new uid, phase
 * `initializing`, no keepers or DBs) from a validated spec. An existing cluster is replaced only
 * with `--yes` (or an interactive "yes"); otherwise the store is left untouched.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/init.go (Stolon's command)
 */
import { newClusterData, serializeClusterData, StoreConflictError, validateSpec } from '@stolon-ts/cluster';
import { newUid, nowIso } from '@stolon-ts/common';
import {
  CommandError,
  ExitCode,
  parseJsonInput,
  readJsonInput,
  runCommand,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** The spec `init` uses when none is given. */
export const DEFAULT_INIT_SPEC = '{"initMode":"new"}';

/** Options of {@link runInit}. */
export interface InitOptions {
  /** The spec as JSON text (the positional argument). */
  readonly specJson?: string;
  /** `--file`: a path to read the spec from, or `-` for stdin. */
  readonly file?: string;
  /** `--yes`: replace an existing cluster without asking. @default false */
  readonly yes?: boolean;
  /** The new cluster uid. @default a random 8-hex uid (`newUid`) */
  readonly uid?: string;
  /** Wall-clock time for `changeTime`. @default now (`nowIso`) */
  readonly now?: string;
}

/**
 * Initialises the cluster. The spec is read and validated before the store is touched. Without
 * existing clusterdata it is created by compare-and-set (so of two concurrent inits one fails);
 * with existing clusterdata it is overwritten only when `yes` is set or `ctx.confirm` answers yes,
 * and otherwise left byte-for-byte unchanged.
 * @returns 0 on success; 2 for bad JSON or an invalid spec; 1 when refused or the store fails.
 */
export function runInit(ctx: CommandContext, opts: InitOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'init', async () => {
    const input = (await readJsonInput(ctx, opts.specJson, opts.file)) ?? {
      text: DEFAULT_INIT_SPEC,
      source: 'the default spec',
    };
    const spec = validateSpec(parseJsonInput(input));
    const name = ctx.clusterName ?? '(unnamed)';
    const cd = newClusterData(spec, opts.uid ?? newUid(), opts.now ?? nowIso());
    const text = serializeClusterData(cd);

    const existing = await ctx.store.getClusterData();
    if (existing === null) {
      try {
        await ctx.store.putClusterData(text, null);
      } catch (err) {
        if (err instanceof StoreConflictError) {
          throw new CommandError(
            `cluster ${name} was initialized by someone else at the same time; ` +
              'check it with stolonctl status, or run init again with --yes to overwrite it',
            ExitCode.runtime,
            { cause: err },
          );
        }
        throw err;
      }
      ctx.out(`cluster ${name} initialized (uid ${cd.cluster.uid})`);
      return ExitCode.ok;
    }

    const warning =
      `cluster ${name} already exists; overwriting it discards its keepers, DBs and proxy state, ` +
      'and its keepers will reinitialise their data';
    let confirmed = opts.yes === true;
    if (!confirmed && ctx.confirm !== undefined) {
      confirmed = await ctx.confirm(`${warning}. Overwrite it? (yes/no)`);
      if (!confirmed) {
        throw new CommandError(`not confirmed; cluster ${name} left unchanged`, ExitCode.runtime);
      }
    }
    if (!confirmed) {
      throw new CommandError(
        `cluster ${name} already exists; re-run with --yes to overwrite it (this discards the existing ` +
          'cluster: its keepers, DBs and proxy state)',
        ExitCode.runtime,
        { field: 'yes' },
      );
    }
    // Stolon overwrites without compare-and-set here: the operator asked to replace whatever is
    // stored, including a cluster a sentinel is writing to right now.
    await ctx.store.overwriteClusterData(text);
    ctx.out(`cluster ${name} re-initialized (uid ${cd.cluster.uid}, replacing uid ${uidOf(existing.text)})`);
    return ExitCode.ok;
  });
}

/** The cluster uid of stored clusterdata, for the message only; "(unknown)" if unreadable. */
function uidOf(text: string): string {
  try {
    const raw = JSON.parse(text) as { cluster?: { uid?: unknown } };
    return typeof raw.cluster?.uid === 'string' ? raw.cluster.uid : '(unknown)';
  } catch {
    return '(unknown)';
  }
}
