/*
 * HTTP/1.x stream decoder (see http_proto.h).
 *
 * Each direction of a connection is a small state machine that finds message
 * boundaries; requests are queued when their head is complete and answered in
 * FIFO order by the responses of the other direction.
 *
 * Memory per stream is fixed: a 1 KiB line buffer per direction (the start of
 * a head line that spans feeds, plus the last bytes of an over-long one; lines
 * within one feed are parsed where they lie), one request being parsed, and a
 * pending-request ring of at most HTTP_PENDING_MAX entries that grows only as
 * pipelining needs it.
 *
 * Where the input is incomplete (only `len` of `total` bytes captured, bytes
 * moved by syscalls that are not traced), the rules are:
 *  - Content-Length bodies and chunk data are skipped by count, captured or not.
 *  - A head cut by the capture keeps what was captured (start line, complete
 *    header lines); a request is queued with it. The message is then assumed to
 *    run until a later feed of that direction starts with a new message
 *    ("lost" framing); its body size is its Content-Length if one was seen,
 *    otherwise the bytes of the feeds after the cut one.
 *  - Chunk framing that falls into the uncaptured part is lost the same way: from
 *    the loss on every byte counts as body (chunk lines included), and the
 *    message ends when a feed starts with a new message, or at close.
 *  - Whole messages hidden in an uncaptured part: their number is unknown. Hidden
 *    requests are stood for by one placeholder in the queue that absorbs (counts as
 *    lost) at least one response, and every response while nothing is queued behind
 *    it; then it makes way for the real requests. Guessing too few self-heals (a
 *    response finds the queue empty); guessing too many would shift the pairing of
 *    a keep-alive connection for good, so the guess is the minimum. Hidden
 *    responses take the oldest pending request with them (counted lost).
 *    Requests still waiting at close after the responses lost their framing
 *    are counted lost too, not unanswered: their answers may have gone by unseen.
 *  - A response body whose bytes never came (sendfile) is detected when a feed
 *    starts with a status line while a later request is already waiting: the
 *    response ends with the bytes that were seen.
 *  - Resync happens only at the start of a feed whose captured bytes begin with a
 *    request (response) line of the expected kind. Bytes that are not HTTP where a
 *    message must start: in a direction's first message -> -EPROTO; after a
 *    malformed head the next feed must start a message, or the stream is -EPROTO.
 *  - After 101 Switching Protocols or a 2xx answer to CONNECT the connection
 *    carries another protocol: every later byte is ignored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/traceparent.h>

#include "http_proto.h"
#include "ps_classify_http.h"

#define LINE_KEEP	 1008	     /* first bytes of a head line kept for parsing */
#define LINE_TAIL	 16	     /* last bytes of an over-long line (the request version) */
#define HEAD_LINE_MAX	 (16 * 1024) /* longer head lines are malformed */
#define HEAD_MAX	 (64 * 1024) /* so are longer heads and trailer sections */
#define CLASSIFY_BYTES	 PS_HTTP_CLASSIFY_BYTES
#define CHUNK_DIGITS_MAX 15 /* keeps chunk sizes below 2^60 */

enum phase {
	PH_START,	/* between messages */
	PH_HEAD,	/* start line and header lines */
	PH_BODY_LENGTH, /* Content-Length body */
	PH_CHUNK_SIZE,	/* hex digits of a chunk-size line */
	PH_CHUNK_EXT,	/* rest of a chunk-size line */
	PH_CHUNK_DATA,
	PH_CHUNK_DATA_END, /* CRLF after chunk data */
	PH_TRAILER,	   /* trailer lines after the last chunk */
	PH_BODY_CLOSE,	   /* response body delimited by the connection close */
	PH_LOST,	   /* framing unknown: waits for a feed that starts a message */
	PH_TUNNEL,	   /* not HTTP anymore (upgrade, CONNECT) */
};

/* What a direction in PH_LOST waits with. */
enum lost_kind {
	LOST_NONE,   /* a malformed head: nothing open, next feed must start a message */
	LOST_MSG,    /* a known message is open: later bytes are its body */
	LOST_HIDDEN, /* bytes of messages never seen: later bytes are ignored */
};

enum classify { CL_NO, CL_MAYBE, CL_YES };

struct pending {
	uint32_t seq;
	bool hidden;	      /* stands for requests the capture did not show */
	uint32_t hidden_left; /* responses it still absorbs even with requests behind it */
	struct http_exchange ex; /* last: its tracestate ends the struct */
};

/*
 * Requests are reset and queued by value, once each: the tracestate buffer,
 * half a KiB that is almost always empty, is cleared and copied only as far as
 * its string goes.
 */
#define PENDING_FIXED offsetof(struct pending, ex.tracestate)

static void pending_reset(struct pending *p)
{
	memset(p, 0, PENDING_FIXED);
	p->ex.tracestate[0] = '\0';
}

static void pending_copy(struct pending *dst, const struct pending *src)
{
	memcpy(dst, src, PENDING_FIXED);
	memcpy(dst->ex.tracestate, src->ex.tracestate, strlen(src->ex.tracestate) + 1);
}

/* Header facts that decide framing. */
struct framing {
	uint64_t content_length;
	bool has_length;
	bool chunked;	   /* chunked is the final transfer coding */
	bool other_coding; /* Transfer-Encoding without chunked last */
};

struct half {
	enum phase phase;
	enum lost_kind lost;
	bool started;	/* a start line was accepted in this direction */
	bool confirmed; /* the current message's first bytes are a start line */
	bool is_request;
	bool matched;	 /* response: match_seq is the request it answers */
	bool body_fixed; /* body size known from a cut head: later bytes don't add */
	bool host_from_target;
	bool chunk_ext_cr;
	uint16_t status;
	uint32_t match_seq;
	uint32_t req_seq; /* request: its queue entry */
	struct framing fr;
	uint64_t remaining; /* Content-Length or chunk bytes to go */
	uint64_t body;
	uint64_t start_ns;
	uint64_t last_ns; /* feed holding the last byte seen of the open message */
	unsigned chunk_digits;
	size_t line_len; /* bytes of the current line so far, kept or not */
	size_t line_no;
	size_t head_len;
	uint8_t line[LINE_KEEP + LINE_TAIL];
};

struct http_stream {
	enum http_role role;
	bool not_http;
	bool tunnel;
	bool closed;
	/* Responses lost their framing while requests waited: some may have gone by unseen. */
	bool responses_unseen;
	struct half half[2];
	struct pending req; /* request whose head is being parsed */
	struct pending *q;  /* ring of pending requests */
	uint32_t q_cap, q_head, q_len;
	uint32_t next_seq;
	struct http_stream_stats st;
};

/* One call of http_stream_feed. */
struct feed {
	struct http_stream *s;
	struct half *h;
	enum http_dir dir;
	uint64_t ts;
	http_exchange_fn fn;
	void *ctx;
};

/* clang-format off */
#define METHOD(m) { m, sizeof(m) - 1 }
static const struct {
	const char *name;
	size_t len;
} known_methods[] = {
	METHOD("GET"), METHOD("HEAD"), METHOD("POST"), METHOD("PUT"), METHOD("DELETE"),
	METHOD("CONNECT"), METHOD("OPTIONS"), METHOD("TRACE"), METHOD("PATCH"),
};
#undef METHOD
/* clang-format on */

/* ---- characters and small parsers ------------------------------------------------------- */

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 'a' - 'A' : c;
}

