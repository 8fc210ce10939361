// SPDX-License-Identifier: Apache-2.0
// Type declarations of the meshsig SDK (web/meshsig.js).

export declare const VERSION: string;
export declare const SUBPROTOCOL: 'meshsig.v1.json';
export declare const CHANNEL_LABEL: 'meshsig';
/** Tree namespaces: the pre-negotiated channel that carries broadcasts. */
export declare const TREE_CHANNEL_LABEL: 'meshsig-tree';
/** With the bridge: the pre-negotiated control channel. */
export declare const CTL_CHANNEL_LABEL: 'meshsig-ctl';

/** ErrorCode names from proto/client.proto. */
export type ErrorCode =
  | 'CODE_UNSPECIFIED' | 'BAD_REQUEST' | 'UNKNOWN_MESSAGE' | 'UNAUTHORIZED' | 'FORBIDDEN'
  | 'NOT_JOINED' | 'ALREADY_JOINED' | 'ID_TAKEN' | 'PEER_NOT_FOUND' | 'NOT_NEIGHBOUR'
  | 'NAMESPACE_FULL' | 'RATE_LIMITED' | 'TOO_LARGE' | 'ACK_TIMEOUT' | 'TIMEOUT' | 'PEER_LEFT'
  | 'SERVICE_UNAVAILABLE' | 'REPLACED' | 'STREAM_NOT_FOUND' | 'NO_CREDIT' | 'UNAVAILABLE'
  | 'RESUME_FAILED' | 'INTERNAL' | 'SOURCE_TAKEN' | 'KICKED' | 'BANNED' | 'NAMESPACE_CLOSED'
  | 'LIMIT_REACHED';

/** Codes the client itself produces. */
export type ClientErrorCode = 'DISCONNECTED' | 'CLOSED' | 'CHANNEL_NOT_OPEN' | 'WEBRTC'
  | 'WEBRTC_UNAVAILABLE';

/** The gateway's per-connection limits, stated in the welcome. */
export interface Limits {
  maxFrameBytes?: number; msgsPerSec?: number; bytesPerSec?: number; maxQueueBytes?: number;
  maxRooms?: number; maxServices?: number; maxSubscriptions?: number; maxStreams?: number;
}

export declare const ERROR_CODES: readonly ErrorCode[];

export declare class MeshsigError extends Error {
  constructor(code: string, message?: string, extra?: object);
  code: ErrorCode | ClientErrorCode | string;
  /** The id of the request that failed, when the error answers one. */
  id?: string;
  peer?: string;
}

/** Any JSON value (google.protobuf.Value in the JSON mapping). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Position { x?: number; y?: number; lat?: number; lon?: number }
export type Role = 'PEER' | 'PARENT' | 'CHILD';

export interface ReconnectOptions {
  /** First delay (default 250 ms). */
  baseMs?: number;
  /** Largest delay (default 15000 ms). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Randomised fraction of each delay, 0..1 (default 0.5). */
  jitter?: number;
  /** Give up after this many consecutive failures (default Infinity). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  namespace: string;
  /** JWT whose `sub` is the peer id; omit in insecure dev mode. */
  token?: string;
  /** Wanted peer id (only without a token). */
  peerId?: string;
  position?: Position;
  /** Handed to neighbours in topology.connect. */
  metadata?: { [key: string]: Json };
  /** Number of pre-made offers sent in hello (full mesh: join in one round trip). */
  offers?: number;
  /** How long a pre-made offer waits for ICE candidates before hello (default 500 ms). */
  offerGatherMs?: number;
  /** Unused pre-made offers are closed this long after welcome (default 15000 ms). */
  premadeTtlMs?: number;
  /** Your own STUN/TURN servers; default: the ones the gateway hands out (welcome.iceServers). */
  iceServers?: RTCIceServer[];
  /** 'relay' forces every connection through TURN (testing, or hiding addresses); default 'all'. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Full RTCConfiguration; overrides iceServers and iceTransportPolicy. */
  rtcConfig?: RTCConfiguration;
  /** 'source': join a tree namespace as its broadcast source (token claim "source": true). */
  role?: 'member' | 'source';
  /** The namespace policy to ask for (token claim "policy": true): set by the first
   *  such hello of an empty namespace, e.g. { topology: 'tree', k: 4, k1: 10 }. */
  policy?: { [key: string]: Json };
  /** Report each connection's outcome to the server (default true), which repairs the topology. */
  edgeReports?: boolean;
  /** An edge not usable by then (connection up and data channel open) is reported FAILED
   *  (default 10000 ms); a connected edge whose channel is stuck opening is first given a
   *  second channel and one more timeout. */
  edgeTimeoutMs?: number;
  /** false: no peer connections; every signal is a 'signal' event for the app's own WebRTC. */
  webrtc?: boolean;
  /**
   * n2n bridge: signals for a new edge go through a connected neighbour both
   * ends share (server as fallback). true or {waitMs (3000): how long a new
   * edge waits for such a route, timeoutMs (5000): bridged edge not connected
   * by then is re-signalled through the server}. Default off.
   */
  bridge?: boolean | { waitMs?: number; timeoutMs?: number };
  /** Media streams sent to every neighbour from the start (same as addStream before joining). */
  streams?: MediaStream[];
  /** Injected implementations (Node: `ws`, `@roamhq/wrtc` are used when these are absent). */
  WebSocket?: unknown;
  RTCPeerConnection?: unknown;
  /** false: never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Local deadline of requests that the server answers (default 15000 ms). */
  requestTimeoutMs?: number;
  /** Bytes granted to the other side when a stream opens (default 256 KiB). */
  streamWindow?: number;
  /** Largest stream data frame (default 16 KiB). */
  streamChunk?: number;
  /** Re-grant credit for delivered bytes automatically (default true). */
  streamAutoCredit?: boolean;
  /** Messages kept while disconnected (default 2000). */
  outboxLimit?: number;
}

