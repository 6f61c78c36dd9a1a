/*
 * A MySQL/MariaDB connection's first bytes, for the core capture's kernel
 * side: where ports cannot tell (AF_UNIX sockets, connections joined midway).
 *
 *   greeting   the server's first packet: length, sequence 0, protocol 10,
 *              then a version string that starts with a digit
 *   command    a client packet with sequence 0: COM_QUERY or COM_STMT_PREPARE
 *              followed by text, COM_PING or COM_QUIT of length 1
 *
 * Anything else is not MySQL's start; a response seen first (joined midway)
 * is not either, and the capture asks again with the next bytes.
 */
#ifndef PS_CLASSIFY_MYSQL_H
#define PS_CLASSIFY_MYSQL_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "ps_classify_http.h" /* enum ps_http_verdict: NO, MAYBE, YES */

#define PS_MYSQL_PROTOCOL_10  0x0a
#define PS_MYSQL_COM_QUIT     0x01
#define PS_MYSQL_COM_QUERY    0x03
#define PS_MYSQL_COM_PING     0x0e
#define PS_MYSQL_COM_PREPARE  0x16

static __always_inline int ps_mysql_text_char(__u8 c)
{
	return (c >= 0x20 && c < 0x7f) || (c >= '\t' && c <= '\r');
}

static __always_inline int ps_mysql_classify(const __u8 *b, __u32 n)
{
	__u32 len;

	if (n < 5)
		return n >= 4 && b[3] != 0 ? PS_HTTP_NO : PS_HTTP_MAYBE;
	len = b[0] | (__u32)b[1] << 8 | (__u32)b[2] << 16;
	if (b[3] != 0 || len == 0)
		return PS_HTTP_NO;
	switch (b[4]) {
	case PS_MYSQL_PROTOCOL_10:
		if (len < 32 || len > 1024)
			return PS_HTTP_NO;
		if (n < 6)
			return PS_HTTP_MAYBE;
		return b[5] >= '0' && b[5] <= '9' ? PS_HTTP_YES : PS_HTTP_NO;
	case PS_MYSQL_COM_QUERY:
	case PS_MYSQL_COM_PREPARE:
		if (len < 2)
			return PS_HTTP_NO;
		if (n < 7)
			return PS_HTTP_MAYBE;
		return ps_mysql_text_char(b[5]) && ps_mysql_text_char(b[6]) ? PS_HTTP_YES : PS_HTTP_NO;
	case PS_MYSQL_COM_PING:
	case PS_MYSQL_COM_QUIT:
		return len == 1 ? PS_HTTP_YES : PS_HTTP_NO;
	}
	return PS_HTTP_NO;
}

/*
 * The client's SSLRequest, after which the connection is TLS: a 32-byte
 * packet with sequence 1 whose capability flags have CLIENT_SSL. Whole
 * (header and payload in one syscall), or its halves: the header alone, then
 * the payload (a server reads them apart). 1: the whole request or its second
 * half; 2: a header that may be its first half; 0: neither.
 */
#define PS_MYSQL_CLIENT_SSL 0x800

static __always_inline int ps_mysql_ssl_request(const __u8 *b, __u64 total, __u32 len,
						int after_header)
{
	if (total == 4 && len == 4)
		return b[0] == 32 && b[1] == 0 && b[2] == 0 && b[3] == 1 ? 2 : 0;
	if (total == 36 && len >= 8 && b[0] == 32 && b[1] == 0 && b[2] == 0 && b[3] == 1)
		return (b[5] & (PS_MYSQL_CLIENT_SSL >> 8)) ? 1 : 0;
	if (after_header && total == 32 && len >= 4)
		return (b[1] & (PS_MYSQL_CLIENT_SSL >> 8)) ? 1 : 0;
	return 0;
}

#endif
