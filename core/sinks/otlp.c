/*
 * The otlp sink: finished spans (PS_EVENT_SPANS) to an OpenTelemetry
 * Collector, Jaeger or Tempo as OTLP/HTTP with JSON encoding, gzip by default.
 *
 * Span batches are copied into a bounded queue and POSTed as
 * {"resourceSpans":[...]} at each flush, or as soon as a request's worth has
 * piled up; at most MAX_IN_FLIGHT requests at a time. Everything runs on the
 * daemon's loop: libcurl's multi interface is driven by uv_poll_t and
 * uv_timer_t handles, and name lookups go to curl's threaded resolver, so
 * nothing waits on the network. 429, 502, 503, 504 and connection errors are
 * retried with jittered exponential backoff (or after Retry-After); no new
 * request starts while the collector asked us to wait. What does not fit in
 * the queue, what the collector rejects and what is still queued when the
 * daemon exits after one last bounded attempt is dropped and counted, in
 * spans, by periscope_export_dropped_total{sink="otlp",reason}.
 *
 * The handles are unreferenced: the sink never keeps the daemon alive, except
 * for its last attempt, bounded by `timeout`, at the final flush.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "curl_dl.h" /* libcurl, opened when an otlp sink is configured */
#include <uv.h>
#include <zlib.h>

#include <periscope/log.h>
#include <periscope/metrics.h>

#include "config.h"
#include "otlp.h"
#include "sink.h"

#define SUBSYS		   "otlp"
#define MAX_IN_FLIGHT	   2
#define REQUEST_MAX_RAW	   (1024 * 1024) /* JSON bytes per request, before gzip */
#define BACKOFF_INITIAL_MS 500
#define BACKOFF_MAX_MS	   30000
#define RETRY_AFTER_CAP_MS (5 * 60 * 1000)
#define RESPONSE_MAX	   4096 /* what we keep of an answer: a partialSuccess, an error */
#define BODY_HEAD	   "{\"resourceSpans\":["
#define BODY_TAIL	   "]}"

/* ---- the queue --------------------------------------------------------------------------- */

void ps_otlp_queue_init(struct ps_otlp_queue *q, size_t max_bytes)
{
	*q = (struct ps_otlp_queue){ .tail = &q->head, .max_bytes = max_bytes };
}

int ps_otlp_queue_push(struct ps_otlp_queue *q, const char *json, size_t len, uint32_t spans)
{
	struct ps_otlp_frag *f;

	if (len > q->max_bytes || q->pending_bytes + q->held_bytes > q->max_bytes - len)
		return -ENOSPC;
	f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	f->next = NULL;
	f->spans = spans;
	f->len = len;
	memcpy(f->json, json, len);
	*q->tail = f;
	q->tail = &f->next;
	q->pending_bytes += len;
	q->pending_spans += spans;
	return 0;
}

char *ps_otlp_queue_take(struct ps_otlp_queue *q, size_t max_raw, size_t *body_len, uint32_t *spans,
			 size_t *raw)
{
	size_t n = 0, bytes = 0, len, off;
	uint32_t count = 0;
	struct ps_otlp_frag *f;
	char *body;

	errno = 0;
	if (!q->head)
		return NULL;
	for (f = q->head; f && (n == 0 || bytes + f->len <= max_raw); f = f->next) {
		bytes += f->len;
		count += f->spans;
		n++;
	}
	len = sizeof(BODY_HEAD) - 1 + bytes + (n - 1) + sizeof(BODY_TAIL) - 1;
	body = malloc(len + 1);
	if (!body) {
		errno = ENOMEM;
		return NULL;
	}
	memcpy(body, BODY_HEAD, sizeof(BODY_HEAD) - 1);
	off = sizeof(BODY_HEAD) - 1;
	for (size_t i = 0; i < n; i++) {
		f = q->head;
		if (i)
			body[off++] = ',';
		memcpy(body + off, f->json, f->len);
		off += f->len;
		q->head = f->next;
		free(f);
	}
	if (!q->head)
		q->tail = &q->head;
	memcpy(body + off, BODY_TAIL, sizeof(BODY_TAIL));
	q->pending_bytes -= bytes;
	q->pending_spans -= count;
	q->held_bytes += bytes;
	*body_len = len;
	*spans = count;
	*raw = bytes;
	return body;
}

void ps_otlp_queue_release(struct ps_otlp_queue *q, size_t raw)
{
	q->held_bytes -= raw <= q->held_bytes ? raw : q->held_bytes;
}

uint64_t ps_otlp_queue_clear(struct ps_otlp_queue *q)
{
	uint64_t spans = q->pending_spans;

	while (q->head) {
		struct ps_otlp_frag *f = q->head;

		q->head = f->next;
		free(f);
	}
	q->tail = &q->head;
	q->pending_bytes = 0;
	q->pending_spans = 0;
	return spans;
}

