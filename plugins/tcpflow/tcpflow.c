/*
 * tcpflow: TCP connection lifecycle, bytes, RTT, retransmits and resets per
 * (service, direction, peer), from sock/tcp tracepoints aggregated in the
 * kernel (see tcpflow.bpf.c).
 *
 * The kernel sends OPEN and CLOSE (or FAILED) per connection; bytes and
 * retransmits of long-lived connections are picked up each flush by running
 * the refresh program (it reads every tracked tcp_sock) and walking the flows
 * map. User space remembers, per connection (socket pointer + start time),
 * what it already reported, so that every number is counted once whichever
 * of the event or the map walk sees it first.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <periscope/plugin.h>
#include <periscope/semconv.h>

#include "tcpflow.h"
#include "tcpflow.skel.h"

#define SUBSYS		   "tcpflow"
#define WALK_BATCH	   TCPFLOW_REFRESH_BATCH
#define FLOW_BUCKETS_MIN   1024
#define SERIES_BUCKETS_MIN 256
/* /proc is walked for owners of inbound connections at most this often. */
#define OWNER_SCAN_INTERVAL_NS (30ull * 1000000000ull)

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct tcpflow_config {
	uint64_t max_connections;
};

/* ---- a small chained hash table, nodes embedded in their owners ------------------------- */

struct hnode {
	struct hnode *next;
	uint64_t hash;
};

struct htable {
	struct hnode **buckets;
	size_t n_buckets; /* a power of two */
	size_t n;
};

static int htable_init(struct htable *t, size_t n_buckets)
{
	t->buckets = calloc(n_buckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->n_buckets = n_buckets;
	t->n = 0;
	return 0;
}

static struct hnode *htable_chain(const struct htable *t, uint64_t hash)
{
	return t->buckets[hash & (t->n_buckets - 1)];
}

/* Doubles the bucket array; on ENOMEM the table just stays slower. */
static void htable_grow(struct htable *t)
{
	size_t n_buckets = t->n_buckets * 2;
	struct hnode **buckets = calloc(n_buckets, sizeof(*buckets));

	if (!buckets)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct hnode *node = t->buckets[i], *next;

		for (; node; node = next) {
			next = node->next;
			node->next = buckets[node->hash & (n_buckets - 1)];
			buckets[node->hash & (n_buckets - 1)] = node;
		}
	}
	free(t->buckets);
	t->buckets = buckets;
	t->n_buckets = n_buckets;
}

static void htable_insert(struct htable *t, struct hnode *node, uint64_t hash)
{
	struct hnode **head;

	if (t->n >= 2 * t->n_buckets)
		htable_grow(t);
	head = &t->buckets[hash & (t->n_buckets - 1)];
	node->hash = hash;
	node->next = *head;
	*head = node;
	t->n++;
}

static void htable_unlink(struct htable *t, struct hnode *node)
{
	struct hnode **pp = &t->buckets[node->hash & (t->n_buckets - 1)];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			t->n--;
			return;
		}
	}
}

/* Calls fn on every node; fn may unlink and free the node it is given. */
static void htable_each(struct htable *t, void (*fn)(struct hnode *node, void *ctx), void *ctx)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct hnode *node = t->buckets[i], *next;

		for (; node; node = next) {
			next = node->next;
			fn(node, ctx);
		}
	}
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (h ^ 0xff) * 0x100000001b3ull; /* a separator, so "ab","c" != "a","bc" */
}

/* Grows *v (of *cap elements of size sz) to hold one more. 0 or -ENOMEM. */
static int grow(void **v, size_t *cap, size_t n, size_t sz)
{
	size_t cap2 = *cap ? *cap * 2 : 64;
	void *v2;

	if (n < *cap)
		return 0;
	v2 = realloc(*v, cap2 * sz);
	if (!v2)
		return -ENOMEM;
	*v = v2;
	*cap = cap2;
	return 0;
}

/* ---- plugin state ----------------------------------------------------------------------- */

enum { L_SERVICE, L_DIRECTION, L_PEER_ADDRESS, L_PEER_PORT, N_LABELS };

/* One label set with connections open on it: the periscope_tcp_connections_active series. */
struct series {
	struct hnode node;
	unsigned active;
	const char *values[N_LABELS];
	char text[]; /* the label values, back to back */
};

/* A connection user space has counted as opened, or (series NULL) recently closed. */
struct flow {
	struct hnode node;
	uint64_t sk, start_ns;
	struct series *series; /* labels fixed at open; NULL: closed, swallows late duplicates */
	uint64_t generation;   /* last map walk that saw it, or when it closed */
	uint32_t tgid;	       /* owner when opened, for flow records of a kernel that lacks it */
	/* What was already added to the counters. */
	uint64_t bytes_sent, bytes_received;
	uint32_t retransmits, resets;
};

/* An established inbound connection the kernel knows no owner of (see resolve_unowned). */
struct unowned {
	uint64_t sk;
	struct tcpflow_conn conn; /* with the refresh's reading */
	uint64_t ino;		  /* its socket inode; 0 before accept() */
};

