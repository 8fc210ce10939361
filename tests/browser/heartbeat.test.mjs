// SPDX-License-Identifier: Apache-2.0
// The welcome's heartbeat and limits, end to end from Node against a real
// cluster whose gateways run with small limits: the welcome states them, the
// SDK sizes stream frames and refuses oversized messages by them (instead of
// having the gateway close the connection), and its pings notice a gateway
// that stopped answering (SIGSTOP) and come back once it answers again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startCluster, setPolicy, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const { connect } = await import(path.join(SOURCE_DIR, 'clients/js/web/meshsig.js'));

// Heartbeat = a third of it. Not much smaller: the gateway closes a client it has not heard
// from for this long, and a loaded machine can stall this process (or the gateway) for most
// of a second; the clients of the first test must outlive that.
const IDLE_TIMEOUT_MS = 3000;
const MAX_FRAME = 16384;
let cluster = null;
const clients = [];
const NS = `hb-${process.pid}`;
let stopped = null; // a gateway pid under SIGSTOP, resumed in after() if a test failed

before(async () => {
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-heartbeat'),
    gatewayArgs: ['--idle-ping-ms', '1000', '--idle-timeout-ms', String(IDLE_TIMEOUT_MS),
      '--max-frame', String(MAX_FRAME), '--rate-msgs', '500'] });
  await setPolicy(cluster, NS, { topology: 'fullmesh' });
});

after(async () => {
  if (stopped) { try { process.kill(stopped, 'SIGCONT'); } catch { /* gone */ } }
  clients.forEach((c) => c.close());
  if (cluster) await cluster.stop();
});

function join(gw, peerId, opts = {}) {
  const c = connect(cluster.gateways[gw].url, { namespace: NS, peerId, webrtc: false, ...opts });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

test('the welcome carries the gateway limits and heartbeat; the SDK keeps to them', async () => {
  const a = join(0, 'a');
  const b = join(1, 'b');
  const [w] = await Promise.all([a.ready, b.ready]);
  assert.equal(w.heartbeatMs, Math.floor(IDLE_TIMEOUT_MS / 3));
  assert.equal(w.limits.maxFrameBytes, MAX_FRAME);
  assert.equal(w.limits.msgsPerSec, 500);
  assert.ok(w.limits.bytesPerSec > 0 && w.limits.maxQueueBytes > 0);
  assert.deepEqual(a.limits, w.limits);

  // Over the frame cap: refused locally with TOO_LARGE; the session stays up.
  await assert.rejects(a.emit('b', 'big', 'x'.repeat(MAX_FRAME)), (e) => e.code === 'TOO_LARGE');
  assert.equal(a.state, 'open');
  b.onEmit('small', (d) => d.length);
  assert.equal(await a.emit('b', 'small', 'y'.repeat(1000)), 1000);

  // Stream chunks shrink to fit the cap (the default 16 KiB chunk would not, in base64).
  const bytes = new Uint8Array(64 * 1024).map((_, i) => i & 255);
  let received = 0;
  let done;
  const all = new Promise((r) => { done = r; });
  b.once('stream', (s) => s.on('data', (d) => { received += d.length; if (received === bytes.length) done(); }));
  const s = await a.openStream('b');
  await s.write(bytes);
  let timer;
  await Promise.race([all, new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`stream delivered ${received} of ${bytes.length} bytes`)), 10000);
  })]).finally(() => clearTimeout(timer));
  assert.equal(a.state, 'open');
  await s.close();
});

test('pings notice a gateway that stopped answering; the client comes back when it answers', async () => {
  const c = join(0, 'c', { reconnect: { baseMs: 50, maxMs: 300 } });
  const w = await c.ready;
  const gw = cluster.gateways[0];
  const dropped = c.next('reconnecting', 10000);
  process.kill(gw.pid, 'SIGSTOP');
  stopped = gw.pid;
  const t0 = performance.now();
  const r = await dropped;
  const ms = performance.now() - t0;
  assert.match(r.reason, /heartbeat/);
  // Three silent intervals and at most one more before the check runs, plus scheduling slack.
  assert.ok(ms < w.heartbeatMs * 4 + 3000, `noticed after ${Math.round(ms)} ms`);
  console.log(`# dead gateway noticed after ${Math.round(ms)} ms (heartbeat ${w.heartbeatMs} ms)`);
  const back = c.next('welcome', 20000);
  process.kill(gw.pid, 'SIGCONT');
  stopped = null;
  const w2 = await back;
  assert.equal(w2.peerId, 'c');
  assert.equal(c.state, 'open');
});
