/**
 * Start-up cost of the keeper: the modules its start imports (the metrics module, the PostgreSQL
 * manager) load neither prom-client nor node-postgres; the keeper loads both a second after its
 * first pass (late-setup.ts). The bundled program keeps them out too (bundle.test.ts).
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { npmPackagesLoaded } from '@stolon-ts/harness';

const METRICS = JSON.stringify(fileURLToPath(new URL('../dist/keeper-metrics.js', import.meta.url)));
const POSTGRES = JSON.stringify(fileURLToPath(new URL('../../postgres/dist/index.js', import.meta.url)));

/** Runs `code` after importing the built modules above in a new Node process; the npm packages in its CommonJS module cache, sorted. */
function packagesLoaded(code: string): Promise<string[]> {
  return npmPackagesLoaded(`const metrics = await import(${METRICS});
const postgres = await import(${POSTGRES});
${code}`);
}

describe('start-up cost of the keeper', () => {
  // Node start-ups in child processes: generous on a loaded 2-core machine.
  it('importing its metrics module and the PostgreSQL manager loads neither prom-client nor pg', { timeout: 60_000 }, async () => {
    const loaded = await packagesLoaded('');
    expect(loaded.filter((p) => ['prom-client', 'pg', '@opentelemetry/api'].includes(p))).toEqual([]);
  });

  it('preloadPgLib loads pg, and the metrics classes are prom-client\'s own', { timeout: 60_000 }, async () => {
    const loaded = await packagesLoaded(`postgres.preloadPgLib();
const { Histogram, Registry } = await import('prom-client');
const registry = new Registry();
metrics.registerKeeperMetrics(registry, () => ({}), 'k1');
if (!(registry.getSingleMetric('stolon_keeper_pass_duration_seconds') instanceof Histogram)) throw new Error('not the Histogram class of prom-client');`);
    expect(loaded).toContain('pg');
    expect(loaded).toContain('prom-client');
  });
});
