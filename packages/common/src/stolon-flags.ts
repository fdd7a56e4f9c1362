/**
 * Stolon's flags that are not ours under any name, common to several programs (each program's own
 * are in its flags.ts): accepted so that Stolon's command lines and `ST*_` variables keep working,
 * and then translated, ignored with a warning, or refused (docs/differences-from-stolon.md).
 */
import type { StolonOnlyFlag } from './flags.js';

/** Stolon's deprecated `--debug` of keeper, sentinel and proxy: `--log-level debug`. */
const DEBUG: StolonOnlyFlag = {
  name: 'debug',
  type: 'boolean',
  outcome: (v) => (v === true ? { set: { 'log-level': 'debug' }, warn: 'deprecated (as in Stolon): use --log-level debug' } : {}),
};

/** Stolon's `--log-color`: our logs are JSON lines, never coloured. */
const LOG_COLOR: StolonOnlyFlag = {
  name: 'log-color',
  type: 'boolean',
  outcome: (v) => (v === true ? { warn: 'ignored: logs are JSON lines, without colour' } : {}),
};

/** Stolon-only flags of the three daemons. */
export const DAEMON_STOLON_FLAGS: readonly StolonOnlyFlag[] = [DEBUG, LOG_COLOR];

/**
 * Stolon-only flags of stolonctl: Stolon gives it `--metrics-listen-address` (a common flag), and
 * serves nothing on it from stolonctl either.
 */
export const STOLONCTL_STOLON_FLAGS: readonly StolonOnlyFlag[] = [
  {
    name: 'metrics-listen-address',
    type: 'string',
    outcome: (v) => (v !== '' ? { warn: 'ignored: stolonctl serves no metrics (neither does Stolon\'s)' } : {}),
  },
];
