// SPDX-License-Identifier: Apache-2.0
// The real PeerJS client (npm peerjs 1.5, unmodified dist file) against meshsig's
// PeerJS endpoint in headless Chromium, pages on two gateways of one cluster:
// a DataConnection exchanges a message, a MediaConnection with fake camera
// devices delivers decoded video, a taken id gives the client's
// 'unavailable-id', and a connection to a peer that arrives 2 s later opens.
// The only change from a PeerJS server app is {host, port}.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startCluster, SOURCE_DIR, BUILD_DIR, sleep } from './cluster.mjs';

const require = createRequire(path.join(SOURCE_DIR, 'clients/js/package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.MESHSIG_CHROMIUM || '/usr/bin/chromium';
const PEERJS = path.join(SOURCE_DIR, 'clients/js/node_modules/peerjs/dist/peerjs.min.js');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

let cluster = null;
let ctx = null;
let userDir = null;
const pages = [];
const tag = `${process.pid}`;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (deploy/install-deps.sh --browser)`);
  assert.ok(fs.existsSync(PEERJS), `${PEERJS} is missing (npm ci in clients/js)`);
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-peerjs'),
    gatewayArgs: ['--peerjs-discovery'] });
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshsig-chromium-peerjs-'));
  ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000,
  });
});

after(async () => {
  for (const p of pages) await p.close().catch(() => {});
  if (ctx) await ctx.close().catch((e) => console.error(e.message));
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  if (cluster) await cluster.stop();
});

/** A page of gateway gw with the PeerJS dist file loaded, no Peer made yet. */
async function peerPage(gw, id) {
  const page = await ctx.newPage();
  pages.push(page);
  page.on('pageerror', (e) => console.log(`# [${id}] pageerror: ${e.message}`));
  await page.goto(`${gw.http}/index.html`, { timeout: 20000 });
  await page.addScriptTag({ path: PEERJS });
  return page;
}

/**
 * A page on gateway gw (or the one given) with the PeerJS dist file loaded and a Peer made with
 * the options a PeerJS app uses (id: undefined asks the server for one).
 * Resolves with the page once the peer is open (or has failed, with open: false).
 */
async function openPeer(gw, id, page = null) {
  page = page || await peerPage(gw, id);
  const r = await page.evaluate(async ({ port, id }) => {
    const t = { data: [], errors: [], calls: 0 };
    window.__t = t;
    const opts = { host: '127.0.0.1', port, path: '/', key: 'peerjs', secure: false, debug: 0,
      config: { iceServers: [] } };
    const peer = id ? new peerjs.Peer(id, opts) : new peerjs.Peer(opts);
    t.peer = peer;
    peer.on('error', (e) => t.errors.push(e.type));
    peer.on('connection', (conn) => {
      conn.on('data', (d) => { t.data.push(d); conn.send(`echo:${d}`); });
    });
    return new Promise((resolve) => {
      peer.on('open', (pid) => resolve({ open: true, id: pid }));
      peer.on('error', (e) => resolve({ open: false, error: e.type }));
      setTimeout(() => resolve({ open: false, error: 'timeout' }), 20000);
    });
  }, { port: gw.port, id });
  page.result = r;
  return page;
}

test('a DataConnection across two gateways exchanges messages', { timeout: 90000 }, async () => {
  const a = await openPeer(cluster.gateways[0], undefined); // id from GET /peerjs/id
  assert.ok(a.result.open, `peer A did not open: ${a.result.error}`);
  assert.match(a.result.id, /^[0-9a-f-]{36}$/);
  const bId = `pj-b-${tag}`;
  const b = await openPeer(cluster.gateways[1], bId);
  assert.ok(b.result.open, `peer B did not open: ${b.result.error}`);
  const reply = await a.evaluate((bId) => new Promise((resolve, reject) => {
    const conn = window.__t.peer.connect(bId);
    conn.on('open', () => conn.send('hello from A'));
    conn.on('data', (d) => resolve(d));
    conn.on('error', (e) => reject(new Error(String(e))));
    setTimeout(() => reject(new Error('no reply within 30 s')), 30000);
  }), bId);
  assert.equal(reply, 'echo:hello from A');
  assert.deepEqual(await b.evaluate(() => window.__t.data), ['hello from A']);
});

test('a MediaConnection with fake media delivers a video track', { timeout: 120000 }, async () => {
  const a = await openPeer(cluster.gateways[0], `pj-call-a-${tag}`);
  const b = await openPeer(cluster.gateways[1], `pj-call-b-${tag}`);
  assert.ok(a.result.open && b.result.open);
  await b.evaluate(() => {
    window.__t.peer.on('call', async (call) => {
      const s = await navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120 } });
      call.answer(s);
    });
  });
  const width = await a.evaluate((bId) => new Promise((resolve, reject) => {
    navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120 } }).then((s) => {
      const call = window.__t.peer.call(bId, s);
      call.on('stream', (remote) => {
        const v = document.createElement('video');
        v.muted = true;
        v.autoplay = true;
        v.srcObject = remote;
        document.body.appendChild(v);
        v.play().catch(() => {});
        const t0 = Date.now();
        const poll = () => {
          if (v.videoWidth > 0) resolve(v.videoWidth);
          else if (Date.now() - t0 > 30000) reject(new Error('no decoded frame in 30 s'));
          else setTimeout(poll, 100);
        };
        poll();
      });
      call.on('error', (e) => reject(new Error(String(e))));
    }, reject);
    setTimeout(() => reject(new Error('no stream within 60 s')), 60000);
  }), `pj-call-b-${tag}`);
  assert.ok(width > 0, `videoWidth ${width}`);
});

