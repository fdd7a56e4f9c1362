/**
 * Certificates for the keepers' pgBackRest TLS servers (`startLocalCluster({ backupTls: true })`,
 * docs/backup.md "Backups from a standby"): a private CA and one certificate per keeper, made with
 * `openssl` (EC P-256, 2 days). Each certificate's CN is the keeper's uid (its client identity for
 * pgBackRest's `tls-server-auth`) and its subjectAltName holds `localhost` and 127.0.0.1:
 * pgBackRest 2.45 checks the server's host name against DNS names only, so the keepers publish
 * `localhost` (`--backup-server-host`).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The files {@link makeBackupTls} wrote. */
export interface BackupTlsFiles {
  readonly caFile: string;
  /** Certificate and key by keeper uid. */
  readonly keepers: Readonly<Record<string, { readonly certFile: string; readonly keyFile: string }>>;
}

async function openssl(args: readonly string[], what: string): Promise<void> {
  await run('openssl', [...args]).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`openssl (${what}) failed: ${err.stderr ?? err.message}`);
  });
}

/**
 * Makes a CA and a certificate per uid in `dir` (created).
 * @throws Error with openssl's stderr when a step fails.
 */
export async function makeBackupTls(dir: string, uids: readonly string[]): Promise<BackupTlsFiles> {
  await mkdir(dir, { recursive: true });
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=stolon-backup-test-ca'], 'CA');
  const ext = join(dir, 'ext.cnf');
  await writeFile(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  const keepers: Record<string, { certFile: string; keyFile: string }> = {};
  for (const uid of uids) {
    const keyFile = join(dir, `${uid}.key`);
    const csr = join(dir, `${uid}.csr`);
    const certFile = join(dir, `${uid}.crt`);
    await openssl(['req', ...ec, '-keyout', keyFile, '-out', csr, '-subj', `/CN=${uid}`], `${uid} request`);
    await openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext], `${uid} certificate`);
    keepers[uid] = { certFile, keyFile };
  }
  return { caFile, keepers };
}
