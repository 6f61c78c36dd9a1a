/*
 * http: HTTP/1.x RED metrics, server view and client view, from the shared
 * socket capture (bpf/ps_sockcap.bpf.h with the classifier in http.bpf.c).
 *
 * The kernel sends one DATA event per syscall that moved bytes on an HTTP
 * connection (a bounded prefix of them), CLOSE when the process closes it,
 * and EXIT when a process that had such connections exits. Per connection,
 * user space keeps a decoder stream (http_proto.h) that finds message
 * boundaries and pairs requests with responses; each completed exchange
 * becomes histogram observations and one PS_EVENT_EXCHANGE.
 *
 * A connection the decoder proves not to be HTTP/1.x is handed back to the
 * kernel's skip map, so that it stops producing events.
 *
 * TLS (tls: auto): the kernel keeps HTTPS connections' ciphertext to itself
 * and sends their plaintext from the OpenSSL uprobes (tls.c attaches them),
 * flagged PS_SC_F_TLS: those connections' exchanges carry url_scheme="https".
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

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <periscope/plugin.h>

/* The capture's shared structs live with the BPF library, outside this plugin's include path. */
#include "ps_sockcap.h"
#include "http.h"
#include "http.skel.h"
#include "http_proto.h"
#include "tls.h"

#define SUBSYS		  "http"
#define CONN_BUCKETS	  4096	  /* a power of two */
#define LABEL_SLOTS	  512	  /* a power of two */
#define LABEL_SERVICE_MAX 64	  /* longer service names are observed without the cache */
#define LABEL_SERIES	  3	  /* server: duration, request and response body size */
#define TLS_TICK_NS	  1000000 /* TLS looks wait a second; checking each ms of events is enough */

struct http_config {
	struct ps_portlist ports;
	uint64_t capture_bytes;
	struct ps_strlist routes;
	char *tls;
};

/* One connection the kernel follows, with its decoder stream. */
struct conn {
	struct conn *hnext;	    /* bucket chain, by id */
	struct conn *newer, *older; /* recency list: eviction and idle expiry */
	uint64_t id;
	uint32_t tgid, fd;
	uint64_t last_ns;	    /* monotonic time of the last event */
	struct http_stream *stream; /* NULL: rejected (not HTTP/1.x), events are ignored */
	bool tls;		    /* the plaintext of a TLS connection */
	bool addressed;		    /* laddr/raddr known (an event with PS_SC_F_CONN, or the kernel) */
	/* From the latest event. */
	uint32_t tid;
	uint8_t family;
	uint16_t lport, rport;
	uint8_t laddr[16], raddr[16];
	char comm[PS_SC_COMM_LEN + 1];
};

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
	unsigned long generation; /* ps_metric_generation() when filled; 0: empty */
	bool server, tls;
	uint16_t status, port;
	char method[HTTP_METHOD_MAX];
	char service[LABEL_SERVICE_MAX];
	char text[HTTP_PATH_MAX];
	struct ps_series *series[LABEL_SERIES];
};

struct http {
	struct http_bpf *skel;
	const char **routes; /* the configured templates, borrowed from the config */
	size_t n_routes;
	struct conn *buckets[CONN_BUCKETS];
	struct conn *newest, *oldest;
	size_t n_conns;
	uint64_t exchanges, unanswered, rejected, evicted;
	bool tls_on;	      /* tls: auto */
	struct http_tls *tls; /* the uprobes, once started */
	uint64_t tls_tick_ns; /* event time from which the next TLS tick is due */

	struct ps_metric *server_duration, *server_req_body, *server_resp_body;
	struct ps_metric *client_duration;
	struct label_slot labels[LABEL_SLOTS];
};

/* What the decoder's exchange callback needs. */
struct feed_ctx {
	struct http *st;
	struct conn *c;
};

static uint64_t mono_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- connections: a hash by id and a recency list ---------------------------------------- */

static size_t conn_bucket(uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdull;
	id ^= id >> 33;
	return id & (CONN_BUCKETS - 1);
}

