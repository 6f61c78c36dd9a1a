/*
 * Alert rules over the registry.
 *
 * Every flush, each rule sums the series it watches into series groups (one
 * per distinct value of its `by` labels) and adds what they gained since the
 * previous flush to a per-group running total that never decreases. Counters
 * and histogram counts gain what the registry's flushed_* fields say they did
 * (a series that is new or was reset counts from zero), so a series that
 * vanishes or restarts never makes a window negative. A ring of these totals,
 * spaced at most window/RING_SLOTS apart, gives the delta over the sliding
 * window; the condition is measured on that delta and drives a small state
 * machine per group: inactive -> pending -> firing -> (resolved) inactive.
 *
 * This relies on the daemon's order: ps_alerts_evaluate() runs once per flush,
 * before ps_registry_mark_flushed().
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/semconv.h>
#include <periscope/events.h>
#include <periscope/log.h>

#include "alerts.h"

#define SUBSYS		"alerts"
#define SELF_SERVICE	"periscoped"
#define FIRING_METRIC	"periscope_alerts_firing"
#define NSEC_PER_MSEC	1000000ull
#define NSEC_PER_SEC	1000000000ull
#define MAX_GROUPS	1000 /* per rule: label values come from traffic */
#define MAX_GROUP_KEY	1024
#define GROUP_HASH_SIZE 1024 /* a power of two */
#define RING_SLOTS	32   /* snapshots per window: the window is exact to 1/32 */
#define RING_MAX	(RING_SLOTS + 2)
#define RING_INITIAL	4
/* Flush timers may fire a millisecond early against the wall clock. */
#define CLOCK_SLACK_NS (20 * NSEC_PER_MSEC)
/* Without resolve_*, an alert resolves 10% on the good side of its threshold. */
#define DEFAULT_HYSTERESIS 0.1
/*
 * Latency windows add up the series' high-resolution buckets, coarsened to 8
 * per octave (any estimate inside one is within 9% of the truth) over 2^-20 s
 * (about 1 us) to 2^7 s (128 s), beyond which they clamp: 216 slots plus one
 * for observations <= 0, about 59 KiB of window per series group.
 */
#define LAT_SHIFT 1
#define LAT_LO	  (-20 * (PS_HIRES_PER_OCTAVE >> LAT_SHIFT))
#define LAT_N	  ((size_t)(27 * (PS_HIRES_PER_OCTAVE >> LAT_SHIFT)))
#define LAT_SLOTS (LAT_N + 1) /* [0]: <= 0, then LAT_LO .. */

/* ---- what each protocol's conditions read ------------------------------------------------ */

enum source_role {
	SRC_REQUESTS,  /* counter: each unit is a request */
	SRC_FAILURES,  /* counter: each unit is a request that failed */
	SRC_EXCHANGES, /* histogram: count = requests, error status = errors */
};

struct source {
	const char *family;
	enum source_role role;
};

/* A counter a `rate` rule may name with `metric` (protocols without fixed sources). */
struct rate_metric {
	const char *name;
	const char *family;
};

struct protocol {
	const char *name;
	struct source sources[2];
	size_t n_sources;
	const char *status_label; /* SRC_EXCHANGES: the label that says error */
	const char *op_label;	  /* NULL, or the operation is_error also reads */
	bool (*is_error)(const char *status, const char *op);
	const char *latency_family;
	const char *const *labels; /* what where and by may name */
	/*
	 * NULL-terminated; a rate rule picks one with `metric`: required where the
	 * protocol has no sources (resources), else optional (kafka: messages
	 * instead of operations).
	 */
	const struct rate_metric *metrics;
	const char *const *default_by; /* NULL: [service_name] */
};

static bool http_status_is_error(const char *status, const char *op)
{
	(void)op;
	return atoi(status) >= 500;
}

static bool db_status_is_error(const char *status, const char *op)
{
	(void)op;
	return *status && strcmp(status, "0") != 0;
}

/*
 * error_type: the Kafka error name of the partition or request, empty when it
 * succeeded (the plugin does not count the version handshake's refusal).
 */
static bool kafka_status_is_error(const char *status, const char *op)
{
	(void)op;
	return *status != '\0';
}

/* clang-format off */
static const char *const http_labels[] = {
	PS_L_SERVICE_NAME, PS_L_HTTP_METHOD, PS_L_HTTP_STATUS, PS_L_HTTP_ROUTE, PS_L_URL_SCHEME, NULL,
};
static const char *const db_labels[] = {
	PS_L_SERVICE_NAME, PS_L_DB_SYSTEM, PS_L_DB_OPERATION, PS_L_DB_COLLECTION,
	PS_L_DB_NAMESPACE, PS_L_DB_STATUS, PS_L_SERVER_ADDRESS, PS_L_SERVER_PORT, NULL,
};
static const char *const tcp_labels[] = {
	PS_L_SERVICE_NAME, PS_L_DIRECTION, PS_L_PEER_ADDRESS, PS_L_PEER_PORT, NULL,
};
static const char *const resources_labels[] = { "service_name", "cpu_mode", NULL };
/* cpu: CPU seconds per second (cores busy); cpu_delay: seconds waiting for a CPU per second */
static const struct rate_metric resources_metrics[] = {
	{ "cpu", "process_cpu_time_seconds_total" },
	{ "cpu_delay", "periscope_process_cpu_delay_seconds_total" },
	{ "oom_kills", "periscope_process_oom_kills_total" },
	{ NULL, NULL },
};
static const char *const kafka_labels[] = {
	PS_L_SERVICE_NAME, PS_L_MESSAGING_SYSTEM, PS_L_MESSAGING_OPERATION, PS_L_MESSAGING_DESTINATION,
	PS_L_ERROR_TYPE, PS_L_SERVER_ADDRESS, PS_L_SERVER_PORT, "messaging_consumer_group_name", NULL,
};
/* sent: records produced per second; consumed: records fetched per second */
static const struct rate_metric kafka_metrics[] = {
	{ "sent", PS_M_MESSAGING_SENT },
	{ "consumed", PS_M_MESSAGING_CONSUMED },
	{ NULL, NULL },
};
static const char *const kafka_default_by[] = {
	PS_L_SERVICE_NAME, PS_L_MESSAGING_DESTINATION, NULL,
};
/* clang-format on */

/* The one place that says which metrics a rule of each protocol reads. */
static const struct protocol protocols[] = {
	{
		.name = "http",
		.sources = { { PS_M_HTTP_SERVER_DURATION, SRC_EXCHANGES } },
		.n_sources = 1,
		.status_label = PS_L_HTTP_STATUS,
		.is_error = http_status_is_error,
		.latency_family = PS_M_HTTP_SERVER_DURATION,
		.labels = http_labels,
	},
	{
		.name = "db",
		.sources = { { PS_M_DB_CLIENT_DURATION, SRC_EXCHANGES } },
		.n_sources = 1,
		.status_label = PS_L_DB_STATUS,
		.is_error = db_status_is_error,
		.latency_family = PS_M_DB_CLIENT_DURATION,
		.labels = db_labels,
	},
	{
		/* error_ratio = failed / (opened + failed); latency is the round-trip time */
		.name = "tcp",
		.sources = { { PS_M_TCP_OPENED, SRC_REQUESTS }, { PS_M_TCP_FAILED, SRC_FAILURES } },
		.n_sources = 2,
		.latency_family = PS_M_TCP_RTT,
		.labels = tcp_labels,
	},
	{
		/* rate only, over the counter rate.metric names */
		.name = "resources",
		.metrics = resources_metrics,
		.labels = resources_labels,
	},
	{
		/*
		 * Client operations, one observation per topic a request touches: an
		 * operation failed when error_type names a Kafka error. rate counts
		 * operations, or messages with metric sent / consumed.
		 */
		.name = "kafka",
		.sources = { { PS_M_MESSAGING_CLIENT_DURATION, SRC_EXCHANGES } },
		.n_sources = 1,
		.status_label = PS_L_ERROR_TYPE,
		.op_label = PS_L_MESSAGING_OPERATION,
		.is_error = kafka_status_is_error,
		.latency_family = PS_M_MESSAGING_CLIENT_DURATION,
		.labels = kafka_labels,
		.metrics = kafka_metrics,
		.default_by = kafka_default_by,
	},
};

