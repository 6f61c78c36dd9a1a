/*
 * Unit tests for the Kafka decoder (plugins/kafka/kafka_proto.c).
 *
 * The fixtures in tests/unit/data/kafka are real connections, recorded by record.sh
 * there with tcpdump on loopback: kcat 1.7.1 and confluent-kafka 1.7 (librdkafka 2.0.2)
 * and kafka-python 2.0.2, against librdkafka 2.0.2's mock broker. Each is the list of
 * TCP segments of one connection, with their direction. What the clients did is the
 * ground truth below (see record.sh): e.g. kcat produced 5 messages in one request,
 * confluent-kafka 30 in 3 requests of 10, the error scenario had 2 Produce requests
 * answered NOT_LEADER_OR_FOLLOWER before the retries went through.
 *
 * The mock broker speaks no flexible response versions and no legacy message sets, so
 * those are built here field by field from the protocol's message definitions.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_proto.h"

#ifndef KAFKA_DATA_DIR
#define KAFKA_DATA_DIR "tests/unit/data/kafka"
#endif

/* ---- fixtures ------------------------------------------------------------------------------ */

struct chunk {
	enum kafka_dir dir;
	const uint8_t *data;
	size_t len;
};

struct fixture {
	uint8_t *bytes;
	struct chunk *chunks;
	size_t n;
};

/* Client side: the client's writes are OUT. */
static void fixture_load(struct fixture *fx, const char *name)
{
	char path[512];
	FILE *f;
	long size;
	size_t o = 0;

	snprintf(path, sizeof(path), "%s/%s", KAFKA_DATA_DIR, name);
	f = fopen(path, "rb");
	ck_assert_msg(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	fx->bytes = malloc((size_t)size);
	ck_assert(fx->bytes);
	ck_assert_uint_eq(fread(fx->bytes, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	fx->chunks = calloc((size_t)size / 5 + 1, sizeof(*fx->chunks));
	fx->n = 0;
	while (o + 5 <= (size_t)size) {
		uint8_t *b = fx->bytes + o;
		size_t len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];

		ck_assert(o + 5 + len <= (size_t)size);
		fx->chunks[fx->n++] = (struct chunk){
			.dir = b[0] == 'C' ? KAFKA_DIR_OUT : KAFKA_DIR_IN,
			.data = b + 5,
			.len = len,
		};
		o += 5 + len;
	}
	ck_assert_uint_eq(o, (size_t)size);
}

static void fixture_free(struct fixture *fx)
{
	free(fx->bytes);
	free(fx->chunks);
}

/* ---- what the decoder reported ---------------------------------------------------------------- */

#define LOG_MAX 65536

struct run {
	char log[LOG_MAX]; /* one line per exchange and per partition: compared across feeds */
	size_t used;
	size_t n_exchanges;
	size_t by_api[80];
	uint64_t produced_ok, produced_err, consumed, uncounted;
	int16_t first_produce_error;
	int64_t last_hw, last_next;
	char group[KAFKA_GROUP_MAX];
	bool all_complete;
};

static void logf_(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct run *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(r->log + r->used, LOG_MAX - r->used, fmt, ap);
	va_end(ap);
	ck_assert(n >= 0 && (size_t)n < LOG_MAX - r->used);
	r->used += (size_t)n;
}

static void on_ex(const struct kafka_exchange *ex, void *ctx)
{
	struct run *r = ctx;

	r->n_exchanges++;
	r->uncounted += ex->uncounted;
	if (ex->api_key >= 0 && ex->api_key < 80)
		r->by_api[ex->api_key]++;
	if (!ex->complete)
		r->all_complete = false;
	if (ex->group[0])
		snprintf(r->group, sizeof(r->group), "%s", ex->group);
	ck_assert_uint_le(ex->request_start_ns, ex->response_end_ns);
	logf_(r, "%s v%d #%d err=%s group=%s answered=%d\n", kafka_api_name(ex->api_key),
	      ex->api_version, ex->correlation_id, kafka_error_name(ex->error), ex->group,
	      ex->answered);
	for (size_t i = 0; i < ex->n_parts; i++) {
		const struct kafka_partition *p = &ex->parts[i];

		ck_assert_uint_lt(p->topic, ex->n_topics);
		logf_(r, "  %s/%d err=%s records=%llu uncounted=%u fetch=%lld hw=%lld next=%lld\n",
		      ex->topics[p->topic].name, p->partition, kafka_error_name(p->error),
		      (unsigned long long)p->records, p->uncounted, (long long)p->fetch_offset,
		      (long long)p->high_watermark, (long long)p->next_offset);
		if (ex->api_key == KAFKA_API_PRODUCE) {
			if (p->error) {
				r->produced_err += p->records;
				if (!r->first_produce_error)
					r->first_produce_error = p->error;
			} else {
				r->produced_ok += p->records;
			}
		} else if (ex->api_key == KAFKA_API_FETCH && !p->error) {
			r->consumed += p->records;
			r->last_hw = p->high_watermark;
			r->last_next = p->next_offset;
		}
	}
}

static void run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->all_complete = true;
	r->last_hw = r->last_next = -1;
}

static struct kafka_stream_stats stream_end(struct kafka_stream *s)
{
	struct kafka_stream_stats st;

	kafka_stream_close(s, 0);
	kafka_stream_get_stats(s, &st);
	kafka_stream_free(s);
	return st;
}

/* Each segment as one chunk, all captured. */
static struct kafka_stream_stats feed_whole(const struct fixture *fx, struct run *r)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	uint64_t ts = 1000;

	run_init(r);
	for (size_t i = 0; i < fx->n; i++)
		ck_assert_int_eq(kafka_stream_feed(s, fx->chunks[i].dir, fx->chunks[i].data,
						   fx->chunks[i].len, fx->chunks[i].len, ts++,
						   on_ex, r),
				 0);
	return stream_end(s);
}