struct tcpflow {
	struct tcpflow_bpf *skel;
	uint32_t max_connections;
	struct htable flows, series;
	uint64_t generation; /* map walks so far */
	bool batch_unsupported;
	bool refresh_warned;
	__u64 *walk_keys;
	struct tcpflow_conn *walk_vals;
	struct unowned *unowned; /* found by this collect's walk */
	size_t n_unowned, cap_unowned;
	uint64_t last_owner_scan; /* CLOCK_MONOTONIC ns; 0: never */

	struct ps_metric *opened, *closed, *failed;
	struct ps_metric *sent, *received, *retransmits, *resets;
	struct ps_metric *rtt, *duration, *active;
};

/* Label values computed from a connection; service points into the core's process cache. */
struct labels {
	const char *v[N_LABELS];
	char addr[INET6_ADDRSTRLEN];
	char port[8];
};

static const char *service_of(const struct tcpflow_conn *c)
{
	char comm[TCPFLOW_COMM_LEN + 1];

	memcpy(comm, c->comm, TCPFLOW_COMM_LEN);
	comm[TCPFLOW_COMM_LEN] = '\0';
	return ps_proc_service_name(c->tgid, comm[0] ? comm : NULL);
}

/* Inbound peers are unbounded: peer_address "" and peer_port = the local (listening) port. */
static void labels_of(struct labels *l, const struct tcpflow_conn *c)
{
	bool outbound = c->direction == TCPFLOW_DIR_OUTBOUND;

	l->addr[0] = '\0';
	if (outbound && !inet_ntop(c->family == AF_INET6 ? AF_INET6 : AF_INET, c->raddr, l->addr,
				   sizeof(l->addr)))
		l->addr[0] = '\0';
	snprintf(l->port, sizeof(l->port), "%u", outbound ? c->rport : c->lport);
	l->v[L_SERVICE] = service_of(c);
	l->v[L_DIRECTION] = outbound ? "outbound" : "inbound";
	l->v[L_PEER_ADDRESS] = l->addr;
	l->v[L_PEER_PORT] = l->port;
}

/* ---- series: the active gauge ------------------------------------------------------------ */

static uint64_t hash_labels(const char *const *v)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (int i = 0; i < N_LABELS; i++)
		h = hash_str(h, v[i]);
	return h;
}

static bool same_labels(const char *const *a, const char *const *b)
{
	for (int i = 0; i < N_LABELS; i++)
		if (strcmp(a[i], b[i]))
			return false;
	return true;
}

static struct series *series_find(struct tcpflow *st, const char *const *v, uint64_t hash)
{
	for (struct hnode *n = htable_chain(&st->series, hash); n; n = n->next) {
		struct series *s = container_of(n, struct series, node);

		if (n->hash == hash && same_labels(s->values, v))
			return s;
	}
	return NULL;
}

/* The series for these labels with one more connection on it; NULL on ENOMEM. */
static struct series *series_hold(struct tcpflow *st, const struct labels *l)
{
	uint64_t hash = hash_labels(l->v);
	struct series *s = series_find(st, l->v, hash);

	if (!s) {
		size_t len[N_LABELS], total = 0;
		char *p;

		for (int i = 0; i < N_LABELS; i++)
			total += len[i] = strlen(l->v[i]) + 1;
		s = calloc(1, sizeof(*s) + total);
		if (!s)
			return NULL;
		p = s->text;
		for (int i = 0; i < N_LABELS; i++) {
			memcpy(p, l->v[i], len[i]);
			s->values[i] = p;
			p += len[i];
		}
		htable_insert(&st->series, &s->node, hash);
	}
	s->active++;
	ps_metric_add(st->active, s->values, 1);
	return s;
}

/* One connection less; an idle series leaves the output rather than showing 0 forever. */
static void series_release(struct tcpflow *st, struct series *s)
{
	ps_metric_add(st->active, s->values, -1);
	if (--s->active)
		return;
	ps_metric_remove(st->active, s->values);
	htable_unlink(&st->series, &s->node);
	free(s);
}

/* ---- flows: what was reported per connection --------------------------------------------- */

static uint64_t hash_flow(uint64_t sk, uint64_t start_ns)
{
	return mix64(sk ^ mix64(start_ns));
}

static struct flow *flow_find(struct tcpflow *st, uint64_t sk, uint64_t start_ns)
{
	uint64_t hash = hash_flow(sk, start_ns);

	for (struct hnode *n = htable_chain(&st->flows, hash); n; n = n->next) {
		struct flow *f = container_of(n, struct flow, node);

		if (n->hash == hash && f->sk == sk && f->start_ns == start_ns)
			return f;
	}
	return NULL;
}

/* Adds what the kernel counted since the last report. */
static void flow_report(struct tcpflow *st, struct flow *f, const struct tcpflow_conn *c)
{
	const char *const *v = f->series->values;

	if (c->bytes_sent > f->bytes_sent) {
		ps_metric_add(st->sent, v, (double)(c->bytes_sent - f->bytes_sent));
		f->bytes_sent = c->bytes_sent;
	}
	if (c->bytes_received > f->bytes_received) {
		ps_metric_add(st->received, v, (double)(c->bytes_received - f->bytes_received));
		f->bytes_received = c->bytes_received;
	}
	if (c->retransmits > f->retransmits) {
		ps_metric_add(st->retransmits, v, c->retransmits - f->retransmits);
		f->retransmits = c->retransmits;
	}
	if (c->resets > f->resets) {
		ps_metric_add(st->resets, v, c->resets - f->resets);
		f->resets = c->resets;
	}
}

