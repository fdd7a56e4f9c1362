/*
 * relay.c: stolon-proxy's native data path (a Node-API addon).
 *
 * The proxy's TypeScript side accepts a client, picks the backend, connects to it and then hands
 * both sockets to a relay: one thread per relay running an epoll loop that copies bytes both
 * ways until either side closes. The decisions (where to route, when to close, limits, the
 * fencing handshake) stay in TypeScript; this file only moves bytes, so a forwarded message costs
 * two system calls and no JavaScript.
 *
 * Per connection and direction (src -> dst):
 *   - one read() into the thread's scratch buffer, then one send() to dst;
 *   - if dst does not take it all, the rest is copied to a heap buffer owned by dst, src is no
 *     longer read (backpressure: at most one read's worth, SCRATCH_BYTES, is held per direction)
 *     and dst is watched for EPOLLOUT until it drained;
 *   - EOF on src (a FIN) is forwarded as shutdown(dst, SHUT_WR) once dst's buffer drained
 *     (half-close); when both directions ended, both sockets are closed;
 *   - any error, a reset, or a close requested by TypeScript closes both sockets at once;
 *   - past the deadline TypeScript renews after every successful check (a dead-man switch),
 *     every connection is closed and new ones are refused, so a stalled main thread cannot
 *     leave bytes flowing to a former primary after proxyTimeout.
 * EOF on src is only read once dst's buffer drained, so when both directions ended nothing is
 * left queued here: close() then lets the kernel deliver what it holds (no linger time needed).
 * A peer that stops reading holds its connection, as it would on a direct connection.
 * An fd whose direction is idle is removed from epoll, so a paused socket that hangs up cannot
 * make the loop spin. An idle connection costs one struct (no buffer).
 *
 * Threads: TypeScript calls adopt/close/stop on the main thread; they queue a command and
 * wake the relay thread through an eventfd. The relay thread reports every closed connection
 * through a thread-safe function (id, reason, bytes each way). Sockets are dup()ed on adoption, so
 * the TypeScript side closes its own handles at once without closing the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SCRATCH_BYTES (64 * 1024)
#define MAX_EVENTS 256
#define REASON_BYTES 120

typedef struct conn conn_t;

/* One socket of a connection. */
typedef struct {
  conn_t *conn;
  int fd;
  uint32_t interest; /* events registered with epoll; 0 = not registered */
  char *pend;        /* bytes read from the other side, not yet sent to this fd */
  size_t pend_len, pend_off;
  int rd_eof;  /* read() on this fd returned 0 */
  int wr_shut; /* shutdown(fd, SHUT_WR) done */
  double bytes_in; /* bytes read from this fd */
} end_t;

struct conn {
  double id;
  end_t ends[2]; /* 0: client, 1: backend */
  conn_t *prev, *next;
  conn_t *dead_next; /* in the relay's graveyard once closed */
  int closed;
};

typedef enum { CMD_ADOPT, CMD_CLOSE, CMD_DEADLINE, CMD_STOP } cmd_kind_t;

typedef struct cmd {
  cmd_kind_t kind;
  double id;
  int fds[2];
  struct cmd *next;
} cmd_t;

typedef struct {
  double id;
  double bytes_up, bytes_down;
  char reason[REASON_BYTES];
} report_t;

typedef struct {
  int epfd, wakefd;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  cmd_t *head, *tail;
  int stopped; /* stop() called (main thread only) */
  napi_threadsafe_function tsfn;
  conn_t *conns; /* relay thread only */
  /* Connections closed during the current batch of events; freed after it, because later events
     of the same batch may still point at them (relay thread only). */
  conn_t *graveyard;
  int failed; /* the relay thread stopped on an error (atomic; read by the main thread) */
  size_t count;  /* relay thread only */
  int64_t deadline_ms; /* CLOCK_MONOTONIC ms after which nothing is relayed; 0: none (relay thread only) */
  char *scratch;
} relay_t;

/* ------------------------------------------------------------------ relay thread */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define DEADLINE_REASON "the proxy did not renew its routing in time (main thread stalled?): nothing is relayed past proxyTimeout"