/* Each segment cut in two at `at` (when longer): the reads of a slower reader. */
static void feed_split(const struct fixture *fx, struct run *r, size_t at)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);

	run_init(r);
	for (size_t i = 0; i < fx->n; i++) {
		const struct chunk *c = &fx->chunks[i];
		size_t a = at < c->len ? at : c->len;

		ck_assert_int_eq(kafka_stream_feed(s, c->dir, c->data, a, a, i, on_ex, r), 0);
		ck_assert_int_eq(kafka_stream_feed(s, c->dir, c->data + a, c->len - a, c->len - a,
						   i, on_ex, r),
				 0);
	}
	stream_end(s);
}

/* Consecutive segments of one direction as one chunk: the reads of a faster reader. */
static void feed_coalesced(const struct fixture *fx, struct run *r)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_UNKNOWN, NULL);
	uint8_t *buf = malloc(1 << 20);
	size_t i = 0;

	run_init(r);
	while (i < fx->n) {
		enum kafka_dir dir = fx->chunks[i].dir;
		size_t n = 0;

		for (; i < fx->n && fx->chunks[i].dir == dir; i++) {
			memcpy(buf + n, fx->chunks[i].data, fx->chunks[i].len);
			n += fx->chunks[i].len;
		}
		ck_assert_int_eq(kafka_stream_feed(s, dir, buf, n, n, i, on_ex, r), 0);
	}
	free(buf);
	stream_end(s);
}

/* Only the first `cap` bytes of each segment captured: the capture's bounded copy. */
static struct kafka_stream_stats feed_capped(const struct fixture *fx, struct run *r, size_t cap)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);

	run_init(r);
	for (size_t i = 0; i < fx->n; i++) {
		const struct chunk *c = &fx->chunks[i];

		ck_assert_int_eq(kafka_stream_feed(s, c->dir, c->data, c->len < cap ? c->len : cap,
						   c->len, i, on_ex, r),
				 0);
	}
	return stream_end(s);
}

/* ---- real clients: exact counts ------------------------------------------------------------- */

START_TEST(test_kcat_produce)
{
	struct fixture fx;
	struct run r;
	struct kafka_stream_stats st;

	fixture_load(&fx, "kcat-produce-1.bin");
	st = feed_whole(&fx, &r);
	ck_assert_uint_eq(r.by_api[KAFKA_API_PRODUCE], 1);
	ck_assert_uint_eq(r.produced_ok, 5);
	ck_assert_uint_eq(r.produced_err, 0);
	/*
	 * ApiVersions v3 (a flexible request, header v2) is refused by the mock: v0 follows.
	 * That refusal is the version handshake, not an error.
	 */
	ck_assert_uint_eq(r.by_api[KAFKA_API_API_VERSIONS], 2);
	ck_assert(strstr(r.log, "ApiVersions v3 #1 err= "));
	ck_assert(strstr(r.log, "ApiVersions v0 #2 err= "));
	ck_assert(strstr(r.log, "Produce v7 #5 err= group= answered=1\n"
				"  pstest-a/0 err= records=5 uncounted=0"));
	ck_assert(r.all_complete);
	ck_assert_uint_eq(st.lost + st.parse_errors + st.desyncs + st.uncounted, 0);
	ck_assert_int_eq(st.role, KAFKA_ROLE_CLIENT);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_librdkafka_batches)
{
	struct fixture fx;
	struct run r;

	fixture_load(&fx, "rdkafka-batch-1.bin");
	feed_whole(&fx, &r);
	ck_assert_uint_eq(r.by_api[KAFKA_API_PRODUCE], 3);
	ck_assert_uint_eq(r.produced_ok, 30);
	ck_assert_uint_eq(r.uncounted, 0);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_kafka_python_sync_produce)
{
	struct fixture fx;
	struct run r;

	fixture_load(&fx, "kpy-sync-2.bin");
	feed_whole(&fx, &r);
	ck_assert_uint_eq(r.by_api[KAFKA_API_PRODUCE], 3);
	ck_assert_uint_eq(r.produced_ok, 3);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_produce_errors_and_retries)
{
	struct fixture fx;
	struct run r;

	fixture_load(&fx, "rdkafka-errors-1.bin");
	feed_whole(&fx, &r);
	/* 2 messages; the first one's request failed twice before its retry went through. */
	ck_assert_uint_eq(r.by_api[KAFKA_API_PRODUCE], 4);
	ck_assert_uint_eq(r.produced_err, 2);
	ck_assert_uint_eq(r.produced_ok, 2);
	ck_assert_str_eq(kafka_error_name(r.first_produce_error), "NOT_LEADER_OR_FOLLOWER");
	fixture_free(&fx);
}
END_TEST