/* RFC 9110 tchar: what header names and methods are made of. */
/* clang-format off */
static const bool tchar_table[256] = {
	['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true,
	['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true,
	['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true,
	['`'] = true, ['|'] = true, ['~'] = true,
};
/* clang-format on */

/* How many of the first n bytes of p are tchar; four at a time while all four are. */
static size_t tchar_span(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0;

	while (i + 4 <= n && (tchar_table[u[i]] & tchar_table[u[i + 1]] & tchar_table[u[i + 2]] &
			      tchar_table[u[i + 3]]))
		i += 4;
	while (i < n && tchar_table[u[i]])
		i++;
	return i;
}

/*
 * A token of n tchar equals lit (n lower-case letters and '-') regardless of case.
 * Among tchar, OR-ing 0x20 maps exactly the two cases of a letter onto the lower
 * one, and leaves '-' as it is.
 */
static bool token_equals(const char *tok, const char *lit, size_t n)
{
	unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)((tok[i] | 0x20) ^ lit[i]);
	return diff == 0;
}

static bool is_ows(int c)
{
	return c == ' ' || c == '\t';
}

static bool equals_nocase(const char *a, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!lit[i] || to_lower((unsigned char)a[i]) != lit[i])
			return false;
	return lit[i] == '\0';
}

static bool starts_nocase(const char *a, size_t n, const char *lit)
{
	size_t k = strlen(lit);

	return n >= k && equals_nocase(a, k, lit);
}

static void trim_ows(const char **p, size_t *n)
{
	while (*n && is_ows((*p)[0])) {
		(*p)++;
		(*n)--;
	}
	while (*n && is_ows((*p)[*n - 1]))
		(*n)--;
}

/*
 * Sixteen bytes at a time: every header value and request target is checked for
 * control bytes. GCC/clang vector extensions: SSE2 or NEON where there is one,
 * plain words elsewhere.
 */
typedef uint8_t bytes16 __attribute__((vector_size(16)));
typedef int8_t mask16 __attribute__((vector_size(16)));

/* A field value's forbidden bytes: controls other than HTAB, and DEL. */
static inline mask16 value_ctl(bytes16 v)
{
	return ((v < ' ') & (v != '\t')) | (v == 0x7f);
}

/* A request target's forbidden bytes: controls, space, DEL. */
static inline mask16 target_ctl(bytes16 v)
{
	return (v <= ' ') | (v == 0x7f);
}

static inline bytes16 load16(const char *p)
{
	bytes16 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/*
 * Sixteen bytes taken only from p[0, n), 0 < n <= 16, that include every one of them
 * (some twice): the checks here do not mind repeats.
 */
static inline bytes16 load_cover(const char *p, size_t n)
{
	uint32_t q[4];
	bytes16 v;

	if (n == 16)
		return load16(p);
	if (n >= 8) {
		memcpy(&q[0], p, 8);
		memcpy(&q[2], p + n - 8, 8);
	} else if (n >= 4) {
		memcpy(&q[0], p, 4);
		memcpy(&q[1], p + n - 4, 4);
		q[2] = q[0];
		q[3] = q[1];
	} else {
		q[0] = (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[n / 2] << 8 |
		       (uint32_t)(uint8_t)p[n - 1] << 16 | (uint32_t)(uint8_t)p[n - 1] << 24;
		q[1] = q[2] = q[3] = q[0];
	}
	memcpy(&v, q, sizeof(v));
	return v;
}

/* Does flag mark any byte of p[0, n)? The last block overlaps the one before it. */
static inline bool any_byte(const char *p, size_t n, mask16 (*flag)(bytes16))
{
	mask16 bad;
	uint64_t w[2];

	if (!n)
		return false;
	if (n <= 16) {
		bad = flag(load_cover(p, n));
	} else {
		bad = flag(load16(p + n - 16));
		for (size_t i = 0; i + 16 < n; i += 16)
			bad |= flag(load16(p + i));
	}
	memcpy(w, &bad, sizeof(w));
	return (w[0] | w[1]) != 0;
}

static bool value_has_ctl(const char *v, size_t n)
{
	return any_byte(v, n, value_ctl);
}

static bool target_has_ctl(const char *t, size_t n)
{
	return any_byte(t, n, target_ctl);
}

/* Copies n bytes of p into a buffer of size cap, truncating; always NUL-terminates. */
static void copy_str(char *dst, size_t cap, const char *p, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* copy_str, lower-cased on the way. */
static void copy_lower(char *dst, size_t cap, const char *p, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)to_lower((unsigned char)p[i]);
	dst[n] = '\0';
}

/*
 * A decimal number made of digits only, at most max; 0 or -EBADMSG. Up to 19 digits
 * cannot overflow 64 bits, so those are checked against max once, at the end.
 */
static int parse_decimal(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -EBADMSG;
	if (n <= 19) {
		for (size_t i = 0; i < n; i++) {
			if (!is_digit(p[i]))
				return -EBADMSG;
			v = v * 10 + (uint64_t)(p[i] - '0');
		}
		if (v > max)
			return -EBADMSG;
		*out = v;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(p[i]))
			return -EBADMSG;
		if (v > (max - (uint64_t)(p[i] - '0')) / 10)
			return -EBADMSG;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* ---- first bytes ------------------------------------------------------------------------ */

/* The shared classifier (bpf/ps_classify_http.h): the kernel follows what this decodes. */
static enum classify classify_verdict(int v)
{
	return v == PS_HTTP_YES ? CL_YES : v == PS_HTTP_MAYBE ? CL_MAYBE : CL_NO;
}

static enum classify classify_request(const uint8_t *p, size_t n)
{
	return classify_verdict(ps_http_classify_request(p, n > UINT32_MAX ? UINT32_MAX : (__u32)n));
}

static enum classify classify_response(const uint8_t *p, size_t n)
{
	return classify_verdict(ps_http_classify_response(p, n > UINT32_MAX ? UINT32_MAX : (__u32)n));
}

bool http_looks_like_request(const uint8_t *data, size_t len)
{
	return data && classify_request(data, len) == CL_YES;
}

bool http_looks_like_response(const uint8_t *data, size_t len)
{
	return data && classify_response(data, len) == CL_YES;
}

/* ---- pending requests ------------------------------------------------------------------- */

static struct pending *queue_at(struct http_stream *s, uint32_t i)
{
	return &s->q[(s->q_head + i) & (s->q_cap - 1)];
}

static struct pending *queue_front(struct http_stream *s)
{
	return s->q_len ? queue_at(s, 0) : NULL;
}

static struct pending *queue_back(struct http_stream *s)
{
	return s->q_len ? queue_at(s, s->q_len - 1) : NULL;
}

static void queue_pop(struct http_stream *s)
{
	if (!s->q_len)
		return;
	s->q_head = (s->q_head + 1) & (s->q_cap - 1);
	s->q_len--;
}

/* Doubles the ring (power-of-two capacity), up to HTTP_PENDING_MAX entries. */
static int queue_grow(struct http_stream *s)
{
	uint32_t cap = s->q_cap ? s->q_cap * 2 : 2;
	struct pending *q;

	if (cap > HTTP_PENDING_MAX)
		return -ENOSPC;
	q = malloc(cap * sizeof(*q));
	if (!q)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->q_len; i++)
		pending_copy(&q[i], queue_at(s, i));
	free(s->q);
	s->q = q;
	s->q_cap = cap;
	s->q_head = 0;
	return 0;
}

/* Appends a copy of r; a full queue loses its oldest request. */
static void queue_push(struct http_stream *s, const struct pending *r)
{
	if (s->q_len == s->q_cap && queue_grow(s) < 0) {
		if (!s->q_len) {
			s->st.lost++; /* no memory at all: this one is lost */
			return;
		}
		queue_pop(s);
		s->st.lost++;
	}
	pending_copy(queue_at(s, s->q_len), r);
	s->q_len++;
}

static void queue_drop_all(struct http_stream *s, bool count_lost)
{
	while (s->q_len) {
		if (count_lost && !queue_front(s)->hidden)
			s->st.lost++;
		queue_pop(s);
	}
}

/* ---- reporting -------------------------------------------------------------------------- */

static enum http_dir request_dir(const struct http_stream *s)
{
	return s->role == HTTP_ROLE_CLIENT ? HTTP_DIR_OUT : HTTP_DIR_IN;
}

static struct half *response_half(struct http_stream *s)
{
	return &s->half[request_dir(s) == HTTP_DIR_IN ? HTTP_DIR_OUT : HTTP_DIR_IN];
}

static void report(struct http_stream *s, const struct http_exchange *ex, http_exchange_fn fn,
		   void *ctx)
{
	s->st.exchanges++;
	if (fn)
		fn(ex, ctx);
}

/* Ends the response parsed by h: reports its exchange, or counts it lost. */
static void complete_response(struct http_stream *s, struct half *h, uint64_t end_ns,
			      http_exchange_fn fn, void *ctx)
{
	struct pending *p = queue_front(s);

	h->phase = PH_START;
	if (!h->matched) {
		s->st.lost++;
		return;
	}
	h->matched = false;
	if (!p || p->seq != h->match_seq)
		return; /* its request was pushed out of the queue, and counted then */
	if (p->hidden) {
		s->st.lost++;
		if (p->hidden_left)
			p->hidden_left--;
		return;
	}
	/* reported from its queue slot, which the pop only frees for reuse */
	p->ex.role = s->role;
	p->ex.status = h->status;
	p->ex.response_body_bytes = h->body;
	p->ex.response_end_ns = end_ns;
	report(s, &p->ex, fn, ctx);
	queue_pop(s);
	if (!s->q_len)
		s->responses_unseen = false; /* every request answered: in step again */
}

/* Placeholders that absorbed their share make way for the real requests behind them. */
static struct pending *pairing_front(struct http_stream *s)
{
	struct pending *p = queue_front(s);

	while (p && p->hidden && !p->hidden_left && s->q_len > 1) {
		queue_pop(s);
		p = queue_front(s);
	}
	return p;
}

/* The connection now carries another protocol. */
static void enter_tunnel(struct http_stream *s)
{
	s->tunnel = true;
	s->st.tunnel = true;
	s->half[0].phase = PH_TUNNEL;
	s->half[1].phase = PH_TUNNEL;
	queue_drop_all(s, true);
}

/* ---- message bodies --------------------------------------------------------------------- */

/* The request being received in direction h, if still waiting in the queue. */
static struct pending *current_request(struct http_stream *s, struct half *h)
{
	struct pending *p = queue_back(s);

	return p && p->seq == h->req_seq && !p->hidden ? p : NULL;
}

static void add_body(struct feed *f, uint64_t n)
{
	struct half *h = f->h;
	struct pending *p;

	if (h->body_fixed || !n)
		return;
	h->body += n;
	if (h->is_request && (p = current_request(f->s, h)))
		p->ex.request_body_bytes = h->body;
}

/* A message of direction h is complete at the current feed. */
static void message_done(struct feed *f)
{
	struct half *h = f->h;

	if (h->is_request)
		h->phase = PH_START;
	else
		complete_response(f->s, h, f->ts, f->fn, f->ctx);
}

static void lose_framing(struct feed *f, enum lost_kind kind)
{
	f->h->phase = PH_LOST;
	f->h->lost = kind;
	f->s->st.desyncs++;
	if (f->h == response_half(f->s) && f->s->q_len)
		f->s->responses_unseen = true;
}

/* Bytes of an unknown number of messages were not captured. */
static void hide_messages(struct feed *f)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;
	struct pending *p;

	lose_framing(f, LOST_HIDDEN);
	if (s->role == HTTP_ROLE_UNKNOWN)
		return;
	if (h->is_request) {
		p = queue_back(s);
		if (p && p->hidden) {
			p->hidden_left++;
			return;
		}
		pending_reset(&s->req);
		s->req.hidden = true;
		s->req.hidden_left = 1;
		s->req.seq = s->next_seq++;
		queue_push(s, &s->req);
		return;
	}
	/* at least one pending request was answered unseen */
	p = pairing_front(s);
	if (!p)
		return;
	s->st.lost++;
	if (!p->hidden)
		queue_pop(s);
	else if (p->hidden_left)
		p->hidden_left--;
}

/* ---- chunked bodies --------------------------------------------------------------------- */

static int chunk_size_byte(struct half *h, uint8_t c)
{
	int v = hex_value(c);

	if (v >= 0) {
		if (++h->chunk_digits > CHUNK_DIGITS_MAX)
			return -EBADMSG;
		h->remaining = h->remaining * 16 + (uint64_t)v;
		return 0;
	}
	if (!h->chunk_digits)
		return -EBADMSG;
	if (c == '\n')
		return 1;
	if (c == ';' || is_ows(c) || c == '\r') {
		h->phase = PH_CHUNK_EXT;
		h->chunk_ext_cr = c == '\r';
		h->line_len = 1;
		return 0;
	}
	return -EBADMSG;
}

/* Bytes after the size: extensions (skipped), bounded; a bare CR must precede LF. */
static int chunk_ext_byte(struct half *h, uint8_t c)
{
	if (c == '\n')
		return 1;
	if (h->chunk_ext_cr || ++h->line_len > HEAD_LINE_MAX)
		return -EBADMSG;
	h->chunk_ext_cr = c == '\r';
	return 0;
}

static void chunk_size_done(struct half *h)
{
	if (h->remaining) {
		h->phase = PH_CHUNK_DATA;
	} else {
		h->phase = PH_TRAILER;
		h->line_len = 0;
		h->head_len = 0;
	}
}

static void start_chunk_size(struct half *h)
{
	h->phase = PH_CHUNK_SIZE;
	h->remaining = 0;
	h->chunk_digits = 0;
}

/* Chunk-size lines and the CRLF after data; returns bytes used or -EBADMSG. */
static long chunk_lines(struct feed *f, const uint8_t *p, size_t n)
{
	struct half *h = f->h;
	size_t i;
	int r = 0;

	for (i = 0; i < n;) {
		uint8_t c = p[i++];

		if (h->phase == PH_CHUNK_DATA_END) {
			if (c == '\r' && !h->chunk_ext_cr) {
				h->chunk_ext_cr = true;
				continue;
			}
			if (c != '\n')
				return -EBADMSG;
			start_chunk_size(h);
			continue;
		}
		r = h->phase == PH_CHUNK_SIZE ? chunk_size_byte(h, c) : chunk_ext_byte(h, c);
		if (r < 0)
			return r;
		if (r == 1) {
			chunk_size_done(h);
			break;
		}
	}
	return (long)i;
}

/* Trailer lines up to the empty line that ends the message. */
static long trailer_bytes(struct feed *f, const uint8_t *p, size_t n)
{
	struct half *h = f->h;
	const uint8_t *lf = memchr(p, '\n', n);
	size_t span = lf ? (size_t)(lf - p) + 1 : n;

	for (size_t i = 0; i < span; i++)
		if (p[i] != '\r' && p[i] != '\n')
			h->line_len++;
	h->head_len += span;
	if (h->head_len > HEAD_MAX)
		return -EBADMSG;
	if (lf) {
		if (!h->line_len)
			message_done(f);
		h->line_len = 0;
	}
	return (long)span;
}

/* ---- heads ------------------------------------------------------------------------------ */

/* Keeps the first LINE_KEEP bytes of a line and a ring of its last LINE_TAIL bytes. */
static void line_append(struct half *h, const uint8_t *p, size_t n)
{
	if (h->line_len < LINE_KEEP) {
		size_t k = n < LINE_KEEP - h->line_len ? n : LINE_KEEP - h->line_len;

		memcpy(h->line + h->line_len, p, k);
		h->line_len += k;
		p += k;
		n -= k;
	}
	if (n > LINE_TAIL) {
		h->line_len += n - LINE_TAIL;
		p += n - LINE_TAIL;
		n = LINE_TAIL;
	}
	for (size_t i = 0; i < n; i++, h->line_len++)
		h->line[LINE_KEEP + (h->line_len - LINE_KEEP) % LINE_TAIL] = p[i];
}

/* The complete line, CR stripped; an over-long one reads as its kept start + its tail. */
struct line {
	const char *p;
	size_t n;
	size_t kept; /* bytes of p that are the line's real prefix */
};

static struct line line_view(struct half *h)
{
	struct line l = { (const char *)h->line, h->line_len, h->line_len };

	if (h->line_len > LINE_KEEP) {
		uint8_t tail[LINE_TAIL];
		size_t extra = h->line_len - LINE_KEEP;
		size_t t = extra < LINE_TAIL ? extra : LINE_TAIL;

		for (size_t i = 0; i < t; i++)
			tail[i] =
				h->line[LINE_KEEP + (h->line_len - t + i - LINE_KEEP) % LINE_TAIL];
		memcpy(h->line + LINE_KEEP, tail, t);
		l.n = LINE_KEEP + t;
		l.kept = LINE_KEEP;
	}
	if (l.n && l.p[l.n - 1] == '\r')
		l.n--;
	if (l.kept > l.n)
		l.kept = l.n;
	return l;
}

/* The exchange's method is name (both NUL-terminated); most differ at the first byte. */
static bool method_is(const char *method, const char *name)
{
	return method[0] == name[0] && strcmp(method, name) == 0;
}

/* A header value's host[:port], or an absolute-form authority. */
static void set_host(struct pending *r, const char *v, size_t n)
{
	const char *colon = NULL;
	uint64_t port = 0;
	size_t i;

	if (n && v[0] == '[') {
		const char *end = memchr(v, ']', n);

		if (!end)
			return;
		i = (size_t)(end - v);
		copy_lower(r->ex.host, sizeof(r->ex.host), v + 1, i - 1);
		if (i + 1 < n && v[i + 1] == ':')
			colon = v + i + 1;
	} else {
		colon = memchr(v, ':', n);
		i = colon ? (size_t)(colon - v) : n;
		copy_lower(r->ex.host, sizeof(r->ex.host), v, i);
	}
	r->ex.host_port = 0;
	if (colon && parse_decimal(colon + 1, (size_t)(v + n - colon - 1), 65535, &port) == 0)
		r->ex.host_port = (uint16_t)port;
}

/* Path of an origin-form target: up to '?' or '#', truncated. */
static void set_path(struct pending *r, const char *t, size_t n)
{
	size_t i;

	for (i = 0; i < n && t[i] != '?' && t[i] != '#'; i++)
		;
	if (i == 0) {
		copy_str(r->ex.path, sizeof(r->ex.path), "/", 1);
		return;
	}
	copy_str(r->ex.path, sizeof(r->ex.path), t, i);
}

static int set_target(struct half *h, struct pending *r, const char *t, size_t n)
{
	size_t skip, a;

	if (n == 0 || target_has_ctl(t, n))
		return -EBADMSG;
	if (method_is(r->ex.method, "CONNECT")) {
		set_host(r, t, n);
		h->host_from_target = true;
		return 0;
	}
	if (t[0] == '/') {
		set_path(r, t, n);
		return 0;
	}
	if (n == 1 && t[0] == '*') {
		copy_str(r->ex.path, sizeof(r->ex.path), "*", 1);
		return 0;
	}
	if (starts_nocase(t, n, "http://"))
		skip = 7;
	else if (starts_nocase(t, n, "https://"))
		skip = 8;
	else
		return -EBADMSG;
	t += skip;
	n -= skip;
	for (a = 0; a < n && t[a] != '/' && t[a] != '?' && t[a] != '#'; a++)
		;
	for (size_t i = a; i > 0; i--) {
		if (t[i - 1] == '@') { /* userinfo never leaves the decoder */
			t += i;
			n -= i;
			a -= i;
			break;
		}
	}
	set_host(r, t, a);
	h->host_from_target = true;
	set_path(r, t + a, n - a);
	return 0;
}

static void set_method(struct pending *r, const char *m, size_t n)
{
	for (size_t i = 0; i < sizeof(known_methods) / sizeof(known_methods[0]); i++) {
		if (known_methods[i].len == n && memcmp(known_methods[i].name, m, n) == 0) {
			copy_str(r->ex.method, sizeof(r->ex.method), m, n);
			return;
		}
	}
	copy_str(r->ex.method, sizeof(r->ex.method), "_OTHER", 6);
}

static bool is_http1_version(const char *v, size_t n)
{
	return n == 8 && memcmp(v, "HTTP/1.", 7) == 0 && is_digit(v[7]);
}

/*
 * "METHOD target HTTP/1.x". With a cut line (partial) the version is missing and the
 * target is what was captured.
 */
static int parse_request_line(struct half *h, struct pending *r, const struct line *l, bool partial)
{
	const char *sp1 = memchr(l->p, ' ', l->kept);
	const char *sp2 = NULL;
	size_t tn;

	if (!sp1)
		return -EBADMSG;
	set_method(r, l->p, (size_t)(sp1 - l->p));
	if (partial) {
		sp2 = memchr(sp1 + 1, ' ', (size_t)(l->p + l->kept - sp1 - 1));
	} else {
		/* the last space after the target, followed by exactly "HTTP/1.x" (no space) */
		if (l->n < (size_t)(sp1 - l->p) + 10)
			return -EBADMSG;
		sp2 = l->p + l->n - 9;
		if (*sp2 != ' ' || !is_http1_version(sp2 + 1, 8))
			return -EBADMSG;
	}
	/* the target's start is in the kept prefix; its end may not be */
	tn = (sp2 && (size_t)(sp2 - l->p) <= l->kept ? (size_t)(sp2 - l->p) : l->kept) -
	     (size_t)(sp1 - l->p) - 1;
	return set_target(h, r, sp1 + 1, tn);
}

/* "HTTP/1.x NNN reason"; a cut line needs at least the status code. */
static int parse_status_line(struct half *h, const struct line *l, bool partial)
{
	uint64_t code;

	if (l->n < 12 || !is_http1_version(l->p, 8) || l->p[8] != ' ')
		return -EBADMSG;
	if (parse_decimal(l->p + 9, 3, 999, &code) < 0 || code < 100)
		return -EBADMSG;
	if (!partial && l->n > 12 && l->p[12] != ' ')
		return -EBADMSG;
	h->status = (uint16_t)code;
	return 0;
}

static int header_content_length(struct half *h, const char *v, size_t n)
{
	uint64_t len;

	if (parse_decimal(v, n, UINT64_MAX / 2, &len) < 0)
		return -EBADMSG;
	if (h->fr.has_length && h->fr.content_length != len)
		return -EBADMSG;
	h->fr.has_length = true;
	h->fr.content_length = len;
	return 0;
}

/* Only the last coding matters for framing: "gzip, chunked" is chunked. */
static void header_transfer_encoding(struct half *h, const char *v, size_t n)
{
	const char *last = v;

	for (size_t i = 0; i < n; i++)
		if (v[i] == ',')
			last = v + i + 1;
	n -= (size_t)(last - v);
	trim_ows(&last, &n);
	h->fr.chunked = equals_nocase(last, n, "chunked");
	h->fr.other_coding = !h->fr.chunked;
}

/*
 * Appends the list members of one tracestate header (a request may split the list over
 * several). What does not fit is cut at a member boundary: a member is whole or absent.
 */
static __attribute__((noinline, cold)) void append_tracestate(char *dst, size_t cap, const char *v,
							      size_t n)
{
	size_t used = strlen(dst), i = 0;

	while (i < n) {
		const char *m = v + i;
		size_t mn = 0;

		while (i + mn < n && v[i + mn] != ',')
			mn++;
		i += mn + 1;
		trim_ows(&m, &mn);
		if (!mn)
			continue;
		if (used + (used ? 1 : 0) + mn >= cap)
			return; /* later members are dropped, not cut */
		if (used)
			dst[used++] = ',';
		memcpy(dst + used, m, mn);
		used += mn;
		dst[used] = '\0';
	}
}

/* The headers the decoder reads; the length picks the one candidate worth comparing. */
enum header {
	HDR_OTHER,
	HDR_CONTENT_LENGTH,
	HDR_TRANSFER_ENCODING,
	HDR_HOST,
	HDR_TRACEPARENT,
	HDR_TRACESTATE,
};

static enum header header_of(const char *name, size_t n)
{
	switch (n) {
	case 4:
		return token_equals(name, "host", n) ? HDR_HOST : HDR_OTHER;
	case 10: /* also "Connection", on most messages: one byte tells them apart */
		return (name[0] | 0x20) == 't' && token_equals(name, "tracestate", n) ?
			       HDR_TRACESTATE :
			       HDR_OTHER;
	case 11:
		return token_equals(name, "traceparent", n) ? HDR_TRACEPARENT : HDR_OTHER;
	case 14:
		return token_equals(name, "content-length", n) ? HDR_CONTENT_LENGTH : HDR_OTHER;
	case 17:
		return token_equals(name, "transfer-encoding", n) ? HDR_TRANSFER_ENCODING :
								    HDR_OTHER;
	default:
		return HDR_OTHER;
	}
}

/*
 * "name: value". The name is tchar up to the first ':' within the kept prefix (a line
 * starting with OWS, an obs-fold, has no such name); every value is checked for
 * control bytes, only the values of the headers above are read.
 */
static int parse_header_line(struct half *h, struct pending *r, const struct line *l)
{
	size_t nn = tchar_span(l->p, l->kept), vn;
	const char *v;

	if (nn == 0 || nn == l->kept || l->p[nn] != ':')
		return -EBADMSG;
	v = l->p + nn + 1;
	vn = l->n - nn - 1;
	if (value_has_ctl(v, vn))
		return -EBADMSG;
	switch (header_of(l->p, nn)) {
	case HDR_CONTENT_LENGTH:
		if (l->kept < l->n)
			return -EBADMSG;
		trim_ows(&v, &vn);
		return header_content_length(h, v, vn);
	case HDR_TRANSFER_ENCODING:
		if (l->kept < l->n)
			return -EBADMSG;
		trim_ows(&v, &vn);
		header_transfer_encoding(h, v, vn);
		return 0;
	case HDR_HOST:
		if (h->is_request && !h->host_from_target) {
			trim_ows(&v, &vn);
			set_host(r, v, vn);
		}
		return 0;
	case HDR_TRACEPARENT:
		trim_ows(&v, &vn);
		/* A later version keeps its 00-compatible prefix: what tracectx reads. */
		if (h->is_request && !r->ex.traceparent[0] && ps_traceparent_valid(v, vn))
			copy_str(r->ex.traceparent, sizeof(r->ex.traceparent), v, HTTP_TRACEPARENT_LEN);
		return 0;
	case HDR_TRACESTATE:
		if (!h->is_request)
			return 0;
		if (l->kept < l->n) {
			/* over-long: only the kept prefix's whole members */
			const char *end = l->p + l->kept;

			while (end > v && end[-1] != ',')
				end--;
			vn = end > v ? (size_t)(end - v) : 0;
		}
		append_tracestate(r->ex.tracestate, sizeof(r->ex.tracestate), v, vn);
		return 0;
	case HDR_OTHER:
		break;
	}
	return 0;
}

static void begin_message(struct feed *f)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;

	h->phase = PH_HEAD;
	h->confirmed = false;
	h->body_fixed = false;
	h->host_from_target = false;
	h->status = 0;
	h->body = 0;
	h->remaining = 0;
	memset(&h->fr, 0, sizeof(h->fr));
	h->line_len = 0;
	h->line_no = 0;
	h->head_len = 0;
	h->start_ns = f->ts;
	h->last_ns = f->ts;
	if (s->role != HTTP_ROLE_UNKNOWN)
		h->is_request = f->dir == request_dir(s);
}

/*
 * The first bytes of a message (line: the start line so far) decide, or must agree
 * with, the stream's role.
 */
static int confirm_start(struct feed *f, const uint8_t *line, size_t len)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;
	size_t n = len < CLASSIFY_BYTES ? len : CLASSIFY_BYTES;
	bool any = s->role == HTTP_ROLE_UNKNOWN;
	enum classify rq = any || h->is_request ? classify_request(line, n) : CL_NO;
	enum classify rs = any || !h->is_request ? classify_response(line, n) : CL_NO;
	bool is_request;

	if (rq == CL_NO && rs == CL_NO)
		return -EBADMSG;
	if (rq != CL_YES && rs != CL_YES)
		return 0;
	is_request = rq == CL_YES;
	if (s->role == HTTP_ROLE_UNKNOWN) {
		s->role =
			is_request == (f->dir == HTTP_DIR_IN) ? HTTP_ROLE_SERVER : HTTP_ROLE_CLIENT;
		s->st.role = s->role;
		s->half[request_dir(s)].is_request = true;
		response_half(s)->is_request = false;
	}
	h->confirmed = true;
	return 0;
}

