/*
 * The syslog sink: alert notices as syslog messages, nothing else.
 *
 * Locally through openlog()/syslog(); or, with `remote`, as RFC 5424 messages
 * with structured data to a collector over UDP (one datagram each) or TCP
 * (octet counting, RFC 6587). The loop never waits on the network for long:
 * sockets are non-blocking, a TCP connect gets a short grace period and is
 * retried at most once a second, and what cannot be sent is dropped and
 * counted. Going down and coming back are logged once each.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <periscope/log.h>

#include "sink.h"
#include "syslog_format.h"

#define SUBSYS		  "syslog"
#define SD_ID		  "periscope@32473"
#define MSGID		  "alert"
#define DEFAULT_PORT	  514
#define CONNECT_WAIT_MS	  50 /* how long a TCP connect may hold the loop */
#define RETRY_INTERVAL_NS 1000000000ull
#define MAX_QUEUED_FRAMES 64  /* TCP frames waiting for a slow peer */
#define HOSTNAME_MAX	  255 /* RFC 5424 field limits */
#define APP_NAME_MAX	  48

/* ---- configuration ------------------------------------------------------------------------ */

struct syslog_config {
	char *ident;
	char *facility;
	char *remote;
	char *hostname;
};

static const char *const facility_names[] = {
	"daemon", "user",   "local0", "local1", "local2", "local3",
	"local4", "local5", "local6", "local7", NULL,
};
static const int facility_values[] = {
	LOG_DAEMON, LOG_USER,	LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
	LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7,
};

static const struct ps_cfg_key syslog_config_map[] = {
	{ "ident", PS_CFG_STRING, "periscope", offsetof(struct syslog_config, ident), NULL,
	  "program name in every message" },
	{ "facility", PS_CFG_STRING, "daemon", offsetof(struct syslog_config, facility),
	  facility_names, "daemon, user or local0..local7" },
	{ "remote", PS_CFG_STRING, NULL, offsetof(struct syslog_config, remote), NULL,
	  "udp://host:port or tcp://host:port (RFC 5424) instead of the local syslog" },
	{ "hostname", PS_CFG_STRING, NULL, offsetof(struct syslog_config, hostname), NULL,
	  "HOSTNAME of remote messages (default: this host's name)" },
	{ NULL },
};

/* ---- text building ------------------------------------------------------------------------ */

struct text {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void text_add(struct text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		char *p;

		while (cap < t->len + n + 1)
			cap *= 2;
		p = realloc(t->buf, cap);
		if (!p) {
			t->failed = true;
			return;
		}
		t->buf = p;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void __attribute__((format(printf, 2, 3))) text_addf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		t->failed = true;
		return;
	}
	text_add(t, s, (size_t)n);
	free(s);
}

/* Control bytes would split or garble a log line: they become \xNN. */
static void text_add_clean(struct text *t, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			text_addf(t, "\\x%02x", c);
		else
			text_add(t, s, 1);
	}
}

/* SD-PARAM values escape '"', '\' and ']' (RFC 5424, 6.3.3). */
static void text_add_param(struct text *t, const char *name, const char *value)
{
	text_addf(t, " %s=\"", name);
	for (; *value; value++) {
		if (*value == '"' || *value == '\\' || *value == ']')
			text_add(t, "\\", 1);
		if ((unsigned char)*value < 0x20 || *value == 0x7f)
			text_addf(t, "\\x%02x", (unsigned char)*value);
		else
			text_add(t, value, 1);
	}
	text_add(t, "\"", 1);
}

static char *text_finish(struct text *t)
{
	if (t->failed || !t->buf) {
		free(t->buf);
		errno = ENOMEM;
		return NULL;
	}
	return t->buf;
}

/* ---- formatting --------------------------------------------------------------------------- */

static const char *const state_upper[] = { "FIRING", "REPEAT", "RESOLVED" };
static const char *const state_lower[] = { "firing", "repeat", "resolved" };

static bool valid_state(const struct ps_alert_notice *n)
{
	return n->state >= PS_ALERT_FIRING && n->state <= PS_ALERT_RESOLVED;
}

/* Four significant digits, plain above 1000: 0.2, 0.7143, 123.5, 12346. */
static void format_number(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "n/a");
	else if (fabs(v) >= 1000 && fabs(v) < 1e15)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.4g", v);
}

/* The unit a condition's numbers read in. */
static const char *condition_unit(const char *condition)
{
	if (!condition)
		return "";
	if (strncmp(condition, "latency", 7) == 0)
		return "s";
	if (strcmp(condition, "rate") == 0)
		return "/s";
	return "";
}

