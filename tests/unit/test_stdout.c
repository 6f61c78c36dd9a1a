/* The stdout sink (table, json, prometheus) and the Prometheus text writer. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "cfg.h"
#include "eventbus.h"
#include "registry.h"
#include "sinks/prom_text.h"
#include "sinks/sink.h"

#define PROMTOOL    "/usr/bin/promtool"
#define NOW_NS	    1795543215000000000ull /* 2026-11-24T18:00:15Z */
#define INTERVAL_NS 15000000000ull

static const char *const tcp_labels[] = {
	"service_name", "direction", "peer_address", "peer_port", NULL,
};
static const char *const http_labels[] = {
	"service_name", "http_request_method", "http_response_status_code",
	"http_route",	"url_scheme",	       NULL,
};
static const char *const plugin_labels[] = { "service_name", "plugin", NULL };
static const double http_bounds[] = { 0.005, 0.5, 1 };

struct fixture {
	struct ps_registry *reg;
	struct ps_metric *opened, *active, *duration, *unused, *plugin_up;
	char *static_keys[2], *static_values[2];
	struct ps_strmap static_labels;
	struct ps_flush_ctx ctx;
};

static const char *const opened_nginx[] = { "nginx", "outbound", "10.0.0.5", "5432" };
/* A service name that needs every kind of escaping. */
static const char *const active_weird[] = { "a\"b\\c\nd", "inbound", "", "8080" };
static const char *const users_get[] = { "nginx", "GET", "200", "/api/v1/users/{id}", "http" };
static const char *const tcpflow_up[] = { "periscoped", "tcpflow" };

static void fixture_init(struct fixture *fx)
{
	const struct ps_metric_desc opened = {
		.name = "periscope_tcp_connections_opened_total",
		.help = "TCP connections opened.",
		.type = PS_METRIC_COUNTER,
		.labels = tcp_labels,
	};
	const struct ps_metric_desc active = {
		.name = "periscope_tcp_connections_active",
		.help = "TCP connections open now.",
		.type = PS_METRIC_GAUGE,
		.labels = tcp_labels,
	};
	const struct ps_metric_desc duration = {
		.name = "http_server_request_duration_seconds",
		.help = "Duration of HTTP server requests.\nSecond line \\ backslash.",
		.type = PS_METRIC_HISTOGRAM,
		.labels = http_labels,
		.buckets = http_bounds,
		.n_buckets = 3,
	};
	const struct ps_metric_desc unused = {
		.name = "periscope_tcp_resets_total",
		.help = "Never observed: skipped.",
		.type = PS_METRIC_COUNTER,
		.labels = tcp_labels,
	};
	const struct ps_metric_desc plugin_up = {
		.name = "periscope_plugin_up",
		.help = "Whether the plugin runs.",
		.type = PS_METRIC_GAUGE,
		.labels = plugin_labels,
	};

	memset(fx, 0, sizeof(*fx));
	fx->reg = ps_registry_new(0);
	ck_assert_ptr_nonnull(fx->reg);
	fx->opened = ps_registry_register(fx->reg, &opened);
	fx->active = ps_registry_register(fx->reg, &active);
	fx->duration = ps_registry_register(fx->reg, &duration);
	fx->unused = ps_registry_register(fx->reg, &unused);
	fx->plugin_up = ps_registry_register(fx->reg, &plugin_up);
	ck_assert(fx->opened && fx->active && fx->duration && fx->unused && fx->plugin_up);

	ck_assert_int_eq(ps_metric_add(fx->opened, opened_nginx, 1200), 0);
	ck_assert_int_eq(ps_metric_set(fx->active, active_weird, 3), 0);
	/* buckets 0.005, 0.5, 1, +Inf hold 0, 3, 0, 1: the +Inf bucket is not the last bound's */
	ck_assert_int_eq(ps_metric_observe(fx->duration, users_get, 0.25), 0);
	ck_assert_int_eq(ps_metric_observe(fx->duration, users_get, 0.5), 0);
	ck_assert_int_eq(ps_metric_observe(fx->duration, users_get, 0.5), 0);
	ck_assert_int_eq(ps_metric_observe(fx->duration, users_get, 2), 0);
	ck_assert_int_eq(ps_metric_set(fx->plugin_up, tcpflow_up, 1), 0);

	/* service_name is the family's own: the static one is skipped. */
	fx->static_keys[0] = "cluster";
	fx->static_values[0] = "prod-eu-1";
	fx->static_keys[1] = "service_name";
	fx->static_values[1] = "must-not-appear";
	fx->static_labels = (struct ps_strmap){ fx->static_keys, fx->static_values, 2 };

	fx->ctx = (struct ps_flush_ctx){
		.registry = fx->reg,
		.static_labels = &fx->static_labels,
		.now_unix_ns = NOW_NS,
		.interval_ns = INTERVAL_NS,
	};
}

static void fixture_free(struct fixture *fx)
{
	ps_registry_free(fx->reg);
}

/* The sink's config, parsed the way the daemon does it, from "format: <format>". */
static void *open_sink_yaml(const char *yaml, FILE *out, bool threaded)
{
	const struct ps_sink_type *t = &ps_sink_stdout;
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *node;
	void *config, *sink;

	node = ps_cfg_load_string("<test>", yaml, strlen(yaml), &err);
	ck_assert_msg(node, "%s", err.msg);
	config = calloc(1, t->config_size);
	ck_assert_ptr_nonnull(config);
	ck_assert_msg(ps_cfg_map_parse(node, t->config_map, NULL, config, &err) == 0, "%s",
		      err.msg);
	sink = threaded ? ps_sink_stdout_open_threaded(config, out) :
			  ps_sink_stdout_open_stream(config, out);
	ck_assert_ptr_nonnull(sink);
	/* The sink keeps nothing from its config. */
	ps_cfg_map_free(t->config_map, config);
	free(config);
	ps_cfg_node_free(node);
	return sink;
}

static void *open_sink(const char *format, FILE *out)
{
	char yaml[64];

	snprintf(yaml, sizeof(yaml), "format: %s\n", format);
	return open_sink_yaml(yaml, out, false);
}

