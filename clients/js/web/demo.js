// SPDX-License-Identifier: Apache-2.0
// meshsig demo page: joins a namespace with the SDK, lists the neighbours and
// their channel state, chats over the data channels and draws the namespace's
// live mesh from the coordinator admin API (Delaunay by positions, tree as a
// layered tree, others on a circle). Nothing happens before Join is pressed.
import { connect } from './meshsig.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsUrl = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
if (params.get('admin')) $('admin-url').value = params.get('admin');
if (params.get('ns')) $('namespace').value = params.get('ns');
if (params.get('peer')) $('peer-id').value = params.get('peer');
$('admin-token').value = localStorage.getItem('meshsig.adminToken') || '';

let client = null;
let meshTimer = null;
const neighbours = new Map(); // peer -> info

function status(text, bad = false) {
  $('status').textContent = text;
  $('status').className = bad ? 'bad' : '';
}

function chat(from, text, sys = false) {
  const div = document.createElement('div');
  if (sys) {
    div.className = 'sys';
    div.textContent = text;
  } else {
    const f = document.createElement('span');
    f.className = 'from';
    f.textContent = from;
    div.append(f, document.createTextNode(text));
  }
  $('chat-log').append(div);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}

// ---- admin API -----------------------------------------------------------------
function adminBase() {
  return $('admin-url').value.trim().replace(/\/+$/, '');
}

async function admin(method, path, body) {
  const headers = {};
  const token = $('admin-token').value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body) headers['Content-Type'] = 'application/json';
  const r = await fetch(`${adminBase()}${path}`, { method, headers, body: body && JSON.stringify(body), cache: 'no-store' });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

// ---- join / leave --------------------------------------------------------------
$('join-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (client) return;
  localStorage.setItem('meshsig.adminToken', $('admin-token').value.trim());
  const ns = $('namespace').value.trim();
  const topology = $('topology').value;
  if (topology) {
    const policy = { topology };
    if (topology === 'delaunay') policy.positioning = 'random';
    if (topology === 'tree') policy.k = 4;
    try {
      await admin('PUT', `/v1/namespaces/${encodeURIComponent(ns)}/policy`, policy);
    } catch (err) {
      chat('', `could not set the policy: ${err.message}`, true);
    }
  }
  const opts = { namespace: ns };
  if ($('peer-id').value.trim()) opts.peerId = $('peer-id').value.trim();
  if ($('offers').checked) opts.offers = 8;
  client = connect(wsUrl, opts);
  wire(client);
  $('join').disabled = true;
  $('leave').disabled = false;
  status(`joining ${ns} via ${wsUrl}…`);
  try {
    await client.ready;
  } catch (err) {
    status(`join failed: ${err.code} ${err.message}`, true);
    reset();
  }
});

$('leave').addEventListener('click', () => {
  client?.close();
  reset();
  status('left');
});

function reset() {
  client = null;
  neighbours.clear();
  renderNeighbours();
  clearInterval(meshTimer);
  meshTimer = null;
  $('join').disabled = false;
  $('leave').disabled = true;
  $('chat-input').disabled = true;
}

function wire(c) {
  c.on('welcome', (w) => {
    status(`${w.peerId} in ${c.namespace} (${w.topology || '?'}) via ${w.gatewayId}${w.resumed ? ', resumed' : ''}`);
    $('peer-id').value = w.peerId;
    $('chat-input').disabled = false;
    if (!meshTimer) { refreshMesh(); meshTimer = setInterval(refreshMesh, 1000); }
  });
  c.on('neighbour-state', (n) => {
    if (n.removed) neighbours.delete(n.peer);
    else neighbours.set(n.peer, n);
    renderNeighbours();
  });
  c.on('neighbour-up', (n) => chat('', `channel to ${n.peer} open (${n.openMs} ms)`, true));
  c.on('neighbour-down', (n) => chat('', `channel to ${n.peer} closed (${n.reason})`, true));
  c.on('peer-left', (p) => chat('', `${p.peer} left`, true));
  c.on('message', (m) => chat(m.peer, typeof m.data === 'string' ? m.data : `[${m.data.byteLength} bytes]`));
  c.on('reconnecting', (r) => status(`reconnecting in ${r.delayMs} ms (attempt ${r.attempt})…`, true));
  c.on('error', (e) => chat('', `error ${e.code}: ${e.message}`, true));
}

function renderNeighbours() {
  const items = [...neighbours.values()].sort((a, b) => a.peer.localeCompare(b.peer)).map((n) => {
    const li = document.createElement('li');
    li.dataset.peer = n.peer;
    li.dataset.channel = n.channelState;
    li.dataset.pc = n.connectionState;
    const name = document.createElement('span');
    name.textContent = n.peer;
    if (n.role && n.role !== 'PEER') {
      const r = document.createElement('span');
      r.className = 'role';
      r.textContent = n.role.toLowerCase();
      name.append(r);
    }
    const ch = document.createElement('span');
    ch.className = 'ch';
    ch.textContent = `${n.connectionState} / ${n.channelState}`;
    li.append(name, ch);
    return li;
  });
  $('neighbours').replaceChildren(...items);
}

