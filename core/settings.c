/* Reads and validates the core's part of the configuration tree. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "logging.h"
#include "settings.h"

static const char *const log_levels[] = { "error", "warn", "info", "debug", "trace", NULL };

static const struct ps_cfg_key daemon_keys[] = {
	{ "flush_interval", PS_CFG_DURATION, "15s", offsetof(struct ps_daemon_settings, flush_interval_ms),
	  NULL, "how often metrics are written to the sinks" },
	{ "drain_interval", PS_CFG_DURATION, "100ms",
	  offsetof(struct ps_daemon_settings, drain_interval_ms), NULL,
	  "how often ring buffers are drained when the kernel did not wake us" },
	{ "labels", PS_CFG_STRMAP, NULL, offsetof(struct ps_daemon_settings, labels), NULL,
	  "static labels added to every series" },
	{ "max_series_per_metric", PS_CFG_UINT, "10000",
	  offsetof(struct ps_daemon_settings, max_series_per_metric), NULL,
	  "label sets past this fold into one _other series" },
	{ "log_level", PS_CFG_STRING, "info", offsetof(struct ps_daemon_settings, log_level),
	  log_levels, "error, warn, info, debug or trace (debug and libbpf's own log)" },
	{ "series_ttl", PS_CFG_DURATION, "10m", offsetof(struct ps_daemon_settings, series_ttl_ms),
	  NULL, "counters and histograms not written for this long leave the registry; 0s: never" },
	{ "instance", PS_CFG_STRING, NULL, offsetof(struct ps_daemon_settings, instance), NULL,
	  "name of this periscoped among several on the host (--instance wins)" },
	{ NULL },
};

/* Read by hand: a map of metric name to a list of numbers. */
static const char *const daemon_ignored[] = { "buckets", NULL };
#define BUCKETS_MAX 64

struct match_config {
	char *exe;
	char *comm;
	char *unit;
};

static const struct ps_cfg_key match_keys[] = {
	{ "exe", PS_CFG_STRING, NULL, offsetof(struct match_config, exe), NULL, "executable path" },
	{ "comm", PS_CFG_STRING, NULL, offsetof(struct match_config, comm), NULL, "process name" },
	{ "unit", PS_CFG_STRING, NULL, offsetof(struct match_config, unit), NULL, "systemd unit" },
	{ NULL },
};

/* Sinks this build knows; the key under `sinks:` selects one. */
static const struct ps_sink_type *const sink_types[] = {
	&ps_sink_stdout,
	&ps_sink_prometheus_textfile,
	&ps_sink_syslog,
	&ps_sink_prometheus_http,
	&ps_sink_otlp,
	NULL,
};

static const char *const top_level_keys[] = { "daemon",	"capture", "plugins", "services",
					      "sinks",	"alerts",  NULL };

static bool is_label_name(const char *s)
{
	if (!s || !*s || (s[0] >= '0' && s[0] <= '9') || strncmp(s, "__", 2) == 0)
		return false;
	for (; *s; s++) {
		if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9')))
			return false;
	}
	return true;
}

bool ps_settings_instance_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len < 1 || len > 64 || name[0] == '.')
		return false;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
	       len;
}

static int check_top_level(const struct ps_cfg_node *tree, struct ps_cfg_error *err)
{
	for (size_t i = 0; i < ps_cfg_node_len(tree); i++) {
		const char *key = ps_cfg_node_key_at(tree, i);
		bool known = false;

		for (const char *const *k = top_level_keys; *k; k++)
			known = known || strcmp(*k, key) == 0;
		if (!known)
			return ps_cfg_errorf(err, ps_cfg_node_key_node_at(tree, i),
					     "unknown key '%s' (known: daemon, capture, plugins, services, "
					     "sinks, alerts)",
					     key);
	}
	return 0;
}

