/*
 * resources: per-service CPU time, run-queue delay, resident memory, disk and
 * network I/O, block latency and OOM kills (see resources.bpf.c for the
 * kernel side).
 *
 * Each flush, in this order:
 *   1. the procs and disk_lat maps: per tgid, what freed threads used and
 *      what the tracepoints counted (summed over CPUs);
 *   2. the task iterator: the CPU and run-queue delay of every thread not
 *      reaped yet, and each process's RSS.
 * Reading the maps first means a thread that goes in between is in neither
 * (it shows up at the next flush), never in both.
 *
 * Per process, user space remembers what it already reported and adds only the
 * growth to the service's counters, so a process's numbers are counted once
 * whether it is seen alive, dead, or both. A process is retired (its map
 * entries deleted) once its leader was freed, or when it was missing from
 * the iterator for STALE_FLUSHES flushes (exited, its free late or lost: its
 * numbers up to its exit are in, and a free that comes after all starts a
 * new entry with the rest).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <periscope/plugin.h>

#include "resources.h"
#include "resources.skel.h"

#define SUBSYS	     "resources"
#define N_LAT_SLOTS  (RES_LAT_BOUNDS + 1)
#define ITER_BUFSIZE (64 * 1024)
/* Flushes a process whose leader was never seen freed stays before it is let go. */
#define STALE_FLUSHES 3

struct resources_config {
	uint64_t max_processes;
	char *run_delay_source;
};

/* What exited threads and the tracepoints left in the maps for one tgid. */
struct dead_rec {
	uint32_t tgid;
	struct res_counters c;
};

struct lat_rec {
	uint32_t tgid;
	struct res_disk_lat h;
};

/* The live threads of one tgid, summed. */
struct live_rec {
	uint32_t tgid;
	uint64_t runtime_ns, utime_ns, stime_ns, run_delay_ns, rss_bytes;
	uint64_t net_tx_bytes, net_rx_bytes;
	bool has_mm; /* not a zombie: counts as a live process */
	char comm[RES_COMM_LEN];
};

/* What was already reported for one tgid. */
struct proc {
	uint32_t tgid;
	uint8_t stale;	/* flushes in a row not in the iterator, its leader not freed */
	uint8_t unseen; /* flushes in a row in neither the maps nor the iterator */
	uint64_t user_ns, sys_ns, delay_ns;
	uint64_t net_tx, net_rx, disk_read, disk_write, oom_kills;
	uint64_t lat_count[N_LAT_SLOTS], lat_sum_ns[N_LAT_SLOTS];
	char comm[RES_COMM_LEN]; /* as last seen alive: a new one means an exec */
};

/* Per-service gauges, summed over the live processes of a flush. */
struct svc_gauge {
	char *service;
	uint64_t rss_bytes;
	uint64_t processes;
};

struct vec {
	void *v;
	size_t n, cap, size;
};

struct resources {
	struct resources_bpf *skel;
	struct bpf_link *iter;
	uint32_t max_processes;
	int ncpus;
	void *percpu_buf; /* one map value per possible CPU */
	char *iter_buf;
	struct vec dead, lat, live, procs, next_procs, gauges, prev_gauges;
	struct vec gone_procs, gone_lat; /* tgids to delete from procs, disk_lat */
	uint64_t full_reported;

	struct ps_metric *cpu, *delay, *memory, *disk, *disk_lat, *net, *oom, *processes;
};

/* ---- growable arrays --------------------------------------------------------------------- */

static void *vec_push(struct vec *v)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void *nv = realloc(v->v, cap * v->size);

		if (!nv)
			return NULL;
		v->v = nv;
		v->cap = cap;
	}
	return memset((char *)v->v + v->n++ * v->size, 0, v->size);
}

static void *vec_at(const struct vec *v, size_t i)
{
	return (char *)v->v + i * v->size;
}

