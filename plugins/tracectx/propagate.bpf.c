/*
 * tracectx's opt-in propagation (propagate: true): a W3C traceparent header
 * added to outbound HTTP/1.x requests that lack one, so that the next hop,
 * another host running periscope, joins the same trace.
 *
 *  - sock_ops puts each outbound TCP connection to a configured port (all
 *    ports when none is configured) in a sockhash as it is established, and
 *    marks inbound ones as served;
 *  - the sockhash's sk_msg program sees every message such a connection sends
 *    before TCP does: one that starts a request without a traceparent gets
 *    one after its request line;
 *  - sock_recv_length notes, per thread, the inbound request it starts to
 *    serve (trace id from the request's own traceparent, or a new one), and
 *    sock_send_length forgets it when the thread answers: requests the thread
 *    sends meanwhile are that request's children.
 *
 * User space takes the ids that went out (tc_ids, by socket cookie and
 * request ordinal) as the client span's, as if the application had sent the
 * header itself: the header and the spans periscope writes agree.
 *
 * Without propagate this object is not loaded: periscope never modifies
 * traffic.
 */
#include "ps_common.bpf.h"
#include "ps_classify_http.h"
#include "propagate_maps.h"

char LICENSE[] SEC("license") = "GPL";

#define TC_HEADER_LEN 70 /* "traceparent: " + 55 + "\r\n" */
#define TC_SCAN 512	 /* bytes of a request head searched (a power of two) */
#define TC_ROLE_CLIENT 1
#define TC_ROLE_SERVER 2
#define TC_SOCK_STREAM 1
#define TC_MSG_PEEK 2
#define TC_NR_READ 0
#define TC_NR_RECVFROM 45
#define TC_NR_RECVMSG 47

const volatile __u16 tc_ports[TC_PORTS_MAX] = {};
const volatile __u32 tc_n_ports = 0;
/* sample_ratio * 2^56: a new trace is sampled when its id's last 7 bytes fall below (as user space decides). */
const volatile __u64 tc_sample_below = 1ull << 56;

struct tc_sock {
	__u64 cookie;
	__u32 seq; /* requests that started on this socket */
	__u8 role;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} tc_sockhash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tc_sock);
} tc_socks SEC(".maps");

/* pid_tgid -> the inbound request the thread serves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tc_ids);
} tc_threads SEC(".maps");

/* What user space reads for each injected request; LRU: entries it never asks for age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tc_key);
	__type(value, struct tc_ids);
} tc_ids SEC(".maps");

struct tc_scratch {
	__u8 data[TC_SCAN + 16]; /* a header name is looked at up to 13 bytes past the scan */
	struct tc_ids ids;
	char header[TC_HEADER_LEN + 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tc_scratch);
} tc_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tc_stats SEC(".maps");

static __always_inline void tc_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&tc_stats, &stat);

	if (n)
		*n += 1;
}

static __always_inline struct tc_scratch *tc_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tc_scratch, &zero);
}

static __always_inline void tc_random(__u8 *p, __u32 n)
{
	for (__u32 i = 0; i < n; i += 4) {
		__u32 r = bpf_get_prandom_u32();

		__builtin_memcpy(p + i, &r, 4);
	}
}

/* A new trace: a random id, sampled by the ratio user space applies to the same id. */
static __always_inline void tc_new_trace(struct tc_ids *ids)
{
	__u64 v = 0;

	tc_random(ids->trace_id, 16);
	for (int i = 8; i < 16; i++)
		v = v << 8 | ids->trace_id[i];
	ids->flags = (v >> 8) < tc_sample_below;
	__builtin_memset(ids->parent_id, 0, 8);
	ids->has_parent = 0;
}

static __always_inline bool tc_port_wanted(__u32 port)
{
	if (!tc_n_ports)
		return true;
	for (__u32 i = 0; i < TC_PORTS_MAX; i++)
		if (i < tc_n_ports && tc_ports[i] == port)
			return true;
	return false;
}

