/*
 * Unit tests for the MySQL decoder (plugins/mysql/mysql_proto.c).
 *
 * The conversations under tests/unit/data/mysql/ are real: MariaDB 10.11.19
 * as the server; the mariadb 10.11 client (plain, --ssl, --compress: cli_session.sql
 * and multi_session.sql), pymysql
 * 1.0.2 and sysbench 1.0.20 (libmariadb) as clients, recorded by
 * record_proxy.py one record per recv(), with the scripts beside them.
 * Each test plays a conversation as the server's view (the client's records
 * come IN) and as the client's view (they go OUT), whole, split at every byte,
 * coalesced, and with bytes left uncaptured.
 */
#include <check.h>
#include <errno.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_proto.h"

#ifndef MYSQL_TEST_DATA
#define MYSQL_TEST_DATA "tests/unit/data/mysql"
#endif

/* ---- recorded conversations -------------------------------------------------------------- */

struct record {
	char tag; /* 'C' client to server, 'S' server to client, 'T' TLS starts */
	const uint8_t *data;
	size_t len;
};

struct conversation {
	uint8_t *bytes;
	struct record *r;
	size_t n;
};

static struct conversation load(const char *name)
{
	char path[512];
	struct conversation c = { 0 };
	FILE *f;
	long size;

	snprintf(path, sizeof(path), "%s/%s", MYSQL_TEST_DATA, name);
	f = fopen(path, "rb");
	ck_assert_msg(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	c.bytes = malloc((size_t)size + 1);
	ck_assert(c.bytes && fread(c.bytes, 1, (size_t)size, f) == (size_t)size);
	fclose(f);
	c.r = calloc((size_t)size / 5 + 1, sizeof(*c.r));
	ck_assert(c.r);
	for (long off = 0; off + 5 <= size;) {
		size_t len = (size_t)c.bytes[off + 1] << 24 | (size_t)c.bytes[off + 2] << 16 |
			     (size_t)c.bytes[off + 3] << 8 | c.bytes[off + 4];

		ck_assert((long)(off + 5 + len) <= size);
		c.r[c.n++] = (struct record){ (char)c.bytes[off], c.bytes + off + 5, len };
		off += 5 + (long)len;
	}
	return c;
}

static void unload(struct conversation *c)
{
	free(c->bytes);
	free(c->r);
}

/* ---- what the decoder reports ------------------------------------------------------------- */

#define EX_MAX 256

struct got {
	struct mysql_exchange ex[EX_MAX];
	size_t n;
};

static void collect(const struct mysql_exchange *ex, void *ctx)
{
	struct got *g = ctx;

	ck_assert_uint_lt(g->n, EX_MAX);
	g->ex[g->n++] = *ex;
}

enum split {
	WHOLE,	   /* one feed per record */
	BYTEWISE,  /* one feed per byte */
	COALESCED, /* consecutive records of one direction in one feed */
	HEADERS,   /* each packet's header, then its payload: how mariadbd and pymysql read */
};

static enum mysql_dir dir_of(char tag, bool server_view)
{
	bool to_server = tag == 'C';

	return to_server == server_view ? MYSQL_DIR_IN : MYSQL_DIR_OUT;
}

/*
 * Plays records [from, to) of c into s. ts: each record's feeds are stamped
 * 1000 * (record index + 1), so durations can be checked.
 */
static void play(struct mysql_stream *s, const struct conversation *c, size_t from, size_t to,
		 bool server_view, enum split how, struct got *g)
{
	for (size_t i = from; i < to; i++) {
		const struct record *r = &c->r[i];
		uint64_t ts = 1000 * (i + 1);

		if (r->tag == 'T')
			continue;
		if (how == HEADERS) {
			for (size_t off = 0; off < r->len;) {
				size_t plen = r->len - off >= 4 ? (size_t)(r->data[off] |
									   r->data[off + 1] << 8 |
									   r->data[off + 2] << 16) :
								  0;
				size_t hl = r->len - off < 4 ? r->len - off : 4;
				size_t pl = r->len - off - hl < plen ? r->len - off - hl : plen;
				enum mysql_dir d = dir_of(r->tag, server_view);

				ck_assert_int_eq(mysql_stream_feed(s, d, r->data + off, hl, hl, ts,
								   collect, g),
						 0);
				if (pl)
					ck_assert_int_eq(mysql_stream_feed(s, d, r->data + off + hl,
									   pl, pl, ts, collect, g),
							 0);
				off += hl + pl;
			}
		} else if (how == BYTEWISE) {
			for (size_t b = 0; b < r->len; b++)
				ck_assert_int_eq(mysql_stream_feed(s, dir_of(r->tag, server_view),
								   r->data + b, 1, 1, ts, collect,
								   g),
						 0);
		} else if (how == COALESCED) {
			size_t j = i, total = 0;
			uint8_t *buf;

			while (j < to && c->r[j].tag == r->tag)
				total += c->r[j++].len;
			buf = malloc(total + 1);
			total = 0;
			for (size_t k = i; k < j; k++) {
				memcpy(buf + total, c->r[k].data, c->r[k].len);
				total += c->r[k].len;
			}
			ck_assert_int_eq(mysql_stream_feed(s, dir_of(r->tag, server_view), buf,
							   total, total, 1000 * j, collect, g),
					 0);
			free(buf);
			i = j - 1;
		} else {
			ck_assert_int_eq(mysql_stream_feed(s, dir_of(r->tag, server_view), r->data,
							   r->len, r->len, ts, collect, g),
					 0);
		}
	}
}

static size_t find_tls(const struct conversation *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->r[i].tag == 'T')
			return i;
	return c->n;
}

/* ---- expectations ------------------------------------------------------------------------- */

struct want {
	const char *op;
	const char *collection;
	const char *db;
	uint16_t error;
};

