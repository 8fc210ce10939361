/* SPDX-License-Identifier: Apache-2.0 */
/* The two clocks: monotonic for every deadline and interval, wall only for times that cross hosts.
 *
 * The wall clock (CLOCK_REALTIME) can step by hours when NTP or an operator
 * sets it; an interval measured on it expires deadlines at once or never. So
 * every timeout, liveness check, retry and rate in meshsig reads the
 * monotonic clock (CLOCK_MONOTONIC: steady, meaningless across processes),
 * and the wall clock is read only for values another host or a person reads:
 * token exp/nbf, resume-token issue times, latency stamps carried on the bus,
 * "started at" in heartbeats, log timestamps.
 *
 * Thread safety: all functions may be called from any thread.
 */
#ifndef MS_CLOCK_H
#define MS_CLOCK_H

#include <stdint.h>

/* Monotonic time since an arbitrary point (boot): for deadlines and intervals. */
uint64_t ms_clock_mono_ms(void);
uint64_t ms_clock_mono_us(void);

/* Wall-clock time since the Unix epoch: only for times exchanged with other
 * hosts or shown to people, never to measure an interval within a process. */
uint64_t ms_clock_wall_ms(void);
uint64_t ms_clock_wall_us(void);
int64_t ms_clock_wall_s(void);

#endif
