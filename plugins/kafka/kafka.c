/*
 * kafka: messages produced and consumed per topic, errors, latency and consumer
 * lag, from the core socket capture (periscope/capture.h).
 *
 * The capture hands over every connection on the configured ports; per
 * connection a decoder stream (kafka_proto.h) frames both directions and pairs
 * requests with responses. Each exchange becomes, on the client side, one
 * duration observation per topic it touched, the records sent (Produce) or
 * delivered (Fetch), and the lag of each fetched partition; on the broker side
 * (a broker process on this host), the server duration only. Message keys and
 * values are never read past their lengths.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <periscope/capture.h>
#include <periscope/plugin.h>

#include "kafka_proto.h"

#define SUBSYS	       "kafka"
#define SYSTEM	       "kafka"
#define PID_GROUPS     1024 /* a power of two */
#define PID_GROUPS_TRY 8

struct kafka_config {
	struct ps_portlist ports;
	uint64_t capture_bytes;
};

/* A lag series a connection set: it goes when the connection does. */
struct lag_key {
	char topic[KAFKA_TOPIC_MAX + 1];
	int32_t partition;
	char group[KAFKA_GROUP_MAX];
};

struct conn {
	struct kafka_stream *stream;
	uint32_t pid;
	char comm[16];
	struct ps_endpoint local, remote;
	uint64_t id;	 /* the capture's connection id */
	uint32_t tid[2]; /* by enum kafka_dir: the thread that last moved bytes that way */
	uint32_t seq[2]; /* by enum ps_exchange_side: exchanges reported so far */
	struct lag_key *lags;
	size_t n_lags, lags_cap;
	uint64_t errors_seen; /* parse errors and desyncs already added to the counter */
};

/*
 * The consumer group of a process: a consumer's Fetch connections (to each
 * partition leader) are not the coordinator connection that names its group.
 * A process seen with two groups has none.
 */
struct pid_group {
	uint32_t pid;
	bool ambiguous;
	char group[KAFKA_GROUP_MAX];
};

struct kafka {
	struct ps_plugin *plugin;
	struct ps_capture_protocol proto;
	struct ps_capture_reg *reg;
	uint16_t *ports;
	size_t n_ports;
	uint32_t capture_bytes;
	struct kafka_topic_ids *ids;
	struct pid_group groups[PID_GROUPS];
	uint64_t exchanges, rejected;

	struct ps_metric *client_duration, *server_duration;
	struct ps_metric *sent, *consumed, *lag, *uncounted, *decode_errors;
};

/* What the decoder's callback needs. */
struct feed_ctx {
	struct kafka *st;
	struct conn *c;
};

/* ---- process groups ------------------------------------------------------------------------- */

static size_t pid_slot(uint32_t pid)
{
	return (pid * 2654435761u) & (PID_GROUPS - 1);
}

static void pid_group_learn(struct kafka *st, uint32_t pid, const char *group)
{
	size_t h = pid_slot(pid);
	struct pid_group *g = &st->groups[h];

	if (!group[0])
		return;
	for (size_t i = 0; i < PID_GROUPS_TRY; i++) {
		struct pid_group *c = &st->groups[(h + i) & (PID_GROUPS - 1)];

		if (c->pid == pid) {
			if (strcmp(c->group, group) != 0)
				c->ambiguous = true;
			return;
		}
		if (!c->pid) {
			g = c;
			break;
		}
	}
	g->pid = pid;
	g->ambiguous = false;
	snprintf(g->group, sizeof(g->group), "%s", group);
}

static const char *pid_group(const struct kafka *st, uint32_t pid)
{
	size_t h = pid_slot(pid);

	for (size_t i = 0; i < PID_GROUPS_TRY; i++) {
		const struct pid_group *c = &st->groups[(h + i) & (PID_GROUPS - 1)];

		if (c->pid == pid)
			return c->ambiguous ? "" : c->group;
		if (!c->pid)
			break;
	}
	return "";
}

/* ---- exchanges -> metrics -------------------------------------------------------------------- */

static const char *u32_str(char *buf, size_t len, uint32_t v)
{
	snprintf(buf, len, "%" PRIu32, v);
	return buf;
}

/* The error of a topic: its first partition error, else the exchange's. */
static int16_t topic_error(const struct kafka_exchange *ex, size_t t)
{
	for (size_t i = 0; i < ex->n_parts; i++)
		if (ex->parts[i].topic == t && ex->parts[i].error)
			return ex->parts[i].error;
	return ex->error;
}

