/*
 * resources, kernel side: per-process counters from tracepoints, aggregated in
 * per-CPU hash maps keyed by tgid, plus a task iterator user space runs each
 * flush for the threads still alive. No ring buffer: nothing goes out per event.
 *
 *   sched_process_exit      a thread's CPU time, run-queue delay and socket bytes so far
 *                           into its tgid
 *   sched_process_free      what it used after its exit (the exit path's own CPU)
 *   sock_send/recv_length   socket bytes (TCP, UDP, Unix: every socket), in the calling
 *                           thread's task storage
 *   block_bio_queue         block I/O bytes, submitting task
 *   block_io_start/done     block request latency, for the task that started the request
 *   mark_victim             OOM kills
 *   iter/task               threads not reaped yet: CPU, run-queue delay, RSS
 *
 * Run-queue delay is, by default, the scheduler's own account (task->sched_info.run_delay:
 * stamped when a task becomes runnable, wake-up or preemption, and added at its
 * switch-in), the number /proc/PID/schedstat shows. Reading it at the end and from
 * the iterator measures exactly the wake-up-to-switch-in interval without a BPF
 * program on sched_switch/sched_wakeup, which would run on every context switch.
 * Kernels without CONFIG_SCHED_INFO get exactly those programs instead
 * (run_delay_source: tracepoints, chosen by auto when /proc/self/schedstat is missing).
 *
 * Nothing here runs per system call: the socket hooks fire once per socket
 * send/receive of the task doing it and cost other processes nothing.
 */
#include "ps_common.bpf.h"
#include "resources.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000
#define MSG_PEEK   2
/* include/linux/blk_types.h: the operation is the low 8 bits of bi_opf. */
#define REQ_OP_MASK  0xff
#define REQ_OP_READ  0
#define REQ_OP_WRITE 1

/* Set by user space before load: the latency histogram's upper bounds, ns, ascending. */
const volatile __u64 lat_bounds_ns[RES_LAT_BOUNDS] = {};
const volatile __u32 n_lat_bounds = 0;
const volatile __u64 page_size = 4096;
/* enum res_delay_source; with TRACEPOINTS user space also enables the sched programs. */
const volatile __u32 delay_source = RES_DELAY_SCHEDSTAT;

/*
 * max_entries from the plugin's max_processes. Not preallocated: the per-CPU
 * values of a process are only allocated once it did something we count.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, RES_DEFAULT_MAX_PROCESSES);
	__type(key, __u32);
	__type(value, struct res_counters);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, RES_DEFAULT_MAX_PROCESSES);
	__type(key, __u32);
	__type(value, struct res_disk_lat);
} disk_lat SEC(".maps");

/*
 * Socket bytes per thread, in the task itself: the socket hooks run on every
 * send and receive, and a task-storage access is cheaper than a hash lookup.
 * Folded into procs when the thread is freed, read by the iterator before.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct res_task_acct);
} task_acct SEC(".maps");

/* Block requests by address; LRU, so that a request never completed cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RES_MAX_INFLIGHT);
	__type(key, __u64);
	__type(value, struct res_inflight);
} inflight SEC(".maps");

/* Slot 0: counter updates lost: procs or disk_lat full, or no task storage to be had. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} full SEC(".maps");

static __always_inline void count_full(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&full, &zero);

	if (n)
		*n += 1;
}

static __always_inline void *lookup_or_init(void *map, __u32 tgid, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, &tgid);

	if (v)
		return v;
	/* EEXIST: another CPU created it meanwhile; the lookup below finds it. */
	bpf_map_update_elem(map, &tgid, zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, &tgid);
	if (!v)
		count_full();
	return v;
}

static __always_inline struct res_counters *counters_of(__u32 tgid)
{
	static const struct res_counters zero;

	return lookup_or_init(&procs, tgid, &zero);
}

static __always_inline bool current_is_kthread(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();

	return t->flags & PF_KTHREAD;
}

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

