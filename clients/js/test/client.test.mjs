// SPDX-License-Identifier: Apache-2.0
// Client bookkeeping against a tiny local relay (test/relay.mjs): hello and
// resume, request ids, promise settlement and error codes, reconnect backoff,
// messaging wrappers. WebRTC parts run when @roamhq/wrtc is installed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../web/meshsig.js';
import { startRelay } from '../test-support/relay.mjs';
import { until } from '../test-support/until.mjs';

const fast = { reconnect: { baseMs: 20, maxMs: 100 }, webrtc: false };
const clients = [];
const open = (url, opts) => { const c = connect(url, { ...fast, ...opts }); clients.push(c); return c; };
after(() => clients.forEach((c) => c.close()));

test('hello, welcome and ids on every request', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'alice', position: { x: 0.5, y: 0.25 },
      metadata: { name: 'A' } });
    const w = await a.ready;
    assert.equal(w.peerId, 'alice');
    assert.equal(a.peerId, 'alice');
    assert.equal(a.state, 'open');
    const hello = relay.log[0];
    assert.ok(hello.id);
    assert.deepEqual(hello.hello, { namespace: 'ns', peerId: 'alice', acksPersistent: true,
      position: { x: 0.5, y: 0.25 }, metadata: { name: 'A' } });
    assert.ok((await a.ping()) >= 0);
    await a.subscribe('x.*');
    await a.publish('x.y', 1);
    const ids = relay.log.map((m) => m.id);
    assert.ok(ids.every(Boolean), 'every message has an id');
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
  } finally {
    await relay.close();
  }
});

test('emit resolves with the ack data and rejects with the error code', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    const b = open(relay.url, { namespace: 'ns', peerId: 'b' });
    await Promise.all([a.ready, b.ready]);
    b.onEmit('add', (data, { from }) => ({ sum: data.x + data.y, from }));
    b.onEmit('boom', () => { const e = new Error('no'); e.code = 'FORBIDDEN'; throw e; });
    assert.deepEqual(await a.emit('b', 'add', { x: 2, y: 3 }), { sum: 5, from: 'a' });
    await assert.rejects(a.emit('b', 'boom', null), (e) => e.code === 'FORBIDDEN' && e.message === 'no');
    await assert.rejects(a.emit('nobody', 'add', {}), (e) => e.code === 'PEER_NOT_FOUND' && !!e.id);
    // The 'emit' event with a manual ack.
    b.on('emit', (e) => { if (e.event === 'manual') e.ack('done'); });
    assert.equal(await a.emit('b', 'manual', 1), 'done');
    // Without ack the promise resolves once sent.
    const seen = b.next('emit', 2000);
    await a.emit('b', 'note', 'hi', { ack: false });
    assert.equal((await seen).data, 'hi');
    const sent = relay.log.filter((m) => m.emit && m.emit.event === 'note');
    assert.equal(sent[0].emit.ackId, undefined);
  } finally {
    await relay.close();
  }
});

test('persistent emits: acked by msgId after the handler ran, a redelivered copy acked again but not handed on', async () => {
  const relay = await startRelay();
  try {
    const b = open(relay.url, { namespace: 'ns', peerId: 'b' });
    await b.ready;
    const got = [];
    let ackedBeforeHandler = null;
    b.onEmit('note', (data, e) => {
      ackedBeforeHandler = relay.log.some((m) => m.received);
      got.push([data, e.msgId]);
    });
    const emit = { from: 'a', event: 'note', data: 1, persistent: true, msgId: '9f2c51d07a3be418' };
    relay.to('b', { emit });
    await until(() => relay.log.some((m) => m.received));
    assert.equal(ackedBeforeHandler, false, 'the ack follows the handler');
    // The same msgId again (written to a session we never read, then redelivered).
    relay.to('b', { emit: { ...emit, data: 'copy' } });
    relay.to('b', { emit: { ...emit, data: 2, msgId: '0123456789abcdef' } });
    await until(() => relay.log.filter((m) => m.received).flatMap((m) => m.received.msgIds).length === 3);
    assert.deepEqual(got, [[1, '9f2c51d07a3be418'], [2, '0123456789abcdef']]);
    const acked = relay.log.filter((m) => m.received).flatMap((m) => m.received.msgIds);
    assert.deepEqual(acked.sort(), ['0123456789abcdef', '9f2c51d07a3be418', '9f2c51d07a3be418']);
    assert.ok(relay.log.filter((m) => m.received).every((m) => m.id === undefined), 'acks ask for no reply');
    // An emit without msgId (not stored) is not acked.
    relay.to('b', { emit: { from: 'a', event: 'note', data: 3 } });
    await until(() => got.length === 3);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(relay.log.filter((m) => m.received).flatMap((m) => m.received.msgIds).length, 3);
  } finally {
    await relay.close();
  }
});

