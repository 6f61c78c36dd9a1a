/* A plugin built for another ABI: the loader must reject it before reading further. */
#include <periscope/plugin.h>

static int bad_init(struct ps_plugin *p, const void *config)
{
	return 0;
}

static int bad_start(struct ps_plugin *p)
{
	return 0;
}

static void bad_stop(struct ps_plugin *p)
{
}

/* Written out by hand: PS_PLUGIN_DEFINE would set the right version. */
__attribute__((visibility("default"))) const struct ps_plugin_desc periscope_plugin = {
	.abi_version = 999,
	.struct_size = sizeof(struct ps_plugin_desc),
	.name = "bad_abi",
	.init = bad_init,
	.start = bad_start,
	.stop = bad_stop,
	.destroy = bad_stop,
};
