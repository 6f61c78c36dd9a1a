/*
 * The prometheus_http sink on a real loop and real sockets: exact bodies, gzip,
 * /healthz verdicts, bad requests, a silent client at close, a reopen (reload).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <uv.h>
#include <zlib.h>

#include "notify.h"
#include "registry.h"
#include "sinks/prom_text.h"
#include "sinks/sink.h"

#define NOW_NS 1795543215000000000ull

static const char *const up_labels[] = { "service_name", "plugin", NULL };

struct fixture {
	uv_loop_t loop;
	uv_timer_t alive; /* the sink's handles are unreferenced: this keeps the loop polling */
	struct ps_registry *reg;
	struct ps_metric *up;
	struct ps_flush_ctx ctx;
	struct ps_strmap no_labels;
	char listen[32];
	int port;
	void *sink;
};

struct response {
	int status;
	char head[1024];
	char *body;
	size_t body_len;
};

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void set_up(struct fixture *fx, const char *plugin, double value)
{
	ck_assert_int_eq(ps_metric_set(fx->up, (const char *[]){ "periscoped", plugin }, value), 0);
}

static void *open_sink(struct fixture *fx)
{
	char *listen = fx->listen;

	return ps_sink_prometheus_http.open(&listen);
}

static void never(uv_timer_t *t)
{
}

static void fixture_init(struct fixture *fx)
{
	memset(fx, 0, sizeof(*fx));
	ck_assert_int_eq(uv_loop_init(&fx->loop), 0);
	uv_timer_init(&fx->loop, &fx->alive);
	ck_assert_int_eq(uv_timer_start(&fx->alive, never, 3600 * 1000, 0), 0);
	fx->reg = ps_registry_new(0);
	ps_registry_set_default(fx->reg);
	fx->up = ps_registry_register(fx->reg, &(struct ps_metric_desc){
		.name = "periscope_plugin_up",
		.help = "1 when the plugin is running, 0 when it failed",
		.type = PS_METRIC_GAUGE,
		.labels = up_labels,
	});
	ck_assert_ptr_nonnull(fx->up);
	set_up(fx, "http", 1);
	set_up(fx, "tcpflow", 1);
	fx->ctx = (struct ps_flush_ctx){
		.registry = fx->reg,
		.static_labels = &fx->no_labels,
		.now_unix_ns = NOW_NS,
		.interval_ns = 1000000000ull,
	};
	fx->port = free_port();
	snprintf(fx->listen, sizeof(fx->listen), "127.0.0.1:%d", fx->port);
	ps_sink_prometheus_http_set_loop(&fx->loop);
	fx->sink = open_sink(fx);
	ck_assert_ptr_nonnull(fx->sink);
}

static void fixture_free(struct fixture *fx)
{
	if (fx->sink)
		ps_sink_prometheus_http.close(fx->sink);
	uv_close((uv_handle_t *)&fx->alive, NULL);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	/* EBUSY if any handle of the sink were left open. */
	ck_assert_int_eq(uv_loop_close(&fx->loop), 0);
	ps_sink_prometheus_http_set_loop(NULL);
	ps_registry_set_default(NULL);
	ps_registry_free(fx->reg);
}

