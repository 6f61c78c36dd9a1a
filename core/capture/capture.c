/*
 * The core socket capture, user side (kernel side: capture.bpf.c; what they
 * share: bpf/ps_sockcap.h; the plugin API: periscope/capture.h).
 *
 * One BPF object for every L7 protocol: loaded when the first protocol
 * registers, on the socket hooks where the kernel has them (else on the
 * syscall tracepoints), and unloaded with the last. Each registration takes
 * a kernel slot: its ports, its first-bytes classifier, how much to copy.
 * Events arrive through one ring buffer in syscall order; here each followed
 * connection gets a table entry, and its chunks go to the protocol that
 * claimed it, until it closes, its process exits, it goes quiet, or the
 * protocol rejects it (then the kernel stops following it).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <periscope/log.h>
#include <periscope/metrics.h>
#include <periscope/plugin.h>
#include <periscope/proc.h>

#include "bpf_support.h"
#include "capture/capture.h"
#include "capture/tls.h"
#include "ps_sockcap.h" /* before the skeleton: its .bss holds struct ps_sc_slot */
#include "capture.skel.h"

#define SUBSYS	     "capture"
#define CONN_BUCKETS 4096 /* a power of two */
#define CONNS_MAX    16384 /* connections decoded at once; past it the least recently fed goes */
#define CONN_IDLE_NS (15ull * 60 * 1000000000) /* a connection nothing was fed to is dropped */
#define TLS_TICK_NS  1000000 /* TLS looks wait a second; checking each ms of events is enough */
#define PIECES_WAITING 8     /* syscalls whose PIECES wait for their DATA: about one per CPU */
#define PIECES_MAX   65536   /* of one syscall (a 4 MiB read of 64-byte batches); past it: a gap */
#define PIECES_KEPT  1024    /* room kept between syscalls, per waiting slot (72 KiB) */
#define LOST_BATCH   256 /* CLOSE/EXIT events the ring dropped, taken out of the kernel at once */
#define LOST_ROUNDS  64	 /* batches per flush: all of them (the kernel keeps at most 8192) */
/*
 * A rejected connection stays to swallow the events already on their way;
 * once it has been quiet this long, the kernel has stopped sending (the
 * socket path's order is taken before any further byte is sent).
 */
#define REJECTED_IDLE_NS (10ull * 1000000000)

struct ps_capture_reg {
	struct ps_plugin *owner;
	struct ps_capture_protocol proto; /* ports point at our own copy */
	uint16_t ports[PS_CAPTURE_PORTS_MAX];
	unsigned slot;
	uint64_t decode_errors; /* not yet counted in periscope_decode_errors_total */
};

/* A followed connection. */
struct conn {
	struct conn *hnext;	    /* bucket chain, by id */
	struct conn *newer, *older; /* recency list: eviction and idle expiry */
	struct ps_capture_conn pub;
	uint64_t key;		    /* of the kernel's conns map */
	uint64_t last_ns;	    /* monotonic time of the last event */
	struct ps_capture_reg *reg; /* NULL: rejected, or its protocol went: events are ignored */
	void *state;		    /* the protocol's */
	bool described;		    /* addresses and comm from an event that had them */
};

/* A walked syscall's PIECES, waiting for its DATA: same connection, direction and timestamp. */
struct waiting_pieces {
	uint64_t conn_id; /* 0: free */
	uint64_t ts_ns;
	uint8_t dir;
	size_t n, cap;
	struct ps_sc_piece *p;
};

static struct {
	enum ps_capture_hooks hooks;
	uint64_t ring_size; /* bytes of ps_sc_events; 0: as built */
	bool offline; /* no kernel: replays and tests feed the events */
	struct capture_bpf *skel;
	bool socket_path;
	int attached;
	struct ps_capture_reg *slots[PS_SC_SLOTS];
	size_t n_regs;
	struct conn *buckets[CONN_BUCKETS];
	struct conn *newest, *oldest;
	size_t n_conns;
	uint64_t evicted;
	struct capture_tls *tls;
	uint64_t tls_tick_ns;
	uint64_t stats_reported[PS_SC_STATS];
	struct waiting_pieces pieces[PIECES_WAITING];
	unsigned pieces_waiting; /* slots in use: most DATA events find none and look no further */
	unsigned next_pieces; /* the slot a new syscall's PIECES take when none is free */
} cap;

static int on_event(void *ctx, void *data, size_t size);

static uint64_t mono_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ps_capture_hooks_parse(const char *s, enum ps_capture_hooks *out)
{
	static const char *const names[] = { "auto", "socket", "syscalls" };

	for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum ps_capture_hooks)i;
			return 0;
		}
	}
	return -EINVAL;
}

void ps_capture_set_hooks(enum ps_capture_hooks hooks)
{
	cap.hooks = hooks;
}

size_t ps_capture_connections(void)
{
	return cap.n_conns;
}

void ps_capture_set_ring_size(uint64_t bytes)
{
	cap.ring_size = bytes;
}

void ps_capture_set_offline(bool offline)
{
	cap.offline = offline;
}

