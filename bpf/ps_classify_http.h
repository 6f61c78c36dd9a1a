/*
 * The one HTTP/1.x classifier: is this the start of a request line or a
 * status line? Compiled into the core capture's BPF object, which decides
 * which connections to follow, and into the http decoder, which decides where
 * a message starts: both must agree, so both use this.
 *
 * Written for the verifier as much as for a compiler: constant loop bounds,
 * every index masked into the 16 bytes looked at.
 *
 *   request   METHOD SP ( "/" | "*" | "http" | authority after CONNECT )
 *             METHOD: 1 to 11 characters, the first A-Z, the rest A-Z 0-9 - _
 *             (upper case by convention; demanding it keeps binary data out).
 *             "PRI *" is HTTP/2's connection preface: not HTTP/1.x.
 *   response  "HTTP/1." DIGIT SP
 */
#ifndef PS_CLASSIFY_HTTP_H
#define PS_CLASSIFY_HTTP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#ifdef __clang__
#define PS_HTTP_UNROLL _Pragma("unroll")
#else
#define PS_HTTP_UNROLL
#endif

#define PS_HTTP_CLASSIFY_BYTES 16 /* a power of two: indexes are masked with it */
#define PS_HTTP_METHOD_MAX     11 /* "METHOD http" still fits in 16 bytes */

enum ps_http_verdict {
	PS_HTTP_NO = 0,
	PS_HTTP_MAYBE = 1, /* the bytes so far agree: more are needed */
	PS_HTTP_YES = 2,
};

static __always_inline int ps_http_is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int ps_http_is_upper(__u8 c)
{
	return c >= 'A' && c <= 'Z';
}

static __always_inline int ps_http_method_char(__u8 c, __u32 i)
{
	return ps_http_is_upper(c) || (i > 0 && (ps_http_is_digit(c) || c == '-' || c == '_'));
}

/* RFC 9110 tchar, or '[' (an IPv6 authority), for CONNECT's target. */
static __always_inline int ps_http_authority_start(__u8 c)
{
	if (ps_http_is_digit(c) || ps_http_is_upper(c) || (c >= 'a' && c <= 'z'))
		return 1;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
	case '-': case '.': case '^': case '_': case '`': case '|': case '~': case '[':
		return 1;
	}
	return 0;
}

static __always_inline int ps_http_classify_request(const __u8 *p, __u32 n)
{
	const char http[4] = { 'h', 't', 't', 'p' };
	__u32 tok = 0, i;
	__u8 c;

	if (n > PS_HTTP_CLASSIFY_BYTES)
		n = PS_HTTP_CLASSIFY_BYTES;
PS_HTTP_UNROLL
	for (i = 0; i < PS_HTTP_METHOD_MAX; i++) {
		if (i >= n)
			return PS_HTTP_MAYBE;
		if (!ps_http_method_char(p[i], i))
			break;
		tok++;
	}
	if (tok >= n)
		return PS_HTTP_MAYBE;
	if (tok == 0 || p[tok & (PS_HTTP_CLASSIFY_BYTES - 1)] != ' ')
		return PS_HTTP_NO;
	if (tok == 3 && p[0] == 'P' && p[1] == 'R' && p[2] == 'I')
		return PS_HTTP_NO;
	if (tok + 1 >= n)
		return PS_HTTP_MAYBE;
	c = p[(tok + 1) & (PS_HTTP_CLASSIFY_BYTES - 1)];
	if (c == '/' || c == '*')
		return PS_HTTP_YES;
	if (tok == 7 && p[0] == 'C' && p[1] == 'O' && p[2] == 'N' && p[3] == 'N' && p[4] == 'E' &&
	    p[5] == 'C' && p[6] == 'T')
		return ps_http_authority_start(c) ? PS_HTTP_YES : PS_HTTP_NO;
PS_HTTP_UNROLL
	for (i = 0; i < 4; i++) {
		if (tok + 1 + i >= n)
			return PS_HTTP_MAYBE;
		if ((p[(tok + 1 + i) & (PS_HTTP_CLASSIFY_BYTES - 1)] | 0x20) != http[i])
			return PS_HTTP_NO;
	}
	return PS_HTTP_YES;
}

static __always_inline int ps_http_classify_response(const __u8 *p, __u32 n)
{
	const char pre[7] = { 'H', 'T', 'T', 'P', '/', '1', '.' };
	__u32 i;

PS_HTTP_UNROLL
	for (i = 0; i < 7; i++) {
		if (i >= n)
			return PS_HTTP_MAYBE;
		if (p[i] != pre[i])
			return PS_HTTP_NO;
	}
	if (n < 8)
		return PS_HTTP_MAYBE;
	if (!ps_http_is_digit(p[7]))
		return PS_HTTP_NO;
	if (n < 9)
		return PS_HTTP_MAYBE;
	return p[8] == ' ' ? PS_HTTP_YES : PS_HTTP_NO;
}

/* Either kind: YES if one says yes, MAYBE if one still might, NO otherwise. */
static __always_inline int ps_http_classify(const __u8 *p, __u32 n)
{
	int rq = ps_http_classify_request(p, n), rs;

	if (rq == PS_HTTP_YES)
		return rq;
	rs = ps_http_classify_response(p, n);
	return rs > rq ? rs : rq;
}

#endif
