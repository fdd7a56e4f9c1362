/** stolon-keeper flags (Stolon's names, from its cmd/keeper/cmd/keeper.go; env prefix STKEEPER). */
import { COMMON_FLAGS, DAEMON_STOLON_FLAGS, type CommonConfig, type FlagTable, type StolonOnlyFlag } from '@stolon-ts/common';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import { DEFAULT_ALLOW_SPEC_COMMANDS, SPEC_COMMANDS } from './spec-commands.js';

/**
 * Default of `--shutdown-switchover-timeout`: a switchover takes about a second, but it first
 * waits for every live proxy to acknowledge the fence, and a proxy that just died is waited for
 * its proxyTimeout (15 s by default) plus 1 s; 30 s covers that with room.
 */
const DEFAULT_SHUTDOWN_SWITCHOVER_TIMEOUT = '30s';

export interface KeeperFlags extends CommonConfig {
  uid: string | undefined;
  dataDir: string;
  pgListenAddress: string;
  pgAdvertiseAddress: string | undefined;
  pgPort: number;
  /** Unset: `resolvePgBinDir` picks the directory at startup. */
  pgBinPath: string | undefined;
  pgSuUsername: string;
  pgSuPasswordFile: string | undefined;
  pgReplUsername: string;
  pgReplPasswordFile: string | undefined;
  pgOsUser: string;
  pgSslCertFile: string | undefined;
  pgSslKeyFile: string | undefined;
  pgSslCaFile: string | undefined;
  pgSslPeerMode: string;
  pgSslRequired: boolean;
  canBeMaster: boolean;
  canBeSynchronousReplica: boolean;
  priority: number;
  metricsListenAddress: string | undefined;
  memberListenAddress: string | undefined;
  memberAdvertiseAddress: string | undefined;
  memberTokenFile: string | undefined;
  allowSpecCommands: string;
  backupS3KeyFile: string | undefined;
  backupS3KeySecretFile: string | undefined;
  backupS3CaFile: string | undefined;
  backupTlsCertFile: string | undefined;
  backupTlsKeyFile: string | undefined;
  backupTlsCaFile: string | undefined;
  backupTlsClientCns: string | undefined;
  backupServerPort: number | undefined;
  backupServerHost: string | undefined;
  shutdownSwitchoverTimeout: string;
  kubePodName: string | undefined;
}

