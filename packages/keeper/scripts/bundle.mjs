#!/usr/bin/env node
/**
 * Builds what `stolon-keeper` runs: `packages/keeper/dist/stolon-keeper.cjs`, one CommonJS file bundled
 * by esbuild from the compiled `dist/main.js` (run `tsc -b` first; `npm run build` runs both),
 * and `dist/stolon-keeper.cjs.code-cache`, V8's code cache of it. `dist/bin.js` (src/bin.ts, compiled
 * by tsc) loads the two (src/bundle-loader.ts).
 *
 * Why: a new keeper's start is on the path of every clone (bench:clone). On Node 20 most of it
 * was loading code: the module loader's per-file cost over some 200 compiled files and the
 * ~100 CommonJS files of etcd3, gRPC and protobufjs, then V8 parsing and compiling all of it.
 * One file is read in one step, and the code cache spares the compile of what a start runs.
 *
 * In the bundle: the keeper, the libraries it imports, and the etcd client (etcd3, @grpc/grpc-js,
 * @grpc/proto-loader, protobufjs, cockatiel), which the etcd store module `require`s (the
 * bundle rewrites its `requireCjs(…)` calls to plain `require`, and checks that it found all
 * three). etcd3 and gRPC read `.proto` files relative to their own `__dirname`: in the bundle their
 * modules get a `__dirname` resolved, at run time, in their package under node_modules, where the
 * files still are (the packages stay dependencies).
 * Left out, loaded from node_modules on first use as before: the other packages the code loads
 * through `createRequire` (pg, prom-client, pino, the Kubernetes and Consul clients), and the
 * keeper's child programs, separate files by design: the fencer (`dist/fencer-bin.js`) and
 * PostgreSQL's child supervisor (`@stolon-ts/postgres`'s `dist/child-supervisor-bin.js`, which
 * pg-exec.ts finds from the bundle's directory).
 *
 * The code cache: a child process compiles the bundle without a cache and starts the keeper in
 * it with flags that make it stop with an error right after it has created its store client
 * (an unreachable etcd endpoint, a data directory under a regular file, a stub `postgres`), so
 * the flag parsing, the module initialisation and the etcd client's loading have run; at exit it
 * writes V8's cache of what ran. The build then checks that this Node accepts the cache, and
 * fails if not. The cache is valid only for the Node binary that wrote it: the container image
 * builds it with its own Node (images/Dockerfile); another Node rejects it and compiles as usual.
 *
 * `keepNames` keeps class and function names as written (error class names appear in logs).
 * `import.meta.url` becomes the bundle's file URL. A source map is written next to the bundle
 * (`dist/stolon-keeper.cjs.map`, for reading stack traces), and esbuild's account of what went into it
 * (`dist/stolon-keeper.meta.json`), which `src/bundle.test.ts` reads.
 *
 * Usage: node packages/keeper/scripts/bundle.mjs   (from anywhere)
 * Exit status: 0 on success, 1 with esbuild's messages or the failing step on failure.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
// The file names the loader looks for (tsc has compiled it with the rest).
const { BUNDLE_FILE, CODE_CACHE_FILE, compileBundle } = await import(new URL('../dist/bundle-loader.js', import.meta.url).href);
const bundle = `${dist}${BUNDLE_FILE}`;
const codeCache = `${dist}${CODE_CACHE_FILE}`;
const warmUp = fileURLToPath(new URL('./warm-code-cache.mjs', import.meta.url));

/** The etcd store module's `require`s of CommonJS packages, which the bundle takes in. */
const ETCD_REQUIRES = /requireCjs\(('(?:etcd3|@grpc\/grpc-js|cockatiel)')\)/g;

/** The npm package directory of a file under node_modules, and its path inside the package. */
function packageOf(path) {
  const at = path.lastIndexOf('/node_modules/') + '/node_modules/'.length;
  const parts = path.slice(at).split('/');
  const n = parts[0].startsWith('@') ? 2 : 1;
  return { name: parts.slice(0, n).join('/'), dirInPackage: parts.slice(n, -1).join('/') };
}

/** esbuild plugin: the two source rewrites described above. */
const etcdClientInBundle = {
  name: 'etcd-client-in-bundle',
  setup(b) {
    b.onLoad({ filter: /[/\\]store[/\\]dist[/\\]etcd\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      const found = src.match(ETCD_REQUIRES)?.length ?? 0;
      if (found !== 3) {
        throw new Error(`${args.path}: expected requireCjs() of etcd3, @grpc/grpc-js and cockatiel, found ${found}; update scripts/bundle.mjs`);
      }
      return { contents: src.replace(ETCD_REQUIRES, 'require($1)'), loader: 'js' };
    });
    b.onLoad({ filter: /[/\\]node_modules[/\\](etcd3|@grpc[/\\]grpc-js)[/\\].*\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      if (!src.includes('__dirname')) {
        return undefined;
      }
      const { name, dirInPackage } = packageOf(args.path.replaceAll('\\', '/'));
      const dir = `require('node:path').join(require('node:path').dirname(require.resolve(${JSON.stringify(`${name}/package.json`)})), ${JSON.stringify(dirInPackage)})`;
      return { contents: `var __dirname = ${dir};\n${src}`, loader: 'js' };
    });
  },
};

function fail(message) {
  process.stderr.write(`bundle.mjs: ${message}\n`);
  process.exit(1);
}

try {
  const result = await build({
    entryPoints: [`${dist}main.js`],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    keepNames: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    // Resolved at run time by the rewrite above, not bundled.
    external: ['etcd3/package.json', '@grpc/grpc-js/package.json'],
    define: { 'import.meta.url': '__stolonImportMetaUrl' },
    banner: { js: "var __stolonImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    plugins: [etcdClientInBundle],
  });
  writeFileSync(`${dist}stolon-keeper.meta.json`, JSON.stringify(result.metafile));
} catch {
  // esbuild has printed its errors.
  process.exit(1);
}

rmSync(codeCache, { force: true });
const scratch = mkdtempSync(join(tmpdir(), 'stolon-keeper-code-cache-'));
let warmUpFailure;
try {
  // A stub `postgres` for --pg-bin-path, and a regular file the data directory would be under.
  writeFileSync(join(scratch, 'postgres'), '#!/bin/sh\nexit 1\n');
  chmodSync(join(scratch, 'postgres'), 0o755);
  writeFileSync(join(scratch, 'file'), '');
  const args = [
    warmUp,
    bundle,
    codeCache,
    '--cluster-name=code-cache',
    '--store-backend=etcdv3',
    '--store-endpoints=http://127.0.0.1:9',
    '--uid=codecache',
    `--data-dir=${join(scratch, 'file', 'data')}`,
    `--pg-bin-path=${scratch}`,
    '--pg-os-user=root',
    '--log-level=error',
  ];
  // None of the builder's own STKEEPER_* settings: the warm-up start must stop where intended.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STKEEPER_')));
  Object.assign(env, { STKEEPER_PG_SU_PASSWORD: 'code-cache-warm-up-su', STKEEPER_PG_REPL_PASSWORD: 'code-cache-warm-up-repl' });
  const run = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 60_000 });
  if (!existsSync(codeCache)) {
    warmUpFailure = `the warm-up start wrote no code cache (status ${run.status}, signal ${run.signal}): ${run.stderr}${run.stdout}`;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (warmUpFailure !== undefined) {
  fail(warmUpFailure);
}
if (compileBundle(bundle, codeCache).cacheRejected !== false) {
  fail(`V8 rejected the code cache it just wrote (${codeCache})`);
}
