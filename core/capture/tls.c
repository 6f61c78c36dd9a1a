/*
 * The capture's TLS side: libssl discovery and the OpenSSL uprobes (see tls.h).
 */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <bpf/libbpf.h>

#include <periscope/log.h>

#include "tls.h"

#define SUBSYS	      "capture"
#define LIBSSL_PREFIX "libssl.so"
#define N_FUNCS	      4
#define PENDING_MAX   1024 /* later looks waiting; beyond, new ones are dropped */
#define LOOK_AGAIN_NS (1000ull * 1000 * 1000) /* after an exec: for libssl that comes late */

/* Where distributions keep libssl; attaching there covers processes not started yet. */
static const char *const lib_globs[] = {
	"/usr/lib/" LIBSSL_PREFIX "*",	     "/usr/lib/*/" LIBSSL_PREFIX "*",
	"/usr/lib64/" LIBSSL_PREFIX "*",     "/lib/" LIBSSL_PREFIX "*",
	"/lib/*/" LIBSSL_PREFIX "*",	     "/lib64/" LIBSSL_PREFIX "*",
	"/usr/local/lib/" LIBSSL_PREFIX "*", "/usr/local/lib64/" LIBSSL_PREFIX "*",
};

static const char *const func_names[N_FUNCS] = { "SSL_read", "SSL_write", "SSL_read_ex",
						 "SSL_write_ex" };

/* One libssl file, by identity: every path to it is the same uprobe target. */
struct tls_lib {
	dev_t dev;
	ino_t ino;
	struct bpf_link *links[2 * N_FUNCS];
	int n_links; /* 0: not an OpenSSL we can probe; kept so it is not tried again */
};

struct pending_look {
	uint32_t tgid;
	uint64_t due_ns;
};

struct capture_tls {
	struct bpf_program *entries[N_FUNCS]; /* in the order of func_names */
	struct bpf_program *ret;
	struct tls_lib *libs;
	size_t n_libs, cap_libs;
	/* Later looks at exec'd processes, due in FIFO order (one fixed delay). */
	struct pending_look pending[PENDING_MAX];
	size_t head, n_pending;
	uint64_t dropped_looks;
};

struct capture_tls *capture_tls_new(const struct capture_tls_progs *progs)
{
	struct capture_tls *t;

	if (!progs->read || !progs->write || !progs->read_ex || !progs->write_ex || !progs->ret) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->entries[0] = progs->read;
	t->entries[1] = progs->write;
	t->entries[2] = progs->read_ex;
	t->entries[3] = progs->write_ex;
	t->ret = progs->ret;
	return t;
}

void capture_tls_free(struct capture_tls *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_libs; i++)
		for (int j = 0; j < t->libs[i].n_links; j++)
			bpf_link__destroy(t->libs[i].links[j]);
	if (t->dropped_looks)
		ps_debug(SUBSYS, "TLS: %" PRIu64 " later looks at new processes dropped",
			 t->dropped_looks);
	free(t->libs);
	free(t);
}

/* ---- attaching ---------------------------------------------------------------------------- */

static struct tls_lib *lib_find(struct capture_tls *t, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < t->n_libs; i++)
		if (t->libs[i].dev == dev && t->libs[i].ino == ino)
			return &t->libs[i];
	return NULL;
}

static struct tls_lib *lib_add(struct capture_tls *t, dev_t dev, ino_t ino)
{
	struct tls_lib *lib;

	if (t->n_libs == t->cap_libs) {
		size_t cap = t->cap_libs ? 2 * t->cap_libs : 8;
		struct tls_lib *v = realloc(t->libs, cap * sizeof(*v));

		if (!v)
			return NULL;
		t->libs = v;
		t->cap_libs = cap;
	}
	lib = &t->libs[t->n_libs++];
	memset(lib, 0, sizeof(*lib));
	lib->dev = dev;
	lib->ino = ino;
	return lib;
}

/*
 * One function: the return probe first, so that no entry is ever seen
 * without its return (a call in flight while we attach is simply missed).
 */
static int attach_func(struct capture_tls *t, struct tls_lib *lib, const char *path, int i)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = func_names[i], .retprobe = true);
	struct bpf_link *ret, *entry;
	int err;

	ret = bpf_program__attach_uprobe_opts(t->ret, -1, path, 0, &opts);
	if (!ret)
		return -errno;
	opts.retprobe = false;
	entry = bpf_program__attach_uprobe_opts(t->entries[i], -1, path, 0, &opts);
	if (!entry) {
		err = -errno;
		bpf_link__destroy(ret);
		return err;
	}
	lib->links[lib->n_links++] = ret;
	lib->links[lib->n_links++] = entry;
	return 0;
}

/*
 * path (any path that reaches the file, /proc/PID/root/... for another mount
 * namespace) names a libssl; shown is what the log says, tgid who maps it (0:
 * found on disk). 0 when attached now or before, -errno otherwise.
 */
