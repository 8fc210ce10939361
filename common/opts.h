/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line flags with MESHSIG_* environment twins, parsed once into plain structs.
 *
 * A flag named "admin-listen" is --admin-listen on the command line and
 * MESHSIG_ADMIN_LISTEN in the environment; a flag beats its environment twin.
 * String values point into argv or environ and live as long as the process.
 */
#ifndef MS_OPTS_H
#define MS_OPTS_H

#include <stddef.h>

#include "err.h"

typedef enum { MS_OPT_STR, MS_OPT_INT, MS_OPT_BOOL, MS_OPT_DOUBLE } ms_opt_type_t;

typedef struct {
    const char *name; /* "admin-listen" */
    ms_opt_type_t type;
    void *dst; /* const char **, long *, int *, double * */
    const char *help;
} ms_opt_t;

/* Parses the environment, then argv. --help prints usage and --version the version; both
 * return MS_ERR_STATE (the caller exits 0); a bad flag prints a message and returns MS_ERR_INVAL
 * (an unknown flag, an argument that is no flag or a flag without its value: also beside
 * --help or --version, wherever it stands).
 * --help shows the defaults as compiled in, whatever the environment or other flags say (it
 * showed the environment's values as defaults, secrets included); a help text that says
 * "(default" itself (a sentinel such as -1 standing for a computed default) gets no value
 * appended. */
ms_err_t ms_opts_parse(const ms_opt_t *opts, int argc, char **argv, const char *summary);

/* A listen address flag's value, HOST:PORT: HOST a name, an IPv4 address, an IPv6 address
 * in brackets ("[::1]:8080"; host gets it without them, *v6 = 1) or empty (every address).
 * PORT is 0..65535 in digits. MS_ERR_INVAL when s is not of that form or HOST does not fit
 * cap bytes. */
ms_err_t ms_opts_hostport(const char *s, char *host, size_t cap, int *port, int *v6);
/* 1 when a HOST:PORT names a loopback address: 127.x, [::1], [::ffff:127.x] or localhost. */
int ms_opts_loopback(const char *hostport);

#endif
