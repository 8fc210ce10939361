/* SPDX-License-Identifier: Apache-2.0 */
/* Vivaldi network coordinates with height vectors and adaptive timestep (see vivaldi.h). */
#include <math.h>

#include "vivaldi.h"

void ms_vivaldi_init(ms_vivaldi_t *c, uint64_t seed)
{
    *c = (ms_vivaldi_t){.h = MS_VIVALDI_MIN_HEIGHT,
                        .err = MS_VIVALDI_ERR_MAX,
                        .ph = MS_VIVALDI_MIN_HEIGHT,
                        .rng = seed};
}

double ms_vivaldi_distance(const ms_vivaldi_t *a, const ms_vivaldi_t *b)
{
    return hypot(a->x - b->x, a->y - b->y) + a->h + b->h;
}

static double rnd_unit(ms_vivaldi_t *c)
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

ms_err_t ms_vivaldi_update(ms_vivaldi_t *self, const ms_vivaldi_t *remote, double rtt_ms)
{
    if (!(rtt_ms > 0) || !isfinite(rtt_ms))
        return MS_ERR_INVAL;
    double dx = self->x - remote->x, dy = self->y - remote->y;
    double plane = hypot(dx, dy);
    double dist = plane + self->h + remote->h;
    /* Sample weight: trust ourselves less when our error is the larger one. */
    double ei = self->err, ej = remote->err > 0 ? remote->err : MS_VIVALDI_ERR_MAX;
    double w = ei / (ei + ej);
    double es = fabs(dist - rtt_ms) / rtt_ms;
    double err = es * MS_VIVALDI_CE * w + ei * (1 - MS_VIVALDI_CE * w);
    if (err > MS_VIVALDI_ERR_MAX)
        err = MS_VIVALDI_ERR_MAX;
    if (err < 1e-6)
        err = 1e-6;
    self->err = err;
    double delta = MS_VIVALDI_CC * w;
    double force = delta * (rtt_ms - dist);
    if (plane < 1e-9) {
        /* Coincident: push apart in a direction of our own choosing. */
        double a = 2 * 3.14159265358979323846 * rnd_unit(self);
        dx = cos(a);
        dy = sin(a);
        plane = 1;
        dist = 1 + self->h + remote->h;
    }
    /* Unit height vector u(x_i - x_j) = [dx, dy, h_i + h_j] / dist. */
    self->x += force * dx / dist;
    self->y += force * dy / dist;
    self->h += force * (self->h + remote->h) / dist;
    if (!(self->h >= MS_VIVALDI_MIN_HEIGHT))
        self->h = MS_VIVALDI_MIN_HEIGHT;
    self->samples++;
    return MS_OK;
}

void ms_vivaldi_mark_placed(ms_vivaldi_t *c)
{
    c->px = c->x;
    c->py = c->y;
    c->ph = c->h;
}

int ms_vivaldi_drifted(const ms_vivaldi_t *c, double threshold_ms)
{
    return hypot(c->x - c->px, c->y - c->py) + fabs(c->h - c->ph) > threshold_ms;
}

ms_topo_pos_t ms_vivaldi_position(const ms_vivaldi_t *c, uint64_t key)
{
    return (ms_topo_pos_t){c->x, c->y, key};
}
