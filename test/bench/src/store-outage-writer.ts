/**
 * The writers of `bench:store-outage`: each in its own worker thread ({@link ThreadWriter}), or
 * each a Python process ({@link ProcessWriter}, `store-outage-writer.py`, psycopg2).
 *
 * A writer is one application connection inserting rows into `bench_outage` back to back
 * (`pauseMs` apart) with a `queryTimeoutMs` connect and query timeout, reconnecting `reconnectMs`
 * after any error. It runs on its own event loop so that what the benchmark process does
 * meanwhile (reading every daemon's log lines from their pipes, polling the cluster) cannot delay
 * its acknowledgements: the gaps it measures are the system's, not the harness's. The same
 * applies to every system measured, Patroni included.
 *
 * This file is both the main-thread handle ({@link ThreadWriter}) and the worker's body (run when
 * it is loaded as a worker with {@link WriterInit} as its `workerData`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pg from 'pg';

/** What the benchmark needs of a writer, whichever kind runs it. */
export interface Writer {
  readonly name: string;
  /** Acknowledgement times, epoch ms, ascending (filled in by {@link Writer.stop}). */
  readonly acks: number[];
  /** Sequence numbers of the acknowledged rows (parallel to {@link Writer.acks}). */
  readonly ackedSeqs: number[];
  /** Times of failed attempts (connect or insert), epoch ms. */
  readonly failures: number[];
  /** Failure messages (digits replaced by `N`) with their counts. */
  readonly errors: Map<string, number>;
  start(): void;
  /** Whether the writer has had {@link WriterInit.warmAcks} acknowledgements. */
  readonly warm: boolean;
  /** Stops the loop and copies the figures in; resolves within about 10 s. */
  stop(): Promise<void>;
}

/** What a writer thread is started with (structured-cloned into the worker). */
export interface WriterInit {
  /** Written into `bench_outage.writer`. */
  readonly name: string;
  readonly config: pg.ClientConfig;
  /** The loop ends by itself after this long, ms. */
  readonly maxRunMs: number;
  /** Pause after an acknowledged insert, ms. */
  readonly pauseMs: number;
  /** Pause before reconnecting after an error, ms. */
  readonly reconnectMs: number;
  /** Client-side connect and query timeout, ms. */
  readonly queryTimeoutMs: number;
  /** The worker posts `warm` once it has this many acknowledgements. */
  readonly warmAcks: number;
}

/** What the worker posts back when it stops. */
interface WriterResult {
  readonly type: 'result';
  readonly acks: number[];
  readonly ackedSeqs: number[];
  readonly failures: number[];
  readonly errors: [string, number][];
}

type FromWorker = { readonly type: 'warm' } | WriterResult;

/** The figures every kind of writer hands back when it stops (epoch ms). */
interface Figures {
  readonly acks: readonly number[];
  readonly ackedSeqs: readonly number[];
  readonly failures: readonly number[];
  readonly errors: readonly (readonly [string, number])[];
}

/**
 * What both kinds of writer share: the figures, filled in by {@link WriterBase.stop} from what the
 * loop handed back (`result`), and the warm flag the loop sets.
 */
abstract class WriterBase implements Writer {
  readonly acks: number[] = [];
  readonly ackedSeqs: number[] = [];
  readonly failures: number[] = [];
  readonly errors = new Map<string, number>();
  protected warmSeen = false;
  /** Settles with the loop's figures, or undefined when it ended without them; set by `start`. */
  protected result: Promise<Figures | undefined> | undefined;

  constructor(protected readonly init: WriterInit) {}

  get name(): string {
    return this.init.name;
  }

  get warm(): boolean {
    return this.warmSeen;
  }

  abstract start(): void;
  /** Asks the running loop to stop and hand back its figures. */
  protected abstract requestStop(): void;
  /** Ends the thread or process, whether or not it handed back its figures. */
  protected abstract end(): Promise<void>;
  /** "thread" or "process", for the error message. */
  protected abstract readonly kind: string;

  /**
   * Stops the loop, copies the figures in and ends the thread or process; resolves within about 10 s.
   * @throws Error when it ended without handing back its figures.
   */
  async stop(): Promise<void> {
    if (this.result === undefined) {
      return;
    }
    this.requestStop();
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.result, new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), 10_000)))]).finally(() => clearTimeout(timer));
    await this.end();
    if (r === undefined) {
      throw new Error(`writer ${this.init.name}: its ${this.kind} ended without handing back its figures`);
    }
    this.acks.push(...r.acks);
    this.ackedSeqs.push(...r.ackedSeqs);
    this.failures.push(...r.failures);
    for (const [k, v] of r.errors) {
      this.errors.set(k, v);
    }
  }
}

/** One writer in a Node worker thread (node-postgres), the body below. */
export class ThreadWriter extends WriterBase {
  protected readonly kind = 'thread';
  private worker: Worker | undefined;

  start(): void {
    if (this.worker !== undefined) {
      return;
    }
    const w = new Worker(new URL(import.meta.url), { workerData: this.init });
    this.worker = w;
    this.result = new Promise((resolve) => {
      w.on('message', (m: FromWorker) => {
        if (m.type === 'warm') {
          this.warmSeen = true;
        } else {
          resolve(m);
        }
      });
      w.once('error', () => resolve(undefined));
      w.once('exit', () => resolve(undefined));
    });
  }

  protected requestStop(): void {
    this.worker?.postMessage('stop');
  }

  protected async end(): Promise<void> {
    await this.worker?.terminate();
  }
}

/** The Python that has psycopg2 where Patroni is installed (Debian's `python3-psycopg2`). */
export const PYTHON = '/usr/bin/python3';
const PY_WRITER = fileURLToPath(new URL('../src/store-outage-writer.py', import.meta.url));

