/*
 * tracectx's opt-in propagation: loads propagate.bpf.c, which adds a W3C
 * traceparent to outbound HTTP/1.x requests, and reads back the ids it chose.
 */
#ifndef TRACECTX_PROPAGATE_H
#define TRACECTX_PROPAGATE_H

#include <stddef.h>
#include <stdint.h>

#include <periscope/events.h>
#include <periscope/traceparent.h>

#include "propagate_maps.h"

struct tc_propagate;

/*
 * Loads and attaches: sock_ops on the cgroup v2 root, sk_msg on its sockhash,
 * the socket tracepoints. ports: outbound destination ports to inject into
 * (none: every port); sample_ratio: of the traces the kernel starts, as the
 * plugin samples its own. 0 or -errno, logged with the reason.
 */
int tc_propagate_start(const uint16_t *ports, size_t n_ports, double sample_ratio,
		       struct tc_propagate **out);

/*
 * The traceparent the kernel added to client exchange x's request, forgotten
 * as it is read: 0, or -ENOENT if it added none. The kernel counts the
 * requests that start a message; the decoder counts requests: a request whose
 * ordinal disagrees (pipelining) is told apart by when the kernel saw it.
 */
int tc_propagate_take(struct tc_propagate *tp, const struct ps_exchange *x,
		      struct ps_traceparent *out);

/* The kernel's counters (enum tc_stat), summed over CPUs. */
void tc_propagate_stats(struct tc_propagate *tp, uint64_t out[TC_STAT_MAX]);

/* Detaches and unloads; traffic goes on unmodified. NULL is fine. */
void tc_propagate_stop(struct tc_propagate *tp);

#endif
