/*
 * The daemon: reads the configuration, loads the plugins, owns the loop, the
 * flush timer and the signals, and hands registry snapshots to the sinks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "bpf_support.h"
#include "capture/capture.h"
#include "config.h"
#include "daemon.h"
#include "eventbus.h"
#include "loader.h"
#include "logging.h"
#include "notify.h"
#include "procinfo.h"
#include "registry.h"
#include "settings.h"
#include "sinks/writer.h"

#define DEFAULT_CONFIG PS_SYSCONF_DIR "/periscope.yaml"
/* Where instance pid files live unless systemd's RuntimeDirectory= says otherwise. */
#ifndef PS_RUN_DIR
#define PS_RUN_DIR "/run/periscope"
#endif
#define LOCK_ATTEMPTS 8

struct sink_instance {
	const struct ps_sink_type *type;
	void *state;
	bool failing; /* log a failing sink once per state change */
};

struct plugin_set {
	struct ps_plugin **v;
	size_t n;
	struct ps_strlist refused; /* files the loader would not open: down, with no instance */
};

struct daemon {
	uv_loop_t loop;
	uv_timer_t flush_timer, stop_timer;
	uv_signal_t sig_term, sig_int, sig_hup;
	struct ps_daemon_opts opts;
	const char *config_path; /* NULL: embedded default */
	const char *plugin_dir;
	struct ps_settings settings;
	struct ps_registry *registry;
	struct plugin_set plugins;
	struct sink_instance *sinks;
	size_t n_sinks;
	uint64_t last_flush_ns;
	bool stopping;
	bool plugins_started;
	int lock_fd; /* the instance's pid file, flock()ed while we run; -1: none */
	char *lock_path;
};

/* The daemon ps_daemon_status describes; NULL when none runs. */
static struct daemon *current;

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *resolve_config_path(const struct ps_daemon_opts *o)
{
	if (o->config_path)
		return o->config_path;
	if (access(DEFAULT_CONFIG, F_OK) == 0)
		return DEFAULT_CONFIG;
	return NULL;
}

static const char *config_name(const char *path)
{
	return path ? path : "<embedded default>";
}

static bool str_equal(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

/* ---- one instance per name ----------------------------------------------------------- */

/* systemd sets RUNTIME_DIRECTORY (one directory, or several separated by ':'). */
static const char *run_dir(void)
{
	const char *dir = getenv("RUNTIME_DIRECTORY");

	return dir && dir[0] == '/' && !strchr(dir, ':') ? dir : PS_RUN_DIR;
}

/* The pid written in a lock file, or 0 when it cannot be read (yet). */
static long read_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

static int refuse_second_instance(int fd, const char *instance, const char *path)
{
	long pid = read_pid(fd);
	char who[48] = "another periscoped";

	if (pid > 0)
		snprintf(who, sizeof(who), "periscoped pid %ld", pid);
	ps_error("core",
		 "%s already runs instance '%s' (it holds %s): stop it first, or give this one "
		 "its own name with --instance NAME (daemon.instance)",
		 who, instance ? instance : "default", path);
	return -EBUSY;
}

/*
 * Opens and flock()s path. An exiting daemon unlinks its file while it still
 * holds the lock, so a lock won on a file that is no longer at path means
 * nothing: open again.
 */
static int lock_pid_file(const char *path, const char *instance)
{
	for (int attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
		struct stat held, named;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

		if (fd < 0) {
			int err = -errno;

			ps_error("core", "cannot open the instance lock %s: %s", path,
				 strerror(-err));
			return err;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int err = errno == EWOULDBLOCK ?
					  refuse_second_instance(fd, instance, path) :
					  -errno;

			if (err != -EBUSY)
				ps_error("core", "cannot lock %s: %s", path, strerror(-err));
			close(fd);
			return err;
		}
		if (fstat(fd, &held) == 0 && stat(path, &named) == 0 &&
		    held.st_dev == named.st_dev && held.st_ino == named.st_ino)
			return fd;
		close(fd);
	}
	ps_error("core", "cannot lock %s: it keeps being replaced", path);
	return -EAGAIN;
}

/* One periscoped per instance name: two would load every program twice and write the same files. */
static int take_instance_lock(struct daemon *d, const char *instance)
{
	const char *dir = run_dir();
	char pid[32];
	int fd, len;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int err = -errno;

		ps_error("core", "cannot create %s for the instance lock: %s", dir, strerror(-err));
		return err;
	}
	if (asprintf(&d->lock_path, instance ? "%s/periscoped-%s.pid" : "%s/periscoped.pid", dir,
		     instance) < 0) {
		d->lock_path = NULL;
		return -ENOMEM;
	}
	fd = lock_pid_file(d->lock_path, instance);
	if (fd < 0)
		return fd;
	len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
		ps_warn("core", "cannot write the pid to %s: %s", d->lock_path, strerror(errno));
	d->lock_fd = fd;
	ps_debug("core", "instance '%s': pid file %s", instance ? instance : "default",
		 d->lock_path);
	return 0;
}

