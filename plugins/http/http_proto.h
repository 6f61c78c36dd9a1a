/*
 * HTTP/1.x stream decoder: pure C, no BPF, no libuv (unit tests and fuzzing).
 *
 * One struct http_stream per connection. The capture feeds it what each
 * syscall moved, in order, in both directions: the first `len` bytes that
 * were captured of `total` bytes moved. The decoder finds message
 * boundaries (Content-Length, chunked, HEAD/1xx/204/304, close-delimited),
 * pairs each request with its response (keep-alive and pipelining), and
 * reports every completed exchange through the callback.
 */
#ifndef PS_HTTP_PROTO_H
#define PS_HTTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_METHOD_MAX 16
#define HTTP_PATH_MAX 256
#define HTTP_HOST_MAX 128
#define HTTP_TRACEPARENT_LEN 55
#define HTTP_TRACESTATE_MAX 512 /* longer lists keep their first whole members */
#define HTTP_PENDING_MAX 64 /* requests awaiting a response, per stream; beyond: oldest is lost */

enum http_dir {
	HTTP_DIR_IN = 0,  /* the observed process read these bytes */
	HTTP_DIR_OUT = 1, /* the observed process wrote these bytes */
};

enum http_role {
	HTTP_ROLE_UNKNOWN = 0,
	HTTP_ROLE_SERVER, /* requests come in */
	HTTP_ROLE_CLIENT, /* requests go out */
};

struct http_exchange {
	enum http_role role;
	char method[HTTP_METHOD_MAX];      /* a known method, or "_OTHER" */
	char path[HTTP_PATH_MAX];          /* request target without query or fragment; truncated */
	char host[HTTP_HOST_MAX];          /* Host header without port, "" if none */
	uint16_t host_port;                /* port from the Host header, 0 if none */
	char traceparent[HTTP_TRACEPARENT_LEN + 1]; /* as sent, "" if none or malformed */
	uint16_t status;                   /* 0 when the connection ended before a response */
	uint64_t request_body_bytes;
	uint64_t response_body_bytes;
	uint64_t request_start_ns;         /* first byte of the request */
	uint64_t response_end_ns;          /* last byte of the response */
	/* Last, and copied only as far as its string: most requests have none. */
	char tracestate[HTTP_TRACESTATE_MAX + 1];   /* list members, "" without a valid traceparent */
};

typedef void (*http_exchange_fn)(const struct http_exchange *ex, void *ctx);

struct http_stream;

struct http_stream *http_stream_new(void);
void http_stream_free(struct http_stream *s);

/*
 * Feeds one syscall's worth of bytes. data holds the first len captured bytes
 * of total bytes moved (total >= len; the rest is known only by its length).
 * ts_ns is when the syscall completed. Returns 0, or -EPROTO once the stream
 * proved not to be HTTP/1.x (then every later call returns -EPROTO at once).
 */
int http_stream_feed(struct http_stream *s, enum http_dir dir, const uint8_t *data, size_t len,
		     size_t total, uint64_t ts_ns, http_exchange_fn fn, void *ctx);

/* The connection closed: completes a close-delimited response, drops the rest. */
void http_stream_close(struct http_stream *s, uint64_t ts_ns, http_exchange_fn fn, void *ctx);
/*
 * Additions to the above. Feeds must come in the order their syscalls completed, both
 * directions interleaved: pairing relies on it. Close completes a response whose head
 * was seen with the body bytes seen (close-delimited, or cut short); every request
 * still waiting for a response is reported with status 0 and response_end_ns = ts_ns;
 * partial heads are dropped. To discard a stream without reports, free it unclosed.
 */

/*
 * Counters of one stream, for the plugin's periscope_decode_errors_total and
 * friends. Additions to the original interface.
 */
struct http_stream_stats {
	enum http_role role;
	uint64_t exchanges;    /* reported through the callback, unanswered ones included */
	uint64_t unanswered;   /* of those: requests the connection closed on (status 0) */
	uint64_t lost;         /* requests or responses that could not be paired and were dropped */
	uint64_t parse_errors; /* malformed messages once the stream was known to be HTTP */
	uint64_t desyncs;      /* times framing was lost (capture gaps, unseen bytes) */
	bool not_http;         /* feed returns -EPROTO */
	bool tunnel;           /* 101 Switching Protocols or CONNECT: later bytes are ignored */
};

void http_stream_get_stats(const struct http_stream *s, struct http_stream_stats *st);

/* Its stats' lost count alone: the plugin reads it after every feed. */
uint64_t http_stream_lost(const struct http_stream *s);

/* A quick look at a first chunk: is this an HTTP/1.x request or response start? */
bool http_looks_like_request(const uint8_t *data, size_t len);
bool http_looks_like_response(const uint8_t *data, size_t len);

/*
 * Route templates. routes: configured templates such as "/api/v1/users/{id}"
 * (n of them). A path matching a template becomes the template; otherwise
 * every segment that could identify someone or something becomes "{id}":
 * numbers, UUIDs, emails (an @, or %40), segments longer than
 * HTTP_ROUTE_SEGMENT_MAX, and segments with a token-like word (words are the
 * alphanumeric runs between -, _, ., ~, %XX and the like): digits mixed with
 * letters (two digits or more, or eight characters or more: SECRET789abc,
 * 3f2a9c1, item-42; not oauth2 or utf8), all digits (2024-01-15), hex of 12
 * or more, base64-like case mixes, HTTP_ROUTE_WORD_MAX letters or more, or
 * five consonants in a row. API versions (v2, v1beta1) stay.
 * out is always NUL-terminated; never contains a query string.
 */
#define HTTP_ROUTE_SEGMENT_MAX 48
#define HTTP_ROUTE_WORD_MAX    24
void http_route(const char *path, const char *const *routes, size_t n, char *out, size_t len);

/*
 * At most max_per_service distinct routes per service: a route past that
 * becomes HTTP_ROUTE_OVERFLOW, unless the service's least recently seen
 * route has been idle for idle_ns, which then makes room. At most 1024
 * services are tracked; routes of services past that fold too.
 */
#define HTTP_ROUTE_OVERFLOW "/{other}"
struct http_route_limit;

struct http_route_limit *http_route_limit_new(size_t max_per_service, uint64_t idle_ns);
void http_route_limit_free(struct http_route_limit *l);
/* Folds route (len bytes of room) in place when it is past the limit; true when it did. */
bool http_route_limit_apply(struct http_route_limit *l, const char *service, char *route,
			    size_t len, uint64_t now_ns);
/* Routes folded so far. */
uint64_t http_route_limit_folded(const struct http_route_limit *l);

#endif
