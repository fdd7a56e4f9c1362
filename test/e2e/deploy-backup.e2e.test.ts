/**
 * deploy/components/backup (scheduled `stolonctl backup` CronJobs, their ServiceAccount and Role,
 * the keepers' `--allow-spec-commands backup`) with one repository component, backup-posix (a
 * ReadWriteMany volume on every keeper) or backup-s3 (a Secret with the S3 keys, read as files),
 * built into the overlays as an operator would add them:
 *
 * - every object validates against the Kubernetes schema (kubernetes-models' ajv validator) and
 *   its TypeScript types (the excess-property check that catches a misspelt field, as
 *   deploy.e2e.test.ts does for the base), in the overlay's namespace;
 * - the components only add objects, replace the init spec and patch the keeper StatefulSet;
 * - the init spec is the base's plus a `backup` section `stolonctl init` accepts, with no
 *   credential in it, whose repository path is where the keepers mount the volume (POSIX);
 * - every flag and `ST*_` variable is one the program's `--help` lists, except those in
 *   {@link PENDING_UNTIL_MERGED} (built on other branches), and the S3 key files are keys of the
 *   mounted Secret;
 * - the CronJobs run `stolonctl backup --type <full|diff|incr>` as the ServiceAccount
 *   stolon-backup, one run at a time, in pods that meet Pod Security "restricted", name this
 *   cluster, and that the NetworkPolicy stolon-keeper does not admit to the keepers;
 * - the Role grants get and update of the clusterdata ConfigMap and list of Leases only
 *   (deploy-rbac.e2e.test.ts checks it against the requests `stolonctl backup` makes); the etcd
 *   overlay removes it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments, parseDocument, stringify } from 'yaml';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { CronJob } from 'kubernetes-models/batch/v1/CronJob';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { validateSpec } from '@stolon-ts/cluster';
import { PROGRAMS, flagOfEnv, programHelp, type ProgramName } from './program-help.js';

/**
 * What the components use that the programs on this branch do not have yet (other branches of
 * issue #19 add them): `stolonctl backup`, the keeper's S3 key-file flags and the `backup` name of
 * `--allow-spec-commands`. An entry the programs already have fails the last test, so the list
 * cannot outlive its reason.
 */
const PENDING_UNTIL_MERGED = {
  commands: {} as Readonly<Record<string, ProgramName>>,
  flags: {} as Readonly<Record<string, ProgramName>>,
  allowSpecCommands: [] as readonly string[],
};

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLUSTER = 'kube-stolon';
const CLUSTERDATA = `stolon-cluster-${CLUSTER}`;

interface Container {
  name: string;
  args?: string[];
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom?: { prefix?: string; configMapRef?: { name: string } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[]; add?: string[] } };
}
interface PodSpec {
  containers: Container[];
  serviceAccountName?: string;
  restartPolicy?: string;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  volumes?: { name: string; secret?: { secretName: string }; persistentVolumeClaim?: { claimName: string }; emptyDir?: unknown }[];
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: PodSpec;
}
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<string, unknown>;
type CronJobObj = Obj & { spec: { schedule: string; concurrencyPolicy?: string; jobTemplate: { spec: { activeDeadlineSeconds?: number; template: PodTemplate } } } };
type RoleObj = Obj & { rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] };

