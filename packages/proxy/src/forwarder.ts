/**
 * The forwarder: the table of forwarded connections and everything done per connection. It
 * accepts a client (or closes it when there is no target, or answers it as PostgreSQL would over
 * `--max-connections`), picks its backend from the shared {@link Routing}, dials it, sets
 * keepalive, moves the bytes on one of the two data paths (datapath.ts), and closes connections
 * on demand ({@link Forwarder.closeWhere}, for the fencing handshake in checker.ts). During a
 * planned switchover (`Routing.holdMs` > 0 with no target) a new main-listener client is held
 * instead of closed: accepted and left paused, connected to no backend, until the check loop
 * routes the new primary ({@link Forwarder.releaseHeld} then forwards it there) or its
 * `switchoverHoldTimeout` passes (closed). Holding happens before a connection is set up, so it
 * costs nothing per byte on established ones. More: docs/architecture.md, "The proxy".
 */
import net from 'node:net';
import type { Logger } from '@stolon-ts/common';
import { backendReader, pipeBothWays, type NativePath, type Release } from './datapath.js';
import type { Keepalive } from './keepalive.js';
import type { ProxyMetrics } from './metrics.js';
import { DECLINE_ENCRYPTION, MAX_STARTUP_PACKET_BYTES, TOO_MANY_CONNECTIONS, errorResponse, parseStartupPacket } from './pgwire.js';
import { formatAddress, type ProxyTarget } from './target.js';
import type { ListenerKind, Routing } from './types.js';
import { CLOSE_WAIT_MS, bounded } from './util.js';

/** How long dialling the primary may take before the client connection is closed. */
const CONNECT_TIMEOUT_MS = 5_000;
/** How long a client over the connection limit has to send its startup packet before it is dropped. */
const REFUSE_TIMEOUT_MS = 5_000;
/**
 * Most over-limit clients being refused at once (each waits up to REFUSE_TIMEOUT_MS for its
 * startup packet); past that they are closed at once, so a flood cannot exhaust descriptors.
 */
const MAX_REFUSING = 64;

/** One forwarded client connection and its connection to the backend. */
interface Pair {
  readonly id: number;
  readonly kind: ListenerKind;
  readonly target: ProxyTarget;
  /** Closes both sides at once: destroys the two sockets, or asks the relay once it holds them. */
  destroy: () => void;
  /** Resolves once both sides are closed (both sockets emitted `close`, or the relay reported it). */
  readonly closed: Promise<void>;
}

/** A main-listener client held during a planned switchover, waiting for the new primary. */
interface Held {
  readonly client: net.Socket;
  readonly from: string;
  /** performance.now() ms when it was accepted. */
  readonly since: number;
  /** Closes it at its `switchoverHoldTimeout`. */
  timer: NodeJS.Timeout | undefined;
}

/** `dbUid@host:port`: counts read-only connections per backend. */
function targetKey(t: ProxyTarget): string {
  return `${t.dbUid}@${formatAddress(t.host, t.port)}`;
}

/** What {@link Forwarder} needs. */
export interface ForwarderOptions {
  readonly log: Logger;
  /** Most connections forwarded at once, both listeners together; 0: no limit. */
  readonly maxConnections: number;
  /** TCP_KEEPIDLE for the backend sockets, in ms; 0: the kernel's. */
  readonly keepaliveIdleMs: number;
  /** Sets the keepalive interval and count on each socket (keepalive.ts). */
  readonly keepalive: Pick<Keepalive, 'apply'>;
  /** The native data path, or null: bytes are piped in the event loop. */
  readonly native: NativePath | null;
  /** Where new clients go, read on every accept (written by checker.ts). */
  readonly routing: Readonly<Routing>;
  /** True once the proxy is stopping: new clients (and over-limit cancel requests) are closed. */
  readonly stopping: () => boolean;
  /** Counts accepts, refusals and bytes (metrics.ts). */
  readonly metrics: Pick<ProxyMetrics, 'accepted' | 'refused' | 'closed'>;
}

