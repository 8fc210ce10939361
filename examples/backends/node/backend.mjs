// SPDX-License-Identifier: Apache-2.0
// A small meshsig backend library for Node (README "Backends", proto/backend.proto): attach
// with heartbeats, re-attach when a shard changes owner, retries with the same req_id,
// deliveries by kind, stale epochs dropped. Uses the `nats` and `protobufjs` packages only.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'nats';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// The contract's .proto files, from the source tree (or MESHSIG_PROTO_DIR).
const PROTO_DIR = process.env.MESHSIG_PROTO_DIR || path.resolve(HERE, '../../../proto');

const root = await protobuf.load(path.join(PROTO_DIR, 'backend.proto'));
const T = (name) => root.lookupType(name);
const Info = T('meshsig.backend.v1.Info');
const Request = T('meshsig.backend.v1.Request');
const Response = T('meshsig.backend.v1.Response');
const Batch = T('meshsig.backend.v1.Batch');
const Owner = T('meshsig.backend.v1.Owner');
const ErrorCode = root.lookupEnum('meshsig.v1.ErrorCode');
const Kind = root.lookupEnum('meshsig.backend.v1.PeerEvent.Kind');
const decodeOpts = { longs: Number, enums: String, defaults: false, oneofs: true };

/** 64-bit FNV-1a of the namespace's UTF-8 bytes mod shards, as the gateways compute it. */
export function shardOf(ns, shards) {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(ns, 'utf8')) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return Number(h % BigInt(shards));
}

/** JSON value <-> meshsig.v1.Value (google.protobuf.Value's shape). */
export function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  const fields = {};
  for (const [k, x] of Object.entries(v)) fields[k] = toValue(x);
  return { structValue: { fields } };
}

export function fromValue(v) {
  if (!v) return undefined;
  switch (v.kind) {
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    case 'structValue': {
      const o = {};
      for (const [k, x] of Object.entries(v.structValue.fields || {})) o[k] = fromValue(x);
      return o;
    }
    default: return null;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One backend instance. `services`: name -> async (args, {from, service}) => result (throw an
 * Error with .code to answer an error). `topics`: pattern -> (data, {topic, from}) => void.
 * `onEvent(ev, ns)`: peer events when `events` is set. `onEmit(event, data, {from}) => ackData`.
 */
export class Backend {
  constructor({ servers = 'nats://127.0.0.1:4222', prefix = 'meshsig', instance, namespace,
    services = {}, topics = {}, events = false, onEvent = () => {}, onEmit = () => undefined,
    log = () => {} }) {
    Object.assign(this, { servers, prefix, instance, namespace, services, topics, events, onEvent,
      onEmit, log });
    this.seq = 0;
    this.epochs = new Map(); // shard -> highest epoch seen
    this.closed = false;
  }

  async start() {
    this.nc = await connect({ servers: this.servers, name: `backend-${this.instance}`,
      maxReconnectAttempts: -1 });
    const info = Info.decode(await this.requestRaw(`${this.prefix}.backend.v1.info`, new Uint8Array(0)));
    this.shards = info.shards;
    this.heartbeatMs = info.heartbeatMs;
    this.shard = shardOf(this.namespace, this.shards);
    this.subject = `${this.prefix}.backend.v1.shard.${this.shard}`;
    this.consume(this.nc.subscribe(`${this.prefix}.backend.v1.to.${this.instance}`), (m) => this.onBatch(m));
    this.consume(this.nc.subscribe(`${this.prefix}.backend.v1.owner`), (m) => {
      const o = Owner.decode(m.data);
      if (o.shard === this.shard) this.attach().catch((e) => this.log(`re-attach: ${e.message}`));
    });
    await this.nc.flush();
    await this.attach();
    this.beat = setInterval(() => this.attach().catch((e) => this.log(`heartbeat: ${e.message}`)),
      this.heartbeatMs);
    return this;
  }

  consume(sub, fn) {
    (async () => {
      for await (const m of sub) {
        try { await fn(m); } catch (e) { this.log(`delivery: ${e.stack || e.message}`); }
      }
    })();
  }

  /** A NATS request retried while nobody answers (no owner yet): bounded, 30 s at most. */
  async requestRaw(subject, bytes) {
    const end = Date.now() + 30000;
    for (;;) {
      try {
        return (await this.nc.request(subject, bytes, { timeout: 1000 })).data;
      } catch (e) {
        if (this.closed || Date.now() > end) throw e;
        await sleep(100);
      }
    }
  }

  /** Sends op ({attach}, {detach} or {client}) and resolves with the ok reply, or throws. */
  async send(op) {
    const reqId = `${this.instance}-${++this.seq}`;
    const bytes = Request.encode(Request.create({ instance: this.instance, reqId,
      namespace: this.namespace, version: 1, ...op })).finish();
    // The same bytes (same req_id) again while the owner is moving: applied once.
    for (let i = 0; ; i++) {
      const r = Response.toObject(Response.decode(await this.requestRaw(this.subject, bytes)), decodeOpts);
      const err = r.reply && r.reply.error;
      if (err && err.code === 'UNAVAILABLE' && i < 100 && !this.closed) { await sleep(100); continue; }
      if (err) {
        const e = new Error(err.message || err.code);
        e.code = err.code;
        throw e;
      }
      return r;
    }
  }

  attach() {
    return this.send({ attach: { services: Object.keys(this.services),
      subscriptions: Object.keys(this.topics), events: this.events } });
  }

  publish(topic, data) {
    return this.send({ client: { topic: { publish: { topic, data: toValue(data) } } } });
  }

  emit(to, event, data) {
    return this.send({ client: { emit: { to, event, data: toValue(data) } } });
  }

  async onBatch(m) {
    const b = Batch.toObject(Batch.decode(m.data), decodeOpts);
    if (b.version !== 1) return;
    const seen = this.epochs.get(b.shard) || 0;
    if (b.epoch < seen) return; // from an owner that has lost the shard
    this.epochs.set(b.shard, b.epoch);
    for (const d of b.deliveries || []) {
      if (d.event) this.onEvent(d.event, d.namespace);
      else if (d.server) await this.onServer(d.server);
    }
  }

  async onServer(sm) {
    if (sm.service && sm.service.call) {
      const call = sm.service.call;
      const fn = this.services[call.service];
      let reply;
      try {
        reply = { callId: call.callId, result: toValue(await fn(fromValue(call.args), { from: call.from, service: call.service })) };
      } catch (e) {
        reply = { callId: call.callId, error: { code: ErrorCode.values[e.code] || ErrorCode.values.INTERNAL, message: String(e.message) } };
      }
      await this.send({ client: { service: { reply } } });
    } else if (sm.topic && sm.topic.publish) {
      const p = sm.topic.publish;
      for (const [pattern, fn] of Object.entries(this.topics)) {
        if (matches(pattern, p.topic)) fn(fromValue(p.data), { topic: p.topic, from: p.from });
      }
    } else if (sm.emit) {
      const e = sm.emit;
      const data = await this.onEmit(e.event, fromValue(e.data), { from: e.from });
      if (e.ackId) await this.send({ client: { ack: { ackId: e.ackId, to: e.from, data: toValue(data) } } });
    } else if (sm.error) {
      this.log(`error for request ${sm.id}: ${sm.error.code} ${sm.error.message}`);
    }
  }

  async close() {
    this.closed = true;
    clearInterval(this.beat);
    try { await this.send({ detach: {} }); } catch { /* the owner withdraws it anyway */ }
    await this.nc.drain();
  }
}

/** NATS-style topic patterns: '*' one token, '>' the rest. */
export function matches(pattern, topic) {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

export { Kind };
