// SPDX-License-Identifier: Apache-2.0
// The SDK's messaging API (emit with ack, services, rooms, topics, streams,
// error codes) from Node against a real local cluster: two gateways, so every
// exchange crosses the coordinator. No WebRTC here (webrtc: false).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startCluster, setPolicy, waitFor, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const { connect } = await import(path.join(SOURCE_DIR, 'clients/js/web/meshsig.js'));

let cluster = null;
const clients = [];
const NS = `msg-${process.pid}`;
let a;
let b;

before(async () => {
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-messaging') });
  await setPolicy(cluster, NS, { topology: 'fullmesh' });
  const join = (gw, peerId) => {
    const c = connect(cluster.gateways[gw].url, { namespace: NS, peerId, webrtc: false, requestTimeoutMs: 10000 });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  a = join(0, 'alice');
  b = join(1, 'bob');
  await Promise.all([a.ready, b.ready]);
});

after(async () => {
  clients.forEach((c) => c.close());
  if (cluster) await cluster.stop();
});

test('welcome and ping', async () => {
  assert.equal(a.peerId, 'alice');
  assert.equal(a.gatewayId, 'gw-1');
  assert.equal(b.gatewayId, 'gw-2');
  assert.ok(a.resumeToken, 'welcome carries a resume token');
  assert.ok((await a.ping()) >= 0);
});

test('emit with ack across gateways; error codes reject', async () => {
  b.onEmit('add', (d, { from }) => ({ sum: d.x + d.y, from }));
  b.onEmit('deny', () => { const e = new Error('not you'); e.code = 'FORBIDDEN'; throw e; });
  assert.deepEqual(await a.emit('bob', 'add', { x: 2, y: 40 }), { sum: 42, from: 'alice' });
  await assert.rejects(a.emit('bob', 'deny', 1), (e) => e.code === 'FORBIDDEN');
  await assert.rejects(a.emit('nobody', 'add', {}), (e) => e.code === 'PEER_NOT_FOUND');
  await assert.rejects(a.emit('bob', 'unanswered', 1, { timeoutMs: 300 }), (e) => e.code === 'ACK_TIMEOUT');
  const seen = b.next('emit', 5000);
  await a.emit('bob', 'note', 'fire and forget', { ack: false });
  assert.equal((await seen).data, 'fire and forget');
});

test('signal to a non-neighbour is refused with NOT_NEIGHBOUR', async () => {
  const err = a.next('error', 5000);
  a.signal('nobody', { type: 'hello' });
  const e = await err;
  assert.ok(['NOT_NEIGHBOUR', 'PEER_NOT_FOUND'].includes(e.code), e.code);
});

test('services: register, call, errors', async () => {
  await b.register('upper', (s, { from }) => `${String(s).toUpperCase()} for ${from}`);
  assert.equal(await a.call('upper', 'hi'), 'HI for alice');
  await assert.rejects(a.call('missing', 1), (e) => e.code === 'SERVICE_UNAVAILABLE');
  await b.register('slow', () => new Promise(() => {}));
  await assert.rejects(a.call('slow', 1, { timeoutMs: 300 }), (e) => e.code === 'TIMEOUT');
  await b.unregister('upper');
  await assert.rejects(a.call('upper', 'x'), (e) => e.code === 'SERVICE_UNAVAILABLE');
});

test('rooms: join, members, emit, leave', async () => {
  const joined = b.next('room-peer-joined', 5000);
  assert.deepEqual(await b.rooms.join('lobby'), ['bob']);
  assert.deepEqual((await a.rooms.join('lobby')).sort(), ['alice', 'bob']);
  assert.deepEqual(await joined, { room: 'lobby', peer: 'alice' });
  const got = b.next('room-emit', 5000);
  await a.rooms.emit('lobby', 'chat', { text: 'hi room' });
  assert.deepEqual(await got, { room: 'lobby', event: 'chat', data: { text: 'hi room' }, from: 'alice' });
  const left = b.next('room-peer-left', 5000);
  await a.rooms.leave('lobby');
  assert.deepEqual(await left, { room: 'lobby', peer: 'alice' });
  assert.deepEqual(await b.rooms.members('lobby'), ['bob']);
  await assert.rejects(a.rooms.leave('lobby'), (e) => e.code === 'BAD_REQUEST');
});

test('topics: wildcard subscriptions, publish, unsubscribe', async () => {
  const got = [];
  const off = await b.subscribe('news.>', (d, { topic, from }) => got.push([topic, d, from]));
  await b.subscribe('news.*', (d, { topic }) => got.push(['one-token', topic]));
  await a.publish('news.sport', 'goal');
  await a.publish('news.sport.live', 'x');
  await a.publish('weather', 'rain');
  await waitFor('3 topic deliveries', () => got.length >= 3, { timeoutMs: 5000, intervalMs: 20 });
  assert.deepEqual(got.slice(0, 3), [['news.sport', 'goal', 'alice'], ['one-token', 'news.sport'],
    ['news.sport.live', 'x', 'alice']]);
  await off();
  await b.unsubscribe('news.*');
  await a.publish('news.sport', 'late');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(got.length, 3);
  await assert.rejects(a.subscribe('bad.>.pattern'), (e) => e.code === 'BAD_REQUEST');
});

test('streams: 300 KB with credit-based flow control, both directions', async () => {
  const received = [];
  let closed = null;
  const opened = new Promise((resolve) => b.once('stream', (s) => {
    s.on('data', (d) => received.push(d));
    s.on('close', (e) => { closed = e; });
    resolve(s);
  }));
  const s = await a.openStream('bob', { label: 'blob', metadata: { name: 'x.bin' } });
  const incoming = await opened;
  assert.equal(incoming.peer, 'alice');
  assert.equal(incoming.label, 'blob');
  assert.deepEqual(incoming.metadata, { name: 'x.bin' });
  const data = new Uint8Array(300 * 1024).map((_, i) => (i * 31) & 255);
  await s.write(data);
  // The receiver answers on the same stream.
  const back = [];
  s.on('data', (d) => back.push(d));
  await incoming.write('thanks');
  await waitFor('all stream bytes', () => received.reduce((n, r) => n + r.length, 0) === data.length &&
    back.length > 0, { timeoutMs: 10000, intervalMs: 20 });
  const all = new Uint8Array(data.length);
  let off = 0;
  for (const r of received) { all.set(r, off); off += r.length; }
  assert.deepEqual(all, data);
  assert.equal(new TextDecoder().decode(back[0]), 'thanks');
  await s.close();
  await waitFor('stream close at the receiver', () => closed, { timeoutMs: 5000, intervalMs: 20 });
  await assert.rejects(a.openStream('nobody'), (e) => e.code === 'PEER_NOT_FOUND');
});

test('reconnect with the resume token keeps the peer id', async () => {
  const c = connect(cluster.gateways[0].url, { namespace: NS, peerId: 'carol', webrtc: false,
    reconnect: { baseMs: 50, maxMs: 200 } });
  c.on('error', () => {});
  clients.push(c);
  const w1 = await c.ready;
  const again = c.next('welcome', 10000);
  c._ws.close(); // drop the socket the way a network failure would
  const w2 = await again;
  assert.equal(w2.peerId, 'carol');
  assert.ok(w2.resumed, 'the hello carried the resume token');
  assert.notEqual(w1.resumeToken, undefined);
  assert.equal(await a.emit('carol', 'x', 1, { ack: false }) !== undefined, true);
});
