/**
 * One typed flag table per program drives yargs, the `ST<COMPONENT>_*` environment fallback and
 * the generated docs (docs/design.md#flag-tables). Flag names are Stolon's (its `cmd/common.go`
 * and each program's `cmd/<program>/cmd/*.go`), so Stolon command lines keep working. Secrets are
 * only ever file paths or environment variables, never values on the command line.
 */
import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { ConfigError } from '@stolon-ts/cluster';

/** One flag's declaration. */
export interface FlagSpec {
  /** Kebab-case flag name, e.g. `cluster-name`. */
  readonly name: string;
  readonly description: string;
  readonly type: 'string' | 'number' | 'boolean';
  readonly default?: string | number | boolean;
  readonly required?: boolean;
  /** Allowed values, checked after parsing. */
  readonly choices?: readonly string[];
  /** True for paths to files holding secrets (documentation only; the value is a path). */
  readonly secretFile?: boolean;
  /**
   * Stolon's spelling of this flag where it differs from ours (e.g. `pg-su-passwordfile` for
   * `pg-su-password-file`): accepted on the command line, and as `<PREFIX>_<ALIAS>` in the
   * environment, with the same meaning.
   */
  readonly alias?: string;
  /**
   * Values refused with the reason and what to use instead (e.g. Stolon's `etcdv2` backend),
   * checked before `choices` so the message is ours, whether the value came from the command line
   * or the environment.
   */
  readonly refusedValues?: Readonly<Record<string, string>>;
}

/** A table keyed by the config field; a mapped type makes a missing entry a compile error. */
export type FlagTable<C> = { readonly [K in keyof C]-?: FlagSpec };

/**
 * Flags every daemon and stolonctl take. The `--kube-*` flags are Stolon's (`--kube-resource-kind`
 * on every program; `--kubeconfig`, `--kube-context`, `--kube-namespace` on stolonctl only in
 * Stolon, on all four here, so a daemon outside the cluster can be pointed at it).
 */
export interface CommonConfig {
  clusterName: string;
  storeBackend: string;
  storeEndpoints: string | undefined;
  storePrefix: string;
  storeTimeout: string;
  storeCaFile: string | undefined;
  storeCertFile: string | undefined;
  storeKey: string | undefined;
  storeSkipTlsVerify: boolean;
  storeUser: string | undefined;
  storePasswordFile: string | undefined;
  storeTokenFile: string | undefined;
  kubeResourceKind: string | undefined;
  kubeconfig: string | undefined;
  kubeContext: string | undefined;
  kubeNamespace: string | undefined;
  logLevel: string;
}

const V2_REFUSAL =
  "is Stolon's etcd v2 API backend, which is not supported: use --store-backend etcdv3 (etcd 3.x serves the v3 API; a Stolon cluster's v2 keys are not read, see docs/differences-from-stolon.md)";

/** Stolon's names of its etcd v2 backend (`etcd` is its old alias of `etcdv2`), refused. */
const STOLON_V2_BACKENDS: Readonly<Record<string, string>> = { etcdv2: V2_REFUSAL, etcd: V2_REFUSAL };

