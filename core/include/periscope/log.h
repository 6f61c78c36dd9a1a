/* periscope plugin API: leveled logging. Every line names its subsystem. */
#ifndef PERISCOPE_LOG_H
#define PERISCOPE_LOG_H

#include <periscope/api.h>

#include <stdbool.h>

enum ps_log_level {
	PS_LOG_ERROR = 0,
	PS_LOG_WARN,
	PS_LOG_INFO,
	PS_LOG_DEBUG,
};

/* Writes "<level> <subsys>: <message>" to stderr when level is enabled. */
PS_API void ps_log(enum ps_log_level level, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
PS_API bool ps_log_enabled(enum ps_log_level level);

#define ps_error(subsys, ...) ps_log(PS_LOG_ERROR, subsys, __VA_ARGS__)
#define ps_warn(subsys, ...) ps_log(PS_LOG_WARN, subsys, __VA_ARGS__)
#define ps_info(subsys, ...) ps_log(PS_LOG_INFO, subsys, __VA_ARGS__)
#define ps_debug(subsys, ...) ps_log(PS_LOG_DEBUG, subsys, __VA_ARGS__)

#endif
