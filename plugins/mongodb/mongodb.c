/*
 * mongodb: MongoDB operation rate, errors and duration, client view and
 * server view, from the core socket capture (periscope/capture.h).
 *
 * The capture hands over each claimed connection's bytes, one chunk per
 * syscall in order; a decoder stream per connection (mongodb_proto.h) frames
 * the wire protocol and pairs requests with replies. Each exchange becomes an
 * observation of db_client_operation_duration_seconds (the observed process
 * sent the command) or db_server_operation_duration_seconds (it answered),
 * and one PS_EVENT_EXCHANGE.
 *
 * Connections are claimed by port (ports, default 27017). AF_UNIX ones have
 * no port: the capture's MongoDB first-bytes classifier claims them by their
 * message header. The decoder does not care how a connection was claimed. Commands named in exclude_commands (hello, isMaster, ping, ...)
 * are decoded but neither observed nor emitted. Unacknowledged writes
 * (moreToCome) are observed with the time their bytes took to send: no reply
 * ever comes. Requests the connection ended before answering go out as
 * exchange events with error set, and are not observed.
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
#include <periscope/semconv.h>

#include "mongodb_proto.h"

#define SUBSYS	    "mongodb"
#define EXCLUDE_MAX 64

struct mongodb_config {
	struct ps_portlist ports;
	uint64_t capture_bytes;
	char *tls;
	struct ps_strlist exclude_commands;
};

struct mongodb {
	uint16_t ports[PS_CAPTURE_PORTS_MAX];
	size_t n_ports;
	uint32_t capture_bytes;
	bool tls;
	const char *exclude[EXCLUDE_MAX]; /* canonical command names from the table, or "_OTHER" */
	size_t n_exclude;
	struct ps_capture_reg *reg;
	struct ps_metric *client_duration, *server_duration, *decode_errors;
	uint64_t errors_pending; /* decode errors not yet added to the counter */
	uint64_t exchanges, unanswered, excluded, rejected;
	uint64_t compressed[MONGO_COMPRESSORS + 1], undecoded;
};

/* One claimed connection. */
struct conn {
	struct mongo_stream *stream;
	const struct ps_capture_conn *cc;
	uint32_t pid, tid; /* of the latest chunk */
	uint32_t dir_tid[2]; /* by enum mongo_dir: the thread that last moved bytes that way */
	uint32_t seq[2];     /* by enum ps_exchange_side: exchanges reported so far */
	uint64_t errors;   /* malformed + desyncs + undecoded already counted */
};

struct feed_ctx {
	struct mongodb *st;
	struct conn *c;
};

/* ---- exchanges -> metrics and events ------------------------------------------------------- */

static bool excluded(const struct mongodb *st, const char *op)
{
	for (size_t i = 0; i < st->n_exclude; i++)
		if (!strcmp(st->exclude[i], op))
			return true;
	return false;
}

static void format_status(const struct mongo_exchange *ex, char *buf, size_t len)
{
	if (!ex->error)
		buf[0] = '\0';
	else if (ex->has_code)
		snprintf(buf, len, "%" PRId32, ex->code);
	else
		snprintf(buf, len, "_OTHER"); /* an error whose code was not captured */
}

/* The server's side of the connection: the peer for the client view, ourselves otherwise. */
static void server_endpoint(const struct ps_capture_conn *cc, bool server_view, char *addr,
			    size_t len, char *port, size_t plen)
{
	const struct ps_endpoint *ep = server_view ? &cc->local : &cc->remote;

	addr[0] = port[0] = '\0';
	if (ep->family != AF_INET && ep->family != AF_INET6)
		return; /* AF_UNIX: no address, no port */
	ps_endpoint_addr_str(ep, addr, (unsigned)len);
	snprintf(port, plen, "%u", ep->port);
}