/* Counts a connection as opened and starts tracking it; NULL on ENOMEM. */
static struct flow *flow_open(struct tcpflow *st, uint64_t sk, const struct tcpflow_conn *c)
{
	struct flow *f = calloc(1, sizeof(*f));
	struct labels l;

	if (!f)
		return NULL;
	labels_of(&l, c);
	f->series = series_hold(st, &l);
	if (!f->series) {
		free(f);
		return NULL;
	}
	f->sk = sk;
	f->start_ns = c->start_ns;
	f->tgid = c->tgid;
	f->generation = st->generation;
	htable_insert(&st->flows, &f->node, hash_flow(sk, c->start_ns));

	ps_metric_add(st->opened, f->series->values, 1);
	/* Counters start at 0 with the connection, so that rate() sees their first increase. */
	ps_metric_add(st->sent, f->series->values, 0);
	ps_metric_add(st->received, f->series->values, 0);
	ps_metric_add(st->retransmits, f->series->values, 0);
	ps_metric_add(st->resets, f->series->values, 0);
	return f;
}

/* The connection is over: keep a tombstone for two map walks to swallow late duplicates. */
static void flow_end(struct tcpflow *st, struct flow *f)
{
	ps_metric_add(st->closed, f->series->values, 1);
	series_release(st, f->series);
	f->series = NULL;
	f->generation = st->generation;
}

static void flow_free(struct tcpflow *st, struct flow *f)
{
	htable_unlink(&st->flows, &f->node);
	free(f);
}

/* ---- events from the kernel -------------------------------------------------------------- */

static void endpoint_of(struct ps_endpoint *ep, const struct tcpflow_conn *c, bool local)
{
	ep->family = c->family == AF_INET6 ? AF_INET6 : AF_INET;
	memcpy(ep->addr, local ? c->laddr : c->raddr, sizeof(ep->addr));
	ep->port = local ? c->lport : c->rport;
}

static void emit_flow_record(const struct tcpflow_event *e, uint32_t pid, const char *service,
			     bool failed)
{
	const struct tcpflow_conn *c = &e->conn;
	struct ps_flow_record r = {
		.pid = pid,
		.service_name = service,
		.direction =
			c->direction == TCPFLOW_DIR_OUTBOUND ? PS_DIR_OUTBOUND : PS_DIR_INBOUND,
		.start_unix_ns = ps_clock_mono_to_unix_ns(c->start_ns),
		.end_unix_ns = ps_clock_mono_to_unix_ns(e->ts_ns),
		.bytes_sent = c->bytes_sent,
		.bytes_received = c->bytes_received,
		.srtt_us = e->srtt_us,
		.retransmits = c->retransmits,
		.resets = c->resets,
		.failed = failed,
	};
	struct ps_event ev = { .type = PS_EVENT_FLOW, .plugin = SUBSYS, .flow = &r };

	endpoint_of(&r.local, c, true);
	endpoint_of(&r.remote, c, false);
	ps_event_emit(&ev);
}

static void on_open(struct tcpflow *st, const struct tcpflow_event *e)
{
	struct flow *f = flow_find(st, e->sk, e->conn.start_ns);

	if (f) /* a map walk counted it first, or it already closed */
		return;
	f = flow_open(st, e->sk, &e->conn);
	if (f)
		flow_report(st, f, &e->conn);
}

static void on_close(struct tcpflow *st, const struct tcpflow_event *ev)
{
	struct flow *f = flow_find(st, ev->sk, ev->conn.start_ns);
	struct tcpflow_event e = *ev;
	double duration;

	if (f && !f->series)
		return; /* closed already */
	/*
	 * The socket's own count covers segments of GSO retransmissions that the
	 * tracepoint saw as one; take whichever saw more.
	 */
	if (e.total_retrans > e.conn.retransmits)
		e.conn.retransmits = e.total_retrans;
	if (!f)
		f = flow_open(st, e.sk, &e.conn); /* its OPEN was lost (ring buffer full) */
	if (!f)
		return;
	flow_report(st, f, &e.conn);
	if (e.srtt_us)
		ps_metric_observe(st->rtt, f->series->values, e.srtt_us / 1e6);
	duration = e.ts_ns > e.conn.start_ns ? (e.ts_ns - e.conn.start_ns) / 1e9 : 0;
	ps_metric_observe(st->duration, f->series->values, duration);
	emit_flow_record(&e, e.conn.tgid ? e.conn.tgid : f->tgid, f->series->values[L_SERVICE],
			 false);
	flow_end(st, f);
}

