#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora of the bus fuzz targets (tests/fuzz/corpus/coord_bus, gw_bus).

Protobuf is encoded by hand here (field numbers from proto/*.proto) so that no
protobuf package is needed. Run from anywhere; rerun after a .proto change."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, '..', 'corpus')


def varint(v):
    out = b''
    while v >= 0x80:
        out += bytes([v & 0x7f | 0x80])
        v >>= 7
    return out + bytes([v])


def ld(f, b):
    return varint(f << 3 | 2) + varint(len(b)) + b


def s(f, t):
    return ld(f, t.encode())


def u(f, v):
    return varint(f << 3) + varint(v)


def dbl(f, x):
    return varint(f << 3 | 1) + struct.pack('<d', x)


# meshsig.v1 values
def vnum(x): return dbl(2, x)
def vstr(t): return s(3, t)
def vlist(*v): return ld(6, b''.join(ld(1, x) for x in v))
def vstruct(**kv): return ld(5, b''.join(ld(1, s(1, k) + ld(2, v)) for k, v in kv.items()))


def shard_req(session, ns, peer, op, client_id='c'):
    return (s(1, 'gw-1/%d' % session) + s(2, 'gw-1') + u(3, session) + s(4, ns) + s(5, peer) +
            s(6, client_id) + u(7, 1700000000000000) + op)


def join(session, ns, peer, hello_extra=b''):
    return shard_req(session, ns, '', ld(10, s(1, peer) + ld(2, s(1, ns) + hello_extra)))


def client(session, ns, peer, cm):
    return shard_req(session, ns, peer, ld(12, cm))


# bus_version (field 15 of every envelope, common/busver.h): 1.0. Messages
# without it are refused before they are decoded.
VERSION = varint(15 << 3) + varint(1 << 16)


def rec(sel, payload):
    if not sel & 0x80:
        payload += VERSION
    return bytes([sel]) + struct.pack('>H', len(payload)) + payload


SHARD, HEARTBEAT, POLICY, RESYNC, ADMIN_Q, ADMIN_R, GW_HB = 0, 2, 3, 4, 5, 6, 7


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def coord_bus():
    ja = rec(SHARD, join(1, 'ns', 'alice', ld(5, dbl(1, 1.0) + dbl(2, 2.0)) +
                         ld(6, ld(1, s(1, 'k') + ld(2, vstr('v'))))))
    jb = rec(SHARD, join(2, 'ns', 'bob'))
    jc = rec(SHARD, join(3, 'ns', 'carol'))
    sig = rec(SHARD, client(1, 'ns', 'alice', ld(3, s(1, 'bob') + ld(3, vstruct(type=vstr('offer'))))))
    emit = rec(SHARD, client(1, 'ns', 'alice', ld(4, s(1, 'bob') + s(3, 'ev') + ld(4, vnum(1)) + s(5, 'a1') + u(6, 100))))
    pemit = rec(SHARD, client(1, 'ns', 'alice', ld(4, s(1, 'zed') + s(3, 'ev') + u(7, 1))))
    ack = rec(SHARD, client(2, 'ns', 'bob', ld(5, s(1, 'a1'))))
    room = rec(SHARD, client(1, 'ns', 'alice', ld(6, ld(1, s(1, 'lobby'))))) + \
        rec(SHARD, client(2, 'ns', 'bob', ld(6, ld(1, s(1, 'lobby'))))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(6, ld(3, s(1, 'lobby') + s(2, 'hi') + ld(3, vstr('x')) + u(4, 1))))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(6, ld(4, s(1, 'lobby')))))
    svc = rec(SHARD, client(2, 'ns', 'bob', ld(8, ld(1, s(1, 'echo'))))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(8, ld(3, s(1, 'echo') + s(2, 'k1') + ld(3, vnum(2)) + u(4, 50))))) + \
        rec(SHARD, client(2, 'ns', 'bob', ld(8, ld(4, s(1, 'k1') + ld(2, vnum(2))))))
    topic = rec(SHARD, client(2, 'ns', 'bob', ld(9, ld(1, s(1, 'news.*'))))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(9, ld(3, s(1, 'news.a') + ld(2, vstr('x'))))))
    stream = rec(SHARD, client(1, 'ns', 'alice', ld(7, s(1, 'st1') + ld(2, s(1, 'bob') + s(3, 'file'))))) + \
        rec(SHARD, client(2, 'ns', 'bob', ld(7, s(1, 'st1') + ld(4, u(1, 1000))))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(7, s(1, 'st1') + ld(3, ld(1, b'abc'))))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(7, s(1, 'st1') + ld(5, b''))))
    pos = rec(SHARD, client(1, 'ns', 'alice', ld(10, dbl(1, 5.0) + dbl(2, 6.0)))) + \
        rec(SHARD, client(1, 'ns', 'alice', ld(11, s(1, 'bob') + dbl(2, 12.5))))
    leave = rec(SHARD, shard_req(2, 'ns', 'bob', ld(11, s(1, 'left'))))
    write('coord_bus', 'session', ja + jb + jc + sig + emit + ack + pemit + leave)
    write('coord_bus', 'rooms', ja + jb + room)
    write('coord_bus', 'services', ja + jb + svc)
    write('coord_bus', 'topics', ja + jb + topic)
    write('coord_bus', 'stream', ja + jb + stream + pos)
    for topo in ('tree', 'delaunay', 'spray'):
        pol = rec(POLICY, s(1, 'ns') + s(2, '{"topology":"%s","signals":"any"}' % topo))
        write('coord_bus', 'policy-' + topo, pol + ja + jb + jc + sig + leave)
    hb = rec(HEARTBEAT, s(1, 'coord-2') + u(2, 5) + ld(3, varint(0)) + ld(4, varint(7)) + s(5, '127.0.0.1:1') + u(6, 0))
    gwhb = rec(GW_HB, s(1, 'gw-1') + u(2, 3) + u(3, 99))
    aq = rec(ADMIN_Q, u(1, 1) + s(2, 'ns') + s(3, 'meshsig.admin.reply.x') + u(4, 9)) + \
        rec(ADMIN_Q, u(1, 0) + s(3, 'meshsig.admin.reply.x') + u(4, 10))
    ar = rec(ADMIN_R, s(1, 'coord-2') + u(2, 1) + ld(3, b'{"namespaces":[]}') + u(4, 1))
    rs = rec(RESYNC, s(1, 'gw-2') + u(2, 0) + u(3, 1) +
             ld(4, u(1, 7) + s(2, 'ns') + s(3, 'dave') + ld(4, dbl(1, 1.0)) + s(6, 'alice') + s(8, 'lobby') +
                s(9, 'echo') + s(10, 'news.*')) + u(5, 1))
    write('coord_bus', 'cluster', hb + gwhb + ja + aq + ar + rs)
    # a nesting recipe: a signal payload of lists 8 deep (Value.list_value/ListValue.values)
    # inside ClientMessage.signal.payload inside ShardRequest.client
    recipe = bytes([0x80, 8, 2, 1, 6, 3, 3, 3, 12]) + vnum(1)
    write('coord_bus', 'nest', ja + jb + rec(0x80 | SHARD, recipe))


def gw_bus():
    def delivery(session, msg, peer='', close=0):
        return ld(4, u(1, session) + ld(2, msg) + (u(3, close) if close else b'') + s(4, peer) + u(5, 1))
    welcome = ld(2, s(1, 'alice') + s(2, 'gw-1'))  # ServerMessage.welcome
    batch = u(1, 0) + u(2, 3) + s(3, 'coord-1') + delivery(1, s(1, 'id') + welcome) + \
        delivery(2, ld(4, s(2, 'alice') + ld(3, vstruct(sdp=vstr('v=0')))), 'bob')
    write('gw_bus', 'batch', b'\x00' + batch + VERSION)
    write('gw_bus', 'resync', b'\x01' + u(1, 0) + u(2, 4) + s(3, 'coord-2') + s(4, 'meshsig.coord.resync.0') + u(5, 64) + VERSION)
    write('gw_bus', 'nest', b'\x00' + bytes([0x80, 8, 2, 1, 6, 4, 3, 4, 2, 4]) + vnum(1))


if __name__ == '__main__':
    coord_bus()
    gw_bus()
