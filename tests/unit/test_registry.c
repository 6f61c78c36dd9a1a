/* Unit tests for the metric registry (core/registry.c). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"

static const char *const svc_labels[] = { "service_name", NULL };
static const char *const two_labels[] = { "service_name", "route", NULL };

static struct ps_registry *reg;

static void setup(void)
{
	reg = ps_registry_new(0);
	ck_assert_ptr_nonnull(reg);
}

static void teardown(void)
{
	ps_registry_free(reg);
	reg = NULL;
}

static struct ps_metric *reg_metric(const char *name, enum ps_metric_type type,
				    const char *const *labels)
{
	struct ps_metric_desc d = { .name = name, .help = "h", .type = type, .labels = labels };

	return ps_registry_register(reg, &d);
}

static struct ps_metric *reg_histogram(const char *name, const double *b, size_t n)
{
	struct ps_metric_desc d = {
		.name = name, .help = "h", .type = PS_METRIC_HISTOGRAM, .labels = svc_labels,
		.buckets = b, .n_buckets = n,
	};

	return ps_registry_register(reg, &d);
}

static void assert_register_fails(const struct ps_metric_desc *d, int err)
{
	errno = 0;
	ck_assert_ptr_null(ps_registry_register(reg, d));
	ck_assert_int_eq(errno, err);
}

static struct ps_family *find_family(const char *name)
{
	for (size_t i = 0; i < reg->n_families; i++)
		if (strcmp(reg->families[i]->name, name) == 0)
			return reg->families[i];
	return NULL;
}

static struct ps_series *find_series(struct ps_family *f, const char *const *values)
{
	for (size_t i = 0; i < f->n_series; i++) {
		size_t j;

		for (j = 0; j < f->n_labels; j++)
			if (strcmp(f->series[i]->values[j], values[j]) != 0)
				break;
		if (j == f->n_labels)
			return f->series[i];
	}
	return NULL;
}

static double dropped_for(const char *metric)
{
	struct ps_family *f = find_family("periscope_series_dropped_total");
	const char *v[] = { "periscoped", metric };
	struct ps_series *s;

	if (!f)
		return 0;
	s = find_series(f, v);
	return s ? s->value : 0;
}

/* ---- registration -------------------------------------------------------------------------- */

START_TEST(test_metric_names)
{
	static const char *const good[] = { "a", "_x", "ns:sub_metric", "a1_b2:c3", ":x" };
	static const char *const bad[] = { "", "1a", "a-b", "a b", "é", "a.b" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_ptr_nonnull(reg_metric(good[i], PS_METRIC_GAUGE, svc_labels));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ps_metric_desc d = { .name = bad[i], .type = PS_METRIC_GAUGE,
					    .labels = svc_labels };

		assert_register_fails(&d, EINVAL);
	}
	struct ps_metric_desc d = { .name = NULL, .type = PS_METRIC_GAUGE, .labels = svc_labels };
	assert_register_fails(&d, EINVAL);
	assert_register_fails(NULL, EINVAL);
}
END_TEST

START_TEST(test_label_names)
{
	static const char *const no_service[] = { "route", NULL };
	static const char *const service_second[] = { "route", "service_name", NULL };
	static const char *const reserved[] = { "service_name", "__name", NULL };
	static const char *const colon[] = { "service_name", "a:b", NULL };
	static const char *const digit[] = { "service_name", "1a", NULL };
	static const char *const empty[] = { "service_name", "", NULL };
	static const char *const dup[] = { "service_name", "a", "a", NULL };
	static const char *const dup_service[] = { "service_name", "service_name", NULL };
	static const char *const none[] = { NULL };
	const char *const *bad[] = { no_service, service_second, reserved, colon, digit,
				     empty, dup, dup_service, none, NULL };
	static const char *const good[] = { "service_name", "_a", "a_1", "B", NULL };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ps_metric_desc d = { .name = "m", .type = PS_METRIC_GAUGE, .labels = bad[i] };

		assert_register_fails(&d, EINVAL);
	}
	ck_assert_ptr_nonnull(reg_metric("m", PS_METRIC_GAUGE, good));
	ck_assert_int_eq(ps_metric_family(reg_metric("m", PS_METRIC_GAUGE, good))->n_labels, 4);
}
END_TEST

START_TEST(test_shapes)
{
	static const double bad_order[] = { 1, 0.5 };
	static const double equal[] = { 1, 1 };
	static const double with_inf[] = { 1, INFINITY };
	static const double with_nan[] = { NAN, 1 };
	const double *bad[] = { bad_order, equal, with_inf, with_nan };
	struct ps_metric_desc d = { .name = "requests", .type = PS_METRIC_COUNTER,
				    .labels = svc_labels };

	assert_register_fails(&d, EINVAL); /* counter without _total */
	d.name = "requests_total";
	ck_assert_ptr_nonnull(ps_registry_register(reg, &d));
	d.name = "x";
	d.type = (enum ps_metric_type)42;
	assert_register_fails(&d, EINVAL);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ps_metric_desc h = { .name = "h", .type = PS_METRIC_HISTOGRAM,
					    .labels = svc_labels, .buckets = bad[i],
					    .n_buckets = 2 };

		assert_register_fails(&h, EINVAL);
	}
	struct ps_metric_desc h = { .name = "h", .type = PS_METRIC_HISTOGRAM, .labels = svc_labels,
				    .buckets = bad_order, .n_buckets = 0 };
	assert_register_fails(&h, EINVAL);

	/* NULL buckets: the OTel HTTP duration set, extended down to 10 us. */
	struct ps_family *f = ps_metric_family(reg_histogram("dur_seconds", NULL, 0));
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->n_bounds, 22);
	ck_assert_uint_eq(ps_buckets_duration_len, 22);
	ck_assert_double_eq(f->bounds[0], 0.00001);
	ck_assert_double_eq(f->bounds[8], 0.005);
	ck_assert_double_eq(f->bounds[21], 10);
	ck_assert_str_eq(f->help, "h");
	ck_assert_ptr_eq(f->registry, reg);

	/* No help: an empty string, not NULL, for the sinks. */
	struct ps_metric_desc nohelp = { .name = "g", .type = PS_METRIC_GAUGE, .labels = svc_labels };
	ck_assert_str_eq(ps_metric_family(ps_registry_register(reg, &nohelp))->help, "");
}
END_TEST