static void expect(const struct got *g, const struct want *w, size_t n, enum mysql_role role)
{
	ck_assert_uint_eq(g->n, n);
	for (size_t i = 0; i < n; i++) {
		const struct mysql_exchange *ex = &g->ex[i];

		ck_assert_msg(strcmp(ex->operation, w[i].op) == 0, "exchange %zu: op %s, want %s",
			      i, ex->operation, w[i].op);
		ck_assert_msg(strcmp(ex->collection, w[i].collection) == 0,
			      "exchange %zu (%s): collection '%s', want '%s'", i, w[i].op,
			      ex->collection, w[i].collection);
		ck_assert_msg(strcmp(ex->db_namespace, w[i].db) == 0,
			      "exchange %zu (%s): db '%s', want '%s'", i, w[i].op, ex->db_namespace,
			      w[i].db);
		ck_assert_msg(ex->error_code == w[i].error, "exchange %zu (%s): error %u, want %u",
			      i, w[i].op, ex->error_code, w[i].error);
		ck_assert_int_eq(ex->role, role);
		ck_assert(ex->end_ns >= ex->start_ns);
	}
}

/* The mariadb client playing cli_session.sql (the CLI's own queries included). */
static const struct want cli_want[] = {
	{ "SELECT", "", "", 0 }, /* the client's SELECT DATABASE(), before USE */
	{ "USE", "", "app", 0 }, /* COM_INIT_DB from USE app */
	{ "CREATE", "orders", "app", 0 },
	{ "DELETE", "orders", "app", 0 },
	{ "INSERT", "orders", "app", 0 },
	{ "INSERT", "app.orders", "app", 0 },
	{ "SELECT", "orders", "app", 0 }, /* after a comment, backticks */
	{ "SELECT", "orders", "app", 0 }, /* the subquery's table comes first */
	{ "SELECT", "orders", "app", 0 }, /* WITH: the CTE's table, not the CTE */
	{ "SELECT", "orders", "app", 0 }, /* no rows */
	{ "UPDATE", "orders", "app", 0 },
	{ "DELETE", "orders", "app", 0 },
	{ "SELECT", "missing_table", "app", 1146 },
	{ "INSERT", "missing_table", "app", 1146 },
	{ "BEGIN", "", "app", 0 },
	{ "REPLACE", "orders", "app", 0 },
	{ "COMMIT", "", "app", 0 },
	{ "SHOW", "", "app", 0 },
	{ "SET", "", "app", 0 },
	{ "SELECT", "", "app", 0 }, /* SELECT 1; SELECT 2: multi-statement, */
	{ "SELECT", "", "app", 0 }, /* one exchange per statement */
	{ "CREATE", "", "app", 0 }, /* CREATE PROCEDURE */
	{ "CALL", "", "app", 0 },   /* two result sets and the CALL's OK */
};

static void check_cli(const struct got *g, enum mysql_role role)
{
	size_t n = sizeof(cli_want) / sizeof(cli_want[0]);

	expect(g, cli_want, n, role);
	ck_assert_uint_eq(g->ex[4].affected_rows, 2);
	ck_assert_uint_eq(g->ex[6].rows, 1);
	ck_assert_uint_eq(g->ex[7].rows, 3);
	ck_assert_uint_eq(g->ex[9].rows, 0);
	for (size_t i = 0; i < n; i++)
		ck_assert(!g->ex[i].multi_statement);
	/* Each statement of the multi-statement query: its own result, its own row. */
	ck_assert_uint_eq(g->ex[19].results, 1);
	ck_assert_uint_eq(g->ex[19].rows, 1);
	ck_assert_uint_eq(g->ex[20].results, 1);
	ck_assert_uint_eq(g->ex[20].rows, 1);
	ck_assert_uint_le(g->ex[19].end_ns, g->ex[20].start_ns);
	/* CALL: the procedure's two result sets and the CALL's OK are one exchange. */
	ck_assert_uint_eq(g->ex[22].results, 3);
	ck_assert_uint_eq(g->ex[22].rows, 4);
}

static void run_conversation(const char *file, enum split how, bool server_view,
			     void (*check_fn)(const struct got *, enum mysql_role))
{
	struct conversation c = load(file);
	struct mysql_stream *s = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g));
	struct mysql_stream_stats st;

	play(s, &c, 0, c.n, server_view, how, g);
	mysql_stream_close(s);
	check_fn(g, server_view ? MYSQL_ROLE_SERVER : MYSQL_ROLE_CLIENT);
	mysql_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.parse_errors, 0);
	ck_assert_uint_eq(st.lost, 0);
	ck_assert_uint_eq(st.desyncs, 0);
	ck_assert_uint_eq(st.unanswered, 0);
	ck_assert_uint_eq(st.exchanges, g->n);
	mysql_stream_free(s);
	free(g);
	unload(&c);
}

START_TEST(cli_whole)
{
	run_conversation("cli.rec", WHOLE, _i, check_cli);
}
END_TEST

START_TEST(cli_bytewise)
{
	run_conversation("cli.rec", BYTEWISE, _i, check_cli);
}
END_TEST

START_TEST(cli_coalesced)
{
	run_conversation("cli.rec", COALESCED, _i, check_cli);
}
END_TEST

