/*
 * MySQL/MariaDB protocol stream decoder (see mysql_proto.h).
 *
 * Framing: each direction is a sequence of packets, a 3-byte little-endian
 * payload length and a sequence number, then the payload. A payload of
 * 0xffffff bytes continues in the next packet. Headers and payloads may be cut
 * anywhere by the syscalls; the first PKT_KEEP bytes of each payload are kept
 * for parsing, the rest is skipped by count, captured or not.
 *
 * Phases: a stream that starts with the server's greeting (or with the
 * client's HandshakeResponse, as the plaintext of a TLS connection does)
 * skips the connection phase until the server's OK, learning the capability
 * flags (CLIENT_DEPRECATE_EOF, compression, TLS) and the initial database on
 * the way. A stream that starts later begins at the first command packet.
 *
 * Pairing: the client's packets with sequence number 0 are commands; the
 * server answers them in order, each response starting at sequence number 1
 * and counting up. Commands that expect a response are queued; the head of
 * the queue is answered by a small state machine per response kind (OK, ERR,
 * result set with or without EOF packets, the prepare response, LOCAL
 * INFILE). Whether EOF packets are sent is read from the handshake when seen,
 * otherwise inferred: an EOF packet is exactly 5 bytes, the OK that replaces it
 * at least 7.
 *
 * Loss: when bytes nobody saw cover a packet header, that direction's framing
 * is lost. Commands then resync at a feed that starts with a whole command
 * packet (sequence 0, a known command); responses at a feed that starts with a
 * sequence-1 packet while a command seen after the loss waits. Responses whose
 * commands were not seen are dropped, never attributed to another command.
 *
 * Compression (CLIENT_COMPRESS, zlib): after the handshake each direction is a
 * sequence of compressed packets, a 7-byte header (compressed length,
 * sequence, uncompressed length: 0 when the payload went uncompressed) and a
 * zlib stream of its own, whose content is the ordinary packet stream,
 * continued from one compressed packet to the next. Each is inflated as its
 * bytes come, at most ZIP_OUT_MAX bytes of it; what is not inflated (beyond
 * that, or bytes not captured) goes on to the framing as bytes not captured,
 * of the length the header announced. zstd is recognised, not decoded.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mysql_proto.h"

#define PKT_KEEP	1024 /* payload bytes kept per packet: statement text, handshake fields */
#define PKT_MAX_LEN	0xffffffu
#define PENDING_MAX	8     /* commands awaiting a response (MariaDB pipelines a few) */
#define STMT_MAX	256   /* prepared statements remembered per connection */
#define START_STRIKES	8     /* unrecognised packets before the stream waits for a command */
#define START_FEEDS_MAX 64    /* feeds without anything recognisable: not MySQL */
#define START_LEN_MAX	65536 /* a first packet that is not a command is no longer */
#define ZIP_HDR		7
#define ZIP_OUT_MAX	(1u << 20) /* bytes inflated per compressed packet; the rest is skipped */
#define ZIP_CHUNK	4096	   /* inflated bytes handed to the framing at a time */

/* Capability flags. */
#define CLIENT_CONNECT_WITH_DB		  0x00000008u
#define CLIENT_COMPRESS			  0x00000020u
#define CLIENT_PROTOCOL_41		  0x00000200u
#define CLIENT_SSL			  0x00000800u
#define CLIENT_SECURE_CONNECTION	  0x00008000u
#define CLIENT_PLUGIN_AUTH_LENENC_DATA	  0x00200000u
#define CLIENT_DEPRECATE_EOF		  0x01000000u
#define CLIENT_ZSTD_COMPRESSION_ALGORITHM 0x04000000u

/* Server status flags. */
#define SERVER_MORE_RESULTS_EXISTS   0x0008u
#define SERVER_STATUS_CURSOR_EXISTS  0x0040u
#define SERVER_SESSION_STATE_CHANGED 0x4000u
#define SESSION_TRACK_SCHEMA	     1

#define STMT_ID_LAST 0xffffffffu /* MariaDB: the statement prepared last */

enum phase {
	PH_START,     /* nothing recognised yet */
	PH_HANDSHAKE, /* connection phase: greeting, HandshakeResponse, authentication */
	PH_COMMAND,   /* commands and responses */
	PH_TLS_WAIT,  /* after SSLRequest: ciphertext, until the plaintext starts */
	PH_IGNORE,    /* zstd compression: nothing more is decoded */
	PH_NOT_MYSQL,
};

/* Where the response to the head of the queue stands. */
enum resp {
	R_FIRST,	   /* its first packet (or the next result's, after MORE_RESULTS) */
	R_COLDEFS,	   /* column definitions */
	R_COLS_EOF,	   /* the EOF after them, when the server sends one */
	R_ROWS,		   /* rows until EOF, OK (0xfe) or ERR */
	R_PREP_PARAMS,	   /* prepare: parameter definitions */
	R_PREP_PARAMS_EOF, /* ... and their EOF */
	R_PREP_COLS,	   /* prepare: column definitions */
	R_PREP_COLS_EOF,   /* ... and their EOF */
	R_INFILE,	   /* LOCAL INFILE: the client sends the file, then OK or ERR */
	R_ONE,		   /* a single packet: OK, ERR or EOF */
	R_ABSORB,	   /* not decoded: everything until the next command */
};

struct pending {
	uint8_t cmd;
	enum resp first;
	bool report;
	bool counted;	/* not reported, and already counted as why */
	bool multi;	/* several statements, not decoded apart: names are the first's */
	bool split;	/* several statements, one exchange each: the stream's text is this one's */
	bool call;	/* the current statement is a CALL: its results end with an OK */
	bool last_stmt; /* executes "the statement prepared last": known when answered */
	uint64_t start_ns;
	char op[MYSQL_OP_MAX];
	char collection[MYSQL_NAME_MAX];
	char db[MYSQL_DB_MAX]; /* USE / COM_INIT_DB: the database switched to */
};

struct stmt {
	uint32_t id;
	char op[MYSQL_OP_MAX];
	char collection[MYSQL_NAME_MAX];
};

struct half {
	uint8_t hdr[4];
	unsigned hdr_have;
	bool in_payload;
	bool gap;  /* payload bytes of this packet were not captured: keep no more */
	bool cont; /* this packet continues a 16 MiB one */
	bool lost; /* framing lost: waits for a feed that starts a packet */
	uint32_t plen, left, keep;
	uint64_t start_ns;
	uint64_t gap_ts;  /* the latest feed with bytes not captured: its syscall's time */
	uint8_t stash[4]; /* while lost: a feed of a header alone, maybe a packet's start */
	unsigned stash_have;
	uint64_t stash_ts;
	uint8_t buf[PKT_KEEP];
};

/* One direction's compressed packets. */
struct zhalf {
	uint8_t hdr[ZIP_HDR];
	unsigned hdr_have;
	uint32_t left; /* compressed payload bytes still to come */
	uint32_t ulen; /* uncompressed length, 0: the payload is not compressed */
	uint32_t out;  /* bytes inflated so far */
	bool broken;   /* inflating stopped: the rest of this packet is skipped */
	bool lost;     /* framing lost: waits for a feed that is one whole compressed packet */
	bool z_ready;  /* z initialised */
	z_stream z;
};

/* One whole packet, as dispatched. */
struct pkt {
	enum mysql_dir dir;
	uint8_t seq;
	uint32_t len;	     /* payload length */
	const uint8_t *data; /* the first `have` payload bytes */
	uint32_t have;
	bool complete; /* have == len */
	uint64_t start_ns, end_ns;
};

