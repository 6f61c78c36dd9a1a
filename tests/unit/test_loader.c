/*
 * Loader tests: real shared objects in tests/unit/plugins/ copied into a
 * fresh private directory, opened, configured and run through the life cycle.
 * Each test forks (CK_FORK), so a crashing plugin fails one test only.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "loader.h"
#include "registry.h"

#ifndef TEST_PLUGIN_BUILD_DIR
#error "TEST_PLUGIN_BUILD_DIR must name the directory holding the test plugins"
#endif

/* Mirrors tests/unit/plugins/good.c. */
struct good_config {
	uint64_t answer;
	char *greeting;
	int64_t start_error;
};

#define PLUGIN_DIR_TEMPLATE "/tmp/ps-test-loader-XXXXXX"
#define LOG_TEMPLATE	    "/tmp/ps-test-loader-log-XXXXXX"

static char plugin_dir[sizeof(PLUGIN_DIR_TEMPLATE)];
static char log_path[sizeof(LOG_TEMPLATE)];
static char log_text[16384];
static struct ps_registry *registry;

/* ---- fixture ---------------------------------------------------------------------------- */

static void setup(void)
{
	int fd;

	registry = ps_registry_new(0);
	ck_assert_ptr_nonnull(registry);
	ps_registry_set_default(registry);
	/* Fresh names every time, also when Check runs without forking. */
	memcpy(plugin_dir, PLUGIN_DIR_TEMPLATE, sizeof(plugin_dir));
	memcpy(log_path, LOG_TEMPLATE, sizeof(log_path));
	ck_assert_ptr_nonnull(mkdtemp(plugin_dir));
	/* Everything the loader logs lands here, so tests can check the reasons. */
	fd = mkstemp(log_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	close(fd);
}

static void remove_tree(const char *dir)
{
	struct dirent *de;
	char path[4096];
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void teardown(void)
{
	chmod(plugin_dir, 0700);
	remove_tree(plugin_dir);
	unlink(log_path);
	ps_registry_set_default(NULL);
	ps_registry_free(registry);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	ssize_t len;
	int in, out;

	in = open(from, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(in >= 0, "cannot open %s (run `make check` to build the test plugins)", from);
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_msg(out >= 0, "cannot create %s", to);
	while ((len = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, len), len);
	ck_assert_int_eq(len, 0);
	/* fchmod, not open's mode: the umask would hide a group/world-writable bit. */
	ck_assert_int_eq(fchmod(out, mode), 0);
	close(in);
	close(out);
}

/* Copies plugins/.libs/<built>.so to <plugin_dir>/<file>; returns the new path. */
static const char *install(const char *built, const char *file, mode_t mode)
{
	static char path[4096];
	char from[4096];

	snprintf(from, sizeof(from), "%s/%s.so", TEST_PLUGIN_BUILD_DIR, built);
	snprintf(path, sizeof(path), "%s/%s", plugin_dir, file);
	copy_file(from, path, mode);
	return path;
}

static void write_text(const char *file, const char *text, mode_t mode)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", plugin_dir, file);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

static const char *read_log(void)
{
	FILE *f = fopen(log_path, "r");
	size_t len;

	ck_assert_ptr_nonnull(f);
	len = fread(log_text, 1, sizeof(log_text) - 1, f);
	log_text[len] = '\0';
	fclose(f);
	return log_text;
}

#define assert_logged(needle)                                                                 \
	ck_assert_msg(strstr(read_log(), (needle)) != NULL, "log lacks \"%s\"; log was:\n%s", \
		      (needle), log_text)

/* The value of one series; false when the family or the series does not exist. */
static bool series_value(const char *family, const char *const *values, double *out)
{
	struct ps_registry *r = ps_registry_default();

	for (size_t i = 0; i < r->n_families; i++) {
		const struct ps_family *f = r->families[i];

		if (strcmp(f->name, family) != 0)
			continue;
		for (size_t j = 0; j < f->n_series; j++) {
			size_t k = 0;

			while (k < f->n_labels && strcmp(f->series[j]->values[k], values[k]) == 0)
				k++;
			if (k == f->n_labels) {
				*out = f->series[j]->value;
				return true;
			}
		}
	}
	return false;
}

static double plugin_up(const char *name)
{
	const char *values[] = { "periscoped", name };
	double v = -1;

	ck_assert_msg(series_value("periscope_plugin_up", values, &v),
		      "no periscope_plugin_up{plugin=\"%s\"}", name);
	return v;
}

static bool has_plugin_up(const char *name)
{
	const char *values[] = { "periscoped", name };
	double v;

	return series_value("periscope_plugin_up", values, &v);
}

static double test_counter(const char *name)
{
	const char *values[] = { "test" };
	double v = 0;

	series_value(name, values, &v);
	return v;
}

/* Opening must fail with want_errno and log a line naming the path and the reason. */
static void assert_refused(const char *path, int want_errno, const char *reason)
{
	struct ps_plugin *p;

	errno = 0;
	p = ps_plugin_open(path);
	ck_assert_ptr_null(p);
	ck_assert_msg(errno == want_errno, "errno %d (%s), want %d (%s)", errno, strerror(errno),
		      want_errno, strerror(want_errno));
	assert_logged("loader: ");
	assert_logged(path);
	assert_logged(reason);
}

static struct ps_cfg_node *load_yaml(const char *text)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *root = ps_cfg_load_string("test.yaml", text, strlen(text), &err);

	ck_assert_msg(root != NULL, "YAML rejected: %s", err.msg);
	return root;
}

static struct ps_plugin *open_good(void)
{
	struct ps_plugin *p = ps_plugin_open(install("good", "good.so", 0755));

	ck_assert_msg(p != NULL, "good.so refused: %s", read_log());
	return p;
}

/* Opens good.so configured with "good:" + yaml_body from test.yaml. */
static struct ps_plugin *open_good_with(const char *yaml)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *root = load_yaml(yaml);
	struct ps_plugin *p = open_good();

	ck_assert_int_eq(ps_plugin_configure(p, ps_cfg_node_get(root, "good"), &err), 0);
	ps_cfg_node_free(root);
	return p;
}

/* ---- a good plugin ---------------------------------------------------------------------- */

START_TEST(test_good_life_cycle)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_plugin *p = open_good();
	const struct good_config *cfg;

	ck_assert_str_eq(p->name, "good");
	ck_assert_str_eq(ps_plugin_name(p), "good");
	ck_assert_int_eq(p->state, PS_PLUGIN_OPENED);

	ck_assert_int_eq(ps_plugin_configure(p, NULL, &err), 0);
	cfg = p->config;
	ck_assert_uint_eq(cfg->answer, 42);
	ck_assert_str_eq(cfg->greeting, "hello");

	ck_assert_int_eq(ps_plugin_init(p), 0);
	ck_assert_int_eq(p->state, PS_PLUGIN_INITED);
	ck_assert_ptr_eq(ps_plugin_data(p), p->config);

	ck_assert_int_eq(ps_plugin_start(p), 0);
	ck_assert_int_eq(p->state, PS_PLUGIN_RUNNING);
	ck_assert_double_eq(test_counter("test_good_starts_total"), 1);
	ck_assert_double_eq(plugin_up("good"), 1);

	/* No collect callback: nothing to do, not an error. */
	ck_assert_int_eq(ps_plugin_collect(p), 0);

	ps_plugin_stop(p);
	ck_assert_int_eq(p->state, PS_PLUGIN_STOPPED);
	ck_assert_double_eq(test_counter("test_good_stops_total"), 1);
	/* A clean stop is not a failure. */
	ck_assert_double_eq(plugin_up("good"), 1);

	ps_plugin_close(p);
	ck_assert_double_eq(test_counter("test_good_destroys_total"), 1);
	ck_assert_double_eq(test_counter("test_good_stops_total"), 1);
}
END_TEST

