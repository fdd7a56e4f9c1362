/**
 * What a program's start loads: the npm packages in a fresh Node process's CommonJS module cache,
 * for the start-up cost tests of the packages (`lazy-load.test.ts`).
 */
import { execFile } from 'node:child_process';

/**
 * Runs `code` (an ES module body, which may import built modules by absolute path) in a new Node
 * process and returns the npm packages in its CommonJS module cache at the end, sorted, each once.
 * Every package such a test checks is CommonJS, and an ES `import` of one goes through that cache
 * too.
 * @param code the module body, run with `node --input-type=module -e`
 * @returns package names (`pg`, `@grpc/grpc-js`, …)
 * @throws Error with the process's stderr when it exits non-zero or runs past 60 s
 */
export async function npmPackagesLoaded(code: string): Promise<string[]> {
  const program = `import { createRequire } from 'node:module';
${code}
const names = Object.keys(createRequire(import.meta.url).cache).map((p) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(p)?.[1]).filter((n) => n !== undefined);
process.stdout.write(JSON.stringify([...new Set(names)].sort()));`;
  const out = await new Promise<string>((res, rej) => {
    execFile(process.execPath, ['--input-type=module', '-e', program], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      err === null ? res(stdout) : rej(new Error(`${err.message}\n${stderr}`)),
    );
  });
  return JSON.parse(out) as string[];
}
