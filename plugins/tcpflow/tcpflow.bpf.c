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
 * often the one running them. Nothing here runs per packet or per system
 * call: bytes are read from the tcp_sock (conn_bytes) at close, and for open
 * connections by tcpflow_refresh, which user space runs once per flush.
 */
#include "ps_common.bpf.h"
#include "tcpflow.h"

char LICENSE[] SEC("license") = "GPL";

/* include/net/tcp_states.h */
enum {
	TS_ESTABLISHED = 1,
	TS_SYN_SENT = 2,
	TS_SYN_RECV = 3,
	TS_FIN_WAIT1 = 4,
	TS_CLOSE = 7,
	TS_LAST_ACK = 9,
	TS_LISTEN = 10,
};

#define barrier() asm volatile("" ::: "memory")

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

/*
 * Payload the application moved so far, from the tcp_sock alone:
 *
 *   sent     = bytes_acked + (write_seq - snd_una)          - SYN - FIN
 *   received = bytes_received - (rcv_nxt - copied_seq)      - FIN
 *
 * bytes_acked and bytes_received count sequence space: our SYN once acked
 * (active opens only; a passive child starts past its SYN-ACK), our FIN once
 * acked, the peer's FIN once received. Adding what is queued but not acked
 * and taking away what is queued but not read gives what the application
 * wrote and read (peeks excluded), as sendmsg/recvmsg return values did. The
 * FIN is then in the sums once queued (fin_out) or once read past (SOCK_DONE
 * and copied_seq == rcv_nxt; a read that empties an skb carrying the FIN
 * passes it too).
 *
 * Without the socket lock (the refresh), (bytes_acked, snd_una) and
 * (bytes_received, rcv_nxt) may be caught between their two updates. They
 * move in step, so their difference is fixed for the connection's life
 * (snd_k, rcv_k, taken at ESTABLISHED under the lock): a reading that does
 * not match is dropped, and so is one of a socket freed and reused meanwhile.
 * write_seq is read before fin_out and copied_seq before SOCK_DONE, so that a
 * FIN is never counted as payload -- at worst it is taken away one reading
 * early. check_keys is false only before ESTABLISHED (FAILED), under the lock.
 */
static __always_inline bool conn_bytes(__u64 skaddr, const struct tcpflow_conn *c, bool check_keys,
				       __u64 *sent, __u64 *received)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)skaddr;
	const struct sock *sk = (const struct sock *)skaddr;
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	__u64 bytes_received = BPF_CORE_READ(tp, bytes_received);
	__u32 rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
	__u64 bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	__u32 snd_una = BPF_CORE_READ(tp, snd_una);
	__u32 write_seq = BPF_CORE_READ(tp, write_seq);
	unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	__u64 done = 1ull << bpf_core_enum_value(enum sock_flags, SOCK_DONE);
	__s64 s, r;

	barrier();
	if (check_keys && ((__u32)(snd_una - (__u32)bytes_acked) != c->snd_k ||
			   (__u32)(rcv_nxt - (__u32)bytes_received) != c->rcv_k))
		return false;
	s = (__s64)bytes_acked + (__s32)(write_seq - snd_una);
	s -= (c->direction == TCPFLOW_DIR_OUTBOUND) + c->fin_out;
	r = (__s64)bytes_received - (__s32)(rcv_nxt - copied);
	if ((flags & done) && copied == rcv_nxt)
		r--;
	*sent = s > 0 ? s : 0;
	*received = r > 0 ? r : 0;
	return true;
}

/* Under the lock at ESTABLISHED: the differences conn_bytes checks its readings against. */
static __always_inline void conn_set_keys(__u64 skaddr, struct tcpflow_conn *c)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)skaddr;

	c->snd_k = BPF_CORE_READ(tp, snd_una) - (__u32)BPF_CORE_READ(tp, bytes_acked);
	c->rcv_k = BPF_CORE_READ(tp, rcv_nxt) - (__u32)BPF_CORE_READ(tp, bytes_received);
}

/*
 * The totals, once TCP reached CLOSE: nothing is sent or received any more,
 * but the application may still read what is queued until its close(). Read
 * at CLOSE under the socket lock (no key check needed), then again when the
 * connection ends; a socket reset by connect(AF_UNSPEC) meanwhile fails the
 * key check and keeps what was read at CLOSE.
 */
static __always_inline void conn_settle_bytes(__u64 sk, struct tcpflow_conn *c, bool check_keys)
{
	__u64 sent, received;

	if (!conn_bytes(sk, c, check_keys, &sent, &received))
		return;
	if (sent > c->bytes_sent)
		c->bytes_sent = sent;
	if (received > c->bytes_received)
		c->bytes_received = received;
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

	if (c->established) {
		conn_settle_bytes(sk, c, true);
	} else {
		__u64 received;

		/* TCP Fast Open data; the lock is held (CLOSE) or nobody else has the socket. */
		conn_bytes(sk, c, false, &c->bytes_sent, &received);
	}
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
	c.netns = key.netns;
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
	conn_set_keys(sk, c);
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
		conn_settle_bytes(sk, c, false);
		/* Still held: reads of data that came with the FIN (and an abortive close's RST) follow. */
		if (sk_orphaned(sk))
			conn_end(sk, c);
		break;
	default:
		c = bpf_map_lookup_elem(&flows, &sk);
		if (!c || c->closed)
			break;
		/* Before tcp_send_fin() puts the FIN in write_seq: conn_bytes must know first. */
		if (newstate == TS_FIN_WAIT1 || newstate == TS_LAST_ACK)
			c->fin_out = 1;
		/* close(), shutdown(): the owner of an inbound connection may show up here. */
		if (!c->tgid && sk_locked_by_task(sk))
			claim_owner(sk, c);
		break;
	}
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

/* ---- refresh: open connections' bytes, read once per flush ---------------------------- */

/* User space fills sk and start_ns of refresh_n slots; tcpflow_refresh answers the rest. */
struct tcpflow_refresh refresh_batch[TCPFLOW_REFRESH_BATCH];
__u32 refresh_n = 0;

static __always_inline __u64 sk_inode(__u64 skaddr)
{
	const struct sock *sk = (const struct sock *)skaddr;

	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

/*
 * The entry may be recycled for another connection while we read it (LRU
 * maps reuse at once): start_ns is read again last, and the socket must
 * match the entry's keys (conn_bytes).
 */
static long refresh_one(__u32 i, void *unused)
{
	struct tcpflow_refresh *r;
	struct tcpflow_conn *c;
	__u64 start;

	if (i >= TCPFLOW_REFRESH_BATCH)
		return 1;
	r = &refresh_batch[i];
	r->valid = 0;
	c = bpf_map_lookup_elem(&flows, &r->sk);
	if (!c)
		return 0;
	start = c->start_ns;
	if (start != r->start_ns || !c->established || c->closed || c->end_ns)
		return 0;
	if (!conn_bytes(r->sk, c, true, &r->sent, &r->received))
		return 0;
	r->ino = c->tgid ? 0 : sk_inode(r->sk); /* user space looks the owner up in /proc */
	barrier();
	r->valid = c->start_ns == start;
	return 0;
}

/*
 * Never attached: user space runs it (BPF_PROG_TEST_RUN) for each batch of
 * its walk of the flows map, so that it costs per tracked connection, in
 * every network namespace, and nothing per packet.
 */
SEC("raw_tp")
int tcpflow_refresh(void *ctx)
{
	bpf_loop(refresh_n, refresh_one, NULL, 0);
	return 0;
}