/* ---- Retry-After, backoff, verdicts -------------------------------------------------------- */

int ps_otlp_retry_after_ms(const char *value, time_t now, uint64_t cap_ms, uint64_t *ms)
{
	/* IMF-fixdate, then the obsolete RFC 850 and asctime forms RFC 9110 still accepts. */
	static const char *const formats[] = { "%a, %d %b %Y %H:%M:%S GMT",
					       "%A, %d-%b-%y %H:%M:%S GMT",
					       "%a %b %e %H:%M:%S %Y" };
	const char *end = value ? value + strlen(value) : NULL;
	uint64_t secs = 0;

	if (!value)
		return -EINVAL;
	while (*value == ' ' || *value == '\t')
		value++;
	while (end > value &&
	       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if (end == value)
		return -EINVAL;
	if (strspn(value, "0123456789") == (size_t)(end - value)) {
		for (const char *p = value; p < end; p++) {
			secs = secs * 10 + (uint64_t)(*p - '0');
			if (secs > cap_ms / 1000 + 1)
				break; /* capped below anyway; no overflow */
		}
		*ms = secs * 1000 < cap_ms ? secs * 1000 : cap_ms;
		return 0;
	}
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		char text[64];
		struct tm tm = { 0 };
		const char *rest;
		time_t at;

		if ((size_t)(end - value) >= sizeof(text))
			return -EINVAL;
		memcpy(text, value, (size_t)(end - value));
		text[end - value] = '\0';
		rest = strptime(text, formats[i], &tm);
		if (!rest || *rest)
			continue;
		at = timegm(&tm);
		if (at == (time_t)-1)
			return -EINVAL;
		secs = at > now ? (uint64_t)(at - now) : 0;
		*ms = secs < cap_ms / 1000 ? secs * 1000 : cap_ms;
		return 0;
	}
	return -EINVAL;
}

uint64_t ps_otlp_backoff_ms(unsigned failures, uint64_t initial_ms, uint64_t max_ms,
			    uint32_t random)
{
	uint64_t step = initial_ms;

	for (unsigned i = 1; i < failures && step < max_ms; i++)
		step *= 2;
	if (step > max_ms)
		step = max_ms;
	return step - step / 2 + (step / 2 ? random % (step / 2 + 1) : 0);
}

enum ps_otlp_verdict ps_otlp_verdict(int curl_code, long status)
{
	switch ((CURLcode)curl_code) {
	case CURLE_OK:
		break;
	/* The request itself is wrong: sending it again fails the same way. */
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_TOO_MANY_REDIRECTS:
		return PS_OTLP_DROP;
	default:
		return PS_OTLP_RETRY; /* name lookup, connect, TLS, timeout, a cut connection */
	}
	if (status >= 200 && status < 300)
		return PS_OTLP_SENT;
	if (status == 429 || status == 502 || status == 503 || status == 504)
		return PS_OTLP_RETRY;
	return PS_OTLP_DROP;
}

uint64_t ps_otlp_rejected_spans(const char *body, size_t len)
{
	static const char key[] = "\"rejectedSpans\"";
	const char *p = body, *end = body + len;
	uint64_t n = 0;

	/* memmem: the answer is not NUL-terminated, and is ours to bound. */
	p = body && len ? memmem(body, len, key, sizeof(key) - 1) : NULL;
	if (!p)
		return 0;
	p += sizeof(key) - 1;
	while (p < end && (*p == ' ' || *p == ':' || *p == '"' || *p == '\t'))
		p++;
	while (p < end && *p >= '0' && *p <= '9' && n < UINT32_MAX)
		n = n * 10 + (uint64_t)(*p++ - '0');
	return n;
}

