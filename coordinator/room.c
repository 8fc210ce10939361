/* SPDX-License-Identifier: Apache-2.0 */
/* Rooms: named groups of peers in a namespace; members hear who joins and leaves, and emits. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

/* ns->mods->rooms: a uthash of these by name. A room exists while it has members. */
typedef struct ms_room {
    char *name;
    uint64_t made; /* rooms_made when it was made: a leave's notices go in that order */
    struct ms_member **members;
    size_t n, cap;
    UT_hash_handle hh;
} ms_room_t;

/* Rooms made so far (loop thread): their order. */
static uint64_t rooms_made;

static ms_room_t *room_find(const ms_ns_t *ns, const char *name)
{
    ms_room_t *r;
    HASH_FIND_STR(ms_ns_mods(ns)->rooms, name, r);
    return r;
}

static int room_has(const ms_room_t *r, const ms_member_t *m)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->members[i] == m)
            return 1;
    return 0;
}

static void room_free(ms_ns_t *ns, ms_room_t *r)
{
    HASH_DEL(ns->mods->rooms, r);
    free(r->name);
    free(r->members);
    free(r);
}

/* r into m's list of rooms (rare->rooms). */
static ms_err_t rooms_of_add(ms_member_t *m, ms_room_t *r)
{
    ms_member_rare_t *x = ms_member_rare_get(m);
    if (!x)
        return MS_ERR_NOMEM;
    if (x->n_rooms == x->cap_rooms) {
        uint32_t ncap = x->cap_rooms ? x->cap_rooms * 2 : 4;
        ms_room_t **nv = realloc(x->rooms, ncap * sizeof(*nv));
        if (!nv)
            return MS_ERR_NOMEM;
        x->rooms = nv;
        x->cap_rooms = ncap;
    }
    x->rooms[x->n_rooms++] = r;
    return MS_OK;
}

/* r out of m's list, the order of the others kept (at most --max-rooms of them). */
static void rooms_of_remove(ms_member_t *m, const ms_room_t *r)
{
    ms_member_rare_t *x = m->rare;
    for (uint32_t i = 0; x && i < x->n_rooms; i++)
        if (x->rooms[i] == r) {
            memmove(&x->rooms[i], &x->rooms[i + 1], (x->n_rooms - i - 1) * sizeof(x->rooms[0]));
            x->n_rooms--;
            return;
        }
}

/* Puts m into room name (created if absent). *added: m was not in it yet. */
static ms_err_t room_add(ms_ns_t *ns, const char *name, ms_member_t *m, ms_room_t **out, int *added)
{
    ms_room_t *r = room_find(ns, name);
    *added = 0;
    if (!r) {
        ms_ns_mods_t *mods = ms_ns_mods_get(ns);
        if (!mods || !(r = calloc(1, sizeof(*r))) || !(r->name = strdup(name))) {
            free(r);
            return MS_ERR_NOMEM;
        }
        r->made = ++rooms_made;
        HASH_ADD_KEYPTR(hh, mods->rooms, r->name, strlen(r->name), r);
    }
    *out = r;
    if (room_has(r, m))
        return MS_OK;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        ms_member_t **nv = realloc(r->members, ncap * sizeof(*nv));
        if (!nv)
            goto nomem;
        r->members = nv;
        r->cap = ncap;
    }
    if (rooms_of_add(m, r) != MS_OK)
        goto nomem;
    r->members[r->n++] = m;
    *added = 1;
    return MS_OK;
nomem:
    if (r->n == 0)
        room_free(ns, r);
    *out = NULL;
    return MS_ERR_NOMEM;
}

static void room_notify(ms_coord_t *c, ms_ns_t *ns, ms_room_t *r, const ms_member_t *who,
                        int joined)
{
    Meshsig__V1__RoomPeer rp = MESHSIG__V1__ROOM_PEER__INIT;
    rp.room = r->name;
    rp.peer = (char *)who->id;
    Meshsig__V1__Room room = MESHSIG__V1__ROOM__INIT;
    if (joined) {
        room.op_case = MESHSIG__V1__ROOM__OP_PEER_JOINED;
        room.peer_joined = &rp;
    } else {
        room.op_case = MESHSIG__V1__ROOM__OP_PEER_LEFT;
        room.peer_left = &rp;
    }
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM;
    sm.room = &room;
    for (size_t i = 0; i < r->n; i++)
        if (r->members[i] != who)
            ms_deliver(c, ns, r->members[i], &sm);
}

