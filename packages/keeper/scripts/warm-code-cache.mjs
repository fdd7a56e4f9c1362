#!/usr/bin/env node
/**
 * The code cache's warm-up start (run by bundle.mjs, not on its own): compiles the keeper bundle
 * without a cache, runs it with the keeper flags given, and when the process exits writes the
 * code cache file (the bundle's digest, then V8's cache of everything that ran by then).
 *
 * Usage: node warm-code-cache.mjs <dist/stolon-keeper.cjs> <cache file to write> <keeper flags…>
 */
import { writeFileSync } from 'node:fs';
import process from 'node:process';
import { codeCacheOf, compileBundle, runBundle } from '../dist/bundle-loader.js';

const [bundleFile, cacheFile, ...keeperArgs] = process.argv.slice(2);
const compiled = compileBundle(bundleFile, undefined);
process.argv = [process.argv[0], bundleFile, ...keeperArgs];
process.on('exit', () => writeFileSync(cacheFile, codeCacheOf(compiled)));
runBundle(compiled);
