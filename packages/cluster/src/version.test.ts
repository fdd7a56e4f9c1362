import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { STOLON_TS_VERSION } from './version.js';

const PACKAGES = ['cluster', 'common', 'store', 'postgres', 'keeper', 'sentinel', 'proxy', 'stolonctl'];

describe('STOLON_TS_VERSION', () => {
  it.each(PACKAGES)('is the version of packages/%s/package.json', (name) => {
    const file = fileURLToPath(new URL(`../../${name}/package.json`, import.meta.url));
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { version: string };
    expect(pkg.version).toBe(STOLON_TS_VERSION);
  });
});
