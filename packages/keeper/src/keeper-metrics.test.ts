/**
 * The keeper's metrics as a scrape sees them: values computed from the cached facts of
 * `KeeperStatus` (what the passes reported), in Prometheus's text format.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { aCluster } from '@stolon-ts/cluster/testing';
import type { PgObservation } from '@stolon-ts/postgres';
import { KeeperStatus, keeperChecks } from './health.js';
import { registerKeeperMetrics } from './keeper-metrics.js';
import type { PublishedView } from './types.js';

const MB = 1024 * 1024;

const obs: PgObservation = {
  initialized: true,
  running: true,
  role: 'standby',
  systemId: '7000000000000000001',
  timelineId: 3,
  xLogPos: 90 * MB,
  receivedXLogPos: 90 * MB,
  replayedXLogPos: 80 * MB,
  walReceiverStreaming: true,
  lastReplayAtMs: 1_000_000 - 2500,
  replication: [],
  slots: [],
  olderWalFile: '',
  pendingRestart: ['shared_buffers'],
  timelinesHistory: [],
};

function setup(): { status: KeeperStatus; registry: Registry; clock: { mono: number; wall: number } } {
  const clock = { mono: 10_000, wall: 1_000_000 };
  const registry = new Registry();
  let observe: (s: number) => void = () => undefined;
  const status = new KeeperStatus({ nowMs: () => clock.mono, wallMs: () => clock.wall, onPassSettled: (s) => observe(s) });
  observe = registerKeeperMetrics(registry, () => status.facts(), 'k2');
  return { status, registry, clock };
}

/** The value of the one series of `line` (`name` or `name{labels}`) in the exposition `text`. */
function valueOf(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('keeper metrics', () => {
  it('before any pass: roles none, flags 0, no errors', async () => {
    const { registry } = setup();
    const text = await registry.metrics();
    expect(valueOf(text, 'stolon_keeper_local_role{role="none"}')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_target_role{role="none"}')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_postgres_up')).toBe(0);
    expect(valueOf(text, 'stolon_keeper_errors_total{kind="store"}')).toBe(0);
    expect(valueOf(text, 'stolon_keeper_sleep_interval')).toBe(1);
  });

  it('a lagging standby resyncing nothing: its positions, lag, roles, flags and the pass histogram, from the last pass', async () => {
    const { status, registry, clock } = setup();
    const cd = aCluster({ uid: 'c1', spec: { initMode: 'new', sleepInterval: '2s', failInterval: '10s' } })
      .initialized()
      .withPrimary('k1', { xLogPos: 100 * MB })
      .withStandby('k2')
      .routedTo('k1', ['p1'])
      .build();
    status.passStarted();
    status.observed(obs);
    const view: PublishedView = { cd, local: { uid: 'db-k2', generation: 1, clusterUID: 'c1' }, obs, task: undefined, bootUuid: 'b', healthy: true, needsReload: false };
    status.published(view);
    clock.mono += 40;
    status.passSettled(undefined);
    const text = await registry.metrics();
    const expected: Record<string, number> = {
      'stolon_keeper_local_role{role="standby"}': 1,
      'stolon_keeper_local_role{role="primary"}': 0,
      'stolon_keeper_target_role{role="standby"}': 1,
      stolon_keeper_healthy: 1,
      stolon_keeper_postgres_up: 1,
      stolon_keeper_timeline: 3,
      stolon_keeper_wal_current_lsn_bytes: 0,
      stolon_keeper_wal_receive_lsn_bytes: 90 * MB,
      stolon_keeper_wal_replay_lsn_bytes: 80 * MB,
      stolon_keeper_replication_lag_bytes: 20 * MB,
      stolon_keeper_replication_lag_seconds: 2.5,
      stolon_keeper_needs_restart: 1,
      stolon_keeper_needs_reload: 0,
      stolon_keeper_fenced: 0,
      stolon_keeper_resync_done_bytes: 0,
      stolon_keeper_synchronous_standby: 0,
      stolon_keeper_last_sync_success_seconds: 1000,
      stolon_keeper_clusterdata_last_valid_update_seconds: 1000,
      stolon_keeper_sleep_interval: 2,
      stolon_keeper_pass_duration_seconds_count: 1,
      'stolon_keeper_pass_duration_seconds_bucket{le="0.05"}': 1,
      'stolon_keeper_pass_duration_seconds_bucket{le="0.025"}': 0,
    };
    for (const [line, value] of Object.entries(expected)) {
      expect(valueOf(text, line), line).toBe(value);
    }
    expect(text).toMatch(/# TYPE stolon_keeper_errors_total counter/);
    expect(text).toMatch(/# TYPE stolon_keeper_pass_duration_seconds histogram/);
  });

  it('counts errors by kind: a pass that failed before publishing (store), after it (pass), a failed task', async () => {
    const { status, registry, clock } = setup();
    status.passStarted();
    status.passSettled(new Error('etcd unreachable'));
    status.passStarted();
    status.published({ cd: undefined, local: { uid: '', generation: 0, clusterUID: '' }, obs, task: undefined, bootUuid: 'b' });
    status.passSettled(new Error('pg_ctl start failed'));
    clock.wall = 2_000_000;
    status.errorSeen('task');
    const text = await registry.metrics();
    expect(valueOf(text, 'stolon_keeper_errors_total{kind="store"}')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_errors_total{kind="pass"}')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_errors_total{kind="task"}')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_last_error_timestamp_seconds')).toBe(2000);
    expect(valueOf(text, 'stolon_keeper_last_sync_success_seconds')).toBe(0);
  });

  it('a resync in progress and a fenced primary', async () => {
    const { status, registry } = setup();
    status.passStarted();
    status.observed({ ...obs, running: false, role: 'master' });
    status.published({
      cd: undefined,
      local: { uid: 'db-k2', generation: 1, clusterUID: 'c1' },
      obs: { ...obs, running: false },
      task: 'pg_basebackup',
      bootUuid: 'b',
      fenced: true,
      resync: { doneBytes: 5 * MB, totalBytes: 50 * MB },
    });
    const text = await registry.metrics();
    expect(valueOf(text, 'stolon_keeper_resync_done_bytes')).toBe(5 * MB);
    expect(valueOf(text, 'stolon_keeper_resync_total_bytes')).toBe(50 * MB);
    expect(valueOf(text, 'stolon_keeper_fenced')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_postgres_up')).toBe(0);
  });

  it('archiving: pg_stat_archiver counts and times, the waiting WAL, failing, and the backlog warning past backup.archiveWarnBytes', async () => {
    const { status, registry } = setup();
    const archiver = { archivedCount: 7, lastArchivedAtMs: 900_000, failedCount: 2, lastFailedAtMs: 950_000, lastFailedWal: '000000010000000000000009', readyCount: 3, readyBytes: 48 * MB };
    const o = { ...obs, archiver };
    const cd = aCluster({ uid: 'c1', spec: { initMode: 'new', backup: { repository: { path: '/b' }, archiveWarnBytes: 32 * MB } } }).initialized().withPrimary('k1').withStandby('k2').build();
    status.passStarted();
    status.observed(o);
    status.published({ cd, local: { uid: 'db-k2', generation: 1, clusterUID: 'c1' }, obs: o, task: undefined, bootUuid: 'b' });
    const text = await registry.metrics();
    expect(valueOf(text, 'stolon_keeper_archive_archived_total')).toBe(7);
    expect(valueOf(text, 'stolon_keeper_archive_failed_total')).toBe(2);
    expect(valueOf(text, 'stolon_keeper_archive_last_archived_timestamp_seconds')).toBe(900);
    expect(valueOf(text, 'stolon_keeper_archive_last_failed_timestamp_seconds')).toBe(950);
    expect(valueOf(text, 'stolon_keeper_archive_failing')).toBe(1);
    expect(valueOf(text, 'stolon_keeper_archive_ready_files')).toBe(3);
    expect(valueOf(text, 'stolon_keeper_archive_ready_bytes')).toBe(48 * MB);
    expect(valueOf(text, 'stolon_keeper_archive_backlog_warning')).toBe(1);
    status.observed({ ...o, archiver: { ...archiver, lastArchivedAtMs: 960_000, readyCount: 0, readyBytes: 0 } });
    const after = await registry.metrics();
    expect(valueOf(after, 'stolon_keeper_archive_failing')).toBe(0);
    expect(valueOf(after, 'stolon_keeper_archive_backlog_warning')).toBe(0);
  });

  it('the status endpoint serves /metrics and the role paths from keeperChecks', () => {
    const { status } = setup();
    const checks = keeperChecks(status, () => 'running', 'k2', async () => ({ contentType: 'text/plain', text: '' }));
    expect(Object.keys(checks.more ?? {}).sort()).toEqual(['/health', '/primary', '/read-only', '/replica', '/sync']);
    expect(checks.metrics).toBeDefined();
    expect(checks.more?.['/health']?.(new URLSearchParams())).toEqual({ ok: false, reason: 'postgres not observed yet' });
  });
});