struct mysql_stream {
	enum phase phase;
	int cmd_dir;	    /* direction of the client's packets, -1 unknown */
	bool dir_confirmed; /* by the handshake, or by a response that answered a command */
	unsigned strikes, idle_feeds;
	uint32_t client_caps, server_caps;
	bool client_caps_known, server_caps_known;
	int deprecate_eof; /* -1 unknown, 0 EOF packets, 1 OK instead */
	char db[MYSQL_DB_MAX];
	char hs_db[MYSQL_DB_MAX];
	struct half half[2];

	struct pending q[PENDING_MAX];
	unsigned q_head, q_len;

	/* The response to q[q_head]. */
	enum resp rs;
	bool resp_started;
	uint8_t last_seq;
	uint64_t cols_left;
	uint32_t prep_cols, prep_params;
	uint32_t results;
	uint64_t rows, affected;
	uint16_t err;
	uint64_t end_ns;
	bool zip;	 /* compressed packets from now on */
	bool zip_switch; /* ... starting inside the feed now being framed */
	struct zhalf zh[2];
	bool maybe_eof; /* a prepare ended while EOF use was unknown: its EOF may follow */
	bool rows_lost; /* framing lost inside the head's result set: waiting for its end */
	uint8_t maybe_eof_seq;

	/* The text of the multi-statement query being answered (the one split pending). */
	char *mtext;
	uint32_t mtext_len, mtext_next;
	bool mtext_cut;

	struct stmt *stmts;
	unsigned n_stmts, cap_stmts, next_evict;
	uint32_t last_prepared;

	struct mysql_stream_stats st;
};

struct feed {
	struct mysql_stream *s;
	mysql_exchange_fn fn;
	void *ctx;
};

/* ---- little helpers --------------------------------------------------------------------- */

static uint32_t le16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le24(const uint8_t *p)
{
	return le16(p) | (uint32_t)p[2] << 16;
}

static uint32_t le32(const uint8_t *p)
{
	return le24(p) | (uint32_t)p[3] << 24;
}

/* A length-encoded integer at *off of data[0..n); false when malformed or cut. */
static bool lenenc(const uint8_t *data, uint32_t n, uint32_t *off, uint64_t *v)
{
	uint32_t o = *off, size;
	uint8_t c;

	if (o >= n)
		return false;
	c = data[o];
	if (c < 0xfb) {
		*v = c;
		*off = o + 1;
		return true;
	}
	if (c == 0xfc)
		size = 2;
	else if (c == 0xfd)
		size = 3;
	else if (c == 0xfe)
		size = 8;
	else
		return false;
	if (n - o - 1 < size)
		return false;
	*v = 0;
	for (uint32_t i = 0; i < size; i++)
		*v |= (uint64_t)data[o + 1 + i] << (8 * i);
	*off = o + 1 + size;
	return true;
}

/* A database name as a label: bounded, printable. */
static void copy_name(char *out, size_t cap, const uint8_t *p, size_t n)
{
	size_t o = 0;

	if (n > MYSQL_IDENT_MAX)
		n = MYSQL_IDENT_MAX;
	for (size_t i = 0; i < n && o + 1 < cap; i++)
		out[o++] = (p[i] < 0x20 || p[i] == 0x7f || p[i] == '"' || p[i] == '\'' ||
			    p[i] == '\\') ?
				   '?' :
				   (char)p[i];
	out[o] = '\0';
}

static enum mysql_role role_of(const struct mysql_stream *s)
{
	if (s->cmd_dir < 0)
		return MYSQL_ROLE_UNKNOWN;
	return s->cmd_dir == MYSQL_DIR_OUT ? MYSQL_ROLE_CLIENT : MYSQL_ROLE_SERVER;
}

static bool known_command(uint8_t c)
{
	return (c >= MYSQL_COM_QUIT && c <= MYSQL_COM_RESET_CONNECTION) ||
	       c == MYSQL_COM_STMT_BULK_EXECUTE;
}

/*
 * Where nothing else tells a packet start from bytes in the middle of
 * something (a stream's first packets, a resync): a known command whose
 * length fits it.
 */
static bool command_plausible(uint8_t c, uint32_t len)
{
	switch (c) {
	case MYSQL_COM_QUIT:
	case MYSQL_COM_STATISTICS:
	case 0x0a: /* COM_PROCESS_INFO */
	case 0x0d: /* COM_DEBUG */
	case MYSQL_COM_PING:
	case 0x0f: /* COM_TIME */
	case MYSQL_COM_RESET_CONNECTION:
		return len == 1;
	case MYSQL_COM_STMT_CLOSE:
	case MYSQL_COM_STMT_RESET:
		return len == 5;
	case MYSQL_COM_STMT_FETCH:
		return len == 9;
	case MYSQL_COM_SET_OPTION:
		return len == 3;
	case MYSQL_COM_STMT_EXECUTE:
		return len >= 10;
	default:
		return known_command(c) && len >= 2;
	}
}

/* ---- prepared statements ---------------------------------------------------------------- */

static struct stmt *stmt_find(struct mysql_stream *s, uint32_t id)
{
	for (unsigned i = 0; i < s->n_stmts; i++)
		if (s->stmts[i].id == id)
			return &s->stmts[i];
	return NULL;
}

static void stmt_put(struct mysql_stream *s, uint32_t id, const struct pending *p)
{
	struct stmt *t = stmt_find(s, id);

	if (!t && s->n_stmts == s->cap_stmts && s->cap_stmts < STMT_MAX) {
		unsigned cap = s->cap_stmts ? s->cap_stmts * 2 : 16;
		struct stmt *n = realloc(s->stmts, cap * sizeof(*n));

		if (n) {
			s->stmts = n;
			s->cap_stmts = cap;
		}
	}
	if (!t && s->n_stmts < s->cap_stmts) {
		t = &s->stmts[s->n_stmts++];
	} else if (!t) {
		if (!s->n_stmts)
			return; /* no memory at all: executes will count as unknown */
		/* Full: the slots take turns (a client leaking statements forgets old ones). */
		t = &s->stmts[s->next_evict++ % s->n_stmts];
	}
	t->id = id;
	memcpy(t->op, p->op, sizeof(t->op));
	memcpy(t->collection, p->collection, sizeof(t->collection));
}

static void stmt_remove(struct mysql_stream *s, uint32_t id)
{
	struct stmt *t = stmt_find(s, id);

	if (t)
		*t = s->stmts[--s->n_stmts];
}

/* An execute takes its prepared statement's names, or is counted as unknown. */
static void name_statement(struct mysql_stream *s, struct pending *q, const struct stmt *t)
{
	if (!t) {
		s->st.unknown_statements++;
		q->counted = true; /* framed, not reported */
		return;
	}
	if (!t->op[0]) { /* its text could not be summarised */
		s->st.unsummarized++;
		q->counted = true;
		return;
	}
	memcpy(q->op, t->op, sizeof(q->op));
	memcpy(q->collection, t->collection, sizeof(q->collection));
	q->report = true;
}

/* ---- the queue and the response state ---------------------------------------------------- */

static struct pending *head(struct mysql_stream *s)
{
	return s->q_len ? &s->q[s->q_head] : NULL;
}

static void resp_reset(struct mysql_stream *s)
{
	s->rs = s->q_len ? s->q[s->q_head].first : R_FIRST;
	s->resp_started = false;
	s->cols_left = 0;
	s->prep_cols = s->prep_params = 0;
	s->results = 0;
	s->rows = s->affected = 0;
	s->err = 0;
	s->rows_lost = false;
}

static void dequeue(struct mysql_stream *s)
{
	if (!s->q_len)
		return;
	s->q_head = (s->q_head + 1) % PENDING_MAX;
	s->q_len--;
	resp_reset(s);
}

static void drop_pending(struct mysql_stream *s)
{
	for (unsigned i = 0; i < s->q_len; i++)
		if (s->q[(s->q_head + i) % PENDING_MAX].first != R_ABSORB)
			s->st.lost++;
	s->q_len = 0;
	resp_reset(s);
}

