/**
 * The `stolon-proxy` flag table (docs/design.md#flag-tables): Stolon's flag names and defaults
 * (from its cmd/proxy/cmd/proxy.go), the common store/log flags, and `STPROXY_*` environment
 * fallbacks. The same table drives the generated command docs.
 */
import { ConfigError } from '@stolon-ts/cluster';
import { COMMON_FLAGS, DAEMON_STOLON_FLAGS, addFlags, baseYargs, pickFlags, statusListenOf, type CommonConfig, type FlagTable } from '@stolon-ts/common';
import { DEFAULT_MAX_CONNECTIONS, MAX_RELAY_THREADS, type DataPath, type ProxyConfig } from './types.js';
import { loadRelayAddon } from './relay.js';

/** Environment prefix of the proxy's flag fallbacks (`STPROXY_LISTEN_ADDRESS`, ...). */
export const PROXY_ENV_PREFIX = 'STPROXY';

/** The program name used in usage text and error lines. */
export const PROXY_PROGRAM = 'stolon-proxy';

/**
 * Everything `stolon-proxy` reads from flags: the common flags plus one field per proxy flag
 * (the bin maps them to a {@link ProxyConfig}; without `--uid` the uid is random per process
 * start, as in Stolon).
 */
export interface ProxyFlagConfig extends CommonConfig {
  /** `--uid`; undefined: random per process start. */
  uid: string | undefined;
  listenAddress: string;
  port: number;
  stopListening: boolean;
  /** 0: no limit. */
  maxConnections: number;
  /** Seconds; 0: the kernel's default. */
  tcpKeepaliveIdle: number;
  /** Probes; 0: default. Set through the relay addon. */
  tcpKeepaliveCount: number;
  /** Seconds; 0: default. Set through the relay addon. */
  tcpKeepaliveInterval: number;
  /** "" means the same as `listenAddress`. */
  roListenAddress: string;
  /** 0 (the default): no read-only listener. */
  roPort: number;
  roMaxLagBytes: number;
  roFallbackToPrimary: boolean;
  dataPath: DataPath;
  /** 0: one per CPU, at most 4. */
  relayThreads: number;
  memberTokenFile: string | undefined;
  /** host:port of the status endpoint; undefined or "": none. */
  metricsListenAddress: string | undefined;
}

/** Default of `--ro-max-lag-bytes`: 1 MiB, the cluster spec's default `maxStandbyLag`. */
export const DEFAULT_RO_MAX_LAG_BYTES = 1024 * 1024;