export const KEEPER_FLAGS: FlagTable<KeeperFlags> = {
  ...COMMON_FLAGS,
  uid: {
    name: 'uid',
    description: 'keeper uid (must be unique in the cluster; [a-z0-9_]+). Default: generated once and kept in the data dir',
    type: 'string',
    alias: 'id',
  },
  dataDir: { name: 'data-dir', description: 'data directory (holds the keeper state and PGDATA in postgres/)', type: 'string', required: true },
  pgListenAddress: { name: 'pg-listen-address', description: 'PostgreSQL listen address', type: 'string', default: '127.0.0.1' },
  pgAdvertiseAddress: {
    name: 'pg-advertise-address',
    description: 'address other keepers and proxies use to reach this PostgreSQL (default: --pg-listen-address)',
    type: 'string',
  },
  pgPort: { name: 'pg-port', description: 'PostgreSQL port', type: 'number', default: 5432 },
  pgBinPath: {
    name: 'pg-bin-path',
    description:
      'directory of the PostgreSQL binaries. Default, resolved at startup: $PG_BIN, else `pg_config --bindir` ' +
      `when it holds postgres, else ${DEFAULT_PG_BIN_DIR}`,
    type: 'string',
  },
  pgSuUsername: { name: 'pg-su-username', description: 'PostgreSQL superuser name', type: 'string', default: 'postgres' },
  pgSuPasswordFile: {
    name: 'pg-su-password-file',
    description: 'file holding the superuser password (or set STKEEPER_PG_SU_PASSWORD); read again at every pass, a change is set on the role by the primary',
    type: 'string',
    secretFile: true,
    alias: 'pg-su-passwordfile',
  },
  pgReplUsername: { name: 'pg-repl-username', description: 'PostgreSQL replication user name', type: 'string', default: 'repluser' },
  pgReplPasswordFile: {
    name: 'pg-repl-password-file',
    description: 'file holding the replication password (or set STKEEPER_PG_REPL_PASSWORD); read again at every pass, a change is set on the role by the primary',
    type: 'string',
    secretFile: true,
    alias: 'pg-repl-passwordfile',
  },
  pgOsUser: {
    name: 'pg-os-user',
    description: 'when the keeper runs as root, the unprivileged OS user that runs PostgreSQL',
    type: 'string',
    default: 'postgres',
  },
  pgSslCertFile: {
    name: 'pg-ssl-cert-file',
    description:
      'PEM server certificate for PostgreSQL (needs --pg-ssl-key-file): the keeper turns ssl on with a copy of it, and ' +
      'reloads PostgreSQL when the file changes (rotation without a restart; docs/security.md). Its subject alternative ' +
      'names must include --pg-advertise-address for standbys verifying it. Unset: TLS as pgParameters say (off by default)',
    type: 'string',
  },
  pgSslKeyFile: {
    name: 'pg-ssl-key-file',
    description: 'PEM private key of --pg-ssl-cert-file (not encrypted); copied for PostgreSQL with the permissions it requires',
    type: 'string',
  },
  pgSslCaFile: {
    name: 'pg-ssl-ca-file',
    description:
      'PEM CA certificate(s) the keepers\' server certificates chain to: PostgreSQL\'s ssl_ca_file, and this keeper connects ' +
      'to the others (replication, pg_basebackup, pg_rewind) verifying their certificates (--pg-ssl-peer-mode). Unset: those ' +
      'connections use sslmode=prefer (encrypted when offered, unverified)',
    type: 'string',
  },
  pgSslPeerMode: {
    name: 'pg-ssl-peer-mode',
    description:
      'with --pg-ssl-ca-file, the sslmode of this keeper\'s connections to the others: verify-full (the certificate must name the ' +
      'address in --pg-advertise-address) or verify-ca (the chain only: for addresses no certificate can name, such as pod IPs)',
    type: 'string',
    choices: ['verify-full', 'verify-ca'],
    default: 'verify-full',
  },
  pgSslRequired: {
    name: 'pg-ssl-required',
    description:
      'reject every TCP login to PostgreSQL without TLS (hostnossl … reject first in pg_hba.conf, before pgHBA); needs ' +
      '--pg-ssl-cert-file, on every keeper. Without --pg-ssl-ca-file this keeper connects to the others with sslmode=require',
    type: 'boolean',
    default: false,
  },
  canBeMaster: { name: 'can-be-master', description: 'whether this keeper may become primary', type: 'boolean', default: true },
  canBeSynchronousReplica: {
    name: 'can-be-synchronous-replica',
    description: 'whether this keeper may be chosen as a synchronous standby',
    type: 'boolean',
    default: true,
  },
  priority: {
    name: 'priority',
    description: 'failover preference among standbys equally up to date (higher wins; ties by uid)',
    type: 'number',
    default: 0,
  },
  metricsListenAddress: {
    name: 'metrics-listen-address',
    description:
      'host:port of the HTTP status endpoint: GET /healthz (200 while the keeper loop runs) and GET /readyz ' +
      '(200 once PostgreSQL has converged to its role and generation and the store answered), GET /metrics (Prometheus), ' +
      'and Patroni-style role checks for load balancers: GET /primary, /replica (?lag=16MB), /read-only, /sync, /health ' +
      '(docs/metrics.md). ' +
      'Unset: no endpoint',
    type: 'string',
  },
  memberListenAddress: {
    name: 'member-listen-address',
    description:
      'host:port of the member API that failsafe mode uses (the primary asks every keeper to confirm it while the store is ' +
      'unreachable; proxies ask the primary). Needs a member token. Unset: not served, and the primary cannot keep its role ' +
      'through a store outage',
    type: 'string',
  },
  memberAdvertiseAddress: {
    name: 'member-advertise-address',
    description: 'host:port other keepers and proxies use to reach the member API (default: --member-listen-address)',
    type: 'string',
  },
  memberTokenFile: {
    name: 'member-token-file',
    description:
      'file holding the member API bearer token, the same on every keeper and proxy, at least 32 characters ' +
      '(or set STKEEPER_MEMBER_TOKEN)',
    type: 'string',
    secretFile: true,
  },
  allowSpecCommands: {
    name: 'allow-spec-commands',
    description:
      'command-bearing settings this keeper accepts from the cluster spec, which anyone who can write the store controls ' +
      `(they run shell commands as the postgres user): none, all, or a comma-separated list of ${SPEC_COMMANDS.join(', ')}. ` +
      'Refused ones are not applied, and are logged and shown by stolonctl status (docs/security.md)',
    type: 'string',
    default: DEFAULT_ALLOW_SPEC_COMMANDS,
  },
  backupS3KeyFile: {
    name: 'backup-s3-key-file',
    description:
      'file holding the S3 access key of the spec\'s backup repository (or set STKEEPER_BACKUP_S3_KEY); with --backup-s3-key-secret-file. ' +
      'Read at start and written, with the secret, into <data-dir>/pgbackrest.conf (mode 0600, owned by --pg-os-user), never into ' +
      'argv or logs (docs/backup.md)',
    type: 'string',
    secretFile: true,
  },
  backupS3KeySecretFile: {
    name: 'backup-s3-key-secret-file',
    description: 'file holding the secret of --backup-s3-key-file (or set STKEEPER_BACKUP_S3_KEY_SECRET)',
    type: 'string',
    secretFile: true,
  },
  backupS3CaFile: {
    name: 'backup-s3-ca-file',
    description:
      'PEM CA certificate(s) the S3 endpoint\'s certificate chains to (pgBackRest repo1-storage-ca-file; copied into <data-dir> at start). ' +
      'Unset: the system\'s CAs',
    type: 'string',
  },
  backupTlsCertFile: {
    name: 'backup-tls-cert-file',
    description:
      'PEM certificate of this keeper for pgBackRest\'s mutual TLS, signed by --backup-tls-ca-file, naming --backup-server-host ' +
      '(subjectAltName DNS); its CN is this keeper\'s client identity. With --backup-tls-key-file, --backup-tls-ca-file and ' +
      '--backup-server-port the keeper runs a pgBackRest TLS server, so backups can be taken from a standby (docs/backup.md). ' +
      'Copied into <data-dir> at start',
    type: 'string',
  },
  backupTlsKeyFile: { name: 'backup-tls-key-file', description: 'PEM private key of --backup-tls-cert-file (copied into <data-dir>, mode 0600)', type: 'string' },
  backupTlsCaFile: {
    name: 'backup-tls-ca-file',
    description: 'PEM CA certificate every keeper\'s --backup-tls-cert-file is signed by; keep this CA private to the keepers (docs/security.md)',
    type: 'string',
  },
  backupTlsClientCns: {
    name: 'backup-tls-client-cns',
    description:
      'comma-separated certificate CNs (of other keepers\' --backup-tls-cert-file) this keeper\'s pgBackRest TLS server accepts, besides ' +
      'the CN of its own certificate (pgBackRest tls-server-auth; wildcards are not allowed)',
    type: 'string',
  },
  backupServerPort: {
    name: 'backup-server-port',
    description: 'TCP port of this keeper\'s pgBackRest TLS server (`pgbackrest server`, on --pg-listen-address); needs the --backup-tls-* files',
    type: 'number',
  },
  backupServerHost: {
    name: 'backup-server-host',
    description:
      'host name other keepers use to reach this keeper\'s pgBackRest TLS server; must be a DNS name in its certificate (pgBackRest ' +
      'checks DNS names only). Default: --pg-advertise-address',
    type: 'string',
  },
  shutdownSwitchoverTimeout: {
    name: 'shutdown-switchover-timeout',
    description:
      'when this keeper is asked to stop (SIGTERM, SIGINT) while it runs the primary and a healthy standby follows it, it first ' +
      'asks the sentinel for a planned switchover and waits up to this long (duration, e.g. 30s) for another keeper to become ' +
      'primary, then stops; without a standby, with the store unreachable, or past it, it stops at once as without it (the ' +
      'sentinel then fails over). Keep it below the time the stop may take (Kubernetes: terminationGracePeriodSeconds) minus ' +
      'a shutdown checkpoint. 0 disables',
    type: 'string',
    default: DEFAULT_SHUTDOWN_SWITCHOVER_TIMEOUT,
  },
  kubePodName: {
    name: 'kube-pod-name',
    description:
      'on Kubernetes, the name of this keeper\'s own pod (downward API metadata.name): the keeper keeps its label ' +
      'stolon-ts/role at primary, standby or none (JSON merge patch; needs RBAC patch on that pod), for a primary-only ' +
      'PodDisruptionBudget and role Services. The API server and namespace come from --kubeconfig, --kube-context and ' +
      '--kube-namespace as for the kubernetes store, else the pod service account, whatever the store backend. Failures are ' +
      'logged once per reason and affect nothing else. Unset: no label',
    type: 'string',
  },
};

