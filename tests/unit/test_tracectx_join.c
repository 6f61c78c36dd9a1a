/*
 * Unit tests for plugins/tracectx/join.c: a chain of services on one host,
 * event loops, headers, sampling, the hold and the bound.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "join.h"

#define MS   1000000ull
#define HOLD (100 * MS)

struct seen {
	char name[TC_NAME_MAX];
	char service[32];
	uint8_t trace_id[16], span_id[8], parent_id[8];
	bool has_parent;
};

static struct seen seen[1024];
static size_t n_seen, n_calls;
static struct tc_rng rng = { 7 };
static struct tc_join *j;

static void on_publish(struct tc_span *const *spans, size_t n, void *ctx)
{
	(void)ctx;
	n_calls++;
	for (size_t i = 0; i < n && n_seen < 1024; i++, n_seen++) {
		struct seen *s = &seen[n_seen];

		snprintf(s->name, sizeof(s->name), "%s", spans[i]->name);
		snprintf(s->service, sizeof(s->service), "%s", spans[i]->service);
		memcpy(s->trace_id, spans[i]->trace_id, 16);
		memcpy(s->span_id, spans[i]->span_id, 8);
		memcpy(s->parent_id, spans[i]->parent_id, 8);
		s->has_parent = spans[i]->has_parent_id;
	}
}

static void start(double ratio, size_t max_pending)
{
	struct tc_join_config cfg = { .hold_ns = HOLD,
				      .max_pending = max_pending,
				      .sample_ratio = ratio };

	n_seen = n_calls = 0;
	j = tc_join_new(&cfg, &rng, on_publish, NULL);
	ck_assert_ptr_nonnull(j);
}

static void finish(void)
{
	tc_join_free(j);
	j = NULL;
}

static struct ps_endpoint ep(uint16_t port)
{
	struct ps_endpoint e = { .family = AF_INET, .port = port };

	inet_pton(AF_INET, "127.0.0.1", e.addr);
	return e;
}

/* One exchange: ports give the connection, times in ms. */
static void add(const char *name, enum ps_exchange_side side, uint32_t pid, uint32_t tid,
		uint16_t lport, uint16_t rport, uint32_t seq, uint64_t start_ms, uint64_t end_ms,
		const char *traceparent, uint64_t now_ms)
{
	struct ps_exchange x = {
		.protocol = "http",
		.side = side,
		.pid = pid,
		.tid = tid,
		.service_name = "svc",
		.local = ep(lport),
		.remote = ep(rport),
		.seq = seq,
		.start_unix_ns = start_ms * MS,
		.end_unix_ns = end_ms * MS,
		.operation = name,
		.traceparent = traceparent,
	};
	struct tc_span *s = tc_span_from_exchange(&x, &rng);

	ck_assert_ptr_nonnull(s);
	tc_join_add(j, s, now_ms * MS);
}

static const struct seen *find(const char *name)
{
	for (size_t i = 0; i < n_seen; i++)
		if (!strcmp(seen[i].name, name))
			return &seen[i];
	ck_abort_msg("no span %s", name);
	return NULL;
}

static void assert_child(const char *child, const char *parent)
{
	const struct seen *c = find(child), *p = find(parent);

	ck_assert_msg(c->has_parent, "%s has no parent", child);
	ck_assert_msg(!memcmp(c->parent_id, p->span_id, 8), "%s: parent is not %s", child, parent);
	ck_assert_msg(!memcmp(c->trace_id, p->trace_id, 16), "%s: not in %s's trace", child,
		      parent);
}

static void assert_root(const char *name)
{
	ck_assert_msg(!find(name)->has_parent, "%s has a parent", name);
}

static uint64_t unjoined(enum tc_unjoined r)
{
	struct tc_join_stats st;

	tc_join_get_stats(j, &st);
	return st.unjoined[r];
}

