/* SPDX-License-Identifier: Apache-2.0 */
/* The ICE servers a gateway hands to its sessions: STUN URLs, and TURN URLs with credentials.
 *
 * TURN credentials are minted per session by the shared-secret scheme of
 * common/turn.h, valid for ttl_s, and renewed (an `iceServers` message) when
 * 80% of their life is gone, so a long session never holds expired ones. The
 * welcome after a resume carries fresh ones too.
 */
#ifndef MS_GW_ICE_H
#define MS_GW_ICE_H

#include <stddef.h>
#include <stdint.h>

#include "client.pb-c.h"
#include "err.h"
#include "turn.h"

typedef struct {
    char **stun, **turn; /* URLs */
    size_t n_stun, n_turn;
    char *secret; /* shared with the TURN server; NULL: TURN URLs go out without credentials */
    long ttl_s;   /* credential lifetime */
} ms_gw_ice_t;

/* Storage for one message's servers (the pointers in it point into it). */
typedef struct {
    Meshsig__V1__IceServer srv[2];
    Meshsig__V1__IceServer *ptrs[2];
    char user[MS_TURN_USER_MAX], pass[MS_TURN_PASS_MAX];
} ms_gw_ice_buf_t;

/* Parses comma-separated URL lists. A TURN URL needs a secret (MS_ERR_INVAL,
 * with why set, otherwise: coturn in use-auth-secret mode refuses anonymous
 * allocations). URLs must start with stun:, stuns:, turn: or turns:. */
ms_err_t ms_gw_ice_init(ms_gw_ice_t *ice, const char *stun_csv, const char *turn_csv,
                        const char *secret, long ttl_s, const char **why);
void ms_gw_ice_cleanup(ms_gw_ice_t *ice);
/* 1 when there is anything to hand out. */
int ms_gw_ice_enabled(const ms_gw_ice_t *ice);
/* 1 when credentials expire and so must be renewed. */
int ms_gw_ice_expiring(const ms_gw_ice_t *ice);

/* Fills buf for peer_id at wall time now_s; *out and *n_out point into buf.
 * *expires_at is the TURN credentials' expiry (0 without TURN). */
void ms_gw_ice_fill(const ms_gw_ice_t *ice, const char *peer_id, int64_t now_s,
                    ms_gw_ice_buf_t *buf, Meshsig__V1__IceServer ***out, size_t *n_out,
                    uint64_t *expires_at);

/* Seconds after an issue at which to send fresh credentials (80% of the life). */
long ms_gw_ice_renew_after_s(const ms_gw_ice_t *ice);

#endif
