/*
 * periscope plugin API: the W3C Trace Context traceparent header.
 *
 * One strict parser for every plugin: the http decoder validates with it,
 * tracectx takes the ids from it. https://www.w3.org/TR/trace-context/
 *   version "00": exactly 55 characters, "vv-<32 hex>-<16 hex>-ff";
 *   lowercase hex only; trace id and parent id not all zeros;
 *   version "ff" is invalid;
 *   a later version is read by its 00-compatible prefix: at least 55
 *   characters, and when longer, a '-' right after the flags.
 */
#ifndef PERISCOPE_TRACEPARENT_H
#define PERISCOPE_TRACEPARENT_H

#include <periscope/api.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PS_TRACEPARENT_LEN    55 /* of version 00, and of the prefix later versions share */
#define PS_TRACE_FLAG_SAMPLED 0x01

struct ps_traceparent {
	uint8_t version;
	uint8_t trace_id[16];
	uint8_t parent_id[8];
	uint8_t flags;
};

/* 0, or -EINVAL when s (len bytes, no NUL needed) is not a valid traceparent. out may be NULL. */
PS_API int ps_traceparent_parse(const char *s, size_t len, struct ps_traceparent *out);
PS_API bool ps_traceparent_valid(const char *s, size_t len);
/* Writes the version 00 form and a NUL: buf holds at least PS_TRACEPARENT_LEN + 1 bytes. */
PS_API void ps_traceparent_format(const struct ps_traceparent *tp, char *buf);

#endif
