/*
 * http_replay: the daemon's cost per HTTP request, without a kernel.
 *
 * Replays what the capture's ring buffer holds while wrk drives nginx with
 * keep-alive on loopback (`make bench`): per request four DATA events (the
 * client writes the request, the server reads it, the server writes the
 * response, the client reads it) over N keep-alive connections, each through
 * the core capture's event handler (offline: no BPF) into the http plugin's
 * callbacks and a real registry, with a subscriber on the event stream as
 * the daemon has. The bytes are what wrk and nginx 1.22 sent.
 *
 *   http_replay [requests [connections]]    prints ns per request (median of 5)
 *
 * Environment: REPLAY_PATHS=k gives connection i the path /api/v1/r<i % k>/items (k label
 * sets per side, default 1); REPLAY_MAX_SERIES is the registry's series cap (10000);
 * REPLAY_DUMP=file writes every series at the end, and file.events every exchange event,
 * to compare builds; REPLAY_ONCE=1 skips the timed runs.
 *
 * Deterministic figure: only replay_measured() is counted, so
 *   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=replay_measured \
 *	tests/bench/http_replay 20000
 * gives instructions per request as Ir / 20000.
 *
 * The plugin is compiled in (its callbacks are static); nothing of BPF is touched.
 */
#include "http.c"

#include <unistd.h>

#include "capture/capture.h"
#include "eventbus.h"
#include "loader.h"
#include "ps_sockcap.h"
#include "registry.h"

#define CONNS_MAX      64
#define SERVER_PORT    8080
#define CLIENT_PORT0   40000
#define EVENT_SIZE_MAX (sizeof(struct ps_sc_event) + 512)
#define EVENT_STEP_NS  2500
#define TIMED_RUNS     5

static const char wrk_request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
static const char wrk_request_path[] =
	"GET /api/v1/r%zu/items HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
static const char nginx_response[] = "HTTP/1.1 200 OK\r\n"
				     "Server: nginx/1.22.1\r\n"
				     "Date: Tue, 24 Nov 2026 20:44:17 GMT\r\n"
				     "Content-Type: text/plain\r\n"
				     "Content-Length: 16\r\n"
				     "Connection: keep-alive\r\n"
				     "\r\n"
				     "periscope bench\n";

/* One event as the ring buffer holds it: header, then the captured bytes. */
struct replay_event {
	union {
		struct ps_sc_event e;
		uint8_t bytes[EVENT_SIZE_MAX];
	};
	size_t size;
};

/* Per connection pair: client write, server read, server write, client read. */
struct replay_conn {
	struct replay_event ev[4];
};

static struct replay_conn conns[CONNS_MAX];
static uint64_t events_seen;
static uint64_t clock_ns;
static FILE *events_out; /* REPLAY_DUMP: exchange events too, unix times as a duration */

static void write_endpoint(const struct ps_endpoint *ep)
{
	char addr[64];

	fprintf(events_out, " %d/%s/%u", ep->family, ps_endpoint_addr_str(ep, addr, sizeof(addr)),
		ep->port);
}

static void count_event(const struct ps_event *ev, void *ctx)
{
	const struct ps_exchange *x = ev->exchange;

	events_seen++;
	if (!events_out)
		return;
	fprintf(events_out, "%s %s side=%d pid=%u tid=%u %s", ev->plugin, x->protocol, x->side,
		x->pid, x->tid, x->service_name);
	write_endpoint(&x->local);
	write_endpoint(&x->remote);
	fprintf(events_out, " %s %s %s status=%d error=%d tp=%s took=%" PRIu64 "\n", x->operation,
		x->target, x->scheme, x->status, x->error, x->traceparent ? x->traceparent : "-",
		x->end_unix_ns - x->start_unix_ns);
}

static void make_event(struct replay_event *r, uint32_t tgid, uint64_t conn_id, uint32_t fd,
		       uint8_t dir, uint16_t lport, uint16_t rport, const char *comm,
		       const char *payload)
{
	size_t len = strlen(payload);
	const uint8_t lo[4] = { 127, 0, 0, 1 };

	memset(r, 0, sizeof(*r));
	r->e.type = PS_SC_EV_DATA;
	r->e.flags = PS_SC_F_CONN; /* as the kernel: addresses and comm until one event got through */
	r->e.tgid = tgid;
	r->e.tid = tgid;
	r->e.fd = fd;
	r->e.conn_id = conn_id;
	r->e.total = len;
	r->e.len = (uint32_t)len;
	r->e.dir = dir;
	r->e.family = AF_INET;
	r->e.lport = lport;
	r->e.rport = rport;
	memcpy(r->e.laddr, lo, sizeof(lo));
	memcpy(r->e.raddr, lo, sizeof(lo));
	memcpy(r->e.comm, comm, strnlen(comm, sizeof(r->e.comm)));
	memcpy(r->bytes + sizeof(r->e), payload, len);
	r->size = sizeof(r->e) + len;
}

static void make_conns(size_t n, size_t paths, uint32_t server_tgid, uint32_t client_tgid)
{
	for (size_t i = 0; i < n; i++) {
		uint16_t cport = (uint16_t)(CLIENT_PORT0 + i);
		struct replay_event *ev = conns[i].ev;
		char request[128];

		if (paths > 1)
			snprintf(request, sizeof(request), wrk_request_path, i % paths);
		else
			snprintf(request, sizeof(request), "%s", wrk_request);
		make_event(&ev[0], client_tgid, 2000 + i, 100 + (uint32_t)i, PS_SC_DIR_OUT, cport,
			   SERVER_PORT, "wrk", request);
		make_event(&ev[1], server_tgid, 1000 + i, 10 + (uint32_t)i, PS_SC_DIR_IN,
			   SERVER_PORT, cport, "nginx", request);
		make_event(&ev[2], server_tgid, 1000 + i, 10 + (uint32_t)i, PS_SC_DIR_OUT,
			   SERVER_PORT, cport, "nginx", nginx_response);
		make_event(&ev[3], client_tgid, 2000 + i, 100 + (uint32_t)i, PS_SC_DIR_IN, cport,
			   SERVER_PORT, "wrk", nginx_response);
	}
}