/* The thread's run-queue delay so far, from the configured source. */
static __always_inline __u64 run_delay_of(struct task_struct *t, struct res_task_acct *a)
{
	if (delay_source == RES_DELAY_TRACEPOINTS)
		return a ? a->run_delay_ns : 0;
	if (bpf_core_field_exists(t->sched_info))
		return BPF_CORE_READ(t, sched_info.run_delay);
	return 0;
}

/* A thread's numbers now: CPU, run-queue delay, socket bytes. */
static __always_inline void snap_of(struct task_struct *p, struct res_task_acct *a,
				    struct res_exit_snap *s)
{
	s->runtime_ns = p->se.sum_exec_runtime;
	s->utime_ns = p->utime;
	s->stime_ns = p->stime;
	s->run_delay_ns = run_delay_of(p, a);
	s->tx_bytes = a ? a->tx_bytes : 0;
	s->rx_bytes = a ? a->rx_bytes : 0;
}

static __always_inline __u64 minus(__u64 a, __u64 b)
{
	return a > b ? a - b : 0;
}

/* now minus what was counted at the thread's exit (a->snap when a->exited). */
static __always_inline void snap_rest(struct res_exit_snap *now, const struct res_task_acct *a)
{
	if (!a || !a->exited)
		return;
	now->runtime_ns = minus(now->runtime_ns, a->snap.runtime_ns);
	now->utime_ns = minus(now->utime_ns, a->snap.utime_ns);
	now->stime_ns = minus(now->stime_ns, a->snap.stime_ns);
	now->run_delay_ns = minus(now->run_delay_ns, a->snap.run_delay_ns);
	now->tx_bytes = minus(now->tx_bytes, a->snap.tx_bytes);
	now->rx_bytes = minus(now->rx_bytes, a->snap.rx_bytes);
}

static __always_inline void add_snap(struct res_counters *c, const struct res_exit_snap *s)
{
	c->exited_runtime_ns += s->runtime_ns;
	c->exited_utime_ns += s->utime_ns;
	c->exited_stime_ns += s->stime_ns;
	c->exited_run_delay_ns += s->run_delay_ns;
	c->net_tx_bytes += s->tx_bytes;
	c->net_rx_bytes += s->rx_bytes;
}

/*
 * A thread's numbers so far, as it exits (in its own context, before do_exit
 * tears down its mm and files). Kept in its task storage too, so that its
 * free adds only what came after, and the iterator (which still visits it
 * until it is reaped) reports only that. No storage to be had: nothing is
 * counted here, the free counts it all, as a thread that never exited.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(res_exit, struct task_struct *p)
{
	struct res_task_acct *a;
	struct res_counters *c;
	struct signal_struct *sig;

	if (p->flags & PF_KTHREAD)
		return 0;
	a = bpf_task_storage_get(&task_acct, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a || a->exited)
		return 0;
	c = counters_of(p->tgid);
	if (!c)
		return 0;
	snap_of(p, a, &a->snap);
	a->exited = 1;
	add_snap(c, &a->snap);
	/*
	 * signal->live went to 0 before this tracepoint for the group's last
	 * thread; the leader's comm names the process (a thread's may be its own).
	 */
	sig = p->signal;
	if (BPF_CORE_READ(sig, live.counter) == 0) {
		struct task_struct *leader = p->group_leader;

		c->group_exited = 1;
		bpf_probe_read_kernel_str(c->comm, sizeof(c->comm), leader->comm);
	}
	return 0;
}

/*
 * The rest of a thread's numbers, when its task_struct is freed (an RCU grace
 * period after it was reaped, when nothing holds it any more): the CPU the
 * exit path used after sched_process_exit, which times() and getrusage()
 * count (measured here: ~1.9 ms per short-lived python process, a 3.7%
 * shortfall without it). Until it is unhashed a thread is still visited by
 * the task iterator, and once it is not, it is counted here: once, by one or
 * the other.
 */
