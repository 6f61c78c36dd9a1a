/*
 * Unit tests for the otlp sink's parts that need no network
 * (core/sinks/otlp.c): queue accounting and request bodies, Retry-After,
 * backoff, what an answer means, partial success, gzip, and the settings
 * check with file:line:column.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <curl/curl.h>

#include "cfg.h"
#include "sinks/otlp.h"
#include "sinks/sink.h"

#define RS(id) "{\"resource\":{},\"scopeSpans\":[{\"spans\":[" id "]}]}"

/* ---- queue ---------------------------------------------------------------------------------- */

START_TEST(test_queue_accounting)
{
	struct ps_otlp_queue q;
	const char *a = RS("1"), *b = RS("22"), *c = RS("333");
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c), body_len, raw;
	uint32_t spans;
	char *body;

	/* Room for a and b exactly: c does not fit until a request gives its bytes back. */
	ps_otlp_queue_init(&q, la + lb);
	ck_assert_int_eq(ps_otlp_queue_push(&q, a, la, 1), 0);
	ck_assert_int_eq(ps_otlp_queue_push(&q, b, lb, 2), 0);
	ck_assert_int_eq(ps_otlp_queue_push(&q, c, lc, 3), -ENOSPC);
	ck_assert_uint_eq(q.pending_bytes, la + lb);
	ck_assert_uint_eq(q.pending_spans, 3);

	/* max_raw below a+b: one fragment per request. */
	body = ps_otlp_queue_take(&q, la + lb - 1, &body_len, &spans, &raw);
	ck_assert_ptr_nonnull(body);
	ck_assert_str_eq(body, "{\"resourceSpans\":[" RS("1") "]}");
	ck_assert_uint_eq(body_len, strlen(body));
	ck_assert_uint_eq(spans, 1);
	ck_assert_uint_eq(raw, la);
	ck_assert_uint_eq(q.pending_bytes, lb);
	ck_assert_uint_eq(q.held_bytes, la);
	/* Held bytes still count: the request may be retried. */
	ck_assert_int_eq(ps_otlp_queue_push(&q, c, lc, 3), -ENOSPC);
	ps_otlp_queue_release(&q, raw);
	free(body);
	ck_assert_uint_eq(q.held_bytes, 0);
	ck_assert_int_eq(ps_otlp_queue_push(&q, a, la, 1), 0);

	/* Everything at once, in order, comma-separated. */
	body = ps_otlp_queue_take(&q, 1 << 20, &body_len, &spans, &raw);
	ck_assert_str_eq(body, "{\"resourceSpans\":[" RS("22") "," RS("1") "]}");
	ck_assert_uint_eq(body_len, strlen(body));
	ck_assert_uint_eq(spans, 3);
	ck_assert_uint_eq(raw, la + lb);
	ck_assert_ptr_null(q.head);
	ck_assert_uint_eq(q.pending_spans, 0);
	free(body);
	/* Nothing pending: NULL with errno 0. */
	errno = EINVAL;
	ck_assert_ptr_null(ps_otlp_queue_take(&q, 1 << 20, &body_len, &spans, &raw));
	ck_assert_int_eq(errno, 0);
	ps_otlp_queue_release(&q, la + lb);
	ck_assert_uint_eq(q.held_bytes, 0);
	/* The queue works again after it was emptied (tail reset). */
	ck_assert_int_eq(ps_otlp_queue_push(&q, b, lb, 2), 0);
	ck_assert_uint_eq(ps_otlp_queue_clear(&q), 2);
	ck_assert_uint_eq(q.pending_bytes, 0);
	ck_assert_int_eq(ps_otlp_queue_push(&q, a, la, 1), 0);
	ck_assert_uint_eq(ps_otlp_queue_clear(&q), 1);
}
END_TEST

START_TEST(test_queue_oversized)
{
	struct ps_otlp_queue q;
	const char *a = RS("1"), *big = RS("1,2,3,4,5,6,7,8,9");
	size_t body_len, raw;
	uint32_t spans;
	char *body;

	/* Larger than the whole queue: refused, whatever is queued. */
	ps_otlp_queue_init(&q, strlen(big) - 1);
	ck_assert_int_eq(ps_otlp_queue_push(&q, big, strlen(big), 9), -ENOSPC);
	ck_assert_uint_eq(q.pending_bytes, 0);
	/* Larger than a request: it still goes, alone. */
	ps_otlp_queue_init(&q, 1024);
	ck_assert_int_eq(ps_otlp_queue_push(&q, big, strlen(big), 9), 0);
	ck_assert_int_eq(ps_otlp_queue_push(&q, a, strlen(a), 1), 0);
	body = ps_otlp_queue_take(&q, 8, &body_len, &spans, &raw);
	ck_assert_uint_eq(spans, 9);
	ck_assert_uint_eq(raw, strlen(big));
	free(body);
	ck_assert_uint_eq(ps_otlp_queue_clear(&q), 1);
}
END_TEST

