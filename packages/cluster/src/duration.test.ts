import { describe, expect, it } from 'vitest';
import { formatDurationMs, parseDurationMs } from './duration.js';

describe('parseDurationMs', () => {
  it.each([
    ['500ms', 500],
    ['20s', 20_000],
    ['1m30s', 90_000],
    ['1.5s', 1_500],
    ['.5s', 500],
    ['48h', 172_800_000],
    ['1h0m0s', 3_600_000],
    ['0', 0],
    ['0s', 0],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['2000000ns', 2],
    // Decimal fractions must come out exact, as Go's integer-nanosecond parser makes them.
    ['2.01s', 2_010],
    ['4.03s', 4_030],
    ['1.005s', 1_005],
  ])('%j is %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each([
    ['5', 'a bare number other than 0 has no unit'],
    ['-1s', 'negative'],
    ['1x', 'unknown unit'],
    ['', 'empty'],
    ['s', 'unit without a number'],
    ['1s ', 'trailing space'],
    [' 1s', 'leading space'],
    ['1s5', 'trailing number without unit'],
    ['1S', 'units are case-sensitive'],
    ['.s', 'a dot is not a number'],
  ])('%j is rejected (%s)', (text) => {
    expect(parseDurationMs(text)).toBeUndefined();
  });
});

describe('formatDurationMs', () => {
  it.each([
    [0, '0s'],
    [500, '500ms'],
    [1_500, '1.5s'],
    [20_000, '20s'],
    [90_000, '1m30s'],
    [300_000, '5m0s'],
    [3_600_000, '1h0m0s'],
    [172_800_000, '48h0m0s'],
  ])('%d ms is %j', (ms, text) => {
    expect(formatDurationMs(ms)).toBe(text);
  });

  it.each(['500ms', '1.5s', '20s', '1m30s', '2.01s', '48h0m0s'])('round-trips %j', (text) => {
    const ms = parseDurationMs(text);
    expect(ms).toBeDefined();
    expect(parseDurationMs(formatDurationMs(ms ?? Number.NaN))).toBe(ms);
  });
});
