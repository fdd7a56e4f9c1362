"""Drives Patroni's own Kubernetes client (patroni.dcs.kubernetes, as installed) against an API server.

Used by test/harness/src/kube-standin-patroni.test.ts to check the Kubernetes API stand-in with a
client written by others. Patroni's DCS object for member `node1` of cluster `demo`, with ConfigMaps
(use_endpoints: false) in NAMESPACE:

1. get_cluster() (its two ObjectCache threads list, then watch, the labelled pods and ConfigMaps),
   attempt_to_acquire_leader() (creates ConfigMap demo-leader), get_cluster() again, touch_member()
   (patches its pod: role=master and its status);
2. prints {"ready": ...} and waits until its watch delivers ConfigMap `from-outside` (the test
   creates it then), up to WAIT seconds;
3. renews the leader ConfigMap (a patch at the resourceVersion it saw), then tries again at a stale
   resourceVersion (a real server: 409, "Could not take out TTL lock");
4. prints {"done": ...} and exits.

usage: patroni-kube-client.py KUBECONFIG CONTEXT NAMESPACE WAIT
"""
import json
import logging
import os
import sys
import time

kubeconfig, context, namespace, wait = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
# Patroni reads KUBECONFIG when the module is imported.
os.environ['KUBECONFIG'] = kubeconfig
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(levelname)s %(message)s')

from patroni.dcs.kubernetes import Kubernetes  # noqa: E402


def say(**kv):
    print(json.dumps(kv), flush=True)


def main():
    dcs = Kubernetes({'scope': 'demo', 'name': 'node1', 'namespace': namespace, 'labels': {'application': 'patroni'},
                      'use_endpoints': False, 'ttl': 30, 'loop_wait': 10, 'retry_timeout': 10, 'context': context})
    dcs.set_ttl(30)
    cluster = dcs.get_cluster()
    initial_leader = cluster.leader and cluster.leader.name
    acquired = bool(dcs.attempt_to_acquire_leader())
    dcs.get_cluster()  # now with itself as the leader: touch_member labels the pod role=master
    touched = bool(dcs.touch_member({'state': 'running', 'role': 'master',
                                     'conn_url': 'postgres://127.0.0.1:5432/postgres',
                                     'api_url': 'http://127.0.0.1:8008/patroni'}))
    say(ready=True, initial_leader=initial_leader, acquired=acquired, touched=touched)

    deadline = time.time() + wait
    seen = None
    while time.time() < deadline:
        obj = dcs._kinds.get('from-outside')
        if obj is not None:
            seen = obj.metadata.annotations or {}
            break
        time.sleep(0.05)

    cluster = dcs.get_cluster()
    renewed = bool(dcs.attempt_to_acquire_leader())
    dcs._leader_resource_version = '1'
    stale = bool(dcs.attempt_to_acquire_leader())
    say(done=True, seen_outside_write=seen, leader=cluster.leader and cluster.leader.name,
        members=sorted(m.name for m in cluster.members), renewed=renewed, stale_accepted=stale)


try:
    main()
finally:
    sys.stdout.flush()
    # The ObjectCache threads block on their watch streams; do not wait for them.
    os._exit(0)
