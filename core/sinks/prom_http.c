/*
 * The prometheus_http sink: GET /metrics serves the registry in the
 * Prometheus text format (what the textfile sink writes, gzip when the client
 * accepts it), GET /healthz says whether every enabled plugin is up and the
 * last flush is recent.
 *
 * /metrics serves the snapshot rendered at the last flush, not the live
 * registry: a scrape sees what the textfile and the alert rules saw, and a
 * scrape costs a copy, not a render. Everything runs on the daemon's loop:
 * the listener and its connections are libuv handles, never blocking, each
 * connection bounded in size and time. The handles are unreferenced: an open
 * listener never keeps the daemon from exiting.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <uv.h>
#include <zlib.h>

#include <periscope/log.h>

#include "../notify.h"
#include "prom_text.h"
#include "sink.h"

#define SUBSYS		   "prometheus_http"
#define DEFAULT_LISTEN	   "127.0.0.1:9464"
#define REQUEST_MAX	   8192 /* request line and headers; scrapers send a few hundred bytes */
#define MAX_CONNECTIONS	   64
#define CONNECTION_TIMEOUT 10000 /* ms from accept to the end of the response */
#define BACKLOG		   64
/*
 * A flush is late once this many intervals passed since the last one, and
 * never before STALE_MIN_NS: a loop that stalls for a moment is not dead.
 */
#define STALE_INTERVALS 3
#define STALE_MIN_NS	(30ull * 1000000000ull)
#define METRICS_TYPE	"text/plain; version=0.0.4; charset=utf-8"

struct prom_http_config {
	char *listen;
};

static const struct ps_cfg_key prom_http_config_map[] = {
	{ "listen", PS_CFG_STRING, DEFAULT_LISTEN, offsetof(struct prom_http_config, listen), NULL,
	  "address and port for /metrics and /healthz: 127.0.0.1:9464, [::1]:9464, :9464 (all)" },
	{ NULL },
};

/* One flush's rendering, shared by the responses still being written. */
struct snapshot {
	unsigned refs;
	char *text;
	size_t len;
	char *gz; /* made on the first request that accepts gzip */
	size_t gz_len;
};

struct prom_http_sink;

struct connection {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t write;
	struct prom_http_sink *sink;
	struct connection *next;
	char request[REQUEST_MAX];
	size_t request_len;
	char head[256];
	char *owned_body; /* a /healthz or error text */
	struct snapshot *snap;
	int open_handles;
	bool responding;
	bool gzip; /* the client accepts gzip */
};

struct prom_http_sink {
	uv_tcp_t server;
	struct connection *connections;
	size_t n_connections;
	int open_handles; /* the server and every connection handle; freed at 0 */
	bool closing;
	char listen[64];
};

/*
 * Module state: one daemon runs one prometheus_http sink, and what /healthz
 * and /metrics answer must survive a reload that reopens the sink.
 */
static uv_loop_t *sink_loop;
static struct snapshot *current;
static uint64_t last_flush_mono_ns, last_interval_ns;

void ps_sink_prometheus_http_set_loop(uv_loop_t *loop)
{
	sink_loop = loop;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- snapshots --------------------------------------------------------------------------- */

static void snapshot_put(struct snapshot *s)
{
	if (!s || --s->refs)
		return;
	free(s->text);
	free(s->gz);
	free(s);
}

static struct snapshot *snapshot_render(const struct ps_flush_ctx *ctx)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	FILE *f;
	int rc;

	if (!s)
		return NULL;
	s->refs = 1;
	f = open_memstream(&s->text, &s->len);
	if (!f) {
		free(s);
		return NULL;
	}
	rc = ps_prom_write(f, ctx);
	if (fclose(f) || rc) {
		errno = rc ? -rc : errno;
		snapshot_put(s);
		return NULL;
	}
	return s;
}