int ps_otlp_gzip(const char *in, size_t len, char **out, size_t *out_len)
{
	z_stream z = { 0 };
	uLong bound;
	char *buf;
	int rc;

	/* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return -ENOMEM;
	bound = deflateBound(&z, (uLong)len);
	buf = malloc(bound);
	if (!buf) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)buf;
	z.avail_out = (uInt)bound;
	rc = deflate(&z, Z_FINISH);
	*out_len = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	return 0;
}

/* ---- configuration ------------------------------------------------------------------------- */

struct otlp_config {
	char *endpoint;
	uint64_t timeout_ms;
	uint64_t max_queue;
	char *compression;
	struct ps_strmap headers;
	uint64_t max_retry_time_ms;
};

static const char *const compressions[] = { "gzip", "none", NULL };

static const struct ps_cfg_key otlp_config_map[] = {
	{ "endpoint", PS_CFG_STRING, NULL, offsetof(struct otlp_config, endpoint), NULL,
	  "OTLP/HTTP traces URL: http://collector:4318/v1/traces (http or https)" },
	{ "timeout", PS_CFG_DURATION, "10s", offsetof(struct otlp_config, timeout_ms), NULL,
	  "one request, connect to answer; also bounds the last attempt at exit", "100ms", "10m" },
	{ "max_queue", PS_CFG_SIZE, "4MiB", offsetof(struct otlp_config, max_queue), NULL,
	  "span JSON waiting to be sent, in flight or retried; past it new spans are dropped",
	  "4KiB", "1GiB" },
	{ "compression", PS_CFG_STRING, "gzip", offsetof(struct otlp_config, compression),
	  compressions, "gzip or none" },
	{ "headers", PS_CFG_STRMAP, NULL, offsetof(struct otlp_config, headers), NULL,
	  "extra request headers, e.g. an API key (never logged)", NULL, "64" },
	{ "max_retry_time", PS_CFG_DURATION, "5m", offsetof(struct otlp_config, max_retry_time_ms),
	  NULL, "a request still failing this long after its first attempt is dropped", "1s",
	  "1d" },
	{ NULL },
};

/* Headers the sink writes itself; a configured one would contradict the body. */
static const char *const reserved_headers[] = { "content-type",
						"content-encoding",
						"content-length",
						"transfer-encoding",
						"host",
						"expect",
						NULL };

static bool is_token(const char *s)
{
	/* RFC 9110 token characters. */
	return *s && strspn(s, "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			       "abcdefghijklmnopqrstuvwxyz") == strlen(s);
}

/* "scheme://host[:port]" of the endpoint, for the log: no credentials, no path. */
static int endpoint_origin(const char *endpoint, char *buf, size_t len)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *port = NULL;
	const char *authority = strstr(endpoint, "://");
	int rc = -EINVAL;

	/* curl would read "http:///v1/traces" as the host v1: a host must follow "//". */
	if (!authority || !authority[3] || authority[3] == '/' || authority[3] == '?' ||
	    authority[3] == '#')
		return -EINVAL;
	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, endpoint, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] &&
	    (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https"))) {
		if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
			port = NULL;
		snprintf(buf, len, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
		rc = 0;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

static int otlp_check(const void *config, const struct ps_cfg_node *section,
		      struct ps_cfg_error *err)
{
	const struct otlp_config *cfg = config;
	const struct ps_cfg_node *headers = ps_cfg_node_get(section, "headers");
	char origin[256];

	if (!cfg->endpoint)
		return ps_cfg_errorf(err, section,
				     "sinks.otlp: endpoint is required (e.g. "
				     "\"http://collector:4318/v1/traces\")");
	if (strncasecmp(cfg->endpoint, "http://", 7) && strncasecmp(cfg->endpoint, "https://", 8))
		return ps_cfg_errorf(err, ps_cfg_node_get(section, "endpoint"),
				     "sinks.otlp.endpoint: expected an http:// or https:// URL");
	if (ps_curl_open())
		return ps_cfg_errorf(err, section,
				     "sinks.otlp: needs libcurl (libcurl.so.4): install libcurl4");
	if (endpoint_origin(cfg->endpoint, origin, sizeof(origin)))
		return ps_cfg_errorf(err, ps_cfg_node_get(section, "endpoint"),
				     "sinks.otlp.endpoint: not a URL with a host (e.g. "
				     "\"http://collector:4318/v1/traces\")");
	for (size_t i = 0; i < cfg->headers.n; i++) {
		const char *name = cfg->headers.keys[i], *value = cfg->headers.values[i];
		const struct ps_cfg_node *at = headers ? ps_cfg_node_get(headers, name) : section;

		if (!is_token(name))
			return ps_cfg_errorf(err, at,
					     "sinks.otlp.headers: '%s' is not a header name", name);
		for (const char *const *r = reserved_headers; *r; r++)
			if (!strcasecmp(name, *r))
				return ps_cfg_errorf(
					err, at, "sinks.otlp.headers: %s is set by the sink", name);
		/* The value is not quoted back: it may be a secret. */
		if (strpbrk(value, "\r\n"))
			return ps_cfg_errorf(
				err, at, "sinks.otlp.headers.%s: a value may not span lines", name);
	}
	return 0;
}

/* ---- the sink ------------------------------------------------------------------------------ */

struct otlp_sink;

/* One socket curl asked us to watch. */
struct watch {
	uv_poll_t poll;
	curl_socket_t fd;
	struct otlp_sink *sink;
	struct watch *next;
};

struct request {
	struct otlp_sink *sink;
	struct request *next; /* in the in-flight or the retry list */
	CURL *easy;
	char *body;
	size_t body_len, raw;
	uint32_t spans;
	uint64_t first_attempt_ms;
	char response[RESPONSE_MAX];
	size_t response_len;
	char retry_after[64]; /* the answer's Retry-After value, "" without one */
};

enum drop_reason {
	DROP_QUEUE_FULL,
	DROP_REJECTED,
	DROP_RETRIES_EXHAUSTED,
	DROP_SHUTDOWN,
	DROP_INVALID,
	DROP_REASONS,
};

static const char *const drop_names[DROP_REASONS] = {
	[DROP_QUEUE_FULL] = "queue_full",
	[DROP_REJECTED] = "rejected",
	[DROP_RETRIES_EXHAUSTED] = "retries_exhausted",
	[DROP_SHUTDOWN] = "shutdown",
	[DROP_INVALID] = "invalid",
};

struct otlp_sink {
	char *endpoint;
	char origin[256];
	uint64_t timeout_ms, max_retry_time_ms;
	bool gzip;
	struct curl_slist *headers;
	struct ps_otlp_queue queue;
	size_t request_max_raw;

	CURLM *multi;
	uv_timer_t curl_timer, retry_timer, final_timer;
	struct watch *watches;
	struct request *retries, **retries_tail;
	struct request *flying; /* in curl's hands */
	unsigned in_flight;
	uint64_t hold_until_ms; /* no request starts before: backoff or Retry-After */
	unsigned failures;	/* consecutive */
	uint32_t rand;
	bool flush_wanted;	   /* a flush asked for everything pending to go (as does final) */
	bool final;		   /* the last attempt runs: the final flush or a reload's close */
	bool exiting;		   /* the final flush came */
	uint64_t last_deadline_ms; /* when the last attempt ends, from its start; 0: not begun */
	bool closed;		   /* close() was called: free once the last attempt ends */
	bool torn_down;
	bool failing;  /* logged once per outage */
	bool dropping; /* queue_full logged once per episode */
	int open_handles;
	uint64_t outage_dropped;

	struct ps_metric *m_spans, *m_dropped, *m_failed, *m_queue;
};

static uv_loop_t *sink_loop;

void ps_sink_otlp_set_loop(uv_loop_t *loop)
{
	sink_loop = loop;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t next_rand(struct otlp_sink *s)
{
	/* xorshift32: jitter only needs to differ between daemons and attempts. */
	s->rand ^= s->rand << 13;
	s->rand ^= s->rand >> 17;
	s->rand ^= s->rand << 5;
	return s->rand;
}

/* ---- metrics ------------------------------------------------------------------------------- */

static void register_metrics(struct otlp_sink *s)
{
	static const char *const sink_labels[] = { "service_name", "sink", NULL };
	static const char *const reason_labels[] = { "service_name", "sink", "reason", NULL };

	s->m_spans = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_export_spans_total",
		.help = "Spans an export sink delivered (the collector accepted them)",
		.type = PS_METRIC_COUNTER,
		.labels = sink_labels,
	});
	s->m_dropped = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_export_dropped_total",
		.help = "Spans an export sink dropped: queue_full, rejected, retries_exhausted, "
			"shutdown, invalid",
		.type = PS_METRIC_COUNTER,
		.labels = reason_labels,
	});
	s->m_failed = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_export_requests_failed_total",
		.help = "Export requests that failed: connection, timeout, throttled (429), "
			"unavailable (502, 503, 504), rejected (other answers)",
		.type = PS_METRIC_COUNTER,
		.labels = reason_labels,
	});
	s->m_queue = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_export_queue_bytes",
		.help = "Span JSON an export sink holds: waiting, in flight or to be retried",
		.type = PS_METRIC_GAUGE,
		.labels = sink_labels,
	});
}

