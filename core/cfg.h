/* Core side of the configuration: loading YAML files into a tree and merging them. */
#ifndef PS_CORE_CFG_H
#define PS_CORE_CFG_H

#include <stddef.h>

#include <periscope/config.h>

/*
 * Parses one YAML document. name is what error messages call the source
 * (a path, or "<embedded>"). An empty document gives an empty map. NULL on
 * error with err filled ("file:line:column: message") and errno set.
 */
struct ps_cfg_node *ps_cfg_load_string(const char *name, const char *text, size_t len,
				       struct ps_cfg_error *err);
struct ps_cfg_node *ps_cfg_load_file(const char *path, struct ps_cfg_error *err);

/*
 * Loads main_path, then every *.yaml in confd_dir (may be missing) in file-name
 * order, merged: maps merge, later scalars win, lists append. A main file that
 * does not exist is an error (the caller decides when to use the embedded default).
 */
struct ps_cfg_node *ps_cfg_load_all(const char *main_path, const char *confd_dir,
				    struct ps_cfg_error *err);

/* Merges src into dst (both maps), consuming src. 0 or -EINVAL (kind clash, err filled). */
int ps_cfg_merge(struct ps_cfg_node *dst, struct ps_cfg_node *src, struct ps_cfg_error *err);

/*
 * The key node of a map's i-th entry (NULL when map is not a map or i is past
 * its end): errors about a key itself (unknown, misplaced) point at the key,
 * not at its value, which may sit lines below it.
 */
const struct ps_cfg_node *ps_cfg_node_key_node_at(const struct ps_cfg_node *map, size_t i);

void ps_cfg_node_free(struct ps_cfg_node *n);
/* Same content (kinds, keys, scalars), whatever the marks. NULL equals NULL. */
int ps_cfg_node_equal(const struct ps_cfg_node *a, const struct ps_cfg_node *b);

#endif
