/*
 * The stdout sink: a terminal table, JSON lines (metrics and events), or
 * Prometheus text snapshots.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <periscope/log.h>

#include "prom_text.h"
#include "sink.h"
#include "writer.h"

/* The service name of the daemon's own series (plugin_up, events_total, ...). */
#define SELF_SERVICE "periscoped"
/* Label columns wider than this do not stretch the whole table. */
#define TABLE_LABELS_MAX_WIDTH 60
#define QTY_MAX		       32 /* one formatted quantity: 1.5KiB, 40ms, 1200 */
#define RATE_MAX	       (QTY_MAX + 8)
#define CELL_MAX	       96
/*
 * Output waiting for a slow reader (a terminal scrolled back, a pipe nobody
 * drains) is kept up to this much; beyond, new output is dropped and counted.
 */
#define PENDING_MAX (32u << 20)

enum stdout_format {
	FORMAT_TABLE,
	FORMAT_JSON,
	FORMAT_PROMETHEUS,
};

static const char *const format_names[] = { "table", "json", "prometheus", NULL };

struct stdout_config {
	char *format;
	uint64_t max_rows;
};

static const struct ps_cfg_key stdout_config_map[] = {
	{ "format", PS_CFG_STRING, "table", offsetof(struct stdout_config, format), format_names,
	  "table (terminal summary), json (one object per line) or prometheus (text snapshots)" },
	{ "max_rows", PS_CFG_UINT, "20", offsetof(struct stdout_config, max_rows), NULL,
	  "table: rows per service, the busiest first; 0 = all" },
	{ NULL },
};

struct stdout_sink {
	FILE *out;
	enum stdout_format format;
	size_t max_rows;
	bool color;
	bool flushed_once;
	bool seen_flows;
	uint64_t flows_closed; /* since the last flush */
	uint64_t flows_failed;
	struct ps_writer *writer; /* NULL: write on the caller's thread (tests) */
};

/* ---- small string builder -------------------------------------------------------------- */

struct sbuf {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->buf = p;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

/* Text from traffic reaches a terminal: control bytes and bad UTF-8 become \xNN. */
static void sbuf_add_printable(struct sbuf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);

