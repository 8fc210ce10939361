// SPDX-License-Identifier: Apache-2.0
// meshsig SDK: the browser and Node client of a meshsig signaling cluster.
//
// One WebSocket to a gateway (subprotocol meshsig.v1.json, one JSON object per
// text frame, proto/client.proto in the proto3 JSON mapping). The server tells
// the client whom to connect to (topology connect/disconnect); this module
// turns those events into RTCPeerConnections, each with one data channel
// labelled "meshsig", and relays offers, answers and trickled ICE candidates as
// `signal` messages. The side told `initiator: true` makes the first offer;
// glare is resolved by perfect negotiation with polite = !initiator.
//
// Besides the mesh it wraps the server's messaging as promises: emit with ack,
// services (register/call), rooms, topics (NATS-style wildcards) and streams
// with credit-based flow control. Every request carries an `id`; the server's
// `error` with that id rejects the promise with a MeshsigError whose `.code`
// is the ErrorCode name from client.proto (or DISCONNECTED / CLOSED / TIMEOUT
// for failures the client itself detects).
//
// The connection survives drops: it reconnects with exponential backoff and
// jitter and sends the resume token from the last welcome, so the server keeps
// the peer id and its edges (working peer connections are left alone). When
// resuming fails the client joins afresh and re-registers its services, rooms
// and topic subscriptions.
//
// Runs unchanged in browsers and in Node >= 18: in Node the `ws` package
// provides WebSocket and `@roamhq/wrtc` (optional) provides RTCPeerConnection;
// both can be injected through the options instead.
//
// Sections: 1 constants and errors, 2 small pure helpers (emitter, backoff,
// request table, topic matcher, negotiation state, base64), 3 Neighbour (one
// peer connection), 4 pre-made offers, 5 Stream, 6 Client (connection,
// dispatch, mesh, messaging API), 7 connect().

// ---------------------------------------------------------------------------
// 1. Constants and errors

export const VERSION = '0.1.0';
export const SUBPROTOCOL = 'meshsig.v1.json';
export const CHANNEL_LABEL = 'meshsig';
// Tree namespaces: a second, pre-negotiated channel carries broadcasts only,
// so that app frames on "meshsig" need no envelope. The id is fixed on both
// sides (negotiated channels are not announced) and far above the ids the
// browser gives announced channels.
export const TREE_CHANNEL_LABEL = 'meshsig-tree';
const TREE_CHANNEL_ID = 1000;
// The n2n bridge's control channel (option `bridge`), pre-negotiated the same way.
export const CTL_CHANNEL_LABEL = 'meshsig-ctl';
const CTL_CHANNEL_ID = 1001;

/** ErrorCode names from client.proto; the server's `error.code` is one of them. */
export const ERROR_CODES = Object.freeze([
  'CODE_UNSPECIFIED', 'BAD_REQUEST', 'UNKNOWN_MESSAGE', 'UNAUTHORIZED', 'FORBIDDEN',
  'NOT_JOINED', 'ALREADY_JOINED', 'ID_TAKEN', 'PEER_NOT_FOUND', 'NOT_NEIGHBOUR',
  'NAMESPACE_FULL', 'RATE_LIMITED', 'TOO_LARGE', 'ACK_TIMEOUT', 'TIMEOUT', 'PEER_LEFT',
  'SERVICE_UNAVAILABLE', 'REPLACED', 'STREAM_NOT_FOUND', 'NO_CREDIT', 'UNAVAILABLE',
  'RESUME_FAILED', 'INTERNAL', 'SOURCE_TAKEN', 'KICKED', 'BANNED', 'NAMESPACE_CLOSED',
  'LIMIT_REACHED',
]);

// A hello answered with one of these will not succeed by retrying the same hello.
const FATAL_HELLO_CODES = new Set(['UNAUTHORIZED', 'FORBIDDEN', 'ID_TAKEN', 'BAD_REQUEST',
  'ALREADY_JOINED', 'REPLACED', 'BANNED', 'NAMESPACE_CLOSED']);
// The server ended this session for good (another session took the id, an operator removed
// the peer or closed the namespace): reconnecting would not be wanted.
const FATAL_SESSION_CODES = new Set(['REPLACED', 'KICKED', 'NAMESPACE_CLOSED']);

/** A failed request or a protocol error. `code` is an ErrorCode name or a client-side code. */
export class MeshsigError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'MeshsigError';
    this.code = code;
    Object.assign(this, extra);
  }
}

function toError(err) {
  if (!err) return new MeshsigError('CODE_UNSPECIFIED', 'unknown error');
  if (err instanceof MeshsigError) return err;
  return new MeshsigError(err.code || 'CODE_UNSPECIFIED', err.message || String(err.code || err));
}

// ---------------------------------------------------------------------------
// 2. Small pure helpers (exported for the unit tests)

/**
 * A minimal event emitter that also looks like an EventTarget:
 * `on(type, fn)` calls fn(detail); `addEventListener(type, fn)` calls
 * fn({type, detail}). A throwing listener does not stop the others.
 */
export class Emitter {
  #listeners = new Map();
  #wrapped = new WeakMap();

  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  once(type, fn) {
    const off = this.on(type, (d) => { off(); fn(d); });
    return off;
  }

  /** Resolves with the next event of this type (rejects after timeoutMs if given). */
  next(type, timeoutMs = 0) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const off = this.once(type, (d) => { if (timer) clearTimeout(timer); resolve(d); });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          off();
          reject(new MeshsigError('TIMEOUT', `no ${type} event within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  addEventListener(type, fn) {
    const w = (detail) => (typeof fn === 'function' ? fn : fn.handleEvent.bind(fn))(
      { type, detail, target: this });
    this.#wrapped.set(fn, w);
    this.on(type, w);
  }

  removeEventListener(type, fn) {
    const w = this.#wrapped.get(fn);
    if (w) this.off(type, w);
  }

  listenerCount(type) {
    return this.#listeners.get(type)?.size || 0;
  }

  /** Alias of _emit; Client overrides emit() with the messaging emit. */
  emit(type, detail) {
    return this._emit(type, detail);
  }

  _emit(type, detail) {
    const set = this.#listeners.get(type);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (err) {
        // A listener's bug must not break the client's state machine.
        setTimeout(() => { throw err; }, 0);
      }
    }
    return true;
  }
}

/**
 * Reconnect delay for the attempt-th consecutive failure (0-based):
 * min(maxMs, baseMs * factor^attempt), of which the fraction `jitter` is
 * randomised ("equal jitter"), so that a gateway restart does not bring every
 * client back in the same millisecond.
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const { baseMs = 250, maxMs = 15000, factor = 2, jitter = 0.5 } = opts;
  const n = Math.max(0, attempt | 0);
  const cap = Math.min(maxMs, baseMs * Math.pow(factor, n));
  const j = Math.min(1, Math.max(0, jitter));
  return Math.round(cap * (1 - j) + cap * j * random());
}

/**
 * Requests waiting for the server: id -> promise, settled by the server's reply rule (README
 * "Wire protocol"): a request with an id gets exactly one reply echoing it, `error` or its
 * success reply (`ok`, or the kind the request names: `welcome`, `pong`, `room`). A reply of
 * another kind is a protocol error, not something to wait past. A request that starts something
 * keyed (an emit's ackId, a call's callId, a stream's streamId; the SDK uses the request id as
 * that key) says with `outcome(ok)` whether its `ok` ends it or its keyed outcome follows
 * (settleOutcome): the outcome of an accepted request always comes that way, whatever the
 * cause. Each entry has a local deadline so that nothing waits forever.
 */
export class RequestTable {
  #map = new Map();
  #next = 1;
  #prefix;
  #timers;

  // The default timers are wrapped: browsers refuse window.setTimeout called on another `this`.
  constructor({ prefix = '', timers = { setTimeout: (f, ms) => setTimeout(f, ms),
    clearTimeout: (t) => clearTimeout(t) } } = {}) {
    this.#prefix = prefix;
    this.#timers = timers;
  }

  nextId() {
    return `${this.#prefix}${this.#next++}`;
  }

  get size() {
    return this.#map.size;
  }

  has(id) {
    return this.#map.has(id);
  }

  /**
   * Waits for the reply to request `id`.
   * accept: the success reply's kind (ServerMessage oneof names); empty = any.
   * map: turns the settling body into the resolved value (may throw a MeshsigError).
   * outcome: (okBody) => true when a keyed outcome follows the `ok` (settleOutcome).
   */
  add(id, { timeoutMs = 15000, accept = [], map = (v) => v, timeoutCode = 'TIMEOUT',
    outcome = null } = {}) {
    if (this.#map.has(id)) throw new MeshsigError('BAD_REQUEST', `request id ${id} is in use`);
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, accept, map, outcome, replied: false, timer: null };
      if (timeoutMs > 0) {
        entry.timer = this.#timers.setTimeout(() => {
          this.#map.delete(id);
          reject(new MeshsigError(timeoutCode, `no reply to request ${id} within ${timeoutMs} ms`,
            { id }));
        }, timeoutMs);
      }
      this.#map.set(id, entry);
    });
  }

  /** Offers the reply (a message whose `id` is id) of `kind` with `body`; true when it was one. */
  settle(id, kind, body) {
    const e = this.#map.get(id);
    if (!e || e.replied) return false;
    if (kind === 'error') {
      this.#finish(id, e);
      e.reject(new MeshsigError(body?.code || 'CODE_UNSPECIFIED', body?.message || '', { id }));
      return true;
    }
    if (e.accept.length && !e.accept.includes(kind)) {
      this.#finish(id, e);
      e.reject(new MeshsigError('INTERNAL', `request ${id} was answered with ${kind}, not ${e.accept.join(' or ')}`, { id }));
      return true;
    }
    if (e.outcome && e.outcome(body || {})) {
      e.replied = true; // accepted: the keyed outcome settles it
      return true;
    }
    this.#finish(id, e);
    this.#resolve(e, body, kind);
    return true;
  }

  /** Offers the keyed outcome (ack, service reply, stream close) of request key. */
  settleOutcome(key, kind, body) {
    const e = this.#map.get(key);
    if (!e || !e.outcome) return false;
    this.#finish(key, e);
    if (kind === 'error') {
      e.reject(new MeshsigError(body?.code || 'CODE_UNSPECIFIED', body?.message || '', { id: key }));
    } else {
      this.#resolve(e, body, kind);
    }
    return true;
  }

  #resolve(e, body, kind) {
    try {
      e.resolve(e.map(body, kind));
    } catch (err) {
      e.reject(toError(err));
    }
  }

  reject(id, err) {
    const e = this.#map.get(id);
    if (!e) return false;
    this.#finish(id, e);
    e.reject(err);
    return true;
  }

  rejectAll(err) {
    for (const [id, e] of [...this.#map]) {
      this.#finish(id, e);
      e.reject(err);
    }
  }

  #finish(id, e) {
    this.#map.delete(id);
    if (e.timer) this.#timers.clearTimeout(e.timer);
  }
}

