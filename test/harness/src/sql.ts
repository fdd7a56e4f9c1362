/** One-shot SQL for tests: connect, run one statement, disconnect (as a reconnecting application would). */
import pg from 'pg';

/**
 * Runs `sql` on a fresh connection and returns its rows.
 * @throws whatever the `pg` driver throws (connection refused, SQL errors).
 */
export async function query<T extends pg.QueryResultRow>(config: pg.ClientConfig, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client(config);
  // A server-side FATAL (e.g. 57P01 when the postmaster dies) that arrives while no query is active
  // is emitted as 'error'; without a listener it would be an uncaught exception. A query in flight
  // still rejects with it.
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}
