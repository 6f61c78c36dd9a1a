/*
 * Walkers: the capture's kernel side following a protocol's framing past
 * what a syscall's prefix holds (bpf/ps_sockcap.h, PIECES). What every
 * walker keeps per connection; the steps are the protocol's
 * (bpf/ps_walk_<protocol>.h), the reading and sending are the capture's.
 *
 * Pieces are always the bytes at their offsets: a walker that misreads a
 * stream sends bytes its decoder cannot use, never wrong ones.
 */
#ifndef PS_WALK_H
#define PS_WALK_H

#define PS_WALK_CARRY	16 /* the longest field a step reads (and carries over a syscall) */
#define PS_WALK_PENDING 4  /* requests awaiting the response a walker wants to walk */
#define PS_WALK_IOV	64 /* iovecs of a walked syscall looked at (a power of two); bytes past: unread */

/* One direction of a walked connection. */
struct ps_walk_dir {
	__u64 pos;	/* bytes of this direction before the syscall being walked */
	__u64 cur;	/* stream offset of the next byte to look at */
	__u64 end;	/* the end of the frame being walked */
	__u64 mark;	/* the protocol's: the end of an inner region (Kafka: records) */
	__s32 left[4];	/* the protocol's: what is left of the arrays being walked */
	__s16 version;	/* of the message being walked */
	__u8 step;	/* the protocol's enum */
	__u8 after;	/* the step after the one in progress (tagged fields) */
	__u8 carry_len; /* bytes of the field at cur that the last syscall held */
	__u8 what;	/* the protocol's: which message is being walked */
	__u8 flex;	/* the protocol's: a flag of the message's version */
	__u8 pad;
	__u8 carry[PS_WALK_CARRY];
};

/* A request whose response is worth walking, by its id in the protocol. */
struct ps_walk_req {
	__s32 id;
	__s16 version;
	__u8 used; /* a request is in the slot (ids are unique: never emptied) */
	__u8 pad;
};

/* A walked connection (the ps_sc_walks map, key: the connection's id). */
struct ps_walk {
	struct ps_walk_dir d[2]; /* by enum ps_sc_dir */
	struct ps_walk_req req[PS_WALK_PENDING];
	__u8 next_req; /* the slot the next request takes when all are used */
	__u8 lost;     /* framing lost (bytes it needed went by unread): walked no more */
	__u8 req_dir;  /* 1 + the direction requests go: the one of the first bytes walked */
	__u8 pad[5];
};

#endif