static void observe_duration(struct kafka *st, const struct conn *c,
			     const struct kafka_exchange *ex, const char *service)
{
	bool server = ex->role == KAFKA_ROLE_SERVER;
	const struct ps_endpoint *broker = server ? &c->local : &c->remote;
	double seconds = 0;
	char addr[64], port[8];
	const char *values[] = {
		service,
		SYSTEM,
		kafka_operation_name(ex->api_key),
		"",
		kafka_error_name(ex->error),
		"",
		u32_str(port, sizeof(port), broker->port),
		NULL,
	};

	if (broker->family == AF_INET || broker->family == AF_INET6)
		values[5] = ps_endpoint_addr_str(broker, addr, sizeof(addr));
	if (ex->response_end_ns > ex->request_start_ns)
		seconds = (double)(ex->response_end_ns - ex->request_start_ns) / 1e9;
	if (!ex->n_topics) {
		ps_metric_observe(server ? st->server_duration : st->client_duration, values,
				  seconds);
		return;
	}
	for (size_t t = 0; t < ex->n_topics; t++) {
		values[3] = ex->topics[t].name;
		values[4] = kafka_error_name(topic_error(ex, t));
		ps_metric_observe(server ? st->server_duration : st->client_duration, values,
				  seconds);
	}
}

static void count_sent(struct kafka *st, const struct kafka_exchange *ex, const char *service)
{
	for (size_t i = 0; i < ex->n_parts; i++) {
		const struct kafka_partition *kp = &ex->parts[i];
		const char *values[] = { service, SYSTEM, ex->topics[kp->topic].name,
					 kafka_error_name(kp->error), NULL };

		if (kp->records)
			ps_metric_add(st->sent, values, (double)kp->records);
	}
}

static void lag_remember(struct conn *c, const char *topic, int32_t partition, const char *group)
{
	struct lag_key *k;

	for (size_t i = 0; i < c->n_lags; i++)
		if (c->lags[i].partition == partition && !strcmp(c->lags[i].topic, topic) &&
		    !strcmp(c->lags[i].group, group))
			return;
	if (c->n_lags == c->lags_cap) {
		size_t cap = c->lags_cap ? c->lags_cap * 2 : 4;

		k = realloc(c->lags, cap * sizeof(*k));
		if (!k)
			return;
		c->lags = k;
		c->lags_cap = cap;
	}
	k = &c->lags[c->n_lags++];
	snprintf(k->topic, sizeof(k->topic), "%s", topic);
	k->partition = partition;
	snprintf(k->group, sizeof(k->group), "%s", group);
}

static void count_consumed(struct kafka *st, struct conn *c, const struct kafka_exchange *ex,
			   const char *service, const char *group)
{
	for (size_t i = 0; i < ex->n_parts; i++) {
		const struct kafka_partition *kp = &ex->parts[i];
		const char *topic = ex->topics[kp->topic].name;
		char part[16];
		const char *values[] = { service, SYSTEM, topic, group, NULL };
		const char *lag_values[] = {
			service, SYSTEM,
			topic,	 u32_str(part, sizeof(part), (uint32_t)kp->partition),
			group,	 NULL,
		};

		if (!kp->answered || kp->error)
			continue;
		if (kp->records)
			ps_metric_add(st->consumed, values, (double)kp->records);
		if (kp->high_watermark < 0 || kp->next_offset < 0 || kp->partition < 0 || !topic[0])
			continue;
		ps_metric_set(st->lag, lag_values,
			      kp->high_watermark > kp->next_offset ?
				      (double)(kp->high_watermark - kp->next_offset) :
				      0);
		lag_remember(c, topic, kp->partition, group);
	}
}

static void count_uncounted(struct kafka *st, const struct kafka_exchange *ex, const char *service)
{
	uint64_t n = ex->uncounted;

	if (n) {
		const char *values[] = { service, SYSTEM, kafka_operation_name(ex->api_key), NULL };

		ps_metric_add(st->uncounted, values, (double)n);
	}
}

static void endpoint_copy(struct ps_endpoint *dst, const struct ps_endpoint *src)
{
	memcpy(dst, src, sizeof(*dst));
}

