/**
 * A local S3-compatible server for the tests and benchmarks of the `s3` backup repository: npm's
 * `s3rver` (a devDependency, run as a child `node` process) on a free 127.0.0.1 port, its objects
 * in a temp directory, serving HTTPS with a self-signed certificate made with `openssl` (pgBackRest
 * talks to S3 only over TLS, https://pgbackrest.org/configuration.html#section-repository/option-repo-s3-endpoint).
 * The certificate names `localhost` and 127.0.0.1, and is its own CA: pgBackRest 2.45 verifies the
 * host against DNS names only, so a client that verifies TLS (`--repo1-storage-ca-file`) must use
 * {@link S3ServerHandle.tlsEndpoint}; one that does not (`--no-repo1-storage-verify-tls`) can use
 * either endpoint. s3rver accepts any bucket path style and the fixed credentials
 * {@link S3ServerHandle.accessKey} / {@link S3ServerHandle.secretKey}.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ports.js';
import { startProcess, type ProcessHandle } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';

const run = promisify(execFile);

/** Options of {@link startS3Server}. */
export interface StartS3ServerOptions {
  /** Bucket created at start. @default 'stolon-backup' */
  readonly bucket?: string;
}

/** A running s3rver. */
export interface S3ServerHandle {
  /** `127.0.0.1:<port>` (HTTPS), for `--repo1-s3-endpoint` without TLS verification. */
  readonly endpoint: string;
  /** `localhost:<port>` (HTTPS), for `--repo1-s3-endpoint` with `--repo1-storage-ca-file`. */
  readonly tlsEndpoint: string;
  readonly bucket: string;
  /** Any region is accepted; this one is what the tests pass. */
  readonly region: string;
  /** s3rver's fixed access key id (`S3RVER`): give it as `PGBACKREST_REPO1_S3_KEY`. */
  readonly accessKey: string;
  /** s3rver's fixed secret (`S3RVER`): give it as `PGBACKREST_REPO1_S3_KEY_SECRET`. */
  readonly secretKey: string;
  /** PEM of the server's self-signed certificate, usable as the CA file (mode 0644). */
  readonly caFile: string;
  /** Where s3rver keeps the objects: `<dir>/objects/<bucket>/…`. */
  readonly dir: string;
  readonly process: ProcessHandle;
  /** Stops s3rver (SIGTERM, SIGKILL after 5 s) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts s3rver with HTTPS and resolves once it listens.
 * @throws Error with openssl's stderr when the certificate cannot be made; Error with s3rver's log
 *   when it exits or does not listen within 30 s (scaled). Nothing is left running or on disk then.
 */
export async function startS3Server(opts: StartS3ServerOptions = {}): Promise<S3ServerHandle> {
  const bucket = opts.bucket ?? 'stolon-backup';
  const dir = await makeTempDir('stolon-s3-');
  let proc: ProcessHandle | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await proc?.stop('SIGTERM', 5000);
      await removeDir(dir);
    })());
  try {
    const key = join(dir, 's3.key');
    const cert = join(dir, 's3.crt');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-addext', 'basicConstraints=critical,CA:TRUE',
    ]).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`openssl req (s3rver certificate) failed: ${err.stderr ?? err.message}`);
    });
    const port = await freePort();
    const bin = fileURLToPath(import.meta.resolve('s3rver/bin/s3rver.js'));
    proc = startProcess({
      name: 's3rver',
      cmd: process.execPath,
      args: [bin, '--directory', join(dir, 'objects'), '--address', '127.0.0.1', '--port', String(port), '--silent',
        '--key', key, '--cert', cert, '--configure-bucket', bucket],
      cwd: dir,
    });
    await proc.waitForLog(/S3rver listening on/, 30_000);
    return {
      endpoint: `127.0.0.1:${port}`,
      tlsEndpoint: `localhost:${port}`,
      bucket,
      region: 'us-east-1',
      accessKey: 'S3RVER',
      secretKey: 'S3RVER',
      caFile: cert,
      dir,
      process: proc,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
