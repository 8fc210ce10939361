// SPDX-License-Identifier: Apache-2.0
// Starts a real local meshsig cluster for the browser tests: nats-server with
// JetStream (temporary store), one coordinator and N gateways, all on free
// loopback ports, binaries from MESHSIG_BUILD_DIR (default /work/main/build or
// <source>/build). Every process runs in its own process group and is killed
// when the cluster stops, when the test process exits, or on SIGINT/SIGTERM.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SOURCE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD_DIR = process.env.MESHSIG_BUILD_DIR || path.join(SOURCE_DIR, 'build');

const live = new Set(); // child processes of every cluster in this process

function killAll(signal) {
  for (const child of live) {
    try { process.kill(-child.pid, signal); } catch { /* gone */ }
  }
}
process.on('exit', () => killAll('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAll('SIGKILL'); process.exit(128 + (os.constants.signals[sig] || 1)); });
}
process.on('uncaughtException', (err) => { killAll('SIGKILL'); console.error(err); process.exit(1); });

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => { s.destroy(); resolve(ok); };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; throws with `what` after timeoutMs. */
export async function waitFor(what, fn, { timeoutMs = 30000, intervalMs = 200 } = {}) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() - t0 > timeoutMs) {
      const detail = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * What each page's SDK client (window.c) has for its neighbours: connection, ICE and
 * signalling state, candidates and candidate pairs. For the log of a failed test.
 */
export async function describePage(page) {
  return page.evaluate(async () => {
    const c = window.c;
    if (!c) return { client: 'none' };
    const out = { peer: c.peerId, state: c.state, neighbours: [],
      // What the test page recorded (turn.test.mjs and others keep window.t.msgs).
      msgs: (window.t && Array.isArray(window.t.msgs)) ? window.t.msgs.map((m) => m.from) : undefined,
      sent: window.t && window.t.sent, sendError: window.t && window.t.sendError };
    for (const n of c.neighbours || []) {
      const pc = c.peerConnection(n.peer);
      const e = { peer: n.peer, initiator: n.initiator, channel: n.channelState };
      if (pc) {
        const stats = await pc.getStats();
        const cands = [];
        const pairs = [];
        const channels = [];
        stats.forEach((s) => {
          if (s.type === 'local-candidate' || s.type === 'remote-candidate') {
            cands.push(`${s.type[0]}:${s.candidateType}:${s.protocol}:${s.address}:${s.port}`);
          }
          if (s.type === 'candidate-pair') {
            pairs.push(`${s.state}${s.nominated ? '*' : ''} req=${s.requestsSent} resp=${s.responsesReceived}`);
          }
          // Whether a message the app sent left this side and whether one arrived: a lost
          // app message on an open channel is told apart from one never sent.
          if (s.type === 'data-channel') {
            channels.push(`${s.label}#${s.dataChannelIdentifier}:${s.state} sent=${s.messagesSent} recv=${s.messagesReceived}`);
          }
        });
        Object.assign(e, { conn: pc.connectionState, ice: pc.iceConnectionState,
          gathering: pc.iceGatheringState, signaling: pc.signalingState, cands, pairs, channels });
      }
      out.neighbours.push(e);
    }
    return out;
  });
}

/**
 * waitFor that, when it times out, logs every page's neighbours (describePage) and the
 * signal and edge counters of every gateway and of the coordinator: which signal did
 * not arrive, and where it went.
 */
export async function waitForPages(cluster, pages, what, fn, opts) {
  try {
    return await waitFor(what, fn, opts);
  } catch (e) {
    for (const p of pages) console.log(`# ${JSON.stringify(await describePage(p).catch((x) => String(x)))}`);
    for (const url of [...cluster.gateways.map((g) => g.http), cluster.admin]) {
      const text = await fetch(`${url}/metrics`).then((r) => r.text(), (x) => String(x));
      const lines = text.split('\n').filter((l) => /signal|edge/.test(l) && !l.startsWith('#'));
      console.log(`# ${url}: ${lines.join(' | ')}`);
    }
    throw e;
  }
}

function need(file) {
  if (!fs.existsSync(file)) {
    throw new Error(`${file} is missing: build meshsig first (cmake -S . -B build -G Ninja && ninja -C build)`);
  }
  return file;
}

/**
 * Starts nats-server, a coordinator (insecure dev mode) and `gateways` gateways
 * serving clients/js/web (each also given `gatewayArgs`; the coordinator `coordArgs`).
 * Returns {gateways:[{id, port, url, http, pid}], admin, natsUrl, run(), stop(), logs()};
 * run(name, cmd, args) starts another process (e.g. a backend) logging beside the others;
 * it is killed when the test process exits, and the caller stops it before that.
 * stop() copies the process logs to logDir (when given) and removes the temporary directory
 * (kept when MESHSIG_KEEP_LOGS is set).
 */
export async function startCluster({ gateways = 2, buildDir = BUILD_DIR, staticDir, logDir,
  gatewayArgs = [], coordArgs = [] } = {}) {
  const coordBin = need(path.join(buildDir, 'coordinator', 'meshsig-coordinator'));
  const gwBin = need(path.join(buildDir, 'gateway', 'meshsig-gateway'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshsig-browser-'));
  const procs = [];
  const cluster = { dir, procs, gateways: [], admin: null };

  const run = (name, cmd, args) => {
    const log = fs.openSync(path.join(dir, `${name}.log`), 'a');
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    child.name = name;
    child.exited = new Promise((r) => child.once('exit', (code, sig) => { live.delete(child); r({ code, sig }); }));
    live.add(child);
    procs.push(child);
    return child;
  };
  cluster.run = run;
  const waitPort = async (name, port, child) => {
    let dead = false;
    child.exited.then(() => { dead = true; });
    await waitFor(`${name} on port ${port}`, async () => {
      if (dead) throw new Error(`${name} exited; see ${path.join(dir, `${name}.log`)}`);
      return canConnect(port);
    }, { timeoutMs: 15000, intervalMs: 100 });
  };

  // Gateways first (their sessions leave cleanly), then the coordinator, then NATS.
  cluster.stop = async () => {
    for (const group of [procs.filter((c) => c.name.startsWith('gw-')),
      procs.filter((c) => c.name === 'coordinator'), procs.filter((c) => c.name === 'nats')]) {
      for (const c of group) { try { process.kill(-c.pid, 'SIGTERM'); } catch { /* gone */ } }
      const all = Promise.all(group.map((c) => c.exited));
      if (await Promise.race([all.then(() => 'done'), sleep(3000).then(() => 'late')]) === 'late') {
        for (const c of group) { try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ } }
        await Promise.race([all, sleep(2000)]);
      }
    }
    // The logs outlive the temporary directory when a log dir is given.
    if (logDir) {
      fs.mkdirSync(logDir, { recursive: true });
      for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.log'))) {
        fs.copyFileSync(path.join(dir, f), path.join(logDir, f));
      }
    }
    if (!process.env.MESHSIG_KEEP_LOGS) fs.rmSync(dir, { recursive: true, force: true });
  };
  cluster.logs = () => fs.readdirSync(dir).filter((f) => f.endsWith('.log'))
    .map((f) => `--- ${f}\n${fs.readFileSync(path.join(dir, f), 'utf8').split('\n').slice(-40).join('\n')}`)
    .join('\n');

  try {
    const natsPort = await freePort();
    const nats = run('nats', 'nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js',
      '-sd', path.join(dir, 'jetstream')]);
    await waitPort('nats', natsPort, nats);
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    cluster.natsUrl = natsUrl;

    const adminPort = await freePort();
    const coord = run('coordinator', coordBin, ['--nats', natsUrl, '--admin-listen', `127.0.0.1:${adminPort}`,
      '--insecure-dev', '--id', 'coord-1', ...coordArgs]);
    await waitPort('coordinator', adminPort, coord);
    cluster.admin = `http://127.0.0.1:${adminPort}`;
    await waitFor('coordinator /readyz', async () => (await fetch(`${cluster.admin}/readyz`)).ok,
      { timeoutMs: 15000 });

    for (let i = 1; i <= gateways; i++) {
      const port = await freePort();
      const id = `gw-${i}`;
      const gw = run(id, gwBin, ['--listen', `127.0.0.1:${port}`, '--nats', natsUrl, '--id', id,
        '--insecure-dev', '--static-dir', staticDir || path.join(SOURCE_DIR, 'clients/js/web'),
        ...gatewayArgs]);
      await waitPort(id, port, gw);
      cluster.gateways.push({ id, port, url: `ws://127.0.0.1:${port}/ws`, http: `http://127.0.0.1:${port}`,
        pid: gw.pid });
    }
  } catch (err) {
    const logs = cluster.logs();
    await cluster.stop();
    err.message += `\n${logs}`;
    throw err;
  }
  return cluster;
}

/** Admin API helpers (insecure dev mode: no token). */
export async function adminGet(cluster, p) {
  const r = await fetch(`${cluster.admin}${p}`);
  if (!r.ok) throw new Error(`GET ${p}: ${r.status} ${await r.text()}`);
  return r.json();
}

export async function setPolicy(cluster, ns, policy) {
  const r = await fetch(`${cluster.admin}/v1/namespaces/${encodeURIComponent(ns)}/policy`, {
    method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(policy) });
  if (!r.ok) throw new Error(`PUT policy of ${ns}: ${r.status} ${await r.text()}`);
  return r.json();
}
