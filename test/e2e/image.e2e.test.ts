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

/**
 * The Debian packages that provide each tool the proxy's native build runs (build-essential
 * brings make, gcc, g++ and libc6-dev; python3 is separate).
 */
const TOOL_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  python3: ['python3'],
  make: ['make', 'build-essential'],
  cc: ['gcc', 'build-essential'],
  gcc: ['gcc', 'build-essential'],
  'g++': ['g++', 'build-essential'],
  'the C library headers': ['libc6-dev', 'build-essential'],
};

/** GNU make's built-in values of the variables node-gyp's Makefile leaves to make. */
const MAKE_DEFAULTS: Readonly<Record<string, string>> = { CC: 'cc', CXX: 'g++' };

/** The packages `apt-get install` names in a stage's RUN instructions. */
function aptInstalled(stage: Stage): string[] {
  const run = of(stage, 'RUN').map(args).join('\n').replace(/\\\n/g, ' ');
  return [...run.matchAll(/apt-get install((?:\s+[^\s&;|]+)+)/g)].flatMap((m) => (m[1] ?? '').trim().split(/\s+/)).filter((w) => !w.startsWith('-'));
}

/**
 * The program a node-gyp Makefile variable runs, followed through its `VAR ?= $(OTHER)` lines
 * (e.g. LINK.target → $(LINK) → $(CXX.target) → $(CXX) → make's default, g++).
 */
function makeProgram(makefile: string, name: string, depth = 0): string {
  const line = new RegExp(`^${name.replace(/\./g, '\\.')}\\s*[?:]?=\\s*(.*)$`, 'm').exec(makefile);
  const value = line?.[1]?.trim().split(/\s+/)[0];
  if (value === undefined) {
    const fallback = MAKE_DEFAULTS[name];
    if (fallback === undefined) {
      throw new Error(`node-gyp's Makefile does not set ${name}`);
    }
    return fallback;
  }
  const ref = /^\$\(([\w.]+)\)$/.exec(value)?.[1];
  return ref !== undefined && depth < 10 ? makeProgram(makefile, ref, depth + 1) : value;
}

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

  it('is multi-stage: a Node 24 (LTS) bookworm build stage, the final stage on the official postgres 15 bookworm image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]!.from).toMatch(/^node:24-bookworm-slim@sha256:[0-9a-f]{64}$/);
    expect(finalStage.from).toMatch(/^postgres:15-bookworm@sha256:[0-9a-f]{64}$/);
    expect(globalArgs.get('PG_MAJOR')).toBe('15');
    // The node binary copied into the runtime comes from the build stage (same Debian release).
    expect(of(finalStage, 'COPY').map(fullArgs)).toContain(`--from=${stages[0]!.name ?? ''} /usr/local/bin/node /usr/local/bin/node`);
  });

  it('takes each base image from a build argument whose default is pinned by digest (a tag alone is mutable)', () => {
    const stageNames = new Set(stages.map((s) => s.name).filter((n) => n !== undefined));
    const fromArgs = dockerfile.getFROMs().map((f) => f.getImage() ?? '').filter((image) => !stageNames.has(image));
    expect(fromArgs).toEqual(['${NODE_IMAGE}', '${POSTGRES_IMAGE}']);
    for (const s of stages) {
      if (stageNames.has(s.from)) {
        continue;
      }
      const tag = /^[^@:]+:([^:/@]+)@sha256:[0-9a-f]{64}$/.exec(s.from)?.[1];
      expect(tag !== undefined && tag !== 'latest' && /\d/.test(tag), `FROM ${s.from}: a version tag and a digest`).toBe(true);
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

  it('installs pgBackRest in the runtime stage and the build fails if it does not run (the keeper runs it for the spec\'s backup section)', () => {
    expect(aptInstalled(finalStage)).toContain('pgbackrest');
    expect(of(finalStage, 'RUN').map(args).join('\n')).toMatch(/\bpgbackrest version\b/);
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

  it('installs every tool the native build needs: the programs node-gyp\'s Makefile runs, python3, make, the libc headers', () => {
    const build = stages.find((st) => of(st, 'RUN').some((r) => args(r).includes('build:native')));
    expect(build, 'the stage that runs build:native').toBeDefined();
    const installed = new Set(aptInstalled(build!));
    // node-gyp writes this Makefile when `npm run build` builds the addon (npm test builds first).
    const makefilePath = join(REPO, 'packages/proxy/build/Makefile');
    expect(existsSync(makefilePath), 'packages/proxy/build/Makefile: run `npm run build` first').toBe(true);
    const makefile = readFileSync(makefilePath, 'utf8');
    const gyp = JSON.parse(readFileSync(join(REPO, 'packages/proxy/binding.gyp'), 'utf8')) as { targets: { sources: string[] }[] };
    const sources = gyp.targets.flatMap((t) => t.sources);
    // The rules node-gyp uses: cmd_cc for .c, cmd_cxx for .cc/.cpp, cmd_solink_module to link the addon.
    expect(makefile).toMatch(/^cmd_cc = \$\(CC\.\$\(TOOLSET\)\)/m);
    expect(makefile).toMatch(/^cmd_solink_module = \$\(LINK\.\$\(TOOLSET\)\)/m);
    const tools = new Set(['python3', 'make', 'the C library headers', makeProgram(makefile, 'LINK.target')]);
    if (sources.some((f) => f.endsWith('.c'))) {
      tools.add(makeProgram(makefile, 'CC.target'));
    }
    if (sources.some((f) => /\.(cc|cpp|cxx)$/.test(f))) {
      tools.add(makeProgram(makefile, 'CXX.target'));
    }
    expect(tools).toContain('g++'); // node-gyp links with $(CXX): the defect of issue #16
    for (const tool of tools) {
      const pkgs = TOOL_PACKAGES[tool];
      expect(pkgs, `no Debian package known for ${tool}`).toBeDefined();
      expect(pkgs!.some((p) => installed.has(p)), `the build stage installs none of ${pkgs!.join(', ')} (for ${tool})`).toBe(true);
    }
    // CC or CXX set in the image would change which programs run; the checks above assume make's defaults.
    expect(dockerfile.getENVs().flatMap((e) => e.getProperties().map((p) => p.getName()))).not.toEqual(expect.arrayContaining(['CC']));
    expect(dockerfile.getENVs().flatMap((e) => e.getProperties().map((p) => p.getName()))).not.toEqual(expect.arrayContaining(['CXX']));
  });

  it('scripts/setup.sh installs the same compilers for the host build (gcc and g++)', () => {
    const setup = readFileSync(join(REPO, 'scripts/setup.sh'), 'utf8');
    expect(setup).toMatch(/need_apt\+=\(gcc\)/);
    expect(setup).toMatch(/need_apt\+=\(g\+\+\)/);
  });
});
