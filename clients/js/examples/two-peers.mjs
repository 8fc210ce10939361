#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Two Node peers join one namespace through a meshsig cluster, open a WebRTC
// data channel between them (RTCPeerConnection from @roamhq/wrtc), exchange a
// message each way and exit 0.
//
//   node examples/two-peers.mjs [ws://127.0.0.1:8080/ws] [second gateway URL]
//
// Start a cluster first, e.g. deploy/dev-cluster (insecure dev mode: no tokens).
import { connect } from '../web/meshsig.js';

const urlA = process.argv[2] || 'ws://127.0.0.1:8080/ws';
const urlB = process.argv[3] || urlA;
const namespace = `two-peers-${process.pid}`;

let wrtc;
try {
  wrtc = (await import('@roamhq/wrtc')).default;
} catch (err) {
  console.error('two-peers: WebRTC for Node is not available: @roamhq/wrtc did not load ' +
    `(${err.code || err.message}). Install it with "npm install" in clients/js (it is an ` +
    'optional dependency with prebuilt binaries for linux/darwin x64/arm64 and win32 x64).');
  process.exit(2);
}

const fail = (msg) => {
  console.error(`two-peers: ${msg}`);
  process.exit(1);
};
const deadline = setTimeout(() => fail('no data channel exchange within 20 s'), 20000);

const opts = { namespace, RTCPeerConnection: wrtc.RTCPeerConnection, reconnect: { maxAttempts: 3 } };
const alice = connect(urlA, { ...opts, peerId: 'alice' });
const bob = connect(urlB, { ...opts, peerId: 'bob' });
for (const c of [alice, bob]) c.on('error', (e) => console.error(`${c.peerId || '?'}: ${e.code} ${e.message}`));

try {
  const [wa, wb] = await Promise.all([alice.ready, bob.ready]);
  console.log(`alice joined ${namespace} via ${wa.gatewayId} (${wa.topology}); bob via ${wb.gatewayId}`);
} catch (err) {
  fail(`could not join through ${urlA}: ${err.code} ${err.message} (is a cluster running?)`);
}

const got = { alice: null, bob: null };
const done = new Promise((resolve) => {
  const check = () => { if (got.alice && got.bob) resolve(); };
  alice.on('message', (m) => { got.alice = m; console.log(`alice <- ${m.peer}: ${m.data}`); check(); });
  bob.on('message', (m) => { got.bob = m; console.log(`bob <- ${m.peer}: ${m.data}`); check(); });
});
alice.on('neighbour-up', (n) => {
  console.log(`alice: data channel to ${n.peer} open after ${n.openMs} ms`);
  alice.send(n.peer, 'hello from alice');
});
bob.on('neighbour-up', (n) => {
  console.log(`bob: data channel to ${n.peer} open after ${n.openMs} ms`);
  bob.send(n.peer, 'hello from bob');
});

await done;
clearTimeout(deadline);
alice.close();
bob.close();
console.log('two-peers: ok');
// wrtc keeps native threads alive for a moment after close.
setTimeout(() => process.exit(0), 100);