static void release_instance_lock(struct daemon *d)
{
	/* Unlinked while still locked: see lock_pid_file. */
	if (d->lock_fd >= 0) {
		unlink(d->lock_path);
		close(d->lock_fd);
	}
	d->lock_fd = -1;
	free(d->lock_path);
	d->lock_path = NULL;
}

static int load_settings(struct ps_settings *s, const char *path)
{
	struct ps_cfg_error err;
	int rc = ps_settings_load(s, path, &err);

	if (rc)
		ps_error("config", "%s", err.msg);
	return rc;
}

static void apply_log_level(const struct ps_daemon_opts *o, const struct ps_settings *s)
{
	enum ps_log_level level;

	if (!ps_log_parse_level(o->log_level ? o->log_level : s->daemon.log_level, &level))
		ps_log_set_level(level);
}

static void apply_registry_settings(struct ps_registry *r, const struct ps_daemon_settings *ds)
{
	ps_registry_set_max_series(r, ds->max_series_per_metric);
	ps_registry_set_ttl(r, ds->series_ttl_ms * 1000000ull);
	if (ps_registry_set_buckets(r, ds->buckets, ds->n_buckets))
		ps_error("core", "daemon.buckets: out of memory; some families keep their buckets");
}

/* ---- plugins ------------------------------------------------------------------------ */

static void plugin_set_free(struct plugin_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i])
			ps_plugin_close(set->v[i]);
	free(set->v);
	set->v = NULL;
	set->n = 0;
	ps_plugin_refused_free(&set->refused);
}

/* The plugin called name in set, or NULL; *at (may be NULL) gets its index. */
static struct ps_plugin *plugin_set_find(const struct plugin_set *set, const char *name, size_t *at)
{
	for (size_t i = 0; i < set->n; i++) {
		if (set->v[i] && strcmp(set->v[i]->name, name) == 0) {
			if (at)
				*at = i;
			return set->v[i];
		}
	}
	return NULL;
}

/* Refused files the configuration disables are not missed: they do not count as down. */
static void forget_disabled_refusals(const struct ps_settings *s, struct ps_strlist *refused)
{
	size_t kept = 0;

	for (size_t i = 0; i < refused->n; i++) {
		bool enabled;

		ps_settings_plugin(s, refused->v[i], &enabled, NULL);
		if (enabled)
			refused->v[kept++] = refused->v[i];
		else
			free(refused->v[i]);
	}
	refused->n = kept;
}

/*
 * Opens the plugin directory and configures every enabled plugin from s.
 * Plugins that fail to open are logged and marked down by the loader;
 * a bad plugin section is a configuration error (-EINVAL).
 */
static int open_plugins(const char *dir, const struct ps_settings *s, struct plugin_set *out)
{
	struct ps_cfg_error err;
	struct ps_plugin **all;
	size_t n;
	int rc = ps_plugin_scan(dir, &all, &n, &out->refused);

	if (rc)
		return rc; /* the loader said why */
	out->v = all;
	out->n = n;
	forget_disabled_refusals(s, &out->refused);
	for (size_t i = 0; i < n; i++) {
		bool enabled;
		const struct ps_cfg_node *section = ps_settings_plugin(s, all[i]->name, &enabled, &err);

		if (!enabled) {
			ps_info("loader", "%s: disabled by the configuration", all[i]->name);
			ps_plugin_close(all[i]);
			all[i] = NULL;
			continue;
		}
		rc = ps_plugin_configure(all[i], section, &err);
		if (rc) {
			ps_error("config", "%s", err.msg);
			return -EINVAL;
		}
	}
	/* A section for a plugin that is not there is a typo until proven otherwise. */
	for (size_t i = 0; s->plugins && i < ps_cfg_node_len(s->plugins); i++) {
		const char *name = ps_cfg_node_key_at(s->plugins, i);
		bool enabled;

		ps_settings_plugin(s, name, &enabled, NULL);
		if (enabled && !plugin_set_find(out, name, NULL)) {
			/* At the key: the section's value may start lines below it. */
			ps_cfg_errorf(&err, ps_cfg_node_key_node_at(s->plugins, i),
				      "plugins.%s: no usable plugin '%s.so' in %s", name, name,
				      dir);
			ps_error("config", "%s", err.msg);
			return -EINVAL;
		}
	}
	return 0;
}