/* pymysql and raw prepared-statement commands (stmt_session.py). */
static const struct want stmt_want[] = {
	{ "CREATE", "items", "app", 0 },
	{ "DELETE", "items", "app", 0 },
	{ "PREPARE", "items", "app", 0 },
	{ "INSERT", "items", "app", 0 },
	{ "INSERT", "items", "app", 0 },
	{ "INSERT", "items", "app", 0 },
	{ "PREPARE", "app.items", "app", 0 },
	{ "SELECT", "app.items", "app", 0 },
	{ "SELECT", "app.items", "app", 0 },
	{ "PREPARE", "items", "app", 0 },
	{ "UPDATE", "items", "app", 0 },
	{ "RESET", "items", "app", 0 },
	{ "SELECT", "app.items", "app", 0 }, /* with a cursor: COM_STMT_FETCH follows */
	{ "PREPARE", "no_such_table", "app", 1146 },
	{ "PREPARE", "items", "app", 0 },
	{ "DELETE", "items", "app", 0 },
	{ "PING", "", "app", 0 },
	{ "USE", "", "mysql", 0 },
	{ "USE", "", "mysql", 1049 }, /* unknown database: the namespace stays */
};

static void check_stmt(const struct got *g, enum mysql_role role)
{
	expect(g, stmt_want, sizeof(stmt_want) / sizeof(stmt_want[0]), role);
	ck_assert_uint_eq(g->ex[3].affected_rows, 1);
	ck_assert_uint_eq(g->ex[7].rows, 3);
	ck_assert_uint_eq(g->ex[8].rows, 0);
	ck_assert_uint_eq(g->ex[12].rows, 0); /* the cursor's rows come with the fetch */
}

START_TEST(stmt_whole)
{
	run_conversation("stmt.rec", WHOLE, _i, check_stmt);
}
END_TEST

START_TEST(stmt_bytewise)
{
	run_conversation("stmt.rec", BYTEWISE, _i, check_stmt);
}
END_TEST

START_TEST(stmt_coalesced)
{
	run_conversation("stmt.rec", COALESCED, _i, check_stmt);
}
END_TEST

/* CLIENT_DEPRECATE_EOF: result sets end with an OK, no EOF after the definitions. */
static const struct want deof_want[] = {
	{ "SELECT", "items", "app", 0 },
	{ "SELECT", "items", "app", 0 },
	{ "SELECT", "missing_table", "app", 1146 },
	{ "UPDATE", "items", "app", 0 },
	{ "PREPARE", "items", "app", 0 },
	{ "SELECT", "items", "app", 0 },
};

static void check_deof(const struct got *g, enum mysql_role role)
{
	expect(g, deof_want, sizeof(deof_want) / sizeof(deof_want[0]), role);
	ck_assert_uint_eq(g->ex[0].rows, 2);
	ck_assert_uint_eq(g->ex[1].rows, 0);
	ck_assert_uint_eq(g->ex[5].rows, 1);
}

START_TEST(deprecate_eof_whole)
{
	run_conversation("deprecate_eof.rec", WHOLE, _i, check_deof);
}
END_TEST

START_TEST(deprecate_eof_bytewise)
{
	run_conversation("deprecate_eof.rec", BYTEWISE, _i, check_deof);
}
END_TEST

/* sysbench oltp_read_write --events=2: prepares, then per event its 18 executes. */
static void check_sysbench(const struct got *g, enum mysql_role role)
{
	static const char *const event_ops[] = {
		"BEGIN",  "SELECT", "SELECT", "SELECT", "SELECT", "SELECT", "SELECT",
		"SELECT", "SELECT", "SELECT", "SELECT", "SELECT", "SELECT", "SELECT",
		"SELECT", "UPDATE", "UPDATE", "DELETE", "INSERT", "COMMIT",
	};
	size_t per_event = sizeof(event_ops) / sizeof(event_ops[0]), prepares = 11;

	ck_assert_uint_eq(g->n, prepares + 2 * per_event);
	for (size_t i = 0; i < prepares; i++) {
		ck_assert_str_eq(g->ex[i].operation, "PREPARE");
		ck_assert_str_eq(g->ex[i].db_namespace, "app");
	}
	for (size_t e = 0; e < 2; e++) {
		for (size_t i = 0; i < per_event; i++) {
			const struct mysql_exchange *ex = &g->ex[prepares + e * per_event + i];

			ck_assert_str_eq(ex->operation, event_ops[i]);
			ck_assert_str_eq(ex->collection,
					 strcmp(event_ops[i], "BEGIN") &&
							 strcmp(event_ops[i], "COMMIT") ?
						 "sbtest1" :
						 "");
			ck_assert_uint_eq(ex->error_code, 0);
			ck_assert_int_eq(ex->role, role);
			ck_assert_uint_eq(ex->command, MYSQL_COM_STMT_EXECUTE);
		}
	}
	/* The point selects' one row each; the recorded range answered ids 51 to 100. */
	ck_assert_uint_eq(g->ex[prepares + 1].rows, 1);
	ck_assert_uint_eq(g->ex[prepares + 11].rows, 50);
}

START_TEST(sysbench_whole)
{
	run_conversation("sysbench.rec", WHOLE, _i, check_sysbench);
}
END_TEST

START_TEST(sysbench_coalesced)
{
	run_conversation("sysbench.rec", COALESCED, _i, check_sysbench);
}
END_TEST

START_TEST(sysbench_bytewise)
{
	run_conversation("sysbench.rec", BYTEWISE, _i, check_sysbench);
}
END_TEST

/*
 * TLS, as the capture hands it over: the greeting and the SSLRequest in the
 * clear, then the TLS handshake's ciphertext (syscalls before OpenSSL's
 * probes know the socket), then the plaintext on the same connection.
 * _i: 0 client view, 1 server view; with _i / 2 the plaintext comes as a
 * stream of its own instead, starting at the HandshakeResponse.
 */
