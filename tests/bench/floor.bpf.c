/*
 * make bench's yardstick: programs on the hooks a capture can use that do
 * nothing (mode 0), only what any capture must do, read the first 64 bytes
 * of the caller's buffer (mode 1), or that and one ring-buffer record per
 * syscall (mode 2). Two families: the syscall exits (tp/syscalls/sys_exit_*)
 * and the socket tracepoints (tp_btf/sock_send_length, sock_recv_length).
 * Whatever these cost, no capture on those hooks can cost less.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u8 mode = 0;
const volatile __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 << 20);
} floor_ring SEC(".maps");

struct floor_record {
	__u64 ts;
	__u32 tgid, len;
	__u8 data[64];
};

/* min(max(len, 0), 64) in the very register the helper gets (clang would pass another). */
static __always_inline __u64 clamp64(__s64 len)
{
	__u64 n = len;

	asm volatile("if %0 s<= 64 goto +1\n\t"
		     "%0 = 64\n\t"
		     "if %0 s> 0 goto +1\n\t"
		     "%0 = 0"
		     : "+r"(n));
	return n;
}

/* The data syscalls pass the buffer (or iovec array) second. */
static __always_inline int floor_copy(long ret)
{
	struct pt_regs *regs;
	struct floor_record *r;
	__u8 head[64];
	const void *buf;
	__u64 n;

	if (!mode || ret <= 0 || bpf_get_current_pid_tgid() >> 32 == self_tgid)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	buf = (const void *)PT_REGS_PARM2_SYSCALL(regs);
	n = clamp64(ret);
	if (mode == 1) {
		bpf_probe_read_user(head, n, buf);
		return 0;
	}
	r = bpf_ringbuf_reserve(&floor_ring, sizeof(*r), 0);
	if (!r)
		return 0;
	r->ts = bpf_ktime_get_ns();
	r->tgid = bpf_get_current_pid_tgid() >> 32;
	r->len = n;
	bpf_probe_read_user(r->data, n, buf);
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return 0;
}

#define FLOOR_PROG(name)                                          \
	SEC("tp/syscalls/sys_exit_" #name)                        \
	int floor_sys_##name(struct trace_event_raw_sys_exit *ctx) \
	{                                                         \
		return floor_copy(ctx->ret);                      \
	}

FLOOR_PROG(read)
FLOOR_PROG(write)
FLOOR_PROG(readv)
FLOOR_PROG(writev)
FLOOR_PROG(recvfrom)
FLOOR_PROG(sendto)
FLOOR_PROG(recvmsg)
FLOOR_PROG(sendmsg)

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_sock_send, struct sock *sk, int ret, int flags)
{
	return floor_copy(ret);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_sock_recv, struct sock *sk, int ret, int flags)
{
	return floor_copy(ret);
}