static void start_plugin(struct ps_plugin *p)
{
	if (ps_plugin_init(p) == 0)
		ps_plugin_start(p);
}

/* snprintf at *off in buf, never past its end; *off stops at the end. */
static void __attribute__((format(printf, 4, 5)))
append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off + 1 >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off = *off + (size_t)n < len ? *off + (size_t)n : len - 1;
}

static size_t plugins_running(const struct plugin_set *set, char *names, size_t len)
{
	size_t up = 0, off = 0;

	names[0] = '\0';
	for (size_t i = 0; i < set->n; i++) {
		if (!set->v[i] || set->v[i]->state != PS_PLUGIN_RUNNING)
			continue;
		up++;
		append(names, len, &off, "%s%s", up > 1 ? ", " : "", set->v[i]->name);
	}
	return up;
}

/* Enabled plugins, whether they run or not, and the files the loader refused. */
static size_t plugins_expected(const struct plugin_set *set)
{
	size_t n = set->refused.n;

	for (size_t i = 0; i < set->n; i++)
		n += set->v[i] != NULL;
	return n;
}

/*
 * "2 of 3 plugins up (http down: init failed: Invalid argument)": one line for
 * the log, and for whoever reports the daemon's state (systemd's STATUS=).
 * Returns the number of plugins up.
 */
static size_t plugin_status(const struct plugin_set *set, char *buf, size_t len)
{
	char names[8];
	size_t up = plugins_running(set, names, sizeof(names)), off = 0;
	const char *sep = " (";

	buf[0] = '\0';
	append(buf, len, &off, "%zu of %zu plugins up", up, plugins_expected(set));
	for (size_t i = 0; i < set->n; i++) {
		const struct ps_plugin *p = set->v[i];

		if (!p || p->state == PS_PLUGIN_RUNNING)
			continue;
		append(buf, len, &off, "%s%s down: %s", sep, p->name,
		       p->reason[0] ? p->reason : "not started");
		sep = "; ";
	}
	for (size_t i = 0; i < set->refused.n; i++) {
		append(buf, len, &off, "%s%s refused by the loader", sep, set->refused.v[i]);
		sep = "; ";
	}
	if (*sep == ';')
		append(buf, len, &off, ")");
	return up;
}

/* Returns the number of plugins up; says "degraded" when some are not. */
static size_t log_running(const struct daemon *d, uint64_t since_ns)
{
	char names[512], status[1024];
	size_t up = plugins_running(&d->plugins, names, sizeof(names));

	plugin_status(&d->plugins, status, sizeof(status));
	ps_info("core", "running: %s (%zu of %zu plugins up) in %" PRIu64 " ms",
		up ? names : "nothing", up, plugins_expected(&d->plugins),
		(now_ns(CLOCK_MONOTONIC) - since_ns) / 1000000);
	if (up && up < plugins_expected(&d->plugins))
		ps_warn("core", "degraded: %s", status);
	return up;
}

/* ---- sinks -------------------------------------------------------------------------- */

static void on_event(const struct ps_event *ev, void *ctx)
{
	struct daemon *d = ctx;

	for (size_t i = 0; i < d->n_sinks; i++)
		if (d->sinks[i].type->event)
			d->sinks[i].type->event(d->sinks[i].state, ev);
}

/* What the open sinks write beside snapshots: producers skip the work nobody reads. */
static void sinks_announce_wants(const struct daemon *d)
{
	uint32_t mask = 1u << PS_EVENT_FLOW | 1u << PS_EVENT_EXCHANGE | 1u << PS_EVENT_ALERT;

	for (size_t i = 0; i < d->n_sinks; i++)
		if (d->sinks[i].type->takes_spans && d->sinks[i].type->takes_spans(d->sinks[i].state))
			mask |= 1u << PS_EVENT_SPANS;
	ps_event_set_sinks_want(mask);
}

static void close_sinks(struct daemon *d)
{
	for (size_t i = 0; i < d->n_sinks; i++)
		d->sinks[i].type->close(d->sinks[i].state);
	free(d->sinks);
	d->sinks = NULL;
	d->n_sinks = 0;
	ps_event_set_sinks_want(0);
}

