/*
 * The Prometheus textfile sink: each flush, the registry as one file for
 * node_exporter's textfile collector.
 *
 * The file is replaced, never rewritten: the snapshot goes into a new inode,
 * is fsynced, and is renamed over the old file, so a scrape sees either the
 * previous snapshot or the new one, and a failed write (ENOSPC, EROFS, a
 * vanished directory) leaves the previous file exactly as it was.
 *
 * The new inode is an unnamed O_TMPFILE; it gets a name (".<file>.XXXXXX")
 * only once complete, right before the rename, so a crash or SIGKILL while
 * writing leaves nothing behind. Only a kill between that linkat() and the
 * rename() can leave a (complete) temporary file. Filesystems without
 * O_TMPFILE get a named temporary file from the start. Either leftover is
 * removed when the sink opens again; node_exporter reads only *.prom, so it
 * never reads one.
 *
 * The loop thread only renders the snapshot into memory; the file system work
 * (write, fsync, link, rename, fsync of the directory) runs on the sink's
 * writer thread, so a slow or stuck disk never holds up a flush nor the ring
 * buffers' draining. One write runs at a time; snapshots rendered while one is
 * in progress are coalesced, the newest wins (writer.h, PS_WRITER_LATEST).
 * Everything below "writing" runs on that thread, and only there after open.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <periscope/log.h>

#include "prom_text.h"
#include "sink.h"
#include "writer.h"

#define SUBSYS		  "textfile"
#define DEFAULT_DIRECTORY "/var/lib/prometheus/node-exporter" /* Debian's node_exporter */
#define DEFAULT_FILENAME  "periscope.prom"
#define PROM_SUFFIX	  ".prom"
#define TEMP_SUFFIX_LEN	  6
/* "." + filename + "." + suffix must stay a valid file name. */
#define FILENAME_MAX_LEN (NAME_MAX - TEMP_SUFFIX_LEN - 2)
#define TEMP_ATTEMPTS	 16
#define FILE_MODE	 0644 /* node_exporter runs as its own user */

struct textfile_config {
	char *directory;
	char *filename;
};

static const struct ps_cfg_key textfile_config_map[] = {
	{ "directory", PS_CFG_STRING, DEFAULT_DIRECTORY,
	  offsetof(struct textfile_config, directory), NULL,
	  "node_exporter's --collector.textfile.directory" },
	{ "filename", PS_CFG_STRING, DEFAULT_FILENAME, offsetof(struct textfile_config, filename),
	  NULL, "the file written there; a plain name ending in .prom" },
	{ NULL },
};

/* What a flush was doing when it failed: failures are logged once per (step, error). */
enum write_step {
	STEP_NONE,
	STEP_OPEN_DIR,
	STEP_CREATE,
	STEP_WRITE,
	STEP_SYNC,
	STEP_LINK,
	STEP_RENAME,
	STEP_SYNC_DIR,
};

static const char *const step_names[] = {
	[STEP_NONE] = "write",
	[STEP_OPEN_DIR] = "open the directory",
	[STEP_CREATE] = "create a temporary file",
	[STEP_WRITE] = "write the snapshot",
	[STEP_SYNC] = "fsync the snapshot",
	[STEP_LINK] = "name the temporary file",
	[STEP_RENAME] = "rename the temporary file",
	[STEP_SYNC_DIR] = "fsync the directory",
};

struct textfile_sink {
	char *directory;
	char *filename;
	char *temp_prefix; /* ".<filename>." */
	bool swept;	   /* stale temporary files of a previous run removed */
	int failing;	   /* the error last logged, 0 while writes succeed */
	enum write_step failing_step;
	struct ps_writer *writer;
};

/* Tests: behave as on a filesystem without O_TMPFILE. */
static bool force_named_temp;

void ps_sink_textfile_force_named_temp(bool on)
{
	force_named_temp = on;
}

#ifdef PS_TEST_HOOKS
/* Tests: called on the writer thread around each write (a slow disk, overlap checks). */
static void (*test_hook)(void *arg, bool start);
static void *test_hook_arg;

void ps_sink_textfile_set_test_hook(void (*hook)(void *arg, bool start), void *arg)
{
	test_hook = hook;
	test_hook_arg = arg;
}