static void queue_request(struct feed *f)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;

	/* tracestate means nothing without a valid traceparent (W3C: discard it). */
	if (!s->req.ex.traceparent[0])
		s->req.ex.tracestate[0] = '\0';
	s->req.seq = s->next_seq++;
	s->req.ex.request_start_ns = h->start_ns;
	s->req.ex.request_body_bytes = h->body;
	h->req_seq = s->req.seq;
	queue_push(s, &s->req);
}

static void request_head_done(struct feed *f)
{
	struct half *h = f->h;

	queue_request(f);
	if (h->fr.chunked) {
		start_chunk_size(h);
	} else if (h->fr.has_length && h->fr.content_length) {
		h->phase = PH_BODY_LENGTH;
		h->remaining = h->fr.content_length;
	} else {
		h->phase = PH_START; /* requests without a length have no body */
	}
}

/* The request a response answers: the oldest pending one. */
static const char *match_request(struct http_stream *s, struct half *h)
{
	struct pending *p = pairing_front(s);

	h->matched = p != NULL;
	if (!p)
		return "";
	h->match_seq = p->seq;
	return p->hidden ? "" : p->ex.method;
}

static void response_head_done(struct feed *f)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;
	const char *method = match_request(s, h);
	uint16_t st = h->status;

	if (st < 200 && st != 101) {
		h->matched = false; /* interim: the final response follows */
		h->phase = PH_START;
		return;
	}
	if (st == 101 || (method_is(method, "CONNECT") && st < 300)) {
		complete_response(s, h, f->ts, f->fn, f->ctx);
		enter_tunnel(s);
		return;
	}
	if (method_is(method, "HEAD") || st == 204 || st == 304) {
		complete_response(s, h, f->ts, f->fn, f->ctx);
	} else if (h->fr.chunked) {
		start_chunk_size(h);
	} else if (h->fr.has_length && !h->fr.other_coding) {
		h->remaining = h->fr.content_length;
		if (h->remaining)
			h->phase = PH_BODY_LENGTH;
		else
			complete_response(s, h, f->ts, f->fn, f->ctx);
	} else {
		h->phase = PH_BODY_CLOSE;
	}
}

