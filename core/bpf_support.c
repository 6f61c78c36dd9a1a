/*
 * Core BPF services: the kernel interfaces every plugin needs (tracefs,
 * cgroup v2), libbpf's log, and ring buffers drained on the loop.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <periscope/metrics.h>
#include <periscope/plugin.h>

#include "bpf_support.h"
#include "logging.h"

#define TRACEFS "/sys/kernel/tracing"
#define DEBUGFS_TRACING "/sys/kernel/debug/tracing"
#define MAX_DROP_MAPS 4

/* A sample callback registered by an owner, wrapped so the core can count. */
struct ringbuf_sub {
	struct bpf_owner *owner;
	ps_ringbuf_fn fn;
	void *ctx;
	struct ringbuf_sub *next;
};

/* What one owner (a plugin, or a core service such as the capture) drains. */
struct bpf_owner {
	const void *key;	     /* the plugin, or the service's own state */
	char name[64];		     /* the plugin label of the events metrics */
	struct ring_buffer *rb;
	uv_poll_t *poll;             /* on the ring buffer's epoll fd: watermark wake-ups */
	struct ringbuf_sub *subs;
	int drop_fds[MAX_DROP_MAPS];
	uint64_t drops_reported[MAX_DROP_MAPS];
	size_t n_drop_fds;
	uint64_t events_pending;     /* samples since the metric was last updated */
	uint64_t errors_pending;     /* samples the owner's callback rejected */
	struct bpf_owner *next;
};

static struct {
	uv_loop_t *loop;
	uv_timer_t drain_timer;
	bool timer_started;
	struct bpf_owner *owners;
	char cgroup2[256];
	struct ps_metric *events_total, *dropped_total, *decode_errors_total;
} bpf;

/*
 * libbpf hands over a whole verifier log as one message: one log line per
 * line of it, and of a long one only the end, where the verifier says why.
 */
#define LIBBPF_LOG_TAIL 40

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum ps_log_level ours = level == LIBBPF_WARN ? PS_LOG_WARN : PS_LOG_DEBUG;
	char *msg, *line, *next;
	size_t lines = 0, skip;

	if (!ps_log_enabled(ours) || vasprintf(&msg, fmt, ap) < 0)
		return 0;
	for (line = msg; *line; line++)
		lines += *line == '\n';
	skip = lines > LIBBPF_LOG_TAIL ? lines - LIBBPF_LOG_TAIL : 0;
	if (skip)
		ps_log(ours, "libbpf", "(%zu lines of a long message left out)", skip);
	for (line = msg; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (skip) {
			skip--;
			continue;
		}
		ps_log(ours, "libbpf", "%s", line);
	}
	free(msg);
	return 0;
}

static bool tracefs_ready(const char *dir)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/events", dir);
	return access(path, F_OK) == 0;
}

/* libbpf finds tracepoint ids under tracefs; it is not mounted at boot everywhere. */
static int ensure_tracefs(void)
{
	if (tracefs_ready(TRACEFS) || tracefs_ready(DEBUGFS_TRACING))
		return 0;
	if (mount("tracefs", TRACEFS, "tracefs", 0, NULL) == 0) {
		ps_info("bpf", "mounted tracefs at %s", TRACEFS);
		return 0;
	}
	ps_error("bpf", "tracefs is not mounted and mounting it at %s failed: %s "
		 "(run as root, or mount it: mount -t tracefs tracefs %s)",
		 TRACEFS, strerror(errno), TRACEFS);
	return -errno;
}

/* mountinfo escapes blanks and backslashes as \ooo. */
static void unescape_octal(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

int ps_bpf_find_cgroup2(const char *mountinfo_path, char *out, size_t len)
{
	FILE *f = fopen(mountinfo_path, "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		/* "id parent maj:min root mountpoint opts [optional...] - fstype source superopts" */
		char *sep = strstr(line, " - "), *fields[5], *save = NULL, *tok;
		int n = 0;

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		*sep = '\0';
		for (tok = strtok_r(line, " ", &save); tok && n < 5; tok = strtok_r(NULL, " ", &save))
			fields[n++] = tok;
		if (n < 5)
			continue;
		unescape_octal(fields[4]);
		if (strlen(fields[4]) >= len) {
			rc = -ENAMETOOLONG;
			continue;
		}
		strcpy(out, fields[4]);
		rc = 0;
		break;
	}
	free(line);
	fclose(f);
	return rc;
}

const char *ps_bpf_cgroup2_path(void)
{
	return bpf.cgroup2[0] ? bpf.cgroup2 : NULL;
}

uint32_t ps_bpf_self_tgid(void)
{
	return (uint32_t)getpid();
}

static const char *const plugin_labels[] = { "service_name", "plugin", NULL };
static const char *const dropped_labels[] = { "service_name", "plugin", "reason", NULL };

static void register_metrics(void)
{
	bpf.events_total = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_events_total",
		.help = "Events read from the plugin's ring buffers",
		.type = PS_METRIC_COUNTER,
		.labels = plugin_labels,
	});
	bpf.dropped_total = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_events_dropped_total",
		.help = "Events lost before user space saw them",
		.type = PS_METRIC_COUNTER,
		.labels = dropped_labels,
	});
	bpf.decode_errors_total = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_decode_errors_total",
		.help = "Events the plugin could not decode",
		.type = PS_METRIC_COUNTER,
		.labels = plugin_labels,
	});
}