struct capture {
	char *buf;
	size_t len;
	FILE *out;
	void *sink;
};

static void capture_open(struct capture *c, const char *format)
{
	memset(c, 0, sizeof(*c));
	c->out = open_memstream(&c->buf, &c->len);
	ck_assert_ptr_nonnull(c->out);
	c->sink = open_sink(format, c->out);
}

/* Everything written since the last call; the caller frees it. */
static char *capture_take(struct capture *c)
{
	char *text;

	fflush(c->out);
	text = strndup(c->buf, c->len);
	ck_assert_ptr_nonnull(text);
	rewind(c->out);
	c->len = 0;
	fflush(c->out);
	return text;
}

static void capture_close(struct capture *c)
{
	ps_sink_stdout.close(c->sink);
	fclose(c->out);
	free(c->buf);
}

static char *flush_once(struct fixture *fx, const char *format)
{
	struct capture c;
	char *text;

	capture_open(&c, format);
	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &fx->ctx), 0);
	text = capture_take(&c);
	capture_close(&c);
	return text;
}

/* Runs cmd with text on its stdin; returns the exit status. */
static int pipe_through(const char *cmd, const char *text)
{
	char path[] = "/tmp/test_stdout.XXXXXX";
	char full[512];
	int fd = mkstemp(path), status;
	FILE *f;

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	snprintf(full, sizeof(full), "%s < %s >/dev/null 2>&1", cmd, path);
	status = system(full);
	unlink(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void assert_promtool_accepts(const char *text)
{
	if (access(PROMTOOL, X_OK) != 0)
		return; /* not installed: the exact-text assertions still hold */
	if (pipe_through(PROMTOOL " check metrics", text) != 0) {
		fprintf(stderr, "promtool rejects:\n%s", text);
		ck_abort_msg("promtool check metrics failed");
	}
}

static void assert_json_lines(const char *text)
{
	if (pipe_through("python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]'",
			 text) != 0) {
		fprintf(stderr, "not JSON lines:\n%s", text);
		ck_abort_msg("json.loads failed");
	}
}

/* ---- numbers ------------------------------------------------------------------------------ */

static const char *num(double v)
{
	static char buf[PS_NUMBER_MAX];

	return ps_format_number(buf, sizeof(buf), v);
}

START_TEST(test_number_format)
{
	ck_assert_str_eq(num(0), "0");
	ck_assert_str_eq(num(-0.0), "0");
	ck_assert_str_eq(num(1200), "1200");
	ck_assert_str_eq(num(-5), "-5");
	ck_assert_str_eq(num(0.005), "0.005");
	ck_assert_str_eq(num(0.1), "0.1");
	ck_assert_str_eq(num(2.5), "2.5");
	ck_assert_str_eq(num(0.1 + 0.2), "0.30000000000000004");
	ck_assert_str_eq(num(1.0 / 3), "0.3333333333333333");
	ck_assert_str_eq(num(1e-7), "1e-07");
	ck_assert_str_eq(num(9007199254740992.0), "9007199254740992");
	ck_assert_str_eq(num(18014398509481984.0), "18014398509481984");
	ck_assert_str_eq(num(1e300), "1e+300");
	ck_assert_str_eq(num(NAN), "NaN");
	ck_assert_str_eq(num(INFINITY), "+Inf");
	ck_assert_str_eq(num(-INFINITY), "-Inf");
	for (double v = 0.001; v < 100; v *= 1.37)
		ck_assert(strtod(num(v), NULL) == v);
}
END_TEST

START_TEST(test_utf8_seq_len)
{
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"a", 1), 1);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xc2\xb5", 2), 2);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xe2\x94\x80", 3), 3);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xe2\x94", 2), 0);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xc0\xaf", 2), 0); /* overlong */
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xed\xa0\x80", 3), 0);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\xff", 1), 0);
	ck_assert_uint_eq(ps_utf8_seq_len((const unsigned char *)"\x80", 1), 0);
}
END_TEST

/* ---- prometheus ------------------------------------------------------------------------- */

#define STATIC ",cluster=\"prod-eu-1\""
#define USERS_GET                                                                               \
	"service_name=\"nginx\",http_request_method=\"GET\",http_response_status_code=\"200\"," \
	"http_route=\"/api/v1/users/{id}\",url_scheme=\"http\"" STATIC

static const char expected_prom[] =
	"# HELP periscope_tcp_connections_opened_total TCP connections opened.\n"
	"# TYPE periscope_tcp_connections_opened_total counter\n"
	"periscope_tcp_connections_opened_total{service_name=\"nginx\",direction=\"outbound\","
	"peer_address=\"10.0.0.5\",peer_port=\"5432\"" STATIC "} 1200\n"
	"# HELP periscope_tcp_connections_active TCP connections open now.\n"
	"# TYPE periscope_tcp_connections_active gauge\n"
	"periscope_tcp_connections_active{service_name=\"a\\\"b\\\\c\\nd\",direction=\"inbound\","
	"peer_address=\"\",peer_port=\"8080\"" STATIC "} 3\n"
	"# HELP http_server_request_duration_seconds Duration of HTTP server requests.\\n"
	"Second line \\\\ backslash.\n"
	"# TYPE http_server_request_duration_seconds histogram\n"
	"http_server_request_duration_seconds_bucket{" USERS_GET ",le=\"0.005\"} 0\n"
	"http_server_request_duration_seconds_bucket{" USERS_GET ",le=\"0.5\"} 3\n"
	"http_server_request_duration_seconds_bucket{" USERS_GET ",le=\"1\"} 3\n"
	"http_server_request_duration_seconds_bucket{" USERS_GET ",le=\"+Inf\"} 4\n"
	"http_server_request_duration_seconds_sum{" USERS_GET "} 3.25\n"
	"http_server_request_duration_seconds_count{" USERS_GET "} 4\n"
	"# HELP periscope_plugin_up Whether the plugin runs.\n"
	"# TYPE periscope_plugin_up gauge\n"
	"periscope_plugin_up{service_name=\"periscoped\",plugin=\"tcpflow\"" STATIC "} 1\n";

