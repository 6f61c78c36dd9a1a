/*
 * Configuration: YAML read with libyaml's event API into a tree of nodes that
 * remember where they were written, the merge of conf.d files into the main
 * file, and config maps that fill a plugin's struct with checked values.
 *
 * Input is untrusted: nesting is limited to CFG_MAX_DEPTH while parsing, and
 * every recursive walk below (free, equal, merge) only ever sees trees built by
 * the parser, so its depth is bounded by the same limit.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include <periscope/log.h>

#include "cfg.h"

#define CFG_MAX_DEPTH 64
#define CFG_MAX_FILE_SIZE (16u << 20)

/* The name of a file or string, shared by every node parsed from it. */
struct cfg_source {
	size_t refs;
	char name[];
};

struct cfg_entry {
	struct ps_cfg_node *key; /* maps: a non-empty scalar; sequences: NULL */
	struct ps_cfg_node *value;
};

struct ps_cfg_node {
	enum ps_cfg_kind kind;
	bool is_null;              /* `key:`, `~`, `null`: a scalar whose text is "" */
	char *text;                /* scalars */
	struct cfg_entry *entries; /* maps and sequences, in document order */
	size_t len, cap;
	struct cfg_source *src;
	int line, column; /* 1-based */
};

/* ---- errors ------------------------------------------------------------------------------ */

static int __attribute__((format(printf, 5, 0)))
verrorf_at(struct ps_cfg_error *err, const char *file, int line, int column, const char *fmt,
	   va_list ap)
{
	int used = 0;

	if (!err)
		return -EINVAL;
	if (file)
		used = snprintf(err->msg, sizeof(err->msg), "%s:%d:%d: ", file, line, column);
	if (used < 0 || (size_t)used >= sizeof(err->msg))
		return -EINVAL;
	vsnprintf(err->msg + used, sizeof(err->msg) - used, fmt, ap);
	return -EINVAL;
}

