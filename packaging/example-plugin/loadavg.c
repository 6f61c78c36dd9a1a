/*
 * loadavg: an out-of-tree periscope plugin, built against the installed
 * periscope-dev package (see README.md). Each flush it reads /proc/loadavg
 * and publishes the 1, 5 and 15 minute load averages as a gauge; it has no
 * BPF program, so it shows only the plugin contract: one exported
 * descriptor, a config map the core parses, and metrics in the registry.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/plugin.h>

#define NAME "loadavg"

struct loadavg_config {
	char *path;          /* a key of the plugins.loadavg section */
	char *service_name;
};

static const struct ps_cfg_key loadavg_keys[] = {
	{ .name = "path", .type = PS_CFG_STRING, .def = "/proc/loadavg",
	  .offset = offsetof(struct loadavg_config, path), .help = "where the load averages are read" },
	{ .name = "service_name", .type = PS_CFG_STRING, .def = "host",
	  .offset = offsetof(struct loadavg_config, service_name),
	  .help = "service_name label of the series" },
	{ .name = NULL },
};

struct loadavg {
	const struct loadavg_config *cfg; /* owned by the core until destroy */
	struct ps_metric *load;
	struct ps_metric *reads;
};

static int loadavg_init(struct ps_plugin *p, const void *config)
{
	struct loadavg *la = calloc(1, sizeof(*la));

	if (!la)
		return -ENOMEM;
	la->cfg = config;
	ps_plugin_set_data(p, la);
	return 0;
}

static int loadavg_start(struct ps_plugin *p)
{
	static const char *const load_labels[] = { "service_name", "period", NULL };
	static const char *const reads_labels[] = { "service_name", NULL };
	struct loadavg *la = ps_plugin_data(p);

	la->load = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_example_load_average",
		.help = "Run-queue load average over the period, from /proc/loadavg",
		.type = PS_METRIC_GAUGE,
		.labels = load_labels,
	});
	la->reads = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_example_loadavg_reads_total",
		.help = "Times the loadavg example plugin read its file",
		.type = PS_METRIC_COUNTER,
		.labels = reads_labels,
	});
	if (!la->load || !la->reads)
		return -errno;
	ps_info(NAME, "reading %s every flush", la->cfg->path);
	return 0;
}

/* Every flush; an error marks the plugin down (periscope_plugin_up 0). */
static int loadavg_collect(struct ps_plugin *p)
{
	struct loadavg *la = ps_plugin_data(p);
	const char *service = la->cfg->service_name;
	double avg[3];
	FILE *f = fopen(la->cfg->path, "re");
	int n, err;

	if (!f) {
		err = errno;
		ps_error(NAME, "cannot open %s: %s", la->cfg->path, strerror(err));
		return -err;
	}
	n = fscanf(f, "%lf %lf %lf", &avg[0], &avg[1], &avg[2]);
	fclose(f);
	if (n != 3) {
		ps_error(NAME, "%s: not in the format of /proc/loadavg", la->cfg->path);
		return -EINVAL;
	}
	ps_metric_set(la->load, (const char *[]){ service, "1m" }, avg[0]);
	ps_metric_set(la->load, (const char *[]){ service, "5m" }, avg[1]);
	ps_metric_set(la->load, (const char *[]){ service, "15m" }, avg[2]);
	ps_metric_add(la->reads, (const char *[]){ service }, 1);
	return 0;
}

static void loadavg_stop(struct ps_plugin *p)
{
}

static void loadavg_destroy(struct ps_plugin *p)
{
	free(ps_plugin_data(p));
}

PS_PLUGIN_DEFINE(
	.name = NAME,
	.version = "1.0.0",
	.description = "example out-of-tree plugin: load averages from /proc/loadavg",
	.config_map = loadavg_keys,
	.config_size = sizeof(struct loadavg_config),
	.init = loadavg_init,
	.start = loadavg_start,
	.collect = loadavg_collect,
	.stop = loadavg_stop,
	.destroy = loadavg_destroy,
);