/* The head's response (or, split, its current statement's part) ended: report it. */
static void report(struct feed *f, struct pending *p)
{
	struct mysql_stream *s = f->s;
	struct mysql_exchange ex;

	if (!s->err && p->db[0]) /* USE or COM_INIT_DB succeeded */
		memcpy(s->db, p->db, sizeof(s->db));
	if (p->report && role_of(s) != MYSQL_ROLE_UNKNOWN) {
		memset(&ex, 0, sizeof(ex));
		ex.role = role_of(s);
		ex.command = p->cmd;
		/* A prepare's own operation; its statement's shows with each execute. */
		if (p->cmd == MYSQL_COM_STMT_PREPARE)
			strcpy(ex.operation, "PREPARE");
		else
			memcpy(ex.operation, p->op, sizeof(ex.operation));
		memcpy(ex.collection, p->collection, sizeof(ex.collection));
		memcpy(ex.db_namespace, s->db, sizeof(ex.db_namespace));
		ex.error_code = s->err;
		ex.multi_statement = p->multi;
		ex.results = s->results;
		ex.affected_rows = s->affected;
		ex.rows = s->rows;
		ex.start_ns = p->start_ns;
		ex.end_ns = s->end_ns;
		s->st.exchanges++;
		if (f->fn)
			f->fn(&ex, f->ctx);
	} else if (!p->report && !p->counted) {
		s->st.other_commands++;
	}
}

/* The head's response is complete: report it, and apply what it changed. */
static void finish(struct feed *f)
{
	struct mysql_stream *s = f->s;
	struct pending *p = head(s);

	if (!p)
		return;
	if (!s->err && p->cmd == MYSQL_COM_RESET_CONNECTION)
		s->n_stmts = 0;
	report(f, p);
	dequeue(s);
}

/*
 * Names q after one statement of its query's text: false when the text
 * holds no statement there (it ended, or the capture cut it).
 */
static bool name_query(struct pending *q, const char *sql, size_t len, bool truncated, size_t *next)
{
	struct mysql_sql_summary sum;

	if (mysql_sql_summarize(sql, len, truncated, &sum))
		return false;
	memcpy(q->op, sum.operation, sizeof(q->op));
	memcpy(q->collection, sum.collection, sizeof(q->collection));
	memcpy(q->db, sum.use_db, sizeof(q->db));
	q->call = !strcmp(sum.operation, "CALL");
	*next = sum.multi ? sum.next : 0;
	return true;
}

/*
 * A multi-statement query: the result of one statement ended and the next
 * statement's follows. Reports the one, names the head after the next.
 */
static void statement_done(struct feed *f)
{
	struct mysql_stream *s = f->s;
	struct pending *q = head(s);
	uint32_t at = s->mtext_next;
	size_t next = 0;

	report(f, q);
	/* The server goes on to the next statement once this one's result is out. */
	q->start_ns = s->end_ns;
	s->results = 0;
	s->rows = s->affected = 0;
	if (!at || at >= s->mtext_len ||
	    !name_query(q, s->mtext + at, s->mtext_len - at, s->mtext_cut, &next)) {
		/* More results than statements seen (the capture cut the text): not reported. */
		s->st.unsummarized++;
		q->report = false;
		q->counted = true;
		q->split = false;
		return;
	}
	s->mtext_next = next ? at + (uint32_t)next : 0;
}

/*
 * A result of the head's response ended with these status flags; ok: the
 * result was an OK packet, not a result set.
 */
static void result_end(struct feed *f, uint32_t status, bool ok)
{
	struct mysql_stream *s = f->s;
	struct pending *q = head(s);

	if (!(status & SERVER_MORE_RESULTS_EXISTS)) {
		finish(f);
		return;
	}
	s->rs = R_FIRST;
	/* A CALL's procedure sends its result sets, then the CALL's own OK. */
	if (q->split && (!q->call || ok))
		statement_done(f);
}

static struct pending *enqueue(struct mysql_stream *s, uint8_t cmd, enum resp first,
			       uint64_t start_ns)
{
	struct pending *p;

	if (s->q_len == PENDING_MAX) {
		s->st.lost++; /* answers are that far behind: this one goes unpaired */
		return NULL;
	}
	p = &s->q[(s->q_head + s->q_len) % PENDING_MAX];
	memset(p, 0, sizeof(*p));
	p->cmd = cmd;
	p->first = first;
	p->start_ns = start_ns;
	if (++s->q_len == 1)
		resp_reset(s);
	return p;
}

/* ---- OK packets ------------------------------------------------------------------------- */

/*
 * An OK packet (0x00, or 0xfe where it replaces EOF): affected rows, status
 * flags, and the current database when session state tracking reports it.
 */
static uint32_t parse_ok(struct mysql_stream *s, const struct pkt *p)
{
	uint32_t off = 1, status;
	uint64_t affected, insert_id, info_len, state_len;

	if (!lenenc(p->data, p->have, &off, &affected) ||
	    !lenenc(p->data, p->have, &off, &insert_id) || p->have - off < 4)
		return 0;
	s->affected = affected;
	status = le16(p->data + off);
	off += 4; /* status, warnings */
	if (!(status & SERVER_SESSION_STATE_CHANGED))
		return status;
	/* CLIENT_SESSION_TRACK: info as a length-encoded string, then the state changes. */
	if (!lenenc(p->data, p->have, &off, &info_len) || info_len > p->have - off)
		return status;
	off += (uint32_t)info_len;
	if (!lenenc(p->data, p->have, &off, &state_len) || state_len > p->have - off)
		return status;
	for (uint32_t end = off + (uint32_t)state_len; off < end;) {
		uint8_t type = p->data[off++];
		uint64_t len, name_len;
		uint32_t name_off;

		if (!lenenc(p->data, end, &off, &len) || len > end - off)
			break;
		name_off = off;
		if (type == SESSION_TRACK_SCHEMA &&
		    lenenc(p->data, off + (uint32_t)len, &name_off, &name_len) &&
		    name_len <= off + len - name_off)
			copy_name(s->db, sizeof(s->db), p->data + name_off, (size_t)name_len);
		off += (uint32_t)len;
	}
	return status;
}

static bool is_eof5(const struct pkt *p)
{
	return p->len == 5 && p->have >= 5 && p->data[0] == 0xfe;
}

/* ---- responses -------------------------------------------------------------------------- */

/*
 * A response that cannot be read (cut by the capture, or malformed): its
 * command goes unreported rather than with a status nobody saw.
 */
static void abandon(struct mysql_stream *s, const struct pkt *p)
{
	if (p->complete)
		s->st.parse_errors++;
	s->st.lost++;
	dequeue(s);
}

static void response_err(struct feed *f, const struct pkt *p)
{
	if (p->have < 3 || !le16(p->data + 1)) {
		abandon(f->s, p);
		return;
	}
	f->s->err = (uint16_t)le16(p->data + 1);
	finish(f);
}

static void prepare_next(struct feed *f);

