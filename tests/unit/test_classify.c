/*
 * The kernel's first-bytes classifiers (bpf/ps_classify_*.h), run in user
 * space: the capture decides what to follow with exactly this code, and the
 * http decoder decides where a message starts with it too.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ps_classify_http.h"
#include "ps_classify_mongodb.h"
#include "ps_classify_mysql.h"

static int http(const char *s)
{
	return ps_http_classify((const __u8 *)s, (__u32)strlen(s));
}

static int mysql(const void *b, size_t n)
{
	return ps_mysql_classify(b, (__u32)n);
}

START_TEST(test_http_requests)
{
	ck_assert_int_eq(http("GET / HTTP/1.1\r\n"), PS_HTTP_YES);
	ck_assert_int_eq(http("OPTIONS * HTTP/1.1\r\n"), PS_HTTP_YES);
	ck_assert_int_eq(http("GET http://example.com/ HTTP/1.1"), PS_HTTP_YES);
	ck_assert_int_eq(http("CONNECT example.com:443 HTTP/1.1"), PS_HTTP_YES);
	ck_assert_int_eq(http("CONNECT [::1]:443 HTTP/1.1"), PS_HTTP_YES);
	/* methods: 1 to 11 characters, upper case first, then digits, - and _ too */
	ck_assert_int_eq(http("M-SEARCH * HTTP/1.1"), PS_HTTP_YES);
	ck_assert_int_eq(http("ABCDEFGHIJK / HTTP/1.1"), PS_HTTP_YES);
	ck_assert_int_eq(http("ABCDEFGHIJKL / HTTP/1.1"), PS_HTTP_NO);
	ck_assert_int_eq(http("get / HTTP/1.1"), PS_HTTP_NO);
	ck_assert_int_eq(http("1GET / HTTP/1.1"), PS_HTTP_NO);
	ck_assert_int_eq(http("GET /"), PS_HTTP_YES);
	ck_assert_int_eq(http("GET hxx"), PS_HTTP_NO);
	/* HTTP/2's preface is not HTTP/1.x */
	ck_assert_int_eq(http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), PS_HTTP_NO);
}
END_TEST

START_TEST(test_http_responses)
{
	ck_assert_int_eq(http("HTTP/1.1 200 OK\r\n"), PS_HTTP_YES);
	ck_assert_int_eq(http("HTTP/1.0 404 Not Found"), PS_HTTP_YES);
	ck_assert_int_eq(http("HTTP/2 200"), PS_HTTP_NO);
	ck_assert_int_eq(http("HTTP/1.x 200"), PS_HTTP_NO);
}
END_TEST

/* Too few bytes to tell: MAYBE while they agree, NO as soon as they cannot. */
START_TEST(test_http_partial)
{
	ck_assert_int_eq(http("G"), PS_HTTP_MAYBE);
	ck_assert_int_eq(http("GET"), PS_HTTP_MAYBE);
	ck_assert_int_eq(http("GET "), PS_HTTP_MAYBE);
	ck_assert_int_eq(http("GET h"), PS_HTTP_MAYBE);
	ck_assert_int_eq(http("HTTP/1"), PS_HTTP_MAYBE);
	ck_assert_int_eq(http("HTTP/1.1"), PS_HTTP_MAYBE);
	ck_assert_int_eq(http("\x16\x03\x01"), PS_HTTP_NO);
	ck_assert_int_eq(http("SSH-2.0-"), PS_HTTP_NO);
	ck_assert_int_eq(ps_http_classify((const __u8 *)"", 0), PS_HTTP_MAYBE);
}
END_TEST

/* A MariaDB 10.11 greeting, as the server sent it (first 16 bytes). */
static const __u8 greeting[] = { 0x6a, 0x00, 0x00, 0x00, 0x0a, '5', '.', '5', '.', '5',
				 '-', '1', '0', '.', '1', '1' };