/** NATS-style topic match, as the coordinator does it: '*' = one token, '>' (last) = the rest. */
export function topicMatches(pattern, topic) {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

/**
 * The decision part of perfect negotiation
 * (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example), kept free of
 * RTCPeerConnection so that it can be tested alone. The impolite side ignores
 * an offer that collides with its own; the polite side rolls its own back.
 */
export class Negotiation {
  constructor(polite) {
    this.polite = !!polite;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswerPending = false;
  }

  /**
   * What to do with a remote description of `type` ('offer' | 'answer') when
   * the connection's signalingState is `state`: 'ignore', 'rollback' (roll
   * back the local offer, then apply) or 'apply'.
   */
  onDescription(type, state) {
    const readyForOffer = !this.makingOffer &&
      (state === 'stable' || this.settingRemoteAnswerPending);
    const collision = type === 'offer' && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return 'ignore';
    if (type === 'answer' && state !== 'have-local-offer') return 'ignore'; // stale or duplicate
    if (collision && state === 'have-local-offer') return 'rollback';
    return 'apply';
  }

  /** Whether a failing addIceCandidate is expected (it belonged to an ignored offer). */
  candidateErrorExpected() {
    return this.ignoreOffer;
  }
}

/** bytes (Uint8Array) -> base64, the proto3 JSON form of `bytes`. */
export function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** base64 (standard or URL-safe, padded or not) -> Uint8Array. */
export function fromBase64(b64) {
  const s = atob(String(b64 || '').replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function toBytes(data) {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new MeshsigError('BAD_REQUEST', 'stream data must be a string, ArrayBuffer or typed array');
}

/** The oneof member of a ServerMessage (the one key that is not `id`). */
export function messageKind(msg) {
  for (const k of Object.keys(msg)) if (k !== 'id') return k;
  return null;
}

// Intervals and deadlines use a monotonic clock (a wall clock can jump).
const monoNow = () => (globalThis.performance?.now ? globalThis.performance.now() : Date.now());

// A frame's size in UTF-8 bytes, counted only when it could be over `max`.
function frameTooBig(text, max) {
  if (!(max > 0) || text.length * 3 <= max) return false;
  return new TextEncoder().encode(text).length > max;
}

function randomId(n = 8) {
  const abc = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < n; i++) s += abc[Math.floor(Math.random() * abc.length)];
  return s;
}

function candidateJSON(c) {
  if (typeof c.toJSON === 'function') return c.toJSON();
  return { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex,
    usernameFragment: c.usernameFragment };
}

// ---------------------------------------------------------------------------
// 3. Neighbour: one RTCPeerConnection and its "meshsig" data channel
//
// Signal payloads on the wire:
//   {"type":"offer"|"answer","sdp":"..."}             (plus "offerId" on pre-made offers)
//   {"type":"candidate","candidate":{"candidate":"...","sdpMid":"0","sdpMLineIndex":0}}
// All work on one connection runs through one promise chain, so an answer is
// never applied while the offer it answers is still being set.

class Neighbour {
  constructor(client, peer, info) {
    this.client = client;
    this.peer = peer;
    this.initiator = !!info.initiator;
    this.role = info.role || 'PEER';
    this.metadata = info.metadata || {};
    this.position = info.position || null;
    this.neg = new Negotiation(!this.initiator);
    this.pc = null;
    this.dc = null;
    this.chain = Promise.resolve();
    this.remoteCandidates = []; // arrived before the remote description
    this.closed = false;
    this.up = false; // neighbour-up emitted and neighbour-down not yet
    this.usable = false; // the channel is open below the page too (attach)
    this.confirming = null; // the announced channel whose open is being confirmed (confirmOpen)
    this.dcMine = false; // this side created dc (it may open it again: reopenChannel)
    this.reopened = 0; // channels opened again on this connection
    this.tc = null; // tree broadcast channel (tree namespaces)
    this.ctl = null; // bridge control channel (option bridge)
    this.theirPeers = new Set(); // bridge: the peers this neighbour has an open control channel to
    this.ctlHeard = false; // bridge: this neighbour sent a list, so it runs the bridge too
    this.route = null; // bridge: how signals to this peer go: null (undecided), 'server' or a neighbour id
    this.queue = []; // bridge: signals waiting for a route
    this.sentViaBridge = []; // bridge: signals sent through a neighbour, re-sent by the server on fallback
    this.bridgeTimer = null;
    this.senders = new Map(); // local track id -> RTCRtpSender on this connection
    this.remoteStreams = new Map(); // stream id -> MediaStream received from this peer
    this.createdAt = Date.now();
    this.openedAt = 0;
  }

  get connectionState() {
    return this.pc ? this.pc.connectionState : 'new';
  }

  // 'connecting' while an announced channel is open to the page but not yet below it (attach).
  get channelState() {
    if (!this.dc) return 'none';
    return this.dc.readyState === 'open' && !this.usable ? 'connecting' : this.dc.readyState;
  }

  info() {
    return { peer: this.peer, initiator: this.initiator, role: this.role, metadata: this.metadata,
      position: this.position, connectionState: this.connectionState,
      channelState: this.channelState, treeChannel: this.tc ? this.tc.readyState : 'none',
      signalRoute: this.route, openMs: this.openedAt ? this.openedAt - this.createdAt : null };
  }

  /** Starts a fresh connection (or adopts a pre-made one whose offer the peer got). */
  start(PC, rtcConfig, premade = null) {
    this.pc = premade ? premade.pc : new PC(rtcConfig);
    const pc = this.pc;
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        this.client._signal(this.peer, { type: 'candidate', candidate: candidateJSON(e.candidate) });
      }
    };
    pc.onconnectionstatechange = () => {
      this.client._neighbourState(this);
      if (pc.connectionState === 'failed' && this.initiator && typeof pc.restartIce === 'function') {
        pc.restartIce();
      }
    };
    pc.onnegotiationneeded = () => this.run(() => this.makeOffer());
    pc.ondatachannel = (e) => {
      if (e.channel.label === CHANNEL_LABEL) this.attach(e.channel, true);
    };
    pc.ontrack = (e) => this.onTrack(e);
    // The initiator's first offer carries the local media; the other side adds
    // its tracks when that offer arrives (syncLocalMedia in onDescription), so
    // that the first exchange is one offer and one answer, not a glare.
    if (this.initiator || premade) {
      this.syncLocalMedia();
      this.openSideChannels();
    }
    if (premade) {
      this.attach(premade.dc);
      for (const c of premade.lateCandidates) this.client._signal(this.peer, c);
      premade.lateCandidates = null;
    } else if (this.initiator) {
      this.attach(pc.createDataChannel(CHANNEL_LABEL));
      this.run(() => this.makeOffer());
    }
  }

  /**
   * The pre-negotiated channels, once per connection: the tree broadcast
   * channel in tree namespaces, the bridge's control channel when it is on.
   */
  openSideChannels() {
    if (!this.pc || this.closed) return;
    if (!this.ctl && this.client._bridge) {
      const ctl = this.pc.createDataChannel(CTL_CHANNEL_LABEL, { negotiated: true, id: CTL_CHANNEL_ID });
      this.ctl = ctl;
      ctl.onopen = () => this.client._bridge?.onCtlOpen(this);
      ctl.onclose = () => this.client._bridge?.onCtlClose(this);
      ctl.onmessage = (e) => this.client._bridge?.onCtlMessage(this, e.data);
    }
    if (this.tc || this.client.topology !== 'tree') return;
    const tc = this.pc.createDataChannel(TREE_CHANNEL_LABEL, { negotiated: true, id: TREE_CHANNEL_ID });
    this.tc = tc;
    tc.binaryType = 'arraybuffer';
    tc.onmessage = (e) => this.client._onTreeMessage(this, e.data);
    tc.onopen = () => this.client._neighbourState(this);
  }

  /**
   * Takes the "meshsig" channel: one this side created, or (announced) one the peer created
   * that arrived in a datachannel event. An announced channel is handed to the page already
   * 'open' while the browser below may still be opening it: Chromium announces it before it
   * has acknowledged the peer's OPEN (libwebrtc DataChannelController::OnDataChannelOpenMessage
   * tells the observer first, then posts OnTransportReady to the network thread), and a send
   * that reaches the network thread before that is dropped (SctpDataChannel::SendImpl refuses
   * it as INVALID_STATE; the page sees no error, Chromium logs "Send failed"). An app that
   * answered neighbour-up with a send lost that message now and then, more often on a loaded
   * machine (the relayed-channel flake of tests/browser/turn.test.mjs). So an announced
   * channel counts as usable, and neighbour-up fires, only once the connection's stats say the
   * channel itself is open; until then channelState says 'connecting' and send() refuses with
   * CHANNEL_NOT_OPEN. A channel this side created is open below when its open event fires.
   *
   * A channel may replace an earlier one (reopenChannel on the side that created it, the
   * datachannel event on the other): the earlier one is closed and forgotten, and the
   * neighbour is up again once the new one is open.
   */
  attach(dc, announced = false) {
    const old = this.dc;
    this.dc = dc;
    this.dcMine = !announced;
    this.usable = false;
    if (old && old !== dc) {
      old.onopen = old.onmessage = old.onclose = null;
      try { old.close(); } catch { /* already closed */ }
      this.down('channel replaced');
    }
    dc.binaryType = 'arraybuffer';
    let opened = false;
    const up = () => {
      if (this.closed || opened || this.dc !== dc) return;
      opened = true;
      this.usable = true;
      if (!this.openedAt) this.openedAt = Date.now();
      this.up = true;
      this.client._neighbourState(this);
      this.client._emit('neighbour-up', this.info());
    };
    dc.onopen = () => {
      // Some implementations fire open twice.
      if (this.closed || opened || this.dc !== dc || this.confirming === dc) return;
      if (announced) this.confirmOpen(dc, up);
      else up();
    };
    dc.onmessage = (e) => this.client._emit('message', { peer: this.peer, data: e.data });
    dc.onclose = () => {
      if (this.dc !== dc) return;
      this.client._neighbourState(this);
      this.down('channel closed');
    };
    if (dc.readyState === 'open') dc.onopen();
  }

  /**
   * Opens the "meshsig" channel again on a connection that is up while the channel this side
   * created never opened. Seen in Chromium under load: the connection 'connected', its channel
   * 'connecting' for good, so the edge never carried a message and, reported UP on the
   * connection alone, was never repaired (a browser_mesh failure in CI). A second channel on
   * the same association needs no renegotiation; the other side takes it from its
   * datachannel event (attach). Once per connection: a second stuck channel is reported.
   */
  reopenChannel() {
    if (this.closed || !this.pc || !this.dcMine || this.usable || this.reopened >= 1) return false;
    if (this.pc.connectionState !== 'connected' || this.dc?.readyState !== 'connecting') return false;
    this.reopened++;
    this.attach(this.pc.createDataChannel(CHANNEL_LABEL));
    return true;
  }

  down(reason) {
    if (!this.up) return;
    this.up = false;
    this.client._emit('neighbour-down', { ...this.info(), reason });
  }

  run(step) {
    this.chain = this.chain.then(() => (this.closed ? undefined : step())).catch((err) => {
      if (!this.closed) {
        this.client._report(new MeshsigError('WEBRTC', `${this.peer}: ${err?.message || err}`,
          { peer: this.peer, cause: err }));
      }
    });
    return this.chain;
  }

  async makeOffer() {
    const pc = this.pc;
    if (pc.signalingState !== 'stable') return;
    this.neg.makingOffer = true;
    try {
      const offer = await pc.createOffer();
      if (pc.signalingState !== 'stable' || this.closed) return;
      await pc.setLocalDescription(offer);
      // The description we made, not pc.localDescription: candidates trickle
      // separately, and @roamhq/wrtc's localDescription getter serialises the
      // SDP on the JS thread while its signalling thread adds candidates to it
      // (a use-after-free that crashed Node under load).
      this.client._signal(this.peer, { type: offer.type, sdp: offer.sdp });
    } finally {
      this.neg.makingOffer = false;
    }
  }

  onSignal(payload) {
    if (!payload || typeof payload !== 'object') return;
    if (payload.type === 'offer' || payload.type === 'answer') {
      this.run(() => this.onDescription(payload));
    } else if (payload.type === 'candidate' && payload.candidate) {
      this.run(() => this.onCandidate(payload.candidate));
    }
  }

  async onDescription(desc) {
    const pc = this.pc;
    const action = this.neg.onDescription(desc.type, pc.signalingState);
    if (action === 'ignore') return;
    if (action === 'rollback') {
      try {
        await pc.setLocalDescription({ type: 'rollback' });
      } catch {
        // Implementations without explicit rollback do it inside setRemoteDescription.
      }
    }
    this.neg.settingRemoteAnswerPending = desc.type === 'answer';
    try {
      await pc.setRemoteDescription({ type: desc.type, sdp: desc.sdp });
    } finally {
      this.neg.settingRemoteAnswerPending = false;
    }
    for (const c of this.remoteCandidates.splice(0)) await this.onCandidate(c);
    if (desc.type === 'offer') {
      this.syncLocalMedia(); // into the offered transceivers where they match
      this.openSideChannels(); // the offer has the data m-line already: no renegotiation
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.client._signal(this.peer, { type: answer.type, sdp: answer.sdp }); // see makeOffer
    }
  }

  async onCandidate(c) {
    if (!this.pc.remoteDescription) {
      if (this.remoteCandidates.length < 256) this.remoteCandidates.push(c);
      return;
    }
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      if (!this.neg.candidateErrorExpected()) throw err;
    }
  }

  /**
   * Waits until the connection's stats report the announced channel dc open below the page,
   * then calls up(). Stats are polled, for at most the edge timeout: Chromium hands out a
   * cached report for 50 ms, which may predate the channel. A connection without stats, or
   * whose reports have no entry for the channel for 250 ms, is taken at its word (other
   * implementations announce a channel once it is open).
   */
  confirmOpen(dc, up) {
    const pc = this.pc;
    if (!pc || typeof pc.getStats !== 'function') { up(); return; }
    this.confirming = dc;
    const done = () => { if (this.confirming === dc) this.confirming = null; };
    const t0 = monoNow();
    const deadline = t0 + Math.max(1000, this.client.opts.edgeTimeoutMs || 10000);
    const check = () => {
      if (this.closed || this.dc !== dc || dc.readyState !== 'open') { done(); return; }
      pc.getStats().then((stats) => {
        let state = null;
        stats.forEach((s) => {
          if (s.type === 'data-channel' && (s.dataChannelIdentifier === dc.id ||
              (s.dataChannelIdentifier === undefined && s.label === dc.label))) state = s.state;
        });
        const now = monoNow();
        if (state === 'open' || (state === null && now - t0 > 250) || now > deadline) {
          done();
          up();
        } else {
          setTimeout(check, 25);
        }
      }, () => { done(); up(); });
    };
    check();
  }

  send(data) {
    if (!this.dc || this.channelState !== 'open') {
      throw new MeshsigError('CHANNEL_NOT_OPEN', `the data channel to ${this.peer} is not open`,
        { peer: this.peer });
    }
    this.dc.send(data);
  }

  /** Adds senders for local tracks this connection lacks and removes those of removed streams. */
  syncLocalMedia() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    if (!this.initiator && !pc.remoteDescription) return; // wait for the first offer
    const want = new Map(); // track id -> [track, stream]
    for (const [stream, filter] of this.client._localStreams.values()) {
      if (filter && !filter(this.info())) continue;
      for (const track of stream.getTracks()) want.set(track.id, [track, stream]);
    }
    for (const [id, sender] of [...this.senders]) {
      if (want.has(id)) continue;
      this.senders.delete(id);
      try { pc.removeTrack(sender); } catch { /* connection closed */ }
    }
    for (const [id, [track, stream]] of want) {
      if (!this.senders.has(id)) this.senders.set(id, pc.addTrack(track, stream));
    }
    // addTrack/removeTrack fire negotiationneeded: perfect negotiation renegotiates.
  }

  onTrack(e) {
    let streams = [...(e.streams || [])];
    if (!streams.length && typeof MediaStream === 'function') streams = [new MediaStream([e.track])];
    this.client._emit('track', { peer: this.peer, track: e.track, streams, transceiver: e.transceiver });
    for (const stream of streams) {
      if (this.remoteStreams.has(stream.id)) continue;
      this.remoteStreams.set(stream.id, stream);
      this.client._emit('remote-stream', { peer: this.peer, stream });
    }
  }

  close(reason) {
    if (this.closed) return;
    this.closed = true;
    this.down(reason);
    try { this.dc?.close(); } catch { /* already closed */ }
    try { this.tc?.close(); } catch { /* already closed */ }
    try { this.ctl?.close(); } catch { /* already closed */ }
    if (this.bridgeTimer) clearTimeout(this.bridgeTimer);
    try { this.pc?.close(); } catch { /* already closed */ }
  }
}