static void report(relay_t *r, double id, const char *reason, double up, double down) {
  report_t *rep = malloc(sizeof(report_t));
  if (rep == NULL) return;
  rep->id = id;
  rep->bytes_up = up;
  rep->bytes_down = down;
  snprintf(rep->reason, REASON_BYTES, "%s", reason);
  if (napi_call_threadsafe_function(r->tsfn, rep, napi_tsfn_nonblocking) != napi_ok) free(rep);
}

static void close_conn(relay_t *r, conn_t *c, const char *reason) {
  if (c->closed) return;
  c->closed = 1;
  for (int i = 0; i < 2; i++) {
    end_t *e = &c->ends[i];
    /* Deregister first: close() alone leaves the registration while another descriptor refers
       to the socket (Node's own, until the main thread destroyed its handle after adopt), and
       its next event would point at this freed connection. */
    if (e->interest != 0) epoll_ctl(r->epfd, EPOLL_CTL_DEL, e->fd, NULL);
    close(e->fd);
    free(e->pend);
    e->pend = NULL;
  }
  if (c->prev) c->prev->next = c->next; else r->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  r->count--;
  report(r, c->id, reason, c->ends[0].bytes_in, c->ends[1].bytes_in);
  c->dead_next = r->graveyard;
  r->graveyard = c;
}

static void close_all(relay_t *r, const char *reason) {
  while (r->conns) close_conn(r, r->conns, reason);
}

static void close_errno(relay_t *r, conn_t *c, int side, const char *what, int err) {
  char reason[REASON_BYTES];
  snprintf(reason, sizeof reason, "%s %s: %s", side == 0 ? "client" : "backend", what, strerror(err));
  close_conn(r, c, reason);
}

/* Registers the epoll interest `e` needs now; returns -1 (connection closed) on failure. */
static int set_interest(relay_t *r, end_t *e) {
  end_t *other = &e->conn->ends[e == &e->conn->ends[0] ? 1 : 0];
  uint32_t want = 0;
  if (!e->rd_eof && other->pend_len == 0 && !other->wr_shut) want |= EPOLLIN | EPOLLRDHUP;
  if (e->pend_len > 0) want |= EPOLLOUT;
  if (want == e->interest) return 0;
  int rc;
  if (want == 0) {
    rc = epoll_ctl(r->epfd, EPOLL_CTL_DEL, e->fd, NULL);
  } else {
    struct epoll_event ev = {.events = want, .data.ptr = e};
    rc = epoll_ctl(r->epfd, e->interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, e->fd, &ev);
  }
  if (rc != 0) {
    close_errno(r, e->conn, e == &e->conn->ends[0] ? 0 : 1, "epoll_ctl", errno);
    return -1;
  }
  e->interest = want;
  return 0;
}