/* The first packet of a result, for COM_QUERY, COM_STMT_EXECUTE and the like. */
static void response_first(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;
	struct pending *q = head(s);
	uint8_t c = p->data[0];
	uint32_t off = 0;
	uint64_t n;

	if (c == 0xff) {
		response_err(f, p);
		return;
	}
	if (q->cmd == MYSQL_COM_STMT_PREPARE) {
		if (c != 0x00 || p->have < 9) {
			abandon(s, p);
			return;
		}
		s->results = 1;
		s->last_prepared = le32(p->data + 1);
		stmt_put(s, s->last_prepared, q);
		s->prep_cols = le16(p->data + 5);
		s->prep_params = le16(p->data + 7);
		prepare_next(f);
		return;
	}
	if (c == 0x00) {
		s->results++;
		result_end(f, parse_ok(s, p), true);
		return;
	}
	if (c == 0xfb && q->cmd == MYSQL_COM_QUERY) {
		s->rs = R_INFILE;
		return;
	}
	if (!lenenc(p->data, p->have, &off, &n) || n == 0 || c == 0xfe) {
		abandon(s, p);
		return;
	}
	s->results++;
	s->cols_left = n;
	s->rs = R_COLDEFS;
	/* MariaDB's cached metadata: one more byte says whether definitions follow. */
	if (p->len == off + 1 && p->have == p->len && p->data[off] == 0)
		s->rs = R_COLS_EOF;
}

/* A row set ended (EOF or its OK replacement): another result, or the end. */
static void rows_end(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;
	uint32_t status = 0;

	if (p->len < 9 && p->have >= 5 && s->deprecate_eof != 1)
		status = le16(p->data + 3);
	else if (p->len >= 7)
		status = parse_ok(s, p);
	result_end(f, status, false);
}

static void response_row(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;

	if (p->data[0] == 0xff) {
		response_err(f, p);
	} else if (p->data[0] == 0xfe && p->len < PKT_MAX_LEN) {
		if (p->len >= 7 && s->deprecate_eof < 0)
			s->deprecate_eof = 1;
		rows_end(f, p);
	} else {
		s->rows++;
	}
}

/* After the column definitions of a result set. */
static void response_cols_eof(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;

	if (s->deprecate_eof != 1 && p->data[0] == 0xfe &&
	    (s->deprecate_eof == 0 ? p->len < 9 : p->len == 5)) {
		s->deprecate_eof = 0;
		/* A cursor was opened: the rows come with COM_STMT_FETCH. */
		if (p->have >= 5 && (le16(p->data + 3) & SERVER_STATUS_CURSOR_EXISTS)) {
			finish(f);
			return;
		}
		s->rs = R_ROWS;
		return;
	}
	if (s->deprecate_eof < 0)
		s->deprecate_eof = 1;
	s->rs = R_ROWS;
	response_row(f, p);
}

/* Prepare: what comes after the OK or a block of definitions. */
static void prepare_next(struct feed *f)
{
	struct mysql_stream *s = f->s;

	if (s->prep_params) {
		s->rs = R_PREP_PARAMS;
		return;
	}
	if (s->prep_cols) {
		s->rs = R_PREP_COLS;
		return;
	}
	finish(f);
}

/* The EOF after a block of prepare definitions, when there is one. */
static void prepare_defs_done(struct feed *f, enum resp eof_state)
{
	struct mysql_stream *s = f->s;

	if (s->deprecate_eof == 1) {
		prepare_next(f);
	} else if (s->deprecate_eof == 0 || s->prep_params || s->prep_cols) {
		/* Unknown before more definitions: the next packet tells (an EOF is 5 bytes). */
		s->rs = eof_state;
	} else {
		/*
		 * Unknown and nothing follows: the exchange ends here; an EOF
		 * arriving next with the following sequence number is this one's.
		 */
		s->maybe_eof = true;
		s->maybe_eof_seq = (uint8_t)(s->last_seq + 1);
		finish(f);
	}
}

static void response_prepare(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;

	switch (s->rs) {
	case R_PREP_PARAMS:
		if (!--s->prep_params)
			prepare_defs_done(f, R_PREP_PARAMS_EOF);
		break;
	case R_PREP_COLS:
		if (!--s->prep_cols)
			prepare_defs_done(f, R_PREP_COLS_EOF);
		break;
	default: /* R_PREP_PARAMS_EOF, R_PREP_COLS_EOF */
		if (is_eof5(p) || (s->deprecate_eof == 0 && p->data[0] == 0xfe)) {
			s->deprecate_eof = 0;
			prepare_next(f);
			return;
		}
		/* No EOF: this packet already is the next block's. */
		s->deprecate_eof = 1;
		prepare_next(f);
		if (head(s) && (s->rs == R_PREP_COLS || s->rs == R_PREP_PARAMS))
			response_prepare(f, p);
		break;
	}
}

/*
 * The direction of commands was guessed from a packet that looked like one,
 * and the other side sends what only a client sends: the guess was wrong
 * (bytes in the middle of something). Start over, from a feed that starts
 * with a command.
 */
static void lose_framing(struct mysql_stream *s, enum mysql_dir dir);

static void restart(struct mysql_stream *s)
{
	s->q_len = 0; /* they were not commands: nothing to count as lost */
	resp_reset(s);
	s->cmd_dir = -1;
	s->phase = PH_START;
	lose_framing(s, MYSQL_DIR_IN);
	lose_framing(s, MYSQL_DIR_OUT);
}

static void response_packet(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;
	struct pending *q = head(s);

	if (!s->dir_confirmed && p->seq == 0) {
		restart(s);
		return;
	}
	if (s->maybe_eof) {
		s->maybe_eof = false;
		if (is_eof5(p) && (p->seq == s->maybe_eof_seq || s->zip)) {
			s->deprecate_eof = 0;
			return;
		}
	}
	if (!q) {
		if (p->seq == 1)
			s->st.lost++; /* a response to a command that was not seen */
		return;
	}
	if (s->rs == R_ABSORB)
		return;
	if (s->rs == R_INFILE) {
		/* The client's file packets moved the sequence on: any number goes. */
	} else if (!s->resp_started && p->seq != 1) {
		s->st.parse_errors++;
		return;
	} else if (s->resp_started && p->seq != (uint8_t)(s->last_seq + 1) && !s->zip) {
		/*
		 * Out of step: this response is given up, never guessed at.
		 * (Compressed, the server numbers the packets inside each compressed
		 * packet from that one's own sequence number on: no step to check.)
		 */
		s->st.parse_errors++;
		s->st.lost++;
		dequeue(s);
		if (p->seq == 1 && head(s))
			response_packet(f, p);
		return;
	}
	if (!s->resp_started && q->last_stmt) {
		q->last_stmt = false;
		name_statement(s, q, stmt_find(s, s->last_prepared));
	}
	if (p->seq == 1)
		s->dir_confirmed = true;
	s->resp_started = true;
	s->last_seq = p->seq;
	s->end_ns = p->end_ns;
	if (!p->have) {
		/* Inside a result set a packet not captured at all still is a row or a definition. */
		if (p->len && s->rs == R_ROWS) {
			s->rows++;
			return;
		}
		if (p->len && s->rs == R_COLDEFS) {
			if (!--s->cols_left)
				s->rs = R_COLS_EOF;
			return;
		}
		abandon(s, p); /* empty, or nothing seen where a response must say something */
		return;
	}
	switch (s->rs) {
	case R_FIRST:
		response_first(f, p);
		break;
	case R_COLDEFS:
		if (p->data[0] == 0xff)
			response_err(f, p);
		else if (!--s->cols_left)
			s->rs = R_COLS_EOF;
		break;
	case R_COLS_EOF:
		response_cols_eof(f, p);
		break;
	case R_ROWS:
		response_row(f, p);
		break;
	case R_PREP_PARAMS:
	case R_PREP_PARAMS_EOF:
	case R_PREP_COLS:
	case R_PREP_COLS_EOF:
		if (p->data[0] == 0xff)
			response_err(f, p);
		else
			response_prepare(f, p);
		break;
	case R_INFILE:
	case R_ONE:
		if (p->data[0] == 0xff) {
			response_err(f, p);
			break;
		}
		if (p->data[0] == 0x00 && s->rs == R_INFILE) {
			/* LOAD DATA LOCAL in a multi-statement query: more may follow. */
			s->results++;
			result_end(f, parse_ok(s, p), true);
			break;
		}
		if (p->data[0] == 0x00) {
			s->results++;
			parse_ok(s, p);
		}
		finish(f);
		break;
	case R_ABSORB:
		break;
	}
}