/* A complete head line: the start line, a header line, or the empty line that ends it. */
static int head_line_done(struct feed *f, const struct line *l)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;
	int err;

	if (h->line_no++ == 0) {
		if (!h->confirmed)
			return -EBADMSG;
		if (h->is_request) {
			pending_reset(&s->req);
			err = parse_request_line(h, &s->req, l, false);
		} else {
			err = parse_status_line(h, l, false);
		}
		if (err)
			return err;
		h->started = true;
		return 0;
	}
	if (l->n)
		return parse_header_line(h, &s->req, l);
	if (h->is_request && h->fr.other_coding)
		return -EBADMSG; /* a request body whose end cannot be found */
	if (h->is_request)
		request_head_done(f);
	else
		response_head_done(f);
	return 0;
}

/*
 * A head line that starts and ends within this feed and fits the line buffer is
 * parsed where it lies: it reads exactly as line_view would show it after a copy.
 */
static long whole_line(struct feed *f, const uint8_t *p, size_t span)
{
	struct half *h = f->h;
	struct line l = { (const char *)p, span, span };
	int err;

	h->head_len += span + 1;
	if (h->head_len > HEAD_MAX)
		return -EBADMSG;
	if (!h->confirmed && h->line_no == 0) {
		err = confirm_start(f, p, span);
		if (err)
			return err;
	}
	if (l.n && l.p[l.n - 1] == '\r')
		l.n--;
	l.kept = l.n;
	if (h->line_no && l.n) { /* a header line, most of them */
		h->line_no++;
		err = parse_header_line(h, &f->s->req, &l);
	} else {
		err = head_line_done(f, &l);
	}
	return err ? err : (long)span + 1;
}

