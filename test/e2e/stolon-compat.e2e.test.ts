/**
 * Stolon users move over unchanged: our programs started as Stolon's published Kubernetes example
 * starts Stolon's (`examples/kubernetes/`: the environment of each container, the keeper's startup
 * script, stolonctl's bootstrap command line), recorded below as data — names, the shape of each
 * value, and what it must mean here — not as manifests. The programs run on the Kubernetes API
 * stand-in (the example's store backend). Each program's `configuration` log line must show every
 * variable taken with its meaning, and the cluster they form must serve SQL through the proxy as
 * the example's superuser with the example's password file. Stolon's other spellings are checked
 * too: each is accepted with the same meaning, ignored with a warning, or refused naming the fix.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  binPath,
  freePort,
  makeTempDir,
  query,
  removeDir,
  runNode,
  startKubeApiServerStandin,
  startProcess,
  waitFor,
  writeStandinKubeconfig,
  type KubeApiServerStandin,
  type ProcessHandle,
} from '@stolon-ts/harness';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

type Component = 'keeper' | 'sentinel' | 'proxy';

/**
 * One environment variable of the example: its value here (the example's, or the same shape on
 * this host: an IP for `$(hostname -i)`, a free port for `:8080`, a path for the Secret's mount),
 * and the field of our parsed flags it must set to `expected` (undefined: a variable our programs
 * do not read, with why that is the same).
 */
interface ExampleVar {
  readonly name: string;
  readonly value: string;
  readonly field?: string;
  readonly expected?: unknown;
  readonly note?: string;
}

/** The example's POD_NAME (fieldRef metadata.name), set on every component. */
const podName = (pod: string): ExampleVar => ({
  name: 'POD_NAME',
  value: pod,
  note: "Stolon's kubernetes backend writes infos into the pod's annotations; ours keeps them in Leases named by uid, so it is not read",
});

/** The `*_CLUSTER_NAME` (from the stolon-cluster label), `*_STORE_BACKEND` and `*_KUBE_RESOURCE_KIND` of every component. */
function storeVars(prefix: string): ExampleVar[] {
  return [
    { name: `${prefix}_CLUSTER_NAME`, value: 'kube-stolon', field: 'clusterName', expected: 'kube-stolon' },
    { name: `${prefix}_STORE_BACKEND`, value: 'kubernetes', field: 'storeBackend', expected: 'kubernetes' },
    { name: `${prefix}_KUBE_RESOURCE_KIND`, value: 'configmap', field: 'kubeResourceKind', expected: 'configmap' },
  ];
}

/**
 * The example's variables per component, and the command line of each container (the keeper's
 * `exec … stolon-keeper --data-dir /stolon-data`; the sentinel and proxy have none). Filled in
 * `beforeAll` (ports, paths).
 */
interface ExampleComponent {
  readonly vars: ExampleVar[];
  readonly args: string[];
  /** What the test adds that the example leaves to the pod (ports free on this host, the stand-in's kubeconfig). */
  readonly plumbing: Record<string, string>;
}

/** The keeper's startup script: `STKEEPER_UID=keeper<ordinal>` from the pod's hostname suffix. */
function keeperUidOfHostname(hostname: string): string {
  const ordinal = /-(\d+)$/.exec(hostname)?.[1];
  if (ordinal === undefined) {
    throw new Error(`hostname ${hostname} has no ordinal suffix`);
  }
  return `keeper${ordinal}`;
}

let dir = '';
let api: KubeApiServerStandin | undefined;
let kubeconfig = '';
let example: Record<Component, ExampleComponent>;
const procs: Partial<Record<Component, ProcessHandle>> = {};
let proxyPort = 0;
let metricsPorts: Record<Component, number> = { keeper: 0, sentinel: 0, proxy: 0 };

