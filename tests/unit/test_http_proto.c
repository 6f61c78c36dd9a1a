/*
 * Unit tests for the HTTP/1.x decoder (plugins/http/http_proto.c).
 *
 * The byte strings below were captured on a test machine from real tools: curl 7.88.1 as
 * the client, nginx 1.22.1 and Python 3.11's http.server as servers, through a recording
 * TCP proxy (one string per recv()). The TLS ClientHello is curl's, the SSH banner
 * OpenSSH's, the MySQL greeting MariaDB 10.11's, each read with nc.
 */
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_proto.h"

/* ---- captured traffic ------------------------------------------------------------------- */

/* The captures keep one line per line on the wire. */
/* clang-format off */
/* One keep-alive connection: curl URL --next URL ... against nginx. */
static const char ka_req_api[] =
	"GET /api/users/42 HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
	"\r\n";

static const char ka_rsp_api[] =
	"HTTP/1.1 200 OK\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Content-Type: application/json\r\n"
	"Content-Length: 23\r\n"
	"Connection: keep-alive\r\n"
	"\r\n"
	"{\"id\":42,\"name\":\"ada\"}\n";

static const char ka_req_query[] =
	"GET /index.html?utm_source=x HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"\r\n";

static const char ka_rsp_query[] =
	"HTTP/1.1 200 OK\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Content-Type: text/html\r\n"
	"Content-Length: 59\r\n"
	"Last-Modified: Tue, 24 Nov 2026 19:08:03 GMT\r\n"
	"Connection: keep-alive\r\n"
	"ETag: \"6b05e093-3b\"\r\n"
	"Accept-Ranges: bytes\r\n"
	"\r\n"
	"<!doctype html>\n"
	"<title>periscope test</title>\n"
	"<p>hello</p>\n";

static const char ka_req_head[] =
	"HEAD /index.html HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"\r\n";

static const char ka_rsp_head[] =
	"HTTP/1.1 200 OK\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Content-Type: text/html\r\n"
	"Content-Length: 59\r\n"
	"Last-Modified: Tue, 24 Nov 2026 19:08:03 GMT\r\n"
	"Connection: keep-alive\r\n"
	"ETag: \"6b05e093-3b\"\r\n"
	"Accept-Ranges: bytes\r\n"
	"\r\n";

static const char ka_req_empty[] =
	"GET /empty HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"\r\n";

static const char ka_rsp_empty[] =
	"HTTP/1.1 204 No Content\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Connection: keep-alive\r\n"
	"\r\n";

static const char ka_req_notmod[] =
	"GET /index.html HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"If-None-Match: \"6b05e093-3b\"\r\n"
	"\r\n";

static const char ka_rsp_notmod[] =
	"HTTP/1.1 304 Not Modified\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Last-Modified: Tue, 24 Nov 2026 19:08:03 GMT\r\n"
	"Connection: keep-alive\r\n"
	"ETag: \"6b05e093-3b\"\r\n"
	"\r\n";

/* curl --compressed: nginx gzips on the fly, so the body is chunked. */
static const char gz_req[] =
	"GET /mid.txt HTTP/1.1\r\n"
	"Host: 127.0.0.1:18091\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"Accept-Encoding: deflate, gzip, br, zstd\r\n"
	"\r\n";

static const char gz_rsp[] =
	"HTTP/1.1 200 OK\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:32 GMT\r\n"
	"Content-Type: text/plain\r\n"
	"Last-Modified: Tue, 24 Nov 2026 19:08:31 GMT\r\n"
	"Transfer-Encoding: chunked\r\n"
	"Connection: keep-alive\r\n"
	"ETag: W/\"6b05e0af-2328\"\r\n"
	"Content-Encoding: gzip\r\n"
	"\r\n"
	"1b3\r\n"
	"\037\213\010\000\000\000\000\000\004\003\245\331=n\333@\024\205\321>\253\340\022x"
	"\207\363\303YN`\323\216\020A\022,\t\010\262z;E\032\267\347\265\017\270\325\351\276"
	"\363\351r,\353\277[\256o\313\317\345q\374y,o\247\363\261<\357\307\353\362\270.\267"
	"\217\353\353\363\345\370\372\275\377=\335\226\227_\317\313\357\257\317\307q\277]/"
	"\367\343\307\371\377Bx\241\360\302\306\013\225\027\032/t^\030\274\260\363\302\324"
	"\205\260\311\260\311\260\311\260\311\260\311\260\311\260\311\260\311\260\311\260\311"
	"\302&\013\233,l\262\260\311\302&\013\233,l\262\260\311\302&\013\233\334\330\344\306&"
	"76\271\261\311\215Mnlrc\223\033\233\334\330\344\306&+\233\254l\262\262\311\312&+\233"
	"\254l\262\262\311\312&+\233\254l\262\261\311\306&\033\233ll\262\261\311\306&\033\233"
	"ll\262\261\311\306&;\233\354l\262\263\311\316&;\233\354l\262\263\311\316&;\233\354lr"
	"\260\311\301&\007\233\034lr\260\311\301&\007\233\034lr\260\311\301&w6\271\263\311"
	"\235M\356lrg\223;\233\334\331\344\316&w6\271\263\311\311&'\233\234lr\262\311\311&'"
	"\233\234lr\262\311\311&\247\232\014w\234\254j2\253\232\314\252&\263\252\311\254j2"
	"\253\232\314\252&\263\252\311\254l\222;N\270\343\204;N\270\343\204;N\270\343\204;N"
	"\270\343\204;N\270\343\204;N\270\343\204;N\270\343\204;N\270\343\204;N\270\343\204;N"
	"\270\343\204;N\270\343\204;N\270\343\204;N\270\343\344{\307\371\004O\311\224c(#\000"
	"\000\r\n"
	"0\r\n"
	"\r\n";

/* curl -H 'Transfer-Encoding: chunked' --data-binary @file: a chunked upload. */
static const char up_chunked_req[] =
	"POST /upload HTTP/1.1\r\n"
	"Host: 127.0.0.1:18091\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"Transfer-Encoding: chunked\r\n"
	"Content-Type: application/x-www-form-urlencoded\r\n"
	"\r\n"
	"12c\r\n"
	"line 00000 of a text file used to produce a gzip chunked response\n"
	"line 00001 of a text file used to produce a gzip chunked response\n"
	"line 00002 of a text file used to produce a gzip chunked response\n"
	"line 00003 of a text file used to produce a gzip chunked response\n"
	"line 00004 of a text file used to pr\r\n"
	"0\r\n"
	"\r\n";

static const char up_chunked_rsp[] =
	"HTTP/1.1 201 Created\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:32 GMT\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 7\r\n"
	"Connection: keep-alive\r\n"
	"\r\n"
	"stored\n";

/* curl -H 'Expect: 100-continue' --data-binary @file (3000 bytes, see make_upload_body). */
static const char cont_req_head[] =
	"POST /upload HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"Expect: 100-continue\r\n"
	"Content-Length: 3000\r\n"
	"Content-Type: application/x-www-form-urlencoded\r\n"
	"\r\n";

static const char cont_interim[] =
	"HTTP/1.1 100 Continue\r\n"
	"\r\n";

static const char cont_rsp[] =
	"HTTP/1.1 201 Created\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 7\r\n"
	"Connection: keep-alive\r\n"
	"\r\n"
	"stored\n";

/* curl -X PURGE: a method outside the known set. */
static const char purge_req[] =
	"PURGE /api/cache/7 HTTP/1.1\r\n"
	"Host: 127.0.0.1:18090\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"\r\n";

static const char purge_rsp[] =
	"HTTP/1.1 200 OK\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Content-Type: application/json\r\n"
	"Content-Length: 23\r\n"
	"Connection: keep-alive\r\n"
	"\r\n"
	"{\"id\":42,\"name\":\"ada\"}\n";

/* curl -x: nginx as the proxy gets the absolute form. */
static const char proxy_req[] =
	"GET http://example.test:8080/api/users/7?verbose=1 HTTP/1.1\r\n"
	"Host: example.test:8080\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"Proxy-Connection: Keep-Alive\r\n"
	"\r\n";

static const char proxy_rsp[] =
	"HTTP/1.1 200 OK\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:08:10 GMT\r\n"
	"Content-Type: application/json\r\n"
	"Content-Length: 23\r\n"
	"Connection: keep-alive\r\n"
	"\r\n"
	"{\"id\":42,\"name\":\"ada\"}\n";

/* curl --http1.0 against http.server sending no Content-Length. */
static const char close_req[] =
	"GET /stream HTTP/1.0\r\n"
	"Host: 127.0.0.1:18092\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"\r\n";

static const char close_rsp_head[] =
	"HTTP/1.0 200 OK\r\n"
	"Server: BaseHTTP/0.6 Python/3.11.7\r\n"
	"Date: Tue, 24 Nov 2026 19:08:48 GMT\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n";

static const char close_rsp_body[] =
	"streamed until close\n"
	"second write\n";

/* The first 96 bytes of curl's TLS ClientHello. */
static const char tls_client_hello[] =
	"\026\003\001\002\000\001\000\001\374\003\003\005r,\202E\243\365\235\341U\003G\312h"
	"\261B<\202h\356\244C\030W\301\\\330\304e\320\372) \335^9\306zd\323\3738\3348\210$"
	"\262W8\257\2711\305y\332\305\033\271\232\003\261\273\325\344\324\000>\023\002\023"
	"\003\023\001\300,\3000\000\237\314\251\314\250\314\252";

/* MariaDB's server greeting. */
static const char mysql_greeting[] =
	"d\000\000\000\n"
	"5.5.5-10.11.19-MariaDB-0+deb12u1\000\003\000\000\000kVLY[>bT\000\376\367\010\002\000"
	"\377\201\025\000\000\000\000\000\000\035\000\000\000[OZW%OB99QkH\000mysql_native_pas"
	"sword\000";

