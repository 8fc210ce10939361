/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr as text or JSON lines. */
#ifndef MS_LOG_H
#define MS_LOG_H

typedef enum { MS_LOG_DEBUG = 0, MS_LOG_INFO, MS_LOG_WARN, MS_LOG_ERROR } ms_log_level_t;

/* Set once at start-up, before other threads run. component names the process ("gateway"). */
void ms_log_init(const char *component, ms_log_level_t min_level, int json);
/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int ms_log_level_parse(const char *s);
/* Thread-safe: one write(2) per line. */
void ms_log(ms_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ms_debug(...) ms_log(MS_LOG_DEBUG, __VA_ARGS__)
#define ms_info(...) ms_log(MS_LOG_INFO, __VA_ARGS__)
#define ms_warn(...) ms_log(MS_LOG_WARN, __VA_ARGS__)
#define ms_error(...) ms_log(MS_LOG_ERROR, __VA_ARGS__)

#endif