#define N_PROTOCOLS (sizeof(protocols) / sizeof(protocols[0]))

/* ---- rules and their state ---------------------------------------------------------------- */

enum cond_kind {
	COND_ERROR_RATIO,
	COND_LATENCY,
	COND_RATE,
};

struct condition {
	enum cond_kind kind;
	bool below;	  /* fires under the threshold (rate only) */
	double threshold; /* ratio, seconds, or requests per second */
	double resolve;	  /* resolves at or past this, on the good side */
	double quantile;  /* latency */
	uint64_t min_requests;
	char name[32]; /* "error_ratio", "latency_p99", "rate" */
	/* rate over this counter instead of the protocol's sources (protocol metrics) */
	const char *family;
};

enum group_state {
	GROUP_INACTIVE,
	GROUP_PENDING,
	GROUP_FIRING,
};

/*
 * A sample is `width` doubles: requests, errors, then (latency rules) the
 * histogram buckets. Integers below 2^53 are exact in a double.
 */
#define SAMPLE_REQUESTS 0
#define SAMPLE_ERRORS	1
#define SAMPLE_BUCKETS	2

struct group {
	char *key; /* "service_name=checkout http_route=/cart" */
	struct group *hash_next;
	size_t index;		    /* in rule->groups */
	bool seen;		    /* some matching series exists at this flush */
	bool starts_now;	    /* gains of unknown age: the first flush is the baseline */
	double *acc;		    /* width: gained since the group appeared; never decreases */
	double *inc;		    /* width: gained at this flush */
	double *raw_prev, *raw_now; /* n_buckets: raw bucket sums, to check bucket gains */
	double count_gain;	    /* exact gain of the latency histogram's count */
	uint64_t *ring_t;	    /* ring of (time, acc), oldest first */
	double *ring_v;
	size_t ring_len, ring_cap;
	enum group_state state;
	uint64_t pending_since, firing_since, last_sent, next_repeat;
	double value; /* last measurement with enough data */
};

struct rule {
	char *name;
	const struct protocol *proto;
	struct ps_strmap where;
	struct ps_strlist by;
	struct condition cond;
	uint64_t window_ns, for_ns, repeat_ns;

	struct group **groups;
	size_t n_groups, cap_groups;
	struct group **hash;	/* GROUP_HASH_SIZE chains, allocated with the first group */
	struct group **orphans; /* firing under a reloaded, different rule: resolve them */
	size_t n_orphans;
	size_t width, n_buckets; /* n_buckets: latency histogram slots incl. +Inf, else 0 */
	uint64_t *scratch;	 /* n_buckets, for quantile estimates */
	uint64_t last_eval_ns;
	bool cap_logged, key_logged;
};

