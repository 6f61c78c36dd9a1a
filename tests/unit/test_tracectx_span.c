/* Unit tests for plugins/tracectx/span.c: exchange -> span, and the OTLP/JSON it writes. */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "span.h"

static struct tc_rng rng = { 42 };

static struct ps_endpoint ep4(const char *ip, uint16_t port)
{
	struct ps_endpoint e = { .family = AF_INET, .port = port };

	inet_pton(AF_INET, ip, e.addr);
	return e;
}

static const char *attr(const struct tc_span *s, const char *key, int64_t *num)
{
	for (size_t i = 0; i < s->n_attrs; i++) {
		if (strcmp(s->attrs[i].key, key))
			continue;
		if (num)
			*num = s->attrs[i].num;
		return s->attrs[i].str ? s->attrs[i].str : "(int)";
	}
	return NULL;
}

START_TEST(test_http_server_json)
{
	struct ps_exchange x = {
		.protocol = "http",
		.side = PS_SIDE_SERVER,
		.pid = 10,
		.tid = 11,
		.service_name = "checkout",
		.local = ep4("10.0.0.1", 8080),
		.remote = ep4("10.0.0.9", 41000),
		.start_unix_ns = 1700000000000000123ull,
		.end_unix_ns = 1700000000000500456ull,
		.operation = "GET",
		.target = "/users/{id}",
		.scheme = "http",
		.status = 503,
		.error = true,
	};
	struct tc_span *s = tc_span_from_exchange(&x, &rng);
	struct ps_strmap labels = { (char *[]){ "cluster" }, (char *[]){ "prod-eu-1" }, 1 };
	struct tc_buf b = { 0 };

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->kind, TC_KIND_SERVER);
	ck_assert_str_eq(s->name, "GET /users/{id}");
	ck_assert(!s->has_parent_id && !s->has_header);
	for (int i = 0; i < 16; i++)
		s->trace_id[i] = (uint8_t)(0xa0 + i);
	for (int i = 0; i < 8; i++)
		s->span_id[i] = (uint8_t)(0x01 + i);
	ck_assert_int_eq(tc_json_resource_spans(&b, s->service, &labels, &s, 1), 0);
	ck_assert_str_eq(
		b.p,
		"{\"resource\":{\"attributes\":["
		"{\"key\":\"service.name\",\"value\":{\"stringValue\":\"checkout\"}},"
		"{\"key\":\"cluster\",\"value\":{\"stringValue\":\"prod-eu-1\"}}]},"
		"\"scopeSpans\":[{\"scope\":{\"name\":\"periscope\"},\"spans\":[{"
		"\"traceId\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\",\"spanId\":\"0102030405060708\","
		"\"name\":\"GET /users/{id}\",\"kind\":2,"
		"\"startTimeUnixNano\":\"1700000000000000123\",\"endTimeUnixNano\":\"1700000000000500456\","
		"\"attributes\":["
		"{\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"GET\"}},"
		"{\"key\":\"http.route\",\"value\":{\"stringValue\":\"/users/{id}\"}},"
		"{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"503\"}},"
		"{\"key\":\"url.scheme\",\"value\":{\"stringValue\":\"http\"}},"
		"{\"key\":\"server.port\",\"value\":{\"intValue\":\"8080\"}},"
		"{\"key\":\"network.peer.address\",\"value\":{\"stringValue\":\"10.0.0.9\"}},"
		"{\"key\":\"network.peer.port\",\"value\":{\"intValue\":\"41000\"}}],"
		"\"status\":{\"code\":2}}]}]}");
	ck_assert_uint_eq(b.len, strlen(b.p));
	tc_buf_free(&b);
	tc_span_free(s);
}
END_TEST

