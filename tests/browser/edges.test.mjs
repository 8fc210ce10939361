// SPDX-License-Identifier: Apache-2.0
// Edge health and tree sources with the SDK in Chromium, through a real cluster:
//  1. three pages in a full mesh report every edge UP (admin stats.edgeHealth);
//  2. a page that cannot gather any candidate (relay-only, no TURN server) times
//     out its edge, the server asks both ends to restart ICE, and the second
//     timeout leaves the edge FAILED;
//  3. a connected edge whose first data channel never opens (held by the page)
//     gets a second channel, opens, and only then is reported UP;
//  4. a tree with a held place: viewers hear the source is missing, a page
//     joining with role 'source' takes it and they hear it arrive.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startCluster, setPolicy, adminGet, waitFor, waitForPages, sleep, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const require = createRequire(path.join(SOURCE_DIR, 'clients/js/package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.MESHSIG_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

let cluster = null;
let ctx = null;
let userDir = null;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (deploy/install-deps.sh --browser)`);
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-edges') });
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshsig-chromium-'));
  ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000,
  });
});

after(async () => {
  if (ctx) await Promise.race([ctx.close(), sleep(20000)]).catch(() => {});
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  if (cluster) await cluster.stop();
});

async function openPeer(gw, ns, peerId, opts = {}, init = null) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`# [${peerId}] pageerror: ${e.message}`));
  if (init) await page.addInitScript(init);
  await page.goto(`${gw.http}/index.html`, { timeout: 20000 });
  await page.evaluate(async ({ url, ns, peerId, opts }) => {
    const m = await import('/meshsig.js');
    const t = { sources: [], retries: 0, ups: [], msgs: [] };
    window.t = t;
    const c = m.connect(url, { namespace: ns, peerId, ...opts });
    window.c = c;
    c.on('source', (s) => t.sources.push(s));
    c.on('topology', (b) => { if (b.retry) t.retries++; });
    c.on('neighbour-up', (n) => t.ups.push(n.peer));
    c.on('message', (m) => t.msgs.push(`${m.peer}:${m.data}`));
    await c.ready;
  }, { url: gw.url, ns, peerId, opts });
  return page;
}

const health = async (ns) => (await adminGet(cluster, `/v1/namespaces/${ns}`)).stats.edgeHealth;

test('a full mesh reports every edge up', async (t) => {
  const ns = `eh-${process.pid}`;
  await setPolicy(cluster, ns, { topology: 'fullmesh' });
  const pages = [];
  t.after(() => Promise.all(pages.map((p) => p.close())).catch(() => {}));
  for (const [i, id] of ['a', 'b', 'c'].entries()) pages.push(await openPeer(cluster.gateways[i % 2], ns, id));
  await waitForPages(cluster, pages, '3 edges reported up', async () => (await health(ns)).up === 3, { timeoutMs: 30000 });
  assert.equal((await health(ns)).failed, 0);
});

test('an edge that cannot come up is retried once, then failed', async () => {
  const ns = `ef-${process.pid}`;
  await setPolicy(cluster, ns, { topology: 'fullmesh' });
  // Relay only and no TURN server: no candidate at all, so never connected.
  const opts = { iceTransportPolicy: 'relay', iceServers: [], edgeTimeoutMs: 2500 };
  const a = await openPeer(cluster.gateways[0], ns, 'fa', opts);
  const b = await openPeer(cluster.gateways[1], ns, 'fb', opts);
  await waitFor('both ends told to retry', async () =>
    (await a.evaluate(() => window.t.retries)) >= 1 && (await b.evaluate(() => window.t.retries)) >= 1,
  { timeoutMs: 20000 });
  await waitFor('the edge marked failed', async () => (await health(ns)).failed === 1, { timeoutMs: 20000 });
  assert.equal((await health(ns)).up, 0);
  await a.close();
  await b.close();
});

