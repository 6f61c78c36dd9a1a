/*
 * The Kafka walker (bpf/ps_walk.h): Fetch responses, often megabytes, read in
 * syscalls far larger than the prefix the capture copies, and Produce
 * requests, which clients write many at a time. It follows the size-prefixed
 * frames both ways (every frame's first 12 bytes are sent: the decoder's
 * framing never falls in a gap), notes the Fetch requests (correlation id,
 * version), and walks their responses and the Produce requests: every field
 * the decoder reads is sent as a piece, and of the records only each batch's
 * header (61 bytes: base offset, length, magic, attributes, last offset delta,
 * record count). The records themselves, aborted-transaction lists and
 * tagged-field values are stepped over by their lengths.
 *
 * Included by core/capture/capture.bpf.c after the walk primitives.
 */
#ifndef PS_WALK_KAFKA_H
#define PS_WALK_KAFKA_H

#define PS_KW_PRODUCE	      0
#define PS_KW_FETCH	      1
#define PS_KW_VERSION_MAX     17	  /* versions walked */
#define PS_KW_FETCH_FLEXIBLE  12	  /* Fetch versions from here: compact fields, tagged fields */
#define PS_KW_PRODUCE_FLEXIBLE 9	  /* Produce versions from here */
#define PS_KW_TOPIC_IDS	      13	  /* from here (both): topic ids, not names */
#define PS_KW_FRAME_MAX	      (256u << 20) /* larger size prefixes: not Kafka, or framing lost */
#define PS_KW_BATCH_HEAD      61	  /* a record batch (magic 2) header; legacy ones are shorter */
#define PS_KW_ARRAY_MAX	      (1 << 20)

enum ps_kw_step {
	PS_KW_HEAD = 0,	 /* a frame's size prefix and header */
	PS_KW_SKIP,	 /* to the frame's end */
	PS_KW_BODY,	 /* a Fetch response's throttle, error, session */
	PS_KW_CLIENT_ID, /* a Produce request's client id (header) */
	PS_KW_HEADER_END,
	PS_KW_TXN_ID,	 /* its transactional id */
	PS_KW_ACKS,	 /* its acks and timeout */
	PS_KW_TOPICS,	 /* its topics array */
	PS_KW_TOPIC,	 /* a topic's name (or id) */
	PS_KW_NAME,	 /* a string's bytes, a piece at a time; then `after` */
	PS_KW_PARTS,	 /* the topic's partitions array */
	PS_KW_PART,	 /* a partition's fixed fields: index, error, watermarks */
	PS_KW_ABORTED,	 /* its aborted transactions array */
	PS_KW_ABORTED_ONE,
	PS_KW_REPLICA,	 /* preferred read replica */
	PS_KW_RECORDS,	 /* the records field's length */
	PS_KW_BATCH,	 /* a record batch (or legacy message): its header, then past it */
	PS_KW_PART_END,
	PS_KW_TOPIC_END,
	PS_KW_END,
	PS_KW_TAGS, /* tagged fields: their count, then each one's tag and size; then `after` */
	PS_KW_TAG,
	PS_KW_TAG_SIZE,
};

/* ps_walk_dir.left[] */
enum { PS_KW_LEFT_TOPICS, PS_KW_LEFT_PARTS, PS_KW_LEFT_N, PS_KW_LEFT_TAGS };

/* A length: INT32/INT16 (nullable: -1), or flexible UNSIGNED_VARINT n + 1 (0: null). 0 or stop. */
static __always_inline long ps_kw_length(struct ps_walk_scratch *x, struct ps_walk_dir *d,
					 bool flex, __u32 width, __s32 *n)
{
	__u32 k, u;

	if (flex) {
		if (ps_walk_uvarint(x, d, &u))
			return 1;
		*n = (__s32)u - 1;
		return 0;
	}
	k = ps_walk_peek(x, d, width);
	if (k < width)
		return ps_walk_hold(x, d, k);
	*n = width == 2 ? (__s16)ps_walk_be16(x, 0) : (__s32)ps_walk_be32(x, 0);
	ps_walk_take(x, d, width);
	return 0;
}

/* A string's length (INT16, or flexible compact), then its bytes (PS_KW_NAME), then `after`. */
static __always_inline long ps_kw_string(struct ps_walk_scratch *x, struct ps_walk_dir *d,
					 bool flex, __u8 after)
{
	__s32 n;

	if (ps_kw_length(x, d, flex, 2, &n))
		return 1;
	d->left[PS_KW_LEFT_N] = n > 0 ? n : 0;
	d->after = after;
	d->step = PS_KW_NAME;
	return 0;
}