START_TEST(test_kafka_python_fetch)
{
	struct fixture fx;
	struct run r;
	struct kafka_stream_stats st;

	fixture_load(&fx, "kpy-consume-3.bin");
	st = feed_whole(&fx, &r);
	ck_assert_uint_eq(r.by_api[KAFKA_API_FETCH], 3);
	ck_assert_uint_eq(r.consumed, 30);
	ck_assert_int_eq(r.last_hw, 30);
	ck_assert_int_eq(r.last_next, 30);
	ck_assert(strstr(r.log,
			 "Fetch v4 #3 err= group= answered=1\n"
			 "  pstest-a/0 err= records=10 uncounted=0 fetch=0 hw=30 next=10\n"));
	ck_assert(
		strstr(r.log, "  pstest-a/0 err= records=10 uncounted=0 fetch=10 hw=30 next=20\n"));
	ck_assert_uint_eq(r.by_api[2], 1); /* ListOffsets: counted, not decoded */
	ck_assert(strstr(r.log, "ListOffsets v1 #1 err= "));
	ck_assert_uint_eq(st.parse_errors + st.lost, 0);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_librdkafka_group_fetch)
{
	struct fixture fx;
	struct run r;

	fixture_load(&fx, "rdkafka-group-2.bin");
	feed_whole(&fx, &r);
	ck_assert_uint_eq(r.by_api[KAFKA_API_FETCH], 3);
	ck_assert_uint_eq(r.consumed, 30);
	ck_assert_int_eq(r.last_hw, 30);
	ck_assert_int_eq(r.last_next, 30);
	ck_assert(strstr(r.log, "Fetch v11 #8 err= group=pstest-group answered=1\n"));
	ck_assert_uint_eq(r.by_api[KAFKA_API_FIND_COORDINATOR], 2);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_group_apis)
{
	struct fixture fx;
	struct run r;
	static const char *const librdkafka[] = {
		"JoinGroup v5 #4 err= group=pstest-group answered=1\n",
		"SyncGroup v3 #6 err= group=pstest-group answered=1\n",
		"Heartbeat v3 #7 err= group=pstest-group answered=1\n",
		"OffsetFetch v5 #8 err= group=pstest-group answered=1\n  pstest-a/0 err= ",
		"OffsetCommit v7 #9 err= group=pstest-group answered=1\n  pstest-a/0 err= ",
		"LeaveGroup v1 #10 err= group=pstest-group answered=1\n",
	};
	static const char *const kafka_python[] = {
		"JoinGroup v2 #1 err= group=pstest-kgroup answered=1\n",
		"SyncGroup v1 #2 err= group=pstest-kgroup answered=1\n",
		"OffsetFetch v1 #3 err= group=pstest-kgroup answered=1\n  pstest-a/0 err= ",
		"OffsetCommit v2 #4 err= group=pstest-kgroup answered=1\n  pstest-a/0 err= ",
		"LeaveGroup v1 #5 err= group=pstest-kgroup answered=1\n",
	};

	fixture_load(&fx, "rdkafka-group-3.bin");
	feed_whole(&fx, &r);
	for (size_t i = 0; i < sizeof(librdkafka) / sizeof(librdkafka[0]); i++)
		ck_assert_msg(strstr(r.log, librdkafka[i]), "missing %s in\n%s", librdkafka[i],
			      r.log);
	fixture_free(&fx);

	fixture_load(&fx, "kpy-group-3.bin");
	feed_whole(&fx, &r);
	for (size_t i = 0; i < sizeof(kafka_python) / sizeof(kafka_python[0]); i++)
		ck_assert_msg(strstr(r.log, kafka_python[i]), "missing %s in\n%s", kafka_python[i],
			      r.log);
	fixture_free(&fx);

	fixture_load(&fx, "kpy-group-2.bin");
	feed_whole(&fx, &r);
	ck_assert(strstr(r.log, "FindCoordinator v0 #3 err= group=pstest-kgroup answered=1\n"));
	fixture_free(&fx);
}
END_TEST

/* ---- every fixture, however the reads fell ----------------------------------------------------- */

static const char *const all_fixtures[] = {
	"kcat-produce-1.bin",	"kpy-consume-1.bin",   "kpy-consume-2.bin",   "kpy-consume-3.bin",
	"kpy-group-1.bin",	"kpy-group-2.bin",     "kpy-group-3.bin",     "kpy-group-4.bin",
	"kpy-group-5.bin",	"kpy-sync-1.bin",      "kpy-sync-2.bin",      "rdkafka-batch-1.bin",
	"rdkafka-errors-1.bin", "rdkafka-group-1.bin", "rdkafka-group-2.bin", "rdkafka-group-3.bin",
};

START_TEST(test_split_everywhere)
{
	struct fixture fx;
	static struct run whole, split;
	size_t longest = 0;

	fixture_load(&fx, all_fixtures[_i]);
	feed_whole(&fx, &whole);
	ck_assert_uint_gt(whole.n_exchanges, 0);
	for (size_t i = 0; i < fx.n; i++)
		if (fx.chunks[i].len > longest)
			longest = fx.chunks[i].len;
	for (size_t at = 0; at <= longest; at++) {
		feed_split(&fx, &split, at);
		ck_assert_msg(strcmp(whole.log, split.log) == 0, "%s split at %zu:\n%s\nvs\n%s",
			      all_fixtures[_i], at, whole.log, split.log);
	}
	feed_coalesced(&fx, &split);
	ck_assert_msg(strcmp(whole.log, split.log) == 0, "%s coalesced:\n%s\nvs\n%s",
		      all_fixtures[_i], whole.log, split.log);
	fixture_free(&fx);
}
END_TEST

/*
 * Bounded copies: whatever the capture missed, framing goes on (the size prefixes that
 * open each syscall's bytes are seen) and nothing is counted that was not there; what
 * could not be counted is counted as uncounted batches.
 */
START_TEST(test_capped_copies)
{
	static const size_t caps[] = { 4, 8, 16, 24, 40, 64, 100, 200 };
	struct fixture fx;
	static struct run whole, capped;

	fixture_load(&fx, all_fixtures[_i]);
	feed_whole(&fx, &whole);
	for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
		struct kafka_stream_stats st = feed_capped(&fx, &capped, caps[k]);

		ck_assert_uint_le(capped.produced_ok + capped.produced_err,
				  whole.produced_ok + whole.produced_err);
		ck_assert_uint_le(capped.consumed, whole.consumed);
		ck_assert_uint_le(capped.n_exchanges, whole.n_exchanges);
		if (capped.produced_ok + capped.produced_err <
			    whole.produced_ok + whole.produced_err ||
		    capped.consumed < whole.consumed)
			ck_assert_msg(capped.uncounted > 0 || !capped.all_complete ||
					      st.desyncs > 0 || st.lost > 0,
				      "%s capped at %zu: records missing without a trace",
				      all_fixtures[_i], caps[k]);
	}
	fixture_free(&fx);
}
END_TEST

/* Segments whose requests and responses are all in one read each still frame exactly. */
START_TEST(test_capped_at_4096_is_exact)
{
	struct fixture fx;
	static struct run whole, capped;

	fixture_load(&fx, all_fixtures[_i]);
	feed_whole(&fx, &whole);
	feed_capped(&fx, &capped, 4096);
	ck_assert_str_eq(whole.log, capped.log);
	fixture_free(&fx);
}
END_TEST

