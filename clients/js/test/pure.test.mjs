// SPDX-License-Identifier: Apache-2.0
// Unit tests of the SDK's pure parts: backoff, request bookkeeping, topic
// matching, perfect-negotiation decisions, base64, the emitter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffDelay, RequestTable, MeshsigError, topicMatches, Negotiation, toBase64, fromBase64,
  Emitter, messageKind,
} from '../web/meshsig.js';

test('backoff grows exponentially up to the cap', () => {
  const noJitter = { baseMs: 100, maxMs: 5000, factor: 2, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 10].map((a) => backoffDelay(a, noJitter)),
    [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
});

test('backoff jitter stays within [cap*(1-j), cap]', () => {
  const o = { baseMs: 1000, maxMs: 8000, jitter: 0.5 };
  assert.equal(backoffDelay(2, o, () => 0), 2000);
  assert.equal(backoffDelay(2, o, () => 0.999999), 4000);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, o);
    assert.ok(d >= 4000 && d <= 8000, `delay ${d}`);
  }
  // Full jitter and nonsense attempts.
  assert.equal(backoffDelay(-3, { baseMs: 10, jitter: 1 }, () => 0), 0);
  assert.equal(backoffDelay(0, { baseMs: 10, jitter: 1 }, () => 0.5), 5);
});

test('backoff spreads clients out', () => {
  const seen = new Set();
  for (let i = 0; i < 50; i++) seen.add(backoffDelay(4));
  assert.ok(seen.size > 10, 'jitter produces distinct delays');
});

function fakeTimers() {
  const pending = new Map();
  let n = 0;
  return {
    setTimeout: (fn, ms) => { const id = ++n; pending.set(id, { fn, ms }); return id; },
    clearTimeout: (id) => pending.delete(id),
    fire() { for (const [id, t] of [...pending]) { pending.delete(id); t.fn(); } },
    get size() { return pending.size; },
  };
}

test('request table: ids are unique and a reply settles its request', async () => {
  const timers = fakeTimers();
  const t = new RequestTable({ prefix: 'q', timers });
  const a = t.nextId();
  const b = t.nextId();
  assert.notEqual(a, b);
  assert.ok(a.startsWith('q'));
  const pa = t.add(a, { accept: ['ok'] });
  const pb = t.add(b, { accept: ['room'], map: (r) => r.members.peers });
  assert.equal(t.size, 2);
  assert.equal(timers.size, 2);
  assert.equal(t.settle(b, 'room', { members: { peers: ['x', 'y'] } }), true);
  assert.deepEqual(await pb, ['x', 'y']);
  assert.equal(t.settle(a, 'ok', {}), true);
  assert.deepEqual(await pa, {});
  assert.equal(t.size, 0);
  assert.equal(timers.size, 0, 'settling clears the deadline');
  assert.equal(t.settle(a, 'ok', {}), false, 'a second reply is ignored');
});

test('request table: one reply per id; a reply of another kind is a protocol error', async () => {
  const t = new RequestTable({ timers: fakeTimers() });
  const p = t.add('r', { accept: ['room'] });
  assert.equal(t.settle('r', 'ok', {}), true);
  await assert.rejects(p, (e) => e.code === 'INTERNAL' && /answered with ok/.test(e.message));
  assert.equal(t.settle('r', 'room', {}), false, 'settled once');
});

