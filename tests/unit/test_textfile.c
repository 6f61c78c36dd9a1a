/* The Prometheus textfile sink: exact text, atomic replacement, failures and recovery. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "cfg.h"
#include "registry.h"
#include "sinks/prom_text.h"
#include "sinks/sink.h"
#include "sinks/writer.h"

#define PROMTOOL "/usr/bin/promtool"
#define FILENAME "periscope.prom"
#define NOW_NS	 1795543215000000000ull

/* In textfile.c: take the path of filesystems without O_TMPFILE. */

static const char *const tcp_labels[] = { "service_name", "direction", "peer_address", "peer_port",
					  NULL };
static const double rtt_bounds[] = { 0.001, 0.01 };
static const char *const outbound[] = { "curl", "outbound", "10.0.0.5", "443" };
static const char *const inbound_weird[] = { "a\"b\\c\nd", "inbound", "", "8080" };

struct fixture {
	struct ps_registry *reg;
	struct ps_metric *opened, *active, *rtt;
	char *static_keys[1], *static_values[1];
	struct ps_strmap static_labels;
	struct ps_flush_ctx ctx;
	char dir[64];
	char path[128];
};

static void fixture_init(struct fixture *fx)
{
	const struct ps_metric_desc opened = {
		.name = "periscope_tcp_connections_opened_total",
		.help = "TCP connections opened.",
		.type = PS_METRIC_COUNTER,
		.labels = tcp_labels,
	};
	const struct ps_metric_desc active = {
		.name = "periscope_tcp_connections_active",
		.help = "TCP connections open now.",
		.type = PS_METRIC_GAUGE,
		.labels = tcp_labels,
	};
	const struct ps_metric_desc rtt = {
		.name = "periscope_tcp_rtt_seconds",
		.help = "Smoothed RTT at close.",
		.type = PS_METRIC_HISTOGRAM,
		.labels = tcp_labels,
		.buckets = rtt_bounds,
		.n_buckets = 2,
	};

	memset(fx, 0, sizeof(*fx));
	fx->reg = ps_registry_new(0);
	ck_assert_ptr_nonnull(fx->reg);
	fx->opened = ps_registry_register(fx->reg, &opened);
	fx->active = ps_registry_register(fx->reg, &active);
	fx->rtt = ps_registry_register(fx->reg, &rtt);
	ck_assert(fx->opened && fx->active && fx->rtt);
	ck_assert_int_eq(ps_metric_add(fx->opened, outbound, 25), 0);
	ck_assert_int_eq(ps_metric_add(fx->opened, inbound_weird, 3), 0);
	ck_assert_int_eq(ps_metric_set(fx->active, outbound, 2), 0);
	/* buckets 0.001, 0.01, +Inf hold 1, 0, 1 */
	ck_assert_int_eq(ps_metric_observe(fx->rtt, outbound, 0.0005), 0);
	ck_assert_int_eq(ps_metric_observe(fx->rtt, outbound, 0.25), 0);

	fx->static_keys[0] = "cluster";
	fx->static_values[0] = "prod-eu-1";
	fx->static_labels = (struct ps_strmap){ fx->static_keys, fx->static_values, 1 };
	fx->ctx = (struct ps_flush_ctx){
		.registry = fx->reg,
		.static_labels = &fx->static_labels,
		.now_unix_ns = NOW_NS,
		.interval_ns = 1000000000ull,
	};
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_textfile.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->dir, FILENAME);
}

