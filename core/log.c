/* Leveled logging to stderr; journald gets syslog priorities as "<N>" prefixes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logging.h"

static enum ps_log_level current_level = PS_LOG_INFO;
static int journal_prefix = -1; /* -1: not decided yet */

static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };
static const int level_priorities[] = { 3, 4, 6, 7, 7 }; /* syslog has nothing below debug */

void ps_log_set_level(enum ps_log_level level)
{
	current_level = level;
}

int ps_log_parse_level(const char *s, enum ps_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (s && strcmp(s, level_names[i]) == 0) {
			*out = (enum ps_log_level)i;
			return 0;
		}
	}
	if (s && strcmp(s, "warning") == 0) {
		*out = PS_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

bool ps_log_enabled(enum ps_log_level level)
{
	return level <= current_level;
}

void ps_log(enum ps_log_level level, const char *subsys, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	size_t len;

	if (!ps_log_enabled(level))
		return;
	if (journal_prefix < 0)
		journal_prefix = getenv("JOURNAL_STREAM") != NULL;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';

	if (journal_prefix)
		fprintf(stderr, "<%d>%s: %s\n", level_priorities[level], subsys ? subsys : "core", msg);
	else
		fprintf(stderr, "%-5s %s: %s\n", level_names[level], subsys ? subsys : "core", msg);
}
