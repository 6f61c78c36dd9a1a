/*
 * A well-formed plugin for the loader tests. start counts itself in
 * test_good_starts_total; stop and destroy are counted too, so the tests can
 * see which callbacks the loader ran. start_error makes start fail (after
 * "attaching") to exercise the loader's clean-up.
 */
#include <stddef.h>
#include <stdint.h>

#include <periscope/plugin.h>

/* Mirrored in tests/unit/test_loader.c. */
struct good_config {
	uint64_t answer;
	char *greeting;
	int64_t start_error;
};

static const struct ps_cfg_key good_keys[] = {
	{ .name = "answer", .type = PS_CFG_UINT, .def = "42",
	  .offset = offsetof(struct good_config, answer), .help = "the answer", .max = "1000" },
	{ .name = "greeting", .type = PS_CFG_STRING, .def = "hello",
	  .offset = offsetof(struct good_config, greeting), .help = "what to say" },
	{ .name = "start_error", .type = PS_CFG_INT, .def = "0",
	  .offset = offsetof(struct good_config, start_error), .help = "start returns this" },
	{ .name = NULL },
};

static void count(const char *name)
{
	static const char *const labels[] = { "service_name", NULL };
	const char *values[] = { "test" };
	struct ps_metric_desc desc = {
		.name = name,
		.help = "loader test plugin callbacks",
		.type = PS_METRIC_COUNTER,
		.labels = labels,
	};
	struct ps_metric *m = ps_metric_register(&desc);

	if (m)
		ps_metric_add(m, values, 1);
}

static int good_init(struct ps_plugin *p, const void *config)
{
	ps_plugin_set_data(p, (void *)config);
	return 0;
}

static int good_start(struct ps_plugin *p)
{
	const struct good_config *cfg = ps_plugin_data(p);

	if (cfg->start_error)
		return (int)cfg->start_error;
	count("test_good_starts_total");
	return 0;
}

static void good_stop(struct ps_plugin *p)
{
	count("test_good_stops_total");
}

static void good_destroy(struct ps_plugin *p)
{
	count("test_good_destroys_total");
}

PS_PLUGIN_DEFINE(
	.name = "good",
	.version = "1.0",
	.description = "a plugin the loader accepts",
	.config_map = good_keys,
	.config_size = sizeof(struct good_config),
	.init = good_init,
	.start = good_start,
	.stop = good_stop,
	.destroy = good_destroy,
);
