/* tracectx joining. See join.h for the rules. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "join.h"

enum { H_THREAD, H_CONN, H_ID, H_MAX };

/*
 * A server span already published, remembered for two more holds: a request that overlaps
 * it on its thread is still ambiguous, though its tree went out first.
 */
struct tc_recent {
	uint32_t pid, tid;
	uint64_t start_ns, end_ns;
	uint64_t until_ns; /* CLOCK_MONOTONIC */
	struct tc_recent *hnext;
};

struct tc_join {
	struct tc_join_config cfg;
	struct tc_rng *rng;
	tc_publish_fn fn;
	void *ctx;
	struct tc_span **v; /* pending, in arrival order */
	size_t n, cap;
	struct tc_span **buckets; /* H_MAX tables of nb chains, rebuilt each tick */
	size_t nb;
	struct tc_span **out, **stack;
	size_t n_out, work_cap;
	struct tc_recent *recent; /* at most max_pending */
	size_t n_recent, recent_cap;
	struct tc_recent **recent_buckets; /* nb chains */
	uint32_t mark;
	struct tc_join_stats st;
};

struct tc_join *tc_join_new(const struct tc_join_config *cfg, struct tc_rng *rng, tc_publish_fn fn,
			    void *ctx)
{
	struct tc_join *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->cfg = *cfg;
	if (!j->cfg.max_pending)
		j->cfg.max_pending = 1;
	j->rng = rng;
	j->fn = fn;
	j->ctx = ctx;
	return j;
}

void tc_join_free(struct tc_join *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		tc_span_free(j->v[i]);
	free(j->v);
	free(j->buckets);
	free(j->out);
	free(j->stack);
	free(j->recent);
	free(j->recent_buckets);
	free(j);
}

void tc_join_get_stats(const struct tc_join *j, struct tc_join_stats *st)
{
	*st = j->st;
	st->pending = j->n;
}

/* ---- keys ---------------------------------------------------------------------------------- */

static bool inet(const struct ps_endpoint *ep)
{
	return ep->family == AF_INET || ep->family == AF_INET6;
}

static size_t addr_len(const struct ps_endpoint *ep)
{
	return ep->family == AF_INET ? 4 : 16;
}

static bool endpoint_eq(const struct ps_endpoint *a, const struct ps_endpoint *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->addr, b->addr, addr_len(a));
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_endpoint(uint64_t h, const struct ps_endpoint *ep)
{
	h = fnv(h, &ep->port, sizeof(ep->port));
	return fnv(h, ep->addr, addr_len(ep));
}

static const uint64_t FNV_BASIS = 0xcbf29ce484222325ull;

static uint64_t key_thread(uint32_t pid, uint32_t tid)
{
	return fnv(fnv(FNV_BASIS, &pid, sizeof(pid)), &tid, sizeof(tid));
}

/* A connection seen from its client: (client end, server end, seq). */
static uint64_t key_conn(const struct ps_endpoint *client, const struct ps_endpoint *server,
			 uint32_t seq)
{
	return fnv(hash_endpoint(hash_endpoint(FNV_BASIS, client), server), &seq, sizeof(seq));
}

static uint64_t key_id(const uint8_t *id)
{
	return fnv(FNV_BASIS, id, 8);
}

static struct tc_span **chain(struct tc_join *j, int table, uint64_t key)
{
	return &j->buckets[(size_t)table * j->nb + (key & (j->nb - 1))];
}

static void insert(struct tc_join *j, int table, uint64_t key, struct tc_span *s)
{
	struct tc_span **head = chain(j, table, key);

	s->hnext[table] = *head;
	*head = s;
}

/* ---- links --------------------------------------------------------------------------------- */