/* After a change: half-close, full close, epoll interest of both ends. */
static void settle(relay_t *r, conn_t *c) {
  if (c->closed) return;
  for (int i = 0; i < 2; i++) {
    end_t *src = &c->ends[i], *dst = &c->ends[1 - i];
    if (src->rd_eof && dst->pend_len == 0 && !dst->wr_shut) {
      dst->wr_shut = 1;
      if (shutdown(dst->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
        close_errno(r, c, 1 - i, "shutdown", errno);
        return;
      }
    }
  }
  if (c->ends[0].wr_shut && c->ends[1].wr_shut) {
    close_conn(r, c, "closed");
    return;
  }
  if (set_interest(r, &c->ends[0]) != 0) return;
  set_interest(r, &c->ends[1]);
}

/* Sends dst's pending bytes; returns 0 when all were sent, 1 when some remain, -1 on close. */
static int flush_pending(relay_t *r, end_t *dst, int side) {
  while (dst->pend_len > 0) {
    ssize_t w = send(dst->fd, dst->pend + dst->pend_off, dst->pend_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      close_errno(r, dst->conn, side, "send", errno);
      return -1;
    }
    dst->pend_off += (size_t)w;
    dst->pend_len -= (size_t)w;
  }
  free(dst->pend);
  dst->pend = NULL;
  dst->pend_off = 0;
  return 0;
}

/* One read from src, forwarded to dst. */
static void on_readable(relay_t *r, conn_t *c, int side) {
  end_t *src = &c->ends[side], *dst = &c->ends[1 - side];
  ssize_t n;
  do {
    n = read(src->fd, r->scratch, SCRATCH_BYTES);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    close_errno(r, c, side, "read", errno);
    return;
  }
  if (n == 0) {
    src->rd_eof = 1;
    settle(r, c);
    return;
  }
  src->bytes_in += (double)n;
  size_t off = 0;
  while (off < (size_t)n) {
    ssize_t w = send(dst->fd, r->scratch + off, (size_t)n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      close_errno(r, c, 1 - side, "send", errno);
      return;
    }
    off += (size_t)w;
  }
  if (off < (size_t)n) {
    size_t rest = (size_t)n - off;
    dst->pend = malloc(rest);
    if (dst->pend == NULL) {
      close_conn(r, c, "out of memory");
      return;
    }
    memcpy(dst->pend, r->scratch + off, rest);
    dst->pend_len = rest;
    dst->pend_off = 0;
    settle(r, c); /* src stops being read, dst is watched for EPOLLOUT */
  }
}

static void adopt(relay_t *r, double id, const int fds[2]) {
  conn_t *c = calloc(1, sizeof(conn_t));
  if (c == NULL) {
    close(fds[0]);
    close(fds[1]);
    report(r, id, "out of memory", 0, 0);
    return;
  }
  c->id = id;
  for (int i = 0; i < 2; i++) {
    c->ends[i].conn = c;
    c->ends[i].fd = fds[i];
  }
  c->next = r->conns;
  if (r->conns) r->conns->prev = c;
  r->conns = c;
  r->count++;
  if (r->deadline_ms != 0 && now_ms() >= r->deadline_ms) {
    close_conn(r, c, DEADLINE_REASON);
    return;
  }
  settle(r, c);
  /* Bytes may already wait in the kernel (the client sent its startup packet): level-triggered
     epoll reports them on the next wait. */
}

static void bury(relay_t *r) {
  while (r->graveyard) {
    conn_t *c = r->graveyard;
    r->graveyard = c->dead_next;
    free(c);
  }
}

static cmd_t *take_commands(relay_t *r) {
  pthread_mutex_lock(&r->mu);
  cmd_t *list = r->head;
  r->head = r->tail = NULL;
  pthread_mutex_unlock(&r->mu);
  return list;
}

/* Runs the commands queued by the main thread; returns 0 after CMD_STOP, else 1. */
static int run_commands(relay_t *r) {
  int running = 1;
  for (cmd_t *cmd = take_commands(r), *next; cmd; cmd = next) {
    next = cmd->next;
    switch (cmd->kind) {
      case CMD_ADOPT:
        if (running) {
          adopt(r, cmd->id, cmd->fds);
        } else {
          close(cmd->fds[0]);
          close(cmd->fds[1]);
          report(r, cmd->id, "closed by the proxy", 0, 0);
        }
        break;
      case CMD_CLOSE:
        for (conn_t *c = r->conns; c; c = c->next) {
          if (c->id == cmd->id) {
            close_conn(r, c, "closed by the proxy");
            break;
          }
        }
        break;
      case CMD_DEADLINE:
        r->deadline_ms = (int64_t)cmd->id;
        break;
      case CMD_STOP:
        close_all(r, "closed by the proxy");
        running = 0;
        break;
    }
    free(cmd);
  }
  return running;
}

static void on_event(relay_t *r, const struct epoll_event *event) {
  end_t *e = event->data.ptr;
  conn_t *c = e->conn;
  if (c->closed) return;
  int side = e == &c->ends[0] ? 0 : 1;
  uint32_t ev = event->events;
  if (ev & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    close_errno(r, c, side, "error", err != 0 ? err : ECONNRESET);
    return;
  }
  if ((ev & EPOLLOUT) && e->pend_len > 0 && flush_pending(r, e, side) == 0) settle(r, c);
  if (!c->closed && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && (e->interest & EPOLLIN)) on_readable(r, c, side);
}

static void *relay_main(void *arg) {
  relay_t *r = arg;
  struct epoll_event events[MAX_EVENTS];
  int running = 1;
  while (running) {
    int timeout = -1;
    if (r->deadline_ms != 0 && r->conns != NULL) {
      int64_t left = r->deadline_ms - now_ms();
      timeout = left <= 0 ? 0 : (int)(left > 60000 ? 60000 : left);
    }
    int n = epoll_wait(r->epfd, events, MAX_EVENTS, timeout);
    if (n < 0 && errno != EINTR) {
      /* Cannot happen with a valid epoll fd; if it does, nothing can be relayed any more. */
      char reason[REASON_BYTES];
      snprintf(reason, sizeof reason, "relay thread failed: epoll_wait: %s", strerror(errno));
      __atomic_store_n(&r->failed, 1, __ATOMIC_SEQ_CST);
      close_all(r, reason);
      running = 0;
    }
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == NULL) {
        uint64_t v;
        if (read(r->wakefd, &v, sizeof v) < 0) { /* spurious: nothing queued */ }
        running = run_commands(r) && running;
      } else {
        on_event(r, &events[i]);
      }
    }
    /* The dead-man switch: once the deadline passed, every connection is closed (the main
       thread renews it after every successful check; a stalled main thread cannot). */
    if (r->deadline_ms != 0 && r->conns != NULL && now_ms() >= r->deadline_ms) close_all(r, DEADLINE_REASON);
    bury(r);
  }
  /* Adoptions queued after the stop (or the failure) still get their report. */
  run_commands(r);
  bury(r);
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
  return NULL;
}

