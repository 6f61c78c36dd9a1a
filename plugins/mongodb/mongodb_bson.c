/*
 * Bounded BSON reader (see mongodb_bson.h).
 *
 * Every size read from the input is checked against the room its container
 * declares before anything is read past it, and against the captured bytes
 * before it is dereferenced: a cut document is never read beyond its capture,
 * and a length that cannot fit makes the document malformed whether or not
 * its bytes were captured.
 */
#include <math.h>
#include <string.h>

#include "mongodb_bson.h"

#define BSON_DOC_MIN 5 /* int32 length and the terminating NUL */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* A length field of room declared bytes, avail captured: TRUNCATED, MALFORMED or OK. */
static int read_len(const uint8_t *v, size_t room, size_t avail, uint32_t *n)
{
	if (room < 4)
		return BSON_MALFORMED;
	if (avail < 4)
		return BSON_TRUNCATED;
	*n = le32(v);
	return *n > 0x7fffffffu ? BSON_MALFORMED : BSON_OK;
}

/* A cstring within room declared bytes: its length with the NUL. */
static int cstring_size(const uint8_t *v, size_t room, size_t avail, size_t *size)
{
	size_t scan = min_size(room, avail);
	const uint8_t *nul = scan ? memchr(v, 0, scan) : NULL;

	if (nul) {
		*size = (size_t)(nul - v) + 1;
		return BSON_OK;
	}
	return avail < room ? BSON_TRUNCATED : BSON_MALFORMED;
}

/* int32 length, then that many bytes ending in NUL (the NUL is checked once captured). */
static int string_size(const uint8_t *v, size_t room, size_t avail, size_t *size)
{
	uint32_t n;
	int rc = read_len(v, room, avail, &n);

	if (rc != BSON_OK)
		return rc;
	if (n < 1 || n > room - 4)
		return BSON_MALFORMED;
	*size = 4 + (size_t)n;
	return BSON_OK;
}

/*
 * The declared size of a value of type t at v, where room bytes are left before the
 * containing document's NUL and avail of them were captured.
 */
static int value_size(uint8_t t, const uint8_t *v, size_t room, size_t avail, size_t *size)
{
	size_t a, b;
	uint32_t n;
	int rc;

	switch (t) {
	case BSON_UNDEFINED:
	case BSON_NULL:
	case BSON_MINKEY:
	case BSON_MAXKEY:
		*size = 0;
		break;
	case BSON_BOOL:
		*size = 1;
		break;
	case BSON_INT32:
		*size = 4;
		break;
	case BSON_DOUBLE:
	case BSON_DATETIME:
	case BSON_TIMESTAMP:
	case BSON_INT64:
		*size = 8;
		break;
	case BSON_OID:
		*size = 12;
		break;
	case BSON_DECIMAL128:
		*size = 16;
		break;
	case BSON_STRING:
	case BSON_CODE:
	case BSON_SYMBOL:
		return string_size(v, room, avail, size);
	case BSON_DOCUMENT:
	case BSON_ARRAY:
		rc = read_len(v, room, avail, &n);
		if (rc != BSON_OK)
			return rc;
		if (n < BSON_DOC_MIN || n > room)
			return BSON_MALFORMED;
		*size = n;
		return BSON_OK;
	case BSON_BINARY:
		rc = read_len(v, room, avail, &n);
		if (rc != BSON_OK)
			return rc;
		if ((size_t)n > room - 4 || room - 4 - n < 1)
			return BSON_MALFORMED;
		*size = 5 + (size_t)n;
		return BSON_OK;
	case BSON_CODE_W_SCOPE:
		rc = read_len(v, room, avail, &n);
		if (rc != BSON_OK)
			return rc;
		if (n < 4 + 5 + BSON_DOC_MIN || n > room)
			return BSON_MALFORMED;
		*size = n;
		return BSON_OK;
	case BSON_REGEX:
		rc = cstring_size(v, room, avail, &a);
		if (rc != BSON_OK)
			return rc;
		rc = cstring_size(v + a, room - a, avail > a ? avail - a : 0, &b);
		if (rc != BSON_OK)
			return rc;
		*size = a + b;
		return BSON_OK;
	case BSON_DBPOINTER:
		rc = string_size(v, room, avail, &a);
		if (rc != BSON_OK)
			return rc;
		if (room - a < 12)
			return BSON_MALFORMED;
		*size = a + 12;
		return BSON_OK;
	default:
		return BSON_MALFORMED;
	}
	return *size > room ? BSON_MALFORMED : BSON_OK;
}

/* What can be checked of a value once all of it was captured. */
static bool value_consistent(const struct bson_elem *e)
{
	switch (e->type) {
	case BSON_BOOL:
		return e->val[0] <= 1;
	case BSON_STRING:
	case BSON_CODE:
	case BSON_SYMBOL:
	case BSON_DBPOINTER:
		return e->val[4 + le32(e->val) - 1] == 0;
	case BSON_DOCUMENT:
	case BSON_ARRAY:
		return e->val[e->val_len - 1] == 0;
	default:
		return true;
	}
}

int bson_iter_init(struct bson_iter *it, const uint8_t *p, size_t avail, size_t limit)
{
	uint32_t n;

	memset(it, 0, sizeof(*it));
	if (limit < BSON_DOC_MIN)
		return BSON_MALFORMED;
	if (avail < 4)
		return BSON_TRUNCATED;
	n = le32(p);
	if (n < BSON_DOC_MIN || n > limit)
		return BSON_MALFORMED;
	if (avail >= n && p[n - 1] != 0)
		return BSON_MALFORMED;
	it->p = p;
	it->len = n;
	it->avail = min_size(avail, n);
	it->off = 4;
	return BSON_OK;
}