/* gzip (RFC 1952) of the text, once per snapshot. */
static int snapshot_gzip(struct snapshot *s)
{
	z_stream z = { 0 };
	uLong bound;
	int rc;

	if (s->gz)
		return 0;
	/* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
	if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	bound = deflateBound(&z, (uLong)s->len);
	s->gz = malloc(bound);
	if (!s->gz) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)s->text;
	z.avail_in = (uInt)s->len;
	z.next_out = (Bytef *)s->gz;
	z.avail_out = (uInt)bound;
	rc = deflate(&z, Z_FINISH);
	s->gz_len = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(s->gz);
		s->gz = NULL;
		return -EIO;
	}
	return 0;
}

/* ---- the listen address ------------------------------------------------------------------ */

/* "HOST:PORT", "[V6]:PORT", ":PORT"; numeric hosts or localhost (no lookup on the loop). */
static int parse_listen(const char *text, struct sockaddr_storage *ss)
{
	char host[64];
	const char *colon, *port_text;
	char *end;
	unsigned long port;
	size_t host_len;

	if (!text || !*text)
		return -EINVAL;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		host_len = (size_t)(close - text - 1);
		if (host_len >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, host_len);
		host[host_len] = '\0';
		port_text = close + 2;
	} else {
		colon = strrchr(text, ':');
		if (!colon || strchr(text, ':') != colon)
			return -EINVAL;
		host_len = (size_t)(colon - text);
		if (host_len >= sizeof(host))
			return -EINVAL;
		memcpy(host, text, host_len);
		host[host_len] = '\0';
		port_text = colon + 1;
	}
	errno = 0;
	port = strtoul(port_text, &end, 10);
	if (!*port_text || *end || errno || port == 0 || port > 65535)
		return -EINVAL;
	if (!host[0])
		strcpy(host, "0.0.0.0");
	else if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (text[0] == '[')
		return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) ? -EINVAL : 0;
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) ? -EINVAL : 0;
}

/* ---- connections ------------------------------------------------------------------------- */

static void sink_free_if_done(struct prom_http_sink *sink)
{
	if (sink->closing && sink->open_handles == 0)
		free(sink);
}

static void on_connection_handle_closed(uv_handle_t *h)
{
	struct connection *c = h->data;
	struct prom_http_sink *sink = c->sink;

	if (--c->open_handles)
		return;
	snapshot_put(c->snap);
	free(c->owned_body);
	free(c);
	sink->open_handles--;
	sink_free_if_done(sink);
}

static void connection_close(struct connection *c)
{
	struct connection **pp;

	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	for (pp = &c->sink->connections; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			c->sink->n_connections--;
			break;
		}
	}
	uv_close((uv_handle_t *)&c->timer, on_connection_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_connection_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
	connection_close(w->data);
}

static void respond(struct connection *c, int code, const char *reason, const char *type,
		    const char *encoding, bool head_only, const char *body, size_t len)
{
	uv_buf_t bufs[2];
	int n;

	n = snprintf(c->head, sizeof(c->head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s"
		     "Connection: close\r\n\r\n",
		     code, reason, type, len, encoding ? "Content-Encoding: " : "",
		     encoding ? encoding : "", encoding ? "\r\n" : "");
	c->responding = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	bufs[0] = uv_buf_init(c->head, (unsigned)n);
	bufs[1] = uv_buf_init((char *)body, (unsigned)len);
	c->write.data = c;
	if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, head_only || !len ? 1 : 2, on_written))
		connection_close(c);
}

static void respond_text(struct connection *c, int code, const char *reason, bool head_only,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void respond_text(struct connection *c, int code, const char *reason, bool head_only,
			 const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&c->owned_body, fmt, ap);
	va_end(ap);
	if (n < 0) {
		c->owned_body = NULL;
		connection_close(c);
		return;
	}
	respond(c, code, reason, "text/plain; charset=utf-8", NULL, head_only, c->owned_body,
		(size_t)n);
}