static void consume(struct bpf_owner *pb)
{
	const char *values[] = { "periscoped", pb->name };
	int n;

	if (!pb->rb)
		return;
	n = ring_buffer__consume(pb->rb);
	if (n < 0)
		ps_warn("bpf", "%s: draining the ring buffer failed: %s", pb->name, strerror(-n));
	if (pb->events_pending) {
		ps_metric_add(bpf.events_total, values, (double)pb->events_pending);
		pb->events_pending = 0;
	}
	if (pb->errors_pending) {
		ps_metric_add(bpf.decode_errors_total, values, (double)pb->errors_pending);
		pb->errors_pending = 0;
	}
}

void ps_bpf_drain(void)
{
	for (struct bpf_owner *pb = bpf.owners; pb; pb = pb->next)
		consume(pb);
}

static void on_drain_timer(uv_timer_t *t)
{
	ps_bpf_drain();
}

static void on_ringbuf_readable(uv_poll_t *h, int status, int events)
{
	if (status == 0)
		consume(h->data);
}

int ps_bpf_setup(uv_loop_t *loop, uint64_t drain_interval_ms)
{
	int rc;

	libbpf_set_print(libbpf_log);
	bpf.loop = loop;
	register_metrics();
	rc = ensure_tracefs();
	if (rc)
		return rc;
	if (ps_bpf_find_cgroup2("/proc/self/mountinfo", bpf.cgroup2, sizeof(bpf.cgroup2)))
		ps_warn("bpf", "no cgroup v2 mount found in /proc/self/mountinfo: "
			"plugins that need sock_ops will not start");
	else
		ps_debug("bpf", "cgroup v2 at %s", bpf.cgroup2);
	if (!loop)
		return 0;
	uv_timer_init(loop, &bpf.drain_timer);
	bpf.timer_started = true;
	return uv_timer_start(&bpf.drain_timer, on_drain_timer, drain_interval_ms, drain_interval_ms);
}

void ps_bpf_set_drain_interval(uint64_t drain_interval_ms)
{
	if (bpf.timer_started)
		uv_timer_start(&bpf.drain_timer, on_drain_timer, drain_interval_ms, drain_interval_ms);
}

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

void ps_bpf_teardown(void)
{
	if (bpf.timer_started) {
		uv_timer_stop(&bpf.drain_timer);
		uv_close((uv_handle_t *)&bpf.drain_timer, NULL);
		bpf.timer_started = false;
	}
}

static struct bpf_owner *owner_find(const void *key)
{
	for (struct bpf_owner *o = bpf.owners; o; o = o->next)
		if (o->key == key)
			return o;
	return NULL;
}

static struct bpf_owner *owner_get(const void *key, const char *name)
{
	struct bpf_owner *o = owner_find(key);

	if (o)
		return o;
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->key = key;
	snprintf(o->name, sizeof(o->name), "%s", name);
	o->next = bpf.owners;
	bpf.owners = o;
	return o;
}

/* Counts every sample, and keeps one bad sample from stalling the ring. */
static int sample_trampoline(void *ctx, void *data, size_t size)
{
	struct ringbuf_sub *sub = ctx;

	sub->owner->events_pending++;
	if (sub->fn(sub->ctx, data, size) < 0)
		sub->owner->errors_pending++;
	return 0;
}

static int start_poll(struct bpf_owner *pb)
{
	int rc;

	if (!bpf.loop || pb->poll)
		return 0;
	pb->poll = calloc(1, sizeof(*pb->poll));
	if (!pb->poll)
		return -ENOMEM;
	rc = uv_poll_init(bpf.loop, pb->poll, ring_buffer__epoll_fd(pb->rb));
	if (rc) {
		free(pb->poll);
		pb->poll = NULL;
		return rc;
	}
	pb->poll->data = pb;
	return uv_poll_start(pb->poll, UV_READABLE, on_ringbuf_readable);
}