static void emit_exchange(struct conn *c, const struct kafka_exchange *ex,
			  const char *service)
{
	int16_t err = ex->error;
	struct ps_exchange x;
	struct ps_event ev = { .type = PS_EVENT_EXCHANGE, .plugin = SUBSYS, .exchange = &x };

	for (size_t i = 0; i < ex->n_parts && !err; i++)
		err = ex->parts[i].error;
	memset(&x, 0, sizeof(x));
	x.protocol = SUBSYS;
	x.side = ex->role == KAFKA_ROLE_SERVER ? PS_SIDE_SERVER : PS_SIDE_CLIENT;
	x.pid = c->pid;
	/* the thread that read (server) or wrote (client) the request: tracectx joins on it */
	x.tid = c->tid[x.side == PS_SIDE_SERVER ? KAFKA_DIR_IN : KAFKA_DIR_OUT];
	x.conn_id = c->id;
	x.seq = c->seq[x.side]++;
	x.service_name = service;
	endpoint_copy(&x.local, &c->local);
	endpoint_copy(&x.remote, &c->remote);
	x.start_unix_ns = ps_clock_mono_to_unix_ns(ex->request_start_ns);
	x.end_unix_ns = ps_clock_mono_to_unix_ns(ex->response_end_ns);
	x.operation = kafka_operation_name(ex->api_key);
	x.target = ex->n_topics ? ex->topics[0].name : "";
	x.status = err ? 1 : 0;
	x.error = err != 0;
	ps_event_emit(&ev);
}

static void on_exchange(const struct kafka_exchange *ex, void *arg)
{
	const struct feed_ctx *fc = arg;
	struct kafka *st = fc->st;
	struct conn *c = fc->c;
	const char *service = ps_proc_service_name(c->pid, c->comm[0] ? c->comm : NULL);
	const char *group;

	if (ex->role == KAFKA_ROLE_UNKNOWN)
		return;
	st->exchanges++;
	pid_group_learn(st, c->pid, ex->group);
	group = ex->group[0] ? ex->group : pid_group(st, c->pid);
	emit_exchange(c, ex, service);
	if (ex->answered)
		observe_duration(st, c, ex, service);
	if (ex->role != KAFKA_ROLE_CLIENT)
		return;
	count_uncounted(st, ex, service);
	if (ex->api_key == KAFKA_API_PRODUCE)
		count_sent(st, ex, service);
	else if (ex->api_key == KAFKA_API_FETCH)
		count_consumed(st, c, ex, service, group);
}

/* ---- capture callbacks ---------------------------------------------------------------------- */

static bool port_configured(const struct kafka *st, uint16_t port)
{
	for (size_t i = 0; i < st->n_ports; i++)
		if (st->ports[i] == port)
			return true;
	return false;
}

static void *on_conn_open(void *ctx, const struct ps_capture_conn *pc)
{
	struct kafka *st = ctx;
	enum kafka_role role = KAFKA_ROLE_UNKNOWN;
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	/* The broker's port at the far end: a client. At our end: the broker itself. */
	if (port_configured(st, pc->remote.port))
		role = KAFKA_ROLE_CLIENT;
	else if (port_configured(st, pc->local.port))
		role = KAFKA_ROLE_SERVER;
	c->stream = kafka_stream_new(role, st->ids);
	if (!c->stream) {
		free(c);
		return NULL;
	}
	c->pid = pc->pid;
	memcpy(c->comm, pc->comm, sizeof(c->comm));
	c->comm[sizeof(c->comm) - 1] = '\0';
	c->local = pc->local;
	c->remote = pc->remote;
	c->id = pc->id;
	c->tid[KAFKA_DIR_IN] = c->tid[KAFKA_DIR_OUT] = pc->pid;
	return c;
}

/* Malformed frames and lost framing since the last look, into periscope_decode_errors_total. */
static void count_decode_errors(struct kafka *st, struct conn *c)
{
	const char *values[] = { "periscoped", SUBSYS, NULL };
	struct kafka_stream_stats ks;
	uint64_t now;

	kafka_stream_get_stats(c->stream, &ks);
	now = ks.parse_errors + ks.desyncs;
	if (now > c->errors_seen)
		ps_metric_add(st->decode_errors, values, (double)(now - c->errors_seen));
	c->errors_seen = now;
}

