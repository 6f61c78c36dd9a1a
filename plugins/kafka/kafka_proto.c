/*
 * Kafka wire protocol stream decoder. See kafka_proto.h.
 *
 * Each direction is a sequence of frames: a 4-byte big-endian size, then that
 * many bytes. A frame's captured bytes are kept as segments at their offsets
 * (what the capture did not copy is a hole); the frame is decoded when its last
 * byte has passed, by a reader that fails on a hole instead of guessing. Frames
 * of APIs that are not decoded keep only their header.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_proto.h"

#define HEAD_KEEP      512 /* bytes of every frame kept until its header is read */
#define BATCH_HEADER   61  /* magic 2 record batch header */
#define LEGACY_HEADER  18  /* offset, size, crc, magic, attributes of a magic 0/1 message */
#define REQ_HEADER_MIN 8   /* api_key, api_version, correlation_id */
#define API_KEYS       76
#define FLEX_NEVER     127
#define ARRAY_SANE     100000 /* no array of a frame we decode is longer */

/* ---- tables -------------------------------------------------------------------------------- */

struct api_info {
	const char *name;
	const char *op;	 /* lower-case */
	int8_t flexible; /* first flexible version; FLEX_NEVER */
};

static const struct api_info apis[API_KEYS] = {
	[0] = { "Produce", "send", 9 },
	[1] = { "Fetch", "poll", 12 },
	[2] = { "ListOffsets", "listoffsets", 6 },
	[3] = { "Metadata", "metadata", 9 },
	[4] = { "LeaderAndIsr", "leaderandisr", 4 },
	[5] = { "StopReplica", "stopreplica", 2 },
	[6] = { "UpdateMetadata", "updatemetadata", 6 },
	[7] = { "ControlledShutdown", "controlledshutdown", 3 },
	[8] = { "OffsetCommit", "commit", 8 },
	[9] = { "OffsetFetch", "offsetfetch", 6 },
	[10] = { "FindCoordinator", "findcoordinator", 3 },
	[11] = { "JoinGroup", "joingroup", 6 },
	[12] = { "Heartbeat", "heartbeat", 4 },
	[13] = { "LeaveGroup", "leavegroup", 4 },
	[14] = { "SyncGroup", "syncgroup", 4 },
	[15] = { "DescribeGroups", "describegroups", 5 },
	[16] = { "ListGroups", "listgroups", 3 },
	[17] = { "SaslHandshake", "saslhandshake", FLEX_NEVER },
	[18] = { "ApiVersions", "apiversions", 3 },
	[19] = { "CreateTopics", "createtopics", 5 },
	[20] = { "DeleteTopics", "deletetopics", 4 },
	[21] = { "DeleteRecords", "deleterecords", 2 },
	[22] = { "InitProducerId", "initproducerid", 2 },
	[23] = { "OffsetForLeaderEpoch", "offsetforleaderepoch", 4 },
	[24] = { "AddPartitionsToTxn", "addpartitionstotxn", 3 },
	[25] = { "AddOffsetsToTxn", "addoffsetstotxn", 3 },
	[26] = { "EndTxn", "endtxn", 3 },
	[27] = { "WriteTxnMarkers", "writetxnmarkers", 1 },
	[28] = { "TxnOffsetCommit", "txnoffsetcommit", 3 },
	[29] = { "DescribeAcls", "describeacls", 2 },
	[30] = { "CreateAcls", "createacls", 2 },
	[31] = { "DeleteAcls", "deleteacls", 2 },
	[32] = { "DescribeConfigs", "describeconfigs", 4 },
	[33] = { "AlterConfigs", "alterconfigs", 2 },
	[34] = { "AlterReplicaLogDirs", "alterreplicalogdirs", 2 },
	[35] = { "DescribeLogDirs", "describelogdirs", 2 },
	[36] = { "SaslAuthenticate", "saslauthenticate", 2 },
	[37] = { "CreatePartitions", "createpartitions", 2 },
	[38] = { "CreateDelegationToken", "createdelegationtoken", 2 },
	[39] = { "RenewDelegationToken", "renewdelegationtoken", 2 },
	[40] = { "ExpireDelegationToken", "expiredelegationtoken", 2 },
	[41] = { "DescribeDelegationToken", "describedelegationtoken", 2 },
	[42] = { "DeleteGroups", "deletegroups", 2 },
	[43] = { "ElectLeaders", "electleaders", 2 },
	[44] = { "IncrementalAlterConfigs", "incrementalalterconfigs", 1 },
	[45] = { "AlterPartitionReassignments", "alterpartitionreassignments", 0 },
	[46] = { "ListPartitionReassignments", "listpartitionreassignments", 0 },
	[47] = { "OffsetDelete", "offsetdelete", FLEX_NEVER },
	[48] = { "DescribeClientQuotas", "describeclientquotas", 1 },
	[49] = { "AlterClientQuotas", "alterclientquotas", 1 },
	[50] = { "DescribeUserScramCredentials", "describeuserscramcredentials", 0 },
	[51] = { "AlterUserScramCredentials", "alteruserscramcredentials", 0 },
	[52] = { "Vote", "vote", 0 },
	[53] = { "BeginQuorumEpoch", "beginquorumepoch", 0 },
	[54] = { "EndQuorumEpoch", "endquorumepoch", 0 },
	[55] = { "DescribeQuorum", "describequorum", 0 },
	[56] = { "AlterPartition", "alterpartition", 0 },
	[57] = { "UpdateFeatures", "updatefeatures", 0 },
	[58] = { "Envelope", "envelope", 0 },
	[59] = { "FetchSnapshot", "fetchsnapshot", 0 },
	[60] = { "DescribeCluster", "describecluster", 0 },
	[61] = { "DescribeProducers", "describeproducers", 0 },
	[62] = { "BrokerRegistration", "brokerregistration", 0 },
	[63] = { "BrokerHeartbeat", "brokerheartbeat", 0 },
	[64] = { "UnregisterBroker", "unregisterbroker", 0 },
	[65] = { "DescribeTransactions", "describetransactions", 0 },
	[66] = { "ListTransactions", "listtransactions", 0 },
	[67] = { "AllocateProducerIds", "allocateproducerids", 0 },
	[68] = { "ConsumerGroupHeartbeat", "consumergroupheartbeat", 0 },
	[69] = { "ConsumerGroupDescribe", "consumergroupdescribe", 0 },
	[70] = { "ControllerRegistration", "controllerregistration", 0 },
	[71] = { "GetTelemetrySubscriptions", "gettelemetrysubscriptions", 0 },
	[72] = { "PushTelemetry", "pushtelemetry", 0 },
	[73] = { "AssignReplicasToDirs", "assignreplicastodirs", 0 },
	[74] = { "ListClientMetricsResources", "listclientmetricsresources", 0 },
	[75] = { "DescribeTopicPartitions", "describetopicpartitions", 0 },
};