	while (n > 0) {
		size_t len = ps_utf8_seq_len(s, n);
		/* C0, DEL and the C1 range (U+0080..U+009F, which includes CSI) */
		bool control = len == 1 ? (*s < 0x20 || *s == 0x7f) :
					  (len == 2 && *s == 0xc2 && s[1] < 0xa0);

		if (len == 0 || control) {
			char hex[8];

			snprintf(hex, sizeof(hex), "\\x%02x", *s);
			sbuf_puts(b, hex);
			len = 1;
		} else {
			sbuf_add(b, (const char *)s, len);
		}
		s += len;
		n -= len;
	}
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_string(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n;

	if (!str) {
		fputs("null", out);
		return;
	}
	n = strlen(str);
	fputc('"', out);
	while (n > 0) {
		size_t len = ps_utf8_seq_len(s, n);

		if (len == 0) {
			fputs("\\ufffd", out); /* JSON must be valid UTF-8 */
			len = 1;
		} else if (*s == '"' || *s == '\\') {
			fprintf(out, "\\%c", *s);
		} else if (*s < 0x20) {
			fprintf(out, "\\u%04x", *s);
		} else {
			fwrite(s, 1, len, out);
		}
		s += len;
		n -= len;
	}
	fputc('"', out);
}

/* NaN and infinities have no JSON spelling. */
static void json_number(FILE *out, double v)
{
	char num[PS_NUMBER_MAX];

	if (!isfinite(v))
		fputs("null", out);
	else
		fputs(ps_format_number(num, sizeof(num), v), out);
}

static void json_labels(FILE *out, const struct ps_family *f, const struct ps_series *s,
			const struct ps_strmap *static_labels)
{
	bool first = true;

	fputc('{', out);
	for (size_t i = 0; i < f->n_labels; i++) {
		fputs(first ? "" : ",", out);
		json_string(out, f->labels[i]);
		fputc(':', out);
		json_string(out, s->values[i] ? s->values[i] : "");
		first = false;
	}
	for (size_t i = 0; static_labels && i < static_labels->n; i++) {
		if (ps_family_has_label(f, static_labels->keys[i]))
			continue;
		fputs(first ? "" : ",", out);
		json_string(out, static_labels->keys[i]);
		fputc(':', out);
		json_string(out, static_labels->values[i]);
		first = false;
	}
	fputc('}', out);
}

static void json_buckets(FILE *out, const struct ps_family *f, const struct ps_series *s)
{
	uint64_t cumulative = 0;

	fputs("\"buckets\":[", out);
	for (size_t i = 0; i < f->n_bounds; i++) {
		cumulative += s->buckets ? s->buckets[i] : 0;
		fputs("{\"le\":", out);
		json_number(out, f->bounds[i]);
		fprintf(out, ",\"count\":%" PRIu64 "},", cumulative);
	}
	fprintf(out, "{\"le\":\"+Inf\",\"count\":%" PRIu64 "}]", s->count);
}

static void json_series(FILE *out, const struct ps_family *f, const struct ps_series *s,
			const struct ps_strmap *static_labels)
{
	fputs("{\"name\":", out);
	json_string(out, f->name);
	fprintf(out, ",\"type\":\"%s\",\"labels\":", ps_metric_type_name(f->type));
	json_labels(out, f, s, static_labels);
	if (f->type == PS_METRIC_HISTOGRAM) {
		fputc(',', out);
		json_buckets(out, f, s);
		fputs(",\"sum\":", out);
		json_number(out, s->sum);
		fprintf(out, ",\"count\":%" PRIu64 "}", s->count);
	} else {
		fputs(",\"value\":", out);
		json_number(out, s->value);
		fputc('}', out);
	}
}

static void json_write_metrics(FILE *out, const struct ps_flush_ctx *ctx)
{
	const struct ps_registry *r = ctx->registry;
	bool first = true;

	fprintf(out, "{\"type\":\"metrics\",\"time_unix_nano\":%" PRIu64 ",\"interval_seconds\":",
		ctx->now_unix_ns);
	json_number(out, (double)ctx->interval_ns / 1e9);
	fputs(",\"metrics\":[", out);
	for (size_t i = 0; r && i < r->n_families; i++) {
		const struct ps_family *f = r->families[i];

		for (size_t j = 0; j < f->n_series; j++) {
			fputs(first ? "" : ",", out);
			json_series(out, f, f->series[j], ctx->static_labels);
			first = false;
		}
	}
	fputs("]}\n", out);
}

static void json_endpoint(FILE *out, const struct ps_endpoint *ep)
{
	char addr[INET6_ADDRSTRLEN];

	fputs("{\"address\":", out);
	json_string(out, ps_endpoint_addr_str(ep, addr, sizeof(addr)));
	fprintf(out, ",\"port\":%u}", ep->port);
}

static void json_write_flow(FILE *out, const char *plugin, const struct ps_flow_record *fl)
{
	fputs("{\"type\":\"flow\",\"plugin\":", out);
	json_string(out, plugin);
	fputs(",\"service_name\":", out);
	json_string(out, fl->service_name);
	fprintf(out, ",\"pid\":%" PRIu32 ",\"direction\":\"%s\",\"local\":", fl->pid,
		fl->direction == PS_DIR_INBOUND ? "inbound" : "outbound");
	json_endpoint(out, &fl->local);
	fputs(",\"remote\":", out);
	json_endpoint(out, &fl->remote);
	fprintf(out,
		",\"start_time_unix_nano\":%" PRIu64 ",\"end_time_unix_nano\":%" PRIu64
		",\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64 ",\"srtt_us\":%" PRIu32
		",\"retransmits\":%" PRIu32 ",\"resets\":%" PRIu32 ",\"failed\":%s}\n",
		fl->start_unix_ns, fl->end_unix_ns, fl->bytes_sent, fl->bytes_received, fl->srtt_us,
		fl->retransmits, fl->resets, fl->failed ? "true" : "false");
}

/* ---- table: value formatting ------------------------------------------------------------ */

enum unit {
	UNIT_NONE,
	UNIT_SECONDS,
	UNIT_BYTES,
};

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* From the base unit in the name; counters end in _total after it. */
static enum unit family_unit(const struct ps_family *f)
{
	size_t len = strlen(f->name);

	if (has_suffix(f->name, len, "_total"))
		len -= strlen("_total");
	if (has_suffix(f->name, len, "_seconds"))
		return UNIT_SECONDS;
	if (has_suffix(f->name, len, "_bytes"))
		return UNIT_BYTES;
	return UNIT_NONE;
}

/* Three significant digits, but never an exponent below 1e15. */
static void format_short(char *buf, size_t len, double v, const char *unit)
{
	if (fabs(v) >= 100 && fabs(v) < 1e15)
		snprintf(buf, len, "%.0f%s", v, unit);
	else
		snprintf(buf, len, "%.3g%s", v, unit);
}

static void format_seconds(char *buf, size_t len, double v)
{
	double a = fabs(v);

	if (a == 0)
		snprintf(buf, len, "0s");
	else if (a < 1e-3)
		format_short(buf, len, v * 1e6, "µs");
	else if (a < 1)
		format_short(buf, len, v * 1e3, "ms");
	else
		format_short(buf, len, v, "s");
}

static void format_bytes(char *buf, size_t len, double v)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double a = fabs(v);
	size_t i = 0;

	if (a < 1024) {
		snprintf(buf, len, "%.0fB", v);
		return;
	}
	for (a /= 1024, v /= 1024; a >= 1024 && i + 1 < sizeof(units) / sizeof(units[0]); i++) {
		a /= 1024;
		v /= 1024;
	}
	format_short(buf, len, v, units[i]);
}

static void format_quantity(char *buf, size_t len, double v, enum unit unit)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (unit == UNIT_SECONDS)
		format_seconds(buf, len, v);
	else if (unit == UNIT_BYTES)
		format_bytes(buf, len, v);
	else if (v == trunc(v) && fabs(v) < 1e15)
		snprintf(buf, len, "%.0f", v);
	else
		format_short(buf, len, v, "");
}

