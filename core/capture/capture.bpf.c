/*
 * The core socket capture, kernel side: one object for every L7 protocol
 * (bpf/ps_sockcap.h says what it sends). User space loads one of two sets of
 * programs:
 *
 *   socket path   tp_btf/sock_send_length and sock_recv_length fire inside
 *                 sock_sendmsg/sock_recvmsg only: processes that do no
 *                 networking never run anything of ours. The socket is the
 *                 hook's argument; the syscall that got there and its buffer
 *                 come from the task's saved registers. tp_btf/inet_sock_set_state
 *                 ends TCP connections. Nothing per syscall of anyone else.
 *   syscall path  sys_exit_* of the data syscalls, and of accept/connect/close/
 *                 dup2/dup3 for the boundaries: kernels without those socket
 *                 tracepoints. Enabling any syscall tracepoint sends every
 *                 syscall of every task through the tracing slow path.
 *
 * Both paths share the rest. The common case is cheap: our own process is
 * skipped with a compare; a socket that is not a stream socket (socket path)
 * costs a few loads; one we do not follow costs one lookup in the skip map.
 * A new connection is considered by the protocol slots whose ports it has
 * (or that take any port), classified on its first bytes, then followed
 * (conns map) or skipped. Followed connections copy a bounded prefix (and the
 * last PS_SC_TAIL_MAX bytes) of what each syscall moved into the ring buffer,
 * which wakes user space only past a watermark.
 *
 * TLS (ps_sc_tls set): a connection whose first bytes are TLS records is
 * marked tls and stays in the conns map, silent. User space attaches uprobes
 * to SSL_read/SSL_write(_ex) of every libssl; the entry remembers (ssl, buf)
 * per thread, the first syscall on a tls connection during that call names
 * the connection (and is remembered per ssl for calls that need no syscall),
 * and the return sends the plaintext as DATA with PS_SC_F_TLS, classified
 * like any connection's first bytes. Only threads inside OpenSSL pay for it.
 */
#include "ps_common.bpf.h"
#include "ps_sockcap.h"
#include "ps_classify_http.h"
#include "ps_classify_mongodb.h"
#include "ps_classify_mysql.h"
#include "ps_walk.h"

char LICENSE[] SEC("license") = "GPL";

#ifndef AF_UNIX
#define AF_UNIX PS_SC_AF_UNIX
#endif
#define PS_SC_S_IFMT	  00170000
#define PS_SC_S_IFSOCK	  0140000
#define PS_SC_SOCK_STREAM 1
#define PS_SC_MSG_PEEK	  2
#define PS_SC_EINPROGRESS 115
#define PS_SC_PF_KTHREAD  0x00200000 /* task->flags: no user registers to read */
#define PS_SC_PF_IO_WORKER 0x00000010
#define PS_SC_TCP_FIN_WAIT1 4
#define PS_SC_TCP_CLOSE	    7
#define PS_SC_TCP_LAST_ACK  9

/* x86_64 syscall numbers: what reached sock_sendmsg/sock_recvmsg on the socket path. */
#define PS_SC_NR_READ	   0
#define PS_SC_NR_WRITE	   1
#define PS_SC_NR_READV	   19
#define PS_SC_NR_WRITEV	   20
#define PS_SC_NR_SENDFILE  40
#define PS_SC_NR_SENDTO	   44
#define PS_SC_NR_RECVFROM  45
#define PS_SC_NR_SENDMSG   46
#define PS_SC_NR_RECVMSG   47
#define PS_SC_NR_SPLICE	   275
#define PS_SC_NR_RECVMMSG  299
#define PS_SC_NR_SENDMMSG  307

#define PS_SC_IOV_MAX	      32 /* iovecs looked at per syscall */
#define PS_SC_MMSG_MAX	      8	 /* messages looked at per recvmmsg/sendmmsg */
#define PS_SC_TRIES_FRESH     4	 /* too-short first reads of a new connection */
#define PS_SC_TRIES_INHERITED 8	 /* syscalls of a connection we joined midway */

/*
 * The registered protocols: user space writes these while the programs run
 * (the skeleton maps .bss), so a protocol registered later needs no reload.
 */
struct ps_sc_slot ps_sc_slots[PS_SC_SLOTS];
__u8 ps_sc_any_port;			     /* slots that consider TCP connections on any port */
__u8 ps_sc_unix;			     /* slots that consider AF_UNIX connections */
__u8 ps_sc_have_ports;			     /* some slot lists ports: look them up */
__u8 ps_sc_tls;				     /* some slot wants OpenSSL plaintext */

/* What the syscall entry remembers for its exit. */
enum ps_sc_kind {
	PS_SC_K_BUF = 1, /* ptr: one buffer */
	PS_SC_K_IOV,	 /* ptr: cnt iovecs */
	PS_SC_K_MMSG,	 /* ptr: cnt struct mmsghdr */
	PS_SC_K_NOCOPY,	 /* sendfile, splice: bytes moved, none seen */
};

struct ps_sc_scratch {
	struct ps_sc_event ev;
	/* Room for the verifier's view: offset and length each masked below 2 * cap. */
	__u8 data[4 * PS_SC_CAPTURE_MAX];
};

/*
 * Bounds a length in the very register the helper call gets: clang would
 * otherwise check a 32-bit copy and pass the unchecked 64-bit one.
 */
static __always_inline __u64 ps_sc_bound(__u64 n)
{
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(2 * PS_SC_CAPTURE_MAX - 1));
	return n;
}

/* Stream sockets being classified or followed; key: socket cookie, or tgid << 32 | fd. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_SC_DEFAULT_CONNECTIONS);
	__type(key, __u64);
	__type(value, struct ps_sc_conn);
} ps_sc_conns SEC(".maps");

/* Not followed: not a stream socket, no protocol's port, or no protocol's first bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_SC_DEFAULT_SKIPPED_FDS);
	__type(key, __u64);
	__type(value, __u8);
} ps_sc_skip SEC(".maps");

/* Processes with connections of ours: their exit is worth an EXIT event. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} ps_sc_procs SEC(".maps");

/* Socket path: every stream socket seen, in the socket itself; gone with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ps_sc_conn);
} ps_sc_socks SEC(".maps");

/*
 * Socket path: what user space orders a connection (enum ps_sc_order), by
 * cookie. It bumps ps_sc_orders_gen after each; a followed connection looks
 * here only when the generation moved since it last did.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} ps_sc_orders SEC(".maps");

__u32 ps_sc_orders_gen;

/* Connections whose end waits for the length hook of the syscall it came in (see ps_sc_sock_state). */
__s32 ps_sc_ends_deferred;

/* Port (host order) -> the slots that list it (bit i: slot i). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PS_SC_SLOTS * 64);
	__type(key, __u16);
	__type(value, __u8);
} ps_sc_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PS_SC_STATS);
	__type(key, __u32);
	__type(value, __u64);
} ps_sc_stats SEC(".maps");

static __always_inline void ps_sc_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&ps_sc_stats, &stat);

	if (n)
		*n += 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_sc_scratch);
} ps_sc_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ps_sc_ids SEC(".maps");

/* Connections a walker follows (bpf/ps_walk.h); key: the connection's id. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ps_walk);
} ps_sc_walks SEC(".maps");

/* Larger than PS_RB_WAKEUP_BYTES so that the watermark wake-up can ever fire. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PS_SC_DEFAULT_RINGBUF);
} ps_sc_events SEC(".maps");

static __always_inline __u64 ps_sc_key(__u32 tgid, __u32 fd)
{
	return (__u64)tgid << 32 | fd;
}

/* Unique while we run: the CPU in the top bits, that CPU's counter below. */
static __always_inline __u64 ps_sc_next_id(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&ps_sc_ids, &zero);

	if (!n)
		return 0;
	*n += 1;
	return (__u64)bpf_get_smp_processor_id() << 48 | *n;
}

static __always_inline bool ps_sc_is_v4_mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

static __always_inline void ps_sc_read_inet(struct sock *sk, __u16 family, struct ps_sc_conn *c)
{
	__u32 l[4] = {}, r[4] = {};

	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		l[0] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		r[0] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&l, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
		BPF_CORE_READ_INTO(&r, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
		if (ps_sc_is_v4_mapped(r)) {
			family = AF_INET;
			l[0] = ps_sc_is_v4_mapped(l) ? l[3] : 0;
			r[0] = r[3];
			l[1] = l[2] = l[3] = 0;
			r[1] = r[2] = r[3] = 0;
		}
	}
	c->family = family;
	__builtin_memcpy(c->laddr, l, 16);
	__builtin_memcpy(c->raddr, r, 16);
}

/* The file behind fd in the current task's fd table; NULL when there is none. */
static __always_inline struct file *ps_sc_fd_file(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return NULL;
	return file;
}

static __always_inline bool ps_sc_file_is_socket(struct file *file)
{
	return (BPF_CORE_READ(file, f_inode, i_mode) & PS_SC_S_IFMT) == PS_SC_S_IFSOCK;
}

/*
 * Looks fd up in the current task's fd table: 1 and c filled for a TCP or
 * AF_UNIX stream socket, 0 for anything else, -1 when there is no such fd.
 */
static __always_inline int ps_sc_read_socket(__u32 fd, struct ps_sc_conn *c)
{
	struct file *file = ps_sc_fd_file(fd);
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (!file)
		return -1;
	if (!ps_sc_file_is_socket(file))
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != PS_SC_SOCK_STREAM)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_UNIX) {
		c->family = AF_UNIX;
		return 1;
	}
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0; /* MPTCP, SCTP */
	ps_sc_read_inet(sk, family, c);
	return 1;
}