/* ------------------------------------------------------------------ main thread (Node-API) */

#define CHECK(call)                                                                  \
  do {                                                                               \
    if ((call) != napi_ok) {                                                         \
      napi_throw_error(env, "ERR_STOLON_RELAY", "relay: Node-API call failed: " #call); \
      return NULL;                                                                   \
    }                                                                                \
  } while (0)

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  report_t *rep = data;
  if (env != NULL && js_cb != NULL) {
    napi_value argv[4], undef;
    napi_create_double(env, rep->id, &argv[0]);
    napi_create_string_utf8(env, rep->reason, NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_double(env, rep->bytes_up, &argv[2]);
    napi_create_double(env, rep->bytes_down, &argv[3]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, js_cb, 4, argv, NULL);
  }
  free(rep);
}

static void push(relay_t *r, cmd_t *cmd) {
  pthread_mutex_lock(&r->mu);
  if (r->tail) r->tail->next = cmd; else r->head = cmd;
  r->tail = cmd;
  pthread_mutex_unlock(&r->mu);
  uint64_t one = 1;
  if (write(r->wakefd, &one, sizeof one) < 0) { /* the counter is already non-zero */ }
}

static void stop_relay(relay_t *r) {
  if (r->stopped) return;
  r->stopped = 1;
  if (r->thread_started) {
    cmd_t *cmd = calloc(1, sizeof(cmd_t));
    if (cmd != NULL) {
      cmd->kind = CMD_STOP;
      push(r, cmd);
      pthread_join(r->thread, NULL);
    }
  }
}

static void finalize_relay(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  relay_t *r = data;
  stop_relay(r);
  for (cmd_t *c = r->head, *next; c; c = next) {
    next = c->next;
    if (c->kind == CMD_ADOPT) { close(c->fds[0]); close(c->fds[1]); }
    free(c);
  }
  close(r->epfd);
  close(r->wakefd);
  pthread_mutex_destroy(&r->mu);
  free(r->scratch);
  free(r);
}

static relay_t *get_relay(napi_env env, napi_value v) {
  relay_t *r = NULL;
  if (napi_get_value_external(env, v, (void **)&r) != napi_ok || r == NULL) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", "relay: first argument must be a relay handle");
    return NULL;
  }
  if (r->stopped) {
    napi_throw_error(env, "ERR_STOLON_RELAY", "relay: already stopped");
    return NULL;
  }
  return r;
}

