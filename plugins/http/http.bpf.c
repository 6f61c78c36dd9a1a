/*
 * http, kernel side: the shared socket capture (ps_sockcap.bpf.h) with an
 * HTTP/1.x classifier, so only HTTP/1.x connections produce events. The
 * decoder in user space pairs requests and responses. With TLS capture, the
 * plaintext of HTTPS connections comes from the OpenSSL uprobes and meets the
 * same classifier; their ciphertext is never sent.
 */
#define PS_SC_WITH_TLS 1
#include "ps_sockcap.bpf.h"
#include "http.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline bool http_is_upper(__u8 c)
{
	return c >= 'A' && c <= 'Z';
}

/* "HTTP/1.x ": MINE, UNKNOWN while the bytes so far agree, NOT_MINE otherwise. */
static __always_inline int http_classify_response(const __u8 *b, __u32 len)
{
	const char want[] = "HTTP/1.";

#pragma unroll
	for (int i = 0; i < 7; i++) {
		if (i >= len)
			return PS_SC_UNKNOWN;
		if (b[i] != want[i])
			return PS_SC_NOT_MINE;
	}
	if (len < 9)
		return PS_SC_UNKNOWN;
	return b[7] >= '0' && b[7] <= '9' && b[8] == ' ' ? PS_SC_MINE : PS_SC_NOT_MINE;
}

/* "METHOD /", "METHOD *", "METHOD http..." or "CONNECT host"; HTTP/2's "PRI *" is not ours. */
static __always_inline int http_classify_request(const __u8 *b, __u32 len)
{
	__u32 tok = 0;
	__u8 t;

#pragma unroll
	for (int i = 0; i <= HTTP_METHOD_TOKEN_MAX; i++) {
		if (i >= len)
			return PS_SC_UNKNOWN;
		if (!http_is_upper(b[i]))
			break;
		tok++;
	}
	if (tok < HTTP_METHOD_TOKEN_MIN || tok > HTTP_METHOD_TOKEN_MAX)
		return PS_SC_NOT_MINE;
	if (tok + 1 >= len)
		return b[tok & 15] == ' ' ? PS_SC_UNKNOWN : PS_SC_NOT_MINE;
	if (b[tok & 15] != ' ')
		return PS_SC_NOT_MINE;
	t = b[(tok + 1) & 15];
	if (tok == 3 && b[0] == 'P' && b[1] == 'R' && b[2] == 'I')
		return PS_SC_NOT_MINE;
	if (t == '/' || t == '*' || t == 'h')
		return PS_SC_MINE;
	if (tok == 7 && b[0] == 'C' && b[1] == 'O' && b[2] == 'N' && b[3] == 'N')
		return PS_SC_MINE;
	return PS_SC_NOT_MINE;
}

static __always_inline int ps_classify(const __u8 *buf, __u32 len, int dir)
{
	if (len == 0)
		return PS_SC_UNKNOWN;
	if (buf[0] == 'H' && (len < 2 || buf[1] == 'T'))
		return http_classify_response(buf, len);
	return http_classify_request(buf, len);
}