/* The slots that consider a connection: any port, or one of its ports; AF_UNIX has none. */
static __always_inline __u8 ps_sc_candidates(const struct ps_sc_conn *c)
{
	__u8 m = ps_sc_any_port;
	__u16 l = c->lport, r = c->rport;
	__u8 *v;

	if (c->family == AF_UNIX)
		return ps_sc_unix;
	if (!ps_sc_have_ports)
		return m;
	v = bpf_map_lookup_elem(&ps_sc_ports, &l);
	if (v)
		m |= *v;
	v = bpf_map_lookup_elem(&ps_sc_ports, &r);
	if (v)
		m |= *v;
	return m;
}

static __always_inline void ps_sc_skip_fd(__u64 key)
{
	__u8 one = 1;

	bpf_map_update_elem(&ps_sc_skip, &key, &one, BPF_ANY);
}

/* The connection is no protocol's: never look at it again. */
static __always_inline void ps_sc_give_up(__u64 key, struct ps_sc_conn *c)
{
	if (c->on_socket) {
		c->state = PS_SC_NOT_MINE;
		return;
	}
	ps_sc_skip_fd(key);
	bpf_map_delete_elem(&ps_sc_conns, &key);
}

/* A stream socket seen for the first time: its conns entry if some protocol considers it. */
static __always_inline struct ps_sc_conn *ps_sc_add(__u64 key, struct ps_sc_conn *c)
{
	c->candidates = ps_sc_candidates(c);
	if (!c->candidates) {
		ps_sc_skip_fd(key);
		return NULL;
	}
	bpf_map_update_elem(&ps_sc_conns, &key, c, BPF_ANY);
	return bpf_map_lookup_elem(&ps_sc_conns, &key);
}

/* Syscall path, first sight of an fd: found in the task's fd table. */
static __always_inline struct ps_sc_conn *ps_sc_track(__u64 key, __u32 fd, __u8 role)
{
	struct ps_sc_conn c = {};
	int rc = ps_sc_read_socket(fd, &c);

	if (rc < 0)
		return NULL; /* no such fd: the syscall fails, remember nothing */
	if (rc == 0) {
		ps_sc_skip_fd(key);
		return NULL;
	}
	c.id = ps_sc_next_id();
	c.role = role;
	return ps_sc_add(key, &c);
}

/*
 * The header; with `full`, also the connection's addresses and the comm
 * (PS_SC_F_CONN), which a connection's DATA events carry only until one got
 * through: they do not change, and the comm is a helper call per event.
 */
static __always_inline void ps_sc_fill_header(struct ps_sc_event *ev, __u32 type, __u32 fd,
					      const struct ps_sc_conn *c, bool full)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	ev->type = type;
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->fd = fd;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->total = 0;
	ev->len = 0;
	ev->tail = 0;
	ev->dir = 0;
	ev->flags = full ? PS_SC_F_CONN : 0;
	ev->pad2 = 0;
	if (c) {
		ev->slot = c->slot;
		ev->conn_id = c->id;
		ev->role = c->role;
		ev->family = c->family;
		ev->lport = c->lport;
		ev->rport = c->rport;
	} else {
		ev->slot = 0;
		ev->conn_id = 0;
		ev->role = 0;
		ev->family = 0;
		ev->lport = 0;
		ev->rport = 0;
	}
	if (!full) {
		/* Nothing of an earlier event in this scratch: zeroes, cheaper than the copy. */
		__builtin_memset(ev->laddr, 0, 16);
		__builtin_memset(ev->raddr, 0, 16);
		__builtin_memset(ev->comm, 0, sizeof(ev->comm));
		return;
	}
	if (c) {
		__builtin_memcpy(ev->laddr, c->laddr, 16);
		__builtin_memcpy(ev->raddr, c->raddr, 16);
	} else {
		__builtin_memset(ev->laddr, 0, 16);
		__builtin_memset(ev->raddr, 0, 16);
	}
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
}

/*
 * CLOSE and EXIT events the ring had no room for, by PS_SC_LOST_CLOSE | conn_id
 * or PS_SC_LOST_EXIT | tgid: user space applies them at a flush, or what they
 * end would wait for the idle expiry. Written only when the ring is full.
 * Connection ids never reach bit 63 (cookies count from 1; ours are the CPU
 * above bit 48).
 */
#define PS_SC_LOST_MAX	 8192
#define PS_SC_LOST_CLOSE 0ull
#define PS_SC_LOST_EXIT	 (1ull << 63)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_SC_LOST_MAX);
	__type(key, __u64);
	__type(value, struct ps_sc_event);
} ps_sc_lost SEC(".maps");

/* CLOSE, EXIT and the hints: header only. */
static __always_inline void ps_sc_emit_control(__u32 type, __u32 fd, const struct ps_sc_conn *c)
{
	struct ps_sc_event ev;
	__u64 key;

	ps_sc_fill_header(&ev, type, fd, c, true);
	if (!ps_rb_output(&ps_sc_events, &ev, sizeof(ev)))
		return;
	if (type == PS_SC_EV_CLOSE)
		key = PS_SC_LOST_CLOSE | ev.conn_id;
	else if (type == PS_SC_EV_EXIT)
		key = PS_SC_LOST_EXIT | ev.tgid;
	else
		return;
	bpf_map_update_elem(&ps_sc_lost, &key, &ev, BPF_ANY);
}

static __always_inline void ps_sc_tls_unbind(__u64 key, __u64 conn_id);

/* Syscall path: the fd stops being what we knew: a CLOSE if it was followed; both maps forget it. */
static __always_inline void ps_sc_forget(__u64 key, __u32 fd)
{
	struct ps_sc_conn *c;

	if (bpf_map_delete_elem(&ps_sc_skip, &key) == 0)
		return; /* an fd is in one map at most */
	c = bpf_map_lookup_elem(&ps_sc_conns, &key);
	if (!c)
		return;
	if (c->state == PS_SC_MINE)
		ps_sc_emit_control(PS_SC_EV_CLOSE, fd, c);
	if (c->walk) {
		__u64 id = c->id;

		bpf_map_delete_elem(&ps_sc_walks, &id);
	}
	if (c->tls)
		ps_sc_tls_unbind(key, c->id);
	bpf_map_delete_elem(&ps_sc_conns, &key);
}

/*
 * The conns entry of a followed fd (creating it on first sight), or NULL.
 * Most syscalls of the machine end here after one lookup.
 */
static __always_inline struct ps_sc_conn *ps_sc_followed(__u64 key, __u32 fd)
{
	struct ps_sc_conn *c;

	if (bpf_map_lookup_elem(&ps_sc_skip, &key))
		return NULL;
	c = bpf_map_lookup_elem(&ps_sc_conns, &key);
	if (c)
		return c;
	return ps_sc_track(key, fd, PS_SC_ROLE_UNKNOWN);
}

/* ---- syscall exit: capture, classify, send -------------------------------------------- */

static __always_inline struct ps_sc_scratch *ps_sc_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ps_sc_scratch, &zero);
}

/* How many bytes to capture of total: the claiming protocol's share. */
static __always_inline __u32 ps_sc_want(const struct ps_sc_conn *c, __u64 total)
{
	__u32 cap = ps_sc_slots[c->slot & (PS_SC_SLOTS - 1)].capture_bytes;

	if (cap > PS_SC_CAPTURE_MAX)
		cap = PS_SC_CAPTURE_MAX;
	return total < cap ? (__u32)total : cap;
}

/* Copies the first `want` bytes of one user buffer; returns how many were copied. */
static __always_inline __u32 ps_sc_copy_buf(struct ps_sc_scratch *s, __u64 ptr, __u32 want)
{
	if (bpf_probe_read_user(s->data, ps_sc_bound(want), (const void *)ptr))
		return 0;
	return want;
}

/* A byte range [from, to) of what an iovec array moved, copied to s->data + dst. */
struct ps_sc_iov_copy {
	__u64 iov; /* the user's struct iovec array */
	__u32 cnt; /* its length */
	__u32 dst;
	__u64 from, to;
	__u64 pos; /* offset of the current iovec's first byte */
	__u32 got; /* bytes copied */
	__u32 failed;
};

/*
 * bpf_loop callback, one iovec per call: a loop body the verifier checks
 * once instead of once per iteration and path.
 */
static long ps_sc_iov_step(__u32 i, void *data)
{
	struct ps_sc_iov_copy *x = data;
	struct ps_sc_scratch *s = ps_sc_scratch_get();
	__u64 end, lo, hi, n, off;
	struct iovec v;

	if (!s || i >= x->cnt || x->pos >= x->to)
		return 1;
	if (bpf_probe_read_user(&v, sizeof(v), &((const struct iovec *)x->iov)[i])) {
		x->failed = 1;
		return 1;
	}
	end = x->pos + v.iov_len;
	if (end > x->from) {
		lo = x->pos > x->from ? x->pos : x->from;
		hi = end < x->to ? end : x->to;
		off = x->dst + (lo - x->from);
		asm volatile("%[o] &= %[mask]"
			     : [o] "+r"(off)
			     : [mask] "i"(2 * PS_SC_CAPTURE_MAX - 1));
		n = ps_sc_bound(hi - lo);
		if (bpf_probe_read_user(&s->data[off], n, v.iov_base + (lo - x->pos))) {
			x->failed = 1;
			return 1;
		}
		x->got += n;
	}
	x->pos = end;
	return 0;
}

/* Copies bytes [from, to) of what moved through up to PS_SC_IOV_MAX iovecs; returns how many. */
static __always_inline __u32 ps_sc_copy_iov_range(__u64 iov, __u32 cnt, __u64 from, __u64 to,
						  __u32 dst, bool *failed)
{
	struct ps_sc_iov_copy x = { .iov = iov, .cnt = cnt, .dst = dst, .from = from, .to = to };

	bpf_loop(PS_SC_IOV_MAX, ps_sc_iov_step, &x, 0);
	*failed = x.failed;
	return x.got;
}

