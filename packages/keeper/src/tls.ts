/**
 * PostgreSQL's server TLS files (`--pg-ssl-cert-file`, `--pg-ssl-key-file`, `--pg-ssl-ca-file`):
 * checked at startup, copied into `<data-dir>` where PostgreSQL can read them and nobody else can
 * change them, and copied again whenever the operator's files change (docs/security.md,
 * "Certificate rotation"): the keeper then rewrites postgresql.conf and reloads PostgreSQL, which
 * reads the new files on SIGHUP — no restart, no connection dropped.
 *
 * The copies, `<data-dir>/pg-server.crt`, `pg-server.key` and `pg-ca.crt`, are new files renamed
 * into place (state-file.ts: never written through a link). With a root keeper they are owned by
 * root, in a directory only root may write, the key of mode 0640 with PostgreSQL's group (the
 * form PostgreSQL accepts for a root-owned key); otherwise owned by the keeper's user, the key of
 * mode 0600. They are outside PGDATA, so base backups do not carry the key.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, errorMessage } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import type { PgSslFiles } from '@stolon-ts/postgres';
import { writeStateFile } from './state-file.js';

/** The operator's files, as the flags name them. */
export interface TlsSources {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string | undefined;
}

/**
 * The TLS sources from the keeper's flags, or undefined when none is set (no TLS).
 * @throws ConfigError naming the flag: a key without a certificate, a certificate without a key,
 *   a CA file without both.
 */
export function tlsSources(flags: { pgSslCertFile?: string | undefined; pgSslKeyFile?: string | undefined; pgSslCaFile?: string | undefined }): TlsSources | undefined {
  const set = (v: string | undefined): v is string => v !== undefined && v !== '';
  const cert = set(flags.pgSslCertFile) ? flags.pgSslCertFile : undefined;
  const key = set(flags.pgSslKeyFile) ? flags.pgSslKeyFile : undefined;
  const ca = set(flags.pgSslCaFile) ? flags.pgSslCaFile : undefined;
  if (cert === undefined && key === undefined) {
    if (ca !== undefined) {
      throw new ConfigError('--pg-ssl-ca-file needs --pg-ssl-cert-file and --pg-ssl-key-file (the CA is used with server TLS only)', { field: 'pg-ssl-ca-file' });
    }
    return undefined;
  }
  if (cert === undefined) {
    throw new ConfigError('--pg-ssl-key-file needs --pg-ssl-cert-file (the server certificate of that key)', { field: 'pg-ssl-cert-file' });
  }
  if (key === undefined) {
    throw new ConfigError('--pg-ssl-cert-file needs --pg-ssl-key-file (the private key of that certificate)', { field: 'pg-ssl-key-file' });
  }
  return { certFile: cert, keyFile: key, caFile: ca };
}

/** The contents of the three files, checked, and their digest. */
interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  readonly digest: string;
}

async function readFlagFile(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`--${flag}: cannot read ${path}: ${errorMessage(err)}`, { field: flag });
  }
}

/**
 * Reads the operator's files and digests them (no parsing: cheap enough for every pass).
 * @throws ConfigError naming the flag whose file cannot be read.
 */
async function readTlsMaterial(src: TlsSources): Promise<TlsMaterial> {
  const cert = await readFlagFile(src.certFile, 'pg-ssl-cert-file');
  const key = await readFlagFile(src.keyFile, 'pg-ssl-key-file');
  const ca = src.caFile === undefined ? undefined : await readFlagFile(src.caFile, 'pg-ssl-ca-file');
  const h = createHash('sha256');
  for (const part of [cert, key, ca ?? Buffer.alloc(0)]) {
    h.update(createHash('sha256').update(part).digest());
  }
  return { cert, key, ca, digest: h.digest('hex').slice(0, 32) };
}

/**
 * Checks a set read by {@link readTlsMaterial}: the certificate and each CA certificate parse as
 * X.509 PEM, the key as a PEM private key, and the key is the certificate's (PostgreSQL would
 * refuse to start, or to reload its TLS settings, with a mismatched pair).
 * @throws ConfigError naming the flag whose file is wrong (never its content).
 */
