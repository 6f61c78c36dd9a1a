/*
 * A bounded BSON reader for the mongodb decoder: pure C, no allocation.
 *
 * The capture hands over a prefix of each message, so a document may be cut
 * anywhere. The reader tells apart a document that is cut (TRUNCATED: what
 * was seen is well formed, the rest was not captured) from one that cannot be
 * BSON (MALFORMED: a length that does not fit its container, an unknown type,
 * a string without its NUL, nesting past the limit). Every length is checked
 * against both the declared size of its container and the captured bytes.
 */
#ifndef PS_MONGODB_BSON_H
#define PS_MONGODB_BSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BSON_DEPTH_MAX 32 /* nesting below the top-level document; deeper is malformed */

enum bson_status {
	BSON_MALFORMED = -1,
	BSON_OK = 0,	    /* an element was read */
	BSON_END = 1,	    /* the document's terminating NUL was reached */
	BSON_TRUNCATED = 2, /* the next element lies (partly) beyond the captured bytes */
};

enum bson_type {
	BSON_DOUBLE = 0x01,
	BSON_STRING = 0x02,
	BSON_DOCUMENT = 0x03,
	BSON_ARRAY = 0x04,
	BSON_BINARY = 0x05,
	BSON_UNDEFINED = 0x06,
	BSON_OID = 0x07,
	BSON_BOOL = 0x08,
	BSON_DATETIME = 0x09,
	BSON_NULL = 0x0a,
	BSON_REGEX = 0x0b,
	BSON_DBPOINTER = 0x0c,
	BSON_CODE = 0x0d,
	BSON_SYMBOL = 0x0e,
	BSON_CODE_W_SCOPE = 0x0f,
	BSON_INT32 = 0x10,
	BSON_TIMESTAMP = 0x11,
	BSON_INT64 = 0x12,
	BSON_DECIMAL128 = 0x13,
	BSON_MINKEY = 0xff,
	BSON_MAXKEY = 0x7f,
};

/* Iterates the elements of one document. */
struct bson_iter {
	const uint8_t *p;
	size_t len;   /* declared length of the document */
	size_t avail; /* bytes of it that were captured, <= len */
	size_t off;   /* next element */
};

/* One element; its value may be cut: val_avail < val_len. */
struct bson_elem {
	uint8_t type;
	const char *key; /* NUL-terminated inside the document */
	size_t key_len;
	const uint8_t *val;
	size_t val_len;	  /* declared */
	size_t val_avail; /* captured */
};

/*
 * Starts iterating the document at p, of which avail bytes were captured; its
 * declared length must be at most limit (the room its container leaves).
 * BSON_OK, BSON_TRUNCATED (not even the length was captured) or BSON_MALFORMED.
 */
int bson_iter_init(struct bson_iter *it, const uint8_t *p, size_t avail, size_t limit);

/* The next element: BSON_OK, BSON_END, BSON_TRUNCATED or BSON_MALFORMED. */
int bson_iter_next(struct bson_iter *it, struct bson_elem *e);

/* An embedded document or array element as a document of its own. */
int bson_iter_child(const struct bson_elem *e, struct bson_iter *child);

/*
 * Walks the whole document, nested ones included, up to BSON_DEPTH_MAX levels
 * deep, without recursion: BSON_OK (complete and well formed), BSON_TRUNCATED
 * (well formed as far as it was captured) or BSON_MALFORMED.
 */
int bson_validate(const uint8_t *p, size_t avail, size_t limit);

/*
 * Looks for key among the top-level elements. BSON_OK with e filled, BSON_END
 * (not there), BSON_TRUNCATED (not among the captured elements) or BSON_MALFORMED.
 */
int bson_find(const uint8_t *p, size_t avail, size_t limit, const char *key, struct bson_elem *e);

/* Numeric values (double, int32, int64, bool) of a captured element; false otherwise. */
bool bson_elem_number(const struct bson_elem *e, double *out);
bool bson_elem_int32(const struct bson_elem *e,
		     int32_t *out); /* int32, or an integral double/int64 in range */

/* A string element's bytes (without the NUL); false if not a fully captured string. */
bool bson_elem_string(const struct bson_elem *e, const char **s, size_t *len);

#endif
