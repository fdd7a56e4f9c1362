import { defineConfig } from 'vitest/config';

/**
 * Three tiers told apart by file name (docs/design.md#test-tiers); `npm test` runs all of them.
 * The projects below them (`backends`, `backup`, `day2`, `image`) exist only under their own npm
 * scripts, which `npm run test:all` runs after `npm test`.
 * Integration and e2e files share real etcd/PostgreSQL processes per file, so they run
 * one file at a time on this 2-core machine.
 */
/** Where this run's JSON report goes: one file per script, so that .ci/run can count them all. */
function reportFile(): string {
  if (process.env['STOLON_IMAGE_TEST'] === '1') {
    return '.test-results/vitest-image.json';
  }
  if (process.env['STOLON_BACKENDS_SUITE'] === '1') {
    return '.test-results/vitest-backends.json';
  }
  if (process.env['STOLON_BACKUP_SUITE'] === '1') {
    return '.test-results/vitest-backup.json';
  }
  if (process.env['STOLON_DAY2_SUITE'] === '1') {
    return '.test-results/vitest-day2.json';
  }
  if (process.env['STOLON_CHAOS_SUITE'] === '1') {
    return '.test-results/vitest-chaos.json';
  }
  const backend = process.env['STOLON_TEST_STORE_BACKEND'];
  return backend !== undefined && backend !== '' ? `.test-results/vitest-backend-${backend}.json` : '.test-results/vitest.json';
}

/** The pgBackRest files: `npm run test:backup`, not `npm test` (which stays near 20 minutes). */
const BACKUP_SUITE = ['test/e2e/backup-*.e2e.test.ts', 'test/harness/src/s3-pgbackrest.integration.test.ts'];

/** The day-2 operation e2e files: `npm run test:day2`, not `npm test` (which stays near 20 minutes). */
const DAY2_SUITE = [
  'test/e2e/day2-*.e2e.test.ts',
  'test/e2e/import.e2e.test.ts',
  'test/e2e/password-rotation.e2e.test.ts',
  'test/e2e/keeper-drain*.e2e.test.ts',
];

/** The chaos suite's short form: `npm run test:chaos-short`, not `npm test` (which stays near 20 minutes). */
const CHAOS_SUITE = ['test/e2e/chaos.e2e.test.ts'];

export default defineConfig({
  test: {
    // The JSON report lets .ci/run print one plain "N passed, N failed" closing line.
    // `npm run test:image` writes its own report, so that .ci/run can count both runs.
    // `npm run test:backends` writes one per backend (STOLON_TEST_STORE_BACKEND).
    reporters: ['default', ['json', { outputFile: reportFile() }]],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts', 'test/harness/src/**/*.test.ts', 'test/sim/src/**/*.test.ts'],
          exclude: ['**/*.integration.test.ts', '**/node_modules/**', '**/dist/**'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['packages/*/src/**/*.integration.test.ts', 'test/harness/src/**/*.integration.test.ts'],
          exclude: [...BACKUP_SUITE, '**/node_modules/**', '**/dist/**'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.test.ts'],
          exclude: [...BACKUP_SUITE, ...DAY2_SUITE, ...CHAOS_SUITE, '**/node_modules/**', '**/dist/**'],
          testTimeout: 240_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      // `npm run test:image` only (it sets STOLON_IMAGE_TEST): builds images/Dockerfile with podman
      // and runs its containers, 4-5 minutes on a fresh machine, 1-2.5 minutes with its bases cached; .ci/run runs it after `npm test`.
      // `npm run test:backends` only (it sets STOLON_BACKENDS_SUITE): the tests of one backend each
      // (the stand-ins checked by Patroni, the Kubernetes store outage, pod role labels), about 3 minutes.
      ...(process.env['STOLON_BACKENDS_SUITE'] === '1'
        ? [{ test: { name: 'backends', include: ['test/e2e/**/*.backends.test.ts'], testTimeout: 240_000, hookTimeout: 120_000, fileParallelism: false } }]
        : []),
      // `npm run test:backup` only (it sets STOLON_BACKUP_SUITE): archiving, backups, restores
      // and S3 with real pgBackRest, about 6 minutes.
      ...(process.env['STOLON_BACKUP_SUITE'] === '1'
        ? [{ test: { name: 'backup', include: BACKUP_SUITE, testTimeout: 240_000, hookTimeout: 120_000, fileParallelism: false } }]
        : []),
      // `npm run test:day2` only (it sets STOLON_DAY2_SUITE): the day-2 stolonctl commands (reload,
      // reinit, history, restart, scheduled switchover), importing a pg_dump, password rotation and
      // the keeper's drain on stop, about 5 minutes.
      ...(process.env['STOLON_DAY2_SUITE'] === '1'
        ? [{ test: { name: 'day2', include: DAY2_SUITE, testTimeout: 240_000, hookTimeout: 120_000, fileParallelism: false } }]
        : []),
      // `npm run test:chaos-short` only (it sets STOLON_CHAOS_SUITE): one cycle of each short-form
      // fault on a synchronous cluster in network namespaces, 3-5 minutes.
      ...(process.env['STOLON_CHAOS_SUITE'] === '1'
        ? [{ test: { name: 'chaos', include: CHAOS_SUITE, testTimeout: 240_000, hookTimeout: 120_000, fileParallelism: false } }]
        : []),
      ...(process.env['STOLON_IMAGE_TEST'] === '1'
        ? [{ test: { name: 'image', include: ['test/e2e/**/*.image.test.ts'], testTimeout: 300_000, hookTimeout: 1_500_000, fileParallelism: false } }]
        : []),
    ],
  },
});
