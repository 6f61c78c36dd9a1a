/*
 * Unit tests for the MongoDB decoder (plugins/mongodb/mongodb_proto.c) and its BSON
 * reader (mongodb_bson.c).
 *
 * tests/unit/data/mongodb/NAME.bin are real connections, recorded on a test machine
 * by tests/integration/mongodb/record_proxy.py between a driver and the test
 * responder (tests/integration/mongodb/responder.py): pymongo 3.11 (Debian 12's
 * python3-pymongo, plain, with zlib and with snappy compression: python3-snappy on
 * both ends), libmongoc 1.23 (Debian
 * 12's libmongoc-dev) and the Node.js driver 6.8.0, each running its drive_* script.
 * Each record is one recv() of the proxy: [direction: 0 client wrote, 1 client read,
 * 2 end of connection][length, 4 bytes LE][bytes]. NAME.truth is what the driver's
 * own command monitoring saw in that run: "command \t collection \t db \t status \t
 * count", sorted; drivers do not publish their handshake and monitoring commands
 * (hello, isMaster), so those are left out of the comparison.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>

#include "mongodb_bson.h"
#include "mongodb_proto.h"

#ifndef MONGODB_DATA_DIR
#error "MONGODB_DATA_DIR must name tests/unit/data/mongodb"
#endif

/* ---- fixtures ----------------------------------------------------------------------------- */

struct record {
	int dir; /* 0 client wrote, 1 client read, 2 end of connection */
	const uint8_t *p;
	size_t len;
};

struct fixture {
	uint8_t *data;
	struct record *rec;
	size_t n;
	char *truth;
};

