/*
 * MongoDB wire protocol stream decoder (see mongodb_proto.h).
 *
 * Framing: every message starts with a 16-byte header whose messageLength
 * covers the whole message, so each direction is a counter of bytes left in
 * the current message, whether they were captured or not. Of each message
 * the first MONGO_MSG_KEEP captured bytes after the header are kept, up to
 * the first byte that was not captured, and parsed when the message ends.
 *
 * Where bytes were not seen:
 *  - inside a message: skipped by count; the message is parsed from what was
 *    kept (a cut BSON document yields the fields that were captured);
 *  - across a header (the unseen bytes end one message and start the next):
 *    framing is lost, and that direction waits for a feed whose first bytes
 *    are a plausible header. Pairing is by requestID / responseTo, never by
 *    order, so a message lost this way costs its own exchange and nothing else.
 *
 * The first message must be well formed: a stream whose first bytes are not a
 * plausible header is not MongoDB (-EPROTO). After that, malformed messages
 * are counted and, where the header was bad, framing is lost as above.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>
#include <zlib.h>

#include "mongodb_bson.h"
#include "mongodb_proto.h"

#define HDR_LEN	       16
#define MSG_MAX	       (64u << 20) /* servers refuse more than 48 MB; margin for compression */
#define NS_MAX	       (MONGO_NAME_MAX * 2 + 2) /* "db.collection" of legacy opcodes */
#define SNAPPY_OUT_MAX (1u << 20) /* a snappy message inflating to more is not decoded */

#define OP_REPLY	1
#define OP_UPDATE	2001
#define OP_INSERT	2002
#define OP_QUERY	2004
#define OP_GET_MORE	2005
#define OP_DELETE	2006
#define OP_KILL_CURSORS 2007
#define OP_COMPRESSED	2012
#define OP_MSG		2013

#define MSG_CHECKSUM	    (1u << 0)
#define MSG_MORE_TO_COME    (1u << 1)
#define MSG_EXHAUST_ALLOWED (1u << 16)
#define MSG_REQUIRED_BITS   0xffffu /* bits 0-15: unknown ones must be refused */

#define QUERY_EXHAUST	    (1u << 6)
#define REPLY_QUERY_FAILURE (1u << 1)

struct hdr {
	uint32_t len;
	uint32_t request_id;
	uint32_t response_to;
	int32_t opcode;
};

/* One direction of the connection. */
struct half {
	uint8_t hdr_buf[HDR_LEN];
	size_t hdr_len; /* header bytes gathered so far */
	bool in_body;	/* the header is complete */
	struct hdr hdr;
	uint64_t remaining; /* body bytes still to come, seen or not */
	uint8_t *keep;	    /* MONGO_MSG_KEEP bytes, allocated on first use */
	size_t keep_len;
	bool hole; /* a body byte was not captured: keep stops growing */
	bool lost; /* framing lost: waits for a feed that starts with a header */
	uint64_t start_ns;
};

struct pending {
	bool used;
	bool opaque;	     /* compressed with a compressor we cannot read: not reported */
	bool data_reply;     /* legacy query or getMore: the reply holds documents, not a status */
	bool legacy_exhaust; /* OP_QUERY with the Exhaust flag */
	bool has_alt;
	uint32_t id, alt_id; /* request id; an exhaust stream's latest reply id */
	uint64_t seq;	     /* age, for eviction */
	struct mongo_exchange ex;
};

struct mongo_stream {
	enum mongo_role role;
	bool not_mongo;
	bool framed; /* a message was framed: later bad headers are desyncs, not -EPROTO */
	struct half half[2];
	struct pending pending[MONGO_PENDING_MAX];
	uint64_t next_seq;
	uint8_t *inflated; /* MONGO_MSG_KEEP bytes for a decompressed prefix */
	struct mongo_stream_stats st;
};

/* One call of mongo_stream_feed. */
struct feed {
	struct mongo_stream *s;
	enum mongo_dir dir;
	uint64_t ts;
	mongo_exchange_fn fn;
	void *ctx;
};

/* A message body: avail bytes captured (or decompressed) of len declared. */
struct body {
	const uint8_t *p;
	size_t avail;
	size_t len;
};

/* What a reply says about how its request went. */
struct verdict {
	bool error, has_code;
	int32_t code;
};

/* ---- the command table ------------------------------------------------------------------ */

enum coll_from {
	COLL_NONE,  /* no collection */
	COLL_FIRST, /* the command's own value, when it is a string */
	COLL_FIELD, /* getMore: the "collection" field */
};