START_TEST(test_prom_write_exact)
{
	struct fixture fx;
	char *text;
	size_t len;
	FILE *out;

	fixture_init(&fx);
	out = open_memstream(&text, &len);
	ck_assert_int_eq(ps_prom_write(out, &fx.ctx), 0);
	fclose(out);
	ck_assert_str_eq(text, expected_prom);
	assert_promtool_accepts(text);
	free(text);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_prom_special_values)
{
	static const char *const svc[] = { "service_name", NULL };
	const struct ps_metric_desc ratio = {
		.name = "periscope_test_ratio",
		.help = "r",
		.type = PS_METRIC_GAUGE,
		.labels = svc,
	};
	struct ps_registry *reg = ps_registry_new(0);
	struct ps_flush_ctx ctx = { .registry = reg }; /* no static labels */
	static const char *const bad_utf8[] = { "bad\xff" };
	static const char *const nan_svc[] = { "nan" };
	static const char *const inf_svc[] = { "inf" };
	struct ps_family *f;
	char *text;
	size_t len;
	FILE *out;

	ck_assert_ptr_nonnull(reg);
	ck_assert_ptr_nonnull(ps_registry_register(reg, &ratio));
	ck_assert_int_eq(ps_metric_set((struct ps_metric *)reg->families[0], bad_utf8, 0.1), 0);
	ck_assert_int_eq(ps_metric_set((struct ps_metric *)reg->families[0], nan_svc, 0), 0);
	ck_assert_int_eq(ps_metric_set((struct ps_metric *)reg->families[0], inf_svc, 0), 0);
	/* The registry refuses non-finite values; a sink must still cope with them. */
	f = reg->families[0];
	f->series[1]->value = NAN;
	f->series[2]->value = -INFINITY;

	out = open_memstream(&text, &len);
	ck_assert_int_eq(ps_prom_write(out, &ctx), 0);
	fclose(out);
	ck_assert_str_eq(text, "# HELP periscope_test_ratio r\n"
			       "# TYPE periscope_test_ratio gauge\n"
			       "periscope_test_ratio{service_name=\"bad\xef\xbf\xbd\"} 0.1\n"
			       "periscope_test_ratio{service_name=\"nan\"} NaN\n"
			       "periscope_test_ratio{service_name=\"inf\"} -Inf\n");
	assert_promtool_accepts(text);
	free(text);

	/* The JSON spelling of NaN and infinities is null. */
	{
		struct capture c;

		capture_open(&c, "json");
		ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &ctx), 0);
		text = capture_take(&c);
		ck_assert_ptr_nonnull(strstr(text, "\"labels\":{\"service_name\":\"bad\\ufffd\"},"
						   "\"value\":0.1}"));
		ck_assert_ptr_nonnull(strstr(text, "{\"service_name\":\"nan\"},\"value\":null}"));
		ck_assert_ptr_nonnull(strstr(text, "{\"service_name\":\"inf\"},\"value\":null}"));
		assert_json_lines(text);
		free(text);
		capture_close(&c);
	}
	ps_registry_free(reg);
}
END_TEST

START_TEST(test_prom_empty_registry)
{
	struct ps_registry *reg = ps_registry_new(0);
	struct ps_flush_ctx ctx = { .registry = reg };
	char *text;
	size_t len;
	FILE *out = open_memstream(&text, &len);

	ck_assert_int_eq(ps_prom_write(out, &ctx), 0);
	fclose(out);
	ck_assert_str_eq(text, "");
	free(text);
	ps_registry_free(reg);
}
END_TEST

START_TEST(test_prom_write_error)
{
	struct fixture fx;
	FILE *out = fopen("/dev/full", "w");

	if (!out)
		return;
	fixture_init(&fx);
	setvbuf(out, NULL, _IONBF, 0);
	ck_assert_int_eq(ps_prom_write(out, &fx.ctx), -ENOSPC);
	fclose(out);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_stdout_prometheus)
{
	struct fixture fx;
	struct capture c;
	char *text, *block;

	fixture_init(&fx);
	capture_open(&c, "prometheus");
	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &fx.ctx), 0);
	fx.ctx.now_unix_ns += INTERVAL_NS;
	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &fx.ctx), 0);
	text = capture_take(&c);

	/* Two blocks, each a marker then the whole registry; the last one is current. */
	ck_assert(strncmp(text, "# periscope snapshot 1795543215000\n", 35) == 0);
	block = strstr(text, "# periscope snapshot 1795543230000\n");
	ck_assert_ptr_eq(block, text + 35 + strlen(expected_prom));
	ck_assert_str_eq(block + 35, expected_prom);
	ck_assert(strncmp(text + 35, expected_prom, strlen(expected_prom)) == 0);
	assert_promtool_accepts(block); /* a reader takes the last block */
	free(text);
	capture_close(&c);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_stdout_write_error_reported)
{
	struct fixture fx;
	FILE *out = fopen("/dev/full", "w");
	void *sink;

	if (!out)
		return;
	fixture_init(&fx);
	sink = open_sink("json", out);
	ck_assert_int_eq(ps_sink_stdout.flush(sink, &fx.ctx), -ENOSPC);
	ps_sink_stdout.close(sink);
	fclose(out);
	fixture_free(&fx);
}
END_TEST

/* ---- json ----------------------------------------------------------------------------------- */

#define JSON_STATIC ",\"cluster\":\"prod-eu-1\""

