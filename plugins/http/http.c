/*
 * http: HTTP/1.x RED metrics, server view and client view, from the core
 * socket capture (periscope/capture.h).
 *
 * The plugin registers a protocol with the HTTP/1.x first-bytes classifier:
 * the capture hands it each HTTP/1.x connection's bytes, per syscall, in
 * order. Per connection, a decoder stream (http_proto.h) finds message
 * boundaries and pairs requests with responses; each completed exchange
 * becomes histogram observations and one PS_EVENT_EXCHANGE. A connection the
 * decoder proves not to be HTTP/1.x is rejected: the capture stops following
 * it. With tls: auto, HTTPS connections' plaintext comes from the capture's
 * OpenSSL uprobes: their exchanges carry url_scheme="https".
 *
 * Requests and responses the decoder could not pair go to
 * periscope_decode_errors_total{plugin="http"}: responses hidden in the part
 * of a read past capture_bytes (a pipelined client's), requests beyond the
 * pending queue. Malformed streams are counted by the capture.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <periscope/capture.h>
#include <periscope/plugin.h>
#include <periscope/semconv.h>

#include "http_proto.h"

#define SUBSYS		  "http"
#define LABEL_SLOTS	  512 /* a power of two */
#define LABEL_SERVICE_MAX 64  /* longer service names are observed without the cache */
#define LABEL_SERIES	  3   /* server: duration, request and response body size */

struct http_config {
	struct ps_portlist ports;
	uint64_t capture_bytes;
	struct ps_strlist routes;
	char *tls;
	uint64_t max_routes;
};

/* A route unseen this long gives its place under max_routes to a new one. */
#define ROUTE_IDLE_NS (600 * 1000000000ull)

/* An exchange's label values, the scheme aside (it follows tls). */
struct label_key {
	bool server, tls;
	uint16_t status;
	uint16_t port; /* client view: server_port, 0 for none; 0 on the server side */
	const char *service;
	const char *method;
	const char *text; /* server view: http_route; client view: server_address */
	size_t service_len;
	size_t text_len;
};

/*
 * The series one label set resolved to: an exchange whose labels were seen
 * before observes without the registry hashing and comparing every label value
 * of every histogram. Keys are compared whole, by value.
 */
struct label_slot {
	bool filled;
	/* Of each family when filled: a series of it removed since makes the handles stale. */
	unsigned long generation[LABEL_SERIES];
	bool server, tls;
	uint16_t status, port;
	char method[HTTP_METHOD_MAX];
	char service[LABEL_SERVICE_MAX];
	char text[HTTP_PATH_MAX];
	struct ps_series *series[LABEL_SERIES];
};

struct http {
	const char **routes; /* the configured templates, borrowed from the config */
	size_t n_routes;
	uint16_t *ports;     /* borrowed from the config too */
	size_t n_ports;
	uint32_t capture_bytes;
	bool tls_on; /* tls: auto */
	struct ps_capture_reg *capture;
	struct http_route_limit *route_limit; /* distinct routes per service */
	uint64_t exchanges, unanswered, rejected;
	uint64_t lost_pending; /* not yet added to periscope_decode_errors_total */

	struct ps_metric *server_duration, *server_req_body, *server_resp_body;
	struct ps_metric *client_duration, *decode_errors;
	struct label_slot labels[LABEL_SLOTS];
};

/* One followed connection. */
struct http_conn {
	struct http_stream *s;
	uint32_t tid[2]; /* by enum http_dir: the thread that last moved bytes that way */
	uint32_t seq[2]; /* by enum ps_exchange_side: exchanges reported so far */
	uint64_t lost_seen; /* of the stream's lost count, what lost_pending has */
};

/* What the decoder's exchange callback needs. */
struct feed_ctx {
	struct http *st;
	const struct ps_capture_conn *c;
	struct http_conn *hc;
};

/* ---- label values ------------------------------------------------------------------------- */