int ps_capture_feed(const void *event, size_t size)
{
	return on_event(NULL, (void *)event, size);
}

/* ---- connections: a hash by id and a recency list ------------------------------------------ */

static size_t conn_bucket(uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdull;
	id ^= id >> 33;
	return id & (CONN_BUCKETS - 1);
}

static struct conn *conn_find(uint64_t id)
{
	for (struct conn *c = cap.buckets[conn_bucket(id)]; c; c = c->hnext)
		if (c->pub.id == id)
			return c;
	return NULL;
}

static void recency_unlink(struct conn *c)
{
	if (c->newer)
		c->newer->older = c->older;
	else
		cap.newest = c->older;
	if (c->older)
		c->older->newer = c->newer;
	else
		cap.oldest = c->newer;
	c->newer = c->older = NULL;
}

static void recency_push(struct conn *c)
{
	c->older = cap.newest;
	c->newer = NULL;
	if (cap.newest)
		cap.newest->newer = c;
	cap.newest = c;
	if (!cap.oldest)
		cap.oldest = c;
}

static void conn_touch(struct conn *c, uint64_t now_ns)
{
	c->last_ns = now_ns;
	if (cap.newest == c)
		return;
	recency_unlink(c);
	recency_push(c);
}

/* The protocol hears the connection is over; it stays in the table, ignored. */
static void conn_release(struct conn *c, uint64_t ts_ns)
{
	struct ps_capture_reg *r = c->reg;

	if (!r)
		return;
	c->reg = NULL;
	r->proto.conn_close(r->proto.ctx, c->state, &c->pub, ts_ns);
	c->state = NULL;
}

static void conn_free(struct conn *c, uint64_t ts_ns)
{
	struct conn **pp = &cap.buckets[conn_bucket(c->pub.id)];

	conn_release(c, ts_ns);
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	recency_unlink(c);
	free(c);
	cap.n_conns--;
}

/*
 * Socket path: the kernel keeps connections in their sockets, out of user
 * space's reach; it takes orders by cookie, looking when the generation moved.
 */
static void kernel_order(const struct conn *c, enum ps_sc_order order)
{
	__u64 key = c->pub.id;
	__u8 v = (__u8)order;

	if (bpf_map_update_elem(bpf_map__fd(cap.skel->maps.ps_sc_orders), &key, &v, BPF_ANY)) {
		ps_debug(SUBSYS, "connection %" PRIu64 ": order %u not given: %s", c->pub.id, v,
			 strerror(errno));
		return;
	}
	__atomic_add_fetch(&cap.skel->bss->ps_sc_orders_gen, 1, __ATOMIC_RELEASE);
}

/* The kernel stops following the connection, unless its key already moved on. */
static void kernel_reject(const struct conn *c)
{
	struct ps_sc_conn kc;
	int conns, skip;
	__u8 one = 1;

	if (!cap.skel)
		return;
	if (cap.socket_path) {
		kernel_order(c, PS_SC_ORDER_REJECT);
		return;
	}
	conns = bpf_map__fd(cap.skel->maps.ps_sc_conns);
	skip = bpf_map__fd(cap.skel->maps.ps_sc_skip);
	if (bpf_map_lookup_elem(conns, &c->key, &kc) || kc.id != c->pub.id)
		return;
	bpf_map_update_elem(skip, &c->key, &one, BPF_ANY);
	bpf_map_delete_elem(conns, &c->key);
}

/* Syscall path: the fd's entry goes (the socket path's goes with its socket). */
static void kernel_forget(const struct conn *c)
{
	struct ps_sc_conn kc;
	int conns;

	if (!cap.skel || cap.socket_path)
		return;
	conns = bpf_map__fd(cap.skel->maps.ps_sc_conns);
	if (bpf_map_lookup_elem(conns, &c->key, &kc) == 0 && kc.id == c->pub.id)
		bpf_map_delete_elem(conns, &c->key);
}

static void endpoint_set(struct ps_endpoint *ep, uint8_t family, const uint8_t *addr,
			 uint16_t port)
{
	memset(ep, 0, sizeof(*ep));
	ep->family = family == PS_SC_AF_UNIX ? AF_UNIX : family;
	if (family == AF_INET || family == AF_INET6)
		memcpy(ep->addr, addr, sizeof(ep->addr));
	ep->port = port;
}

/*
 * Addresses and comm travel with a connection's first event only; when that
 * one went to nobody (the connection was evicted since), the kernel's entry
 * still has the addresses, and /proc the rest.
 */
static void conn_describe(struct conn *c, const struct ps_sc_event *e)
{
	const uint8_t *laddr = e->laddr, *raddr = e->raddr;
	struct ps_sc_conn kc;

	if (!(e->flags & PS_SC_F_CONN)) {
		if (cap.skel && cap.socket_path)
			kernel_order(c, PS_SC_ORDER_ANNOUNCE); /* the next event brings them */
		else if (cap.skel && bpf_map_lookup_elem(bpf_map__fd(cap.skel->maps.ps_sc_conns), &c->key, &kc) ==
			    0 &&
		    kc.id == c->pub.id) {
			laddr = kc.laddr;
			raddr = kc.raddr;
		}
	} else {
		memcpy(c->pub.comm, e->comm, sizeof(c->pub.comm));
		c->pub.comm[sizeof(c->pub.comm) - 1] = '\0';
		c->described = true;
	}
	endpoint_set(&c->pub.local, e->family, laddr, e->lport);
	endpoint_set(&c->pub.remote, e->family, raddr, e->rport);
}