static const char expected_json[] =
	"{\"type\":\"metrics\",\"time_unix_nano\":1795543215000000000,\"interval_seconds\":15,"
	"\"metrics\":["
	"{\"name\":\"periscope_tcp_connections_opened_total\",\"type\":\"counter\",\"labels\":{"
	"\"service_name\":\"nginx\",\"direction\":\"outbound\",\"peer_address\":\"10.0.0.5\","
	"\"peer_port\":\"5432\"" JSON_STATIC "},\"value\":1200},"
	"{\"name\":\"periscope_tcp_connections_active\",\"type\":\"gauge\",\"labels\":{"
	"\"service_name\":\"a\\\"b\\\\c\\u000ad\",\"direction\":\"inbound\",\"peer_address\":\"\","
	"\"peer_port\":\"8080\"" JSON_STATIC "},\"value\":3},"
	"{\"name\":\"http_server_request_duration_seconds\",\"type\":\"histogram\",\"labels\":{"
	"\"service_name\":\"nginx\",\"http_request_method\":\"GET\","
	"\"http_response_status_code\":\"200\",\"http_route\":\"/api/v1/users/{id}\","
	"\"url_scheme\":\"http\"" JSON_STATIC "},"
	"\"buckets\":[{\"le\":0.005,\"count\":0},{\"le\":0.5,\"count\":3},{\"le\":1,\"count\":3},"
	"{\"le\":\"+Inf\",\"count\":4}],\"sum\":3.25,\"count\":4},"
	"{\"name\":\"periscope_plugin_up\",\"type\":\"gauge\",\"labels\":{"
	"\"service_name\":\"periscoped\",\"plugin\":\"tcpflow\"" JSON_STATIC "},\"value\":1}"
	"]}\n";

START_TEST(test_stdout_json_metrics)
{
	struct fixture fx;
	char *text;

	fixture_init(&fx);
	text = flush_once(&fx, "json");
	ck_assert_str_eq(text, expected_json);
	assert_json_lines(text);
	free(text);
	fixture_free(&fx);
}
END_TEST

static struct ps_endpoint endpoint(int family, const char *addr, uint16_t port)
{
	struct ps_endpoint ep = { .family = family, .port = port };

	ck_assert_int_eq(inet_pton(family, addr, ep.addr), 1);
	return ep;
}

static const char expected_flow_v4[] =
	"{\"type\":\"flow\",\"plugin\":\"tcpflow\",\"service_name\":\"nginx\",\"pid\":4242,"
	"\"direction\":\"outbound\",\"local\":{\"address\":\"10.0.0.1\",\"port\":40000},"
	"\"remote\":{\"address\":\"10.0.0.5\",\"port\":5432},"
	"\"start_time_unix_nano\":1795543200000000000,\"end_time_unix_nano\":1795543201500000000,"
	"\"bytes_sent\":777,\"bytes_received\":123456789012,\"srtt_us\":250,\"retransmits\":2,"
	"\"resets\":0,\"failed\":false}\n";

static const char expected_flow_v6[] =
	"{\"type\":\"flow\",\"plugin\":\"tcpflow\",\"service_name\":\"we\\u0009ird\\u0001\","
	"\"pid\":1,\"direction\":\"inbound\",\"local\":{\"address\":\"::1\",\"port\":8080},"
	"\"remote\":{\"address\":\"2001:db8::7\",\"port\":51000},"
	"\"start_time_unix_nano\":5,\"end_time_unix_nano\":6,\"bytes_sent\":0,"
	"\"bytes_received\":0,\"srtt_us\":0,\"retransmits\":0,\"resets\":1,\"failed\":true}\n";

static void emit_flows(void *sink)
{
	struct ps_flow_record v4 = {
		.pid = 4242,
		.service_name = "nginx",
		.direction = PS_DIR_OUTBOUND,
		.local = endpoint(AF_INET, "10.0.0.1", 40000),
		.remote = endpoint(AF_INET, "10.0.0.5", 5432),
		.start_unix_ns = 1795543200000000000ull,
		.end_unix_ns = 1795543201500000000ull,
		.bytes_sent = 777,
		.bytes_received = 123456789012ull,
		.srtt_us = 250,
		.retransmits = 2,
	};
	struct ps_flow_record v6 = {
		.pid = 1,
		.service_name = "we\tird\x01",
		.direction = PS_DIR_INBOUND,
		.local = endpoint(AF_INET6, "::1", 8080),
		.remote = endpoint(AF_INET6, "2001:db8::7", 51000),
		.start_unix_ns = 5,
		.end_unix_ns = 6,
		.resets = 1,
		.failed = true,
	};
	struct ps_event ev = { .type = PS_EVENT_FLOW, .plugin = "tcpflow", .flow = &v4 };

	ps_sink_stdout.event(sink, &ev);
	ev.flow = &v6;
	ps_sink_stdout.event(sink, &ev);
}

START_TEST(test_stdout_json_flows)
{
	struct fixture fx;
	struct capture c;
	char *text, expected[4096];

	fixture_init(&fx);
	capture_open(&c, "json");
	/* Events are written as they come, between flushes. */
	emit_flows(c.sink);
	text = capture_take(&c);
	snprintf(expected, sizeof(expected), "%s%s", expected_flow_v4, expected_flow_v6);
	ck_assert_str_eq(text, expected);
	assert_json_lines(text);
	free(text);

	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &fx.ctx), 0);
	emit_flows(c.sink);
	text = capture_take(&c);
	snprintf(expected, sizeof(expected), "%s%s%s", expected_json, expected_flow_v4,
		 expected_flow_v6);
	ck_assert_str_eq(text, expected);
	assert_json_lines(text);
	free(text);
	capture_close(&c);
	fixture_free(&fx);
}
END_TEST

/* Span batches: one resourceSpans line each in json, nothing in the other formats. */
START_TEST(test_stdout_json_spans)
{
	static const char batch[] = "{\"resource\":{\"attributes\":[]},\"scopeSpans\":[]}";
	struct ps_span_batch b = { .resource_spans_json = batch, .len = sizeof(batch) - 1,
				   .span_count = 0 };
	struct ps_event ev = { .type = PS_EVENT_SPANS, .plugin = "tracectx", .spans = &b };
	static const char *const quiet[] = { "table", "prometheus" };
	struct capture c;
	char *text;

	capture_open(&c, "json");
	ps_sink_stdout.event(c.sink, &ev);
	ps_sink_stdout.event(c.sink, &ev);
	text = capture_take(&c);
	ck_assert_str_eq(text, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[]},"
			       "\"scopeSpans\":[]}]}\n{\"resourceSpans\":[{\"resource\":"
			       "{\"attributes\":[]},\"scopeSpans\":[]}]}\n");
	assert_json_lines(text);
	free(text);
	/* the length is the batch's, not a NUL's */
	b.len = 2;
	b.resource_spans_json = "{}junk";
	ps_sink_stdout.event(c.sink, &ev);
	text = capture_take(&c);
	ck_assert_str_eq(text, "{\"resourceSpans\":[{}]}\n");
	free(text);
	capture_close(&c);
	for (size_t i = 0; i < 2; i++) {
		capture_open(&c, quiet[i]);
		ps_sink_stdout.event(c.sink, &ev);
		text = capture_take(&c);
		ck_assert_str_eq(text, "");
		free(text);
		capture_close(&c);
	}
}
END_TEST