test('request table: a keyed outcome follows the ok when the reply says so', async () => {
  const timers = fakeTimers();
  const t = new RequestTable({ timers });
  // An emit with ackId: ok{delivered}, then the ack.
  const acked = t.add('e1', { accept: ['ok'], map: (a) => a.data, outcome: (ok) => !ok.stored });
  assert.equal(t.settle('e1', 'ok', { delivered: true }), true);
  assert.equal(t.size, 1, 'still waiting for the ack');
  assert.equal(t.settle('e1', 'ok', {}), false, 'a second reply is not taken');
  assert.equal(t.settleOutcome('e1', 'ack', { data: 5 }), true);
  assert.equal(await acked, 5);
  // Stored: the ok ends it.
  const stored = t.add('e2', { accept: ['ok'], map: (a) => a.data, outcome: (ok) => !ok.stored });
  t.settle('e2', 'ok', { stored: true });
  assert.equal(await stored, undefined);
  // An outcome error (PEER_NOT_FOUND in the ack, SERVICE_UNAVAILABLE in the reply) rejects.
  const call = t.add('c1', { accept: ['ok'], outcome: () => true });
  t.settle('c1', 'ok', {});
  t.settleOutcome('c1', 'error', { code: 'SERVICE_UNAVAILABLE', message: 'no provider' });
  await assert.rejects(call, (e) => e.code === 'SERVICE_UNAVAILABLE' && e.id === 'c1');
  // A request error rejects without an outcome.
  const bad = t.add('e3', { accept: ['ok'], outcome: () => true });
  t.settle('e3', 'error', { code: 'BAD_REQUEST', message: 'timeoutMs over the limit' });
  await assert.rejects(bad, (e) => e.code === 'BAD_REQUEST');
  assert.equal(t.settleOutcome('e3', 'ack', {}), false);
  // Only requests that wait for one take an outcome.
  t.add('plain', { accept: ['ok'] });
  assert.equal(t.settleOutcome('plain', 'ack', {}), false);
  assert.equal(t.settle('plain', 'ok', {}), true);
  assert.equal(t.size, 0);
  assert.equal(timers.size, 0);
});

test('request table: an error rejects with its code and id', async () => {
  const t = new RequestTable({ timers: fakeTimers() });
  const id = t.nextId();
  const p = t.add(id, { accept: ['ack'] });
  t.settle(id, 'error', { code: 'NOT_NEIGHBOUR', message: 'bob is not a neighbour of alice' });
  await assert.rejects(p, (e) => e instanceof MeshsigError && e.code === 'NOT_NEIGHBOUR' &&
    e.id === id && /not a neighbour/.test(e.message));
});

test('request table: deadlines, rejectAll and duplicate ids', async () => {
  const timers = fakeTimers();
  const t = new RequestTable({ timers });
  const p1 = t.add('1', { timeoutMs: 50, timeoutCode: 'ACK_TIMEOUT' });
  const p2 = t.add('2', { timeoutMs: 0 });
  assert.throws(() => t.add('1'), (e) => e.code === 'BAD_REQUEST');
  timers.fire();
  await assert.rejects(p1, (e) => e.code === 'ACK_TIMEOUT');
  assert.equal(t.size, 1);
  t.rejectAll(new MeshsigError('DISCONNECTED', 'gone'));
  await assert.rejects(p2, (e) => e.code === 'DISCONNECTED');
  assert.equal(t.size, 0);
});

test('request table: a throwing map rejects', async () => {
  const t = new RequestTable({ timers: fakeTimers() });
  const p = t.add('x', { map: () => { throw new MeshsigError('INTERNAL', 'bad reply'); } });
  t.settle('x', 'ok', {});
  await assert.rejects(p, (e) => e.code === 'INTERNAL');
});

test('topic patterns match like the coordinator (NATS style)', () => {
  const cases = [
    ['a.b', 'a.b', true], ['a.b', 'a.c', false], ['a.*', 'a.b', true], ['a.*', 'a.b.c', false],
    ['a.>', 'a.b', true], ['a.>', 'a.b.c', true], ['a.>', 'a', false], ['*.b', 'x.b', true],
    ['>', 'x', true], ['>', 'x.y.z', true], ['a.*.c', 'a.b.c', true], ['a.*.c', 'a.b.d', false],
    ['a', 'a.b', false], ['a.b.c', 'a.b', false],
  ];
  for (const [p, t, want] of cases) assert.equal(topicMatches(p, t), want, `${p} vs ${t}`);
});

