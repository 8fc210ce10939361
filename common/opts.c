/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line flags with MESHSIG_* environment twins. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "version.h"

static void env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "MESHSIG_");
    for (const char *p = name; *p && n + 1 < cap; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static ms_err_t set_value(const ms_opt_t *o, const char *v, const char *from)
{
    char *end = NULL;
    switch (o->type) {
    case MS_OPT_STR:
        *(const char **)o->dst = v;
        return MS_OK;
    case MS_OPT_INT: {
        errno = 0;
        long l = strtol(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "%s: %s expects an integer, got '%s'\n", from, o->name, v);
            return MS_ERR_INVAL;
        }
        *(long *)o->dst = l;
        return MS_OK;
    }
    case MS_OPT_DOUBLE: {
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end) {
            fprintf(stderr, "%s: %s expects a number, got '%s'\n", from, o->name, v);
            return MS_ERR_INVAL;
        }
        *(double *)o->dst = d;
        return MS_OK;
    }
    case MS_OPT_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) {
            *(int *)o->dst = 1;
        } else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") ||
                   !strcmp(v, "off") || !*v) {
            *(int *)o->dst = 0;
        } else {
            fprintf(stderr, "%s: %s expects true or false, got '%s'\n", from, o->name, v);
            return MS_ERR_INVAL;
        }
        return MS_OK;
    }
    return MS_ERR_INVAL;
}

static void usage(const ms_opt_t *opts, const char *prog, const char *summary)
{
    const char *base = strrchr(prog, '/');
    printf("usage: %s [flags]\n%s\n\nflags (each also read from its environment twin):\n",
           base ? base + 1 : prog, summary);
    for (const ms_opt_t *o = opts; o->name; o++) {
        char env[96];
        env_name(o->name, env, sizeof(env));
        char def[64] = "";
        if (!strstr(o->help, "(default"))
            switch (o->type) {
            case MS_OPT_STR:
                if (*(const char **)o->dst)
                    snprintf(def, sizeof(def), " (default %s)", *(const char **)o->dst);
                break;
            case MS_OPT_INT:
                snprintf(def, sizeof(def), " (default %ld)", *(long *)o->dst);
                break;
            case MS_OPT_DOUBLE:
                snprintf(def, sizeof(def), " (default %g)", *(double *)o->dst);
                break;
            case MS_OPT_BOOL:
                break;
            }
        printf("  --%-18s %-26s %s%s\n", o->name, env, o->help, def);
    }
    printf("  --%-18s %-26s %s\n", "version", "", "print the version and exit");
    printf("  --%-18s %-26s %s\n", "help", "", "print this and exit");
}

static int is_help(const char *a)
{
    return !strcmp(a, "--help") || !strcmp(a, "-h");
}

/* One pass over argv: every argument a known flag (with its value) or --help, -h, --version.
 * With apply, the values are set; without, only the flags are checked, so that an unknown
 * flag is an error wherever it stands, before --help or after it. */
static ms_err_t walk_args(const ms_opt_t *opts, int argc, char **argv, int apply)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a) || !strcmp(a, "--version"))
            continue;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", argv[0], a);
            return MS_ERR_INVAL;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const ms_opt_t *o = opts;
        for (; o->name; o++)
            if (strlen(o->name) == nlen && !strncmp(o->name, name, nlen))
                break;
        if (!o->name) {
            fprintf(stderr, "%s: unknown flag '%s' (try --help)\n", argv[0], a);
            return MS_ERR_INVAL;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (o->type == MS_OPT_BOOL)
            v = "1";
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(stderr, "%s: %s needs a value\n", argv[0], a);
            return MS_ERR_INVAL;
        }
        if (apply && set_value(o, v, argv[0]) != MS_OK)
            return MS_ERR_INVAL;
    }
    return MS_OK;
}

ms_err_t ms_opts_parse(const ms_opt_t *opts, int argc, char **argv, const char *summary)
{
    /* An unknown flag is an error even beside --help (`--bogus --help` printed the help and
     * exited 0, as if the flag were fine). */
    if (walk_args(opts, argc, argv, 0) != MS_OK)
        return MS_ERR_INVAL;
    /* --help and --version next: the values are still the defaults. */
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage(opts, argv[0], summary);
            return MS_ERR_STATE;
        }
        if (!strcmp(argv[i], "--version")) {
            ms_version_print(argv[0]);
            return MS_ERR_STATE;
        }
    }
    for (const ms_opt_t *o = opts; o->name; o++) {
        char env[96];
        env_name(o->name, env, sizeof(env));
        const char *v = getenv(env);
        if (v && set_value(o, v, env) != MS_OK)
            return MS_ERR_INVAL;
    }
    return walk_args(opts, argc, argv, 1);
}

ms_err_t ms_opts_hostport(const char *s, char *host, size_t cap, int *port, int *v6)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || !colon[1] || strlen(colon + 1) > 5)
        return MS_ERR_INVAL;
    long p = 0;
    for (const char *d = colon + 1; *d; d++) {
        if (*d < '0' || *d > '9')
            return MS_ERR_INVAL;
        p = p * 10 + (*d - '0');
    }
    if (p > 65535)
        return MS_ERR_INVAL;
    size_t n = (size_t)(colon - s);
    int bracketed = n >= 2 && s[0] == '[' && s[n - 1] == ']';
    if (bracketed) {
        s++;
        n -= 2;
    }
    if (n >= cap || memchr(s, '[', n) || memchr(s, ']', n))
        return MS_ERR_INVAL;
    int has_colon = memchr(s, ':', n) != NULL;
    if (has_colon && !bracketed)
        return MS_ERR_INVAL; /* ::1:8080: which colon ends the address? */
    memcpy(host, s, n);
    host[n] = '\0';
    *port = (int)p;
    *v6 = has_colon;
    return MS_OK;
}

int ms_opts_loopback(const char *hostport)
{
    char host[128];
    int port, v6;
    if (ms_opts_hostport(hostport, host, sizeof(host), &port, &v6) != MS_OK)
        return 0;
    struct in_addr a4;
    struct in6_addr a6;
    if (!v6)
        return !strcmp(host, "localhost") ||
               (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
    if (inet_pton(AF_INET6, host, &a6) != 1)
        return 0;
    return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}
