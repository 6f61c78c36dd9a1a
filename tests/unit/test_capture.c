/* The capture's user side, offline: how a syscall's DATA and a walker's PIECES become chunks. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/capture.h>

#include "capture/capture.h"
#include "loader.h"
#include "ps_sockcap.h"

#define MAX_CHUNKS 16

/* What the protocol was handed: each chunk's place in the stream and its bytes. */
struct seen {
	size_t n;
	struct {
		uint64_t at, total;
		size_t len;
		uint8_t data[256];
		uint64_t ts_ns;
	} c[MAX_CHUNKS];
	uint64_t stream; /* bytes so far: where the next chunk starts */
};

static struct seen seen;
static uint64_t syscall_at; /* where the syscall being checked starts in the stream */

static void *conn_open(void *ctx, const struct ps_capture_conn *conn)
{
	(void)ctx;
	(void)conn;
	return &seen;
}

static int conn_data(void *ctx, void *state, const struct ps_capture_conn *conn,
		     const struct ps_capture_chunk *ch)
{
	struct seen *s = state;

	(void)ctx;
	(void)conn;
	ck_assert_uint_lt(s->n, MAX_CHUNKS);
	ck_assert_uint_le(ch->len, ch->total);
	ck_assert_uint_le(ch->len, sizeof(s->c[0].data));
	s->c[s->n].at = s->stream;
	s->c[s->n].total = ch->total;
	s->c[s->n].len = ch->len;
	s->c[s->n].ts_ns = ch->ts_ns;
	memcpy(s->c[s->n].data, ch->data, ch->len);
	s->n++;
	s->stream += ch->total;
	return 0;
}

static void conn_close(void *ctx, void *state, const struct ps_capture_conn *conn, uint64_t ts)
{
	(void)ctx;
	(void)state;
	(void)conn;
	(void)ts;
}

static struct ps_plugin plugin = { .name = (char *)"walked" };
static struct ps_capture_reg *reg;

static void setup(void)
{
	static const uint16_t ports[] = { 9092 };
	struct ps_capture_protocol proto = {
		.struct_size = sizeof(proto),
		.name = "walked",
		.ports = ports,
		.n_ports = 1,
		.capture_bytes = 64,
		.walker = PS_CAPTURE_WALK_KAFKA,
		.conn_open = conn_open,
		.conn_data = conn_data,
		.conn_close = conn_close,
	};

	memset(&seen, 0, sizeof(seen));
	syscall_at = 0;
	ps_capture_set_offline(true);
	reg = ps_capture_register(&plugin, &proto);
	ck_assert_ptr_nonnull(reg);
}

static void teardown(void)
{
	ps_capture_unregister(reg);
}

/* The byte at stream offset i of the syscall: recognisable wherever it lands. */
static uint8_t byte_at(uint64_t i)
{
	return (uint8_t)(i * 7 + 3);
}

static struct ps_sc_event header(uint32_t type, uint64_t conn, uint64_t ts, uint64_t total)
{
	return (struct ps_sc_event){
		.type = type,
		.tgid = 42,
		.tid = 42,
		.ts_ns = ts,
		.conn_id = conn,
		.total = total,
		.dir = PS_SC_DIR_IN,
		.flags = PS_SC_F_CONN,
		.family = 2,
		.rport = 9092,
		.comm = "pstest",
	};
}

/* DATA: the first len of total, then the last tail. */
static void feed_data(uint64_t conn, uint64_t ts, uint64_t total, uint32_t len, uint16_t tail)
{
	uint8_t buf[sizeof(struct ps_sc_event) + 512];
	struct ps_sc_event e = header(PS_SC_EV_DATA, conn, ts, total);

	e.len = len;
	e.tail = tail;
	memcpy(buf, &e, sizeof(e));
	for (uint32_t i = 0; i < len; i++)
		buf[sizeof(e) + i] = byte_at(i);
	for (uint16_t i = 0; i < tail; i++)
		buf[sizeof(e) + len + i] = byte_at(total - tail + i);
	ck_assert_int_eq(ps_capture_feed(buf, sizeof(e) + len + tail), 0);
}

/* PIECES: n pieces at offs[i], lens[i] each. */
static void feed_pieces(uint64_t conn, uint64_t ts, uint64_t total, size_t n, const uint32_t *offs,
			const uint16_t *lens)
{
	uint8_t buf[sizeof(struct ps_sc_event) + 8 * sizeof(struct ps_sc_piece)];
	struct ps_sc_event e = header(PS_SC_EV_PIECES, conn, ts, total);
	struct ps_sc_piece *p = (struct ps_sc_piece *)(buf + sizeof(e));

	ck_assert_uint_le(n, 8);
	e.len = (uint32_t)n;
	memcpy(buf, &e, sizeof(e));
	for (size_t i = 0; i < n; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].off = offs[i];
		p[i].len = lens[i];
		for (uint16_t j = 0; j < lens[i]; j++)
			p[i].data[j] = byte_at(offs[i] + j);
	}
	ck_assert_int_eq(ps_capture_feed(buf, sizeof(e) + n * sizeof(*p)), 0);
}