static int open_sinks(struct daemon *d, const struct ps_settings *s)
{
	d->sinks = calloc(s->n_sinks ? s->n_sinks : 1, sizeof(*d->sinks));
	if (!d->sinks)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_sinks; i++) {
		void *state = s->sinks[i].type->open(s->sinks[i].config);

		if (!state) {
			int rc = -errno;

			ps_error("sink", "%s: cannot open: %s", s->sinks[i].type->name, strerror(errno));
			close_sinks(d);
			return rc ? rc : -EIO;
		}
		d->sinks[d->n_sinks++] = (struct sink_instance){ .type = s->sinks[i].type, .state = state };
	}
	if (!d->n_sinks)
		ps_warn("core", "no sinks configured: metrics are collected but written nowhere");
	sinks_announce_wants(d);
	return 0;
}

/* ---- what plugins may read of the settings ---------------------------------------- */

static const struct ps_strmap *static_labels;

const struct ps_strmap *ps_daemon_labels(void)
{
	static const struct ps_strmap none;

	return static_labels ? static_labels : &none;
}

/* ---- flush -------------------------------------------------------------------------- */

static void collect_plugins(struct daemon *d)
{
	ps_bpf_drain();
	ps_capture_collect();
	for (size_t i = 0; i < d->plugins.n; i++) {
		struct ps_plugin *p = d->plugins.v[i];

		if (p && p->state == PS_PLUGIN_RUNNING && ps_plugin_collect(p))
			ps_plugin_stop(p);
	}
	ps_bpf_collect_drops();
}

/*
 * The core's own tables, so that growth shows (and a leak test can see them
 * return to their baseline): registered each time, as the registry may change.
 */
static void report_tables(void)
{
	static const char *const labels[] = { "service_name", NULL };
	const char *values[] = { "periscoped" };
	struct ps_metric *m;

	m = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_proc_cache_entries",
		.help = "Processes in the core's process-name cache",
		.type = PS_METRIC_GAUGE,
		.labels = labels,
	});
	if (m)
		ps_metric_set(m, values, (double)ps_proc_cache_entries());
	m = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_capture_connections",
		.help = "Connections the core capture follows in user space",
		.type = PS_METRIC_GAUGE,
		.labels = labels,
	});
	if (m)
		ps_metric_set(m, values, (double)ps_capture_connections());
}

static void flush(struct daemon *d, bool final)
{
	uint64_t now = now_ns(CLOCK_REALTIME);
	struct ps_flush_ctx ctx = {
		.registry = d->registry,
		.static_labels = &d->settings.daemon.labels,
		.now_unix_ns = now,
		.interval_ns = d->last_flush_ns ? now - d->last_flush_ns : 0,
		.final = final,
	};

	collect_plugins(d);
	report_tables();
	ps_alerts_evaluate(d->settings.alerts, d->registry, now);
	for (size_t i = 0; i < d->n_sinks; i++) {
		struct sink_instance *sink = &d->sinks[i];
		int rc = sink->type->flush(sink->state, &ctx);

		if (rc && !sink->failing)
			ps_error("sink", "%s: flush failed: %s (will retry every flush)", sink->type->name,
				 strerror(-rc));
		else if (!rc && sink->failing)
			ps_info("sink", "%s: flushing again", sink->type->name);
		sink->failing = rc != 0;
	}
	ps_registry_mark_flushed(d->registry);
	ps_notify_state(NULL, d->registry);
	d->last_flush_ns = now;
	/* What arrived while the sinks wrote, before the expiry sweep walks every series. */
	ps_bpf_drain();
	ps_registry_expire(d->registry, now_ns(CLOCK_MONOTONIC));
	ps_proc_sweep();
}

static void on_flush_timer(uv_timer_t *t)
{
	flush(t->data, false);
}

/* ---- shutdown and reload ------------------------------------------------------------ */

static void stop_plugins(struct plugin_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i] && set->v[i]->state == PS_PLUGIN_RUNNING)
			ps_plugin_stop(set->v[i]);
}

