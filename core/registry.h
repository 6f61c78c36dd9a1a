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

/*
 * Next to its explicit buckets (what Prometheus gets), every histogram series
 * keeps a high-resolution one for the percentiles the daemon itself shows and
 * alerts on: base-2 exponential buckets, PS_HIRES_PER_OCTAVE per doubling, so
 * bucket i holds [2^(i/16), 2^((i+1)/16)) and any estimate inside a bucket is
 * within 2^(1/16) - 1 = 4.4% of the truth, at any scale. Only the index range
 * a series has seen is allocated: a series answering in 1-2 ms holds 17
 * counts. Values <= 0 are counted apart; indexes clamp to
 * [PS_HIRES_INDEX_MIN, PS_HIRES_INDEX_MAX] (2^-64 .. 2^64).
 */
#define PS_HIRES_PER_OCTAVE 16
#define PS_HIRES_INDEX_MIN  (-64 * PS_HIRES_PER_OCTAVE)
#define PS_HIRES_INDEX_MAX  (64 * PS_HIRES_PER_OCTAVE - 1)

struct ps_hires {
	uint64_t *counts; /* n counts: bucket lo + k */
	int32_t lo;
	uint32_t n;
	uint64_t zero; /* observations <= 0 */
};

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
	struct ps_hires hires; /* histogram */
	double min, max;       /* histogram: of every observation */
	bool touched;	       /* written since the last ps_registry_expire() */
	uint64_t active_ns;    /* when last seen written by ps_registry_expire(); 0: not yet */
};

struct ps_family {
	char *name;
	char *help;
	enum ps_metric_type type;
	char **labels;
	size_t n_labels;
	double *bounds;            /* histogram upper bounds, ascending, no +Inf */
	size_t n_bounds;
	double *desc_bounds; /* what the plugin asked for (bounds may be configured over it) */
	size_t n_desc_bounds;
	unsigned long generation;  /* changes whenever one of its series goes */
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
	uint64_t ttl_ns; /* idle counters and histograms go after this; 0 = never */
	struct ps_bucket_override *overrides; /* configured explicit buckets, by family name */
	size_t n_overrides;
};

/* Explicit buckets configured for one histogram family (daemon.buckets). */
struct ps_bucket_override {
	char *family;
	double *bounds;
	size_t n;
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

/*
 * Histogram quantile estimate from the explicit buckets (linear inside the
 * bucket, what PromQL's histogram_quantile() says), NaN when empty.
 */
double ps_series_quantile(const struct ps_family *f, const struct ps_series *s, double q);

/*
 * Histogram quantile from the high-resolution buckets, within 4.4% of the
 * true one and never outside the smallest and largest observation. NaN when
 * empty. This is what the table shows.
 */
double ps_series_percentile(const struct ps_family *f, const struct ps_series *s, double q);

/* The high-resolution bucket of v > 0. */
int32_t ps_hires_index(double v);
/*
 * q-quantile of dense high-resolution counts, coarsened by 2^shift (shift 1:
 * 8 buckets per octave, bucket j holds [2^(j/8), 2^((j+1)/8))): counts[k] is
 * bucket lo + k, zero counts observations <= 0 (estimated as 0). Geometric
 * interpolation inside the bucket. NaN when empty.
 */
double ps_hires_quantile(const uint64_t *counts, int32_t lo, size_t n, uint64_t zero,
			 unsigned shift, double q);
/*
 * Adds h's counts to dense[0..n) in the layout above (coarsened by 2^shift,
 * dense[k] is bucket lo + k); buckets outside it land in the first or last.
 */
void ps_hires_add_to(const struct ps_hires *h, double *dense, int32_t lo, size_t n, unsigned shift);

/* Records the current values as "what the last flush showed". */
void ps_registry_mark_flushed(struct ps_registry *r);

/*
 * Series lifetime. Counters and histograms not written for the registry's
 * TTL leave it at a ps_registry_expire() call (now: a monotonic clock, or any
 * clock a test drives); gauges hold state and stay until removed, and so do
 * the daemon's own series (service_name "periscoped"). Returns
 * how many series went. Each family that lost one gets a new generation.
 */
void ps_registry_set_ttl(struct ps_registry *r, uint64_t ttl_ns);
size_t ps_registry_expire(struct ps_registry *r, uint64_t now_ns);

/*
 * Configured explicit buckets, replacing the whole set: a histogram family
 * named in v exports these bounds instead of its plugin's. A family that is
 * registered already and whose bounds change drops its series (they restart
 * from zero, as after a TTL expiry). 0, -EINVAL (bad bounds) or -ENOMEM.
 */
int ps_registry_set_buckets(struct ps_registry *r, const struct ps_bucket_override *v, size_t n);

#endif
