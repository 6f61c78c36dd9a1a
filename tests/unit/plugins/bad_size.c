/* A descriptor whose size does not match this ABI's struct. */
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

/* Written out by hand: PS_PLUGIN_DEFINE would set the right size. */
__attribute__((visibility("default"))) const struct ps_plugin_desc periscope_plugin = {
	.abi_version = PS_PLUGIN_ABI_VERSION,
	.struct_size = 7,
	.name = "bad_size",
	.init = bad_init,
	.start = bad_start,
	.stop = bad_stop,
	.destroy = bad_stop,
};
