/* The configuration periscoped runs when no configuration file exists. */
#include "settings.h"

const char ps_default_config[] =
	"# periscope embedded default: every plugin in the plugin directory, a table on stdout.\n"
	"daemon:\n"
	"  flush_interval: 10s\n"
	"plugins: {}\n"
	"sinks:\n"
	"  stdout: { format: table }\n";
