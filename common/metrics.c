/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition: a builder that keeps HELP/TYPE once per family (metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void ms_metrics_init(ms_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
}

void ms_metrics_cleanup(ms_metrics_t *m)
{
    for (size_t i = 0; i < m->n_seen; i++)
        free(m->seen[i]);
    free(m->seen);
    free(m->buf);
    memset(m, 0, sizeof(*m));
}

static int reserve(ms_metrics_t *m, size_t more)
{
    if (m->err == MS_ERR_NOMEM)
        return -1;
    if (m->len + more + 1 <= m->cap)
        return 0;
    size_t ncap = m->cap ? m->cap : 2048;
    while (ncap < m->len + more + 1)
        ncap *= 2;
    char *nb = realloc(m->buf, ncap);
    if (!nb) {
        m->err = MS_ERR_NOMEM;
        return -1;
    }
    m->buf = nb;
    m->cap = ncap;
    return 0;
}

static void put(ms_metrics_t *m, const char *s, size_t n)
{
    if (reserve(m, n))
        return;
    memcpy(m->buf + m->len, s, n);
    m->len += n;
    m->buf[m->len] = '\0';
}

static void puts_(ms_metrics_t *m, const char *s)
{
    put(m, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(ms_metrics_t *m, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        put(m, small, (size_t)n);
        return;
    }
    if (reserve(m, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(m->buf + m->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    m->len += (size_t)n;
}

/* Escapes per the format: help text \\ and \n; label values also \". */
static void put_escaped(ms_metrics_t *m, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            puts_(m, "\\\\");
        else if (*s == '\n')
            puts_(m, "\\n");
        else if (quote && *s == '"')
            puts_(m, "\\\"");
        else
            put(m, s, 1);
    }
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no ':'). */
static int name_ok(const char *s, int label)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                    (!label && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return 0;
    }
    return 1;
}

static void fail(ms_metrics_t *m, ms_err_t err, const char *what, const char *name)
{
    ms_error("metrics: %s %s", what, name);
    if (m->err == MS_OK)
        m->err = err;
}

ms_err_t ms_metrics_family(ms_metrics_t *m, const char *name, ms_metric_type_t type,
                           const char *help)
{
    if (!name_ok(name, 0) || strlen(name) >= sizeof(m->family)) {
        fail(m, MS_ERR_INVAL, "invalid family name", name);
        m->family[0] = '\0';
        return MS_ERR_INVAL;
    }
    for (size_t i = 0; i < m->n_seen; i++)
        if (!strcmp(m->seen[i], name)) {
            /* Prometheus would drop the whole scrape: refuse this family instead. */
            fail(m, MS_ERR_EXISTS, "family written twice:", name);
            m->family[0] = '\0';
            return MS_ERR_EXISTS;
        }
    if (m->n_seen == m->cap_seen) {
        size_t ncap = m->cap_seen ? m->cap_seen * 2 : 32;
        char **nv = realloc(m->seen, ncap * sizeof(*nv));
        if (!nv) {
            m->err = MS_ERR_NOMEM;
            return MS_ERR_NOMEM;
        }
        m->seen = nv;
        m->cap_seen = ncap;
    }
    if (!(m->seen[m->n_seen] = strdup(name))) {
        m->err = MS_ERR_NOMEM;
        return MS_ERR_NOMEM;
    }
    m->n_seen++;
    snprintf(m->family, sizeof(m->family), "%s", name);
    putf(m, "# HELP %s ", name);
    put_escaped(m, help ? help : "", 0);
    static const char *const types[] = {"counter", "gauge", "histogram"};
    putf(m, "\n# TYPE %s %s\n", name, types[type]);
    return m->err == MS_ERR_NOMEM ? MS_ERR_NOMEM : MS_OK;
}

/* key="value" (an invalid label name is refused and written as "label"). */
static void put_label(ms_metrics_t *m, const char *key, const char *value)
{
    if (!name_ok(key, 1)) {
        fail(m, MS_ERR_INVAL, "invalid label name", key);
        key = "label";
    }
    putf(m, "%s=\"", key);
    put_escaped(m, value ? value : "", 1);
    puts_(m, "\"");
}

/* name{key="value"} (or name) and a space; 0 when there is no family to write to. */
static int sample_head(ms_metrics_t *m, const char *key, const char *value)
{
    if (!m->family[0])
        return 0; /* its family was refused: so are its samples */
    puts_(m, m->family);
    if (key) {
        puts_(m, "{");
        put_label(m, key, value);
        puts_(m, "}");
    }
    puts_(m, " ");
    return 1;
}

void ms_metrics_u64_2(ms_metrics_t *m, const char *k1, const char *v1, const char *k2,
                      const char *v2, uint64_t v)
{
    if (!m->family[0])
        return;
    puts_(m, m->family);
    puts_(m, "{");
    put_label(m, k1, v1);
    puts_(m, ",");
    put_label(m, k2, v2);
    putf(m, "} %llu\n", (unsigned long long)v);
}

void ms_metrics_u64(ms_metrics_t *m, const char *key, const char *value, uint64_t v)
{
    if (sample_head(m, key, value))
        putf(m, "%llu\n", (unsigned long long)v);
}

void ms_metrics_f64(ms_metrics_t *m, const char *key, const char *value, double v)
{
    if (!sample_head(m, key, value))
        return;
    if (isnan(v))
        puts_(m, "NaN\n");
    else if (isinf(v))
        puts_(m, v > 0 ? "+Inf\n" : "-Inf\n");
    else
        putf(m, "%.17g\n", v);
}

void ms_metrics_counter(ms_metrics_t *m, const char *name, const char *help, uint64_t v)
{
    if (ms_metrics_family(m, name, MS_METRIC_COUNTER, help) == MS_OK)
        ms_metrics_u64(m, NULL, NULL, v);
}

void ms_metrics_gauge(ms_metrics_t *m, const char *name, const char *help, double v)
{
    if (ms_metrics_family(m, name, MS_METRIC_GAUGE, help) == MS_OK)
        ms_metrics_f64(m, NULL, NULL, v);
}

void ms_metrics_histogram(ms_metrics_t *m, const char *name, const char *help, const double *le,
                          const uint64_t *cumulative, size_t n, double sum, uint64_t count)
{
    if (ms_metrics_family(m, name, MS_METRIC_HISTOGRAM, help) != MS_OK)
        return;
    for (size_t i = 0; i < n; i++)
        putf(m, "%s_bucket{le=\"%g\"} %llu\n", name, le[i], (unsigned long long)cumulative[i]);
    putf(m, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name,
         (unsigned long long)count, name, sum, name, (unsigned long long)count);
}

void ms_metrics_append(ms_metrics_t *m, int (*write)(char *buf, size_t cap, void *ud), void *ud)
{
    size_t room = 1024;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (reserve(m, room))
            return;
        int n = write(m->buf + m->len, m->cap - m->len, ud);
        if (n < 0)
            return;
        if ((size_t)n < m->cap - m->len) {
            m->len += (size_t)n;
            m->buf[m->len] = '\0';
            return;
        }
        room = (size_t)n + 1;
        m->buf[m->len] = '\0';
    }
}
