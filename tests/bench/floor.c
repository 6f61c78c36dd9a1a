/*
 * floor [copy]: attaches floor.bpf.c's programs, says "ready" on stdout and
 * holds them until SIGTERM or SIGINT. make bench runs it between untraced and
 * traced rounds to show what the hooks alone cost.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "floor.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct floor_bpf *skel = floor_bpf__open();
	int err;

	if (!skel) {
		perror("floor: open");
		return 1;
	}
	skel->rodata->copy = argc > 1 && !strcmp(argv[1], "copy");
	skel->rodata->self_tgid = (__u32)getpid();
	err = floor_bpf__load(skel);
	if (!err)
		err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "floor: load/attach: %s\n", strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("ready\n");
	fflush(stdout);
	while (!stop)
		sleep(1); /* a signal ends the sleep; one between test and sleep, the next tick */
	floor_bpf__destroy(skel);
	return 0;
}
