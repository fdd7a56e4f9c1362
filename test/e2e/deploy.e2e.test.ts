/**
 * The Kubernetes manifests in deploy/, checked without an API server (none can run here):
 *
 * 1. `kubectl kustomize` builds the base and each overlay (kubectl's built-in kustomize).
 * 2. Every rendered object validates against the Kubernetes OpenAPI schema twice over, both from
 *    kubernetes-models (generated from the upstream OpenAPI document; it has 1.33's fields): its
 *    ajv validator (types, required fields, formats), and its TypeScript types through the
 *    compiler's excess-property check, which is what catches a misspelt field name at any depth
 *    (the OpenAPI schemas allow unknown properties, so schema validation alone would not).
 * 3. Every flag and `ST*_` variable a container passes is one its program lists in `--help` (the
 *    built bins), with values inside the flag's choices — except the few in
 *    {@link PENDING_UNTIL_MERGED}.
 * 4. The wiring holds: one cluster name everywhere (labels, RBAC resourceNames), probes on the
 *    ports the keeper listens on, Services and disruption budgets selecting real pods, each proxy
 *    Service only pods judged by the readiness of the listener it reaches (`/readyz` for the
 *    read-write proxies, `/readyz/read-only` for the read-only ones: {@link serviceReadinessProblems}),
 *    workload selectors disjoint, password files inside the mounted Secret, keeper and proxy uids
 *    valid, the init spec valid, least-privilege
 *    RBAC (one ServiceAccount and Role per component; deploy-rbac.e2e.test.ts checks the Roles
 *    against the requests the programs make), a NetworkPolicy that lets only proxies, keepers and
 *    a backup Job reach the keepers' PostgreSQL, non-root pods, tini kept as PID 1 (`args`, never
 *    `command`).
 * 5. Failsafe mode can act ({@link failsafeProblems}): the keepers serve the member API on a
 *    declared port and advertise their pod IP, and keepers and both kinds of proxies read one
 *    member token from the same key of a mounted Secret, as files their user can read.
 * 6. Memory limits follow the sizing rules of docs/kubernetes.md ({@link sizingProblems}).
 * 7. Policy: every pod meets the Pod Security "restricted" profile ({@link podSecurityProblems}),
 *    every long-running container has HTTP readiness and liveness probes, the keepers have
 *    Guaranteed QoS ({@link workloadPolicyProblems}); zone spreading, the version label, the
 *    proxies' preStop, and no Secret outside deploy/components/example-secrets. Each check has a
 *    case that feeds it a broken manifest.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { resolveSpec, validateSpec } from '@stolon-ts/cluster';
import { parseEndpoints, parseListenAddress, readMemberToken } from '@stolon-ts/common';
import { EXAMPLE_SECRET_PREFIX, refuseExampleSecret } from '@stolon-ts/keeper';
import { parseProxyArgs, proxyConfigFromFlags } from '@stolon-ts/proxy';
import { PROGRAMS, flagOfEnv, helpNamesEnv, programHelp, type ProgramHelp, type ProgramName } from './program-help.js';

/**
 * Flags and flag values the manifests use that the programs on this branch do not accept yet.
 * Nothing else is exempt from the `--help` check, and an entry the programs already accept fails
 * the test (so the list cannot outlive its reason).
 */
export const PENDING_UNTIL_MERGED: {
  readonly flags: Readonly<Record<string, readonly ProgramName[]>>;
  readonly values: Readonly<Record<string, readonly string[]>>;
} = {
  flags: {},
  values: {},
};

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIRS = ['deploy/base', 'deploy/overlays/kubernetes', 'deploy/overlays/etcd'] as const;

/** A rendered object, loosely typed: the tests read what they check and validate the rest. */
type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> } } & Record<string, unknown>;
// The shapes the wiring checks read (the schema tests make sure the rest is well formed).
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: unknown; configMapKeyRef?: unknown };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { prefix?: string; configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number; hostPort?: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string | number }; tcpSocket?: { port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string }[];
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number }; httpGet?: unknown } };
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
}
interface PodSpec {
  containers: Container[];
  topologySpreadConstraints?: { topologyKey: string; maxSkew: number; whenUnsatisfiable: string; labelSelector?: { matchLabels?: Record<string, string> } }[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  affinity?: {
    podAntiAffinity?: {
      requiredDuringSchedulingIgnoredDuringExecution?: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }[];
      preferredDuringSchedulingIgnoredDuringExecution?: { weight: number; podAffinityTerm: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } } }[];
    };
  };
  volumes?: {
    name: string;
    secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string; mode?: number }[] };
    configMap?: { name: string };
  }[];
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
}
interface Workload extends Obj {
  spec: { selector?: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec }; volumeClaimTemplates?: unknown[] };
}

/**
 * `kubectl kustomize <dir>`, parsed with the `yaml` package.
 * @throws Error with kubectl's message when the build fails or kubectl is missing.
 */
function render(dir: string): Obj[] {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', join(REPO, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    throw new Error(
      e.code === 'ENOENT'
        ? 'kubectl not found: these tests need kubectl ≥ 1.27 (kustomize v5) on PATH; it is part of this machine image'
        : `kubectl kustomize ${dir} failed: ${e.stderr ?? String(err)}`,
    );
  }
  return parseAllDocuments(out).map((d) => {
    if (d.errors.length > 0) {
      throw new Error(`kubectl kustomize ${dir}: YAML errors in the output: ${d.errors.map((e) => e.message).join('; ')}`);
    }
    return d.toJSON() as Obj;
  });
}

const rendered = new Map(DIRS.map((d) => [d, render(d)] as const));
const EXAMPLE_SECRETS_DIR = 'deploy/components/example-secrets';
/**
 * The Secrets the operator creates (docs/kubernetes.md, step 3), as the example-secrets component
 * has them: the same names and keys, placeholder values. No directory in {@link DIRS} holds them.
 */
const OPERATOR_SECRETS = parseAllDocuments(readFileSync(join(REPO, EXAMPLE_SECRETS_DIR, 'secret.yaml'), 'utf8')).map((d) => d.toJSON() as Obj);
/** The Secret `name` from the manifests, else the one the operator creates ({@link OPERATOR_SECRETS}). */
const secretIn = (objs: Obj[], name: string): Obj | undefined =>
  objs.find((o) => o.kind === 'Secret' && o.metadata.name === name) ?? OPERATOR_SECRETS.find((o) => o.metadata.name === name);
const objects = (dir: (typeof DIRS)[number]) => rendered.get(dir) ?? [];
const byKind = <T extends Obj = Obj>(objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind) as T[];
const one = <T extends Obj = Obj>(objs: Obj[], kind: string, name: string): T => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  expect(o, `${kind}/${name}`).toBeDefined();
  return o as T;
};
const workloads = (objs: Obj[]) => objs.filter((o): o is Workload => ['Deployment', 'StatefulSet', 'Job'].includes(o.kind));
const id = (o: Obj) => `${o.kind}/${o.metadata.name}`;