static void count_sent(struct otlp_sink *s, uint64_t spans)
{
	const char *values[] = { "periscoped", SUBSYS, NULL };

	if (s->m_spans && spans)
		ps_metric_add(s->m_spans, values, (double)spans);
}

static void count_dropped(struct otlp_sink *s, enum drop_reason why, uint64_t spans)
{
	const char *values[] = { "periscoped", SUBSYS, drop_names[why], NULL };

	if (!spans)
		return;
	s->outage_dropped += spans;
	if (s->m_dropped)
		ps_metric_add(s->m_dropped, values, (double)spans);
}

static void count_failed(struct otlp_sink *s, const char *why)
{
	const char *values[] = { "periscoped", SUBSYS, why, NULL };

	if (s->m_failed)
		ps_metric_add(s->m_failed, values, 1);
}

static void update_queue_gauge(struct otlp_sink *s)
{
	const char *values[] = { "periscoped", SUBSYS, NULL };

	if (s->m_queue)
		ps_metric_set(s->m_queue, values,
			      (double)(s->queue.pending_bytes + s->queue.held_bytes));
}

/* ---- requests ------------------------------------------------------------------------------ */

static void request_free(struct request *r)
{
	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	free(r->body);
	free(r);
}

/* The request is over (sent or dropped): its bytes leave the queue. */
static void request_end(struct request *r)
{
	struct otlp_sink *s = r->sink;

	ps_otlp_queue_release(&s->queue, r->raw);
	request_free(r);
	update_queue_gauge(s);
}

