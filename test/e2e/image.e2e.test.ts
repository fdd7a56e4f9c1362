/**
 * images/Dockerfile, checked without building it (this machine has no Docker engine):
 * dockerfile-utils' validator (the diagnostics of the Docker language server: unknown
 * instructions, bad arguments, flags, ports, signals, JSON form…) must report nothing, and our own
 * rules hold — base images pinned to a version tag, a non-root USER in the final stage, tini as
 * the ENTRYPOINT, no ENV/ARG that looks like a secret, the four programs wired to the packages that
 * declare them, every `ST*_` variable one the programs accept, every COPY source present.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { validate, ValidationSeverity } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { PROGRAMS, helpNamesEnv, programHelp, type ProgramName } from './program-help.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DOCKERFILE = join(REPO, 'images/Dockerfile');
const text = readFileSync(DOCKERFILE, 'utf8');
const dockerfile = DockerfileParser.parse(text);

/** `ARG` defaults declared before the first FROM (the only ones a FROM line can use). */
const globalArgs = new Map(
  dockerfile.getInitialARGs().map((a) => [a.getProperty()?.getName() ?? '', a.getProperty()?.getValue() ?? ''] as const),
);

/** `${VAR}` / `$VAR` replaced by the global ARG defaults. */
function expand(s: string): string {
  return s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => globalArgs.get(a ?? b ?? '') ?? '');
}

interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** The build stages in order, each with its instructions (split at FROM). */
const stages: Stage[] = [];
for (const ins of dockerfile.getInstructions()) {
  if (ins.getKeyword() === 'FROM') {
    const f = dockerfile.getFROMs().find((x) => x.getRange().start.line === ins.getRange().start.line);
    stages.push({ from: expand(f?.getImage() ?? ''), name: f?.getBuildStage() ?? undefined, instructions: [] });
  } else if (stages.length > 0) {
    stages[stages.length - 1]!.instructions.push(ins);
  }
}
const finalStage = stages[stages.length - 1]!;
const args = (i: Instruction) => i.getArgumentsContent() ?? '';
/** An instruction's arguments with its flags (`--from=build …`), whitespace-normalised. */
const fullArgs = (i: Instruction) => i.getTextContent().replace(/\\\n/g, ' ').replace(/\s+/g, ' ').replace(/^\S+ /, '').trim();
const of = (s: Stage, keyword: string) => s.instructions.filter((i) => i.getKeyword() === keyword);

describe('images/Dockerfile', () => {
  it('passes the dockerfile-utils validator with every optional rule raised to an error', () => {
    const E = ValidationSeverity.ERROR;
    const diagnostics = validate(text, {
      deprecatedMaintainer: E,
      directiveCasing: E,
      emptyContinuationLine: E,
      instructionCasing: E,
      instructionCmdMultiple: E,
      instructionEntrypointMultiple: E,
      instructionHealthcheckMultiple: E,
      instructionJSONInSingleQuotes: E,
      instructionWorkdirRelative: E,
    });
    expect(diagnostics.map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it('is multi-stage: a Node 20 bookworm build stage, the final stage on the official postgres 15 bookworm image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]!.from).toBe('node:20-bookworm-slim');
    expect(finalStage.from).toBe('postgres:15-bookworm');
    // The node binary copied into the runtime comes from the build stage (same Debian release).
    expect(of(finalStage, 'COPY').map(fullArgs)).toContain(`--from=${stages[0]!.name ?? ''} /usr/local/bin/node /usr/local/bin/node`);
  });

  it('pins every base image to a version tag (or a digest), never latest', () => {
    const stageNames = new Set(stages.map((s) => s.name).filter((n) => n !== undefined));
    for (const s of stages) {
      if (stageNames.has(s.from)) {
        continue;
      }
      const digest = /@sha256:[0-9a-f]{64}$/.test(s.from);
      const tag = /^[^@]+:([^:/@]+)$/.exec(s.from)?.[1];
      expect(digest || (tag !== undefined && tag !== 'latest' && /\d/.test(tag)), `FROM ${s.from}`).toBe(true);
    }
  });

  it('runs the final stage as a non-root, numeric user', () => {
    const users = of(finalStage, 'USER').map(args);
    const last = users[users.length - 1];
    expect(last, 'final stage has no USER').toBeDefined();
    const [user, group] = (last ?? '').split(':');
    expect(user).toMatch(/^\d+$/); // numeric: Kubernetes' runAsNonRoot can check it without a runAsUser
    expect(Number(user)).not.toBe(0);
    expect(group === undefined || Number(group) !== 0).toBe(true);
  });

  it('has tini as the ENTRYPOINT (PID 1 forwards signals and reaps a postmaster killed with -9)', () => {
    const eps = of(finalStage, 'ENTRYPOINT').map(args);
    expect(eps).toHaveLength(1);
    const argv = JSON.parse(eps[0] ?? '[]') as string[]; // exec form: no shell between tini and the kernel
    expect(argv[0]).toMatch(/(^|\/)tini$/);
    expect(of(finalStage, 'RUN').map(args).join('\n')).toMatch(/apt-get install [^\n]*\btini\b/);
  });

  it('bakes in no secret: no ENV or ARG named like a password, secret, token or key', () => {
    const names = [
      ...dockerfile.getENVs().flatMap((e) => e.getProperties().map((p) => p.getName())),
      ...dockerfile.getARGs().map((a) => a.getProperty()?.getName() ?? ''),
    ];
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => /pass(word|wd)?|secret|token|api_?key|private_?key|credential/i.test(n))).toEqual([]);
    expect(text).not.toMatch(/PGPASSWORD|--pg-su-password[^-]|password=/i);
  });

  it('puts the four programs on PATH, each wired to the package whose package.json declares that bin', () => {
    const run = of(finalStage, 'RUN').map(args).join('\n');
    const pairs = [...run.matchAll(/\b(\w+):(stolon-\w+|stolonctl)\b/g)].map((m) => [m[1] ?? '', m[2] ?? ''] as const);
    expect(pairs.map(([, p]) => p).sort()).toEqual(Object.keys(PROGRAMS).sort());
    for (const [dir, program] of pairs) {
      const pkg = JSON.parse(readFileSync(join(REPO, 'packages', dir, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
      expect(pkg.bin?.[program], `packages/${dir}/package.json bin ${program}`).toBe('./dist/bin.js');
      expect(run).toContain('/opt/stolon-ts/packages/%s/dist/bin.js');
    }
  });

  it('sets only ST*_ variables the programs accept', () => {
    for (const env of dockerfile.getENVs()) {
      for (const p of env.getProperties()) {
        const name = p.getName();
        const program = (Object.keys(PROGRAMS) as ProgramName[]).find((k) => name.startsWith(`${PROGRAMS[k].envPrefix}_`));
        if (program !== undefined) {
          expect(helpNamesEnv(programHelp(program), name), `${name} is not in ${program} --help`).toBe(true);
        }
      }
    }
  });

  it('copies only sources that exist, and the build context leaves out node_modules, dist and .git', () => {
    for (const s of stages) {
      for (const c of of(s, 'COPY')) {
        const parts = fullArgs(c).split(' ');
        if (parts[0]?.startsWith('--from=') === true) {
          continue;
        }
        for (const src of parts.slice(0, -1)) {
          expect(existsSync(join(REPO, src)), `COPY source ${src}`).toBe(true);
        }
      }
    }
    const ignore = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    expect(ignore).toEqual(expect.arrayContaining(['**/node_modules', '**/dist', '.git']));
  });
});
