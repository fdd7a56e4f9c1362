/**
 * `ip netns` partitions for the chaos suite: a per-test network of one Linux bridge on the host and
 * one network namespace per keeper "node", so that a keeper and its PostgreSQL can be cut off from
 * etcd and from the other keepers with DROP rules inside their own namespace, and healed by
 * flushing them. A cut (`cut(i, { hostTcpPorts })`) drops every packet to or from the other nodes
 * and every TCP packet to or from the given host ports (etcd's); the host's proxies and test
 * clients still reach the node's PostgreSQL, which is what self-fencing must stop.
 *
 * Layout, addressing and cleanup (including networks left by a process that died):
 * docs/chaos.md, "Topology".
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** Prefix of every namespace this module creates. */
export const NETNS_PREFIX = 'stolon-chaos-';
const ALIAS_PREFIX = 'stolon-chaos owner=';

/** Runs a command without a shell; rejects with its stderr on a non-zero exit. */
function run(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) {
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
      } else {
        resolve(stdout);
      }
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What a network node (a namespace) is. */
export interface NetnsNode {
  /** Index in {@link ChaosNetwork.nodes}. */
  readonly index: number;
  /** Namespace name, for `ip netns exec <netns> …`. */
  readonly netns: string;
  /** The node's address on the bridge (PostgreSQL listens here). */
  readonly address: string;
  /** Host-side veth name. */
  readonly hostVeth: string;
}

/** Options of {@link ChaosNetwork.cut}. */
export interface CutOptions {
  /**
   * TCP ports on the host (bridge address) the node may no longer reach, typically every etcd
   * member's client and peer ports. Other host ports (the node's own PostgreSQL seen from the
   * proxies and test clients) stay reachable.
   */
  readonly hostTcpPorts: readonly number[];
}

/** A per-test bridge with one namespace per node. */
export interface ChaosNetwork {
  /** The bridge's address on the host, e.g. `10.214.37.1`: etcd must listen here too. */
  readonly hostAddress: string;
  /** The subnet, e.g. `10.214.37.0/24`. */
  readonly subnet: string;
  readonly bridge: string;
  readonly nodes: readonly NetnsNode[];
  /** Argv prefix that runs a command inside node i's namespace: `['ip', 'netns', 'exec', ns]`. */
  execPrefix(i: number): string[];
  /**
   * Cuts node i off from the other nodes and from `hostTcpPorts` on the host (DROP rules in its
   * namespace, both directions). Established connections stall rather than reset, as on a real
   * partition. Idempotent per node (a second cut replaces the first).
   * @throws Error when iptables fails (the message names the command).
   */
  cut(i: number, opts: CutOptions): Promise<void>;
  /** Removes node i's DROP rules. A node that was not cut is fine. */
  heal(i: number): Promise<void>;
  /** Nodes cut now. */
  cutNodes(): number[];
  /** Deletes the namespaces and the bridge (idempotent; never throws). */
  destroy(): Promise<void>;
}

/**
 * Why `ip netns` partitions cannot run here, or undefined when they can: needs root, `ip`, and
 * `iptables` (Debian: `apt-get install -y iptables`), and a kernel that lets us add a namespace.
 */
export async function netnsUnavailableReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) {
    return 'ip netns needs root (the harness runs as uid ' + String(process.getuid?.()) + ')';
  }
  for (const [cmd, pkg] of [
    ['ip', 'iproute2'],
    ['iptables', 'iptables'],
  ] as const) {
    try {
      await run(cmd, ['--version']);
    } catch {
      try {
        await run(cmd, ['-V']);
      } catch {
        return `${cmd} is missing: apt-get install -y ${pkg}`;
      }
    }
  }
  const probe = `${NETNS_PREFIX}probe-${process.pid}`;
  try {
    await run('ip', ['netns', 'add', probe]);
    await run('ip', ['netns', 'exec', probe, 'iptables', '-w', '-L', 'OUTPUT']);
  } catch (err) {
    return `cannot create a network namespace with iptables in it: ${(err as Error).message}`;
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => undefined);
  }
  return undefined;
}

/** Networks of this process not destroyed yet (for the exit hook). */
const live = new Set<{ bridge: string; namespaces: string[] }>();
let exitHookInstalled = false;

function destroySync(n: { bridge: string; namespaces: string[] }): void {
  for (const ns of n.namespaces) {
    killNamespacePidsSync(ns);
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // already gone
    }
  }
  try {
    execFileSync('ip', ['link', 'del', n.bridge], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // already gone
  }
}

function killNamespacePidsSync(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 })
      .split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  } catch {
    // namespace gone
  }
}

/**
 * Removes networks left behind by harness processes that died without cleaning up: namespaces
 * named `stolon-chaos-<pid>-…` and bridges whose alias is `stolon-chaos owner=<pid>`, for a pid
 * that no longer runs. Processes still inside such a namespace (a keeper or postgres of the dead
 * run) are SIGKILLed first. Returns what was removed.
 */
export async function removeStaleNetworks(): Promise<string[]> {
  const removed: string[] = [];
  const nsList = (await run('ip', ['netns', 'list']).catch(() => ''))
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX));
  for (const ns of nsList) {
    const m = /^stolon-chaos-(\d+)-/.exec(ns);
    const owner = m === null ? NaN : Number(m[1]);
    if (Number.isInteger(owner) && !pidAlive(owner)) {
      killNamespacePidsSync(ns);
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      removed.push(`netns ${ns}`);
    }
  }
  const links = await run('ip', ['-o', 'link', 'show', 'type', 'bridge']).catch(() => '');
  for (const line of links.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    const owner = new RegExp(`alias ${ALIAS_PREFIX}(\\d+)`).exec(line)?.[1];
    if (name !== undefined && owner !== undefined && !pidAlive(Number(owner))) {
      await run('ip', ['link', 'del', name]).catch(() => undefined);
      removed.push(`bridge ${name}`);
    }
  }
  return removed;
}

