/* Unit tests for process metadata (core/proc.c) against fake proc trees. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "procinfo.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char root[PATH_MAX - 64]; /* room for "/PID/file" in PATH_MAX */

/* ---- fake proc tree ------------------------------------------------------------------------ */

static void write_file(uint32_t pid, const char *name, const char *content)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%u/%s", root, pid, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(content, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void write_stat(uint32_t pid, const char *comm, unsigned long long start)
{
	char buf[1024];

	/* Fields 3..21 then 22 (starttime) and a few after it, as the kernel writes them. */
	snprintf(buf, sizeof(buf),
		 "%u (%s) S 1 %u %u 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 %llu 12345678 300 "
		 "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 2 0 0 0 0 0\n",
		 pid, comm, pid, pid, start);
	write_file(pid, "stat", buf);
}

static void set_exe(uint32_t pid, const char *target)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%u/exe", root, pid);
	unlink(path);
	if (target)
		ck_assert_int_eq(symlink(target, path), 0);
}

/* A process with exe, comm, cgroup and stat; NULL leaves that file out. */
static void fake_proc(uint32_t pid, const char *exe, const char *comm, const char *cgroup,
		      unsigned long long start)
{
	char dir[PATH_MAX], comm_line[64];

	snprintf(dir, sizeof(dir), "%s/%u", root, pid);
	ck_assert(mkdir(dir, 0755) == 0 || errno == EEXIST);
	set_exe(pid, exe);
	if (comm) {
		snprintf(comm_line, sizeof(comm_line), "%s\n", comm);
		write_file(pid, "comm", comm_line);
	}
	if (cgroup)
		write_file(pid, "cgroup", cgroup);
	write_stat(pid, comm ? comm : "x", start);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_proc(uint32_t pid)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/%u", root, pid);
	ck_assert_int_eq(nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static void setup(void)
{
	snprintf(root, sizeof(root), "%s/periscope-proc-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(root));
	ps_proc_set_root(root);
}

static void teardown(void)
{
	ps_proc_cleanup();
	ps_proc_set_root(NULL);
	nftw(root, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

static const char *cgroup_v2(const char *path, char *buf, size_t size)
{
	snprintf(buf, size, "0::%s\n", path);
	return buf;
}

/* Name of a process whose only distinguishing fact is its cgroup path (v2). */
static const char *name_for_cgroup(uint32_t pid, const char *path)
{
	char buf[512];

	fake_proc(pid, "/usr/bin/fallback", "fallback", cgroup_v2(path, buf, sizeof(buf)), 100);
	return ps_proc_service_name(pid, "hint");
}

/* ---- rules --------------------------------------------------------------------------------- */

START_TEST(test_rule_by_exe)
{
	struct ps_service_rule r[] = { { .exe = "/usr/sbin/nginx", .name = "frontend" } };

	ck_assert_int_eq(ps_proc_set_rules(r, 1), 0);
	fake_proc(100, "/usr/sbin/nginx", "nginx", "0::/system.slice/nginx.service\n", 5);
	fake_proc(101, "/usr/local/sbin/nginx", "nginx", "0::/system.slice/nginx.service\n", 5);
	fake_proc(102, "/usr/sbin/nginx (deleted)", "nginx", "0::/\n", 5);
	ck_assert_str_eq(ps_proc_service_name(100, NULL), "frontend");
	ck_assert_str_eq(ps_proc_service_name(101, NULL), "nginx"); /* not the same path */
	ck_assert_str_eq(ps_proc_service_name(102, NULL), "frontend"); /* upgraded binary */
}
END_TEST

START_TEST(test_rule_by_comm)
{
	struct ps_service_rule r[] = { { .comm = "worker", .name = "jobs" } };

	ck_assert_int_eq(ps_proc_set_rules(r, 1), 0);
	fake_proc(200, "/usr/bin/python3", "worker", "0::/\n", 5);
	fake_proc(201, "/usr/bin/python3", "workers", "0::/\n", 5);
	ck_assert_str_eq(ps_proc_service_name(200, NULL), "jobs");
	ck_assert_str_eq(ps_proc_service_name(201, NULL), "python3");
}
END_TEST

START_TEST(test_rule_by_unit)
{
	struct ps_service_rule r[] = {
		{ .unit = "api.service", .name = "checkout" },
		{ .unit = "web", .name = "shop" }, /* without the suffix */
	};

	ck_assert_int_eq(ps_proc_set_rules(r, 2), 0);
	fake_proc(300, "/usr/bin/java", "java", "0::/system.slice/api.service\n", 5);
	fake_proc(301, "/usr/bin/node", "node", "0::/system.slice/web.service\n", 5);
	fake_proc(302, "/usr/bin/node", "node", "0::/system.slice/webapp.service\n", 5);
	ck_assert_str_eq(ps_proc_service_name(300, NULL), "checkout");
	ck_assert_str_eq(ps_proc_service_name(301, NULL), "shop");
	ck_assert_str_eq(ps_proc_service_name(302, NULL), "webapp");
}
END_TEST

START_TEST(test_rule_all_fields_and_order)
{
	struct ps_service_rule r[] = {
		{ .exe = "/usr/bin/python3", .comm = "celery", .name = "queue" },
		{ .exe = "/usr/bin/python3", .unit = "api.service", .name = "api" },
		{ .exe = "/usr/bin/python3", .name = "python-misc" },
		{ .exe = "/usr/bin/python3", .name = "never" }, /* shadowed by the one above */
		{ .name = "matches-nothing" },                  /* no match fields */
	};

	ck_assert_int_eq(ps_proc_set_rules(r, 5), 0);
	fake_proc(400, "/usr/bin/python3", "celery", "0::/system.slice/api.service\n", 5);
	fake_proc(401, "/usr/bin/python3", "gunicorn", "0::/system.slice/api.service\n", 5);
	fake_proc(402, "/usr/bin/python3", "celery2", "0::/\n", 5);
	fake_proc(403, "/usr/bin/perl", "perl", "0::/\n", 5);
	ck_assert_str_eq(ps_proc_service_name(400, NULL), "queue");
	ck_assert_str_eq(ps_proc_service_name(401, NULL), "api");
	ck_assert_str_eq(ps_proc_service_name(402, NULL), "python-misc");
	ck_assert_str_eq(ps_proc_service_name(403, NULL), "perl");
}
END_TEST

/* The rules are copied; new rules apply at once, old names live until the sweep. */
START_TEST(test_set_rules_copies_and_clears)
{
	char exe[] = "/opt/app/bin/server";
	char name[] = "billing";
	struct ps_service_rule r = { .exe = exe, .name = name };
	const char *before, *after;

	fake_proc(500, "/opt/app/bin/server", "server", "0::/\n", 5);
	before = ps_proc_service_name(500, NULL);
	ck_assert_str_eq(before, "server");

	ck_assert_int_eq(ps_proc_set_rules(&r, 1), 0);
	memset(exe, 'x', sizeof(exe) - 1);
	memset(name, 'y', sizeof(name) - 1);
	after = ps_proc_service_name(500, NULL);
	ck_assert_str_eq(after, "billing");
	ck_assert_str_eq(before, "server"); /* still valid until the sweep */

	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(500, NULL), "billing");
	ck_assert_int_eq(ps_proc_set_rules(NULL, 0), 0);
	ck_assert_str_eq(ps_proc_service_name(500, NULL), "server");
}
END_TEST

/* ---- systemd units ------------------------------------------------------------------------- */

START_TEST(test_systemd_unit_v2)
{
	ck_assert_str_eq(name_for_cgroup(600, "/system.slice/nginx.service"), "nginx");
	ck_assert_str_eq(name_for_cgroup(601, "/system.slice/getty@tty1.service"), "getty@tty1");
	ck_assert_str_eq(name_for_cgroup(602, "/system.slice/postgresql.service/sub"), "postgresql");
	/* A service inside the user manager is named; the manager itself is not. */
	ck_assert_str_eq(name_for_cgroup(603, "/user.slice/user-1000.slice/user@1000.service/"
					      "app.slice/myapp.service"),
			 "myapp");
	ck_assert_str_eq(name_for_cgroup(604, "/user.slice/user-1000.slice/user@1000.service/"
					      "init.scope"),
			 "fallback");
	ck_assert_str_eq(name_for_cgroup(605, "/user.slice/user-1000.slice/session-3.scope"),
			 "fallback");
	ck_assert_str_eq(name_for_cgroup(606, "/init.scope"), "fallback");
	ck_assert_str_eq(name_for_cgroup(607, "/system.slice/.service"), "fallback");
}
END_TEST

START_TEST(test_systemd_unit_v1)
{
	/* A v1 host: several hierarchies, systemd's is the named one. */
	fake_proc(700, "/usr/sbin/mysqld", "mysqld",
		  "12:pids:/system.slice/mariadb.service\n"
		  "11:cpu,cpuacct:/system.slice/mariadb.service\n"
		  "3:memory:/system.slice/wrong.service\n"
		  "1:name=systemd:/system.slice/mariadb.service\n",
		  5);
	ck_assert_str_eq(ps_proc_service_name(700, NULL), "mariadb");

	/* Hybrid: the v2 line wins when it says something. */
	fake_proc(701, "/usr/sbin/mysqld", "mysqld",
		  "1:name=systemd:/system.slice/old.service\n"
		  "0::/system.slice/new.service\n",
		  5);
	ck_assert_str_eq(ps_proc_service_name(701, NULL), "new");

	/* Hybrid with an empty unified hierarchy: fall back to name=systemd. */
	fake_proc(702, "/usr/sbin/mysqld", "mysqld",
		  "1:name=systemd:/system.slice/redis.service\n"
		  "0::/\n",
		  5);
	ck_assert_str_eq(ps_proc_service_name(702, NULL), "redis");

	/* No systemd hierarchy at all: not a unit. */
	fake_proc(703, "/usr/sbin/mysqld", "mysqld", "4:memory:/system.slice/x.service\n", 5);
	ck_assert_str_eq(ps_proc_service_name(703, NULL), "mysqld");
}
END_TEST

/* ---- containers ---------------------------------------------------------------------------- */

START_TEST(test_containers)
{
	ck_assert_str_eq(name_for_cgroup(800, "/system.slice/docker-" HEX64 ".scope"),
			 "container-0123456789ab");
	ck_assert_str_eq(name_for_cgroup(801, "/kubepods.slice/kubepods-burstable.slice/"
					      "kubepods-burstable-pod1234.slice/"
					      "cri-containerd-abcdef0123456789" HEX64 ".scope"),
			 "container-abcdef012345");
	ck_assert_str_eq(name_for_cgroup(802, "/kubepods.slice/kubepods-pod1.slice/crio-"
					      "fedcba9876543210" HEX64 ".scope"),
			 "container-fedcba987654");
	ck_assert_str_eq(name_for_cgroup(803, "/user.slice/user-1000.slice/user@1000.service/"
					      "user.slice/libpod-" HEX64 ".scope"),
			 "container-0123456789ab");
	ck_assert_str_eq(name_for_cgroup(804, "/kubepods/burstable/pod5a1c-77/" HEX64),
			 "container-0123456789ab");
	ck_assert_str_eq(name_for_cgroup(805, "/docker/" HEX64), "container-0123456789ab");
	/* Not containers: conmon's scope, short or non-hex ids, 64 hex outside a runtime. */
	ck_assert_str_eq(name_for_cgroup(806, "/machine.slice/crio-conmon-" HEX64 ".scope"),
			 "fallback");
	ck_assert_str_eq(name_for_cgroup(807, "/system.slice/docker-abc.scope"), "fallback");
	ck_assert_str_eq(name_for_cgroup(808, "/system.slice/docker-xyz0123456789.scope"),
			 "fallback");
	ck_assert_str_eq(name_for_cgroup(809, "/somewhere/" HEX64), "fallback");
	/* A systemd service outranks a container. */
	ck_assert_str_eq(name_for_cgroup(810, "/system.slice/app.service/docker-" HEX64 ".scope"),
			 "app");
}
END_TEST

/* ---- executable, comm, hints --------------------------------------------------------------- */

START_TEST(test_exe_base_name)
{
	fake_proc(900, "/usr/local/bin/haproxy", "haproxy-worker", "0::/\n", 5);
	fake_proc(901, "/opt/app/server (deleted)", "srv", NULL, 5);
	ck_assert_str_eq(ps_proc_service_name(900, "hint"), "haproxy");
	ck_assert_str_eq(ps_proc_service_name(901, "hint"), "server");
}
END_TEST

START_TEST(test_comm_fallback)
{
	/* Kernel threads and unreadable exe links: comm names the process. */
	fake_proc(1000, NULL, "kworker/0:1", "0::/\n", 5);
	ck_assert_str_eq(ps_proc_service_name(1000, "hint"), "kworker/0:1");
	/* Neither exe nor comm: the hint, else "unknown". */
	fake_proc(1001, NULL, NULL, NULL, 5);
	ck_assert_str_eq(ps_proc_service_name(1001, "hint"), "hint");
	fake_proc(1002, NULL, NULL, NULL, 5);
	ck_assert_str_eq(ps_proc_service_name(1002, NULL), "unknown");
}
END_TEST

START_TEST(test_vanished_pid)
{
	ck_assert_str_eq(ps_proc_service_name(4242, "curl"), "curl");
	ck_assert_str_eq(ps_proc_service_name(4243, NULL), "unknown");
	ck_assert_str_eq(ps_proc_service_name(4244, ""), "unknown");
	/* Cached until the sweep, then resolved again. */
	ck_assert_str_eq(ps_proc_service_name(4242, "other"), "curl");
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(4242, "other"), "other");
}
END_TEST

START_TEST(test_kernel)
{
	ck_assert_str_eq(ps_proc_service_name(0, "swapper/0"), "kernel");
	ck_assert_str_eq(ps_proc_service_name(0, NULL), "kernel");
}
END_TEST

START_TEST(test_stat_comm_with_parens)
{
	const char *name;

	fake_proc(1100, "/usr/bin/weird", "a) b (c", "0::/\n", 77);
	name = ps_proc_service_name(1100, NULL);
	ck_assert_str_eq(name, "weird");
	ps_proc_sweep(); /* start time parsed right: the entry survives */
	ck_assert_ptr_eq(ps_proc_service_name(1100, NULL), name);

	/* A stat without enough fields counts as gone. */
	write_file(1100, "stat", "1100 (x) S 1 2\n");
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(1100, "hinted"), "hinted");
}
END_TEST

/* ---- cache lifetime ------------------------------------------------------------------------ */

START_TEST(test_cached_until_sweep)
{
	const char *first;

	fake_proc(1200, "/usr/bin/redis-server", "redis-server", "0::/\n", 10);
	first = ps_proc_service_name(1200, NULL);
	ck_assert_str_eq(first, "redis-server");
	/* The hot path reads nothing: the answer is the cached pointer. */
	set_exe(1200, "/usr/bin/other");
	ck_assert_ptr_eq(ps_proc_service_name(1200, NULL), first);
	/* Same start time: the sweep keeps it. */
	ps_proc_sweep();
	ck_assert_ptr_eq(ps_proc_service_name(1200, NULL), first);
	ck_assert_str_eq(first, "redis-server");
}
END_TEST

START_TEST(test_pid_reuse)
{
	const char *old;

	fake_proc(1300, "/usr/bin/old", "old", "0::/\n", 1000);
	old = ps_proc_service_name(1300, NULL);
	ck_assert_str_eq(old, "old");

	/* The pid now belongs to another process (new start time). */
	fake_proc(1300, "/usr/bin/new", "new", "0::/system.slice/new.service\n", 2000);
	ck_assert_str_eq(ps_proc_service_name(1300, NULL), "old");
	ck_assert_str_eq(old, "old");
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(1300, NULL), "new");

	/* Vanished processes are evicted too. */
	remove_proc(1300);
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(1300, "late"), "late");
}
END_TEST

