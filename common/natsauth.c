/* SPDX-License-Identifier: Apache-2.0 */
/* NATS credentials applied to every connection, and URL lists redacted for logs. */
#include <string.h>

#include "natsauth.h"

static int set(const char *s)
{
    return s && *s;
}

ms_err_t ms_nats_auth_check(const ms_nats_auth_t *a, char *why, size_t cap)
{
    if (!a)
        return MS_OK;
    int n = (set(a->user) || set(a->password)) + set(a->token) + set(a->creds);
    const char *msg = NULL;
    if (n > 1)
        msg = "give one of --nats-user/--nats-password, --nats-token or --nats-creds";
    else if (set(a->user) != set(a->password))
        msg = "--nats-user and --nats-password go together";
    if (!msg)
        return MS_OK;
    if (why && cap) {
        strncpy(why, msg, cap - 1);
        why[cap - 1] = '\0';
    }
    return MS_ERR_INVAL;
}

ms_err_t ms_nats_auth_apply(const ms_nats_auth_t *a, natsOptions *o)
{
    natsStatus s = NATS_OK;
    if (!a)
        return MS_OK;
    if (set(a->user))
        s = natsOptions_SetUserInfo(o, a->user, a->password);
    else if (set(a->token))
        s = natsOptions_SetToken(o, a->token);
    else if (set(a->creds))
        s = natsOptions_SetUserCredentialsFromFiles(o, a->creds, NULL);
    return s == NATS_OK ? MS_OK : MS_ERR_INVAL;
}

const char *ms_nats_urls_redact(const char *urls, char *buf, size_t cap)
{
    size_t w = 0;
    if (!cap)
        return buf;
    for (const char *p = urls ? urls : ""; *p && w + 1 < cap;) {
        /* One URL: up to the next comma. Its userinfo ends at the last '@'
         * before any '/' of the path. */
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *host = strstr(p, "://");
        host = host && host < end ? host + 3 : p;
        const char *at = NULL;
        for (const char *q = host; q < end && *q != '/'; q++)
            if (*q == '@')
                at = q;
        const char *segs[3] = {p, at ? "***" : NULL, at ? at : NULL};
        size_t lens[3] = {(size_t)((at ? host : end) - p), 3, at ? (size_t)(end - at) : 0};
        for (int i = 0; i < 3; i++)
            for (size_t k = 0; segs[i] && k < lens[i] && w + 1 < cap; k++)
                buf[w++] = segs[i][k];
        p = end;
        if (*p == ',' && w + 1 < cap)
            buf[w++] = *p++;
        else if (*p == ',')
            break;
    }
    buf[w] = '\0';
    return buf;
}
