/** `stolon-proxy` flags: Stolon's names and defaults, STPROXY_* fallbacks, one-line errors naming the flag. */
import { describe, expect, it } from 'vitest';
import { configErrorOf } from '@stolon-ts/cluster/testing';
import { parseProxyArgs, proxyConfigFromFlags } from './flags.js';

const REQUIRED = ['--cluster-name', 'c1', '--store-backend', 'etcdv3'];

describe('parseProxyArgs', () => {
  it('applies the defaults', () => {
    expect(parseProxyArgs(REQUIRED, {})).toEqual({
      clusterName: 'c1',
      storeBackend: 'etcdv3',
      storePrefix: 'stolon/cluster',
      storeTimeout: '5s',
      storeSkipTlsVerify: false,
      logLevel: 'info',
      listenAddress: '127.0.0.1',
      port: 5432,
      stopListening: true,
      maxConnections: 2000,
      tcpKeepaliveIdle: 0,
      tcpKeepaliveCount: 0,
      tcpKeepaliveInterval: 0,
      roListenAddress: '',
      roPort: 0,
      roMaxLagBytes: 1048576,
      roFallbackToPrimary: false,
      dataPath: 'native',
      relayThreads: 0,
    });
    // --ro-port 0 (the default): no read-only listener.
    expect(proxyConfigFromFlags(parseProxyArgs(REQUIRED, {})).readOnly).toBeNull();
  });

  it('maps the read-only and keepalive flags to the proxy config; --ro-listen-address defaults to --listen-address', () => {
    const c = parseProxyArgs(
      [...REQUIRED, '--listen-address', '10.0.0.5', '--ro-port', '5433', '--ro-max-lag-bytes', '65536', '--ro-fallback-to-primary'],
      { STPROXY_TCP_KEEPALIVE_IDLE: '30', STPROXY_MAX_CONNECTIONS: '500' },
    );
    expect(proxyConfigFromFlags(c)).toEqual({
      listenAddress: '10.0.0.5',
      port: 5432,
      stopListening: true,
      maxConnections: 500,
      tcpKeepaliveIdleS: 30,
      tcpKeepaliveCount: 0,
      tcpKeepaliveIntervalS: 0,
      dataPath: 'native',
      relayThreads: 0,
      readOnly: { listenAddress: '10.0.0.5', port: 5433, maxLagBytes: 65536, fallbackToPrimary: true },
    });
    expect(proxyConfigFromFlags(parseProxyArgs([...REQUIRED, '--data-path', 'event-loop', '--relay-threads', '3'], {}))).toMatchObject({
      dataPath: 'event-loop',
      relayThreads: 3,
    });
    const own = parseProxyArgs([...REQUIRED, '--ro-port', '5432', '--ro-listen-address', '10.0.0.6'], {});
    expect(proxyConfigFromFlags(own).readOnly).toMatchObject({ listenAddress: '10.0.0.6', port: 5432 });
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
    [['--max-connections', '-1'], 'max-connections'],
    [['--max-connections', '1.5'], 'max-connections'],
    [['--tcp-keepalive-idle', '40000'], 'tcp-keepalive-idle'],
    [['--tcp-keepalive-count', '128'], 'tcp-keepalive-count'],
    [['--ro-port', '70000'], 'ro-port'],
    [['--ro-port', '5432'], 'ro-port'],
    [['--ro-max-lag-bytes', '-5'], 'ro-max-lag-bytes'],
    [['--data-path', 'splice'], 'data-path'],
    [['--relay-threads', '65'], 'relay-threads'],
    [['--relay-threads', '-1'], 'relay-threads'],
  ])('rejects %j naming the flag', (extra, field) => {
    const err = configErrorOf(() => parseProxyArgs([...REQUIRED, ...extra], {}));
    expect(err.field).toBe(field);
    expect(err.message).not.toContain('\n');
  });

  it('rejects a missing --cluster-name', () => {
    expect(configErrorOf(() => parseProxyArgs(['--store-backend', 'etcdv3'], {})).field).toBe('cluster-name');
  });
});