/* The first `want` bytes spread over the iovecs. */
static __always_inline __u32 ps_sc_copy_iov(__u64 iov, __u32 cnt, __u32 want)
{
	struct ps_sc_scratch *s;
	struct iovec v[2];
	__u64 n0, n1;
	bool failed;

	if (cnt > 2)
		return ps_sc_copy_iov_range(iov, cnt, 0, want, 0, &failed);
	/* One or two iovecs (a head and a body): one user read for both, no loop. */
	s = ps_sc_scratch_get();
	if (!s || bpf_probe_read_user(v, cnt == 2 ? sizeof(v) : sizeof(v[0]), (const void *)iov))
		return 0;
	n0 = v[0].iov_len < want ? v[0].iov_len : want;
	if (n0 && bpf_probe_read_user(s->data, ps_sc_bound(n0), v[0].iov_base))
		return 0;
	if (cnt < 2 || n0 == want)
		return n0;
	n1 = v[1].iov_len < want - n0 ? v[1].iov_len : want - n0;
	if (n1 && bpf_probe_read_user(&s->data[ps_sc_bound(n0)], ps_sc_bound(n1), v[1].iov_base))
		return 0;
	return n0 + n1;
}

/*
 * The last bytes of what moved, past the captured prefix (at s->data + len):
 * a message that ends beyond the prefix is still seen to end. 0 when the end
 * cannot be read.
 */
static __always_inline __u32 ps_sc_tail_len(__u64 total, __u32 len)
{
	__u64 t = total - len;

	return t > PS_SC_TAIL_MAX ? PS_SC_TAIL_MAX : t;
}

static __always_inline __u32 ps_sc_copy_tail_buf(struct ps_sc_scratch *s, __u64 ptr, __u64 total,
						 __u32 len)
{
	__u64 t = ps_sc_tail_len(total, len);

	if (bpf_probe_read_user(&s->data[ps_sc_bound(len)], ps_sc_bound(t),
				(const void *)(ptr + total - t)))
		return 0;
	return t;
}

static __always_inline __u32 ps_sc_copy_tail_iov(__u64 iov, __u32 cnt, __u64 total, __u32 len)
{
	__u32 t = ps_sc_tail_len(total, len);
	bool failed;

	if (ps_sc_copy_iov_range(iov, cnt, total - t, total, len, &failed) != t || failed)
		return 0;
	return t;
}

/* ---- walkers: large messages, followed past the prefix (bpf/ps_walk.h) --------------------- */

#define PS_WALK_STEPS 32768 /* steps per syscall: a 1 MiB read of 32-byte batches */

/* The syscall being walked, the connection's state while it is, and the PIECES being filled. */
struct ps_walk_scratch {
	struct ps_walk w;
	__u64 ptr;   /* one buffer (PS_SC_K_BUF) or an iovec array (PS_SC_K_IOV) */
	__u64 total; /* bytes the syscall moved */
	struct iovec iov[PS_WALK_IOV]; /* the syscall's (a buffer: one), as far as walked */
	__u32 n_iov;
	__u32 at_iov;	 /* the iovec of the last read's first byte */
	__u64 at_start;	 /* its first byte's offset in what the syscall moved */
	__u32 kind, cnt;
	__u32 prefix; /* what its DATA carries anyway: no piece inside it */
	__u32 dir;
	__u32 n_pieces;
	__u8 req_added; /* the walk noted a request: the requests table goes back too */
	__u8 pad[3];
	__u8 val[2 * PS_WALK_CARRY]; /* the field being read: carried bytes, then this syscall's */
	struct ps_sc_event ev;	     /* PIECES, its pieces right after it */
	struct ps_sc_piece pieces[PS_SC_PIECES_MAX];
	__u8 slack[3 * PS_SC_PIECE_MAX]; /* the verifier's view of the last piece's copy */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_walk_scratch);
} ps_sc_walk_scratch SEC(".maps");

static __always_inline struct ps_walk_scratch *ps_walk_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ps_sc_walk_scratch, &zero);
}

static __always_inline __u32 ps_walk_be16(const struct ps_walk_scratch *x, const int at)
{
	return (__u32)x->val[at] << 8 | x->val[at + 1];
}

static __always_inline __u32 ps_walk_be32(const struct ps_walk_scratch *x, const int at)
{
	return (__u32)x->val[at] << 24 | (__u32)x->val[at + 1] << 16 | (__u32)x->val[at + 2] << 8 |
	       x->val[at + 3];
}

/* bpf_loop body: from iovec at_iov on, to the one holding byte *off; 1 when there. */
static long ps_walk_find_step(__u32 i, void *ctx)
{
	struct ps_walk_scratch *x = ps_walk_scratch_get();
	__u64 off = *(__u64 *)ctx, len;

	if (!x || x->at_iov >= x->n_iov || x->at_iov >= PS_WALK_IOV)
		return 1;
	len = x->iov[x->at_iov].iov_len;
	if (off < x->at_start + len)
		return 1;
	x->at_start += len;
	x->at_iov++;
	return 0;
}

/* Points at_iov at the iovec holding byte off of what the syscall moved; false: none. */
static __always_inline bool ps_walk_find(struct ps_walk_scratch *x, __u64 off)
{
	if (off < x->at_start) {
		x->at_iov = 0; /* reads go forward, but for a field's bytes read again */
		x->at_start = 0;
	}
	bpf_loop(PS_WALK_IOV, ps_walk_find_step, &off, 0);
	return x->at_iov < x->n_iov && x->at_iov < PS_WALK_IOV &&
	       off < x->at_start + x->iov[x->at_iov & (PS_WALK_IOV - 1)].iov_len;
}

/*
 * n (<= PS_SC_PIECE_MAX) bytes at offset off of what the syscall moved, into
 * this CPU's walk scratch at byte dst; how many. Global: verified once, not
 * at each of the walker's many reads.
 */
__attribute__((noinline)) __u32 ps_walk_read(__u64 off, __u32 dst, __u32 n)
{
	struct ps_walk_scratch *x = ps_walk_scratch_get();
	__u64 got = 0, at = dst;

	/* Checked in the register the pointer is made from: clang would check a copy. */
	asm volatile("if %[a] > %[max] goto +1; goto +2; %[a] = 0; %[n] = 0"
		     : [a] "+r"(at), [n] "+r"(n)
		     : [max] "i"(sizeof(struct ps_walk_scratch) - 3 * PS_SC_PIECE_MAX));
	if (!x || n > PS_SC_PIECE_MAX)
		return 0;
	/* A read spans a few iovecs at most: a field or a batch header. */
	for (int seg = 0; seg < 3 && got < n; seg++) {
		const struct iovec *v;
		__u64 k;

		if (!ps_walk_find(x, off + got))
			break;
		v = &x->iov[x->at_iov & (PS_WALK_IOV - 1)];
		k = x->at_start + v->iov_len - (off + got);
		if (k > n - got)
			k = n - got;
		asm volatile("%[k] &= %[m]" : [k] "+r"(k) : [m] "i"(PS_SC_PIECE_MAX * 2 - 1));
		asm volatile("%[g] &= %[m]" : [g] "+r"(got) : [m] "i"(PS_SC_PIECE_MAX * 2 - 1));
		if (bpf_probe_read_user((__u8 *)x + at + got, k,
					v->iov_base + (off + got - x->at_start)))
			break;
		got += k;
	}
	return got;
}

static __always_inline void ps_walk_flush(struct ps_walk_scratch *x)
{
	__u32 n = x->n_pieces;

	if (!n)
		return;
	if (n > PS_SC_PIECES_MAX)
		n = PS_SC_PIECES_MAX;
	x->ev.len = n;
	ps_rb_output(&ps_sc_events, &x->ev, sizeof(x->ev) + n * sizeof(struct ps_sc_piece));
	x->n_pieces = 0;
}

/* Stream bytes [at, at + n) of direction d, as far as this syscall moved them, as a piece. */
static __always_inline void ps_walk_piece(struct ps_walk_scratch *x, struct ps_walk_dir *d,
					  __u64 at, __u32 n)
{
	struct ps_sc_piece *p;
	__u64 off = at - d->pos;

	if (at < d->pos || off >= x->total || !n)
		return;
	if (n > x->total - off)
		n = x->total - off;
	if (off + n <= x->prefix)
		return; /* the DATA has them */
	if (x->n_pieces >= PS_SC_PIECES_MAX)
		ps_walk_flush(x);
	p = &x->pieces[x->n_pieces & (PS_SC_PIECES_MAX - 1)];
	p->off = (__u32)off;
	p->pad = 0;
	p->len = ps_walk_read(off, (__u8 *)p->data - (__u8 *)x, n);
	if (p->len)
		x->n_pieces++;
}

/*
 * The field at d->cur, up to want (<= PS_WALK_CARRY) bytes, into x->val: what
 * the last syscall held of it, then this one's bytes. Fewer than want only
 * when this syscall ends first (or could not be read).
 */
static __always_inline __u32 ps_walk_peek(struct ps_walk_scratch *x, struct ps_walk_dir *d,
					  __u32 want)
{
	__u64 have = d->carry_len & (PS_WALK_CARRY - 1), start = d->cur + have, off, n;

	__builtin_memcpy(x->val, d->carry, PS_WALK_CARRY);
	if (start < d->pos || want <= have)
		return have;
	off = start - d->pos;
	if (off >= x->total)
		return have;
	n = want - have;
	if (n > x->total - off)
		n = x->total - off;
	return have + ps_walk_read(off, (__u8 *)&x->val[have] - (__u8 *)x, n);
}

/* The first k bytes peeked are the field: past them, sending what this syscall had of them. */
static __always_inline void ps_walk_take(struct ps_walk_scratch *x, struct ps_walk_dir *d, __u32 k)
{
	__u32 have = d->carry_len;

	if (k > have)
		ps_walk_piece(x, d, d->cur + have, k - have);
	d->cur += k;
	d->carry_len = 0;
}