static struct ps_capture_reg *slot_reg(unsigned slot)
{
	return slot < PS_SC_SLOTS ? cap.slots[slot] : NULL;
}

static void evict_oldest(void)
{
	struct conn *c = cap.oldest;

	if (!c)
		return;
	if (!cap.evicted++)
		ps_warn(SUBSYS, "more than %d connections at once: the least recently active are "
				"dropped", CONNS_MAX);
	kernel_reject(c);
	conn_free(c, c->last_ns);
}

/* First event of a connection: a table entry, and the protocol that claimed it says yes or no. */
static struct conn *conn_new(const struct ps_sc_event *e)
{
	struct ps_capture_reg *r = slot_reg(e->slot);
	struct conn *c;
	size_t b;

	if (cap.n_conns >= CONNS_MAX)
		evict_oldest();
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->pub.id = e->conn_id;
	c->pub.pid = e->tgid;
	c->key = cap.socket_path ? e->conn_id : (uint64_t)e->tgid << 32 | e->fd;
	b = conn_bucket(c->pub.id);
	c->hnext = cap.buckets[b];
	cap.buckets[b] = c;
	recency_push(c);
	cap.n_conns++;
	conn_describe(c, e);
	c->pub.tls = e->flags & PS_SC_F_TLS;
	if (r) {
		c->state = r->proto.conn_open(r->proto.ctx, &c->pub);
		if (c->state)
			c->reg = r;
	}
	if (!c->reg)
		kernel_reject(c);
	if (ps_log_enabled(PS_LOG_DEBUG))
		ps_debug(SUBSYS, "pid %u (%s): connection %" PRIu64 " port %u-%u%s: %s",
			 c->pub.pid, c->pub.comm, c->pub.id, c->pub.local.port, c->pub.remote.port,
			 c->pub.tls ? " (TLS)" : "",
			 c->reg ? c->reg->proto.name : "claimed by no registered protocol, rejected");
	return c;
}

/* ---- events --------------------------------------------------------------------------------- */

static int deliver(struct conn *c, const struct ps_sc_event *e, const uint8_t *data, size_t len,
		   uint64_t total)
{
	struct ps_capture_chunk ch = {
		.dir = e->dir == PS_SC_DIR_OUT ? PS_CAPTURE_OUT : PS_CAPTURE_IN,
		.data = data,
		.len = len,
		.total = total,
		.ts_ns = e->ts_ns,
		.pid = e->tgid,
		.tid = e->tid,
	};

	return c->reg->proto.conn_data(c->reg->proto.ctx, c->state, &c->pub, &ch);
}

static void pieces_free(void)
{
	for (unsigned i = 0; i < PIECES_WAITING; i++) {
		free(cap.pieces[i].p);
		cap.pieces[i] = (struct waiting_pieces){ 0 };
	}
	cap.pieces_waiting = 0;
}

/* The PIECES waiting for this DATA, taken from the table (NULL: none). */
static struct waiting_pieces *pieces_take(const struct ps_sc_event *e)
{
	for (unsigned i = 0; i < PIECES_WAITING && cap.pieces_waiting; i++) {
		struct waiting_pieces *w = &cap.pieces[i];

		if (w->conn_id != e->conn_id)
			continue;
		w->conn_id = 0; /* an older syscall's, whose DATA was lost, goes too */
		cap.pieces_waiting--;
		return w->ts_ns == e->ts_ns && w->dir == e->dir && w->n ? w : NULL;
	}
	return NULL;
}

/* PIECES: kept until the DATA of the same syscall, which comes after them. */
static int on_pieces(const struct ps_sc_event *e, size_t size)
{
	const struct ps_sc_piece *in = (const struct ps_sc_piece *)(e + 1);
	struct waiting_pieces *w = NULL;
	size_t n = e->len;

	if (n > PS_SC_PIECES_MAX || size < sizeof(*e) + n * sizeof(*in))
		return -EINVAL;
	for (unsigned i = 0; i < PIECES_WAITING && !w; i++)
		if (cap.pieces[i].conn_id == e->conn_id)
			w = &cap.pieces[i];
	if (w && (w->ts_ns != e->ts_ns || w->dir != e->dir))
		w->n = 0; /* an earlier syscall's, whose DATA never came */
	for (unsigned i = 0; i < PIECES_WAITING && !w; i++)
		if (!cap.pieces[i].conn_id)
			w = &cap.pieces[i];
	if (!w) {
		w = &cap.pieces[cap.next_pieces++ % PIECES_WAITING];
		w->n = 0;
	}
	if (w->conn_id != e->conn_id)
		w->n = 0;
	if (!w->conn_id)
		cap.pieces_waiting++;
	w->conn_id = e->conn_id;
	w->ts_ns = e->ts_ns;
	w->dir = e->dir;
	if (w->n + n > PIECES_MAX)
		return 0; /* a gap, as if not sent */
	if (w->n + n > w->cap) {
		size_t want = w->cap ? w->cap : PS_SC_PIECES_MAX;
		struct ps_sc_piece *p;

		while (want < w->n + n)
			want *= 2;
		p = realloc(w->p, want * sizeof(*p));
		if (!p)
			return 0;
		w->p = p;
		w->cap = want;
	}
	for (size_t i = 0; i < n; i++)
		if (in[i].len <= PS_SC_PIECE_MAX)
			w->p[w->n++] = in[i];
	return 0;
}

