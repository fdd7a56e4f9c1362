/**
 * The proxy's native data path: a wrapper around the `relay.node` addon (`native/relay.c`).
 *
 * Once the proxy has accepted a client and connected to its backend, it hands both sockets to
 * a relay thread, which copies bytes both ways outside the JavaScript event loop (one read and
 * one send per message, backpressure, half-close) until either side closes or the proxy
 * closes the connection. Every routing decision stays in TypeScript (`checker.ts` decides,
 * `forwarder.ts` and `datapath.ts` act); the relay only moves bytes.
 *
 * Why: on a 2-core machine where pgbench, PostgreSQL and the proxy share the CPU, forwarding in
 * the event loop cost about 40 µs of CPU per select-only transaction and reached 0.63 of
 * HAProxy's throughput; the relay costs about 23 µs (HAProxy 27 µs). See docs/benchmarks.md.
 */
import { createRequire } from 'node:module';
import type net from 'node:net';
import os from 'node:os';

/** The addon's functions (see `native/relay.c` for their exact contracts). */
interface RelayAddon {
  create(onClose: (id: number, reason: string, bytesUp: number, bytesDown: number) => void): unknown;
  adopt(handle: unknown, id: number, clientFd: number, backendFd: number): void;
  close(handle: unknown, id: number): void;
  deadline(handle: unknown, ms: number): void;
  stop(handle: unknown): void;
  keepalive(fd: number, idleS: number, intervalS: number, count: number): [number, number, number];
  /** [TCP_NODELAY, SO_KEEPALIVE] as 0/1. */
  sockopts(fd: number): [number, number];
}

/** Where `npm run build` (node-gyp) puts the addon, relative to this file in `dist/`. */
const ADDON_PATH = '../build/Release/relay.node';

let loaded: { addon: RelayAddon } | { error: string } | undefined;

/**
 * Loads the addon once. @returns the addon, or why it cannot be used (not built: `npm run
 * build` builds it with node-gyp, which needs python3, make and a C compiler; or not Linux).
 */
export function loadRelayAddon(): { addon: RelayAddon } | { error: string } {
  if (loaded === undefined) {
    if (process.platform !== 'linux') {
      loaded = { error: `the native relay uses epoll and runs on Linux only (this is ${process.platform})` };
    } else {
      try {
        loaded = { addon: createRequire(import.meta.url)(ADDON_PATH) as RelayAddon };
      } catch (err) {
        loaded = {
          error:
            `cannot load the native relay (${ADDON_PATH} from packages/proxy/dist): ${err instanceof Error ? err.message : String(err)}; ` +
            'build it with `npm run build` (node-gyp: needs python3, make and a C compiler)',
        };
      }
    }
  }
  return loaded;
}

/**
 * Default relay thread count: one per CPU this process may run on, at most 4 (a thread costs
 * nothing while idle; more threads than CPUs only add context switches).
 */
export function defaultRelayThreads(): number {
  return Math.min(4, Math.max(1, os.availableParallelism()));
}

/** Why a relayed connection ended and how many bytes crossed it. */
export interface RelayClose {
  /** The id given to {@link Relay.adopt}. */
  readonly id: number;
  /** E.g. `closed` (both sides ended), `client read: Connection reset by peer`, `closed by the proxy`. */
  readonly reason: string;
  /** Bytes client → backend. */
  readonly bytesUp: number;
  /** Bytes backend → client. */
  readonly bytesDown: number;
}