// Before the SDK loads: the first "meshsig" channel this page creates is held. The page gets a
// stand-in that stays 'connecting' for good (as Chromium's own channel did under load in CI,
// on a connected connection), while a real channel under another label keeps the connection's
// data m-line, which the other side ignores. Later channels are real.
function holdFirstChannel() {
  const create = RTCPeerConnection.prototype.createDataChannel;
  window.held = 0;
  RTCPeerConnection.prototype.createDataChannel = function (label, init) {
    if (label !== 'meshsig' || window.held) return create.call(this, label, init);
    window.held++;
    create.call(this, 'meshsig-held');
    return {
      label, id: null, readyState: 'connecting', binaryType: 'blob', bufferedAmount: 0,
      onopen: null, onmessage: null, onclose: null,
      close() { this.readyState = 'closed'; },
      send() { throw new DOMException('held', 'InvalidStateError'); },
    };
  };
}

test('a connected edge whose channel never opens gets a second channel, then is reported up', async (t) => {
  const ns = `ec-${process.pid}`;
  await setPolicy(cluster, ns, { topology: 'fullmesh' });
  const opts = { edgeTimeoutMs: 4000 };
  const a = await openPeer(cluster.gateways[0], ns, 'ca', opts, holdFirstChannel);
  const b = await openPeer(cluster.gateways[1], ns, 'cb', opts, holdFirstChannel);
  t.after(() => Promise.all([a.close(), b.close()]).catch(() => {}));
  // Whichever page initiates holds its channel; the connection itself comes up.
  await waitFor('the connection up on both pages', async () =>
    (await a.evaluate(() => window.c.peerConnection('cb')?.connectionState)) === 'connected' &&
    (await b.evaluate(() => window.c.peerConnection('ca')?.connectionState)) === 'connected',
  { timeoutMs: 20000 });
  const held = (await a.evaluate(() => window.held)) + (await b.evaluate(() => window.held));
  assert.equal(held, 1, 'one page created the channel, and held it');
  await waitFor('neighbour-up on both pages', async () =>
    (await a.evaluate(() => window.t.ups)).includes('cb') && (await b.evaluate(() => window.t.ups)).includes('ca'),
  { timeoutMs: 20000 });
  await waitFor('the edge reported up', async () => (await health(ns)).up === 1, { timeoutMs: 10000 });
  assert.equal((await health(ns)).failed, 0);
  // Opened again, not restarted: no retry was needed.
  assert.equal((await a.evaluate(() => window.t.retries)) + (await b.evaluate(() => window.t.retries)), 0);
  await a.evaluate(() => window.c.send('cb', 'from-a'));
  await b.evaluate(() => window.c.send('ca', 'from-b'));
  await waitFor('a message each way over the second channel', async () =>
    (await a.evaluate(() => window.t.msgs)).includes('cb:from-b') &&
    (await b.evaluate(() => window.t.msgs)).includes('ca:from-a'), { timeoutMs: 10000 });
});

test('viewers wait for the source and hear it arrive', async () => {
  const ns = `src-${process.pid}`;
  await setPolicy(cluster, ns, { topology: 'tree', k: 2, k1: 4, beforeSource: 'wait' });
  const v = await openPeer(cluster.gateways[0], ns, 'viewer');
  await waitFor('viewer hears there is no source', async () =>
    (await v.evaluate(() => window.t.sources)).some((s) => !s.present), { timeoutMs: 10000 });
  const s = await openPeer(cluster.gateways[1], ns, 'cam', { role: 'source' });
  await waitFor('viewer hears the source arrive', async () =>
    (await v.evaluate(() => window.t.sources)).some((x) => x.present && x.peer === 'cam'), { timeoutMs: 10000 });
  assert.equal(await v.evaluate(() => window.c.source), 'cam');
  await waitFor('the source-viewer edge reported up', async () => (await health(ns)).up === 1, { timeoutMs: 30000 });
  await v.close();
  await s.close();
});
