/*
 * The plugin loader: checks a shared object before and after dlopen(), then
 * drives its callbacks through the life cycle. A plugin runs as root inside
 * the daemon, so the file and its directory must be writable only by root
 * (or the daemon's own user), and the descriptor is validated field by field
 * before any callback is trusted.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"

#define LOG_SUBSYS    "loader"
#define PLUGIN_SUFFIX ".so"

/* ---- descriptor accessors (public API) ----------------------------------------------- */

void ps_plugin_set_data(struct ps_plugin *p, void *data)
{
	p->data = data;
}

void *ps_plugin_data(const struct ps_plugin *p)
{
	return p->data;
}

const char *ps_plugin_name(const struct ps_plugin *p)
{
	return p->name;
}

/* ---- periscope_plugin_up --------------------------------------------------------------- */

void ps_plugin_report_up(const char *name, bool up)
{
	static const char *const labels[] = { "service_name", "plugin", NULL };
	static const struct ps_metric_desc desc = {
		.name = "periscope_plugin_up",
		.help = "1 when the plugin is running, 0 when it failed",
		.type = PS_METRIC_GAUGE,
		.labels = labels,
	};
	const char *values[] = { "periscoped", name };
	struct ps_metric *m;

	/*
	 * Registered on every call rather than cached: the default registry may
	 * be replaced (tests, reloads), and registering an existing family with
	 * the same shape just returns it.
	 */
	m = ps_metric_register(&desc);
	if (!m) {
		ps_warn(LOG_SUBSYS, "cannot register periscope_plugin_up: %s", strerror(errno));
		return;
	}
	ps_metric_set(m, values, up ? 1 : 0);
}

/* A plugin no longer configured (a reload disabled it) is neither up nor failed: no series. */
void ps_plugin_report_gone(const char *name)
{
	static const char *const labels[] = { "service_name", "plugin", NULL };
	static const struct ps_metric_desc desc = {
		.name = "periscope_plugin_up",
		.help = "1 when the plugin is running, 0 when it failed",
		.type = PS_METRIC_GAUGE,
		.labels = labels,
	};
	const char *values[] = { "periscoped", name };
	struct ps_metric *m = ps_metric_register(&desc);

	if (m)
		ps_metric_remove(m, values);
}

void ps_plugin_mark_down(struct ps_plugin *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
	p->state = PS_PLUGIN_DOWN;
	ps_error(LOG_SUBSYS, "plugin %s down: %s", p->name, p->reason);
	ps_plugin_report_up(p->name, false);
}

/* ---- file checks ----------------------------------------------------------------------- */

static bool has_plugin_suffix(const char *file)
{
	size_t len = strlen(file), slen = strlen(PLUGIN_SUFFIX);

	return len > slen && strcmp(file + len - slen, PLUGIN_SUFFIX) == 0;
}

static const char *file_part(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* The file name without ".so": what the descriptor must call itself. */
static char *plugin_stem(const char *path)
{
	const char *file = file_part(path);
	size_t len = strlen(file);

	if (has_plugin_suffix(file))
		len -= strlen(PLUGIN_SUFFIX);
	return strndup(file, len);
}

static char *dir_part(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, slash - path);
}

/*
 * Owner and mode rules shared by the plugin file (dir NULL) and its
 * directory; what is the path to fix.
 */
static int check_owner_and_mode(const char *plugin, const char *dir, const struct stat *st)
{
	const char *what = dir ? dir : plugin;
	char subject[4200];
	uid_t euid = geteuid();

	if (dir)
		snprintf(subject, sizeof(subject), "directory %s", dir);
	else
		snprintf(subject, sizeof(subject), "the file");
	if (st->st_uid != 0 && st->st_uid != euid) {
		ps_error(LOG_SUBSYS,
			 "refusing plugin %s: %s is owned by uid %u, not root or uid %u; a plugin "
			 "runs as root: chown root %s",
			 plugin, subject, (unsigned)st->st_uid, (unsigned)euid, what);
		return -EPERM;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		ps_error(LOG_SUBSYS,
			 "refusing plugin %s: %s is writable by group or others (mode %04o); a "
			 "plugin runs as root: chmod go-w %s",
			 plugin, subject, (unsigned)(st->st_mode & 07777), what);
		return -EPERM;
	}
	return 0;
}

/*
 * The plugin file, as the descriptor opened from its directory: a symbolic link is
 * refused (O_NOFOLLOW), and what is checked is the very inode that is loaded later.
 * Returns the descriptor or -errno.
 */
