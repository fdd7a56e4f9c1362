/**
 * The chaos network on the real kernel: two node namespaces on a bridge, a TCP server in node 0
 * and on the host, clients in node 1 and on the host; `cut(0)` must block node 0 from the other
 * node and from the listed host ports only, and `heal(0)` must undo it. Needs root, `ip` and
 * `iptables` (it fails naming what is missing rather than skip).
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProcess, type ProcessHandle } from '../process.js';
import { createChaosNetwork, netnsUnavailableReason, NETNS_PREFIX, type ChaosNetwork } from './netns.js';

const NODE_PORT = 45_871;
let net: ChaosNetwork | undefined;
let server: ProcessHandle | undefined;
let hostServer: Server | undefined;
let hostPort = 0;

/** Tries a TCP connection from inside node `from`'s namespace (or the host); resolves true if it connects within 1.5 s. */
function canConnect(from: number | 'host', host: string, port: number): Promise<boolean> {
  const script = `const s=require('net').connect({host:'${host}',port:${port}});s.setTimeout(1500);s.on('connect',()=>{process.stdout.write('ok');s.destroy()});s.on('timeout',()=>{s.destroy()});s.on('error',()=>{})`;
  const argv = from === 'host' ? [process.execPath, '-e', script] : [...net!.execPrefix(from), process.execPath, '-e', script];
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 5000 }, (_err, stdout) => resolve(stdout.includes('ok')));
  });
}

beforeAll(async () => {
  const why = await netnsUnavailableReason();
  if (why !== undefined) {
    throw new Error(`ip netns partitions are not available: ${why}`);
  }
  net = await createChaosNetwork({ nodes: 2 });
  const addr = net.nodes[0]!.address;
  server = startProcess({
    name: 'node0-server',
    cmd: 'ip',
    args: [...net.execPrefix(0).slice(1), process.execPath, '-e', `require('net').createServer((c)=>c.end()).listen(${NODE_PORT},'${addr}',()=>console.log('listening'))`],
  });
  await server.waitForLog('listening', 10_000);
  hostServer = createServer((c) => c.end());
  await new Promise<void>((r) => hostServer!.listen(0, net!.hostAddress, () => r()));
  const a = hostServer.address();
  hostPort = typeof a === 'object' && a !== null ? a.port : 0;
}, 30_000);

afterAll(async () => {
  await server?.kill();
  await new Promise((r) => (hostServer === undefined ? r(undefined) : hostServer.close(() => r(undefined))));
  await net?.destroy();
});

describe('chaos network', () => {
  it('names its namespaces with the stale-cleanup prefix and the owner pid', () => {
    expect(net!.nodes.map((n) => n.netns)).toEqual(net!.nodes.map((_, i) => expect.stringMatching(new RegExp(`^${NETNS_PREFIX}${process.pid}-[0-9a-f]{4}-${i}$`))));
  });

  it('cut(0) blocks node 0 from the other node and the listed host ports, not from the rest of the host; heal(0) undoes it', async () => {
    const node0 = net!.nodes[0]!.address;
    expect(await canConnect(1, node0, NODE_PORT)).toBe(true);
    expect(await canConnect('host', node0, NODE_PORT)).toBe(true);
    expect(await canConnect(0, net!.hostAddress, hostPort)).toBe(true);

    await net!.cut(0, { hostTcpPorts: [hostPort] });
    expect(net!.cutNodes()).toEqual([0]);
    expect(await canConnect(1, node0, NODE_PORT)).toBe(false);
    expect(await canConnect('host', node0, NODE_PORT)).toBe(true);
    expect(await canConnect(0, net!.hostAddress, hostPort)).toBe(false);

    await net!.heal(0);
    expect(net!.cutNodes()).toEqual([]);
    expect(await canConnect(1, node0, NODE_PORT)).toBe(true);
    expect(await canConnect(0, net!.hostAddress, hostPort)).toBe(true);
  }, 30_000);
});