export interface Welcome {
  peerId: string;
  gatewayId?: string;
  resumeToken?: string;
  limits?: Limits;
  /** The client pings this often and drops a socket silent for three intervals (0: no pings). */
  heartbeatMs?: number;
  namespace?: string;
  topology?: string;
  /** true when the session was resumed with the token (edges and registrations kept). */
  resumed?: boolean;
  /** STUN/TURN servers with this session's short-lived TURN credentials. */
  iceServers?: RTCIceServer[];
  /** Unix seconds (as a string, proto3 JSON uint64) when those TURN credentials expire. */
  iceExpiresAt?: string;
}

export interface NeighbourInfo {
  peer: string;
  initiator: boolean;
  role: Role;
  metadata: { [key: string]: Json };
  position: Position | null;
  connectionState: RTCPeerConnectionState | 'new' | 'closed';
  channelState: RTCDataChannelState | 'none';
  /** Tree namespaces: the broadcast channel's state. */
  treeChannel: RTCDataChannelState | 'none';
  /** With the bridge: how signals to this peer go (a neighbour id, 'server', or null while undecided). */
  signalRoute: string | null;
  /** ms from the connect event to the open data channel. */
  openMs: number | null;
}

export interface IncomingEmit {
  from: string;
  event: string;
  data: Json | undefined;
  ackId: string;
  /** Persistent emits: the server's id, the same on every copy (at least once). The SDK acks
   * it after the handlers ran and drops repeats of the last 1000 ids; '' otherwise. */
  msgId: string;
  ack(data?: Json): void;
  nack(code?: ErrorCode, message?: string): void;
}

export interface TopologyConnect {
  peer: string;
  /** true: this side makes the offer. */
  initiator?: boolean;
  role?: Role;
  metadata?: { [key: string]: Json };
  /** A pre-made offer from the joining peer (full mesh): answer it. */
  offer?: Json;
  position?: Position;
}

export interface TopicMessage { topic: string; data: Json | undefined; from: string }

export interface ClientEvents {
  welcome: Welcome;
  'neighbour-up': NeighbourInfo;
  'neighbour-down': NeighbourInfo & { reason: string };
  'neighbour-state': NeighbourInfo & { removed?: boolean };
  message: { peer: string; data: string | ArrayBuffer };
  /** Tree namespaces: a broadcast, from the tree neighbour it came through (already passed on). */
  broadcast: { peer: string; role: Role; data: string | ArrayBuffer };
  'peer-left': { peer: string; reason: string };
  topology: { connect?: TopologyConnect; disconnect?: { peer: string } };
  /** Only with `webrtc: false`: every incoming signal, for the app's own WebRTC. */
  signal: { from: string; payload: Json };
  error: MeshsigError;
  emit: IncomingEmit;
  'room-emit': { room: string; event: string; data: Json | undefined; from: string };
  'room-peer-joined': { room: string; peer: string };
  'room-peer-left': { room: string; peer: string };
  'room-members': { room: string; peers?: string[] };
  topic: TopicMessage;
  /** An incoming byte stream (openStream at the other side); media arrives as 'track'/'remote-stream'. */
  stream: Stream;
  /** A media track from a neighbour (each time one is negotiated). */
  track: { peer: string; track: MediaStreamTrack; streams: MediaStream[]; transceiver?: RTCRtpTransceiver };
  /** A neighbour's media stream, once per stream id; tracks it removes later leave it ('removetrack'). */
  'remote-stream': { peer: string; stream: MediaStream };
  waiting: { position: number };
  /** Tree with a source: it arrived (present) or left; also on joining while the tree waits for one. */
  source: { present: boolean; peer: string | null };
  /** The gateway's ICE servers changed (the welcome's, or fresh TURN credentials). */
  iceServers: { servers: RTCIceServer[] };
  reconnecting: { attempt: number; delayMs: number; reason: string };
  close: { error: MeshsigError | null };
  stray: object;
}

