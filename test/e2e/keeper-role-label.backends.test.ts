/**
 * The keepers' pod role label (`--kube-pod-name`, packages/keeper/src/role-label.ts) on the
 * harness's Kubernetes API stand-in when labelling is refused: the cluster works as without it (a
 * switchover completes, writes go through), each keeper logs the refusal once, not at every pass;
 * once the API accepts the patches again the labels catch up with the roles.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

const NAMESPACE = 'stolon';
const ROLE_LABEL = 'stolon-ts/role';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, { tmpPrefix: 'stolon-role-label-e2e-', store: 'kubernetes', clusterName: 'rolelabel', keepers: 2 });

describe('keeper pod role label when the API refuses it', () => {
  it('a refused label changes nothing else and is logged once per keeper; the labels catch up once allowed', async () => {
    const c = e2e.cluster;
    const roleOf = (i: number) => c.kubeApi.getObject('pods', NAMESPACE, `stolon-keeper-${i}`)?.metadata.labels?.[ROLE_LABEL];
    await waitKeepersConverged(c, 2, 60_000);
    const before = await c.primaryIndex();
    await waitFor(() => (roleOf(before) === 'primary' && roleOf(1 - before) === 'standby' ? true : undefined), { timeoutMs: 30_000, what: 'the labels of a healthy cluster' });

    // From now on every pod request is refused, as without the RBAC rule.
    let refused = 0;
    c.kubeApi.setInterceptor((r) => {
      if (r.resource !== 'pods') {
        return undefined;
      }
      refused += 1;
      return { code: 403, reason: 'Forbidden', message: `pods "${r.name ?? ''}" is forbidden: User "keeper" cannot patch resource "pods"` };
    });
    const target = c.keepers[1 - before]!.uid;
    await waitFor(async () => ((await c.stolonctl(['switchover', '--yes', '--to', target])).code === 0 ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 2_000,
      what: 'stolonctl switchover to succeed while labels are refused',
    });
    await waitFor(async () => ((await c.primaryIndex()) === 1 - before ? true : undefined), { timeoutMs: 60_000, what: 'the target to be primary' });
    await waitFor(async () => ((await query<{ one: number }>(c.proxyClientConfig(0), 'select 1 as one'))[0]?.one === 1 ? true : undefined), {
      timeoutMs: 30_000,
      what: 'the proxy to route to the new primary',
    });
    // Both keepers tried (their roles changed), and were refused; the labels are stale.
    await waitFor(() => (refused >= 2 ? true : undefined), { timeoutMs: 20_000, what: 'both keepers to try to relabel' });
    expect(roleOf(before)).toBe('primary');
    // Several passes later, still one warning per keeper: the reason did not change.
    await new Promise((r) => setTimeout(r, 12_000));
    for (const k of c.keepers) {
      const warnings = k.process.logs().split('\n').filter((l) => l.includes('cannot set the pod label'));
      expect(warnings.length, k.uid).toBe(1);
      expect(warnings[0]).toMatch(/forbidden/);
    }

    // Allowed again: the labels follow the roles within the retry period.
    c.kubeApi.setInterceptor(undefined);
    await waitFor(() => (roleOf(1 - before) === 'primary' && roleOf(before) === 'standby' ? true : undefined), {
      timeoutMs: 30_000,
      what: `the labels to catch up (now ${roleOf(0) ?? 'unset'}, ${roleOf(1) ?? 'unset'})`,
    });
    expect(c.keepers.some((k) => k.process.logs().includes('labelling works again'))).toBe(true);
  }, 240_000);
});