/* OpenSSH's client banner. */
static const char ssh_banner[] =
	"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n";

/* A WebSocket upgrade: curl against http.server answering 101, then a frame. */
static const char ws_req[] =
	"GET /chat HTTP/1.1\r\n"
	"Host: 127.0.0.1:18095\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"Upgrade: websocket\r\n"
	"Connection: Upgrade\r\n"
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	"Sec-WebSocket-Version: 13\r\n"
	"\r\n";

static const char ws_rsp[] =
	"HTTP/1.1 101 Switching Protocols\r\n"
	"Server: BaseHTTP/0.6 Python/3.11.7\r\n"
	"Date: Tue, 24 Nov 2026 19:13:09 GMT\r\n"
	"Upgrade: websocket\r\n"
	"Connection: Upgrade\r\n"
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	"\r\n"
	"\201\005hello";

/* curl -p -x: CONNECT to nginx, which refuses it. */
static const char connect_req[] =
	"CONNECT example.test:443 HTTP/1.1\r\n"
	"Host: example.test:443\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Proxy-Connection: Keep-Alive\r\n"
	"\r\n";

static const char connect_rsp[] =
	"HTTP/1.1 400 Bad Request\r\n"
	"Server: nginx/1.22.1\r\n"
	"Date: Tue, 24 Nov 2026 19:13:09 GMT\r\n"
	"Content-Type: text/html\r\n"
	"Content-Length: 157\r\n"
	"Connection: close\r\n"
	"\r\n"
	"<html>\r\n"
	"<head><title>400 Bad Request</title></head>\r\n"
	"<body>\r\n"
	"<center><h1>400 Bad Request</h1></center>\r\n"
	"<hr><center>nginx/1.22.1</center>\r\n"
	"</body>\r\n"
	"</html>\r\n";
/* clang-format on */

/* ---- harness ---------------------------------------------------------------------------- */

#define MAX_SEEN 256

static struct http_exchange seen[MAX_SEEN];
static size_t n_seen;
static struct http_stream *st;

static void collect(const struct http_exchange *ex, void *ctx)
{
	(void)ctx;
	ck_assert_uint_lt(n_seen, MAX_SEEN);
	seen[n_seen++] = *ex;
}

static void setup(void)
{
	n_seen = 0;
	memset(seen, 0, sizeof(seen));
	st = http_stream_new();
	ck_assert_ptr_nonnull(st);
}

static void teardown(void)
{
	http_stream_free(st);
	st = NULL;
}

/* Feeds len captured bytes of total moved. */
static int feed_part(enum http_dir dir, const void *p, size_t len, size_t total, uint64_t ts)
{
	return http_stream_feed(st, dir, p, len, total, ts, collect, NULL);
}

static int feed(enum http_dir dir, const void *p, size_t len, uint64_t ts)
{
	return feed_part(dir, p, len, len, ts);
}

#define FEED(dir, lit, ts) ck_assert_int_eq(feed(dir, lit, sizeof(lit) - 1, ts), 0)

static void close_stream(uint64_t ts)
{
	http_stream_close(st, ts, collect, NULL);
}

static struct http_stream_stats stats(void)
{
	struct http_stream_stats s;

	http_stream_get_stats(st, &s);
	return s;
}

static void assert_exchange(size_t i, const char *method, const char *path, uint16_t status,
			    uint64_t req_body, uint64_t rsp_body)
{
	ck_assert_uint_lt(i, n_seen);
	ck_assert_str_eq(seen[i].method, method);
	ck_assert_str_eq(seen[i].path, path);
	ck_assert_uint_eq(seen[i].status, status);
	ck_assert_uint_eq(seen[i].request_body_bytes, req_body);
	ck_assert_uint_eq(seen[i].response_body_bytes, rsp_body);
}

static void assert_times(size_t i, uint64_t start, uint64_t end)
{
	ck_assert_uint_eq(seen[i].request_start_ns, start);
	ck_assert_uint_eq(seen[i].response_end_ns, end);
}

/* Concatenates n copies of lit into buf (size cap); returns the length. */
static size_t repeat(char *buf, size_t cap, const char *lit, size_t len, size_t n)
{
	ck_assert_uint_le(len * n, cap);
	for (size_t i = 0; i < n; i++)
		memcpy(buf + i * len, lit, len);
	return len * n;
}

/* The body curl uploaded in the 100-continue capture: the first 3000 bytes of a text file. */
static size_t make_upload_body(char *buf, size_t cap)
{
	size_t n = 0;

	for (int i = 0; n < 3000; i++) {
		char line[80];
		int k = snprintf(
			line, sizeof(line),
			"line %05d of a text file used to produce a gzip chunked response\n", i);

		ck_assert_int_gt(k, 0);
		for (int j = 0; j < k && n < 3000 && n < cap; j++)
			buf[n++] = line[j];
	}
	return n;
}

/* ---- keep-alive ------------------------------------------------------------------------- */

static void feed_keepalive(enum http_dir req_dir)
{
	enum http_dir rsp_dir = req_dir == HTTP_DIR_IN ? HTTP_DIR_OUT : HTTP_DIR_IN;

	FEED(req_dir, ka_req_api, 100);
	FEED(rsp_dir, ka_rsp_api, 150);
	FEED(req_dir, ka_req_query, 200);
	FEED(rsp_dir, ka_rsp_query, 250);
	FEED(req_dir, ka_req_head, 300);
	FEED(rsp_dir, ka_rsp_head, 350);
	FEED(req_dir, ka_req_empty, 400);
	FEED(rsp_dir, ka_rsp_empty, 450);
	FEED(req_dir, ka_req_notmod, 500);
	FEED(rsp_dir, ka_rsp_notmod, 550);
}

