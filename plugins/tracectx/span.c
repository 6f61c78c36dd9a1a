/* tracectx spans: exchange -> span, span -> OTLP/JSON. See span.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "span.h"

/* ---- ids ----------------------------------------------------------------------------------- */

int tc_rng_seed(struct tc_rng *r)
{
	uint64_t seed;

	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		return errno ? -errno : -EIO;
	r->state = seed;
	return 0;
}

/* splitmix64: one add and a few multiplies per 64 bits; ids need no more than that. */
uint64_t tc_rng_next(struct tc_rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void tc_rng_id(struct tc_rng *r, uint8_t *out, size_t n)
{
	bool nonzero = false;

	do {
		for (size_t i = 0; i < n; i += 8) {
			uint64_t v = tc_rng_next(r);

			for (size_t j = 0; j < 8 && i + j < n; j++)
				out[i + j] = (uint8_t)(v >> (8 * j));
		}
		for (size_t i = 0; i < n; i++)
			nonzero |= out[i] != 0;
	} while (!nonzero);
}

/* ---- exchange -> span ---------------------------------------------------------------------- */

static bool has_address(const struct ps_endpoint *ep)
{
	return ep->family == AF_INET || ep->family == AF_INET6;
}

static void attr_str(struct tc_span *s, const char *key, const char *v)
{
	if (!v || !v[0] || s->n_attrs == TC_ATTRS_MAX)
		return;
	s->attrs[s->n_attrs].key = key;
	s->attrs[s->n_attrs].str = strdup(v);
	if (s->attrs[s->n_attrs].str)
		s->n_attrs++;
}

static void attr_int(struct tc_span *s, const char *key, int64_t v)
{
	if (s->n_attrs == TC_ATTRS_MAX)
		return;
	s->attrs[s->n_attrs].key = key;
	s->attrs[s->n_attrs].str = NULL;
	s->attrs[s->n_attrs].num = v;
	s->n_attrs++;
}

static void attr_addr(struct tc_span *s, const char *key, const struct ps_endpoint *ep)
{
	char buf[64];

	if (has_address(ep))
		attr_str(s, key, ps_endpoint_addr_str(ep, buf, sizeof(buf)));
}

/* server.address / server.port: the server's end, which is ours on a server span. */
static void attr_server(struct tc_span *s, const struct ps_exchange *x)
{
	const struct ps_endpoint *srv = x->side == PS_SIDE_SERVER ? &x->local : &x->remote;

	if (x->side == PS_SIDE_CLIENT)
		attr_addr(s, "server.address", srv);
	if (has_address(srv))
		attr_int(s, "server.port", srv->port);
	attr_addr(s, "network.peer.address", &x->remote);
	if (has_address(&x->remote))
		attr_int(s, "network.peer.port", x->remote.port);
}

/* "GET /users/{id}", "SELECT orders", "send orders": the operation and what it is on. */
static void set_name(struct tc_span *s, const char *op, const char *target)
{
	if (!op || !op[0])
		op = "unknown";
	if (target && target[0])
		snprintf(s->name, sizeof(s->name), "%s %s", op, target);
	else
		snprintf(s->name, sizeof(s->name), "%s", op);
}

static void describe_http(struct tc_span *s, const struct ps_exchange *x)
{
	bool server = x->side == PS_SIDE_SERVER;

	set_name(s, x->operation, x->target);
	attr_str(s, "http.request.method", x->operation);
	/* The target is a route template, never the raw path. */
	attr_str(s, server ? "http.route" : "url.template", x->target);
	if (x->status > 0)
		attr_int(s, "http.response.status_code", x->status);
	attr_str(s, "url.scheme", x->scheme);
	attr_server(s, x);
}

static void describe_db(struct tc_span *s, const struct ps_exchange *x)
{
	set_name(s, x->operation, x->target);
	attr_str(s, "db.system.name", x->protocol);
	attr_str(s, "db.operation.name", x->operation);
	attr_str(s, "db.collection.name", x->target);
	attr_server(s, x);
}

static void describe_messaging(struct tc_span *s, const struct ps_exchange *x)
{
	if (x->side == PS_SIDE_CLIENT && x->operation && !strcmp(x->operation, "send"))
		s->kind = TC_KIND_PRODUCER;
	else if (x->side == PS_SIDE_CLIENT && x->operation && !strcmp(x->operation, "poll"))
		s->kind = TC_KIND_CONSUMER;
	set_name(s, x->operation, x->target);
	attr_str(s, "messaging.system", x->protocol);
	attr_str(s, "messaging.operation.name", x->operation);
	attr_str(s, "messaging.destination.name", x->target);
	attr_server(s, x);
}

void tc_span_set_header(struct tc_span *s, const struct ps_traceparent *h)
{
	s->header = *h;
	s->has_header = true;
	memcpy(s->trace_id, s->header.trace_id, sizeof(s->trace_id));
	if (s->side == PS_SIDE_CLIENT) {
		/* The application propagated it: the header names this very request. */
		memcpy(s->span_id, s->header.parent_id, sizeof(s->span_id));
	} else {
		memcpy(s->parent_id, s->header.parent_id, sizeof(s->parent_id));
		s->has_parent_id = true;
	}
}

static void take_header(struct tc_span *s, const struct ps_exchange *x)
{
	struct ps_traceparent h;

	if (!x->traceparent || ps_traceparent_parse(x->traceparent, strlen(x->traceparent), &h))
		return;
	tc_span_set_header(s, &h);
	if (x->tracestate && x->tracestate[0])
		s->tracestate = strdup(x->tracestate);
}

struct tc_span *tc_span_from_exchange(const struct ps_exchange *x, struct tc_rng *rng)
{
	struct tc_span *s = calloc(1, sizeof(*s));
	const char *proto = x->protocol ? x->protocol : "";

	if (!s)
		return NULL;
	s->side = x->side;
	s->pid = x->pid;
	s->tid = x->tid;
	s->local = x->local;
	s->remote = x->remote;
	s->seq = x->seq;
	s->start_ns = x->start_unix_ns;
	s->end_ns = x->end_unix_ns < x->start_unix_ns ? x->start_unix_ns : x->end_unix_ns;
	s->kind = x->side == PS_SIDE_SERVER ? TC_KIND_SERVER : TC_KIND_CLIENT;
	s->error = x->error;
	s->service = strdup(x->service_name && x->service_name[0] ? x->service_name : "unknown");
	if (!s->service) {
		free(s);
		return NULL;
	}
	tc_rng_id(rng, s->span_id, sizeof(s->span_id));
	if (!strcmp(proto, "http"))
		describe_http(s, x);
	else if (!strcmp(proto, "mysql") || !strcmp(proto, "mongodb"))
		describe_db(s, x);
	else if (!strcmp(proto, "kafka"))
		describe_messaging(s, x);
	else
		set_name(s, x->operation, x->target);
	take_header(s, x);
	return s;
}

void tc_span_free(struct tc_span *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_attrs; i++)
		free(s->attrs[i].str);
	free(s->tracestate);
	free(s->service);
	free(s);
}

