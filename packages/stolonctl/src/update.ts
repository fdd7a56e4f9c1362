/**
 * `stolonctl update [spec-json] [-p] [-f FILE|-]`: replaces the cluster spec, or with `--patch`
 * applies an RFC 7386 JSON merge patch to it. The new spec is checked with `validateSpecUpdate`
 * before any write, and written by compare-and-set on the revision read; on a conflict the
 * document is re-read and the patch re-applied to the fresh spec, so a concurrent change to
 * another field is kept. {@link patchSpec} is that path on its own, for `pause` and `resume`.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/update.go (Stolon's command)
 */
import { mergePatch, validateSpecUpdate, type ClusterData, type ClusterSpec } from '@stolon-ts/cluster';
import {
  CAS_ATTEMPTS,
  CommandError,
  ExitCode,
  parseJsonInput,
  readJsonInput,
  runCommand,
  updateClusterData,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** How many compare-and-set writes `update` tries before giving up (Stolon: 3). */
export const UPDATE_ATTEMPTS = CAS_ATTEMPTS;

/** Options of {@link runUpdate}. */
export interface UpdateOptions {
  /** The spec or patch as JSON text (the positional argument). */
  readonly specJson?: string;
  /** `--file`: a path to read it from, or `-` for stdin. */
  readonly file?: string;
  /** `--patch`: treat the document as a JSON merge patch on the stored spec. @default false */
  readonly patch?: boolean;
}

/** What a spec write did. */
export interface SpecWrite {
  /** False when the resulting spec equals the stored one: nothing was written. */
  readonly changed: boolean;
  /** The spec as it was stored (in the attempt that decided). */
  readonly prev: ClusterSpec;
  /** The spec as it is stored now. */
  readonly next: ClusterSpec;
}

/**
 * Replaces the stored spec with `wanted(stored spec)`, checked by `validateSpecUpdate`, by
 * compare-and-set with up to {@link UPDATE_ATTEMPTS} attempts; `wanted` is re-applied to the
 * freshly read spec after every conflict. Nothing is written when the result equals the stored
 * spec, or after any failure.
 * @throws SpecValidationError when the resulting spec is invalid or not allowed as an update.
 * @throws CommandError (exit 1) when not initialised or every attempt lost to another writer.
 * @throws StoreUnavailableError, ClusterDataInvalidError as `loadClusterData` does.
 */
export function writeSpec(ctx: CommandContext, wanted: (prev: ClusterSpec) => unknown): Promise<SpecWrite> {
  return updateClusterData<SpecWrite>(ctx, ({ cd }) => {
    const prev = cd.cluster.spec;
    const next = validateSpecUpdate(prev, wanted(prev));
    if (JSON.stringify(next) === JSON.stringify(prev)) {
      return { result: { changed: false, prev, next } };
    }
    const updated: ClusterData = { ...cd, cluster: { ...cd.cluster, spec: next } };
    return { write: updated, result: { changed: true, prev, next } };
  });
}

/**
 * `update --patch` without the argument parsing: applies the RFC 7386 merge patch `patch` to the
 * stored spec through {@link writeSpec}. A patch only ever touches its own fields, whatever
 * another writer changed in between.
 * @example patchSpec(ctx, { paused: true }) // what `stolonctl pause` does
 */
export function patchSpec(ctx: CommandContext, patch: Readonly<Record<string, unknown>>): Promise<SpecWrite> {
  return writeSpec(ctx, (prev) => mergePatch(prev, patch));
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
    const written =
      opts.patch === true ? await patchSpec(ctx, doc as Record<string, unknown>) : await writeSpec(ctx, () => doc);
    ctx.out(written.changed ? 'spec updated' : 'spec unchanged; nothing written');
    return ExitCode.ok;
  });
}
