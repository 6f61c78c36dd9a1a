/*
 * What the daemon tells its supervisor: sd_notify(3) messages to systemd
 * (written directly to $NOTIFY_SOCKET, no libsystemd), the outcome of a
 * reload for the unit's ExecReload, the plugin health summary that STATUS=
 * and the prometheus_http sink's /healthz both report, and the capability
 * drop once the plugins are loaded.
 */
#ifndef PS_CORE_NOTIFY_H
#define PS_CORE_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>

struct ps_registry;

/* Plugins up and plugins counted, from periscope_plugin_up in r. */
struct ps_plugin_health {
	size_t up;
	size_t total;
	size_t series;    /* every series in r */
	char down[256];   /* "http, mysql" (names of plugins reporting 0), "" when none */
};

void ps_notify_plugin_health(const struct ps_registry *r, struct ps_plugin_health *h);

/*
 * Sends STATE (e.g. "READY=1", "RELOADING=1", "STOPPING=1"; NULL: none) followed by
 * "STATUS=<n> of <m> plugins up, <k> series" (from r, when r is not NULL) to
 * $NOTIFY_SOCKET. 0 when sent or when there is no NOTIFY_SOCKET (not under
 * systemd), -errno otherwise (logged once). Never blocks.
 */
int ps_notify_state(const char *state, const struct ps_registry *r);

/*
 * For the unit's ExecReload, which waits for it: writes "ok" or "rejected"
 * to $RUNTIME_DIRECTORY/reload-status (nothing without RUNTIME_DIRECTORY),
 * then tells systemd READY=1 again. 0 or -errno.
 */
int ps_notify_reloaded(bool ok, const struct ps_registry *r);

/*
 * Once the plugins are loaded and attached: keeps only the capabilities a
 * reload and the running plugins still need (CAP_BPF, CAP_PERFMON,
 * CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH) in the permitted and
 * effective sets, clears the inheritable and ambient sets, narrows the
 * bounding set when allowed (CAP_SETPCAP) and sets no_new_privs.
 * 0 or -errno (logged).
 */
int ps_notify_drop_capabilities(void);

#endif
