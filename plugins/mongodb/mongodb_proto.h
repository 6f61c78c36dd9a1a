/*
 * MongoDB wire protocol stream decoder: pure C, no BPF, no libuv (unit tests
 * and fuzzing).
 *
 * One struct mongo_stream per connection. The capture feeds it what each
 * syscall moved, in order, both directions interleaved: the first `len`
 * bytes that were captured of `total` bytes moved. The decoder frames
 * messages by their header's messageLength (so bytes nobody saw are skipped
 * by count), reads OP_MSG (flag bits, body and document-sequence sections),
 * the legacy OP_QUERY / OP_REPLY of the first handshake and exhaust cursors,
 * the legacy write and getMore opcodes, and OP_COMPRESSED (decoded when the
 * compressor is noop, zlib or snappy, snappy when the capture holds the whole
 * message; counted by compressor otherwise), pairs each
 * request with its reply through requestID / responseTo, and reports every
 * exchange through the callback.
 *
 * Nothing of a document's values leaves the decoder but the command name
 * (from a fixed table), the collection and database names, and error codes.
 */
#ifndef PS_MONGODB_PROTO_H
#define PS_MONGODB_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MONGO_OP_MAX	  24   /* longest command name in the table, with its NUL */
#define MONGO_NAME_MAX	  128  /* collection and database names; longer ones become "_OTHER" */
#define MONGO_PENDING_MAX 64   /* requests awaiting a reply, per stream; beyond: oldest lost */
#define MONGO_MSG_KEEP	  8192 /* bytes of a message (decompressed) that are parsed */
#define MONGO_COMPRESSORS 4    /* noop, snappy, zlib, zstd; other ids count as unknown */

enum mongo_dir {
	MONGO_DIR_IN = 0,  /* the observed process read these bytes */
	MONGO_DIR_OUT = 1, /* the observed process wrote these bytes */
};

enum mongo_role {
	MONGO_ROLE_UNKNOWN = 0,
	MONGO_ROLE_SERVER, /* requests come in */
	MONGO_ROLE_CLIENT, /* requests go out */
};

enum mongo_compressor {
	MONGO_COMP_NOOP = 0,
	MONGO_COMP_SNAPPY = 1,
	MONGO_COMP_ZLIB = 2,
	MONGO_COMP_ZSTD = 3,
};

enum mongo_outcome {
	MONGO_REPLIED = 0, /* a reply came: error, code say how it went */
	MONGO_NO_REPLY,	   /* the request said moreToCome (w:0 writes, legacy writes) */
	MONGO_UNANSWERED,  /* the connection ended before the reply */
};

struct mongo_exchange {
	enum mongo_role role;
	enum mongo_outcome outcome;
	char op[MONGO_OP_MAX];		 /* command name as the table spells it, or "_OTHER" */
	char collection[MONGO_NAME_MAX]; /* "" when the command has none */
	char db[MONGO_NAME_MAX];	 /* $db, or the database of a legacy namespace */
	bool error;    /* ok: 0, writeErrors, writeConcernError, $err, QueryFailure */
	bool has_code; /* code holds the server's error code */
	int32_t code;
	bool exhaust;	   /* a reply streamed after the first one (moreToCome) */
	bool compressed;   /* the request came in OP_COMPRESSED */
	uint64_t start_ns; /* first byte of the request (exhaust: of the previous reply) */
	uint64_t end_ns;   /* last byte of the reply (no reply: of the request) */
};

typedef void (*mongo_exchange_fn)(const struct mongo_exchange *ex, void *ctx);

struct mongo_stream;

struct mongo_stream *mongo_stream_new(void);
void mongo_stream_free(struct mongo_stream *s);

/*
 * Feeds one syscall's bytes: data holds the first len bytes of total moved
 * (total >= len). Returns 0, or -EPROTO once the stream proved not to be the
 * MongoDB wire protocol (every later call then returns -EPROTO at once).
 */
int mongo_stream_feed(struct mongo_stream *s, enum mongo_dir dir, const uint8_t *data, size_t len,
		      uint64_t total, uint64_t ts_ns, mongo_exchange_fn fn, void *ctx);

/* The connection ended: requests still waiting are reported MONGO_UNANSWERED, end_ns = ts_ns. */
void mongo_stream_close(struct mongo_stream *s, uint64_t ts_ns, mongo_exchange_fn fn, void *ctx);

struct mongo_stream_stats {
	enum mongo_role role;
	uint64_t messages;  /* framed, both directions */
	uint64_t exchanges; /* reported through the callback */
	uint64_t malformed; /* messages whose header, sections or BSON could not be read */
	uint64_t desyncs;   /* times framing was lost to unseen bytes */
	uint64_t unmatched; /* replies whose request was not seen (or was evicted) */
	uint64_t lost;	    /* requests evicted from a full pending table */
	uint64_t compressed[MONGO_COMPRESSORS + 1]; /* OP_COMPRESSED by compressor; last: unknown */
	uint64_t undecoded; /* of those, messages that could not be decompressed */
	bool not_mongo;	    /* feed returns -EPROTO */
};

void mongo_stream_get_stats(const struct mongo_stream *s, struct mongo_stream_stats *st);

/* The first bytes of a direction: could they start a MongoDB message? */
bool mongo_looks_like_message(const uint8_t *data, size_t len);

/*
 * The command table: name as sent (case-insensitively for the handful the
 * drivers spell two ways, such as ismaster) -> its canonical spelling, or
 * NULL when the name is not a known command.
 */
const char *mongo_command_name(const char *name, size_t len);

#endif