START_TEST(test_reregistration)
{
	static const double b1[] = { 1, 2 };
	static const double b1_copy[] = { 1, 2 };
	static const double b2[] = { 1, 3 };
	static const char *const other_labels[] = { "service_name", "method", NULL };
	struct ps_metric *m = reg_metric("c_total", PS_METRIC_COUNTER, two_labels);

	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_eq(reg_metric("c_total", PS_METRIC_COUNTER, two_labels), m);
	ck_assert_uint_eq(reg->n_families, 1);

	errno = 0;
	ck_assert_ptr_null(reg_metric("c_total", PS_METRIC_GAUGE, two_labels));
	ck_assert_int_eq(errno, EEXIST);
	errno = 0;
	ck_assert_ptr_null(reg_metric("c_total", PS_METRIC_COUNTER, svc_labels));
	ck_assert_int_eq(errno, EEXIST);
	errno = 0;
	ck_assert_ptr_null(reg_metric("c_total", PS_METRIC_COUNTER, other_labels));
	ck_assert_int_eq(errno, EEXIST);

	struct ps_metric *h = reg_histogram("h", b1, 2);
	ck_assert_ptr_eq(reg_histogram("h", b1_copy, 2), h);
	errno = 0;
	ck_assert_ptr_null(reg_histogram("h", b2, 2));
	ck_assert_int_eq(errno, EEXIST);
	errno = 0;
	ck_assert_ptr_null(reg_histogram("h", b1, 1));
	ck_assert_int_eq(errno, EEXIST);
	errno = 0;
	ck_assert_ptr_null(reg_histogram("h", NULL, 0));
	ck_assert_int_eq(errno, EEXIST);

	/* NULL and an explicit copy of the default set are the same shape. */
	struct ps_metric *d = reg_histogram("d", NULL, 0);
	ck_assert_ptr_eq(reg_histogram("d", ps_buckets_duration, ps_buckets_duration_len), d);
	ck_assert_uint_eq(reg->n_families, 3);
}
END_TEST

/* ---- arithmetic ---------------------------------------------------------------------------- */

START_TEST(test_counter)
{
	struct ps_metric *m = reg_metric("c_total", PS_METRIC_COUNTER, two_labels);
	struct ps_family *f = ps_metric_family(m);
	const char *a[] = { "svc", "/a" };
	const char *b[] = { "svc", "/b" };

	ck_assert_int_eq(ps_metric_add(m, a, 1), 0);
	ck_assert_int_eq(ps_metric_add(m, a, 2.5), 0);
	ck_assert_int_eq(ps_metric_add(m, a, 0), 0);
	ck_assert_int_eq(ps_metric_add(m, b, 7), 0);
	ck_assert_int_eq(ps_metric_add(m, a, -1), -EINVAL);
	ck_assert_int_eq(ps_metric_add(m, a, NAN), -EINVAL);
	ck_assert_int_eq(ps_metric_add(m, a, INFINITY), -EINVAL);
	ck_assert_int_eq(ps_metric_set(m, a, 1), -EINVAL);
	ck_assert_int_eq(ps_metric_observe(m, a, 1), -EINVAL);
	ck_assert_int_eq(ps_metric_add(m, NULL, 1), -EINVAL);
	ck_assert_int_eq(ps_metric_add(NULL, a, 1), -EINVAL);

	ck_assert_uint_eq(f->n_series, 2);
	ck_assert_double_eq(f->series[0]->value, 3.5);
	ck_assert_double_eq(f->series[1]->value, 7);
	ck_assert_str_eq(f->series[0]->values[0], "svc");
	ck_assert_str_eq(f->series[0]->values[1], "/a");
	ck_assert_ptr_null(f->series[0]->buckets);
}
END_TEST

START_TEST(test_invalid_value_creates_no_series)
{
	struct ps_metric *c = reg_metric("c_total", PS_METRIC_COUNTER, svc_labels);
	const char *v[] = { "svc" };

	ck_assert_int_eq(ps_metric_add(c, v, -1), -EINVAL);
	ck_assert_uint_eq(ps_metric_family(c)->n_series, 0);
}
END_TEST

START_TEST(test_gauge)
{
	struct ps_metric *m = reg_metric("g", PS_METRIC_GAUGE, svc_labels);
	struct ps_family *f = ps_metric_family(m);
	const char *v[] = { "svc" };

	ck_assert_int_eq(ps_metric_add(m, v, 5), 0);
	ck_assert_int_eq(ps_metric_add(m, v, -7.5), 0);
	ck_assert_double_eq(f->series[0]->value, -2.5);
	ck_assert_int_eq(ps_metric_set(m, v, 42), 0);
	ck_assert_double_eq(f->series[0]->value, 42);
	ck_assert_int_eq(ps_metric_set(m, v, -1e9), 0);
	ck_assert_double_eq(f->series[0]->value, -1e9);
	ck_assert_int_eq(ps_metric_set(m, v, NAN), -EINVAL);
	ck_assert_int_eq(ps_metric_set(m, v, -INFINITY), -EINVAL);
	ck_assert_int_eq(ps_metric_add(m, v, INFINITY), -EINVAL);
	ck_assert_int_eq(ps_metric_observe(m, v, 1), -EINVAL);
	ck_assert_double_eq(f->series[0]->value, -1e9);
	ck_assert_uint_eq(f->n_series, 1);
}
END_TEST

START_TEST(test_null_value_is_empty)
{
	struct ps_metric *m = reg_metric("g", PS_METRIC_GAUGE, two_labels);
	struct ps_family *f = ps_metric_family(m);
	const char *with_null[] = { "svc", NULL };
	const char *with_empty[] = { "svc", "" };

	ck_assert_int_eq(ps_metric_add(m, with_null, 1), 0);
	ck_assert_int_eq(ps_metric_add(m, with_empty, 1), 0);
	ck_assert_uint_eq(f->n_series, 1);
	ck_assert_str_eq(f->series[0]->values[1], "");
	ck_assert_double_eq(f->series[0]->value, 2);
	ck_assert_int_eq(ps_metric_remove(m, with_null), 0);
}
END_TEST

