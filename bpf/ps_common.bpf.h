/*
 * What every periscope BPF object shares: our own pid to skip, the drop
 * counter and ring-buffer output that wakes user space only past a watermark
 * (the core drains on a short timer otherwise).
 */
#ifndef PS_COMMON_BPF_H
#define PS_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* periscoped's tgid, set through the skeleton's rodata before load. */
const volatile __u32 ps_self_tgid = 0;

/* Slot 0: ring buffer reservations that failed. Read by the core each flush. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ps_drops SEC(".maps");

/* Wake the reader only when this much is waiting; the drain timer does the rest. */
#define PS_RB_WAKEUP_BYTES (256 * 1024)
/* How much a CPU writes between two looks at how much is waiting. */
#define PS_RB_CHECK_BYTES (16 * 1024)

/* Bytes this CPU wrote to ring buffers since it last looked at what is waiting. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ps_rb_unchecked SEC(".maps");

static __always_inline void ps_count_drop(void)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&ps_drops, &key);

	if (n)
		*n += 1;
}

/*
 * Wakes the reader when the watermark is passed, looking only once per
 * PS_RB_CHECK_BYTES this CPU wrote: the waiting count lives on the cache line
 * the reader writes, and each wake-up is an irq_work (an IPI, a VM exit on
 * guests), so neither is paid per record.
 */
static __always_inline long ps_rb_output(void *rb, void *data, __u64 size)
{
	__u32 zero = 0;
	__u64 *unchecked = bpf_map_lookup_elem(&ps_rb_unchecked, &zero);
	__u64 flags = BPF_RB_NO_WAKEUP;
	long err;

	if (unchecked && (*unchecked += size) >= PS_RB_CHECK_BYTES) {
		*unchecked = 0;
		if (bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) + size >= PS_RB_WAKEUP_BYTES)
			flags = BPF_RB_FORCE_WAKEUP;
	}
	err = bpf_ringbuf_output(rb, data, size, flags);
	if (err)
		ps_count_drop();
	return err;
}

static __always_inline bool ps_is_self(void)
{
	return (__u32)(bpf_get_current_pid_tgid() >> 32) == ps_self_tgid;
}

#endif
