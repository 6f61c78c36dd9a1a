/* Core side of process metadata: service rules, cache sweeping. */
#ifndef PS_CORE_PROCINFO_H
#define PS_CORE_PROCINFO_H

#include <stddef.h>
#include <stdint.h>

#include <periscope/proc.h>

/* One `services:` entry. Every match field that is set must match. */
struct ps_service_rule {
	char *exe;   /* full path of /proc/PID/exe */
	char *comm;  /* /proc/PID/comm (the kernel's 15-char task name) */
	char *unit;  /* systemd unit name, e.g. "nginx.service" */
	char *name;  /* the service_name to give */
};

/* Replaces the rules (copied) and empties the cache. 0 or -ENOMEM. */
int ps_proc_set_rules(const struct ps_service_rule *rules, size_t n);
/* Evicts cached processes that exited (called each flush). */
void ps_proc_sweep(void);
/* Processes the name cache holds now (periscope_proc_cache_entries). */
size_t ps_proc_cache_entries(void);
/* Frees the cache and the rules. */
void ps_proc_cleanup(void);

/* For tests: the proc filesystem root (default "/proc"). */
void ps_proc_set_root(const char *root);

#endif