static void on_failed(struct tcpflow *st, const struct tcpflow_event *e)
{
	const struct tcpflow_conn *c = &e->conn;
	struct labels l;

	labels_of(&l, c);
	ps_metric_add(st->failed, l.v, 1);
	/* SYN retransmits and the refusing RST belong to the peer too. */
	if (c->retransmits)
		ps_metric_add(st->retransmits, l.v, c->retransmits);
	if (c->resets)
		ps_metric_add(st->resets, l.v, c->resets);
	if (c->bytes_sent) /* TCP Fast Open data */
		ps_metric_add(st->sent, l.v, (double)c->bytes_sent);
	emit_flow_record(e, c->tgid, l.v[L_SERVICE], true);
}

/* An RST sent after the CLOSE or FAILED event went out (an orphan's linger timeout). */
static void on_reset(struct tcpflow *st, const struct tcpflow_event *e)
{
	struct labels l;

	labels_of(&l, &e->conn);
	ps_metric_add(st->resets, l.v, 1);
}

static int on_event(void *ctx, void *data, size_t size)
{
	const struct tcpflow_event *e = data;
	struct tcpflow *st = ctx;

	if (size < sizeof(*e)) {
		ps_debug(SUBSYS, "short event: %zu bytes", size);
		return 0;
	}
	switch (e->type) {
	case TCPFLOW_EV_OPEN:
		on_open(st, e);
		break;
	case TCPFLOW_EV_CLOSE:
		on_close(st, e);
		break;
	case TCPFLOW_EV_FAILED:
		on_failed(st, e);
		break;
	case TCPFLOW_EV_RESET:
		on_reset(st, e);
		break;
	default:
		ps_debug(SUBSYS, "unknown event type %u", e->type);
	}
	return 0;
}

/* ---- collect: progress of long-lived connections ----------------------------------------- */

/*
 * Asks tcpflow_refresh for the bytes of the open connections among n entries
 * of a map walk; slot[i] is where entry i's answer is, or -1.
 */
static void refresh_batch(struct tcpflow *st, uint32_t n, int *slot)
{
	struct tcpflow_bpf__bss *bss = st->skel->bss;
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	uint32_t m = 0;

	for (uint32_t i = 0; i < n; i++) {
		const struct tcpflow_conn *c = &st->walk_vals[i];

		slot[i] = -1;
		if (!c->established || c->closed || c->end_ns)
			continue;
		bss->refresh_batch[m].sk = st->walk_keys[i];
		bss->refresh_batch[m].start_ns = c->start_ns;
		slot[i] = (int)m++;
	}
	if (!m)
		return;
	bss->refresh_n = m;
	if (!bpf_prog_test_run_opts(bpf_program__fd(st->skel->progs.tcpflow_refresh), &opts))
		return;
	if (!st->refresh_warned)
		ps_warn(SUBSYS,
			"cannot run the refresh program (%s): bytes of open connections "
			"will show when they close",
			strerror(errno));
	st->refresh_warned = true;
	for (uint32_t i = 0; i < n; i++)
		slot[i] = -1;
}

/* What the kernel counted so far: the totals once closed, the refresh's reading before. */
static void conn_progress(struct tcpflow_conn *cur, const struct tcpflow_conn *c,
			  const struct tcpflow_refresh *r)
{
	*cur = *c;
	if (!r || !r->valid)
		return;
	if (r->sent > cur->bytes_sent)
		cur->bytes_sent = r->sent;
	if (r->received > cur->bytes_received)
		cur->bytes_received = r->received;
}

static void unowned_add(struct tcpflow *st, uint64_t sk, const struct tcpflow_conn *c,
			const struct tcpflow_refresh *r)
{
	struct unowned *u;

	if (grow((void **)&st->unowned, &st->cap_unowned, st->n_unowned, sizeof(*st->unowned)))
		return;
	u = &st->unowned[st->n_unowned++];
	u->sk = sk;
	conn_progress(&u->conn, c, r);
	u->ino = r && r->valid ? r->ino : 0;
}

static void visit_conn(struct tcpflow *st, uint64_t sk, const struct tcpflow_conn *c,
		       const struct tcpflow_refresh *r)
{
	struct tcpflow_conn cur;
	struct flow *f;

	if (c->closed) /* its CLOSE carried the counts */
		return;
	f = flow_find(st, sk, c->start_ns);
	if (f && !f->series)
		return;
	if (!f && !c->open_sent) {
		/* Its OPEN or FAILED will carry the counts -- unless nobody is known to own it. */
		if (c->established && !c->tgid)
			unowned_add(st, sk, c, r);
		return;
	}
	if (!f)
		f = flow_open(st, sk, c); /* its OPEN is still in the ring buffer, or was lost */
	if (!f)
		return;
	f->generation = st->generation;
	conn_progress(&cur, c, r);
	flow_report(st, f, &cur);
}

/* The first n entries of walk_keys/walk_vals: their bytes read, then counted. */
static void visit_batch(struct tcpflow *st, uint32_t n)
{
	const struct tcpflow_refresh *answers = st->skel->bss->refresh_batch;
	int slot[WALK_BATCH];

	refresh_batch(st, n, slot);
	for (uint32_t i = 0; i < n; i++)
		visit_conn(st, st->walk_keys[i], &st->walk_vals[i],
			   slot[i] < 0 ? NULL : &answers[slot[i]]);
}

