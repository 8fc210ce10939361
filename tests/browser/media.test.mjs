// SPDX-License-Identifier: Apache-2.0
// Media through the SDK: 4 headless Chromium pages with fake camera devices in
// a full mesh over two gateways of a real cluster. Two pages add their camera
// stream before joining (sent in the first offer or answer), two add it once
// their data channels are open (renegotiation by perfect negotiation). Every
// page must receive the other three video tracks with decoded frames
// (videoWidth > 0). Then removeStream stops one page's video at the others and
// muteTrack disables a local track.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startCluster, setPolicy, adminGet, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const require = createRequire(path.join(SOURCE_DIR, 'clients/js/package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.MESHSIG_CHROMIUM || '/usr/bin/chromium';
const PAGES = 4;
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
const NS = `media-${process.pid}`;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (deploy/install-deps.sh --browser)`);
  cluster = await startCluster({ gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-media') });
  await setPolicy(cluster, NS, { topology: 'fullmesh' });
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshsig-chromium-media-'));
  ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000,
    viewport: { width: 800, height: 600 },
  });
});

after(async () => {
  if (ctx) await ctx.close().catch((e) => console.error(e.message));
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  if (cluster) await cluster.stop();
});

/** Opens a page, takes the fake camera and joins; `early`: the stream is added before joining. */
async function openPeer(gw, peerId, early) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`# [${peerId}] pageerror: ${e.message}`));
  await page.goto(`${gw.http}/index.html`, { timeout: 20000 });
  await page.evaluate(async ({ url, ns, peerId, early }) => {
    const m = await import('/meshsig.js');
    const t = { remote: new Map(), tracks: [], errors: [] };
    window.__m = t;
    // Small and slow: 12 encoders and 12 decoders share two cores with the servers.
    t.local = await navigator.mediaDevices.getUserMedia({ audio: false,
      video: { width: 160, height: 120, frameRate: 8 } });
    const c = m.connect(url, { namespace: ns, peerId, streams: early ? [t.local] : [] });
    t.c = c;
    c.on('error', (e) => t.errors.push(`${e.code}: ${e.message}`));
    c.on('track', ({ peer, track }) => t.tracks.push([peer, track.kind]));
    c.on('remote-stream', ({ peer, stream }) => {
      const v = document.createElement('video');
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      v.srcObject = stream;
      document.body.appendChild(v);
      t.remote.set(peer, { stream, video: v });
      v.play().catch(() => {});
    });
    await c.ready;
  }, { url: gw.url, ns: NS, peerId, early });
  page.peerId = peerId;
  return page;
}

async function waitIn(page, what, fn, arg, timeout) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 250 });
  } catch (err) {
    const state = await page.evaluate(() => ({
      neighbours: __m.c.neighbours.map((n) => `${n.peer}:${n.connectionState}/${n.channelState}`),
      remote: [...__m.remote].map(([p, r]) => `${p}:${r.stream.getVideoTracks().length}v/${r.video.videoWidth}px`),
      errors: __m.errors,
    })).catch(() => ({}));
    throw new Error(`${page.peerId}: ${what}: ${err.message.split('\n')[0]}\n  ${JSON.stringify(state)}\n${cluster.logs()}`);
  }
}