static void deliver(struct http *st, struct replay_event *r)
{
	r->e.ts_ns = clock_ns += EVENT_STEP_NS;
	if (ps_capture_feed(r->bytes, r->size) < 0)
		abort();
	r->e.flags &= ~PS_SC_F_CONN;
}

/* Requests go out on every connection, then every answer comes back, as under wrk. */
static void replay(struct http *st, size_t requests, size_t n_conns)
{
	size_t done = 0;

	while (done < requests) {
		size_t k = requests - done < n_conns ? requests - done : n_conns;

		for (size_t i = 0; i < k; i++) {
			deliver(st, &conns[i].ev[0]);
			deliver(st, &conns[i].ev[1]);
		}
		for (size_t i = 0; i < k; i++) {
			deliver(st, &conns[i].ev[2]);
			deliver(st, &conns[i].ev[3]);
		}
		done += k;
	}
}

/* What callgrind counts (--toggle-collect=replay_measured). */
__attribute__((noinline)) void replay_measured(struct http *st, size_t requests, size_t n_conns)
{
	replay(st, requests, n_conns);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t histogram_count(struct ps_metric *m)
{
	struct ps_family *f = ps_metric_family(m);
	uint64_t n = 0;

	for (size_t i = 0; i < f->n_series; i++)
		n += f->series[i]->count;
	return n;
}

/* Every series of every family, one line each, in creation order. */
static int dump_registry(const struct ps_registry *r, const char *path)
{
	FILE *out = fopen(path, "w");

	if (!out)
		return -1;
	for (size_t i = 0; i < r->n_families; i++) {
		const struct ps_family *f = r->families[i];

		for (size_t j = 0; j < f->n_series; j++) {
			const struct ps_series *s = f->series[j];

			fprintf(out, "%s", f->name);
			for (size_t k = 0; k < f->n_labels; k++)
				fprintf(out, " %s=\"%s\"", f->labels[k], s->values[k]);
			fprintf(out, " value=%.17g count=%" PRIu64 " sum=%.17g", s->value, s->count,
				s->sum);
			for (size_t k = 0; s->buckets && k <= f->n_bounds; k++)
				fprintf(out, " %" PRIu64, s->buckets[k]);
			fputc('\n', out);
		}
	}
	return fclose(out);
}

static size_t env_size(const char *name, size_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 10) : def;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	size_t requests = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	size_t n_conns = argc > 2 ? strtoul(argv[2], NULL, 10) : 16;
	uint64_t runs[TIMED_RUNS], expected;
	struct ps_registry *r = ps_registry_new(env_size("REPLAY_MAX_SERIES", 10000));
	const char *dump = getenv("REPLAY_DUMP");
	struct http *st = calloc(1, sizeof(*st));
	struct ps_plugin plugin = { .name = (char *)"http" };
	bool timed = !getenv("REPLAY_ONCE");

	if (!r || !st || !requests || !n_conns || n_conns > CONNS_MAX) {
		fprintf(stderr, "usage: http_replay [requests [connections <= %d]]\n", CONNS_MAX);
		return 2;
	}
	ps_registry_set_default(r);
	if (dump) {
		char path[4096];

		snprintf(path, sizeof(path), "%s.events", dump);
		events_out = fopen(path, "w");
		if (!events_out) {
			perror(path);
			return 1;
		}
	}
	st->capture_bytes = PS_CAPTURE_BYTES_DEFAULT;
	ps_plugin_set_data(&plugin, st);
	ps_capture_set_offline(true);
	if (http_start(&plugin) || ps_event_subscribe(NULL, PS_EVENT_EXCHANGE, count_event, NULL))
		return 1;
	clock_ns = 1000000000ull;
	make_conns(n_conns, env_size("REPLAY_PATHS", 1), (uint32_t)getpid(), (uint32_t)getppid());

	replay(st, 4 * n_conns, n_conns); /* warm: streams, service names, series exist */
	replay_measured(st, requests, n_conns);
	expected = 4 * n_conns + requests;
	for (int i = 0; timed && i < TIMED_RUNS; i++) {
		uint64_t t0 = now_ns();

		replay(st, requests, n_conns);
		runs[i] = now_ns() - t0;
		expected += requests;
	}
	if (histogram_count(st->server_duration) != expected ||
	    histogram_count(st->client_duration) != expected || events_seen != 2 * expected) {
		fprintf(stderr,
			"http_replay: counts are off: server %" PRIu64 ", client %" PRIu64
			", events %" PRIu64 ", expected %" PRIu64 " each (events twice)\n",
			histogram_count(st->server_duration), histogram_count(st->client_duration),
			events_seen, expected);
		return 1;
	}
	if (dump && (dump_registry(r, dump) || fclose(events_out))) {
		perror(dump);
		return 1;
	}
	if (timed) {
		qsort(runs, TIMED_RUNS, sizeof(runs[0]), compare_u64);
		printf("http_replay: %zu requests over %zu connections: %.0f ns per request "
		       "(median of %d)\n",
		       requests, n_conns, (double)runs[TIMED_RUNS / 2] / (double)requests,
		       TIMED_RUNS);
	}
	http_stop(&plugin);
	http_free(st);
	ps_event_reset();
	ps_registry_free(r);
	return 0;
}
