/**
 * The `stolon-proxy` flag table (STYLE.md rule 14): Stolon's flag names and defaults, the common
 * store/log flags, and `STPROXY_*` environment fallbacks. The same table drives the generated
 * command docs.
 * @see ../../../../shared/reference/stolon.md §6 (Stolon `cmd/proxy/cmd/proxy.go` flags)
 */
import { ConfigError } from '@stolon-ts/cluster';
import { COMMON_FLAGS, addFlags, baseYargs, pickFlags, type CommonConfig, type FlagTable } from '@stolon-ts/common';
import type { ProxyConfig } from './proxy.js';

/** Environment prefix of the proxy's flag fallbacks (`STPROXY_LISTEN_ADDRESS`, ...). */
export const PROXY_ENV_PREFIX = 'STPROXY';

/** The program name used in usage text and error lines. */
export const PROXY_PROGRAM = 'stolon-proxy';

/**
 * Everything `stolon-proxy` reads from flags: the common flags plus the {@link ProxyConfig}
 * fields except `uid` (random per process start, as in Stolon).
 */
export type ProxyFlagConfig = CommonConfig & Required<Omit<ProxyConfig, 'uid'>>;

/** The proxy's flags; a mapped type makes a missing entry a compile error. */
export const PROXY_FLAGS: FlagTable<ProxyFlagConfig> = {
  ...COMMON_FLAGS,
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
      'stop listening on store errors (no successful check within proxyTimeout); listening resumes on the next successful check',
    type: 'boolean',
    default: true,
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
 * @throws ConfigError with `field` set to the flag name, as one line: unknown flag, missing
 *   `--cluster-name`/`--store-backend`, a bad choice, `--port` not an integer in 0–65535, an
 *   empty `--listen-address`.
 */
export function parseProxyArgs(args: readonly string[], env: NodeJS.ProcessEnv): ProxyFlagConfig {
  let argv: Record<string, unknown>;
  try {
    argv = addFlags(baseYargs(args, PROXY_PROGRAM), PROXY_FLAGS, PROXY_ENV_PREFIX, env)
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
  return c;
}
