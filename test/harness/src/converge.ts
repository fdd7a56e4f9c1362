/**
 * Waits and reads shared by the end-to-end tests that drive a {@link LocalCluster} through
 * `stolonctl`: "every keeper healthy and converged", and the sentinel's failover events.
 */
import type { LocalCluster } from './cluster.js';
import { waitFor } from './wait.js';

interface StatusKeeperJson {
  healthy: boolean;
  pg_healthy?: boolean;
  pg_wanted_generation?: number;
  pg_current_generation?: number;
}

/**
 * Waits until `stolonctl status` lists exactly `keepers` keepers, each healthy, with postgres
 * healthy and at its wanted generation. A failing `stolonctl` (store briefly unreachable) counts as
 * not yet.
 * @throws Error from {@link waitFor} after `timeoutMs` (default 120 000 ms).
 */
export async function waitKeepersConverged(cluster: LocalCluster, keepers: number, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    async () => {
      const r = await cluster.stolonctl(['status', '--format', 'json']);
      if (r.code !== 0) {
        return undefined;
      }
      const ks = (JSON.parse(r.stdout) as { keepers: StatusKeeperJson[] }).keepers;
      return ks.length === keepers && ks.every((k) => k.healthy && k.pg_healthy === true && k.pg_wanted_generation === k.pg_current_generation)
        ? true
        : undefined;
    },
    { timeoutMs, what: `${keepers} keepers healthy and converged` },
  );
}

/** A failover or switchover event as `stolonctl events --format json` prints it (the fields tests read). */
export interface FailoverEventJson {
  kind: string;
  cause: string;
  result?: string;
  oldPrimary: { keeperUID: string };
  newPrimary?: { keeperUID: string };
  /** Phase name → ISO time. */
  phases: Record<string, string>;
}

/**
 * The sentinel's recorded failover events, oldest first.
 * @throws Error with stolonctl's stderr when `stolonctl events` fails.
 */
export async function failoverEvents(cluster: LocalCluster): Promise<FailoverEventJson[]> {
  const r = await cluster.stolonctl(['events', '--format', 'json']);
  if (r.code !== 0) {
    throw new Error(`stolonctl events exited ${r.code}: ${r.stderr}`);
  }
  const parsed = JSON.parse(r.stdout) as unknown;
  const list = (Array.isArray(parsed) ? parsed : ((parsed as { events?: FailoverEventJson[] }).events ?? [])) as FailoverEventJson[];
  // The list also holds failsafe spells (kind "failsafe"); they are not failovers.
  return list.filter((e) => e.kind === 'failover' || e.kind === 'switchover');
}
