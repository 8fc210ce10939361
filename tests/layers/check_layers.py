#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The build's layering, checked on the object files (issue 17).

Usage: check_layers.py BUILD_DIR

Each library's modules (one .c file each) form a dependency graph from the
symbols an object file uses and another defines. Checked:
  1. no cycle among the modules of ms_coordinator and ms_common (a module
     below another never calls back up into it: hooks go through function
     pointers, which the check does not see, by design). Not the gateway's:
     its files are the steps of one lws callback (ws.c reads a frame, hands
     it to dispatch, whose answers are written back through ws.c), a cycle by
     nature that the split into files names rather than removes;
  2. the topology engines (ms_topology) use nothing of meshsig but ms_err
     (pure engines: no NATS, no coordinator, no protobuf);
  3. ms_common uses nothing of the gateway or coordinator, and neither
     binary's library uses the other's;
  4. NATS connections are opened in two places only: common/bus.c (the
     connection a loop reads) and common/jsworker.c (the JetStream worker),
     and only the JetStream worker makes JetStream contexts: a module that
     needs blocking JetStream calls (lease.c, offline.c) runs them on a worker.
Prints every violation and exits 1 if there is one.
"""
import collections
import glob
import os
import subprocess
import sys


def symbols(obj):
    """(defined, undefined) global symbols of one object file."""
    out = subprocess.run(['nm', '-g', obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in 'TDBRCV':
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == 'U':
            undefined.add(parts[1])
    return defined, undefined


def library(build, rel):
    """module name -> (defined, undefined) for the objects of one CMake target dir."""
    mods = {}
    for obj in glob.glob(os.path.join(build, rel, '**', '*.o'), recursive=True):
        mod = os.path.basename(obj).split('.')[0]
        mods[mod] = symbols(obj)
    return mods


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = sys.argv[1]
    libs = {
        'ms_common': 'common/CMakeFiles/ms_common.dir',
        'ms_err': 'common/CMakeFiles/ms_err.dir',
        'ms_topology': 'coordinator/CMakeFiles/ms_topology.dir',
        'ms_coordinator': 'coordinator/CMakeFiles/ms_coordinator.dir',
        'ms_gateway': 'gateway/CMakeFiles/ms_gateway.dir',
    }
    mods = {name: library(build, rel) for name, rel in libs.items()}
    bad = []
    for name, m in mods.items():
        if not m:
            bad.append(f'{name}: no object files under {libs[name]} (build first)')
    if bad:
        print('\n'.join(bad))
        return 1
    owner = {}  # symbol -> (library, module)
    for name, m in mods.items():
        for mod, (defined, _) in m.items():
            for s in defined:
                owner.setdefault(s, (name, mod))

    # 1. No cycle among a library's modules.
    for name in ('ms_coordinator', 'ms_common'):
        graph = collections.defaultdict(set)
        for mod, (_, undefined) in mods[name].items():
            graph[mod]
            for s in undefined:
                lib, other = owner.get(s, (None, None))
                if lib == name and other != mod:
                    graph[mod].add(other)
        for comp in cycles(graph):
            edges = [f'{a} -> {b}' for a in comp for b in sorted(graph[a]) if b in comp]
            bad.append(f'{name}: modules call each other in a cycle: {", ".join(edges)}')

    # 2 and 3. What each library may use of the others.
    allowed = {
        'ms_topology': {'ms_topology', 'ms_err'},
        'ms_err': {'ms_err'},
        'ms_common': {'ms_common', 'ms_err'},
        'ms_coordinator': {'ms_coordinator', 'ms_topology', 'ms_common', 'ms_err'},
        'ms_gateway': {'ms_gateway', 'ms_common', 'ms_err'},
    }
    for name, m in mods.items():
        for mod, (_, undefined) in sorted(m.items()):
            for s in sorted(undefined):
                lib, other = owner.get(s, (None, None))
                if lib and lib not in allowed[name]:
                    bad.append(f'{name}: {mod}.c uses {s} of {lib} ({other}.c)')
    # 4. Who may open NATS connections and JetStream contexts.
    only = {
        'natsConnection_Connect': {('ms_common', 'bus'), ('ms_common', 'jsworker')},
        'natsConnection_ConnectTo': set(),
        'natsConnection_JetStream': {('ms_common', 'jsworker')},
    }
    for name in ('ms_common', 'ms_coordinator', 'ms_gateway'):
        for mod, (_, undefined) in sorted(mods[name].items()):
            for s in sorted(undefined & only.keys()):
                if (name, mod) not in only[s]:
                    who = ', '.join(f'{m}.c' for _, m in sorted(only[s])) or 'no module'
                    bad.append(f'{name}: {mod}.c calls {s}, which only {who} may call')
    for b in bad:
        print(b)
    n = sum(len(m) for m in mods.values())
    print(f'layers: {n} modules in {len(mods)} libraries, {len(bad)} violations')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
