/*
 * periscope plugin API: the core event stream.
 *
 * Plugins publish what they saw (a closed TCP flow, a decoded exchange);
 * sinks and other plugins subscribe. Delivery is synchronous on the loop
 * thread, so an event and the memory it points to only live for the call.
 */
#ifndef PERISCOPE_EVENTS_H
#define PERISCOPE_EVENTS_H

#include <periscope/api.h>

#include <stdbool.h>
#include <stdint.h>

enum ps_event_type {
	PS_EVENT_FLOW = 1, /* struct ps_flow_record: one per closed or failed TCP connection */
	PS_EVENT_EXCHANGE, /* struct ps_exchange: one per decoded L7 request/response */
	PS_EVENT_ALERT,    /* struct ps_alert_notice: an alert fired, repeated or resolved */
	PS_EVENT_SPANS,    /* struct ps_span_batch: finished spans of one resource (tracectx) */
	PS_EVENT_TYPE_MAX,
};

enum ps_direction {
	PS_DIR_INBOUND = 0,
	PS_DIR_OUTBOUND = 1,
};

struct ps_endpoint {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network order; IPv4 in the first 4 bytes */
	uint16_t port;     /* host order */
};

struct ps_flow_record {
	uint32_t pid;
	const char *service_name;
	enum ps_direction direction;
	struct ps_endpoint local, remote;
	uint64_t start_unix_ns, end_unix_ns;
	uint64_t bytes_sent, bytes_received;
	uint32_t srtt_us;
	uint32_t retransmits;
	uint32_t resets;
	bool failed;       /* the handshake never completed */
};

enum ps_exchange_side {
	PS_SIDE_SERVER = 0, /* the observed process answered the request */
	PS_SIDE_CLIENT = 1, /* the observed process sent the request */
};

/* One request and its response, as an L7 plugin decoded them. */
struct ps_exchange {
	const char *protocol;      /* "http", "mysql", "mongodb" */
	enum ps_exchange_side side;
	uint32_t pid, tid;
	const char *service_name;
	struct ps_endpoint local, remote;
	uint64_t start_unix_ns;    /* first byte of the request */
	uint64_t end_unix_ns;      /* last byte of the response */
	const char *operation;     /* HTTP method, SQL verb, MongoDB command */
	const char *target;        /* http route template, db collection; never a raw URL */
	const char *scheme;        /* "http" / "https"; NULL for databases */
	int status;                /* HTTP status; 0 ok / 1 error for databases */
	bool error;                /* 5xx, database error, protocol error */
	const char *traceparent;   /* the request's W3C traceparent as seen, or NULL */
	const char *tracestate;    /* the request's tracestate, only beside a valid traceparent */
	uint64_t conn_id;          /* the capture's ps_capture_conn.id */
	uint32_t seq;              /* the request's place on its connection, from 0 */
};

/*
 * Finished spans that share one resource (service.name and the static
 * labels): one OTLP ResourceSpans object in the protobuf JSON mapping
 * ({"resource":{...},"scopeSpans":[...]}), on one line without a newline.
 */
struct ps_span_batch {
	const char *resource_spans_json;
	size_t len;
	uint32_t span_count;
};

enum ps_alert_state {
	PS_ALERT_FIRING = 0,
	PS_ALERT_REPEAT,   /* still firing; re-sent after `repeat` */
	PS_ALERT_RESOLVED,
};

/*
 * What an alert rule has to say about one series group. FIRING and REPEAT carry
 * the firing threshold; RESOLVED carries the resolve threshold and its side
 * ("resolves below 0.02"). value is NaN when there is nothing left to measure
 * (the group vanished, or a latency alert whose traffic stopped).
 */
struct ps_alert_notice {
	const char *rule;
	enum ps_alert_state state;
	const char *protocol;      /* "http", "db", "tcp" */
	const char *group;         /* "service_name=checkout http_route=/cart", never raw values */
	const char *condition;     /* "error_ratio", "latency_p99", "rate" */
	const char *comparison;    /* "above" / "below" */
	double value;              /* observed over the window */
	double threshold;
	uint64_t window_ms;
	uint64_t firing_since_unix_ns; /* when it fired (REPEAT: "firing for 2h") */
	uint64_t unix_ns;
};

struct ps_event {
	enum ps_event_type type;
	const char *plugin;        /* who emitted it ("core" for alerts) */
	union {
		const struct ps_flow_record *flow;
		const struct ps_exchange *exchange;
		const struct ps_alert_notice *alert;
		const struct ps_span_batch *spans;
	};
};

typedef void (*ps_event_fn)(const struct ps_event *ev, void *ctx);

struct ps_plugin;

/* 0 or -errno. owner: the subscribing plugin (its subscriptions go when it stops). */
PS_API int ps_event_subscribe(struct ps_plugin *owner, enum ps_event_type type, ps_event_fn fn,
		       void *ctx);
PS_API void ps_event_unsubscribe(enum ps_event_type type, ps_event_fn fn, void *ctx);
PS_API void ps_event_emit(const struct ps_event *ev);
/*
 * Would an event of this type reach anyone (a sink that writes it, or a
 * plugin's subscription)? A producer whose events cost work to build skips
 * that work when not: tracectx makes no spans when no sink writes them.
 */
PS_API bool ps_event_wanted(enum ps_event_type type);

/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) to nanoseconds since the Unix epoch. */
PS_API uint64_t ps_clock_mono_to_unix_ns(uint64_t mono_ns);
/* Formats an endpoint address ("10.0.0.1", "::1"); returns buf. */
PS_API const char *ps_endpoint_addr_str(const struct ps_endpoint *ep, char *buf, unsigned len);

#endif