static char *read_file(const char *name, size_t *len)
{
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", MONGODB_DATA_DIR, name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static char *truth_as_labels(const char *truth);

static void fixture_load(struct fixture *fx, const char *name)
{
	char file[128], *raw;
	size_t len, pos = 0, cap = 64;

	snprintf(file, sizeof(file), "%s.bin", name);
	fx->data = (uint8_t *)read_file(file, &len);
	fx->rec = malloc(cap * sizeof(*fx->rec));
	fx->n = 0;
	while (pos + 5 <= len) {
		struct record *r;
		uint32_t n = (uint32_t)fx->data[pos + 1] | (uint32_t)fx->data[pos + 2] << 8 |
			     (uint32_t)fx->data[pos + 3] << 16 | (uint32_t)fx->data[pos + 4] << 24;

		ck_assert_uint_le(pos + 5 + n, len);
		if (fx->n == cap)
			fx->rec = realloc(fx->rec, (cap *= 2) * sizeof(*fx->rec));
		r = &fx->rec[fx->n++];
		r->dir = fx->data[pos];
		r->p = fx->data + pos + 5;
		r->len = n;
		pos += 5 + n;
	}
	ck_assert_uint_eq(pos, len);
	snprintf(file, sizeof(file), "%s.truth", name);
	raw = read_file(file, &len);
	fx->truth = truth_as_labels(raw);
	free(raw);
}

static void fixture_free(struct fixture *fx)
{
	free(fx->data);
	free(fx->rec);
	free(fx->truth);
}

/* ---- what the decoder reported, as the driver's truth is written -------------------------- */

#define ROWS_MAX 128

struct table {
	char key[ROWS_MAX][300];
	unsigned count[ROWS_MAX];
	size_t n;
	unsigned monitoring; /* hello / isMaster */
	unsigned exhaust;    /* exchanges streamed with moreToCome or a legacy exhaust cursor */
	unsigned unanswered;
	unsigned no_reply;
	enum mongo_role role;
	bool mixed_roles;
};

static void table_add(struct table *t, const char *key, unsigned count);

static void status_str(const struct mongo_exchange *ex, char *buf, size_t len)
{
	if (!ex->error)
		buf[0] = '\0';
	else if (ex->has_code)
		snprintf(buf, len, "%d", ex->code);
	else
		snprintf(buf, len, "_OTHER");
}

static void on_exchange(const struct mongo_exchange *ex, void *arg)
{
	struct table *t = arg;
	char key[300], status[16];

	ck_assert(ex->role == MONGO_ROLE_CLIENT || ex->role == MONGO_ROLE_SERVER);
	if (t->role == MONGO_ROLE_UNKNOWN)
		t->role = ex->role;
	else if (t->role != ex->role)
		t->mixed_roles = true;
	ck_assert_uint_le(ex->start_ns, ex->end_ns);
	if (ex->exhaust)
		t->exhaust++;
	if (ex->outcome == MONGO_UNANSWERED) {
		t->unanswered++;
		return; /* the driver saw no reply either: not in its truth */
	}
	if (ex->outcome == MONGO_NO_REPLY)
		t->no_reply++;
	if (!strcmp(ex->op, "hello") || !strcmp(ex->op, "isMaster")) {
		t->monitoring++;
		return;
	}
	status_str(ex, status, sizeof(status));
	snprintf(key, sizeof(key), "%s\t%s\t%s\t%s", ex->op, ex->collection, ex->db, status);
	table_add(t, key, 1);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The table in the truth file's format: sorted lines "key \t count". */
static char *table_text(const struct table *t)
{
	char *lines[ROWS_MAX], *out = malloc(ROWS_MAX * 320);
	size_t pos = 0;

	for (size_t i = 0; i < t->n; i++) {
		lines[i] = malloc(320);
		snprintf(lines[i], 320, "%s\t%u\n", t->key[i], t->count[i]);
	}
	qsort(lines, t->n, sizeof(lines[0]), cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < t->n; i++) {
		pos += (size_t)sprintf(out + pos, "%s", lines[i]);
		free(lines[i]);
	}
	return out;
}

static void table_add(struct table *t, const char *key, unsigned count)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (!strcmp(t->key[i], key))
			break;
	if (i == t->n) {
		ck_assert_uint_lt(t->n, ROWS_MAX);
		snprintf(t->key[t->n++], sizeof(t->key[0]), "%s", key);
	}
	t->count[i] += count;
}

/*
 * The driver's truth under the decoder's label rules: commands outside the table
 * are _OTHER (a label must not take any name a client sends).
 */
static char *truth_as_labels(const char *truth)
{
	struct table *t = calloc(1, sizeof(*t));
	const char *line = truth;
	char *text;

	while (*line) {
		const char *tab = strchr(line, '\t'), *end = strchr(line, '\n');
		const char *count = end;
		const char *op;
		char key[300];

		ck_assert_ptr_nonnull(tab);
		ck_assert_ptr_nonnull(end);
		while (count[-1] != '\t')
			count--;
		op = mongo_command_name(line, (size_t)(tab - line));
		snprintf(key, sizeof(key), "%s%.*s", op ? op : "_OTHER", (int)(count - 1 - tab),
			 tab);
		table_add(t, key, (unsigned)atoi(count));
		line = end + 1;
	}
	text = table_text(t);
	free(t);
	return text;
}

/* A reported field that stands for what the capture cut: "" or _OTHER for any value. */
static bool field_covers(const char *rep, size_t rlen, const char *tru, size_t tlen, int field,
			 bool cut_status)
{
	if (rlen == tlen && !memcmp(rep, tru, rlen))
		return true;
	if (field == 0)
		return rlen == 6 && !memcmp(rep, "_OTHER", 6);
	if (field ==
	    3) /* an error whose code was cut: any error; a cut error may read as success */
		return (rlen == 6 && !memcmp(rep, "_OTHER", 6) && tlen > 0) ||
		       (rlen == 0 && cut_status);
	return rlen == 0; /* collection, db */
}

static bool key_covers(const char *rep, const char *tru, bool cut_status)
{
	for (int field = 0; field < 4; field++) {
		size_t rl = strcspn(rep, "\t\n"), tl = strcspn(tru, "\t\n");

		if (!field_covers(rep, rl, tru, tl, field, cut_status))
			return false;
		rep += rl + (rep[rl] == '\t');
		tru += tl + (tru[tl] == '\t');
	}
	return true;
}

/* The count at the end of a truth line. */
static unsigned line_count(const char *line)
{
	const char *p = line + strcspn(line, "\n");

	while (p > line && p[-1] != '\t')
		p--;
	return (unsigned)atoi(p);
}

/*
 * Nothing was mis-attributed: every row of t is covered by rows of the truth with at
 * least its count, exactly or with fields the capture cut left "" or _OTHER, and
 * no more exchanges were reported than the driver saw. cut_status: a success may
 * stand for an error whose error fields were not captured.
 */
static void assert_within_truth(const struct table *t, const char *truth, bool cut_status)
{
	unsigned total = 0, truth_total = 0;

	for (const char *l = truth; *l; l = strchr(l, '\n') + 1)
		truth_total += line_count(l);
	for (size_t i = 0; i < t->n; i++) {
		unsigned covered = 0;

		for (const char *l = truth; *l; l = strchr(l, '\n') + 1)
			if (key_covers(t->key[i], l, cut_status))
				covered += line_count(l);
		ck_assert_msg(covered >= t->count[i], "reported %u of \"%s\", the driver saw %u",
			      t->count[i], t->key[i], covered);
		total += t->count[i];
	}
	ck_assert_uint_le(total, truth_total);
}

/* ---- replays ------------------------------------------------------------------------------ */

enum replay_mode {
	REPLAY_AS_RECORDED, /* one feed per recv() */
	REPLAY_BYTES,	    /* one feed per byte: every split point at once */
	REPLAY_COALESCED,   /* consecutive records of one direction in one feed */
};

struct replay {
	enum replay_mode mode;
	bool server;	   /* feed as the responder saw it: directions swapped */
	size_t capture;	   /* 0: everything; else only the first bytes of each feed */
	size_t drop_every; /* 0: none; else every Nth record is moved but not captured */
};

static enum mongo_dir dir_of(const struct replay *r, int rec_dir)
{
	bool out = rec_dir == 0;

	if (r->server)
		out = !out;
	return out ? MONGO_DIR_OUT : MONGO_DIR_IN;
}

static void feed_ok(struct mongo_stream *s, enum mongo_dir dir, const uint8_t *p, size_t len,
		    size_t total, uint64_t ts, struct table *t)
{
	int rc = mongo_stream_feed(s, dir, p, len, total, ts, on_exchange, t);

	ck_assert_int_eq(rc, 0);
}

static void replay(const struct fixture *fx, const struct replay *r, struct table *t,
		   struct mongo_stream_stats *sum)
{
	struct mongo_stream *s = mongo_stream_new();
	struct mongo_stream_stats st;
	uint64_t ts = 1000;
	uint8_t *merged = malloc(1 << 20);

	memset(t, 0, sizeof(*t));
	memset(sum, 0, sizeof(*sum));
	for (size_t i = 0; i < fx->n; i++) {
		const struct record *rec = &fx->rec[i];
		enum mongo_dir dir;
		size_t len;

		ts += 1000;
		if (rec->dir == 2) {
			mongo_stream_close(s, ts, on_exchange, t);
			mongo_stream_get_stats(s, &st);
			sum->messages += st.messages;
			sum->malformed += st.malformed;
			sum->desyncs += st.desyncs;
			sum->unmatched += st.unmatched;
			sum->lost += st.lost;
			sum->undecoded += st.undecoded;
			for (int c = 0; c <= MONGO_COMPRESSORS; c++)
				sum->compressed[c] += st.compressed[c];
			mongo_stream_free(s);
			s = mongo_stream_new();
			continue;
		}
		dir = dir_of(r, rec->dir);
		if (r->drop_every && i % r->drop_every == r->drop_every - 1) {
			feed_ok(s, dir, rec->p, 0, rec->len, ts, t);
			continue;
		}
		switch (r->mode) {
		case REPLAY_AS_RECORDED:
			len = r->capture && rec->len > r->capture ? r->capture : rec->len;
			feed_ok(s, dir, rec->p, len, rec->len, ts, t);
			break;
		case REPLAY_BYTES:
			for (size_t b = 0; b < rec->len; b++)
				feed_ok(s, dir, rec->p + b, 1, 1, ts, t);
			break;
		case REPLAY_COALESCED:
			len = 0;
			for (; i < fx->n && fx->rec[i].dir == rec->dir; i++) {
				ck_assert_uint_le(len + fx->rec[i].len, 1 << 20);
				memcpy(merged + len, fx->rec[i].p, fx->rec[i].len);
				len += fx->rec[i].len;
			}
			i--;
			feed_ok(s, dir, merged, len, len, ts, t);
			break;
		}
	}
	mongo_stream_free(s);
	free(merged);
}

static void check_exact(const char *name, const struct replay *r)
{
	struct fixture fx;
	struct table *t = malloc(sizeof(*t));
	struct mongo_stream_stats st;
	char *text;

	fixture_load(&fx, name);
	replay(&fx, r, t, &st);
	text = table_text(t);
	ck_assert_msg(!strcmp(text, fx.truth), "%s: decoded\n%s\ndriver saw\n%s", name, text,
		      fx.truth);
	ck_assert(!t->mixed_roles);
	ck_assert_int_eq(t->role, r->server ? MONGO_ROLE_SERVER : MONGO_ROLE_CLIENT);
	ck_assert_uint_gt(t->monitoring, 0);
	ck_assert_uint_eq(st.malformed, 0);
	ck_assert_uint_eq(st.desyncs, 0);
	ck_assert_uint_eq(st.unmatched, 0);
	ck_assert_uint_eq(st.lost, 0);
	free(text);
	free(t);
	fixture_free(&fx);
}

static const char *const fixtures[] = { "pymongo", "pymongo_zlib", "mongoc", "node",
					"pymongo_snappy" };

START_TEST(test_fixture_as_recorded)
{
	struct replay r = { .mode = REPLAY_AS_RECORDED };

	check_exact(fixtures[_i], &r);
}
END_TEST

START_TEST(test_fixture_server_view)
{
	struct replay r = { .mode = REPLAY_AS_RECORDED, .server = true };

	check_exact(fixtures[_i], &r);
}
END_TEST

START_TEST(test_fixture_every_byte)
{
	struct replay r = { .mode = REPLAY_BYTES };

	check_exact(fixtures[_i], &r);
}
END_TEST

START_TEST(test_fixture_coalesced)
{
	struct replay r = { .mode = REPLAY_COALESCED };

	check_exact(fixtures[_i], &r);
}
END_TEST

/* What each capture shows besides the commands: the paths the fixtures were made for. */
START_TEST(test_fixture_features)
{
	struct replay r = { .mode = REPLAY_AS_RECORDED };
	struct mongo_stream_stats st;
	struct table *t = malloc(sizeof(*t));
	struct fixture fx;

	fixture_load(&fx, "pymongo_zlib");
	replay(&fx, &r, t, &st);
	ck_assert_uint_gt(st.compressed[MONGO_COMP_ZLIB], 20); /* requests and replies */
	ck_assert_uint_eq(st.undecoded, 0);
	ck_assert_uint_gt(t->exhaust, 0);  /* the monitor's streamed hello, the exhaust find */
	ck_assert_uint_eq(t->no_reply, 1); /* the w:0 insert */
	fixture_free(&fx);

	fixture_load(&fx, "pymongo_snappy");
	replay(&fx, &r, t, &st);
	ck_assert_uint_gt(st.compressed[MONGO_COMP_SNAPPY], 20); /* requests and replies */
	ck_assert_uint_eq(st.compressed[MONGO_COMP_ZLIB], 0);
	ck_assert_uint_eq(st.undecoded, 0);
	ck_assert_uint_gt(t->exhaust, 0);
	ck_assert_uint_eq(t->no_reply, 1);
	fixture_free(&fx);

	fixture_load(&fx, "mongoc");
	replay(&fx, &r, t, &st);
	ck_assert_uint_eq(st.compressed[MONGO_COMP_ZLIB], 0);
	ck_assert_uint_ge(t->exhaust, 3);  /* legacy OP_QUERY exhaust: batches in one recv */
	ck_assert_uint_eq(t->no_reply, 1); /* w:0, written together with the next command */
	fixture_free(&fx);

	fixture_load(&fx, "node");
	replay(&fx, &r, t, &st);
	ck_assert_uint_ge(t->exhaust, 2);    /* awaitable hello, replies with moreToCome */
	ck_assert_uint_eq(t->unanswered, 1); /* the monitor's hello the close cut short */
	fixture_free(&fx);
	free(t);
}
END_TEST

/*
 * Bounded capture: each feed shows only its first bytes, the rest is skipped by count.
 * Whatever is reported must be what the driver saw (never another command, collection
 * or status); with the largest capture the replies' framing survives everywhere.
 */
START_TEST(test_fixture_bounded_capture)
{
	static const size_t sizes[] = { 64, 100, 256, 1024 };
	struct table *t = malloc(sizeof(*t));
	struct mongo_stream_stats st;
	struct fixture fx;

	fixture_load(&fx, fixtures[_i]);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct replay r = { .mode = REPLAY_AS_RECORDED, .capture = sizes[k] };

		replay(&fx, &r, t, &st);
		/*
		 * Below 256 bytes the writeConcernError of an update reply (after n and
		 * nModified) is cut off: that reply reads as a success. Error replies
		 * (ok: 0 first) and writeErrors are seen from 64 bytes on.
		 */
		assert_within_truth(t, fx.truth, sizes[k] < 256);
		ck_assert_uint_eq(st.malformed, 0);
	}
	fixture_free(&fx);
	free(t);
}
END_TEST