START_TEST(tls)
{
	struct conversation c = load("cli_tls.rec");
	size_t t = find_tls(&c);
	bool server_view = _i & 1, own_stream = _i & 2;
	struct mysql_stream *plain = mysql_stream_new(), *inner;
	struct got *g = calloc(1, sizeof(*g));
	struct mysql_stream_stats st;
	static const uint8_t client_hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01 };
	static const uint8_t server_hello[] = { 0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00 };
	static const struct want want[] = {
		{ "SELECT", "", "", 0 },
		{ "USE", "", "app", 0 },
		{ "SELECT", "orders", "app", 0 },
		{ "SELECT", "missing_table", "app", 1146 },
	};

	ck_assert_uint_lt(t, c.n);
	play(plain, &c, 0, t, server_view, WHOLE, g);
	ck_assert_int_eq(mysql_stream_feed(plain, dir_of('C', server_view), client_hello,
					   sizeof(client_hello), 517, 1, collect, g),
			 0);
	ck_assert_int_eq(mysql_stream_feed(plain, dir_of('S', server_view), server_hello,
					   sizeof(server_hello), 1500, 2, collect, g),
			 0);
	mysql_stream_get_stats(plain, &st);
	ck_assert(st.tls_switch && st.tls_waiting);
	ck_assert_uint_eq(st.parse_errors + st.desyncs + st.exchanges, 0);

	inner = own_stream ? mysql_stream_new() : plain;
	mysql_stream_tls_plaintext(inner);
	play(inner, &c, t + 1, c.n, server_view, server_view ? HEADERS : WHOLE, g);
	expect(g, want, sizeof(want) / sizeof(want[0]),
	       server_view ? MYSQL_ROLE_SERVER : MYSQL_ROLE_CLIENT);
	mysql_stream_get_stats(inner, &st);
	ck_assert(!st.tls_waiting);
	ck_assert_uint_eq(st.parse_errors + st.desyncs + st.lost, 0);
	if (own_stream)
		mysql_stream_free(inner);
	mysql_stream_free(plain);
	free(g);
	unload(&c);
}
END_TEST

/* --compress: cli_session.sql again, inside compressed packets: the same exchanges. */
START_TEST(compressed_whole)
{
	run_conversation("cli_compress.rec", WHOLE, _i, check_cli);
}
END_TEST

START_TEST(compressed_bytewise)
{
	run_conversation("cli_compress.rec", BYTEWISE, _i, check_cli);
}
END_TEST

START_TEST(compressed_coalesced)
{
	run_conversation("cli_compress.rec", COALESCED, _i, check_cli);
}
END_TEST

static void check_compressed_stats(const char *file, size_t min_packets)
{
	struct conversation c = load(file);
	struct mysql_stream *s = mysql_stream_new();
	struct got g = { .n = 0 };
	struct mysql_stream_stats st;

	play(s, &c, 0, c.n, true, WHOLE, &g);
	mysql_stream_get_stats(s, &st);
	ck_assert(st.compressed);
	ck_assert(!st.compressed_zstd);
	ck_assert_uint_ge(st.compressed_packets, min_packets); /* zlib, not only stored ones */
	ck_assert_uint_eq(st.compressed_skipped, 0);
	mysql_stream_free(s);
	unload(&c);
}

START_TEST(compressed_inflated)
{
	check_compressed_stats("cli_compress.rec", 5);
	check_compressed_stats("multi_compress.rec", 5);
}
END_TEST

/*
 * A compressed packet larger than the decoder inflates: the first
 * ZIP_OUT_MAX (1 MiB) bytes are framed, the rest is skipped by the length
 * its header announced, and the next command decodes.
 */
START_TEST(compressed_bounded)
{
	struct conversation c = load("cli_compress.rec");
	struct mysql_stream *s = mysql_stream_new();
	struct got g = { .n = 0 };
	struct mysql_stream_stats st;
	static const char q1[] = "\x03SELECT v FROM big", q2[] = "\x03SELECT v FROM small";
	static const uint8_t coldef[] = { 0x14, 0, 0, 2, 3, 'd', 'e', 'f' };
	uint32_t rows = 30000, row_len = 100, ulen;
	uint8_t *inner, *out, *p, cmd[64] = { 0 };
	uLongf clen;
	size_t n;

	/* The handshake (records 0-2) switches the stream to compressed packets. */
	play(s, &c, 0, 3, _i, WHOLE, &g);
	/* SELECT v FROM big: one column, rows of row_len bytes, EOF: 3 MB in one packet. */
	ulen = 4 + 1 + 4 + 20 + 4 + 5 + rows * (4 + row_len) + 4 + 5;
	inner = calloc(1, ulen);
	p = inner;
	memcpy(p, "\x01\x00\x00\x01\x01", 5), p += 5;
	memcpy(p, coldef, sizeof(coldef)); /* the rest of the definition: zeros */
	p += 4 + 20;
	memcpy(p, "\x05\x00\x00\x03\xfe\x00\x00\x02\x00", 9), p += 9;
	for (uint32_t r = 0; r < rows; r++, p += 4 + row_len) {
		p[0] = (uint8_t)row_len, p[3] = (uint8_t)(4 + r);
		p[4] = (uint8_t)(row_len - 1);
	}
	memcpy(p, "\x05\x00\x00\x00\xfe\x00\x00\x02\x00", 9);
	p[3] = (uint8_t)(4 + rows);
	clen = compressBound(ulen);
	out = malloc(7 + clen);
	ck_assert_int_eq(compress(out + 7, &clen, inner, ulen), Z_OK);
	out[0] = (uint8_t)clen, out[1] = (uint8_t)(clen >> 8), out[2] = (uint8_t)(clen >> 16);
	out[3] = 1;
	out[4] = (uint8_t)ulen, out[5] = (uint8_t)(ulen >> 8), out[6] = (uint8_t)(ulen >> 16);
	/* The commands go uncompressed (too short to gain), as clients send them. */
	n = sizeof(q1) - 1;
	cmd[0] = (uint8_t)(n + 4), cmd[7] = (uint8_t)n;
	memcpy(cmd + 11, q1, n);
	mysql_stream_feed(s, dir_of('C', _i), cmd, 11 + n, 11 + n, 100, collect, &g);
	mysql_stream_feed(s, dir_of('S', _i), out, 7 + clen, 7 + clen, 200, collect, &g);
	n = sizeof(q2) - 1;
	cmd[0] = (uint8_t)(n + 4), cmd[7] = (uint8_t)n;
	memcpy(cmd + 11, q2, n);
	mysql_stream_feed(s, dir_of('C', _i), cmd, 11 + n, 11 + n, 300, collect, &g);
	mysql_stream_feed(s, dir_of('S', _i),
			  (const uint8_t *)"\x0b\x00\x00\x01\x00\x00\x00"
					   "\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00",
			  18, 18, 400, collect, &g);
	mysql_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.compressed_skipped, ulen - (1u << 20));
	/* The big one's end was not inflated: not reported. The next one is, alone. */
	ck_assert_uint_eq(g.n, 1);
	ck_assert_str_eq(g.ex[0].collection, "small");
	ck_assert_uint_eq(g.ex[0].start_ns, 300);
	ck_assert_uint_eq(g.ex[0].end_ns, 400);
	free(inner);
	free(out);
	mysql_stream_free(s);
	unload(&c);
}
END_TEST