/* 500ms, 45s, 1m, 2m30s, 4h, 1d2h; past an hour, seconds are noise. */
static void format_duration(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
	size_t used = 0;

	if (ms < 1000 || (ms < 60000 && ms % 1000)) {
		snprintf(buf, len, "%" PRIu64 "ms", ms);
		return;
	}
	buf[0] = '\0';
	if (d)
		used += (size_t)snprintf(buf + used, len - used, "%" PRIu64 "d", d);
	if (h && used < len)
		used += (size_t)snprintf(buf + used, len - used, "%" PRIu64 "h", h);
	if (m && used < len)
		used += (size_t)snprintf(buf + used, len - used, "%" PRIu64 "m", m);
	if ((s % 60 || !used) && s < 3600 && used < len)
		snprintf(buf + used, len - used, "%" PRIu64 "s", s % 60);
}

char *ps_syslog_format_line(const struct ps_alert_notice *n)
{
	char value[32], threshold[32], window[32], since[32];
	struct text t = { 0 };
	const char *unit;

	if (!n || !valid_state(n)) {
		errno = EINVAL;
		return NULL;
	}
	unit = condition_unit(n->condition);
	format_number(value, sizeof(value), n->value);
	format_number(threshold, sizeof(threshold), n->threshold);
	format_duration(window, sizeof(window), n->window_ms);
	text_add(&t, "alert ", 6);
	text_add_clean(&t, n->rule);
	text_addf(&t, " %s: ", state_upper[n->state]);
	text_add_clean(&t, n->group);
	text_add(&t, " ", 1);
	text_add_clean(&t, n->protocol);
	text_add(&t, ": ", 2);
	text_add_clean(&t, n->condition);
	text_addf(&t, " %s%s", value, isnan(n->value) ? "" : unit);
	if (n->state == PS_ALERT_RESOLVED)
		text_addf(&t, " (resolves %s %s%s)", n->comparison, threshold, unit);
	else
		text_addf(&t, " %s %s%s", n->comparison, threshold, unit);
	text_addf(&t, " over %s", window);
	if (n->state == PS_ALERT_REPEAT && n->unix_ns >= n->firing_since_unix_ns) {
		uint64_t ms = (n->unix_ns - n->firing_since_unix_ns) / 1000000;

		/* to the nearest second: flush timers run a little early or late */
		format_duration(since, sizeof(since), ms >= 1000 ? (ms + 500) / 1000 * 1000 : ms);
		text_addf(&t, ", firing for %s", since);
	}
	return text_finish(&t);
}

int ps_syslog_severity(const struct ps_alert_notice *n)
{
	return n->state == PS_ALERT_RESOLVED ? LOG_NOTICE : LOG_WARNING;
}

/* RFC 5424 header fields: printable US-ASCII without spaces, bounded, or "-". */
static void text_add_field(struct text *t, const char *s, size_t max)
{
	size_t n = 0;

	for (; s && *s && n < max; s++, n++) {
		char c = *s >= 33 && *s <= 126 ? *s : '_';

		text_add(t, &c, 1);
	}
	if (n == 0)
		text_add(t, "-", 1);
}

static void text_add_timestamp(struct text *t, uint64_t unix_ns)
{
	time_t secs = (time_t)(unix_ns / 1000000000ull);
	char when[32];
	struct tm tm;

	if (!unix_ns || !gmtime_r(&secs, &tm)) {
		text_add(t, "-", 1);
		return;
	}
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	text_addf(t, "%s.%06uZ", when, (unsigned)(unix_ns % 1000000000ull / 1000));
}

static void text_add_structured_data(struct text *t, const struct ps_alert_notice *n)
{
	char num[32];

	text_add(t, "[" SD_ID, strlen("[" SD_ID));
	text_add_param(t, "alert", n->rule ? n->rule : "");
	text_add_param(t, "state", state_lower[n->state]);
	text_add_param(t, "protocol", n->protocol ? n->protocol : "");
	text_add_param(t, "group", n->group ? n->group : "");
	text_add_param(t, "condition", n->condition ? n->condition : "");
	text_add_param(t, "comparison", n->comparison ? n->comparison : "");
	snprintf(num, sizeof(num), "%.17g", n->value);
	text_add_param(t, "value", isnan(n->value) ? "" : num);
	snprintf(num, sizeof(num), "%.17g", n->threshold);
	text_add_param(t, "threshold", num);
	if (n->window_ms % 1000)
		snprintf(num, sizeof(num), "%" PRIu64 "ms", n->window_ms);
	else
		snprintf(num, sizeof(num), "%" PRIu64 "s", n->window_ms / 1000);
	text_add_param(t, "window", num);
	text_add(t, "]", 1);
}

