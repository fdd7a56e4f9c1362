/**
 * The Kubernetes backend's client side: where the API server and the namespace come from
 * ({@link resolveKubeConfig}, with `@kubernetes/client-node`'s `KubeConfig`), and a small HTTP
 * client ({@link KubeHttp}) that takes TLS and credentials from that `KubeConfig`
 * (`applyToHTTPSOptions`: CA, client certificates, bearer tokens, token files, exec plugins) but
 * owns timeouts and watch streams itself: every request is bounded by a deadline, and a watch is
 * a long-lived response read line by line. (client-node's typed API clients and its `Watch`
 * helper give no per-request deadline and hide the watch's end, 410s and bookmarks.)
 * Not exported from the package index.
 * @internal
 */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import type { Cluster, KubeConfig } from '@kubernetes/client-node';
import { ConfigError } from '@stolon-ts/cluster';

/** The service account directory of a pod. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * `@kubernetes/client-node` is loaded on first use, not at import: it doubles every program's
 * start-up time (0.45 → 0.9 s) and adds ~60 MB of RSS, which etcd users should not pay. The
 * package is CommonJS, so a synchronous `require` suffices.
 */
function kubeConfigClass(): new () => KubeConfig {
  const load = createRequire(import.meta.url);
  return (load('@kubernetes/client-node') as { KubeConfig: new () => KubeConfig }).KubeConfig;
}

/** Options of {@link resolveKubeConfig}, mirroring `--kubeconfig`, `--kube-context`, `--kube-namespace`. */
export interface KubeConfigOptions {
  /** `--kubeconfig`: a kubeconfig file. Default: `KUBECONFIG`, else `~/.kube/config`, else in-cluster. */
  readonly kubeconfig?: string | undefined;
  /** `--kube-context`: a context of the kubeconfig. Default: its `current-context`. */
  readonly context?: string | undefined;
  /** `--kube-namespace`: wins over every other source of the namespace. */
  readonly namespace?: string | undefined;
  /**
   * Prefix of the service account directory (tests point it at a temp dir holding
   * `var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`). @default ''
   */
  readonly inClusterRoot?: string;
}

/** Where a namespace came from. */
export type NamespaceSource = 'flag' | 'in-cluster' | 'kubeconfig' | 'default';

/** A client configuration ready for {@link KubeHttp}. */
export interface ResolvedKubeConfig {
  readonly kubeConfig: KubeConfig;
  /** The namespace every object lives in. */
  readonly namespace: string;
  readonly namespaceSource: NamespaceSource;
  /** `in-cluster`, or the kubeconfig file(s) and context used. */
  readonly source: string;
  /** The API server URL. */
  readonly server: string;
}

function isDns1123Label(s: string): boolean {
  return s.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s);
}

/**
 * Finds the API server, credentials and namespace, as kubectl and Stolon's stolonctl do:
 * - configuration: `--kubeconfig` if given (it must exist); else the files in `KUBECONFIG`
 *   (missing ones skipped, the first file's current-context wins); else `~/.kube/config` if it
 *   exists; else, in a pod (`KUBERNETES_SERVICE_HOST`/`_PORT` set and a service account token
 *   present), the in-cluster configuration (`KubeConfig.loadFromCluster`);
 * - context: `--kube-context`, else the kubeconfig's `current-context`;
 * - namespace: `--kube-namespace` when given; else in a pod the service account's `namespace`
 *   file; else the context's namespace; else `default`.
 * A plain `http://` server (e.g. `kubectl proxy`) needs no TLS settings; client-node refuses one
 * unless `insecure-skip-tls-verify` is set, so that flag is set for `http://` servers only, where
 * it has no effect.
 * @throws ConfigError naming `kubeconfig`, `kube-context` or `kube-namespace` when a file is
 *   missing or unreadable, the context does not exist, no configuration is found at all, or the
 *   namespace is not a DNS-1123 label.
 */