/** The connection table; see the module header. */
export class Forwarder {
  private readonly log: Logger;
  private readonly maxConnections: number;
  private readonly keepaliveIdleMs: number;
  private readonly keepalive: Pick<Keepalive, 'apply'>;
  private readonly native: NativePath | null;
  private readonly routing: Readonly<Routing>;
  private readonly stopping: () => boolean;
  private readonly metrics: Pick<ProxyMetrics, 'accepted' | 'refused' | 'closed'>;

  private readonly pairs = new Set<Pair>();
  /** Connections forwarded now per listener (so {@link count} of one listener is O(1), for scrapes). */
  private readonly perKind: Record<ListenerKind, number> = { main: 0, ro: 0 };
  private nextPairId = 1;
  /** Read-only connections per backend (`targetKey`), for least-connections balancing. */
  private readonly roCounts = new Map<string, number>();
  /** Rotates ties between equally loaded standbys. */
  private roRotor = 0;
  private accepted = 0;
  private refused = 0;
  /** Clients refused for being over `maxConnections` (ErrorResponse or closed). */
  private overLimit = 0;
  /** Over-limit clients whose startup packet is awaited right now (destroyed by {@link dropRefusing}). */
  private readonly refusing = new Set<net.Socket>();
  /** True from the first over-limit refusal until the count is below the limit again (one warning per burst). */
  private overLimitWarned = false;
  /** Main-listener clients held now (planned switchover); see the module header. */
  private readonly held = new Set<Held>();
  /** True from the first held connection closed at its timeout until the hold ends (one warning per hold). */
  private holdTimeoutWarned = false;

  constructor(opts: ForwarderOptions) {
    this.log = opts.log;
    this.maxConnections = opts.maxConnections;
    this.keepaliveIdleMs = opts.keepaliveIdleMs;
    this.keepalive = opts.keepalive;
    this.native = opts.native;
    this.routing = opts.routing;
    this.stopping = opts.stopping;
    this.metrics = opts.metrics;
  }

  /** Connections forwarded now (each a client and its backend), on both listeners or on `kind`. */
  count(kind?: ListenerKind): number {
    return kind === undefined ? this.pairs.size : this.perKind[kind];
  }

  /**
   * Since start: connections forwarded, closed at once for want of a target, and refused over
   * `--max-connections`.
   */
  totals(): { accepted: number; refused: number; overLimit: number } {
    return { accepted: this.accepted, refused: this.refused, overLimit: this.overLimit };
  }

  /**
   * Destroys (both sides at once) every connection for which `stale(kind, backend)` is true and
   * waits until they all reported closed (both sockets emitted `close`, or the relay reported
   * it), at most CLOSE_WAIT_MS (then a warning is logged). Never rejects.
   * @returns how many were closed, per listener.
   */
  async closeWhere(stale: (kind: ListenerKind, target: ProxyTarget) => boolean): Promise<{ main: number; ro: number }> {
    const victims = [...this.pairs].filter((p) => stale(p.kind, p.target));
    for (const p of victims) {
      p.destroy();
    }
    if (victims.length > 0) {
      await bounded(Promise.all(victims.map((p) => p.closed)), CLOSE_WAIT_MS, 'closing connections').catch(
        (err: unknown) => this.log.warn({ err }, `connections did not report closed within ${CLOSE_WAIT_MS} ms`),
      );
    }
    const ro = victims.filter((p) => p.kind === 'ro').length;
    return { main: victims.length - ro, ro };
  }

  /** Main-listener clients held now, waiting for the new primary of a planned switchover. */
  heldCount(): number {
    return this.held.size;
  }

