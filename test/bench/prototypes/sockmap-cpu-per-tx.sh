#!/bin/bash
# One `pgbench -n -S` run through a proxy, with the CPU time per transaction of everything the
# transaction touches, read from /proc (clock ticks of 10 ms; use runs of 8 s or more):
#   proxy    the proxy process (PID; 0 for a direct run or a proxy whose work is in the kernel)
#   postgres the postmaster, its live children and the children it reaped during the run
#   pgbench  pgbench itself (this shell's reaped children)
#   kworker  every kworker and ksoftirqd thread (sockmap redirection runs in a kworker); includes
#            the kernel work of anything else on the machine, about 0-2 us per transaction here
# usage: PGDATA=DIR [PG_BIN=DIR] sockmap-cpu-per-tx.sh NAME PORT PID [SECONDS=8] [CLIENTS=16]
# Prints: NAME tps=... lat=... us/tx: proxy=... postgres=... pgbench=... kworker=... sum=...
# Trust authentication as user postgres on 127.0.0.1 is assumed (a scratch cluster).
B=${PG_BIN:-/usr/lib/postgresql/15/bin}
name=$1 port=$2 pid=$3 d=${4:-8} cl=${5:-16}
PM=$(head -1 "${PGDATA:?set PGDATA to the data directory of the scratch cluster}/postmaster.pid")
cpu() { [ "$1" = 0 ] && echo 0 || awk '{print $14+$15}' /proc/$1/stat 2>/dev/null || echo 0; }
pgcpu() { local s; s=$(awk '{print $14+$15+$16+$17}' /proc/$PM/stat); for p in $(pgrep -P $PM); do s=$((s + $(cpu $p))); done; echo $s; }
kw() { cat /proc/[0-9]*/stat 2>/dev/null | awk '/\((kworker|ksoftirqd)/ { sub(/.*\) /, ""); s += $12 + $13 } END { print s + 0 }'; }
p0=$(cpu $pid); g0=$(pgcpu); k0=$(kw)
out=$($B/pgbench -h 127.0.0.1 -p $port -U postgres -n -S -c $cl -j $((cl<2?cl:2)) -T $d postgres 2>&1)
sleep 0.5; p1=$(cpu $pid); g1=$(pgcpu); k1=$(kw)
tf=$(mktemp); times > "$tf"
bt=$(tail -1 "$tf" | awk '{gsub(/[ms]/," "); print ($1*60+$2+$3*60+$4)*100}'); rm -f "$tf"
tps=$(echo "$out" | sed -n 's/tps = \([0-9.]*\) (without.*/\1/p'); tx=$(echo "$out" | sed -n 's/.*actually processed: \([0-9]*\).*/\1/p'); lat=$(echo "$out" | sed -n 's/latency average = \([0-9.]*\) ms/\1/p')
awk -v n=$name -v t=$tps -v tx=$tx -v l=$lat -v p=$((p1-p0)) -v g=$((g1-g0)) -v k=$((k1-k0)) -v b=$bt 'BEGIN{printf "%-8s tps=%7.0f lat=%.3f  us/tx: proxy=%5.1f postgres=%5.1f pgbench=%5.1f kworker=%5.1f sum=%5.1f\n", n, t, l, p*1e4/tx, g*1e4/tx, b*1e4/tx, k*1e4/tx, (p+g+k+b)*1e4/tx}'