char *ps_syslog_format_rfc5424(const struct ps_alert_notice *n, const struct ps_syslog_origin *o)
{
	struct text t = { 0 };
	char *line;

	if (!n || !o || !valid_state(n)) {
		errno = EINVAL;
		return NULL;
	}
	line = ps_syslog_format_line(n);
	if (!line)
		return NULL;
	text_addf(&t, "<%d>1 ", o->facility | ps_syslog_severity(n));
	text_add_timestamp(&t, n->unix_ns);
	text_add(&t, " ", 1);
	text_add_field(&t, o->hostname, HOSTNAME_MAX);
	text_add(&t, " ", 1);
	text_add_field(&t, o->app_name, APP_NAME_MAX);
	text_addf(&t, " %d " MSGID " ", o->pid);
	text_add_structured_data(&t, n);
	text_add(&t, " ", 1);
	text_add(&t, line, strlen(line));
	free(line);
	return text_finish(&t);
}

/* ---- remote targets ----------------------------------------------------------------------- */

enum transport {
	TRANSPORT_UDP,
	TRANSPORT_TCP,
};

struct frame {
	struct frame *next;
	size_t len, sent;
	char data[];
};

struct syslog_sink {
	char *ident; /* openlog() keeps the pointer */
	int facility;
	char hostname[HOSTNAME_MAX + 1];
	bool local;