/** The kubernetes-models class and type module for each kind the manifests may use. */
const MODELS: Record<string, { model: { new (data: never): { validate(): void } }; types: string }> = {
  'apps/v1 StatefulSet': { model: StatefulSet, types: 'kubernetes-models/apps/v1/StatefulSet' },
  'apps/v1 Deployment': { model: Deployment, types: 'kubernetes-models/apps/v1/Deployment' },
  'batch/v1 Job': { model: Job, types: 'kubernetes-models/batch/v1/Job' },
  'networking.k8s.io/v1 NetworkPolicy': { model: NetworkPolicy, types: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy' },
  'policy/v1 PodDisruptionBudget': { model: PodDisruptionBudget, types: 'kubernetes-models/policy/v1/PodDisruptionBudget' },
  'rbac.authorization.k8s.io/v1 Role': { model: Role, types: 'kubernetes-models/rbac.authorization.k8s.io/v1/Role' },
  'rbac.authorization.k8s.io/v1 RoleBinding': { model: RoleBinding, types: 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding' },
  'v1 ConfigMap': { model: ConfigMap, types: 'kubernetes-models/v1/ConfigMap' },
  'v1 Secret': { model: Secret, types: 'kubernetes-models/v1/Secret' },
  'v1 Service': { model: Service, types: 'kubernetes-models/v1/Service' },
  'v1 ServiceAccount': { model: ServiceAccount, types: 'kubernetes-models/v1/ServiceAccount' },
};

/**
 * Type-checks objects against kubernetes-models' TypeScript interfaces, in memory (a virtual file
 * inside the repository, so `kubernetes-models` resolves from node_modules).
 * @returns one line per diagnostic, prefixed with the object it is about
 */
function typeCheck(objs: { label: string; obj: Obj }[]): string[] {
  const file = join(REPO, 'test/e2e/__rendered-manifests__.ts');
  const src = objs
    .map(({ obj }, i) => {
      const m = MODELS[`${obj.apiVersion} ${obj.kind}`];
      return `import type { I${obj.kind} as T${i} } from '${m?.types ?? 'missing'}';\nexport const o${i}: T${i} = ${JSON.stringify(obj)};`;
    })
    .join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, src, lang) : getSourceFile.call(host, name, lang, ...rest));
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? src : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file !== undefined && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const label = objs[Math.floor(line / 2)]?.label ?? '?';
    return `${label}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

/** Which program a container runs, and the command lines (program, its arguments) it runs it with. */
function invocations(c: Container): { program: ProgramName; argv: string[][] } {
  const args = c.args ?? [];
  const isProgram = (s: string | undefined): s is ProgramName => s !== undefined && s in PROGRAMS;
  if (isProgram(args[0])) {
    return { program: args[0], argv: [args.slice(1)] };
  }
  if ((args[0] === 'sh' || args[0] === '/bin/sh') && args[1] === '-c') {
    // A short script: every line that runs one of the programs, split into words.
    const lines = (args[2] ?? '').split('\n').map((l) => l.trim().split(/\s+/));
    const runs = lines
      .map((words) => words.slice(words.findIndex((w) => isProgram(w))))
      .filter((words) => isProgram(words[0]));
    const programs = [...new Set(runs.map((w) => w[0] as ProgramName))];
    expect(programs, `container ${c.name} runs exactly one of the programs`).toHaveLength(1);
    return { program: programs[0]!, argv: runs.map((w) => w.slice(1).filter((x) => !/^[>|&;]|^\/dev\//.test(x))) };
  }
  throw new Error(`container ${c.name}: args must start with one of ${Object.keys(PROGRAMS).join(', ')} or be "sh -c <script>"`);
}

const isPending = (flag: string, program: ProgramName) => PENDING_UNTIL_MERGED.flags[flag]?.includes(program) === true;

/** Problems with one flag given on the command line or through the environment; [] when fine. */
function checkFlag(help: ProgramHelp, program: ProgramName, flag: string, value: string | undefined, where: string): string[] {
  const spec = help.flags.get(flag) ?? (flag.startsWith('no-') && help.flags.get(flag.slice(3))?.type === 'boolean' ? help.flags.get(flag.slice(3)) : undefined);
  if (spec === undefined) {
    return isPending(flag, program) ? [] : [`${where}: ${program} has no flag --${flag}`];
  }
  if (value !== undefined && spec.choices !== undefined && !spec.choices.includes(value) && PENDING_UNTIL_MERGED.values[flag]?.includes(value) !== true) {
    return [`${where}: --${flag} ${value} is not one of ${spec.choices.join(', ')}`];
  }
  if (value !== undefined && spec.type === 'number' && !/^\d+$/.test(value)) {
    return [`${where}: --${flag} ${value} is not a number`];
  }
  if (value !== undefined && spec.type === 'boolean' && !['true', 'false', '1', '0'].includes(value)) {
    return [`${where}: --${flag} ${value} is not true or false`];
  }
  return [];
}

/** Every flag and ST*_ variable a container passes, checked against its program's --help. */
function checkContainer(objs: Obj[], w: Workload, c: Container): string[] {
  const where = `${id(w)} container ${c.name}`;
  const problems: string[] = [];
  const { program, argv } = invocations(c);
  const prefix = PROGRAMS[program].envPrefix;
  for (const words of argv) {
    const main = programHelp(program);
    const sub = main.commands.length > 0 && words[0] !== undefined && !words[0].startsWith('-') ? words[0] : undefined;
    if (sub !== undefined && !main.commands.includes(sub)) {
      problems.push(`${where}: ${program} has no subcommand ${sub}`);
      continue;
    }
    const help = programHelp(program, sub);
    for (let i = sub === undefined ? 0 : 1; i < words.length; i++) {
      const word = words[i] ?? '';
      const long = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(word);
      const short = /^-([a-zA-Z])$/.exec(word);
      if (long?.[1] !== undefined) {
        problems.push(...checkFlag(help, program, long[1], long[2], where));
      } else if (short?.[1] !== undefined) {
        const flag = [...help.flags.values()].find((f) => f.alias === short[1]);
        if (flag === undefined) {
          problems.push(`${where}: ${program}${sub !== undefined ? ` ${sub}` : ''} has no flag -${short[1]}`);
        }
      }
    }
  }
  const env: { name: string; value: string | undefined }[] = (c.env ?? []).map((e) => ({ name: e.name, value: e.value }));
  for (const from of c.envFrom ?? []) {
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === from.configMapRef?.name) as (Obj & { data?: Record<string, string> }) | undefined;
    if (cm === undefined) {
      problems.push(`${where}: envFrom ConfigMap ${from.configMapRef?.name ?? '?'} is not in the manifests`);
      continue;
    }
    env.push(...Object.entries(cm.data ?? {}).map(([k, v]) => ({ name: `${from.prefix ?? ''}${k}`, value: v })));
  }
  for (const e of env) {
    const other = Object.values(PROGRAMS).find((p) => p.envPrefix !== prefix && e.name.startsWith(`${p.envPrefix}_`));
    if (other !== undefined) {
      problems.push(`${where}: ${e.name} is for another program than ${program}`);
      continue;
    }
    const flag = flagOfEnv(e.name, prefix);
    if (flag === undefined) {
      continue; // not ours (POD_INDEX and the like)
    }
    const help = programHelp(program);
    if (help.flags.has(flag) || isPending(flag, program)) {
      problems.push(...checkFlag(help, program, flag, e.value, `${where} env ${e.name}`));
    } else if (!helpNamesEnv(help, e.name)) {
      problems.push(`${where}: ${program} --help names no ${e.name} (no flag --${flag})`);
    }
  }
  return problems;
}

/**
 * `$(VAR)` references in env values expanded as the kubelet does (only variables defined earlier in
 * the list), with stand-ins for the downward API.
 * @param podIP what `status.podIP` gives
 */
function expandEnv(c: Container, podLabels: Record<string, string>, ordinal: number, podIP = '10.1.2.3'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath;
    const label = /^metadata\.labels\['(.+)'\]$/.exec(path ?? '')?.[1];
    out[e.name] =
      e.value !== undefined
        ? e.value.replace(/\$\((\w+)\)/g, (m, v: string) => out[v] ?? m)
        : label === 'apps.kubernetes.io/pod-index'
          ? String(ordinal)
          : label !== undefined
            ? (podLabels[label] ?? '')
            : path === 'status.podIP'
              ? podIP
              : '';
  }
  return out;
}

const container = (w: Workload, name: string) => w.spec.template.spec.containers.find((c) => c.name === name)!;
const portOf = (c: Container, port: string | number | undefined) => (typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort);
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The proxy StatefulSets: read-write (`/readyz`) and read-only (`/readyz/read-only`). */
const PROXY_WORKLOADS = ['stolon-proxy', 'stolon-proxy-ro'] as const;
type ServiceObj = Obj & { spec: { selector: Record<string, string>; ports: { port: number; targetPort: string | number }[] } };

/**
 * A proxy pod's configuration as the proxy's own flag parser reads it (`parseProxyArgs` and
 * `proxyConfigFromFlags` of packages/proxy): the container's `env`, expanded for pod `ordinal`,
 * over the ConfigMaps of its `envFrom`, as the kubelet gives them.
 * @throws the proxy's ConfigError when it would refuse to start (e.g. a uid outside [a-z0-9_]+)
 */
function proxyConfigOf(objs: Obj[], w: Workload, ordinal = 0) {
  const c = container(w, 'proxy');
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === from.configMapRef?.name) as (Obj & { data?: Record<string, string> }) | undefined;
    for (const [k, v] of Object.entries(cm?.data ?? {})) {
      env[`${from.prefix ?? ''}${k}`] = v;
    }
  }
  Object.assign(env, expandEnv(c, w.spec.template.metadata.labels, ordinal));
  const flags = parseProxyArgs([], env);
  return { uid: flags.uid, ...proxyConfigFromFlags(flags) };
}

const isLoopback = (address: string) => address === 'localhost' || address === '::1' || address.startsWith('127.');

/**
 * Whether each Service judges the proxy pods it selects by the readiness of the listener it sends
 * clients to: a Service port on a proxy's main listener (the primary) needs readinessProbe
 * `/readyz`, one on its read-only listener `/readyz/read-only`. A pod has one readiness, so a pod
 * serving both Services would leave one of them judged by the other's (issue #16: the read-only
 * Service emptied while no primary was routed). A port on no listener open beyond the pod's
 * loopback is a problem too. One line per problem; [] when every Service holds.
 */
function serviceReadinessProblems(objs: Obj[]): string[] {
  const problems: string[] = [];
  for (const svc of byKind<ServiceObj>(objs, 'Service')) {
    for (const w of workloads(objs).filter((x) => x.kind !== 'Job' && matches(svc.spec.selector, x.spec.template.metadata.labels))) {
      const c = w.spec.template.spec.containers.find((x) => invocations(x).program === 'stolon-proxy');
      if (c === undefined) {
        continue;
      }
      const cfg = proxyConfigOf(objs, w);
      const ready = c.readinessProbe?.httpGet?.path;
      for (const p of svc.spec.ports) {
        const port = portOf(c, p.targetPort);
        const reaches = (l: { listenAddress: string; port: number } | null | undefined) => l !== null && l !== undefined && l.port === port && !isLoopback(l.listenAddress);
        const want = reaches(cfg) ? '/readyz' : reaches(cfg.readOnly) ? '/readyz/read-only' : undefined;
        const where = `${id(svc)} port ${p.port} → ${id(w)} port ${port ?? String(p.targetPort)}`;
        if (want === undefined) {
          problems.push(`${where}: no proxy listener reachable from outside the pod there`);
        } else if (ready !== want) {
          problems.push(`${where}: the ${want === '/readyz' ? 'read-write' : 'read-only'} listener, judged by readinessProbe ${ready ?? 'none'} instead of ${want}`);
        }
      }
    }
  }
  return problems;
}

/** Pairs of workloads where one's selector matches the other's pods (a controller must own only its own); [] when none. */
function overlappingSelectors(objs: Obj[]): string[] {
  const ws = workloads(objs);
  return ws.flatMap((a) =>
    ws
      .filter((b) => b !== a && a.spec.selector !== undefined && matches(a.spec.selector.matchLabels, b.spec.template.metadata.labels))
      .map((b) => `${id(a)}'s selector matches the pods of ${id(b)}`),
  );
}

/** A NetworkPolicy, as much as {@link keeperIngress} reads. */
type NetworkPolicyObj = Obj & {
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    policyTypes?: string[];
    ingress: { ports?: { port?: number | string; protocol?: string }[]; from?: { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: unknown; ipBlock?: unknown }[] }[];
  };
};

/**
 * Who may connect to each port the keeper pods declare, by the NetworkPolicies selecting them
 * (Ingress): `'any'` when some rule admits everyone, else the workloads (`Kind/name`) whose pods
 * a rule's pod selectors match, `component=<c>` for a selector matching no workload of the
 * manifests (e.g. a backup Job), `any namespace or address` for namespace selectors and IP
 * blocks; `[]` when nothing may.
 * @throws (an expectation) when no NetworkPolicy selects the keeper pods.
 */
