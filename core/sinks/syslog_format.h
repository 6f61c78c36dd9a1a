/*
 * How the syslog sink writes an alert notice: the one-line text a person and
 * a grep both read, and the RFC 5424 message around it for remote targets.
 * Internal to the sink; exposed for its unit tests.
 */
#ifndef PS_CORE_SINKS_SYSLOG_FORMAT_H
#define PS_CORE_SINKS_SYSLOG_FORMAT_H

#include <stdint.h>

#include <periscope/events.h>

/* The RFC 5424 header fields that do not come from the notice. */
struct ps_syslog_origin {
	int facility;	      /* LOG_DAEMON, LOG_LOCAL0, ... as <syslog.h> defines them */
	const char *hostname; /* NULL or "": NILVALUE */
	const char *app_name;
	int pid;
};

/*
 * "alert checkout-errors FIRING: service_name=checkout http: error_ratio 0.2 above 0.05
 * over 1m". malloc'd; NULL with errno set.
 */
char *ps_syslog_format_line(const struct ps_alert_notice *n);

/*
 * "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID alert [periscope@32473 ...] MSG", without
 * framing or newline. malloc'd; NULL with errno set.
 */
char *ps_syslog_format_rfc5424(const struct ps_alert_notice *n, const struct ps_syslog_origin *o);

/* LOG_WARNING while firing, LOG_NOTICE when resolved. */
int ps_syslog_severity(const struct ps_alert_notice *n);

/* Messages the sink could not hand to its remote target (tests). */
uint64_t ps_sink_syslog_dropped(const void *state);

#endif
