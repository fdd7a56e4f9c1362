/**
 * What the store-outage e2e files share (store-outage.e2e.test.ts on etcd,
 * store-outage-kubernetes.backends.test.ts on the Kubernetes API stand-in): writers through the proxy
 * and straight to each keeper's PostgreSQL (the chaos recorder), the largest gap between their
 * acknowledged writes, the check that nothing acknowledged is lost, and what an operator sees:
 * `stolonctl status --member-address` during the outage and the failsafe spell in
 * `stolonctl events` after it.
 */
import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';
import {
  Recorder,
  longestGap,
  missingWrites,
  query,
  readPresentWrites,
  waitFor,
  type AckedWrite,
  type CommandResult,
  type LocalCluster,
} from '@stolon-ts/harness';

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A recorder on fresh tables (each test's writers number their rows from 0 again): 1 proxy writer, 1 direct writer per keeper. */
export async function outageRecorder(c: LocalCluster): Promise<Recorder> {
  await query(c.proxyClientConfig(0), 'truncate chaos_w, chaos_direct');
  return new Recorder({
    proxies: () => [c.proxyClientConfig(0)],
    direct: () => c.keepers.map((_, i) => c.directClientConfig(i)),
    writers: 1,
    queryTimeoutMs: 3000,
    maxRunMs: 5 * 60_000,
  });
}

/** The largest gap between acknowledged writes: its length and bounds (ms, epoch ms) and the count of writes. */
interface WriteGap {
  readonly ms: number;
  readonly from: number;
  readonly to: number;
  readonly n: number;
}

/** The largest gap (ms) between acknowledged writes of `kind` from `from` to `to` (epoch ms), with the count. */
export function writeGap(acked: readonly AckedWrite[], kind: 'proxy' | 'direct', from: number, to: number): WriteGap {
  const ws = acked.filter((a) => a.kind === kind);
  const g = longestGap(ws, from, to);
  return { ms: g.ms, from: g.from, to: g.to, n: ws.filter((a) => a.ackedAt >= from && a.ackedAt <= to).length };
}

/** What failsafe mode, the watchdogs and the fencer logged from 3 s before a gap to 5 s into it: the first 25 lines, shortened. */
function logsAround(c: LocalCluster, g: WriteGap): string {
  const lines = c
    .logs()
    .split('\n')
    .filter((l) => /failsafe|watchdog|fenc|store unreachable|routing|lost/.test(l))
    .filter((l) => {
      const t = Number(/"time":(\d+)/.exec(l)?.[1] ?? NaN);
      return t >= g.from - 3000 && t <= g.from + 5000;
    });
  return lines
    .slice(0, 25)
    .map((l) => l.replace(/"(level|pid|component|cluster|hostname)":[^,]*,/g, '').slice(0, 260))
    .join('\n');
}

/**
 * Asserts that the largest gap between acknowledged writes of each kind in `kinds`, from `r.from`
 * to `r.to`, is at most `limitMs`, after printing them under `title`. A failure's message carries
 * the cluster's failsafe, watchdog and fencing lines around the gap: CI prints little else.
 */
export function expectGapsWithin(
  c: LocalCluster,
  r: { readonly acked: readonly AckedWrite[]; readonly from: number; readonly to: number },
  title: string,
  limitMs: number,
  kinds: readonly ('proxy' | 'direct')[] = ['proxy', 'direct'],
): void {
  const gaps = kinds.map((k) => ({ kind: k, g: writeGap(r.acked, k, r.from, r.to) }));
  process.stdout.write(`${title}: largest gap ${gaps.map(({ kind, g }) => `${g.ms} ms ${kind === 'proxy' ? 'through the proxy' : 'direct'} (${g.n} writes)`).join(', ')}\n`);
  for (const { kind, g } of gaps) {
    // The logs are read only for a gap over the limit (the assertion's message).
    const why = g.ms > limitMs ? `${kind} writes stopped for ${g.ms} ms from ${new Date(g.from).toISOString()}; logs around it:\n${logsAround(c, g)}` : kind;
    expect(g.ms, why).toBeLessThanOrEqual(limitMs);
  }
}

/** Every acknowledged write, through the proxy and direct, is on keeper `primary`'s PostgreSQL. */
export async function expectNothingLost(c: LocalCluster, acked: readonly AckedWrite[], primary: number): Promise<void> {
  const proxyRows = await readPresentWrites(c.directClientConfig(primary), 0, 'chaos_w');
  const directRows = await readPresentWrites(c.directClientConfig(primary), 0, 'chaos_direct');
  expect(missingWrites(acked.filter((a) => a.kind === 'proxy'), proxyRows)).toEqual([]);
  expect(missingWrites(acked.filter((a) => a.kind === 'direct'), directRows)).toEqual([]);
}

/** `stolonctl status` as an operator runs it while the store cannot be read: asking every keeper's member API. */
export function statusDuringOutage(c: LocalCluster): Promise<CommandResult> {
  const members = c.keepers.map((k) => `${k.pgHost}:${k.memberPort!}`).join(',');
  return c.stolonctl(['status', '--store-timeout', '1s', '--member-address', members, '--member-token-file', c.memberTokenFile]);
}

/** How many failsafe spells `stolonctl events` lists now. */
export async function failsafeSpells(c: LocalCluster): Promise<number> {
  const out = await c.stolonctl(['events', '--format', 'json']);
  expect(out.code).toBe(0);
  return (JSON.parse(out.stdout) as { kind: string }[]).filter((e) => e.kind === 'failsafe').length;
}

/**
 * What an operator saw: `during` (from {@link statusDuringOutage}) said keeper `primary` is
 * confirmed by 1/1 members without printing the token; after the outage `stolonctl events` lists
 * a new spell (more than `spellsBefore`) of that keeper, not fenced, every one of at least
 * `minRounds` rounds confirmed.
 * @returns the spell's confirmed and total rounds
 */
export async function expectOperatorView(
  c: LocalCluster,
  primary: number,
  during: CommandResult | undefined,
  opts: { readonly spellsBefore: number; readonly minRounds: number },
): Promise<{ confirmedRounds: number; rounds: number }> {
  const uid = c.keepers[primary]!.uid;
  expect(during?.code).toBe(1);
  expect(during?.stdout).toMatch(new RegExp(`^Store unreachable, failsafe: primary ${uid} confirmed by 1/1 members \\(last round \\d+ ms ago\\)`));
  expect(during?.stdout).not.toContain(await readFile(c.memberTokenFile, 'utf8'));
  // Once the store is back, the sentinel records the spell: stolonctl events shows it.
  const spell = await waitFor(
    async () => {
      const out = await c.stolonctl(['events', '--format', 'json']);
      const list = JSON.parse(out.stdout) as { kind: string; keeperUID?: string; rounds?: number; confirmedRounds?: number; fenced?: boolean }[];
      const spells = list.filter((e) => e.kind === 'failsafe');
      return spells.length > opts.spellsBefore ? spells.at(-1) : undefined;
    },
    { timeoutMs: 20_000, what: 'the failsafe spell in stolonctl events' },
  );
  expect(spell).toMatchObject({ keeperUID: uid, fenced: false });
  expect(spell.rounds).toBeGreaterThanOrEqual(opts.minRounds);
  expect(spell.confirmedRounds).toBe(spell.rounds);
  return { confirmedRounds: spell.confirmedRounds!, rounds: spell.rounds! };
}

/** One call of etcd's JSON gateway (`POST /v3/<path>`, etcd's own HTTP API; no client of ours). */
async function etcdGateway(c: LocalCluster, path: string, body: object): Promise<Record<string, unknown>> {
  const res = await fetch(`${c.etcd.endpoints[0]}/v3/${path}`, { method: 'POST', body: JSON.stringify(body) });
  if (!res.ok) {
    throw new Error(`etcd gateway ${path}: HTTP ${res.status} ${await res.text()}`);
  }
  return (await res.json()) as Record<string, unknown>;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * Revokes the leases of every `kind` info of the cluster, as etcd does with the leases that
 * expired while it was frozen, a moment after it runs again. Returns how many it revoked.
 */
export async function revokeInfoLeases(c: LocalCluster, kind: 'keepers' | 'proxies'): Promise<number> {
  const dir = `stolon/cluster/${c.clusterName}/${kind}/info/`;
  const end = `${dir.slice(0, -1)}${String.fromCharCode(dir.charCodeAt(dir.length - 1) + 1)}`;
  const res = await etcdGateway(c, 'kv/range', { key: b64(dir), range_end: b64(end) });
  const leases = ((res['kvs'] ?? []) as { lease?: string }[]).map((kv) => kv.lease).filter((l): l is string => l !== undefined && l !== '0');
  for (const id of leases) {
    await etcdGateway(c, 'lease/revoke', { ID: id });
  }
  return leases.length;
}

/** The proxy generation and enabled proxies in the cluster's clusterdata, read through etcd's JSON gateway. */
export async function proxyState(c: LocalCluster): Promise<{ generation: number; enabled: string[] }> {
  const res = await etcdGateway(c, 'kv/range', { key: b64(`stolon/cluster/${c.clusterName}/clusterdata`) });
  const kv = ((res['kvs'] ?? []) as { value: string }[])[0];
  if (kv === undefined) {
    throw new Error('no clusterdata in etcd');
  }
  const { proxy } = JSON.parse(Buffer.from(kv.value, 'base64').toString('utf8')) as { proxy: { generation: number; spec: { enabledProxies: string[] } } };
  return { generation: proxy.generation, enabled: proxy.spec.enabledProxies };
}