static void shutdown_daemon(struct daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	ps_notify_state("STOPPING=1", NULL);
	ps_info("core", "%s: final flush and exit", why);
	flush(d, true);
	stop_plugins(&d->plugins);
	uv_timer_stop(&d->flush_timer);
	uv_timer_stop(&d->stop_timer);
	uv_close((uv_handle_t *)&d->flush_timer, NULL);
	uv_close((uv_handle_t *)&d->stop_timer, NULL);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	ps_bpf_teardown();
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
	shutdown_daemon(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_duration_elapsed(uv_timer_t *t)
{
	shutdown_daemon(t->data, "--duration elapsed");
}

static bool plugin_section_changed(const struct ps_settings *old, const struct ps_settings *new,
				   const char *name)
{
	bool old_enabled, new_enabled;
	const struct ps_cfg_node *a = ps_settings_plugin(old, name, &old_enabled, NULL);
	const struct ps_cfg_node *b = ps_settings_plugin(new, name, &new_enabled, NULL);

	return old_enabled != new_enabled || !ps_cfg_node_equal(a, b);
}

/*
 * Pairs the fresh plugins with the running ones: a running plugin whose
 * section did not change is kept (keep[i] = its index in d->plugins), every
 * other fresh plugin is initialised now, beside the running instance of the
 * same name, which keeps running. Fails when one of them cannot be
 * initialised, unless it replaces an instance that was down already with the
 * same section (a retry that changes nothing if it fails again).
 */
static int prepare_plugins(struct daemon *d, const struct ps_settings *new,
			   struct plugin_set *fresh, ssize_t *keep)
{
	for (size_t i = 0; i < fresh->n; i++) {
		struct ps_plugin *candidate = fresh->v[i], *old;
		size_t at;
		bool changed;
		int rc;

		keep[i] = -1;
		if (!candidate)
			continue; /* disabled */
		old = plugin_set_find(&d->plugins, candidate->name, &at);
		changed = plugin_section_changed(&d->settings, new, candidate->name);
		if (old && old->state == PS_PLUGIN_RUNNING && !changed) {
			ps_debug("core",
				 "reload: %s: section unchanged, the running instance stays",
				 candidate->name);
			keep[i] = (ssize_t)at;
			continue;
		}
		ps_debug("core", "reload: %s: %s, initialising a new instance%s", candidate->name,
			 !old	 ? "not running before" :
			 changed ? "section changed" :
				   "was down",
			 old && old->state == PS_PLUGIN_RUNNING ? " beside the running one" : "");
		rc = ps_plugin_try_init(candidate);
		if (!rc)
			continue;
		if (old && old->state != PS_PLUGIN_RUNNING && !changed) {
			ps_warn("core", "reload: %s is still down: %s", candidate->name,
				candidate->reason);
			continue;
		}
		ps_error("core", "reload: plugin %s: %s", candidate->name, candidate->reason);
		return rc;
	}
	return 0;
}

/* Replaces old (running, stopped here) by candidate (inited); old runs again if it must. */
static struct ps_plugin *swap_in(struct ps_plugin *old, struct ps_plugin *candidate)
{
	char why[sizeof(candidate->reason)];

	if (old)
		ps_plugin_stop(old);
	if (ps_plugin_start(candidate) == 0) {
		ps_debug("core", "reload: %s: new instance swapped in", candidate->name);
		return candidate;
	}
	if (!old || old->state != PS_PLUGIN_STOPPED || ps_plugin_start(old) != 0)
		return candidate; /* down, with the reason of its failed start */
	memcpy(why, candidate->reason, sizeof(why));
	ps_error("core",
		 "reload: %s: the new instance failed to start (%s); the previous one "
		 "runs again",
		 candidate->name, why);
	ps_plugin_close(candidate);
	return old;
}

/*
 * Commits a prepared reload: kept instances move over, new ones replace the
 * instances of the same name, plugins no longer enabled stop.
 */
static void swap_plugins(struct daemon *d, struct plugin_set *fresh, const ssize_t *keep)
{
	for (size_t i = 0; i < fresh->n; i++) {
		struct ps_plugin *candidate = fresh->v[i], *old;
		size_t at = 0;
		char why[sizeof(candidate->reason)];

		if (!candidate)
			continue;
		if (keep[i] >= 0) {
			ps_plugin_close(candidate);
			fresh->v[i] = d->plugins.v[keep[i]];
			d->plugins.v[keep[i]] = NULL;
			continue;
		}
		old = plugin_set_find(&d->plugins, candidate->name, &at);
		if (candidate->state != PS_PLUGIN_INITED) {
			/* A retry that failed (prepare_plugins allowed it): down as before. */
			memcpy(why, candidate->reason, sizeof(why));
			ps_plugin_mark_down(candidate, "%s", why);
			continue;
		}
		fresh->v[i] =
			swap_in(old && old->state == PS_PLUGIN_RUNNING ? old : NULL, candidate);
		if (old && fresh->v[i] == old)
			d->plugins.v[at] = NULL;
	}
	/*
	 * What is left of the old set is replaced or disabled. A disabled plugin
	 * (or one whose file went) is not a failed one: its periscope_plugin_up
	 * series goes, rather than staying 1 or turning 0 (which plugin-down
	 * alerts would read as a failure).
	 */
	for (size_t i = 0; i < d->plugins.n; i++) {
		struct ps_plugin *old = d->plugins.v[i];

		if (old && !plugin_set_find(fresh, old->name, NULL)) {
			ps_debug("core", "reload: %s: no longer configured, stopped", old->name);
			ps_plugin_report_gone(old->name);
		}
	}
	plugin_set_free(&d->plugins);
	d->plugins = *fresh;
}

static void reject_reload(const char *why)
{
	ps_error("core",
		 "reload rejected (%s); every plugin, sink and setting keeps running as "
		 "it was",
		 why);
}

static int reload(struct daemon *d)
{
	struct ps_settings fresh_settings;
	struct plugin_set fresh = { 0 };
	uint64_t started = now_ns(CLOCK_MONOTONIC);
	ssize_t *keep;

	ps_info("core", "SIGHUP: reloading %s", config_name(d->config_path));
	if (load_settings(&fresh_settings, d->config_path)) {
		reject_reload("invalid configuration");
		return -EINVAL;
	}
	ps_debug("core", "reload: configuration valid; opening the plugins in %s", d->plugin_dir);
	if (open_plugins(d->plugin_dir, &fresh_settings, &fresh)) {
		plugin_set_free(&fresh);
		ps_settings_free(&fresh_settings);
		reject_reload("invalid plugin configuration");
		return -EINVAL;
	}
	keep = calloc(fresh.n ? fresh.n : 1, sizeof(*keep));
	if (!keep || prepare_plugins(d, &fresh_settings, &fresh, keep)) {
		free(keep);
		plugin_set_free(&fresh);
		ps_settings_free(&fresh_settings);
		reject_reload(keep ? "a plugin failed to initialise" : "out of memory");
		return -EINVAL;
	}
	/* Everything validated and initialised: from here on the new configuration wins. */
	ps_debug("core", "reload: every new instance initialised; swapping");
	flush(d, false);
	swap_plugins(d, &fresh, keep);
	free(keep);
	close_sinks(d);
	ps_alerts_adopt_state(fresh_settings.alerts, d->settings.alerts);
	if (!d->opts.instance &&
	    !str_equal(fresh_settings.daemon.instance, d->settings.daemon.instance))
		ps_warn("core", "daemon.instance changed: it takes effect at the next start");
	ps_settings_free(&d->settings);
	d->settings = fresh_settings;
	apply_log_level(&d->opts, &d->settings);
	apply_registry_settings(d->registry, &d->settings.daemon);
	ps_proc_set_rules(d->settings.services, d->settings.n_services);
	if (open_sinks(d, &d->settings))
		ps_error("core", "sinks failed to open after reload: nothing is written");
	ps_bpf_set_drain_interval(d->settings.daemon.drain_interval_ms);
	uv_timer_start(&d->flush_timer, on_flush_timer, d->settings.daemon.flush_interval_ms,
		       d->settings.daemon.flush_interval_ms);
	if (!log_running(d, started))
		ps_warn("core", "no plugin is running after the reload: nothing will be observed");
	return 0;
}

static void on_sighup(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;

	ps_notify_state("RELOADING=1", NULL);
	ps_notify_reloaded(reload(d) == 0, d->registry);
}

/* ---- run ---------------------------------------------------------------------------- */

static void register_build_info(void)
{
	static const char *const labels[] = { "service_name", "version", NULL };
	const char *values[] = { "periscoped", PACKAGE_VERSION };
	struct ps_metric *m = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_build_info",
		.help = "Always 1; the labels say which periscope is running",
		.type = PS_METRIC_GAUGE,
		.labels = labels,
	});

	ps_metric_set(m, values, 1);
}

