/**
 * The chaos suite's history: concurrent writers that insert numbered rows and record every
 * acknowledged write with its client-side send and ack times and the identity of the server that
 * committed it, so that a checker can decide afterwards whether anything acknowledged was lost and
 * whether two servers accepted writes at the same time (docs/design.md#faults-and-history).
 * Proxy writers go through stolon-proxy; optional direct writers connect straight to each keeper's
 * PostgreSQL with `synchronous_commit = local`, to catch a deposed primary that still accepts
 * writes. Details: docs/chaos.md, "The recorder".
 */
import pg from 'pg';

/** The server that acknowledged a write. */
export interface ServerIdentity {
  /** `inet_server_addr()` without the mask, e.g. `127.0.0.1` or `10.214.37.11`. */
  readonly addr: string;
  readonly port: number;
  /** Timeline of the WAL the insert was written to. */
  readonly timeline: number;
  /** `pg_postmaster_start_time()` as ISO text. */
  readonly postmasterStart: string;
}

/** `addr:port/tl<timeline>`: one primary tenure (a keeper on one timeline). */
export function serverKey(s: ServerIdentity): string {
  return `${s.addr}:${s.port}/tl${s.timeline}`;
}

/** One acknowledged insert. */
export interface AckedWrite {
  /** Writer name, e.g. `proxy-w0` or `direct-keeper1`. */
  readonly writer: string;
  readonly kind: 'proxy' | 'direct';
  /** Per-writer sequence number (the row's key with `writer`). */
  readonly seq: number;
  /** Client clock when the INSERT was sent, epoch ms. */
  readonly sentAt: number;
  /** Client clock when the acknowledgement arrived, epoch ms. */
  readonly ackedAt: number;
  /** Server clock (`clock_timestamp()`) at the insert, epoch ms (same host clock). */
  readonly serverAt: number;
  /** WAL insert position just after the row, bytes. */
  readonly lsn: bigint;
  readonly server: ServerIdentity;
}

/** A failed attempt (not acknowledged: its outcome is unknown). */
export interface FailedWrite {
  readonly writer: string;
  readonly kind: 'proxy' | 'direct';
  readonly at: number;
  readonly error: string;
}

/** Options of {@link Recorder}. */
export interface RecorderOptions {
  /** Client configs of the proxies (writer w uses `proxies[w % proxies.length]`). */
  readonly proxies: () => readonly pg.ClientConfig[];
  /** Client configs of each keeper's PostgreSQL, for the direct writers; none: no direct writers. */
  readonly direct?: () => readonly pg.ClientConfig[];
  /** Number of proxy writers. @default 2 */
  readonly writers?: number;
  /** Pause after each acknowledged proxy insert, ms (0 = back to back). @default 5 */
  readonly pauseMs?: number;
  /** Pause before reconnecting after an error, ms. @default 20 */
  readonly reconnectPauseMs?: number;
  /** Pause after a direct insert (acknowledged or refused), ms. @default 50 */
  readonly directPauseMs?: number;
  /** Client-side limit per query, ms (a commit blocked longer counts as failed). @default 5000 */
  readonly queryTimeoutMs?: number;
  /** Hard bound on how long the writers run, ms. @default 30 min */
  readonly maxRunMs?: number;
}

/** How many failed attempts {@link Recorder.failed} keeps. */
export const MAX_FAILED = 20_000;