static const char *const error_names[] = {
	"",
	"OFFSET_OUT_OF_RANGE",
	"CORRUPT_MESSAGE",
	"UNKNOWN_TOPIC_OR_PARTITION",
	"INVALID_FETCH_SIZE",
	"LEADER_NOT_AVAILABLE",
	"NOT_LEADER_OR_FOLLOWER",
	"REQUEST_TIMED_OUT",
	"BROKER_NOT_AVAILABLE",
	"REPLICA_NOT_AVAILABLE",
	"MESSAGE_TOO_LARGE",
	"STALE_CONTROLLER_EPOCH",
	"OFFSET_METADATA_TOO_LARGE",
	"NETWORK_EXCEPTION",
	"COORDINATOR_LOAD_IN_PROGRESS",
	"COORDINATOR_NOT_AVAILABLE",
	"NOT_COORDINATOR",
	"INVALID_TOPIC_EXCEPTION",
	"RECORD_LIST_TOO_LARGE",
	"NOT_ENOUGH_REPLICAS",
	"NOT_ENOUGH_REPLICAS_AFTER_APPEND",
	"INVALID_REQUIRED_ACKS",
	"ILLEGAL_GENERATION",
	"INCONSISTENT_GROUP_PROTOCOL",
	"INVALID_GROUP_ID",
	"UNKNOWN_MEMBER_ID",
	"INVALID_SESSION_TIMEOUT",
	"REBALANCE_IN_PROGRESS",
	"INVALID_COMMIT_OFFSET_SIZE",
	"TOPIC_AUTHORIZATION_FAILED",
	"GROUP_AUTHORIZATION_FAILED",
	"CLUSTER_AUTHORIZATION_FAILED",
	"INVALID_TIMESTAMP",
	"UNSUPPORTED_SASL_MECHANISM",
	"ILLEGAL_SASL_STATE",
	"UNSUPPORTED_VERSION",
	"TOPIC_ALREADY_EXISTS",
	"INVALID_PARTITIONS",
	"INVALID_REPLICATION_FACTOR",
	"INVALID_REPLICA_ASSIGNMENT",
	"INVALID_CONFIG",
	"NOT_CONTROLLER",
	"INVALID_REQUEST",
	"UNSUPPORTED_FOR_MESSAGE_FORMAT",
	"POLICY_VIOLATION",
	"OUT_OF_ORDER_SEQUENCE_NUMBER",
	"DUPLICATE_SEQUENCE_NUMBER",
	"INVALID_PRODUCER_EPOCH",
	"INVALID_TXN_STATE",
	"INVALID_PRODUCER_ID_MAPPING",
	"INVALID_TRANSACTION_TIMEOUT",
	"CONCURRENT_TRANSACTIONS",
	"TRANSACTION_COORDINATOR_FENCED",
	"TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
	"SECURITY_DISABLED",
	"OPERATION_NOT_ATTEMPTED",
	"KAFKA_STORAGE_ERROR",
	"LOG_DIR_NOT_FOUND",
	"SASL_AUTHENTICATION_FAILED",
	"UNKNOWN_PRODUCER_ID",
	"REASSIGNMENT_IN_PROGRESS",
	"DELEGATION_TOKEN_AUTH_DISABLED",
	"DELEGATION_TOKEN_NOT_FOUND",
	"DELEGATION_TOKEN_OWNER_MISMATCH",
	"DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
	"DELEGATION_TOKEN_AUTHORIZATION_FAILED",
	"DELEGATION_TOKEN_EXPIRED",
	"INVALID_PRINCIPAL_TYPE",
	"NON_EMPTY_GROUP",
	"GROUP_ID_NOT_FOUND",
	"FETCH_SESSION_ID_NOT_FOUND",
	"INVALID_FETCH_SESSION_EPOCH",
	"LISTENER_NOT_FOUND",
	"TOPIC_DELETION_DISABLED",
	"FENCED_LEADER_EPOCH",
	"UNKNOWN_LEADER_EPOCH",
	"UNSUPPORTED_COMPRESSION_TYPE",
	"STALE_BROKER_EPOCH",
	"OFFSET_NOT_AVAILABLE",
	"MEMBER_ID_REQUIRED",
	"PREFERRED_LEADER_NOT_AVAILABLE",
	"GROUP_MAX_SIZE_REACHED",
	"FENCED_INSTANCE_ID",
	"ELIGIBLE_LEADERS_NOT_AVAILABLE",
	"ELECTION_NOT_NEEDED",
	"NO_REASSIGNMENT_IN_PROGRESS",
	"GROUP_SUBSCRIBED_TO_TOPIC",
	"INVALID_RECORD",
	"UNSTABLE_OFFSET_COMMIT",
	"THROTTLING_QUOTA_EXCEEDED",
	"PRODUCER_FENCED",
	"RESOURCE_NOT_FOUND",
	"DUPLICATE_RESOURCE",
	"UNACCEPTABLE_CREDENTIAL",
	"INCONSISTENT_VOTER_SET",
	"INVALID_UPDATE_VERSION",
	"FEATURE_UPDATE_FAILED",
	"PRINCIPAL_DESERIALIZATION_FAILURE",
	"SNAPSHOT_NOT_FOUND",
	"POSITION_OUT_OF_RANGE",
	"UNKNOWN_TOPIC_ID",
	"DUPLICATE_BROKER_REGISTRATION",
	"BROKER_ID_NOT_REGISTERED",
	"INCONSISTENT_TOPIC_ID",
	"INCONSISTENT_CLUSTER_ID",
	"TRANSACTIONAL_ID_NOT_FOUND",
	"FETCH_SESSION_TOPIC_ID_ERROR",
	"INELIGIBLE_REPLICA",
	"NEW_LEADER_ELECTED",
	"OFFSET_MOVED_TO_TIERED_STORAGE",
	"FENCED_MEMBER_EPOCH",
	"UNRELEASED_INSTANCE_ID",
	"UNSUPPORTED_ASSIGNOR",
	"STALE_MEMBER_EPOCH",
	"MISMATCHED_ENDPOINT_TYPE",
	"UNSUPPORTED_ENDPOINT_TYPE",
	"UNKNOWN_CONTROLLER_ID",
	"UNKNOWN_SUBSCRIPTION_ID",
	"TELEMETRY_TOO_LARGE",
	"INVALID_REGISTRATION",
};

const char *kafka_api_name(int16_t api_key)
{
	return api_key >= 0 && api_key < API_KEYS ? apis[api_key].name : "Unknown";
}

const char *kafka_operation_name(int16_t api_key)
{
	return api_key >= 0 && api_key < API_KEYS ? apis[api_key].op : "unknown";
}

const char *kafka_error_name(int16_t code)
{
	if (code == -1)
		return "UNKNOWN_SERVER_ERROR";
	if (code >= 0 && (size_t)code < sizeof(error_names) / sizeof(error_names[0]))
		return error_names[code];
	return "_OTHER";
}

static bool api_known(int16_t key)
{
	return key >= 0 && key < API_KEYS;
}

static bool api_flexible(int16_t key, int16_t version)
{
	return api_known(key) && version >= apis[key].flexible;
}

static bool api_decoded(int16_t key)
{
	switch (key) {
	case KAFKA_API_PRODUCE:
	case KAFKA_API_FETCH:
	case KAFKA_API_METADATA:
	case KAFKA_API_OFFSET_COMMIT:
	case KAFKA_API_OFFSET_FETCH:
	case KAFKA_API_FIND_COORDINATOR:
	case KAFKA_API_JOIN_GROUP:
	case KAFKA_API_HEARTBEAT:
	case KAFKA_API_LEAVE_GROUP:
	case KAFKA_API_SYNC_GROUP:
	case KAFKA_API_API_VERSIONS:
		return true;
	default:
		return false;
	}
}

/* ---- topic ids ----------------------------------------------------------------------------- */

struct topic_id {
	uint8_t id[16];
	bool used;
	char name[KAFKA_TOPIC_MAX + 1];
};

/*
 * Open addressing; when full, the slot a new id hashes to is overwritten. The
 * slots (1 MiB) are allocated with the first id: only clients of Fetch v13+
 * and Metadata v10+ ever name topics by id.
 */