/* Rates read best with two significant digits: 5.3/s, 67/s, 0.067/s. */
static void format_rate(char *buf, size_t len, double per_s, enum unit unit)
{
	char q[QTY_MAX];
	double a = fabs(per_s);

	if (unit != UNIT_NONE)
		format_quantity(q, sizeof(q), per_s, unit);
	else if (a >= 10 || a == 0)
		snprintf(q, sizeof(q), "%.0f", per_s);
	else if (a >= 1)
		snprintf(q, sizeof(q), "%.1f", per_s);
	else
		snprintf(q, sizeof(q), "%.2g", per_s);
	snprintf(buf, len, "%s/s", q);
}

/* "+80 (5.3/s)"; without an interval there is no rate. */
static void format_delta(char *buf, size_t len, double delta, uint64_t interval_ns, enum unit unit)
{
	char d[QTY_MAX], rate[RATE_MAX];

	format_quantity(d, sizeof(d), delta, unit);
	if (interval_ns == 0) {
		snprintf(buf, len, "%s%s", delta >= 0 ? "+" : "", d);
		return;
	}
	format_rate(rate, sizeof(rate), delta / ((double)interval_ns / 1e9), unit);
	snprintf(buf, len, "%s%s (%s)", delta >= 0 ? "+" : "", d, rate);
}

/* ---- table: rows -------------------------------------------------------------------------- */

struct res_line;

struct table_row {
	const struct ps_family *family; /* NULL: the service's resources line */
	const struct ps_series *series;
	const struct res_line *res;
	const char *service;
	size_t order; /* position in the registry, keeps the sort stable */
	double activity;      /* what moved since the last flush: the busiest rows are shown */
	size_t service_index; /* which service, counted in table order */
	struct sbuf labels;
	char main[CELL_MAX];   /* total / gauge value / histogram count */
	char delta[CELL_MAX];  /* change since the previous flush, with its rate */
	char avg[QTY_MAX + 4]; /* histograms: "avg 3.1ms", "p50 2.5ms", "p99 40ms" */
	char p50[QTY_MAX + 4];
	char p99[QTY_MAX + 4];
};

enum table_col {
	COL_NAME,
	COL_LABELS,
	COL_MAIN,
	COL_DELTA,
	COL_AVG,
	COL_P50,
	COL_P99,
	N_COLS,
};

static const char *series_service(const struct ps_family *f, const struct ps_series *s)
{
	return f->n_labels > 0 && s->values[0] ? s->values[0] : "";
}

static bool series_moved(const struct ps_family *f, const struct ps_series *s)
{
	if (f->type == PS_METRIC_HISTOGRAM)
		return s->count != s->flushed_count;
	return s->value != s->flushed_value;
}

/* HTTP and database series read naturally as bare values: GET 200 /users/{id}. */
static bool family_shows_bare_values(const struct ps_family *f)
{
	return strncmp(f->name, "http_", 5) == 0 || strncmp(f->name, "db_", 3) == 0;
}

/*
 * The label that pairs with f->labels[i] when it ends in `from`
 * (peer_address -> peer_port and back), or -1.
 */
static ssize_t label_partner(const struct ps_family *f, size_t i, const char *from, const char *to)
{
	const char *name = f->labels[i];
	size_t len = strlen(name), stem = len - strlen(from);
	char partner[128];

	if (!has_suffix(name, len, from) || stem + strlen(to) >= sizeof(partner))
		return -1;
	snprintf(partner, sizeof(partner), "%.*s%s", (int)stem, name, to);
	for (size_t j = 0; j < f->n_labels; j++)
		if (strcmp(f->labels[j], partner) == 0)
			return (ssize_t)j;
	return -1;
}

/* addr:port, [v6]:port, or *:port for inbound series (no peer address, local port). */
static void add_host_port(struct sbuf *b, const char *addr, const char *port)
{
	bool v6 = strchr(addr, ':') != NULL;

	sbuf_puts(b, *addr ? (v6 ? "[" : "") : "*");
	sbuf_add_printable(b, addr);
	sbuf_puts(b, v6 ? "]:" : ":");
	sbuf_add_printable(b, port);
}

static void add_label_text(struct sbuf *b, const char *key, size_t key_len, bool bare)
{
	if (b->len > 0)
		sbuf_puts(b, " ");
	if (!bare) {
		sbuf_add(b, key, key_len);
		sbuf_puts(b, "=");
	}
}

/* Everything but service_name, compact: direction=outbound peer=10.0.0.5:5432. */
static void format_row_labels(struct sbuf *b, const struct ps_family *f, const struct ps_series *s)
{
	bool bare = family_shows_bare_values(f);

	for (size_t i = 1; i < f->n_labels; i++) {
		const char *value = s->values[i] ? s->values[i] : "";
		ssize_t port = label_partner(f, i, "_address", "_port");

		/* A port printed with its address: peer=10.0.0.5:5432 */
		if (label_partner(f, i, "_port", "_address") >= 0)
			continue;
		if (port >= 0) {
			const char *port_value = s->values[port] ? s->values[port] : "";

			if (!*value && !*port_value)
				continue;
			add_label_text(b, f->labels[i], strlen(f->labels[i]) - strlen("_address"),
				       bare);
			add_host_port(b, value, port_value);
		} else if (*value) {
			add_label_text(b, f->labels[i], strlen(f->labels[i]), bare);
			sbuf_add_printable(b, value);
		}
	}
}