static int connect_to(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	/* The kernel completes the handshake from the backlog; the loop accepts later. */
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* Sends raw, turns the loop until the server closes, parses the answer. */
static void exchange(struct fixture *fx, const char *raw, size_t raw_len, struct response *r)
{
	int fd = connect_to(fx->port);
	size_t sent = 0, len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	char *end;
	time_t deadline = time(NULL) + 5;

	ck_assert_ptr_nonnull(buf);
	memset(r, 0, sizeof(*r));
	for (;;) {
		ssize_t n;

		if (sent < raw_len) {
			n = send(fd, raw + sent, raw_len - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n > 0)
			len += (size_t)n;
		else
			poll(NULL, 0, 1);
		ck_assert_msg(time(NULL) < deadline, "no complete answer in 5 s");
	}
	close(fd);
	buf = realloc(buf, len + 1);
	buf[len] = '\0';
	end = strstr(buf, "\r\n\r\n");
	ck_assert_msg(end != NULL, "no header end in: %s", buf);
	ck_assert_uint_lt((size_t)(end - buf), sizeof(r->head));
	memcpy(r->head, buf, (size_t)(end - buf));
	ck_assert_int_eq(sscanf(buf, "HTTP/1.1 %d ", &r->status), 1);
	r->body_len = len - (size_t)(end + 4 - buf);
	r->body = malloc(r->body_len + 1);
	memcpy(r->body, end + 4, r->body_len);
	r->body[r->body_len] = '\0';
	free(buf);
}

static void get(struct fixture *fx, const char *request, struct response *r)
{
	exchange(fx, request, strlen(request), r);
}

static size_t content_length(const struct response *r)
{
	const char *h = strstr(r->head, "Content-Length: ");

	ck_assert_ptr_nonnull(h);
	return strtoul(h + 16, NULL, 10);
}

/* What the textfile sink would write for the same flush. */
static char *expected_text(struct fixture *fx, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	ck_assert_int_eq(ps_prom_write(f, &fx->ctx), 0);
	fclose(f);
	return text;
}

START_TEST(test_nothing_before_the_first_flush)
{
	struct fixture fx;
	struct response r;

	fixture_init(&fx);
	get(&fx, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 503);
	free(r.body);
	get(&fx, "GET /healthz HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "unhealthy: no flush yet (2 of 2 plugins up)\n");
	free(r.body);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_metrics_is_the_flush_snapshot)
{
	struct fixture fx;
	struct response r;
	size_t want_len;
	char *want;

	fixture_init(&fx);
	ck_assert_int_eq(ps_sink_prometheus_http.flush(fx.sink, &fx.ctx), 0);
	want = expected_text(&fx, &want_len);
	/* Changes after the flush are not served until the next one. */
	set_up(&fx, "mysql", 1);
	get(&fx, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"));
	ck_assert_ptr_null(strstr(r.head, "Content-Encoding"));
	ck_assert_uint_eq(content_length(&r), want_len);
	ck_assert_uint_eq(r.body_len, want_len);
	ck_assert_mem_eq(r.body, want, want_len);
	ck_assert_ptr_null(strstr(r.body, "mysql"));
	free(r.body);
	/* A query string does not change the path. */
	get(&fx, "GET /metrics?name[]=x HTTP/1.0\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	free(r.body);
	free(want);
	fixture_free(&fx);
}
END_TEST

static const char *const gzip_headers[] = {
	"Accept-Encoding: gzip",
	"accept-encoding: deflate, gzip, br",
	"Accept-Encoding: gzip;q=1.0",
	"Accept-Encoding: identity;q=0.5, gzip",
};

START_TEST(test_gzip_when_accepted)
{
	struct fixture fx;
	struct response r;
	char request[256], *want, *plain;
	size_t want_len;
	uLongf plain_len;
	z_stream z = { 0 };

	fixture_init(&fx);
	ck_assert_int_eq(ps_sink_prometheus_http.flush(fx.sink, &fx.ctx), 0);
	want = expected_text(&fx, &want_len);
	snprintf(request, sizeof(request), "GET /metrics HTTP/1.1\r\n%s\r\n\r\n", gzip_headers[_i]);
	get(&fx, request, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.head, "\r\nContent-Encoding: gzip"));
	ck_assert_uint_eq(content_length(&r), r.body_len);
	plain_len = want_len + 64;
	plain = malloc(plain_len);
	ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)r.body;
	z.avail_in = (uInt)r.body_len;
	z.next_out = (Bytef *)plain;
	z.avail_out = (uInt)plain_len;
	ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	ck_assert_uint_eq(z.total_out, want_len);
	ck_assert_mem_eq(plain, want, want_len);
	inflateEnd(&z);
	free(plain);
	free(r.body);
	free(want);
	fixture_free(&fx);
}
END_TEST

static const char *const identity_headers[] = {
	"Accept-Encoding: gzip;q=0",
	"Accept-Encoding: identity",
	"Accept-Encoding: gzipx",
	"X-Accept-Encoding: gzip",
};

START_TEST(test_no_gzip_when_not_accepted)
{
	struct fixture fx;
	struct response r;
	char request[256];

	fixture_init(&fx);
	ck_assert_int_eq(ps_sink_prometheus_http.flush(fx.sink, &fx.ctx), 0);
	snprintf(request, sizeof(request), "GET /metrics HTTP/1.1\r\n%s\r\n\r\n", identity_headers[_i]);
	get(&fx, request, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(strstr(r.head, "Content-Encoding"));
	ck_assert_ptr_nonnull(strstr(r.body, "# TYPE periscope_plugin_up gauge"));
	free(r.body);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_healthz_follows_plugin_up)
{
	struct fixture fx;
	struct response r;

	fixture_init(&fx);
	ck_assert_int_eq(ps_sink_prometheus_http.flush(fx.sink, &fx.ctx), 0);
	get(&fx, "GET /healthz HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strncmp(r.body, "ok: 2 of 2 plugins up, last flush 0.", 36) == 0, "%s", r.body);
	free(r.body);
	set_up(&fx, "tcpflow", 0);
	get(&fx, "GET /healthz HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "unhealthy: plugins down: tcpflow (1 of 2 up)\n");
	free(r.body);
	set_up(&fx, "http", 0);
	get(&fx, "HEAD /healthz HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_uint_eq(r.body_len, 0);
	ck_assert_uint_eq(content_length(&r), strlen("unhealthy: plugins down: http, tcpflow (0 of 2 up)\n"));
	free(r.body);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_bad_requests)
{
	struct fixture fx;
	struct response r;
	char *big = malloc(10000);

	fixture_init(&fx);
	get(&fx, "POST /metrics HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 405);
	free(r.body);
	get(&fx, "GET /metrics/../etc HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 404);
	free(r.body);
	get(&fx, "GET /metrics SPDY/3\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 400);
	free(r.body);
	get(&fx, "\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 400);
	free(r.body);
	memset(big, 'a', 10000);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	exchange(&fx, big, 10000, &r);
	ck_assert_int_eq(r.status, 431);
	free(r.body);
	free(big);
	fixture_free(&fx);
}
END_TEST

/* A client that never sends: closing the sink closes it too, and frees everything. */
START_TEST(test_close_with_a_silent_client)
{
	struct fixture fx;
	int fd;

	fixture_init(&fx);
	fd = connect_to(fx.port);
	for (int i = 0; i < 10; i++)
		uv_run(&fx.loop, UV_RUN_NOWAIT);
	ps_sink_prometheus_http.close(fx.sink);
	fx.sink = NULL;
	close(fd);
	fixture_free(&fx);
}
END_TEST

/* A reload closes and reopens the sink: the same port, the last snapshot still served. */
START_TEST(test_reopen_keeps_serving)
{
	struct fixture fx;
	struct response r;
	size_t want_len;
	char *want;

	fixture_init(&fx);
	ck_assert_int_eq(ps_sink_prometheus_http.flush(fx.sink, &fx.ctx), 0);
	want = expected_text(&fx, &want_len);
	ps_sink_prometheus_http.close(fx.sink);
	fx.sink = open_sink(&fx);
	ck_assert_ptr_nonnull(fx.sink);
	get(&fx, "GET /metrics HTTP/1.1\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, want_len);
	ck_assert_mem_eq(r.body, want, want_len);
	free(r.body);
	free(want);
	fixture_free(&fx);
}
END_TEST

static const char *const bad_listen[] = {
	"", "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80x",
	"host.example:9464", "[::1]9464", "[::1:9464", "::1:9464", "1.2.3:9464",
};

START_TEST(test_bad_listen_rejected)
{
	char *listen = (char *)bad_listen[_i];

	ps_sink_prometheus_http_set_loop(NULL);
	errno = 0;
	ck_assert_ptr_null(ps_sink_prometheus_http.open(&listen));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

static const char *const good_listen[] = { "127.0.0.1:9464", ":9464", "[::1]:9464",
					   "localhost:9464", "0.0.0.0:1" };

/* Without a loop (--check-config) a good address is accepted and nothing is bound. */
START_TEST(test_good_listen_without_loop)
{
	char *listen = (char *)good_listen[_i];
	void *sink;

	ps_sink_prometheus_http_set_loop(NULL);
	sink = ps_sink_prometheus_http.open(&listen);
	ck_assert_ptr_nonnull(sink);
	ps_sink_prometheus_http.close(sink);
}
END_TEST

START_TEST(test_port_in_use)
{
	struct fixture fx;
	void *second;

	fixture_init(&fx);
	errno = 0;
	second = open_sink(&fx);
	ck_assert_ptr_null(second);
	ck_assert_int_eq(errno, EADDRINUSE);
	fixture_free(&fx);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("prom_http");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_nothing_before_the_first_flush);
	tcase_add_test(tc, test_metrics_is_the_flush_snapshot);
	tcase_add_loop_test(tc, test_gzip_when_accepted, 0,
			    sizeof(gzip_headers) / sizeof(gzip_headers[0]));
	tcase_add_loop_test(tc, test_no_gzip_when_not_accepted, 0,
			    sizeof(identity_headers) / sizeof(identity_headers[0]));
	tcase_add_test(tc, test_healthz_follows_plugin_up);
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_close_with_a_silent_client);
	tcase_add_test(tc, test_reopen_keeps_serving);
	tcase_add_loop_test(tc, test_bad_listen_rejected, 0,
			    sizeof(bad_listen) / sizeof(bad_listen[0]));
	tcase_add_loop_test(tc, test_good_listen_without_loop, 0,
			    sizeof(good_listen) / sizeof(good_listen[0]));
	tcase_add_test(tc, test_port_in_use);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