static int grow_work(struct tc_join *j)
{
	size_t nb = 16;
	struct tc_span **b;

	while (nb < 2 * j->n)
		nb *= 2;
	while (nb < 2 * j->n_recent)
		nb *= 2;
	if (nb > j->nb) {
		struct tc_recent **rb;

		b = realloc(j->buckets, H_MAX * nb * sizeof(*b));
		if (!b)
			return -ENOMEM;
		j->buckets = b;
		rb = realloc(j->recent_buckets, nb * sizeof(*rb));
		if (!rb)
			return -ENOMEM;
		j->recent_buckets = rb;
		j->nb = nb;
	}
	memset(j->buckets, 0, H_MAX * j->nb * sizeof(*j->buckets));
	memset(j->recent_buckets, 0, j->nb * sizeof(*j->recent_buckets));
	if (j->n > j->work_cap) {
		struct tc_span **o = realloc(j->out, j->n * sizeof(*o));

		if (!o)
			return -ENOMEM;
		j->out = o;
		o = realloc(j->stack, j->n * sizeof(*o));
		if (!o)
			return -ENOMEM;
		j->stack = o;
		j->work_cap = j->n;
	}
	return 0;
}

static void index_spans(struct tc_join *j)
{
	for (size_t i = 0; i < j->n; i++) {
		struct tc_span *s = j->v[i];

		s->parent = s->child = s->sibling = s->root = NULL;
		s->unjoined = TC_JOINED;
		s->done = false;
		memset(s->hnext, 0, sizeof(s->hnext));
		if (s->side == PS_SIDE_SERVER)
			insert(j, H_THREAD, key_thread(s->pid, s->tid), s);
		else if (inet(&s->local) && inet(&s->remote))
			insert(j, H_CONN, key_conn(&s->local, &s->remote, s->seq), s);
		insert(j, H_ID, key_id(s->span_id), s);
	}
}

/* Forgets what is past its time, and chains the rest by thread. */
static void index_recent(struct tc_join *j, uint64_t now_ns)
{
	size_t kept = 0;

	for (size_t i = 0; i < j->n_recent; i++)
		if (j->recent[i].until_ns > now_ns)
			j->recent[kept++] = j->recent[i];
	j->n_recent = kept;
	for (size_t i = 0; i < j->n_recent; i++) {
		struct tc_recent *r = &j->recent[i];
		struct tc_recent **head =
			&j->recent_buckets[key_thread(r->pid, r->tid) & (j->nb - 1)];

		r->hnext = *head;
		*head = r;
	}
}

static void remember_server(struct tc_join *j, const struct tc_span *s, uint64_t now_ns)
{
	struct tc_recent *r;

	if (j->n_recent == j->recent_cap) {
		size_t cap = j->recent_cap ? 2 * j->recent_cap : 64;

		if (j->recent_cap >= j->cfg.max_pending)
			return; /* bounded like the spans: then overlaps may go unseen */
		if (cap > j->cfg.max_pending)
			cap = j->cfg.max_pending;
		r = realloc(j->recent, cap * sizeof(*r));
		if (!r)
			return;
		j->recent = r;
		j->recent_cap = cap;
	}
	r = &j->recent[j->n_recent++];
	r->pid = s->pid;
	r->tid = s->tid;
	r->start_ns = s->start_ns;
	r->end_ns = s->end_ns;
	r->until_ns = now_ns + 2 * j->cfg.hold_ns;
}

/* A published server span of the thread that overlaps s. */
static bool recent_overlap(struct tc_join *j, const struct tc_span *s)
{
	for (struct tc_recent *r = j->recent_buckets[key_thread(s->pid, s->tid) & (j->nb - 1)]; r;
	     r = r->hnext)
		if (r->pid == s->pid && r->tid == s->tid && r->start_ns < s->end_ns &&
		    s->start_ns < r->end_ns)
			return true;
	return false;
}

static struct tc_span *find_by_id(struct tc_join *j, const uint8_t *id, const struct tc_span *self)
{
	for (struct tc_span *t = *chain(j, H_ID, key_id(id)); t; t = t->hnext[H_ID])
		if (t != self && !memcmp(t->span_id, id, 8))
			return t;
	return NULL;
}

