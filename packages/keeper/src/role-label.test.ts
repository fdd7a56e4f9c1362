/** The pod role label (role-label.ts): which role, when a patch is sent, and failures kept to a log line. */
import { describe, expect, it } from 'vitest';
import { aCluster, dbOf } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import { podRoleOf, RoleLabeller, ROLE_LABEL } from './role-label.js';

/** A logger that keeps each line's message and level. */
function recordingLogger(): { log: ReturnType<typeof createLogger>; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = createLogger({
    level: 'info',
    component: 'keeper',
    dest: { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) },
  });
  return { log, lines };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('podRoleOf', () => {
  it('primary while it runs the primary, standby for its standby DB, none otherwise', () => {
    const cd = aCluster({ spec: { initMode: 'new' } }).initialized().withPrimary('k1').withStandby('k2', { follows: 'k1' }).build();
    expect(podRoleOf(true, cd, dbOf('k1'), 'k1')).toBe('primary');
    expect(podRoleOf(false, cd, dbOf('k2'), 'k2')).toBe('standby');
    // The primary's DB while this process has not published under its lease yet: not labelled primary.
    expect(podRoleOf(false, cd, dbOf('k1'), 'k1')).toBe('none');
    expect(podRoleOf(false, cd, '', 'k3')).toBe('none');
    expect(podRoleOf(false, undefined, dbOf('k2'), 'k2')).toBe('none');
    // A DB this keeper no longer holds.
    expect(podRoleOf(false, cd, dbOf('k2'), 'k1')).toBe('none');
  });
});

describe('RoleLabeller', () => {
  it('patches only on a change, one patch at a time, and sets none on stop', async () => {
    const sent: Record<string, string | null>[] = [];
    const { log } = recordingLogger();
    const l = new RoleLabeller(async (labels) => void sent.push({ ...labels }), log);
    l.update('standby');
    l.update('standby');
    await settle();
    l.update('standby');
    l.update('primary');
    await settle();
    await l.stop();
    expect(sent).toEqual([{ [ROLE_LABEL]: 'standby' }, { [ROLE_LABEL]: 'primary' }, { [ROLE_LABEL]: 'none' }]);
  });

  it('a failing API: update never throws nor waits, each reason is logged once, retried no sooner than 10 s later, stop still returns', async () => {
    let calls = 0;
    const { log, lines } = recordingLogger();
    const l = new RoleLabeller(
      () => {
        calls += 1;
        return Promise.reject(new Error('pods "stolon-keeper-0" is forbidden'));
      },
      log,
    );
    for (let i = 0; i < 5; i++) {
      expect(l.update('primary')).toBeUndefined();
      await settle();
    }
    expect(calls).toBe(1);
    const warnings = lines.filter((x) => x.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/cannot set the pod label stolon-ts\/role=primary .*forbidden/);
    await expect(l.stop()).resolves.toBeUndefined();
  });

  it('without a client configuration: says why once, sends nothing', async () => {
    const { log, lines } = recordingLogger();
    const l = new RoleLabeller(undefined, log, 'no Kubernetes client configuration: no kubeconfig');
    l.update('primary');
    await l.stop();
    expect(lines.filter((x) => x.level === 40).map((x) => x.msg)).toEqual(['the pod label stolon-ts/role is not kept: no Kubernetes client configuration: no kubeconfig']);
  });
});