/** The environment a program runs with: ours without any ST*_ variable, plus the given ones. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const base = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !/^ST(KEEPER|SENTINEL|PROXY|OLONCTL)_/.test(e[0])));
  return { ...base, ...extra };
}

/** The `configuration` line a daemon logs once at startup, parsed. */
function configurationOf(p: ProcessHandle): Record<string, unknown> & { flags: Record<string, unknown> } {
  for (const line of p.logs().split('\n')) {
    const json = line.replace(/^\[[^\]]*\] /, '');
    if (json.includes('"msg":"configuration"')) {
      return JSON.parse(json) as Record<string, unknown> & { flags: Record<string, unknown> };
    }
  }
  throw new Error(`no configuration line in the ${p.name} log`);
}

beforeAll(async () => {
  dir = await makeTempDir('stolon-compat-e2e-');
  api = await startKubeApiServerStandin();
  // The example's pods reach the API server with their service account; here, a kubeconfig.
  kubeconfig = await writeStandinKubeconfig(join(dir, 'kubeconfig'), api.url, { namespace: 'default', tokens: ['t0'] });
  // The example's Secret `stolon`, key `password`, mounted at /etc/secrets/stolon.
  const suPasswordFile = join(dir, 'password');
  writeFileSync(suPasswordFile, 'password1', { mode: 0o600 });
  proxyPort = await freePort();
  metricsPorts = { keeper: await freePort(), sentinel: await freePort(), proxy: await freePort() };
  const pgPort = await freePort();
  // `hostname -i` in the keeper pod: the pod IP. Here the host's loopback address.
  const podIp = '127.0.0.1';
  example = {
    sentinel: {
      vars: [
        podName('stolon-sentinel-5d8f7c9b4-abcde'),
        ...storeVars('STSENTINEL'),
        { name: 'STSENTINEL_METRICS_LISTEN_ADDRESS', value: `0.0.0.0:${metricsPorts.sentinel}`, field: 'metricsListenAddress', expected: `0.0.0.0:${metricsPorts.sentinel}` },
      ],
      args: [],
      plumbing: { KUBECONFIG: kubeconfig },
    },
    keeper: {
      vars: [
        podName('stolon-keeper-0'),
        ...storeVars('STKEEPER'),
        { name: 'STKEEPER_UID', value: keeperUidOfHostname('stolon-keeper-0'), field: 'uid', expected: 'keeper0' },
        { name: 'STKEEPER_PG_LISTEN_ADDRESS', value: podIp, field: 'pgListenAddress', expected: podIp },
        { name: 'STKEEPER_PG_REPL_USERNAME', value: 'repluser', field: 'pgReplUsername', expected: 'repluser' },
        // A password in the environment is allowed (only the command line is not): read as the password itself.
        { name: 'STKEEPER_PG_REPL_PASSWORD', value: 'replpassword', field: 'pgReplPasswordFile', expected: undefined },
        { name: 'STKEEPER_PG_SU_USERNAME', value: 'stolon', field: 'pgSuUsername', expected: 'stolon' },
        { name: 'STKEEPER_PG_SU_PASSWORDFILE', value: suPasswordFile, field: 'pgSuPasswordFile', expected: suPasswordFile },
        { name: 'STKEEPER_METRICS_LISTEN_ADDRESS', value: `0.0.0.0:${metricsPorts.keeper}`, field: 'metricsListenAddress', expected: `0.0.0.0:${metricsPorts.keeper}` },
      ],
      args: ['--data-dir', join(dir, 'stolon-data')],
      // The example's PostgreSQL port is the default 5432; this host may use it already.
      plumbing: { KUBECONFIG: kubeconfig, STKEEPER_PG_PORT: String(pgPort) },
    },
    proxy: {
      vars: [
        podName('stolon-proxy-6c9d8f7b5-fghij'),
        ...storeVars('STPROXY'),
        { name: 'STPROXY_LISTEN_ADDRESS', value: '0.0.0.0', field: 'listenAddress', expected: '0.0.0.0' },
        { name: 'STPROXY_METRICS_LISTEN_ADDRESS', value: `0.0.0.0:${metricsPorts.proxy}`, field: 'metricsListenAddress', expected: `0.0.0.0:${metricsPorts.proxy}` },
      ],
      args: [],
      // The example's proxy port is the default 5432.
      plumbing: { KUBECONFIG: kubeconfig, STPROXY_PORT: String(proxyPort) },
    },
  };
});

