/*
 * periscope plugin API: the metric registry.
 *
 * A family is a metric name with a type, help text and label names; a series
 * is one set of label values. Every family's first label is "service_name".
 * Families are shared by name: registering the same name twice with the same
 * shape returns the same family (mysql and mongodb both feed
 * db_client_operation_duration_seconds). Past the per-metric series cap, new
 * label sets fold into one series whose values are all "_other", counted by
 * periscope_series_dropped_total{metric}.
 */
#ifndef PERISCOPE_METRICS_H
#define PERISCOPE_METRICS_H

#include <periscope/api.h>

#include <stddef.h>

enum ps_metric_type {
	PS_METRIC_COUNTER,
	PS_METRIC_GAUGE,
	PS_METRIC_HISTOGRAM,
};

struct ps_metric_desc {
	const char *name;            /* Prometheus name, counters end in _total */
	const char *help;
	enum ps_metric_type type;
	const char *const *labels;   /* NULL-terminated; labels[0] is "service_name" */
	const double *buckets;       /* histograms: upper bounds, ascending; NULL = OTel default */
	size_t n_buckets;
};

struct ps_metric;

/* OTel's default explicit bucket boundaries for durations, in seconds. */
PS_API extern const double ps_buckets_duration[];
PS_API extern const size_t ps_buckets_duration_len;

/* NULL with errno EINVAL on a bad desc or EEXIST when name exists with another shape. */
PS_API struct ps_metric *ps_metric_register(const struct ps_metric_desc *desc);

/* values: one per label, in the order of desc->labels. 0 or -errno. */
PS_API int ps_metric_add(struct ps_metric *m, const char *const *values, double v);     /* counter, gauge */
PS_API int ps_metric_set(struct ps_metric *m, const char *const *values, double v);     /* gauge */
PS_API int ps_metric_observe(struct ps_metric *m, const char *const *values, double v); /* histogram */
/* Drops a series: gauges of things that ended disappear from the output. */
PS_API int ps_metric_remove(struct ps_metric *m, const char *const *values);

/*
 * Hot paths: resolve a label set once, then observe into its series without
 * hashing and comparing the label values again. A series handle stays valid
 * until that series is removed (or its registry freed), which also happens to
 * counters and histograms that sat idle past daemon.series_ttl;
 * ps_metric_family_generation() changes whenever one of that family's series
 * goes (ps_metric_generation() whenever any does), so a cache of handles is
 * dropped when the generation it was filled in is no longer the current one.
 */
struct ps_series;

/*
 * The series of values (created, empty, when new). NULL with errno ENOSPC when
 * the label set is new and past max_series_per_metric: ps_metric_observe then
 * folds it into _other and counts it, as always. EINVAL, ENOMEM otherwise.
 */
PS_API struct ps_series *ps_metric_series(struct ps_metric *m, const char *const *values);
/* With s = ps_metric_series(m, values): exactly ps_metric_observe(m, values, v). */
PS_API int ps_series_observe(struct ps_metric *m, struct ps_series *s, double v);
/* Changes whenever a series is removed, from any metric. */
PS_API unsigned long ps_metric_generation(void);
/*
 * Changes whenever a series of m is removed (by ps_metric_remove, or because
 * it sat idle past daemon.series_ttl). A cache of m's handles only needs
 * dropping when this changes: another family's expiry leaves it alone.
 * Values are never reused, across families too. 0 for a NULL m.
 */
PS_API unsigned long ps_metric_family_generation(const struct ps_metric *m);

#endif
