/* SPDX-License-Identifier: Apache-2.0 */
/* The project's one error enum. */
#ifndef MS_ERR_H
#define MS_ERR_H

typedef enum {
    MS_OK = 0,
    MS_ERR_NOMEM,       /* an allocation failed */
    MS_ERR_INVAL,       /* an argument or input is malformed */
    MS_ERR_NOTFOUND,    /* the thing named does not exist */
    MS_ERR_EXISTS,      /* the thing already exists */
    MS_ERR_FULL,        /* a capacity limit was reached */
    MS_ERR_TOOBIG,      /* a size limit was exceeded */
    MS_ERR_AUTH,        /* authentication failed */
    MS_ERR_IO,          /* a system call or socket failed */
    MS_ERR_BUS,         /* NATS failed */
    MS_ERR_LWS,         /* libwebsockets failed */
    MS_ERR_TIMEOUT,     /* a deadline passed */
    MS_ERR_STATE,       /* the call is not valid in the current state */
    MS_ERR_UNSUPPORTED, /* a valid request this build does not support */
    MS_ERR_FORBIDDEN    /* authenticated, but not allowed this (e.g. the namespace) */
} ms_err_t;

/* A static, human-readable name for err. Never NULL. */
const char *ms_err_str(ms_err_t err);

#endif