struct ps_alert_rules {
	struct rule *v;
	size_t n;
	char *key; /* scratch for group keys */
	size_t key_cap;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static bool reached(uint64_t now, uint64_t when)
{
	return now + CLOCK_SLACK_NS >= when;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

static double counter_gain(double now, double before)
{
	return now >= before ? now - before : now; /* a reset starts from zero */
}

static double count_gain(uint64_t now, uint64_t before)
{
	return now >= before ? (double)(now - before) : (double)now;
}

/* ---- groups ------------------------------------------------------------------------------- */

static void group_free(struct group *g)
{
	if (!g)
		return;
	free(g->key);
	free(g->acc);
	free(g->ring_t);
	free(g->ring_v);
	free(g);
}

/* acc, inc, raw_prev and raw_now in one block. */
static int group_alloc_samples(struct group *g, size_t width, size_t n_buckets)
{
	double *block = calloc(2 * width + 2 * n_buckets + 1, sizeof(*block));

	if (!block)
		return -ENOMEM;
	g->acc = block;
	g->inc = block + width;
	g->raw_prev = g->inc + width;
	g->raw_now = g->raw_prev + n_buckets;
	return 0;
}

static int ring_reserve(struct group *g, size_t width)
{
	size_t cap = g->ring_cap ? g->ring_cap * 2 : RING_INITIAL;
	uint64_t *t;
	double *v;

	if (g->ring_len < g->ring_cap)
		return 0;
	if (g->ring_cap >= RING_MAX)
		return -ENOSPC;
	if (cap > RING_MAX)
		cap = RING_MAX;
	t = realloc(g->ring_t, cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	g->ring_t = t;
	v = realloc(g->ring_v, cap * width * sizeof(*v));
	if (!v)
		return -ENOMEM;
	g->ring_v = v;
	g->ring_cap = cap;
	return 0;
}

static void ring_drop_oldest(struct group *g, size_t width)
{
	memmove(g->ring_t, g->ring_t + 1, (g->ring_len - 1) * sizeof(*g->ring_t));
	memmove(g->ring_v, g->ring_v + width, (g->ring_len - 1) * width * sizeof(*g->ring_v));
	g->ring_len--;
}

static void ring_push(struct group *g, size_t width, uint64_t t, const double *sample)
{
	if (ring_reserve(g, width) == -ENOSPC)
		ring_drop_oldest(g, width);
	else if (g->ring_len == g->ring_cap)
		return; /* out of memory: the window stretches, nothing breaks */
	g->ring_t[g->ring_len] = t;
	memcpy(g->ring_v + g->ring_len * width, sample, width * sizeof(*sample));
	g->ring_len++;
}

static struct group *group_new(const char *key, size_t width, size_t n_buckets)
{
	struct group *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->key = strdup(key);
	if (!g->key || group_alloc_samples(g, width, n_buckets)) {
		group_free(g);
		return NULL;
	}
	g->value = NAN;
	return g;
}

static struct group **hash_slot(struct rule *r, const char *key)
{
	return &r->hash[fnv1a(key) & (GROUP_HASH_SIZE - 1)];
}

static struct group *group_find(struct rule *r, const char *key)
{
	if (!r->hash)
		return NULL;
	for (struct group *g = *hash_slot(r, key); g; g = g->hash_next)
		if (strcmp(g->key, key) == 0)
			return g;
	return NULL;
}

static int group_insert(struct rule *r, struct group *g)
{
	struct group **slot;

	if (!r->hash) {
		r->hash = calloc(GROUP_HASH_SIZE, sizeof(*r->hash));
		if (!r->hash)
			return -ENOMEM;
	}
	if (r->n_groups == r->cap_groups) {
		size_t cap = r->cap_groups ? r->cap_groups * 2 : 8;
		struct group **grown = realloc(r->groups, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		r->groups = grown;
		r->cap_groups = cap;
	}
	g->index = r->n_groups;
	r->groups[r->n_groups++] = g;
	slot = hash_slot(r, g->key);
	g->hash_next = *slot;
	*slot = g;
	return 0;
}

static void group_remove(struct rule *r, struct group *g)
{
	for (struct group **pp = hash_slot(r, g->key); *pp; pp = &(*pp)->hash_next) {
		if (*pp == g) {
			*pp = g->hash_next;
			break;
		}
	}
	r->groups[g->index] = r->groups[--r->n_groups];
	r->groups[g->index]->index = g->index;
	group_free(g);
}

/*
 * A group seen for the first time starts from zero at the rule's previous
 * flush: what its series gained is what they gained since then. At a rule's
 * very first flush that span is unknown, so what is there becomes the baseline.
 */
static struct group *group_get(struct rule *r, const char *key, uint64_t now)
{
	struct group *g = group_find(r, key);

	if (g)
		return g;
	if (r->n_groups >= MAX_GROUPS) {
		if (!r->cap_logged)
			ps_warn(SUBSYS, "%s: %d series groups reached; new groups are ignored",
				r->name, MAX_GROUPS);
		r->cap_logged = true;
		return NULL;
	}
	g = group_new(key, r->width, r->n_buckets);
	if (g) {
		g->starts_now = !r->last_eval_ns;
		ring_push(g, r->width, r->last_eval_ns ? r->last_eval_ns : now, g->acc);
	}
	if (!g || !g->ring_len || group_insert(r, g)) {
		group_free(g);
		ps_error(SUBSYS, "%s: out of memory for group %s", r->name, key);
		return NULL;
	}
	return g;
}

static void rule_clear_state(struct rule *r)
{
	for (size_t i = 0; i < r->n_groups; i++)
		group_free(r->groups[i]);
	for (size_t i = 0; i < r->n_orphans; i++)
		group_free(r->orphans[i]);
	free(r->groups);
	free(r->orphans);
	free(r->hash);
	free(r->scratch);
	r->groups = r->orphans = r->hash = NULL;
	r->scratch = NULL;
	r->n_groups = r->cap_groups = r->n_orphans = 0;
}

static void rule_free(struct rule *r)
{
	rule_clear_state(r);
	free(r->name);
	for (size_t i = 0; i < r->where.n; i++) {
		free(r->where.keys[i]);
		free(r->where.values[i]);
	}
	free(r->where.keys);
	free(r->where.values);
	for (size_t i = 0; i < r->by.n; i++)
		free(r->by.v[i]);
	free(r->by.v);
}

void ps_alerts_free(struct ps_alert_rules *rules)
{
	if (!rules)
		return;
	for (size_t i = 0; i < rules->n; i++)
		rule_free(&rules->v[i]);
	free(rules->v);
	free(rules->key);
	free(rules);
}

/* ---- parsing ------------------------------------------------------------------------------ */

struct rule_config {
	char *name;
	char *protocol;
	struct ps_strmap where;
	struct ps_strlist by;
	struct ps_strmap error_ratio, latency, rate; /* only checked for shape here */
	uint64_t window_ms, for_ms, repeat_ms;
};

static const char *const protocol_names[] = { "http", "db", "tcp", "resources", "kafka", NULL };

static const struct ps_cfg_key rule_keys[] = {
	{ "name", PS_CFG_STRING, NULL, offsetof(struct rule_config, name), NULL,
	  "unique rule name, [A-Za-z0-9_.-]+" },
	{ "protocol", PS_CFG_STRING, NULL, offsetof(struct rule_config, protocol), protocol_names,
	  "http, db, tcp, resources or kafka" },
	{ "where", PS_CFG_STRMAP, NULL, offsetof(struct rule_config, where), NULL,
	  "label: exact value, every one must match" },
	{ "by", PS_CFG_STRLIST, NULL, offsetof(struct rule_config, by), NULL,
	  "labels that make a series group (default [service_name]; kafka: "
	  "[service_name, messaging_destination_name])" },
	{ "error_ratio", PS_CFG_STRMAP, NULL, offsetof(struct rule_config, error_ratio), NULL,
	  "above, resolve_below, min_requests" },
	{ "latency", PS_CFG_STRMAP, NULL, offsetof(struct rule_config, latency), NULL,
	  "quantile, above, resolve_below, min_requests" },
	{ "rate", PS_CFG_STRMAP, NULL, offsetof(struct rule_config, rate), NULL,
	  "above or below (per second), resolve_below or resolve_above" },
	{ "window", PS_CFG_DURATION, "5m", offsetof(struct rule_config, window_ms), NULL,
	  "sliding window the condition is measured over" },
	{ "for", PS_CFG_DURATION, "0s", offsetof(struct rule_config, for_ms), NULL,
	  "how long the condition must hold before firing" },
	{ "repeat", PS_CFG_DURATION, "4h", offsetof(struct rule_config, repeat_ms), NULL,
	  "re-send while firing (0: never)" },
	{ NULL },
};

struct cond_config {
	char *quantile;
	char *above, *below;
	char *resolve_below, *resolve_above;
	uint64_t min_requests;
	char *metric;
};

/* clang-format off */
#define COND_KEY(field, type, def, help) \
	{ #field, type, def, offsetof(struct cond_config, field), NULL, help }
/* clang-format on */

static const struct ps_cfg_key error_ratio_keys[] = {
	COND_KEY(above, PS_CFG_STRING, NULL, "fires above this ratio of errors, 0..1"),
	COND_KEY(resolve_below, PS_CFG_STRING, NULL, "resolves at or below (default 90% of above)"),
	COND_KEY(min_requests, PS_CFG_UINT, "1", "fewer requests in the window change nothing"),
	{ NULL },
};

static const struct ps_cfg_key latency_keys[] = {
	COND_KEY(quantile, PS_CFG_STRING, "0.99", "0 < quantile < 1, estimated from the histogram"),
	COND_KEY(above, PS_CFG_STRING, NULL, "fires above this many seconds (0.5s, 300ms)"),
	COND_KEY(resolve_below, PS_CFG_STRING, NULL, "resolves at or below (default 90% of above)"),
	COND_KEY(min_requests, PS_CFG_UINT, "1", "fewer requests in the window change nothing"),
	{ NULL },
};

static const struct ps_cfg_key rate_keys[] = {
	COND_KEY(above, PS_CFG_STRING, NULL, "fires above this many requests per second"),
	COND_KEY(below, PS_CFG_STRING, NULL, "fires below this many requests per second"),
	COND_KEY(resolve_below, PS_CFG_STRING, NULL, "with above: resolves at or below"),
	COND_KEY(resolve_above, PS_CFG_STRING, NULL, "with below: resolves at or above"),
	COND_KEY(metric, PS_CFG_STRING, NULL,
		 "resources rules: cpu, cpu_delay or oom_kills; kafka rules: sent or consumed"),
	{ NULL },
};

static const char *const condition_names[] = { "error_ratio", "latency", "rate" };
static const struct ps_cfg_key *const condition_keys[] = { error_ratio_keys, latency_keys,
							   rate_keys };

static int condition_index(const char *key)
{
	for (int i = 0; i < (int)(sizeof(condition_names) / sizeof(condition_names[0])); i++)
		if (strcmp(condition_names[i], key) == 0)
			return i;
	return -1;
}

static bool valid_rule_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

static int parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	*out = v;
	return *end ? -EINVAL : 0;
}

/* "0.5s", "300ms", "250us", bare numbers are seconds. */
static int parse_seconds(const char *s, double *out)
{
	static const struct {
		const char *suffix;
		double scale;
	} units[] = { { "", 1 }, { "s", 1 }, { "ms", 1e-3 }, { "us", 1e-6 } };
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			*out = v * units[i].scale;
			return 0;
		}
	}
	return -EINVAL;
}

/* Parses cond->key (when set) into *out; err points at the key's value. */
static int parse_threshold(const struct ps_cfg_node *cond, const char *key, const char *text,
			   bool seconds, double *out, struct ps_cfg_error *err)
{
	int rc = seconds ? parse_seconds(text, out) : parse_double(text, out);

	if (rc)
		return ps_cfg_errorf(
			err, ps_cfg_node_get(cond, key), "alerts: %s: expected %s, got '%s'", key,
			seconds ? "a duration like 0.5s or 300ms" : "a non-negative number", text);
	return 0;
}

static int check_resolve_side(const struct ps_cfg_node *cond, const struct condition *c,
			      struct ps_cfg_error *err)
{
	const char *key = c->below ? "resolve_above" : "resolve_below";

	if (c->below ? c->resolve < c->threshold : c->resolve > c->threshold)
		return ps_cfg_errorf(err, ps_cfg_node_get(cond, key),
				     "alerts: %s must be on the good side of %s (%s %g)", key,
				     c->below ? "below" : "above",
				     c->below ? "at least" : "at most", c->threshold);
	return 0;
}

static int fill_error_ratio(const struct ps_cfg_node *n, const struct cond_config *cc,
			    struct condition *c, struct ps_cfg_error *err)
{
	int rc;

	if (!cc->above)
		return ps_cfg_errorf(err, n, "alerts: error_ratio needs above (a ratio, 0..1)");
	rc = parse_threshold(n, "above", cc->above, false, &c->threshold, err);
	if (rc)
		return rc;
	if (c->threshold >= 1)
		return ps_cfg_errorf(err, ps_cfg_node_get(n, "above"),
				     "alerts: above: an error ratio is below 1, got '%s'",
				     cc->above);
	c->resolve = c->threshold * (1 - DEFAULT_HYSTERESIS);
	if (cc->resolve_below) {
		rc = parse_threshold(n, "resolve_below", cc->resolve_below, false, &c->resolve,
				     err);
		if (rc)
			return rc;
	}
	snprintf(c->name, sizeof(c->name), "error_ratio");
	return 0;
}

static int fill_latency(const struct ps_cfg_node *n, const struct cond_config *cc,
			struct condition *c, struct ps_cfg_error *err)
{
	int rc;

	if (parse_double(cc->quantile, &c->quantile) || c->quantile <= 0 || c->quantile >= 1)
		return ps_cfg_errorf(
			err, ps_cfg_node_get(n, "quantile"),
			"alerts: quantile: expected a number between 0 and 1, got '%s'",
			cc->quantile);
	if (!cc->above)
		return ps_cfg_errorf(err, n, "alerts: latency needs above (a duration like 0.5s)");
	rc = parse_threshold(n, "above", cc->above, true, &c->threshold, err);
	if (rc)
		return rc;
	c->resolve = c->threshold * (1 - DEFAULT_HYSTERESIS);
	if (cc->resolve_below) {
		rc = parse_threshold(n, "resolve_below", cc->resolve_below, true, &c->resolve, err);
		if (rc)
			return rc;
	}
	snprintf(c->name, sizeof(c->name), "latency_p%g", c->quantile * 100);
	return 0;
}

static int fill_rate(const struct ps_cfg_node *n, const struct cond_config *cc, struct condition *c,
		     struct ps_cfg_error *err)
{
	const char *wrong;
	int rc;

	if (!!cc->above == !!cc->below)
		return ps_cfg_errorf(err, n, "alerts: rate needs exactly one of above, below");
	c->below = cc->below != NULL;
	wrong = c->below ? "resolve_below" : "resolve_above";
	if (c->below ? cc->resolve_below != NULL : cc->resolve_above != NULL)
		return ps_cfg_errorf(err, ps_cfg_node_get(n, wrong),
				     "alerts: %s does not go with %s", wrong,
				     c->below ? "below" : "above");
	rc = parse_threshold(n, c->below ? "below" : "above", c->below ? cc->below : cc->above,
			     false, &c->threshold, err);
	if (rc)
		return rc;
	c->resolve = c->threshold * (c->below ? 1 + DEFAULT_HYSTERESIS : 1 - DEFAULT_HYSTERESIS);
	if (c->below && cc->resolve_above)
		rc = parse_threshold(n, "resolve_above", cc->resolve_above, false, &c->resolve,
				     err);
	else if (!c->below && cc->resolve_below)
		rc = parse_threshold(n, "resolve_below", cc->resolve_below, false, &c->resolve,
				     err);
	snprintf(c->name, sizeof(c->name), "rate");
	return rc;
}

/* "cpu, cpu_delay or oom_kills": the metric names of p, for messages. */
static void metric_names(const struct protocol *p, char *buf, size_t size)
{
	size_t used = 0, n = 0;

	buf[0] = '\0';
	while (p->metrics[n].name)
		n++;
	for (size_t i = 0; i < n && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%s",
					 i == 0 ? "" : i + 1 == n ? " or " : ", ",
					 p->metrics[i].name);
}

/*
 * metric names the counter a rate rule reads. Protocols without sources
 * (resources) take rate rules only, and need it; others (kafka) may name one
 * instead of counting operations.
 */
static int fill_metric(const struct ps_cfg_node *n, const struct protocol *p,
		       const struct cond_config *cc, struct condition *c, struct ps_cfg_error *err)
{
	bool required = p->metrics && p->n_sources == 0;
	char names[128];

	if (!p->metrics) {
		if (cc->metric)
			return ps_cfg_errorf(err, ps_cfg_node_get(n, "metric"),
					     "alerts: metric only goes with protocols resources "
					     "and kafka");
		return 0;
	}
	metric_names(p, names, sizeof(names));
	if (required && c->kind != COND_RATE)
		return ps_cfg_errorf(err, n, "alerts: %s rules take a rate condition only",
				     p->name);
	if (!cc->metric) {
		if (required)
			return ps_cfg_errorf(err, n, "alerts: %s rate needs metric (%s)", p->name,
					     names);
		return 0;
	}
	if (c->kind != COND_RATE)
		return ps_cfg_errorf(err, ps_cfg_node_get(n, "metric"),
				     "alerts: metric only goes with a rate condition");
	for (const struct rate_metric *m = p->metrics; m->name; m++)
		if (strcmp(m->name, cc->metric) == 0) {
			c->family = m->family;
			return 0;
		}
	return ps_cfg_errorf(err, ps_cfg_node_get(n, "metric"),
			     "alerts: metric: expected %s, got '%s'", names, cc->metric);
}

static int parse_condition(const struct ps_cfg_node *item, const struct protocol *p,
			   struct condition *c, struct ps_cfg_error *err)
{
	const struct ps_cfg_node *n = NULL;
	struct cond_config cc = { 0 };
	int found = -1, rc;

	for (size_t k = 0; k < ps_cfg_node_len(item); k++) {
		const char *key = ps_cfg_node_key_at(item, k);
		int i = condition_index(key);

		if (i < 0)
			continue;
		if (found >= 0)
			return ps_cfg_errorf(err, ps_cfg_node_at(item, k),
					     "alerts: a rule has exactly one condition; "
					     "%s and %s are both set",
					     condition_names[found], key);
		found = i;
		n = ps_cfg_node_at(item, k);
	}
	if (found < 0)
		return ps_cfg_errorf(
			err, item,
			"alerts: a rule needs one condition: error_ratio, latency or rate");
	rc = ps_cfg_map_parse(ps_cfg_node_kind(n) == PS_CFG_MAP ? n : NULL, condition_keys[found],
			      NULL, &cc, err);
	if (rc)
		return rc;
	c->kind = (enum cond_kind)found;
	c->min_requests = cc.min_requests;
	if (c->kind == COND_ERROR_RATIO)
		rc = fill_error_ratio(n, &cc, c, err);
	else if (c->kind == COND_LATENCY)
		rc = fill_latency(n, &cc, c, err);
	else
		rc = fill_rate(n, &cc, c, err);
	if (!rc)
		rc = check_resolve_side(n, c, err);
	if (!rc)
		rc = fill_metric(n, p, &cc, c, err);
	ps_cfg_map_free(condition_keys[found], &cc);
	return rc;
}

static const struct protocol *find_protocol(const char *name)
{
	for (size_t i = 0; i < N_PROTOCOLS; i++)
		if (strcmp(protocols[i].name, name) == 0)
			return &protocols[i];
	return NULL;
}

static int label_error(const struct ps_cfg_node *at, const char *what, const char *label,
		       const struct protocol *p, struct ps_cfg_error *err)
{
	char known[256] = "";
	size_t used = 0;

	for (const char *const *l = p->labels; *l && used < sizeof(known); l++)
		used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s",
					 used ? ", " : "", *l);
	return ps_cfg_errorf(err, at, "alerts: %s: '%s' is not a label of %s rules (known: %s)",
			     what, label, p->name, known);
}

static int check_labels(const struct ps_cfg_node *item, const struct rule *r,
			struct ps_cfg_error *err)
{
	const struct ps_cfg_node *where = ps_cfg_node_get(item, "where");
	const struct ps_cfg_node *by = ps_cfg_node_get(item, "by");

