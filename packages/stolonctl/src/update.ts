/**
 * `stolonctl update [spec-json] [-p] [-f FILE|-]`: replaces the cluster spec, or with `--patch`
 * applies an RFC 7386 JSON merge patch to it. The new spec is checked with `validateSpecUpdate`
 * before any write, and written by compare-and-set on the revision read; on a conflict the
 * document is re-read and the patch re-applied to the fresh spec, so a concurrent change to
 * another field is kept.
 * @see ../../../../shared/reference/stolon.md §7 (Stolon `cmd/stolonctl/cmd/update.go`)
 */
import {
  mergePatch,
  serializeClusterData,
  StoreConflictError,
  validateSpecUpdate,
  type ClusterData,
} from '@stolon-ts/cluster';
import {
  CommandError,
  ExitCode,
  loadClusterData,
  parseJsonInput,
  readJsonInput,
  runCommand,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** How many compare-and-set writes `update` tries before giving up (Stolon: 3). */
export const UPDATE_ATTEMPTS = 3;

/** Options of {@link runUpdate}. */
export interface UpdateOptions {
  /** The spec or patch as JSON text (the positional argument). */
  readonly specJson?: string;
  /** `--file`: a path to read it from, or `-` for stdin. */
  readonly file?: string;
  /** `--patch`: treat the document as a JSON merge patch on the stored spec. @default false */
  readonly patch?: boolean;
}

/**
 * Updates the stored spec. Nothing is written unless the resulting spec is valid and allowed as
 * an update (initMode unchanged, role not master → standby); the stored document is unchanged
 * after any failure.
 * @returns 0 on success (also when the spec is already as asked); 2 for a missing or ambiguous
 *   input, bad JSON or an invalid spec; 1 when the cluster is not initialised, the store fails,
 *   or {@link UPDATE_ATTEMPTS} writes all lost to concurrent writers.
 */
export function runUpdate(ctx: CommandContext, opts: UpdateOptions): Promise<ExitCodeValue> {
  return runCommand(ctx, 'update', async () => {
    const input = await readJsonInput(ctx, opts.specJson, opts.file);
    if (input === undefined) {
      throw new CommandError(
        'no spec given; pass it as the spec-json argument or with --file FILE (- for stdin)',
        ExitCode.usage,
        { field: 'spec-json' },
      );
    }
    const doc = parseJsonInput(input);
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw new CommandError(
        `${input.source} must be a JSON object (${opts.patch === true ? 'a merge patch' : 'a cluster spec'})`,
        ExitCode.usage,
      );
    }

    for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt++) {
      const { cd, record } = await loadClusterData(ctx);
      const prev = cd.cluster.spec;
      // Re-applied to the freshly read spec on every attempt: a patch only ever touches its own
      // fields, whatever another writer changed in between.
      const wanted = opts.patch === true ? mergePatch(prev, doc) : doc;
      const next = validateSpecUpdate(prev, wanted);
      if (JSON.stringify(next) === JSON.stringify(prev)) {
        ctx.out('spec unchanged; nothing written');
        return ExitCode.ok;
      }
      const updated: ClusterData = { ...cd, cluster: { ...cd.cluster, spec: next } };
      try {
        await ctx.store.putClusterData(serializeClusterData(updated), record.revision);
      } catch (err) {
        if (err instanceof StoreConflictError) {
          continue;
        }
        throw err;
      }
      ctx.out('spec updated');
      return ExitCode.ok;
    }
    throw new CommandError(
      `clusterdata changed under every one of ${UPDATE_ATTEMPTS} attempts (other writers are active); ` +
        'nothing was written, run the command again',
      ExitCode.runtime,
    );
  });
}
