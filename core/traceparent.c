/* W3C traceparent: see periscope/traceparent.h for the rules. */
#include <errno.h>
#include <string.h>

#include <periscope/traceparent.h>

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* uppercase is invalid too: the spec says lowercase */
}

/* n bytes from 2n lowercase hex digits; false on any other character. */
static bool hex_bytes(const char *p, size_t n, uint8_t *out, bool *nonzero)
{
	*nonzero = false;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_val(p[2 * i]), lo = hex_val(p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
		if (out[i])
			*nonzero = true;
	}
	return true;
}

int ps_traceparent_parse(const char *s, size_t len, struct ps_traceparent *out)
{
	struct ps_traceparent tp;
	bool nz;

	if (!s || len < PS_TRACEPARENT_LEN)
		return -EINVAL;
	if (!hex_bytes(s, 1, &tp.version, &nz) || tp.version == 0xff)
		return -EINVAL;
	/* 00 is exactly 55; a later version may carry more after another '-'. */
	if (tp.version == 0 && len != PS_TRACEPARENT_LEN)
		return -EINVAL;
	if (len > PS_TRACEPARENT_LEN && s[PS_TRACEPARENT_LEN] != '-')
		return -EINVAL;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return -EINVAL;
	if (!hex_bytes(s + 3, 16, tp.trace_id, &nz) || !nz)
		return -EINVAL;
	if (!hex_bytes(s + 36, 8, tp.parent_id, &nz) || !nz)
		return -EINVAL;
	if (!hex_bytes(s + 53, 1, &tp.flags, &nz))
		return -EINVAL;
	if (out)
		*out = tp;
	return 0;
}

bool ps_traceparent_valid(const char *s, size_t len)
{
	return ps_traceparent_parse(s, len, NULL) == 0;
}

static void hex_put(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
}

void ps_traceparent_format(const struct ps_traceparent *tp, char *buf)
{
	memcpy(buf, "00-", 3);
	hex_put(buf + 3, tp->trace_id, 16);
	buf[35] = '-';
	hex_put(buf + 36, tp->parent_id, 8);
	buf[52] = '-';
	hex_put(buf + 53, &tp->flags, 1);
	buf[55] = '\0';
}
