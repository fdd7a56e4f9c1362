/** `stolon-proxy` flags: Stolon's names and defaults, STPROXY_* fallbacks, one-line errors naming the flag. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@stolon-ts/cluster';
import { parseProxyArgs } from './flags.js';

const REQUIRED = ['--cluster-name', 'c1', '--store-backend', 'etcdv3'];

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) {
      return err;
    }
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('parseProxyArgs', () => {
  it('applies the defaults', () => {
    expect(parseProxyArgs(REQUIRED, {})).toEqual({
      clusterName: 'c1',
      storeBackend: 'etcdv3',
      storeEndpoints: 'http://127.0.0.1:2379',
      storePrefix: 'stolon/cluster',
      storeTimeout: '5s',
      logLevel: 'info',
      listenAddress: '127.0.0.1',
      port: 5432,
      stopListening: true,
    });
  });

  it('reads flags, and STPROXY_* variables when a flag is not given', () => {
    const c = parseProxyArgs([...REQUIRED, '--port', '6432', '--stop-listening=false'], {
      STPROXY_PORT: '7000',
      STPROXY_LISTEN_ADDRESS: '0.0.0.0',
    });
    expect(c).toMatchObject({ port: 6432, listenAddress: '0.0.0.0', stopListening: false });
    expect(parseProxyArgs(['--store-backend', 'etcdv3'], { STPROXY_CLUSTER_NAME: 'fromenv' }).clusterName).toBe('fromenv');
  });

  it.each([
    [['--port', 'x'], 'port'],
    [['--port', '70000'], 'port'],
    [['--listen-address', ''], 'listen-address'],
    [['--bogus', '1'], 'bogus'],
    [['--log-level', 'loud'], 'log-level'],
  ])('rejects %j naming the flag', (extra, field) => {
    const err = configError(() => parseProxyArgs([...REQUIRED, ...extra], {}));
    expect(err.field).toBe(field);
    expect(err.message).not.toContain('\n');
  });

  it('rejects a missing --cluster-name', () => {
    expect(configError(() => parseProxyArgs(['--store-backend', 'etcdv3'], {})).field).toBe('cluster-name');
  });
});
