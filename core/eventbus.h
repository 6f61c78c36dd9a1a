/* Core side of the event stream. */
#ifndef PS_CORE_EVENTBUS_H
#define PS_CORE_EVENTBUS_H

#include <periscope/events.h>

struct ps_plugin;

/* A loader release hook: the plugin's subscriptions go when it stops. */
void ps_event_plugin_release(struct ps_plugin *p);
/* Drops every subscription (daemon shutdown, tests). */
void ps_event_reset(void);

#endif