/* clang-format off */
static const struct command {
	const char *name;
	enum coll_from coll;
} commands[] = {
	{ "find", COLL_FIRST }, { "insert", COLL_FIRST }, { "update", COLL_FIRST },
	{ "delete", COLL_FIRST }, { "aggregate", COLL_FIRST }, { "getMore", COLL_FIELD },
	{ "count", COLL_FIRST }, { "distinct", COLL_FIRST }, { "findAndModify", COLL_FIRST },
	{ "create", COLL_FIRST }, { "drop", COLL_FIRST }, { "createIndexes", COLL_FIRST },
	{ "dropIndexes", COLL_FIRST }, { "listIndexes", COLL_FIRST }, { "collMod", COLL_FIRST },
	{ "mapReduce", COLL_FIRST }, { "validate", COLL_FIRST }, { "collStats", COLL_FIRST },
	{ "killCursors", COLL_FIRST }, { "explain", COLL_NONE }, { "bulkWrite", COLL_NONE },
	{ "renameCollection", COLL_NONE }, { "dropDatabase", COLL_NONE },
	{ "listCollections", COLL_NONE }, { "listDatabases", COLL_NONE }, { "dbStats", COLL_NONE },
	{ "hello", COLL_NONE }, { "isMaster", COLL_NONE }, { "ping", COLL_NONE },
	{ "buildInfo", COLL_NONE }, { "saslStart", COLL_NONE }, { "saslContinue", COLL_NONE },
	{ "authenticate", COLL_NONE }, { "getnonce", COLL_NONE }, { "logout", COLL_NONE },
	{ "startSession", COLL_NONE }, { "endSessions", COLL_NONE }, { "killSessions", COLL_NONE },
	{ "refreshSessions", COLL_NONE }, { "commitTransaction", COLL_NONE },
	{ "abortTransaction", COLL_NONE }, { "getLastError", COLL_NONE }, { "serverStatus", COLL_NONE },
	{ "getParameter", COLL_NONE }, { "setParameter", COLL_NONE }, { "connectionStatus", COLL_NONE },
	{ "whatsmyuri", COLL_NONE }, { "hostInfo", COLL_NONE }, { "currentOp", COLL_NONE },
	{ "killOp", COLL_NONE }, { "getLog", COLL_NONE }, { "replSetGetStatus", COLL_NONE },
	{ "createUser", COLL_NONE }, { "dropUser", COLL_NONE }, { "usersInfo", COLL_NONE },
	{ "getCmdLineOpts", COLL_NONE }, { "listCommands", COLL_NONE }, { "shutdown", COLL_NONE },
};
/* clang-format on */

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static int to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 'a' - 'A' : c;
}

/* Commands are matched without case: ismaster, buildinfo, findandmodify are common spellings. */
static const struct command *command_find(const char *name, size_t len)
{
	for (size_t i = 0; i < N_COMMANDS; i++) {
		const char *c = commands[i].name;
		size_t j = 0;

		while (j < len && c[j] &&
		       to_lower((unsigned char)c[j]) == to_lower((unsigned char)name[j]))
			j++;
		if (j == len && !c[j])
			return &commands[i];
	}
	return NULL;
}

const char *mongo_command_name(const char *name, size_t len)
{
	const struct command *c = command_find(name, len);

	return c ? c->name : NULL;
}

/* ---- little helpers ----------------------------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * Collection and database names become labels: only printable ASCII without
 * spaces or quotes, and not too long; anything else is "_OTHER" (never the bytes).
 */
static void copy_name(char *dst, const char *src, size_t len)
{
	if (len == 0 || len >= MONGO_NAME_MAX)
		goto other;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\')
			goto other;
	}
	copy_str(dst, MONGO_NAME_MAX, src, len);
	return;
other:
	copy_str(dst, MONGO_NAME_MAX, "_OTHER", 6);
}

/* The part of b from off on; an empty body, and false, when off is past its end. */
static bool body_at(const struct body *b, size_t off, struct body *out)
{
	if (off > b->len) {
		out->p = b->p;
		out->avail = out->len = 0;
		return false;
	}
	out->p = b->p + (off < b->avail ? off : b->avail);
	out->avail = off < b->avail ? b->avail - off : 0;
	out->len = b->len - off;
	return true;
}

/* A cstring at the start of b: BSON_OK with its length (NUL excluded), TRUNCATED or MALFORMED. */
static int body_cstring(const struct body *b, size_t max, size_t *len)
{
	size_t scan = b->avail < b->len ? b->avail : b->len;
	const uint8_t *nul;

	if (scan > max + 1)
		scan = max + 1;
	nul = scan ? memchr(b->p, 0, scan) : NULL;
	if (nul) {
		*len = (size_t)(nul - b->p);
		return BSON_OK;
	}
	if (scan == max + 1)
		return BSON_MALFORMED;
	return b->avail < b->len ? BSON_TRUNCATED : BSON_MALFORMED;
}

/* "db.collection" -> db and collection names (collection "" when there is no dot). */
static void split_namespace(const char *ns, size_t len, char *db, char *coll)
{
	const char *dot = memchr(ns, '.', len);

	if (!dot) {
		copy_name(db, ns, len);
		coll[0] = '\0';
		return;
	}
	copy_name(db, ns, (size_t)(dot - ns));
	copy_name(coll, dot + 1, len - (size_t)(dot - ns) - 1);
}

/* ---- the header ------------------------------------------------------------------------- */

static void hdr_read(struct hdr *h, const uint8_t *p)
{
	h->len = le32(p);
	h->request_id = le32(p + 4);
	h->response_to = le32(p + 8);
	h->opcode = (int32_t)le32(p + 12);
}

