/*
 * What propagate.bpf.c and propagate.c share: the ids the kernel put in the
 * traceparent it added to an outbound request.
 */
#ifndef TRACECTX_PROPAGATE_MAPS_H
#define TRACECTX_PROPAGATE_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define TC_PORTS_MAX 16

/* Counters in tc_stats, per CPU. */
enum tc_stat {
	TC_STAT_INJECTED,      /* a traceparent went out in a request that had none */
	TC_STAT_HAD_HEADER,    /* the application sent its own */
	TC_STAT_NO_LINE_END,   /* the request line did not end within the first message's head */
	TC_STAT_PUSH_FAILED,   /* the kernel refused to grow the message */
	TC_STAT_SERVER_SEEN,   /* an inbound request started being served */
	TC_STAT_MAX,
};

struct tc_ids {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_id[8];
	__u64 ts_ns; /* bpf_ktime_get_ns() when the kernel decided them */
	__u64 cookie;
	__u8 flags;	 /* W3C trace-flags; bit 0: sampled */
	__u8 has_parent; /* parent_id is set */
	__u8 pad[6];
};

/* The n-th request (seq, from 0) on a socket, seen from one side. */
struct tc_key {
	__u64 cookie;
	__u32 seq;
	__u32 side; /* enum tc_side */
};

#endif
