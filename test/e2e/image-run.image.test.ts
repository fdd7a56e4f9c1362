/**
 * images/Dockerfile built for real and run (`npm run test:image`; see image-podman.ts for the
 * stand-in base images): a cluster of the image's containers on the host network — etcd outside
 * (the harness's, on 127.0.0.1), two keepers, a sentinel, a proxy, `stolonctl init` as a one-shot
 * container — initialises, takes a write through the proxy, survives a SIGKILL of the primary's
 * container by failing over, runs every process as uid 999, has tini reap the children of a
 * postmaster killed with -9, and shuts the keeper's PostgreSQL down cleanly on `podman stop`
 * (the image's STOPSIGNAL, not the postgres base's SIGINT). The image holds no secret.
 */
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir, query, removeDir, startEtcd, waitFor, type EtcdHandle } from '@stolon-ts/harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_LABEL, ULIMITS, buildImage, podman, podmanOk, removeTestContainers, requirePodman, standInBases } from './image-podman.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TAG = 'localhost/stolon-ts:image-test';
const CLUSTER = 'imgtest';
const SU_PASSWORD = 'image-test-su-password';
const REPL_PASSWORD = 'image-test-repl-password';
const PG_BIN = '/usr/lib/postgresql/15/bin';

interface Keeper {
  readonly uid: string;
  readonly container: string;
  readonly dataDir: string;
  readonly pgPort: number;
}

let etcd: EtcdHandle | undefined;
let workDir = '';
let keepers: Keeper[] = [];
let proxyPort = 0;
const run = `${process.pid}`;
const logs: string[] = [];

const storeFlags = (): string[] => ['--cluster-name', CLUSTER, '--store-backend', 'etcdv3', '--store-endpoints', etcd?.endpoints.join(',') ?? ''];

/** `podman run -d` of the image on the host network, labelled for cleanup. */
async function startContainer(name: string, volumes: readonly string[], argv: readonly string[]): Promise<void> {
  await podmanOk(['run', '-d', '--name', name, '--label', `${TEST_LABEL}=${run}`, '--network', 'host', ...ULIMITS, ...volumes.flatMap((v) => ['-v', v]), TAG, ...argv]);
}

/** The processes of a running container as `{pid, ppid, state, uid}`, read from its /proc. */
async function processes(container: string): Promise<{ pid: number; ppid: number; state: string; uid: number; name: string }[]> {
  const out = await podmanOk(['exec', container, 'sh', '-c', 'for d in /proc/[0-9]*; do s=$(cat $d/stat 2>/dev/null) && u=$(grep ^Uid: $d/status 2>/dev/null) && echo "$s|$u"; done']);
  return out.split('\n').filter((l) => l.includes('|')).map((l) => {
    const [stat = '', uidLine = ''] = l.split('|');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const [state = '', ppid = ''] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid: Number(stat.split(' ')[0]), ppid: Number(ppid), state, uid: Number(uidLine.split(/\s+/)[1]), name };
  });
}

const su = (port: number) => ({ host: '127.0.0.1', port, user: 'postgres', password: SU_PASSWORD, database: 'postgres', connectionTimeoutMillis: 3000 });

async function isPrimary(k: Keeper): Promise<boolean | undefined> {
  try {
    const [row] = await query<{ r: boolean }>(su(k.pgPort), 'SELECT pg_is_in_recovery() AS r');
    return row === undefined ? undefined : !row.r;
  } catch {
    return undefined;
  }
}

let podmanReady = false;

beforeAll(async () => {
  await requirePodman();
  podmanReady = true;
  await removeTestContainers();
  const bases = await standInBases();
  const buildLog = join(REPO, '.test-results', 'image-build.log');
  await mkdir(dirname(buildLog), { recursive: true });
  const buildSeconds = await buildImage(REPO, bases, TAG, buildLog);
  const mb = async (image: string) => (Number((await podmanOk(['image', 'inspect', image, '--format', '{{.Size}}'])).trim()) / 1e6).toFixed(0);
  logs.push(`stand-in bases ${bases.seconds.toFixed(0)} s, image build ${buildSeconds.toFixed(0)} s, image ${await mb(TAG)} MB (its postgres base ${await mb(bases.postgresImage)} MB)`);
  console.log(`image test: ${logs[0]}`);

  etcd = await startEtcd({ name: 'etcd (image test)' });
  workDir = await makeTempDir('stolon-image-test-');
  const secrets = join(workDir, 'secrets');
  await mkdir(secrets, { mode: 0o755 });
  for (const [file, value] of [['su-password', SU_PASSWORD], ['repl-password', REPL_PASSWORD]] as const) {
    await writeFile(join(secrets, file), value, { mode: 0o600 });
    await chown(join(secrets, file), 999, 999);
  }
  keepers = [];
  for (const uid of ['k1', 'k2']) {
    const dataDir = join(workDir, uid);
    await mkdir(dataDir);
    await chown(dataDir, 999, 999);
    await chmod(dataDir, 0o700);
    keepers.push({ uid, container: `stolon-ts-test-${run}-${uid}`, dataDir, pgPort: await freePort() });
  }
  proxyPort = await freePort();
}, 1_500_000);