/*
 * Compressed packets captured only up to a cut: a zlib stream cannot go on
 * past bytes not captured, so the packets inside are skipped by the length
 * the header announced. Multi-statement queries cut: the statements past the
 * cut are not named. Whatever is reported must be the real exchange at its
 * position; the handshake (records 0-2) is captured whole.
 */
START_TEST(compressed_uncaptured)
{
	static const char *const files[] = { "cli_compress.rec", "multi_compress.rec",
					     "multi.rec" };
	const char *file = files[_i / 30];
	size_t cut = (size_t)(_i % 30) * 5 + 8;
	struct conversation c = load(file);
	struct mysql_stream *s = mysql_stream_new(), *ref = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g)), *full = calloc(1, sizeof(*full));
	size_t j = 0, whole = 0;

	play(ref, &c, 0, c.n, true, WHOLE, full);
	for (size_t i = 0; i < c.n; i++) {
		const struct record *r = &c.r[i];
		size_t len = i < 3 || r->len < cut ? r->len : cut;

		whole += len == r->len && r->tag == 'S';
		ck_assert_int_eq(mysql_stream_feed(s, dir_of(r->tag, true), r->data, len, r->len,
						   1000 * (i + 1), collect, g),
				 0);
	}
	for (size_t i = 0; i < g->n; i++) {
		while (j < full->n && full->ex[j].start_ns != g->ex[i].start_ns)
			j++;
		ck_assert_msg(j < full->n, "cut %zu: exchange %zu has no counterpart", cut, i);
		ck_assert_str_eq(g->ex[i].operation, full->ex[j].operation);
		if (g->ex[i].collection[0]) /* a name the cut touches is left out */
			ck_assert_str_eq(g->ex[i].collection, full->ex[j].collection);
		ck_assert_uint_eq(g->ex[i].error_code, full->ex[j].error_code);
		ck_assert_uint_eq(g->ex[i].end_ns, full->ex[j].end_ns);
	}
	/* Past the longest record nothing is cut: everything decodes. */
	if (cut >= 150 && !strcmp(file, "cli_compress.rec"))
		ck_assert_uint_eq(g->n, full->n);
	mysql_stream_free(s);
	mysql_stream_free(ref);
	free(g);
	free(full);
	unload(&c);
}
END_TEST

/* multi_session.sql: several statements per query, CALL among them, an error ending one. */
static const struct want multi_want[] = {
	{ "DROP", "m1", "app", 0 },
	{ "DROP", "", "app", 0 },
	{ "CREATE", "m1", "app", 0 },
	{ "CREATE", "", "app", 0 }, /* the procedure: the ';' in its body end nothing */
	{ "INSERT", "m1", "app", 0 },
	{ "INSERT", "m1", "app", 0 },
	{ "SELECT", "m1", "app", 0 },
	{ "UPDATE", "m1", "app", 0 },
	{ "CALL", "", "app", 0 }, /* its two result sets and its OK */
	{ "DELETE", "m1", "app", 0 },
	{ "CALL", "", "app", 0 },
	{ "SELECT", "m1", "app", 0 },
	{ "SELECT", "missing_m", "app", 1146 }, /* the DELETE after it never ran */
	{ "SELECT", "", "app", 0 },
	{ "USE", "", "information_schema", 0 },
	{ "SELECT", "app.m1", "information_schema", 0 },
};

static void check_multi(const struct got *g, enum mysql_role role)
{
	expect(g, multi_want, sizeof(multi_want) / sizeof(multi_want[0]), role);
	ck_assert_uint_eq(g->ex[6].rows, 1);
	ck_assert_uint_eq(g->ex[8].results, 3);
	ck_assert_uint_eq(g->ex[8].rows, 3);
	ck_assert_uint_eq(g->ex[9].results, 1);
	ck_assert_uint_eq(g->ex[9].affected_rows, 1);
	ck_assert_uint_eq(g->ex[10].results, 3);
	ck_assert_uint_eq(g->ex[10].rows, 2);
	for (size_t i = 1; i < g->n; i++) {
		ck_assert(!g->ex[i].multi_statement);
		ck_assert_uint_le(g->ex[i - 1].end_ns, g->ex[i].start_ns);
	}
}

START_TEST(multi_whole)
{
	run_conversation(_i < 2 ? "multi.rec" : "multi_compress.rec", WHOLE, _i % 2, check_multi);
}
END_TEST