test('services, topics with wildcards, rooms error mapping', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    const b = open(relay.url, { namespace: 'ns', peerId: 'b' });
    await Promise.all([a.ready, b.ready]);
    await b.register('echo', (args, { from }) => ({ args, from }));
    assert.deepEqual(await a.call('echo', [1, 2]), { args: [1, 2], from: 'a' });
    await assert.rejects(a.call('missing', 1), (e) => e.code === 'SERVICE_UNAVAILABLE');
    const got = [];
    await b.subscribe('news.>', (data, { topic, from }) => got.push([topic, data, from]));
    await b.subscribe('news.*', (data, { topic }) => got.push(['star', topic]));
    await a.publish('news.sport', 'goal');
    await a.publish('news.sport.live', 'x');
    await a.publish('weather', 'rain');
    await until(() => got.length >= 3);
    assert.deepEqual(got, [['news.sport', 'goal', 'a'], ['star', 'news.sport'], ['news.sport.live', 'x', 'a']]);
    // The relay does not know rooms: the local deadline turns silence into TIMEOUT.
    const c = open(relay.url, { namespace: 'ns', peerId: 'c', requestTimeoutMs: 200 });
    await c.ready;
    await assert.rejects(c.rooms.join('r'), (e) => e.code === 'TIMEOUT');
  } finally {
    await relay.close();
  }
});

test('streams respect credit and deliver every byte', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a', streamChunk: 4096 });
    const b = open(relay.url, { namespace: 'ns', peerId: 'b', streamWindow: 10000 });
    await Promise.all([a.ready, b.ready]);
    const received = [];
    let closed = null;
    b.on('stream', (s) => {
      assert.equal(s.peer, 'a');
      assert.equal(s.label, 'file');
      s.on('data', (bytes) => received.push(bytes));
      s.on('close', (e) => { closed = e; });
    });
    const s = await a.openStream('b', { label: 'file' });
    const data = new Uint8Array(100000).map((_, i) => i & 255);
    await s.write(data);
    await s.close();
    await until(() => closed);
    const total = received.reduce((n, r) => n + r.length, 0);
    assert.equal(total, data.length);
    const joined = new Uint8Array(total);
    let off = 0;
    for (const r of received) { joined.set(r, off); off += r.length; }
    assert.deepEqual(joined, data);
    // Never more in flight than granted: every data frame fits the chunk and the window.
    const frames = relay.log.filter((m) => m.stream?.data).map((m) => Buffer.from(m.stream.data.data, 'base64').length);
    assert.ok(frames.every((n) => n <= 4096));
    let credit = 0;
    let sent = 0;
    for (const m of relay.log) {
      if (m.stream?.credit && !m.stream.streamId.includes('/')) continue; // a's grant to b
      if (m.stream?.credit) credit += m.stream.credit.bytes;
      if (m.stream?.data) { sent += Buffer.from(m.stream.data.data, 'base64').length; assert.ok(sent <= credit, `${sent} > ${credit}`); }
    }
  } finally {
    await relay.close();
  }
});

test('reconnects with backoff and the resume token', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    const w1 = await a.ready;
    const events = [];
    a.on('reconnecting', (e) => events.push(e));
    const again = a.next('welcome', 5000);
    relay.dropAll();
    const w2 = await again;
    assert.equal(w2.resumed, true);
    assert.equal(events.length, 1);
    assert.ok(events[0].delayMs <= 20);
    const hellos = relay.log.filter((m) => m.hello);
    assert.equal(hellos.length, 2);
    assert.equal(hellos[1].hello.resumeToken, w1.resumeToken);
    assert.equal(a.resumeToken, w2.resumeToken);
    // A request sent while disconnected waits in the outbox.
    const down = a.next('reconnecting', 2000);
    relay.dropAll();
    await down;
    assert.equal(a.state, 'reconnecting');
    assert.ok((await a.ping()) >= 0);
  } finally {
    await relay.close();
  }
});

