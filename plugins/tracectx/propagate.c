/*
 * tracectx's opt-in propagation, user side: attach propagate.bpf.c's
 * programs and hand the plugin the ids they chose.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <periscope/bpf.h>
#include <periscope/log.h>

#include "propagate.h"
#include "propagate.skel.h"

#define SUBSYS "tracectx"

struct tc_propagate {
	struct propagate_bpf *skel;
	struct bpf_link *sockops, *recv, *send;
	bool msg_attached, skb_attached;
};

static int attach_cgroup(struct tc_propagate *tp)
{
	const char *cg = ps_bpf_cgroup2_path();
	int fd, err;

	if (!cg) {
		ps_error(SUBSYS, "propagate: no cgroup v2 mount to attach sock_ops to");
		return -ENOENT;
	}
	fd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		ps_error(SUBSYS, "propagate: cannot open %s: %s", cg, strerror(-err));
		return err;
	}
	tp->sockops = bpf_program__attach_cgroup(tp->skel->progs.tc_sockops, fd);
	err = tp->sockops ? 0 : -errno;
	close(fd);
	if (err)
		ps_error(SUBSYS, "propagate: cannot attach sock_ops to %s: %s", cg, strerror(-err));
	return err;
}

static int attach_sockhash(struct tc_propagate *tp)
{
	int map = bpf_map__fd(tp->skel->maps.tc_sockhash);

	/* The verdict first: a socket must never sit in the sockhash without it (see tc_pass). */
	if (bpf_prog_attach(bpf_program__fd(tp->skel->progs.tc_pass), map,
			    BPF_SK_SKB_STREAM_VERDICT, 0))
		goto fail;
	tp->skb_attached = true;
	if (bpf_prog_attach(bpf_program__fd(tp->skel->progs.tc_inject), map, BPF_SK_MSG_VERDICT,
			    0))
		goto fail;
	tp->msg_attached = true;
	return 0;
fail:
	ps_error(SUBSYS, "propagate: cannot attach to the sockhash: %s", strerror(errno));
	return -errno;
}

static int attach_tracepoints(struct tc_propagate *tp)
{
	tp->recv = bpf_program__attach(tp->skel->progs.tc_recv);
	if (tp->recv)
		tp->send = bpf_program__attach(tp->skel->progs.tc_send);
	if (tp->recv && tp->send)
		return 0;
	ps_error(SUBSYS, "propagate: cannot attach to the socket tracepoints: %s",
		 strerror(errno));
	return -errno;
}

int tc_propagate_start(const uint16_t *ports, size_t n_ports, double sample_ratio,
		       struct tc_propagate **out)
{
	struct tc_propagate *tp = calloc(1, sizeof(*tp));
	int err;

	if (!tp)
		return -ENOMEM;
	if (n_ports > TC_PORTS_MAX) {
		ps_error(SUBSYS, "propagate: at most %d ports", TC_PORTS_MAX);
		free(tp);
		return -E2BIG;
	}
	tp->skel = propagate_bpf__open();
	if (!tp->skel) {
		err = -errno;
		ps_error(SUBSYS, "propagate: cannot open its BPF object: %s", strerror(-err));
		free(tp);
		return err;
	}
	tp->skel->rodata->ps_self_tgid = ps_bpf_self_tgid();
	for (size_t i = 0; i < n_ports; i++)
		tp->skel->rodata->tc_ports[i] = ports[i];
	tp->skel->rodata->tc_n_ports = (uint32_t)n_ports;
	tp->skel->rodata->tc_sample_below =
		sample_ratio >= 1.0 ? 1ull << 56 :
		sample_ratio <= 0.0 ? 0 : (uint64_t)(sample_ratio * (double)(1ull << 56));
	err = propagate_bpf__load(tp->skel);
	if (err)
		ps_error(SUBSYS, "propagate: cannot load its BPF object: %s", strerror(-err));
	/* The sockhash's programs before sock_ops fills it, and the tracepoints before both. */
	if (!err)
		err = attach_tracepoints(tp);
	if (!err)
		err = attach_sockhash(tp);
	if (!err)
		err = attach_cgroup(tp);
	if (err) {
		tc_propagate_stop(tp);
		return err;
	}
	*out = tp;
	return 0;
}

/* How far apart the kernel's note and the capture's first byte of the same request may be. */
#define SAME_REQUEST_NS (10 * 1000000ull)

int tc_propagate_take(struct tc_propagate *tp, const struct ps_exchange *x,
		      struct ps_traceparent *out)
{
	struct tc_key key = { .cookie = x->conn_id, .seq = x->seq };
	int fd = bpf_map__fd(tp->skel->maps.tc_ids);
	struct tc_ids ids;
	uint64_t at;

	if (bpf_map_lookup_and_delete_elem(fd, &key, &ids))
		return -ENOENT;
	at = ps_clock_mono_to_unix_ns(ids.ts_ns);
	if ((at > x->start_unix_ns ? at - x->start_unix_ns : x->start_unix_ns - at) >
	    SAME_REQUEST_NS)
		return -ENOENT;
	out->version = 0;
	memcpy(out->trace_id, ids.trace_id, sizeof(out->trace_id));
	memcpy(out->parent_id, ids.span_id, sizeof(out->parent_id));
	out->flags = ids.flags;
	return 0;
}

void tc_propagate_stats(struct tc_propagate *tp, uint64_t out[TC_STAT_MAX])
{
	int fd = bpf_map__fd(tp->skel->maps.tc_stats);

	for (uint32_t i = 0; i < TC_STAT_MAX; i++)
		if (ps_bpf_percpu_sum(fd, i, &out[i]))
			out[i] = 0;
}

void tc_propagate_stop(struct tc_propagate *tp)
{
	if (!tp)
		return;
	/* sock_ops first: no socket joins the sockhash while it loses its programs. */
	bpf_link__destroy(tp->sockops);
	if (tp->msg_attached)
		bpf_prog_detach2(bpf_program__fd(tp->skel->progs.tc_inject),
				 bpf_map__fd(tp->skel->maps.tc_sockhash), BPF_SK_MSG_VERDICT);
	if (tp->skb_attached)
		bpf_prog_detach2(bpf_program__fd(tp->skel->progs.tc_pass),
				 bpf_map__fd(tp->skel->maps.tc_sockhash), BPF_SK_SKB_STREAM_VERDICT);
	bpf_link__destroy(tp->send);
	bpf_link__destroy(tp->recv);
	propagate_bpf__destroy(tp->skel);
	free(tp);
}