/* create(onClose: (id, reason, bytesUp, bytesDown) => void) => handle: one relay thread. */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], handle, name;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", "relay.create(onClose): onClose must be a function");
    return NULL;
  }
  relay_t *r = calloc(1, sizeof(relay_t));
  if (r == NULL) {
    napi_throw_error(env, "ERR_STOLON_RELAY", "relay: out of memory");
    return NULL;
  }
  r->scratch = malloc(SCRATCH_BYTES);
  r->epfd = epoll_create1(EPOLL_CLOEXEC);
  r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  pthread_mutex_init(&r->mu, NULL);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (r->scratch == NULL || r->epfd < 0 || r->wakefd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wakefd, &ev) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "relay: cannot set up epoll: %s", strerror(errno));
    if (r->epfd >= 0) close(r->epfd);
    if (r->wakefd >= 0) close(r->wakefd);
    free(r->scratch);
    free(r);
    napi_throw_error(env, "ERR_STOLON_RELAY", msg);
    return NULL;
  }
  CHECK(napi_create_string_utf8(env, "stolon-relay", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &r->tsfn));
  /* Reports must not keep the process alive on their own. */
  CHECK(napi_unref_threadsafe_function(env, r->tsfn));
  if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
    napi_throw_error(env, "ERR_STOLON_RELAY", "relay: cannot start its thread");
    return NULL;
  }
  r->thread_started = 1;
  CHECK(napi_create_external(env, r, finalize_relay, NULL, &handle));
  return handle;
}

/* adopt(handle, id: number, clientFd: number, backendFd: number): dups both fds. */
static napi_value js_adopt(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", "relay.adopt(handle, id, clientFd, backendFd): 4 arguments");
    return NULL;
  }
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL) return NULL;
  if (__atomic_load_n(&r->failed, __ATOMIC_SEQ_CST)) {
    napi_throw_error(env, "ERR_STOLON_RELAY", "relay: its thread failed (see the connections' close reasons)");
    return NULL;
  }
  double id;
  int32_t fd[2];
  if (napi_get_value_double(env, argv[1], &id) != napi_ok || napi_get_value_int32(env, argv[2], &fd[0]) != napi_ok ||
      napi_get_value_int32(env, argv[3], &fd[1]) != napi_ok || fd[0] < 0 || fd[1] < 0) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", "relay.adopt: id and both fds must be numbers, fds >= 0");
    return NULL;
  }
  cmd_t *cmd = calloc(1, sizeof(cmd_t));
  if (cmd == NULL) {
    napi_throw_error(env, "ERR_STOLON_RELAY", "relay: out of memory");
    return NULL;
  }
  cmd->kind = CMD_ADOPT;
  cmd->id = id;
  for (int i = 0; i < 2; i++) {
    cmd->fds[i] = fcntl(fd[i], F_DUPFD_CLOEXEC, 0);
    if (cmd->fds[i] < 0) {
      char msg[160];
      snprintf(msg, sizeof msg, "relay.adopt: cannot duplicate fd %d: %s", fd[i], strerror(errno));
      if (i == 1) close(cmd->fds[0]);
      free(cmd);
      napi_throw_error(env, "ERR_STOLON_RELAY", msg);
      return NULL;
    }
  }
  push(r, cmd);
  return NULL;
}

/* Parses (handle, number) into *out; NULL after throwing (`usage` says what was expected). */
static relay_t *handle_and_number(napi_env env, napi_callback_info info, double *out, const char *usage) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", usage);
    return NULL;
  }
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL) return NULL;
  if (napi_get_value_double(env, argv[1], out) != napi_ok || *out != *out) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", usage);
    return NULL;
  }
  return r;
}

/* Queues a command without descriptors; throws on out of memory. */
static void push_simple(napi_env env, relay_t *r, cmd_kind_t kind, double id) {
  cmd_t *cmd = calloc(1, sizeof(cmd_t));
  if (cmd == NULL) {
    napi_throw_error(env, "ERR_STOLON_RELAY", "relay: out of memory");
    return;
  }
  cmd->kind = kind;
  cmd->id = id;
  push(r, cmd);
}