  /**
   * Acts on the held clients after the routing changed (call after every change of
   * `routing.target` or `routing.holdMs`): with a target, forwards each to it (their startup
   * packets, buffered in the kernel, go first); with none and no longer holding (or stopping),
   * closes them; while still holding, leaves them. Logs what it did once.
   */
  releaseHeld(): void {
    if (this.held.size === 0) {
      this.holdTimeoutWarned = false;
      return;
    }
    const target = this.routing.target;
    const stopping = this.stopping();
    if (target === null && this.routing.holdMs > 0 && !stopping) {
      return;
    }
    const list = [...this.held];
    this.held.clear();
    this.holdTimeoutWarned = false;
    const now = performance.now();
    let longest = 0;
    let n = 0;
    for (const h of list) {
      clearTimeout(h.timer);
      if (h.client.destroyed) {
        continue;
      }
      n++;
      longest = Math.max(longest, now - h.since);
      if (target === null || stopping) {
        this.refused++;
        this.metrics.refused('main', stopping ? 'stopping' : 'hold_timeout');
        h.client.destroy();
      } else {
        this.forward('main', h.client, target, h.from, null);
      }
    }
    if (n > 0) {
      const waited = `held up to ${Math.round(longest)} ms`;
      this.log.info(
        { held: n, longestMs: Math.round(longest), to: target === null ? null : formatAddress(target.host, target.port) },
        target === null || stopping
          ? `closed ${n} held connection${n === 1 ? '' : 's'} (${waited}): ${stopping ? 'stopping' : 'the planned switchover ended without a new primary routed'}`
          : `connected ${n} held connection${n === 1 ? '' : 's'} to the new primary ${formatAddress(target.host, target.port)} (${waited})`,
      );
    }
  }

  /**
   * Holds a main-listener client (paused, no backend) until {@link releaseHeld} or
   * `routing.holdMs` passes, then closes it (reason `hold_timeout`).
   */
  private hold(client: net.Socket, from: string): void {
    const holdMs = this.routing.holdMs;
    const h: Held = { client, from, since: performance.now(), timer: undefined };
    h.timer = setTimeout(() => {
      if (!this.held.delete(h)) {
        return;
      }
      this.refused++;
      this.metrics.refused('main', 'hold_timeout');
      client.destroy();
      const text = `closed held connection from ${from}: no new primary routed within switchoverHoldTimeout (${holdMs} ms)`;
      if (!this.holdTimeoutWarned) {
        this.holdTimeoutWarned = true;
        this.log.warn({ from, holdMs }, `${text}; further ones are logged at debug until the hold ends`);
      } else {
        this.log.debug({ from, holdMs }, text);
      }
    }, holdMs);
    client.once('close', () => {
      clearTimeout(h.timer);
      this.held.delete(h);
    });
    this.held.add(h);
    this.log.debug({ from, held: this.held.size, holdMs }, `holding connection from ${from}: planned switchover in progress`);
  }

  /** Destroys the over-limit clients still being refused (at stop). */
  dropRefusing(): void {
    for (const s of this.refusing) {
      s.destroy();
    }
  }

  /**
   * A client accepted (paused) on listener `kind`: refused over `--max-connections` (held clients
   * count), held when the main listener has no target during a planned switchover
   * (`routing.holdMs` > 0), closed at once when there is no target otherwise or the proxy is
   * stopping, else forwarded to its backend.
   */
  accept(kind: ListenerKind, client: net.Socket): void {
    const target = this.pick(kind);
    const from = `${client.remoteAddress ?? '?'}:${client.remotePort ?? '?'}`;
    client.on('error', () => undefined); // until the pair's own handlers take over; an RST must not crash us
    const stopping = this.stopping();
    const holding = target === null && kind === 'main' && this.routing.holdMs > 0 && !stopping;
    // Held clients count against the limit: each holds a descriptor and becomes a connection.
    if (this.maxConnections > 0 && this.pairs.size + this.held.size >= this.maxConnections && (holding || (target !== null && !stopping))) {
      this.refuseOverLimit(kind, client, from);
      return;
    }
    if (holding) {
      this.hold(client, from);
      return;
    }
    if (target === null || stopping) {
      this.refused++;
      this.metrics.refused(kind, target === null ? 'no_target' : 'stopping');
      // Closed at once: there is no backend this proxy may route to.
      client.destroy();
      this.log.debug(
        { from, listener: kind, refused: this.refused },
        `closed ${kind === 'ro' ? 'read-only ' : ''}connection from ${from}: no target (${this.routing.state})`,
      );
      return;
    }
    this.forward(kind, client, target, from, null);
  }