test('a failed resume joins afresh and restores registrations', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    await a.ready;
    await a.register('svc', () => 1);
    await a.subscribe('t.>');
    relay.resumable.clear();
    const again = a.next('welcome', 5000);
    relay.dropAll();
    const w = await again;
    assert.equal(w.resumed, false);
    await until(() => relay.log.filter((m) => m.service?.register).length === 2 &&
      relay.log.filter((m) => m.topic?.subscribe).length === 2);
    const hellos = relay.log.filter((m) => m.hello);
    assert.equal(hellos.length, 3, 'hello with token, then hello without');
    assert.ok(hellos[1].hello.resumeToken);
    assert.equal(hellos[2].hello.resumeToken, undefined);
  } finally {
    await relay.close();
  }
});

test('ID_TAKEN after a drop is retried (the old session is still leaving)', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    await a.ready;
    let refused = 0;
    relay.hooks.hello = (ws, m) => {
      if (refused++ > 0) return false;
      relay.send(ws, { id: m.id, error: { code: 'ID_TAKEN', message: 'a is connected' } });
      return true;
    };
    a.on('error', () => {});
    const again = a.next('welcome', 5000);
    relay.dropAll();
    await again;
    assert.equal(refused, 2);
    assert.equal(a.state, 'open');
  } finally {
    await relay.close();
  }
});

test('a fatal hello error stops reconnecting', async () => {
  const relay = await startRelay();
  try {
    relay.hooks.hello = (ws, m) => { relay.send(ws, { id: m.id, error: { code: 'UNAUTHORIZED', message: 'bad token' } }); return true; };
    const errors = [];
    const a = open(relay.url, { namespace: 'ns', token: 'x' });
    a.on('error', (e) => errors.push(e.code));
    await assert.rejects(a.ready, (e) => e.code === 'UNAUTHORIZED');
    assert.equal(a.state, 'closed');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(relay.log.filter((m) => m.hello).length, 1);
    assert.deepEqual(errors, ['UNAUTHORIZED']);
    await assert.rejects(a.ping(), (e) => e.code === 'CLOSED');
  } finally {
    await relay.close();
  }
});

test('gives up after maxAttempts when nothing listens', async () => {
  const relay = await startRelay();
  const url = relay.url;
  await relay.close();
  const a = open(url, { namespace: 'ns', reconnect: { baseMs: 5, maxMs: 10, maxAttempts: 3 } });
  a.on('error', () => {});
  await assert.rejects(a.ready, (e) => e.code === 'DISCONNECTED');
  assert.equal(a.state, 'closed');
});

let wrtc = null;
try { wrtc = (await import('@roamhq/wrtc')).default; } catch { /* optional */ }

test('two peers open a data channel (full mesh, pre-made offers)', { skip: !wrtc && 'no @roamhq/wrtc' }, async () => {
  const relay = await startRelay({ mesh: true });
  try {
    const opts = { namespace: 'ns', webrtc: true, RTCPeerConnection: wrtc.RTCPeerConnection };
    const a = open(relay.url, { ...opts, peerId: 'a' });
    await a.ready;
    const b = open(relay.url, { ...opts, peerId: 'b', offers: 2 });
    const c = open(relay.url, { ...opts, peerId: 'c' }); // no offers: ordinary initiator rule
    const ups = [];
    for (const x of [a, b, c]) x.on('neighbour-up', (n) => ups.push(`${x.peerId}->${n.peer}`));
    await until(() => ups.length === 6, 15000);
    const hello = relay.log.find((m) => m.hello?.peerId === 'b').hello;
    assert.equal(hello.offers.length, 2);
    assert.ok(hello.offers.every((o) => o.type === 'offer' && o.sdp && o.offerId));
    const msg = b.next('message', 5000);
    a.send('b', 'hello b');
    assert.deepEqual(await msg, { peer: 'a', data: 'hello b' });
    // The pre-made offer to a was answered; the answer carried no new offer from a.
    assert.equal(relay.log.filter((m) => m.signal?.to === 'b' && m.signal.payload.type === 'offer').length, 0);
    const downs = [];
    b.on('neighbour-down', (n) => downs.push(n.peer));
    relay.to('b', { topology: { disconnect: { peer: 'a' } } });
    await until(() => downs.includes('a'));
    assert.deepEqual(b.neighbours.map((n) => n.peer), ['c']);
    assert.throws(() => b.send('a', 'x'), (e) => e.code === 'NOT_NEIGHBOUR');
  } finally {
    clients.forEach((x) => x.close());
    await relay.close();
  }
});

