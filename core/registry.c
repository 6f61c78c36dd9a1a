/*
 * The metric registry: families by name, series by label values.
 *
 * Families are few and looked up only at registration, so they live in a
 * plain array. Series are many and looked up on every observation, so each
 * family keeps a chained hash table over its label values next to the array
 * that preserves creation order for the sinks.
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <periscope/log.h>

#include "registry.h"

#define SUBSYS "registry"
#define SERVICE_LABEL "service_name"
#define DROPPED_NAME "periscope_series_dropped_total"
#define DROPPED_HELP "Observations folded into the _other series past max_series_per_metric"
#define DROPPED_SERVICE "periscoped"
#define HASH_INITIAL 16
/* Expiring this many series at once is worth handing the memory back to the system. */
#define TRIM_AFTER 256

/*
 * OTel's bounds from 5 ms to 10 s, extended down to 10 us in 1-2.5-5 steps:
 * services on a loopback or a LAN answer in microseconds, and everything
 * below 5 ms used to land in the first bucket.
 */
/* clang-format off */
const double ps_buckets_duration[] = {
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
	0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
};
/* clang-format on */
const size_t ps_buckets_duration_len = sizeof(ps_buckets_duration) / sizeof(ps_buckets_duration[0]);

static struct ps_registry *default_registry;
/* Removals so far, in every registry: what invalidates cached series handles. */
static unsigned long series_generation = 1;

/* ---- validation ---------------------------------------------------------------------------- */

static bool is_alpha_(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool valid_metric_name(const char *s)
{
	if (!s || !(is_alpha_(*s) || *s == ':'))
		return false;
	for (s++; *s; s++)
		if (!is_alpha_(*s) && !is_digit(*s) && *s != ':')
			return false;
	return true;
}

/* Names starting with "__" are reserved by Prometheus for internal use. */
static bool valid_label_name(const char *s)
{
	if (!s || !is_alpha_(*s) || strncmp(s, "__", 2) == 0)
		return false;
	for (s++; *s; s++)
		if (!is_alpha_(*s) && !is_digit(*s))
			return false;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static size_t count_labels(const char *const *labels)
{
	size_t n = 0;

	while (labels[n])
		n++;
	return n;
}

static bool valid_labels(const char *name, const char *const *labels)
{
	size_t n;

	if (!labels || !labels[0] || strcmp(labels[0], SERVICE_LABEL) != 0) {
		ps_warn(SUBSYS, "%s: the first label must be \"" SERVICE_LABEL "\"", name);
		return false;
	}
	n = count_labels(labels);
	for (size_t i = 0; i < n; i++) {
		if (!valid_label_name(labels[i])) {
			ps_warn(SUBSYS, "%s: invalid label name \"%s\"", name, labels[i]);
			return false;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(labels[i], labels[j]) == 0) {
				ps_warn(SUBSYS, "%s: duplicate label \"%s\"", name, labels[i]);
				return false;
			}
		}
	}
	return true;
}

static bool valid_bounds(const char *name, const double *b, size_t n)
{
	if (n == 0) {
		ps_warn(SUBSYS, "%s: a histogram needs at least one bucket bound", name);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(b[i]) || (i > 0 && b[i] <= b[i - 1])) {
			ps_warn(SUBSYS, "%s: bucket bounds must be finite and strictly ascending", name);
			return false;
		}
	}
	return true;
}

static bool valid_desc(const struct ps_metric_desc *d)
{
	if (!d)
		return false;
	if (!valid_metric_name(d->name)) {
		ps_warn(SUBSYS, "invalid metric name \"%s\"", d->name ? d->name : "(null)");
		return false;
	}
	switch (d->type) {
	case PS_METRIC_COUNTER:
		if (!ends_with(d->name, "_total")) {
			ps_warn(SUBSYS, "%s: counter names end in _total", d->name);
			return false;
		}
		break;
	case PS_METRIC_GAUGE:
		break;
	case PS_METRIC_HISTOGRAM:
		if (d->buckets && !valid_bounds(d->name, d->buckets, d->n_buckets))
			return false;
		break;
	default:
		ps_warn(SUBSYS, "%s: unknown metric type %d", d->name, (int)d->type);
		return false;
	}
	return valid_labels(d->name, d->labels);
}

