/* SPDX-License-Identifier: Apache-2.0 */
/* Measurements for the load generator: latency samples and server process RSS and CPU time. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void ms_lg_samples_init(ms_lg_samples_t *s, size_t max)
{
    memset(s, 0, sizeof *s);
    s->max = max;
}

void ms_lg_samples_cleanup(ms_lg_samples_t *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

void ms_lg_samples_add(ms_lg_samples_t *s, uint64_t ns)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        if (cap > s->max)
            cap = s->max;
        uint64_t *v = cap > s->cap ? realloc(s->v, cap * sizeof *v) : NULL;
        if (!v) {
            s->dropped++;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void ms_lg_samples_sort(ms_lg_samples_t *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_u64);
}

uint64_t ms_lg_samples_pct(const ms_lg_samples_t *s, double p)
{
    if (!s->n)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1];
}

int ms_lg_pids_parse(ms_lg_pids_t *p, const char *s)
{
    p->n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || p->n == MS_LG_MAX_PIDS)
            return -1;
        p->pid[p->n++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return 0;
}

int64_t ms_lg_pids_rss(const ms_lg_pids_t *p, int64_t *each)
{
    int64_t total = 0;
    for (int i = 0; i < p->n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", p->pid[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            return -1;
        int64_t kb = -1;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "VmRSS:", 6) == 0) {
                kb = strtoll(line + 6, NULL, 10);
                break;
            }
        }
        fclose(f);
        if (kb < 0)
            return -1;
        if (each)
            each[i] = kb * 1024;
        total += kb * 1024;
    }
    return total;
}

double ms_lg_pids_cpu(const ms_lg_pids_t *p, double *each)
{
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long ticks = 0;
    for (int i = 0; i < p->n; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", p->pid[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            return -1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* comm may contain spaces and parentheses: fields start after the last ')'. */
        char *q = strrchr(buf, ')');
        if (!q)
            return -1;
        unsigned long long ut = 0, st = 0;
        /* After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
         * cmajflt utime(14) stime(15). */
        if (sscanf(q + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
            return -1;
        ticks += ut + st;
        if (each)
            each[i] = (double)(ut + st) / (double)hz;
    }
    return (double)ticks / (double)hz;
}

uint64_t ms_lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