static void assert_keepalive(enum http_role role)
{
	struct http_stream_stats s = stats();

	ck_assert_uint_eq(n_seen, 5);
	assert_exchange(0, "GET", "/api/users/42", 200, 0, 23);
	ck_assert_str_eq(seen[0].traceparent,
			 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	assert_exchange(1, "GET", "/index.html", 200, 0, 59);
	ck_assert_str_eq(seen[1].traceparent, "");
	assert_exchange(2, "HEAD", "/index.html", 200, 0, 0);
	assert_exchange(3, "GET", "/empty", 204, 0, 0);
	assert_exchange(4, "GET", "/index.html", 304, 0, 0);
	for (size_t i = 0; i < 5; i++) {
		ck_assert_int_eq(seen[i].role, role);
		ck_assert_str_eq(seen[i].host, "127.0.0.1");
		ck_assert_uint_eq(seen[i].host_port, 18090);
		assert_times(i, 100 + 100 * i, 150 + 100 * i);
	}
	ck_assert_int_eq(s.role, role);
	ck_assert_uint_eq(s.exchanges, 5);
	ck_assert_uint_eq(s.lost + s.parse_errors + s.desyncs + s.unanswered, 0);
	ck_assert(!s.not_http && !s.tunnel);
}

START_TEST(test_keepalive_server)
{
	feed_keepalive(HTTP_DIR_IN);
	assert_keepalive(HTTP_ROLE_SERVER);
	close_stream(600);
	ck_assert_uint_eq(n_seen, 5);
}
END_TEST

START_TEST(test_keepalive_client)
{
	feed_keepalive(HTTP_DIR_OUT);
	assert_keepalive(HTTP_ROLE_CLIENT);
}
END_TEST

static void assert_same_exchange(const struct http_exchange *a, const struct http_exchange *b)
{
	ck_assert_int_eq(a->role, b->role);
	ck_assert_str_eq(a->method, b->method);
	ck_assert_str_eq(a->path, b->path);
	ck_assert_str_eq(a->host, b->host);
	ck_assert_uint_eq(a->host_port, b->host_port);
	ck_assert_str_eq(a->traceparent, b->traceparent);
	ck_assert_uint_eq(a->status, b->status);
	ck_assert_uint_eq(a->request_body_bytes, b->request_body_bytes);
	ck_assert_uint_eq(a->response_body_bytes, b->response_body_bytes);
	ck_assert_uint_eq(a->request_start_ns, b->request_start_ns);
	ck_assert_uint_eq(a->response_end_ns, b->response_end_ns);
}

/* Every message split in two at every offset gives the same exchanges. */
START_TEST(test_keepalive_every_split)
{
	static const char *const msgs[] = { ka_req_api,	   ka_rsp_api,	 ka_req_query, ka_rsp_query,
					    ka_req_head,   ka_rsp_head,	 ka_req_empty, ka_rsp_empty,
					    ka_req_notmod, ka_rsp_notmod };
	struct http_exchange want[5];

	feed_keepalive(HTTP_DIR_IN);
	ck_assert_uint_eq(n_seen, 5);
	memcpy(want, seen, sizeof(want));
	for (size_t m = 0; m < 10; m++) {
		size_t len = strlen(msgs[m]);

		for (size_t cut = 1; cut < len; cut++) {
			teardown();
			setup();
			for (size_t k = 0; k < 10; k++) {
				enum http_dir dir = k % 2 ? HTTP_DIR_OUT : HTTP_DIR_IN;
				uint64_t ts = 100 + 50 * k;
				size_t kl = strlen(msgs[k]);

				if (k != m) {
					ck_assert_int_eq(feed(dir, msgs[k], kl, ts), 0);
					continue;
				}
				/* a request starts in its first part, a response ends in its last */
				ck_assert_int_eq(feed(dir, msgs[k], cut, ts - k % 2), 0);
				ck_assert_int_eq(feed(dir, msgs[k] + cut, kl - cut, ts + 1 - k % 2),
						 0);
			}
			ck_assert_uint_eq(n_seen, 5);
			for (size_t i = 0; i < 5; i++)
				assert_same_exchange(&seen[i], &want[i]);
			ck_assert_uint_eq(stats().desyncs + stats().parse_errors, 0);
		}
	}
}
END_TEST

START_TEST(test_request_byte_by_byte)
{
	size_t n = sizeof(ka_req_api) - 1, r = sizeof(ka_rsp_api) - 1;

	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(feed(HTTP_DIR_IN, ka_req_api + i, 1, 1000 + i), 0);
	ck_assert_uint_eq(n_seen, 0);
	for (size_t i = 0; i < r; i++)
		ck_assert_int_eq(feed(HTTP_DIR_OUT, ka_rsp_api + i, 1, 5000 + i), 0);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/api/users/42", 200, 0, 23);
	assert_times(0, 1000, 5000 + r - 1);
	ck_assert_str_eq(seen[0].traceparent,
			 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	ck_assert_str_eq(seen[0].host, "127.0.0.1");
}
END_TEST

/* ---- pipelining ------------------------------------------------------------------------- */

/*
 * Ten of curl's requests sent in one write (the capture: nginx read them in one recv and
 * answered in writes of 1, 2, 2, 1, 1, 1, 1, 1 responses).
 */
START_TEST(test_pipelining_server)
{
	static const size_t writes[] = { 177, 354, 100, 254, 1, 176, 177, 300, 231 };
	size_t rl = sizeof(ka_rsp_api) - 1, off = 0;
	char reqs[2048], rsps[2048];
	size_t nq = repeat(reqs, sizeof(reqs), ka_req_api, sizeof(ka_req_api) - 1, 10);
	size_t nr = repeat(rsps, sizeof(rsps), ka_rsp_api, rl, 10);

	ck_assert_int_eq(feed(HTTP_DIR_IN, reqs, nq, 10), 0);
	for (size_t w = 0; w < sizeof(writes) / sizeof(writes[0]); w++) {
		size_t before = n_seen;

		ck_assert_int_eq(feed(HTTP_DIR_OUT, rsps + off, writes[w], 100 + w), 0);
		off += writes[w];
		/* every response whose last byte was in this write is reported now */
		ck_assert_uint_eq(n_seen, off / rl);
		for (size_t i = before; i < n_seen; i++)
			assert_times(i, 10, 100 + w);
	}
	ck_assert_uint_eq(off, nr);
	ck_assert_uint_eq(n_seen, 10);
	for (size_t i = 0; i < 10; i++)
		assert_exchange(i, "GET", "/api/users/42", 200, 0, 23);
	ck_assert_uint_eq(stats().lost + stats().desyncs, 0);
}
END_TEST

/* The client side of pipelining: requests written in two writes, responses read in three. */
START_TEST(test_pipelining_client)
{
	char reqs[2048], rsps[4096];
	size_t nq = repeat(reqs, sizeof(reqs), ka_req_query, sizeof(ka_req_query) - 1, 10);
	size_t nr = repeat(rsps, sizeof(rsps), ka_rsp_query, sizeof(ka_rsp_query) - 1, 10);

	ck_assert_int_eq(feed(HTTP_DIR_OUT, reqs, 333, 1), 0);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, reqs + 333, nq - 333, 2), 0);
	ck_assert_int_eq(feed(HTTP_DIR_IN, rsps, 1000, 3), 0);
	ck_assert_uint_eq(n_seen, 3);
	ck_assert_int_eq(feed(HTTP_DIR_IN, rsps + 1000, 1000, 4), 0);
	ck_assert_uint_eq(n_seen, 6);
	ck_assert_int_eq(feed(HTTP_DIR_IN, rsps + 2000, nr - 2000, 5), 0);
	ck_assert_uint_eq(n_seen, 10);
	for (size_t i = 0; i < 10; i++) {
		assert_exchange(i, "GET", "/index.html", 200, 0, 59);
		ck_assert_int_eq(seen[i].role, HTTP_ROLE_CLIENT);
		/* requests 0-3 started in the first write, the rest in the second */
		ck_assert_uint_eq(seen[i].request_start_ns, (i < 4 ? 1 : 2));
	}
}
END_TEST

/* A HEAD response carries Content-Length but no body: the next response follows at once. */
START_TEST(test_head_then_get_in_one_write)
{
	char rsps[1024];
	size_t a = sizeof(ka_rsp_head) - 1, b = sizeof(ka_rsp_query) - 1;

	memcpy(rsps, ka_rsp_head, a);
	memcpy(rsps + a, ka_rsp_query, b);
	FEED(HTTP_DIR_IN, ka_req_head, 1);
	FEED(HTTP_DIR_IN, ka_req_query, 2);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, rsps, a + b, 3), 0);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(0, "HEAD", "/index.html", 200, 0, 0);
	assert_exchange(1, "GET", "/index.html", 200, 0, 59);
}
END_TEST

/* 70 requests in one read: the queue keeps 64, the 6 oldest are lost. */
START_TEST(test_pending_queue_limit)
{
	static char reqs[70 * 64], rsps[70 * 200];
	size_t nq = 0, nr = 0;

	for (int i = 0; i < 70; i++) {
		nq += (size_t)snprintf(reqs + nq, sizeof(reqs) - nq,
				       "GET /p/%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
		memcpy(rsps + nr, ka_rsp_api, sizeof(ka_rsp_api) - 1);
		nr += sizeof(ka_rsp_api) - 1;
	}
	ck_assert_int_eq(feed(HTTP_DIR_IN, reqs, nq, 1), 0);
	ck_assert_uint_eq(stats().lost, 6);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, rsps, nr, 2), 0);
	ck_assert_uint_eq(n_seen, 64);
	ck_assert_str_eq(seen[0].path, "/p/6");
	ck_assert_str_eq(seen[63].path, "/p/69");
	/* the six responses left over had no request */
	ck_assert_uint_eq(stats().lost, 12);
}
END_TEST

/* ---- bodies ----------------------------------------------------------------------------- */

START_TEST(test_chunked_upload_every_split)
{
	size_t len = sizeof(up_chunked_req) - 1;

	for (size_t cut = 1; cut < len; cut++) {
		teardown();
		setup();
		ck_assert_int_eq(feed(HTTP_DIR_IN, up_chunked_req, cut, 1), 0);
		ck_assert_int_eq(feed(HTTP_DIR_IN, up_chunked_req + cut, len - cut, 2), 0);
		FEED(HTTP_DIR_OUT, up_chunked_rsp, 3);
		ck_assert_uint_eq(n_seen, 1);
		assert_exchange(0, "POST", "/upload", 201, 300, 7);
		assert_times(0, 1, 3);
	}
}
END_TEST

START_TEST(test_chunked_upload_byte_by_byte)
{
	for (size_t i = 0; i < sizeof(up_chunked_req) - 1; i++)
		ck_assert_int_eq(feed(HTTP_DIR_IN, up_chunked_req + i, 1, 1 + i), 0);
	FEED(HTTP_DIR_OUT, up_chunked_rsp, 1000);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "POST", "/upload", 201, 300, 7);
}
END_TEST

/* nginx gzip output: Transfer-Encoding chunked, one 0x1b3-byte chunk; split everywhere. */
START_TEST(test_chunked_response_every_split)
{
	size_t len = sizeof(gz_rsp) - 1;

	for (size_t cut = 1; cut < len; cut++) {
		teardown();
		setup();
		FEED(HTTP_DIR_OUT, gz_req, 1);
		ck_assert_int_eq(feed(HTTP_DIR_IN, gz_rsp, cut, 2), 0);
		ck_assert_uint_eq(n_seen, 0);
		ck_assert_int_eq(feed(HTTP_DIR_IN, gz_rsp + cut, len - cut, 3), 0);
		ck_assert_uint_eq(n_seen, 1);
		assert_exchange(0, "GET", "/mid.txt", 200, 0, 0x1b3);
		assert_times(0, 1, 3);
		ck_assert_int_eq(seen[0].role, HTTP_ROLE_CLIENT);
	}
}
END_TEST

/* Three-way splits around the chunk lines: the size line, the CRLFs, the last chunk. */
START_TEST(test_chunked_response_three_parts)
{
	const char *data = strstr(gz_rsp, "\r\n\r\n1b3\r\n");
	size_t len = sizeof(gz_rsp) - 1, head = (size_t)(data - gz_rsp) + 4;

	for (size_t a = head - 2; a < head + 8; a++) {
		for (size_t b = len - 10; b < len; b++) {
			teardown();
			setup();
			FEED(HTTP_DIR_IN, gz_req, 1);
			ck_assert_int_eq(feed(HTTP_DIR_OUT, gz_rsp, a, 2), 0);
			ck_assert_int_eq(feed(HTTP_DIR_OUT, gz_rsp + a, b - a, 3), 0);
			ck_assert_int_eq(feed(HTTP_DIR_OUT, gz_rsp + b, len - b, 4), 0);
			ck_assert_uint_eq(n_seen, 1);
			assert_exchange(0, "GET", "/mid.txt", 200, 0, 0x1b3);
			assert_times(0, 1, 4);
		}
	}
}
END_TEST

/* curl -H 'Expect: 100-continue': nginx sends "100 Continue", then the body, then 201. */
START_TEST(test_100_continue)
{
	char body[3000];
	size_t n = make_upload_body(body, sizeof(body));

	FEED(HTTP_DIR_IN, cont_req_head, 1);
	FEED(HTTP_DIR_OUT, cont_interim, 2);
	ck_assert_uint_eq(n_seen, 0);
	ck_assert_int_eq(feed(HTTP_DIR_IN, body, 1500, 3), 0);
	ck_assert_int_eq(feed(HTTP_DIR_IN, body + 1500, n - 1500, 4), 0);
	FEED(HTTP_DIR_OUT, cont_rsp, 5);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "POST", "/upload", 201, 3000, 7);
	assert_times(0, 1, 5);
	ck_assert_uint_eq(stats().exchanges, 1);
}
END_TEST

