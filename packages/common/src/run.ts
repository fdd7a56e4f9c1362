/** What every bin does around its daemon: signals, exit codes, fatal error reporting. */
import { ConfigError, errorMessage } from '@stolon-ts/cluster';
import type { Logger } from 'pino';

/** The handle every daemon's `start` returns (STYLE.md rule 9). */
export interface DaemonHandle {
  /** Resolves when the daemon stopped; rejects with the first fatal error. */
  readonly done: Promise<void>;
  /** Asks the daemon to stop; resolves when it has. Idempotent. */
  stop(reason: string): Promise<void>;
}

/**
 * Runs a daemon until SIGINT/SIGTERM or a fatal error; sets the exit code (0 on a clean stop).
 */
export async function runDaemon(logger: Logger, handle: DaemonHandle): Promise<void> {
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
