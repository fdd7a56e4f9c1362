/*
 * sockmap-fwd: a stand-alone prototype of an in-kernel data path for stolon-proxy, kept so the
 * measurements in docs/benchmarks.md ("bench:proxy", the sockmap re-evaluation of 2026-12-07)
 * can be repeated. Not built by `npm run build` and not used by the proxy.
 *
 *   gcc -O2 -o /tmp/sockmap-fwd test/bench/prototypes/sockmap-fwd.c
 *   /tmp/sockmap-fwd LISTEN_PORT BACKEND_PORT [stream] [close_delay_us]     (as root: CAP_BPF + CAP_NET_ADMIN)
 *
 * Listens on 127.0.0.1:LISTEN_PORT; for every client it connects to 127.0.0.1:BACKEND_PORT (a
 * PostgreSQL), reads the client's first message (SSLRequest, GSSENCRequest, StartupMessage or
 * CancelRequest: the client speaks first and then waits for an answer) in user space, puts both
 * sockets into a BPF_MAP_TYPE_SOCKHASH and writes that message to the backend. From then on an
 * SK_SKB program (attached as BPF_SK_SKB_VERDICT, or BPF_SK_SKB_STREAM_VERDICT with `stream`)
 * redirects every skb to the egress of the other socket with bpf_sk_redirect_hash; user space only
 * waits for EPOLLRDHUP/EPOLLHUP/EPOLLERR on either socket and then closes both.
 *
 * Map layout: the entry stored under the key of the socket that receives (its 4-tuple as the
 * program reads it from __sk_buff) is the *other* socket, so the program needs one helper call and
 * no second map. Byte orders, checked on Linux 6.18 x86-64: remote_ip4 and local_ip4 are in
 * network order (as sin_addr.s_addr); local_port is in host order (ntohs of getsockname's
 * sin_port); remote_port is the network-order port shifted left by 16 (getpeername's sin_port
 * << 16), not the port in the low 16 bits that the uapi comment suggests.
 *
 * Known defects (see docs/benchmarks.md): the close races the redirected bytes (a message sent
 * just before a FIN can be lost); the kernel queues redirected skbs on the target's psock without
 * the socket-buffer limit, so a slow client lets the backend write hundreds of MB into kernel
 * memory; a connection is leaked per close (the struct); one thread, blocking connect and first read.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

struct key { uint32_t rip, lip, rport, lport; };

static int bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

static int map_fd, prog_fd;
static int attach_type = BPF_SK_SKB_VERDICT;
static int close_delay_us = 0;

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static int setup_bpf(void) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_SOCKHASH;
  a.key_size = sizeof(struct key);
  a.value_size = 4;
  a.max_entries = 65536;
  map_fd = bpf(BPF_MAP_CREATE, &a);
  if (map_fd < 0) { perror("map create"); return -1; }
  struct bpf_insn p[] = {
    INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),
    INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(struct __sk_buff, remote_ip4), 0),
    INSN(BPF_STX | BPF_MEM | BPF_W, 10, 2, -16, 0),
    INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(struct __sk_buff, local_ip4), 0),
    INSN(BPF_STX | BPF_MEM | BPF_W, 10, 2, -12, 0),
    INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(struct __sk_buff, remote_port), 0),
    INSN(BPF_STX | BPF_MEM | BPF_W, 10, 2, -8, 0),
    INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(struct __sk_buff, local_port), 0),
    INSN(BPF_STX | BPF_MEM | BPF_W, 10, 2, -4, 0),
    INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
    INSN(BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, map_fd),
    INSN(0, 0, 0, 0, 0),
    INSN(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0),
    INSN(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -16),
    INSN(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),
    INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash),
    INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
  static char log[65536];
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SK_SKB;
  a.insns = (uintptr_t)p;
  a.insn_cnt = sizeof p / sizeof p[0];
  a.license = (uintptr_t) "GPL";
  a.log_buf = (uintptr_t)log;
  a.log_size = sizeof log;
  a.log_level = 1;
  prog_fd = bpf(BPF_PROG_LOAD, &a);
  if (prog_fd < 0) { perror("prog load"); fprintf(stderr, "%s\n", log); return -1; }
  memset(&a, 0, sizeof a);
  a.target_fd = map_fd;
  a.attach_bpf_fd = prog_fd;
  a.attach_type = attach_type;
  if (bpf(BPF_PROG_ATTACH, &a) < 0) { perror("attach"); return -1; }
  return 0;
}

/* The key under which the verdict program looks up the redirect target for skbs received on fd. */
static int key_of(int fd, struct key *k) {
  struct sockaddr_in l, r;
  socklen_t ll = sizeof l, rl = sizeof r;
  if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0 || getpeername(fd, (struct sockaddr *)&r, &rl) < 0) return -1;
  memset(k, 0, sizeof *k);
  k->rip = r.sin_addr.s_addr;
  k->lip = l.sin_addr.s_addr;
  k->rport = (uint32_t)r.sin_port << 16; /* __sk_buff: be16 shifted left 16 on little-endian */
  k->lport = ntohs(l.sin_port);   /* host order */
  return 0;
}

