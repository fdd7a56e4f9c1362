/**
 * A tiny HTTP status endpoint for orchestrators (Kubernetes probes) and Prometheus: `GET /healthz`
 * and `GET /readyz` (and any further check paths) answer 200 or 503 with one line of JSON
 * `{"status":"ok"|"fail","reason":"…"}`; `GET /metrics` answers the Prometheus text format when
 * the program passes a metrics source. Node's `http` module only, no framework. It binds exactly
 * where it is told (a program's `--metrics-listen-address`, Stolon's flag name) and nowhere when
 * the flag is unset; what "healthy" and "ready" mean is the program's business, passed in as
 * check functions.
 * @see Stolon's `--metrics-listen-address` (cmd/common.go): Stolon serves Prometheus metrics there
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '@stolon-ts/cluster';
import type { Logger } from './logger.js';

/** The outcome of one check: `ok` → 200, otherwise 503; `reason` is one human sentence. */
export interface CheckResult {
  readonly ok: boolean;
  readonly reason: string;
}

/** The two checks the endpoint serves. Both are called per request and must not block. */
export interface StatusChecks {
  /** `/healthz` (liveness): false means "restart me", so it must stay true through store outages. */
  readonly healthz: () => CheckResult;
  /** `/readyz` (readiness): true when the component does its job right now. */
  readonly readyz: () => CheckResult;
  /**
   * More checks by exact path (e.g. `/readyz/read-only`, `/replica`), answered as the two above;
   * they cannot replace `/healthz` or `/readyz`. A check gets the request's query parameters
   * (e.g. `/replica?lag=1MB`).
   */
  readonly more?: Readonly<Record<string, (query: URLSearchParams) => CheckResult>>;
  /**
   * `GET /metrics`: the Prometheus exposition (text format 0.0.4) and its content type, e.g. a
   * prom-client registry's `metrics()` and `contentType` (see `metrics.ts`). Unset: 404.
   */
  readonly metrics?: () => Promise<{ readonly contentType: string; readonly text: string }>;
}

/** Where to listen: `host` "" means every interface (Go's `:8080`). */
export interface ListenAddress {
  readonly host: string;
  /** TCP port; 0 asks the OS for a free one (tests). */
  readonly port: number;
}

/** A running status endpoint. */
export interface StatusServer {
  /** The address actually bound (the real port when 0 was asked for). */
  readonly address: ListenAddress;
  /** Stops accepting connections and closes idle ones; resolves when the server is closed. */
  close(): Promise<void>;
}

/**
 * Parses a Stolon-style listen address: `host:port`, `[ipv6]:port` or `:port` (every interface).
 * @param flag the flag name, for the error message (e.g. `metrics-listen-address`)
 * @returns host without brackets ("" for every interface) and the port (1–65535)
 * @throws ConfigError naming `flag` when there is no port, or the port is not 1–65535.
 */