/* What the daemon does: the bus hands (event, ctx), sinks take (state, event). */
static void forward_event(const struct ps_event *ev, void *sink)
{
	ps_sink_stdout.event(sink, ev);
}

START_TEST(test_stdout_json_through_event_bus)
{
	struct fixture fx;
	struct capture c;
	char *text;

	fixture_init(&fx);
	capture_open(&c, "json");
	ck_assert_int_eq(ps_event_subscribe(NULL, PS_EVENT_FLOW, forward_event, c.sink), 0);
	{
		struct ps_flow_record fl = { .pid = 7,
					     .local = endpoint(AF_INET, "127.0.0.1", 1),
					     .remote = endpoint(AF_INET, "127.0.0.1", 2) };
		struct ps_event ev = { .type = PS_EVENT_FLOW, .plugin = "tcpflow", .flow = &fl };

		ps_event_emit(&ev);
	}
	ps_event_reset();
	text = capture_take(&c);
	ck_assert_ptr_nonnull(strstr(text, "\"service_name\":null,\"pid\":7,"));
	assert_json_lines(text);
	free(text);
	capture_close(&c);
	fixture_free(&fx);
}
END_TEST

/* Spans are built only when someone writes them: json stdout does, table and prometheus don't. */
START_TEST(test_stdout_takes_spans_only_as_json)
{
	static const char *const formats[] = { "json", "table", "prometheus" };
	struct capture c;

	for (size_t i = 0; i < 3; i++) {
		capture_open(&c, formats[i]);
		ck_assert_int_eq(ps_sink_stdout.takes_spans(c.sink), i == 0);
		capture_close(&c);
	}
	ps_event_set_sinks_want(0);
	ck_assert(!ps_event_wanted(PS_EVENT_SPANS));
	ps_event_set_sinks_want(1u << PS_EVENT_SPANS);
	ck_assert(ps_event_wanted(PS_EVENT_SPANS));
	ck_assert(!ps_event_wanted(PS_EVENT_FLOW));
	ps_event_set_sinks_want(0);
	/* a plugin's subscription wants them too (owner is only compared, never followed) */
	ck_assert_int_eq(ps_event_subscribe((struct ps_plugin *)&c, PS_EVENT_SPANS,
					    forward_event, NULL), 0);
	ck_assert(ps_event_wanted(PS_EVENT_SPANS));
	ps_event_reset();
	ck_assert(!ps_event_wanted(PS_EVENT_SPANS));
	ck_assert(!ps_event_wanted(PS_EVENT_TYPE_MAX));
}
END_TEST

/* ---- table ---------------------------------------------------------------------------------- */

/* Display column where needle starts in line (UTF-8 aware), or -1. */
static int display_col(const char *line, const char *needle)
{
	const char *at = strstr(line, needle);
	int col = 0;

	if (!at)
		return -1;
	for (const char *p = line; p < at; p++)
		if (((unsigned char)*p & 0xc0) != 0x80)
			col++;
	return col;
}

/* The line of text containing needle, copied into buf. */
static const char *line_with(const char *text, const char *needle, char *buf, size_t len)
{
	const char *at = strstr(text, needle), *start, *end;

	if (!at) {
		fprintf(stderr, "%s", text);
		ck_abort_msg("no \"%s\" in the output above", needle);
	}
	for (start = at; start > text && start[-1] != '\n'; start--)
		;
	end = strchr(at, '\n');
	ck_assert_ptr_nonnull(end);
	snprintf(buf, len, "%.*s", (int)(end - start), start);
	return buf;
}

static void assert_in(const char *text, const char *needle)
{
	if (!strstr(text, needle)) {
		fprintf(stderr, "%s", text);
		ck_abort_msg("no \"%s\" in the output above", needle);
	}
}

static void assert_not_in(const char *text, const char *needle)
{
	if (strstr(text, needle)) {
		fprintf(stderr, "%s", text);
		ck_abort_msg("unexpected \"%s\" in the output above", needle);
	}
}

#define TABLE_HEADER "── periscope 2026-11-24T18:00:15Z ── 15.0s ── 4 series ──\n"

