/**
 * The e2e fixture: one local cluster (etcd, keepers, sentinels, proxies, from `startLocalCluster`)
 * per test file, registered on the test runner's hooks. It owns the teardown: when any test of the
 * file (or the start itself) failed it prints the tail of every cluster's logs and keeps the data
 * directory; otherwise it removes it. Tests need no failure flag or guard of their own.
 *
 * ```ts
 * import { afterAll, beforeAll, beforeEach } from 'vitest';
 * const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, { tmpPrefix: 'stolon-crash-e2e-', clusterName: 'crash', keepers: 2 });
 * it('…', async () => { await query(e2e.cluster.proxyClientConfig(0), 'select 1'); });
 * ```
 */
import { join } from 'node:path';
import { startLocalCluster, type LocalCluster, type LocalClusterOptions } from './cluster.js';
import { makeTempDir, removeDir } from './tmp.js';

/**
 * The hooks of the test runner the fixture registers itself on: pass vitest's
 * `{ beforeAll, afterAll, beforeEach }`. Timeouts are in ms.
 */
export interface FixtureHooks {
  readonly beforeAll: (fn: () => Promise<void>, timeoutMs?: number) => void;
  readonly afterAll: (fn: () => Promise<void>, timeoutMs?: number) => void;
  /** Called with each test's context; the fixture only asks to hear of the test failing. */
  readonly beforeEach: (fn: (context: { readonly onTestFailed: (fn: () => void) => void }) => void) => void;
}

/** Options of {@link e2eCluster}: those of `startLocalCluster` except `dir`, plus the file's own. */
export interface E2eClusterOptions extends Omit<LocalClusterOptions, 'dir'> {
  /** Prefix of the file's temp directory (under the OS temp dir), e.g. `stolon-crash-e2e-`. */
  readonly tmpPrefix: string;
  /** Directory of the cluster inside the temp directory; default the temp directory itself. */
  readonly subdir?: string;
  /**
   * Runs in the start hook once the cluster is up (create tables, wait for convergence, open a
   * store client); when it throws, the file fails and its logs are printed.
   */
  readonly setup?: (cluster: LocalCluster) => Promise<void>;
  /** Runs first in the stop hook, before any cluster stops (close what `setup` opened). */
  readonly teardown?: () => Promise<void>;
  /** Lines of each cluster's log tail printed after a failure. @default 200 */
  readonly logTailLines?: number;
  /** Timeout of the start hook (start and `setup`), ms. @default 180_000 */
  readonly startTimeoutMs?: number;
  /** Timeout of the stop hook, ms. @default 120_000 */
  readonly stopTimeoutMs?: number;
}

/** What a test file gets from {@link e2eCluster}. */
export interface E2eCluster {
  /**
   * The file's cluster, once the start hook ran.
   * @throws Error when read before the start hook, or after the cluster failed to start.
   */
  readonly cluster: LocalCluster;
  /** The file's temp directory (kept after a failure). @throws Error when read before the start hook. */
  readonly dir: string;
  /** True once a test of the file, the start hook or `teardown` failed. */
  readonly failed: boolean;
  /**
   * Starts another cluster the fixture owns (for example a standby cluster on the same etcd,
   * `etcd: e2e.cluster.etcd`): stopped before the file's cluster, in reverse start order, and
   * its log tail printed too after a failure. Give it a `dir` inside {@link E2eCluster.dir}.
   * @throws whatever `startLocalCluster` throws; the file is then marked failed.
   */
  startCluster(opts: LocalClusterOptions): Promise<LocalCluster>;
}

/** What the fixture uses of the outside world; the harness's own tests replace it. */
export interface FixtureDeps {
  readonly launch: (opts: LocalClusterOptions) => Promise<LocalCluster>;
  /** Writes report text (log tails, where the data was kept). */
  readonly write: (text: string) => void;
}

const DEFAULT_DEPS: FixtureDeps = {
  launch: startLocalCluster,
  write: (text) => {
    process.stdout.write(text);
  },
};

/**
 * Registers the file's local cluster on `hooks` (call it once, at the top level of an e2e test
 * file): the start hook makes a temp directory `<tmpdir>/<tmpPrefix>XXXXXX`, starts the cluster
 * there with `opts` (`startLocalCluster`, which waits until it serves) and runs `opts.setup`; every
 * test's failure is noted; the stop hook runs `opts.teardown`, prints the last `logTailLines` lines
 * of each cluster's logs if anything failed, stops the clusters, and removes the directory unless
 * something failed (then it says where the data is).
 * @returns accessors of the cluster and directory, valid from the start hook on.
 */
export function e2eCluster(hooks: FixtureHooks, opts: E2eClusterOptions): E2eCluster {
  return e2eClusterWith(DEFAULT_DEPS, hooks, opts);
}

/** {@link e2eCluster} with its launcher and output replaced (`deps`); for the harness's own tests. */
export function e2eClusterWith(deps: FixtureDeps, hooks: FixtureHooks, opts: E2eClusterOptions): E2eCluster {
  const { tmpPrefix, subdir, setup, teardown, logTailLines = 200, startTimeoutMs = 180_000, stopTimeoutMs = 120_000, ...clusterOpts } = opts;
  let dir: string | undefined;
  let main: LocalCluster | undefined;
  /** Every started cluster, the file's first. */
  const clusters: LocalCluster[] = [];
  let failed = false;
  let startError: unknown;

  hooks.beforeAll(async () => {
    try {
      dir = await makeTempDir(tmpPrefix);
      main = await deps.launch({ ...clusterOpts, dir: subdir === undefined ? dir : join(dir, subdir) });
      clusters.push(main);
      await setup?.(main);
    } catch (err) {
      failed = true;
      startError = err;
      throw err;
    }
  }, startTimeoutMs);

  hooks.beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      failed = true;
    });
  });

  hooks.afterAll(async () => {
    try {
      await teardown?.();
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      if (failed) {
        for (const c of clusters) {
          deps.write(`--- ${c.clusterName} logs (tail) ---\n${c.logs().split('\n').slice(-logTailLines).join('\n')}\n`);
        }
      }
      for (const c of [...clusters].reverse()) {
        await c.stop();
      }
      if (failed) {
        if (dir !== undefined) {
          deps.write(`e2e ${clusterOpts.clusterName ?? tmpPrefix} failed: data and logs kept in ${dir}\n`);
        }
      } else if (dir !== undefined) {
        await removeDir(dir);
      }
    }
  }, stopTimeoutMs);

  return {
    get cluster(): LocalCluster {
      if (main === undefined) {
        throw new Error(
          startError === undefined
            ? 'the e2e cluster is not started yet: read it in a test or hook, not at module load'
            : `the e2e cluster did not start: ${startError instanceof Error ? startError.message : String(startError)}`,
        );
      }
      return main;
    },
    get dir(): string {
      if (dir === undefined) {
        throw new Error('the e2e temp directory does not exist yet: read it in a test or hook, not at module load');
      }
      return dir;
    },
    get failed(): boolean {
      return failed;
    },
    startCluster: async (o) => {
      try {
        const c = await deps.launch(o);
        clusters.push(c);
        return c;
      } catch (err) {
        failed = true;
        throw err;
      }
    },
  };
}
