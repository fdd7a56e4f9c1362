/**
 * A local HA cluster on loopback, used both by the README's first command (`npm run cluster`)
 * and by the end-to-end tests: a store (etcd, Debian's binary; or, with `store: 'kubernetes'`, the
 * Kubernetes API stand-in running in this process), N keepers, M sentinels, P proxies, all on
 * 127.0.0.1 free ports, data under one directory. Every process is a child of this one and is
 * stopped by `stop()` (and by the harness's exit hook if the caller dies).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { resolvePgBinDir } from '@stolon-ts/postgres';
import { createStore, type Store } from '@stolon-ts/store';
import { createChaosNetwork, type ChaosNetwork } from './chaos/netns.js';
import { startEtcd, type EtcdHandle } from './etcd.js';
import { startConsulStandin, type ConsulStandin } from './consul-standin.js';
import { startKubeApiServerStandin, writeStandinKubeconfig, type KubeApiServerStandin } from './kube-apiserver-standin.js';
import { makeBackupTls } from './backup-tls.js';
import { freePort } from './ports.js';
import { onHarnessExit, startProcess, type ProcessHandle } from './process.js';
import { startRelay, type RelayHandle } from './relay.js';
import { query } from './sql.js';
import { waitFor } from './wait.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The packages whose compiled modules the keeper's bundle holds (packages/keeper/scripts/bundle.mjs). */
const KEEPER_BUNDLE_INPUTS = ['keeper', 'postgres', 'common', 'store', 'cluster'] as const;

/** The keeper's bundle, which its `dist/bin.js` runs. */
const KEEPER_BUNDLE = join(REPO, 'packages', 'keeper', 'dist', 'stolon-keeper.cjs');

/**
 * Path of a program's built entry point, e.g. `bin('keeper')`.
 * @throws Error for the keeper when its bundle exists but is older than a compile of one of the
 *   packages it bundles (their `dist/.tsbuildinfo`): `tsc -b` ran without the bundle step of
 *   `npm run build`, and the tests would run the keeper as it was before.
 */
export function binPath(component: 'keeper' | 'sentinel' | 'proxy' | 'stolonctl'): string {
  const path = join(REPO, 'packages', component, 'dist', 'bin.js');
  if (component === 'keeper' && existsSync(KEEPER_BUNDLE)) {
    const built = statSync(KEEPER_BUNDLE).mtimeMs;
    const newer = KEEPER_BUNDLE_INPUTS.map((p) => join(REPO, 'packages', p, 'dist', '.tsbuildinfo')).filter((f) => existsSync(f) && statSync(f).mtimeMs > built);
    if (newer.length > 0) {
      throw new Error(`${KEEPER_BUNDLE} is older than ${newer.join(', ')}: the keeper bundle was not rebuilt after tsc -b; run npm run build`);
    }
  }
  return path;
}

/** The store backends a local cluster can run on. */
export type LocalClusterStore = 'etcdv3' | 'kubernetes' | 'consul';

const STORES: readonly LocalClusterStore[] = ['etcdv3', 'kubernetes', 'consul'];

/**
 * The store a local cluster runs on when `LocalClusterOptions.store` is not given:
 * `STOLON_TEST_STORE_BACKEND` (the variable Stolon's integration tests read), else etcdv3.
 * @throws Error when the variable names another backend.
 */
export function defaultTestStore(env: NodeJS.ProcessEnv = process.env): LocalClusterStore {
  const v = env['STOLON_TEST_STORE_BACKEND'];
  if (v === undefined || v === '') {
    return 'etcdv3';
  }
  if (!(STORES as readonly string[]).includes(v)) {
    throw new Error(`STOLON_TEST_STORE_BACKEND=${v}: use one of ${STORES.join(', ')}`);
  }
  return v as LocalClusterStore;
}

/** Namespace of the stolon objects on the Kubernetes API stand-in (`store: 'kubernetes'`). */
const KUBE_NAMESPACE = 'stolon';

