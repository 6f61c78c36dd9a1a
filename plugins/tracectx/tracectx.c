/*
 * tracectx: spans from the exchanges the L7 plugins publish, joined into traces
 * on this host (join.c), written as OTLP/JSON ResourceSpans (span.c) through the
 * core event stream (PS_EVENT_SPANS) for the sinks.
 *
 * Everything runs on the loop thread. The plugin has no timer of its own: the
 * in-flight table is looked at when exchanges arrive (at most every hold/4) and
 * at every flush, and emptied when the plugin stops.
 *
 * With propagate: true, propagate.c adds a traceparent to outbound HTTP/1.x
 * requests that have none; the client span of such a request takes the ids
 * that went out, as if the application had sent them.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <periscope/plugin.h>

#include "join.h"
#include "propagate.h"
#include "span.h"

#define SUBSYS "tracectx"

struct tracectx_config {
	bool propagate;
	struct ps_portlist propagate_ports;
	uint64_t hold_ms;
	uint64_t max_pending;
	char *sample_ratio;
};

struct tracectx {
	struct ps_plugin *plugin;
	struct tc_rng rng;
	struct tc_join *join;
	uint64_t tick_ns, last_tick_ns;
	struct ps_metric *spans, *unjoined, *pending, *propagation;
	struct tc_join_stats reported; /* what the counters already hold */
	uint64_t batches_failed;
	/* propagate: true */
	bool propagate;
	uint16_t *propagate_ports;
	size_t n_propagate_ports;
	double sample_ratio;
	struct tc_propagate *prop;
	uint64_t prop_reported[TC_STAT_MAX];
};

static const char *const propagation_outcomes[TC_STAT_MAX] = {
	[TC_STAT_INJECTED] = "injected",
	[TC_STAT_HAD_HEADER] = "application_header",
	[TC_STAT_NO_LINE_END] = "no_request_line",
	[TC_STAT_PUSH_FAILED] = "push_failed",
	[TC_STAT_SERVER_SEEN] = "served",
};

