/**
 * Go-style duration strings ("20s", "1m30s", "500ms", "48h0m0s"), as Stolon's cluster spec uses
 * them. Parsed once at the edge into plain millisecond numbers (docs/design.md#timing-rules).
 * @see https://pkg.go.dev/time#ParseDuration
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration string into milliseconds (fractions of a ms are kept).
 * @returns milliseconds, or `undefined` when `text` is not a valid non-negative duration.
 */
export function parseDurationMs(text: string): number | undefined {
  if (text === '0') {
    return 0;
  }
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const unit = UNIT_MS[m[2] ?? ''];
    if (unit === undefined) {
      return undefined;
    }
    total += Number(m[1]) * unit;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== text.length) {
    return undefined;
  }
  // Go parses to whole nanoseconds; binary floating point does not ("2.01s" would be
  // 2009.9999999999998 ms and pass a `<` timing rule it should fail). Round to the nanosecond.
  return Math.round(total * 1e6) / 1e6;
}

/** Formats milliseconds the way Go prints a duration ("20s", "1m30s", "500ms", "0s"). */
export function formatDurationMs(ms: number): string {
  if (ms === 0) {
    return '0s';
  }
  if (ms < 1000) {
    return `${ms}ms`;
  }
  let rest = ms;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  if (h > 0) {
    return `${h}h${m}m${s}s`;
  }
  if (m > 0) {
    return `${m}m${s}s`;
  }
  return `${s}s`;
}