/*
 * One syscall's bytes, as consecutive chunks: the start (len captured), each
 * piece a walker sent past it (clipped to what no chunk before held), and the
 * tail (all captured). Without pieces: the start of total - tail, then the tail.
 */
static int deliver_syscall(struct conn *c, const struct ps_sc_event *e, const uint8_t *payload,
			   const struct waiting_pieces *w)
{
	uint64_t body_end = e->total - e->tail, covered = e->len, start = 0;
	const uint8_t *data = payload;
	size_t len = e->len;
	int rc;

	for (size_t i = 0; w && i < w->n; i++) {
		const struct ps_sc_piece *p = &w->p[i];
		uint64_t lo = p->off > covered ? p->off : covered;
		uint64_t hi = (uint64_t)p->off + p->len < body_end ? (uint64_t)p->off + p->len :
								     body_end;

		if (lo >= hi)
			continue;
		rc = deliver(c, e, data, len, lo - start);
		if (rc || !c->reg)
			return rc;
		start = lo;
		data = p->data + (lo - p->off);
		len = (size_t)(hi - lo);
		covered = hi;
	}
	rc = deliver(c, e, data, len, body_end - start);
	if (!rc && e->tail && c->reg)
		rc = deliver(c, e, payload + e->len, e->tail, e->tail);
	return rc;
}

/* One syscall's bytes (deliver_syscall), to the connection's protocol. */
static int on_data(const struct ps_sc_event *e, size_t size)
{
	const uint8_t *payload = (const uint8_t *)(e + 1);
	size_t captured = (size_t)e->len + e->tail;
	struct waiting_pieces *w = pieces_take(e);
	struct ps_capture_reg *r;
	struct conn *c;
	int rc;

	if (captured > size - sizeof(*e) || captured > e->total)
		return -EINVAL;
	c = conn_find(e->conn_id);
	if (!c) {
		c = conn_new(e);
		if (!c)
			return -ENOMEM;
	}
	conn_touch(c, e->ts_ns);
	if (!c->described && (e->flags & PS_SC_F_CONN))
		conn_describe(c, e);
	r = c->reg;
	if (!r)
		return 0; /* rejected; the kernel has not seen that yet */
	if (e->flags & PS_SC_F_TLS)
		c->pub.tls = true;
	rc = deliver_syscall(c, e, payload, w);
	if (w && w->cap > PIECES_KEPT) {
		/* A huge read's pieces: their room is not kept for the next syscall. */
		free(w->p);
		w->p = NULL;
		w->cap = w->n = 0;
	}
	if (!rc)
		return 0;
	r->decode_errors++;
	if (rc == -EPROTO) {
		ps_debug(SUBSYS, "%s: pid %u connection %" PRIu64 " (%s) rejected: no longer followed",
			 r->proto.name, c->pub.pid, c->pub.id, c->pub.comm);
		conn_release(c, e->ts_ns);
		kernel_reject(c);
	}
	return 0;
}

static void on_close(const struct ps_sc_event *e)
{
	struct conn *c = conn_find(e->conn_id);

	if (c)
		conn_free(c, e->ts_ns);
}

/*
 * A process is gone. Its TCP connections end through the state tracepoint on
 * the socket path; AF_UNIX ones, and every one on the syscall path, end here.
 */
static void on_process_exit(const struct ps_sc_event *e)
{
	struct conn *c, *next;

	for (c = cap.oldest; c; c = next) {
		next = c->newer;
		if (c->pub.pid != e->tgid)
			continue;
		if (cap.socket_path && c->pub.local.family != AF_UNIX)
			continue;
		/* A lost EXIT comes late: a connection fed since is a new process's of that pid. */
		if (c->last_ns > e->ts_ns)
			continue;
		kernel_forget(c);
		conn_free(c, e->ts_ns);
	}
	ps_proc_forget(e->tgid);
}