START_TEST(test_good_config_from_yaml)
{
	struct ps_plugin *p = open_good_with("plugins: {}\n"
					     "good:\n"
					     "  enabled: true\n"
					     "  answer: 7\n"
					     "  greeting: hi\n");
	const struct good_config *cfg = p->config;

	ck_assert_uint_eq(cfg->answer, 7);
	ck_assert_str_eq(cfg->greeting, "hi");
	ck_assert_int_eq(ps_plugin_init(p), 0);
	ck_assert_ptr_eq(ps_plugin_data(p), p->config);
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_good_config_null_section_is_defaults)
{
	struct ps_plugin *p = open_good_with("good:\n");

	ck_assert_uint_eq(((const struct good_config *)p->config)->answer, 42);
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_good_unknown_key_rejected)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *root = load_yaml("good:\n"
					     "  answer: 7\n"
					     "  bogus: 1\n");
	struct ps_plugin *p = open_good();

	ck_assert_int_eq(ps_plugin_configure(p, ps_cfg_node_get(root, "good"), &err), -EINVAL);
	ck_assert_msg(strncmp(err.msg, "test.yaml:3:", 12) == 0, "no file:line:col: %s", err.msg);
	ck_assert_msg(strstr(err.msg, "bogus") != NULL, "key not named: %s", err.msg);
	ck_assert_ptr_null(p->config);
	ps_cfg_node_free(root);
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_good_out_of_range_rejected)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *root = load_yaml("good:\n"
					     "  answer: 1001\n");
	struct ps_plugin *p = open_good();

	/* The plugin's own bound, enforced by the core before init ever sees the value. */
	ck_assert_int_eq(ps_plugin_configure(p, ps_cfg_node_get(root, "good"), &err), -EINVAL);
	ck_assert_str_eq(err.msg, "test.yaml:2:11: answer: '1001' is out of range (at most 1000)");
	ck_assert_ptr_null(p->config);
	ck_assert_int_eq(p->state, PS_PLUGIN_OPENED);
	ps_cfg_node_free(root);
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_init_without_configure_uses_defaults)
{
	struct ps_plugin *p = open_good();

	ck_assert_int_eq(ps_plugin_init(p), 0);
	ck_assert_ptr_nonnull(p->config);
	ck_assert_uint_eq(((const struct good_config *)p->config)->answer, 42);
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_start_failure_stops_and_marks_down)
{
	struct ps_plugin *p = open_good_with("good: { start_error: -5 }\n");

	ck_assert_int_eq(ps_plugin_init(p), 0);
	ck_assert_int_eq(ps_plugin_start(p), -EIO);
	ck_assert_int_eq(p->state, PS_PLUGIN_DOWN);
	/* Partially attached programs are detached. */
	ck_assert_double_eq(test_counter("test_good_stops_total"), 1);
	ck_assert_double_eq(plugin_up("good"), 0);
	ck_assert_msg(strstr(p->reason, "start failed") != NULL, "reason: %s", p->reason);
	assert_logged("plugin good down: start failed: ");

	/* Down after a successful init: destroy is still owed, stop is not repeated. */
	ps_plugin_close(p);
	ck_assert_double_eq(test_counter("test_good_destroys_total"), 1);
	ck_assert_double_eq(test_counter("test_good_stops_total"), 1);
}
END_TEST

