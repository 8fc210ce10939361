// SPDX-License-Identifier: Apache-2.0
// TURN through a real coturn: the gateways hand every session STUN/TURN servers
// with short-lived credentials (welcome.iceServers). Two Chromium pages with
// iceTransportPolicy 'relay' open a data channel whose selected candidate pair
// is relayed by the local coturn; a page given an expired credential of the
// same scheme gathers no relay candidate and never connects.
//
// Needs: coturn (/usr/bin/turnserver, deploy/install-deps.sh), and what the
// other browser tests need.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { startCluster, setPolicy, adminGet, waitFor, waitForPages, sleep, freePort, SOURCE_DIR, BUILD_DIR } from './cluster.mjs';

const require = createRequire(path.join(SOURCE_DIR, 'clients/js/package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.MESHSIG_CHROMIUM || '/usr/bin/chromium';
const TURNSERVER = '/usr/bin/turnserver';
const SECRET = crypto.randomBytes(16).toString('hex');
const NS = `turn-${process.pid}`;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

let cluster = null;
let ctx = null;
let userDir = null;
let turn = null;
let turnPort = 0;
let turnDir = null;

/** A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both). */
async function freeUdpTcpPort() {
  for (let i = 0; i < 50; i++) {
    const port = await freePort();
    const ok = await new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free UDP+TCP port');
}

function credential(peer, expiry) {
  const username = `${expiry}:${peer}`;
  return { username, credential: crypto.createHmac('sha1', SECRET).update(username).digest('base64') };
}

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (deploy/install-deps.sh --browser)`);
  assert.ok(fs.existsSync(TURNSERVER), 'coturn is missing (deploy/install-deps.sh)');
  turnPort = await freeUdpTcpPort();
  // Relay ports: a range that does not hold the listening port.
  const relayLo = turnPort >= 60000 && turnPort <= 60100 ? 61000 : 60000;
  turnDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshsig-turn-'));
  const log = fs.openSync(path.join(turnDir, 'turnserver.log'), 'a');
  turn = spawn(TURNSERVER, ['-n', '--listening-ip', '127.0.0.1', '--listening-port', String(turnPort),
    '--relay-ip', '127.0.0.1', '--min-port', String(relayLo), '--max-port', String(relayLo + 100),
    '--use-auth-secret', '--static-auth-secret', SECRET, '--realm', 'meshsig', '--no-tls', '--no-dtls',
    '--no-cli', '--allow-loopback-peers', '--fingerprint', '--log-file', 'stdout', '--simple-log', '--verbose'],
  { detached: true, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  turn.exited = new Promise((r) => turn.once('exit', r));
  await waitFor('turnserver listening', () => {
    const text = fs.readFileSync(path.join(turnDir, 'turnserver.log'), 'utf8');
    return /listener opened on|Total General servers/.test(text);
  }, { timeoutMs: 15000, intervalMs: 100 });
  cluster = await startCluster({
    gateways: 2, logDir: path.join(BUILD_DIR, 'browser-artifacts', 'logs-turn'),
    gatewayArgs: ['--turn-urls', `turn:127.0.0.1:${turnPort}?transport=udp`,
      '--stun-urls', `stun:127.0.0.1:${turnPort}`, '--turn-secret', SECRET, '--turn-ttl-s', '600'],
  });
  await setPolicy(cluster, NS, { topology: 'fullmesh' });
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshsig-chromium-'));
  ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000,
  });
});

after(async () => {
  if (ctx) await Promise.race([ctx.close(), sleep(20000)]).catch(() => {});
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  if (cluster) await cluster.stop();
  if (turn) {
    try { process.kill(-turn.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([turn.exited, sleep(3000)]);
    try { process.kill(-turn.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  if (turnDir) {
    // Beside the cluster's logs, for the artifacts of a failed run.
    const logs = path.join(BUILD_DIR, 'browser-artifacts', 'logs-turn');
    fs.mkdirSync(logs, { recursive: true });
    try { fs.copyFileSync(path.join(turnDir, 'turnserver.log'), path.join(logs, 'turnserver.log')); } catch { /* none */ }
    if (!process.env.MESHSIG_KEEP_LOGS) fs.rmSync(turnDir, { recursive: true, force: true });
  }
});

/** A page on gateway gw that joins NS as peerId with the SDK; state kept in window.t. */
async function openPeer(gw, peerId, opts) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`# [${peerId}] pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`# [${peerId}] console: ${m.text()}`); });
  await page.goto(`${gw.http}/index.html`, { timeout: 20000 });
  await page.evaluate(async ({ url, ns, peerId, opts }) => {
    const m = await import('/meshsig.js');
    const t = { msgs: [], relayCands: 0, cands: 0, welcome: null, iceEvents: 0 };
    window.t = t;
    const c = m.connect(url, { namespace: ns, peerId, ...opts });
    window.c = c;
    c.on('iceServers', () => { t.iceEvents++; });
    c.on('message', ({ peer, data }) => t.msgs.push({ from: peer, data }));
    c.on('neighbour-up', ({ peer }) => {
      const pc = c.peerConnection(peer);
      t.pc = pc;
      // Counted, and a refusal kept, for the diagnostics of a wait that times out.
      try {
        c.send(peer, `hello from ${peerId}`);
        t.sent = (t.sent || 0) + 1;
      } catch (err) {
        t.sendError = String(err);
        throw err;
      }
    });
    t.welcome = await c.ready;
  }, { url: gw.url, ns: NS, peerId, opts });
  return page;
}

/** The candidate type of the selected pair's local candidate on the page's connection. */
async function selectedLocalType(page) {
  return page.evaluate(async () => {
    const stats = await window.t.pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    return { local: local?.candidateType, remote: remote?.candidateType };
  });
}

test('the welcome carries STUN and TURN servers with this session\'s credential', async () => {
  const page = await openPeer(cluster.gateways[0], 'w1', {});
  const w = await page.evaluate(() => window.t.welcome);
  const servers = w.iceServers || [];
  assert.equal(servers.length, 2, JSON.stringify(w));
  const turnSrv = servers.find((s) => (s.urls || []).some((u) => u.startsWith('turn:')));
  assert.ok(turnSrv, JSON.stringify(servers));
  const [expiry, peer] = turnSrv.username.split(':');
  assert.equal(peer, 'w1');
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Number(expiry) > now + 500 && Number(expiry) <= now + 601, `expiry ${expiry} vs now ${now}`);
  assert.equal(turnSrv.credential, credential('w1', expiry).credential);
  assert.equal(String(w.iceExpiresAt), expiry);
  await page.close();
});

test('two pages with iceTransportPolicy relay connect through coturn', async (t) => {
  const a = await openPeer(cluster.gateways[0], 'ra', { iceTransportPolicy: 'relay' });
  const b = await openPeer(cluster.gateways[1], 'rb', { iceTransportPolicy: 'relay' });
  // Closed whatever happens: a page left open keeps its edge in the namespace that the
  // next test counts.
  t.after(() => Promise.all([a.close(), b.close()]).catch(() => {}));
  for (const [p, other] of [[a, 'rb'], [b, 'ra']]) {
    await waitForPages(cluster, [a, b], `a message from ${other} over the relayed channel`, async () =>
      p.evaluate((o) => window.t.msgs.some((m) => m.from === o), other), { timeoutMs: 30000 });
  }
  for (const p of [a, b]) {
    const sel = await selectedLocalType(p);
    assert.equal(sel.local, 'relay', `selected pair ${JSON.stringify(sel)}`);
  }
  // The SDK reports the edge up and relayed; the owner counts it (admin view).
  await waitFor('the owner counts the edge up and relayed', async () => {
    const h = (await adminGet(cluster, `/v1/namespaces/${NS}`)).stats.edgeHealth;
    return h.up === 1 && h.relayed === 1;
  }, { timeoutMs: 15000 });
});

test('an expired credential gets no relay and no connection', async (t) => {
  const expired = credential('xa', Math.floor(Date.now() / 1000) - 60);
  const iceServers = [{ urls: [`turn:127.0.0.1:${turnPort}?transport=udp`], ...expired }];
  const good = await openPeer(cluster.gateways[0], 'xb', { iceTransportPolicy: 'relay', edgeTimeoutMs: 2500 });
  const bad = await openPeer(cluster.gateways[1], 'xa', { iceTransportPolicy: 'relay', iceServers, edgeTimeoutMs: 2500 });
  t.after(() => Promise.all([good.close(), bad.close()]).catch(() => {}));
  // The bad page's connection to xb exists but gathers nothing to connect with.
  await waitFor('xa has a connection to xb', () => bad.evaluate(() => !!window.c.peerConnection('xb')),
    { timeoutMs: 15000 });
  const gathered = await bad.evaluate(async () => {
    const pc = window.c.peerConnection('xb');
    const deadline = Date.now() + 15000;
    while (pc.iceGatheringState !== 'complete' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const stats = await pc.getStats();
    let relay = 0;
    stats.forEach((s) => { if (s.type === 'local-candidate' && s.candidateType === 'relay') relay++; });
    return { state: pc.iceGatheringState, relay, conn: pc.connectionState };
  });
  assert.equal(gathered.relay, 0, JSON.stringify(gathered));
  assert.notEqual(gathered.conn, 'connected');
  // And no message crossed.
  assert.equal(await good.evaluate(() => window.t.msgs.filter((m) => m.from === 'xa').length), 0);
  // The edge is reported failed (after the one ICE-restart retry) and counted so.
  await waitFor('the owner counts the edge failed', async () => {
    const h = (await adminGet(cluster, `/v1/namespaces/${NS}`)).stats.edgeHealth;
    return h.failed === 1 && h.up === 0;
  }, { timeoutMs: 30000 });
});