	for (size_t i = 0; i < r->where.n; i++)
		if (!in_list(r->proto->labels, r->where.keys[i]))
			return label_error(ps_cfg_node_get(where, r->where.keys[i]), "where",
					   r->where.keys[i], r->proto, err);
	for (size_t i = 0; i < r->by.n; i++) {
		if (!in_list(r->proto->labels, r->by.v[i]))
			return label_error(ps_cfg_node_at(by, i), "by", r->by.v[i], r->proto, err);
		for (size_t j = 0; j < i; j++)
			if (strcmp(r->by.v[i], r->by.v[j]) == 0)
				return ps_cfg_errorf(err, ps_cfg_node_at(by, i),
						     "alerts: by: '%s' is listed twice",
						     r->by.v[i]);
	}
	return 0;
}

static int default_by(const struct protocol *p, struct ps_strlist *by)
{
	static const char *const service_only[] = { "service_name", NULL };
	const char *const *labels = p && p->default_by ? p->default_by : service_only;
	size_t n = 0;

	while (labels[n])
		n++;
	by->v = calloc(n, sizeof(*by->v));
	if (!by->v)
		return -ENOMEM;
	for (by->n = 0; by->n < n; by->n++) {
		by->v[by->n] = strdup(labels[by->n]);
		if (!by->v[by->n])
			return -ENOMEM; /* rule_free frees what was copied */
	}
	return 0;
}

/* Moves what the rule keeps out of rc into r; rc keeps the rest for ps_cfg_map_free. */
static int take_rule_config(struct rule_config *rc, struct rule *r)
{
	r->name = rc->name;
	rc->name = NULL;
	r->proto = find_protocol(rc->protocol);
	r->where = rc->where;
	memset(&rc->where, 0, sizeof(rc->where));
	r->by = rc->by;
	memset(&rc->by, 0, sizeof(rc->by));
	r->window_ns = rc->window_ms * NSEC_PER_MSEC;
	r->for_ns = rc->for_ms * NSEC_PER_MSEC;
	r->repeat_ns = rc->repeat_ms * NSEC_PER_MSEC;
	return r->by.n ? 0 : default_by(r->proto, &r->by);
}

static int check_rule_config(const struct ps_cfg_node *item, const struct rule_config *rc,
			     struct ps_cfg_error *err)
{
	const struct ps_cfg_node *name = ps_cfg_node_get(item, "name");