static int __attribute__((format(printf, 5, 6)))
errorf_at(struct ps_cfg_error *err, const char *file, int line, int column, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verrorf_at(err, file, line, column, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int ps_cfg_errorf(struct ps_cfg_error *err, const struct ps_cfg_node *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (n)
		verrorf_at(err, n->src->name, n->line, n->column, fmt, ap);
	else
		verrorf_at(err, NULL, 0, 0, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int out_of_memory(struct ps_cfg_error *err)
{
	errorf_at(err, NULL, 0, 0, "out of memory");
	return -ENOMEM;
}

/* "a map", "a sequence" or "a scalar", for merge errors. */
static const char *kind_name(const struct ps_cfg_node *n)
{
	switch (n->kind) {
	case PS_CFG_MAP:
		return "a map";
	case PS_CFG_SEQ:
		return "a sequence";
	default:
		return "a scalar";
	}
}

/*
 * What a value error says the user wrote: the text in quotes for a scalar, or
 * what the node is. Used as "got " GOT_FMT with GOT_ARGS(n).
 */
#define GOT_FMT "%s%s%s"
#define GOT_ARGS(n) got_quote(n), got_what(n), got_quote(n)

static const char *got_quote(const struct ps_cfg_node *n)
{
	return n->kind == PS_CFG_SCALAR && !n->is_null ? "'" : "";
}

static const char *got_what(const struct ps_cfg_node *n)
{
	if (n->kind == PS_CFG_SCALAR)
		return n->is_null ? "nothing" : n->text;
	return kind_name(n);
}

/* Appends s to buf (size bytes, used so far in *used), truncating quietly. */
static void buf_append(char *buf, size_t size, size_t *used, const char *s)
{
	size_t n = strlen(s);

	if (*used + 1 >= size)
		return;
	if (n > size - 1 - *used)
		n = size - 1 - *used;
	memcpy(buf + *used, s, n);
	*used += n;
	buf[*used] = '\0';
}

/* ---- nodes ------------------------------------------------------------------------------- */

static struct cfg_source *source_new(const char *name)
{
	size_t n = strlen(name);
	struct cfg_source *s = malloc(sizeof(*s) + n + 1);

	if (!s)
		return NULL;
	s->refs = 1;
	memcpy(s->name, name, n + 1);
	return s;
}

static void source_put(struct cfg_source *s)
{
	if (s && --s->refs == 0)
		free(s);
}

static struct ps_cfg_node *node_new(enum ps_cfg_kind kind, struct cfg_source *src, int line,
				    int column)
{
	struct ps_cfg_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->kind = kind;
	n->src = src;
	src->refs++;
	n->line = line;
	n->column = column;
	return n;
}

void ps_cfg_node_free(struct ps_cfg_node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->len; i++) {
		ps_cfg_node_free(n->entries[i].key);
		ps_cfg_node_free(n->entries[i].value);
	}
	free(n->entries);
	free(n->text);
	source_put(n->src);
	free(n);
}

/* Takes key and value on success only. */
static int node_append(struct ps_cfg_node *n, struct ps_cfg_node *key, struct ps_cfg_node *value)
{
	if (n->len == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 4;
		struct cfg_entry *e;

		if (cap > SIZE_MAX / sizeof(*e))
			return -ENOMEM;
		e = realloc(n->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		n->entries = e;
		n->cap = cap;
	}
	n->entries[n->len].key = key;
	n->entries[n->len].value = value;
	n->len++;
	return 0;
}

/* Index of key in map, or -1. */
static ssize_t map_find(const struct ps_cfg_node *map, const char *key)
{
	for (size_t i = 0; i < map->len; i++)
		if (strcmp(map->entries[i].key->text, key) == 0)
			return (ssize_t)i;
	return -1;
}

/* ---- accessors --------------------------------------------------------------------------- */

/* A NULL node reads as an empty map, like a section that was not written. */
enum ps_cfg_kind ps_cfg_node_kind(const struct ps_cfg_node *n)
{
	return n ? n->kind : PS_CFG_MAP;
}

const char *ps_cfg_node_scalar(const struct ps_cfg_node *n)
{
	return n && n->kind == PS_CFG_SCALAR ? n->text : NULL;
}

size_t ps_cfg_node_len(const struct ps_cfg_node *n)
{
	return n && n->kind != PS_CFG_SCALAR ? n->len : 0;
}

const struct ps_cfg_node *ps_cfg_node_at(const struct ps_cfg_node *n, size_t i)
{
	return n && n->kind != PS_CFG_SCALAR && i < n->len ? n->entries[i].value : NULL;
}

const char *ps_cfg_node_key_at(const struct ps_cfg_node *n, size_t i)
{
	return n && n->kind == PS_CFG_MAP && i < n->len ? n->entries[i].key->text : NULL;
}

const struct ps_cfg_node *ps_cfg_node_key_node_at(const struct ps_cfg_node *map, size_t i)
{
	return map && map->kind == PS_CFG_MAP && i < map->len ? map->entries[i].key : NULL;
}

const struct ps_cfg_node *ps_cfg_node_get(const struct ps_cfg_node *map, const char *key)
{
	ssize_t i;

	if (!map || map->kind != PS_CFG_MAP || !key)
		return NULL;
	i = map_find(map, key);
	return i < 0 ? NULL : map->entries[i].value;
}

void ps_cfg_node_mark(const struct ps_cfg_node *n, const char **file, int *line, int *column)
{
	if (file)
		*file = n ? n->src->name : "";
	if (line)
		*line = n ? n->line : 0;
	if (column)
		*column = n ? n->column : 0;
}

/* Maps compare by key whatever the order (keys are unique); sequences in order. */
int ps_cfg_node_equal(const struct ps_cfg_node *a, const struct ps_cfg_node *b)
{
	if (!a || !b)
		return a == b;
	if (a->kind != b->kind)
		return 0;
	if (a->kind == PS_CFG_SCALAR)
		return a->is_null == b->is_null && strcmp(a->text, b->text) == 0;
	if (a->len != b->len)
		return 0;
	for (size_t i = 0; i < a->len; i++) {
		const struct ps_cfg_node *other;

		if (a->kind == PS_CFG_SEQ ||
		    strcmp(a->entries[i].key->text, b->entries[i].key->text) == 0)
			other = b->entries[i].value; /* the usual case, and linear */
		else
			other = ps_cfg_node_get(b, a->entries[i].key->text);
		if (!other || !ps_cfg_node_equal(a->entries[i].value, other))
			return 0;
	}
	return 1;
}

/* ---- parsing ----------------------------------------------------------------------------- */

struct builder {
	yaml_parser_t parser;
	struct cfg_source *src;
	const unsigned char *text;
	size_t len;
	struct ps_cfg_error *err;
	struct ps_cfg_node *root;
	struct ps_cfg_node *open[CFG_MAX_DEPTH]; /* open collections, innermost last */
	struct ps_cfg_node *key[CFG_MAX_DEPTH];  /* per open map: the key awaiting its value */
	int depth;
	int documents;
};

static int __attribute__((format(printf, 3, 4)))
mark_errorf(struct builder *b, const yaml_mark_t *mark, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verrorf_at(b->err, b->src->name, (int)mark->line + 1, (int)mark->column + 1, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* libyaml reports reader errors (bad encoding) as a byte offset only. */
static void offset_to_mark(const unsigned char *text, size_t len, size_t offset, int *line,
			   int *column)
{
	size_t line_start = 0;

	*line = 1;
	if (offset > len)
		offset = len;
	for (size_t i = 0; i < offset; i++) {
		if (text[i] == '\n') {
			(*line)++;
			line_start = i + 1;
		}
	}
	*column = (int)(offset - line_start) + 1;
}

static int parser_error(struct builder *b)
{
	const yaml_parser_t *p = &b->parser;
	const char *problem = p->problem ? p->problem : "invalid YAML";
	int line, column;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return out_of_memory(b->err);
	case YAML_READER_ERROR:
		offset_to_mark(b->text, b->len, p->problem_offset, &line, &column);
		return errorf_at(b->err, b->src->name, line, column, "%s", problem);
	default:
		line = (int)p->problem_mark.line + 1;
		column = (int)p->problem_mark.column + 1;
		if (p->context)
			return errorf_at(b->err, b->src->name, line, column, "%s (%s)", problem,
					 p->context);
		return errorf_at(b->err, b->src->name, line, column, "%s", problem);
	}
}

static bool scalar_is_null(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;

	if (tag && strcmp(tag, YAML_NULL_TAG) == 0)
		return true;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !ev->data.scalar.plain_implicit)
		return false;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

static int check_no_anchor(struct builder *b, const yaml_event_t *ev, const yaml_char_t *anchor)
{
	if (anchor)
		return mark_errorf(b, &ev->start_mark, "anchors and aliases are not supported");
	return 0;
}

/* Links n into the tree: the root, an item, a key or a value. Takes n on success only. */
static int attach(struct builder *b, struct ps_cfg_node *n, const yaml_event_t *ev)
{
	struct ps_cfg_node *parent, **key;
	int rc;

	if (b->depth == 0) {
		if (b->root)
			return mark_errorf(b, &ev->start_mark, "more than one top-level node");
		b->root = n;
		return 0;
	}
	parent = b->open[b->depth - 1];
	if (parent->kind == PS_CFG_SEQ)
		return node_append(parent, NULL, n) ? out_of_memory(b->err) : 0;

	key = &b->key[b->depth - 1];
	if (!*key) {
		if (n->kind != PS_CFG_SCALAR)
			return mark_errorf(b, &ev->start_mark, "map keys must be scalars");
		if (!n->text[0])
			return mark_errorf(b, &ev->start_mark, "map keys cannot be empty");
		*key = n;
		return 0;
	}
	rc = node_append(parent, *key, n);
	if (rc)
		return out_of_memory(b->err);
	*key = NULL;
	return 0;
}

static int build_scalar(struct builder *b, const yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	size_t len = ev->data.scalar.length;
	struct ps_cfg_node *n;
	int rc;

	rc = check_no_anchor(b, ev, ev->data.scalar.anchor);
	if (rc)
		return rc;
	/* A "\0" escape would make the C string shorter than the value. */
	if (memchr(ev->data.scalar.value, '\0', len))
		return mark_errorf(b, m, "NUL characters are not allowed");

	n = node_new(PS_CFG_SCALAR, b->src, (int)m->line + 1, (int)m->column + 1);
	if (!n)
		return out_of_memory(b->err);
	n->is_null = scalar_is_null(ev);
	n->text = malloc(n->is_null ? 1 : len + 1);
	if (!n->text) {
		ps_cfg_node_free(n);
		return out_of_memory(b->err);
	}
	if (!n->is_null)
		memcpy(n->text, ev->data.scalar.value, len);
	n->text[n->is_null ? 0 : len] = '\0';

	rc = attach(b, n, ev);
	if (rc)
		ps_cfg_node_free(n);
	return rc;
}

static int build_open(struct builder *b, const yaml_event_t *ev, enum ps_cfg_kind kind)
{
	const yaml_mark_t *m = &ev->start_mark;
	const yaml_char_t *anchor = kind == PS_CFG_MAP ? ev->data.mapping_start.anchor
						       : ev->data.sequence_start.anchor;
	struct ps_cfg_node *n;
	int rc;

	rc = check_no_anchor(b, ev, anchor);
	if (rc)
		return rc;
	if (b->depth >= CFG_MAX_DEPTH)
		return mark_errorf(b, m, "nesting deeper than %d levels", CFG_MAX_DEPTH);

	n = node_new(kind, b->src, (int)m->line + 1, (int)m->column + 1);
	if (!n)
		return out_of_memory(b->err);
	rc = attach(b, n, ev);
	if (rc) {
		ps_cfg_node_free(n);
		return rc;
	}
	b->open[b->depth] = n;
	b->key[b->depth] = NULL;
	b->depth++;
	return 0;
}

static int compare_entry_keys(const void *a, const void *b)
{
	const struct cfg_entry *x = *(const struct cfg_entry *const *)a;
	const struct cfg_entry *y = *(const struct cfg_entry *const *)b;
	int c = strcmp(x->key->text, y->key->text);

	/* Ties by position, so the first of equal keys is the one defined first. */
	if (c)
		return c;
	return x < y ? -1 : x > y;
}

/*
 * Reports the first repeated key in document order. Sorting keeps large maps
 * from costing a quadratic number of comparisons.
 */
static int check_duplicate_keys(struct builder *b, const struct ps_cfg_node *map)
{
	const struct cfg_entry **sorted, *dup = NULL, *first = NULL;

	if (map->len < 2)
		return 0;
	sorted = malloc(map->len * sizeof(*sorted));
	if (!sorted)
		return out_of_memory(b->err);
	for (size_t i = 0; i < map->len; i++)
		sorted[i] = &map->entries[i];
	qsort(sorted, map->len, sizeof(*sorted), compare_entry_keys);

	for (size_t i = 1; i < map->len; i++) {
		if (strcmp(sorted[i - 1]->key->text, sorted[i]->key->text) != 0)
			continue;
		if (i >= 2 && strcmp(sorted[i - 2]->key->text, sorted[i]->key->text) == 0)
			continue; /* a third occurrence: the second one comes first */
		if (!dup || sorted[i] < dup) {
			dup = sorted[i];
			first = sorted[i - 1];
		}
	}
	free(sorted);
	if (!dup)
		return 0;
	return ps_cfg_errorf(b->err, dup->key, "duplicate key '%s' (first defined at %d:%d)",
			     dup->key->text, first->key->line, first->key->column);
}

static int build_close(struct builder *b)
{
	struct ps_cfg_node *n;

	if (b->depth == 0)
		return 0;
	b->depth--;
	n = b->open[b->depth];
	/* libyaml always gives a key its (possibly empty) value; be safe anyway. */
	ps_cfg_node_free(b->key[b->depth]);
	b->key[b->depth] = NULL;
	return n->kind == PS_CFG_MAP ? check_duplicate_keys(b, n) : 0;
}

static int build_event(struct builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (b->documents++ > 0)
			return mark_errorf(b, &ev->start_mark,
					   "only one YAML document per file is supported");
		return 0;
	case YAML_ALIAS_EVENT:
		return mark_errorf(b, &ev->start_mark, "anchors and aliases are not supported");
	case YAML_SCALAR_EVENT:
		return build_scalar(b, ev);
	case YAML_SEQUENCE_START_EVENT:
		return build_open(b, ev, PS_CFG_SEQ);
	case YAML_MAPPING_START_EVENT:
		return build_open(b, ev, PS_CFG_MAP);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return build_close(b);
	default:
		return 0;
	}
}

static int build_events(struct builder *b)
{
	yaml_event_t ev;
	bool done;
	int rc;

	do {
		if (!yaml_parser_parse(&b->parser, &ev))
			return parser_error(b);
		rc = build_event(b, &ev);
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	} while (!rc && !done);
	return rc;
}

/* Nothing, or a lone null, is an empty map (or a null when any root will do). */
static int finish_root(struct builder *b, bool any_root)
{
	struct ps_cfg_node *root = b->root;

	if (!root) {
		root = node_new(any_root ? PS_CFG_SCALAR : PS_CFG_MAP, b->src, 1, 1);
		if (root && any_root) {
			root->is_null = true;
			root->text = strdup("");
			if (!root->text) {
				ps_cfg_node_free(root);
				root = NULL;
			}
		}
		b->root = root;
		return root ? 0 : out_of_memory(b->err);
	}
	if (root->kind == PS_CFG_SCALAR && root->is_null && !any_root) {
		free(root->text);
		root->text = NULL;
		root->is_null = false;
		root->kind = PS_CFG_MAP;
		return 0;
	}
	if (root->kind != PS_CFG_MAP && !any_root)
		return ps_cfg_errorf(b->err, root, "the top level must be a map, got " GOT_FMT,
				     GOT_ARGS(root));
	return 0;
}

/*
 * Parses one document from text. any_root accepts a scalar or a sequence at the
 * top (config map defaults); otherwise the top must be a map.
 */
static struct ps_cfg_node *parse_text(const char *name, const char *text, size_t len,
				      bool any_root, struct ps_cfg_error *err)
{
	struct builder b = { .err = err };
	int rc;

	if (!text)
		len = 0;
	b.text = (const unsigned char *)(text ? text : "");
	b.len = len;
	b.src = source_new(name ? name : "<string>");
	if (!b.src) {
		errno = -out_of_memory(err);
		return NULL;
	}
	if (!yaml_parser_initialize(&b.parser)) {
		source_put(b.src);
		errno = -out_of_memory(err);
		return NULL;
	}
	yaml_parser_set_input_string(&b.parser, b.text, b.len);

	rc = build_events(&b);
	if (!rc)
		rc = finish_root(&b, any_root);

	yaml_parser_delete(&b.parser);
	for (int i = 0; i < b.depth; i++)
		ps_cfg_node_free(b.key[i]);
	if (rc) {
		ps_cfg_node_free(b.root);
		b.root = NULL;
		errno = -rc;
	}
	source_put(b.src);
	return b.root;
}

struct ps_cfg_node *ps_cfg_load_string(const char *name, const char *text, size_t len,
				       struct ps_cfg_error *err)
{
	return parse_text(name, text, len, false, err);
}

/* Reads all of path into a NUL-terminated buffer. 0 or -errno. */
static int read_whole_file(const char *path, char **text, size_t *len)
{
	size_t cap = 4096, used = 0;
	char *buf = NULL;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (!buf || used + 1 >= cap) {
			char *bigger;

			if (buf)
				cap *= 2;
			if (cap > CFG_MAX_FILE_SIZE + 1) {
				rc = -EFBIG;
				break;
			}
			bigger = realloc(buf, cap);
			if (!bigger) {
				rc = -ENOMEM;
				break;
			}
			buf = bigger;
		}
		n = read(fd, buf + used, cap - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	return 0;
}

struct ps_cfg_node *ps_cfg_load_file(const char *path, struct ps_cfg_error *err)
{
	struct ps_cfg_node *root;
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = read_whole_file(path, &text, &len);
	if (rc) {
		errorf_at(err, NULL, 0, 0, "%s: %s", path, strerror(-rc));
		errno = -rc;
		return NULL;
	}
	root = parse_text(path, text, len, false, err);
	rc = errno;
	free(text);
	errno = rc;
	return root;
}

/* ---- conf.d and merging ------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_confd_file(int dir_fd, const char *name)
{
	size_t n = strlen(name);
	struct stat st;

	if (name[0] == '.' || n <= 5 || strcmp(name + n - 5, ".yaml") != 0)
		return false;
	/* Follows symlinks: a link to a regular file counts; a dangling one does not. */
	return fstatat(dir_fd, name, &st, 0) == 0 && S_ISREG(st.st_mode);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The *.yaml files of dir, sorted. A missing dir has none. 0 or -errno. */
static int list_confd(const char *dir, char ***names_out, size_t *n_out)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	*names_out = NULL;
	*n_out = 0;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			rc = -errno;
			break;
		}
		if (!is_confd_file(dirfd(d), de->d_name))
			continue;
		if (n == cap) {
			char **bigger;

			cap = cap ? cap * 2 : 16;
			bigger = realloc(names, cap * sizeof(*names));
			if (!bigger) {
				rc = -ENOMEM;
				break;
			}
			names = bigger;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc) {
		free_names(names, n);
		return rc;
	}
	if (n)
		qsort(names, n, sizeof(*names), compare_names);
	*names_out = names;
	*n_out = n;
	return 0;
}

static int merge_maps(struct ps_cfg_node *dst, struct ps_cfg_node *src, struct ps_cfg_error *err);

/*
 * Merges the value of src_entry into *slot. A null says nothing: it leaves the
 * old value alone, and anything replaces a null. Scalars: the later wins.
 */
static int merge_value(struct ps_cfg_node **slot, struct cfg_entry *src_entry,
		       struct ps_cfg_error *err)
{
	struct ps_cfg_node *earlier = *slot, *later = src_entry->value;

	if (later->is_null)
		return 0;
	if (earlier->is_null || (earlier->kind == PS_CFG_SCALAR && later->kind == PS_CFG_SCALAR)) {
		*slot = later;
		src_entry->value = NULL;
		ps_cfg_node_free(earlier);
		return 0;
	}
	if (earlier->kind != later->kind)
		return ps_cfg_errorf(err, later, "cannot merge %s into %s defined at %s:%d:%d",
				     kind_name(later), kind_name(earlier), earlier->src->name,
				     earlier->line, earlier->column);
	if (later->kind == PS_CFG_MAP)
		return merge_maps(earlier, later, err);

	for (size_t i = 0; i < later->len; i++) {
		if (node_append(earlier, NULL, later->entries[i].value))
			return out_of_memory(err);
		later->entries[i].value = NULL;
	}
	return 0;
}

/* Moves src's entries into dst; what is left in src is for the caller to free. */
static int merge_maps(struct ps_cfg_node *dst, struct ps_cfg_node *src, struct ps_cfg_error *err)
{
	for (size_t i = 0; i < src->len; i++) {
		struct cfg_entry *e = &src->entries[i];
		ssize_t at = map_find(dst, e->key->text);
		int rc;

		if (at < 0) {
			if (node_append(dst, e->key, e->value))
				return out_of_memory(err);
			e->key = NULL;
			e->value = NULL;
			continue;
		}
		rc = merge_value(&dst->entries[at].value, e, err);
		if (rc)
			return rc;
	}
	return 0;
}

int ps_cfg_merge(struct ps_cfg_node *dst, struct ps_cfg_node *src, struct ps_cfg_error *err)
{
	int rc;

	if (!dst || !src || dst->kind != PS_CFG_MAP || src->kind != PS_CFG_MAP)
		rc = ps_cfg_errorf(err, src, "only maps can be merged");
	else
		rc = merge_maps(dst, src, err);
	ps_cfg_node_free(src);
	return rc;
}

static int merge_confd_file(struct ps_cfg_node *root, const char *dir, const char *name,
			    struct ps_cfg_error *err)
{
	struct ps_cfg_node *part;
	char *path;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return out_of_memory(err);
	part = ps_cfg_load_file(path, err);
	if (!part) {
		int rc = -errno;

		free(path);
		return rc;
	}
	ps_debug("config", "merging %s", path);
	free(path);
	return ps_cfg_merge(root, part, err);
}

struct ps_cfg_node *ps_cfg_load_all(const char *main_path, const char *confd_dir,
				    struct ps_cfg_error *err)
{
	struct ps_cfg_node *root;
	char **names;
	size_t n;
	int rc;

	root = ps_cfg_load_file(main_path, err);
	if (!root || !confd_dir)
		return root;

	rc = list_confd(confd_dir, &names, &n);
	if (rc) {
		errorf_at(err, NULL, 0, 0, "%s: %s", confd_dir, strerror(-rc));
		goto out;
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = merge_confd_file(root, confd_dir, names[i], err);
	free_names(names, n);
out:
	if (rc) {
		ps_cfg_node_free(root);
		errno = -rc;
		return NULL;
	}
	return root;
}

/* ---- scalar parsers ---------------------------------------------------------------------- */

int ps_cfg_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Decimal, optional '-', nothing else. -EINVAL bad text, -ERANGE too big. */
static int parse_int64(const char *s, int64_t *out)
{
	const char *digits = s[0] == '-' ? s + 1 : s;
	char *end;
	long long v;

	if (!isdigit((unsigned char)digits[0]))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Decimal digits only (strtoull would wrap "-1" around). */
static int parse_uint64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*out = v;
	return 0;
}

struct cfg_unit {
	const char *suffix;
	uint64_t scale;
};

static const struct cfg_unit duration_units[] = {
	{ "", 1000 },	     { "ms", 1 },	   { "s", 1000 }, { "m", 60 * 1000 },
	{ "h", 3600 * 1000 }, { "d", 86400 * 1000 }, { NULL, 0 },
};

#define KIB 1024ull
static const struct cfg_unit size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "K", KIB },
	{ "KiB", KIB },
	{ "KB", 1000ull },
	{ "M", KIB * KIB },
	{ "MiB", KIB * KIB },
	{ "MB", 1000ull * 1000 },
	{ "G", KIB * KIB * KIB },
	{ "GiB", KIB * KIB * KIB },
	{ "GB", 1000ull * 1000 * 1000 },
	{ "T", KIB * KIB * KIB * KIB },
	{ "TiB", KIB * KIB * KIB * KIB },
	{ "TB", 1000ull * 1000 * 1000 * 1000 },
	{ NULL, 0 },
};

/* Digits then one of units' suffixes. -EINVAL bad text, -ERANGE too big. */
static int parse_scaled(const char *s, const struct cfg_unit *units, uint64_t *out)
{
	const char *p = s;
	uint64_t v = 0;
	bool overflow = false;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
	}
	for (; units->suffix; units++) {
		if (strcmp(p, units->suffix) != 0)
			continue;
		if (overflow || v > UINT64_MAX / units->scale)
			return -ERANGE;
		*out = v * units->scale;
		return 0;
	}
	return -EINVAL;
}

int ps_cfg_parse_duration_ms(const char *s, uint64_t *out)
{
	return parse_scaled(s, duration_units, out) ? -EINVAL : 0;
}

int ps_cfg_parse_size(const char *s, uint64_t *out)
{
	return parse_scaled(s, size_units, out) ? -EINVAL : 0;
}

/* ---- config maps ------------------------------------------------------------------------- */

static const char *const type_expects[] = {
	[PS_CFG_BOOL] = "true or false",
	[PS_CFG_INT] = "an integer",
	[PS_CFG_UINT] = "a non-negative integer",
	[PS_CFG_DURATION] = "a duration like 250ms, 15s, 1m",
	[PS_CFG_SIZE] = "a size like 512, 4KiB, 1MiB",
	[PS_CFG_STRING] = "a string",
	[PS_CFG_STRLIST] = "a list of strings",
	[PS_CFG_PORTLIST] = "a list of ports",
	[PS_CFG_STRMAP] = "a map of strings",
};

static size_t type_size(enum ps_cfg_type type)
{
	switch (type) {
	case PS_CFG_BOOL:
		return sizeof(bool);
	case PS_CFG_INT:
		return sizeof(int64_t);
	case PS_CFG_UINT:
	case PS_CFG_DURATION:
	case PS_CFG_SIZE:
		return sizeof(uint64_t);
	case PS_CFG_STRING:
		return sizeof(char *);
	case PS_CFG_STRLIST:
		return sizeof(struct ps_strlist);
	case PS_CFG_PORTLIST:
		return sizeof(struct ps_portlist);
	case PS_CFG_STRMAP:
		return sizeof(struct ps_strmap);
	}
	return 0;
}

static bool type_known(enum ps_cfg_type type)
{
	return type_size(type) != 0;
}

static void *field_of(const struct ps_cfg_key *k, void *out)
{
	return (char *)out + k->offset;
}

static void strlist_free(struct ps_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static void strmap_free(struct ps_strmap *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->keys[i]);
		free(m->values[i]);
	}
	free(m->keys);
	free(m->values);
	memset(m, 0, sizeof(*m));
}

