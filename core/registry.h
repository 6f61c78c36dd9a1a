/*
 * The metric registry, core side. Plugins use <periscope/metrics.h>, which
 * works on the default registry; sinks read families and series directly
 * from these structs (everything runs on the loop thread).
 */
#ifndef PS_CORE_REGISTRY_H
#define PS_CORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <periscope/metrics.h>

#define PS_SERIES_OTHER "_other"

struct ps_series {
	char **values;             /* one per family label */
	double value;              /* counter, gauge */
	uint64_t *buckets;         /* histogram: n_bounds + 1 counts, NOT cumulative; last is +Inf */
	double sum;                /* histogram */
	uint64_t count;            /* histogram */
	/* What the previous flush showed, for rates (set by ps_registry_mark_flushed). */
	double flushed_value;
	uint64_t flushed_count;
	double flushed_sum;
	struct ps_series *hash_next;
};

struct ps_family {
	char *name;
	char *help;
	enum ps_metric_type type;
	char **labels;
	size_t n_labels;
	double *bounds;            /* histogram upper bounds, ascending, no +Inf */
	size_t n_bounds;
	struct ps_series **series; /* in creation order */
	size_t n_series, cap_series;
	struct ps_series **hash;   /* chained on hash_next */
	size_t n_hash;
	struct ps_registry *registry;
};

struct ps_registry {
	struct ps_family **families; /* in registration order */
	size_t n_families, cap_families;
	size_t max_series;           /* per family; 0 = unlimited */
	struct ps_metric *series_dropped; /* periscope_series_dropped_total{service_name,metric} */
};

struct ps_registry *ps_registry_new(size_t max_series_per_metric);
void ps_registry_free(struct ps_registry *r);
void ps_registry_set_max_series(struct ps_registry *r, size_t max);

/* The registry behind <periscope/metrics.h>. */
void ps_registry_set_default(struct ps_registry *r);
struct ps_registry *ps_registry_default(void);

/* The public calls, on an explicit registry (what the unit tests use). */
struct ps_metric *ps_registry_register(struct ps_registry *r, const struct ps_metric_desc *d);
struct ps_family *ps_metric_family(struct ps_metric *m);

/* Histogram quantile estimate (linear inside the bucket), NaN when empty. */
double ps_series_quantile(const struct ps_family *f, const struct ps_series *s, double q);

/* Records the current values as "what the last flush showed". */
void ps_registry_mark_flushed(struct ps_registry *r);

#endif