// ---------------------------------------------------------------------------
// 4. Pre-made offers (full mesh join in one round trip)
//
// Before hello the client makes N connections with a data channel and a local
// offer each and sends the offers in hello.offers. The coordinator hands one to
// each existing peer in its topology.connect (that peer answers at once) and
// gives the joiner the same offer back in its own connect, which is how the
// joiner knows which connection that peer will answer: the offerId.

async function makePremade(PC, rtcConfig, gatherMs) {
  const pc = new PC(rtcConfig);
  const pm = { offerId: randomId(12), pc, dc: null, payload: null, lateCandidates: [] };
  let captured = false;
  pc.onicecandidate = (e) => {
    // Candidates found before the offer was captured are in its SDP already.
    if (captured && e.candidate && e.candidate.candidate && pm.lateCandidates) {
      pm.lateCandidates.push({ type: 'candidate', candidate: candidateJSON(e.candidate) });
    }
  };
  pm.dc = pc.createDataChannel(CHANNEL_LABEL);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  if (pc.iceGatheringState !== 'complete' && gatherMs > 0) {
    await new Promise((resolve) => {
      const t = setTimeout(resolve, gatherMs);
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      };
    });
  }
  captured = true;
  const d = pc.localDescription || offer;
  pm.payload = { type: 'offer', sdp: d.sdp, offerId: pm.offerId };
  return pm;
}

// ---------------------------------------------------------------------------
// 4b. Bridge: signals for a new edge through a neighbour both ends share
//
// With `bridge: true`, every connection also has a control channel
// (CTL_CHANNEL_LABEL). Over it each peer tells its neighbours whom it has a
// control channel to ({t:'nb', peers}). When the owner announces an edge
// A-B, A sends its signals for B through a neighbour C that lists B:
// {t:'relay', to:B, p} to C, which passes {t:'fwd', from:A, p} to B. C names
// the sender from the channel the request came on, not from the request, and B
// applies it only as a signal of an edge the owner announced to B (the same
// check as for the server's signals), so a neighbour can neither forge a
// sender nor create an edge. C answers {t:'nofwd', to} when it cannot pass it.
//
// One route per edge and side: a neighbour when one lists the peer, else the
// server. A peer with no bridgeable neighbour yet (a new one) takes its first
// edge through the server; when it is not that edge's initiator it sends a
// {type:'bridge-server'} signal so that the other side does too. Its other
// edges wait up to `waitMs` for the first one's control channel to make a
// route appear, then use the server. Signals that came through the server set
// the route to the server. An edge routed through a neighbour that is not
// connected after `timeoutMs` re-sends its signals through the server.

class Bridge {
  constructor(client, { waitMs = 3000, timeoutMs = 5000 } = {}) {
    this.client = client;
    this.waitMs = waitMs;
    this.timeoutMs = timeoutMs;
    this.stats = { viaServer: 0, viaBridge: 0, relayed: 0, received: 0, fallbacks: 0, refused: 0 };
    this.gossipPending = false;
    this.early = new Map(); // peer -> 'server' or the neighbour id its signals came through before its connect
  }

  get neighbours() {
    return this.client._neighbours;
  }

  /** A neighbour that has an open control channel to us and lists `peer`. */
  pick(peer) {
    for (const c of this.neighbours.values()) {
      if (c.peer !== peer && c.ctlHeard && c.ctl?.readyState === 'open' && c.theirPeers.has(peer)) return c;
    }
    return null;
  }

  /** This peer has no way to reach anyone through a neighbour yet, and no server edge under way. */
  isFirstEdge(n) {
    for (const m of this.neighbours.values()) {
      if (m === n) continue;
      if ((m.ctl?.readyState === 'open' && m.ctlHeard) || m.route === 'server') return false;
    }
    return true;
  }

  /** Called for each topology connect once the Neighbour exists. */
  onConnect(n, serverOffer) {
    // Signals that came before the connect: answer the way they came.
    const via = this.early.get(n.peer);
    this.early.delete(n.peer);
    if (serverOffer || via === 'server') { n.route = 'server'; return; }
    if (via && this.neighbours.get(via)?.ctl?.readyState === 'open') { this.#route(n, this.neighbours.get(via)); return; }
    // A new peer whose edge the other side will offer: tell it to use the server.
    if (!n.initiator && n.route === null && this.isFirstEdge(n)) {
      n.route = 'server';
      this.client._serverSignal(n.peer, { type: 'bridge-server' });
    }
  }

  send(n, payload) {
    if (n.route === 'server') { this.client._serverSignal(n.peer, payload); return; }
    if (n.route !== null) {
      const c = this.neighbours.get(n.route);
      if (c?.ctl?.readyState === 'open') {
        this.#relay(c, n, payload);
        return;
      }
      this.fallback(n);
      this.client._serverSignal(n.peer, payload);
      return;
    }
    const c = this.pick(n.peer);
    if (c) {
      this.#route(n, c);
      this.#relay(c, n, payload);
    } else if (this.isFirstEdge(n)) {
      n.route = 'server';
      this.client._serverSignal(n.peer, payload);
    } else {
      n.queue.push(payload);
      if (!n.bridgeTimer) {
        n.bridgeTimer = setTimeout(() => {
          n.bridgeTimer = null;
          if (n.route === null && !n.closed) this.#useServer(n);
        }, this.waitMs);
      }
    }
  }

  #route(n, c) {
    n.route = c.peer;
    if (n.bridgeTimer) clearTimeout(n.bridgeTimer);
    n.bridgeTimer = setTimeout(() => {
      n.bridgeTimer = null;
      if (!n.closed && n.channelState !== 'open' && n.route !== 'server') this.fallback(n);
    }, this.timeoutMs);
  }

