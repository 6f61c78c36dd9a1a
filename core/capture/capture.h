/*
 * The core socket capture, the daemon's side of it (plugins see
 * periscope/capture.h). Loaded when the first protocol registers, unloaded
 * with the last.
 */
#ifndef PS_CORE_CAPTURE_H
#define PS_CORE_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>

#include <periscope/capture.h>

struct ps_plugin;

/* Which hooks the capture uses (config `capture.hooks`). */
enum ps_capture_hooks {
	PS_CAPTURE_HOOKS_AUTO = 0, /* socket hooks where the kernel has them, else syscalls */
	PS_CAPTURE_HOOKS_SOCKET,
	PS_CAPTURE_HOOKS_SYSCALLS,
};

/* 0, or -EINVAL for a name other than auto, socket, syscalls. */
int ps_capture_hooks_parse(const char *s, enum ps_capture_hooks *out);
/* Takes effect when the capture next loads (the first registration). */
void ps_capture_set_hooks(enum ps_capture_hooks hooks);
/* Bytes of the capture's ring buffer (capture.ring_size) when it next loads; 0: built-in. */
void ps_capture_set_ring_size(uint64_t bytes);

/* Each flush: connections that went quiet, TLS looks that are due, gap counters. */
void ps_capture_collect(void);
/* A loader release hook: a plugin's protocols go when it stops. */
void ps_capture_plugin_release(struct ps_plugin *p);

/*
 * Replays and tests: with offline set, registering loads nothing and the
 * events come from ps_capture_feed (what the ring buffer would hold).
 */
void ps_capture_set_offline(bool offline);
/* Connections the capture follows in user space now (periscope_capture_connections). */
size_t ps_capture_connections(void);
int ps_capture_feed(const void *event, size_t size);

#endif