export function parseListenAddress(text: string, flag: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(text.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`--${flag}: "${text}" is not host:port with a port 1-65535 (e.g. 0.0.0.0:8080 or [::]:8080)`, {
      field: flag,
    });
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

const PATHS: Readonly<Record<string, 'healthz' | 'readyz'>> = { '/healthz': 'healthz', '/readyz': 'readyz' };

function checkOf(checks: StatusChecks, path: string): ((query: URLSearchParams) => CheckResult) | undefined {
  const which = PATHS[path];
  if (which !== undefined) {
    return checks[which];
  }
  return checks.more !== undefined && Object.hasOwn(checks.more, path) ? checks.more[path] : undefined;
}

/** Longest reason sent, in characters: the body stays one short line whatever a check says. */
const MAX_REASON = 500;

function send(res: ServerResponse, code: number, body: { status: string; reason: string }, head: boolean): void {
  const reason = body.reason.replace(/\s+/g, ' ').slice(0, MAX_REASON);
  const text = JSON.stringify({ status: body.status, reason }) + '\n';
  res.writeHead(code, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : text);
}

/** Answers `GET /metrics` from `source`; a failing source is a 500 with the reason, never a crash. */
function sendMetrics(source: NonNullable<StatusChecks['metrics']>, res: ServerResponse, head: boolean): void {
  source().then(
    ({ contentType, text }) => {
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(head ? undefined : text);
    },
    (err: unknown) => {
      send(res, 500, { status: 'fail', reason: `collecting metrics failed: ${err instanceof Error ? err.message : String(err)}` }, head);
    },
  );
}

function handle(checks: StatusChecks, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://status');
  const path = url.pathname;
  const head = req.method === 'HEAD';
  if (path === '/metrics' && checks.metrics !== undefined && (req.method === 'GET' || head)) {
    sendMetrics(checks.metrics, res, head);
    return;
  }
  const check = checkOf(checks, path);
  if (check === undefined) {
    const known = [...new Set(['/healthz', '/readyz', ...Object.keys(checks.more ?? {}), ...(checks.metrics !== undefined ? ['/metrics'] : [])])].join(', ');
    send(res, 404, { status: 'fail', reason: `no such endpoint ${path}: try ${known}` }, head);
    return;
  }
  if (req.method !== 'GET' && !head) {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, { status: 'fail', reason: `${req.method ?? '?'} not allowed: use GET` }, false);
    return;
  }
  let result: CheckResult;
  try {
    result = check(url.searchParams);
  } catch (err) {
    // A check that throws is a failed check, never a crash of the endpoint.
    result = { ok: false, reason: `check failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  send(res, result.ok ? 200 : 503, { status: result.ok ? 'ok' : 'fail', reason: result.reason }, head);
}

/**
 * Starts the endpoint and resolves once it listens.
 * @param listen where to bind; host "" binds every interface
 * @param checks the two checks, called per request
 * @throws Error the listen error (e.g. `EADDRINUSE`, `EADDRNOTAVAIL`) when the address cannot be bound;
 *   callers turn it into a ConfigError naming their flag.
 */
export function startStatusServer(listen: ListenAddress, checks: StatusChecks): Promise<StatusServer> {
  const server = createServer((req, res) => handle(checks, req, res));
  // Probes are short and frequent; never let a stuck client hold a socket for long.
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  server.keepAliveTimeout = 1000;
  return listenHttp(server, listen, 'idle');
}

/**
 * Parses a `--metrics-listen-address`-style flag value: unset or "" means no endpoint.
 * @param flag the flag name, for the error message
 * @returns the address, or undefined when the flag is unset or empty
 * @throws ConfigError naming `flag` when the value is not host:port (see {@link parseListenAddress})
 */
export function statusListenOf(value: string | undefined, flag: string): ListenAddress | undefined {
  return value === undefined || value === '' ? undefined : parseListenAddress(value, flag);
}

/**
 * {@link startStatusServer} for a daemon's flag: logs where it listens, and turns a listen error
 * into a ConfigError naming the flag.
 * @param flag the flag name (e.g. `metrics-listen-address`) and the value it was given
 * @param log where the "status endpoint on host:port" line goes
 * @throws ConfigError naming `flag` when the address cannot be bound (e.g. `EADDRINUSE`)
 */
export async function startStatusEndpoint(
  listen: ListenAddress,
  flag: { readonly name: string; readonly value: string },
  checks: StatusChecks,
  log: Pick<Logger, 'info'>,
): Promise<StatusServer> {
  let server: StatusServer;
  try {
    server = await startStatusServer(listen, checks);
  } catch (err) {
    throw new ConfigError(`--${flag.name}: cannot listen on ${flag.value}: ${(err as Error).message}`, { field: flag.name });
  }
  const paths = ['/healthz', '/readyz', ...Object.keys(checks.more ?? {}), ...(checks.metrics !== undefined ? ['/metrics'] : [])].join(', ');
  log.info({ address: server.address }, `status endpoint on ${listen.host}:${server.address.port} (GET ${paths})`);
  return server;
}

/**
 * Binds `server` to `listen` and resolves once it listens.
 * @param closing which connections `close()` ends at once: only idle ones (requests in flight
 *   finish) or all of them
 * @throws Error the listen error (e.g. `EADDRINUSE`); callers name their flag
 */
export function listenHttp(server: Server, listen: ListenAddress, closing: 'idle' | 'all'): Promise<StatusServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: listen.port, ...(listen.host !== '' ? { host: listen.host } : {}) }, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({
        address: { host: a.address, port: a.port },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            if (closing === 'all') {
              server.closeAllConnections();
            } else {
              server.closeIdleConnections();
            }
          }),
      });
    });
  });
}