export const COMMON_FLAGS: FlagTable<CommonConfig> = {
  clusterName: { name: 'cluster-name', description: 'cluster name', type: 'string', required: true },
  storeBackend: {
    name: 'store-backend',
    description:
      'store backend type: etcdv3, consul, or kubernetes (ConfigMap and Leases in one namespace; needs --kube-resource-kind configmap)',
    type: 'string',
    required: true,
    choices: ['etcdv3', 'consul', 'kubernetes'],
    refusedValues: STOLON_V2_BACKENDS,
  },
  storeEndpoints: {
    name: 'store-endpoints',
    description:
      'comma-separated list of store endpoints (default http://127.0.0.1:2379 for etcdv3, http://127.0.0.1:8500 for consul, as in Stolon; ignored with kubernetes, which finds the API server through the kubeconfig or the pod service account)',
    type: 'string',
  },
  storePrefix: { name: 'store-prefix', description: 'store key prefix (etcdv3, consul; ignored with kubernetes)', type: 'string', default: 'stolon/cluster' },
  storeTimeout: {
    name: 'store-timeout',
    description: 'store request timeout (duration, e.g. 5s)',
    type: 'string',
    default: '5s',
  },
  storeCaFile: {
    name: 'store-ca-file',
    description:
      'PEM file of the CA that signed the store\'s server certificate, checked on every https:// store connection (etcdv3; unset: the system CAs)',
    type: 'string',
  },
  storeCertFile: {
    name: 'store-cert-file',
    description: 'PEM client certificate presented to the store, for etcd --client-cert-auth (etcdv3; needs --store-key)',
    type: 'string',
  },
  storeKey: {
    name: 'store-key',
    description: 'PEM private key of --store-cert-file (etcdv3)',
    type: 'string',
    secretFile: true,
  },
  storeSkipTlsVerify: {
    name: 'store-skip-tls-verify',
    description:
      'do not verify the store\'s server certificate (etcdv3; anyone on the path can then read and rewrite clusterdata: for tests only)',
    type: 'boolean',
    default: false,
  },
  storeUser: {
    name: 'store-user',
    description: 'etcd user name, when etcd authentication is enabled (etcdv3; needs --store-password-file or the STORE_PASSWORD variable)',
    type: 'string',
  },
  storePasswordFile: {
    name: 'store-password-file',
    description: 'file holding the password of --store-user (or set the program\'s <PREFIX>_STORE_PASSWORD, e.g. STKEEPER_STORE_PASSWORD)',
    type: 'string',
    secretFile: true,
  },
  storeTokenFile: {
    name: 'store-token-file',
    description: 'file holding the Consul ACL token (consul; or set the program\'s <PREFIX>_STORE_TOKEN, e.g. STKEEPER_STORE_TOKEN)',
    type: 'string',
    secretFile: true,
  },
  kubeResourceKind: {
    name: 'kube-resource-kind',
    description: 'kind of object holding clusterdata with --store-backend kubernetes; must be configmap (required with that backend, as in Stolon)',
    type: 'string',
  },
  kubeconfig: {
    name: 'kubeconfig',
    description: 'kubeconfig file for --store-backend kubernetes (default: KUBECONFIG, else ~/.kube/config, else the pod service account)',
    type: 'string',
  },
  kubeContext: {
    name: 'kube-context',
    description: 'kubeconfig context for --store-backend kubernetes (default: the current-context)',
    type: 'string',
  },
  kubeNamespace: {
    name: 'kube-namespace',
    description:
      'namespace of the stolon objects with --store-backend kubernetes (default: the pod namespace in a pod, else the kubeconfig context namespace, else default)',
    type: 'string',
  },
  logLevel: {
    name: 'log-level',
    description: 'debug, info, warn or error',
    type: 'string',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error'],
  },
};

