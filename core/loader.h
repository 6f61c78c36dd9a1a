/*
 * The plugin loader and the life cycle around each plugin. Every failure is
 * logged with its reason, sets periscope_plugin_up{plugin} 0, and leaves the
 * other plugins alone.
 */
#ifndef PS_CORE_LOADER_H
#define PS_CORE_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include <periscope/plugin.h>

#include "cfg.h"

enum ps_plugin_state {
	PS_PLUGIN_OPENED,   /* dlopen'ed and checked */
	PS_PLUGIN_INITED,
	PS_PLUGIN_RUNNING,
	PS_PLUGIN_STOPPED,
	PS_PLUGIN_DOWN,     /* failed; see reason */
};

struct ps_plugin {
	char *name;                       /* file name without ".so" */
	char *path;
	void *dl;
	const struct ps_plugin_desc *desc;
	void *config;                     /* desc->config_size bytes, filled from config_map */
	void *data;                       /* ps_plugin_set_data */
	enum ps_plugin_state state;
	bool inited;                      /* init succeeded: destroy is owed */
	char reason[256];                 /* why it is down */
};

/*
 * What core services (ring buffers, the capture, event subscriptions) hold
 * for a plugin is theirs to release: each registers a hook, and the loader
 * calls every hook when a plugin stops, after its stop callback and before
 * its destroy. 0, or -ENOSPC past PS_PLUGIN_RELEASE_HOOKS.
 */
#define PS_PLUGIN_RELEASE_HOOKS 8
typedef void (*ps_plugin_release_fn)(struct ps_plugin *p);
int ps_plugin_release_hook(ps_plugin_release_fn fn);

/*
 * dlopen()s path after checking that neither it nor its directory is writable
 * by anyone but root (or the daemon's own user), then checks the descriptor:
 * the symbol exists, abi_version and struct_size match (read before anything
 * else), name equals the file name without ".so", callbacks init/start/stop/
 * destroy are set. NULL with errno set and the reason logged.
 */
struct ps_plugin *ps_plugin_open(const char *path);

/*
 * Opens every *.so in dir, in file-name order. Plugins that fail to open are
 * logged, counted as down (periscope_plugin_up 0 under their file name) and
 * left out of *out; when refused is not NULL their names (file names without
 * ".so") are added to it, for the daemon's status (free with
 * ps_plugin_refused_free). 0 or -errno when dir itself cannot be read.
 */
int ps_plugin_scan(const char *dir, struct ps_plugin ***out, size_t *n, struct ps_strlist *refused);
void ps_plugin_refused_free(struct ps_strlist *refused);

/*
 * Fills p->config from the plugin's section (NULL = defaults) with its
 * config_map; the key "enabled" belongs to the core and is skipped.
 */
int ps_plugin_configure(struct ps_plugin *p, const struct ps_cfg_node *section,
			struct ps_cfg_error *err);

/* Life cycle. Each returns 0 or -errno; on failure the plugin is marked down. */
int ps_plugin_init(struct ps_plugin *p);
/*
 * init() for an instance prepared beside a running one (a reload): on failure
 * the reason goes to p->reason and the return value, but the plugin is not
 * marked down, since the running instance of the same name is still up. The
 * caller closes p, or marks it down itself.
 */
int ps_plugin_try_init(struct ps_plugin *p);
int ps_plugin_start(struct ps_plugin *p);
int ps_plugin_collect(struct ps_plugin *p);
void ps_plugin_stop(struct ps_plugin *p);
/* Destroys (if inited), frees config, dlclose()s and frees p. */
void ps_plugin_close(struct ps_plugin *p);

/* Marks p down with a reason (logged, periscope_plugin_up 0). */
void ps_plugin_mark_down(struct ps_plugin *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Sets periscope_plugin_up{plugin=name} (the loader calls this itself). */
void ps_plugin_report_up(const char *name, bool up);
/* Removes the periscope_plugin_up series of a plugin no longer configured. */
void ps_plugin_report_gone(const char *name);

#endif
