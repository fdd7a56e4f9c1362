/**
 * Free TCP ports for test processes (etcd, keepers, proxies). A port is found by listening on
 * 127.0.0.1 and closing again; ports handed out once are never handed out again by this process,
 * so two handles started back to back cannot collide.
 *
 * Ports are drawn at random from 20000–32767, below Linux's default ephemeral range
 * (`net.ipv4.ip_local_port_range`, 32768–60999): a port the OS handed out for `listen(0)` comes
 * from that range, and so does the local port of every outgoing connection, so between the probe
 * and the test process's own bind a client connection (a keeper's to etcd, a proxy's to a
 * keeper) could take it — seen as a sentinel exiting with EADDRINUSE on its status port.
 */
import { createServer } from 'node:net';

const handedOut = new Set<number>();

/** The range drawn from; ends below Linux's default ephemeral range. */
const LOW = 20_000;
const HIGH = 32_767;

function tryListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago and that this process has not returned
 * before. Another process may still grab it before the caller binds it (small race, accepted).
 * @throws Error when 200 random ports in a row were in use or already handed out.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (!handedOut.has(port) && (await tryListen(port))) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: 200 random ports in ${LOW}-${HIGH} were in use or already handed out`);
}