static int on_event(void *ctx, void *data, size_t size)
{
	const struct ps_sc_event *e = data;

	if (size < sizeof(*e))
		return -EINVAL;
	if (cap.tls && e->ts_ns >= cap.tls_tick_ns) {
		cap.tls_tick_ns = e->ts_ns + TLS_TICK_NS;
		capture_tls_tick(cap.tls, e->ts_ns);
	}
	switch (e->type) {
	case PS_SC_EV_DATA:
		return on_data(e, size);
	case PS_SC_EV_PIECES:
		return on_pieces(e, size);
	case PS_SC_EV_CLOSE:
		on_close(e);
		return 0;
	case PS_SC_EV_EXIT:
		on_process_exit(e);
		return 0;
	case PS_SC_EV_EXEC:
		/* A new program image: its service name may differ, and it may map a libssl. */
		ps_proc_forget(e->tgid);
		if (cap.tls)
			capture_tls_on_exec(cap.tls, e->tgid, e->ts_ns);
		return 0;
	case PS_SC_EV_TLS:
		if (cap.tls)
			capture_tls_on_hint(cap.tls, e->tgid);
		return 0;
	default:
		return -EINVAL;
	}
}

/* ---- loading -------------------------------------------------------------------------------- */

/* tp_btf needs the tracepoints' BTF: sock_send_length/sock_recv_length came with 6.3. */
static bool kernel_has_socket_hooks(void)
{
	static const char *const needed[] = { "btf_trace_sock_send_length",
					      "btf_trace_sock_recv_length",
					      "btf_trace_inet_sock_set_state" };
	struct btf *vmlinux = btf__load_vmlinux_btf();
	bool ok = vmlinux != NULL;

	for (size_t i = 0; ok && i < sizeof(needed) / sizeof(needed[0]); i++)
		ok = btf__find_by_name_kind(vmlinux, needed[i], BTF_KIND_TYPEDEF) > 0;
	btf__free(vmlinux);
	return ok;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Opens and loads the object with one path's programs; 0 or -errno. */
static int load_path(bool socket_path)
{
	struct bpf_program *prog;
	int err;

	cap.skel = capture_bpf__open();
	if (!cap.skel)
		return -errno;
	cap.skel->rodata->ps_self_tgid = ps_bpf_self_tgid();
	cap.skel->rodata->ps_sc_fd_keys = !socket_path;
	if (cap.ring_size &&
	    (err = bpf_map__set_max_entries(cap.skel->maps.ps_sc_events, (__u32)cap.ring_size))) {
		capture_bpf__destroy(cap.skel);
		cap.skel = NULL;
		return err;
	}
	bpf_object__for_each_program(prog, cap.skel->obj)
	{
		const char *name = bpf_program__name(prog);

		if (has_prefix(name, "ps_sc_sock_"))
			bpf_program__set_autoload(prog, socket_path);
		else if (has_prefix(name, "ps_sc_exit_") || has_prefix(name, "ps_sc_enter_"))
			bpf_program__set_autoload(prog, !socket_path);
	}
	err = capture_bpf__load(cap.skel);
	if (!err)
		err = capture_bpf__attach(cap.skel);
	if (err) {
		capture_bpf__destroy(cap.skel);
		cap.skel = NULL;
		return err;
	}
	cap.socket_path = socket_path;
	cap.attached = 0;
	bpf_object__for_each_program(prog, cap.skel->obj)
		cap.attached += bpf_program__autoload(prog) && has_prefix(bpf_program__section_name(prog),
									  "tp");
	return 0;
}

static int load(void)
{
	bool socket_ok = cap.hooks != PS_CAPTURE_HOOKS_SYSCALLS && kernel_has_socket_hooks();
	int err = -EOPNOTSUPP;

	if (cap.hooks == PS_CAPTURE_HOOKS_SOCKET && !socket_ok) {
		ps_error(SUBSYS, "capture.hooks is socket, but this kernel has no BTF for the "
				 "sock_send_length/sock_recv_length tracepoints (Linux 6.3 or later)");
		return -EOPNOTSUPP;
	}
	if (socket_ok) {
		err = load_path(true);
		if (err && cap.hooks == PS_CAPTURE_HOOKS_SOCKET) {
			ps_error(SUBSYS, "socket hooks failed to load: %s", strerror(-err));
			return err;
		}
		if (err)
			ps_warn(SUBSYS, "socket hooks failed to load (%s): falling back to syscall "
					"tracepoints", strerror(-err));
	}
	if (!cap.skel) {
		err = load_path(false);
		if (err) {
			ps_error(SUBSYS, "cannot load: %s", strerror(-err));
			return err;
		}
	}
	err = ps_bpf_owner_ringbuf_add(&cap, SUBSYS, bpf_map__fd(cap.skel->maps.ps_sc_events),
				       on_event, NULL);
	if (!err)
		err = ps_bpf_owner_drops_watch(&cap, SUBSYS, bpf_map__fd(cap.skel->maps.ps_drops));
	if (err) {
		ps_error(SUBSYS, "cannot register the ring buffer: %s", strerror(-err));
		ps_bpf_release(&cap);
		capture_bpf__destroy(cap.skel);
		cap.skel = NULL;
		return err;
	}
	if (cap.socket_path)
		ps_info(SUBSYS, "on socket tracepoints (sock_send_length, sock_recv_length): "
				"%d programs", cap.attached);
	else
		ps_info(SUBSYS, "on syscall tracepoints (%s): %d programs; every syscall of the "
				"host pays for them",
			cap.hooks == PS_CAPTURE_HOOKS_SYSCALLS ? "capture.hooks: syscalls" :
								 "the kernel has no socket hooks",
			cap.attached);
	return 0;
}

static void unload(void)
{
	uint64_t now = mono_now_ns();

	while (cap.oldest)
		conn_free(cap.oldest, now);
	capture_tls_free(cap.tls);
	cap.tls = NULL;
	ps_bpf_release(&cap);
	capture_bpf__destroy(cap.skel);
	cap.skel = NULL;
	memset(cap.stats_reported, 0, sizeof(cap.stats_reported));
	ps_info(SUBSYS, "unloaded: no protocol left");
}

/* ---- the kernel's view of the protocols ---------------------------------------------------- */

/* What every slot's settings add up to, written after the slots themselves. */
static void publish_slots(void)
{
	struct capture_bpf__bss *bss = cap.skel->bss;
	__u8 any = 0, unix_slots = 0, have_ports = 0, tls = 0;

	for (unsigned i = 0; i < PS_SC_SLOTS; i++) {
		const struct ps_capture_reg *r = cap.slots[i];

		if (!r)
			continue;
		if (r->proto.n_ports)
			have_ports = 1;
		else
			any |= 1u << i;
		if (r->proto.unix_classifier != PS_CAPTURE_CLASSIFY_NONE)
			unix_slots |= 1u << i;
		tls |= r->proto.tls;
	}
	__atomic_store_n(&bss->ps_sc_have_ports, have_ports, __ATOMIC_RELEASE);
	__atomic_store_n(&bss->ps_sc_any_port, any, __ATOMIC_RELEASE);
	__atomic_store_n(&bss->ps_sc_unix, unix_slots, __ATOMIC_RELEASE);
	__atomic_store_n(&bss->ps_sc_tls, tls, __ATOMIC_RELEASE);
}

/* Sets or clears the slot's bit for each of its ports. 0 or -errno. */
static int update_ports(const struct ps_capture_reg *r, bool set)
{
	int fd = bpf_map__fd(cap.skel->maps.ps_sc_ports);

	for (size_t i = 0; i < r->proto.n_ports; i++) {
		__u16 port = r->ports[i];
		__u8 bits = 0;

		bpf_map_lookup_elem(fd, &port, &bits);
		bits = set ? bits | (1u << r->slot) : bits & ~(1u << r->slot);
		if (bits ? bpf_map_update_elem(fd, &port, &bits, BPF_ANY) :
			   bpf_map_delete_elem(fd, &port))
			if (set)
				return -errno;
	}
	return 0;
}

static void start_tls(void)
{
	const struct capture_tls_progs progs = {
		.read = cap.skel->progs.ps_sc_ssl_read,
		.write = cap.skel->progs.ps_sc_ssl_write,
		.read_ex = cap.skel->progs.ps_sc_ssl_read_ex,
		.write_ex = cap.skel->progs.ps_sc_ssl_write_ex,
		.ret = cap.skel->progs.ps_sc_ssl_return,
	};
	int n;

	cap.tls = capture_tls_new(&progs);
	if (!cap.tls) {
		ps_warn(SUBSYS, "TLS capture is off: %s", strerror(errno));
		return;
	}
	n = capture_tls_scan_all(cap.tls);
	if (n)
		ps_info(SUBSYS, "TLS: %d libssl file%s found", n, n == 1 ? "" : "s");
	else
		ps_info(SUBSYS, "TLS capture is off: no libssl found; plaintext capture goes on, "
				"and TLS capture starts when a process maps a libssl");
}

/* The kernel learns of r (loading the capture first if it is the first). 0 or -errno. */
static int kernel_add(struct ps_capture_reg *r)
{
	int err;

	if (!cap.skel && (err = load()) != 0)
		return err;
	err = update_ports(r, true);
	if (err) {
		update_ports(r, false);
		if (!cap.n_regs)
			unload();
		return err;
	}
	cap.skel->bss->ps_sc_slots[r->slot] = (struct ps_sc_slot){
		.classifier = (__u8)r->proto.classifier,
		.unix_classifier = (__u8)r->proto.unix_classifier,
		.tls = r->proto.tls,
		.capture_bytes = r->proto.capture_bytes,
		.starttls = (__u8)r->proto.starttls,
		.walker = (__u8)r->proto.walker,
	};
	__atomic_store_n(&cap.skel->bss->ps_sc_slots[r->slot].active, 1, __ATOMIC_RELEASE);
	cap.slots[r->slot] = r; /* publish_slots reads the table */
	publish_slots();
	if (r->proto.tls && !cap.tls)
		start_tls();
	return 0;
}

/* What is wrong with a registration, for its plugin's log line; NULL when nothing. */
static const char *protocol_fault(const struct ps_capture_protocol *proto)
{
	if (proto->struct_size < sizeof(*proto))
		return "built against an older periscope/capture.h";
	if (!proto->name || !proto->conn_open || !proto->conn_data || !proto->conn_close)
		return "a name and the three callbacks are required";
	if (proto->classifier > PS_CAPTURE_CLASSIFY_MONGODB ||
	    proto->unix_classifier > PS_CAPTURE_CLASSIFY_MONGODB)
		return "unknown classifier";
	if (proto->classifier == PS_CAPTURE_CLASSIFY_NONE && !proto->n_ports)
		return "no ports and no classifier: it would claim every connection of the host";
	if (proto->n_ports > PS_CAPTURE_PORTS_MAX || (proto->n_ports && !proto->ports))
		return "too many ports";
	if (proto->starttls > PS_CAPTURE_STARTTLS_MYSQL)
		return "unknown starttls";
	if (proto->walker > PS_CAPTURE_WALK_KAFKA)
		return "unknown walker";
	if (proto->capture_bytes &&
	    (proto->capture_bytes < PS_CAPTURE_BYTES_MIN || proto->capture_bytes > PS_CAPTURE_BYTES_MAX))
		return "capture_bytes out of range";
	return NULL;
}

static const char *classifier_name(enum ps_capture_classifier c)
{
	switch (c) {
	case PS_CAPTURE_CLASSIFY_HTTP1:
		return "HTTP/1.x first bytes";
	case PS_CAPTURE_CLASSIFY_MYSQL:
		return "MySQL first bytes";
	case PS_CAPTURE_CLASSIFY_MONGODB:
		return "MongoDB first bytes";
	default:
		return "every connection";
	}
}

static void log_registered(const struct ps_capture_reg *r)
{
	char ports[PS_CAPTURE_PORTS_MAX * 6 + 8] = "any";
	size_t off = 0;

	for (size_t i = 0; i < r->proto.n_ports && off < sizeof(ports) - 8; i++)
		off += (size_t)snprintf(ports + off, sizeof(ports) - off, "%s%u", i ? "," : "",
					r->ports[i]);
	ps_info(SUBSYS, "protocol %s (plugin %s): TCP ports %s, %s; Unix sockets: %s; %u bytes "
			"per syscall%s",
		r->proto.name, ps_plugin_name(r->owner), ports, classifier_name(r->proto.classifier),
		r->proto.unix_classifier ? classifier_name(r->proto.unix_classifier) : "no",
		r->proto.capture_bytes, r->proto.tls ? ", TLS through OpenSSL" : "");
}

struct ps_capture_reg *ps_capture_register(struct ps_plugin *p,
					   const struct ps_capture_protocol *proto)
{
	struct ps_capture_reg *r;
	unsigned slot;
	const char *fault = !p || !proto ? "no plugin or no protocol" : protocol_fault(proto);
	int err;

	/* Every refusal is logged here, with its reason: the plugin only returns -errno. */
	if (fault) {
		ps_error(SUBSYS, "%s: protocol refused: %s", p ? ps_plugin_name(p) : "?", fault);
		errno = EINVAL;
		return NULL;
	}
	for (slot = 0; slot < PS_SC_SLOTS && cap.slots[slot]; slot++)
		;
	if (slot == PS_SC_SLOTS) {
		ps_error(SUBSYS, "%s: protocol refused: %d protocols are registered already",
			 ps_plugin_name(p), PS_SC_SLOTS);
		errno = ENOSPC;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->owner = p;
	r->slot = slot;
	r->proto = *proto;
	if (!r->proto.capture_bytes)
		r->proto.capture_bytes = PS_CAPTURE_BYTES_DEFAULT;
	if (proto->n_ports) /* ports may be NULL when there are none */
		memcpy(r->ports, proto->ports, proto->n_ports * sizeof(r->ports[0]));
	r->proto.ports = r->ports;
	if (!cap.offline) {
		err = kernel_add(r);
		if (err)
			goto fail;
	}
	cap.slots[slot] = r;
	cap.n_regs++;
	log_registered(r);
	return r;

fail:
	ps_error(SUBSYS, "%s: protocol %s refused: %s", ps_plugin_name(p), proto->name,
		 strerror(-err));
	free(r);
	errno = -err;
	return NULL;
}

void ps_capture_unregister(struct ps_capture_reg *r)
{
	uint64_t now = mono_now_ns();
	struct conn *c, *next;

	if (!r || slot_reg(r->slot) != r)
		return;
	cap.slots[r->slot] = NULL;
	cap.n_regs--;
	if (cap.skel) {
		__atomic_store_n(&cap.skel->bss->ps_sc_slots[r->slot].active, 0, __ATOMIC_RELEASE);
		update_ports(r, false);
		publish_slots();
	}
	for (c = cap.oldest; c; c = next) {
		next = c->newer;
		if (c->reg != r)
			continue;
		kernel_reject(c);
		conn_free(c, now);
	}
	ps_bpf_count_decode_errors(ps_plugin_name(r->owner), r->decode_errors);
	ps_info(SUBSYS, "protocol %s unregistered", r->proto.name);
	free(r);
	if (!cap.n_regs)
		pieces_free();
	if (!cap.n_regs && cap.skel)
		unload();
}

int ps_capture_starttls(const struct ps_capture_conn *conn)
{
	struct conn *c = (struct conn *)((char *)conn - offsetof(struct conn, pub));
	int fd;
	struct ps_sc_conn kc;

	if (!conn || conn_find(conn->id) != c)
		return -EINVAL;
	if (!cap.skel)
		return 0;
	if (cap.socket_path) {
		kernel_order(c, PS_SC_ORDER_STARTTLS);
		return 0;
	}
	fd = bpf_map__fd(cap.skel->maps.ps_sc_conns);
	if (bpf_map_lookup_elem(fd, &c->key, &kc) || kc.id != c->pub.id)
		return -ENOENT; /* gone already */
	kc.tls = 1;
	if (bpf_map_update_elem(fd, &c->key, &kc, BPF_EXIST))
		return -errno;
	ps_debug(SUBSYS, "pid %u connection %" PRIu64 ": TLS from now on", c->pub.pid, c->pub.id);
	return 0;
}

void ps_capture_plugin_release(struct ps_plugin *p)
{
	for (unsigned i = 0; i < PS_SC_SLOTS; i++)
		if (cap.slots[i] && cap.slots[i]->owner == p)
			ps_capture_unregister(cap.slots[i]);
}

/* ---- each flush ----------------------------------------------------------------------------- */

static void report_stats(void)
{
	static const char *const labels[] = { "service_name", "reason", NULL };
	static const char *const reasons[PS_SC_STATS] = {
		[PS_SC_STAT_TLS_UNBOUND] = "tls_unbound",
		[PS_SC_STAT_UNCAPTURED] = "no_user_buffer",
		[PS_SC_STAT_WALK_LOST] = "walk_lost",
	};
	struct ps_metric *m = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_capture_gaps_total",
		.help = "Syscalls on followed connections whose bytes the capture could not see",
		.type = PS_METRIC_COUNTER,
		.labels = labels,
	});

	for (unsigned i = 0; m && i < PS_SC_STATS; i++) {
		const char *values[] = { "periscoped", reasons[i] };
		uint64_t total;

		if (ps_bpf_percpu_sum(bpf_map__fd(cap.skel->maps.ps_sc_stats), i, &total))
			continue;
		ps_metric_add(m, values, (double)(total - cap.stats_reported[i]));
		cap.stats_reported[i] = total;
	}
}

