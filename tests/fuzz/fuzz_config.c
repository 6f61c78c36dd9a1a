/*
 * libFuzzer target for core/cfg.c: loads arbitrary bytes as YAML, walks the
 * tree, fills a config map covering every type from the top level and from
 * each section, and merges the tree into a small fixed one.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

struct sample {
	bool enabled;
	int64_t offset;
	uint64_t count;
	uint64_t flush_ms;
	uint64_t buffer;
	char *format;
	char *name;
	struct ps_strlist routes;
	struct ps_portlist ports;
	struct ps_strmap labels;
};

static const char *const formats[] = { "table", "json", "prometheus", NULL };

#define KEY(n, t, d, f) { n, t, d, offsetof(struct sample, f), NULL, NULL }
static const struct ps_cfg_key sample_keys[] = {
	KEY("enabled", PS_CFG_BOOL, "yes", enabled),
	KEY("offset", PS_CFG_INT, "-1", offset),
	KEY("count", PS_CFG_UINT, "3", count),
	KEY("flush_interval", PS_CFG_DURATION, "15s", flush_ms),
	KEY("buffer", PS_CFG_SIZE, "4KiB", buffer),
	{ "format", PS_CFG_STRING, "table", offsetof(struct sample, format), formats, NULL },
	KEY("name", PS_CFG_STRING, NULL, name),
	KEY("routes", PS_CFG_STRLIST, "[/a]", routes),
	KEY("ports", PS_CFG_PORTLIST, "[80]", ports),
	KEY("labels", PS_CFG_STRMAP, "{a: b}", labels),
	{ NULL },
};

static const char *const ignore[] = { "daemon", "plugins", "sinks", NULL };

static const char fixed_yaml[] = "daemon: { flush_interval: 15s, labels: { cluster: a } }\n"
				 "plugins:\n"
				 "  http: { ports: [80], routes: [/x] }\n"
				 "  mysql:\n"
				 "sinks: [stdout]\n";

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_zeroed(const struct sample *s)
{
	check(!s->enabled && !s->offset && !s->count && !s->flush_ms && !s->buffer);
	check(!s->format && !s->name);
	check(!s->routes.v && !s->routes.n && !s->ports.v && !s->ports.n);
	check(!s->labels.keys && !s->labels.values && !s->labels.n);
}

/* Reads every field so ASan sees any bad pointer. */
static void touch(const struct sample *s)
{
	volatile size_t sum = 0;

	sum += s->format ? strlen(s->format) : 0;
	sum += s->name ? strlen(s->name) : 0;
	for (size_t i = 0; i < s->routes.n; i++)
		sum += strlen(s->routes.v[i]);
	for (size_t i = 0; i < s->ports.n; i++)
		check(s->ports.v[i] >= 1);
	for (size_t i = 0; i < s->labels.n; i++)
		sum += strlen(s->labels.keys[i]) + strlen(s->labels.values[i]);
	(void)sum;
}

static void parse_map(const struct ps_cfg_node *map, const char *const *ign)
{
	struct ps_cfg_error err = { { 0 } };
	struct sample s;

	memset(&s, 0x5a, sizeof(s));
	if (ps_cfg_map_parse(map, sample_keys, ign, &s, &err) == 0) {
		touch(&s);
		ps_cfg_map_free(sample_keys, &s);
	} else {
		check(err.msg[0] != '\0');
	}
	check_zeroed(&s);
}

/* Trees come from the parser, so depth is at most 64. */
static void walk(const struct ps_cfg_node *n, int depth)
{
	const char *file, *text;
	int line, column;
	uint64_t u;
	bool b;

	check(depth <= 64);
	ps_cfg_node_mark(n, &file, &line, &column);
	check(file && line >= 1 && column >= 1);
	text = ps_cfg_node_scalar(n);
	if (ps_cfg_node_kind(n) == PS_CFG_SCALAR) {
		check(text != NULL && ps_cfg_node_len(n) == 0);
		ps_cfg_parse_bool(text, &b);
		ps_cfg_parse_duration_ms(text, &u);
		ps_cfg_parse_size(text, &u);
		return;
	}
	check(text == NULL);
	for (size_t i = 0; i < ps_cfg_node_len(n); i++) {
		const struct ps_cfg_node *child = ps_cfg_node_at(n, i);
		const char *key = ps_cfg_node_key_at(n, i);

		check(child != NULL);
		if (ps_cfg_node_kind(n) == PS_CFG_MAP)
			check(key && key[0] && ps_cfg_node_get(n, key) == child);
		else
			check(key == NULL);
		walk(child, depth + 1);
	}
	check(ps_cfg_node_at(n, ps_cfg_node_len(n)) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *tree, *again, *fixed;

	tree = ps_cfg_load_string("fuzz.yaml", (const char *)data, size, &err);
	if (!tree) {
		check((errno == EINVAL || errno == ENOMEM) && err.msg[0] != '\0');
		return 0;
	}
	check(ps_cfg_node_kind(tree) == PS_CFG_MAP);
	walk(tree, 1);

	again = ps_cfg_load_string("again.yaml", (const char *)data, size, &err);
	check(again && ps_cfg_node_equal(tree, again) && ps_cfg_node_equal(again, tree));
	ps_cfg_node_free(again);

	parse_map(tree, ignore);
	parse_map(tree, NULL);
	for (size_t i = 0; i < ps_cfg_node_len(tree); i++)
		parse_map(ps_cfg_node_at(tree, i), NULL);

	fixed = ps_cfg_load_string("fixed.yaml", fixed_yaml, sizeof(fixed_yaml) - 1, &err);
	check(fixed != NULL);
	if (ps_cfg_merge(fixed, tree, &err) == 0)
		walk(fixed, 1);
	else
		check(err.msg[0] != '\0');
	ps_cfg_node_free(fixed);
	return 0;
}
