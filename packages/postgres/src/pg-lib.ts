/**
 * node-postgres, loaded on first use rather than at import: with what it loads at its own start
 * (on Node 20 its Cloudflare check builds a `Response`, which loads undici) it costs a keeper
 * ~60-70 ms of CPU that its start does not need; a keeper that clones first uses it only once
 * its copy's PostgreSQL runs. The package is CommonJS, so a synchronous `require` suffices, and
 * returns the instance an ES `import` of it gets (the same `Client` class, the same type parsers).
 */
import { createRequire } from 'node:module';
import type * as Pg from 'pg';

/** The `pg` module (loaded by the first call, cached by Node's module cache afterwards). */
export function pgLib(): typeof Pg {
  return createRequire(import.meta.url)('pg') as typeof Pg;
}

/**
 * Loads node-postgres now, so that its first use later does not pay for it: the keeper calls this
 * a second after its first pass has settled (packages/keeper/src/late-setup.ts), past the passes
 * that react to the sentinel's answer to its first publish.
 */
export function preloadPgLib(): void {
  pgLib();
}
