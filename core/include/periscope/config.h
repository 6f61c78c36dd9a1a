/*
 * periscope plugin API: configuration.
 *
 * The configuration is a tree of YAML nodes that remember where they were
 * written (file, line, column). Plugins describe their section with a
 * config map -- a table of keys, types, defaults and struct offsets -- and the
 * core fills the plugin's config struct from it, rejecting unknown keys and
 * bad values with "file:line:column: message".
 */
#ifndef PERISCOPE_CONFIG_H
#define PERISCOPE_CONFIG_H

#include <periscope/api.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ps_cfg_node;

enum ps_cfg_kind {
	PS_CFG_SCALAR,
	PS_CFG_MAP,
	PS_CFG_SEQ,
};

enum ps_cfg_type {
	PS_CFG_BOOL,     /* bool: true/false, yes/no, on/off */
	PS_CFG_INT,      /* int64_t */
	PS_CFG_UINT,     /* uint64_t */
	PS_CFG_DURATION, /* uint64_t milliseconds: 250ms, 15s, 1m, 2h, 1d; bare number = seconds */
	PS_CFG_SIZE,     /* uint64_t bytes: 512, 4KiB, 1MiB, 1GiB, 4KB (=4000) */
	PS_CFG_STRING,   /* char * (owned; NULL when unset and no default) */
	PS_CFG_STRLIST,  /* struct ps_strlist: a sequence of scalars */
	PS_CFG_PORTLIST, /* struct ps_portlist: a sequence of 1..65535 */
	PS_CFG_STRMAP,   /* struct ps_strmap: a map of scalar to scalar */
};

struct ps_strlist {
	char **v;
	size_t n;
};

struct ps_portlist {
	uint16_t *v;
	size_t n;
};

struct ps_strmap {
	char **keys;
	char **values;
	size_t n;
};

/*
 * One key of a config map; the table ends with an entry whose name is NULL.
 *
 * min and max bound a value, inclusive, written as the key's own type reads
 * ("64", "4KiB", "100ms", "-1"); for the list and map types they bound the
 * number of entries. NULL leaves that side open. The core enforces them on
 * the defaults and on every value, so init() only ever sees values in range;
 * a bound that does not parse, or a bound on a bool or string, is a bug in
 * the map and fails every parse with a message naming the key.
 * (min and max were appended after plugin ABI version 1.)
 */
struct ps_cfg_key {
	const char *name;
	enum ps_cfg_type type;
	const char *def;             /* default as YAML scalar text; NULL = zero/empty */
	size_t offset;               /* offsetof(struct your_config, field) */
	const char *const *choices;  /* PS_CFG_STRING only: allowed values, NULL-terminated */
	const char *help;            /* one line, shown by --list-plugins */
	const char *min;             /* lowest value or entry count; NULL: none */
	const char *max;             /* highest value or entry count; NULL: none */
};

#define PS_CFG_ERROR_MAX 512

/* "file:line:column: message", ready to print. */
struct ps_cfg_error {
	char msg[PS_CFG_ERROR_MAX];
};

/*
 * Fills out (a struct described by keys) from map, a PS_CFG_MAP node or NULL
 * (all defaults). Keys named in ignore (NULL-terminated, may be NULL) are
 * skipped rather than rejected. Returns 0, or -EINVAL with err filled; on
 * error out holds nothing that needs freeing.
 */
PS_API int ps_cfg_map_parse(const struct ps_cfg_node *map, const struct ps_cfg_key *keys,
		     const char *const *ignore, void *out, struct ps_cfg_error *err);
/* Frees the strings and lists that ps_cfg_map_parse allocated in out. */
PS_API void ps_cfg_map_free(const struct ps_cfg_key *keys, void *out);

/* Tree access, for sections too rich for a config map. */
PS_API enum ps_cfg_kind ps_cfg_node_kind(const struct ps_cfg_node *n);
PS_API const char *ps_cfg_node_scalar(const struct ps_cfg_node *n); /* NULL if not a scalar */
PS_API size_t ps_cfg_node_len(const struct ps_cfg_node *n);         /* entries of a map or seq */
PS_API const struct ps_cfg_node *ps_cfg_node_at(const struct ps_cfg_node *n, size_t i);
PS_API const char *ps_cfg_node_key_at(const struct ps_cfg_node *n, size_t i); /* maps only */
PS_API const struct ps_cfg_node *ps_cfg_node_get(const struct ps_cfg_node *map, const char *key);
PS_API void ps_cfg_node_mark(const struct ps_cfg_node *n, const char **file, int *line, int *column);

/* Formats "file:line:column: <fmt>" into err (n may be NULL); returns -EINVAL. */
PS_API int ps_cfg_errorf(struct ps_cfg_error *err, const struct ps_cfg_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Scalar parsers shared by the config map and by plugins. 0 or -EINVAL. */
/*
 * daemon.labels, the static labels every series carries (cluster, ...): for
 * plugins that write them elsewhere (span resources). Never NULL; valid on the
 * loop thread until the next reload.
 */
PS_API const struct ps_strmap *ps_daemon_labels(void);

PS_API int ps_cfg_parse_bool(const char *s, bool *out);
PS_API int ps_cfg_parse_duration_ms(const char *s, uint64_t *out);
PS_API int ps_cfg_parse_size(const char *s, uint64_t *out);

#endif
