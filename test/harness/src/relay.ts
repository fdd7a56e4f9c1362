/**
 * A TCP relay on 127.0.0.1 that a test can cut and heal: the simplest stand-in for a network
 * partition between one process and a server (e.g. one keeper and etcd) when both run on the
 * host's loopback. `cut()` destroys every relayed connection at once and refuses new ones
 * (accepted, then destroyed); `heal()` relays again.
 */
import net from 'node:net';

export interface RelayHandle {
  /** The relay's listening port on 127.0.0.1. */
  readonly port: number;
  /** True while cut. */
  isCut(): boolean;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

/**
 * Starts a relay to `127.0.0.1:targetPort` on a free port.
 * @throws Error when it cannot listen.
 */
export async function startRelay(targetPort: number, targetHost = '127.0.0.1'): Promise<RelayHandle> {
  let cut = false;
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    open.add(client);
    open.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    isCut: () => cut,
    cut() {
      cut = true;
      for (const s of open) {
        s.destroy();
      }
      open.clear();
    },
    heal() {
      cut = false;
    },
    async close() {
      cut = true;
      for (const s of open) {
        s.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