/* Decimal digits of v, as "%u" prints them; buf holds at least 6 bytes. */
static const char *format_u16(char *buf, uint16_t v)
{
	char digits[5];
	size_t n = 0, i = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		buf[i++] = digits[--n];
	buf[i] = '\0';
	return buf;
}

/* server_address of the client view: the Host header, else the peer, else "". */
static const char *client_server_address(const struct ps_capture_conn *c,
					 const struct http_exchange *ex, char *buf, size_t len)
{
	if (ex->host[0])
		return ex->host;
	if ((c->remote.family == AF_INET || c->remote.family == AF_INET6) &&
	    inet_ntop(c->remote.family, c->remote.addr, buf, (socklen_t)len))
		return buf;
	return "";
}

/* server_port of the client view: the Host header's, else the peer's; 0 for none. */
static uint16_t client_server_port(const struct ps_capture_conn *c, const struct http_exchange *ex)
{
	return ex->host_port ? ex->host_port : c->remote.port;
}

static const char *scheme_of(bool tls)
{
	return tls ? "https" : "http";
}

/* ---- label sets -> series ------------------------------------------------------------------ */

/* The histograms one side observes per exchange, all under the same label set. */
struct side_metrics {
	struct ps_metric *m[LABEL_SERIES];
	size_t n;
};

/* Room for the label values that are formatted, not borrowed. */
struct label_buf {
	char status[8];
	char port[8];
	const char *v[7];
};

/*
 * The label values of k, in the order of server_labels or client_labels:
 * service, method, status, route, scheme or service, method, status,
 * server_address, server_port, scheme.
 */
static const char *const *label_values(const struct label_key *k, struct label_buf *b)
{
	size_t n = 0;

	b->v[n++] = k->service;
	b->v[n++] = k->method;
	b->v[n++] = format_u16(b->status, k->status);
	b->v[n++] = k->text;
	if (!k->server)
		b->v[n++] = k->port ? format_u16(b->port, k->port) : "";
	b->v[n++] = scheme_of(k->tls);
	b->v[n] = NULL;
	return b->v;
}

/* FNV-1a over the key; the slot still compares every field. */
static size_t label_hash(const struct label_key *k)
{
	uint64_t h = 14695981039346656037ull;

	h = (h ^ ((uint64_t)k->status << 16 | k->port)) * 1099511628211ull;
	h = (h ^ (uint64_t)(k->server << 1 | k->tls)) * 1099511628211ull;
	h = (h ^ (uint8_t)k->method[0]) * 1099511628211ull;
	h = (h ^ (uintptr_t)k->service) * 1099511628211ull;
	for (size_t i = 0; i < k->text_len; i++)
		h = (h ^ (uint8_t)k->text[i]) * 1099511628211ull;
	return (size_t)(h ^ h >> 32) & (LABEL_SLOTS - 1);
}

static bool label_slot_matches(const struct label_slot *sl, const struct label_key *k,
			       const struct side_metrics *sm)
{
	if (!sl->filled || sl->status != k->status || sl->port != k->port ||
	    sl->server != k->server || sl->tls != k->tls || strcmp(sl->method, k->method) != 0 ||
	    strcmp(sl->text, k->text) != 0 || strcmp(sl->service, k->service) != 0)
		return false;
	for (size_t i = 0; i < sm->n; i++)
		if (sl->generation[i] != ps_metric_family_generation(sm->m[i]))
			return false;
	return true;
}

/* Resolves the series of every metric; false (slot left empty) when one cannot be had. */
static bool label_slot_fill(struct label_slot *sl, const struct label_key *k,
			    const struct side_metrics *sm, const char *const *values)
{
	size_t method_len = strlen(k->method);

	sl->filled = false;
	if (k->service_len >= sizeof(sl->service) || k->text_len >= sizeof(sl->text) ||
	    method_len >= sizeof(sl->method))
		return false;
	for (size_t i = 0; i < sm->n; i++) {
		sl->series[i] = ps_metric_series(sm->m[i], values);
		if (!sl->series[i])
			return false; /* past the series cap: ps_metric_observe folds and counts */
	}
	sl->server = k->server;
	sl->tls = k->tls;
	sl->status = k->status;
	sl->port = k->port;
	memcpy(sl->method, k->method, method_len + 1);
	memcpy(sl->service, k->service, k->service_len + 1);
	memcpy(sl->text, k->text, k->text_len + 1);
	for (size_t i = 0; i < sm->n; i++)
		sl->generation[i] = ps_metric_family_generation(sm->m[i]);
	sl->filled = true;
	return true;
}