static int setup_loop(struct daemon *d)
{
	int rc = uv_loop_init(&d->loop);
	sigset_t held;

	if (rc)
		return rc;
	uv_timer_init(&d->loop, &d->flush_timer);
	uv_timer_init(&d->loop, &d->stop_timer);
	uv_signal_init(&d->loop, &d->sig_term);
	uv_signal_init(&d->loop, &d->sig_int);
	uv_signal_init(&d->loop, &d->sig_hup);
	d->flush_timer.data = d->stop_timer.data = d;
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
	uv_signal_start(&d->sig_term, on_stop_signal, SIGTERM);
	uv_signal_start(&d->sig_int, on_stop_signal, SIGINT);
	uv_signal_start(&d->sig_hup, on_sighup, SIGHUP);
	/* Held since main() (or by whoever started us): from now on the loop takes them. */
	sigemptyset(&held);
	sigaddset(&held, SIGTERM);
	sigaddset(&held, SIGINT);
	sigaddset(&held, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &held, NULL);
	return 0;
}

/*
 * The flush interval and --duration count from when the daemon is up, not
 * from before the plugins loaded (seconds, for BPF programs): libuv's clock
 * stood still since uv_loop_init, so it is brought up to date first.
 */
static void start_timers(struct daemon *d)
{
	uint64_t flush_ms = d->settings.daemon.flush_interval_ms;

	uv_update_time(&d->loop);
	uv_timer_start(&d->flush_timer, on_flush_timer, flush_ms, flush_ms);
	if (d->opts.duration_s)
		uv_timer_start(&d->stop_timer, on_duration_elapsed, d->opts.duration_s * 1000, 0);
}

