/**
 * A real etcd for integration and end-to-end tests: Debian's `/usr/bin/etcd` on free ports of
 * 127.0.0.1 (optionally also on extra addresses such as a chaos bridge) with its data in a temp
 * dir, started, health-checked, restartable on the same ports and data, and cleaned up on stop.
 * `startEtcd` runs one member; `startEtcdCluster(n)` runs n members as one cluster, so a chaos
 * test can kill one of three.
 */
import { access, constants, readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { EtcdTestCerts } from './etcd-security.js';
import { freePort } from './ports.js';
import { startProcess, type ProcessHandle } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';
import { scaleTimeout } from './wait.js';

/** The etcd binary the harness runs. */
export const ETCD_BIN = '/usr/bin/etcd';

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** Use this data dir (kept on stop) instead of a fresh temp dir (removed on stop). */
  readonly dataDir?: string;
  /** Process label in logs. @default 'etcd' */
  readonly name?: string;
  /**
   * Extra addresses the client URLs also listen on, besides 127.0.0.1 (e.g. the bridge
   * address of a chaos network, so keepers in namespaces can reach etcd). Must exist on the host.
   */
  readonly listenHosts?: readonly string[];
  /**
   * Serve clients over TLS with `certs` (from `makeEtcdTestCerts`): `https://` client URLs, the
   * server certificate, and `--client-cert-auth` with `--trusted-ca-file` the test CA, so a client
   * without a certificate signed by that CA cannot connect. Peers stay plain http on loopback.
   */
  readonly tls?: EtcdTestCerts;
}

/** A running etcd member. */
export interface EtcdHandle {
  /** Client URLs, e.g. `['http://127.0.0.1:40123']` (`https://` with the `tls` option). */
  readonly endpoints: string[];
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  /** Extra addresses the client URLs listen on besides 127.0.0.1 (same ports). */
  readonly listenHosts: readonly string[];
  /** The current process (a new one after {@link EtcdHandle.restart}). */
  readonly process: ProcessHandle;
  /** Stops etcd (SIGTERM, then SIGKILL) and removes the data dir if the harness created it. */
  stop(): Promise<void>;
  /** SIGKILLs etcd; the data dir stays, so {@link EtcdHandle.restart} can bring it back. */
  kill(): Promise<void>;
  /** Stops etcd if running, then starts it again on the same ports and data dir and waits until healthy. */
  restart(): Promise<void>;
}

async function ensureBinary(): Promise<void> {
  try {
    await access(ETCD_BIN, constants.X_OK);
  } catch {
    throw new Error(`${ETCD_BIN} not found: run \`apt-get install etcd-server\` to install etcd for the tests`);
  }
}

interface HealthAnswer {
  readonly ok: boolean;
  readonly status: number;
  readonly body: string;
}

async function httpHealth(endpoint: string): Promise<HealthAnswer> {
  const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
  return { ok: res.ok, status: res.status, body: await res.text() };
}

/** `GET /health` over TLS with the test client certificate (etcd demands one). */
async function httpsHealth(endpoint: string, tls: EtcdTestCerts): Promise<HealthAnswer> {
  const [ca, cert, key] = await Promise.all([readFile(tls.caFile), readFile(tls.clientCertFile), readFile(tls.clientKeyFile)]);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${endpoint}/health`, { ca, cert, key, timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ ok: (res.statusCode ?? 0) < 300, status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 1000 ms')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls `GET /health` on the client URL until etcd reports healthy.
 * @throws Error with the last log lines when etcd exits or is not healthy in time.
 */
async function waitHealthy(proc: ProcessHandle, endpoint: string, timeoutMs: number, tls?: EtcdTestCerts): Promise<void> {
  const deadline = performance.now() + scaleTimeout(timeoutMs);
  let last = 'no answer yet';
  while (performance.now() < deadline) {
    if (!proc.running()) {
      throw new Error(`etcd exited before becoming healthy; logs:\n${proc.logs().split('\n').slice(-30).join('\n')}`);
    }
    try {
      const res = tls === undefined ? await httpHealth(endpoint) : await httpsHealth(endpoint, tls);
      if (res.ok && /"health"\s*:\s*"true"/.test(res.body)) {
        return;
      }
      last = `HTTP ${res.status} ${res.body}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `etcd at ${endpoint} not healthy after ${scaleTimeout(timeoutMs)} ms (last: ${last}); logs:\n${proc
      .logs()
      .split('\n')
      .slice(-30)
      .join('\n')}`,
  );
}