START_TEST(test_positive_result_is_an_error)
{
	struct ps_plugin *p = open_good_with("good: { start_error: 3 }\n");

	ck_assert_int_eq(ps_plugin_init(p), 0);
	ck_assert_int_eq(ps_plugin_start(p), -EINVAL);
	ck_assert_int_eq(p->state, PS_PLUGIN_DOWN);
	assert_logged("start returned 3");
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_reconfigure_after_init_refused)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_plugin *p = open_good();

	ck_assert_int_eq(ps_plugin_init(p), 0);
	ck_assert_int_eq(ps_plugin_configure(p, NULL, &err), -EBUSY);
	ps_plugin_close(p);
}
END_TEST

/* ---- plugins that must be refused ------------------------------------------------------- */

START_TEST(test_bad_abi_refused)
{
	char reason[96];

	snprintf(reason, sizeof(reason), "ABI version 999, this periscoped speaks %u: rebuild it",
		 PS_PLUGIN_ABI_VERSION);
	assert_refused(install("bad_abi", "bad_abi.so", 0755), EPROTO, reason);
}
END_TEST

START_TEST(test_bad_size_refused)
{
	assert_refused(install("bad_size", "bad_size.so", 0755), EPROTO, "descriptor is 7 bytes");
}
END_TEST

