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
  readonly alias?: string;
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

export const COMMON_FLAGS: FlagTable<CommonConfig> = {
  clusterName: { name: 'cluster-name', description: 'cluster name', type: 'string', required: true },
  storeBackend: {
    name: 'store-backend',
    description:
      'store backend type: etcdv3, consul, or kubernetes (ConfigMap and Leases in one namespace; needs --kube-resource-kind configmap)',
    type: 'string',
    required: true,
    choices: ['etcdv3', 'consul', 'kubernetes'],
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

/**
 * Adds the table's flags to a yargs instance; defaults come from `env` (the ST*_ variable) when
 * set, so explicit flags win over the environment and the environment over built-in defaults.
 * @throws ConfigError when an environment value for a number/boolean flag does not parse.
 */
export function addFlags<C>(y: Argv, table: FlagTable<C>, envPrefix: string, env: NodeJS.ProcessEnv): Argv {
  let out = y;
  for (const spec of Object.values(table) as FlagSpec[]) {
    const fromEnv = env[envName(envPrefix, spec.name)];
    let def: string | number | boolean | undefined = spec.default;
    if (fromEnv !== undefined && fromEnv !== '') {
      if (spec.type === 'number') {
        def = Number(fromEnv);
        if (!Number.isFinite(def)) {
          throw new ConfigError(`${envName(envPrefix, spec.name)}: "${fromEnv}" is not a number`, {
            field: spec.name,
          });
        }
      } else if (spec.type === 'boolean') {
        if (!['true', 'false', '1', '0'].includes(fromEnv)) {
          throw new ConfigError(`${envName(envPrefix, spec.name)}: "${fromEnv}" is not true or false`, {
            field: spec.name,
          });
        }
        def = fromEnv === 'true' || fromEnv === '1';
      } else {
        def = fromEnv;
      }
    }
    out = out.option(spec.name, {
      describe:
        spec.description +
        (spec.secretFile ? ' (a file path; the secret itself is never a flag)' : '') +
        ` [env ${envName(envPrefix, spec.name)}]`,
      type: spec.type,
      ...(def !== undefined ? { default: def } : {}),
      ...(spec.choices ? { choices: [...spec.choices] } : {}),
      ...(spec.alias ? { alias: spec.alias } : {}),
      ...(spec.required && def === undefined ? { demandOption: `--${spec.name} (or ${envName(envPrefix, spec.name)}) is required` } : {}),
    });
  }
  return out;
}

/** Picks the table's values out of parsed yargs arguments into a typed config object. */
export function pickFlags<C>(argv: Record<string, unknown>, table: FlagTable<C>): C {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table) as [string, FlagSpec][]) {
    out[key] = argv[spec.name] ?? argv[camel(spec.name)];
  }
  return out as C;
}

/** A yargs instance for a program, strict about unknown flags, with fix-it errors. */
export function baseYargs(args: readonly string[], scriptName: string): Argv {
  return yargs([...args])
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