export interface LocalClusterOptions {
  /** Directory for all data and logs (created, mode 0755 so the postgres OS user can traverse it). */
  readonly dir: string;
  readonly clusterName?: string;
  /**
   * The store every keeper, sentinel, proxy and `stolonctl` call uses. `'etcdv3'`: an etcd (started
   * by the cluster, or `etcd`). `'kubernetes'`: a Kubernetes API stand-in
   * (`startKubeApiServerStandin`) started by the cluster in this process on a free 127.0.0.1 port,
   * with a kubeconfig `<dir>/kubeconfig` (bearer token, namespace `stolon`), and the programs run
   * with `--store-backend kubernetes --kube-resource-kind configmap --kubeconfig <that file>`; the
   * stand-in is `LocalCluster.kubeApi` and keeps everything in memory, so such a cluster cannot be
   * started again from its directory. Keeper i also runs with `--kube-pod-name stolon-keeper-<i>`
   * (as in deploy/base/keeper.yaml), on a pod object the stand-in holds (labelled
   * `app.kubernetes.io/component: keeper`), so it keeps that pod's `stolon-ts/role` label.
   * With `keeperStoreRelays`, each keeper gets its own kubeconfig whose server is its relay. Not
   * combinable with `etcd`, `network` or `netns` (startLocalCluster throws).
   * `'consul'`: a Consul stand-in (`startConsulStandin`, Consul's default 10 s minimum session
   * TTL) started by the cluster in this process on a free 127.0.0.1 port, `LocalCluster.consul`;
   * the programs run with `--store-backend consul --store-endpoints <its URL>`. Combinable with
   * `keeperStoreRelays` (each keeper's relay leads to the stand-in), not with `etcd`, `network`
   * or `netns`.
   * @default {@link defaultTestStore}: `STOLON_TEST_STORE_BACKEND`, else 'etcdv3'
   */
  readonly store?: LocalClusterStore;
  /** @default 2 */
  readonly keepers?: number;
  /**
   * How many of the `keepers` to start now (the first N, at least 1); start the others later
   * with `startKeeper(i)`, e.g. to time a new keeper joining a loaded primary. @default keepers
   */
  readonly startKeepers?: number;
  /** @default 1 */
  readonly sentinels?: number;
  /** @default 1 */
  readonly proxies?: number;
  /** Fixed proxy port for the first proxy (others and unset: free ports). */
  readonly proxyPort?: number;
  /**
   * Extra flags for every proxy, e.g. `['--max-connections', '3000']`, or for proxy `i` (a
   * function of the index, e.g. a `--uid` each).
   */
  readonly proxyArgs?: readonly string[] | ((i: number) => readonly string[]);
  /**
   * With `store: 'kubernetes'`: the identity proxy `i` talks to the stand-in as, `proxy` (default,
   * deploy's read-write proxies) or `proxy-ro` (deploy's read-only proxies, stolon-proxy-ro, with
   * their own ServiceAccount).
   */
  readonly proxyKubeIdentity?: (i: number) => 'proxy' | 'proxy-ro';
  /** Extra flags for every keeper, e.g. `['--allow-spec-commands', 'data_restore_command']`. */
  readonly keeperArgs?: readonly string[];
  /**
   * Give every keeper a pgBackRest TLS server (`--backup-tls-*`, `--backup-server-port` on a
   * free port, `--backup-server-host localhost`), with a CA and a certificate per keeper (CN: its
   * uid) made by `makeBackupTls`, each accepting every keeper's CN. Backups then come from a
   * standby (also needs `--allow-spec-commands backup` and a spec `backup` section).
   */
  readonly backupTls?: boolean;
  /**
   * Every keeper's `--shutdown-switchover-timeout`. The harness's default is `'0'` (no switchover
   * when a primary's keeper is stopped, unlike the program's default): tests that stop a primary's
   * keeper mean a failover, and `stop()` stops every program at once, so a primary's keeper would
   * otherwise wait for a switchover the stopping sentinel never makes. @default '0'
   */
  readonly shutdownSwitchoverTimeout?: string;
  /**
   * Give every proxy a read-only listener on a free port (`--ro-port`; see
   * `proxies[i].roPort` and `proxyReadOnlyClientConfig`), or only the proxies `i` for which it
   * returns true. Other `--ro-*` flags go in `proxyArgs`.
   */
  readonly proxyReadOnly?: boolean | ((i: number) => boolean);
  /** Cluster spec passed to `stolonctl init`. @default {"initMode":"new"} */
  readonly spec?: Record<string, unknown>;
  /**
   * Use this etcd (one member, or an `EtcdClusterHandle` from `startEtcdCluster`) instead of
   * starting one. With a network, it must listen on the network's host address too.
   */
  readonly etcd?: EtcdHandle;
  /**
   * Run each keeper (and its PostgreSQL) in its own network namespace of this chaos network
   * (node i = keeper i), so `network.cut(i, …)` can partition it. Created by the caller (before
   * etcd, which must listen on `network.hostAddress`) and destroyed by the caller.
   */
  readonly network?: ChaosNetwork;
  /**
   * Create a chaos network with one node per keeper (as `network`, but owned and destroyed by the
   * cluster; a started etcd listens on its host address). Ignored when `network` is given.
   * @default false
   */
  readonly netns?: boolean;
  /** Log level of the components. @default 'info' */
  readonly logLevel?: string;
  /**
   * What "up" means: a writable primary through the proxy (default), a read-only one (a standby
   * cluster), or nothing (the caller waits itself).
   */
  readonly expect?: 'writable' | 'readonly' | 'none';
  /** PostgreSQL binaries. @default what `resolvePgBinDir` finds ($PG_BIN, `pg_config --bindir`, the PostgreSQL 15 default) */
  readonly pgBinPath?: string;
  /**
   * Give every keeper its own cuttable TCP relay to the store (`keepers[i].storeRelay`), to cut one
   * keeper off from the store while everything else still reaches it. Needs a single-member etcd
   * (or a stand-in store).
   * @default false
   */
  readonly keeperStoreRelays?: boolean;
  /**
   * Start every keeper and proxy with failpoints enabled (docs/design.md, "Failpoints"): each has
   * its own directory, `keepers[i].failpointsDir` and `proxies[i].failpointsDir`
   * (`<dir>/failpoints/<keeper uid>`, `<dir>/failpoints/proxy<i>`), so one process at a time can
   * be made to fail. @default false
   */
  readonly failpoints?: boolean;
  /**
   * Give every keeper a member API (`--member-listen-address` on a free port, on its node address
   * in a chaos network) and every keeper and proxy the same member token file, so failsafe mode
   * (the spec's `failsafeMode`, on by default) can keep the primary through a store outage.
   * @default false
   */
  readonly memberApi?: boolean;
  /**
   * With `store: 'kubernetes'`: keep the stand-in's structured request log from the start
   * (`kubeApi.requests()`, each request with the {@link KubeIdentity} that sent it). @default false
   */
  readonly kubeRequestLog?: boolean;
}