/*
 * curl -> A (pid 2) -> B (pid 3) -> C (pid 4), and A -> mysqld (pid 5), as they
 * complete: the deepest first. Ports: curl 40000 -> A 8001, A 40001 -> B 8002,
 * B 40002 -> C 8003, A 40003 -> mysqld 3306.
 */
static void add_chain(uint32_t seq, uint64_t t, const char *curl_header)
{
	add("C", PS_SIDE_SERVER, 4, 40, 8003, 40002, seq, t + 30, t + 40, NULL, t + 41);
	add("B->C", PS_SIDE_CLIENT, 3, 30, 40002, 8003, seq, t + 29, t + 41, NULL, t + 42);
	add("B", PS_SIDE_SERVER, 3, 30, 8002, 40001, seq, t + 20, t + 50, NULL, t + 51);
	add("A->B", PS_SIDE_CLIENT, 2, 20, 40001, 8002, seq, t + 19, t + 51, NULL, t + 52);
	add("mysqld", PS_SIDE_SERVER, 5, 50, 3306, 40003, seq, t + 60, t + 61, NULL, t + 62);
	add("A->db", PS_SIDE_CLIENT, 2, 20, 40003, 3306, seq, t + 59, t + 62, NULL, t + 63);
	add("A", PS_SIDE_SERVER, 2, 20, 8001, 40000, seq, t + 10, t + 70, curl_header, t + 71);
	add("curl", PS_SIDE_CLIENT, 1, 1, 40000, 8001, seq, t + 9, t + 71, curl_header, t + 72);
}

START_TEST(test_chain)
{
	const struct seen *a;

	start(1.0, 100);
	add_chain(0, 0, NULL);
	/* nothing before the root waited its hold */
	tc_join_tick(j, 72 * MS, false);
	tc_join_tick(j, 72 * MS + HOLD - 1, false);
	ck_assert_uint_eq(n_seen, 0);
	tc_join_tick(j, 72 * MS + HOLD, false);
	ck_assert_uint_eq(n_seen, 8);
	ck_assert_uint_eq(n_calls, 1);
	assert_root("curl");
	assert_child("A", "curl");
	assert_child("A->B", "A");
	assert_child("B", "A->B");
	assert_child("B->C", "B");
	assert_child("C", "B->C");
	assert_child("A->db", "A");
	assert_child("mysqld", "A->db");
	a = find("A");
	for (size_t i = 0; i < n_seen; i++)
		ck_assert_mem_eq(seen[i].trace_id, a->trace_id, 16);
	ck_assert_uint_eq(unjoined(TC_UNJOINED_OVERLAP), 0);
	finish();
}
END_TEST

/* Keep-alive: the second request on each connection joins the second, not the first. */
START_TEST(test_keepalive_seq)
{
	start(1.0, 100);
	add("C", PS_SIDE_SERVER, 4, 40, 8003, 40002, 0, 0, 10, NULL, 11);
	add("C2", PS_SIDE_SERVER, 4, 40, 8003, 40002, 1, 20, 30, NULL, 31);
	add("B->C2", PS_SIDE_CLIENT, 3, 30, 40002, 8003, 1, 19, 31, NULL, 32);
	add("B->C", PS_SIDE_CLIENT, 3, 30, 40002, 8003, 0, 0, 11, NULL, 33);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 4);
	assert_child("C", "B->C");
	assert_child("C2", "B->C2");
	ck_assert_mem_ne(find("C")->trace_id, find("C2")->trace_id, 16);
	finish();
}
END_TEST

