/* SPDX-License-Identifier: Apache-2.0 */
/* Measurements for the load generator: latency samples and server process RSS and CPU time. */
#ifndef MS_LG_STATS_H
#define MS_LG_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Latency samples in nanoseconds; grows up to a fixed cap, then counts the overflow. */
typedef struct {
    uint64_t *v;
    size_t n, cap, max, dropped;
} ms_lg_samples_t;

void ms_lg_samples_init(ms_lg_samples_t *s, size_t max);
void ms_lg_samples_cleanup(ms_lg_samples_t *s);
void ms_lg_samples_add(ms_lg_samples_t *s, uint64_t ns);
/* Sorts the samples; call once before ms_lg_samples_pct. */
void ms_lg_samples_sort(ms_lg_samples_t *s);
/* The p-th percentile (0..100) by nearest rank, in ns; 0 without samples. */
uint64_t ms_lg_samples_pct(const ms_lg_samples_t *s, double p);

/* The server processes whose RSS and CPU are summed. */
#define MS_LG_MAX_PIDS 8
typedef struct {
    int pid[MS_LG_MAX_PIDS];
    int n;
} ms_lg_pids_t;

/* Parses "123,456"; returns 0 or -1. */
int ms_lg_pids_parse(ms_lg_pids_t *p, const char *s);
/* Sum of VmRSS over the processes, in bytes; -1 if any cannot be read (it died). When each is
 * not NULL it receives the processes' own figures (MS_LG_MAX_PIDS entries). */
int64_t ms_lg_pids_rss(const ms_lg_pids_t *p, int64_t *each);
/* Sum of utime+stime over the processes (all threads), in seconds; -1 if any cannot be read.
 * When each is not NULL it receives the processes' own figures. */
double ms_lg_pids_cpu(const ms_lg_pids_t *p, double *each);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t ms_lg_now_ns(void);

#endif