	if (!rc->name)
		return ps_cfg_errorf(err, name ? name : item, "alerts: every rule needs a name");
	if (!valid_rule_name(rc->name))
		return ps_cfg_errorf(
			err, name, "alerts: name '%s' may only hold letters, digits, '_', '.', '-'",
			rc->name);
	if (!rc->protocol)
		return ps_cfg_errorf(err, item,
				     "alerts: %s: protocol is required (http, db, tcp, resources, "
				     "kafka)",
				     rc->name);
	if (ps_cfg_node_get(item, "by") && rc->by.n == 0)
		return ps_cfg_errorf(err, ps_cfg_node_get(item, "by"),
				     "alerts: by: needs at least one label");
	if (rc->window_ms == 0)
		return ps_cfg_errorf(err, ps_cfg_node_get(item, "window"),
				     "alerts: window: must be longer than 0");
	return 0;
}

static int parse_rule(const struct ps_cfg_node *item, struct rule *r, struct ps_cfg_error *err)
{
	struct rule_config rc;
	int rv;

	if (ps_cfg_node_kind(item) != PS_CFG_MAP)
		return ps_cfg_errorf(err, item,
				     "alerts: each rule is a map (name, protocol, "
				     "a condition, window, ...)");
	rv = ps_cfg_map_parse(item, rule_keys, NULL, &rc, err);
	if (rv)
		return rv;
	rv = check_rule_config(item, &rc, err);
	if (!rv)
		rv = take_rule_config(&rc, r);
	if (!rv)
		rv = check_labels(item, r, err);
	if (!rv)
		rv = parse_condition(item, r->proto, &r->cond, err);
	ps_cfg_map_free(rule_keys, &rc);
	if (rv == -ENOMEM && !*err->msg)
		ps_cfg_errorf(err, item, "alerts: out of memory");
	return rv;
}

static int check_unique(const struct ps_alert_rules *rules, const struct ps_cfg_node *item,
			struct ps_cfg_error *err)
{
	const struct rule *last = &rules->v[rules->n - 1];

	for (size_t i = 0; i + 1 < rules->n; i++)
		if (strcmp(rules->v[i].name, last->name) == 0)
			return ps_cfg_errorf(err, ps_cfg_node_get(item, "name"),
					     "alerts: a rule named '%s' already exists",
					     last->name);
	return 0;
}

int ps_alerts_parse(const struct ps_cfg_node *seq, struct ps_alert_rules **out,
		    struct ps_cfg_error *err)
{
	struct ps_alert_rules *rules;
	size_t n;