export function resolveKubeConfig(opts: KubeConfigOptions = {}): ResolvedKubeConfig {
  const env = process.env;
  let files: string[];
  if (opts.kubeconfig !== undefined && opts.kubeconfig !== '') {
    if (!existsSync(opts.kubeconfig)) {
      throw new ConfigError(`--kubeconfig: ${opts.kubeconfig} does not exist`, { field: 'kubeconfig' });
    }
    files = [opts.kubeconfig];
  } else if (env['KUBECONFIG'] !== undefined && env['KUBECONFIG'] !== '') {
    files = env['KUBECONFIG'].split(delimiter).filter((f) => f !== '' && existsSync(f));
  } else {
    const home = join(homedir(), '.kube', 'config');
    files = existsSync(home) ? [home] : [];
  }

  const KubeConfigCtor = kubeConfigClass();
  const kc = new KubeConfigCtor();
  const saRoot = opts.inClusterRoot ?? '';
  const saDir = `${saRoot}${SERVICE_ACCOUNT_DIR}`;
  let inCluster = false;
  if (files.length > 0) {
    try {
      kc.loadFromFile(files[0] ?? '');
      for (const f of files.slice(1)) {
        const more = new KubeConfigCtor();
        more.loadFromFile(f);
        kc.mergeConfig(more, true);
      }
    } catch (err) {
      throw new ConfigError(`--kubeconfig: cannot load ${files.join(delimiter)}: ${(err as Error).message}`, {
        field: 'kubeconfig',
        cause: err,
      });
    }
    const names = kc.getContexts().map((c) => c.name);
    const context = opts.context !== undefined && opts.context !== '' ? opts.context : kc.getCurrentContext();
    if (context === undefined || context === '') {
      throw new ConfigError(
        `--kube-context: ${files.join(delimiter)} has no current-context; pass --kube-context (contexts: ${names.join(', ') || 'none'})`,
        { field: 'kube-context' },
      );
    }
    if (kc.getContextObject(context) === null) {
      throw new ConfigError(`--kube-context: no context "${context}" in ${files.join(delimiter)} (contexts: ${names.join(', ') || 'none'})`, {
        field: 'kube-context',
      });
    }
    kc.setCurrentContext(context);
  } else if (
    (env['KUBERNETES_SERVICE_HOST'] ?? '') !== '' &&
    (env['KUBERNETES_SERVICE_PORT'] ?? '') !== '' &&
    existsSync(join(saDir, 'token'))
  ) {
    kc.loadFromCluster(saRoot);
    inCluster = true;
  } else {
    throw new ConfigError(
      'no Kubernetes client configuration found: not in a pod (KUBERNETES_SERVICE_HOST unset or no service account token), no KUBECONFIG and no ~/.kube/config; pass --kubeconfig',
      { field: 'kubeconfig' },
    );
  }

  const cluster = kc.getCurrentCluster();
  if (cluster === null || cluster.server === '') {
    throw new ConfigError(`--kubeconfig: context "${kc.getCurrentContext()}" names no cluster with a server URL`, { field: 'kubeconfig' });
  }
  if (cluster.server.startsWith('http:') && !cluster.skipTLSVerify) {
    // See the docstring: client-node refuses plain http unless this is set; it changes nothing there.
    const patched: Cluster = { ...cluster, skipTLSVerify: true };
    kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? patched : c));
  }

  let namespace: string;
  let namespaceSource: NamespaceSource;
  const contextNs = kc.getContextObject(kc.getCurrentContext())?.namespace?.trim();
  if (opts.namespace !== undefined && opts.namespace !== '') {
    if (!isDns1123Label(opts.namespace)) {
      throw new ConfigError(`--kube-namespace: "${opts.namespace}" is not a namespace name (a DNS-1123 label: lowercase letters, digits and '-', at most 63)`, {
        field: 'kube-namespace',
      });
    }
    namespace = opts.namespace;
    namespaceSource = 'flag';
  } else if (inCluster && contextNs !== undefined && contextNs !== '') {
    namespace = contextNs;
    namespaceSource = 'in-cluster';
  } else if (inCluster && existsSync(join(saDir, 'namespace'))) {
    namespace = readFileSync(join(saDir, 'namespace'), 'utf8').trim() || 'default';
    namespaceSource = 'in-cluster';
  } else if (!inCluster && contextNs !== undefined && contextNs !== '') {
    namespace = contextNs;
    namespaceSource = 'kubeconfig';
  } else {
    namespace = 'default';
    namespaceSource = 'default';
  }
  return {
    kubeConfig: kc,
    namespace,
    namespaceSource,
    source: inCluster ? 'in-cluster' : `${files.join(delimiter)} (context ${kc.getCurrentContext()})`,
    server: cluster.server,
  };
}

/** A failed request: no answer in time, a transport error, or an HTTP error status. */
export class KubeRequestError extends Error {
  constructor(
    message: string,
    /** `timeout`: no answer by the deadline; `network`: connection failed; `http`: an error status. */
    readonly kind: 'timeout' | 'network' | 'http',
    /** HTTP status (kind `http`). */
    readonly status = 0,
    /** `Status.reason` from the body (kind `http`), e.g. `Conflict`, `AlreadyExists`. */
    readonly reason = '',
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'KubeRequestError';
  }
}

