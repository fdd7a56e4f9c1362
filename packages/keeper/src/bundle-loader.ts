/**
 * Loads the bundled keeper (`dist/stolon-keeper.cjs`, one CommonJS file built by
 * `scripts/bundle.mjs`) with V8's code cache (`dist/stolon-keeper.cjs.code-cache`, written by the same
 * build): a new keeper's start is on the path of every clone, and compiling the bundle's ~3 MB of
 * JavaScript was a large part of it. With the cache V8 takes the bytecode of the functions that
 * ran during the build's warm-up start instead of parsing and compiling them again.
 *
 * The cache is only an optimisation. V8 checks it against its own version and flags (`vm.Script`
 * `cachedData`, see https://nodejs.org/api/vm.html#new-vmscriptcode-options) but of the source
 * only its length: a cache made for other bytes of the same length is accepted, and the old
 * bytecode runs (checked on Node 20). So the cache file starts with the SHA-256 of the bundle it
 * was made from, and a cache for other bytes is not handed to V8 at all. When the cache does not
 * match (another Node binary, a V8 flag such as `--max-old-space-size` in NODE_OPTIONS, a bundle
 * rebuilt without its cache) the keeper compiles the bundle as Node would, a few tens of
 * milliseconds slower, and behaves the same.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import vm from 'node:vm';

/** File name of the bundle, next to this module in `dist/`. */
export const BUNDLE_FILE = 'stolon-keeper.cjs';
/** File name of the bundle's V8 code cache, next to it. */
export const CODE_CACHE_FILE = 'stolon-keeper.cjs.code-cache';

/** Bytes of the SHA-256 of the bundle at the start of its code cache file. */
const DIGEST_BYTES = 32;

/** The bundle compiled, not yet run. */
export interface CompiledBundle {
  /** Absolute path of the bundle (its `__filename`). */
  readonly file: string;
  /** The compiled script. */
  readonly script: vm.Script;
  /** SHA-256 of the bundle's bytes as read. */
  readonly digest: Buffer;
  /** undefined when no cache was given or found; else whether it was refused (other bundle, or by V8). */
  readonly cacheRejected: boolean | undefined;
}

/**
 * The contents of a code cache file for `bundle`: its digest, then V8's cache of the functions
 * that have run so far (`vm.Script.createCachedData()`).
 */
export function codeCacheOf(bundle: CompiledBundle): Buffer {
  return Buffer.concat([bundle.digest, bundle.script.createCachedData()]);
}

/** The function a CommonJS file's source becomes, as Node wraps it. */
type CommonJsBody = (exports: unknown, require: NodeJS.Require, module: { exports: unknown }, filename: string, dirname: string) => void;

/**
 * Reads and compiles the bundle `file` as Node compiles a CommonJS module (the same wrapper
 * parameters), with the code cache in `cacheFile` when that file exists.
 * @param file absolute path of `stolon-keeper.cjs`
 * @param cacheFile absolute path of its code cache; undefined or a missing file: no cache
 * @throws Error from reading `file` (ENOENT: not built) or a SyntaxError from compiling it;
 *   errors reading `cacheFile` other than ENOENT
 */
export function compileBundle(file: string, cacheFile: string | undefined): CompiledBundle {
  const bytes = readFileSync(file);
  const digest = createHash('sha256').update(bytes).digest();
  let source = bytes.toString('utf8');
  if (source.startsWith('#!')) {
    // The hashbang is valid only on a file's first line; inside the wrapper it is a comment.
    source = `//${source.slice(2)}`;
  }
  let cacheFileData: Buffer | undefined;
  if (cacheFile !== undefined) {
    try {
      cacheFileData = readFileSync(cacheFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw err;
      }
    }
  }
  const forThisBundle = cacheFileData !== undefined && cacheFileData.length > DIGEST_BYTES && cacheFileData.subarray(0, DIGEST_BYTES).equals(digest);
  const cachedData = forThisBundle ? cacheFileData?.subarray(DIGEST_BYTES) : undefined;
  // On one line with the source's first: line numbers in stack traces stay the bundle's.
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new vm.Script(wrapped, {
    filename: file,
    ...(cachedData !== undefined ? { cachedData } : {}),
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const cacheRejected = cacheFileData === undefined ? undefined : !forThisBundle || script.cachedDataRejected === true;
  return { file, script, digest, cacheRejected };
}

/**
 * Runs a compiled bundle in this process as its main program: `require` resolves from the
 * bundle's directory (node_modules above it), `__filename`/`__dirname` are the bundle's.
 * @throws what the bundle's top level throws (the keeper's own errors are handled inside it)
 */
export function runBundle(bundle: CompiledBundle): void {
  const body = bundle.script.runInThisContext() as CommonJsBody;
  const module = { exports: {} as unknown };
  body.call(module.exports, module.exports, createRequire(bundle.file), module, bundle.file, dirname(bundle.file));
}
