/** watchEventLoopStalls: a blocked event loop is reported with how long it was blocked. */
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { watchEventLoopStalls } from './run.js';

describe('watchEventLoopStalls', () => {
  it('warns once the loop was blocked past the threshold, with the stall in ms; not before', { timeout: 10_000 }, async () => {
    const lines: { msg: string; stalledMs?: number }[] = [];
    const logger = createLogger({ level: 'info', component: 'test', dest: { write: (s: string) => lines.push(JSON.parse(s)) } });
    const stop = watchEventLoopStalls(logger, 300);
    try {
      await new Promise((r) => setTimeout(r, 600)); // idle: no warning
      expect(lines).toEqual([]);
      const until = performance.now() + 700;
      while (performance.now() < until) {
        // a synchronous call holding the event loop
      }
      await new Promise((r) => setTimeout(r, 400));
      const warn = lines.find((l) => l.msg.startsWith('the event loop was stalled for'));
      expect(warn?.stalledMs).toBeGreaterThanOrEqual(300);
      expect(warn?.stalledMs).toBeLessThan(2000);
    } finally {
      stop();
    }
  });
});