static int cmp_tgid(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void vec_sort(struct vec *v)
{
	if (v->n > 1)
		qsort(v->v, v->n, v->size, cmp_tgid);
}

/* ---- reading the kernel side --------------------------------------------------------------- */

/* Sums the per-CPU u64 fields of a value made only of u64s (and a trailing copy-once tail). */
static void sum_u64s(uint64_t *out, const void *percpu, size_t n_u64, size_t value_size, int ncpus)
{
	for (int cpu = 0; cpu < ncpus; cpu++) {
		const uint64_t *v =
			(const uint64_t *)((const char *)percpu + (size_t)cpu * value_size);

		for (size_t i = 0; i < n_u64; i++)
			out[i] += v[i];
	}
}

static int read_procs(struct resources *st)
{
	int fd = bpf_map__fd(st->skel->maps.procs);
	const size_t vsz = sizeof(struct res_counters);
	const size_t n_u64 = offsetof(struct res_counters, group_dead) / sizeof(uint64_t);
	uint32_t key, next;
	void *prev = NULL;

	st->dead.n = 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct dead_rec *d;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, st->percpu_buf))
			continue; /* deleted meanwhile */
		d = vec_push(&st->dead);
		if (!d)
			return -ENOMEM;
		d->tgid = key;
		sum_u64s((uint64_t *)&d->c, st->percpu_buf, n_u64, vsz, st->ncpus);
		/* The exit fields are written on the CPU where the last thread exited or was freed. */
		for (int cpu = 0; cpu < st->ncpus; cpu++) {
			const struct res_counters *c =
				(const void *)((char *)st->percpu_buf + (size_t)cpu * vsz);

			if (c->group_dead)
				d->c.group_dead = 1;
			if (c->group_exited)
				d->c.group_exited = 1;
			if (c->comm[0])
				memcpy(d->c.comm, c->comm, RES_COMM_LEN);
		}
		d->c.comm[RES_COMM_LEN - 1] = 0;
	}
	vec_sort(&st->dead);
	return 0;
}

static int read_lat(struct resources *st)
{
	int fd = bpf_map__fd(st->skel->maps.disk_lat);
	const size_t vsz = sizeof(struct res_disk_lat);
	uint32_t key, next;
	void *prev = NULL;

	st->lat.n = 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct lat_rec *l;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, st->percpu_buf))
			continue;
		l = vec_push(&st->lat);
		if (!l)
			return -ENOMEM;
		l->tgid = key;
		sum_u64s((uint64_t *)&l->h, st->percpu_buf, vsz / sizeof(uint64_t), vsz, st->ncpus);
	}
	vec_sort(&st->lat);
	return 0;
}

static int add_task(struct resources *st, const struct res_task *t)
{
	struct live_rec *l = vec_push(&st->live);

	if (!l)
		return -ENOMEM;
	l->tgid = t->tgid;
	l->runtime_ns = t->runtime_ns;
	l->utime_ns = t->utime_ns;
	l->stime_ns = t->stime_ns;
	l->run_delay_ns = t->run_delay_ns;
	l->rss_bytes = t->rss_bytes;
	l->net_tx_bytes = t->net_tx_bytes;
	l->net_rx_bytes = t->net_rx_bytes;
	l->has_mm = t->has_mm;
	if (t->tid == t->tgid)
		memcpy(l->comm, t->comm, RES_COMM_LEN);
	l->comm[RES_COMM_LEN - 1] = 0;
	return 0;
}

/* Threads, sorted and folded into one record per tgid (the leader's comm names it). */
static void fold_live(struct resources *st)
{
	struct live_rec *v = st->live.v;
	size_t out = 0;

	vec_sort(&st->live);
	for (size_t i = 0; i < st->live.n; i++) {
		if (out && v[out - 1].tgid == v[i].tgid) {
			struct live_rec *o = &v[out - 1];

			o->runtime_ns += v[i].runtime_ns;
			o->utime_ns += v[i].utime_ns;
			o->stime_ns += v[i].stime_ns;
			o->run_delay_ns += v[i].run_delay_ns;
			o->net_tx_bytes += v[i].net_tx_bytes;
			o->net_rx_bytes += v[i].net_rx_bytes;
			/* One mm per process: every thread reports the same RSS. */
			if (v[i].rss_bytes > o->rss_bytes)
				o->rss_bytes = v[i].rss_bytes;
			o->has_mm |= v[i].has_mm;
			if (v[i].comm[0])
				memcpy(o->comm, v[i].comm, RES_COMM_LEN);
			continue;
		}
		v[out++] = v[i];
	}
	st->live.n = out;
}

