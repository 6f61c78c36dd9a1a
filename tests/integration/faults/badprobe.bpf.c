/* badprobe: one uprobe program, for a target faults.sh makes sure does not exist. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("uprobe")
int badprobe_entry(void *ctx)
{
	return 0;
}