START_TEST(multi_bytewise)
{
	run_conversation(_i < 2 ? "multi.rec" : "multi_compress.rec", BYTEWISE, _i % 2,
			 check_multi);
}
END_TEST

START_TEST(multi_coalesced)
{
	run_conversation(_i < 2 ? "multi.rec" : "multi_compress.rec", COALESCED, _i % 2,
			 check_multi);
}
END_TEST

/* The same compressed bytes without their handshake: errors, never an exchange. */
START_TEST(compressed_without_handshake)
{
	struct conversation c = load("cli_compress.rec");
	struct mysql_stream *s = mysql_stream_new();
	struct got g = { .n = 0 };
	struct mysql_stream_stats st;

	play(s, &c, 3, c.n, _i, WHOLE, &g);
	mysql_stream_get_stats(s, &st);
	ck_assert_uint_eq(g.n, 0);
	ck_assert_uint_eq(st.exchanges, 0);
	mysql_stream_free(s);
	unload(&c);
}
END_TEST

/* A stream that starts between commands (the capture began late): commands from there on. */
START_TEST(starts_mid_connection)
{
	struct conversation c = load("cli.rec");
	struct mysql_stream *s = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g));
	size_t n = sizeof(cli_want) / sizeof(cli_want[0]);

	size_t from = 0;

	/* From the CREATE TABLE: the namespace is unknown until something names it. */
	while (from < c.n && !(c.r[from].tag == 'C' && c.r[from].len > 11 &&
			       memcmp(c.r[from].data + 5, "CREATE", 6) == 0))
		from++;
	ck_assert_uint_lt(from, c.n);
	play(s, &c, from, c.n, _i, WHOLE, g);
	ck_assert_uint_eq(g->n, n - 2);
	for (size_t i = 0; i < g->n; i++) {
		ck_assert_str_eq(g->ex[i].operation, cli_want[i + 2].op);
		ck_assert_str_eq(g->ex[i].collection, cli_want[i + 2].collection);
		ck_assert_str_eq(g->ex[i].db_namespace, "");
	}
	mysql_stream_free(s);
	free(g);
	unload(&c);
}
END_TEST

/*
 * The first bytes seen look like a command but come from the server (the
 * middle of a result set): once the real client sends a command, the guess
 * is dropped and decoding starts over at the next command.
 */
START_TEST(wrong_direction_guess)
{
	struct conversation c = load("cli.rec");
	struct mysql_stream *s = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g));
	static const uint8_t row[] = { 9, 0, 0, 0, 0x03, 'a', 'b', 'c', 0x04, 'd', 'e', 'f', 'g' };
	size_t from = 0, n = sizeof(cli_want) / sizeof(cli_want[0]);

	while (from < c.n && !(c.r[from].tag == 'C' && c.r[from].len > 11 &&
			       memcmp(c.r[from].data + 5, "CREATE", 6) == 0))
		from++;
	ck_assert_uint_lt(from, c.n);
	ck_assert_int_eq(
		mysql_stream_feed(s, dir_of('S', _i), row, sizeof(row), sizeof(row), 1, collect, g),
		0);
	play(s, &c, from, c.n, _i, WHOLE, g);
	/* The CREATE ends the guess; decoding resumes with the DELETE after it. */
	ck_assert_uint_eq(g->n, n - 3);
	for (size_t i = 0; i < g->n; i++) {
		ck_assert_str_eq(g->ex[i].operation, cli_want[i + 3].op);
		ck_assert_str_eq(g->ex[i].collection, cli_want[i + 3].collection);
		ck_assert_int_eq(g->ex[i].role, _i ? MYSQL_ROLE_SERVER : MYSQL_ROLE_CLIENT);
	}
	mysql_stream_free(s);
	free(g);
	unload(&c);
}
END_TEST

/*
 * Bytes nobody saw: each record is captured only up to a cut (the rest is
 * total - len). Framing skips what it can by count; where a header is lost,
 * the stream resyncs. Whatever is reported must match the real exchange at
 * its position: never another command's names or status.
 */
START_TEST(uncaptured_bytes)
{
	struct conversation c = load("sysbench.rec");
	size_t cut = (size_t)(_i % 40) * 7 + 5;
	bool with_tail = _i >= 40; /* the capture's last bytes of each syscall, as it sends them */
	struct mysql_stream *s = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g));
	struct got *full = calloc(1, sizeof(*full));
	struct mysql_stream *ref = mysql_stream_new();
	struct mysql_stream_stats st;
	size_t j = 0;

	play(ref, &c, 0, c.n, true, WHOLE, full);
	for (size_t i = 0; i < c.n; i++) {
		const struct record *r = &c.r[i];
		size_t len = r->len < cut ? r->len : cut;
		size_t tail = with_tail && r->len > cut ? r->len - cut : 0;

		if (tail > 64)
			tail = 64;
		ck_assert_int_eq(mysql_stream_feed(s, dir_of(r->tag, true), r->data, len,
						   r->len - tail, 1000 * (i + 1), collect, g),
				 0);
		if (tail)
			ck_assert_int_eq(mysql_stream_feed(s, dir_of(r->tag, true),
							   r->data + r->len - tail, tail, tail,
							   1000 * (i + 1), collect, g),
					 0);
	}
	mysql_stream_get_stats(s, &st);
	if (getenv("MYSQL_TEST_DEBUG"))
		fprintf(stderr, "cut %zu: %zu of %zu, lost %lu desyncs %lu parse %lu unknown %lu\n",
			cut, g->n, full->n, (unsigned long)st.lost, (unsigned long)st.desyncs,
			(unsigned long)st.parse_errors, (unsigned long)st.unknown_statements);
	/* Every exchange reported is one of the real ones, in order, with its own names. */
	for (size_t i = 0; i < g->n; i++) {
		while (j < full->n && full->ex[j].start_ns != g->ex[i].start_ns)
			j++;
		ck_assert_msg(j < full->n, "cut %zu: exchange %zu has no counterpart", cut, i);
		ck_assert_str_eq(g->ex[i].operation, full->ex[j].operation);
		ck_assert_uint_eq(g->ex[i].error_code, full->ex[j].error_code);
		ck_assert_uint_eq(g->ex[i].end_ns, full->ex[j].end_ns);
		if (g->ex[i].collection[0])
			ck_assert_str_eq(g->ex[i].collection, full->ex[j].collection);
	}
	/*
	 * From 26 bytes on, the executes' headers and statement ids are seen, and the
	 * OK responses (11 bytes) whole: BEGIN, the writes and COMMIT decode in both
	 * events. Result sets longer than the cut lose their framing and are dropped.
	 */
	if (cut >= 26)
		ck_assert_uint_ge(g->n, 2 * 6);
	/*
	 * With the last bytes of each syscall, result sets longer than the cut end
	 * where their final EOF shows: every execute is reported (prepares whose
	 * definitions were cut are not).
	 */
	if (with_tail && cut >= 40) {
		size_t executes = 0, want = 0;

		for (size_t i = 0; i < g->n; i++)
			executes += g->ex[i].command == MYSQL_COM_STMT_EXECUTE;
		for (size_t i = 0; i < full->n; i++)
			want += full->ex[i].command == MYSQL_COM_STMT_EXECUTE;
		ck_assert_msg(executes == want, "cut %zu with tails: %zu executes of %zu", cut,
			      executes, want);
	}
	mysql_stream_free(s);
	mysql_stream_free(ref);
	free(g);
	free(full);
	unload(&c);
}
END_TEST