/* An event loop: two requests at once on one thread; its client call belongs to neither. */
START_TEST(test_event_loop)
{
	start(1.0, 100);
	add("call", PS_SIDE_CLIENT, 2, 20, 40001, 8002, 0, 15, 25, NULL, 26);
	add("req1", PS_SIDE_SERVER, 2, 20, 8001, 40000, 0, 10, 30, NULL, 31);
	add("req2", PS_SIDE_SERVER, 2, 20, 8001, 40010, 0, 12, 40, NULL, 41);
	/* the same thread later, alone: joins */
	add("call3", PS_SIDE_CLIENT, 2, 20, 40001, 8002, 1, 55, 56, NULL, 57);
	add("req3", PS_SIDE_SERVER, 2, 20, 8001, 40000, 1, 50, 60, NULL, 61);
	/* another thread's server does not make it ambiguous */
	add("other", PS_SIDE_SERVER, 2, 21, 8001, 40020, 0, 50, 60, NULL, 61);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 6);
	assert_root("call");
	assert_root("req1");
	assert_root("req2");
	assert_child("call3", "req3");
	ck_assert_uint_eq(unjoined(TC_UNJOINED_OVERLAP), 1);
	finish();

	/* the overlapping request's tree went out before this one came: still ambiguous */
	start(1.0, 100);
	add("call1", PS_SIDE_CLIENT, 2, 20, 40001, 8002, 0, 15, 25, NULL, 26);
	add("req1", PS_SIDE_SERVER, 2, 20, 8001, 40000, 0, 10, 30, NULL, 31);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 2);
	assert_child("call1", "req1"); /* nothing else was known then */
	add("call2", PS_SIDE_CLIENT, 2, 20, 40002, 8002, 0, 32, 38, NULL, 1001);
	add("req2", PS_SIDE_SERVER, 2, 20, 8001, 40010, 0, 20, 40, NULL, 1001);
	tc_join_tick(j, 1001 * MS + HOLD, false);
	ck_assert_uint_eq(n_seen, 4);
	assert_root("call2");
	ck_assert_uint_eq(unjoined(TC_UNJOINED_OVERLAP), 1);
	/* a hold later the published one is forgotten */
	add("call3", PS_SIDE_CLIENT, 2, 20, 40003, 8002, 0, 32, 38, NULL, 2000);
	add("req3", PS_SIDE_SERVER, 2, 20, 8001, 40020, 0, 20, 40, NULL, 2000);
	tc_join_tick(j, 2000 * MS + 2 * HOLD, false);
	ck_assert_uint_eq(n_seen, 6);
	assert_child("call3", "req3");
	finish();
}
END_TEST

START_TEST(test_inbound_header)
{
	static const uint8_t trace[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					   0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
	static const uint8_t parent[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
	const char *h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

	/* curl sent the header: its span is the header's id, A's parent, every id the header's trace */
	start(0.0, 100); /* a sampled flag of 1 keeps the trace whatever the ratio */
	add_chain(0, 0, h);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 8);
	ck_assert_mem_eq(find("curl")->span_id, parent, 8);
	assert_root("curl");
	assert_child("A", "curl");
	ck_assert_mem_eq(find("A")->parent_id, parent, 8);
	assert_child("C", "B->C");
	for (size_t i = 0; i < n_seen; i++)
		ck_assert_mem_eq(seen[i].trace_id, trace, 16);
	finish();

	/* only the server saw it (the client is on another host): the remote parent stays */
	start(1.0, 100);
	add("A", PS_SIDE_SERVER, 2, 20, 8001, 40000, 0, 10, 70, h, 71);
	add("A->B", PS_SIDE_CLIENT, 2, 20, 40001, 8002, 0, 19, 51, NULL, 20);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 2);
	ck_assert(find("A")->has_parent);
	ck_assert_mem_eq(find("A")->parent_id, parent, 8);
	ck_assert_mem_eq(find("A")->trace_id, trace, 16);
	assert_child("A->B", "A");
	finish();
}
END_TEST

START_TEST(test_sampling)
{
	struct tc_join_stats st;

	/* an inbound sampled flag of 0 drops the trace, whatever the ratio */
	start(1.0, 100);
	add_chain(0, 0, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 0);
	tc_join_get_stats(j, &st);
	ck_assert_uint_eq(st.sampled_out, 8);
	ck_assert_uint_eq(st.pending, 0);
	finish();

	/* ratio 0 keeps nothing that starts here; a ratio keeps whole traces */
	start(0.0, 100);
	add_chain(0, 0, NULL);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 0);
	finish();
	start(0.5, 1000);
	for (uint32_t i = 0; i < 100; i++)
		add_chain(i, i * 1000, NULL);
	tc_join_tick(j, 1000000 * MS, true);
	ck_assert_uint_eq(n_seen % 8, 0);
	ck_assert(n_seen > 8 * 25 && n_seen < 8 * 75); /* 100 coin flips: far outside is a bug */
	finish();
}
END_TEST

