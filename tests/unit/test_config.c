/* Unit tests for core/cfg.c: YAML loading, error marks, conf.d merging and config maps. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"

static struct ps_cfg_error err;

static struct ps_cfg_node *load(const char *text)
{
	memset(&err, 0, sizeof(err));
	return ps_cfg_load_string("test.yaml", text, strlen(text), &err);
}

/* Loads text, which must fail with exactly msg. */
#define ck_load_error(text, want)                                                      \
	do {                                                                          \
		errno = 0;                                                            \
		struct ps_cfg_node *n_ = load(text);                                  \
		ck_assert_ptr_null(n_);                                               \
		ck_assert_int_eq(errno, EINVAL);                                      \
		ck_assert_str_eq(err.msg, want);                                      \
	} while (0)

static void ck_mark(const struct ps_cfg_node *n, const char *file, int line, int column)
{
	const char *f;
	int l, c;

	ck_assert_ptr_nonnull(n);
	ps_cfg_node_mark(n, &f, &l, &c);
	ck_assert_str_eq(f, file);
	ck_assert_int_eq(l, line);
	ck_assert_int_eq(c, column);
}

/* ---- temp files -------------------------------------------------------------------------- */

static char tmpdir[64];

static void tmpdir_setup(void)
{
	strcpy(tmpdir, "/tmp/periscope-cfg-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tree(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);

	if (!d) {
		unlink(path);
		return;
	}
	while ((de = readdir(d))) {
		char child[512];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
		remove_tree(child);
	}
	closedir(d);
	rmdir(path);
}

static void tmpdir_teardown(void)
{
	remove_tree(tmpdir);
}

/* Writes text to tmpdir/name and returns the path in a static buffer. */
static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

static const char *tmp_path(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

/* ---- parsing ----------------------------------------------------------------------------- */

START_TEST(test_empty_inputs_are_empty_maps)
{
	const char *inputs[] = { "", "---\n", "~\n", "# only a comment\n", "---\n...\n" };
	struct ps_cfg_node *n;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		n = load(inputs[i]);
		ck_assert_msg(n != NULL, "'%s': %s", inputs[i], err.msg);
		ck_assert_int_eq(ps_cfg_node_kind(n), PS_CFG_MAP);
		ck_assert_uint_eq(ps_cfg_node_len(n), 0);
		ps_cfg_node_free(n);
	}
	n = ps_cfg_load_string("x", NULL, 0, &err);
	ck_assert_ptr_nonnull(n);
	ps_cfg_node_free(n);
}
END_TEST

START_TEST(test_tree_and_marks)
{
	struct ps_cfg_node *n = load("daemon:\n"
				     "  flush_interval: 15s\n"
				     "  labels: { cluster: prod }\n"
				     "plugins:\n"
				     "  - http\n"
				     "  - [a, b]\n");
	const struct ps_cfg_node *daemon, *labels, *plugins;

	ck_assert_msg(n != NULL, "%s", err.msg);
	ck_mark(n, "test.yaml", 1, 1);
	ck_assert_uint_eq(ps_cfg_node_len(n), 2);
	ck_assert_str_eq(ps_cfg_node_key_at(n, 0), "daemon");
	ck_assert_str_eq(ps_cfg_node_key_at(n, 1), "plugins");
	ck_assert_ptr_null(ps_cfg_node_key_at(n, 2));

	daemon = ps_cfg_node_get(n, "daemon");
	ck_assert_int_eq(ps_cfg_node_kind(daemon), PS_CFG_MAP);
	ck_mark(daemon, "test.yaml", 2, 3);
	ck_assert_ptr_null(ps_cfg_node_scalar(daemon));
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(daemon, "flush_interval")), "15s");
	ck_mark(ps_cfg_node_get(daemon, "flush_interval"), "test.yaml", 2, 19);

	labels = ps_cfg_node_get(daemon, "labels");
	ck_mark(labels, "test.yaml", 3, 11);
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(labels, "cluster")), "prod");
	ck_mark(ps_cfg_node_get(labels, "cluster"), "test.yaml", 3, 22);

	plugins = ps_cfg_node_get(n, "plugins");
	ck_assert_int_eq(ps_cfg_node_kind(plugins), PS_CFG_SEQ);
	ck_assert_uint_eq(ps_cfg_node_len(plugins), 2);
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_at(plugins, 0)), "http");
	ck_mark(ps_cfg_node_at(plugins, 0), "test.yaml", 5, 5);
	ck_assert_int_eq(ps_cfg_node_kind(ps_cfg_node_at(plugins, 1)), PS_CFG_SEQ);
	ck_assert_ptr_null(ps_cfg_node_key_at(plugins, 0));
	ck_assert_ptr_null(ps_cfg_node_at(plugins, 2));
	ck_assert_ptr_null(ps_cfg_node_get(plugins, "http"));
	ck_assert_ptr_null(ps_cfg_node_get(n, "missing"));
	ps_cfg_node_free(n);
}
END_TEST

START_TEST(test_accessors_are_null_safe)
{
	const char *file = "x";
	int line = 9, column = 9;

	ck_assert_int_eq(ps_cfg_node_kind(NULL), PS_CFG_MAP);
	ck_assert_ptr_null(ps_cfg_node_scalar(NULL));
	ck_assert_uint_eq(ps_cfg_node_len(NULL), 0);
	ck_assert_ptr_null(ps_cfg_node_at(NULL, 0));
	ck_assert_ptr_null(ps_cfg_node_key_at(NULL, 0));
	ck_assert_ptr_null(ps_cfg_node_get(NULL, "a"));
	ps_cfg_node_mark(NULL, &file, &line, &column);
	ck_assert_str_eq(file, "");
	ck_assert_int_eq(line, 0);
	ck_assert_int_eq(column, 0);
	ps_cfg_node_mark(NULL, NULL, NULL, NULL);
	ps_cfg_node_free(NULL);
}
END_TEST

START_TEST(test_null_scalars)
{
	struct ps_cfg_node *n = load("a:\nb: ~\nc: null\nd: ''\ne: NULL\nf: 'null'\n");
	struct ps_cfg_node *empty_quoted = load("a: ''\n");
	struct ps_cfg_node *bare = load("a:\n");

	ck_assert_msg(n != NULL, "%s", err.msg);
	for (const char *k = "abcde"; *k; k++) {
		char key[2] = { *k, 0 };

		ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(n, key)), "");
	}
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(n, "f")), "null");
	/* A null and an empty string read the same but are not equal. */
	ck_assert_int_eq(ps_cfg_node_equal(empty_quoted, bare), 0);
	ps_cfg_node_free(n);
	ps_cfg_node_free(empty_quoted);
	ps_cfg_node_free(bare);
}
END_TEST

