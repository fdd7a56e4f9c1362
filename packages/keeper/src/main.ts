#!/usr/bin/env node
/** stolon-keeper: parses flags, reads secrets, builds the logger, store and Postgres manager, runs the keeper. */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError, errorMessage, parseDurationMs } from '@stolon-ts/cluster';
import {
  addFlags,
  baseYargs,
  createDaemonMetrics,
  createLogger,
  exitOnConfigError,
  logConfiguration,
  newBootUuid,
  newUid,
  parseListenAddress,
  pickFlags,
  readMemberToken,
  readSecret,
  runDaemon,
  statusListenOf,
  storeFromConfig,
  type Logger,
} from '@stolon-ts/common';
import { PgManager, osUserIds, preloadPgLib, resolvePgBinDir, type PeerSsl } from '@stolon-ts/postgres';
import { PodLabels } from '@stolon-ts/store';
import { pgbackrestLocal } from './archiving.js';
import { acquireDataDirLock } from './datadir-lock.js';
import { prepareDataDir } from './datadir.js';
import type { MemberApiConfig } from './failsafe.js';
import { KEEPER_FLAGS, KEEPER_STOLON_FLAGS } from './flags.js';
import { startFencer } from './fencer.js';
import { KeeperStatus, keeperChecks } from './health.js';
import { start } from './keeper.js';
import { registerKeeperMetrics } from './keeper-metrics.js';
import { lateMetrics } from './late-setup.js';
import { refuseExampleSecret } from './passwords.js';
import { RoleLabeller } from './role-label.js';
import { installPgbackrestFiles, readBackupSecrets } from './pgbackrest-files.js';
import { readBackupTls } from './backup-server.js';
import { parseAllowSpecCommands } from './spec-commands.js';
import { writeStateFile } from './state-file.js';
import { TlsFiles, tlsSources } from './tls.js';

/**
 * uid/gid of `--pg-os-user`, from the lookup the PostgreSQL manager shares (one `id` process).
 * @throws ConfigError naming `pg-os-user` when the user does not exist
 */
async function pgOsUserIds(user: string): Promise<{ uid: number; gid: number }> {
  try {
    return await osUserIds(user);
  } catch {
    throw new ConfigError(`--pg-os-user: OS user "${user}" does not exist; create it or name another unprivileged user`, {
      field: 'pg-os-user',
    });
  }
}

/** Where a secret is read from, for messages: its file when one is given, else the environment variable. */
function secretSource(file: string | undefined, envVar: string): string {
  return file !== undefined && file !== '' ? file : `$${envVar}`;
}

/** The keeper uid: the flag, else the one kept in `<data-dir>/keeperstate`, else a new one saved there. */
async function resolveUid(flag: string | undefined, dataDir: string): Promise<string> {
  const file = join(dataDir, 'keeperstate');
  let saved: string | undefined;
  try {
    saved = (JSON.parse(await readFile(file, 'utf8')) as { UID?: string }).UID;
  } catch {
    saved = undefined;
  }
  const uid = flag ?? saved ?? newUid();
  if (!/^[a-z0-9_]+$/.test(uid)) {
    throw new ConfigError(`--uid: "${uid}" must match [a-z0-9_]+ (it becomes part of replication slot names)`, { field: 'uid' });
  }
  if (saved !== undefined && flag !== undefined && saved !== flag) {
    throw new ConfigError(`--uid: this data dir belongs to keeper "${saved}", not "${flag}"; use the right --data-dir`, { field: 'uid' });
  }
  if (saved === undefined) {
    await writeStateFile(file, `${file}.tmp`, JSON.stringify({ UID: uid }), 0o600);
  }
  return uid;
}

/**
 * The member API settings from the flags, or undefined when `--member-listen-address` is unset.
 * @throws ConfigError naming the flag: an address that does not parse, a listen address on every
 *   interface without `--member-advertise-address`, or no token (the API is never served open).
 */