/* The smallest well-formed message of each opcode; 0: not an opcode. */
static uint32_t opcode_min_len(int32_t opcode)
{
	switch (opcode) {
	case OP_REPLY:
		return HDR_LEN + 20;
	case OP_MSG:
		return HDR_LEN + 4 + 1 + 5;
	case OP_QUERY:
		return HDR_LEN + 4 + 1 + 8 + 5;
	case OP_GET_MORE:
		return HDR_LEN + 4 + 1 + 4 + 8;
	case OP_INSERT:
		return HDR_LEN + 4 + 1 + 5;
	case OP_UPDATE:
		return HDR_LEN + 4 + 1 + 4 + 5 + 5;
	case OP_DELETE:
		return HDR_LEN + 4 + 1 + 4 + 5;
	case OP_KILL_CURSORS:
		return HDR_LEN + 8;
	case OP_COMPRESSED:
		return HDR_LEN + 9;
	default:
		return 0;
	}
}

static bool is_reply_opcode(const struct hdr *h, int32_t opcode)
{
	return opcode == OP_REPLY || (opcode == OP_MSG && h->response_to != 0);
}

/*
 * Could these bytes start a message? The header, and what of the next bytes the
 * opcode pins down, must fit: used for the first bytes of a stream and to resync.
 */
static bool plausible_start(const uint8_t *p, size_t len)
{
	uint32_t min;
	struct hdr h;

	if (len < HDR_LEN)
		return false;
	hdr_read(&h, p);
	min = opcode_min_len(h.opcode);
	if (!min || h.len < min || h.len > MSG_MAX)
		return false;
	if (h.opcode == OP_REPLY && h.response_to == 0)
		return false;
	if (h.opcode == OP_MSG && len >= HDR_LEN + 5) {
		if (le32(p + HDR_LEN) & MSG_REQUIRED_BITS & ~(MSG_CHECKSUM | MSG_MORE_TO_COME))
			return false;
		if (p[HDR_LEN + 4] > 1)
			return false;
	}
	if (h.opcode == OP_COMPRESSED && len >= HDR_LEN + 4 &&
	    (!opcode_min_len((int32_t)le32(p + HDR_LEN)) ||
	     (int32_t)le32(p + HDR_LEN) == OP_COMPRESSED))
		return false;
	return true;
}

bool mongo_looks_like_message(const uint8_t *data, size_t len)
{
	return plausible_start(data, len);
}

/* ---- pending requests -------------------------------------------------------------------- */

static struct pending *pending_find(struct mongo_stream *s, uint32_t response_to)
{
	for (size_t i = 0; i < MONGO_PENDING_MAX; i++) {
		struct pending *p = &s->pending[i];

		if (p->used && (p->id == response_to || (p->has_alt && p->alt_id == response_to)))
			return p;
	}
	return NULL;
}

/* A free slot; when all are taken the oldest request is given up as lost. */
static struct pending *pending_slot(struct mongo_stream *s)
{
	struct pending *oldest = NULL;

	for (size_t i = 0; i < MONGO_PENDING_MAX; i++) {
		struct pending *p = &s->pending[i];

		if (!p->used)
			return p;
		if (!oldest || p->seq < oldest->seq)
			oldest = p;
	}
	s->st.lost++;
	return oldest;
}

static void report(struct feed *f, const struct mongo_exchange *ex)
{
	f->s->st.exchanges++;
	if (f->fn)
		f->fn(ex, f->ctx);
}

/* ---- reading requests --------------------------------------------------------------------- */

/* The command in a command document: its name, collection and $db (when present). */
static int read_command(const struct body *doc, struct mongo_exchange *ex)
{
	const struct command *cmd;
	struct bson_elem e, f;
	struct bson_iter it;
	const char *s;
	size_t n;
	int rc;

	rc = bson_iter_init(&it, doc->p, doc->avail, doc->len);
	if (rc == BSON_OK)
		rc = bson_iter_next(&it, &e);
	if (rc == BSON_MALFORMED)
		return rc;
	if (rc != BSON_OK)
		return BSON_OK; /* nothing of the command was captured: _OTHER */
	cmd = command_find(e.key, e.key_len);
	if (cmd) {
		copy_str(ex->op, sizeof(ex->op), cmd->name, strlen(cmd->name));
		if (cmd->coll == COLL_FIRST && bson_elem_string(&e, &s, &n))
			copy_name(ex->collection, s, n);
	}
	while ((rc = bson_iter_next(&it, &f)) == BSON_OK) {
		if (cmd && cmd->coll == COLL_FIELD && f.key_len == 10 &&
		    !memcmp(f.key, "collection", 10) && bson_elem_string(&f, &s, &n))
			copy_name(ex->collection, s, n);
		else if (f.key_len == 3 && !memcmp(f.key, "$db", 3) && bson_elem_string(&f, &s, &n))
			copy_name(ex->db, s, n);
	}
	return rc == BSON_MALFORMED ? rc : BSON_OK;
}

