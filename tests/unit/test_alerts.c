/*
 * Unit tests for the alert rules (core/alerts.c): synthetic registries with
 * the real family names, fake flush times, and a count of every notice.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "cfg.h"
#include "eventbus.h"
#include "logging.h"
#include "registry.h"

#define T0	    1700000000000000000ull /* a Unix time in ns */
#define SEC	    1000000000ull
#define MAX_NOTICES 4096

struct seen_notice {
	enum ps_alert_state state;
	char rule[64];
	char protocol[16];
	char group[256];
	char condition[32];
	char comparison[8];
	double value, threshold;
	uint64_t window_ms, since, unix_ns;
};

static struct seen_notice seen[MAX_NOTICES];
static int n_seen;

static struct ps_registry *reg;
static struct ps_alert_rules *rules;
static struct ps_metric *tcp_opened, *tcp_failed, *tcp_rtt, *http_dur, *db_dur;

static const char *const tcp_labels[] = { "service_name", "direction", "peer_address", "peer_port",
					  NULL };
static const char *const http_labels[] = {
	"service_name", "http_request_method", "http_response_status_code",
	"http_route",	"url_scheme",	       NULL
};
static const char *const db_labels[] = {
	"service_name",	      "db_system_name", "db_operation_name",
	"db_collection_name", "db_namespace",	"db_response_status_code",
	"server_address",     "server_port",	NULL
};

static void on_alert(const struct ps_event *ev, void *ctx)
{
	const struct ps_alert_notice *n = ev->alert;
	struct seen_notice *s = &seen[n_seen];

	ck_assert_int_eq(ev->type, PS_EVENT_ALERT);
	ck_assert_str_eq(ev->plugin, "core");
	ck_assert_int_lt(n_seen, MAX_NOTICES);
	s->state = n->state;
	snprintf(s->rule, sizeof(s->rule), "%s", n->rule);
	snprintf(s->protocol, sizeof(s->protocol), "%s", n->protocol);
	snprintf(s->group, sizeof(s->group), "%s", n->group);
	snprintf(s->condition, sizeof(s->condition), "%s", n->condition);
	snprintf(s->comparison, sizeof(s->comparison), "%s", n->comparison);
	s->value = n->value;
	s->threshold = n->threshold;
	s->window_ms = n->window_ms;
	s->since = n->firing_since_unix_ns;
	s->unix_ns = n->unix_ns;
	n_seen++;
}

static struct ps_metric *reg_metric(const char *name, enum ps_metric_type type,
				    const char *const *labels)
{
	struct ps_metric_desc d = { .name = name, .help = "h", .type = type, .labels = labels };
	struct ps_metric *m = ps_registry_register(reg, &d);

	ck_assert_ptr_nonnull(m);
	return m;
}

static void setup(void)
{
	reg = ps_registry_new(0);
	ck_assert_ptr_nonnull(reg);
	tcp_opened =
		reg_metric("periscope_tcp_connections_opened_total", PS_METRIC_COUNTER, tcp_labels);
	tcp_failed =
		reg_metric("periscope_tcp_connections_failed_total", PS_METRIC_COUNTER, tcp_labels);
	tcp_rtt = reg_metric("periscope_tcp_rtt_seconds", PS_METRIC_HISTOGRAM, tcp_labels);
	http_dur = reg_metric("http_server_request_duration_seconds", PS_METRIC_HISTOGRAM,
			      http_labels);
	db_dur = reg_metric("db_client_operation_duration_seconds", PS_METRIC_HISTOGRAM, db_labels);
	ck_assert_int_eq(ps_event_subscribe(NULL, PS_EVENT_ALERT, on_alert, NULL), 0);
	n_seen = 0;
	rules = NULL;
}

static void teardown(void)
{
	ps_alerts_free(rules);
	rules = NULL;
	ps_registry_free(reg);
	reg = NULL;
	ps_event_reset();
}

/* ---- helpers ------------------------------------------------------------------------------ */

static struct ps_alert_rules *parse_rules(const char *yaml)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *root = ps_cfg_load_string("test.yaml", yaml, strlen(yaml), &err);
	struct ps_alert_rules *out = NULL;
	int rc;

	ck_assert_msg(root != NULL, "%s", err.msg);
	rc = ps_alerts_parse(ps_cfg_node_get(root, "alerts"), &out, &err);
	ck_assert_msg(rc == 0, "unexpected error: %s", err.msg);
	ps_cfg_node_free(root); /* the rules must not point into the tree */
	return out;
}

static void load(const char *yaml)
{
	ps_alerts_free(rules);
	rules = parse_rules(yaml);
	ck_assert_ptr_nonnull(rules);
}

/* The error message of a configuration that must be rejected. */
static const char *parse_error(const char *yaml)
{
	static struct ps_cfg_error err;
	struct ps_cfg_node *root = ps_cfg_load_string("test.yaml", yaml, strlen(yaml), &err);
	struct ps_alert_rules *out = (struct ps_alert_rules *)&err; /* must be reset to NULL */
	int rc;

	ck_assert_msg(root != NULL, "%s", err.msg);
	rc = ps_alerts_parse(ps_cfg_node_get(root, "alerts"), &out, &err);
	ps_cfg_node_free(root);
	ck_assert_msg(rc == -EINVAL, "accepted: %s", yaml);
	ck_assert_ptr_null(out);
	return err.msg;
}

/* One flush of the daemon: evaluate, then remember what this flush showed. */
static void flush_at(double seconds)
{
	ps_alerts_evaluate(rules, reg, T0 + (uint64_t)(seconds * SEC));
	ps_registry_mark_flushed(reg);
}

static int count_state(enum ps_alert_state state)
{
	int n = 0;

	for (int i = 0; i < n_seen; i++)
		n += seen[i].state == state;
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void http(const char *svc, const char *route, const char *status, int n, double seconds)
{
	const char *v[] = { svc, "GET", status, route, "http" };

	for (int i = 0; i < n; i++)
		ck_assert_int_eq(ps_metric_observe(http_dur, v, seconds), 0);
}

/* ok requests answered 200 and bad ones 503, in 10ms. */
static void http_mix(const char *svc, const char *route, int ok, int bad)
{
	http(svc, route, "200", ok, 0.01);
	http(svc, route, "503", bad, 0.01);
}

static const char *port_str(int port)
{
	static char buf[8][12];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, 12, "%d", port);
	return p;
}

static void tcp(const char *svc, int port, double opened, double failed)
{
	const char *v[] = { svc, "outbound", "127.0.0.1", port_str(port) };

	if (opened)
		ck_assert_int_eq(ps_metric_add(tcp_opened, v, opened), 0);
	if (failed)
		ck_assert_int_eq(ps_metric_add(tcp_failed, v, failed), 0);
}

