#!/usr/bin/env bash
# Sets up a fresh machine for stolon-ts: etcd (Debian's etcd-server), the compilers, podman for the
# image test, python3-consul and Patroni for the Consul stand-in's checks, npm dependencies, build.
# Idempotent; safe to run again. Needs PostgreSQL server binaries: $PG_BIN, else `pg_config --bindir`
# when it holds postgres, else /usr/lib/postgresql/15/bin (the order of resolvePgBinDir in packages/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The chaos suite cuts a keeper's network namespace off with iptables DROP rules.
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
# The proxy's native relay (packages/proxy/native/relay.c) is built by node-gyp: python3, make, a C
# compiler, and g++, which node-gyp's Makefile links the addon with ($(CXX)); Debian's gcc lacks it.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# `npm run test:image` builds images/Dockerfile and runs its containers with podman (runc, not
# crun, which refuses this kernel's cgroups) from base images made with debootstrap.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need_apt+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
# The stand-ins' independent checks: Debian's python-consul run by /usr/bin/python3
# (test/harness/src/consul-standin-python.integration.test.ts), Patroni 3.0.2 with its Consul DCS
# (test/e2e/consul-standin-patroni.backends.test.ts, which runs PostgreSQL as the postgres OS user) and
# Patroni's own Kubernetes client (test/harness/src/kube-standin-patroni.test.ts, with
# /usr/bin/patroni's interpreter).
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import consul' >/dev/null 2>&1; } || need_apt+=(python3-consul)
[ -x /usr/bin/patroni ] || need_apt+=(patroni)
# The monitoring tests and `npm run bench:metrics` run a real Prometheus, and promtool checks the
# programs' /metrics and deploy/components/monitoring's rules (test/harness/src/prometheus.ts).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The backup tests and `npm run bench:backup` run pgBackRest; the S3 test makes its certificate with openssl.
command -v pgbackrest >/dev/null 2>&1 || need_apt+=(pgbackrest)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; run as root or: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian enables an etcd service on install; the project starts its own etcd on free ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
# Likewise a Prometheus service (and the node exporter it recommends); the tests start their own
# Prometheus on free ports.
for svc in prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done

if [ -z "${PG_BIN:-}" ]; then
  PG_BIN=$(pg_config --bindir 2>/dev/null || true)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/postgres" ]; then
    PG_BIN=/usr/lib/postgresql/15/bin
  fi
fi
if [ ! -x "$PG_BIN/postgres" ]; then
  echo "setup: no PostgreSQL server binaries in $PG_BIN; install postgresql-15 or set PG_BIN" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "setup: running as root but there is no 'postgres' OS user for the keeper to run PostgreSQL as" >&2
  exit 1
fi

# The deploy/ manifest tests run `kubectl kustomize` (kustomize v5, kubectl >= 1.27). kubectl comes
# with the machine image; Debian's kubernetes-client (1.20) is too old, so there is nothing to install.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: warning: no kubectl on PATH; the deploy/ manifest tests will fail (they need kubectl >= 1.27)" >&2
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
npm run --silent build
# Link the programs' bins (stolon-keeper, stolon-sentinel, stolon-proxy, stolonctl) now that dist/ exists.
npm rebuild --ignore-scripts --loglevel=error >/dev/null 2>&1 || true
echo "setup: done"