/* ---- families ------------------------------------------------------------------------------ */

static void desc_bounds(const struct ps_metric_desc *d, const double **b, size_t *n)
{
	if (d->type != PS_METRIC_HISTOGRAM) {
		*b = NULL;
		*n = 0;
	} else if (d->buckets) {
		*b = d->buckets;
		*n = d->n_buckets;
	} else {
		*b = ps_buckets_duration;
		*n = ps_buckets_duration_len;
	}
}

static const struct ps_bucket_override *find_override(const struct ps_registry *r, const char *name)
{
	for (size_t i = 0; r && i < r->n_overrides; i++)
		if (strcmp(r->overrides[i].family, name) == 0)
			return &r->overrides[i];
	return NULL;
}

static bool same_bounds(const double *a, size_t na, const double *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static double *copy_bounds(const double *b, size_t n)
{
	double *out = malloc((n ? n : 1) * sizeof(*out));

	if (out && n)
		memcpy(out, b, n * sizeof(*out));
	return out;
}

static bool same_shape(const struct ps_family *f, const struct ps_metric_desc *d)
{
	const double *bounds;
	size_t n_bounds;

	if (f->type != d->type || f->n_labels != count_labels(d->labels))
		return false;
	for (size_t i = 0; i < f->n_labels; i++)
		if (strcmp(f->labels[i], d->labels[i]) != 0)
			return false;
	desc_bounds(d, &bounds, &n_bounds);
	return same_bounds(f->desc_bounds, f->n_desc_bounds, bounds, n_bounds);
}

static struct ps_family *find_family(const struct ps_registry *r, const char *name)
{
	for (size_t i = 0; i < r->n_families; i++)
		if (strcmp(r->families[i]->name, name) == 0)
			return r->families[i];
	return NULL;
}

static void series_free(struct ps_series *s, size_t n_values)
{
	if (!s)
		return;
	if (s->values)
		for (size_t i = 0; i < n_values; i++)
			free(s->values[i]);
	free(s->values);
	free(s->buckets);
	free(s->hires.counts);
	free(s);
}

static void family_free(struct ps_family *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_series; i++)
		series_free(f->series[i], f->n_labels);
	free(f->series);
	free(f->hash);
	if (f->labels)
		for (size_t i = 0; i < f->n_labels; i++)
			free(f->labels[i]);
	free(f->labels);
	free(f->bounds);
	free(f->desc_bounds);
	free(f->help);
	free(f->name);
	free(f);
}

static struct ps_family *family_new(struct ps_registry *r, const struct ps_metric_desc *d)
{
	struct ps_family *f = calloc(1, sizeof(*f));
	const double *bounds;

	if (!f)
		return NULL;
	f->registry = r;
	f->type = d->type;
	f->name = strdup(d->name);
	f->help = strdup(d->help ? d->help : "");
	f->n_labels = count_labels(d->labels);
	f->labels = calloc(f->n_labels, sizeof(*f->labels));
	if (!f->name || !f->help || !f->labels)
		goto fail;
	for (size_t i = 0; i < f->n_labels; i++)
		if (!(f->labels[i] = strdup(d->labels[i])))
			goto fail;
	desc_bounds(d, &bounds, &f->n_desc_bounds);
	if (f->n_desc_bounds) {
		const struct ps_bucket_override *o = find_override(r, d->name);

		f->desc_bounds = copy_bounds(bounds, f->n_desc_bounds);
		f->n_bounds = o ? o->n : f->n_desc_bounds;
		f->bounds = copy_bounds(o ? o->bounds : bounds, f->n_bounds);
		if (!f->desc_bounds || !f->bounds)
			goto fail;
	}
	f->generation = ++series_generation;
	f->n_hash = HASH_INITIAL;
	f->hash = calloc(f->n_hash, sizeof(*f->hash));
	if (!f->hash)
		goto fail;
	return f;

fail:
	family_free(f);
	return NULL;
}