static double gauge(const char *rule)
{
	for (size_t i = 0; i < reg->n_families; i++) {
		struct ps_family *f = reg->families[i];

		if (strcmp(f->name, "periscope_alerts_firing") != 0)
			continue;
		ck_assert_int_eq(f->type, PS_METRIC_GAUGE);
		for (size_t j = 0; j < f->n_series; j++)
			if (strcmp(f->series[j]->values[0], "periscoped") == 0 &&
			    strcmp(f->series[j]->values[1], rule) == 0)
				return f->series[j]->value;
	}
	return -1; /* no such series */
}

/* ---- configuration ------------------------------------------------------------------------ */

START_TEST(test_parse_accepts)
{
	static const char *const ok[] = {
		"alerts:\n",
		"alerts: []\n",
		/* the example of DESIGN.md */
		"alerts:\n"
		"  - { name: checkout-errors, protocol: http, where: { service_name: checkout },\n"
		"      error_ratio: { above: 0.05, min_requests: 10 }, window: 1m, for: 30s,"
		" repeat: 4h }\n",
		"alerts:\n"
		"  - name: slow.db_v2\n"
		"    protocol: db\n"
		"    by: [service_name, db_operation_name]\n"
		"    latency: { quantile: 0.95, above: 300ms, resolve_below: 0.2 }\n"
		"  - { name: quiet, protocol: tcp, rate: { below: 1, resolve_above: 2 } }\n"
		"  - { name: busy, protocol: http, rate: { above: 100, resolve_below: 100 },"
		" repeat: 0 }\n"
		"  - { name: rtt, protocol: tcp, latency: { above: 0.2s },"
		" where: { direction: outbound } }\n",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct ps_alert_rules *r = parse_rules(ok[i]);

		ck_assert(i < 2 ? r == NULL : r != NULL);
		ps_alerts_free(r);
	}
}
END_TEST

START_TEST(test_parse_rejects)
{
	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{ "alerts: { name: x }\n", "test.yaml:1:9: alerts: expected a list of rules" },
		{ "alerts:\n  - just-a-name\n", "test.yaml:2:5: alerts: each rule is a map" },
		{ "alerts:\n  - { protocol: tcp, rate: { above: 1 } }\n",
		  "test.yaml:2:5: alerts: every rule needs a name" },
		{ "alerts:\n  - { name: 'a b', protocol: tcp, rate: { above: 1 } }\n",
		  "test.yaml:2:13: alerts: name 'a b' may only hold" },
		{ "alerts:\n  - { name: a, protocol: tcp, rate: { above: 1 } }\n"
		  "  - { name: a, protocol: http, rate: { above: 1 } }\n",
		  "test.yaml:3:13: alerts: a rule named 'a' already exists" },
		{ "alerts:\n  - { name: a, protocol: tcp, rate: { above: 1 }, windw: 1m }\n",
		  "test.yaml:2:51: unknown key 'windw' (known: name, protocol, where, by, "
		  "error_ratio, latency, rate, window, for, repeat)" },
		{ "alerts:\n  - { name: a, rate: { above: 1 } }\n",
		  "test.yaml:2:5: alerts: a: protocol is required" },
		{ "alerts:\n  - { name: a, protocol: smtp, rate: { above: 1 } }\n",
		  "test.yaml:2:26: protocol: expected one of http, db, tcp, resources, kafka, got 'smtp'" },
		{ "alerts:\n  - { name: a, protocol: tcp }\n",
		  "test.yaml:2:5: alerts: a rule needs one condition" },
		{ "alerts:\n  - { name: a, protocol: tcp, rate: { above: 1 },\n"
		  "      error_ratio: { above: 0.1 } }\n",
		  "test.yaml:3:20: alerts: a rule has exactly one condition; rate and error_ratio" },
		{ "alerts:\n  - { name: a, protocol: tcp, error_ratio: { min_requests: 3 } }\n",
		  "test.yaml:2:44: alerts: error_ratio needs above" },
		{ "alerts:\n  - { name: a, protocol: tcp, error_ratio: { above: 1.5 } }\n",
		  "test.yaml:2:53: alerts: above: an error ratio is below 1" },
		{ "alerts:\n  - { name: a, protocol: tcp, error_ratio: { above: lots } }\n",
		  "test.yaml:2:53: alerts: above: expected a non-negative number, got 'lots'" },
		{ "alerts:\n  - { name: a, protocol: tcp, error_ratio: { above: -0.1 } }\n",
		  "test.yaml:2:53: alerts: above: expected a non-negative number" },
		{ "alerts:\n  - { name: a, protocol: tcp,\n"
		  "      error_ratio: { above: 0.1, resolve_below: 0.2 } }\n",
		  "test.yaml:3:49: alerts: resolve_below must be on the good side of above" },
		{ "alerts:\n  - { name: a, protocol: tcp, error_ratio: { above: 0.1, below: 0 } }\n",
		  "test.yaml:2:58: unknown key 'below' (known: above, resolve_below, min_requests)" },
		{ "alerts:\n  - { name: a, protocol: tcp, error_ratio: 0.1 }\n",
		  "test.yaml:2:44: error_ratio: expected a map of strings" },
		{ "alerts:\n  - { name: a, protocol: http, latency: { quantile: 1, above: 1s } }\n",
		  "test.yaml:2:53: alerts: quantile: expected a number between 0 and 1" },
		{ "alerts:\n  - { name: a, protocol: http, latency: { above: 5 parsecs } }\n",
		  "test.yaml:2:50: alerts: above: expected a duration like 0.5s or 300ms" },
		{ "alerts:\n  - { name: a, protocol: http, rate: { above: 1, below: 2 } }\n",
		  "test.yaml:2:38: alerts: rate needs exactly one of above, below" },
		{ "alerts:\n  - { name: a, protocol: http, rate: { above: 5, resolve_above: 6 } }\n",
		  "test.yaml:2:65: alerts: resolve_above does not go with above" },
		{ "alerts:\n  - { name: a, protocol: http, rate: { below: 5, resolve_above: 4 } }\n",
		  "test.yaml:2:65: alerts: resolve_above must be on the good side of below" },
		{ "alerts:\n  - { name: a, protocol: tcp, where: { http_route: /x },"
		  " rate: { above: 1 } }\n",
		  "test.yaml:2:52: alerts: where: 'http_route' is not a label of tcp rules (known: "
		  "service_name, direction, peer_address, peer_port)" },
		{ "alerts:\n  - { name: a, protocol: http, by: [service_name, peer_port],"
		  " rate: { above: 1 } }\n",
		  "test.yaml:2:51: alerts: by: 'peer_port' is not a label of http rules" },
		{ "alerts:\n  - { name: a, protocol: http, by: [http_route, http_route],"
		  " rate: { above: 1 } }\n",
		  "test.yaml:2:49: alerts: by: 'http_route' is listed twice" },
		{ "alerts:\n  - { name: a, protocol: resources, rate: { above: 1 } }\n",
		  "test.yaml:2:43: alerts: resources rate needs metric (cpu, cpu_delay or oom_kills)" },
		{ "alerts:\n  - { name: a, protocol: resources, rate: { metric: disk, above: 1 } }\n",
		  "test.yaml:2:53: alerts: metric: expected cpu, cpu_delay or oom_kills, got 'disk'" },
		{ "alerts:\n  - { name: a, protocol: http, rate: { metric: cpu, above: 1 } }\n",
		  "test.yaml:2:48: alerts: metric only goes with protocols resources and kafka" },
		{ "alerts:\n  - { name: a, protocol: kafka, rate: { metric: cpu, above: 1 } }\n",
		  "test.yaml:2:49: alerts: metric: expected sent or consumed, got 'cpu'" },
		{ "alerts:\n  - { name: a, protocol: kafka, where: { http_route: /x },"
		  " rate: { above: 1 } }\n",
		  "test.yaml:2:54: alerts: where: 'http_route' is not a label of kafka rules (known: "
		  "service_name, messaging_system, messaging_operation_name, "
		  "messaging_destination_name, error_type, server_address, server_port, "
		  "messaging_consumer_group_name)" },
		{ "alerts:\n  - { name: a, protocol: resources, error_ratio: { above: 0.1 } }\n",
		  "test.yaml:2:50: alerts: resources rules take a rate condition only" },
		{ "alerts:\n  - { name: a, protocol: http, by: [], rate: { above: 1 } }\n",
		  "test.yaml:2:36: alerts: by: needs at least one label" },
		{ "alerts:\n  - { name: a, protocol: http, window: 0s, rate: { above: 1 } }\n",
		  "test.yaml:2:40: alerts: window: must be longer than 0" },
		{ "alerts:\n  - { name: a, protocol: http, for: soon, rate: { above: 1 } }\n",
		  "test.yaml:2:37: for: expected a duration" },
		{ "alerts:\n  - { name: a, protocol: http,\n"
		  "      error_ratio: { above: 0.1, min_requests: -1 } }\n",
		  "test.yaml:3:48: min_requests: expected a non-negative integer" },
	};

	int wrong = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *msg = parse_error(bad[i].yaml);

		if (strncmp(msg, bad[i].want, strlen(bad[i].want)) == 0)
			continue;
		fprintf(stderr, "case %zu:\n got: %s\nwant: %s...\n", i, msg, bad[i].want);
		wrong++;
	}
	ck_assert_int_eq(wrong, 0);
}
END_TEST