/* Whole recv()s nobody saw: their messages are lost, every other one still pairs. */
START_TEST(test_fixture_unseen_records)
{
	struct table *t = malloc(sizeof(*t));
	struct mongo_stream_stats st;
	struct fixture fx;

	fixture_load(&fx, fixtures[_i]);
	for (size_t every = 2; every <= 7; every++) {
		struct replay r = { .mode = REPLAY_AS_RECORDED, .drop_every = every };

		replay(&fx, &r, t, &st);
		assert_within_truth(t, fx.truth, false);
		if (every > 2) /* every other one drops all of one direction where they alternate */
			ck_assert_uint_gt(t->n, 0);
	}
	fixture_free(&fx);
	free(t);
}
END_TEST

/* ---- hand-built messages ------------------------------------------------------------------- */

/* A tiny BSON writer for the cases the drivers never send. */
struct buf {
	uint8_t b[4096];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	ck_assert_uint_le(b->n + n, sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	put(b, x, 4);
}

static void set32(struct buf *b, size_t at, uint32_t v)
{
	b->b[at] = (uint8_t)v;
	b->b[at + 1] = (uint8_t)(v >> 8);
	b->b[at + 2] = (uint8_t)(v >> 16);
	b->b[at + 3] = (uint8_t)(v >> 24);
}

static size_t doc_begin(struct buf *b)
{
	size_t at = b->n;

	put32(b, 0);
	return at;
}

static void doc_end(struct buf *b, size_t at)
{
	uint8_t z = 0;

	put(b, &z, 1);
	set32(b, at, (uint32_t)(b->n - at));
}

static void key(struct buf *b, uint8_t type, const char *k)
{
	put(b, &type, 1);
	put(b, k, strlen(k) + 1);
}

static void el_str(struct buf *b, const char *k, const char *v)
{
	key(b, BSON_STRING, k);
	put32(b, (uint32_t)strlen(v) + 1);
	put(b, v, strlen(v) + 1);
}

static void el_i32(struct buf *b, const char *k, int32_t v)
{
	key(b, BSON_INT32, k);
	put32(b, (uint32_t)v);
}

static void el_double(struct buf *b, const char *k, double v)
{
	key(b, BSON_DOUBLE, k);
	put(b, &v, 8);
}

/* An OP_MSG: header, flags, kind 0 with body, built by the caller between begin and end. */
static size_t msg_begin(struct buf *b, uint32_t id, uint32_t to, uint32_t flags)
{
	size_t at = b->n;
	uint8_t kind = 0;

	put32(b, 0);
	put32(b, id);
	put32(b, to);
	put32(b, 2013);
	put32(b, flags);
	put(b, &kind, 1);
	return at;
}

static void msg_end(struct buf *b, size_t at)
{
	set32(b, at, (uint32_t)(b->n - at));
}

static void cmd_msg(struct buf *b, uint32_t id, uint32_t flags, const char *cmd, const char *coll,
		    const char *db)
{
	size_t m = msg_begin(b, id, 0, flags), d = doc_begin(b);

	el_str(b, cmd, coll);
	el_str(b, "$db", db);
	doc_end(b, d);
	msg_end(b, m);
}

static void ok_msg(struct buf *b, uint32_t id, uint32_t to, double ok, int32_t code)
{
	size_t m = msg_begin(b, id, to, 0), d = doc_begin(b);

	el_double(b, "ok", ok);
	if (code)
		el_i32(b, "code", code);
	doc_end(b, d);
	msg_end(b, m);
}

static struct table *feed_pair(struct mongo_stream *s, const struct buf *req, const struct buf *rsp)
{
	static struct table t;

	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(
		mongo_stream_feed(s, MONGO_DIR_OUT, req->b, req->n, req->n, 10, on_exchange, &t),
		0);
	if (rsp)
		ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_IN, rsp->b, rsp->n, rsp->n, 20,
						   on_exchange, &t),
				 0);
	return &t;
}