static bool is_metric_name(const char *s)
{
	if (!s || !*s || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (; *s; s++)
		if (!(*s == '_' || *s == ':' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

static int load_bucket_list(struct ps_bucket_override *o, const char *name,
			    const struct ps_cfg_node *list, struct ps_cfg_error *err)
{
	size_t n = ps_cfg_node_len(list);

	if (ps_cfg_node_kind(list) != PS_CFG_SEQ || n == 0 || n > BUCKETS_MAX)
		return ps_cfg_errorf(err, list,
				     "buckets.%s: expected a list of 1 to %d upper bounds", name,
				     BUCKETS_MAX);
	o->bounds = calloc(n, sizeof(*o->bounds));
	o->family = strdup(name);
	if (!o->bounds || !o->family)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct ps_cfg_node *item = ps_cfg_node_at(list, i);
		const char *text = ps_cfg_node_scalar(item);
		char *end = NULL;
		double v = text ? strtod(text, &end) : NAN;

		if (!text || end == text || *end || !isfinite(v))
			return ps_cfg_errorf(err, item, "buckets.%s: '%s' is not a number (base "
					     "units: seconds, bytes)", name, text ? text : "");
		if (i > 0 && v <= o->bounds[i - 1])
			return ps_cfg_errorf(err, item,
					     "buckets.%s: bounds must be strictly ascending", name);
		o->bounds[i] = v;
		o->n = i + 1;
	}
	return 0;
}

/* daemon.buckets: { http_server_request_duration_seconds: [0.0005, 0.001, ...] } */
static int load_buckets(struct ps_daemon_settings *d, const struct ps_cfg_node *n,
			struct ps_cfg_error *err)
{
	size_t len;

	if (!n || (ps_cfg_node_kind(n) == PS_CFG_SCALAR && !*ps_cfg_node_scalar(n)))
		return 0;
	if (ps_cfg_node_kind(n) != PS_CFG_MAP)
		return ps_cfg_errorf(err, n, "buckets: expected a map of histogram name to bounds");
	len = ps_cfg_node_len(n);
	d->buckets = calloc(len ? len : 1, sizeof(*d->buckets));
	if (!d->buckets)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		const char *name = ps_cfg_node_key_at(n, i);
		int rc;

		if (!is_metric_name(name))
			return ps_cfg_errorf(err, ps_cfg_node_at(n, i),
					     "buckets: '%s' is not a metric name", name);
		d->n_buckets++;
		rc = load_bucket_list(&d->buckets[i], name, ps_cfg_node_at(n, i), err);
		if (rc)
			return rc;
	}
	return 0;
}

static void free_buckets(struct ps_daemon_settings *d)
{
	for (size_t i = 0; i < d->n_buckets; i++) {
		free(d->buckets[i].family);
		free(d->buckets[i].bounds);
	}
	free(d->buckets);
	d->buckets = NULL;
	d->n_buckets = 0;
}

static int load_daemon(struct ps_settings *s, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *n = ps_cfg_node_get(s->tree, "daemon");
	struct ps_daemon_settings *d = &s->daemon;
	int rc;

	if (n && ps_cfg_node_kind(n) != PS_CFG_MAP && ps_cfg_node_scalar(n) && *ps_cfg_node_scalar(n))
		return ps_cfg_errorf(err, n, "daemon: expected a map");
	rc = ps_cfg_map_parse(n && ps_cfg_node_kind(n) == PS_CFG_MAP ? n : NULL, daemon_keys,
			      daemon_ignored, d, err);
	if (rc)
		return rc;
	if (d->series_ttl_ms && d->series_ttl_ms < d->flush_interval_ms)
		return ps_cfg_errorf(err, ps_cfg_node_get(n, "series_ttl"),
				     "series_ttl: must be 0s (never) or at least flush_interval");
	rc = load_buckets(d, ps_cfg_node_get(n, "buckets"), err);
	if (rc)
		return rc;
	if (d->flush_interval_ms < 100)
		return ps_cfg_errorf(err, ps_cfg_node_get(n, "flush_interval"),
				     "flush_interval: must be at least 100ms");
	if (d->drain_interval_ms < 1 || d->drain_interval_ms > d->flush_interval_ms)
		return ps_cfg_errorf(err, ps_cfg_node_get(n, "drain_interval"),
				     "drain_interval: must be between 1ms and flush_interval");
	if (d->instance && !ps_settings_instance_valid(d->instance))
		return ps_cfg_errorf(
			err, ps_cfg_node_get(n, "instance"),
			"instance: '%s' is not a usable name: 1 to 64 letters, digits, "
			"'_', '.' or '-', not starting with '.'",
			d->instance);
	for (size_t i = 0; i < d->labels.n; i++) {
		if (!is_label_name(d->labels.keys[i]) || strcmp(d->labels.keys[i], "service_name") == 0)
			return ps_cfg_errorf(err, ps_cfg_node_get(n, "labels"),
					     "labels: '%s' is not a usable label name",
					     d->labels.keys[i]);
	}
	return 0;
}

/* capture: { hooks: auto | socket | syscalls, ring_size: SIZE } */
struct capture_config {
	char *hooks;
	uint64_t ring_size;
};

static const char *const hooks_choices[] = { "auto", "socket", "syscalls", NULL };

static const struct ps_cfg_key capture_keys[] = {
	{ "hooks", PS_CFG_STRING, "auto", offsetof(struct capture_config, hooks), hooks_choices,
	  "auto: socket tracepoints where the kernel has them (6.3+), else syscall tracepoints" },
	{ .name = "ring_size",
	  .type = PS_CFG_SIZE,
	  .def = "2MiB",
	  .offset = offsetof(struct capture_config, ring_size),
	  .help = "the capture's ring buffer: a power of two; events past a full one are dropped "
		  "and counted",
	  .min = "4KiB",
	  .max = "1GiB" },
	{ NULL },
};

static int load_capture(struct ps_settings *s, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *n = ps_cfg_node_get(s->tree, "capture");
	struct capture_config c = { 0 };
	int rc;

	if (n && ps_cfg_node_kind(n) != PS_CFG_MAP && ps_cfg_node_scalar(n) && *ps_cfg_node_scalar(n))
		return ps_cfg_errorf(err, n, "capture: expected a map");
	rc = ps_cfg_map_parse(n && ps_cfg_node_kind(n) == PS_CFG_MAP ? n : NULL, capture_keys, NULL,
			      &c, err);
	if (!rc)
		rc = ps_capture_hooks_parse(c.hooks, &s->capture_hooks);
	/* The kernel takes ring buffers of a power-of-two number of pages only. */
	if (!rc && (c.ring_size & (c.ring_size - 1)))
		rc = ps_cfg_errorf(err, ps_cfg_node_get(n, "ring_size"),
				   "capture.ring_size: must be a power of two (4KiB, 64KiB, 2MiB...), "
				   "not %" PRIu64 " bytes",
				   c.ring_size);
	if (!rc)
		s->capture_ring_size = c.ring_size;
	ps_cfg_map_free(capture_keys, &c);
	return rc;
}

static int load_plugins(struct ps_settings *s, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *n = ps_cfg_node_get(s->tree, "plugins");

	if (!n || (ps_cfg_node_kind(n) == PS_CFG_SCALAR && !*ps_cfg_node_scalar(n)))
		return 0;
	if (ps_cfg_node_kind(n) != PS_CFG_MAP)
		return ps_cfg_errorf(err, n, "plugins: expected a map of plugin name to settings");
	for (size_t i = 0; i < ps_cfg_node_len(n); i++) {
		const struct ps_cfg_node *section = ps_cfg_node_at(n, i);
		bool enabled;

		if (ps_cfg_node_kind(section) == PS_CFG_SEQ ||
		    (ps_cfg_node_kind(section) == PS_CFG_SCALAR && *ps_cfg_node_scalar(section)))
			return ps_cfg_errorf(err, section, "plugins.%s: expected a map",
					     ps_cfg_node_key_at(n, i));
		if (!ps_settings_plugin(s, ps_cfg_node_key_at(n, i), &enabled, err) && *err->msg)
			return -EINVAL;
	}
	s->plugins = n;
	return 0;
}

static int load_service_rule(const struct ps_cfg_node *item, struct ps_service_rule *rule,
			     struct ps_cfg_error *err)
{
	struct match_config m = { 0 };
	const struct ps_cfg_node *match, *name;
	int rc;

	if (ps_cfg_node_kind(item) != PS_CFG_MAP)
		return ps_cfg_errorf(err, item, "services: each entry is a map with match and name");
	for (size_t i = 0; i < ps_cfg_node_len(item); i++) {
		const char *key = ps_cfg_node_key_at(item, i);

		if (strcmp(key, "match") && strcmp(key, "name"))
			return ps_cfg_errorf(err, ps_cfg_node_key_node_at(item, i),
					     "services: unknown key '%s' (known: match, name)",
					     key);
	}
	match = ps_cfg_node_get(item, "match");
	name = ps_cfg_node_get(item, "name");
	if (!name || !ps_cfg_node_scalar(name) || !*ps_cfg_node_scalar(name))
		return ps_cfg_errorf(err, name ? name : item, "services: name is required");
	if (!match || ps_cfg_node_kind(match) != PS_CFG_MAP)
		return ps_cfg_errorf(err, match ? match : item,
				     "services: match is required (a map of exe, comm, unit)");
	rc = ps_cfg_map_parse(match, match_keys, NULL, &m, err);
	if (rc)
		return rc;
	if (!m.exe && !m.comm && !m.unit) {
		ps_cfg_map_free(match_keys, &m);
		return ps_cfg_errorf(err, match, "services: match needs at least one of exe, comm, unit");
	}
	rule->exe = m.exe;
	rule->comm = m.comm;
	rule->unit = m.unit;
	rule->name = strdup(ps_cfg_node_scalar(name));
	return rule->name ? 0 : -ENOMEM;
}

static int load_services(struct ps_settings *s, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *n = ps_cfg_node_get(s->tree, "services");
	size_t len;

	if (!n || (ps_cfg_node_kind(n) == PS_CFG_SCALAR && !*ps_cfg_node_scalar(n)))
		return 0;
	if (ps_cfg_node_kind(n) != PS_CFG_SEQ)
		return ps_cfg_errorf(err, n, "services: expected a list of {match, name}");
	len = ps_cfg_node_len(n);
	s->services = calloc(len ? len : 1, sizeof(*s->services));
	if (!s->services)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		int rc = load_service_rule(ps_cfg_node_at(n, i), &s->services[i], err);

		if (rc)
			return rc;
		s->n_services++;
	}
	return 0;
}

static const struct ps_sink_type *find_sink_type(const char *name)
{
	for (const struct ps_sink_type *const *t = sink_types; *t; t++)
		if (strcmp((*t)->name, name) == 0)
			return *t;
	return NULL;
}

static int load_sink(struct ps_settings *s, const char *name, const struct ps_cfg_node *key,
		     const struct ps_cfg_node *section, struct ps_cfg_error *err)
{
	const struct ps_sink_type *type = find_sink_type(name);
	struct ps_sink_settings *sink = &s->sinks[s->n_sinks];
	int rc;

	if (!type)
		return ps_cfg_errorf(err, key,
				     "sinks: '%s' is not a sink this periscoped has "
				     "(known: stdout, prometheus_textfile, syslog)",
				     name);
	if (section && ps_cfg_node_kind(section) != PS_CFG_MAP) {
		if (ps_cfg_node_kind(section) != PS_CFG_SCALAR || *ps_cfg_node_scalar(section))
			return ps_cfg_errorf(err, section, "sinks.%s: expected a map", name);
		section = NULL;
	}
	sink->config = calloc(1, type->config_size ? type->config_size : 1);
	if (!sink->config)
		return -ENOMEM;
	sink->type = type;
	s->n_sinks++;
	rc = ps_cfg_map_parse(section, type->config_map, NULL, sink->config, err);
	if (rc) {
		free(sink->config);
		s->n_sinks--;
		return rc;
	}
	/* Parsed: ps_settings_free owns the config from here, whatever check says. */
	return type->check ? type->check(sink->config, section, err) : 0;
}

static int load_sinks(struct ps_settings *s, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *n = ps_cfg_node_get(s->tree, "sinks");
	size_t len;

	if (!n) {
		/* No sinks section at all: show something rather than nothing. */
		s->sinks = calloc(1, sizeof(*s->sinks));
		return s->sinks ? load_sink(s, "stdout", NULL, NULL, err) : -ENOMEM;
	}
	if (ps_cfg_node_kind(n) == PS_CFG_SCALAR && !*ps_cfg_node_scalar(n))
		return 0;
	if (ps_cfg_node_kind(n) != PS_CFG_MAP)
		return ps_cfg_errorf(err, n, "sinks: expected a map of sink name to settings");
	len = ps_cfg_node_len(n);
	s->sinks = calloc(len ? len : 1, sizeof(*s->sinks));
	if (!s->sinks)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		int rc = load_sink(s, ps_cfg_node_key_at(n, i), ps_cfg_node_key_node_at(n, i),
				   ps_cfg_node_at(n, i), err);

		if (rc)
			return rc;
	}
	return 0;
}

