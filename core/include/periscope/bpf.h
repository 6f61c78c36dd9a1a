/*
 * periscope plugin API: services for a plugin's BPF object.
 *
 * The core owns the loop: plugins hand it their ring buffers and it drains
 * them on a short timer (and when the kernel side wakes it past a watermark),
 * counting every sample into periscope_events_total{plugin}. Reservation
 * failures that the kernel side counts in its drop map are exported as
 * periscope_events_dropped_total{plugin,reason="ringbuf_full"}.
 */
#ifndef PERISCOPE_BPF_H
#define PERISCOPE_BPF_H

#include <periscope/api.h>

#include <stddef.h>
#include <stdint.h>

struct ps_plugin;

/* Same shape as libbpf's ring_buffer_sample_fn. */
typedef int (*ps_ringbuf_fn)(void *ctx, void *data, size_t size);

/* 0 or -errno. */
PS_API int ps_bpf_ringbuf_add(struct ps_plugin *p, int map_fd, ps_ringbuf_fn fn, void *ctx);
/* A BPF_MAP_TYPE_PERCPU_ARRAY of u64, key 0 = ring buffer reservation failures. */
PS_API int ps_bpf_drops_watch(struct ps_plugin *p, int map_fd);
/* Sums a per-CPU u64 array slot. 0 or -errno. */
PS_API int ps_bpf_percpu_sum(int map_fd, uint32_t key, uint64_t *out);
/* Drains every ring buffer now (the core does this before each collect). */
PS_API void ps_bpf_drain(void);

/* Where cgroup v2 is mounted ("/sys/fs/cgroup/unified" here), or NULL. */
PS_API const char *ps_bpf_cgroup2_path(void);
/* The pid of periscoped, for BPF programs that must skip their own process. */
PS_API uint32_t ps_bpf_self_tgid(void);

#endif