START_TEST(test_no_descriptor_refused)
{
	assert_refused(install("no_descriptor", "no_descriptor.so", 0755), ENOENT,
		       "no \"periscope_plugin\" symbol");
}
END_TEST

START_TEST(test_misnamed_refused)
{
	assert_refused(install("misnamed", "misnamed.so", 0755), EINVAL, "named \"somebody_else\"");
}
END_TEST

START_TEST(test_world_writable_file_refused)
{
	const char *path = install("good", "good.so", 0666);

	assert_refused(path, EPERM, "writable by group or others");
	assert_logged("chmod go-w");
}
END_TEST

START_TEST(test_group_writable_dir_refused)
{
	const char *path = install("good", "good.so", 0755);
	char want[256];

	ck_assert_int_eq(chmod(plugin_dir, 0777), 0);
	assert_refused(path, EPERM, "writable by group or others (mode 0777)");
	/* The line names the directory, the thing to fix. */
	snprintf(want, sizeof(want), "chmod go-w %s\n", plugin_dir);
	assert_logged(want);
}
END_TEST

START_TEST(test_symlink_refused)
{
	char link_path[4096];
	const char *target = install("good", "real.so", 0755);

	snprintf(link_path, sizeof(link_path), "%s/good.so", plugin_dir);
	ck_assert_int_eq(symlink(target, link_path), 0);
	assert_refused(link_path, EPERM, "not a regular file");
}
END_TEST

START_TEST(test_foreign_owner_refused)
{
	const char *path = install("good", "good.so", 0755);

	/* Only root can give a file away. */
	if (geteuid() != 0)
		return;
	ck_assert_int_eq(chown(path, 65534, 65534), 0);
	assert_refused(path, EPERM, "owned by uid 65534");
}
END_TEST

START_TEST(test_missing_file_refused)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/absent.so", plugin_dir);
	assert_refused(path, ENOENT, "No such file");
}
END_TEST

START_TEST(test_not_elf_refused)
{
	char path[4096];

	write_text("junk.so", "this is not an ELF object\n", 0755);
	snprintf(path, sizeof(path), "%s/junk.so", plugin_dir);
	assert_refused(path, ENOEXEC, "cannot load plugin");
}
END_TEST

START_TEST(test_fifo_refused_without_hanging)
{
	char path[4096];

	/* open() of a FIFO without a writer blocks: the loader must neither block nor load. */
	snprintf(path, sizeof(path), "%s/fifo.so", plugin_dir);
	ck_assert_int_eq(mkfifo(path, 0755), 0);
	assert_refused(path, EPERM, "not a regular file");
}
END_TEST

/*
 * Plugins are dlopen()ed through /proc/self/fd/N, and the dynamic linker hands back an
 * object already loaded under the same name without opening the file: the second plugin,
 * opened on the descriptor number the first had, must still be itself.
 */