function keeperIngress(objs: Obj[]): Record<number, string[] | 'any'> {
  const sts = one<Workload>(objs, 'StatefulSet', 'stolon-keeper');
  const labels = sts.spec.template.metadata.labels;
  const policies = byKind<NetworkPolicyObj>(objs, 'NetworkPolicy').filter(
    (np) => matches(np.spec.podSelector.matchLabels ?? {}, labels) && (np.spec.policyTypes ?? ['Ingress']).includes('Ingress'),
  );
  expect(policies.map(id), 'NetworkPolicies selecting the keeper pods').not.toEqual([]);
  const keeper = container(sts, 'keeper');
  const out: Record<number, string[] | 'any'> = {};
  for (const { containerPort } of keeper.ports ?? []) {
    const rules = policies.flatMap((np) => np.spec.ingress).filter((r) => r.ports === undefined || r.ports.some((p) => (p.protocol ?? 'TCP') === 'TCP' && portOf(keeper, p.port) === containerPort));
    if (rules.some((r) => r.from === undefined || r.from.length === 0)) {
      out[containerPort] = 'any';
      continue;
    }
    const who = rules.flatMap((r) =>
      (r.from ?? []).flatMap((peer) => {
        if (peer.podSelector === undefined || peer.namespaceSelector !== undefined || peer.ipBlock !== undefined) {
          return ['any namespace or address'];
        }
        const sel = peer.podSelector.matchLabels ?? {};
        const hit = workloads(objs).filter((w) => matches(sel, w.spec.template.metadata.labels)).map(id);
        return hit.length > 0 ? hit : [`component=${sel['app.kubernetes.io/component'] ?? '?'}`];
      }),
    );
    out[containerPort] = [...new Set(who)].sort();
  }
  return out;
}

/**
 * The Secret and key a file inside a container comes from, or why it does not come from one: the
 * file must lie in a mounted Secret volume (with `items`, one of them), the Secret must be in the
 * manifests with that key, and the file must be readable by the pod's user (Secret files belong to
 * root, their group is the pod's fsGroup when it has one).
 */
function secretOfFile(objs: Obj[], w: Workload, c: Container, path: string): { secret: string; key: string } | string {
  const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
  if (mount === undefined) {
    return `${path} is on no volume mounted in container ${c.name}`;
  }
  const pod = w.spec.template.spec;
  const vol = pod.volumes?.find((v) => v.name === mount.name)?.secret;
  if (vol === undefined) {
    return `${path} is on volume ${mount.name}, which is not a Secret volume`;
  }
  const file = path.slice(mount.mountPath.length + 1);
  const item = vol.items?.find((i) => i.path === file);
  if (vol.items !== undefined && item === undefined) {
    return `${path}: volume ${mount.name} projects no item at ${file}`;
  }
  const key = item?.key ?? file;
  const secret = secretIn(objs, vol.secretName) as (Obj & { data?: object; stringData?: object }) | undefined;
  if (secret === undefined) {
    return `${path}: Secret ${vol.secretName} is not in the manifests`;
  }
  if (!Object.keys({ ...secret.data, ...secret.stringData }).includes(key)) {
    return `${path}: Secret ${vol.secretName} has no key ${key}`;
  }
  const mode = item?.mode ?? vol.defaultMode ?? 0o644;
  const sc = pod.securityContext;
  const readable = sc?.runAsUser === 0 || (mode & 0o004) !== 0 || (sc?.fsGroup !== undefined && (mode & 0o040) !== 0);
  if (!readable) {
    return `${path}: mode ${mode.toString(8)} with fsGroup ${sc?.fsGroup ?? 'unset'}: user ${sc?.runAsUser ?? '?'} cannot read it`;
  }
  return { secret: vol.secretName, key };
}

/**
 * Problems with failsafe mode's wiring (docs/architecture.md, "Store outages: failsafe mode"); []
 * when it holds. With an IPv4 and an IPv6 pod IP: the keeper's member API listens on its pod IP (or
 * every interface of that family) at a port the container declares as `member`, and advertises
 * exactly its pod IP and that port, in a form the keeper accepts (`parseListenAddress`) — no DNS
 * name, since DNS depends on the control plane whose outage failsafe mode rides out. The keeper and
 * the proxy read the token from a file (`ST*_MEMBER_TOKEN_FILE`, never the token itself in an
 * environment variable) in the same key of the same mounted Secret, the read-only proxies too.
 */
function failsafeProblems(objs: Obj[]): string[] {
  const problems: string[] = [];
  const sts = one<Workload>(objs, 'StatefulSet', 'stolon-keeper');
  const keeper = container(sts, 'keeper');
  const memberPort = portOf(keeper, 'member');
  for (const podIP of ['10.1.2.3', 'fd00::5']) {
    const env = expandEnv(keeper, sts.spec.template.metadata.labels, 0, podIP);
    const text = env.STKEEPER_MEMBER_LISTEN_ADDRESS;
    if (text === undefined || text === '') {
      problems.push('keeper: no STKEEPER_MEMBER_LISTEN_ADDRESS, so no member API');
      break;
    }
    let listen, advertise;
    try {
      listen = parseListenAddress(text, 'member-listen-address');
      advertise = parseListenAddress(env.STKEEPER_MEMBER_ADVERTISE_ADDRESS ?? text, 'member-advertise-address');
    } catch (err) {
      problems.push(`keeper with pod IP ${podIP}: ${(err as Error).message}`);
      continue;
    }
    const wildcards = podIP.includes(':') ? ['::'] : ['0.0.0.0', '::'];
    if (listen.host !== podIP && !wildcards.includes(listen.host)) {
      problems.push(`keeper with pod IP ${podIP}: the member API listens on "${listen.host}", neither the pod IP nor ${wildcards.join(' or ')}`);
    }
    if (advertise.host !== podIP || advertise.port !== listen.port) {
      problems.push(`keeper with pod IP ${podIP}: advertises ${advertise.host}:${advertise.port}, not its pod IP and member API port ${listen.port}`);
    }
    if (memberPort !== listen.port) {
      problems.push(`keeper: the member API listens on port ${listen.port}, but containerPort "member" is ${memberPort ?? 'not declared'}`);
    }
  }
  const readers = [
    { w: sts, c: keeper, prefix: 'STKEEPER' },
    ...PROXY_WORKLOADS.map((name) => {
      const proxy = one<Workload>(objs, 'StatefulSet', name);
      return { w: proxy, c: container(proxy, 'proxy'), prefix: 'STPROXY' };
    }),
  ];
  const sources = readers.map(({ w, c, prefix }) => {
    const where = `${id(w)} container ${c.name}`;
    if ((c.env ?? []).some((e) => e.name === `${prefix}_MEMBER_TOKEN`)) {
      problems.push(`${where}: ${prefix}_MEMBER_TOKEN puts the token in the environment; mount it and use ${prefix}_MEMBER_TOKEN_FILE`);
    }
    const file = expandEnv(c, w.spec.template.metadata.labels, 0)[`${prefix}_MEMBER_TOKEN_FILE`];
    if (file === undefined || file === '') {
      problems.push(`${where}: no ${prefix}_MEMBER_TOKEN_FILE`);
      return undefined;
    }
    const from = secretOfFile(objs, w, c, file);
    if (typeof from === 'string') {
      problems.push(`${where}: ${from}`);
      return undefined;
    }
    return `Secret ${from.secret} key ${from.key}`;
  });
  if (sources.every((s) => s !== undefined) && new Set(sources).size !== 1) {
    problems.push(`keepers and proxies must read one token: ${readers.map((r, i) => `${r.w.metadata.name} from ${sources[i]}`).join(', ')}`);
  }
  return [...new Set(problems)];
}

/** The cluster spec the init Job's `stolonctl init` reads (its ConfigMap's cluster-spec.json), as text. */
function initSpec(objs: Obj[]): string {
  const job = one<Workload>(objs, 'Job', 'stolon-init');
  const cm = one<Obj & { data: Record<string, string> }>(objs, 'ConfigMap', job.spec.template.spec.volumes?.find((v) => v.configMap !== undefined)?.configMap?.name ?? '?');
  return cm.data['cluster-spec.json'] ?? '{}';
}

/** Bytes in a Kubernetes quantity ("2Gi", "256Mi", "500M"); NaN when it is not one. */
function quantityBytes(q: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q ?? ''));
  const unit: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return m === null ? NaN : Number(m[1]) * (m[2] === undefined ? 1 : (unit[m[2]] ?? NaN));
}

/** Bytes in a PostgreSQL memory setting ("128MB", "4096kB", a bare number in `unit`). */
function pgBytes(v: string, unit: number): number {
  const m = /^(\d+)\s*(kB|MB|GB|TB)?$/.exec(v.trim());
  const units: Record<string, number> = { kB: 2 ** 10, MB: 2 ** 20, GB: 2 ** 30, TB: 2 ** 40 };
  return m === null ? NaN : Number(m[1]) * (m[2] === undefined ? unit : (units[m[2]] ?? NaN));
}

const MiB = 2 ** 20;

/**
 * Problems with the memory limits against the sizing rules of docs/kubernetes.md ("Sizing the
 * keepers", "Sizing the proxies"); [] when they hold. The keeper's rule reads the init spec's
 * pgParameters (PostgreSQL 15's defaults for the ones it leaves out) and the /dev/shm emptyDir.
 */
function sizingProblems(objs: Obj[]): string[] {
  const problems: string[] = [];
  const sts = one<Workload>(objs, 'StatefulSet', 'stolon-keeper');
  const pg = { shared_buffers: '128MB', max_connections: '100', work_mem: '4MB', maintenance_work_mem: '64MB', autovacuum_max_workers: '3', ...(JSON.parse(initSpec(objs)) as { pgParameters?: Record<string, string> }).pgParameters };
  const shm = sts.spec.template.spec.volumes?.find((v) => v.name === 'shm') as { emptyDir?: { medium?: string; sizeLimit?: string } } | undefined;
  const shmBytes = shm?.emptyDir?.medium === 'Memory' ? quantityBytes(shm.emptyDir.sizeLimit) : 0;
  const keeperNeeds =
    pgBytes(pg.shared_buffers, 8192) +
    Number(pg.max_connections) * (pgBytes(pg.work_mem, 1024) + 2 * MiB) +
    (Number(pg.autovacuum_max_workers) + 1) * pgBytes(pg.maintenance_work_mem, 1024) +
    shmBytes +
    192 * MiB;
  const keeperLimit = quantityBytes(container(sts, 'keeper').resources?.limits?.memory);
  if (!(keeperLimit >= keeperNeeds)) {
    problems.push(`keeper: memory limit ${keeperLimit / MiB} MiB is below the sizing rule's ${keeperNeeds / MiB} MiB`);
  }
  for (const name of PROXY_WORKLOADS) {
    const w = one<Workload>(objs, 'StatefulSet', name);
    const proxy = container(w, 'proxy');
    const maxConnections = Number(expandEnv(proxy, {}, 0).STPROXY_MAX_CONNECTIONS ?? 2000);
    const proxyNeeds = 128 * MiB + maxConnections * 256 * 1024;
    const proxyLimit = quantityBytes(proxy.resources?.limits?.memory);
    if (!(proxyLimit >= proxyNeeds)) {
      problems.push(`${w.spec.template.metadata.labels['app.kubernetes.io/component'] ?? name}: memory limit ${proxyLimit / MiB} MiB is below the sizing rule's ${proxyNeeds / MiB} MiB for --max-connections ${maxConnections}`);
    }
  }
  return problems;
}