static const char *const unjoined_reasons[TC_UNJOINED_MAX] = {
	[TC_UNJOINED_OVERLAP] = "overlap",
	[TC_UNJOINED_CONFLICT] = "conflict",
	[TC_UNJOINED_OVERFLOW] = "overflow",
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- publishing ---------------------------------------------------------------------------- */

static int by_service(const void *a, const void *b)
{
	const struct tc_span *x = *(struct tc_span *const *)a, *y = *(struct tc_span *const *)b;

	return strcmp(x->service, y->service);
}

/* One ResourceSpans batch per service. */
static void publish(struct tc_span *const *spans, size_t n, void *ctx)
{
	struct tracectx *st = ctx;
	struct tc_span **v = malloc(n * sizeof(*v));
	struct tc_buf b = { 0 };

	if (!v) {
		st->batches_failed++;
		return;
	}
	memcpy(v, spans, n * sizeof(*v));
	qsort(v, n, sizeof(*v), by_service);
	for (size_t i = 0, k; i < n; i = k) {
		struct ps_span_batch batch;
		struct ps_event ev = { .type = PS_EVENT_SPANS, .plugin = SUBSYS, .spans = &batch };

		for (k = i + 1; k < n && !strcmp(v[k]->service, v[i]->service); k++)
			;
		b.len = 0;
		b.failed = false;
		if (tc_json_resource_spans(&b, v[i]->service, ps_daemon_labels(), v + i, k - i)) {
			st->batches_failed++;
			continue;
		}
		batch.resource_spans_json = b.p;
		batch.len = b.len;
		batch.span_count = (uint32_t)(k - i);
		ps_event_emit(&ev);
	}
	tc_buf_free(&b);
	free(v);
}

/* Counters follow the join's own: add what is new since the last look. */
static void report(struct tracectx *st)
{
	const char *plugin_values[] = { "periscoped", SUBSYS, NULL };
	struct tc_join_stats now;

	tc_join_get_stats(st->join, &now);
	if (st->spans && now.published > st->reported.published)
		ps_metric_add(st->spans, plugin_values,
			      (double)(now.published - st->reported.published));
	for (int r = 1; r < TC_UNJOINED_MAX && st->unjoined; r++) {
		const char *values[] = { "periscoped", SUBSYS, unjoined_reasons[r], NULL };

		if (now.unjoined[r] > st->reported.unjoined[r])
			ps_metric_add(st->unjoined, values,
				      (double)(now.unjoined[r] - st->reported.unjoined[r]));
	}
	if (st->pending)
		ps_metric_set(st->pending, plugin_values, (double)now.pending);
	st->reported = now;
}

/* The kernel's propagation counters, as deltas into periscope_propagation_requests_total. */
static void report_propagation(struct tracectx *st)
{
	uint64_t now[TC_STAT_MAX];

	if (!st->prop || !st->propagation)
		return;
	tc_propagate_stats(st->prop, now);
	for (int i = 0; i < TC_STAT_MAX; i++) {
		const char *values[] = { "periscoped", propagation_outcomes[i], NULL };

		if (now[i] > st->prop_reported[i])
			ps_metric_add(st->propagation, values, (double)(now[i] - st->prop_reported[i]));
		st->prop_reported[i] = now[i];
	}
}

static void tick(struct tracectx *st, bool all)
{
	uint64_t now = mono_ns();

	st->last_tick_ns = now;
	tc_join_tick(st->join, now, all);
	report(st);
}

static void on_exchange(const struct ps_event *ev, void *ctx)
{
	struct tracectx *st = ctx;
	struct tc_span *s;
	uint64_t now;

	if (ev->type != PS_EVENT_EXCHANGE || !ev->exchange)
		return;
	/* No sink writes spans (stdout in table or prometheus format, no otlp): none are made. */
	if (!ps_event_wanted(PS_EVENT_SPANS))
		return;
	s = tc_span_from_exchange(ev->exchange, &st->rng);
	if (!s)
		return;
	if (st->prop && !s->has_header && ev->exchange->side == PS_SIDE_CLIENT &&
	    !strcmp(ev->exchange->protocol, "http")) {
		struct ps_traceparent sent;

		if (!tc_propagate_take(st->prop, ev->exchange, &sent))
			tc_span_set_header(s, &sent);
	}
	now = mono_ns();
	tc_join_add(st->join, s, now);
	if (now - st->last_tick_ns >= st->tick_ns)
		tick(st, false);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static int parse_ratio(const char *text, double *out)
{
	char *end;
	double v;

	if (!text) {
		*out = 1.0;
		return 0;
	}
	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || *end || !(v >= 0.0 && v <= 1.0))
		return -EINVAL;
	*out = v;
	return 0;
}

static int tracectx_init(struct ps_plugin *p, const void *config)
{
	static const struct tracectx_config defaults = { .hold_ms = 2000, .max_pending = 4096 };
	const struct tracectx_config *cfg = config ? config : &defaults;
	struct tc_join_config jc = { .max_pending = (size_t)cfg->max_pending };
	struct tracectx *st;
	int err;

	if (cfg->propagate_ports.n > TC_PORTS_MAX) {
		ps_error(SUBSYS, "propagate_ports: at most %d ports, not %zu", TC_PORTS_MAX,
			 cfg->propagate_ports.n);
		return -EINVAL;
	}
	if (parse_ratio(cfg->sample_ratio, &jc.sample_ratio)) {
		ps_error(SUBSYS,
			 "sample_ratio: a number from 0 to 1 (0.25 keeps a quarter), not '%s'",
			 cfg->sample_ratio);
		return -EINVAL;
	}
	jc.hold_ns = cfg->hold_ms * 1000000ull;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	err = tc_rng_seed(&st->rng);
	if (err) {
		ps_error(SUBSYS, "no random seed for span ids: %s", strerror(-err));
		free(st);
		return err;
	}
	st->join = tc_join_new(&jc, &st->rng, publish, st);
	if (!st->join) {
		free(st);
		return -ENOMEM;
	}
	st->tick_ns = jc.hold_ns / 4 > 10000000ull ? jc.hold_ns / 4 : 10000000ull;
	st->propagate = cfg->propagate;
	st->sample_ratio = jc.sample_ratio;
	if (cfg->propagate_ports.n) {
		st->propagate_ports = calloc(cfg->propagate_ports.n, sizeof(uint16_t));
		if (!st->propagate_ports) {
			tc_join_free(st->join);
			free(st);
			return -ENOMEM;
		}
		memcpy(st->propagate_ports, cfg->propagate_ports.v,
		       cfg->propagate_ports.n * sizeof(uint16_t));
		st->n_propagate_ports = cfg->propagate_ports.n;
	}
	st->plugin = p;
	ps_plugin_set_data(p, st);
	return 0;
}

static struct ps_metric *register_metric(const char *name, const char *help,
					 enum ps_metric_type type, const char *const *labels)
{
	struct ps_metric_desc d = { .name = name, .help = help, .type = type, .labels = labels };
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int tracectx_start(struct ps_plugin *p)
{
	static const char *const plugin_labels[] = { "service_name", "plugin", NULL };
	static const char *const reason_labels[] = { "service_name", "plugin", "reason", NULL };
	struct tracectx *st = ps_plugin_data(p);

	st->spans = register_metric("periscope_spans_total", "Spans published", PS_METRIC_COUNTER,
				    plugin_labels);
	st->unjoined =
		register_metric("periscope_spans_unjoined_total",
				"Spans published without the parent the joining looked for, by why",
				PS_METRIC_COUNTER, reason_labels);
	st->pending = register_metric("periscope_spans_pending",
				      "Spans held until their trace's root finished",
				      PS_METRIC_GAUGE, plugin_labels);
	if (!st->spans || !st->unjoined || !st->pending)
		return -EINVAL;
	if (st->propagate) {
		static const char *const outcome_labels[] = { "service_name", "outcome", NULL };
		int err;

		st->propagation = register_metric(
			"periscope_propagation_requests_total",
			"HTTP requests propagation looked at: traceparent injected, the application's "
			"own, no request line in the first message, refused by the kernel; served: "
			"inbound requests whose context outbound ones take",
			PS_METRIC_COUNTER, outcome_labels);
		if (!st->propagation)
			return -EINVAL;
		err = tc_propagate_start(st->propagate_ports, st->n_propagate_ports,
					 st->sample_ratio, &st->prop);
		if (err)
			return err;
		ps_info(SUBSYS,
			"propagating traceparent on outbound HTTP/1.x requests (%s); FIONREAD guard on",
			st->n_propagate_ports ? "to the configured ports" : "to every port");
	}
	report(st);
	return ps_event_subscribe(p, PS_EVENT_EXCHANGE, on_exchange, st);
}

static int tracectx_collect(struct ps_plugin *p)
{
	struct tracectx *st = ps_plugin_data(p);

	tick(st, false);
	report_propagation(st);
	return 0;
}

static void tracectx_stop(struct ps_plugin *p)
{
	struct tracectx *st = ps_plugin_data(p);

	if (!st)
		return;
	/* Traffic is left as it was first; the ids already injected are still taken below. */
	report_propagation(st);
	ps_event_unsubscribe(PS_EVENT_EXCHANGE, on_exchange, st);
	tick(st, true); /* nothing waits any longer: trees go out as they are */
	tc_propagate_stop(st->prop);
	st->prop = NULL;
}

static void tracectx_destroy(struct ps_plugin *p)
{
	struct tracectx *st = ps_plugin_data(p);
	struct tc_join_stats js;

	if (!st)
		return;
	tc_join_get_stats(st->join, &js);
	ps_debug(SUBSYS,
		 "%" PRIu64 " spans published, %" PRIu64 " sampled out, %" PRIu64
		 " batches lost to memory",
		 js.published, js.sampled_out, st->batches_failed);
	tc_join_free(st->join);
	free(st->propagate_ports);
	free(st);
	ps_plugin_set_data(p, NULL);
}

static const struct ps_cfg_key tracectx_config_map[] = {
	{
		.name = "propagate",
		.type = PS_CFG_BOOL,
		.def = "false",
		.offset = offsetof(struct tracectx_config, propagate),
		.help = "true: add a traceparent to outbound HTTP/1.x requests that lack one, so "
			"that the next host joins the trace (false: never modify traffic)",
	},
	{
		.name = "propagate_ports",
		.type = PS_CFG_PORTLIST,
		.offset = offsetof(struct tracectx_config, propagate_ports),
		.max = "16",
		.help = "with propagate: the destination ports of the requests to add it to "
			"(none: every port)",
	},
	{
		.name = "hold",
		.type = PS_CFG_DURATION,
		.def = "2s",
		.offset = offsetof(struct tracectx_config, hold_ms),
		.help = "how long a trace's root waits for a parent before its spans go out",
		.min = "10ms",
		.max = "10m",
	},
	{
		.name = "max_pending",
		.type = PS_CFG_UINT,
		.def = "4096",
		.offset = offsetof(struct tracectx_config, max_pending),
		.help = "spans held at once; past it new spans go out unjoined",
		.min = "1",
		.max = "1000000",
	},
	{
		.name = "sample_ratio",
		.type = PS_CFG_STRING,
		.def = "1",
		.offset = offsetof(struct tracectx_config, sample_ratio),
		.help = "0 to 1: share of the traces starting here that are kept (an inbound "
			"traceparent's sampled flag decides for its trace)",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "tracectx", .version = PACKAGE_VERSION,
		 .description = "trace spans from the L7 exchanges, joined across processes on "
				"this host (OTLP/JSON)",
		 .config_map = tracectx_config_map, .config_size = sizeof(struct tracectx_config),
		 .init = tracectx_init, .start = tracectx_start, .collect = tracectx_collect,
		 .stop = tracectx_stop, .destroy = tracectx_destroy, );
