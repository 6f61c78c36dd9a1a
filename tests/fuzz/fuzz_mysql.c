/*
 * libFuzzer target for plugins/mysql/mysql_proto.c.
 *
 * The input is a script of feeds on one stream. Each record starts with a
 * control byte: bit 0 the direction, bits 1-2 the kind (0, 1: all captured;
 * 2: only part captured, the next byte says how many bytes more were moved
 * (times 64); 3: close the stream and start a new one), bits 3-7 a length
 * class refined by a second byte. The record's bytes follow. Every exchange
 * reported is checked: strings terminated, names printable, times ordered.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_proto.h"

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

static void on_exchange(const struct mysql_exchange *ex, void *ctx)
{
	uint64_t *n = ctx;

	check(ex->role == MYSQL_ROLE_CLIENT || ex->role == MYSQL_ROLE_SERVER);
	check_label(ex->operation, sizeof(ex->operation));
	check_label(ex->collection, sizeof(ex->collection));
	check_label(ex->db_namespace, sizeof(ex->db_namespace));
	check(ex->end_ns >= ex->start_ns);
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mysql_stream *s = mysql_stream_new();
	struct mysql_stream_stats st;
	uint64_t reported = 0, ts = 0;
	size_t pos = 0;

	if (!s)
		return 0;
	while (pos + 2 <= size) {
		uint8_t ctl = data[pos], refine = data[pos + 1];
		enum mysql_dir dir = ctl & 1 ? MYSQL_DIR_OUT : MYSQL_DIR_IN;
		unsigned kind = (ctl >> 1) & 3;
		size_t len = ((size_t)(ctl >> 3) << 4) + (refine & 15);
		uint64_t total;
		int rc;

		pos += 2;
		if (kind == 3) {
			mysql_stream_close(s);
			mysql_stream_get_stats(s, &st);
			check(st.exchanges == reported);
			mysql_stream_free(s);
			s = mysql_stream_new();
			reported = 0;
			if (!s)
				return 0;
			continue;
		}
		if (len > size - pos)
			len = size - pos;
		total = len;
		if (kind == 2)
			total += (uint64_t)(refine >> 4) * 64 + 1;
		rc = mysql_stream_feed(s, dir, data + pos, len, total, ++ts, on_exchange,
				       &reported);
		check(rc == 0 || rc == -EPROTO);
		pos += len;
	}
	mysql_stream_close(s);
	mysql_stream_get_stats(s, &st);
	check(st.exchanges == reported);
	mysql_stream_free(s);
	return 0;
}