/* ---- conditions --------------------------------------------------------------------------- */

/*
 * 20% of checkout's requests fail for a while: exactly one FIRING; once the
 * errors have slid out of the window, exactly one RESOLVED.
 */
START_TEST(test_error_ratio_http)
{
	load("alerts:\n"
	     "  - { name: checkout-errors, protocol: http, where: { service_name: checkout },\n"
	     "      error_ratio: { above: 0.05, resolve_below: 0.02, min_requests: 10 },\n"
	     "      window: 1m, repeat: 4h }\n");
	flush_at(0);
	ck_assert_double_eq(gauge("checkout-errors"), 0);
	for (int i = 1; i <= 8; i++) {
		http_mix("checkout", "/cart", 80, 20);
		http_mix("search", "/q", 0, 50); /* another service: never this rule's business */
		flush_at(15 * i);
	}
	ck_assert_int_eq(n_seen, 1);
	ck_assert_int_eq(seen[0].state, PS_ALERT_FIRING);
	ck_assert_str_eq(seen[0].rule, "checkout-errors");
	ck_assert_str_eq(seen[0].protocol, "http");
	ck_assert_str_eq(seen[0].group, "service_name=checkout");
	ck_assert_str_eq(seen[0].condition, "error_ratio");
	ck_assert_str_eq(seen[0].comparison, "above");
	ck_assert_double_eq_tol(seen[0].value, 0.2, 1e-12);
	ck_assert_double_eq(seen[0].threshold, 0.05);
	ck_assert_uint_eq(seen[0].window_ms, 60000);
	ck_assert_uint_eq(seen[0].unix_ns, T0 + 15 * SEC);
	ck_assert_uint_eq(seen[0].since, T0 + 15 * SEC);
	ck_assert_double_eq(gauge("checkout-errors"), 1);

	/* Errors stop; the window still holds them for a while. */
	for (int i = 9; i <= 20; i++) {
		http_mix("checkout", "/cart", 100, 0);
		flush_at(15 * i);
		if (i <= 11)
			ck_assert_int_eq(n_seen, 1);
	}
	ck_assert_int_eq(n_seen, 2);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert_str_eq(seen[1].comparison, "below");
	ck_assert_double_eq(seen[1].threshold, 0.02);
	ck_assert(seen[1].value <= 0.02);
	ck_assert_double_eq(gauge("checkout-errors"), 0);
}
END_TEST

/* The window is sliding: a single bad minute is averaged with what came since. */
START_TEST(test_window_slides)
{
	load("alerts:\n"
	     "  - { name: e, protocol: http, error_ratio: { above: 0.3 }, window: 30s }\n");
	flush_at(0);
	http_mix("a", "/", 50, 50);
	flush_at(10);
	ck_assert_int_eq(count_state(PS_ALERT_FIRING), 1);
	ck_assert_double_eq_tol(seen[0].value, 0.5, 1e-12);
	http_mix("a", "/", 100, 0);
	flush_at(20); /* 50 / 200 over the window: 0.25, at or below 90% of 0.3 */
	ck_assert_int_eq(n_seen, 2);
	ck_assert_double_eq_tol(seen[1].value, 0.25, 1e-12);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
}
END_TEST