test('listAllPeers on one gateway lists the peers of every gateway', { timeout: 60000 }, async () => {
  const ids = [`pj-d1-${tag}`, `pj-d2-${tag}`];
  const a = await openPeer(cluster.gateways[0], ids[0]);
  const b = await openPeer(cluster.gateways[1], ids[1]);
  assert.ok(a.result.open && b.result.open);
  for (const p of [a, b]) {
    const listed = await p.evaluate(() => new Promise((resolve, reject) => {
      window.__t.peer.listAllPeers((list) => resolve(list));
      setTimeout(() => reject(new Error('no answer within 10 s')), 10000);
    }));
    assert.ok(Array.isArray(listed), JSON.stringify(listed));
    for (const id of ids) assert.ok(listed.includes(id), `${id} not in ${JSON.stringify(listed)}`);
  }
  // Another key's namespace is not listed: only peerjs.peerjs's ids.
  const res = await fetch(`${cluster.gateways[1].http}/peerjs/peers`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /application\/json/);
  assert.ok((await res.json()).every((id) => typeof id === 'string'));
});

test('a taken id gives unavailable-id', { timeout: 60000 }, async () => {
  const id = `pj-clash-${tag}`;
  const a = await openPeer(cluster.gateways[0], id);
  assert.ok(a.result.open);
  const b = await openPeer(cluster.gateways[1], id); // another page: another token
  assert.equal(b.result.open, false);
  assert.equal(b.result.error, 'unavailable-id');
});

test('a connection to a peer that connects 2 s later opens and delivers', { timeout: 90000 }, async () => {
  const a = await openPeer(cluster.gateways[0], `pj-early-${tag}`);
  assert.ok(a.result.open);
  const lateId = `pj-late-${tag}`;
  // The late page loads first: what is held for the late peer expires 5 s after it was sent
  // (holdMs, as in PeerJS), and a loaded machine can take that long to open a page.
  const latePage = await peerPage(cluster.gateways[1], lateId);
  await a.evaluate((lateId) => {
    const t = window.__t;
    const conn = t.peer.connect(lateId);
    t.lateReply = new Promise((resolve) => {
      conn.on('open', () => conn.send('sent before you came'));
      conn.on('data', (d) => resolve(d));
    });
  }, lateId);
  await sleep(2000); // the scenario: the other peer shows up 2 s later
  const late = await openPeer(cluster.gateways[1], lateId, latePage);
  assert.ok(late.result.open, `late peer did not open: ${late.result.error}`);
  const reply = await a.evaluate(() => Promise.race([window.__t.lateReply,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no reply within 30 s')), 30000))]));
  assert.equal(reply, 'echo:sent before you came');
  assert.deepEqual(await a.evaluate(() => window.__t.errors), []);
});