/* Only k bytes of the field here: they wait for the next syscall's. Always 1 (stop). */
static __always_inline long ps_walk_hold(struct ps_walk_scratch *x, struct ps_walk_dir *d, __u32 k)
{
	__u32 have = d->carry_len;

	if (d->cur + k < d->pos + x->total || k >= PS_WALK_CARRY) {
		x->w.lost = 1; /* the bytes were there and could not be read */
		return 1;
	}
	if (k > have)
		ps_walk_piece(x, d, d->cur + have, k - have);
	__builtin_memcpy(d->carry, x->val, PS_WALK_CARRY);
	d->carry_len = k;
	return 1;
}

/* n (<= PS_SC_PIECE_MAX) bytes the decoder reads and the walker does not: sent, passed. */
static __always_inline void ps_walk_pass(struct ps_walk_scratch *x, struct ps_walk_dir *d, __u32 n)
{
	ps_walk_piece(x, d, d->cur, n);
	d->cur += n;
}

/* An UNSIGNED_VARINT (up to 5 bytes) into *v: 0, or 1 (stop: wait, or lost). */
static __always_inline long ps_walk_uvarint(struct ps_walk_scratch *x, struct ps_walk_dir *d,
					    __u32 *v)
{
	__u32 k = ps_walk_peek(x, d, 5), out = 0;

	for (int i = 0; i < 5; i++) {
		if (i >= k)
			return ps_walk_hold(x, d, k);
		out |= (__u32)(x->val[i] & 0x7f) << (7 * i);
		if (!(x->val[i] & 0x80)) {
			*v = out;
			ps_walk_take(x, d, i + 1);
			return 0;
		}
	}
	x->w.lost = 1; /* not a varint: not the message its lengths said */
	return 1;
}

#include "ps_walk_kafka.h"

/* bpf_loop body: one step of the walk; 1 ends it for this syscall. */
static long ps_walk_loop(__u32 i, void *ctx)
{
	struct ps_walk_scratch *x = ps_walk_scratch_get();
	struct ps_walk_dir *d;

	if (!x || x->w.lost)
		return 1;
	d = &x->w.d[x->dir & 1];
	if (d->cur + d->carry_len < d->pos) {
		x->w.lost = 1; /* bytes it needed went by unread (more steps than a syscall gets) */
		return 1;
	}
	if (d->cur >= d->pos + x->total)
		return 1;
	return ps_walk_kafka_step(x, d);
}

/*
 * Walks what the syscall in this CPU's walk scratch moved on walked
 * connection id, sending PIECES (before its DATA). Global: verified once,
 * whatever number of programs walk.
 */
__attribute__((noinline)) int ps_sc_walk(__u64 id)
{
	struct ps_walk_scratch *x = ps_walk_scratch_get();
	struct ps_walk *w = bpf_map_lookup_elem(&ps_sc_walks, &id);
	__u32 dir;

	if (!x || !w || w->lost)
		return 0;
	__builtin_memcpy(&x->w, w, sizeof(*w));
	dir = x->dir & 1;
	if (!w->req_dir)
		w->req_dir = x->w.req_dir = 1 + dir; /* a client speaks first */
	x->n_pieces = 0;
	x->req_added = 0;
	x->at_iov = 0;
	x->at_start = 0;
	if (x->kind == PS_SC_K_BUF) {
		x->iov[0].iov_base = (void *)x->ptr;
		x->iov[0].iov_len = x->total;
		x->n_iov = 1;
	} else if (x->kind == PS_SC_K_IOV) {
		/* Bytes past the first PS_WALK_IOV iovecs cannot be read: lost if needed. */
		x->n_iov = x->cnt < PS_WALK_IOV ? x->cnt : PS_WALK_IOV;
		if (!x->n_iov || bpf_probe_read_user(x->iov, (x->n_iov & (PS_WALK_IOV - 1 | PS_WALK_IOV)) *
							      sizeof(struct iovec),
						     (const void *)x->ptr))
			x->w.lost = 1;
	} else {
		x->w.lost = 1; /* sendfile, splice: bytes nobody can read */
	}
	if (!x->w.lost)
		bpf_loop(PS_WALK_STEPS, ps_walk_loop, NULL, 0);
	ps_walk_flush(x);
	x->w.d[dir].pos += x->total;
	/* Back what this direction's walk changed: the other may be walking on another CPU. */
	__builtin_memcpy(&w->d[dir], &x->w.d[dir], sizeof(w->d[0]));
	if (x->req_added) {
		__builtin_memcpy(w->req, x->w.req, sizeof(w->req));
		w->next_req = x->w.next_req;
	}
	if (x->w.lost) {
		w->lost = 1;
		ps_sc_count(PS_SC_STAT_WALK_LOST);
	}
	return 0;
}

/* A connection its protocol's walker follows, from its first bytes. */
static __always_inline void ps_sc_walk_begin(struct ps_sc_conn *c)
{
	struct ps_walk_scratch *x = ps_walk_scratch_get();
	__u64 key = c->id;

	if (!x)
		return;
	__builtin_memset(&x->w, 0, sizeof(x->w));
	if (!bpf_map_update_elem(&ps_sc_walks, &key, &x->w, BPF_ANY))
		c->walk = 1;
}

/* The syscall's bytes walked; the timestamp its DATA must carry (its PIECES carry it). */
static __always_inline __u64 ps_sc_walk_syscall(const struct ps_sc_conn *c, __u8 dir, __u8 kind,
						__u64 ptr, __u32 cnt, __u64 total, __u32 prefix)
{
	struct ps_walk_scratch *x = ps_walk_scratch_get();
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!x)
		return 0;
	x->kind = kind;
	x->ptr = ptr;
	x->cnt = cnt;
	x->total = total;
	x->prefix = prefix;
	x->dir = dir;
	x->ev.type = PS_SC_EV_PIECES;
	x->ev.tgid = pid_tgid >> 32;
	x->ev.tid = (__u32)pid_tgid;
	x->ev.conn_id = c->id;
	x->ev.dir = dir;
	x->ev.total = total;
	x->ev.slot = c->slot;
	x->ev.flags = 0;
	x->ev.tail = 0;
	x->ev.ts_ns = bpf_ktime_get_ns();
	ps_sc_walk(c->id);
	return x->ev.ts_ns;
}

/* ---- TLS: connections whose plaintext comes from the OpenSSL uprobes ------------------- */

#define PS_SC_TLS_RECORD_MAX (16384 + 2048) /* a TLSCiphertext fragment's largest length */

/* An SSL_read/SSL_write(_ex) call in flight, per thread. */
struct ps_sc_tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 nbytes; /* _ex: the size_t * that receives the count; 0: the return value is it */
	__u64 key;    /* valid when bound: the conns key */
	__u32 fd;     /* valid when bound (syscall path) */
	__u8 active;  /* between entry and return */
	__u8 bound;   /* a syscall on a tls connection named the connection */
	__u8 dir;     /* enum ps_sc_dir */
	__u8 pad;
};

struct ps_sc_tls_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

/* Where an SSL object's records went last time. */
struct ps_sc_tls_fd {
	__u64 conn_id; /* a reused fd or ssl pointer does not match */
	__u64 key;
	__u32 fd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ps_sc_tls_call);
} ps_sc_tls_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_SC_DEFAULT_CONNECTIONS);
	__type(key, struct ps_sc_tls_key);
	__type(value, struct ps_sc_tls_fd);
} ps_sc_tls_fds SEC(".maps");

/*
 * The ps_sc_tls_fds entry each connection (by conns key) made: nothing tells
 * when an SSL object is freed, so the connection's end takes its entry away.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_SC_DEFAULT_CONNECTIONS);
	__type(key, __u64);
	__type(value, struct ps_sc_tls_key);
} ps_sc_tls_owners SEC(".maps");

/* Processes whose first TLS connection user space heard of (a hint to look for libssl). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} ps_sc_tls_procs SEC(".maps");

/* A TLS record header: content type 20..23, version 3.x, a length a record can have. */
static __always_inline bool ps_sc_looks_like_tls(const __u8 *b, __u32 len)
{
	if (len < 5 || b[0] < 20 || b[0] > 23 || b[1] != 3 || b[2] > 4)
		return false;
	return ((__u32)b[3] << 8 | b[4]) <= PS_SC_TLS_RECORD_MAX;
}

/*
 * A syscall on a tls connection: if this thread is inside SSL_read/SSL_write,
 * that call's records travel on this fd.
 */
static __always_inline void ps_sc_tls_bind(__u64 key, __u32 fd, const struct ps_sc_conn *c)
{
	struct ps_sc_tls_call *call =
		bpf_task_storage_get(&ps_sc_tls_calls, bpf_get_current_task_btf(), 0, 0);
	struct ps_sc_tls_key k = {};
	struct ps_sc_tls_fd v = {};
	struct ps_sc_tls_key *had;
	struct ps_sc_tls_fd *was;

	if (!call || !call->active || call->bound)
		return;
	call->bound = 1;
	call->key = key;
	call->fd = fd;
	k.ssl = call->ssl;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	was = bpf_map_lookup_elem(&ps_sc_tls_fds, &k);
	if (was && was->conn_id == c->id && was->key == key && was->fd == fd)
		return; /* as on the last call: the usual case, a lookup instead of two updates */
	v.conn_id = c->id;
	v.key = key;
	v.fd = fd;
	bpf_map_update_elem(&ps_sc_tls_fds, &k, &v, BPF_ANY);
	/* One entry per connection: another SSL object's on it goes (its owner is forgotten). */
	had = bpf_map_lookup_elem(&ps_sc_tls_owners, &key);
	if (had && (had->ssl != k.ssl || had->tgid != k.tgid)) {
		was = bpf_map_lookup_elem(&ps_sc_tls_fds, had);
		if (was && was->key == key)
			bpf_map_delete_elem(&ps_sc_tls_fds, had);
	}
	bpf_map_update_elem(&ps_sc_tls_owners, &key, &k, BPF_ANY);
}

