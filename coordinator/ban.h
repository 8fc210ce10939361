/* SPDX-License-Identifier: Apache-2.0 */
/* Bans of peer ids from namespaces for a while (the admin API's kick with banS): a join with a
 * banned id is refused BANNED until the ban runs out.
 *
 * Every coordinator keeps every ban it hears of (an admin action goes to all of them), so a ban
 * survives a shard moving to another live coordinator; a coordinator started after the ban does
 * not know it (README "Operator actions"). Deadlines are monotonic. Loop thread only.
 */
#ifndef MS_COORD_BAN_H
#define MS_COORD_BAN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MS_BAN_MAX 100000          /* bans kept at once; more are refused (MS_ERR_FULL) */
#define MS_BAN_MAX_S (30L * 86400) /* longest ban */

typedef struct ms_ban ms_ban_t;

typedef struct {
    ms_ban_t *by_key; /* uthash by "<ns>\0<peer>" */
    size_t n;
} ms_bans_t;

/* Bans peer from ns for seconds (1..MS_BAN_MAX_S) from now_ms, with a reason (copied); a
 * second ban of the same id replaces the first. */
ms_err_t ms_ban_add(ms_bans_t *b, const char *ns, const char *peer, long seconds,
                    const char *reason, uint64_t now_ms);
/* Seconds left of peer's ban from ns (rounded up), 0 when there is none; *reason (borrowed
 * until the next call) says why. An expired ban is dropped here. */
long ms_ban_left(ms_bans_t *b, const char *ns, const char *peer, uint64_t now_ms,
                 const char **reason);
void ms_bans_cleanup(ms_bans_t *b);

#endif