struct kafka_topic_ids {
	struct topic_id *slot; /* KAFKA_TOPIC_IDS_MAX of them, or NULL */
};

struct kafka_topic_ids *kafka_topic_ids_new(void)
{
	return calloc(1, sizeof(struct kafka_topic_ids));
}

void kafka_topic_ids_free(struct kafka_topic_ids *ids)
{
	if (ids)
		free(ids->slot);
	free(ids);
}

static size_t topic_id_hash(const uint8_t id[16])
{
	uint64_t h = 14695981039346656037ull;

	for (int i = 0; i < 16; i++)
		h = (h ^ id[i]) * 1099511628211ull;
	return (size_t)(h ^ h >> 29) % KAFKA_TOPIC_IDS_MAX;
}

int kafka_topic_ids_lookup(const struct kafka_topic_ids *ids, const uint8_t id[16], char *name)
{
	size_t h = topic_id_hash(id);

	if (!ids->slot)
		return -ENOENT;
	for (size_t i = 0; i < 8; i++) {
		const struct topic_id *t = &ids->slot[(h + i) % KAFKA_TOPIC_IDS_MAX];

		if (!t->used)
			break;
		if (memcmp(t->id, id, 16) == 0) {
			memcpy(name, t->name, sizeof(t->name));
			return 0;
		}
	}
	return -ENOENT;
}

static void topic_ids_put(struct kafka_topic_ids *ids, const uint8_t id[16], const char *name)
{
	static const uint8_t zero[16];
	size_t h = topic_id_hash(id);
	struct topic_id *t;

	if (!memcmp(id, zero, 16) || !name[0])
		return;
	if (!ids->slot && !(ids->slot = calloc(KAFKA_TOPIC_IDS_MAX, sizeof(*ids->slot))))
		return; /* unknown ids stay unnamed */
	t = &ids->slot[h];
	for (size_t i = 0; i < 8; i++) {
		struct topic_id *c = &ids->slot[(h + i) % KAFKA_TOPIC_IDS_MAX];

		if (!c->used || memcmp(c->id, id, 16) == 0) {
			t = c;
			break;
		}
	}
	memcpy(t->id, id, 16);
	t->used = true;
	strncpy(t->name, name, KAFKA_TOPIC_MAX);
	t->name[KAFKA_TOPIC_MAX] = '\0';
}

/* ---- frames: captured bytes at their offsets ------------------------------------------------- */

struct seg {
	uint64_t off; /* in the frame body */
	uint32_t len;
	uint32_t at; /* in the arena */
};

struct frame {
	uint64_t len; /* body bytes, after the size prefix */
	uint64_t got; /* body bytes that passed, captured or not */
	uint64_t start_ns, end_ns;
	bool decided; /* keep or not, from the header */
	bool keep;    /* the whole frame is decoded: keep every captured byte */
	uint8_t *arena;
	size_t arena_len, arena_cap;
	struct seg *segs;
	size_t n_segs, segs_cap;
};

static void frame_reset(struct frame *f)
{
	f->len = f->got = 0;
	f->start_ns = f->end_ns = 0;
	f->decided = f->keep = false;
	f->arena_len = 0;
	f->n_segs = 0;
}

static void frame_free(struct frame *f)
{
	free(f->arena);
	free(f->segs);
}

/* Keeps data at body offset off; what does not fit the limits is left a hole. */
static void frame_append(struct frame *f, uint64_t off, const uint8_t *data, size_t n)
{
	struct seg *last = f->n_segs ? &f->segs[f->n_segs - 1] : NULL;
	size_t limit = f->keep || !f->decided ? KAFKA_FRAME_KEEP : HEAD_KEEP;

	if (f->arena_len >= limit || !n)
		return;
	if (n > limit - f->arena_len)
		n = limit - f->arena_len;
	if (f->arena_len + n > f->arena_cap) {
		size_t cap = f->arena_cap ? f->arena_cap : 1024;
		uint8_t *a;

		while (cap < f->arena_len + n)
			cap *= 2;
		a = realloc(f->arena, cap);
		if (!a)
			return;
		f->arena = a;
		f->arena_cap = cap;
	}
	memcpy(f->arena + f->arena_len, data, n);
	if (last && last->off + last->len == off && last->at + last->len == f->arena_len) {
		last->len += (uint32_t)n;
	} else {
		if (f->n_segs == f->segs_cap) {
			size_t cap = f->segs_cap ? f->segs_cap * 2 : 8;
			struct seg *s = realloc(f->segs, cap * sizeof(*s));

			if (!s)
				return;
			f->segs = s;
			f->segs_cap = cap;
		}
		f->segs[f->n_segs++] = (struct seg){ .off = off,
						     .len = (uint32_t)n,
						     .at = (uint32_t)f->arena_len };
	}
	f->arena_len += n;
}

/* Copies n bytes at off into out; false when any of them is a hole or past the end. */
static bool frame_read(const struct frame *f, uint64_t off, void *out, size_t n)
{
	size_t lo = 0, hi = f->n_segs;

	if (off > f->len || n > f->len - off)
		return false;
	while (lo < hi) { /* the last segment starting at or before off */
		size_t mid = (lo + hi) / 2;

		if (f->segs[mid].off <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return false;
	const struct seg *s = &f->segs[lo - 1];
	if (off + n > s->off + s->len)
		return false;
	memcpy(out, f->arena + s->at + (off - s->off), n);
	return true;
}

/* ---- reading fields ------------------------------------------------------------------------- */

enum rd_err {
	RD_OK = 0,
	RD_GAP, /* a byte the capture did not copy */
	RD_BAD, /* not what the protocol allows */
};

struct rd {
	const struct frame *f;
	uint64_t pos;
	enum rd_err err;
	bool flex;
};

static bool rd_get(struct rd *r, void *out, size_t n)
{
	if (r->err)
		return false;
	if (r->pos > r->f->len || n > r->f->len - r->pos) {
		r->err = RD_BAD;
		return false;
	}
	if (!frame_read(r->f, r->pos, out, n)) {
		r->err = RD_GAP;
		return false;
	}
	r->pos += n;
	return true;
}

static void rd_skip(struct rd *r, uint64_t n)
{
	if (r->err)
		return;
	if (r->pos > r->f->len || n > r->f->len - r->pos)
		r->err = RD_BAD;
	else
		r->pos += n;
}

static uint64_t be(const uint8_t *b, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | b[i];
	return v;
}

static int8_t rd_i8(struct rd *r)
{
	uint8_t b[1] = { 0 };

	rd_get(r, b, 1);
	return (int8_t)b[0];
}

static int16_t rd_i16(struct rd *r)
{
	uint8_t b[2] = { 0 };

	rd_get(r, b, 2);
	return (int16_t)be(b, 2);
}

static int32_t rd_i32(struct rd *r)
{
	uint8_t b[4] = { 0 };

	rd_get(r, b, 4);
	return (int32_t)be(b, 4);
}

static int64_t rd_i64(struct rd *r)
{
	uint8_t b[8] = { 0 };

	rd_get(r, b, 8);
	return (int64_t)be(b, 8);
}

static uint64_t rd_uvarint(struct rd *r)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (!rd_get(r, &b, 1))
			return 0;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->err = RD_BAD;
	return 0;
}

/* A length as the version encodes it: int16/int32, or compact (unsigned varint, +1). -1: null. */
static int64_t rd_len(struct rd *r, bool wide)
{
	int64_t n;

	if (r->flex) {
		uint64_t u = rd_uvarint(r);

		if (u > (uint64_t)INT32_MAX + 1) {
			r->err = RD_BAD;
			return -1; /* before u - 1 could overflow */
		}
		n = (int64_t)u - 1;
	} else {
		n = wide ? rd_i32(r) : rd_i16(r);
	}
	if (r->err)
		return -1;
	if (n < -1)
		r->err = RD_BAD;
	return n;
}

/* An array's length; null arrays are 0. Past what the frame could hold is bad. */
static int64_t rd_array(struct rd *r)
{
	int64_t n = rd_len(r, true);

	if (r->err)
		return 0;
	if (n > ARRAY_SANE || (n > 0 && (uint64_t)n > r->f->len - r->pos)) {
		r->err = RD_BAD;
		return 0;
	}
	return n < 0 ? 0 : n;
}

/* A (nullable) string into out (cut to cap - 1); returns its length, -1 null. */
static int64_t rd_str(struct rd *r, char *out, size_t cap)
{
	int64_t n = rd_len(r, false);
	size_t take;

	if (out && cap)
		out[0] = '\0';
	if (r->err || n <= 0)
		return n;
	take = out && cap ? ((uint64_t)n < cap - 1 ? (size_t)n : cap - 1) : 0;
	if (take && !rd_get(r, out, take))
		return -1;
	if (take)
		out[take] = '\0';
	rd_skip(r, (uint64_t)n - take);
	return r->err ? -1 : n;
}

/* A string that must not reach a label in any form but whole (topics, groups): "" if cut. */
static void rd_name(struct rd *r, char *out, size_t cap)
{
	int64_t n = rd_str(r, out, cap);

	if (n >= (int64_t)cap)
		out[0] = '\0';
	for (size_t i = 0; out[i]; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c < 0x20 ||
		    c >= 0x7f) { /* Kafka names are [a-zA-Z0-9._-]; anything else: none */
			out[0] = '\0';
			return;
		}
	}
}

