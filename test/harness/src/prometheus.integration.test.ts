/**
 * The Prometheus helper against a real Prometheus (Debian's package): it scrapes an in-process
 * `/metrics` endpoint every second, answers instant queries, and `stop()` leaves nothing behind.
 */
import { existsSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrometheus, type PrometheusHandle } from './prometheus.js';
import { waitFor } from './wait.js';

describe('startPrometheus', () => {
  let server: Server | undefined;
  let prom: PrometheusHandle | undefined;
  let hits = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++;
      res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': 'text/plain; version=0.0.4' });
      res.end('# HELP stolon_test_value A test gauge\n# TYPE stolon_test_value gauge\nstolon_test_value{role="primary"} 42\n');
    });
    await new Promise<void>((r) => server!.listen({ host: '127.0.0.1', port: 0 }, r));
    const port = (server.address() as AddressInfo).port;
    prom = await startPrometheus({ jobs: [{ name: 'fake', targets: [`127.0.0.1:${port}`], labels: { stolon_cluster: 'itest' } }] });
  });

  afterAll(async () => {
    await prom?.stop();
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
  });

  it('scrapes the target every second: up == 1 with the job and its labels, and the exported value', async () => {
    const up = await waitFor(async () => {
      const r = await prom!.query('up');
      return r.length === 1 && r[0]!.value === 1 ? r : undefined;
    }, { timeoutMs: 20_000, what: 'up == 1' });
    expect(up[0]!.labels).toMatchObject({ job: 'fake', stolon_cluster: 'itest' });
    const v = await prom!.query('stolon_test_value{role="primary"}');
    expect(v.map((s) => s.value)).toEqual([42]);
    const before = hits;
    await new Promise((r) => setTimeout(r, 3000));
    expect(hits - before).toBeGreaterThanOrEqual(2);
  });

  it('a bad query fails with Prometheus\'s error', async () => {
    await expect(prom!.query('sum(')).rejects.toThrow(/parse error/);
  });

  it('stop() ends the process and removes its directory', async () => {
    const p = prom!;
    // Prometheus runs in its directory (the helper's temp dir).
    const cwd = await readlink(`/proc/${p.process.pid}/cwd`);
    expect(cwd).toMatch(/stolon-prometheus-/);
    expect(existsSync(cwd)).toBe(true);
    await p.stop();
    expect(p.process.running()).toBe(false);
    expect(existsSync(cwd)).toBe(false);
    await p.stop();
  });
});