test('4 pages in a full mesh each decode the other three pages\' video', { timeout: 180000 }, async () => {
  const ids = Array.from({ length: PAGES }, (_, i) => `m${i + 1}`);
  const pages = [];
  // m1, m2 add their camera after the mesh is up; m3, m4 join with it.
  for (const [i, id] of ids.entries()) pages.push(await openPeer(cluster.gateways[i % 2], id, i >= 2));
  const t0 = Date.now();
  for (const p of pages.slice(0, 2)) {
    await waitIn(p, 'all data channels open', (n) => __m.c.neighbours.filter((x) => x.channelState === 'open').length === n,
      PAGES - 1, 60000);
    await p.evaluate(() => __m.c.addStream(__m.local));
  }
  await Promise.all(pages.map((p) => waitIn(p, 'decoded video from every other page',
    (n) => [...__m.remote.values()].filter((r) => r.stream.getVideoTracks().length > 0 && r.video.videoWidth > 0)
      .length === n, PAGES - 1, 90000)));
  console.log(`# media: ${PAGES} pages, every page decodes ${PAGES - 1} remote videos ` +
    `${Date.now() - t0} ms after the last join`);
  for (const p of pages) {
    const s = await p.evaluate(() => ({
      peers: [...__m.remote.keys()].sort(),
      widths: [...__m.remote.values()].map((r) => r.video.videoWidth),
      viaApi: __m.c.neighbours.map((n) => __m.c.remoteStreams(n.peer).length),
      errors: __m.errors,
    }));
    assert.deepEqual(s.peers, ids.filter((x) => x !== p.peerId));
    assert.ok(s.widths.every((w) => w > 0), JSON.stringify(s.widths));
    assert.deepEqual(s.viaApi, [1, 1, 1], 'remoteStreams(peer) has the stream of each neighbour');
    assert.deepEqual(s.errors, [], `${p.peerId} reported errors`);
  }

  // removeStream: m1's video track goes away at the others (renegotiated).
  await pages[0].evaluate(() => __m.c.removeStream(__m.local));
  await Promise.all(pages.slice(1).map((p) => waitIn(p, 'm1\'s video removed',
    () => __m.remote.get('m1').stream.getVideoTracks().length === 0, undefined, 30000)));
  // The others' video still flows to m1 and the data channels stayed open.
  const m1 = await pages[0].evaluate(() => ({
    widths: [...__m.remote.values()].map((r) => r.video.videoWidth),
    open: __m.c.neighbours.filter((n) => n.channelState === 'open').length,
  }));
  assert.equal(m1.open, PAGES - 1);
  assert.ok(m1.widths.every((w) => w > 0));

  // muteTrack: disables the local video track without renegotiation.
  const muted = await pages[1].evaluate(() => ({ n: __m.c.muteTrack('video', true),
    enabled: __m.local.getVideoTracks()[0].enabled, again: __m.c.muteTrack('video', true),
    audio: __m.c.muteTrack('audio', true) }));
  assert.deepEqual(muted, { n: 1, enabled: false, again: 0, audio: 0 });
  assert.equal(await pages[1].evaluate(() => __m.c.muteTrack('video', false)), 1);
  for (const p of pages) await p.evaluate(() => __m.c.close());
});

test('video down a tree (k=2, 4 pages): each page relays its parent\'s stream to its children', { timeout: 120000 }, async () => {
  const ns = `media-tree-${process.pid}`;
  await setPolicy(cluster, ns, { topology: 'tree', k: 2 });
  const pages = [];
  try {
    for (const [i, id] of ['v1', 'v2', 'v3', 'v4'].entries()) {
      const page = await ctx.newPage();
      page.peerId = id;
      page.on('pageerror', (e) => console.log(`# [${id}] pageerror: ${e.message}`));
      await page.goto(`${cluster.gateways[i % 2].http}/index.html`, { timeout: 20000 });
      await page.evaluate(async ({ url, ns, id, source }) => {
        const m = await import('/meshsig.js');
        const t = { remote: new Map(), errors: [] };
        window.__m = t;
        const streams = source ? [await navigator.mediaDevices.getUserMedia({ audio: false,
          video: { width: 160, height: 120, frameRate: 8 } })] : [];
        const c = m.connect(url, { namespace: ns, peerId: id, streams });
        t.c = c;
        c.on('error', (e) => t.errors.push(`${e.code}: ${e.message}`));
        c.on('remote-stream', ({ peer, stream }) => {
          const v = document.createElement('video');
          Object.assign(v, { muted: true, autoplay: true, playsInline: true, srcObject: stream });
          document.body.appendChild(v);
          t.remote.set(peer, { stream, video: v });
          v.play().catch(() => {});
          // peer-tree: what comes from the parent goes on to the children.
          if (c.neighbours.find((n) => n.peer === peer)?.role === 'PARENT') {
            c.addStream(stream, { filter: (n) => n.role === 'CHILD' });
          }
        });
        await c.ready;
      }, { url: cluster.gateways[i % 2].url, ns, id, source: i === 0 });
      pages.push(page);
    }
    const snap = await adminGet(cluster, `/v1/namespaces/${encodeURIComponent(ns)}`);
    const parent = new Map(snap.peers.map((p) => [p.id, p.parent || null]));
    assert.equal(parent.get('v1'), null, `v1 joined first and is the root (${JSON.stringify(snap.peers)})`);
    const deep = [...parent].find(([, par]) => par && par !== 'v1');
    assert.ok(deep, 'one page is two levels down');
    const t0 = Date.now();
    await Promise.all(pages.slice(1).map((p) => waitIn(p, 'decoded video from its parent',
      (par) => __m.remote.get(par)?.video.videoWidth > 0, parent.get(p.peerId), 60000)));
    console.log(`# media tree: the camera of v1 decodes at every page (${deep[0]} through ${deep[1]}) ` +
      `${Date.now() - t0} ms after the last join`);
    // Nothing goes back up: the root receives no stream.
    assert.equal(await pages[0].evaluate(() => __m.remote.size), 0);
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});