/*
 * The CLOSE and EXIT events the kernel kept when the ring was full, applied
 * as if they had come: without them their connections would live until the
 * idle expiry. Each batch is taken out of the map first, then the rings are
 * drained: what was sent before an event is in the ring by the time the event
 * is in the map, and must not bring a connection back after its CLOSE.
 * Returns how many were applied.
 */
static size_t apply_lost(void)
{
	static struct ps_sc_event lost[LOST_BATCH]; /* the loop thread's only */
	int fd = bpf_map__fd(cap.skel->maps.ps_sc_lost);
	__u64 keys[LOST_BATCH], key;
	size_t applied = 0;

	for (int round = 0; round < LOST_ROUNDS; round++) {
		size_t n = 0, taken = 0;

		while (n < LOST_BATCH && bpf_map_get_next_key(fd, n ? &keys[n - 1] : NULL, &key) == 0)
			keys[n++] = key;
		for (size_t i = 0; i < n; i++)
			if (bpf_map_lookup_elem(fd, &keys[i], &lost[taken]) == 0 &&
			    bpf_map_delete_elem(fd, &keys[i]) == 0)
				taken++;
		if (!taken)
			break;
		ps_bpf_drain();
		for (size_t i = 0; i < taken; i++)
			on_event(NULL, &lost[i], sizeof(lost[i]));
		applied += taken;
	}
	return applied;
}