static void run_test_hook(bool start)
{
	if (test_hook)
		test_hook(test_hook_arg, start);
}
#else
static void run_test_hook(bool start)
{
	(void)start;
}
#endif

/* ---- names ------------------------------------------------------------------------------- */

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A plain, visible *.prom name: node_exporter reads nothing else. */
static bool is_valid_filename(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	return len > strlen(PROM_SUFFIX) && len <= FILENAME_MAX_LEN && name[0] != '.' &&
	       !strchr(name, '/') && has_suffix(name, PROM_SUFFIX);
}

static const char temp_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static void random_bytes(unsigned char *buf, size_t len)
{
	static uint64_t counter;
	struct timespec ts;
	uint64_t x;

	if (getrandom(buf, len, GRND_NONBLOCK) == (ssize_t)len)
		return;
	/* No entropy yet (early boot): unique enough, O_EXCL/EEXIST catch the rest. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
	    (++counter * 0x9e3779b97f4a7c15ull);
	for (size_t i = 0; i < len; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
		buf[i] = (unsigned char)(x >> 56);
}

static void make_temp_name(const struct textfile_sink *tf, char *buf, size_t len)
{
	unsigned char rnd[TEMP_SUFFIX_LEN];
	char suffix[TEMP_SUFFIX_LEN + 1];

	random_bytes(rnd, sizeof(rnd));
	for (size_t i = 0; i < TEMP_SUFFIX_LEN; i++)
		suffix[i] = temp_alphabet[rnd[i] % (sizeof(temp_alphabet) - 1)];
	suffix[TEMP_SUFFIX_LEN] = '\0';
	snprintf(buf, len, "%s%s", tf->temp_prefix, suffix);
}

static bool is_temp_name(const struct textfile_sink *tf, const char *name)
{
	size_t prefix = strlen(tf->temp_prefix);

	if (strncmp(name, tf->temp_prefix, prefix) != 0 || strlen(name + prefix) != TEMP_SUFFIX_LEN)
		return false;
	return strspn(name + prefix, temp_alphabet) == TEMP_SUFFIX_LEN;
}

/* ---- logging: once per state change ---------------------------------------------------- */

static void note_failure(struct textfile_sink *tf, enum write_step step, int err)
{
	if (tf->failing == err && tf->failing_step == step)
		return;
	tf->failing = err;
	tf->failing_step = step;
	if (step == STEP_OPEN_DIR && err == -ENOENT)
		ps_warn(SUBSYS, "%s does not exist (yet): %s will be written there once it does",
			tf->directory, tf->filename);
	else
		ps_error(SUBSYS,
			 "%s/%s: cannot %s: %s; the previous file stays, retrying every flush",
			 tf->directory, tf->filename, step_names[step], strerror(-err));
}

static void note_success(struct textfile_sink *tf)
{
	if (tf->failing)
		ps_info(SUBSYS, "%s/%s: writing again", tf->directory, tf->filename);
	tf->failing = 0;
	tf->failing_step = STEP_NONE;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Temporary files of a run that was killed between naming and renaming one. */
static void sweep_stale_temps(struct textfile_sink *tf, int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *dir;

	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir))) {
		if (de->d_type == DT_DIR || !is_temp_name(tf, de->d_name))
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == 0)
			ps_info(SUBSYS, "%s: removed %s, left by a periscoped that was killed",
				tf->directory, de->d_name);
		else
			ps_warn(SUBSYS, "%s: cannot remove stale %s: %s", tf->directory, de->d_name,
				strerror(errno));
	}
	closedir(dir);
	tf->swept = true;
}

static bool tmpfile_unsupported(int err)
{
	/* EISDIR: kernels before 3.11 read O_TMPFILE as O_DIRECTORY. */
	return err == -EOPNOTSUPP || err == -EISDIR || err == -EINVAL;
}

/* An inode without a name: it vanishes by itself if we die before naming it. */
static int open_unnamed(int dirfd)
{
	int fd;

	if (force_named_temp)
		return -EOPNOTSUPP;
	fd = openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, FILE_MODE);
	return fd < 0 ? -errno : fd;
}