/* Values that concatenate to the same bytes are still different series. */
START_TEST(test_value_boundaries_distinct)
{
	static const char *const three[] = { "service_name", "a", "b", NULL };
	struct ps_metric *m = reg_metric("g", PS_METRIC_GAUGE, three);
	const char *x[] = { "s", "ab", "" };
	const char *y[] = { "s", "a", "b" };
	const char *z[] = { "s", "", "ab" };

	ps_metric_set(m, x, 1);
	ps_metric_set(m, y, 2);
	ps_metric_set(m, z, 3);
	ck_assert_uint_eq(ps_metric_family(m)->n_series, 3);
	ck_assert_double_eq(find_series(ps_metric_family(m), y)->value, 2);
}
END_TEST

START_TEST(test_histogram_buckets)
{
	static const double b[] = { 0.1, 1, 10 };
	struct ps_metric *m = reg_histogram("h_seconds", b, 3);
	struct ps_family *f = ps_metric_family(m);
	const char *v[] = { "svc" };
	const double obs[] = { -5, 0, 0.1, 0.10000001, 1, 9.99, 10, 10.0001, 1e12 };
	const uint64_t want[] = { 3, 2, 2, 2 };
	double sum = 0;

	for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
		ck_assert_int_eq(ps_metric_observe(m, v, obs[i]), 0);
		sum += obs[i];
	}
	ck_assert_int_eq(ps_metric_observe(m, v, NAN), -EINVAL);
	ck_assert_int_eq(ps_metric_observe(m, v, INFINITY), -EINVAL);
	ck_assert_int_eq(ps_metric_add(m, v, 1), -EINVAL);
	ck_assert_int_eq(ps_metric_set(m, v, 1), -EINVAL);

	struct ps_series *s = f->series[0];
	for (size_t i = 0; i < 4; i++)
		ck_assert_uint_eq(s->buckets[i], want[i]);
	ck_assert_uint_eq(s->count, 9);
	ck_assert_double_eq_tol(s->sum, sum, 1e-3);
}
END_TEST

/* Every default bound lands in its own bucket (v == bound is "le"). */
START_TEST(test_histogram_default_exact_bounds)
{
	struct ps_metric *m = reg_histogram("h_seconds", NULL, 0);
	struct ps_family *f = ps_metric_family(m);
	const char *v[] = { "svc" };

	for (size_t i = 0; i < ps_buckets_duration_len; i++)
		ck_assert_int_eq(ps_metric_observe(m, v, ps_buckets_duration[i]), 0);
	ck_assert_int_eq(ps_metric_observe(m, v, 11), 0);
	for (size_t i = 0; i <= ps_buckets_duration_len; i++)
		ck_assert_uint_eq(f->series[0]->buckets[i], 1);
}
END_TEST

/* ---- quantiles ----------------------------------------------------------------------------- */

START_TEST(test_quantile)
{
	static const double b[] = { 1, 2, 4 };
	struct ps_metric *m = reg_histogram("h", b, 3);
	struct ps_family *f = ps_metric_family(m);
	const char *v[] = { "svc" };
	struct ps_series *s;

	/* Empty series: NaN. */
	ps_metric_observe(m, v, 0.5);
	s = f->series[0];
	s->buckets[0] = 0;
	s->count = 0;
	ck_assert(isnan(ps_series_quantile(f, s, 0.5)));

	/* 10 in (0,1], 10 in (1,2], 20 in (2,4]. */
	s->buckets[0] = 10;
	s->buckets[1] = 10;
	s->buckets[2] = 20;
	s->count = 40;
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.125), 0.5, 1e-12); /* rank 5 */
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.25), 1.0, 1e-12);  /* rank 10 */
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.375), 1.5, 1e-12); /* rank 15 */
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.75), 3.0, 1e-12);  /* rank 30 */
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 1.0), 4.0, 1e-12);
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0), 0, 1e-12);
	ck_assert(isnan(ps_series_quantile(f, s, NAN)));
	ck_assert(isinf(ps_series_quantile(f, s, -0.1)) && ps_series_quantile(f, s, -0.1) < 0);
	ck_assert(isinf(ps_series_quantile(f, s, 1.1)) && ps_series_quantile(f, s, 1.1) > 0);

	/* Rank in +Inf: the highest finite bound. */
	s->buckets[3] = 60;
	s->count = 100;
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.99), 4.0, 1e-12);
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.4), 4.0, 1e-12);   /* rank 40 */
	ck_assert_double_eq_tol(ps_series_quantile(f, s, 0.3), 3.0, 1e-12);   /* rank 30 */

	/* Not a histogram: NaN. */
	struct ps_metric *g = reg_metric("g", PS_METRIC_GAUGE, svc_labels);
	ps_metric_set(g, v, 3);
	ck_assert(isnan(ps_series_quantile(ps_metric_family(g), ps_metric_family(g)->series[0], 0.5)));
}
END_TEST

START_TEST(test_quantile_from_observations)
{
	struct ps_metric *m = reg_histogram("h_seconds", NULL, 0);
	struct ps_family *f = ps_metric_family(m);
	const char *v[] = { "svc" };

	/* 100 observations in (0.1, 0.25]: the median interpolates to the middle. */
	for (int i = 0; i < 100; i++)
		ps_metric_observe(m, v, 0.2);
	ck_assert_double_eq_tol(ps_series_quantile(f, f->series[0], 0.5), 0.175, 1e-12);
}
END_TEST

/* ---- remove -------------------------------------------------------------------------------- */