/* ---- built frames: flexible versions, legacy sets, gaps, order --------------------------------- */

struct buf {
	uint8_t b[16384];
	size_t n;
};

static void w_bytes(struct buf *w, const void *p, size_t n)
{
	ck_assert(w->n + n <= sizeof(w->b));
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void w_be(struct buf *w, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--) {
		uint8_t c = (uint8_t)(v >> (8 * i));

		w_bytes(w, &c, 1);
	}
}

static void w_uvarint(struct buf *w, uint64_t v)
{
	while (v >= 0x80) {
		uint8_t c = (uint8_t)(v | 0x80);

		w_bytes(w, &c, 1);
		v >>= 7;
	}
	w_be(w, v, 1);
}

static void w_str(struct buf *w, const char *s)
{
	w_be(w, strlen(s), 2);
	w_bytes(w, s, strlen(s));
}

static void w_cstr(struct buf *w, const char *s)
{
	w_uvarint(w, strlen(s) + 1);
	w_bytes(w, s, strlen(s));
}

/* A tagged field section with one unknown tag, which must be skipped. */
static void w_tags(struct buf *w)
{
	w_uvarint(w, 1);
	w_uvarint(w, 7);
	w_uvarint(w, 3);
	w_bytes(w, "abc", 3);
}

/* A magic 2 record batch of n records (their bytes a stand-in: only the header is read). */
static void w_batch(struct buf *w, int64_t base, int32_t n, uint16_t attributes)
{
	static const char body[] = "pstest-secret-payload";

	w_be(w, (uint64_t)base, 8);
	w_be(w, 49 + sizeof(body), 4); /* batchLength: from leader epoch to the end */
	w_be(w, 0, 4);		       /* partition leader epoch */
	w_be(w, 2, 1);		       /* magic */
	w_be(w, 0, 4);		       /* crc */
	w_be(w, attributes, 2);
	w_be(w, (uint64_t)(n - 1), 4); /* last offset delta */
	w_be(w, 0, 8);
	w_be(w, 0, 8);
	w_be(w, UINT64_MAX, 8);
	w_be(w, 0xffff, 2);
	w_be(w, 0xffffffff, 4);
	w_be(w, (uint64_t)n, 4);
	w_bytes(w, body, sizeof(body));
}

/* A magic 0 or 1 message (uncompressed unless attributes say otherwise). */
static void w_legacy(struct buf *w, int64_t offset, uint8_t magic, uint8_t attributes)
{
	size_t size = 4 + 1 + 1 + (magic ? 8 : 0) + 4 + 4 + 5;

	w_be(w, (uint64_t)offset, 8);
	w_be(w, size, 4);
	w_be(w, 0, 4); /* crc */
	w_be(w, magic, 1);
	w_be(w, attributes, 1);
	if (magic)
		w_be(w, 0, 8);
	w_be(w, 0xffffffff, 4); /* null key */
	w_be(w, 5, 4);
	w_bytes(w, "value", 5);
}

/* Wraps a body in a frame: size prefix, then a request header v1 or v2. */
static void w_request(struct buf *out, int16_t key, int16_t version, int32_t corr, bool flex,
		      const struct buf *body)
{
	struct buf h = { .n = 0 };

	w_be(&h, (uint16_t)key, 2);
	w_be(&h, (uint16_t)version, 2);
	w_be(&h, (uint32_t)corr, 4);
	w_str(&h, "pstest-client"); /* never compact */
	if (flex)
		w_tags(&h);
	w_be(out, h.n + body->n, 4);
	w_bytes(out, h.b, h.n);
	w_bytes(out, body->b, body->n);
}

static void w_response(struct buf *out, int32_t corr, bool flex, const struct buf *body)
{
	struct buf h = { .n = 0 };

	w_be(&h, (uint32_t)corr, 4);
	if (flex)
		w_tags(&h);
	w_be(out, h.n + body->n, 4);
	w_bytes(out, h.b, h.n);
	w_bytes(out, body->b, body->n);
}

static void feed_buf(struct kafka_stream *s, enum kafka_dir dir, const struct buf *b, struct run *r)
{
	ck_assert_int_eq(kafka_stream_feed(s, dir, b->b, b->n, b->n, 1, on_ex, r), 0);
}

/* Produce v9 and its response, flexible: compact strings, arrays, bytes, tagged fields. */
START_TEST(test_flexible_produce)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_UNKNOWN, NULL);
	struct buf body = { .n = 0 }, req = { .n = 0 }, rb = { .n = 0 }, resp = { .n = 0 };
	struct buf recs = { .n = 0 };
	static struct run r;

	run_init(&r);
	w_batch(&recs, 0, 4, 0);
	w_batch(&recs, 0, 3, 0);
	w_uvarint(&body, 0); /* transactional_id: null */
	w_be(&body, 1, 2);   /* acks */
	w_be(&body, 30000, 4);
	w_uvarint(&body, 2); /* 1 topic */
	w_cstr(&body, "orders");
	w_uvarint(&body, 3); /* 2 partitions */
	w_be(&body, 0, 4);
	w_uvarint(&body, recs.n + 1);
	w_bytes(&body, recs.b, recs.n);
	w_tags(&body);
	w_be(&body, 1, 4);
	w_uvarint(&body, 0); /* null records */
	w_tags(&body);
	w_tags(&body);
	w_tags(&body);
	w_request(&req, KAFKA_API_PRODUCE, 9, 42, true, &body);

	w_uvarint(&rb, 2);
	w_cstr(&rb, "orders");
	w_uvarint(&rb, 3);
	for (int p = 0; p < 2; p++) {
		w_be(&rb, (uint64_t)p, 4);
		w_be(&rb, p ? 6 : 0, 2); /* partition 1: NOT_LEADER_OR_FOLLOWER */
		w_be(&rb, 100, 8);
		w_be(&rb, (uint64_t)-1, 8);
		w_be(&rb, 0, 8);
		w_uvarint(&rb, 1); /* record_errors: empty */
		w_uvarint(&rb, 0); /* error_message: null */
		w_tags(&rb);
	}
	w_tags(&rb);
	w_be(&rb, 0, 4); /* throttle */
	w_tags(&rb);
	w_response(&resp, 42, true, &rb);

	feed_buf(s, KAFKA_DIR_OUT, &req, &r);
	feed_buf(s, KAFKA_DIR_IN, &resp, &r);
	ck_assert_str_eq(r.log, "Produce v9 #42 err= group= answered=1\n"
				"  orders/0 err= records=7 uncounted=0 fetch=-1 hw=-1 next=-1\n"
				"  orders/1 err=NOT_LEADER_OR_FOLLOWER records=0 uncounted=0 "
				"fetch=-1 hw=-1 next=-1\n");
	ck_assert(r.all_complete);
	stream_end(s);
}
END_TEST