/** What one member's command line needs. */
interface MemberSpec {
  readonly label: string;
  readonly memberName: string;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly listenHosts: readonly string[];
  /** `name=peerUrl,…` of every member. */
  readonly initialCluster: string;
  /** Extra etcd flags. */
  readonly extraArgs: readonly string[];
  /** TLS with client-certificate auth on the client URLs. */
  readonly tls?: EtcdTestCerts;
}

function clientUrlOf(m: MemberSpec): string {
  return `${m.tls === undefined ? 'http' : 'https'}://127.0.0.1:${m.clientPort}`;
}

function memberArgs(m: MemberSpec): string[] {
  const scheme = m.tls === undefined ? 'http' : 'https';
  const clientUrls = ['127.0.0.1', ...m.listenHosts].map((h) => `${scheme}://${h}:${m.clientPort}`);
  const tlsArgs =
    m.tls === undefined
      ? []
      : [`--cert-file=${m.tls.serverCertFile}`, `--key-file=${m.tls.serverKeyFile}`, '--client-cert-auth', `--trusted-ca-file=${m.tls.caFile}`];
  const peerUrl = `http://127.0.0.1:${m.peerPort}`;
  return [
    `--name=${m.memberName}`,
    `--data-dir=${m.dataDir}`,
    `--listen-client-urls=${clientUrls.join(',')}`,
    `--advertise-client-urls=${clientUrls[0]!}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${m.initialCluster}`,
    '--initial-cluster-state=new',
    '--logger=zap',
    '--log-outputs=stderr',
    ...tlsArgs,
    ...m.extraArgs,
  ];
}

function spawnMember(m: MemberSpec): ProcessHandle {
  return startProcess({
    name: m.label,
    cmd: ETCD_BIN,
    args: memberArgs(m),
    // etcd refuses to start on architectures other than amd64/arm64/ppc64le without this.
    ...(['x64', 'arm64', 'ppc64'].includes(process.arch) ? {} : { env: { ETCD_UNSUPPORTED_ARCH: process.arch } }),
  });
}

/** A member handle over a spec; `waitMs` bounds the health wait of start/restart. */
function memberHandle(m: MemberSpec, first: ProcessHandle, cleanupDir: string | undefined, waitMs: number): EtcdHandle {
  let proc = first;
  const clientUrl = clientUrlOf(m);
  return {
    endpoints: [clientUrl],
    clientPort: m.clientPort,
    peerPort: m.peerPort,
    dataDir: m.dataDir,
    listenHosts: m.listenHosts,
    get process(): ProcessHandle {
      return proc;
    },
    async stop(): Promise<void> {
      await proc.stop('SIGTERM', 10_000);
      if (cleanupDir !== undefined) {
        await removeDir(cleanupDir);
      }
    },
    async kill(): Promise<void> {
      await proc.kill();
    },
    async restart(): Promise<void> {
      await proc.stop('SIGTERM', 10_000);
      proc = spawnMember(m);
      await waitHealthy(proc, clientUrl, waitMs, m.tls);
    },
  };
}

/**
 * Starts a single-member etcd on free ports of 127.0.0.1 (and of `listenHosts`) and waits until
 * it serves requests.
 * @throws Error when `/usr/bin/etcd` is missing (install `etcd-server`) or etcd does not become
 *   healthy within 20 s (scaled).
 */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdHandle> {
  await ensureBinary();
  const ownDir = opts.dataDir === undefined;
  const baseDir = opts.dataDir ?? (await makeTempDir('stolon-etcd-'));
  const dataDir = ownDir ? join(baseDir, 'data') : baseDir;
  const clientPort = await freePort();
  const peerPort = await freePort();
  const memberName = `etcd-${clientPort}`;
  const spec: MemberSpec = {
    label: opts.name ?? 'etcd',
    memberName,
    dataDir,
    clientPort,
    peerPort,
    listenHosts: opts.listenHosts ?? [],
    initialCluster: `${memberName}=http://127.0.0.1:${peerPort}`,
    extraArgs: [],
    ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
  };
  const proc = spawnMember(spec);
  try {
    await waitHealthy(proc, clientUrlOf(spec), 20_000, spec.tls);
  } catch (err) {
    await proc.kill();
    if (ownDir) {
      await removeDir(baseDir);
    }
    throw err;
  }
  return memberHandle(spec, proc, ownDir ? baseDir : undefined, 20_000);
}

/** Options of {@link startEtcdCluster}. */
export interface StartEtcdClusterOptions {
  /** Parent of the members' data dirs (kept on stop) instead of a fresh temp dir (removed on stop). */
  readonly dataDir?: string;
  /** Process label prefix in logs. @default 'etcd' (members are `etcd0`, `etcd1`, …) */
  readonly name?: string;
  /** Extra addresses every member's client URLs also listen on (e.g. a chaos bridge); peers stay on loopback. */
  readonly listenHosts?: readonly string[];
}