afterAll(async () => {
  for (const p of Object.values(procs)) {
    await p?.stop();
  }
  await api?.stop();
  if (dir !== '') {
    await removeDir(dir);
  }
});

describe("Stolon's Kubernetes example, run with our programs", () => {
  it('stolonctl init with the example bootstrap command line', async () => {
    // The example: stolonctl --cluster-name=kube-stolon --store-backend=kubernetes --kube-resource-kind=configmap init
    const r = await runNode(binPath('stolonctl'), ['--cluster-name=kube-stolon', '--store-backend=kubernetes', '--kube-resource-kind=configmap', 'init', '-y'], undefined, cleanEnv({ KUBECONFIG: kubeconfig }));
    expect(r.code, r.stderr).toBe(0);
  });

  it('every daemon takes every variable of the example with its meaning (configuration line)', async () => {
    for (const c of ['sentinel', 'keeper', 'proxy'] as const) {
      const e = example[c];
      const env = cleanEnv({ ...Object.fromEntries(e.vars.map((v) => [v.name, v.value])), ...e.plumbing });
      const p = startProcess({ name: c, cmd: process.execPath, args: [binPath(c), ...e.args], env });
      procs[c] = p;
      await p.waitForLog('"msg":"configuration"', 60_000);
      const conf = configurationOf(p);
      for (const v of e.vars.filter((x) => x.field !== undefined)) {
        expect(conf.flags[v.field!], `${c}: ${v.name}=${v.value}`).toEqual(v.expected);
      }
      const warnings = p.logs().split('\n').filter((l) => l.includes('"level":40'));
      for (const v of e.vars) {
        const flag = v.name.replace(/^ST[A-Z]+_/, '').toLowerCase().replace(/_/g, '-');
        expect(warnings.filter((w) => w.includes(`--${flag}`)), `${c} warned about ${v.name}`).toEqual([]);
      }
    }
    const keeper = configurationOf(procs.keeper!);
    expect(keeper['uid']).toBe('keeper0');
    expect(keeper['suPasswordFrom']).toBe(example.keeper.vars.find((v) => v.name === 'STKEEPER_PG_SU_PASSWORDFILE')?.value);
    expect(keeper['replPasswordFrom']).toBe('$STKEEPER_PG_REPL_PASSWORD');
  });

  it('the cluster they form serves SQL through the proxy as the example superuser, with its password file; the metrics addresses answer', async () => {
    const rows = await waitFor(
      () => query<{ who: string; repl: boolean }>(
        { host: '127.0.0.1', port: proxyPort, user: 'stolon', password: 'password1', database: 'postgres', connectionTimeoutMillis: 3000 },
        "select current_user as who, exists (select 1 from pg_roles where rolname = 'repluser' and rolreplication) as repl",
      ),
      { timeoutMs: 120_000, what: 'SQL through the proxy as stolon/password1', intervalMs: 500 },
    );
    expect(rows).toEqual([{ who: 'stolon', repl: true }]);
    for (const c of ['keeper', 'sentinel', 'proxy'] as const) {
      const res = await fetch(`http://127.0.0.1:${metricsPorts[c]}/healthz`, { signal: AbortSignal.timeout(3000) });
      expect(res.status, c).toBe(200);
    }
    // Stolon's `status -f json` spelling; the keeper is known by the uid the startup script derived.
    const status = await runNode(binPath('stolonctl'), ['--cluster-name=kube-stolon', '--store-backend=kubernetes', '--kube-resource-kind=configmap', 'status', '-f', 'json'], undefined, cleanEnv({ KUBECONFIG: kubeconfig }));
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('"keeper0"');
  });
});