START_TEST(test_remove)
{
	struct ps_metric *m = reg_metric("g", PS_METRIC_GAUGE, two_labels);
	struct ps_family *f = ps_metric_family(m);
	const char *names[] = { "a", "b", "c", "d" };

	for (int i = 0; i < 4; i++) {
		const char *v[] = { "svc", names[i] };

		ck_assert_int_eq(ps_metric_set(m, v, i), 0);
	}
	const char *b[] = { "svc", "b" };
	const char *missing[] = { "svc", "zzz" };

	ck_assert_int_eq(ps_metric_remove(m, b), 0);
	ck_assert_int_eq(ps_metric_remove(m, b), -ENOENT);
	ck_assert_int_eq(ps_metric_remove(m, missing), -ENOENT);
	ck_assert_int_eq(ps_metric_remove(NULL, b), -EINVAL);
	ck_assert_uint_eq(f->n_series, 3);
	ck_assert_str_eq(f->series[0]->values[1], "a");
	ck_assert_str_eq(f->series[1]->values[1], "c");
	ck_assert_str_eq(f->series[2]->values[1], "d");

	/* Re-created after removal: a fresh series at the end, starting from zero. */
	ck_assert_int_eq(ps_metric_add(m, b, 1), 0);
	ck_assert_uint_eq(f->n_series, 4);
	ck_assert_str_eq(f->series[3]->values[1], "b");
	ck_assert_double_eq(f->series[3]->value, 1);

	/* The others are still found through the hash. */
	const char *c[] = { "svc", "c" };
	ck_assert_int_eq(ps_metric_add(m, c, 10), 0);
	ck_assert_double_eq(f->series[1]->value, 12);
	ck_assert_uint_eq(f->n_series, 4);
}
END_TEST

/* ---- series cap ---------------------------------------------------------------------------- */

START_TEST(test_series_cap_folds_into_other)
{
	struct ps_metric *m, *h;
	struct ps_family *f;
	char route[32];

	ps_registry_set_max_series(reg, 3);
	m = reg_metric("req_total", PS_METRIC_COUNTER, two_labels);
	f = ps_metric_family(m);
	for (int i = 0; i < 3; i++) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_add(m, v, 1), 0);
	}
	ck_assert_ptr_null(find_family("periscope_series_dropped_total"));

	/* Four new label sets, five observations: all in one _other series. */
	for (int i = 3; i < 7; i++) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_add(m, v, 2), 0);
	}
	const char *r6[] = { "svc", "/r6" };
	ck_assert_int_eq(ps_metric_add(m, r6, 2), 0);

	ck_assert_uint_eq(f->n_series, 4);
	const char *other[] = { PS_SERIES_OTHER, PS_SERIES_OTHER };
	struct ps_series *o = find_series(f, other);
	ck_assert_ptr_nonnull(o);
	ck_assert_ptr_eq(o, f->series[3]);
	ck_assert_double_eq(o->value, 10);
	ck_assert_double_eq(dropped_for("req_total"), 5);

	/* Existing series keep working and are not counted. */
	const char *r0[] = { "svc", "/r0" };
	ck_assert_int_eq(ps_metric_add(m, r0, 1), 0);
	ck_assert_double_eq(f->series[0]->value, 2);
	ck_assert_double_eq(dropped_for("req_total"), 5);

	/* Invalid values fold nothing and count nothing. */
	ck_assert_int_eq(ps_metric_add(m, r6, -1), -EINVAL);
	ck_assert_double_eq(dropped_for("req_total"), 5);

	/* Removing a missing set does not fold. */
	ck_assert_int_eq(ps_metric_remove(m, r6), -ENOENT);

	/* Removing a real series frees a slot: _other does not hold it. */
	ck_assert_int_eq(ps_metric_remove(m, r0), 0);
	ck_assert_int_eq(ps_metric_add(m, r6, 1), 0);
	ck_assert_ptr_nonnull(find_series(f, r6));
	ck_assert_double_eq(dropped_for("req_total"), 5);
	ck_assert_uint_eq(f->n_series, 4);

	/* Each family has its own cap and its own _other; histograms fold too. */
	h = reg_histogram("h_seconds", NULL, 0);
	for (int i = 0; i < 5; i++) {
		const char *v[] = { route };

		snprintf(route, sizeof(route), "s%d", i);
		ck_assert_int_eq(ps_metric_observe(h, v, 0.3), 0);
	}
	ck_assert_uint_eq(ps_metric_family(h)->n_series, 4);
	ck_assert_str_eq(ps_metric_family(h)->series[3]->values[0], PS_SERIES_OTHER);
	ck_assert_uint_eq(ps_metric_family(h)->series[3]->count, 2);
	ck_assert_double_eq(dropped_for("h_seconds"), 2);
	ck_assert_double_eq(dropped_for("req_total"), 5);

	/* The dropped counter itself is exempt from the cap. */
	struct ps_family *d = find_family("periscope_series_dropped_total");
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(d->type, PS_METRIC_COUNTER);
	ck_assert_str_eq(d->help,
			 "Observations folded into the _other series past max_series_per_metric");
	ck_assert_uint_eq(d->n_labels, 2);
	ck_assert_str_eq(d->labels[1], "metric");
	for (int i = 0; i < 5; i++) {
		char name[32];
		struct ps_metric *g;
		const char *v[] = { "svc", "x" };

		snprintf(name, sizeof(name), "g%d", i);
		g = reg_metric(name, PS_METRIC_GAUGE, two_labels);
		ck_assert_int_eq(ps_metric_set(g, v, 1), 0);
		for (int j = 0; j < 4; j++) {
			const char *w[] = { "svc", route };

			snprintf(route, sizeof(route), "w%d", j);
			ck_assert_int_eq(ps_metric_set(g, w, 1), 0);
		}
	}
	ck_assert_uint_eq(d->n_series, 7);
	ck_assert_ptr_eq(ps_metric_family(reg->series_dropped), d);
}
END_TEST

START_TEST(test_series_cap_unlimited)
{
	struct ps_metric *m = reg_metric("g", PS_METRIC_GAUGE, two_labels);
	char route[32];

	for (int i = 0; i < 500; i++) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_set(m, v, i), 0);
	}
	ck_assert_uint_eq(ps_metric_family(m)->n_series, 500);
	ck_assert_ptr_null(find_family("periscope_series_dropped_total"));
}
END_TEST

/* ---- hash growth --------------------------------------------------------------------------- */

