/*
 * periscope plugin API: the core event stream.
 *
 * Plugins publish what they saw (a closed TCP flow, a decoded exchange);
 * sinks and other plugins subscribe. Delivery is synchronous on the loop
 * thread, so an event and the memory it points to only live for the call.
 */
#ifndef PERISCOPE_EVENTS_H
#define PERISCOPE_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

enum ps_event_type {
	PS_EVENT_FLOW = 1, /* struct ps_flow_record: one per closed or failed TCP connection */
	PS_EVENT_TYPE_MAX,
};

enum ps_direction {
	PS_DIR_INBOUND = 0,
	PS_DIR_OUTBOUND = 1,
};

struct ps_endpoint {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network order; IPv4 in the first 4 bytes */
	uint16_t port;     /* host order */
};

struct ps_flow_record {
	uint32_t pid;
	const char *service_name;
	enum ps_direction direction;
	struct ps_endpoint local, remote;
	uint64_t start_unix_ns, end_unix_ns;
	uint64_t bytes_sent, bytes_received;
	uint32_t srtt_us;
	uint32_t retransmits;
	uint32_t resets;
	bool failed;       /* the handshake never completed */
};

struct ps_event {
	enum ps_event_type type;
	const char *plugin;
	union {
		const struct ps_flow_record *flow;
	};
};

typedef void (*ps_event_fn)(const struct ps_event *ev, void *ctx);

/* 0 or -errno. */
int ps_event_subscribe(enum ps_event_type type, ps_event_fn fn, void *ctx);
void ps_event_unsubscribe(enum ps_event_type type, ps_event_fn fn, void *ctx);
void ps_event_emit(const struct ps_event *ev);

/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) to nanoseconds since the Unix epoch. */
uint64_t ps_clock_mono_to_unix_ns(uint64_t mono_ns);
/* Formats an endpoint address ("10.0.0.1", "::1"); returns buf. */
const char *ps_endpoint_addr_str(const struct ps_endpoint *ep, char *buf, unsigned len);

#endif
