/* Core side of the event stream. */
#ifndef PS_CORE_EVENTBUS_H
#define PS_CORE_EVENTBUS_H

#include <stdint.h>

#include <periscope/events.h>

struct ps_plugin;

/* A loader release hook: the plugin's subscriptions go when it stops. */
void ps_event_plugin_release(struct ps_plugin *p);
/* The event types the open sinks write, 1 << type each: what ps_event_wanted answers for. */
void ps_event_set_sinks_want(uint32_t type_mask);
/* Drops every subscription (daemon shutdown, tests). */
void ps_event_reset(void);

#endif