/** Environment variable of a flag: `<PREFIX>_<FLAG_NAME>`, e.g. STKEEPER_DATA_DIR. */
export function envName(prefix: string, flag: string): string {
  return `${prefix}_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** What a Stolon-only flag's value does here (all unset: nothing, e.g. Stolon's default). */
interface StolonFlagOutcome {
  /** Logged (daemons) or printed (stolonctl) once at startup. */
  readonly warn?: string;
  /** Refused: the reason and what to use instead; the program exits with it. */
  readonly error?: string;
  /** Other flags set by it (e.g. `--debug` sets `log-level` to `debug`). */
  readonly set?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * A flag Stolon has that is not one of ours under any name: it is accepted, so a Stolon command
 * line or environment still parses, and then either means the same (nothing to do), is ignored
 * with a warning because it cannot change what happens (`--log-color`), is translated
 * (`--debug`), or is refused with the flag and what to use instead. Never silently taken when it
 * would change behaviour we do not implement (docs/differences-from-stolon.md).
 */
export interface StolonOnlyFlag {
  /** Stolon's kebab-case flag name. */
  readonly name: string;
  readonly type: 'string' | 'boolean';
  /**
   * Only from the command line: `<PREFIX>_<NAME>` is not this flag's fallback but the secret's
   * own variable, read elsewhere (Stolon's `--pg-su-password` and STKEEPER_PG_SU_PASSWORD).
   */
  readonly argvOnly?: boolean;
  /** What a given value does; `argv` has the other flags, their environment fallbacks applied. */
  readonly outcome: (value: string | boolean, argv: Readonly<Record<string, unknown>>) => StolonFlagOutcome;
}

/** Stolon-only flags of a program, and where their warnings go. */
export interface StolonFlags {
  readonly flags: readonly StolonOnlyFlag[];
  /** Receives each warning; the caller logs or prints them once its logger exists. */
  readonly warnings: string[];
}

/** Boolean spellings in variables: Go's strconv.ParseBool's, which Stolon's variables go through. */
const TRUE_WORDS: readonly string[] = ['1', 't', 'T', 'true', 'TRUE', 'True'];
const FALSE_WORDS: readonly string[] = ['0', 'f', 'F', 'false', 'FALSE', 'False'];

/**
 * The environment value of a flag: `<PREFIX>_<NAME>`, else `<PREFIX>_<ALIAS>` (Stolon's
 * spelling), typed as the flag is.
 * @throws ConfigError when a number/boolean value does not parse, or when both variables are set
 *   to different values.
 */
function envValue(
  spec: { name: string; alias?: string | undefined; type: FlagSpec['type'] },
  envPrefix: string,
  env: NodeJS.ProcessEnv,
): string | number | boolean | undefined {
  const set = [spec.name, ...(spec.alias !== undefined ? [spec.alias] : [])]
    .map((n) => ({ variable: envName(envPrefix, n), value: env[envName(envPrefix, n)] }))
    .filter((e): e is { variable: string; value: string } => e.value !== undefined && e.value !== '');
  const first = set[0];
  if (first === undefined) {
    return undefined;
  }
  const second = set[1];
  if (second !== undefined && second.value !== first.value) {
    throw new ConfigError(`${first.variable} and ${second.variable} name the same setting with different values; set only one`, {
      field: spec.name,
    });
  }
  const { variable, value } = first;
  if (spec.type === 'number') {
    const n = Number(value);
    if (!Number.isFinite(n)) {
      throw new ConfigError(`${variable}: "${value}" is not a number`, { field: spec.name });
    }
    return n;
  }
  if (spec.type === 'boolean') {
    if (TRUE_WORDS.includes(value)) {
      return true;
    }
    if (FALSE_WORDS.includes(value)) {
      return false;
    }
    throw new ConfigError(`${variable}: "${value}" is not true or false`, { field: spec.name });
  }
  return value;
}

/** Sets a parsed flag in yargs' argv under its kebab and camelCase keys. */
function setArg(argv: Record<string, unknown>, name: string, value: unknown): void {
  argv[name] = value;
  argv[camel(name)] = value;
}

/**
 * `--flag=value` of boolean flags read with Go's spellings, as Stolon's flags are: yargs takes any
 * value but `true` as false (`--can-be-master=True` would silently be false).
 * @throws ConfigError naming the flag when the value is no boolean.
 */
function readBooleanArgs(argv: Record<string, unknown>, raw: readonly string[], booleans: ReadonlyMap<string, string>): void {
  for (const arg of raw) {
    if (arg === '--') {
      return;
    }
    const m = /^--([a-z0-9-]+)=(.*)$/.exec(arg);
    const name = m?.[1] === undefined ? undefined : booleans.get(m[1]);
    if (name === undefined || m?.[2] === undefined) {
      continue;
    }
    if (!TRUE_WORDS.includes(m[2]) && !FALSE_WORDS.includes(m[2])) {
      throw new ConfigError(`--${m[1]}=${m[2]}: not true or false`, { field: name });
    }
    setArg(argv, name, TRUE_WORDS.includes(m[2]));
  }
}

/**
 * Before yargs validates (choices, required): reads `--flag=value` of booleans as Go does, refuses
 * the table's `refusedValues`, and applies each given Stolon-only flag's outcome (throw, set, warn).
 * @throws ConfigError naming the flag and its environment variable.
 */
function stolonCheck<C>(argv: Record<string, unknown>, table: FlagTable<C>, envPrefix: string, stolon: StolonFlags | undefined, raw: readonly string[]): void {
  const booleans = new Map<string, string>();
  for (const f of [...(Object.values(table) as FlagSpec[]), ...(stolon?.flags ?? [])]) {
    if (f.type === 'boolean') {
      booleans.set(f.name, f.name);
      if ('alias' in f && f.alias !== undefined) {
        booleans.set(f.alias, f.name);
      }
    }
  }
  readBooleanArgs(argv, raw, booleans);
  for (const spec of Object.values(table) as FlagSpec[]) {
    const v = argv[spec.name];
    const refusal = typeof v === 'string' && spec.refusedValues !== undefined && Object.hasOwn(spec.refusedValues, v) ? spec.refusedValues[v] : undefined;
    if (refusal !== undefined) {
      throw new ConfigError(`--${spec.name} ${String(v)} (or ${envName(envPrefix, spec.name)}) ${refusal}`, { field: spec.name });
    }
  }
  for (const f of stolon?.flags ?? []) {
    const v = argv[f.name];
    if (typeof v !== 'string' && typeof v !== 'boolean') {
      continue;
    }
    const out = f.outcome(v, argv);
    const where = f.argvOnly === true ? `--${f.name}` : `--${f.name} (or ${envName(envPrefix, f.name)})`;
    if (out.error !== undefined) {
      throw new ConfigError(`${where}: ${out.error}`, { field: f.name });
    }
    for (const [name, value] of Object.entries(out.set ?? {})) {
      setArg(argv, name, value);
    }
    if (out.warn !== undefined) {
      stolon?.warnings.push(`${where}: ${out.warn}`);
    }
  }
}

/**
 * Adds the table's flags to a yargs instance; defaults come from `env` (the ST*_ variable, or the
 * one of the flag's Stolon alias) when set, so explicit flags win over the environment and the
 * environment over built-in defaults. With `stolon`, also Stolon's flags that are not ours (hidden
 * from the help but named in its closing sentence), checked as {@link StolonOnlyFlag} says before
 * yargs validates.
 * @throws ConfigError when an environment value for a number/boolean flag does not parse.
 */
export function addFlags<C>(y: Argv, table: FlagTable<C>, envPrefix: string, env: NodeJS.ProcessEnv, stolon?: StolonFlags): Argv {
  let out = y;
  for (const spec of Object.values(table) as FlagSpec[]) {
    const fromEnv = envValue(spec, envPrefix, env);
    const def = fromEnv ?? spec.default;
    const vars = [spec.name, ...(spec.alias !== undefined ? [spec.alias] : [])].map((n) => envName(envPrefix, n)).join(' or ');
    out = out.option(spec.name, {
      describe: spec.description + (spec.secretFile ? ' (a file path; the secret itself is never a flag)' : '') + ` [env ${vars}]`,
      type: spec.type,
      ...(def !== undefined ? { default: def } : {}),
      ...(spec.choices ? { choices: [...spec.choices] } : {}),
      ...(spec.alias ? { alias: spec.alias } : {}),
      ...(spec.required && def === undefined ? { demandOption: `--${spec.name} (or ${envName(envPrefix, spec.name)}) is required` } : {}),
    });
  }
  const stolonFlags = stolon?.flags ?? [];
  for (const f of stolonFlags) {
    const fromEnv = f.argvOnly === true ? undefined : envValue(f, envPrefix, env);
    // Hidden: listed once in the epilogue, described in docs/differences-from-stolon.md.
    out = out.option(f.name, { type: f.type, hidden: true, ...(fromEnv !== undefined ? { default: fromEnv } : {}) });
  }
  if (stolonFlags.length > 0) {
    const list = (fs: readonly StolonOnlyFlag[]): string => fs.map((f) => `--${f.name}`).join(', ');
    const secrets = stolonFlags.filter((f) => f.argvOnly === true);
    out = out.epilogue(
      `Stolon's flags not listed above are accepted too, with their ${envPrefix}_* variables: ` +
        `${list(stolonFlags.filter((f) => f.argvOnly !== true))}. Each means the same, is ignored with a warning, or is ` +
        'refused naming what to use instead' +
        (secrets.length > 0 ? `; ${list(secrets)} (a password on the command line) are refused` : '') +
        ' (docs/differences-from-stolon.md).',
    );
  }
  const raw = RAW_ARGS.get(y) ?? [];
  return out.middleware((argv) => stolonCheck(argv as Record<string, unknown>, table, envPrefix, stolon, raw), true);
}