/** The file descriptor behind a connected `net.Socket`; -1 when it has none (closed, or not TCP). */
function socketFd(s: net.Socket): number {
  const handle = (s as unknown as { _handle?: { fd?: unknown } | null })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

/** TCP keepalive settings of a socket, as the kernel reports them. */
export interface KeepaliveSettings {
  /** TCP_KEEPIDLE, seconds. */
  readonly idleS: number;
  /** TCP_KEEPINTVL, seconds. */
  readonly intervalS: number;
  /** TCP_KEEPCNT, probes. */
  readonly count: number;
}

/**
 * Turns TCP keepalive on for a connected socket and sets each non-zero one of TCP_KEEPIDLE,
 * TCP_KEEPINTVL and TCP_KEEPCNT (Stolon's `--tcp-keepalive-idle/-interval/-count`; Node itself
 * can set only the idle time). Works on either data path: it needs the addon, not a relay.
 * @returns the three values in effect afterwards (the kernel's for those left at 0).
 * @throws Error when the addon is not built, the socket has no descriptor, or setsockopt fails
 *   (e.g. a value above Linux's maximum: 32767 s, 32767 s, 127 probes).
 * @see https://man7.org/linux/man-pages/man7/tcp.7.html
 */
export function setKeepalive(s: net.Socket, idleS: number, intervalS: number, count: number): KeepaliveSettings {
  const l = loadRelayAddon();
  if ('error' in l) {
    throw new Error(l.error);
  }
  const fd = socketFd(s);
  if (fd < 0) {
    throw new Error('setKeepalive: the socket has no file descriptor');
  }
  const [gotIdle, gotInterval, gotCount] = l.addon.keepalive(fd, idleS, intervalS, count);
  return { idleS: gotIdle, intervalS: gotInterval, count: gotCount };
}

/**
 * A pool of relay threads. Each connection goes to the thread with the fewest connections and
 * stays there. `onClose` is called on the main thread once per adopted connection, after both
 * of its sockets were closed (both directions ended, an error or reset, or {@link close}).
 */
export class Relay {
  private readonly addon: RelayAddon;
  private readonly onClose: (c: RelayClose) => void;
  private readonly handles: unknown[];
  private readonly load: number[];
  /** Thread index of every connection not yet reported closed. */
  private readonly owner = new Map<number, number>();
  private stopped = false;

  /**
   * @param threads relay threads, ≥ 1.
   * @throws Error when the addon cannot be loaded (the message says how to build it) or a
   *   thread cannot be started; RangeError for a bad `threads`.
   */
  constructor(threads: number, onClose: (c: RelayClose) => void) {
    this.onClose = onClose;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`relay threads must be an integer ≥ 1, got ${threads}`);
    }
    const l = loadRelayAddon();
    if ('error' in l) {
      throw new Error(l.error);
    }
    this.addon = l.addon;
    this.handles = [];
    this.load = [];
    try {
      for (let i = 0; i < threads; i++) {
        this.handles.push(this.addon.create((id, reason, bytesUp, bytesDown) => this.closed(i, { id, reason, bytesUp, bytesDown })));
        this.load.push(0);
      }
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Relay threads. */
  threads(): number {
    return this.handles.length;
  }

  /** Connections each thread holds now (index = thread); a copy, O(threads). */
  loads(): number[] {
    return [...this.load];
  }

  /** Connections currently held. */
  size(): number {
    return this.owner.size;
  }

  /**
   * Hands both connected sockets to a relay thread: their descriptors are duplicated, then the
   * two `net.Socket`s are destroyed (that closes only Node's descriptors; the connection lives
   * on in the relay). Bytes Node has not read stay in the kernel for the relay, so `client` must
   * have been paused since accept (`pauseOnConnect`) and `backend` since before it connected.
   * @throws Error when a socket has no descriptor or was already read from (it then destroys
   *   nothing: the caller still owns both sockets), or after {@link stop}.
   */
  adopt(id: number, client: net.Socket, backend: net.Socket): void {
    if (this.stopped) {
      throw new Error('the relay is stopped');
    }
    const fds = [socketFd(client), socketFd(backend)] as const;
    if (fds[0] < 0 || fds[1] < 0) {
      throw new Error(`connection ${id}: a socket has no file descriptor (closed before hand-off)`);
    }
    if (client.readableLength > 0 || backend.readableLength > 0) {
      throw new Error(`connection ${id}: Node already buffered bytes of this connection; they would be lost`);
    }
    let best = 0;
    for (let i = 1; i < this.load.length; i++) {
      if ((this.load[i] ?? 0) < (this.load[best] ?? 0)) {
        best = i;
      }
    }
    this.addon.adopt(this.handles[best], id, fds[0], fds[1]);
    this.owner.set(id, best);
    this.load[best] = (this.load[best] ?? 0) + 1;
    client.destroy();
    backend.destroy();
  }

  /**
   * The dead-man switch: from `ms` milliseconds from now on, every relay thread closes all its
   * connections and refuses new ones, until the next call (negative `ms`: no deadline, the
   * default). The proxy renews it after every successful check, to 250 ms after its watchdog
   * would fire, so a main thread that stalls (and so can neither check nor fire its watchdog) cannot
   * leave bytes flowing to a former primary past `proxyTimeout`. Their `onClose` reason then says
   * the routing was not renewed in time.
   */
  renew(ms: number): void {
    if (this.stopped) {
      return;
    }
    for (const h of this.handles) {
      this.addon.deadline(h, ms);
    }
  }

  /** Closes connection `id` (both sockets, at once) if the relay holds it; `onClose` follows. */
  close(id: number): void {
    const t = this.owner.get(id);
    if (t !== undefined && !this.stopped) {
      this.addon.close(this.handles[t], id);
    }
  }

  /**
   * Closes every connection and stops the threads; waits (synchronously, briefly) for them to
   * exit. `onClose` still follows for each connection. Idempotent.
   */
  stop(): void {
    if (this.stopped) {
      return;
    }
    this.stopped = true;
    for (const h of this.handles) {
      this.addon.stop(h);
    }
  }

  private closed(thread: number, c: RelayClose): void {
    if (this.owner.delete(c.id)) {
      this.load[thread] = (this.load[thread] ?? 1) - 1;
    }
    this.onClose(c);
  }
}
