/*
 * Unit tests for the syslog sink (core/sinks/syslog.c): the line and RFC 5424
 * formats, and remote targets on sockets this test binds on 127.0.0.1.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "cfg.h"
#include "logging.h"
#include "sinks/sink.h"
#include "sinks/syslog_format.h"

#define T_NS 1700000000123456789ull /* 2023-11-14T22:13:20.123456789Z */

static struct ps_alert_notice firing(void)
{
	return (struct ps_alert_notice){
		.rule = "checkout-errors",
		.state = PS_ALERT_FIRING,
		.protocol = "http",
		.group = "service_name=checkout",
		.condition = "error_ratio",
		.comparison = "above",
		.value = 0.2,
		.threshold = 0.05,
		.window_ms = 60000,
		.firing_since_unix_ns = T_NS,
		.unix_ns = T_NS,
	};
}

static void assert_line(const struct ps_alert_notice *n, const char *want)
{
	char *line = ps_syslog_format_line(n);

	ck_assert_ptr_nonnull(line);
	ck_assert_str_eq(line, want);
	free(line);
}

/* ---- formats ------------------------------------------------------------------------------ */

START_TEST(test_line_states)
{
	struct ps_alert_notice n = firing();

	assert_line(&n, "alert checkout-errors FIRING: service_name=checkout http: "
			"error_ratio 0.2 above 0.05 over 1m");
	n.state = PS_ALERT_REPEAT;
	n.unix_ns = T_NS + 2 * 3600 * 1000000000ull + 123456789;
	assert_line(&n, "alert checkout-errors REPEAT: service_name=checkout http: "
			"error_ratio 0.2 above 0.05 over 1m, firing for 2h");
	n.state = PS_ALERT_RESOLVED;
	n.value = 0.01;
	n.threshold = 0.02;
	n.comparison = "below";
	assert_line(&n, "alert checkout-errors RESOLVED: service_name=checkout http: "
			"error_ratio 0.01 (resolves below 0.02) over 1m");
	n.value = NAN; /* the group vanished */
	assert_line(&n, "alert checkout-errors RESOLVED: service_name=checkout http: "
			"error_ratio n/a (resolves below 0.02) over 1m");
	n.state = (enum ps_alert_state)7;
	errno = 0;
	ck_assert_ptr_null(ps_syslog_format_line(&n));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_line_conditions_and_units)
{
	struct ps_alert_notice n = firing();

	n.condition = "latency_p99";
	n.protocol = "db";
	n.group = "service_name=api db_operation_name=SELECT";
	n.value = 0.62346;
	n.threshold = 0.5;
	n.window_ms = 5 * 60000;
	assert_line(&n, "alert checkout-errors FIRING: service_name=api db_operation_name=SELECT "
			"db: latency_p99 0.6235s above 0.5s over 5m");
	n.condition = "rate";
	n.protocol = "tcp";
	n.group = "service_name=load";
	n.comparison = "below";
	n.value = 0.25;
	n.threshold = 1;
	n.window_ms = 90000;
	assert_line(&n, "alert checkout-errors FIRING: service_name=load tcp: rate 0.25/s below "
			"1/s over 1m30s");
	n.value = 123456.7;
	n.comparison = "above";
	n.threshold = 100000;
	n.window_ms = 500;
	assert_line(&n, "alert checkout-errors FIRING: service_name=load tcp: rate 123457/s above "
			"100000/s over 500ms");
}
END_TEST