static int attach_lib(struct capture_tls *t, const char *path, const char *shown, uint32_t tgid)
{
	struct tls_lib *lib;
	struct stat sb;
	int err = 0;

	if (stat(path, &sb))
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	if (lib_find(t, sb.st_dev, sb.st_ino))
		return 0;
	lib = lib_add(t, sb.st_dev, sb.st_ino);
	if (!lib)
		return -ENOMEM;
	/* SSL_read and SSL_write are a must; the _ex pair is OpenSSL 1.1.1+. */
	for (int i = 0; i < N_FUNCS; i++) {
		err = attach_func(t, lib, path, i);
		if (err && i < 2)
			break;
	}
	if (lib->n_links < 4) {
		for (int j = 0; j < lib->n_links; j++)
			bpf_link__destroy(lib->links[j]);
		lib->n_links = 0;
		ps_warn(SUBSYS, "TLS: cannot probe %s: %s", shown, strerror(-err));
		return err;
	}
	if (tgid)
		ps_info(SUBSYS, "TLS: OpenSSL uprobes on %s (%d functions), mapped by pid %" PRIu32,
			shown, lib->n_links / 2, tgid);
	else
		ps_info(SUBSYS, "TLS: OpenSSL uprobes on %s (%d functions)", shown,
			lib->n_links / 2);
	return 0;
}

static bool is_libssl(const char *path)
{
	const char *base = strrchr(path, '/');

	return base && strncmp(base + 1, LIBSSL_PREFIX, strlen(LIBSSL_PREFIX)) == 0;
}

/* ---- where libssl is ---------------------------------------------------------------------- */

static void scan_lib_dirs(struct capture_tls *t)
{
	size_t found = 0;

	for (size_t i = 0; i < sizeof(lib_globs) / sizeof(lib_globs[0]); i++) {
		glob_t g;

		if (glob(lib_globs[i], GLOB_NOSORT, NULL, &g))
			continue;
		for (size_t j = 0; j < g.gl_pathc; j++) {
			char real[PATH_MAX];

			/* libssl.so -> libssl.so.3: the log names the file */
			if (realpath(g.gl_pathv[j], real)) {
				attach_lib(t, real, real, 0);
				found++;
			}
		}
		globfree(&g);
	}
	/* Not an error (a host without OpenSSL), but what an operator asks first. */
	if (!found)
		ps_info(SUBSYS, "TLS: no libssl in the library directories: TLS capture is off "
				"for processes that do not map one of their own");
}

/* The path of a /proc/PID/maps line that maps a file, or NULL. Cuts the newline. */
static char *maps_line_path(char *line)
{
	char *path = strchr(line, '/');
	size_t n;

	if (!path)
		return NULL;
	n = strlen(path);
	if (n && path[n - 1] == '\n')
		path[--n] = '\0';
	if (n > 10 && strcmp(path + n - 10, " (deleted)") == 0)
		return NULL; /* replaced on disk: the mapped file has no path any more */
	return path;
}

/* Every libssl the process maps, through its own root (containers). */
static int scan_pid(struct capture_tls *t, uint32_t tgid)
{
	char maps[32], target[PATH_MAX], last[PATH_MAX] = "";
	size_t cap = 0;
	char *line = NULL;
	FILE *f;

	snprintf(maps, sizeof(maps), "/proc/%" PRIu32 "/maps", tgid);
	f = fopen(maps, "re");
	if (!f)
		return -errno; /* gone already */
	while (getline(&line, &cap, f) > 0) {
		char *path = maps_line_path(line);

		if (!path || !is_libssl(path) || strcmp(path, last) == 0)
			continue;
		snprintf(last, sizeof(last), "%s", path);
		if ((size_t)snprintf(target, sizeof(target), "/proc/%" PRIu32 "/root%s", tgid,
				     path) >= sizeof(target))
			continue;
		attach_lib(t, target, path, tgid);
	}
	free(line);
	fclose(f);
	return 0;
}

static void scan_all_pids(struct capture_tls *t)
{
	glob_t g;

	if (glob("/proc/[0-9]*", GLOB_NOSORT | GLOB_ONLYDIR, NULL, &g))
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char *end;
		unsigned long pid = strtoul(g.gl_pathv[i] + strlen("/proc/"), &end, 10);

		if (*end == '\0' && pid <= UINT32_MAX)
			scan_pid(t, (uint32_t)pid);
	}
	globfree(&g);
}

int capture_tls_scan_all(struct capture_tls *t)
{
	scan_lib_dirs(t);
	scan_all_pids(t);
	return (int)t->n_libs;
}

/* ---- new processes ------------------------------------------------------------------------ */

void capture_tls_on_exec(struct capture_tls *t, uint32_t tgid, uint64_t now_ns)
{
	struct pending_look *p;

	/* ld.so has mapped the libraries by the time the event is drained, usually. */
	scan_pid(t, tgid);
	if (t->n_pending == PENDING_MAX) {
		t->dropped_looks++;
		return;
	}
	p = &t->pending[(t->head + t->n_pending++) % PENDING_MAX];
	p->tgid = tgid;
	p->due_ns = now_ns + LOOK_AGAIN_NS;
}

void capture_tls_on_hint(struct capture_tls *t, uint32_t tgid)
{
	scan_pid(t, tgid);
}

void capture_tls_tick(struct capture_tls *t, uint64_t now_ns)
{
	while (t->n_pending && t->pending[t->head].due_ns <= now_ns) {
		scan_pid(t, t->pending[t->head].tgid);
		t->head = (t->head + 1) % PENDING_MAX;
		t->n_pending--;
	}
}