/* Python's http.server, HTTP/1.0, no Content-Length: the body ends with the connection. */
START_TEST(test_close_delimited)
{
	FEED(HTTP_DIR_IN, close_req, 1);
	FEED(HTTP_DIR_OUT, close_rsp_head, 2);
	FEED(HTTP_DIR_OUT, close_rsp_body, 3);
	ck_assert_uint_eq(n_seen, 0);
	close_stream(9);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/stream", 200, 0, sizeof(close_rsp_body) - 1);
	assert_times(0, 1, 3);
	ck_assert_uint_eq(stats().unanswered, 0);
	/* a closed stream ignores what comes after */
	FEED(HTTP_DIR_IN, close_req, 10);
	close_stream(11);
	ck_assert_uint_eq(n_seen, 1);
}
END_TEST

START_TEST(test_close_reports_unanswered)
{
	FEED(HTTP_DIR_IN, ka_req_api, 1);
	FEED(HTTP_DIR_IN, ka_req_query, 2);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 3);
	close_stream(7);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(1, "GET", "/index.html", 0, 0, 0);
	assert_times(1, 2, 7);
	ck_assert_uint_eq(stats().unanswered, 1);
	ck_assert_uint_eq(stats().exchanges, 2);
}
END_TEST

/* A response cut short by the close is reported with the body bytes that came. */
START_TEST(test_close_mid_body)
{
	FEED(HTTP_DIR_IN, ka_req_query, 1);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, ka_rsp_query, sizeof(ka_rsp_query) - 1 - 9, 2), 0);
	close_stream(3);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/index.html", 200, 0, 50);
	assert_times(0, 1, 2);
}
END_TEST

/* ---- capture limits (len < total) ------------------------------------------------------- */

/* Head captured, body only counted: Content-Length still frames the message. */
START_TEST(test_uncaptured_content_length)
{
	char body[3000];

	make_upload_body(body, sizeof(body));
	FEED(HTTP_DIR_IN, cont_req_head, 1);
	/* the 3000-byte body arrives in reads of which only 64 bytes were captured */
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, body, 64, 2000, 2), 0);
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, body + 2000, 0, 1000, 3), 0);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, cont_rsp, 155, sizeof(cont_rsp) - 1, 4), 0);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "POST", "/upload", 201, 3000, 7);
	assert_times(0, 1, 4);
	/* the response to the next request: 250 of its 295 bytes captured */
	FEED(HTTP_DIR_IN, ka_req_query, 5);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_query, 250, sizeof(ka_rsp_query) - 1, 6),
			 0);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(1, "GET", "/index.html", 200, 0, 59);
	FEED(HTTP_DIR_IN, ka_req_api, 7);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 8);
	ck_assert_uint_eq(n_seen, 3);
	ck_assert_uint_eq(stats().desyncs + stats().lost, 0);
}
END_TEST

/*
 * A head longer than the capture: what was captured is kept, the message runs until the
 * next feed that starts a message; Content-Length (when captured) gives the body size.
 */
START_TEST(test_cut_head)
{
	size_t rl = sizeof(ka_rsp_query) - 1;

	FEED(HTTP_DIR_IN, ka_req_query, 1);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_query, 130, rl, 2), 0);
	ck_assert_uint_eq(n_seen, 0);
	FEED(HTTP_DIR_IN, ka_req_api, 3);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 4);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(0, "GET", "/index.html", 200, 0, 59);
	assert_times(0, 1, 2);
	assert_exchange(1, "GET", "/api/users/42", 200, 0, 23);
	ck_assert_uint_eq(stats().desyncs, 1);

	/* Content-Length not captured: the body is what later feeds bring */
	FEED(HTTP_DIR_IN, ka_req_query, 5);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_query, 100, 200, 6), 0);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, ka_rsp_query + 200, rl - 200, 7), 0);
	close_stream(8);
	ck_assert_uint_eq(n_seen, 3);
	assert_exchange(2, "GET", "/index.html", 200, 0, rl - 200);
	assert_times(2, 5, 7);
}
END_TEST

/* A request whose start line is longer than the capture keeps the captured path prefix. */
START_TEST(test_cut_request_line)
{
	char req[2048];
	int n = snprintf(req, sizeof(req), "GET /static/%01500d.js HTTP/1.1\r\nHost: x\r\n\r\n", 7);

	ck_assert_int_eq(feed_part(HTTP_DIR_IN, req, 100, (size_t)n, 1), 0);
	FEED(HTTP_DIR_OUT, ka_rsp_empty, 2);
	ck_assert_uint_eq(n_seen, 1);
	ck_assert_uint_eq(strlen(seen[0].path), 100 - 4);
	ck_assert_uint_eq(seen[0].status, 204);
	/* cut inside the version: the target is whole */
	teardown();
	setup();
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, ka_req_api, 24, sizeof(ka_req_api) - 1, 1), 0);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 2);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/api/users/42", 200, 0, 23);
}
END_TEST

/* Chunk framing that falls into the uncaptured part: the rest counts as body. */
START_TEST(test_chunk_header_uncaptured)
{
	size_t len = sizeof(gz_rsp) - 1;

	FEED(HTTP_DIR_OUT, gz_req, 1);
	/* the chunk data ends in the gap: its CRLF and the last chunk were not captured */
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, gz_rsp, 300, len, 2), 0);
	ck_assert_uint_eq(n_seen, 0);
	FEED(HTTP_DIR_OUT, ka_req_api, 3);
	FEED(HTTP_DIR_IN, ka_rsp_api, 4);
	ck_assert_uint_eq(n_seen, 2);
	/* 0x1b3 data bytes plus "\r\n0\r\n\r\n" seen only as a count */
	assert_exchange(0, "GET", "/mid.txt", 200, 0, 0x1b3 + 7);
	assert_times(0, 1, 2);
	assert_exchange(1, "GET", "/api/users/42", 200, 0, 23);
	ck_assert_uint_eq(stats().desyncs, 1);

	/* the size line itself uncaptured: the gap starts right after the head */
	teardown();
	setup();
	FEED(HTTP_DIR_OUT, gz_req, 1);
	const char *data = strstr(gz_rsp, "\r\n\r\n") + 4;
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, gz_rsp, (size_t)(data - gz_rsp) + 2, 600, 2), 0);
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, gz_rsp + 600, 20, len - 600, 3), 0);
	close_stream(4);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/mid.txt", 200, 0, len - (size_t)(data - gz_rsp) - 2);
	assert_times(0, 1, 3);
}
END_TEST

/* Whole requests in an uncaptured remainder: their responses are lost, never mislabeled. */
START_TEST(test_hidden_pipelined_requests)
{
	char reqs[2048], rsps[2048];
	size_t ql = sizeof(ka_req_api) - 1, rl = sizeof(ka_rsp_api) - 1;
	size_t nq = repeat(reqs, sizeof(reqs), ka_req_api, ql, 10);
	size_t nr = repeat(rsps, sizeof(rsps), ka_rsp_api, rl, 10);

	/* exactly three requests captured, seven hidden */
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, reqs, 3 * ql, nq, 1), 0);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, rsps, nr, 2), 0);
	ck_assert_uint_eq(n_seen, 3);
	ck_assert_uint_eq(stats().lost, 7);
	/* the placeholder absorbed them all and makes way for the next real request */
	FEED(HTTP_DIR_IN, ka_req_query, 3);
	FEED(HTTP_DIR_OUT, ka_rsp_query, 4);
	FEED(HTTP_DIR_IN, ka_req_head, 5);
	FEED(HTTP_DIR_OUT, ka_rsp_head, 6);
	ck_assert_uint_eq(n_seen, 5);
	assert_exchange(3, "GET", "/index.html", 200, 0, 59);
	assert_exchange(4, "HEAD", "/index.html", 200, 0, 0);
	ck_assert_uint_eq(stats().lost, 7);

	/* a cut head: the hidden requests after it read as its body */
	teardown();
	setup();
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, reqs, 3 * ql + 50, nq, 1), 0);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, rsps, nr, 2), 0);
	ck_assert_uint_eq(n_seen, 4);
	ck_assert_uint_eq(stats().lost, 6);
}
END_TEST

/* Hidden responses take the oldest pending request with them. */
START_TEST(test_hidden_response)
{
	char rsps[1024];
	size_t a = sizeof(ka_rsp_api) - 1;
	size_t n = repeat(rsps, sizeof(rsps), ka_rsp_api, a, 2);

	FEED(HTTP_DIR_OUT, ka_req_api, 1);
	FEED(HTTP_DIR_OUT, ka_req_query, 2);
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, rsps, a, n, 3), 0);
	ck_assert_uint_eq(n_seen, 1);
	ck_assert_uint_eq(stats().lost, 1);
	FEED(HTTP_DIR_OUT, ka_req_head, 4);
	FEED(HTTP_DIR_IN, ka_rsp_head, 5);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(1, "HEAD", "/index.html", 200, 0, 0);
}
END_TEST

/*
 * A pipelining client reads three responses at once, cut inside the second
 * one's head: the third went by unseen. At close, what still waits is lost,
 * not unanswered: nobody can tell whether it was answered.
 */