static void rd_tags(struct rd *r)
{
	uint64_t n;

	if (!r->flex)
		return;
	n = rd_uvarint(r);
	if (n > ARRAY_SANE)
		r->err = RD_BAD;
	for (uint64_t i = 0; i < n && !r->err; i++) {
		rd_uvarint(r);
		rd_skip(r, rd_uvarint(r));
	}
}

/* ---- streams ------------------------------------------------------------------------------ */

struct half {
	uint8_t size_buf[4];
	unsigned size_have;
	bool in_frame;
	bool lost; /* framing lost to a gap: waiting for a chunk that starts a frame */
	struct frame f;
};

/* A request waiting for its response, with what the response will be matched against. */
struct pending {
	int32_t corr;
	int16_t key, version;
	bool acks0;
	uint64_t start_ns, end_ns;
	char group[KAFKA_GROUP_MAX];
	struct kafka_topic *topics;
	size_t n_topics, topics_cap;
	struct kafka_partition *parts;
	size_t n_parts, parts_cap;
	bool truncated;
	bool partial;		  /* a capture gap cut the request's structure short */
	uint8_t (*topic_ids)[16]; /* Fetch v13+: the id of each topic, parallel to topics */
};

struct kafka_stream {
	enum kafka_role role;
	bool not_kafka;
	bool framed_one; /* a frame was framed: later oddities are desyncs, not -EPROTO */
	struct half half[2];
	struct pending *pending[KAFKA_PENDING_MAX];
	size_t n_pending;
	struct kafka_topic_ids *ids;
	bool own_ids;
	char group[KAFKA_GROUP_MAX];
	int16_t max_version[API_KEYS]; /* from ApiVersions; -1 unknown */
	struct kafka_stream_stats st;
};

static enum kafka_dir request_dir(const struct kafka_stream *s)
{
	return s->role == KAFKA_ROLE_SERVER ? KAFKA_DIR_IN : KAFKA_DIR_OUT;
}

struct kafka_stream *kafka_stream_new(enum kafka_role role, struct kafka_topic_ids *ids)
{
	struct kafka_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->role = role;
	s->ids = ids;
	if (!ids) {
		s->ids = kafka_topic_ids_new();
		s->own_ids = true;
		if (!s->ids) {
			free(s);
			return NULL;
		}
	}
	for (int i = 0; i < API_KEYS; i++)
		s->max_version[i] = -1;
	return s;
}

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	free(p->topics);
	free(p->parts);
	free(p->topic_ids);
	free(p);
}

void kafka_stream_free(struct kafka_stream *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_pending; i++)
		pending_free(s->pending[i]);
	frame_free(&s->half[0].f);
	frame_free(&s->half[1].f);
	if (s->own_ids)
		kafka_topic_ids_free(s->ids);
	free(s);
}

const char *kafka_stream_group(const struct kafka_stream *s)
{
	return s->group;
}

void kafka_stream_get_stats(const struct kafka_stream *s, struct kafka_stream_stats *st)
{
	*st = s->st;
	st->role = s->role;
	st->not_kafka = s->not_kafka;
}

void kafka_stream_close(struct kafka_stream *s, uint64_t ts_ns)
{
	(void)ts_ns;
	s->st.lost += s->n_pending;
	for (size_t i = 0; i < s->n_pending; i++)
		pending_free(s->pending[i]);
	s->n_pending = 0;
}

/* ---- pending requests: topics and partitions ------------------------------------------------ */

/* The index of the topic named name (added when new); -1 past the limit. */
static int64_t pending_topic(struct pending *p, const char *name, const uint8_t *id)
{
	for (size_t i = 0; i < p->n_topics; i++) {
		if (id && p->topic_ids ? memcmp(p->topic_ids[i], id, 16) == 0 :
					 strcmp(p->topics[i].name, name) == 0)
			return (int64_t)i;
	}
	if (p->n_topics >= KAFKA_TOPICS_MAX) {
		p->truncated = true;
		return -1;
	}
	if (p->n_topics == p->topics_cap) {
		size_t cap = p->topics_cap ? p->topics_cap * 2 : 4;
		struct kafka_topic *t = realloc(p->topics, cap * sizeof(*t));

		if (!t)
			return -1;
		p->topics = t;
		if (id) {
			uint8_t(*ids)[16] = realloc(p->topic_ids, cap * sizeof(*ids));

			if (!ids)
				return -1;
			p->topic_ids = ids;
		}
		p->topics_cap = cap;
	}
	if (id && !p->topic_ids)
		return -1; /* ids appear in a frame from its first topic on, never midway */
	strcpy(p->topics[p->n_topics].name, name);
	if (id)
		memcpy(p->topic_ids[p->n_topics], id, 16);
	return (int64_t)p->n_topics++;
}

/* The partition of topic t (added when new); NULL past the limit. */
static struct kafka_partition *pending_part(struct pending *p, int64_t t, int32_t partition)
{
	struct kafka_partition *kp;

	if (t < 0)
		return NULL;
	for (size_t i = p->n_parts; i-- > 0;)
		if (p->parts[i].topic == (uint32_t)t && p->parts[i].partition == partition)
			return &p->parts[i];
	if (p->n_parts >= KAFKA_PARTS_MAX) {
		p->truncated = true;
		return NULL;
	}
	if (p->n_parts == p->parts_cap) {
		size_t cap = p->parts_cap ? p->parts_cap * 2 : 8;
		struct kafka_partition *n = realloc(p->parts, cap * sizeof(*n));

		if (!n)
			return NULL;
		p->parts = n;
		p->parts_cap = cap;
	}
	kp = &p->parts[p->n_parts++];
	*kp = (struct kafka_partition){
		.topic = (uint32_t)t,
		.partition = partition,
		.fetch_offset = -1,
		.high_watermark = -1,
		.next_offset = -1,
	};
	return kp;
}