/*
 * A head line, or the part of one this feed has, through the line buffer: lines that
 * span feeds, and over-long ones. lf: the line's end in p[0, n), or NULL.
 */
static long buffered_line(struct feed *f, const uint8_t *p, size_t n, const uint8_t *lf)
{
	struct half *h = f->h;
	size_t span = lf ? (size_t)(lf - p) : n;
	struct line l;
	int err;

	line_append(h, p, span);
	h->head_len += span + (lf != NULL);
	if (h->line_len > HEAD_LINE_MAX || h->head_len > HEAD_MAX)
		return -EBADMSG;
	if (!h->confirmed && h->line_no == 0) {
		err = confirm_start(f, h->line, h->line_len);
		if (err)
			return err;
	}
	if (!lf)
		return (long)n;
	l = line_view(h);
	err = head_line_done(f, &l);
	h->line_len = 0;
	return err ? err : (long)span + 1;
}

/* Head bytes: whole lines where they lie while the head goes on. Bytes used or -EBADMSG. */
static long head_bytes(struct feed *f, const uint8_t *p, size_t n)
{
	struct half *h = f->h;
	size_t used = 0;
	const uint8_t *lf;
	long r;

	for (;;) {
		lf = memchr(p + used, '\n', n - used);
		if (!lf || h->line_len || (size_t)(lf - p) - used > LINE_KEEP)
			break;
		r = whole_line(f, p + used, (size_t)(lf - p) - used);
		if (r < 0)
			return r;
		used += (size_t)r;
		if (h->phase != PH_HEAD || used == n)
			return (long)used;
	}
	r = buffered_line(f, p + used, n - used, lf);
	return r < 0 ? r : (long)used + r;
}