int bson_iter_next(struct bson_iter *it, struct bson_elem *e)
{
	size_t last, key_size, voff, vavail, size;
	int rc;

	if (!it->p)
		return BSON_MALFORMED;
	last = it->len - 1; /* the terminating NUL */
	if (it->off >= it->avail)
		return BSON_TRUNCATED;
	e->type = it->p[it->off];
	if (it->off == last)
		return e->type == 0 ? BSON_END : BSON_MALFORMED;
	if (e->type == 0)
		return BSON_MALFORMED;
	rc = cstring_size(it->p + it->off + 1, last - it->off - 1, it->avail - it->off - 1,
			  &key_size);
	if (rc != BSON_OK)
		return rc;
	voff = it->off + 1 + key_size;
	vavail = it->avail > voff ? it->avail - voff : 0;
	rc = value_size(e->type, it->p + voff, last - voff, vavail, &size);
	if (rc != BSON_OK)
		return rc;
	e->key = (const char *)it->p + it->off + 1;
	e->key_len = key_size - 1;
	e->val = it->p + voff;
	e->val_len = size;
	e->val_avail = min_size(size, vavail);
	if (e->val_avail == size && size && !value_consistent(e))
		return BSON_MALFORMED;
	it->off = voff + size;
	return BSON_OK;
}

int bson_iter_child(const struct bson_elem *e, struct bson_iter *child)
{
	if (e->type != BSON_DOCUMENT && e->type != BSON_ARRAY)
		return BSON_MALFORMED;
	return bson_iter_init(child, e->val, e->val_avail, e->val_len);
}

/* The scope document of a fully or partly captured code-with-scope value. */
static int code_scope(const struct bson_elem *e, struct bson_iter *scope)
{
	size_t s_size;
	int rc;

	/* int32 total, string (int32 + bytes), document: total counts all of it. */
	rc = string_size(e->val + 4, e->val_len - 4, e->val_avail > 4 ? e->val_avail - 4 : 0,
			 &s_size);
	if (rc != BSON_OK)
		return rc;
	if (e->val_avail >= 4 + s_size && e->val[4 + s_size - 1] != 0)
		return BSON_MALFORMED;
	if (e->val_len - 4 < s_size + BSON_DOC_MIN)
		return BSON_MALFORMED;
	rc = bson_iter_init(scope, e->val + 4 + s_size,
			    e->val_avail > 4 + s_size ? e->val_avail - 4 - s_size : 0,
			    e->val_len - 4 - s_size);
	if (rc != BSON_OK)
		return rc;
	return scope->len == e->val_len - 4 - s_size ? BSON_OK : BSON_MALFORMED;
}

int bson_validate(const uint8_t *p, size_t avail, size_t limit)
{
	struct bson_iter stack[BSON_DEPTH_MAX + 1];
	struct bson_elem e;
	size_t depth = 0;
	int rc;

	rc = bson_iter_init(&stack[0], p, avail, limit);
	if (rc != BSON_OK)
		return rc;
	for (;;) {
		rc = bson_iter_next(&stack[depth], &e);
		if (rc == BSON_END) {
			if (depth == 0)
				return BSON_OK;
			depth--;
			continue;
		}
		if (rc != BSON_OK)
			return rc; /* cut: everything after it was not captured either */
		if (e.type != BSON_DOCUMENT && e.type != BSON_ARRAY && e.type != BSON_CODE_W_SCOPE)
			continue;
		if (depth == BSON_DEPTH_MAX)
			return BSON_MALFORMED;
		if (e.type == BSON_CODE_W_SCOPE)
			rc = code_scope(&e, &stack[depth + 1]);
		else
			rc = bson_iter_child(&e, &stack[depth + 1]);
		if (rc != BSON_OK)
			return rc;
		depth++;
	}
}

int bson_find(const uint8_t *p, size_t avail, size_t limit, const char *key, struct bson_elem *e)
{
	size_t key_len = strlen(key);
	struct bson_iter it;
	int rc;

	rc = bson_iter_init(&it, p, avail, limit);
	if (rc != BSON_OK)
		return rc;
	while ((rc = bson_iter_next(&it, e)) == BSON_OK)
		if (e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
			return BSON_OK;
	return rc;
}

bool bson_elem_number(const struct bson_elem *e, double *out)
{
	uint64_t bits;

	if (e->val_avail != e->val_len)
		return false;
	switch (e->type) {
	case BSON_DOUBLE:
		bits = le64(e->val);
		memcpy(out, &bits, sizeof(*out));
		return true;
	case BSON_INT32:
		*out = (double)(int32_t)le32(e->val);
		return true;
	case BSON_INT64:
		*out = (double)(int64_t)le64(e->val);
		return true;
	case BSON_BOOL:
		*out = e->val[0];
		return true;
	default:
		return false;
	}
}

bool bson_elem_int32(const struct bson_elem *e, int32_t *out)
{
	double d;

	if (e->type == BSON_INT32 && e->val_avail == 4) {
		*out = (int32_t)le32(e->val);
		return true;
	}
	if (e->type != BSON_DOUBLE && e->type != BSON_INT64)
		return false;
	if (!bson_elem_number(e, &d) || !(d >= -2147483648.0 && d <= 2147483647.0) || d != floor(d))
		return false;
	*out = (int32_t)d;
	return true;
}

bool bson_elem_string(const struct bson_elem *e, const char **s, size_t *len)
{
	if (e->type != BSON_STRING || e->val_avail != e->val_len)
		return false;
	*s = (const char *)e->val + 4;
	*len = e->val_len - 5;
	return true;
}
