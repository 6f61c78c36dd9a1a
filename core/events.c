/* The core event stream: synchronous fan-out to subscribers on the loop thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventbus.h"

struct subscription {
	const struct ps_plugin *owner; /* NULL: the core */
	ps_event_fn fn;
	void *ctx;
	struct subscription *next;
};

static struct subscription *subscribers[PS_EVENT_TYPE_MAX];
/* Event types the open sinks write (the daemon's own subscription takes every type). */
static uint32_t sinks_want;

void ps_event_set_sinks_want(uint32_t type_mask)
{
	sinks_want = type_mask;
}

bool ps_event_wanted(enum ps_event_type type)
{
	if (type <= 0 || type >= PS_EVENT_TYPE_MAX)
		return false;
	if (sinks_want & (1u << type))
		return true;
	for (struct subscription *s = subscribers[type]; s; s = s->next)
		if (s->owner)
			return true; /* a plugin's */
	return false;
}

int ps_event_subscribe(struct ps_plugin *owner, enum ps_event_type type, ps_event_fn fn,
		       void *ctx)
{
	struct subscription *s, **tail;

	if (type <= 0 || type >= PS_EVENT_TYPE_MAX || !fn)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->owner = owner;
	s->fn = fn;
	s->ctx = ctx;
	/* Append: subscribers see events in the order they subscribed. */
	for (tail = &subscribers[type]; *tail; tail = &(*tail)->next)
		;
	*tail = s;
	return 0;
}

void ps_event_unsubscribe(enum ps_event_type type, ps_event_fn fn, void *ctx)
{
	if (type <= 0 || type >= PS_EVENT_TYPE_MAX)
		return;
	for (struct subscription **s = &subscribers[type]; *s; s = &(*s)->next) {
		if ((*s)->fn == fn && (*s)->ctx == ctx) {
			struct subscription *gone = *s;

			*s = gone->next;
			free(gone);
			return;
		}
	}
}

void ps_event_plugin_release(struct ps_plugin *p)
{
	for (int type = 1; type < PS_EVENT_TYPE_MAX; type++) {
		struct subscription **s = &subscribers[type];

		while (*s) {
			struct subscription *gone = *s;

			if (gone->owner != p) {
				s = &gone->next;
				continue;
			}
			*s = gone->next;
			free(gone);
		}
	}
}

void ps_event_emit(const struct ps_event *ev)
{
	if (!ev || ev->type <= 0 || ev->type >= PS_EVENT_TYPE_MAX)
		return;
	for (struct subscription *s = subscribers[ev->type]; s; s = s->next)
		s->fn(ev, s->ctx);
}

void ps_event_reset(void)
{
	for (int t = 0; t < PS_EVENT_TYPE_MAX; t++) {
		while (subscribers[t]) {
			struct subscription *next = subscribers[t]->next;

			free(subscribers[t]);
			subscribers[t] = next;
		}
	}
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Unix time is monotonic time plus an offset that moves only when the wall clock is
 * stepped. Reading both clocks on every call cost two vDSO calls per timestamp, four
 * per exchange; the offset is re-read instead whenever the time asked about is more
 * than OFFSET_FRESH_NS past the last reading. Timestamps come from events drained
 * moments after they happened, so a step shows within that much of traffic, and an
 * idle daemon re-reads on its first event.
 */
#define OFFSET_FRESH_NS 1000000ull

static uint64_t offset_read_at; /* monotonic ns of the last reading; 0: never */
static uint64_t offset_ns;	/* realtime - monotonic then, modulo 2^64 */

uint64_t ps_clock_mono_to_unix_ns(uint64_t mono_ns)
{
	if (!offset_read_at || mono_ns > offset_read_at + OFFSET_FRESH_NS) {
		offset_read_at = clock_ns(CLOCK_MONOTONIC);
		offset_ns = clock_ns(CLOCK_REALTIME) - offset_read_at;
	}
	return mono_ns + offset_ns;
}

const char *ps_endpoint_addr_str(const struct ps_endpoint *ep, char *buf, unsigned len)
{
	if (!ep || !inet_ntop(ep->family == AF_INET6 ? AF_INET6 : AF_INET, ep->addr,
			      buf, len)) {
		if (len)
			buf[0] = '\0';
	}
	return buf;
}
