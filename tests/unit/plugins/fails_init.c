/* Loads fine, takes no settings, and fails init as a plugin without its device would. */
#include <errno.h>

#include <periscope/plugin.h>

static int fails_init_init(struct ps_plugin *p, const void *config)
{
	return -ENODEV;
}

static int fails_init_start(struct ps_plugin *p)
{
	return 0;
}

static void fails_init_stop(struct ps_plugin *p)
{
}

PS_PLUGIN_DEFINE(
	.name = "fails_init",
	.version = "1.0",
	.init = fails_init_init,
	.start = fails_init_start,
	.stop = fails_init_stop,
	.destroy = fails_init_stop,
);
