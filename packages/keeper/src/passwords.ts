/**
 * Password rotation (docs/security.md, "Rotating the passwords"). The keeper reads the superuser
 * and replication password files again at every pass; what it connects to other keepers with
 * (pg_rewind, pg_basebackup, a standby's `replication.pgpass`) follows them at once, its own
 * connections over the socket need no password (peer authentication, pg_ident.conf), and on the
 * primary a password file that changed while this process runs is applied to its role with
 * `ALTER ROLE … PASSWORD '<SCRAM verifier>'`. A file found changed only at start (or on a keeper
 * that becomes primary without having seen its file change) is never applied: a keeper holding a
 * stale copy must not set an old password back.
 */
import { ConfigError, errorMessage } from '@stolon-ts/cluster';
import type { PgObservation } from '@stolon-ts/postgres';
import type { KeeperRuntime } from './runtime.js';

/**
 * How the placeholder values of the example Secrets begin (deploy/components/example-secrets):
 * published with the repository, so a keeper never runs with one.
 */
export const EXAMPLE_SECRET_PREFIX = 'EXAMPLE-replace-me';

/**
 * Refuses a password or member token that is still an example placeholder (it starts with
 * {@link EXAMPLE_SECRET_PREFIX}). The error names the flag, where the value came from and the fix;
 * it never repeats the value.
 * @param value the secret as read
 * @param flag the flag that names its file, without dashes (e.g. `pg-su-password-file`)
 * @param from the file it was read from, or the environment variable holding it
 * @returns `value`, when it is not an example value
 * @throws ConfigError naming `flag`
 */
export function refuseExampleSecret(value: string, flag: string, from: string): string {
  if (!value.startsWith(EXAMPLE_SECRET_PREFIX)) {
    return value;
  }
  throw new ConfigError(
    `--${flag}: ${from} holds an example value ("${EXAMPLE_SECRET_PREFIX}…", published with stolon-ts), which is no secret: ` +
      'put a value of your own in it, e.g. from `openssl rand -hex 32` (on Kubernetes, create the Secret yourself ' +
      'and leave out deploy/components/example-secrets: docs/kubernetes.md, step 3)',
    { field: flag },
  );
}

/**
 * Reads the password files ({@link KeeperDeps.passwords}); when a value changed, the runtime's
 * configuration takes it, the manager too (`setPasswords`), the configuration is written again at
 * the next converge (a standby's `replication.pgpass`), and the change is logged without the
 * password. A read error is logged once (warn) and the passwords in use are kept.
 */
export function refreshPasswords(rt: KeeperRuntime): void {
  const read = rt.deps.passwords;
  if (read === undefined) {
    return;
  }
  let now: { readonly su: string; readonly repl: string };
  try {
    now = read();
  } catch (err) {
    const message = errorMessage(err);
    if (message !== rt.passwordReadError) {
      rt.log.warn({ err: message }, `cannot read the password files, keeping the passwords in use: ${message}`);
      rt.passwordReadError = message;
    }
    return;
  }
  if (rt.passwordReadError !== '') {
    rt.log.info('the password files can be read again');
    rt.passwordReadError = '';
  }
  const changed = [
    ...(now.su !== rt.config.suPassword ? [`superuser (${rt.config.suUsername})`] : []),
    ...(now.repl !== rt.config.replPassword ? [`replication (${rt.config.replUsername})`] : []),
  ];
  if (changed.length === 0) {
    return;
  }
  rt.config = { ...rt.config, suPassword: now.su, replPassword: now.repl };
  rt.pg.setPasswords(now);
  // The configuration key leaves the password out: force the rewrite of replication.pgpass.
  rt.appliedConfigKey = '';
  rt.log.info({ roles: changed }, `password file changed for the ${changed.join(' and ')} role: new connections to the other keepers use it`);
}

/**
 * On a running primary this keeper's clusterdata says it owns: sets the password of each role
 * whose file changed while this process ran (differs from `rt.passwordsSet`) with
 * `setRolePassword`, then remembers it. When the superuser is also the replication role, its
 * password file decides. A failure is logged (warn) and retried at the next pass; it never
 * fails the pass.
 */
export async function rotatePasswords(rt: KeeperRuntime, obs: Pick<PgObservation, 'running' | 'role'>): Promise<void> {
  if (!rt.isPrimary || !obs.running || obs.role !== 'master') {
    return;
  }
  const { suUsername, replUsername, suPassword, replPassword } = rt.config;
  const roles: { key: 'su' | 'repl'; role: string; password: string }[] = [{ key: 'su', role: suUsername, password: suPassword }];
  if (replUsername !== suUsername) {
    roles.push({ key: 'repl', role: replUsername, password: replPassword });
  }
  for (const { key, role, password } of roles) {
    if (password === rt.passwordsSet[key]) {
      continue;
    }
    try {
      await rt.pg.setRolePassword(role, password);
      rt.passwordsSet[key] = password;
      rt.log.info({ role }, `password of role ${role} rotated: set from its changed password file`);
    } catch (err) {
      rt.log.warn({ err, role }, `setting the new password of role ${role} failed, retried at the next pass: ${errorMessage(err)}`);
    }
  }
}
