/**
 * The proxy against real TCP on 127.0.0.1: small echo servers stand in for PostgreSQL (each
 * answers `<name>:<what it received>`, so a reply says which "primary" it came from), the
 * in-memory store stands in for etcd. Timings are short (check every 200 ms, proxyTimeout 1 s)
 * and every wait is bounded.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  newClusterData,
  serializeClusterData,
  validateSpec,
  type ClusterData,
  type ProxyInfo,
} from '@stolon-ts/cluster';
import { aDb } from '@stolon-ts/cluster/testing';
import { BUG_SENTENCE, createLogger, type Logger } from '@stolon-ts/common';
import { freePort, waitFor, waitUntilSteady } from '@stolon-ts/harness';
import { MemoryBackend, MemoryStore, type Store } from '@stolon-ts/store';
import { CANCEL_REQUEST_CODE, SSL_REQUEST_CODE } from './pgwire.js';
import { start } from './proxy.js';
import type { ProxyConfig, ProxyHandle } from './types.js';
import { loadRelayAddon, type KeepaliveSettings } from './relay.js';

const UID = 'px1';
const ISO = '2024-01-01T00:00:00.000Z';
const SPEC = { initMode: 'new', proxyCheckInterval: '200ms', proxyTimeout: '1s' } as const;
const PROXY_TIMEOUT_MS = 1000;
/** Allowance on top of proxyTimeout for timers and a check in flight on a busy 2-core machine. */
const SLACK_MS = 750;

// ------------------------------------------------------------------ fixtures

/** Clusterdata with DBs `uid → port`, the given primary, enabled proxies and proxy generation. */
function aClusterData(opts: {
  dbs: Record<string, number>;
  master: string;
  enabled: string[];
  generation: number;
  spec?: object;
}): ClusterData {
  const cd = newClusterData(validateSpec(opts.spec ?? SPEC), 'c1', ISO);
  cd.cluster.status = { phase: 'normal', master: opts.master };
  for (const [uid, port] of Object.entries(opts.dbs)) {
    cd.dbs[uid] = aDb(`keeper-${uid}`, 'master', { uid, port: String(port), xLogPos: 0 });
    // Every DB's keeper is registered, as parseClusterData requires.
    cd.keepers[`keeper-${uid}`] = {
      uid: `keeper-${uid}`,
      generation: 1,
      changeTime: ISO,
      spec: {},
      status: { healthy: true, lastHealthyTime: ISO, bootUUID: 'b' },
    };
  }
  cd.proxy.generation = opts.generation;
  cd.proxy.spec = { masterDbUid: opts.master, enabledProxies: opts.enabled };
  return cd;
}

interface Echo {
  readonly name: string;
  readonly port: number;
  /** Server-side sockets not yet closed. */
  open(): number;
  close(): Promise<void>;
}

/** A TCP server answering `<name>:<data>` to every chunk: a stand-in for a PostgreSQL primary. */
async function echoServer(name: string): Promise<Echo> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d) => s.write(`${name}:${d.toString()}`));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const addr = server.address() as net.AddressInfo;
  return {
    name,
    port: addr.port,
    open: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) {
          s.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

interface Client {
  readonly sock: net.Socket;
  data: string;
  closed: boolean;
}

/** Connects to the proxy. @throws the connect error (ECONNREFUSED when nothing listens). */
function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const c: Client = { sock, data: '', closed: false };
    sock.on('data', (d) => {
      c.data += d.toString();
    });
    sock.on('close', () => {
      c.closed = true;
    });
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      sock.on('error', () => undefined);
      resolve(c);
    });
  });
}

/** Sends `msg` and waits for the echo; returns the reply ("A:msg"). */
async function ask(c: Client, msg: string, what: string): Promise<string> {
  const before = c.data.length;
  c.sock.write(msg);
  return waitFor(
    () => {
      const reply = c.data.slice(before);
      if (reply.endsWith(msg)) {
        return reply;
      }
      if (c.closed) {
        throw new Error(`connection closed; received ${JSON.stringify(reply)}`);
      }
      return undefined;
    },
    { timeoutMs: 3000, what, intervalMs: 10 },
  );
}

/**
 * What a new client sees: `refused` (nothing listens), `closed` (accepted, then closed without
 * an answer within 2 s) or the echo reply.
 */
async function probe(port: number): Promise<string> {
  let c: Client;
  try {
    c = await connect(port);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'refused' : `error ${(err as Error).message}`;
  }
  try {
    c.sock.write('probe');
    const r = await waitFor(() => (c.data.endsWith('probe') ? c.data : c.closed ? 'closed' : undefined), {
      timeoutMs: 2000,
      what: 'a reply or a close',
      intervalMs: 10,
    });
    return r;
  } finally {
    c.sock.destroy();
  }
}

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A debug-level logger whose NDJSON lines are kept in memory (pino `dest`). */
function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    component: 'proxy',
    uid: UID,
    cluster: 'c1',
    dest: { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) },
  });
  return { logger, lines };
}

/** Records every ProxyInfo publication with the proxy's open connection count at that moment. */
interface Publication {
  readonly info: ProxyInfo;
  readonly ttlMs: number;
  readonly connections: number;
  /** performance.now() when it was sent. */
  readonly at: number;
}

/**
 * Wraps a store: records publications, and while `hang()` is true every call except `close`
 * and `infoLeaseRemainingMs` (no I/O) returns a promise that never settles (a frozen etcd, as
 * under SIGSTOP). `leaseRemainingMs`, when given, replaces the store's `infoLeaseRemainingMs`.
 */
function recordingStore(
  inner: MemoryStore,
  onPublish: (info: ProxyInfo, ttlMs: number) => void,
  hang: () => boolean,
  leaseRemainingMs?: () => number | undefined,
): Store {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'infoLeaseRemainingMs' && leaseRemainingMs !== undefined) {
        return leaseRemainingMs;
      }
      if (hang() && prop !== 'close' && prop !== 'infoLeaseRemainingMs') {
        return () => new Promise(() => undefined);
      }
      if (prop === 'setInfo') {
        return (kind: 'proxies', uid: string, info: ProxyInfo, ttlMs: number) => {
          onPublish(info, ttlMs);
          return target.setInfo(kind, uid, info, ttlMs);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

interface World {
  backend: MemoryBackend;
  /** A second client of the same backend, as a sentinel would be. */
  admin: MemoryStore;
  proxy: ProxyHandle;
  port: number;
  lines: LogLine[];
  publications: Publication[];
  /** Makes every call of the proxy's store hang (true) or work again (false). */
  setHanging(hang: boolean): void;
  write(cd: ClusterData): Promise<void>;
  published(): Promise<ProxyInfo | undefined>;
  /** The value of one series of the proxy's metrics (e.g. `stolon_proxy_connections{listener="main"}`), undefined when absent. */
  metric(series: string): Promise<number | undefined>;
}

const cleanups: Array<() => Promise<void>> = [];
let currentLines: LogLine[] = [];
/** The data path of the tests running now (set by the outer describe.each). */
let dataPathConfig: Extra = {};

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    await c();
  }
  const bugs = currentLines.filter((l) => l.msg.includes(BUG_SENTENCE));
  currentLines = [];
  expect(bugs).toEqual([]);
});

/** ProxyConfig fields a test may set (the rest: uid px1 on 127.0.0.1, a free port). */
type Extra = Partial<Omit<ProxyConfig, 'uid' | 'listenAddress' | 'port'>>;

