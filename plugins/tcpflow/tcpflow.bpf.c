/*
 * tcpflow, kernel side: one flows-map entry per TCP connection, built from
 * stable tracepoints only (kprobes/fentry do not load on our kernels).
 *
 *   CLOSE -> SYN_SENT       connect(), process context: outbound entry, owner = current
 *   LISTEN -> SYN_RECV      child socket created in softirq: inbound entry, owner = listener
 *   SYN_* -> ESTABLISHED    OPEN event (inbound: once the owner is known)
 *   SYN_* -> CLOSE          FAILED event
 *   ESTABLISHED.. -> CLOSE  CLOSE event with the totals -- or, while the application
 *                           still holds the socket, at tcp_destroy_sock (its close()):
 *                           it may still read what arrived with the peer's FIN
 *   tcp_destroy_sock        the entry goes
 *
 * Softirq handlers never trust `current`: on loopback the peer's process is
 * often the one running them. Bytes come from sock_send_length and
 * sock_recv_length, which report what the application really moved.
 */
#include "ps_common.bpf.h"
#include "tcpflow.h"

char LICENSE[] SEC("license") = "GPL";

#define MSG_PEEK 2

/* include/net/tcp_states.h */
enum {
	TS_ESTABLISHED = 1,
	TS_SYN_SENT = 2,
	TS_SYN_RECV = 3,
	TS_CLOSE = 7,
	TS_LISTEN = 10,
};

/* max_entries is set by the plugin before load (config key max_connections). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TCPFLOW_DEFAULT_MAX_CONNECTIONS);
	__type(key, __u64);
	__type(value, struct tcpflow_conn);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct tcpflow_listener_key);
	__type(value, struct tcpflow_listener);
} listeners SEC(".maps");

/* Larger than PS_RB_WAKEUP_BYTES so that the watermark wake-up can ever fire. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

static __always_inline __u32 sk_netns(const void *skaddr)
{
	const struct sock *sk = skaddr;

	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * True while a task holds lock_sock(): softirq then only queues to the
 * backlog, so a state change seen now runs in the process using the socket.
 */
static __always_inline bool sk_locked_by_task(__u64 skaddr)
{
	const struct sock *sk = (const struct sock *)skaddr;

	return BPF_CORE_READ(sk, sk_lock.owned) != 0;
}

/* No struct socket any more: close() released it, nobody reads or writes it now. */
static __always_inline bool sk_orphaned(__u64 skaddr)
{
	const struct sock *sk = (const struct sock *)skaddr;

	return BPF_CORE_READ(sk, sk_socket) == NULL;
}