/* ---- records: batch headers only ------------------------------------------------------------- */

/*
 * Counts the records of the record batches (or legacy messages) in the body
 * range [start, end). fetch_offset >= 0: a Fetch response, where records
 * before it are not delivered and a batch cut by the end is not either.
 */
static void count_records(struct kafka_stream *s, const struct frame *f, uint64_t start,
			  uint64_t end, struct kafka_partition *kp)
{
	bool tail_unseen = false; /* the last batch so far was not read: its offsets are unknown */
	uint64_t o = start;

	while (o < end) {
		uint8_t h[BATCH_HEADER];
		int64_t base, last, blen;
		uint8_t magic;

		if (end - o < 12)
			break; /* a cut batch: the client reads past it in its next fetch */
		if (!frame_read(f, o, h, 12)) {
			kp->uncounted++; /* nothing after it can be found */
			s->st.uncounted++;
			tail_unseen = true;
			break;
		}
		base = (int64_t)be(h, 8);
		blen = (int32_t)be(h + 8, 4);
		/* Offsets are never negative; the bound keeps base + delta + 1 in range. */
		if (base < 0 || base > INT64_MAX - INT32_MAX - 1) {
			s->st.parse_errors++;
			break;
		}
		if (blen < LEGACY_HEADER - 12 || (uint64_t)blen + 12 > end - o)
			break; /* cut by the end of the response, or not a batch */
		magic = frame_read(f, o, h, LEGACY_HEADER) ? h[16] : 0xff;
		if (magic == 2 && (blen + 12 < BATCH_HEADER || !frame_read(f, o, h, BATCH_HEADER)))
			magic = 0xff;
		if (magic == 0xff) {
			kp->uncounted++;
			s->st.uncounted++;
			tail_unseen = true;
			o += 12 + (uint64_t)blen;
			continue;
		}
		tail_unseen = false;
		if (magic == 2) {
			uint16_t attributes = (uint16_t)be(h + 21, 2);
			int64_t delta = (int32_t)be(h + 23, 4);
			int64_t count = (int32_t)be(h + 57, 4);

			last = base + delta;
			if (attributes & 0x20) {
				/* A control batch (transaction marker): no messages. */
			} else if (kp->fetch_offset < 0 || base >= kp->fetch_offset) {
				kp->records += count > 0 ? (uint64_t)count : 0;
			} else if (last >= kp->fetch_offset && count == delta + 1) {
				kp->records += (uint64_t)(last + 1 - kp->fetch_offset);
			} else if (last >= kp->fetch_offset) {
				/* Compacted: which of its records precede the offset is unknown. */
				kp->uncounted++;
				s->st.uncounted++;
			}
		} else if (magic <= 1) {
			last = base;
			if (h[17] & 0x07) {
				/* Compressed: the wrapper's inner messages need decompressing. */
				kp->uncounted++;
				s->st.uncounted++;
			} else if (kp->fetch_offset < 0 || base >= kp->fetch_offset) {
				kp->records++;
			}
		} else {
			s->st.parse_errors++;
			break;
		}
		if (kp->fetch_offset >= 0 && last + 1 > kp->next_offset)
			kp->next_offset = last + 1;
		o += 12 + (uint64_t)blen;
	}
	/* Where the consumer goes next is past records nobody saw: no lag from this one. */
	if (tail_unseen && kp->fetch_offset >= 0)
		kp->next_offset = -1;
}

/* A records field (bytes, nullable): counted, then skipped. */
static void rd_records(struct kafka_stream *s, struct rd *r, struct kafka_partition *kp)
{
	int64_t n = rd_len(r, true);
	uint64_t start = r->pos;

	if (r->err || n <= 0)
		return;
	rd_skip(r, (uint64_t)n);
	if (!r->err && kp)
		count_records(s, r->f, start, start + (uint64_t)n, kp);
}

/* ---- requests -------------------------------------------------------------------------------- */

static void copy_group(char *dst, const char *src)
{
	if (src[0])
		memcpy(dst, src, KAFKA_GROUP_MAX);
}

static void parse_produce_req(struct kafka_stream *s, struct rd *r, struct pending *p)
{
	int64_t nt;

	if (p->version >= 3)
		rd_str(r, NULL, 0); /* transactional_id */
	p->acks0 = rd_i16(r) == 0;
	rd_i32(r); /* timeout */
	nt = rd_array(r);
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		int64_t np, t;

		rd_name(r, name, sizeof(name));
		t = r->err ? -1 : pending_topic(p, name, NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);
			struct kafka_partition *kp = r->err ? NULL : pending_part(p, t, idx);

			rd_records(s, r, kp);
			rd_tags(r);
		}
		rd_tags(r);
	}
}

static void parse_fetch_req(struct rd *r, struct pending *p, struct kafka_topic_ids *ids)
{
	int16_t v = p->version;
	int64_t nt;

	if (v <= 14)
		rd_i32(r); /* replica_id */
	rd_i32(r);	   /* max_wait_ms */
	rd_i32(r);	   /* min_bytes */
	if (v >= 3)
		rd_i32(r); /* max_bytes */
	if (v >= 4)
		rd_i8(r); /* isolation_level */
	if (v >= 7) {
		rd_i32(r); /* session_id */
		rd_i32(r); /* session_epoch */
	}
	nt = rd_array(r);
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1] = "";
		uint8_t id[16];
		int64_t np, t;

		if (v >= 13) {
			rd_get(r, id, 16);
			if (!r->err && kafka_topic_ids_lookup(ids, id, name))
				name[0] = '\0';
		} else {
			rd_name(r, name, sizeof(name));
		}
		t = r->err ? -1 : pending_topic(p, name, v >= 13 ? id : NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);
			struct kafka_partition *kp;
			int64_t off;

			if (v >= 9)
				rd_i32(r); /* current_leader_epoch */
			off = rd_i64(r);
			if (v >= 12)
				rd_i32(r); /* last_fetched_epoch */
			if (v >= 5)
				rd_i64(r); /* log_start_offset */
			rd_i32(r);	   /* partition_max_bytes */
			rd_tags(r);
			kp = r->err ? NULL : pending_part(p, t, idx);
			if (kp) {
				kp->fetch_offset = off < 0 ? -1 : off;
				kp->next_offset = kp->fetch_offset;
			}
		}
		rd_tags(r);
	}
	/* forgotten_topics_data and rack_id: nothing needed. */
}

static void parse_offset_commit_req(struct rd *r, struct pending *p)
{
	int16_t v = p->version;
	int64_t nt;

	rd_name(r, p->group, sizeof(p->group));
	if (v >= 1) {
		rd_i32(r);	    /* generation */
		rd_str(r, NULL, 0); /* member_id */
	}
	if (v >= 7)
		rd_str(r, NULL, 0); /* group_instance_id */
	if (v >= 2 && v <= 4)
		rd_i64(r); /* retention_time_ms */
	nt = rd_array(r);
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		int64_t np, t;

		rd_name(r, name, sizeof(name));
		t = r->err ? -1 : pending_topic(p, name, NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);

			rd_i64(r); /* committed_offset */
			if (v >= 6)
				rd_i32(r); /* committed_leader_epoch */
			if (v == 1)
				rd_i64(r);  /* commit_timestamp */
			rd_str(r, NULL, 0); /* committed_metadata */
			rd_tags(r);
			if (!r->err)
				pending_part(p, t, idx);
		}
		rd_tags(r);
	}
}