static int walk_batched(struct tcpflow *st, int fd)
{
	__u64 token = 0;
	void *in = NULL;
	int err;

	do {
		__u32 n = WALK_BATCH;

		err = bpf_map_lookup_batch(fd, in, &token, st->walk_keys, st->walk_vals, &n, NULL);
		if (err && err != -ENOENT)
			return err;
		visit_batch(st, n);
		in = &token;
	} while (!err);
	return 0;
}

/* For kernels without batch lookups. Entries deleted under us restart the walk: bound it. */
static int walk_by_key(struct tcpflow *st, int fd)
{
	size_t budget = 4 * (size_t)st->max_connections;
	__u64 key, next;
	void *prev = NULL;
	uint32_t n = 0;
	int err = -EAGAIN;

	while (budget--) {
		if (bpf_map_get_next_key(fd, prev, &next)) {
			err = errno == ENOENT ? 0 : -errno;
			break;
		}
		if (!bpf_map_lookup_elem(fd, &next, &st->walk_vals[n])) {
			st->walk_keys[n] = next;
			if (++n == WALK_BATCH) {
				visit_batch(st, n);
				n = 0;
			}
		}
		key = next;
		prev = &key;
	}
	visit_batch(st, n);
	return err;
}

static int walk_flows(struct tcpflow *st)
{
	int fd = bpf_map__fd(st->skel->maps.flows);
	int err;

	if (!st->batch_unsupported) {
		err = walk_batched(st, fd);
		if (err != -EINVAL && err != -ENOTSUP && err != -EOPNOTSUPP && err != -ENOSPC)
			return err;
		ps_debug(SUBSYS, "batched map walk failed (%s), walking key by key",
			 strerror(-err));
		st->batch_unsupported = true;
	}
	return walk_by_key(st, fd);
}

static void resolve_unowned(struct tcpflow *st);

struct sweep {
	struct tcpflow *st;
	bool walk_complete;
	size_t lost;
};

/*
 * Tombstones go after two walks. A live flow the last two walks did not find
 * lost its CLOSE (ring buffer full) or was evicted from the LRU map: close it
 * here so that opened = closed + active still holds.
 */
static void sweep_flow(struct hnode *node, void *ctx)
{
	struct flow *f = container_of(node, struct flow, node);
	struct sweep *sw = ctx;
	struct tcpflow *st = sw->st;

	if (!f->series) {
		if (st->generation >= f->generation + 2)
			flow_free(st, f);
		return;
	}
	if (sw->walk_complete && st->generation >= f->generation + 2) {
		flow_end(st, f);
		sw->lost++;
	}
}

static int tcpflow_collect(struct ps_plugin *p)
{
	struct tcpflow *st = ps_plugin_data(p);
	struct sweep sw = { .st = st };
	int err;

	st->generation++;
	err = walk_flows(st);
	if (err)
		ps_warn(SUBSYS, "cannot walk the flows map: %s", strerror(-err));
	resolve_unowned(st);
	sw.walk_complete = !err;
	htable_each(&st->flows, sweep_flow, &sw);
	if (sw.lost)
		ps_debug(SUBSYS, "%zu connections left the kernel map without a CLOSE event",
			 sw.lost);
	return 0;
}

/* ---- /proc: owners of sockets the kernel side did not see opened ------------------------ */

struct sock_owner {
	unsigned long inode;
	uint32_t pid;
};

struct netns_pid {
	uint32_t netns;
	uint32_t pid;
};

struct seed {
	struct tcpflow_listener_key key;
	struct tcpflow_listener val;
};

struct proc_scan {
	struct sock_owner *owners;
	size_t n_owners, cap_owners;
	struct netns_pid *nets;
	size_t n_nets, cap_nets;
	struct seed *seeds;
	size_t n_seeds, cap_seeds;
};

static void scan_netns(struct proc_scan *ps, uint32_t pid)
{
	char path[64], link[64];
	unsigned netns;
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/%u/ns/net", pid);
	len = readlink(path, link, sizeof(link) - 1);
	if (len <= 0)
		return;
	link[len] = '\0';
	if (sscanf(link, "net:[%u]", &netns) != 1)
		return;
	for (size_t i = 0; i < ps->n_nets; i++)
		if (ps->nets[i].netns == netns)
			return;
	if (grow((void **)&ps->nets, &ps->cap_nets, ps->n_nets, sizeof(*ps->nets)))
		return;
	ps->nets[ps->n_nets++] = (struct netns_pid){ .netns = netns, .pid = pid };
}

static void scan_fds(struct proc_scan *ps, uint32_t pid)
{
	char path[64], fdpath[320], link[64];
	struct dirent *de;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%u/fd", pid);
	dir = opendir(path);
	if (!dir)
		return;
	while ((de = readdir(dir))) {
		unsigned long inode;
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		len = readlink(fdpath, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &inode) != 1)
			continue;
		if (grow((void **)&ps->owners, &ps->cap_owners, ps->n_owners, sizeof(*ps->owners)))
			break;
		ps->owners[ps->n_owners++] = (struct sock_owner){ .inode = inode, .pid = pid };
	}
	closedir(dir);
}

