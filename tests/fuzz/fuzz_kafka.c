/*
 * libFuzzer target for plugins/kafka/kafka_proto.c.
 *
 * The input's first byte picks the role the stream starts with (unknown, client,
 * server) and whether it shares a topic id map with a second stream; the rest is a
 * script of feeds on the stream. Each record starts with a control byte: bit 0 the
 * direction, bits 1-2 the kind (0, 1: all captured; 2: only part captured, the next
 * byte says how many bytes more were moved, times 64; 3: close the stream and start
 * a fresh one), bits 3-7 a length class; a second byte refines the length. The
 * record's bytes follow. Every exchange reported is checked for sane contents.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_proto.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void on_exchange(const struct kafka_exchange *ex, void *ctx)
{
	uint64_t *reported = ctx;

	(*reported)++;
	check(ex->role == KAFKA_ROLE_CLIENT || ex->role == KAFKA_ROLE_SERVER);
	check(ex->request_start_ns <= ex->response_end_ns);
	check(ex->n_topics <= KAFKA_TOPICS_MAX && ex->n_parts <= KAFKA_PARTS_MAX);
	check(ex->group && strlen(ex->group) < KAFKA_GROUP_MAX);
	check(kafka_api_name(ex->api_key) && kafka_operation_name(ex->api_key));
	check(kafka_error_name(ex->error) != NULL);
	for (size_t t = 0; t < ex->n_topics; t++)
		check(memchr(ex->topics[t].name, '\0', sizeof(ex->topics[t].name)) != NULL);
	for (size_t i = 0; i < ex->n_parts; i++) {
		const struct kafka_partition *p = &ex->parts[i];

		check(p->topic < ex->n_topics);
		check(kafka_error_name(p->error) != NULL);
		if (p->fetch_offset < 0)
			check(ex->api_key != KAFKA_API_FETCH || p->next_offset < 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kafka_topic_ids *ids = kafka_topic_ids_new();
	struct kafka_stream *s;
	uint64_t reported = 0;
	enum kafka_role role;
	size_t i = 1;

	if (!size || !ids) {
		kafka_topic_ids_free(ids);
		return 0;
	}
	role = (enum kafka_role)(data[0] % 3);
	s = kafka_stream_new(role, data[0] & 4 ? ids : NULL);
	if (!s) {
		kafka_topic_ids_free(ids);
		return 0;
	}
	while (i + 2 <= size) {
		uint8_t ctl = data[i], refine = data[i + 1];
		enum kafka_dir dir = ctl & 1 ? KAFKA_DIR_OUT : KAFKA_DIR_IN;
		unsigned kind = (ctl >> 1) & 3;
		size_t len = ((size_t)(ctl >> 3) << 8 | refine) % 4097;
		uint64_t total;
		int rc;

		i += 2;
		if (kind == 3) {
			kafka_stream_close(s, i);
			kafka_stream_free(s);
			s = kafka_stream_new(role, ids);
			if (!s)
				break;
			continue;
		}
		total = len;
		if (kind == 2 && i < size)
			total += (uint64_t)data[i++] * 64;
		if (len > size - i)
			len = size - i;
		if (total < len)
			total = len;
		rc = kafka_stream_feed(s, dir, data + i, len, total, i, on_exchange, &reported);
		check(rc == 0 || rc == -EPROTO);
		i += len;
	}
	if (s) {
		struct kafka_stream_stats st;

		kafka_stream_get_stats(s, &st);
		check(st.exchanges <= reported); /* reported also counts the closed streams */
		check(kafka_stream_group(s) != NULL);
		kafka_stream_close(s, i);
		kafka_stream_free(s);
	}
	kafka_topic_ids_free(ids);
	return 0;
}
