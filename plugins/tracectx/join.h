/*
 * tracectx joining: which span is whose parent, on one host, without headers.
 *
 * Exchanges complete (and arrive) children first, parents last, so spans wait
 * here until the root of their tree has waited `hold` without gaining a
 * parent; then the tree gets its ids and goes out as one batch. Links, redone
 * from scratch at every tick over what is pending:
 *   header      a server span whose request carried a valid traceparent takes its
 *               trace id and parent id; the parent is local when a pending span
 *               has that id (a client span that sent the header);
 *   connection  a server span's parent is the client span at the other end of
 *               the same connection (client.local == server.remote, client.remote
 *               == server.local) with the same seq;
 *   thread      a client span's parent is the server span of the same pid and tid
 *               whose interval contains it, unless server spans on that thread
 *               overlap (an event loop serving many requests at once): then none,
 *               counted as TC_UNJOINED_OVERLAP. Server spans already published count
 *               for two more holds; a request that overlaps only ones that come later
 *               than that is joined on what was known.
 * Memory is bounded by max_pending spans; past it a new span goes out at once,
 * alone (TC_UNJOINED_OVERFLOW).
 */
#ifndef PS_TRACECTX_JOIN_H
#define PS_TRACECTX_JOIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

struct tc_join_config {
	uint64_t hold_ns;
	size_t max_pending;
	double sample_ratio; /* 0..1: of the traces that start here */
};

/* Finished, sampled spans (n > 0); they are freed after the call. */
typedef void (*tc_publish_fn)(struct tc_span *const *spans, size_t n, void *ctx);

struct tc_join_stats {
	uint64_t unjoined[TC_UNJOINED_MAX];
	uint64_t published, sampled_out;
	size_t pending;
};

struct tc_join;

struct tc_join *tc_join_new(const struct tc_join_config *cfg, struct tc_rng *rng, tc_publish_fn fn,
			    void *ctx);
/* Publishes nothing: what is pending is dropped. */
void tc_join_free(struct tc_join *j);
/* Takes s. now_ns: CLOCK_MONOTONIC. */
void tc_join_add(struct tc_join *j, struct tc_span *s, uint64_t now_ns);
/* Links what is pending; publishes trees whose root waited hold (every tree with all). */
void tc_join_tick(struct tc_join *j, uint64_t now_ns, bool all);
void tc_join_get_stats(const struct tc_join *j, struct tc_join_stats *st);

#endif
