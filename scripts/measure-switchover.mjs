#!/usr/bin/env node
/**
 * Measures how long `stolonctl switchover` takes to return compared with when writes through a
 * proxy resume. Against a running cluster (e.g. `npm run cluster`):
 *   node scripts/measure-switchover.mjs --proxy 127.0.0.1:25432 --password-file DIR/su-password \
 *     [--runs 3] -- <stolonctl store flags: --cluster-name X --store-backend etcdv3 --store-endpoints URL>
 * A writer inserts one row per new connection through the proxy (as a reconnecting application);
 * for every run it prints, in ms after the command started: when the request was written and the
 * proxies routed (from `stolonctl events`), when the first write after the outage was acknowledged,
 * and when the command returned.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const own = sep < 0 ? argv : argv.slice(0, sep);
const storeFlags = sep < 0 ? [] : argv.slice(sep + 1);
const opt = (name, dflt) => {
  const i = own.indexOf(`--${name}`);
  return i >= 0 ? own[i + 1] : dflt;
};
const [host, port] = (opt('proxy', '127.0.0.1:25432') ?? '').split(':');
const password = readFileSync(opt('password-file', '.local-cluster/su-password'), 'utf8').trim();
const runs = Number(opt('runs', '3'));
const stolonctl = resolve(dirname(fileURLToPath(import.meta.url)), '../packages/stolonctl/dist/bin.js');
const conn = { host, port: Number(port), user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 1000 };

async function sql(text, params) {
  const c = new pg.Client(conn);
  c.on('error', () => {});
  try {
    await c.connect();
    return await c.query(text, params);
  } finally {
    await c.end().catch(() => {});
  }
}

function ctl(args) {
  return new Promise((res) => {
    execFile(process.execPath, [stolonctl, ...storeFlags, ...args], (err, stdout, stderr) => res({ code: err?.code ?? 0, stdout, stderr }));
  });
}

await sql('create table if not exists measure_sw (id bigint primary key, at timestamptz default now())');
let id = Date.now() * 10;
for (let run = 1; run <= runs; run++) {
  const acked = [];
  let stop = false;
  const writer = (async () => {
    while (!stop) {
      id += 1;
      try {
        await sql('insert into measure_sw (id) values ($1)', [id]);
        acked.push(Date.now());
      } catch {
        await sleep(20);
      }
    }
  })();
  await sleep(1500);
  const t0 = Date.now();
  const r = await ctl(['switchover', '--yes']);
  const returned = Date.now() - t0;
  await sleep(3000);
  stop = true;
  await writer;
  // The write outage is the longest gap between acknowledged writes after t0.
  let gapEnd = 0;
  let gap = 0;
  for (let i = 1; i < acked.length; i++) {
    if (acked[i] >= t0 && acked[i] - acked[i - 1] > gap) {
      gap = acked[i] - acked[i - 1];
      gapEnd = acked[i];
    }
  }
  const resumed = gapEnd - t0;
  // The sentinel's trace of this switchover: when the request was written and the proxies routed.
  const ev = JSON.parse((await ctl(['events', '--format', 'json', '--last', '1'])).stdout).at(-1) ?? {};
  const requested = Date.parse((/at (\S+)$/.exec(ev.cause ?? '') ?? [])[1] ?? '') - t0;
  const routed = Date.parse(ev.phases?.proxiesRouted ?? '') - t0;
  process.stdout.write(
    `run ${run}: exit ${r.code}; request written at ${requested} ms, proxies routed at ${routed} ms, writes resumed at ${resumed} ms ` +
      `(outage ${gap} ms), command returned at ${returned} ms: ${returned - resumed} ms after writes resumed, ${returned - routed} ms after routing\n`,
  );
  if (r.code !== 0) {
    process.stdout.write(r.stdout + r.stderr);
  }
  await sleep(4000);
}
