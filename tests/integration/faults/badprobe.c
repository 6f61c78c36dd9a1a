/*
 * badprobe: a plugin whose attach fails, for faults.sh. It loads a uprobe
 * program and attaches it to `function` in `binary` (config), as any plugin
 * that traces a library does; the test names a binary that does not exist,
 * so start() fails with the reason and the core marks the plugin down.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include <periscope/plugin.h>

#include "badprobe.skel.h"

#define SUBSYS "badprobe"

struct badprobe_config {
	char *binary;
	char *function;
};

struct badprobe {
	const struct badprobe_config *cfg;
	struct badprobe_bpf *skel;
	struct bpf_link *link;
};

static int badprobe_init(struct ps_plugin *p, const void *config)
{
	struct badprobe *st = calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	st->cfg = config;
	st->skel = badprobe_bpf__open_and_load();
	if (!st->skel) {
		err = -errno;
		ps_error(SUBSYS, "load failed: %s", strerror(-err));
		free(st);
		return err;
	}
	ps_plugin_set_data(p, st);
	return 0;
}

static int badprobe_start(struct ps_plugin *p)
{
	struct badprobe *st = ps_plugin_data(p);
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = st->cfg->function);
	int err;

	st->link = bpf_program__attach_uprobe_opts(st->skel->progs.badprobe_entry, -1,
						   st->cfg->binary, 0, &opts);
	if (!st->link) {
		err = -errno;
		ps_error(SUBSYS, "cannot attach a uprobe to %s in %s: %s", st->cfg->function,
			 st->cfg->binary, strerror(-err));
		return err;
	}
	return 0;
}

static void badprobe_stop(struct ps_plugin *p)
{
	struct badprobe *st = ps_plugin_data(p);

	bpf_link__destroy(st->link);
	st->link = NULL;
}

static void badprobe_destroy(struct ps_plugin *p)
{
	struct badprobe *st = ps_plugin_data(p);

	if (!st)
		return;
	bpf_link__destroy(st->link);
	badprobe_bpf__destroy(st->skel);
	free(st);
	ps_plugin_set_data(p, NULL);
}

static const struct ps_cfg_key badprobe_config_map[] = {
	{ .name = "binary",
	  .type = PS_CFG_STRING,
	  .def = "/nonexistent/pstest-badprobe",
	  .offset = offsetof(struct badprobe_config, binary),
	  .help = "the file the uprobe goes on" },
	{ .name = "function",
	  .type = PS_CFG_STRING,
	  .def = "pstest_no_such_function",
	  .offset = offsetof(struct badprobe_config, function),
	  .help = "the symbol the uprobe goes on" },
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "badprobe", .version = "0",
		 .description = "a uprobe on a target that does not exist (faults.sh)",
		 .config_map = badprobe_config_map, .config_size = sizeof(struct badprobe_config),
		 .init = badprobe_init, .start = badprobe_start, .stop = badprobe_stop,
		 .destroy = badprobe_destroy, );