/*
 * Observes v[i] into sm->m[i], all under the label set k. Label sets seen before
 * go straight to their series; others are resolved (their values formatted) once.
 */
static void observe_labels(struct http *st, const struct label_key *k,
			   const struct side_metrics *sm, const double *v)
{
	struct label_slot *sl = &st->labels[label_hash(k)];
	const char *const *values;
	struct label_buf buf;

	if (!label_slot_matches(sl, k, sm)) {
		values = label_values(k, &buf);
		if (!label_slot_fill(sl, k, sm, values)) {
			for (size_t i = 0; i < sm->n; i++)
				ps_metric_observe(sm->m[i], values, v[i]);
			return;
		}
	}
	for (size_t i = 0; i < sm->n; i++)
		ps_series_observe(sm->m[i], sl->series[i], v[i]);
}

/* ---- exchanges -> metrics and events ------------------------------------------------------ */

static void observe_server(struct http *st, const char *service, const struct ps_capture_conn *c,
			   const struct http_exchange *ex, const char *route, double seconds)
{
	const struct side_metrics sm = {
		{ st->server_duration, st->server_req_body, st->server_resp_body }, 3
	};
	const double v[] = { seconds, (double)ex->request_body_bytes,
			     (double)ex->response_body_bytes };
	const struct label_key k = {
		.server = true,
		.tls = c->tls,
		.status = ex->status,
		.service = service,
		.method = ex->method,
		.text = route,
		.service_len = strlen(service),
		.text_len = strlen(route),
	};

	observe_labels(st, &k, &sm, v);
}

static void observe_client(struct http *st, const char *service, const struct ps_capture_conn *c,
			   const struct http_exchange *ex, double seconds)
{
	const struct side_metrics sm = { { st->client_duration }, 1 };
	char addr_buf[INET6_ADDRSTRLEN];
	const char *addr = client_server_address(c, ex, addr_buf, sizeof(addr_buf));
	const struct label_key k = {
		.server = false,
		.tls = c->tls,
		.status = ex->status,
		.port = client_server_port(c, ex),
		.service = service,
		.method = ex->method,
		.text = addr,
		.service_len = strlen(service),
		.text_len = strlen(addr),
	};

	observe_labels(st, &k, &sm, &seconds);
}

static void emit_exchange(const struct feed_ctx *fc, const struct http_exchange *ex, bool server,
			  const char *service, const char *route)
{
	const struct ps_capture_conn *c = fc->c;
	enum ps_exchange_side side = server ? PS_SIDE_SERVER : PS_SIDE_CLIENT;
	struct ps_exchange x = {
		.protocol = SUBSYS,
		.side = side,
		.pid = c->pid,
		/* the thread that read (server) or wrote (client) the request: tracectx joins on it */
		.tid = fc->hc->tid[server ? HTTP_DIR_IN : HTTP_DIR_OUT],
		.conn_id = c->id,
		.seq = fc->hc->seq[side]++,
		.local = c->local,
		.remote = c->remote,
		.service_name = service,
		.start_unix_ns = ps_clock_mono_to_unix_ns(ex->request_start_ns),
		.end_unix_ns = ps_clock_mono_to_unix_ns(ex->response_end_ns),
		.operation = ex->method,
		.target = route,
		.scheme = scheme_of(c->tls),
		.status = ex->status,
		.error = ex->status == 0 || ex->status >= 500,
		.traceparent = ex->traceparent[0] ? ex->traceparent : NULL,
		.tracestate = ex->tracestate[0] ? ex->tracestate : NULL,
	};
	struct ps_event ev = { .type = PS_EVENT_EXCHANGE, .plugin = SUBSYS, .exchange = &x };

	ps_event_emit(&ev);
}

