/** What every bin does around its daemon: signals, exit codes, fatal error reporting. */
import { ConfigError, errorMessage } from '@stolon-ts/cluster';
import type { Logger } from 'pino';
import { startStatusEndpoint, type ListenAddress, type StatusChecks, type StatusServer } from './status-server.js';

/** The handle every daemon's `start` returns (docs/design.md#daemon-handles). */
export interface DaemonHandle {
  /** Resolves when the daemon stopped; rejects with the first fatal error. */
  readonly done: Promise<void>;
  /** Asks the daemon to stop; resolves when it has. Idempotent. */
  stop(reason: string): Promise<void>;
}

/** How late a 250 ms check timer must fire for {@link watchEventLoopStalls} to warn, in ms. */
export const STALL_WARN_MS = 1000;
const STALL_CHECK_MS = 250;

/**
 * Warns (`stalledMs`) whenever a 250 ms timer fires at least `warnAfterMs` late: the event loop
 * was blocked by a synchronous call, or the process got no CPU. Every lease, keepalive and fence
 * update of a daemon is a timer, so such a stall explains a lost lease or a failover that the
 * logs otherwise leave unexplained.
 * @returns a function that stops watching.
 */
export function watchEventLoopStalls(logger: Logger, warnAfterMs: number = STALL_WARN_MS): () => void {
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const late = Math.round(now - last - STALL_CHECK_MS);
    last = now;
    if (late >= warnAfterMs) {
      logger.warn(
        { stalledMs: late },
        `the event loop was stalled for ${late} ms (a synchronous call, or no CPU for this process): timers, store lease keepalives and fencing ran that late`,
      );
    }
  }, STALL_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Logs, once at startup, the warnings of the Stolon flags given ({@link StolonFlags}) and the
 * flags in effect, as one `configuration` line (`flags`: every flag's parsed value, after the
 * environment fallbacks and Stolon's spellings; secrets are file paths there, never values).
 * @param extra more fields for the line, e.g. where each password was read from
 */
export function logConfiguration(logger: Logger, flags: object, warnings: readonly string[], extra: Record<string, unknown> = {}): void {
  for (const w of warnings) {
    logger.warn(w);
  }
  logger.info({ flags, ...extra }, 'configuration');
}

/** A daemon's status endpoint (`--metrics-listen-address`), served by {@link runDaemon}. */
export interface DaemonStatus {
  /** Where to listen (`statusListenOf` of the flag); undefined: no endpoint. */
  readonly listen: ListenAddress | undefined;
  /** The flag's name and value, for the error line. */
  readonly flag: { readonly name: string; readonly value: string };
  /** The daemon's checks; called once, after the daemon started. */
  readonly checks: () => StatusChecks;
  /** The program name, for the error line (`stolon-proxy`, ...). */
  readonly program: string;
}

/**
 * Runs a daemon until SIGINT/SIGTERM or a fatal error; sets the exit code (0 on a clean stop).
 * Warns about event-loop stalls meanwhile ({@link watchEventLoopStalls}). With `status.listen`,
 * serves the status endpoint meanwhile and closes it once the daemon stopped; when it cannot
 * listen, stops the daemon and exits 2 with one line naming the flag ({@link exitOnConfigError}).
 */
export async function runDaemon(logger: Logger, handle: DaemonHandle, status?: DaemonStatus): Promise<void> {
  let server: StatusServer | undefined;
  if (status?.listen !== undefined) {
    server = await startStatusEndpoint(status.listen, status.flag, status.checks(), logger).catch(async (err: unknown) => {
      await handle.stop('status endpoint failed');
      return exitOnConfigError(err, status.program);
    });
  }
  const stopWatching = watchEventLoopStalls(logger);
  const onSignal = (sig: string) => {
    logger.info({ signal: sig }, `received ${sig}, stopping`);
    void handle.stop(`signal ${sig}`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await handle.done;
    logger.info('stopped');
    process.exitCode = 0;
  } catch (err) {
    logger.fatal({ err }, `stopped on a fatal error: ${errorMessage(err)}`);
    process.exitCode = 1;
  } finally {
    stopWatching();
    await server?.close();
  }
}

/**
 * Prints a configuration error the way every bin does (one line, naming the flag) and exits 2.
 * Other errors are rethrown.
 */
export function exitOnConfigError(err: unknown, program: string): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${program}: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