static void emit_exchange(struct conn *c, const struct mongo_exchange *ex, bool server,
			  const char *service)
{
	struct ps_exchange x = {
		.protocol = SUBSYS,
		.side = server ? PS_SIDE_SERVER : PS_SIDE_CLIENT,
		.pid = c->pid,
		/* the thread that read (server) or wrote (client) the request: tracectx joins on it */
		.tid = c->dir_tid[server ? MONGO_DIR_IN : MONGO_DIR_OUT],
		.conn_id = c->cc->id,
		.seq = c->seq[server ? PS_SIDE_SERVER : PS_SIDE_CLIENT]++,
		.service_name = service,
		.local = c->cc->local,
		.remote = c->cc->remote,
		.start_unix_ns = ps_clock_mono_to_unix_ns(ex->start_ns),
		.end_unix_ns = ps_clock_mono_to_unix_ns(ex->end_ns),
		.operation = ex->op,
		.target = ex->collection,
		.scheme = NULL,
		.status = ex->error || ex->outcome == MONGO_UNANSWERED,
		.error = ex->error || ex->outcome == MONGO_UNANSWERED,
	};
	struct ps_event ev = { .type = PS_EVENT_EXCHANGE, .plugin = SUBSYS, .exchange = &x };

	ps_event_emit(&ev);
}

static void on_exchange(const struct mongo_exchange *ex, void *arg)
{
	const struct feed_ctx *fc = arg;
	struct mongodb *st = fc->st;
	struct conn *c = fc->c;
	bool server = ex->role == MONGO_ROLE_SERVER;
	char status[16], addr[64], port[8];
	const char *service;
	double seconds = 0;

	if (ex->role == MONGO_ROLE_UNKNOWN)
		return;
	if (excluded(st, ex->op)) {
		st->excluded++;
		return;
	}
	/* The comm the capture knows is of the connection's first process only. */
	service = ps_proc_service_name(c->pid,
				       c->pid == c->cc->pid && c->cc->comm[0] ? c->cc->comm : NULL);
	emit_exchange(c, ex, server, service);
	if (ex->outcome == MONGO_UNANSWERED) {
		st->unanswered++;
		return;
	}
	st->exchanges++;
	format_status(ex, status, sizeof(status));
	server_endpoint(c->cc, server, addr, sizeof(addr), port, sizeof(port));
	if (ex->end_ns > ex->start_ns)
		seconds = (double)(ex->end_ns - ex->start_ns) / 1e9;
	{
		const char *values[] = {
			service, "mongodb", ex->op, ex->collection, ex->db,
			status,	 addr,	    port,   NULL,
		};

		ps_metric_observe(server ? st->server_duration : st->client_duration, values,
				  seconds);
	}
}

/* ---- the capture's callbacks ------------------------------------------------------------- */

static void count_errors(struct mongodb *st, struct conn *c)
{
	struct mongo_stream_stats ss;
	uint64_t errors;

	mongo_stream_get_stats(c->stream, &ss);
	errors = ss.malformed + ss.desyncs + ss.undecoded;
	st->errors_pending += errors - c->errors;
	c->errors = errors;
}

static void *conn_open(void *ctx, const struct ps_capture_conn *cc)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->stream = mongo_stream_new();
	if (!c->stream) {
		free(c);
		return NULL;
	}
	c->cc = cc;
	c->pid = cc->pid;
	c->dir_tid[MONGO_DIR_IN] = c->dir_tid[MONGO_DIR_OUT] = cc->pid;
	return c;
}

static int conn_data(void *ctx, void *state, const struct ps_capture_conn *cc,
		     const struct ps_capture_chunk *chunk)
{
	struct mongodb *st = ctx;
	struct conn *c = state;
	struct feed_ctx fc = { .st = st, .c = c };
	enum mongo_dir dir = chunk->dir == PS_CAPTURE_OUT ? MONGO_DIR_OUT : MONGO_DIR_IN;
	int rc;

	c->cc = cc;
	c->pid = chunk->pid;
	c->tid = chunk->tid;
	c->dir_tid[dir] = chunk->tid;
	rc = mongo_stream_feed(c->stream, dir, chunk->data, chunk->len, chunk->total, chunk->ts_ns,
			       on_exchange, &fc);
	count_errors(st, c);
	if (rc == -EPROTO) {
		st->rejected++;
		ps_debug(SUBSYS, "pid %u (%s): not the MongoDB wire protocol, no longer followed",
			 c->pid, cc->comm);
	}
	return rc;
}