static size_t on_response(char *data, size_t size, size_t n, void *userp)
{
	struct request *r = userp;
	size_t len = size * n, room = sizeof(r->response) - r->response_len;

	memcpy(r->response + r->response_len, data, len < room ? len : room);
	r->response_len += len < room ? len : room;
	return len; /* the rest is read and ignored */
}

/* Keeps Retry-After; the header API (curl_easy_header) is younger than the curls we build on. */
static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
	static const char name[] = "Retry-After:";
	struct request *r = userp;
	size_t len = size * n, vlen;

	if (len > sizeof(name) - 1 && !strncasecmp(data, name, sizeof(name) - 1)) {
		vlen = len - (sizeof(name) - 1);
		if (vlen >= sizeof(r->retry_after))
			vlen = sizeof(r->retry_after) - 1;
		memcpy(r->retry_after, data + sizeof(name) - 1, vlen);
		r->retry_after[vlen] = '\0';
	}
	return len;
}

static int request_start(struct request *r)
{
	struct otlp_sink *s = r->sink;
	CURL *e = curl_easy_init();

	if (!e)
		return -ENOMEM;
	r->easy = e;
	r->response_len = 0;
	r->retry_after[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, s->endpoint);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
	/* A transfer ended during a name lookup leaves the resolver thread behind, unjoined. */
	curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "periscope/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	if (curl_multi_add_handle(s->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		return -ENOMEM;
	}
	r->next = s->flying;
	s->flying = r;
	s->in_flight++;
	return 0;
}

/* A new request from what is pending; NULL when nothing is, or no memory. */
static struct request *request_new(struct otlp_sink *s)
{
	struct request *r = calloc(1, sizeof(*r));
	char *json;
	size_t len;

	if (!r)
		return NULL;
	r->sink = s;
	json = ps_otlp_queue_take(&s->queue, s->request_max_raw, &len, &r->spans, &r->raw);
	if (!json) {
		free(r);
		return NULL;
	}
	r->first_attempt_ms = mono_ms();
	if (s->gzip) {
		if (ps_otlp_gzip(json, len, &r->body, &r->body_len)) {
			/* Out of memory; the headers promise gzip, so it cannot go as it is. */
			free(json);
			count_dropped(s, DROP_INVALID, r->spans);
			request_end(r);
			return NULL;
		}
		free(json);
	} else {
		r->body = json;
		r->body_len = len;
	}
	return r;
}

static void retry_later(struct otlp_sink *s, struct request *r)
{
	r->next = NULL;
	*s->retries_tail = r;
	s->retries_tail = &r->next;
}

static struct request *next_retry(struct otlp_sink *s)
{
	struct request *r = s->retries;

	if (r) {
		s->retries = r->next;
		if (!s->retries)
			s->retries_tail = &s->retries;
	}
	return r;
}

static void final_done(struct otlp_sink *s);

static void on_retry_timer(uv_timer_t *t);

static bool idle(const struct otlp_sink *s)
{
	return !s->in_flight && !s->retries && !s->queue.head;
}

/* Starts what may start now: retries first, then what is pending. */
static void pump(struct otlp_sink *s)
{
	uint64_t now = mono_ms();

	if (s->torn_down)
		return;
	if (now < s->hold_until_ms) {
		if (!uv_is_active((uv_handle_t *)&s->retry_timer))
			uv_timer_start(&s->retry_timer, on_retry_timer, s->hold_until_ms - now, 0);
		return;
	}
	while (s->in_flight < MAX_IN_FLIGHT) {
		struct request *r = next_retry(s);

		if (!r && s->queue.head &&
		    (s->flush_wanted || s->final || s->queue.pending_bytes >= s->request_max_raw))
			r = request_new(s);
		if (!r)
			break;
		if (request_start(r)) {
			ps_warn(SUBSYS,
				"cannot start a request: out of memory; retrying at the next flush");
			retry_later(s, r);
			break;
		}
	}
	if (!s->queue.head)
		s->flush_wanted = false;
	if (s->final && idle(s))
		final_done(s);
}

static void on_retry_timer(uv_timer_t *t)
{
	pump(t->data);
}

static const char *failure_reason(CURLcode rc, long status)
{
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return "timeout";
	if (rc != CURLE_OK)
		return "connection";
	if (status == 429)
		return "throttled";
	if (status == 502 || status == 503 || status == 504)
		return "unavailable";
	return "rejected";
}

static void note_failure(struct otlp_sink *s, CURLcode rc, long status, const char *then)
{
	char what[128];

	if (s->failing)
		return;
	s->failing = true;
	s->outage_dropped = 0;
	if (rc != CURLE_OK)
		snprintf(what, sizeof(what), "%s", curl_easy_strerror(rc));
	else
		snprintf(what, sizeof(what), "HTTP %ld", status);
	ps_warn(SUBSYS, "%s: %s; %s", s->origin, what, then);
}

static void note_success(struct otlp_sink *s)
{
	s->failures = 0;
	if (!s->failing)
		return;
	s->failing = false;
	ps_info(SUBSYS, "%s: exporting again (%" PRIu64 " spans dropped meanwhile)", s->origin,
		s->outage_dropped);
}

