import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { KeeperRuntime } from './runtime.js';
import { startCrashWatch } from './watchers.js';

/** A runtime with only what the crash watch reads: state, pg (isRunning, watchConnection), tasks, log, trigger. */
function fakeRuntime(opts: { withConnection: boolean }) {
  const st = { running: true, connOpen: true, checks: 0, triggers: [] as string[], onClosed: undefined as (() => void) | undefined };
  const pg = {
    isRunning: () => {
      st.checks += 1;
      return Promise.resolve(st.running);
    },
    ...(opts.withConnection
      ? {
          watchConnection: (onClosed: () => void) => {
            st.onClosed = onClosed;
            return { open: () => st.connOpen, stop: () => (st.onClosed = undefined) };
          },
        }
      : {}),
  };
  const rt = {
    state: 'running',
    pg,
    tasks: { current: undefined },
    log: { warn: () => undefined },
    trigger: (reason: string) => st.triggers.push(reason),
  } as unknown as KeeperRuntime;
  /** The probe connection closes (the server ended it). */
  const close = (): void => {
    st.connOpen = false;
    st.onClosed?.();
  };
  return { rt, st, close };
}

describe('crash watch', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('polls postmaster.pid every 100 ms when the manager keeps no connection (as before)', async () => {
    const { rt, st } = fakeRuntime({ withConnection: false });
    const stop = startCrashWatch(rt);
    await vi.advanceTimersByTimeAsync(1000);
    expect(st.checks).toBe(10);
    stop();
  });

  it('polls once a second while postgres runs and the probe connection is open', async () => {
    const { rt, st } = fakeRuntime({ withConnection: true });
    const stop = startCrashWatch(rt);
    await vi.advanceTimersByTimeAsync(100);
    expect(st.checks).toBe(1);
    await vi.advanceTimersByTimeAsync(3000);
    expect(st.checks).toBe(4);
    expect(st.triggers).toEqual([]);
    stop();
  });

  it('checks at once when the probe connection closes, and asks for a pass when the postmaster is gone', async () => {
    const { rt, st, close } = fakeRuntime({ withConnection: true });
    const stop = startCrashWatch(rt);
    await vi.advanceTimersByTimeAsync(500);
    const before = st.checks;
    st.running = false;
    close();
    await vi.advanceTimersByTimeAsync(1);
    expect(st.checks).toBe(before + 1);
    expect(st.triggers).toEqual(['postgres stopped']);
    stop();
  });

  it('a close seen while the postmaster still runs is followed by 100 ms polls until it is gone', async () => {
    const { rt, st, close } = fakeRuntime({ withConnection: true });
    const stop = startCrashWatch(rt);
    await vi.advanceTimersByTimeAsync(500);
    close();
    await vi.advanceTimersByTimeAsync(1);
    expect(st.triggers).toEqual([]);
    st.running = false;
    await vi.advanceTimersByTimeAsync(100);
    expect(st.triggers).toEqual(['postgres stopped']);
    stop();
  });

  it('stops polling and listening when stopped', async () => {
    const { rt, st, close } = fakeRuntime({ withConnection: true });
    const stop = startCrashWatch(rt);
    await vi.advanceTimersByTimeAsync(200);
    stop();
    const n = st.checks;
    close();
    await vi.advanceTimersByTimeAsync(5000);
    expect(st.checks).toBe(n);
  });
});
