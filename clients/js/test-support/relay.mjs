// SPDX-License-Identifier: Apache-2.0
// A tiny in-process stand-in for a gateway, for the SDK's unit tests only: it
// speaks enough of meshsig.v1.json (hello/welcome, full-mesh connects with
// pre-made offers, signal/emit/ack/service/topic/stream relaying) to exercise
// the client's bookkeeping, with the server's reply rule (README "Wire
// protocol"): one reply per request id, `ok` only for a request that had one,
// keyed outcomes for ackId/callId/streamId. The real server is tested in
// tests/browser/ and tests/integration/test_reply.c.
import { WebSocketServer } from 'ws';
import { topicMatches } from '../web/meshsig.js';

export async function startRelay({ mesh = false } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0,
    handleProtocols: (protocols) => (protocols.has('meshsig.v1.json') ? 'meshsig.v1.json' : false) });
  await new Promise((r) => wss.once('listening', r));
  const relay = {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    peers: new Map(), // id -> {ws, subs:Set, services:Set}
    log: [], // every client message, in order
    hooks: {}, // name -> fn(ws, msg) returning true when handled
    tokens: 0,
    resumable: new Map(), // token -> peer id
    sockets: new Set(),
    send(ws, m) { if (ws.readyState === 1) ws.send(JSON.stringify(m)); },
    to(id, m) { const p = relay.peers.get(id); if (p) relay.send(p.ws, m); },
    dropAll() { for (const ws of relay.sockets) ws.terminate(); },
    close() { for (const ws of relay.sockets) ws.terminate(); return new Promise((r) => wss.close(r)); },
  };
  let calls = 0;
  const pendingCalls = new Map();
  wss.on('connection', (ws) => {
    relay.sockets.add(ws);
    let me = null;
    ws.on('close', () => {
      relay.sockets.delete(ws);
      if (me && relay.peers.get(me)?.ws === ws) relay.peers.delete(me);
    });
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw));
      relay.log.push(m);
      const kind = Object.keys(m).find((k) => k !== 'id');
      if (relay.hooks[kind] && relay.hooks[kind](ws, m)) return;
      const err = (code, message) => relay.send(ws, { id: m.id, error: { code, message } });
      const ok = (result = {}) => { if (m.id) relay.send(ws, { id: m.id, ok: result }); };
      switch (kind) {
        case 'hello': {
          const h = m.hello;
          if (h.resumeToken && !relay.resumable.has(h.resumeToken)) return err('RESUME_FAILED', 'unknown token');
          me = h.resumeToken ? relay.resumable.get(h.resumeToken) : (h.peerId || `p${relay.tokens}`);
          const token = `tok-${++relay.tokens}`;
          relay.resumable.set(token, me);
          const existing = [...relay.peers.keys()].filter((p) => p !== me);
          relay.peers.set(me, { ws, subs: new Set(), services: new Set() });
          relay.send(ws, { id: m.id, welcome: { peerId: me, gatewayId: 'relay', resumeToken: token,
            topology: 'fullmesh', namespace: h.namespace } });
          if (mesh && !h.resumeToken) {
            const offers = [...(h.offers || [])];
            for (const other of existing) {
              const offer = offers.shift();
              if (offer) {
                relay.send(ws, { topology: { connect: { peer: other, initiator: true, offer } } });
                relay.to(other, { topology: { connect: { peer: me, offer } } });
              } else {
                relay.send(ws, { topology: { connect: { peer: other, ...(me < other ? { initiator: true } : {}) } } });
                relay.to(other, { topology: { connect: { peer: me, ...(other < me ? { initiator: true } : {}) } } });
              }
            }
          }
          return;
        }
        case 'signal':
          if (!relay.peers.has(m.signal.to)) return err('NOT_NEIGHBOUR', `${m.signal.to} unknown`);
          relay.to(m.signal.to, { signal: { from: me, payload: m.signal.payload } });
          return ok();
        case 'emit':
          if (!relay.peers.has(m.emit.to)) {
            if (m.emit.persistent) return ok({ stored: true });
            if (!m.emit.ackId) return err('PEER_NOT_FOUND', `${m.emit.to} is not here`);
            ok();
            return relay.send(ws, { ack: { ackId: m.emit.ackId, from: m.emit.to,
              error: { code: 'PEER_NOT_FOUND', message: `${m.emit.to} is not here` } } });
          }
          relay.to(m.emit.to, { emit: { ...m.emit, to: undefined, from: me } });
          return ok({ delivered: true });
        case 'ack':
          relay.to(m.ack.to, { ack: { ackId: m.ack.ackId, from: me, data: m.ack.data, error: m.ack.error } });
          return ok();
        case 'ping':
          if (m.id) relay.send(ws, { id: m.id, pong: {} });
          return;
        case 'topic': {
          const t = m.topic;
          if (t.subscribe) { relay.peers.get(me).subs.add(t.subscribe.pattern); return ok(); }
          if (t.unsubscribe) { relay.peers.get(me).subs.delete(t.unsubscribe.pattern); return ok(); }
          for (const [id, p] of relay.peers) {
            if ([...p.subs].some((s) => topicMatches(s, t.publish.topic))) {
              relay.to(id, { topic: { publish: { ...t.publish, from: me } } });
            }
          }
          return ok();
        }
        case 'service': {
          const s = m.service;
          if (s.register) { relay.peers.get(me).services.add(s.register.service); return ok(); }
          if (s.call) {
            const prov = [...relay.peers].find(([, p]) => p.services.has(s.call.service));
            if (!prov) {
              ok();
              return relay.send(ws, { service: { reply: { callId: s.call.callId,
                error: { code: 'SERVICE_UNAVAILABLE', message: 'nobody' } } } });
            }
            const key = `call-${++calls}`;
            pendingCalls.set(key, { caller: me, callId: s.call.callId });
            relay.to(prov[0], { service: { call: { ...s.call, callId: key, from: me } } });
            return ok({ delivered: true });
          }
          if (s.reply) {
            const p = pendingCalls.get(s.reply.callId);
            pendingCalls.delete(s.reply.callId);
            relay.to(p.caller, { service: { reply: { ...s.reply, callId: p.callId } } });
            return ok();
          }
          return;
        }
        case 'stream': {
          const st = m.stream;
          if (st.open) {
            relay.streams = relay.streams || new Map();
            relay.streams.set(`${me}/${st.streamId}`, { opener: me, receiver: st.open.to });
            relay.to(st.open.to, { stream: { streamId: `${me}/${st.streamId}`, open: { ...st.open, from: me } } });
            return ok({ delivered: true });
          }
          const own = relay.streams?.get(`${me}/${st.streamId}`);
          const s = own || relay.streams?.get(st.streamId);
          if (!s) return err('STREAM_NOT_FOUND', `no stream ${st.streamId}`);
          const key = own ? `${me}/${st.streamId}` : st.streamId;
          const toOpener = !own;
          relay.to(toOpener ? s.opener : s.receiver,
            { stream: { ...st, streamId: toOpener ? key.slice(s.opener.length + 1) : key } });
          return ok();
        }
        default:
          return;
      }
    });
  });
  return relay;
}
