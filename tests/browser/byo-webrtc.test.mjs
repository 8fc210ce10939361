// SPDX-License-Identifier: Apache-2.0
// Bring your own WebRTC: `webrtc: false` clients in Node hand every signal to
// the app, which runs simple-peer (npm simple-peer 9, real libwebrtc from
// @roamhq/wrtc) through examples/simple-peer.mjs. Three peers in a full mesh
// across two gateways of a real cluster: every pair connects and exchanges
// data, the SDK itself makes no RTCPeerConnection, and each `signal` event
// names its sender.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startCluster, setPolicy, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const require = createRequire(path.join(SOURCE_DIR, 'clients/js/package.json'));
const { connect } = await import(path.join(SOURCE_DIR, 'clients/js/web/meshsig.js'));
const { attachSimplePeer } = await import(path.join(SOURCE_DIR, 'clients/js/examples/simple-peer.mjs'));
let SimplePeer = null;
let wrtc = null;
try {
  SimplePeer = require('simple-peer');
  wrtc = require('@roamhq/wrtc');
} catch { /* reported by the skip below */ }

let cluster = null;
const clients = [];
const NS = `byo-${process.pid}`;

before(async () => {
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-byo') });
  await setPolicy(cluster, NS, { topology: 'fullmesh' });
});

after(async () => {
  clients.forEach((c) => c.close());
  if (cluster) await cluster.stop();
});

test('simple-peer over webrtc:false signals: a 3-peer full mesh exchanges data',
  { skip: !(SimplePeer && wrtc) && 'simple-peer or @roamhq/wrtc is not installed' }, async () => {
    const ids = ['p1', 'p2', 'p3'];
    const got = new Map(ids.map((id) => [id, new Set()])); // receiver -> senders heard
    const signalsFrom = new Map(ids.map((id) => [id, new Set()]));
    const errors = [];
    let finish;
    const allHeard = new Promise((r) => { finish = r; });
    const peersOf = new Map();
    for (const [i, id] of ids.entries()) {
      const c = connect(cluster.gateways[i % 2].url, { namespace: NS, peerId: id, webrtc: false });
      clients.push(c);
      c.on('error', (e) => errors.push(`${id}: ${e.code} ${e.message}`));
      c.on('signal', ({ from, payload }) => {
        if (payload && typeof payload === 'object') signalsFrom.get(id).add(from);
        else errors.push(`${id}: signal from ${from} without an object payload`);
      });
      peersOf.set(id, attachSimplePeer(c, SimplePeer, {
        peerOpts: { wrtc },
        onError: (peer, err) => errors.push(`${id}->${peer}: ${err.message}`),
        onPeer: (peer, p) => {
          p.on('connect', () => p.send(JSON.stringify({ from: id })));
          p.on('data', (d) => {
            const m = JSON.parse(String(d));
            if (m.from === peer) got.get(id).add(peer);
            else errors.push(`${id}: data from ${m.from} on the pair to ${peer}`);
            if ([...got.values()].every((s) => s.size === ids.length - 1)) finish();
          });
        },
      }));
      await c.ready; // joins in order so that the initiators are known
    }
    let timer;
    await Promise.race([allHeard, new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`not every pair exchanged data in 30 s: ${JSON.stringify(
        [...got].map(([k, v]) => [k, [...v]]))}; errors: ${errors.join(' | ') || 'none'}\n${cluster.logs()}`)), 30000);
    })]).finally(() => clearTimeout(timer));

    for (const [i, id] of ids.entries()) {
      assert.deepEqual([...signalsFrom.get(id)].sort(), ids.filter((x) => x !== id),
        `${id} got signals from every other peer, each with its sender`);
      const c = clients[i];
      for (const other of ids.filter((x) => x !== id)) {
        assert.equal(c.peerConnection(other), undefined, 'the SDK made no connection of its own');
      }
      assert.equal(peersOf.get(id).size, ids.length - 1);
    }
    assert.deepEqual(errors, []);

    // A peer leaves: the others destroy its simple-peer.
    clients[2].close();
    const deadline = Date.now() + 15000;
    while ([peersOf.get('p1'), peersOf.get('p2')].some((m) => m.has('p3'))) {
      assert.ok(Date.now() < deadline, 'p3 left but its simple-peer instances are still there');
      await clients[0].next('peer-left', 1000).catch(() => {});
    }
    for (const m of peersOf.values()) for (const p of m.values()) p.destroy();
  });
