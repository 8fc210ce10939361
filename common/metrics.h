/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition (format 0.0.4) for both binaries' /metrics.
 *
 * Ours, in one file: Debian 12 packages no C Prometheus client library (only
 * the C++ prometheus-cpp, Perl and Rust ones), and what /metrics needs is a
 * text builder, not a registry. It keeps the format's rules so a caller cannot
 * break them: every family gets HELP and TYPE exactly once, its samples follow
 * it together, label values and help text are escaped. A family written twice
 * (Prometheus drops the whole scrape for that) is refused and logged.
 *
 * Usage: init, then per family ms_metrics_family + samples (or the one-sample
 * shorthands), then hand out buf/len, then cleanup. Not thread-safe: one
 * builder per scrape.
 */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum { MS_METRIC_COUNTER = 0, MS_METRIC_GAUGE, MS_METRIC_HISTOGRAM } ms_metric_type_t;

typedef struct {
    char *buf; /* the text so far, NUL-terminated (NULL until the first write) */
    size_t len, cap;
    ms_err_t err;     /* the first failure (MS_ERR_NOMEM, MS_ERR_EXISTS, MS_ERR_INVAL) */
    char family[128]; /* the family samples go to; "" before the first */
    char **seen;      /* families written, to refuse a repeat */
    size_t n_seen, cap_seen;
} ms_metrics_t;

void ms_metrics_init(ms_metrics_t *m);
void ms_metrics_cleanup(ms_metrics_t *m);

/* Starts family name (a valid metric name) with its HELP and TYPE lines.
 * Fails (and writes nothing) for a name already written or not valid. */
ms_err_t ms_metrics_family(ms_metrics_t *m, const char *name, ms_metric_type_t type,
                           const char *help);
/* A sample of the current family: name{key="value"} v, or name v when key is NULL. */
void ms_metrics_u64(ms_metrics_t *m, const char *key, const char *value, uint64_t v);
void ms_metrics_f64(ms_metrics_t *m, const char *key, const char *value, double v);
/* A sample with two labels: name{k1="v1",k2="v2"} v. */
void ms_metrics_u64_2(ms_metrics_t *m, const char *k1, const char *v1, const char *k2,
                      const char *v2, uint64_t v);
/* A family with one unlabelled sample. */
void ms_metrics_counter(ms_metrics_t *m, const char *name, const char *help, uint64_t v);
void ms_metrics_gauge(ms_metrics_t *m, const char *name, const char *help, double v);
/* A histogram family: n buckets with upper bounds le[] and cumulative counts,
 * then +Inf (= count), _sum and _count. */
void ms_metrics_histogram(ms_metrics_t *m, const char *name, const char *help, const double *le,
                          const uint64_t *cumulative, size_t n, double sum, uint64_t count);
/* Appends text formatted elsewhere (whole families, by code that writes into a buffer):
 * write(buf, cap, ud) returns what snprintf would; the text is kept only if it fit. */
void ms_metrics_append(ms_metrics_t *m, int (*write)(char *buf, size_t cap, void *ud), void *ud);

#endif
