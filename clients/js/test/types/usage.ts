// SPDX-License-Identifier: Apache-2.0
// Compiled (never run) by types.test.mjs against web/meshsig.d.ts: every call
// in the README's recipes and API sections, so the types cover the API.
import connect, { Client, MeshsigError, PeerScope, Stream, Welcome } from 'meshsig';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

declare const cam: MediaStream;
declare const remote: MediaStream;

async function recipes(url: string): Promise<void> {
  const client: Client = connect(url, { namespace: 'chat', metadata: { name: 'a' }, bridge: { waitMs: 2000 },
    streams: [cam], offers: 8, reconnect: { baseMs: 100 }, iceServers: [] });
  const w: Welcome = await client.ready;
  const hb: number | undefined = w.heartbeatMs;
  const frame: number | undefined = client.limits?.maxFrameBytes;
  void hb; void frame;

  client.on('message', ({ peer, data }) => { if (typeof data === 'string') client.send(peer, data); });
  client.on('broadcast', ({ peer, role, data }) => { void peer; void role; void data; });
  const k: number = client.broadcast('hello');
  void k;
  client.on('remote-stream', ({ peer, stream }) => {
    if (client.neighbours.find((n) => n.peer === peer)?.role === 'PARENT') {
      client.addStream(stream, { filter: (n) => n.role === 'CHILD' });
    }
  });
  client.on('track', ({ track, streams }) => { void track.kind; void streams.length; });
  client.addStream(cam);
  client.removeStream(remote);
  const muted: number = client.muteTrack('audio', true);
  const rs: MediaStream[] = client.remoteStreams('bob');
  void muted; void rs;
  const route: string | null = client.neighbours[0].signalRoute;
  void route;
  void client.bridgeStats?.viaBridge;

  // bring your own WebRTC
  client.on('signal', ({ from, payload }) => { const id: string = client.signal(from, payload); void id; });
  client.on('topology', ({ connect: c, disconnect: d }) => { void c?.initiator; void d?.peer; });

  // p2p-plugin style
  const scope: PeerScope = client.from('bob');
  scope.on('status', (data, e) => { void data; e.ack('ok'); });
  scope.once('x', () => {});
  scope.off('x');
  const total = await scope.emit('sum', [1, 2, 3]);
  void total;
  const offAny = client.onAny((event, data, e) => { void event; void data; void e.from; });
  client.onceAny(() => {});
  client.offAny();
  offAny();
  client.onAddP2pTarget(({ from }) => from !== 'mallory' || 'no');
  await client.addP2pTarget('bob');
  client.onEmit('sum', (xs) => (Array.isArray(xs) ? xs.length : 0));

  // streams
  const s: Stream = await client.openStream('bob', { label: 'f', openTimeoutMs: 5000 });
  await pipeline(Readable.from([new Uint8Array(4)]), s.toDuplex());
  client.on('stream', (inc) => {
    const { readable, writable } = inc.toWeb();
    void readable.getReader(); void writable.getWriter();
  });

  try {
    await client.emit('bob', 'ping', {}, { timeoutMs: 1000 });
  } catch (err) {
    if (err instanceof MeshsigError && err.code === 'TOO_LARGE') client.close();
  }
}
void recipes;
