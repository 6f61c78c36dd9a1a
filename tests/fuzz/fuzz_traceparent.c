/*
 * libFuzzer target for core/traceparent.c. Whatever parses must format back to a
 * version 00 string that parses to the same ids; nothing outside the input is read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/traceparent.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ps_traceparent tp, again;
	char buf[PS_TRACEPARENT_LEN + 1];
	char *copy = malloc(size ? size : 1); /* exact size: ASan sees any read past it */

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (ps_traceparent_parse(copy, size, &tp) == 0) {
		if (tp.version == 0xff || size < PS_TRACEPARENT_LEN)
			abort();
		if (tp.version == 0 && size != PS_TRACEPARENT_LEN)
			abort();
		ps_traceparent_format(&tp, buf);
		if (ps_traceparent_parse(buf, PS_TRACEPARENT_LEN, &again) != 0)
			abort();
		if (memcmp(tp.trace_id, again.trace_id, 16) ||
		    memcmp(tp.parent_id, again.parent_id, 8) || tp.flags != again.flags)
			abort();
		if (tp.version == 0 && memcmp(buf, copy, PS_TRACEPARENT_LEN) != 0)
			abort();
	}
	free(copy);
	return 0;
}