START_TEST(test_anchors_and_aliases_rejected)
{
	ck_load_error("a: &x 1\nb: *x\n", "test.yaml:1:4: anchors and aliases are not supported");
	ck_load_error("a: 1\nb: *x\n", "test.yaml:2:4: anchors and aliases are not supported");
	ck_load_error("a: &m {b: 1}\n", "test.yaml:1:4: anchors and aliases are not supported");
	ck_load_error("a:\n  - &s [1]\n", "test.yaml:2:5: anchors and aliases are not supported");
}
END_TEST

START_TEST(test_duplicate_keys_rejected)
{
	ck_load_error("a: 1\nb: 2\na: 3\n",
		      "test.yaml:3:1: duplicate key 'a' (first defined at 1:1)");
	ck_load_error("x: {a: 1, a: 2}\n",
		      "test.yaml:1:11: duplicate key 'a' (first defined at 1:5)");
	/* The first repeat in document order is the one reported. */
	ck_load_error("x:\n  b: 1\n  a: 1\n  a: 2\n  b: 2\n  a: 3\n",
		      "test.yaml:4:3: duplicate key 'a' (first defined at 3:3)");
}
END_TEST

START_TEST(test_bad_keys_rejected)
{
	ck_load_error("[a]: 1\n", "test.yaml:1:1: map keys must be scalars");
	ck_load_error("? {a: 1}\n: 2\n", "test.yaml:1:3: map keys must be scalars");
	ck_load_error("x:\n  ~: 1\n", "test.yaml:2:3: map keys cannot be empty");
	ck_load_error("'': 1\n", "test.yaml:1:1: map keys cannot be empty");
}
END_TEST

START_TEST(test_multiple_documents_rejected)
{
	ck_load_error("a: 1\n---\nb: 2\n",
		      "test.yaml:2:1: only one YAML document per file is supported");
	ck_load_error("a: 1\n...\n---\nb: 2\n",
		      "test.yaml:3:1: only one YAML document per file is supported");
}
END_TEST

/* "a: " then depth-1 '['; the root map is level 1. */
static char *nested(int depth)
{
	char *s = malloc(2 * depth + 8);
	char *p = s;

	p += sprintf(p, "a: ");
	for (int i = 1; i < depth; i++)
		*p++ = '[';
	for (int i = 1; i < depth; i++)
		*p++ = ']';
	strcpy(p, "\n");
	return s;
}

START_TEST(test_nesting_limit)
{
	char *ok = nested(64), *deep = nested(65), *very_deep = nested(100000);
	struct ps_cfg_node *n = load(ok);

	ck_assert_msg(n != NULL, "%s", err.msg);
	ps_cfg_node_free(n);
	/* The 64th '[' opens level 65, at column 4 + 63. */
	ck_load_error(deep, "test.yaml:1:67: nesting deeper than 64 levels");
	ck_load_error(very_deep, "test.yaml:1:67: nesting deeper than 64 levels");
	free(ok);
	free(deep);
	free(very_deep);
}
END_TEST

START_TEST(test_syntax_errors_have_marks)
{
	ck_load_error("a: b: c\n", "test.yaml:1:5: mapping values are not allowed in this context");
	ck_load_error("a: [1\nb: 2\n",
		      "test.yaml:2:2: did not find expected ',' or ']' "
		      "(while parsing a flow sequence)");
	ck_load_error("a: 1\n\tb: 2\n", "test.yaml:2:1: found a tab character that violates "
					"indentation (while scanning a plain scalar)");
	ck_load_error("a: 1\nb: \xff\n", "test.yaml:2:4: invalid leading UTF-8 octet");
	ck_load_error("a: \"x\\0y\"\n", "test.yaml:1:4: NUL characters are not allowed");
}
END_TEST

START_TEST(test_root_must_be_a_map)
{
	ck_load_error("- a\n- b\n", "test.yaml:1:1: the top level must be a map, got a sequence");
	ck_load_error("\n  hello\n", "test.yaml:2:3: the top level must be a map, got 'hello'");
	ck_load_error("''\n", "test.yaml:1:1: the top level must be a map, got ''");
}
END_TEST

START_TEST(test_errorf)
{
	struct ps_cfg_node *n = load("a:\n  b: 1\n");

	ck_assert_int_eq(ps_cfg_errorf(&err, NULL, "plain %d", 7), -EINVAL);
	ck_assert_str_eq(err.msg, "plain 7");
	ck_assert_int_eq(ps_cfg_errorf(&err, ps_cfg_node_get(ps_cfg_node_get(n, "a"), "b"),
				       "bad %s", "b"),
			 -EINVAL);
	ck_assert_str_eq(err.msg, "test.yaml:2:6: bad b");
	ck_assert_int_eq(ps_cfg_errorf(NULL, n, "x"), -EINVAL);
	ps_cfg_node_free(n);
}
END_TEST

/* ---- files and conf.d -------------------------------------------------------------------- */

START_TEST(test_load_file)
{
	const char *path = write_file("main.yaml", "a:\n  b: 1\n");
	struct ps_cfg_node *n = ps_cfg_load_file(path, &err);
	char want[600];

	ck_assert_msg(n != NULL, "%s", err.msg);
	ck_mark(ps_cfg_node_get(ps_cfg_node_get(n, "a"), "b"), path, 2, 6);
	ps_cfg_node_free(n);

	path = write_file("bad.yaml", "a: 1\na: 2\n");
	ck_assert_ptr_null(ps_cfg_load_file(path, &err));
	ck_assert_int_eq(errno, EINVAL);
	snprintf(want, sizeof(want), "%s:2:1: duplicate key 'a' (first defined at 1:1)", path);
	ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(test_load_file_io_errors)
{
	char want[600];

	ck_assert_ptr_null(ps_cfg_load_file(tmp_path("missing.yaml"), &err));
	ck_assert_int_eq(errno, ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", tmp_path("missing.yaml"));
	ck_assert_str_eq(err.msg, want);

	ck_assert_ptr_null(ps_cfg_load_file(tmpdir, &err));
	ck_assert_int_eq(errno, EISDIR);
	snprintf(want, sizeof(want), "%s: Is a directory", tmpdir);
	ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(test_load_all_merges_confd_in_name_order)
{
	char main_path[600], confd[600];
	struct ps_cfg_node *n;
	const struct ps_cfg_node *daemon, *ports, *labels;

	snprintf(main_path, sizeof(main_path), "%s", write_file("main.yaml",
		"daemon:\n"
		"  flush_interval: 15s\n"
		"  labels: { cluster: prod }\n"
		"plugins:\n"
		"  http: { ports: [80] }\n"
		"  mysql:\n"));
	snprintf(confd, sizeof(confd), "%s", tmp_path("conf.d"));
	ck_assert_int_eq(mkdir(confd, 0700), 0);
	ck_assert_int_eq(mkdir(tmp_path("conf.d/dir.yaml"), 0700), 0);
	write_file("conf.d/20-late.yaml", "daemon: { flush_interval: 1m }\n"
					  "plugins: { http: { ports: [8080] } }\n");
	write_file("conf.d/10-early.yaml", "daemon:\n"
					   "  flush_interval: 30s\n"
					   "  labels: { team: core }\n"
					   "plugins:\n"
					   "  http: { ports: [443] }\n"
					   "  mysql: { ports: [3306] }\n");
	write_file("conf.d/.hidden.yaml", "daemon: { flush_interval: 9h }\n");
	write_file("conf.d/notes.txt", "daemon: { flush_interval: 8h }\n");
	write_file("conf.d/broken.yaml~", "{{{{\n");

	n = ps_cfg_load_all(main_path, confd, &err);
	ck_assert_msg(n != NULL, "%s", err.msg);
	daemon = ps_cfg_node_get(n, "daemon");
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(daemon, "flush_interval")), "1m");
	ck_mark(ps_cfg_node_get(daemon, "flush_interval"), tmp_path("conf.d/20-late.yaml"), 1, 27);
	labels = ps_cfg_node_get(daemon, "labels");
	ck_assert_uint_eq(ps_cfg_node_len(labels), 2);
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(labels, "cluster")), "prod");
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_get(labels, "team")), "core");

	ports = ps_cfg_node_get(ps_cfg_node_get(ps_cfg_node_get(n, "plugins"), "http"), "ports");
	ck_assert_uint_eq(ps_cfg_node_len(ports), 3);
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_at(ports, 0)), "80");
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_at(ports, 1)), "443");
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_at(ports, 2)), "8080");
	ck_mark(ps_cfg_node_at(ports, 0), main_path, 5, 19);

	/* mysql was a null in the main file: conf.d fills it in. */
	ports = ps_cfg_node_get(ps_cfg_node_get(ps_cfg_node_get(n, "plugins"), "mysql"), "ports");
	ck_assert_uint_eq(ps_cfg_node_len(ports), 1);
	ps_cfg_node_free(n);
}
END_TEST

