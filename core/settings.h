/*
 * The core's reading of the configuration tree: daemon, plugins, services,
 * sinks, alerts. Validation is complete here, so --check-config and SIGHUP
 * can reject a bad file before anything running is touched.
 */
#ifndef PS_CORE_SETTINGS_H
#define PS_CORE_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include <periscope/config.h>

#include "alerts.h"
#include "capture/capture.h"
#include "cfg.h"
#include "procinfo.h"
#include "sinks/sink.h"

struct ps_daemon_settings {
	uint64_t flush_interval_ms;
	uint64_t drain_interval_ms;
	struct ps_strmap labels;
	uint64_t max_series_per_metric;
	char *log_level;
	uint64_t series_ttl_ms;              /* 0: series never expire */
	struct ps_bucket_override *buckets;  /* daemon.buckets: explicit buckets per family */
	size_t n_buckets;
	char *instance; /* NULL: the default instance */
};

struct ps_sink_settings {
	const struct ps_sink_type *type;
	void *config; /* type->config_size bytes */
};

struct ps_settings {
	struct ps_cfg_node *tree;      /* owns every node below */
	struct ps_daemon_settings daemon;
	const struct ps_cfg_node *plugins; /* map: name -> section, may be NULL */
	struct ps_service_rule *services;
	size_t n_services;
	struct ps_sink_settings *sinks;
	size_t n_sinks;
	struct ps_alert_rules *alerts;     /* NULL: no rules */
	enum ps_capture_hooks capture_hooks; /* capture.hooks */
	uint64_t capture_ring_size;	     /* capture.ring_size: bytes, a power of two */
};

/* The configuration used when no file exists. */
extern const char ps_default_config[];

/*
 * Reads path (or the embedded default when path is NULL) plus the conf.d
 * directory beside it, and validates everything the core owns. Plugin
 * sections are validated by the loader against each plugin's config map.
 */
int ps_settings_load(struct ps_settings *s, const char *path, struct ps_cfg_error *err);
void ps_settings_free(struct ps_settings *s);

/*
 * An instance name (--instance, daemon.instance) names a file under the
 * runtime directory: 1 to 64 of [A-Za-z0-9_.-], not starting with a dot.
 */
bool ps_settings_instance_valid(const char *name);

/* The plugin's section (NULL when absent) and whether it is enabled. */
const struct ps_cfg_node *ps_settings_plugin(const struct ps_settings *s, const char *name,
					     bool *enabled, struct ps_cfg_error *err);

#endif