START_TEST(test_stdout_table)
{
	struct fixture fx;
	struct capture c;
	char *text, opened[256], active[256], http[256], up[256];
	int col;

	fixture_init(&fx);
	capture_open(&c, "table");
	emit_flows(c.sink);
	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &fx.ctx), 0);
	text = capture_take(&c);

	ck_assert(strncmp(text, TABLE_HEADER, strlen(TABLE_HEADER)) == 0);
	assert_not_in(text, "\033"); /* not a terminal: no colours */
	/* Services sorted, control characters made visible, our own section last. */
	assert_in(text, "\na\"b\\c\\x0ad\n");
	ck_assert(strstr(text, "\na\"b") < strstr(text, "\nnginx\n"));
	assert_in(text, "TCP connections ended since the last flush: 2 (1 failed) (a flow record "
			"each in format: json)\n");
	ck_assert(strstr(text, "\nnginx\n") < strstr(text, "TCP connections ended"));
	ck_assert(strstr(text, "TCP connections ended") < strstr(text, "\nperiscoped\n"));

	line_with(text, "periscope_tcp_connections_opened_total", opened, sizeof(opened));
	line_with(text, "periscope_tcp_connections_active", active, sizeof(active));
	line_with(text, "http_server_request_duration_seconds", http, sizeof(http));
	line_with(text, "periscope_plugin_up", up, sizeof(up));
	assert_in(opened, "direction=outbound peer=10.0.0.5:5432");
	assert_in(opened, "total 1200  +1200 (80/s)");
	assert_in(active, "direction=inbound peer=*:8080");
	assert_in(http, "GET 200 /api/v1/users/{id} http");
	assert_in(http, "n=4 ");
	assert_in(http, "+4 (0.27/s)");
	/* 0.25, 0.5, 0.5, 2: the high-resolution p50 is within 4.4% of 0.5, p99 at most the max */
	assert_in(http, "avg 812ms  p50 511ms  p99 2s");
	assert_in(up, "plugin=tcpflow");
	assert_not_in(text, "periscope_tcp_resets_total"); /* no series */
	assert_not_in(text, "prod-eu-1"); /* static labels are the same everywhere */

	/* Columns line up across services. */
	col = display_col(opened, "direction=");
	ck_assert_int_gt(col, 0);
	ck_assert_int_eq(display_col(active, "direction="), col);
	ck_assert_int_eq(display_col(http, "GET"), col);
	ck_assert_int_eq(display_col(up, "plugin="), col);
	col = display_col(opened, "total 1200");
	ck_assert_int_eq(display_col(http, "n=4"), col);
	ck_assert_int_eq(display_col(active, "3"), col);
	ck_assert_int_eq(display_col(up, "1"), col);
	ck_assert_int_eq(display_col(http, "+4"), display_col(opened, "+1200"));
	ck_assert(opened[strlen(opened) - 1] != ' ');
	free(text);

	/* Second flush: only what moved, plus gauges. */
	ps_registry_mark_flushed(fx.reg);
	ck_assert_int_eq(ps_metric_add(fx.opened, opened_nginx, 80), 0);
	fx.ctx.now_unix_ns += INTERVAL_NS;
	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &fx.ctx), 0);
	text = capture_take(&c);
	assert_in(text, "── periscope 2026-11-24T18:00:30Z ── 15.0s ── 4 series ──\n");
	assert_in(text, "total 1280  +80 (5.3/s)");
	assert_not_in(text, "http_server_request_duration_seconds");
	assert_in(text, "periscope_tcp_connections_active");
	assert_in(text, "periscope_plugin_up");
	assert_in(text, "TCP connections ended since the last flush: 0 (");
	free(text);

	capture_close(&c);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_stdout_table_units)
{
	static const double size_bounds[] = { 100, 10000, 1000000 };
	const struct ps_metric_desc sent = {
		.name = "periscope_tcp_sent_bytes_total",
		.help = "s",
		.type = PS_METRIC_COUNTER,
		.labels = tcp_labels,
	};
	const struct ps_metric_desc body = {
		.name = "http_server_response_body_size_bytes",
		.help = "b",
		.type = PS_METRIC_HISTOGRAM,
		.labels = http_labels,
		.buckets = size_bounds,
		.n_buckets = 3,
	};
	const struct ps_metric_desc rtt = {
		.name = "periscope_tcp_rtt_seconds",
		.help = "r",
		.type = PS_METRIC_HISTOGRAM,
		.labels = tcp_labels,
	};
	static const char *const v6[] = { "db", "outbound", "fd00::5", "5432" };
	struct ps_registry *reg = ps_registry_new(0);
	struct ps_flush_ctx ctx = { .registry = reg, .now_unix_ns = NOW_NS, .interval_ns = 0 };
	struct ps_metric *m_sent, *m_body, *m_rtt;
	struct capture c;
	char *text;

	m_sent = ps_registry_register(reg, &sent);
	m_body = ps_registry_register(reg, &body);
	m_rtt = ps_registry_register(reg, &rtt);
	ck_assert(m_sent && m_body && m_rtt);
	ck_assert_int_eq(ps_metric_add(m_sent, v6, 3 * 1024 * 1024 / 2), 0);
	ck_assert_int_eq(ps_metric_observe(m_body, users_get, 2048), 0);
	ck_assert_int_eq(ps_metric_observe(m_rtt, v6, 0.0002), 0);

	capture_open(&c, "table");
	ck_assert_int_eq(ps_sink_stdout.flush(c.sink, &ctx), 0);
	text = capture_take(&c);
	assert_in(text, "── 0.0s ── 3 series ──");
	assert_in(text, "peer=[fd00::5]:5432");
	assert_in(text, "total 1.5MiB  +1.5MiB\n"); /* no interval, no rate */
	assert_in(text, "avg 2KiB");
	assert_in(text, "avg 200µs");
	assert_not_in(text, "TCP connections ended"); /* no flow ever seen */
	free(text);
	capture_close(&c);
	ps_registry_free(reg);
}
END_TEST

/* The busiest max_rows rows of each service, in registry order, and how many were left out. */
START_TEST(test_stdout_table_max_rows)
{
	static const char *const labels[] = { "service_name", "peer", NULL };
	const struct ps_metric_desc desc = {
		.name = "req_total",
		.help = "r",
		.type = PS_METRIC_COUNTER,
		.labels = labels,
	};
	struct ps_registry *reg = ps_registry_new(0);
	struct ps_flush_ctx ctx = { .registry = reg,
				    .now_unix_ns = NOW_NS,
				    .interval_ns = INTERVAL_NS };
	struct ps_metric *m = ps_registry_register(reg, &desc);
	char *buf = NULL, *text;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	void *sink = open_sink_yaml("format: table\nmax_rows: 5\n", out, false);

	/* web: peers p0..p29 moved 1..30 times; api: 3 peers; a zero counter never shows. */
	for (int i = 0; i < 30; i++) {
		char peer[8];
		const char *v[] = { "web", peer };

		snprintf(peer, sizeof(peer), "p%d", i);
		ck_assert_int_eq(ps_metric_add(m, v, i + 1), 0);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ps_metric_add(m, (const char *[]){ "api", i ? "b" : "a" }, 1), 0);
	ck_assert_int_eq(ps_metric_add(m, (const char *[]){ "api", "idle" }, 0), 0);
	ck_assert_int_eq(ps_sink_stdout.flush(sink, &ctx), 0);
	fflush(out);
	text = strndup(buf, len);
	for (int i = 25; i < 30; i++) {
		char want[32];

		snprintf(want, sizeof(want), "peer=p%d ", i);
		assert_in(text, want);
	}
	assert_not_in(text, "peer=p24 ");
	assert_not_in(text, "peer=p0 ");
	/* Registry order among the kept rows. */
	ck_assert(strstr(text, "peer=p25 ") < strstr(text, "peer=p29 "));
	assert_in(text, "  ... 25 more rows (the 5 busiest are shown: max_rows)\n");
	ck_assert(strstr(text, "more rows") > strstr(text, "peer=p29 "));
	assert_in(text, "peer=a ");
	assert_in(text, "peer=b ");
	assert_not_in(text, "peer=idle");
	/* api's 3 rows fit: one "more rows" line only */
	ck_assert_ptr_null(strstr(strstr(text, "more rows") + 1, "more rows"));
	assert_in(text, "── 33 series ──");
	free(text);
	ps_sink_stdout.close(sink);
	fclose(out);
	free(buf);
	ps_registry_free(reg);
}
END_TEST