START_TEST(test_hash_growth)
{
	struct ps_metric *m = reg_metric("c_total", PS_METRIC_COUNTER, two_labels);
	struct ps_family *f = ps_metric_family(m);
	char route[32];
	size_t first_hash;

	ps_metric_add(m, (const char *const[]){ "svc", "seed" }, 1);
	first_hash = f->n_hash;
	for (int i = 0; i < 10000; i++) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_add(m, v, i), 0);
	}
	ck_assert_uint_eq(f->n_series, 10001);
	ck_assert_uint_gt(f->n_hash, first_hash);
	ck_assert_uint_ge(f->n_hash, 10001);

	/* Every series is still found (no duplicates created) with its own value. */
	for (int i = 0; i < 10000; i++) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_add(m, v, 1), 0);
	}
	ck_assert_uint_eq(f->n_series, 10001);
	for (int i = 0; i < 10000; i++) {
		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_str_eq(f->series[i + 1]->values[1], route);
		ck_assert_double_eq(f->series[i + 1]->value, i + 1);
	}

	/* Removing every other one keeps the rest reachable and in order. */
	for (int i = 0; i < 10000; i += 2) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_remove(m, v), 0);
	}
	ck_assert_uint_eq(f->n_series, 5001);
	for (int i = 1; i < 10000; i += 2) {
		const char *v[] = { "svc", route };

		snprintf(route, sizeof(route), "/r%d", i);
		ck_assert_int_eq(ps_metric_add(m, v, 1), 0);
		ck_assert_str_eq(f->series[(i + 1) / 2]->values[1], route);
		ck_assert_double_eq(f->series[(i + 1) / 2]->value, i + 2);
	}
	ck_assert_uint_eq(f->n_series, 5001);
}
END_TEST

/* ---- flush bookkeeping, default registry ---------------------------------------------------- */

/* ---- series handles ------------------------------------------------------------------------ */

/* Observing through a handle is observing by labels: same series, same buckets, sum, count. */
START_TEST(test_series_handle_observe)
{
	struct ps_metric *h = reg_histogram("h_seconds", NULL, 0);
	struct ps_metric *c = reg_metric("c_total", PS_METRIC_COUNTER, svc_labels);
	const char *a[] = { "a" }, *b[] = { "b" };
	struct ps_family *f = ps_metric_family(h);
	struct ps_series *sa, *sb;

	ck_assert_int_eq(ps_metric_observe(h, a, 0.02), 0);
	sa = ps_metric_series(h, a);
	ck_assert_ptr_eq(sa, f->series[0]);
	ck_assert_int_eq(ps_series_observe(h, sa, 0.3), 0);
	ck_assert_int_eq(ps_series_observe(h, sa, 20), 0);
	ck_assert_uint_eq(sa->count, 3);
	ck_assert_double_eq_tol(sa->sum, 20.32, 1e-9);
	/* one each in the buckets of 0.025, 0.5 and +Inf */
	ck_assert_uint_eq(sa->buckets[10], 1);
	ck_assert_uint_eq(sa->buckets[15], 1);
	ck_assert_uint_eq(sa->buckets[f->n_bounds], 1);

	/* A new label set gets its series, empty until observed. */
	sb = ps_metric_series(h, b);
	ck_assert_ptr_nonnull(sb);
	ck_assert_ptr_ne(sb, sa);
	ck_assert_uint_eq(f->n_series, 2);
	ck_assert_uint_eq(sb->count, 0);
	ck_assert_int_eq(ps_metric_observe(h, b, 1), 0);
	ck_assert_uint_eq(sb->count, 1);

	/* What ps_metric_observe refuses, so does ps_series_observe. */
	ck_assert_int_eq(ps_series_observe(h, sa, NAN), -EINVAL);
	ck_assert_int_eq(ps_series_observe(h, sa, INFINITY), -EINVAL);
	ck_assert_int_eq(ps_series_observe(h, NULL, 1), -EINVAL);
	ck_assert_int_eq(ps_series_observe(c, ps_metric_series(c, a), 1), -EINVAL);
	ck_assert_uint_eq(sa->count, 3);
	errno = 0;
	ck_assert_ptr_null(ps_metric_series(h, NULL));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/* Past the cap a new label set has no series of its own: observe folds it, and counts it. */
START_TEST(test_series_handle_cap)
{
	struct ps_metric *h = reg_histogram("h_seconds", NULL, 0);
	const char *a[] = { "a" }, *b[] = { "b" };

	ps_registry_set_max_series(reg, 1);
	ck_assert_ptr_nonnull(ps_metric_series(h, a));
	errno = 0;
	ck_assert_ptr_null(ps_metric_series(h, b));
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_uint_eq(ps_metric_family(h)->n_series, 1);
	ck_assert_double_eq(dropped_for("h_seconds"), 0);

	/* Existing series stay reachable, cap or not. */
	ck_assert_ptr_eq(ps_metric_series(h, a), ps_metric_family(h)->series[0]);
	ck_assert_int_eq(ps_metric_observe(h, b, 1), 0);
	ck_assert_double_eq(dropped_for("h_seconds"), 1);
}
END_TEST

/* Removing any series moves the generation: cached handles must be dropped. */
START_TEST(test_series_generation)
{
	struct ps_metric *g = reg_metric("g", PS_METRIC_GAUGE, svc_labels);
	const char *a[] = { "a" };
	unsigned long gen = ps_metric_generation();

	ck_assert_int_eq(ps_metric_set(g, a, 1), 0);
	ck_assert_ptr_nonnull(ps_metric_series(g, a));
	ck_assert_uint_eq(ps_metric_generation(), gen);
	ck_assert_int_eq(ps_metric_remove(g, a), 0);
	ck_assert_uint_ne(ps_metric_generation(), gen);
	gen = ps_metric_generation();
	ck_assert_int_eq(ps_metric_remove(g, a), -ENOENT);
	ck_assert_uint_eq(ps_metric_generation(), gen);
}
END_TEST

START_TEST(test_mark_flushed)
{
	struct ps_metric *c = reg_metric("c_total", PS_METRIC_COUNTER, svc_labels);
	struct ps_metric *h = reg_histogram("h_seconds", NULL, 0);
	const char *v[] = { "svc" };
	struct ps_series *cs, *hs;

	ps_metric_add(c, v, 5);
	ps_metric_observe(h, v, 0.3);
	ps_metric_observe(h, v, 0.7);
	cs = ps_metric_family(c)->series[0];
	hs = ps_metric_family(h)->series[0];
	ck_assert_double_eq(cs->flushed_value, 0);
	ck_assert_uint_eq(hs->flushed_count, 0);

	ps_registry_mark_flushed(reg);
	ck_assert_double_eq(cs->flushed_value, 5);
	ck_assert_uint_eq(hs->flushed_count, 2);
	ck_assert_double_eq_tol(hs->flushed_sum, 1.0, 1e-12);

	ps_metric_add(c, v, 3);
	ps_metric_observe(h, v, 1);
	ck_assert_double_eq(cs->flushed_value, 5);
	ck_assert_uint_eq(hs->flushed_count, 2);
	ps_registry_mark_flushed(reg);
	ck_assert_double_eq(cs->flushed_value, 8);
	ck_assert_uint_eq(hs->flushed_count, 3);
	ck_assert_double_eq_tol(hs->flushed_sum, 2.0, 1e-12);
	ps_registry_mark_flushed(NULL);
}
END_TEST

START_TEST(test_default_registry)
{
	struct ps_metric_desc d = { .name = "p_total", .type = PS_METRIC_COUNTER,
				    .labels = svc_labels };
	const char *v[] = { "svc" };
	struct ps_metric *m;

	ps_registry_set_default(NULL);
	errno = 0;
	ck_assert_ptr_null(ps_metric_register(&d));
	ck_assert_int_eq(errno, EINVAL);

	ps_registry_set_default(reg);
	ck_assert_ptr_eq(ps_registry_default(), reg);
	m = ps_metric_register(&d);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_eq(ps_registry_register(reg, &d), m);
	ck_assert_int_eq(ps_metric_add(m, v, 4), 0);
	ck_assert_double_eq(ps_metric_family(m)->series[0]->value, 4);

	/* Freeing the default registry unsets it. */
	ps_registry_free(reg);
	reg = NULL;
	ck_assert_ptr_null(ps_registry_default());
}
END_TEST

/* ---- high-resolution percentiles ------------------------------------------------------------ */

/* xorshift64*: the same synthetic distributions on every run. */
static uint64_t rng_state;

static double rng_uniform(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The exact q-quantile of sorted v: the smallest value with at least q*n at or below it. */
static double exact_quantile(const double *sorted, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);

	return sorted[rank ? rank - 1 : 0];
}

/* Observes v[0..n) into a fresh series of m and checks p50, p90, p99 within 10%. */
static void check_percentiles(struct ps_metric *m, const char *svc, double *v, size_t n)
{
	static const double qs[] = { 0.5, 0.9, 0.99 };
	const char *values[] = { svc };
	struct ps_family *f = ps_metric_family(m);
	struct ps_series *s;

	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(ps_metric_observe(m, values, v[i]), 0);
	s = ps_metric_series(m, values);
	ck_assert_ptr_nonnull(s);
	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		double want = exact_quantile(v, n, qs[i]);
		double got = ps_series_percentile(f, s, qs[i]);

		ck_assert_msg(fabs(got - want) <= 0.10 * want,
			      "%s: p%g is %.9g, the true one %.9g (%.1f%% off)", svc, qs[i] * 100,
			      got, want, 100 * fabs(got - want) / want);
	}
}