/* The client end of the server span's connection, same request. */
static struct tc_span *find_client(struct tc_join *j, const struct tc_span *s)
{
	if (!inet(&s->local) || !inet(&s->remote))
		return NULL;
	for (struct tc_span *t = *chain(j, H_CONN, key_conn(&s->remote, &s->local, s->seq)); t;
	     t = t->hnext[H_CONN])
		if (t->seq == s->seq && endpoint_eq(&t->local, &s->remote) &&
		    endpoint_eq(&t->remote, &s->local))
			return t;
	return NULL;
}

static bool same_thread(const struct tc_span *a, const struct tc_span *b)
{
	return a->pid == b->pid && a->tid == b->tid;
}

/* The one server span of the client's thread that contains it, if unambiguous. */
static void link_in_thread(struct tc_join *j, struct tc_span *c)
{
	struct tc_span *head = *chain(j, H_THREAD, key_thread(c->pid, c->tid)), *found = NULL;
	size_t n = 0;

	for (struct tc_span *t = head; t; t = t->hnext[H_THREAD])
		if (same_thread(t, c) && t->start_ns <= c->start_ns && c->end_ns <= t->end_ns) {
			found = t;
			n++;
		}
	if (!n)
		return;
	for (struct tc_span *t = head; t && n == 1; t = t->hnext[H_THREAD])
		if (t != found && same_thread(t, found) && t->start_ns < found->end_ns &&
		    found->start_ns < t->end_ns)
			n++;
	if (n == 1 && j->n_recent && recent_overlap(j, found))
		n++;
	if (n == 1)
		c->parent = found;
	else
		c->unjoined = TC_UNJOINED_OVERLAP; /* an event loop: whose request is it? */
}

static void link_span(struct tc_join *j, struct tc_span *s)
{
	if (s->side == PS_SIDE_CLIENT) {
		link_in_thread(j, s);
		return;
	}
	/* The header wins: its parent id, local or not. */
	if (s->has_header)
		s->parent = find_by_id(j, s->header.parent_id, s);
	else
		s->parent = find_client(j, s);
}

/* Roots, and cycles cut (degenerate intervals could make one). */
static void find_roots(struct tc_join *j)
{
	for (size_t i = 0; i < j->n; i++) {
		struct tc_span *s = j->v[i], *x = s, *root;

		if (s->root)
			continue;
		j->mark++;
		while (x->parent && !x->root && x->mark != j->mark) {
			x->mark = j->mark;
			x = x->parent;
		}
		if (x->root) {
			root = x->root;
		} else {
			if (x->mark == j->mark)
				x->parent = NULL; /* back on this walk: a cycle; cut it here */
			root = x;
		}
		for (struct tc_span *y = s; y != root && !y->root; y = y->parent)
			y->root = root;
		root->root = root;
	}
	for (size_t i = 0; i < j->n; i++) {
		struct tc_span *s = j->v[i];

		if (s->parent) {
			s->sibling = s->parent->child;
			s->parent->child = s;
		}
	}
}

/* ---- publishing ---------------------------------------------------------------------------- */

/* The same decision for the same trace id wherever it is made (like OTel's TraceIdRatioBased). */
static bool ratio_keeps(double ratio, const uint8_t *trace_id)
{
	uint64_t v = 0;

	if (ratio >= 1.0)
		return true;
	if (ratio <= 0.0)
		return false;
	for (int i = 8; i < 16; i++)
		v = v << 8 | trace_id[i];
	return (double)(v >> 8) < ratio * (double)(1ull << 56);
}

/* The tree in pre-order into j->stack[from..]; returns its size. */
static size_t tree_order(struct tc_join *j, struct tc_span *root, size_t from)
{
	size_t n = from, top = from;

	j->stack[n++] = root;
	while (top < n) {
		struct tc_span *x = j->stack[top++];

		for (struct tc_span *c = x->child; c; c = c->sibling)
			j->stack[n++] = c;
	}
	return n - from;
}

