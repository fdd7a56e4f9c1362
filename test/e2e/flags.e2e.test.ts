/**
 * The programs as an operator runs them: bad flags and missing secrets give one line naming the
 * flag and a non-zero exit; environment fallbacks (ST*_) work; no password is accepted as a flag.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binPath, makeEtcdTestCerts, runNode, startEtcd, type EtcdHandle, type EtcdTestCerts } from '@stolon-ts/harness';

const store = ['--cluster-name', 'c', '--store-backend', 'etcdv3', '--store-endpoints', 'http://127.0.0.1:1'];
const dir = mkdtempSync(join(tmpdir(), 'stolon-flags-'));
const pw = join(dir, 'pw');
writeFileSync(pw, 'secret-value\n', { mode: 0o600 });
const empty = join(dir, 'empty');
writeFileSync(empty, '');
// The values deploy/components/example-secrets publishes: a keeper refuses them.
const exampleSu = join(dir, 'example-su');
writeFileSync(exampleSu, 'EXAMPLE-replace-me-superuser-password');
const exampleToken = join(dir, 'example-token');
writeFileSync(exampleToken, 'EXAMPLE-replace-me-member-token-from-openssl-rand-hex-32');
const kubeconfig = join(dir, 'kubeconfig');
writeFileSync(
  kubeconfig,
  'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n',
);

interface Case {
  title: string;
  program: 'keeper' | 'sentinel' | 'proxy' | 'stolonctl';
  args: string[];
  env?: Record<string, string>;
  stderr: RegExp;
}

const keeperBase = [...store, '--data-dir', join(dir, 'k')];
const cases: Case[] = [
  { title: 'keeper without a superuser password file', program: 'keeper', args: [...keeperBase, '--pg-repl-password-file', pw], stderr: /--pg-su-password-file is required \(or set STKEEPER_PG_SU_PASSWORD\)/ },
  { title: 'keeper with an empty password file', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', empty, '--pg-repl-password-file', pw], stderr: /--pg-su-password-file: .* is empty/ },
  { title: 'keeper with the example superuser password', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', exampleSu, '--pg-repl-password-file', pw], stderr: /^stolon-keeper: --pg-su-password-file: .*example-su holds an example value/ },
  { title: 'keeper with the example replication password in the environment', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw], env: { STKEEPER_PG_REPL_PASSWORD: 'EXAMPLE-replace-me-replication-password' }, stderr: /--pg-repl-password-file: \$STKEEPER_PG_REPL_PASSWORD holds an example value/ },
  { title: 'keeper with the example member token', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--member-listen-address', '127.0.0.1:8081', '--member-token-file', exampleToken], stderr: /--member-token-file: .*example-token holds an example value/ },
  { title: 'keeper with a password given as a flag value', program: 'keeper', args: [...keeperBase, '--pg-su-password', 'secret-value'], stderr: /^stolon-keeper: --pg-su-password: a password is never taken from the command line.*--pg-su-passwordfile/ },
  { title: 'keeper with a port out of range', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--pg-port', '70000'], stderr: /--pg-port: 70000 is not a TCP port/ },
  { title: 'keeper with a bad uid', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--uid', 'Bad-Uid'], stderr: /--uid: "Bad-Uid" must match/ },
  { title: 'keeper without --data-dir', program: 'keeper', args: [...store], stderr: /data-dir/ },
  { title: 'keeper with a --data-dir under a regular file', program: 'keeper', args: [...store, '--data-dir', join(pw, 'k'), '--pg-su-password-file', pw, '--pg-repl-password-file', pw], stderr: /^stolon-keeper: --data-dir: cannot create .*pw\/k \(ENOTDIR: not a directory.*\); give a directory this keeper may create/ },
  { title: 'keeper with a status address without a port', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--metrics-listen-address', '8080'], stderr: /--metrics-listen-address: "8080" is not host:port/ },
  { title: 'sentinel with an unsupported store backend', program: 'sentinel', args: ['--cluster-name', 'c', '--store-backend', 'zookeeper'], stderr: /store-backend/ },
  { title: 'sentinel with the kubernetes backend but no --kube-resource-kind', program: 'sentinel', args: ['--cluster-name', 'c', '--store-backend', 'kubernetes'], stderr: /--kube-resource-kind is required with --store-backend kubernetes: pass --kube-resource-kind configmap/ },
  { title: 'proxy with the kubernetes backend and a cluster name unfit for object names', program: 'proxy', args: ['--cluster-name', 'My_Cluster', '--store-backend', 'kubernetes', '--kube-resource-kind', 'configmap'], stderr: /--cluster-name: "My_Cluster" cannot be used with the kubernetes backend/ },
  { title: 'stolonctl with the kubernetes backend and an unknown context', program: 'stolonctl', args: ['--cluster-name', 'c', '--store-backend', 'kubernetes', '--kube-resource-kind', 'configmap', '--kubeconfig', kubeconfig, '--kube-context', 'nope', 'status'], stderr: /--kube-context: no context "nope"/ },
  { title: 'sentinel without --cluster-name', program: 'sentinel', args: ['--store-backend', 'etcdv3'], stderr: /cluster-name/ },
  { title: 'proxy with a bad store endpoint', program: 'proxy', args: ['--cluster-name', 'c', '--store-backend', 'etcdv3', '--store-endpoints', 'ftp://x'], stderr: /--store-endpoints: "ftp:\/\/x" must use http or https/ },
  { title: 'proxy with a bad store timeout', program: 'proxy', args: [...store, '--store-timeout', 'soon'], stderr: /--store-timeout: "soon" is not a positive duration/ },
  { title: 'proxy with a --uid that is no keeper-style uid', program: 'proxy', args: [...store, '--uid', 'stolon-proxy-0'], stderr: /--uid: "stolon-proxy-0" must match \[a-z0-9_\]\+/ },
  { title: 'keeper with an unknown --allow-spec-commands name', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--allow-spec-commands', 'archive_command,shared_preload_libraries'], stderr: /--allow-spec-commands: "shared_preload_libraries" is not a command-bearing setting/ },
  { title: 'keeper with a PostgreSQL TLS key but no certificate', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--pg-ssl-key-file', pw], stderr: /--pg-ssl-key-file needs --pg-ssl-cert-file/ },
  { title: 'keeper with an unreadable PostgreSQL TLS certificate', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--pg-ssl-cert-file', join(dir, 'none.crt'), '--pg-ssl-key-file', pw], stderr: /--pg-ssl-cert-file: cannot read .*none\.crt/ },
  { title: 'keeper with a PostgreSQL TLS certificate that is not PEM', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--pg-ssl-cert-file', pw, '--pg-ssl-key-file', pw], stderr: /--pg-ssl-cert-file: .* is not a PEM certificate/ },
  { title: 'keeper with a shutdown switchover timeout that is not a duration', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--shutdown-switchover-timeout', '30'], stderr: /--shutdown-switchover-timeout: "30" is not a duration such as 30s \(0 disables\)/ },
  { title: 'keeper requiring TLS without a certificate', program: 'keeper', args: [...keeperBase, '--pg-su-password-file', pw, '--pg-repl-password-file', pw, '--pg-ssl-required'], stderr: /--pg-ssl-required needs --pg-ssl-cert-file and --pg-ssl-key-file/ },
  { title: 'sentinel with TLS flags on http:// endpoints', program: 'sentinel', args: [...store, '--store-skip-tls-verify'], stderr: /--store-endpoints: .* is not https:\/\/, but TLS flags were given/ },
  { title: 'proxy with a store user but no password', program: 'proxy', args: [...store, '--store-user', 'u'], stderr: /--store-password-file is required \(or set STPROXY_STORE_PASSWORD\)/ },
  { title: 'stolonctl with a store password given as a flag value', program: 'stolonctl', args: [...store, '--store-password', 'secret-value', 'status'], stderr: /Unknown argument|store-password/ },
  { title: 'stolonctl cluster name from the environment, bad backend from the environment', program: 'stolonctl', args: ['status'], env: { STOLONCTL_CLUSTER_NAME: 'c', STOLONCTL_STORE_BACKEND: 'zookeeper' }, stderr: /store-backend/ },
];

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('program flags', () => {
  for (const c of cases) {
    it(c.title, async () => {
      const r = await runNode(binPath(c.program), c.args, undefined, { ...process.env, ...(c.env ?? {}) });
      expect(r.code, r.stdout).not.toBe(0);
      expect(r.stderr).toMatch(c.stderr);
      expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/); // no stack trace
      expect(r.stderr + r.stdout).not.toContain('secret-value');
    });
  }

  it('every program prints help listing its Stolon flag names and env fallbacks', async () => {
    const keeper = await runNode(binPath('keeper'), ['--help']);
    expect(keeper.code).toBe(0);
    for (const f of ['--cluster-name', '--store-backend', '--store-endpoints', '--uid', '--data-dir', '--pg-listen-address', '--pg-port', '--pg-bin-path', '--pg-su-username', '--pg-su-password-file', '--pg-repl-username', '--pg-repl-password-file', '--pg-os-user', 'STKEEPER_DATA_DIR']) {
      expect(keeper.stdout).toContain(f);
    }
    const proxy = await runNode(binPath('proxy'), ['--help']);
    expect(proxy.stdout).toContain('--listen-address');
    expect(proxy.stdout).toContain('--port');
    const sentinel = await runNode(binPath('sentinel'), ['--help']);
    expect(sentinel.stdout).toContain('--initial-cluster-spec');
    const ctl = await runNode(binPath('stolonctl'), ['--help']);
    for (const cmd of ['init', 'status', 'spec', 'update']) {
      expect(ctl.stdout).toContain(cmd);
    }
  });
});

describe('stolonctl against etcd with TLS and client-certificate auth', () => {
  let certs: EtcdTestCerts;
  let etcd: EtcdHandle;
  let tlsStore: string[];
  beforeAll(async () => {
    certs = await makeEtcdTestCerts(mkdtempSync(join(dir, 'pki-')));
    etcd = await startEtcd({ tls: certs });
    tlsStore = ['--cluster-name', 'tls', '--store-backend', 'etcdv3', '--store-endpoints', etcd.endpoints[0]!];
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('init and status work with --store-ca-file, --store-cert-file and --store-key (the last two from STOLONCTL_*)', async () => {
    const env = { ...process.env, STOLONCTL_STORE_CERT_FILE: certs.clientCertFile, STOLONCTL_STORE_KEY: certs.clientKeyFile };
    const init = await runNode(binPath('stolonctl'), [...tlsStore, '--store-ca-file', certs.caFile, 'init', '--yes'], undefined, env);
    expect(init.code, init.stderr).toBe(0);
    const status = await runNode(binPath('stolonctl'), [...tlsStore, '--store-ca-file', certs.caFile, 'status', '--format', 'json'], undefined, env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toHaveProperty('cluster');
  });

  it('the wrong CA: one line naming --store-ca-file, exit 1', async () => {
    const r = await runNode(binPath('stolonctl'), [...tlsStore, '--store-ca-file', certs.otherCaFile, '--store-cert-file', certs.clientCertFile, '--store-key', certs.clientKeyFile, 'status']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^stolonctl status: store unavailable: etcd .* is not trusted .*pass --store-ca-file/);
  });

  it('a key that does not belong to the certificate: one line naming --store-key, exit 2', async () => {
    const r = await runNode(binPath('stolonctl'), [...tlsStore, '--store-ca-file', certs.caFile, '--store-cert-file', certs.clientCertFile, '--store-key', certs.otherClientKeyFile, 'status']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--store-key: .* does not match the certificate in --store-cert-file/);
  });
});