START_TEST(test_percentile_constant)
{
	static const double constants[] = { 10e-6,  12.3e-6, 47e-6, 0.00099, 0.0042,
					    0.0317, 0.25,    1.7,   9.99 };
	struct ps_metric *m = reg_histogram("lat_seconds", NULL, 0);
	double v[1000];

	for (size_t c = 0; c < sizeof(constants) / sizeof(constants[0]); c++) {
		char svc[32];

		snprintf(svc, sizeof(svc), "const-%zu", c);
		for (size_t i = 0; i < 1000; i++)
			v[i] = constants[c];
		check_percentiles(m, svc, v, 1000);
		/* A constant is exact: the estimate never leaves [min, max]. */
		ck_assert_double_eq(
			ps_series_percentile(ps_metric_family(m),
					     ps_metric_series(m, (const char *[]){ svc }), 0.99),
			constants[c]);
	}
}
END_TEST

START_TEST(test_percentile_uniform)
{
	static const double ranges[][2] = {
		{ 10e-6, 100e-6 }, { 1e-3, 2e-3 }, { 0.05, 0.06 }, { 10e-6, 10 }
	};
	struct ps_metric *m = reg_histogram("lat_seconds", NULL, 0);
	static double v[20000];

	rng_state = 0x9e3779b97f4a7c15ULL;
	for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
		char svc[32];

		snprintf(svc, sizeof(svc), "uniform-%zu", r);
		for (size_t i = 0; i < 20000; i++)
			v[i] = ranges[r][0] + (ranges[r][1] - ranges[r][0]) * rng_uniform();
		check_percentiles(m, svc, v, 20000);
	}
}
END_TEST

/* Log-normal latencies, clipped to 10 us .. 10 s, with medians from 50 us to 2 s. */
START_TEST(test_percentile_lognormal)
{
	static const double medians[] = { 50e-6, 800e-6, 0.02, 0.3, 2 };
	static const double sigmas[] = { 0.3, 1, 2.5 };
	struct ps_metric *m = reg_histogram("lat_seconds", NULL, 0);
	static double v[20000];

	rng_state = 0x2545f4914f6cdd1dULL;
	for (size_t a = 0; a < sizeof(medians) / sizeof(medians[0]); a++) {
		for (size_t b = 0; b < sizeof(sigmas) / sizeof(sigmas[0]); b++) {
			char svc[32];

			snprintf(svc, sizeof(svc), "lognormal-%zu-%zu", a, b);
			for (size_t i = 0; i < 20000; i++) {
				double u1 = rng_uniform(), u2 = rng_uniform();
				double z =
					sqrt(-2 * log(u1 > 0 ? u1 : 1e-300)) * cos(2 * M_PI * u2);

				v[i] = fmin(10, fmax(10e-6, medians[a] * exp(sigmas[b] * z)));
			}
			check_percentiles(m, svc, v, 20000);
		}
	}
}
END_TEST

