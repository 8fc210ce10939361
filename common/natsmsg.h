/* SPDX-License-Identifier: Apache-2.0 */
/* Freeing a received NATS message on the thread that handled it.
 *
 * cnats's natsMsg_Destroy hands a message that came from a subscription to
 * its garbage-collector thread and wakes it: one more thread wake-up per
 * message on both cores (bench/RESULTS.md, "p99 across gateways ... tail2").
 * A message taken from a core subscription (a callback's, or NextMsg's) is
 * the taker's alone, so it may free it itself with natsMsg_free, what that
 * thread calls: exported by libnats but not declared in nats.h, found by a
 * configure check (common/CMakeLists.txt); without it, natsMsg_Destroy.
 */
#ifndef MS_NATSMSG_H
#define MS_NATSMSG_H

#include <nats/nats.h>

/* Frees m (NULL: nothing) on the calling thread when libnats allows it. */
void ms_natsmsg_free(natsMsg *m);

#endif
