# SPDX-License-Identifier: Apache-2.0
"""A block of free loopback ports for deploy/dev-cluster --base-port (the deploy tests)."""
import os
import random
import socket
import time


def below_ephemeral(span):
    """The first port of the kernel's ephemeral range: ports below it are never
    given to an outgoing connection or a bind to port 0 (which other tests
    running at the same time use), so a block picked free there stays free
    until dev-cluster binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 10000 + 10 * span)


def free_base_port(span):
    """A base port P such that P..P+span-1 are all free on 127.0.0.1."""
    rng = random.Random(os.getpid() ^ int(time.time()))
    for _ in range(200):
        base = rng.randrange(10000, below_ephemeral(span) - span)
        socks = []
        try:
            for p in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range of loopback ports")
