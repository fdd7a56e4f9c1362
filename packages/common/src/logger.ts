/**
 * The one pino logger per process (docs/design.md#logging): created in the bin, passed down
 * through `deps`, scoped with child bindings. Secrets are redacted by path as a second line of
 * defence; the first is never putting them in log objects at all.
 */
import { createRequire } from 'node:module';
import type * as Pino from 'pino';
import type { Logger, DestinationStream } from 'pino';

/**
 * pino, loaded by the first {@link createLogger} or {@link silentLogger}, not at import: stolonctl
 * imports this package (for {@link BUG_SENTENCE}) but logs nothing. The package is CommonJS, so a
 * synchronous `require` suffices.
 */
function loadPino(): typeof Pino.pino {
  return (createRequire(import.meta.url)('pino') as typeof Pino).pino;
}

export type { Logger } from 'pino';

/** Paths pino removes from every log object. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'suPassword',
  'replPassword',
  '*.suPassword',
  '*.replPassword',
  'connectionString',
  '*.connectionString',
  'primaryConninfo',
  '*.primaryConninfo',
];

/** Most bytes of log output held in memory while stdout does not take them; past it lines are dropped. */
const LOG_BUFFER_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Creates the root logger: NDJSON to stdout (or `dest`), level from `--log-level`, with
 * `{ component, uid, cluster }` bindings. Writes to stdout are asynchronous (pino's SonicBoom,
 * `sync: false`): a synchronous write to a pipe blocks the whole process once the pipe is full,
 * and a daemon whose log reader stalls (a busy container runtime, a paused test harness) must
 * not stop renewing its store lease (Patroni logs from a separate thread for the same reason).
 * At most {@link LOG_BUFFER_MAX_BYTES} wait in memory; beyond that, lines are dropped.
 */
export function createLogger(opts: {
  level: string;
  component: string;
  uid?: string;
  cluster?: string;
  dest?: DestinationStream;
}): Logger {
  const bindings: Record<string, string> = { component: opts.component };
  if (opts.uid !== undefined) {
    bindings['uid'] = opts.uid;
  }
  if (opts.cluster !== undefined) {
    bindings['cluster'] = opts.cluster;
  }
  const pino = loadPino();
  const base = pino(
    { level: opts.level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } },
    opts.dest ?? pino.destination({ dest: 1, sync: false, minLength: 0, maxLength: LOG_BUFFER_MAX_BYTES }),
  );
  return base.child(bindings);
}

/** A logger that drops everything (tests). */
export function silentLogger(): Logger {
  return loadPino()({ level: 'silent' });
}

/** The sentence every unexpected exception becomes (the e2e harness fails tests that log it). */
export const BUG_SENTENCE = 'unexpected error, please report this as a bug';
