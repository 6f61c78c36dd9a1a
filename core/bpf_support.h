/* Core BPF services: tracefs, cgroup v2, libbpf logging, ring buffers on the loop. */
#ifndef PS_CORE_BPF_SUPPORT_H
#define PS_CORE_BPF_SUPPORT_H

#include <uv.h>

#include <periscope/bpf.h>

struct ps_plugin;

/*
 * Routes libbpf's log through ps_log, mounts tracefs at /sys/kernel/tracing
 * when it is missing and finds the cgroup v2 mount. 0 or -errno with a clear
 * message logged.
 */
int ps_bpf_setup(uv_loop_t *loop, uint64_t drain_interval_ms);
void ps_bpf_teardown(void);
/* A new drain period (after a reload). */
void ps_bpf_set_drain_interval(uint64_t drain_interval_ms);

/*
 * Ring buffers and drop maps of an owner that is not a plugin (the capture):
 * owner is any unique pointer, name the plugin label of its events metrics.
 */
int ps_bpf_owner_ringbuf_add(const void *owner, const char *name, int map_fd, ps_ringbuf_fn fn,
			     void *ctx);
int ps_bpf_owner_drops_watch(const void *owner, const char *name, int map_fd);
/* Frees an owner's ring buffers and drop watches (a plugin's when it stops). */
void ps_bpf_release(const void *owner);
/* A loader release hook: what a plugin registered here goes when it stops. */
void ps_bpf_plugin_release(struct ps_plugin *p);
/* periscope_decode_errors_total{plugin=name} += n. */
void ps_bpf_count_decode_errors(const char *name, uint64_t n);
/* Reads drop maps into periscope_events_dropped_total (each flush). */
void ps_bpf_collect_drops(void);

/* Helpers exposed for tests. */
int ps_bpf_find_cgroup2(const char *mountinfo_path, char *out, size_t len);

#endif