	/* remote */
	char *remote;
	enum transport transport;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int fd;		 /* -1: none */
	bool connecting; /* TCP connect in flight */
	bool down;	 /* we said so in the log */
	uint64_t retry_at_ns;
	struct frame *queue, **queue_tail; /* TCP */
	size_t queued;
	uint64_t dropped;      /* in all */
	uint64_t dropped_down; /* since we logged "down" */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_port(const char *s, uint16_t *out)
{
	char *end;
	long v;

	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 1 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* "[::1]:514", "127.0.0.1:514", "localhost" (port optional: 514). */
static int parse_host_port(const char *hp, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *end;
	uint16_t portnum = DEFAULT_PORT;

	if (*hp == '[') {
		end = strchr(hp, ']');
		if (!end || (end[1] && end[1] != ':'))
			return -EINVAL;
		port = end[1] ? end + 2 : NULL;
		hp++;
	} else {
		end = strchr(hp, ':');
		port = end ? end + 1 : NULL;
		if (!end)
			end = hp + strlen(hp);
	}
	if ((size_t)(end - hp) >= sizeof(host) || end == hp)
		return -EINVAL;
	memcpy(host, hp, (size_t)(end - hp));
	host[end - hp] = '\0';
	if (port && parse_port(port, &portnum))
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(portnum);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(portnum);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

static int parse_remote(struct syslog_sink *st, const char *remote)
{
	if (strncmp(remote, "udp://", 6) == 0)
		st->transport = TRANSPORT_UDP;
	else if (strncmp(remote, "tcp://", 6) == 0)
		st->transport = TRANSPORT_TCP;
	else
		return -EINVAL;
	return parse_host_port(remote + 6, &st->addr, &st->addr_len);
}

static void close_remote(struct syslog_sink *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
	st->connecting = false;
}

static void count_drop(struct syslog_sink *st)
{
	st->dropped++;
	st->dropped_down++;
}

static void drop_queue(struct syslog_sink *st)
{
	while (st->queue) {
		struct frame *next = st->queue->next;

		free(st->queue);
		st->queue = next;
		count_drop(st);
	}
	st->queue_tail = &st->queue;
	st->queued = 0;
}

/* Logged once per state change; the count says what the outage cost. */
static void note_down(struct syslog_sink *st, int err)
{
	if (st->down)
		return;
	st->down = true;
	ps_warn(SUBSYS, "%s: %s; alerts are dropped until it answers again", st->remote,
		strerror(err));
}

static void note_up(struct syslog_sink *st)
{
	if (!st->down)
		return;
	st->down = false;
	ps_info(SUBSYS, "%s: reachable again (%" PRIu64 " alert messages dropped meanwhile)",
		st->remote, st->dropped_down);
	st->dropped_down = 0;
}

/* TCP: the connection is gone, and with it whatever was queued. */
static void tcp_lost(struct syslog_sink *st, int err)
{
	close_remote(st);
	drop_queue(st);
	st->retry_at_ns = mono_ns() + RETRY_INTERVAL_NS;
	note_down(st, err);
}

/* 0 connected, -EINPROGRESS still connecting, or -errno. */
static int connect_result(int fd, int wait_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int rc, soerr = 0;

	do
		rc = poll(&pfd, 1, wait_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -EINPROGRESS;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

/*
 * A non-blocking socket connected to the target: 0, -EINPROGRESS (TCP, still
 * in flight after CONNECT_WAIT_MS; st->fd is kept) or -errno (st->fd is -1).
 */
static int connect_remote(struct syslog_sink *st)
{
	int type = st->transport == TRANSPORT_TCP ? SOCK_STREAM : SOCK_DGRAM;
	int rc;

	st->fd = socket(st->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st->fd < 0)
		return -errno;
	rc = connect(st->fd, (struct sockaddr *)&st->addr, st->addr_len) ? -errno : 0;
	if (rc == -EINPROGRESS)
		rc = connect_result(st->fd, CONNECT_WAIT_MS);
	if (rc == -EINPROGRESS)
		st->connecting = true;
	else if (rc)
		close_remote(st);
	return rc;
}

/* A TCP peer that closed on us shows as readable with nothing to read. */
static bool peer_closed(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Makes the TCP connection usable if that needs no waiting; false when it is not. */
static bool tcp_ready(struct syslog_sink *st)
{
	int rc;

	if (st->fd >= 0 && st->connecting) {
		rc = connect_result(st->fd, 0);
		if (rc == -EINPROGRESS)
			return false;
		st->connecting = false;
		if (rc) {
			tcp_lost(st, -rc);
			return false;
		}
		note_up(st);
	}
	if (st->fd >= 0 && peer_closed(st->fd))
		close_remote(st); /* reconnect below, right away */
	if (st->fd < 0) {
		if (st->down && mono_ns() < st->retry_at_ns)
			return false;
		rc = connect_remote(st);
		if (rc && rc != -EINPROGRESS)
			tcp_lost(st, -rc);
		else if (!rc)
			note_up(st);
	}
	return st->fd >= 0 && !st->connecting;
}

/* Writes queued frames until the socket would block. */
static void tcp_drain(struct syslog_sink *st)
{
	if (!st->queue || !tcp_ready(st))
		return;
	while (st->queue) {
		struct frame *f = st->queue;
		ssize_t n = send(st->fd, f->data + f->sent, f->len - f->sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0) {
			tcp_lost(st, errno);
			return;
		}
		f->sent += (size_t)n;
		if (f->sent < f->len)
			continue;
		st->queue = f->next;
		if (!st->queue)
			st->queue_tail = &st->queue;
		st->queued--;
		free(f);
	}
}

/* RFC 6587 octet counting: "LEN SP MSG". */
static void tcp_send(struct syslog_sink *st, const char *msg)
{
	size_t len = strlen(msg);
	struct frame *f;
	int head;

	if (st->queued >= MAX_QUEUED_FRAMES || (st->down && mono_ns() < st->retry_at_ns)) {
		count_drop(st);
		return;
	}
	f = malloc(sizeof(*f) + len + 24);
	if (!f) {
		count_drop(st);
		return;
	}
	head = snprintf(f->data, 24, "%zu ", len);
	memcpy(f->data + head, msg, len);
	f->len = (size_t)head + len;
	f->sent = 0;
	f->next = NULL;
	*st->queue_tail = f;
	st->queue_tail = &f->next;
	st->queued++;
	tcp_drain(st);
}

/*
 * An ICMP "port unreachable" for an earlier datagram shows up as a pending
 * error on the connected UDP socket: that datagram was lost.
 */
static bool udp_lost_one(struct syslog_sink *st)
{
	socklen_t len = sizeof(int);
	int soerr = 0;

	if (st->fd < 0 || getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || !soerr)
		return false;
	count_drop(st);
	note_down(st, soerr);
	return true;
}

static void udp_send(struct syslog_sink *st, const char *msg)
{
	bool lost;
	int rc;

	if (st->fd < 0 && (rc = connect_remote(st))) {
		count_drop(st);
		note_down(st, -rc);
		return;
	}
	lost = udp_lost_one(st);
	if (send(st->fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		count_drop(st);
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			note_down(st, errno);
		return;
	}
	if (!lost)
		note_up(st);
}

/* ---- the sink ----------------------------------------------------------------------------- */

static int facility_value(const char *name)
{
	for (size_t i = 0; name && facility_names[i]; i++)
		if (strcmp(facility_names[i], name) == 0)
			return facility_values[i];
	return LOG_DAEMON;
}

static void syslog_close(void *state)
{
	struct syslog_sink *st = state;

	if (!st)
		return;
	if (st->local)
		closelog();
	close_remote(st);
	drop_queue(st);
	free(st->remote);
	free(st->ident);
	free(st);
}

#define REMOTE_PROBLEM                                                                    \
	"remote '%s': expected udp://HOST:PORT or tcp://HOST:PORT with an IPv4 address, " \
	"[IPv6] address or localhost"

static int open_remote(struct syslog_sink *st, const char *remote)
{
	int rc;

	if (parse_remote(st, remote)) {
		ps_error(SUBSYS, REMOTE_PROBLEM, remote);
		return -EINVAL;
	}
	st->remote = strdup(remote);
	if (!st->remote)
		return -ENOMEM;
	/* A target that is down at start is not fatal: it is retried as alerts come. */
	if (st->transport == TRANSPORT_TCP)
		tcp_ready(st);
	else if ((rc = connect_remote(st)))
		note_down(st, -rc);
	return 0;
}

static int syslog_check(const void *config, const struct ps_cfg_node *section,
			struct ps_cfg_error *err)
{
	const struct syslog_config *cfg = config;
	struct syslog_sink probe = { .fd = -1 };

	if (cfg->remote && parse_remote(&probe, cfg->remote))
		return ps_cfg_errorf(err, ps_cfg_node_get(section, "remote"), REMOTE_PROBLEM,
				     cfg->remote);
	return 0;
}

static void *syslog_open(const void *config)
{
	const struct syslog_config *cfg = config;
	struct syslog_sink *st = calloc(1, sizeof(*st));
	int rc = -ENOMEM;

	if (!st)
		return NULL;
	st->fd = -1;
	st->queue_tail = &st->queue;
	st->facility = facility_value(cfg ? cfg->facility : NULL);
	st->ident = strdup(cfg && cfg->ident ? cfg->ident : "periscope");
	if (!st->ident)
		goto fail;
	if (cfg && cfg->hostname)
		snprintf(st->hostname, sizeof(st->hostname), "%s", cfg->hostname);
	else if (gethostname(st->hostname, sizeof(st->hostname) - 1) < 0)
		st->hostname[0] = '\0';
	if (cfg && cfg->remote) {
		rc = open_remote(st, cfg->remote);
		if (rc)
			goto fail;
		return st;
	}
	st->local = true;
	openlog(st->ident, LOG_PID | LOG_NDELAY, st->facility);
	return st;

fail:
	syslog_close(st);
	errno = -rc;
	return NULL;
}

static void syslog_event(void *state, const struct ps_event *ev)
{
	struct syslog_sink *st = state;
	struct ps_syslog_origin origin;
	char *msg;

	if (ev->type != PS_EVENT_ALERT || !ev->alert)
		return;
	if (st->local) {
		msg = ps_syslog_format_line(ev->alert);
		if (msg)
			syslog(ps_syslog_severity(ev->alert), "%s", msg);
		free(msg);
		return;
	}
	origin = (struct ps_syslog_origin){
		.facility = st->facility,
		.hostname = st->hostname,
		.app_name = st->ident,
		.pid = (int)getpid(),
	};
	msg = ps_syslog_format_rfc5424(ev->alert, &origin);
	if (!msg) {
		count_drop(st);
		return;
	}
	if (st->transport == TRANSPORT_TCP)
		tcp_send(st, msg);
	else
		udp_send(st, msg);
	free(msg);
}

/* Nothing to write at a flush; a TCP target gets its backlog and a reconnect chance. */
static int syslog_flush(void *state, const struct ps_flush_ctx *ctx)
{
	struct syslog_sink *st = state;

	if (st->local)
		return 0;
	if (st->transport == TRANSPORT_UDP)
		udp_lost_one(st);
	else if (st->queue)
		tcp_drain(st);
	else if (st->fd < 0 || st->connecting)
		tcp_ready(st);
	return 0;
}

uint64_t ps_sink_syslog_dropped(const void *state)
{
	const struct syslog_sink *st = state;

	return st ? st->dropped : 0;
}

const struct ps_sink_type ps_sink_syslog = {
	.name = "syslog",
	.config_map = syslog_config_map,
	.config_size = sizeof(struct syslog_config),
	.open = syslog_open,
	.flush = syslog_flush,
	.event = syslog_event,
	.close = syslog_close,
	.check = syslog_check,
};
