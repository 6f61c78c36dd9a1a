/*
 * capprobe: a second L7 protocol for the capture tests. It claims the
 * connections on its configured ports and checks every captured byte against
 * the pattern the test's peers send (byte n of a direction is n % 251), so
 * that order, splits, coalescing and gaps are all checked, not just counted.
 *
 *   periscope_capprobe_bytes_total{side,direction}     bytes moved (chunk totals)
 *   periscope_capprobe_captured_bytes_total{side,...}  of those, bytes seen
 *   periscope_capprobe_mismatches_total                seen bytes off the pattern
 *   periscope_capprobe_connections_total{event}        open / close
 *
 * side is "server" when the local port is one of the ports, else "client".
 */
#include <errno.h>
#include <stdlib.h>

#include <periscope/plugin.h>

#define SUBSYS "capprobe"

struct probe_config {
	struct ps_portlist ports;
	uint64_t capture_bytes;
};

struct probe {
	const struct probe_config *cfg;
	struct ps_capture_reg *reg;
	struct ps_metric *bytes, *captured, *mismatches, *connections;
};

struct probe_conn {
	const char *side;
	uint64_t offset[2]; /* stream offset per direction */
};

static const char *side_of(const struct probe *pr, const struct ps_capture_conn *c)
{
	for (size_t i = 0; i < pr->cfg->ports.n; i++)
		if (c->local.port == pr->cfg->ports.v[i])
			return "server";
	return "client";
}

static void count_connection(struct probe *pr, const char *event)
{
	const char *values[] = { "periscoped", event, NULL };

	ps_metric_add(pr->connections, values, 1);
}

static void *on_open(void *ctx, const struct ps_capture_conn *c)
{
	struct probe *pr = ctx;
	struct probe_conn *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->side = side_of(pr, c);
	count_connection(pr, "open");
	return pc;
}

static int on_data(void *ctx, void *state, const struct ps_capture_conn *c,
		   const struct ps_capture_chunk *ch)
{
	struct probe *pr = ctx;
	struct probe_conn *pc = state;
	const char *dir = ch->dir == PS_CAPTURE_OUT ? "out" : "in";
	const char *values[] = { "periscoped", pc->side, dir, NULL };
	const char *none[] = { "periscoped", NULL };
	uint64_t *off = &pc->offset[ch->dir == PS_CAPTURE_OUT];
	uint64_t bad = 0;

	for (size_t i = 0; i < ch->len; i++)
		bad += ch->data[i] != (uint8_t)((*off + i) % 251);
	*off += ch->total;
	ps_metric_add(pr->bytes, values, (double)ch->total);
	ps_metric_add(pr->captured, values, (double)ch->len);
	ps_metric_add(pr->mismatches, none, (double)bad);
	return 0;
}

static void on_close(void *ctx, void *state, const struct ps_capture_conn *c, uint64_t ts_ns)
{
	count_connection(ctx, "close");
	free(state);
}

static struct ps_metric *counter(const char *name, const char *const *labels)
{
	return ps_metric_register(&(struct ps_metric_desc){
		.name = name, .help = name, .type = PS_METRIC_COUNTER, .labels = labels });
}

static int probe_init(struct ps_plugin *p, const void *config)
{
	struct probe *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return -ENOMEM;
	pr->cfg = config;
	ps_plugin_set_data(p, pr);
	return 0;
}

static int probe_start(struct ps_plugin *p)
{
	static const char *const byte_labels[] = { "service_name", "side", "direction", NULL };
	static const char *const conn_labels[] = { "service_name", "event", NULL };
	static const char *const no_labels[] = { "service_name", NULL };
	struct probe *pr = ps_plugin_data(p);
	const struct ps_capture_protocol proto = {
		.struct_size = sizeof(proto),
		.name = SUBSYS,
		.classifier = PS_CAPTURE_CLASSIFY_NONE,
		.ports = pr->cfg->ports.v,
		.n_ports = pr->cfg->ports.n,
		.capture_bytes = (uint32_t)pr->cfg->capture_bytes,
		.ctx = pr,
		.conn_open = on_open,
		.conn_data = on_data,
		.conn_close = on_close,
	};

	pr->bytes = counter("periscope_capprobe_bytes_total", byte_labels);
	pr->captured = counter("periscope_capprobe_captured_bytes_total", byte_labels);
	pr->mismatches = counter("periscope_capprobe_mismatches_total", no_labels);
	pr->connections = counter("periscope_capprobe_connections_total", conn_labels);
	if (!pr->bytes || !pr->captured || !pr->mismatches || !pr->connections)
		return -EINVAL;
	pr->reg = ps_capture_register(p, &proto);
	return pr->reg ? 0 : -errno;
}

static void probe_stop(struct ps_plugin *p)
{
	struct probe *pr = ps_plugin_data(p);

	ps_capture_unregister(pr->reg);
	pr->reg = NULL;
}

static void probe_destroy(struct ps_plugin *p)
{
	free(ps_plugin_data(p));
}

static const struct ps_cfg_key probe_config_map[] = {
	{ .name = "ports", .type = PS_CFG_PORTLIST, .offset = offsetof(struct probe_config, ports) },
	{ .name = "capture_bytes", .type = PS_CFG_SIZE, .def = "4096",
	  .offset = offsetof(struct probe_config, capture_bytes) },
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "capprobe", .version = "test",
		 .description = "checks what the capture hands a second L7 protocol",
		 .config_map = probe_config_map, .config_size = sizeof(struct probe_config),
		 .init = probe_init, .start = probe_start, .stop = probe_stop,
		 .destroy = probe_destroy, );