/* A header in its own read, then the payload: as pymysql reads. */
START_TEST(header_in_own_read)
{
	struct conversation c = load("stmt.rec");
	struct mysql_stream *s = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g));

	for (size_t i = 0; i < c.n; i++) {
		const struct record *r = &c.r[i];
		size_t off = 0;

		while (off < r->len) {
			size_t plen = r->len - off >= 4 ?
					      (size_t)(r->data[off] | r->data[off + 1] << 8 |
						       r->data[off + 2] << 16) :
					      0;
			size_t hl = r->len - off < 4 ? r->len - off : 4;
			size_t pl = r->len - off - hl < plen ? r->len - off - hl : plen;

			mysql_stream_feed(s, dir_of(r->tag, false), r->data + off, hl, hl, i,
					  collect, g);
			if (pl)
				mysql_stream_feed(s, dir_of(r->tag, false), r->data + off + hl, pl,
						  pl, i, collect, g);
			off += hl + pl;
		}
	}
	check_stmt(g, MYSQL_ROLE_CLIENT);
	mysql_stream_free(s);
	free(g);
	unload(&c);
}
END_TEST

/*
 * The server's view after bytes nobody saw, when the server reads each
 * header and payload apart (mariadbd does): the lost side picks up again at
 * a header read followed by its payload.
 */
START_TEST(resync_on_header_reads)
{
	struct conversation c = load("stmt.rec");
	struct mysql_stream *s = mysql_stream_new(), *ref = mysql_stream_new();
	struct got *g = calloc(1, sizeof(*g)), *full = calloc(1, sizeof(*full));
	static const uint8_t cut[] = { 0x30, 0x00 };
	size_t k = c.n / 2, want = 0;

	while (k < c.n && c.r[k].tag != 'C')
		k++;
	ck_assert_uint_lt(k, c.n);
	play(ref, &c, 0, c.n, true, HEADERS, full);
	play(s, &c, 0, k, true, HEADERS, g);
	g->n = 0;
	/* Two bytes of a header seen, the rest of a 1000-byte write not. */
	ck_assert_int_eq(mysql_stream_feed(s, MYSQL_DIR_IN, cut, sizeof(cut), 1000, 1000 * k + 500,
					   collect, g),
			 0);
	play(s, &c, k, c.n, true, HEADERS, g);
	for (size_t i = 0; i < full->n; i++)
		want += full->ex[i].start_ns >= 1000 * (k + 1);
	ck_assert_uint_gt(want, 3);
	ck_assert_uint_eq(g->n, want);
	for (size_t i = 0; i < g->n; i++) {
		ck_assert_str_eq(g->ex[i].operation, full->ex[full->n - want + i].operation);
		ck_assert_uint_eq(g->ex[i].error_code, full->ex[full->n - want + i].error_code);
	}
	mysql_stream_free(s);
	mysql_stream_free(ref);
	free(g);
	free(full);
	unload(&c);
}
END_TEST

/* Not MySQL at all: HTTP on the port. */
START_TEST(not_mysql)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct mysql_stream *s = mysql_stream_new();
	int rc = 0;

	for (int i = 0; i < 200 && rc == 0; i++)
		rc = mysql_stream_feed(s, MYSQL_DIR_IN, (const uint8_t *)http, sizeof(http) - 1,
				       sizeof(http) - 1, (uint64_t)i, NULL, NULL);
	ck_assert_int_eq(rc, -EPROTO);
	ck_assert_int_eq(
		mysql_stream_feed(s, MYSQL_DIR_IN, (const uint8_t *)"x", 1, 1, 0, NULL, NULL),
		-EPROTO);
	mysql_stream_free(s);
}
END_TEST

/* A command the connection closed on is unanswered, not reported. */
START_TEST(close_unanswered)
{
	static const uint8_t ping[] = { 1, 0, 0, 0, 0x0e };
	struct mysql_stream *s = mysql_stream_new();
	struct got g = { .n = 0 };
	struct mysql_stream_stats st;

	mysql_stream_feed(s, MYSQL_DIR_OUT, ping, sizeof(ping), sizeof(ping), 1, collect, &g);
	mysql_stream_close(s);
	mysql_stream_get_stats(s, &st);
	ck_assert_uint_eq(st.unanswered, 1);
	ck_assert_uint_eq(g.n, 0);
	ck_assert_int_eq(st.role, MYSQL_ROLE_CLIENT);
	mysql_stream_free(s);
}
END_TEST