async function pickSubnet(): Promise<[number, number]> {
  const used = (await run('ip', ['-o', '-4', 'addr'])) + (await run('ip', ['-4', 'route']));
  for (let i = 0; i < 50; i++) {
    const a = 213 + (randomBytes(1)[0]! % 10);
    const b = randomBytes(1)[0]!;
    if (!used.includes(`10.${a}.${b}.`)) {
      return [a, b];
    }
  }
  throw new Error('no free 10.213-222.x.0/24 subnet found in 50 tries');
}

/** Options of {@link createChaosNetwork}. */
export interface CreateChaosNetworkOptions {
  /** Number of node namespaces. */
  readonly nodes: number;
}

/**
 * Creates the bridge and one namespace per node, after removing stale networks of dead runs.
 * @throws Error naming the failing `ip` command (or the reason from
 *   {@link netnsUnavailableReason}); whatever was created is removed first.
 */
export async function createChaosNetwork(opts: CreateChaosNetworkOptions): Promise<ChaosNetwork> {
  const why = await netnsUnavailableReason();
  if (why !== undefined) {
    throw new Error(`ip netns partitions are not available: ${why}`);
  }
  await removeStaleNetworks();
  const tag = randomBytes(2).toString('hex');
  const [a, b] = await pickSubnet();
  const hostAddress = `10.${a}.${b}.1`;
  const subnet = `10.${a}.${b}.0/24`;
  const bridge = `stcb${tag}`;
  const record = { bridge, namespaces: [] as string[] };
  live.add(record);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const n of live) {
        destroySync(n);
      }
    });
  }
  const nodes: NetnsNode[] = [];
  try {
    await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    await run('ip', ['link', 'set', 'dev', bridge, 'alias', `${ALIAS_PREFIX}${process.pid}`]);
    await run('ip', ['addr', 'add', `${hostAddress}/24`, 'dev', bridge]);
    await run('ip', ['link', 'set', bridge, 'up']);
    for (let i = 0; i < opts.nodes; i++) {
      const netns = `${NETNS_PREFIX}${process.pid}-${tag}-${i}`;
      const hostVeth = `stcv${tag}h${i}`;
      const nodeVeth = `stcv${tag}n${i}`;
      const address = `10.${a}.${b}.${10 + i}`;
      await run('ip', ['netns', 'add', netns]);
      record.namespaces.push(netns);
      await run('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', nodeVeth, 'netns', netns]);
      await run('ip', ['link', 'set', hostVeth, 'master', bridge]);
      await run('ip', ['link', 'set', hostVeth, 'up']);
      const inNs = (...args: string[]) => run('ip', ['netns', 'exec', netns, 'ip', ...args]);
      await inNs('link', 'set', 'lo', 'up');
      await inNs('addr', 'add', `${address}/24`, 'dev', nodeVeth);
      await inNs('link', 'set', nodeVeth, 'up');
      nodes.push({ index: i, netns, address, hostVeth });
    }
  } catch (err) {
    destroySync(record);
    live.delete(record);
    throw err;
  }
  const cut = new Set<number>();
  const node = (i: number): NetnsNode => {
    const n = nodes[i];
    if (n === undefined) {
      throw new Error(`no network node ${i} (there are ${nodes.length})`);
    }
    return n;
  };
  const iptables = (i: number, ...args: string[]) => run('ip', ['netns', 'exec', node(i).netns, 'iptables', '-w', ...args]);
  const flush = async (i: number) => {
    await iptables(i, '-F', 'INPUT');
    await iptables(i, '-F', 'OUTPUT');
  };
  return {
    hostAddress,
    subnet,
    bridge,
    nodes,
    execPrefix: (i) => ['ip', 'netns', 'exec', node(i).netns],
    async cut(i, cutOpts) {
      await flush(i);
      // First match wins: the host's listed ports are dropped, the rest of the host accepted,
      // then every other address of the subnet (the other nodes) dropped.
      for (const port of cutOpts.hostTcpPorts) {
        await iptables(i, '-A', 'OUTPUT', '-d', hostAddress, '-p', 'tcp', '--dport', String(port), '-j', 'DROP');
        await iptables(i, '-A', 'INPUT', '-s', hostAddress, '-p', 'tcp', '--sport', String(port), '-j', 'DROP');
      }
      await iptables(i, '-A', 'OUTPUT', '-d', hostAddress, '-j', 'ACCEPT');
      await iptables(i, '-A', 'INPUT', '-s', hostAddress, '-j', 'ACCEPT');
      await iptables(i, '-A', 'OUTPUT', '-d', subnet, '-j', 'DROP');
      await iptables(i, '-A', 'INPUT', '-s', subnet, '-j', 'DROP');
      cut.add(i);
    },
    async heal(i) {
      await flush(i);
      cut.delete(i);
    },
    cutNodes: () => [...cut].sort((x, y) => x - y),
    async destroy() {
      if (!live.has(record)) {
        return;
      }
      live.delete(record);
      for (const ns of record.namespaces) {
        killNamespacePidsSync(ns);
        await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      }
      await run('ip', ['link', 'del', bridge]).catch(() => undefined);
    },
  };
}