/** Parses `X/Y` into a byte position. */
export function parseLsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi ?? '0'}`) << 32n) + BigInt(`0x${lo ?? '0'}`);
}

const INSERT_RETURNING = `returning host(inet_server_addr()) as addr, inet_server_port() as port,
  ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int as tl,
  pg_postmaster_start_time()::text as pst, (extract(epoch from clock_timestamp()) * 1000)::float8 as sat,
  pg_current_wal_insert_lsn()::text as lsn`;

interface ReturnedRow {
  addr: string | null;
  port: number;
  tl: number;
  pst: string;
  sat: number;
  lsn: string;
}

/** SQL that creates the recorder's tables (idempotent); run it once through a proxy. */
export const RECORDER_TABLES_SQL = `create table if not exists chaos_w (writer text not null, seq int not null, sent_at bigint not null, primary key (writer, seq));
create table if not exists chaos_direct (writer text not null, seq int not null, sent_at bigint not null, primary key (writer, seq));`;

/**
 * Runs the writers and keeps the history. Start with {@link Recorder.start}; everything is in
 * memory ({@link Recorder.acked}, {@link Recorder.failed}) until {@link Recorder.stop}.
 */
export class Recorder {
  readonly acked: AckedWrite[] = [];
  /** Failed attempts, the last {@link MAX_FAILED} kept (refusals by a read-only standby are only counted). */
  readonly failed: FailedWrite[] = [];
  /** Direct inserts refused because the server was read-only (a standby, or a fenced primary). */
  refusedReadOnly = 0;
  /**
   * Keys (`writer/seq`) of acknowledged writes a checker already reported missing, so that a
   * later check looking back over the same writes does not count them again.
   */
  readonly reportedLost = new Set<string>();
  private stopped = false;
  private loops: Promise<void>[] = [];
  private readonly clients = new Set<pg.Client>();
  private readonly opts: Required<Omit<RecorderOptions, 'direct'>> & Pick<RecorderOptions, 'direct'>;

  constructor(opts: RecorderOptions) {
    this.opts = {
      writers: 2,
      pauseMs: 5,
      reconnectPauseMs: 20,
      directPauseMs: 50,
      queryTimeoutMs: 5000,
      maxRunMs: 30 * 60_000,
      ...opts,
    };
  }

  /** Acknowledged proxy writes (`kind === 'proxy'`), in ack order. */
  proxyAcks(): AckedWrite[] {
    return this.acked.filter((a) => a.kind === 'proxy');
  }

  /** Starts the writers (idempotent). */
  start(): void {
    if (this.loops.length > 0) {
      return;
    }
    const deadline = Date.now() + this.opts.maxRunMs;
    for (let w = 0; w < this.opts.writers; w++) {
      this.loops.push(
        this.loop(`proxy-w${w}`, 'proxy', () => {
          const list = this.opts.proxies();
          const c = list[w % list.length];
          if (c === undefined) {
            throw new Error('no proxies');
          }
          return c;
        }, deadline),
      );
    }
    const direct = this.opts.direct?.() ?? [];
    for (let k = 0; k < direct.length; k++) {
      this.loops.push(
        this.loop(`direct-k${k}`, 'direct', () => {
          const c = this.opts.direct?.()[k];
          if (c === undefined) {
            throw new Error(`no keeper ${k}`);
          }
          return c;
        }, deadline),
      );
    }
  }

  /** Stops the writers and closes their connections; resolves when every loop has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const c of this.clients) {
      // A query blocked on a synchronous commit would otherwise hold stop() up to queryTimeoutMs.
      (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    }
    await Promise.allSettled(this.loops);
    this.loops = [];
  }

  /** Resolves once `n` more proxy writes than now have been acknowledged (bounded by `timeoutMs`). */
  async waitForProxyAcks(n: number, timeoutMs: number): Promise<void> {
    const target = this.proxyAcks().length + n;
    const deadline = Date.now() + timeoutMs;
    while (this.proxyAcks().length < target) {
      if (Date.now() > deadline) {
        throw new Error(`only ${this.proxyAcks().length - target + n} of ${n} proxy writes acknowledged within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async loop(name: string, kind: 'proxy' | 'direct', config: () => pg.ClientConfig, deadline: number): Promise<void> {
    const table = kind === 'proxy' ? 'chaos_w' : 'chaos_direct';
    const sql = `insert into ${table} (writer, seq, sent_at) values ($1, $2, $3) ${INSERT_RETURNING}`;
    let seq = 0;
    let client: pg.Client | undefined;
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    while (!this.stopped && Date.now() < deadline) {
      try {
        if (client === undefined) {
          const c = new pg.Client({ ...config(), connectionTimeoutMillis: 1000, query_timeout: this.opts.queryTimeoutMs });
          c.on('error', () => undefined);
          client = c;
          this.clients.add(c);
          await c.connect();
          if (kind === 'direct') {
            await c.query('set synchronous_commit = local');
          }
        }
        seq += 1;
        const sentAt = Date.now();
        const r = await client.query<ReturnedRow>(sql, [name, seq, sentAt]);
        const ackedAt = Date.now();
        const row = r.rows[0];
        if (row !== undefined && !this.stopped) {
          this.acked.push({
            writer: name,
            kind,
            seq,
            sentAt,
            ackedAt,
            serverAt: Math.round(row.sat),
            lsn: parseLsn(row.lsn),
            server: { addr: row.addr ?? 'unix', port: row.port, timeline: row.tl, postmasterStart: row.pst },
          });
        }
        await sleep(kind === 'proxy' ? this.opts.pauseMs : this.opts.directPauseMs);
      } catch (err) {
        // A refused insert (read-only standby) keeps a good connection; anything else reconnects.
        const readOnly = (err as { code?: string }).code === '25006';
        if (readOnly) {
          this.refusedReadOnly += 1;
        } else if (!this.stopped) {
          this.failed.push({ writer: name, kind, at: Date.now(), error: (err as Error).message });
          if (this.failed.length > MAX_FAILED) {
            this.failed.splice(0, this.failed.length - MAX_FAILED);
          }
        }
        if (!readOnly && client !== undefined) {
          const c = client;
          client = undefined;
          this.clients.delete(c);
          await c.end().catch(() => undefined);
        }
        await sleep(kind === 'proxy' ? this.opts.reconnectPauseMs : this.opts.directPauseMs);
      }
    }
    if (client !== undefined) {
      this.clients.delete(client);
      await client.end().catch(() => undefined);
    }
  }
}