static int read_tasks(struct resources *st)
{
	size_t have = 0;
	ssize_t n;
	int fd, err = 0;

	st->live.n = 0;
	fd = bpf_iter_create(bpf_link__fd(st->iter));
	if (fd < 0)
		return -errno;
	for (;;) {
		size_t off = 0;

		n = read(fd, st->iter_buf + have, ITER_BUFSIZE - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		for (; have - off >= sizeof(struct res_task); off += sizeof(struct res_task)) {
			struct res_task t;

			memcpy(&t, st->iter_buf + off, sizeof(t));
			err = add_task(st, &t);
			if (err)
				goto out;
		}
		memmove(st->iter_buf, st->iter_buf + off, have - off);
		have -= off;
	}
out:
	close(fd);
	fold_live(st);
	return err;
}

/* ---- folding into services ----------------------------------------------------------------- */

static uint64_t scale(uint64_t a, uint64_t b, uint64_t c)
{
	return c ? (uint64_t)((unsigned __int128)a * b / c) : 0;
}

/*
 * Splits a process's exact CPU time (sum_exec_runtime) into user and system in
 * the ratio of its tick-sampled utime/stime, never letting either go back: what
 * the kernel's cputime_adjust does for times() and getrusage().
 */
static void cpu_split(uint64_t rt, uint64_t ut, uint64_t stt, uint64_t prev_u, uint64_t prev_s,
		      uint64_t *user, uint64_t *sys)
{
	uint64_t s;

	if (rt <= prev_u + prev_s) {
		*user = prev_u;
		*sys = prev_s;
		return;
	}
	if (!stt)
		s = 0;
	else if (!ut)
		s = rt;
	else
		s = scale(stt, rt, ut + stt);
	if (s < prev_s)
		s = prev_s;
	if (rt - s < prev_u)
		s = rt - prev_u;
	*sys = s;
	*user = rt - s;
}

/*
 * Only growth past what was reported counts. A process's total dips for a
 * moment when one of its threads is between reaped and freed (in neither the
 * iterator nor the maps); remembering the dip would count that thread twice.
 */
static void counter_add(struct ps_metric *m, const char *const *labels, uint64_t now,
			uint64_t *prev, double unit)
{
	if (now <= *prev)
		return;
	ps_metric_add(m, labels, (double)(now - *prev) * unit);
	*prev = now;
}

/*
 * Each new latency is replayed into its bucket at the mean of the bucket's new
 * latencies: the bucket counts and the histogram's sum stay exact.
 */
static void lat_add(struct resources *st, const char *service, const struct res_disk_lat *h,
		    struct proc *p)
{
	const char *labels[] = { service, NULL };
	struct ps_series *s = NULL;

	for (int b = 0; b < N_LAT_SLOTS; b++) {
		uint64_t k, sum;
		double v;

		if (h->count[b] <= p->lat_count[b])
			continue;
		k = h->count[b] - p->lat_count[b];
		sum = h->sum_ns[b] - p->lat_sum_ns[b];
		v = (double)sum / (double)k / 1e9;
		if (!s)
			s = ps_metric_series(st->disk_lat, labels);
		for (uint64_t i = 0; i < k; i++) {
			if (s)
				ps_series_observe(st->disk_lat, s, v);
			else
				ps_metric_observe(st->disk_lat, labels, v);
		}
		p->lat_count[b] = h->count[b];
		p->lat_sum_ns[b] = h->sum_ns[b];
	}
}

static struct svc_gauge *gauge_of(struct resources *st, const char *service)
{
	struct svc_gauge *g;

	for (size_t i = 0; i < st->gauges.n; i++) {
		g = vec_at(&st->gauges, i);
		if (!strcmp(g->service, service))
			return g;
	}
	g = vec_push(&st->gauges);
	if (!g)
		return NULL;
	g->service = strdup(service);
	if (!g->service) {
		st->gauges.n--;
		return NULL;
	}
	return g;
}

static void account(struct resources *st, struct proc *p, const struct dead_rec *d,
		    const struct lat_rec *l, const struct live_rec *v)
{
	static const struct res_counters none;
	const struct res_counters *c = d ? &d->c : &none;
	const char *comm = v ? v->comm : (c->comm[0] ? c->comm : NULL);
	const char *service;
	uint64_t user, sys;

	/*
	 * A live process is named once its comm held still from one flush to the
	 * next (or at its end): the core caches a process's service until it
	 * exits, and a fork caught between fork() and exec() would keep its
	 * parent's name for life. Its numbers are cumulative: waiting a flush
	 * loses nothing.
	 */
	if (v && v->comm[0]) {
		bool settled = strcmp(p->comm, v->comm) == 0;

		memcpy(p->comm, v->comm, RES_COMM_LEN);
		if (!settled)
			return;
	}
	service = ps_proc_service_name(p->tgid, comm);
	{
		const char *user_l[] = { service, "user", NULL };
		const char *sys_l[] = { service, "system", NULL };
		const char *svc_l[] = { service, NULL };
		const char *read_l[] = { service, "read", NULL };
		const char *write_l[] = { service, "write", NULL };
		const char *tx_l[] = { service, "transmit", NULL };
		const char *rx_l[] = { service, "receive", NULL };
		uint64_t rt = c->exited_runtime_ns, ut = c->exited_utime_ns,
			 stt = c->exited_stime_ns, delay = c->exited_run_delay_ns;
		uint64_t tx = c->net_tx_bytes, rx = c->net_rx_bytes;

		if (v) {
			rt += v->runtime_ns;
			ut += v->utime_ns;
			stt += v->stime_ns;
			delay += v->run_delay_ns;
			tx += v->net_tx_bytes;
			rx += v->net_rx_bytes;
		}
		cpu_split(rt, ut, stt, p->user_ns, p->sys_ns, &user, &sys);
		counter_add(st->cpu, user_l, user, &p->user_ns, 1e-9);
		counter_add(st->cpu, sys_l, sys, &p->sys_ns, 1e-9);
		counter_add(st->delay, svc_l, delay, &p->delay_ns, 1e-9);
		counter_add(st->disk, read_l, c->disk_read_bytes, &p->disk_read, 1);
		counter_add(st->disk, write_l, c->disk_write_bytes, &p->disk_write, 1);
		counter_add(st->net, tx_l, tx, &p->net_tx, 1);
		counter_add(st->net, rx_l, rx, &p->net_rx, 1);
		counter_add(st->oom, svc_l, c->oom_kills, &p->oom_kills, 1);
	}
	if (l)
		lat_add(st, service, &l->h, p);
	if (v && v->has_mm) {
		struct svc_gauge *g = gauge_of(st, service);

		if (g) {
			g->rss_bytes += v->rss_bytes;
			g->processes++;
		}
	}
}

/* Deletes keys[0..n) from map fd: in batches, one by one past a failure. */
static void delete_keys(int fd, const uint32_t *keys, size_t n)
{
	while (n > 0) {
		__u32 count = n > UINT32_MAX ? UINT32_MAX : (__u32)n;

		if (bpf_map_delete_batch(fd, keys, &count, NULL) == 0) {
			keys += count;
			n -= count;
			continue;
		}
		/* count: how many went before the failure; skip the one that failed */
		if (count > n)
			count = (__u32)n;
		bpf_map_delete_elem(fd, &keys[count]);
		keys += count + 1;
		n -= count + 1;
	}
}

static void retire(struct resources *st, uint32_t tgid, bool in_procs, bool in_lat)
{
	uint32_t *k;

	if (in_procs && (k = vec_push(&st->gone_procs)))
		*k = tgid;
	else if (in_procs)
		bpf_map_delete_elem(bpf_map__fd(st->skel->maps.procs), &tgid);
	if (in_lat && (k = vec_push(&st->gone_lat)))
		*k = tgid;
	else if (in_lat)
		bpf_map_delete_elem(bpf_map__fd(st->skel->maps.disk_lat), &tgid);
	ps_proc_forget(tgid);
}

/* The smallest tgid any of the cursors points at. */
static uint32_t next_tgid(struct resources *st, const size_t pos[4])
{
	const struct vec *vs[4] = { &st->dead, &st->lat, &st->live, &st->procs };
	uint32_t min = UINT32_MAX;

	for (int i = 0; i < 4; i++)
		if (pos[i] < vs[i]->n) {
			uint32_t t = *(const uint32_t *)vec_at(vs[i], pos[i]);

			if (t < min)
				min = t;
		}
	return min;
}

static void *take(const struct vec *v, size_t *pos, uint32_t tgid)
{
	void *e;

	if (*pos >= v->n)
		return NULL;
	e = vec_at(v, *pos);
	if (*(const uint32_t *)e != tgid)
		return NULL;
	(*pos)++;
	return e;
}

static void publish_gauges(struct resources *st)
{
	struct vec tmp;

	for (size_t i = 0; i < st->gauges.n; i++) {
		const struct svc_gauge *g = vec_at(&st->gauges, i);
		const char *labels[] = { g->service, NULL };

		ps_metric_set(st->memory, labels, (double)g->rss_bytes);
		ps_metric_set(st->processes, labels, (double)g->processes);
	}
	/* Services with no live process left: their gauges go. */
	for (size_t i = 0; i < st->prev_gauges.n; i++) {
		struct svc_gauge *old = vec_at(&st->prev_gauges, i);
		bool still = false;

		for (size_t j = 0; j < st->gauges.n && !still; j++)
			still = !strcmp(((struct svc_gauge *)vec_at(&st->gauges, j))->service,
					old->service);
		if (!still) {
			const char *labels[] = { old->service, NULL };

			ps_metric_remove(st->memory, labels);
			ps_metric_remove(st->processes, labels);
		}
		free(old->service);
	}
	tmp = st->prev_gauges;
	st->prev_gauges = st->gauges;
	st->gauges = tmp;
	st->gauges.n = 0;
}

static int fold(struct resources *st)
{
	size_t pos[4] = { 0, 0, 0, 0 };
	uint32_t tgid;
	struct vec tmp;

	st->next_procs.n = 0;
	st->gone_procs.n = st->gone_lat.n = 0;
	while ((tgid = next_tgid(st, pos)) != UINT32_MAX) {
		const struct dead_rec *d = take(&st->dead, &pos[0], tgid);
		const struct lat_rec *l = take(&st->lat, &pos[1], tgid);
		const struct live_rec *v = take(&st->live, &pos[2], tgid);
		const struct proc *old = take(&st->procs, &pos[3], tgid);
		struct proc *p;

		/*
		 * In neither: reaped but not freed yet (an RCU grace period). What
		 * was reported must be remembered, or the numbers that land in procs
		 * at its free would count again; a process that never shows up
		 * again (its map entry lost) is let go after a few flushes.
		 */
		if (!d && !l && !v) {
			if (!old || old->unseen >= STALE_FLUSHES) {
				if (old)
					ps_proc_forget(tgid);
				continue;
			}
			p = vec_push(&st->next_procs);
			if (!p)
				return -ENOMEM;
			*p = *old;
			p->unseen++;
			continue;
		}
		p = vec_push(&st->next_procs);
		if (!p)
			return -ENOMEM;
		if (old)
			*p = *old;
		p->tgid = tgid;
		p->unseen = 0;
		account(st, p, d, l, v);
		if (v) {
			p->stale = 0;
		} else if ((d && d->c.group_dead) || p->stale >= STALE_FLUSHES) {
			retire(st, tgid, d != NULL, l != NULL);
			st->next_procs.n--;
		} else {
			/*
			 * Reaped, not freed yet (its numbers are on their way to procs),
			 * or a late completion. Deleting its entry now would lose what
			 * its free adds between our read and the delete: wait.
			 */
			p->stale++;
		}
	}
	/* One system call per map: per-process deletes cost more than the rest of a flush. */
	delete_keys(bpf_map__fd(st->skel->maps.procs), st->gone_procs.v, st->gone_procs.n);
	delete_keys(bpf_map__fd(st->skel->maps.disk_lat), st->gone_lat.v, st->gone_lat.n);
	tmp = st->procs;
	st->procs = st->next_procs;
	st->next_procs = tmp;
	publish_gauges(st);
	return 0;
}

static void check_full(struct resources *st)
{
	uint64_t n = 0;

	if (ps_bpf_percpu_sum(bpf_map__fd(st->skel->maps.full), 0, &n) || n <= st->full_reported)
		return;
	ps_warn(SUBSYS,
		"%" PRIu64 " counter updates lost: more than max_processes (%u) processes at "
		"once, or no room for a thread's task storage",
		n - st->full_reported, st->max_processes);
	st->full_reported = n;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int resources_collect(struct ps_plugin *p)
{
	struct resources *st = ps_plugin_data(p);
	uint64_t t0 = mono_ns(), t1, t2;
	int err;

	/* The maps before the live threads: see the top of this file. */
	err = read_procs(st);
	if (!err)
		err = read_lat(st);
	if (!err)
		err = read_tasks(st);
	if (err) {
		ps_error(SUBSYS, "cannot read the kernel side: %s", strerror(-err));
		return err;
	}
	check_full(st);
	t1 = mono_ns();
	err = fold(st);
	t2 = mono_ns();
	ps_debug(SUBSYS, "%zu processes (%zu gone) read in %.2f ms, folded in %.2f ms", st->live.n,
		 st->dead.n, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
	return err;
}

/* ---- life cycle -------------------------------------------------------------------------- */

/*
 * Block requests take from tens of microseconds (NVMe, page cache misses on
 * virtio) to seconds (a saturated disk): OTel's default duration buckets start
 * at 5 ms, too coarse for the fast end. Sixteen bounds, as the kernel side keeps.
 */
static const double disk_lat_buckets[RES_LAT_BOUNDS] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025,	 0.05,	 0.1,	  0.25,	  0.5,	 1,	 2.5,	5,
};

static struct ps_metric *register_one(const char *name, const char *help, enum ps_metric_type type,
				      const char *const *labels)
{
	struct ps_metric_desc d = {
		.name = name,
		.help = help,
		.type = type,
		.labels = labels,
	};

	if (type == PS_METRIC_HISTOGRAM) {
		d.buckets = disk_lat_buckets;
		d.n_buckets = RES_LAT_BOUNDS;
	}
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int register_metrics(struct resources *st)
{
	static const char *const svc[] = { "service_name", NULL };
	static const char *const cpu[] = { "service_name", "cpu_mode", NULL };
	static const char *const disk[] = { "service_name", "disk_io_direction", NULL };
	static const char *const net[] = { "service_name", "network_io_direction", NULL };

	st->cpu = register_one("process_cpu_time_seconds_total",
			       "CPU time of the service's processes, exact, split as the kernel "
			       "splits user and system time",
			       PS_METRIC_COUNTER, cpu);
	st->delay = register_one("periscope_process_cpu_delay_seconds_total",
				 "Time the service's threads were runnable but waiting for a CPU",
				 PS_METRIC_COUNTER, svc);
	st->memory = register_one("process_memory_usage_bytes",
				  "Resident memory of the service's processes (VmRSS, summed)",
				  PS_METRIC_GAUGE, svc);
	st->disk = register_one("process_disk_io_bytes_total",
				"Block I/O the service's processes submitted (page-cache writeback "
				"by kernel threads excluded)",
				PS_METRIC_COUNTER, disk);
	st->disk_lat = register_one("periscope_process_disk_io_duration_seconds",
				    "Latency of block requests the service's processes started",
				    PS_METRIC_HISTOGRAM, svc);
	st->net = register_one("process_network_io_bytes_total",
			       "Bytes the service's processes sent and received on any socket "
			       "(TCP, UDP, Unix)",
			       PS_METRIC_COUNTER, net);
	st->oom = register_one("periscope_process_oom_kills_total",
			       "Processes of the service killed by the OOM killer",
			       PS_METRIC_COUNTER, svc);
	st->processes = register_one("periscope_processes", "Live processes of the service",
				     PS_METRIC_GAUGE, svc);
	if (!st->cpu || !st->delay || !st->memory || !st->disk || !st->disk_lat || !st->net ||
	    !st->oom || !st->processes)
		return -EINVAL;
	return 0;
}

static void resources_free(struct resources *st)
{
	if (!st)
		return;
	bpf_link__destroy(st->iter);
	resources_bpf__destroy(st->skel);
	for (size_t i = 0; i < st->prev_gauges.n; i++)
		free(((struct svc_gauge *)vec_at(&st->prev_gauges, i))->service);
	free(st->dead.v);
	free(st->lat.v);
	free(st->live.v);
	free(st->procs.v);
	free(st->next_procs.v);
	free(st->gauges.v);
	free(st->prev_gauges.v);
	free(st->gone_procs.v);
	free(st->gone_lat.v);
	free(st->percpu_buf);
	free(st->iter_buf);
	free(st);
}

/*
 * schedstat unless the kernel keeps no sched_info (no /proc/self/schedstat):
 * then our own programs on every wake-up and context switch.
 */
static enum res_delay_source pick_delay_source(const char *conf)
{
	if (conf && strcmp(conf, "schedstat") == 0)
		return RES_DELAY_SCHEDSTAT;
	if (conf && strcmp(conf, "tracepoints") == 0)
		return RES_DELAY_TRACEPOINTS;
	return access("/proc/self/schedstat", R_OK) == 0 ? RES_DELAY_SCHEDSTAT :
							   RES_DELAY_TRACEPOINTS;
}

static void set_delay_source(struct resources *st, enum res_delay_source src)
{
	bool tp = src == RES_DELAY_TRACEPOINTS;

	st->skel->rodata->delay_source = src;
	bpf_program__set_autoload(st->skel->progs.res_wakeup, tp);
	bpf_program__set_autoload(st->skel->progs.res_wakeup_new, tp);
	bpf_program__set_autoload(st->skel->progs.res_switch, tp);
	ps_info(SUBSYS, "run-queue delay from %s",
		tp ? "sched_wakeup/sched_switch tracepoints" : "the scheduler's schedstat");
}

/* The kernel side counts into the histogram's own buckets, bounds in ns. */
static void set_lat_bounds(struct resources *st)
{
	for (size_t i = 0; i < RES_LAT_BOUNDS; i++)
		st->skel->rodata->lat_bounds_ns[i] = (uint64_t)(disk_lat_buckets[i] * 1e9 + 0.5);
	st->skel->rodata->n_lat_bounds = RES_LAT_BOUNDS;
}

static int resources_init(struct ps_plugin *p, const void *config)
{
	const struct resources_config *cfg = config;
	uint64_t max = cfg ? cfg->max_processes : RES_DEFAULT_MAX_PROCESSES;
	struct resources *st;
	size_t vsz;
	long page;
	int err;

	if (max < 64 || max > (1u << 22)) {
		ps_error(SUBSYS, "max_processes must be between 64 and %u, not %" PRIu64, 1u << 22,
			 max);
		return -EINVAL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->max_processes = (uint32_t)max;
	st->dead.size = sizeof(struct dead_rec);
	st->lat.size = sizeof(struct lat_rec);
	st->live.size = sizeof(struct live_rec);
	st->procs.size = st->next_procs.size = sizeof(struct proc);
	st->gauges.size = st->prev_gauges.size = sizeof(struct svc_gauge);
	st->gone_procs.size = st->gone_lat.size = sizeof(uint32_t);
	st->ncpus = libbpf_num_possible_cpus();
	if (st->ncpus <= 0) {
		err = st->ncpus ? st->ncpus : -EINVAL;
		ps_error(SUBSYS, "cannot count the possible CPUs: %s", strerror(-err));
		goto fail;
	}
	vsz = sizeof(struct res_counters) > sizeof(struct res_disk_lat) ?
		      sizeof(struct res_counters) :
		      sizeof(struct res_disk_lat);
	st->percpu_buf = calloc((size_t)st->ncpus, vsz);
	st->iter_buf = malloc(ITER_BUFSIZE);
	if (!st->percpu_buf || !st->iter_buf) {
		err = -ENOMEM;
		goto fail;
	}

	st->skel = resources_bpf__open();
	if (!st->skel) {
		err = -errno;
		ps_error(SUBSYS, "open failed: %s", strerror(-err));
		goto fail;
	}
	page = sysconf(_SC_PAGESIZE);
	st->skel->rodata->page_size = page > 0 ? (uint64_t)page : 4096;
	/* Attached by start with its own link, read by collect through bpf_iter_create. */
	bpf_program__set_autoattach(st->skel->progs.res_tasks, false);
	set_lat_bounds(st);
	set_delay_source(st, pick_delay_source(cfg ? cfg->run_delay_source : NULL));
	if (bpf_map__set_max_entries(st->skel->maps.procs, st->max_processes) ||
	    bpf_map__set_max_entries(st->skel->maps.disk_lat, st->max_processes)) {
		err = -EINVAL;
		ps_error(SUBSYS, "cannot size the maps");
		goto fail;
	}
	err = resources_bpf__load(st->skel);
	if (err) {
		ps_error(SUBSYS, "load failed: %s", strerror(-err));
		goto fail;
	}
	ps_plugin_set_data(p, st);
	return 0;

fail:
	resources_free(st);
	return err;
}

static int resources_start(struct ps_plugin *p)
{
	struct resources *st = ps_plugin_data(p);
	int err;

	err = register_metrics(st);
	if (err)
		return err;
	err = resources_bpf__attach(st->skel);
	if (err) {
		ps_error(SUBSYS, "attach failed: %s", strerror(-err));
		return err;
	}
	st->iter = bpf_program__attach_iter(st->skel->progs.res_tasks, NULL);
	if (!st->iter) {
		err = -errno;
		ps_error(SUBSYS, "cannot create the task iterator: %s", strerror(-err));
		return err;
	}
	return 0;
}

static void resources_stop(struct ps_plugin *p)
{
	struct resources *st = ps_plugin_data(p);

	if (st && st->skel)
		resources_bpf__detach(st->skel);
}

static void resources_destroy(struct ps_plugin *p)
{
	resources_free(ps_plugin_data(p));
	ps_plugin_set_data(p, NULL);
}

static const char *const delay_sources[] = { "auto", "schedstat", "tracepoints", NULL };

static const struct ps_cfg_key resources_config_map[] = {
	{
		.name = "max_processes",
		.type = PS_CFG_UINT,
		.def = "32768",
		.offset = offsetof(struct resources_config, max_processes),
		.help = "processes tracked at once in the kernel; updates beyond are counted and "
			"logged",
	},
	{
		.name = "run_delay_source",
		.type = PS_CFG_STRING,
		.def = "auto",
		.offset = offsetof(struct resources_config, run_delay_source),
		.choices = delay_sources,
		.help = "schedstat: the scheduler's own account (nothing per context switch); "
			"tracepoints: sched_wakeup/sched_switch programs; auto: schedstat if the "
			"kernel keeps it",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "resources", .version = PACKAGE_VERSION,
		 .description = "Per-service CPU, run-queue delay, memory, disk and network I/O, "
				"OOM kills",
		 .config_map = resources_config_map, .config_size = sizeof(struct resources_config),
		 .init = resources_init, .start = resources_start, .collect = resources_collect,
		 .stop = resources_stop, .destroy = resources_destroy, );
