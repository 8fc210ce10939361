#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Bring your own WebRTC: meshsig decides who connects to whom and carries the
// signals; simple-peer (https://github.com/feross/simple-peer) makes the
// connections. The same wiring fits fast-rtc-peer or hand-written
// RTCPeerConnection code: `webrtc: false`, then
//   topology.connect {peer, initiator} -> make a peer (initiator makes the offer)
//   peer 'signal'                      -> client.signal(to, payload)
//   client 'signal' {from, payload}    -> that peer's signal(payload)
//   topology.disconnect / peer-left    -> destroy it
//
//   node examples/simple-peer.mjs [ws://127.0.0.1:8080/ws] [second gateway URL]
//
// In Node simple-peer needs a WebRTC implementation (`wrtc` option, here
// @roamhq/wrtc); in a browser load simple-peer's own bundle and omit it.
import { connect } from '../web/meshsig.js';

/**
 * Wires simple-peer to a `webrtc: false` meshsig client. onPeer(id, peer) is
 * called for each new simple-peer instance (attach 'connect', 'data', 'stream'
 * there); onError(id, err) gets its errors. Returns the live instances by peer id.
 */
export function attachSimplePeer(client, SimplePeer, { peerOpts = {}, onPeer = () => {},
  onError = (id, err) => console.warn(`simple-peer ${id}: ${err.message}`) } = {}) {
  const peers = new Map(); // peer id -> SimplePeer
  const early = new Map(); // peer id -> signals that came before the connect event
  const drop = (id) => {
    early.delete(id);
    const p = peers.get(id);
    if (!p) return;
    peers.delete(id);
    p.destroy();
  };
  client.on('topology', ({ connect: c, disconnect: d }) => {
    if (d) drop(d.peer);
    if (!c) return;
    drop(c.peer); // a repeated connect for the same edge starts over
    const p = new SimplePeer({ ...peerOpts, initiator: !!c.initiator });
    peers.set(c.peer, p);
    p.on('signal', (payload) => client.signal(c.peer, payload));
    p.on('close', () => { if (peers.get(c.peer) === p) peers.delete(c.peer); });
    p.on('error', (err) => onError(c.peer, err)); // simple-peer throws when nobody listens
    onPeer(c.peer, p);
    for (const s of early.get(c.peer) || []) p.signal(s);
    early.delete(c.peer);
  });
  client.on('peer-left', ({ peer }) => drop(peer));
  client.on('signal', ({ from, payload }) => {
    const p = peers.get(from);
    if (p) { p.signal(payload); return; }
    const q = early.get(from) || [];
    if (q.length < 64) q.push(payload);
    early.set(from, q);
  });
  return peers;
}

// Run as a script: two Node peers exchange one message each way over simple-peer.
if (import.meta.url === `file://${process.argv[1]}`) {
  const urlA = process.argv[2] || 'ws://127.0.0.1:8080/ws';
  const urlB = process.argv[3] || urlA;
  const namespace = `simple-peer-${process.pid}`;
  const SimplePeer = (await import('simple-peer')).default;
  const wrtc = (await import('@roamhq/wrtc')).default;
  const deadline = setTimeout(() => { console.error('simple-peer: no exchange within 20 s'); process.exit(1); }, 20000);
  const got = new Set();
  const run = (url, peerId) => {
    const client = connect(url, { namespace, peerId, webrtc: false, reconnect: { maxAttempts: 3 } });
    client.on('error', (e) => console.error(`${peerId}: ${e.code || ''} ${e.message}`));
    attachSimplePeer(client, SimplePeer, { peerOpts: { wrtc }, onPeer: (id, p) => {
      p.on('connect', () => p.send(`hello from ${peerId}`));
      p.on('data', (d) => {
        console.log(`${peerId} <- ${id}: ${d}`);
        got.add(peerId);
        if (got.size === 2) {
          clearTimeout(deadline);
          console.log('simple-peer: ok');
          setTimeout(() => process.exit(0), 100);
        }
      });
    } });
    return client;
  };
  run(urlA, 'alice');
  run(urlB, 'bob');
}