	*out = NULL;
	err->msg[0] = '\0';
	if (!seq || (ps_cfg_node_kind(seq) == PS_CFG_SCALAR && !*ps_cfg_node_scalar(seq)))
		return 0;
	if (ps_cfg_node_kind(seq) != PS_CFG_SEQ)
		return ps_cfg_errorf(err, seq, "alerts: expected a list of rules");
	n = ps_cfg_node_len(seq);
	if (n == 0)
		return 0;
	rules = calloc(1, sizeof(*rules));
	if (rules)
		rules->v = calloc(n, sizeof(*rules->v));
	if (!rules || !rules->v) {
		free(rules);
		return ps_cfg_errorf(err, seq, "alerts: out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		const struct ps_cfg_node *item = ps_cfg_node_at(seq, i);
		int rc;

		rules->n++;
		rc = parse_rule(item, &rules->v[i], err);
		if (!rc)
			rc = check_unique(rules, item, err);
		if (rc) {
			ps_alerts_free(rules);
			return rc;
		}
	}
	*out = rules;
	return 0;
}

/* ---- collecting what the series gained ----------------------------------------------------- */

static ssize_t label_index(const struct ps_family *f, const char *label)
{
	for (size_t i = 0; i < f->n_labels; i++)
		if (strcmp(f->labels[i], label) == 0)
			return (ssize_t)i;
	return -1;
}

static const struct ps_family *find_family(const struct ps_registry *reg, const char *name)
{
	for (size_t i = 0; reg && i < reg->n_families; i++)
		if (strcmp(reg->families[i]->name, name) == 0)
			return reg->families[i];
	return NULL;
}

/* What one family looks like to one rule, resolved once per flush. */
struct family_view {
	const struct ps_family *f;
	enum source_role role;
	bool latency;
	ssize_t status;	   /* label index, or -1 */
	ssize_t op;	   /* label index of the protocol's op_label, or -1 */
	ssize_t where[16]; /* label index per where entry */
	ssize_t by[16];	   /* label index per by entry, -1: "" */
};

#define VIEW_MAX_LABELS (sizeof(((struct family_view *)0)->where) / sizeof(ssize_t))

/* false when a where label is missing: no series of f can match. */
static bool view_init(struct family_view *v, const struct rule *r, const struct ps_family *f)
{
	v->f = f;
	v->status = r->proto->status_label ? label_index(f, r->proto->status_label) : -1;
	v->op = r->proto->op_label ? label_index(f, r->proto->op_label) : -1;
	if (r->where.n > VIEW_MAX_LABELS || r->by.n > VIEW_MAX_LABELS)
		return false;
	for (size_t i = 0; i < r->where.n; i++)
		if ((v->where[i] = label_index(f, r->where.keys[i])) < 0)
			return false;
	for (size_t i = 0; i < r->by.n; i++)
		v->by[i] = label_index(f, r->by.v[i]);
	return true;
}

static bool series_matches(const struct rule *r, const struct family_view *v,
			   const struct ps_series *s)
{
	for (size_t i = 0; i < r->where.n; i++)
		if (strcmp(s->values[v->where[i]], r->where.values[i]) != 0)
			return false;
	return true;
}

static int key_reserve(struct ps_alert_rules *rules, size_t need)
{
	char *grown;

	if (need <= rules->key_cap)
		return 0;
	grown = realloc(rules->key, need);
	if (!grown)
		return -ENOMEM;
	rules->key = grown;
	rules->key_cap = need;
	return 0;
}

/* "service_name=checkout http_route=/cart" into rules->key; -E2BIG past MAX_GROUP_KEY. */
static int build_key(struct ps_alert_rules *rules, const struct rule *r,
		     const struct family_view *v, const struct ps_series *s)
{
	size_t len = 0;

	for (size_t i = 0; i < r->by.n; i++) {
		const char *value = v->by[i] >= 0 ? s->values[v->by[i]] : "";

		len += strlen(r->by.v[i]) + strlen(value) + 2;
	}
	if (len > MAX_GROUP_KEY)
		return -E2BIG;
	if (key_reserve(rules, len + 1))
		return -ENOMEM;
	len = 0;
	rules->key[0] = '\0';
	for (size_t i = 0; i < r->by.n; i++) {
		const char *value = v->by[i] >= 0 ? s->values[v->by[i]] : "";

		len += (size_t)sprintf(rules->key + len, "%s%s=%s", i ? " " : "", r->by.v[i],
				       value);
	}
	return 0;
}

static void add_gains(const struct rule *r, const struct family_view *v, const struct ps_series *s,
		      struct group *g)
{
	const struct ps_family *f = v->f;

	if (v->latency) {
		if (f->type != PS_METRIC_HISTOGRAM || r->n_buckets != LAT_SLOTS)
			return;
		g->raw_now[0] += (double)s->hires.zero;
		ps_hires_add_to(&s->hires, g->raw_now + 1, LAT_LO, LAT_N, LAT_SHIFT);
		g->count_gain += count_gain(s->count, s->flushed_count);
		return;
	}
	switch (v->role) {
	case SRC_REQUESTS:
		g->inc[SAMPLE_REQUESTS] += counter_gain(s->value, s->flushed_value);
		break;
	case SRC_FAILURES: {
		double gain = counter_gain(s->value, s->flushed_value);

		g->inc[SAMPLE_REQUESTS] += gain;
		g->inc[SAMPLE_ERRORS] += gain;
		break;
	}
	case SRC_EXCHANGES: {
		double gain = count_gain(s->count, s->flushed_count);

		g->inc[SAMPLE_REQUESTS] += gain;
		if (v->status >= 0 &&
		    r->proto->is_error(s->values[v->status], v->op >= 0 ? s->values[v->op] : NULL))
			g->inc[SAMPLE_ERRORS] += gain;
		break;
	}
	}
}

static void collect_family(struct ps_alert_rules *rules, struct rule *r,
			   const struct family_view *v, uint64_t now)
{
	for (size_t i = 0; i < v->f->n_series; i++) {
		const struct ps_series *s = v->f->series[i];
		struct group *g;
		int rc;

		if (!series_matches(r, v, s))
			continue;
		rc = build_key(rules, r, v, s);
		if (rc) {
			if (rc == -E2BIG && !r->key_logged)
				ps_warn(SUBSYS,
					"%s: a series group name is over %d bytes; "
					"such series are skipped",
					r->name, MAX_GROUP_KEY);
			r->key_logged = r->key_logged || rc == -E2BIG;
			continue;
		}
		g = group_get(r, rules->key, now);
		if (!g)
			continue;
		g->seen = true;
		add_gains(r, v, s, g);
	}
}

/*
 * Bucket gains come from the group's raw sums; they are only trusted when they
 * add up to the exact count gain (no series vanished or reset in the group at
 * this flush). Otherwise this flush's latency is unknown and counts as none.
 */
static void fold_bucket_gains(const struct rule *r, struct group *g)
{
	double sum = 0;
	bool sane = true;

	for (size_t b = 0; b < r->n_buckets; b++) {
		double d = g->raw_now[b] - g->raw_prev[b];

		sane = sane && d >= 0;
		sum += d;
	}
	if (sane && sum == g->count_gain)
		for (size_t b = 0; b < r->n_buckets; b++)
			g->inc[SAMPLE_BUCKETS + b] = g->raw_now[b] - g->raw_prev[b];
	else
		ps_debug(SUBSYS,
			 "%s: %s: a series vanished or reset; latency of this flush skipped",
			 r->name, g->key);
	memcpy(g->raw_prev, g->raw_now, r->n_buckets * sizeof(*g->raw_prev));
}

/* ---- measuring ----------------------------------------------------------------------------- */

enum data {
	DATA_ENOUGH,
	DATA_THIN, /* below min_requests: nothing changes */
	DATA_NONE, /* no requests at all: nothing can be wrong */
};

static enum data measure_latency(struct rule *r, const double *d, double *value)
{
	uint64_t count = 0;

	for (size_t b = 0; b < r->n_buckets; b++) {
		r->scratch[b] = (uint64_t)d[SAMPLE_BUCKETS + b];
		count += r->scratch[b];
	}
	*value = NAN;
	if (count == 0)
		return DATA_NONE;
	if (count < r->cond.min_requests)
		return DATA_THIN;
	*value = ps_hires_quantile(r->scratch + 1, LAT_LO, r->n_buckets - 1, r->scratch[0],
				   LAT_SHIFT, r->cond.quantile);
	return DATA_ENOUGH;
}

/* The condition's value over the window: delta d over elapsed_ns. */
static enum data measure(struct rule *r, const double *d, uint64_t elapsed_ns, double *value)
{
	double requests = d[SAMPLE_REQUESTS];