START_TEST(test_second_plugin_is_not_the_first)
{
	struct ps_plugin *first, *second, *third;
	char path[4096];

	first = ps_plugin_open(install("good", "good.so", 0755));
	ck_assert_ptr_nonnull(first);
	second = ps_plugin_open(install("fails_init", "fails_init.so", 0755));
	ck_assert_msg(second != NULL, "second plugin refused: %s", read_log());
	ck_assert_str_eq(ps_plugin_name(second), "fails_init");
	ck_assert_ptr_ne(second->desc, first->desc);
	ck_assert_ptr_ne(second->dl, first->dl);
	/* And one without a descriptor is refused for that, not taken for an earlier one. */
	snprintf(path, sizeof(path), "%s", install("no_descriptor", "no_descriptor.so", 0755));
	third = ps_plugin_open(path);
	ck_assert_ptr_null(third);
	assert_logged("no \"periscope_plugin\" symbol");
	ps_plugin_close(second);
	ps_plugin_close(first);
}
END_TEST

/*
 * A reload opens the running plugins again: the same file is the same object, and a plugin
 * opened after that (on the descriptor number the others had) is still itself: the dynamic
 * linker names an object also by the names it was found under.
 */
START_TEST(test_reopened_plugin_is_the_same_object)
{
	struct ps_plugin *first, *again, *other;
	const char *path = install("good", "good.so", 0755);

	first = ps_plugin_open(path);
	ck_assert_ptr_nonnull(first);
	again = ps_plugin_open(path);
	ck_assert_msg(again != NULL, "reopening refused: %s", read_log());
	ck_assert_ptr_eq(again->desc, first->desc);
	other = ps_plugin_open(install("fails_init", "fails_init.so", 0755));
	ck_assert_msg(other != NULL, "the next plugin refused: %s", read_log());
	ck_assert_str_eq(other->desc->name, "fails_init");
	ps_plugin_close(other);
	ps_plugin_close(again);
	ps_plugin_close(first);
}
END_TEST

/* The directory checked is the directory the file is opened from, even through a link. */
START_TEST(test_writable_dir_behind_a_link_refused)
{
	char link_dir[4096], path[4200];

	install("good", "good.so", 0755);
	ck_assert_int_eq(chmod(plugin_dir, 0777), 0);
	snprintf(link_dir, sizeof(link_dir), "%s.link", plugin_dir);
	ck_assert_int_eq(symlink(plugin_dir, link_dir), 0);
	snprintf(path, sizeof(path), "%s/good.so", link_dir);
	assert_refused(path, EPERM, "writable by group or others (mode 0777)");
	unlink(link_dir);
}
END_TEST

START_TEST(test_plugin_without_config_map_takes_no_keys)
{
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *root = load_yaml("fails_init:\n"
					     "  enabled: true\n"
					     "  depth: 3\n"
					     "quiet:\n"
					     "  enabled: false\n");
	struct ps_plugin *p = ps_plugin_open(install("fails_init", "fails_init.so", 0755));

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(ps_plugin_configure(p, ps_cfg_node_get(root, "fails_init"), &err),
			 -EINVAL);
	ck_assert_msg(strncmp(err.msg, "test.yaml:3:", 12) == 0, "no file:line:col: %s", err.msg);
	ck_assert_msg(strstr(err.msg, "depth") != NULL, "key not named: %s", err.msg);
	/* "enabled" alone belongs to the core. */
	ck_assert_int_eq(ps_plugin_configure(p, ps_cfg_node_get(root, "quiet"), &err), 0);
	ck_assert_int_eq(ps_plugin_configure(p, NULL, &err), 0);
	ps_cfg_node_free(root);
	ps_plugin_close(p);
}
END_TEST

/* ---- scanning --------------------------------------------------------------------------- */

static void run_plugin(struct ps_plugin *p)
{
	struct ps_cfg_error err = { { 0 } };

	ck_assert_int_eq(ps_plugin_configure(p, NULL, &err), 0);
	if (ps_plugin_init(p) == 0)
		ps_plugin_start(p);
}

static void close_all(struct ps_plugin **plugins, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ps_plugin_close(plugins[i]);
	free(plugins);
}

