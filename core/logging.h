/* Core side of logging: level selection and the libbpf bridge. */
#ifndef PS_CORE_LOGGING_H
#define PS_CORE_LOGGING_H

#include <periscope/log.h>

void ps_log_set_level(enum ps_log_level level);
/* "error", "warn", "info", "debug", "trace". 0 or -EINVAL. */
int ps_log_parse_level(const char *s, enum ps_log_level *out);

#endif
