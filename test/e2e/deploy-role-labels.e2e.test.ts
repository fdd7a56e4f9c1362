/**
 * deploy/components/role-labels (the optional primary-only PodDisruptionBudget and role Services,
 * selecting the keepers' pod label `stolon-ts/role`), built into the kubernetes overlay as an
 * operator would add it: every object validates against the Kubernetes schema, lands in the
 * overlay's namespace, selects the keeper pods of this cluster only (with the role label the
 * keepers write: packages/keeper/src/role-label.ts; deploy-rbac.e2e.test.ts checks they do), on a
 * port they listen on.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { ROLE_LABEL, type PodRole } from '@stolon-ts/keeper';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Obj {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}
interface Pod {
  metadata: { labels: Record<string, string> };
  spec: { containers: { name: string; ports?: { name?: string; containerPort: number }[] }[] };
}

/** `kubectl kustomize` of an overlay made of `resources` and `components` (paths in the repo). */
function build(resources: string[], components: string[]): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'stolon-role-labels-'));
  try {
    const rel = (p: string) => relative(dir, join(REPO, p));
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        'namespace: stolon',
        'resources:',
        ...resources.map((r) => `  - ${rel(r)}`),
        'components:',
        ...components.map((c) => `  - ${rel(c)}`),
      ].join('\n'),
    );
    const out = execFileSync('kubectl', ['kustomize', '--load-restrictor', 'LoadRestrictionsNone', dir], { encoding: 'utf8' });
    return parseAllDocuments(out).map((d) => d.toJSON() as Obj);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const matches = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);

describe('deploy/components/role-labels in the kubernetes overlay', () => {
  const objs = build(['deploy/overlays/kubernetes'], ['deploy/components/role-labels']);
  const workloads = objs.filter((o) => ['StatefulSet', 'Deployment', 'Job'].includes(o.kind));
  const keeper = objs.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'stolon-keeper');
  const template = (keeper?.spec['template'] ?? { metadata: { labels: {} }, spec: { containers: [] } }) as Pod;
  const keeperPod = (role: PodRole) => ({ ...template.metadata.labels, [ROLE_LABEL]: role });
  const byName = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);

  it('adds a primary-only budget and the primary and replica Services, valid objects in the overlay namespace', () => {
    const added = objs.filter((o) => ['stolon-keeper-primary', 'stolon-primary', 'stolon-replica'].includes(o.metadata.name));
    expect(added.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(['PodDisruptionBudget/stolon-keeper-primary', 'Service/stolon-primary', 'Service/stolon-replica']);
    for (const o of added) {
      expect(o.metadata.namespace, o.metadata.name).toBe('stolon');
      expect(() => (o.kind === 'Service' ? new Service(o as never).validate() : new PodDisruptionBudget(o as never).validate()), o.metadata.name).not.toThrow();
    }
    // The base is unchanged: the component only adds.
    expect(objs.length - added.length).toBe(build(['deploy/overlays/kubernetes'], []).length);
  });

  it("each selects the keeper pods of this cluster with the role the keepers write, and nothing else; the Services' port is the keepers' postgres port", () => {
    const want: Record<string, PodRole> = { 'PodDisruptionBudget/stolon-keeper-primary': 'primary', 'Service/stolon-primary': 'primary', 'Service/stolon-replica': 'standby' };
    for (const [id, role] of Object.entries(want)) {
      const [kind, name] = id.split('/') as [string, string];
      const o = byName(kind, name)!;
      const sel = (kind === 'Service' ? o.spec['selector'] : (o.spec['selector'] as { matchLabels: Record<string, string> }).matchLabels) as Record<string, string>;
      expect(sel[ROLE_LABEL], id).toBe(role);
      expect(matches(sel, keeperPod(role)), `${id} selects a keeper pod labelled ${role}`).toBe(true);
      for (const other of ['primary', 'standby', 'none'] as const) {
        if (other !== role) {
          expect(matches(sel, keeperPod(other)), `${id} must not select a keeper labelled ${other}`).toBe(false);
        }
      }
      // Another cluster's keepers in the same namespace are not selected.
      expect(matches(sel, { ...keeperPod(role), 'stolon-cluster': 'other' }), id).toBe(false);
      // Nor any other workload's pods, whatever their labels plus the role label (the read-only proxies' included).
      expect(workloads.map((w) => `${w.kind}/${w.metadata.name}`).sort()).toEqual([
        'Deployment/stolon-sentinel',
        'Job/stolon-init',
        'StatefulSet/stolon-keeper',
        'StatefulSet/stolon-proxy',
        'StatefulSet/stolon-proxy-ro',
      ]);
      for (const w of workloads.filter((x) => x !== keeper)) {
        const labels = ((w.spec['template'] as Pod | undefined)?.metadata.labels ?? {}) as Record<string, string>;
        expect(matches(sel, { ...labels, [ROLE_LABEL]: role }), `${id} vs ${w.kind}/${w.metadata.name}`).toBe(false);
      }
      if (kind === 'Service') {
        const ports = (o.spec['ports'] as { targetPort: string }[]).map((p) => p.targetPort);
        const declared = template.spec.containers.find((c) => c.name === 'keeper')?.ports?.map((p) => p.name) ?? [];
        expect(ports.every((p) => declared.includes(p)), `${id} targetPort ${ports.join()}`).toBe(true);
      }
    }
    expect((byName('PodDisruptionBudget', 'stolon-keeper-primary')!.spec as { minAvailable?: number }).minAvailable).toBe(1);
  });
});