static int cmp_owner(const void *a, const void *b)
{
	const struct sock_owner *x = a, *y = b;

	return x->inode < y->inode ? -1 : x->inode > y->inode;
}

static const struct sock_owner *owner_of(const struct proc_scan *ps, unsigned long inode)
{
	struct sock_owner key = { .inode = inode };

	return bsearch(&key, ps->owners, ps->n_owners, sizeof(key), cmp_owner);
}

static void read_comm(uint32_t pid, char comm[TCPFLOW_COMM_LEN])
{
	char path[64];
	FILE *f;

	memset(comm, 0, TCPFLOW_COMM_LEN);
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(comm, TCPFLOW_COMM_LEN, f))
		comm[strcspn(comm, "\n")] = '\0';
	fclose(f);
}

static void add_seed(struct proc_scan *ps, uint32_t netns, unsigned port, uint32_t pid)
{
	struct seed *s;

	for (size_t i = 0; i < ps->n_seeds; i++) {
		s = &ps->seeds[i];
		if (s->key.netns == netns && s->key.port == port) {
			s->val.sockets++;
			return;
		}
	}
	if (grow((void **)&ps->seeds, &ps->cap_seeds, ps->n_seeds, sizeof(*ps->seeds)))
		return;
	s = &ps->seeds[ps->n_seeds++];
	memset(s, 0, sizeof(*s));
	s->key.netns = netns;
	s->key.port = port;
	s->val.tgid = pid;
	s->val.sockets = 1;
	read_comm(pid, s->val.comm);
}

/* LISTEN sockets of one /proc/PID/net/tcp{,6} table, attributed through their inode. */
static void scan_listen_table(struct proc_scan *ps, const struct netns_pid *net, const char *table)
{
	char path[64], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/net/%s", net->pid, table);
	f = fopen(path, "re");
	if (!f)
		return;
	if (!fgets(line, sizeof(line), f)) { /* the header */
		fclose(f);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		const struct sock_owner *o;
		unsigned port, state;
		unsigned long inode;

		/* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line,
			   " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu",
			   &port, &state, &inode) != 3)
			continue;
		if (state != 0x0a /* TCP_LISTEN */ || !inode)
			continue;
		o = owner_of(ps, inode);
		if (o)
			add_seed(ps, net->netns, port, o->pid);
	}
	fclose(f);
}

/*
 * Every process's socket inodes (-> pid, sorted) and, when listeners is set,
 * the LISTEN sockets of every network namespace a process lives in. -errno
 * when /proc cannot be read.
 */
static int proc_scan_run(struct proc_scan *ps, bool listeners)
{
	uint32_t self = ps_bpf_self_tgid();
	struct dirent *de;
	DIR *proc;

	memset(ps, 0, sizeof(*ps));
	proc = opendir("/proc");
	if (!proc)
		return -errno;
	while ((de = readdir(proc))) {
		char *end;
		unsigned long pid = strtoul(de->d_name, &end, 10);

		if (*end || !pid || pid == self)
			continue;
		if (listeners)
			scan_netns(ps, pid);
		scan_fds(ps, pid);
	}
	closedir(proc);

	qsort(ps->owners, ps->n_owners, sizeof(*ps->owners), cmp_owner);
	for (size_t i = 0; i < ps->n_nets; i++) {
		scan_listen_table(ps, &ps->nets[i], "tcp");
		scan_listen_table(ps, &ps->nets[i], "tcp6");
	}
	return 0;
}

static void proc_scan_free(struct proc_scan *ps)
{
	free(ps->owners);
	free(ps->nets);
	free(ps->seeds);
}

/*
 * Listeners found in /proc that the kernel side does not know. Those it
 * learned from listen() meanwhile stay: they are as fresh, and counted.
 */
static size_t seed_write(struct tcpflow *st, const struct proc_scan *ps)
{
	int fd = bpf_map__fd(st->skel->maps.listeners);
	size_t written = 0;

	for (size_t i = 0; i < ps->n_seeds; i++)
		if (!bpf_map_update_elem(fd, &ps->seeds[i].key, &ps->seeds[i].val, BPF_NOEXIST))
			written++;
	return written;
}

/*
 * The kernel learns listeners from listen(); those opened before we attached
 * are read from /proc once, after attaching so that none falls in between:
 * socket inode -> pid through /proc/PID/fd, and the LISTEN sockets of every
 * network namespace a process lives in.
 */
static void seed_listeners(struct tcpflow *st)
{
	struct proc_scan ps;
	size_t written;
	int err;

	err = proc_scan_run(&ps, true);
	if (err) {
		ps_warn(SUBSYS,
			"cannot read /proc (%s): connections to listeners opened before start "
			"will be attributed when their owner closes them",
			strerror(-err));
		return;
	}
	written = seed_write(st, &ps);
	ps_debug(SUBSYS, "%zu listening ports known from /proc (%zu network namespaces)", written,
		 ps.n_nets);
	proc_scan_free(&ps);
}

