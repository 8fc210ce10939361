// SPDX-License-Identifier: Apache-2.0
// The example backends (examples/backends) against a real local cluster (nats-server, a
// coordinator, two gateways), called from the JS SDK as peers would: the Node backend's echo
// service and clock topic, the C backend's sum service; then the C backend is killed with
// SIGKILL and its service becomes SERVICE_UNAVAILABLE once the heartbeat timeout has passed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startCluster, waitFor, SOURCE_DIR, BUILD_DIR } from '../browser/cluster.mjs';

const { connect } = await import(path.join(SOURCE_DIR, 'clients/js/web/meshsig.js'));

const NS = `backends-${process.pid}`;
const TIMEOUT_MS = 1500; // --backend-timeout-ms: heartbeats every 500 ms
let cluster = null;
let nodeBackend = null;
let cBackend = null;
const clients = [];
let a;
let b;

// Resolves once the process printed `text` on its log; rejects if it exits first.
async function started(child, text) {
  const fs = await import('node:fs');
  let dead = false;
  child.exited.then(() => { dead = true; });
  await waitFor(`${child.name}: "${text}"`, () => {
    if (dead) throw new Error(`${child.name} exited:\n${cluster.logs()}`);
    return fs.readFileSync(path.join(cluster.dir, `${child.name}.log`), 'utf8').includes(text);
  }, { timeoutMs: 20000, intervalMs: 100 });
}

before(async () => {
  cluster = await startCluster({ gateways: 2, coordArgs: ['--backend-timeout-ms', String(TIMEOUT_MS)],
    logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-backends') });
  nodeBackend = cluster.run('backend-node', process.execPath, [
    path.join(SOURCE_DIR, 'examples/backends/node/echo-clock.mjs'), '--nats', cluster.natsUrl,
    '--namespace', NS, '--id', 'echo-clock', '--period-ms', '200']);
  cBackend = cluster.run('backend-c', path.join(BUILD_DIR, 'examples/backends/meshsig-example-sum'), [
    '--nats', cluster.natsUrl, '--namespace', NS, '--id', 'sum-1']);
  await Promise.all([started(nodeBackend, 'attached'), started(cBackend, 'attached')]);
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
  for (const p of [nodeBackend, cBackend]) {
    if (p) { try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  if (cluster) await cluster.stop();
});

test('the Node backend echoes, from either gateway', async () => {
  assert.deepEqual(await a.call('echo', { hello: 'world', n: [1, 2] }), { hello: 'world', n: [1, 2] });
  assert.equal(await b.call('echo', 'hi'), 'hi');
});

test('the C backend sums; other arguments are its BAD_REQUEST', async () => {
  assert.equal(await a.call('sum', [1, 2, 3.5]), 6.5);
  assert.equal(await b.call('sum', []), 0);
  await assert.rejects(a.call('sum', 'x'), (e) => e.code === 'BAD_REQUEST');
});

test('clock ticks reach a subscriber, from the Node backend', async () => {
  const ticks = [];
  const unsubscribe = await a.subscribe('clock', (data, msg) => ticks.push({ data, from: msg.from }));
  await waitFor('three clock ticks', () => ticks.length >= 3, { timeoutMs: 10000, intervalMs: 50 });
  await unsubscribe();
  for (const t of ticks) {
    assert.equal(t.from, 'echo-clock');
    assert.equal(typeof t.data.ms, 'number');
    assert.equal(new Date(t.data.iso).getTime(), t.data.ms);
  }
  assert.ok(ticks[1].data.ms > ticks[0].data.ms, 'ticks in order');
});

test('a killed backend: its service is SERVICE_UNAVAILABLE after the heartbeat timeout', async () => {
  assert.equal(await b.call('sum', [2, 2]), 4);
  process.kill(-cBackend.pid, 'SIGKILL');
  await cBackend.exited;
  const t0 = Date.now();
  // The owner does not know yet: this call goes to the dead provider and fails when the
  // owner withdraws it, as a call to a peer provider that left.
  await assert.rejects(a.call('sum', [1], { timeoutMs: 60000 }), (e) => e.code === 'SERVICE_UNAVAILABLE');
  const waited = Date.now() - t0;
  // Its last heartbeat came at most one period (a third of the timeout) before the kill.
  assert.ok(waited >= TIMEOUT_MS - TIMEOUT_MS / 3 - 100, `withdrawn after ${waited} ms`);
  // From now on at once, and the other backend is untouched.
  const t1 = Date.now();
  await assert.rejects(b.call('sum', [1]), (e) => e.code === 'SERVICE_UNAVAILABLE');
  assert.ok(Date.now() - t1 < TIMEOUT_MS, 'no wait once withdrawn');
  assert.equal(await b.call('echo', 'still here'), 'still here');
});

test('a backend that stops detaches: its service goes at once', async () => {
  process.kill(-nodeBackend.pid, 'SIGTERM');
  const { code } = await nodeBackend.exited;
  assert.equal(code, 0);
  await assert.rejects(a.call('echo', 'x'), (e) => e.code === 'SERVICE_UNAVAILABLE');
});