SEC("tp_btf/sched_process_free")
int BPF_PROG(res_free, struct task_struct *p)
{
	struct res_task_acct *a;
	struct res_counters *c;
	struct res_exit_snap rest;
	struct signal_struct *sig;

	if (p->flags & PF_KTHREAD)
		return 0;
	c = counters_of(p->tgid);
	if (!c)
		return 0;
	a = bpf_task_storage_get(&task_acct, p, 0, 0);
	snap_of(p, a, &rest);
	snap_rest(&rest, a);
	add_snap(c, &rest);
	/* The leader is reaped after every other thread: the process is over. */
	sig = p->signal;
	if (p == p->group_leader && BPF_CORE_READ(sig, live.counter) == 0) {
		c->group_dead = 1;
		bpf_probe_read_kernel_str(c->comm, sizeof(c->comm), p->comm);
	}
	return 0;
}

static __always_inline struct res_task_acct *current_net(void)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct res_task_acct *n;

	n = bpf_task_storage_get(&task_acct, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!n)
		count_full();
	return n;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(res_send, struct sock *sk, int ret, int flags)
{
	struct res_task_acct *n;

	if (ret <= 0)
		return 0;
	n = current_net();
	if (n)
		n->tx_bytes += ret;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(res_recv, struct sock *sk, int ret, int flags)
{
	struct res_task_acct *n;

	/* A peek leaves the bytes in the socket: the read that takes them counts them. */
	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	n = current_net();
	if (n)
		n->rx_bytes += ret;
	return 0;
}

/*
 * Bytes as the submitting task queues them. Page-cache writeback is submitted
 * by kernel flusher threads, which belong to no service and are skipped: a
 * buffered write is counted for its process only when it is synchronous in
 * its context (O_DIRECT, O_SYNC's own submissions, reads, readahead).
 */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(res_bio_queue, struct bio *bio)
{
	struct res_counters *c;
	__u32 size, op;

	if (current_is_kthread())
		return 0;
	size = bio->bi_iter.bi_size;
	op = bio->bi_opf & REQ_OP_MASK;
	if (!size || (op != REQ_OP_READ && op != REQ_OP_WRITE))
		return 0;
	c = counters_of(current_tgid());
	if (!c)
		return 0;
	if (op == REQ_OP_READ)
		c->disk_read_bytes += size;
	else
		c->disk_write_bytes += size;
	return 0;
}

/* blk_account_io_start: the request was just made from a bio, in the submitter's context. */
SEC("tp_btf/block_io_start")
int BPF_PROG(res_io_start, struct request *rq)
{
	struct res_inflight r = {};
	__u64 key = (__u64)rq;

	if (current_is_kthread())
		return 0;
	r.start_ns = bpf_ktime_get_ns();
	r.tgid = current_tgid();
	bpf_map_update_elem(&inflight, &key, &r, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_io_done")
int BPF_PROG(res_io_done, struct request *rq)
{
	static const struct res_disk_lat zero;
	__u64 key = (__u64)rq, lat;
	struct res_inflight *r;
	struct res_disk_lat *h;
	__u32 i, slot;

	r = bpf_map_lookup_elem(&inflight, &key);
	if (!r)
		return 0;
	lat = bpf_ktime_get_ns() - r->start_ns;
	h = lookup_or_init(&disk_lat, r->tgid, &zero);
	bpf_map_delete_elem(&inflight, &key);
	if (!h)
		return 0;
	slot = n_lat_bounds;
	for (i = 0; i < RES_LAT_BOUNDS; i++) {
		if (i < n_lat_bounds && lat <= lat_bounds_ns[i]) {
			slot = i;
			break;
		}
	}
	if (slot > RES_LAT_BOUNDS)
		return 0;
	h->count[slot] += 1;
	h->sum_ns[slot] += lat;
	return 0;
}

/*
 * Run-queue delay from tracepoints, for kernels without CONFIG_SCHED_INFO
 * (run_delay_source: tracepoints; not loaded otherwise): the same interval
 * the scheduler accounts, stamped when a task becomes runnable -- woken, new,
 * or preempted while still runnable -- and closed when it is switched in.
 * These run on every wake-up and context switch of the machine.
 */
static __always_inline void stamp_runnable(struct task_struct *p)
{
	struct res_task_acct *a;

	if (p->flags & PF_KTHREAD || !p->pid)
		return;
	a = bpf_task_storage_get(&task_acct, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (a)
		a->queued_ns = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(res_wakeup, struct task_struct *p)
{
	stamp_runnable(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(res_wakeup_new, struct task_struct *p)
{
	stamp_runnable(p);
	return 0;
}

/* Before 5.14 the field was `long state`. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

static __always_inline bool still_runnable(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state) == 0;
	return BPF_CORE_READ((struct task_struct___old *)t, state) == 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(res_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct res_task_acct *a;

	/* TASK_RUNNING (0) at switch-out: preempted, waiting for a CPU again. */
	if (still_runnable(prev))
		stamp_runnable(prev);
	if (next->flags & PF_KTHREAD || !next->pid)
		return 0;
	a = bpf_task_storage_get(&task_acct, next, 0, 0);
	if (a && a->queued_ns) {
		a->run_delay_ns += bpf_ktime_get_ns() - a->queued_ns;
		a->queued_ns = 0;
	}
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(res_oom, struct task_struct *task)
{
	struct res_counters *c = counters_of(task->tgid);

	if (c)
		c->oom_kills += 1;
	return 0;
}

/* Resident pages of an mm: file + anon + shmem, as VmRSS counts them. */
struct mm_rss_stat___old {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___old {
	struct mm_rss_stat___old rss_stat;
} __attribute__((preserve_access_index));

static __always_inline __s64 mm_rss_pages(struct mm_struct *mm)
{
	/* 6.2+: percpu counters, read as /proc does (the global count, not the per-CPU sums). */
	if (bpf_core_field_size(mm->rss_stat) != sizeof(struct mm_rss_stat___old)) {
		return BPF_CORE_READ(mm, rss_stat[MM_FILEPAGES].count) +
		       BPF_CORE_READ(mm, rss_stat[MM_ANONPAGES].count) +
		       BPF_CORE_READ(mm, rss_stat[MM_SHMEMPAGES].count);
	} else {
		struct mm_struct___old *old = (void *)mm;

		return BPF_CORE_READ(old, rss_stat.count[MM_FILEPAGES].counter) +
		       BPF_CORE_READ(old, rss_stat.count[MM_ANONPAGES].counter) +
		       BPF_CORE_READ(old, rss_stat.count[MM_SHMEMPAGES].counter);
	}
}

/*
 * One record per user thread not reaped yet, zombies included: their numbers
 * reach procs only when they are freed. Every thread with an mm reports its
 * RSS (the mm is shared: user space takes it once per process).
 */
SEC("iter/task")
int res_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	struct res_task r = {};
	struct res_exit_snap now;
	struct res_task_acct *net;
	struct mm_struct *mm;
	__s64 pages;

	if (!t || (t->flags & PF_KTHREAD))
		return 0;
	r.tgid = t->tgid;
	r.tid = t->pid;
	net = bpf_task_storage_get(&task_acct, t, 0, 0);
	/* An exited thread's numbers up to its exit are in procs already. */
	snap_of(t, net, &now);
	snap_rest(&now, net);
	r.runtime_ns = now.runtime_ns;
	r.utime_ns = now.utime_ns;
	r.stime_ns = now.stime_ns;
	r.run_delay_ns = now.run_delay_ns;
	r.net_tx_bytes = now.tx_bytes;
	r.net_rx_bytes = now.rx_bytes;
	mm = t->mm;
	if (mm) {
		pages = mm_rss_pages(mm);
		r.rss_bytes = pages > 0 ? (__u64)pages * page_size : 0;
		r.has_mm = 1;
	}
	__builtin_memcpy(r.comm, t->comm, sizeof(r.comm));
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}
