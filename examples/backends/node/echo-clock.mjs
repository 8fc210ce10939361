#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Example backend (README "Backends"): provides the `echo` service and publishes the time on
// the `clock` topic every second, in one namespace.
//   node node/echo-clock.mjs [--nats URL] [--namespace NS] [--id INSTANCE] [--period-ms N]
// Peers call it as any provider: client.call('echo', 'hi') resolves with 'hi', and
// client.subscribe('clock', (t) => ...) receives {iso, ms} from `from` = the instance id.
import { parseArgs } from 'node:util';
import { Backend } from './backend.mjs';

const { values: o } = parseArgs({ options: {
  nats: { type: 'string', default: process.env.MESHSIG_NATS || 'nats://127.0.0.1:4222' },
  prefix: { type: 'string', default: 'meshsig' },
  namespace: { type: 'string', default: 'demo' },
  id: { type: 'string', default: `echo-clock-${process.pid}` },
  'period-ms': { type: 'string', default: '1000' },
} });

const backend = new Backend({
  servers: o.nats.split(','),
  prefix: o.prefix,
  instance: o.id,
  namespace: o.namespace,
  services: { echo: async (args) => args },
  log: (m) => console.error(`[${o.id}] ${m}`),
});
await backend.start();
console.log(`backend ${o.id} attached to ${o.namespace}: service echo, topic clock`);

// One publish at a time: a publish is retried while the namespace has no owner
// (a failover), and a retried tick must not land after a later one. A tick due
// while the last one is still on its way is skipped: subscribers get the time
// in order, never stale times queued up.
let inFlight = false;
const tick = setInterval(() => {
  if (inFlight) return;
  inFlight = true;
  const now = Date.now();
  backend.publish('clock', { iso: new Date(now).toISOString(), ms: now })
    .catch((e) => console.error(`[${o.id}] clock: ${e.code || ''} ${e.message}`))
    .finally(() => { inFlight = false; });
}, Number(o['period-ms']));

const stop = async () => {
  clearInterval(tick);
  await backend.close();
  process.exit(0);
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
