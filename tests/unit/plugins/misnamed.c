/* Installed as misnamed.so, calls itself somebody_else: the loader must refuse it. */
#include <periscope/plugin.h>

static int misnamed_init(struct ps_plugin *p, const void *config)
{
	return 0;
}

static int misnamed_start(struct ps_plugin *p)
{
	return 0;
}

static void misnamed_stop(struct ps_plugin *p)
{
}

PS_PLUGIN_DEFINE(
	.name = "somebody_else",
	.init = misnamed_init,
	.start = misnamed_start,
	.stop = misnamed_stop,
	.destroy = misnamed_stop,
);
