/* SPDX-License-Identifier: Apache-2.0 */
/* Hello: token or resume-token checks, the join sent to the owner, and its deadline.
 *
 * The owner never sees tokens: the gateway verifies them (JWT, or an HMAC
 * resume token that every gateway can check with the shared resume key)
 * and forwards the hello without them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "intern.h"
#include "internal.h"
#include "subject.h"
#include "log.h"
#include "resume.h"

/* Back to "connected, not joined": after a leave, a refused or timed-out join. */
void ms_gw_session_reset(ms_gateway_t *gw, ms_session_t *s)
{
    ms_gw_direct_forget(gw, s, NULL);
    /* Stored emits in flight or unacked stay stored for the next join; a
     * receipt sent later would name this session's next peer or namespace. */
    ms_gw_receipt_forget(gw, s);
    ms_gw_inflight_forget(gw, s); /* answers to the old peer's requests are dropped */
    s->owner_signalled = 0;
    ms_gw_peer_index_remove(gw, s);
    ms_session_forget_peer(s);
    s->state = MS_SESSION_NEW;
    ms_intern_release(s->ns);
    s->ns = NULL;
    ms_session_set_peer(s, NULL);
    /* Back to "say hello" with a fresh deadline: without one, a client could
     * hello, leave and keep the connection (and a --max-sessions place)
     * forever while in no namespace. */
    ms_gw_deadline_arm(gw, s, &gw->hello_waits, (uint64_t)gw->cfg->hello_timeout_ms * 1000u);
}

void ms_gw_hello_deadline(ms_gateway_t *gw, ms_session_t *s)
{
    if (s->state == MS_SESSION_NEW && !s->ns) {
        /* The hello deadline: a connection that never says hello. */
        ms_gw_send_error(gw, s, NULL, ERR(BAD_REQUEST), "no hello within %ld ms",
                         gw->cfg->hello_timeout_ms);
        ms_gw_session_close(s, CLOSE_POLICY);
        return;
    }
    if (s->state != MS_SESSION_JOINING)
        return;
    if (s->join && ms_clock_mono_us() < s->join->deadline_us) {
        /* No answer yet: the request or its answer may have been lost while a
         * shard changed hands. Ask again; the owner dedups on the session. */
        char subj[160];
        ms_subject_shard(subj, sizeof(subj), gw->cfg->prefix, s->shard);
        ms_bus_publish(gw->bus, subj, gw->subject, s->join->buf, s->join->len);
        ms_gw_deadline_arm(gw, s, &gw->join_waits, LWS_US_PER_SEC);
        return;
    }
    /* Nobody owns the shard (or it is overloaded). The session may try again. */
    ms_gw_send_error(gw, s, s->join ? ms_session_join_cid(s->join) : NULL, ERR(UNAVAILABLE),
                     "namespace %s is not being served right now; retry", s->ns);
    ms_gw_publish_leave(gw, s, "join timed out"); /* in case the owner answers late */
    ms_gw_session_reset(gw, s);
}

/* The client's latest position, packed, for a takeover's resync report. */
void ms_gw_keep_position(ms_session_t *s, const Meshsig__V1__Position *pos)
{
    ms_session_ext_t *x = ms_session_ext(s);
    if (!x)
        return;
    free(x->hello_pos);
    x->hello_pos_len = meshsig__v1__position__get_packed_size(pos);
    if ((x->hello_pos = malloc(x->hello_pos_len ? x->hello_pos_len : 1)))
        meshsig__v1__position__pack(pos, x->hello_pos);
    else
        x->hello_pos_len = 0;
}

void ms_gw_hello(ms_gateway_t *gw, ms_session_t *s, const char *cid, Meshsig__V1__Hello *hello)
{
    ms_gw_hello_claim(gw, s, cid, hello, NULL, 0);
}