/** The proxy's flags; a mapped type makes a missing entry a compile error. */
export const PROXY_FLAGS: FlagTable<ProxyFlagConfig> = {
  ...COMMON_FLAGS,
  uid: {
    name: 'uid',
    description:
      'proxy uid ([a-z0-9_]+, unique in the cluster: two live proxies with one uid would share one info). Default: random per ' +
      'process start, as in Stolon. A fixed uid (e.g. proxy<ordinal> of a StatefulSet pod) makes the name of its info known in ' +
      'advance, so Kubernetes RBAC can limit the proxy to its own Lease',
    type: 'string',
  },
  listenAddress: {
    name: 'listen-address',
    description: 'proxy listening address',
    type: 'string',
    default: '127.0.0.1',
  },
  port: { name: 'port', description: 'proxy listening port', type: 'number', default: 5432 },
  stopListening: {
    name: 'stop-listening',
    description:
      'stop listening on store errors (no successful check within proxyTimeout); listening resumes on the next successful check. ' +
      'Either way nothing is routed while the store cannot be read',
    type: 'boolean',
    default: true,
  },
  maxConnections: {
    name: 'max-connections',
    description:
      'most client connections forwarded at once (both listeners); a client over it gets the PostgreSQL error ' +
      '"too many connections through stolon-proxy" (SQLSTATE 53300). 0: no limit',
    type: 'number',
    default: DEFAULT_MAX_CONNECTIONS,
  },
  tcpKeepaliveIdle: {
    name: 'tcp-keepalive-idle',
    description:
      'seconds a connection is idle before TCP keepalive probes start, on both sides (0: the kernel default, ' +
      'net.ipv4.tcp_keepalive_time); probes then follow --tcp-keepalive-interval and --tcp-keepalive-count (default: every 1 s, 10 times)',
    type: 'number',
    default: 0,
  },
  tcpKeepaliveCount: {
    name: 'tcp-keepalive-count',
    description:
      'keepalive probes before a silent peer is dropped, on both sides (TCP_KEEPCNT, set by the native relay addon; 0: 10 with --tcp-keepalive-idle, else the kernel default)',
    type: 'number',
    default: 0,
  },
  tcpKeepaliveInterval: {
    name: 'tcp-keepalive-interval',
    description:
      'seconds between keepalive probes, on both sides (TCP_KEEPINTVL, set by the native relay addon; 0: 1 s with --tcp-keepalive-idle, else the kernel default)',
    type: 'number',
    default: 0,
  },
  roListenAddress: {
    name: 'ro-listen-address',
    description: 'read-only listener address (default: the --listen-address)',
    type: 'string',
    default: '',
  },
  roPort: {
    name: 'ro-port',
    description:
      'read-only listener port: balances new connections over healthy standbys within --ro-max-lag-bytes of the primary (0: no read-only listener)',
    type: 'number',
    default: 0,
  },
  roMaxLagBytes: {
    name: 'ro-max-lag-bytes',
    description:
      "most bytes of WAL a standby's replayed position may be behind the primary's, as last reported in clusterdata, to take read-only connections",
    type: 'number',
    default: DEFAULT_RO_MAX_LAG_BYTES,
  },
  roFallbackToPrimary: {
    name: 'ro-fallback-to-primary',
    description: 'send read-only connections to the primary when no standby qualifies',
    type: 'boolean',
    default: false,
  },
  dataPath: {
    name: 'data-path',
    description:
      'how bytes are forwarded once a connection is set up: native (relay threads outside the JavaScript event loop, ' +
      'built by `npm run build`) or event-loop (Node streams on the main thread, about 0.65 of the throughput)',
    type: 'string',
    default: 'native',
    choices: ['native', 'event-loop'],
  },
  relayThreads: {
    name: 'relay-threads',
    description: 'native relay threads (0: one per CPU, at most 4); each connection stays on the least loaded thread when it opened',
    type: 'number',
    default: 0,
  },
  memberTokenFile: {
    name: 'member-token-file',
    description:
      "file holding the keepers' member API token (or set STPROXY_MEMBER_TOKEN): in failsafe mode the proxy keeps routing " +
      "through a store outage while the primary's keeper confirms its role. Unset: routing stops proxyTimeout into an outage",
    type: 'string',
    secretFile: true,
  },
  metricsListenAddress: {
    name: 'metrics-listen-address',
    description:
      'host:port of the HTTP status endpoint (e.g. 127.0.0.1:8080): GET /healthz (200 while the check loop runs), GET /readyz ' +
      '(200 while routing to a primary with a successful check within proxyTimeout) and, with --ro-port, GET /readyz/read-only ' +
      '(200 with at least one read-only target); no metrics yet. Unset: no endpoint',
    type: 'string',
  },
};

function flagOfYargsMessage(msg: string): string | undefined {
  const m =
    /Missing required argument[s]?: ([\w-]+)/.exec(msg) ??
    /Unknown arguments?: ([\w-]+)/.exec(msg) ??
    /Argument: ([\w-]+), Given/.exec(msg) ??
    /--([\w-]+)/.exec(msg);
  return m?.[1];
}

/**
 * Parses and checks the proxy's command line (flags win over `STPROXY_*` variables, variables
 * over defaults).
 * @param args `process.argv.slice(2)`
 * @param env usually `process.env`
 * @param warnings receives the warnings of Stolon's flags given (e.g. `--log-color`), to log
 * @throws ConfigError with `field` set to the flag name, as one line: unknown flag, missing
 *   `--cluster-name`/`--store-backend`, a bad choice, `--port` not an integer in 0–65535, an
 *   empty `--listen-address`, a negative or fractional count, `--ro-port` equal to `--port` on
 *   the same address, `--data-path native` when the relay addon is not built, a
 *   `--metrics-listen-address` that is not host:port, a `--uid` outside [a-z0-9_]+.
 */