static __always_inline bool is_v4_mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* Ports and addresses as the socket sees them (local = source); ::ffff:a.b.c.d becomes IPv4. */
static __always_inline void
conn_set_endpoints(struct tcpflow_conn *c, const struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u32 l[4] = {}, r[4] = {};
	__u16 family = ctx->family;

	if (family == AF_INET) {
		bpf_probe_read_kernel(&l[0], 4, ctx->saddr);
		bpf_probe_read_kernel(&r[0], 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(l, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(r, 16, ctx->daddr_v6);
		if (is_v4_mapped(r)) {
			family = AF_INET;
			l[0] = is_v4_mapped(l) ? l[3] : 0;
			r[0] = r[3];
			l[1] = l[2] = l[3] = 0;
			r[1] = r[2] = r[3] = 0;
		}
	}
	c->family = family;
	c->lport = ctx->sport;
	c->rport = ctx->dport;
	__builtin_memcpy(c->laddr, l, 16);
	__builtin_memcpy(c->raddr, r, 16);
}

static __always_inline void emit(__u64 sk, __u32 type, const struct tcpflow_conn *c)
{
	struct tcpflow_event ev = {};

	ev.sk = sk;
	ev.ts_ns = bpf_ktime_get_ns();
	ev.type = type;
	ev.conn = *c;
	ps_rb_output(&events, &ev, sizeof(ev));
}

/* Sends OPEN once the connection is established and someone owns it. */
static __always_inline void maybe_emit_open(__u64 sk, struct tcpflow_conn *c)
{
	if (!c->established || c->open_sent || !c->tgid)
		return;
	c->open_sent = 1;
	emit(sk, TCPFLOW_EV_OPEN, c);
}

/* Process context only: an inbound connection whose listener we never saw gets its owner. */
static __always_inline void claim_owner(__u64 sk, struct tcpflow_conn *c)
{
	if (!c->tgid && !ps_is_self()) {
		bpf_get_current_comm(c->comm, sizeof(c->comm));
		c->tgid = bpf_get_current_pid_tgid() >> 32;
	}
	maybe_emit_open(sk, c);
}

static __always_inline void listener_add(const struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tcpflow_listener_key key = { .netns = sk_netns(ctx->skaddr), .port = ctx->sport };
	struct tcpflow_listener *l, fresh = { .sockets = 1 };

	if (ps_is_self())
		return;
	l = bpf_map_lookup_elem(&listeners, &key);
	if (l) {
		/* Another socket on the same port (SO_REUSEPORT, v4 + v6): the newest owner wins. */
		__sync_fetch_and_add(&l->sockets, 1);
		l->tgid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(l->comm, sizeof(l->comm));
		return;
	}
	fresh.tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
	bpf_map_update_elem(&listeners, &key, &fresh, BPF_ANY);
}

static __always_inline void listener_del(const struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tcpflow_listener_key key = { .netns = sk_netns(ctx->skaddr), .port = ctx->sport };
	struct tcpflow_listener *l = bpf_map_lookup_elem(&listeners, &key);

	if (!l)
		return;
	if (l->sockets > 1)
		__sync_fetch_and_add(&l->sockets, -1);
	else
		bpf_map_delete_elem(&listeners, &key);
}

/*
 * The connection is over: one FAILED, or (OPEN if still owed, then) CLOSE.
 * The entry stays, marked closed, until tcp_destroy_sock.
 */
static __always_inline void conn_end(__u64 sk, struct tcpflow_conn *c)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct tcpflow_event ev = {};

	/* Marked before the events go out: a map walk must not count it once they are read. */
	c->closed = 1;
	ev.sk = sk;
	ev.ts_ns = c->end_ns ? c->end_ns : bpf_ktime_get_ns();
	ev.conn = *c;

	if (!ev.conn.established) {
		ev.type = TCPFLOW_EV_FAILED;
		ps_rb_output(&events, &ev, sizeof(ev));
		return;
	}
	if (!ev.conn.open_sent) {
		ev.type = TCPFLOW_EV_OPEN;
		ps_rb_output(&events, &ev, sizeof(ev));
	}
	ev.type = TCPFLOW_EV_CLOSE;
	ev.conn.open_sent = 1;
	ev.srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	ev.total_retrans = BPF_CORE_READ(tp, total_retrans);
	ps_rb_output(&events, &ev, sizeof(ev));
}

/* A socket reused after connect(AF_UNSPEC) starts over: finish what it carried. */
static __always_inline void conn_replace(__u64 sk)
{
	struct tcpflow_conn *old = bpf_map_lookup_elem(&flows, &sk);

	if (old && !old->closed && old->established)
		conn_end(sk, old);
}

static __always_inline void outbound_begin(__u64 sk,
					   const struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tcpflow_conn c = {};

	if (ps_is_self())
		return;
	conn_replace(sk);
	c.start_ns = bpf_ktime_get_ns();
	c.direction = TCPFLOW_DIR_OUTBOUND;
	c.tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(c.comm, sizeof(c.comm));
	conn_set_endpoints(&c, ctx);
	bpf_map_update_elem(&flows, &sk, &c, BPF_ANY);
}

/* Softirq: `current` is whoever happened to run, so the owner comes from the listener. */
static __always_inline struct tcpflow_conn *
inbound_begin(__u64 sk, const struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tcpflow_listener_key key = { .netns = sk_netns(ctx->skaddr), .port = ctx->sport };
	struct tcpflow_listener *l = bpf_map_lookup_elem(&listeners, &key);
	struct tcpflow_conn c = {};

	conn_replace(sk);
	c.start_ns = bpf_ktime_get_ns();
	c.direction = TCPFLOW_DIR_INBOUND;
	if (l) {
		c.tgid = l->tgid;
		__builtin_memcpy(c.comm, l->comm, sizeof(c.comm));
	}
	conn_set_endpoints(&c, ctx);
	bpf_map_update_elem(&flows, &sk, &c, BPF_ANY);
	return bpf_map_lookup_elem(&flows, &sk);
}

static __always_inline void established(__u64 sk, int oldstate,
					const struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tcpflow_conn *c = bpf_map_lookup_elem(&flows, &sk);

	if (!c && oldstate == TS_SYN_RECV)
		c = inbound_begin(sk, ctx); /* the SYN_RECV step predates our attach */
	if (!c)
		return;
	conn_set_endpoints(c, ctx); /* connect() picks the source port after SYN_SENT */
	c->established = 1;
	maybe_emit_open(sk, c);
}

SEC("tp/sock/inet_sock_set_state")
int tcpflow_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	int oldstate = ctx->oldstate;
	int newstate = ctx->newstate;
	struct tcpflow_conn *c;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;

	switch (newstate) {
	case TS_LISTEN:
		if (oldstate == TS_CLOSE)
			listener_add(ctx);
		break;
	case TS_SYN_SENT:
		if (oldstate == TS_CLOSE)
			outbound_begin(sk, ctx);
		break;
	case TS_SYN_RECV:
		if (oldstate != TS_SYN_SENT) /* simultaneous open stays outbound */
			inbound_begin(sk, ctx);
		break;
	case TS_ESTABLISHED:
		if (oldstate == TS_SYN_SENT || oldstate == TS_SYN_RECV)
			established(sk, oldstate, ctx);
		break;
	case TS_CLOSE:
		if (oldstate == TS_LISTEN) {
			listener_del(ctx);
			break;
		}
		c = bpf_map_lookup_elem(&flows, &sk);
		if (!c || c->closed)
			break;
		if (!c->established) {
			/* A failed connect() has its source port by now. */
			conn_set_endpoints(c, ctx);
			conn_end(sk, c);
			break;
		}
		if (!c->tgid && sk_locked_by_task(sk))
			claim_owner(sk, c); /* close() with unread data: straight to CLOSE */
		c->end_ns = bpf_ktime_get_ns();
		/* Still held: reads of data that came with the FIN (and an abortive close's RST) follow. */
		if (sk_orphaned(sk))
			conn_end(sk, c);
		break;
	default:
		/* close(), shutdown(): the owner of an inbound connection may show up here. */
		c = bpf_map_lookup_elem(&flows, &sk);
		if (c && !c->closed && !c->tgid && sk_locked_by_task(sk))
			claim_owner(sk, c);
		break;
	}
	return 0;
}