/* Metadata v12 names a topic id; Fetch v13 asks by id alone; v12-style flexible fields. */
START_TEST(test_fetch_by_topic_id)
{
	static const uint8_t id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf b = { .n = 0 }, f = { .n = 0 }, recs = { .n = 0 };
	static struct run r;

	run_init(&r);
	/* Metadata v12 request: one topic by name. */
	w_uvarint(&b, 2);
	w_bytes(&b, (uint8_t[16]){ 0 }, 16);
	w_cstr(&b, "clicks");
	w_tags(&b);
	w_be(&b, 1, 1); /* allow_auto_topic_creation */
	w_be(&b, 0, 1); /* include_topic_authorized_operations */
	w_tags(&b);
	w_request(&f, KAFKA_API_METADATA, 12, 1, true, &b);
	feed_buf(s, KAFKA_DIR_OUT, &f, &r);
	b.n = f.n = 0;
	w_be(&b, 0, 4);	  /* throttle */
	w_uvarint(&b, 2); /* brokers */
	w_be(&b, 1, 4);
	w_cstr(&b, "localhost");
	w_be(&b, 9092, 4);
	w_uvarint(&b, 0); /* rack null */
	w_tags(&b);
	w_cstr(&b, "cluster");
	w_be(&b, 1, 4);	  /* controller */
	w_uvarint(&b, 2); /* topics */
	w_be(&b, 0, 2);
	w_cstr(&b, "clicks");
	w_bytes(&b, id, 16);
	w_be(&b, 0, 1);	  /* is_internal */
	w_uvarint(&b, 2); /* partitions */
	w_be(&b, 0, 2);
	w_be(&b, 3, 4); /* partition 3 */
	w_be(&b, 1, 4);
	w_be(&b, 0, 4);
	w_uvarint(&b, 2);
	w_be(&b, 1, 4); /* replicas */
	w_uvarint(&b, 2);
	w_be(&b, 1, 4);	  /* isr */
	w_uvarint(&b, 1); /* offline */
	w_tags(&b);
	w_be(&b, 0, 4); /* topic_authorized_operations */
	w_tags(&b);
	w_tags(&b);
	w_response(&f, 1, true, &b);
	feed_buf(s, KAFKA_DIR_IN, &f, &r);

	/* Fetch v13 request: topic by id, partition 3 from offset 95. */
	b.n = f.n = 0;
	w_be(&b, (uint32_t)-1, 4); /* replica_id */
	w_be(&b, 500, 4);
	w_be(&b, 1, 4);
	w_be(&b, 1 << 20, 4);
	w_be(&b, 0, 1);
	w_be(&b, 0, 4);
	w_be(&b, (uint32_t)-1, 4);
	w_uvarint(&b, 2);
	w_bytes(&b, id, 16);
	w_uvarint(&b, 2);
	w_be(&b, 3, 4);
	w_be(&b, 0, 4);	 /* current_leader_epoch */
	w_be(&b, 95, 8); /* fetch_offset */
	w_be(&b, (uint32_t)-1, 4);
	w_be(&b, 0, 8);
	w_be(&b, 1 << 20, 4);
	w_tags(&b);
	w_tags(&b);
	w_uvarint(&b, 1); /* forgotten topics */
	w_cstr(&b, "");	  /* rack */
	w_tags(&b);
	w_request(&f, KAFKA_API_FETCH, 13, 2, true, &b);
	feed_buf(s, KAFKA_DIR_OUT, &f, &r);

	/* Response: batch 90..99 (5 of them before the fetch offset), then a control batch. */
	w_batch(&recs, 90, 10, 0);
	w_batch(&recs, 100, 1, 0x20);
	b.n = f.n = 0;
	w_be(&b, 0, 4);
	w_be(&b, 0, 2);
	w_be(&b, 0, 4);
	w_uvarint(&b, 2);
	w_bytes(&b, id, 16);
	w_uvarint(&b, 2);
	w_be(&b, 3, 4);
	w_be(&b, 0, 2);
	w_be(&b, 130, 8); /* high watermark */
	w_be(&b, 130, 8);
	w_be(&b, 0, 8);
	w_uvarint(&b, 0); /* aborted: null */
	w_be(&b, (uint32_t)-1, 4);
	w_uvarint(&b, recs.n + 1);
	w_bytes(&b, recs.b, recs.n);
	w_tags(&b);
	w_tags(&b);
	w_tags(&b);
	w_response(&f, 2, true, &b);
	feed_buf(s, KAFKA_DIR_IN, &f, &r);

	ck_assert_msg(strstr(r.log, "Fetch v13 #2 err= group= answered=1\n"
				    "  clicks/3 err= records=5 uncounted=0 fetch=95 hw=130 "
				    "next=101\n"),
		      "%s", r.log);
	ck_assert(r.all_complete);
	stream_end(s);
}
END_TEST