/* close(handle, id: number): closes that connection (both sockets) if the relay has it. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  double id;
  relay_t *r = handle_and_number(env, info, &id, "relay.close(handle, id): id must be a number");
  if (r != NULL) push_simple(env, r, CMD_CLOSE, id);
  return NULL;
}

/* deadline(handle, ms: number): nothing is relayed from ms milliseconds from now on (connections
   are closed then, new ones at once) until the next call; ms < 0 removes the deadline. */
static napi_value js_deadline(napi_env env, napi_callback_info info) {
  double ms;
  relay_t *r = handle_and_number(env, info, &ms, "relay.deadline(handle, ms): ms must be a number");
  /* Monotonic ms (never 0 once booted); 0 means no deadline. */
  if (r != NULL) push_simple(env, r, CMD_DEADLINE, ms < 0 ? 0 : (double)(now_ms() + (int64_t)ms));
  return NULL;
}

/* stop(handle): closes every connection and joins the thread (their reports still arrive). */
static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  relay_t *r = argc >= 1 ? get_relay(env, argv[0]) : NULL;
  if (r == NULL) return NULL;
  stop_relay(r);
  return NULL;
}

/*
 * keepalive(fd, idleS, intervalS, count): turns TCP keepalive on for a socket and sets each
 * non-zero one of TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT (Node can set only the first).
 * Returns [idleS, intervalS, count] as the kernel then reports them (getsockopt).
 */
static napi_value js_keepalive(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out, item;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t v[4];
  for (int i = 0; i < 4; i++) {
    if ((size_t)i >= argc || napi_get_value_int32(env, argv[i], &v[i]) != napi_ok || v[i] < 0) {
      napi_throw_type_error(env, "ERR_STOLON_RELAY", "relay.keepalive(fd, idleS, intervalS, count): integers >= 0");
      return NULL;
    }
  }
  int one = 1;
  const int opts[3] = {TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT};
  const char *names[3] = {"TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"};
  const char *failed = NULL;
  if (setsockopt(v[0], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0) failed = "SO_KEEPALIVE";
  for (int i = 0; i < 3 && failed == NULL; i++) {
    if (v[i + 1] > 0 && setsockopt(v[0], IPPROTO_TCP, opts[i], &v[i + 1], sizeof v[i + 1]) != 0) failed = names[i];
  }
  CHECK(napi_create_array_with_length(env, 3, &out));
  for (int i = 0; i < 3 && failed == NULL; i++) {
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(v[0], IPPROTO_TCP, opts[i], &got, &len) != 0) failed = names[i];
    CHECK(napi_create_int32(env, got, &item));
    CHECK(napi_set_element(env, out, (uint32_t)i, item));
  }
  if (failed != NULL) {
    char msg[160];
    snprintf(msg, sizeof msg, "relay.keepalive: %s on fd %d: %s", failed, v[0], strerror(errno));
    napi_throw_error(env, "ERR_STOLON_RELAY", msg);
    return NULL;
  }
  return out;
}

/* sockopts(fd): [TCP_NODELAY, SO_KEEPALIVE] of a socket as 0/1 (read-only; for checks and tests). */
static napi_value js_sockopts(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, item;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_STOLON_RELAY", "relay.sockopts(fd): fd must be an integer >= 0");
    return NULL;
  }
  int nodelay = 0, keepalive = 0;
  socklen_t len = sizeof nodelay;
  if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0 ||
      (len = sizeof keepalive, getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive, &len)) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "relay.sockopts: fd %d: %s", fd, strerror(errno));
    napi_throw_error(env, "ERR_STOLON_RELAY", msg);
    return NULL;
  }
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_int32(env, nodelay != 0, &item));
  CHECK(napi_set_element(env, out, 0, item));
  CHECK(napi_create_int32(env, keepalive != 0, &item));
  CHECK(napi_set_element(env, out, 1, item));
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"create", NULL, js_create, NULL, NULL, NULL, napi_default, NULL},
      {"adopt", NULL, js_adopt, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"deadline", NULL, js_deadline, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, js_stop, NULL, NULL, NULL, napi_default, NULL},
      {"keepalive", NULL, js_keepalive, NULL, NULL, NULL, napi_default, NULL},
      {"sockopts", NULL, js_sockopts, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
