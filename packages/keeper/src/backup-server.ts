/**
 * The keeper's pgBackRest TLS server (docs/backup.md, "Backups from a standby"; docs/security.md):
 * with `--backup-tls-cert-file`, `--backup-tls-key-file`, `--backup-tls-ca-file` and
 * `--backup-server-port`, and the spec's `backup` section applied here, the keeper runs
 * `pgbackrest server` as PostgreSQL's OS user, under the child supervisor, restarts it when it
 * exits, ends it when the keeper stops, and publishes where it listens (`KeeperInfo.backupServer`).
 * A standby's keeper then backs its standby up with `--backup-standby`, reaching the primary's
 * PostgreSQL (`pg_backup_start`/`pg_backup_stop`, and the few files pgBackRest copies from the
 * primary) through the primary keeper's server (https://pgbackrest.org/user-guide.html#standby-backup).
 *
 * Mutual TLS: the server accepts only client certificates signed by `--backup-tls-ca-file` whose
 * CN is its own certificate's or one of `--backup-tls-client-cns` (pgBackRest `tls-server-auth`,
 * for every stanza); the client checks the server's certificate against the same CA and the host
 * name (https://pgbackrest.org/configuration.html#section-server). The certificate, key and CA are
 * copied into `<data-dir>` at start, owned by PostgreSQL's OS user (mode 0600), and configured in
 * the `[global:server]` section of the keeper's `pgbackrest.conf`.
 */
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, errorMessage, type BackupPrimary, type BackupServer } from '@stolon-ts/cluster';
import { PGBACKREST } from './archiving.js';
import type { KeeperRuntime } from './runtime.js';
import { writeStateFile } from './state-file.js';

/** A server that ran shorter than this is restarted only after it (ms), so a failing one does not spin. */
const RESTART_DELAY_MS = 5_000;

/** The TLS server of this keeper, built at start ({@link readBackupTls}). */
export interface BackupServerConfig {
  /** `tls-server-address`: PostgreSQL's listen address. */
  readonly listenAddress: string;
  /** `tls-server-port`. */
  readonly port: number;
  /** Published host name (`--backup-server-host`). */
  readonly host: string;
  /** The copies in `<data-dir>` (readable by PostgreSQL's OS user only). */
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** Client certificate CNs the server accepts: its own first. */
  readonly clientCns: readonly string[];
}

/** A running server (on the runtime). */
export interface BackupServerState {
  running: boolean;
  /** performance.now() ms of the last start. */
  startedAtMs: number;
  readonly abort: AbortController;
}

/** The CN of a PEM certificate's subject. @throws Error when it has none. */
function commonName(pem: Buffer): string {
  const cn = /^CN=(.+)$/m.exec(new X509Certificate(pem).subject)?.[1];
  if (cn === undefined) {
    throw new Error('the certificate subject has no CN');
  }
  return cn;
}

/**
 * Checks the `--backup-tls-*` and `--backup-server-*` flags and copies the certificate, key and CA
 * into `<data-dir>` (`pgbackrest-tls.crt`, `pgbackrest-tls.key`, `pgbackrest-tls-ca.crt`, mode
 * 0600, owned by `owner`).
 * @returns the server configuration, or undefined when none of the flags is given
 * @throws ConfigError naming the flag: some but not all of the three files and the port given, a
 *   port outside 1-65535, a file that cannot be read, a certificate without a CN.
 */
export async function readBackupTls(
  flags: {
    readonly backupTlsCertFile?: string | undefined;
    readonly backupTlsKeyFile?: string | undefined;
    readonly backupTlsCaFile?: string | undefined;
    readonly backupTlsClientCns?: string | undefined;
    readonly backupServerPort?: number | undefined;
    readonly backupServerHost?: string | undefined;
  },
  where: { readonly dataDir: string; readonly listenAddress: string; readonly advertiseAddress: string },
  owner: { readonly uid: number; readonly gid: number } | undefined,
): Promise<BackupServerConfig | undefined> {
  const files = [
    ['backup-tls-cert-file', flags.backupTlsCertFile, 'pgbackrest-tls.crt'],
    ['backup-tls-key-file', flags.backupTlsKeyFile, 'pgbackrest-tls.key'],
    ['backup-tls-ca-file', flags.backupTlsCaFile, 'pgbackrest-tls-ca.crt'],
  ] as const;
  const given = files.filter(([, v]) => v !== undefined && v !== '');
  if (given.length === 0 && flags.backupServerPort === undefined) {
    return undefined;
  }
  const missing = files.find(([, v]) => v === undefined || v === '');
  if (missing !== undefined || flags.backupServerPort === undefined) {
    const name = missing?.[0] ?? 'backup-server-port';
    throw new ConfigError(`--${name} is required with the other --backup-tls-* and --backup-server-port flags: the pgBackRest TLS server needs all four`, { field: name });
  }
  const port = flags.backupServerPort;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`--backup-server-port: ${port} is not a TCP port (1-65535)`, { field: 'backup-server-port' });
  }
  const copies: string[] = [];
  let ownCn = '';
  for (const [name, src, copy] of files) {
    let content: Buffer;
    try {
      content = await fs.readFile(src as string);
      if (name === 'backup-tls-cert-file') {
        ownCn = commonName(content);
      }
    } catch (err) {
      throw new ConfigError(`--${name}: cannot use ${src as string}: ${errorMessage(err)}`, { field: name });
    }
    const dest = join(where.dataDir, copy);
    await writeStateFile(dest, `${dest}.tmp`, content, 0o600, owner);
    copies.push(dest);
  }
  const extra = (flags.backupTlsClientCns ?? '')
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== ownCn);
  if (extra.some((c) => /[=\s]/.test(c) || c === '*')) {
    throw new ConfigError('--backup-tls-client-cns: a CN holds "=", a blank or is "*" (pgBackRest accepts exact CNs only)', { field: 'backup-tls-client-cns' });
  }
  return {
    listenAddress: where.listenAddress,
    port,
    host: flags.backupServerHost ?? where.advertiseAddress,
    certFile: copies[0] as string,
    keyFile: copies[1] as string,
    caFile: copies[2] as string,
    clientCns: [ownCn, ...new Set(extra)],
  };
}

