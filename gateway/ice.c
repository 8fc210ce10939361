/* SPDX-License-Identifier: Apache-2.0 */
/* The ICE servers a gateway hands to its sessions: STUN URLs, and TURN URLs with credentials. */
#include <stdlib.h>
#include <string.h>

#include "ice.h"
#include "internal.h"
#include "log.h"

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int url_ok(const char *u, int turn)
{
    if (turn)
        return !strncmp(u, "turn:", 5) || !strncmp(u, "turns:", 6);
    return !strncmp(u, "stun:", 5) || !strncmp(u, "stuns:", 6);
}

/* Splits csv into trimmed, non-empty URLs. */
static ms_err_t split(const char *csv, int turn, char ***out, size_t *n, const char **why)
{
    *out = NULL;
    *n = 0;
    if (!csv || !*csv)
        return MS_OK;
    size_t cap = 1;
    for (const char *p = csv; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof(*v));
    if (!v)
        return MS_ERR_NOMEM;
    const char *p = csv;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            if (!(v[*n] = strndup(p, len))) {
                free_list(v, *n);
                return MS_ERR_NOMEM;
            }
            if (!url_ok(v[*n], turn)) {
                *why = turn ? "TURN URLs start with turn: or turns:"
                            : "STUN URLs start with stun: or stuns:";
                free_list(v, *n + 1);
                return MS_ERR_INVAL;
            }
            (*n)++;
        }
        p += len;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',')
            p++;
    }
    *out = v;
    return MS_OK;
}

ms_err_t ms_gw_ice_init(ms_gw_ice_t *ice, const char *stun_csv, const char *turn_csv,
                        const char *secret, long ttl_s, const char **why)
{
    memset(ice, 0, sizeof(*ice));
    const char *dummy;
    if (!why)
        why = &dummy;
    ms_err_t err = split(stun_csv, 0, &ice->stun, &ice->n_stun, why);
    if (err == MS_OK)
        err = split(turn_csv, 1, &ice->turn, &ice->n_turn, why);
    if (err != MS_OK)
        goto fail;
    if (ice->n_turn && (!secret || !*secret)) {
        *why = "TURN URLs need --turn-secret (the TURN server's static-auth-secret)";
        err = MS_ERR_INVAL;
        goto fail;
    }
    if (ttl_s < 10 || ttl_s > 7 * 86400) {
        *why = "--turn-ttl-s must be 10 .. 604800";
        err = MS_ERR_INVAL;
        goto fail;
    }
    if (secret && *secret && !(ice->secret = strdup(secret))) {
        err = MS_ERR_NOMEM;
        goto fail;
    }
    ice->ttl_s = ttl_s;
    return MS_OK;
fail:
    ms_gw_ice_cleanup(ice);
    return err;
}

void ms_gw_ice_cleanup(ms_gw_ice_t *ice)
{
    free_list(ice->stun, ice->n_stun);
    free_list(ice->turn, ice->n_turn);
    free(ice->secret);
    memset(ice, 0, sizeof(*ice));
}

int ms_gw_ice_enabled(const ms_gw_ice_t *ice)
{
    return ice->n_stun || ice->n_turn;
}

int ms_gw_ice_expiring(const ms_gw_ice_t *ice)
{
    return ice->n_turn && ice->secret;
}

long ms_gw_ice_renew_after_s(const ms_gw_ice_t *ice)
{
    return ice->ttl_s - ice->ttl_s / 5;
}

