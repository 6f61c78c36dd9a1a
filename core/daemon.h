/* The daemon: configuration, plugins and sinks around one libuv loop. */
#ifndef PS_CORE_DAEMON_H
#define PS_CORE_DAEMON_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of DESIGN.md. */
enum {
	PS_EXIT_OK = 0,
	PS_EXIT_FAILURE = 1,
	PS_EXIT_USAGE = 2,
	PS_EXIT_CONFIG = 78,
};

struct ps_daemon_opts {
	const char *config_path;   /* NULL: the default path, or the embedded default */
	const char *plugin_dir;    /* NULL: the installed plugin directory */
	const char *log_level;     /* NULL: from the configuration */
	uint64_t duration_s;       /* 0: run until SIGTERM/SIGINT */
	const char *instance;      /* NULL: daemon.instance, else the default instance */
};

/* Each returns a process exit code. */
int ps_daemon_run(const struct ps_daemon_opts *o);
int ps_daemon_check_config(const struct ps_daemon_opts *o);
int ps_daemon_list_plugins(const struct ps_daemon_opts *o);

/*
 * One line on the running daemon's plugins, e.g.
 * "2 of 3 plugins up (http down: init failed: Invalid argument)", or
 * "starting" before they run. For systemd's STATUS= and the like; call it on
 * the loop thread. Returns the number of plugins up.
 */
size_t ps_daemon_status(char *buf, size_t len);

#endif
