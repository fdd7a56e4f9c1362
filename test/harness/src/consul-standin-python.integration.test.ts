/**
 * An independent check of the Consul stand-in: Debian's python3-consul (python-consul 0.7.1, the
 * client Patroni's Consul DCS is built on) drives it through KV put/get/cas/recurse/keys/delete,
 * sessions with TTLs, locks, a blocking read woken by a put, a TTL expiry and ACLs
 * (consul-standin-check.py), and this file checks what the client saw. Where the client and the
 * stand-in disagree, the stand-in is wrong. Needs /usr/bin/python3 with python3-consul
 * (scripts/setup.sh installs it).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulStandin, type ConsulStandin } from './consul-standin.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./consul-standin-check.py', import.meta.url));
const TOKEN = 'py-acl-token';

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

type Seen = Record<string, unknown>;

describe('Consul stand-in driven by python-consul 0.7.1', () => {
  let plain: ConsulStandin;
  let acl: ConsulStandin;
  let seen: Seen;

  beforeAll(async () => {
    const probe = await run(PYTHON, ['-c', 'import consul; print(consul.__version__)'], 20_000);
    if (probe.code !== 0) {
      throw new Error(`${PYTHON} cannot import consul (apt-get install -y python3-consul, or npm run setup): ${probe.stderr}`);
    }
    plain = await startConsulStandin({ sessionTtlMin: '1s' });
    acl = await startConsulStandin({ aclToken: TOKEN });
    const r = await run(PYTHON, [SCRIPT, String(plain.port), String(acl.port), TOKEN], 50_000);
    if (r.code !== 0) {
      throw new Error(`consul-standin-check.py failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
    }
    seen = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Seen;
  }, 60_000);

  afterAll(async () => {
    await plain?.close();
    await acl?.close();
  });

  it('is python-consul 0.7.1', () => {
    expect(seen['version']).toBe('0.7.1');
  });

  it('reads and writes keys as python-consul expects', () => {
    expect(seen['put']).toBe(true);
    const get = seen['get'] as Record<string, unknown>;
    expect(get).toMatchObject({ Key: 'py/a', Value: 'one', Flags: 0, LockIndex: 0 });
    expect(get['CreateIndex']).toBe(get['ModifyIndex']);
    expect(String(get['index'])).toBe(String(get['ModifyIndex']));
    const missing = seen['missing'] as Record<string, unknown>;
    expect(missing['data']).toBeNull();
    expect(Number(missing['index'])).toBeGreaterThanOrEqual(1);
    expect(seen['flags']).toBe(7);
    expect(seen['empty_value']).toBeNull();
  });

  it('does check-and-set', () => {
    expect([seen['cas_create'], seen['cas_create_again'], seen['cas_stale'], seen['cas_ok']]).toEqual([true, false, false, true]);
    expect(seen['cas_value']).toBe('y');
  });

  it('lists recursively and by keys, and deletes (plain, cas, recurse)', () => {
    expect(seen['recurse_keys']).toEqual(['py/dir/1', 'py/dir/2', 'py/dir/sub/3']);
    expect(seen['recurse_values']).toEqual(['py/dir/1', 'py/dir/2', 'py/dir/sub/3']);
    expect(seen['keys']).toEqual(['py/dir/1', 'py/dir/2', 'py/dir/sub/3']);
    expect(seen['keys_sep']).toEqual(['py/dir/1', 'py/dir/2', 'py/dir/sub/']);
    expect(seen['delete']).toBe(true);
    expect(seen['recurse_after_delete']).toEqual(['py/dir/2', 'py/dir/sub/3']);
    expect(seen['prefix_index_rose']).toBe(true);
    expect([seen['delete_cas_stale'], seen['delete_cas_ok'], seen['delete_recurse']]).toEqual([false, true, true]);
    expect(seen['recurse_after_tree_delete']).toBeNull();
  });

  it('creates, renews, lists and destroys sessions, and refuses a TTL under session_ttl_min as Patroni parses it', () => {
    expect(seen['session_info']).toEqual({ Name: 'py-s1', Behavior: 'delete', TTL: '10s', LockDelay: 0, Node: 'consul-standin' });
    expect(seen['session_renew']).toMatchObject({ TTL: '10s' });
    expect(seen['session_renew_is_s1']).toBe(true);
    expect(seen['session_list']).toEqual(['py-s1', 'py-s2']);
    expect(seen['destroy']).toBe(true);
    expect(seen['renew_destroyed']).toEqual(['NotFound', expect.stringMatching(/^Session id '.+' not found$/)]);
    // Patroni's HTTP client recognises this error by `body.startswith('Invalid Session TTL')`.
    expect(seen['ttl_too_small']).toEqual(['ConsulException', "500 Invalid Session TTL '500000000', must be between [1s=24h0m0s]"]);
  });

  it('acquires and releases locks, with lock-delay after a destroy', () => {
    expect([seen['acquire'], seen['acquire_other']]).toEqual([true, false]);
    expect(seen['lock_entry']).toEqual({ Session_is_s1: true, LockIndex: 1, Value: 'held' });
    expect([seen['release_other'], seen['release']]).toEqual([false, true]);
    expect(seen['released_entry']).toEqual({ has_session: false, LockIndex: 1, Value: 'free' });
    expect(seen['acquire_after_release']).toBe(true);
    // Patroni's HTTP client recognises this error by `body.startswith('invalid session')`.
    expect(seen['acquire_bad_session']).toEqual(['ConsulException', '500 invalid session "00000000-0000-0000-0000-000000000000"']);
    expect(seen['after_destroy_release_session']).toEqual({ has_session: false, Value: 'two' });
    expect(seen['acquire_in_lock_delay']).toBe(false);
  });

  it('answers a blocking read when another client writes, and after wait otherwise', () => {
    const b = seen['blocking'] as { elapsed: number; value: string; index_rose: boolean };
    expect(b.value).toBe('v2');
    expect(b.index_rose).toBe(true);
    expect(b.elapsed).toBeGreaterThanOrEqual(0.4);
    expect(b.elapsed).toBeLessThan(2);
    const t = seen['blocking_timeout'] as { elapsed: number; same_index: boolean };
    expect(t.same_index).toBe(true);
    expect(t.elapsed).toBeGreaterThanOrEqual(0.95);
    expect(t.elapsed).toBeLessThan(1 + 1 / 16 + 0.5);
  });

  it('invalidates a TTL session at TTL × 2 and deletes its key (behavior delete), waking the blocked reader', () => {
    const e = seen['ttl_expiry'] as { elapsed: number; gone: boolean; index_rose: boolean };
    expect(e.gone).toBe(true);
    expect(e.index_rose).toBe(true);
    expect(e.elapsed).toBeGreaterThanOrEqual(1.5);
    expect(e.elapsed).toBeLessThan(3.5);
    expect(seen['ttl_session_info']).toBeNull();
  });

  it('answers status and agent calls', () => {
    expect(seen['leader']).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(seen['peers']).toEqual([seen['leader']]);
    expect(seen['agent_node']).toBe('consul-standin');
  });

  it('enforces the ACL token as Consul does for python-consul', () => {
    expect(seen['acl_put']).toBe(true);
    expect(seen['acl_get']).toBe('v');
    expect(seen['acl_none_put']).toEqual(['ACLPermissionDenied', expect.stringMatching(/^Permission denied: anonymous token lacks permission 'key:write' on "acl\/k"/)]);
    expect(seen['acl_none_get']).toEqual(['ACLPermissionDenied', expect.stringMatching(/^Permission denied/)]);
    expect(seen['acl_none_recurse']).toBeNull();
    expect(seen['acl_bad_get']).toEqual(['ACLPermissionDenied', 'ACL not found']);
    expect(seen['acl_session_without_token']).toEqual(['ACLPermissionDenied', expect.stringMatching(/^Permission denied: anonymous token lacks permission 'session:write'/)]);
    expect(seen['acl_none_session']).toEqual(['ACLPermissionDenied', expect.stringMatching(/^Permission denied/)]);
  });
});
