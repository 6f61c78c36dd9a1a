/*
 * resources: what the kernel side and the user side of the plugin share.
 *
 * Two kinds of numbers, read each flush:
 *
 *  - Per process (tgid), in per-CPU hash maps filled by tracepoints: the CPU
 *    time, run-queue delay and socket bytes of threads that are gone (added
 *    when each thread's task_struct is freed), block I/O bytes and latency,
 *    OOM kills. Nothing here runs per system call, nor per context switch
 *    unless run_delay_source is tracepoints.
 *  - Per thread not reaped yet, from the task iterator (res_tasks) that user
 *    space runs once per flush: CPU time, run-queue delay, resident memory,
 *    socket bytes (kept per thread in task storage until it is freed).
 *
 * A process's totals are then gone-threads + live-threads, and a process
 * that lived and died between two flushes is entirely in the first.
 *
 * A thread's numbers reach the maps in two steps: what it used up to
 * sched_process_exit (a tracepoint that always fires, in the thread itself),
 * then, at sched_process_free, what it used after (the exit path's own CPU:
 * mm and file teardown, ~2 ms for a short python process). The free alone
 * would do, but it can come very late or, rarely, not at all: in a loop of
 * 1440 short-lived children on kernel 6.18, sched_process_exit fired for every
 * one and sched_process_free for 1436, the other 4 never within minutes, so a
 * process counted only at its free was lost whole (#14: one of 60 children
 * missing in about one run of resources.sh in three). Between its exit and
 * its free a thread is still visited by the iterator, which then reports only
 * what it used after its exit.
 */
#ifndef PS_RESOURCES_H
#define PS_RESOURCES_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define RES_COMM_LEN		  16
#define RES_DEFAULT_MAX_PROCESSES 32768
/* Block requests in flight at once whose issuer is remembered for their latency. */
#define RES_MAX_INFLIGHT 16384
/* Upper bounds of the block latency histogram, set by user space (its buckets). */
#define RES_LAT_BOUNDS 16

/* Value of the procs map (per CPU): everything counted by tracepoints for one tgid. */
struct res_counters {
	/* Threads of this process that are gone: their final CPU numbers (ns). */
	__u64 exited_runtime_ns; /* se.sum_exec_runtime */
	__u64 exited_utime_ns;	 /* utime, stime: tick-sampled, give the user/system split */
	__u64 exited_stime_ns;
	__u64 exited_run_delay_ns; /* sched_info.run_delay: runnable but not running */
	__u64 net_tx_bytes;
	__u64 net_rx_bytes;
	__u64 disk_read_bytes;
	__u64 disk_write_bytes;
	__u64 oom_kills;
	__u32 group_dead;	 /* the process's last thread (its leader) was freed */
	__u32 group_exited;	 /* its last thread exited (sched_process_exit) */
	char comm[RES_COMM_LEN]; /* set with group_exited: names a process never seen alive */
};

/* Value of the disk_lat map (per CPU): block request latency of requests the tgid issued. */
struct res_disk_lat {
	__u64 count[RES_LAT_BOUNDS + 1]; /* last slot: above every bound */
	__u64 sum_ns[RES_LAT_BOUNDS + 1];
};

/* One record of the task iterator: one live thread. */
struct res_task {
	__u32 tgid;
	__u32 tid;
	__u64 runtime_ns;
	__u64 utime_ns;
	__u64 stime_ns;
	__u64 run_delay_ns;
	__u64 rss_bytes;    /* of its mm, shared by the process's threads */
	__u64 net_tx_bytes; /* its socket bytes so far (task_acct) */
	__u64 net_rx_bytes;
	__u32 has_mm; /* 0: a zombie, or a thread past exit_mm */
	__u32 pad;
	char comm[RES_COMM_LEN];
};

/* A thread's numbers as counted into procs at its exit. */
struct res_exit_snap {
	__u64 runtime_ns, utime_ns, stime_ns, run_delay_ns;
	__u64 tx_bytes, rx_bytes;
};

/* Value of task_acct: what is kept per thread, in the task itself. */
struct res_task_acct {
	__u64 tx_bytes; /* socket bytes */
	__u64 rx_bytes;
	/* Run-queue delay measured by our own sched tracepoints (run_delay_source). */
	__u64 queued_ns; /* when it became runnable; 0 while running or asleep */
	__u64 run_delay_ns;
	__u64 exited; /* 1: snap is in procs already; the free and the iterator add the rest */
	struct res_exit_snap snap;
};

/* Where run-queue delay comes from (config run_delay_source). */
enum res_delay_source {
	RES_DELAY_SCHEDSTAT = 0,   /* the scheduler's own account, task->sched_info.run_delay */
	RES_DELAY_TRACEPOINTS = 1, /* sched_wakeup(_new) -> sched_switch, stamped here */
};

/* A block request between block_io_start and block_io_done. */
struct res_inflight {
	__u64 start_ns;
	__u32 tgid;
	__u32 pad;
};

#endif
