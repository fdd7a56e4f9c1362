/** The e2e fixture's hooks, with a stand-in launcher: start, failure notes, log tails, teardown order. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LocalCluster, LocalClusterOptions } from './cluster.js';
import { e2eClusterWith, type FixtureHooks } from './fixture.js';
import { removeDir } from './tmp.js';

/** Hooks that record what the fixture registers, so a test can play the runner. */
function fakeRunner() {
  const before: Array<() => Promise<void>> = [];
  const after: Array<() => Promise<void>> = [];
  const each: Array<(ctx: { onTestFailed: (fn: () => void) => void }) => void> = [];
  const timeouts: Array<number | undefined> = [];
  const hooks: FixtureHooks = {
    beforeAll: (fn, t) => {
      before.push(fn);
      timeouts.push(t);
    },
    afterAll: (fn, t) => {
      after.push(fn);
      timeouts.push(t);
    },
    beforeEach: (fn) => {
      each.push(fn);
    },
  };
  return {
    hooks,
    timeouts,
    start: async () => {
      for (const fn of before) {
        await fn();
      }
    },
    /** Runs one test's beforeEach hooks; `fails` plays the runner reporting it failed. */
    test: (fails: boolean) => {
      const onFailed: Array<() => void> = [];
      for (const fn of each) {
        fn({ onTestFailed: (f) => onFailed.push(f) });
      }
      if (fails) {
        onFailed.forEach((f) => f());
      }
    },
    stop: async () => {
      for (const fn of after) {
        await fn();
      }
    },
  };
}

/** A stand-in launcher whose clusters record their options and the order they stop in. */
function fakeLaunch(events: string[], fail?: Error) {
  const launched: LocalClusterOptions[] = [];
  const launch = async (o: LocalClusterOptions): Promise<LocalCluster> => {
    launched.push(o);
    if (fail !== undefined) {
      throw fail;
    }
    const name = o.clusterName ?? 'stolon-local';
    return {
      clusterName: name,
      logs: () => Array.from({ length: 10 }, (_, i) => `${name} line ${i + 1}`).join('\n'),
      stop: async () => {
        events.push(`stop ${name}`);
      },
    } as unknown as LocalCluster;
  };
  return { launch, launched };
}

describe('e2eCluster', () => {
  it('a passing file: starts in a fresh temp dir, runs setup, stops and removes the dir, prints nothing', async () => {
    const events: string[] = [];
    const out: string[] = [];
    const { launch, launched } = fakeLaunch(events);
    const r = fakeRunner();
    const e2e = e2eClusterWith({ launch, write: (t) => out.push(t) }, r.hooks, {
      tmpPrefix: 'stolon-fixture-test-',
      clusterName: 'ok',
      keepers: 3,
      setup: async (c) => {
        events.push(`setup ${c.clusterName}`);
      },
      teardown: async () => {
        events.push('teardown');
      },
    });
    expect(r.timeouts).toEqual([180_000, 120_000]);
    expect(() => e2e.cluster).toThrow(/not started yet/);
    await r.start();
    expect(launched).toEqual([{ clusterName: 'ok', keepers: 3, dir: e2e.dir }]);
    expect(existsSync(e2e.dir)).toBe(true);
    expect(e2e.cluster.clusterName).toBe('ok');
    r.test(false);
    r.test(false);
    expect(e2e.failed).toBe(false);
    await r.stop();
    expect(events).toEqual(['setup ok', 'teardown', 'stop ok']);
    expect(existsSync(e2e.dir)).toBe(false);
    expect(out).toEqual([]);
  });

  it('a failed test: the log tail of every cluster is printed, they stop newest first, the dir is kept', async () => {
    const events: string[] = [];
    const out: string[] = [];
    const { launch, launched } = fakeLaunch(events);
    const r = fakeRunner();
    const e2e = e2eClusterWith({ launch, write: (t) => out.push(t) }, r.hooks, {
      tmpPrefix: 'stolon-fixture-test-',
      subdir: 'main',
      clusterName: 'main',
      logTailLines: 2,
      startTimeoutMs: 1000,
      stopTimeoutMs: 2000,
    });
    expect(r.timeouts).toEqual([1000, 2000]);
    await r.start();
    expect(launched[0]?.dir).toBe(join(e2e.dir, 'main'));
    await e2e.startCluster({ dir: join(e2e.dir, 'other'), clusterName: 'other' });
    r.test(false);
    r.test(true);
    r.test(false);
    expect(e2e.failed).toBe(true);
    await r.stop();
    expect(events).toEqual(['stop other', 'stop main']);
    expect(out).toEqual([
      '--- main logs (tail) ---\nmain line 9\nmain line 10\n',
      '--- other logs (tail) ---\nother line 9\nother line 10\n',
      `e2e main failed: data and logs kept in ${e2e.dir}\n`,
    ]);
    expect(existsSync(e2e.dir)).toBe(true);
    await removeDir(e2e.dir);
  });

  it('a cluster that does not start: the start hook fails, the file counts as failed, the dir is kept', async () => {
    const events: string[] = [];
    const out: string[] = [];
    const { launch } = fakeLaunch(events, new Error('local cluster did not start: etcd exited'));
    const r = fakeRunner();
    const e2e = e2eClusterWith({ launch, write: (t) => out.push(t) }, r.hooks, { tmpPrefix: 'stolon-fixture-test-' });
    await expect(r.start()).rejects.toThrow('local cluster did not start: etcd exited');
    expect(e2e.failed).toBe(true);
    expect(() => e2e.cluster).toThrow('the e2e cluster did not start: local cluster did not start: etcd exited');
    await r.stop();
    expect(events).toEqual([]);
    expect(out).toEqual([`e2e stolon-fixture-test- failed: data and logs kept in ${e2e.dir}\n`]);
    expect(existsSync(e2e.dir)).toBe(true);
    await removeDir(e2e.dir);
  });
});
