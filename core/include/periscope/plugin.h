/*
 * periscope plugin API: the descriptor.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * `periscope_plugin`, a const struct ps_plugin_desc. The loader checks
 * abi_version and struct_size before it reads anything else, then requires
 * name to equal the file name without ".so".
 *
 * Life cycle, all on the loop thread:
 *   init(config)  parse nothing (the core filled config from config_map);
 *                 open and load the BPF object. Keep state with ps_plugin_set_data.
 *   start         attach programs, register ring buffers and metric families.
 *   collect       optional, every flush, after ring buffers were drained: read maps.
 *   stop          detach; no more events after it returns.
 *   destroy       free everything.
 * Any callback that returns -errno marks the plugin down
 * (periscope_plugin_up{plugin} 0); the daemon goes on with the others.
 */
#ifndef PERISCOPE_PLUGIN_H
#define PERISCOPE_PLUGIN_H

#include <periscope/api.h>

#include <stddef.h>
#include <stdint.h>

#include <periscope/bpf.h>
#include <periscope/capture.h>
#include <periscope/config.h>
#include <periscope/events.h>
#include <periscope/log.h>
#include <periscope/metrics.h>
#include <periscope/proc.h>

#define PS_PLUGIN_ABI_VERSION 3u /* 2: periscope/capture.h, owned event subscriptions;
				  3: exchange conn_id/seq/tracestate, span batches */
#define PS_PLUGIN_SYMBOL "periscope_plugin"

struct ps_plugin;

struct ps_plugin_desc {
	uint32_t abi_version; /* PS_PLUGIN_ABI_VERSION; first, so the loader can check it */
	uint32_t struct_size; /* sizeof(struct ps_plugin_desc) */
	const char *name;
	const char *version;
	const char *description;
	const struct ps_cfg_key *config_map; /* NULL: the section takes no keys */
	size_t config_size;                  /* size of the struct config_map fills */
	int (*init)(struct ps_plugin *p, const void *config);
	int (*start)(struct ps_plugin *p);
	int (*collect)(struct ps_plugin *p); /* may be NULL */
	void (*stop)(struct ps_plugin *p);
	void (*destroy)(struct ps_plugin *p);
};

/* Declares the one exported symbol; use once per plugin. */
#define PS_PLUGIN_DEFINE(...)                                                            \
	__attribute__((visibility("default"))) const struct ps_plugin_desc periscope_plugin = { \
		.abi_version = PS_PLUGIN_ABI_VERSION,                                            \
		.struct_size = sizeof(struct ps_plugin_desc),                                    \
		__VA_ARGS__                                                                      \
	}

PS_API void ps_plugin_set_data(struct ps_plugin *p, void *data);
PS_API void *ps_plugin_data(const struct ps_plugin *p);
PS_API const char *ps_plugin_name(const struct ps_plugin *p);

#endif
