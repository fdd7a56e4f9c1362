/**
 * Failpoints: named, compiled-in test hooks in the style of etcd's gofail (docs/design.md,
 * "Failpoints"). Every failpoint is OFF unless the process was started with
 * `STOLON_FAILPOINTS_DIR=<dir>`; then failpoint NAME is active while the file `<dir>/NAME`
 * exists, and that file's content is its action:
 * - `hang`: the caller blocks until the file is removed or its content changes (polled every
 *   100 ms); then the new action, if any, runs;
 * - `error`: the caller gets a {@link FailpointError};
 * - `sleep(<ms>)`: the caller waits that many ms, then goes on.
 * An empty or unknown content is reported once on stderr and ignored. Without the variable
 * {@link failpoint} is a constant no-op: no file system access, no timer. Nothing in the store or
 * the cluster spec can enable one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A failpoint's name; every one is listed in docs/design.md, "Failpoints":
 * - `keeperPassHang`: the keeper's pass, before it observes PostgreSQL (its process, its lease
 *   keepalive and its fencer updates go on);
 * - `keeperBeforePromote`: the keeper, after the sentinel ordered this standby's promotion and
 *   before it asks PostgreSQL to promote (`sleep(<ms>)` makes a switchover or failover leave no
 *   primary for at least that long);
 * - `proxyCheckFail`: the proxy's check, before it reads clusterdata (the check fails as if the
 *   store were unreachable).
 */
export type FailpointName = 'keeperPassHang' | 'keeperBeforePromote' | 'proxyCheckFail';

/** Thrown by an active failpoint whose action is `error`. */
export class FailpointError extends Error {
  constructor(readonly failpoint: FailpointName) {
    super(`failpoint ${failpoint}: injected error`);
    this.name = 'FailpointError';
  }
}

const POLL_MS = 100;

type Action = { readonly kind: 'hang' } | { readonly kind: 'error' } | { readonly kind: 'sleep'; readonly ms: number };

/** Parses a failpoint file's content; undefined for anything else than the three actions. */
function parseAction(text: string): Action | undefined {
  const t = text.trim();
  if (t === 'hang' || t === 'error') {
    return { kind: t };
  }
  const m = /^sleep\((\d+)\)$/.exec(t);
  return m === null ? undefined : { kind: 'sleep', ms: Number(m[1]) };
}

/**
 * The failpoint evaluator for `dir` (exported for the unit test; production code calls
 * {@link failpoint}).
 * @param dir the directory holding one file per active failpoint, or undefined (all off)
 * @returns an async function that runs NAME's current action; resolves at once when inactive
 */
export function failpointsIn(dir: string | undefined): (name: FailpointName) => Promise<void> {
  if (dir === undefined || dir === '') {
    return () => Promise.resolve();
  }
  const warned = new Set<string>();
  const read = (name: FailpointName): { text: string; action: Action | undefined } | undefined => {
    let text: string;
    try {
      text = readFileSync(join(dir, name), 'utf8');
    } catch {
      return undefined;
    }
    const action = parseAction(text);
    if (action === undefined && !warned.has(`${name}|${text}`)) {
      warned.add(`${name}|${text}`);
      process.stderr.write(`failpoint ${name}: unknown action ${JSON.stringify(text.trim())} in ${join(dir, name)} (use hang, error or sleep(<ms>)); ignored\n`);
    }
    return { text, action };
  };
  return async (name) => {
    let cur = read(name);
    while (cur?.action !== undefined) {
      const { action, text } = cur;
      if (action.kind === 'error') {
        throw new FailpointError(name);
      }
      if (action.kind === 'sleep') {
        await sleep(action.ms);
        return;
      }
      // hang: until the file goes away or says something else.
      do {
        await sleep(POLL_MS);
        cur = read(name);
      } while (cur !== undefined && cur.text === text);
    }
  };
}

/**
 * Runs failpoint `name`: a no-op unless `STOLON_FAILPOINTS_DIR` (read once, at module load) names
 * a directory holding a file `name`; see the module header for the actions.
 * @throws FailpointError when the failpoint's action is `error`
 */
export const failpoint: (name: FailpointName) => Promise<void> = failpointsIn(process.env['STOLON_FAILPOINTS_DIR']);