/** A container's or pod's security settings, as much as {@link podSecurityProblems} reads. */
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  privileged?: boolean;
  allowPrivilegeEscalation?: boolean;
  procMount?: string;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type: string };
  appArmorProfile?: { type: string };
  seLinuxOptions?: { type?: string; user?: string; role?: string };
  sysctls?: { name: string }[];
}
/** A pod spec, as much as the policy checks read (the schema tests check the rest). */
type PolicyPod = Omit<PodSpec, 'containers' | 'securityContext' | 'volumes'> & {
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  securityContext?: SecurityContext;
  volumes?: Record<string, unknown>[];
  containers: (Container & { securityContext?: SecurityContext; restartPolicy?: string })[];
  initContainers?: PolicyPod['containers'];
  ephemeralContainers?: PolicyPod['containers'];
};

/** The volume types the Pod Security "restricted" profile allows. */
const RESTRICTED_VOLUME_TYPES = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
/** The sysctls the "baseline" profile (and so "restricted") allows. */
const SAFE_SYSCTLS = ['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes'];

/**
 * Where a pod template breaks the Pod Security Standards' "restricted" profile (which includes
 * "baseline"), as the admission controller would judge it, one line per breach; [] when it
 * complies. Pod-level settings count for every container that does not override them.
 */
function podSecurityProblems(w: Workload): string[] {
  const pod = w.spec.template.spec as unknown as PolicyPod;
  const at = id(w);
  const problems: string[] = [];
  for (const ns of ['hostNetwork', 'hostPID', 'hostIPC'] as const) {
    if (pod[ns] === true) {
      problems.push(`${at}: ${ns}`);
    }
  }
  for (const v of pod.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (type === undefined || !RESTRICTED_VOLUME_TYPES.includes(type)) {
      problems.push(`${at}: volume ${String(v.name)} is of type ${type ?? '?'}`);
    }
  }
  for (const sysctl of pod.securityContext?.sysctls ?? []) {
    if (!SAFE_SYSCTLS.includes(sysctl.name)) {
      problems.push(`${at}: sysctl ${sysctl.name}`);
    }
  }
  const podSc = pod.securityContext ?? {};
  const all = [...(pod.initContainers ?? []), ...pod.containers, ...(pod.ephemeralContainers ?? [])];
  for (const c of all) {
    const where = `${at} container ${c.name}`;
    const sc = c.securityContext ?? {};
    if (sc.privileged === true) {
      problems.push(`${where}: privileged`);
    }
    if (sc.allowPrivilegeEscalation !== false) {
      problems.push(`${where}: allowPrivilegeEscalation is not false`);
    }
    if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) {
      problems.push(`${where}: runAsNonRoot is not true`);
    }
    if ((sc.runAsUser ?? podSc.runAsUser) === 0) {
      problems.push(`${where}: runAsUser 0`);
    }
    const seccomp = (sc.seccompProfile ?? podSc.seccompProfile)?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') {
      problems.push(`${where}: seccompProfile ${seccomp ?? 'unset'}, not RuntimeDefault or Localhost`);
    }
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) {
      problems.push(`${where}: capabilities do not drop ALL`);
    }
    for (const cap of sc.capabilities?.add ?? []) {
      if (cap !== 'NET_BIND_SERVICE') {
        problems.push(`${where}: adds capability ${cap}`);
      }
    }
    if ((c.ports ?? []).some((p) => (p.hostPort ?? 0) !== 0)) {
      problems.push(`${where}: hostPort`);
    }
    if (sc.procMount !== undefined && sc.procMount !== 'Default') {
      problems.push(`${where}: procMount ${sc.procMount}`);
    }
    if ((sc.appArmorProfile ?? podSc.appArmorProfile)?.type === 'Unconfined') {
      problems.push(`${where}: AppArmor Unconfined`);
    }
    const se = sc.seLinuxOptions ?? podSc.seLinuxOptions;
    if (se !== undefined && (se.user !== undefined || se.role !== undefined || (se.type !== undefined && !['container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'].includes(se.type)))) {
      problems.push(`${where}: seLinuxOptions ${JSON.stringify(se)}`);
    }
  }
  return problems;
}

/** CPU cores or bytes in a Kubernetes quantity ("1", "250m", "2Gi"); NaN when it is not one. */
const quantity = (q: string | number | undefined) => (/^\d+(\.\d+)?m$/.test(String(q)) ? Number(String(q).slice(0, -1)) / 1000 : quantityBytes(q));

/**
 * The workload policy beyond Pod Security: every long-running container (of a Deployment or
 * StatefulSet, sidecars included) has HTTP readiness and liveness probes, and every container of
 * the keepers requests exactly its limits of CPU and memory (Guaranteed QoS). One line per breach.
 */
function workloadPolicyProblems(w: Workload): string[] {
  const pod = w.spec.template.spec as unknown as PolicyPod;
  const problems: string[] = [];
  if (w.kind !== 'Job') {
    for (const c of [...pod.containers, ...(pod.initContainers ?? []).filter((x) => x.restartPolicy === 'Always')]) {
      for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
        if (c[probe]?.httpGet === undefined) {
          problems.push(`${id(w)} container ${c.name}: no HTTP ${probe}`);
        }
      }
    }
  }
  if (w.metadata.labels?.['app.kubernetes.io/component'] === 'keeper') {
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      for (const r of ['cpu', 'memory']) {
        const request = quantity(c.resources?.requests?.[r]);
        const limit = quantity(c.resources?.limits?.[r]);
        if (!(request > 0) || request !== limit) {
          problems.push(`${id(w)} container ${c.name}: ${r} request ${c.resources?.requests?.[r] ?? 'unset'} is not its limit ${c.resources?.limits?.[r] ?? 'unset'} (Guaranteed QoS)`);
        }
      }
    }
  }
  return problems;
}