/** One of Stolon's spellings outside the example, and what it must do here. */
interface StolonSpelling {
  readonly title: string;
  readonly program: Component | 'stolonctl';
  readonly args: readonly string[];
  readonly env?: Record<string, string>;
  /** Refused: the one stderr line. */
  readonly refused?: RegExp;
}

const store = ['--cluster-name', 'c', '--store-backend', 'etcdv3', '--store-endpoints', 'http://127.0.0.1:1'];

describe("Stolon's other spellings", () => {
  let pw = '';
  let dataDir = '';
  beforeAll(() => {
    pw = join(dir, 'pw');
    writeFileSync(pw, 'secret-value\n', { mode: 0o600 });
    dataDir = join(dir, 'k');
  });

  const refused = (): StolonSpelling[] => [
    { title: 'backend etcd (Stolon: etcdv2)', program: 'sentinel', args: ['--cluster-name', 'c', '--store-backend', 'etcd'], refused: /--store-backend etcd .*etcd v2 API backend, which is not supported: use --store-backend etcdv3/ },
    { title: 'backend etcdv2 from the environment', program: 'stolonctl', args: ['status'], env: { STOLONCTL_CLUSTER_NAME: 'c', STOLONCTL_STORE_BACKEND: 'etcdv2' }, refused: /--store-backend etcdv2 \(or STOLONCTL_STORE_BACKEND\) .*use --store-backend etcdv3/ },
    { title: '--pg-repl-password on the command line', program: 'keeper', args: [...store, '--data-dir', dataDir, '--pg-su-passwordfile', pw, '--pg-repl-password', 'secret-value'], refused: /--pg-repl-password: a password is never taken from the command line.*--pg-repl-passwordfile .*STKEEPER_PG_REPL_PASSWORD/ },
    { title: '--pg-su-auth-method trust', program: 'keeper', args: [...store, '--data-dir', dataDir, '--pg-su-auth-method', 'trust'], refused: /--pg-su-auth-method \(or STKEEPER_PG_SU_AUTH_METHOD\): trust .* not supported/ },
    { title: 'STKEEPER_DISABLE_DATA_DIR_LOCKING=true', program: 'keeper', args: [...store, '--data-dir', dataDir], env: { STKEEPER_DISABLE_DATA_DIR_LOCKING: 'true' }, refused: /--disable-data-dir-locking .*not supported: the keeper always holds the lock/ },
    { title: '--pg-advertise-port other than --pg-port', program: 'keeper', args: [...store, '--data-dir', dataDir, '--pg-advertise-port', '6432'], refused: /--pg-advertise-port .*"6432" differs from --pg-port 5432/ },
    { title: "stolonctl's clusterdata read (Stolon's CI reads the cluster phase with it)", program: 'stolonctl', args: [...store, 'clusterdata', 'read', '--pretty'], refused: /^stolonctl: clusterdata: Stolon's clusterdata read\/write is not available: stolonctl status --format json/ },
    { title: 'one setting in both spellings, different values', program: 'keeper', args: [...store, '--data-dir', dataDir], env: { STKEEPER_PG_SU_PASSWORD_FILE: '/a', STKEEPER_PG_SU_PASSWORDFILE: '/b' }, refused: /STKEEPER_PG_SU_PASSWORD_FILE and STKEEPER_PG_SU_PASSWORDFILE name the same setting with different values/ },
  ];
  it('refused with one line naming the flag and what to use instead, exit 2', async () => {
    for (const c of refused()) {
      const r = await runNode(binPath(c.program), c.args, undefined, cleanEnv(c.env ?? {}));
      expect(r.code, c.title).toBe(2);
      expect(r.stderr.trim().split('\n'), c.title).toHaveLength(1);
      expect(r.stderr, c.title).toMatch(c.refused!);
      expect(r.stderr + r.stdout, c.title).not.toContain('secret-value');
    }
  });

  it('accepted with the same meaning, or ignored with a warning (keeper: --id, --pg-repl-passwordfile, --debug, --log-color, md5, --pg-advertise-port = --pg-port)', async () => {
    const dd = join(dir, 'k2');
    const p = startProcess({
      name: 'keeper-stolon-flags',
      cmd: process.execPath,
      args: [binPath('keeper'), ...store, '--data-dir', dd, '--id', 'keeper7', '--pg-su-passwordfile', pw, '--pg-repl-passwordfile', pw, '--debug', '--log-color', '--pg-su-auth-method', 'md5', '--pg-advertise-port', '5432', '--disable-data-dir-locking=false'],
      env: cleanEnv({}),
    });
    try {
      await p.waitForLog('"msg":"configuration"', 60_000);
      const conf = configurationOf(p);
      expect(conf.flags).toMatchObject({ uid: 'keeper7', pgSuPasswordFile: pw, pgReplPasswordFile: pw, logLevel: 'debug' });
      const warnings = p.logs().split('\n').filter((l) => l.includes('"level":40'));
      expect(warnings.join('\n')).toMatch(/--debug .*deprecated .*use --log-level debug/);
      expect(warnings.join('\n')).toMatch(/--log-color .*ignored: logs are JSON lines/);
      expect(warnings.join('\n')).toMatch(/--pg-su-auth-method .*md5: the superuser logs in with its password/);
    } finally {
      await p.stop();
    }
    // stolonctl: Stolon's common --metrics-listen-address is accepted and ignored with a warning.
    const ctl = await runNode(binPath('stolonctl'), [...store, '--metrics-listen-address', '0.0.0.0:8080', 'spec'], undefined, cleanEnv({}));
    expect(ctl.stderr).toMatch(/^stolonctl: warning: --metrics-listen-address .*ignored/m);
    expect(ctl.stderr).not.toMatch(/Unknown argument/);
  });

  it("help lists Stolon's spellings next to ours", () => {
    const help = execFileSync(process.execPath, [binPath('keeper'), '--help'], { encoding: 'utf8', env: cleanEnv({}) }).replace(/\s+/g, ' ');
    expect(help).toMatch(/--uid, --id /);
    expect(help).toMatch(/--pg-su-password-file, --pg-su-passwordfile /);
    expect(help).toContain('STKEEPER_PG_SU_PASSWORD_FILE or STKEEPER_PG_SU_PASSWORDFILE');
    expect(help).toMatch(/Stolon's flags not listed above are accepted too, with their STKEEPER_\* variables: --debug, --log-color, .*--disable-data-dir-locking\./);
  });

  it("docs/differences-from-stolon.md names every Stolon flag each program's help names (aliases and the closing sentence)", () => {
    const doc = readFileSync(join(REPO, 'docs/differences-from-stolon.md'), 'utf8');
    for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
      const raw = execFileSync(process.execPath, [binPath(c), '--help'], { encoding: 'utf8', env: cleanEnv({}) });
      // Option entries start a line: `  --pg-su-password-file, --pg-su-passwordfile  file holding…`.
      const aliases = [...raw.matchAll(/^\s+--[a-z0-9-]+, --([a-z0-9-]+)\s/gm)].map((m) => m[1] ?? '');
      const closing = /Stolon's flags not listed above .*$/.exec(raw.replace(/\s+/g, ' '))?.[0] ?? '';
      const named = [...aliases, ...[...closing.matchAll(/--([a-z0-9-]+)/g)].map((m) => m[1] ?? '')];
      expect(named.length, c).toBeGreaterThan(0);
      for (const f of named) {
        expect(doc, `${c}: --${f}`).toContain(`\`--${f}\``);
      }
    }
  });
});
