"""Drives the Consul stand-in with python-consul 0.7.1 (Debian's python3-consul) and prints what
the client saw, as one JSON object, for consul-standin-python.integration.test.ts to check.

Usage: consul-standin-check.py PORT ACL_PORT ACL_TOKEN
PORT serves without ACLs and with session_ttl_min 1s; ACL_PORT requires ACL_TOKEN.
"""
import json
import sys
import threading
import time

import consul
from consul.base import CB

port, acl_port, acl_token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host='127.0.0.1', port=port)
out = {'version': consul.__version__}


def error_of(fn):
    """The class name and message of what fn raises, or None."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any client error is an observation
        return [type(e).__name__, str(e)]
    return None


# KV: put, get, missing key, flags, raw bytes.
out['put'] = c.kv.put('py/a', 'one')
idx_a, a = c.kv.get('py/a')
out['get'] = {'index': idx_a, 'Key': a['Key'], 'Value': a['Value'].decode(), 'Flags': a['Flags'],
              'CreateIndex': a['CreateIndex'], 'ModifyIndex': a['ModifyIndex'], 'LockIndex': a['LockIndex']}
idx_missing, missing = c.kv.get('py/missing')
out['missing'] = {'index': idx_missing, 'data': missing}
c.kv.put('py/flags', 'f', flags=7)
out['flags'] = c.kv.get('py/flags')[1]['Flags']
c.kv.put('py/empty', None)
out['empty_value'] = c.kv.get('py/empty')[1]['Value']

# Check-and-set.
out['cas_create'] = c.kv.put('py/c', 'x', cas=0)
out['cas_create_again'] = c.kv.put('py/c', 'y', cas=0)
_, cv = c.kv.get('py/c')
out['cas_stale'] = c.kv.put('py/c', 'y', cas=cv['ModifyIndex'] + 100)
out['cas_ok'] = c.kv.put('py/c', 'y', cas=cv['ModifyIndex'])
out['cas_value'] = c.kv.get('py/c')[1]['Value'].decode()

# Recurse and keys.
for k in ('py/dir/1', 'py/dir/2', 'py/dir/sub/3'):
    c.kv.put(k, k)
idx_list, lst = c.kv.get('py/dir/', recurse=True)
out['recurse_keys'] = [e['Key'] for e in lst]
out['recurse_values'] = [e['Value'].decode() for e in lst]
out['keys'] = c.kv.get('py/dir/', keys=True)[1]
out['keys_sep'] = c.kv.get('py/dir/', keys=True, separator='/')[1]

# Delete: plain, cas, recurse; the prefix index rises.
out['delete'] = c.kv.delete('py/dir/1')
idx_after, lst = c.kv.get('py/dir/', recurse=True)
out['recurse_after_delete'] = [e['Key'] for e in lst]
out['prefix_index_rose'] = int(idx_after) > int(idx_list)
_, cv = c.kv.get('py/c')
out['delete_cas_stale'] = c.kv.delete('py/c', cas=cv['ModifyIndex'] - 1)
out['delete_cas_ok'] = c.kv.delete('py/c', cas=cv['ModifyIndex'])
out['delete_recurse'] = c.kv.delete('py/dir/', recurse=True)
out['recurse_after_tree_delete'] = c.kv.get('py/dir/', recurse=True)[1]

# Sessions: create (TTL 10 s, python-consul's minimum), info, renew, list, locks, destroy.
s1 = c.session.create(name='py-s1', ttl=10, behavior='delete', lock_delay=0)
s2 = c.session.create(name='py-s2')
_, info = c.session.info(s1)
out['session_info'] = {k: info[k] for k in ('Name', 'Behavior', 'TTL', 'LockDelay', 'Node')}
out['session_renew'] = {k: c.session.renew(s1)[k] for k in ('ID', 'TTL')}
out['session_renew_is_s1'] = c.session.renew(s1)['ID'] == s1
out['session_list'] = sorted(s['Name'] for s in c.session.list()[1])
out['acquire'] = c.kv.put('py/lock', 'held', acquire=s1)
out['acquire_other'] = c.kv.put('py/lock', 'other', acquire=s2)
_, lk = c.kv.get('py/lock')
out['lock_entry'] = {'Session_is_s1': lk.get('Session') == s1, 'LockIndex': lk['LockIndex'], 'Value': lk['Value'].decode()}
out['release_other'] = c.kv.put('py/lock', 'x', release=s2)
out['release'] = c.kv.put('py/lock', 'free', release=s1)
_, lk = c.kv.get('py/lock')
out['released_entry'] = {'has_session': 'Session' in lk, 'LockIndex': lk['LockIndex'], 'Value': lk['Value'].decode()}
out['acquire_after_release'] = c.kv.put('py/lock', 'two', acquire=s2)
out['acquire_bad_session'] = error_of(lambda: c.kv.put('py/lock2', 'x', acquire='00000000-0000-0000-0000-000000000000'))
out['destroy'] = c.session.destroy(s2)
_, lk = c.kv.get('py/lock')
out['after_destroy_release_session'] = {'has_session': 'Session' in lk, 'Value': lk['Value'].decode()}
# s2 was destroyed with the default 15 s lock-delay: s1 cannot take the key now.
out['acquire_in_lock_delay'] = c.kv.put('py/lock', 'three', acquire=s1)
out['renew_destroyed'] = error_of(lambda: c.session.renew(s2))
out['ttl_too_small'] = error_of(lambda: c.http.put(CB.json(is_id=True), '/v1/session/create', data=json.dumps({'ttl': '0.5s'})))

# Blocking read: a get with index waits until a put from another thread.
c.kv.put('py/b', 'v1')
idx_b, _ = c.kv.get('py/b')


def later():
    time.sleep(0.5)
    c2 = consul.Consul(host='127.0.0.1', port=port)
    c2.kv.put('py/b', 'v2')


t0 = time.time()
threading.Thread(target=later).start()
idx_b2, b2 = c.kv.get('py/b', index=idx_b, wait='5s')
out['blocking'] = {'elapsed': time.time() - t0, 'value': b2['Value'].decode(), 'index_rose': int(idx_b2) > int(idx_b)}
t0 = time.time()
idx_b3, _ = c.kv.get('py/b', index=idx_b2, wait='1s')
out['blocking_timeout'] = {'elapsed': time.time() - t0, 'same_index': idx_b3 == idx_b2}

# TTL expiry (session_ttl_min is 1 s here; python-consul itself refuses TTLs under 10 s, so the
# session is created the way Patroni does it, with a raw PUT): TTL 1 s, behavior delete.
s3 = c.http.put(CB.json(is_id=True), '/v1/session/create', data=json.dumps({'name': 'py-ttl', 'ttl': '1s', 'behavior': 'delete', 'lockdelay': '1ms'}))
c.kv.put('py/ttl', 'x', acquire=s3)
idx_t, _ = c.kv.get('py/ttl')
t0 = time.time()
idx_t2, gone = c.kv.get('py/ttl', index=idx_t, wait='10s')
out['ttl_expiry'] = {'elapsed': time.time() - t0, 'gone': gone is None, 'index_rose': int(idx_t2) > int(idx_t)}
out['ttl_session_info'] = c.session.info(s3)[1]

# Status and agent.
out['leader'] = c.status.leader()
out['peers'] = c.status.peers()
out['agent_node'] = c.agent.self()['Config']['NodeName']

# ACL.
a_ok = consul.Consul(host='127.0.0.1', port=acl_port, token=acl_token)
a_none = consul.Consul(host='127.0.0.1', port=acl_port)
a_bad = consul.Consul(host='127.0.0.1', port=acl_port, token='wrong-token')
out['acl_put'] = a_ok.kv.put('acl/k', 'v')
out['acl_get'] = a_ok.kv.get('acl/k')[1]['Value'].decode()
# python-consul 0.7.1 sends no token with session calls (Patroni's own HTTP client adds X-Consul-Token):
# with ACLs on, its session.create is the anonymous token's.
out['acl_session_without_token'] = error_of(lambda: a_ok.session.create(name='acl'))
out['acl_none_put'] = error_of(lambda: a_none.kv.put('acl/k', 'w'))
out['acl_none_get'] = error_of(lambda: a_none.kv.get('acl/k'))
out['acl_none_recurse'] = a_none.kv.get('acl/', recurse=True)[1]
out['acl_bad_get'] = error_of(lambda: a_bad.kv.get('acl/k'))
out['acl_none_session'] = error_of(lambda: a_none.session.create(name='x'))

print(json.dumps(out))