static int append_family(struct ps_registry *r, struct ps_family *f)
{
	if (r->n_families == r->cap_families) {
		size_t cap = r->cap_families ? r->cap_families * 2 : 16;
		struct ps_family **grown = realloc(r->families, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		r->families = grown;
		r->cap_families = cap;
	}
	r->families[r->n_families++] = f;
	return 0;
}

struct ps_metric *ps_registry_register(struct ps_registry *r, const struct ps_metric_desc *d)
{
	struct ps_family *f;

	if (!r || !valid_desc(d)) {
		errno = EINVAL;
		return NULL;
	}
	f = find_family(r, d->name);
	if (f) {
		if (same_shape(f, d))
			return (struct ps_metric *)f;
		ps_warn(SUBSYS, "%s: already registered with another type, labels or buckets",
			d->name);
		errno = EEXIST;
		return NULL;
	}
	f = family_new(r, d);
	if (!f || append_family(r, f) < 0) {
		family_free(f);
		ps_error(SUBSYS, "%s: out of memory", d->name);
		errno = ENOMEM;
		return NULL;
	}
	return (struct ps_metric *)f;
}

struct ps_family *ps_metric_family(struct ps_metric *m)
{
	return (struct ps_family *)m;
}

/* ---- series lookup ------------------------------------------------------------------------- */

static const char *value_or_empty(const char *v)
{
	return v ? v : "";
}

/* FNV-1a over the values, each followed by 0xff so ("ab","") and ("a","b") differ. */
static uint64_t hash_values(const char *const *values, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)value_or_empty(values[i]); *p;
		     p++) {
			h ^= *p;
			h *= 1099511628211ULL;
		}
		h ^= 0xff;
		h *= 1099511628211ULL;
	}
	return h;
}

static bool series_matches(const struct ps_series *s, const char *const *values, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s->values[i], value_or_empty(values[i])) != 0)
			return false;
	return true;
}

static struct ps_series **hash_slot(struct ps_family *f, const char *const *values)
{
	return &f->hash[hash_values(values, f->n_labels) & (f->n_hash - 1)];
}

static struct ps_series *find_series(struct ps_family *f, const char *const *values)
{
	for (struct ps_series *s = *hash_slot(f, values); s; s = s->hash_next)
		if (series_matches(s, values, f->n_labels))
			return s;
	return NULL;
}

/* Keeps the load factor at most 1; on failure the table just gets longer chains. */
static void maybe_grow_hash(struct ps_family *f)
{
	size_t n = f->n_hash * 2;
	struct ps_series **grown;

	if (f->n_series + 1 <= f->n_hash)
		return;
	grown = calloc(n, sizeof(*grown));
	if (!grown)
		return;
	free(f->hash);
	f->hash = grown;
	f->n_hash = n;
	for (size_t i = 0; i < f->n_series; i++) {
		struct ps_series *s = f->series[i];
		struct ps_series **slot = hash_slot(f, (const char *const *)s->values);

		s->hash_next = *slot;
		*slot = s;
	}
}

static struct ps_series *series_new(const struct ps_family *f, const char *const *values)
{
	struct ps_series *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->values = calloc(f->n_labels, sizeof(*s->values));
	if (!s->values)
		goto fail;
	for (size_t i = 0; i < f->n_labels; i++)
		if (!(s->values[i] = strdup(value_or_empty(values[i]))))
			goto fail;
	if (f->type == PS_METRIC_HISTOGRAM) {
		s->buckets = calloc(f->n_bounds + 1, sizeof(*s->buckets));
		if (!s->buckets)
			goto fail;
	}
	return s;

fail:
	series_free(s, f->n_labels);
	return NULL;
}

static struct ps_series *create_series(struct ps_family *f, const char *const *values)
{
	struct ps_series *s, **slot;