function memberConfig(flags: { memberListenAddress: string | undefined; memberAdvertiseAddress: string | undefined; memberTokenFile: string | undefined }): MemberApiConfig | undefined {
  if (flags.memberListenAddress === undefined || flags.memberListenAddress === '') {
    return undefined;
  }
  const listen = parseListenAddress(flags.memberListenAddress, 'member-listen-address');
  const advertise = flags.memberAdvertiseAddress ?? flags.memberListenAddress;
  const adv = parseListenAddress(advertise, 'member-advertise-address');
  if (adv.host === '' || adv.host === '0.0.0.0' || adv.host === '::') {
    throw new ConfigError(
      `--member-advertise-address: "${advertise}" is not an address other keepers can reach; give this keeper's own host:port`,
      { field: 'member-advertise-address' },
    );
  }
  const read = readMemberToken(flags.memberTokenFile, 'STKEEPER_MEMBER_TOKEN', 'member-token-file', process.env);
  const token = read === undefined ? undefined : refuseExampleSecret(read, 'member-token-file', secretSource(flags.memberTokenFile, 'STKEEPER_MEMBER_TOKEN'));
  if (token === undefined) {
    throw new ConfigError('--member-listen-address needs a member token: --member-token-file (or STKEEPER_MEMBER_TOKEN); the member API is never served without one', {
      field: 'member-token-file',
    });
  }
  return { listen, advertise: adv.host.includes(':') ? `[${adv.host}]:${adv.port}` : `${adv.host}:${adv.port}`, token };
}

/**
 * How long after its first pass has settled the keeper sets up its metrics and loads
 * node-postgres, in ms (see main): past the passes that react to the sentinel's answer to its
 * first publish, and well before a failover could need node-postgres.
 */
const PRELOAD_DELAY_MS = 1000;

/** Bound of each pod label request (role-label.ts), in ms: short, as the last one delays the stop. */
const POD_LABEL_TIMEOUT_MS = 2000;

/**
 * The pod role labeller for `--kube-pod-name`, or undefined when the flag is unset. A client
 * configuration that cannot be resolved gives a labeller that labels nothing and logs why once.
 */
function roleLabellerOf(
  flags: { kubePodName: string | undefined; kubeconfig: string | undefined; kubeContext: string | undefined; kubeNamespace: string | undefined },
  logger: Logger,
): RoleLabeller | undefined {
  if (flags.kubePodName === undefined || flags.kubePodName === '') {
    return undefined;
  }
  const log = logger.child({ module: 'role-label' });
  try {
    const pod = new PodLabels({ kubeconfig: flags.kubeconfig, context: flags.kubeContext, namespace: flags.kubeNamespace, pod: flags.kubePodName, timeoutMs: POD_LABEL_TIMEOUT_MS });
    return new RoleLabeller((labels) => pod.set(labels), log);
  } catch (err) {
    return new RoleLabeller(undefined, log, `no Kubernetes client configuration: ${errorMessage(err)}`);
  }
}

/** How this keeper's connections to the others use TLS (`PgManagerOptions.peerSsl`), from the flags. */
function peerSslOf(caCopy: string | undefined, mode: string, required: boolean): { peerSsl?: PeerSsl } {
  if (caCopy !== undefined) {
    return { peerSsl: { rootCert: caCopy, mode: mode === 'verify-ca' ? 'verify-ca' : 'verify-full' } };
  }
  return required ? { peerSsl: { mode: 'require' } } : {};
}