  #relay(c, n, payload) {
    try {
      c.ctl.send(JSON.stringify({ t: 'relay', to: n.peer, p: payload }));
      n.sentViaBridge.push(payload);
      this.stats.viaBridge++;
    } catch {
      this.fallback(n);
      this.client._serverSignal(n.peer, payload);
    }
  }

  #useServer(n) {
    n.route = 'server';
    for (const p of n.queue.splice(0)) this.client._serverSignal(n.peer, p);
  }

  /** The route through a neighbour failed: everything sent that way goes again through the server. */
  fallback(n) {
    if (n.route === 'server') return;
    this.stats.fallbacks++;
    if (n.bridgeTimer) { clearTimeout(n.bridgeTimer); n.bridgeTimer = null; }
    n.route = 'server';
    for (const p of n.sentViaBridge.splice(0)) this.client._serverSignal(n.peer, p);
    for (const p of n.queue.splice(0)) this.client._serverSignal(n.peer, p);
  }

  /** A signal from `peer` came through the server: answer the same way. */
  onServerSignal(peer) {
    const n = this.neighbours.get(peer);
    if (!n) { this.#noteEarly(peer, 'server'); return; }
    if (n.route === null) this.#useServer(n);
  }

  #noteEarly(peer, via) {
    if (this.early.size >= 256) this.early.delete(this.early.keys().next().value);
    if (!this.early.has(peer)) this.early.set(peer, via);
  }

  /** Routes appeared (a neighbour's list changed, a control channel opened): send what waited. */
  recheck() {
    for (const n of this.neighbours.values()) {
      if (n.route !== null || !n.queue.length) continue;
      const c = this.pick(n.peer);
      if (!c) continue;
      this.#route(n, c);
      for (const p of n.queue.splice(0)) this.#relay(c, n, p);
    }
  }

  onCtlOpen(n) {
    if (n.bridgeTimer && n.route === 'server') { clearTimeout(n.bridgeTimer); n.bridgeTimer = null; }
    this.gossip();
  }

  onCtlClose(n) {
    n.theirPeers.clear();
    n.ctlHeard = false;
    this.gossip();
  }

  /** Tells every neighbour, once per turn of the event loop, whom this peer can pass signals to. */
  gossip() {
    if (this.gossipPending) return;
    this.gossipPending = true;
    setTimeout(() => {
      this.gossipPending = false;
      // A negotiated channel opens with the transport even when the other side has no bridge:
      // list only neighbours that proved they run it by sending a list themselves.
      const open = [...this.neighbours.values()].filter((m) => m.ctl?.readyState === 'open');
      const msg = JSON.stringify({ t: 'nb', peers: open.filter((m) => m.ctlHeard).map((m) => m.peer) });
      for (const m of open) {
        try { m.ctl.send(msg); } catch { /* closing */ }
      }
    }, 0);
  }

  onCtlMessage(n, raw) {
    if (this.neighbours.get(n.peer) !== n) return;
    let m;
    try { m = JSON.parse(typeof raw === 'string' ? raw : new TextDecoder().decode(raw)); } catch { return; }
    if (!m || typeof m !== 'object') return;
    switch (m.t) {
      case 'nb':
        if (!Array.isArray(m.peers)) return;
        n.theirPeers = new Set(m.peers.filter((x) => typeof x === 'string').slice(0, 4096));
        if (!n.ctlHeard) {
          n.ctlHeard = true;
          this.gossip(); // our list now includes n
        }
        this.recheck();
        return;
      case 'relay': {
        // n asks us to pass a signal on: the sender is n, whatever the message says.
        const to = this.neighbours.get(m.to);
        if (typeof m.to === 'string' && to?.ctlHeard && to.ctl?.readyState === 'open') {
          try {
            to.ctl.send(JSON.stringify({ t: 'fwd', from: n.peer, p: m.p }));
            this.stats.relayed++;
            return;
          } catch { /* fall through */ }
        }
        try { n.ctl.send(JSON.stringify({ t: 'nofwd', to: m.to })); } catch { /* closing */ }
        return;
      }
      case 'fwd': {
        if (typeof m.from !== 'string' || m.from === this.client.peerId) return;
        const a = this.neighbours.get(m.from);
        this.stats.received++;
        if (a && a.route === null) this.#route(a, n); // answer the way the signal came
        if (!a) this.#noteEarly(m.from, n.peer);
        // Not (yet) a neighbour: held like a server signal before its connect, applied only if
        // the owner announces the edge.
        this.client._onSignalFrom(m.from, m.p);
        return;
      }
      case 'nofwd': {
        const b = this.neighbours.get(m.to);
        if (b && b.route === n.peer) { this.stats.refused++; this.fallback(b); }
        return;
      }
      default:
    }
  }
}

// ---------------------------------------------------------------------------
// 5. Stream: a bidirectional byte stream through the server with credit
//
// Each side may write only as many bytes as the other side granted (credit).
// By default a side grants `window` bytes when the stream opens and re-grants
// what it has delivered to its 'data' listeners (autoCredit).

export class Stream extends Emitter {
  constructor(client, { id, peer, label, metadata, opener, window, autoCredit }) {
    super();
    this.client = client;
    this.id = id;
    this.peer = peer;
    this.label = label || '';
    this.metadata = metadata || {};
    this.opener = opener; // true on the side that opened it
    this.window = window;
    this.autoCredit = autoCredit;
    this.credit = 0; // bytes this side may still send
    this.closed = false;
    this.writes = []; // {bytes, off, resolve, reject}
    this.bytesIn = 0;
    this.bytesOut = 0;
  }

  /** Writes data (string, ArrayBuffer, typed array); resolves once all of it is sent. */
  write(data) {
    if (this.closed) return Promise.reject(new MeshsigError('STREAM_NOT_FOUND', 'stream is closed'));
    const bytes = toBytes(data);
    return new Promise((resolve, reject) => {
      this.writes.push({ bytes, off: 0, resolve, reject });
      this.#pump();
    });
  }

  /** Grants the other side `bytes` more bytes towards this side. */
  grant(bytes) {
    if (this.closed || bytes <= 0) return;
    this.client._send({ stream: { streamId: this.id, credit: { bytes } } });
  }

  /** Closes the stream after pending writes have gone out. */
  async close() {
    if (this.closed) return;
    await Promise.allSettled(this.writes.map((w) => new Promise((r) => {
      const { resolve, reject } = w;
      w.resolve = (v) => { resolve(v); r(); };
      w.reject = (e) => { reject(e); r(); };
    })));
    if (this.closed) return;
    this.client._send({ stream: { streamId: this.id, close: {} } });
    this._closed(null);
  }

  /** Closes at once, dropping pending writes, and tells the other side why. */
  abort(code = 'CODE_UNSPECIFIED', message = '') {
    if (this.closed) return;
    this.client._send({ stream: { streamId: this.id, close: { abort: true, error: { code, message } } } });
    this._closed(new MeshsigError(code, message || 'aborted'));
  }

  _onCredit(bytes) {
    this.credit += bytes;
    this.emit('credit', { bytes, credit: this.credit });
    this.#pump();
  }

  _onData(b64) {
    const bytes = fromBase64(b64);
    this.bytesIn += bytes.length;
    this.emit('data', bytes);
    if (this.autoCredit && bytes.length) this.grant(bytes.length);
  }

  _closed(error) {
    if (this.closed) return;
    this.closed = true;
    const err = error || new MeshsigError('STREAM_NOT_FOUND', 'stream closed');
    for (const w of this.writes.splice(0)) w.reject(err);
    this.client._streams.delete(this.id);
    this.emit('close', { error });
  }

  /**
   * This stream as a Node Duplex (Node only): `pipe`/`pipeline` work, and
   * back pressure crosses the network: credit is granted only for bytes the
   * Duplex's reader has taken (push() accepted them), so a reader that stops
   * stops the writer after one window. Ending the writable side closes the
   * stream (the protocol has no half close); destroy() aborts it.
   */
  toDuplex(opts = {}) {
    const Duplex = nodeStream?.Duplex;
    if (!Duplex) throw new MeshsigError('UNAVAILABLE', 'toDuplex needs Node\'s stream module; use toWeb() in browsers');
    this.autoCredit = false;
    let owed = 0; // bytes delivered but not yet re-granted
    let waiting = false; // push() said stop: grant again on the next _read
    const s = this;
    const d = new Duplex({
      ...opts,
      read() {
        if (waiting) { waiting = false; s.grant(owed); owed = 0; }
      },
      write(chunk, enc, cb) {
        s.write(chunk).then(() => cb(), cb);
      },
      final(cb) {
        s.close().then(() => cb(), cb);
      },
      destroy(err, cb) {
        if (!s.closed) s.abort(err ? codeOf(err) : 'CODE_UNSPECIFIED', err?.message || 'destroyed');
        cb(err);
      },
    });
    this.on('data', (bytes) => {
      owed += bytes.length;
      if (d.push(bytes)) { s.grant(owed); owed = 0; } else waiting = true;
    });
    this.on('close', ({ error }) => {
      if (error) d.destroy(error);
      else d.push(null);
    });
    return d;
  }

  /**
   * This stream as a WHATWG {readable, writable} pair (browsers, Deno, Node
   * 18+). Credit is granted as the readable's queue drains (highWaterMark in
   * bytes, default one window), so back pressure crosses the network here too.
   */
  toWeb({ highWaterMark = this.window || 256 * 1024 } = {}) {
    this.autoCredit = false;
    let owed = 0;
    const s = this;
    let ctl = null;
    const readable = new ReadableStream({
      type: 'bytes',
      start(c) { ctl = c; },
      pull() { if (owed) { s.grant(owed); owed = 0; } },
      cancel(reason) { if (!s.closed) s.abort('CODE_UNSPECIFIED', String(reason || 'cancelled')); },
    }, { highWaterMark });
    this.on('data', (bytes) => {
      try { ctl.enqueue(bytes); } catch { return; } // cancelled
      owed += bytes.length;
      if (ctl.desiredSize > 0) { s.grant(owed); owed = 0; }
    });
    this.on('close', ({ error }) => {
      try {
        if (error) ctl.error(error);
        else ctl.close();
      } catch { /* already closed or cancelled */ }
    });
    const writable = new WritableStream({
      write: (chunk) => s.write(chunk),
      close: () => s.close(),
      abort: (reason) => s.abort('CODE_UNSPECIFIED', String(reason?.message || reason || 'aborted')),
    });
    return { readable, writable };
  }

  #pump() {
    const max = this.client._streamChunk;
    while (this.writes.length && this.credit > 0 && !this.closed) {
      const w = this.writes[0];
      const n = Math.min(this.credit, max, w.bytes.length - w.off);
      if (n > 0) {
        const chunk = w.bytes.subarray(w.off, w.off + n);
        this.client._send({ stream: { streamId: this.id, data: { data: toBase64(chunk) } } });
        w.off += n;
        this.credit -= n;
        this.bytesOut += n;
      }
      if (w.off >= w.bytes.length) {
        this.writes.shift();
        w.resolve();
      }
    }
  }
}

// ---------------------------------------------------------------------------
// PeerScope: client.from(peer), the emits of one peer as events

export class PeerScope {
  #client;
  #listeners = new Map(); // event -> Set(fn(data, detail))

  constructor(client, peer) {
    this.#client = client;
    this.peer = peer;
  }

  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /** Removes one listener, every listener of an event, or (no arguments) all of them. */
  off(event, fn) {
    if (event === undefined) this.#listeners.clear();
    else if (fn === undefined) this.#listeners.delete(event);
    else this.#listeners.get(event)?.delete(fn);
  }

  once(event, fn) {
    const w = (data, detail) => { this.off(event, w); fn(data, detail); };
    return this.on(event, w);
  }