/*
 * The decoder's callback. A request the connection ended before answering
 * (status 0) has no status label and no duration: it goes out as an
 * exchange event with error set, and is not observed.
 */
static void on_exchange(const struct http_exchange *ex, void *arg)
{
	const struct feed_ctx *fc = arg;
	struct http *st = fc->st;
	const struct ps_capture_conn *c = fc->c;
	bool server = ex->role == HTTP_ROLE_SERVER;
	char route[HTTP_PATH_MAX];
	const char *service = ps_proc_service_name(c->pid, c->comm[0] ? c->comm : NULL);
	double seconds = 0;

	if (ex->role == HTTP_ROLE_UNKNOWN)
		return;
	http_route(ex->path, st->routes, st->n_routes, route, sizeof(route));
	if (server)
		http_route_limit_apply(st->route_limit, service, route, sizeof(route),
				       ex->request_start_ns);
	emit_exchange(fc, ex, server, service, route);
	if (ex->status == 0) {
		st->unanswered++;
		return;
	}
	st->exchanges++;
	if (ex->response_end_ns > ex->request_start_ns)
		seconds = (double)(ex->response_end_ns - ex->request_start_ns) / 1e9;
	if (server)
		observe_server(st, service, c, ex, route, seconds);
	else
		observe_client(st, service, c, ex, seconds);
}

/* ---- connections from the capture ------------------------------------------------------ */

static void account_lost(struct http *st, struct http_conn *hc)
{
	uint64_t lost = http_stream_lost(hc->s);

	st->lost_pending += lost - hc->lost_seen;
	hc->lost_seen = lost;
}

static void *on_conn_open(void *ctx, const struct ps_capture_conn *c)
{
	struct http_conn *hc = calloc(1, sizeof(*hc));

	if (!hc)
		return NULL;
	hc->s = http_stream_new();
	if (!hc->s) {
		free(hc);
		return NULL;
	}
	hc->tid[HTTP_DIR_IN] = hc->tid[HTTP_DIR_OUT] = c->pid;
	return hc;
}

static int on_conn_data(void *ctx, void *state, const struct ps_capture_conn *c,
			const struct ps_capture_chunk *ch)
{
	struct http_conn *hc = state;
	struct feed_ctx fc = { .st = ctx, .c = c, .hc = hc };
	enum http_dir dir = ch->dir == PS_CAPTURE_OUT ? HTTP_DIR_OUT : HTTP_DIR_IN;
	int rc;

	hc->tid[dir] = ch->tid;
	rc = http_stream_feed(hc->s, dir, ch->data, ch->len, ch->total, ch->ts_ns, on_exchange, &fc);
	account_lost(fc.st, hc);

	if (rc == -EPROTO) {
		fc.st->rejected++;
		ps_debug(SUBSYS, "pid %u (%s): not HTTP/1.x, no longer followed", c->pid, c->comm);
	}
	return rc;
}

/* Completes a close-delimited response; requests still waiting go out unanswered. */
static void on_conn_close(void *ctx, void *state, const struct ps_capture_conn *c, uint64_t ts_ns)
{
	struct http_conn *hc = state;
	struct feed_ctx fc = { .st = ctx, .c = c, .hc = hc };

	http_stream_close(hc->s, ts_ns, on_exchange, &fc);
	account_lost(fc.st, hc);
	http_stream_free(hc->s);
	free(hc);
}

/* ---- life cycle --------------------------------------------------------------------------- */

static const char *const server_labels[] = {
	PS_L_SERVICE_NAME, PS_L_HTTP_METHOD, PS_L_HTTP_STATUS, PS_L_HTTP_ROUTE, PS_L_URL_SCHEME, NULL,
};