async function main(): Promise<void> {
  let prepared;
  const warnings: string[] = [];
  try {
    const argv = await addFlags(baseYargs(process.argv.slice(2), 'stolon-keeper'), KEEPER_FLAGS, 'STKEEPER', process.env, {
      flags: KEEPER_STOLON_FLAGS,
      warnings,
    }).parseAsync();
    const flags = pickFlags(argv as Record<string, unknown>, KEEPER_FLAGS);
    // Read again at every pass (passwords.ts): the files may be rotated while the keeper runs. An
    // example value stops the start, and is not taken in a rotation (passwords.ts logs why).
    const readPassword = (file: string | undefined, envVar: string, flag: string): string =>
      refuseExampleSecret(readSecret(file, envVar, flag, process.env), flag, secretSource(file, envVar));
    const readPasswords = (): { su: string; repl: string } => ({
      su: readPassword(flags.pgSuPasswordFile, 'STKEEPER_PG_SU_PASSWORD', 'pg-su-password-file'),
      repl: readPassword(flags.pgReplPasswordFile, 'STKEEPER_PG_REPL_PASSWORD', 'pg-repl-password-file'),
    });
    const { su: suPassword, repl: replPassword } = readPasswords();
    if (!Number.isInteger(flags.priority)) {
      throw new ConfigError(`--priority: ${flags.priority} is not a whole number`, { field: 'priority' });
    }
    if (!Number.isInteger(flags.pgPort) || flags.pgPort < 1 || flags.pgPort > 65535) {
      throw new ConfigError(`--pg-port: ${flags.pgPort} is not a TCP port (1-65535)`, { field: 'pg-port' });
    }
    const shutdownSwitchoverTimeoutMs = parseDurationMs(flags.shutdownSwitchoverTimeout);
    if (shutdownSwitchoverTimeoutMs === undefined) {
      throw new ConfigError(`--shutdown-switchover-timeout: "${flags.shutdownSwitchoverTimeout}" is not a duration such as 30s (0 disables)`, {
        field: 'shutdown-switchover-timeout',
      });
    }
    const statusListen = statusListenOf(flags.metricsListenAddress, 'metrics-listen-address');
    const member = memberConfig(flags);
    const allowSpecCommands = parseAllowSpecCommands(flags.allowSpecCommands);
    const pgBinPath = resolvePgBinDir({ flag: flags.pgBinPath, env: process.env });
    const isRoot = process.getuid?.() === 0;
    // `id` runs while the store client loads (CPU-bound), not after it; its error, if any, is
    // thrown below, after the store's.
    const ownerLookup = isRoot ? pgOsUserIds(flags.pgOsUser) : undefined;
    ownerLookup?.catch(() => undefined);
    const store = await storeFromConfig(flags, 'STKEEPER');
    const dataDir = resolve(flags.dataDir);
    const owner = await ownerLookup;
    // Root: <data-dir> owned by root, PostgreSQL's user owning only what PostgreSQL writes
    // (PGDATA, run, postgres.log), so it cannot plant links where root writes (datadir.ts).
    const dataDirChanges = await prepareDataDir(dataDir, owner);
    // Before anything else touches the data dir: one keeper per data directory.
    const lock = acquireDataDirLock(dataDir);
    const uid = await resolveUid(flags.uid, dataDir);
    // Checked and copied before PostgreSQL can start with ssl on.
    const tlsSrc = tlsSources(flags);
    const tls = tlsSrc === undefined ? undefined : new TlsFiles(tlsSrc, dataDir, owner?.gid);
    if (flags.pgSslRequired && tls === undefined) {
      throw new ConfigError('--pg-ssl-required needs --pg-ssl-cert-file and --pg-ssl-key-file: PostgreSQL cannot offer TLS without them', {
        field: 'pg-ssl-required',
      });
    }
    await tls?.install();
    // pgBackRest's configuration file (the S3 credentials) and directories, whatever the spec:
    // the spec's backup section may appear later (pgbackrest-files.ts).
    // The socket directory is the manager's, known once it exists (below).
    const pgbackrest = pgbackrestLocal(flags.clusterName, dataDir, join(dataDir, 'postgres'), '');
    const backupServer = await readBackupTls(flags, { dataDir, listenAddress: flags.pgListenAddress, advertiseAddress: flags.pgAdvertiseAddress ?? flags.pgListenAddress }, owner);
    await installPgbackrestFiles(pgbackrest, await readBackupSecrets(flags, process.env), owner, backupServer);
    prepared = { backupServer, pgbackrest, flags, shutdownSwitchoverTimeoutMs, pgBinPath, readPasswords, suPassword, replPassword, store, dataDir, uid, statusListen, lock, member, dataDirChanges, allowSpecCommands, tls };
  } catch (err) {
    exitOnConfigError(err, 'stolon-keeper');
  }
  const { backupServer, pgbackrest, flags, shutdownSwitchoverTimeoutMs, pgBinPath, readPasswords, suPassword, replPassword, store, dataDir, uid, statusListen, lock, member, dataDirChanges, allowSpecCommands, tls } = prepared;
  const logger = createLogger({ level: flags.logLevel, component: 'keeper', uid, cluster: flags.clusterName });
  logConfiguration(logger, flags, warnings, {
    uid,
    suPasswordFrom: secretSource(flags.pgSuPasswordFile, 'STKEEPER_PG_SU_PASSWORD'),
    replPasswordFrom: secretSource(flags.pgReplPasswordFile, 'STKEEPER_PG_REPL_PASSWORD'),
  });
  for (const change of dataDirChanges) {
    logger.warn({ dataDir }, `data directory: ${change}`);
  }
  logger.info({ pgBinPath }, `PostgreSQL binaries in ${pgBinPath}${flags.pgBinPath === undefined ? ' (not given: resolved at startup)' : ''}`);
  const advertise = flags.pgAdvertiseAddress ?? flags.pgListenAddress;
  const pg = new PgManager({
    pgData: join(dataDir, 'postgres'),
    binPath: pgBinPath,
    osUser: flags.pgOsUser,
    suUsername: flags.pgSuUsername,
    suPassword,
    replUsername: flags.pgReplUsername,
    replPassword,
    listenAddress: flags.pgListenAddress,
    port: flags.pgPort,
    logger: logger.child({ module: 'postgres' }),
    ...peerSslOf(tls?.caCopy, flags.pgSslPeerMode, flags.pgSslRequired),
  });
  const bootUuid = newBootUuid();
  const roleLabel = roleLabellerOf(flags, logger);
  // The metrics (prom-client) are set up, and node-postgres loaded, PRELOAD_DELAY_MS after the
  // first pass has settled, not before it: that pass publishes this keeper's info, which the
  // sentinel waits for, and the passes right after it act on the sentinel's answer (a new standby
  // waits for its DB and its replication slot, then starts pg_basebackup); loading either then
  // delayed those passes by its CPU time (late-setup.ts). While a background task runs (a new
  // standby's copy), the metrics wait for its end. A scrape that comes first sets them up at once.
  const metrics = lateMetrics(
    () => {
      const daemon = createDaemonMetrics('keeper', flags.clusterName);
      return { source: daemon.source, observePass: registerKeeperMetrics(daemon.registry, () => status.facts(), uid) };
    },
    PRELOAD_DELAY_MS,
    preloadPgLib,
    () => status.facts().view?.task !== undefined,
  );
  const status: KeeperStatus = new KeeperStatus({ onPassSettled: metrics.onPassSettled });
  const fencer = startFencer(logger.child({ module: 'fencer' }), { pidFile: join(dataDir, 'fencer.pid') });
  const handle = await start(
    {
      uid,
      dataDir,
      pgAdvertiseAddress: advertise,
      pgPort: flags.pgPort,
      suUsername: flags.pgSuUsername,
      suPassword,
      replUsername: flags.pgReplUsername,
      replPassword,
      canBeMaster: flags.canBeMaster,
      canBeSynchronousReplica: flags.canBeSynchronousReplica,
      priority: flags.priority,
      ...(member !== undefined ? { member } : {}),
      allowSpecCommands,
      pgSslRequired: flags.pgSslRequired,
      shutdownSwitchoverTimeoutMs,
      pgbackrest: { ...pgbackrest, socketDir: pg.socketDir },
      ...(backupServer !== undefined ? { backupServer } : {}),
    },
    { store, logger, pg, bootUuid, status, fencer, passwords: readPasswords, ...(tls !== undefined ? { tls } : {}), ...(roleLabel !== undefined ? { roleLabel } : {}) },
  ).catch(async (err: unknown) => {
    await fencer.stop();
    return exitOnConfigError(err, 'stolon-keeper');
  });
  await runDaemon(logger, handle, {
    listen: statusListen,
    flag: { name: 'metrics-listen-address', value: flags.metricsListenAddress ?? '' },
    checks: () => keeperChecks(status, handle.state, uid, () => metrics.get().source()),
    program: 'stolon-keeper',
  });
  lock.release();
}

// Not a top-level await: the bundle (scripts/bundle.mjs) is CommonJS. A rejection is unhandled
// and ends the process with status 1, as an uncaught top-level await did.
void main();