static void parse_topics_partition_indexes(struct rd *r, struct pending *p)
{
	int64_t nt = rd_array(r);

	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		int64_t np, t;

		rd_name(r, name, sizeof(name));
		t = r->err ? -1 : pending_topic(p, name, NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);

			if (!r->err)
				pending_part(p, t, idx);
		}
		rd_tags(r);
	}
}

static void parse_offset_fetch_req(struct rd *r, struct pending *p)
{
	if (p->version <= 7) {
		rd_name(r, p->group, sizeof(p->group));
		parse_topics_partition_indexes(r, p);
		return;
	}
	/* v8+: groups; the first names the exchange's group. */
	int64_t ng = rd_array(r);

	for (int64_t g = 0; g < ng && !r->err; g++) {
		char group[KAFKA_GROUP_MAX];

		rd_name(r, group, sizeof(group));
		if (g == 0)
			memcpy(p->group, group, sizeof(group));
		if (p->version >= 9) {
			rd_str(r, NULL, 0); /* member_id */
			rd_i32(r);	    /* member_epoch */
		}
		parse_topics_partition_indexes(r, p);
		rd_tags(r);
	}
}

static void parse_find_coordinator_req(struct rd *r, struct pending *p)
{
	char key[KAFKA_GROUP_MAX];
	int8_t type = 0;

	if (p->version <= 3) {
		rd_name(r, key, sizeof(key));
		if (p->version >= 1)
			type = rd_i8(r);
	} else {
		type = rd_i8(r);
		if (rd_array(r) > 0)
			rd_name(r, key, sizeof(key));
		else
			key[0] = '\0';
	}
	if (!r->err && type == 0) /* 0: a group, 1: a transactional id */
		memcpy(p->group, key, sizeof(key));
}

/* The request's body, by API. The group APIs start with the group id. */
static void parse_request_body(struct kafka_stream *s, struct rd *r, struct pending *p)
{
	switch (p->key) {
	case KAFKA_API_PRODUCE:
		parse_produce_req(s, r, p);
		break;
	case KAFKA_API_FETCH:
		parse_fetch_req(r, p, s->ids);
		break;
	case KAFKA_API_OFFSET_COMMIT:
		parse_offset_commit_req(r, p);
		break;
	case KAFKA_API_OFFSET_FETCH:
		parse_offset_fetch_req(r, p);
		break;
	case KAFKA_API_FIND_COORDINATOR:
		parse_find_coordinator_req(r, p);
		break;
	case KAFKA_API_JOIN_GROUP:
	case KAFKA_API_HEARTBEAT:
	case KAFKA_API_LEAVE_GROUP:
	case KAFKA_API_SYNC_GROUP:
		rd_name(r, p->group, sizeof(p->group));
		break;
	default:
		break;
	}
	if (r->err == RD_BAD)
		s->st.parse_errors++;
	/* A coordinator asked for a group (key type 0) names this client's group too. */
	if (p->group[0])
		copy_group(s->group, p->group);
}

/* ---- responses ------------------------------------------------------------------------------- */

static void parse_produce_resp(struct kafka_stream *s, struct rd *r, struct pending *p)
{
	int16_t v = p->version;
	int64_t nt = rd_array(r);

	(void)s;
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		int64_t np, t;

		rd_name(r, name, sizeof(name));
		t = r->err ? -1 : pending_topic(p, name, NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);
			int16_t err = rd_i16(r);
			struct kafka_partition *kp;

			rd_i64(r); /* base_offset */
			if (v >= 2)
				rd_i64(r); /* log_append_time_ms */
			if (v >= 5)
				rd_i64(r); /* log_start_offset */
			if (v >= 8) {
				int64_t ne = rd_array(r);

				for (int64_t k = 0; k < ne && !r->err; k++) {
					rd_i32(r);
					rd_str(r, NULL, 0);
					rd_tags(r);
				}
				rd_str(r, NULL, 0); /* error_message */
			}
			rd_tags(r);
			kp = r->err ? NULL : pending_part(p, t, idx);
			if (kp) {
				kp->error = err;
				kp->answered = true;
			}
		}
		rd_tags(r);
	}
}

static void parse_fetch_resp(struct kafka_stream *s, struct rd *r, struct pending *p,
			     int16_t *top_error)
{
	int16_t v = p->version;
	int64_t nt;

	if (v >= 1)
		rd_i32(r); /* throttle */
	if (v >= 7) {
		*top_error = rd_i16(r);
		rd_i32(r); /* session_id */
	}
	nt = rd_array(r);
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1] = "";
		uint8_t id[16];
		int64_t np, t;

		if (v >= 13) {
			rd_get(r, id, 16);
			if (!r->err && kafka_topic_ids_lookup(s->ids, id, name))
				name[0] = '\0';
		} else {
			rd_name(r, name, sizeof(name));
		}
		t = r->err ? -1 : pending_topic(p, name, v >= 13 ? id : NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);
			int16_t err = rd_i16(r);
			int64_t hw = rd_i64(r);
			struct kafka_partition *kp;

			if (v >= 4)
				rd_i64(r); /* last_stable_offset */
			if (v >= 5)
				rd_i64(r); /* log_start_offset */
			if (v >= 4) {
				int64_t na = rd_array(r);

				/* Stepped over, not read: a walker does not send them. */
				for (int64_t k = 0; k < na && !r->err; k++) {
					rd_skip(r, 16); /* producer_id, first_offset */
					rd_tags(r);
				}
			}
			if (v >= 11)
				rd_i32(r); /* preferred_read_replica */
			kp = r->err ? NULL : pending_part(p, t, idx);
			if (kp) {
				kp->error = err;
				kp->answered = true;
				kp->high_watermark = hw;
			}
			rd_records(s, r, kp);
			rd_tags(r);
		}
		rd_tags(r);
	}
}

static void parse_metadata_resp(struct kafka_stream *s, struct rd *r, struct pending *p)
{
	int16_t v = p->version;
	int64_t nb, nt;

	if (v >= 3)
		rd_i32(r); /* throttle */
	nb = rd_array(r);
	for (int64_t i = 0; i < nb && !r->err; i++) {
		rd_i32(r);	    /* node_id */
		rd_str(r, NULL, 0); /* host */
		rd_i32(r);	    /* port */
		if (v >= 1)
			rd_str(r, NULL, 0); /* rack */
		rd_tags(r);
	}
	if (v >= 2)
		rd_str(r, NULL, 0); /* cluster_id */
	if (v >= 1)
		rd_i32(r); /* controller_id */
	nt = rd_array(r);
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		uint8_t id[16];
		int64_t np;

		rd_i16(r); /* error_code */
		rd_name(r, name, sizeof(name));
		if (v >= 10 && rd_get(r, id, 16))
			topic_ids_put(s->ids, id, name);
		if (v >= 1)
			rd_i8(r); /* is_internal */
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			rd_i16(r);
			rd_i32(r);
			rd_i32(r);
			if (v >= 7)
				rd_i32(r);
			rd_skip(r, 4 * (uint64_t)rd_array(r)); /* replicas */
			rd_skip(r, 4 * (uint64_t)rd_array(r)); /* isr */
			if (v >= 5)
				rd_skip(r, 4 * (uint64_t)rd_array(r)); /* offline */
			rd_tags(r);
		}
		if (v >= 8)
			rd_i32(r); /* topic_authorized_operations */
		rd_tags(r);
	}
}