/*
 * The tls connection at key ends: the SSL object's entry goes, unless the
 * object moved on to another connection since.
 */
static __always_inline void ps_sc_tls_unbind(__u64 key, __u64 conn_id)
{
	struct ps_sc_tls_key *k = bpf_map_lookup_elem(&ps_sc_tls_owners, &key);
	struct ps_sc_tls_fd *v;

	if (!k)
		return;
	v = bpf_map_lookup_elem(&ps_sc_tls_fds, k);
	if (v && v->key == key && v->conn_id == conn_id)
		bpf_map_delete_elem(&ps_sc_tls_fds, k);
	bpf_map_delete_elem(&ps_sc_tls_owners, &key);
}

/* The connection turned out to be TLS; user space hears once per process image. */
static __always_inline void ps_sc_tls_mark(__u64 key, __u32 fd, struct ps_sc_conn *c)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	c->tls = 1;
	c->tries = 0;
	if (c->on_socket) {
		/* The uprobes have no socket to look in: they find its plaintext state by cookie. */
		struct ps_sc_conn copy = *c;

		copy.on_socket = 0;
		bpf_map_update_elem(&ps_sc_conns, &key, &copy, BPF_ANY);
	}
	ps_sc_tls_bind(key, fd, c);
	if (bpf_map_lookup_elem(&ps_sc_tls_procs, &tgid))
		return;
	bpf_map_update_elem(&ps_sc_tls_procs, &tgid, &one, BPF_ANY);
	ps_sc_emit_control(PS_SC_EV_TLS, fd, c);
}

static __always_inline void ps_sc_tls_forget_proc(__u32 tgid)
{
	bpf_map_delete_elem(&ps_sc_tls_procs, &tgid);
}

/* A connection's first bytes, as the classifiers see them. */
struct ps_sc_head {
	__u8 b[PS_SC_CLASSIFY_BYTES];
};

/*
 * What the slots in candidates make of a connection's first len bytes:
 * PS_SC_MINE | slot << 8 for the first that claims it, PS_SC_UNKNOWN while
 * one still might, PS_SC_NOT_MINE. A global function: the verifier checks the
 * classifiers once, not again in every program and every path that calls it.
 */
__attribute__((noinline)) int ps_sc_verdict_of(const struct ps_sc_head *head, __u32 len,
						__u32 candidates, __u32 unix_socket,
						__u32 tls_plaintext)
{
	int http, mysql, mongodb, verdict = PS_SC_NOT_MINE;

	if (!head)
		return PS_SC_NOT_MINE;
	if (len > PS_SC_CLASSIFY_BYTES)
		len = PS_SC_CLASSIFY_BYTES;
	http = ps_http_classify(head->b, len);
	mysql = ps_mysql_classify(head->b, len);
	mongodb = ps_mongodb_classify(head->b, len);
	for (int i = 0; i < PS_SC_SLOTS; i++) {
		const struct ps_sc_slot *sl = &ps_sc_slots[i];
		__u8 classifier = unix_socket ? sl->unix_classifier : sl->classifier;
		int says = PS_HTTP_NO;

		if (!(candidates & (1u << i)) || !sl->active || (tls_plaintext && !sl->tls))
			continue;
		if (classifier == PS_SC_CLASSIFY_NONE && !unix_socket)
			return PS_SC_MINE | i << 8;
		if (classifier == PS_SC_CLASSIFY_HTTP1)
			says = http;
		else if (classifier == PS_SC_CLASSIFY_MYSQL)
			says = mysql;
		else if (classifier == PS_SC_CLASSIFY_MONGODB)
			says = mongodb;
		if (says == PS_HTTP_YES)
			return PS_SC_MINE | i << 8;
		if (says == PS_HTTP_MAYBE)
			verdict = PS_SC_UNKNOWN;
	}
	return verdict;
}

/*
 * Decides about an UNKNOWN connection on its first captured bytes: true when
 * it is (now) ours. Not ours moves the fd to the skip map. TLS records (not
 * in plaintext that came out of OpenSSL) mark it tls instead.
 */
static __always_inline bool ps_sc_classify(__u64 key, __u32 fd, struct ps_sc_conn *c,
					   const struct ps_sc_scratch *s, __u32 len, const __u8 flags)
{
	struct ps_sc_head head = {};
	bool inherited = c->role == PS_SC_ROLE_UNKNOWN;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;
	int verdict;

	__builtin_memcpy(head.b, s->data, sizeof(head.b));
	if (ps_sc_tls && !(flags & PS_SC_F_TLS) && ps_sc_looks_like_tls(head.b, len)) {
		ps_sc_tls_mark(key, fd, c);
		return false;
	}
	verdict = ps_sc_verdict_of(&head, len, c->candidates, c->family == AF_UNIX,
				   (flags & PS_SC_F_TLS) != 0);
	if ((verdict & 0xff) == PS_SC_MINE) {
		c->state = PS_SC_MINE;
		c->slot = (verdict >> 8) & (PS_SC_SLOTS - 1);
		if (ps_sc_slots[c->slot].walker && !(flags & PS_SC_F_TLS))
			ps_sc_walk_begin(c);
		bpf_map_update_elem(&ps_sc_procs, &tgid, &one, BPF_ANY);
		return true;
	}
	/* Joined midway, the next message may still start in a later syscall. */
	if (verdict == PS_SC_UNKNOWN || inherited) {
		c->tries++;
		if (c->tries < (inherited ? PS_SC_TRIES_INHERITED : PS_SC_TRIES_FRESH))
			return false;
	}
	ps_sc_give_up(key, c);
	return false;
}

/* One DATA event for `total` bytes moved, prefix and tail already in s->data. */
static __always_inline void ps_sc_emit_data(struct ps_sc_scratch *s, struct ps_sc_conn *c,
					    __u32 fd, __u8 dir, __u64 total, __u32 len, __u32 tail,
					    __u8 flags, __u64 walked_ts)
{
	bool full = !c->announced;

	ps_sc_fill_header(&s->ev, PS_SC_EV_DATA, fd, c, full);
	if (walked_ts)
		s->ev.ts_ns = walked_ts; /* its PIECES' */
	s->ev.flags |= flags;
	s->ev.dir = dir;
	s->ev.total = total;
	s->ev.len = len;
	s->ev.tail = tail;
	if (!ps_rb_output(&ps_sc_events, s, sizeof(s->ev) + ps_sc_bound(len + tail)) && full)
		c->announced = 1;
}

/*
 * One stretch of bytes moved on connection c: capture, classify if needed,
 * send. kind and flags are constants in every caller, so each program
 * carries only the copy code of its own syscall.
 */
/*
 * The first want bytes of what moved (kind: one buffer or iovecs at ptr) into
 * this CPU's scratch; how many were copied. Global functions, like the tail's
 * below: verified once, not in every program and path that copies.
 */
__attribute__((noinline)) __u32 ps_sc_copy(__u32 kind, __u64 ptr, __u32 cnt, __u32 want)
{
	struct ps_sc_scratch *s = ps_sc_scratch_get();

	if (!s || want > PS_SC_CAPTURE_MAX)
		return 0;
	if (kind == PS_SC_K_BUF)
		return ps_sc_copy_buf(s, ptr, want);
	if (kind == PS_SC_K_IOV)
		return ps_sc_copy_iov(ptr, cnt, want);
	return 0;
}

/* The last bytes of total, after the len already in the scratch; how many. */
__attribute__((noinline)) __u32 ps_sc_copy_tail(__u32 kind, __u64 ptr, __u32 cnt, __u64 total,
						 __u32 len)
{
	struct ps_sc_scratch *s = ps_sc_scratch_get();

	if (!s || len > PS_SC_CAPTURE_MAX || total <= len)
		return 0;
	if (kind == PS_SC_K_BUF)
		return ps_sc_copy_tail_buf(s, ptr, total, len);
	if (kind == PS_SC_K_IOV)
		return ps_sc_copy_tail_iov(ptr, cnt, total, len);
	return 0;
}

/*
 * An upgrade to TLS the claiming protocol asked the kernel to watch for: the
 * handshake follows at once, before user space could say so, and its
 * plaintext must already come from the uprobes.
 */
static __always_inline void ps_sc_watch_starttls(__u64 key, __u32 fd, struct ps_sc_conn *c,
						 const struct ps_sc_scratch *s, __u64 total,
						 __u32 len)
{
	const struct ps_sc_slot *sl = &ps_sc_slots[c->slot & (PS_SC_SLOTS - 1)];
	int seen;

	if (sl->starttls != PS_SC_STARTTLS_MYSQL || !sl->tls || !ps_sc_tls)
		return;
	seen = ps_mysql_ssl_request(s->data, total, len, c->starttls_half);
	c->starttls_half = seen == 2;
	if (seen == 1)
		ps_sc_tls_mark(key, fd, c);
}