/*
 * OP_MSG sections: one body (kind 0), any number of document sequences (kind 1).
 * Every captured document is validated; the body is returned in body_doc.
 */
static int read_sections(const struct body *b, uint32_t flags, struct body *body_doc)
{
	size_t end = b->len, off = 4, n_body = 0;
	struct bson_iter it;
	struct body doc;
	int rc;

	if (flags & MSG_CHECKSUM) {
		if (end < 4 + 4 + 1 + 5)
			return BSON_MALFORMED;
		end -= 4;
	}
	while (off < end) {
		uint8_t kind;

		if (off >= b->avail)
			return BSON_TRUNCATED;
		kind = b->p[off++];
		if (kind == 0) {
			body_at(b, off, &doc);
			doc.len = end - off;
			rc = bson_validate(doc.p, doc.avail, doc.len);
			if (rc == BSON_MALFORMED || n_body++)
				return BSON_MALFORMED;
			if (rc == BSON_TRUNCATED && doc.avail < 4)
				return BSON_TRUNCATED;
			bson_iter_init(&it, doc.p, doc.avail, doc.len);
			doc.len = it.len;
			if (doc.avail > doc.len)
				doc.avail = doc.len;
			*body_doc = doc;
			off += it.len;
			if (rc == BSON_TRUNCATED)
				return BSON_TRUNCATED;
		} else if (kind == 1) {
			struct body seq, d;
			uint32_t size;
			size_t id_len, pos;

			if (off + 4 > b->avail)
				return end - off < 4 ? BSON_MALFORMED : BSON_TRUNCATED;
			size = le32(b->p + off);
			if (size < 4 + 2 || size > end - off)
				return BSON_MALFORMED;
			body_at(b, off + 4, &seq);
			seq.len = size - 4;
			rc = body_cstring(&seq, MONGO_NAME_MAX, &id_len);
			if (rc != BSON_OK)
				return rc;
			if (id_len == 0)
				return BSON_MALFORMED;
			for (pos = id_len + 1; pos < seq.len; pos += it.len) {
				body_at(&seq, pos, &d);
				rc = bson_validate(d.p, d.avail, d.len);
				if (rc != BSON_OK)
					return rc;
				bson_iter_init(&it, d.p, d.avail, d.len);
			}
			off += size;
		} else {
			return BSON_MALFORMED; /* kind 2 is internal to the server */
		}
	}
	if (off != end || (n_body != 1 && b->avail >= b->len))
		return BSON_MALFORMED;
	return n_body == 1 ? BSON_OK : BSON_TRUNCATED;
}

/* ---- reading replies ---------------------------------------------------------------------- */

/* The code field of a document element (writeConcernError, a writeErrors entry). */
static void code_of(const struct bson_elem *e, bool *has, int32_t *code)
{
	struct bson_elem c;

	if (bson_find(e->val, e->val_avail, e->val_len, "code", &c) == BSON_OK &&
	    bson_elem_int32(&c, code))
		*has = true;
}

/* ok, code, writeErrors, writeConcernError and $err of a command reply, as far as captured. */
static void read_verdict(const struct body *doc, struct verdict *v)
{
	bool ok_seen = false, code_seen = false, wce = false, werr = false, err = false;
	bool wce_has = false, werr_has = false;
	int32_t code = 0, wce_code = 0, werr_code = 0;
	struct bson_elem e, first;
	struct bson_iter it, arr;
	double ok = 1;

	if (bson_iter_init(&it, doc->p, doc->avail, doc->len) != BSON_OK)
		return;
	while (bson_iter_next(&it, &e) == BSON_OK) {
		if (e.key_len == 2 && !memcmp(e.key, "ok", 2)) {
			ok_seen = bson_elem_number(&e, &ok);
		} else if (e.key_len == 4 && !memcmp(e.key, "code", 4)) {
			code_seen = bson_elem_int32(&e, &code);
		} else if (e.key_len == 4 && !memcmp(e.key, "$err", 4)) {
			err = true;
		} else if (e.key_len == 11 && !memcmp(e.key, "writeErrors", 11) &&
			   e.type == BSON_ARRAY) {
			if (bson_iter_child(&e, &arr) != BSON_OK)
				continue;
			switch (bson_iter_next(&arr, &first)) {
			case BSON_OK:
				werr = true;
				if (first.type == BSON_DOCUMENT)
					code_of(&first, &werr_has, &werr_code);
				break;
			case BSON_TRUNCATED:
				werr = true; /* not empty, at least */
				break;
			default:
				break;
			}
		} else if (e.key_len == 17 && !memcmp(e.key, "writeConcernError", 17) &&
			   e.type == BSON_DOCUMENT) {
			wce = true;
			code_of(&e, &wce_has, &wce_code);
		}
	}
	if ((ok_seen && ok == 0) || err) {
		v->error = true;
		v->has_code = code_seen;
		v->code = code;
	} else if (werr) {
		v->error = true;
		v->has_code = werr_has;
		v->code = werr_code;
	} else if (wce) {
		v->error = true;
		v->has_code = wce_has;
		v->code = wce_code;
	}
}