static void teardown(struct daemon *d, bool loop_inited)
{
	plugin_set_free(&d->plugins);
	static_labels = NULL;
	close_sinks(d);
	ps_writer_wait_released(); /* the final flush is on disk and out before we exit */
	ps_event_reset();
	if (loop_inited) {
		uv_run(&d->loop, UV_RUN_NOWAIT);
		uv_loop_close(&d->loop);
	}
	ps_proc_cleanup();
	ps_registry_set_default(NULL);
	ps_registry_free(d->registry);
	ps_settings_free(&d->settings);
	release_instance_lock(d);
	current = NULL;
}

size_t ps_daemon_status(char *buf, size_t len)
{
	if (!len)
		return 0;
	if (!current || !current->plugins_started) {
		snprintf(buf, len, "starting");
		return 0;
	}
	return plugin_status(&current->plugins, buf, len);
}

int ps_daemon_run(const struct ps_daemon_opts *o)
{
	struct daemon d = { .opts = *o, .lock_fd = -1 };
	uint64_t started = now_ns(CLOCK_MONOTONIC);
	int code = PS_EXIT_FAILURE, rc;
	char status[1024];

	d.config_path = resolve_config_path(o);
	d.plugin_dir = o->plugin_dir ? o->plugin_dir : PS_PLUGIN_DIR;
	if (load_settings(&d.settings, d.config_path))
		return PS_EXIT_CONFIG;
	apply_log_level(o, &d.settings);
	ps_info("core", "periscope %s starting: config %s, plugins from %s", PACKAGE_VERSION,
		config_name(d.config_path), d.plugin_dir);
	if (geteuid() != 0)
		ps_warn("core", "not running as root: loading BPF programs will most likely fail");
	current = &d;
	if (take_instance_lock(&d, o->instance ? o->instance : d.settings.daemon.instance))
		goto out;

	d.registry = ps_registry_new(d.settings.daemon.max_series_per_metric);
	if (!d.registry)
		goto out;
	ps_registry_set_default(d.registry);
	ps_alerts_start(d.settings.alerts, now_ns(CLOCK_REALTIME));
	apply_registry_settings(d.registry, &d.settings.daemon);
	register_build_info();
	/* What the core holds for a plugin goes when it stops. */
	ps_plugin_release_hook(ps_bpf_plugin_release);
	ps_plugin_release_hook(ps_capture_plugin_release);
	ps_plugin_release_hook(ps_event_plugin_release);
	ps_proc_set_rules(d.settings.services, d.settings.n_services);
	static_labels = &d.settings.daemon.labels; /* a reload replaces what it points to */

	if (setup_loop(&d))
		goto out;
	ps_sink_prometheus_http_set_loop(&d.loop);
	ps_sink_otlp_set_loop(&d.loop);
	if (ps_bpf_setup(&d.loop, d.settings.daemon.drain_interval_ms))
		goto out_loop;
	ps_capture_set_hooks(d.settings.capture_hooks);
	ps_capture_set_ring_size(d.settings.capture_ring_size);
	rc = open_plugins(d.plugin_dir, &d.settings, &d.plugins);
	if (rc) {
		code = rc == -EINVAL ? PS_EXIT_CONFIG : PS_EXIT_FAILURE;
		goto out_loop;
	}
	if (open_sinks(&d, &d.settings))
		goto out_loop;
	for (int t = 1; t < PS_EVENT_TYPE_MAX; t++)
		ps_event_subscribe(NULL, t, on_event, &d);
	for (size_t i = 0; i < d.plugins.n; i++) {
		if (!d.plugins.v[i])
			continue;
		start_plugin(d.plugins.v[i]);
		/* The next plugin's load blocks the loop: what the started ones sent goes first. */
		ps_bpf_drain();
	}
	d.plugins_started = true;
	if (!plugin_status(&d.plugins, status, sizeof(status))) {
		/* A daemon that observes nothing must not look healthy to its supervisor. */
		ps_error("core", "no plugin is running: %s; exiting", status);
		goto out_loop;
	}
	log_running(&d, started);
	ps_notify_drop_capabilities();
	ps_notify_state("READY=1", d.registry);
	d.last_flush_ns = now_ns(CLOCK_REALTIME);
	start_timers(&d);

	uv_run(&d.loop, UV_RUN_DEFAULT);
	code = PS_EXIT_OK;
	teardown(&d, true);
	return code;

out_loop:
	if (!d.stopping) {
		d.stopping = true;
		uv_close((uv_handle_t *)&d.flush_timer, NULL);
		uv_close((uv_handle_t *)&d.stop_timer, NULL);
		uv_close((uv_handle_t *)&d.sig_term, NULL);
		uv_close((uv_handle_t *)&d.sig_int, NULL);
		uv_close((uv_handle_t *)&d.sig_hup, NULL);
		ps_bpf_teardown();
	}
	teardown(&d, true);
	return code;
out:
	teardown(&d, false);
	return code;
}