/** The `[global:server]` lines of the keeper's `pgbackrest.conf` for `cfg` (https://pgbackrest.org/configuration.html#section-server). */
export function serverConfLines(cfg: BackupServerConfig): string[] {
  return [
    '[global:server]',
    `tls-server-address=${cfg.listenAddress}`,
    `tls-server-port=${cfg.port}`,
    `tls-server-cert-file=${cfg.certFile}`,
    `tls-server-key-file=${cfg.keyFile}`,
    `tls-server-ca-file=${cfg.caFile}`,
    ...cfg.clientCns.map((cn) => `tls-server-auth=${cn}=*`),
  ];
}

/**
 * The options a standby's keeper adds to `pgbackrest backup` to back its standby up
 * (`--backup-standby`; pg1 is the local standby): pg2 is the primary, reached through its keeper's
 * TLS server with this keeper's certificate.
 */
export function standbyBackupOptions(cfg: BackupServerConfig, primary: BackupPrimary): string[] {
  return [
    '--backup-standby',
    `--pg2-host=${primary.host}`,
    '--pg2-host-type=tls',
    `--pg2-host-port=${primary.port}`,
    `--pg2-host-cert-file=${cfg.certFile}`,
    `--pg2-host-key-file=${cfg.keyFile}`,
    `--pg2-host-ca-file=${cfg.caFile}`,
    `--pg2-path=${primary.pgData}`,
    `--pg2-port=${primary.pgPort}`,
    `--pg2-socket-path=${primary.socketPath}`,
    `--pg2-user=${primary.user}`,
  ];
}

/**
 * Runs every pass: starts `pgbackrest server` when it is configured, the spec's `backup` section
 * is applied here (`applied`) and it does not run (at most once per {@link RESTART_DELAY_MS});
 * stops it when the section is no longer applied. Never throws; an exit is logged with
 * pgBackRest's output.
 */
export function maintainBackupServer(rt: KeeperRuntime, applied: boolean): void {
  const cfg = rt.config.backupServer;
  const configFile = rt.config.pgbackrest?.configFile;
  if (cfg === undefined || configFile === undefined) {
    return;
  }
  const cur = rt.backupServer;
  if (!applied || rt.state !== 'running') {
    cur?.abort.abort();
    return;
  }
  if (cur !== undefined && (cur.running || performance.now() - cur.startedAtMs < RESTART_DELAY_MS)) {
    return;
  }
  const st: BackupServerState = { running: true, startedAtMs: performance.now(), abort: new AbortController() };
  rt.backupServer = st;
  rt.log.info({ port: cfg.port }, `starting the pgBackRest TLS server on ${cfg.listenAddress}:${cfg.port}`);
  const args = [`--config=${configFile}`, `--log-path=${join(rt.config.pgbackrest?.dir ?? rt.config.dataDir, 'log')}`, '--log-level-console=off', '--log-level-stderr=warn', 'server'];
  rt.pg
    .runTool(PGBACKREST, args, { supervised: true, signal: st.abort.signal })
    .then((res) => {
      if (!st.abort.signal.aborted) {
        rt.log.error({ code: res.code }, `the pgBackRest TLS server exited (${res.code ?? 'signal'}): ${(res.stderr || res.stdout).trim().slice(-500) || 'no output'}; restarted`);
      }
    })
    .catch((err: unknown) => rt.log.error({ err }, `cannot run the pgBackRest TLS server: ${errorMessage(err)}`))
    .finally(() => {
      st.running = false;
      if (!st.abort.signal.aborted) {
        rt.trigger('pgBackRest TLS server exited');
      }
    });
}

/** Stops the server (keeper stop); resolves at once, the supervisor ends it. */
export function stopBackupServer(rt: KeeperRuntime): void {
  rt.backupServer?.abort.abort();
}

/** What this keeper publishes of its server (`KeeperInfo.backupServer`): only while it runs. */
export function backupServerInfo(rt: KeeperRuntime, socketPath: string): BackupServer | undefined {
  const cfg = rt.config.backupServer;
  const pgData = rt.config.pgbackrest?.pgData;
  if (cfg === undefined || pgData === undefined || rt.backupServer?.running !== true || rt.backupServer.abort.signal.aborted) {
    return undefined;
  }
  return { host: cfg.host, port: cfg.port, pgData, pgPort: rt.config.pgPort, socketPath, user: rt.config.suUsername };
}
