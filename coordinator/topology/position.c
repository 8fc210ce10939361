/* SPDX-License-Identifier: Apache-2.0 */
/* Deterministic random positions and tie-break keys for peers (see position.h). */
#include <stddef.h>

#include "delaunay.h"
#include "position.h"

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t hash2(const char *ns, const char *peer_id)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, ns);
    h *= 0x100000001b3ULL; /* the zero separator byte: "ab"+"c" differs from "a"+"bc" */
    return fnv1a(h, peer_id);
}

uint64_t ms_position_key(const char *ns, const char *peer_id)
{
    return mix(hash2(ns, peer_id));
}

/* [-range, range) from the top 53 bits */
static double unit_to_range(uint64_t r)
{
    double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
    return (2 * u - 1) * MS_DELAUNAY_RANGE;
}

ms_topo_pos_t ms_position_random(const char *ns, const char *peer_id)
{
    uint64_t h = hash2(ns, peer_id);
    ms_topo_pos_t p;
    /* distinct streams so x, y and the key are independent */
    p.x = unit_to_range(mix(h ^ 0x9e3779b97f4a7c15ULL));
    p.y = unit_to_range(mix(h ^ 0x3c6ef372fe94f82aULL));
    p.key = mix(h);
    return p;
}