START_TEST(test_reply_error_codes)
{
	struct mongo_stream *s = mongo_stream_new();
	struct buf req = { 0 }, rsp = { 0 };
	struct table *t;
	size_t m, d, a, e;

	cmd_msg(&req, 1, 0, "find", "users", "shop");
	ok_msg(&rsp, 100, 1, 0, 13);
	t = feed_pair(s, &req, &rsp);
	ck_assert_uint_eq(t->n, 1);
	ck_assert_str_eq(t->key[0], "find\tusers\tshop\t13");

	/* ok: 1 with writeConcernError, then writeErrors: the first write error's code wins */
	req.n = rsp.n = 0;
	cmd_msg(&req, 2, 0, "update", "users", "shop");
	m = msg_begin(&rsp, 101, 2, 0);
	d = doc_begin(&rsp);
	el_i32(&rsp, "n", 0);
	key(&rsp, BSON_ARRAY, "writeErrors");
	a = doc_begin(&rsp);
	key(&rsp, BSON_DOCUMENT, "0");
	e = doc_begin(&rsp);
	el_i32(&rsp, "index", 0);
	el_i32(&rsp, "code", 11000);
	doc_end(&rsp, e);
	doc_end(&rsp, a);
	key(&rsp, BSON_DOCUMENT, "writeConcernError");
	e = doc_begin(&rsp);
	el_i32(&rsp, "code", 64);
	doc_end(&rsp, e);
	el_double(&rsp, "ok", 1);
	doc_end(&rsp, d);
	msg_end(&rsp, m);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "update\tusers\tshop\t11000");

	/* ok: 0 without a code */
	req.n = rsp.n = 0;
	cmd_msg(&req, 3, 0, "drop", "x", "shop");
	ok_msg(&rsp, 102, 3, 0, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "drop\tx\tshop\t_OTHER");
	mongo_stream_free(s);
}
END_TEST