int ps_bpf_ringbuf_add(struct ps_plugin *p, int map_fd, ps_ringbuf_fn fn, void *ctx)
{
	return ps_bpf_owner_ringbuf_add(p, ps_plugin_name(p), map_fd, fn, ctx);
}

int ps_bpf_owner_ringbuf_add(const void *owner, const char *name, int map_fd, ps_ringbuf_fn fn,
			     void *ctx)
{
	struct bpf_owner *pb = owner_get(owner, name);
	struct ringbuf_sub *sub;
	int rc;

	if (!pb)
		return -ENOMEM;
	if (map_fd < 0 || !fn)
		return -EINVAL;
	sub = calloc(1, sizeof(*sub));
	if (!sub)
		return -ENOMEM;
	*sub = (struct ringbuf_sub){ .owner = pb, .fn = fn, .ctx = ctx, .next = pb->subs };
	if (!pb->rb) {
		pb->rb = ring_buffer__new(map_fd, sample_trampoline, sub, NULL);
		rc = pb->rb ? 0 : -errno;
	} else {
		rc = ring_buffer__add(pb->rb, map_fd, sample_trampoline, sub);
	}
	if (rc) {
		free(sub);
		return rc;
	}
	pb->subs = sub;
	return start_poll(pb);
}

int ps_bpf_drops_watch(struct ps_plugin *p, int map_fd)
{
	return ps_bpf_owner_drops_watch(p, ps_plugin_name(p), map_fd);
}

int ps_bpf_owner_drops_watch(const void *owner, const char *name, int map_fd)
{
	struct bpf_owner *pb = owner_get(owner, name);

	if (!pb)
		return -ENOMEM;
	if (map_fd < 0)
		return -EINVAL;
	if (pb->n_drop_fds == MAX_DROP_MAPS)
		return -ENOSPC;
	pb->drop_fds[pb->n_drop_fds++] = map_fd;
	return 0;
}

int ps_bpf_percpu_sum(int map_fd, uint32_t key, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *values;
	int rc = 0;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	values = calloc((size_t)ncpu, sizeof(*values));
	if (!values)
		return -ENOMEM;
	if (bpf_map_lookup_elem(map_fd, &key, values)) {
		rc = -errno;
	} else {
		*out = 0;
		for (int i = 0; i < ncpu; i++)
			*out += values[i];
	}
	free(values);
	return rc;
}

static void collect_owner_drops(struct bpf_owner *pb)
{
	const char *values[] = { "periscoped", pb->name, "ringbuf_full" };

	for (size_t i = 0; i < pb->n_drop_fds; i++) {
		uint64_t total;

		if (ps_bpf_percpu_sum(pb->drop_fds[i], 0, &total))
			continue;
		/* Make the series exist at 0: "no drops" is worth showing. */
		ps_metric_add(bpf.dropped_total, values, (double)(total - pb->drops_reported[i]));
		if (total > pb->drops_reported[i])
			ps_warn("bpf", "%s: %llu events dropped (ring buffer full)", pb->name,
				(unsigned long long)(total - pb->drops_reported[i]));
		pb->drops_reported[i] = total;
	}
}

void ps_bpf_collect_drops(void)
{
	for (struct bpf_owner *pb = bpf.owners; pb; pb = pb->next)
		collect_owner_drops(pb);
}

void ps_bpf_release(const void *owner)
{
	struct bpf_owner *pb = owner_find(owner);

	if (!pb)
		return;
	for (struct bpf_owner **it = &bpf.owners; *it; it = &(*it)->next) {
		if (*it == pb) {
			*it = pb->next;
			break;
		}
	}
	if (pb->poll) {
		uv_poll_stop(pb->poll);
		uv_close((uv_handle_t *)pb->poll, on_poll_closed);
	}
	ring_buffer__free(pb->rb);
	while (pb->subs) {
		struct ringbuf_sub *next = pb->subs->next;

		free(pb->subs);
		pb->subs = next;
	}
	free(pb);
}

void ps_bpf_plugin_release(struct ps_plugin *p)
{
	ps_bpf_release(p);
}

void ps_bpf_count_decode_errors(const char *name, uint64_t n)
{
	const char *values[] = { "periscoped", name };

	if (n)
		ps_metric_add(bpf.decode_errors_total, values, (double)n);
}