static __always_inline void ps_sc_capture(__u64 key, struct ps_sc_conn *c, __u32 fd, __u8 dir,
					  const __u8 kind, __u64 ptr, __u32 cnt, __u64 total,
					  const __u8 flags)
{
	bool unclaimed = c->state != PS_SC_MINE;
	__u64 walked_ts = 0;
	struct ps_sc_scratch *s;
	__u32 len, tail = 0, want;

	s = ps_sc_scratch_get();
	if (!s)
		return;
	/* Most connections are no protocol's: the classifiers' few bytes first. */
	want = unclaimed ? (total < PS_SC_CLASSIFY_BYTES ? total : PS_SC_CLASSIFY_BYTES) :
			   ps_sc_want(c, total);
	len = ps_sc_copy(kind, ptr, cnt, want);
	if (unclaimed) {
		if (!ps_sc_classify(key, fd, c, s, len, flags))
			return;
		want = ps_sc_want(c, total);
		if (want > len)
			len = ps_sc_copy(kind, ptr, cnt, want);
	}
	if (len == want && total > want)
		tail = ps_sc_copy_tail(kind, ptr, cnt, total, len);
	if (c->walk && !(flags & PS_SC_F_TLS))
		walked_ts = ps_sc_walk_syscall(c, dir, kind, ptr, cnt, total, len);
	ps_sc_emit_data(s, c, fd, dir, total, len & (2 * PS_SC_CAPTURE_MAX - 1),
			tail & (PS_SC_TAIL_MAX * 2 - 1), flags, walked_ts);
	if (!(flags & PS_SC_F_TLS))
		ps_sc_watch_starttls(key, fd, c, s, total, len);
}

/* A syscall moved bytes on followed connection c; a tls connection's are ciphertext: never sent. */
static __always_inline void ps_sc_moved(__u64 key, struct ps_sc_conn *c, __u32 fd, __u8 dir,
					const __u8 kind, __u64 ptr, __u32 cnt, __u64 total)
{
	if (c->tls) {
		ps_sc_tls_bind(key, fd, c);
		return;
	}
	if (kind == PS_SC_K_NOCOPY && c->state != PS_SC_MINE)
		return; /* nothing to classify on */
	ps_sc_capture(key, c, fd, dir, kind, ptr, cnt, total, 0);
}

/*
 * The registers the syscall now returning was entered with. No data syscall
 * changes its argument registers, so the exit reads the arguments there: the
 * data syscalls need no entry program and no per-thread stash.
 */
static __always_inline struct pt_regs *ps_sc_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

/* The followed connection behind fd when a data syscall of someone else's moved bytes. */
static __always_inline struct ps_sc_conn *ps_sc_data_conn(long ret, __u32 fd, __u64 *key)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (ret <= 0 || tgid == ps_self_tgid)
		return NULL;
	*key = ps_sc_key(tgid, fd);
	return ps_sc_followed(*key, fd);
}

/* read, write, recvfrom, sendto (fd, buf, ...); readv, writev (fd, iov, iovcnt). */
static __always_inline int ps_sc_exit_data(long ret, const __u8 kind, const __u8 dir)
{
	struct pt_regs *regs = ps_sc_regs();
	__u32 fd = PT_REGS_PARM1_SYSCALL(regs);
	struct ps_sc_conn *c;
	__u64 key;

	c = ps_sc_data_conn(ret, fd, &key);
	if (c)
		ps_sc_moved(key, c, fd, dir, kind, PT_REGS_PARM2_SYSCALL(regs),
			    kind == PS_SC_K_IOV ? PT_REGS_PARM3_SYSCALL(regs) : 0, ret);
	return 0;
}

/* recvmsg, sendmsg (fd, msg, flags): the iovecs come from the msghdr, read only when followed. */
static __always_inline int ps_sc_exit_msg(long ret, const __u8 dir)
{
	struct pt_regs *regs = ps_sc_regs();
	__u32 fd = PT_REGS_PARM1_SYSCALL(regs);
	struct user_msghdr m;
	struct ps_sc_conn *c;
	__u64 key;

	c = ps_sc_data_conn(ret, fd, &key);
	if (!c)
		return 0;
	if (dir == PS_SC_DIR_IN && (PT_REGS_PARM3_SYSCALL(regs) & PS_SC_MSG_PEEK))
		return 0; /* read again later */
	if (bpf_probe_read_user(&m, sizeof(m), (const void *)PT_REGS_PARM2_SYSCALL(regs)))
		return 0;
	ps_sc_moved(key, c, fd, dir, PS_SC_K_IOV, (__u64)m.msg_iov, m.msg_iovlen, ret);
	return 0;
}

struct ps_sc_mmsg_ctx {
	__u64 key;
	__u64 ptr;
	__u32 fd;
	__u32 n;
	__u8 dir;
};

/* bpf_loop callback: message i of a recvmmsg/sendmmsg, each like one recvmsg/sendmsg. */
static long ps_sc_mmsg_one(__u32 i, void *data)
{
	struct ps_sc_mmsg_ctx *m = data;
	const struct mmsghdr *v = (const struct mmsghdr *)m->ptr;
	struct ps_sc_conn *c;
	struct mmsghdr h;

	if (i >= m->n || bpf_probe_read_user(&h, sizeof(h), &v[i]))
		return 1;
	c = bpf_map_lookup_elem(&ps_sc_conns, &m->key);
	if (!c)
		return 1;
	if (h.msg_len)
		ps_sc_moved(m->key, c, m->fd, m->dir, PS_SC_K_IOV, (__u64)h.msg_hdr.msg_iov,
			    h.msg_hdr.msg_iovlen, h.msg_len);
	return 0;
}

/* recvmmsg, sendmmsg (fd, msgvec, vlen, flags): they return how many messages went. */
static __always_inline int ps_sc_exit_mmsg(long ret, const __u8 dir)
{
	struct pt_regs *regs = ps_sc_regs();
	struct ps_sc_mmsg_ctx m = {};
	__u32 vlen;

	m.fd = PT_REGS_PARM1_SYSCALL(regs);
	if (!ps_sc_data_conn(ret, m.fd, &m.key))
		return 0;
	if (dir == PS_SC_DIR_IN && (PT_REGS_PARM4_SYSCALL(regs) & PS_SC_MSG_PEEK))
		return 0;
	vlen = PT_REGS_PARM3_SYSCALL(regs);
	m.ptr = PT_REGS_PARM2_SYSCALL(regs);
	m.dir = dir;
	m.n = ret < vlen ? ret : vlen;
	bpf_loop(PS_SC_MMSG_MAX, ps_sc_mmsg_one, &m, 0);
	return 0;
}

/* ---- socket path: sock_sendmsg / sock_recvmsg ----------------------------------------- */

/*
 * A stream socket first seen on the socket path: its storage, known by its
 * cookie whoever opened it; NOT_MINE at once when no protocol considers it.
 */
static __always_inline struct ps_sc_conn *ps_sc_track_sock(struct sock *sk, __u16 family)
{
	struct ps_sc_conn c = {};

	c.id = bpf_get_socket_cookie(sk);
	c.on_socket = 1;
	c.orders_seen = ps_sc_orders_gen;
	if (family == AF_UNIX)
		c.family = AF_UNIX;
	else
		ps_sc_read_inet(sk, family, &c);
	c.candidates = ps_sc_candidates(&c);
	if (!c.candidates)
		c.state = PS_SC_NOT_MINE;
	return bpf_sk_storage_get(&ps_sc_socks, sk, &c, BPF_SK_STORAGE_GET_F_CREATE);
}

/* What user space ordered since the connection last looked (rare: a generation compare). */
static __always_inline void ps_sc_take_orders(struct ps_sc_conn *c)
{
	__u64 key = c->id;
	__u8 *order = bpf_map_lookup_elem(&ps_sc_orders, &key);

	c->orders_seen = ps_sc_orders_gen;
	if (!order)
		return;
	if (*order == PS_SC_ORDER_REJECT)
		c->state = PS_SC_NOT_MINE;
	else if (*order == PS_SC_ORDER_STARTTLS && !c->tls)
		ps_sc_tls_mark(key, 0, c);
	else if (*order == PS_SC_ORDER_ANNOUNCE)
		c->announced = 0;
	bpf_map_delete_elem(&ps_sc_orders, &key);
}

/* Socket path: the connection is over for us; a CLOSE if it was followed. */
static __always_inline void ps_sc_sock_end(struct ps_sc_conn *c)
{
	__u64 key = c->id;
	struct ps_sc_conn *plain;

	/* An order given since it last looked will never be taken now. */
	if (c->orders_seen != ps_sc_orders_gen)
		bpf_map_delete_elem(&ps_sc_orders, &key);
	if (c->tls) {
		plain = bpf_map_lookup_elem(&ps_sc_conns, &key);
		if (plain && plain->state == PS_SC_MINE)
			ps_sc_emit_control(PS_SC_EV_CLOSE, 0, plain);
		bpf_map_delete_elem(&ps_sc_conns, &key);
		ps_sc_tls_unbind(key, c->id);
	} else if (c->state == PS_SC_MINE) {
		ps_sc_emit_control(PS_SC_EV_CLOSE, 0, c);
	}
	if (c->walk) {
		bpf_map_delete_elem(&ps_sc_walks, &key);
		c->walk = 0;
	}
	c->state = PS_SC_NOT_MINE;
	c->tls = 0;
}

/*
 * The syscall that reached sock_sendmsg/sock_recvmsg, from the registers it
 * was entered with; its buffer holds what moved. Kernel threads (io_uring's
 * workers, in-kernel senders) and syscalls that carry no readable buffer here
 * move bytes nobody can see: followed connections get a gap, never guessed
 * bytes.
 */