/* ---- one feed --------------------------------------------------------------------------- */

/* Between messages: CRLF some clients send after a body is skipped. */
static long start_bytes(struct feed *f, const uint8_t *p, size_t n)
{
	size_t i = 0;

	if (f->h->started)
		while (i < n && (p[i] == '\r' || p[i] == '\n'))
			i++;
	if (i < n)
		begin_message(f);
	return (long)i;
}

static long length_bytes(struct feed *f, size_t n)
{
	struct half *h = f->h;
	uint64_t take = n < h->remaining ? n : h->remaining;

	add_body(f, take);
	h->remaining -= take;
	if (!h->remaining) {
		if (h->phase == PH_CHUNK_DATA) {
			h->phase = PH_CHUNK_DATA_END;
			h->chunk_ext_cr = false;
		} else {
			message_done(f);
		}
	}
	return (long)take;
}

static long step(struct feed *f, const uint8_t *p, size_t n)
{
	switch (f->h->phase) {
	case PH_START:
		return start_bytes(f, p, n);
	case PH_HEAD:
		return head_bytes(f, p, n);
	case PH_BODY_LENGTH:
	case PH_CHUNK_DATA:
		return length_bytes(f, n);
	case PH_CHUNK_SIZE:
	case PH_CHUNK_EXT:
	case PH_CHUNK_DATA_END:
		return chunk_lines(f, p, n);
	case PH_TRAILER:
		return trailer_bytes(f, p, n);
	case PH_BODY_CLOSE:
		add_body(f, n);
		return (long)n;
	case PH_LOST:	/* handled by feed_while_lost, never within a feed */
	case PH_TUNNEL: /* the feed stops when the tunnel opens */
		break;
	}
	return (long)n;
}

/* A cut head's body size: its Content-Length if seen, else counted from later feeds. */
static void fix_body_to_length(struct half *h)
{
	if (h->fr.has_length && !h->fr.chunked) {
		h->body = h->fr.content_length;
		h->body_fixed = true;
	}
}

/* A head whose end was not captured: keep what it told, lose the framing. */
static void cut_head(struct feed *f)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;
	const char *method;

	if (!h->confirmed) {
		hide_messages(f);
		return;
	}
	if (h->line_no == 0) {
		struct line l = line_view(h);
		int err;

		if (h->is_request) {
			pending_reset(&s->req);
			err = parse_request_line(h, &s->req, &l, true);
		} else {
			err = parse_status_line(h, &l, true);
		}
		if (err) {
			hide_messages(f);
			return;
		}
		h->started = true;
	}
	if (h->is_request) {
		fix_body_to_length(h);
		lose_framing(f, LOST_MSG);
		queue_request(f);
		return;
	}
	method = match_request(s, h);
	if (h->status == 101 || (method_is(method, "CONNECT") && h->status / 100 == 2)) {
		complete_response(s, h, f->ts, f->fn, f->ctx);
		enter_tunnel(s);
		return;
	}
	if (h->status < 200) {
		h->matched = false; /* interim; what follows in the gap is unknown */
		lose_framing(f, LOST_HIDDEN);
		return;
	}
	if (method_is(method, "HEAD") || h->status == 204 || h->status == 304) {
		/* no body: the gap is the rest of the head */
		complete_response(s, h, f->ts, f->fn, f->ctx);
		lose_framing(f, LOST_HIDDEN);
		return;
	}
	fix_body_to_length(h);
	lose_framing(f, LOST_MSG);
}

/* The uncaptured rest of a feed: skipped by count where framing allows it. */
static void skip_uncaptured(struct feed *f, uint64_t gap)
{
	struct half *h = f->h;

	while (gap) {
		switch (h->phase) {
		case PH_BODY_LENGTH:
		case PH_CHUNK_DATA:
			gap -= (uint64_t)length_bytes(f, gap < h->remaining ? gap : h->remaining);
			continue;
		case PH_START:
			hide_messages(f);
			return;
		case PH_HEAD:
			cut_head(f);
			return;
		case PH_CHUNK_SIZE:
		case PH_CHUNK_EXT:
		case PH_CHUNK_DATA_END:
		case PH_TRAILER:
			lose_framing(f, LOST_MSG);
			add_body(f, gap);
			return;
		case PH_BODY_CLOSE:
			add_body(f, gap);
			return;
		case PH_LOST:
		case PH_TUNNEL:
			return;
		}
	}
}

/* Does this feed start a message of the kind direction h carries? */
static enum classify feed_starts_message(struct http_stream *s, struct half *h, const uint8_t *data,
					 size_t len)
{
	enum classify rq, rs;

	if (s->role != HTTP_ROLE_UNKNOWN)
		return h->is_request ? classify_request(data, len) : classify_response(data, len);
	rq = classify_request(data, len);
	rs = classify_response(data, len);
	return rq > rs ? rq : rs;
}

/*
 * A direction that lost framing resyncs at a feed that starts a message of its kind
 * (the open response ends with the bytes seen before). Other feeds are body of the
 * open message, ignored while hidden messages run, or, after a malformed head, proof
 * that this is not HTTP. Returns 1 when the feed is used up, 0 to parse it, -EPROTO.
 */
static int feed_while_lost(struct feed *f, enum classify c, size_t len, size_t total)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;

	if (c == CL_YES || (c == CL_MAYBE && len == total && h->lost != LOST_MSG)) {
		if (h->lost == LOST_MSG && !h->is_request)
			complete_response(s, h, h->last_ns, f->fn, f->ctx);
		h->phase = PH_START;
		return 0;
	}
	if (h->lost == LOST_NONE && len) {
		s->not_http = true;
		s->st.not_http = true;
		return -EPROTO;
	}
	if (h->lost == LOST_MSG) {
		add_body(f, total);
		h->last_ns = f->ts;
	}
	return 1;
}

static bool in_body(const struct half *h)
{
	switch (h->phase) {
	case PH_BODY_LENGTH:
	case PH_CHUNK_SIZE:
	case PH_CHUNK_EXT:
	case PH_CHUNK_DATA:
	case PH_CHUNK_DATA_END:
	case PH_TRAILER:
		return true;
	default:
		return false;
	}
}

