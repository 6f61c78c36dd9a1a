/*
 * mysql: MySQL/MariaDB operation durations, client view and server view,
 * from the core socket capture (periscope/capture.h). No BPF of its own.
 *
 * The capture hands over the connections on the configured ports (and the
 * plaintext of OpenSSL connections, with tls: auto); each gets a decoder
 * stream (mysql_proto.h). A process that writes commands is the client of an
 * exchange (db_client_operation_duration_seconds), one that reads them and
 * writes the responses is the server (db_server_operation_duration_seconds:
 * mysqld, mariadbd). Each exchange is also published as a PS_EVENT_EXCHANGE.
 *
 * Connections on the Unix socket are claimed by the capture's MySQL
 * first-bytes classifier (no ports there); they decode the same, with empty
 * server_address and server_port. An SSLRequest is passed on to the capture
 * (ps_capture_starttls), which then sends the connection's OpenSSL plaintext.
 *
 * Whatever is not decoded goes to periscope_decode_errors_total{plugin="mysql"}:
 * malformed packets, commands and responses that could not be paired (bytes
 * not captured, most often), executes of statements whose prepare was not seen, query
 * text that is no statement, zstd-compressed connections, TLS connections whose
 * plaintext never came, and the rare multi-statement query that could not be
 * taken apart (another one waiting for its results: one duration cannot be
 * given to one operation and table). Multi-statement queries otherwise give
 * one exchange per statement, CALL's result sets being the CALL's.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <periscope/capture.h>
#include <periscope/plugin.h>

#include "mysql_proto.h"

#define SUBSYS "mysql"

struct mysql_config {
	struct ps_portlist ports;
	uint64_t capture_bytes;
	char *tls;
};

struct mysql {
	struct ps_plugin *plugin;
	struct ps_capture_reg *reg;
	uint16_t *ports;
	size_t n_ports;
	uint32_t capture_bytes;
	bool tls;
	struct ps_metric *client_duration, *server_duration, *decode_errors;
	uint64_t errors_pending; /* decode errors not yet added to the counter */
	uint64_t exchanges, conns;
};

/* One claimed connection. */
struct mysql_conn {
	struct mysql_stream *stream;
	uint32_t tid[2]; /* by enum mysql_dir: the thread that last moved bytes that way */
	uint32_t seq[2]; /* by enum ps_exchange_side: exchanges reported so far */
	uint64_t errors_seen; /* of the stream's not-decoded counts, already accounted */
	bool starttls;	      /* the capture was told of the SSLRequest */
	bool tls;	      /* the capture's chunks are OpenSSL plaintext now */
};

/* What the decoder's exchange callback needs. */
struct feed_ctx {
	struct mysql *st;
	const struct ps_capture_conn *conn;
	const struct ps_capture_chunk *chunk;
	struct mysql_conn *mc;
};

/* ---- exchanges ---------------------------------------------------------------------------- */

static bool has_address(const struct ps_endpoint *ep)
{
	return ep->family == AF_INET || ep->family == AF_INET6;
}