static __always_inline void ps_sc_sock_bytes(__u64 key, struct ps_sc_conn *c, __u8 dir, int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs;
	struct user_msghdr m;
	__u64 ptr, cnt = 0;
	__u32 fd;
	long nr;

	if (task->flags & (PS_SC_PF_KTHREAD | PS_SC_PF_IO_WORKER))
		goto uncaptured;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	nr = regs->orig_ax;
	fd = PT_REGS_PARM1_SYSCALL(regs);
	ptr = PT_REGS_PARM2_SYSCALL(regs);
	switch (nr) {
	case PS_SC_NR_READ:
	case PS_SC_NR_WRITE:
	case PS_SC_NR_RECVFROM:
	case PS_SC_NR_SENDTO:
		/* One copy of each kind's code: the program stays small and quick to verify. */
		ps_sc_moved(key, c, fd, dir, PS_SC_K_BUF, ptr, 0, ret);
		return;
	case PS_SC_NR_READV:
	case PS_SC_NR_WRITEV:
		cnt = PT_REGS_PARM3_SYSCALL(regs);
		/* In a register before the paths meet: one load of two kinds of pointer won't verify. */
		asm volatile("" : "+r"(cnt));
		break;
	case PS_SC_NR_RECVMMSG:
	case PS_SC_NR_SENDMMSG:
		/*
		 * The hook fires once per message, and nothing here tells which
		 * message of the vector this is: only a vector of one is exact.
		 */
		if (PT_REGS_PARM3_SYSCALL(regs) != 1)
			goto uncaptured;
		/* fall through: a struct mmsghdr starts with its msghdr */
	case PS_SC_NR_RECVMSG:
	case PS_SC_NR_SENDMSG:
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)ptr))
			goto uncaptured;
		ptr = (__u64)m.msg_iov;
		cnt = m.msg_iovlen;
		asm volatile("" : "+r"(cnt), "+r"(ptr));
		break;
	case PS_SC_NR_SENDFILE:
	case PS_SC_NR_SPLICE:
		ps_sc_moved(key, c, fd, dir, PS_SC_K_NOCOPY, 0, 0, ret);
		return;
	default:
		goto uncaptured;
	}
	ps_sc_moved(key, c, fd, dir, PS_SC_K_IOV, ptr, cnt, ret);
	return;
uncaptured:
	if (c->state == PS_SC_MINE || c->tls)
		ps_sc_count(PS_SC_STAT_UNCAPTURED);
	ps_sc_moved(key, c, 0, dir, PS_SC_K_NOCOPY, 0, 0, ret);
}

/* The end ps_sc_sock_state put off, now that its syscall's bytes went out. */
static __always_inline void ps_sc_sock_end_deferred(struct ps_sc_conn *c)
{
	c->end_deferred = 0;
	__sync_fetch_and_add(&ps_sc_ends_deferred, -1);
	ps_sc_sock_end(c);
}

/*
 * Bytes moved through a socket. Anything but a TCP or AF_UNIX stream socket
 * costs a few loads; a stream socket we do not follow, a look in its storage.
 */
static __always_inline int ps_sc_sock_moved(struct sock *sk, int ret, __u8 dir)
{
	struct ps_sc_conn *c;
	__u16 family;

	if (ps_is_self() || sk->sk_type != PS_SC_SOCK_STREAM)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family == AF_INET || family == AF_INET6) {
		if (sk->sk_protocol != IPPROTO_TCP)
			return 0;
	} else if (family != AF_UNIX) {
		return 0;
	}
	c = bpf_sk_storage_get(&ps_sc_socks, sk, 0, 0);
	if (!c) {
		c = ps_sc_track_sock(sk, family);
		if (!c)
			return 0;
	}
	if (c->state != PS_SC_NOT_MINE && c->orders_seen != ps_sc_orders_gen)
		ps_sc_take_orders(c);
	if (c->state != PS_SC_NOT_MINE)
		ps_sc_sock_bytes(c->id, c, dir, ret);
	if (c->end_deferred)
		ps_sc_sock_end_deferred(c);
	return 0;
}

/* A syscall that moved nothing may still owe its connection's end. */
static __always_inline int ps_sc_sock_moved_nothing(struct sock *sk)
{
	struct ps_sc_conn *c;

	if (!ps_sc_ends_deferred)
		return 0;
	c = bpf_sk_storage_get(&ps_sc_socks, sk, 0, 0);
	if (c && c->end_deferred)
		ps_sc_sock_end_deferred(c);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ps_sc_sock_send, struct sock *sk, int ret, int flags)
{
	if (ret <= 0)
		return ps_sc_sock_moved_nothing(sk);
	return ps_sc_sock_moved(sk, ret, PS_SC_DIR_OUT);
}

/* A peek is read again later; 0 is the peer's end of the stream. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(ps_sc_sock_recv, struct sock *sk, int ret, int flags)
{
	struct ps_sc_conn *c;

	if (ret > 0 && !(flags & PS_SC_MSG_PEEK))
		return ps_sc_sock_moved(sk, ret, PS_SC_DIR_IN);
	ps_sc_sock_moved_nothing(sk);
	/* AF_UNIX has no state tracepoint: the end of the stream ends it. */
	if (ret == 0 && sk->__sk_common.skc_family == AF_UNIX && !ps_is_self()) {
		c = bpf_sk_storage_get(&ps_sc_socks, sk, 0, 0);
		if (c)
			ps_sc_sock_end(c);
	}
	return 0;
}

/*
 * Is the current task inside a data syscall on sk, one whose length hook is
 * still to fire? A peer's RST on loopback is handled within the send (or the
 * ACK of a recv) that provoked it, before that hook reports the bytes.
 */
static __always_inline bool ps_sc_in_data_syscall_on(const struct sock *sk)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs;
	struct socket *sock;
	struct file *file;

	if (task->flags & (PS_SC_PF_KTHREAD | PS_SC_PF_IO_WORKER))
		return false;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	switch (regs->orig_ax) {
	case PS_SC_NR_READ:
	case PS_SC_NR_WRITE:
	case PS_SC_NR_READV:
	case PS_SC_NR_WRITEV:
	case PS_SC_NR_SENDTO:
	case PS_SC_NR_RECVFROM:
	case PS_SC_NR_SENDMSG:
	case PS_SC_NR_RECVMSG:
	case PS_SC_NR_SENDMMSG:
	case PS_SC_NR_RECVMMSG:
	case PS_SC_NR_SENDFILE:
		break; /* the socket is the first argument of each */
	default:
		return false;
	}
	file = ps_sc_fd_file(PT_REGS_PARM1_SYSCALL(regs));
	if (!file || !ps_sc_file_is_socket(file))
		return false;
	sock = BPF_CORE_READ(file, private_data);
	return sock && BPF_CORE_READ(sock, sk) == sk;
}

/*
 * A TCP connection ends for us when our side sends its FIN (close, or
 * shutdown for writing) or it is closed outright; what it still reads after
 * our FIN is not worth a new classification. Its storage goes with the socket.
 * Closed outright inside one of its own data syscalls (a reset), it ends after
 * that syscall's bytes: a response written to a loopback client that had gone
 * still counts, and its CLOSE still follows its DATA.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ps_sc_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct ps_sc_conn *c;

	if (newstate != PS_SC_TCP_FIN_WAIT1 && newstate != PS_SC_TCP_LAST_ACK &&
	    newstate != PS_SC_TCP_CLOSE)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	c = bpf_sk_storage_get(&ps_sc_socks, (struct sock *)sk, 0, 0);
	if (!c || (c->state == PS_SC_NOT_MINE && !c->tls) || c->end_deferred)
		return 0;
	if (newstate == PS_SC_TCP_CLOSE && ps_sc_in_data_syscall_on(sk)) {
		c->end_deferred = 1;
		__sync_fetch_and_add(&ps_sc_ends_deferred, 1);
		return 0;
	}
	ps_sc_sock_end(c);
	return 0;
}

/* ---- syscall path: connection boundaries ---------------------------------------------- */

/* A new connection on fd: whatever the fd was before is over. */
static __always_inline void ps_sc_begin(__u32 fd, __u8 role)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 key = ps_sc_key(tgid, fd);

	ps_sc_forget(key, fd);
	ps_sc_track(key, fd, role);
}

static __always_inline int ps_sc_accepted(const struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0 || ps_is_self())
		return 0;
	ps_sc_begin(ctx->ret, PS_SC_ROLE_SERVER);
	return 0;
}

SEC("tp/syscalls/sys_exit_accept")
int ps_sc_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_accepted(ctx);
}

SEC("tp/syscalls/sys_exit_accept4")
int ps_sc_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_accepted(ctx);
}

/* connect(fd, addr, len): in progress counts, the bytes will tell. */
SEC("tp/syscalls/sys_exit_connect")
int ps_sc_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 fd = PT_REGS_PARM1_SYSCALL(ps_sc_regs());
	long ret = ctx->ret;

	if (tgid == ps_self_tgid)
		return 0;
	if (ret == 0 || ret == -PS_SC_EINPROGRESS)
		ps_sc_begin(fd, PS_SC_ROLE_CLIENT);
	else
		ps_sc_forget(ps_sc_key(tgid, fd), fd);
	return 0;
}

SEC("tp/syscalls/sys_enter_close")
int ps_sc_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 fd = ctx->args[0];

	if (tgid == ps_self_tgid)
		return 0;
	ps_sc_forget(ps_sc_key(tgid, fd), fd);
	return 0;
}

/* dup2/dup3 close newfd silently when it was open. */
static __always_inline int ps_sc_dup_over(const struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 oldfd = ctx->args[0], newfd = ctx->args[1];

	if (tgid == ps_self_tgid || oldfd == newfd)
		return 0;
	ps_sc_forget(ps_sc_key(tgid, newfd), newfd);
	return 0;
}

SEC("tp/syscalls/sys_enter_dup2")
int ps_sc_enter_dup2(struct trace_event_raw_sys_enter *ctx)
{
	return ps_sc_dup_over(ctx);
}

SEC("tp/syscalls/sys_enter_dup3")
int ps_sc_enter_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return ps_sc_dup_over(ctx);
}

/* Set before load on the syscall path, where entries are keyed by tgid and fd. */
const volatile __u8 ps_sc_fd_keys = 0;

#define PS_SC_EXIT_FDS_MAX 65536 /* fds looked at when a process goes; past them, the LRU */

struct ps_sc_exit_fds {
	__u64 tgid_key; /* tgid << 32 */
	unsigned long *open_fds;
	unsigned long word; /* open_fds' word of the current fd */
};