async function world(
  opts: {
    cd?: ClusterData;
    unavailable?: boolean;
    stopListening?: boolean;
    config?: Extra;
    /** Replaces the proxy's store's `infoLeaseRemainingMs`. */
    leaseRemainingMs?: () => number | undefined;
  } = {},
): Promise<World> {
  const backend = new MemoryBackend();
  const admin = new MemoryStore(backend, { clusterName: 'c1' });
  if (opts.cd !== undefined) {
    await admin.overwriteClusterData(serializeClusterData(opts.cd));
  }
  if (opts.unavailable === true) {
    backend.setUnavailable(true);
  }
  const { logger, lines } = captureLogger();
  currentLines = lines;
  const publications: Publication[] = [];
  let handle: ProxyHandle | undefined;
  let hanging = false;
  const store = recordingStore(
    new MemoryStore(backend, { clusterName: 'c1' }),
    (info, ttlMs) => publications.push({ info, ttlMs, connections: handle?.connections() ?? -1, at: performance.now() }),
    () => hanging,
    opts.leaseRemainingMs,
  );
  const port = await freePort();
  const registry = new Registry();
  handle = await start(
    {
      uid: UID,
      listenAddress: '127.0.0.1',
      port,
      ...(opts.stopListening === undefined ? {} : { stopListening: opts.stopListening }),
      ...dataPathConfig,
      ...opts.config,
    },
    { store, logger, registry },
  );
  const proxy = handle;
  cleanups.push(async () => {
    hanging = false;
    backend.setUnavailable(false);
    await proxy.stop('test over');
    await admin.close();
  });
  return {
    backend,
    admin,
    proxy,
    port,
    lines,
    publications,
    setHanging: (h) => {
      hanging = h;
    },
    write: async (cd) => {
      await admin.overwriteClusterData(serializeClusterData(cd));
    },
    published: async () => (await admin.listInfos('proxies'))[UID],
    metric: async (series) => {
      const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    },
  };
}

async function echo(name: string): Promise<Echo> {
  const e = await echoServer(name);
  cleanups.push(() => e.close());
  return e;
}

/**
 * The start of the watchdog's line when it fired for proxyTimeout `ms`, as a regex source: at the
 * check deadline, or earlier at the info lease's end. With the memory store unavailable its
 * keepalives fail, so either may come first.
 */
function watchdogFired(ms: number): string {
  return `no successful check (?:within proxyTimeout \\(${ms} ms\\)|before this proxy's info lease could expire \\(proxyTimeout ${ms} ms\\))`;
}

/** Waits until the log has a line whose message equals or matches `pattern`. */
function waitForLog(lines: LogLine[], pattern: string | RegExp, timeoutMs = 3000): Promise<LogLine> {
  return waitFor(
    () => lines.find((l) => (typeof pattern === 'string' ? l.msg === pattern : pattern.test(l.msg))),
    { timeoutMs, what: `log line ${String(pattern)} (last: ${JSON.stringify(lines.slice(-5).map((l) => l.msg))})`, intervalMs: 20 },
  );
}

/** TCP options of one of this process's sockets, read from the kernel (see {@link socketOptions}). */
interface SocketOptions extends KeepaliveSettings {
  readonly noDelay: boolean;
  readonly keepAlive: boolean;
}

/**
 * TCP options of this process's established socket from `localPort` (any, when undefined) to
 * `remotePort` on 127.0.0.1: found through /proc/net/tcp (its inode) and /proc/self/fd, read
 * with the addon's getsockopt (`keepalive` with zeros changes nothing). The proxy runs in this
 * process, so its sockets (or the relay's copies of them) are found this way.
 */