START_TEST(test_hysteresis)
{
	load("alerts:\n"
	     "  - { name: explicit, protocol: tcp, where: { peer_port: '1' },\n"
	     "      error_ratio: { above: 0.5, resolve_below: 0.2 }, window: 10s }\n"
	     "  - { name: default, protocol: tcp, where: { peer_port: '2' },"
	     " error_ratio: { above: 0.5 }, window: 10s }\n");
	flush_at(0);
	/* window 10s and a flush every 10s: each flush sees what came since the last */
	tcp("s", 1, 4, 6);
	tcp("s", 2, 4, 6);
	flush_at(10);
	ck_assert_int_eq(count_state(PS_ALERT_FIRING), 2);
	tcp("s", 1, 6, 4);   /* 0.4: under the threshold, over resolve_below */
	tcp("s", 2, 53, 47); /* 0.47: under the threshold, over 90% of it */
	flush_at(20);
	ck_assert_int_eq(n_seen, 2);
	tcp("s", 1, 7, 3);   /* 0.3 */
	tcp("s", 2, 55, 45); /* 0.45 = 90% of 0.5: resolves */
	flush_at(30);
	ck_assert_int_eq(n_seen, 3);
	ck_assert_str_eq(seen[2].rule, "default");
	ck_assert_int_eq(seen[2].state, PS_ALERT_RESOLVED);
	ck_assert_double_eq_tol(seen[2].threshold, 0.45, 1e-12);
	tcp("s", 1, 8, 2); /* 0.2: resolves */
	tcp("s", 2, 4, 6); /* 0.6: fires again */
	flush_at(40);
	ck_assert_int_eq(n_seen, 5);
	ck_assert_str_eq(seen[3].rule, "explicit");
	ck_assert_int_eq(seen[3].state, PS_ALERT_RESOLVED);
	ck_assert_double_eq_tol(seen[3].value, 0.2, 1e-12);
	ck_assert_str_eq(seen[4].rule, "default");
	ck_assert_int_eq(seen[4].state, PS_ALERT_FIRING);
	ck_assert_int_eq(count_state(PS_ALERT_FIRING), 3);
	ck_assert_int_eq(count_state(PS_ALERT_RESOLVED), 2);
}
END_TEST

START_TEST(test_for_pending)
{
	load("alerts:\n"
	     "  - { name: p, protocol: tcp, error_ratio: { above: 0.5 }, window: 10s, for: 30s }\n");
	flush_at(0);
	/* Bad for 20s, then good: pending never fires and goes away silently. */
	tcp("s", 1, 0, 10);
	flush_at(10);
	tcp("s", 1, 0, 10);
	flush_at(20);
	tcp("s", 1, 10, 0);
	flush_at(30);
	ck_assert_int_eq(n_seen, 0);
	/* Bad again: the 30s count afresh from t=40. */
	for (int t = 40; t <= 60; t += 10) {
		tcp("s", 1, 0, 10);
		flush_at(t);
	}
	ck_assert_int_eq(n_seen, 0);
	tcp("s", 1, 0, 10);
	flush_at(70);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_int_eq(seen[0].state, PS_ALERT_FIRING);
	ck_assert_uint_eq(seen[0].unix_ns, T0 + 70 * SEC);
}
END_TEST

START_TEST(test_repeat)
{
	load("alerts:\n"
	     "  - { name: r, protocol: tcp, error_ratio: { above: 0.5 }, window: 1m, repeat: 1m }\n"
	     "  - { name: never, protocol: tcp, error_ratio: { above: 0.5 }, window: 1m,"
	     " repeat: 0s }\n");
	flush_at(0);
	for (int t = 15; t <= 15 * 21; t += 15) { /* fires at 15, runs for 5 minutes */
		tcp("s", 1, 1, 9);
		flush_at(t);
	}
	ck_assert_int_eq(count_state(PS_ALERT_FIRING), 2);
	ck_assert_int_eq(count_state(PS_ALERT_REPEAT), 5);
	for (int i = 0, k = 0; i < n_seen; i++) {
		if (seen[i].state != PS_ALERT_REPEAT)
			continue;
		ck_assert_str_eq(seen[i].rule, "r");
		k++;
		ck_assert_uint_eq(seen[i].unix_ns, T0 + (15 + 60 * k) * SEC);
		ck_assert_uint_eq(seen[i].since, T0 + 15 * SEC);
		ck_assert_double_eq_tol(seen[i].value, 0.9, 1e-12);
	}
}
END_TEST

/* Flushes that run late keep the schedule and never send a burst. */
START_TEST(test_repeat_schedule_with_jitter)
{
	load("alerts:\n"
	     "  - { name: r, protocol: tcp, error_ratio: { above: 0.5 }, window: 2s, repeat: 3s }\n");
	flush_at(0);
	tcp("s", 1, 0, 5);
	flush_at(0.5); /* fires */
	for (int i = 2; i <= 26; i++) {
		tcp("s", 1, 0, 5);
		/* each flush up to 1ms early or 3ms late against the wall clock */
		flush_at(0.5 * i + ((i % 3) - 1) * 0.001 + (i % 5 == 0 ? 0.003 : 0));
	}
	/* fired at 0.5s, repeats due at 3.5, 6.5, 9.5, 12.5: the run ends near 13s */
	ck_assert_int_eq(count_state(PS_ALERT_FIRING), 1);
	ck_assert_int_eq(count_state(PS_ALERT_REPEAT), 4);
	/* a stalled loop (15.5, 18.5 and 21.5 missed): one repeat, not three */
	tcp("s", 1, 0, 5);
	flush_at(23);
	ck_assert_int_eq(count_state(PS_ALERT_REPEAT), 5);
	tcp("s", 1, 0, 5);
	flush_at(23.5);
	tcp("s", 1, 0, 5);
	flush_at(24);
	ck_assert_int_eq(count_state(PS_ALERT_REPEAT), 5);
	tcp("s", 1, 0, 5);
	flush_at(24.499); /* 0.5 + 8 * 3, one millisecond early */
	ck_assert_int_eq(count_state(PS_ALERT_REPEAT), 6);
	tcp("s", 1, 0, 5);
	flush_at(25);
	tcp("s", 1, 0, 5);
	flush_at(27);
	ck_assert_int_eq(count_state(PS_ALERT_REPEAT), 6);
}
END_TEST

START_TEST(test_min_requests)
{
	load("alerts:\n"
	     "  - { name: m, protocol: http, error_ratio: { above: 0.1, min_requests: 10 },"
	     " window: 10s }\n");
	flush_at(0);
	http_mix("a", "/", 0, 9); /* 100% errors, but only 9 requests */
	flush_at(10);
	ck_assert_int_eq(n_seen, 0);
	http_mix("a", "/", 0, 10);
	flush_at(20);
	ck_assert_int_eq(count_state(PS_ALERT_FIRING), 1);
	/* Thin traffic changes nothing, even if it is all good. */
	http_mix("a", "/", 5, 0);
	flush_at(30);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_double_eq(gauge("m"), 1);
	/* No traffic at all: no errors either, so it resolves. */
	flush_at(40);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert_double_eq(seen[1].value, 0);
	flush_at(50);
	ck_assert_int_eq(n_seen, 2);
}
END_TEST

START_TEST(test_tcp_error_ratio)
{
	load("alerts:\n"
	     "  - { name: t, protocol: tcp, error_ratio: { above: 0.5, min_requests: 5 },"
	     " window: 2s }\n");
	flush_at(0);
	tcp("load", 9000, 3, 5); /* 5 / (3 + 5) */
	flush_at(0.5);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_double_eq_tol(seen[0].value, 5.0 / 8, 1e-12);
	ck_assert_str_eq(seen[0].protocol, "tcp");
	ck_assert_str_eq(seen[0].group, "service_name=load");
}
END_TEST

