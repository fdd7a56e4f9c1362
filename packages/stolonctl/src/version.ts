/**
 * `stolonctl version [--format table|json]`: the stolon-ts version of stolonctl itself and of
 * every keeper, sentinel and proxy, as each publishes it in its info (`version` / `Version`),
 * with the PostgreSQL version each keeper runs (Patroni's `patronictl version` prints the same
 * per member). Version skew (more than one stolon-ts version, a component that publishes none —
 * a release from before versions were published — or keepers on different PostgreSQL major
 * versions) is reported as `WARNING:` lines; the exit code stays 0 (skew is normal during a
 * rolling upgrade), and `--format json` carries the warnings for scripts (`warnings`, empty
 * when there is none). Stolon's `stolonctl version` prints only its own version.
 */
import { STOLON_TS_VERSION, type KeeperInfo, type ProxyInfo, type SentinelInfo } from '@stolon-ts/cluster';
import { CommandError, ExitCode, runCommand, type CommandContext, type ExitCodeValue } from './context.js';
import { table } from './status.js';

/** Output formats of `version`. */
export const VERSION_FORMATS = ['table', 'json'] as const;
/** One of {@link VERSION_FORMATS}. */
export type VersionFormat = (typeof VERSION_FORMATS)[number];

/** One program whose version `version` shows. */
export interface ComponentVersion {
  readonly component: 'stolonctl' | 'keeper' | 'sentinel' | 'proxy';
  /** Its uid ("" for stolonctl). */
  readonly uid: string;
  /** The stolon-ts version it published; null when it published none. */
  readonly version: string | null;
  /** Keepers: the PostgreSQL binaries' `major.minor`. */
  readonly postgres?: string;
}

/** What `version` reads from the store, as handed to {@link buildVersions}. */
export interface VersionInputs {
  readonly keepers: Readonly<Record<string, KeeperInfo>>;
  readonly sentinels: Readonly<Record<string, SentinelInfo>>;
  readonly proxies: Readonly<Record<string, ProxyInfo>>;
}

const byUid = (a: ComponentVersion, b: ComponentVersion): number => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0);

/** One row per program: stolonctl first, then keepers, sentinels and proxies, each by uid. Pure. */
export function buildVersions(inp: VersionInputs, own: string = STOLON_TS_VERSION): ComponentVersion[] {
  const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
  return [
    { component: 'stolonctl', uid: '', version: own },
    ...Object.entries(inp.keepers)
      .map(([uid, i]): ComponentVersion => ({
        component: 'keeper',
        uid,
        version: str(i.version),
        postgres: `${i.postgresBinaryVersion.Maj}.${i.postgresBinaryVersion.Min}`,
      }))
      .sort(byUid),
    ...Object.entries(inp.sentinels)
      .map(([uid, i]): ComponentVersion => ({ component: 'sentinel', uid, version: str(i.Version) }))
      .sort(byUid),
    ...Object.entries(inp.proxies)
      .map(([uid, i]): ComponentVersion => ({ component: 'proxy', uid, version: str(i.Version) }))
      .sort(byUid),
  ];
}

/**
 * The version-skew warnings for `rows` (without the `WARNING:` prefix), empty when every program
 * publishes the same stolon-ts version and every keeper runs the same PostgreSQL major version
 * (a standby must run the primary's major version to replicate from it). Pure.
 */
export function versionSkew(rows: readonly ComponentVersion[]): string[] {
  const out: string[] = [];
  const versions = new Map<string, string[]>();
  for (const r of rows) {
    if (r.version !== null) {
      const name = r.uid === '' ? r.component : `${r.component} ${r.uid}`;
      versions.set(r.version, [...(versions.get(r.version) ?? []), name]);
    }
  }
  if (versions.size > 1) {
    const parts = [...versions.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([v, who]) => `${v} (${who.join(', ')})`);
    out.push(`version skew: more than one stolon-ts version runs: ${parts.join('; ')}; finish the upgrade so that every program runs the same release`);
  }
  const silent = rows.filter((r) => r.version === null).map((r) => `${r.component} ${r.uid}`);
  if (silent.length > 0) {
    out.push(`version skew: ${silent.join(', ')} publish no version (a release older than ${STOLON_TS_VERSION}'s version reporting); upgrade them`);
  }
  const majors = new Set(rows.filter((r) => r.postgres !== undefined).map((r) => r.postgres!.split('.')[0]));
  if (majors.size > 1) {
    out.push(`keepers run different PostgreSQL major versions (${[...majors].sort().join(', ')}): a standby replicates only from a primary of its own major version`);
  }
  return out;
}

/**
 * Prints every program's version and the skew warnings.
 * @returns 0, also with skew warnings; 1 when the store fails; 2 for an unknown format.
 */
export function runVersion(ctx: CommandContext, opts: { readonly format?: VersionFormat } = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'version', async () => {
    const format = opts.format ?? 'table';
    if (!VERSION_FORMATS.includes(format)) {
      throw new CommandError(`--format: "${String(format)}" is not one of table, json`, ExitCode.usage, { field: 'format' });
    }
    const [keepers, sentinels, proxies] = await Promise.all([
      ctx.store.listInfos('keepers'),
      ctx.store.listInfos('sentinels'),
      ctx.store.listInfos('proxies'),
    ]);
    const rows = buildVersions({ keepers, sentinels, proxies });
    const warnings = versionSkew(rows);
    if (format === 'json') {
      ctx.out(JSON.stringify({ components: rows, warnings }, null, 2));
      return;
    }
    const body = table(
      ['COMPONENT', 'UID', 'VERSION', 'POSTGRESQL'],
      rows.map((r) => [r.component, r.uid === '' ? '-' : r.uid, r.version ?? 'unknown', r.postgres ?? '-']),
    );
    ctx.out([body, ...warnings.map((w) => `WARNING: ${w}`)].join('\n'));
  });
}