START_TEST(test_line_durations)
{
	static const struct {
		uint64_t ms;
		const char *text;
	} cases[] = {
		{ 2000, "2s" },	      { 1500, "1500ms" },   { 60000, "1m" },	 { 3600000, "1h" },
		{ 5400000, "1h30m" }, { 93600000, "1d2h" }, { 3723000, "1h2m" }, { 0, "0ms" },
	};
	struct ps_alert_notice n = firing();
	char want[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n.window_ms = cases[i].ms;
		snprintf(want, sizeof(want),
			 "alert checkout-errors FIRING: service_name=checkout "
			 "http: error_ratio 0.2 above 0.05 over %s",
			 cases[i].text);
		assert_line(&n, want);
	}
	n.window_ms = 2000;
	n.state = PS_ALERT_REPEAT;
	n.unix_ns = T_NS + 6400000000ull; /* whole seconds, the nearest */
	assert_line(&n, "alert checkout-errors REPEAT: service_name=checkout http: error_ratio 0.2 "
			"above 0.05 over 2s, firing for 6s");
	n.unix_ns = T_NS + 2999800000ull; /* a flush a little early */
	assert_line(&n, "alert checkout-errors REPEAT: service_name=checkout http: error_ratio 0.2 "
			"above 0.05 over 2s, firing for 3s");
}
END_TEST

/* Nothing from traffic may split a log line. */
START_TEST(test_line_control_bytes)
{
	struct ps_alert_notice n = firing();

	n.group = "service_name=a\nb\x1b[0m";
	assert_line(&n, "alert checkout-errors FIRING: service_name=a\\x0ab\\x1b[0m http: "
			"error_ratio 0.2 above 0.05 over 1m");
}
END_TEST

START_TEST(test_rfc5424)
{
	struct ps_alert_notice n = firing();
	struct ps_syslog_origin o = {
		.facility = LOG_DAEMON,
		.hostname = "web-1",
		.app_name = "periscope",
		.pid = 42,
	};
	char *msg = ps_syslog_format_rfc5424(&n, &o);

	ck_assert_ptr_nonnull(msg);
	ck_assert_str_eq(
		msg, "<28>1 2023-11-14T22:13:20.123456Z web-1 periscope 42 alert "
		     "[periscope@32473 alert=\"checkout-errors\" state=\"firing\" "
		     "protocol=\"http\" group=\"service_name=checkout\" "
		     "condition=\"error_ratio\" comparison=\"above\" value=\"0.20000000000000001\" "
		     "threshold=\"0.050000000000000003\" window=\"60s\"] "
		     "alert checkout-errors FIRING: service_name=checkout http: "
		     "error_ratio 0.2 above 0.05 over 1m");
	free(msg);

	n.state = PS_ALERT_RESOLVED;
	n.value = NAN;
	n.threshold = 0.5;
	n.comparison = "below";
	n.window_ms = 1500;
	o.facility = LOG_LOCAL3;
	msg = ps_syslog_format_rfc5424(&n, &o);
	ck_assert_ptr_nonnull(msg);
	ck_assert_ptr_nonnull(strstr(msg, "<157>1 ")); /* local3 (19) * 8 + notice (5) */
	ck_assert_ptr_nonnull(strstr(msg, " state=\"resolved\" "));
	ck_assert_ptr_nonnull(strstr(msg, " value=\"\" threshold=\"0.5\" window=\"1500ms\"]"));
	free(msg);
}
END_TEST

START_TEST(test_rfc5424_escaping)
{
	struct ps_alert_notice n = firing();
	struct ps_syslog_origin o = {
		.facility = LOG_USER,
		.hostname = "bad host\tname",
		.app_name = "",
		.pid = 7,
	};
	char *msg;

	n.group = "service_name=a\"b]c\\d";
	n.unix_ns = 0;
	msg = ps_syslog_format_rfc5424(&n, &o);
	ck_assert_ptr_nonnull(msg);
	/* user (1) * 8 + warning (4); no time, host sanitized, no app name */
	ck_assert_msg(strncmp(msg, "<12>1 - bad_host_name - 7 alert [", 33) == 0, "%s", msg);
	ck_assert_ptr_nonnull(strstr(msg, " group=\"service_name=a\\\"b\\]c\\\\d\" "));
	/* the MSG part is free text: no SD escaping there */
	ck_assert_ptr_nonnull(
		strstr(msg, "] alert checkout-errors FIRING: service_name=a\"b]c\\d "));
	free(msg);

	o.hostname = NULL;
	msg = ps_syslog_format_rfc5424(&n, &o);
	ck_assert_msg(strncmp(msg, "<12>1 - - - 7 alert [", 21) == 0, "%s", msg);
	free(msg);
	ck_assert_int_eq(ps_syslog_severity(&n), LOG_WARNING);
	n.state = PS_ALERT_RESOLVED;
	ck_assert_int_eq(ps_syslog_severity(&n), LOG_NOTICE);
}
END_TEST