export declare class Emitter<E extends Record<string, any> = Record<string, any>> {
  on<K extends keyof E & string>(type: K, fn: (detail: E[K]) => void): () => void;
  off<K extends keyof E & string>(type: K, fn: (detail: E[K]) => void): void;
  once<K extends keyof E & string>(type: K, fn: (detail: E[K]) => void): () => void;
  next<K extends keyof E & string>(type: K, timeoutMs?: number): Promise<E[K]>;
  addEventListener<K extends keyof E & string>(type: K,
    fn: (ev: { type: K; detail: E[K]; target: unknown }) => void): void;
  removeEventListener(type: string, fn: Function): void;
  listenerCount(type: string): number;
}

export interface StreamEvents {
  data: Uint8Array;
  credit: { bytes: number; credit: number };
  close: { error: MeshsigError | null };
}

export declare class Stream extends Emitter<StreamEvents> {
  readonly id: string;
  readonly peer: string;
  readonly label: string;
  readonly metadata: { [key: string]: Json };
  readonly opener: boolean;
  /** Bytes this side may still send. */
  readonly credit: number;
  readonly closed: boolean;
  readonly bytesIn: number;
  readonly bytesOut: number;
  autoCredit: boolean;
  write(data: string | ArrayBuffer | ArrayBufferView): Promise<void>;
  grant(bytes: number): void;
  /**
   * Node only: this stream as a stream.Duplex (pipe/pipeline; credit is granted
   * as its reader takes data, so back pressure crosses the network). Call it
   * in the 'stream' handler, before data arrives. Ending it closes the stream.
   */
  toDuplex(opts?: object): import('node:stream').Duplex;
  /** This stream as a WHATWG pair; credit is granted as the readable's queue drains. */
  toWeb(opts?: { highWaterMark?: number }): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array | ArrayBuffer | string> };
  close(): Promise<void>;
  abort(code?: ErrorCode, message?: string): void;
}

/** client.from(peer): the emits of one peer as events (socket.io-p2p-plugin style). */
export declare class PeerScope {
  readonly peer: string;
  on(event: string, fn: (data: Json | undefined, e: IncomingEmit) => void): () => void;
  once(event: string, fn: (data: Json | undefined, e: IncomingEmit) => void): () => void;
  /** One listener, every listener of an event, or (no arguments) all. */
  off(event?: string, fn?: Function): void;
  listenerCount(event?: string): number;
  /** client.emit to this peer. */
  emit(event: string, data?: Json, opts?: { timeoutMs?: number; persistent?: boolean; ack?: boolean }): Promise<any>;
}

export interface Rooms {
  /** Joins and resolves with the members (including you). */
  join(room: string): Promise<string[]>;
  leave(room: string): Promise<void>;
  /** Resolves once the server sent it to the members; rejects FORBIDDEN for a non-member. */
  emit(room: string, event: string, data?: Json, opts?: { echo?: boolean }): Promise<void>;
  members(room: string): Promise<string[]>;
  joined(): string[];
}

export declare class Client extends Emitter<ClientEvents> {
  readonly url: string;
  readonly namespace: string;
  readonly peerId: string | null;
  readonly gatewayId: string | null;
  readonly topology: string | null;
  readonly welcome: Welcome | null;
  readonly state: 'connecting' | 'open' | 'reconnecting' | 'closed';
  readonly resumeToken: string | null;
  /** The gateway's limits from the last welcome (null before it). */
  readonly limits: Limits | null;
  /** Resolves with the first welcome; rejects when joining fails for good. */
  readonly ready: Promise<Welcome>;
  readonly neighbours: NeighbourInfo[];
  /** With the bridge: signals sent through the server and through neighbours, relayed for others, fallbacks. */
  readonly bridgeStats: { viaServer: number; viaBridge: number; relayed: number; received: number;
    fallbacks: number; refused: number } | null;
  readonly rooms: Rooms;

  peerConnection(peer: string): RTCPeerConnection | undefined;
  /** Tree: move under another parent with a free slot (peer-tree's reconnectUpstream). */
  reparent(): Promise<void>;
  /** Tree with a source: the source's peer id while it is there, else null. */
  readonly source: string | null | undefined;