/* A statement whose text is no SQL: neither its prepare nor its executes are reported. */
START_TEST(unsummarised_statement)
{
	static const uint8_t prepare[] = { 3, 0, 0, 0, 0x16, 0x01, 0x02 };
	static const uint8_t prepare_ok[] = { 12, 0, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t execute[] = { 10, 0, 0, 0, 0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0 };
	static const uint8_t ok[] = { 7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0 };
	struct mysql_stream *s = mysql_stream_new();
	struct got g = { .n = 0 };
	struct mysql_stream_stats st;

	mysql_stream_feed(s, MYSQL_DIR_OUT, prepare, sizeof(prepare), sizeof(prepare), 1, collect,
			  &g);
	mysql_stream_feed(s, MYSQL_DIR_IN, prepare_ok, sizeof(prepare_ok), sizeof(prepare_ok), 2,
			  collect, &g);
	for (int i = 0; i < 3; i++) {
		mysql_stream_feed(s, MYSQL_DIR_OUT, execute, sizeof(execute), sizeof(execute), 3,
				  collect, &g);
		mysql_stream_feed(s, MYSQL_DIR_IN, ok, sizeof(ok), sizeof(ok), 4, collect, &g);
	}
	mysql_stream_get_stats(s, &st);
	ck_assert_uint_eq(g.n, 0);
	ck_assert_uint_eq(st.unsummarized, 4);
	ck_assert_uint_eq(st.lost + st.parse_errors + st.unknown_statements, 0);
	mysql_stream_free(s);
}
END_TEST

/* A 16 MiB packet and its continuation: one command, skipped by count. */
START_TEST(large_packet_continuation)
{
	struct mysql_stream *s = mysql_stream_new();
	struct got g = { .n = 0 };
	uint8_t first[64] = { 0xff, 0xff, 0xff, 0, 0x03 };
	static const uint8_t rest[] = { 4, 0, 0, 1, '1', '2', '3', ')' };
	static const uint8_t ok[] = { 7, 0, 0, 1, 0, 1, 0, 2, 0, 0, 0 };

	memcpy(first + 5, "INSERT INTO big VALUES ('", 25);
	mysql_stream_feed(s, MYSQL_DIR_OUT, first, sizeof(first), 4 + 0xffffffull, 1, collect, &g);
	mysql_stream_feed(s, MYSQL_DIR_OUT, rest, sizeof(rest), sizeof(rest), 2, collect, &g);
	mysql_stream_feed(s, MYSQL_DIR_IN, ok, sizeof(ok), sizeof(ok), 3, collect, &g);
	ck_assert_uint_eq(g.n, 1);
	ck_assert_str_eq(g.ex[0].operation, "INSERT");
	ck_assert_str_eq(g.ex[0].collection, "big");
	ck_assert_uint_eq(g.ex[0].affected_rows, 1);
	ck_assert_uint_eq(g.ex[0].start_ns, 1);
	ck_assert_uint_eq(g.ex[0].end_ns, 3);
	mysql_stream_free(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mysql_proto");
	TCase *tc = tcase_create("decoder");

	tcase_set_timeout(tc, 60);
	/* _i = 0: the client's view, 1: the server's. */
	tcase_add_loop_test(tc, cli_whole, 0, 2);
	tcase_add_loop_test(tc, cli_bytewise, 0, 2);
	tcase_add_loop_test(tc, cli_coalesced, 0, 2);
	tcase_add_loop_test(tc, stmt_whole, 0, 2);
	tcase_add_loop_test(tc, stmt_bytewise, 0, 2);
	tcase_add_loop_test(tc, stmt_coalesced, 0, 2);
	tcase_add_loop_test(tc, deprecate_eof_whole, 0, 2);
	tcase_add_loop_test(tc, deprecate_eof_bytewise, 0, 2);
	tcase_add_loop_test(tc, sysbench_whole, 0, 2);
	tcase_add_loop_test(tc, sysbench_coalesced, 0, 2);
	tcase_add_loop_test(tc, sysbench_bytewise, 0, 2);
	tcase_add_loop_test(tc, tls, 0, 4);
	tcase_add_loop_test(tc, compressed_whole, 0, 2);
	tcase_add_loop_test(tc, compressed_bytewise, 0, 2);
	tcase_add_loop_test(tc, compressed_coalesced, 0, 2);
	tcase_add_test(tc, compressed_inflated);
	tcase_add_loop_test(tc, compressed_bounded, 0, 2);
	tcase_add_loop_test(tc, compressed_uncaptured, 0, 90);
	tcase_add_loop_test(tc, multi_whole, 0, 4);
	tcase_add_loop_test(tc, multi_bytewise, 0, 4);
	tcase_add_loop_test(tc, multi_coalesced, 0, 4);
	tcase_add_loop_test(tc, compressed_without_handshake, 0, 2);
	tcase_add_loop_test(tc, starts_mid_connection, 0, 2);
	tcase_add_loop_test(tc, wrong_direction_guess, 0, 2);
	tcase_add_loop_test(tc, uncaptured_bytes, 0, 80);
	tcase_add_test(tc, header_in_own_read);
	tcase_add_test(tc, resync_on_header_reads);
	tcase_add_test(tc, not_mysql);
	tcase_add_test(tc, close_unanswered);
	tcase_add_test(tc, large_packet_continuation);
	tcase_add_test(tc, unsummarised_statement);
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