START_TEST(test_mysql)
{
	const __u8 query[] = { 0x09, 0x00, 0x00, 0x00, 0x03, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1' };
	const __u8 ping[] = { 0x01, 0x00, 0x00, 0x00, 0x0e };
	const __u8 ok_response[] = { 0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00 };
	const __u8 binary_query[] = { 0x09, 0x00, 0x00, 0x00, 0x03, 0x00, 0xff, 0x01 };
	const __u8 dbus[] = { 0x00, 'A', 'U', 'T', 'H', ' ', 'E', 'X' };

	ck_assert_int_eq(mysql(greeting, sizeof(greeting)), PS_HTTP_YES);
	ck_assert_int_eq(mysql(greeting, 5), PS_HTTP_MAYBE);
	ck_assert_int_eq(mysql(greeting, 3), PS_HTTP_MAYBE);
	ck_assert_int_eq(mysql(query, sizeof(query)), PS_HTTP_YES);
	ck_assert_int_eq(mysql(ping, sizeof(ping)), PS_HTTP_YES);
	/* a response (sequence 1) is not a connection's start: joined midway, ask again later */
	ck_assert_int_eq(mysql(ok_response, sizeof(ok_response)), PS_HTTP_NO);
	ck_assert_int_eq(mysql(binary_query, sizeof(binary_query)), PS_HTTP_NO);
	ck_assert_int_eq(mysql(dbus, sizeof(dbus)), PS_HTTP_NO);
	ck_assert_int_eq(mysql("GET / HTTP/1.1", 14), PS_HTTP_NO);
	/* and HTTP's does not take MySQL for itself */
	ck_assert_int_eq(ps_http_classify(greeting, sizeof(greeting)), PS_HTTP_NO);
}
END_TEST

/* pymongo's first OP_MSG (hello), its header and the first byte after it. */
START_TEST(test_mongodb)
{
	const __u8 hello[] = { 0x3a, 0x01, 0x00, 0x00, 0x65, 0x8b, 0x45, 0x67, 0x00, 0x00,
			       0x00, 0x00, 0xdd, 0x07, 0x00, 0x00, 0x00 };
	__u8 reply[sizeof(hello)], legacy[sizeof(hello)], bogus[sizeof(hello)];

	ck_assert_int_eq(ps_mongodb_classify(hello, 16), PS_HTTP_YES);
	ck_assert_int_eq(ps_mongodb_classify(hello, 8), PS_HTTP_MAYBE);
	memcpy(reply, hello, sizeof(hello));
	reply[8] = 0x65; /* responseTo: a reply, seen first when joined midway */
	ck_assert_int_eq(ps_mongodb_classify(reply, 16), PS_HTTP_YES);
	memcpy(legacy, hello, sizeof(hello));
	legacy[12] = 0xd4; /* OP_QUERY 2004 */
	ck_assert_int_eq(ps_mongodb_classify(legacy, 16), PS_HTTP_YES);
	memcpy(bogus, hello, sizeof(hello));
	bogus[12] = 0x99; /* no such opCode */
	ck_assert_int_eq(ps_mongodb_classify(bogus, 16), PS_HTTP_NO);
	bogus[12] = 0xdd;
	bogus[3] = 0x10; /* 268 MB: no MongoDB message */
	ck_assert_int_eq(ps_mongodb_classify(bogus, 4), PS_HTTP_NO);
	ck_assert_int_eq(ps_mongodb_classify((const __u8 *)"GET / HTTP/1.1\r\n\r\n", 16),
			 PS_HTTP_NO);
	ck_assert_int_eq(ps_http_classify(hello, 16), PS_HTTP_NO);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("classify");
	TCase *tc = tcase_create("first bytes");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_http_requests);
	tcase_add_test(tc, test_http_responses);
	tcase_add_test(tc, test_http_partial);
	tcase_add_test(tc, test_mysql);
	tcase_add_test(tc, test_mongodb);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