START_TEST(test_load_all_without_confd)
{
	const char *path = write_file("main.yaml", "a: 1\n");
	char main_path[600];
	struct ps_cfg_node *n;

	snprintf(main_path, sizeof(main_path), "%s", path);
	n = ps_cfg_load_all(main_path, tmp_path("no-such-dir"), &err);
	ck_assert_msg(n != NULL, "%s", err.msg);
	ck_assert_uint_eq(ps_cfg_node_len(n), 1);
	ps_cfg_node_free(n);

	n = ps_cfg_load_all(main_path, NULL, &err);
	ck_assert_ptr_nonnull(n);
	ps_cfg_node_free(n);
}
END_TEST

START_TEST(test_load_all_errors)
{
	char main_path[600], confd[600], want[1400];

	/* Missing main file. */
	ck_assert_ptr_null(ps_cfg_load_all(tmp_path("none.yaml"), NULL, &err));
	ck_assert_int_eq(errno, ENOENT);

	snprintf(main_path, sizeof(main_path), "%s",
		 write_file("main.yaml", "plugins:\n  http: { ports: [80] }\n"));

	/* conf.d that is a file. */
	write_file("conf.d", "");
	ck_assert_ptr_null(ps_cfg_load_all(main_path, tmp_path("conf.d"), &err));
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(want, sizeof(want), "%s: Not a directory", tmp_path("conf.d"));
	ck_assert_str_eq(err.msg, want);
	unlink(tmp_path("conf.d"));

	/* A kind clash names the later node and where the earlier one was. */
	snprintf(confd, sizeof(confd), "%s", tmp_path("conf.d"));
	ck_assert_int_eq(mkdir(confd, 0700), 0);
	write_file("conf.d/a.yaml", "plugins:\n  http:\n    - 1\n");
	ck_assert_ptr_null(ps_cfg_load_all(main_path, confd, &err));
	ck_assert_int_eq(errno, EINVAL);
	snprintf(want, sizeof(want),
		 "%s:3:5: cannot merge a sequence into a map defined at %s:2:9",
		 tmp_path("conf.d/a.yaml"), main_path);
	ck_assert_str_eq(err.msg, want);

	/* A parse error in a conf.d file names that file. */
	write_file("conf.d/a.yaml", "a: 1\n");
	write_file("conf.d/b.yaml", "a: [\n");
	ck_assert_ptr_null(ps_cfg_load_all(main_path, confd, &err));
	ck_assert_int_eq(errno, EINVAL);
	snprintf(want, sizeof(want), "%s:", tmp_path("conf.d/b.yaml"));
	ck_assert_int_eq(strncmp(err.msg, want, strlen(want)), 0);
}
END_TEST

/* ---- merge and equality ------------------------------------------------------------------ */

START_TEST(test_merge_semantics)
{
	struct ps_cfg_node *dst = load("a: 1\n"
				       "s: kept\n"
				       "m: { x: 1, y: { z: 1 } }\n"
				       "l: [1, 2]\n"
				       "n:\n"
				       "keep: { k: v }\n");
	struct ps_cfg_node *src = load("a: 2\n"
				       "s:\n"
				       "m: { y: { w: 2 }, v: 3 }\n"
				       "l: [3]\n"
				       "n: [filled]\n"
				       "keep:\n"
				       "new: yes\n");
	struct ps_cfg_node *want = load("a: 2\n"
					"s: kept\n"
					"m: { x: 1, y: { z: 1, w: 2 }, v: 3 }\n"
					"l: [1, 2, 3]\n"
					"n: [filled]\n"
					"keep: { k: v }\n"
					"new: yes\n");

	ck_assert_ptr_nonnull(dst);
	ck_assert_ptr_nonnull(src);
	ck_assert_int_eq(ps_cfg_merge(dst, src, &err), 0);
	ck_assert_int_eq(ps_cfg_node_equal(dst, want), 1);
	ps_cfg_node_free(dst);
	ps_cfg_node_free(want);
}
END_TEST