// ---- chat over the data channels -------------------------------------------------
$('chat-input').addEventListener('keydown', (ev) => {
  if (ev.key !== 'Enter' || !client) return;
  const text = $('chat-input').value;
  if (!text) return;
  const n = client.broadcast(text);
  chat(client.peerId, n ? text : `${text}  (no open channel)`);
  $('chat-input').value = '';
});

// ---- the live mesh ----------------------------------------------------------------
let meshBusy = false;
async function refreshMesh() {
  if (!client || meshBusy) return;
  meshBusy = true;
  try {
    const ns = await admin('GET', `/v1/namespaces/${encodeURIComponent(client.namespace)}`);
    drawMesh(ns, client.peerId);
    $('mesh-info').textContent = `${ns.topology}: ${ns.peers.length} peers, ${ns.edges.length} edges`;
  } catch (err) {
    $('mesh-info').textContent = `(admin API: ${err.message})`;
  } finally {
    meshBusy = false;
  }
}

// Positions in [0,1]^2: tree by parent links, else by the peers' positions, else a circle.
function layout(ns) {
  const peers = ns.peers || [];
  if (ns.topology === 'tree' || peers.some((p) => p.parent)) return treeLayout(peers);
  const pos = new Map();
  const xy = (p) => p.position && (p.position.x !== undefined || p.position.lon !== undefined)
    ? [p.position.x ?? p.position.lon, -(p.position.y ?? p.position.lat)] : null;
  // Positions are the topology only for Delaunay; other engines may report them but ignore them.
  if (ns.topology === 'delaunay' && peers.length && peers.every(xy) && new Set(peers.map((p) => xy(p).join())).size > 1) {
    const pts = peers.map(xy);
    const xs = pts.map((q) => q[0]);
    const ys = pts.map((q) => q[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const s = Math.max(x1 - x0, y1 - y0) || 1;
    peers.forEach((p, i) => pos.set(p.id, { x: 0.5 + (pts[i][0] - (x0 + x1) / 2) / s, y: 0.5 + (pts[i][1] - (y0 + y1) / 2) / s }));
    return pos;
  }
  const ids = peers.map((p) => p.id).sort();
  ids.forEach((id, i) => {
    const a = (2 * Math.PI * i) / ids.length - Math.PI / 2;
    pos.set(id, { x: 0.5 + 0.5 * Math.cos(a), y: 0.5 + 0.5 * Math.sin(a) });
  });
  return pos;
}

function treeLayout(peers) {
  const ids = new Set(peers.map((p) => p.id));
  const kids = new Map();
  const roots = [];
  for (const p of peers) {
    if (p.parent && ids.has(p.parent)) {
      if (!kids.has(p.parent)) kids.set(p.parent, []);
      kids.get(p.parent).push(p.id);
    } else roots.push(p.id);
  }
  const pos = new Map();
  const seen = new Set();
  let slot = 0;
  let maxDepth = 0;
  const place = (id, depth) => {
    if (seen.has(id)) return pos.get(id)?.x ?? slot;
    seen.add(id);
    maxDepth = Math.max(maxDepth, depth);
    const c = (kids.get(id) || []).sort();
    let x;
    if (!c.length) x = slot++;
    else { const xs = c.map((k) => place(k, depth + 1)); x = (xs[0] + xs[xs.length - 1]) / 2; }
    pos.set(id, { x, y: depth });
    return x;
  };
  roots.sort().forEach((r) => place(r, 0));
  const w = Math.max(1, slot - 1);
  for (const v of pos.values()) { v.x = slot > 1 ? v.x / w : 0.5; v.y = maxDepth ? v.y / maxDepth : 0.5; }
  return pos;
}

const SVGNS = 'http://www.w3.org/2000/svg';
function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawMesh(ns, me) {
  const W = 1000, H = 700, M = 50;
  const pos = layout(ns);
  const at = (id) => { const p = pos.get(id); return p && [M + p.x * (W - 2 * M), M + p.y * (H - 2 * M)]; };
  const edges = [];
  const nodes = [];
  const labels = [];
  for (const [a, b] of ns.edges || []) {
    const pa = at(a), pb = at(b);
    if (!pa || !pb) continue;
    const mine = a === me || b === me;
    edges.push(el('line', { class: mine ? 'edge mine' : 'edge', x1: pa[0], y1: pa[1], x2: pb[0], y2: pb[1] }));
  }
  for (const p of ns.peers || []) {
    const q = at(p.id);
    if (!q) continue;
    nodes.push(el('circle', { class: p.id === me ? 'node me' : 'node', cx: q[0], cy: q[1], r: 9 }));
    labels.push(el('text', { x: q[0] + 11, y: q[1] - 9 }, p.id));
  }
  $('mesh').replaceChildren(...edges, ...nodes, ...labels);
}

// Tell the neighbours at once when the tab goes away.
addEventListener('pagehide', () => client?.close());
