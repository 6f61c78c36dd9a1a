/* Core side of the event stream. */
#ifndef PS_CORE_EVENTBUS_H
#define PS_CORE_EVENTBUS_H

#include <periscope/events.h>

/* Drops every subscription (daemon shutdown, tests). */
void ps_event_reset(void);

#endif