START_TEST(test_forget_then_sweep)
{
	const char *name;

	fake_proc(1400, "/usr/bin/short", "short", "0::/\n", 50);
	name = ps_proc_service_name(1400, NULL);
	ck_assert_str_eq(name, "short");

	/* Forgotten but still the same process: late events keep its name. */
	ps_proc_forget(1400);
	ps_proc_forget(1400);
	ps_proc_forget(9999); /* never seen: nothing happens */
	ck_assert_ptr_eq(ps_proc_service_name(1400, NULL), name);
	/* Gone from /proc: still its name until the sweep. */
	remove_proc(1400);
	ck_assert_str_eq(ps_proc_service_name(1400, "hint"), "short");
	ck_assert_str_eq(name, "short");
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(1400, "hint"), "hint");

	/* Forgotten and the pid reused before the sweep: the new owner is resolved. */
	fake_proc(1401, "/usr/bin/first", "first", "0::/\n", 1);
	name = ps_proc_service_name(1401, NULL);
	ps_proc_forget(1401);
	fake_proc(1401, "/usr/bin/second", "second", "0::/\n", 2);
	ck_assert_str_eq(ps_proc_service_name(1401, NULL), "second");
	ck_assert_str_eq(name, "first");
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(1401, NULL), "second");

	/* Forgotten, then the sweep while the process still runs: re-resolved. */
	fake_proc(1402, "/usr/bin/a", "a", "0::/\n", 3);
	ck_assert_str_eq(ps_proc_service_name(1402, NULL), "a");
	ps_proc_forget(1402);
	set_exe(1402, "/usr/bin/b");
	ps_proc_sweep();
	ck_assert_str_eq(ps_proc_service_name(1402, NULL), "b");
}
END_TEST

