/** Builds the store from the common flags. */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, parseDurationMs } from '@stolon-ts/cluster';
import { createStore, type EtcdAuthOptions, type EtcdTlsOptions, type Store } from '@stolon-ts/store';
import { envName, parseEndpoints, readSecret, type CommonConfig } from './flags.js';

function given(v: string | undefined): v is string {
  return v !== undefined && v !== '';
}

/** Reads a PEM file named by `--<flag>`. @throws ConfigError naming the flag. */
function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`--${flag}: cannot read ${file}: ${(err as Error).message}`, { field: flag, cause: err });
  }
}

/**
 * The TLS material the `--store-ca-file`, `--store-cert-file`, `--store-key` and
 * `--store-skip-tls-verify` flags name, read and checked (each certificate parses, the key parses
 * and belongs to the certificate) so a mistake is reported at startup, naming the flag.
 * @returns undefined when no TLS flag is given (https:// endpoints then use the system CAs).
 * @throws ConfigError naming the flag at fault.
 */
function storeTls(c: CommonConfig): EtcdTlsOptions | undefined {
  const skipVerify = c.storeSkipTlsVerify === true;
  if (!given(c.storeCaFile) && !given(c.storeCertFile) && !given(c.storeKey) && !skipVerify) {
    return undefined;
  }
  let ca: Buffer | undefined;
  if (given(c.storeCaFile)) {
    ca = readPem(c.storeCaFile, 'store-ca-file');
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new ConfigError(`--store-ca-file: ${c.storeCaFile} is not a PEM certificate (${(err as Error).message}); give the CA that signed etcd's server certificate`, {
        field: 'store-ca-file',
        cause: err,
      });
    }
  }
  if (given(c.storeCertFile) !== given(c.storeKey)) {
    const missing = given(c.storeCertFile) ? 'store-key' : 'store-cert-file';
    throw new ConfigError(`--${missing} is missing: --store-cert-file and --store-key go together (the client certificate and its private key)`, {
      field: missing,
    });
  }
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  if (given(c.storeCertFile) && given(c.storeKey)) {
    cert = readPem(c.storeCertFile, 'store-cert-file');
    key = readPem(c.storeKey, 'store-key');
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert);
    } catch (err) {
      throw new ConfigError(`--store-cert-file: ${c.storeCertFile} is not a PEM certificate (${(err as Error).message})`, { field: 'store-cert-file', cause: err });
    }
    let keyObject: KeyObject;
    try {
      keyObject = createPrivateKey(key);
    } catch {
      // The parser's message could quote the file; say only what is wrong.
      throw new ConfigError(`--store-key: ${c.storeKey} is not an unencrypted PEM private key`, { field: 'store-key' });
    }
    if (!x509.checkPrivateKey(keyObject)) {
      throw new ConfigError(`--store-key: ${c.storeKey} does not match the certificate in --store-cert-file ${c.storeCertFile}; give the key that belongs to it`, {
        field: 'store-key',
      });
    }
  }
  return { ca, cert, key, skipVerify };
}

/**
 * etcd credentials from `--store-user` and `--store-password-file` (or `<envPrefix>_STORE_PASSWORD`).
 * @returns undefined without `--store-user`.
 * @throws ConfigError naming `store-password-file` when the user has no password, or
 *   `store-user` when a password is given without a user.
 */
function storeAuth(c: CommonConfig, envPrefix: string, env: NodeJS.ProcessEnv): EtcdAuthOptions | undefined {
  const passwordVar = envName(envPrefix, 'store-password');
  if (!given(c.storeUser)) {
    if (given(c.storePasswordFile) || given(env[passwordVar])) {
      throw new ConfigError(`--store-user is missing: a store password was given (--store-password-file or ${passwordVar}) but no etcd user name`, {
        field: 'store-user',
      });
    }
    return undefined;
  }
  return { username: c.storeUser, password: readSecret(c.storePasswordFile, passwordVar, 'store-password-file', env) };
}