	switch (r->cond.kind) {
	case COND_ERROR_RATIO:
		*value = 0;
		if (requests <= 0)
			return DATA_NONE;
		if (requests < (double)r->cond.min_requests)
			return DATA_THIN;
		*value = fmin(1, d[SAMPLE_ERRORS] / requests);
		return DATA_ENOUGH;
	case COND_LATENCY:
		return measure_latency(r, d, value);
	case COND_RATE:
		*value = NAN;
		if (elapsed_ns == 0)
			return DATA_THIN;
		*value = requests / ((double)elapsed_ns / NSEC_PER_SEC);
		return DATA_ENOUGH;
	}
	return DATA_THIN;
}

static bool condition_holds(const struct condition *c, double v)
{
	return c->below ? v < c->threshold : v > c->threshold;
}

/* Resolving at or past `resolve` (not strictly) lets resolve == threshold mean "no gap". */
static bool resolve_holds(const struct condition *c, double v)
{
	return c->below ? v >= c->resolve : v <= c->resolve;
}

/* ---- state machine ------------------------------------------------------------------------- */

static const char *const state_names[] = { "FIRING", "REPEAT", "RESOLVED" };

static void notify(const struct rule *r, const struct group *g, enum ps_alert_state state,
		   double value, uint64_t now)
{
	bool resolved = state == PS_ALERT_RESOLVED;
	bool says_above = resolved ? r->cond.below : !r->cond.below;
	struct ps_alert_notice notice = {
		.rule = r->name,
		.state = state,
		.protocol = r->proto->name,
		.group = g->key,
		.condition = r->cond.name,
		.comparison = says_above ? "above" : "below",
		.value = value,
		.threshold = resolved ? r->cond.resolve : r->cond.threshold,
		.window_ms = r->window_ns / NSEC_PER_MSEC,
		.firing_since_unix_ns = g->firing_since,
		.unix_ns = now,
	};
	struct ps_event ev = { .type = PS_EVENT_ALERT, .plugin = "core", .alert = &notice };

	ps_log(state == PS_ALERT_REPEAT ? PS_LOG_DEBUG : PS_LOG_INFO, SUBSYS,
	       "%s %s: %s %s: %s %g (%s%s %g)", r->name, state_names[state], g->key, r->proto->name,
	       r->cond.name, value, resolved ? "resolves " : "", notice.comparison,
	       notice.threshold);
	ps_event_emit(&ev);
}

static void fire(const struct rule *r, struct group *g, uint64_t now)
{
	g->state = GROUP_FIRING;
	g->firing_since = now;
	g->last_sent = now;
	g->next_repeat = now + r->repeat_ns;
	notify(r, g, PS_ALERT_FIRING, g->value, now);
}

static void resolve(const struct rule *r, struct group *g, double value, uint64_t now)
{
	notify(r, g, PS_ALERT_RESOLVED, value, now);
	g->state = GROUP_INACTIVE;
}

/* Repeats keep to firing_since + k * repeat; missed slots are skipped, not bunched. */
static void maybe_repeat(const struct rule *r, struct group *g, uint64_t now)
{
	if (!r->repeat_ns || !reached(now, g->next_repeat))
		return;
	while (reached(now, g->next_repeat))
		g->next_repeat += r->repeat_ns;
	g->last_sent = now;
	notify(r, g, PS_ALERT_REPEAT, g->value, now);
}

static void step_firing(const struct rule *r, struct group *g, enum data data, double value,
			uint64_t now)
{
	/* No traffic means nothing fails and nothing is slow; for rate it is just 0/s. */
	if (data == DATA_NONE)
		resolve(r, g, value, now);
	else if (data == DATA_ENOUGH && resolve_holds(&r->cond, value))
		resolve(r, g, value, now);
	else
		maybe_repeat(r, g, now);
}

static void step(const struct rule *r, struct group *g, enum data data, double value, uint64_t now)
{
	bool holds = data == DATA_ENOUGH && condition_holds(&r->cond, value);

	if (data == DATA_ENOUGH)
		g->value = value;
	switch (g->state) {
	case GROUP_INACTIVE:
		if (!holds)
			return;
		g->state = GROUP_PENDING;
		g->pending_since = now;
		/* `for: 0` fires at once */
		__attribute__((fallthrough));
	case GROUP_PENDING:
		if (data != DATA_THIN && !holds)
			g->state = GROUP_INACTIVE; /* silently: it never fired */
		else if (holds && reached(now, g->pending_since + r->for_ns))
			fire(r, g, now);
		return;
	case GROUP_FIRING:
		step_firing(r, g, data, value, now);
		return;
	}
}

/* ---- evaluation ---------------------------------------------------------------------------- */

/* Keeps one snapshot at or before now - window (the baseline) and those after it. */
static void ring_prune(const struct rule *r, struct group *g, uint64_t now)
{
	uint64_t start = now > r->window_ns ? now - r->window_ns : 0;

	while (g->ring_len >= 2 && g->ring_t[1] <= start + CLOCK_SLACK_NS)
		ring_drop_oldest(g, r->width);
}

static void group_update(struct rule *r, struct group *g, uint64_t now)
{
	uint64_t spacing = r->window_ns / RING_SLOTS;
	double delta[r->width], value;
	const double *base;
	enum data data;

	if (r->cond.kind == COND_LATENCY)
		fold_bucket_gains(r, g);
	for (size_t i = 0; i < r->width; i++)
		g->acc[i] += g->inc[i];
	if (g->starts_now) {
		memcpy(g->ring_v, g->acc, r->width * sizeof(*g->acc));
		g->starts_now = false;
	}
	if (now >= g->ring_t[g->ring_len - 1] + spacing)
		ring_push(g, r->width, now, g->acc);
	ring_prune(r, g, now);
	base = g->ring_v;
	for (size_t i = 0; i < r->width; i++)
		delta[i] = g->acc[i] - base[i];
	/* A wall clock stepped back measures nothing until it catches up. */
	data = measure(r, delta, now > g->ring_t[0] ? now - g->ring_t[0] : 0, &value);
	step(r, g, data, value, now);
}

static void group_reset_flush(const struct rule *r, struct group *g)
{
	g->seen = false;
	g->count_gain = 0;
	memset(g->inc, 0, r->width * sizeof(*g->inc));
	memset(g->raw_now, 0, r->n_buckets * sizeof(*g->raw_now));
}

/* Firing groups of a rule that changed shape at reload: they resolve once, then go. */
static void resolve_orphans(struct rule *r, uint64_t now)
{
	for (size_t i = 0; i < r->n_orphans; i++) {
		resolve(r, r->orphans[i], NAN, now);
		group_free(r->orphans[i]);
	}
	r->n_orphans = 0;
}

static void drop_vanished(struct rule *r, uint64_t now)
{
	for (size_t i = r->n_groups; i-- > 0;) {
		struct group *g = r->groups[i];

		if (g->seen)
			continue;
		if (g->state == GROUP_FIRING)
			resolve(r, g, NAN, now);
		group_remove(r, g);
	}
	if (r->n_groups < MAX_GROUPS)
		r->cap_logged = false;
}

/* Latency rules take their layout once their histogram exists. */
static int rule_set_layout(struct rule *r, const struct ps_family *lat, uint64_t now)
{
	size_t n_buckets = r->cond.kind == COND_LATENCY && lat ? LAT_SLOTS : 0;
	uint64_t *scratch;

	if (r->width && n_buckets == r->n_buckets)
		return 0;
	for (size_t i = 0; i < r->n_groups; i++)
		r->groups[i]->seen = false;
	drop_vanished(r, now);
	scratch = calloc(n_buckets + 1, sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	free(r->scratch);
	r->scratch = scratch;
	r->n_buckets = n_buckets;
	r->width = SAMPLE_BUCKETS + n_buckets;
	return 0;
}

static void rule_collect(struct ps_alert_rules *rules, struct rule *r,
			 const struct ps_registry *reg, const struct ps_family *lat, uint64_t now)
{
	struct family_view v = { 0 };

	if (r->cond.kind == COND_LATENCY) {
		v.latency = true;
		if (lat && view_init(&v, r, lat))
			collect_family(rules, r, &v, now);
		return;
	}
	if (r->cond.family) {
		const struct ps_family *f = find_family(reg, r->cond.family);

		v.role = SRC_REQUESTS;
		if (f && view_init(&v, r, f))
			collect_family(rules, r, &v, now);
		return;
	}
	for (size_t i = 0; i < r->proto->n_sources; i++) {
		const struct ps_family *f = find_family(reg, r->proto->sources[i].family);

		v.role = r->proto->sources[i].role;
		if (f && view_init(&v, r, f))
			collect_family(rules, r, &v, now);
	}
}

static size_t rule_evaluate(struct ps_alert_rules *rules, struct rule *r,
			    const struct ps_registry *reg, uint64_t now)
{
	const struct ps_family *lat =
		r->proto->latency_family ? find_family(reg, r->proto->latency_family) : NULL;
	size_t firing = 0;

	resolve_orphans(r, now);
	if (rule_set_layout(r, lat, now))
		return 0;
	for (size_t i = 0; i < r->n_groups; i++)
		group_reset_flush(r, r->groups[i]);
	rule_collect(rules, r, reg, lat, now);
	drop_vanished(r, now);
	for (size_t i = 0; i < r->n_groups; i++) {
		group_update(r, r->groups[i], now);
		firing += r->groups[i]->state == GROUP_FIRING;
	}
	r->last_eval_ns = now;
	return firing;
}

static struct ps_metric *firing_metric(struct ps_registry *reg)
{
	static const char *const labels[] = { "service_name", "alert", NULL };
	const struct ps_metric_desc desc = {
		.name = FIRING_METRIC,
		.help = "Series groups for which the alert rule is firing",
		.type = PS_METRIC_GAUGE,
		.labels = labels,
	};

	return ps_registry_register(reg, &desc);
}

static bool has_rule(const struct ps_alert_rules *rules, const char *name)
{
	for (size_t i = 0; rules && i < rules->n; i++)
		if (strcmp(rules->v[i].name, name) == 0)
			return true;
	return false;
}

/* Rules removed by a reload take their gauge with them. */
static void drop_stale_gauges(const struct ps_alert_rules *rules, struct ps_registry *reg)
{
	struct ps_family *f = (struct ps_family *)find_family(reg, FIRING_METRIC);
	ssize_t alert = f ? label_index(f, "alert") : -1;

	if (alert < 0)
		return;
	for (size_t i = f->n_series; i-- > 0;) {
		struct ps_series *s = f->series[i];

		if (!has_rule(rules, s->values[alert]))
			ps_metric_remove((struct ps_metric *)f, (const char *const *)s->values);
	}
}

void ps_alerts_start(struct ps_alert_rules *rules, uint64_t now_unix_ns)
{
	for (size_t i = 0; rules && i < rules->n; i++)
		rules->v[i].last_eval_ns = now_unix_ns;
}

void ps_alerts_evaluate(struct ps_alert_rules *rules, struct ps_registry *reg, uint64_t now_unix_ns)
{
	struct ps_metric *gauge;

	if (!reg)
		return;
	drop_stale_gauges(rules, reg);
	if (!rules || rules->n == 0)
		return;
	gauge = firing_metric(reg);
	for (size_t i = 0; i < rules->n; i++) {
		struct rule *r = &rules->v[i];
		const char *values[] = { SELF_SERVICE, r->name };
		size_t firing = rule_evaluate(rules, r, reg, now_unix_ns);

		if (gauge)
			ps_metric_set(gauge, values, (double)firing);
	}
}

/* ---- reload -------------------------------------------------------------------------------- */

static bool same_strmap(const struct ps_strmap *a, const struct ps_strmap *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->keys[i], b->keys[i]) || strcmp(a->values[i], b->values[i]))
			return false;
	return true;
}

static bool same_strlist(const struct ps_strlist *a, const struct ps_strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]))
			return false;
	return true;
}

