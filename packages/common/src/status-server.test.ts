/** The status endpoint over real HTTP on 127.0.0.1 with fake checks, and its listen-address parser. */
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '@stolon-ts/cluster';
import { createDaemonMetrics } from './metrics.js';
import { parseListenAddress, startStatusServer, type CheckResult, type StatusServer } from './status-server.js';

interface Reply {
  readonly code: number;
  readonly type: string | undefined;
  readonly body: string;
}

function call(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

let server: StatusServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('status server', () => {
  it('answers /healthz and /readyz from the checks: 200 when ok, 503 with a one-line JSON reason otherwise', async () => {
    let ready: CheckResult = { ok: false, reason: 'postgres is not running\nsecond line' };
    server = await startStatusServer({ host: '127.0.0.1', port: 0 }, { healthz: () => ({ ok: true, reason: 'alive' }), readyz: () => ready });
    expect(server.address.host).toBe('127.0.0.1');
    const port = server.address.port;

    const h = await call(port, '/healthz');
    expect(h).toEqual({ code: 200, type: 'application/json; charset=utf-8', body: '{"status":"ok","reason":"alive"}\n' });
    const r1 = await call(port, '/readyz');
    expect(r1.code).toBe(503);
    expect(r1.body).toBe('{"status":"fail","reason":"postgres is not running second line"}\n');
    ready = { ok: true, reason: 'primary db d1 running at generation 3' };
    const r2 = await call(port, '/readyz?verbose=1');
    expect(r2.code).toBe(200);
    expect(JSON.parse(r2.body)).toEqual({ status: 'ok', reason: 'primary db d1 running at generation 3' });
  });

  it('a throwing check is a 503, unknown paths 404, other methods 405, HEAD has no body', async () => {
    server = await startStatusServer(
      { host: '127.0.0.1', port: 0 },
      {
        healthz: () => {
          throw new Error('boom');
        },
        readyz: () => ({ ok: true, reason: 'x'.repeat(2000) }),
      },
    );
    const port = server.address.port;
    const h = await call(port, '/healthz');
    expect(h.code).toBe(503);
    expect(JSON.parse(h.body)).toEqual({ status: 'fail', reason: 'check failed: boom' });
    expect((JSON.parse((await call(port, '/readyz')).body) as { reason: string }).reason).toHaveLength(500);
    expect((await call(port, '/metrics')).code).toBe(404);
    expect((await call(port, '/readyz', 'POST')).code).toBe(405);
    expect(await call(port, '/readyz', 'HEAD')).toMatchObject({ code: 200, body: '' });
  });

  it('serves more checks by exact path; they cannot shadow /healthz or /readyz, nor inherited keys', async () => {
    server = await startStatusServer(
      { host: '127.0.0.1', port: 0 },
      {
        healthz: () => ({ ok: true, reason: 'alive' }),
        readyz: () => ({ ok: false, reason: 'no primary' }),
        more: { '/readyz/read-only': () => ({ ok: true, reason: '1 read-only target' }), '/readyz': () => ({ ok: true, reason: 'shadow' }) },
      },
    );
    const port = server.address.port;
    expect(await call(port, '/readyz/read-only')).toMatchObject({ code: 200, body: '{"status":"ok","reason":"1 read-only target"}\n' });
    expect((await call(port, '/readyz')).code).toBe(503);
    expect((await call(port, '/toString')).code).toBe(404);
    expect(JSON.parse((await call(port, '/nope')).body)).toEqual({ status: 'fail', reason: 'no such endpoint /nope: try /healthz, /readyz, /readyz/read-only' });
  });

  it('rejects with the listen error when the address is taken', async () => {
    server = await startStatusServer({ host: '127.0.0.1', port: 0 }, { healthz: () => ({ ok: true, reason: '' }), readyz: () => ({ ok: true, reason: '' }) });
    await expect(
      startStatusServer({ host: '127.0.0.1', port: server.address.port }, { healthz: () => ({ ok: true, reason: '' }), readyz: () => ({ ok: true, reason: '' }) }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('parseListenAddress', () => {
  const good: [string, string, number][] = [
    ['0.0.0.0:8080', '0.0.0.0', 8080],
    ['127.0.0.1:1', '127.0.0.1', 1],
    ['[::]:8080', '::', 8080],
    ['[::1]:9000', '::1', 9000],
    [':8080', '', 8080],
    ['localhost:65535', 'localhost', 65535],
  ];
  for (const [text, host, port] of good) {
    it(`parses ${text}`, () => {
      expect(parseListenAddress(text, 'metrics-listen-address')).toEqual({ host, port });
    });
  }
  for (const bad of ['8080', '0.0.0.0', '0.0.0.0:0', '0.0.0.0:70000', '::1:8080', 'host:http', '']) {
    it(`rejects "${bad}" naming the flag`, () => {
      expect(() => parseListenAddress(bad, 'metrics-listen-address')).toThrow(ConfigError);
      expect(() => parseListenAddress(bad, 'metrics-listen-address')).toThrow(/--metrics-listen-address: /);
    });
  }
});

describe('status endpoint: /metrics and query parameters', () => {
  it('serves the Prometheus text of a daemon registry, passes the query to extra checks, and lists /metrics in a 404', async () => {
    const m = createDaemonMetrics('keeper', 'c1');
    const seen: string[] = [];
    const s = await startStatusServer(
      { host: '127.0.0.1', port: 0 },
      {
        healthz: () => ({ ok: true, reason: 'fine' }),
        readyz: () => ({ ok: true, reason: 'fine' }),
        more: { '/replica': (q) => (seen.push(q.get('lag') ?? ''), { ok: q.get('lag') === '1MB', reason: 'lag checked' }) },
        metrics: m.source,
      },
    );
    try {
      const base = `http://127.0.0.1:${s.address.port}`;
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(text).toContain('stolon_cluster_identifier{cluster_name="c1",component="keeper"} 1');
      expect(text).toContain('process_cpu_seconds_total');
      expect((await fetch(`${base}/replica?lag=1MB`)).status).toBe(200);
      expect((await fetch(`${base}/replica?lag=2MB`)).status).toBe(503);
      expect(seen).toEqual(['1MB', '2MB']);
      const missing = await fetch(`${base}/nope`);
      expect(missing.status).toBe(404);
      expect(await missing.text()).toMatch(/\/replica, \/metrics/);
    } finally {
      await s.close();
    }
  });

  it('answers 500 with the reason when collecting fails, and 404 on /metrics without a source', async () => {
    const s = await startStatusServer(
      { host: '127.0.0.1', port: 0 },
      { healthz: () => ({ ok: true, reason: '' }), readyz: () => ({ ok: true, reason: '' }), metrics: () => Promise.reject(new Error('collector broke')) },
    );
    const plain = await startStatusServer({ host: '127.0.0.1', port: 0 }, { healthz: () => ({ ok: true, reason: '' }), readyz: () => ({ ok: true, reason: '' }) });
    try {
      const res = await fetch(`http://127.0.0.1:${s.address.port}/metrics`);
      expect(res.status).toBe(500);
      expect(await res.text()).toMatch(/collector broke/);
      expect((await fetch(`http://127.0.0.1:${plain.address.port}/metrics`)).status).toBe(404);
    } finally {
      await s.close();
      await plain.close();
    }
  });
});
