// SPDX-License-Identifier: Apache-2.0
// An app that sends from its neighbour-up handler must not lose that message on the side that
// receives the announced "meshsig" channel. Chromium hands such a channel to the page 'open'
// before it has opened it below (libwebrtc DataChannelController::OnDataChannelOpenMessage
// tells the observer first and posts OnTransportReady to the network thread after), and a send
// that gets there first is dropped without an error (SctpDataChannel::SendImpl: INVALID_STATE).
// In a real browser that window is a thread race, seen as the rare relayed-channel timeout of
// tests/browser/turn.test.mjs; here a pair of in-process connections opens the window every
// time, so the SDK's wait (getStats says the channel is open) is what the test sees.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../web/meshsig.js';
import { startRelay } from '../test-support/relay.mjs';
import { until } from '../test-support/until.mjs';

const links = new Map(); // offer token -> offering PC

/** A data channel as Chromium's page sees it; `native` is libwebrtc's state below it. */
class FakeChannel {
  constructor(pc, label, id, announced) {
    Object.assign(this, { pc, label, id, announced, binaryType: 'blob', native: 'connecting',
      readyState: announced ? 'open' : 'connecting', onopen: null, onmessage: null, onclose: null,
      sent: 0, dropped: 0 });
  }

  send(data) {
    if (this.readyState !== 'open') throw new Error('InvalidStateError');
    if (this.native !== 'open') { this.dropped++; return; } // SendImpl: INVALID_STATE, no event
    this.sent++;
    const peer = this.pc.peer?.channels.get(this.id);
    setTimeout(() => peer?.onmessage?.({ data }), 1);
  }

  close() {
    if (this.readyState === 'closed') return;
    this.readyState = this.native = 'closed';
    this.onclose?.();
  }
}

class FakePC {
  constructor() {
    Object.assign(this, { signalingState: 'stable', connectionState: 'new', iceConnectionState: 'new',
      iceGatheringState: 'complete', localDescription: null, remoteDescription: null,
      channels: new Map(), peer: null, token: Math.random().toString(36).slice(2), nextId: 1 });
  }

  createDataChannel(label, opts = {}) {
    const dc = new FakeChannel(this, label, opts.negotiated ? opts.id : null, false);
    this.pending = [...(this.pending || []), dc];
    return dc;
  }

  async createOffer() { return { type: 'offer', sdp: `fake ${this.token}` }; }

  async createAnswer() { return { type: 'answer', sdp: `fake ${this.token}` }; }

  async setLocalDescription(d) {
    if (d.type === 'rollback') { this.signalingState = 'stable'; return; }
    this.localDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
    if (d.type === 'offer') links.set(this.token, this);
  }

  async setRemoteDescription(d) {
    this.remoteDescription = d;
    if (d.type === 'offer') {
      this.signalingState = 'have-remote-offer';
      this.peer = links.get(d.sdp.split(' ')[1]);
      this.peer.peer = this;
      return;
    }
    this.signalingState = 'stable';
    setTimeout(() => this.#connect(), 5);
  }

  /** Both ends connected; this end (the offerer) opens its channels and announces them. */
  #connect() {
    for (const pc of [this, this.peer]) {
      pc.connectionState = pc.iceConnectionState = 'connected';
      pc.onconnectionstatechange?.();
    }
    for (const dc of this.pending || []) {
      dc.id = this.nextId;
      this.nextId += 2;
      this.channels.set(dc.id, dc);
      // The peer's libwebrtc has the channel from the OPEN on (what arrives is delivered once
      // the page has it); its page hears of it at once, it opens below a little later.
      const remote = new FakeChannel(this.peer, dc.label, dc.id, true);
      this.peer.channels.set(dc.id, remote);
      dc.native = dc.readyState = 'open';
      dc.onopen?.();
      this.peer.ondatachannel?.({ channel: remote });
      remote.onopen?.(); // Chromium's open event after the datachannel event
      setTimeout(() => { if (remote.native === 'connecting') remote.native = 'open'; }, 30);
    }
    this.pending = [];
  }

  async addIceCandidate() {}

  setConfiguration() {}

  restartIce() {}

  async getStats() {
    const m = new Map();
    for (const dc of this.channels.values()) {
      m.set(`D${dc.id}`, { type: 'data-channel', label: dc.label, dataChannelIdentifier: dc.id,
        state: dc.native, messagesSent: dc.sent });
    }
    return m;
  }

  close() {
    this.connectionState = 'closed';
    for (const dc of this.channels.values()) dc.close();
  }
}

const clients = [];
after(() => clients.forEach((c) => c.close()));

test('a send from neighbour-up reaches the peer on both ends of an announced channel', async () => {
  const relay = await startRelay({ mesh: true });
  try {
    const got = { a: [], b: [] };
    const refused = [];
    const join = (peerId) => {
      const c = connect(relay.url, { namespace: 'ns', peerId, webrtc: true, RTCPeerConnection: FakePC,
        reconnect: { baseMs: 20, maxMs: 100 } });
      clients.push(c);
      c.on('message', ({ peer, data }) => got[peerId].push(`${peer}:${data}`));
      c.on('neighbour-up', ({ peer }) => {
        try { c.send(peer, `hello from ${peerId}`); } catch (err) { refused.push(`${peerId}: ${err.code}`); }
      });
      return c;
    };
    const a = join('a');
    await a.ready;
    const b = join('b');
    await b.ready;
    await until(() => got.a.length && got.b.length, 3000).catch(() => {});
    assert.deepEqual(refused, []);
    // a made the channel (initiator, the smaller id); b received it announced.
    assert.deepEqual(got.b, ['a:hello from a']);
    assert.deepEqual(got.a, ['b:hello from b'], 'b\'s hello from neighbour-up was lost');
    // And the neighbour lists say open once it is.
    assert.equal(b.neighbours[0].channelState, 'open');
  } finally {
    clients.forEach((c) => c.close());
    await relay.close();
  }
});
