/* Unit tests for the metric registry (core/registry.c). */
#include <check.h>
#include <errno.h>
#include <math.h>
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

	/* NULL buckets: the OTel HTTP duration set. */
	struct ps_family *f = ps_metric_family(reg_histogram("dur_seconds", NULL, 0));
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->n_bounds, 14);
	ck_assert_uint_eq(ps_buckets_duration_len, 14);
	ck_assert_double_eq(f->bounds[0], 0.005);
	ck_assert_double_eq(f->bounds[13], 10);
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
	ck_assert_uint_eq(sa->buckets[2], 1);
	ck_assert_uint_eq(sa->buckets[7], 1);
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
