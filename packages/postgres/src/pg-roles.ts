/**
 * Role passwords of the local instance: `ALTER ROLE … PASSWORD` with a verifier computed here, for
 * the keeper's password rotation (docs/security.md, "Rotating the passwords"). The manager as a
 * whole: pg-manager.ts.
 */
import { pgLib } from './pg-lib.js';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { PgContext } from './pg-context.js';
import { endQuietly, unloggedTransaction } from './pg-socket.js';
import { scramSha256Verifier } from './scram.js';

/**
 * Sets `role`'s password to `password`, sending only its SCRAM-SHA-256 verifier, inside a
 * transaction with `log_statement`, `log_min_duration_statement` and `log_min_error_statement`
 * turned off, so neither the password nor the verifier reaches the server log.
 * @throws StolonError `PG_NOT_RUNNING` (transient) when no connection can be made;
 *   `PG_COMMAND_FAILED` (transient) when a statement fails (the role does not exist, the
 *   instance is read-only); the message never holds the password.
 * @see https://www.postgresql.org/docs/current/sql-alterrole.html
 * @see https://www.postgresql.org/docs/current/auth-password.html
 */
export async function setRolePassword(ctx: PgContext, role: string, password: string): Promise<void> {
  const verifier = scramSha256Verifier(password);
  const client = await ctx.socket.connectOrThrow();
  try {
    await unloggedTransaction(client, [`ALTER ROLE ${pgLib().escapeIdentifier(role)} PASSWORD ${pgLib().escapeLiteral(verifier)}`]);
  } catch (err) {
    throw new StolonError('PG_COMMAND_FAILED', `setting the password of role ${role} failed: ${errorMessage(err)}`, { cause: err, transient: true });
  } finally {
    await endQuietly(client);
  }
}