static void format_histogram_row(struct table_row *row, uint64_t interval_ns, enum unit unit)
{
	const struct ps_family *f = row->family;
	const struct ps_series *s = row->series;
	char q[QTY_MAX];

	snprintf(row->main, sizeof(row->main), "n=%" PRIu64, s->count);
	format_delta(row->delta, sizeof(row->delta), (double)s->count - (double)s->flushed_count,
		     interval_ns, UNIT_NONE);
	if (s->count == 0)
		return;
	format_quantity(q, sizeof(q), s->sum / (double)s->count, unit);
	snprintf(row->avg, sizeof(row->avg), "avg %s", q);
	format_quantity(q, sizeof(q), ps_series_percentile(f, s, 0.5), unit);
	snprintf(row->p50, sizeof(row->p50), "p50 %s", q);
	format_quantity(q, sizeof(q), ps_series_percentile(f, s, 0.99), unit);
	snprintf(row->p99, sizeof(row->p99), "p99 %s", q);
}

static void format_row(struct table_row *row, uint64_t interval_ns)
{
	const struct ps_family *f = row->family;
	const struct ps_series *s = row->series;
	enum unit unit = family_unit(f);
	char q[QTY_MAX];

	format_row_labels(&row->labels, f, s);
	switch (f->type) {
	case PS_METRIC_COUNTER:
		format_quantity(q, sizeof(q), s->value, unit);
		snprintf(row->main, sizeof(row->main), "total %s", q);
		format_delta(row->delta, sizeof(row->delta), s->value - s->flushed_value,
			     interval_ns, unit);
		break;
	case PS_METRIC_GAUGE:
		format_quantity(row->main, sizeof(row->main), s->value, unit);
		break;
	case PS_METRIC_HISTOGRAM:
		format_histogram_row(row, interval_ns, unit);
		break;
	}
}

static const char *row_cell(const struct table_row *row, enum table_col col)
{
	if (!row->family) /* the resources line: its name, then the line in the labels column */
		return col == COL_NAME			    ? "resources" :
		       col == COL_LABELS && row->labels.buf ? row->labels.buf :
							      "";
	switch (col) {
	case COL_NAME:
		return row->family->name;
	case COL_LABELS:
		return row->labels.buf ? row->labels.buf : "";
	case COL_MAIN:
		return row->main;
	case COL_DELTA:
		return row->delta;
	case COL_AVG:
		return row->avg;
	case COL_P50:
		return row->p50;
	default:
		return row->p99;
	}
}

/*
 * ---- table: a service's resources on one line --------------------------------------------
 *
 * The resources plugin's counters and gauges fold into one line under the
 * service's name, above its RED rows: "resources  cpu 1.20 (user 0.90) ...".
 * Counters show their rate over the flush interval (CPU seconds per second is
 * cores busy), or their growth when there is no interval yet. The line is the
 * service's summary: it is always shown, and max_rows does not count it. The
 * disk latency histogram stays a row of its own.
 */
enum res_field {
	RES_CPU_USER,
	RES_CPU_SYSTEM,
	RES_DELAY,
	RES_RSS,
	RES_PROCS,
	RES_DISK_READ,
	RES_DISK_WRITE,
	RES_NET_TX,
	RES_NET_RX,
	RES_OOM,
	N_RES,
};

struct res_line {
	const char *service;
	double v[N_RES];
	bool has[N_RES];
	bool moved; /* a gauge, or a counter that grew: worth a line */
};

/* family, label (NULL: none) and its value, field */
static const struct {
	const char *family, *label, *value;
	enum res_field field;
} res_sources[] = {
	{ "process_cpu_time_seconds_total", "cpu_mode", "user", RES_CPU_USER },
	{ "process_cpu_time_seconds_total", "cpu_mode", "system", RES_CPU_SYSTEM },
	{ "periscope_process_cpu_delay_seconds_total", NULL, NULL, RES_DELAY },
	{ "process_memory_usage_bytes", NULL, NULL, RES_RSS },
	{ "periscope_processes", NULL, NULL, RES_PROCS },
	{ "process_disk_io_bytes_total", "disk_io_direction", "read", RES_DISK_READ },
	{ "process_disk_io_bytes_total", "disk_io_direction", "write", RES_DISK_WRITE },
	{ "process_network_io_bytes_total", "network_io_direction", "transmit", RES_NET_TX },
	{ "process_network_io_bytes_total", "network_io_direction", "receive", RES_NET_RX },
	{ "periscope_process_oom_kills_total", NULL, NULL, RES_OOM },
};

#define N_RES_SOURCES (sizeof(res_sources) / sizeof(res_sources[0]))

