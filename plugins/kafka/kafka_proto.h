/*
 * Kafka wire protocol stream decoder: pure C, no BPF, no libuv (unit tests and fuzzing).
 *
 * One struct kafka_stream per connection. The capture feeds it what each syscall
 * moved, in order, both directions interleaved: the first `len` captured bytes of
 * `total` moved. The decoder frames the size-prefixed messages of each direction,
 * reads request headers v0-v2 (flexible versions: compact strings and arrays,
 * tagged fields), pairs each response with its request by correlation id, and
 * reports every exchange through the callback.
 *
 * It needs only the headers: of a frame, the request or response header and the
 * fields before each partition's records; of records, the 61-byte header of each
 * record batch (magic 2) or the 18 bytes before each legacy message (magic 0/1).
 * Bytes the capture did not copy are skipped by the frame and record lengths.
 * A batch whose header fell in such a gap is not guessed at: it is counted in
 * the partition's `uncounted`.
 */
#ifndef PS_KAFKA_PROTO_H
#define PS_KAFKA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KAFKA_TOPIC_MAX	  250  /* topic names are at most 249 characters */
#define KAFKA_GROUP_MAX	  256  /* longer group ids are cut */
#define KAFKA_PENDING_MAX 1024 /* requests awaiting a response, per stream; beyond: oldest lost */
#define KAFKA_TOPICS_MAX  256  /* topics per exchange; beyond: `truncated` */
#define KAFKA_PARTS_MAX	  4096 /* partitions per exchange; beyond: `truncated` */
#define KAFKA_FRAME_MAX \
	(256u << 20) /* larger size prefixes: not Kafka (TLS, HTTP), or lost framing */
#define KAFKA_FRAME_KEEP    (1u << 20) /* captured bytes kept of one frame; beyond: a gap */
#define KAFKA_TOPIC_IDS_MAX 4096       /* topic id -> name entries remembered */

enum kafka_dir {
	KAFKA_DIR_IN = 0,  /* the observed process read these bytes */
	KAFKA_DIR_OUT = 1, /* the observed process wrote these bytes */
};

enum kafka_role {
	KAFKA_ROLE_UNKNOWN = 0,
	KAFKA_ROLE_CLIENT, /* requests go out */
	KAFKA_ROLE_SERVER, /* requests come in: a broker */
};

/* The API keys the decoder looks into; every other key is only counted. */
enum kafka_api {
	KAFKA_API_PRODUCE = 0,
	KAFKA_API_FETCH = 1,
	KAFKA_API_METADATA = 3,
	KAFKA_API_OFFSET_COMMIT = 8,
	KAFKA_API_OFFSET_FETCH = 9,
	KAFKA_API_FIND_COORDINATOR = 10,
	KAFKA_API_JOIN_GROUP = 11,
	KAFKA_API_HEARTBEAT = 12,
	KAFKA_API_LEAVE_GROUP = 13,
	KAFKA_API_SYNC_GROUP = 14,
	KAFKA_API_API_VERSIONS = 18,
};

struct kafka_topic {
	char name[KAFKA_TOPIC_MAX + 1]; /* "" when only an unknown topic id was seen */
};

/* One topic-partition of an exchange: what the request asked and the response said. */
struct kafka_partition {
	uint32_t topic; /* index into the exchange's topics */
	int32_t partition;
	int16_t error;		/* the response's error code for it; 0 none */
	bool answered;		/* the response named it */
	uint64_t records;	/* Produce: records sent; Fetch: records delivered */
	uint32_t uncounted;	/* record batches whose header the capture missed */
	int64_t fetch_offset;	/* Fetch: the request's; else -1 */
	int64_t high_watermark; /* Fetch: the response's; -1 unknown */
	int64_t next_offset;	/* Fetch: past the last delivered record, else fetch_offset; -1 */
};

struct kafka_exchange {
	enum kafka_role role;
	int16_t api_key, api_version;
	int32_t correlation_id;
	int16_t error;	/* top-level error code of the response; 0 none */
	bool answered;	/* false: a Produce with acks=0 (no response comes) */
	bool complete;	/* false: a capture gap hid part of the request's or response's structure */
	bool truncated; /* more topics or partitions than the limits above */
	uint32_t uncounted; /* record batches in no count: the partitions', plus one when
			     * a gap hid where a Produce or Fetch's records were */
	const char *group;  /* consumer group of the request, else of the connection; "" unknown */
	uint64_t request_start_ns; /* first byte of the request */
	uint64_t response_end_ns;  /* last byte of the response (request end when unanswered) */
	const struct kafka_topic *topics;
	size_t n_topics;
	const struct kafka_partition *parts;
	size_t n_parts;
};

typedef void (*kafka_exchange_fn)(const struct kafka_exchange *ex, void *ctx);

/* Topic id (Fetch v13+) -> name, learned from Metadata; may be shared by streams. */
struct kafka_topic_ids;
struct kafka_topic_ids *kafka_topic_ids_new(void);
void kafka_topic_ids_free(struct kafka_topic_ids *ids);
/* 0 or -ENOENT; name has KAFKA_TOPIC_MAX + 1 bytes. */
int kafka_topic_ids_lookup(const struct kafka_topic_ids *ids, const uint8_t id[16], char *name);

struct kafka_stream;

/*
 * role: who the observed process is, when the caller knows (the broker's port
 * at the remote end: a client); KAFKA_ROLE_UNKNOWN: the first request decides.
 * ids: a shared topic id map, or NULL for one of the stream's own.
 */
struct kafka_stream *kafka_stream_new(enum kafka_role role, struct kafka_topic_ids *ids);
/* Frees without reports. */
void kafka_stream_free(struct kafka_stream *s);

/*
 * Feeds one syscall's worth of bytes: data holds the first len captured bytes of
 * total moved (total >= len). ts_ns is when the syscall completed. Returns 0, or
 * -EPROTO once the stream proved not to be Kafka (every later call returns it too).
 */
int kafka_stream_feed(struct kafka_stream *s, enum kafka_dir dir, const uint8_t *data, size_t len,
		      uint64_t total, uint64_t ts_ns, kafka_exchange_fn fn, void *ctx);

/* The connection closed: requests still waiting for a response are dropped (counted lost). */
void kafka_stream_close(struct kafka_stream *s, uint64_t ts_ns);

/* The consumer group this connection's requests named last; "" if none. */
const char *kafka_stream_group(const struct kafka_stream *s);

struct kafka_stream_stats {
	enum kafka_role role;
	uint64_t frames;       /* frames framed, both directions */
	uint64_t exchanges;    /* reported through the callback */
	uint64_t lost;	       /* requests never answered (evicted, closed) or responses unpaired */
	uint64_t parse_errors; /* malformed frames once the stream was known to be Kafka */
	uint64_t desyncs;      /* times framing was lost to a capture gap */
	uint64_t uncounted;    /* record batches whose header the capture missed */
	bool not_kafka;	       /* feed returns -EPROTO */
};

void kafka_stream_get_stats(const struct kafka_stream *s, struct kafka_stream_stats *st);

/* "Produce", "Fetch", ...; "Unknown" past the table. */
const char *kafka_api_name(int16_t api_key);
/* "send" for Produce, "poll" for Fetch, "commit" for OffsetCommit, else the lower-case name. */
const char *kafka_operation_name(int16_t api_key);
/* "NOT_LEADER_OR_FOLLOWER", ...; "" for 0; "_OTHER" for codes past the table. */
const char *kafka_error_name(int16_t code);

#endif
