/**
 * A real Prometheus for the tests and benchmarks (Debian's `prometheus` package, which also brings
 * `promtool`): started on a free 127.0.0.1 port in a temp directory of its own, with a generated
 * static scrape configuration (one job per entry, its `host:port` targets, a 1 s scrape interval by
 * default) and its TSDB in that directory; `stop()` stops it and removes the directory. Also the
 * two helpers the monitoring tests share: reading a program's `/metrics`, and running `promtool`
 * with text on its standard input.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { freePort } from './ports.js';
import { startProcess, type ProcessHandle } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';
import { waitFor } from './wait.js';

/** What to install when a binary is missing: named in every error about it. */
const INSTALL_HINT = "install Debian's prometheus package (`apt-get install -y prometheus`, which `bash scripts/setup.sh` does)";

/**
 * Path of `prometheus` or `promtool`: on PATH, else in /usr/bin.
 * @throws Error naming `apt-get install -y prometheus` when it is in neither.
 */
export function prometheusBinary(name: 'prometheus' | 'promtool'): string {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== ''), '/usr/bin'];
  const found = dirs.map((d) => join(d, name)).find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(`${name} not found on PATH or in /usr/bin: ${INSTALL_HINT}`);
  }
  return found;
}

/** One scrape job of {@link startPrometheus}. */
export interface PrometheusJob {
  /** The job name (the `job` label). */
  readonly name: string;
  /** `host:port` of each target; the path is `/metrics`. */
  readonly targets: readonly string[];
  /** Labels every target of the job gets, e.g. `{ stolon_cluster: 'prom' }`. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** Options of {@link startPrometheus}. */
export interface StartPrometheusOptions {
  readonly jobs: readonly PrometheusJob[];
  /** Scrape (and rule evaluation) interval in seconds. @default 1 */
  readonly scrapeIntervalS?: number;
  /** The `prometheus` binary. @default {@link prometheusBinary}('prometheus') */
  readonly bin?: string;
  /**
   * A rule file's content (`groups: …`, e.g. a PrometheusRule's `spec` as YAML or JSON) for
   * Prometheus to evaluate; its alerts show in the `ALERTS` series.
   */
  readonly rules?: string;
}

/** One sample of an instant query: the series' labels (`__name__` included when kept) and value. */
export interface PromSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A running Prometheus. */
export interface PrometheusHandle {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly process: ProcessHandle;
  /**
   * An instant query (`GET /api/v1/query`) of a vector expression.
   * @throws Error with Prometheus's error when the query fails or is not a vector.
   */
  query(expr: string): Promise<PromSample[]>;
  /** Stops Prometheus (SIGTERM, SIGKILL after 10 s) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The configuration file Prometheus gets: JSON, which is YAML too. Exported for the tests.
 * @param intervalS scrape and evaluation interval, seconds
 */
export function prometheusConfig(jobs: readonly PrometheusJob[], intervalS: number, ruleFiles: readonly string[] = []): string {
  const interval = `${intervalS}s`;
  return JSON.stringify(
    {
      global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: `${Math.max(1, Math.min(intervalS, 10))}s` },
      ...(ruleFiles.length > 0 ? { rule_files: [...ruleFiles] } : {}),
      scrape_configs: jobs.map((j) => ({
        job_name: j.name,
        metrics_path: '/metrics',
        static_configs: [{ targets: [...j.targets], ...(j.labels !== undefined ? { labels: { ...j.labels } } : {}) }],
      })),
    },
    null,
    2,
  );
}

/**
 * Starts Prometheus and resolves once `/-/ready` answers 200.
 * @throws Error naming `apt-get install -y prometheus` when the binary is missing; Error with its
 *   log when it exits or is not ready within 30 s (scaled). Nothing is left running or on disk then.
 */
export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusHandle> {
  const bin = opts.bin ?? prometheusBinary('prometheus');
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: ${INSTALL_HINT}`);
  }
  const dir = await makeTempDir('stolon-prometheus-');
  let proc: ProcessHandle | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await proc?.stop('SIGTERM', 10_000);
      await removeDir(dir);
    })());
  try {
    const port = await freePort();
    const config = join(dir, 'prometheus.yml');
    const ruleFiles = opts.rules === undefined ? [] : [join(dir, 'rules.yml')];
    if (opts.rules !== undefined) {
      await writeFile(join(dir, 'rules.yml'), opts.rules);
    }
    await writeFile(config, prometheusConfig(opts.jobs, opts.scrapeIntervalS ?? 1, ruleFiles));
    proc = startProcess({
      name: 'prometheus',
      cmd: bin,
      args: [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1d',
        '--log.level=warn',
      ],
      cwd: dir,
    });
    const url = `http://127.0.0.1:${port}`;
    const p = proc;
    await waitFor(
      async () => {
        if (!p.running()) {
          throw new Error(`prometheus exited:\n${p.logs()}`);
        }
        const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) });
        return res.status === 200;
      },
      { timeoutMs: 30_000, what: `Prometheus ready on ${url}`, intervalMs: 200 },
    );
    return { url, process: p, query: (expr) => instantQuery(url, expr), stop };
  } catch (err) {
    const logs = proc?.logs() ?? '';
    await stop();
    throw new Error(`Prometheus did not start: ${(err as Error).message}${logs === '' ? '' : `\n${logs}`}`, { cause: err });
  }
}

interface QueryResponse {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

async function instantQuery(url: string, expr: string): Promise<PromSample[]> {
  const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr }).toString()}`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as QueryResponse;
  if (body.status !== 'success' || body.data === undefined) {
    throw new Error(`query ${expr}: HTTP ${res.status}: ${body.error ?? JSON.stringify(body)}`);
  }
  if (body.data.resultType !== 'vector') {
    throw new Error(`query ${expr}: a ${body.data.resultType}, not a vector`);
  }
  return body.data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
}

/**
 * `GET http://<hostPort>/metrics` of a program's status endpoint.
 * @throws Error unless it answers 200 with the Prometheus text format.
 */
export async function scrapeMetrics(hostPort: string): Promise<string> {
  const res = await fetch(`http://${hostPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  if (res.status !== 200 || !(res.headers.get('content-type') ?? '').startsWith('text/plain')) {
    throw new Error(`GET http://${hostPort}/metrics: HTTP ${res.status} ${res.headers.get('content-type') ?? ''}: ${text.slice(0, 300)}`);
  }
  return text;
}

/** What `promtool` printed and its exit status. */
export interface PromtoolResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `promtool <args>` with `stdin` on its standard input (60 s at most).
 * @throws Error naming `apt-get install -y prometheus` when promtool is missing.
 */
export function runPromtool(args: readonly string[], stdin = ''): Promise<PromtoolResult> {
  const bin = prometheusBinary('promtool');
  return new Promise((resolve) => {
    const child = execFile(bin, [...args], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(stdin);
  });
}