/** Picks the table's values out of parsed yargs arguments into a typed config object. */
export function pickFlags<C>(argv: Record<string, unknown>, table: FlagTable<C>): C {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table) as [string, FlagSpec][]) {
    out[key] = argv[spec.name] ?? argv[camel(spec.name)];
  }
  return out as C;
}

/** The command line each {@link baseYargs} instance parses, for {@link readBooleanArgs}. */
const RAW_ARGS = new WeakMap<Argv, readonly string[]>();

/** A yargs instance for a program, strict about unknown flags, with fix-it errors. */
export function baseYargs(args: readonly string[], scriptName: string): Argv {
  const y = yargs([...args]);
  RAW_ARGS.set(y, args);
  return y
    .scriptName(scriptName)
    .strict()
    .parserConfiguration({ 'camel-case-expansion': true })
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110));
}

/**
 * Reads a secret from a file (trailing newline removed) or from an environment variable.
 * @param file path given by a `--…-password-file` flag
 * @param envVar fallback variable holding the secret itself (e.g. STKEEPER_PG_SU_PASSWORD)
 * @throws ConfigError naming `flag` when neither is given, the file cannot be read, or it is empty.
 */
export function readSecret(
  file: string | undefined,
  envVar: string,
  flag: string,
  env: NodeJS.ProcessEnv,
): string {
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`--${flag}: cannot read ${file}: ${(err as Error).message}`, { field: flag, cause: err });
    }
    const secret = text.replace(/\r?\n$/, '');
    if (secret === '') {
      throw new ConfigError(`--${flag}: ${file} is empty; put the password in it`, { field: flag });
    }
    return secret;
  }
  const fromEnv = env[envVar];
  if (fromEnv !== undefined && fromEnv !== '') {
    return fromEnv;
  }
  throw new ConfigError(`--${flag} is required (or set ${envVar}); passwords are never accepted as flags`, {
    field: flag,
  });
}

/**
 * Splits and checks `--store-endpoints`: comma list, one scheme (http or https), scheme-less
 * entries taken as http (as Stolon does).
 * @throws ConfigError naming `store-endpoints`.
 */
export function parseEndpoints(text: string): string[] {
  const parts = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => (/^[a-z]+:\/\//.test(s) ? s : `http://${s}`));
  if (parts.length === 0) {
    throw new ConfigError('--store-endpoints: empty; give e.g. http://127.0.0.1:2379', { field: 'store-endpoints' });
  }
  const schemes = new Set(parts.map((p) => p.split('://')[0]));
  for (const p of parts) {
    let url: URL;
    try {
      url = new URL(p);
    } catch {
      throw new ConfigError(`--store-endpoints: "${p}" is not a URL such as http://127.0.0.1:2379`, {
        field: 'store-endpoints',
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(`--store-endpoints: "${p}" must use http or https`, { field: 'store-endpoints' });
    }
  }
  if (schemes.size > 1) {
    throw new ConfigError('--store-endpoints: all endpoints must use the same scheme (http or https)', {
      field: 'store-endpoints',
    });
  }
  return parts;
}