/* ---- messages ------------------------------------------------------------------------------ */

/* What the parse of one message found. */
struct parsed {
	bool ok; /* well formed as far as captured */
	bool request;
	bool more_to_come;  /* OP_MSG flag: no reply follows (request) / more replies follow */
	bool exhaust;	    /* legacy OP_QUERY with the Exhaust flag */
	bool data_reply;    /* legacy query or getMore: its reply carries documents */
	bool reply_failure; /* OP_REPLY QueryFailure */
	bool cursor_open;   /* OP_REPLY cursorID != 0 */
	bool opaque;	    /* could not be read (compressor): known only by its header */
	struct mongo_exchange ex; /* request: op, collection, db */
	struct body reply_doc;	  /* reply: the status document, if any */
	bool has_reply_doc;
};

static void set_op(struct mongo_exchange *ex, const char *op)
{
	copy_str(ex->op, sizeof(ex->op), op, strlen(op));
}

static int parse_op_msg(const struct body *b, bool request, struct parsed *out)
{
	struct body doc = { 0 };
	uint32_t flags;
	int rc;

	if (b->avail < 4)
		return BSON_TRUNCATED;
	flags = le32(b->p);
	if (flags & MSG_REQUIRED_BITS & ~(MSG_CHECKSUM | MSG_MORE_TO_COME))
		return BSON_MALFORMED;
	out->more_to_come = flags & MSG_MORE_TO_COME;
	rc = read_sections(b, flags, &doc);
	if (rc == BSON_MALFORMED)
		return rc;
	if (!doc.p)
		return rc;
	if (request)
		return read_command(&doc, &out->ex) == BSON_MALFORMED ? BSON_MALFORMED : rc;
	out->reply_doc = doc;
	out->has_reply_doc = true;
	return rc;
}

static int parse_op_query(const struct body *b, struct parsed *out)
{
	struct body ns, rest, q, inner;
	struct bson_elem e;
	size_t ns_len;
	uint32_t flags;
	int rc;

	if (b->avail < 4)
		return BSON_TRUNCATED;
	flags = le32(b->p);
	out->exhaust = flags & QUERY_EXHAUST;
	body_at(b, 4, &ns);
	rc = body_cstring(&ns, NS_MAX, &ns_len);
	if (rc != BSON_OK)
		return rc;
	if (!body_at(&ns, ns_len + 1 + 8, &rest) || rest.len < 5)
		return BSON_MALFORMED;
	q = rest;
	rc = bson_validate(q.p, q.avail, q.len);
	if (rc == BSON_MALFORMED)
		return rc;
	{
		const char *s = (const char *)ns.p;
		const char *dot = memchr(s, '.', ns_len);

		if (dot && (size_t)(s + ns_len - dot - 1) >= 4 && !memcmp(dot + 1, "$cmd", 4)) {
			/* A command; drivers may wrap it as {$query: {...}, $readPreference: ...}. */
			if (bson_find(q.p, q.avail, q.len, "$query", &e) == BSON_OK &&
			    e.type == BSON_DOCUMENT) {
				inner.p = e.val;
				inner.avail = e.val_avail;
				inner.len = e.val_len;
				q = inner;
			}
			if (read_command(&q, &out->ex) == BSON_MALFORMED)
				return BSON_MALFORMED;
			copy_name(out->ex.db, s, (size_t)(dot - s));
		} else {
			set_op(&out->ex, "find");
			out->data_reply = true;
			split_namespace(s, ns_len, out->ex.db, out->ex.collection);
		}
	}
	return rc;
}

static int parse_op_reply(const struct body *b, struct parsed *out)
{
	struct body docs;
	uint32_t flags;
	int rc;

	if (b->avail < 20)
		return BSON_TRUNCATED;
	flags = le32(b->p);
	out->reply_failure = flags & REPLY_QUERY_FAILURE;
	out->cursor_open = le32(b->p + 4) || le32(b->p + 8);
	if (le32(b->p + 16) > 0x7fffffffu)
		return BSON_MALFORMED;
	body_at(b, 20, &docs);
	if (docs.len == 0)
		return le32(b->p + 16) == 0 ? BSON_OK : BSON_MALFORMED;
	rc = bson_validate(docs.p, docs.avail, docs.len);
	if (rc == BSON_MALFORMED)
		return rc;
	out->reply_doc = docs;
	out->has_reply_doc = true;
	return rc;
}

/* The legacy opcodes that name a namespace after a 4-byte field. */
static int parse_legacy_ns(const struct body *b, const char *op, struct parsed *out)
{
	struct body ns;
	size_t ns_len;
	int rc;

	set_op(&out->ex, op);
	if (b->avail < 4)
		return BSON_TRUNCATED;
	body_at(b, 4, &ns);
	rc = body_cstring(&ns, NS_MAX, &ns_len);
	if (rc != BSON_OK)
		return rc;
	split_namespace((const char *)ns.p, ns_len, out->ex.db, out->ex.collection);
	return BSON_OK;
}

