/**
 * The native relay on its own, over real TCP on 127.0.0.1: pairs of sockets are handed to it
 * the way the proxy does (client accepted paused, backend paused before it connects), and what
 * the peers see is checked. The proxy's own tests (proxy.test.ts) run every routing, fencing,
 * half-close and backpressure case on this data path too.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor, waitUntilSteady } from '@stolon-ts/harness';
import { Relay, defaultRelayThreads, loadRelayAddon, setKeepalive, type RelayClose } from './relay.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    await c();
  }
});

interface Rig {
  relay: Relay;
  closes: RelayClose[];
  /**
   * Connects a client through the relay to the backend server; resolves with both peers' sockets
   * once the relay holds the connection (`id` is exact when pairs are made one at a time).
   */
  pair(): Promise<{ client: net.Socket; backend: net.Socket; id: number }>;
}

/**
 * A relay plus a listener that hands each accepted client (paused) and a new connection to a
 * backend server to it. The backend server's side of each connection is returned to the test;
 * it ends its side when it gets a FIN unless `halfOpenBackend`.
 */
async function rig(threads = 2, halfOpenBackend = false): Promise<Rig> {
  const closes: RelayClose[] = [];
  const relay = new Relay(threads, (c) => closes.push(c));
  /** Backend-side sockets accepted before a test asked for them. */
  const backendSockets: net.Socket[] = [];
  const allSockets: net.Socket[] = [];
  const backendWaiters: Array<(s: net.Socket) => void> = [];
  const backendServer = net.createServer({ allowHalfOpen: halfOpenBackend }, (s) => {
    s.on('error', () => undefined);
    s.resume(); // so a FIN is seen even if the test reads nothing (tests attach 'data' at once)
    allSockets.push(s);
    const w = backendWaiters.shift();
    if (w) {
      w(s);
    } else {
      backendSockets.push(s);
    }
  });
  await new Promise<void>((r) => backendServer.listen({ host: '127.0.0.1', port: 0 }, r));
  const backendPort = (backendServer.address() as net.AddressInfo).port;
  let nextId = 1;
  const adopted = new Set<number>();
  const front = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (c) => {
    c.on('error', () => undefined);
    const id = nextId++;
    const u = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true });
    u.pause();
    u.on('error', () => c.destroy());
    u.once('connect', () => {
      relay.adopt(id, c, u);
      adopted.add(id);
    });
  });
  await new Promise<void>((r) => front.listen({ host: '127.0.0.1', port: 0 }, r));
  const frontPort = (front.address() as net.AddressInfo).port;
  cleanups.push(async () => {
    relay.stop();
    for (const s of allSockets) {
      s.destroy();
    }
    await new Promise<void>((r) => front.close(() => r()));
    await new Promise<void>((r) => backendServer.close(() => r()));
  });
  return {
    relay,
    closes,
    pair: async () => {
      const id = nextId;
      const backendP = new Promise<net.Socket>((resolve) => {
        const s = backendSockets.shift();
        if (s) {
          resolve(s);
        } else {
          backendWaiters.push(resolve);
        }
      });
      const client = net.connect({ host: '127.0.0.1', port: frontPort });
      client.on('error', () => undefined);
      allSockets.push(client);
      await new Promise<void>((r) => client.once('connect', () => r()));
      const backend = await backendP;
      await waitFor(() => adopted.has(id), { timeoutMs: 5000, what: `connection ${id} handed to the relay` });
      return { client, backend, id };
    },
  };
}

function collect(s: net.Socket): { text: () => string; ended: () => boolean; closed: () => boolean } {
  let buf = '';
  let ended = false;
  let closed = false;
  s.on('data', (d: Buffer) => (buf += d.toString()));
  s.on('end', () => (ended = true));
  s.on('close', () => (closed = true));
  return { text: () => buf, ended: () => ended, closed: () => closed };
}