static void parse_offset_commit_resp(struct rd *r, struct pending *p)
{
	int64_t nt;

	if (p->version >= 3)
		rd_i32(r); /* throttle */
	nt = rd_array(r);
	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		int64_t np, t;

		rd_name(r, name, sizeof(name));
		t = r->err ? -1 : pending_topic(p, name, NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);
			int16_t err = rd_i16(r);
			struct kafka_partition *kp;

			rd_tags(r);
			kp = r->err ? NULL : pending_part(p, t, idx);
			if (kp) {
				kp->error = err;
				kp->answered = true;
			}
		}
		rd_tags(r);
	}
}

static void parse_offset_fetch_topics(struct rd *r, struct pending *p, int16_t v)
{
	int64_t nt = rd_array(r);

	for (int64_t i = 0; i < nt && !r->err; i++) {
		char name[KAFKA_TOPIC_MAX + 1];
		int64_t np, t;

		rd_name(r, name, sizeof(name));
		t = r->err ? -1 : pending_topic(p, name, NULL);
		np = rd_array(r);
		for (int64_t j = 0; j < np && !r->err; j++) {
			int32_t idx = rd_i32(r);
			struct kafka_partition *kp;
			int16_t err;

			rd_i64(r); /* committed_offset */
			if (v >= 5)
				rd_i32(r);  /* committed_leader_epoch */
			rd_str(r, NULL, 0); /* metadata */
			err = rd_i16(r);
			rd_tags(r);
			kp = r->err ? NULL : pending_part(p, t, idx);
			if (kp) {
				kp->error = err;
				kp->answered = true;
			}
		}
		rd_tags(r);
	}
}

static void parse_offset_fetch_resp(struct rd *r, struct pending *p, int16_t *top_error)
{
	int16_t v = p->version;

	if (v >= 3)
		rd_i32(r); /* throttle */
	if (v <= 7) {
		parse_offset_fetch_topics(r, p, v);
		if (v >= 2)
			*top_error = rd_i16(r);
		return;
	}
	int64_t ng = rd_array(r);

	for (int64_t g = 0; g < ng && !r->err; g++) {
		int16_t err;

		rd_str(r, NULL, 0); /* group_id */
		parse_offset_fetch_topics(r, p, v);
		err = rd_i16(r);
		if (!*top_error)
			*top_error = err;
		rd_tags(r);
	}
}

static void parse_api_versions_resp(struct kafka_stream *s, struct rd *r, int16_t *top_error)
{
	int64_t n;

	*top_error = rd_i16(r);
	if (*top_error == 35 /* UNSUPPORTED_VERSION */) {
		/*
		 * The version handshake (KIP-511): a broker refuses a newer
		 * ApiVersions with the versions it has (as v0, whatever was asked),
		 * and the client asks again. Every librdkafka connection starts so:
		 * not a failure, for the RED metrics, the spans or the alerts.
		 */
		*top_error = 0;
		return;
	}
	if (*top_error)
		return;
	n = rd_array(r);
	for (int64_t i = 0; i < n && !r->err; i++) {
		int16_t key = rd_i16(r);

		rd_i16(r); /* min */
		int16_t max = rd_i16(r);
		rd_tags(r);
		if (!r->err && api_known(key))
			s->max_version[key] = max;
	}
}

/* Throttle, then the error code: the shape of the group APIs' responses. */
static void parse_error_after_throttle(struct rd *r, bool throttle, int16_t *top_error)
{
	if (throttle)
		rd_i32(r);
	*top_error = rd_i16(r);
}

static void parse_response_body(struct kafka_stream *s, struct rd *r, struct pending *p,
				int16_t *top_error)
{
	int16_t v = p->version;

	switch (p->key) {
	case KAFKA_API_PRODUCE:
		parse_produce_resp(s, r, p);
		break;
	case KAFKA_API_FETCH:
		parse_fetch_resp(s, r, p, top_error);
		break;
	case KAFKA_API_METADATA:
		parse_metadata_resp(s, r, p);
		break;
	case KAFKA_API_OFFSET_COMMIT:
		parse_offset_commit_resp(r, p);
		break;
	case KAFKA_API_OFFSET_FETCH:
		parse_offset_fetch_resp(r, p, top_error);
		break;
	case KAFKA_API_FIND_COORDINATOR:
		if (v <= 3)
			parse_error_after_throttle(r, v >= 1, top_error);
		break;
	case KAFKA_API_JOIN_GROUP:
		parse_error_after_throttle(r, v >= 2, top_error);
		break;
	case KAFKA_API_HEARTBEAT:
	case KAFKA_API_LEAVE_GROUP:
	case KAFKA_API_SYNC_GROUP:
		parse_error_after_throttle(r, v >= 1, top_error);
		break;
	case KAFKA_API_API_VERSIONS:
		parse_api_versions_resp(s, r, top_error);
		break;
	default:
		break;
	}
}

/* ---- exchanges ------------------------------------------------------------------------------ */

static void report(struct kafka_stream *s, struct pending *p, bool answered, int16_t top_error,
		   bool complete, kafka_exchange_fn fn, void *ctx)
{
	uint32_t uncounted = 0;

	for (size_t i = 0; i < p->n_parts; i++)
		uncounted += p->parts[i].uncounted;
	/* Records hidden by a cut structure: at least one batch nobody could count. */
	if (!complete && (p->key == KAFKA_API_PRODUCE || p->key == KAFKA_API_FETCH)) {
		uncounted++;
		s->st.uncounted++;
	}

	struct kafka_exchange ex = {
		.role = s->role,
		.uncounted = uncounted,
		.api_key = p->key,
		.api_version = p->version,
		.correlation_id = p->corr,
		.error = top_error,
		.answered = answered,
		.complete = complete,
		.truncated = p->truncated,
		.group = p->group[0] ? p->group : s->group,
		.request_start_ns = p->start_ns,
		.response_end_ns = p->end_ns,
		.topics = p->topics,
		.n_topics = p->n_topics,
		.parts = p->parts,
		.n_parts = p->n_parts,
	};

	s->st.exchanges++;
	if (fn)
		fn(&ex, ctx);
}

static void pending_add(struct kafka_stream *s, struct pending *p)
{
	if (s->n_pending == KAFKA_PENDING_MAX) {
		pending_free(s->pending[0]);
		memmove(&s->pending[0], &s->pending[1], (KAFKA_PENDING_MAX - 1) * sizeof(p));
		s->n_pending--;
		s->st.lost++;
	}
	s->pending[s->n_pending++] = p;
}

static struct pending *pending_find(const struct kafka_stream *s, int32_t corr, size_t *at)
{
	for (size_t i = 0; i < s->n_pending; i++) {
		if (s->pending[i]->corr == corr) {
			*at = i;
			return s->pending[i];
		}
	}
	return NULL;
}

static void pending_remove(struct kafka_stream *s, size_t at)
{
	memmove(&s->pending[at], &s->pending[at + 1], (s->n_pending - at - 1) * sizeof(void *));
	s->n_pending--;
}

/*
 * A request header: key, version, correlation id, client id; tagged fields when
 * flexible. RD_OK, RD_GAP when its bytes were not all seen, RD_BAD when they
 * cannot be a request header.
 */
static enum rd_err request_header(const struct frame *f, int16_t *key, int16_t *version,
				  int32_t *corr, uint64_t *body)
{
	struct rd r = { .f = f };

	*key = rd_i16(&r);
	*version = rd_i16(&r);
	*corr = rd_i32(&r);
	if (r.err)
		return r.err;
	if (!api_known(*key) || *version < 0 || *version > 30)
		return RD_BAD;
	if (!(*key == 7 && *version == 0))
		rd_str(&r, NULL, 0); /* client_id: never compact, even in header v2 */
	r.flex = api_flexible(*key, *version);
	rd_tags(&r);
	*body = r.pos;
	return r.err;
}