static int parse_body(const struct hdr *h, int32_t opcode, const struct body *b, struct parsed *out)
{
	out->request = !is_reply_opcode(h, opcode);
	set_op(&out->ex, "_OTHER");
	switch (opcode) {
	case OP_MSG:
		return parse_op_msg(b, out->request, out);
	case OP_QUERY:
		return parse_op_query(b, out);
	case OP_REPLY:
		return parse_op_reply(b, out);
	case OP_GET_MORE:
		out->data_reply = true;
		return parse_legacy_ns(b, "getMore", out);
	case OP_INSERT:
		out->more_to_come = true;
		return parse_legacy_ns(b, "insert", out);
	case OP_UPDATE:
		out->more_to_come = true;
		return parse_legacy_ns(b, "update", out);
	case OP_DELETE:
		out->more_to_come = true;
		return parse_legacy_ns(b, "delete", out);
	case OP_KILL_CURSORS:
		out->more_to_come = true;
		set_op(&out->ex, "killCursors");
		return BSON_OK;
	default:
		return BSON_MALFORMED;
	}
}

/*
 * snappy (the raw block format): the library needs the whole compressed
 * body, so a message the capture cut is not decoded (counted). What it holds
 * is bounded by SNAPPY_OUT_MAX; only the first MONGO_MSG_KEEP bytes are parsed.
 */
static int parse_snappy(struct mongo_stream *s, const struct hdr *h, int32_t opcode, uint32_t size,
			const struct body *b, struct parsed *out)
{
	const char *in = (const char *)b->p + 9;
	size_t in_len = b->avail - 9, ulen;
	struct body inner;
	char *buf;

	if (b->avail < b->len || size > SNAPPY_OUT_MAX) {
		out->opaque = true; /* not all of it captured, or too large to inflate here */
		s->st.undecoded++;
		return BSON_OK;
	}
	if (snappy_uncompressed_length(in, in_len, &ulen) != SNAPPY_OK || ulen != size) {
		s->st.undecoded++;
		return BSON_MALFORMED;
	}
	buf = size <= MONGO_MSG_KEEP ? (char *)s->inflated : malloc(size ? size : 1);
	if (!buf) {
		out->opaque = true;
		s->st.undecoded++;
		return BSON_OK;
	}
	if (snappy_uncompress(in, in_len, buf, &ulen) != SNAPPY_OK || ulen != size) {
		if (buf != (char *)s->inflated)
			free(buf);
		s->st.undecoded++;
		return BSON_MALFORMED;
	}
	if (buf != (char *)s->inflated) {
		memcpy(s->inflated, buf, MONGO_MSG_KEEP);
		free(buf);
	}
	inner.p = s->inflated;
	inner.avail = size < MONGO_MSG_KEEP ? size : MONGO_MSG_KEEP;
	inner.len = size;
	return parse_body(h, opcode, &inner, out);
}

/*
 * OP_COMPRESSED: originalOpcode, uncompressedSize, compressorId, then the
 * compressed original body. zlib output is inflated only as far as it is
 * parsed; snappy's as a whole (parse_snappy).
 */
static int parse_compressed(struct mongo_stream *s, const struct hdr *h, const struct body *b,
			    struct parsed *out)
{
	int32_t opcode;
	uint32_t size;
	uint8_t comp;
	struct body inner;
	z_stream z;
	int zrc;

	if (b->avail < 9) {
		out->opaque = true;
		s->st.undecoded++;
		return BSON_TRUNCATED;
	}
	opcode = (int32_t)le32(b->p);
	size = le32(b->p + 4);
	comp = b->p[8];
	s->st.compressed[comp < MONGO_COMPRESSORS ? comp : MONGO_COMPRESSORS]++;
	out->ex.compressed = true;
	if (opcode == OP_COMPRESSED || !opcode_min_len(opcode) || size > MSG_MAX ||
	    size + HDR_LEN < opcode_min_len(opcode))
		return BSON_MALFORMED;
	out->request = !is_reply_opcode(h, opcode);
	if (comp == MONGO_COMP_NOOP) {
		body_at(b, 9, &inner);
		if (inner.len != size)
			return BSON_MALFORMED;
		return parse_body(h, opcode, &inner, out);
	}
	if (comp != MONGO_COMP_ZLIB && comp != MONGO_COMP_SNAPPY) {
		out->opaque = true;
		s->st.undecoded++;
		return BSON_OK;
	}
	if (!s->inflated) {
		s->inflated = malloc(MONGO_MSG_KEEP);
		if (!s->inflated) {
			out->opaque = true;
			s->st.undecoded++;
			return BSON_OK;
		}
	}
	if (comp == MONGO_COMP_SNAPPY)
		return parse_snappy(s, h, opcode, size, b, out);
	memset(&z, 0, sizeof(z));
	if (inflateInit(&z) != Z_OK) {
		out->opaque = true;
		s->st.undecoded++;
		return BSON_OK;
	}
	z.next_in = (Bytef *)(uintptr_t)(b->p + 9);
	z.avail_in = (uInt)(b->avail - 9);
	z.next_out = s->inflated;
	z.avail_out = size < MONGO_MSG_KEEP ? size : MONGO_MSG_KEEP;
	zrc = inflate(&z, Z_SYNC_FLUSH);
	inner.p = s->inflated;
	inner.avail = z.total_out;
	inner.len = size;
	inflateEnd(&z);
	if (zrc == Z_STREAM_END && inner.avail != size)
		zrc = Z_DATA_ERROR; /* the stream ended before the size it announced */
	if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
		s->st.undecoded++;
		return BSON_MALFORMED;
	}
	return parse_body(h, opcode, &inner, out);
}