/* ---- the sink with real sockets ----------------------------------------------------------- */

struct opened {
	void *state;
	void *config;
};

static int open_sink(const char *yaml, struct opened *out)
{
	struct ps_cfg_error err;
	struct ps_cfg_node *root = ps_cfg_load_string("t.yaml", yaml, strlen(yaml), &err);
	int rc;

	ck_assert_msg(root != NULL, "%s", err.msg);
	out->config = calloc(1, ps_sink_syslog.config_size);
	ck_assert_ptr_nonnull(out->config);
	rc = ps_cfg_map_parse(root, ps_sink_syslog.config_map, NULL, out->config, &err);
	ps_cfg_node_free(root);
	if (rc) {
		free(out->config);
		return rc;
	}
	out->state = ps_sink_syslog.open(out->config);
	rc = out->state ? 0 : -errno;
	ps_cfg_map_free(ps_sink_syslog.config_map, out->config);
	free(out->config);
	return rc;
}

static void send_alert(void *state, enum ps_alert_state s, const char *rule)
{
	struct ps_alert_notice n = firing();
	struct ps_event ev = { .type = PS_EVENT_ALERT, .plugin = "core", .alert = &n };

	n.state = s;
	n.rule = rule;
	ps_sink_syslog.event(state, &ev);
}

static int bound_socket(int type, uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(*port) };
	socklen_t len = sizeof(a);
	int one = 1, fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	if (type == SOCK_STREAM)
		ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

static char *recv_datagram(int fd)
{
	static char buf[4096];
	ssize_t n;

	if (!readable(fd, 2000))
		return NULL;
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return buf;
}

static double elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

START_TEST(test_udp_remote)
{
	uint16_t port = 0;
	int fd = bound_socket(SOCK_DGRAM, &port);
	struct ps_flow_record flow = { 0 };
	struct ps_event other = { .type = PS_EVENT_FLOW, .plugin = "tcpflow", .flow = &flow };
	struct opened s;
	char yaml[256], *msg;

	snprintf(yaml, sizeof(yaml),
		 "{ ident: pscope, facility: local0, remote: 'udp://127.0.0.1:%u', hostname: h1 }",
		 port);
	ck_assert_int_eq(open_sink(yaml, &s), 0);
	send_alert(s.state, PS_ALERT_FIRING, "one");
	send_alert(s.state, PS_ALERT_RESOLVED, "two");
	ps_sink_syslog.event(s.state, &other); /* not an alert: ignored */
	ck_assert_int_eq(ps_sink_syslog.flush(s.state, NULL), 0);

	msg = recv_datagram(fd);
	ck_assert_ptr_nonnull(msg);
	/* local0 (16) * 8 + warning (4) */
	ck_assert_msg(strncmp(msg, "<132>1 2023-11-14T22:13:20.123456Z h1 pscope ", 45) == 0, "%s",
		      msg);
	ck_assert_ptr_nonnull(
		strstr(msg, " alert [periscope@32473 alert=\"one\" state=\"firing\""));
	ck_assert_ptr_nonnull(strstr(msg, "] alert one FIRING: service_name=checkout http: "));
	msg = recv_datagram(fd);
	ck_assert_ptr_nonnull(msg);
	ck_assert_msg(strncmp(msg, "<133>1 ", 7) == 0, "%s", msg);
	ck_assert_ptr_nonnull(strstr(msg, "] alert two RESOLVED: "));
	ck_assert(!readable(fd, 100));
	ck_assert_uint_eq(ps_sink_syslog_dropped(s.state), 0);
	ps_sink_syslog.close(s.state);
	close(fd);
}
END_TEST

