/**
 * docs/kubernetes.md walks an operator through the cluster's life (init, deploy, connect, lose the
 * primary's pod, scale, update the image with a switchover, drain, replace a lost node, delete).
 * This test checks every command of its code blocks against what exists now, so that a renamed
 * workload, flag or Secret cannot leave the walkthrough stale (the proxies becoming a StatefulSet
 * once left `deploy/stolon-proxy` in it):
 * - `kubectl`: the namespace is the overlays' (`stolon`), `-k` paths are kustomizations, every
 *   workload named (`sts/…`, `deploy/…`, `statefulset …`, `deployment …`) exists with that kind in
 *   the rendered kubernetes overlay, pod and PVC names belong to a StatefulSet of it, Secrets
 *   created are the ones the pods mount, and label selectors select something;
 * - `stolonctl` (run through the walkthrough's shell function): the command exists and every flag
 *   is one its `--help` lists;
 * - the steps an operator needs are all there.
 * A doctored walkthrough shows each check can fail.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NAMESPACE = 'stolon';

interface Obj {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: {
    volumeClaimTemplates?: { metadata: { name: string } }[];
    template?: { metadata?: { labels?: Record<string, string> }; spec?: { volumes?: { secret?: { secretName?: string } }[] } };
  };
}

/** The rendered kubernetes overlay (`kubectl kustomize`), parsed. */
function rendered(): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', join(REPO, 'deploy/overlays/kubernetes')], { encoding: 'utf8', maxBuffer: 32 << 20 });
  return parseAllDocuments(out)
    .map((d) => d.toJSON() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

/** The shell commands of the markdown's fenced code blocks, continuation lines joined, comments dropped. */
function shellCommands(markdown: string): string[] {
  const out: string[] = [];
  let inBlock = false;
  let pending = '';
  for (const raw of markdown.split('\n')) {
    if (raw.startsWith('```')) {
      inBlock = !inBlock;
      pending = '';
      continue;
    }
    if (!inBlock) {
      continue;
    }
    const line = raw.replace(/\s+#\s.*$/, '').replace(/^\s*#.*$/, '');
    if (line.trimEnd().endsWith('\\')) {
      pending += `${line.trimEnd().slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full !== '') {
      out.push(full);
    }
  }
  return out;
}

/** Splits a command line into words (single and double quotes kept together, quotes removed). */
function words(line: string): string[] {
  return [...line.matchAll(/'[^']*'|"(?:[^"\\]|\\.)*"|[^\s]+/g)].map((m) => m[0].replace(/^['"]|['"]$/g, ''));
}

const KINDS: Record<string, string> = { sts: 'StatefulSet', statefulset: 'StatefulSet', deploy: 'Deployment', deployment: 'Deployment', job: 'Job', svc: 'Service', service: 'Service' };

/** What the rendered overlay offers a walkthrough command. */
interface World {
  readonly objs: readonly Obj[];
  /** stolonctl command → the flags its --help lists. */
  readonly stolonctl: ReadonlyMap<string, ReadonlySet<string>>;
}

function has(w: World, kind: string, name: string): boolean {
  return w.objs.some((o) => o.kind === kind && o.metadata.name === name);
}

function statefulSetOfPod(w: World, pod: string): Obj | undefined {
  return w.objs.find((o) => o.kind === 'StatefulSet' && new RegExp(`^${o.metadata.name}-\\d+$`).test(pod));
}

function labelsSelectSomething(w: World, selector: string): boolean {
  const pairs = selector.split(',').map((p) => p.split('='));
  return w.objs.some((o) =>
    [o.metadata.labels ?? {}, o.spec?.template?.metadata?.labels ?? {}].some((labels) => pairs.every(([k, v]) => k !== undefined && labels[k] === v)),
  );
}

/** Problems of one `kubectl …` command. */
function kubectlProblems(w: World, ws: string[]): string[] {
  const problems: string[] = [];
  const line = ws.join(' ');
  const ns = ws.indexOf('-n');
  if (ns >= 0 && ws[ns + 1] !== NAMESPACE) {
    problems.push(`${line}: namespace ${ws[ns + 1] ?? '?'}, not ${NAMESPACE}`);
  }
  const k = ws.indexOf('-k');
  if (k >= 0 && !existsSync(join(REPO, ws[k + 1] ?? '', 'kustomization.yaml'))) {
    problems.push(`${line}: ${ws[k + 1] ?? '?'} is no kustomization`);
  }
  const l = ws.indexOf('-l');
  if (l >= 0 && !labelsSelectSomething(w, ws[l + 1] ?? '')) {
    problems.push(`${line}: -l ${ws[l + 1] ?? '?'} selects nothing in the manifests`);
  }
  for (const [i, word] of ws.entries()) {
    const slash = /^(sts|statefulset|deploy|deployment|job|svc|service)\/([a-z0-9-]+)$/.exec(word);
    const spaced = KINDS[word] !== undefined && /^[a-z0-9-]+$/.test(ws[i + 1] ?? '') && ['scale', 'patch', 'status', 'restart', 'delete', 'get', 'describe'].includes(ws[i - 1] ?? '');
    const ref = slash !== null ? { kind: KINDS[slash[1]!]!, name: slash[2]! } : spaced ? { kind: KINDS[word]!, name: ws[i + 1]! } : undefined;
    if (ref !== undefined && !has(w, ref.kind, ref.name)) {
      problems.push(`${line}: no ${ref.kind} ${ref.name} in the manifests`);
    }
  }
  const verbAt = ws.findIndex((x, i) => i > 0 && ['exec', 'logs', 'delete'].includes(x));
  const target = verbAt >= 0 ? ws.slice(verbAt + 1).find((x) => !x.startsWith('-') && x !== NAMESPACE) : undefined;
  if (target !== undefined && verbAt >= 0 && ws[verbAt] !== 'delete' && /^stolon-[a-z-]+-\d+$/.test(target) && statefulSetOfPod(w, target) === undefined) {
    problems.push(`${line}: pod ${target} belongs to no StatefulSet of the manifests`);
  }
  if (ws[verbAt] === 'delete' && (ws[verbAt + 1] === 'pod' || ws[verbAt + 1] === 'pvc')) {
    const name = ws[verbAt + 2] ?? '';
    const claim = /^([a-z0-9-]+?)-(stolon-[a-z-]+-\d+)$/.exec(name);
    const ok =
      ws[verbAt + 1] === 'pod'
        ? statefulSetOfPod(w, name) !== undefined
        : name.startsWith('-') || (claim !== null && (statefulSetOfPod(w, claim[2]!)?.spec?.volumeClaimTemplates ?? []).some((t) => t.metadata.name === claim[1]));
    if (!ok) {
      problems.push(`${line}: ${ws[verbAt + 1]} ${name} belongs to no StatefulSet of the manifests`);
    }
  }
  const secret = ws.indexOf('secret');
  if (ws[secret - 1] === 'create' && ws[secret + 1] === 'generic') {
    const name = ws[secret + 2] ?? '';
    const mounted = w.objs.some((o) => (o.spec?.template?.spec?.volumes ?? []).some((v) => v.secret?.secretName === name));
    if (!mounted) {
      problems.push(`${line}: Secret ${name} is mounted by no pod of the manifests`);
    }
  }
  return problems;
}

/** Problems of one `stolonctl …` command (the walkthrough's shell function adds the store flags). */
function stolonctlProblems(w: World, ws: string[]): string[] {
  const args = ws.slice(1);
  const command = args.find((a) => !a.startsWith('-'));
  if (command === undefined) {
    return [];
  }
  const flags = w.stolonctl.get(command);
  if (flags === undefined) {
    return [`${ws.join(' ')}: stolonctl has no command ${command}`];
  }
  return args
    .filter((a) => a.startsWith('--'))
    .map((a) => a.split('=')[0]!)
    .filter((f) => !flags.has(f))
    .map((f) => `${ws.join(' ')}: stolonctl ${command} has no flag ${f}`);
}

/** Every problem of the walkthrough's commands against `w`. */
function walkthroughProblems(markdown: string, w: World): string[] {
  const problems: string[] = [];
  for (const line of shellCommands(markdown)) {
    const ws = words(line);
    if (ws[0] === 'kubectl') {
      problems.push(...kubectlProblems(w, ws));
      const dashdash = ws.indexOf('--');
      if (ws[dashdash + 1] === 'stolonctl') {
        problems.push(...stolonctlProblems(w, ws.slice(dashdash + 1)));
      }
    } else if (ws[0] === 'stolonctl' && !line.startsWith('stolonctl()')) {
      problems.push(...stolonctlProblems(w, ws));
    }
  }
  return problems;
}

/** The steps the walkthrough must cover, each as a pattern some command or heading matches. */
const STEPS: readonly [string, RegExp][] = [
  ['create the passwords and the member token', /kubectl -n stolon create secret generic stolon-passwords/],
  ['deploy', /kubectl apply -k deploy\/overlays\/kubernetes/],
  ['init (the init Job, or stolonctl init)', /stolon-init|stolonctl init/],
  ['connect through the proxy', /psql -h stolon-proxy /],
  ['read from a standby through the read-only proxies', /psql -h stolon-proxy-ro -p 5433 /],
  ["kill the primary's pod", /kubectl -n stolon delete pod stolon-keeper-0/],
  ['scale', /kubectl -n stolon scale statefulset stolon-keeper --replicas=3/],
  ['update the image with a switchover', /## \d+\. Update the image[\s\S]*stolonctl switchover/],
  ['drain a node holding the primary', /kubectl drain /],
  ['replace a lost node', /## \d+\. Replace a node/],
  ['delete, keeping the data', /kubectl delete -k deploy\/overlays\/kubernetes/],
  ['delete, destroying the data', /kubectl -n stolon delete pvc -l stolon-cluster=kube-stolon/],
];

/** The flags `stolonctl <command> --help` lists, per command. */
function stolonctlFlags(): Map<string, Set<string>> {
  const bin = join(REPO, 'packages/stolonctl/dist/bin.js');
  const help = (args: string[]) => execFileSync(process.execPath, [bin, ...args, '--help'], { encoding: 'utf8' });
  const commands = [...help([]).matchAll(/^ {2}stolonctl ([a-z]+)/gm)].map((m) => m[1]!);
  return new Map(commands.map((c) => [c, new Set([...help([c]).matchAll(/^\s+(?:-[a-z], )?(--[a-z-]+)/gm)].map((m) => m[1]!))]));
}

describe('docs/kubernetes.md walkthrough', () => {
  const markdown = readFileSync(join(REPO, 'docs/kubernetes.md'), 'utf8');
  const world: World = { objs: rendered(), stolonctl: stolonctlFlags() };

  it('every kubectl and stolonctl command names what the manifests and the programs have now', () => {
    expect(shellCommands(markdown).length).toBeGreaterThan(30);
    expect(world.stolonctl.get('switchover')?.has('--to')).toBe(true);
    expect(walkthroughProblems(markdown, world)).toEqual([]);
  });

  it('covers every step an operator needs', () => {
    expect(STEPS.filter(([, re]) => !re.test(markdown)).map(([step]) => step)).toEqual([]);
  });

  it('the checks catch a wrong kind, name, namespace, path, selector, Secret, pod, claim, stolonctl command and flag', () => {
    const doctored = [
      '```sh',
      'kubectl -n stolon scale deployment stolon-proxy --replicas=3',
      'kubectl -n stolon port-forward deploy/stolon-proxy 8080',
      'kubectl -n default get pods',
      'kubectl apply -k deploy/overlays/nowhere',
      'kubectl -n stolon get pods -l app.kubernetes.io/component=keepers',
      'kubectl -n stolon create secret generic stolon-password --from-literal=pg-su-password=x',
      'kubectl -n stolon exec stolon-keepers-0 -- true',
      'kubectl -n stolon exec stolon-proxy-r-0 -- true',
      'kubectl -n stolon exec stolon-proxy-ro-0 -- true',
      'kubectl -n stolon scale statefulset stolon-proxy-ro --replicas=3',
      'kubectl -n stolon delete pvc pgdata-stolon-keeper-1',
      'stolonctl failover keeper0',
      'stolonctl switchover --yes --target keeper1   # a comment',
      'kubectl -n stolon exec deploy/stolon-sentinel -- stolonctl status --format yaml \\',
      '  --verbose',
      '```',
    ].join('\n');
    expect(walkthroughProblems(doctored, world)).toEqual([
      'kubectl -n stolon scale deployment stolon-proxy --replicas=3: no Deployment stolon-proxy in the manifests',
      'kubectl -n stolon port-forward deploy/stolon-proxy 8080: no Deployment stolon-proxy in the manifests',
      'kubectl -n default get pods: namespace default, not stolon',
      'kubectl apply -k deploy/overlays/nowhere: deploy/overlays/nowhere is no kustomization',
      'kubectl -n stolon get pods -l app.kubernetes.io/component=keepers: -l app.kubernetes.io/component=keepers selects nothing in the manifests',
      'kubectl -n stolon create secret generic stolon-password --from-literal=pg-su-password=x: Secret stolon-password is mounted by no pod of the manifests',
      'kubectl -n stolon exec stolon-keepers-0 -- true: pod stolon-keepers-0 belongs to no StatefulSet of the manifests',
      'kubectl -n stolon exec stolon-proxy-r-0 -- true: pod stolon-proxy-r-0 belongs to no StatefulSet of the manifests',
      'kubectl -n stolon delete pvc pgdata-stolon-keeper-1: pvc pgdata-stolon-keeper-1 belongs to no StatefulSet of the manifests',
      'stolonctl failover keeper0: stolonctl has no command failover',
      'stolonctl switchover --yes --target keeper1: stolonctl switchover has no flag --target',
      'stolonctl status --format yaml --verbose: stolonctl status has no flag --verbose',
    ]);
  });
});