/*
 * A response still expecting body bytes while a feed starts with a status line: the
 * body went by a syscall that is not traced (sendfile). Certain where chunk lines were
 * due; inside data only when a later request already waits for its answer. The feed's
 * first bytes are looked at only when that question arises.
 */
static void end_unseen_body(struct feed *f, const uint8_t *data, size_t len)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;
	bool later_waiting = s->q_len > 1 && queue_front(s)->seq == h->match_seq;

	if (h->is_request || !h->matched || !in_body(h))
		return;
	if (!later_waiting && (h->phase == PH_BODY_LENGTH || h->phase == PH_CHUNK_DATA))
		return;
	if (feed_starts_message(s, h, data, len) != CL_YES)
		return;
	s->st.desyncs++;
	complete_response(s, h, h->last_ns, f->fn, f->ctx);
}

/* A malformed message: fatal in a direction's first message, a resync point otherwise. */
static int message_error(struct feed *f)
{
	struct http_stream *s = f->s;
	struct half *h = f->h;

	if (!h->started) {
		s->not_http = true;
		s->st.not_http = true;
		return -EPROTO;
	}
	s->st.parse_errors++;
	/* a broken body leaves its message open; a broken head leaves nothing */
	h->lost = h->phase == PH_HEAD ? LOST_NONE : LOST_MSG;
	h->phase = PH_LOST;
	return 0;
}

int http_stream_feed(struct http_stream *s, enum http_dir dir, const uint8_t *data, size_t len,
		     size_t total, uint64_t ts_ns, http_exchange_fn fn, void *ctx)
{
	struct feed f = { s, NULL, dir, ts_ns, fn, ctx };
	size_t pos = 0;
	int err;

	if (!s || (dir != HTTP_DIR_IN && dir != HTTP_DIR_OUT))
		return -EINVAL;
	if (s->not_http)
		return -EPROTO;
	if (s->closed || s->tunnel)
		return 0;
	if (!data)
		len = 0;
	if (total < len)
		total = len;
	if (!total)
		return 0;
	f.h = &s->half[dir];
	if (f.h->phase == PH_LOST) {
		err = feed_while_lost(&f, feed_starts_message(s, f.h, data, len), len, total);
		if (err)
			return err < 0 ? err : 0;
	} else {
		end_unseen_body(&f, data, len);
	}
	f.h->last_ns = ts_ns;
	while (pos < len) {
		long r = step(&f, data + pos, len - pos);

		if (r < 0)
			return message_error(&f);
		pos += (size_t)r;
		if (s->tunnel)
			return 0;
	}
	if (total > len)
		skip_uncaptured(&f, total - len);
	return 0;
}

/* ---- stream lifetime -------------------------------------------------------------------- */

struct http_stream *http_stream_new(void)
{
	struct http_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	return s;
}

void http_stream_free(struct http_stream *s)
{
	if (!s)
		return;
	free(s->q);
	free(s);
}

static bool response_open(const struct half *h)
{
	return in_body(h) || h->phase == PH_BODY_CLOSE ||
	       (h->phase == PH_LOST && h->lost == LOST_MSG);
}

void http_stream_close(struct http_stream *s, uint64_t ts_ns, http_exchange_fn fn, void *ctx)
{
	struct half *h;

	if (!s || s->closed)
		return;
	s->closed = true;
	if (s->not_http || s->tunnel || s->role == HTTP_ROLE_UNKNOWN) {
		queue_drop_all(s, false);
		return;
	}
	h = response_half(s);
	if (response_open(h))
		complete_response(s, h, h->last_ns, fn, ctx);
	while (s->q_len) {
		struct pending *p = queue_front(s);
		struct http_exchange ex = p->ex;
		bool hidden = p->hidden;

		queue_pop(s);
		if (hidden)
			continue;
		if (s->responses_unseen) {
			s->st.lost++; /* answered or not: nobody can tell */
			continue;
		}
		ex.role = s->role;
		ex.status = 0;
		ex.response_body_bytes = 0;
		ex.response_end_ns = ts_ns;
		s->st.unanswered++;
		report(s, &ex, fn, ctx);
	}
}

void http_stream_get_stats(const struct http_stream *s, struct http_stream_stats *st)
{
	if (s && st)
		*st = s->st;
}

uint64_t http_stream_lost(const struct http_stream *s)
{
	return s ? s->st.lost : 0;
}

/* ---- routes ----------------------------------------------------------------------------- */

struct seg {
	const char *p;
	size_t n;
};

/* Next '/'-separated segment of path[*pos, end); false at the end. */
static bool next_segment(const char *path, size_t end, size_t *pos, struct seg *sg)
{
	size_t i = *pos;

	if (i > end)
		return false;
	sg->p = path + i;
	while (i < end && path[i] != '/')
		i++;
	sg->n = (size_t)(path + i - sg->p);
	*pos = i + 1;
	return true;
}

static bool is_placeholder(struct seg t)
{
	return t.n >= 3 && t.p[0] == '{' && t.p[t.n - 1] == '}';
}

static size_t path_end(const char *path)
{
	return strcspn(path, "?#");
}

static bool template_matches(const char *tmpl, const char *path, size_t plen)
{
	size_t tlen = path_end(tmpl), tp = 1, pp = 1;
	struct seg ts, ps;

	if (!tlen || tmpl[0] != '/' || !plen || path[0] != '/')
		return false;
	for (;;) {
		bool more_t = next_segment(tmpl, tlen, &tp, &ts);
		bool more_p = next_segment(path, plen, &pp, &ps);

		if (!more_t || !more_p)
			return more_t == more_p;
		if (is_placeholder(ts)) {
			if (!ps.n)
				return false;
		} else if (ts.n != ps.n || memcmp(ts.p, ps.p, ts.n) != 0) {
			return false;
		}
	}
}

static bool all_digits(struct seg s)
{
	for (size_t i = 0; i < s.n; i++)
		if (!is_digit(s.p[i]))
			return false;
	return s.n > 0;
}

static bool all_hex(struct seg s)
{
	for (size_t i = 0; i < s.n; i++)
		if (hex_value((unsigned char)s.p[i]) < 0)
			return false;
	return true;
}

static bool is_uuid(struct seg s)
{
	if (s.n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s.p[i] != '-' : hex_value((unsigned char)s.p[i]) < 0)
			return false;
	}
	return true;
}