/* Connections made after we attached; those already open are left alone. */
SEC("sockops")
int tc_sockops(struct bpf_sock_ops *skops)
{
	bool active = skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB;
	struct bpf_sock *sk = skops->sk;
	struct tc_sock *st;
	__u64 cookie;

	if (!active && skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (!sk || (active && !tc_port_wanted(bpf_ntohl(skops->remote_port))))
		return 1;
	st = bpf_sk_storage_get(&tc_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	st->cookie = cookie;
	st->role = active ? TC_ROLE_CLIENT : TC_ROLE_SERVER;
	if (active)
		bpf_sock_hash_update(skops, &tc_sockhash, &cookie, BPF_ANY);
	return 1;
}

/* ---- a request head in the scratch: where its line ends, and its traceparent ---------- */

struct tc_scan {
	__u32 n;     /* bytes in the scratch */
	__u32 eol;   /* just past the request line's '\n'; 0: not seen */
	__u32 value; /* where a traceparent header's value starts; 0: none */
};

static __always_inline bool tc_is_traceparent(const __u8 *p)
{
	return (p[0] | 0x20) == 't' && (p[1] | 0x20) == 'r' && (p[2] | 0x20) == 'a' &&
	       (p[3] | 0x20) == 'c' && (p[4] | 0x20) == 'e' && (p[5] | 0x20) == 'p' &&
	       (p[6] | 0x20) == 'a' && (p[7] | 0x20) == 'r' && (p[8] | 0x20) == 'e' &&
	       (p[9] | 0x20) == 'n' && (p[10] | 0x20) == 't' && p[11] == ':';
}

/* bpf_loop callback, a byte per call (a loop the verifier walks once): each '\n' starts a line. */
static long tc_scan_step(__u32 i, void *data)
{
	struct tc_scratch *s = tc_scratch_get();
	struct tc_scan *sc = data;
	__u64 off = i;
	__u8 *p;

	if (!s || i >= sc->n)
		return 1;
	asm volatile("%[o] &= %[mask]" : [o] "+r"(off) : [mask] "i"(TC_SCAN - 1));
	p = &s->data[off];
	if (p[0] != '\n')
		return 0;
	if (!sc->eol)
		sc->eol = i + 1;
	if (p[1] == '\r' || p[1] == '\n')
		return 1; /* the end of the head */
	if (i + 14 <= sc->n && tc_is_traceparent(p + 1)) {
		sc->value = i + 13;
		return 1;
	}
	return 0;
}

static __always_inline void tc_scan_head(struct tc_scan *sc, __u32 n)
{
	sc->n = n;
	sc->eol = 0;
	sc->value = 0;
	bpf_loop(TC_SCAN, tc_scan_step, sc, 0);
}

static __always_inline int tc_unhex(__u8 c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* n hex pairs at p into out; false if any is not lowercase hex. Sets *any if a byte is not 0. */
static __always_inline bool tc_unhex_bytes(const __u8 *p, __u8 *out, int n, __u8 *any)
{
	for (int i = 0; i < n; i++) {
		int hi = tc_unhex(p[2 * i]), lo = tc_unhex(p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = hi << 4 | lo;
		*any |= out[i];
	}
	return true;
}

/*
 * The traceparent value at s->data[at], strictly W3C (the same rules as
 * core/traceparent.c): version hex and not ff, version 00 exactly 55
 * characters, lowercase hex, ids not all zero. 0 and ids in s->ids, or -1.
 */
static __always_inline int tc_parse_traceparent(struct tc_scratch *s, __u32 at, __u32 n)
{
	__u8 any_trace = 0, any_parent = 0, flags;
	int v0, v1;
	__u64 off;
	__u8 *p;

	for (int k = 0; k < 4; k++) {
		__u8 c = s->data[at & (TC_SCAN - 1)];

		if (at < n && (c == ' ' || c == '\t'))
			at++;
	}
	if (at + 55 > n || at > TC_SCAN - 56)
		return -1;
	off = at;
	asm volatile("%[o] &= %[mask]" : [o] "+r"(off) : [mask] "i"(TC_SCAN - 1));
	p = &s->data[off];
	v0 = tc_unhex(p[0]);
	v1 = tc_unhex(p[1]);
	if (v0 < 0 || v1 < 0 || (v0 == 15 && v1 == 15))
		return -1;
	if (p[2] != '-' || p[35] != '-' || p[52] != '-')
		return -1;
	/* Version 00 ends there; a later version may go on after a '-'. */
	if (at + 55 < n && p[55] != '\r' && p[55] != '\n' && p[55] != ' ' && p[55] != '\t' &&
	    (v0 == 0 && v1 == 0 ? true : p[55] != '-'))
		return -1;
	if (!tc_unhex_bytes(p + 3, s->ids.trace_id, 16, &any_trace) ||
	    !tc_unhex_bytes(p + 36, s->ids.parent_id, 8, &any_parent) ||
	    !tc_unhex_bytes(p + 53, &flags, 1, &any_parent))
		return -1;
	if (!any_trace || !any_parent)
		return -1;
	s->ids.flags = flags;
	s->ids.has_parent = 1;
	return 0;
}

static __always_inline char tc_hex(__u8 v)
{
	v &= 0xf;
	return v < 10 ? '0' + v : 'a' + v - 10;
}

static __always_inline void tc_format_header(char *h, const struct tc_ids *ids)
{
	const char pre[16] = { 't', 'r', 'a', 'c', 'e', 'p', 'a', 'r',
			       'e', 'n', 't', ':', ' ', '0', '0', '-' };

	__builtin_memcpy(h, pre, 16);
	for (int i = 0; i < 16; i++) {
		h[16 + 2 * i] = tc_hex(ids->trace_id[i] >> 4);
		h[17 + 2 * i] = tc_hex(ids->trace_id[i]);
	}
	h[48] = '-';
	for (int i = 0; i < 8; i++) {
		h[49 + 2 * i] = tc_hex(ids->span_id[i] >> 4);
		h[50 + 2 * i] = tc_hex(ids->span_id[i]);
	}
	h[65] = '-';
	h[66] = '0';
	h[67] = ids->flags & 1 ? '1' : '0';
	h[68] = '\r';
	h[69] = '\n';
}

/* ---- outbound: the header goes in ----------------------------------------------------- */

/* The ids of a request the current thread sends: a child of what it serves, or a new trace. */
static __always_inline void tc_client_ids(struct tc_ids *ids, __u64 cookie)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tc_ids *served = bpf_map_lookup_elem(&tc_threads, &pid_tgid);

	if (served) {
		__builtin_memcpy(ids->trace_id, served->trace_id, 16);
		__builtin_memcpy(ids->parent_id, served->span_id, 8);
		ids->flags = served->flags;
		ids->has_parent = 1;
	} else {
		tc_new_trace(ids);
	}
	tc_random(ids->span_id, 8);
	ids->ts_ns = bpf_ktime_get_ns();
	ids->cookie = cookie;
}

SEC("sk_msg")
int tc_inject(struct sk_msg_md *msg)
{
	struct tc_key key = {};
	struct tc_scan scan;
	struct tc_scratch *s;
	struct tc_sock *st;
	__u32 n;
	__u8 *d;

	if (!msg->sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&tc_socks, msg->sk, 0, 0);
	if (!st || st->role != TC_ROLE_CLIENT)
		return SK_PASS;
	n = msg->size < TC_SCAN ? msg->size : TC_SCAN;
	if (n < PS_HTTP_CLASSIFY_BYTES || bpf_msg_pull_data(msg, 0, n, 0))
		return SK_PASS;
	d = msg->data;
	s = tc_scratch_get();
	if (!s || (void *)(d + PS_HTTP_CLASSIFY_BYTES) > msg->data_end)
		return SK_PASS;
	/* A message that starts a request: anything else (a body, a later part) passes. */
	if (ps_http_classify_request(d, PS_HTTP_CLASSIFY_BYTES) != PS_HTTP_YES)
		return SK_PASS;
	key.cookie = st->cookie;
	key.seq = st->seq++;
	if (bpf_probe_read_kernel(s->data, n & (TC_SCAN - 1) ?: TC_SCAN, d))
		return SK_PASS;
	tc_scan_head(&scan, n);
	if (scan.value) {
		tc_count(TC_STAT_HAD_HEADER); /* the application propagates: its ids win */
		return SK_PASS;
	}
	if (!scan.eol) {
		tc_count(TC_STAT_NO_LINE_END);
		return SK_PASS;
	}
	tc_client_ids(&s->ids, key.cookie);
	tc_format_header(s->header, &s->ids);
	if (bpf_msg_push_data(msg, scan.eol, TC_HEADER_LEN, 0) ||
	    bpf_msg_pull_data(msg, scan.eol, scan.eol + TC_HEADER_LEN, 0)) {
		tc_count(TC_STAT_PUSH_FAILED);
		return SK_PASS;
	}
	d = msg->data;
	if ((void *)(d + TC_HEADER_LEN) > msg->data_end) {
		tc_count(TC_STAT_PUSH_FAILED);
		return SK_PASS;
	}
	for (int i = 0; i < TC_HEADER_LEN; i++)
		d[i] = s->header[i];
	bpf_map_update_elem(&tc_ids, &key, &s->ids, BPF_ANY);
	tc_count(TC_STAT_INJECTED);
	return SK_PASS;
}

/*
 * Attached as the sockhash's stream verdict and passing everything: without
 * a verdict program, kernels from 6.6.128, 6.12.75 and 6.18.14 on answer
 * FIONREAD with 0 for a socket in a sockhash (measured here on 6.18.44), and
 * may miss its receive wake-ups.
 */
SEC("sk_skb/stream_verdict")
int tc_pass(struct __sk_buff *skb)
{
	return SK_PASS;
}

/* ---- inbound: which request a thread serves ------------------------------------------- */

/* The user buffer the returning read/recvfrom/recvmsg filled (its first iovec), or 0. */
static __always_inline __u64 tc_recv_buf(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 ptr = PT_REGS_PARM2_SYSCALL(regs);
	long nr = regs->orig_ax;
	struct user_msghdr m;
	struct iovec v;

	if (nr == TC_NR_READ || nr == TC_NR_RECVFROM)
		return ptr;
	if (nr != TC_NR_RECVMSG || bpf_probe_read_user(&m, sizeof(m), (void *)ptr) ||
	    bpf_probe_read_user(&v, sizeof(v), m.msg_iov))
		return 0;
	return (__u64)v.iov_base;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tc_recv, struct sock *sk, int ret, int flags)
{
	struct tc_scratch *s;
	struct tc_sock *st;
	struct tc_scan scan;
	__u64 buf, pid_tgid;
	__u32 n;

	if (ret < PS_HTTP_CLASSIFY_BYTES || (flags & TC_MSG_PEEK) || sk->sk_type != TC_SOCK_STREAM)
		return 0;
	st = bpf_sk_storage_get(&tc_socks, sk, 0, 0);
	if (!st || st->role != TC_ROLE_SERVER || ps_is_self())
		return 0;
	buf = tc_recv_buf();
	s = tc_scratch_get();
	if (!buf || !s)
		return 0;
	n = ret < TC_SCAN - 1 ? ret : TC_SCAN - 1;
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(TC_SCAN - 1));
	if (n < PS_HTTP_CLASSIFY_BYTES || bpf_probe_read_user(s->data, n, (void *)buf))
		return 0;
	if (ps_http_classify_request(s->data, PS_HTTP_CLASSIFY_BYTES) != PS_HTTP_YES)
		return 0;
	tc_scan_head(&scan, n);
	/* The request's own trace, or a new one: the server span is then the root. */
	if (!scan.value || tc_parse_traceparent(s, scan.value, n))
		tc_new_trace(&s->ids);
	tc_random(s->ids.span_id, 8);
	s->ids.ts_ns = bpf_ktime_get_ns();
	s->ids.cookie = st->cookie;
	pid_tgid = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&tc_threads, &pid_tgid, &s->ids, BPF_ANY);
	tc_count(TC_STAT_SERVER_SEEN);
	return 0;
}

/* The thread answers: the request it served no longer parents what it sends elsewhere. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(tc_send, struct sock *sk, int ret, int flags)
{
	struct tc_sock *st;
	struct tc_ids *served;
	__u64 pid_tgid;

	if (ret <= 0 || sk->sk_type != TC_SOCK_STREAM)
		return 0;
	st = bpf_sk_storage_get(&tc_socks, sk, 0, 0);
	if (!st || st->role != TC_ROLE_SERVER)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	served = bpf_map_lookup_elem(&tc_threads, &pid_tgid);
	if (served && served->cookie == st->cookie)
		bpf_map_delete_elem(&tc_threads, &pid_tgid);
	return 0;
}