static struct conn *conn_find(struct http *st, uint64_t id)
{
	for (struct conn *c = st->buckets[conn_bucket(id)]; c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

static void recency_unlink(struct http *st, struct conn *c)
{
	if (c->newer)
		c->newer->older = c->older;
	else
		st->newest = c->older;
	if (c->older)
		c->older->newer = c->newer;
	else
		st->oldest = c->newer;
	c->newer = c->older = NULL;
}

static void recency_push(struct http *st, struct conn *c)
{
	c->older = st->newest;
	c->newer = NULL;
	if (st->newest)
		st->newest->newer = c;
	st->newest = c;
	if (!st->oldest)
		st->oldest = c;
}

static void conn_touch(struct http *st, struct conn *c, uint64_t now_ns)
{
	c->last_ns = now_ns;
	if (st->newest == c)
		return;
	recency_unlink(st, c);
	recency_push(st, c);
}

static void conn_free(struct http *st, struct conn *c)
{
	struct conn **pp = &st->buckets[conn_bucket(c->id)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	recency_unlink(st, c);
	http_stream_free(c->stream);
	free(c);
	st->n_conns--;
}

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
static const char *client_server_address(const struct conn *c, const struct http_exchange *ex,
					 char *buf, size_t len)
{
	if (ex->host[0])
		return ex->host;
	if ((c->family == AF_INET || c->family == AF_INET6) &&
	    inet_ntop(c->family, c->raddr, buf, (socklen_t)len))
		return buf;
	return "";
}

/* server_port of the client view: the Host header's, else the peer's; 0 for none. */
static uint16_t client_server_port(const struct conn *c, const struct http_exchange *ex)
{
	return ex->host_port ? ex->host_port : c->rport;
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

static bool label_slot_matches(const struct label_slot *sl, const struct label_key *k)
{
	return sl->generation == ps_metric_generation() && sl->status == k->status &&
	       sl->port == k->port && sl->server == k->server && sl->tls == k->tls &&
	       strcmp(sl->method, k->method) == 0 && strcmp(sl->text, k->text) == 0 &&
	       strcmp(sl->service, k->service) == 0;
}

/* Resolves the series of every metric; false (slot left empty) when one cannot be had. */
static bool label_slot_fill(struct label_slot *sl, const struct label_key *k,
			    const struct side_metrics *sm, const char *const *values)
{
	size_t method_len = strlen(k->method);

	sl->generation = 0;
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
	sl->generation = ps_metric_generation();
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

	if (!label_slot_matches(sl, k)) {
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

static void observe_server(struct http *st, const char *service, const struct conn *c,
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

static void observe_client(struct http *st, const char *service, const struct conn *c,
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

static void endpoint_of(struct ps_endpoint *ep, const struct conn *c, bool local)
{
	memset(ep, 0, sizeof(*ep));
	ep->family = c->family;
	if (c->family == AF_INET || c->family == AF_INET6)
		memcpy(ep->addr, local ? c->laddr : c->raddr, sizeof(ep->addr));
	ep->port = local ? c->lport : c->rport;
}

static void emit_exchange(const struct conn *c, const struct http_exchange *ex, bool server,
			  const char *service, const char *route)
{
	struct ps_exchange x = {
		.protocol = SUBSYS,
		.side = server ? PS_SIDE_SERVER : PS_SIDE_CLIENT,
		.pid = c->tgid,
		.tid = c->tid,
		.service_name = service,
		.start_unix_ns = ps_clock_mono_to_unix_ns(ex->request_start_ns),
		.end_unix_ns = ps_clock_mono_to_unix_ns(ex->response_end_ns),
		.operation = ex->method,
		.target = route,
		.scheme = scheme_of(c->tls),
		.status = ex->status,
		.error = ex->status == 0 || ex->status >= 500,
		.traceparent = ex->traceparent[0] ? ex->traceparent : NULL,
	};
	struct ps_event ev = { .type = PS_EVENT_EXCHANGE, .plugin = SUBSYS, .exchange = &x };

	endpoint_of(&x.local, c, true);
	endpoint_of(&x.remote, c, false);
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
	const struct conn *c = fc->c;
	bool server = ex->role == HTTP_ROLE_SERVER;
	char route[HTTP_PATH_MAX];
	const char *service = ps_proc_service_name(c->tgid, c->comm[0] ? c->comm : NULL);
	double seconds = 0;

	if (ex->role == HTTP_ROLE_UNKNOWN)
		return;
	http_route(ex->path, st->routes, st->n_routes, route, sizeof(route));
	emit_exchange(c, ex, server, service, route);
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

/* ---- events from the kernel --------------------------------------------------------------- */

static void conn_close(struct http *st, struct conn *c, uint64_t ts_ns)
{
	struct feed_ctx fc = { .st = st, .c = c };

	if (c->stream)
		http_stream_close(c->stream, ts_ns, on_exchange, &fc);
	conn_free(st, c);
}

/* Too many streams: the least recently fed goes (its requests in flight are lost). */
static void evict_oldest(struct http *st)
{
	struct conn *c = st->oldest;

	if (!c)
		return;
	if (!st->evicted++)
		ps_warn(SUBSYS,
			"more than %d connections at once: the least recently active are "
			"dropped",
			HTTP_MAX_STREAMS);
	conn_free(st, c);
}

static struct conn *conn_new(struct http *st, const struct ps_sc_event *e)
{
	struct conn *c = calloc(1, sizeof(*c));
	size_t b;

	if (!c)
		return NULL;
	c->stream = http_stream_new();
	if (!c->stream) {
		free(c);
		return NULL;
	}
	if (st->n_conns >= HTTP_MAX_STREAMS)
		evict_oldest(st);
	c->id = e->conn_id;
	c->tgid = e->tgid;
	c->fd = e->fd;
	b = conn_bucket(c->id);
	c->hnext = st->buckets[b];
	st->buckets[b] = c;
	recency_push(st, c);
	st->n_conns++;
	return c;
}

/*
 * A connection first heard of through an event without its addresses (the
 * one that had them came before we dropped its stream): the kernel's entry
 * has them while the connection lasts. The comm is then left to /proc.
 */
static void conn_addresses_from_kernel(struct http *st, struct conn *c)
{
	__u64 key = (__u64)c->tgid << 32 | c->fd;
	struct ps_sc_conn kc;

	c->addressed = true; /* once: a connection that is gone keeps zeroes */
	if (bpf_map_lookup_elem(bpf_map__fd(st->skel->maps.ps_sc_conns), &key, &kc) ||
	    kc.id != c->id)
		return;
	memcpy(c->laddr, kc.laddr, sizeof(c->laddr));
	memcpy(c->raddr, kc.raddr, sizeof(c->raddr));
}

static void conn_update(struct http *st, struct conn *c, const struct ps_sc_event *e)
{
	c->tid = e->tid;
	c->family = e->family;
	c->lport = e->lport;
	c->rport = e->rport;
	if (e->flags & PS_SC_F_TLS)
		c->tls = true;
	if (e->flags & PS_SC_F_CONN) {
		memcpy(c->laddr, e->laddr, sizeof(c->laddr));
		memcpy(c->raddr, e->raddr, sizeof(c->raddr));
		memcpy(c->comm, e->comm, PS_SC_COMM_LEN);
		c->comm[PS_SC_COMM_LEN] = '\0';
		c->addressed = true;
	} else if (!c->addressed) {
		conn_addresses_from_kernel(st, c);
	}
}

/* Not HTTP/1.x after all: the kernel stops sending it, unless the fd already moved on. */
static void reject_in_kernel(struct http *st, const struct conn *c)
{
	int conns = bpf_map__fd(st->skel->maps.ps_sc_conns);
	int skip = bpf_map__fd(st->skel->maps.ps_sc_skip);
	__u64 key = (__u64)c->tgid << 32 | c->fd;
	struct ps_sc_conn kc;
	__u8 one = 1;

	if (bpf_map_lookup_elem(conns, &key, &kc) || kc.id != c->id)
		return;
	bpf_map_update_elem(skip, &key, &one, BPF_ANY);
	bpf_map_delete_elem(conns, &key);
}

/*
 * One syscall's bytes. With a tail, they go to the decoder as two stretches:
 * the start (len captured of total - tail) and the end (tail, all captured).
 */
static int feed(struct http *st, struct conn *c, const struct ps_sc_event *e)
{
	const uint8_t *payload = (const uint8_t *)(e + 1);
	enum http_dir dir = e->dir == PS_SC_DIR_OUT ? HTTP_DIR_OUT : HTTP_DIR_IN;
	struct feed_ctx fc = { .st = st, .c = c };
	int rc;

	rc = http_stream_feed(c->stream, dir, payload, e->len, e->total - e->tail, e->ts_ns,
			      on_exchange, &fc);
	if (rc || !e->tail)
		return rc;
	return http_stream_feed(c->stream, dir, payload + e->len, e->tail, e->tail, e->ts_ns,
				on_exchange, &fc);
}

static int on_data(struct http *st, const struct ps_sc_event *e, size_t size)
{
	struct conn *c = conn_find(st, e->conn_id);
	size_t captured = (size_t)e->len + e->tail;
	int rc;

	if (captured > size - sizeof(*e) || captured > e->total)
		return -EINVAL;
	if (!c) {
		c = conn_new(st, e);
		if (!c)
			return -ENOMEM;
	}
	conn_touch(st, c, e->ts_ns);
	if (!c->stream)
		return 0; /* rejected; the kernel has not seen that yet */
	conn_update(st, c, e);
	rc = feed(st, c, e);
	if (rc != -EPROTO)
		return 0;
	ps_debug(SUBSYS, "pid %u fd %u (%s): not HTTP/1.x, no longer followed", c->tgid, c->fd,
		 c->comm);
	st->rejected++;
	http_stream_free(c->stream);
	c->stream = NULL;
	reject_in_kernel(st, c);
	return -EPROTO;
}

static void on_close(struct http *st, const struct ps_sc_event *e)
{
	struct conn *c = conn_find(st, e->conn_id);

	if (c)
		conn_close(st, c, e->ts_ns);
}

/* A process is gone: its connections are over, and so are their kernel entries. */
static void on_process_exit(struct http *st, const struct ps_sc_event *e)
{
	int conns = bpf_map__fd(st->skel->maps.ps_sc_conns);
	struct conn *c, *next;
	__u64 key;

	for (c = st->oldest; c; c = next) {
		next = c->newer;
		if (c->tgid != e->tgid)
			continue;
		key = (__u64)c->tgid << 32 | c->fd;
		bpf_map_delete_elem(conns, &key);
		conn_close(st, c, e->ts_ns);
	}
	ps_proc_forget(e->tgid);
}

/* A new program image: its service name may differ, and it may map a libssl of its own. */
static void on_exec(struct http *st, const struct ps_sc_event *e)
{
	ps_proc_forget(e->tgid);
	if (st->tls)
		http_tls_on_exec(st->tls, e->tgid, e->ts_ns);
}

static int on_event(void *ctx, void *data, size_t size)
{
	const struct ps_sc_event *e = data;
	struct http *st = ctx;

	if (size < sizeof(*e)) {
		ps_debug(SUBSYS, "short event: %zu bytes", size);
		return -EINVAL;
	}
	if (st->tls && e->ts_ns >= st->tls_tick_ns) {
		st->tls_tick_ns = e->ts_ns + TLS_TICK_NS;
		http_tls_tick(st->tls, e->ts_ns);
	}
	switch (e->type) {
	case PS_SC_EV_DATA:
		return on_data(st, e, size);
	case PS_SC_EV_CLOSE:
		on_close(st, e);
		return 0;
	case PS_SC_EV_EXIT:
		on_process_exit(st, e);
		return 0;
	case PS_SC_EV_EXEC:
		on_exec(st, e);
		return 0;
	case PS_SC_EV_TLS:
		if (st->tls)
			http_tls_on_hint(st->tls, e->tgid);
		return 0;
	default:
		ps_debug(SUBSYS, "unknown event type %u", e->type);
		return -EINVAL;
	}
}

/* ---- collect: connections that went quiet ------------------------------------------------- */

/*
 * A connection whose CLOSE never came (its process exit was not seen, an fd
 * closed by exec or close_range) would hold its stream forever.
 */
static int http_collect(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);
	uint64_t now = mono_now_ns();
	size_t expired = 0;

	while (st->oldest && now - st->oldest->last_ns > HTTP_STREAM_IDLE_NS) {
		conn_close(st, st->oldest, now);
		expired++;
	}
	if (expired)
		ps_debug(SUBSYS, "%zu idle connections dropped", expired);
	if (st->tls)
		http_tls_tick(st->tls, now);
	return 0;
}

/* ---- life cycle --------------------------------------------------------------------------- */

static const char *const server_labels[] = {
	"service_name", "http_request_method", "http_response_status_code",
	"http_route",	"url_scheme",	       NULL,
};

static const char *const client_labels[] = {
	"service_name",
	"http_request_method",
	"http_response_status_code",
	"server_address",
	"server_port",
	"url_scheme",
	NULL,
};

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
		"http_server_request_duration_seconds",
		"Duration of HTTP server requests, first request byte to last response byte",
		server_labels, NULL, 0);
	st->server_req_body = register_histogram("http_server_request_body_size_bytes",
						 "Size of HTTP server request bodies",
						 server_labels, body_buckets, nb);
	st->server_resp_body = register_histogram("http_server_response_body_size_bytes",
						  "Size of HTTP server response bodies",
						  server_labels, body_buckets, nb);
	st->client_duration = register_histogram(
		"http_client_request_duration_seconds",
		"Duration of HTTP client requests, first request byte to last response byte",
		client_labels, NULL, 0);
	if (!st->server_duration || !st->server_req_body || !st->server_resp_body ||
	    !st->client_duration)
		return -EINVAL;
	return 0;
}

static void http_free(struct http *st)
{
	if (!st)
		return;
	while (st->oldest)
		conn_free(st, st->oldest);
	http_tls_free(st->tls);
	free(st->routes);
	http_bpf__destroy(st->skel);
	free(st);
}

static int fill_ports(struct http *st, const struct ps_portlist *ports)
{
	int fd = bpf_map__fd(st->skel->maps.ps_sc_ports);
	__u8 one = 1;

	for (size_t i = 0; i < ports->n; i++) {
		__u16 port = ports->v[i];

		if (bpf_map_update_elem(fd, &port, &one, BPF_ANY))
			return -errno;
	}
	return 0;
}

/* tls: off loads none of the TLS programs. */
static void skip_tls_programs(struct http_bpf *skel)
{
	bpf_program__set_autoload(skel->progs.ps_sc_ssl_read, false);
	bpf_program__set_autoload(skel->progs.ps_sc_ssl_write, false);
	bpf_program__set_autoload(skel->progs.ps_sc_ssl_read_ex, false);
	bpf_program__set_autoload(skel->progs.ps_sc_ssl_write_ex, false);
	bpf_program__set_autoload(skel->progs.ps_sc_ssl_return, false);
	bpf_program__set_autoload(skel->progs.ps_sc_process_exec, false);
}

/*
 * The uprobes go on every libssl there is. Without them HTTP over TLS is not
 * seen, but plaintext HTTP still is: a failure here is logged, not fatal.
 */
static void start_tls(struct http *st)
{
	const struct http_tls_progs progs = {
		.read = st->skel->progs.ps_sc_ssl_read,
		.write = st->skel->progs.ps_sc_ssl_write,
		.read_ex = st->skel->progs.ps_sc_ssl_read_ex,
		.write_ex = st->skel->progs.ps_sc_ssl_write_ex,
		.ret = st->skel->progs.ps_sc_ssl_return,
	};
	int n;

	st->tls = http_tls_new(&progs);
	if (!st->tls) {
		ps_warn(SUBSYS, "TLS capture is off: %s", strerror(errno));
		return;
	}
	n = http_tls_scan_all(st->tls);
	ps_info(SUBSYS, "TLS capture: %d libssl file%s found", n, n == 1 ? "" : "s");
}

static int check_config(const struct http_config *cfg)
{
	if (cfg->capture_bytes < PS_SC_CAPTURE_MIN || cfg->capture_bytes > PS_SC_CAPTURE_MAX) {
		ps_error(SUBSYS, "capture_bytes must be between %d and %d bytes, not %" PRIu64,
			 PS_SC_CAPTURE_MIN, PS_SC_CAPTURE_MAX, cfg->capture_bytes);
		return -EINVAL;
	}
	if (cfg->ports.n > 1024) {
		ps_error(SUBSYS, "at most 1024 ports, not %zu", cfg->ports.n);
		return -EINVAL;
	}
	return 0;
}

static int http_init(struct ps_plugin *p, const void *config)
{
	static const struct http_config defaults = { .capture_bytes = PS_SC_CAPTURE_DEFAULT };
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
			err = -ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < cfg->routes.n; i++)
			st->routes[i] = cfg->routes.v[i];
		st->n_routes = cfg->routes.n;
	}
	st->tls_on = !cfg->tls || strcmp(cfg->tls, "off") != 0;

	st->skel = http_bpf__open();
	if (!st->skel) {
		err = -errno;
		ps_error(SUBSYS, "open failed: %s", strerror(-err));
		goto fail;
	}
	st->skel->rodata->ps_self_tgid = ps_bpf_self_tgid();
	st->skel->rodata->ps_sc_capture_bytes = (__u32)cfg->capture_bytes;
	st->skel->rodata->ps_sc_filter_ports = cfg->ports.n > 0;
	st->skel->rodata->ps_sc_tls = st->tls_on;
	if (!st->tls_on)
		skip_tls_programs(st->skel);
	err = http_bpf__load(st->skel);
	if (err) {
		ps_error(SUBSYS, "load failed: %s", strerror(-err));
		goto fail;
	}
	err = fill_ports(st, &cfg->ports);
	if (err) {
		ps_error(SUBSYS, "cannot fill the ports map: %s", strerror(-err));
		goto fail;
	}
	ps_plugin_set_data(p, st);
	return 0;

fail:
	http_free(st);
	return err;
}

static int http_start(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);
	int err;

	err = register_metrics(st);
	if (err)
		return err;
	err = ps_bpf_ringbuf_add(p, bpf_map__fd(st->skel->maps.ps_sc_events), on_event, st);
	if (err) {
		ps_error(SUBSYS, "cannot register the ring buffer: %s", strerror(-err));
		return err;
	}
	err = ps_bpf_drops_watch(p, bpf_map__fd(st->skel->maps.ps_drops));
	if (err) {
		ps_error(SUBSYS, "cannot watch ring buffer drops: %s", strerror(-err));
		return err;
	}
	err = http_bpf__attach(st->skel);
	if (err) {
		ps_error(SUBSYS, "attach failed: %s", strerror(-err));
		return err;
	}
	if (st->tls_on)
		start_tls(st);
	return 0;
}

static void http_stop(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);

	if (!st)
		return;
	http_tls_free(st->tls);
	st->tls = NULL;
	if (st->skel)
		http_bpf__detach(st->skel);
}

static void http_destroy(struct ps_plugin *p)
{
	struct http *st = ps_plugin_data(p);
	uint64_t unbound = 0;

	if (st && st->skel && st->tls_on)
		ps_bpf_percpu_sum(bpf_map__fd(st->skel->maps.ps_sc_tls_stats), PS_SC_TLS_UNBOUND,
				  &unbound);
	if (st)
		ps_debug(SUBSYS,
			 "%" PRIu64 " exchanges, %" PRIu64 " unanswered requests, %" PRIu64
			 " connections rejected, %" PRIu64 " evicted, %" PRIu64
			 " TLS reads/writes on an unknown connection",
			 st->exchanges, st->unanswered, st->rejected, st->evicted, unbound);
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
		.max = "1024",
	},
	{
		.name = "capture_bytes",
		.type = PS_CFG_SIZE,
		.def = "1024",
		.offset = offsetof(struct http_config, capture_bytes),
		.help = "bytes copied from each read or write (64 to 4096)",
		.min = CFG_TEXT(PS_SC_CAPTURE_MIN),
		.max = CFG_TEXT(PS_SC_CAPTURE_MAX),
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
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "http", .version = PACKAGE_VERSION,
		 .description = "HTTP/1.x request rate, errors and duration, server and client",
		 .config_map = http_config_map, .config_size = sizeof(struct http_config),
		 .init = http_init, .start = http_start, .collect = http_collect, .stop = http_stop,
		 .destroy = http_destroy, );