/* Frees what a field owns and zeroes it. */
static void field_free(const struct ps_cfg_key *k, void *out)
{
	void *f = field_of(k, out);

	switch (k->type) {
	case PS_CFG_STRING:
		free(*(char **)f);
		break;
	case PS_CFG_STRLIST:
		strlist_free(f);
		break;
	case PS_CFG_PORTLIST:
		free(((struct ps_portlist *)f)->v);
		break;
	case PS_CFG_STRMAP:
		strmap_free(f);
		break;
	default:
		break;
	}
	memset(f, 0, type_size(k->type));
}

void ps_cfg_map_free(const struct ps_cfg_key *keys, void *out)
{
	if (!keys || !out)
		return;
	for (const struct ps_cfg_key *k = keys; k->name; k++)
		if (type_known(k->type))
			field_free(k, out);
}

static int value_error(const struct ps_cfg_key *k, const struct ps_cfg_node *n,
		       struct ps_cfg_error *err)
{
	return ps_cfg_errorf(err, n, "%s: expected %s, got " GOT_FMT, k->name,
			     type_expects[k->type], GOT_ARGS(n));
}

/* Reports a value error from a scalar parser's -EINVAL or -ERANGE. */
static int scalar_error(int rc, const struct ps_cfg_key *k, const struct ps_cfg_node *n,
			struct ps_cfg_error *err)
{
	if (rc == -ERANGE)
		return ps_cfg_errorf(err, n, "%s: '%s' is out of range", k->name, n->text);
	return value_error(k, n, err);
}