/** A successful (2xx) or explicitly allowed answer. */
export interface KubeResponse {
  readonly status: number;
  /** `Status.reason` of an allowed error answer, '' otherwise. */
  readonly reason: string;
  readonly body: unknown;
}

/** Options of one request. */
export interface KubeRequestOptions {
  readonly query?: Readonly<Record<string, string>>;
  readonly body?: unknown;
  /** Monotonic deadline (`performance.now()` ms). */
  readonly deadline: number;
  /** HTTP error statuses returned instead of thrown (e.g. 404, 409). */
  readonly allow?: readonly number[];
  /** Content-Type of the body. @default 'application/json' */
  readonly contentType?: string;
}

/** A watch stream in progress. */
export interface KubeWatchStream {
  /** Ends the stream (no further callbacks). Idempotent. */
  close(): void;
}

/** Callbacks of a watch stream. */
export interface KubeWatchHandlers {
  /** One decoded watch event (`{ type, object }`). */
  readonly onEvent: (event: { readonly type: string; readonly object: unknown }) => void;
  /** The stream ended: `err` undefined for a clean end by the server, else why it broke. */
  readonly onEnd: (err: Error | undefined) => void;
}

/** Largest response body read, in bytes. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * HTTP to one API server with the credentials of a `KubeConfig`. Every request is bounded by its
 * deadline (authentication included); a watch by its deadline until the response headers arrive,
 * then by `timeoutSeconds` (sent to the server, which ends the stream) plus a grace period.
 * @internal
 */
export class KubeHttp {
  readonly server: string;
  private readonly streams = new Set<KubeWatchStream>();