describe('native relay', () => {
  it('is built and loads (npm run build compiles it; the proxy refuses --data-path native without it)', () => {
    const l = loadRelayAddon();
    expect('error' in l ? l.error : 'loaded').toBe('loaded');
    expect(defaultRelayThreads()).toBeGreaterThanOrEqual(1);
    expect(defaultRelayThreads()).toBeLessThanOrEqual(4);
  });

  it('forwards both ways, forwards a FIN as a half-close, and reports the close with byte counts', { timeout: 10_000 }, async () => {
    const r = await rig(2, true);
    const { client, backend, id } = await r.pair();
    const atClient = collect(client);
    const atBackend = collect(backend);
    client.write('hello');
    await waitFor(() => atBackend.text() === 'hello', { timeoutMs: 3000, what: 'client → backend' });
    backend.write('world!');
    await waitFor(() => atClient.text() === 'world!', { timeoutMs: 3000, what: 'backend → client' });
    client.end(); // half-close: the backend sees EOF and may still answer
    await waitFor(() => atBackend.ended(), { timeoutMs: 3000, what: 'the FIN at the backend' });
    backend.end('late answer');
    await waitFor(() => atClient.ended(), { timeoutMs: 3000, what: 'the answer and FIN at the client' });
    expect(atClient.text()).toBe('world!late answer');
    await waitFor(() => r.closes.find((c) => c.id === id), { timeoutMs: 3000, what: 'the close report' });
    expect(r.closes.find((c) => c.id === id)).toEqual({ id, reason: 'closed', bytesUp: 5, bytesDown: 17 });
    expect(r.relay.size()).toBe(0);
  });

  it('close(id) closes both sides of that connection only', { timeout: 10_000 }, async () => {
    const r = await rig();
    const a = await r.pair();
    const b = await r.pair();
    const aClient = collect(a.client);
    const aBackend = collect(a.backend);
    const bClient = collect(b.client);
    r.relay.close(a.id);
    await waitFor(() => aClient.closed() && aBackend.closed(), { timeoutMs: 3000, what: 'both sides of a closed' });
    expect(r.closes.map((c) => [c.id, c.reason])).toEqual([[a.id, 'closed by the proxy']]);
    b.client.write('still here');
    b.backend.on('data', (d: Buffer) => b.backend.write(d));
    await waitFor(() => bClient.text() === 'still here', { timeoutMs: 3000, what: 'b still forwarding' });
    expect(r.relay.size()).toBe(1);
  });

  it('a reset on one side closes the other at once and says so', { timeout: 10_000 }, async () => {
    const r = await rig();
    const { client, backend, id } = await r.pair();
    const atClient = collect(client);
    backend.resetAndDestroy();
    await waitFor(() => atClient.closed(), { timeoutMs: 3000, what: 'the client closed' });
    const rep = await waitFor(() => r.closes.find((c) => c.id === id), { timeoutMs: 3000, what: 'the close report' });
    expect(rep.reason).toMatch(/^backend (read|error|send): Connection reset by peer$/);
  });

  it('clients that connect and vanish at once (reset or FIN) while being handed over never break it', { timeout: 30_000 }, async () => {
    // The window this guards: the relay may see a client's EOF and close its copy of the socket
    // before Node closed its own; a registration left behind in epoll would crash the process.
    const r = await rig(2);
    for (let round = 0; round < 5; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const { client } = await r.pair();
          if (i % 2 === 0) {
            client.resetAndDestroy();
          } else {
            client.end('x');
          }
        }),
      );
    }
    await waitFor(() => r.closes.length === 500, { timeoutMs: 15_000, what: `500 close reports (have ${r.closes.length})` });
    expect(r.relay.size()).toBe(0);
    // Still forwarding afterwards.
    const { client, backend } = await r.pair();
    const atClient = collect(client);
    backend.write('alive');
    await waitFor(() => atClient.text() === 'alive', { timeoutMs: 3000, what: 'forwarding after the storm' });
  });

  it('a client that does not read stalls the backend (backpressure), and closing it reports what crossed', { timeout: 15_000 }, async () => {
    const r = await rig(1);
    const { client, backend, id } = await r.pair();
    client.pause(); // never reads
    const TOTAL = 64 * 2 ** 20;
    let accepted = 0;
    const pump = (): void => {
      while (accepted < TOTAL && backend.write(Buffer.alloc(2 ** 20, 1))) {
        accepted += 2 ** 20;
      }
    };
    backend.on('drain', () => {
      accepted += 2 ** 20;
      pump();
    });
    pump();
    // Stalled: no progress over half a second, far below the 64 MiB the backend wants to send.
    const stalledAt = await waitUntilSteady(() => accepted, { timeoutMs: 10_000, what: 'the backend to stall' });
    expect(stalledAt).toBeLessThan(32 * 2 ** 20);
    client.destroy();
    const rep = await waitFor(() => r.closes.find((c) => c.id === id), { timeoutMs: 3000, what: 'the close report' });
    expect(rep.reason).toMatch(/^client /);
    expect(rep.bytesDown).toBeGreaterThan(0);
    expect(rep.bytesDown).toBeLessThan(32 * 2 ** 20);
  });

  it('renew(ms): past the deadline every connection is closed and new ones are refused; renewing again lets them through', { timeout: 15_000 }, async () => {
    const r = await rig(2);
    r.relay.renew(60_000);
    const a = await r.pair();
    const atClient = collect(a.client);
    r.relay.renew(300); // no renewal after this: the main thread "stalls"
    const t0 = Date.now();
    await waitFor(() => atClient.closed(), { timeoutMs: 3000, what: 'the relayed connection closed at the deadline' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    const reason = 'the proxy did not renew its routing in time (main thread stalled?): nothing is relayed past proxyTimeout';
    await waitFor(() => r.closes.find((c) => c.id === a.id), { timeoutMs: 3000, what: 'its report' });
    expect(r.closes.find((c) => c.id === a.id)?.reason).toBe(reason);
    // Past the deadline a new connection is closed as soon as the relay gets it.
    const b = await r.pair();
    // (It may close before pair() returns: look at the socket, not at events.)
    await waitFor(() => b.client.destroyed, { timeoutMs: 3000, what: 'a new connection refused past the deadline' });
    expect(r.closes.find((c) => c.id === b.id)?.reason).toBe(reason);
    // Renewed: forwarding again.
    r.relay.renew(60_000);
    const c = await r.pair();
    const atC = collect(c.client);
    c.backend.write('back');
    await waitFor(() => atC.text() === 'back', { timeoutMs: 3000, what: 'forwarding after the renewal' });
    r.relay.renew(-1);
  });

  it('stop() closes every connection, reports each, and refuses new work', { timeout: 10_000 }, async () => {
    const r = await rig(2);
    const pairs = await Promise.all([r.pair(), r.pair(), r.pair()]);
    await waitFor(() => r.relay.size() === 3, { timeoutMs: 3000, what: 'three adopted' });
    const watched = pairs.map((p) => collect(p.client));
    r.relay.stop();
    await waitFor(() => watched.every((w) => w.closed()), { timeoutMs: 3000, what: 'every client closed' });
    await waitFor(() => r.closes.length === 3, { timeoutMs: 3000, what: 'three close reports' });
    expect(new Set(r.closes.map((c) => c.reason))).toEqual(new Set(['closed by the proxy']));
    expect(() => r.relay.adopt(99, new net.Socket(), new net.Socket())).toThrow('the relay is stopped');
  });

  it('setKeepalive sets idle, interval and count on a socket (0 keeps a value), and reports the kernel values', { timeout: 10_000 }, async () => {
    const r = await rig(1);
    const { client } = await r.pair();
    expect(setKeepalive(client, 30, 5, 3)).toEqual({ idleS: 30, intervalS: 5, count: 3 });
    expect(setKeepalive(client, 0, 7, 0)).toEqual({ idleS: 30, intervalS: 7, count: 3 });
    expect(() => setKeepalive(client, 0, 0, 128)).toThrow(/TCP_KEEPCNT on fd \d+: Invalid argument/);
    expect(() => setKeepalive(new net.Socket(), 1, 1, 1)).toThrow(/no file descriptor/);
  });

  it('rejects a bad thread count and sockets without a descriptor, owning nothing then', () => {
    expect(() => new Relay(0, () => undefined)).toThrow(RangeError);
    expect(() => new Relay(1.5, () => undefined)).toThrow(RangeError);
    const relay = new Relay(1, () => undefined);
    cleanups.push(() => relay.stop());
    const a = new net.Socket();
    const b = new net.Socket();
    expect(() => relay.adopt(1, a, b)).toThrow(/no file descriptor/);
    expect(a.destroyed || b.destroyed).toBe(false);
    expect(relay.size()).toBe(0);
  });
});