static int map_put(int recv_fd, int target_fd) {
  struct key k;
  if (key_of(recv_fd, &k) < 0) return -1;
  uint32_t v = target_fd;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = map_fd;
  a.key = (uintptr_t)&k;
  a.value = (uintptr_t)&v;
  a.flags = BPF_ANY;
  return bpf(BPF_MAP_UPDATE_ELEM, &a);
}

static void map_del(struct key *k) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = map_fd;
  a.key = (uintptr_t)k;
  bpf(BPF_MAP_DELETE_ELEM, &a);
}

struct conn { int fd[2]; struct key k[2]; int closed; };

static int readn(int fd, char *b, int n) {
  int got = 0;
  while (got < n) {
    int r = read(fd, b + got, n - got);
    if (r <= 0) return -1;
    got += r;
  }
  return got;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: sockmap-fwd LISTEN_PORT BACKEND_PORT [stream] [close_delay_us]\n"); return 2; }
  if (argc > 3 && strcmp(argv[3], "stream") == 0) attach_type = BPF_SK_SKB_STREAM_VERDICT;
  if (argc > 4) close_delay_us = atoi(argv[4]);
  if (setup_bpf() < 0) return 1;
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&la, sizeof la) < 0 || listen(ls, 4096) < 0) { perror("listen"); return 1; }
  struct sockaddr_in ba = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  fprintf(stderr, "listening on %s, attach %s\n", argv[1], attach_type == BPF_SK_SKB_VERDICT ? "verdict" : "stream_verdict");
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        int b = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(b, (struct sockaddr *)&ba, sizeof ba) < 0) { perror("connect"); close(c); close(b); continue; }
        /* First message (SSLRequest/GSSENCRequest/StartupMessage/CancelRequest) in user space. */
        char buf[8192];
        uint32_t len;
        if (readn(c, (char *)&len, 4) < 0) { close(c); close(b); continue; }
        len = ntohl(len);
        if (len < 8 || len > sizeof buf) { close(c); close(b); continue; }
        memcpy(buf, &(uint32_t){htonl(len)}, 4);
        if (readn(c, buf + 4, len - 4) < 0) { close(c); close(b); continue; }
        struct conn *cn = calloc(1, sizeof *cn);
        cn->fd[0] = c; cn->fd[1] = b;
        key_of(c, &cn->k[0]); key_of(b, &cn->k[1]);
        /* backend first: it speaks only after the client's message is forwarded */
        if (map_put(b, c) < 0 || map_put(c, b) < 0) { perror("map update"); close(c); close(b); free(cn); continue; }
        if (write(b, buf, len) != (ssize_t)len) { perror("write first"); }
        struct epoll_event e2 = {.events = EPOLLRDHUP, .data.ptr = cn};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e2);
        epoll_ctl(ep, EPOLL_CTL_ADD, b, &e2);
      } else {
        struct conn *cn = evs[i].data.ptr;
        if (cn->closed) continue;
        cn->closed = 1;
        if (close_delay_us) usleep(close_delay_us);
        map_del(&cn->k[0]); map_del(&cn->k[1]);
        close(cn->fd[0]); close(cn->fd[1]);
        /* leak cn: other events for it in this batch may still point at it */
      }
    }
  }
}
