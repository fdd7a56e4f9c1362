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

/**
 * Checks the common flags and creates the store client they describe (`--store-endpoints` and the
 * TLS and authentication flags are only used for etcdv3: the kubernetes backend ignores them, it
 * takes its credentials from the kubeconfig or the pod's service account). Nothing is sent to
 * the store yet; files named by flags are read now.
 * @param envPrefix the program's environment prefix (`STKEEPER`, `STSENTINEL`, `STPROXY`,
 *   `STOLONCTL`): the etcd password may come from `<envPrefix>_STORE_PASSWORD`.
 * @param env the environment to read it from. @default process.env
 * @throws ConfigError naming the flag (cluster-name, store-backend, store-endpoints, store-timeout,
 *   store-ca-file, store-cert-file, store-key, store-user, store-password-file,
 *   kube-resource-kind, kubeconfig, kube-context, kube-namespace).
 */
export function storeFromConfig(c: CommonConfig, envPrefix: string, env: NodeJS.ProcessEnv = process.env): Store {
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
  const etcd = c.storeBackend !== 'kubernetes';
  const tls = etcd ? storeTls(c) : undefined;
  const auth = etcd ? storeAuth(c, envPrefix, env) : undefined;
  return createStore({
    backend: c.storeBackend,
    endpoints: etcd ? parseEndpoints(c.storeEndpoints) : [],
    clusterName: c.clusterName,
    prefix: c.storePrefix,
    timeoutMs,
    ...(tls !== undefined ? { tls } : {}),
    ...(auth !== undefined ? { auth } : {}),
    kubeResourceKind: c.kubeResourceKind,
    kubeconfig: c.kubeconfig,
    kubeContext: c.kubeContext,
    kubeNamespace: c.kubeNamespace,
  });
}
