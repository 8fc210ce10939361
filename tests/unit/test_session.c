/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the gateway session's own storage (gateway/session.c): its size (lws allocates
 * it per connection: 216 bytes is a 224-byte chunk), the peer id kept inside it or copied, and
 * the circular outbound queue in order through partial takes and cleanup. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

START_TEST(size_is_one_malloc_step)
{
    /* glibc: a 216-byte request is a 224-byte chunk; one byte more is 240. */
    ck_assert_uint_le(sizeof(ms_session_t), 216);
}
END_TEST

START_TEST(peer_id_inside_or_copied)
{
    ms_session_t *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(ms_session_set_peer(s, "p18999"), 0);
    ck_assert_str_eq(s->peer_id, "p18999");
    ck_assert(s->peer_id >= (char *)s && s->peer_id < (char *)(s + 1));
    ck_assert_int_eq(ms_session_set_peer(s, "123456789012345"), 0); /* MS_SESSION_PEER_SMALL */
    ck_assert_ptr_eq(s->peer_id, s->peer_small);
    ck_assert_str_eq(s->peer_id, "123456789012345");
    const char *uuid = "0b6c1f0e-3f4e-4a52-9a3e-6d1f6b1c2a77";
    ck_assert_int_eq(ms_session_set_peer(s, uuid), 0);
    ck_assert(s->peer_id < (char *)s || s->peer_id >= (char *)(s + 1));
    ck_assert_str_eq(s->peer_id, uuid);
    ck_assert_int_eq(ms_session_set_peer(s, ""), 0); /* an empty id is an id */
    ck_assert_ptr_nonnull(s->peer_id);
    ck_assert_str_eq(s->peer_id, "");
    ck_assert_int_eq(ms_session_set_peer(s, uuid), 0);
    ck_assert_int_eq(ms_session_set_peer(s, NULL), 0);
    ck_assert_ptr_null(s->peer_id);
    ck_assert_int_eq(ms_session_set_peer(s, uuid), 0);
    ms_session_cleanup(s); /* frees the copy (ASan: no leak) */
    ck_assert_ptr_null(s->peer_id);
    free(s);
}
END_TEST

/* Frames come out in the order queued, whole, through takes of a few at a time
 * and frames queued between takes. */
START_TEST(queue_in_order)
{
    ms_session_t *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    unsigned char *buf = NULL;
    size_t cap = 0;
    unsigned receipts;
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 50; round++) {
        for (int k = 0; k < round % 7; k++) {
            unsigned char msg[4] = {(unsigned char)next_in, 0xab, 0xcd, (unsigned char)round};
            int was_empty = s->tail == NULL;
            ck_assert_int_eq(ms_session_queue(s, msg, 1 + (size_t)(next_in % 4), 1, 1 << 20), 0);
            if (was_empty)
                ck_assert_ptr_eq(ms_session_head(s), s->tail); /* alone: first and last */
            next_in++;
        }
        /* at most three frames of at most 6 bytes (2-byte header) per take */
        ssize_t n = ms_session_take_frames(s, &buf, &cap, 18, &receipts);
        ck_assert_int_ge(n, 0);
        for (ssize_t off = 0; off < n;) {
            unsigned char *f = buf + LWS_PRE + off;
            ck_assert_uint_eq(f[0], 0x82); /* final, binary */
            ck_assert_uint_eq(f[1], 1 + (unsigned)(next_out % 4));
            ck_assert_uint_eq(f[2], (unsigned char)next_out);
            off += 2 + f[1];
            next_out++;
        }
        ck_assert_uint_eq(s->queued == 0, s->tail == NULL);
    }
    ck_assert_int_gt(next_in, next_out); /* some left queued for cleanup */
    ms_session_cleanup(s);
    ck_assert_ptr_null(s->tail);
    ck_assert_ptr_null(ms_session_head(s));
    ck_assert_uint_eq(s->queued, 0);
    free(buf);
    free(s);
}
END_TEST

/* The session's list nodes (dlist.h): FIFO order, removal from anywhere, a re-add moves a
 * node to the tail, a zeroed list is empty and a zeroed node detached. */
START_TEST(dlist_fifo)
{
    ms_dlist_t l = {0};
    ms_dnode_t n[4] = {{0}};
    ck_assert_ptr_null(ms_dlist_first(&l));
    ms_dnode_remove(&n[0]); /* detached: nothing */
    for (int i = 0; i < 4; i++)
        ms_dlist_add_tail(&l, &n[i]);
    ck_assert_ptr_eq(ms_dlist_first(&l), &n[0]);
    ms_dnode_remove(&n[0]);
    ck_assert(!ms_dnode_linked(&n[0]));
    ck_assert_ptr_eq(ms_dlist_first(&l), &n[1]);
    ms_dlist_add_tail(&l, &n[1]); /* 2 3 1 */
    ms_dnode_remove(&n[3]);       /* 2 1 */
    ck_assert_ptr_eq(ms_dlist_first(&l), &n[2]);
    ms_dnode_remove(&n[2]);
    ck_assert_ptr_eq(ms_dlist_first(&l), &n[1]);
    ms_dnode_remove(&n[1]);
    ck_assert_ptr_null(ms_dlist_first(&l));
    ms_dlist_add_tail(&l, &n[3]); /* a used list, empty again, takes nodes */
    ck_assert_ptr_eq(ms_dlist_first(&l), &n[3]);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("session");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, size_is_one_malloc_step);
    tcase_add_test(tc, peer_id_inside_or_copied);
    tcase_add_test(tc, queue_in_order);
    tcase_add_test(tc, dlist_fifo);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
