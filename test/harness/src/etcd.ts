/**
 * A real single-member etcd for integration and end-to-end tests: Debian's `/usr/bin/etcd` on two
 * free ports of 127.0.0.1 with its data in a temp dir, started, health-checked, restartable on the
 * same ports and data, and cleaned up on stop.
 */
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
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
}

/** A running etcd member. */
export interface EtcdHandle {
  /** Client URLs, e.g. `['http://127.0.0.1:40123']`. */
  readonly endpoints: string[];
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
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

/**
 * Polls `GET /health` on the client URL until etcd reports healthy.
 * @throws Error with the last log lines when etcd exits or is not healthy in time.
 */
async function waitHealthy(proc: ProcessHandle, endpoint: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + scaleTimeout(timeoutMs);
  let last = 'no answer yet';
  while (performance.now() < deadline) {
    if (!proc.running()) {
      throw new Error(`etcd exited before becoming healthy; logs:\n${proc.logs().split('\n').slice(-30).join('\n')}`);
    }
    try {
      const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
      const body = await res.text();
      if (res.ok && /"health"\s*:\s*"true"/.test(body)) {
        return;
      }
      last = `HTTP ${res.status} ${body}`;
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

/**
 * Starts a single-member etcd on free ports of 127.0.0.1 and waits until it serves requests.
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
  const name = opts.name ?? 'etcd';
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const memberName = `etcd-${clientPort}`;
  const args = [
    `--name=${memberName}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${memberName}=${peerUrl}`,
    '--initial-cluster-state=new',
    '--logger=zap',
    '--log-outputs=stderr',
  ];
  const spawnEtcd = (): ProcessHandle =>
    startProcess({
      name,
      cmd: ETCD_BIN,
      args,
      // etcd refuses to start on architectures other than amd64/arm64/ppc64le without this.
      ...(['x64', 'arm64', 'ppc64'].includes(process.arch) ? {} : { env: { ETCD_UNSUPPORTED_ARCH: process.arch } }),
    });

  let proc = spawnEtcd();
  try {
    await waitHealthy(proc, clientUrl, 20_000);
  } catch (err) {
    await proc.kill();
    if (ownDir) {
      await removeDir(baseDir);
    }
    throw err;
  }

  return {
    endpoints: [clientUrl],
    clientPort,
    peerPort,
    dataDir,
    get process(): ProcessHandle {
      return proc;
    },
    async stop(): Promise<void> {
      await proc.stop('SIGTERM', 10_000);
      if (ownDir) {
        await removeDir(baseDir);
      }
    },
    async kill(): Promise<void> {
      await proc.kill();
    },
    async restart(): Promise<void> {
      await proc.stop('SIGTERM', 10_000);
      proc = spawnEtcd();
      await waitHealthy(proc, clientUrl, 20_000);
    },
  };
}