static void publish_tree(struct tc_join *j, struct tc_span *root, uint64_t now_ns)
{
	size_t n = tree_order(j, root, 0);
	const struct tc_span *src = NULL;
	bool sampled;

	/* A trace id an application gave (a header anywhere in the tree) wins over a new one. */
	for (size_t i = 0; i < n && !src; i++)
		if (j->stack[i]->has_header)
			src = j->stack[i];
	if (src) {
		memcpy(root->trace_id, src->header.trace_id, 16);
		sampled = src->header.flags & PS_TRACE_FLAG_SAMPLED;
	} else {
		tc_rng_id(j->rng, root->trace_id, 16);
		sampled = ratio_keeps(j->cfg.sample_ratio, root->trace_id);
	}
	/* Parents come before their children in this order. */
	for (size_t i = 0; i < n; i++) {
		struct tc_span *x = j->stack[i];

		if (x->parent && x->has_header &&
		    memcmp(x->header.trace_id, x->parent->trace_id, 16)) {
			/* Its header says another trace: keep the header's, drop the guess. */
			memcpy(x->trace_id, x->header.trace_id, 16);
			x->has_parent_id = x->side == PS_SIDE_SERVER;
			x->unjoined = TC_UNJOINED_CONFLICT;
		} else if (x->parent) {
			memcpy(x->trace_id, x->parent->trace_id, 16);
			memcpy(x->parent_id, x->parent->span_id, 8);
			x->has_parent_id = true;
		}
		if (x->unjoined)
			j->st.unjoined[x->unjoined]++;
		if (x->side == PS_SIDE_SERVER)
			remember_server(j, x, now_ns);
		x->done = true;
		if (sampled)
			j->out[j->n_out++] = x;
		else
			j->st.sampled_out++;
	}
}

/* Without joining: past max_pending, or out of memory. Takes s. */
static void publish_alone(struct tc_join *j, struct tc_span *s)
{
	struct tc_span *one[1] = { s };
	bool sampled;

	if (s->has_header) {
		sampled = s->header.flags & PS_TRACE_FLAG_SAMPLED;
	} else {
		tc_rng_id(j->rng, s->trace_id, 16);
		sampled = ratio_keeps(j->cfg.sample_ratio, s->trace_id);
	}
	j->st.unjoined[TC_UNJOINED_OVERFLOW]++;
	if (sampled) {
		j->fn(one, 1, j->ctx);
		j->st.published++;
	} else {
		j->st.sampled_out++;
	}
	tc_span_free(s);
}

static void flush_out(struct tc_join *j)
{
	if (j->n_out)
		j->fn(j->out, j->n_out, j->ctx);
	j->st.published += j->n_out;
	j->n_out = 0;
}

void tc_join_tick(struct tc_join *j, uint64_t now_ns, bool all)
{
	size_t kept = 0;

	if (!j->n)
		return;
	if (grow_work(j)) {
		/* No memory to think: everything goes out alone rather than waiting forever. */
		for (size_t i = 0; i < j->n; i++)
			publish_alone(j, j->v[i]);
		j->n = 0;
		return;
	}
	index_spans(j);
	index_recent(j, now_ns);
	for (size_t i = 0; i < j->n; i++)
		link_span(j, j->v[i]);
	find_roots(j);
	for (size_t i = 0; i < j->n; i++) {
		struct tc_span *s = j->v[i];

		if (s->root == s && (all || now_ns - s->arrival_ns >= j->cfg.hold_ns))
			publish_tree(j, s, now_ns);
	}
	flush_out(j);
	for (size_t i = 0; i < j->n; i++) {
		if (j->v[i]->done)
			tc_span_free(j->v[i]);
		else
			j->v[kept++] = j->v[i];
	}
	j->n = kept;
}

void tc_join_add(struct tc_join *j, struct tc_span *s, uint64_t now_ns)
{
	s->arrival_ns = now_ns;
	if (j->n >= j->cfg.max_pending) {
		publish_alone(j, s); /* full: this one goes out now, as it is */
		return;
	}
	if (j->n == j->cap) {
		size_t cap = j->cap ? 2 * j->cap : 64;
		struct tc_span **v;

		if (cap > j->cfg.max_pending)
			cap = j->cfg.max_pending;
		v = realloc(j->v, cap * sizeof(*v));
		if (!v) {
			publish_alone(j, s);
			return;
		}
		j->v = v;
		j->cap = cap;
	}
	j->v[j->n++] = s;
}
