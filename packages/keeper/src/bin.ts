#!/usr/bin/env node
/**
 * stolon-keeper: runs the bundled keeper (`stolon-keeper.cjs` next to this file, built from `main.ts` by
 * `npm run build`) with its V8 code cache (bundle-loader.ts). Without the bundle (only `tsc -b`
 * ran) it says so and exits 1; `node dist/main.js` runs the same keeper unbundled.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BUNDLE_FILE, CODE_CACHE_FILE, compileBundle, runBundle } from './bundle-loader.js';

const bundle = fileURLToPath(new URL(BUNDLE_FILE, import.meta.url));
if (!existsSync(bundle)) {
  process.stderr.write(`stolon-keeper: ${bundle} is missing: build it with npm run build (or run dist/main.js unbundled)\n`);
  process.exit(1);
}
runBundle(compileBundle(bundle, fileURLToPath(new URL(CODE_CACHE_FILE, import.meta.url))));
