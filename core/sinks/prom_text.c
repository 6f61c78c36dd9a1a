/* Prometheus text exposition format 0.0.4 of a registry snapshot. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prom_text.h"

/* Largest magnitude below which every integer is exactly representable. */
#define EXACT_INT_MAX 9007199254740992.0 /* 2^53 */

const char *ps_format_number(char *buf, size_t len, double v)
{
	int saved_errno = errno;

	if (isnan(v)) {
		snprintf(buf, len, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	} else if (v == trunc(v) && fabs(v) <= EXACT_INT_MAX) {
		snprintf(buf, len, "%lld", (long long)v);
	} else {
		/* %.17g always round-trips; fewer digits avoid 0.0050000000000000001. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	errno = saved_errno; /* strtod may set ERANGE on subnormals */
	return buf;
}

size_t ps_utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	size_t need;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		if (s[0] == 0xe0)
			lo = 0xa0; /* overlong */
		else if (s[0] == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		if (s[0] == 0xf0)
			lo = 0x90; /* overlong */
		else if (s[0] == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return need;
}

const char *ps_metric_type_name(enum ps_metric_type type)
{
	switch (type) {
	case PS_METRIC_COUNTER:
		return "counter";
	case PS_METRIC_GAUGE:
		return "gauge";
	case PS_METRIC_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

bool ps_family_has_label(const struct ps_family *f, const char *name)
{
	for (size_t i = 0; i < f->n_labels; i++)
		if (strcmp(f->labels[i], name) == 0)
			return true;
	return false;
}

/*
 * HELP text escapes backslash and newline; label values also the double
 * quote. Invalid UTF-8 becomes U+FFFD: one bad byte would otherwise make a
 * scraper reject the whole file.
 */
static void write_escaped(FILE *out, const char *str, bool is_label_value)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);

	while (n > 0) {
		size_t len = ps_utf8_seq_len(s, n);

		if (len == 0) {
			fputs("\xef\xbf\xbd", out);
			len = 1;
		} else if (*s == '\\') {
			fputs("\\\\", out);
		} else if (*s == '\n') {
			fputs("\\n", out);
		} else if (*s == '"' && is_label_value) {
			fputs("\\\"", out);
		} else {
			fwrite(s, 1, len, out);
		}
		s += len;
		n -= len;
	}
}

static void write_label(FILE *out, bool *first, const char *name, const char *value)
{
	fprintf(out, "%s%s=\"", *first ? "{" : ",", name);
	write_escaped(out, value, true);
	fputc('"', out);
	*first = false;
}

/* {family labels, static labels, le} or nothing when there are none. */
static void write_labels(FILE *out, const struct ps_family *f, const struct ps_series *s,
			 const struct ps_strmap *static_labels, const char *le)
{
	bool first = true;

	for (size_t i = 0; i < f->n_labels; i++)
		write_label(out, &first, f->labels[i], s->values[i] ? s->values[i] : "");
	for (size_t i = 0; static_labels && i < static_labels->n; i++) {
		const char *name = static_labels->keys[i];

		if (ps_family_has_label(f, name) || (le && strcmp(name, "le") == 0))
			continue;
		write_label(out, &first, name, static_labels->values[i]);
	}
	if (le)
		write_label(out, &first, "le", le);
	if (!first)
		fputc('}', out);
}

static void write_sample(FILE *out, const struct ps_family *f, const char *suffix,
			 const struct ps_series *s, const struct ps_strmap *static_labels,
			 const char *le, double value)
{
	char num[PS_NUMBER_MAX];

	fprintf(out, "%s%s", f->name, suffix);
	write_labels(out, f, s, static_labels, le);
	fprintf(out, " %s\n", ps_format_number(num, sizeof(num), value));
}

static void write_histogram(FILE *out, const struct ps_family *f, const struct ps_series *s,
			    const struct ps_strmap *static_labels)
{
	char le[PS_NUMBER_MAX];
	uint64_t cumulative = 0;

	for (size_t i = 0; i < f->n_bounds; i++) {
		cumulative += s->buckets ? s->buckets[i] : 0;
		ps_format_number(le, sizeof(le), f->bounds[i]);
		write_sample(out, f, "_bucket", s, static_labels, le, (double)cumulative);
	}
	write_sample(out, f, "_bucket", s, static_labels, "+Inf", (double)s->count);
	write_sample(out, f, "_sum", s, static_labels, NULL, s->sum);
	write_sample(out, f, "_count", s, static_labels, NULL, (double)s->count);
}

static void write_family(FILE *out, const struct ps_family *f,
			 const struct ps_strmap *static_labels)
{
	fprintf(out, "# HELP %s ", f->name);
	write_escaped(out, f->help ? f->help : "", false);
	fprintf(out, "\n# TYPE %s %s\n", f->name, ps_metric_type_name(f->type));

	for (size_t i = 0; i < f->n_series; i++) {
		const struct ps_series *s = f->series[i];

		if (f->type == PS_METRIC_HISTOGRAM)
			write_histogram(out, f, s, static_labels);
		else
			write_sample(out, f, "", s, static_labels, NULL, s->value);
	}
}

int ps_prom_write(FILE *out, const struct ps_flush_ctx *ctx)
{
	const struct ps_registry *r = ctx->registry;

	errno = 0;
	for (size_t i = 0; r && i < r->n_families; i++)
		if (r->families[i]->n_series > 0)
			write_family(out, r->families[i], ctx->static_labels);
	if (ferror(out))
		return errno ? -errno : -EIO;
	return 0;
}