/* A Produce v2 with legacy message sets: magic 0 and 1 count 1 each; compressed: uncounted. */
START_TEST(test_legacy_message_sets)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf body = { .n = 0 }, req = { .n = 0 }, recs = { .n = 0 }, rb = { .n = 0 };
	static struct run r;

	run_init(&r);
	w_legacy(&recs, 0, 1, 0);
	w_legacy(&recs, 1, 1, 0);
	w_legacy(&recs, 2, 0, 0);
	w_legacy(&recs, 3, 1, 1); /* gzip wrapper */
	w_be(&body, 1, 2);
	w_be(&body, 1000, 4);
	w_be(&body, 1, 4);
	w_str(&body, "legacy");
	w_be(&body, 1, 4);
	w_be(&body, 0, 4);
	w_be(&body, recs.n, 4);
	w_bytes(&body, recs.b, recs.n);
	w_request(&req, KAFKA_API_PRODUCE, 2, 7, false, &body);
	feed_buf(s, KAFKA_DIR_OUT, &req, &r);
	w_be(&rb, 1, 4);
	w_str(&rb, "legacy");
	w_be(&rb, 1, 4);
	w_be(&rb, 0, 4);
	w_be(&rb, 0, 2);
	w_be(&rb, 0, 8);
	w_be(&rb, 0, 8);
	w_be(&rb, 0, 4); /* throttle */
	req.n = 0;
	w_response(&req, 7, false, &rb);
	feed_buf(s, KAFKA_DIR_IN, &req, &r);
	ck_assert_str_eq(r.log, "Produce v2 #7 err= group= answered=1\n"
				"  legacy/0 err= records=3 uncounted=1 fetch=-1 hw=-1 next=-1\n");
	stream_end(s);
}
END_TEST

/*
 * A Fetch v4 response of three batches (10, 20 and 5 records from offset 0), read in
 * three syscalls cut at the batches; the middle one copies `middle` of its bytes.
 */
/* A Fetch v4 (#9) of topic big, partition 0, from offset 0. */
static void fetch_big_v4(struct kafka_stream *s, struct run *r)
{
	struct buf b = { .n = 0 }, f = { .n = 0 };

	w_be(&b, (uint32_t)-1, 4);
	w_be(&b, 500, 4);
	w_be(&b, 1, 4);
	w_be(&b, 1 << 20, 4);
	w_be(&b, 0, 1);
	w_be(&b, 1, 4);
	w_str(&b, "big");
	w_be(&b, 1, 4);
	w_be(&b, 0, 4);
	w_be(&b, 0, 8);
	w_be(&b, 1 << 20, 4);
	w_request(&f, KAFKA_API_FETCH, 4, 9, false, &b);
	feed_buf(s, KAFKA_DIR_OUT, &f, r);
}

static void fetch_three_batches(struct run *r, size_t middle)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf b = { .n = 0 }, f = { .n = 0 }, recs = { .n = 0 };
	size_t second, third, cut1, cut2;

	run_init(r);
	fetch_big_v4(s, r);

	w_batch(&recs, 0, 10, 0);
	second = recs.n;
	w_batch(&recs, 10, 20, 0);
	third = recs.n;
	w_batch(&recs, 30, 5, 0);
	b.n = f.n = 0;
	w_be(&b, 0, 4);
	w_be(&b, 1, 4);
	w_str(&b, "big");
	w_be(&b, 1, 4);
	w_be(&b, 0, 4);
	w_be(&b, 0, 2);
	w_be(&b, 35, 8);
	w_be(&b, 35, 8);
	w_be(&b, (uint32_t)-1, 4); /* aborted: null */
	w_be(&b, recs.n, 4);
	w_bytes(&b, recs.b, recs.n);
	w_response(&f, 9, false, &b);
	cut1 = f.n - recs.n + second;
	cut2 = f.n - recs.n + third;
	if (middle > cut2 - cut1)
		middle = cut2 - cut1;
	ck_assert_int_eq(kafka_stream_feed(s, KAFKA_DIR_IN, f.b, cut1, cut1, 2, on_ex, r), 0);
	ck_assert_int_eq(
		kafka_stream_feed(s, KAFKA_DIR_IN, f.b + cut1, middle, cut2 - cut1, 3, on_ex, r),
		0);
	ck_assert_int_eq(
		kafka_stream_feed(s, KAFKA_DIR_IN, f.b + cut2, f.n - cut2, f.n - cut2, 4, on_ex, r),
		0);
	stream_end(s);
}

START_TEST(test_fetch_gap_counts_uncounted)
{
	static struct run r;

	/* The middle batch's offset and length were copied: it is skipped, uncounted. */
	fetch_three_batches(&r, 12);
	ck_assert_str_eq(r.log, "Fetch v4 #9 err= group= answered=1\n"
				"  big/0 err= records=15 uncounted=1 fetch=0 hw=35 next=35\n");
	ck_assert_uint_eq(r.uncounted, 1);
	/*
	 * Nothing of it was copied: the third batch cannot be found, and where the consumer
	 * goes next is unknown (no lag from this response).
	 */
	fetch_three_batches(&r, 0);
	ck_assert_str_eq(r.log, "Fetch v4 #9 err= group= answered=1\n"
				"  big/0 err= records=10 uncounted=1 fetch=0 hw=35 next=-1\n");
	/* All of it copied: exact. */
	fetch_three_batches(&r, 1000);
	ck_assert_str_eq(r.log, "Fetch v4 #9 err= group= answered=1\n"
				"  big/0 err= records=35 uncounted=0 fetch=0 hw=35 next=35\n");
}
END_TEST

/*
 * What the kernel's walker sends of a Fetch response read in one syscall: its
 * structure and each batch's 61-byte header, at their offsets; the aborted
 * transactions and the records themselves are gaps. Counts are exact.
 */
