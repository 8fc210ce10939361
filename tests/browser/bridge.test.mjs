// SPDX-License-Identifier: Apache-2.0
// The n2n bridge: signals for a new edge through a neighbour both ends share.
// 30 Node peers (real WebRTC from @roamhq/wrtc) join a Delaunay namespace of a
// real 2-gateway cluster one after another, once with `bridge: true` and once
// without. After each join every page's neighbours must match the owner's
// edges with open channels. Then a peer without the bridge and one more with
// it join the bridged mesh: their edges must connect too. Prints the signals the server carried per join in
// both runs, and the share of each joining peer's edges after its first whose
// signals went through neighbours (the target is 80%).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startCluster, setPolicy, adminGet, waitFor, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const require = createRequire(path.join(SOURCE_DIR, 'clients/js/package.json'));
const { connect } = await import(path.join(SOURCE_DIR, 'clients/js/web/meshsig.js'));
let wrtc = null;
try { wrtc = require('@roamhq/wrtc'); } catch { /* skipped below */ }

const PEERS = 30;
let cluster = null;
const clients = [];

before(async () => {
  if (!wrtc) return;
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-bridge') });
});

after(async () => {
  clients.forEach((c) => c.close());
  if (cluster) await cluster.stop();
});

function adjacency(edges) {
  const adj = new Map();
  const add = (a, b) => { if (!adj.has(a)) adj.set(a, new Set()); adj.get(a).add(b); };
  for (const [a, b] of edges) { add(a, b); add(b, a); }
  return adj;
}

async function meshSettled(ns, cs) {
  const snap = await adminGet(cluster, `/v1/namespaces/${encodeURIComponent(ns)}`);
  if (snap.peers.length !== cs.length) return false;
  const adj = adjacency(snap.edges);
  for (const c of cs) {
    const want = [...(adj.get(c.peerId) || [])].sort();
    const open = c.neighbours.filter((n) => n.channelState === 'open').map((n) => n.peer).sort();
    if (JSON.stringify(want) !== JSON.stringify(open) || c.neighbours.length !== want.length) return false;
  }
  return snap;
}

/** Joins PEERS peers one at a time; returns per-join server signal counts and edge routes. */
function join(url, ns, peerId, bridge, cs) {
  const c = connect(url, { namespace: ns, peerId, RTCPeerConnection: wrtc.RTCPeerConnection,
    bridge: bridge ? { waitMs: 3000, timeoutMs: 6000 } : false });
  c._serverSignalsSent = 0;
  const orig = c._serverSignal.bind(c);
  c._serverSignal = (peer, payload) => { c._serverSignalsSent++; orig(peer, payload); };
  c.on('error', () => {});
  clients.push(c);
  cs.push(c);
  return c;
}

async function run(ns, bridge) {
  await setPolicy(cluster, ns, { topology: 'delaunay', positioning: 'random' });
  const cs = [];
  const joins = [];
  const serverSignals = () => cs.reduce((n, c) => n + c._serverSignalsSent, 0);
  for (let i = 0; i < PEERS; i++) {
    const before = serverSignals();
    const t0 = performance.now();
    const c = join(cluster.gateways[i % 2].url, ns, `n${String(i).padStart(2, '0')}`, bridge, cs);
    await c.ready;
    let snap = null;
    await waitFor(`join ${i + 1} settled (bridge ${bridge})`, async () => (snap = await meshSettled(ns, cs)),
      { timeoutMs: 45000, intervalMs: 100 });
    const mine = c.neighbours;
    joins.push({ peer: c.peerId, server: serverSignals() - before, edges: mine.length, ms: performance.now() - t0,
      bridged: mine.filter((n) => n.signalRoute && n.signalRoute !== 'server').length });
  }
  return { joins, cs };
}

test(`n2n bridge: ${PEERS} Delaunay peers, server signals per join with the bridge on and off`,
  { skip: !wrtc && '@roamhq/wrtc is not installed', timeout: 400000 }, async () => {
    const off = await run(`bridge-off-${process.pid}`, false);
    off.cs.forEach((c) => c.close());
    const on = await run(`bridge-on-${process.pid}`, true);
    // Joins with at least 2 edges after the first peers (fewer than 3 peers: all pairs).
    const later = (r) => r.joins.slice(3);
    const perJoin = (r) => later(r).reduce((n, j) => n + j.server, 0) / later(r).length;
    const ms = (r) => {
      const xs = later(r).map((j) => j.ms).sort((a, b) => a - b);
      return `median ${Math.round(xs[xs.length >> 1])} ms, max ${Math.round(xs[xs.length - 1])} ms`;
    };
    const edgesAfterFirst = later(on).reduce((n, j) => n + j.edges - 1, 0);
    const bridgedEdges = later(on).reduce((n, j) => n + j.bridged, 0);
    const share = bridgedEdges / edgesAfterFirst;
    const stats = on.cs.map((c) => c.bridgeStats).filter(Boolean).reduce((a, b) => {
      for (const k of Object.keys(b)) a[k] = (a[k] || 0) + b[k];
      return a;
    }, {});
    console.log(`# bridge: server signals per join (joins 4..${PEERS}): off ${perJoin(off).toFixed(1)}, ` +
      `on ${perJoin(on).toFixed(1)} (ratio ${(perJoin(on) / perJoin(off)).toFixed(2)}); ` +
      `edges after a joiner's first through neighbours: ${bridgedEdges}/${edgesAfterFirst} ` +
      `(${(100 * share).toFixed(0)}%); join until settled: off ${ms(off)}, on ${ms(on)}; ` +
      `totals ${JSON.stringify(stats)}`);
    assert.ok(share >= 0.8, `only ${(100 * share).toFixed(0)}% of the edges after a joiner's first went through neighbours`);
    assert.ok(perJoin(on) < perJoin(off), 'the bridge takes signals off the server');
    assert.ok(stats.relayed > 0 && stats.viaBridge > 0);

    // Mixed: a peer without the bridge, then one with it, join the bridged mesh.
    const ns = `bridge-on-${process.pid}`;
    for (const [peerId, bridge] of [['plain', false], ['late', true]]) {
      const c = join(cluster.gateways[0].url, ns, peerId, bridge, on.cs);
      await c.ready;
      await waitFor(`${peerId} (bridge ${bridge}) settled in the bridged mesh`, () => meshSettled(ns, on.cs),
        { timeoutMs: 45000, intervalMs: 100 });
    }
  });