/* What the table used to show for a 4.6 us service: p50 2.5ms, from the 5 ms first bucket. */
START_TEST(test_percentile_below_first_bucket)
{
	static const double b[] = { 0.005, 0.01 };
	struct ps_metric *m = reg_histogram("lat_seconds", b, 2);
	const char *v[] = { "fast" };
	struct ps_series *s;

	for (int i = 0; i < 100; i++)
		ps_metric_observe(m, v, 4.57e-6 + 1e-8 * i);
	s = ps_metric_series(m, v);
	ck_assert_double_eq_tol(ps_series_quantile(ps_metric_family(m), s, 0.5), 0.0025, 1e-12);
	ck_assert_double_le(fabs(ps_series_percentile(ps_metric_family(m), s, 0.5) - 5.07e-6),
			    0.1 * 5.07e-6);
	/* Zero and negative observations count, as 0, below every positive one. */
	for (int i = 0; i < 300; i++)
		ps_metric_observe(m, v, 0);
	ck_assert_double_eq(ps_series_percentile(ps_metric_family(m), s, 0.5), 0);
	ck_assert(ps_series_percentile(ps_metric_family(m), s, 0.99) > 4e-6);
}
END_TEST

START_TEST(test_hires_index)
{
	ck_assert_int_eq(ps_hires_index(1.0), 0);
	ck_assert_int_eq(ps_hires_index(0.999999), -1);
	ck_assert_int_eq(ps_hires_index(2.0), 16);
	ck_assert_int_eq(ps_hires_index(0.5), -16);
	ck_assert_int_eq(ps_hires_index(exp2(3.0 / 16)), 3);
	ck_assert_int_eq(ps_hires_index(exp2(3.0 / 16) * 0.9999999), 2);
	ck_assert_int_eq(ps_hires_index(1e-300), PS_HIRES_INDEX_MIN);
	ck_assert_int_eq(ps_hires_index(1e300), PS_HIRES_INDEX_MAX);
	for (int i = -300; i < 300; i++) {
		double lo = exp2(i / 16.0);

		ck_assert_int_eq(ps_hires_index(lo * 1.0000001), i);
		ck_assert_int_eq(ps_hires_index(lo * 1.04), i);
	}
}
END_TEST

/* A narrow distribution keeps a few counts, not the whole range. */
START_TEST(test_hires_sparse)
{
	struct ps_metric *m = reg_histogram("lat_seconds", NULL, 0);
	const char *v[] = { "svc" };
	struct ps_series *s;

	for (int i = 0; i < 1000; i++)
		ps_metric_observe(m, v, 0.001 + 0.000001 * i);
	s = ps_metric_series(m, v);
	ck_assert_uint_le(s->hires.n, 24);
	ps_metric_observe(m, v, 5);
	ck_assert_uint_le(s->hires.n, 16 * 13 + 10);
	ck_assert_uint_eq(s->count, 1001);
}
END_TEST

/* ---- explicit buckets: defaults and configuration ------------------------------------------- */

START_TEST(test_default_buckets_reach_microseconds)
{
	ck_assert_double_eq(ps_buckets_duration[0], 0.00001);
	ck_assert_double_eq(ps_buckets_duration[ps_buckets_duration_len - 1], 10);
	for (size_t i = 1; i < ps_buckets_duration_len; i++)
		ck_assert(ps_buckets_duration[i] > ps_buckets_duration[i - 1]);
}
END_TEST

START_TEST(test_configured_buckets)
{
	static const double mine[] = { 0.0001, 0.001, 0.01 };
	static const double other[] = { 1, 2 };
	static const double bad[] = { 0.1, 0.01 };
	struct ps_bucket_override o[] = {
		{ .family = "lat_seconds", .bounds = (double *)mine, .n = 3 },
	};
	struct ps_bucket_override b[] = {
		{ .family = "lat_seconds", .bounds = (double *)bad, .n = 2 },
	};
	const char *v[] = { "svc" };
	struct ps_metric *m, *n;
	struct ps_family *f;
	unsigned long gen;

	ck_assert_int_eq(ps_registry_set_buckets(reg, b, 1), -EINVAL);
	ck_assert_int_eq(ps_registry_set_buckets(reg, o, 1), 0);
	/* Registered after: the configured bounds, whatever the plugin asked for. */
	m = reg_histogram("lat_seconds", other, 2);
	n = reg_histogram("size_bytes", other, 2);
	f = ps_metric_family(m);
	ck_assert_uint_eq(f->n_bounds, 3);
	ck_assert_double_eq(f->bounds[1], 0.001);
	ck_assert_uint_eq(ps_metric_family(n)->n_bounds, 2);
	/* The plugin registering again with its own bounds gets the same family. */
	ck_assert_ptr_eq(reg_histogram("lat_seconds", other, 2), m);
	ps_metric_observe(m, v, 0.0005);
	ps_metric_observe(m, v, 0.5);
	ck_assert_uint_eq(f->series[0]->buckets[1], 1);
	ck_assert_uint_eq(f->series[0]->buckets[3], 1);

	/* Changed at a reload: the family's series restart with the new layout. */
	gen = ps_metric_family_generation(m);
	ck_assert_int_eq(ps_registry_set_buckets(reg, NULL, 0), 0);
	ck_assert_uint_eq(f->n_bounds, 2);
	ck_assert_uint_eq(f->n_series, 0);
	ck_assert_uint_ne(ps_metric_family_generation(m), gen);
	ps_metric_observe(m, v, 1.5);
	ck_assert_uint_eq(f->series[0]->buckets[1], 1);
	/* Unchanged: nothing happens. */
	gen = ps_metric_family_generation(m);
	ck_assert_int_eq(ps_registry_set_buckets(reg, NULL, 0), 0);
	ck_assert_uint_eq(f->n_series, 1);
	ck_assert_uint_eq(ps_metric_family_generation(m), gen);
}
END_TEST

/* ---- expiry -------------------------------------------------------------------------------- */

#define SEC 1000000000ull

