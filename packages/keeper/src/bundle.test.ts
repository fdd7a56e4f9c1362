/**
 * The `stolon-keeper` program is one bundled file, `dist/bin.js` (scripts/bundle.mjs, run by
 * `npm run build`): it runs, it holds the keeper's own modules, and it leaves the CommonJS
 * packages the keeper loads on first use (etcd3 and gRPC, pg, prom-client) out, so they are
 * loaded from node_modules when used, as from the unbundled modules.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const META = fileURLToPath(new URL('../dist/bin.meta.json', import.meta.url));

/** The npm package of a path under node_modules (`@grpc/grpc-js`, `pg`), else undefined. */
const packageOf = (path: string): string | undefined => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1];

/** Packages loaded on first use; none may be inside the bundle nor loaded by its start. */
const ON_FIRST_USE = ['pg', 'prom-client', '@opentelemetry/api', 'etcd3', '@grpc/grpc-js', '@grpc/proto-loader', 'protobufjs'];

describe('the stolon-keeper bundle', () => {
  it('holds the keeper and the libraries it imports, not the packages it loads on first use', () => {
    expect(existsSync(BIN), `${BIN} is missing: run npm run build`).toBe(true);
    const inputs = Object.keys((JSON.parse(readFileSync(META, 'utf8')) as { inputs: Record<string, unknown> }).inputs);
    expect(inputs.some((p) => p.endsWith('packages/keeper/dist/main.js'))).toBe(true);
    expect(inputs.some((p) => p.endsWith('packages/postgres/dist/pg-exec.js'))).toBe(true);
    const bundled = new Set(inputs.map(packageOf).filter((p) => p !== undefined));
    expect(bundled).toContain('yargs');
    expect(ON_FIRST_USE.filter((p) => bundled.has(p))).toEqual([]);
  });

  it('finds the child supervisor of @stolon-ts/postgres from its own directory', () => {
    // pg-exec.ts's third candidate: what a bundled keeper runs pg_basebackup under.
    expect(existsSync(fileURLToPath(new URL('../../postgres/dist/child-supervisor-bin.js', new URL('../dist/bin.js', import.meta.url))))).toBe(true);
    expect(readFileSync(BIN, 'utf8')).toContain('../../postgres/dist/child-supervisor-bin.js');
  });

  // A Node start in a child process: generous on a loaded 2-core machine.
  it('runs --help, loading none of the packages it loads on first use', { timeout: 60_000 }, async () => {
    // At exit, the npm packages in the process's CommonJS module cache, on stderr.
    const atExit = `import { createRequire } from 'node:module';
process.on('exit', () => process.stderr.write('\\nCJS ' + JSON.stringify(Object.keys(createRequire(process.argv[1]).cache))));`;
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((res, rej) => {
      execFile(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(atExit)}`, BIN, '--help'], { encoding: 'utf8', timeout: 60_000 }, (err, out, errOut) =>
        err === null ? res({ stdout: out, stderr: errOut }) : rej(new Error(`${err.message}\n${errOut}`)),
      );
    });
    expect(stdout).toContain('--cluster-name');
    expect(stdout).toContain('--pg-repl-password-file');
    const line = stderr.split('\n').find((l) => l.startsWith('CJS '));
    expect(line).toBeDefined();
    const loaded = new Set((JSON.parse(line!.slice(4)) as string[]).map(packageOf).filter((p) => p !== undefined));
    expect(ON_FIRST_USE.filter((p) => loaded.has(p))).toEqual([]);
  });
});
