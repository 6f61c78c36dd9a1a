/*
 * Alert rules: conditions over the registry, evaluated at every flush over a
 * sliding window of flush snapshots. Each rule keeps state per series group
 * (pending -> firing -> resolved) and says what changed as PS_EVENT_ALERT
 * notices; periscope_alerts_firing{alert} counts the groups firing.
 */
#ifndef PS_CORE_ALERTS_H
#define PS_CORE_ALERTS_H

#include <stdint.h>

#include <periscope/config.h>

#include "registry.h"

struct ps_alert_rules;

/* Parses the `alerts:` sequence (NULL or empty: no rules). 0 or -EINVAL with err filled. */
int ps_alerts_parse(const struct ps_cfg_node *seq, struct ps_alert_rules **out,
		    struct ps_cfg_error *err);
void ps_alerts_free(struct ps_alert_rules *rules);

/* Rules of the same name in old keep their per-group state in fresh (SIGHUP reload). */
void ps_alerts_adopt_state(struct ps_alert_rules *fresh, const struct ps_alert_rules *old);

/*
 * The registry is as new as the rules (the daemon just started): what its
 * series gain before the first flush is of known age, counted from now, not
 * taken as the baseline as after a reload.
 */
void ps_alerts_start(struct ps_alert_rules *rules, uint64_t now_unix_ns);

/*
 * Evaluates every rule against reg at a flush: emits PS_EVENT_ALERT notices
 * (ps_event_emit) and sets periscope_alerts_firing{service_name="periscoped",alert}
 * in reg. Call before the sinks flush.
 */
void ps_alerts_evaluate(struct ps_alert_rules *rules, struct ps_registry *reg, uint64_t now_unix_ns);

#endif