START_TEST(test_fetch_walked_pieces)
{
	static struct run r;
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf b = { .n = 0 }, f = { .n = 0 }, recs = { .n = 0 };
	size_t batch[3], aborted, records, at[8][2], n = 0;

	run_init(&r);
	fetch_big_v4(s, &r);

	for (int i = 0; i < 3; i++) {
		batch[i] = recs.n;
		w_batch(&recs, i * 100, 100, 0);
		for (int j = 0; j < 500; j++) /* record bytes nobody copies */
			w_be(&recs, 0xab, 1);
	}
	/* w_batch's length covers its own records only: the filler belongs to it */
	for (int i = 0; i < 3; i++) {
		size_t end = i < 2 ? batch[i + 1] : recs.n;

		recs.b[batch[i] + 8] = (uint8_t)((end - batch[i] - 12) >> 24);
		recs.b[batch[i] + 9] = (uint8_t)((end - batch[i] - 12) >> 16);
		recs.b[batch[i] + 10] = (uint8_t)((end - batch[i] - 12) >> 8);
		recs.b[batch[i] + 11] = (uint8_t)(end - batch[i] - 12);
	}
	b.n = f.n = 0;
	w_be(&b, 0, 4);
	w_be(&b, 1, 4);
	w_str(&b, "big");
	w_be(&b, 1, 4);
	w_be(&b, 0, 4);
	w_be(&b, 0, 2);
	w_be(&b, 300, 8);
	w_be(&b, 300, 8);
	w_be(&b, 2, 4); /* two aborted transactions: stepped over, never copied */
	aborted = b.n;
	w_be(&b, 7, 8);
	w_be(&b, 0, 8);
	w_be(&b, 8, 8);
	w_be(&b, 50, 8);
	w_be(&b, recs.n, 4);
	records = b.n;
	w_bytes(&b, recs.b, recs.n);
	w_response(&f, 9, false, &b);
	aborted += f.n - b.n;
	records += f.n - b.n;
	/* Captured: up to the aborted entries, from their end to the first batch's header's end, each
	 * other batch's header. */
	at[n][0] = 0, at[n++][1] = aborted;
	at[n][0] = aborted + 32, at[n++][1] = records + batch[0] + 61;
	at[n][0] = records + batch[1], at[n++][1] = records + batch[1] + 61;
	at[n][0] = records + batch[2], at[n++][1] = records + batch[2] + 61;
	for (size_t i = 0; i < n; i++) {
		size_t next = i + 1 < n ? at[i + 1][0] : f.n;

		ck_assert_int_eq(kafka_stream_feed(s, KAFKA_DIR_IN, f.b + at[i][0], at[i][1] - at[i][0],
						   next - at[i][0], 2, on_ex, &r),
				 0);
	}
	stream_end(s);
	ck_assert_str_eq(r.log, "Fetch v4 #9 err= group= answered=1\n"
				"  big/0 err= records=300 uncounted=0 fetch=0 hw=300 next=300\n");
}
END_TEST

/* Responses in another order than their requests: paired by correlation id. */
START_TEST(test_out_of_order_responses)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf b = { .n = 0 }, f = { .n = 0 };
	static struct run r;

	run_init(&r);
	for (int corr = 1; corr <= 2; corr++) {
		b.n = 0;
		w_str(&b, corr == 1 ? "group-one" : "group-two");
		w_be(&b, 1, 4);
		w_str(&b, "member");
		w_request(&f, KAFKA_API_HEARTBEAT, 1, corr, false, &b);
	}
	feed_buf(s, KAFKA_DIR_OUT, &f, &r); /* both requests in one write */
	f.n = 0;
	for (int corr = 2; corr >= 1; corr--) {
		b.n = 0;
		w_be(&b, 0, 4);
		w_be(&b, corr == 2 ? 27 : 0, 2); /* REBALANCE_IN_PROGRESS for the second */
		w_response(&f, corr, false, &b);
	}
	feed_buf(s, KAFKA_DIR_IN, &f, &r);
	ck_assert_str_eq(r.log, "Heartbeat v1 #2 err=REBALANCE_IN_PROGRESS group=group-two "
				"answered=1\n"
				"Heartbeat v1 #1 err= group=group-one answered=1\n");
	stream_end(s);
}
END_TEST

/* acks=0: no response comes, the records were sent all the same. */
START_TEST(test_produce_acks_zero)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf body = { .n = 0 }, req = { .n = 0 }, recs = { .n = 0 };
	static struct run r;
	struct kafka_stream_stats st;

	run_init(&r);
	w_batch(&recs, 0, 6, 0);
	w_be(&body, 0xffff, 2); /* transactional_id null */
	w_be(&body, 0, 2);	/* acks 0 */
	w_be(&body, 1000, 4);
	w_be(&body, 1, 4);
	w_str(&body, "fire");
	w_be(&body, 1, 4);
	w_be(&body, 2, 4);
	w_be(&body, recs.n, 4);
	w_bytes(&body, recs.b, recs.n);
	w_request(&req, KAFKA_API_PRODUCE, 7, 3, false, &body);
	feed_buf(s, KAFKA_DIR_OUT, &req, &r);
	ck_assert_str_eq(r.log, "Produce v7 #3 err= group= answered=0\n"
				"  fire/2 err= records=6 uncounted=0 fetch=-1 hw=-1 next=-1\n");
	st = stream_end(s);
	ck_assert_uint_eq(st.lost, 0);
}
END_TEST

/* An unanswered request is lost at close, never reported; a stray response is lost too. */
START_TEST(test_unpaired)
{
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	struct buf b = { .n = 0 }, f = { .n = 0 };
	static struct run r;
	struct kafka_stream_stats st;

	run_init(&r);
	w_str(&b, "g");
	w_request(&f, KAFKA_API_HEARTBEAT, 0, 5, false, &b);
	feed_buf(s, KAFKA_DIR_OUT, &f, &r);
	b.n = f.n = 0;
	w_be(&b, 0, 2);
	w_response(&f, 6, false, &b);
	feed_buf(s, KAFKA_DIR_IN, &f, &r);
	st = stream_end(s);
	ck_assert_uint_eq(r.n_exchanges, 0);
	ck_assert_uint_eq(st.lost, 2);
}
END_TEST