/* Names become labels only when they are plain; unknown commands are _OTHER. */
START_TEST(test_label_hygiene)
{
	struct mongo_stream *s = mongo_stream_new();
	struct buf req = { 0 }, rsp = { 0 };
	char longname[200];
	struct table *t;

	cmd_msg(&req, 1, 0, "dropUsersFromEverywhere", "secret value", "shop");
	ok_msg(&rsp, 100, 1, 1, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "_OTHER\t\tshop\t");

	req.n = rsp.n = 0;
	cmd_msg(&req, 2, 0, "FIND", "with space", "shop\n");
	ok_msg(&rsp, 101, 2, 1, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "find\t_OTHER\t_OTHER\t");

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	req.n = rsp.n = 0;
	cmd_msg(&req, 3, 0, "ismaster", longname, "admin");
	ok_msg(&rsp, 102, 3, 1, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_uint_eq(t->monitoring, 1); /* isMaster, whatever its spelling */
	ck_assert_str_eq(mongo_command_name("findandmodify", 13), "findAndModify");
	ck_assert_ptr_null(mongo_command_name("find\0x", 6));
	mongo_stream_free(s);
}
END_TEST

/* moreToCome on a request: no reply comes, the exchange is reported at once. */
START_TEST(test_more_to_come_request)
{
	struct mongo_stream *s = mongo_stream_new();
	struct buf req = { 0 }, rsp = { 0 };
	struct mongo_stream_stats st;
	struct table *t;

	cmd_msg(&req, 1, 1u << 1, "insert", "logs", "app");
	t = feed_pair(s, &req, NULL);
	ck_assert_uint_eq(t->no_reply, 1);
	ck_assert_str_eq(t->key[0], "insert\tlogs\tapp\t");
	/* a reply to it would be unmatched */
	ok_msg(&rsp, 100, 1, 1, 0);
	ck_assert_int_eq(
		mongo_stream_feed(s, MONGO_DIR_IN, rsp.b, rsp.n, rsp.n, 30, on_exchange, t), 0);
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.unmatched, 1);
	mongo_stream_free(s);
}
END_TEST