/* Datagrams to a closed port are counted as lost; when it is back they arrive again. */
START_TEST(test_udp_peer_down)
{
	uint16_t port = 0;
	int fd = bound_socket(SOCK_DGRAM, &port);
	struct timespec start;
	struct opened s;
	char yaml[128], *msg;

	close(fd);
	snprintf(yaml, sizeof(yaml), "{ remote: 'udp://localhost:%u' }", port);
	ck_assert_int_eq(open_sink(yaml, &s), 0);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int i = 0; i < 4; i++) {
		send_alert(s.state, PS_ALERT_FIRING, "lost");
		usleep(20000); /* let the ICMP errors come back */
	}
	ck_assert_int_eq(ps_sink_syslog.flush(s.state, NULL), 0);
	ck_assert_double_lt(elapsed_ms(&start), 1000);
	ck_assert_uint_ge(ps_sink_syslog_dropped(s.state), 3);

	fd = bound_socket(SOCK_DGRAM, &port);
	send_alert(s.state, PS_ALERT_FIRING, "back");
	msg = recv_datagram(fd);
	ck_assert_ptr_nonnull(msg);
	ck_assert_ptr_nonnull(strstr(msg, "] alert back FIRING"));
	ps_sink_syslog.close(s.state);
	close(fd);
}
END_TEST