static int create_named(const struct textfile_sink *tf, int dirfd, char *temp, size_t len)
{
	for (int i = 0; i < TEMP_ATTEMPTS; i++) {
		int fd;

		make_temp_name(tf, temp, len);
		fd = openat(dirfd, temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FILE_MODE);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static int link_fd(int fd, int dirfd, const char *name)
{
	char proc_path[64];

	snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc_path, dirfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	/* No /proc: AT_EMPTY_PATH does the same but needs CAP_DAC_READ_SEARCH. */
	if (errno == ENOENT && linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	return -errno;
}

static int link_unnamed(const struct textfile_sink *tf, int fd, int dirfd, char *temp, size_t len)
{
	for (int i = 0; i < TEMP_ATTEMPTS; i++) {
		int err;

		make_temp_name(tf, temp, len);
		err = link_fd(fd, dirfd, temp);
		if (err != -EEXIST)
			return err;
	}
	return -EEXIST;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_synced(int fd, const char *buf, size_t len, enum write_step *step)
{
	int err;

	*step = STEP_WRITE;
	err = write_all(fd, buf, len);
	if (err)
		return err;
	*step = STEP_SYNC;
	return fsync(fd) ? -errno : 0;
}

static int sync_dir(int dirfd)
{
	/* Some filesystems cannot fsync a directory; the rename has happened regardless. */
	if (fsync(dirfd) && errno != EINVAL)
		return -errno;
	return 0;
}

/* Opens the new inode: unnamed when the filesystem can, else under a temporary name. */
static int open_temp(const struct textfile_sink *tf, int dirfd, char *temp, size_t len, bool *named)
{
	int fd = open_unnamed(dirfd);

	*named = false;
	if (fd < 0 && tmpfile_unsupported(fd)) {
		fd = create_named(tf, dirfd, temp, len);
		*named = fd >= 0;
	}
	if (fd >= 0 && fchmod(fd, FILE_MODE)) { /* the umask may have taken the read bits */
		int err = -errno;

		if (*named)
			unlinkat(dirfd, temp, 0);
		close(fd);
		return err;
	}
	return fd;
}

static int replace_file(const struct textfile_sink *tf, int dirfd, const char *buf, size_t len,
			enum write_step *step)
{
	char temp[NAME_MAX + 1];
	bool named;
	int fd, err;

	*step = STEP_CREATE;
	fd = open_temp(tf, dirfd, temp, sizeof(temp), &named);
	if (fd < 0)
		return fd;
	err = write_synced(fd, buf, len, step);
	if (!err && !named) {
		*step = STEP_LINK;
		err = link_unnamed(tf, fd, dirfd, temp, sizeof(temp));
		named = !err;
	}
	if (!err) {
		*step = STEP_RENAME;
		if (renameat(dirfd, temp, dirfd, tf->filename))
			err = -errno;
	}
	/* Synced above: a close error here cannot lose data that matters. */
	close(fd);
	if (!err) {
		*step = STEP_SYNC_DIR;
		return sync_dir(dirfd);
	}
	if (named)
		unlinkat(dirfd, temp, 0);
	return err;
}

/* One rendered snapshot into the file, on the writer thread. */
static int write_snapshot(void *arg, const char *buf, size_t len)
{
	struct textfile_sink *tf = arg;
	enum write_step step = STEP_OPEN_DIR;
	int dirfd, err;

	run_test_hook(true);
	/* Opened each time: the directory may appear, vanish or be replaced meanwhile. */
	dirfd = open(tf->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		err = -errno;
	} else {
		if (!tf->swept)
			sweep_stale_temps(tf, dirfd);
		err = replace_file(tf, dirfd, buf, len, &step);
		close(dirfd);
	}
	if (err)
		note_failure(tf, step, err);
	else
		note_success(tf);
	run_test_hook(false);
	return err;
}

/*
 * Renders the snapshot (the registry is the loop's) and hands it to the
 * writer. Returns the result of the most recent write to finish: a failure
 * surfaces at the flush after it, and keeps surfacing until a write succeeds.
 */
static int textfile_flush(void *state, const struct ps_flush_ctx *ctx)
{
	struct textfile_sink *tf = state;
	struct ps_writer_report r;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int err;

	if (!mem)
		return -ENOMEM;
	err = ps_prom_write(mem, ctx);
	if (fclose(mem) != 0 && !err)
		err = -ENOMEM;
	if (err) {
		free(buf);
		return err;
	}
	ps_writer_submit_owned(tf->writer, buf, len);
	ps_writer_report(tf->writer, &r);
	if (r.replaced)
		ps_debug(SUBSYS, "%s/%s: %" PRIu64 " snapshot%s superseded while a write was slow",
			 tf->directory, tf->filename, r.replaced, r.replaced == 1 ? "" : "s");
	return r.last;
}

int ps_sink_textfile_wait(void *state)
{
	struct textfile_sink *tf = state;

	return ps_writer_wait_idle(tf->writer);
}

/* ---- the sink ------------------------------------------------------------------------------ */

static void textfile_free(void *state)
{
	struct textfile_sink *tf = state;

	free(tf->directory);
	free(tf->filename);
	free(tf->temp_prefix);
	free(tf);
}

/*
 * The last snapshot handed over is still written, on the writer thread, which
 * then frees the sink: a reload does not wait for a slow disk, and the daemon
 * waits for it only at exit (ps_writer_wait_released).
 */
static void textfile_close(void *state)
{
	struct textfile_sink *tf = state;

	if (tf)
		ps_writer_release(tf->writer, textfile_free, tf);
}

/*
 * What is wrong with the settings, or NULL; *key names the setting. One
 * judgement for textfile_check (file:line:column) and for textfile_open.
 */
static const char *config_problem(const char *directory, const char *filename, const char **key,
				  char *buf, size_t size)
{
	if (!directory || !*directory) {
		*key = "directory";
		return "directory: must not be empty";
	}
	if (!is_valid_filename(filename)) {
		*key = "filename";
		snprintf(buf, size,
			 "filename '%s': must be a plain file name ending in .prom, not starting "
			 "with a dot, at most %d bytes (node_exporter reads only *.prom)",
			 filename ? filename : "", FILENAME_MAX_LEN);
		return buf;
	}
	return NULL;
}

static int check_config(const char *directory, const char *filename)
{
	char buf[512];
	const char *key, *problem = config_problem(directory, filename, &key, buf, sizeof(buf));

	if (!problem)
		return 0;
	ps_error(SUBSYS, "%s", problem);
	return -EINVAL;
}

static int textfile_check(const void *config, const struct ps_cfg_node *section,
			  struct ps_cfg_error *err)
{
	const struct textfile_config *cfg = config;
	char buf[512];
	const char *key,
		*problem = config_problem(cfg->directory, cfg->filename, &key, buf, sizeof(buf));

	if (!problem)
		return 0;
	/* A default is never the problem, so the key is in the section. */
	return ps_cfg_errorf(err, ps_cfg_node_get(section, key), "%s", problem);
}

/* The directory may not exist yet (node_exporter not installed): flushes retry. */
static void probe_directory(struct textfile_sink *tf)
{
	int dirfd = open(tf->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dirfd < 0) {
		note_failure(tf, STEP_OPEN_DIR, -errno);
		return;
	}
	sweep_stale_temps(tf, dirfd);
	close(dirfd);
}

static void *textfile_open(const void *config)
{
	const struct textfile_config *cfg = config;
	const char *directory = cfg ? cfg->directory : DEFAULT_DIRECTORY;
	const char *filename = cfg ? cfg->filename : DEFAULT_FILENAME;
	struct textfile_sink *tf;
	int err = check_config(directory, filename);

	if (err) {
		errno = -err;
		return NULL;
	}
	tf = calloc(1, sizeof(*tf));
	if (!tf)
		return NULL;
	tf->directory = strdup(directory);
	tf->filename = strdup(filename);
	if (!tf->directory || !tf->filename || asprintf(&tf->temp_prefix, ".%s.", filename) < 0) {
		tf->temp_prefix = NULL;
		textfile_close(tf);
		errno = ENOMEM;
		return NULL;
	}
	probe_directory(tf);
	tf->writer = ps_writer_start(PS_WRITER_LATEST, 0, write_snapshot, tf);
	if (!tf->writer) {
		int saved = errno;

		textfile_close(tf);
		errno = saved;
		return NULL;
	}
	return tf;
}

const struct ps_sink_type ps_sink_prometheus_textfile = {
	.name = "prometheus_textfile",
	.config_map = textfile_config_map,
	.config_size = sizeof(struct textfile_config),
	.open = textfile_open,
	.flush = textfile_flush,
	.event = NULL,
	.close = textfile_close,
	.check = textfile_check,
};