static int open_plugin_file(const char *path, int dirfd)
{
	struct stat st;
	int fd, err;

	/* O_NONBLOCK: a FIFO named like a plugin must not hang the daemon in open(). */
	fd = openat(dirfd, file_part(path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (err == -ELOOP)
			goto not_regular;
		ps_error(LOG_SUBSYS, "cannot open plugin %s: %s", path, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		ps_error(LOG_SUBSYS, "cannot open plugin %s: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		goto not_regular;
	}
	err = check_owner_and_mode(path, NULL, &st);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
not_regular:
	ps_error(LOG_SUBSYS,
		 "refusing plugin %s: not a regular file (symbolic links and devices are "
		 "not loaded): install the plugin itself in the plugin directory",
		 path);
	return -EPERM;
}

/* The directory the plugin is in, opened once: returns the descriptor or -errno. */
static int open_plugin_dir(const char *path, char **dir)
{
	int fd, err;

	*dir = dir_part(path);
	if (!*dir)
		return -ENOMEM;
	fd = open(*dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (err == -ENOTDIR)
			ps_error(LOG_SUBSYS, "cannot open plugin %s: %s is not a directory", path,
				 *dir);
		else
			ps_error(LOG_SUBSYS, "cannot open plugin %s: %s: %s", path, *dir,
				 strerror(-err));
		return err;
	}
	return fd;
}

static int check_plugin_dir(const char *path, const char *dir, int dirfd)
{
	struct stat st;
	int err;

	if (fstat(dirfd, &st) < 0) {
		err = -errno;
		ps_error(LOG_SUBSYS, "cannot open plugin %s: %s: %s", path, dir, strerror(-err));
		return err;
	}
	return check_owner_and_mode(path, dir, &st);
}

/*
 * Opens and checks the plugin file and its directory; returns a descriptor of the file
 * to dlopen() or -errno. Everything is checked through descriptors, never through the
 * path again: with path checks then dlopen(path), a directory or a link on the way
 * swapped between the two (by whoever can write an ancestor directory) would have
 * loaded a file nobody checked.
 */
static int open_checked(const char *path)
{
	char *dir = NULL;
	int dirfd, fd, err;

	dirfd = open_plugin_dir(path, &dir);
	if (dirfd < 0) {
		free(dir);
		return dirfd;
	}
	fd = open_plugin_file(path, dirfd);
	if (fd >= 0) {
		err = check_plugin_dir(path, dir, dirfd);
		if (err) {
			close(fd);
			fd = err;
		}
	}
	close(dirfd);
	free(dir);
	return fd;
}

/* ---- descriptor checks ------------------------------------------------------------------ */

/*
 * Only the first two uint32_t are read here: a plugin built for another ABI
 * may have a differently shaped struct behind them.
 */
static int check_abi(const char *path, const void *sym)
{
	uint32_t head[2];

	memcpy(head, sym, sizeof(head));
	if (head[0] != PS_PLUGIN_ABI_VERSION) {
		ps_error(LOG_SUBSYS,
			 "plugin %s: ABI version %u, this periscoped speaks %u: rebuild it against "
			 "periscope-plugin headers",
			 path, head[0], PS_PLUGIN_ABI_VERSION);
		return -EPROTO;
	}
	if (head[1] != sizeof(struct ps_plugin_desc)) {
		ps_error(
			LOG_SUBSYS,
			"plugin %s: descriptor is %u bytes, this periscoped expects %zu: rebuild it "
			"against periscope-plugin headers",
			path, head[1], sizeof(struct ps_plugin_desc));
		return -EPROTO;
	}
	return 0;
}

static int check_descriptor(const char *path, const char *stem, const struct ps_plugin_desc *d)
{
	static const char *const required[] = { "init", "start", "stop", "destroy" };
	const bool present[] = { d->init, d->start, d->stop, d->destroy };

	if (!d->name) {
		ps_error(LOG_SUBSYS, "plugin %s: descriptor has no name: set .name = \"%s\"", path,
			 stem);
		return -EINVAL;
	}
	if (strcmp(d->name, stem) != 0) {
		ps_error(
			LOG_SUBSYS,
			"plugin %s: descriptor is named \"%s\" but the file says \"%s\": rename the "
			"file to %s%s or fix the descriptor",
			path, d->name, stem, d->name, PLUGIN_SUFFIX);
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (!present[i]) {
			ps_error(LOG_SUBSYS, "plugin %s: descriptor has no %s callback", path,
				 required[i]);
			return -EINVAL;
		}
	}
	if (d->config_map && d->config_size == 0) {
		ps_error(LOG_SUBSYS, "plugin %s: descriptor has a config_map but config_size 0",
			 path);
		return -EINVAL;
	}
	return 0;
}

/*
 * dlopen() of the descriptor's /proc/self/fd entry: the checked inode itself, whatever
 * the path names by now. The dynamic linker returns an object already loaded under the
 * same name without opening anything, and names an object also by every name it was
 * found under: a plugin loaded as /proc/self/fd/5 (its descriptor long closed) would
 * come back for the next plugin whose descriptor is 5 too. So each load spells the
 * entry in a way no load before it did: the count of loads, bit by bit, as "./" (1) or
 * "/" (0) after "fd/" (neither is a prefix of the other: distinct counts, distinct
 * strings). An object already loaded from the same file (device and inode) is still
 * found, as a reload needs.
 */
static void *open_shared_object(int fd)
{
	static unsigned long long loads;
	char name[32 + 2 * 64 + 16];
	size_t off;

	off = (size_t)snprintf(name, sizeof(name), "/proc/self/fd/");
	for (unsigned long long n = loads++; n; n >>= 1)
		off += (size_t)snprintf(name + off, sizeof(name) - off, "%s", n & 1 ? "./" : "/");
	snprintf(name + off, sizeof(name) - off, "%d", fd);
	return dlopen(name, RTLD_NOW | RTLD_LOCAL);
}

/* dlopen()s path and finds a valid descriptor; *desc on success. */
static void *load_descriptor(const char *path, int fd, const char *stem,
			     const struct ps_plugin_desc **desc, int *err)
{
	void *dl, *sym;

	dl = open_shared_object(fd);
	if (!dl) {
		const char *why = dlerror();

		/* dlerror() names /proc/self/fd/N (is /proc mounted?); the log names the file. */
		ps_error(LOG_SUBSYS, "cannot load plugin %s: %s", path,
			 why ? why : "dlopen failed");
		*err = -ENOEXEC;
		return NULL;
	}
	dlerror();
	sym = dlsym(dl, PS_PLUGIN_SYMBOL);
	if (!sym) {
		ps_error(LOG_SUBSYS,
			 "plugin %s: no \"%s\" symbol: is it a periscope plugin? (it must use "
			 "PS_PLUGIN_DEFINE)",
			 path, PS_PLUGIN_SYMBOL);
		*err = -ENOENT;
		goto fail;
	}
	*err = check_abi(path, sym);
	if (*err)
		goto fail;
	*err = check_descriptor(path, stem, sym);
	if (*err)
		goto fail;
	*desc = sym;
	return dl;
fail:
	dlclose(dl);
	return NULL;
}

struct ps_plugin *ps_plugin_open(const char *path)
{
	const struct ps_plugin_desc *desc = NULL;
	struct ps_plugin *p = NULL;
	char *stem = plugin_stem(path);
	void *dl = NULL;
	int err, fd;

	if (!stem) {
		err = -ENOMEM;
		goto fail;
	}
	fd = open_checked(path);
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	dl = load_descriptor(path, fd, stem, &desc, &err);
	/* The loaded object holds its own mapping: the descriptor is done with. */
	close(fd);
	if (!dl)
		goto fail;

	p = calloc(1, sizeof(*p));
	if (!p || !(p->path = strdup(path))) {
		err = -ENOMEM;
		goto fail;
	}
	p->name = stem;
	p->dl = dl;
	p->desc = desc;
	p->state = PS_PLUGIN_OPENED;
	ps_debug(LOG_SUBSYS, "opened %s: %s %s", path, desc->name,
		 desc->version ? desc->version : "(no version)");
	return p;
fail:
	if (p)
		free(p->path);
	free(p);
	if (dl)
		dlclose(dl);
	free(stem);
	errno = -err;
	return NULL;
}

/* ---- scanning a directory --------------------------------------------------------------- */

/* Hidden files are left alone: editors and package managers park copies there. */
static int select_plugin_file(const struct dirent *de)
{
	return de->d_name[0] != '.' && has_plugin_suffix(de->d_name);
}

/* Byte order, not the locale's: load order must not depend on LANG. */
static int compare_names(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Takes stem. */
static void report_open_failure(char *stem, struct ps_strlist *refused)
{
	char **v;

	ps_plugin_report_up(stem, false);
	if (refused && (v = realloc(refused->v, (refused->n + 1) * sizeof(*v)))) {
		refused->v = v;
		refused->v[refused->n++] = stem;
		return;
	}
	free(stem);
}

void ps_plugin_refused_free(struct ps_strlist *refused)
{
	for (size_t i = 0; i < refused->n; i++)
		free(refused->v[i]);
	free(refused->v);
	refused->v = NULL;
	refused->n = 0;
}

int ps_plugin_scan(const char *dir, struct ps_plugin ***out, size_t *n, struct ps_strlist *refused)
{
	struct ps_plugin **plugins = NULL, *p;
	struct dirent **entries = NULL;
	char *path;
	int count, err = 0;

	*out = NULL;
	*n = 0;
	count = scandir(dir, &entries, select_plugin_file, compare_names);
	if (count < 0) {
		err = -errno;
		ps_error(LOG_SUBSYS, "cannot read plugin directory %s: %s", dir, strerror(-err));
		return err;
	}
	if (count > 0) {
		plugins = calloc(count, sizeof(*plugins));
		if (!plugins) {
			err = -ENOMEM;
			goto out;
		}
	}
	for (int i = 0; i < count; i++) {
		if (asprintf(&path, "%s/%s", dir, entries[i]->d_name) < 0) {
			err = -ENOMEM;
			goto out;
		}
		p = ps_plugin_open(path);
		free(path);
		if (p) {
			plugins[(*n)++] = p;
		} else {
			char *stem = plugin_stem(entries[i]->d_name);

			if (stem)
				report_open_failure(stem, refused);
		}
	}
	*out = plugins;
	plugins = NULL;
out:
	if (err) {
		for (size_t i = 0; i < *n; i++)
			ps_plugin_close(plugins[i]);
		*n = 0;
	}
	free(plugins);
	for (int i = 0; i < count; i++)
		free(entries[i]);
	free(entries);
	return err;
}

/* ---- configuration ---------------------------------------------------------------------- */

/* "tcpflow:" with nothing after it is YAML null: the plugin with its defaults. */
static bool section_is_null(const struct ps_cfg_node *section)
{
	const char *s;

	if (!section || ps_cfg_node_kind(section) != PS_CFG_SCALAR)
		return !section;
	s = ps_cfg_node_scalar(section);
	return !s || !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0;
}

/* A plugin without a config map accepts only the core's own "enabled". */
static int check_no_settings(const struct ps_plugin *p, const struct ps_cfg_node *section,
			     struct ps_cfg_error *err)
{
	if (!section)
		return 0;
	if (ps_cfg_node_kind(section) != PS_CFG_MAP)
		return ps_cfg_errorf(err, section, "plugins.%s: expected a map of settings",
				     p->name);
	for (size_t i = 0; i < ps_cfg_node_len(section); i++) {
		const char *key = ps_cfg_node_key_at(section, i);

		if (key && strcmp(key, "enabled") == 0)
			continue;
		return ps_cfg_errorf(
			err, ps_cfg_node_key_node_at(section, i),
			"plugins.%s: unknown key \"%s\" (this plugin takes no settings)", p->name,
			key ? key : "");
	}
	return 0;
}

static void free_config(struct ps_plugin *p)
{
	if (p->config && p->desc->config_map)
		ps_cfg_map_free(p->desc->config_map, p->config);
	free(p->config);
	p->config = NULL;
}

int ps_plugin_configure(struct ps_plugin *p, const struct ps_cfg_node *section,
			struct ps_cfg_error *err)
{
	static const char *const core_keys[] = { "enabled", NULL };
	const struct ps_plugin_desc *d = p->desc;
	int ret;

	/* init() may have kept pointers into the old config. */
	if (p->state != PS_PLUGIN_OPENED) {
		ps_cfg_errorf(err, section, "plugins.%s: cannot be reconfigured once initialized",
			      p->name);
		return -EBUSY;
	}
	free_config(p);
	if (section_is_null(section))
		section = NULL;

	if (!d->config_map) {
		ret = check_no_settings(p, section, err);
		if (ret)
			return ret;
	}
	if (d->config_size) {
		p->config = calloc(1, d->config_size);
		if (!p->config)
			return -ENOMEM;
	}
	if (d->config_map) {
		ret = ps_cfg_map_parse(section, d->config_map, core_keys, p->config, err);
		if (ret) {
			/* map_parse leaves nothing to free on error. */
			free(p->config);
			p->config = NULL;
			return ret;
		}
	}
	return 0;
}

/* ---- life cycle ------------------------------------------------------------------------- */

/* Only 0 is success and only -errno is an error; anything else is a plugin bug. */
static int callback_result(const struct ps_plugin *p, const char *what, int ret)
{
	if (ret > 0) {
		ps_warn(LOG_SUBSYS, "plugin %s: %s returned %d, not 0 or -errno: taken as EINVAL",
			p->name, what, ret);
		return -EINVAL;
	}
	return ret;
}

static ps_plugin_release_fn release_hooks[PS_PLUGIN_RELEASE_HOOKS];

int ps_plugin_release_hook(ps_plugin_release_fn fn)
{
	for (size_t i = 0; i < PS_PLUGIN_RELEASE_HOOKS; i++) {
		if (release_hooks[i] == fn)
			return 0;
		if (!release_hooks[i]) {
			release_hooks[i] = fn;
			return 0;
		}
	}
	return -ENOSPC;
}

static void release(struct ps_plugin *p)
{
	for (size_t i = 0; i < PS_PLUGIN_RELEASE_HOOKS && release_hooks[i]; i++)
		release_hooks[i](p);
}

/* Detaches and drops what the core holds for the plugin. */
static void stop_and_release(struct ps_plugin *p)
{
	p->desc->stop(p);
	release(p);
}

int ps_plugin_try_init(struct ps_plugin *p)
{
	struct ps_cfg_error cerr;
	int ret;

	if (p->state != PS_PLUGIN_OPENED)
		return -EINVAL;
	/* Never configured: the defaults, as if the section were absent. */
	if (!p->config && p->desc->config_size) {
		ret = ps_plugin_configure(p, NULL, &cerr);
		if (ret) {
			snprintf(p->reason, sizeof(p->reason),
				 "default configuration rejected: %.220s", cerr.msg);
			return ret;
		}
	}
	ret = callback_result(p, "init", p->desc->init(p, p->config));
	if (ret) {
		snprintf(p->reason, sizeof(p->reason), "init failed: %s", strerror(-ret));
		return ret;
	}
	p->inited = true;
	p->state = PS_PLUGIN_INITED;
	return 0;
}

int ps_plugin_init(struct ps_plugin *p)
{
	char why[sizeof(p->reason)];
	int ret;

	if (p->state != PS_PLUGIN_OPENED)
		return -EINVAL;
	ret = ps_plugin_try_init(p);
	if (ret) {
		/* mark_down writes p->reason: never format it from itself. */
		memcpy(why, p->reason, sizeof(why));
		ps_plugin_mark_down(p, "%s", why);
	}
	return ret;
}

int ps_plugin_start(struct ps_plugin *p)
{
	int ret;

	if (p->state != PS_PLUGIN_INITED && p->state != PS_PLUGIN_STOPPED)
		return -EINVAL;
	ret = callback_result(p, "start", p->desc->start(p));
	if (ret) {
		/* Some programs may be attached already. */
		stop_and_release(p);
		ps_plugin_mark_down(p, "start failed: %s", strerror(-ret));
		return ret;
	}
	p->state = PS_PLUGIN_RUNNING;
	ps_plugin_report_up(p->name, true);
	ps_info(LOG_SUBSYS, "plugin %s started", p->name);
	return 0;
}

int ps_plugin_collect(struct ps_plugin *p)
{
	int ret;

	if (p->state != PS_PLUGIN_RUNNING || !p->desc->collect)
		return 0;
	ret = callback_result(p, "collect", p->desc->collect(p));
	if (ret) {
		/* A plugin reported down must not keep producing events. */
		stop_and_release(p);
		ps_plugin_mark_down(p, "collect failed: %s", strerror(-ret));
	}
	return ret;
}

void ps_plugin_stop(struct ps_plugin *p)
{
	/*
	 * periscope_plugin_up stays as it was: the last flush after a clean
	 * shutdown must not show every plugin as failed.
	 */
	if (p->state != PS_PLUGIN_RUNNING)
		return;
	stop_and_release(p);
	p->state = PS_PLUGIN_STOPPED;
}

void ps_plugin_close(struct ps_plugin *p)
{
	if (!p)
		return;
	ps_plugin_stop(p);
	/* Whatever it registered outside start/stop (or in a failed init), while it still lives. */
	release(p);
	if (p->inited)
		p->desc->destroy(p);
	free_config(p);
	dlclose(p->dl);
	free(p->name);
	free(p->path);
	free(p);
}
