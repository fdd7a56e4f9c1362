/**
 * Start-up cost of @stolon-ts/common: importing it (as stolonctl does) loads no metrics library,
 * no logger library and no store client; each daemon loads what it uses when it first uses it.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { npmPackagesLoaded } from '@stolon-ts/harness';

const DIST = JSON.stringify(fileURLToPath(new URL('../dist/index.js', import.meta.url)));

/** Runs `code` (an ES module body, with `common` bound to the built package) in a new Node process; the npm packages in its CommonJS module cache at the end, sorted. */
function packagesLoaded(code: string): Promise<string[]> {
  return npmPackagesLoaded(`const common = await import(${DIST});
${code}`);
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