  listenerCount(event) {
    if (event === undefined) return [...this.#listeners.values()].reduce((n, set) => n + set.size, 0);
    return this.#listeners.get(event)?.size || 0;
  }

  /** client.emit to this peer. */
  emit(event, data, opts) {
    const p = this.#client.emit(this.peer, event, data, opts);
    p.catch((err) => this.#client._scopeEmitFailed(this.peer, err));
    return p;
  }

  _emit(event, data, detail) {
    for (const fn of [...(this.#listeners.get(event) || [])]) {
      try { fn(data, detail); } catch (err) { setTimeout(() => { throw err; }, 0); }
    }
  }

  _clear() {
    this.#listeners.clear();
  }
}

// ---------------------------------------------------------------------------
// 6. Client

const DEFAULTS = {
  requestTimeoutMs: 15000,
  reconnect: { baseMs: 250, maxMs: 15000, factor: 2, jitter: 0.5, maxAttempts: Infinity },
  offerGatherMs: 500,
  premadeTtlMs: 15000,
  streamWindow: 256 * 1024,
  streamChunk: 16 * 1024,
  outboxLimit: 2000,
  // Edge health: each connection's outcome goes to the server (UP, or FAILED
  // when it fails or is not up within edgeTimeoutMs), which repairs the topology.
  edgeReports: true,
  edgeTimeoutMs: 10000,
};

export class Client extends Emitter {
  constructor(url, opts = {}) {
    super();
    if (!opts.namespace) throw new MeshsigError('BAD_REQUEST', 'connect: namespace is required');
    this.url = url;
    this.opts = { ...DEFAULTS, ...opts, reconnect: { ...DEFAULTS.reconnect, ...(opts.reconnect || {}) } };
    this.namespace = opts.namespace;
    this.peerId = opts.peerId || null;
    this.gatewayId = null;
    this.topology = null;
    this.welcome = null;
    this.limits = null; // the gateway's, from the welcome
    this.state = 'connecting'; // connecting | open | reconnecting | closed
    this.resumeToken = null;
    this._requests = new RequestTable({ prefix: '' });
    this._neighbours = new Map(); // peer -> Neighbour
    this._early = new Map(); // peer -> signals that came before the connect event
    this._premade = []; // unused pre-made offers
    this._streams = new Map(); // streamId -> Stream
    this._localStreams = new Map(); // MediaStream id -> [MediaStream, filter or null] sent to neighbours
    this._streamChunk = this.opts.streamChunk;
    this._services = new Map(); // name -> handler
    this._emitHandlers = new Map(); // event -> handler
    this._anyListeners = new Set(); // fn(event, data, detail) for every incoming emit
    this._p2pTargetHandler = null; // onAddP2pTarget
    this._scopes = new Map(); // peer -> PeerScope (client.from(peer))
    this._topics = new Map(); // pattern -> Set(handler)
    this._rooms = new Set();
    this._seenMsgIds = new Set();
    this._received = []; // msgIds of persistent emits handed to the app, acked at the next tick
    this._outbox = [];
    this._ws = null;
    this._attempt = 0;
    this._timers = new Set();
    this._hbTimer = null;
    this._lastRx = 0;
    this._helloId = null;
    this._helloHadResume = false;
    this._PC = opts.RTCPeerConnection || null;
    this._bridge = opts.bridge && opts.webrtc !== false ? new Bridge(this, opts.bridge === true ? {} : opts.bridge) : null;
    this._wrtcTried = false;
    this.connectedAt = 0;

    this.ready = new Promise((resolve, reject) => { this._readyRes = resolve; this._readyRej = reject; });
    this.ready.catch(() => {}); // an unobserved failed join is reported through 'error'
    for (const stream of opts.streams || []) this._localStreams.set(stream.id, [stream, null]);
    this.rooms = {
      join: (room) => this.#request({ room: { join: { room } } }, { accept: ['room'],
        map: (r) => { this._rooms.add(room); return r.members?.peers || []; } }),
      leave: (room) => this.#request({ room: { leave: { room } } }, { accept: ['ok'],
        map: () => { this._rooms.delete(room); } }),
      emit: (room, event, data, { echo = false } = {}) => this.#request({ room: { emit: {
        room, event, ...(data === undefined ? {} : { data }), ...(echo ? { echo: true } : {}) } } },
      { accept: ['ok'], map: () => undefined }),
      members: (room) => this.#request({ room: { list: { room } } }, { accept: ['room'],
        map: (r) => r.members?.peers || [] }),
      joined: () => [...this._rooms],
    };
    this.#open();
  }

  // ---- connection --------------------------------------------------------

  async #open() {
    const WS = this.opts.WebSocket || globalThis.WebSocket || (await importOptional('ws'))?.default;
    if (!WS) {
      this.#fail(new MeshsigError('UNAVAILABLE', 'no WebSocket implementation (npm install ws)'));
      return;
    }
    if (this.state === 'closed') return;
    let premade = [];
    if (!this.resumeToken && this.opts.offers > 0 && this.opts.webrtc !== false && this.#premadeCanGather()) {
      premade = await this.#makePremade(this.opts.offers);
      if (this.state === 'closed') { premade.forEach((p) => p.pc.close()); return; }
    }
    let ws;
    try {
      ws = new WS(this.url, SUBPROTOCOL);
    } catch (err) {
      premade.forEach((p) => p.pc.close());
      this.#scheduleReconnect(err);
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._lastRx = monoNow();
      this.#sendHello(premade);
    };
    ws.onmessage = (e) => {
      if (this._ws !== ws) return;
      this._lastRx = monoNow();
      let msg;
      try {
        msg = JSON.parse(typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data));
      } catch {
        this._report(new MeshsigError('BAD_REQUEST', 'the server sent a frame that is not JSON'));
        return;
      }
      this.#dispatch(msg);
    };
    ws.onerror = () => {}; // onclose follows and carries the decision
    ws.onclose = (e) => {
      if (this._ws !== ws) return;
      this.#onClose(e?.code, e?.reason);
    };
  }

  /**
   * Pre-made offers are gathered before hello, so before the welcome's ICE servers are
   * known: relay-only with no servers of the app's own would gather nothing, and the
   * offer would name no candidate the peer could ever reach (the edge would time out,
   * and its ICE-restart retry would fail the same way). Such a client makes none.
   */
  #premadeCanGather() {
    const cfg = this.#rtcConfig();
    return cfg.iceTransportPolicy !== 'relay' || (cfg.iceServers || []).length > 0;
  }

  async #makePremade(n) {
    const PC = await this.#peerConnectionClass();
    if (!PC) return [];
    const cfg = this.#rtcConfig();
    const made = await Promise.allSettled(
      Array.from({ length: n }, () => makePremade(PC, cfg, this.opts.offerGatherMs)));
    return made.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  }

  #sendHello(premade) {
    const id = this._requests.nextId();
    this._helloId = id;
    this._helloHadResume = !!this.resumeToken;
    // Persistent emits stay stored until we ack their msgId (#onEmit), not
    // merely until the gateway wrote them to a socket we may never read.
    const hello = { namespace: this.namespace };
    // Gateways before persistent-emit acks refuse the field (unknown fields are an
    // error there): after such a refusal this client says hello without it, and its
    // persistent emits are receipted on the gateway's write instead.
    if (!this._helloWithoutAcks) hello.acksPersistent = true;
    if (this.opts.token) hello.token = this.opts.token;
    if (this.peerId) hello.peerId = this.peerId;
    if (this.resumeToken) hello.resumeToken = this.resumeToken;
    if (this.opts.position) hello.position = this.opts.position;
    if (this.opts.metadata) hello.metadata = this.opts.metadata;
    if (this.opts.role === 'source') hello.role = 'SOURCE';
    if (this.opts.policy) hello.policy = this.opts.policy;
    if (premade.length) {
      hello.offers = premade.map((p) => p.payload);
      this._premade.push(...premade);
    }
    this._requests.add(id, { accept: ['welcome'], timeoutMs: this.opts.requestTimeoutMs })
      .then((w) => this.#onWelcome(w), (err) => this.#onHelloError(err));
    this.#rawSend({ id, hello });
  }

  #onWelcome(w) {
    const resumed = this._helloHadResume;
    this.welcome = w;
    this.peerId = w.peerId || this.peerId;
    this.gatewayId = w.gatewayId || null;
    this.topology = w.topology || null;
    this.limits = w.limits || null;
    // STUN/TURN servers with this session's TURN credentials (a resume brings fresh ones).
    if (w.iceServers) this.#setServerIce(w.iceServers);
    // A stream data frame (base64, 4/3 of the chunk, plus its envelope) must fit the gateway's frame cap.
    const maxFrame = this.limits?.maxFrameBytes || 0;
    this._streamChunk = maxFrame > 2048
      ? Math.min(this.opts.streamChunk, Math.floor((maxFrame - 1024) * 3 / 4)) : this.opts.streamChunk;
    if (w.resumeToken) this.resumeToken = w.resumeToken;
    this.state = 'open';
    this._attempt = 0;
    this.connectedAt = Date.now();
    this.#startHeartbeat(w.heartbeatMs || 0);
    if (this._premade.length) {
      this.#later(() => this.#dropPremade(), this.opts.premadeTtlMs);
    }
    const out = this._outbox.splice(0);
    for (const m of out) this.#rawSend(m);
    if (!resumed) this.#restoreRegistrations();
    this._emit('welcome', { ...w, resumed });
    this._readyRes(w);
  }

  #onHelloError(err) {
    if (this.state === 'closed') return;
    if (!this._helloWithoutAcks && /acksPersistent/.test(err.message || '') && /unknown field/.test(err.message || '')) {
      this._helloWithoutAcks = true;
      this.#closeSocket();
      this.#later(() => this.#open(), 0);
      return;
    }
    if (err.code === 'RESUME_FAILED') {
      // The server forgot us: join as a new session; the mesh is rebuilt from scratch.
      this.resumeToken = null;
      this.#dropMesh('resume failed');
      this.#closeSocket();
      this.#later(() => this.#open(), 0);
      return;
    }
    // After a drop the old session may still hold the id for a moment: retry then.
    const transient = err.code === 'ID_TAKEN' && this.welcome;
    if (FATAL_HELLO_CODES.has(err.code) && !transient) {
      this.#fail(err);
      return;
    }
    // UNAVAILABLE, NAMESPACE_FULL, RATE_LIMITED, a lost reply: retry later.
    this._report(err);
    this.#closeSocket();
    this.#scheduleReconnect(err);
  }

  #onClose(code, reason) {
    this._ws = null;
    this.#stopHeartbeat();
    if (this.state === 'closed') return;
    const err = new MeshsigError('DISCONNECTED', `connection closed (${code || 'no code'}${reason ? `: ${reason}` : ''})`);
    this._requests.rejectAll(err);
    this.#scheduleReconnect(err);
  }

  #scheduleReconnect(cause) {
    if (this.state === 'closed') return;
    const r = this.opts.reconnect;
    if (r === false || this._attempt >= r.maxAttempts) {
      this.#fail(new MeshsigError('DISCONNECTED', `gave up reconnecting: ${cause?.message || cause}`));
      return;
    }
    const delayMs = backoffDelay(this._attempt++, r);
    this.state = 'reconnecting';
    this._emit('reconnecting', { attempt: this._attempt, delayMs, reason: cause?.message || '' });
    this.#later(() => this.#open(), delayMs);
  }

  #fail(err) {
    this._report(err);
    this._readyRej(err);
    this.#shutdown(err);
  }

  #closeSocket() {
    const ws = this._ws;
    this._ws = null;
    this.#stopHeartbeat();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      if (typeof ws.terminate === 'function' && ws.readyState !== 1) ws.terminate();
      else ws.close(1000);
    } catch { /* already closing */ }
  }

  #startHeartbeat(intervalMs) {
    this.#stopHeartbeat();
    if (!(intervalMs > 0)) return;
    this._hbTimer = setInterval(() => {
      if (monoNow() - this._lastRx > intervalMs * 3) {
        // Silent for three intervals: the socket is dead even if TCP has not noticed.
        const ws = this._ws;
        this.#closeSocket();
        if (ws) this.#onClose(4000, 'heartbeat timeout');
        return;
      }
      this.#rawSend({ id: this._requests.nextId(), ping: {} });
    }, intervalMs);
    this._hbTimer.unref?.();
  }

  #stopHeartbeat() {
    if (this._hbTimer) clearInterval(this._hbTimer);
    this._hbTimer = null;
  }

  #later(fn, ms) {
    const t = setTimeout(() => { this._timers.delete(t); fn(); }, ms);
    this._timers.add(t);
    return t;
  }

  /** Sends a message (an object, or one already serialised) when the socket is open. */
  #rawSend(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
    return true;
  }

  /**
   * Sends now when joined, else queues until the next welcome (bounded).
   * A message over the gateway's frame cap (welcome.limits) throws TOO_LARGE
   * here: the gateway would close the whole connection for it.
   */
  _send(obj) {
    if (this.state === 'closed') throw new MeshsigError('CLOSED', 'the client is closed');
    const text = JSON.stringify(obj);
    const max = this.limits?.maxFrameBytes || 0;
    if (frameTooBig(text, max)) {
      throw new MeshsigError('TOO_LARGE', `message over the gateway's ${max}-byte frame limit`);
    }
    if (this.state === 'open' && this.#rawSend(text)) return;
    if (this._outbox.length >= this.opts.outboxLimit) {
      throw new MeshsigError('RATE_LIMITED', 'too many messages queued while disconnected');
    }
    this._outbox.push(text);
  }

  #request(body, { accept = [], map, timeoutMs, timeoutCode, id, outcome } = {}) {
    if (this.state === 'closed') return Promise.reject(new MeshsigError('CLOSED', 'the client is closed'));
    id = id || this._requests.nextId();
    const p = this._requests.add(id, { accept, map, timeoutMs: timeoutMs ?? this.opts.requestTimeoutMs,
      timeoutCode, outcome });
    try {
      this._send({ id, ...body });
    } catch (err) {
      this._requests.reject(id, err);
    }
    return p;
  }

  _report(err) {
    err = toError(err);
    if (!this._emit('error', err) && typeof console !== 'undefined') {
      console.warn(`meshsig: ${err.code}: ${err.message}`);
    }
  }

  // ---- dispatch ------------------------------------------------------------

  #dispatch(msg) {
    const kind = messageKind(msg);
    if (!kind) return;
    const body = msg[kind] || {};
    if (msg.id && this._requests.settle(msg.id, kind, body)) return;
    switch (kind) {
      case 'topology':
        if (body.connect) this.#onConnect(body.connect);
        else if (body.disconnect) this.#onDisconnect(body.disconnect.peer, 'topology disconnect');
        else if (body.retry) this.#onRetry(body.retry.peer);
        else if (body.source) {
          this.source = body.source.present ? (body.source.peer || null) : null;
          this._emit('source', { present: !!body.source.present, peer: body.source.peer || null });
        }
        this._emit('topology', body);
        return;
      case 'signal':
        this.#onSignal(body.from, body.payload);
        return;
      case 'peerLeft':
        this.#onDisconnect(body.peer, body.reason || 'peer left');
        this._early.delete(body.peer);
        this._emit('peer-left', { peer: body.peer, reason: body.reason || '' });
        this.#dropScope(body.peer);
        return;
      case 'emit':
        this.#onEmit(body);
        return;
      case 'ack': {
        const settled = this._requests.settleOutcome(body.ackId, body.error ? 'error' : 'ack',
          body.error || body);
        if (!settled) this._emit('stray', msg);
        return;
      }
      case 'service':
        if (body.call) this.#onServiceCall(body.call);
        else if (body.reply) {
          const r = body.reply;
          if (!this._requests.settleOutcome(r.callId, r.error ? 'error' : 'service', r.error || r)) {
            this._emit('stray', msg);
          }
        }
        return;
      case 'room':
        if (body.emit) this._emit('room-emit', { room: body.emit.room, event: body.emit.event || '',
          data: body.emit.data, from: body.emit.from });
        else if (body.peerJoined) this._emit('room-peer-joined', body.peerJoined);
        else if (body.peerLeft) this._emit('room-peer-left', body.peerLeft);
        else if (body.members) this._emit('room-members', body.members);
        return;
      case 'topic':
        if (body.publish) this.#onTopic(body.publish);
        return;
      case 'stream':
        this.#onStream(body);
        return;
      case 'error': {
        const err = new MeshsigError(body.code || 'CODE_UNSPECIFIED', body.message || '',
          msg.id ? { id: msg.id } : {});
        if (FATAL_SESSION_CODES.has(err.code)) { this.#fail(err); return; }
        // A late signal to a peer this client was already told to drop is
        // expected under churn (the server says so rather than drop it): not an error.
        if (typeof msg.id === 'string' && msg.id.startsWith('s:') &&
            (err.code === 'NOT_NEIGHBOUR' || err.code === 'PEER_NOT_FOUND') &&
            !this._neighbours.has(msg.id.slice(2))) {
          return;
        }
        this._report(err);
        return;
      }
      case 'waiting':
        this._emit('waiting', { position: body.position || 0 });
        return;
      case 'iceServers':
        // Fresh TURN credentials before the ones in hand expire.
        this.#setServerIce(body.servers || []);
        return;
      case 'p2pTarget':
        this.#onP2pTargetRequest(body.peer);
        return;
      case 'reconnect':
        // The gateway is going away: come back at once with the resume token.
        this.#closeSocket();
        this._requests.rejectAll(new MeshsigError('DISCONNECTED', 'the gateway asked to reconnect'));
        this.state = 'reconnecting';
        this._emit('reconnecting', { attempt: 0, delayMs: 0, reason: body.reason || 'gateway asked' });
        this.#later(() => this.#open(), 0);
        return;
      case 'pong':
      case 'ok':
      case 'welcome':
        return;
      default:
        this._emit('stray', msg);
    }
  }

  // ---- mesh ----------------------------------------------------------------

  async #peerConnectionClass() {
    if (this._PC) return this._PC;
    if (this.opts.webrtc === false) return null;
    if (globalThis.RTCPeerConnection) return (this._PC = globalThis.RTCPeerConnection);
    if (!this._wrtcTried) {
      this._wrtcTried = true;
      const wrtc = await importOptional('@roamhq/wrtc');
      const mod = wrtc?.default || wrtc;
      if (mod?.RTCPeerConnection) this._PC = mod.RTCPeerConnection;
      else {
        this._report(new MeshsigError('WEBRTC_UNAVAILABLE',
          'no RTCPeerConnection: in Node install @roamhq/wrtc or pass {RTCPeerConnection}'));
      }
    }
    return this._PC;
  }

  #rtcConfig() {
    if (this.opts.rtcConfig) return this.opts.rtcConfig;
    const cfg = { iceServers: this.opts.iceServers || this._serverIce || [] };
    if (this.opts.iceTransportPolicy) cfg.iceTransportPolicy = this.opts.iceTransportPolicy;
    return cfg;
  }

  /** The gateway's ICE servers: used unless the app gave its own; live connections
   *  get them for their next ICE restart. */
  #setServerIce(servers) {
    this._serverIce = servers.map((s) => {
      const o = { urls: s.urls || [] };
      if (s.username) o.username = s.username;
      if (s.credential) o.credential = s.credential;
      return o;
    });
    this._emit('iceServers', { servers: this._serverIce });
    if (this.opts.rtcConfig || this.opts.iceServers) return;
    const cfg = this.#rtcConfig();
    // Pre-made connections too: one adopted later restarts ICE with these servers.
    const pcs = [...[...this._neighbours.values()].map((n) => n.pc), ...this._premade.map((p) => p.pc)];
    for (const pc of pcs) {
      try { pc?.setConfiguration?.(cfg); } catch { /* a closed connection */ }
    }
  }

  #onConnect(c) {
    const peer = c.peer;
    if (!peer) return;
    if (this._neighbours.has(peer)) this.#onDisconnect(peer, 'reconnected edge');
    const n = new Neighbour(this, peer, c);
    this._neighbours.set(peer, n);
    if (this.opts.webrtc === false) return;
    const setup = (PC) => {
      if (n.closed) return;
      if (!PC) { n.closed = true; return; }
      let premade = null;
      if (c.offer && c.initiator) {
        // Our own pre-made offer, handed back: the peer answers that connection.
        const i = this._premade.findIndex((p) => p.offerId === c.offer.offerId ||
          (!c.offer.offerId && p.payload.sdp === c.offer.sdp));
        if (i >= 0) premade = this._premade.splice(i, 1)[0];
      }
      n.start(PC, this.#rtcConfig(), premade);
      this.#armEdgeTimer(n);
      this._bridge?.onConnect(n, !!c.offer);
      if (c.offer && !c.initiator) n.onSignal(c.offer);
      for (const p of this._early.get(peer) || []) n.onSignal(p);
      this._early.delete(peer);
      this._neighbourState(n);
    };
    // Synchronous when the class is known, so signals that follow go to a started connection.
    if (this._PC) setup(this._PC);
    else this.#peerConnectionClass().then(setup);
  }

  #onDisconnect(peer, reason) {
    const n = this._neighbours.get(peer);
    if (!n) return;
    this._neighbours.delete(peer);
    clearTimeout(n.edgeTimer);
    n.close(reason);
    this._emit('neighbour-state', { ...n.info(), connectionState: 'closed', channelState: 'closed',
      removed: true });
  }

  #onSignal(from, payload) {
    this._bridge?.onServerSignal(from);
    this._onSignalFrom(from, payload);
  }

  /** A signal from `from`, through the server or a neighbour that vouches for the sender. */
  _onSignalFrom(from, payload) {
    if (this.opts.webrtc === false) {
      // Bring your own WebRTC: every signal is the app's (simple-peer, fast-rtc-peer, ...).
      this._emit('signal', { from, payload });
      return;
    }
    const n = this._neighbours.get(from);
    if (n && n.pc) { n.onSignal(payload); return; }
    // Before the connect event (or before the connection class loaded): keep a few.
    const q = this._early.get(from) || [];
    if (q.length < 64) q.push(payload);
    this._early.set(from, q);
  }

  _signal(peer, payload) {
    const n = this._neighbours.get(peer);
    if (this._bridge && n) this._bridge.send(n, payload);
    else this._serverSignal(peer, payload);
  }

  _serverSignal(peer, payload) {
    if (this._bridge) this._bridge.stats.viaServer++;
    try {
      // The id names the target, so that an error for a signal that crossed a
      // disconnect (trickled ICE after the edge was removed) can be told apart.
      this._send({ id: `s:${peer}`, signal: { to: peer, payload } });
    } catch (err) {
      this._report(err);
    }
  }

  _neighbourState(n) {
    if (this._neighbours.get(n.peer) !== n) return;
    const st = n.pc?.connectionState;
    // Up means usable: the connection and its channel (a connected connection whose channel
    // never opens is not an edge the app can use; the edge timer deals with it).
    if (st === 'connected' && n.usable) this.#reportEdge(n, 'UP');
    else if (st === 'failed') this.#reportEdge(n, 'FAILED', 'ice-failed');
    this._emit('neighbour-state', n.info());
  }

  /** Tells the server how an edge turned out, once per attempt. */
  #reportEdge(n, state, reason) {
    if (!this.opts.edgeReports || n.edgeReported === state || this.state !== 'open') return;
    if (n.edgeReported === 'UP' && state === 'FAILED' && reason !== 'ice-failed') return;
    n.edgeReported = state;
    clearTimeout(n.edgeTimer);
    const send = (relayed) => {
      if (this._neighbours.get(n.peer) !== n) return;
      try {
        this._send({ edge: { peer: n.peer, state, ...(relayed ? { relayed: true } : {}),
          ...(reason ? { reason } : {}) } });
      } catch { /* queued or dropped with the connection */ }
    };
    if (state !== 'UP' || !n.pc?.getStats) { send(false); return; }
    // Relayed when the selected pair's local candidate came from a TURN server.
    n.pc.getStats().then((stats) => {
      let pair = null;
      stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
      if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
      const local = pair && stats.get(pair.localCandidateId);
      send(local?.candidateType === 'relay');
    }, () => send(false));
  }

  /**
   * An edge not usable within edgeTimeoutMs is reported FAILED: 'timeout' when the connection
   * is not up, 'channel-timeout' when it is but its channel is not open. In the second case
   * the side that created the channel first opens it again (reopenChannel) and the other side
   * waits, both for one more timeout.
   */
  #armEdgeTimer(n, grace = 1) {
    clearTimeout(n.edgeTimer);
    if (!this.opts.edgeReports || !(this.opts.edgeTimeoutMs > 0)) return;
    n.edgeTimer = setTimeout(() => {
      if (this._neighbours.get(n.peer) !== n || n.closed) return;
      if (n.pc?.connectionState !== 'connected') {
        this.#reportEdge(n, 'FAILED', 'timeout');
      } else if (!n.usable) {
        if (grace > 0 && (n.reopenChannel() || !n.dcMine)) {
          this._emit('neighbour-state', n.info());
          this.#armEdgeTimer(n, grace - 1);
        } else {
          this.#reportEdge(n, 'FAILED', 'channel-timeout');
        }
      }
    }, this.opts.edgeTimeoutMs);
    n.edgeTimer?.unref?.();
  }

  /** The server asks both ends of a failed edge to try again with an ICE restart. */
  #onRetry(peer) {
    const n = this._neighbours.get(peer);
    if (!n?.pc) return;
    n.edgeReported = null;
    this.#armEdgeTimer(n);
    try { n.pc.restartIce?.(); } catch { /* closed */ }
  }

  /** Tree: asks the server for another parent (resolves once moved). */
  reparent() {
    return this.#request({ reparent: {} }, { accept: ['ok'] }).then(() => undefined);
  }

  #dropMesh(reason) {
    for (const peer of [...this._neighbours.keys()]) this.#onDisconnect(peer, reason);
    this._early.clear();
    this._bridge?.early.clear();
    this.#dropPremade();
  }

  #dropPremade() {
    for (const p of this._premade.splice(0)) {
      try { p.pc.close(); } catch { /* already closed */ }
    }
  }

  // ---- incoming messaging ---------------------------------------------------

  // Acks the persistent emits handed to the app since the last tick, in one
  // message. One that cannot be sent now (not open) is not queued: the server
  // delivers it again on the next session, where it is acked as a duplicate.
  #flushReceived() {
    this._receivedTimer = null;
    const msgIds = this._received.splice(0);
    if (!msgIds.length || this.state !== 'open') return;
    try {
      this._send({ received: { msgIds } });
    } catch (err) {
      this._report(err);
    }
  }

  #ackPersistent(msgId) {
    if (this._helloWithoutAcks) return; // the gateway receipts on its write and knows no `received`
    this._received.push(msgId);
    if (!this._receivedTimer) this._receivedTimer = setTimeout(() => this.#flushReceived(), 0);
  }

  #onEmit(e) {
    if (e.msgId) {
      // Acked after the handlers below ran (or, for a copy delivered again,
      // once more): the server deletes the stored emit on this ack only.
      this.#ackPersistent(e.msgId);
      if (this._seenMsgIds.has(e.msgId)) return;
      this._seenMsgIds.add(e.msgId);
      if (this._seenMsgIds.size > 1000) this._seenMsgIds.delete(this._seenMsgIds.values().next().value);
    }
    let answered = false;
    const answer = (ack) => {
      if (answered || !e.ackId) return;
      answered = true;
      this._send({ id: this._requests.nextId(), ack: { ackId: e.ackId, to: e.from, ...ack } });
    };
    const detail = {
      from: e.from, event: e.event || '', data: e.data, ackId: e.ackId || '', msgId: e.msgId || '',
      ack: (data) => answer(data === undefined ? {} : { data }),
      nack: (code = 'INTERNAL', message = '') => answer({ error: { code, message } }),
    };
    const h = this._emitHandlers.get(detail.event) || this._emitHandlers.get('*');
    if (h) {
      Promise.resolve().then(() => h(detail.data, detail))
        .then((r) => detail.ack(r), (err) => detail.nack(codeOf(err), err?.message || String(err)));
    }
    this._emit('emit', detail);
    for (const fn of [...this._anyListeners]) {
      try { fn(detail.event, detail.data, detail); } catch (err) { setTimeout(() => { throw err; }, 0); }
    }
    this._scopes.get(detail.from)?._emit(detail.event, detail.data, detail);
  }

  #onServiceCall(call) {
    const h = this._services.get(call.service);
    const reply = (r) => {
      try {
        this._send({ id: this._requests.nextId(), service: { reply: { callId: call.callId, ...r } } });
      } catch (err) {
        this._report(err);
      }
    };
    if (!h) {
      reply({ error: { code: 'SERVICE_UNAVAILABLE', message: `${call.service} is not provided here` } });
      return;
    }
    Promise.resolve().then(() => h(call.args, { from: call.from, service: call.service, callId: call.callId }))
      .then((result) => reply(result === undefined ? {} : { result }),
        (err) => reply({ error: { code: codeOf(err), message: err?.message || String(err) } }));
  }

  #onTopic(p) {
    const detail = { topic: p.topic, data: p.data, from: p.from };
    for (const [pattern, handlers] of this._topics) {
      if (!topicMatches(pattern, p.topic)) continue;
      for (const h of handlers) {
        try { h(p.data, detail); } catch (err) { setTimeout(() => { throw err; }, 0); }
      }
    }
    this._emit('topic', detail);
  }

  #onStream(m) {
    const id = m.streamId;
    if (m.open) {
      const s = new Stream(this, { id, peer: m.open.from, label: m.open.label, metadata: m.open.metadata,
        opener: false, window: this.opts.streamWindow, autoCredit: this.opts.streamAutoCredit !== false });
      this._streams.set(id, s);
      this._emit('stream', s);
      if (s.window > 0 && !s.closed) s.grant(s.window);
      return;
    }
    const s = this._streams.get(id);
    if (!s) return;
    if (m.data) s._onData(m.data.data);
    else if (m.credit) s._onCredit(m.credit.bytes || 0);
    else if (m.close) {
      const e = m.close.error;
      if (this._requests.settleOutcome(id, 'error', e || { code: 'CODE_UNSPECIFIED',
        message: 'closed before it opened' })) return;
      s._closed(e ? new MeshsigError(e.code || 'CODE_UNSPECIFIED', e.message || '') :
        (m.close.abort ? new MeshsigError('CODE_UNSPECIFIED', 'aborted by the other side') : null));
    }
  }

  #restoreRegistrations() {
    const again = (what, p) => p.catch((err) => this._report(
      new MeshsigError(err.code, `re-${what} after a new session failed: ${err.message}`)));
    for (const name of this._services.keys()) {
      again(`register ${name}`, this.#request({ service: { register: { service: name } } }, { accept: ['ok'] }));
    }
    for (const pattern of this._topics.keys()) {
      again(`subscribe ${pattern}`, this.#request({ topic: { subscribe: { pattern } } }, { accept: ['ok'] }));
    }
    for (const room of this._rooms) {
      again(`join ${room}`, this.#request({ room: { join: { room } } }, { accept: ['room'] }));
    }
  }

  // ---- public API: mesh ----------------------------------------------------

  /** Bridge counters (option bridge): signals sent via the server and via neighbours, relayed, fallbacks. */
  get bridgeStats() {
    return this._bridge ? { ...this._bridge.stats } : null;
  }

  /** The current neighbours with their connection and channel state. */
  get neighbours() {
    return [...this._neighbours.values()].map((n) => n.info());
  }

  /** The RTCPeerConnection to a neighbour (undefined when there is none). */
  peerConnection(peer) {
    return this._neighbours.get(peer)?.pc || undefined;
  }

  // ---- public API: media ---------------------------------------------------

  /**
   * Sends the tracks of a MediaStream to every current neighbour and to every
   * later one (renegotiated with perfect negotiation). Each neighbour gets a
   * 'track' event per track and a 'remote-stream' event per stream.
   * filter(neighbourInfo) limits it to some neighbours, e.g. relaying a
   * parent's stream down a tree: `{filter: (n) => n.role === 'CHILD'}`.
   */
  addStream(stream, { filter = null } = {}) {
    if (!stream || typeof stream.getTracks !== 'function') {
      throw new MeshsigError('BAD_REQUEST', 'addStream: a MediaStream is required');
    }
    this._localStreams.set(stream.id, [stream, filter]);
    this.#syncMedia();
  }

  /** Stops sending a stream's tracks to every neighbour (the tracks themselves keep running). */
  removeStream(stream) {
    if (!stream || !this._localStreams.delete(stream.id)) return;
    this.#syncMedia();
  }

  /** The streams added with addStream. */
  get localStreams() {
    return [...this._localStreams.values()].map(([stream]) => stream);
  }

  /** The streams a neighbour sends (its 'remote-stream' events). */
  remoteStreams(peer) {
    return [...(this._neighbours.get(peer)?.remoteStreams.values() || [])];
  }

  /**
   * Mutes ('audio', 'video' or 'all') the local tracks of that kind: a muted
   * track sends silence or black frames, without renegotiation. Returns how
   * many tracks changed.
   */
  muteTrack(kind, muted = true) {
    let k = 0;
    for (const [stream] of this._localStreams.values()) {
      for (const track of stream.getTracks()) {
        if (kind !== 'all' && track.kind !== kind) continue;
        if (track.enabled === !muted) continue;
        track.enabled = !muted;
        k++;
      }
    }
    return k;
  }

  #syncMedia() {
    for (const n of this._neighbours.values()) n.syncLocalMedia();
  }

  /** Sends over the data channel to a neighbour; throws CHANNEL_NOT_OPEN / NOT_NEIGHBOUR. */
  send(peer, data) {
    const n = this._neighbours.get(peer);
    if (!n) throw new MeshsigError('NOT_NEIGHBOUR', `${peer} is not a neighbour`, { peer });
    n.send(data);
  }

  /**
   * Sends data to every neighbour whose channel is open; returns how many.
   * In a tree namespace it goes to the whole tree instead: over the tree
   * channels to this peer's parent and children, and every peer that gets it
   * passes it on to its other tree neighbours (a 'broadcast' event at each).
   * A tree has one path between two peers and each channel is ordered, so
   * every peer gets each message once and in the order this peer sent them.
   */
  broadcast(data) {
    if (this.topology === 'tree') return this.#treeForward(null, data);
    let k = 0;
    for (const n of this._neighbours.values()) {
      if (n.channelState === 'open') { n.send(data); k++; }
    }
    return k;
  }

  #treeForward(from, data) {
    let k = 0;
    for (const n of this._neighbours.values()) {
      if (n === from || !n.tc || n.tc.readyState !== 'open') continue;
      try { n.tc.send(data); k++; } catch (err) { this._report(err); }
    }
    return k;
  }

  _onTreeMessage(n, data) {
    if (this._neighbours.get(n.peer) !== n) return;
    this.#treeForward(n, data);
    this._emit('broadcast', { peer: n.peer, role: n.role, data });
  }

  /**
   * Sends a signal payload (any JSON) to a peer through the server, for apps
   * doing their own WebRTC with `webrtc: false`. Queued while reconnecting.
   * Returns the request id: a refusal (NOT_NEIGHBOUR, PEER_NOT_FOUND,
   * RATE_LIMITED) arrives as an 'error' event carrying that id.
   */
  signal(peer, payload) {
    const id = this._requests.nextId();
    this._send({ id, signal: { to: peer, payload } });
    return id;
  }

  setPosition(position) {
    this.opts.position = position;
    this._send({ id: this._requests.nextId(), position });
  }

  reportRtt(peer, ms) {
    this._send({ id: this._requests.nextId(), rtt: { peer, ms } });
  }

  /** Round trip to the gateway in ms. */
  async ping() {
    const t = Date.now();
    await this.#request({ ping: {} }, { accept: ['pong'] });
    return Date.now() - t;
  }

  // ---- public API: messaging -------------------------------------------------

  /**
   * Sends an event to a peer through the server. With ack (the default) the
   * promise resolves with the receiver's ack data and rejects with its error
   * (or ACK_TIMEOUT, PEER_NOT_FOUND, PEER_LEFT); a persistent emit the server
   * stored for an absent peer resolves (with undefined) once stored. Without
   * ack, it resolves with the server's `ok` result ({delivered: true} or
   * {stored: true}) and rejects with PEER_NOT_FOUND when the peer is not there.
   */
  emit(to, event, data, opts) {
    return this.#emitTo(to, event, data, opts || {});
  }

  #emitTo(to, event, data, { timeoutMs = 0, persistent = false, ack = true } = {}) {
    const body = { to, event };
    if (data !== undefined) body.data = data;
    if (timeoutMs) body.timeoutMs = timeoutMs;
    if (persistent) body.persistent = true;
    if (!ack) return this.#request({ emit: body }, { accept: ['ok'], map: (ok) => ok });
    const id = this._requests.nextId();
    body.ackId = id;
    // The reply says what follows: a stored persistent emit is acknowledged by nobody, anything
    // else ends with its ack (data, the receiver's error, ACK_TIMEOUT, PEER_LEFT, PEER_NOT_FOUND).
    // The server times the ack out first; the local deadline is a backstop.
    return this.#request({ emit: body }, { id, accept: ['ok'], map: (a) => a.data,
      outcome: (ok) => !ok.stored, timeoutMs: (timeoutMs || 10000) + 5000,
      timeoutCode: 'ACK_TIMEOUT' });
  }

  /**
   * Listeners for emits from one peer (socket.io-p2p-plugin's `from(id)`):
   * `client.from('bob').on('chat', (data, e) => {})`, `.once`, `.off`, and
   * `.emit(event, data, opts)` to that peer. The listeners go when the peer
   * leaves (its 'peer-left'), or when an emit to it through the scope finds it
   * gone (PEER_NOT_FOUND, PEER_LEFT). Listeners observe: acks come from
   * onEmit handlers or from `e.ack()`.
   */
  from(peer) {
    let scope = this._scopes.get(peer);
    if (!scope) {
      scope = new PeerScope(this, peer);
      this._scopes.set(peer, scope);
    }
    return scope;
  }

  #dropScope(peer) {
    const scope = this._scopes.get(peer);
    if (!scope) return;
    this._scopes.delete(peer);
    scope._clear();
  }

  _scopeEmitFailed(peer, err) {
    if (err?.code === 'PEER_NOT_FOUND' || err?.code === 'PEER_LEFT') this.#dropScope(peer);
  }

  /**
   * Asks the server for an edge to `peer` outside the topology (socket.io-p2p-plugin's
   * addP2pTarget). The namespace policy must allow it (p2pTargets) and the peer must
   * accept (onAddP2pTarget). Resolves once accepted, after the topology connect
   * that makes the connection; rejects FORBIDDEN (refused or not allowed), PEER_NOT_FOUND.
   * Resolves at once when the two are neighbours already.
   */
  addP2pTarget(peer, { timeoutMs } = {}) {
    return this.#request({ p2pTarget: { peer } }, { accept: ['ok'], map: () => undefined,
      timeoutMs: timeoutMs ?? this.opts.requestTimeoutMs });
  }

  /**
   * Decides on other peers' addP2pTarget requests: fn({from}) returns (or
   * resolves to) true to accept, false or a string (the reason) to refuse.
   * Without a handler every request is refused.
   */
  onAddP2pTarget(fn) {
    this._p2pTargetHandler = fn;
    return () => { if (this._p2pTargetHandler === fn) this._p2pTargetHandler = null; };
  }

  #onP2pTargetRequest(from) {
    if (!from) return;
    const h = this._p2pTargetHandler;
    const reply = (accept, reason) => {
      const body = { peer: from, answer: true, accept: !!accept };
      if (!accept && reason) body.reason = String(reason);
      this.#request({ p2pTarget: body }, { accept: ['ok'] }).catch((err) => this._report(err));
    };
    if (!h) { reply(false, 'not accepting p2p targets'); return; }
    Promise.resolve().then(() => h({ from }))
      .then((r) => reply(r === true, typeof r === 'string' ? r : ''),
        (err) => reply(false, err?.message || String(err)));
  }

  /** A listener for every incoming emit: fn(event, data, e). Several may be added. */
  onAny(fn) {
    this._anyListeners.add(fn);
    return () => this.offAny(fn);
  }

  /** Removes one onAny listener, or all of them without an argument. */
  offAny(fn) {
    if (fn === undefined) this._anyListeners.clear();
    else this._anyListeners.delete(fn);
  }

  /** An onAny listener for the next incoming emit only. */
  onceAny(fn) {
    const w = (...args) => { this._anyListeners.delete(w); fn(...args); };
    this._anyListeners.add(w);
    return () => this._anyListeners.delete(w);
  }

  /** Handles incoming emits of one event ('*' = any): the return value is the ack. */
  onEmit(event, handler) {
    this._emitHandlers.set(event, handler);
    return () => { if (this._emitHandlers.get(event) === handler) this._emitHandlers.delete(event); };
  }

  /** Provides a service: handler(args, {from}) returns (or resolves to) the result. */
  async register(name, handler) {
    if (typeof handler !== 'function') throw new MeshsigError('BAD_REQUEST', 'register: handler must be a function');
    this._services.set(name, handler);
    try {
      await this.#request({ service: { register: { service: name } } }, { accept: ['ok'] });
    } catch (err) {
      if (this._services.get(name) === handler) this._services.delete(name);
      throw err;
    }
    return () => this.unregister(name);
  }

  async unregister(name) {
    this._services.delete(name);
    await this.#request({ service: { unregister: { service: name } } }, { accept: ['ok'] });
  }

  /** Calls a service some peer provides; resolves with its result. */
  call(name, args, { timeoutMs = 0 } = {}) {
    const id = this._requests.nextId();
    const call = { service: name, callId: id };
    if (args !== undefined) call.args = args;
    if (timeoutMs) call.timeoutMs = timeoutMs;
    // The reply accepts the call; its outcome is the service reply keyed by callId, whatever
    // the cause (the provider's result or error, TIMEOUT, SERVICE_UNAVAILABLE).
    return this.#request({ service: { call } }, { id, accept: ['ok'], map: (r) => r.result,
      outcome: () => true, timeoutMs: (timeoutMs || 10000) + 5000 });
  }

  /**
   * Subscribes to a topic pattern ('a.b', 'a.*', 'a.>'); handler(data, {topic, from}).
   * Resolves with a function that removes this handler (and the subscription when it was the last).
   */
  async subscribe(pattern, handler) {
    const first = !this._topics.has(pattern);
    if (first) this._topics.set(pattern, new Set());
    if (handler) this._topics.get(pattern).add(handler);
    if (first) {
      try {
        await this.#request({ topic: { subscribe: { pattern } } }, { accept: ['ok'] });
      } catch (err) {
        this._topics.delete(pattern);
        throw err;
      }
    }
    return () => this.unsubscribe(pattern, handler);
  }

  async unsubscribe(pattern, handler) {
    const set = this._topics.get(pattern);
    if (!set) return;
    if (handler) set.delete(handler);
    if (handler && set.size) return;
    this._topics.delete(pattern);
    await this.#request({ topic: { unsubscribe: { pattern } } }, { accept: ['ok'] });
  }

  /** Publishes to every subscriber whose pattern matches; resolves when the server took it. */
  publish(topic, data) {
    const publish = { topic };
    if (data !== undefined) publish.data = data;
    return this.#request({ topic: { publish } }, { accept: ['ok'], map: () => undefined });
  }

  /** Opens a byte stream to a peer; resolves with the Stream once the server accepted it. */
  async openStream(to, { label = '', metadata, window, autoCredit, openTimeoutMs } = {}) {
    await nodeStreamReady; // so that toDuplex() works on what this resolves with
    const id = `s${this._requests.nextId()}-${randomId(4)}`;
    const s = new Stream(this, { id, peer: to, label, metadata, opener: true,
      window: window ?? this.opts.streamWindow, autoCredit: autoCredit ?? this.opts.streamAutoCredit !== false });
    this._streams.set(id, s);
    const open = { to, label };
    if (metadata) open.metadata = metadata;
    try {
      // ok with delivered: open. Without: the stream's close (PEER_NOT_FOUND) follows, keyed
      // by the stream id, which is also the request id.
      await this.#request({ stream: { streamId: id, open } }, { id, accept: ['ok'],
        outcome: (ok) => !ok.delivered, timeoutMs: openTimeoutMs ?? this.opts.requestTimeoutMs });
    } catch (err) {
      this._streams.delete(id);
      // A late acceptance must not leave a half-open stream at the other side.
      if (err.code === 'TIMEOUT') this._send({ stream: { streamId: id, close: { abort: true } } });
      throw err;
    }
    if (s.window > 0) s.grant(s.window);
    return s;
  }

  // ---- public API: lifecycle -----------------------------------------------

  /** Leaves the namespace, closes every peer connection and stops reconnecting. */
  close() {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.#rawSend({ id: this._requests.nextId(), leave: {} });
    this.#shutdown(null);
  }

  #shutdown(err) {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this.#dropMesh('closed');
    for (const s of [...this._streams.values()]) s._closed(new MeshsigError('CLOSED', 'client closed'));
    this._requests.rejectAll(new MeshsigError('CLOSED', 'the client is closed'));
    this._outbox.length = 0;
    this.#closeSocket();
    this._readyRej(err || new MeshsigError('CLOSED', 'closed before joining'));
    this._emit('close', { error: err });
  }
}

function codeOf(err) {
  return err && ERROR_CODES.includes(err.code) ? err.code : 'INTERNAL';
}

// Node's stream module for Stream.toDuplex, loaded at once in Node and never in browsers.
let nodeStream = null;
const nodeStreamReady = typeof process !== 'undefined' && process.versions?.node
  ? import(/* @vite-ignore */ /* webpackIgnore: true */ 'node:stream').then((m) => { nodeStream = m; },
    () => {})
  : Promise.resolve();

async function importOptional(name) {
  try {
    return await import(/* @vite-ignore */ /* webpackIgnore: true */ name);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// 7. connect()

/**
 * Joins a namespace through the gateway at url (ws://host:port/ws).
 * Returns the client at once; `await client.ready` for the first welcome.
 */
export function connect(url, opts) {
  return new Client(url, opts);
}

export default connect;