  constructor(private readonly kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null) {
      throw new ConfigError('kubeconfig has no current cluster', { field: 'kubeconfig' });
    }
    this.server = cluster.server.replace(/\/+$/, '');
  }

  private remaining(deadline: number): number {
    return Math.max(0, Math.floor(deadline - performance.now()));
  }

  /** Request options with TLS and credentials from the KubeConfig, bounded by `deadline`. */
  private async options(method: string, deadline: number): Promise<https.RequestOptions> {
    const ro: https.RequestOptions = { method, headers: {} };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.kc.applyToHTTPSOptions(ro),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new KubeRequestError('obtaining credentials from the kubeconfig took too long', 'timeout')),
            this.remaining(deadline),
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return ro;
  }

  private url(path: string, query: Readonly<Record<string, string>> | undefined): URL {
    const u = new URL(`${this.server}${path}`);
    for (const [k, v] of Object.entries(query ?? {})) {
      u.searchParams.set(k, v);
    }
    return u;
  }

  /**
   * One request; resolves with 2xx answers and the `allow`ed error statuses.
   * @throws KubeRequestError `timeout` (no complete answer by the deadline), `network`, or `http`
   *   (any other status; `reason` and the message come from the `Status` body when there is one).
   */
  async request(method: string, path: string, opts: KubeRequestOptions): Promise<KubeResponse> {
    const ro = await this.options(method, opts.deadline);
    const url = this.url(path, opts.query);
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    ro.headers = {
      ...ro.headers,
      Accept: 'application/json',
      ...(payload === undefined ? {} : { 'Content-Type': opts.contentType ?? 'application/json', 'Content-Length': Buffer.byteLength(payload) }),
    };
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<KubeResponse>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, value?: KubeResponse): void => {
        if (settled) {
          return;
        }
        settled = true;
        clearTimeout(timer);
        if (err !== undefined) {
          reject(err);
        } else if (value !== undefined) {
          resolve(value);
        }
      };
      const req = mod.request(url, ro, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new KubeRequestError(`answer larger than ${MAX_RESPONSE_BYTES} bytes`, 'network'));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => finish(new KubeRequestError(err.message, 'network', 0, '', { cause: err })));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = undefined;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            body = undefined;
          }
          const st = statusOf(body);
          if (status >= 200 && status < 300) {
            if (body === undefined) {
              finish(new KubeRequestError(`answered ${status} with a body that is not JSON (${snippet(text)}); is this a Kubernetes API server?`, 'network'));
              return;
            }
            finish(undefined, { status, reason: '', body });
          } else if (opts.allow?.includes(status)) {
            finish(undefined, { status, reason: st.reason, body });
          } else {
            finish(new KubeRequestError(st.message !== '' ? st.message : `HTTP ${status}: ${snippet(text)}`, 'http', status, st.reason));
          }
        });
      });
      const timer = setTimeout(
        () => req.destroy(new KubeRequestError('no answer within the store timeout', 'timeout')),
        this.remaining(opts.deadline),
      );
      req.on('error', (err) =>
        finish(err instanceof KubeRequestError ? err : new KubeRequestError(err.message, 'network', 0, '', { cause: err })),
      );
      req.end(payload);
    });
  }

  /**
   * Opens a watch: `GET path?watch=1&…` and reads the response as newline-delimited JSON events.
   * Resolves once the server answered 200 (the watch is established).
   * @param timeoutSeconds sent as `timeoutSeconds`; the client also ends a stream that outlives
   *   it by `graceMs` (a silent, half-dead connection).
   * @throws KubeRequestError as {@link KubeHttp.request} when the watch is not established by
   *   `deadline` or the server answers with an error status.
   */
  async watch(
    path: string,
    query: Readonly<Record<string, string>>,
    deadline: number,
    timeoutSeconds: number,
    graceMs: number,
    handlers: KubeWatchHandlers,
  ): Promise<KubeWatchStream> {
    const ro = await this.options('GET', deadline);
    const url = this.url(path, { ...query, watch: '1', timeoutSeconds: String(timeoutSeconds) });
    ro.headers = { ...ro.headers, Accept: 'application/json' };
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<KubeWatchStream>((resolve, reject) => {
      let established = false;
      let ended = false;
      let lifeTimer: NodeJS.Timeout | undefined;
      const stream: KubeWatchStream = {
        close: () => {
          if (ended) {
            return;
          }
          ended = true;
          clearTimeout(lifeTimer);
          this.streams.delete(stream);
          req.destroy();
        },
      };
      const end = (err: Error | undefined): void => {
        clearTimeout(headerTimer);
        if (!established) {
          ended = true;
          reject(err ?? new KubeRequestError('watch ended before it was established', 'network'));
          return;
        }
        if (ended) {
          return;
        }
        ended = true;
        clearTimeout(lifeTimer);
        this.streams.delete(stream);
        handlers.onEnd(err);
      };
      const req = mod.request(url, ro, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown;
            try {
              body = JSON.parse(text);
            } catch {
              body = undefined;
            }
            const st = statusOf(body);
            end(new KubeRequestError(st.message !== '' ? st.message : `HTTP ${status}: ${snippet(text)}`, 'http', status, st.reason));
          });
          return;
        }
        established = true;
        clearTimeout(headerTimer);
        this.streams.add(stream);
        lifeTimer = setTimeout(
          () => req.destroy(new KubeRequestError(`watch stream still open ${graceMs} ms after its timeoutSeconds`, 'timeout')),
          timeoutSeconds * 1000 + graceMs,
        );
        resolve(stream);
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while (!ended && (i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (line === '') {
              continue;
            }
            let ev: unknown;
            try {
              ev = JSON.parse(line);
            } catch {
              req.destroy(new KubeRequestError(`watch stream sent a line that is not JSON: ${snippet(line)}`, 'network'));
              return;
            }
            if (typeof ev !== 'object' || ev === null || typeof (ev as { type?: unknown }).type !== 'string') {
              req.destroy(new KubeRequestError(`watch stream sent something that is not a watch event: ${snippet(line)}`, 'network'));
              return;
            }
            handlers.onEvent(ev as { type: string; object: unknown });
          }
        });
        res.on('end', () => end(undefined));
        res.on('error', (err) => end(err instanceof KubeRequestError ? err : new KubeRequestError(err.message, 'network', 0, '', { cause: err })));
        res.on('close', () => {
          if (!res.complete) {
            end(new KubeRequestError('watch stream broken', 'network'));
          }
        });
      });
      const headerTimer = setTimeout(
        () => req.destroy(new KubeRequestError('watch not established within the store timeout', 'timeout')),
        this.remaining(deadline),
      );
      req.on('socket', (s) => s.setKeepAlive(true, 10_000));
      req.on('error', (err) => end(err instanceof KubeRequestError ? err : new KubeRequestError(err.message, 'network', 0, '', { cause: err })));
      req.end();
    });
  }

  /** Ends every open watch stream (close/crash). */
  closeAll(): void {
    for (const s of [...this.streams]) {
      s.close();
    }
  }
}

/** The `reason` and `message` of a `Status` body, '' when it is not one. */
function statusOf(body: unknown): { reason: string; message: string } {
  if (typeof body === 'object' && body !== null && (body as { kind?: unknown }).kind === 'Status') {
    const b = body as { reason?: unknown; message?: unknown };
    return { reason: typeof b.reason === 'string' ? b.reason : '', message: typeof b.message === 'string' ? b.message : '' };
  }
  return { reason: '', message: '' };
}

function snippet(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > 120 ? `${t.slice(0, 120)}…` : t || '(empty)';
}