/* A frame starts: a Produce request, or the response to a Fetch we saw go out, is walked. */
static __always_inline long ps_kw_head(struct ps_walk_scratch *x, struct ps_walk_dir *d)
{
	__u64 start = d->cur;
	__u32 k = ps_walk_peek(x, d, 12), size;
	__s32 id;
	__s16 key, version;

	if (k < 12)
		return ps_walk_hold(x, d, k);
	size = ps_walk_be32(x, 0);
	if (size < 4 || size > PS_KW_FRAME_MAX) {
		x->w.lost = 1;
		return 1;
	}
	ps_walk_take(x, d, 12);
	d->end = start + 4 + size;
	d->step = PS_KW_SKIP;
	if (x->w.req_dir == 1 + x->dir)
		goto request;
	id = (__s32)ps_walk_be32(x, 4);
	for (int i = 0; i < PS_WALK_PENDING; i++) {
		struct ps_walk_req *r = &x->w.req[i];

		if (r->used && r->id == id) {
			d->what = PS_KW_FETCH;
			d->version = r->version;
			d->flex = r->version >= PS_KW_FETCH_FLEXIBLE;
			d->cur = start + 8;
			d->after = PS_KW_BODY;
			d->step = d->flex ? PS_KW_TAGS : PS_KW_BODY;
			return 0;
		}
	}
	return 0;
request:
	key = (__s16)ps_walk_be16(x, 4);
	version = (__s16)ps_walk_be16(x, 6);
	if (version < 0 || version > PS_KW_VERSION_MAX || size < 10)
		return 0;
	if (key == PS_KW_PRODUCE) {
		d->what = PS_KW_PRODUCE;
		d->version = version;
		d->flex = version >= PS_KW_PRODUCE_FLEXIBLE;
		d->step = PS_KW_CLIENT_ID;
		return 0;
	}
	if (key == PS_KW_FETCH) {
		struct ps_walk_req *r = &x->w.req[x->w.next_req & (PS_WALK_PENDING - 1)];

		r->id = (__s32)ps_walk_be32(x, 8);
		r->version = version;
		r->used = 1;
		x->w.next_req++;
		x->req_added = 1;
	}
	return 0;
}

