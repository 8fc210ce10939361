/* SPDX-License-Identifier: Apache-2.0 */
/* The monotonic and the wall clock (see clock.h). */
#include "clock.h"

#include <time.h>

static uint64_t read_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ms_clock_mono_us(void)
{
    return read_us(CLOCK_MONOTONIC);
}

uint64_t ms_clock_mono_ms(void)
{
    return read_us(CLOCK_MONOTONIC) / 1000u;
}

uint64_t ms_clock_wall_us(void)
{
    return read_us(CLOCK_REALTIME);
}

uint64_t ms_clock_wall_ms(void)
{
    return read_us(CLOCK_REALTIME) / 1000u;
}

int64_t ms_clock_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}