static bool is_value(const struct ps_cfg_node *n)
{
	return n->kind == PS_CFG_SCALAR && !n->is_null;
}

static bool in_list(const char *const *list, const char *s)
{
	for (; list && *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

static int choice_error(const struct ps_cfg_key *k, const struct ps_cfg_node *n,
			struct ps_cfg_error *err)
{
	char names[256] = "";
	size_t used = 0;

	for (const char *const *c = k->choices; *c; c++) {
		if (c != k->choices)
			buf_append(names, sizeof(names), &used, ", ");
		buf_append(names, sizeof(names), &used, *c);
	}
	return ps_cfg_errorf(err, n, "%s: expected one of %s, got " GOT_FMT, k->name, names,
			     GOT_ARGS(n));
}

static int parse_string(const struct ps_cfg_key *k, const struct ps_cfg_node *n, char **out,
			struct ps_cfg_error *err)
{
	if (k->choices && (!is_value(n) || !in_list(k->choices, n->text)))
		return choice_error(k, n, err);
	if (!is_value(n))
		return value_error(k, n, err);
	*out = strdup(n->text);
	return *out ? 0 : out_of_memory(err);
}

static int parse_strlist(const struct ps_cfg_key *k, const struct ps_cfg_node *n,
			 struct ps_strlist *out, struct ps_cfg_error *err)
{
	struct ps_strlist l = { 0 };

	if (n->kind != PS_CFG_SEQ)
		return value_error(k, n, err);
	if (n->len) {
		l.v = calloc(n->len, sizeof(*l.v));
		if (!l.v)
			return out_of_memory(err);
	}
	for (; l.n < n->len; l.n++) {
		const struct ps_cfg_node *item = n->entries[l.n].value;

		if (!is_value(item)) {
			strlist_free(&l);
			return ps_cfg_errorf(err, item, "%s: expected a string, got " GOT_FMT,
					     k->name, GOT_ARGS(item));
		}
		l.v[l.n] = strdup(item->text);
		if (!l.v[l.n]) {
			strlist_free(&l);
			return out_of_memory(err);
		}
	}
	*out = l;
	return 0;
}

static int parse_portlist(const struct ps_cfg_key *k, const struct ps_cfg_node *n,
			  struct ps_portlist *out, struct ps_cfg_error *err)
{
	struct ps_portlist l = { 0 };

	if (n->kind != PS_CFG_SEQ)
		return value_error(k, n, err);
	if (n->len) {
		l.v = calloc(n->len, sizeof(*l.v));
		if (!l.v)
			return out_of_memory(err);
	}
	for (; l.n < n->len; l.n++) {
		const struct ps_cfg_node *item = n->entries[l.n].value;
		uint64_t port;

		if (!is_value(item) || parse_uint64(item->text, &port) || port < 1 ||
		    port > 65535) {
			free(l.v);
			return ps_cfg_errorf(err, item,
					     "%s: expected a port 1..65535, got " GOT_FMT, k->name,
					     GOT_ARGS(item));
		}
		l.v[l.n] = (uint16_t)port;
	}
	*out = l;
	return 0;
}

static int parse_strmap(const struct ps_cfg_key *k, const struct ps_cfg_node *n,
			struct ps_strmap *out, struct ps_cfg_error *err)
{
	struct ps_strmap m = { 0 };

	if (n->kind != PS_CFG_MAP)
		return value_error(k, n, err);
	if (n->len) {
		m.keys = calloc(n->len, sizeof(*m.keys));
		m.values = calloc(n->len, sizeof(*m.values));
		if (!m.keys || !m.values) {
			free(m.keys);
			free(m.values);
			return out_of_memory(err);
		}
	}
	for (; m.n < n->len; m.n++) {
		const struct cfg_entry *e = &n->entries[m.n];

		if (!is_value(e->value)) {
			strmap_free(&m);
			return ps_cfg_errorf(err, e->value,
					     "%s: expected a string for '%s', got " GOT_FMT,
					     k->name, e->key->text, GOT_ARGS(e->value));
		}
		/* m.n counts pairs that are complete, so strmap_free sees no NULLs. */
		m.keys[m.n] = strdup(e->key->text);
		m.values[m.n] = strdup(e->value->text);
		if (!m.keys[m.n] || !m.values[m.n]) {
			free(m.keys[m.n]);
			free(m.values[m.n]);
			strmap_free(&m);
			return out_of_memory(err);
		}
	}
	*out = m;
	return 0;
}

/* ---- bounds ------------------------------------------------------------------------------ */

/* The types a bound applies to, and whether it counts entries rather than a value. */
static bool bound_counts_entries(enum ps_cfg_type type)
{
	return type == PS_CFG_STRLIST || type == PS_CFG_PORTLIST || type == PS_CFG_STRMAP;
}

static bool bound_allowed(enum ps_cfg_type type)
{
	return type == PS_CFG_INT || type == PS_CFG_UINT || type == PS_CFG_DURATION ||
	       type == PS_CFG_SIZE || bound_counts_entries(type);
}

/*
 * A bound's text as k's type reads it. Signed values come back in *i, the
 * others (including entry counts) in *u.
 */
static int parse_bound(const struct ps_cfg_key *k, const char *text, int64_t *i, uint64_t *u)
{
	switch (k->type) {
	case PS_CFG_INT:
		return parse_int64(text, i);
	case PS_CFG_DURATION:
		return parse_scaled(text, duration_units, u);
	case PS_CFG_SIZE:
		return parse_scaled(text, size_units, u);
	default:
		return parse_uint64(text, u);
	}
}

/* A map's bounds are the plugin author's, not the user's: checked before any value. */
static int check_key_bounds(const struct ps_cfg_key *k, struct ps_cfg_error *err)
{
	int64_t imin = INT64_MIN, imax = INT64_MAX;
	uint64_t umin = 0, umax = UINT64_MAX;
	const char *bad = NULL;

	if (!k->min && !k->max)
		return 0;
	if (!bound_allowed(k->type))
		return errorf_at(err, NULL, 0, 0,
				 "%s: config map bug: min/max bound integers, durations, sizes "
				 "and entry counts of lists and maps only",
				 k->name);
	if (k->min && parse_bound(k, k->min, &imin, &umin))
		bad = k->min;
	else if (k->max && parse_bound(k, k->max, &imax, &umax))
		bad = k->max;
	if (bad)
		return errorf_at(
			err, NULL, 0, 0, "%s: config map bug: bound '%s' is not %s", k->name, bad,
			bound_counts_entries(k->type) ? "an entry count" : type_expects[k->type]);
	if (k->type == PS_CFG_INT ? imin > imax : umin > umax)
		return errorf_at(err, NULL, 0, 0, "%s: config map bug: min %s above max %s",
				 k->name, k->min, k->max);
	return 0;
}

/* "(64 to 4096)", "(at least 1)", "(at most 1024)": the bounds as the map wrote them. */
static const char *describe_bounds(const struct ps_cfg_key *k, char *buf, size_t size)
{
	if (k->min && k->max)
		snprintf(buf, size, "%s to %s", k->min, k->max);
	else if (k->min)
		snprintf(buf, size, "at least %s", k->min);
	else
		snprintf(buf, size, "at most %s", k->max);
	return buf;
}

static size_t entry_count(enum ps_cfg_type type, const void *v)
{
	switch (type) {
	case PS_CFG_STRLIST:
		return ((const struct ps_strlist *)v)->n;
	case PS_CFG_PORTLIST:
		return ((const struct ps_portlist *)v)->n;
	default:
		return ((const struct ps_strmap *)v)->n;
	}
}

/* v holds n parsed as k's type; -EINVAL with err filled when it is out of k's bounds. */
static int check_bounds(const struct ps_cfg_key *k, const struct ps_cfg_node *n, const void *v,
			struct ps_cfg_error *err)
{
	int64_t imin = INT64_MIN, imax = INT64_MAX;
	uint64_t umin = 0, umax = UINT64_MAX;
	char range[160];
	bool low, high;

	if (!k->min && !k->max)
		return 0;
	/* check_key_bounds accepted these texts before anything was parsed. */
	if (k->min)
		parse_bound(k, k->min, &imin, &umin);
	if (k->max)
		parse_bound(k, k->max, &imax, &umax);
	if (bound_counts_entries(k->type)) {
		size_t count = entry_count(k->type, v);

		if (count >= umin && count <= umax)
			return 0;
		return ps_cfg_errorf(err, n, "%s: %zu entr%s, expected %s", k->name, count,
				     count == 1 ? "y" : "ies",
				     describe_bounds(k, range, sizeof(range)));
	}
	if (k->type == PS_CFG_INT) {
		int64_t x = *(const int64_t *)v;

		low = x < imin;
		high = x > imax;
	} else {
		uint64_t x = *(const uint64_t *)v;

		low = x < umin;
		high = x > umax;
	}
	if (!low && !high)
		return 0;
	return ps_cfg_errorf(err, n, "%s: '%s' is out of range (%s)", k->name, n->text,
			     describe_bounds(k, range, sizeof(range)));
}

/* Parses n as k's type and replaces the field's old value (a default) with it. */
static int field_set(const struct ps_cfg_key *k, const struct ps_cfg_node *n, void *out,
		     struct ps_cfg_error *err)
{
	union {
		bool b;
		int64_t i;
		uint64_t u;
		char *s;
		struct ps_strlist sl;
		struct ps_portlist pl;
		struct ps_strmap sm;
	} v;
	int rc;

	memset(&v, 0, sizeof(v));
	switch (k->type) {
	case PS_CFG_BOOL:
		rc = is_value(n) ? ps_cfg_parse_bool(n->text, &v.b) : -EINVAL;
		if (rc)
			return value_error(k, n, err);
		break;
	case PS_CFG_INT:
		rc = is_value(n) ? parse_int64(n->text, &v.i) : -EINVAL;
		if (rc)
			return scalar_error(rc, k, n, err);
		break;
	case PS_CFG_UINT:
		rc = is_value(n) ? parse_uint64(n->text, &v.u) : -EINVAL;
		if (rc)
			return scalar_error(rc, k, n, err);
		break;
	case PS_CFG_DURATION:
		rc = is_value(n) ? parse_scaled(n->text, duration_units, &v.u) : -EINVAL;
		if (rc)
			return scalar_error(rc, k, n, err);
		break;
	case PS_CFG_SIZE:
		rc = is_value(n) ? parse_scaled(n->text, size_units, &v.u) : -EINVAL;
		if (rc)
			return scalar_error(rc, k, n, err);
		break;
	case PS_CFG_STRING:
		rc = parse_string(k, n, &v.s, err);
		break;
	case PS_CFG_STRLIST:
		rc = parse_strlist(k, n, &v.sl, err);
		break;
	case PS_CFG_PORTLIST:
		rc = parse_portlist(k, n, &v.pl, err);
		break;
	case PS_CFG_STRMAP:
		rc = parse_strmap(k, n, &v.sm, err);
		break;
	default:
		return ps_cfg_errorf(err, n, "%s: unsupported config type %d", k->name, k->type);
	}
	if (rc)
		return rc;
	rc = check_bounds(k, n, &v, err);
	if (rc) {
		/* v is not the field yet: free it as if it were. */
		struct ps_cfg_key tmp = *k;

		tmp.offset = 0;
		field_free(&tmp, &v);
		return rc;
	}
	field_free(k, out);
	memcpy(field_of(k, out), &v, type_size(k->type));
	return 0;
}

static int apply_default(const struct ps_cfg_key *k, void *out, struct ps_cfg_error *err)
{
	struct ps_cfg_node *n;
	char name[128];
	int rc = 0;

	if (!k->def)
		return 0;
	snprintf(name, sizeof(name), "<default of %s>", k->name);
	n = parse_text(name, k->def, strlen(k->def), true, err);
	if (!n)
		return -errno;
	if (!n->is_null)
		rc = field_set(k, n, out, err);
	ps_cfg_node_free(n);
	return rc;
}

static const struct ps_cfg_key *find_key(const struct ps_cfg_key *keys, const char *name)
{
	for (; keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

static int unknown_key_error(const struct ps_cfg_node *key, const struct ps_cfg_key *keys,
			     struct ps_cfg_error *err)
{
	char names[PS_CFG_ERROR_MAX] = "";
	size_t used = 0;

	for (const struct ps_cfg_key *k = keys; k->name; k++) {
		if (k != keys)
			buf_append(names, sizeof(names), &used, ", ");
		buf_append(names, sizeof(names), &used, k->name);
	}
	return ps_cfg_errorf(err, key, "unknown key '%s' (known: %s)", key->text,
			     used ? names : "none");
}

static int apply_entries(const struct ps_cfg_node *map, const struct ps_cfg_key *keys,
			 const char *const *ignore, void *out, struct ps_cfg_error *err)
{
	for (size_t i = 0; i < map->len; i++) {
		const struct cfg_entry *e = &map->entries[i];
		const struct ps_cfg_key *k = find_key(keys, e->key->text);
		int rc;

		if (!k) {
			if (in_list(ignore, e->key->text))
				continue;
			return unknown_key_error(e->key, keys, err);
		}
		if (e->value->is_null)
			continue; /* keeps the default */
		rc = field_set(k, e->value, out, err);
		if (rc)
			return rc;
	}
	return 0;
}

int ps_cfg_map_parse(const struct ps_cfg_node *map, const struct ps_cfg_key *keys,
		     const char *const *ignore, void *out, struct ps_cfg_error *err)
{
	static const struct ps_cfg_key no_keys[] = { { 0 } };
	int rc = 0;

	if (!keys)
		keys = no_keys;
	for (const struct ps_cfg_key *k = keys; k->name; k++) {
		if (!type_known(k->type))
			return errorf_at(err, NULL, 0, 0, "%s: unsupported config type %d",
					 k->name, k->type);
		memset(field_of(k, out), 0, type_size(k->type));
	}
	for (const struct ps_cfg_key *k = keys; k->name; k++) {
		rc = check_key_bounds(k, err);
		if (rc)
			return rc;
	}

	if (map && map->kind != PS_CFG_MAP && !map->is_null)
		return ps_cfg_errorf(err, map, "expected a map, got " GOT_FMT, GOT_ARGS(map));

	for (const struct ps_cfg_key *k = keys; k->name && !rc; k++)
		rc = apply_default(k, out, err);
	if (!rc && map && map->kind == PS_CFG_MAP)
		rc = apply_entries(map, keys, ignore, out, err);
	if (rc)
		ps_cfg_map_free(keys, out);
	return rc;
}