/* ---- Retry-After ------------------------------------------------------------------------------ */

#define CAP 300000
/* 784111777 is Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date. */
#define EXAMPLE_T 784111777

static int after(const char *v, time_t now, uint64_t *ms)
{
	*ms = 12345;
	return ps_otlp_retry_after_ms(v, now, CAP, ms);
}

START_TEST(test_retry_after_seconds)
{
	uint64_t ms;

	ck_assert_int_eq(after("120", 0, &ms), 0);
	ck_assert_uint_eq(ms, 120000);
	ck_assert_int_eq(after(" 3\r\n", 0, &ms), 0);
	ck_assert_uint_eq(ms, 3000);
	ck_assert_int_eq(after("0", 0, &ms), 0);
	ck_assert_uint_eq(ms, 0);
	ck_assert_int_eq(after("301", 0, &ms), 0);
	ck_assert_uint_eq(ms, CAP);
	ck_assert_int_eq(after("99999999999999999999999999", 0, &ms), 0);
	ck_assert_uint_eq(ms, CAP);
	for (const char *const *bad =
		     (const char *const[]){ "", " ", "-1", "1.5", "3s", "0x10", "soon", NULL };
	     *bad; bad++)
		ck_assert_msg(after(*bad, 0, &ms) == -EINVAL && ms == 12345, "'%s' accepted", *bad);
	ck_assert_int_eq(ps_otlp_retry_after_ms(NULL, 0, CAP, &ms), -EINVAL);
}
END_TEST

START_TEST(test_retry_after_dates)
{
	uint64_t ms;

	/* IMF-fixdate, RFC 850 and asctime: all three, 10 s ahead. */
	ck_assert_int_eq(after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_T - 10, &ms), 0);
	ck_assert_uint_eq(ms, 10000);
	ck_assert_int_eq(after("Sunday, 06-Nov-94 08:49:37 GMT", EXAMPLE_T - 10, &ms), 0);
	ck_assert_uint_eq(ms, 10000);
	ck_assert_int_eq(after("Sun Nov  6 08:49:37 1994", EXAMPLE_T - 10, &ms), 0);
	ck_assert_uint_eq(ms, 10000);
	/* Now, and the past: no wait. */
	ck_assert_int_eq(after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_T, &ms), 0);
	ck_assert_uint_eq(ms, 0);
	ck_assert_int_eq(after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_T + 3600, &ms), 0);
	ck_assert_uint_eq(ms, 0);
	/* A day ahead: capped. */
	ck_assert_int_eq(after("Mon, 07 Nov 1994 08:49:37 GMT", EXAMPLE_T, &ms), 0);
	ck_assert_uint_eq(ms, CAP);
	/* Not GMT, trailing junk, no time. */
	ck_assert_int_eq(after("Sun, 06 Nov 1994 08:49:37 CET", EXAMPLE_T, &ms), -EINVAL);
	ck_assert_int_eq(after("Sun, 06 Nov 1994 08:49:37 GMT x", EXAMPLE_T, &ms), -EINVAL);
	ck_assert_int_eq(after("Sun, 06 Nov 1994", EXAMPLE_T, &ms), -EINVAL);
	ck_assert_uint_eq(ms, 12345);
}
END_TEST

/* ---- backoff ---------------------------------------------------------------------------------- */

START_TEST(test_backoff)
{
	/* Step 500 ms, doubling: half to all of the step, random picks where. */
	ck_assert_uint_eq(ps_otlp_backoff_ms(1, 500, 30000, 0), 250);
	ck_assert_uint_eq(ps_otlp_backoff_ms(1, 500, 30000, 250), 500);
	ck_assert_uint_eq(ps_otlp_backoff_ms(1, 500, 30000, 251), 250);
	ck_assert_uint_eq(ps_otlp_backoff_ms(2, 500, 30000, 0), 500);
	ck_assert_uint_eq(ps_otlp_backoff_ms(3, 500, 30000, 500), 1500);
	ck_assert_uint_eq(ps_otlp_backoff_ms(3, 500, 30000, 1000), 2000);
	/* 500 * 2^6 = 32000: capped at 30 s from the 7th failure on, and for ever after. */
	ck_assert_uint_eq(ps_otlp_backoff_ms(6, 500, 30000, 0), 8000);
	ck_assert_uint_eq(ps_otlp_backoff_ms(7, 500, 30000, 0), 15000);
	ck_assert_uint_eq(ps_otlp_backoff_ms(7, 500, 30000, 15000), 30000);
	ck_assert_uint_eq(ps_otlp_backoff_ms(4000000000u, 500, 30000, 15000), 30000);
	for (uint32_t r = 0; r < 100000; r += 7) {
		uint64_t ms = ps_otlp_backoff_ms(1 + r % 12, 500, 30000, r * 2654435761u);

		ck_assert_uint_ge(ms, 250);
		ck_assert_uint_le(ms, 30000);
	}
}
END_TEST

