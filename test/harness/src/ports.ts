/**
 * Free TCP ports from the OS for test processes (etcd, keepers, proxies). A port is found by
 * listening on 127.0.0.1:0 and closing again; ports handed out once are never handed out again
 * by this process, so two handles started back to back cannot collide.
 */
import { createServer } from 'node:net';

const handedOut = new Set<number>();

function probe(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago and that this process has not returned
 * before. Another process may still grab it before the caller binds it (small race, accepted).
 * @throws Error when the OS keeps returning ports already handed out (after 100 tries).
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = await probe();
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: the OS returned only ports already handed out, 100 times in a row');
}