/**
 * An etcd cluster of several members used as one store: {@link EtcdHandle.endpoints} lists every
 * member's client URL; `clientPort`, `peerPort`, `dataDir` and `process` are member 0's;
 * `stop`/`kill`/`restart` act on every member. Each member is in `members` for faults.
 */
export interface EtcdClusterHandle extends EtcdHandle {
  readonly members: readonly EtcdHandle[];
  /**
   * Index of the member that is the raft leader now, from each member's `/v3/maintenance/status`
   * (undefined when no live member answers).
   */
  leaderIndex(): Promise<number | undefined>;
}

/**
 * Starts an etcd cluster of `size` members on free loopback ports (client URLs also on
 * `listenHosts`), with a fresh initial cluster token, and waits until every member is healthy.
 * @param size members, 1 to 7 (3 tolerates the loss of one).
 * @throws Error when `size` is out of range, `/usr/bin/etcd` is missing, or a member does not
 *   become healthy within 30 s (scaled); every started member is killed first.
 */
export async function startEtcdCluster(size: number, opts: StartEtcdClusterOptions = {}): Promise<EtcdClusterHandle> {
  if (!Number.isInteger(size) || size < 1 || size > 7) {
    throw new Error(`startEtcdCluster: size must be a whole number from 1 to 7, got ${size}`);
  }
  await ensureBinary();
  const ownDir = opts.dataDir === undefined;
  const baseDir = opts.dataDir ?? (await makeTempDir('stolon-etcd-cluster-'));
  const label = opts.name ?? 'etcd';
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < size; i++) {
    ports.push({ client: await freePort(), peer: await freePort() });
  }
  const names = ports.map((p) => `etcd-${p.client}`);
  const initialCluster = ports.map((p, i) => `${names[i]!}=http://127.0.0.1:${p.peer}`).join(',');
  const token = `stolon-${ports[0]!.client}-${process.pid}`;
  const specs: MemberSpec[] = ports.map((p, i) => ({
    label: `${label}${i}`,
    memberName: names[i]!,
    dataDir: join(baseDir, `member${i}`),
    clientPort: p.client,
    peerPort: p.peer,
    listenHosts: opts.listenHosts ?? [],
    initialCluster,
    extraArgs: [`--initial-cluster-token=${token}`],
  }));
  const procs = specs.map(spawnMember);
  try {
    await Promise.all(procs.map((p, i) => waitHealthy(p, `http://127.0.0.1:${specs[i]!.clientPort}`, 30_000)));
  } catch (err) {
    await Promise.all(procs.map((p) => p.kill()));
    if (ownDir) {
      await removeDir(baseDir);
    }
    throw err;
  }
  // Members are owned by the cluster handle; their own stop() must not remove the shared dir.
  const members = specs.map((s, i) => memberHandle(s, procs[i]!, undefined, 30_000));
  const all = <T>(fn: (m: EtcdHandle) => Promise<T>) => Promise.all(members.map(fn));
  return {
    endpoints: members.flatMap((m) => m.endpoints),
    clientPort: specs[0]!.clientPort,
    peerPort: specs[0]!.peerPort,
    dataDir: baseDir,
    listenHosts: opts.listenHosts ?? [],
    get process(): ProcessHandle {
      return members[0]!.process;
    },
    members,
    async stop(): Promise<void> {
      await all((m) => m.stop());
      if (ownDir) {
        await removeDir(baseDir);
      }
    },
    async kill(): Promise<void> {
      await all((m) => m.kill());
    },
    async restart(): Promise<void> {
      await all((m) => m.process.stop('SIGTERM', 10_000));
      await all((m) => m.restart());
    },
    async leaderIndex(): Promise<number | undefined> {
      const statuses = await Promise.all(
        members.map(async (m) => {
          if (!m.process.running()) {
            return undefined;
          }
          try {
            const res = await fetch(`${m.endpoints[0]!}/v3/maintenance/status`, {
              method: 'POST',
              body: '{}',
              signal: AbortSignal.timeout(1000),
            });
            return (await res.json()) as { header?: { member_id?: string }; leader?: string };
          } catch {
            return undefined;
          }
        }),
      );
      const leader = statuses.find((s) => s?.leader !== undefined)?.leader;
      const i = statuses.findIndex((s) => s?.header?.member_id !== undefined && s.header.member_id === leader);
      return i >= 0 ? i : undefined;
    },
  };
}