static const char *const client_labels[] = {
	PS_L_SERVICE_NAME,   PS_L_HTTP_METHOD, PS_L_HTTP_STATUS, PS_L_SERVER_ADDRESS,
	PS_L_SERVER_PORT,    PS_L_URL_SCHEME,  NULL,
};

static const char *const plugin_labels[] = { "service_name", "plugin", NULL };

static const double body_buckets[] = {
	0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
};

static struct ps_metric *register_histogram(const char *name, const char *help,
					    const char *const *labels, const double *buckets,
					    size_t n_buckets)
{
	struct ps_metric_desc d = {
		.name = name,
		.help = help,
		.type = PS_METRIC_HISTOGRAM,
		.labels = labels,
		.buckets = buckets,
		.n_buckets = n_buckets,
	};
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int register_metrics(struct http *st)
{
	size_t nb = sizeof(body_buckets) / sizeof(body_buckets[0]);

	st->server_duration = register_histogram(
		PS_M_HTTP_SERVER_DURATION,
		"Duration of HTTP server requests, first request byte to last response byte",
		server_labels, NULL, 0);
	st->server_req_body = register_histogram(PS_M_HTTP_SERVER_REQUEST_BODY,
						 "Size of HTTP server request bodies",
						 server_labels, body_buckets, nb);
	st->server_resp_body = register_histogram(PS_M_HTTP_SERVER_RESPONSE_BODY,
						  "Size of HTTP server response bodies",
						  server_labels, body_buckets, nb);
	st->client_duration = register_histogram(
		PS_M_HTTP_CLIENT_DURATION,
		"Duration of HTTP client requests, first request byte to last response byte",
		client_labels, NULL, 0);
	/* The core's family (same shape): shared by name. */
	st->decode_errors = ps_metric_register(&(struct ps_metric_desc){
		.name = "periscope_decode_errors_total",
		.help = "Events the plugin could not decode",
		.type = PS_METRIC_COUNTER,
		.labels = plugin_labels,
	});
	if (!st->server_duration || !st->server_req_body || !st->server_resp_body ||
	    !st->client_duration || !st->decode_errors)
		return -EINVAL;
	return 0;
}

static void http_free(struct http *st)
{
	if (!st)
		return;
	free(st->routes);
	http_route_limit_free(st->route_limit);
	free(st);
}

static int check_config(const struct http_config *cfg)
{
	if (cfg->capture_bytes < PS_CAPTURE_BYTES_MIN || cfg->capture_bytes > PS_CAPTURE_BYTES_MAX) {
		ps_error(SUBSYS, "capture_bytes must be between %d and %d bytes, not %" PRIu64,
			 PS_CAPTURE_BYTES_MIN, PS_CAPTURE_BYTES_MAX, cfg->capture_bytes);
		return -EINVAL;
	}
	if (cfg->ports.n > PS_CAPTURE_PORTS_MAX) {
		ps_error(SUBSYS, "at most %d ports, not %zu", PS_CAPTURE_PORTS_MAX, cfg->ports.n);
		return -EINVAL;
	}
	return 0;
}

static int http_init(struct ps_plugin *p, const void *config)
{
	static const struct http_config defaults = { .capture_bytes = PS_CAPTURE_BYTES_DEFAULT,
						     .max_routes = 100 };
	const struct http_config *cfg = config ? config : &defaults;
	struct http *st;
	int err;

	err = check_config(cfg);
	if (err)
		return err;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	if (cfg->routes.n) {
		st->routes = calloc(cfg->routes.n, sizeof(*st->routes));
		if (!st->routes) {
			http_free(st);
			return -ENOMEM;
		}
		for (size_t i = 0; i < cfg->routes.n; i++)
			st->routes[i] = cfg->routes.v[i];
		st->n_routes = cfg->routes.n;
	}
	st->ports = cfg->ports.v;
	st->n_ports = cfg->ports.n;
	st->capture_bytes = (uint32_t)cfg->capture_bytes;
	st->tls_on = !cfg->tls || strcmp(cfg->tls, "off") != 0;
	st->route_limit = http_route_limit_new(cfg->max_routes, ROUTE_IDLE_NS);
	if (!st->route_limit) {
		http_free(st);
		return -ENOMEM;
	}
	ps_plugin_set_data(p, st);
	return 0;
}

static int http_start(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);
	const struct ps_capture_protocol proto = {
		.struct_size = sizeof(proto),
		.name = SUBSYS,
		.classifier = PS_CAPTURE_CLASSIFY_HTTP1,
		.ports = st->ports,
		.n_ports = st->n_ports,
		.capture_bytes = st->capture_bytes,
		.tls = st->tls_on,
		/* AF_UNIX has no ports: a port list leaves it out. */
		.unix_classifier = st->n_ports ? PS_CAPTURE_CLASSIFY_NONE : PS_CAPTURE_CLASSIFY_HTTP1,
		.ctx = st,
		.conn_open = on_conn_open,
		.conn_data = on_conn_data,
		.conn_close = on_conn_close,
	};
	int err;

	err = register_metrics(st);
	if (err)
		return err;
	st->capture = ps_capture_register(p, &proto);
	if (!st->capture)
		return -errno; /* the capture logged why */
	return 0;
}