/* ---- inbound connections without an owner ---------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Counts an unowned connection as opened, under the owner user space found. */
static void unowned_open(struct tcpflow *st, struct unowned *u, uint32_t tgid,
			 const char comm[TCPFLOW_COMM_LEN])
{
	struct flow *f;

	u->conn.tgid = tgid;
	memcpy(u->conn.comm, comm, TCPFLOW_COMM_LEN);
	f = flow_open(st, u->sk, &u->conn);
	if (f)
		flow_report(st, f, &u->conn);
}

/* Its listening port's owner, if the kernel side knows it by now (seeded since). */
static bool unowned_from_listener(struct tcpflow *st, struct unowned *u)
{
	struct tcpflow_listener_key key = { .netns = u->conn.netns, .port = u->conn.lport };
	struct tcpflow_listener l;

	if (bpf_map_lookup_elem(bpf_map__fd(st->skel->maps.listeners), &key, &l) || !l.tgid)
		return false;
	unowned_open(st, u, l.tgid, l.comm);
	return true;
}

/*
 * Established inbound connections whose listener the kernel side never saw
 * (opened before us and missed by the first /proc scan, or the listeners map
 * was full) have no owner until the application closes them. Ask the
 * listeners map again, then -- at most every OWNER_SCAN_INTERVAL_NS, and only
 * for accepted sockets -- find the process holding the socket's inode in
 * /proc, which also re-seeds the listeners for the connections to come.
 */
static void resolve_unowned(struct tcpflow *st)
{
	struct proc_scan ps;
	size_t left = 0;
	uint64_t now;

	for (size_t i = 0; i < st->n_unowned; i++) {
		struct unowned *u = &st->unowned[i];

		/* unowned_open() gives it a tgid: the /proc pass below skips it. */
		if (!unowned_from_listener(st, u) && u->ino)
			left++;
	}
	now = mono_ns();
	if (!left || (st->last_owner_scan && now - st->last_owner_scan < OWNER_SCAN_INTERVAL_NS))
		goto out;
	st->last_owner_scan = now;
	if (proc_scan_run(&ps, true))
		goto out;
	seed_write(st, &ps);
	for (size_t i = 0; i < st->n_unowned; i++) {
		struct unowned *u = &st->unowned[i];
		const struct sock_owner *o;
		char comm[TCPFLOW_COMM_LEN];

		if (u->conn.tgid || !u->ino)
			continue;
		o = owner_of(&ps, u->ino);
		if (!o)
			continue;
		read_comm(o->pid, comm);
		unowned_open(st, u, o->pid, comm);
	}
	ps_debug(SUBSYS, "/proc scanned for the owners of %zu inbound connections", left);
	proc_scan_free(&ps);
out:
	st->n_unowned = 0;
}

/* ---- life cycle -------------------------------------------------------------------------- */

static const char *const tcp_labels[] = {
	PS_L_SERVICE_NAME, PS_L_DIRECTION, PS_L_PEER_ADDRESS, PS_L_PEER_PORT, NULL,
};

static const double rtt_buckets[] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01,	 0.025,	 0.05,	  0.1,	  0.25,	 0.5,	 1,
};

/* Connections live far longer than requests: OTel's duration buckets, then up to an hour. */
static const double long_duration_buckets[] = { 30, 60, 120, 300, 600, 1800, 3600 };