/* Some sink settings (a file name, a remote address) are only judged by opening the sink. */
static int try_sinks(const struct ps_settings *s)
{
	for (size_t i = 0; i < s->n_sinks; i++) {
		void *state = s->sinks[i].type->open(s->sinks[i].config);

		if (!state) {
			ps_error("config", "sinks.%s: rejected: %s", s->sinks[i].type->name,
				 strerror(errno));
			return -EINVAL;
		}
		s->sinks[i].type->close(state);
	}
	return 0;
}

int ps_daemon_check_config(const struct ps_daemon_opts *o)
{
	const char *path = resolve_config_path(o);
	const char *dir = o->plugin_dir ? o->plugin_dir : PS_PLUGIN_DIR;
	struct ps_settings s;
	struct plugin_set plugins = { 0 };
	struct ps_registry *r;
	char names[512];
	size_t off = 0;
	int rc;

	if (load_settings(&s, path))
		return PS_EXIT_CONFIG;
	r = ps_registry_new(0);
	ps_registry_set_default(r);
	rc = open_plugins(dir, &s, &plugins);
	if (!rc)
		rc = try_sinks(&s);
	names[0] = '\0';
	for (size_t i = 0; i < plugins.n; i++)
		if (plugins.v[i])
			off += (size_t)snprintf(names + off, off < sizeof(names) ? sizeof(names) - off : 0,
						"%s%s", off ? ", " : "", plugins.v[i]->name);
	if (!rc)
		printf("%s: configuration OK; plugins: %s; sinks: %zu\n", config_name(path),
		       off ? names : "none", s.n_sinks);
	plugin_set_free(&plugins);
	ps_registry_set_default(NULL);
	ps_registry_free(r);
	ps_settings_free(&s);
	if (rc)
		return rc == -EINVAL ? PS_EXIT_CONFIG : PS_EXIT_FAILURE;
	return PS_EXIT_OK;
}

static const char *const type_names[] = {
	[PS_CFG_BOOL] = "bool",     [PS_CFG_INT] = "int",          [PS_CFG_UINT] = "uint",
	[PS_CFG_DURATION] = "duration", [PS_CFG_SIZE] = "size",    [PS_CFG_STRING] = "string",
	[PS_CFG_STRLIST] = "list",  [PS_CFG_PORTLIST] = "ports",   [PS_CFG_STRMAP] = "map",
};

int ps_daemon_list_plugins(const struct ps_daemon_opts *o)
{
	const char *dir = o->plugin_dir ? o->plugin_dir : PS_PLUGIN_DIR;
	struct ps_registry *r = ps_registry_new(0);
	struct ps_plugin **all;
	size_t n;
	int rc;

	ps_registry_set_default(r);
	rc = ps_plugin_scan(dir, &all, &n, NULL);
	if (!rc) {
		printf("plugins in %s:\n", dir);
		for (size_t i = 0; i < n; i++) {
			const struct ps_plugin_desc *desc = all[i]->desc;

			printf("  %-10s %-8s %s\n", desc->name, desc->version ? desc->version : "",
			       desc->description ? desc->description : "");
			for (const struct ps_cfg_key *k = desc->config_map; k && k->name; k++) {
				printf("      %-18s %-9s default %-8s %s", k->name,
				       type_names[k->type], k->def ? k->def : "-",
				       k->help ? k->help : "");
				if (k->min || k->max)
					printf(" [%s..%s]", k->min ? k->min : "",
					       k->max ? k->max : "");
				printf("\n");
			}
			ps_plugin_close(all[i]);
		}
		free(all);
	}
	ps_registry_set_default(NULL);
	ps_registry_free(r);
	return rc ? PS_EXIT_FAILURE : PS_EXIT_OK;
}