/* The checksum flag moves the end of the sections; unknown required bits are malformed. */
START_TEST(test_flags)
{
	struct mongo_stream *s = mongo_stream_new();
	struct buf req = { 0 }, rsp = { 0 };
	struct mongo_stream_stats st;
	struct table *t;
	size_t m, d;

	m = msg_begin(&req, 1, 0, 1);
	d = doc_begin(&req);
	el_str(&req, "count", "c");
	el_str(&req, "$db", "d");
	doc_end(&req, d);
	put32(&req, 0xdeadbeef); /* CRC-32C, not checked */
	msg_end(&req, m);
	ok_msg(&rsp, 100, 1, 1, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "count\tc\td\t");

	req.n = rsp.n = 0;
	cmd_msg(&req, 2, 1u << 5, "count", "c", "d");
	ok_msg(&rsp, 101, 2, 1, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "_OTHER\t\t\t"); /* framed and paired, but not read */
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.malformed, 1);
	mongo_stream_free(s);
}
END_TEST

/* Sections: a document sequence is read past; kind 2 and a second body are malformed. */
START_TEST(test_sections)
{
	struct mongo_stream *s = mongo_stream_new();
	struct buf req = { 0 }, rsp = { 0 };
	struct mongo_stream_stats st;
	struct table *t;
	size_t m, d, seq;
	uint8_t kind = 1;

	m = msg_begin(&req, 1, 0, 0);
	d = doc_begin(&req);
	el_str(&req, "insert", "c");
	el_str(&req, "$db", "d");
	doc_end(&req, d);
	put(&req, &kind, 1);
	seq = req.n;
	put32(&req, 0);
	put(&req, "documents", 10);
	for (int i = 0; i < 3; i++) {
		d = doc_begin(&req);
		el_i32(&req, "_id", i);
		doc_end(&req, d);
	}
	set32(&req, seq, (uint32_t)(req.n - seq));
	msg_end(&req, m);
	ok_msg(&rsp, 100, 1, 1, 0);
	t = feed_pair(s, &req, &rsp);
	ck_assert_str_eq(t->key[0], "insert\tc\td\t");
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.malformed, 0);

	/* the sequence's size one byte short of its last document */
	set32(&req, seq, (uint32_t)(req.n - seq - 1));
	req.b[req.n - 1] = 0;
	set32(&req, 0, (uint32_t)(req.n - 1));
	req.n--;
	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_OUT, req.b, req.n, req.n, 1, NULL, NULL),
			 0);
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.malformed, 1);
	mongo_stream_free(s);
}
END_TEST

/* OP_COMPRESSED with snappy or zstd: counted by compressor, its reply consumed, nothing reported. */
START_TEST(test_compressed_opaque)
{
	static const uint8_t ids[] = { MONGO_COMP_ZSTD, 9 };
	struct mongo_stream *s = mongo_stream_new();
	struct mongo_stream_stats st;
	struct table t;

	memset(&t, 0, sizeof(t));
	for (size_t i = 0; i < 2; i++) {
		struct buf b = { 0 };
		uint8_t junk[7] = { 1, 2, 3, 4, 5, 6, 7 };

		put32(&b, 16 + 9 + 7);
		put32(&b, (uint32_t)(10 + i));
		put32(&b, 0);
		put32(&b, 2012);
		put32(&b, 2013);
		put32(&b, 40);
		put(&b, &ids[i], 1);
		put(&b, junk, 7);
		ck_assert_int_eq(
			mongo_stream_feed(s, MONGO_DIR_OUT, b.b, b.n, b.n, 1, on_exchange, &t), 0);
		set32(&b, 4, (uint32_t)(90 + i));
		set32(&b, 8, (uint32_t)(10 + i));
		ck_assert_int_eq(
			mongo_stream_feed(s, MONGO_DIR_IN, b.b, b.n, b.n, 2, on_exchange, &t), 0);
	}
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.compressed[MONGO_COMP_ZSTD], 2);
	ck_assert_uint_eq(st.compressed[MONGO_COMPRESSORS], 2);
	ck_assert_uint_eq(st.undecoded, 4);
	ck_assert_uint_eq(st.unmatched, 0);
	ck_assert_uint_eq(t.n + t.monitoring + t.unanswered, 0);
	mongo_stream_close(s, 3, on_exchange, &t);
	ck_assert_uint_eq(t.unanswered, 0);
	mongo_stream_free(s);
}
END_TEST

/* An OP_COMPRESSED with snappy of the message in plain (header and all). */
static void snappy_wrap(const struct buf *plain, struct buf *out)
{
	char packed[4096];
	size_t n = sizeof(packed);
	uint8_t comp = MONGO_COMP_SNAPPY;

	ck_assert_int_eq(snappy_compress((const char *)plain->b + 16, plain->n - 16, packed, &n),
			 SNAPPY_OK);
	out->n = 0;
	put(out, plain->b, 12); /* length (set below), requestID, responseTo */
	put32(out, 2012);
	put32(out, 2013);
	put32(out, (uint32_t)(plain->n - 16));
	put(out, &comp, 1);
	put(out, packed, n);
	set32(out, 0, (uint32_t)out->n);
}

/*
 * snappy: decoded when the capture holds the whole message; cut, it cannot be
 * (the library takes whole blocks): counted, never reported; corrupt: malformed.
 */