/*
 * Rejected connections are kept only for the events still on their way: the
 * socket path's kernel sends no CLOSE for them, so they would otherwise wait
 * for the idle expiry.
 */
static size_t drop_rejected(uint64_t now)
{
	struct conn *c, *next;
	size_t n = 0;

	for (c = cap.oldest; c && now - c->last_ns > REJECTED_IDLE_NS; c = next) {
		next = c->newer;
		if (c->reg)
			continue;
		kernel_forget(c);
		conn_free(c, now);
		n++;
	}
	return n;
}

void ps_capture_collect(void)
{
	uint64_t now = mono_now_ns();
	size_t expired = 0, lost, rejected;

	if (!cap.skel)
		return;
	lost = apply_lost();
	rejected = drop_rejected(now);
	while (cap.oldest && now - cap.oldest->last_ns > CONN_IDLE_NS) {
		kernel_forget(cap.oldest);
		conn_free(cap.oldest, now);
		expired++;
	}
	if (expired || lost || rejected)
		ps_debug(SUBSYS, "connections dropped: %zu idle, %zu rejected; %zu lost CLOSE/EXIT "
				 "events applied",
			 expired, rejected, lost);
	if (cap.tls)
		capture_tls_tick(cap.tls, now);
	for (unsigned i = 0; i < PS_SC_SLOTS; i++) {
		struct ps_capture_reg *r = cap.slots[i];

		if (r && r->decode_errors) {
			ps_bpf_count_decode_errors(ps_plugin_name(r->owner), r->decode_errors);
			r->decode_errors = 0;
		}
	}
	report_stats();
}