/* The request half of an exchange is complete. */
static void on_request(struct feed *f, const struct hdr *h, struct parsed *m, uint64_t start)
{
	struct mongo_stream *s = f->s;
	struct pending *p;

	if (s->role == MONGO_ROLE_UNKNOWN)
		s->role = f->dir == MONGO_DIR_OUT ? MONGO_ROLE_CLIENT : MONGO_ROLE_SERVER;
	m->ex.role = f->dir == MONGO_DIR_OUT ? MONGO_ROLE_CLIENT : MONGO_ROLE_SERVER;
	m->ex.start_ns = start;
	if (m->more_to_come) {
		if (m->opaque)
			return;
		m->ex.outcome = MONGO_NO_REPLY;
		m->ex.end_ns = f->ts;
		report(f, &m->ex);
		return;
	}
	p = pending_slot(s);
	memset(p, 0, sizeof(*p));
	p->used = true;
	p->id = h->request_id;
	p->seq = s->next_seq++;
	p->opaque = m->opaque;
	p->data_reply = m->data_reply;
	p->legacy_exhaust = m->exhaust;
	p->ex = m->ex;
}

static void on_reply(struct feed *f, const struct hdr *h, const struct parsed *m, int32_t opcode)
{
	struct pending *p = pending_find(f->s, h->response_to);
	struct verdict v = { 0 };
	bool more;

	if (!p) {
		f->s->st.unmatched++;
		return;
	}
	if (m->reply_failure)
		v.error = true;
	if (m->has_reply_doc && !m->opaque && (!p->data_reply || m->reply_failure))
		read_verdict(&m->reply_doc, &v);
	/* Exhaust: OP_MSG replies say moreToCome; legacy ones keep coming while the cursor is open. */
	more = opcode == OP_MSG ? m->more_to_come :
				  p->legacy_exhaust && m->cursor_open && !m->reply_failure;
	if (!p->opaque) {
		p->ex.outcome = MONGO_REPLIED;
		p->ex.error = v.error;
		p->ex.has_code = v.has_code;
		p->ex.code = v.code;
		p->ex.end_ns = f->ts;
		report(f, &p->ex);
	}
	if (!more) {
		p->used = false;
		return;
	}
	/* The next reply of the stream answers this one; it stands for a getMore of the cursor. */
	p->has_alt = true;
	p->alt_id = h->request_id;
	p->ex.start_ns = f->ts;
	p->ex.exhaust = true;
	if (!strcmp(p->ex.op, "find"))
		set_op(&p->ex, "getMore");
}

static void message_done(struct feed *f, struct half *hf)
{
	struct mongo_stream *s = f->s;
	const struct hdr *h = &hf->hdr;
	struct body b = { hf->keep, hf->keep_len, h->len - HDR_LEN };
	struct parsed m;
	int32_t opcode = h->opcode;
	int rc;

	memset(&m, 0, sizeof(m));
	s->st.messages++;
	if (opcode == OP_COMPRESSED) {
		rc = parse_compressed(s, h, &b, &m);
		if (b.avail >= 4 && opcode_min_len((int32_t)le32(b.p)))
			opcode = (int32_t)le32(b.p);
		else
			m.request = h->response_to == 0;
	} else {
		rc = parse_body(h, opcode, &b, &m);
	}
	if (rc == BSON_MALFORMED) {
		s->st.malformed++;
		/* The header framed it: pairing still holds, and the reply is still awaited. */
		memset(&m.ex, 0, sizeof(m.ex));
		set_op(&m.ex, "_OTHER");
		m.has_reply_doc = false;
	}
	if (m.request)
		on_request(f, h, &m, hf->start_ns);
	else
		on_reply(f, h, &m, opcode);
}

/* ---- framing -------------------------------------------------------------------------------- */

static void half_reset(struct half *hf)
{
	hf->hdr_len = 0;
	hf->in_body = false;
	hf->keep_len = 0;
	hf->hole = false;
}

static void lose_framing(struct mongo_stream *s, struct half *hf)
{
	half_reset(hf);
	hf->lost = true;
	s->st.desyncs++;
}