/* ---- commands --------------------------------------------------------------------------- */

/* Does a pending query hold the stream's multi-statement text? */
static bool mtext_busy(const struct mysql_stream *s)
{
	for (unsigned i = 0; i < s->q_len; i++)
		if (s->q[(s->q_head + i) % PENDING_MAX].split)
			return true;
	return false;
}

static void summarize(struct mysql_stream *s, struct pending *q, const struct pkt *p)
{
	const char *sql = (const char *)p->data + 1;
	uint32_t len = p->have - 1;
	size_t next;

	if (!name_query(q, sql, len, !p->complete, &next)) {
		s->st.unsummarized++;
		q->counted = true;
		return;
	}
	if (q->cmd != MYSQL_COM_QUERY)
		q->db[0] = '\0'; /* a prepared USE switches nothing until executed */
	q->report = true;
	if (!next)
		return;
	s->st.multi_statements++;
	if (q->cmd != MYSQL_COM_QUERY)
		return; /* a prepare of several statements fails: one exchange */
	/*
	 * Several statements (CLIENT_MULTI_STATEMENTS): the server answers each
	 * with its own result, chained by SERVER_MORE_RESULTS_EXISTS; each gets
	 * its own exchange. The text is kept for the statements after the first.
	 * Only one such query is answered at a time (clients wait for all its
	 * results); another one queued behind it is reported as one, flagged.
	 */
	if (!s->mtext)
		s->mtext = malloc(PKT_KEEP);
	if (!s->mtext || mtext_busy(s)) {
		q->multi = true;
		s->st.multi_undecoded++;
		return;
	}
	memcpy(s->mtext, sql, len);
	s->mtext_len = len;
	s->mtext_next = (uint32_t)next;
	s->mtext_cut = !p->complete;
	q->split = true;
}

/* A statement-id command: the statement it names. */
static const struct stmt *stmt_of(struct mysql_stream *s, const struct pkt *p)
{
	uint32_t id;

	if (p->have < 5)
		return NULL;
	id = le32(p->data + 1);
	if (id == STMT_ID_LAST)
		id = s->last_prepared;
	return stmt_find(s, id);
}

static void command_packet(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;
	struct pending *q, *h = head(s);
	const struct stmt *t;
	uint8_t cmd;

	if (p->seq != 0) /* LOCAL INFILE data, authentication after COM_CHANGE_USER */
		return;
	if (!p->have) {
		s->st.parse_errors++;
		return;
	}
	/*
	 * Responses are being lost: a client sends its next command only once the
	 * previous answer is in, so the commands still waiting were answered in
	 * bytes nobody saw. Dropped, lest a later response be paired with them.
	 */
	if (s->q_len && s->cmd_dir >= 0 && s->half[!s->cmd_dir].lost)
		drop_pending(s);
	/*
	 * Compressed, sequence numbers cannot tell a response's packets from the
	 * next one's: a response begun and not ended when a command comes lost its
	 * end to bytes not inflated. Given up, lest it take the next response.
	 */
	if (s->zip && h && s->resp_started && h->first != R_ABSORB) {
		s->st.lost++;
		dequeue(s);
		h = head(s);
	}
	/* A command not decoded held everything since; this one ends it. */
	if (h && h->first == R_ABSORB)
		finish(f);
	cmd = p->data[0];
	switch (cmd) {
	case MYSQL_COM_QUERY:
	case MYSQL_COM_STMT_PREPARE:
		q = enqueue(s, cmd, R_FIRST, p->start_ns);
		if (q)
			summarize(s, q, p);
		break;
	case MYSQL_COM_STMT_EXECUTE:
	case MYSQL_COM_STMT_BULK_EXECUTE:
		q = enqueue(s, cmd, R_FIRST, p->start_ns);
		if (!q)
			break;
		if (p->have >= 5 && le32(p->data + 1) == STMT_ID_LAST) {
			/* Pipelined behind its prepare, maybe: resolved when answered. */
			q->last_stmt = true;
			break;
		}
		name_statement(s, q, stmt_of(s, p));
		break;
	case MYSQL_COM_STMT_RESET:
		q = enqueue(s, cmd, R_ONE, p->start_ns);
		if (!q)
			break;
		strcpy(q->op, "RESET");
		t = stmt_of(s, p);
		if (t)
			memcpy(q->collection, t->collection, sizeof(q->collection));
		q->report = true;
		break;
	case MYSQL_COM_STMT_CLOSE:
		if (p->have >= 5)
			stmt_remove(s, le32(p->data + 1));
		break;
	case MYSQL_COM_STMT_SEND_LONG_DATA:
	case MYSQL_COM_QUIT:
		break; /* no response */
	case MYSQL_COM_PING:
		q = enqueue(s, cmd, R_ONE, p->start_ns);
		if (q) {
			strcpy(q->op, "PING");
			q->report = true;
		}
		break;
	case MYSQL_COM_INIT_DB:
		q = enqueue(s, cmd, R_ONE, p->start_ns);
		if (!q)
			break;
		strcpy(q->op, "USE");
		if (p->complete)
			copy_name(q->db, sizeof(q->db), p->data + 1, p->have - 1);
		q->report = true;
		break;
	case MYSQL_COM_STMT_FETCH:
	case MYSQL_COM_FIELD_LIST:
		enqueue(s, cmd, R_ROWS, p->start_ns);
		break;
	case MYSQL_COM_CHANGE_USER:
		s->db[0] = '\0'; /* its database is in the packet's later fields: unknown here */
		s->n_stmts = 0;
		enqueue(s, cmd, R_ABSORB, p->start_ns);
		break;
	default:
		if (!known_command(cmd)) {
			s->st.parse_errors++;
			q = enqueue(s, cmd, R_ABSORB, p->start_ns);
			if (q)
				q->counted = true;
		} else if (cmd <= MYSQL_COM_RESET_CONNECTION && cmd != 0x12 && cmd != 0x13 &&
			   cmd != 0x14 && cmd != 0x15 && cmd != 0x1d && cmd != 0x1e) {
			/* Administrative commands answered by one OK, ERR or EOF (or a string). */
			enqueue(s, cmd, R_ONE, p->start_ns);
		} else {
			enqueue(s, cmd, R_ABSORB, p->start_ns); /* replication and friends */
		}
		break;
	}
}

/* ---- the connection phase ----------------------------------------------------------------- */

/* The server's greeting: protocol 10, a NUL-terminated version, and more. */
static bool is_greeting(const struct pkt *p)
{
	uint32_t n = p->have < 64 ? p->have : 64;

	if (p->seq != 0 || p->len < 30 || p->have < 2 || p->data[0] != 0x0a)
		return false;
	for (uint32_t i = 1; i < n; i++) {
		if (p->data[i] == 0)
			return i > 1;
		if (p->data[i] < 0x20 || p->data[i] > 0x7e)
			return false;
	}
	return n == p->have && p->have < p->len; /* the version runs into the capture's cut */
}

static void parse_greeting(struct mysql_stream *s, const struct pkt *p)
{
	uint32_t off = 1;

	while (off < p->have && p->data[off])
		off++;
	off += 1 + 4 + 8 + 1; /* NUL, thread id, scramble part 1, filler */
	if (off + 2 > p->have)
		return;
	s->server_caps = le16(p->data + off);
	if (off + 7 <= p->have)
		s->server_caps |= le16(p->data + off + 5) << 16; /* after charset and status */
	s->server_caps_known = true;
}