START_TEST(test_http_headers)
{
	struct ps_exchange x = {
		.protocol = "http",
		.side = PS_SIDE_CLIENT,
		.service_name = "a",
		.local = ep4("127.0.0.1", 40000),
		.remote = ep4("127.0.0.1", 8002),
		.operation = "POST",
		.target = "/orders",
		.scheme = "http",
		.status = 201,
		.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		.tracestate = "congo=t61rcWkgMzE",
	};
	static const uint8_t parent[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
	struct tc_span *s = tc_span_from_exchange(&x, &rng);
	struct tc_buf b = { 0 };
	int64_t port = 0;

	/* a client that propagated itself: the header names this span */
	ck_assert_int_eq(s->kind, TC_KIND_CLIENT);
	ck_assert(s->has_header && !s->has_parent_id);
	ck_assert_mem_eq(s->span_id, parent, 8);
	ck_assert_int_eq(s->trace_id[0], 0x4b);
	ck_assert_str_eq(attr(s, "server.address", NULL), "127.0.0.1");
	ck_assert_str_eq(attr(s, "server.port", &port), "(int)");
	ck_assert_int_eq(port, 8002);
	ck_assert_str_eq(attr(s, "url.template", NULL), "/orders");
	ck_assert_ptr_null(attr(s, "http.route", NULL));
	tc_json_resource_spans(&b, s->service, NULL, &s, 1);
	ck_assert_ptr_nonnull(strstr(b.p, "\"traceState\":\"congo=t61rcWkgMzE\""));
	ck_assert_ptr_nonnull(strstr(b.p, "\"status\":{}"));
	tc_buf_free(&b);
	tc_span_free(s);

	/* the server of such a request: the header's parent is its parent */
	x.side = PS_SIDE_SERVER;
	s = tc_span_from_exchange(&x, &rng);
	ck_assert(s->has_header && s->has_parent_id);
	ck_assert_mem_eq(s->parent_id, parent, 8);
	ck_assert_mem_ne(s->span_id, parent, 8);
	ck_assert_ptr_null(attr(s, "server.address", NULL));
	tc_span_free(s);

	/* an invalid header is no header */
	x.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
	s = tc_span_from_exchange(&x, &rng);
	ck_assert(!s->has_header && !s->has_parent_id && !s->tracestate);
	tc_span_free(s);
}
END_TEST

START_TEST(test_db_and_messaging)
{
	struct ps_exchange x = {
		.protocol = "mysql",
		.side = PS_SIDE_CLIENT,
		.service_name = "a",
		.local = ep4("127.0.0.1", 40000),
		.remote = ep4("127.0.0.1", 3306),
		.operation = "SELECT",
		.target = "orders",
	};
	struct tc_span *s = tc_span_from_exchange(&x, &rng);

	ck_assert_str_eq(s->name, "SELECT orders");
	ck_assert_str_eq(attr(s, "db.system.name", NULL), "mysql");
	ck_assert_str_eq(attr(s, "db.operation.name", NULL), "SELECT");
	ck_assert_str_eq(attr(s, "db.collection.name", NULL), "orders");
	ck_assert_str_eq(attr(s, "server.address", NULL), "127.0.0.1");
	tc_span_free(s);

	x.protocol = "mongodb";
	x.operation = "find";
	x.target = "users";
	s = tc_span_from_exchange(&x, &rng);
	ck_assert_str_eq(s->name, "find users");
	ck_assert_str_eq(attr(s, "db.system.name", NULL), "mongodb");
	tc_span_free(s);

	x.protocol = "kafka";
	x.operation = "send";
	x.target = "orders";
	s = tc_span_from_exchange(&x, &rng);
	ck_assert_int_eq(s->kind, TC_KIND_PRODUCER);
	ck_assert_str_eq(s->name, "send orders");
	ck_assert_str_eq(attr(s, "messaging.system", NULL), "kafka");
	ck_assert_str_eq(attr(s, "messaging.destination.name", NULL), "orders");
	tc_span_free(s);
	x.operation = "poll";
	s = tc_span_from_exchange(&x, &rng);
	ck_assert_int_eq(s->kind, TC_KIND_CONSUMER);
	ck_assert_str_eq(s->name, "poll orders");
	tc_span_free(s);
	x.operation = "commit";
	x.target = "";
	s = tc_span_from_exchange(&x, &rng);
	ck_assert_int_eq(s->kind, TC_KIND_CLIENT);
	ck_assert_str_eq(s->name, "commit");
	tc_span_free(s);
	/* the broker's view of a produce is a server span */
	x.side = PS_SIDE_SERVER;
	x.operation = "send";
	s = tc_span_from_exchange(&x, &rng);
	ck_assert_int_eq(s->kind, TC_KIND_SERVER);
	tc_span_free(s);
}
END_TEST

START_TEST(test_json_escaping)
{
	struct tc_buf b = { 0 };

	tc_buf_json_str(&b, "a\"b\\c\n\x01\x7f é € 😀");
	ck_assert_str_eq(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f é € 😀\"");
	b.len = 0;
	/* invalid UTF-8: lone continuation, overlong, surrogate, truncated, past U+10FFFF */
	tc_buf_json_str(&b, "x\x80y\xc0\xafz\xed\xa0\x80w\xe2\x82v\xf4\x90\x80\x80");
	ck_assert_str_eq(b.p, "\"x\\ufffdy\\ufffd\\ufffdz\\ufffd\\ufffd\\ufffdw\\ufffd\\ufffdv"
			      "\\ufffd\\ufffd\\ufffd\\ufffd\"");
	tc_buf_free(&b);
}
END_TEST

START_TEST(test_ids)
{
	struct tc_rng r;
	uint8_t a[16], c[16];

	ck_assert_int_eq(tc_rng_seed(&r), 0);
	tc_rng_id(&r, a, 16);
	tc_rng_id(&r, c, 16);
	ck_assert_mem_ne(a, c, 16);
	/* a state whose first output is zero still gives a nonzero id */
	for (int i = 0; i < 1000; i++) {
		uint8_t id[8], zero[8] = { 0 };

		tc_rng_id(&r, id, 8);
		ck_assert_mem_ne(id, zero, 8);
	}
}
END_TEST

static Suite *span_suite(void)
{
	Suite *s = suite_create("tracectx_span");
	TCase *tc = tcase_create("span");

	tcase_add_test(tc, test_http_server_json);
	tcase_add_test(tc, test_http_headers);
	tcase_add_test(tc, test_db_and_messaging);
	tcase_add_test(tc, test_json_escaping);
	tcase_add_test(tc, test_ids);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(span_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
