/**
 * TCP keepalive on both sides of every connection, beyond what Node sets itself (keepalive on
 * and the idle time, where the sockets are made: listeners.ts, forwarder.ts): the interval and
 * the probe count (`--tcp-keepalive-interval`, `--tcp-keepalive-count`), which only the relay
 * addon can set (relay.ts `setKeepalive`). Decided and logged once at start, applied per socket.
 */
import type net from 'node:net';
import { errorMessage } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import { loadRelayAddon, setKeepalive } from './relay.js';

/** The keepalive flags (ProxyConfig `tcpKeepalive*`, in types.ts; 0: not set). */
export interface KeepaliveOptions {
  /** TCP_KEEPIDLE in ms (a whole number of seconds); 0: the kernel's. */
  readonly idleMs: number;
  /** TCP_KEEPINTVL in seconds; 0: libuv's or the kernel's. */
  readonly intervalS: number;
  /** TCP_KEEPCNT; 0: libuv's or the kernel's. */
  readonly count: number;
}

/** The interval and count part of TCP keepalive: {@link announce} at start, then {@link apply} to each socket. */
export class Keepalive {
  /** True when the interval or count is set and the addon can apply them (setsockopt per socket). */
  private bySockopt = false;
  private readonly opts: KeepaliveOptions;
  private readonly log: Logger;

  constructor(opts: KeepaliveOptions, log: Logger) {
    this.opts = opts;
    this.log = log;
  }

  /**
   * Decides, once at start, whether the interval and count can be applied and logs what is in
   * effect: an info line when they can, a warning naming what applies instead when the addon is
   * not built (a Stolon command line keeps working). Logs nothing when neither is set.
   */
  announce(): void {
    const { idleMs, intervalS, count } = this.opts;
    if (count === 0 && intervalS === 0) {
      return;
    }
    const addon = loadRelayAddon();
    if ('error' in addon) {
      // Said at start rather than refused, so Stolon command lines keep working.
      const inEffect =
        idleMs > 0
          ? 'probes every 1 s, 10 of them (set by libuv with --tcp-keepalive-idle)'
          : "the kernel's net.ipv4.tcp_keepalive_intvl and tcp_keepalive_probes";
      this.log.warn(
        { tcpKeepaliveCount: count, tcpKeepaliveIntervalS: intervalS },
        `--tcp-keepalive-count ${count} and --tcp-keepalive-interval ${intervalS} are not applied: ` +
          `Node cannot set TCP_KEEPCNT or TCP_KEEPINTVL and ${addon.error}; in effect: ${inEffect}`,
      );
    } else {
      this.bySockopt = true;
      this.log.info(
        { tcpKeepaliveCount: count, tcpKeepaliveIntervalS: intervalS },
        `TCP keepalive on both sides of every connection: idle ${idleMs > 0 ? `${idleMs / 1000} s` : "the kernel's"}, ` +
          `interval ${intervalS > 0 ? `${intervalS} s` : idleMs > 0 ? '1 s (libuv)' : "the kernel's"}, ` +
          `${count > 0 ? `${count} probes` : idleMs > 0 ? '10 probes (libuv)' : "the kernel's probe count"}`,
      );
    }
  }

  /**
   * Sets TCP_KEEPINTVL and TCP_KEEPCNT (and TCP_KEEPIDLE again) on a connected socket when
   * `--tcp-keepalive-interval` or `--tcp-keepalive-count` asked for them; Node has set keepalive
   * and the idle time already. A failure is logged (as connection `conn`); the connection goes
   * on with Node's settings. Never throws.
   */
  apply(s: net.Socket, conn: number): void {
    if (!this.bySockopt) {
      return;
    }
    try {
      setKeepalive(s, this.opts.idleMs / 1000, this.opts.intervalS, this.opts.count);
    } catch (err) {
      this.log.warn({ conn, err }, `connection ${conn}: cannot set TCP keepalive interval and count: ${errorMessage(err)}`);
    }
  }
}