/* ---- buffer and JSON ----------------------------------------------------------------------- */

void tc_buf_add(struct tc_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void tc_buf_puts(struct tc_buf *b, const char *s)
{
	tc_buf_add(b, s, strlen(s));
}

void tc_buf_free(struct tc_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

void tc_buf_json_str(struct tc_buf *b, const char *str)
{
	const unsigned char *p = (const unsigned char *)(str ? str : "");
	char esc[8];

	tc_buf_add(b, "\"", 1);
	while (*p) {
		size_t n;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			tc_buf_add(b, esc, 2);
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			tc_buf_add(b, esc, 6);
			p++;
		} else if (*p < 0x80) {
			tc_buf_add(b, (const char *)p, 1);
			p++;
		} else if ((n = utf8_len(p)) != 0) {
			tc_buf_add(b, (const char *)p, n);
			p += n;
		} else {
			tc_buf_add(b, "\\ufffd", 6);
			p++;
		}
	}
	tc_buf_add(b, "\"", 1);
}

static void json_hex(struct tc_buf *b, const uint8_t *id, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char out[34];

	for (size_t i = 0; i < n; i++) {
		out[2 * i + 1] = digits[id[i] >> 4];
		out[2 * i + 2] = digits[id[i] & 15];
	}
	out[0] = out[2 * n + 1] = '"';
	tc_buf_add(b, out, 2 * n + 2);
}

/* The JSON mapping writes 64-bit integers as strings. */
static void json_u64(struct tc_buf *b, uint64_t v)
{
	char num[32];

	tc_buf_add(b, num, (size_t)snprintf(num, sizeof(num), "\"%" PRIu64 "\"", v));
}

static void json_attr_str(struct tc_buf *b, const char *key, const char *v)
{
	tc_buf_puts(b, "{\"key\":");
	tc_buf_json_str(b, key);
	tc_buf_puts(b, ",\"value\":{\"stringValue\":");
	tc_buf_json_str(b, v);
	tc_buf_puts(b, "}}");
}

static void json_span(struct tc_buf *b, const struct tc_span *s)
{
	char num[32];

	tc_buf_puts(b, "{\"traceId\":");
	json_hex(b, s->trace_id, sizeof(s->trace_id));
	tc_buf_puts(b, ",\"spanId\":");
	json_hex(b, s->span_id, sizeof(s->span_id));
	if (s->has_parent_id) {
		tc_buf_puts(b, ",\"parentSpanId\":");
		json_hex(b, s->parent_id, sizeof(s->parent_id));
	}
	if (s->tracestate) {
		tc_buf_puts(b, ",\"traceState\":");
		tc_buf_json_str(b, s->tracestate);
	}
	tc_buf_puts(b, ",\"name\":");
	tc_buf_json_str(b, s->name);
	tc_buf_add(b, num, (size_t)snprintf(num, sizeof(num), ",\"kind\":%d", (int)s->kind));
	tc_buf_puts(b, ",\"startTimeUnixNano\":");
	json_u64(b, s->start_ns);
	tc_buf_puts(b, ",\"endTimeUnixNano\":");
	json_u64(b, s->end_ns);
	tc_buf_puts(b, ",\"attributes\":[");
	for (size_t i = 0; i < s->n_attrs; i++) {
		if (i)
			tc_buf_add(b, ",", 1);
		if (s->attrs[i].str) {
			json_attr_str(b, s->attrs[i].key, s->attrs[i].str);
			continue;
		}
		tc_buf_puts(b, "{\"key\":");
		tc_buf_json_str(b, s->attrs[i].key);
		tc_buf_add(b, num,
			   (size_t)snprintf(num, sizeof(num),
					    ",\"value\":{\"intValue\":\"%" PRId64 "\"}}",
					    s->attrs[i].num));
	}
	/* OTLP status: ERROR = 2; UNSET (0) is the default and written as an empty status. */
	tc_buf_puts(b, s->error ? "],\"status\":{\"code\":2}}" : "],\"status\":{}}");
}

int tc_json_resource_spans(struct tc_buf *b, const char *service, const struct ps_strmap *labels,
			   struct tc_span *const *spans, size_t n)
{
	tc_buf_puts(b, "{\"resource\":{\"attributes\":[");
	json_attr_str(b, "service.name", service);
	for (size_t i = 0; labels && i < labels->n; i++) {
		tc_buf_add(b, ",", 1);
		json_attr_str(b, labels->keys[i], labels->values[i]);
	}
	tc_buf_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"periscope\"},\"spans\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			tc_buf_add(b, ",", 1);
		json_span(b, spans[i]);
	}
	tc_buf_puts(b, "]}]}");
	return b->failed ? -ENOMEM : 0;
}