static bool res_family(const struct ps_family *f)
{
	for (size_t i = 0; i < N_RES_SOURCES; i++)
		if (strcmp(f->name, res_sources[i].family) == 0)
			return true;
	return false;
}

static int res_field_of(const struct ps_family *f, const struct ps_series *s)
{
	for (size_t i = 0; i < N_RES_SOURCES; i++) {
		if (strcmp(f->name, res_sources[i].family) != 0)
			continue;
		if (!res_sources[i].label)
			return (int)res_sources[i].field;
		for (size_t l = 1; l < f->n_labels; l++)
			if (strcmp(f->labels[l], res_sources[i].label) == 0 && s->values[l] &&
			    strcmp(s->values[l], res_sources[i].value) == 0)
				return (int)res_sources[i].field;
	}
	return -1;
}

static struct res_line *res_line_of(struct res_line *lines, size_t *n, const char *service)
{
	for (size_t i = *n; i-- > 0;)
		if (strcmp(lines[i].service, service) == 0)
			return &lines[i];
	lines[*n].service = service;
	return &lines[(*n)++];
}

/* Adds s to its service's line; false if s is not one of the line's series. */
static bool res_collect(struct res_line *lines, size_t *n, const struct ps_family *f,
			const struct ps_series *s)
{
	struct res_line *line;
	int field;

	if (f->type == PS_METRIC_HISTOGRAM || !res_family(f))
		return false;
	field = res_field_of(f, s);
	if (field < 0)
		return true; /* a label value we do not know: left out, not a row */
	line = res_line_of(lines, n, series_service(f, s));
	line->has[field] = true;
	line->moved = line->moved || f->type == PS_METRIC_GAUGE || series_moved(f, s);
	line->v[field] += f->type == PS_METRIC_GAUGE ? s->value : s->value - s->flushed_value;
	return true;
}

static void res_append(struct sbuf *b, const char *text)
{
	if (b->len)
		sbuf_puts(b, "  ");
	sbuf_puts(b, text);
}

/* A counter's growth as a rate ("1.2MiB/s"), or the growth itself without an interval. */
static void res_counter(char *buf, size_t len, double delta, uint64_t interval_ns, enum unit unit)
{
	if (interval_ns)
		format_rate(buf, len, delta / ((double)interval_ns / 1e9), unit);
	else
		format_quantity(buf, len, delta, unit);
}

static void format_res_line(struct sbuf *b, const struct res_line *l, uint64_t interval_ns)
{
	double per = interval_ns ? (double)interval_ns / 1e9 : 0;
	char text[2 * RATE_MAX + 32], q1[RATE_MAX], q2[RATE_MAX];

	if (l->has[RES_CPU_USER] || l->has[RES_CPU_SYSTEM]) {
		double cpu = l->v[RES_CPU_USER] + l->v[RES_CPU_SYSTEM];

		/* CPU seconds per second: cores busy */
		if (per)
			snprintf(text, sizeof(text), "cpu %.2f (user %.2f)", cpu / per,
				 l->v[RES_CPU_USER] / per);
		else
			snprintf(text, sizeof(text), "cpu %.3gs", cpu);
		res_append(b, text);
	}
	if (l->has[RES_DELAY]) {
		res_counter(q1, sizeof(q1), l->v[RES_DELAY], interval_ns, UNIT_SECONDS);
		snprintf(text, sizeof(text), "cpu wait %s", q1);
		res_append(b, text);
	}
	if (l->has[RES_RSS]) {
		format_quantity(q1, sizeof(q1), l->v[RES_RSS], UNIT_BYTES);
		snprintf(text, sizeof(text), "rss %s", q1);
		res_append(b, text);
	}
	if (l->has[RES_PROCS]) {
		snprintf(text, sizeof(text), "procs %.0f", l->v[RES_PROCS]);
		res_append(b, text);
	}
	if (l->has[RES_DISK_READ] || l->has[RES_DISK_WRITE]) {
		res_counter(q1, sizeof(q1), l->v[RES_DISK_READ], interval_ns, UNIT_BYTES);
		res_counter(q2, sizeof(q2), l->v[RES_DISK_WRITE], interval_ns, UNIT_BYTES);
		snprintf(text, sizeof(text), "disk r %s w %s", q1, q2);
		res_append(b, text);
	}
	if (l->has[RES_NET_TX] || l->has[RES_NET_RX]) {
		res_counter(q1, sizeof(q1), l->v[RES_NET_TX], interval_ns, UNIT_BYTES);
		res_counter(q2, sizeof(q2), l->v[RES_NET_RX], interval_ns, UNIT_BYTES);
		snprintf(text, sizeof(text), "net tx %s rx %s", q1, q2);
		res_append(b, text);
	}
	if (l->v[RES_OOM] > 0) {
		snprintf(text, sizeof(text), "oom kills +%.0f", l->v[RES_OOM]);
		res_append(b, text);
	}
}

/* Our own series go last; the rest by service. */
static int compare_services(const struct table_row *a, const struct table_row *b)
{
	bool a_self = strcmp(a->service, SELF_SERVICE) == 0;
	bool b_self = strcmp(b->service, SELF_SERVICE) == 0;

	if (a_self != b_self)
		return a_self ? 1 : -1;
	return strcmp(a->service, b->service);
}

