/**
 * What the planned-switchover e2e files share (switchover.e2e.test.ts, keeper-drain.e2e.test.ts,
 * keeper-drain-sync.e2e.test.ts): a writer through the proxy into table `w`, and the wait until
 * `stolonctl status` shows every keeper healthy and converged (the sentinel refuses a switchover
 * before that).
 */
import pg from 'pg';
import { waitFor, type LocalCluster } from '@stolon-ts/harness';

/** One failed attempt of {@link proxyRowWriter}. */
export interface WriterError {
  /** Epoch ms when it failed. */
  readonly at: number;
  /** Epoch ms when the attempt started (its connection was opened). */
  readonly startedAt: number;
  /** `connect`: the connection could not be opened (refused, closed during the startup); `insert`: it was open and the INSERT failed. */
  readonly stage: 'connect' | 'insert';
}

/**
 * Writes rows `insert into w values (<id>)` one at a time through proxy 0, a new connection each
 * (as a reconnecting application), until `stopAt()` or `maxMs` (ms) have passed. Acknowledged ids
 * go to `acked` with their epoch ms; each failed attempt goes to `errors` ({@link WriterError}),
 * then it waits 20 ms.
 */
export async function proxyRowWriter(
  c: LocalCluster,
  stopAt: () => boolean,
  acked: { id: number; at: number }[],
  opts: { readonly maxMs: number; readonly errors?: WriterError[] },
): Promise<void> {
  let id = 0;
  const deadline = Date.now() + opts.maxMs;
  while (!stopAt() && Date.now() < deadline) {
    id += 1;
    const startedAt = Date.now();
    const client = new pg.Client({ ...c.proxyClientConfig(0), connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    let stage: WriterError['stage'] = 'connect';
    try {
      await client.connect();
      stage = 'insert';
      await client.query('insert into w values ($1)', [id]);
      acked.push({ id, at: Date.now() });
    } catch {
      opts.errors?.push({ at: Date.now(), startedAt, stage });
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/** Waits up to `timeoutMs` until `stolonctl status` lists `n` keepers, each healthy and at its wanted generation. */
export async function waitConvergedInStatus(c: LocalCluster, n: number, timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      const st = await c.stolonctl(['status', '--format', 'json']);
      const keepers = (JSON.parse(st.stdout) as { keepers: { pg_healthy?: boolean; pg_wanted_generation?: number; pg_current_generation?: number }[] }).keepers;
      return keepers.length === n && keepers.every((k) => k.pg_healthy === true && k.pg_wanted_generation === k.pg_current_generation) ? true : undefined;
    },
    { timeoutMs, what: `${n} keepers healthy and converged in stolonctl status` },
  );
}