void ms_gw_hello_claim(ms_gateway_t *gw, ms_session_t *s, const char *cid,
                       Meshsig__V1__Hello *hello, const uint8_t *claim, size_t claim_len)
{
    char peer[MS_AUTH_PEER_ID_MAX + 1] = "";
    if (s->state != MS_SESSION_NEW) {
        ms_gw_send_error(gw, s, cid, ERR(ALREADY_JOINED), "this connection has already said hello");
        return;
    }
    if (!*hello->namespace_) {
        ms_gw_send_error(gw, s, cid, ERR(BAD_REQUEST), "hello.namespace is required");
        return;
    }
    int resume = 0;
    /* What the hello may ask for: everything in insecure dev mode, else what
     * the token's claims grant. */
    int may_policy = !gw->auth, may_source = !gw->auth;
    if (*hello->resume_token && gw->resume) {
        /* A resume token stands in for the hello token: it proves the holder
         * was this peer in this namespace a moment ago. */
        ms_resume_claims_t rc;
        const char *why = NULL;
        if (ms_resume_verify_with(gw->resume, hello->resume_token, ms_clock_wall_s(), &rc, &why) !=
                MS_OK ||
            strcmp(rc.ns, hello->namespace_)) {
            ms_info("session %llu: resume token rejected (%s)", (unsigned long long)s->id,
                    why ? why : "other namespace");
            ms_gw_send_error(gw, s, cid, ERR(RESUME_FAILED),
                             "invalid or expired resume token; join without it");
            return;
        }
        /* The token names the peer; a hello naming another one would be
         * welcomed as the token's peer while its client believes it is the
         * other: refused, as any resume that does not hold. No peerId (or an
         * empty one) takes the token's. */
        if (*hello->peer_id && strcmp(hello->peer_id, rc.peer_id) != 0) {
            ms_info("session %llu: resume token rejected (hello.peerId is not the token's peer)",
                    (unsigned long long)s->id);
            ms_gw_send_error(gw, s, cid, ERR(RESUME_FAILED),
                             "hello.peerId differs from the resume token's peer; resume without "
                             "peerId or with the welcome's, or join without the token");
            return;
        }
        snprintf(peer, sizeof(peer), "%s", rc.peer_id);
        resume = 1;
        /* What the first hello's token allowed, the resumed session may do
         * (a source that lost its connection joins as the source again). */
        may_policy |= (rc.grants & MS_RESUME_GRANT_POLICY) != 0;
        may_source |= (rc.grants & MS_RESUME_GRANT_SOURCE) != 0;
    } else if (gw->auth) {
        const char *why = NULL;
        ms_err_t err = ms_auth_verify(gw->auth, hello->token, hello->namespace_, ms_clock_wall_s(),
                                      peer, &why);
        if (err == MS_ERR_FORBIDDEN) {
            ms_gw_send_error(gw, s, cid, ERR(FORBIDDEN), "the token does not allow namespace %s",
                             hello->namespace_);
            return;
        }
        if (err != MS_OK) {
            ms_info("session %llu: token rejected (%s)", (unsigned long long)s->id,
                    why ? why : ms_err_str(err));
            ms_gw_send_error(gw, s, cid, ERR(UNAUTHORIZED), "missing, invalid or expired token");
            return;
        }
        may_policy = ms_auth_token_grants(hello->token, "policy");
        may_source = ms_auth_token_grants(hello->token, "source");
        if (*hello->peer_id && strcmp(hello->peer_id, peer) != 0) {
            ms_gw_send_error(gw, s, cid, ERR(FORBIDDEN),
                             "hello.peerId differs from the token's sub");
            return;
        }
    } else {
        /* Refused, not cut to fit: a longer id would be welcomed as another one. */
        if (strlen(hello->peer_id) >= sizeof(peer)) {
            ms_gw_send_error(gw, s, cid, ERR(BAD_REQUEST),
                             "peer id must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -");
            return;
        }
        snprintf(peer, sizeof(peer), "%s", hello->peer_id);
    }
    ms_intern_release(s->ns);
    s->ns = (char *)ms_intern(hello->namespace_);
    ms_session_set_peer(s, *peer ? peer : NULL); /* out of memory: none, the owner names it */
    if (!s->ns) {
        ms_gw_send_error(gw, s, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    s->shard = ms_bus_shard_of(s->ns, (uint32_t)gw->cfg->shards);
    ms_session_forget_peer(s);
    if (hello->position)
        ms_gw_keep_position(s, hello->position);
    ms_session_ext_t *x = hello->metadata ? ms_session_ext(s) : NULL;
    if (x) {
        x->hello_meta_len = meshsig__v1__struct__get_packed_size(hello->metadata);
        if ((x->hello_meta = malloc(x->hello_meta_len ? x->hello_meta_len : 1)))
            meshsig__v1__struct__pack(hello->metadata, x->hello_meta);
        else
            x->hello_meta_len = 0;
    }

    /* The owner never sees tokens. */
    char *token = hello->token, *resume_token = hello->resume_token;
    hello->token = (char *)"";
    hello->resume_token = (char *)"";
    Meshsig__Bus__Join j = MESHSIG__BUS__JOIN__INIT;
    j.peer_id = peer;
    j.hello = hello;
    j.resume = resume;
    j.may_set_policy = may_policy;
    j.may_be_source = may_source;
    s->source = hello->role == MESHSIG__V1__JOIN_ROLE__SOURCE;
    s->acks_persistent = hello->acks_persistent != 0;
    /* Only claims a token granted travel in the resume token: dev mode grants
     * everyone everything anyway. */
    _Static_assert((MS_RESUME_GRANT_SOURCE | MS_RESUME_GRANT_POLICY) < 4,
                   "ms_session_t.grants is a 2-bit field");
    s->grants = gw->auth ? (uint8_t)((may_source ? MS_RESUME_GRANT_SOURCE : 0) |
                                     (may_policy ? MS_RESUME_GRANT_POLICY : 0))
                         : 0;
    j.claim.data = (uint8_t *)claim;
    j.claim.len = claim ? claim_len : 0;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_JOIN;
    req.join = &j;
    req.client_id = (char *)(cid ? cid : ""); /* kept with the join (publish.c) */
    int rc = ms_gw_publish_request(gw, s, &req, 1);
    hello->token = token;
    hello->resume_token = resume_token;
    if (rc != 0) {
        ms_gw_send_error(gw, s, cid, ERR(UNAVAILABLE), "the message bus is unavailable; retry");
        return;
    }
    s->state = MS_SESSION_JOINING;
    if (s->join) /* NULL when out of memory: no re-send, the deadline answers */
        s->join->deadline_us = ms_clock_mono_us() + (uint64_t)gw->cfg->join_timeout_ms * 1000u;
    /* Retries every second; a shorter timeout than that is rounded up to the
     * next sweep after the retry, which is within 100 ms. */
    ms_gw_deadline_arm(gw, s, &gw->join_waits, LWS_US_PER_SEC);
}

ms_err_t ms_gw_hello_init(ms_gateway_t *gw)
{
    const ms_gw_config_t *cfg = gw->cfg;
    ms_err_t err;
    if (!cfg->insecure_dev) {
        ms_auth_config_t ac = {
            .secret = cfg->jwt_secret && *cfg->jwt_secret ? cfg->jwt_secret : NULL,
            .key_file = cfg->jwt_key_file && *cfg->jwt_key_file ? cfg->jwt_key_file : NULL,
            .jwks_file = cfg->jwt_jwks_file && *cfg->jwt_jwks_file ? cfg->jwt_jwks_file : NULL,
            .issuer = cfg->jwt_issuer,
            .audience = cfg->jwt_audience,
            .leeway_s = cfg->jwt_leeway_s};
        char why[160];
        if (cfg->jwt_alg && ms_auth_alg_parse(cfg->jwt_alg, &ac.alg) != MS_OK) {
            ms_error("--jwt-alg must be HS256, RS256 or ES256");
            return MS_ERR_INVAL;
        }
        if ((err = ms_auth_create_ex(&gw->auth, &ac, why, sizeof why)) != MS_OK) {
            ms_error("cannot set up token verification (--jwt-secret, --jwt-key-file, "
                     "--jwt-jwks-file): %s",
                     why);
            return err;
        }
        ms_info("hello tokens: %zu verification key(s), leeway %ld s%s%s%s%s",
                ms_auth_key_count(gw->auth), cfg->jwt_leeway_s,
                cfg->jwt_issuer && *cfg->jwt_issuer ? ", iss " : "",
                cfg->jwt_issuer && *cfg->jwt_issuer ? cfg->jwt_issuer : "",
                cfg->jwt_audience && *cfg->jwt_audience ? ", aud " : "",
                cfg->jwt_audience && *cfg->jwt_audience ? cfg->jwt_audience : "");
    }

    /* Resume tokens must verify on every gateway, so the key comes from shared
     * configuration: --resume-secret, else derived from the JWT secret, else (dev) fixed. */
    const char *rsrc = cfg->resume_secret && *cfg->resume_secret ? cfg->resume_secret
                       : cfg->jwt_secret && *cfg->jwt_secret     ? cfg->jwt_secret
                       : cfg->insecure_dev                       ? "meshsig-insecure-dev"
                                                                 : NULL;
    if (rsrc) {
        unsigned char key[32];
        unsigned int klen = 0;
        HMAC(EVP_sha256(), "meshsig-resume-key-v1", 21, (const unsigned char *)rsrc, strlen(rsrc),
             key, &klen);
        /* Keyed once: each token then costs no key setup (resume.h). */
        if (klen != sizeof(key) || ms_resume_signer_new(key, sizeof(key), &gw->resume) != MS_OK)
            ms_warn("the resume key could not be set up: clients cannot resume");
        OPENSSL_cleanse(key, sizeof(key));
    } else {
        ms_warn("no --resume-secret (and no --jwt-secret to derive it from): clients cannot "
                "resume after a gateway failure");
    }
    return MS_OK;
}

void ms_gw_hello_cleanup(ms_gateway_t *gw)
{
    ms_auth_destroy(gw->auth);
    gw->auth = NULL;
    ms_resume_signer_free(gw->resume);
    gw->resume = NULL;
}