void ms_gw_ice_fill(const ms_gw_ice_t *ice, const char *peer_id, int64_t now_s,
                    ms_gw_ice_buf_t *buf, Meshsig__V1__IceServer ***out, size_t *n_out,
                    uint64_t *expires_at)
{
    size_t n = 0;
    *expires_at = 0;
    if (ice->n_stun) {
        meshsig__v1__ice_server__init(&buf->srv[n]);
        buf->srv[n].urls = ice->stun;
        buf->srv[n].n_urls = ice->n_stun;
        buf->ptrs[n] = &buf->srv[n];
        n++;
    }
    if (ice->n_turn && ice->secret &&
        ms_turn_credential(ice->secret, peer_id, now_s + ice->ttl_s, buf->user, buf->pass) ==
            MS_OK) {
        meshsig__v1__ice_server__init(&buf->srv[n]);
        buf->srv[n].urls = ice->turn;
        buf->srv[n].n_urls = ice->n_turn;
        buf->srv[n].username = buf->user;
        buf->srv[n].credential = buf->pass;
        buf->ptrs[n] = &buf->srv[n];
        n++;
        *expires_at = (uint64_t)(now_s + ice->ttl_s);
    }
    *out = buf->ptrs;
    *n_out = n;
}

/* ---- on the gateway ------------------------------------------------------- */

ms_err_t ms_gw_ice_setup(ms_gateway_t *gw)
{
    const ms_gw_config_t *cfg = gw->cfg;
    const char *why = "";
    ms_err_t err = ms_gw_ice_init(&gw->ice, cfg->stun_urls, cfg->turn_urls, cfg->turn_secret,
                                  cfg->turn_ttl_s, &why);
    if (err == MS_ERR_INVAL)
        ms_error("%s", why);
    else if (err == MS_OK && cfg->turn_secret && *cfg->turn_secret && !gw->ice.n_turn)
        ms_warn("--turn-secret is set but --turn-urls is empty: no TURN server is handed out");
    else if (err == MS_OK && ms_gw_ice_enabled(&gw->ice))
        ms_info("ICE servers in the welcome: %zu STUN, %zu TURN URLs (credentials for %ld s)",
                gw->ice.n_stun, gw->ice.n_turn, gw->ice.ttl_s);
    return err;
}

static uint32_t mono_s(void)
{
    /* 0 means "no renewal due": count from 1. */
    return (uint32_t)(ms_clock_mono_us() / 1000000u) + 1u;
}

void ms_gw_ice_welcome(ms_gateway_t *gw, ms_session_t *s, Meshsig__V1__Welcome *w,
                       ms_gw_ice_buf_t *buf)
{
    if (!ms_gw_ice_enabled(&gw->ice) || !s->peer_id)
        return;
    uint64_t expires = 0;
    ms_gw_ice_fill(&gw->ice, s->peer_id, (int64_t)(ms_clock_wall_ms() / 1000u), buf,
                   &w->ice_servers, &w->n_ice_servers, &expires);
    w->ice_expires_at = expires;
    s->ice_renew_s =
        ms_gw_ice_expiring(&gw->ice) ? mono_s() + (uint32_t)ms_gw_ice_renew_after_s(&gw->ice) : 0;
}

void ms_gw_ice_sweep(ms_gateway_t *gw, uint64_t now_us)
{
    if (!ms_gw_ice_expiring(&gw->ice) || now_us < gw->ice_next_walk_us)
        return;
    gw->ice_next_walk_us = now_us + 1000000u;
    uint32_t now = mono_s();
    ms_session_t *s;
    MS_PIDX_FOREACH(&gw->sessions, i, s)
    {
        if (!s->ice_renew_s || now < s->ice_renew_s || s->state != MS_SESSION_JOINED ||
            !s->peer_id || s->closing)
            continue;
        ms_gw_ice_buf_t buf;
        Meshsig__V1__IceServers is = MESHSIG__V1__ICE_SERVERS__INIT;
        uint64_t expires = 0;
        ms_gw_ice_fill(&gw->ice, s->peer_id, (int64_t)(ms_clock_wall_ms() / 1000u), &buf,
                       &is.servers, &is.n_servers, &expires);
        is.expires_at = expires;
        Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
        m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ICE_SERVERS;
        m.ice_servers = &is;
        ms_gw_send(gw, s, &m);
        s->ice_renew_s = now + (uint32_t)ms_gw_ice_renew_after_s(&gw->ice);
        gw->n_ice_renewals++;
    }
}