/* One step of the walk of direction d; 1 when it waits for the next syscall. */
static __always_inline long ps_walk_kafka_step(struct ps_walk_scratch *x, struct ps_walk_dir *d)
{
	__s16 v = d->version;
	bool flex = d->flex;
	__u32 k, u;
	__s32 n;

	if (d->step > PS_KW_SKIP && d->cur > d->end)
		d->step = PS_KW_SKIP; /* not the response its lengths say: past it */
	switch (d->step) {
	case PS_KW_HEAD:
		return ps_kw_head(x, d);
	case PS_KW_SKIP:
		d->cur = d->end;
		d->step = PS_KW_HEAD;
		return 0;
	case PS_KW_BODY:
		ps_walk_pass(x, d, (v >= 1 ? 4 : 0) + (v >= 7 ? 6 : 0));
		d->step = PS_KW_TOPICS;
		return 0;
	case PS_KW_CLIENT_ID: /* a nullable INT16 string, flexible or not */
		return ps_kw_string(x, d, false, PS_KW_HEADER_END);
	case PS_KW_HEADER_END:
		d->after = PS_KW_TXN_ID;
		d->step = flex ? PS_KW_TAGS : PS_KW_TXN_ID;
		return 0;
	case PS_KW_TXN_ID:
		if (v < 3) {
			d->step = PS_KW_ACKS;
			return 0;
		}
		return ps_kw_string(x, d, flex, PS_KW_ACKS);
	case PS_KW_ACKS:
		ps_walk_pass(x, d, 6);
		d->step = PS_KW_TOPICS;
		return 0;
	case PS_KW_TOPICS:
		if (ps_kw_length(x, d, flex, 4, &n))
			return 1;
		d->left[PS_KW_LEFT_TOPICS] = n;
		d->step = n > 0 && n < PS_KW_ARRAY_MAX ? PS_KW_TOPIC : PS_KW_END;
		return 0;
	case PS_KW_TOPIC:
		if (v >= PS_KW_TOPIC_IDS) {
			ps_walk_pass(x, d, 16);
			d->step = PS_KW_PARTS;
			return 0;
		}
		return ps_kw_string(x, d, flex, PS_KW_PARTS);
	case PS_KW_NAME:
		n = d->left[PS_KW_LEFT_N];
		if (n > PS_SC_PIECE_MAX)
			n = PS_SC_PIECE_MAX;
		if (n > 0)
			ps_walk_pass(x, d, n);
		d->left[PS_KW_LEFT_N] -= n;
		if (d->left[PS_KW_LEFT_N] <= 0)
			d->step = d->after;
		return 0;
	case PS_KW_PARTS:
		if (ps_kw_length(x, d, flex, 4, &n))
			return 1;
		d->left[PS_KW_LEFT_PARTS] = n;
		d->step = n > 0 && n < PS_KW_ARRAY_MAX ? PS_KW_PART : PS_KW_TOPIC_END;
		return 0;
	case PS_KW_PART:
		if (d->what == PS_KW_PRODUCE) {
			ps_walk_pass(x, d, 4); /* index */
			d->step = PS_KW_RECORDS;
			return 0;
		}
		ps_walk_pass(x, d, 14 + (v >= 4 ? 8 : 0) + (v >= 5 ? 8 : 0));
		d->step = v >= 4 ? PS_KW_ABORTED : PS_KW_RECORDS;
		return 0;
	case PS_KW_ABORTED:
		if (ps_kw_length(x, d, flex, 4, &n))
			return 1;
		if (n < 0 || n >= PS_KW_ARRAY_MAX)
			n = 0;
		if (!flex) {
			d->cur += 16 * (__u64)n;
			d->step = PS_KW_REPLICA;
			return 0;
		}
		d->left[PS_KW_LEFT_N] = n;
		d->step = n ? PS_KW_ABORTED_ONE : PS_KW_REPLICA;
		return 0;
	case PS_KW_ABORTED_ONE:
		d->cur += 16; /* producer id, first offset; then its tagged fields */
		d->left[PS_KW_LEFT_N]--;
		d->after = d->left[PS_KW_LEFT_N] > 0 ? PS_KW_ABORTED_ONE : PS_KW_REPLICA;
		d->step = PS_KW_TAGS;
		return 0;
	case PS_KW_REPLICA:
		if (v >= 11)
			ps_walk_pass(x, d, 4);
		d->step = PS_KW_RECORDS;
		return 0;
	case PS_KW_RECORDS:
		if (ps_kw_length(x, d, flex, 4, &n))
			return 1;
		d->mark = d->cur + (n > 0 ? (__u64)n : 0);
		d->step = PS_KW_BATCH;
		return 0;
	case PS_KW_BATCH:
		if (d->cur + 12 > d->mark) {
			d->cur = d->mark; /* a batch cut by the response's size limit */
			d->step = PS_KW_PART_END;
			return 0;
		}
		k = ps_walk_peek(x, d, 12);
		if (k < 12)
			return ps_walk_hold(x, d, k);
		u = d->mark - d->cur < PS_KW_BATCH_HEAD ? d->mark - d->cur : PS_KW_BATCH_HEAD;
		ps_walk_piece(x, d, d->cur + d->carry_len, u - d->carry_len);
		n = (__s32)ps_walk_be32(x, 8); /* the batch's length, past its offset and itself */
		d->carry_len = 0;
		if (n < 0 || d->mark - d->cur - 12 < (__u64)n)
			d->cur = d->mark;
		else
			d->cur += 12 + (__u64)n;
		return 0;
	case PS_KW_PART_END:
		d->left[PS_KW_LEFT_PARTS]--;
		d->after = d->left[PS_KW_LEFT_PARTS] > 0 ? PS_KW_PART : PS_KW_TOPIC_END;
		d->step = flex ? PS_KW_TAGS : d->after;
		return 0;
	case PS_KW_TOPIC_END:
		d->left[PS_KW_LEFT_TOPICS]--;
		d->after = d->left[PS_KW_LEFT_TOPICS] > 0 ? PS_KW_TOPIC : PS_KW_END;
		d->step = flex ? PS_KW_TAGS : d->after;
		return 0;
	case PS_KW_END:
		d->after = PS_KW_SKIP;
		d->step = flex ? PS_KW_TAGS : PS_KW_SKIP;
		return 0;
	case PS_KW_TAGS:
		if (ps_walk_uvarint(x, d, &u))
			return 1;
		d->left[PS_KW_LEFT_TAGS] = (__s32)u;
		d->step = u ? PS_KW_TAG : d->after;
		return 0;
	case PS_KW_TAG:
		if (ps_walk_uvarint(x, d, &u))
			return 1;
		d->step = PS_KW_TAG_SIZE;
		return 0;
	case PS_KW_TAG_SIZE:
		if (ps_walk_uvarint(x, d, &u))
			return 1;
		d->cur += u; /* the value: the decoder steps over it too */
		d->left[PS_KW_LEFT_TAGS]--;
		d->step = d->left[PS_KW_LEFT_TAGS] > 0 ? PS_KW_TAG : d->after;
		return 0;
	default:
		x->w.lost = 1;
		return 1;
	}
}

#endif