START_TEST(test_db_errors)
{
	const char *ok[] = { "api", "mysql", "SELECT", "users", "shop", "", "db", "3306" };
	const char *zero[] = { "api", "mongodb", "find", "users", "shop", "0", "db", "27017" };
	const char *err[] = { "api", "mysql", "INSERT", "users", "shop", "1062", "db", "3306" };

	load("alerts:\n"
	     "  - { name: d, protocol: db, error_ratio: { above: 0.15 }, window: 10s }\n");
	flush_at(0);
	for (int i = 0; i < 40; i++) {
		ps_metric_observe(db_dur, ok, 0.001);
		ps_metric_observe(db_dur, zero, 0.001);
	}
	for (int i = 0; i < 20; i++)
		ps_metric_observe(db_dur, err, 0.001);
	flush_at(10);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_int_eq(seen[0].state, PS_ALERT_FIRING);
	ck_assert_str_eq(seen[0].protocol, "db");
	ck_assert_double_eq_tol(seen[0].value, 0.2, 1e-12); /* 20 of 100; "" and "0" are fine */
}
END_TEST

START_TEST(test_latency)
{
	load("alerts:\n"
	     "  - { name: slow, protocol: http, latency: { quantile: 0.9, above: 0.5s,"
	     " resolve_below: 300ms, min_requests: 20 }, window: 10s }\n");
	flush_at(0);
	http("a", "/", "200", 80, 0.02);
	http("a", "/", "200", 20, 0.9); /* the slowest 20% in (0.75, 1] */
	flush_at(10);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_int_eq(seen[0].state, PS_ALERT_FIRING);
	ck_assert_str_eq(seen[0].condition, "latency_p90");
	/* rank 90 of 100: the slow ones, 0.9 s, within 10% */
	ck_assert_double_le(fabs(seen[0].value - 0.9), 0.09);
	ck_assert_double_eq(seen[0].threshold, 0.5);
	/* 0.4s is under the threshold but over resolve_below */
	http("a", "/", "200", 100, 0.4);
	flush_at(20);
	ck_assert_int_eq(n_seen, 1);
	/* only the window's requests count, not the slow ones from before */
	http("a", "/", "200", 100, 0.02);
	flush_at(30);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert(seen[1].value <= 0.025);
	ck_assert_double_eq(seen[1].threshold, 0.3);
	/* too few requests to judge */
	http("a", "/", "200", 19, 5);
	flush_at(40);
	ck_assert_int_eq(n_seen, 2);
}
END_TEST

/*
 * Latency rules over fast services: the window's quantile is within 10% of
 * the true one from 10 us to 10 s (bucket bounds used to make a 40 us service
 * a 5 ms one).
 */
START_TEST(test_latency_accuracy)
{
	static const double constants[] = { 12e-6, 40e-6, 180e-6, 0.0031, 0.047, 0.62, 8.5 };
	const double t[] = { 10, 20, 30, 40, 50, 60, 70, 80 };

	load("alerts:\n"
	     "  - { name: fast, protocol: http, latency: { quantile: 0.99, above: 100us },"
	     " window: 10s }\n");
	flush_at(0);
	/* 40 us answers never fire a 100 us p99 rule. */
	http("a", "/", "200", 1000, 40e-6);
	flush_at(t[0]);
	ck_assert_int_eq(n_seen, 0);
	for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++) {
		char yaml[256];

		teardown();
		setup();
		snprintf(
			yaml, sizeof(yaml),
			"alerts:\n  - { name: c, protocol: http, latency: { quantile: 0.5, above: %.9gs },"
			" window: 10s }\n",
			constants[i] / 2);
		load(yaml);
		flush_at(0);
		http("a", "/", "200", 10, constants[i] * 0.95);
		http("a", "/", "200", 980, constants[i]);
		http("a", "/", "200", 10, constants[i] * 1.05);
		flush_at(10);
		ck_assert_int_eq(n_seen, 1);
		ck_assert_msg(fabs(seen[0].value - constants[i]) <= 0.1 * constants[i],
			      "p50 of %.9g s measured as %.9g s", constants[i], seen[0].value);
	}
	/* A log-normal spread: p99 against the sorted truth. */
	{
		static double v[5000];
		uint64_t x = 88172645463325252ULL;

		teardown();
		setup();
		load("alerts:\n  - { name: ln, protocol: http, latency: { quantile: 0.99, above: 1us },"
		     " window: 10s }\n");
		flush_at(0);
		for (size_t i = 0; i < 5000; i++) {
			double u1, u2;

			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			u1 = ((double)(x >> 11) + 1) / 9007199254740993.0;
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			u2 = (double)(x >> 11) / 9007199254740992.0;
			v[i] = fmin(10, fmax(10e-6, 0.0008 * exp(1.5 * sqrt(-2 * log(u1)) *
								 cos(2 * M_PI * u2))));
			http("a", "/", "200", 1, v[i]);
		}
		flush_at(10);
		qsort(v, 5000, sizeof(*v), cmp_double);
		ck_assert_int_eq(n_seen, 1);
		ck_assert_msg(fabs(seen[0].value - v[4949]) <= 0.1 * v[4949],
			      "p99 %.9g s measured as %.9g s", v[4949], seen[0].value);
	}
}
END_TEST

START_TEST(test_latency_tcp_rtt)
{
	const char *v[] = { "load", "outbound", "10.0.0.1", "443" };

	load("alerts:\n"
	     "  - { name: rtt, protocol: tcp, latency: { above: 100ms }, window: 10s }\n");
	flush_at(0);
	for (int i = 0; i < 10; i++)
		ps_metric_observe(tcp_rtt, v, 0.2);
	flush_at(10);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_str_eq(seen[0].condition, "latency_p99");
	/* Traffic stops: a latency alert with nothing to measure resolves, value unknown. */
	flush_at(20);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert(isnan(seen[1].value));
}
END_TEST