afterAll(async () => {
  if (!podmanReady) {
    return;
  }
  const names = [...keepers.map((k) => k.container), `stolon-ts-test-${run}-sentinel`, `stolon-ts-test-${run}-proxy`];
  await mkdir(join(REPO, '.test-results', 'image-logs'), { recursive: true });
  for (const name of names) {
    const r = await podman(['logs', name]);
    await writeFile(join(REPO, '.test-results', 'image-logs', `${name}.log`), r.stdout + r.stderr).catch(() => undefined);
  }
  await removeTestContainers();
  await etcd?.stop();
  if (workDir !== '') {
    await removeDir(workDir);
  }
}, 120_000);

describe('images/Dockerfile, built with podman and run', () => {
  it('has the runtime settings the Dockerfile declares: user 999:999, tini as PID 1, STOPSIGNAL SIGTERM, a keeper code cache its Node accepts', async () => {
    const cfg = JSON.parse(await podmanOk(['image', 'inspect', TAG, '--format', '{{json .Config}}'])) as {
      User?: string;
      Entrypoint?: string[];
      StopSignal?: string;
    };
    expect(cfg.User).toBe('999:999');
    expect(cfg.Entrypoint).toEqual(['/usr/bin/tini', '--']);
    expect(cfg.StopSignal).toBe('SIGTERM');
    const versions = await podmanOk(['run', '--rm', ...ULIMITS, TAG, 'sh', '-c', 'id -u; node --version; postgres --version || /usr/lib/postgresql/15/bin/postgres --version']);
    expect(versions).toMatch(/^999\nv24\.\d+\.\d+\n.*PostgreSQL\) 15\./s);
    // pgBackRest, which the keeper runs for the spec's backup section (docs/backup.md), runs as the image's user.
    const pgbackrest = await podmanOk(['run', '--rm', ...ULIMITS, TAG, 'pgbackrest', 'version']);
    expect(pgbackrest.trim()).toMatch(/^pgBackRest 2\.\d+/);
    // The keeper's code cache was written by the build stage's Node, which the runtime copied: accepted.
    const dist = '/opt/stolon-ts/packages/keeper/dist';
    const probe = `import { compileBundle } from '${dist}/bundle-loader.js'; console.log(compileBundle('${dist}/stolon-keeper.cjs', '${dist}/stolon-keeper.cjs.code-cache').cacheRejected);`;
    expect((await podmanOk(['run', '--rm', ...ULIMITS, TAG, 'node', '--input-type=module', '-e', probe])).trim()).toBe('false');
  });

  it('holds no secret: no key, token or npmrc in the image, none in its config or history', async () => {
    const cfg = await podmanOk(['image', 'inspect', TAG, '--format', '{{json .Config.Env}} {{json .Config.Labels}}']);
    expect(cfg).not.toMatch(/pass(word|wd)|secret|token|api_?key|credential/i);
    const history = await podmanOk(['history', '--no-trunc', '--format', '{{.CreatedBy}}', TAG]);
    expect(history).not.toMatch(/PGPASSWORD|password=|_authToken|--secret/i);
    // Our layers' directories: the app, the wrappers, the user's home, the data dir, root's home.
    const found = await podmanOk(['run', '--rm', ...ULIMITS, '--user', '0', TAG, 'sh', '-c',
      'find /opt/stolon-ts /usr/local /var/lib/postgresql /stolon-data /root -xdev \\( -name .npmrc -o -name npmrc -o -name "*.pem" -o -name "*.key" -o -name "id_*" -o -name ".env" -o -name "*.p12" \\) -print; ' +
      'grep -rlsE "^-----BEGIN [A-Z ]*PRIVATE KEY-----$|^//[^ ]+:_authToken=" /opt/stolon-ts /usr/local/bin /var/lib/postgresql /root | head -20; true']);
    expect(found.trim()).toBe('');
  });

  it('runs a cluster of its containers: init, a write through the proxy, the primary killed, failover', async () => {
    const secrets = `${join(workDir, 'secrets')}:/etc/stolon:ro`;
    for (const k of keepers) {
      await startContainer(k.container, [`${k.dataDir}:/stolon-data`, secrets], [
        'stolon-keeper', ...storeFlags(), '--uid', k.uid, '--data-dir', '/stolon-data',
        '--pg-listen-address', '127.0.0.1', '--pg-port', String(k.pgPort),
        '--pg-su-password-file', '/etc/stolon/su-password', '--pg-repl-password-file', '/etc/stolon/repl-password',
      ]);
    }
    await startContainer(`stolon-ts-test-${run}-sentinel`, [], ['stolon-sentinel', ...storeFlags()]);
    await startContainer(`stolon-ts-test-${run}-proxy`, [], ['stolon-proxy', ...storeFlags(), '--listen-address', '127.0.0.1', '--port', String(proxyPort)]);
    // The init Job's command, as a one-shot container.
    await podmanOk(['run', '--rm', '--label', `${TEST_LABEL}=${run}`, '--network', 'host', ...ULIMITS, TAG, 'stolonctl', ...storeFlags(), 'init', '--yes', '{"initMode":"new"}']);

    await waitFor(() => query(su(proxyPort), 'CREATE TABLE IF NOT EXISTS t (x int)').then(() => true), { timeoutMs: 120_000, what: 'a write through the proxy', intervalMs: 500 });
    await query(su(proxyPort), 'INSERT INTO t VALUES (1)');
    const primary = await waitFor(async () => {
      const roles = await Promise.all(keepers.map(isPrimary));
      return roles[0] === true && roles[1] === false ? keepers[0] : roles[1] === true && roles[0] === false ? keepers[1] : undefined;
    }, { timeoutMs: 120_000, what: 'one primary and one standby', intervalMs: 500 });
    const standby = keepers.find((k) => k !== primary)!;
    await waitFor(() => query<{ n: string }>(su(standby.pgPort), 'SELECT count(*) AS n FROM t').then((r) => r[0]?.n === '1'), { timeoutMs: 60_000, what: 'the row on the standby' });

    for (const name of [...keepers.map((k) => k.container), `stolon-ts-test-${run}-sentinel`, `stolon-ts-test-${run}-proxy`]) {
      const procs = await processes(name);
      expect(procs.find((p) => p.pid === 1)?.name, `${name} PID 1`).toBe('tini');
      expect(procs.filter((p) => p.uid !== 999).map((p) => `${p.name} uid ${p.uid}`), `${name} runs non-root`).toEqual([]);
    }
    expect((await processes(primary.container)).some((p) => p.name === 'postgres')).toBe(true);

    await podmanOk(['kill', primary.container]);
    await waitFor(() => query(su(proxyPort), 'INSERT INTO t VALUES (2)').then(() => true), { timeoutMs: 120_000, what: 'a write through the proxy after failover', intervalMs: 500 });
    expect(await isPrimary(standby)).toBe(true);
    const rows = await query<{ x: number }>(su(proxyPort), 'SELECT x FROM t ORDER BY x');
    expect(rows.map((r) => r.x)).toEqual([1, 2]);
  });

  it('tini reaps the children of a postmaster killed with -9, and the keeper starts PostgreSQL again', async () => {
    const survivor = (await isPrimary(keepers[1]!)) === true ? keepers[1]! : keepers[0]!;
    const pidFile = join(survivor.dataDir, 'postgres', 'postmaster.pid');
    const postmaster = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
    const before = await processes(survivor.container);
    const children = before.filter((p) => p.ppid === postmaster).map((p) => p.pid);
    expect(children.length, 'the postmaster has children (checkpointer, walwriter, …)').toBeGreaterThan(0);
    await podmanOk(['exec', survivor.container, 'sh', '-c', `kill -9 ${postmaster}`]);
    // Its children exit on postmaster death, re-parented to PID 1: tini must reap them, else they
    // stay zombies (state Z, parent 1) for the container's life.
    await waitFor(async () => {
      const now = await processes(survivor.container);
      return now.every((p) => p.pid !== postmaster && !children.includes(p.pid) && p.state !== 'Z');
    }, { timeoutMs: 30_000, what: 'the killed postmaster and its children gone, no zombie left', intervalMs: 250 });
    await waitFor(async () => {
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]);
      return pid > 0 && pid !== postmaster && (await isPrimary(survivor)) === true;
    }, { timeoutMs: 90_000, what: 'a new postmaster, primary again', intervalMs: 500 });
    expect((await processes(survivor.container)).filter((p) => p.state === 'Z')).toEqual([]);
  });

  it('podman stop (STOPSIGNAL SIGTERM) stops the keeper and shuts its PostgreSQL down cleanly', async () => {
    const survivor = (await isPrimary(keepers[1]!)) === true ? keepers[1]! : keepers[0]!;
    const started = performance.now();
    await podmanOk(['stop', '-t', '60', survivor.container]);
    const seconds = (performance.now() - started) / 1000;
    const exit = (await podmanOk(['inspect', survivor.container, '--format', '{{.State.ExitCode}}'])).trim();
    expect(exit, 'the keeper exits 0 (not killed: 137)').toBe('0');
    expect(seconds).toBeLessThan(60);
    const control = execFileSync(join(PG_BIN, 'pg_controldata'), [join(survivor.dataDir, 'postgres')], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
    expect(control).toMatch(/Database cluster state:\s+shut down\n/);
  });
});
