/**
 * Client-side SCRAM-SHA-256 password verifiers, as libpq's `PQencryptPasswordConn` and psql's
 * `\password` compute them, so that `CREATE ROLE … PASSWORD` never sends a cleartext password
 * to the server (where a failing statement, `log_statement` or pg_stat_activity could show it).
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/** Iteration count PostgreSQL uses by default (`scram_iterations`). */
export const SCRAM_ITERATIONS = 4096;

/**
 * Computes the verifier stored in `pg_authid.rolpassword` for `password`:
 * `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
 * Any string starting with `SCRAM-SHA-256$` given as a role password is stored as-is.
 *
 * The password is normalised as PostgreSQL does (SASLprep) for the common cases: non-ASCII
 * spaces mapped to a space, "mapped to nothing" characters removed, NFKC; when the result
 * contains a prohibited (control) character the raw password is used, as the server does.
 * Printable-ASCII passwords are exact.
 *
 * @param salt 16 random bytes by default; pass a fixed one only in tests.
 * @see https://www.postgresql.org/docs/current/sasl-authentication.html
 * @see RFC 5802 §3 and RFC 7677
 */
export function scramSha256Verifier(
  password: string,
  salt: Buffer = randomBytes(16),
  iterations: number = SCRAM_ITERATIONS,
): string {
  const salted = pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** RFC 4013 approximation; see {@link scramSha256Verifier}. */
function saslPrep(password: string): string {
  if (/^[\x20-\x7e]*$/.test(password)) {
    return password;
  }
  // The classes list single code points (RFC 3454 B.1 / C.1.2); none combines with another.
  const mapped = password
    .replace(/[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/g, ' ')
    // eslint-disable-next-line no-misleading-character-class
    .replace(/[\u00ad\u034f\u1806\u180b-\u180d\u200b-\u200d\u2060\ufe00-\ufe0f\ufeff]/g, '')
    .normalize('NFKC');
  // Prohibited output (RFC 4013 §2.3, the control-character part): PostgreSQL then uses the
  // password bytes unchanged.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(mapped)) {
    return password;
  }
  return mapped;
}