START_TEST(test_ttl_expiry)
{
	struct ps_metric *c = reg_metric("c_total", PS_METRIC_COUNTER, svc_labels);
	struct ps_metric *h = reg_histogram("h_seconds", NULL, 0);
	struct ps_metric *g = reg_metric("g", PS_METRIC_GAUGE, svc_labels);
	const char *busy[] = { "busy" }, *idle[] = { "idle" };
	unsigned long gen_c, gen_h, gen_g, gen;
	uint64_t t = 1000 * SEC;

	ps_registry_set_ttl(reg, 60 * SEC);
	ps_metric_add(c, busy, 1);
	ps_metric_add(c, idle, 1);
	ps_metric_observe(h, idle, 0.1);
	ps_metric_set(g, idle, 7);
	ck_assert_uint_eq(ps_registry_expire(reg, t), 0);
	gen_c = ps_metric_family_generation(c);
	gen_h = ps_metric_family_generation(h);
	gen_g = ps_metric_family_generation(g);
	gen = ps_metric_generation();

	/* Written within the TTL: everything stays. */
	for (int i = 1; i <= 5; i++) {
		t += 10 * SEC;
		ps_metric_add(c, busy, 1);
		ck_assert_uint_eq(ps_registry_expire(reg, t), 0);
	}
	ck_assert_uint_eq(ps_metric_family(c)->n_series, 2);
	/* 60 s after their last write: idle counter and histogram go, the gauge stays. */
	t += 10 * SEC;
	ps_metric_add(c, busy, 1);
	ck_assert_uint_eq(ps_registry_expire(reg, t), 2);
	ck_assert_uint_eq(ps_metric_family(c)->n_series, 1);
	ck_assert_str_eq(ps_metric_family(c)->series[0]->values[0], "busy");
	ck_assert_double_eq(ps_metric_family(c)->series[0]->value, 7);
	ck_assert_uint_eq(ps_metric_family(h)->n_series, 0);
	ck_assert_uint_eq(ps_metric_family(g)->n_series, 1);
	/* Per family: the gauge's cached handles stay valid, the others' do not. */
	ck_assert_uint_ne(ps_metric_family_generation(c), gen_c);
	ck_assert_uint_ne(ps_metric_family_generation(h), gen_h);
	ck_assert_uint_ne(ps_metric_family_generation(c), ps_metric_family_generation(h));
	ck_assert_uint_eq(ps_metric_family_generation(g), gen_g);
	ck_assert_uint_ne(ps_metric_generation(), gen);
	ck_assert_uint_eq(ps_metric_family_generation(NULL), 0);
	/* Back again: a new series, from zero; the hash table still finds everything. */
	ps_metric_add(c, idle, 2);
	ck_assert_uint_eq(ps_metric_family(c)->n_series, 2);
	ck_assert_double_eq(ps_metric_family(c)->series[1]->value, 2);
	ck_assert_ptr_eq(ps_metric_series(c, busy), ps_metric_family(c)->series[0]);

	/* The daemon's own counters stay, idle or not. */
	ps_metric_add(c, (const char *[]){ "periscoped" }, 1);
	ps_registry_expire(reg, t);
	ck_assert_uint_eq(ps_registry_expire(reg, t + 3600 * SEC), 2);
	ck_assert_uint_eq(ps_metric_family(c)->n_series, 1);
	ck_assert_str_eq(ps_metric_family(c)->series[0]->values[0], "periscoped");

	/* TTL 0: nothing expires. */
	ps_registry_set_ttl(reg, 0);
	ck_assert_uint_eq(ps_registry_expire(reg, t + 3600 * SEC), 0);
}
END_TEST

/* A cardinality burst leaves, and takes its hash table and series array with it. */
START_TEST(test_ttl_expiry_shrinks)
{
	struct ps_metric *h = reg_histogram("h_seconds", NULL, 0);
	struct ps_family *f = ps_metric_family(h);
	const char *keep[] = { "keep" };
	uint64_t t = 5 * SEC;

	ps_registry_set_ttl(reg, 30 * SEC);
	for (int i = 0; i < 5000; i++) {
		char name[16];
		const char *v[] = { name };

		snprintf(name, sizeof(name), "r%d", i);
		ps_metric_observe(h, v, 0.001 * (i % 50 + 1));
	}
	ps_metric_observe(h, keep, 0.5);
	ck_assert_uint_ge(f->n_hash, 4096);
	ps_registry_expire(reg, t);
	ps_metric_observe(h, keep, 0.5);
	ck_assert_uint_eq(ps_registry_expire(reg, t + 30 * SEC), 5000);
	ck_assert_uint_eq(f->n_series, 1);
	ck_assert_uint_le(f->n_hash, 64);
	ck_assert_uint_le(f->cap_series, 64);
	ck_assert_ptr_eq(ps_metric_series(h, keep), f->series[0]);
	ck_assert_uint_eq(f->series[0]->count, 2);
}
END_TEST

static Suite *registry_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_metric_names);
	tcase_add_test(tc, test_label_names);
	tcase_add_test(tc, test_shapes);
	tcase_add_test(tc, test_reregistration);
	tcase_add_test(tc, test_counter);
	tcase_add_test(tc, test_invalid_value_creates_no_series);
	tcase_add_test(tc, test_gauge);
	tcase_add_test(tc, test_null_value_is_empty);
	tcase_add_test(tc, test_value_boundaries_distinct);
	tcase_add_test(tc, test_histogram_buckets);
	tcase_add_test(tc, test_histogram_default_exact_bounds);
	tcase_add_test(tc, test_quantile);
	tcase_add_test(tc, test_quantile_from_observations);
	tcase_add_test(tc, test_remove);
	tcase_add_test(tc, test_series_cap_folds_into_other);
	tcase_add_test(tc, test_series_cap_unlimited);
	tcase_add_test(tc, test_hash_growth);
	tcase_add_test(tc, test_series_handle_observe);
	tcase_add_test(tc, test_series_handle_cap);
	tcase_add_test(tc, test_series_generation);
	tcase_add_test(tc, test_mark_flushed);
	tcase_add_test(tc, test_default_registry);
	tcase_add_test(tc, test_percentile_constant);
	tcase_add_test(tc, test_percentile_uniform);
	tcase_add_test(tc, test_percentile_lognormal);
	tcase_add_test(tc, test_percentile_below_first_bucket);
	tcase_add_test(tc, test_hires_index);
	tcase_add_test(tc, test_hires_sparse);
	tcase_add_test(tc, test_default_buckets_reach_microseconds);
	tcase_add_test(tc, test_configured_buckets);
	tcase_add_test(tc, test_ttl_expiry);
	tcase_add_test(tc, test_ttl_expiry_shrinks);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(registry_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