START_TEST(test_rate)
{
	load("alerts:\n"
	     "  - { name: busy, protocol: http, rate: { above: 10 }, window: 20s }\n"
	     "  - { name: quiet, protocol: http, rate: { below: 1, resolve_above: 2 },"
	     " window: 20s, for: 10s }\n");
	/* Before the rules' first flush: of unknown age, so not part of any window. */
	http_mix("a", "/", 3000, 0);
	flush_at(0);
	ck_assert_int_eq(n_seen, 0);
	http_mix("a", "/", 300, 0);
	flush_at(10); /* 300 in 10s */
	ck_assert_int_eq(n_seen, 1);
	ck_assert_str_eq(seen[0].rule, "busy");
	ck_assert_str_eq(seen[0].condition, "rate");
	ck_assert_double_eq_tol(seen[0].value, 30, 1e-9);
	/* Traffic stops: busy resolves once nothing is left in the window (0/s). */
	flush_at(20); /* 300 in 20s: 15/s */
	ck_assert_int_eq(n_seen, 1);
	flush_at(30);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_str_eq(seen[1].rule, "busy");
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert_double_eq(seen[1].value, 0);
	/* quiet went pending at 30 and fires 10s later */
	flush_at(40);
	ck_assert_int_eq(n_seen, 3);
	ck_assert_str_eq(seen[2].rule, "quiet");
	ck_assert_int_eq(seen[2].state, PS_ALERT_FIRING);
	ck_assert_str_eq(seen[2].comparison, "below");
	ck_assert_double_eq(seen[2].value, 0);
	/* 1.5/s: over the threshold, under resolve_above */
	http_mix("a", "/", 30, 0);
	flush_at(50);
	ck_assert_int_eq(n_seen, 3);
	http_mix("a", "/", 50, 0);
	flush_at(60); /* 80 in 20s: 4/s */
	ck_assert_int_eq(n_seen, 4);
	ck_assert_str_eq(seen[3].rule, "quiet");
	ck_assert_int_eq(seen[3].state, PS_ALERT_RESOLVED);
	ck_assert_str_eq(seen[3].comparison, "above");
	ck_assert_double_eq(seen[3].threshold, 2);
}
END_TEST

/*
 * resources rules: rate over the counter rate.metric names. CPU seconds per
 * second is the number of cores busy; any OOM kill in the window is a rate
 * above 0.
 */
START_TEST(test_resources_rate)
{
	static const char *const cpu_labels[] = { "service_name", "cpu_mode", NULL };
	static const char *const svc_labels[] = { "service_name", NULL };
	struct ps_metric *cpu, *delay, *oom;
	const char *user[] = { "batch", "user" }, *sys[] = { "batch", "system" };
	const char *batch[] = { "batch" };

	cpu = reg_metric("process_cpu_time_seconds_total", PS_METRIC_COUNTER, cpu_labels);
	delay = reg_metric("periscope_process_cpu_delay_seconds_total", PS_METRIC_COUNTER,
			   svc_labels);
	oom = reg_metric("periscope_process_oom_kills_total", PS_METRIC_COUNTER, svc_labels);
	load("alerts:\n"
	     "  - { name: hot, protocol: resources, rate: { metric: cpu, above: 1.5 }, window: 10s }\n"
	     "  - { name: hot-user, protocol: resources, where: { cpu_mode: user },"
	     " rate: { metric: cpu, above: 1.5 }, window: 10s }\n"
	     "  - { name: starved, protocol: resources, rate: { metric: cpu_delay, above: 0.5 },"
	     " window: 10s }\n"
	     "  - { name: oom, protocol: resources, rate: { metric: oom_kills, above: 0 },"
	     " window: 10s }\n");
	ck_assert_int_eq(ps_metric_add(cpu, user, 100), 0);
	ck_assert_int_eq(ps_metric_add(delay, batch, 100), 0);
	ck_assert_int_eq(ps_metric_add(oom, batch, 0), 0);
	flush_at(0);
	ck_assert_int_eq(n_seen, 0);
	/* 10 s: 12 s user + 8 s system = 2 cores busy; 3 s waiting = 0.3; one OOM kill */
	ck_assert_int_eq(ps_metric_add(cpu, user, 12), 0);
	ck_assert_int_eq(ps_metric_add(cpu, sys, 8), 0);
	ck_assert_int_eq(ps_metric_add(delay, batch, 3), 0);
	ck_assert_int_eq(ps_metric_add(oom, batch, 1), 0);
	flush_at(10);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_str_eq(seen[0].rule, "hot");
	ck_assert_str_eq(seen[0].protocol, "resources");
	ck_assert_str_eq(seen[0].group, "service_name=batch");
	ck_assert_str_eq(seen[0].condition, "rate");
	ck_assert_double_eq_tol(seen[0].value, 2.0, 1e-9);
	ck_assert_str_eq(seen[1].rule, "oom");
	ck_assert_double_eq_tol(seen[1].value, 0.1, 1e-9);
	/* The delay doubles past its threshold: 6 s in the next 10 s window; the rest resolve. */
	ck_assert_int_eq(ps_metric_add(delay, batch, 6), 0);
	flush_at(20);
	ck_assert_int_eq(n_seen, 5);
	ck_assert_str_eq(seen[2].rule, "hot");
	ck_assert_int_eq(seen[2].state, PS_ALERT_RESOLVED);
	ck_assert_str_eq(seen[3].rule, "starved");
	ck_assert_int_eq(seen[3].state, PS_ALERT_FIRING);
	ck_assert_double_eq_tol(seen[3].value, 0.6, 1e-9);
	ck_assert_str_eq(seen[4].rule, "oom");
	ck_assert_int_eq(seen[4].state, PS_ALERT_RESOLVED);
}
END_TEST

/*
 * kafka: error_ratio and latency over the client operation histogram (an
 * operation failed when error_type names a Kafka error), rate over operations
 * or, with metric, over the messages sent or consumed; grouped by service and
 * topic unless by says otherwise.
 */
static const char *const kafka_dur_labels[] = {
	"service_name", "messaging_system", "messaging_operation_name",
	"messaging_destination_name", "error_type", "server_address", "server_port", NULL,
};
static const char *const kafka_sent_labels[] = {
	"service_name", "messaging_system", "messaging_destination_name", "error_type", NULL,
};
static const char *const kafka_consumed_labels[] = {
	"service_name", "messaging_system", "messaging_destination_name",
	"messaging_consumer_group_name", NULL,
};

static void kafka_ops(struct ps_metric *m, const char *op, const char *topic, const char *error,
		      int n, double seconds)
{
	const char *v[] = { "shop", "kafka", op, topic, error, "127.0.0.1", "9092" };

	for (int i = 0; i < n; i++)
		ck_assert_int_eq(ps_metric_observe(m, v, seconds), 0);
}

