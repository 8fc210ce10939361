/* SPDX-License-Identifier: Apache-2.0 */
/* Names for ms_err_t. */
#include "err.h"

const char *ms_err_str(ms_err_t err)
{
    switch (err) {
    case MS_OK:
        return "ok";
    case MS_ERR_NOMEM:
        return "out of memory";
    case MS_ERR_INVAL:
        return "invalid argument";
    case MS_ERR_NOTFOUND:
        return "not found";
    case MS_ERR_EXISTS:
        return "already exists";
    case MS_ERR_FULL:
        return "full";
    case MS_ERR_TOOBIG:
        return "too large";
    case MS_ERR_AUTH:
        return "authentication failed";
    case MS_ERR_IO:
        return "i/o error";
    case MS_ERR_BUS:
        return "bus (NATS) error";
    case MS_ERR_LWS:
        return "websocket error";
    case MS_ERR_TIMEOUT:
        return "timed out";
    case MS_ERR_STATE:
        return "invalid state";
    case MS_ERR_UNSUPPORTED:
        return "unsupported";
    case MS_ERR_FORBIDDEN:
        return "forbidden";
    }
    return "unknown error";
}