describe('deploy/ manifests', () => {
  for (const dir of DIRS) {
    it(`${dir}: kubectl kustomize builds it, and every object validates against the Kubernetes schema (ajv) and types (no unknown field)`, () => {
      const objs = objects(dir);
      expect(objs.length).toBeGreaterThan(10);
      for (const o of objs) {
        const m = MODELS[`${o.apiVersion} ${o.kind}`];
        expect(m, `${o.apiVersion} ${o.kind}: add it to MODELS`).toBeDefined();
        expect(() => new m!.model(o as never).validate(), id(o)).not.toThrow();
      }
      expect(typeCheck(objs.map((obj) => ({ label: `${dir} ${id(obj)}`, obj })))).toEqual([]);
    });

    it(`${dir}: every flag and ST*_ variable is one the program's --help lists (pending ones excepted)`, () => {
      const objs = objects(dir);
      const problems = workloads(objs).flatMap((w) => w.spec.template.spec.containers.flatMap((c) => checkContainer(objs, w, c)));
      expect(problems).toEqual([]);
    });
  }

  it('the schema and type checks catch a misspelt field, a wrong type and a missing required field', () => {
    const sts = structuredClone(one<Workload>(objects('deploy/base'), 'StatefulSet', 'stolon-keeper'));
    const typo = structuredClone(sts) as unknown as { spec: Record<string, unknown> };
    typo.spec.replicaz = typo.spec.replicas;
    const deepTypo = structuredClone(sts);
    (deepTypo.spec.template.spec.containers[0] as unknown as Record<string, unknown>).imagePullPolicyy = 'Always';
    const wrongType = structuredClone(sts) as unknown as { spec: Record<string, unknown> };
    wrongType.spec.replicas = 'two';
    const missing = structuredClone(sts) as unknown as { spec: Record<string, unknown> };
    delete missing.spec.selector;
    const errors = typeCheck([
      { label: 'typo', obj: typo as unknown as Obj },
      { label: 'deep typo', obj: deepTypo },
      { label: 'wrong type', obj: wrongType as unknown as Obj },
      { label: 'missing', obj: missing as unknown as Obj },
    ]);
    expect(errors).toEqual([
      expect.stringMatching(/^typo: Object literal may only specify known properties, and '"replicaz"' does not exist in type 'IStatefulSetSpec'/),
      expect.stringMatching(/^deep typo: .*'"imagePullPolicyy"' does not exist in type 'IContainer'/),
      expect.stringMatching(/^wrong type: Type 'string' is not assignable to type 'number'/),
      expect.stringMatching(/^missing: Property '"selector"' is missing .* required in type 'IStatefulSetSpec'/),
    ]);
    expect(() => new StatefulSet(wrongType as never).validate()).toThrow(/spec\/replicas must be integer/);
    expect(() => new StatefulSet(missing as never).validate()).toThrow(/data\/spec must have required property/);
  });

  it('the flag check catches an unknown flag, an unknown ST*_ variable, a bad choice and a variable meant for another program', () => {
    const objs = structuredClone(objects('deploy/overlays/etcd'));
    const proxy = one<Workload>(objs, 'StatefulSet', 'stolon-proxy');
    const c = proxy.spec.template.spec.containers[0]!;
    c.args = ['stolon-proxy', '--listen-adress', '0.0.0.0'];
    c.env = [...(c.env ?? []), { name: 'STPROXY_STOP_LISTENNING', value: 'true' }, { name: 'STPROXY_LOG_LEVEL', value: 'verbose' }, { name: 'STKEEPER_PG_PORT', value: '5432' }];
    expect(checkContainer(objs, proxy, c)).toEqual([
      'StatefulSet/stolon-proxy container proxy: stolon-proxy has no flag --listen-adress',
      expect.stringMatching(/STPROXY_STOP_LISTENNING \(no flag --stop-listenning\)$/),
      expect.stringMatching(/--log-level verbose is not one of debug, info, warn, error$/),
      'StatefulSet/stolon-proxy container proxy: STKEEPER_PG_PORT is for another program than stolon-proxy',
    ]);
  });

  it('the pending allowlist lists only what the programs still lack (remove entries once their branch is merged)', () => {
    for (const [flag, programs] of Object.entries(PENDING_UNTIL_MERGED.flags)) {
      for (const p of programs) {
        expect(programHelp(p).flags.has(flag), `--${flag} is in ${p} --help now: remove it from PENDING_UNTIL_MERGED`).toBe(false);
      }
    }
    for (const [flag, values] of Object.entries(PENDING_UNTIL_MERGED.values)) {
      for (const v of values) {
        const accepted = (Object.keys(PROGRAMS) as ProgramName[]).every((p) => programHelp(p).flags.get(flag)?.choices?.includes(v) === true);
        expect(accepted, `--${flag} ${v} is accepted now: remove it from PENDING_UNTIL_MERGED`).toBe(false);
      }
    }
  });

  it('one cluster name everywhere: the stolon-cluster label, app.kubernetes.io/instance and the RBAC resourceNames', () => {
    for (const dir of DIRS) {
      const objs = objects(dir);
      const names = new Set(objs.map((o) => o.metadata.labels?.['stolon-cluster']));
      expect([...names], dir).toHaveLength(1);
      const name = [...names][0] ?? '';
      expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      for (const o of objs) {
        expect(o.metadata.labels?.['app.kubernetes.io/instance'], id(o)).toBe(name);
      }
      for (const w of workloads(objs)) {
        expect(w.spec.template.metadata.labels['stolon-cluster'], id(w)).toBe(name);
        const env = w.spec.template.spec.containers.flatMap((c) => c.env ?? []).filter((e) => e.name.endsWith('_CLUSTER_NAME'));
        expect(env.map((e) => e.valueFrom?.fieldRef?.fieldPath), id(w)).toEqual(["metadata.labels['stolon-cluster']"]);
      }
      for (const role of byKind<Obj & { rules: { resources: string[]; resourceNames?: string[] }[] }>(objs, 'Role')) {
        const configMaps = role.rules.flatMap((r) => (r.resources.includes('configmaps') ? (r.resourceNames ?? []) : []));
        expect([...new Set(configMaps)], id(role)).toEqual([`stolon-cluster-${name}`]);
        // Leases: the sentinel leader's, or an info Lease of this cluster (stolon-cluster-<name>.<kind>.<uid>).
        for (const lease of role.rules.flatMap((r) => (r.resources.includes('leases') ? (r.resourceNames ?? []) : []))) {
          expect(lease, id(role)).toMatch(new RegExp(`^stolon-cluster-${name}(-sentinel-leader|\\.(keepers|sentinels|proxies)\\.[a-z0-9-]+)$`));
        }
      }
    }
  });

  it("RBAC (kubernetes backend): one ServiceAccount, Role and RoleBinding per component, configmaps and leases only (and the keepers' patch of their own pods); the etcd overlay has none", () => {
    const k = objects('deploy/overlays/kubernetes');
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const components = { 'StatefulSet/stolon-keeper': 'keeper', 'Deployment/stolon-sentinel': 'sentinel', 'StatefulSet/stolon-proxy': 'proxy', 'StatefulSet/stolon-proxy-ro': 'proxy-ro', 'Job/stolon-init': 'init' };
    expect(workloads(k).map(id).sort()).toEqual(Object.keys(components).sort());
    for (const w of workloads(k)) {
      // Its own ServiceAccount (named after the component), bound to its own Role only.
      const sa = w.spec.template.spec.serviceAccountName ?? '';
      expect(sa, id(w)).toBe(`stolon-${components[id(w) as keyof typeof components]}`);
      expect(one(k, 'ServiceAccount', sa).metadata.labels?.['app.kubernetes.io/component'], sa).toBe(w.spec.template.metadata.labels['app.kubernetes.io/component']);
      const bindings = byKind<Obj & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace?: string }[] }>(k, 'RoleBinding').filter((b) =>
        b.subjects.some((x) => x.kind === 'ServiceAccount' && x.name === sa),
      );
      expect(bindings.map((b) => [b.metadata.name, b.roleRef.kind, b.roleRef.name, b.subjects]), sa).toEqual([
        [sa, 'Role', sa, [{ kind: 'ServiceAccount', name: sa, namespace: 'stolon' }]],
      ]);
      const rules = one<Obj & { rules: Rule[] }>(k, 'Role', sa).rules;
      for (const r of rules) {
        // The keepers' role label (--kube-pod-name): patch of named pods, nothing else on pods.
        if (sa === 'stolon-keeper' && r.apiGroups.join() === '' && r.resources.join() === 'pods') {
          expect(r.verbs, `${sa}: ${JSON.stringify(r)}`).toEqual(['patch']);
          expect(r.resourceNames?.length ?? 0, `${sa}: pods by name only`).toBeGreaterThan(0);
          continue;
        }
        expect(r.apiGroups.length === 1 && ((r.apiGroups[0] === '' && r.resources.join() === 'configmaps') || (r.apiGroups[0] === 'coordination.k8s.io' && r.resources.join() === 'leases')), `${sa}: ${JSON.stringify(r)}`).toBe(true);
        expect(r.verbs.filter((v) => !['get', 'list', 'watch', 'create', 'update', 'delete'].includes(v)), sa).toEqual([]);
      }
    }
    expect(byKind(k, 'ServiceAccount')).toHaveLength(5);
    // Keepers and proxies renew their Leases by name (uid <prefix><ordinal>): every pod of the
    // StatefulSet must be listed, its uid must be the one the Role names, and no Role names
    // another StatefulSet's (the read-write and read-only proxies share the `proxies` kind).
    const uids = [
      ['stolon-keeper', 'keeper', 'keepers', 'keeper', 'STKEEPER_UID'],
      ['stolon-proxy', 'proxy', 'proxies', 'proxy', 'STPROXY_UID'],
      ['stolon-proxy-ro', 'proxy', 'proxies', 'proxyro', 'STPROXY_UID'],
    ] as const;
    for (const [name, containerName, kind, prefix, uidEnv] of uids) {
      const w = one<Workload>(k, 'StatefulSet', name);
      const replicas = (w.spec as { replicas?: number }).replicas ?? 1;
      const named = one<Obj & { rules: Rule[] }>(k, 'Role', name).rules.find((r) => r.verbs.includes('update'))?.resourceNames ?? [];
      for (let i = 0; i < replicas; i++) {
        expect(named, name).toContain(`stolon-cluster-kube-stolon.${kind}.${prefix}${i}`);
      }
      expect(named.filter((n) => !new RegExp(`^stolon-cluster-kube-stolon\\.${kind}\\.${prefix}\\d+$`).test(n)), name).toEqual([]);
      const env = container(w, containerName).env ?? [];
      expect(env.find((v) => v.name === uidEnv)?.value, name).toBe(`${prefix}$(POD_INDEX)`);
      expect(env.find((v) => v.name === 'POD_INDEX')?.valueFrom, name).toEqual({ fieldRef: { fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']" } });
    }
    // The proxies' uids, as the proxy parses them (its rule: [a-z0-9_]+), for a few ordinals.
    for (const [name, , , prefix] of uids.slice(1)) {
      for (const ordinal of [0, 1, 12]) {
        expect(proxyConfigOf(k, one<Workload>(k, 'StatefulSet', name), ordinal).uid).toBe(`${prefix}${ordinal}`);
      }
    }
    // …and keepers label their own pods by name (the StatefulSet's pod names).
    const keeperReplicas = (one<Workload>(k, 'StatefulSet', 'stolon-keeper').spec as { replicas?: number }).replicas ?? 1;
    const keeperPods = one<Obj & { rules: Rule[] }>(k, 'Role', 'stolon-keeper').rules.find((r) => r.resources.includes('pods'))?.resourceNames ?? [];
    for (let i = 0; i < keeperReplicas; i++) {
      expect(keeperPods).toContain(`stolon-keeper-${i}`);
    }
    const e = objects('deploy/overlays/etcd');
    expect(byKind(e, 'Role').concat(byKind(e, 'RoleBinding'))).toEqual([]);
    const accounts = byKind<Obj & { automountServiceAccountToken?: boolean }>(e, 'ServiceAccount');
    expect(accounts.map((a) => [a.metadata.name, a.automountServiceAccountToken])).toEqual(byKind(k, 'ServiceAccount').map((a) => [a.metadata.name, false]));
  });

  it("NetworkPolicy: the keepers' PostgreSQL only from proxies (read-write and read-only), keepers and a backup Job, the member API only from proxies and keepers, the status port open", () => {
    for (const dir of DIRS) {
      const objs = objects(dir);
      expect(keeperIngress(objs), dir).toEqual({
        5432: ['StatefulSet/stolon-keeper', 'StatefulSet/stolon-proxy', 'StatefulSet/stolon-proxy-ro', 'component=backup'],
        8080: 'any',
        8081: ['StatefulSet/stolon-keeper', 'StatefulSet/stolon-proxy', 'StatefulSet/stolon-proxy-ro'],
      });
    }
    // The check sees a port opened to everyone, a peer from anywhere and a port left out.
    const objs = structuredClone(objects('deploy/overlays/kubernetes'));
    const np = one<NetworkPolicyObj>(objs, 'NetworkPolicy', 'stolon-keeper');
    np.spec.ingress.push({ ports: [{ port: 5432 }] });
    np.spec.ingress[1]!.from!.push({ namespaceSelector: {} });
    np.spec.ingress.splice(2, 1);
    expect(keeperIngress(objs)).toEqual({ 5432: 'any', 8080: [], 8081: ['StatefulSet/stolon-keeper', 'StatefulSet/stolon-proxy', 'StatefulSet/stolon-proxy-ro', 'any namespace or address'] });
  });

  it('store backend per overlay: kubernetes with kind configmap, or etcdv3 with valid endpoints', () => {
    const data = (dir: (typeof DIRS)[number]) => (byKind<Obj & { data: Record<string, string> }>(objects(dir), 'ConfigMap').find((c) => c.metadata.name.startsWith('stolon-store-'))?.data ?? {});
    expect(data('deploy/overlays/kubernetes')).toEqual({ STORE_BACKEND: 'kubernetes', KUBE_RESOURCE_KIND: 'configmap' });
    const etcd = data('deploy/overlays/etcd');
    expect(etcd.STORE_BACKEND).toBe('etcdv3');
    expect(parseEndpoints(etcd.STORE_ENDPOINTS ?? '')).toHaveLength(1);
  });

  it('keepers: uid from the pod ordinal, postgres on the pod IP, probes on the status port, passwords from the Secret, one per node, own volume', () => {
    const objs = objects('deploy/overlays/kubernetes');
    const sts = one<Workload>(objs, 'StatefulSet', 'stolon-keeper');
    const c = container(sts, 'keeper');
    const labels = sts.spec.template.metadata.labels;
    for (const ordinal of [0, 1, 12]) {
      const env = expandEnv(c, labels, ordinal);
      // The keeper's uid rule (packages/keeper/src/bin.ts, Stolon's): [a-z0-9_]+.
      expect(env.STKEEPER_UID).toMatch(/^[a-z0-9_]+$/);
      expect(env.STKEEPER_UID).toBe(`keeper${ordinal}`);
    }
    const env = expandEnv(c, labels, 0);
    expect(c.env?.find((e) => e.name === 'STKEEPER_PG_LISTEN_ADDRESS')?.valueFrom?.fieldRef?.fieldPath).toBe('status.podIP');
    expect(portOf(c, 'postgres')).toBe(Number(env.STKEEPER_PG_PORT));
    const statusPort = Number(/:(\d+)$/.exec(env.STKEEPER_METRICS_LISTEN_ADDRESS ?? '')?.[1]);
    expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(portOf(c, c.readinessProbe?.httpGet?.port)).toBe(statusPort);
    expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(portOf(c, c.livenessProbe?.httpGet?.port)).toBe(statusPort);
    // Password files: inside the mounted Secret, named after keys the Secret has.
    const pod = sts.spec.template.spec;
    for (const v of ['STKEEPER_PG_SU_PASSWORD_FILE', 'STKEEPER_PG_REPL_PASSWORD_FILE']) {
      const path = env[v] ?? '';
      const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
      const secretName = pod.volumes?.find((vol) => vol.name === mount?.name)?.secret?.secretName;
      const secret = secretIn(objs, secretName ?? '?') as (Obj & { stringData?: Record<string, string> }) | undefined;
      expect(secret, secretName).toBeDefined();
      expect(Object.keys(secret?.stringData ?? {}), v).toContain(path.slice((mount?.mountPath.length ?? 0) + 1));
    }
    expect(env.STKEEPER_DATA_DIR).toBe(c.volumeMounts?.find((m) => m.name === 'data')?.mountPath);
    expect(sts.spec.volumeClaimTemplates).toHaveLength(1);
    const anti = pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(anti.map((a) => a.topologyKey)).toEqual(['kubernetes.io/hostname']);
    expect(matches(anti[0]?.labelSelector.matchLabels ?? { none: 'x' }, labels)).toBe(true);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 999, fsGroup: 999 });
  });

  it('no Secret in the base or the overlays; the example-secrets component holds every Secret the pods mount, with placeholders the keeper refuses, and builds into an overlay', () => {
    for (const dir of DIRS) {
      expect(byKind(objects(dir), 'Secret').map(id), dir).toEqual([]);
      const mounted = workloads(objects(dir)).flatMap((w) => (w.spec.template.spec.volumes ?? []).flatMap((v) => (v.secret !== undefined ? [v.secret.secretName] : [])));
      expect([...new Set(mounted)].sort(), dir).toEqual(OPERATOR_SECRETS.map((o) => o.metadata.name).sort());
    }
    const s = one<Obj & { stringData: Record<string, string> }>(OPERATOR_SECRETS, 'Secret', 'stolon-passwords');
    expect(Object.keys(s.stringData).sort()).toEqual(['pg-repl-password', 'pg-su-password']);
    const m = one<Obj & { stringData: Record<string, string> }>(OPERATOR_SECRETS, 'Secret', 'stolon-member-token');
    expect(Object.keys(m.stringData)).toEqual(['member-token']);
    for (const [key, v] of [...Object.entries(s.stringData), ...Object.entries(m.stringData)]) {
      expect(v, key).toMatch(new RegExp(`^${EXAMPLE_SECRET_PREFIX}-`));
      expect(() => refuseExampleSecret(v, `${key}-file`, key), key).toThrow(/holds an example value/);
    }
    // Apart from being an example, the token has the form the programs accept.
    const token = m.stringData['member-token'];
    expect(readMemberToken(undefined, 'TOKEN', 'member-token-file', { TOKEN: token })).toBe(token);
    // The component composes with an overlay, as its comment shows, into valid Secrets.
    const tmp = mkdtempSync(join(tmpdir(), 'stolon-deploy-example-'));
    try {
      writeFileSync(
        join(tmp, 'kustomization.yaml'),
        `resources:\n  - ${relative(tmp, join(REPO, 'deploy/overlays/kubernetes'))}\ncomponents:\n  - ${relative(tmp, join(REPO, EXAMPLE_SECRETS_DIR))}\n`,
      );
      const secrets = byKind(render(relative(REPO, tmp)), 'Secret');
      expect(secrets.map(id).sort()).toEqual(['Secret/stolon-member-token', 'Secret/stolon-passwords']);
      for (const o of secrets) {
        expect(() => new Secret(o as never).validate(), id(o)).not.toThrow();
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('failsafe mode: keepers serve the member API on a declared port and advertise their pod IP; keepers and proxies read one token from a mounted Secret', () => {
    for (const dir of DIRS) {
      expect(failsafeProblems(objects(dir)), dir).toEqual([]);
    }
    const k = objects('deploy/overlays/kubernetes');
    const sts = one<Workload>(k, 'StatefulSet', 'stolon-keeper');
    const keeper = container(sts, 'keeper');
    const memberEnv = ['STKEEPER_MEMBER_LISTEN_ADDRESS', 'STKEEPER_MEMBER_ADVERTISE_ADDRESS', 'STKEEPER_MEMBER_TOKEN_FILE'];
    expect(keeper.env?.filter((e) => memberEnv.includes(e.name)).map((e) => e.name).sort()).toEqual([...memberEnv].sort());
    expect(keeper.env?.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath).toBe('status.podIP');
    const proxy = container(one<Workload>(k, 'StatefulSet', 'stolon-proxy'), 'proxy');
    expect(proxy.env?.map((e) => e.name)).toContain('STPROXY_MEMBER_TOKEN_FILE');
  });

  it('the failsafe check catches broken wiring: wrong key, another Secret, unmounted or unreadable file, token in the environment, undeclared port, DNS or unexpanded advertise address', () => {
    /** failsafeProblems on a copy of the kubernetes overlay after `change`. */
    const broken = (change: (k: { keeper: Container; proxy: Container; keeperPod: PodSpec; proxyPod: PodSpec; objs: Obj[] }) => void) => {
      const objs = structuredClone(objects('deploy/overlays/kubernetes'));
      const sts = one<Workload>(objs, 'StatefulSet', 'stolon-keeper');
      const dep = one<Workload>(objs, 'StatefulSet', 'stolon-proxy');
      change({ keeper: container(sts, 'keeper'), proxy: container(dep, 'proxy'), keeperPod: sts.spec.template.spec, proxyPod: dep.spec.template.spec, objs });
      return failsafeProblems(objs);
    };
    const setEnv = (c: Container, name: string, value: string) => {
      const e = c.env?.find((x) => x.name === name);
      expect(e, name).toBeDefined();
      e!.value = value;
    };
    const P = 'StatefulSet/stolon-proxy container proxy';
    const K = 'StatefulSet/stolon-keeper container keeper';
    expect(broken(({ proxy }) => setEnv(proxy, 'STPROXY_MEMBER_TOKEN_FILE', '/etc/stolon/member/token'))).toEqual([
      `${P}: /etc/stolon/member/token: Secret stolon-member-token has no key token`,
    ]);
    expect(
      broken(({ proxyPod, objs }) => {
        const other = structuredClone(secretIn(objs, 'stolon-member-token')!);
        other.metadata.name = 'other-token';
        objs.push(other);
        proxyPod.volumes!.find((v) => v.name === 'member-token')!.secret!.secretName = 'other-token';
      }),
    ).toEqual([
      'keepers and proxies must read one token: stolon-keeper from Secret stolon-member-token key member-token, stolon-proxy from Secret other-token key member-token, stolon-proxy-ro from Secret stolon-member-token key member-token',
    ]);
    expect(broken(({ proxy }) => (proxy.volumeMounts = []))).toEqual([`${P}: /etc/stolon/member/member-token is on no volume mounted in container proxy`]);
    expect(broken(({ proxyPod }) => (proxyPod.volumes!.find((v) => v.name === 'member-token')!.secret!.defaultMode = 0o400))).toEqual([
      `${P}: /etc/stolon/member/member-token: mode 400 with fsGroup 999: user 999 cannot read it`,
    ]);
    expect(broken(({ keeper }) => keeper.env?.push({ name: 'STKEEPER_MEMBER_TOKEN', value: 'x'.repeat(64) }))).toEqual([
      `${K}: STKEEPER_MEMBER_TOKEN puts the token in the environment; mount it and use STKEEPER_MEMBER_TOKEN_FILE`,
    ]);
    expect(broken(({ keeper }) => (keeper.ports!.find((p) => p.name === 'member')!.containerPort = 8082))).toEqual([
      'keeper: the member API listens on port 8081, but containerPort "member" is 8082',
    ]);
    expect(broken(({ keeper }) => setEnv(keeper, 'STKEEPER_MEMBER_ADVERTISE_ADDRESS', 'stolon-keeper-$(POD_INDEX).stolon-keeper:8081'))).toEqual([
      'keeper with pod IP 10.1.2.3: advertises stolon-keeper-0.stolon-keeper:8081, not its pod IP and member API port 8081',
      'keeper with pod IP fd00::5: advertises stolon-keeper-0.stolon-keeper:8081, not its pod IP and member API port 8081',
    ]);
    expect(broken(({ keeper }) => setEnv(keeper, 'STKEEPER_MEMBER_LISTEN_ADDRESS', '$(POD_IP):8081'))).toEqual([
      expect.stringMatching(/^keeper with pod IP fd00::5: --member-listen-address: "fd00::5:8081" is not host:port/),
    ]);
    expect(
      broken(({ keeper }) => {
        // POD_IP defined after the variables that use it: the kubelet leaves $(POD_IP) as it is.
        const env = keeper.env!;
        env.push(...env.splice(env.findIndex((e) => e.name === 'POD_IP'), 1));
      }),
    ).toEqual([expect.stringMatching(/^keeper with pod IP 10\.1\.2\.3: --member-listen-address: "\[\$\(POD_IP\)\]:8081" is not host:port/), expect.stringMatching(/^keeper with pod IP fd00::5: /)]);
  });

  it('Services and disruption budgets select real pods, on ports those pods listen on; the rw Service reaches the read-write proxies\' --port, the ro Service the read-only proxies\' --ro-port', () => {
    const objs = objects('deploy/overlays/kubernetes');
    const pods = workloads(objs);
    for (const svc of byKind<ServiceObj>(objs, 'Service')) {
      const targets = pods.filter((w) => matches(svc.spec.selector, w.spec.template.metadata.labels) && w.kind !== 'Job');
      expect(targets.map(id), id(svc)).toHaveLength(1);
      for (const p of svc.spec.ports) {
        expect(portOf(targets[0]!.spec.template.spec.containers[0]!, p.targetPort), `${id(svc)} port ${p.port}`).toBeDefined();
      }
    }
    const rw = one<Workload>(objs, 'StatefulSet', 'stolon-proxy');
    const rwConfig = proxyConfigOf(objs, rw);
    expect(one<ServiceObj>(objs, 'Service', 'stolon-proxy').spec.ports).toMatchObject([{ port: 5432, targetPort: 'postgres' }]);
    expect(portOf(container(rw, 'proxy'), 'postgres')).toBe(rwConfig.port);
    expect(rwConfig.listenAddress).toBe('0.0.0.0');
    // The read-only listener is the read-only proxies' only: the read-write pods declare none.
    expect(rwConfig.readOnly).toBeNull();
    expect(portOf(container(rw, 'proxy'), 'postgres-ro')).toBeUndefined();
    const ro = one<Workload>(objs, 'StatefulSet', 'stolon-proxy-ro');
    const roConfig = proxyConfigOf(objs, ro);
    expect(one<ServiceObj>(objs, 'Service', 'stolon-proxy-ro').spec.ports).toMatchObject([{ port: 5433, targetPort: 'postgres-ro' }]);
    expect(portOf(container(ro, 'proxy'), 'postgres-ro')).toBe(roConfig.readOnly?.port);
    expect(roConfig.readOnly?.listenAddress).toBe('0.0.0.0');
    // Its main listener (a proxy always has one) stays on the pod's loopback, on no declared port.
    expect(roConfig.listenAddress).toBe('127.0.0.1');
    expect((container(ro, 'proxy').ports ?? []).map((p) => p.containerPort)).not.toContain(roConfig.port);
    for (const pdb of byKind<Obj & { spec: { selector: { matchLabels: Record<string, string> } } }>(objs, 'PodDisruptionBudget')) {
      expect(pods.filter((w) => matches(pdb.spec.selector.matchLabels, w.spec.template.metadata.labels)).map(id), id(pdb)).toHaveLength(1);
    }
    expect(one(objs, 'PodDisruptionBudget', 'stolon-keeper').spec).toMatchObject({ maxUnavailable: 1 });
    // A not-ready read-only proxy (no standby qualifies) may be evicted: a drain must not wait on it.
    expect(one(objs, 'PodDisruptionBudget', 'stolon-proxy-ro').spec).toMatchObject({ minAvailable: 1, unhealthyPodEvictionPolicy: 'AlwaysAllow' });
  });

  it('each proxy Service selects only pods judged by the readiness of the listener it reaches: stolon-proxy /readyz, stolon-proxy-ro /readyz/read-only', () => {
    for (const dir of DIRS) {
      const objs = objects(dir);
      const readinessBehind = (service: string) =>
        workloads(objs)
          .filter((w) => w.kind !== 'Job' && matches(one<ServiceObj>(objs, 'Service', service).spec.selector, w.spec.template.metadata.labels))
          .map((w) => `${id(w)} ${container(w, 'proxy').readinessProbe?.httpGet?.path ?? 'none'}`);
      expect(readinessBehind('stolon-proxy'), dir).toEqual(['StatefulSet/stolon-proxy /readyz']);
      expect(readinessBehind('stolon-proxy-ro'), dir).toEqual(['StatefulSet/stolon-proxy-ro /readyz/read-only']);
      expect(serviceReadinessProblems(objs), dir).toEqual([]);
    }
  });

  it('the readiness check catches a Service judged by the other listener\'s readiness, as both Services were before issue #16, and a Service on a listener closed to the pod network', () => {
    const variant = (change: (o: { objs: Obj[]; rw: Container; ro: Container; roSvc: ServiceObj; rwSvc: ServiceObj }) => void) => {
      const objs = structuredClone(objects('deploy/overlays/kubernetes'));
      change({
        objs,
        rw: container(one<Workload>(objs, 'StatefulSet', 'stolon-proxy'), 'proxy'),
        ro: container(one<Workload>(objs, 'StatefulSet', 'stolon-proxy-ro'), 'proxy'),
        roSvc: one<ServiceObj>(objs, 'Service', 'stolon-proxy-ro'),
        rwSvc: one<ServiceObj>(objs, 'Service', 'stolon-proxy'),
      });
      return serviceReadinessProblems(objs);
    };
    // The layout before: one proxy workload with both listeners, both Services on its pods (/readyz).
    expect(
      variant(({ rw, roSvc, rwSvc }) => {
        rw.env!.push({ name: 'STPROXY_RO_PORT', value: '5433' });
        rw.ports!.push({ name: 'postgres-ro', containerPort: 5433 });
        roSvc.spec.selector = { ...rwSvc.spec.selector };
      }),
    ).toEqual(['Service/stolon-proxy-ro port 5433 → StatefulSet/stolon-proxy port 5433: the read-only listener, judged by readinessProbe /readyz instead of /readyz/read-only']);
    expect(variant(({ ro }) => (ro.readinessProbe!.httpGet!.path = '/readyz'))).toEqual([
      'Service/stolon-proxy-ro port 5433 → StatefulSet/stolon-proxy-ro port 5433: the read-only listener, judged by readinessProbe /readyz instead of /readyz/read-only',
    ]);
    expect(variant(({ ro }) => (ro.env!.find((e) => e.name === 'STPROXY_RO_LISTEN_ADDRESS')!.value = '127.0.0.1'))).toEqual([
      'Service/stolon-proxy-ro port 5433 → StatefulSet/stolon-proxy-ro port 5433: no proxy listener reachable from outside the pod there',
    ]);
    // The read-only pods behind the read-write Service: their main listener is the pod's own.
    expect(
      variant(({ ro, rwSvc }) => {
        ro.ports!.push({ name: 'postgres', containerPort: 5432 });
        rwSvc.spec.selector['app.kubernetes.io/component'] = 'proxy-ro';
      }),
    ).toEqual(['Service/stolon-proxy port 5432 → StatefulSet/stolon-proxy-ro port 5432: no proxy listener reachable from outside the pod there']);
  });

  it('workload selectors are disjoint: no StatefulSet, Deployment or Job selects the pods of another (the read-write and read-only proxies included)', () => {
    for (const dir of DIRS) {
      expect(overlappingSelectors(objects(dir)), dir).toEqual([]);
    }
    // Told apart by the component label: the read-only pods labelled as the read-write ones are caught.
    const objs = structuredClone(objects('deploy/overlays/kubernetes'));
    one<Workload>(objs, 'StatefulSet', 'stolon-proxy-ro').spec.template.metadata.labels['app.kubernetes.io/component'] = 'proxy';
    expect(overlappingSelectors(objs)).toEqual(["StatefulSet/stolon-proxy's selector matches the pods of StatefulSet/stolon-proxy-ro"]);
  });

  it('proxies and sentinels: HTTP probes (/readyz or /readyz/read-only, /healthz) on the port their --metrics-listen-address listens on', () => {
    const objs = objects('deploy/overlays/kubernetes');
    for (const [name, containerName, prefix, kind, ready] of [
      ['stolon-proxy', 'proxy', 'STPROXY', 'StatefulSet', '/readyz'],
      ['stolon-proxy-ro', 'proxy', 'STPROXY', 'StatefulSet', '/readyz/read-only'],
      ['stolon-sentinel', 'sentinel', 'STSENTINEL', 'Deployment', '/readyz'],
    ] as const) {
      const c = container(one<Workload>(objs, kind, name), containerName);
      const env = expandEnv(c, {}, 0);
      const listen = parseListenAddress(env[`${prefix}_METRICS_LISTEN_ADDRESS`] ?? '', 'metrics-listen-address');
      expect(c.readinessProbe?.tcpSocket, name).toBeUndefined();
      expect(c.readinessProbe?.httpGet?.path, name).toBe(ready);
      expect(portOf(c, c.readinessProbe?.httpGet?.port), name).toBe(listen.port);
      expect(c.livenessProbe?.httpGet?.path, name).toBe('/healthz');
      expect(portOf(c, c.livenessProbe?.httpGet?.port), name).toBe(listen.port);
    }
  });

  it('pods run non-root from one pinned image with tini as PID 1 (args, never command)', () => {
    for (const dir of DIRS) {
      const images = new Set<string>();
      for (const w of workloads(objects(dir))) {
        expect(w.spec.template.spec.securityContext, id(w)).toMatchObject({ runAsNonRoot: true, runAsUser: 999 });
        for (const c of w.spec.template.spec.containers) {
          expect(c.command, `${id(w)} ${c.name}: command would replace the image's tini ENTRYPOINT`).toBeUndefined();
          images.add(c.image ?? '');
        }
      }
      expect(images.size, dir).toBe(1);
      expect([...images][0]).toMatch(/:(?!latest$)[\w.-]*\d[\w.-]*$/);
    }
  });

  it('the init Job never overwrites (no --yes) and its spec is one `stolonctl init` accepts', () => {
    const objs = objects('deploy/overlays/kubernetes');
    const job = one<Workload>(objs, 'Job', 'stolon-init');
    expect((job.spec.template.spec.containers[0]?.args ?? []).join(' ')).not.toMatch(/--yes|\s-y\b/);
    const vol = job.spec.template.spec.volumes?.find((v) => v.configMap !== undefined);
    const cm = one<Obj & { data: Record<string, string> }>(objs, 'ConfigMap', vol?.configMap?.name ?? '?');
    expect(() => validateSpec(JSON.parse(cm.data['cluster-spec.json'] ?? '') as unknown)).not.toThrow();
  });

  it('memory limits follow the sizing rules of docs/kubernetes.md (keeper: from the init spec; proxy: from --max-connections), and the check fails when they do not', () => {
    for (const dir of DIRS) {
      expect(sizingProblems(objects(dir)), dir).toEqual([]);
    }
    const objs = structuredClone(objects('deploy/overlays/kubernetes'));
    const cm = byKind<Obj & { data: Record<string, string> }>(objs, 'ConfigMap').find((c) => c.metadata.name.startsWith('stolon-init-spec'))!;
    const spec = JSON.parse(cm.data['cluster-spec.json']!) as { pgParameters: Record<string, string> };
    spec.pgParameters.max_connections = '400';
    cm.data['cluster-spec.json'] = JSON.stringify(spec);
    const proxy = container(one<Workload>(objs, 'StatefulSet', 'stolon-proxy'), 'proxy');
    proxy.env = (proxy.env ?? []).filter((e) => e.name !== 'STPROXY_MAX_CONNECTIONS');
    const roProxy = container(one<Workload>(objs, 'StatefulSet', 'stolon-proxy-ro'), 'proxy');
    roProxy.env!.find((e) => e.name === 'STPROXY_MAX_CONNECTIONS')!.value = '1000';
    expect(sizingProblems(objs)).toEqual([
      'keeper: memory limit 2048 MiB is below the sizing rule\'s 3232 MiB',
      'proxy: memory limit 256 MiB is below the sizing rule\'s 628 MiB for --max-connections 2000',
      'proxy-ro: memory limit 256 MiB is below the sizing rule\'s 378 MiB for --max-connections 1000',
    ]);
  });

  it('keepers, sentinels and proxies spread over zones and nodes, each counting only its own pods', () => {
    for (const dir of DIRS) {
      const objs = objects(dir);
      for (const w of workloads(objs).filter((x) => x.kind !== 'Job')) {
        const pod = w.spec.template.spec;
        const labels = w.spec.template.metadata.labels;
        const zone = (pod.topologySpreadConstraints ?? []).filter((t) => t.topologyKey === 'topology.kubernetes.io/zone');
        expect(zone.map((t) => [t.maxSkew, matches(t.labelSelector?.matchLabels ?? { none: 'x' }, labels)]), `${dir} ${id(w)}`).toEqual([[1, true]]);
        // Only pods of this component and cluster: the selector names both.
        expect(zone[0]?.labelSelector?.matchLabels, `${dir} ${id(w)}`).toMatchObject({ 'app.kubernetes.io/component': labels['app.kubernetes.io/component'], 'stolon-cluster': labels['stolon-cluster'] });
        const anti = pod.affinity?.podAntiAffinity;
        const perNode = [...(anti?.requiredDuringSchedulingIgnoredDuringExecution ?? []), ...(anti?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => p.podAffinityTerm)];
        expect(perNode.filter((a) => a.topologyKey === 'kubernetes.io/hostname' && matches(a.labelSelector.matchLabels, labels)), `${dir} ${id(w)}`).toHaveLength(1);
      }
    }
  });

  it('an overlay pinning the image by digest, as docs/kubernetes.md step 1 shows, renders <name>:<tag>@<digest>', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'stolon-deploy-digest-'));
    const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
    try {
      writeFileSync(
        join(tmp, 'kustomization.yaml'),
        `resources:\n  - ${relative(tmp, join(REPO, 'deploy/overlays/kubernetes'))}\nimages:\n  - name: registry.example.com/stolon-ts\n    newTag: 0.1.0-pg15\n    digest: ${digest}\n`,
      );
      const images = new Set(workloads(render(relative(REPO, tmp))).flatMap((w) => w.spec.template.spec.containers.map((c) => c.image)));
      expect([...images]).toEqual([`registry.example.com/stolon-ts:0.1.0-pg15@${digest}`]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('app.kubernetes.io/version on every object and pod template, equal to the image tag, and in no selector nor volumeClaimTemplate', () => {
    for (const dir of DIRS) {
      const objs = objects(dir);
      const tags = new Set(workloads(objs).flatMap((w) => w.spec.template.spec.containers.map((c) => /:([^:/@]+)(@|$)/.exec(c.image ?? '')?.[1])));
      expect(tags.size, dir).toBe(1);
      const version = [...tags][0];
      for (const o of objs) {
        expect(o.metadata.labels?.['app.kubernetes.io/version'], `${dir} ${id(o)}`).toBe(version);
      }
      for (const w of workloads(objs)) {
        expect(w.spec.template.metadata.labels['app.kubernetes.io/version'], `${dir} ${id(w)} pod template`).toBe(version);
        expect(w.spec.selector?.matchLabels ?? {}, `${dir} ${id(w)} selector`).not.toHaveProperty(['app.kubernetes.io/version']);
        for (const t of (w.spec.volumeClaimTemplates ?? []) as { metadata: { labels?: Record<string, string> } }[]) {
          expect(t.metadata.labels ?? {}, `${dir} ${id(w)} volumeClaimTemplates (immutable)`).not.toHaveProperty(['app.kubernetes.io/version']);
        }
      }
    }
  });

  it("proxies: a preStop sleep keeps a terminating proxy serving while the Services drop it, within a grace period that also covers the proxy's stop", () => {
    for (const dir of DIRS) {
      const objs = objects(dir);
      for (const name of PROXY_WORKLOADS) {
        const dep = one<Workload>(objs, 'StatefulSet', name);
        const preStop = container(dep, 'proxy').lifecycle?.preStop;
        // An exec of sleep from the image's coreutils (Kubernetes 1.28 has no sleep action by default).
        expect(preStop?.exec?.command.slice(0, 1), `${dir} ${name}`).toEqual(['/bin/sleep']);
        const seconds = Number(preStop?.exec?.command[1]);
        expect(seconds, `${dir} ${name}`).toBeGreaterThanOrEqual(5);
        const { proxyTimeoutMs } = resolveSpec(JSON.parse(initSpec(objs)) as unknown);
        // After SIGTERM: the last check (bounded by proxyTimeout), then deleting the info (2 s).
        expect(dep.spec.template.spec.terminationGracePeriodSeconds ?? 30, `${dir} ${name}`).toBeGreaterThanOrEqual(seconds + proxyTimeoutMs / 1000 + 2 + 5);
      }
    }
  });

  it('policy: every pod meets Pod Security "restricted", long-running containers have HTTP readiness and liveness probes, keepers request what they limit', () => {
    for (const dir of DIRS) {
      const ws = workloads(objects(dir));
      expect(ws.map(id).sort(), dir).toEqual(['Deployment/stolon-sentinel', 'Job/stolon-init', 'StatefulSet/stolon-keeper', 'StatefulSet/stolon-proxy', 'StatefulSet/stolon-proxy-ro']);
      expect(ws.flatMap(podSecurityProblems), dir).toEqual([]);
      expect(ws.flatMap(workloadPolicyProblems), dir).toEqual([]);
    }
  });

  it('the policy checks catch each breach', () => {
    const objs = structuredClone(objects('deploy/overlays/kubernetes'));
    const keeper = one<Workload>(objs, 'StatefulSet', 'stolon-keeper');
    const proxy = one<Workload>(objs, 'StatefulSet', 'stolon-proxy');
    const sentinel = one<Workload>(objs, 'Deployment', 'stolon-sentinel');
    const job = one<Workload>(objs, 'Job', 'stolon-init');
    const kp = keeper.spec.template.spec as unknown as PolicyPod;
    const pp = proxy.spec.template.spec as unknown as PolicyPod;
    const sp = sentinel.spec.template.spec as unknown as PolicyPod;
    const jp = job.spec.template.spec as unknown as PolicyPod;
    // Pod level.
    kp.hostNetwork = true;
    kp.hostPID = true;
    kp.hostIPC = true;
    kp.volumes!.push({ name: 'host', hostPath: { path: '/var/run' } });
    kp.securityContext!.sysctls = [{ name: 'kernel.msgmax' }];
    delete pp.securityContext!.runAsNonRoot;
    delete pp.securityContext!.seccompProfile;
    // Container level.
    const k = kp.containers[0]!;
    k.securityContext = { ...k.securityContext, privileged: true, allowPrivilegeEscalation: true, capabilities: { drop: ['NET_RAW'], add: ['SYS_ADMIN', 'NET_BIND_SERVICE'] }, procMount: 'Unmasked', runAsUser: 0 };
    k.ports!.push({ containerPort: 9999, hostPort: 9999 });
    const j = jp.containers[0]!;
    j.securityContext = { ...j.securityContext, seccompProfile: { type: 'Unconfined' }, appArmorProfile: { type: 'Unconfined' }, seLinuxOptions: { type: 'spc_t' } };
    // Probes and QoS.
    delete sp.containers[0]!.livenessProbe;
    pp.containers[0]!.readinessProbe = { tcpSocket: { port: 5432 } };
    pp.initContainers = [{ name: 'sidecar', restartPolicy: 'Always', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } } }];
    k.resources = { requests: { cpu: '500m', memory: '2Gi' }, limits: { cpu: '1', memory: '2048Mi' } };
    kp.initContainers = [{ name: 'init', securityContext: pp.initContainers[0]!.securityContext! }];
    const K = 'StatefulSet/stolon-keeper';
    expect(workloads(objs).flatMap(podSecurityProblems)).toEqual([
      `${K}: hostNetwork`,
      `${K}: hostPID`,
      `${K}: hostIPC`,
      `${K}: volume host is of type hostPath`,
      `${K}: sysctl kernel.msgmax`,
      `${K} container keeper: privileged`,
      `${K} container keeper: allowPrivilegeEscalation is not false`,
      `${K} container keeper: runAsUser 0`,
      `${K} container keeper: capabilities do not drop ALL`,
      `${K} container keeper: adds capability SYS_ADMIN`,
      `${K} container keeper: hostPort`,
      `${K} container keeper: procMount Unmasked`,
      'StatefulSet/stolon-proxy container proxy: runAsNonRoot is not true',
      'StatefulSet/stolon-proxy container proxy: seccompProfile unset, not RuntimeDefault or Localhost',
      'Job/stolon-init container init: seccompProfile Unconfined, not RuntimeDefault or Localhost',
      'Job/stolon-init container init: AppArmor Unconfined',
      'Job/stolon-init container init: seLinuxOptions {"type":"spc_t"}',
    ]);
    expect(workloads(objs).flatMap(workloadPolicyProblems)).toEqual([
      'Deployment/stolon-sentinel container sentinel: no HTTP livenessProbe',
      `${K} container init: cpu request unset is not its limit unset (Guaranteed QoS)`,
      `${K} container init: memory request unset is not its limit unset (Guaranteed QoS)`,
      `${K} container keeper: cpu request 500m is not its limit 1 (Guaranteed QoS)`,
      'StatefulSet/stolon-proxy container proxy: no HTTP readinessProbe',
      'StatefulSet/stolon-proxy container sidecar: no HTTP readinessProbe',
      'StatefulSet/stolon-proxy container sidecar: no HTTP livenessProbe',
    ]);
  });
});