/* Other protocols on the port: -EPROTO from the first bytes, and for good. */
START_TEST(test_not_kafka)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const uint8_t tls[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03 };
	static const uint8_t bad_key[] = { 0, 0, 0, 12, 0x7f, 0x00, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0 };
	struct kafka_stream *s;
	struct kafka_stream_stats st;

	s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	ck_assert_int_eq(kafka_stream_feed(s, KAFKA_DIR_OUT, (const uint8_t *)http,
					   sizeof(http) - 1, sizeof(http) - 1, 1, on_ex, NULL),
			 -EPROTO);
	ck_assert_int_eq(
		kafka_stream_feed(s, KAFKA_DIR_IN, (const uint8_t *)"x", 1, 1, 2, on_ex, NULL),
		-EPROTO);
	kafka_stream_get_stats(s, &st);
	ck_assert(st.not_kafka);
	kafka_stream_free(s);

	s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	ck_assert_int_eq(kafka_stream_feed(s, KAFKA_DIR_OUT, tls, sizeof(tls), 517, 1, on_ex, NULL),
			 -EPROTO);
	kafka_stream_free(s);

	s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	ck_assert_int_eq(kafka_stream_feed(s, KAFKA_DIR_OUT, bad_key, sizeof(bad_key),
					   sizeof(bad_key), 1, on_ex, NULL),
			 -EPROTO);
	kafka_stream_free(s);
}
END_TEST

/* A gap over a size prefix loses framing; the next syscall that starts a frame resyncs. */
START_TEST(test_resync_after_gap)
{
	struct fixture fx;
	struct kafka_stream *s = kafka_stream_new(KAFKA_ROLE_CLIENT, NULL);
	static struct run r;
	struct kafka_stream_stats st;
	size_t skipped = 0;

	fixture_load(&fx, "rdkafka-batch-1.bin");
	run_init(&r);
	for (size_t i = 0; i < fx.n; i++) {
		const struct chunk *c = &fx.chunks[i];

		/* The first Produce request is not captured at all: a whole syscall unseen. */
		if (c->dir == KAFKA_DIR_OUT && c->len > 8 && c->data[5] == KAFKA_API_PRODUCE &&
		    !skipped) {
			skipped = c->len;
			ck_assert_int_eq(
				kafka_stream_feed(s, c->dir, c->data, 0, c->len, i, on_ex, &r), 0);
			continue;
		}
		ck_assert_int_eq(
			kafka_stream_feed(s, c->dir, c->data, c->len, c->len, i, on_ex, &r), 0);
	}
	kafka_stream_get_stats(s, &st);
	ck_assert_uint_gt(skipped, 0);
	ck_assert_uint_eq(st.desyncs, 1);
	ck_assert_uint_eq(r.by_api[KAFKA_API_PRODUCE], 2);
	ck_assert_uint_eq(r.produced_ok, 20);
	stream_end(s);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(kafka_api_name(0), "Produce");
	ck_assert_str_eq(kafka_api_name(18), "ApiVersions");
	ck_assert_str_eq(kafka_api_name(1000), "Unknown");
	ck_assert_str_eq(kafka_operation_name(0), "send");
	ck_assert_str_eq(kafka_operation_name(1), "poll");
	ck_assert_str_eq(kafka_operation_name(8), "commit");
	ck_assert_str_eq(kafka_operation_name(3), "metadata");
	ck_assert_str_eq(kafka_operation_name(22), "initproducerid");
	ck_assert_str_eq(kafka_error_name(0), "");
	ck_assert_str_eq(kafka_error_name(-1), "UNKNOWN_SERVER_ERROR");
	ck_assert_str_eq(kafka_error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
	ck_assert_str_eq(kafka_error_name(6), "NOT_LEADER_OR_FOLLOWER");
	ck_assert_str_eq(kafka_error_name(119), "INVALID_REGISTRATION");
	ck_assert_str_eq(kafka_error_name(120), "_OTHER");
	ck_assert_str_eq(kafka_error_name(-5), "_OTHER");
}
END_TEST

static Suite *kafka_proto_suite(void)
{
	Suite *s = suite_create("kafka_proto");
	TCase *real = tcase_create("real clients");
	TCase *feeds = tcase_create("feeds");
	TCase *built = tcase_create("built frames");
	int n = (int)(sizeof(all_fixtures) / sizeof(all_fixtures[0]));

	tcase_add_test(real, test_kcat_produce);
	tcase_add_test(real, test_librdkafka_batches);
	tcase_add_test(real, test_kafka_python_sync_produce);
	tcase_add_test(real, test_produce_errors_and_retries);
	tcase_add_test(real, test_kafka_python_fetch);
	tcase_add_test(real, test_librdkafka_group_fetch);
	tcase_add_test(real, test_group_apis);
	tcase_add_test(real, test_resync_after_gap);
	suite_add_tcase(s, real);

	tcase_set_timeout(feeds, 60);
	tcase_add_loop_test(feeds, test_split_everywhere, 0, n);
	tcase_add_loop_test(feeds, test_capped_copies, 0, n);
	tcase_add_loop_test(feeds, test_capped_at_4096_is_exact, 0, n);
	suite_add_tcase(s, feeds);

	tcase_add_test(built, test_flexible_produce);
	tcase_add_test(built, test_fetch_by_topic_id);
	tcase_add_test(built, test_legacy_message_sets);
	tcase_add_test(built, test_fetch_gap_counts_uncounted);
	tcase_add_test(built, test_fetch_walked_pieces);
	tcase_add_test(built, test_out_of_order_responses);
	tcase_add_test(built, test_produce_acks_zero);
	tcase_add_test(built, test_unpaired);
	tcase_add_test(built, test_not_kafka);
	tcase_add_test(built, test_names);
	suite_add_tcase(s, built);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(kafka_proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