static void room_members_reply(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *cid,
                               const char *name, ms_room_t *r)
{
    if (!cid || !*cid)
        return; /* a reply, and a request without an id hears back only when it fails */
    size_t n = r ? r->n : 0;
    char **ids = n ? calloc(n, sizeof(*ids)) : NULL;
    if (n && !ids) {
        ms_member_error(c, ns, to, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = r->members[i]->id;
    Meshsig__V1__RoomMembers rm = MESHSIG__V1__ROOM_MEMBERS__INIT;
    rm.room = (char *)name;
    rm.n_peers = n;
    rm.peers = ids;
    Meshsig__V1__Room room = MESHSIG__V1__ROOM__INIT;
    room.op_case = MESHSIG__V1__ROOM__OP_MEMBERS;
    room.members = &rm;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.id = (char *)cid;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM;
    sm.room = &room;
    ms_deliver(c, ns, to, &sm);
    free(ids);
}

/* m out of r (and r out of m's list unless it is the member leaving: member_gone drops the
 * whole list). */
static int room_remove(ms_coord_t *c, ms_ns_t *ns, ms_room_t *r, ms_member_t *m, int gone)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->members[i] != m)
            continue;
        r->members[i] = r->members[--r->n];
        if (!gone)
            rooms_of_remove(m, r);
        room_notify(c, ns, r, m, 0);
        if (r->n == 0)
            room_free(ns, r);
        return 1;
    }
    return 0;
}

void ms_room_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                    Meshsig__V1__Room *room)
{
    switch (room->op_case) {
    case MESHSIG__V1__ROOM__OP_JOIN: {
        const char *name = room->join->room;
        if (!ms_msg_name_ok(name)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "room names are 1 to 128 bytes");
            return;
        }
        ms_room_t *r = NULL;
        int added = 0;
        if (room_add(ns, name, from, &r, &added) != MS_OK) {
            ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
            return;
        }
        if (added)
            room_notify(c, ns, r, from, 1);
        room_members_reply(c, ns, from, cid, name, r);
        return;
    }
    case MESHSIG__V1__ROOM__OP_LEAVE: {
        ms_room_t *r = room_find(ns, room->leave->room);
        if (!r || !room_remove(c, ns, r, from, 0)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "you are not in room %s",
                            room->leave->room);
            return;
        }
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__ROOM__OP_LIST: {
        const char *name = room->list->room;
        room_members_reply(c, ns, from, cid, name, room_find(ns, name));
        return;
    }
    case MESHSIG__V1__ROOM__OP_EMIT: {
        ms_room_t *r = room_find(ns, room->emit->room);
        if (!r || !room_has(r, from)) {
            ms_member_error(c, ns, from, cid, ERR(FORBIDDEN), "join room %s before emitting to it",
                            room->emit->room);
            return;
        }
        Meshsig__V1__RoomEmit out = *room->emit;
        out.from = from->id;
        out.echo = 0;
        Meshsig__V1__Room ro = MESHSIG__V1__ROOM__INIT;
        ro.op_case = MESHSIG__V1__ROOM__OP_EMIT;
        ro.emit = &out;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM;
        sm.room = &ro;
        for (size_t i = 0; i < r->n; i++)
            if (r->members[i] != from || room->emit->echo)
                ms_deliver(c, ns, r->members[i], &sm);
        c->msg.n_room_emits++;
        ms_send_ok(c, ns, from, cid);
        return;
    }
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "room takes join, leave, list or emit");
        return;
    }
}

size_t ms_room_size(const ms_ns_t *ns, const char *name)
{
    const ms_room_t *r = room_find(ns, name);
    return r ? r->n : 0;
}

static int by_made(const void *a, const void *b)
{
    const ms_room_t *x = *(ms_room_t *const *)a, *y = *(ms_room_t *const *)b;
    return x->made < y->made ? -1 : x->made > y->made;
}

/* m's rooms only, in the order they were made (as the walk over all of them was before). */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    ms_member_rare_t *x = m->rare;
    if (!x || !x->n_rooms)
        return;
    qsort(x->rooms, x->n_rooms, sizeof(x->rooms[0]), by_made);
    for (uint32_t i = 0; i < x->n_rooms; i++)
        room_remove(c, ns, x->rooms[i], m, 1);
    free(x->rooms);
    x->rooms = NULL;
    x->n_rooms = x->cap_rooms = 0;
}

static void cleanup(ms_ns_t *ns)
{
    ms_room_t *r, *rtmp;
    HASH_ITER(hh, ms_ns_mods(ns)->rooms, r, rtmp)
    room_free(ns, r);
}

/* Takeover rebuild: back into the rooms its gateway reported, without notices. */
static ms_err_t restore(ms_ns_t *ns, ms_member_t *m, const Meshsig__Bus__SessionReport *sr)
{
    for (size_t i = 0; i < sr->n_rooms; i++) {
        ms_room_t *r;
        int added;
        if (ms_msg_name_ok(sr->rooms[i]) && room_add(ns, sr->rooms[i], m, &r, &added) != MS_OK)
            return MS_ERR_NOMEM;
    }
    return MS_OK;
}

const ms_ns_hooks_t ms_room_hooks = {
    .name = "room", .cleanup = cleanup, .member_gone = member_gone, .restore = restore};
