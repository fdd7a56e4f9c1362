/**
 * deploy/components/monitoring (PodMonitors, PrometheusRule, Grafana dashboard ConfigMap), built
 * into the kubernetes overlay as an operator would add it, checked without an API server or an
 * operator:
 *
 * 1. Schema: PodMonitor and PrometheusRule are CRDs (monitoring.coreos.com/v1) that the
 *    kubernetes-models validators do not know; `@kubernetes-models/prometheus-operator` carries
 *    the Prometheus Operator's CRD schemas (ajv: types, required fields) and TypeScript types (the
 *    compiler's excess-property check: unknown fields at any depth), as deploy.e2e.test.ts does for
 *    the built-in kinds. The ConfigMap validates against kubernetes-models.
 * 2. Wiring, by a hand-written check ({@link podMonitorProblems}): each PodMonitor selects the pods
 *    of exactly one workload of this cluster and scrapes `/metrics` on a named container port that
 *    is the one the program's `--metrics-listen-address` listens on; every program workload is
 *    scraped.
 * 3. The rules: `promtool check rules` on the PrometheusRule's `spec` (PromQL, templates, durations),
 *    and `promtool test rules` on cases that make each alert fire, and not fire, on made-up series.
 * 4. The dashboard parses, its panels and variables are consistent, and
 *    `metric-names.json` is exactly the set of metrics the rules and the dashboard read
 *    (test/e2e/prometheus.e2e.test.ts checks the programs export them).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments, stringify } from 'yaml';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { describe, expect, it } from 'vitest';
import { runPromtool } from '@stolon-ts/harness';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const COMPONENT = 'deploy/components/monitoring';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name?: string; containerPort: number }[];
}
interface Workload extends Obj {
  spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[] } } };
}
interface PodMonitorSpec {
  selector: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] };
  podMetricsEndpoints?: { port?: string; path?: string; interval?: string; scrapeTimeout?: string }[];
  podTargetLabels?: string[];
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleSpec {
  groups: { name: string; rules: Rule[] }[];
}
interface Target {
  expr?: string;
  refId: string;
  datasource?: { uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { uid: string };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; query?: unknown }[] };
  annotations: { list: { expr?: string }[] };
}

/** `kubectl kustomize` of an overlay made of `resources` and `components` (paths in the repo), in namespace stolon. */
function build(resources: string[], components: string[]): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'stolon-monitoring-'));
  try {
    const rel = (p: string) => relative(dir, join(REPO, p));
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', namespace: 'stolon', resources: resources.map(rel), components: components.map(rel) }),
    );
    let out: string;
    try {
      out = execFileSync('kubectl', ['kustomize', '--load-restrictor', 'LoadRestrictionsNone', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { code?: string; stderr?: string };
      throw new Error(e.code === 'ENOENT' ? 'kubectl not found: these tests need kubectl ≥ 1.27 on PATH' : `kubectl kustomize failed: ${e.stderr ?? String(err)}`);
    }
    return parseAllDocuments(out).map((d) => d.toJSON() as Obj);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Type-checks objects against the Prometheus Operator's TypeScript interfaces, in memory (see deploy.e2e.test.ts's typeCheck). */
function typeCheck(objs: { label: string; obj: Obj }[]): string[] {
  const file = join(REPO, 'test/e2e/__rendered-monitoring__.ts');
  const src = objs
    .map(({ obj }, i) => `import type { I${obj.kind} as T${i} } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${obj.kind}';\nexport const o${i}: T${i} = ${JSON.stringify(obj)};`)
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
    return `${objs[Math.floor(line / 2)]?.label ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

const matches = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
const PROGRAMS = ['stolon-keeper', 'stolon-sentinel', 'stolon-proxy'];
const programOf = (c: Container) => PROGRAMS.find((p) => c.args?.[0] === p);
const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;

/**
 * What is wrong with the PodMonitors of `objs`; [] when nothing. Each must select the pods of
 * exactly one program workload (by its template labels, `stolon-cluster` included) and scrape
 * `/metrics` on a container port, named as in the pod, whose number is the port of the program's
 * `ST*_METRICS_LISTEN_ADDRESS`; intervals are Prometheus durations, the timeout within the
 * interval; every program workload is scraped by one PodMonitor.
 */
export function podMonitorProblems(objs: Obj[]): string[] {
  const problems: string[] = [];
  const workloads = objs.filter((o): o is Workload => ['StatefulSet', 'Deployment'].includes(o.kind));
  const programWorkloads = workloads.filter((w) => w.spec.template.spec.containers.some((c) => programOf(c) !== undefined));
  const scraped = new Map<string, string>();
  for (const pm of objs.filter((o) => o.kind === 'PodMonitor')) {
    const id = `PodMonitor/${pm.metadata.name}`;
    const spec = pm.spec as unknown as PodMonitorSpec;
    const sel = spec.selector.matchLabels ?? {};
    if (spec.selector.matchExpressions !== undefined || !('stolon-cluster' in sel)) {
      problems.push(`${id}: select by matchLabels with the stolon-cluster label only`);
    }
    const selected = workloads.filter((w) => matches(sel, w.spec.template.metadata.labels));
    if (selected.length !== 1) {
      problems.push(`${id} selects the pods of ${selected.length} workloads (${selected.map((w) => w.metadata.name).join(', ')}), not 1`);
      continue;
    }
    const w = selected[0]!;
    scraped.set(`${w.kind}/${w.metadata.name}`, id);
    const endpoints = spec.podMetricsEndpoints ?? [];
    if (endpoints.length === 0) {
      problems.push(`${id}: no podMetricsEndpoints`);
    }
    for (const ep of endpoints) {
      if (ep.path !== '/metrics') {
        problems.push(`${id}: path ${ep.path ?? '(unset)'}, not /metrics`);
      }
      for (const d of [ep.interval, ep.scrapeTimeout]) {
        if (d !== undefined && !DURATION.test(d)) {
          problems.push(`${id}: ${d} is not a Prometheus duration`);
        }
      }
      const container = w.spec.template.spec.containers.find((c) => c.ports?.some((p) => p.name === ep.port));
      const port = container?.ports?.find((p) => p.name === ep.port);
      if (container === undefined || port === undefined) {
        problems.push(`${id}: port ${ep.port ?? '(unset)'} is no named port of ${w.metadata.name}'s containers`);
        continue;
      }
      const listen = container.env?.find((e) => /^ST[A-Z]+_METRICS_LISTEN_ADDRESS$/.test(e.name))?.value;
      if (listen === undefined || Number(listen.split(':').pop()) !== port.containerPort) {
        problems.push(`${id}: port ${ep.port} (${port.containerPort}) is not where ${container.name}'s --metrics-listen-address (${listen ?? 'unset'}) listens`);
      }
    }
  }
  for (const w of programWorkloads) {
    if (!scraped.has(`${w.kind}/${w.metadata.name}`)) {
      problems.push(`${w.kind}/${w.metadata.name} is scraped by no PodMonitor`);
    }
  }
  return problems;
}

