// Prints vitest's JSON reports (`npm test`'s, and `npm run test:image`'s and `npm run test:backends`'s when given) as one plain
// closing line: "tests: N passed, N failed, N skipped", summed over the reports.
import { readFileSync } from 'node:fs';
const files = process.argv.length > 2 ? process.argv.slice(2) : ['.test-results/vitest.json'];
let passed = 0;
let failed = 0;
let skipped = 0;
let missing = 0;
for (const file of files) {
  let r;
  try {
    r = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    console.log(`no report at ${file} (${err.message})`);
    missing++;
    continue;
  }
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  // A file that failed outside its tests (e.g. in beforeAll, its tests then reported as skipped)
  // counts as one failure, so that the closing line does not say "0 failed".
  for (const f of r.testResults ?? []) {
    if (f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')) {
      failed++;
    }
  }
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(missing === 0 && passed + failed > 0 ? 0 : 1);