static int load_alerts(struct ps_settings *s, struct ps_cfg_error *err)
{
	return ps_alerts_parse(ps_cfg_node_get(s->tree, "alerts"), &s->alerts, err);
}

static char *confd_beside(const char *path)
{
	char *copy = strdup(path), *dir, *out = NULL;

	if (!copy)
		return NULL;
	dir = dirname(copy);
	if (asprintf(&out, "%s/conf.d", dir) < 0)
		out = NULL;
	free(copy);
	return out;
}

static struct ps_cfg_node *load_tree(const char *path, struct ps_cfg_error *err)
{
	struct ps_cfg_node *tree;
	char *confd;

	if (!path)
		return ps_cfg_load_string("<embedded default>", ps_default_config,
					  strlen(ps_default_config), err);
	confd = confd_beside(path);
	if (!confd) {
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		return NULL;
	}
	tree = ps_cfg_load_all(path, confd, err);
	free(confd);
	return tree;
}

int ps_settings_load(struct ps_settings *s, const char *path, struct ps_cfg_error *err)
{
	int rc;

	memset(s, 0, sizeof(*s));
	err->msg[0] = '\0';
	s->tree = load_tree(path, err);
	if (!s->tree)
		return errno ? -errno : -EINVAL;
	if (ps_cfg_node_kind(s->tree) != PS_CFG_MAP)
		rc = ps_cfg_errorf(err, s->tree, "expected a map at the top level");
	else
		rc = check_top_level(s->tree, err);
	if (!rc)
		rc = load_daemon(s, err);
	if (!rc)
		rc = load_capture(s, err);
	if (!rc)
		rc = load_plugins(s, err);
	if (!rc)
		rc = load_services(s, err);
	if (!rc)
		rc = load_sinks(s, err);
	if (!rc)
		rc = load_alerts(s, err);
	if (rc) {
		if (!*err->msg)
			snprintf(err->msg, sizeof(err->msg), "%s: %s", path ? path : "<embedded default>",
				 strerror(-rc));
		ps_settings_free(s);
	}
	return rc;
}