/** `--store-endpoints` when none is given, per backend (Stolon's defaults). */
const DEFAULT_ETCD_ENDPOINT = 'http://127.0.0.1:2379';
const DEFAULT_CONSUL_ENDPOINT = 'http://127.0.0.1:8500';

/**
 * The Consul ACL token: `--store-token-file`, else `<PREFIX>_STORE_TOKEN`; none when neither.
 * @throws ConfigError (`store-token-file`) when given with another backend than consul, or the
 *   file cannot be read or is empty.
 */
function storeToken(c: CommonConfig, envPrefix: string, env: NodeJS.ProcessEnv): string | undefined {
  const tokenVar = envName(envPrefix, 'store-token');
  if (!given(c.storeTokenFile) && !given(env[tokenVar])) {
    return undefined;
  }
  if (c.storeBackend !== 'consul') {
    throw new ConfigError(`--store-token-file (or ${tokenVar}) is a Consul ACL token, but --store-backend is ${c.storeBackend}; drop it (etcd takes --store-user and --store-password-file)`, {
      field: 'store-token-file',
    });
  }
  return readSecret(c.storeTokenFile, tokenVar, 'store-token-file', env);
}

/**
 * Checks the common flags and creates the store client they describe (`--store-endpoints` and the
 * TLS flags are used for etcdv3 and consul, `--store-user` and its password for etcdv3, the ACL
 * token for consul: the kubernetes backend ignores them all, it takes its credentials from the
 * kubeconfig or the pod's service account). Nothing is sent to the store yet; files named by
 * flags are read now, and the chosen backend's client library is imported (only that one). Without `--store-endpoints`: http://127.0.0.1:2379 (etcdv3) or
 * http://127.0.0.1:8500 (consul), as in Stolon.
 * @param envPrefix the program's environment prefix (`STKEEPER`, `STSENTINEL`, `STPROXY`,
 *   `STOLONCTL`): the etcd password may come from `<envPrefix>_STORE_PASSWORD`, the Consul token
 *   from `<envPrefix>_STORE_TOKEN`.
 * @param env the environment to read it from. @default process.env
 * @returns a promise of the store; errors reject it.
 * @throws ConfigError naming the flag (cluster-name, store-backend, store-endpoints, store-timeout,
 *   store-ca-file, store-cert-file, store-key, store-user, store-password-file, store-token-file,
 *   kube-resource-kind, kubeconfig, kube-context, kube-namespace).
 */
export async function storeFromConfig(c: CommonConfig, envPrefix: string, env: NodeJS.ProcessEnv = process.env): Promise<Store> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(c.clusterName)) {
    throw new ConfigError(
      `--cluster-name: "${c.clusterName}" must be letters, digits, '-', '_' or '.', starting with a letter or digit`,
      { field: 'cluster-name' },
    );
  }
  const timeoutMs = parseDurationMs(c.storeTimeout);
  if (timeoutMs === undefined || timeoutMs <= 0) {
    throw new ConfigError(`--store-timeout: "${c.storeTimeout}" is not a positive duration such as 5s`, {
      field: 'store-timeout',
    });
  }
  const kv = c.storeBackend !== 'kubernetes';
  const tls = kv ? storeTls(c) : undefined;
  const auth = c.storeBackend === 'etcdv3' ? storeAuth(c, envPrefix, env) : undefined;
  const token = storeToken(c, envPrefix, env);
  const endpoints = given(c.storeEndpoints) ? c.storeEndpoints : c.storeBackend === 'consul' ? DEFAULT_CONSUL_ENDPOINT : DEFAULT_ETCD_ENDPOINT;
  return await createStore({
    backend: c.storeBackend,
    endpoints: kv ? parseEndpoints(endpoints) : [],
    clusterName: c.clusterName,
    prefix: c.storePrefix,
    timeoutMs,
    ...(tls !== undefined ? { tls } : {}),
    ...(auth !== undefined ? { auth } : {}),
    ...(token !== undefined ? { token } : {}),
    kubeResourceKind: c.kubeResourceKind,
    kubeconfig: c.kubeconfig,
    kubeContext: c.kubeContext,
    kubeNamespace: c.kubeNamespace,
  });
}