export interface KeeperProc {
  readonly uid: string;
  readonly dataDir: string;
  /** Address PostgreSQL listens on: 127.0.0.1, or the node address in a chaos network. */
  readonly pgHost: string;
  readonly pgPort: number;
  /** Port of the keeper's status endpoint on 127.0.0.1 (`--metrics-listen-address`: /healthz, /readyz). */
  readonly statusPort: number;
  /** Port of the keeper's member API (on `pgHost`), with `memberApi`. */
  readonly memberPort?: number;
  /** The keeper's network namespace when the cluster runs in a chaos network. */
  readonly netns?: string;
  process: ProcessHandle;
  /** This keeper's own relay to etcd, with `keeperStoreRelays`. */
  readonly storeRelay?: RelayHandle;
  /** This keeper's failpoint directory (`STOLON_FAILPOINTS_DIR`), with `failpoints`. */
  readonly failpointsDir?: string;
  /** Reads the postmaster pid from PGDATA/postmaster.pid, if any. */
  postmasterPid(): Promise<number | undefined>;
}

/** One proxy of a {@link LocalCluster}. */
interface ProxyProc {
  readonly port: number;
  readonly roPort?: number;
  readonly statusPort: number;
  readonly failpointsDir?: string;
  process: ProcessHandle;
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface LocalCluster {
  readonly clusterName: string;
  /** The store backend the programs use (`LocalClusterOptions.store`). */
  readonly store: LocalClusterStore;
  /**
   * The cluster's etcd (`store: 'etcdv3'`).
   * @throws Error when read on a cluster with `store: 'kubernetes'`, which has no etcd.
   */
  readonly etcd: EtcdHandle;
  /**
   * The Kubernetes API stand-in the programs use (`store: 'kubernetes'`), e.g. to make it hang
   * or refuse with `setUnavailable`.
   * @throws Error when read on a cluster with `store: 'etcdv3'`.
   */
  readonly kubeApi: KubeApiServerStandin;
  /**
   * The Consul stand-in the programs use (`store: 'consul'`), e.g. to make it hang or refuse
   * with `setFault`.
   * @throws Error when read on a cluster with another store.
   */
  readonly consul: ConsulStandin;
  readonly keepers: KeeperProc[];
  /** Current sentinel processes (an entry is replaced by {@link LocalCluster.startSentinel}). */
  readonly sentinels: ProcessHandle[];
  /**
   * Port of each sentinel's status endpoint on 127.0.0.1 (`--metrics-listen-address`: /healthz,
   * /readyz), by index; kept when {@link LocalCluster.startSentinel} restarts it.
   */
  readonly sentinelStatusPorts: readonly number[];
  /**
   * Proxies; `process` is replaced by {@link LocalCluster.startProxy}. `statusPort`: the proxy's
   * status endpoint on 127.0.0.1 (`--metrics-listen-address`: /healthz, /readyz, and with a
   * read-only listener /readyz/read-only).
   */
  readonly proxies: ProxyProc[];
  /** The chaos network the keepers run in, if any. */
  readonly network: ChaosNetwork | undefined;
  /** The member API token file every keeper and proxy reads with `memberApi` (for `stolonctl status --member-token-file`). */
  readonly memberTokenFile: string;
  readonly suPasswordFile: string;
  readonly replPasswordFile: string;
  /** Superuser password (tests need it to connect); the new one after {@link rewritePasswords}. */
  readonly suPassword: string;
  /**
   * Replaces the content of the password files every keeper reads (`--pg-su-password-file`,
   * `--pg-repl-password-file`) the way kubelet updates a mounted Secret: a new file renamed over
   * the old one, so a keeper never reads half of it. From then on {@link suPassword} and the
   * client configs use the new superuser password.
   */
  rewritePasswords(next: { readonly su?: string; readonly repl?: string }): Promise<void>;
  /**
   * Common flags for any program: cluster name and store (`--store-backend etcdv3
   * --store-endpoints …`, or `--store-backend kubernetes --kube-resource-kind configmap
   * --kubeconfig <dir>/kubeconfig`).
   */
  storeFlags(): string[];
  /**
   * Runs stolonctl with the store flags prepended; with the kubernetes store, `as` picks the
   * identity it talks to the stand-in as (default `stolonctl`, the kubeconfig's current context).
   */
  stolonctl(args: readonly string[], stdin?: string, as?: KubeIdentity): Promise<CommandResult>;
  /**
   * Makes the store fail for every program, whatever the backend: `'down'` (etcd SIGKILLed; a
   * stand-in refuses every connection), `'frozen'` (etcd SIGSTOPped; a stand-in accepts requests
   * and never answers), `null` (back: etcd restarted or resumed, the stand-in answers again).
   */
  storeFault(mode: 'down' | 'frozen' | null): Promise<void>;
  /** A store client of the test's own on this cluster's store (the caller closes it). */
  openStore(): Promise<Store>;
  /** A `pg` client config through the proxy at index `i`. */
  proxyClientConfig(i?: number): pg.ClientConfig;
  /** A `pg` client config through the read-only listener of proxy `i` (needs `proxyReadOnly`). */
  proxyReadOnlyClientConfig(i?: number): pg.ClientConfig;
  /** A `pg` client config straight to keeper `i`'s PostgreSQL, as superuser. */
  directClientConfig(i: number): pg.ClientConfig;
  /** Index of the keeper whose PostgreSQL is a primary now (not in recovery), or -1. */
  primaryIndex(): Promise<number>;
  /** Starts (again) keeper `i` with the same uid, port and data dir. */
  startKeeper(i: number): Promise<void>;
  /** Starts sentinel `i` again (a new process, hence a new sentinel uid) after it died or was killed. */
  startSentinel(i: number): Promise<void>;
  /**
   * Starts proxy `i` again on the same port after it died or was killed, and waits until it
   * listens (its "proxy listening on" log line) unless `waitListening` is false.
   */
  startProxy(i: number, opts?: { readonly waitListening?: boolean }): Promise<void>;
  /** SIGKILLs keeper `i` and its postmaster (the whole "node" dies). */
  killKeeperNode(i: number): Promise<void>;
  /** All captured component logs. */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Throws when `opts` combines `store: 'kubernetes'` with an etcd-only option.
 * @throws Error naming the option.
 */
function checkStoreOptions(opts: LocalClusterOptions): void {
  const store = opts.store ?? defaultTestStore();
  if (!STORES.includes(store)) {
    throw new Error(`store must be one of ${STORES.join(', ')}, got ${JSON.stringify(store)}`);
  }
  if (store === 'etcdv3') {
    return;
  }
  const etcdOnly = [
    opts.etcd !== undefined ? 'etcd' : undefined,
    opts.network !== undefined ? 'network' : undefined,
    opts.netns === true ? 'netns' : undefined,
  ].filter((o): o is string => o !== undefined);
  if (etcdOnly.length > 0) {
    throw new Error(
      `store: '${store}' cannot be combined with ${etcdOnly.join(', ')}: ${etcdOnly.length === 1 ? 'that option needs' : 'those options need'} ` +
        `an etcd cluster (the ${store === 'kubernetes' ? 'Kubernetes API' : 'Consul'} stand-in listens on 127.0.0.1 only); use store: 'etcdv3'`,
    );
  }
}

/**
 * Who talks to the Kubernetes API stand-in: each program with its own bearer token (as each
 * component of deploy/ has its own ServiceAccount), `init` being the first `stolonctl init` (as
 * the deploy's init Job runs it), `stolonctl` every other `stolonctl` call, and `proxy-ro` the
 * proxies {@link LocalClusterOptions.proxyKubeIdentity} gives it (deploy's read-only proxies), and
 * `backup` the `stolonctl` calls made as deploy's backup CronJobs (`LocalCluster.stolonctl`'s `as`).
 */
export type KubeIdentity = 'keeper' | 'sentinel' | 'proxy' | 'proxy-ro' | 'init' | 'stolonctl' | 'backup';

const KUBE_IDENTITIES: readonly KubeIdentity[] = ['stolonctl', 'keeper', 'sentinel', 'proxy', 'proxy-ro', 'init', 'backup'];

/**
 * Starts a Kubernetes API stand-in and writes `<dir>/kubeconfig` for it (namespace
 * {@link KUBE_NAMESPACE}): one random bearer token, user and context per {@link KubeIdentity}, the
 * stand-in's user being the identity's name; the current context is `stolonctl`'s.
 * @returns the stand-in, the kubeconfig, and the context of each identity
 * @throws the stand-in's listen error or the write error; the stand-in is stopped then.
 */
async function startKubeStandin(
  dir: string,
  logRequests: boolean,
): Promise<{ api: KubeApiServerStandin; kubeconfig: string; tokens: readonly string[]; context: Readonly<Record<KubeIdentity, string>> }> {
  const tokens = KUBE_IDENTITIES.map((who) => `${who}-${randomBytes(16).toString('hex')}`);
  const users = Object.fromEntries(tokens.map((t, i) => [t, KUBE_IDENTITIES[i]!]));
  const context = Object.fromEntries(tokens.map((t, i) => [KUBE_IDENTITIES[i]!, `ctx-${t}`])) as Record<KubeIdentity, string>;
  // The namespace exists before anything is created in it, as an operator's `kubectl create namespace`.
  const api = await startKubeApiServerStandin({ users, logRequests, namespaces: [KUBE_NAMESPACE] });
  try {
    const kubeconfig = await writeStandinKubeconfig(join(dir, 'kubeconfig'), api.url, { namespace: KUBE_NAMESPACE, tokens });
    return { api, kubeconfig, tokens, context };
  } catch (err) {
    await api.stop();
    throw err;
  }
}

/**
 * The spec `stolonctl init` gets: `spec` (default `{"initMode":"new"}`); in a chaos network,
 * unless the spec says otherwise, `suAllowedCIDRs` admits the superuser from the host address,
 * where the proxies and the test's own connections come from (the keepers are elsewhere).
 */
function initSpec(spec: Record<string, unknown> | undefined, network: ChaosNetwork | undefined): Record<string, unknown> {
  const base = spec ?? { initMode: 'new' };
  return network === undefined || 'suAllowedCIDRs' in base ? base : { ...base, suAllowedCIDRs: [`${network.hostAddress}/32`] };
}

/** Runs a node program and collects its output. */
export function runNode(script: string, args: readonly string[], stdin?: string, env?: NodeJS.ProcessEnv): Promise<CommandResult> {
  return new Promise((res) => {
    const child = execFile(
      process.execPath,
      [script, ...args],
      { env: env ?? process.env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
        res({ code, stdout, stderr });
      },
    );
    if (stdin !== undefined) {
      child.stdin?.end(stdin);
    } else {
      child.stdin?.end();
    }
  });
}

/**
 * Sends `signal` to the pid in the first line of `pidFile` if that process's command line contains
 * `mark` (so a stale file whose pid was reused is harmless). Synchronous, for the exit hook.
 */
function killOwnedBySync(pidFile: string, mark: string, signal: NodeJS.Signals): void {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').includes(mark)) {
      process.kill(pid, signal);
    }
  } catch {
    // No file, no such process, or it is gone.
  }
}

