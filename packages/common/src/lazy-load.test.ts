/**
 * Start-up cost of @stolon-ts/common: importing it (as stolonctl does) loads no metrics library,
 * no logger library and no store client; each daemon loads what it uses when it first uses it.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DIST = JSON.stringify(fileURLToPath(new URL('../dist/index.js', import.meta.url)));

/**
 * Runs `code` (an ES module body, with `common` bound to the built package) in a new Node process
 * and returns the npm packages in its CommonJS module cache at the end, sorted. Every package
 * checked here is CommonJS, and an ES `import` of one goes through that cache too.
 */
async function packagesLoaded(code: string): Promise<string[]> {
  const program = `import { createRequire } from 'node:module';
const common = await import(${DIST});
${code}
const names = Object.keys(createRequire(import.meta.url).cache).map((p) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(p)?.[1]).filter((n) => n !== undefined);
process.stdout.write(JSON.stringify([...new Set(names)].sort()));`;
  const out = await new Promise<string>((res, rej) => {
    execFile(process.execPath, ['--input-type=module', '-e', program], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      err === null ? res(stdout) : rej(new Error(`${err.message}\n${stderr}`)),
    );
  });
  return JSON.parse(out) as string[];
}

const HEAVY = ['prom-client', '@opentelemetry/api', 'pino', 'etcd3', '@grpc/grpc-js', 'consul', '@kubernetes/client-node'];

describe('start-up cost of @stolon-ts/common', () => {
  // Node start-ups in child processes: generous on a loaded 2-core machine.
  it('importing it loads none of prom-client, pino or a store client', { timeout: 60_000 }, async () => {
    const loaded = await packagesLoaded('');
    expect(loaded.filter((p) => HEAVY.includes(p))).toEqual([]);
  });

  it('createDaemonMetrics loads prom-client and createLogger loads pino, when called', { timeout: 60_000 }, async () => {
    const loaded = await packagesLoaded(`common.createDaemonMetrics('keeper', 'c1');
common.createLogger({ level: 'silent', component: 'keeper' });`);
    expect(loaded).toContain('prom-client');
    expect(loaded).toContain('pino');
    expect(loaded.filter((p) => ['etcd3', 'consul', '@kubernetes/client-node'].includes(p))).toEqual([]);
  });
});
