/*
 * Process metadata: pid -> service_name.
 *
 * Every event asks for a name, so answers are cached per tgid and the hot path
 * touches no file. Validation happens in ps_proc_sweep (each flush): entries
 * whose process vanished or whose start time changed (pid reuse) are freed
 * there, and only there, so a returned name stays valid until the next sweep.
 * Entries that must not be reused before then (forgotten, or made stale by new
 * rules) are only marked and left for the sweep to free.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <periscope/log.h>

#include "procinfo.h"

#define SUBSYS "proc"
#define DEFAULT_ROOT "/proc"
#define NAME_KERNEL "kernel"
#define NAME_UNKNOWN "unknown"
#define CONTAINER_PREFIX "container-"
#define CONTAINER_ID_LEN 12
#define DELETED_SUFFIX " (deleted)"
#define CACHE_INITIAL 64
#define STARTTIME_FIELD 22

enum entry_state {
	ENTRY_LIVE,   /* answers lookups */
	ENTRY_EXITED, /* forgotten: answers late events of the same process only */
	ENTRY_STALE,  /* rules or root changed: never answers, freed by the sweep */
};

struct proc_entry {
	uint32_t tgid;
	enum entry_state state;
	bool start_known;        /* false when /proc/PID was already gone */
	unsigned long long start_time;
	char *name;
	struct proc_entry *next;
};

/* What resolution looks at, read once per new process. */
struct proc_facts {
	char exe[PATH_MAX];      /* "" when unreadable */
	char comm[64];           /* "" when unreadable */
	char unit[256];          /* "nginx.service", "" when not in a service */
	char container[64];      /* "container-<12 hex>", "" when not in a container */
};

static char proc_root[PATH_MAX] = DEFAULT_ROOT;
static struct ps_service_rule *rules;
static size_t n_rules;
static struct proc_entry **cache;
static size_t cache_size, cache_entries;

/* ---- reading /proc ------------------------------------------------------------------------- */

