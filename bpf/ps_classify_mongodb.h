/*
 * A MongoDB connection's first bytes, for the core capture's kernel side:
 * AF_UNIX sockets have no port to tell them by. The first 16 bytes are the
 * message header: messageLength, requestID, responseTo, opCode, little
 * endian. A request starts a connection: OP_MSG, OP_QUERY (legacy handshake)
 * or OP_COMPRESSED with responseTo 0; a reply (joined midway) answers one.
 */
#ifndef PS_CLASSIFY_MONGODB_H
#define PS_CLASSIFY_MONGODB_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "ps_classify_http.h" /* enum ps_http_verdict: NO, MAYBE, YES */

#define PS_MONGODB_OP_REPLY	 1
#define PS_MONGODB_OP_QUERY	 2004
#define PS_MONGODB_OP_COMPRESSED 2012
#define PS_MONGODB_OP_MSG	 2013
#define PS_MONGODB_MESSAGE_MAX	 (48 * 1000 * 1000) /* maxMessageSizeBytes */

static __always_inline __u32 ps_mongodb_le32(const __u8 *b)
{
	return b[0] | (__u32)b[1] << 8 | (__u32)b[2] << 16 | (__u32)b[3] << 24;
}

static __always_inline int ps_mongodb_classify(const __u8 *b, __u32 n)
{
	__u32 len, response_to, op;

	/* A length past 48 MB shows in its fourth byte already. */
	if (n >= 4 && b[3] > 0x02)
		return PS_HTTP_NO;
	if (n < 16)
		return PS_HTTP_MAYBE;
	len = ps_mongodb_le32(b);
	response_to = ps_mongodb_le32(b + 8);
	op = ps_mongodb_le32(b + 12);
	if (len < 16 + 5 || len > PS_MONGODB_MESSAGE_MAX) /* a header and the least document */
		return PS_HTTP_NO;
	if (response_to == 0)
		return op == PS_MONGODB_OP_MSG || op == PS_MONGODB_OP_QUERY ||
				       op == PS_MONGODB_OP_COMPRESSED ?
			       PS_HTTP_YES :
			       PS_HTTP_NO;
	return op == PS_MONGODB_OP_MSG || op == PS_MONGODB_OP_REPLY ||
			       op == PS_MONGODB_OP_COMPRESSED ?
		       PS_HTTP_YES :
		       PS_HTTP_NO;
}

#endif
