/*
 * make bench's yardstick: programs on the same syscall exits as the L7
 * capture that do nothing (copy = 0), or only what any capture must do:
 * read the first bytes of the caller's buffer (copy = 1). Whatever these
 * cost, no capture built on syscall tracepoints can cost less.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u8 copy = 0;
const volatile __u32 self_tgid = 0;

/* The kernel's data syscalls pass the buffer (or iovec array) second. */
static __always_inline int floor_exit(long ret)
{
	struct pt_regs *regs;
	__u8 head[64];

	if (!copy || ret <= 0 || bpf_get_current_pid_tgid() >> 32 == self_tgid)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	bpf_probe_read_user(head, ret < sizeof(head) ? ret : sizeof(head),
			    (const void *)PT_REGS_PARM2_SYSCALL(regs));
	return 0;
}

#define FLOOR_PROG(name)                                          \
	SEC("tp/syscalls/sys_exit_" #name)                        \
	int floor_##name(struct trace_event_raw_sys_exit *ctx)    \
	{                                                         \
		return floor_exit(ctx->ret);                      \
	}

FLOOR_PROG(read)
FLOOR_PROG(write)
FLOOR_PROG(readv)
FLOOR_PROG(writev)
FLOOR_PROG(recvfrom)
FLOOR_PROG(sendto)
FLOOR_PROG(recvmsg)
FLOOR_PROG(sendmsg)