/* Whether the Accept-Encoding header (in the request head) takes gzip. */
static bool accepts_gzip(const char *head)
{
	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
		const char *v = line + 2, *eol, *tok;

		if (strncasecmp(v, "Accept-Encoding:", 16))
			continue;
		eol = strstr(v, "\r\n");
		for (tok = v + 16; tok && tok < eol; tok = strchr(tok, ',')) {
			while (tok < eol && (*tok == ',' || *tok == ' ' || *tok == '\t'))
				tok++;
			if (strncasecmp(tok, "gzip", 4) || (tok[4] != ',' && tok[4] != ';' &&
							     tok[4] != ' ' && tok[4] != '\r'))
				continue;
			/* "gzip;q=0" refuses it. */
			tok += 4;
			while (*tok == ' ')
				tok++;
			if (*tok == ';' && strncmp(tok, ";q=0", 4) == 0 &&
			    strspn(tok + 4, "0.") == strcspn(tok + 4, ",\r"))
				return false;
			return true;
		}
	}
	return false;
}

static void serve_healthz(struct connection *c, bool head_only)
{
	struct ps_plugin_health h;
	uint64_t now = mono_ns(), age, stale;

	ps_notify_plugin_health(ps_registry_default(), &h);
	if (h.down[0]) {
		respond_text(c, 503, "Service Unavailable", head_only, "unhealthy: plugins down: %s (%zu of %zu up)\n",
			     h.down, h.up, h.total);
		return;
	}
	if (!last_flush_mono_ns) {
		respond_text(c, 503, "Service Unavailable", head_only,
			     "unhealthy: no flush yet (%zu of %zu plugins up)\n", h.up, h.total);
		return;
	}
	age = now - last_flush_mono_ns;
	stale = STALE_INTERVALS * last_interval_ns;
	if (stale < STALE_MIN_NS)
		stale = STALE_MIN_NS;
	if (age > stale) {
		respond_text(c, 503, "Service Unavailable", head_only,
			     "unhealthy: last flush %.1fs ago (limit %.1fs)\n", age / 1e9, stale / 1e9);
		return;
	}
	respond_text(c, 200, "OK", head_only, "ok: %zu of %zu plugins up, last flush %.1fs ago\n",
		     h.up, h.total, age / 1e9);
}

static void serve_metrics(struct connection *c, bool head_only)
{
	struct snapshot *s = current;

	if (!s) {
		respond_text(c, 503, "Service Unavailable", head_only, "no flush yet\n");
		return;
	}
	s->refs++;
	c->snap = s;
	if (c->gzip && snapshot_gzip(s) == 0)
		respond(c, 200, "OK", METRICS_TYPE, "gzip", head_only, s->gz, s->gz_len);
	else
		respond(c, 200, "OK", METRICS_TYPE, NULL, head_only, s->text, s->len);
}

/* The request head is complete: answer it. Paths never reach the log (privacy). */
static void handle_request(struct connection *c)
{
	char *sp1 = strchr(c->request, ' '), *sp2, *query;
	bool head_only;

	if (!sp1 || !(sp2 = strchr(sp1 + 1, ' ')) || strncmp(sp2 + 1, "HTTP/1.", 7)) {
		respond_text(c, 400, "Bad Request", false, "bad request\n");
		return;
	}
	c->gzip = accepts_gzip(sp2 + 1);
	*sp2 = '\0';
	query = strchr(sp1 + 1, '?');
	if (query)
		*query = '\0';
	head_only = (size_t)(sp1 - c->request) == 4 && !strncmp(c->request, "HEAD", 4);
	if (!head_only && ((size_t)(sp1 - c->request) != 3 || strncmp(c->request, "GET", 3))) {
		respond_text(c, 405, "Method Not Allowed", false, "GET or HEAD only\n");
		return;
	}
	if (!strcmp(sp1 + 1, "/metrics"))
		serve_metrics(c, head_only);
	else if (!strcmp(sp1 + 1, "/healthz"))
		serve_healthz(c, head_only);
	else
		respond_text(c, 404, "Not Found", head_only, "not found: try /metrics or /healthz\n");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct connection *c = h->data;

	/* One byte kept for the terminating NUL. */
	*buf = uv_buf_init(c->request + c->request_len,
			   (unsigned)(sizeof(c->request) - 1 - c->request_len));
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct connection *c = stream->data;

	if (n < 0) {
		connection_close(c);
		return;
	}
	if (c->responding)
		return;
	c->request_len += (size_t)n;
	c->request[c->request_len] = '\0';
	if (strstr(c->request, "\r\n\r\n")) {
		handle_request(c);
		return;
	}
	if (c->request_len == sizeof(c->request) - 1)
		respond_text(c, 431, "Request Header Fields Too Large", false, "request too large\n");
}

