/**
 * Patroni 3.0.2 (Debian's `patroni` package) as a baseline for `bench:failover`,
 * `bench:store-outage` and `bench:switchover` (`patronictl switchover`), and as an independent client of the harness's Consul stand-in
 * (test/e2e/consul-standin-patroni.backends.test.ts): two Patroni
 * nodes on loopback ports over a single-member etcd (Patroni's `etcd3` API) or a given Consul
 * (`dcs`), PostgreSQL 15 from
 * the same binaries stolon uses, run as the `postgres` OS user, and HAProxy in TCP mode routing
 * to whichever node answers `GET /primary` with 200 on Patroni's REST port — the way Patroni's
 * documentation has users reach the primary (its sample haproxy.cfg: `http-check expect status
 * 200`, `default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions`).
 *
 * Faults: SIGKILL of the leader's Patroni process and its postmaster (the node dies; heal =
 * start that Patroni again, which rejoins with pg_rewind, or re-clones if that fails), and
 * SIGKILL of the leader's postmaster alone (Patroni restarts it in place, or fails over after
 * `primary_start_timeout`).
 */
import { execFile } from 'node:child_process';
import { appendFile, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { resolvePgBinDir } from '@stolon-ts/postgres';
import { freePort, query, startEtcd, startProcess, type EtcdHandle, type ProcessHandle } from '@stolon-ts/harness';
import { osIdentity } from './common.js';

/** Patroni's timing settings (bootstrap.dcs), seconds. */
export interface PatroniTimings {
  readonly ttl: number;
  readonly loopWait: number;
  readonly retryTimeout: number;
}

/** Patroni's defaults: `ttl` 30 s, `loop_wait` 10 s, `retry_timeout` 10 s. */
export const PATRONI_DEFAULT: PatroniTimings = { ttl: 30, loopWait: 10, retryTimeout: 10 };

/** HAProxy's health-check timing for the Patroni backends. */
export interface HaproxyChecks {
  /** `inter`, ms. */
  readonly interMs: number;
  readonly fall: number;
  readonly rise: number;
}

/** Patroni's documented HAProxy sample (docs/haproxy.cfg, Debian's examples/haproxy.cfg): `inter 3s fall 3 rise 2`. */
export const HAPROXY_DEFAULT: HaproxyChecks = { interMs: 3000, fall: 3, rise: 2 };

/** Options of {@link startPatroniEnv}. */
export interface PatroniEnvOptions {
  readonly dir: string;
  readonly timings: PatroniTimings;
  /** HAProxy's checks, or null to run no HAProxy (then {@link PatroniEnv.clientConfig} throws). */
  readonly haproxy: HaproxyChecks | null;
  /** @default what `resolvePgBinDir` finds */
  readonly pgBinPath?: string;
  /**
   * Patroni's failsafe mode (`failsafe_mode: true` in bootstrap.dcs): with the DCS unreachable the
   * leader stays primary while every member answers its `POST /failsafe`. @default false
   */
  readonly failsafeMode?: boolean;
  /**
   * Patroni's `consul:` section (e.g. `{ host: '127.0.0.1:8500', token }`) to use that Consul as
   * the DCS instead of starting an etcd. @default a single-member etcd (`etcd3:`)
   */
  readonly consul?: Readonly<Record<string, unknown>>;
  /** How long the cluster may take to become healthy, ms. @default 180000 */
  readonly startTimeoutMs?: number;
}

interface Node {
  readonly name: string;
  readonly dir: string;
  readonly dataDir: string;
  readonly pgPort: number;
  readonly restPort: number;
  readonly config: string;
  process: ProcessHandle;
}

/** A running two-node Patroni cluster behind HAProxy. */
export interface PatroniEnv {
  /** The etcd the cluster runs on; undefined with `consul`. */
  readonly etcd: EtcdHandle | undefined;
  readonly nodes: readonly { readonly name: string; readonly pgPort: number; readonly restPort: number }[];
  /** Client config through HAProxy. */
  clientConfig(): pg.ClientConfig;
  /** Client config straight to node i's PostgreSQL (superuser; connect timeout 1 s, query timeout 3 s). */
  directClientConfig(i: number): pg.ClientConfig;
  /** Index of the node whose REST API answers `/primary` with 200, or -1. */
  leaderIndex(): Promise<number>;
  /** SIGKILL of node i's Patroni and its postmaster. */
  killNode(i: number): Promise<void>;
  /** SIGKILL of node i's postmaster only. */
  crashPostgres(i: number): Promise<void>;
  /** Starts node i's Patroni again. */
  startNode(i: number): Promise<void>;
  /**
   * `patronictl switchover --leader <leader> --candidate <node to> --force` (Patroni's planned
   * switchover), bounded by 120 s. @returns its exit code (null when it was killed) and output.
   */
  switchover(to: number): Promise<{ code: number | null; output: string }>;
  /**
   * Waits until one leader and one replica are running (REST `/cluster`), the replica within
   * `maxLagBytes` of the leader, and a write through HAProxy succeeds; returns when (epoch ms), or
   * null after `timeoutMs`.
   * @param maxLagBytes @default 1048576 (Patroni's maximum_lag_on_failover)
   */
  waitHealthy(timeoutMs: number, maxLagBytes?: number): Promise<number | null>;
  logs(): string;
  stop(): Promise<void>;
}

/** Resolves when `p` settles or after `ms`, whichever first (never rejects). */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((r) => {
      timer = setTimeout(r, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Why Patroni cannot run here (missing programs), or undefined.
 * @param needHaproxy whether HAProxy is needed too @default true
 */
export async function patroniUnavailableReason(needHaproxy = true): Promise<string | undefined> {
  const version = (cmd: string, args: string[]) =>
    new Promise<string | undefined>((resolve) => {
      execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => resolve(err === null ? `${stdout}${stderr}`.trim() : undefined));
    });
  const p = await version('patroni', ['--version']);
  if (p === undefined) {
    return 'the `patroni` program is missing: apt-get install -y patroni (Debian 12 ships Patroni 3.0.2)';
  }
  if (!p.includes('3.0.2')) {
    return `found ${p}, not Patroni 3.0.2`;
  }
  // Patroni's etcd3 DCS imports python-etcd; without it Patroni offers only consul and kubernetes.
  if ((await version('/usr/bin/python3', ['-c', 'import etcd'])) === undefined) {
    return "Patroni's etcd3 DCS needs the python `etcd` module: apt-get install -y python3-etcd";
  }
  if (needHaproxy && (await version('haproxy', ['-v'])) === undefined) {
    return 'the `haproxy` program is missing: apt-get install -y haproxy';
  }
  if ((await version('setpriv', ['--version'])) === undefined) {
    return 'the `setpriv` program (util-linux) is missing';
  }
  if (process.getuid?.() !== 0) {
    return 'the Patroni baseline runs PostgreSQL as the postgres OS user and needs root to switch to it';
  }
  return undefined;
}

function haproxyConfig(port: number, nodes: readonly Node[], c: HaproxyChecks): string {
  return [
    'global',
    '    maxconn 200',
    'defaults',
    '    mode tcp',
    '    retries 2',
    '    timeout client 30m',
    '    timeout connect 4s',
    '    timeout server 30m',
    '    timeout check 5s',
    'listen primary',
    `    bind 127.0.0.1:${port}`,
    '    option httpchk GET /primary',
    '    http-check expect status 200',
    `    default-server inter ${c.interMs} fall ${c.fall} rise ${c.rise} on-marked-down shutdown-sessions`,
    ...nodes.map((n) => `    server ${n.name} 127.0.0.1:${n.pgPort} maxconn 100 check port ${n.restPort}`),
    '',
  ].join('\n');
}

/** Options of {@link patroniNodeConfig}. */
export interface PatroniNodeConfigOptions {
  readonly scope: string;
  readonly name: string;
  /** The node's directory: its data directory (`data`), pgpass and socket go there. */
  readonly dir: string;
  readonly pgPort: number;
  readonly restPort: number;
  readonly pgBinDir: string;
  /** Password of the `postgres` superuser and the `replicator` user. */
  readonly password: string;
  readonly timings: PatroniTimings;
  readonly failsafeMode?: boolean;
  /** The DCS section(s), e.g. `{ etcd3: { hosts: [...] } }` or `{ kubernetes: { ... } }`. */
  readonly dcs: Readonly<Record<string, unknown>>;
}

/**
 * The Patroni configuration of one node on loopback ports (write it as JSON: YAML is a superset):
 * pg_rewind, md5 from 127.0.0.1, the given DCS.
 */
export function patroniNodeConfig(o: PatroniNodeConfigOptions): Record<string, unknown> {
  return {
    scope: o.scope,
    name: o.name,
    restapi: { listen: `127.0.0.1:${o.restPort}`, connect_address: `127.0.0.1:${o.restPort}` },
    ...o.dcs,
    bootstrap: {
      dcs: {
        ttl: o.timings.ttl,
        loop_wait: o.timings.loopWait,
        retry_timeout: o.timings.retryTimeout,
        maximum_lag_on_failover: 1048576,
        ...(o.failsafeMode === true ? { failsafe_mode: true } : {}),
        postgresql: { use_pg_rewind: true, remove_data_directory_on_rewind_failure: true, remove_data_directory_on_diverged_timelines: true },
      },
      initdb: [{ encoding: 'UTF8' }],
      pg_hba: ['host replication replicator 127.0.0.1/32 md5', 'host all all 127.0.0.1/32 md5'],
    },
    postgresql: {
      listen: `127.0.0.1:${o.pgPort}`,
      connect_address: `127.0.0.1:${o.pgPort}`,
      data_dir: join(o.dir, 'data'),
      bin_dir: o.pgBinDir,
      pgpass: join(o.dir, 'pgpass'),
      authentication: {
        replication: { username: 'replicator', password: o.password },
        superuser: { username: 'postgres', password: o.password },
      },
      parameters: { unix_socket_directories: o.dir },
    },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
}

/**
 * Starts etcd (unless `consul`), two Patroni nodes and HAProxy (unless `haproxy` is null), and
 * waits until the cluster is healthy.
 * @throws Error with the last log lines when something does not come up within `startTimeoutMs`.
 * @throws ConfigError when no PostgreSQL server binaries are found (`resolvePgBinDir`).
 */
export async function startPatroniEnv(opts: PatroniEnvOptions): Promise<PatroniEnv> {
  const id = await osIdentity('postgres');
  if (id === null) {
    throw new Error('the Patroni baseline needs root (to run PostgreSQL as the postgres OS user)');
  }
  const pgBinDir = resolvePgBinDir({ flag: opts.pgBinPath });
  const etcd = opts.consul === undefined ? await startEtcd({ dataDir: join(opts.dir, 'etcd'), name: 'patroni-etcd' }) : undefined;
  const password = 'patroni-bench';
  const nodes: Node[] = [];
  const procs: ProcessHandle[] = [];
  let haproxy: ProcessHandle | undefined;
  const stop = async (): Promise<void> => {
    await haproxy?.stop('SIGTERM', 5000);
    // Patroni stops its PostgreSQL on SIGTERM. A handle only counts as exited once its output
    // pipes close, and PostgreSQL (in its own session) holds Patroni's: never wait on a handle
    // unboundedly while a postmaster may still run.
    await Promise.allSettled(nodes.map((n) => (n.process === undefined ? undefined : bounded(n.process.stop('SIGTERM', 15_000), 20_000))));
    await Promise.all(nodes.map(killPostmaster));
    await Promise.allSettled(nodes.map((n) => (n.process === undefined ? undefined : bounded(n.process.kill(), 10_000))));
    await etcd?.stop();
  };
  const killPostmaster = async (n: Node): Promise<void> => {
    const pid = await postmasterPid(n);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  };
  const postmasterPid = async (n: Node): Promise<number | undefined> => {
    try {
      const pid = Number((await readFile(join(n.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const spawn = (n: Node): ProcessHandle => {
    // setpriv execs patroni as postgres (no intermediate process): the handle's pid is Patroni's.
    const p = startProcess({
      name: n.name,
      cmd: 'setpriv',
      args: ['--reuid', String(id.uid), '--regid', String(id.gid), '--init-groups', 'patroni', n.config],
      env: { HOME: n.dir },
      cwd: n.dir,
      logFile: join(opts.dir, 'patroni.log'),
    });
    procs.push(p);
    // A Patroni that exits on its own says nothing about it in its log: record how it ended.
    void p.exited.then((code) => appendFile(join(opts.dir, 'patroni.log'), `[${n.name}] process ${p.pid} exited, code ${code}\n`).catch(() => undefined));
    return p;
  };
  try {
    for (let i = 0; i < 2; i++) {
      const name = `patroni${i}`;
      const dir = join(opts.dir, name);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chown(dir, id.uid, id.gid);
      const pgPort = await freePort();
      const restPort = await freePort();
      const config = join(dir, 'patroni.yml');
      const cfg = patroniNodeConfig({
        scope: 'bench',
        name,
        dir,
        pgPort,
        restPort,
        pgBinDir,
        password,
        timings: opts.timings,
        failsafeMode: opts.failsafeMode === true,
        dcs: etcd === undefined ? { consul: opts.consul } : { etcd3: { hosts: [`127.0.0.1:${etcd.clientPort}`] } },
      });
      await writeFile(config, JSON.stringify(cfg, null, 2), { mode: 0o600 });
      await chown(config, id.uid, id.gid);
      const node: Node = { name, dir, dataDir: join(dir, 'data'), pgPort, restPort, config, process: undefined as unknown as ProcessHandle };
      nodes.push(node);
    }
    // The first node bootstraps (initdb) before the second one starts, so it clones from it.
    nodes[0]!.process = spawn(nodes[0]!);
    const deadline = Date.now() + (opts.startTimeoutMs ?? 180_000);
    const leader = async (): Promise<number> => {
      for (let i = 0; i < nodes.length; i++) {
        try {
          const res = await fetch(`http://127.0.0.1:${nodes[i]!.restPort}/primary`, { signal: AbortSignal.timeout(1000) });
          await res.text();
          if (res.status === 200) {
            return i;
          }
        } catch {
          // not up
        }
      }
      return -1;
    };
    while ((await leader()) < 0) {
      if (Date.now() > deadline || !nodes[0]!.process.running()) {
        throw new Error(`patroni0 did not become leader; logs:\n${nodes[0]!.process.logs().split('\n').slice(-40).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    nodes[1]!.process = spawn(nodes[1]!);
    const haPort = await freePort();
    if (opts.haproxy !== null) {
      const haCfg = join(opts.dir, 'haproxy.cfg');
      await writeFile(haCfg, haproxyConfig(haPort, nodes, opts.haproxy));
      haproxy = startProcess({ name: 'haproxy', cmd: 'haproxy', args: ['-db', '-f', haCfg], logFile: join(opts.dir, 'patroni.log') });
      procs.push(haproxy);
    }
    const viaHaproxy = (): pg.ClientConfig => ({
      host: '127.0.0.1',
      port: haPort,
      user: 'postgres',
      password,
      database: 'postgres',
      connectionTimeoutMillis: 3000,
    });
    const clientConfig = (): pg.ClientConfig => {
      if (opts.haproxy === null) {
        throw new Error('this Patroni cluster runs without HAProxy');
      }
      return viaHaproxy();
    };
    const direct = (i: number): pg.ClientConfig => ({
      host: '127.0.0.1',
      port: nodes[i]!.pgPort,
      user: 'postgres',
      password,
      database: 'postgres',
      connectionTimeoutMillis: 1000,
      query_timeout: 3000,
    });
    const replicaWithin = async (l: number, maxLagBytes: number): Promise<boolean> => {
      const lsn = (await query<{ l: string }>(direct(l), 'select pg_current_wal_lsn()::text as l'))[0]?.l;
      const r = await query<{ streaming: boolean; lag: string }>(
        direct(1 - l),
        `select coalesce((select status = 'streaming' from pg_stat_wal_receiver), false) as streaming,
                pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::text as lag`,
        [lsn],
      );
      return r[0]?.streaming === true && Number(r[0].lag) <= maxLagBytes;
    };
    const waitHealthy = async (timeoutMs: number, maxLagBytes = 1048576): Promise<number | null> => {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        try {
          const res = await fetch(`http://127.0.0.1:${nodes[(await leader()) === 1 ? 1 : 0]!.restPort}/cluster`, { signal: AbortSignal.timeout(1000) });
          const body = (await res.json()) as { members?: { name: string; role: string; state: string }[] };
          const ms = body.members ?? [];
          const l = await leader();
          const ok =
            l >= 0 &&
            ms.length === 2 &&
            ms.filter((m) => m.role === 'leader' && m.state === 'running').length === 1 &&
            ms.filter((m) => m.role !== 'leader' && (m.state === 'running' || m.state === 'streaming')).length === 1 &&
            // Patroni's own `lag` is computed from positions published once per loop_wait; ask
            // the servers: the replica streams and has replayed to within maxLagBytes of the leader.
            (await replicaWithin(l, maxLagBytes));
          if (ok) {
            const writeTo = opts.haproxy === null ? direct(l) : viaHaproxy();
            await query({ ...writeTo, connectionTimeoutMillis: 1000 }, 'create table if not exists chaos_probe (id bigserial primary key)');
            await query({ ...writeTo, connectionTimeoutMillis: 1000 }, 'insert into chaos_probe default values');
            return Date.now();
          }
        } catch {
          // not yet
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      return null;
    };
    if ((await waitHealthy(Math.max(10_000, deadline - Date.now()))) === null) {
      throw new Error(`the Patroni cluster did not become healthy; logs:\n${procs.map((p) => p.logs().split('\n').slice(-30).join('\n')).join('\n')}`);
    }
    return {
      etcd,
      nodes: nodes.map((n) => ({ name: n.name, pgPort: n.pgPort, restPort: n.restPort })),
      clientConfig,
      directClientConfig: direct,
      leaderIndex: leader,
      async killNode(i) {
        const n = nodes[i]!;
        // Both at once, the postmaster first: it runs in its own session (not Patroni's process
        // group) and holds Patroni's output pipes, so the handle only sees the exit after it.
        await killPostmaster(n);
        await bounded(n.process.kill(), 10_000);
      },
      async crashPostgres(i) {
        const pm = await postmasterPid(nodes[i]!);
        if (pm === undefined) {
          throw new Error(`no postmaster.pid for ${nodes[i]!.name}`);
        }
        process.kill(pm, 'SIGKILL');
      },
      async startNode(i) {
        const n = nodes[i]!;
        if (n.process.running()) {
          throw new Error(`${n.name} is still running`);
        }
        n.process = spawn(n);
        await Promise.resolve();
      },
      switchover: (to) =>
        new Promise((resolve) => {
          const n = nodes[to]!;
          execFile(
            'patronictl',
            ['-c', n.config, 'switchover', '--leader', nodes[1 - to]!.name, '--candidate', n.name, '--force', 'bench'],
            { timeout: 120_000, env: { ...process.env, HOME: n.dir } },
            (err, stdout, stderr) => {
              const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
              resolve({ code, output: `${stdout}${stderr}` });
            },
          );
        }),
      waitHealthy,
      logs: () => procs.map((p) => p.logs()).join('\n'),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