START_TEST(test_bound_and_hold)
{
	struct tc_join_stats st;

	start(1.0, 3);
	add("s1", PS_SIDE_SERVER, 2, 20, 8001, 40000, 0, 0, 10, NULL, 0);
	add("s2", PS_SIDE_SERVER, 2, 21, 8001, 40001, 0, 0, 10, NULL, 0);
	add("s3", PS_SIDE_SERVER, 2, 22, 8001, 40002, 0, 0, 10, NULL, 0);
	ck_assert_uint_eq(n_seen, 0);
	add("s4", PS_SIDE_SERVER, 2, 23, 8001, 40003, 0, 0, 10, NULL, 0);
	ck_assert_uint_eq(n_seen, 1); /* full: out at once */
	ck_assert_str_eq(seen[0].name, "s4");
	ck_assert_uint_eq(unjoined(TC_UNJOINED_OVERFLOW), 1);
	tc_join_get_stats(j, &st);
	ck_assert_uint_eq(st.pending, 3);
	/* a root that gains a parent within the hold waits for that parent's hold */
	tc_join_tick(j, HOLD - 1, false);
	ck_assert_uint_eq(n_seen, 1);
	tc_join_tick(j, HOLD, false);
	ck_assert_uint_eq(n_seen, 4);
	tc_join_get_stats(j, &st);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.published, 4);
	finish();

	start(1.0, 10);
	add("B", PS_SIDE_SERVER, 3, 30, 8002, 40001, 0, 20, 50, NULL, 51);
	tc_join_tick(j, 51 * MS + HOLD / 2, false);
	add("A->B", PS_SIDE_CLIENT, 2, 20, 40001, 8002, 0, 19, 51, NULL, 51 + HOLD / 2 / MS);
	tc_join_tick(j, 51 * MS + HOLD, false); /* B's own hold is over, but it has a parent now */
	ck_assert_uint_eq(n_seen, 0);
	tc_join_tick(j, 51 * MS + HOLD / 2 + HOLD, false);
	ck_assert_uint_eq(n_seen, 2);
	assert_child("B", "A->B");
	finish();
}
END_TEST

/* A client's own header wins over the thread it runs on when the traces differ. */
START_TEST(test_header_conflict)
{
	start(1.0, 10);
	add("A->B", PS_SIDE_CLIENT, 2, 20, 40001, 8002, 0, 19, 51,
	    "00-11111111111111111111111111111111-2222222222222222-01", 52);
	add("A", PS_SIDE_SERVER, 2, 20, 8001, 40000, 0, 10, 70,
	    "00-33333333333333333333333333333333-4444444444444444-01", 71);
	tc_join_tick(j, 1000 * MS, false);
	ck_assert_uint_eq(n_seen, 2);
	ck_assert_int_eq(find("A")->trace_id[0], 0x33);
	ck_assert_int_eq(find("A->B")->trace_id[0], 0x11);
	assert_root("A->B");
	ck_assert_uint_eq(unjoined(TC_UNJOINED_CONFLICT), 1);
	finish();
}
END_TEST

static Suite *join_suite(void)
{
	Suite *s = suite_create("tracectx_join");
	TCase *tc = tcase_create("join");

	tcase_add_test(tc, test_chain);
	tcase_add_test(tc, test_keepalive_seq);
	tcase_add_test(tc, test_event_loop);
	tcase_add_test(tc, test_inbound_header);
	tcase_add_test(tc, test_sampling);
	tcase_add_test(tc, test_bound_and_hold);
	tcase_add_test(tc, test_header_conflict);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(join_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