/* Reads one octet-counted frame ("LEN SP MSG") from a stream. */
static char *read_frame(int fd)
{
	static char buf[4096];
	size_t len = 0, got = 0;
	char c;

	for (;;) {
		ck_assert_msg(readable(fd, 2000), "no frame");
		ck_assert_int_eq(recv(fd, &c, 1, 0), 1);
		if (c == ' ')
			break;
		ck_assert_msg(c >= '0' && c <= '9', "bad frame header byte 0x%02x", c);
		len = len * 10 + (size_t)(c - '0');
	}
	ck_assert_uint_lt(len, sizeof(buf));
	while (got < len) {
		ssize_t n;

		ck_assert_msg(readable(fd, 2000), "short frame");
		n = recv(fd, buf + got, len - got, 0);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

static int accept_one(int listener)
{
	int fd;

	ck_assert_msg(readable(listener, 2000), "no connection");
	fd = accept(listener, NULL, NULL);
	ck_assert_int_ge(fd, 0);
	return fd;
}

START_TEST(test_tcp_octet_counting)
{
	uint16_t port = 0;
	int listener = bound_socket(SOCK_STREAM, &port), fd;
	struct opened s;
	char yaml[128], *msg;

	snprintf(yaml, sizeof(yaml), "{ remote: 'tcp://127.0.0.1:%u', hostname: h }", port);
	ck_assert_int_eq(open_sink(yaml, &s), 0);
	fd = accept_one(listener);
	send_alert(s.state, PS_ALERT_FIRING, "a");
	send_alert(s.state, PS_ALERT_REPEAT, "b");
	send_alert(s.state, PS_ALERT_RESOLVED, "c");
	msg = read_frame(fd);
	ck_assert_msg(strncmp(msg, "<28>1 2023-11-14T22:13:20.123456Z h periscope ", 46) == 0, "%s",
		      msg);
	ck_assert_ptr_nonnull(strstr(msg, "] alert a FIRING: "));
	ck_assert_ptr_nonnull(strstr(read_frame(fd), "] alert b REPEAT: "));
	msg = read_frame(fd);
	ck_assert_ptr_nonnull(strstr(msg, "] alert c RESOLVED: "));
	ck_assert_msg(msg[strlen(msg) - 1] == 'm', "frame ends inside the message: %s", msg);
	ck_assert(!readable(fd, 50));
	ps_sink_syslog.close(s.state);
	close(fd);
	close(listener);
}
END_TEST

START_TEST(test_tcp_reconnect)
{
	uint16_t port = 0;
	int listener = bound_socket(SOCK_STREAM, &port), fd;
	struct timespec start;
	struct opened s;
	char yaml[128];

	snprintf(yaml, sizeof(yaml), "{ remote: 'tcp://127.0.0.1:%u' }", port);
	ck_assert_int_eq(open_sink(yaml, &s), 0);
	fd = accept_one(listener);
	send_alert(s.state, PS_ALERT_FIRING, "first");
	ck_assert_ptr_nonnull(strstr(read_frame(fd), "] alert first FIRING"));

	/* The collector restarts: the next message goes over a new connection. */
	close(fd);
	usleep(20000);
	send_alert(s.state, PS_ALERT_FIRING, "second");
	fd = accept_one(listener);
	ck_assert_ptr_nonnull(strstr(read_frame(fd), "] alert second FIRING"));

	/* The collector is gone: messages are dropped and counted, the loop does not wait. */
	close(fd);
	close(listener);
	usleep(20000);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int i = 0; i < 5; i++)
		send_alert(s.state, PS_ALERT_REPEAT, "void");
	ck_assert_int_eq(ps_sink_syslog.flush(s.state, NULL), 0);
	ck_assert_double_lt(elapsed_ms(&start), 500);
	ck_assert_uint_eq(ps_sink_syslog_dropped(s.state), 5);

	/* Back on the same port: after the retry interval, delivery resumes. */
	listener = bound_socket(SOCK_STREAM, &port);
	usleep(1100000);
	ck_assert_int_eq(ps_sink_syslog.flush(s.state, NULL), 0); /* reconnects */
	fd = accept_one(listener);
	send_alert(s.state, PS_ALERT_RESOLVED, "third");
	ck_assert_ptr_nonnull(strstr(read_frame(fd), "] alert third RESOLVED"));
	ck_assert_uint_eq(ps_sink_syslog_dropped(s.state), 5);
	ps_sink_syslog.close(s.state);
	close(fd);
	close(listener);
}
END_TEST

START_TEST(test_config)
{
	static const char *const bad_remotes[] = {
		"http://127.0.0.1:514",
		"udp://",
		"udp://host.example:514",
		"tcp://127.0.0.1:0",
		"tcp://127.0.0.1:70000",
		"udp://::1:514",
		"udp://[::1",
		"tcp://127.0.0.1:5x",
	};
	struct opened s;
	char yaml[128];

	/* facility is one of a fixed set */
	ck_assert_int_eq(open_sink("{ facility: kern }", &s), -EINVAL);
	ck_assert_int_eq(open_sink("{ colour: blue }", &s), -EINVAL);
	for (size_t i = 0; i < sizeof(bad_remotes) / sizeof(bad_remotes[0]); i++) {
		snprintf(yaml, sizeof(yaml), "{ remote: '%s' }", bad_remotes[i]);
		ck_assert_msg(open_sink(yaml, &s) == -EINVAL, "accepted %s", bad_remotes[i]);
	}
	ck_assert_int_eq(open_sink("{ remote: 'udp://[::1]:5514' }", &s), 0);
	ps_sink_syslog.close(s.state);
	ck_assert_int_eq(open_sink("{ remote: 'udp://localhost' }", &s), 0);
	ps_sink_syslog.close(s.state);
	/* local syslog: openlog() at open, one syslog() per alert, nothing at a flush */
	ck_assert_int_eq(open_sink("{}", &s), 0);
	send_alert(s.state, PS_ALERT_FIRING, "local");
	ck_assert_int_eq(ps_sink_syslog.flush(s.state, NULL), 0);
	ps_sink_syslog.close(s.state);
	ck_assert_str_eq(ps_sink_syslog.name, "syslog");
}
END_TEST

static Suite *syslog_suite(void)
{
	Suite *s = suite_create("syslog");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_line_states);
	tcase_add_test(tc, test_line_conditions_and_units);
	tcase_add_test(tc, test_line_durations);
	tcase_add_test(tc, test_line_control_bytes);
	tcase_add_test(tc, test_rfc5424);
	tcase_add_test(tc, test_rfc5424_escaping);
	tcase_add_test(tc, test_udp_remote);
	tcase_add_test(tc, test_udp_peer_down);
	tcase_add_test(tc, test_tcp_octet_counting);
	tcase_add_test(tc, test_tcp_reconnect);
	tcase_add_test(tc, test_config);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(syslog_suite());
	int failed;

	ps_log_set_level(PS_LOG_ERROR); /* down/up transitions are expected here */
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
