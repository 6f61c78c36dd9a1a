/*
 * sd_notify without libsystemd, the reload outcome for ExecReload, the
 * plugin health summary, and the capability drop after loading.
 *
 * The notify protocol is one datagram of "KEY=VALUE" lines to the unix
 * socket named by $NOTIFY_SOCKET ('@' first means the abstract namespace).
 * systemd 252 (Debian 12) has no Type=notify-reload, so a reload's outcome
 * also goes to a file the unit's ExecReload waits for: systemctl reload then
 * fails when the new configuration was rejected.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <periscope/log.h>

#include "notify.h"
#include "registry.h"

#define SUBSYS		    "notify"
#define PLUGIN_UP_FAMILY    "periscope_plugin_up"
#define RELOAD_STATUS_FILE  "reload-status"
#define NOTIFY_MSG_MAX	    512

void ps_notify_plugin_health(const struct ps_registry *r, struct ps_plugin_health *h)
{
	size_t off = 0;

	memset(h, 0, sizeof(*h));
	if (!r)
		return;
	for (size_t i = 0; i < r->n_families; i++) {
		const struct ps_family *f = r->families[i];
		size_t label = f->n_labels;

		h->series += f->n_series;
		if (strcmp(f->name, PLUGIN_UP_FAMILY))
			continue;
		for (size_t l = 0; l < f->n_labels; l++)
			if (!strcmp(f->labels[l], "plugin"))
				label = l;
		if (label == f->n_labels)
			continue;
		for (size_t s = 0; s < f->n_series; s++) {
			const struct ps_series *se = f->series[s];

			h->total++;
			if (se->value == 1) {
				h->up++;
				continue;
			}
			off += (size_t)snprintf(h->down + off, off < sizeof(h->down) ? sizeof(h->down) - off : 0,
						"%s%s", off ? ", " : "", se->values[label]);
		}
	}
	if (off >= sizeof(h->down)) /* cut: say so rather than end mid-name */
		strcpy(h->down + sizeof(h->down) - 5, "...");
}

/* sockaddr_un from $NOTIFY_SOCKET; its length, or 0 when unusable. */
static socklen_t notify_address(const char *path, struct sockaddr_un *sa)
{
	size_t len = strlen(path);

	if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof(sa->sun_path))
		return 0;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len);
	if (path[0] == '@')
		sa->sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
}

int ps_notify_state(const char *state, const struct ps_registry *r)
{
	static int logged_errno;
	const char *path = getenv("NOTIFY_SOCKET");
	struct ps_plugin_health h;
	struct sockaddr_un sa;
	char msg[NOTIFY_MSG_MAX];
	socklen_t sa_len;
	int fd, rc = 0;

	if (!path || !*path)
		return 0;
	sa_len = notify_address(path, &sa);
	if (!sa_len) {
		rc = -EINVAL;
		goto out;
	}
	if (r) {
		ps_notify_plugin_health(r, &h);
		snprintf(msg, sizeof(msg), "%s%sSTATUS=%zu of %zu plugins up, %zu series%s%s",
			 state ? state : "", state ? "\n" : "", h.up, h.total, h.series,
			 h.down[0] ? "; down: " : "", h.down);
	} else {
		snprintf(msg, sizeof(msg), "%s", state ? state : "");
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/* A full socket buffer drops the message instead of holding the loop. */
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, sa_len) < 0)
		rc = -errno;
	close(fd);
out:
	if (rc && rc != logged_errno)
		ps_warn(SUBSYS, "cannot notify the service manager at %s: %s", path, strerror(-rc));
	logged_errno = rc;
	return rc;
}

/* Written whole, then renamed: the waiting ExecReload never reads half a word. */
static int write_reload_status(bool ok)
{
	const char *dir = getenv("RUNTIME_DIRECTORY");
	char path[4096], tmp[4096];
	const char *text = ok ? "ok\n" : "rejected\n";
	int fd, rc = 0;

	if (!dir || !*dir)
		return 0;
	/* RuntimeDirectory= may name several, separated by ':'; ours is the first. */
	if (snprintf(path, sizeof(path), "%.*s/" RELOAD_STATUS_FILE, (int)strcspn(dir, ":"), dir) >=
		    (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

int ps_notify_reloaded(bool ok, const struct ps_registry *r)
{
	int rc = write_reload_status(ok);

	if (rc)
		ps_warn(SUBSYS, "cannot write the reload status for ExecReload: %s", strerror(-rc));
	ps_notify_state("READY=1", r);
	return rc;
}

/* ---- capabilities ---------------------------------------------------------------------- */

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

/*
 * What a reload needs to open, load and attach plugins again, and what the
 * running plugins need to follow processes:
 *  CAP_BPF             maps, programs, BPF_PROG_TEST_RUN (tcpflow's open-flow read)
 *  CAP_PERFMON         tracing programs, tracepoint and uprobe perf events
 *  CAP_SYS_ADMIN       uretprobes (OpenSSL return probes), mounting tracefs
 *  CAP_SYS_PTRACE      /proc/PID/exe, maps and root of other users' processes
 *  CAP_DAC_READ_SEARCH libssl files reached through /proc/PID/root
 */
static const int kept_caps[] = { CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE,
				 CAP_DAC_READ_SEARCH };
static const char *const kept_names[] = { "bpf", "perfmon", "sys_admin", "sys_ptrace",
					  "dac_read_search" };

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int last = CAP_BPF;

	if (f) {
		if (fscanf(f, "%d", &last) != 1 || last < 0 || last > 63)
			last = CAP_BPF;
		fclose(f);
	}
	return last;
}

static bool is_kept(int cap)
{
	for (size_t i = 0; i < sizeof(kept_caps) / sizeof(kept_caps[0]); i++)
		if (kept_caps[i] == cap)
			return true;
	return false;
}

int ps_notify_drop_capabilities(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	int last = last_cap(), bounding_dropped = 0, rc;
	char kept[128] = "";
	size_t off = 0;

	/*
	 * The bounding set first: narrowing it needs CAP_SETPCAP, which is about
	 * to go. Under the systemd unit it is narrow already and CAP_SETPCAP is
	 * not there (EPERM): nothing to do.
	 */
	for (int cap = 0; cap <= last; cap++) {
		if (is_kept(cap) || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0))
			break;
		bounding_dropped++;
	}
	/* Ambient capabilities would survive an exec; there is none to make. */
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

	if (syscall(SYS_capget, &hdr, data)) {
		rc = -errno;
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		__u32 keep = 0;

		for (int cap = i * 32; cap < i * 32 + 32; cap++)
			if (is_kept(cap))
				keep |= 1u << (cap % 32);
		data[i].permitted &= keep;
		data[i].effective &= keep;
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, data)) {
		rc = -errno;
		goto fail;
	}
	/* Never execs: nothing it could exec may gain privileges either. */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	for (size_t i = 0; i < sizeof(kept_caps) / sizeof(kept_caps[0]); i++)
		if (data[kept_caps[i] / 32].effective & (1u << (kept_caps[i] % 32)))
			off += (size_t)snprintf(kept + off, sizeof(kept) - off, "%s%s", off ? ", " : "",
						kept_names[i]);
	ps_info(SUBSYS, "capabilities after loading: %s (what a reload needs); %d dropped from "
			"the bounding set",
		off ? kept : "none", bounding_dropped);
	return 0;
fail:
	ps_warn(SUBSYS, "cannot drop capabilities: %s", strerror(-rc));
	return rc;
}
