/**
 * What a program accepts, read from its own `--help` (the built bins, as an operator sees them):
 * flag names with their short aliases, types and choices, and every `ST*_` environment variable
 * the help names. The image and manifest tests check what they pass to the programs against it.
 */
import { execFileSync } from 'node:child_process';
import { binPath } from '@stolon-ts/harness';

/** The four programs by their command names (what the image puts on PATH). */
export const PROGRAMS = {
  'stolon-keeper': { component: 'keeper', envPrefix: 'STKEEPER' },
  'stolon-sentinel': { component: 'sentinel', envPrefix: 'STSENTINEL' },
  'stolon-proxy': { component: 'proxy', envPrefix: 'STPROXY' },
  stolonctl: { component: 'stolonctl', envPrefix: 'STOLONCTL' },
} as const;

/** A program's command name. */
export type ProgramName = keyof typeof PROGRAMS;

/** One flag as `--help` lists it. */
interface HelpFlag {
  readonly name: string;
  readonly alias: string | undefined;
  readonly type: string | undefined;
  /** Allowed values, when the help lists `[choices: …]`. */
  readonly choices: readonly string[] | undefined;
}

/** A program's (or subcommand's) help, parsed. */
export interface ProgramHelp {
  readonly text: string;
  /** Long flag name (or long alias, e.g. Stolon's `pg-su-passwordfile`) → flag. */
  readonly flags: ReadonlyMap<string, HelpFlag>;
  /** Subcommand names (stolonctl), from the `Commands:` section. */
  readonly commands: readonly string[];
}

const cache = new Map<string, ProgramHelp>();

/**
 * Runs `<program> [subcommand] --help` with no `ST*_` variables in the environment and parses it.
 * @throws Error when the program exits non-zero (not built? run `npm run build`).
 */
export function programHelp(program: ProgramName, subcommand?: string): ProgramHelp {
  const key = `${program} ${subcommand ?? ''}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    return hit;
  }
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^ST(KEEPER|SENTINEL|PROXY|OLONCTL)_/.test(k)));
  const text = execFileSync(process.execPath, [binPath(PROGRAMS[program].component), ...(subcommand !== undefined ? [subcommand] : []), '--help'], {
    encoding: 'utf8',
    env: { ...env, COLUMNS: '200' },
  });
  const parsed = parseHelp(text);
  cache.set(key, parsed);
  return parsed;
}

/** Parses yargs help text: `Options:` entries (continuation lines joined) and `Commands:` names. */
function parseHelp(text: string): ProgramHelp {
  const flags = new Map<string, HelpFlag>();
  const commands: string[] = [];
  const entries: string[] = [];
  let section = '';
  for (const line of text.split('\n')) {
    if (/^\S.*:$/.test(line)) {
      section = line;
      continue;
    }
    if (section === 'Options:') {
      if (/^\s{1,8}(-\w, )?--[a-z]/.test(line)) {
        entries.push(line.trim());
      } else if (line.trim() !== '' && entries.length > 0) {
        entries[entries.length - 1] += ` ${line.trim()}`;
      }
    } else if (section === 'Commands:') {
      const m = /^\s+\S+\s+([a-z-]+)/.exec(line);
      if (m?.[1] !== undefined) {
        commands.push(m[1]);
      }
    }
  }
  for (const e of entries) {
    // `-f, --format` or `--pg-su-password-file, --pg-su-passwordfile` (a long alias: Stolon's spelling).
    const m = /^(?:-(\w), )?--([a-z0-9-]+)((?:, --[a-z0-9-]+)*)/.exec(e);
    if (m?.[2] === undefined) {
      continue;
    }
    const choices = /\[choices: ((?:"[^"]*"(?:, )?)+)\]/.exec(e)?.[1];
    const flag: HelpFlag = {
      name: m[2],
      alias: m[1],
      type: /\[(string|number|boolean|array)\]/.exec(e)?.[1],
      choices: choices === undefined ? undefined : [...choices.matchAll(/"([^"]*)"/g)].map((c) => c[1] ?? ''),
    };
    for (const name of [m[2], ...[...(m[3] ?? '').matchAll(/--([a-z0-9-]+)/g)].map((a) => a[1] ?? '')]) {
      flags.set(name, flag);
    }
  }
  return { text, flags, commands };
}

/**
 * Flag name of an `ST<PREFIX>_<NAME>` variable per the programs' rule (`envName` in
 * packages/common/src/flags.ts): lower case, `_` → `-`.
 */
export function flagOfEnv(envVar: string, prefix: string): string | undefined {
  return envVar.startsWith(`${prefix}_`) ? envVar.slice(prefix.length + 1).toLowerCase().replace(/_/g, '-') : undefined;
}

/** Whether the help text names this environment variable as a whole word (e.g. `STKEEPER_PG_SU_PASSWORD`). */
export function helpNamesEnv(help: ProgramHelp, envVar: string): boolean {
  return new RegExp(`(^|[^A-Z0-9_])${envVar}([^A-Z0-9_]|$)`).test(help.text);
}