/*
 * The resources plugin's series fold into one line per service, above the
 * service's RED rows, as rates over the interval; max_rows does not count it.
 * A service whose counters did not move and that has no gauge gets no line
 * after the first flush.
 */
START_TEST(test_stdout_table_resources)
{
	static const char *const cpu_labels[] = { "service_name", "cpu_mode", NULL };
	static const char *const net_labels[] = { "service_name", "network_io_direction", NULL };
	static const char *const disk_labels[] = { "service_name", "disk_io_direction", NULL };
	static const char *const svc_labels[] = { "service_name", NULL };
	const struct ps_metric_desc descs[] = {
		{ .name = "process_cpu_time_seconds_total", .help = "c", .type = PS_METRIC_COUNTER,
		  .labels = cpu_labels },
		{ .name = "periscope_process_cpu_delay_seconds_total", .help = "d",
		  .type = PS_METRIC_COUNTER, .labels = svc_labels },
		{ .name = "process_memory_usage_bytes", .help = "m", .type = PS_METRIC_GAUGE,
		  .labels = svc_labels },
		{ .name = "periscope_processes", .help = "p", .type = PS_METRIC_GAUGE,
		  .labels = svc_labels },
		{ .name = "process_disk_io_bytes_total", .help = "io", .type = PS_METRIC_COUNTER,
		  .labels = disk_labels },
		{ .name = "process_network_io_bytes_total", .help = "n", .type = PS_METRIC_COUNTER,
		  .labels = net_labels },
		{ .name = "periscope_process_oom_kills_total", .help = "o",
		  .type = PS_METRIC_COUNTER, .labels = svc_labels },
		{ .name = "periscope_process_disk_io_duration_seconds", .help = "l",
		  .type = PS_METRIC_HISTOGRAM, .labels = svc_labels, .buckets = http_bounds,
		  .n_buckets = 3 },
		{ .name = "http_server_request_duration_seconds", .help = "h",
		  .type = PS_METRIC_HISTOGRAM, .labels = http_labels, .buckets = http_bounds,
		  .n_buckets = 3 },
	};
	enum { CPU, DELAY, RSS, PROCS, DISK, NET, OOM, DISK_LAT, HTTP, N };
	static const char *const web[] = { "web" };
	struct ps_registry *reg = ps_registry_new(0);
	struct ps_flush_ctx ctx = { .registry = reg,
				    .now_unix_ns = NOW_NS,
				    .interval_ns = INTERVAL_NS };
	struct ps_metric *m[N];
	char *buf = NULL, *text, line[512];
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	void *sink = open_sink_yaml("format: table\nmax_rows: 1\n", out, false);

	ck_assert_ptr_nonnull(sink);
	for (int i = 0; i < N; i++)
		ck_assert_ptr_nonnull(m[i] = ps_registry_register(reg, &descs[i]));
	/*
	 * Over 15 s: 22.5 s user + 7.5 s system = 2 cores; 3 s waiting for a CPU =
	 * 200ms/s; 15 MiB sent = 1 MiB/s; 30 MiB written = 2 MiB/s; one OOM kill.
	 */
	ck_assert_int_eq(ps_metric_add(m[CPU], (const char *[]){ "web", "user" }, 22.5), 0);
	ck_assert_int_eq(ps_metric_add(m[CPU], (const char *[]){ "web", "system" }, 7.5), 0);
	ck_assert_int_eq(ps_metric_add(m[DELAY], web, 3), 0);
	ck_assert_int_eq(ps_metric_set(m[RSS], web, 300 * 1048576.0), 0);
	ck_assert_int_eq(ps_metric_set(m[PROCS], web, 4), 0);
	ck_assert_int_eq(ps_metric_add(m[DISK], (const char *[]){ "web", "write" }, 30 * 1048576.0),
			 0);
	ck_assert_int_eq(ps_metric_add(m[NET], (const char *[]){ "web", "transmit" },
				       15 * 1048576.0),
			 0);
	ck_assert_int_eq(ps_metric_add(m[OOM], web, 1), 0);
	ck_assert_int_eq(ps_metric_observe(m[DISK_LAT], web, 0.001), 0);
	ck_assert_int_eq(ps_metric_observe(m[HTTP], (const char *[]){ "web", "GET", "200", "/",
								       "http" },
					   0.01),
			 0);
	ck_assert_int_eq(ps_metric_add(m[CPU], (const char *[]){ "cron", "user" }, 1.5), 0);

	ck_assert_int_eq(ps_sink_stdout.flush(sink, &ctx), 0);
	fflush(out);
	text = strndup(buf, len);
	assert_in(text, "\nweb\n  resources  ");
	line_with(strstr(text, "\nweb\n"), "resources", line, sizeof(line));
	assert_in(line, "cpu 2.00 (user 1.50)  cpu wait 200ms/s  rss 300MiB  procs 4  "
			"disk r 0B/s w 2MiB/s  net tx 1MiB/s rx 0B/s  oom kills +1");
	/* None of the line's series is a row of its own; the latency histogram is. */
	assert_not_in(text, "process_cpu_time_seconds_total");
	assert_not_in(text, "process_memory_usage_bytes");
	assert_not_in(text, "periscope_processes");
	/* max_rows 1: one of web's two rows, the line on top of it. */
	assert_in(text, "  ... 1 more row (the 1 busiest are shown: max_rows)\n");
	line_with(strstr(text, "\ncron\n"), "resources", line, sizeof(line));
	assert_in(line, "cpu 0.10 (user 0.10)");
	free(text);

	/* Second flush: cron did not move and has no gauge; web keeps its line (gauges). */
	ps_registry_mark_flushed(reg);
	ctx.now_unix_ns += INTERVAL_NS;
	rewind(out);
	len = 0;
	ck_assert_int_eq(ps_metric_add(m[CPU], (const char *[]){ "web", "user" }, 7.5), 0);
	ck_assert_int_eq(ps_sink_stdout.flush(sink, &ctx), 0);
	fflush(out);
	text = strndup(buf, len);
	assert_not_in(text, "cron");
	line_with(strstr(text, "\nweb\n"), "resources", line, sizeof(line));
	assert_in(line, "cpu 0.50 (user 0.50)  cpu wait 0s/s  rss 300MiB  procs 4");
	assert_not_in(line, "oom");
	free(text);
	ps_sink_stdout.close(sink);
	fclose(out);
	free(buf);
	ps_registry_free(reg);
}
END_TEST