START_TEST(test_responses_unseen_at_close)
{
	char reqs[1024], rsps[1024];
	size_t q = sizeof(ka_req_api) - 1, a = sizeof(ka_rsp_api) - 1;
	size_t nq = repeat(reqs, sizeof(reqs), ka_req_api, q, 3);
	size_t n = repeat(rsps, sizeof(rsps), ka_rsp_api, a, 3);

	ck_assert_int_eq(feed(HTTP_DIR_OUT, reqs, nq, 1), 0);
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, rsps, a + 20, n, 2), 0);
	close_stream(3);
	ck_assert_uint_eq(stats().unanswered, 0);
	ck_assert_uint_eq(n_seen + stats().lost, 3);
	ck_assert_uint_ge(stats().lost, 1);
	for (size_t i = 0; i < n_seen; i++)
		ck_assert_uint_ne(seen[i].status, 0);

	/* The same cut, then the last response in a read of its own: in step again, nothing lost. */
	teardown();
	setup();
	ck_assert_int_eq(feed(HTTP_DIR_OUT, reqs, nq, 1), 0);
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, rsps, a + 20, 2 * a, 2), 0);
	ck_assert_int_eq(feed(HTTP_DIR_IN, rsps, a, 3), 0);
	close_stream(4);
	ck_assert_uint_eq(stats().lost, 0);
	ck_assert_uint_eq(stats().unanswered, 0);
	ck_assert_uint_eq(n_seen, 3);
}
END_TEST

/* A response body moved by a syscall that is not traced (sendfile). */
START_TEST(test_unseen_body)
{
	size_t head = (size_t)(strstr(ka_rsp_query, "\r\n\r\n") - ka_rsp_query) + 4;

	FEED(HTTP_DIR_IN, ka_req_query, 1);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, ka_rsp_query, head, 2), 0);
	FEED(HTTP_DIR_IN, ka_req_api, 3);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 4);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(0, "GET", "/index.html", 200, 0, 0);
	assert_times(0, 1, 2);
	assert_exchange(1, "GET", "/api/users/42", 200, 0, 23);
}
END_TEST

static void one_request(const char *req)
{
	teardown();
	setup();
	ck_assert_int_eq(feed(HTTP_DIR_IN, req, strlen(req), 1), 0);
	FEED(HTTP_DIR_OUT, ka_rsp_empty, 2);
	ck_assert_uint_eq(n_seen, 1);
}

/* Response heads cut by the capture, by what the captured part tells. */
START_TEST(test_cut_response_heads)
{
	size_t n;

	/* too little to know it is a status line: hidden, the request is lost */
	FEED(HTTP_DIR_IN, ka_req_api, 1);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_api, 5, sizeof(ka_rsp_api) - 1, 2), 0);
	ck_assert_uint_eq(stats().lost, 1);
	/* a status line without its code: the same */
	FEED(HTTP_DIR_IN, ka_req_api, 3);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_api, 10, sizeof(ka_rsp_api) - 1, 4), 0);
	ck_assert_uint_eq(stats().lost, 2);
	ck_assert_uint_eq(n_seen, 0);
	/* 204, 304 and answers to HEAD have no body: complete at once */
	FEED(HTTP_DIR_IN, ka_req_empty, 5);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_empty, 30, sizeof(ka_rsp_empty) - 1, 6), 0);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/empty", 204, 0, 0);
	assert_times(0, 5, 6);
	FEED(HTTP_DIR_IN, ka_req_head, 7);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ka_rsp_head, 30, sizeof(ka_rsp_head) - 1, 8), 0);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(1, "HEAD", "/index.html", 200, 0, 0);
	/* an interim response cut: the final one is still awaited */
	FEED(HTTP_DIR_IN, cont_req_head, 9);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, cont_interim, 14, sizeof(cont_interim) - 1, 10),
			 0);
	ck_assert_uint_eq(feed_part(HTTP_DIR_IN, "abc", 3, 3000, 11), 0);
	FEED(HTTP_DIR_OUT, cont_rsp, 12);
	ck_assert_uint_eq(n_seen, 3);
	assert_exchange(2, "POST", "/upload", 201, 3000, 7);
	/* a cut 101 still opens the tunnel */
	FEED(HTTP_DIR_IN, ws_req, 13);
	n = sizeof(ws_rsp) - 1;
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, ws_rsp, 40, n, 14), 0);
	ck_assert_uint_eq(n_seen, 4);
	ck_assert_uint_eq(seen[3].status, 101);
	ck_assert(stats().tunnel);
}
END_TEST

/* Hidden requests twice with nothing real between them: one placeholder, two to absorb. */
START_TEST(test_hidden_requests_coalesce)
{
	size_t ql = sizeof(ka_req_api) - 1;

	ck_assert_int_eq(feed_part(HTTP_DIR_IN, ka_req_api, ql, 2 * ql, 1), 0);
	/* a read of one byte that may start a request resyncs... */
	FEED(HTTP_DIR_IN, "G", 2);
	/* ...and the next one was not captured at all */
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, "", 0, 50, 3), 0);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 4);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 5);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 6);
	FEED(HTTP_DIR_IN, ka_req_head, 7);
	FEED(HTTP_DIR_OUT, ka_rsp_head, 8);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(0, "GET", "/api/users/42", 200, 0, 23);
	assert_exchange(1, "HEAD", "/index.html", 200, 0, 0);
	ck_assert_uint_eq(stats().lost, 2);
	close_stream(9);
	ck_assert_uint_eq(stats().unanswered, 0);
}
END_TEST

START_TEST(test_close_delimited_uncaptured)
{
	FEED(HTTP_DIR_IN, close_req, 1);
	ck_assert_int_eq(
		feed_part(HTTP_DIR_OUT, close_rsp_head, sizeof(close_rsp_head) - 1, 5000, 2), 0);
	ck_assert_int_eq(feed_part(HTTP_DIR_OUT, close_rsp_body, 4, 10000, 3), 0);
	close_stream(4);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/stream", 200, 0, 5000 - (sizeof(close_rsp_head) - 1) + 10000);
	assert_times(0, 1, 3);
}
END_TEST

/* Broken chunk framing in a body: the message stays open until the next one starts. */
START_TEST(test_chunked_errors)
{
	static const char *const bad[] = {
		"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1234567890abcdef0\r\n",
		"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\rx",
		"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
		"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3:x\r\n",
	};

	/* chunk data before the error, then "more body" */
	static const uint64_t body[] = { 9, 9, 9, 3 + 9, 9 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		teardown();
		setup();
		ck_assert_int_eq(feed(HTTP_DIR_IN, bad[i], strlen(bad[i]), 1), 0);
		ck_assert_uint_eq(stats().parse_errors, 1);
		/* the rest of that body, then a clean request */
		FEED(HTTP_DIR_IN, "more body", 2);
		FEED(HTTP_DIR_OUT, up_chunked_rsp, 3);
		FEED(HTTP_DIR_IN, ka_req_api, 4);
		FEED(HTTP_DIR_OUT, ka_rsp_api, 5);
		ck_assert_uint_eq(n_seen, 2);
		assert_exchange(0, "POST", "/c", 201, body[i], 7);
		assert_exchange(1, "GET", "/api/users/42", 200, 0, 23);
	}
	/* in a response: it ends at the next status line */
	teardown();
	setup();
	FEED(HTTP_DIR_OUT, gz_req, 1);
	FEED(HTTP_DIR_IN, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nq",
	     2);
	FEED(HTTP_DIR_IN, "tail", 3);
	FEED(HTTP_DIR_OUT, ka_req_api, 4);
	FEED(HTTP_DIR_IN, ka_rsp_api, 5);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(0, "GET", "/mid.txt", 200, 0, 5 + 4);
	assert_times(0, 1, 3);
}
END_TEST

/* A chunked response whose last chunk never came, before the next status line. */
START_TEST(test_chunked_response_unfinished)
{
	FEED(HTTP_DIR_IN, gz_req, 1);
	FEED(HTTP_DIR_IN, ka_req_api, 2);
	FEED(HTTP_DIR_OUT, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
	     3);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 4);
	ck_assert_uint_eq(n_seen, 2);
	assert_exchange(0, "GET", "/mid.txt", 200, 0, 5);
	assert_times(0, 1, 3);
	ck_assert_uint_eq(stats().desyncs, 1);
}
END_TEST

