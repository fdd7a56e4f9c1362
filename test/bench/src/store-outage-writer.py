"""One writer of `bench:store-outage`, as a Python process (psycopg2, libpq).

The same loop as the worker-thread writer in store-outage-writer.ts: one connection inserting rows
into bench_outage back to back (pause_ms apart), with a client-side connect and query timeout of
query_timeout_ms, reconnecting reconnect_ms after any error. It exists because a Node writer's own
major garbage collections (8-13 ms) fell inside the largest gaps the benchmark reports, for every
system measured; this loop allocates almost nothing and has a lower floor on a lone PostgreSQL
(largest gap 10-11 ms against 16 ms, 5 ms apart).

Protocol: argv[1] is a JSON object {name, host, port, user, database, max_run_ms, pause_ms,
reconnect_ms, query_timeout_ms, warm_acks}; the password, if any, comes from PGPASSWORD in the
environment (never argv). The process prints one line "warm" on stdout once it has warm_acks
acknowledgements; a line "stop" on stdin (or end of input) ends the loop, and it then prints one
JSON line {acks, acked_seqs, failures, errors} and exits 0. Times are epoch ms (CLOCK_REALTIME,
the clock Node's Date.now() reads).

The connection runs in psycopg2's asynchronous mode so that every wait is a select() with the
remaining time as its bound: libpq's own connect_timeout has whole-second granularity and a
synchronous query cannot be bounded client-side at all.
"""
import json
import os
import re
import select
import sys
import time

import psycopg2
import psycopg2.extensions as ext


class Timeout(Exception):
    pass


def wait(conn, deadline, stop_fd):
    """Polls an asynchronous connection until its operation is done, or the deadline (monotonic s)."""
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("timeout")
        fd = conn.fileno()
        if state == ext.POLL_READ:
            r, w, _ = select.select([fd, stop_fd], [], [], remaining)
        elif state == ext.POLL_WRITE:
            r, w, _ = select.select([stop_fd], [fd], [], remaining)
        else:
            raise psycopg2.OperationalError("bad poll state %r" % state)
        if stop_fd in r and stop_requested():
            raise StopIteration


stopped = False


def stop_requested():
    """Reads stdin when it is readable; True once it said "stop" or ended."""
    global stopped
    if not stopped:
        line = sys.stdin.readline()
        if line == "" or line.strip() == "stop":
            stopped = True
    return stopped


def main():
    init = json.loads(sys.argv[1])
    stop_fd = sys.stdin.fileno()
    timeout_s = init["query_timeout_ms"] / 1000.0
    pause_s = init["pause_ms"] / 1000.0
    dsn = {
        "host": init["host"],
        "port": init["port"],
        "user": init["user"],
        "dbname": init["database"],
    }
    acks, acked_seqs, failures, errors = [], [], [], {}
    deadline_run = time.monotonic() + init["max_run_ms"] / 1000.0
    seq = 0
    warm_sent = False
    conn = None
    while not stopped and time.monotonic() < deadline_run:
        try:
            if conn is None:
                conn = psycopg2.connect(async_=1, **dsn)
                wait(conn, time.monotonic() + timeout_s, stop_fd)
            seq += 1
            cur = conn.cursor()
            cur.execute("insert into bench_outage (writer, seq) values (%s, %s)", (init["name"], seq))
            wait(conn, time.monotonic() + timeout_s, stop_fd)
            cur.close()
            acks.append(time.time() * 1000.0)
            acked_seqs.append(seq)
            if not warm_sent and len(acks) >= init["warm_acks"]:
                warm_sent = True
                sys.stdout.write("warm\n")
                sys.stdout.flush()
            r, _, _ = select.select([stop_fd], [], [], pause_s)
            if r and stop_requested():
                break
        except StopIteration:
            break
        except Exception as err:  # every failure counts; the loop goes on
            if stopped:
                break
            failures.append(time.time() * 1000.0)
            msg = re.sub(r"\d+", "N", re.sub(r"\s+", " ", str(err)).strip() or type(err).__name__)[:100]
            errors[msg] = errors.get(msg, 0) + 1
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            r, _, _ = select.select([stop_fd], [], [], init["reconnect_ms"] / 1000.0)
            if r and stop_requested():
                break
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
    sys.stdout.write(
        json.dumps({"acks": acks, "acked_seqs": acked_seqs, "failures": failures, "errors": list(errors.items())}) + "\n"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