START_TEST(test_merge_clashes)
{
	static const struct {
		const char *dst, *src, *msg;
	} cases[] = {
		{ "a: {x: 1}\n", "a: [1]\n",
		  "src.yaml:1:4: cannot merge a sequence into a map defined at dst.yaml:1:4" },
		{ "a: [1]\n", "a: 1\n",
		  "src.yaml:1:4: cannot merge a scalar into a sequence defined at dst.yaml:1:4" },
		{ "b:\n  a: 1\n", "b: {a: {c: d}}\n",
		  "src.yaml:1:8: cannot merge a map into a scalar defined at dst.yaml:2:6" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ps_cfg_node *dst, *src;

		dst = ps_cfg_load_string("dst.yaml", cases[i].dst, strlen(cases[i].dst), &err);
		src = ps_cfg_load_string("src.yaml", cases[i].src, strlen(cases[i].src), &err);
		ck_assert_ptr_nonnull(dst);
		ck_assert_ptr_nonnull(src);
		ck_assert_int_eq(ps_cfg_merge(dst, src, &err), -EINVAL);
		ck_assert_str_eq(err.msg, cases[i].msg);
		ps_cfg_node_free(dst);
	}
	/* Merge consumes src even when it cannot merge. */
	ck_assert_int_eq(ps_cfg_merge(NULL, load("a: 1\n"), &err), -EINVAL);
	ck_assert_str_eq(err.msg, "test.yaml:1:1: only maps can be merged");
}
END_TEST

START_TEST(test_node_equal)
{
	struct ps_cfg_node *a = load("x: 1\ny: [a, {b: c}]\n");
	struct ps_cfg_node *b = load("\n\ny:   [a,   {b: c}]\nx:    1\n");
	struct ps_cfg_node *c = load("x: 1\ny: [{b: c}, a]\n");
	struct ps_cfg_node *d = load("x: 2\ny: [a, {b: c}]\n");
	struct ps_cfg_node *e = load("x: 1\ny: [a, {b: c}]\nz: 1\n");
	struct ps_cfg_node *f = load("x: 1\ny: [a, [b]]\n");
	struct ps_cfg_node *g = load("x: 1\nq: [a, {b: c}]\n");

	ck_assert_int_eq(ps_cfg_node_equal(a, a), 1);
	ck_assert_int_eq(ps_cfg_node_equal(a, b), 1);
	ck_assert_int_eq(ps_cfg_node_equal(b, a), 1);
	ck_assert_int_eq(ps_cfg_node_equal(a, c), 0);
	ck_assert_int_eq(ps_cfg_node_equal(a, d), 0);
	ck_assert_int_eq(ps_cfg_node_equal(a, e), 0);
	ck_assert_int_eq(ps_cfg_node_equal(e, a), 0);
	ck_assert_int_eq(ps_cfg_node_equal(a, f), 0);
	ck_assert_int_eq(ps_cfg_node_equal(a, g), 0);
	ck_assert_int_eq(ps_cfg_node_equal(a, NULL), 0);
	ck_assert_int_eq(ps_cfg_node_equal(NULL, a), 0);
	ck_assert_int_eq(ps_cfg_node_equal(NULL, NULL), 1);
	ps_cfg_node_free(a);
	ps_cfg_node_free(b);
	ps_cfg_node_free(c);
	ps_cfg_node_free(d);
	ps_cfg_node_free(e);
	ps_cfg_node_free(f);
	ps_cfg_node_free(g);
}
END_TEST

/* ---- config maps ------------------------------------------------------------------------- */

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

#define KEY(n, t, d, f) { n, t, d, offsetof(struct sample, f), NULL, "help" }
static const struct ps_cfg_key sample_keys[] = {
	KEY("enabled", PS_CFG_BOOL, "true", enabled),
	KEY("offset", PS_CFG_INT, "-5", offset),
	KEY("count", PS_CFG_UINT, "10", count),
	KEY("flush_interval", PS_CFG_DURATION, "15s", flush_ms),
	KEY("buffer", PS_CFG_SIZE, "4KiB", buffer),
	{ "format", PS_CFG_STRING, "table", offsetof(struct sample, format), formats, "help" },
	KEY("name", PS_CFG_STRING, NULL, name),
	KEY("routes", PS_CFG_STRLIST, "[/a, /b]", routes),
	KEY("ports", PS_CFG_PORTLIST, "[80, 443]", ports),
	KEY("labels", PS_CFG_STRMAP, "{team: core}", labels),
	{ NULL },
};

#define KNOWN "(known: enabled, offset, count, flush_interval, buffer, format, name, routes, " \
	      "ports, labels)"

static struct sample parsed;

/* Parses text's "s" section into parsed; returns what ps_cfg_map_parse did. */
static int parse_section(const char *text)
{
	struct ps_cfg_node *n = load(text);
	int rc;

	ck_assert_msg(n != NULL, "%s", err.msg);
	memset(&parsed, 0xa5, sizeof(parsed)); /* garbage the parser must not trust */
	rc = ps_cfg_map_parse(ps_cfg_node_get(n, "s"), sample_keys, NULL, &parsed, &err);
	ps_cfg_node_free(n);
	return rc;
}

/* Field by field: padding keeps whatever was there. */
static void ck_zeroed(const struct sample *s)
{
	ck_assert_int_eq(s->enabled, false);
	ck_assert_int_eq(s->offset, 0);
	ck_assert_uint_eq(s->count, 0);
	ck_assert_uint_eq(s->flush_ms, 0);
	ck_assert_uint_eq(s->buffer, 0);
	ck_assert_ptr_null(s->format);
	ck_assert_ptr_null(s->name);
	ck_assert_ptr_null(s->routes.v);
	ck_assert_uint_eq(s->routes.n, 0);
	ck_assert_ptr_null(s->ports.v);
	ck_assert_uint_eq(s->ports.n, 0);
	ck_assert_ptr_null(s->labels.keys);
	ck_assert_ptr_null(s->labels.values);
	ck_assert_uint_eq(s->labels.n, 0);
}

/* text's "s" section must fail with msg, leaving nothing to free. */
#define ck_section_error(text, want)                                                   \
	do {                                                                          \
		ck_assert_int_eq(parse_section(text), -EINVAL);                       \
		ck_assert_str_eq(err.msg, want);                                      \
		ck_zeroed(&parsed);                                                   \
	} while (0)

static void parsed_free(void)
{
	ps_cfg_map_free(sample_keys, &parsed);
	ck_zeroed(&parsed);
}

START_TEST(test_map_defaults)
{
	ck_assert_int_eq(parse_section("other: 1\n"), 0);
	ck_assert_int_eq(parsed.enabled, true);
	ck_assert_int_eq(parsed.offset, -5);
	ck_assert_uint_eq(parsed.count, 10);
	ck_assert_uint_eq(parsed.flush_ms, 15000);
	ck_assert_uint_eq(parsed.buffer, 4096);
	ck_assert_str_eq(parsed.format, "table");
	ck_assert_ptr_null(parsed.name);
	ck_assert_uint_eq(parsed.routes.n, 2);
	ck_assert_str_eq(parsed.routes.v[0], "/a");
	ck_assert_str_eq(parsed.routes.v[1], "/b");
	ck_assert_uint_eq(parsed.ports.n, 2);
	ck_assert_uint_eq(parsed.ports.v[0], 80);
	ck_assert_uint_eq(parsed.ports.v[1], 443);
	ck_assert_uint_eq(parsed.labels.n, 1);
	ck_assert_str_eq(parsed.labels.keys[0], "team");
	ck_assert_str_eq(parsed.labels.values[0], "core");
	parsed_free();

	/* A null section (`s:`) is all defaults too. */
	ck_assert_int_eq(parse_section("s:\n"), 0);
	ck_assert_uint_eq(parsed.flush_ms, 15000);
	parsed_free();
}
END_TEST

START_TEST(test_map_values)
{
	ck_assert_int_eq(parse_section("s:\n"
				       "  enabled: Off\n"
				       "  offset: -9223372036854775808\n"
				       "  count: 18446744073709551615\n"
				       "  flush_interval: 250ms\n"
				       "  buffer: 1MB\n"
				       "  format: json\n"
				       "  name: checkout\n"
				       "  routes: []\n"
				       "  ports: [1, 65535]\n"
				       "  labels: { cluster: prod, zone: '' }\n"),
			 0);
	ck_assert_int_eq(parsed.enabled, false);
	ck_assert_int_eq(parsed.offset, INT64_MIN);
	ck_assert_uint_eq(parsed.count, UINT64_MAX);
	ck_assert_uint_eq(parsed.flush_ms, 250);
	ck_assert_uint_eq(parsed.buffer, 1000000);
	ck_assert_str_eq(parsed.format, "json");
	ck_assert_str_eq(parsed.name, "checkout");
	/* A list replaces the default list, it does not append to it. */
	ck_assert_uint_eq(parsed.routes.n, 0);
	ck_assert_uint_eq(parsed.ports.n, 2);
	ck_assert_uint_eq(parsed.ports.v[0], 1);
	ck_assert_uint_eq(parsed.ports.v[1], 65535);
	ck_assert_uint_eq(parsed.labels.n, 2);
	ck_assert_str_eq(parsed.labels.keys[1], "zone");
	ck_assert_str_eq(parsed.labels.values[1], "");
	parsed_free();
	ps_cfg_map_free(sample_keys, &parsed); /* twice is harmless */
}
END_TEST

START_TEST(test_map_null_values_keep_defaults)
{
	ck_assert_int_eq(
		parse_section("s: { enabled: ~, flush_interval: , format: null, ports: }\n"), 0);
	ck_assert_int_eq(parsed.enabled, true);
	ck_assert_uint_eq(parsed.flush_ms, 15000);
	ck_assert_str_eq(parsed.format, "table");
	ck_assert_uint_eq(parsed.ports.n, 2);
	parsed_free();

	/* An empty quoted string is a value, not a null. */
	ck_section_error("s: { flush_interval: '' }\n",
			 "test.yaml:1:22: flush_interval: expected a duration like 250ms, 15s, 1m, "
			 "got ''");
}
END_TEST

START_TEST(test_map_null_map_is_defaults)
{
	struct sample s;

	memset(&s, 0xff, sizeof(s));
	ck_assert_int_eq(ps_cfg_map_parse(NULL, sample_keys, NULL, &s, &err), 0);
	ck_assert_uint_eq(s.count, 10);
	ck_assert_str_eq(s.format, "table");
	ps_cfg_map_free(sample_keys, &s);
	ck_zeroed(&s);
}
END_TEST

START_TEST(test_map_unknown_keys)
{
	struct ps_cfg_node *n;
	static const char *const ignore[] = { "enable", NULL };
	static const struct ps_cfg_key none[] = { { NULL } };
	struct sample s;

	ck_section_error("s:\n  count: 1\n  colour: red\n",
			 "test.yaml:3:3: unknown key 'colour' " KNOWN);

	n = load("s: { enable: false, count: 3 }\n");
	ck_assert_int_eq(ps_cfg_map_parse(ps_cfg_node_get(n, "s"), sample_keys, ignore, &s, &err),
			 0);
	ck_assert_uint_eq(s.count, 3);
	ps_cfg_map_free(sample_keys, &s);

	ck_assert_int_eq(ps_cfg_map_parse(ps_cfg_node_get(n, "s"), none, NULL, &s, &err),
			 -EINVAL);
	ck_assert_str_eq(err.msg, "test.yaml:1:6: unknown key 'enable' (known: none)");
	ck_assert_int_eq(ps_cfg_map_parse(ps_cfg_node_get(n, "s"), NULL, ignore, &s, &err),
			 -EINVAL);
	ck_assert_str_eq(err.msg, "test.yaml:1:21: unknown key 'count' (known: none)");
	ps_cfg_node_free(n);
}
END_TEST

START_TEST(test_map_wrong_section_kind)
{
	ck_section_error("s: [1]\n", "test.yaml:1:4: expected a map, got a sequence");
	ck_section_error("s: on\n", "test.yaml:1:4: expected a map, got 'on'");
}
END_TEST

START_TEST(test_map_bool)
{
	static const char *const yes[] = { "true", "True", "YES", "on", "On" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		char text[64];

		snprintf(text, sizeof(text), "s: { enabled: %s }\n", yes[i]);
		ck_assert_int_eq(parse_section("s: { enabled: no }\n"), 0);
		ck_assert_int_eq(parsed.enabled, false);
		parsed_free();
		ck_assert_int_eq(parse_section(text), 0);
		ck_assert_int_eq(parsed.enabled, true);
		parsed_free();
	}
	ck_section_error("s: { enabled: 1 }\n",
			 "test.yaml:1:15: enabled: expected true or false, got '1'");
	ck_section_error("s: { enabled: [] }\n",
			 "test.yaml:1:15: enabled: expected true or false, got a sequence");
}
END_TEST

START_TEST(test_map_int_and_uint)
{
	ck_assert_int_eq(parse_section("s: { offset: 9223372036854775807, count: 007 }\n"), 0);
	ck_assert_int_eq(parsed.offset, INT64_MAX);
	ck_assert_uint_eq(parsed.count, 7);
	parsed_free();

	ck_section_error("s: { offset: 9223372036854775808 }\n",
			 "test.yaml:1:14: offset: '9223372036854775808' is out of range");
	ck_section_error("s: { offset: -9223372036854775809 }\n",
			 "test.yaml:1:14: offset: '-9223372036854775809' is out of range");
	ck_section_error("s: { offset: 0x10 }\n",
			 "test.yaml:1:14: offset: expected an integer, got '0x10'");
	ck_section_error("s: { offset: ' 1' }\n",
			 "test.yaml:1:14: offset: expected an integer, got ' 1'");
	ck_section_error("s: { offset: 1.5 }\n",
			 "test.yaml:1:14: offset: expected an integer, got '1.5'");
	ck_section_error("s: { offset: '-' }\n",
			 "test.yaml:1:14: offset: expected an integer, got '-'");
	ck_section_error("s: { count: -1 }\n",
			 "test.yaml:1:13: count: expected a non-negative integer, got '-1'");
	ck_section_error("s: { count: +1 }\n",
			 "test.yaml:1:13: count: expected a non-negative integer, got '+1'");
	ck_section_error("s: { count: 18446744073709551616 }\n",
			 "test.yaml:1:13: count: '18446744073709551616' is out of range");
	ck_section_error("s: { count: {a: 1} }\n",
			 "test.yaml:1:13: count: expected a non-negative integer, got a map");
}
END_TEST

START_TEST(test_map_duration)
{
	static const struct {
		const char *text;
		uint64_t ms;
	} ok[] = {
		{ "0", 0 },	    { "7", 7000 },	 { "250ms", 250 },    { "15s", 15000 },
		{ "1m", 60000 },    { "2h", 7200000 },	 { "1d", 86400000 },
		{ "18446744073709551615ms", UINT64_MAX },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t ms = 1;

		ck_assert_msg(ps_cfg_parse_duration_ms(ok[i].text, &ms) == 0, "%s", ok[i].text);
		ck_assert_uint_eq(ms, ok[i].ms);
	}
	ck_section_error("s:\n  flush_interval: soon\n",
			 "test.yaml:2:19: flush_interval: expected a duration like 250ms, 15s, 1m, "
			 "got 'soon'");
	ck_section_error("s: { flush_interval: 1.5s }\n",
			 "test.yaml:1:22: flush_interval: expected a duration like 250ms, 15s, 1m, "
			 "got '1.5s'");
	ck_section_error("s: { flush_interval: 213503982335d }\n",
			 "test.yaml:1:22: flush_interval: '213503982335d' is out of range");
	ck_section_error("s: { flush_interval: 99999999999999999999999999ms }\n",
			 "test.yaml:1:22: flush_interval: '99999999999999999999999999ms' is out of "
			 "range");
	ck_assert_int_eq(ps_cfg_parse_duration_ms("18446744073709551616ms", &(uint64_t){ 0 }),
			 -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_duration_ms("1 s", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_duration_ms("-1s", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_duration_ms("s", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_duration_ms("1S", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_duration_ms("", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_duration_ms(NULL, &(uint64_t){ 0 }), -EINVAL);
}
END_TEST

START_TEST(test_map_size)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} ok[] = {
		{ "512", 512 },
		{ "512B", 512 },
		{ "4K", 4096 },
		{ "4KiB", 4096 },
		{ "4KB", 4000 },
		{ "1M", 1 << 20 },
		{ "1MiB", 1 << 20 },
		{ "1MB", 1000000 },
		{ "1G", 1 << 30 },
		{ "1GiB", 1 << 30 },
		{ "1GB", 1000000000 },
		{ "1TiB", 1ull << 40 },
		{ "1TB", 1000000000000ull },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t bytes = 1;

		ck_assert_msg(ps_cfg_parse_size(ok[i].text, &bytes) == 0, "%s", ok[i].text);
		ck_assert_uint_eq(bytes, ok[i].bytes);
	}
	ck_section_error("s: { buffer: 4kb }\n",
			 "test.yaml:1:14: buffer: expected a size like 512, 4KiB, 1MiB, got '4kb'");
	ck_section_error("s: { buffer: 16777216TiB }\n",
			 "test.yaml:1:14: buffer: '16777216TiB' is out of range");
	ck_assert_int_eq(ps_cfg_parse_size("16777215TiB", &(uint64_t){ 0 }), 0);
	ck_assert_int_eq(ps_cfg_parse_size("18446744073709551616", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_size("KiB", &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_size("1 KiB", &(uint64_t){ 0 }), -EINVAL);
}
END_TEST

START_TEST(test_map_string_choices)
{
	ck_section_error("s: { format: xml }\n",
			 "test.yaml:1:14: format: expected one of table, json, prometheus, "
			 "got 'xml'");
	ck_section_error("s: { format: [json] }\n",
			 "test.yaml:1:14: format: expected one of table, json, prometheus, got a "
			 "sequence");
	ck_section_error("s: { name: {a: b} }\n",
			 "test.yaml:1:12: name: expected a string, got a map");
	/* An error after a successful string frees it. */
	ck_section_error("s: { name: ok, format: xml }\n",
			 "test.yaml:1:24: format: expected one of table, json, prometheus, "
			 "got 'xml'");
}
END_TEST

START_TEST(test_map_lists)
{
	ck_assert_int_eq(parse_section("s:\n  routes:\n    - /api/v1/users/{id}\n    - '*'\n"), 0);
	ck_assert_uint_eq(parsed.routes.n, 2);
	ck_assert_str_eq(parsed.routes.v[0], "/api/v1/users/{id}");
	ck_assert_str_eq(parsed.routes.v[1], "*");
	parsed_free();

	ck_section_error("s: { routes: /a }\n",
			 "test.yaml:1:14: routes: expected a list of strings, got '/a'");
	ck_section_error("s: { routes: [/a, [b]] }\n",
			 "test.yaml:1:19: routes: expected a string, got a sequence");
	ck_section_error("s: { routes: [/a, ~] }\n",
			 "test.yaml:1:19: routes: expected a string, got nothing");
	ck_section_error("s: { ports: 80 }\n",
			 "test.yaml:1:13: ports: expected a list of ports, got '80'");
	ck_section_error("s: { ports: [80, 0] }\n",
			 "test.yaml:1:18: ports: expected a port 1..65535, got '0'");
	ck_section_error("s: { ports: [65536] }\n",
			 "test.yaml:1:14: ports: expected a port 1..65535, got '65536'");
	ck_section_error("s: { ports: [http] }\n",
			 "test.yaml:1:14: ports: expected a port 1..65535, got 'http'");
	ck_section_error("s: { ports: [-80] }\n",
			 "test.yaml:1:14: ports: expected a port 1..65535, got '-80'");
	ck_section_error("s: { ports: [{a: 1}] }\n",
			 "test.yaml:1:14: ports: expected a port 1..65535, got a map");
}
END_TEST

START_TEST(test_map_strmap)
{
	ck_section_error("s: { labels: [a] }\n",
			 "test.yaml:1:14: labels: expected a map of strings, got a sequence");
	ck_section_error("s: { labels: { a: b, c: [d] } }\n",
			 "test.yaml:1:25: labels: expected a string for 'c', got a sequence");
	ck_section_error("s: { labels: { a: b, c: } }\n",
			 "test.yaml:1:25: labels: expected a string for 'c', got nothing");
}
END_TEST

START_TEST(test_map_bad_default)
{
	static const struct ps_cfg_key keys[] = {
		{ "name", PS_CFG_STRING, "fine", offsetof(struct sample, name) },
		{ "count", PS_CFG_UINT, "lots", offsetof(struct sample, count) },
		{ NULL },
	};
	static const struct ps_cfg_key bad_yaml[] = {
		{ "routes", PS_CFG_STRLIST, "[a", offsetof(struct sample, routes) },
		{ NULL },
	};
	struct sample s;

	ck_assert_int_eq(ps_cfg_map_parse(NULL, keys, NULL, &s, &err), -EINVAL);
	ck_assert_str_eq(err.msg,
			 "<default of count>:1:1: count: expected a non-negative integer, "
			 "got 'lots'");
	ck_assert_ptr_null(s.name);
	ck_assert_int_eq(ps_cfg_map_parse(NULL, bad_yaml, NULL, &s, &err), -EINVAL);
	ck_assert_uint_eq(s.routes.n, 0);
}
END_TEST

START_TEST(test_map_empty_defaults)
{
	static const struct ps_cfg_key keys[] = {
		{ "name", PS_CFG_STRING, "", offsetof(struct sample, name) },
		{ "format", PS_CFG_STRING, "''", offsetof(struct sample, format) },
		{ "routes", PS_CFG_STRLIST, "[]", offsetof(struct sample, routes) },
		{ "labels", PS_CFG_STRMAP, "~", offsetof(struct sample, labels) },
		{ "count", PS_CFG_UINT, "", offsetof(struct sample, count) },
		{ NULL },
	};
	struct sample s;

	memset(&s, 0x77, sizeof(s));
	ck_assert_int_eq(ps_cfg_map_parse(NULL, keys, NULL, &s, &err), 0);
	ck_assert_ptr_null(s.name);
	ck_assert_str_eq(s.format, "");
	ck_assert_uint_eq(s.routes.n, 0);
	ck_assert_uint_eq(s.labels.n, 0);
	ck_assert_uint_eq(s.count, 0);
	ps_cfg_map_free(keys, &s);
}
END_TEST

/* ---- bounds ------------------------------------------------------------------------------ */

struct bounded {
	int64_t offset;
	uint64_t count;
	uint64_t flush_ms;
	uint64_t buffer;
	struct ps_strlist routes;
	struct ps_portlist ports;
	struct ps_strmap labels;
};

static const struct ps_cfg_key bounded_keys[] = {
	{ "offset", PS_CFG_INT, "0", offsetof(struct bounded, offset), NULL, "h", "-10", "10" },
	{ "count", PS_CFG_UINT, "1", offsetof(struct bounded, count), NULL, "h", "1", NULL },
	{ "flush_interval", PS_CFG_DURATION, "1s", offsetof(struct bounded, flush_ms), NULL, "h",
	  "100ms", "1h" },
	{ "buffer", PS_CFG_SIZE, "1KiB", offsetof(struct bounded, buffer), NULL, "h", "64",
	  "4KiB" },
	{ "routes", PS_CFG_STRLIST, NULL, offsetof(struct bounded, routes), NULL, "h", NULL, "2" },
	{ "ports", PS_CFG_PORTLIST, NULL, offsetof(struct bounded, ports), NULL, "h", NULL, "1" },
	{ "labels", PS_CFG_STRMAP, "{a: b}", offsetof(struct bounded, labels), NULL, "h", "1",
	  NULL },
	{ NULL },
};

static struct bounded bparsed;

static int parse_bounded(const char *text)
{
	struct ps_cfg_node *n = load(text);
	int rc;

	ck_assert_msg(n != NULL, "%s", err.msg);
	memset(&bparsed, 0x5a, sizeof(bparsed));
	rc = ps_cfg_map_parse(ps_cfg_node_get(n, "s"), bounded_keys, NULL, &bparsed, &err);
	ps_cfg_node_free(n);
	return rc;
}

/* text's "s" section must fail with msg, leaving nothing allocated behind. */
#define ck_bounded_error(text, want)                            \
	do {                                                    \
		ck_assert_int_eq(parse_bounded(text), -EINVAL); \
		ck_assert_str_eq(err.msg, want);                \
		ck_assert_ptr_null(bparsed.routes.v);           \
		ck_assert_ptr_null(bparsed.ports.v);            \
		ck_assert_ptr_null(bparsed.labels.keys);        \
	} while (0)

START_TEST(test_map_bounds_inclusive)
{
	ck_assert_int_eq(parse_bounded("s: { offset: -10, count: 1, flush_interval: 100ms, "
				       "buffer: 64, routes: [a, b], ports: [80] }\n"),
			 0);
	ck_assert_int_eq(bparsed.offset, -10);
	ck_assert_uint_eq(bparsed.count, 1);
	ck_assert_uint_eq(bparsed.flush_ms, 100);
	ck_assert_uint_eq(bparsed.buffer, 64);
	ck_assert_uint_eq(bparsed.routes.n, 2);
	ck_assert_uint_eq(bparsed.ports.n, 1);
	ps_cfg_map_free(bounded_keys, &bparsed);

	ck_assert_int_eq(parse_bounded("s: { offset: 10, count: 18446744073709551615, "
				       "flush_interval: 1h, buffer: 4KiB }\n"),
			 0);
	ck_assert_int_eq(bparsed.offset, 10);
	ck_assert_uint_eq(bparsed.count, UINT64_MAX);
	ck_assert_uint_eq(bparsed.flush_ms, 3600000);
	ck_assert_uint_eq(bparsed.buffer, 4096);
	/* Units are the type's: 60m is 1h, 4096 is 4KiB. */
	ps_cfg_map_free(bounded_keys, &bparsed);
	ck_assert_int_eq(parse_bounded("s: { flush_interval: 60m, buffer: 4096 }\n"), 0);
	ps_cfg_map_free(bounded_keys, &bparsed);
}
END_TEST

START_TEST(test_map_bounds_reject_with_marks)
{
	ck_bounded_error("s: { offset: 11 }\n",
			 "test.yaml:1:14: offset: '11' is out of range (-10 to 10)");
	ck_bounded_error("s:\n  offset: -11\n",
			 "test.yaml:2:11: offset: '-11' is out of range (-10 to 10)");
	ck_bounded_error("s: { count: 0 }\n",
			 "test.yaml:1:13: count: '0' is out of range (at least 1)");
	ck_bounded_error("s: { flush_interval: 99ms }\n",
			 "test.yaml:1:22: flush_interval: '99ms' is out of range (100ms to 1h)");
	ck_bounded_error("s: { flush_interval: 3601s }\n",
			 "test.yaml:1:22: flush_interval: '3601s' is out of range (100ms to 1h)");
	ck_bounded_error("s:\n  buffer: 100000\n",
			 "test.yaml:2:11: buffer: '100000' is out of range (64 to 4KiB)");
	ck_bounded_error("s: { buffer: 4097 }\n",
			 "test.yaml:1:14: buffer: '4097' is out of range (64 to 4KiB)");
	/* Lists: the number of entries, reported at the list. */
	ck_bounded_error("s: { routes: [a, b, c] }\n",
			 "test.yaml:1:14: routes: 3 entries, expected at most 2");
	ck_bounded_error("s:\n  ports:\n    - 80\n    - 443\n",
			 "test.yaml:3:5: ports: 2 entries, expected at most 1");
	ck_bounded_error("s: { labels: {} }\n",
			 "test.yaml:1:14: labels: 0 entries, expected at least 1");
	/* A value past the bound is still a type error first when it is not the type. */
	ck_bounded_error("s: { count: -1 }\n",
			 "test.yaml:1:13: count: expected a non-negative integer, got '-1'");
}
END_TEST

START_TEST(test_map_bounds_apply_to_defaults)
{
	static const struct ps_cfg_key keys[] = {
		{ "count", PS_CFG_UINT, "0", offsetof(struct bounded, count), NULL, "h", "1", "5" },
		{ NULL },
	};
	struct bounded b;

	ck_assert_int_eq(ps_cfg_map_parse(NULL, keys, NULL, &b, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "<default of count>:1:1: count: '0' is out of range (1 to 5)");
}
END_TEST

START_TEST(test_map_bounds_bugs_in_the_map)
{
	static const struct ps_cfg_key on_string[] = {
		{ "name", PS_CFG_STRING, NULL, 0, NULL, "h", "1", NULL },
		{ NULL },
	};
	static const struct ps_cfg_key on_bool[] = {
		{ "on", PS_CFG_BOOL, NULL, 0, NULL, "h", NULL, "1" },
		{ NULL },
	};
	static const struct ps_cfg_key wrong_unit[] = {
		{ "count", PS_CFG_UINT, NULL, offsetof(struct bounded, count), NULL, "h", "1",
		  "4KiB" },
		{ NULL },
	};
	static const struct ps_cfg_key bad_count[] = {
		{ "routes", PS_CFG_STRLIST, NULL, offsetof(struct bounded, routes), NULL, "h", "-1",
		  NULL },
		{ NULL },
	};
	static const struct ps_cfg_key crossed[] = {
		{ "flush_interval", PS_CFG_DURATION, NULL, offsetof(struct bounded, flush_ms), NULL,
		  "h", "1m", "59s" },
		{ NULL },
	};
	struct bounded b;
	char buf[64];

	ck_assert_int_eq(ps_cfg_map_parse(NULL, on_string, NULL, buf, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "name: config map bug: min/max bound integers, durations, sizes "
				  "and entry counts of lists and maps only");
	ck_assert_int_eq(ps_cfg_map_parse(NULL, on_bool, NULL, buf, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "on: config map bug: min/max bound integers, durations, sizes "
				  "and entry counts of lists and maps only");
	ck_assert_int_eq(ps_cfg_map_parse(NULL, wrong_unit, NULL, &b, &err), -EINVAL);
	ck_assert_str_eq(err.msg,
			 "count: config map bug: bound '4KiB' is not a non-negative integer");
	ck_assert_int_eq(ps_cfg_map_parse(NULL, bad_count, NULL, &b, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "routes: config map bug: bound '-1' is not an entry count");
	ck_assert_int_eq(ps_cfg_map_parse(NULL, crossed, NULL, &b, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "flush_interval: config map bug: min 1m above max 59s");
}
END_TEST

START_TEST(test_key_node_marks)
{
	struct ps_cfg_node *n = load("plugins:\n"
				     "  htp:\n"
				     "    ports: [80]\n");
	const struct ps_cfg_node *plugins = ps_cfg_node_get(n, "plugins");

	ck_mark(ps_cfg_node_key_node_at(plugins, 0), "test.yaml", 2, 3);
	ck_mark(ps_cfg_node_at(plugins, 0), "test.yaml", 3, 5);
	ck_assert_str_eq(ps_cfg_node_scalar(ps_cfg_node_key_node_at(plugins, 0)), "htp");
	ck_assert_ptr_null(ps_cfg_node_key_node_at(plugins, 1));
	ck_assert_ptr_null(
		ps_cfg_node_key_node_at(ps_cfg_node_get(ps_cfg_node_at(plugins, 0), "ports"), 0));
	ck_assert_ptr_null(ps_cfg_node_key_node_at(NULL, 0));
	ps_cfg_node_free(n);
}
END_TEST

START_TEST(test_scalar_parsers)
{
	bool b = false;

	ck_assert_int_eq(ps_cfg_parse_bool("yEs", &b), 0);
	ck_assert_int_eq(b, true);
	ck_assert_int_eq(ps_cfg_parse_bool("OFF", &b), 0);
	ck_assert_int_eq(b, false);
	ck_assert_int_eq(ps_cfg_parse_bool("y", &b), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_bool("", &b), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_bool(NULL, &b), -EINVAL);
	ck_assert_int_eq(ps_cfg_parse_size(NULL, &(uint64_t){ 0 }), -EINVAL);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *parse = tcase_create("parse");
	TCase *files = tcase_create("files");
	TCase *merge = tcase_create("merge");
	TCase *map = tcase_create("map");

	tcase_add_test(parse, test_empty_inputs_are_empty_maps);
	tcase_add_test(parse, test_tree_and_marks);
	tcase_add_test(parse, test_accessors_are_null_safe);
	tcase_add_test(parse, test_null_scalars);
	tcase_add_test(parse, test_anchors_and_aliases_rejected);
	tcase_add_test(parse, test_duplicate_keys_rejected);
	tcase_add_test(parse, test_bad_keys_rejected);
	tcase_add_test(parse, test_multiple_documents_rejected);
	tcase_add_test(parse, test_nesting_limit);
	tcase_add_test(parse, test_syntax_errors_have_marks);
	tcase_add_test(parse, test_root_must_be_a_map);
	tcase_add_test(parse, test_errorf);
	suite_add_tcase(s, parse);

	tcase_add_checked_fixture(files, tmpdir_setup, tmpdir_teardown);
	tcase_add_test(files, test_load_file);
	tcase_add_test(files, test_load_file_io_errors);
	tcase_add_test(files, test_load_all_merges_confd_in_name_order);
	tcase_add_test(files, test_load_all_without_confd);
	tcase_add_test(files, test_load_all_errors);
	suite_add_tcase(s, files);

	tcase_add_test(merge, test_merge_semantics);
	tcase_add_test(merge, test_merge_clashes);
	tcase_add_test(merge, test_node_equal);
	suite_add_tcase(s, merge);

	tcase_add_test(map, test_map_defaults);
	tcase_add_test(map, test_map_values);
	tcase_add_test(map, test_map_null_values_keep_defaults);
	tcase_add_test(map, test_map_null_map_is_defaults);
	tcase_add_test(map, test_map_unknown_keys);
	tcase_add_test(map, test_map_wrong_section_kind);
	tcase_add_test(map, test_map_bool);
	tcase_add_test(map, test_map_int_and_uint);
	tcase_add_test(map, test_map_duration);
	tcase_add_test(map, test_map_size);
	tcase_add_test(map, test_map_string_choices);
	tcase_add_test(map, test_map_lists);
	tcase_add_test(map, test_map_strmap);
	tcase_add_test(map, test_map_bad_default);
	tcase_add_test(map, test_map_empty_defaults);
	tcase_add_test(map, test_scalar_parsers);
	tcase_add_test(map, test_map_bounds_inclusive);
	tcase_add_test(map, test_map_bounds_reject_with_marks);
	tcase_add_test(map, test_map_bounds_apply_to_defaults);
	tcase_add_test(map, test_map_bounds_bugs_in_the_map);
	tcase_add_test(parse, test_key_node_marks);
	suite_add_tcase(s, map);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