static int proc_path(char *buf, size_t size, uint32_t tgid, const char *file)
{
	int n = snprintf(buf, size, "%s/%" PRIu32 "/%s", proc_root, tgid, file);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Reads at most size - 1 bytes and NUL-terminates. Length or -errno. */
static ssize_t read_proc_file(uint32_t tgid, const char *file, char *buf, size_t size)
{
	char path[PATH_MAX];
	size_t len = 0;
	ssize_t n;
	int fd, err;

	err = proc_path(path, sizeof(path), tgid, file);
	if (err)
		return err;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < size - 1) {
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			close(fd);
			return err;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

/* Field 22 of /proc/PID/stat; comm (field 2) may hold spaces and ')', so count after the last ')'. */
static int read_start_time(uint32_t tgid, unsigned long long *out)
{
	char buf[1024], *p, *end;
	ssize_t n = read_proc_file(tgid, "stat", buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	p++;
	/* After ')' comes field 3 (state); skip fields 3..21. */
	for (int field = 3; field < STARTTIME_FIELD; field++) {
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;
		if (!*p)
			return -EINVAL;
	}
	errno = 0;
	*out = strtoull(p, &end, 10);
	if (end == p || errno)
		return -EINVAL;
	return 0;
}

static void strip_suffix(char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	if (ls >= lx && strcmp(s + ls - lx, suffix) == 0)
		s[ls - lx] = '\0';
}

static void read_exe(uint32_t tgid, char *buf, size_t size)
{
	char path[PATH_MAX];
	ssize_t n;

	buf[0] = '\0';
	if (proc_path(path, sizeof(path), tgid, "exe") < 0)
		return;
	n = readlink(path, buf, size - 1);
	if (n < 0) {
		buf[0] = '\0';
		return;
	}
	buf[n] = '\0';
	/* A binary replaced by an upgrade still names the service it was. */
	strip_suffix(buf, DELETED_SUFFIX);
}

static void read_comm(uint32_t tgid, char *buf, size_t size)
{
	if (read_proc_file(tgid, "comm", buf, size) < 0)
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

/* ---- cgroup paths: systemd unit and container ---------------------------------------------- */

static bool has_controller(const char *list, size_t len, const char *name)
{
	size_t n = strlen(name);
	const char *p = list, *end = list + len;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t item = comma ? (size_t)(comma - p) : (size_t)(end - p);

		if (item == n && strncmp(p, name, n) == 0)
			return true;
		p += item + 1;
	}
	return false;
}

/*
 * The cgroup path systemd placed the process in: the v2 line ("0::/...") when it
 * says more than "/", else the v1 "name=systemd" hierarchy. Copied into out.
 */
static void pick_cgroup_path(char *text, char *out, size_t size)
{
	const char *v2 = NULL, *v1 = NULL;
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		if (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1)
			v2 = c2 + 1;
		else if (has_controller(c1 + 1, (size_t)(c2 - c1 - 1), "name=systemd"))
			v1 = c2 + 1;
	}
	if (v2 && strcmp(v2, "/") == 0 && v1)
		v2 = NULL;
	snprintf(out, size, "%s", v2 ? v2 : v1 ? v1 : "");
}

static bool ends_with_n(const char *s, size_t len, const char *suffix)
{
	size_t lx = strlen(suffix);

	return len >= lx && strncmp(s + len - lx, suffix, lx) == 0;
}

static bool starts_with_n(const char *s, size_t len, const char *prefix)
{
	size_t lx = strlen(prefix);

	return len >= lx && strncmp(s, prefix, lx) == 0;
}

static bool all_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* user@UID.service is the per-user manager, not a service anyone named. */
static bool is_named_service(const char *comp, size_t len)
{
	return ends_with_n(comp, len, ".service") && len > strlen(".service") &&
	       !starts_with_n(comp, len, "user@");
}

/* A container id in one path component, or NULL. *id_len gets its length. */
static const char *container_id(const char *comp, size_t len, bool under_runtime,
				size_t *id_len)
{
	static const char *const scope_prefixes[] = { "docker-", "cri-containerd-", "crio-",
						      "libpod-" };

	if (ends_with_n(comp, len, ".scope")) {
		size_t body = len - strlen(".scope");

		for (size_t i = 0; i < sizeof(scope_prefixes) / sizeof(scope_prefixes[0]); i++) {
			size_t pl = strlen(scope_prefixes[i]);

			if (body > pl && starts_with_n(comp, body, scope_prefixes[i]) &&
			    body - pl >= CONTAINER_ID_LEN && all_hex(comp + pl, body - pl)) {
				*id_len = body - pl;
				return comp + pl;
			}
		}
		return NULL;
	}
	/* cgroupfs drivers: /kubepods/<qos>/pod<uid>/<64 hex>, /docker/<64 hex> */
	if (under_runtime && len == 64 && all_hex(comp, len)) {
		*id_len = len;
		return comp;
	}
	return NULL;
}

/* Walks the components once; the last match of each kind wins (innermost). */
static void parse_cgroup_path(const char *path, struct proc_facts *facts)
{
	bool under_runtime = false;
	const char *p = path;

	while (*p) {
		size_t len, id_len;
		const char *id;

		while (*p == '/')
			p++;
		len = strcspn(p, "/");
		if (len == 0)
			break;
		if (is_named_service(p, len))
			snprintf(facts->unit, sizeof(facts->unit), "%.*s", (int)len, p);
		id = container_id(p, len, under_runtime, &id_len);
		if (id)
			snprintf(facts->container, sizeof(facts->container),
				 CONTAINER_PREFIX "%.*s", CONTAINER_ID_LEN, id);
		if (starts_with_n(p, len, "kubepods") || (len == 6 && strncmp(p, "docker", 6) == 0))
			under_runtime = true;
		p += len;
	}
}

static void read_cgroup_facts(uint32_t tgid, struct proc_facts *facts)
{
	char text[8192], path[4096];

	facts->unit[0] = '\0';
	facts->container[0] = '\0';
	if (read_proc_file(tgid, "cgroup", text, sizeof(text)) < 0)
		return;
	pick_cgroup_path(text, path, sizeof(path));
	parse_cgroup_path(path, facts);
}

/* ---- resolution ---------------------------------------------------------------------------- */

static void read_facts(uint32_t tgid, struct proc_facts *facts)
{
	read_exe(tgid, facts->exe, sizeof(facts->exe));
	read_comm(tgid, facts->comm, sizeof(facts->comm));
	read_cgroup_facts(tgid, facts);
}

/* "nginx" in a rule also matches the unit "nginx.service". */
static bool unit_matches(const char *want, const char *unit)
{
	size_t lw = strlen(want);

	if (strcmp(want, unit) == 0)
		return true;
	return !strchr(want, '.') && strncmp(unit, want, lw) == 0 &&
	       strcmp(unit + lw, ".service") == 0;
}

static bool rule_matches(const struct ps_service_rule *r, const struct proc_facts *f)
{
	if (!r->name || (!r->exe && !r->comm && !r->unit))
		return false;
	if (r->exe && strcmp(r->exe, f->exe) != 0)
		return false;
	if (r->comm && strcmp(r->comm, f->comm) != 0)
		return false;
	if (r->unit && !unit_matches(r->unit, f->unit))
		return false;
	return true;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* The name for a live process, allocated; *source says where it came from. */
static char *name_from_facts(const struct proc_facts *f, const char *comm_hint,
			     const char **source)
{
	for (size_t i = 0; i < n_rules; i++) {
		if (rule_matches(&rules[i], f)) {
			*source = "rule";
			return strdup(rules[i].name);
		}
	}
	if (f->unit[0]) {
		*source = "systemd unit";
		return strndup(f->unit, strlen(f->unit) - strlen(".service"));
	}
	if (f->container[0]) {
		*source = "container";
		return strdup(f->container);
	}
	if (f->exe[0] && base_name(f->exe)[0]) {
		*source = "exe";
		return strdup(base_name(f->exe));
	}
	if (f->comm[0]) {
		*source = "comm";
		return strdup(f->comm);
	}
	*source = "hint";
	return strdup(comm_hint && comm_hint[0] ? comm_hint : NAME_UNKNOWN);
}

size_t ps_proc_cache_entries(void)
{
	return cache_entries;
}

/* ---- the cache ----------------------------------------------------------------------------- */

static size_t bucket_of(uint32_t tgid, size_t size)
{
	uint32_t h = tgid * 0x9e3779b1u;

	return (h ^ (h >> 16)) & (size - 1);
}

static void entry_free(struct proc_entry *e)
{
	free(e->name);
	free(e);
}

/* Load factor at most 1; on failure chains just get longer. */
static void maybe_grow_cache(void)
{
	size_t size = cache_size ? cache_size * 2 : CACHE_INITIAL;
	struct proc_entry **grown;

	if (cache && cache_entries < cache_size)
		return;
	grown = calloc(size, sizeof(*grown));
	if (!grown)
		return;
	for (size_t i = 0; i < cache_size; i++) {
		struct proc_entry *e = cache[i], *next;

		for (; e; e = next) {
			size_t b = bucket_of(e->tgid, size);

			next = e->next;
			e->next = grown[b];
			grown[b] = e;
		}
	}
	free(cache);
	cache = grown;
	cache_size = size;
}

static struct proc_entry *cache_insert(uint32_t tgid, char *name, bool start_known,
				       unsigned long long start_time)
{
	struct proc_entry *e;
	size_t b;

	maybe_grow_cache();
	if (!cache)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->tgid = tgid;
	e->state = ENTRY_LIVE;
	e->start_known = start_known;
	e->start_time = start_time;
	e->name = name;
	b = bucket_of(tgid, cache_size);
	e->next = cache[b];
	cache[b] = e;
	cache_entries++;
	return e;
}

static struct proc_entry *cache_find(uint32_t tgid, enum entry_state state)
{
	if (!cache)
		return NULL;
	for (struct proc_entry *e = cache[bucket_of(tgid, cache_size)]; e; e = e->next)
		if (e->tgid == tgid && e->state == state)
			return e;
	return NULL;
}

static void mark_all(enum entry_state from, enum entry_state to)
{
	for (size_t i = 0; i < cache_size; i++)
		for (struct proc_entry *e = cache[i]; e; e = e->next)
			if (e->state == from)
				e->state = to;
}

/* Late events of a forgotten process still get its name, not the new pid owner's. */
static bool exited_entry_applies(const struct proc_entry *e)
{
	unsigned long long start;

	if (read_start_time(e->tgid, &start) < 0)
		return true;
	return e->start_known && start == e->start_time;
}

static const char *resolve_and_cache(uint32_t tgid, const char *comm_hint)
{
	struct proc_facts *facts;
	unsigned long long start = 0;
	bool alive = read_start_time(tgid, &start) == 0;
	const char *source = "hint";
	struct proc_entry *e;
	char *name;

	if (alive) {
		facts = malloc(sizeof(*facts));
		if (!facts)
			return NAME_UNKNOWN;
		read_facts(tgid, facts);
		name = name_from_facts(facts, comm_hint, &source);
		free(facts);
	} else {
		name = strdup(comm_hint && comm_hint[0] ? comm_hint : NAME_UNKNOWN);
	}
	if (!name)
		return NAME_UNKNOWN;
	e = cache_insert(tgid, name, alive, start);
	if (!e) {
		free(name);
		return NAME_UNKNOWN;
	}
	ps_debug(SUBSYS, "pid %" PRIu32 " is %s (from %s)", tgid, name, source);
	return e->name;
}

const char *ps_proc_service_name(uint32_t tgid, const char *comm_hint)
{
	struct proc_entry *e;

	if (tgid == 0)
		return NAME_KERNEL;
	e = cache_find(tgid, ENTRY_LIVE);
	if (e)
		return e->name;
	e = cache_find(tgid, ENTRY_EXITED);
	if (e && exited_entry_applies(e))
		return e->name;
	return resolve_and_cache(tgid, comm_hint);
}

void ps_proc_forget(uint32_t tgid)
{
	struct proc_entry *e = cache_find(tgid, ENTRY_LIVE);

	if (e)
		e->state = ENTRY_EXITED;
}

static bool entry_outdated(const struct proc_entry *e)
{
	unsigned long long start;

	if (e->state != ENTRY_LIVE || !e->start_known)
		return true;
	return read_start_time(e->tgid, &start) < 0 || start != e->start_time;
}

void ps_proc_sweep(void)
{
	size_t freed = 0;

	for (size_t i = 0; i < cache_size; i++) {
		struct proc_entry **pp = &cache[i];

		while (*pp) {
			struct proc_entry *e = *pp;

			if (entry_outdated(e)) {
				*pp = e->next;
				entry_free(e);
				cache_entries--;
				freed++;
			} else {
				pp = &e->next;
			}
		}
	}
	if (freed)
		ps_debug(SUBSYS, "swept %zu exited processes, %zu cached", freed, cache_entries);
}

/* ---- rules and lifetime -------------------------------------------------------------------- */

static void rules_free(struct ps_service_rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].exe);
		free(r[i].comm);
		free(r[i].unit);
		free(r[i].name);
	}
	free(r);
}