static int on_conn_data(void *ctx, void *state, const struct ps_capture_conn *pc,
			const struct ps_capture_chunk *ch)
{
	struct kafka *st = ctx;
	struct conn *c = state;
	struct feed_ctx fc = { .st = st, .c = c };
	enum kafka_dir dir = ch->dir == PS_CAPTURE_OUT ? KAFKA_DIR_OUT : KAFKA_DIR_IN;
	int rc;

	(void)pc;
	c->tid[dir] = ch->tid;
	rc = kafka_stream_feed(c->stream, dir, ch->data, ch->len, ch->total, ch->ts_ns, on_exchange,
			       &fc);
	if (rc == -EPROTO) {
		st->rejected++;
		ps_debug(SUBSYS, "pid %u (%s): not Kafka, no longer followed", c->pid, c->comm);
	}
	return rc == -EPROTO ? rc : 0;
}

static void on_conn_close(void *ctx, void *state, const struct ps_capture_conn *pc, uint64_t ts_ns)
{
	struct kafka *st = ctx;
	struct conn *c = state;
	const char *service;

	(void)pc;
	if (!c)
		return;
	kafka_stream_close(c->stream, ts_ns);
	count_decode_errors(st, c);
	if (c->n_lags) {
		service = ps_proc_service_name(c->pid, c->comm[0] ? c->comm : NULL);
		for (size_t i = 0; i < c->n_lags; i++) {
			char part[16];
			const char *values[] = {
				service,
				SYSTEM,
				c->lags[i].topic,
				u32_str(part, sizeof(part), (uint32_t)c->lags[i].partition),
				c->lags[i].group,
				NULL,
			};

			ps_metric_remove(st->lag, values);
		}
	}
	free(c->lags);
	kafka_stream_free(c->stream);
	free(c);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static const char *const duration_labels[] = {
	"service_name",
	"messaging_system",
	"messaging_operation_name",
	"messaging_destination_name",
	"error_type",
	"server_address",
	"server_port",
	NULL,
};
static const char *const sent_labels[] = {
	"service_name", "messaging_system", "messaging_destination_name", "error_type", NULL,
};
static const char *const consumed_labels[] = {
	"service_name",
	"messaging_system",
	"messaging_destination_name",
	"messaging_consumer_group_name",
	NULL,
};
static const char *const lag_labels[] = {
	"service_name",
	"messaging_system",
	"messaging_destination_name",
	"messaging_destination_partition_id",
	"messaging_consumer_group_name",
	NULL,
};
static const char *const uncounted_labels[] = {
	"service_name",
	"messaging_system",
	"messaging_operation_name",
	NULL,
};
static const char *const plugin_labels[] = { "service_name", "plugin", NULL };

static struct ps_metric *reg(const char *name, const char *help, enum ps_metric_type type,
			     const char *const *labels)
{
	struct ps_metric_desc d = { .name = name, .help = help, .type = type, .labels = labels };
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int register_metrics(struct kafka *st)
{
	st->client_duration =
		reg("messaging_client_operation_duration_seconds",
		    "Duration of Kafka requests a client sent, first request byte to last "
		    "response byte, one observation per topic",
		    PS_METRIC_HISTOGRAM, duration_labels);
	st->server_duration =
		reg("periscope_kafka_server_operation_duration_seconds",
		    "Duration of Kafka requests a broker on this host answered, one observation "
		    "per topic",
		    PS_METRIC_HISTOGRAM, duration_labels);
	st->sent =
		reg("messaging_client_sent_messages_total",
		    "Records in Produce requests, by the error their partition was answered with",
		    PS_METRIC_COUNTER, sent_labels);
	st->consumed = reg("messaging_client_consumed_messages_total",
			   "Records Fetch responses delivered", PS_METRIC_COUNTER, consumed_labels);
	st->lag = reg("periscope_kafka_consumer_lag_messages",
		      "High watermark minus the consumer's next fetch offset, as last seen on the "
		      "wire; gone when the consumer's connection closes",
		      PS_METRIC_GAUGE, lag_labels);
	st->uncounted = reg("periscope_kafka_uncounted_batches_total",
			    "Record batches whose header the capture did not copy: their records "
			    "are in no count",
			    PS_METRIC_COUNTER, uncounted_labels);
	st->decode_errors =
		reg("periscope_decode_errors_total", "Events the plugin could not decode",
		    PS_METRIC_COUNTER, plugin_labels);
	if (!st->client_duration || !st->server_duration || !st->sent || !st->consumed ||
	    !st->lag || !st->uncounted || !st->decode_errors)
		return -EINVAL;
	return 0;
}

static void kafka_free(struct kafka *st)
{
	if (!st)
		return;
	if (st->reg)
		ps_capture_unregister(st->reg);
	kafka_topic_ids_free(st->ids);
	free(st->ports);
	free(st);
}

static int check_config(const struct kafka_config *cfg)
{
	if (cfg->capture_bytes < PS_CAPTURE_BYTES_MIN ||
	    cfg->capture_bytes > PS_CAPTURE_BYTES_MAX) {
		ps_error(SUBSYS, "capture_bytes must be between %d and %d bytes, not %" PRIu64,
			 PS_CAPTURE_BYTES_MIN, PS_CAPTURE_BYTES_MAX, cfg->capture_bytes);
		return -EINVAL;
	}
	if (cfg->ports.n == 0) {
		ps_error(SUBSYS, "ports must name at least one broker port (the capture claims "
				 "Kafka connections by port)");
		return -EINVAL;
	}
	if (cfg->ports.n > PS_CAPTURE_PORTS_MAX) {
		ps_error(SUBSYS, "at most %d ports, not %zu", PS_CAPTURE_PORTS_MAX, cfg->ports.n);
		return -EINVAL;
	}
	return 0;
}

static int kafka_init(struct ps_plugin *p, const void *config)
{
	static const uint16_t default_port = 9092;
	static const struct kafka_config defaults = {
		.ports = { .v = (uint16_t *)&default_port, .n = 1 },
		.capture_bytes = PS_CAPTURE_BYTES_MAX,
	};
	const struct kafka_config *cfg = config ? config : &defaults;
	struct kafka *st;
	int err;

	err = check_config(cfg);
	if (err)
		return err;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->plugin = p;
	st->ports = calloc(cfg->ports.n, sizeof(*st->ports));
	st->ids = kafka_topic_ids_new();
	if (!st->ports || !st->ids) {
		kafka_free(st);
		return -ENOMEM;
	}
	memcpy(st->ports, cfg->ports.v, cfg->ports.n * sizeof(*st->ports));
	st->n_ports = cfg->ports.n;
	st->capture_bytes = (uint32_t)cfg->capture_bytes;
	ps_plugin_set_data(p, st);
	return 0;
}

static int kafka_start(struct ps_plugin *p)
{
	struct kafka *st = ps_plugin_data(p);
	int err;

	err = register_metrics(st);
	if (err)
		return err;
	st->proto = (struct ps_capture_protocol){
		.struct_size = sizeof(struct ps_capture_protocol),
		.name = SUBSYS,
		.classifier = PS_CAPTURE_CLASSIFY_NONE,
		.ports = st->ports,
		.n_ports = st->n_ports,
		.capture_bytes = st->capture_bytes,
		.tls = false,
		/* Fetch responses are read megabytes at a time: their batch headers come as pieces. */
		.walker = PS_CAPTURE_WALK_KAFKA,
		.ctx = st,
		.conn_open = on_conn_open,
		.conn_data = on_conn_data,
		.conn_close = on_conn_close,
	};
	st->reg = ps_capture_register(p, &st->proto);
	if (!st->reg)
		return -errno; /* the capture logged why */
	return 0;
}

static void kafka_stop(struct ps_plugin *p)
{
	struct kafka *st = ps_plugin_data(p);

	if (st && st->reg) {
		ps_capture_unregister(st->reg);
		st->reg = NULL;
	}
}

static void kafka_destroy(struct ps_plugin *p)
{
	struct kafka *st = ps_plugin_data(p);

	if (st)
		ps_debug(SUBSYS, "%" PRIu64 " exchanges, %" PRIu64 " connections rejected",
			 st->exchanges, st->rejected);
	kafka_free(st);
	ps_plugin_set_data(p, NULL);
}

static const struct ps_cfg_key kafka_config_map[] = {
	{
		.name = "ports",
		.type = PS_CFG_PORTLIST,
		.def = "[9092]",
		.offset = offsetof(struct kafka_config, ports),
		.help = "broker ports: connections with one of them at either end are decoded",
	},
	{
		.name = "capture_bytes",
		.type = PS_CFG_SIZE,
		.def = "4096",
		.offset = offsetof(struct kafka_config, capture_bytes),
		.help = "bytes copied from each read or write (64 to 4096); record batch headers "
			"past them are counted in periscope_kafka_uncounted_batches_total",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "kafka", .version = PACKAGE_VERSION,
		 .description = "Kafka messages produced and consumed per topic, errors, latency "
				"and consumer lag",
		 .config_map = kafka_config_map, .config_size = sizeof(struct kafka_config),
		 .init = kafka_init, .start = kafka_start, .stop = kafka_stop,
		 .destroy = kafka_destroy, );