/* ---- verdicts, partial success, gzip ------------------------------------------------------ */

START_TEST(test_verdict)
{
	ck_assert_int_eq(ps_otlp_verdict(CURLE_OK, 200), PS_OTLP_SENT);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_OK, 202), PS_OTLP_SENT);
	for (const long *s = (const long[]){ 429, 502, 503, 504, 0 }; *s; s++)
		ck_assert_int_eq(ps_otlp_verdict(CURLE_OK, *s), PS_OTLP_RETRY);
	for (const long *s = (const long[]){ 400, 401, 403, 404, 413, 500, 501, 301, 0 }; *s; s++)
		ck_assert_msg(ps_otlp_verdict(CURLE_OK, *s) == PS_OTLP_DROP, "%ld retried", *s);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_COULDNT_CONNECT, 0), PS_OTLP_RETRY);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_COULDNT_RESOLVE_HOST, 0), PS_OTLP_RETRY);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_OPERATION_TIMEDOUT, 0), PS_OTLP_RETRY);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_GOT_NOTHING, 0), PS_OTLP_RETRY);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_RECV_ERROR, 0), PS_OTLP_RETRY);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_URL_MALFORMAT, 0), PS_OTLP_DROP);
	ck_assert_int_eq(ps_otlp_verdict(CURLE_UNSUPPORTED_PROTOCOL, 0), PS_OTLP_DROP);
}
END_TEST

static uint64_t rejected(const char *body)
{
	return ps_otlp_rejected_spans(body, strlen(body));
}

START_TEST(test_partial_success)
{
	ck_assert_uint_eq(rejected("{}"), 0);
	ck_assert_uint_eq(rejected(""), 0);
	ck_assert_uint_eq(rejected("{\"partialSuccess\":{}}"), 0);
	ck_assert_uint_eq(rejected("{\"partialSuccess\":{\"rejectedSpans\":\"3\","
				   "\"errorMessage\":\"too old\"}}"),
			  3);
	ck_assert_uint_eq(rejected("{\"partialSuccess\": {\"rejectedSpans\": 17}}"), 17);
	/* Bounded by len: a number cut by the end of the buffer is what is there. */
	ck_assert_uint_eq(ps_otlp_rejected_spans("{\"rejectedSpans\":\"123\"}", 20), 12);
	ck_assert_uint_eq(ps_otlp_rejected_spans(NULL, 0), 0);
}
END_TEST

START_TEST(test_gzip_round_trip)
{
	char text[4096], back[4096], *gz;
	size_t gz_len;
	z_stream z = { 0 };

	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = "{\"spanId\":\"0123456789abcdef\"}"[i % 29];
	ck_assert_int_eq(ps_otlp_gzip(text, sizeof(text), &gz, &gz_len), 0);
	ck_assert_uint_lt(gz_len, sizeof(text) / 4);
	/* A gzip member (RFC 1952 magic), and it inflates back to the same bytes. */
	ck_assert_int_eq((unsigned char)gz[0], 0x1f);
	ck_assert_int_eq((unsigned char)gz[1], 0x8b);
	ck_assert_int_eq(inflateInit2(&z, 16 + 15), Z_OK);
	z.next_in = (Bytef *)gz;
	z.avail_in = (uInt)gz_len;
	z.next_out = (Bytef *)back;
	z.avail_out = sizeof(back);
	ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	ck_assert_uint_eq(z.total_out, sizeof(text));
	ck_assert_int_eq(memcmp(text, back, sizeof(text)), 0);
	inflateEnd(&z);
	free(gz);
}
END_TEST

/* ---- settings ---------------------------------------------------------------------------------- */