static void conn_close(void *ctx, void *state, const struct ps_capture_conn *cc, uint64_t ts_ns)
{
	struct mongodb *st = ctx;
	struct conn *c = state;
	struct feed_ctx fc = { .st = st, .c = c };
	struct mongo_stream_stats ss;

	c->cc = cc;
	mongo_stream_close(c->stream, ts_ns, on_exchange, &fc);
	count_errors(st, c);
	mongo_stream_get_stats(c->stream, &ss);
	for (int i = 0; i <= MONGO_COMPRESSORS; i++)
		st->compressed[i] += ss.compressed[i];
	st->undecoded += ss.undecoded;
	mongo_stream_free(c->stream);
	free(c);
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* The same labels, in the same order, as mysql's: the families are shared by name. */
static const char *const db_labels[] = {
	PS_L_SERVICE_NAME,   PS_L_DB_SYSTEM,	PS_L_DB_OPERATION,
	PS_L_DB_COLLECTION,  PS_L_DB_NAMESPACE, PS_L_DB_STATUS,
	PS_L_SERVER_ADDRESS, PS_L_SERVER_PORT,	NULL,
};
static const char *const plugin_labels[] = { PS_L_SERVICE_NAME, "plugin", NULL };

static struct ps_metric *register_metric(const char *name, const char *help,
					 enum ps_metric_type type, const char *const *labels)
{
	struct ps_metric_desc d = { .name = name, .help = help, .type = type, .labels = labels };
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int register_metrics(struct mongodb *st)
{
	st->client_duration = register_metric(
		PS_M_DB_CLIENT_DURATION,
		"Duration of database client operations, first request byte to last reply byte",
		PS_METRIC_HISTOGRAM, db_labels);
	st->server_duration = register_metric(
		PS_M_DB_SERVER_DURATION,
		"Duration of database operations seen in the server, first request byte to last "
		"reply byte",
		PS_METRIC_HISTOGRAM, db_labels);
	st->decode_errors = register_metric("periscope_decode_errors_total",
					    "Events the plugin could not decode", PS_METRIC_COUNTER,
					    plugin_labels);
	return st->client_duration && st->server_duration && st->decode_errors ? 0 : -EINVAL;
}

static int check_config(const struct mongodb_config *cfg, struct mongodb *st)
{
	if (cfg->capture_bytes < PS_CAPTURE_BYTES_MIN ||
	    cfg->capture_bytes > PS_CAPTURE_BYTES_MAX) {
		ps_error(SUBSYS, "capture_bytes must be between %d and %d bytes, not %" PRIu64,
			 PS_CAPTURE_BYTES_MIN, PS_CAPTURE_BYTES_MAX, cfg->capture_bytes);
		return -EINVAL;
	}
	if (cfg->ports.n == 0 || cfg->ports.n > PS_CAPTURE_PORTS_MAX) {
		ps_error(SUBSYS,
			 "ports: between 1 and %d ports, not %zu (connections are claimed by port)",
			 PS_CAPTURE_PORTS_MAX, cfg->ports.n);
		return -EINVAL;
	}
	if (cfg->exclude_commands.n > EXCLUDE_MAX) {
		ps_error(SUBSYS, "exclude_commands: at most %d commands, not %zu", EXCLUDE_MAX,
			 cfg->exclude_commands.n);
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->exclude_commands.n; i++) {
		const char *name = cfg->exclude_commands.v[i];
		const char *canon = mongo_command_name(name, strlen(name));

		if (!canon && strcmp(name, "_OTHER") != 0) {
			ps_error(SUBSYS,
				 "exclude_commands: \"%s\" is not a command this plugin names "
				 "(unknown commands are \"_OTHER\")",
				 name);
			return -EINVAL;
		}
		st->exclude[st->n_exclude++] = canon ? canon : "_OTHER";
	}
	return 0;
}

static int mongodb_init(struct ps_plugin *p, const void *config)
{
	static const uint16_t default_port = 27017;
	struct mongodb_config defaults = {
		.ports = { (uint16_t *)&default_port, 1 },
		.capture_bytes = PS_CAPTURE_BYTES_DEFAULT,
	};
	const struct mongodb_config *cfg = config ? config : &defaults;
	struct mongodb *st = calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	err = check_config(cfg, st);
	if (err) {
		free(st);
		return err;
	}
	memcpy(st->ports, cfg->ports.v, cfg->ports.n * sizeof(st->ports[0]));
	st->n_ports = cfg->ports.n;
	st->capture_bytes = (uint32_t)cfg->capture_bytes;
	/*
	 * Off unless asked for: the capture's TLS is one switch for every protocol, so
	 * turning it on here would also hand HTTPS plaintext to an http configured with
	 * tls: off.
	 */
	st->tls = cfg->tls && strcmp(cfg->tls, "auto") == 0;
	ps_plugin_set_data(p, st);
	return 0;
}

static int mongodb_start(struct ps_plugin *p)
{
	struct mongodb *st = ps_plugin_data(p);
	struct ps_capture_protocol proto = {
		.struct_size = sizeof(proto),
		.name = SUBSYS,
		.classifier = PS_CAPTURE_CLASSIFY_NONE,
		.ports = st->ports,
		.n_ports = st->n_ports,
		.capture_bytes = st->capture_bytes,
		.tls = st->tls,
		/* AF_UNIX has no ports: the kernel's MongoDB classifier picks them by their header. */
		.unix_classifier = PS_CAPTURE_CLASSIFY_MONGODB,
		.ctx = st,
		.conn_open = conn_open,
		.conn_data = conn_data,
		.conn_close = conn_close,
	};
	int err;

	err = register_metrics(st);
	if (err)
		return err;
	st->reg = ps_capture_register(p, &proto);
	if (!st->reg)
		return -errno; /* the capture logged why */
	return 0;
}

static int mongodb_collect(struct ps_plugin *p)
{
	struct mongodb *st = ps_plugin_data(p);
	const char *values[] = { "periscoped", SUBSYS, NULL };

	if (st && st->errors_pending) {
		ps_metric_add(st->decode_errors, values, (double)st->errors_pending);
		st->errors_pending = 0;
	}
	return 0;
}

static void mongodb_stop(struct ps_plugin *p)
{
	struct mongodb *st = ps_plugin_data(p);

	if (st && st->reg) {
		ps_capture_unregister(st->reg); /* closes every connection: conn_close for each */
		st->reg = NULL;
	}
}

static void mongodb_destroy(struct ps_plugin *p)
{
	struct mongodb *st = ps_plugin_data(p);

	if (st)
		ps_debug(SUBSYS,
			 "%" PRIu64 " exchanges, %" PRIu64 " unanswered, %" PRIu64
			 " excluded, %" PRIu64 " connections rejected; compressed messages: "
			 "%" PRIu64 " noop, %" PRIu64 " snappy, %" PRIu64 " zlib, %" PRIu64
			 " zstd, %" PRIu64 " unknown, %" PRIu64 " not decoded",
			 st->exchanges, st->unanswered, st->excluded, st->rejected,
			 st->compressed[MONGO_COMP_NOOP], st->compressed[MONGO_COMP_SNAPPY],
			 st->compressed[MONGO_COMP_ZLIB], st->compressed[MONGO_COMP_ZSTD],
			 st->compressed[MONGO_COMPRESSORS], st->undecoded);
	free(st);
	ps_plugin_set_data(p, NULL);
}

static const char *const tls_choices[] = { "auto", "off", NULL };
static const struct ps_cfg_key mongodb_config_map[] = {
	{
		.name = "ports",
		.type = PS_CFG_PORTLIST,
		.def = "[27017]",
		.offset = offsetof(struct mongodb_config, ports),
		.help = "connections with one of these local or remote ports are MongoDB's",
	},
	{
		.name = "capture_bytes",
		.type = PS_CFG_SIZE,
		.def = "1024",
		.offset = offsetof(struct mongodb_config, capture_bytes),
		.help = "bytes copied from each read or write (64 to 4096)",
	},
	{
		.name = "tls",
		.type = PS_CFG_STRING,
		.def = "off",
		.offset = offsetof(struct mongodb_config, tls),
		.choices = tls_choices,
		.help = "auto: also MongoDB over TLS, through the capture's OpenSSL uprobes; off",
	},
	{
		.name = "exclude_commands",
		.type = PS_CFG_STRLIST,
		.offset = offsetof(struct mongodb_config, exclude_commands),
		.help = "commands decoded but not counted, such as [hello, isMaster, ping]",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "mongodb", .version = PACKAGE_VERSION,
		 .description = "MongoDB operation rate, errors and duration, client and server",
		 .config_map = mongodb_config_map, .config_size = sizeof(struct mongodb_config),
		 .init = mongodb_init, .start = mongodb_start, .collect = mongodb_collect,
		 .stop = mongodb_stop, .destroy = mongodb_destroy, );
