/**
 * The proxy's listening sockets: the main port and the optional read-only port (`--ro-port`),
 * opened and closed together to match what the check loop and the watchdog want (checker.ts),
 * through one queue so an open and a close never interleave. A listener re-opens on the port it
 * first bound. Accepted clients go to the forwarder (forwarder.ts). More: docs/architecture.md,
 * "The proxy".
 */
import net from 'node:net';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import { formatAddress } from './target.js';
import type { ListenerKind } from './types.js';
import { CLOSE_WAIT_MS, bounded } from './util.js';

/** Where one listener listens; `port` 0 lets the OS choose. */
interface ListenAt {
  readonly address: string;
  readonly port: number;
}

/** What {@link Listeners} needs. */
export interface ListenersOptions {
  readonly main: ListenAt;
  /** The read-only listener; null: none. */
  readonly ro: ListenAt | null;
  /** TCP_KEEPIDLE of accepted sockets, in ms; 0: the kernel's. */
  readonly keepaliveIdleMs: number;
  readonly log: Logger;
  /** Gets every accepted client, paused (Node reads nothing until told to). */
  readonly onConnection: (kind: ListenerKind, client: net.Socket) => void;
  /** Called after every reconciliation that left the listeners open (the proxy is then ready). */
  readonly onListening: () => void;
  /** A listener could not be opened (a StolonError naming the address): fatal for the proxy. */
  readonly onError: (err: unknown) => void;
  /** True once the proxy is stopping: the listeners are then closed whatever is wanted. */
  readonly stopping: () => boolean;
}

/** One listening socket. */
interface Listener {
  readonly kind: ListenerKind;
  readonly address: string;
  readonly configuredPort: number;
  /** The port first bound (re-used on re-open, so port-0 users find it again). */
  boundPort: number | null;
  server: net.Server | null;
}

/** The main and read-only listeners, reconciled to {@link setWanted} by {@link sync}. */
export class Listeners {
  private readonly main: Listener;
  private readonly ro: Listener | null;
  private readonly opts: ListenersOptions;
  private wanted = false;
  private queue: Promise<void> = Promise.resolve();

  constructor(opts: ListenersOptions) {
    this.opts = opts;
    this.main = { kind: 'main', address: opts.main.address, configuredPort: opts.main.port, boundPort: null, server: null };
    this.ro =
      opts.ro === null ? null : { kind: 'ro', address: opts.ro.address, configuredPort: opts.ro.port, boundPort: null, server: null };
  }

  /** The main listener's port: the one bound once it opened (useful with port 0), else the configured one. */
  mainPort(): number {
    return this.main.boundPort ?? this.main.configuredPort;
  }

  /** As {@link mainPort}, for the read-only listener; null when there is none. */
  roPort(): number | null {
    return this.ro === null ? null : (this.ro.boundPort ?? this.ro.configuredPort);
  }

  /** Whether the listeners should be open; takes effect at the next {@link sync}. */
  setWanted(listen: boolean): void {
    this.wanted = listen;
  }

  /**
   * Brings the listeners to what is wanted (queued: open and close never interleave). Never
   * rejects: a listener that cannot be opened goes to `onError`.
   */
  sync(): Promise<void> {
    const next = this.queue.then(() => this.reconcile()).catch((err: unknown) => this.opts.onError(err));
    this.queue = next;
    return next;
  }

  private async reconcile(): Promise<void> {
    const want = this.wanted && !this.opts.stopping();
    for (const l of this.ro === null ? [this.main] : [this.main, this.ro]) {
      if (want && l.server === null) {
        await this.open(l);
      } else if (!want && l.server !== null) {
        await this.close(l);
      }
    }
    if (want) {
      this.opts.onListening();
    }
  }

  private async open(l: Listener): Promise<void> {
    const server = net.createServer(
      {
        noDelay: true,
        keepAlive: true,
        // 0: libuv's TCP_KEEPIDLE 0 is refused by Linux and the kernel's keepalive time stays.
        keepAliveInitialDelay: this.opts.keepaliveIdleMs,
        // A client's FIN is forwarded to the backend (pipe ends it) while the backend's answer
        // still flows back; without this, Node would end our side at once and lose that answer.
        allowHalfOpen: true,
        // Node reads nothing until told to: the relay must find every client byte in the kernel.
        pauseOnConnect: true,
      },
      (s) => this.opts.onConnection(l.kind, s),
    );
    // Re-open on the port first bound, so clients (and port 0 users) find us again.
    const port = l.boundPort ?? l.configuredPort;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: l.address, port }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new StolonError('INTERNAL', `cannot listen on ${formatAddress(l.address, port)}: ${errorMessage(err)}`, {
        cause: err,
      });
    });
    server.on('error', (err) => {
      // Accept errors (EMFILE...) after listening: the server keeps accepting; report them.
      this.opts.log.warn({ err }, `listener error on ${formatAddress(l.address, l.boundPort ?? port)}: ${err.message}`);
    });
    l.server = server;
    const addr = server.address();
    l.boundPort = addr !== null && typeof addr === 'object' ? addr.port : port;
    // The e2e harness waits for the main line: keep it starting with "proxy listening on".
    this.opts.log.info(
      { listener: l.kind, listenAddress: l.address, port: l.boundPort },
      `${l.kind === 'main' ? 'proxy listening' : 'proxy listening (read-only)'} on ${formatAddress(l.address, l.boundPort)}`,
    );
  }

  private async close(l: Listener): Promise<void> {
    const server = l.server;
    if (server === null) {
      return;
    }
    l.server = null;
    // close() stops accepting now; its callback waits for the server's connections, which are
    // destroyed separately (the forwarder), so this is short; bounded anyway.
    await bounded(
      new Promise<void>((resolve) => server.close(() => resolve())),
      CLOSE_WAIT_MS,
      'closing the listener',
    ).catch(() => undefined);
    this.opts.log.info(
      { listener: l.kind, listenAddress: l.address, port: l.boundPort },
      `proxy stopped listening${l.kind === 'ro' ? ' (read-only)' : ''} on ${formatAddress(l.address, l.boundPort ?? l.configuredPort)}`,
    );
  }
}
