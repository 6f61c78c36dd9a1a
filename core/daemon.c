/*
 * The daemon: reads the configuration, loads the plugins, owns the loop, the
 * flush timer and the signals, and hands registry snapshots to the sinks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "procinfo.h"
#include "registry.h"
#include "settings.h"

#define DEFAULT_CONFIG PS_SYSCONF_DIR "/periscope.yaml"

struct sink_instance {
	const struct ps_sink_type *type;
	void *state;
	bool failing; /* log a failing sink once per state change */
};

struct plugin_set {
	struct ps_plugin **v;
	size_t n;
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
};

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
}

static bool plugin_set_has(const struct plugin_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i] && strcmp(set->v[i]->name, name) == 0)
			return true;
	return false;
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
	int rc = ps_plugin_scan(dir, &all, &n);

	if (rc)
		return rc; /* the loader said why */
	out->v = all;
	out->n = n;
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
		if (enabled && !plugin_set_has(out, name)) {
			ps_cfg_errorf(&err, ps_cfg_node_at(s->plugins, i),
				      "plugins.%s: no usable plugin '%s.so' in %s", name, name, dir);
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

static size_t plugins_running(const struct plugin_set *set, char *names, size_t len)
{
	size_t up = 0, off = 0;

	names[0] = '\0';
	for (size_t i = 0; i < set->n; i++) {
		if (!set->v[i] || set->v[i]->state != PS_PLUGIN_RUNNING)
			continue;
		up++;
		off += (size_t)snprintf(names + off, off < len ? len - off : 0, "%s%s",
					off ? ", " : "", set->v[i]->name);
	}
	return up;
}

static size_t plugins_enabled(const struct plugin_set *set)
{
	size_t n = 0;

	for (size_t i = 0; i < set->n; i++)
		n += set->v[i] != NULL;
	return n;
}

static void log_running(const struct daemon *d, uint64_t since_ns)
{
	char names[512];
	size_t up = plugins_running(&d->plugins, names, sizeof(names));

	ps_info("core", "running: %s (%zu of %zu plugins up) in %" PRIu64 " ms", up ? names : "nothing",
		up, plugins_enabled(&d->plugins), (now_ns(CLOCK_MONOTONIC) - since_ns) / 1000000);
	if (!up)
		ps_warn("core", "no plugin is running: nothing will be observed");
}

/* ---- sinks -------------------------------------------------------------------------- */

static void on_event(const struct ps_event *ev, void *ctx)
{
	struct daemon *d = ctx;

	for (size_t i = 0; i < d->n_sinks; i++)
		if (d->sinks[i].type->event)
			d->sinks[i].type->event(d->sinks[i].state, ev);
}

static void close_sinks(struct daemon *d)
{
	for (size_t i = 0; i < d->n_sinks; i++)
		d->sinks[i].type->close(d->sinks[i].state);
	free(d->sinks);
	d->sinks = NULL;
	d->n_sinks = 0;
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
	return 0;
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
 * Keeps every running plugin whose section did not change; restarts the
 * others from the freshly opened set.
 */
static void swap_plugins(struct daemon *d, const struct ps_settings *new, struct plugin_set *fresh)
{
	for (size_t i = 0; i < fresh->n; i++) {
		struct ps_plugin *candidate = fresh->v[i];

		for (size_t j = 0; candidate && j < d->plugins.n; j++) {
			struct ps_plugin *old = d->plugins.v[j];

			if (!old || strcmp(old->name, candidate->name))
				continue;
			if (!plugin_section_changed(&d->settings, new, old->name) &&
			    old->state == PS_PLUGIN_RUNNING) {
				/* Unchanged: the running instance stays, the fresh handle goes. */
				ps_plugin_close(candidate);
				fresh->v[i] = old;
				d->plugins.v[j] = NULL;
			}
			break;
		}
	}
	stop_plugins(&d->plugins);
	plugin_set_free(&d->plugins);
	d->plugins = *fresh;
	for (size_t i = 0; i < d->plugins.n; i++) {
		struct ps_plugin *p = d->plugins.v[i];

		if (p && p->state == PS_PLUGIN_OPENED)
			start_plugin(p);
	}
}

static void reload(struct daemon *d)
{
	struct ps_settings fresh_settings;
	struct plugin_set fresh = { 0 };
	uint64_t started = now_ns(CLOCK_MONOTONIC);

	ps_info("core", "SIGHUP: reloading %s", config_name(d->config_path));
	if (load_settings(&fresh_settings, d->config_path)) {
		ps_error("core", "reload rejected; keeping the running configuration");
		return;
	}
	if (open_plugins(d->plugin_dir, &fresh_settings, &fresh)) {
		plugin_set_free(&fresh);
		ps_settings_free(&fresh_settings);
		ps_error("core", "reload rejected; keeping the running configuration");
		return;
	}
	/* Everything validated: from here on the new configuration wins. */
	flush(d, false);
	swap_plugins(d, &fresh_settings, &fresh);
	close_sinks(d);
	ps_alerts_adopt_state(fresh_settings.alerts, d->settings.alerts);
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
	log_running(d, started);
}

static void on_sighup(uv_signal_t *h, int signum)
{
	reload(h->data);
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
	const struct ps_daemon_settings *ds = &d->settings.daemon;
	int rc = uv_loop_init(&d->loop);

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
	uv_timer_start(&d->flush_timer, on_flush_timer, ds->flush_interval_ms, ds->flush_interval_ms);
	if (d->opts.duration_s)
		uv_timer_start(&d->stop_timer, on_duration_elapsed, d->opts.duration_s * 1000, 0);
	return 0;
}

static void teardown(struct daemon *d, bool loop_inited)
{
	plugin_set_free(&d->plugins);
	close_sinks(d);
	ps_event_reset();
	if (loop_inited) {
		uv_run(&d->loop, UV_RUN_NOWAIT);
		uv_loop_close(&d->loop);
	}
	ps_proc_cleanup();
	ps_registry_set_default(NULL);
	ps_registry_free(d->registry);
	ps_settings_free(&d->settings);
}

int ps_daemon_run(const struct ps_daemon_opts *o)
{
	struct daemon d = { .opts = *o };
	uint64_t started = now_ns(CLOCK_MONOTONIC);
	int code = PS_EXIT_FAILURE, rc;

	d.config_path = resolve_config_path(o);
	d.plugin_dir = o->plugin_dir ? o->plugin_dir : PS_PLUGIN_DIR;
	if (load_settings(&d.settings, d.config_path))
		return PS_EXIT_CONFIG;
	apply_log_level(o, &d.settings);
	ps_info("core", "periscope %s starting: config %s, plugins from %s", PACKAGE_VERSION,
		config_name(d.config_path), d.plugin_dir);
	if (geteuid() != 0)
		ps_warn("core", "not running as root: loading BPF programs will most likely fail");

	d.registry = ps_registry_new(d.settings.daemon.max_series_per_metric);
	if (!d.registry)
		return PS_EXIT_FAILURE;
	ps_registry_set_default(d.registry);
	apply_registry_settings(d.registry, &d.settings.daemon);
	register_build_info();
	/* What the core holds for a plugin goes when it stops. */
	ps_plugin_release_hook(ps_bpf_plugin_release);
	ps_plugin_release_hook(ps_capture_plugin_release);
	ps_plugin_release_hook(ps_event_plugin_release);
	ps_proc_set_rules(d.settings.services, d.settings.n_services);

	if (setup_loop(&d))
		goto out;
	if (ps_bpf_setup(&d.loop, d.settings.daemon.drain_interval_ms))
		goto out_loop;
	ps_capture_set_hooks(d.settings.capture_hooks);
	rc = open_plugins(d.plugin_dir, &d.settings, &d.plugins);
	if (rc) {
		code = rc == -EINVAL ? PS_EXIT_CONFIG : PS_EXIT_FAILURE;
		goto out_loop;
	}
	if (open_sinks(&d, &d.settings))
		goto out_loop;
	for (int t = 1; t < PS_EVENT_TYPE_MAX; t++)
		ps_event_subscribe(NULL, t, on_event, &d);
	for (size_t i = 0; i < d.plugins.n; i++)
		if (d.plugins.v[i])
			start_plugin(d.plugins.v[i]);
	log_running(&d, started);
	d.last_flush_ns = now_ns(CLOCK_REALTIME);

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
	rc = ps_plugin_scan(dir, &all, &n);
	if (!rc) {
		printf("plugins in %s:\n", dir);
		for (size_t i = 0; i < n; i++) {
			const struct ps_plugin_desc *desc = all[i]->desc;

			printf("  %-10s %-8s %s\n", desc->name, desc->version ? desc->version : "",
			       desc->description ? desc->description : "");
			for (const struct ps_cfg_key *k = desc->config_map; k && k->name; k++)
				printf("      %-18s %-9s default %-8s %s\n", k->name, type_names[k->type],
				       k->def ? k->def : "-", k->help ? k->help : "");
			ps_plugin_close(all[i]);
		}
		free(all);
	}
	ps_registry_set_default(NULL);
	ps_registry_free(r);
	return rc ? PS_EXIT_FAILURE : PS_EXIT_OK;
}
