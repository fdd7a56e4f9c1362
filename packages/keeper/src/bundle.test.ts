/**
 * The `stolon-keeper` program is one bundled CommonJS file, `dist/stolon-keeper.cjs`, with V8's
 * code cache of it (scripts/bundle.mjs, run by `npm run build`), run by `dist/bin.js`
 * (bin.ts, bundle-loader.ts): it runs; it holds the keeper's own modules and the etcd client;
 * it leaves the CommonJS packages the keeper loads on first use (pg, prom-client) out, so they
 * are loaded from node_modules when used; this Node accepts the cache, and a cache that does not
 * match is refused, not used.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BUNDLE_FILE, CODE_CACHE_FILE } from './bundle-loader.js';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const BUNDLE = fileURLToPath(new URL(`../dist/${BUNDLE_FILE}`, import.meta.url));
const CACHE = fileURLToPath(new URL(`../dist/${CODE_CACHE_FILE}`, import.meta.url));
const META = fileURLToPath(new URL('../dist/stolon-keeper.meta.json', import.meta.url));

/** The npm package of a path under node_modules (`@grpc/grpc-js`, `pg`), else undefined. */
const packageOf = (path: string): string | undefined => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1];

/** Packages loaded on first use; none may be inside the bundle nor loaded by its start. */
const ON_FIRST_USE = ['pg', 'prom-client', '@opentelemetry/api'];

/** The etcd client, which the bundle holds (its CommonJS files are no longer loaded one by one). */
const ETCD_CLIENT = ['etcd3', '@grpc/grpc-js', '@grpc/proto-loader', 'protobufjs', 'cockatiel'];

/** A V8 flag that changes V8's flag hash, so that V8 refuses a cache written without it. */
const REFUSING_FLAG = '--no-lazy-feedback-allocation';

/** compileBundle's `cacheRejected` for the bundle with `cacheFile`, in a new Node process started with `nodeFlags`. */
async function cacheRejected(cacheFile: string, nodeFlags: string[] = []): Promise<boolean | undefined> {
  const loader = new URL('../dist/bundle-loader.js', import.meta.url).href;
  const probe = `import { compileBundle } from ${JSON.stringify(loader)};
console.log(JSON.stringify({ r: compileBundle(${JSON.stringify(BUNDLE)}, ${JSON.stringify(cacheFile)}).cacheRejected }));`;
  const { stdout } = await runNode([...nodeFlags, '--input-type=module', '-e', probe]);
  return (JSON.parse(stdout) as { r?: boolean }).r;
}

/** Runs `node <args>`; resolves with its output, rejects with stderr on a non-zero exit. */
function runNode(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    execFile(process.execPath, args, { encoding: 'utf8', timeout: 60_000 }, (err, out, errOut) =>
      err === null ? res({ stdout: out, stderr: errOut }) : rej(new Error(`${err.message}\n${errOut}`)),
    );
  });
}

describe('the stolon-keeper bundle', () => {
  it('holds the keeper, the libraries it imports and the etcd client, not the packages it loads on first use', () => {
    expect(existsSync(BUNDLE), `${BUNDLE} is missing: run npm run build`).toBe(true);
    const inputs = Object.keys((JSON.parse(readFileSync(META, 'utf8')) as { inputs: Record<string, unknown> }).inputs);
    expect(inputs.some((p) => p.endsWith('packages/keeper/dist/main.js'))).toBe(true);
    expect(inputs.some((p) => p.endsWith('packages/postgres/dist/pg-exec.js'))).toBe(true);
    const bundled = new Set(inputs.map(packageOf).filter((p) => p !== undefined));
    expect(bundled).toContain('yargs');
    expect(ETCD_CLIENT.filter((p) => !bundled.has(p))).toEqual([]);
    expect(ON_FIRST_USE.filter((p) => bundled.has(p))).toEqual([]);
  });

  it('finds the child supervisor of @stolon-ts/postgres, and etcd\'s .proto files, from the bundle', () => {
    // pg-exec.ts's third candidate: what a bundled keeper runs pg_basebackup under.
    expect(existsSync(fileURLToPath(new URL('../../postgres/dist/child-supervisor-bin.js', new URL(`../dist/${BUNDLE_FILE}`, import.meta.url))))).toBe(true);
    const source = readFileSync(BUNDLE, 'utf8');
    expect(source).toContain('../../postgres/dist/child-supervisor-bin.js');
    // etcd3 reads `${__dirname}/../proto/rpc.proto`: __dirname is its own lib directory, not the bundle's.
    expect(source).toContain('require.resolve("etcd3/package.json")), "lib")');
    expect(source).toContain('/../proto/rpc.proto');
  });

  // A Node start in a child process: generous on a loaded 2-core machine.
  it('runs --help, loading none of the packages it loads on first use', { timeout: 60_000 }, async () => {
    // At exit, the npm packages in the process's CommonJS module cache, on stderr.
    const atExit = `import { createRequire } from 'node:module';
process.on('exit', () => process.stderr.write('\\nCJS ' + JSON.stringify(Object.keys(createRequire(process.argv[1]).cache))));`;
    const { stdout, stderr } = await runNode(['--import', `data:text/javascript,${encodeURIComponent(atExit)}`, BIN, '--help']);
    expect(stdout).toContain('--cluster-name');
    expect(stdout).toContain('--pg-repl-password-file');
    const line = stderr.split('\n').find((l) => l.startsWith('CJS '));
    expect(line).toBeDefined();
    const loaded = new Set((JSON.parse(line!.slice(4)) as string[]).map(packageOf).filter((p) => p !== undefined));
    expect(ON_FIRST_USE.filter((p) => loaded.has(p))).toEqual([]);
  });

  // Each check in a new Node process: within one, V8 reuses what it compiled before and does not
  // look at the cache again.
  it('has a code cache this Node accepts, and refuses one that does not match', { timeout: 60_000 }, async () => {
    expect(existsSync(CACHE), `${CACHE} is missing: run npm run build`).toBe(true);
    expect(await cacheRejected(CACHE)).toBe(false);
    const dir = mkdtempSync(join(tmpdir(), 'stolon-bundle-test-'));
    try {
      expect(await cacheRejected(join(dir, 'none'))).toBeUndefined();
      // V8's own check looks at the source's length only: a cache made for other bytes of the
      // same length is refused by the digest in front of it.
      const other = Buffer.from(readFileSync(CACHE));
      other.writeUInt8(other.readUInt8(0) ^ 0xff, 0);
      writeFileSync(join(dir, 'other'), other);
      expect(await cacheRejected(join(dir, 'other'))).toBe(true);
      // A V8 flag in the command line (or NODE_OPTIONS): V8 refuses the cache.
      expect(await cacheRejected(CACHE, [REFUSING_FLAG])).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('still runs when its code cache is refused', { timeout: 60_000 }, async () => {
    const { stdout } = await runNode([REFUSING_FLAG, BIN, '--help']);
    expect(stdout).toContain('--cluster-name');
  });
});