START_TEST(test_compressed_snappy)
{
	struct mongo_stream *s = mongo_stream_new();
	struct mongo_stream_stats st;
	struct buf plain = { 0 }, req = { 0 }, rsp = { 0 };
	struct table *t;

	cmd_msg(&plain, 1, 0, "find", "snappy_coll", "snappy_db");
	snappy_wrap(&plain, &req);
	plain.n = 0;
	ok_msg(&plain, 2, 1, 0, 26);
	snappy_wrap(&plain, &rsp);
	t = feed_pair(s, &req, &rsp);
	ck_assert_uint_eq(t->n, 1);
	ck_assert_str_eq(t->key[0], "find\tsnappy_coll\tsnappy_db\t26");

	/* The request cut by the capture: not decoded; its reply pairs with nothing named. */
	set32(&req, 4, 3);
	set32(&rsp, 8, 3);
	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(
		mongo_stream_feed(s, MONGO_DIR_OUT, req.b, req.n - 4, req.n, 30, on_exchange, t),
		0);
	ck_assert_int_eq(
		mongo_stream_feed(s, MONGO_DIR_IN, rsp.b, rsp.n, rsp.n, 40, on_exchange, t), 0);
	ck_assert_uint_eq(t->n, 0);
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.compressed[MONGO_COMP_SNAPPY], 4);
	ck_assert_uint_eq(st.undecoded, 1);
	ck_assert_uint_eq(st.malformed, 0);

	/* Corrupt: a length that is not the announced one. */
	req.b[25] ^= 0x7f;
	set32(&req, 4, 5);
	set32(&rsp, 8, 5);
	t = feed_pair(s, &req, &rsp);
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.malformed, 1);
	ck_assert_uint_eq(st.undecoded, 2);
	for (size_t i = 0; i < t->n; i++) /* framed and paired, never named after its contents */
		ck_assert(strncmp(t->key[i], "_OTHER\t\t", 8) == 0);
	mongo_stream_free(s);
}
END_TEST

START_TEST(test_not_mongo)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct mongo_stream *s = mongo_stream_new();
	struct mongo_stream_stats st;

	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_OUT, (const uint8_t *)http,
					   sizeof(http) - 1, sizeof(http) - 1, 1, NULL, NULL),
			 -EPROTO);
	ck_assert_int_eq(
		mongo_stream_feed(s, MONGO_DIR_IN, (const uint8_t *)http, 4, 4, 2, NULL, NULL),
		-EPROTO);
	mongo_stream_get_stats(s, &st);
	ck_assert(st.not_mongo);
	ck_assert(!mongo_looks_like_message((const uint8_t *)http, sizeof(http) - 1));
	mongo_stream_free(s);
}
END_TEST

/* Requests without replies beyond the pending table: the oldest are lost; close reports the rest. */
START_TEST(test_pending_overflow_and_close)
{
	struct mongo_stream *s = mongo_stream_new();
	struct mongo_stream_stats st;
	struct table t;
	struct buf b;

	memset(&t, 0, sizeof(t));
	for (uint32_t i = 1; i <= MONGO_PENDING_MAX + 5; i++) {
		b.n = 0;
		cmd_msg(&b, i, 0, "find", "c", "d");
		ck_assert_int_eq(
			mongo_stream_feed(s, MONGO_DIR_OUT, b.b, b.n, b.n, i, on_exchange, &t), 0);
	}
	b.n = 0;
	ok_msg(&b, 500, 1, 1, 0); /* answers a request that was given up */
	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_IN, b.b, b.n, b.n, 100, on_exchange, &t),
			 0);
	b.n = 0;
	ok_msg(&b, 501, MONGO_PENDING_MAX + 5, 1, 0);
	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_IN, b.b, b.n, b.n, 101, on_exchange, &t),
			 0);
	ck_assert_uint_eq(t.n, 1);
	mongo_stream_close(s, 200, on_exchange, &t);
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.lost, 5);
	ck_assert_uint_eq(st.unmatched, 1);
	ck_assert_uint_eq(t.unanswered, MONGO_PENDING_MAX - 1);
	mongo_stream_free(s);
}
END_TEST

/* A header cut by unseen bytes loses framing; a later feed that starts a message resyncs. */
START_TEST(test_resync)
{
	struct mongo_stream *s = mongo_stream_new();
	struct buf a = { 0 }, b = { 0 }, r = { 0 };
	struct mongo_stream_stats st;
	struct table t;

	memset(&t, 0, sizeof(t));
	cmd_msg(&a, 1, 0, "find", "c", "d");
	cmd_msg(&b, 2, 0, "count", "c", "d");
	/* a, then 3 bytes of b captured out of all of it: framing of this direction is lost */
	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_OUT, a.b, a.n, a.n + 7, 1, on_exchange, &t),
			 0);
	mongo_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.desyncs, 1);
	/* a feed in the middle of nothing is ignored, one that starts a message is read */
	ck_assert_int_eq(
		mongo_stream_feed(s, MONGO_DIR_OUT, b.b + 7, b.n - 7, b.n - 7, 2, on_exchange, &t),
		0);
	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_OUT, b.b, b.n, b.n, 3, on_exchange, &t), 0);
	ok_msg(&r, 100, 2, 1, 0);
	ok_msg(&r, 101, 1, 1, 0);
	ck_assert_int_eq(mongo_stream_feed(s, MONGO_DIR_IN, r.b, r.n, r.n, 4, on_exchange, &t), 0);
	ck_assert_uint_eq(t.n, 2);
	mongo_stream_free(s);
}
END_TEST