/**
 * Starts a local cluster and waits until a query through the first proxy succeeds.
 * @throws Error with component logs when the cluster does not come up within 120 s (scaled).
 * @throws ConfigError when `pgBinPath` (or the resolved default) holds no `postgres` (`resolvePgBinDir`).
 * @throws Error before anything starts when a stand-in store (`kubernetes`, `consul`) is combined
 *   with `etcd`, `network` or `netns` (naming them), or `store` is not a known backend.
 */
export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  checkStoreOptions(opts);
  const storeKind = opts.store ?? defaultTestStore();
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const clusterName = opts.clusterName ?? 'stolon-local';
  const logLevel = opts.logLevel ?? 'info';
  const pgBinPath = resolvePgBinDir({ flag: opts.pgBinPath });
  const logFile = join(dir, 'cluster.log');
  const procs: ProcessHandle[] = [];
  const ownNetwork = opts.network === undefined && opts.netns === true;
  const nKeepers = opts.keepers ?? 2;
  const network = opts.network ?? (opts.netns === true ? await createChaosNetwork({ nodes: nKeepers }) : undefined);
  if (network !== undefined && network.nodes.length < nKeepers) {
    throw new Error(`the chaos network has ${network.nodes.length} nodes for ${nKeepers} keepers`);
  }
  if (network !== undefined && opts.etcd !== undefined && !opts.etcd.listenHosts.includes(network.hostAddress)) {
    throw new Error(
      `etcd must also listen on the chaos network's host address ${network.hostAddress} (start it with listenHosts: ['${network.hostAddress}'])`,
    );
  }
  const ownEtcd = opts.etcd === undefined;
  let etcd: EtcdHandle | undefined;
  let consul: ConsulStandin | undefined;
  let kube: { readonly api: KubeApiServerStandin; readonly kubeconfig: string; readonly tokens: readonly string[]; readonly context: Readonly<Record<KubeIdentity, string>> } | undefined;
  try {
    if (storeKind === 'kubernetes') {
      kube = await startKubeStandin(dir, opts.kubeRequestLog === true);
    } else if (storeKind === 'consul') {
      consul = await startConsulStandin();
    } else {
      etcd =
        opts.etcd ??
        (await startEtcd({ dataDir: join(dir, 'etcd'), name: 'etcd', ...(network !== undefined ? { listenHosts: [network.hostAddress] } : {}) }));
    }
  } catch (err) {
    if (ownNetwork) {
      await network?.destroy();
    }
    throw err;
  }
  const etcdOnly = (what: string): EtcdHandle => {
    if (etcd === undefined) {
      throw new Error(
        `${what}: this cluster runs on the ${storeKind === 'consul' ? "Consul stand-in (store: 'consul'), not on etcd; use cluster.consul" : "Kubernetes API stand-in (store: 'kubernetes'), not on etcd; use cluster.kubeApi"}`,
      );
    }
    return etcd;
  };

  const secret = async (name: string, bytes = 12): Promise<[string, string]> => {
    const file = join(dir, name);
    let value: string;
    if (existsSync(file)) {
      value = (await readFile(file, 'utf8')).trim();
    } else {
      value = randomBytes(bytes).toString('hex');
      await writeFile(file, `${value}\n`, { mode: 0o600 });
    }
    return [file, value];
  };
  const [suPasswordFile, initialSuPassword] = await secret('su-password');
  let suPassword = initialSuPassword;
  const [replPasswordFile] = await secret('repl-password');
  const [memberTokenFile] = await secret('member-token', 32);

  const storeFlags = (endpoints?: string): string[] =>
    kube !== undefined
      ? ['--cluster-name', clusterName, '--store-backend', 'kubernetes', '--kube-resource-kind', 'configmap', '--kubeconfig', endpoints === undefined ? kube.kubeconfig : (relayKubeconfigs.get(endpoints) ?? kube.kubeconfig)]
      : consul !== undefined
        ? ['--cluster-name', clusterName, '--store-backend', 'consul', '--store-endpoints', endpoints ?? consul.url]
        : ['--cluster-name', clusterName, '--store-backend', 'etcdv3', '--store-endpoints', endpoints ?? etcdOnly('storeFlags').endpoints.join(',')];
  /** The kubeconfig context of `who` (kubernetes store), after the store flags. */
  const identityFlags = (who: KubeIdentity): string[] => (kube !== undefined ? ['--kube-context', kube.context[who]] : []);
  const relays: RelayHandle[] = [];
  /** Kubernetes store: the kubeconfig that leads through each keeper's relay, by relay URL. */
  const relayKubeconfigs = new Map<string, string>();
  /** Keepers in namespaces reach etcd on the bridge address (same ports). */
  const nodeStoreFlags = () =>
    network === undefined
      ? storeFlags()
      : storeFlags(etcdOnly('a keeper in a chaos network').endpoints.map((u) => u.replace('//127.0.0.1:', `//${network.hostAddress}:`)).join(','));
  /**
   * Starts a component; `netnsPrefix` runs it in a chaos network namespace, `endpoints` (a keeper's
   * store relay) overrides the etcd endpoints, `identity` the component's own Kubernetes identity.
   */
  const spawn = (
    name: string,
    component: 'keeper' | 'sentinel' | 'proxy',
    args: string[],
    netnsPrefix: string[] = [],
    endpoints?: string,
    failpointsDir?: string,
    identity: KubeIdentity = component,
  ): ProcessHandle => {
    // `ip netns exec` execs the command, so the handle's pid is the program's own pid.
    const flags = endpoints !== undefined ? storeFlags(endpoints) : netnsPrefix.length > 0 ? nodeStoreFlags() : storeFlags();
    const argv = [process.execPath, binPath(component), ...flags, ...identityFlags(identity), '--log-level', logLevel, ...args];
    const p = startProcess({
      name,
      cmd: netnsPrefix[0] ?? argv[0]!,
      args: netnsPrefix.length > 0 ? [...netnsPrefix.slice(1), ...argv] : argv.slice(1),
      logFile,
      ...(failpointsDir !== undefined ? { env: { STOLON_FAILPOINTS_DIR: failpointsDir } } : {}),
    });
    procs.push(p);
    return p;
  };
  const stolonctl = (args: readonly string[], stdin?: string, as?: KubeIdentity): Promise<CommandResult> =>
    runNode(binPath('stolonctl'), [...storeFlags(), ...(as !== undefined ? identityFlags(as) : []), ...args], stdin);

  // A test that times out inside startLocalCluster never gets the cluster to stop: when its
  // worker exits, the group kill ends etcd, keepers and proxies, and this ends what runs in its
  // own session (postmasters, fencers).
  const forgetExitCleanup = onHarnessExit(() => {
    for (const k of keepers) {
      killOwnedBySync(join(k.dataDir, 'postgres', 'postmaster.pid'), join(k.dataDir, 'postgres'), 'SIGQUIT');
      killOwnedBySync(join(k.dataDir, 'fencer.pid'), 'fencer-bin', 'SIGKILL');
    }
  });
  const cleanup = async () => {
    await Promise.allSettled(procs.filter((p) => p.running()).map((p) => p.stop('SIGTERM', 20_000)));
    // Keepers stop their postgres on SIGTERM; kill any postmaster left by a SIGKILLed keeper.
    await Promise.allSettled(keepers.map(async (k) => {
      const pid = await k.postmasterPid();
      if (pid !== undefined) {
        try { process.kill(pid, 'SIGQUIT'); } catch { /* gone */ }
      }
      // The fencer runs in its own session, out of reach of the group kill: a SIGKILLed keeper's
      // fencer must not outlive the test (it would exit by itself within its lease's TTL).
      const fencer = Number((await readFile(join(k.dataDir, 'fencer.pid'), 'utf8').catch(() => '')).trim());
      if (Number.isInteger(fencer) && fencer > 0) {
        const cmdline = await readFile(`/proc/${fencer}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.includes('fencer-bin')) {
          try { process.kill(fencer, 'SIGKILL'); } catch { /* gone */ }
        }
      }
    }));
    await Promise.allSettled(relays.map((r) => r.close()));
    if (ownEtcd) {
      await etcd?.stop();
    }
    await kube?.api.stop();
    await consul?.close();
    if (ownNetwork) {
      await network?.destroy();
    }
    forgetExitCleanup();
  };

  const keepers: KeeperProc[] = [];
  try {
    if (kube !== undefined) {
      // The keepers' pods, as the StatefulSet would make them, for their role label.
      for (let i = 0; i < nKeepers; i++) {
        kube.api.putObject('pods', KUBE_NAMESPACE, { metadata: { name: `stolon-keeper-${i}`, labels: { 'app.kubernetes.io/component': 'keeper' } } });
      }
      // The stand-in starts empty: initialise as the deploy's init Job does, with its identity
      // (`stolonctl spec` to see whether the cluster exists, then `init` without --yes).
      const initFlags = [...storeFlags(), ...identityFlags('init')];
      const existing = await runNode(binPath('stolonctl'), [...initFlags, 'spec']);
      const init = existing.code === 0 ? existing : await runNode(binPath('stolonctl'), [...initFlags, 'init', JSON.stringify(initSpec(opts.spec, network))]);
      if (init.code !== 0) {
        throw new Error(`stolonctl init failed (${init.code}): ${init.stderr}`);
      }
    } else if ((await runNode(binPath('stolonctl'), [...storeFlags(), 'status', '--format', 'json'])).code !== 0) {
      const init = await stolonctl(['init', '--yes', JSON.stringify(initSpec(opts.spec, network))]);
      if (init.code !== 0) {
        throw new Error(`stolonctl init failed (${init.code}): ${init.stderr}`);
      }
    }
    const portsFile = join(dir, 'ports.json');
    const savedPorts = existsSync(portsFile) ? (JSON.parse(await readFile(portsFile, 'utf8')) as Record<string, number>) : {};
    for (let i = 0; i < nKeepers; i++) {
      const uid = `keeper${i}`;
      const pgPort = savedPorts[uid] ?? (await freePort());
      savedPorts[uid] = pgPort;
      const statusPort = savedPorts[`${uid}-status`] ?? (await freePort());
      savedPorts[`${uid}-status`] = statusPort;
      const memberPort = opts.memberApi === true ? (savedPorts[`${uid}-member`] ?? (await freePort())) : undefined;
      if (memberPort !== undefined) {
        savedPorts[`${uid}-member`] = memberPort;
      }
      const dataDir = join(dir, uid);
      let storeRelay: RelayHandle | undefined;
      if (opts.keeperStoreRelays === true) {
        const endpoints = consul !== undefined ? [consul.url] : kube !== undefined ? [kube.api.url] : etcdOnly('keeperStoreRelays').endpoints;
        if (endpoints.length !== 1) {
          throw new Error('keeperStoreRelays needs a single-member etcd');
        }
        storeRelay = await startRelay(Number(new URL(endpoints[0]!).port));
        relays.push(storeRelay);
        if (kube !== undefined) {
          const url = `http://127.0.0.1:${storeRelay.port}`;
          relayKubeconfigs.set(url, await writeStandinKubeconfig(join(dir, `kubeconfig-${uid}-relay`), url, { namespace: KUBE_NAMESPACE, tokens: kube.tokens }));
        }
      }
      const node = network?.nodes[i];
      const failpointsDir = opts.failpoints === true ? join(dir, 'failpoints', uid) : undefined;
      if (failpointsDir !== undefined) {
        await mkdir(failpointsDir, { recursive: true });
      }
      keepers.push({
        uid,
        dataDir,
        ...(failpointsDir !== undefined ? { failpointsDir } : {}),
        pgHost: node?.address ?? '127.0.0.1',
        pgPort,
        ...(storeRelay !== undefined ? { storeRelay } : {}),
        statusPort,
        ...(memberPort !== undefined ? { memberPort } : {}),
        ...(node !== undefined ? { netns: node.netns } : {}),
        process: undefined as unknown as ProcessHandle,
        postmasterPid: async () => {
          try {
            const text = await readFile(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
            const pid = Number(text.split('\n')[0]);
            return Number.isInteger(pid) && pid > 0 ? pid : undefined;
          } catch {
            return undefined;
          }
        },
      });
    }
    const backupTls = opts.backupTls === true ? await makeBackupTls(join(dir, 'backup-tls'), keepers.map((k) => k.uid)) : undefined;
    const backupTlsArgs = async (uid: string): Promise<string[]> => {
      const files = backupTls?.keepers[uid];
      if (backupTls === undefined || files === undefined) {
        return [];
      }
      const port = savedPorts[`${uid}-backup`] ?? (await freePort());
      savedPorts[`${uid}-backup`] = port;
      return ['--backup-tls-cert-file', files.certFile, '--backup-tls-key-file', files.keyFile, '--backup-tls-ca-file', backupTls.caFile,
        '--backup-tls-client-cns', keepers.map((k) => k.uid).join(','), '--backup-server-port', String(port), '--backup-server-host', 'localhost'];
    };
    const keeperTlsArgs: string[][] = [];
    for (const k of keepers) {
      keeperTlsArgs.push(await backupTlsArgs(k.uid));
    }
    await writeFile(portsFile, JSON.stringify(savedPorts));
    const startKeeper = async (i: number) => {
      const k = keepers[i];
      if (k === undefined) {
        throw new Error(`no keeper ${i}`);
      }
      k.process = spawn(`keeper ${k.uid}`, 'keeper', [
        '--uid', k.uid,
        '--data-dir', k.dataDir,
        '--pg-listen-address', k.pgHost,
        '--pg-port', String(k.pgPort),
        '--pg-bin-path', pgBinPath,
        '--pg-su-password-file', suPasswordFile,
        '--pg-repl-password-file', replPasswordFile,
        '--metrics-listen-address', `127.0.0.1:${k.statusPort}`,
        ...(k.memberPort !== undefined ? ['--member-listen-address', `${k.pgHost}:${k.memberPort}`, '--member-token-file', memberTokenFile] : []),
        '--shutdown-switchover-timeout', opts.shutdownSwitchoverTimeout ?? '0',
        ...(kube !== undefined ? ['--kube-pod-name', `stolon-keeper-${i}`] : []),
        ...(keeperTlsArgs[i] ?? []),
        ...(opts.keeperArgs ?? []),
      ], network?.execPrefix(i) ?? [], k.storeRelay === undefined ? undefined : `http://127.0.0.1:${k.storeRelay.port}`, k.failpointsDir);
      await k.process.waitForLog('keeper started', 30_000);
    };
    const sentinels: ProcessHandle[] = [];
    const sentinelStatusPorts: number[] = [];
    const sentinelArgs = (i: number): string[] => ['--metrics-listen-address', `127.0.0.1:${sentinelStatusPorts[i] ?? 0}`];
    for (let i = 0; i < (opts.sentinels ?? 1); i++) {
      sentinelStatusPorts.push(await freePort());
      sentinels.push(spawn(`sentinel ${i}`, 'sentinel', sentinelArgs(i)));
    }
    const nStart = opts.startKeepers ?? nKeepers;
    if (!Number.isInteger(nStart) || nStart < 1 || nStart > nKeepers) {
      throw new Error(`startKeepers must be an integer from 1 to keepers (${nKeepers}), got ${nStart}`);
    }
    await Promise.all(keepers.slice(0, nStart).map((_, i) => startKeeper(i)));
    const proxies: ProxyProc[] = [];
    const proxyArgs = (i: number, port: number, roPort: number | undefined, statusPort: number): string[] => [
      '--listen-address', '127.0.0.1', '--port', String(port), '--metrics-listen-address', `127.0.0.1:${statusPort}`,
      ...(roPort === undefined ? [] : ['--ro-port', String(roPort)]),
      ...(opts.memberApi === true ? ['--member-token-file', memberTokenFile] : []),
      ...(typeof opts.proxyArgs === 'function' ? opts.proxyArgs(i) : (opts.proxyArgs ?? [])),
    ];
    const proxyIdentity = (i: number): KubeIdentity => opts.proxyKubeIdentity?.(i) ?? 'proxy';
    const proxyFailpoints = (i: number): string | undefined => (opts.failpoints === true ? join(dir, 'failpoints', `proxy${i}`) : undefined);
    for (let i = 0; i < (opts.proxies ?? 1); i++) {
      const fpDir = proxyFailpoints(i);
      if (fpDir !== undefined) {
        await mkdir(fpDir, { recursive: true });
      }
      const port = i === 0 && opts.proxyPort !== undefined ? opts.proxyPort : await freePort();
      const readOnly = typeof opts.proxyReadOnly === 'function' ? opts.proxyReadOnly(i) : opts.proxyReadOnly === true;
      const roPort = readOnly ? await freePort() : undefined;
      const statusPort = await freePort();
      proxies.push({
        port,
        ...(roPort === undefined ? {} : { roPort }),
        statusPort,
        ...(fpDir !== undefined ? { failpointsDir: fpDir } : {}),
        process: spawn(`proxy ${i}`, 'proxy', proxyArgs(i, port, roPort, statusPort), [], undefined, fpDir, proxyIdentity(i)),
      });
    }
    const proxyClientConfig = (i = 0): pg.ClientConfig => ({
      host: '127.0.0.1',
      port: proxies[i]?.port ?? 0,
      user: 'postgres',
      password: suPassword,
      database: 'postgres',
      connectionTimeoutMillis: 3000,
    });
    const proxyReadOnlyClientConfig = (i = 0): pg.ClientConfig => {
      const roPort = proxies[i]?.roPort;
      if (roPort === undefined) {
        throw new Error(`proxy ${i} has no read-only listener: start the cluster with proxyReadOnly true (for proxy ${i})`);
      }
      return { ...proxyClientConfig(i), port: roPort };
    };
    const directClientConfig = (i: number): pg.ClientConfig => ({
      host: keepers[i]?.pgHost ?? '127.0.0.1',
      port: keepers[i]?.pgPort ?? 0,
      user: 'postgres',
      password: suPassword,
      database: 'postgres',
      connectionTimeoutMillis: 3000,
    });
    const expect = opts.expect ?? 'writable';
    if (expect !== 'none') {
      await waitFor(
        async () => {
          const c = new pg.Client(proxyClientConfig(0));
          c.on('error', () => undefined); // a FATAL while idle; a query in flight still rejects
          try {
            await c.connect();
            const r = await c.query('select pg_is_in_recovery() as r');
            return r.rows[0]?.r === (expect === 'readonly') ? true : undefined;
          } finally {
            await c.end().catch(() => undefined);
          }
        },
        { timeoutMs: 120_000, what: `a ${expect} primary through the proxy`, intervalMs: 500 },
      );
    }
    const kubeApi = kube?.api;
    let storeDown = false;
    const consulApi = consul;
    const cluster: LocalCluster = {
      clusterName,
      store: storeKind,
      get etcd(): EtcdHandle {
        return etcdOnly('cluster.etcd');
      },
      get kubeApi(): KubeApiServerStandin {
        if (kubeApi === undefined) {
          throw new Error("cluster.kubeApi: this cluster runs on etcd (store: 'etcdv3'); start it with store: 'kubernetes' for the Kubernetes API stand-in");
        }
        return kubeApi;
      },
      storeFault: async (mode) => {
        if (kubeApi !== undefined) {
          kubeApi.setUnavailable(mode === 'down' ? 'refuse' : mode === 'frozen' ? 'hang' : false);
        } else if (consulApi !== undefined) {
          await consulApi.setFault(mode === 'down' ? 'refuse' : mode === 'frozen' ? 'hang' : null);
        } else {
          const e = etcdOnly('storeFault');
          if (mode === 'down') {
            storeDown = true;
            await e.kill();
          } else if (mode === 'frozen') {
            e.process.pause();
          } else if (storeDown) {
            storeDown = false;
            await e.restart();
          } else {
            e.process.resume();
          }
        }
      },
      openStore: () =>
        kube !== undefined
          ? createStore({ backend: 'kubernetes', endpoints: [], clusterName, kubeResourceKind: 'configmap', kubeconfig: kube.kubeconfig })
          : createStore({ backend: storeKind, endpoints: consulApi !== undefined ? [consulApi.url] : etcdOnly('openStore').endpoints, clusterName }),
      get consul(): ConsulStandin {
        if (consulApi === undefined) {
          throw new Error(`cluster.consul: this cluster runs on ${storeKind}; start it with store: 'consul' for the Consul stand-in`);
        }
        return consulApi;
      },
      keepers,
      sentinels,
      sentinelStatusPorts,
      proxies,
      network,
      memberTokenFile,
      suPasswordFile,
      replPasswordFile,
      get suPassword(): string {
        return suPassword;
      },
      rewritePasswords: async (next) => {
        for (const [file, value] of [[suPasswordFile, next.su], [replPasswordFile, next.repl]] as const) {
          if (value !== undefined) {
            await writeFile(`${file}.new`, `${value}\n`, { mode: 0o600 });
            await rename(`${file}.new`, file);
          }
        }
        suPassword = next.su ?? suPassword;
      },
      storeFlags,
      stolonctl,
      proxyClientConfig,
      proxyReadOnlyClientConfig,
      directClientConfig,
      primaryIndex: async () => {
        for (let i = 0; i < keepers.length; i++) {
          try {
            if ((await query<{ r: boolean }>(directClientConfig(i), 'select pg_is_in_recovery() as r'))[0]?.r === false) {
              return i;
            }
          } catch {
            /* down or restarting */
          }
        }
        return -1;
      },
      startKeeper,
      startSentinel: async (i) => {
        const old = sentinels[i];
        if (old === undefined) {
          throw new Error(`no sentinel ${i}`);
        }
        if (old.running()) {
          throw new Error(`sentinel ${i} is still running (pid ${old.pid})`);
        }
        sentinels[i] = spawn(`sentinel ${i}`, 'sentinel', sentinelArgs(i));
        await sentinels[i].waitForLog('sentinel started', 30_000);
      },
      startProxy: async (i, startOpts) => {
        const px = proxies[i];
        if (px === undefined) {
          throw new Error(`no proxy ${i}`);
        }
        if (px.process.running()) {
          throw new Error(`proxy ${i} is still running (pid ${px.process.pid})`);
        }
        px.process = spawn(`proxy ${i}`, 'proxy', proxyArgs(i, px.port, px.roPort, px.statusPort), [], undefined, px.failpointsDir, proxyIdentity(i));
        if (startOpts?.waitListening !== false) {
          await px.process.waitForLog('proxy listening on', 30_000);
        }
      },
      killKeeperNode: async (i) => {
        const k = keepers[i];
        if (k === undefined) {
          throw new Error(`no keeper ${i}`);
        }
        const pid = await k.postmasterPid();
        await k.process.kill();
        if (pid !== undefined) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      },
      logs: () => procs.map((p) => p.logs()).join('\n'),
      stop: cleanup,
    };
    return cluster;
  } catch (err) {
    const logs = procs.map((p) => p.logs().split('\n').slice(-40).join('\n')).join('\n');
    await cleanup();
    throw new Error(`local cluster did not start: ${(err as Error).message}\n--- last component logs ---\n${logs}`, { cause: err });
  }
}
