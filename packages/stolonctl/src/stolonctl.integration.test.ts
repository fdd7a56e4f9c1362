/**
 * Integration tier: the built `stolonctl` bin as a child process against one real etcd for the
 * whole file. Every refusal is checked to leave the stored clusterdata byte-for-byte unchanged,
 * read back through an `EtcdStore`.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClusterData, serializeClusterData, type ClusterData } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { runNode, startEtcd, type CommandResult, type EtcdHandle } from '@stolon-ts/harness';
import { EtcdStore } from '@stolon-ts/store/backends';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const BIN = join(ROOT, 'packages/stolonctl/dist/bin.js');

let etcd: EtcdHandle;
const stores: EtcdStore[] = [];

beforeAll(async () => {
  // The test runs the bin, so it must be built from the current sources.
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'packages/stolonctl'], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch (err) {
    // tsc reports compile errors on stdout; put them in the failure instead of "Command failed".
    const out = (err as { stdout?: Buffer }).stdout?.toString() ?? '';
    throw new Error(`tsc -b packages/stolonctl failed:\n${out}`, { cause: err });
  }
  etcd = await startEtcd({ name: 'etcd stolonctl' });
});

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await etcd?.stop();
});

/** Runs the bin with the store flags of cluster `name`; `env` replaces the environment. */
function ctl(name: string, args: readonly string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CommandResult> {
  return runNode(
    BIN,
    ['--cluster-name', name, '--store-backend', 'etcdv3', '--store-endpoints', etcd.endpoints.join(','), ...args],
    opts.stdin,
    opts.env,
  );
}

function storeOf(name: string): EtcdStore {
  const s = new EtcdStore({ endpoints: etcd.endpoints, clusterName: name });
  stores.push(s);
  return s;
}

async function storedText(name: string): Promise<string | null> {
  return (await storeOf(name).getClusterData())?.text ?? null;
}

/** keeper0 holds the primary db0; keeper1's db1 follows it. Both keepers unhealthy (stopped). */
function twoKeeperCluster(): ClusterData {
  return aCluster({ uid: 'c0ffee00' })
    .initialized()
    .withPrimary('keeper0', { uid: 'db0', keeperHealthy: false })
    .withStandby('keeper1', { uid: 'db1', keeperHealthy: false })
    .build();
}

/** Stores `cd` as cluster `name`'s clusterdata and returns the stored text. */
async function seed(name: string, cd: ClusterData): Promise<string> {
  await storeOf(name).overwriteClusterData(serializeClusterData(cd));
  return (await storedText(name))!;
}

/** A fresh cluster name per test, so tests share the etcd but not data. */
let seq = 0;
function clusterName(): string {
  seq += 1;
  return `itest${seq}`;
}

describe('stolonctl bin against etcd', () => {
  it('init creates the cluster; init again without --yes exits 1 and changes nothing', async () => {
    const name = clusterName();
    const first = await ctl(name, ['init']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`cluster ${name} initialized \\(uid [0-9a-f]{8}\\)`));
    const before = await storedText(name);
    expect(parseClusterData(before!).cluster.spec).toEqual({ initMode: 'new' });

    const again = await ctl(name, ['init', '{"initMode":"new","maxStandbys":3}']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists; re-run with --yes to overwrite it/);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(await storedText(name)).toBe(before);

    const yes = await ctl(name, ['init', '-y', '{"initMode":"new","maxStandbys":3}']);
    expect(yes.code).toBe(0);
    const after = parseClusterData((await storedText(name))!);
    expect(after.cluster.spec).toEqual({ initMode: 'new', maxStandbys: 3 });
    expect(after.cluster.uid).not.toBe(parseClusterData(before!).cluster.uid);
  });

  it('init reads the spec from stdin with -f -', async () => {
    const name = clusterName();
    const r = await ctl(name, ['init', '-f', '-'], { stdin: '{"initMode":"new","usePgrewind":true}' });
    expect(r.code).toBe(0);
    expect(parseClusterData((await storedText(name))!).cluster.spec).toEqual({ initMode: 'new', usePgrewind: true });
  });

  it('update --patch refusals exit 2, name the field, and leave the stored bytes identical', async () => {
    const name = clusterName();
    expect((await ctl(name, ['init'])).code).toBe(0);
    const before = await storedText(name);

    const badJson = await ctl(name, ['update', '--patch', '{"pgParameters":']);
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toMatch(/^stolonctl update: invalid JSON in the spec-json argument: /);

    const unknown = await ctl(name, ['update', '-p', '{"proxyTimeOut":"9s"}']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/proxyTimeOut: unknown field/);

    const timing = await ctl(name, ['update', '--patch', '{"proxyCheckInterval":"20s","proxyTimeout":"5s"}']);
    expect(timing.code).toBe(2);
    expect(timing.stderr).toMatch(/proxyCheckInterval: 20s must be less than proxyTimeout \(5s\)/);

    const initMode = await ctl(name, ['update', '--patch', '{"initMode":"pitr"}']);
    expect(initMode.code).toBe(2);
    expect(initMode.stderr).toMatch(/initMode/);

    for (const r of [badJson, unknown, timing, initMode]) {
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack traces
    }
    expect(await storedText(name)).toBe(before);
  });

  it('update --patch applies a valid patch, and spec prints it', async () => {
    const name = clusterName();
    expect((await ctl(name, ['init'])).code).toBe(0);
    const up = await ctl(name, ['update', '--patch', '{"pgParameters":{"work_mem":"8MB"}}']);
    expect(up.code).toBe(0);
    const spec = await ctl(name, ['spec']);
    expect(spec.code).toBe(0);
    expect(JSON.parse(spec.stdout)).toEqual({ initMode: 'new', pgParameters: { work_mem: '8MB' } });
    const defaults = await ctl(name, ['spec', '--defaults']);
    expect(JSON.parse(defaults.stdout)).toMatchObject({ initMode: 'new', proxyTimeout: expect.any(String) });
  });

  it('status --format json parses; status on an unknown cluster exits 1', async () => {
    const name = clusterName();
    expect((await ctl(name, ['init'])).code).toBe(0);
    const uid = parseClusterData((await storedText(name))!).cluster.uid;
    const r = await ctl(name, ['status', '--format', 'json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { cluster: { uid: string; phase: string; available: boolean }; keepers: unknown[] };
    expect(j.cluster).toMatchObject({ uid, phase: 'initializing', available: false });
    expect(j.keepers).toEqual([]);
    const table = await ctl(name, ['status']);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('=== Cluster Info ===');

    const none = await ctl(clusterName(), ['status']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/cluster itest\d+ is not initialized; run stolonctl init/);
  });

  it('promote: refuses without -y when stdin is not a terminal, promotes with -y, then says it already is master', async () => {
    const name = clusterName();
    const spec =
      '{"initMode":"pitr","role":"standby","pitrConfig":{"dataRestoreCommand":"true"},' +
      '"standbyConfig":{"standbySettings":{"primaryConninfo":"host=10.0.0.1 user=repl password=s3cret"}}}';
    expect((await ctl(name, ['init', spec])).code).toBe(0);
    const before = await storedText(name);

    const refused = await ctl(name, ['promote'], { stdin: '' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/re-run with --yes/);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(await storedText(name)).toBe(before);

    const status = await ctl(name, ['status']);
    expect(status.stdout).toContain('Following: host=10.0.0.1 user=repl');

    const yes = await ctl(name, ['promote', '-y']);
    expect(yes.code).toBe(0);
    expect(parseClusterData((await storedText(name))!).cluster.spec.role).toBe('master');
    const again = await ctl(name, ['promote']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already a primary cluster/);
    for (const r of [refused, status, yes, again]) {
      expect(r.stdout + r.stderr).not.toContain('s3cret');
    }
  });

  it('failkeeper: an unknown keeper exits 1 and changes nothing; a known one gets forceFail', async () => {
    const name = clusterName();
    const before = await seed(name, twoKeeperCluster());

    const unknown = await ctl(name, ['failkeeper', 'keeper9']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('stolonctl failkeeper: keeper keeper9 is not in the cluster (known: keeper0, keeper1)\n');
    const missing = await ctl(name, ['failkeeper']);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(await storedText(name)).toBe(before);

    const ok = await ctl(name, ['failkeeper', 'keeper0']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/keeper keeper0 marked failed: .*it holds the primary db db0, so the sentinel fails over/);
    const after = parseClusterData((await storedText(name))!);
    expect(after.keepers['keeper0']?.status.forceFail).toBe(true);
    expect(after.keepers['keeper1']?.status.forceFail).toBeUndefined();
  });

  it('removekeeper: refuses the primary and (without -y, no terminal) a standby unchanged; removes with -y', async () => {
    const name = clusterName();
    const before = await seed(name, twoKeeperCluster());

    const primary = await ctl(name, ['removekeeper', 'keeper0', '--yes']);
    expect(primary.code).toBe(1);
    expect(primary.stderr).toBe(
      'stolonctl removekeeper: keeper keeper0 holds the primary db db0; fail it over first with `stolonctl failkeeper keeper0`\n',
    );
    const noYes = await ctl(name, ['removekeeper', 'keeper1'], { stdin: '' });
    expect(noYes.code).toBe(1);
    expect(noYes.stderr).toMatch(/^stolonctl removekeeper: removing keeper keeper1 deletes it and its db db1 from cluster itest\d+; .*re-run with --yes/);
    expect(noYes.stderr.trim().split('\n')).toHaveLength(1);
    expect(await storedText(name)).toBe(before);

    const yes = await ctl(name, ['removekeeper', '-y', 'keeper1']);
    expect(yes.stderr).toBe('');
    expect(yes.code).toBe(0);
    expect(yes.stdout).toBe(`keeper keeper1 and its db db1 removed from cluster ${name}\n`);
    const after = parseClusterData((await storedText(name))!);
    expect(Object.keys(after.keepers)).toEqual(['keeper0']);
    expect(Object.keys(after.dbs)).toEqual(['db0']);
  });

  it('pause shows the banner first in status and paused in json; resume clears it', async () => {
    const name = clusterName();
    expect((await ctl(name, ['init', '{"initMode":"new","maxStandbys":4}'])).code).toBe(0);
    const pause = await ctl(name, ['pause']);
    expect(pause.code).toBe(0);
    expect(pause.stdout).toMatch(/paused: the sentinel takes no failover or standby action until stolonctl resume/);
    expect(parseClusterData((await storedText(name))!).cluster.spec).toEqual({ initMode: 'new', maxStandbys: 4, paused: true });

    const status = await ctl(name, ['status']);
    expect(status.code).toBe(0);
    expect(status.stdout.split('\n')[0]).toBe(
      '!!! CLUSTER PAUSED: the sentinel takes no failover or standby action (stolonctl resume to re-enable) !!!',
    );
    const json = await ctl(name, ['status', '--format', 'json']);
    expect((JSON.parse(json.stdout) as { cluster: { paused: boolean } }).cluster.paused).toBe(true);
    const failkeeper = await ctl(name, ['failkeeper', 'keeper0']);
    expect(failkeeper.code).toBe(1);

    const resume = await ctl(name, ['resume']);
    expect(resume.code).toBe(0);
    expect(parseClusterData((await storedText(name))!).cluster.spec).toEqual({ initMode: 'new', maxStandbys: 4 });
    const after = await ctl(name, ['status']);
    expect(after.stdout).not.toContain('PAUSED');
    const again = await ctl(name, ['resume']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/is not paused; nothing written/);
  });

  it('events: none recorded, then the trace with offsets in both formats; a bad --last exits 2', async () => {
    const name = clusterName();
    expect((await ctl(name, ['init'])).code).toBe(0);
    const none = await ctl(name, ['events']);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe('no failovers recorded\n');

    const cd = twoKeeperCluster();
    cd.failoverHistory = [
      {
        id: 'db9-done',
        kind: 'failover',
        cause: 'keeper keeper9 unhealthy for 6000 ms',
        oldPrimary: { keeperUID: 'keeper9', dbUid: 'db9', xLogPos: 0x3001000 },
        newPrimary: { keeperUID: 'keeper0', dbUid: 'db0', xLogPos: 0x3000f00 },
        choice: 'keeper0: most advanced healthy standby',
        phases: {
          primaryLastSeen: '2025-01-01T00:00:04.790Z',
          declaredFailed: '2025-01-01T00:00:10.000Z',
          proxiesFenced: '2025-01-01T00:00:10.035Z',
          candidateChosen: '2025-01-01T00:00:10.040Z',
          promoted: '2025-01-01T00:00:10.480Z',
          proxiesRouted: '2025-01-01T00:00:10.510Z',
        },
        result: 'completed',
      },
    ];
    await seed(name, cd);
    const table = await ctl(name, ['events']);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(
      'primary last seen -5210 ms, declared failed 0 ms, proxies fenced +35 ms, candidate chosen +40 ms, promoted +480 ms, proxies routed +510 ms',
    );
    expect(table.stdout).toMatch(/^write outage\s+at most 5720 ms \(from the primary/m);
    const json = await ctl(name, ['events', '--format', 'json', '--last', '1']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject([{ id: 'db9-done', inProgress: false, writeOutageMs: 5720, offsetsMs: { proxiesRouted: 510 } }]);

    for (const bad of [['--last', 'abc'], ['--last', '0'], ['--format', 'yaml']]) {
      const r = await ctl(name, ['events', ...bad]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('rejects an unknown flag, a bad --format and a missing command with exit 2', async () => {
    const name = clusterName();
    const flag = await ctl(name, ['status', '--colour']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/Unknown argument: colour/);
    const format = await ctl(name, ['status', '--format', 'yaml']);
    expect(format.code).toBe(2);
    expect(format.stderr).toMatch(/format/);
    const noCommand = await ctl(name, []);
    expect(noCommand.code).toBe(2);
    expect(noCommand.stderr).toMatch(/give a command/);
    for (const r of [flag, format, noCommand]) {
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('names --cluster-name when it is missing, and takes it from STOLONCTL_CLUSTER_NAME', async () => {
    const env = { ...process.env };
    delete env['STOLONCTL_CLUSTER_NAME'];
    const missing = await runNode(BIN, ['--store-backend', 'etcdv3', '--store-endpoints', etcd.endpoints.join(','), 'status'], undefined, env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cluster-name/);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);

    const name = clusterName();
    const viaEnv = await runNode(
      BIN,
      ['--store-backend', 'etcdv3', '--store-endpoints', etcd.endpoints.join(','), 'init'],
      undefined,
      { ...env, STOLONCTL_CLUSTER_NAME: name },
    );
    expect(viaEnv.code).toBe(0);
    expect(await storedText(name)).not.toBeNull();
  });

  it('reports an unreachable store in one line with exit 1', async () => {
    const r = await runNode(BIN, [
      '--cluster-name',
      'x',
      '--store-backend',
      'etcdv3',
      '--store-endpoints',
      'http://127.0.0.1:1',
      '--store-timeout',
      '1s',
      'status',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^stolonctl status: store unavailable: .*127\.0\.0\.1:1/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
