/*
 * floor sys|sock empty|copy|ring: attaches one family of floor.bpf.c's
 * programs in one mode, says "ready" on stdout and holds them (draining the
 * ring) until SIGTERM or SIGINT. make bench runs it between untraced and
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

static int on_record(void *ctx, void *data, size_t size)
{
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const modes[] = { "empty", "copy", "ring" };
	struct floor_bpf *skel;
	struct bpf_program *prog;
	struct ring_buffer *rb = NULL;
	int err, m = -1;
	bool sock;

	if (argc != 3 || (strcmp(argv[1], "sys") && strcmp(argv[1], "sock"))) {
		fprintf(stderr, "usage: floor sys|sock empty|copy|ring\n");
		return 2;
	}
	for (int i = 0; i < 3; i++)
		if (!strcmp(argv[2], modes[i]))
			m = i;
	if (m < 0) {
		fprintf(stderr, "usage: floor sys|sock empty|copy|ring\n");
		return 2;
	}
	sock = !strcmp(argv[1], "sock");
	skel = floor_bpf__open();
	if (!skel) {
		perror("floor: open");
		return 1;
	}
	skel->rodata->mode = (__u8)m;
	skel->rodata->self_tgid = (__u32)getpid();
	bpf_object__for_each_program(prog, skel->obj)
		bpf_program__set_autoload(prog, !strncmp(bpf_program__name(prog), "floor_sock_", 11) == sock);
	err = floor_bpf__load(skel);
	if (!err)
		err = floor_bpf__attach(skel);
	if (!err) {
		rb = ring_buffer__new(bpf_map__fd(skel->maps.floor_ring), on_record, NULL, NULL);
		err = rb ? 0 : -1;
	}
	if (err) {
		fprintf(stderr, "floor: load/attach: %s\n", strerror(err < 0 ? -err : err));
		floor_bpf__destroy(skel);
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("ready\n");
	fflush(stdout);
	/*
	 * Records go in with BPF_RB_NO_WAKEUP, so epoll never fires: drain on a
	 * clock as the daemon's timer does, or the ring fills and every later
	 * reserve fails, which would make mode "ring" look cheaper than "copy".
	 */
	while (!stop) {
		ring_buffer__consume(rb);
		usleep(10 * 1000);
	}
	ring_buffer__free(rb);
	floor_bpf__destroy(skel);
	return 0;
}