static void fixture_free(struct fixture *fx)
{
	char cmd[128];

	ps_registry_free(fx->reg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	ck_assert_int_eq(system(cmd), 0);
	ps_sink_textfile_force_named_temp(false);
}

#define OUT                                                                                         \
	"service_name=\"curl\",direction=\"outbound\",peer_address=\"10.0.0.5\",peer_port=\"443\"," \
	"cluster=\"prod-eu-1\""

static const char expected_text[] =
	"# HELP periscope_tcp_connections_opened_total TCP connections opened.\n"
	"# TYPE periscope_tcp_connections_opened_total counter\n"
	"periscope_tcp_connections_opened_total{" OUT "} 25\n"
	"periscope_tcp_connections_opened_total{service_name=\"a\\\"b\\\\c\\nd\","
	"direction=\"inbound\",peer_address=\"\",peer_port=\"8080\",cluster=\"prod-eu-1\"} 3\n"
	"# HELP periscope_tcp_connections_active TCP connections open now.\n"
	"# TYPE periscope_tcp_connections_active gauge\n"
	"periscope_tcp_connections_active{" OUT "} 2\n"
	"# HELP periscope_tcp_rtt_seconds Smoothed RTT at close.\n"
	"# TYPE periscope_tcp_rtt_seconds histogram\n"
	"periscope_tcp_rtt_seconds_bucket{" OUT ",le=\"0.001\"} 1\n"
	"periscope_tcp_rtt_seconds_bucket{" OUT ",le=\"0.01\"} 1\n"
	"periscope_tcp_rtt_seconds_bucket{" OUT ",le=\"+Inf\"} 2\n"
	"periscope_tcp_rtt_seconds_sum{" OUT "} 0.2505\n"
	"periscope_tcp_rtt_seconds_count{" OUT "} 2\n";

/* ---- helpers ------------------------------------------------------------------------------- */

/* The sink as the daemon opens it: config parsed from YAML by the sink's own map. */
static void *open_sink_yaml(const char *yaml)
{
	const struct ps_sink_type *t = &ps_sink_prometheus_textfile;
	struct ps_cfg_error err = { { 0 } };
	struct ps_cfg_node *node;
	void *config, *sink;
	int saved;

	node = ps_cfg_load_string("<test>", yaml, strlen(yaml), &err);
	ck_assert_msg(node, "%s", err.msg);
	config = calloc(1, t->config_size);
	ck_assert_ptr_nonnull(config);
	ck_assert_msg(ps_cfg_map_parse(node, t->config_map, NULL, config, &err) == 0, "%s",
		      err.msg);
	errno = 0;
	sink = t->open(config);
	saved = errno;
	/* The sink keeps nothing from its config. */
	ps_cfg_map_free(t->config_map, config);
	free(config);
	ps_cfg_node_free(node);
	errno = saved;
	return sink;
}

static void *open_sink(const char *dir, const char *filename)
{
	char yaml[512];

	snprintf(yaml, sizeof(yaml), "directory: \"%s\"\nfilename: \"%s\"\n", dir, filename);
	return open_sink_yaml(yaml);
}

/*
 * A flush, then the wait for its write (done on the sink's writer thread):
 * the result of that write.
 */
static int flush(void *sink, const struct ps_flush_ctx *ctx)
{
	int rc = ps_sink_prometheus_textfile.flush(sink, ctx);

	if (rc == -ENOMEM)
		return rc; /* rendering failed: nothing was handed over */
	return ps_sink_textfile_wait(sink);
}

/* Closed, and its last snapshot written: close hands that to the writer thread. */
static void close_sink(void *sink)
{
	ps_sink_prometheus_textfile.close(sink);
	ps_writer_wait_released();
}

/* The whole file, or NULL when it does not exist; the caller frees it. */
static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *in = fopen(path, "r"), *out;
	char chunk[4096];
	size_t n;

	if (!in)
		return NULL;
	out = open_memstream(&buf, &len);
	ck_assert_ptr_nonnull(out);
	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
		fwrite(chunk, 1, n, out);
	fclose(in);
	fclose(out);
	return buf;
}

static char *prom_text(const struct ps_flush_ctx *ctx)
{
	char *text;
	size_t len;
	FILE *out = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(ps_prom_write(out, ctx), 0);
	fclose(out);
	return text;
}