static void observe(struct mysql *st, const struct feed_ctx *fc, const struct mysql_exchange *ex,
		    const char *service)
{
	const struct ps_capture_conn *c = fc->conn;
	bool server = ex->role == MYSQL_ROLE_SERVER;
	/* The database's endpoint: the peer for a client, its own for the server. */
	const struct ps_endpoint *db = server ? &c->local : &c->remote;
	char addr[64] = "", port[8] = "", status[8] = "";
	double seconds = 0;

	if (has_address(db)) {
		ps_endpoint_addr_str(db, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", db->port);
	}
	if (ex->error_code)
		snprintf(status, sizeof(status), "%u", ex->error_code);
	if (ex->end_ns > ex->start_ns)
		seconds = (double)(ex->end_ns - ex->start_ns) / 1e9;

	const char *values[] = {
		service,	  "mysql", ex->operation, ex->collection,
		ex->db_namespace, status,  addr,	  port,
	};

	ps_metric_observe(server ? st->server_duration : st->client_duration, values, seconds);
}

static void emit(const struct feed_ctx *fc, const struct mysql_exchange *ex, const char *service)
{
	const struct ps_capture_conn *c = fc->conn;
	bool server = ex->role == MYSQL_ROLE_SERVER;
	struct ps_exchange x = {
		.protocol = SUBSYS,
		.side = server ? PS_SIDE_SERVER : PS_SIDE_CLIENT,
		.pid = fc->chunk->pid,
		/* the thread that read (server) or wrote (client) the request: tracectx joins on it */
		.tid = fc->mc->tid[server ? MYSQL_DIR_IN : MYSQL_DIR_OUT],
		.conn_id = c->id,
		.seq = fc->mc->seq[server ? PS_SIDE_SERVER : PS_SIDE_CLIENT]++,
		.service_name = service,
		.local = c->local,
		.remote = c->remote,
		.start_unix_ns = ps_clock_mono_to_unix_ns(ex->start_ns),
		.end_unix_ns = ps_clock_mono_to_unix_ns(ex->end_ns),
		.operation = ex->operation,
		.target = ex->collection,
		.status = ex->error_code ? 1 : 0,
		.error = ex->error_code != 0,
	};
	struct ps_event ev = { .type = PS_EVENT_EXCHANGE, .plugin = SUBSYS, .exchange = &x };

	ps_event_emit(&ev);
}

static void on_exchange(const struct mysql_exchange *ex, void *arg)
{
	const struct feed_ctx *fc = arg;
	struct mysql *st = fc->st;
	const char *service;

	if (ex->role == MYSQL_ROLE_UNKNOWN || ex->multi_statement)
		return; /* counted with the decode errors */
	service = ps_proc_service_name(fc->chunk->pid, fc->conn->comm[0] ? fc->conn->comm : NULL);
	st->exchanges++;
	observe(st, fc, ex, service);
	emit(fc, ex, service);
}

/* ---- connections from the capture --------------------------------------------------------- */

static uint64_t not_decoded(const struct mysql_stream_stats *ss, bool closed)
{
	/*
	 * Framing lost to uncaptured bytes is not counted itself: the exchanges it
	 * cost are (lost), those it did not (the end of a result set found in a
	 * syscall's last bytes) are not errors. A TLS connection whose plaintext
	 * never came counts once, at close.
	 */
	return ss->parse_errors + ss->lost + ss->unknown_statements + ss->unsummarized +
	       ss->multi_undecoded + (ss->compressed_zstd ? 1 : 0) +
	       (closed && ss->tls_waiting ? 1 : 0);
}

static void account(struct mysql *st, struct mysql_conn *mc, const struct mysql_stream_stats *ss,
		    bool closed)
{
	uint64_t n = not_decoded(ss, closed);

	st->errors_pending += n - mc->errors_seen;
	mc->errors_seen = n;
}

static void *conn_open(void *ctx, const struct ps_capture_conn *conn)
{
	struct mysql *st = ctx;
	struct mysql_conn *mc = calloc(1, sizeof(*mc));

	if (!mc || !(mc->stream = mysql_stream_new())) {
		free(mc);
		ps_warn(SUBSYS, "connection %" PRIu64 " of pid %u not followed: out of memory",
			conn->id, conn->pid);
		return NULL;
	}
	st->conns++;
	return mc;
}

static int conn_data(void *ctx, void *state, const struct ps_capture_conn *conn,
		     const struct ps_capture_chunk *chunk)
{
	struct mysql *st = ctx;
	struct mysql_conn *mc = state;
	struct feed_ctx fc = { .st = st, .conn = conn, .chunk = chunk, .mc = mc };
	enum mysql_dir dir = chunk->dir == PS_CAPTURE_OUT ? MYSQL_DIR_OUT : MYSQL_DIR_IN;
	struct mysql_stream_stats ss;
	int err;

	mc->tid[dir] = chunk->tid;
	/*
	 * The capture flags a connection TLS from its first OpenSSL chunk on; what
	 * came between the SSLRequest and that chunk was ciphertext, and skipped.
	 */
	if (conn->tls && !mc->tls) {
		mc->tls = true;
		mysql_stream_tls_plaintext(mc->stream);
	}
	err = mysql_stream_feed(mc->stream, dir, chunk->data, chunk->len, chunk->total,
				chunk->ts_ns, on_exchange, &fc);
	mysql_stream_get_stats(mc->stream, &ss);
	account(st, mc, &ss, false);
	/* An SSLRequest: the capture sends the OpenSSL plaintext instead of the ciphertext. */
	if (ss.tls_waiting && !mc->starttls) {
		int rc = ps_capture_starttls(conn);

		mc->starttls = true;
		if (rc)
			ps_debug(SUBSYS, "connection %" PRIu64 " of pid %u: no TLS plaintext: %s",
				 conn->id, conn->pid, strerror(-rc));
	}
	if (err == -EPROTO) {
		ps_debug(SUBSYS,
			 "connection %" PRIu64 " of pid %u (%s): not MySQL, no longer followed",
			 conn->id, conn->pid, conn->comm);
		return -EPROTO;
	}
	return 0;
}

static void conn_close(void *ctx, void *state, const struct ps_capture_conn *conn, uint64_t ts_ns)
{
	struct mysql *st = ctx;
	struct mysql_conn *mc = state;
	struct mysql_stream_stats ss;

	if (!mc)
		return;
	mysql_stream_close(mc->stream);
	mysql_stream_get_stats(mc->stream, &ss);
	account(st, mc, &ss, true);
	if (ps_log_enabled(PS_LOG_DEBUG))
		ps_debug(SUBSYS,
			 "connection %" PRIu64 " of pid %u (%s%s) closed: %" PRIu64
			 " exchanges; %" PRIu64 " unanswered, %" PRIu64 " lost, %" PRIu64
			 " malformed, %" PRIu64 " desyncs, %" PRIu64 " unknown statements, %" PRIu64
			 " multi-statement queries; compressed packets: %" PRIu64
			 " inflated, %" PRIu64 " bytes skipped%s%s",
			 conn->id, conn->pid, conn->comm, conn->tls ? ", TLS" : "", ss.exchanges,
			 ss.unanswered, ss.lost, ss.parse_errors, ss.desyncs, ss.unknown_statements,
			 ss.multi_statements, ss.compressed_packets, ss.compressed_skipped,
			 ss.compressed_zstd ? ", zstd" : "",
			 ss.tls_waiting ? ", TLS plaintext never came" : "");
	mysql_stream_free(mc->stream);
	free(mc);
}

/* ---- life cycle --------------------------------------------------------------------------- */

static const char *const db_labels[] = {
	"service_name",	      "db_system_name", "db_operation_name",
	"db_collection_name", "db_namespace",	"db_response_status_code",
	"server_address",     "server_port",	NULL,
};

static const char *const plugin_labels[] = { "service_name", "plugin", NULL };

static struct ps_metric *register_metric(const char *name, const char *help,
					 enum ps_metric_type type, const char *const *labels)
{
	struct ps_metric_desc d = { .name = name, .help = help, .type = type, .labels = labels };
	struct ps_metric *m = ps_metric_register(&d);

	if (!m)
		ps_error(SUBSYS, "cannot register %s: %s", name, strerror(errno));
	return m;
}

static int register_metrics(struct mysql *st)
{
	st->client_duration = register_metric(
		"db_client_operation_duration_seconds",
		"Duration of database client operations, first command byte to last response byte",
		PS_METRIC_HISTOGRAM, db_labels);
	st->server_duration = register_metric(
		"db_server_operation_duration_seconds",
		"Duration of operations inside the database server, command read to response written",
		PS_METRIC_HISTOGRAM, db_labels);
	/* The core's family (same shape): shared by name. */
	st->decode_errors = register_metric("periscope_decode_errors_total",
					    "Events the plugin could not decode", PS_METRIC_COUNTER,
					    plugin_labels);
	if (!st->client_duration || !st->server_duration || !st->decode_errors)
		return -EINVAL;
	return 0;
}

static void flush_errors(struct mysql *st)
{
	const char *values[] = { "periscoped", SUBSYS };

	if (!st->errors_pending || !st->decode_errors)
		return;
	ps_metric_add(st->decode_errors, values, (double)st->errors_pending);
	st->errors_pending = 0;
}

static int check_config(const struct mysql_config *cfg)
{
	if (!cfg->ports.n) {
		/* Connections are claimed by port: without one nothing would be seen. */
		ps_error(SUBSYS, "ports must list at least one port (the default is [3306])");
		return -EINVAL;
	}
	if (cfg->ports.n > PS_CAPTURE_PORTS_MAX) {
		ps_error(SUBSYS, "at most %d ports, not %zu", PS_CAPTURE_PORTS_MAX, cfg->ports.n);
		return -EINVAL;
	}
	if (cfg->capture_bytes < PS_CAPTURE_BYTES_MIN ||
	    cfg->capture_bytes > PS_CAPTURE_BYTES_MAX) {
		ps_error(SUBSYS, "capture_bytes must be between %d and %d bytes, not %" PRIu64,
			 PS_CAPTURE_BYTES_MIN, PS_CAPTURE_BYTES_MAX, cfg->capture_bytes);
		return -EINVAL;
	}
	return 0;
}

static const uint16_t default_ports[] = { 3306 };

static int mysql_init(struct ps_plugin *p, const void *config)
{
	static const struct mysql_config defaults = {
		.ports = { .v = (uint16_t *)default_ports, .n = 1 },
		.capture_bytes = PS_CAPTURE_BYTES_DEFAULT,
	};
	const struct mysql_config *cfg = config ? config : &defaults;
	struct mysql *st;
	int err;

	err = check_config(cfg);
	if (err)
		return err;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->ports = calloc(cfg->ports.n, sizeof(*st->ports));
	if (!st->ports) {
		free(st);
		return -ENOMEM;
	}
	memcpy(st->ports, cfg->ports.v, cfg->ports.n * sizeof(*st->ports));
	st->n_ports = cfg->ports.n;
	st->capture_bytes = (uint32_t)cfg->capture_bytes;
	st->tls = !cfg->tls || strcmp(cfg->tls, "off") != 0;
	st->plugin = p;
	ps_plugin_set_data(p, st);
	return 0;
}

static int mysql_start(struct ps_plugin *p)
{
	struct mysql *st = ps_plugin_data(p);
	struct ps_capture_protocol proto = {
		.struct_size = sizeof(proto),
		.name = SUBSYS,
		.classifier = PS_CAPTURE_CLASSIFY_NONE,
		.ports = st->ports,
		.n_ports = st->n_ports,
		.capture_bytes = st->capture_bytes,
		.tls = st->tls,
		/* Unix sockets have no ports: the kernel's MySQL classifier picks them. */
		.unix_classifier = PS_CAPTURE_CLASSIFY_MYSQL,
		/* The handshake follows the SSLRequest at once: the kernel must see it itself. */
		.starttls = PS_CAPTURE_STARTTLS_MYSQL,
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

static int mysql_collect(struct ps_plugin *p)
{
	flush_errors(ps_plugin_data(p));
	return 0;
}

static void mysql_stop(struct ps_plugin *p)
{
	struct mysql *st = ps_plugin_data(p);

	if (!st)
		return;
	if (st->reg)
		ps_capture_unregister(st->reg); /* closes our connections: their counts come now */
	st->reg = NULL;
	flush_errors(st);
}

static void mysql_destroy(struct ps_plugin *p)
{
	struct mysql *st = ps_plugin_data(p);

	if (!st)
		return;
	ps_debug(SUBSYS, "%" PRIu64 " exchanges on %" PRIu64 " connections", st->exchanges,
		 st->conns);
	free(st->ports);
	free(st);
	ps_plugin_set_data(p, NULL);
}

static const char *const tls_choices[] = { "auto", "off", NULL };

static const struct ps_cfg_key mysql_config_map[] = {
	{
		.name = "ports",
		.type = PS_CFG_PORTLIST,
		.def = "[3306]",
		.offset = offsetof(struct mysql_config, ports),
		.help = "follow connections with one of these local or remote ports",
	},
	{
		.name = "capture_bytes",
		.type = PS_CFG_SIZE,
		.def = "1024",
		.offset = offsetof(struct mysql_config, capture_bytes),
		.help = "bytes copied from each read or write (64 to 4096): statement text to summarise",
	},
	{
		.name = "tls",
		.type = PS_CFG_STRING,
		.def = "auto",
		.offset = offsetof(struct mysql_config, tls),
		.choices = tls_choices,
		.help = "auto: also decode TLS connections through the capture's OpenSSL uprobes; off",
	},
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "mysql", .version = PACKAGE_VERSION,
		 .description = "MySQL/MariaDB operations, errors and duration, client and server",
		 .config_map = mysql_config_map, .config_size = sizeof(struct mysql_config),
		 .init = mysql_init, .start = mysql_start, .collect = mysql_collect,
		 .stop = mysql_stop, .destroy = mysql_destroy, );
