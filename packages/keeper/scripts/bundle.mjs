#!/usr/bin/env node
/**
 * Builds the `stolon-keeper` program, `packages/keeper/dist/bin.js`: one ES module bundled by
 * esbuild from the compiled `dist/main.js` (run `tsc -b` first; `npm run build` runs both).
 *
 * Why: a new keeper's start is on the path of every clone (bench:clone), and on Node 20 most of
 * it was the ES module loader's per-file cost over the ~200 compiled files of the keeper and the
 * libraries it imports, not their code. One file loads in one step.
 *
 * What stays out of the bundle, loaded from node_modules at run time as before:
 * - the CommonJS packages the code already loads lazily with `createRequire` (etcd3 and gRPC,
 *   which read their .proto files from their own directories; pg; prom-client; pino; the
 *   Kubernetes and Consul clients): esbuild leaves such calls alone, and they resolve from the
 *   bundle's directory, which node_modules encloses as it does the modules they came from;
 * - the keeper's child programs, separate files by design: the fencer (`dist/fencer-bin.js`,
 *   next to the bundle) and PostgreSQL's child supervisor (`@stolon-ts/postgres`'s
 *   `dist/child-supervisor-bin.js`, which pg-exec.ts finds from the bundle too).
 *
 * `keepNames` keeps class and function names as written (error class names appear in logs).
 * The bundle's CommonJS parts get a `require` of their own (the banner), for their `require` of
 * Node's modules. A source map is written next to the bundle (`dist/bin.js.map`), for
 * `node --enable-source-maps`, and esbuild's account of what went into it (`dist/bin.meta.json`),
 * which `src/bundle.test.ts` reads.
 *
 * Usage: node packages/keeper/scripts/bundle.mjs   (from anywhere)
 * Exit status: 0 on success, 1 with esbuild's messages on failure.
 */
import { writeFile } from 'node:fs/promises';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));

try {
  const result = await build({
    entryPoints: [`${dist}main.js`],
    outfile: `${dist}bin.js`,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    keepNames: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    banner: { js: "import { createRequire as __stolonCreateRequire } from 'node:module';\nconst require = __stolonCreateRequire(import.meta.url);" },
  });
  await writeFile(`${dist}bin.meta.json`, JSON.stringify(result.metafile));
} catch {
  // esbuild has printed its errors.
  process.exit(1);
}