	if (f->n_series == f->cap_series) {
		size_t cap = f->cap_series ? f->cap_series * 2 : 8;
		struct ps_series **grown = realloc(f->series, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		f->series = grown;
		f->cap_series = cap;
	}
	s = series_new(f, values);
	if (!s)
		return NULL;
	maybe_grow_hash(f); /* before appending: a rehash must not chain s in twice */
	f->series[f->n_series++] = s;
	slot = hash_slot(f, values);
	s->hash_next = *slot;
	*slot = s;
	return s;
}

/* The dropped counter is exempt from the cap: folding it would recurse. */
static bool exempt_from_cap(const struct ps_family *f)
{
	return strcmp(f->name, DROPPED_NAME) == 0;
}

static const char *const *other_values(const struct ps_family *f, const char **buf)
{
	for (size_t i = 0; i < f->n_labels; i++)
		buf[i] = PS_SERIES_OTHER;
	return buf;
}

static void count_dropped(struct ps_registry *r, const struct ps_family *f)
{
	static const char *const labels[] = { SERVICE_LABEL, "metric", NULL };
	const struct ps_metric_desc desc = {
		.name = DROPPED_NAME,
		.help = DROPPED_HELP,
		.type = PS_METRIC_COUNTER,
		.labels = labels,
	};
	const char *values[] = { DROPPED_SERVICE, f->name };
	struct ps_family *dropped;
	struct ps_series *s;

	if (!r->series_dropped)
		r->series_dropped = ps_registry_register(r, &desc);
	dropped = ps_metric_family(r->series_dropped);
	if (!dropped)
		return;
	s = find_series(dropped, values);
	if (!s)
		s = create_series(dropped, values);
	if (s)
		s->value += 1;
}

/* Past the cap every new label set lands in the family's single _other series. */
static struct ps_series *fold_into_other(struct ps_family *f)
{
	const char *buf[f->n_labels];
	const char *const *values = other_values(f, buf);
	struct ps_series *s = find_series(f, values);

	if (!s) {
		ps_warn(SUBSYS, "%s: %zu series reached max_series_per_metric; new label sets "
				"fold into \"" PS_SERIES_OTHER "\"",
			f->name, f->registry->max_series);
		s = create_series(f, values);
		if (!s)
			return NULL;
	}
	count_dropped(f->registry, f);
	return s;
}

static bool cap_reached(struct ps_family *f)
{
	const char *buf[f->n_labels];
	size_t max = f->registry ? f->registry->max_series : 0;
	size_t counted = f->n_series;

	if (max == 0 || exempt_from_cap(f) || f->n_series < max)
		return false;
	if (find_series(f, other_values(f, buf)))
		counted--;
	return counted >= max;
}

static struct ps_series *get_series(struct ps_family *f, const char *const *values)
{
	struct ps_series *s = find_series(f, values);

	if (s)
		return s;
	if (cap_reached(f))
		return fold_into_other(f);
	return create_series(f, values);
}

/* ---- observations -------------------------------------------------------------------------- */

static int resolve(struct ps_metric *m, const char *const *values, struct ps_series **out)
{
	struct ps_family *f = ps_metric_family(m);

	if (!f || !values)
		return -EINVAL;
	*out = get_series(f, values);
	return *out ? 0 : -ENOMEM;
}

int ps_metric_add(struct ps_metric *m, const char *const *values, double v)
{
	struct ps_family *f = ps_metric_family(m);
	struct ps_series *s;
	int err;

	if (!f || !isfinite(v))
		return -EINVAL;
	if (f->type == PS_METRIC_COUNTER && v < 0)
		return -EINVAL;
	if (f->type != PS_METRIC_COUNTER && f->type != PS_METRIC_GAUGE)
		return -EINVAL;
	err = resolve(m, values, &s);
	if (err)
		return err;
	s->value += v;
	s->touched = true;
	return 0;
}

int ps_metric_set(struct ps_metric *m, const char *const *values, double v)
{
	struct ps_family *f = ps_metric_family(m);
	struct ps_series *s;
	int err;

	if (!f || f->type != PS_METRIC_GAUGE || !isfinite(v))
		return -EINVAL;
	err = resolve(m, values, &s);
	if (err)
		return err;
	s->value = v;
	s->touched = true;
	return 0;
}

/* Index of the first bound >= v, or n_bounds (the +Inf slot). */
static size_t bucket_index(const struct ps_family *f, double v)
{
	size_t lo = 0, hi = f->n_bounds;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->bounds[mid] >= v)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* ---- high-resolution buckets --------------------------------------------------------------- */

/* 2^(k/16) for k = 0..16: the bucket edges inside one octave. */
static const double octave_edges[PS_HIRES_PER_OCTAVE + 1] = {
	1.0,
	1.0442737824274138,
	1.0905077326652577,
	1.1387886347566916,
	1.189207115002721,
	1.241857812073484,
	1.2968395546510096,
	1.3542555469368927,
	1.4142135623730951,
	1.4768261459394993,
	1.5422108254079407,
	1.6104903319492543,
	1.681792830507429,
	1.7562521603732995,
	1.8340080864093424,
	1.9152065613971474,
	2.0,
};

int32_t ps_hires_index(double v)
{
	int e, lo = 0, hi = PS_HIRES_PER_OCTAVE - 1;
	double x = 2 * frexp(v, &e); /* v = x * 2^(e-1), x in [1, 2) */
	int32_t i;

	/* The last edge at or below x: a binary search over 16 values. */
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;

		if (octave_edges[mid] <= x)
			lo = mid;
		else
			hi = mid - 1;
	}
	if (e - 1 > 64)
		return PS_HIRES_INDEX_MAX;
	if (e - 1 < -64)
		return PS_HIRES_INDEX_MIN;
	i = (int32_t)(e - 1) * PS_HIRES_PER_OCTAVE + lo;
	return i > PS_HIRES_INDEX_MAX ? PS_HIRES_INDEX_MAX : i;
}