/* Chunk i starts at `at`, spans total, and holds the stream's true bytes for len. */
static void assert_chunk(size_t i, uint64_t at, size_t len, uint64_t total)
{
	ck_assert_uint_gt(seen.n, i);
	ck_assert_uint_eq(seen.c[i].at, at);
	ck_assert_uint_eq(seen.c[i].len, len);
	ck_assert_uint_eq(seen.c[i].total, total);
	for (size_t j = 0; j < len; j++)
		ck_assert_uint_eq(seen.c[i].data[j], byte_at(at - syscall_at + j));
}

START_TEST(test_data_alone)
{
	feed_data(1, 100, 1000, 64, 16);
	ck_assert_uint_eq(seen.n, 2);
	assert_chunk(0, 0, 64, 984);
	assert_chunk(1, 984, 16, 16);
}
END_TEST

START_TEST(test_pieces_between_prefix_and_tail)
{
	/* One overlaps the prefix, one lies inside it, one runs into the tail. */
	static const uint32_t offs[] = { 40, 50, 200, 500, 970 };
	static const uint16_t lens[] = { 10, 30, 61, 12, 30 };

	feed_pieces(1, 100, 1000, 5, offs, lens);
	feed_data(1, 100, 1000, 64, 16);
	ck_assert_uint_eq(seen.n, 6);
	assert_chunk(0, 0, 64, 64);	/* up to the first piece's uncovered bytes */
	assert_chunk(1, 64, 16, 136);	/* [50, 80): what the prefix did not have */
	assert_chunk(2, 200, 61, 300);
	assert_chunk(3, 500, 12, 470);
	assert_chunk(4, 970, 14, 14);	/* cut where the tail starts */
	assert_chunk(5, 984, 16, 16);
	ck_assert_uint_eq(seen.stream, 1000);
}
END_TEST

START_TEST(test_pieces_only_for_their_syscall)
{
	static const uint32_t offs[] = { 300 };
	static const uint16_t lens[] = { 20 };

	/* The DATA these were for was lost: the next syscall's DATA does not take them. */
	feed_pieces(1, 100, 1000, 1, offs, lens);
	feed_data(1, 101, 1000, 64, 0);
	ck_assert_uint_eq(seen.n, 1);
	assert_chunk(0, 0, 64, 1000);
	/* Another connection's pieces wait for theirs, and this one's DATA goes alone. */
	feed_pieces(2, 102, 1000, 1, offs, lens);
	feed_data(1, 102, 1000, 64, 0);
	ck_assert_uint_eq(seen.n, 2);
	syscall_at = 1000;
	assert_chunk(1, 1000, 64, 1000);
}
END_TEST

START_TEST(test_pieces_in_several_events)
{
	static const uint32_t a_offs[] = { 100, 200 }, b_offs[] = { 300 };
	static const uint16_t a_lens[] = { 8, 8 }, b_lens[] = { 8 };

	/* A walk of many pieces sends them in several events before its DATA. */
	feed_pieces(1, 100, 400, 2, a_offs, a_lens);
	feed_pieces(1, 100, 400, 1, b_offs, b_lens);
	feed_data(1, 100, 400, 64, 0);
	ck_assert_uint_eq(seen.n, 4);
	assert_chunk(0, 0, 64, 100);
	assert_chunk(1, 100, 8, 100);
	assert_chunk(2, 200, 8, 100);
	assert_chunk(3, 300, 8, 100);
}
END_TEST

START_TEST(test_malformed_pieces)
{
	uint8_t buf[sizeof(struct ps_sc_event)];
	struct ps_sc_event e = header(PS_SC_EV_PIECES, 1, 100, 1000);

	e.len = 3; /* three pieces announced, none there */
	memcpy(buf, &e, sizeof(e));
	ck_assert_int_eq(ps_capture_feed(buf, sizeof(buf)), -EINVAL);
	e.len = PS_SC_PIECES_MAX + 1;
	memcpy(buf, &e, sizeof(e));
	ck_assert_int_eq(ps_capture_feed(buf, sizeof(buf)), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("capture");
	TCase *tc = tcase_create("walked");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_data_alone);
	tcase_add_test(tc, test_pieces_between_prefix_and_tail);
	tcase_add_test(tc, test_pieces_only_for_their_syscall);
	tcase_add_test(tc, test_pieces_in_several_events);
	tcase_add_test(tc, test_malformed_pieces);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
