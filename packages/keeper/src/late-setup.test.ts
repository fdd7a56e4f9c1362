import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { lateMetrics } from './late-setup.js';

describe('lateMetrics', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sets the metrics up the delay after the first settled pass, observes the passes before, then runs `after`', async () => {
    const observed: number[] = [];
    const setup = vi.fn(() => ({ observePass: (s: number) => observed.push(s) }));
    const after = vi.fn();
    const m = lateMetrics(setup, 1000, after);
    m.onPassSettled(0.1);
    m.onPassSettled(0.2);
    await vi.advanceTimersByTimeAsync(999);
    expect(setup).not.toHaveBeenCalled();
    expect(after).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(setup).toHaveBeenCalledTimes(1);
    expect(observed).toEqual([0.1, 0.2]);
    await vi.runOnlyPendingTimersAsync();
    expect(after).toHaveBeenCalledTimes(1);
    m.onPassSettled(0.3);
    expect(observed).toEqual([0.1, 0.2, 0.3]);
    expect(setup).toHaveBeenCalledTimes(1);
  });

  it('sets them up at once when a scrape asks first, and only once', async () => {
    const observed: number[] = [];
    const setup = vi.fn(() => ({ observePass: (s: number) => observed.push(s) }));
    const after = vi.fn();
    const m = lateMetrics(setup, 1000, after);
    m.onPassSettled(0.5);
    const first = m.get();
    expect(setup).toHaveBeenCalledTimes(1);
    expect(observed).toEqual([0.5]);
    expect(m.get()).toBe(first);
    await vi.advanceTimersByTimeAsync(2000);
    expect(setup).toHaveBeenCalledTimes(1);
    expect(after).toHaveBeenCalledTimes(1);
    expect(observed).toEqual([0.5]);
  });

  it('while a background task runs, loads node-postgres at the delay but sets the metrics up only once the task has been over a while', async () => {
    const observed: number[] = [];
    const setup = vi.fn(() => ({ observePass: (s: number) => observed.push(s) }));
    const after = vi.fn();
    let task = true;
    const m = lateMetrics(setup, 1000, after, () => task);
    m.onPassSettled(0.1);
    await vi.advanceTimersByTimeAsync(1000);
    await vi.runOnlyPendingTimersAsync();
    expect(after).toHaveBeenCalledTimes(1);
    expect(setup).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(5000);
    expect(setup).not.toHaveBeenCalled();
    task = false;
    // The first check after the task sees it over, the next one sets up.
    await vi.advanceTimersByTimeAsync(1000);
    expect(setup).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1000);
    expect(setup).toHaveBeenCalledTimes(1);
    expect(observed).toEqual([0.1]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(setup).toHaveBeenCalledTimes(1);
    expect(after).toHaveBeenCalledTimes(1);
  });

  it('schedules nothing before the first settled pass', async () => {
    const setup = vi.fn(() => ({ observePass: () => undefined }));
    lateMetrics(setup, 10, () => undefined);
    await vi.advanceTimersByTimeAsync(1000);
    expect(setup).not.toHaveBeenCalled();
  });
});
