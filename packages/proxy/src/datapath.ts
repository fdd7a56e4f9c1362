/**
 * The two ways a forwarded connection's bytes move once its backend is dialled (`--data-path`):
 * {@link NativePath}, which hands both sockets to the relay threads (relay.ts), and the event
 * loop's Node streams ({@link backendReader}, {@link pipeBothWays}). Both apply backpressure and
 * forward half-close; everything else about a connection is the forwarder's (forwarder.ts).
 * More: docs/architecture.md, "The proxy".
 */
import type net from 'node:net';
import { errorMessage } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import { Relay, type RelayClose } from './relay.js';

/** Size of the reused buffer each backend read lands in (Node's default read size). */
const READ_BUFFER_BYTES = 64 * 1024;
/**
 * After one side of a connection ended cleanly, how long the other side may take to flush and
 * close before it is destroyed (so a slow peer cannot hold a half-closed pair forever).
 */
const LINGER_MS = 5_000;

/** Forgets a connection once both sides are closed; `how` ends its debug line, `extra` adds log fields. */
export type Release = (how: string, extra?: object) => void;

/** What a data path needs of a connection: its id, and the close of both sides (which it may replace). */
interface Carried {
  readonly id: number;
  /** Closes both sides at once: destroys the two sockets, or asks the relay once it holds them. */
  destroy: () => void;
}

/**
 * The native data path (`dataPath: 'native'`): owns the {@link Relay} threads and routes each
 * close they report to the connection's release.
 */
export class NativePath {
  private readonly relay: Relay;
  /** Release callbacks of the connections the relay holds, by connection id. */
  private readonly relayed = new Map<number, (c: RelayClose) => void>();
  private readonly log: Logger;

  /**
   * Starts `threads` relay threads.
   * @throws Error when the addon cannot be loaded or a thread cannot be started; RangeError for
   *   a bad `threads` (see {@link Relay}).
   */
  constructor(threads: number, log: Logger) {
    this.log = log;
    this.relay = new Relay(threads, (c) => this.relayed.get(c.id)?.(c));
  }

  /** Relay threads running. */
  threads(): number {
    return this.relay.threads();
  }

  /** Connections each relay thread holds now (index = thread). */
  loads(): number[] {
    return this.relay.loads();
  }

  /** The relay threads' dead-man deadline, `ms` from now (see {@link Relay.renew}). */
  renew(ms: number): void {
    this.relay.renew(ms);
  }

  /** Closes every relayed connection and stops the threads (each close is still reported). */
  stop(): void {
    this.relay.stop();
  }

  /**
   * Node reads nothing from either socket (the client was accepted paused; the backend is
   * paused before it connects); once the backend connected (and took `initial`), both are
   * handed to the relay, which reports the close. Until then a close of either socket closes
   * the other.
   */
  carry(conn: Carried, client: net.Socket, upstream: net.Socket, initial: Buffer | null, release: Release): void {
    const relay = this.relay;
    upstream.pause();
    let handedOff = false;
    let open = 2;
    const onClose = (): void => {
      if (handedOff) {
        return; // Node's descriptors only; the relay holds the connection
      }
      conn.destroy();
      if (--open === 0) {
        release('');
      }
    };
    client.once('close', onClose);
    upstream.once('close', onClose);
    const handOff = (): void => {
      if (client.destroyed || upstream.destroyed) {
        return; // closed meanwhile: the close handlers release the pair
      }
      this.relayed.set(conn.id, (c) => {
        this.relayed.delete(conn.id);
        release(`: ${c.reason}`, { bytesUp: c.bytesUp, bytesDown: c.bytesDown });
      });
      try {
        relay.adopt(conn.id, client, upstream);
      } catch (err) {
        this.relayed.delete(conn.id);
        this.log.warn({ conn: conn.id, err }, `connection ${conn.id}: cannot hand it to the relay (${errorMessage(err)}); closing it`);
        conn.destroy();
        return;
      }
      handedOff = true;
      conn.destroy = () => relay.close(conn.id);
    };
    upstream.once('connect', () => {
      if (initial !== null && initial.length > 0) {
        upstream.write(initial, (err) => (err ? conn.destroy() : handOff()));
      } else {
        handOff();
      }
    });
  }
}

/**
 * The backend → client half of the event-loop data path, as the backend socket's `onread`:
 * each read lands in one reused buffer instead of a fresh 64 KiB allocation per read (Node's
 * default). A write the kernel did not take at once keeps pointing into that buffer, so then the
 * next read gets a new one; when the client's write buffer is full, the backend is paused until
 * the client drained (backpressure). `bind` gives it the backend socket once created.
 */
export function backendReader(client: net.Socket): { onread: net.OnReadOpts; bind(upstream: net.Socket): void } {
  let readBuf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  let upstream: net.Socket | null = null;
  return {
    onread: {
      buffer: () => readBuf,
      callback: (n: number, buf: Uint8Array): boolean => {
        const flushed = client.write(buf.subarray(0, n));
        if (client.writableLength > 0) {
          readBuf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
        }
        if (!flushed) {
          client.once('drain', () => upstream?.resume());
          return false;
        }
        return true;
      },
    },
    bind: (u) => {
      upstream = u;
    },
  };
}

/**
 * The event-loop data path. Client → backend: pipe() (backpressure: a slow backend pauses the
 * client; a FIN is forwarded as a FIN). Backend → client: {@link backendReader}, same rules.
 * At most a highWaterMark plus the kernel's socket buffers are held per direction. Data sent
 * before the backend answered is queued until it connects. `release` is called once both
 * sockets closed.
 */
export function pipeBothWays(client: net.Socket, upstream: net.Socket, initial: Buffer | null, release: Release): void {
  let clientClosed = false;
  let upstreamClosed = false;
  // After one side closed, end the other (flushing what is queued) and destroy it if it
  // lingers, so no pair outlives its peer.
  const endThenDestroy = (s: net.Socket): void => {
    if (s.destroyed) {
      return;
    }
    s.end();
    setTimeout(() => s.destroy(), LINGER_MS).unref();
  };
  client.on('close', () => {
    clientClosed = true;
    endThenDestroy(upstream);
    if (upstreamClosed) {
      release('');
    }
  });
  upstream.on('close', () => {
    upstreamClosed = true;
    endThenDestroy(client);
    if (clientClosed) {
      release('');
    }
  });
  if (initial !== null && initial.length > 0) {
    upstream.write(initial);
  }
  client.pipe(upstream);
  upstream.on('end', () => client.end());
}
