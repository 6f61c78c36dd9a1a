/*
 * libFuzzer target for plugins/mongodb/mongodb_bson.c.
 *
 * The input is one document (the first byte chooses how much of it counts as
 * captured). Checked: validation never reads past the captured bytes (ASan), a cut
 * never turns a well-formed document malformed or complete, a malformed prefix stays
 * malformed when more is captured, and iteration agrees with validation on the top
 * level: every element's value lies inside the document.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mongodb_bson.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void walk_top(const uint8_t *p, size_t avail, size_t limit, int full)
{
	struct bson_iter it;
	struct bson_elem e;
	int rc = bson_iter_init(&it, p, avail, limit);
	double d;
	int32_t i32;
	const char *s;
	size_t n;

	if (rc != BSON_OK)
		return;
	while ((rc = bson_iter_next(&it, &e)) == BSON_OK) {
		check(e.val >= p && e.val + e.val_len <= p + it.len);
		check(e.val_avail <= e.val_len);
		check(e.key + e.key_len < (const char *)p + it.avail);
		check(e.key[e.key_len] == '\0');
		bson_elem_number(&e, &d);
		bson_elem_int32(&e, &i32);
		if (bson_elem_string(&e, &s, &n))
			check(s[n] == '\0');
	}
	if (full == BSON_OK)
		check(rc == BSON_END);
	if (full == BSON_TRUNCATED)
		check(rc != BSON_MALFORMED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bson_elem e;
	size_t cut;
	int full, part;
	uint8_t *copy;

	if (size < 1)
		return 0;
	cut = data[0] % (size);
	data++;
	size--;
	/* A private copy of exactly the captured bytes: ASan sees any read past them. */
	copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	full = bson_validate(copy, size, size);
	part = bson_validate(copy, cut, size);
	if (part == BSON_OK) /* the document ended within the cut */
		check(full == BSON_OK);
	if (part == BSON_MALFORMED)
		check(full == BSON_MALFORMED);
	walk_top(copy, size, size, full);
	walk_top(copy, cut, size, part);
	bson_find(copy, size, size, "ok", &e);
	bson_find(copy, cut, size, "$db", &e);
	free(copy);
	return 0;
}