START_TEST(test_header_values)
{
	one_request("POST /te HTTP/1.1\r\nHost:  spaced.example  \r\n"
		    "Transfer-Encoding: gzip, chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n");
	ck_assert_str_eq(seen[0].host, "spaced.example");
	ck_assert_uint_eq(seen[0].request_body_bytes, 4);
	/* Transfer-Encoding wins over Content-Length */
	one_request("POST /te HTTP/1.1\r\nContent-Length: 100\r\n"
		    "transfer-encoding: CHUNKED\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
	ck_assert_uint_eq(seen[0].request_body_bytes, 2);
	/* equal repeated lengths are fine; the first valid traceparent is kept */
	one_request("PUT /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
		    "traceparent: 00-00000000000000000000000000000000-b7ad6b7169203331-01\r\n"
		    "TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
		    "traceparent: 00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
		    "\r\nok");
	ck_assert_str_eq(seen[0].method, "PUT");
	ck_assert_uint_eq(seen[0].request_body_bytes, 2);
	ck_assert_str_eq(seen[0].traceparent,
			 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	/* a response without length after a request: close-delimited, even with a coding */
	teardown();
	setup();
	FEED(HTTP_DIR_IN, ka_req_api, 1);
	FEED(HTTP_DIR_OUT, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", 2);
	close_stream(3);
	assert_exchange(0, "GET", "/api/users/42", 200, 0, 3);
}
END_TEST

/* ---- request targets and methods -------------------------------------------------------- */

START_TEST(test_unknown_method)
{
	FEED(HTTP_DIR_IN, purge_req, 1);
	FEED(HTTP_DIR_OUT, purge_rsp, 2);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "_OTHER", "/api/cache/7", 200, 0, 23);
}
END_TEST

/* curl -x: a proxy gets the absolute form; the authority wins over Host. */
START_TEST(test_absolute_form)
{
	FEED(HTTP_DIR_IN, proxy_req, 1);
	FEED(HTTP_DIR_OUT, proxy_rsp, 2);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/api/users/7", 200, 0, 23);
	ck_assert_str_eq(seen[0].host, "example.test");
	ck_assert_uint_eq(seen[0].host_port, 8080);
}
END_TEST

START_TEST(test_targets)
{
	one_request("GET /a/b?x=1&y=2#frag HTTP/1.1\r\nHost: Example.COM\r\n\r\n");
	ck_assert_str_eq(seen[0].path, "/a/b");
	ck_assert_str_eq(seen[0].host, "example.com");
	ck_assert_uint_eq(seen[0].host_port, 0);
	one_request("GET /?q HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
	ck_assert_str_eq(seen[0].path, "/");
	ck_assert_str_eq(seen[0].host, "::1");
	ck_assert_uint_eq(seen[0].host_port, 8443);
	one_request("OPTIONS * HTTP/1.1\r\nHost: h:99999\r\n\r\n");
	ck_assert_str_eq(seen[0].method, "OPTIONS");
	ck_assert_str_eq(seen[0].path, "*");
	ck_assert_uint_eq(seen[0].host_port, 0);
	one_request("GET https://user:pw@Api.Test?x HTTP/1.1\r\nHost: other\r\n\r\n");
	ck_assert_str_eq(seen[0].path, "/");
	ck_assert_str_eq(seen[0].host, "api.test");
	one_request("GET /x HTTP/1.0\n\n");
	ck_assert_str_eq(seen[0].path, "/x");
	ck_assert_str_eq(seen[0].host, "");
	/* long paths are truncated, never overflow */
	char req[1200];
	snprintf(req, sizeof(req), "DELETE /%0900d HTTP/1.1\r\ntraceparent: nope\r\n\r\n", 1);
	one_request(req);
	ck_assert_str_eq(seen[0].method, "DELETE");
	ck_assert_uint_eq(strlen(seen[0].path), HTTP_PATH_MAX - 1);
	ck_assert_str_eq(seen[0].traceparent, "");
}
END_TEST

/* curl -p through nginx: CONNECT with an authority target, refused with a 400. */
START_TEST(test_connect_refused)
{
	FEED(HTTP_DIR_IN, connect_req, 1);
	FEED(HTTP_DIR_OUT, connect_rsp, 2);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "CONNECT", "", 400, 0, 157);
	ck_assert_str_eq(seen[0].host, "example.test");
	ck_assert_uint_eq(seen[0].host_port, 443);
	ck_assert(!stats().tunnel);
}
END_TEST

START_TEST(test_connect_tunnel)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	FEED(HTTP_DIR_OUT, connect_req, 1);
	FEED(HTTP_DIR_IN, ok, 2);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "CONNECT", "", 200, 0, 0);
	ck_assert(stats().tunnel);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, tls_client_hello, sizeof(tls_client_hello) - 1, 3), 0);
	ck_assert_int_eq(feed(HTTP_DIR_IN, ssh_banner, sizeof(ssh_banner) - 1, 4), 0);
	close_stream(5);
	ck_assert_uint_eq(n_seen, 1);
}
END_TEST

/* A WebSocket upgrade: the 101 is the exchange, the frames after it are not HTTP. */
START_TEST(test_upgrade)
{
	FEED(HTTP_DIR_OUT, ws_req, 1);
	FEED(HTTP_DIR_IN, ws_rsp, 2);
	ck_assert_uint_eq(n_seen, 1);
	assert_exchange(0, "GET", "/chat", 101, 0, 0);
	ck_assert(stats().tunnel);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11, 3),
			 0);
	ck_assert_uint_eq(stats().parse_errors, 0);
}
END_TEST

static bool req_start(const char *s)
{
	return http_looks_like_request((const uint8_t *)s, strlen(s));
}

static bool rsp_start(const char *s)
{
	return http_looks_like_response((const uint8_t *)s, strlen(s));
}

/* ---- not HTTP --------------------------------------------------------------------------- */

static void assert_not_http(enum http_dir dir, const char *p, size_t n)
{
	teardown();
	setup();
	ck_assert_int_eq(feed(dir, p, n, 1), -EPROTO);
	ck_assert_int_eq(feed(dir, ka_req_api, sizeof(ka_req_api) - 1, 2), -EPROTO);
	ck_assert(stats().not_http);
	ck_assert(!http_looks_like_request((const uint8_t *)p, n));
	ck_assert(!http_looks_like_response((const uint8_t *)p, n));
}

START_TEST(test_not_http)
{
	assert_not_http(HTTP_DIR_IN, tls_client_hello, sizeof(tls_client_hello) - 1);
	assert_not_http(HTTP_DIR_OUT, tls_client_hello, sizeof(tls_client_hello) - 1);
	assert_not_http(HTTP_DIR_IN, mysql_greeting, sizeof(mysql_greeting) - 1);
	assert_not_http(HTTP_DIR_OUT, mysql_greeting, sizeof(mysql_greeting) - 1);
	assert_not_http(HTTP_DIR_OUT, ssh_banner, sizeof(ssh_banner) - 1);
	/* the HTTP/2 preface is not HTTP/1.x: the kernel's classifier refuses it too */
	teardown();
	setup();
	ck_assert(!req_start("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
	ck_assert_int_eq(feed(HTTP_DIR_IN, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24, 1), -EPROTO);
	/* a TLS record split so that the first feed holds one byte */
	teardown();
	setup();
	ck_assert_int_eq(feed(HTTP_DIR_IN, tls_client_hello, 1, 1), -EPROTO);
	/* the second direction's first bytes count too */
	teardown();
	setup();
	FEED(HTTP_DIR_IN, ka_req_api, 1);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, mysql_greeting, sizeof(mysql_greeting) - 1, 2),
			 -EPROTO);
	/* requests both ways */
	teardown();
	setup();
	FEED(HTTP_DIR_IN, ka_req_api, 1);
	ck_assert_int_eq(feed(HTTP_DIR_OUT, ka_req_api, sizeof(ka_req_api) - 1, 2), -EPROTO);
	close_stream(3);
	ck_assert_uint_eq(n_seen, 0);
}
END_TEST

/* Garbage where the next message must start: counted, then fatal if it goes on. */
START_TEST(test_garbage_mid_stream)
{
	FEED(HTTP_DIR_IN, ka_req_api, 1);
	FEED(HTTP_DIR_OUT, ka_rsp_api, 2);
	ck_assert_int_eq(feed(HTTP_DIR_IN, ssh_banner, sizeof(ssh_banner) - 1, 3), 0);
	ck_assert_uint_eq(stats().parse_errors, 1);
	/* resync at a clean request */
	FEED(HTTP_DIR_IN, ka_req_query, 4);
	FEED(HTTP_DIR_OUT, ka_rsp_query, 5);
	ck_assert_uint_eq(n_seen, 2);
	ck_assert_int_eq(feed(HTTP_DIR_IN, mysql_greeting, sizeof(mysql_greeting) - 1, 6), 0);
	ck_assert_int_eq(feed(HTTP_DIR_IN, tls_client_hello, sizeof(tls_client_hello) - 1, 7),
			 -EPROTO);
	ck_assert(stats().not_http);
}
END_TEST

START_TEST(test_malformed_heads)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", /* obs-fold */
		"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", /* bad length */
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", /* unframed body */
		"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\001b\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		teardown();
		setup();
		FEED(HTTP_DIR_IN, ka_req_api, 1);
		FEED(HTTP_DIR_OUT, ka_rsp_api, 2);
		ck_assert_int_eq(feed(HTTP_DIR_IN, bad[i], strlen(bad[i]), 3), 0);
		ck_assert_uint_eq(stats().parse_errors, 1);
		/* the server's 400 has no request to pair with */
		FEED(HTTP_DIR_OUT, connect_rsp, 4);
		ck_assert_uint_eq(n_seen, 1);
		ck_assert_uint_eq(stats().lost, 1);
	}
	/* the same heads as a first message: not HTTP at all? no: the start line was fine */
	teardown();
	setup();
	ck_assert_int_eq(feed(HTTP_DIR_IN, bad[0], strlen(bad[0]), 1), 0);
	ck_assert_uint_eq(stats().parse_errors, 1);
	/* a broken start line first is */
	teardown();
	setup();
	ck_assert_int_eq(feed(HTTP_DIR_IN, "GET / HTTP/3.0\r\n\r\n", 18, 1), -EPROTO);
}
END_TEST

/* A 100 KiB header line: an error once past the line limit, nothing grows. */
START_TEST(test_huge_header_line)
{
	static char chunk[4096];
	struct mallinfo2 before, after;
	int err = 0;

	memset(chunk, 'a', sizeof(chunk));
	FEED(HTTP_DIR_IN, "GET / HTTP/1.1\r\nCookie: ", 1);
	before = mallinfo2();
	for (int i = 0; i < 25 && !err; i++)
		err = feed(HTTP_DIR_IN, chunk, sizeof(chunk), 2 + (uint64_t)i);
	after = mallinfo2();
	ck_assert_int_eq(err, -EPROTO); /* the line went on after the error */
	ck_assert_uint_eq(stats().parse_errors, 1);
	ck_assert_uint_eq(after.uordblks, before.uordblks);
	ck_assert_uint_eq(n_seen, 0);
}
END_TEST