/* By service, then in registry order. */
static int compare_rows(const void *pa, const void *pb)
{
	const struct table_row *a = pa, *b = pb;
	int c = compare_services(a, b);

	if (c)
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* By service, the busiest first. */
static int compare_activity(const void *pa, const void *pb)
{
	const struct table_row *a = pa, *b = pb;
	int c = compare_services(a, b);

	if (c)
		return c;
	if (a->activity != b->activity)
		return a->activity > b->activity ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* Terminal columns taken by s: UTF-8 continuation bytes take none. */
static size_t display_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void pad(FILE *out, size_t n)
{
	while (n-- > 0)
		fputc(' ', out);
}

static void print_row(FILE *out, const struct table_row *row, const size_t *widths)
{
	int last = -1;

	for (int c = 0; c < N_COLS; c++)
		if (*row_cell(row, c))
			last = c;
	fputs("  ", out);
	for (int c = 0; c <= last; c++) {
		const char *text = row_cell(row, c);
		size_t w = display_width(text);

		fputs(text, out);
		if (c < last)
			pad(out, (w < widths[c] ? widths[c] - w : 0) + 2);
	}
	fputc('\n', out);
}

static void print_service(FILE *out, const struct stdout_sink *st, const char *service)
{
	struct sbuf name = { 0 };

	sbuf_add_printable(&name, *service ? service : "(unknown)");
	fprintf(out, "%s%s%s\n", st->color ? "\033[1m" : "", name.buf ? name.buf : "",
		st->color ? "\033[0m" : "");
	free(name.buf);
}

static void print_header(FILE *out, const struct stdout_sink *st, const struct ps_flush_ctx *ctx,
			 size_t n_series)
{
	time_t secs = (time_t)(ctx->now_unix_ns / 1000000000ull);
	char when[32] = "?";
	struct tm tm;

	if (gmtime_r(&secs, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(out, "%s── periscope %s ── %.1fs ── %zu series ──%s\n", st->color ? "\033[2m" : "",
		when, (double)ctx->interval_ns / 1e9, n_series, st->color ? "\033[0m" : "");
}

/* Flow records (one per TCP connection that ended) are written whole only in json. */
static void print_flows(FILE *out, const struct stdout_sink *st)
{
	if (!st->seen_flows)
		return;
	fprintf(out, "TCP connections ended since the last flush: %" PRIu64, st->flows_closed);
	if (st->flows_failed)
		fprintf(out, " (%" PRIu64 " failed)", st->flows_failed);
	fputs(" (a flow record each in format: json)\n", out);
}

/* After a service's last row: how many rows of it max_rows left out. */
static size_t omitted_after(const struct table_row *rows, size_t n, size_t i, const size_t *omitted)
{
	if (i + 1 < n && strcmp(rows[i + 1].service, rows[i].service) == 0)
		return 0;
	return omitted[rows[i].service_index];
}

static void print_rows(FILE *out, struct stdout_sink *st, const struct table_row *rows, size_t n,
		       const size_t *omitted)
{
	size_t widths[N_COLS] = { 0 };
	bool flows_printed = false;

	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < N_COLS; c++) {
			size_t w = display_width(row_cell(&rows[i], c));

			if (!rows[i].family && c == COL_LABELS)
				continue; /* a free-form line does not widen the columns */
			if (c == COL_LABELS && w > TABLE_LABELS_MAX_WIDTH)
				continue;
			if (w > widths[c])
				widths[c] = w;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (!flows_printed && strcmp(rows[i].service, SELF_SERVICE) == 0) {
			print_flows(out, st);
			flows_printed = true;
		}
		size_t left_out;

		if (i == 0 || strcmp(rows[i].service, rows[i - 1].service) != 0)
			print_service(out, st, rows[i].service);
		print_row(out, &rows[i], widths);
		left_out = omitted_after(rows, n, i, omitted);
		if (left_out)
			fprintf(out, "  ... %zu more row%s (the %zu busiest are shown: max_rows)\n",
				left_out, left_out == 1 ? "" : "s", st->max_rows);
	}
	if (!flows_printed)
		print_flows(out, st);
}

/* Counters and histograms that never left zero say nothing. */
static bool never_moved(const struct ps_family *f, const struct ps_series *s)
{
	if (f->type == PS_METRIC_HISTOGRAM)
		return s->count == 0;
	return f->type == PS_METRIC_COUNTER && s->value == 0 && s->flushed_value == 0;
}

static double series_activity(const struct ps_family *f, const struct ps_series *s)
{
	if (f->type == PS_METRIC_HISTOGRAM)
		return (double)(s->count - s->flushed_count);
	if (f->type == PS_METRIC_COUNTER)
		return fabs(s->value - s->flushed_value);
	return 0;
}

/* Collects the rows worth showing: moved since the last flush, gauges, or the first flush. */
static struct table_row *collect_rows(const struct stdout_sink *st, const struct ps_registry *r,
				      size_t *n_rows, size_t *n_series, struct res_line **res)
{
	struct table_row *rows;
	size_t total = 0, n = 0, n_res = 0;

	for (size_t i = 0; r && i < r->n_families; i++)
		total += r->families[i]->n_series;
	*n_series = total;
	rows = calloc(total ? total : 1, sizeof(*rows));
	/* At most one resources line per series: each line takes at least one. */
	*res = calloc(total ? total : 1, sizeof(**res));
	if (!rows || !*res) {
		free(rows);
		free(*res);
		*res = NULL;
		return NULL;
	}
	for (size_t i = 0; r && i < r->n_families; i++) {
		const struct ps_family *f = r->families[i];

		for (size_t j = 0; j < f->n_series; j++) {
			const struct ps_series *s = f->series[j];

			if (res_collect(*res, &n_res, f, s))
				continue;
			if (st->flushed_once && f->type != PS_METRIC_GAUGE && !series_moved(f, s))
				continue;
			if (never_moved(f, s))
				continue;
			rows[n].family = f;
			rows[n].series = s;
			rows[n].service = series_service(f, s);
			rows[n].order = n + 1; /* after the service's resources line */
			rows[n].activity = series_activity(f, s);
			n++;
		}
	}
	for (size_t i = 0; i < n_res; i++) {
		if (st->flushed_once && !(*res)[i].moved)
			continue;
		rows[n].res = &(*res)[i];
		rows[n].service = (*res)[i].service;
		rows[n].order = 0;
		rows[n].activity = INFINITY; /* first among the service's rows */
		n++;
	}
	*n_rows = n;
	return rows;
}

/*
 * Keeps the max_rows busiest rows of each service (rows sorted by service and
 * activity); omitted[k] says how many the k-th service lost. Returns the rows
 * kept, at the front.
 */
static size_t keep_busiest(struct table_row *rows, size_t n, size_t max_rows, size_t *omitted)
{
	size_t kept = 0, service = 0, in_service = 0;

	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(rows[i].service, rows[i - 1].service) != 0) {
			service++;
			in_service = 0;
		}
		/* The resources line is the service's summary, not one of its rows. */
		if (max_rows && rows[i].family && in_service++ >= max_rows) {
			omitted[service]++;
			continue;
		}
		rows[i].service_index = service;
		rows[kept++] = rows[i];
	}
	return kept;
}

static int table_write(struct stdout_sink *st, FILE *out, const struct ps_flush_ctx *ctx)
{
	size_t n_rows = 0, n_series = 0, n_kept;
	size_t *omitted;
	struct res_line *res = NULL;
	struct table_row *rows;
	int err = 0;

	rows = collect_rows(st, ctx->registry, &n_rows, &n_series, &res);
	if (!rows)
		return -ENOMEM;
	omitted = calloc(n_rows + 1, sizeof(*omitted));
	if (!omitted) {
		err = -ENOMEM;
		goto out;
	}
	/* Only the rows shown are formatted: 30 000 series make a table of services, not a dump. */
	qsort(rows, n_rows, sizeof(*rows), compare_activity);
	n_kept = keep_busiest(rows, n_rows, st->max_rows, omitted);
	for (size_t i = 0; i < n_kept; i++) {
		if (rows[i].res)
			format_res_line(&rows[i].labels, rows[i].res, ctx->interval_ns);
		else
			format_row(&rows[i], ctx->interval_ns);
		if (rows[i].labels.failed)
			err = -ENOMEM;
	}
	if (err)
		goto out;
	/* Back to registry order within each service. */
	qsort(rows, n_kept, sizeof(*rows), compare_rows);

	print_header(out, st, ctx, n_series);
	print_rows(out, st, rows, n_kept, omitted);
	if (n_kept == 0 && !st->seen_flows)
		fputs("  (nothing moved since the last flush)\n", out);
	fputc('\n', out);
out:
	/* Rows past n_kept are stale copies, never formatted: their buffers are NULL. */
	for (size_t i = 0; i < n_rows; i++)
		free(rows[i].labels.buf);
	free(rows);
	free(res);
	free(omitted);
	return err;
}

/* ---- output: formatted on the loop, written by a thread ------------------------------------ */

/*
 * What the writer thread does with formatted text: a reader that does not keep
 * up holds up that thread and never the loop (the ring buffers drain there).
 */
static int write_stream(void *arg, const char *buf, size_t len)
{
	FILE *out = arg;
	int err = 0;

	errno = 0;
	if (fwrite(buf, 1, len, out) != len || fflush(out) != 0)
		err = errno ? -errno : -EIO;
	clearerr(out);
	return err;
}

/* The write error since the last call (0 if none); says once what a slow reader cost. */
static int writer_status(struct ps_writer *w)
{
	struct ps_writer_report r;

	ps_writer_report(w, &r);
	if (r.dropped)
		ps_warn("sink", "stdout: not read fast enough; %" PRIu64 " bytes of output dropped",
			r.dropped);
	return r.error;
}

/* Hands formatted text on: to the writer thread, or straight to the stream. */
static int emit(struct stdout_sink *st, const char *buf, size_t len)
{
	int err = 0;

	if (st->writer) {
		ps_writer_submit(st->writer, buf, len);
		return 0;
	}
	errno = 0;
	if (fwrite(buf, 1, len, st->out) != len || fflush(st->out) != 0 || ferror(st->out))
		err = errno ? -errno : -EIO;
	clearerr(st->out);
	return err;
}

/* ---- the sink ------------------------------------------------------------------------------ */

static int stdout_flush(void *state, const struct ps_flush_ctx *ctx)
{
	struct stdout_sink *st = state;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int err = 0, out_err;

	if (!mem)
		return -ENOMEM;
	switch (st->format) {
	case FORMAT_TABLE:
		err = table_write(st, mem, ctx);
		st->flows_closed = 0;
		st->flows_failed = 0;
		break;
	case FORMAT_JSON:
		json_write_metrics(mem, ctx);
		break;
	case FORMAT_PROMETHEUS:
		fprintf(mem, "# periscope snapshot %" PRIu64 "\n", ctx->now_unix_ns / 1000000);
		err = ps_prom_write(mem, ctx);
		break;
	}
	st->flushed_once = true;
	if (fclose(mem) != 0 && !err)
		err = -ENOMEM;
	out_err = emit(st, buf, len);
	free(buf);
	if (st->writer && !out_err)
		out_err = writer_status(st->writer);
	return err ? err : out_err;
}

/* json: a batch of spans is one OTLP/JSON line, {"resourceSpans":[ <the batch> ]}. */
static void write_spans(struct stdout_sink *st, const struct ps_span_batch *b)
{
	static const char head[] = "{\"resourceSpans\":[", tail[] = "]}\n";
	size_t len = sizeof(head) - 1 + b->len + sizeof(tail) - 1;
	char *line;

	if (st->format != FORMAT_JSON || !b->resource_spans_json || !b->len)
		return;
	line = malloc(len);
	if (!line)
		return;
	memcpy(line, head, sizeof(head) - 1);
	memcpy(line + sizeof(head) - 1, b->resource_spans_json, b->len);
	memcpy(line + sizeof(head) - 1 + b->len, tail, sizeof(tail) - 1);
	emit(st, line, len); /* errors stay flagged and surface at the next flush */
	free(line);
}

static void stdout_event(void *state, const struct ps_event *ev)
{
	struct stdout_sink *st = state;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;

	if (ev->type == PS_EVENT_SPANS && ev->spans) {
		write_spans(st, ev->spans);
		return;
	}
	if (ev->type != PS_EVENT_FLOW || !ev->flow)
		return;
	switch (st->format) {
	case FORMAT_TABLE:
		st->seen_flows = true;
		st->flows_closed++;
		st->flows_failed += ev->flow->failed;
		break;
	case FORMAT_JSON:
		mem = open_memstream(&buf, &len);
		if (!mem)
			break;
		json_write_flow(mem, ev->plugin, ev->flow);
		if (fclose(mem) == 0)
			emit(st, buf, len); /* errors stay flagged and surface at the next flush */
		free(buf);
		break;
	case FORMAT_PROMETHEUS:
		break;
	}
}

static int parse_format(const char *name, enum stdout_format *out)
{
	if (!name) {
		*out = FORMAT_TABLE;
		return 0;
	}
	for (int i = 0; format_names[i]; i++) {
		if (strcmp(name, format_names[i]) == 0) {
			*out = (enum stdout_format)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void *open_sink(const void *config, FILE *out, bool threaded)
{
	const struct stdout_config *cfg = config;
	struct stdout_sink *st;
	enum stdout_format format;
	int err;

	if (!out) {
		errno = EINVAL;
		return NULL;
	}
	err = parse_format(cfg ? cfg->format : NULL, &format);
	if (err) {
		errno = -err;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->out = out;
	st->format = format;
	st->max_rows = cfg ? (size_t)cfg->max_rows : 20;
	st->color = format == FORMAT_TABLE && isatty(fileno(out));
	if (threaded &&
	    !(st->writer = ps_writer_start(PS_WRITER_APPEND, PENDING_MAX, write_stream, out))) {
		free(st);
		return NULL;
	}
	return st;
}

void *ps_sink_stdout_open_stream(const void *config, FILE *out)
{
	return open_sink(config, out, false);
}

void *ps_sink_stdout_open_threaded(const void *config, FILE *out)
{
	return open_sink(config, out, true);
}

static void *stdout_open(const void *config)
{
	return open_sink(config, stdout, true);
}

static void stdout_close(void *state)
{
	struct stdout_sink *st = state;

	if (!st)
		return;
	/* What is pending still goes out, without the loop waiting for a slow reader. */
	ps_writer_release(st->writer, NULL, NULL);
	free(st);
}

static bool stdout_takes_spans(void *state)
{
	const struct stdout_sink *st = state;

	return st && st->format == FORMAT_JSON;
}

const struct ps_sink_type ps_sink_stdout = {
	.name = "stdout",
	.config_map = stdout_config_map,
	.config_size = sizeof(struct stdout_config),
	.open = stdout_open,
	.flush = stdout_flush,
	.event = stdout_event,
	.close = stdout_close,
	.takes_spans = stdout_takes_spans,
};