/**
 * Every metric name a PromQL expression reads: identifiers outside strings, label matchers,
 * ranges and grouping clauses, not followed by `(` (functions), that look like a metric of ours,
 * of Node's default collectors, or Prometheus's `up`.
 */
export function metricNamesOf(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...s.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((n) => /^(?:stolon_|process_|nodejs_)/.test(n) || n === 'up');
}

const monitoringFile = (name: string) => readFileSync(join(REPO, COMPONENT, name), 'utf8');
const METRIC_NAMES = JSON.parse(monitoringFile('metric-names.json')) as { exported: string[]; fromPrometheus: string[] };

describe('deploy/components/monitoring in the kubernetes overlay', () => {
  const objs = build(['deploy/overlays/kubernetes'], [COMPONENT]);
  const base = build(['deploy/overlays/kubernetes'], []);
  const added = objs.filter((o) => !base.some((b) => b.kind === o.kind && b.metadata.name === o.metadata.name));
  const rule = objs.find((o) => o.kind === 'PrometheusRule');
  const ruleSpec = (rule?.spec ?? { groups: [] }) as unknown as RuleSpec;
  const rules = ruleSpec.groups.flatMap((g) => g.rules);
  const dashboardMap = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'stolon-grafana-dashboard');
  const dashboard = JSON.parse(Object.values(dashboardMap?.data ?? { x: '{}' })[0] ?? '{}') as Dashboard;

  it('adds a PodMonitor per program workload, the PrometheusRule and the dashboard ConfigMap, in the overlay namespace, and leaves the rest as it was', () => {
    expect(added.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/stolon-grafana-dashboard',
      'PodMonitor/stolon-keeper',
      'PodMonitor/stolon-proxy',
      'PodMonitor/stolon-proxy-ro',
      'PodMonitor/stolon-sentinel',
      'PrometheusRule/stolon',
    ]);
    for (const o of added) {
      expect(o.metadata.namespace, o.metadata.name).toBe('stolon');
    }
    expect(objs.length - added.length).toBe(base.length);
  });

  it('PodMonitor and PrometheusRule validate against the Prometheus Operator CRD schemas (ajv) and types (no unknown field); the ConfigMap against Kubernetes', () => {
    const crs = added.filter((o) => o.apiVersion === 'monitoring.coreos.com/v1');
    expect(crs).toHaveLength(5);
    for (const o of crs) {
      const Model = o.kind === 'PodMonitor' ? PodMonitor : PrometheusRule;
      expect(() => new Model(o as never).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
    }
    expect(typeCheck(crs.map((obj) => ({ label: `${obj.kind}/${obj.metadata.name}`, obj })))).toEqual([]);
    expect(() => new ConfigMap(dashboardMap as never).validate()).not.toThrow();
  });

  it('the schema and type checks catch a misspelt field, a wrong type and a missing required field', () => {
    const pm = structuredClone(added.find((o) => o.kind === 'PodMonitor')!);
    const typo = structuredClone(pm) as { spec: { podMetricsEndpoints: Record<string, unknown>[] } } & Obj;
    typo.spec.podMetricsEndpoints[0]!['intervall'] = '15s';
    const wrongType = structuredClone(pm) as { spec: { podMetricsEndpoints: Record<string, unknown>[] } } & Obj;
    wrongType.spec.podMetricsEndpoints[0]!['port'] = 8080;
    const missing = structuredClone(rule!) as { spec: { groups: Record<string, unknown>[] } } & Obj;
    delete missing.spec.groups[0]!['name'];
    expect(typeCheck([{ label: 'typo', obj: typo }, { label: 'wrong type', obj: wrongType }, { label: 'missing', obj: missing }])).toEqual([
      expect.stringMatching(/^typo: .*'"intervall"' does not exist in type/),
      expect.stringMatching(/^wrong type: Type 'number' is not assignable to type 'string'/),
      expect.stringMatching(/^missing: Property '"name"' is missing/),
    ]);
    expect(() => new PodMonitor(wrongType as never).validate()).toThrow(/port must be string/);
    expect(() => new PrometheusRule(missing as never).validate()).toThrow(/groups\/0 must have required property '?name'?/);
  });

  it("each PodMonitor scrapes one program workload of this cluster on the port its --metrics-listen-address listens on, and every program is scraped; the targets get the cluster's label", () => {
    expect(podMonitorProblems(objs)).toEqual([]);
    for (const pm of added.filter((o) => o.kind === 'PodMonitor')) {
      expect((pm.spec as unknown as PodMonitorSpec).podTargetLabels, pm.metadata.name).toContain('stolon-cluster');
    }
  });

  it('the PodMonitor check catches a wrong port, a selector of two workloads, a wrong path and an unscraped workload', () => {
    const broken = (edit: (pms: { metadata: { name: string }; spec: PodMonitorSpec }[]) => void): string[] => {
      const copy = structuredClone(objs);
      edit(copy.filter((o) => o.kind === 'PodMonitor') as unknown as { metadata: { name: string }; spec: PodMonitorSpec }[]);
      return podMonitorProblems(copy.filter((o) => o.kind !== 'PodMonitor' || o.metadata.name !== 'drop-me'));
    };
    expect(broken((pms) => (pms[0]!.spec.podMetricsEndpoints![0]!.port = 'postgres'))).toEqual([expect.stringMatching(/port postgres \(5432\) is not where .*listens/)]);
    expect(broken((pms) => delete pms[0]!.spec.selector.matchLabels!['app.kubernetes.io/component'])).toEqual(
      expect.arrayContaining([expect.stringMatching(/selects the pods of 4 workloads/), expect.stringMatching(/is scraped by no PodMonitor/)]),
    );
    expect(broken((pms) => (pms[1]!.spec.podMetricsEndpoints![0]!.path = '/metric'))).toEqual([expect.stringMatching(/path \/metric, not \/metrics/)]);
    expect(broken((pms) => (pms.find((pm) => pm.metadata.name === 'stolon-proxy')!.metadata.name = 'drop-me'))).toEqual(['StatefulSet/stolon-proxy is scraped by no PodMonitor']);
  });

  it('every alert has a unique name, a severity (critical, warning or info), a summary and a description', () => {
    const alerts = rules.filter((r) => r.alert !== undefined);
    expect(alerts.length).toBe(rules.length);
    expect(new Set(alerts.map((r) => r.alert)).size).toBe(alerts.length);
    for (const r of alerts) {
      expect(['critical', 'warning', 'info'], r.alert).toContain(r.labels?.['severity']);
      expect(Object.keys(r.annotations ?? {}).sort(), r.alert).toEqual(['description', 'summary']);
    }
  });

  it('promtool check rules accepts the rule group (PromQL, durations, annotation templates)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stolon-rules-'));
    try {
      writeFileSync(join(dir, 'rules.yaml'), stringify(ruleSpec));
      const r = await runPromtool(['check', 'rules', join(dir, 'rules.yaml')]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
      // And it fails on a broken expression, so the check is real.
      writeFileSync(join(dir, 'bad.yaml'), stringify({ groups: [{ name: 'x', rules: [{ alert: 'X', expr: 'sum(' }] }] }));
      expect((await runPromtool(['check', 'rules', join(dir, 'bad.yaml')])).code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('promtool test rules: each alert fires on made-up series when it should, with its labels, and not before its `for` nor for healthy series', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stolon-rules-test-'));
    try {
      // Without annotations: their templates are checked above; here only firing and labels count.
      const bare = { groups: ruleSpec.groups.map((g) => ({ ...g, rules: g.rules.map(({ annotations: _a, ...r }) => r) })) };
      writeFileSync(join(dir, 'rules.yaml'), stringify(bare));
      writeFileSync(join(dir, 'tests.yaml'), stringify(ruleTests()));
      const r = await runPromtool(['test', 'rules', join(dir, 'tests.yaml')]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain('SUCCESS');
      // Every alert has a case.
      const tested = new Set(ruleTests().tests.flatMap((t) => t.alert_rule_test.map((a) => a.alertname)));
      expect([...tested].sort()).toEqual(rules.map((x) => x.alert).sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the dashboard ConfigMap carries the grafana_dashboard label; the dashboard has a uid, unique panel ids, a target expression per target, and only variables it defines', () => {
    expect(dashboardMap?.metadata.labels?.['grafana_dashboard']).toBe('1');
    expect(Object.keys(dashboardMap?.data ?? {})).toEqual(['stolon.json']);
    expect(dashboard.uid).toBe('stolon-ts');
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    const defined = new Set(['__rate_interval', '__range', '__interval', ...dashboard.templating.list.map((v) => v.name)]);
    const used = JSON.stringify(dashboard).matchAll(/\$\{?([a-zA-Z_]+)/g);
    expect([...used].map((m) => m[1]!).filter((v) => !defined.has(v))).toEqual([]);
    const graphs = dashboard.panels.filter((p) => p.type !== 'row');
    expect(graphs.length).toBeGreaterThan(15);
    for (const p of graphs) {
      expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      for (const t of p.targets ?? []) {
        expect(t.expr ?? '', `${p.title} ${t.refId}`).not.toBe('');
      }
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    }
    // The panels the issue asks for are there.
    const titles = graphs.map((p) => p.title.toLowerCase()).join('\n');
    for (const want of ['roles', 'lag', 'failovers', 'connections', 'bytes', 'pass duration']) {
      expect(titles).toContain(want);
    }
  });

  it('metric-names.json lists exactly the metrics the alerts and the dashboard read', () => {
    const exprs = [
      ...rules.map((r) => r.expr),
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
      ...dashboard.annotations.list.map((a) => a.expr ?? ''),
      ...dashboard.templating.list.map((v) => JSON.stringify(v.query ?? '')),
    ];
    const used = new Set(exprs.flatMap(metricNamesOf));
    expect([...METRIC_NAMES.exported, ...METRIC_NAMES.fromPrometheus].sort()).toEqual([...used].sort());
    expect(metricNamesOf('histogram_quantile(0.9, sum by (le, job) (rate(stolon_a_bucket{x="stolon_b"}[5m]))) and on (instance) up == 1')).toEqual(['stolon_a_bucket', 'up']);
  });
});

interface RuleTestFile {
  rule_files: string[];
  evaluation_interval: string;
  tests: {
    interval: string;
    input_series: { series: string; values: string }[];
    alert_rule_test: { eval_time: string; alertname: string; exp_alerts: { exp_labels: Record<string, string> }[] }[];
  }[];
}

/**
 * `promtool test rules` cases: one made-up cluster `c` (namespace `ns`) with a fault and one
 * healthy cluster `ok`, 15 s apart samples; each alert checked before its `for` ran out (nothing),
 * and after (exactly the faulty series).
 */
function ruleTests(): RuleTestFile {
  const l = (cluster: string, instance: string, more = '') => `namespace="ns",stolon_cluster="${cluster}",instance="${instance}"${more}`;
  const at = (cluster: string) => ({ namespace: 'ns', stolon_cluster: cluster });
  const series = (name: string, labels: string, values: string) => ({ series: `${name}{${labels}}`, values });
  return {
    rule_files: ['rules.yaml'],
    evaluation_interval: '15s',
    tests: [
      {
        interval: '15s',
        input_series: [
          // c: the primary goes at 75 s; ok keeps one. One keeper of c then runs a primary twice over from 5 min on.
          series('stolon_cluster_identifier', l('c', 'k0', ',component="keeper"'), '1x80'),
          series('stolon_keeper_local_role', l('c', 'k0', ',role="primary"'), '1x4 0x15 1x60'),
          series('stolon_keeper_local_role', l('c', 'k1', ',role="primary"'), '0x19 1x60'),
          series('stolon_cluster_identifier', l('ok', 'k0', ',component="keeper"'), '1x80'),
          series('stolon_keeper_local_role', l('ok', 'k0', ',role="primary"'), '1x80'),
          // Sentinels: s0 (leader) and s1 of c report sync on and none in sync; ok's leader has one in sync.
          series('stolon_sentinel_is_leader', l('c', 's0'), '1x80'),
          series('stolon_sentinel_is_leader', l('c', 's1'), '0x80'),
          series('stolon_sentinel_synchronous_replication', l('c', 's0'), '1x80'),
          series('stolon_sentinel_synchronous_replication', l('c', 's1'), '1x80'),
          series('stolon_sentinel_synchronous_standbys_in_sync', l('c', 's0'), '1x4 0x76'),
          series('stolon_sentinel_synchronous_standbys_in_sync', l('c', 's1'), '0x80'),
          series('stolon_sentinel_is_leader', l('ok', 's0'), '1x80'),
          series('stolon_sentinel_synchronous_replication', l('ok', 's0'), '1x80'),
          series('stolon_sentinel_synchronous_standbys_in_sync', l('ok', 's0'), '1x80'),
          // no leader sentinel in cluster nl from the start
          series('stolon_sentinel_is_leader', l('nl', 's0'), '0x80'),
          // A standby of c falls 2 MiB behind at 60 s.
          series('stolon_keeper_replication_lag_bytes', l('c', 'k1'), '0x3 2097152x76'),
          series('stolon_keeper_replication_lag_bytes', l('ok', 'k1'), '0x80'),
          // Failovers and switchovers: c's counters appear at 2 min (a first event with that reason).
          series('stolon_sentinel_failovers_total', l('c', 's0', ',reason="primary unhealthy"'), '_x7 1x72'),
          series('stolon_sentinel_switchovers_total', l('c', 's0', ',reason="requested"'), '_x7 1x72'),
          series('stolon_sentinel_failovers_total', l('ok', 's0', ',reason="primary unhealthy"'), '0x80'),
          // Keeper k1 of c unhealthy from 60 s.
          series('stolon_keeper_healthy', l('c', 'k1'), '1x3 0x76'),
          series('stolon_keeper_healthy', l('ok', 'k1'), '1x80'),
          // Proxy p0 of c without a primary from 60 s.
          series('stolon_proxy_has_primary', l('c', 'p0'), '1x3 0x76'),
          series('stolon_proxy_has_primary', l('ok', 'p0'), '1x80'),
          // Last store successes: c's proxy stuck at 0 (the epoch of the test clock), ok's keeping up.
          series('stolon_proxy_last_check_success_seconds', l('c', 'p0'), '0x80'),
          series('stolon_keeper_last_sync_success_seconds', l('ok', 'k0'), '0+15x80'),
          series('stolon_sentinel_last_cluster_check_success_seconds', l('ok', 's0'), '0+15x80'),
          // Scrape of c's k1 fails from 60 s.
          series('up', l('c', 'k1', ',job="keeper"'), '1x3 0x76'),
          series('up', l('ok', 'k1', ',job="keeper"'), '1x80'),
        ],
        alert_rule_test: [
          { eval_time: '1m30s', alertname: 'StolonNoPrimary', exp_alerts: [] },
          { eval_time: '3m', alertname: 'StolonNoPrimary', exp_alerts: [{ exp_labels: { severity: 'critical', ...at('c') } }] },
          { eval_time: '5m30s', alertname: 'StolonMultiplePrimaries', exp_alerts: [] },
          { eval_time: '7m', alertname: 'StolonMultiplePrimaries', exp_alerts: [{ exp_labels: { severity: 'critical', ...at('c') } }] },
          { eval_time: '1m', alertname: 'StolonSynchronousStandbyNotInSync', exp_alerts: [] },
          { eval_time: '3m', alertname: 'StolonSynchronousStandbyNotInSync', exp_alerts: [{ exp_labels: { severity: 'critical', ...at('c'), instance: 's0' } }] },
          { eval_time: '2m', alertname: 'StolonReplicationLagHigh', exp_alerts: [] },
          { eval_time: '4m', alertname: 'StolonReplicationLagHigh', exp_alerts: [{ exp_labels: { severity: 'warning', ...at('c'), instance: 'k1' } }] },
          { eval_time: '1m', alertname: 'StolonFailover', exp_alerts: [] },
          { eval_time: '3m', alertname: 'StolonFailover', exp_alerts: [{ exp_labels: { severity: 'warning', ...at('c') } }] },
          { eval_time: '15m', alertname: 'StolonFailover', exp_alerts: [] },
          { eval_time: '3m', alertname: 'StolonSwitchover', exp_alerts: [{ exp_labels: { severity: 'info', ...at('c') } }] },
          { eval_time: '15m', alertname: 'StolonSwitchover', exp_alerts: [] },
          { eval_time: '2m', alertname: 'StolonKeeperUnhealthy', exp_alerts: [] },
          { eval_time: '4m', alertname: 'StolonKeeperUnhealthy', exp_alerts: [{ exp_labels: { severity: 'warning', ...at('c'), instance: 'k1' } }] },
          { eval_time: '30s', alertname: 'StolonSentinelNoLeader', exp_alerts: [] },
          { eval_time: '2m', alertname: 'StolonSentinelNoLeader', exp_alerts: [{ exp_labels: { severity: 'critical', ...at('nl') } }] },
          { eval_time: '1m30s', alertname: 'StolonProxyWithoutPrimary', exp_alerts: [] },
          { eval_time: '3m', alertname: 'StolonProxyWithoutPrimary', exp_alerts: [{ exp_labels: { severity: 'warning', ...at('c'), instance: 'p0' } }] },
          { eval_time: '1m15s', alertname: 'StolonStoreUnreachable', exp_alerts: [] },
          { eval_time: '2m', alertname: 'StolonStoreUnreachable', exp_alerts: [{ exp_labels: { severity: 'warning', ...at('c'), instance: 'p0' } }] },
          { eval_time: '2m30s', alertname: 'StolonTargetDown', exp_alerts: [] },
          { eval_time: '4m', alertname: 'StolonTargetDown', exp_alerts: [{ exp_labels: { severity: 'warning', ...at('c'), instance: 'k1', job: 'keeper' } }] },
        ],
      },
    ],
  };
}