static int http_collect(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);
	const char *values[] = { "periscoped", SUBSYS };

	if (st && st->lost_pending) {
		ps_metric_add(st->decode_errors, values, (double)st->lost_pending);
		st->lost_pending = 0;
	}
	return 0;
}

/* The capture lets the connections go when the plugin stops (conn_close for each). */
static void http_stop(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);

	if (st && st->capture) {
		ps_capture_unregister(st->capture);
		st->capture = NULL;
	}
}

static void http_destroy(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);

	if (st)
		ps_debug(SUBSYS,
			 "%" PRIu64 " exchanges, %" PRIu64 " unanswered requests, %" PRIu64
			 " connections rejected",
			 st->exchanges, st->unanswered, st->rejected);
	http_free(st);
	ps_plugin_set_data(p, NULL);
}

static const char *const tls_choices[] = { "auto", "off", NULL };

/* Bounds are text in a config map; these keep them the capture's own numbers. */
#define CFG_TEXT_(x) #x
#define CFG_TEXT(x)  CFG_TEXT_(x)

static const struct ps_cfg_key http_config_map[] = {
	{
		.name = "ports",
		.type = PS_CFG_PORTLIST,
		.offset = offsetof(struct http_config, ports),
		.help = "follow only connections with one of these local or remote ports; "
			"empty = all",
		.max = CFG_TEXT(PS_CAPTURE_PORTS_MAX),
	},
	{
		.name = "capture_bytes",
		.type = PS_CFG_SIZE,
		.def = "1024",
		.offset = offsetof(struct http_config, capture_bytes),
		.help = "bytes copied from each read or write (64 to 4096)",
		.min = CFG_TEXT(PS_CAPTURE_BYTES_MIN),
		.max = CFG_TEXT(PS_CAPTURE_BYTES_MAX),
	},
	{
		.name = "routes",
		.type = PS_CFG_STRLIST,
		.offset = offsetof(struct http_config, routes),
		.help = "route templates such as /api/v1/users/{id}, tried before ids collapse",
	},
	{
		.name = "tls",
		.type = PS_CFG_STRING,
		.def = "auto",
		.offset = offsetof(struct http_config, tls),
		.choices = tls_choices,
		.help = "auto: also capture HTTPS through uprobes on OpenSSL's libssl; off",
	},
	{
		.name = "max_routes",
		.type = PS_CFG_UINT,
		.def = "100",
		.offset = offsetof(struct http_config, max_routes),
		.help = "distinct routes per service; more fold into /{other}",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "http", .version = PACKAGE_VERSION,
		 .description = "HTTP/1.x request rate, errors and duration, server and client",
		 .config_map = http_config_map, .config_size = sizeof(struct http_config),
		 .init = http_init, .start = http_start, .collect = http_collect, .stop = http_stop,
		 .destroy = http_destroy, );