static int copy_field(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static int copy_rule(struct ps_service_rule *dst, const struct ps_service_rule *src)
{
	if (copy_field(&dst->exe, src->exe) < 0 || copy_field(&dst->comm, src->comm) < 0 ||
	    copy_field(&dst->unit, src->unit) < 0 || copy_field(&dst->name, src->name) < 0)
		return -ENOMEM;
	return 0;
}

int ps_proc_set_rules(const struct ps_service_rule *src, size_t n)
{
	struct ps_service_rule *copy = NULL;

	if (n) {
		copy = calloc(n, sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			if (copy_rule(&copy[i], &src[i]) < 0) {
				rules_free(copy, n);
				ps_error(SUBSYS, "out of memory copying service rules");
				return -ENOMEM;
			}
		}
	}
	rules_free(rules, n_rules);
	rules = copy;
	n_rules = n;
	/* Names handed out stay valid until the next sweep, which frees them. */
	mark_all(ENTRY_LIVE, ENTRY_STALE);
	mark_all(ENTRY_EXITED, ENTRY_STALE);
	return 0;
}

void ps_proc_set_root(const char *root)
{
	snprintf(proc_root, sizeof(proc_root), "%s", root && root[0] ? root : DEFAULT_ROOT);
	mark_all(ENTRY_LIVE, ENTRY_STALE);
	mark_all(ENTRY_EXITED, ENTRY_STALE);
}

void ps_proc_cleanup(void)
{
	for (size_t i = 0; i < cache_size; i++) {
		struct proc_entry *e = cache[i], *next;

		for (; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	}
	free(cache);
	cache = NULL;
	cache_size = 0;
	cache_entries = 0;
	rules_free(rules, n_rules);
	rules = NULL;
	n_rules = 0;
}