test('negotiation: no collision applies offers and answers', () => {
  const n = new Negotiation(false);
  assert.equal(n.onDescription('offer', 'stable'), 'apply');
  assert.equal(n.onDescription('answer', 'have-local-offer'), 'apply');
  assert.equal(n.ignoreOffer, false);
});

test('negotiation: glare — the impolite side ignores, the polite side rolls back', () => {
  const impolite = new Negotiation(false);
  assert.equal(impolite.onDescription('offer', 'have-local-offer'), 'ignore');
  assert.equal(impolite.ignoreOffer, true);
  assert.equal(impolite.candidateErrorExpected(), true, 'candidates of the ignored offer may fail');

  const polite = new Negotiation(true);
  assert.equal(polite.onDescription('offer', 'have-local-offer'), 'rollback');
  assert.equal(polite.ignoreOffer, false);
  assert.equal(polite.candidateErrorExpected(), false);

  // Collision while an offer is being made (state still stable).
  const busy = new Negotiation(false);
  busy.makingOffer = true;
  assert.equal(busy.onDescription('offer', 'stable'), 'ignore');
  const busyPolite = new Negotiation(true);
  busyPolite.makingOffer = true;
  assert.equal(busyPolite.onDescription('offer', 'stable'), 'apply');
});

test('negotiation: an offer right after a pending answer is no collision', () => {
  const n = new Negotiation(false);
  n.settingRemoteAnswerPending = true;
  assert.equal(n.onDescription('offer', 'have-local-offer'), 'apply');
});

test('negotiation: stale answers are ignored', () => {
  const n = new Negotiation(true);
  assert.equal(n.onDescription('answer', 'stable'), 'ignore');
  assert.equal(n.ignoreOffer, false, 'an ignored answer is not an ignored offer');
});

test('base64 round trip (proto3 JSON bytes)', () => {
  const bytes = new Uint8Array(70000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 255;
  const b = toBase64(bytes);
  assert.deepEqual(fromBase64(b), bytes);
  assert.equal(toBase64(new TextEncoder().encode('hi')), 'aGk=');
  assert.deepEqual([...fromBase64('_-8')], [255, 239], 'URL-safe alphabet without padding');
});

test('emitter: on/off/once/next and EventTarget style', async () => {
  const e = new Emitter();
  const got = [];
  const off = e.on('x', (d) => got.push(['on', d]));
  e.once('x', (d) => got.push(['once', d]));
  const et = (ev) => got.push(['et', ev.type, ev.detail]);
  e.addEventListener('x', et);
  e.emit('x', 1);
  e.emit('x', 2);
  off();
  e.removeEventListener('x', et);
  assert.equal(e.emit('x', 3), false);
  assert.deepEqual(got, [['on', 1], ['once', 1], ['et', 'x', 1], ['on', 2], ['et', 'x', 2]]);
  const p = e.next('y', 1000);
  e.emit('y', 'v');
  assert.equal(await p, 'v');
  await assert.rejects(e.next('z', 10), (err) => err.code === 'TIMEOUT');
});

test('messageKind finds the oneof member', () => {
  assert.equal(messageKind({ id: '1', welcome: {} }), 'welcome');
  assert.equal(messageKind({ pong: {}, id: '2' }), 'pong');
  assert.equal(messageKind({ id: '3' }), null);
});

test('request table: default timers work where setTimeout needs its own this (browsers)', async () => {
  const orig = globalThis.setTimeout;
  globalThis.setTimeout = function strictSetTimeout(...args) {
    if (this !== undefined && this !== globalThis) throw new TypeError('Illegal invocation');
    return orig(...args);
  };
  try {
    const t = new RequestTable();
    const p = t.add('a', { timeoutMs: 1000 });
    t.settle('a', 'ok', { fine: true });
    assert.deepEqual(await p, { fine: true });
  } finally {
    globalThis.setTimeout = orig;
  }
});