/* Parses yaml (a sinks.otlp section) and runs the sink's check: 0 or -EINVAL, err filled. */
static int check_yaml(const char *yaml, struct ps_cfg_error *err)
{
	struct ps_cfg_node *root = ps_cfg_load_string("t.yaml", yaml, strlen(yaml), err);
	void *config = calloc(1, ps_sink_otlp.config_size);
	int rc;

	ck_assert_msg(root != NULL, "%s", err->msg);
	ck_assert_ptr_nonnull(config);
	rc = ps_cfg_map_parse(root, ps_sink_otlp.config_map, NULL, config, err);
	if (!rc)
		rc = ps_sink_otlp.check(config, root, err);
	ps_cfg_map_free(ps_sink_otlp.config_map, config);
	free(config);
	ps_cfg_node_free(root);
	return rc;
}

static void assert_rejected(const char *yaml, const char *want)
{
	struct ps_cfg_error err = { { 0 } };

	ck_assert_msg(check_yaml(yaml, &err) == -EINVAL, "'%s' accepted", yaml);
	ck_assert_msg(strstr(err.msg, want), "'%s': got '%s', want '%s'", yaml, err.msg, want);
}

START_TEST(test_settings)
{
	struct ps_cfg_error err = { { 0 } };

	ck_assert_int_eq(check_yaml("endpoint: http://collector:4318/v1/traces\n", &err), 0);
	ck_assert_int_eq(check_yaml("endpoint: HTTPS://[::1]:4318/v1/traces\ncompression: none\n"
				    "timeout: 2s\nmax_queue: 64KiB\nheaders: { x-api-key: k }\n",
				    &err),
			 0);
	assert_rejected("timeout: 2s\n", "t.yaml:1:1: sinks.otlp: endpoint is required");
	assert_rejected("endpoint: ftp://collector/v1/traces\n",
			"t.yaml:1:11: sinks.otlp.endpoint: expected an http:// or https:// URL");
	assert_rejected("endpoint: collector:4318\n", "t.yaml:1:11:");
	assert_rejected("endpoint: http:///v1/traces\n",
			"t.yaml:1:11: sinks.otlp.endpoint: not a URL");
	assert_rejected("endpoint: http://c/v1/traces\ncompression: zstd\n", "t.yaml:2:");
	assert_rejected("endpoint: http://c/v1/traces\ntimeout: 0s\n", "t.yaml:2:");
	assert_rejected("endpoint: http://c/v1/traces\nmax_queue: 100\n", "t.yaml:2:");
	assert_rejected("endpoint: http://c/v1/traces\nheaders:\n  Content-Encoding: br\n",
			"t.yaml:3:21: sinks.otlp.headers: Content-Encoding is set by the sink");
	assert_rejected("endpoint: http://c/v1/traces\nheaders:\n  \"bad name\": v\n",
			"t.yaml:3:15: sinks.otlp.headers: 'bad name' is not a header name");
	assert_rejected("endpoint: http://c/v1/traces\nheaders:\n  x-key: \"a\\r\\nInjected: 1\"\n",
			"t.yaml:3:10: sinks.otlp.headers.x-key: a value may not span lines");
	assert_rejected("endpoint: http://c/v1/traces\nbogus: 1\n", "t.yaml:2:1:");
}
END_TEST

/* Without the daemon's loop the sink opens (settings judged) and closes without sending. */
START_TEST(test_open_without_loop)
{
	struct ps_cfg_error err;
	const char *yaml = "endpoint: http://127.0.0.1:9/v1/traces\n";
	struct ps_cfg_node *root = ps_cfg_load_string("t.yaml", yaml, strlen(yaml), &err);
	void *config = calloc(1, ps_sink_otlp.config_size), *state;

	ck_assert_int_eq(ps_cfg_map_parse(root, ps_sink_otlp.config_map, NULL, config, &err), 0);
	state = ps_sink_otlp.open(config);
	ck_assert_ptr_nonnull(state);
	ps_sink_otlp.close(state);
	ps_cfg_map_free(ps_sink_otlp.config_map, config);
	free(config);
	ps_cfg_node_free(root);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("otlp");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_queue_accounting);
	tcase_add_test(tc, test_queue_oversized);
	tcase_add_test(tc, test_retry_after_seconds);
	tcase_add_test(tc, test_retry_after_dates);
	tcase_add_test(tc, test_backoff);
	tcase_add_test(tc, test_verdict);
	tcase_add_test(tc, test_partial_success);
	tcase_add_test(tc, test_gzip_round_trip);
	tcase_add_test(tc, test_settings);
	tcase_add_test(tc, test_open_without_loop);
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
	return failed ? 1 : 0;
}