/* Retry-After of the answer, in ms; false without one (or one that does not parse). */
static bool retry_after(const struct request *r, uint64_t *ms)
{
	return r->retry_after[0] &&
	       ps_otlp_retry_after_ms(r->retry_after, time(NULL), RETRY_AFTER_CAP_MS, ms) == 0;
}

static void request_done(struct otlp_sink *s, struct request *r, CURLcode rc)
{
	long status = 0;
	uint64_t wait_ms, now = mono_ms(), rejected;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	switch (ps_otlp_verdict(rc, status)) {
	case PS_OTLP_SENT:
		rejected = ps_otlp_rejected_spans(r->response, r->response_len);
		if (rejected > r->spans)
			rejected = r->spans;
		count_sent(s, r->spans - rejected);
		count_dropped(s, DROP_REJECTED, rejected);
		note_success(s);
		request_end(r);
		break;
	case PS_OTLP_DROP:
		count_failed(s, failure_reason(rc, status));
		count_dropped(s, DROP_REJECTED, r->spans);
		/* Privacy: the answer may quote the spans; only the status is logged. */
		note_failure(s, rc, status,
			     "the requests it refuses are dropped (periscope_export_dropped_total"
			     "{reason=\"rejected\"})");
		s->failures = 0;
		request_end(r);
		break;
	case PS_OTLP_RETRY:
		count_failed(s, failure_reason(rc, status));
		if (now - r->first_attempt_ms >= s->max_retry_time_ms) {
			note_failure(s, rc, status, "retrying");
			count_dropped(s, DROP_RETRIES_EXHAUSTED, r->spans);
			request_end(r);
			break;
		}
		s->failures++;
		if (!retry_after(r, &wait_ms))
			wait_ms = ps_otlp_backoff_ms(s->failures, BACKOFF_INITIAL_MS,
						     BACKOFF_MAX_MS, next_rand(s));
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
		note_failure(s, rc, status, "retrying with backoff; spans queue meanwhile");
		if (s->hold_until_ms < now + wait_ms)
			s->hold_until_ms = now + wait_ms;
		retry_later(s, r);
		break;
	}
}

static void unfly(struct otlp_sink *s, struct request *r)
{
	for (struct request **pp = &s->flying; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			s->in_flight--;
			break;
		}
	}
	r->next = NULL;
}

static void check_done(struct otlp_sink *s)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(s->multi, &left))) {
		struct request *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		curl_multi_remove_handle(s->multi, msg->easy_handle);
		unfly(s, r);
		request_done(s, r, msg->data.result);
	}
	pump(s);
}