/** Stolon's `--pg-su-password` / `--pg-repl-password`: a password on the command line, refused. */
function passwordOnArgv(role: 'su' | 'repl'): StolonOnlyFlag {
  const variable = role === 'su' ? 'STKEEPER_PG_SU_PASSWORD' : 'STKEEPER_PG_REPL_PASSWORD';
  return {
    name: `pg-${role}-password`,
    type: 'string',
    argvOnly: true,
    outcome: () => ({
      error:
        `a password is never taken from the command line, where any local user can read it: put it in a file and pass ` +
        `--pg-${role}-passwordfile (or --pg-${role}-password-file), or set ${variable}`,
    }),
  };
}

/** Stolon's `--pg-su-auth-method` / `--pg-repl-auth-method` (md5 or trust; md5 by default). */
function authMethod(role: 'su' | 'repl'): StolonOnlyFlag {
  const who = role === 'su' ? 'superuser' : 'replication user';
  return {
    name: `pg-${role}-auth-method`,
    type: 'string',
    outcome: (v) =>
      v === 'md5'
        ? { warn: `md5: the ${who} logs in with its password, checked with scram-sha-256 (PostgreSQL's md5 method does the same for scram passwords)` }
        : v === 'trust'
          ? { error: `trust (logins without a password) is not supported: the ${who} always has a password; drop the flag and give --pg-${role}-passwordfile` }
          : { error: `"${String(v)}" is not md5 or trust (Stolon's two methods); drop the flag: the ${who} logs in with its password` },
  };
}

/** Stolon's keeper flags that are not ours under any name (docs/differences-from-stolon.md). */
export const KEEPER_STOLON_FLAGS: readonly StolonOnlyFlag[] = [
  ...DAEMON_STOLON_FLAGS,
  passwordOnArgv('su'),
  passwordOnArgv('repl'),
  authMethod('su'),
  authMethod('repl'),
  {
    name: 'pg-advertise-port',
    type: 'string',
    outcome: (v, argv) =>
      v === '' || Number(v) === argv['pg-port']
        ? {}
        : {
            error:
              `"${String(v)}" differs from --pg-port ${String(argv['pg-port'])}: publishing PostgreSQL on another port than it listens on is not ` +
              'supported; forward the same port, or set --pg-port to the port the others reach',
          },
  },
  {
    name: 'disable-data-dir-locking',
    type: 'boolean',
    outcome: (v) =>
      v === true
        ? { error: 'not supported: the keeper always holds the lock on its data directory (two keepers on one data directory corrupt it); drop the flag' }
        : {},
  },
];