function socketOptions(localPort: number | undefined, remotePort: number): SocketOptions {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  const inodes = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[2] === `0100007F:${hex(remotePort)}` && (localPort === undefined || f[1] === `0100007F:${hex(localPort)}`) && f[3] === '01')
    .map((f) => f[9]);
  const fds = readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return inodes.some((i) => readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${i}]`);
    } catch {
      return false;
    }
  });
  expect(fds, `one socket of ours to port ${remotePort}`).toHaveLength(1);
  const l = loadRelayAddon();
  if ('error' in l) {
    throw new Error(l.error);
  }
  const [noDelay, keepAlive] = l.addon.sockopts(Number(fds[0]));
  const [idleS, intervalS, count] = l.addon.keepalive(Number(fds[0]), 0, 0, 0);
  return { noDelay: noDelay === 1, keepAlive: keepAlive === 1, idleS, intervalS, count };
}

// ------------------------------------------------------------------ tests

/**
 * Every test runs on both data paths: the native relay (two threads, so connections spread over
 * both) and the event loop. Only the forwarding differs; routing, fencing and limits are shared.
 */
const DATA_PATHS = [
  { name: 'native relay', config: { dataPath: 'native', relayThreads: 2 } },
  { name: 'event loop', config: { dataPath: 'event-loop' } },
] as const satisfies readonly { name: string; config: Extra }[];

describe.each(DATA_PATHS)('data path: $name', ({ config }) => {
  beforeAll(() => {
    dataPathConfig = config;
  });

  describe('proxy', () => {
    it('does not listen until the store answered, then listens and routes', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({
        cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }),
        unavailable: true,
      });
      // Several checks fail meanwhile (default interval before any spec was read: 1 s).
      await new Promise((r) => setTimeout(r, 1200));
      expect(w.proxy.state()).toBe('starting');
      expect(await probe(w.port)).toBe('refused');
      expect(w.lines.some((l) => l.msg.startsWith('proxy listening on'))).toBe(false);

      w.backend.setUnavailable(false);
      await waitFor(() => w.proxy.ready.then(() => true), { timeoutMs: 3000, what: 'ready' });
      await waitForLog(w.lines, `proxy listening on 127.0.0.1:${w.port}`);
      expect(w.proxy.port()).toBe(w.port);
      expect(await probe(w.port)).toBe('A:probe');
      expect(w.proxy.state()).toBe('routing');
    });

    it('routes to the enabled primary and publishes its generation with a TTL of proxyTimeout', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'hello', 'echo from A')).toBe('A:hello');
      expect(w.proxy.connections()).toBe(1);
      expect(w.proxy.state()).toBe('routing');
      await waitForLog(w.lines, `routing to 127.0.0.1:${a.port} (db db1, proxy generation 2)`);

      const info = await w.published();
      expect(info).toMatchObject({ UID, Generation: 2, ProxyTimeout: PROXY_TIMEOUT_MS * 1e6 });
      expect(typeof info?.infoUID).toBe('string');
      expect(w.publications.at(-1)?.ttlMs).toBe(PROXY_TIMEOUT_MS);
      // A new infoUID on every publish (the sentinel's liveness signal).
      await waitFor(() => w.publications.length >= 3, { timeoutMs: 2000, what: 'three publications' });
      expect(new Set(w.publications.map((p) => p.info.infoUID)).size).toBe(w.publications.length);

      // stop(): connections gone, listener closed, info deleted, done resolves.
      await w.proxy.stop('test');
      await w.proxy.done;
      expect(w.proxy.state()).toBe('stopped');
      await waitFor(() => c.closed, { timeoutMs: 2000, what: 'client closed by stop' });
      expect(await probe(w.port)).toBe('refused');
      expect(await w.published()).toBeUndefined();
    });

    it('closes connections at once when this proxy is not enabled, and still publishes', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: ['other'], generation: 4 }) });
      await w.proxy.ready;
      expect(await probe(w.port)).toBe('closed');
      expect(a.open()).toBe(0);
      expect(w.proxy.state()).toBe('fenced');
      await waitForLog(w.lines, `fenced: this proxy (${UID}) is not in enabledProxies (proxy generation 4)`);
      // Published anyway: the sentinel must see a proxy before it can enable it.
      expect((await w.published())?.Generation).toBe(4);

      // Enabled by the sentinel: routes (the watch makes this immediate).
      await w.write(aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 5 }));
      await waitFor(() => w.proxy.state() === 'routing', { timeoutMs: 2000, what: 'routing once enabled' });
      expect(await probe(w.port)).toBe('A:probe');
    });

    it('on a primary change destroys old connections before publishing the new generation, then routes to the new primary', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const b = await echo('B');
      const dbs = { db1: a.port, db2: b.port };
      const w = await world({ cd: aClusterData({ dbs, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const c1 = await connect(w.port);
      const c2 = await connect(w.port);
      expect(await ask(c1, 'one', 'c1 echo')).toBe('A:one');
      expect(await ask(c2, 'two', 'c2 echo')).toBe('A:two');
      expect(a.open()).toBe(2);

      await w.write(aClusterData({ dbs, master: 'db2', enabled: [UID], generation: 3 }));
      await waitFor(() => c1.closed && c2.closed, { timeoutMs: 2000, what: 'old client connections closed' });
      await waitFor(() => a.open() === 0, { timeoutMs: 2000, what: 'connections to the old primary closed' });
      const c3 = await connect(w.port);
      expect(await ask(c3, 'three', 'echo from the new primary')).toBe('B:three');

      // The fencing handshake: generation 3 was never published while a connection was open.
      const gen3 = w.publications.filter((p) => p.info.Generation === 3);
      expect(gen3.length).toBeGreaterThan(0);
      expect(gen3[0]?.connections).toBe(0);
      expect((await w.published())?.Generation).toBe(3);
      const change = await waitForLog(w.lines, /^target changed from 127\.0\.0\.1:\d+ \(db db1\) to 127\.0\.0\.1:\d+ \(db db2\)/);
      expect(change.msg).toBe(
        `target changed from 127.0.0.1:${a.port} (db db1) to 127.0.0.1:${b.port} (db db2) (proxy generation 3); closed 2 connections`,
      );
    });

    it('masterDbUid "" (fencing): closes connections, keeps listening, publishes the new generation', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 6 }) });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');

      await w.write(aClusterData({ dbs: { db1: a.port }, master: '', enabled: [UID], generation: 7 }));
      await waitFor(() => c.closed, { timeoutMs: 2000, what: 'client closed on fencing' });
      await waitFor(async () => (await w.published())?.Generation === 7, { timeoutMs: 2000, what: 'generation 7 published' });
      const first7 = w.publications.find((p) => p.info.Generation === 7);
      expect(first7?.connections).toBe(0);
      expect(w.proxy.state()).toBe('fenced');
      expect(await probe(w.port)).toBe('closed'); // listening, but closing at once
      await waitForLog(w.lines, 'fenced: no primary published (proxy generation 7)');
    });

    it('store unavailable: closes connections and the listener within proxyTimeout; resumes when the store is back', { timeout: 20_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');

      const t0 = performance.now();
      w.backend.setUnavailable(true);
      await waitFor(() => c.closed, { timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS, what: 'client closed', intervalMs: 10 });
      expect(performance.now() - t0).toBeLessThan(PROXY_TIMEOUT_MS + SLACK_MS);
      await waitFor(async () => (await probe(w.port)) === 'refused', {
        timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS,
        what: 'listener closed',
        intervalMs: 20,
      });
      expect(performance.now() - t0).toBeLessThan(PROXY_TIMEOUT_MS + SLACK_MS);
      expect(w.proxy.state()).toBe('store-lost');
      await waitForLog(w.lines, /^store unreachable: reading clusterdata: memory store unavailable/);
      await waitForLog(w.lines, new RegExp(`^${watchdogFired(1000)}`));
      expect(w.lines.some((l) => l.msg === `proxy stopped listening on 127.0.0.1:${w.port}`)).toBe(true);
      expect(a.open()).toBe(0);

      w.backend.setUnavailable(false);
      await waitFor(() => w.proxy.state() === 'routing', { timeoutMs: 3000, what: 'routing again' });
      expect(await probe(w.port)).toBe('A:probe');
      expect((await w.published())?.Generation).toBe(2);
    });

    it('a failed store read says where it still routes until the watchdog fires, then that it routes nowhere', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      // proxyTimeout 3 s: the first failed check (within a check interval) comes long before the watchdog.
      const spec = { ...SPEC, proxyTimeout: '3s' };
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2, spec }) });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');

      w.backend.setUnavailable(true);
      const unreachable = 'store unreachable: reading clusterdata: memory store unavailable (test hook) during getClusterData';
      const first = await waitForLog(w.lines, /^store unreachable: /);
      expect(first.msg).toBe(
        `${unreachable}; still routing to 127.0.0.1:${a.port} (db db1) until the watchdog fires (no successful check within proxyTimeout, 3000 ms)`,
      );
      expect(first.target).toBe(`127.0.0.1:${a.port} (db db1)`);

      const fired = await waitForLog(w.lines, new RegExp(`^${watchdogFired(3000)}`), 3000 + SLACK_MS);
      const after = await waitFor(() => w.lines.slice(w.lines.indexOf(fired)).find((l) => l.msg.startsWith('store unreachable: ')), {
        timeoutMs: 3000,
        what: 'a failed check after the watchdog fired',
        intervalMs: 20,
      });
      expect(after.msg).toBe(`${unreachable}; routing nowhere`);
      expect(after.target).toBe('none');
      expect(c.closed).toBe(true);
    });

    it('store calls hanging: the watchdog (not the check loop) closes connections and the listener within proxyTimeout', { timeout: 20_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');

      const t0 = performance.now();
      w.setHanging(true);
      await waitFor(() => c.closed, { timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS, what: 'client closed', intervalMs: 10 });
      await waitFor(async () => (await probe(w.port)) === 'refused', {
        timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS,
        what: 'listener closed',
        intervalMs: 20,
      });
      expect(performance.now() - t0).toBeLessThan(PROXY_TIMEOUT_MS + SLACK_MS);
      expect(w.proxy.state()).toBe('store-lost');
      const line = await waitForLog(w.lines, /^no successful check within proxyTimeout \(1000 ms\): target changed from 127\.0\.0\.1:\d+ \(db db1\) to none/);
      expect(line.msg).toMatch(/closing 1 connection, closing the listener until a check succeeds$/);
      // The hung check itself gives up after proxyTimeout and says why.
      await waitForLog(w.lines, /^store unreachable: reading clusterdata: no answer within 1000 ms; routing nowhere$/, 2 * PROXY_TIMEOUT_MS + SLACK_MS);

      w.setHanging(false);
      await waitFor(() => w.proxy.state() === 'routing', { timeoutMs: 3000, what: 'routing again' });
      expect(await probe(w.port)).toBe('A:probe');
    });

    it('the watchdog fires before this proxy\'s info lease could expire, even when that is sooner than proxyTimeout', { timeout: 20_000 }, async () => {
      const a = await echo('A');
      // proxyTimeout 3 s, but the store says the info lease is certain to live only until 600 ms
      // after the last publish (no keepalive confirmed in between, as when they fail): a hung
      // store must cut clients by then, not at proxyTimeout.
      const started: { world?: World } = {};
      const cd = aClusterData({
        dbs: { db1: a.port },
        master: 'db1',
        enabled: [UID],
        generation: 2,
        spec: { ...SPEC, proxyTimeout: '3s' },
      });
      const w = await world({
        cd,
        leaseRemainingMs: () => (started.world?.publications.at(-1)?.at ?? performance.now()) + 600 - performance.now(),
      });
      started.world = w;
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');
      await new Promise((r) => setTimeout(r, 1000)); // checks keep succeeding: no watchdog
      expect(c.closed).toBe(false);
      expect(await ask(c, 'y', 'echo')).toBe('A:y');

      const hungAt = performance.now();
      w.setHanging(true);
      await waitFor(() => c.closed, { timeoutMs: 3000 + SLACK_MS, what: 'client closed by the watchdog' });
      const after = performance.now() - hungAt;
      await waitForLog(w.lines, /^no successful check before this proxy's info lease could expire/);
      expect(after).toBeLessThan(600 + 200 + SLACK_MS); // not proxyTimeout (3 s)
    });

    it('with stopListening false the watchdog closes connections but keeps listening', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({
        cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }),
        stopListening: false,
      });
      await w.proxy.ready;
      w.backend.setUnavailable(true);
      await waitFor(() => w.proxy.state() === 'store-lost', { timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS, what: 'store-lost' });
      await waitForLog(w.lines, new RegExp(`^${watchdogFired(1000)}.*still listening$`), PROXY_TIMEOUT_MS + SLACK_MS);
      expect(await probe(w.port)).toBe('closed');
    });

    it('invalid clusterdata (format version 2) routes nowhere; never listens if that is all it ever read', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const good = aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 });
      const w = await world({ cd: good });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');

      await w.admin.overwriteClusterData(JSON.stringify({ ...good, formatVersion: 2 }));
      await waitFor(() => c.closed, { timeoutMs: 2000, what: 'client closed on invalid clusterdata' });
      expect(w.proxy.state()).toBe('fenced');
      expect(await probe(w.port)).toBe('closed');
      await waitForLog(w.lines, /^invalid clusterdata: unsupported clusterdata format version 2/);

      // Failing checks publish nothing: the info's progress marker freezes while the store's
      // keepalive keeps its lease alive, so the sentinel can tell this proxy makes no progress.
      const published = w.publications.length;
      const last = w.publications.at(-1)?.info;
      await new Promise((r) => setTimeout(r, 3 * PROXY_TIMEOUT_MS));
      expect(w.publications.length).toBe(published);
      expect((await w.published())?.infoUID).toBe(last?.infoUID);

      // A second proxy that only ever read invalid clusterdata never listens.
      const w2 = await world({ cd: { ...good, formatVersion: 2 } });
      await new Promise((r) => setTimeout(r, 1200));
      expect(w2.proxy.state()).toBe('starting');
      expect(await probe(w2.port)).toBe('refused');
    });

    it('a malformed proxy object in clusterdata routes nowhere instead of crashing', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const good = aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 });
      const w = await world({ cd: good });
      await w.proxy.ready;
      await w.admin.overwriteClusterData(
        JSON.stringify({ ...good, proxy: { ...good.proxy, spec: { masterDbUid: 'db1', enabledProxies: 'px1' } } }),
      );
      await waitForLog(w.lines, /^invalid clusterdata: clusterdata is invalid: proxy\.spec\.enabledProxies: expected array, got string "px1"/);
      expect(await probe(w.port)).toBe('closed');
    });

    it('a client sending garbage to a dead primary does not crash the proxy', { timeout: 15_000 }, async () => {
      const deadPort = await freePort(); // nothing listens there
      const b = await echo('B');
      const w = await world({ cd: aClusterData({ dbs: { db1: deadPort, db2: b.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const results = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const c = await connect(w.port);
          c.sock.write(Buffer.from(Array.from({ length: 4096 }, (_v, j) => (i * 31 + j * 7) % 256)));
          if (i % 2 === 0) {
            c.sock.resetAndDestroy();
            return 'reset';
          }
          await waitFor(() => c.closed, { timeoutMs: 3000, what: `client ${i} closed` });
          return 'closed';
        }),
      );
      expect(results.filter((r) => r === 'closed')).toHaveLength(10);
      await waitFor(() => w.proxy.connections() === 0, { timeoutMs: 3000, what: 'no connections left' });
      expect(w.proxy.state()).toBe('routing');
      expect(w.lines.some((l) => /connection \d+ to primary 127\.0\.0\.1:\d+ failed: connect ECONNREFUSED/.test(l.msg))).toBe(true);

      // Still alive and serving after the primary moves.
      await w.write(aClusterData({ dbs: { db1: deadPort, db2: b.port }, master: 'db2', enabled: [UID], generation: 3 }));
      await waitFor(async () => (await probe(w.port)) === 'B:probe', { timeoutMs: 3000, what: 'routing to B' });
    });

    it('reacts to clusterdata changes on the watch, not only on the interval', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const spec = { initMode: 'new', proxyCheckInterval: '5s', proxyTimeout: '10s' };
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2, spec }) });
      await w.proxy.ready;
      await waitForLog(w.lines, /^routing to/);
      const t0 = performance.now();
      await w.write(aClusterData({ dbs: { db1: a.port }, master: '', enabled: [UID], generation: 3, spec }));
      await waitFor(async () => (await w.published())?.Generation === 3, { timeoutMs: 2000, what: 'generation 3 published', intervalMs: 10 });
      expect(performance.now() - t0).toBeLessThan(1000);
    });

    it('with no clusterdata in the store: listens, routes nowhere, publishes nothing', { timeout: 15_000 }, async () => {
      const w = await world();
      await w.proxy.ready;
      expect(w.proxy.state()).toBe('fenced');
      expect(await probe(w.port)).toBe('closed');
      expect(await w.published()).toBeUndefined();
      await waitForLog(w.lines, 'fenced: no clusterdata in the store (cluster not initialised)');
    });

    it('fails (done rejects) when the listen address cannot be bound', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const { logger, lines } = captureLogger();
      const second = await start(
        { uid: 'px2', listenAddress: '127.0.0.1', port: w.port },
        { store: new MemoryStore(w.backend, { clusterName: 'c1' }), logger },
      );
      await expect(second.done).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      await expect(second.ready).rejects.toThrow(/stopped before it was ready/);
      expect(second.state()).toBe('failed');
      expect(lines.some((l) => l.msg.includes(BUG_SENTENCE))).toBe(false);
      await second.stop('again'); // idempotent, resolves
    });
  });

  // ------------------------------------------------------------------ connections in depth

  /** A server that runs `onSocket` for each connection; closed by the cleanup. */
  async function server(onSocket: (s: net.Socket) => void, opts: net.ServerOpts = {}): Promise<number> {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer(opts, (s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
      onSocket(s);
    });
    await new Promise<void>((resolve) => srv.listen({ host: '127.0.0.1', port: 0 }, resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) {
            s.destroy();
          }
          srv.close(() => resolve());
        }),
    );
    return (srv.address() as net.AddressInfo).port;
  }

  /** A byte pattern the receiver can check position by position. */
  const patternByte = (i: number): number => (i * 7 + 3) % 251;

  function sqlState(err: unknown): string | undefined {
    return (err as { code?: string }).code;
  }

  describe('proxy connections', () => {
    it('half-close: the client FIN reaches the backend, and the backend answer after it still comes back', { timeout: 15_000 }, async () => {
      // The backend answers only once the client has finished sending (it saw FIN), then closes.
      const port = await server(
        (s) => {
          let got = '';
          s.on('data', (d) => (got += d.toString()));
          s.on('end', () => s.end(`answer to ${got}`));
        },
        { allowHalfOpen: true },
      );
      const w = await world({ cd: aClusterData({ dbs: { db1: port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const sock = net.connect({ host: '127.0.0.1', port: w.port, allowHalfOpen: true });
      let reply = '';
      let ended = false;
      sock.on('data', (d) => (reply += d.toString()));
      sock.on('end', () => (ended = true));
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      sock.end('question');
      await waitFor(() => ended, { timeoutMs: 3000, what: 'the answer and the FIN' });
      expect(reply).toBe('answer to question');
      await waitFor(() => w.proxy.connections() === 0, { timeoutMs: 3000, what: 'the pair released' });
    });

    it('backpressure: a client that does not read stalls the backend instead of filling the proxy; then every byte arrives in order', { timeout: 30_000 }, async () => {
      const TOTAL = 256 * 2 ** 20;
      const CHUNK = 64 * 1024;
      let written = 0;
      const port = await server((s) => {
        const pump = (): void => {
          while (written < TOTAL) {
            const chunk = Buffer.allocUnsafe(CHUNK);
            for (let i = 0; i < CHUNK; i++) {
              chunk[i] = patternByte(written + i);
            }
            written += CHUNK;
            if (!s.write(chunk)) {
              s.once('drain', pump);
              return;
            }
          }
          s.end();
        };
        pump();
      });
      const w = await world({ cd: aClusterData({ dbs: { db1: port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const sock = net.connect({ host: '127.0.0.1', port: w.port });
      sock.pause(); // a slow reader: reads nothing for now
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      // Stalled: no progress over half a second (polled, so a busy machine only makes this slower).
      const stalledAt = await waitUntilSteady(() => written, { timeoutMs: 15_000, what: 'the backend to stall' });
      // Only kernel socket buffers and the streams' highWaterMarks sit between the two: the
      // backend stopped far below the 256 MiB it wants to send.
      expect(stalledAt).toBeLessThan(64 * 2 ** 20);

      let received = 0;
      let mismatch = -1;
      sock.on('data', (d: Buffer) => {
        for (let i = 0; i < d.length && mismatch < 0; i++) {
          if (d[i] !== patternByte(received + i)) {
            mismatch = received + i;
          }
        }
        received += d.length;
      });
      sock.resume();
      await waitFor(() => received === TOTAL || mismatch >= 0, { timeoutMs: 20_000, what: 'all 256 MiB through the proxy' });
      expect(mismatch).toBe(-1);
      sock.destroy();
    });

    it('metrics: connections now and in total, bytes each way once closed, target changes, generation, primary, refusals, relay threads', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const b = await echo('B');
      const dbs = { db1: a.port, db2: b.port };
      const w = await world({ cd: aClusterData({ dbs, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      await waitFor(async () => (await w.metric('stolon_proxy_has_primary')) === 1, { timeoutMs: 2000, what: 'has_primary 1' });
      expect(await w.metric('stolon_proxy_generation')).toBe(2);
      expect(Date.now() / 1000 - ((await w.metric('stolon_proxy_last_check_success_seconds')) ?? 0)).toBeLessThan(2);
      const c1 = await connect(w.port);
      const c2 = await connect(w.port);
      expect(await ask(c1, 'hello', 'c1 echo')).toBe('A:hello'); // 5 bytes up, 7 down
      expect(await ask(c2, 'x', 'c2 echo')).toBe('A:x'); // 1 up, 3 down
      expect(await w.metric('stolon_proxy_connections{listener="main"}')).toBe(2);
      expect(await w.metric('stolon_proxy_connections_total{listener="main"}')).toBe(2);
      if (dataPathConfig.dataPath === 'native') {
        // Two relay threads, least loaded first: one connection each.
        expect(await w.metric('stolon_proxy_relay_thread_connections{thread="0"}')).toBe(1);
        expect(await w.metric('stolon_proxy_relay_thread_connections{thread="1"}')).toBe(1);
      } else {
        expect(await w.metric('stolon_proxy_relay_thread_connections{thread="0"}')).toBeUndefined();
      }
      const changesBefore = (await w.metric('stolon_proxy_target_changes_total')) ?? NaN;

      // Fenced: both closed (their bytes counted), no primary, then a client refused for want of a target.
      await w.write(aClusterData({ dbs, master: '', enabled: [UID], generation: 3 }));
      await waitFor(() => c1.closed && c2.closed, { timeoutMs: 2000, what: 'clients closed on fencing' });
      await waitFor(async () => (await w.metric('stolon_proxy_connections{listener="main"}')) === 0, { timeoutMs: 2000, what: 'no connection' });
      expect(await w.metric('stolon_proxy_has_primary')).toBe(0);
      expect(await w.metric('stolon_proxy_generation')).toBe(3);
      expect(await w.metric('stolon_proxy_bytes_total{listener="main",direction="up"}')).toBe(6);
      expect(await w.metric('stolon_proxy_bytes_total{listener="main",direction="down"}')).toBe(10);
      expect(await probe(w.port)).toBe('closed');
      expect(await w.metric('stolon_proxy_connections_refused_total{listener="main",reason="no_target"}')).toBe(1);

      // Routed to the new primary: two target changes in all (to none, to db2).
      await w.write(aClusterData({ dbs, master: 'db2', enabled: [UID], generation: 4 }));
      await waitFor(async () => (await w.metric('stolon_proxy_has_primary')) === 1, { timeoutMs: 2000, what: 'has_primary 1 again' });
      expect(await probe(w.port)).toBe('B:probe');
      expect(await w.metric('stolon_proxy_target_changes_total')).toBe(changesBefore + 2);
      expect(await w.metric('stolon_proxy_connections_total{listener="main"}')).toBe(3);
      expect(await w.metric('stolon_proxy_check_failures_total{kind="store"}')).toBeUndefined();
    });

    it('over --max-connections: ErrorResponse 53300 after the startup packet (SSL declined first), garbage closed, cancel forwarded; held connections unaffected', { timeout: 20_000 }, async () => {
      const a = await echo('A');
      const w = await world({
        cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }),
        config: { maxConnections: 3 },
      });
      await w.proxy.ready;
      const held = await Promise.all([connect(w.port), connect(w.port), connect(w.port)]);
      for (const [i, c] of held.entries()) {
        expect(await ask(c, `m${i}`, `held ${i}`)).toBe(`A:m${i}`);
      }

      // A PostgreSQL client (SSL preferred, so it sends SSLRequest first) gets PostgreSQL's error.
      const client = new pg.Client({ host: '127.0.0.1', port: w.port, user: 'u', database: 'd', ssl: false, connectionTimeoutMillis: 3000 });
      const err = await client.connect().then(
        () => undefined,
        (e: unknown) => e,
      );
      await client.end().catch(() => undefined);
      expect(sqlState(err)).toBe('53300');
      expect((err as Error).message).toBe('too many connections through stolon-proxy (limit 3, --max-connections)');

      // Raw: SSLRequest → 'N', then a startup message → 'E' … with the same message.
      const raw = await connect(w.port);
      const ssl = Buffer.alloc(8);
      ssl.writeInt32BE(8, 0);
      ssl.writeInt32BE(SSL_REQUEST_CODE, 4);
      raw.sock.write(ssl);
      await waitFor(() => (raw.data === 'N' ? true : undefined), { timeoutMs: 2000, what: 'SSL declined' });
      const body = Buffer.from('user\0u\0\0');
      const startup = Buffer.alloc(8);
      startup.writeInt32BE(8 + body.length, 0);
      startup.writeInt32BE(196_608, 4);
      raw.sock.write(Buffer.concat([startup, body]));
      await waitFor(() => raw.closed, { timeoutMs: 2000, what: 'refused client closed' });
      expect(raw.data.slice(1, 2)).toBe('E');
      expect(raw.data).toContain('C53300\0Mtoo many connections through stolon-proxy');

      // Garbage over the limit: closed without an answer.
      const junk = await connect(w.port);
      junk.sock.write('GET / HTTP/1.1\r\n\r\n');
      await waitFor(() => junk.closed, { timeoutMs: 2000, what: 'garbage closed' });
      expect(junk.data).toBe('');

      // A CancelRequest over the limit is forwarded to the backend (the echo proves it arrived).
      const cancel = Buffer.alloc(16);
      cancel.writeInt32BE(16, 0);
      cancel.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      cancel.writeInt32BE(0x01020304, 8); // process id and key: ASCII bytes, so the text echo keeps them
      cancel.writeInt32BE(0x05060708, 12);
      const canceller = await connect(w.port);
      canceller.sock.write(cancel);
      await waitFor(() => (canceller.data.length >= 2 + 16 ? true : undefined), { timeoutMs: 2000, what: 'cancel request echoed' });
      expect(Buffer.from(canceller.data.slice(2), 'latin1').subarray(8, 16)).toEqual(cancel.subarray(8, 16));
      canceller.sock.destroy();

      // The held connections were not disturbed; one warning per burst; freeing a slot admits a new client.
      for (const [i, c] of held.entries()) {
        expect(await ask(c, `n${i}`, `held ${i} again`)).toBe(`A:n${i}`);
      }
      expect(w.lines.filter((l) => l.msg.startsWith('refusing connection') && l.level === 40)).toHaveLength(1);
      held[0]?.sock.destroy();
      await waitFor(() => w.proxy.connections() === 2, { timeoutMs: 2000, what: 'a slot freed' });
      expect(await probe(w.port)).toBe('A:probe');
      // pg's client, the raw one, the garbage one and the canceller's first accept were refused.
      expect(await w.metric('stolon_proxy_connections_refused_total{listener="main",reason="max_connections"}')).toBe(4);
      expect(await w.metric('stolon_proxy_connections_refused_total{listener="main",reason="no_target"}')).toBe(0);
    });

    it('garbage, abrupt resets and half-open clients do not disturb an established connection', { timeout: 20_000 }, async () => {
      const a = await echo('A');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const steady = await connect(w.port);
      expect(await ask(steady, 'before', 'steady before')).toBe('A:before');
      const noise = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const c = await connect(w.port);
          c.sock.write(Buffer.from(Array.from({ length: 2048 }, (_v, j) => (i * 13 + j) % 256)));
          if (i % 3 === 0) {
            c.sock.resetAndDestroy(); // RST
          } else if (i % 3 === 1) {
            c.sock.end(); // half-open: FIN, keeps reading
          }
          return c;
        }),
      );
      expect(await ask(steady, 'during', 'steady during')).toBe('A:during');
      for (const c of noise) {
        c.sock.destroy();
      }
      await waitFor(() => w.proxy.connections() === 1, { timeoutMs: 5000, what: 'only the steady connection left' });
      expect(await ask(steady, 'after', 'steady after')).toBe('A:after');
      expect(w.proxy.state()).toBe('routing');
    });

    it('a backend that refuses: the client is closed, the proxy keeps serving', { timeout: 15_000 }, async () => {
      const deadPort = await freePort();
      const w = await world({ cd: aClusterData({ dbs: { db1: deadPort }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      expect(await probe(w.port)).toBe('closed');
      await waitForLog(w.lines, /^connection \d+ to primary 127\.0\.0\.1:\d+ failed: connect ECONNREFUSED/);
      expect(w.proxy.connections()).toBe(0);
      expect(w.proxy.state()).toBe('routing');
    });

    it('holds 1,000 idle connections and closes all of them on a primary change before publishing the new generation', { timeout: 60_000 }, async () => {
      // The backend is a cheap local TCP sink (it holds sockets and never answers); what is
      // measured is the proxy, not PostgreSQL.
      const sink = await server(() => undefined);
      const b = await echo('B');
      const dbs = { db1: sink, db2: b.port };
      const w = await world({ cd: aClusterData({ dbs, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const clients: Client[] = [];
      for (let i = 0; i < 1000; i += 100) {
        clients.push(...(await Promise.all(Array.from({ length: 100 }, () => connect(w.port)))));
      }
      await waitFor(() => (w.proxy.connections() === 1000 ? true : undefined), { timeoutMs: 10_000, what: '1,000 pairs' });

      const t0 = performance.now();
      await w.write(aClusterData({ dbs, master: 'db2', enabled: [UID], generation: 3 }));
      await waitFor(() => clients.every((c) => c.closed), { timeoutMs: 5000, what: 'all 1,000 clients closed', intervalMs: 10 });
      const closeMs = performance.now() - t0;
      process.stdout.write(`1,000 idle connections closed ${Math.round(closeMs)} ms after the primary changed\n`);
      const gen3 = w.publications.find((p) => p.info.Generation === 3);
      expect(gen3?.connections).toBe(0);
      await waitForLog(w.lines, /^target changed from .* \(proxy generation 3\); closed 1000 connections$/);
      expect(await probe(w.port)).toBe('B:probe');
    });

    it('TCP no-delay and keepalive on both sides; --tcp-keepalive-idle, -interval and -count applied', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const w = await world({
        cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }),
        config: { tcpKeepaliveIdleS: 30, tcpKeepaliveCount: 3, tcpKeepaliveIntervalS: 5 },
      });
      await w.proxy.ready;
      const c = await connect(w.port);
      expect(await ask(c, 'x', 'echo')).toBe('A:x');
      // `ss -o` shows a keepalive timer (at most 30 s) on the proxy's accepted socket and on its socket to A.
      const ss = execFileSync('ss', ['-tnoH', 'state', 'established'], { encoding: 'utf8' }).split('\n');
      const timers = (local: number, peer: number) =>
        ss.filter((l) => l.includes(`127.0.0.1:${local} `) && l.includes(`127.0.0.1:${peer} `) && /timer:\(keepalive,/.test(l));
      expect(timers(w.port, c.sock.localPort ?? 0)).toHaveLength(1);
      const toA = ss.filter((l) => new RegExp(`127\\.0\\.0\\.1:${a.port}\\s*timer:\\(keepalive,([0-9.]+)(ms|sec)`).test(l));
      expect(toA).toHaveLength(1);
      const m = /timer:\(keepalive,([0-9.]+)(ms|sec)/.exec(toA[0] ?? '');
      expect(Number(m?.[1]) * (m?.[2] === 'ms' ? 0.001 : 1)).toBeLessThanOrEqual(30);
      await waitForLog(w.lines, 'TCP keepalive on both sides of every connection: idle 30 s, interval 5 s, 3 probes');
      // Read back from the kernel: the proxy runs in this process, so its sockets are ours.
      const want = { noDelay: true, keepAlive: true, idleS: 30, intervalS: 5, count: 3 };
      expect(socketOptions(w.port, c.sock.localPort ?? 0)).toEqual(want);
      expect(socketOptions(undefined, a.port)).toEqual(want);
    });
  });

  // ------------------------------------------------------------------ read-only listener

  const LSN = 50_000_000;
  const MAX_LAG = 10_000;

  /**
   * Clusterdata with primary `master` (default db1) and standbys, all converged on timeline 1 at
   * LSN 50 000 000; `lag` puts a standby's replayed LSN that many bytes behind.
   */
  function roClusterData(opts: {
    dbs: Record<string, number>;
    master?: string;
    lag?: Record<string, number>;
    generation: number;
  }): ClusterData {
    const master = opts.master ?? 'db1';
    const cd = aClusterData({ dbs: opts.dbs, master, enabled: [UID], generation: opts.generation });
    for (const db of Object.values(cd.dbs)) {
      db.status.xLogPos = LSN;
      if (db.uid !== master) {
        db.spec.role = 'standby';
        db.status.replayedXLogPos = LSN - (opts.lag?.[db.uid] ?? 0);
      }
    }
    return cd;
  }

  /** Opens a read-only connection and returns the name of the echo server behind it. */
  async function roBackend(port: number): Promise<{ c: Client; name: string }> {
    const c = await connect(port);
    const reply = await ask(c, 'who', 'a read-only echo');
    return { c, name: reply.slice(0, reply.indexOf(':')) };
  }

  describe('planned switchover: holding new connections', () => {
    /** Clusterdata fenced for a switchover (or failover) of db1 to db2 in progress, proxy generation 3. */
    function fencedFor(kind: 'switchover' | 'failover', ports: { a: number; b: number }, spec?: object): ClusterData {
      const cd = aClusterData({ dbs: { db1: ports.a, db2: ports.b }, master: '', enabled: [UID], generation: 3, ...(spec === undefined ? {} : { spec }) });
      cd.cluster.status.master = 'db1';
      cd.cluster.status.failover = {
        id: 'ev1',
        kind,
        cause: 'test',
        oldPrimary: { keeperUID: 'keeper-db1', dbUid: 'db1', xLogPos: 0 },
        newPrimary: { keeperUID: 'keeper-db2', dbUid: 'db2', xLogPos: 0 },
        phases: { declaredFailed: ISO },
      };
      return cd;
    }

    it('holds a new client while the switchover is in progress, then connects it to the new primary with the bytes it sent meanwhile', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const b = await echo('B');
      const w = await world({ cd: aClusterData({ dbs: { db1: a.port, db2: b.port }, master: 'db1', enabled: [UID], generation: 2 }) });
      await w.proxy.ready;
      const old = await connect(w.port);
      expect(await ask(old, 'x', 'the old primary')).toBe('A:x');
      await w.write(fencedFor('switchover', { a: a.port, b: b.port }));
      await waitFor(() => old.closed, { timeoutMs: 3000, what: 'the old primary session closed by the fence' });
      await waitFor(async () => (await w.published())?.Generation === 3, { timeoutMs: 3000, what: 'generation 3 acknowledged' });
      const c = await connect(w.port);
      c.sock.write('early');
      // Held: neither closed nor connected anywhere, for well past a check interval.
      await new Promise((r) => setTimeout(r, 600));
      expect(c.closed).toBe(false);
      expect(c.data).toBe('');
      expect(a.open() + b.open()).toBe(0);
      expect(await w.metric('stolon_proxy_held_connections')).toBe(1);
      // The sentinel routes the proxies to the new primary (the event moves to the history).
      const routed = aClusterData({ dbs: { db1: a.port, db2: b.port }, master: 'db2', enabled: [UID], generation: 4 });
      await w.write(routed);
      await waitFor(() => (c.data === 'B:early' ? true : undefined), { timeoutMs: 3000, what: 'the held client connected to B', intervalMs: 10 });
      expect(await ask(c, 'more', 'B again')).toBe('B:more');
      expect(a.open()).toBe(0);
      await waitForLog(w.lines, /^connected 1 held connection to the new primary 127\.0\.0\.1:\d+ \(held up to \d+ ms\)$/);
      expect(await w.metric('stolon_proxy_held_connections')).toBe(0);
      c.sock.destroy();
    });

    it('closes a held client once switchoverHoldTimeout passed without a new primary', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const b = await echo('B');
      const spec = { ...SPEC, switchoverHoldTimeout: '300ms' };
      const w = await world({ cd: fencedFor('switchover', { a: a.port, b: b.port }, spec) });
      await w.proxy.ready;
      const t0 = performance.now();
      const c = await connect(w.port);
      await waitFor(() => c.closed, { timeoutMs: 3000, what: 'the held client closed', intervalMs: 10 });
      const took = performance.now() - t0;
      expect(took).toBeGreaterThanOrEqual(290);
      expect(took).toBeLessThan(300 + SLACK_MS);
      expect(c.data).toBe('');
      await waitForLog(w.lines, /^closed held connection from .*: no new primary routed within switchoverHoldTimeout \(300 ms\)/);
      expect(await w.metric('stolon_proxy_connections_refused_total{listener="main",reason="hold_timeout"}')).toBe(1);
    });

    it('a failover keeps closing new clients at once; a store that cannot be read ends the hold', { timeout: 15_000 }, async () => {
      const a = await echo('A');
      const b = await echo('B');
      const w = await world({ cd: fencedFor('failover', { a: a.port, b: b.port }) });
      await w.proxy.ready;
      expect(await probe(w.port)).toBe('closed');
      await w.write(fencedFor('switchover', { a: a.port, b: b.port }));
      await waitForLog(w.lines, /planned switchover in progress: holding new connections/);
      const c = await connect(w.port);
      await new Promise((r) => setTimeout(r, 300));
      expect(c.closed).toBe(false);
      w.backend.setUnavailable(true);
      await waitFor(() => c.closed, { timeoutMs: 3000, what: 'the held client closed when a check failed', intervalMs: 10 });
      expect(c.data).toBe('');
      expect(await probe(w.port)).toMatch(/^(closed|refused)$/);
    });
  });

  describe('read-only listener', () => {
    it('balances over in-sync standbys only, closes connections to a standby that falls behind or is promoted, logs each change with the generation', { timeout: 30_000 }, async () => {
      const [a, s2, s3] = await Promise.all([echo('A'), echo('S2'), echo('S3')]);
      const dbs = { db1: a.port, db2: s2.port, db3: s3.port };
      const roPort = await freePort();
      const w = await world({
        cd: roClusterData({ dbs, generation: 2 }),
        config: { readOnly: { listenAddress: '127.0.0.1', port: roPort, maxLagBytes: MAX_LAG, fallbackToPrimary: false } },
      });
      await w.proxy.ready;
      expect(w.proxy.roPort()).toBe(roPort);
      await waitForLog(w.lines, `proxy listening (read-only) on 127.0.0.1:${roPort}`);
      const main = await connect(w.port);
      expect(await ask(main, 'm', 'main echo')).toBe('A:m');

      // Least connections first: four clients, two per standby, none on the primary.
      const ro: { c: Client; name: string }[] = [];
      for (let i = 0; i < 4; i++) {
        ro.push(await roBackend(roPort));
      }
      expect(ro.map((r) => r.name).sort()).toEqual(['S2', 'S2', 'S3', 'S3']);
      expect(w.proxy.connections('ro')).toBe(4);

      // db3 falls behind: its two connections are closed, db2's and the main one stay.
      await w.write(roClusterData({ dbs, lag: { db3: MAX_LAG + 1 }, generation: 2 }));
      await waitFor(() => ro.filter((r) => r.name === 'S3').every((r) => r.c.closed), { timeoutMs: 3000, what: 'S3 connections closed' });
      expect(ro.filter((r) => r.name === 'S2').some((r) => r.c.closed)).toBe(false);
      expect(main.closed).toBe(false);
      await waitForLog(
        w.lines,
        `read-only targets changed from 127.0.0.1:${s2.port} (db db2), 127.0.0.1:${s3.port} (db db3) to 127.0.0.1:${s2.port} (db db2) (proxy generation 2); closed 2 read-only connections`,
      );
      expect((await roBackend(roPort)).name).toBe('S2');

      // db2 promoted (db1 gone): every connection to db2 on the read-only port is closed; db3 caught up.
      const promoted: Record<string, number> = { db2: s2.port, db3: s3.port };
      await w.write(roClusterData({ dbs: promoted, master: 'db2', generation: 3 }));
      await waitFor(() => ro.every((r) => r.c.closed) && main.closed, { timeoutMs: 3000, what: 'connections to db2 (read-only) and to db1 (main) closed' });
      await waitFor(async () => (await roBackend(roPort)).name === 'S3', { timeoutMs: 3000, what: 'read-only to S3' });
      expect(await probe(w.port)).toBe('S2:probe');
      await waitForLog(w.lines, /^read-only targets changed from 127\.0\.0\.1:\d+ \(db db2\) to .*\(db db3\) \(proxy generation 3\); closed 3 read-only connections$/);
    });

    it('no standby qualifies: closed at once, or sent to the primary with fallbackToPrimary (and moved off it when a standby qualifies again)', { timeout: 30_000 }, async () => {
      const [a, s2] = await Promise.all([echo('A'), echo('S2')]);
      const dbs = { db1: a.port, db2: s2.port };
      const behind = roClusterData({ dbs, lag: { db2: MAX_LAG + 1 }, generation: 2 });
      const strict = await world({
        cd: behind,
        config: { readOnly: { listenAddress: '127.0.0.1', port: 0, maxLagBytes: MAX_LAG, fallbackToPrimary: false } },
      });
      await strict.proxy.ready;
      expect(await probe(strict.proxy.roPort() ?? 0)).toBe('closed');

      const w = await world({
        cd: behind,
        config: { readOnly: { listenAddress: '127.0.0.1', port: 0, maxLagBytes: MAX_LAG, fallbackToPrimary: true } },
      });
      await w.proxy.ready;
      const roPort = w.proxy.roPort() ?? 0;
      const onPrimary = await roBackend(roPort);
      expect(onPrimary.name).toBe('A');
      await waitForLog(w.lines, /read-only: no standby within 10000 B, falling back to the primary 127\.0\.0\.1:\d+ \(db db1\); excluded db2: lag 10001 B > 10000 B/);

      await w.write(roClusterData({ dbs, generation: 2 }));
      await waitFor(() => onPrimary.c.closed, { timeoutMs: 3000, what: 'the fallback connection closed once a standby qualifies' });
      expect((await roBackend(roPort)).name).toBe('S2');

      // The primary is fenced (masterDbUid ""): the fallback cannot route to it either.
      const fenced = roClusterData({ dbs, lag: { db2: MAX_LAG + 1 }, generation: 3 });
      fenced.proxy.spec.masterDbUid = '';
      await w.write(fenced);
      await waitFor(async () => (await w.published())?.Generation === 3, { timeoutMs: 3000, what: 'generation 3 published' });
      expect(await probe(roPort)).toBe('closed');
    });

    it('a failed store read names the primary and the standbys it still routes to until the watchdog fires', { timeout: 30_000 }, async () => {
      const [a, s2] = await Promise.all([echo('A'), echo('S2')]);
      const cd = roClusterData({ dbs: { db1: a.port, db2: s2.port }, generation: 2 });
      // proxyTimeout 3 s: the first failed check (within a check interval) comes long before the watchdog.
      cd.cluster.spec.proxyTimeout = '3s';
      const w = await world({
        cd,
        config: { readOnly: { listenAddress: '127.0.0.1', port: 0, maxLagBytes: MAX_LAG, fallbackToPrimary: false } },
      });
      await w.proxy.ready;
      expect((await roBackend(w.proxy.roPort() ?? 0)).name).toBe('S2');

      w.backend.setUnavailable(true);
      const first = await waitForLog(w.lines, /^store unreachable: /);
      expect(first.msg).toBe(
        'store unreachable: reading clusterdata: memory store unavailable (test hook) during getClusterData; ' +
          `still routing to 127.0.0.1:${a.port} (db db1) and read-only clients to 127.0.0.1:${s2.port} (db db2) ` +
          'until the watchdog fires (no successful check within proxyTimeout, 3000 ms)',
      );
      expect(first.roTargets).toBe(`127.0.0.1:${s2.port} (db db2)`);
    });

    it('fails closed with the main port: the watchdog closes read-only connections and listener; invalid clusterdata routes nowhere', { timeout: 30_000 }, async () => {
      const [a, s2] = await Promise.all([echo('A'), echo('S2')]);
      const dbs = { db1: a.port, db2: s2.port };
      const good = roClusterData({ dbs, generation: 2 });
      const w = await world({
        cd: good,
        config: { readOnly: { listenAddress: '127.0.0.1', port: 0, maxLagBytes: MAX_LAG, fallbackToPrimary: true } },
      });
      await w.proxy.ready;
      const roPort = w.proxy.roPort() ?? 0;
      const r = await roBackend(roPort);
      expect(r.name).toBe('S2');

      const t0 = performance.now();
      w.setHanging(true);
      await waitFor(() => r.c.closed, { timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS, what: 'read-only client closed', intervalMs: 10 });
      await waitFor(async () => (await probe(roPort)) === 'refused', { timeoutMs: PROXY_TIMEOUT_MS + SLACK_MS, what: 'read-only listener closed', intervalMs: 20 });
      expect(performance.now() - t0).toBeLessThan(PROXY_TIMEOUT_MS + SLACK_MS);
      await waitForLog(w.lines, /^no successful check within proxyTimeout \(1000 ms\): target changed from .* to none, read-only targets changed from .*\(db db2\) to none .*closing the listeners until a check succeeds$/);
      expect(w.lines.some((l) => l.msg === `proxy stopped listening (read-only) on 127.0.0.1:${roPort}`)).toBe(true);

      w.setHanging(false);
      await waitFor(async () => (await probe(roPort)) === 'S2:probe', { timeoutMs: 3000, what: 'read-only routing again' });

      const r2 = await roBackend(roPort);
      await w.admin.overwriteClusterData(JSON.stringify({ ...good, formatVersion: 2 }));
      await waitFor(() => r2.c.closed, { timeoutMs: 2000, what: 'read-only client closed on invalid clusterdata' });
      expect(await probe(roPort)).toBe('closed');
    });
  });
});

describe('native relay without the main thread', () => {
  it('a stalled event loop (no check, no watchdog) still stops relaying at the watchdog deadline: the relay threads close the connection', { timeout: 20_000 }, async () => {
    const a = await echo('A');
    const w = await world({
      cd: aClusterData({ dbs: { db1: a.port }, master: 'db1', enabled: [UID], generation: 2 }),
      config: { dataPath: 'native' },
    });
    await w.proxy.ready;
    const c = await connect(w.port);
    expect(await ask(c, 'x', 'echo')).toBe('A:x');
    // Hold this thread (the proxy's, the echo server's and the client's) well past proxyTimeout.
    const until = performance.now() + PROXY_TIMEOUT_MS + SLACK_MS + 500;
    while (performance.now() < until) {
      // a synchronous call that never yields
    }
    const closed = await waitForLog(w.lines, /^connection \d+ closed: /);
    expect(closed.msg).toMatch(/closed: the proxy did not renew its routing in time \(main thread stalled\?\): nothing is relayed past proxyTimeout$/);
    await waitFor(() => c.closed, { timeoutMs: 3000, what: 'the client closed' });
  });
});

describe('failsafe mode: asking the primary keeper while the store is unreachable', () => {
  it('asks every 250 ms, not every proxyCheckInterval, so a yes that comes shortly before the watchdog would fire still keeps it routing', { timeout: 20_000 }, async () => {
    // The primary's keeper says yes only from 2.3 s after the store was lost, 0.7–1.7 s before this
    // proxy's own deadline (its first confirmation round can come that late: docs/architecture.md,
    // "Store outages: failsafe mode").
    // Asked every proxyCheckInterval (1 s), the proxy may ask just before that and next only after
    // its watchdog fired; every 250 ms it cannot miss it.
    const asks: number[] = [];
    let yesFrom = Infinity;
    const api = http.createServer((_req, res) => {
      asks.push(performance.now());
      const holds = performance.now() >= yesFrom;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(holds ? { holds: true, remainingMs: 4000, reason: 'confirmed' } : { holds: false, remainingMs: 0, reason: 'no confirmed round yet' }));
    });
    await new Promise<void>((r) => api.listen({ host: '127.0.0.1', port: 0 }, r));
    cleanups.push(() => new Promise<void>((r) => api.close(() => r())));
    const apiPort = (api.address() as net.AddressInfo).port;
    const primary = await echo('primary');
    const cd = aClusterData({ dbs: { d1: primary.port }, master: 'd1', enabled: [UID], generation: 1, spec: { initMode: 'new', proxyCheckInterval: '1s', proxyTimeout: '4s' } });
    cd.keepers['keeper-d1']!.status.memberAddress = `127.0.0.1:${apiPort}`;
    const w = await world({ cd, config: { memberToken: 'x'.repeat(32) } });
    await waitForLog(w.lines, /^routing to /, 5000);
    const lostAt = performance.now();
    w.setHanging(true);
    // The proxy's deadline: its last good check's start (0–1 s before) + proxyTimeout (4 s).
    yesFrom = lostAt + 2300;
    await waitForLog(w.lines, /keeper confirms it holds the role/, 8000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(w.lines.filter((l) => new RegExp(watchdogFired(4000)).test(l.msg))).toEqual([]);
    const c = await connect(w.port);
    c.sock.write('q');
    await waitFor(() => (c.data === 'primary:q' ? true : undefined), { timeoutMs: 2000, what: 'a new connection routed to the primary' });
    c.sock.destroy();
    // Every ask up to the first one answered yes, in order: no more than 250 ms (+ timer slack) apart.
    const upTo = asks.slice(0, asks.findIndex((t) => t >= yesFrom) + 1);
    expect(upTo.length).toBeGreaterThan(2);
    const gaps = upTo.slice(1).map((t, i) => Math.round(t - upTo[i]!));
    expect(gaps.filter((g) => g >= 400)).toEqual([]);
  });
});