/* ---- curl on the loop ---------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h);

static void watch_close(struct watch *w)
{
	struct watch **pp;

	for (pp = &w->sink->watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	uv_close((uv_handle_t *)&w->poll, on_handle_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct otlp_sink *s = w->sink;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(s->multi, w->fd, flags, &running);
	check_done(s);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct otlp_sink *s = userp;
	struct watch *w = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (w) {
			curl_multi_assign(s->multi, fd, NULL);
			watch_close(w);
		}
		return 0;
	}
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -1;
		w->fd = fd;
		w->sink = s;
		if (uv_poll_init_socket(sink_loop, &w->poll, fd)) {
			free(w);
			return -1;
		}
		w->poll.data = w;
		uv_unref((uv_handle_t *)&w->poll);
		s->open_handles++;
		w->next = s->watches;
		s->watches = w;
		curl_multi_assign(s->multi, fd, w);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&w->poll, events, on_poll);
	return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
	struct otlp_sink *s = t->data;
	int running;

	curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(s);
}

static int on_curl_timeout(CURLM *multi, long timeout_ms, void *userp)
{
	struct otlp_sink *s = userp;

	if (timeout_ms < 0)
		uv_timer_stop(&s->curl_timer);
	else /* 0 too: curl must not be re-entered from its own callback */
		uv_timer_start(&s->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static void sink_free(struct otlp_sink *s)
{
	ps_otlp_queue_clear(&s->queue);
	curl_slist_free_all(s->headers);
	free(s->endpoint);
	free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct otlp_sink *s;

	if (h->type == UV_POLL) {
		struct watch *w = h->data;

		s = w->sink;
		free(w);
	} else {
		s = h->data;
	}
	if (--s->open_handles == 0 && s->closed)
		sink_free(s);
}

/* Drops everything still queued (counted as reason) and stops every transfer. */
static void abandon(struct otlp_sink *s, enum drop_reason reason)
{
	struct request *r;
	uint64_t spans = 0;

	while ((r = next_retry(s))) {
		spans += r->spans;
		request_end(r);
	}
	while ((r = s->flying)) {
		curl_multi_remove_handle(s->multi, r->easy);
		unfly(s, r);
		spans += r->spans;
		request_end(r);
	}
	spans += ps_otlp_queue_clear(&s->queue);
	count_dropped(s, reason, spans);
	update_queue_gauge(s);
	if (spans)
		ps_warn(SUBSYS,
			"%s: %" PRIu64 " spans could not be sent in the last attempt: "
			"dropped",
			s->origin, spans);
}

/* Ends the sink's handles; the sink is freed when they are closed and close() was called. */
static void teardown(struct otlp_sink *s)
{
	if (s->torn_down)
		return;
	s->torn_down = true;
	abandon(s, DROP_SHUTDOWN);
	if (s->multi) {
		curl_multi_cleanup(s->multi); /* may hand back sockets (on_socket closes them) */
		s->multi = NULL;
	}
	while (s->watches)
		watch_close(s->watches);
	uv_close((uv_handle_t *)&s->curl_timer, on_handle_closed);
	uv_close((uv_handle_t *)&s->retry_timer, on_handle_closed);
	uv_close((uv_handle_t *)&s->final_timer, on_handle_closed);
}

/* The last attempt ended: sent, or out of time. */
static void final_done(struct otlp_sink *s)
{
	uv_timer_stop(&s->final_timer);
	s->final = false;
	if (!idle(s))
		abandon(s, DROP_SHUTDOWN);
	if (s->closed)
		teardown(s);
}

static void on_final_timer(uv_timer_t *t)
{
	final_done(t->data);
}

/*
 * One last bounded attempt: everything queued goes now, for at most `timeout`
 * from the first call. Spans that come later (plugins publish what they held
 * when they stop, after the final flush) call it again, within what is left.
 */
static void last_attempt(struct otlp_sink *s)
{
	uint64_t now = mono_ms();

	if (s->torn_down || s->final)
		return;
	if (!s->last_deadline_ms)
		s->last_deadline_ms = now + s->timeout_ms;
	s->final = true;
	if (idle(s) || now >= s->last_deadline_ms) {
		final_done(s);
		return;
	}
	ps_info(SUBSYS,
		"%s: last attempt for the %" PRIu64 " queued bytes (at most %" PRIu64 " ms)",
		s->origin, (uint64_t)(s->queue.pending_bytes + s->queue.held_bytes),
		s->last_deadline_ms - now);
	/* Referenced, unlike the other handles: the loop runs until this attempt ends. */
	uv_timer_start(&s->final_timer, on_final_timer, s->last_deadline_ms - now, 0);
	uv_ref((uv_handle_t *)&s->final_timer);
	pump(s);
}

static struct curl_slist *build_headers(const struct otlp_config *cfg, bool gzip)
{
	struct curl_slist *list = NULL, *next;
	char *line;

	/* "Expect:" off: a collector need not answer 100-continue, and waiting on it costs a second. */
	const char *fixed[] = { "Content-Type: application/json",
				"Expect:", gzip ? "Content-Encoding: gzip" : NULL };

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && fixed[i]; i++) {
		next = curl_slist_append(list, fixed[i]);
		if (!next)
			goto fail;
		list = next;
	}
	for (size_t i = 0; i < cfg->headers.n; i++) {
		if (asprintf(&line, "%s: %s", cfg->headers.keys[i], cfg->headers.values[i]) < 0)
			goto fail;
		next = curl_slist_append(list, line);
		free(line);
		if (!next)
			goto fail;
		list = next;
	}
	return list;
fail:
	curl_slist_free_all(list);
	return NULL;
}

static void otlp_close(void *state)
{
	struct otlp_sink *s = state;

	if (!s)
		return;
	s->closed = true;
	if (!s->multi) {
		sink_free(s); /* --check-config's: it never had handles */
		return;
	}
	if (s->final)
		return; /* the last attempt runs; it tears the sink down when it ends */
	/*
	 * A reload closes the sink while the loop runs on: what it holds gets its
	 * last attempt in the background, as at exit. After the final flush the
	 * loop has ended and there is nothing left to try.
	 */
	if (!s->exiting && !idle(s)) {
		last_attempt(s);
		if (s->final)
			return;
	}
	teardown(s);
}

