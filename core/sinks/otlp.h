/*
 * The otlp sink's parts that need no network: the bounded span queue and the
 * request bodies it makes, Retry-After, backoff, what a response means. The
 * sink itself (core/sinks/otlp.c, ps_sink_otlp in sink.h) drives them with
 * libcurl on the daemon's loop.
 */
#ifndef PS_CORE_SINKS_OTLP_H
#define PS_CORE_SINKS_OTLP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One ResourceSpans object as a span batch brought it. */
struct ps_otlp_frag {
	struct ps_otlp_frag *next;
	uint32_t spans;
	size_t len;
	char json[];
};

/*
 * Fragments not yet in a request (pending) and the bytes of requests still
 * in flight or waiting for a retry (held): together never above max_bytes.
 * Bytes are those of the ResourceSpans JSON, before compression.
 */
struct ps_otlp_queue {
	struct ps_otlp_frag *head, **tail;
	size_t pending_bytes, held_bytes, max_bytes;
	uint64_t pending_spans;
};

void ps_otlp_queue_init(struct ps_otlp_queue *q, size_t max_bytes);
/* Copies json in. 0, -ENOSPC (no room: the caller drops and counts it) or -ENOMEM. */
int ps_otlp_queue_push(struct ps_otlp_queue *q, const char *json, size_t len, uint32_t spans);
/*
 * Moves the oldest fragments, up to max_raw bytes of them (at least one),
 * into a request body {"resourceSpans":[...]}, NUL-terminated. *raw: the
 * queue bytes the request now holds (give them back with release). NULL when
 * nothing is pending (errno 0) or out of memory (errno ENOMEM, nothing moved).
 */
char *ps_otlp_queue_take(struct ps_otlp_queue *q, size_t max_raw, size_t *body_len, uint32_t *spans,
			 size_t *raw);
/* A request ended (sent or dropped): its bytes leave the queue. */
void ps_otlp_queue_release(struct ps_otlp_queue *q, size_t raw);
/* Frees what is pending; returns the spans it held. */
uint64_t ps_otlp_queue_clear(struct ps_otlp_queue *q);

/*
 * A Retry-After value (RFC 9110: delay-seconds or an HTTP-date in any of
 * its three forms) to milliseconds from now, capped at cap_ms. A date in the
 * past is 0. 0 or -EINVAL.
 */
int ps_otlp_retry_after_ms(const char *value, time_t now, uint64_t cap_ms, uint64_t *ms);

/*
 * The wait after the failures-th consecutive failure (from 1): doubling from
 * initial_ms, capped at max_ms, with jitter from random (the wait is between
 * half and all of the step), so that many daemons do not retry in step.
 */
uint64_t ps_otlp_backoff_ms(unsigned failures, uint64_t initial_ms, uint64_t max_ms,
			    uint32_t random);

enum ps_otlp_verdict {
	PS_OTLP_SENT,  /* 2xx */
	PS_OTLP_RETRY, /* 429, 502, 503, 504, a connection error or timeout */
	PS_OTLP_DROP,  /* any other answer: sending it again would not help */
};

/* What a finished request means: curl_code is its CURLcode, status its HTTP status (0: none). */
enum ps_otlp_verdict ps_otlp_verdict(int curl_code, long status);

/*
 * The spans a 2xx answer says it rejected (OTLP partial success:
 * {"partialSuccess":{"rejectedSpans":"3",...}}), 0 when none or unreadable.
 */
uint64_t ps_otlp_rejected_spans(const char *body, size_t len);

/* gzip (RFC 1952) of in. 0 or -ENOMEM/-EIO; *out is malloc'ed. */
int ps_otlp_gzip(const char *in, size_t len, char **out, size_t *out_len);

#endif