START_TEST(test_scan_failed_init_goes_down_others_run)
{
	struct ps_plugin **plugins;
	size_t n;

	install("good", "good.so", 0755);
	install("fails_init", "fails_init.so", 0755);
	ck_assert_int_eq(ps_plugin_scan(plugin_dir, &plugins, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(plugins[0]->name, "fails_init");
	ck_assert_str_eq(plugins[1]->name, "good");

	for (size_t i = 0; i < n; i++)
		run_plugin(plugins[i]);

	ck_assert_int_eq(plugins[0]->state, PS_PLUGIN_DOWN);
	ck_assert_str_eq(plugins[0]->reason, "init failed: No such device");
	assert_logged("error loader: plugin fails_init down: init failed: No such device");
	ck_assert_double_eq(plugin_up("fails_init"), 0);

	ck_assert_int_eq(plugins[1]->state, PS_PLUGIN_RUNNING);
	ck_assert_double_eq(plugin_up("good"), 1);
	close_all(plugins, n);
}
END_TEST

START_TEST(test_try_init_failure_leaves_the_plugin_up_metric_alone)
{
	struct ps_plugin *p;

	p = ps_plugin_open(install("fails_init", "fails_init.so", 0755));
	ck_assert_ptr_nonnull(p);
	/* As for a running instance of the same name during a reload. */
	ps_plugin_report_up("fails_init", true);
	ck_assert_int_eq(ps_plugin_try_init(p), -ENODEV);
	ck_assert_str_eq(p->reason, "init failed: No such device");
	ck_assert_int_eq(p->state, PS_PLUGIN_OPENED);
	ck_assert(!p->inited);
	ck_assert_double_eq(plugin_up("fails_init"), 1);
	ck_assert_ptr_null(strstr(read_log(), "down"));
	/* ps_plugin_init is the one that marks it down. */
	ck_assert_int_eq(ps_plugin_init(p), -ENODEV);
	ck_assert_int_eq(p->state, PS_PLUGIN_DOWN);
	ck_assert_str_eq(p->reason, "init failed: No such device");
	ck_assert_double_eq(plugin_up("fails_init"), 0);
	assert_logged("error loader: plugin fails_init down: init failed: No such device");
	ps_plugin_close(p);
}
END_TEST

START_TEST(test_scan_reports_refused_plugins_down)
{
	struct ps_plugin **plugins;
	struct ps_strlist refused = { 0 };
	static const char *const want[] = { "bad_abi", "bad_size", "misnamed", "no_descriptor" };
	size_t n;

	install("bad_abi", "bad_abi.so", 0755);
	install("bad_size", "bad_size.so", 0755);
	install("good", "good.so", 0755);
	install("misnamed", "misnamed.so", 0755);
	install("no_descriptor", "no_descriptor.so", 0755);
	ck_assert_int_eq(ps_plugin_scan(plugin_dir, &plugins, &n, &refused), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(plugins[0]->name, "good");
	/* Named for the daemon's status line, in file-name order. */
	ck_assert_uint_eq(refused.n, 4);
	for (size_t i = 0; i < refused.n; i++)
		ck_assert_str_eq(refused.v[i], want[i]);
	ps_plugin_refused_free(&refused);
	ck_assert_ptr_null(refused.v);
	ck_assert_uint_eq(refused.n, 0);

	ck_assert_double_eq(plugin_up("bad_abi"), 0);
	ck_assert_double_eq(plugin_up("bad_size"), 0);
	ck_assert_double_eq(plugin_up("misnamed"), 0);
	ck_assert_double_eq(plugin_up("no_descriptor"), 0);
	assert_logged("bad_abi.so: ABI version 999");
	assert_logged("bad_size.so: descriptor is 7 bytes");
	assert_logged("misnamed.so: descriptor is named");
	assert_logged("no_descriptor.so: no \"periscope_plugin\" symbol");
	close_all(plugins, n);
}
END_TEST

START_TEST(test_scan_skips_other_files)
{
	struct ps_plugin **plugins;
	size_t n;

	install("good", "good.so", 0755);
	install("good", "good.so.bak", 0755);
	install("good", ".good.so", 0755);
	write_text("README", "plugins live here\n", 0644);
	write_text("notes.txt", "nothing\n", 0644);
	ck_assert_int_eq(ps_plugin_scan(plugin_dir, &plugins, &n, NULL), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(plugins[0]->name, "good");
	ck_assert(!has_plugin_up("README"));
	ck_assert(!has_plugin_up("good.so.bak"));
	ck_assert(!has_plugin_up(".good"));
	close_all(plugins, n);
}
END_TEST

START_TEST(test_scan_empty_and_missing_dir)
{
	struct ps_plugin **plugins = (struct ps_plugin **)&plugins;
	char missing[4096];
	size_t n = 99;

	ck_assert_int_eq(ps_plugin_scan(plugin_dir, &plugins, &n, NULL), 0);
	ck_assert_uint_eq(n, 0);
	free(plugins);

	snprintf(missing, sizeof(missing), "%s/nope", plugin_dir);
	ck_assert_int_eq(ps_plugin_scan(missing, &plugins, &n, NULL), -ENOENT);
	ck_assert_uint_eq(n, 0);
	assert_logged("cannot read plugin directory");
}
END_TEST

static Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");
	TCase *life = tcase_create("life cycle");
	TCase *refuse = tcase_create("refusals");
	TCase *scan = tcase_create("scan");

	tcase_add_checked_fixture(life, setup, teardown);
	tcase_add_test(life, test_good_life_cycle);
	tcase_add_test(life, test_good_config_from_yaml);
	tcase_add_test(life, test_good_config_null_section_is_defaults);
	tcase_add_test(life, test_good_unknown_key_rejected);
	tcase_add_test(life, test_good_out_of_range_rejected);
	tcase_add_test(life, test_init_without_configure_uses_defaults);
	tcase_add_test(life, test_start_failure_stops_and_marks_down);
	tcase_add_test(life, test_positive_result_is_an_error);
	tcase_add_test(life, test_reconfigure_after_init_refused);
	tcase_add_test(life, test_plugin_without_config_map_takes_no_keys);
	suite_add_tcase(s, life);

	tcase_add_checked_fixture(refuse, setup, teardown);
	tcase_add_test(refuse, test_bad_abi_refused);
	tcase_add_test(refuse, test_bad_size_refused);
	tcase_add_test(refuse, test_no_descriptor_refused);
	tcase_add_test(refuse, test_misnamed_refused);
	tcase_add_test(refuse, test_world_writable_file_refused);
	tcase_add_test(refuse, test_group_writable_dir_refused);
	tcase_add_test(refuse, test_symlink_refused);
	tcase_add_test(refuse, test_foreign_owner_refused);
	tcase_add_test(refuse, test_missing_file_refused);
	tcase_add_test(refuse, test_not_elf_refused);
	tcase_add_test(refuse, test_fifo_refused_without_hanging);
	tcase_add_test(refuse, test_second_plugin_is_not_the_first);
	tcase_add_test(refuse, test_reopened_plugin_is_the_same_object);
	tcase_add_test(refuse, test_writable_dir_behind_a_link_refused);
	suite_add_tcase(s, refuse);

	tcase_add_checked_fixture(scan, setup, teardown);
	tcase_add_test(scan, test_scan_failed_init_goes_down_others_run);
	tcase_add_test(scan, test_try_init_failure_leaves_the_plugin_up_metric_alone);
	tcase_add_test(scan, test_scan_reports_refused_plugins_down);
	tcase_add_test(scan, test_scan_skips_other_files);
	tcase_add_test(scan, test_scan_empty_and_missing_dir);
	suite_add_tcase(s, scan);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(loader_suite());
	int failed;

	/* The log format the assertions expect, not journald's. */
	unsetenv("JOURNAL_STREAM");
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