static bool read_request_header(const struct frame *f, int16_t *key, int16_t *version,
				int32_t *corr, uint64_t *body)
{
	return request_header(f, key, version, corr, body) == RD_OK;
}

static void on_request(struct kafka_stream *s, const struct frame *f, kafka_exchange_fn fn,
		       void *ctx)
{
	struct pending *p;
	int16_t key, version;
	int32_t corr;
	uint64_t body;

	if (!read_request_header(f, &key, &version, &corr, &body)) {
		s->st.parse_errors++;
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->corr = corr;
	p->key = key;
	p->version = version;
	p->start_ns = f->start_ns;
	p->end_ns = f->end_ns;
	if (f->keep) {
		struct rd r = { .f = f, .pos = body, .flex = api_flexible(key, version) };

		parse_request_body(s, &r, p);
		p->partial = r.err != RD_OK;
	}
	if (p->acks0 && p->key == KAFKA_API_PRODUCE) {
		/* No response comes: the records were sent, with nothing to say otherwise. */
		report(s, p, false, 0, !p->partial, fn, ctx);
		pending_free(p);
		return;
	}
	pending_add(s, p);
}

static void on_response(struct kafka_stream *s, const struct frame *f, kafka_exchange_fn fn,
			void *ctx)
{
	struct rd r = { .f = f };
	struct pending *p;
	int16_t top_error = 0;
	size_t at;
	int32_t corr = rd_i32(&r);

	if (r.err || !(p = pending_find(s, corr, &at))) {
		s->st.lost++;
		return;
	}
	pending_remove(s, at);
	p->end_ns = f->end_ns;
	/* ApiVersions answers with header v0 whatever the version: a client may not know yet. */
	r.flex = api_flexible(p->key, p->version) && p->key != KAFKA_API_API_VERSIONS;
	rd_tags(&r);
	r.flex = api_flexible(p->key, p->version);
	if (f->keep)
		parse_response_body(s, &r, p, &top_error);
	else if (api_decoded(p->key))
		r.err = RD_GAP; /* its header bytes were not seen */
	if (r.err == RD_BAD)
		s->st.parse_errors++;
	report(s, p, true, top_error, r.err == RD_OK && !p->partial, fn, ctx);
	pending_free(p);
}

/* ---- framing ---------------------------------------------------------------------------------- */

/* The first bytes of a frame in dir are known: whether to keep all of its bytes. */
static void frame_decide(struct kafka_stream *s, enum kafka_dir dir, struct frame *f)
{
	int16_t key, version;
	int32_t corr;
	uint64_t body;
	size_t at;

	f->decided = true;
	if (dir == request_dir(s)) {
		enum rd_err e = request_header(f, &key, &version, &corr, &body);

		/* The very first request of a connection that cannot be one: not Kafka. */
		if (e == RD_BAD && !s->framed_one)
			s->not_kafka = true;
		f->keep = e == RD_OK && api_decoded(key);
	} else {
		struct rd r = { .f = f };
		struct pending *p;

		corr = rd_i32(&r);
		p = r.err ? NULL : pending_find(s, corr, &at);
		f->keep = p && api_decoded(p->key);
	}
}

/* Decides the role from a first frame that reads as a request, when the caller could not. */
static void learn_role(struct kafka_stream *s, enum kafka_dir dir, const struct frame *f)
{
	int16_t key, version;
	int32_t corr;
	uint64_t body;

	if (s->role != KAFKA_ROLE_UNKNOWN || !read_request_header(f, &key, &version, &corr, &body))
		return;
	s->role = dir == KAFKA_DIR_OUT ? KAFKA_ROLE_CLIENT : KAFKA_ROLE_SERVER;
}

static void frame_done(struct kafka_stream *s, enum kafka_dir dir, struct frame *f,
		       kafka_exchange_fn fn, void *ctx)
{
	s->st.frames++;
	s->framed_one = true;
	if (s->role == KAFKA_ROLE_UNKNOWN)
		learn_role(s, dir, f);
	if (s->role == KAFKA_ROLE_UNKNOWN)
		return;
	if (!f->decided)
		frame_decide(s, dir, f);
	if (dir == request_dir(s))
		on_request(s, f, fn, ctx);
	else
		on_response(s, f, fn, ctx);
}

static bool size_ok(uint32_t size)
{
	return size >= 4 && size <= KAFKA_FRAME_MAX;
}

/*
 * After framing was lost: does this chunk, which starts where a syscall started,
 * start a frame? A request of a known API and version the connection allows, or a
 * response to a request that waits.
 */
static bool starts_frame(const struct kafka_stream *s, enum kafka_dir dir, const uint8_t *d,
			 size_t len)
{
	uint32_t size;
	size_t at;

	if (len < 8)
		return false;
	size = (uint32_t)be(d, 4);
	if (!size_ok(size))
		return false;
	if (dir == request_dir(s)) {
		int16_t key = (int16_t)be(d + 4, 2), version = (int16_t)be(d + 6, 2);

		if (size < REQ_HEADER_MIN || !api_known(key) || version < 0)
			return false;
		return s->max_version[key] < 0 ? version <= 30 : version <= s->max_version[key];
	}
	return pending_find(s, (int32_t)be(d + 4, 4), &at) != NULL;
}

static void lose_framing(struct kafka_stream *s, struct half *h)
{
	h->lost = true;
	h->in_frame = false;
	h->size_have = 0;
	s->st.desyncs++;
}

int kafka_stream_feed(struct kafka_stream *s, enum kafka_dir dir, const uint8_t *data, size_t len,
		      uint64_t total, uint64_t ts_ns, kafka_exchange_fn fn, void *ctx)
{
	struct half *h;
	uint64_t p = 0;

	if (s->not_kafka)
		return -EPROTO;
	if ((dir != KAFKA_DIR_IN && dir != KAFKA_DIR_OUT) || (len && !data) || len > total)
		return -EINVAL;
	h = &s->half[dir];
	if (h->lost) {
		if (!starts_frame(s, dir, data, len))
			return 0;
		h->lost = false;
	}
	while (p < total) {
		struct frame *f = &h->f;

		if (!h->in_frame) {
			if (p >= len) { /* the size prefix fell in the gap */
				lose_framing(s, h);
				return 0;
			}
			while (h->size_have < 4 && p < len)
				h->size_buf[h->size_have++] = data[p++];
			if (h->size_have < 4)
				continue;
			h->size_have = 0;
			uint32_t size = (uint32_t)be(h->size_buf, 4);

			if (!size_ok(size)) {
				if (!s->framed_one) {
					s->not_kafka = true;
					return -EPROTO;
				}
				s->st.parse_errors++;
				lose_framing(s, h);
				return 0;
			}
			frame_reset(f);
			f->len = size;
			f->start_ns = ts_ns;
			h->in_frame = true;
			continue;
		}
		uint64_t take = f->len - f->got;

		if (take > total - p)
			take = total - p;
		if (p < len)
			frame_append(f, f->got, data + p,
				     (size_t)(take < len - p ? take : len - p));
		f->got += take;
		p += take;
		if (!f->decided && s->role != KAFKA_ROLE_UNKNOWN &&
		    (f->got >= HEAD_KEEP || f->got == f->len))
			frame_decide(s, dir, f);
		if (s->not_kafka)
			return -EPROTO;
		if (f->got == f->len) {
			f->end_ns = ts_ns;
			h->in_frame = false;
			frame_done(s, dir, f, fn, ctx);
		}
	}
	return 0;
}
