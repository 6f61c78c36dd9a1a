/*
 * libFuzzer target for plugins/mysql/mysql_sql.c: any text, whole or marked
 * truncated (the first byte's low bit). The summary's strings must be
 * terminated and printable, the operation one of the known names, and no
 * quoted literal of the input may show up in it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_sql.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_label(const char *s, size_t cap)
{
	const char *end = memchr(s, '\0', cap);

	check(end != NULL);
	for (const char *p = s; p < end; p++)
		check((unsigned char)*p >= 0x20 && *p != 0x7f && *p != '"' && *p != '\'' &&
		      *p != '\\');
}

static void check_op(const char *op)
{
	check_label(op, MYSQL_OP_MAX);
	for (const char *p = op; *p; p++)
		check((*p >= 'A' && *p <= 'Z') || *p == '_');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mysql_sql_summary s;
	bool truncated;
	int rc;

	if (!size)
		return 0;
	truncated = data[0] & 1;
	rc = mysql_sql_summarize((const char *)data + 1, size - 1, truncated, &s);
	check(rc == 0 || rc == -EINVAL);
	check_op(s.operation);
	check(rc != 0 || s.operation[0]);
	check_label(s.collection, sizeof(s.collection));
	check_label(s.use_db, sizeof(s.use_db));
	/* A name never holds a quote character of a string literal. */
	check(!strchr(s.collection, '\'') && !strchr(s.use_db, '\''));
	return 0;
}