/* HandshakeResponse41 (or SSLRequest): capabilities with PROTOCOL_41, 23 bytes of filler. */
static bool is_handshake_response(const struct pkt *p)
{
	if (p->len < 32 || p->have < 32 || !(le32(p->data) & CLIENT_PROTOCOL_41))
		return false;
	/* The filler: MariaDB uses its last 4 bytes for extended capabilities. */
	for (uint32_t i = 9; i < 28; i++)
		if (p->data[i])
			return false;
	return true;
}

static void parse_handshake_response(struct mysql_stream *s, const struct pkt *p)
{
	uint32_t caps = le32(p->data), off = 32, auth_off;
	uint64_t auth_len;

	s->client_caps = caps;
	s->client_caps_known = true;
	if (!(caps & CLIENT_CONNECT_WITH_DB))
		return;
	while (off < p->have && p->data[off]) /* user name */
		off++;
	if (++off >= p->have)
		return;
	auth_off = off;
	if (caps & CLIENT_PLUGIN_AUTH_LENENC_DATA) {
		if (!lenenc(p->data, p->have, &auth_off, &auth_len))
			return;
	} else if (caps & CLIENT_SECURE_CONNECTION) {
		auth_len = p->data[off];
		auth_off = off + 1;
	} else {
		while (auth_off < p->have && p->data[auth_off])
			auth_off++;
		auth_len = 1;
	}
	if (auth_len > p->have - auth_off)
		return;
	off = auth_off + (uint32_t)auth_len;
	for (uint32_t end = off; end < p->have; end++) {
		if (!p->data[end]) {
			copy_name(s->hs_db, sizeof(s->hs_db), p->data + off, end - off);
			return;
		}
	}
}

static void connected(struct mysql_stream *s, const struct pkt *ok)
{
	uint32_t caps = s->client_caps;

	s->phase = PH_COMMAND;
	if (s->hs_db[0])
		memcpy(s->db, s->hs_db, sizeof(s->db));
	parse_ok(s, ok); /* session tracking may name the database too */
	s->affected = 0;
	if (s->server_caps_known)
		caps &= s->server_caps;
	if (s->client_caps_known)
		s->deprecate_eof = (caps & CLIENT_DEPRECATE_EOF) ? 1 : 0;
	if (s->client_caps_known && (caps & CLIENT_ZSTD_COMPRESSION_ALGORITHM)) {
		s->phase = PH_IGNORE;
		s->st.compressed = true;
		s->st.compressed_zstd = true;
	} else if (s->client_caps_known && (caps & CLIENT_COMPRESS)) {
		/* Both sides compress from the next packet on, the rest of this feed included. */
		s->zip = s->zip_switch = true;
		s->st.compressed = true;
	}
}

static void handshake_packet(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;

	if ((int)p->dir == s->cmd_dir) {
		if (p->seq == 0) { /* a command: the end of the handshake went unseen */
			s->phase = PH_COMMAND;
			command_packet(f, p);
			return;
		}
		if (!is_handshake_response(p))
			return; /* authentication data */
		if (p->len == 32 && (le32(p->data) & CLIENT_SSL)) {
			s->phase = PH_TLS_WAIT;
			s->st.tls_switch = true;
			return;
		}
		parse_handshake_response(s, p);
		return;
	}
	if (is_greeting(p)) {
		parse_greeting(s, p);
		return;
	}
	if (p->have && p->data[0] == 0x00 && p->seq >= 2)
		connected(s, p);
	/* ERR: the server closes; 0x01, 0xfe: authentication goes on. */
}

static void start_packet(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;

	if (is_greeting(p)) {
		s->cmd_dir = !p->dir;
		s->dir_confirmed = true;
		s->phase = PH_HANDSHAKE;
		parse_greeting(s, p);
		return;
	}
	if ((p->seq == 1 || p->seq == 2) && is_handshake_response(p)) {
		s->cmd_dir = p->dir;
		s->dir_confirmed = true;
		s->phase = PH_HANDSHAKE;
		handshake_packet(f, p);
		return;
	}
	if (p->seq == 0 && p->have && command_plausible(p->data[0], p->len)) {
		s->cmd_dir = p->dir;
		s->dir_confirmed = false;
		s->phase = PH_COMMAND;
		command_packet(f, p);
		return;
	}
	s->strikes++;
}

/* ---- framing ------------------------------------------------------------------------------ */

static void dispatch(struct feed *f, const struct pkt *p)
{
	struct mysql_stream *s = f->s;

	switch (s->phase) {
	case PH_START:
		start_packet(f, p);
		break;
	case PH_HANDSHAKE:
		handshake_packet(f, p);
		break;
	case PH_COMMAND:
		if ((int)p->dir == s->cmd_dir)
			command_packet(f, p);
		else
			response_packet(f, p);
		break;
	default:
		break;
	}
}

static void half_reset(struct half *h)
{
	h->hdr_have = 0;
	h->in_payload = false;
	h->gap = false;
	h->cont = false;
	h->plen = h->left = h->keep = 0;
	h->stash_have = 0;
}

static void lose_framing(struct mysql_stream *s, enum mysql_dir dir)
{
	struct half *h = &s->half[dir];

	half_reset(h);
	h->lost = true;
	s->st.desyncs++;
	if (s->phase == PH_HANDSHAKE && s->cmd_dir >= 0)
		s->phase = PH_COMMAND; /* whatever the handshake said, commands are next */
	if (s->phase == PH_COMMAND && (int)dir != s->cmd_dir) {
		/*
		 * Lost inside a result set (rows longer than the capture copies):
		 * the end may still show in the last bytes of a syscall. Elsewhere
		 * the response is given up.
		 */
		if (s->q_len && s->resp_started &&
		    (s->rs == R_COLDEFS || s->rs == R_COLS_EOF || s->rs == R_ROWS))
			s->rows_lost = true;
		else
			drop_pending(s);
	}
	s->maybe_eof = false;
}

/*
 * While rows_lost: does this feed end the result set? It must be the end of
 * the syscall whose start came with a gap (the capture sends a syscall's last
 * bytes as a second chunk, captured whole, with the same time), and its last
 * packet the final EOF, or the OK that replaces it, without
 * SERVER_MORE_RESULTS_EXISTS.
 */
static bool rows_end_in_tail(struct feed *f, enum mysql_dir dir, const uint8_t *data, size_t len,
			     uint64_t total, uint64_t ts_ns)
{
	struct mysql_stream *s = f->s;
	const uint8_t *e = data + len;
	uint32_t status;

	if (!s->rows_lost || (int)dir == s->cmd_dir || len != total || ts_ns != s->half[dir].gap_ts)
		return false;
	if (len >= 9 && e[-9] == 5 && e[-8] == 0 && e[-7] == 0 && e[-5] == 0xfe &&
	    s->deprecate_eof != 1)
		status = le16(e - 2); /* EOF: 0xfe, warnings, status */
	else if (len >= 11 && e[-11] == 7 && e[-10] == 0 && e[-9] == 0 && e[-7] == 0xfe &&
		 e[-6] == 0 && e[-5] == 0 && s->deprecate_eof != 0)
		status = le16(e - 4); /* OK: 0xfe, no rows, no insert id, status, warnings */
	else
		return false;
	if (status & SERVER_MORE_RESULTS_EXISTS)
		return false;
	s->end_ns = ts_ns;
	finish(f);
	return true;
}

