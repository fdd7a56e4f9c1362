/** One-shot SQL for tests: connect, run one statement, disconnect (as a reconnecting application would). */
import pg from 'pg';

/**
 * Runs `sql` on a fresh connection and returns its rows.
 * @throws whatever the `pg` driver throws (connection refused, SQL errors).
 */
export async function query<T extends pg.QueryResultRow>(config: pg.ClientConfig, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client(config);
  try {
    await c.connect();
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}