/* The header is complete: 0, or -EPROTO when the stream's first header is not one. */
static int header_done(struct feed *f, struct half *hf)
{
	struct mongo_stream *s = f->s;
	uint32_t min;

	hdr_read(&hf->hdr, hf->hdr_buf);
	min = opcode_min_len(hf->hdr.opcode);
	if (!min || hf->hdr.len < min || hf->hdr.len > MSG_MAX) {
		if (!s->framed) {
			s->not_mongo = true;
			s->st.not_mongo = true;
			return -EPROTO;
		}
		s->st.malformed++;
		lose_framing(s, hf);
		return 0;
	}
	s->framed = true;
	hf->in_body = true;
	hf->remaining = hf->hdr.len - HDR_LEN;
	hf->keep_len = 0;
	hf->hole = false;
	return 0;
}

static void keep_bytes(struct half *hf, const uint8_t *p, size_t n)
{
	size_t room;

	if (hf->hole || !n)
		return;
	if (!hf->keep) {
		hf->keep = malloc(MONGO_MSG_KEEP);
		if (!hf->keep) {
			hf->hole = true;
			return;
		}
	}
	room = MONGO_MSG_KEEP - hf->keep_len;
	if (n > room)
		n = room;
	memcpy(hf->keep + hf->keep_len, p, n);
	hf->keep_len += n;
}

static void body_done(struct feed *f, struct half *hf)
{
	message_done(f, hf);
	half_reset(hf);
}

/* Captured bytes of one feed, from pos on. */
static int feed_captured(struct feed *f, struct half *hf, const uint8_t *data, size_t len)
{
	size_t pos = 0;
	int rc;

	if (hf->lost) {
		if (!plausible_start(data, len))
			return 0;
		hf->lost = false;
	}
	while (pos < len) {
		if (!hf->in_body) {
			size_t n = HDR_LEN - hf->hdr_len;

			if (n > len - pos)
				n = len - pos;
			if (hf->hdr_len == 0)
				hf->start_ns = f->ts;
			memcpy(hf->hdr_buf + hf->hdr_len, data + pos, n);
			hf->hdr_len += n;
			pos += n;
			if (hf->hdr_len < HDR_LEN)
				break;
			rc = header_done(f, hf);
			if (rc)
				return rc;
			if (hf->lost)
				return 0;
		}
		{
			size_t n = len - pos;

			if (n > hf->remaining)
				n = (size_t)hf->remaining;
			keep_bytes(hf, data + pos, n);
			hf->remaining -= n;
			pos += n;
		}
		if (hf->remaining == 0)
			body_done(f, hf);
	}
	return 0;
}

/* Bytes that were moved but not captured: skipped by count where framing allows. */
static void feed_unseen(struct feed *f, struct half *hf, uint64_t n)
{
	if (!n || hf->lost)
		return;
	if (!hf->in_body) {
		/* A header, or part of one, was not seen. */
		lose_framing(f->s, hf);
		return;
	}
	hf->hole = true;
	if (n < hf->remaining) {
		hf->remaining -= n;
		return;
	}
	n -= hf->remaining;
	hf->remaining = 0;
	body_done(f, hf);
	if (n)
		lose_framing(f->s, hf);
}

int mongo_stream_feed(struct mongo_stream *s, enum mongo_dir dir, const uint8_t *data, size_t len,
		      uint64_t total, uint64_t ts_ns, mongo_exchange_fn fn, void *ctx)
{
	struct feed f = { .s = s,
			  .dir = dir == MONGO_DIR_OUT ? MONGO_DIR_OUT : MONGO_DIR_IN,
			  .ts = ts_ns,
			  .fn = fn,
			  .ctx = ctx };
	struct half *hf = &s->half[f.dir];
	int rc;

	if (s->not_mongo)
		return -EPROTO;
	if (total < len)
		total = len;
	rc = feed_captured(&f, hf, data, len);
	if (rc)
		return rc;
	feed_unseen(&f, hf, total - len);
	return 0;
}

void mongo_stream_close(struct mongo_stream *s, uint64_t ts_ns, mongo_exchange_fn fn, void *ctx)
{
	struct feed f = { .s = s, .ts = ts_ns, .fn = fn, .ctx = ctx };

	/* Oldest first, as they were sent. */
	for (;;) {
		struct pending *oldest = NULL;

		for (size_t i = 0; i < MONGO_PENDING_MAX; i++) {
			struct pending *p = &s->pending[i];

			if (p->used && (!oldest || p->seq < oldest->seq))
				oldest = p;
		}
		if (!oldest)
			break;
		oldest->used = false;
		if (oldest->opaque)
			continue;
		oldest->ex.outcome = MONGO_UNANSWERED;
		oldest->ex.end_ns = ts_ns;
		report(&f, &oldest->ex);
	}
	half_reset(&s->half[0]);
	half_reset(&s->half[1]);
}

struct mongo_stream *mongo_stream_new(void)
{
	return calloc(1, sizeof(struct mongo_stream));
}

void mongo_stream_free(struct mongo_stream *s)
{
	if (!s)
		return;
	free(s->half[0].keep);
	free(s->half[1].keep);
	free(s->inflated);
	free(s);
}

void mongo_stream_get_stats(const struct mongo_stream *s, struct mongo_stream_stats *st)
{
	*st = s->st;
	st->role = s->role;
}