/** A connection class that records what it was configured with (no real WebRTC). */
class RecordingPC {
  static made = [];
  constructor(cfg) {
    this.configs = [cfg];
    this.iceGatheringState = 'complete';
    this.localDescription = null;
    RecordingPC.made.push(this);
  }
  createDataChannel(label) { return { label, readyState: 'connecting', close() {} }; }
  async createOffer() { return { type: 'offer', sdp: 'v=0 recording' }; }
  async setLocalDescription(d) { this.localDescription = d; }
  setConfiguration(cfg) { this.configs.push(cfg); }
  close() {}
}

test('pre-made offers: none when relay-only has no servers yet; the welcome\'s servers reach the ones made', async () => {
  const relay = await startRelay();
  const turn = { urls: ['turn:127.0.0.1:3478?transport=udp'], username: '1:x', credential: 'c' };
  relay.hooks.hello = (ws, m) => {
    relay.send(ws, { id: m.id, welcome: { peerId: m.hello.peerId, gatewayId: 'relay', topology: 'fullmesh',
      namespace: m.hello.namespace, iceServers: [turn] } });
    return true;
  };
  try {
    const opts = { namespace: 'ns', webrtc: true, RTCPeerConnection: RecordingPC, offers: 2 };
    // Relay only, no servers of the app's own: an offer made now could hold no candidate.
    RecordingPC.made = [];
    const r = open(relay.url, { ...opts, peerId: 'r', iceTransportPolicy: 'relay' });
    await r.ready;
    assert.equal(relay.log.find((m) => m.hello?.peerId === 'r').hello.offers, undefined);
    assert.equal(RecordingPC.made.length, 0);
    // Otherwise the offers are made, and the welcome's TURN server reaches their connections.
    const p = open(relay.url, { ...opts, peerId: 'p' });
    await p.ready;
    assert.equal(relay.log.find((m) => m.hello?.peerId === 'p').hello.offers.length, 2);
    assert.equal(RecordingPC.made.length, 2);
    for (const pc of RecordingPC.made) {
      assert.deepEqual(pc.configs.at(-1).iceServers, [turn]);
    }
  } finally {
    await relay.close();
  }
});

test('a gateway from before persistent-emit acks: hello again without acksPersistent', async () => {
  const relay = await startRelay();
  // What such a gateway answers: its strict decoder refuses the unknown field.
  relay.hooks.hello = (ws, m) => {
    if (!m.hello.acksPersistent) return false;
    relay.send(ws, { id: m.id, error: { code: 'BAD_REQUEST', message: 'hello.acksPersistent: unknown field' } });
    return true;
  };
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    const errors = [];
    a.on('error', (e) => errors.push(e.code));
    await a.ready;
    const hellos = relay.log.filter((m) => m.hello);
    assert.equal(hellos.length, 2);
    assert.equal(hellos[0].hello.acksPersistent, true);
    assert.equal(hellos[1].hello.acksPersistent, undefined);
    assert.equal(a.state, 'open');
  } finally {
    await relay.close();
  }
});

test('openStream gives up after openTimeoutMs and aborts the stream it asked for', async () => {
  const relay = await startRelay();
  try {
    const a = open(relay.url, { namespace: 'ns', peerId: 'a' });
    await a.ready;
    relay.hooks.stream = (ws, m) => !!m.stream.open; // a server that never answers the open
    const t0 = performance.now();
    await assert.rejects(a.openStream('b', { openTimeoutMs: 200 }), (e) => e.code === 'TIMEOUT');
    assert.ok(performance.now() - t0 >= 190);
    await until(() => relay.log.some((m) => m.stream?.close?.abort));
    const open1 = relay.log.find((m) => m.stream?.open);
    const abort = relay.log.find((m) => m.stream?.close?.abort);
    assert.equal(abort.stream.streamId, open1.stream.streamId);
  } finally {
    await relay.close();
  }
});
