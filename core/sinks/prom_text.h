/*
 * The registry in Prometheus text exposition format 0.0.4, shared by the
 * stdout sink and the textfile sink, plus the number and UTF-8 helpers the
 * other text formats reuse.
 */
#ifndef PS_CORE_PROM_TEXT_H
#define PS_CORE_PROM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "sink.h"

/* Enough for any number ps_format_number writes. */
#define PS_NUMBER_MAX 32

/*
 * Writes every family that has series: HELP, TYPE, then the series with the
 * family's labels followed by ctx->static_labels. No timestamps.
 * 0, or -errno when the stream reports a write error.
 */
int ps_prom_write(FILE *out, const struct ps_flush_ctx *ctx);

/*
 * The shortest text that reads back as v: integers (within +-2^53) without a
 * fraction, others as %.15g..%.17g, "NaN", "+Inf", "-Inf". Returns buf.
 */
const char *ps_format_number(char *buf, size_t len, double v);

/*
 * Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 when
 * s does not start one. Label values come from traffic and may be anything;
 * writers replace bad bytes with U+FFFD so their output stays valid UTF-8.
 */
size_t ps_utf8_seq_len(const unsigned char *s, size_t n);

/* "counter", "gauge", "histogram". */
const char *ps_metric_type_name(enum ps_metric_type type);

/* Whether the family has a label of that name (static labels never override one). */
bool ps_family_has_label(const struct ps_family *f, const char *name);

#endif