/**
 * Why {@link ProcessWriter} cannot run here, or undefined when it can: `/usr/bin/python3` must
 * import psycopg2 (Debian: `apt-get install python3-psycopg2`, which Patroni's package pulls in).
 */
export async function pythonWriterUnavailable(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const p = spawn(PYTHON, ['-c', 'import psycopg2'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.once('error', (e) => resolve(`${PYTHON}: ${e.message}`));
    p.once('exit', (code) => resolve(code === 0 ? undefined : `${PYTHON} cannot import psycopg2 (${err.trim().split('\n').pop() ?? `exit ${code}`}); apt-get install python3-psycopg2`));
  });
}

/** What the Python writer prints when it stops (see `store-outage-writer.py`). */
interface PyResult {
  readonly acks: number[];
  readonly acked_seqs: number[];
  readonly failures: number[];
  readonly errors: [string, number][];
}

/**
 * One writer as a Python process running `store-outage-writer.py` (psycopg2 in asynchronous mode,
 * every wait bounded by `queryTimeoutMs`): the same loop as {@link ThreadWriter} without a garbage
 * collector that pauses it for 8–13 ms. The password goes in `PGPASSWORD`, never argv.
 */
export class ProcessWriter extends WriterBase {
  protected readonly kind = 'process';
  private proc: ChildProcess | undefined;

  start(): void {
    if (this.proc !== undefined) {
      return;
    }
    const c = this.init.config;
    const args = {
      name: this.init.name,
      host: c.host ?? '127.0.0.1',
      port: c.port ?? 5432,
      user: c.user ?? 'postgres',
      database: c.database ?? 'postgres',
      max_run_ms: this.init.maxRunMs,
      pause_ms: this.init.pauseMs,
      reconnect_ms: this.init.reconnectMs,
      query_timeout_ms: this.init.queryTimeoutMs,
      warm_acks: this.init.warmAcks,
    };
    // libpq would try TLS first by default; node-postgres (the other writer) does not
    const env: NodeJS.ProcessEnv = { ...process.env, PGPASSWORD: typeof c.password === 'string' ? c.password : '', PGSSLMODE: 'disable' };
    const p = spawn(PYTHON, ['-u', PY_WRITER, JSON.stringify(args)], { stdio: ['pipe', 'pipe', 'pipe'], env });
    this.proc = p;
    let stderr = '';
    p.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    this.result = new Promise((resolve) => {
      const lines = createInterface({ input: p.stdout! });
      lines.on('line', (line) => {
        if (line === 'warm') {
          this.warmSeen = true;
        } else if (line.startsWith('{')) {
          const r = JSON.parse(line) as PyResult;
          resolve({ acks: r.acks.map(Math.round), ackedSeqs: r.acked_seqs, failures: r.failures.map(Math.round), errors: r.errors });
        }
      });
      p.once('error', () => resolve(undefined));
      // 'close' comes after the last stdout line was read ('exit' may come before it)
      p.once('close', (code) => {
        if (code !== 0 && stderr !== '') {
          process.stderr.write(`writer ${this.init.name} (python) exited ${code}: ${stderr}\n`);
        }
        resolve(undefined);
      });
    });
  }

  protected requestStop(): void {
    this.proc?.stdin!.end('stop\n');
  }

  protected end(): Promise<void> {
    const p = this.proc;
    if (p !== undefined && p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
    }
    return Promise.resolve();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Closes a client without waiting for the server (which may be frozen or gone). */
function drop(c: pg.Client | undefined): void {
  if (c === undefined) {
    return;
  }
  (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  void c.end().catch(() => undefined);
}

/** The worker's body: the insert loop, until `stop` or {@link WriterInit.maxRunMs}. */
async function runWriter(init: WriterInit, port: NonNullable<typeof parentPort>): Promise<void> {
  let stopped = false;
  let client: pg.Client | undefined;
  port.on('message', (m) => {
    if (m === 'stop') {
      stopped = true;
      drop(client);
    }
  });
  const acks: number[] = [];
  const ackedSeqs: number[] = [];
  const failures: number[] = [];
  const errors = new Map<string, number>();
  const deadline = Date.now() + init.maxRunMs;
  let seq = 0;
  let warmPosted = false;
  while (!stopped && Date.now() < deadline) {
    try {
      if (client === undefined) {
        const c = new pg.Client({ ...init.config, connectionTimeoutMillis: init.queryTimeoutMs, query_timeout: init.queryTimeoutMs });
        c.on('error', () => undefined);
        client = c;
        await c.connect();
      }
      seq += 1;
      await client.query('insert into bench_outage (writer, seq) values ($1, $2)', [init.name, seq]);
      if (!stopped) {
        acks.push(Date.now());
        ackedSeqs.push(seq);
        if (!warmPosted && acks.length >= init.warmAcks) {
          warmPosted = true;
          port.postMessage({ type: 'warm' } satisfies FromWorker);
        }
      }
      await sleep(init.pauseMs);
    } catch (err) {
      if (!stopped) {
        failures.push(Date.now());
        const msg = ((err as Error).message || String(err)).replace(/\d+/g, 'N').slice(0, 100);
        errors.set(msg, (errors.get(msg) ?? 0) + 1);
      }
      drop(client);
      client = undefined;
      await sleep(init.reconnectMs);
    }
  }
  drop(client);
  port.postMessage({ type: 'result', acks, ackedSeqs, failures, errors: [...errors.entries()] } satisfies FromWorker);
}

if (!isMainThread && parentPort !== null) {
  void runWriter(workerData as WriterInit, parentPort);
}