static void packet_done(struct feed *f, enum mysql_dir dir, uint64_t ts)
{
	struct mysql_stream *s = f->s;
	struct half *h = &s->half[dir];
	struct pkt p = {
		.dir = dir,
		.seq = h->hdr[3],
		.len = h->plen,
		.data = h->buf,
		.have = h->keep,
		.complete = !h->gap && h->keep == h->plen,
		.start_ns = h->start_ns,
		.end_ns = ts,
	};
	bool continued = h->cont;

	h->cont = h->plen == PKT_MAX_LEN;
	h->hdr_have = 0;
	h->in_payload = false;
	h->gap = false;
	h->keep = 0;
	if (!continued) /* a continuation adds bytes to a packet already dispatched */
		dispatch(f, &p);
	if (s->strikes >= START_STRIKES && s->phase == PH_START) {
		/* Not at a packet boundary, it seems: wait for a feed that starts a command. */
		s->strikes = 0;
		lose_framing(s, MYSQL_DIR_IN);
		lose_framing(s, MYSQL_DIR_OUT);
	}
}

/* Could a response start with this packet (its header and first payload byte)? */
static bool response_start_plausible(uint8_t first, uint32_t plen)
{
	uint32_t off = 0;
	uint64_t n;
	uint8_t b[9] = { first };

	switch (first) {
	case 0x00:
		return plen >= 7; /* OK (a prepare's OK is 12) */
	case 0xff:
		return plen >= 3; /* ERR */
	case 0xfb:
		return plen >= 1; /* LOCAL INFILE */
	case 0xfc:
		return plen == 3 || plen == 4; /* column counts, with MariaDB's metadata byte */
	case 0xfd:
		return plen == 4 || plen == 5;
	case 0xfe:
		return false;
	default:
		return lenenc(b, 1, &off, &n) && n > 0 && (plen == 1 || plen == 2);
	}
}

/*
 * Can a lost direction pick up at this feed? Not bound to the feed's total:
 * the capture may send a syscall's last bytes as a second chunk.
 */
static bool resync(struct mysql_stream *s, enum mysql_dir dir, const uint8_t *data, size_t len)
{
	uint32_t plen;

	if (len < 5 || s->phase == PH_IGNORE || s->phase == PH_TLS_WAIT)
		return false;
	plen = le24(data);
	if (plen == 0)
		return false;
	if (s->phase == PH_HANDSHAKE && s->cmd_dir >= 0) {
		/* TLS plaintext that began late: a HandshakeResponse, or the server's auth replies. */
		if ((int)dir == s->cmd_dir && (data[3] == 1 || data[3] == 2) && plen >= 32)
			return true;
		if ((int)dir != s->cmd_dir && data[3] >= 2 &&
		    (data[4] == 0x00 || data[4] == 0x01 || data[4] == 0xfe))
			return true;
	}
	if (s->cmd_dir < 0 || (int)dir == s->cmd_dir) {
		if (data[3] != 0 || !command_plausible(data[4], plen))
			return false;
		if (s->cmd_dir < 0)
			s->dir_confirmed = false;
		s->cmd_dir = dir;
		if (s->phase == PH_START || s->phase == PH_HANDSHAKE)
			s->phase = PH_COMMAND;
		return true;
	}
	/*
	 * A response start, to a command seen after the loss (older ones were
	 * dropped when it came), or after a result set whose end went unseen.
	 */
	if (data[3] != 1 || !s->q_len || !response_start_plausible(data[4], plen))
		return false;
	if (s->rows_lost) {
		s->st.lost++;
		dequeue(s);
	}
	return s->q_len > 0 && !s->resp_started;
}

/*
 * Frames the packets in a feed (of the connection's bytes, or of what
 * compressed packets inflated to). Returns how many bytes it took: fewer than
 * len when compression starts inside the feed.
 */
static size_t feed_plain(struct feed *fp, enum mysql_dir dir, const uint8_t *data, size_t len,
			 uint64_t total, uint64_t ts_ns)
{
	struct mysql_stream *s = fp->s;
	struct feed f = *fp;
	struct half *h;
	size_t pos = 0;
	uint64_t gap;

	if (s->phase == PH_IGNORE || s->phase == PH_TLS_WAIT || total == 0)
		return len;
	h = &s->half[dir];
	if (total > len)
		h->gap_ts = ts_ns;
	if (h->lost) {
		if (rows_end_in_tail(&f, dir, data, len, total, ts_ns)) {
			half_reset(h);
			h->lost = false; /* the next feed starts the next response */
			return len;
		}
		if (h->stash_have == 4) {
			/*
			 * The feed before was a header alone (mariadbd and pymysql read
			 * headers and payloads apart): with this feed's first byte,
			 * and this feed exactly its payload, it may start a packet.
			 */
			uint8_t head[5];
			bool ok;

			memcpy(head, h->stash, 4);
			head[4] = len ? data[0] : 0;
			h->stash_have = 0;
			ok = len && total == le24(head) && resync(s, dir, head, sizeof(head));
			if (ok) {
				half_reset(h);
				h->lost = false;
				memcpy(h->hdr, head, 4);
				h->hdr_have = 4;
				h->in_payload = true;
				h->plen = h->left = le24(head);
				h->start_ns = h->stash_ts;
			}
		}
		if (h->lost && len == 4 && total == 4) {
			memcpy(h->stash, data, 4);
			h->stash_have = 4;
			h->stash_ts = ts_ns;
			return len;
		}
		if (h->lost && !resync(s, dir, data, len)) {
			if (s->cmd_dir < 0 && ++s->idle_feeds >= START_FEEDS_MAX) {
				s->phase = PH_NOT_MYSQL;
				s->st.not_mysql = true;
			}
			return len;
		}
		if (h->lost) {
			half_reset(h);
			h->lost = false;
		}
	}
	while (pos < len && s->phase != PH_IGNORE && s->phase != PH_TLS_WAIT && !h->lost &&
	       !s->zip_switch) {
		if (!h->in_payload) {
			if (!h->hdr_have)
				h->start_ns = ts_ns;
			while (h->hdr_have < 4 && pos < len)
				h->hdr[h->hdr_have++] = data[pos++];
			if (h->hdr_have < 4)
				break;
			h->in_payload = true;
			h->plen = h->left = le24(h->hdr);
			h->keep = 0;
			if (s->phase == PH_START && h->hdr[3] != 0 && h->plen > START_LEN_MAX) {
				/* No greeting or handshake is that long: not a packet boundary. */
				lose_framing(s, MYSQL_DIR_IN);
				lose_framing(s, MYSQL_DIR_OUT);
				break;
			}
			if (!h->left)
				packet_done(&f, dir, ts_ns);
			continue;
		}
		size_t n = len - pos < h->left ? len - pos : h->left;

		if (!h->gap && h->keep < PKT_KEEP) {
			size_t k = PKT_KEEP - h->keep < n ? PKT_KEEP - h->keep : n;

			memcpy(h->buf + h->keep, data + pos, k);
			h->keep += (uint32_t)k;
		}
		h->left -= (uint32_t)n;
		pos += n;
		if (!h->left)
			packet_done(&f, dir, ts_ns);
	}
	if (s->zip_switch)
		return pos; /* the rest, and what was not captured, is compressed */
	gap = total - len;
	if (gap && s->phase != PH_IGNORE && s->phase != PH_TLS_WAIT && s->phase != PH_NOT_MYSQL &&
	    !h->lost) {
		if (!h->in_payload) {
			lose_framing(s, dir); /* a header nobody saw */
		} else if (gap <= h->left) {
			h->left -= (uint32_t)gap;
			h->gap = true;
			if (!h->left)
				packet_done(&f, dir, ts_ns);
		} else {
			h->left = 0;
			h->gap = true;
			packet_done(&f, dir, ts_ns);
			lose_framing(s, dir);
		}
	}
	s->idle_feeds = 0;
	return len;
}

/* ---- compression ---------------------------------------------------------------------------- */

static const uint8_t not_captured[1]; /* the data of a feed of bytes not captured */

static void zip_lose(struct mysql_stream *s, enum mysql_dir dir)
{
	struct zhalf *z = &s->zh[dir];

	z->hdr_have = 0;
	z->left = 0;
	z->lost = true;
	if (!s->half[dir].lost)
		lose_framing(s, dir); /* the packets inside are lost with them */
}