/* The directory's entries but . and .., space-separated, sorted. */
static char *dir_listing(const char *dir)
{
	struct dirent **names;
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	int n = scandir(dir, &names, NULL, alphasort);
	bool first = true;

	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
			fprintf(out, "%s%s", first ? "" : " ", names[i]->d_name);
			first = false;
		}
		free(names[i]);
	}
	free(names);
	fclose(out);
	return buf;
}

static void assert_listing(const char *dir, const char *want)
{
	char *got = dir_listing(dir);

	ck_assert_str_eq(got, want);
	free(got);
}

static void assert_file_is(const char *path, const char *want)
{
	char *got = slurp(path);

	ck_assert_msg(got, "%s is missing", path);
	ck_assert_str_eq(got, want);
	free(got);
}

static void assert_promtool_accepts(const char *path)
{
	char cmd[256];

	if (access(PROMTOOL, X_OK) != 0)
		return; /* not installed: the exact-text assertions still hold */
	snprintf(cmd, sizeof(cmd), PROMTOOL " check metrics < '%s' >/dev/null 2>&1", path);
	ck_assert_msg(system(cmd) == 0, "promtool check metrics rejects %s", path);
}

static void touch(const char *dir, const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "half a snap", 11), 11);
	close(fd);
}

/* ---- the log: stderr captured into a file ------------------------------------------------- */

struct log_capture {
	char path[64];
	int saved_stderr;
};