/* Same series, same groups, same samples: the state carries over as it is. */
static bool same_shape(const struct rule *a, const struct rule *b)
{
	return a->proto == b->proto && a->cond.kind == b->cond.kind &&
	       a->cond.quantile == b->cond.quantile && same_strmap(&a->where, &b->where) &&
	       same_strlist(&a->by, &b->by);
}

static struct group *group_clone(const struct group *src, size_t width, size_t n_buckets)
{
	struct group *g = group_new(src->key, width, n_buckets);

	if (!g)
		return NULL;
	memcpy(g->acc, src->acc, width * sizeof(*g->acc));
	memcpy(g->raw_prev, src->raw_prev, n_buckets * sizeof(*g->raw_prev));
	g->ring_t = malloc(src->ring_cap * sizeof(*g->ring_t));
	g->ring_v = malloc(src->ring_cap * width * sizeof(*g->ring_v));
	if (!g->ring_t || !g->ring_v) {
		group_free(g);
		return NULL;
	}
	memcpy(g->ring_t, src->ring_t, src->ring_len * sizeof(*g->ring_t));
	memcpy(g->ring_v, src->ring_v, src->ring_len * width * sizeof(*g->ring_v));
	g->ring_len = src->ring_len;
	g->ring_cap = src->ring_cap;
	g->state = src->state;
	g->pending_since = src->pending_since;
	g->firing_since = src->firing_since;
	g->last_sent = src->last_sent;
	g->next_repeat = src->next_repeat;
	g->value = src->value;
	return g;
}

static int adopt_groups(struct rule *r, const struct rule *old)
{
	r->width = old->width;
	r->n_buckets = old->n_buckets;
	r->scratch = calloc(r->n_buckets + 1, sizeof(*r->scratch));
	if (!r->scratch)
		return -ENOMEM;
	for (size_t i = 0; i < old->n_groups; i++) {
		struct group *g = group_clone(old->groups[i], r->width, r->n_buckets);

		if (!g || group_insert(r, g)) {
			group_free(g);
			return -ENOMEM;
		}
		/* A changed repeat applies from the last message on. */
		if (r->repeat_ns != old->repeat_ns)
			g->next_repeat = g->last_sent + r->repeat_ns;
	}
	return 0;
}

static int adopt_orphans(struct rule *r, const struct rule *old)
{
	size_t n = 0;

	for (size_t i = 0; i < old->n_groups; i++)
		n += old->groups[i]->state == GROUP_FIRING;
	if (!n)
		return 0;
	r->orphans = calloc(n, sizeof(*r->orphans));
	if (!r->orphans)
		return -ENOMEM;
	for (size_t i = 0; i < old->n_groups; i++) {
		const struct group *src = old->groups[i];
		struct group *g;

		if (src->state != GROUP_FIRING)
			continue;
		g = group_new(src->key, 0, 0);
		if (!g)
			return -ENOMEM;
		g->state = GROUP_FIRING;
		g->firing_since = src->firing_since;
		r->orphans[r->n_orphans++] = g;
	}
	return 0;
}

static const struct rule *find_rule(const struct ps_alert_rules *rules, const char *name)
{
	for (size_t i = 0; rules && i < rules->n; i++)
		if (strcmp(rules->v[i].name, name) == 0)
			return &rules->v[i];
	return NULL;
}

void ps_alerts_adopt_state(struct ps_alert_rules *fresh, const struct ps_alert_rules *old)
{
	for (size_t i = 0; fresh && i < fresh->n; i++) {
		struct rule *r = &fresh->v[i];
		const struct rule *o = find_rule(old, r->name);
		int rc;

		if (!o)
			continue;
		rule_clear_state(r);
		r->last_eval_ns = o->last_eval_ns;
		rc = same_shape(r, o) ? adopt_groups(r, o) : adopt_orphans(r, o);
		if (rc) {
			ps_error(SUBSYS,
				 "%s: out of memory keeping its state across the reload; "
				 "it starts afresh",
				 r->name);
			rule_clear_state(r);
			r->width = r->n_buckets = 0;
		}
	}
}
