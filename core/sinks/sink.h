/*
 * The sink interface. A sink turns registry snapshots and events into output;
 * it never knows which plugin produced a series.
 */
#ifndef PS_CORE_SINK_H
#define PS_CORE_SINK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <periscope/config.h>
#include <periscope/events.h>

#include "registry.h"

/* What every flush hands the sinks. */
struct ps_flush_ctx {
	const struct ps_registry *registry;
	const struct ps_strmap *static_labels; /* daemon.labels, added to every series */
	uint64_t now_unix_ns;
	uint64_t interval_ns;                  /* since the previous flush */
	int final;                             /* last flush before exit */
};

struct ps_sink_type {
	const char *name;                       /* the key under `sinks:` */
	const struct ps_cfg_key *config_map;
	size_t config_size;
	/* Returns the sink's state or NULL with errno set. */
	void *(*open)(const void *config);
	int (*flush)(void *state, const struct ps_flush_ctx *ctx);
	void (*event)(void *state, const struct ps_event *ev); /* may be NULL */
	void (*close)(void *state);
	/*
	 * May be NULL. Judges the parsed config (section: the sink's YAML map,
	 * NULL for the defaults) before any sink opens, so that --check-config
	 * and a reload reject it with file:line:column. 0 or -EINVAL, err filled.
	 */
	int (*check)(const void *config, const struct ps_cfg_node *section,
		     struct ps_cfg_error *err);
	/* May be NULL (no). Does this sink write spans (PS_EVENT_SPANS)? */
	bool (*takes_spans)(void *state);
};

extern const struct ps_sink_type ps_sink_stdout;
extern const struct ps_sink_type ps_sink_prometheus_textfile;
extern const struct ps_sink_type ps_sink_syslog;
extern const struct ps_sink_type ps_sink_prometheus_http;
extern const struct ps_sink_type ps_sink_otlp;

/*
 * The loop the prometheus_http sink listens on; until it is set (as in
 * --check-config) opening that sink only checks its address.
 */
struct uv_loop_s;
void ps_sink_prometheus_http_set_loop(struct uv_loop_s *loop);
/* The loop the otlp sink sends on; until it is set opening it only checks its settings. */
void ps_sink_otlp_set_loop(struct uv_loop_s *loop);

/* For tests: the stdout sink writing to another stream, on the caller's thread. */
void *ps_sink_stdout_open_stream(const void *config, FILE *out);
/* For tests: the same through its writer thread, as stdout_open does for stdout. */
void *ps_sink_stdout_open_threaded(const void *config, FILE *out);
/* For tests: the textfile sink as on a filesystem without O_TMPFILE. */
void ps_sink_textfile_force_named_temp(bool on);
/* For tests: waits until the textfile sink's writer is idle; the last write's result. */
int ps_sink_textfile_wait(void *state);
#ifdef PS_TEST_HOOKS
/* Only in test builds: hook(arg, true/false) on the writer thread around each write. */
void ps_sink_textfile_set_test_hook(void (*hook)(void *arg, bool start), void *arg);
#endif

#endif