static struct ps_metric *register_one(const char *name, const char *help, enum ps_metric_type type,
				      const double *buckets, size_t n_buckets)
{
	struct ps_metric_desc d = {
		.name = name,
		.help = help,
		.type = type,
		.labels = tcp_labels,
		.buckets = buckets,
		.n_buckets = n_buckets,
	};
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int register_metrics(struct tcpflow *st)
{
	size_t n_def = ps_buckets_duration_len, n = 0;
	double duration_buckets[64];

	for (size_t i = 0; i < n_def && n < 64; i++)
		duration_buckets[n++] = ps_buckets_duration[i];
	for (size_t i = 0; i < sizeof(long_duration_buckets) / sizeof(double) && n < 64; i++)
		if (!n || long_duration_buckets[i] > duration_buckets[n - 1])
			duration_buckets[n++] = long_duration_buckets[i];

#define COUNTER(name, help) register_one(name, help, PS_METRIC_COUNTER, NULL, 0)
	st->opened = COUNTER(PS_M_TCP_OPENED,
			     "TCP connections that completed the handshake");
	st->closed = COUNTER("periscope_tcp_connections_closed_total",
			     "TCP connections that ended after being opened");
	st->failed =
		COUNTER(PS_M_TCP_FAILED,
			"TCP connections whose handshake never completed (refused, timed out)");
	st->sent = COUNTER("periscope_tcp_sent_bytes_total",
			   "Bytes the application wrote to TCP connections");
	st->received = COUNTER("periscope_tcp_received_bytes_total",
			       "Bytes the application read from TCP connections");
	st->retransmits = COUNTER("periscope_tcp_retransmits_total", "TCP segments retransmitted");
	st->resets = COUNTER("periscope_tcp_resets_total", "TCP resets sent or received");
#undef COUNTER
	st->rtt = register_one(PS_M_TCP_RTT,
			       "Smoothed round-trip time of TCP connections, taken at close",
			       PS_METRIC_HISTOGRAM, rtt_buckets,
			       sizeof(rtt_buckets) / sizeof(rtt_buckets[0]));
	st->duration = register_one("periscope_tcp_connection_duration_seconds",
				    "Lifetime of TCP connections, from handshake to close",
				    PS_METRIC_HISTOGRAM, duration_buckets, n);
	st->active = register_one("periscope_tcp_connections_active", "Open TCP connections",
				  PS_METRIC_GAUGE, NULL, 0);

	if (!st->opened || !st->closed || !st->failed || !st->sent || !st->received ||
	    !st->retransmits || !st->resets || !st->rtt || !st->duration || !st->active)
		return -EINVAL;
	return 0;
}

static void free_flow(struct hnode *node, void *ctx)
{
	free(container_of(node, struct flow, node));
}

static void free_series(struct hnode *node, void *ctx)
{
	free(container_of(node, struct series, node));
}

static void tcpflow_free(struct tcpflow *st)
{
	if (!st)
		return;
	if (st->flows.buckets)
		htable_each(&st->flows, free_flow, NULL);
	if (st->series.buckets)
		htable_each(&st->series, free_series, NULL);
	free(st->flows.buckets);
	free(st->series.buckets);
	free(st->walk_keys);
	free(st->walk_vals);
	free(st->unowned);
	tcpflow_bpf__destroy(st->skel);
	free(st);
}

static int tcpflow_init(struct ps_plugin *p, const void *config)
{
	const struct tcpflow_config *cfg = config;
	uint64_t max = cfg ? cfg->max_connections : TCPFLOW_DEFAULT_MAX_CONNECTIONS;
	struct tcpflow *st;
	int err;

	if (max < 1 || max > (1u << 24)) {
		ps_error(SUBSYS, "max_connections must be between 1 and %u, not %" PRIu64, 1u << 24,
			 max);
		return -EINVAL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->max_connections = (uint32_t)max;
	st->walk_keys = calloc(WALK_BATCH, sizeof(*st->walk_keys));
	st->walk_vals = calloc(WALK_BATCH, sizeof(*st->walk_vals));
	if (!st->walk_keys || !st->walk_vals || htable_init(&st->flows, FLOW_BUCKETS_MIN) ||
	    htable_init(&st->series, SERIES_BUCKETS_MIN)) {
		err = -ENOMEM;
		goto fail;
	}

	st->skel = tcpflow_bpf__open();
	if (!st->skel) {
		err = -errno;
		ps_error(SUBSYS, "open failed: %s", strerror(-err));
		goto fail;
	}
	st->skel->rodata->ps_self_tgid = ps_bpf_self_tgid();
	/* Run by collect through BPF_PROG_TEST_RUN, never attached. */
	bpf_program__set_autoattach(st->skel->progs.tcpflow_refresh, false);
	err = bpf_map__set_max_entries(st->skel->maps.flows, st->max_connections);
	if (err) {
		ps_error(SUBSYS, "cannot size the flows map: %s", strerror(-err));
		goto fail;
	}
	err = tcpflow_bpf__load(st->skel);
	if (err) {
		ps_error(SUBSYS, "load failed: %s", strerror(-err));
		goto fail;
	}
	ps_plugin_set_data(p, st);
	return 0;

fail:
	tcpflow_free(st);
	return err;
}

static int tcpflow_start(struct ps_plugin *p)
{
	struct tcpflow *st = ps_plugin_data(p);
	int err;

	err = register_metrics(st);
	if (err)
		return err;
	err = tcpflow_bpf__attach(st->skel);
	if (err) {
		ps_error(SUBSYS, "attach failed: %s", strerror(-err));
		return err;
	}
	seed_listeners(st);
	err = ps_bpf_ringbuf_add(p, bpf_map__fd(st->skel->maps.events), on_event, st);
	if (err) {
		ps_error(SUBSYS, "cannot register the ring buffer: %s", strerror(-err));
		return err;
	}
	err = ps_bpf_drops_watch(p, bpf_map__fd(st->skel->maps.ps_drops));
	if (err) {
		ps_error(SUBSYS, "cannot watch ring buffer drops: %s", strerror(-err));
		return err;
	}
	return 0;
}

static void tcpflow_stop(struct ps_plugin *p)
{
	struct tcpflow *st = ps_plugin_data(p);

	if (st && st->skel)
		tcpflow_bpf__detach(st->skel);
}

static void tcpflow_destroy(struct ps_plugin *p)
{
	tcpflow_free(ps_plugin_data(p));
	ps_plugin_set_data(p, NULL);
}

static const struct ps_cfg_key tcpflow_config_map[] = {
	{
		.name = "max_connections",
		.type = PS_CFG_UINT,
		.def = "65536",
		.offset = offsetof(struct tcpflow_config, max_connections),
		.help = "connections tracked at once in the kernel; the least recently used go beyond",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "tcpflow", .version = PACKAGE_VERSION,
		 .description = "TCP connection lifecycle, bytes, RTT, retransmits and resets",
		 .config_map = tcpflow_config_map, .config_size = sizeof(struct tcpflow_config),
		 .init = tcpflow_init, .start = tcpflow_start, .collect = tcpflow_collect,
		 .stop = tcpflow_stop, .destroy = tcpflow_destroy, );