static __always_inline void count_bytes(const struct trace_event_raw_sock_msg_length *ctx,
					bool sent)
{
	__u64 sk = (__u64)ctx->sk;
	struct tcpflow_conn *c;
	int ret = ctx->ret;

	if (ret <= 0 || ctx->protocol != IPPROTO_TCP)
		return;
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return;
	if (!sent && (ctx->flags & MSG_PEEK))
		return;
	c = bpf_map_lookup_elem(&flows, &sk);
	if (!c || c->closed)
		return;
	if (sent)
		__sync_fetch_and_add(&c->bytes_sent, ret);
	else
		__sync_fetch_and_add(&c->bytes_received, ret);
	claim_owner(sk, c);
}

SEC("tp/sock/sock_send_length")
int tcpflow_send_length(struct trace_event_raw_sock_msg_length *ctx)
{
	count_bytes(ctx, true);
	return 0;
}

SEC("tp/sock/sock_recv_length")
int tcpflow_recv_length(struct trace_event_raw_sock_msg_length *ctx)
{
	count_bytes(ctx, false);
	return 0;
}

SEC("tp/tcp/tcp_retransmit_skb")
int tcpflow_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct tcpflow_conn *c;

	/* Since 6.x the event also reports attempts that sent nothing (err != 0). */
	if (bpf_core_field_exists(ctx->err) && ctx->err)
		return 0;
	c = bpf_map_lookup_elem(&flows, &sk);
	if (c)
		__sync_fetch_and_add(&c->retransmits, 1);
	return 0;
}

SEC("tp/tcp/tcp_send_reset")
int tcpflow_send_reset(struct trace_event_raw_tcp_send_reset *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct tcpflow_conn *c;

	if (!sk) /* an RST for a segment that matched no socket */
		return 0;
	c = bpf_map_lookup_elem(&flows, &sk);
	if (!c)
		return 0;
	__sync_fetch_and_add(&c->resets, 1);
	if (c->closed) /* the CLOSE already went out: report this RST on its own */
		emit(sk, TCPFLOW_EV_RESET, c);
	return 0;
}

SEC("tp/tcp/tcp_receive_reset")
int tcpflow_receive_reset(struct trace_event_raw_tcp_event_sk *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct tcpflow_conn *c = bpf_map_lookup_elem(&flows, &sk);

	if (!c)
		return 0;
	__sync_fetch_and_add(&c->resets, 1);
	if (!c->established)
		c->refused = 1;
	return 0;
}

/* The socket is freed: its entry goes (and, as a safety net, a CLOSE nobody sent yet). */
SEC("tp/tcp/tcp_destroy_sock")
int tcpflow_destroy_sock(struct trace_event_raw_tcp_event_sk *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct tcpflow_conn *c = bpf_map_lookup_elem(&flows, &sk);

	if (!c)
		return 0;
	if (!c->closed)
		conn_end(sk, c);
	bpf_map_delete_elem(&flows, &sk);
	return 0;
}