export function parseProxyArgs(args: readonly string[], env: NodeJS.ProcessEnv, warnings: string[] = []): ProxyFlagConfig {
  let argv: Record<string, unknown>;
  try {
    argv = addFlags(baseYargs(args, PROXY_PROGRAM), PROXY_FLAGS, PROXY_ENV_PREFIX, env, { flags: DAEMON_STOLON_FLAGS, warnings })
      .fail((msg: string | null | undefined, err: Error | undefined) => {
        const raw = msg ?? err?.message ?? 'invalid arguments';
        // yargs puts our demandOption text ("--x (or STPROXY_X) is required") after its own line.
        const lines = raw.split('\n');
        const useful = lines[0]?.startsWith('Missing required argument') && lines.length > 1 ? lines.slice(1) : lines;
        const text = useful.join(' ').replace(/\s+/g, ' ').trim();
        const field = flagOfYargsMessage(text);
        throw new ConfigError(text, field === undefined ? {} : { field });
      })
      .parseSync() as Record<string, unknown>;
  } catch (err) {
    if (err instanceof ConfigError) {
      throw err;
    }
    throw new ConfigError((err as Error).message.replace(/\s+/g, ' ').trim(), { cause: err });
  }
  const c = pickFlags(argv, PROXY_FLAGS);
  if (typeof c.port !== 'number' || !Number.isInteger(c.port) || c.port < 0 || c.port > 65535) {
    throw new ConfigError(`--port: ${JSON.stringify(argv['port'])} is not a TCP port (an integer 0-65535)`, {
      field: 'port',
    });
  }
  if (typeof c.listenAddress !== 'string' || c.listenAddress.trim() === '') {
    throw new ConfigError('--listen-address: empty; give an address such as 127.0.0.1 or 0.0.0.0', {
      field: 'listen-address',
    });
  }
  const counts: [keyof ProxyFlagConfig, string, number][] = [
    ['maxConnections', 'max-connections', Number.MAX_SAFE_INTEGER],
    ['tcpKeepaliveIdle', 'tcp-keepalive-idle', 32_767], // Linux's MAX_TCP_KEEPIDLE
    ['tcpKeepaliveCount', 'tcp-keepalive-count', 127], // MAX_TCP_KEEPCNT
    ['tcpKeepaliveInterval', 'tcp-keepalive-interval', 32_767], // MAX_TCP_KEEPINTVL
    ['roPort', 'ro-port', 65535],
    ['roMaxLagBytes', 'ro-max-lag-bytes', Number.MAX_SAFE_INTEGER],
    ['relayThreads', 'relay-threads', MAX_RELAY_THREADS],
  ];
  for (const [key, flag, max] of counts) {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
      throw new ConfigError(`--${flag}: ${JSON.stringify(argv[flag])} is not an integer from 0 to ${max}`, { field: flag });
    }
  }
  if (c.roPort !== 0 && c.roPort === c.port && (c.roListenAddress === '' || c.roListenAddress === c.listenAddress)) {
    throw new ConfigError(`--ro-port: ${c.roPort} is also --port; give the read-only listener its own port`, { field: 'ro-port' });
  }
  if (c.uid !== undefined && !/^[a-z0-9_]+$/.test(c.uid)) {
    throw new ConfigError(`--uid: ${JSON.stringify(c.uid)} must match [a-z0-9_]+ (e.g. proxy0)`, { field: 'uid' });
  }
  statusListenOf(c.metricsListenAddress, 'metrics-listen-address');
  if (c.dataPath === 'native') {
    const addon = loadRelayAddon();
    if ('error' in addon) {
      throw new ConfigError(`--data-path native: ${addon.error}; or pass --data-path event-loop (slower)`, { field: 'data-path' });
    }
  }
  return c;
}

/**
 * The {@link ProxyConfig} (less `uid`) a parsed command line asks for: `--ro-port 0` means no
 * read-only listener, an empty `--ro-listen-address` the main `--listen-address`.
 */
export function proxyConfigFromFlags(c: ProxyFlagConfig): Omit<ProxyConfig, 'uid'> {
  return {
    listenAddress: c.listenAddress,
    port: c.port,
    stopListening: c.stopListening,
    maxConnections: c.maxConnections,
    tcpKeepaliveIdleS: c.tcpKeepaliveIdle,
    tcpKeepaliveCount: c.tcpKeepaliveCount,
    tcpKeepaliveIntervalS: c.tcpKeepaliveInterval,
    dataPath: c.dataPath,
    relayThreads: c.relayThreads,
    readOnly:
      c.roPort === 0
        ? null
        : {
            listenAddress: c.roListenAddress === '' ? c.listenAddress : c.roListenAddress,
            port: c.roPort,
            maxLagBytes: c.roMaxLagBytes,
            fallbackToPrimary: c.roFallbackToPrimary,
          },
  };
}