START_TEST(test_many_processes)
{
	char exe[64];

	for (uint32_t pid = 2000; pid < 3000; pid++) {
		snprintf(exe, sizeof(exe), "/bin/p%u", pid);
		fake_proc(pid, exe, NULL, NULL, pid);
	}
	for (int round = 0; round < 2; round++) {
		for (uint32_t pid = 2000; pid < 3000; pid++) {
			snprintf(exe, sizeof(exe), "p%u", pid);
			ck_assert_str_eq(ps_proc_service_name(pid, NULL), exe);
		}
		ps_proc_sweep();
	}
	for (uint32_t pid = 2000; pid < 3000; pid += 2)
		remove_proc(pid);
	ps_proc_sweep();
	for (uint32_t pid = 2000; pid < 3000; pid++) {
		snprintf(exe, sizeof(exe), "p%u", pid);
		ck_assert_str_eq(ps_proc_service_name(pid, "gone"), pid % 2 ? exe : "gone");
	}
}
END_TEST

/* ---- the real /proc ------------------------------------------------------------------------ */

START_TEST(test_real_proc)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	struct ps_service_rule r = { .exe = exe, .name = "the-test" };
	const char *name;

	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	ps_proc_set_root(NULL);

	name = ps_proc_service_name((uint32_t)getpid(), NULL);
	ck_assert_ptr_nonnull(name);
	ck_assert(name[0] != '\0');
	ck_assert_str_ne(name, "unknown");
	ck_assert_ptr_eq(ps_proc_service_name((uint32_t)getpid(), NULL), name);
	ps_proc_sweep(); /* we are alive with the same start time */
	ck_assert_ptr_eq(ps_proc_service_name((uint32_t)getpid(), NULL), name);

	ck_assert_int_eq(ps_proc_set_rules(&r, 1), 0);
	ck_assert_str_eq(ps_proc_service_name((uint32_t)getpid(), NULL), "the-test");
}
END_TEST

static Suite *proc_suite(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_rule_by_exe);
	tcase_add_test(tc, test_rule_by_comm);
	tcase_add_test(tc, test_rule_by_unit);
	tcase_add_test(tc, test_rule_all_fields_and_order);
	tcase_add_test(tc, test_set_rules_copies_and_clears);
	tcase_add_test(tc, test_systemd_unit_v2);
	tcase_add_test(tc, test_systemd_unit_v1);
	tcase_add_test(tc, test_containers);
	tcase_add_test(tc, test_exe_base_name);
	tcase_add_test(tc, test_comm_fallback);
	tcase_add_test(tc, test_vanished_pid);
	tcase_add_test(tc, test_kernel);
	tcase_add_test(tc, test_stat_comm_with_parens);
	tcase_add_test(tc, test_cached_until_sweep);
	tcase_add_test(tc, test_pid_reuse);
	tcase_add_test(tc, test_forget_then_sweep);
	tcase_add_test(tc, test_many_processes);
	tcase_add_test(tc, test_real_proc);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
