/**
 * Command-line parsing the benchmarks share: `node:util` `parseArgs` in strict mode, `--help`,
 * and validation that exits 2 with the usage (docs/design.md#benchmarks: a CLI exits 2 on a usage
 * error).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolvePgBinDir } from '@stolon-ts/postgres';

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

/** What {@link parseBenchArgs} returns for the option specs `O`. */
export interface BenchArgs<O extends OptionSpecs> {
  /** The parsed flags, typed from `O` (a flag with a default is never undefined). */
  readonly values: ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: false }>>['values'];
  /** Prints `bench:<name>: <msg>` and the usage on stderr and exits 2. */
  bad(msg: string): never;
  /** `raw` as an integer within [min, max], else {@link BenchArgs.bad}. */
  int(name: string, raw: string, min: number, max: number): number;
  /** The PostgreSQL binary directory for `--pg-bin-path` (`resolvePgBinDir`), else {@link BenchArgs.bad}. */
  pgBinDir(flag: string | undefined): string;
}

/**
 * Parses `argv` against `options` (plus `--help`, which prints `usage` and exits 0).
 * @param bench the benchmark's name, e.g. `clone`: errors read `bench:clone: <message>`.
 * @returns the parsed values and validators that exit 2 with the usage on a bad value ({@link BenchArgs}).
 */
export function parseBenchArgs<const O extends OptionSpecs>(bench: string, usage: string, argv: readonly string[], options: O): BenchArgs<O> {
  const bad = (msg: string): never => {
    process.stderr.write(`bench:${bench}: ${msg}\n${usage}\n`);
    process.exit(2);
  };
  let values: BenchArgs<O>['values'];
  try {
    const config = { args: [...argv], strict: true, allowPositionals: false, options: { ...options, help: { type: 'boolean', default: false } } } as const;
    values = parseArgs(config).values as BenchArgs<O>['values'];
  } catch (err) {
    return bad((err as Error).message);
  }
  if ((values as Record<string, unknown>)['help'] === true) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const int = (name: string, raw: string, min: number, max: number): number => {
    const n = Number(raw);
    return Number.isInteger(n) && n >= min && n <= max ? n : bad(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  };
  const pgBinDir = (flag: string | undefined): string => {
    try {
      return resolvePgBinDir({ flag });
    } catch (err) {
      return bad((err as Error).message);
    }
  };
  return { values, bad, int, pgBinDir };
}