START_TEST(test_long_lines_within_limits)
{
	static char req[20000];
	size_t n = 0;

	/* an 8 KiB cookie before Host and traceparent; a 4 KiB URL */
	n += (size_t)snprintf(req, sizeof(req), "GET /%04000d?%04000d HTTP/1.1\r\nCookie: ", 1, 2);
	memset(req + n, 'c', 8000);
	n += 8000;
	n += (size_t)snprintf(req + n, sizeof(req) - n,
			      "\r\nHost: svc:81\r\ntraceparent: "
			      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n");
	ck_assert_int_eq(feed(HTTP_DIR_IN, req, n, 1), 0);
	FEED(HTTP_DIR_OUT, ka_rsp_empty, 2);
	ck_assert_uint_eq(n_seen, 1);
	ck_assert_str_eq(seen[0].host, "svc");
	ck_assert_uint_eq(seen[0].host_port, 81);
	ck_assert_str_eq(seen[0].traceparent,
			 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	ck_assert_uint_eq(strlen(seen[0].path), HTTP_PATH_MAX - 1);
}
END_TEST

/* ---- first bytes ------------------------------------------------------------------------ */

START_TEST(test_looks_like)
{
	ck_assert(req_start("GET /"));
	ck_assert(req_start("OPTIONS * HTTP/1.1"));
	ck_assert(req_start("PROPFIND /dav"));
	ck_assert(req_start("MKWORKSPACE http://h/"));
	ck_assert(req_start("GET HTTP://x/"));
	ck_assert(req_start("CONNECT db:443 HTTP/1.1"));
	ck_assert(req_start(purge_req));
	ck_assert(!req_start("GET"));
	ck_assert(!req_start("GET "));
	ck_assert(!req_start("get /"));
	ck_assert(!req_start("GET  /"));
	ck_assert(!req_start("GET x"));
	ck_assert(!req_start("VERSION-CONTROL /"));
	ck_assert(!req_start("HTTP/1.1 200 OK"));
	ck_assert(!req_start(ssh_banner));
	ck_assert(!http_looks_like_request(NULL, 5));
	ck_assert(rsp_start("HTTP/1.1 200 OK"));
	ck_assert(rsp_start("HTTP/1.0 "));
	ck_assert(!rsp_start("HTTP/1.1"));
	ck_assert(!rsp_start("HTTP/2 200"));
	ck_assert(!rsp_start("http/1.1 200"));
	ck_assert(!rsp_start("GET / HTTP/1.1"));
	/* at most 16 bytes decide */
	ck_assert(http_looks_like_request((const uint8_t *)proxy_req, 16));
	ck_assert(http_looks_like_response((const uint8_t *)ka_rsp_api, 9));
}
END_TEST

/* ---- routes ----------------------------------------------------------------------------- */

static const char *route(const char *path, const char *const *routes, size_t n)
{
	static char out[HTTP_PATH_MAX];

	http_route(path, routes, n, out, sizeof(out));
	return out;
}

START_TEST(test_routes_templates)
{
	static const char *const r[] = { "/api/v1/users/{id}", "/api/v1/users/{id}/orders/{order}",
					 "/static/{file}", "/health" };

	ck_assert_str_eq(route("/api/v1/users/ada", r, 4), "/api/v1/users/{id}");
	ck_assert_str_eq(route("/api/v1/users/42/orders/x-1", r, 4),
			 "/api/v1/users/{id}/orders/{order}");
	ck_assert_str_eq(route("/health", r, 4), "/health");
	ck_assert_str_eq(route("/health?verbose=1", r, 4), "/health");
	ck_assert_str_eq(route("/static/app.js", r, 4), "/static/{file}");
	/* {name} needs one non-empty segment; the segment count must match */
	ck_assert_str_eq(route("/static/", r, 4), "/static/");
	ck_assert_str_eq(route("/static/a/b", r, 4), "/static/a/b");
	ck_assert_str_eq(route("/api/v1/users", r, 4), "/api/v1/users");
	ck_assert_str_eq(route("/API/v1/users/ada", r, 4), "/API/v1/users/ada");
	/* first match wins */
	static const char *const r2[] = { "/a/{x}", "/a/b" };
	ck_assert_str_eq(route("/a/b", r2, 2), "/a/{x}");
	ck_assert_str_eq(route("/a/b", r2 + 1, 1), "/a/b");
}
END_TEST

START_TEST(test_routes_ids)
{
	ck_assert_str_eq(route("/api/users/42", NULL, 0), "/api/users/{id}");
	ck_assert_str_eq(route("/orders/123e4567-E89B-12d3-a456-426614174000/items/7", NULL, 0),
			 "/orders/{id}/items/{id}");
	ck_assert_str_eq(route("/blobs/0123456789abcdef", NULL, 0), "/blobs/{id}");
	ck_assert_str_eq(route("/blobs/0123456789ABCDEF0", NULL, 0), "/blobs/{id}");
	ck_assert_str_eq(route("/blobs/0123456789abcde", NULL, 0), "/blobs/{id}");
	ck_assert_str_eq(route("/v1/cafe/beef", NULL, 0), "/v1/cafe/beef");
	ck_assert_str_eq(route("/v2/item-42/42x", NULL, 0), "/v2/{id}/{id}");
	ck_assert_str_eq(route("/123e4567-e89b-12d3-a456-42661417400", NULL, 0), "/{id}");
	ck_assert_str_eq(route("/123e4567xe89b-12d3-a456-426614174000", NULL, 0), "/{id}");
	ck_assert_str_eq(route("/a/1/b/22/", NULL, 0), "/a/{id}/b/{id}/");
	ck_assert_str_eq(route("/search?q=42&page=2", NULL, 0), "/search");
	ck_assert_str_eq(route("/items/9?x#y", NULL, 0), "/items/{id}");
	ck_assert_str_eq(route("", NULL, 0), "/");
	ck_assert_str_eq(route(NULL, NULL, 0), "/");
	ck_assert_str_eq(route("?x=1", NULL, 0), "/");
	ck_assert_str_eq(route("/", NULL, 0), "/");
	ck_assert_str_eq(route("*", NULL, 0), "*");
	ck_assert_str_eq(route("//", NULL, 0), "//");
}
END_TEST

/* Real-world paths: what identifies someone or something goes, what names a route stays. */
START_TEST(test_routes_table)
{
	static const struct {
		const char *path, *route;
	} cases[] = {
		/* secrets and tokens in the path */
		{ "/reset/SECRET789abc", "/reset/{id}" },
		{ "/password/reset/9f86d081884c7d659a2feaa0c55ad015", "/password/reset/{id}" },
		{ "/confirm/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fw",
		  "/confirm/{id}" },
		{ "/invite/AbCdEfGhIjKlMnOp", "/invite/{id}" },
		{ "/s/xqzkvbtw", "/s/{id}" },
		{ "/download/a1b2c3", "/download/{id}" },
		{ "/share/Zm9vYmFyYmF6cXV4", "/share/{id}" },
		{ "/unsubscribe/k7Gh2LpQ", "/unsubscribe/{id}" },
		{ "/magic/deadbeefcafebabe", "/magic/{id}" },
		{ "/t/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "/t/{id}" },
		{ "/commit/3f2a9c1", "/commit/{id}" },
		/* people */
		{ "/users/alice@example.com/settings", "/users/{id}/settings" },
		{ "/users/alice%40example.com", "/users/{id}" },
		{ "/u/12345/avatar.png", "/u/{id}/avatar.png" },
		/* dates and numbers */
		{ "/reports/2024-01-15", "/reports/{id}" },
		{ "/archive/2023/12/31/", "/archive/{id}/{id}/{id}/" },
		{ "/orders/ord_20240115_0042", "/orders/{id}" },
		{ "/blog/my-first-post-42", "/blog/{id}" },
		/* routes that stay */
		{ "/v2/users", "/v2/users" },
		{ "/api/v1beta1/pods", "/api/v1beta1/pods" },
		{ "/api/V3/items", "/api/V3/items" },
		{ "/blog/how-to-configure-nginx", "/blog/how-to-configure-nginx" },
		{ "/auth/oauth2/callback", "/auth/oauth2/callback" },
		{ "/settings/2fa", "/settings/2fa" },
		{ "/static/css/main.css", "/static/css/main.css" },
		{ "/static/js/app.min.js", "/static/js/app.min.js" },
		{ "/.well-known/openid-configuration", "/.well-known/openid-configuration" },
		{ "/api/getUserById", "/api/getUserById" },
		{ "/favicon.ico", "/favicon.ico" },
		{ "/health/readiness", "/health/readiness" },
		{ "/internationalization", "/internationalization" },
		{ "/docs/utf8-encoding", "/docs/utf8-encoding" },
		{ "/products/strawberry-jam", "/products/strawberry-jam" },
		{ "/index.html", "/index.html" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(strcmp(route(cases[i].path, NULL, 0), cases[i].route) == 0,
			      "%s: got %s, want %s", cases[i].path, route(cases[i].path, NULL, 0),
			      cases[i].route);
	/* A configured template still wins over the heuristics. */
	static const char *const r[] = { "/reset/{token}" };
	ck_assert_str_eq(route("/reset/SECRET789abc", r, 1), "/reset/{token}");
}
END_TEST

START_TEST(test_route_limit)
{
	struct http_route_limit *l = http_route_limit_new(3, 60 * 1000000000ull);
	char r[HTTP_PATH_MAX];
	uint64_t t = 1000;

	ck_assert_ptr_nonnull(l);
	for (int i = 0; i < 3; i++) {
		snprintf(r, sizeof(r), "/page/%c", 'a' + i);
		ck_assert(!http_route_limit_apply(l, "web", r, sizeof(r), t));
		ck_assert_int_eq(r[6], 'a' + i);
	}
	/* A fourth route of the same service folds; known ones and other services do not. */
	snprintf(r, sizeof(r), "/page/d");
	ck_assert(http_route_limit_apply(l, "web", r, sizeof(r), t));
	ck_assert_str_eq(r, HTTP_ROUTE_OVERFLOW);
	snprintf(r, sizeof(r), "/page/b");
	ck_assert(!http_route_limit_apply(l, "web", r, sizeof(r), t));
	ck_assert_str_eq(r, "/page/b");
	snprintf(r, sizeof(r), "/page/d");
	ck_assert(!http_route_limit_apply(l, "api", r, sizeof(r), t));
	ck_assert_uint_eq(http_route_limit_folded(l), 1);
	/* 10 000 random paths later, still one folded template. */
	for (int i = 0; i < 10000; i++) {
		snprintf(r, sizeof(r), "/x%d", i);
		http_route_limit_apply(l, "web", r, sizeof(r), t + (uint64_t)i);
		ck_assert_str_eq(r, HTTP_ROUTE_OVERFLOW);
	}
	/* Idle for a minute, the least recently seen (/page/a; b was seen later) makes room. */
	t += 60 * 1000000000ull + 20000;
	snprintf(r, sizeof(r), "/page/c");
	ck_assert(!http_route_limit_apply(l, "web", r, sizeof(r), t));
	snprintf(r, sizeof(r), "/page/e");
	ck_assert(!http_route_limit_apply(l, "web", r, sizeof(r), t));
	ck_assert_str_eq(r, "/page/e");
	snprintf(r, sizeof(r), "/page/f");
	ck_assert(!http_route_limit_apply(l, "web", r, sizeof(r), t));
	snprintf(r, sizeof(r), "/page/g");
	ck_assert(http_route_limit_apply(l, "web", r, sizeof(r), t));
	/* What /page/f displaced was /page/b; c, e, f are known. */
	snprintf(r, sizeof(r), "/page/c");
	ck_assert(!http_route_limit_apply(l, "web", r, sizeof(r), t));
	/* A small buffer still gets a terminated, truncated template. */
	char small[4] = "/zz";
	ck_assert(http_route_limit_apply(l, "web", small, sizeof(small), t));
	ck_assert_str_eq(small, "/{o");
	http_route_limit_free(l);

	/* A limit of 0 folds everything. */
	l = http_route_limit_new(0, 0);
	snprintf(r, sizeof(r), "/");
	ck_assert(http_route_limit_apply(l, "web", r, sizeof(r), t));
	http_route_limit_free(l);
	http_route_limit_free(NULL);
}
END_TEST

START_TEST(test_routes_small_buffer)
{
	static const char *const r[] = { "/api/v1/users/{id}" };
	char out[8];

	http_route("/api/v1/users/1", r, 1, out, sizeof(out));
	ck_assert_str_eq(out, "/api/v1");
	http_route("/a/123456", NULL, 0, out, sizeof(out));
	ck_assert_str_eq(out, "/a/{id}");
	http_route("/abcdefghij", NULL, 0, out, 1);
	ck_assert_str_eq(out, "");
	out[0] = 'x';
	http_route("/a", NULL, 0, out, 0);
	ck_assert_int_eq(out[0], 'x');
}
END_TEST

/* ---- traceparent ------------------------------------------------------------------------ */

/* The decoder validates with core/traceparent.c; these check what it keeps. */
START_TEST(test_traceparent)
{
	char long_state[700], want[HTTP_TRACESTATE_MAX + 1];
	size_t used = 0;

	/* a later version keeps its 00-compatible prefix */
	one_request("GET /a HTTP/1.1\r\n"
		    "traceparent: cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future\r\n"
		    "tracestate: congo=t61rcWkgMzE\r\n\r\n");
	ck_assert_str_eq(seen[0].traceparent,
			 "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	ck_assert_str_eq(seen[0].tracestate, "congo=t61rcWkgMzE");
	/* version 00 with more, or ff: none kept, and no tracestate without it */
	one_request("GET /a HTTP/1.1\r\ntracestate: congo=t61rcWkgMzE\r\n"
		    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x\r\n\r\n");
	ck_assert_str_eq(seen[0].traceparent, "");
	ck_assert_str_eq(seen[0].tracestate, "");
	one_request("GET /a HTTP/1.1\r\ntracestate: a=1\r\n"
		    "traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n");
	ck_assert_str_eq(seen[0].traceparent, "");
	ck_assert_str_eq(seen[0].tracestate, "");
	/* tracestate before traceparent, split over headers, empty members skipped */
	one_request("GET /a HTTP/1.1\r\ntracestate: rojo=00f067aa0ba902b7 ,, \r\n"
		    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		    "TraceState:  congo=t61rcWkgMzE\r\n\r\n");
	ck_assert_str_eq(seen[0].tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	/* too long: whole members only, up to the bound */
	for (int i = 0; i < 40; i++)
		used += (size_t)snprintf(long_state + used, sizeof(long_state) - used, "%svendor%02d=%06d",
					 i ? "," : "", i, i);
	{
		char req[1024];

		snprintf(req, sizeof(req),
			 "GET /a HTTP/1.1\r\n"
			 "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
			 "tracestate: %s\r\n\r\n",
			 long_state);
		one_request(req);
	}
	/* each member is 15 bytes and a comma: 32 fit in 512 (32 * 16 - 1 = 511) */
	used = 0;
	for (int i = 0; i < 32; i++)
		used += (size_t)snprintf(want + used, sizeof(want) - used, "%svendor%02d=%06d",
					 i ? "," : "", i, i);
	ck_assert_uint_eq(strlen(seen[0].tracestate), 511);
	ck_assert_str_eq(seen[0].tracestate, want);
}
END_TEST

/* ---- odds and ends ---------------------------------------------------------------------- */

START_TEST(test_api_edges)
{
	struct http_stream_stats s;

	ck_assert_int_eq(http_stream_feed(NULL, HTTP_DIR_IN, NULL, 0, 0, 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(http_stream_feed(st, (enum http_dir)7, NULL, 0, 0, 0, NULL, NULL),
			 -EINVAL);
	ck_assert_int_eq(http_stream_feed(st, HTTP_DIR_IN, NULL, 5, 0, 0, NULL, NULL), 0);
	/* nothing captured of a first read: the next bytes decide */
	ck_assert_int_eq(feed_part(HTTP_DIR_IN, "", 0, 100, 1), 0);
	FEED(HTTP_DIR_IN, ka_req_api, 2);
	/* a NULL callback still counts */
	ck_assert_int_eq(http_stream_feed(st, HTTP_DIR_OUT, (const uint8_t *)ka_rsp_api,
					  sizeof(ka_rsp_api) - 1, sizeof(ka_rsp_api) - 1, 3, NULL,
					  NULL),
			 0);
	http_stream_get_stats(st, &s);
	ck_assert_uint_eq(s.exchanges, 1);
	http_stream_get_stats(NULL, &s);
	http_stream_close(NULL, 0, NULL, NULL);
	http_stream_free(NULL);
	/* CRLF between messages is skipped; trailers are parsed */
	FEED(HTTP_DIR_IN,
	     "\r\nPOST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	     "3;ext=1\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
	     4);
	FEED(HTTP_DIR_OUT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 5);
	ck_assert_uint_eq(n_seen, 1);
	ck_assert_uint_eq(stats().exchanges, 2);
	ck_assert_uint_eq(stats().parse_errors, 0);
}
END_TEST

static Suite *http_proto_suite(void)
{
	Suite *s = suite_create("http_proto");
	TCase *tc = tcase_create("decoder");
	TCase *tr = tcase_create("helpers");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_keepalive_server);
	tcase_add_test(tc, test_keepalive_client);
	tcase_add_test(tc, test_keepalive_every_split);
	tcase_add_test(tc, test_request_byte_by_byte);
	tcase_add_test(tc, test_pipelining_server);
	tcase_add_test(tc, test_pipelining_client);
	tcase_add_test(tc, test_head_then_get_in_one_write);
	tcase_add_test(tc, test_pending_queue_limit);
	tcase_add_test(tc, test_chunked_upload_every_split);
	tcase_add_test(tc, test_chunked_upload_byte_by_byte);
	tcase_add_test(tc, test_chunked_response_every_split);
	tcase_add_test(tc, test_chunked_response_three_parts);
	tcase_add_test(tc, test_100_continue);
	tcase_add_test(tc, test_close_delimited);
	tcase_add_test(tc, test_close_reports_unanswered);
	tcase_add_test(tc, test_close_mid_body);
	tcase_add_test(tc, test_uncaptured_content_length);
	tcase_add_test(tc, test_cut_head);
	tcase_add_test(tc, test_cut_request_line);
	tcase_add_test(tc, test_chunk_header_uncaptured);
	tcase_add_test(tc, test_hidden_pipelined_requests);
	tcase_add_test(tc, test_hidden_response);
	tcase_add_test(tc, test_responses_unseen_at_close);
	tcase_add_test(tc, test_unseen_body);
	tcase_add_test(tc, test_cut_response_heads);
	tcase_add_test(tc, test_hidden_requests_coalesce);
	tcase_add_test(tc, test_close_delimited_uncaptured);
	tcase_add_test(tc, test_chunked_errors);
	tcase_add_test(tc, test_chunked_response_unfinished);
	tcase_add_test(tc, test_header_values);
	tcase_add_test(tc, test_unknown_method);
	tcase_add_test(tc, test_absolute_form);
	tcase_add_test(tc, test_targets);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_connect_tunnel);
	tcase_add_test(tc, test_upgrade);
	tcase_add_test(tc, test_not_http);
	tcase_add_test(tc, test_garbage_mid_stream);
	tcase_add_test(tc, test_malformed_heads);
	tcase_add_test(tc, test_huge_header_line);
	tcase_add_test(tc, test_long_lines_within_limits);
	tcase_add_test(tc, test_api_edges);
	suite_add_tcase(s, tc);

	tcase_add_test(tr, test_looks_like);
	tcase_add_test(tr, test_routes_templates);
	tcase_add_test(tr, test_routes_ids);
	tcase_add_test(tr, test_routes_table);
	tcase_add_test(tr, test_route_limit);
	tcase_add_test(tr, test_routes_small_buffer);
	tcase_add_test(tr, test_traceparent);
	suite_add_tcase(s, tr);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