/* ---- the BSON reader ---------------------------------------------------------------------- */

START_TEST(test_bson_cut_versus_malformed)
{
	struct buf b = { 0 };
	struct bson_elem e;
	size_t d = doc_begin(&b), sub;

	el_str(&b, "a", "hello");
	key(&b, BSON_DOCUMENT, "sub");
	sub = doc_begin(&b);
	el_i32(&b, "x", 1);
	doc_end(&b, sub);
	el_double(&b, "ok", 1);
	doc_end(&b, d);

	ck_assert_int_eq(bson_validate(b.b, b.n, b.n), BSON_OK);
	for (size_t cut = 0; cut < b.n; cut++)
		ck_assert_int_eq(bson_validate(b.b, cut, b.n), BSON_TRUNCATED);
	ck_assert_int_eq(bson_find(b.b, b.n, b.n, "ok", &e), BSON_OK);
	ck_assert_int_eq(bson_find(b.b, b.n - 10, b.n, "ok", &e), BSON_TRUNCATED);
	ck_assert_int_eq(bson_find(b.b, b.n, b.n, "nope", &e), BSON_END);
	/* declared longer than its container */
	ck_assert_int_eq(bson_validate(b.b, b.n, b.n - 1), BSON_MALFORMED);
	/* the string's NUL overwritten */
	b.b[4 + 1 + 2 + 4 + 5] = 'x';
	ck_assert_int_eq(bson_validate(b.b, b.n, b.n), BSON_MALFORMED);
	b.b[4 + 1 + 2 + 4 + 5] = 0;
	/* the string's length past the document */
	set32(&b, 4 + 1 + 2, 1000);
	ck_assert_int_eq(bson_validate(b.b, b.n, b.n), BSON_MALFORMED);
	ck_assert_int_eq(bson_validate(b.b, 11, b.n),
			 BSON_MALFORMED); /* knowable from the prefix */
	ck_assert_int_eq(bson_validate(b.b, 10, b.n), BSON_TRUNCATED); /* the length is cut */
	set32(&b, 4 + 1 + 2, 6);
	/* an unknown type */
	b.b[4] = 0x42;
	ck_assert_int_eq(bson_validate(b.b, b.n, b.n), BSON_MALFORMED);
	b.b[4] = BSON_STRING;
	/* a bool that is neither */
	b.n = 0;
	d = doc_begin(&b);
	key(&b, BSON_BOOL, "t");
	put(&b, "\x02", 1);
	doc_end(&b, d);
	ck_assert_int_eq(bson_validate(b.b, b.n, b.n), BSON_MALFORMED);
}
END_TEST

START_TEST(test_bson_depth)
{
	struct buf b = { 0 };
	size_t at[BSON_DEPTH_MAX + 2];
	int levels = _i ? BSON_DEPTH_MAX + 1 : BSON_DEPTH_MAX;

	at[0] = doc_begin(&b);
	for (int i = 1; i <= levels; i++) {
		key(&b, BSON_DOCUMENT, "d");
		at[i] = doc_begin(&b);
	}
	for (int i = levels; i >= 0; i--)
		doc_end(&b, at[i]);
	ck_assert_int_eq(bson_validate(b.b, b.n, b.n), _i ? BSON_MALFORMED : BSON_OK);
}
END_TEST

static Suite *mongodb_suite(void)
{
	Suite *s = suite_create("mongodb_proto");
	TCase *tc = tcase_create("fixtures");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_fixture_as_recorded, 0, 5);
	tcase_add_loop_test(tc, test_fixture_server_view, 0, 5);
	tcase_add_loop_test(tc, test_fixture_every_byte, 0, 5);
	tcase_add_loop_test(tc, test_fixture_coalesced, 0, 5);
	tcase_add_loop_test(tc, test_fixture_bounded_capture, 0, 5);
	tcase_add_loop_test(tc, test_fixture_unseen_records, 0, 5);
	tcase_add_test(tc, test_fixture_features);
	suite_add_tcase(s, tc);

	tc = tcase_create("messages");
	tcase_add_test(tc, test_reply_error_codes);
	tcase_add_test(tc, test_label_hygiene);
	tcase_add_test(tc, test_more_to_come_request);
	tcase_add_test(tc, test_flags);
	tcase_add_test(tc, test_sections);
	tcase_add_test(tc, test_compressed_opaque);
	tcase_add_test(tc, test_compressed_snappy);
	tcase_add_test(tc, test_not_mongo);
	tcase_add_test(tc, test_pending_overflow_and_close);
	tcase_add_test(tc, test_resync);
	suite_add_tcase(s, tc);

	tc = tcase_create("bson");
	tcase_add_test(tc, test_bson_cut_versus_malformed);
	tcase_add_loop_test(tc, test_bson_depth, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(mongodb_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