/* bpf_loop callback, one fd per call: an open fd's entries go. */
static long ps_sc_exit_fd(__u32 fd, void *data)
{
	struct ps_sc_exit_fds *x = data;
	struct ps_sc_conn *c;
	__u64 key;

	if ((fd & 63) == 0 &&
	    bpf_probe_read_kernel(&x->word, sizeof(x->word), &x->open_fds[fd / 64]))
		return 1;
	if (!(x->word & (1ul << (fd & 63))))
		return 0;
	key = x->tgid_key | fd;
	if (bpf_map_delete_elem(&ps_sc_skip, &key) == 0)
		return 0;
	c = bpf_map_lookup_elem(&ps_sc_conns, &key);
	if (!c)
		return 0;
	if (c->tls)
		ps_sc_tls_unbind(key, c->id);
	if (c->walk) {
		__u64 id = c->id;

		bpf_map_delete_elem(&ps_sc_walks, &id);
	}
	bpf_map_delete_elem(&ps_sc_conns, &key);
	return 0;
}

/*
 * Syscall path: a process's fds close at exit without a close syscall, so
 * their entries would wait for the LRU. The fd table is still there when the
 * exit tracepoint fires; the CLOSEs are the EXIT's, in user space.
 */
static __always_inline void ps_sc_exit_forget_fds(struct task_struct *task, __u32 tgid)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct ps_sc_exit_fds x = { .tgid_key = (__u64)tgid << 32 };
	__u32 n;

	if (!fdt)
		return;
	n = BPF_CORE_READ(fdt, max_fds);
	x.open_fds = BPF_CORE_READ(fdt, open_fds);
	if (!x.open_fds)
		return;
	bpf_loop(n < PS_SC_EXIT_FDS_MAX ? n : PS_SC_EXIT_FDS_MAX, ps_sc_exit_fd, &x, 0);
}

/* The last thread of a process is going: an EXIT if it had connections of ours. */
SEC("tp/sched/sched_process_exit")
int ps_sc_process_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	ps_sc_tls_forget_proc(tgid);
	if (ps_sc_fd_keys && tgid != ps_self_tgid)
		ps_sc_exit_forget_fds(task, tgid);
	if (!bpf_map_lookup_elem(&ps_sc_procs, &tgid))
		return 0;
	bpf_map_delete_elem(&ps_sc_procs, &tgid);
	ps_sc_emit_control(PS_SC_EV_EXIT, 0, NULL);
	return 0;
}

/* ---- syscall path: the data syscalls, one exit program each --------------------------- */

#define PS_SC_DATA_PROG(name, kind, dir)                            \
	SEC("tp/syscalls/sys_exit_" #name)                          \
	int ps_sc_exit_##name(struct trace_event_raw_sys_exit *ctx) \
	{                                                           \
		return ps_sc_exit_data(ctx->ret, kind, dir);        \
	}

PS_SC_DATA_PROG(read, PS_SC_K_BUF, PS_SC_DIR_IN)
PS_SC_DATA_PROG(write, PS_SC_K_BUF, PS_SC_DIR_OUT)
PS_SC_DATA_PROG(readv, PS_SC_K_IOV, PS_SC_DIR_IN)
PS_SC_DATA_PROG(writev, PS_SC_K_IOV, PS_SC_DIR_OUT)
PS_SC_DATA_PROG(sendto, PS_SC_K_BUF, PS_SC_DIR_OUT)

/* recvfrom(fd, buf, len, flags, addr, addrlen): a peek is read again later. */
SEC("tp/syscalls/sys_exit_recvfrom")
int ps_sc_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	if (PT_REGS_PARM4_SYSCALL(ps_sc_regs()) & PS_SC_MSG_PEEK)
		return 0;
	return ps_sc_exit_data(ctx->ret, PS_SC_K_BUF, PS_SC_DIR_IN);
}

SEC("tp/syscalls/sys_exit_recvmsg")
int ps_sc_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_exit_msg(ctx->ret, PS_SC_DIR_IN);
}

SEC("tp/syscalls/sys_exit_sendmsg")
int ps_sc_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_exit_msg(ctx->ret, PS_SC_DIR_OUT);
}

SEC("tp/syscalls/sys_exit_recvmmsg")
int ps_sc_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_exit_mmsg(ctx->ret, PS_SC_DIR_IN);
}

SEC("tp/syscalls/sys_exit_sendmmsg")
int ps_sc_exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_exit_mmsg(ctx->ret, PS_SC_DIR_OUT);
}

/* sendfile(out_fd, in_fd, offset, count): nginx's static files. Counted, not captured. */
SEC("tp/syscalls/sys_exit_sendfile64")
int ps_sc_exit_sendfile64(struct trace_event_raw_sys_exit *ctx)
{
	return ps_sc_exit_data(ctx->ret, PS_SC_K_NOCOPY, PS_SC_DIR_OUT);
}

/* splice(fd_in, off_in, fd_out, off_out, len, flags): one end is a pipe. */
SEC("tp/syscalls/sys_exit_splice")
int ps_sc_exit_splice(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = ps_sc_regs();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 in = PT_REGS_PARM1_SYSCALL(regs), out = PT_REGS_PARM3_SYSCALL(regs);
	struct ps_sc_conn *c;
	__u64 key;

	if (ctx->ret <= 0 || tgid == ps_self_tgid)
		return 0;
	key = ps_sc_key(tgid, out);
	c = bpf_map_lookup_elem(&ps_sc_conns, &key);
	if (c) {
		ps_sc_moved(key, c, out, PS_SC_DIR_OUT, PS_SC_K_NOCOPY, 0, 0, ctx->ret);
		return 0;
	}
	key = ps_sc_key(tgid, in);
	c = bpf_map_lookup_elem(&ps_sc_conns, &key);
	if (c)
		ps_sc_moved(key, c, in, PS_SC_DIR_IN, PS_SC_K_NOCOPY, 0, 0, ctx->ret);
	return 0;
}

/* ---- TLS: OpenSSL uprobes, attached by user space to each libssl ----------------------- */

static __always_inline int ps_sc_tls_enter(__u64 ssl, __u64 buf, __u64 nbytes, __u8 dir)
{
	struct ps_sc_tls_call *call;

	if (ps_is_self())
		return 0;
	call = bpf_task_storage_get(&ps_sc_tls_calls, bpf_get_current_task_btf(), 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!call)
		return 0;
	call->ssl = ssl;
	call->buf = buf;
	call->nbytes = nbytes;
	call->fd = 0;
	call->active = 1;
	call->bound = 0;
	call->dir = dir;
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(ps_sc_ssl_read, void *ssl, void *buf)
{
	return ps_sc_tls_enter((__u64)ssl, (__u64)buf, 0, PS_SC_DIR_IN);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(ps_sc_ssl_write, void *ssl, void *buf)
{
	return ps_sc_tls_enter((__u64)ssl, (__u64)buf, 0, PS_SC_DIR_OUT);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_KPROBE(ps_sc_ssl_read_ex, void *ssl, void *buf, __u64 num, void *readbytes)
{
	return ps_sc_tls_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, PS_SC_DIR_IN);
}

/* int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_KPROBE(ps_sc_ssl_write_ex, void *ssl, void *buf, __u64 num, void *written)
{
	return ps_sc_tls_enter((__u64)ssl, (__u64)buf, (__u64)written, PS_SC_DIR_OUT);
}

/* Plaintext bytes the call moved: the return value, or *nbytes when _ex succeeded. */
static __always_inline __u64 ps_sc_tls_moved_bytes(__u64 nbytes, int ret)
{
	__u64 n = 0;

	if (!nbytes)
		return ret > 0 ? ret : 0;
	if (ret != 1 || bpf_probe_read_user(&n, sizeof(n), (const void *)nbytes))
		return 0;
	return n;
}

/* The return of all four: the plaintext goes out on the connection its records used. */
SEC("uretprobe")
int BPF_KRETPROBE(ps_sc_ssl_return, int ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ps_sc_tls_key k = {};
	struct ps_sc_tls_call *call;
	struct ps_sc_tls_fd *v;
	struct ps_sc_conn *c;
	__u64 total, key, buf, conn_id = 0;
	__u32 fd;
	__u8 dir;

	call = bpf_task_storage_get(&ps_sc_tls_calls, bpf_get_current_task_btf(), 0, 0);
	if (!call || !call->active)
		return 0;
	call->active = 0;
	total = ps_sc_tls_moved_bytes(call->nbytes, ret);
	if (!total)
		return 0; /* WANT_READ/WANT_WRITE, errors, close_notify */
	buf = call->buf;
	dir = call->dir;
	fd = call->fd;
	key = call->key;
	if (!call->bound) {
		k.ssl = call->ssl;
		k.tgid = tgid;
		v = bpf_map_lookup_elem(&ps_sc_tls_fds, &k);
		if (!v) {
			ps_sc_count(PS_SC_STAT_TLS_UNBOUND);
			return 0;
		}
		fd = v->fd;
		key = v->key;
		conn_id = v->conn_id;
	}
	c = bpf_map_lookup_elem(&ps_sc_conns, &key);
	if (!c || !c->tls || (conn_id && c->id != conn_id))
		return 0; /* not followed (filtered, not ours), or the fd moved on */
	ps_sc_capture(key, c, fd, dir, PS_SC_K_BUF, buf, 0, total, PS_SC_F_TLS);
	return 0;
}

/* A new program image may map a libssl we have not attached to yet. */
SEC("tp/sched/sched_process_exec")
int ps_sc_process_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (!ps_sc_tls || tgid == ps_self_tgid)
		return 0;
	ps_sc_tls_forget_proc(tgid);
	ps_sc_emit_control(PS_SC_EV_EXEC, 0, NULL);
	return 0;
}