/* 2^(x / per_octave) without a pow() for whole buckets. */
static double hires_edge(double x, unsigned per_octave)
{
	return exp2(x / (double)per_octave);
}

static int32_t floor_div(int32_t a, int32_t b)
{
	return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Makes room for index i; slack on the side it grew keeps reallocations rare. */
static int hires_reserve(struct ps_hires *h, int32_t i)
{
	int32_t lo = h->lo, hi = h->lo + (int32_t)h->n; /* [lo, hi) */
	uint64_t *grown;

	if (h->n && i >= lo && i < hi)
		return 0;
	if (!h->n) {
		lo = i - 2;
		hi = i + 3;
	} else if (i < lo) {
		lo = i - 4;
	} else {
		hi = i + 5;
	}
	if (lo < PS_HIRES_INDEX_MIN)
		lo = PS_HIRES_INDEX_MIN;
	if (hi > PS_HIRES_INDEX_MAX + 1)
		hi = PS_HIRES_INDEX_MAX + 1;
	grown = calloc((size_t)(hi - lo), sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	if (h->n)
		memcpy(grown + (h->lo - lo), h->counts, h->n * sizeof(*grown));
	free(h->counts);
	h->counts = grown;
	h->lo = lo;
	h->n = (uint32_t)(hi - lo);
	return 0;
}

/* Out of memory: the value is still in the explicit buckets, count and sum. */
static void hires_add(struct ps_hires *h, double v)
{
	int32_t i;

	if (!(v > 0)) {
		h->zero++;
		return;
	}
	i = ps_hires_index(v);
	if (hires_reserve(h, i) == 0)
		h->counts[i - h->lo]++;
}

double ps_hires_quantile(const uint64_t *counts, int32_t lo, size_t n, uint64_t zero,
			 unsigned shift, double q)
{
	unsigned per_octave = PS_HIRES_PER_OCTAVE >> shift;
	uint64_t total = zero, below = zero;
	double rank;

	for (size_t k = 0; k < n; k++)
		total += counts[k];
	if (total == 0 || isnan(q))
		return NAN;
	if (q < 0)
		return -INFINITY;
	if (q > 1)
		return INFINITY;
	rank = q * (double)total;
	if (zero > 0 && rank <= (double)zero)
		return 0;
	for (size_t k = 0; k < n; k++) {
		double frac;

		if (!counts[k] || (double)(below + counts[k]) < rank) {
			below += counts[k];
			continue;
		}
		frac = (rank - (double)below) / (double)counts[k];
		if (frac < 0)
			frac = 0;
		return hires_edge((double)(lo + (int32_t)k) + frac, per_octave);
	}
	/* Rounding left the rank past the last count: the top of the last bucket. */
	for (size_t k = n; k-- > 0;)
		if (counts[k])
			return hires_edge((double)(lo + (int32_t)k + 1), per_octave);
	return 0;
}

void ps_hires_add_to(const struct ps_hires *h, double *dense, int32_t lo, size_t n, unsigned shift)
{
	if (!n)
		return;
	for (uint32_t k = 0; k < h->n; k++) {
		int32_t j;

		if (!h->counts[k])
			continue;
		j = floor_div(h->lo + (int32_t)k, 1 << shift) - lo;
		if (j < 0)
			j = 0;
		if ((size_t)j >= n)
			j = (int32_t)n - 1;
		dense[j] += (double)h->counts[k];
	}
}

static void histogram_add(const struct ps_family *f, struct ps_series *s, double v)
{
	s->buckets[bucket_index(f, v)]++;
	hires_add(&s->hires, v);
	if (s->count == 0 || v < s->min)
		s->min = v;
	if (s->count == 0 || v > s->max)
		s->max = v;
	s->sum += v;
	s->count++;
	s->touched = true;
}

int ps_metric_observe(struct ps_metric *m, const char *const *values, double v)
{
	struct ps_family *f = ps_metric_family(m);
	struct ps_series *s;
	int err;

	if (!f || f->type != PS_METRIC_HISTOGRAM || !isfinite(v))
		return -EINVAL;
	err = resolve(m, values, &s);
	if (err)
		return err;
	histogram_add(f, s, v);
	return 0;
}

/* ---- series handles ------------------------------------------------------------------------ */

/*
 * An existing series is what every observation of its labels lands in, cap or
 * not; a new one is created only below the cap. Folding is left to
 * ps_metric_observe, which counts every folded observation.
 */
struct ps_series *ps_metric_series(struct ps_metric *m, const char *const *values)
{
	struct ps_family *f = ps_metric_family(m);
	struct ps_series *s;

	if (!f || !values) {
		errno = EINVAL;
		return NULL;
	}
	s = find_series(f, values);
	if (s)
		return s;
	if (cap_reached(f)) {
		errno = ENOSPC;
		return NULL;
	}
	s = create_series(f, values);
	if (!s)
		errno = ENOMEM;
	return s;
}

int ps_series_observe(struct ps_metric *m, struct ps_series *s, double v)
{
	struct ps_family *f = ps_metric_family(m);

	if (!f || !s || f->type != PS_METRIC_HISTOGRAM || !isfinite(v))
		return -EINVAL;
	histogram_add(f, s, v);
	return 0;
}

unsigned long ps_metric_generation(void)
{
	return series_generation;
}

unsigned long ps_metric_family_generation(const struct ps_metric *m)
{
	return m ? ((const struct ps_family *)m)->generation : 0;
}

static void unlink_from_hash(struct ps_family *f, struct ps_series *s)
{
	struct ps_series **pp = hash_slot(f, (const char *const *)s->values);

	for (; *pp; pp = &(*pp)->hash_next) {
		if (*pp == s) {
			*pp = s->hash_next;
			return;
		}
	}
}

int ps_metric_remove(struct ps_metric *m, const char *const *values)
{
	struct ps_family *f = ps_metric_family(m);
	struct ps_series *s;
	size_t i;

	if (!f || !values)
		return -EINVAL;
	s = find_series(f, values);
	if (!s)
		return -ENOENT;
	unlink_from_hash(f, s);
	f->generation = ++series_generation;
	for (i = 0; i < f->n_series && f->series[i] != s; i++)
		;
	memmove(&f->series[i], &f->series[i + 1], (f->n_series - i - 1) * sizeof(*f->series));
	f->n_series--;
	series_free(s, f->n_labels);
	return 0;
}

/* ---- the plugin API on the default registry ------------------------------------------------ */

void ps_registry_set_default(struct ps_registry *r)
{
	default_registry = r;
}

struct ps_registry *ps_registry_default(void)
{
	return default_registry;
}

struct ps_metric *ps_metric_register(const struct ps_metric_desc *desc)
{
	if (!default_registry) {
		ps_error(SUBSYS, "%s: no registry yet", desc && desc->name ? desc->name : "(null)");
		errno = EINVAL;
		return NULL;
	}
	return ps_registry_register(default_registry, desc);
}

/* ---- registry lifetime, quantiles, flush bookkeeping --------------------------------------- */

struct ps_registry *ps_registry_new(size_t max_series_per_metric)
{
	struct ps_registry *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->max_series = max_series_per_metric;
	return r;
}

void ps_registry_free(struct ps_registry *r)
{
	if (!r)
		return;
	if (default_registry == r)
		default_registry = NULL;
	series_generation++; /* its series go with it */
	for (size_t i = 0; i < r->n_families; i++)
		family_free(r->families[i]);
	free(r->families);
	for (size_t i = 0; i < r->n_overrides; i++) {
		free(r->overrides[i].family);
		free(r->overrides[i].bounds);
	}
	free(r->overrides);
	free(r);
}

void ps_registry_set_max_series(struct ps_registry *r, size_t max)
{
	if (r)
		r->max_series = max;
}

/*
 * What Prometheus' histogram_quantile() computes from the same buckets, so the
 * stdout table and a PromQL query over the textfile agree.
 */
double ps_series_quantile(const struct ps_family *f, const struct ps_series *s, double q)
{
	uint64_t below = 0, in_bucket;
	double rank, lower, upper;
	size_t b;

	if (!f || !s || f->type != PS_METRIC_HISTOGRAM || s->count == 0 || isnan(q) ||
	    f->n_bounds == 0)
		return NAN;
	if (q < 0)
		return -INFINITY;
	if (q > 1)
		return INFINITY;
	rank = q * (double)s->count;
	for (b = 0; b < f->n_bounds; b++) {
		if ((double)(below + s->buckets[b]) >= rank)
			break;
		below += s->buckets[b];
	}
	if (b == f->n_bounds)
		return f->bounds[f->n_bounds - 1];
	upper = f->bounds[b];
	if (b == 0 && upper <= 0)
		return upper;
	lower = b == 0 ? 0 : f->bounds[b - 1];
	in_bucket = s->buckets[b];
	if (in_bucket == 0)
		return lower;
	return lower + (upper - lower) * ((rank - (double)below) / (double)in_bucket);
}

double ps_series_percentile(const struct ps_family *f, const struct ps_series *s, double q)
{
	const struct ps_hires *h;
	double v;

	if (!f || !s || f->type != PS_METRIC_HISTOGRAM || s->count == 0 || isnan(q))
		return NAN;
	h = &s->hires;
	/* No high-resolution counts at all: they ran out of memory. */
	if (h->zero + (h->n ? 1 : 0) == 0)
		return ps_series_quantile(f, s, q);
	v = ps_hires_quantile(h->counts, h->lo, h->n, h->zero, 0, q);
	if (isfinite(v))
		v = fmin(fmax(v, s->min), s->max);
	return v;
}

void ps_registry_mark_flushed(struct ps_registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_families; i++) {
		struct ps_family *f = r->families[i];

		for (size_t j = 0; j < f->n_series; j++) {
			struct ps_series *s = f->series[j];

			s->flushed_value = s->value;
			s->flushed_count = s->count;
			s->flushed_sum = s->sum;
		}
	}
}

/* ---- expiry ---------------------------------------------------------------------------------- */

void ps_registry_set_ttl(struct ps_registry *r, uint64_t ttl_ns)
{
	if (r)
		r->ttl_ns = ttl_ns;
}

/* Halves the table while it is at most a quarter full, so an attack's table does not stay. */
static void maybe_shrink(struct ps_family *f)
{
	size_t n = f->n_hash;
	struct ps_series **table;

	while (n > HASH_INITIAL && f->n_series <= n / 4)
		n /= 2;
	if (n != f->n_hash && (table = calloc(n, sizeof(*table)))) {
		free(f->hash);
		f->hash = table;
		f->n_hash = n;
		for (size_t i = 0; i < f->n_series; i++) {
			struct ps_series *s = f->series[i];
			struct ps_series **slot = hash_slot(f, (const char *const *)s->values);

			s->hash_next = *slot;
			*slot = s;
		}
	}
	if (f->cap_series > 8 && f->n_series <= f->cap_series / 4) {
		size_t cap = f->cap_series;
		struct ps_series **smaller;

		while (cap > 8 && f->n_series <= cap / 4)
			cap /= 2;
		smaller = realloc(f->series, cap * sizeof(*smaller));

		if (smaller) {
			f->series = smaller;
			f->cap_series = cap;
		}
	}
}

/*
 * The daemon's own series (events, drops, decode errors per plugin) are few and
 * what an operator alerts on: they stay, idle or not.
 */
static bool is_daemon_series(const struct ps_family *f, const struct ps_series *s)
{
	return f->n_labels > 0 && strcmp(s->values[0], DROPPED_SERVICE) == 0;
}

/* Keeps creation order; 0 when nothing of f went. */
static size_t expire_family(struct ps_family *f, uint64_t ttl_ns, uint64_t now_ns)
{
	size_t kept = 0, gone = 0;

	for (size_t i = 0; i < f->n_series; i++) {
		struct ps_series *s = f->series[i];

		if (s->touched || !s->active_ns || now_ns < s->active_ns) {
			s->active_ns = now_ns;
			s->touched = false;
		} else if (f->type != PS_METRIC_GAUGE && ttl_ns &&
			   now_ns - s->active_ns >= ttl_ns && !is_daemon_series(f, s)) {
			unlink_from_hash(f, s);
			series_free(s, f->n_labels);
			gone++;
			continue;
		}
		f->series[kept++] = s;
	}
	f->n_series = kept;
	if (gone) {
		f->generation = ++series_generation;
		maybe_shrink(f);
	}
	return gone;
}

size_t ps_registry_expire(struct ps_registry *r, uint64_t now_ns)
{
	size_t gone = 0;

	if (!r)
		return 0;
	for (size_t i = 0; i < r->n_families; i++)
		gone += expire_family(r->families[i], r->ttl_ns, now_ns);
	if (gone >= TRIM_AFTER)
		malloc_trim(0);
	return gone;
}

/* ---- configured buckets ---------------------------------------------------------------------- */

static void drop_all_series(struct ps_family *f)
{
	for (size_t i = 0; i < f->n_series; i++)
		series_free(f->series[i], f->n_labels);
	f->n_series = 0;
	memset(f->hash, 0, f->n_hash * sizeof(*f->hash));
	f->generation = ++series_generation;
	maybe_shrink(f);
}

/* Gives f the bounds it should have now; its series go when they change. */
static int relayout(struct ps_registry *r, struct ps_family *f)
{
	const struct ps_bucket_override *o = find_override(r, f->name);
	const double *want = o ? o->bounds : f->desc_bounds;
	size_t n = o ? o->n : f->n_desc_bounds;
	double *copy;

	if (f->type != PS_METRIC_HISTOGRAM || same_bounds(f->bounds, f->n_bounds, want, n))
		return 0;
	copy = copy_bounds(want, n);
	if (!copy)
		return -ENOMEM;
	ps_info(SUBSYS, "%s: %zu configured buckets; its series restart from zero", f->name, n);
	drop_all_series(f);
	free(f->bounds);
	f->bounds = copy;
	f->n_bounds = n;
	return 0;
}

int ps_registry_set_buckets(struct ps_registry *r, const struct ps_bucket_override *v, size_t n)
{
	struct ps_bucket_override *copy;
	int rc = 0;

	if (!r)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!v[i].family || !v[i].bounds || !valid_bounds(v[i].family, v[i].bounds, v[i].n))
			return -EINVAL;
	copy = calloc(n ? n : 1, sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		copy[i].family = strdup(v[i].family);
		copy[i].bounds = copy_bounds(v[i].bounds, v[i].n);
		copy[i].n = v[i].n;
		if (!copy[i].family || !copy[i].bounds) {
			for (size_t j = 0; j <= i; j++) {
				free(copy[j].family);
				free(copy[j].bounds);
			}
			free(copy);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < r->n_overrides; i++) {
		free(r->overrides[i].family);
		free(r->overrides[i].bounds);
	}
	free(r->overrides);
	r->overrides = copy;
	r->n_overrides = n;
	for (size_t i = 0; i < r->n_families; i++)
		if (relayout(r, r->families[i]) && !rc)
			rc = -ENOMEM;
	return rc;
}