START_TEST(test_kafka)
{
	struct ps_metric *dur, *sent, *consumed;

	dur = reg_metric("messaging_client_operation_duration_seconds", PS_METRIC_HISTOGRAM,
			 kafka_dur_labels);
	sent = reg_metric("messaging_client_sent_messages_total", PS_METRIC_COUNTER,
			  kafka_sent_labels);
	consumed = reg_metric("messaging_client_consumed_messages_total", PS_METRIC_COUNTER,
			      kafka_consumed_labels);
	load("alerts:\n"
	     "  - { name: k-err, protocol: kafka, error_ratio: { above: 0.15 }, window: 10s }\n"
	     "  - { name: k-slow, protocol: kafka, where: { messaging_operation_name: send },"
	     " latency: { quantile: 0.9, above: 100ms }, window: 10s }\n"
	     "  - { name: k-ops, protocol: kafka, by: [service_name], rate: { above: 15 },"
	     " window: 10s }\n"
	     "  - { name: k-sent, protocol: kafka, rate: { metric: sent, above: 40 },"
	     " window: 10s }\n"
	     "  - { name: k-idle, protocol: kafka, rate: { metric: consumed, below: 1 },"
	     " window: 10s }\n");
	ck_assert_int_eq(ps_metric_add(consumed, (const char *[]){ "shop", "kafka", "orders", "g1" },
				       5),
			 0);
	flush_at(0);
	ck_assert_int_eq(n_seen, 0);

	/*
	 * 10 s. orders: 80 sends in 2 ms and 20 answered NOT_LEADER_OR_FOLLOWER in
	 * 300 ms (error ratio 0.2, p90 of the sends in the slow ones); 500 records
	 * sent (50/s); 100 consumed (10/s). audit: 60 good polls (ratio 0),
	 * 2 records consumed (0.2/s).
	 */
	kafka_ops(dur, "send", "orders", "", 80, 0.002);
	kafka_ops(dur, "send", "orders", "NOT_LEADER_OR_FOLLOWER", 20, 0.3);
	kafka_ops(dur, "poll", "audit", "", 60, 0.002);
	/* librdkafka's version handshake on each connection, no topic. */
	kafka_ops(dur, "apiversions", "", "", 4, 0.001);
	ck_assert_int_eq(ps_metric_add(sent, (const char *[]){ "shop", "kafka", "orders", "" }, 480),
			 0);
	ck_assert_int_eq(ps_metric_add(sent, (const char *[]){ "shop", "kafka", "orders",
							       "NOT_LEADER_OR_FOLLOWER" },
				       20),
			 0);
	ck_assert_int_eq(ps_metric_add(consumed, (const char *[]){ "shop", "kafka", "orders", "g1" },
				       100),
			 0);
	ck_assert_int_eq(ps_metric_add(consumed, (const char *[]){ "shop", "kafka", "audit", "" },
				       2),
			 0);
	flush_at(10);
	ck_assert_int_eq(n_seen, 5);
	ck_assert_str_eq(seen[0].rule, "k-err");
	ck_assert_str_eq(seen[0].protocol, "kafka");
	ck_assert_str_eq(seen[0].group, "service_name=shop messaging_destination_name=orders");
	ck_assert_double_eq_tol(seen[0].value, 0.2, 1e-12);
	ck_assert_str_eq(seen[1].rule, "k-slow");
	ck_assert_str_eq(seen[1].group, "service_name=shop messaging_destination_name=orders");
	ck_assert_str_eq(seen[1].condition, "latency_p90");
	ck_assert_double_le(fabs(seen[1].value - 0.3), 0.03);
	ck_assert_str_eq(seen[2].rule, "k-ops"); /* 164 operations in 10 s, both topics */
	ck_assert_str_eq(seen[2].group, "service_name=shop");
	ck_assert_double_eq_tol(seen[2].value, 16.4, 1e-9);
	ck_assert_str_eq(seen[3].rule, "k-sent");
	ck_assert_str_eq(seen[3].group, "service_name=shop messaging_destination_name=orders");
	ck_assert_double_eq_tol(seen[3].value, 50, 1e-9);
	ck_assert_str_eq(seen[4].rule, "k-idle");
	ck_assert_str_eq(seen[4].group, "service_name=shop messaging_destination_name=audit");
	ck_assert_double_eq_tol(seen[4].value, 0.2, 1e-9);
	ck_assert_str_eq(seen[4].comparison, "below");
	for (int i = 0; i < n_seen; i++)
		ck_assert_int_eq(seen[i].state, PS_ALERT_FIRING);
	ck_assert_double_eq(gauge("k-err"), 1);
}
END_TEST

/* ---- series groups ------------------------------------------------------------------------ */

START_TEST(test_where_and_by)
{
	load("alerts:\n"
	     "  - { name: routes, protocol: http, where: { service_name: checkout, url_scheme: http },\n"
	     "      by: [service_name, http_route], error_ratio: { above: 0.1 }, window: 10s }\n");
	flush_at(0);
	http_mix("checkout", "/cart", 50, 50);
	http_mix("checkout", "/pay", 90, 10);
	http_mix("checkout", "/ok", 100, 0);
	http_mix("search", "/cart", 0, 100);
	flush_at(10);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_str_eq(seen[0].group, "service_name=checkout http_route=/cart");
	http_mix("checkout", "/cart", 50, 50);
	http_mix("checkout", "/pay", 50, 50);
	flush_at(20);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_str_eq(seen[1].group, "service_name=checkout http_route=/pay");
	ck_assert_double_eq(gauge("routes"), 2);
}
END_TEST

START_TEST(test_groups_appear_and_vanish)
{
	const char *gone[] = { "late", "outbound", "127.0.0.1", "2" };

	load("alerts:\n"
	     "  - { name: g, protocol: tcp, by: [service_name, peer_port],"
	     " error_ratio: { above: 0.5 }, window: 10s }\n");
	flush_at(0);
	tcp("early", 1, 10, 0);
	flush_at(10);
	ck_assert_int_eq(n_seen, 0);
	/* A group that appears already failing fires at its first flush. */
	tcp("late", 2, 0, 10);
	flush_at(20);
	ck_assert_int_eq(n_seen, 1);
	ck_assert_str_eq(seen[0].group, "service_name=late peer_port=2");
	ck_assert_double_eq(gauge("g"), 1);
	/* Its series vanish while it fires: exactly one RESOLVED, value unknown. */
	ck_assert_int_eq(ps_metric_remove(tcp_failed, gone), 0);
	flush_at(30);
	flush_at(40);
	ck_assert_int_eq(n_seen, 2);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert_str_eq(seen[1].group, "service_name=late peer_port=2");
	ck_assert(isnan(seen[1].value));
	ck_assert_double_eq(gauge("g"), 0);
}
END_TEST

/* A counter that restarts (removed, then created again) counts from zero, never negative. */
START_TEST(test_counter_reset)
{
	const char *v[] = { "s", "outbound", "127.0.0.1", "1" };

	load("alerts:\n"
	     "  - { name: c, protocol: tcp, error_ratio: { above: 0.5 }, window: 30s }\n");
	flush_at(0);
	tcp("s", 1, 100, 0);
	flush_at(10);
	ck_assert_int_eq(ps_metric_remove(tcp_opened, v), 0);
	tcp("s", 1, 5, 0);
	flush_at(20);
	tcp("s", 1, 0, 50);
	flush_at(30);
	/* over the window: 50 / (100 + 5 + 50) */
	ck_assert_int_eq(n_seen, 0);
	tcp("s", 1, 0, 60);
	flush_at(40);
	/* 110 failed of 5 + 110 since t=10 */
	ck_assert_int_eq(n_seen, 1);
	ck_assert_double_eq_tol(seen[0].value, 110.0 / 115, 1e-12);
}
END_TEST