  /** The backend for a new connection on `kind`, or null: read-only picks the least loaded standby. */
  private pick(kind: ListenerKind): ProxyTarget | null {
    if (kind === 'main') {
      return this.routing.target;
    }
    const roTargets = this.routing.roTargets;
    const n = roTargets.length;
    let best: ProxyTarget | null = null;
    let bestCount = Infinity;
    for (let i = 0; i < n; i++) {
      const t = roTargets[(this.roRotor + i) % n];
      if (t === undefined) {
        continue;
      }
      const c = this.roCounts.get(targetKey(t)) ?? 0;
      if (c < bestCount) {
        best = t;
        bestCount = c;
      }
    }
    this.roRotor = n === 0 ? 0 : (this.roRotor + 1) % n;
    return best;
  }

  /**
   * Refuses a client over `maxConnections` the way PostgreSQL refuses one over max_connections:
   * read its startup packet (declining SSL/GSSAPI encryption with `N` first), answer a FATAL
   * ErrorResponse with SQLSTATE 53300, close. A CancelRequest is forwarded instead (it is short,
   * and cancelling a query on another connection must work even at the limit); garbage, or no
   * packet within REFUSE_TIMEOUT_MS, is closed without an answer.
   * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
   */
  private refuseOverLimit(kind: ListenerKind, client: net.Socket, from: string): void {
    this.overLimit++;
    this.metrics.refused(kind, 'max_connections');
    const limitText = `too many connections through stolon-proxy (limit ${this.maxConnections}, --max-connections)`;
    if (!this.overLimitWarned) {
      this.overLimitWarned = true;
      this.log.warn(
        { from, listener: kind, maxConnections: this.maxConnections, overLimit: this.overLimit },
        `refusing connection from ${from}: ${limitText}; further refusals are logged at debug until connections drop below the limit`,
      );
    } else {
      this.log.debug({ from, listener: kind, overLimit: this.overLimit }, `refusing connection from ${from}: ${limitText}`);
    }
    if (this.refusing.size >= MAX_REFUSING) {
      client.destroy();
      return;
    }
    this.refusing.add(client);
    const release = (): void => {
      this.refusing.delete(client);
    };
    const timer = setTimeout(() => client.destroy(), REFUSE_TIMEOUT_MS);
    timer.unref();
    client.once('close', () => {
      clearTimeout(timer);
      release();
    });
    let buf: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      for (;;) {
        const p = parseStartupPacket(buf);
        switch (p.kind) {
          case 'incomplete':
            if (buf.length > MAX_STARTUP_PACKET_BYTES) {
              client.destroy();
            }
            return;
          case 'ssl':
          case 'gssenc':
            // As a server without TLS: decline, the client goes on in plain text or gives up.
            client.write(DECLINE_ENCRYPTION);
            buf = buf.subarray(p.length);
            continue;
          case 'cancel': {
            client.off('data', onData);
            client.pause();
            clearTimeout(timer);
            release();
            const target = this.pick(kind);
            if (target === null || this.stopping()) {
              client.destroy();
            } else {
              this.forward(kind, client, target, from, buf);
            }
            return;
          }
          case 'startup':
            client.off('data', onData);
            client.end(errorResponse({ severity: 'FATAL', code: TOO_MANY_CONNECTIONS, message: limitText }));
            return;
          case 'invalid':
            this.log.debug({ from }, `closing over-limit connection from ${from}: ${p.reason}`);
            client.destroy();
            return;
        }
      }
    };
    client.on('data', onData);
    client.resume(); // accepted paused (pauseOnConnect)
  }

  /**
   * Pairs `client` with a new connection to `target`, then moves bytes both ways: in the native
   * relay (handed over once the backend connected) or piped in the event loop. `initial` (bytes
   * already read from the client) is sent to the backend first.
   */
  private forward(kind: ListenerKind, client: net.Socket, target: ProxyTarget, from: string, initial: Buffer | null): void {
    this.accepted++;
    this.metrics.accepted(kind);
    const id = this.nextPairId++;
    const to = formatAddress(target.host, target.port);
    const role = kind === 'main' ? 'primary' : 'read-only backend';
    let markClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      markClosed = resolve;
    });
    const reader = this.native === null ? backendReader(client) : null;
    const upstream = net.connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: this.keepaliveIdleMs,
      allowHalfOpen: true,
      ...(reader === null ? {} : { onread: reader.onread }),
    });
    reader?.bind(upstream);
    const pair: Pair = {
      id,
      kind,
      target,
      closed,
      destroy: () => {
        client.destroy();
        upstream.destroy();
      },
    };
    this.pairs.add(pair);
    this.perKind[kind]++;
    const key = targetKey(target);
    if (kind === 'ro') {
      this.roCounts.set(key, (this.roCounts.get(key) ?? 0) + 1);
    }
    this.log.debug({ conn: id, listener: kind, from, to, connections: this.pairs.size }, `connection ${id} from ${from} to ${to}`);
    /** Forgets the pair once both sides are closed; `how` ends the debug line. */
    const release: Release = (how, extra = {}) => {
      if (!this.pairs.delete(pair)) {
        return;
      }
      this.perKind[kind]--;
      // Bytes: the relay reports its own (plus what Node sent before the hand-off); on the
      // event-loop path each socket counted what it read.
      const relayed = extra as { bytesUp?: number; bytesDown?: number };
      if (this.native !== null) {
        this.metrics.closed(kind, (relayed.bytesUp ?? 0) + (initial?.length ?? 0), relayed.bytesDown ?? 0);
      } else {
        this.metrics.closed(kind, client.bytesRead, upstream.bytesRead);
      }
      if (kind === 'ro') {
        const n = (this.roCounts.get(key) ?? 1) - 1;
        if (n <= 0) {
          this.roCounts.delete(key);
        } else {
          this.roCounts.set(key, n);
        }
      }
      if (this.overLimitWarned && this.pairs.size < this.maxConnections) {
        this.overLimitWarned = false;
      }
      this.log.debug({ conn: id, connections: this.pairs.size, ...extra }, `connection ${id} closed${how}`);
      markClosed();
    };
    // Our own timer rather than socket.setTimeout: a socket timeout cleared with setTimeout(0)
    // is still refreshed on every read and write.
    const connectTimer = setTimeout(() => {
      this.log.warn({ conn: id, to }, `cannot connect to ${role} ${to} within ${CONNECT_TIMEOUT_MS} ms; closing connection ${id}`);
      pair.destroy();
    }, CONNECT_TIMEOUT_MS);
    let connected = false;
    upstream.on('connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      this.keepalive.apply(upstream, id);
    });
    this.keepalive.apply(client, id);
    upstream.once('close', () => clearTimeout(connectTimer));
    upstream.on('error', (err) => {
      if (!connected) {
        this.log.warn({ conn: id, to, err }, `connection ${id} to ${role} ${to} failed: ${err.message}`);
      } else {
        this.log.debug({ conn: id, to, err }, `connection ${id} to ${role} ${to}: ${err.message}`);
      }
      pair.destroy();
    });
    client.on('error', (err) => {
      this.log.debug({ conn: id, from, err }, `connection ${id} from ${from}: ${err.message}`);
      pair.destroy();
    });
    if (this.native !== null) {
      this.native.carry(pair, client, upstream, initial, release);
    } else {
      pipeBothWays(client, upstream, initial, release);
    }
  }
}
