/**
 * `stolonctl reload [--keeper KEEPER] [--timeout 30s]`: makes the keepers write postgresql.conf
 * and pg_hba.conf again from the cluster spec and reload PostgreSQL now (`pg_ctl reload`, as
 * `pg_reload_conf()`), then reports which keepers did and which parameters still wait for a
 * restart (`pg_settings.pending_restart`, as each keeper reports it after the reload). Patroni's
 * `patronictl reload` is the model; Stolon has none.
 *
 * Keepers apply a changed spec on their own within a sleepInterval (and reload then); this
 * command makes it happen at once and confirms it. It records `cluster.status.reloadRequest`
 * with a new generation by compare-and-set; each keeper acts on a generation once, in a pass
 * where its DB converges, and acknowledges it in its info (`reloadGeneration`). A keeper that is
 * cloning, refused or down does not acknowledge: the command says so after `--timeout`.
 */
import { formatDurationMs, parseDurationMs, type ClusterData, type KeeperInfo } from '@stolon-ts/cluster';
import { nowIso } from '@stolon-ts/common';
import {
  CommandError,
  ExitCode,
  loadClusterData,
  requireKeeper,
  runCommand,
  updateClusterData,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** Options of {@link runReload}. */
export interface ReloadOptions {
  /** `--keeper`: reload only this keeper. @default every keeper */
  readonly keeper?: string;
  /** `--timeout` as a duration string: how long to wait for the acknowledgements. @default "30s" */
  readonly timeout?: string;
  /** Poll period while waiting, ms. @default 200 */
  readonly pollMs?: number;
}

/** Default `--timeout`. */
const DEFAULT_TIMEOUT = '30s';

/** How one keeper answered a reload request. */
export interface ReloadOutcome {
  readonly keeperUID: string;
  /** `primary` or `standby` from its DB spec; `none` without a DB. */
  readonly role: 'primary' | 'standby' | 'none';
  /** It acknowledged the request's generation. */
  readonly reloaded: boolean;
  /** After the reload: parameters waiting for a restart, as the keeper reports them. */
  readonly pendingRestart: readonly string[];
  /** Why it did not acknowledge (its published activity, or that it publishes no info). */
  readonly why?: string;
}

/**
 * The outcome per target keeper for request generation `generation`, from the keepers' infos.
 * Pure.
 */
export function reloadOutcomes(cd: ClusterData, targets: readonly string[], infos: Readonly<Record<string, KeeperInfo>>, generation: number): ReloadOutcome[] {
  return targets.map((uid) => {
    const db = Object.values(cd.dbs).find((d) => d.spec.keeperUID === uid);
    const role = db === undefined ? 'none' : db.uid === cd.cluster.status.master ? 'primary' : 'standby';
    const info = infos[uid];
    const reloaded = (info?.reloadGeneration ?? 0) >= generation;
    const why =
      info === undefined
        ? 'it publishes no info: is the keeper running?'
        : db === undefined
          ? 'it holds no DB'
          : (info.postgresState?.activity ?? 'it has not run a pass that converged its DB since the request');
    return { keeperUID: uid, role, reloaded, pendingRestart: reloaded ? [...(info?.postgresState?.pendingRestart ?? [])] : [], ...(reloaded ? {} : { why }) };
  });
}

/** One line per keeper. */
function describeOutcome(o: ReloadOutcome, timeout: string): string {
  const who = `keeper ${o.keeperUID} (${o.role === 'none' ? 'no DB' : o.role})`;
  if (!o.reloaded) {
    return o.role === 'none' ? `${who}: nothing to reload (${o.why ?? 'it holds no DB'})` : `${who}: not reloaded within ${timeout}: ${o.why ?? 'unknown'}`;
  }
  return `${who}: reloaded; ${o.pendingRestart.length === 0 ? 'no parameter pending a restart' : `pending restart: ${o.pendingRestart.join(', ')}`}`;
}

/**
 * Requests the reload and waits for the acknowledgements (bounded by `timeout`); keepers that
 * hold no DB are listed but not waited for.
 * @returns 0 when every target keeper holding a DB reloaded (parameters pending a restart are reported, not
 *   an error); 1 when one did not within the timeout, the keeper is unknown, or the store fails;
 *   2 for a bad `--timeout`.
 */
export function runReload(ctx: CommandContext, opts: ReloadOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'reload', async () => {
    const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
    const timeoutMs = parseDurationMs(timeout);
    if (timeoutMs === undefined || timeoutMs <= 0) {
      throw new CommandError(`--timeout: "${timeout}" is not a positive duration such as 30s`, ExitCode.usage, { field: 'timeout' });
    }
    if (opts.keeper !== undefined && opts.keeper.trim() === '') {
      throw new CommandError('--keeper: empty keeper UID; give the UID shown by stolonctl status, or leave it out to reload every keeper', ExitCode.usage, { field: 'keeper' });
    }
    const requestedAt = nowIso();
    const { generation, cd } = await updateClusterData(ctx, ({ cd }) => {
      if (opts.keeper !== undefined) {
        requireKeeper(cd, opts.keeper);
      }
      const next = structuredClone(cd);
      const gen = (cd.cluster.status.reloadRequest?.generation ?? 0) + 1;
      next.cluster.status.reloadRequest = { generation: gen, requestedAt, ...(opts.keeper !== undefined ? { keeperUIDs: [opts.keeper] } : {}) };
      return { write: next, result: { generation: gen, cd } };
    });
    const targets = opts.keeper !== undefined ? [opts.keeper] : Object.keys(cd.keepers).sort();
    ctx.out(`reload requested (generation ${generation}) for ${opts.keeper !== undefined ? `keeper ${opts.keeper}` : `keepers ${targets.join(', ')}`}`);
    const deadline = Date.now() + timeoutMs;
    let outcomes: ReloadOutcome[];
    for (;;) {
      const [infos, now] = await Promise.all([ctx.store.listInfos('keepers'), loadClusterData(ctx)]);
      outcomes = reloadOutcomes(now.cd, targets, infos, generation);
      if (outcomes.every((o) => o.reloaded || o.role === 'none') || Date.now() > deadline) {
        break;
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
    }
    const text = formatDurationMs(timeoutMs);
    ctx.out(outcomes.map((o) => describeOutcome(o, text)).join('\n'));
    const missing = outcomes.filter((o) => !o.reloaded && o.role !== 'none');
    if (missing.length > 0) {
      throw new CommandError(
        `${missing.length} keeper(s) holding a DB did not reload within ${text}; they act on the request once their DB converges (see stolonctl status)`,
        ExitCode.runtime,
      );
    }
  });
}