/* Inflates n bytes of a compressed payload and frames what they hold. */
static void zip_inflate(struct feed *f, enum mysql_dir dir, const uint8_t *p, size_t n,
			uint64_t ts_ns)
{
	struct mysql_stream *s = f->s;
	struct zhalf *z = &s->zh[dir];
	uint8_t out[ZIP_CHUNK];

	z->z.next_in = (Bytef *)(uintptr_t)p;
	z->z.avail_in = (uInt)n;
	while (!z->broken) {
		uint32_t room = z->ulen - z->out, got;
		int rc;

		if (z->out >= ZIP_OUT_MAX) {
			z->broken = true; /* bounded: the rest counts as not captured */
			break;
		}
		if (room > ZIP_OUT_MAX - z->out)
			room = ZIP_OUT_MAX - z->out;
		if (room > sizeof(out))
			room = sizeof(out);
		/* All announced bytes out, the stream's checksum may still come: room for 1. */
		z->z.next_out = out;
		z->z.avail_out = room ? room : 1;
		rc = inflate(&z->z, Z_NO_FLUSH);
		got = (room ? room : 1) - z->z.avail_out;
		if (got > room) {
			s->st.parse_errors++; /* more than the header announced */
			z->broken = true;
			break;
		}
		if (got) {
			z->out += got;
			feed_plain(f, dir, out, got, got, ts_ns);
		}
		if (rc == Z_STREAM_END || (rc == Z_BUF_ERROR && !z->z.avail_in))
			break; /* done, or waiting for more input */
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			s->st.parse_errors++; /* not zlib, or corrupt */
			z->broken = true;
			break;
		}
		if (!z->z.avail_in && z->z.avail_out)
			break;
	}
}

/* A compressed packet ended: what it announced and did not inflate is skipped. */
static void zip_packet_done(struct feed *f, enum mysql_dir dir, uint64_t ts_ns)
{
	struct mysql_stream *s = f->s;
	struct zhalf *z = &s->zh[dir];

	if (z->ulen && z->out < z->ulen) {
		s->st.compressed_skipped += z->ulen - z->out;
		feed_plain(f, dir, not_captured, 0, z->ulen - z->out, ts_ns);
	}
	if (z->ulen)
		s->st.compressed_packets++;
	z->hdr_have = 0;
}

static void zip_packet_start(struct feed *f, enum mysql_dir dir, uint64_t ts_ns)
{
	struct mysql_stream *s = f->s;
	struct zhalf *z = &s->zh[dir];

	z->left = le24(z->hdr);
	z->ulen = le24(z->hdr + 4);
	z->out = 0;
	z->broken = false;
	if (z->ulen) {
		int rc = z->z_ready ? inflateReset(&z->z) : inflateInit(&z->z);

		z->z_ready = z->z_ready || rc == Z_OK;
		if (rc != Z_OK) {
			z->broken = true; /* no memory: skipped, by its announced length */
			s->st.compressed_skipped += z->ulen;
		}
	}
	if (!z->left)
		zip_packet_done(f, dir, ts_ns);
}

/* A feed of compressed packets. */
static void feed_zip(struct feed *f, enum mysql_dir dir, const uint8_t *data, size_t len,
		     uint64_t total, uint64_t ts_ns)
{
	struct mysql_stream *s = f->s;
	struct zhalf *z = &s->zh[dir];
	size_t pos = 0;
	uint64_t gap = total - len;

	if (z->lost) {
		/* One whole compressed packet per write, as clients send commands: a start. */
		if (len < ZIP_HDR || total != ZIP_HDR + (uint64_t)le24(data))
			return;
		z->lost = false;
		z->hdr_have = 0;
	}
	while (pos < len && !z->lost) {
		size_t n;

		if (z->hdr_have < ZIP_HDR) {
			while (z->hdr_have < ZIP_HDR && pos < len)
				z->hdr[z->hdr_have++] = data[pos++];
			if (z->hdr_have == ZIP_HDR)
				zip_packet_start(f, dir, ts_ns);
			continue;
		}
		n = len - pos < z->left ? len - pos : z->left;
		if (!z->ulen)
			feed_plain(f, dir, data + pos, n, n, ts_ns);
		else if (!z->broken)
			zip_inflate(f, dir, data + pos, n, ts_ns);
		pos += n;
		z->left -= (uint32_t)n;
		if (!z->left)
			zip_packet_done(f, dir, ts_ns);
	}
	if (!gap || z->lost)
		return;
	if (z->hdr_have < ZIP_HDR || gap > z->left) {
		zip_lose(s, dir); /* a header nobody saw */
		return;
	}
	z->left -= (uint32_t)gap;
	if (!z->ulen) {
		feed_plain(f, dir, not_captured, 0, gap, ts_ns);
	} else if (!z->broken) {
		z->broken = true; /* a zlib stream cannot go on past bytes not captured */
	}
	if (!z->left)
		zip_packet_done(f, dir, ts_ns);
}

int mysql_stream_feed(struct mysql_stream *s, enum mysql_dir dir, const uint8_t *data, size_t len,
		      uint64_t total, uint64_t ts_ns, mysql_exchange_fn fn, void *ctx)
{
	struct feed f = { .s = s, .fn = fn, .ctx = ctx };
	size_t used;

	if (s->phase == PH_NOT_MYSQL)
		return -EPROTO;
	if ((dir != MYSQL_DIR_IN && dir != MYSQL_DIR_OUT) || (!data && len))
		return -EINVAL;
	if (total < len)
		total = len;
	if (s->zip) {
		feed_zip(&f, dir, data, len, total, ts_ns);
		return 0;
	}
	used = feed_plain(&f, dir, data, len, total, ts_ns);
	if (s->zip_switch) {
		s->zip_switch = false;
		if (total > used)
			feed_zip(&f, dir, data + used, len - used, total - used, ts_ns);
	}
	return s->phase == PH_NOT_MYSQL ? -EPROTO : 0;
}

/* ---- life cycle --------------------------------------------------------------------------- */

struct mysql_stream *mysql_stream_new(void)
{
	struct mysql_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->cmd_dir = -1;
	s->deprecate_eof = -1;
	return s;
}

void mysql_stream_free(struct mysql_stream *s)
{
	if (!s)
		return;
	for (int d = 0; d < 2; d++)
		if (s->zh[d].z_ready)
			inflateEnd(&s->zh[d].z);
	free(s->stmts);
	free(s->mtext);
	free(s);
}

void mysql_stream_tls_plaintext(struct mysql_stream *s)
{
	if (s->phase != PH_TLS_WAIT)
		return; /* the stream started inside TLS, or no SSLRequest was seen */
	/*
	 * The HandshakeResponse comes next. The kernel may have heard of the
	 * upgrade late, after a read of a header or even after the handshake:
	 * both sides pick up where a packet plausibly starts (see resync).
	 */
	half_reset(&s->half[MYSQL_DIR_IN]);
	half_reset(&s->half[MYSQL_DIR_OUT]);
	s->half[MYSQL_DIR_IN].lost = s->half[MYSQL_DIR_OUT].lost = true;
	s->phase = PH_HANDSHAKE;
}

void mysql_stream_close(struct mysql_stream *s)
{
	for (unsigned i = 0; i < s->q_len; i++)
		if (s->q[(s->q_head + i) % PENDING_MAX].first != R_ABSORB)
			s->st.unanswered++;
	s->q_len = 0;
	resp_reset(s);
}

void mysql_stream_get_stats(const struct mysql_stream *s, struct mysql_stream_stats *st)
{
	*st = s->st;
	st->role = role_of(s);
	st->tls_waiting = s->phase == PH_TLS_WAIT;
}