static void log_capture_start(struct log_capture *lc)
{
	int fd;

	snprintf(lc->path, sizeof(lc->path), "/tmp/test_textfile_log.XXXXXX");
	fd = mkstemp(lc->path);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	lc->saved_stderr = dup(STDERR_FILENO);
	ck_assert_int_ge(lc->saved_stderr, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	close(fd);
}

/* Everything logged since the start; the caller frees it. */
static char *log_capture_stop(struct log_capture *lc)
{
	char *text;

	fflush(stderr);
	ck_assert_int_ge(dup2(lc->saved_stderr, STDERR_FILENO), 0);
	close(lc->saved_stderr);
	text = slurp(lc->path);
	unlink(lc->path);
	ck_assert_ptr_nonnull(text);
	return text;
}

static int count_lines_with(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* ---- a tiny tmpfs, to make a directory full or read-only as root ------------------------- */

static bool mount_tiny_tmpfs(const char *dir)
{
	if (geteuid() != 0 || mount("tmpfs", dir, "tmpfs", 0, "size=16k,mode=0755") != 0) {
		fprintf(stderr,
			"test_textfile: cannot mount a tmpfs (%s): full-disk case skipped\n",
			strerror(errno));
		return false;
	}
	return true;
}

/* Writes a filler file until the filesystem has no block left. */
static void fill_up(const char *dir)
{
	char path[256], block[512];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/filler", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	memset(block, 'x', sizeof(block));
	do
		n = write(fd, block, sizeof(block));
	while (n > 0);
	ck_assert_int_eq(errno, ENOSPC);
	close(fd);
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* _i: 0 = O_TMPFILE, 1 = named temporary file (filesystems without O_TMPFILE). */
START_TEST(test_writes_exact_text)
{
	struct fixture fx;
	struct stat st;
	mode_t old_umask = umask(077); /* node_exporter must still be able to read it */
	void *sink;

	fixture_init(&fx);
	ps_sink_textfile_force_named_temp(_i);
	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	assert_file_is(fx.path, expected_text);
	ck_assert_int_eq(stat(fx.path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0644);
	assert_listing(fx.dir, FILENAME);
	assert_promtool_accepts(fx.path);
	close_sink(sink);
	umask(old_umask);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_series_follow_registry)
{
	struct fixture fx;
	struct stat before, after;
	void *sink;
	char *text;

	fixture_init(&fx);
	ps_sink_textfile_force_named_temp(_i);
	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	ck_assert_int_eq(stat(fx.path, &before), 0);

	/* The connection ended: its gauge goes, its counters stay and keep counting. */
	ck_assert_int_eq(ps_metric_remove(fx.active, outbound), 0);
	ck_assert_int_eq(ps_metric_add(fx.opened, outbound, 5), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	text = slurp(fx.path);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_null(strstr(text, "periscope_tcp_connections_active"));
	ck_assert_ptr_nonnull(strstr(text, "periscope_tcp_connections_opened_total{" OUT "} 30\n"));
	ck_assert_ptr_nonnull(strstr(text, "periscope_tcp_rtt_seconds_count{" OUT "} 2\n"));
	free(text);
	/* A new inode each time: replaced by rename, never rewritten in place. */
	ck_assert_int_eq(stat(fx.path, &after), 0);
	ck_assert(before.st_ino != after.st_ino);
	assert_listing(fx.dir, FILENAME);
	assert_promtool_accepts(fx.path);
	close_sink(sink);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_full_directory_keeps_previous_file)
{
	struct fixture fx;
	struct log_capture lc;
	char filler[160], *log, *fresh;
	void *sink;

	fixture_init(&fx);
	ps_sink_textfile_force_named_temp(_i);
	if (!mount_tiny_tmpfs(fx.dir)) {
		fixture_free(&fx);
		return;
	}
	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	fill_up(fx.dir);

	ck_assert_int_eq(ps_metric_add(fx.opened, outbound, 1000), 0);
	log_capture_start(&lc);
	ck_assert_int_eq(flush(sink, &fx.ctx), -ENOSPC);
	ck_assert_int_eq(flush(sink, &fx.ctx), -ENOSPC);
	ck_assert_int_eq(flush(sink, &fx.ctx), -ENOSPC);
	/* The previous snapshot, byte for byte, and no temporary file. */
	assert_file_is(fx.path, expected_text);
	assert_listing(fx.dir, "filler " FILENAME);

	snprintf(filler, sizeof(filler), "%s/filler", fx.dir);
	ck_assert_int_eq(unlink(filler), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	log = log_capture_stop(&lc);
	/* Logged once when it broke (with the reason), once when it recovered. */
	ck_assert_int_eq(count_lines_with(log, "textfile: "), 2);
	ck_assert_int_eq(count_lines_with(log, "No space left on device"), 1);
	ck_assert_int_eq(count_lines_with(log, "writing again"), 1);
	free(log);

	fresh = prom_text(&fx.ctx);
	assert_file_is(fx.path, fresh);
	free(fresh);
	assert_listing(fx.dir, FILENAME);
	close_sink(sink);
	ck_assert_int_eq(umount(fx.dir), 0);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_readonly_directory_keeps_previous_file)
{
	struct fixture fx;
	void *sink;
	char *fresh;

	fixture_init(&fx);
	if (!mount_tiny_tmpfs(fx.dir)) {
		fixture_free(&fx);
		return;
	}
	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	ck_assert_int_eq(mount("tmpfs", fx.dir, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL), 0);

	ck_assert_int_eq(ps_metric_add(fx.opened, outbound, 1), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), -EROFS);
	assert_file_is(fx.path, expected_text);

	ck_assert_int_eq(mount("tmpfs", fx.dir, "tmpfs", MS_REMOUNT, "size=16k"), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	fresh = prom_text(&fx.ctx);
	assert_file_is(fx.path, fresh);
	free(fresh);
	assert_listing(fx.dir, FILENAME);
	close_sink(sink);
	ck_assert_int_eq(umount(fx.dir), 0);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_missing_directory_then_created)
{
	struct fixture fx;
	struct log_capture lc;
	char sub[128], path[192], *log;
	void *sink;

	fixture_init(&fx);
	snprintf(sub, sizeof(sub), "%s/node-exporter", fx.dir);
	snprintf(path, sizeof(path), "%s/%s", sub, FILENAME);

	log_capture_start(&lc);
	sink = open_sink(sub, FILENAME);
	ck_assert_ptr_nonnull(sink); /* it may appear later */
	ck_assert_int_eq(flush(sink, &fx.ctx), -ENOENT);
	ck_assert_int_eq(flush(sink, &fx.ctx), -ENOENT);

	ck_assert_int_eq(mkdir(sub, 0755), 0);
	touch(sub, ".periscope.prom.Ab12Z9"); /* stale: swept before the first write */
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	log = log_capture_stop(&lc);
	ck_assert_int_eq(count_lines_with(log, "does not exist (yet)"), 1);
	ck_assert_int_eq(count_lines_with(log, "removed .periscope.prom.Ab12Z9"), 1);
	ck_assert_int_eq(count_lines_with(log, "writing again"), 1);
	free(log);
	assert_file_is(path, expected_text);
	assert_listing(sub, FILENAME);

	/* Removed while running: the same cycle again. */
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(rmdir(sub), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), -ENOENT);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	assert_file_is(path, expected_text);
	close_sink(sink);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_stale_temps_removed_at_open)
{
	struct fixture fx;
	void *sink;

	fixture_init(&fx);
	touch(fx.dir, ".periscope.prom.Ab12Z9");
	touch(fx.dir, ".periscope.prom.zzzzzz");
	/* Not ours: other files' temporaries, our own backups, other shapes. */
	touch(fx.dir, ".other.prom.Ab12Z9");
	touch(fx.dir, "periscope.prom.bak");
	touch(fx.dir, ".periscope.prom.toolong1");
	touch(fx.dir, ".periscope.prom.ab-12z");
	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	assert_listing(fx.dir, ".other.prom.Ab12Z9 .periscope.prom.ab-12z .periscope.prom.toolong1 "
			       "periscope.prom.bak");
	close_sink(sink);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_custom_filename)
{
	struct fixture fx;
	char path[128];
	void *sink;

	fixture_init(&fx);
	touch(fx.dir, ".periscope.prom.Ab12Z9"); /* another file's temporary: kept */
	sink = open_sink(fx.dir, "edge-1.prom");
	ck_assert_ptr_nonnull(sink);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	snprintf(path, sizeof(path), "%s/edge-1.prom", fx.dir);
	assert_file_is(path, expected_text);
	assert_listing(fx.dir, ".periscope.prom.Ab12Z9 edge-1.prom");
	close_sink(sink);
	fixture_free(&fx);
}
END_TEST

START_TEST(test_bad_config_rejected)
{
	static const char *const bad_names[] = {
		"periscope.txt",
		"../periscope.prom",
		"sub/periscope.prom",
		".prom",
		".hidden.prom",
		"periscope.prom.bak",
		"",
	};
	char long_name[300];
	void *sink;

	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		sink = open_sink("/tmp", bad_names[i]);
		ck_assert_msg(!sink, "filename '%s' accepted", bad_names[i]);
		ck_assert_int_eq(errno, EINVAL);
	}
	memset(long_name, 'a', sizeof(long_name));
	strcpy(long_name + 250, ".prom");
	sink = open_sink("/tmp", long_name);
	ck_assert_ptr_null(sink);
	ck_assert_int_eq(errno, EINVAL);

	sink = open_sink_yaml("directory: \"\"\n");
	ck_assert_ptr_null(sink);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_defaults)
{
	const struct ps_cfg_key *k = ps_sink_prometheus_textfile.config_map;
	int seen = 0;

	ck_assert_str_eq(ps_sink_prometheus_textfile.name, "prometheus_textfile");
	for (; k->name; k++) {
		if (strcmp(k->name, "directory") == 0) {
			ck_assert_str_eq(k->def, "/var/lib/prometheus/node-exporter");
			seen++;
		} else if (strcmp(k->name, "filename") == 0) {
			ck_assert_str_eq(k->def, "periscope.prom");
			seen++;
		}
	}
	ck_assert_int_eq(seen, 2);
}
END_TEST

/*
 * A reader thread that opens and reads the file in a loop while the sink
 * replaces it hundreds of times with a small and a large (many write calls)
 * snapshot: every read must be one of the two, whole.
 */
#define REPLACEMENTS 300

struct reader {
	const char *path, *a, *b;
	atomic_bool stop;
	int reads, bad;
};

static void *read_until_told(void *arg)
{
	struct reader *r = arg;

	while (!atomic_load(&r->stop)) {
		char *text = slurp(r->path);

		if (!text || (strcmp(text, r->a) && strcmp(text, r->b)))
			r->bad++;
		free(text);
		r->reads++;
	}
	return NULL;
}

START_TEST(test_readers_never_see_a_partial_file)
{
	struct fixture fx;
	struct ps_flush_ctx big_ctx;
	struct ps_registry *big;
	struct ps_metric *m;
	struct reader r = { 0 };
	char *small_text, *big_text, port[16];
	pthread_t thread;
	void *sink;

	fixture_init(&fx);
	ps_sink_textfile_force_named_temp(_i);
	big = ps_registry_new(0);
	m = ps_registry_register(big, &(struct ps_metric_desc){
					      .name = "periscope_tcp_sent_bytes_total",
					      .help = "Bytes sent.",
					      .type = PS_METRIC_COUNTER,
					      .labels = tcp_labels,
				      });
	ck_assert_ptr_nonnull(m);
	for (int i = 0; i < 3000; i++) {
		const char *values[] = { "svc", "outbound", "192.0.2.1", port };

		snprintf(port, sizeof(port), "%d", 1000 + i);
		ck_assert_int_eq(ps_metric_add(m, values, i * 1000.5), 0);
	}
	big_ctx = fx.ctx;
	big_ctx.registry = big;
	small_text = prom_text(&fx.ctx);
	big_text = prom_text(&big_ctx);
	ck_assert_uint_gt(strlen(big_text), 200000);

	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	ck_assert_int_eq(flush(sink, &fx.ctx), 0);
	r = (struct reader){ .path = fx.path, .a = small_text, .b = big_text };
	ck_assert_int_eq(pthread_create(&thread, NULL, read_until_told, &r), 0);
	for (int i = 0; i < REPLACEMENTS; i++)
		ck_assert_int_eq(flush(sink, i % 2 ? &fx.ctx : &big_ctx), 0);
	atomic_store(&r.stop, true);
	ck_assert_int_eq(pthread_join(thread, NULL), 0);
	ck_assert_msg(r.bad == 0, "%d of %d reads saw a partial or missing file", r.bad, r.reads);
	ck_assert_int_gt(r.reads, 0);
	assert_listing(fx.dir, FILENAME);

	close_sink(sink);
	free(small_text);
	free(big_text);
	ps_registry_free(big);
	fixture_free(&fx);
}
END_TEST

/*
 * A slow disk: every write takes SLOW_WRITE_MS on the writer thread (the
 * test-build hook sleeps there) while the loop flushes every FLUSH_EVERY_MS.
 * The flushes keep their schedule (none waits for a write), the writes never
 * overlap, the snapshots rendered meanwhile are coalesced, and the file ends
 * up holding the newest one.
 */
#define SLOW_WRITE_MS  300
#define FLUSH_EVERY_MS 50
#define SLOW_FLUSHES   30
/* A flush that waited for a write would take up to SLOW_WRITE_MS. */
#define FLUSH_MAX_MS 100

struct slow_disk {
	atomic_int in_write, overlaps, writes;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void slow_disk_hook(void *arg, bool start)
{
	struct slow_disk *d = arg;

	if (!start) {
		atomic_fetch_sub(&d->in_write, 1);
		atomic_fetch_add(&d->writes, 1);
		return;
	}
	if (atomic_fetch_add(&d->in_write, 1) != 0)
		atomic_fetch_add(&d->overlaps, 1);
	usleep(SLOW_WRITE_MS * 1000);
}

START_TEST(test_slow_disk_does_not_hold_up_flushes)
{
	struct slow_disk disk = { 0 };
	struct fixture fx;
	uint64_t start, worst = 0;
	char *newest;
	void *sink;
	int writes;

	fixture_init(&fx);
	ps_sink_textfile_set_test_hook(slow_disk_hook, &disk);
	sink = open_sink(fx.dir, FILENAME);
	ck_assert_ptr_nonnull(sink);
	start = mono_ms();
	for (int i = 0; i < SLOW_FLUSHES; i++) {
		uint64_t t0, took, next = start + (uint64_t)(i + 1) * FLUSH_EVERY_MS;

		/* Each snapshot differs from the one before. */
		ck_assert_int_eq(ps_metric_add(fx.opened, outbound, 1), 0);
		t0 = mono_ms();
		ck_assert_int_eq(ps_sink_prometheus_textfile.flush(sink, &fx.ctx), 0);
		took = mono_ms() - t0;
		if (took > worst)
			worst = took;
		if (mono_ms() < next)
			usleep((useconds_t)(next - mono_ms()) * 1000);
	}
	ck_assert_msg(worst < FLUSH_MAX_MS, "a flush took %" PRIu64 " ms beside a %d ms write",
		      worst, SLOW_WRITE_MS);
	/* The schedule held: 30 flushes in about 30 * 50 ms, not 30 * 300 ms. */
	ck_assert_uint_lt(mono_ms() - start, SLOW_FLUSHES * FLUSH_EVERY_MS + SLOW_WRITE_MS);

	ck_assert_int_eq(ps_sink_textfile_wait(sink), 0);
	writes = atomic_load(&disk.writes);
	ck_assert_int_eq(atomic_load(&disk.overlaps), 0);
	/* About one write per SLOW_WRITE_MS, not one per flush: the rest were coalesced. */
	ck_assert_int_ge(writes, 2);
	ck_assert_int_le(writes, SLOW_FLUSHES * FLUSH_EVERY_MS / SLOW_WRITE_MS + 3);
	newest = prom_text(&fx.ctx);
	assert_file_is(fx.path, newest);
	free(newest);
	assert_listing(fx.dir, FILENAME);

	/*
	 * A snapshot handed over right before close is still written, and close
	 * (what a reload does to the old sink) does not wait for that slow write.
	 */
	ck_assert_int_eq(ps_metric_add(fx.opened, outbound, 1), 0);
	ck_assert_int_eq(ps_sink_prometheus_textfile.flush(sink, &fx.ctx), 0);
	start = mono_ms();
	ps_sink_prometheus_textfile.close(sink);
	worst = mono_ms() - start;
	ck_assert_msg(worst < FLUSH_MAX_MS, "close waited %" PRIu64 " ms for a %d ms write", worst,
		      SLOW_WRITE_MS);
	ps_writer_wait_released();
	newest = prom_text(&fx.ctx);
	assert_file_is(fx.path, newest);
	free(newest);
	ck_assert_int_eq(atomic_load(&disk.overlaps), 0);
	ps_sink_textfile_set_test_hook(NULL, NULL);
	fixture_free(&fx);
}
END_TEST

static Suite *textfile_suite(void)
{
	Suite *s = suite_create("textfile");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_writes_exact_text, 0, 2);
	tcase_add_loop_test(tc, test_series_follow_registry, 0, 2);
	tcase_add_loop_test(tc, test_full_directory_keeps_previous_file, 0, 2);
	tcase_add_test(tc, test_readonly_directory_keeps_previous_file);
	tcase_add_test(tc, test_missing_directory_then_created);
	tcase_add_test(tc, test_stale_temps_removed_at_open);
	tcase_add_test(tc, test_custom_filename);
	tcase_add_test(tc, test_bad_config_rejected);
	tcase_add_test(tc, test_defaults);
	tcase_add_loop_test(tc, test_readers_never_see_a_partial_file, 0, 2);
	tcase_add_test(tc, test_slow_disk_does_not_hold_up_flushes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(textfile_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
