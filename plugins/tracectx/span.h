/*
 * tracectx spans: what an exchange becomes, and its OTLP/JSON form.
 * Pure C (no libuv, no BPF): unit-tested without root.
 */
#ifndef PS_TRACECTX_SPAN_H
#define PS_TRACECTX_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <periscope/config.h>
#include <periscope/events.h>
#include <periscope/traceparent.h>

/* OTLP SpanKind, as the JSON mapping writes the enum: integers. */
enum tc_kind {
	TC_KIND_SERVER = 2,
	TC_KIND_CLIENT = 3,
	TC_KIND_PRODUCER = 4,
	TC_KIND_CONSUMER = 5,
};

#define TC_ATTRS_MAX 12
#define TC_NAME_MAX  192

struct tc_attr {
	const char *key; /* a semantic-convention name: static storage */
	char *str;	 /* owned; NULL for an integer */
	int64_t num;
};

/* Why a span went out without the parent the heuristics looked for. */
enum tc_unjoined {
	TC_JOINED = 0,
	TC_UNJOINED_OVERLAP,  /* its thread served overlapping requests (an event loop) */
	TC_UNJOINED_CONFLICT, /* its header's trace differs from its parent's */
	TC_UNJOINED_OVERFLOW, /* the in-flight table was full */
	TC_UNJOINED_MAX,
};

struct tc_span {
	/* what the joining reads, from the exchange */
	enum ps_exchange_side side;
	uint32_t pid, tid;
	struct ps_endpoint local, remote;
	uint32_t seq;
	uint64_t start_ns, end_ns; /* Unix */
	/* what goes out */
	enum tc_kind kind;
	bool error;
	char *service;
	char name[TC_NAME_MAX];
	struct tc_attr attrs[TC_ATTRS_MAX];
	size_t n_attrs;
	char *tracestate; /* the request's, beside a valid traceparent */
	uint8_t trace_id[16], span_id[8], parent_id[8];
	bool has_parent_id;
	/* from a valid traceparent the request carried */
	bool has_header;
	struct ps_traceparent header;
	/* the joining's own */
	uint64_t arrival_ns; /* CLOCK_MONOTONIC */
	struct tc_span *parent, *child, *sibling, *root;
	struct tc_span *hnext[3]; /* per-tick hash chains */
	uint32_t mark;
	enum tc_unjoined unjoined;
	bool done; /* published (or sampled out) this tick */
};

/* A fast PRNG for ids (splitmix64), seeded from getrandom(). */
struct tc_rng {
	uint64_t state;
};

int tc_rng_seed(struct tc_rng *r);
uint64_t tc_rng_next(struct tc_rng *r);
/* n random bytes, never all zero (W3C: all-zero ids are invalid). */
void tc_rng_id(struct tc_rng *r, uint8_t *out, size_t n);

/*
 * A span for the exchange: kind, name, attributes; a new span id (the header's
 * parent id for a client exchange that carried one: the application said who
 * it is). NULL with errno on allocation failure.
 */
struct tc_span *tc_span_from_exchange(const struct ps_exchange *x, struct tc_rng *rng);
void tc_span_free(struct tc_span *s);
/*
 * The request carried h (a client's: h names this very span): its ids win
 * over the joining's guesses.
 */
void tc_span_set_header(struct tc_span *s, const struct ps_traceparent *h);

/* A growing buffer; failed sticks once an allocation failed. */
struct tc_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

void tc_buf_add(struct tc_buf *b, const char *s, size_t n);
void tc_buf_puts(struct tc_buf *b, const char *s);
/* A JSON string: quoted, escaped; invalid UTF-8 becomes U+FFFD. */
void tc_buf_json_str(struct tc_buf *b, const char *s);
void tc_buf_free(struct tc_buf *b);

/*
 * One OTLP ResourceSpans object (protobuf JSON mapping) for spans of one
 * service: resource attributes service.name and the static labels, one scope
 * "periscope". No newline. 0, or -ENOMEM.
 */
int tc_json_resource_spans(struct tc_buf *b, const char *service, const struct ps_strmap *labels,
			   struct tc_span *const *spans, size_t n);

#endif
