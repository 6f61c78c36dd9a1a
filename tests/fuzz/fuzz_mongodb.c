/*
 * libFuzzer target for plugins/mongodb/mongodb_proto.c.
 *
 * The input is a script of feeds on one stream. Each record starts with a control
 * byte: bit 0 the direction (1: out), bits 1-2 the kind (0, 1: all captured; 2: only
 * part captured, a byte follows whose value times 61 is the number of bytes moved
 * but not captured; 3: close the stream, which may then be fed again), then two bytes
 * of length, little endian, and that many bytes (fewer at the end of the input).
 * Every exchange reported is checked: strings terminated, names from the table or
 * _OTHER, labels free of control characters, times in order. The first bytes of the
 * input also go through mongo_looks_like_message and the command table.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mongodb_proto.h"

struct run {
	uint64_t reported;
	uint64_t last_ts;
};

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_label(const char *s, size_t cap)
{
	const char *end = memchr(s, '\0', cap);

	check(end != NULL);
	for (; s < end; s++)
		check((unsigned char)*s > ' ' && (unsigned char)*s < 0x7f && *s != '"' &&
		      *s != '\\');
}

static void on_exchange(const struct mongo_exchange *ex, void *ctx)
{
	struct run *run = ctx;
	const char *canon;

	run->reported++;
	check(ex->role == MONGO_ROLE_CLIENT || ex->role == MONGO_ROLE_SERVER);
	check(ex->outcome <= MONGO_UNANSWERED);
	check_label(ex->op, sizeof(ex->op));
	check_label(ex->collection, sizeof(ex->collection));
	check_label(ex->db, sizeof(ex->db));
	canon = mongo_command_name(ex->op, strlen(ex->op));
	check(strcmp(ex->op, "_OTHER") == 0 || (canon && strcmp(canon, ex->op) == 0));
	check(!ex->has_code || ex->error);
	check(ex->start_ns <= ex->end_ns);
	check(ex->end_ns <= run->last_ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mongo_stream *s = mongo_stream_new();
	struct mongo_stream_stats st;
	struct run run = { 0, 0 };
	size_t pos = 0;
	bool dead = false;

	check(s != NULL);
	mongo_looks_like_message(data, size < 64 ? size : 64);
	mongo_command_name((const char *)data, size < 32 ? size : 32);
	while (pos < size) {
		uint8_t ctl = data[pos++];
		enum mongo_dir dir = ctl & 1 ? MONGO_DIR_OUT : MONGO_DIR_IN;
		unsigned kind = (ctl >> 1) & 3;
		size_t len = 0;
		uint64_t unseen = 0;
		int err;

		if (kind == 2 && pos < size)
			unseen = (uint64_t)data[pos++] * 61;
		if (pos + 2 <= size) {
			len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
			pos += 2;
		}
		if (len > size - pos)
			len = size - pos;
		run.last_ts++;
		if (kind == 3) {
			mongo_stream_close(s, run.last_ts, on_exchange, &run);
			continue;
		}
		err = mongo_stream_feed(s, dir, data + pos, len, len + unseen, run.last_ts,
					on_exchange, &run);
		check(err == 0 || err == -EPROTO);
		if (dead)
			check(err == -EPROTO);
		dead = err == -EPROTO;
		pos += len;
	}
	mongo_stream_get_stats(s, &st);
	check(st.exchanges == run.reported);
	check(st.not_mongo == dead);
	check(st.undecoded <= st.compressed[0] + st.compressed[1] + st.compressed[2] +
				      st.compressed[3] + st.compressed[4] + st.messages);
	mongo_stream_close(s, run.last_ts + 1, NULL, NULL);
	mongo_stream_free(s);
	return 0;
}