static bool is_upper(char c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_alnum(char c)
{
	return is_upper(c) || is_lower(c) || is_digit(c);
}

static bool is_vowel(char c)
{
	return c && strchr("aeiouyAEIOUY", c) != NULL;
}

/* v2, v10, v1beta1, V3alpha: API versions are routes, not ids. */
static bool is_version(struct seg w)
{
	size_t i = 1;

	if (w.n < 2 || (w.p[0] != 'v' && w.p[0] != 'V') || !is_digit(w.p[1]))
		return false;
	while (i < w.n && is_digit(w.p[i]))
		i++;
	while (i < w.n && is_lower(w.p[i]))
		i++;
	while (i < w.n && is_digit(w.p[i]))
		i++;
	return i == w.n && w.n <= 12;
}

static size_t longest_consonant_run(struct seg w)
{
	size_t run = 0, best = 0;

	for (size_t i = 0; i < w.n; i++) {
		run = is_vowel(w.p[i]) ? 0 : run + 1;
		if (run > best)
			best = run;
	}
	return best;
}

/*
 * One alphanumeric word of a segment (between -, _, ., ~ and the like) that
 * reads like a key, a token or a hash rather than a name: digits mixed with
 * letters (SECRET789abc, 3f2a9c1, a1b2; not oauth2 or utf8), a number, hex,
 * a base64-like mix of cases, more letters than any word has, or letters no
 * language strings together (xqzkvbtw).
 */
static bool is_token_word(struct seg w)
{
	size_t digits = 0, upper = 0, lower = 0;

	for (size_t i = 0; i < w.n; i++) {
		digits += is_digit(w.p[i]);
		upper += is_upper(w.p[i]);
		lower += is_lower(w.p[i]);
	}
	if (!w.n || is_version(w))
		return false;
	if (digits == w.n)
		return true;
	if (digits && (digits >= 2 || w.n >= 8))
		return true;
	if (w.n >= 12 && all_hex(w))
		return true;
	if (w.n >= 12 && upper >= 3 && lower >= 3 && upper * 3 >= w.n)
		return true;
	if (w.n >= HTTP_ROUTE_WORD_MAX)
		return true;
	return !digits && w.n >= 6 && longest_consonant_run(w) >= 5;
}

/*
 * Segments that become {id}: numbers, UUIDs, anything with an @ (emails,
 * also percent-encoded), segments longer than HTTP_ROUTE_SEGMENT_MAX, and
 * segments with a token-like word. Versions (v2) and plain words and slugs
 * (blog, my-first-post, 2fa, oauth2) stay.
 */
static bool is_id_segment(struct seg s)
{
	struct seg w;

	if (all_digits(s) || is_uuid(s) || s.n > HTTP_ROUTE_SEGMENT_MAX)
		return true;
	if (memchr(s.p, '@', s.n))
		return true;
	for (size_t i = 0; i + 2 < s.n; i++)
		if (s.p[i] == '%' && s.p[i + 1] == '4' && s.p[i + 2] == '0')
			return true;
	if (is_version(s))
		return false;
	for (size_t i = 0; i < s.n;) {
		/* A percent escape is a separator: its hex digits are not part of a word. */
		if (s.p[i] == '%' && i + 2 < s.n) {
			i += 3;
			continue;
		}
		if (!is_alnum(s.p[i])) {
			i++;
			continue;
		}
		w.p = s.p + i;
		while (i < s.n && is_alnum(s.p[i]))
			i++;
		w.n = (size_t)(s.p + i - w.p);
		if (is_token_word(w))
			return true;
	}
	return false;
}

/* Appends to out, truncating; *used never passes len - 1. */
static void out_append(char *out, size_t len, size_t *used, const char *p, size_t n)
{
	size_t room = len - 1 - *used;

	if (n > room)
		n = room;
	memcpy(out + *used, p, n);
	*used += n;
	out[*used] = '\0';
}

void http_route(const char *path, const char *const *routes, size_t n, char *out, size_t len)
{
	size_t plen, used = 0, pos = 1;
	struct seg sg;

	if (!out || !len)
		return;
	out[0] = '\0';
	plen = path ? path_end(path) : 0;
	if (!plen || path[0] != '/') {
		out_append(out, len, &used, plen == 1 && path[0] == '*' ? "*" : "/", 1);
		return;
	}
	for (size_t i = 0; routes && i < n; i++) {
		if (routes[i] && template_matches(routes[i], path, plen)) {
			out_append(out, len, &used, routes[i], path_end(routes[i]));
			return;
		}
	}
	while (next_segment(path, plen, &pos, &sg)) {
		out_append(out, len, &used, "/", 1);
		if (is_id_segment(sg))
			out_append(out, len, &used, "{id}", 4);
		else
			out_append(out, len, &used, sg.p, sg.n);
	}
}

/* ---- distinct routes per service ------------------------------------------------------ */

struct route_entry {
	struct route_entry *hnext;	   /* hash chain */
	struct route_entry *newer, *older; /* the service's recency list */
	struct route_service *svc;
	uint64_t last_ns;
	char key[]; /* service '\0' route '\0' */
};

struct route_service {
	struct route_service *hnext;
	struct route_entry *newest, *oldest;
	size_t n;
	char name[];
};

#define ROUTE_HASH	   4096 /* a power of two */
#define ROUTE_SERVICES_MAX 1024 /* beyond, new services fold every route */

struct http_route_limit {
	size_t max_per_service;
	uint64_t idle_ns;
	struct route_entry *entries[ROUTE_HASH];
	struct route_service *services[ROUTE_HASH];
	size_t n_services;
	uint64_t folded;
};

static uint64_t fnv(const char *a, const char *b)
{
	uint64_t h = 14695981039346656037ull;

	for (; *a; a++)
		h = (h ^ (uint8_t)*a) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (; b && *b; b++)
		h = (h ^ (uint8_t)*b) * 1099511628211ull;
	return h ^ h >> 29;
}

struct http_route_limit *http_route_limit_new(size_t max_per_service, uint64_t idle_ns)
{
	struct http_route_limit *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->max_per_service = max_per_service;
	l->idle_ns = idle_ns;
	return l;
}

void http_route_limit_free(struct http_route_limit *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < ROUTE_HASH; i++) {
		for (struct route_entry *e = l->entries[i], *next; e; e = next) {
			next = e->hnext;
			free(e);
		}
		for (struct route_service *v = l->services[i], *next; v; v = next) {
			next = v->hnext;
			free(v);
		}
	}
	free(l);
}

static struct route_service *service_get(struct http_route_limit *l, const char *name)
{
	struct route_service **slot = &l->services[fnv(name, NULL) & (ROUTE_HASH - 1)], *v;
	size_t len = strlen(name);

	for (v = *slot; v; v = v->hnext)
		if (strcmp(v->name, name) == 0)
			return v;
	if (l->n_services >= ROUTE_SERVICES_MAX || !(v = calloc(1, sizeof(*v) + len + 1)))
		return NULL;
	memcpy(v->name, name, len + 1);
	v->hnext = *slot;
	*slot = v;
	l->n_services++;
	return v;
}

static void entry_unlink_recency(struct route_entry *e)
{
	struct route_service *v = e->svc;

	if (e->newer)
		e->newer->older = e->older;
	else
		v->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		v->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void entry_push_newest(struct route_entry *e)
{
	struct route_service *v = e->svc;

	e->older = v->newest;
	e->newer = NULL;
	if (v->newest)
		v->newest->newer = e;
	v->newest = e;
	if (!v->oldest)
		v->oldest = e;
}

static void entry_remove(struct http_route_limit *l, struct route_entry *e)
{
	const char *route = e->key + strlen(e->key) + 1;
	struct route_entry **pp = &l->entries[fnv(e->key, route) & (ROUTE_HASH - 1)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	entry_unlink_recency(e);
	e->svc->n--;
	free(e);
}

static void fold(struct http_route_limit *l, char *route, size_t len)
{
	size_t used = 0;

	l->folded++;
	route[0] = '\0';
	out_append(route, len, &used, HTTP_ROUTE_OVERFLOW, strlen(HTTP_ROUTE_OVERFLOW));
}

bool http_route_limit_apply(struct http_route_limit *l, const char *service, char *route,
			    size_t len, uint64_t now_ns)
{
	size_t slen, rlen;
	struct route_entry **slot, *e;
	struct route_service *v;

	if (!l || !service || !route || !len)
		return false;
	slot = &l->entries[fnv(service, route) & (ROUTE_HASH - 1)];
	slen = strlen(service);
	for (e = *slot; e; e = e->hnext) {
		if (strcmp(e->key, service) == 0 && strcmp(e->key + slen + 1, route) == 0) {
			e->last_ns = now_ns;
			entry_unlink_recency(e);
			entry_push_newest(e);
			return false;
		}
	}
	v = service_get(l, service);
	if (!v || !l->max_per_service) {
		fold(l, route, len);
		return true;
	}
	if (v->n >= l->max_per_service) {
		/* The least recently seen route makes room only once it has been idle long enough. */
		if (!v->oldest || now_ns < v->oldest->last_ns ||
		    now_ns - v->oldest->last_ns < l->idle_ns) {
			fold(l, route, len);
			return true;
		}
		entry_remove(l, v->oldest);
	}
	rlen = strlen(route);
	e = calloc(1, sizeof(*e) + slen + rlen + 2);
	if (!e) {
		fold(l, route, len);
		return true;
	}
	memcpy(e->key, service, slen + 1);
	memcpy(e->key + slen + 1, route, rlen + 1);
	e->svc = v;
	e->last_ns = now_ns;
	e->hnext = *slot;
	*slot = e;
	entry_push_newest(e);
	v->n++;
	return false;
}

uint64_t http_route_limit_folded(const struct http_route_limit *l)
{
	return l ? l->folded : 0;
}