function checkTlsMaterial(src: TlsSources, m: TlsMaterial): void {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(m.cert);
  } catch (err) {
    throw new ConfigError(`--pg-ssl-cert-file: ${src.certFile} is not a PEM certificate: ${errorMessage(err)}`, { field: 'pg-ssl-cert-file' });
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(m.key));
  } catch {
    throw new ConfigError(`--pg-ssl-key-file: ${src.keyFile} is not a PEM private key (an encrypted key cannot be used: PostgreSQL would ask for its passphrase)`, {
      field: 'pg-ssl-key-file',
    });
  }
  if (!matches) {
    throw new ConfigError(`--pg-ssl-key-file: ${src.keyFile} is not the private key of the certificate in ${src.certFile}`, { field: 'pg-ssl-key-file' });
  }
  if (m.ca !== undefined) {
    try {
      new X509Certificate(m.ca);
    } catch (err) {
      throw new ConfigError(`--pg-ssl-ca-file: ${src.caFile ?? ''} is not a PEM certificate: ${errorMessage(err)}`, { field: 'pg-ssl-ca-file' });
    }
  }
}

/**
 * The keeper's copies of the TLS files, kept equal to the operator's. {@link TlsFiles.install}
 * once at startup, then {@link TlsFiles.refresh} on every pass.
 */
export class TlsFiles {
  readonly #src: TlsSources;
  readonly #paths: { readonly certFile: string; readonly keyFile: string; readonly caFile: string | undefined };
  readonly #pgGroup: number | undefined;
  #installed: PgSslFiles | undefined;
  /** Digest of the last files refused, so a broken rotation is logged once, not every pass. */
  #lastRefused = '';

  /**
   * @param dataDir the keeper's `--data-dir` (the copies go there).
   * @param pgGroup with a root keeper, the gid of PostgreSQL's OS user (it may read the key);
   *   undefined otherwise.
   */
  constructor(src: TlsSources, dataDir: string, pgGroup: number | undefined) {
    this.#src = src;
    this.#pgGroup = pgGroup;
    this.#paths = {
      certFile: join(dataDir, 'pg-server.crt'),
      keyFile: join(dataDir, 'pg-server.key'),
      caFile: src.caFile === undefined ? undefined : join(dataDir, 'pg-ca.crt'),
    };
  }

  /** Where the CA copy is (for `sslrootcert`), or undefined without `--pg-ssl-ca-file`. */
  get caCopy(): string | undefined {
    return this.#paths.caFile;
  }

  /**
   * Checks the operator's files and installs the copies.
   * @throws ConfigError naming the flag when a file is unreadable or wrong; the file system's
   *   error when a copy cannot be written.
   */
  async install(): Promise<PgSslFiles> {
    const material = await readTlsMaterial(this.#src);
    checkTlsMaterial(this.#src, material);
    return this.#write(material);
  }

  /**
   * Reads the operator's files again; when they changed and are a valid set, installs the new
   * copies. A set that is not valid (say, mid-rotation the certificate is new and the key not
   * yet) is logged once and the copies in place are kept.
   * @returns what postgresql.conf is to name (a new `digest` after a change).
   */
  async refresh(log: Logger): Promise<PgSslFiles> {
    const current = this.#installed ?? (await this.install());
    let material: TlsMaterial;
    try {
      material = await readTlsMaterial(this.#src);
      // Parsed and checked only when the files changed: the pass runs every sleepInterval.
      if (material.digest === current.digest) {
        return current;
      }
      checkTlsMaterial(this.#src, material);
    } catch (err) {
      const why = errorMessage(err);
      if (why !== this.#lastRefused) {
        this.#lastRefused = why;
        log.warn({ err: why }, `TLS files not reloaded, the ones in place stay: ${why}`);
      }
      return current;
    }
    const next = await this.#write(material);
    log.info({ digest: next.digest }, 'new TLS files installed; PostgreSQL reloads them');
    return next;
  }

  async #write(m: TlsMaterial): Promise<PgSslFiles> {
    const gid = this.#pgGroup;
    const p = this.#paths;
    await writeStateFile(p.certFile, `${p.certFile}.secure.tmp`, m.cert, 0o644);
    if (p.caFile !== undefined && m.ca !== undefined) {
      await writeStateFile(p.caFile, `${p.caFile}.secure.tmp`, m.ca, 0o644);
    }
    // PostgreSQL accepts a key owned by its user with mode 0600, or owned by root with 0640.
    await writeStateFile(p.keyFile, `${p.keyFile}.secure.tmp`, m.key, gid !== undefined ? 0o640 : 0o600, gid !== undefined ? { uid: 0, gid } : undefined);
    this.#installed = { certFile: p.certFile, keyFile: p.keyFile, ...(p.caFile !== undefined ? { caFile: p.caFile } : {}), digest: m.digest };
    this.#lastRefused = '';
    return this.#installed;
  }
}
