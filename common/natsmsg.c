/* SPDX-License-Identifier: Apache-2.0 */
/* A received NATS message freed on the calling thread (natsmsg.h). */
#include "natsmsg.h"

#ifdef MS_HAVE_NATSMSG_FREE
/* libnats's own free of a message (src/msg.h; exported, not in nats.h). */
void natsMsg_free(void *object);
#endif

void ms_natsmsg_free(natsMsg *m)
{
    if (!m)
        return;
#ifdef MS_HAVE_NATSMSG_FREE
    natsMsg_free(m);
#else
    natsMsg_Destroy(m);
#endif
}