static void on_timeout(uv_timer_t *t)
{
	connection_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct prom_http_sink *sink = server->data;
	struct connection *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return; /* the client waits in the backlog and retries */
	c->sink = sink;
	uv_tcp_init(sink_loop, &c->tcp);
	uv_timer_init(sink_loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open_handles = 2;
	sink->open_handles++;
	c->next = sink->connections;
	sink->connections = c;
	sink->n_connections++;
	uv_unref((uv_handle_t *)&c->tcp);
	uv_unref((uv_handle_t *)&c->timer);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) ||
	    sink->n_connections > MAX_CONNECTIONS) {
		connection_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_timeout, CONNECTION_TIMEOUT, 0);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- the sink ---------------------------------------------------------------------------- */

static void on_server_closed(uv_handle_t *h)
{
	struct prom_http_sink *sink = h->data;

	sink->open_handles--;
	sink_free_if_done(sink);
}

static void prom_http_close(void *state)
{
	struct prom_http_sink *sink = state;

	if (!sink)
		return;
	sink->closing = true;
	while (sink->connections)
		connection_close(sink->connections);
	if (sink->open_handles && !uv_is_closing((uv_handle_t *)&sink->server))
		uv_close((uv_handle_t *)&sink->server, on_server_closed);
	else
		sink_free_if_done(sink);
}

static int prom_http_flush(void *state, const struct ps_flush_ctx *ctx)
{
	struct snapshot *s = snapshot_render(ctx);
	uint64_t now = mono_ns();

	if (!s)
		return errno ? -errno : -ENOMEM;
	snapshot_put(current);
	current = s;
	last_interval_ns = last_flush_mono_ns ? now - last_flush_mono_ns : ctx->interval_ns;
	last_flush_mono_ns = now;
	return 0;
}

static void *prom_http_open(const void *config)
{
	const struct prom_http_config *cfg = config;
	const char *listen = cfg && cfg->listen ? cfg->listen : DEFAULT_LISTEN;
	struct sockaddr_storage ss;
	struct prom_http_sink *sink;
	int rc;

	if (parse_listen(listen, &ss) || strlen(listen) >= sizeof(sink->listen)) {
		ps_error(SUBSYS, "listen: '%s' is not ADDRESS:PORT (127.0.0.1:9464, [::1]:9464, :9464)",
			 listen);
		errno = EINVAL;
		return NULL;
	}
	sink = calloc(1, sizeof(*sink));
	if (!sink)
		return NULL;
	strcpy(sink->listen, listen);
	/*
	 * Without the daemon's loop (--check-config) the address is only judged:
	 * binding it would fail while the running daemon holds the port.
	 */
	if (!sink_loop)
		return sink;
	uv_tcp_init(sink_loop, &sink->server);
	sink->server.data = sink;
	sink->open_handles = 1;
	uv_unref((uv_handle_t *)&sink->server);
	rc = uv_tcp_bind(&sink->server, (struct sockaddr *)&ss, 0);
	if (!rc)
		rc = uv_listen((uv_stream_t *)&sink->server, BACKLOG, on_connection);
	if (rc) {
		ps_error(SUBSYS, "cannot listen on %s: %s", listen, uv_strerror(rc));
		prom_http_close(sink);
		errno = -rc;
		return NULL;
	}
	ps_info(SUBSYS, "serving /metrics and /healthz on %s", listen);
	return sink;
}

const struct ps_sink_type ps_sink_prometheus_http = {
	.name = "prometheus_http",
	.config_map = prom_http_config_map,
	.config_size = sizeof(struct prom_http_config),
	.open = prom_http_open,
	.flush = prom_http_flush,
	.event = NULL,
	.close = prom_http_close,
};