/* A reader that does not read holds up the writer thread, never the flush. */
START_TEST(test_stdout_threaded_never_blocks)
{
	static const char *const labels[] = { "service_name", "peer", NULL };
	const struct ps_metric_desc desc = {
		.name = "req_total",
		.help = "r",
		.type = PS_METRIC_COUNTER,
		.labels = labels,
	};
	struct ps_registry *reg = ps_registry_new(0);
	struct ps_flush_ctx ctx = { .registry = reg,
				    .now_unix_ns = NOW_NS,
				    .interval_ns = INTERVAL_NS };
	struct ps_metric *m = ps_registry_register(reg, &desc);
	size_t got = 0, lines = 0;
	int fds[2];
	FILE *w;
	void *sink;
	char chunk[65536];
	ssize_t n;

	for (int i = 0; i < 20000; i++) {
		char peer[16];

		snprintf(peer, sizeof(peer), "peer-%d", i);
		ck_assert_int_eq(ps_metric_add(m, (const char *[]){ "web", peer }, 1), 0);
	}
	ck_assert_int_eq(pipe(fds), 0);
	w = fdopen(fds[1], "w");
	ck_assert_ptr_nonnull(w);
	sink = open_sink_yaml("format: json\n", w, true);
	/* Each snapshot is ~2 MB and the pipe holds 64 KiB: a flush that wrote itself would hang. */
	alarm(20);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ps_sink_stdout.flush(sink, &ctx), 0);
	/* Everything still arrives, in order, once someone reads. */
	while (lines < 3 && (n = read(fds[0], chunk, sizeof(chunk))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			lines += chunk[i] == '\n';
		got += (size_t)n;
	}
	alarm(0);
	ck_assert_uint_eq(lines, 3);
	ck_assert_uint_gt(got, 3 * 20000 * 40);
	ps_sink_stdout.close(sink);
	fclose(w);
	close(fds[0]);
	ps_registry_free(reg);
}
END_TEST

/* ---- config ------------------------------------------------------------------------------- */

START_TEST(test_stdout_config)
{
	const struct ps_sink_type *t = &ps_sink_stdout;
	struct ps_cfg_error err = { { 0 } };
	const char *bad = "format: xml\n";
	struct ps_cfg_node *node;
	void *config = calloc(1, t->config_size);
	void *sink;

	ck_assert_str_eq(t->name, "stdout");
	ck_assert(t->open && t->flush && t->event && t->close);
	ck_assert_str_eq(t->config_map[0].name, "format");
	ck_assert_str_eq(t->config_map[1].name, "max_rows");
	ck_assert_ptr_null(t->config_map[2].name);

	/* No section at all: the default format is table. */
	ck_assert_int_eq(ps_cfg_map_parse(NULL, t->config_map, NULL, config, &err), 0);
	sink = ps_sink_stdout_open_stream(config, stdout);
	ck_assert_ptr_nonnull(sink);
	t->close(sink);
	ps_cfg_map_free(t->config_map, config);

	node = ps_cfg_load_string("<test>", bad, strlen(bad), &err);
	ck_assert_ptr_nonnull(node);
	memset(config, 0, t->config_size);
	ck_assert_int_eq(ps_cfg_map_parse(node, t->config_map, NULL, config, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "<test>:1"));
	ps_cfg_node_free(node);
	free(config);

	/* NULL config is the default too. */
	sink = ps_sink_stdout_open_stream(NULL, stdout);
	ck_assert_ptr_nonnull(sink);
	t->close(sink);
}
END_TEST

static Suite *stdout_suite(void)
{
	Suite *s = suite_create("stdout");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_number_format);
	tcase_add_test(tc, test_utf8_seq_len);
	tcase_add_test(tc, test_prom_write_exact);
	tcase_add_test(tc, test_prom_special_values);
	tcase_add_test(tc, test_prom_empty_registry);
	tcase_add_test(tc, test_prom_write_error);
	tcase_add_test(tc, test_stdout_prometheus);
	tcase_add_test(tc, test_stdout_write_error_reported);
	tcase_add_test(tc, test_stdout_json_metrics);
	tcase_add_test(tc, test_stdout_json_flows);
	tcase_add_test(tc, test_stdout_json_through_event_bus);
	tcase_add_test(tc, test_stdout_takes_spans_only_as_json);
	tcase_add_test(tc, test_stdout_table);
	tcase_add_test(tc, test_stdout_table_units);
	tcase_add_test(tc, test_stdout_table_resources);
	tcase_add_test(tc, test_stdout_table_max_rows);
	tcase_add_test(tc, test_stdout_threaded_never_blocks);
	tcase_add_test(tc, test_stdout_config);
	tcase_add_test(tc, test_stdout_json_spans);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stdout_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