static void *otlp_open(const void *config)
{
	static bool curl_ready;
	const struct otlp_config *cfg = config;
	const curl_version_info_data *v;
	struct otlp_sink *s;
	int rc = -ENOMEM;

	if (!cfg || !cfg->endpoint) {
		errno = EINVAL;
		return NULL;
	}
	if (ps_curl_open()) {
		errno = ENOENT;
		return NULL;
	}
	/* Once, on the loop thread, before any other thread could use curl. */
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
			errno = EIO;
			return NULL;
		}
		curl_ready = true;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->endpoint = strdup(cfg->endpoint);
	s->timeout_ms = cfg->timeout_ms;
	s->max_retry_time_ms = cfg->max_retry_time_ms;
	s->gzip = !cfg->compression || strcmp(cfg->compression, "none");
	s->retries_tail = &s->retries;
	s->rand = (uint32_t)(mono_ms() ^ ((uint64_t)getpid() << 16)) | 1;
	ps_otlp_queue_init(&s->queue, cfg->max_queue);
	s->request_max_raw =
		cfg->max_queue / 4 < REQUEST_MAX_RAW ? cfg->max_queue / 4 : REQUEST_MAX_RAW;
	s->headers = build_headers(cfg, s->gzip);
	if (!s->endpoint || !s->headers)
		goto fail;
	if (endpoint_origin(cfg->endpoint, s->origin, sizeof(s->origin))) {
		ps_error(SUBSYS, "endpoint: not an http:// or https:// URL with a host");
		rc = -EINVAL;
		goto fail;
	}
	/* Without the daemon's loop (--check-config) the settings are only judged. */
	if (!sink_loop)
		return s;
	v = curl_version_info(CURLVERSION_NOW);
	if (!(v->features & CURL_VERSION_ASYNCHDNS))
		ps_warn(SUBSYS, "this libcurl resolves names synchronously: use an IP address in "
				"the endpoint, or name lookups may stall the daemon");
	else if (v->version_num < 0x075700)
		ps_warn(SUBSYS,
			"libcurl %s waits for a name lookup that outlasts the timeout "
			"(7.87 does not): with a slow name server, use an IP address",
			v->version);
	s->multi = curl_multi_init();
	if (!s->multi)
		goto fail;
	curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
	curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timeout);
	curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
	curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)MAX_IN_FLIGHT);
	uv_timer_init(sink_loop, &s->curl_timer);
	uv_timer_init(sink_loop, &s->retry_timer);
	uv_timer_init(sink_loop, &s->final_timer);
	s->curl_timer.data = s->retry_timer.data = s->final_timer.data = s;
	uv_unref((uv_handle_t *)&s->curl_timer);
	uv_unref((uv_handle_t *)&s->retry_timer);
	uv_unref((uv_handle_t *)&s->final_timer);
	s->open_handles = 3;
	register_metrics(s);
	update_queue_gauge(s);
	ps_info(SUBSYS, "exporting spans to %s (OTLP/HTTP JSON%s, queue %" PRIu64 " bytes)",
		s->origin, s->gzip ? ", gzip" : "", (uint64_t)cfg->max_queue);
	return s;

fail:
	if (s->multi)
		curl_multi_cleanup(s->multi);
	sink_free(s);
	errno = -rc;
	return NULL;
}

/* A batch of spans is an object on one line: anything else would corrupt the request. */
static bool plausible(const struct ps_span_batch *b)
{
	return b->resource_spans_json && b->len >= 2 && b->resource_spans_json[0] == '{' &&
	       b->resource_spans_json[b->len - 1] == '}' &&
	       !memchr(b->resource_spans_json, '\n', b->len);
}

static void otlp_event(void *state, const struct ps_event *ev)
{
	struct otlp_sink *s = state;
	const struct ps_span_batch *b;
	int rc;

	if (ev->type != PS_EVENT_SPANS || !ev->spans || !s->multi || s->closed)
		return;
	b = ev->spans;
	if (!b->span_count)
		return;
	if (!plausible(b)) {
		count_dropped(s, DROP_INVALID, b->span_count);
		return;
	}
	rc = ps_otlp_queue_push(&s->queue, b->resource_spans_json, b->len, b->span_count);
	if (rc) {
		count_dropped(s, DROP_QUEUE_FULL, b->span_count);
		if (!s->dropping)
			ps_warn(SUBSYS, "%s: %s: dropping spans until it has room again", s->origin,
				rc == -ENOSPC ? "queue full" : "out of memory");
		s->dropping = true;
		return;
	}
	s->dropping = false;
	update_queue_gauge(s);
	if (s->exiting && !s->final)
		last_attempt(s); /* published after the final flush: still within its bound */
	else if (s->final || s->queue.pending_bytes >= s->request_max_raw)
		pump(s);
}

static int otlp_flush(void *state, const struct ps_flush_ctx *ctx)
{
	struct otlp_sink *s = state;

	if (!s->multi)
		return 0;
	update_queue_gauge(s);
	if (ctx->final) {
		s->exiting = true;
		last_attempt(s);
		return 0;
	}
	if (s->queue.head)
		s->flush_wanted = true;
	pump(s);
	return 0;
}

static bool otlp_takes_spans(void *state)
{
	(void)state;
	return true;
}

const struct ps_sink_type ps_sink_otlp = {
	.name = "otlp",
	.config_map = otlp_config_map,
	.config_size = sizeof(struct otlp_config),
	.open = otlp_open,
	.flush = otlp_flush,
	.event = otlp_event,
	.close = otlp_close,
	.check = otlp_check,
	.takes_spans = otlp_takes_spans,
};
