/*
 * libFuzzer target for plugins/http/http_proto.c.
 *
 * The input is a script of feeds on one stream. Each record starts with a control
 * byte: bit 0 the direction, bits 1-2 the kind (0, 1: all captured; 2: only part
 * captured, the next byte says how many bytes more were moved; 3: close the stream),
 * bits 3-7 a length class; a second byte refines the length. The record's bytes
 * follow. Every exchange reported is checked, its path routed; slices of the input
 * also go through http_route and the first-bytes checks (traceparent has its own target).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/traceparent.h>

#include "http_proto.h"

static const char *const routes[] = { "/api/v1/users/{id}", "/static/{file}", "/{a}/{b}/{c}", "/" };

struct run {
	uint64_t reported;
	uint64_t last_ts;
};

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_string(const char *s, size_t cap)
{
	check(memchr(s, '\0', cap) != NULL);
}

static bool known_method(const char *m)
{
	static const char *const known[] = { "GET",	"HEAD",	   "POST",  "PUT",   "DELETE",
					     "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return true;
	return false;
}

static void check_route(const char *path, const char *const *r, size_t n)
{
	char out[HTTP_PATH_MAX], small[6];

	http_route(path, r, n, out, sizeof(out));
	check_string(out, sizeof(out));
	check(strchr(out, '?') == NULL && strchr(out, '#') == NULL);
	check(out[0] == '/' || strcmp(out, "*") == 0);
	http_route(path, r, n, small, sizeof(small));
	check_string(small, sizeof(small));
	check(strncmp(out, small, strlen(small)) == 0);
}

static void on_exchange(const struct http_exchange *ex, void *ctx)
{
	struct run *run = ctx;

	run->reported++;
	check(ex->role == HTTP_ROLE_SERVER || ex->role == HTTP_ROLE_CLIENT);
	check_string(ex->method, sizeof(ex->method));
	check_string(ex->path, sizeof(ex->path));
	check_string(ex->host, sizeof(ex->host));
	check_string(ex->traceparent, sizeof(ex->traceparent));
	check(known_method(ex->method));
	check_string(ex->tracestate, sizeof(ex->tracestate));
	check(ex->traceparent[0] == '\0' ||
	      ps_traceparent_valid(ex->traceparent, strlen(ex->traceparent)));
	check(ex->traceparent[0] || !ex->tracestate[0]);
	check(strchr(ex->path, '?') == NULL && strchr(ex->path, '#') == NULL);
	check(ex->status == 0 || (ex->status >= 100 && ex->status <= 999));
	check(ex->request_start_ns <= ex->response_end_ns);
	check(ex->response_end_ns <= run->last_ts);
	check_route(ex->path, routes, sizeof(routes) / sizeof(routes[0]));
}

/* A YES on a prefix stays a YES on every longer prefix. */
static void check_first_bytes(const uint8_t *p, size_t n)
{
	bool rq = http_looks_like_request(p, n), rs = http_looks_like_response(p, n);

	check(!(rq && rs));
	if (n > 16) {
		check(rq == http_looks_like_request(p, 16));
		check(rs == http_looks_like_response(p, 16));
	}
	for (size_t k = 0; k < n && k <= 16; k++) {
		if (http_looks_like_request(p, k))
			check(rq);
		if (http_looks_like_response(p, k))
			check(rs);
	}
}

static void check_slices(const uint8_t *data, size_t size)
{
	char path[400];
	size_t n = size < sizeof(path) - 1 ? size : sizeof(path) - 1;
	const char *r[2] = { routes[0], path };

	memcpy(path, data, n);
	path[n] = '\0';
	check_route(path, routes, sizeof(routes) / sizeof(routes[0]));
	check_route(path, r, 2); /* the path as its own template */
	check_first_bytes(data, size < 64 ? size : 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_stream *s = http_stream_new();
	struct http_stream_stats st;
	struct run run = { 0, 0 };
	size_t pos = 0;
	bool dead = false;

	check(s != NULL);
	check_slices(data, size);
	while (pos < size) {
		uint8_t ctl = data[pos++];
		enum http_dir dir = ctl & 1 ? HTTP_DIR_OUT : HTTP_DIR_IN;
		unsigned kind = (ctl >> 1) & 3;
		size_t len = (size_t)(ctl >> 3) * 8, extra = 0;
		int err;

		if (pos < size)
			len += data[pos++] & 7;
		if (kind == 2 && pos < size)
			extra = (size_t)data[pos++] * 37;
		if (len > size - pos)
			len = size - pos;
		run.last_ts++;
		if (kind == 3) {
			http_stream_close(s, run.last_ts, on_exchange, &run);
			continue;
		}
		check_first_bytes(data + pos, len);
		err = http_stream_feed(s, dir, data + pos, len, len + extra, run.last_ts,
				       on_exchange, &run);
		check(err == 0 || err == -EPROTO);
		if (dead)
			check(err != 0);
		dead = dead || err != 0;
		pos += len;
	}
	http_stream_get_stats(s, &st);
	check(st.not_http == dead);
	check(st.exchanges == run.reported);
	check(st.unanswered <= st.exchanges);
	run.last_ts++;
	http_stream_close(s, run.last_ts, on_exchange, &run);
	http_stream_get_stats(s, &st);
	check(st.exchanges == run.reported);
	http_stream_free(s);
	return 0;
}