  /** Sends the stream's tracks to every current and later neighbour (renegotiated). */
  addStream(stream: MediaStream, opts?: { filter?: (n: NeighbourInfo) => boolean }): void;
  /** Stops sending the stream's tracks (the tracks keep running). */
  removeStream(stream: MediaStream): void;
  readonly localStreams: MediaStream[];
  /** The streams a neighbour sends. */
  remoteStreams(peer: string): MediaStream[];
  /** Disables (muted) or enables the local tracks of a kind; returns how many changed. */
  muteTrack(kind: 'audio' | 'video' | 'all', muted?: boolean): number;
  send(peer: string, data: string | ArrayBuffer | ArrayBufferView | Blob): void;
  /** Every open channel; in a tree namespace, the whole tree (forwarded by every peer). Returns the channels sent on. */
  broadcast(data: string | ArrayBuffer | ArrayBufferView | Blob): number;
  /** Sends a signal through the server (`webrtc: false` apps); returns the request id that a refusal's 'error' carries. */
  signal(peer: string, payload: Json): string;
  setPosition(position: Position): void;
  reportRtt(peer: string, ms: number): void;
  ping(): Promise<number>;

  /**
   * Emit with ack: resolves with the ack data (undefined for a persistent emit stored for an
   * absent peer: nobody acks it). `{ack: false}`: resolves with the server's result,
   * `{delivered: true}` or `{stored: true}`.
   */
  emit(to: string, event: string, data?: Json,
    opts?: { timeoutMs?: number; persistent?: boolean; ack?: boolean }): Promise<any>;
  /**
   * Asks for an edge to `peer` outside the topology (policy p2pTargets); resolves
   * once the peer accepted (after the topology connect), rejects FORBIDDEN or PEER_NOT_FOUND.
   */
  addP2pTarget(peer: string, opts?: { timeoutMs?: number }): Promise<void>;
  /** Decides on others' addP2pTarget: true accepts, false or a string (reason) refuses. */
  onAddP2pTarget(fn: (req: { from: string }) => boolean | string | Promise<boolean | string>): () => void;
  /** Listeners for one peer's emits; removed when it leaves. */
  from(peer: string): PeerScope;
  /** A listener for every incoming emit (several may be added). */
  onAny(fn: (event: string, data: Json | undefined, e: IncomingEmit) => void): () => void;
  /** Removes one onAny listener, or all without an argument. */
  offAny(fn?: Function): void;
  onceAny(fn: (event: string, data: Json | undefined, e: IncomingEmit) => void): () => void;
  onEmit(event: string, handler: (data: Json | undefined, e: IncomingEmit) => Json | void | Promise<Json | void>): () => void;

  register(name: string, handler: (args: Json | undefined, ctx: { from: string; service: string; callId: string }) =>
    Json | void | Promise<Json | void>): Promise<() => Promise<void>>;
  unregister(name: string): Promise<void>;
  call(name: string, args?: Json, opts?: { timeoutMs?: number }): Promise<any>;

  subscribe(pattern: string, handler?: (data: Json | undefined, msg: TopicMessage) => void): Promise<() => Promise<void>>;
  unsubscribe(pattern: string, handler?: Function): Promise<void>;
  publish(topic: string, data?: Json): Promise<void>;

  /** Opens a byte stream; rejects with TIMEOUT after openTimeoutMs (default requestTimeoutMs) and aborts it. */
  openStream(to: string, opts?: { label?: string; metadata?: { [key: string]: Json }; window?: number;
    autoCredit?: boolean; openTimeoutMs?: number }): Promise<Stream>;

  close(): void;
}

export declare function connect(url: string, opts: ConnectOptions): Client;
export default connect;

// Pure helpers (exported for tests and tools).
export declare function backoffDelay(attempt: number, opts?: ReconnectOptions, random?: () => number): number;
export declare function topicMatches(pattern: string, topic: string): boolean;
export declare function toBase64(bytes: Uint8Array): string;
export declare function fromBase64(b64: string): Uint8Array;
export declare function messageKind(msg: object): string | null;

export declare class RequestTable {
  constructor(opts?: { prefix?: string; timers?: { setTimeout: Function; clearTimeout: Function } });
  readonly size: number;
  nextId(): string;
  has(id: string): boolean;
  add<T = any>(id: string, opts?: { timeoutMs?: number; accept?: string[]; map?: (body: any, kind: string) => T;
    timeoutCode?: string }): Promise<T>;
  settle(id: string, kind: string, body: any): boolean;
  reject(id: string, err: Error): boolean;
  rejectAll(err: Error): void;
}

export declare class Negotiation {
  constructor(polite: boolean);
  polite: boolean;
  makingOffer: boolean;
  ignoreOffer: boolean;
  settingRemoteAnswerPending: boolean;
  onDescription(type: 'offer' | 'answer', signalingState: string): 'ignore' | 'rollback' | 'apply';
  candidateErrorExpected(): boolean;
}