/** The kubernetes-models class and type module of each kind the components add or change. */
const MODELS: Record<string, { model: { new (data: never): { validate(): void } }; types: string }> = {
  'apps/v1 StatefulSet': { model: StatefulSet, types: 'kubernetes-models/apps/v1/StatefulSet' },
  'batch/v1 CronJob': { model: CronJob, types: 'kubernetes-models/batch/v1/CronJob' },
  'rbac.authorization.k8s.io/v1 Role': { model: Role, types: 'kubernetes-models/rbac.authorization.k8s.io/v1/Role' },
  'rbac.authorization.k8s.io/v1 RoleBinding': { model: RoleBinding, types: 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding' },
  'v1 ConfigMap': { model: ConfigMap, types: 'kubernetes-models/v1/ConfigMap' },
  'v1 PersistentVolumeClaim': { model: PersistentVolumeClaim, types: 'kubernetes-models/v1/PersistentVolumeClaim' },
  'v1 ServiceAccount': { model: ServiceAccount, types: 'kubernetes-models/v1/ServiceAccount' },
};

/**
 * `kubectl kustomize` of `overlay` with `components` added to its own kustomization.yaml, as the
 * components' comments tell operators (so the overlay's patches, the etcd one's deletion of every
 * Role included, apply to the components' objects too): a copy of the overlay's file in a temp
 * directory, its resource paths rewritten to point back into the repository.
 */
function build(overlay: string, components: string[]): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'stolon-deploy-backup-'));
  try {
    const rel = (p: string) => relative(dir, join(REPO, p));
    const k = parseDocument(readFileSync(join(REPO, overlay, 'kustomization.yaml'), 'utf8')).toJSON() as { resources: string[]; components?: string[] };
    k.resources = k.resources.map((r) => rel(join(overlay, r)));
    k.components = [...(k.components ?? []).map((c) => rel(join(overlay, c))), ...components.map(rel)];
    writeFileSync(join(dir, 'kustomization.yaml'), stringify(k));
    const out = execFileSync('kubectl', ['kustomize', '--load-restrictor', 'LoadRestrictionsNone', dir], { encoding: 'utf8' });
    return parseAllDocuments(out).map((d) => d.toJSON() as Obj);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Type-checks objects against kubernetes-models' TypeScript interfaces, in memory (as
 * deploy.e2e.test.ts's typeCheck does for the base).
 * @returns one line per diagnostic, prefixed with the object it is about
 */
function typeCheck(objs: Obj[]): string[] {
  const file = join(REPO, 'test/e2e/__rendered-backup-manifests__.ts');
  const src = objs
    .map((obj, i) => `import type { I${obj.kind} as T${i} } from '${MODELS[`${obj.apiVersion} ${obj.kind}`]?.types ?? 'missing'}';\nexport const o${i}: T${i} = ${JSON.stringify(obj)};`)
    .join('\n');
  const options: ts.CompilerOptions = { strict: true, noEmit: true, skipLibCheck: true, types: [], target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, src, lang) : getSourceFile.call(host, name, lang, ...rest));
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? src : readFile.call(host, name));
  return ts.getPreEmitDiagnostics(ts.createProgram([file], options, host)).map((d) => {
    const line = d.file !== undefined && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const o = objs[Math.floor(line / 2)];
    return `${o === undefined ? '?' : `${o.kind}/${o.metadata.name}`}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

/** The names `stolon-keeper --help` lists for `--allow-spec-commands` ("… a comma-separated list of a, b, c. Refused …"). */
function allowSpecCommandNames(): string[] {
  const text = programHelp('stolon-keeper').text.replace(/\s+/g, ' ');
  const list = /--allow-spec-commands .*?comma-separated list of (.*?)\. /.exec(text)?.[1] ?? '';
  return list.split(',').map((n) => n.trim());
}

const id = (o: Obj) => `${o.kind}/${o.metadata.name}`;
const find = <T extends Obj = Obj>(objs: Obj[], kind: string, name: string): T => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  expect(o, `${kind}/${name}`).toBeDefined();
  return o as T;
};
const keeperOf = (objs: Obj[]) => (find(objs, 'StatefulSet', 'stolon-keeper') as Obj & { spec: { template: PodTemplate } }).spec.template;
const initSpecOf = (objs: Obj[]): Record<string, unknown> => {
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('stolon-init-spec')) as (Obj & { data: Record<string, string> }) | undefined;
  return JSON.parse(cm?.data['cluster-spec.json'] ?? '{}') as Record<string, unknown>;
};
const cronJobs = (objs: Obj[]) => objs.filter((o): o is CronJobObj => o.kind === 'CronJob');
const envOf = (c: Container) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));

/** Problems with the flags and `ST*_` variables of a container of `program` (sub: its subcommand). */
function flagProblems(program: ProgramName, c: Container, flags: string[], sub?: string): string[] {
  const main = programHelp(program);
  if (sub !== undefined && !main.commands.includes(sub)) {
    return PENDING_UNTIL_MERGED.commands[sub] === program ? [] : [`${program} has no subcommand ${sub}`];
  }
  const help = programHelp(program, sub);
  const known = (f: string) => help.flags.has(f) || main.flags.has(f) || PENDING_UNTIL_MERGED.flags[f] === program;
  const envFlags = (c.env ?? []).map((e) => flagOfEnv(e.name, PROGRAMS[program].envPrefix)).filter((f): f is string => f !== undefined);
  return [...flags, ...envFlags].filter((f) => !known(f)).map((f) => `${program}${sub === undefined ? '' : ` ${sub}`}: no flag --${f}`);
}

/** Whether `labels` (a pod's) is selected by one of the keepers' NetworkPolicy `from` entries for `port`. */
function admitted(objs: Obj[], port: number, labels: Record<string, string>): boolean {
  const np = find<Obj & { spec: { ingress: { ports?: { port: number }[]; from?: { podSelector?: { matchLabels?: Record<string, string> } }[] }[] } }>(objs, 'NetworkPolicy', 'stolon-keeper');
  return np.spec.ingress.some(
    (rule) =>
      (rule.ports === undefined || rule.ports.some((p) => p.port === port)) &&
      (rule.from === undefined || rule.from.some((f) => Object.entries(f.podSelector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v))),
  );
}

const BUILDS = {
  posix: build('deploy/overlays/kubernetes', ['deploy/components/backup', 'deploy/components/backup-posix']),
  s3: build('deploy/overlays/kubernetes', ['deploy/components/backup', 'deploy/components/backup-s3']),
  etcdPosix: build('deploy/overlays/etcd', ['deploy/components/backup', 'deploy/components/backup-posix']),
} as const;
const PLAIN = { kubernetes: build('deploy/overlays/kubernetes', []), etcd: build('deploy/overlays/etcd', []) };

describe('deploy/components/backup with backup-posix or backup-s3', () => {
  it('every object validates against the Kubernetes schema and types, in the overlay namespace; the components add the CronJobs, the RBAC and (POSIX) the volume claim, and change only the init spec and the keepers', () => {
    for (const [name, objs] of Object.entries(BUILDS)) {
      const changed = objs.filter((o) => ['CronJob', 'Role', 'RoleBinding', 'ServiceAccount', 'PersistentVolumeClaim', 'StatefulSet', 'ConfigMap'].includes(o.kind));
      for (const o of changed) {
        const m = MODELS[`${o.apiVersion} ${o.kind}`];
        expect(() => new m!.model(o as never).validate(), `${name} ${id(o)}`).not.toThrow();
        expect(o.metadata.namespace, `${name} ${id(o)}`).toBe('stolon');
      }
      expect(typeCheck(changed), name).toEqual([]);
      const plain = name.startsWith('etcd') ? PLAIN.etcd : PLAIN.kubernetes;
      const key = (o: Obj) => (o.kind === 'ConfigMap' && o.metadata.name.startsWith('stolon-init-spec') ? 'ConfigMap/stolon-init-spec' : id(o));
      const added = objs.map(key).filter((k) => !plain.map(key).includes(k)).sort();
      const rbac = name.startsWith('etcd') ? ['ServiceAccount/stolon-backup'] : ['Role/stolon-backup', 'RoleBinding/stolon-backup', 'ServiceAccount/stolon-backup'];
      const pvc = name === 's3' ? [] : ['PersistentVolumeClaim/stolon-backup-repo'];
      expect(added, name).toEqual([...rbac, 'CronJob/stolon-backup-diff', 'CronJob/stolon-backup-full', ...pvc].sort());
      // Nothing else changed but the init spec, the keepers and what references the init spec's new name.
      const same = (o: Obj) => JSON.stringify(o).replace(/stolon-init-spec-[a-z0-9]+/g, 'stolon-init-spec');
      const differing = plain.filter((p) => p.kind !== 'ConfigMap' || !p.metadata.name.startsWith('stolon-init-spec')).filter((p) => same(p) !== same(objs.find((o) => id(o) === id(p)) ?? ({} as Obj)));
      expect(differing.map(id), name).toEqual(['StatefulSet/stolon-keeper']);
    }
  });

  it('the init spec is the base\'s plus a backup section stolonctl init accepts, with no credential; the POSIX repository is where every keeper mounts the shared volume', () => {
    const base = JSON.parse(readFileSync(join(REPO, 'deploy/base/cluster-spec.json'), 'utf8')) as Record<string, unknown>;
    for (const [name, objs] of Object.entries(BUILDS)) {
      const spec = initSpecOf(objs);
      const { backup, ...rest } = spec;
      expect(rest, `${name}: the rest of the init spec is the base's`).toEqual(base);
      expect(() => validateSpec(spec), name).not.toThrow();
      expect(validateSpec(spec).backup?.repository.path, name).toMatch(/^\//);
      expect(JSON.stringify(backup), `${name}: no credential in the spec`).not.toMatch(/key|secret|password|token/i);
    }
    const repo = validateSpec(initSpecOf(BUILDS.posix)).backup?.repository;
    expect(repo?.s3).toBeUndefined();
    const keeper = keeperOf(BUILDS.posix);
    const vol = keeper.spec.volumes?.find((v) => v.persistentVolumeClaim?.claimName === 'stolon-backup-repo');
    expect(vol, 'the keepers mount the repository claim').toBeDefined();
    expect(keeper.spec.containers[0]?.volumeMounts?.find((m) => m.name === vol?.name)?.mountPath).toBe(repo?.path);
    const pvc = find<Obj & { spec: { accessModes: string[] } }>(BUILDS.posix, 'PersistentVolumeClaim', 'stolon-backup-repo');
    expect(pvc.spec.accessModes, 'one volume for every keeper').toEqual(['ReadWriteMany']);
    expect(validateSpec(initSpecOf(BUILDS.s3)).backup?.repository.s3?.bucket).toBeTruthy();
  });

  it('keepers: --allow-spec-commands backup, the S3 keys as files of the mounted Secret (never in the environment), pgBackRest\'s log directory writable; every flag one the keeper has (pending ones excepted)', () => {
    for (const [name, objs] of Object.entries(BUILDS)) {
      const c = keeperOf(objs).spec.containers[0]!;
      const env = envOf(c);
      expect(env['STKEEPER_ALLOW_SPEC_COMMANDS'], name).toBe('backup');
      expect(PENDING_UNTIL_MERGED.allowSpecCommands.includes('backup') || allowSpecCommandNames().includes('backup'), `${name}: the keeper accepts --allow-spec-commands backup`).toBe(true);
      expect(c.env?.filter((e) => e.name === 'STKEEPER_ALLOW_SPEC_COMMANDS'), `${name}: set once`).toHaveLength(1);
      expect(flagProblems('stolon-keeper', c, []), name).toEqual([]);
      expect(c.volumeMounts?.map((m) => m.mountPath), name).toContain('/var/log/pgbackrest');
    }
    const keeper = keeperOf(BUILDS.s3);
    const c = keeper.spec.containers[0]!;
    const env = envOf(c);
    const secretVol = keeper.spec.volumes?.find((v) => v.secret?.secretName === 'stolon-backup-s3');
    const mount = c.volumeMounts?.find((m) => m.name === secretVol?.name);
    expect(mount?.readOnly).toBe(true);
    for (const [v, key] of [['STKEEPER_BACKUP_S3_KEY_FILE', 's3-key'], ['STKEEPER_BACKUP_S3_KEY_SECRET_FILE', 's3-key-secret']] as const) {
      expect(env[v], v).toBe(`${mount?.mountPath ?? '?'}/${key}`);
    }
    // No key in the environment of any container, whatever its name.
    const allEnv = Object.values(BUILDS).flatMap((objs) => objs.flatMap((o) => JSON.stringify(o).match(/"name":"[A-Z_]*(S3_KEY|ACCESS_KEY|SECRET_KEY)[A-Z_]*","value(From)?"/g) ?? []));
    expect(allEnv.filter((e) => !e.includes('_FILE"'))).toEqual([]);
  });

  it('CronJobs: stolonctl backup --type full|diff|incr as stolon-backup, one run at a time, this cluster, Pod Security "restricted", not admitted to the keepers by the NetworkPolicy', () => {
    for (const [name, objs] of Object.entries(BUILDS)) {
      const jobs = cronJobs(objs);
      expect(jobs.map((j) => j.metadata.name).sort(), name).toEqual(['stolon-backup-diff', 'stolon-backup-full']);
      for (const j of jobs) {
        const where = `${name} ${id(j)}`;
        expect(j.spec.concurrencyPolicy, where).toBe('Forbid');
        const pod = j.spec.jobTemplate.spec.template;
        expect(pod.spec.serviceAccountName, where).toBe('stolon-backup');
        expect(pod.metadata.labels['stolon-cluster'], where).toBe(CLUSTER);
        const c = pod.spec.containers[0]!;
        expect(pod.spec.containers, where).toHaveLength(1);
        expect(c.command, `${where}: args, never command (tini stays PID 1)`).toBeUndefined();
        const [program, sub, ...flags] = c.args ?? [];
        expect([program, sub], where).toEqual(['stolonctl', 'backup']);
        expect(flags[0], where).toBe('--type');
        expect(['full', 'diff', 'incr'], where).toContain(flags[1]);
        expect(j.metadata.name, where).toBe(`stolon-backup-${flags[1] ?? '?'}`);
        // stolonctl's wait ends before the Job's deadline stops the pod, so its own message is logged.
        const timeout = /^(\d+)h$/.exec(flags[flags.indexOf('--timeout') + 1] ?? '');
        expect(Number(timeout?.[1]) * 3600, `${where}: --timeout in hours, below activeDeadlineSeconds`).toBeLessThan(j.spec.jobTemplate.spec.activeDeadlineSeconds ?? 0);
        expect(flagProblems('stolonctl', c, flags.filter((f) => f.startsWith('--')).map((f) => f.slice(2)), 'backup'), where).toEqual([]);
        expect(flagProblems('stolonctl', c, []), where).toEqual([]);
        expect(c.env?.find((e) => e.name === 'STOLONCTL_CLUSTER_NAME')?.valueFrom?.fieldRef?.fieldPath, where).toBe("metadata.labels['stolon-cluster']");
        // The store flags, from the ConfigMap every program reads (its generated, hashed name).
        const store = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('stolon-store'));
        expect(c.envFrom, `${where}: the store flags`).toEqual([{ prefix: 'STOLONCTL_', configMapRef: { name: store?.metadata.name } }]);
        // Pod Security "restricted".
        expect(pod.spec.securityContext?.runAsNonRoot, where).toBe(true);
        expect(pod.spec.securityContext?.seccompProfile?.type, where).toBe('RuntimeDefault');
        expect(c.securityContext, where).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
        expect(c.securityContext?.capabilities?.add, where).toBeUndefined();
        // stolonctl backup talks to the store only: no way into the keepers' PostgreSQL or member API.
        expect(admitted(objs, 5432, pod.metadata.labels), `${where}: PostgreSQL`).toBe(false);
        expect(admitted(objs, 8081, pod.metadata.labels), `${where}: member API`).toBe(false);
        // The check above can say yes: a keeper pod is admitted to PostgreSQL.
        expect(admitted(objs, 5432, keeperOf(objs).metadata.labels), where).toBe(true);
      }
    }
  });

  it('RBAC: stolon-backup may get and update the clusterdata ConfigMap and list Leases, nothing else; the etcd overlay removes the Role and mounts no token', () => {
    const role = find<RoleObj>(BUILDS.posix, 'Role', 'stolon-backup');
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['configmaps'], resourceNames: [CLUSTERDATA], verbs: ['get', 'update'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['list'] },
    ]);
    const binding = find<Obj & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string }[] }>(BUILDS.posix, 'RoleBinding', 'stolon-backup');
    expect(binding.roleRef).toMatchObject({ kind: 'Role', name: 'stolon-backup' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'stolon-backup', namespace: 'stolon' }]);
    // The base names the same clusterdata ConfigMap (one cluster name everywhere).
    const keeperRole = find<RoleObj>(BUILDS.posix, 'Role', 'stolon-keeper');
    expect(keeperRole.rules[0]?.resourceNames).toEqual([CLUSTERDATA]);
    expect(BUILDS.etcdPosix.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding')).toEqual([]);
    expect(find(BUILDS.etcdPosix, 'ServiceAccount', 'stolon-backup')['automountServiceAccountToken']).toBe(false);
  });

  it('the pending list names only what the programs still lack (remove entries once their branch is merged)', () => {
    for (const [sub, program] of Object.entries(PENDING_UNTIL_MERGED.commands)) {
      expect(programHelp(program).commands.includes(sub), `${program} ${sub} exists now: remove it from PENDING_UNTIL_MERGED`).toBe(false);
    }
    for (const [flag, program] of Object.entries(PENDING_UNTIL_MERGED.flags)) {
      expect(programHelp(program).flags.has(flag), `--${flag} is in ${program} --help now: remove it from PENDING_UNTIL_MERGED`).toBe(false);
    }
    for (const name of PENDING_UNTIL_MERGED.allowSpecCommands) {
      expect(allowSpecCommandNames(), `--allow-spec-commands lists ${name} now: remove it from PENDING_UNTIL_MERGED`).not.toContain(name);
    }
  });
});