/* A histogram series that vanishes mid-window leaves the other buckets' deltas intact. */
START_TEST(test_histogram_series_vanishes)
{
	const char *a[] = { "svc", "GET", "200", "/a", "http" };

	load("alerts:\n"
	     "  - { name: l, protocol: http, latency: { quantile: 0.5, above: 0.5s },"
	     " window: 10s }\n");
	flush_at(0);
	http("svc", "/a", "200", 10, 2);
	http("svc", "/b", "200", 10, 0.001);
	flush_at(10);
	ck_assert_int_eq(n_seen, 0);
	ck_assert_int_eq(ps_metric_remove(http_dur, a), 0);
	http("svc", "/b", "200", 10, 0.001);
	flush_at(20); /* the flush with the vanished series is skipped, never negative */
	http("svc", "/b", "200", 10, 0.9);
	http("svc", "/b", "200", 1, 0.001);
	flush_at(30);
	ck_assert_int_eq(n_seen, 1);
	ck_assert(seen[0].value > 0.75 && seen[0].value <= 1);
}
END_TEST

START_TEST(test_group_cap)
{
	load("alerts:\n"
	     "  - { name: many, protocol: tcp, by: [peer_port], error_ratio: { above: 0.5 },"
	     " window: 10s, repeat: 0 }\n");
	flush_at(0);
	for (int p = 1; p <= 1100; p++)
		tcp("s", p, 0, 1);
	flush_at(10);
	ck_assert_int_eq(n_seen, 1000);
	ck_assert_double_eq(gauge("many"), 1000);
	flush_at(20); /* traffic stops: all resolve, once */
	ck_assert_int_eq(count_state(PS_ALERT_RESOLVED), 1000);
	ck_assert_double_eq(gauge("many"), 0);
}
END_TEST

/* ---- the gauge and reloads ---------------------------------------------------------------- */

START_TEST(test_gauge_follows_rules)
{
	struct ps_alert_rules *fresh;

	load("alerts:\n"
	     "  - { name: one, protocol: tcp, rate: { above: 100 } }\n"
	     "  - { name: two, protocol: http, rate: { above: 100 } }\n");
	flush_at(0);
	ck_assert_double_eq(gauge("one"), 0);
	ck_assert_double_eq(gauge("two"), 0);
	fresh = parse_rules("alerts:\n  - { name: two, protocol: http, rate: { above: 100 } }\n");
	ps_alerts_adopt_state(fresh, rules);
	ps_alerts_free(rules);
	rules = fresh;
	flush_at(10);
	ck_assert_double_eq(gauge("one"), -1);
	ck_assert_double_eq(gauge("two"), 0);
	ps_alerts_free(rules);
	rules = NULL;
	flush_at(20);
	ck_assert_double_eq(gauge("two"), -1);
}
END_TEST

START_TEST(test_reload_keeps_state)
{
	struct ps_alert_rules *fresh;

	load("alerts:\n"
	     "  - { name: k, protocol: tcp, error_ratio: { above: 0.5 }, window: 20s,"
	     " repeat: 1h }\n");
	flush_at(0);
	tcp("s", 1, 0, 10);
	flush_at(10);
	ck_assert_int_eq(n_seen, 1);
	/* Same rule, new threshold: still firing, no new FIRING, the window carries over. */
	fresh = parse_rules("alerts:\n"
			    "  - { name: k, protocol: tcp, error_ratio: { above: 0.4 },"
			    " window: 20s, repeat: 1h }\n");
	ps_alerts_adopt_state(fresh, rules);
	ps_alerts_free(rules);
	rules = fresh;
	tcp("s", 1, 10, 0);
	flush_at(20); /* 10 / 20 = 0.5: over 0.36 */
	ck_assert_int_eq(n_seen, 1);
	ck_assert_double_eq(gauge("k"), 1);
	/* Grouped differently now: the old group resolves once, the new one fires. */
	fresh = parse_rules("alerts:\n"
			    "  - { name: k, protocol: tcp, by: [service_name, peer_port],"
			    " error_ratio: { above: 0.4 }, window: 20s, repeat: 1h }\n");
	ps_alerts_adopt_state(fresh, rules);
	ps_alerts_free(rules);
	rules = fresh;
	tcp("s", 1, 0, 10);
	flush_at(30);
	ck_assert_int_eq(n_seen, 3);
	ck_assert_int_eq(seen[1].state, PS_ALERT_RESOLVED);
	ck_assert_str_eq(seen[1].group, "service_name=s");
	ck_assert_int_eq(seen[2].state, PS_ALERT_FIRING);
	ck_assert_str_eq(seen[2].group, "service_name=s peer_port=1");
	flush_at(40); /* the errors are still in the window */
	ck_assert_int_eq(n_seen, 3);
	flush_at(50);
	ck_assert_int_eq(n_seen, 4);
	ck_assert_int_eq(seen[3].state, PS_ALERT_RESOLVED);
}
END_TEST

START_TEST(test_no_rules)
{
	ck_assert_ptr_null(parse_rules("daemon: {}\n"));
	ps_alerts_evaluate(NULL, reg, T0);
	ps_alerts_evaluate(NULL, NULL, T0);
	ps_alerts_adopt_state(NULL, NULL);
	ps_alerts_free(NULL);
	ck_assert_int_eq(n_seen, 0);
}
END_TEST

static Suite *alerts_suite(void)
{
	Suite *s = suite_create("alerts");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_parse_accepts);
	tcase_add_test(tc, test_parse_rejects);
	tcase_add_test(tc, test_error_ratio_http);
	tcase_add_test(tc, test_window_slides);
	tcase_add_test(tc, test_hysteresis);
	tcase_add_test(tc, test_for_pending);
	tcase_add_test(tc, test_repeat);
	tcase_add_test(tc, test_repeat_schedule_with_jitter);
	tcase_add_test(tc, test_min_requests);
	tcase_add_test(tc, test_tcp_error_ratio);
	tcase_add_test(tc, test_db_errors);
	tcase_add_test(tc, test_latency);
	tcase_add_test(tc, test_latency_tcp_rtt);
	tcase_add_test(tc, test_latency_accuracy);
	tcase_add_test(tc, test_rate);
	tcase_add_test(tc, test_resources_rate);
	tcase_add_test(tc, test_kafka);
	tcase_add_test(tc, test_where_and_by);
	tcase_add_test(tc, test_groups_appear_and_vanish);
	tcase_add_test(tc, test_counter_reset);
	tcase_add_test(tc, test_histogram_series_vanishes);
	tcase_add_test(tc, test_group_cap);
	tcase_add_test(tc, test_gauge_follows_rules);
	tcase_add_test(tc, test_reload_keeps_state);
	tcase_add_test(tc, test_no_rules);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(alerts_suite());
	int failed;

	ps_log_set_level(PS_LOG_WARN); /* every transition is logged at info */
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
