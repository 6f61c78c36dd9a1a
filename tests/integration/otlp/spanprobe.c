/*
 * spanprobe: a stand-in for tracectx in the otlp sink's tests. At every flush
 * (its collect) it publishes `batches_per_flush` PS_EVENT_SPANS batches of
 * `spans_per_batch` spans each, until `total` spans are out (0: no end), and
 * counts them in periscope_spanprobe_spans_total: the ground truth the test
 * holds the sink's sent and dropped counts against.
 *
 * Span n (from 1) has spanId n in 16 hex digits, so the receiver can tell a
 * span sent twice from two spans; `pad` bytes of attribute make batches as
 * big as a test needs to fill the sink's queue.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <periscope/plugin.h>

struct probe_config {
	uint64_t spans_per_batch;
	uint64_t batches_per_flush;
	uint64_t total;
	uint64_t pad;
};

struct probe {
	const struct probe_config *cfg;
	struct ps_metric *emitted;
	uint64_t next_id; /* spans published so far */
	char *padding;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One ResourceSpans object of n spans, in the OTLP protobuf JSON mapping. */
static char *batch_json(struct probe *pr, uint64_t n, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	uint64_t end = now_ns();

	if (!f)
		return NULL;
	fprintf(f, "{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
		   "{\"stringValue\":\"pstest-otlp\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":"
		   "\"spanprobe\"},\"spans\":[");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t id = ++pr->next_id;

		fprintf(f,
			"%s{\"traceId\":\"5eed%012" PRIx64 "%016" PRIx64
			"\",\"spanId\":\"%016" PRIx64
			"\",\"name\":\"GET /probe/{id}\",\"kind\":2,\"startTimeUnixNano\":\"%" PRIu64
			"\",\"endTimeUnixNano\":\"%" PRIu64 "\",\"attributes\":[{\"key\":"
			"\"probe.pad\",\"value\":{\"stringValue\":\"%s\"}}],\"status\":{}}",
			i ? "," : "", id / 7, id, id, end - 1000000, end, pr->padding);
	}
	fprintf(f, "]}]}");
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

static int probe_collect(struct ps_plugin *p)
{
	struct probe *pr = ps_plugin_data(p);
	const char *values[] = { "periscoped", NULL };

	for (uint64_t b = 0; b < pr->cfg->batches_per_flush; b++) {
		uint64_t n = pr->cfg->spans_per_batch;
		struct ps_span_batch batch;
		size_t len;
		char *json;

		if (pr->cfg->total && pr->next_id + n > pr->cfg->total)
			n = pr->cfg->total - pr->next_id;
		if (!n)
			break;
		json = batch_json(pr, n, &len);
		if (!json)
			return -ENOMEM;
		batch = (struct ps_span_batch){ .resource_spans_json = json,
						.len = len,
						.span_count = (uint32_t)n };
		ps_event_emit(&(struct ps_event){
			.type = PS_EVENT_SPANS, .plugin = "spanprobe", .spans = &batch });
		ps_metric_add(pr->emitted, values, (double)n);
		free(json);
	}
	return 0;
}

static int probe_init(struct ps_plugin *p, const void *config)
{
	const struct probe_config *cfg = config;
	struct probe *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return -ENOMEM;
	pr->cfg = cfg;
	pr->padding = malloc(cfg->pad + 1);
	if (!pr->padding) {
		free(pr);
		return -ENOMEM;
	}
	memset(pr->padding, 'x', cfg->pad);
	pr->padding[cfg->pad] = '\0';
	ps_plugin_set_data(p, pr);
	return 0;
}

static int probe_start(struct ps_plugin *p)
{
	static const char *const labels[] = { "service_name", NULL };
	struct probe *pr = ps_plugin_data(p);

	pr->emitted = ps_metric_register(
		&(struct ps_metric_desc){ .name = "periscope_spanprobe_spans_total",
					  .help = "spans spanprobe published",
					  .type = PS_METRIC_COUNTER,
					  .labels = labels });
	return pr->emitted ? 0 : -errno;
}

static void probe_stop(struct ps_plugin *p)
{
}

static void probe_destroy(struct ps_plugin *p)
{
	struct probe *pr = ps_plugin_data(p);

	if (pr)
		free(pr->padding);
	free(pr);
}

static const struct ps_cfg_key probe_config_map[] = {
	{ .name = "spans_per_batch",
	  .type = PS_CFG_UINT,
	  .def = "10",
	  .offset = offsetof(struct probe_config, spans_per_batch),
	  .min = "1",
	  .max = "10000" },
	{ .name = "batches_per_flush",
	  .type = PS_CFG_UINT,
	  .def = "1",
	  .offset = offsetof(struct probe_config, batches_per_flush),
	  .max = "1000" },
	{ .name = "total",
	  .type = PS_CFG_UINT,
	  .def = "0",
	  .offset = offsetof(struct probe_config, total) },
	{ .name = "pad",
	  .type = PS_CFG_SIZE,
	  .def = "0",
	  .offset = offsetof(struct probe_config, pad),
	  .max = "64KiB" },
	{ .name = NULL },
};

PS_PLUGIN_DEFINE(.name = "spanprobe", .version = "test",
		 .description = "publishes span batches for the otlp sink's tests",
		 .config_map = probe_config_map, .config_size = sizeof(struct probe_config),
		 .init = probe_init, .start = probe_start, .collect = probe_collect,
		 .stop = probe_stop, .destroy = probe_destroy, );