void ps_settings_free(struct ps_settings *s)
{
	free_buckets(&s->daemon);
	ps_cfg_map_free(daemon_keys, &s->daemon);
	for (size_t i = 0; i < s->n_services; i++) {
		free(s->services[i].exe);
		free(s->services[i].comm);
		free(s->services[i].unit);
		free(s->services[i].name);
	}
	free(s->services);
	for (size_t i = 0; i < s->n_sinks; i++) {
		ps_cfg_map_free(s->sinks[i].type->config_map, s->sinks[i].config);
		free(s->sinks[i].config);
	}
	free(s->sinks);
	ps_alerts_free(s->alerts);
	ps_cfg_node_free(s->tree);
	memset(s, 0, sizeof(*s));
}

const struct ps_cfg_node *ps_settings_plugin(const struct ps_settings *s, const char *name,
					     bool *enabled, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *plugins = ps_cfg_node_get(s->tree, "plugins");
	const struct ps_cfg_node *section = ps_cfg_node_get(plugins, name);
	const struct ps_cfg_node *flag;

	*enabled = true;
	if (err)
		err->msg[0] = '\0';
	if (!section || ps_cfg_node_kind(section) != PS_CFG_MAP)
		return NULL;
	flag = ps_cfg_node_get(section, "enabled");
	if (flag && (!ps_cfg_node_scalar(flag) || ps_cfg_parse_bool(ps_cfg_node_scalar(flag), enabled))) {
		if (err)
			ps_cfg_errorf(err, flag, "plugins.%s.enabled: expected true or false", name);
		*enabled = false;
		return NULL;
	}
	return section;
}
