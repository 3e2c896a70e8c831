// A bt-ws/1 miner connection (PROTOCOL.md §2-§8): signs the upgrade with btauth/1, reads
// the welcome and the game stream, keeps heartbeats going, submits signed predictions
// and verifies each receipt against the validator hotkey it meant to reach.
//
// Events (an EventEmitter): 'welcome' (data), 'game_update' (data, result),
// 'heartbeat' (data, sample|null), 'confirmation' (data, verification),
// 'error_frame' (data), 'protocol_error' (err, text), 'close' ({ code, reason }).

import { EventEmitter } from 'node:events';

import WebSocket from 'ws';

import { NonceClock, requestTarget, signRequest } from './btauth.mjs';
import {
  GameTable, clockSample, heartbeatFrame, nsValue, parseFrame, predictionFrame, subscribeFrame,
} from './frames.mjs';
import { signPrediction, verifyReceipt } from './signing.mjs';

/** An HTTP refusal of the upgrade (§2.6): `status`, `code` (X-Bt-Error), `detail`, `retryAfter`. */
export class HubRefusal extends Error {
  constructor(status, code, detail, retryAfter) {
    super(`hub refused the connection: ${status} ${code}: ${detail}`);
    this.name = 'HubRefusal';
    Object.assign(this, { status, code, detail, retryAfter });
  }
}

/** The hub answered a prediction with an `error` frame instead of a confirmation (§3.8). */
export class FrameError extends Error {
  constructor(data) {
    super(`hub error ${data.code}: ${data.message}`);
    this.name = 'FrameError';
    this.code = data.code;
    this.ref = data.ref;
  }
}

/** `ws://host:port` or `ws://host:port/path` with the bt-ws/1 query parameters (§2.4). */
export function streamUrl(url, { sports = [], leagues = [], epoch, since } = {}) {
  const parsed = new URL(url);
  if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = '/ws';
  const params = new URLSearchParams();
  if (epoch) params.set('epoch', epoch);
  if (since !== undefined && since !== null) params.set('since', String(since));
  if (sports.length) params.set('sports', sports.join(','));
  if (leagues.length) params.set('leagues', leagues.join(','));
  parsed.search = params.toString();
  return parsed.toString();
}

const SAMPLES_KEPT = 16;

export class MinerClient extends EventEmitter {
  /**
   * `url`: the hub's WebSocket URL; `validator`: the validator hotkey (SS58) to reach;
   * `pair`: the miner's sr25519 pair; optional `sports`, `leagues`, `epoch`, `since`.
   */
  constructor({ url, validator, pair, sports = [], leagues = [], epoch, since,
    nonceClock = new NonceClock() }) {
    super();
    Object.assign(this, { url, validator, pair, sports, leagues, epoch, since, nonceClock });
    this.table = new GameTable();
    this.welcome = null;
    this.socket = null;
    this.samples = [];
    this.welcomeOffsetNs = 0n;
    this.pending = new Map();
    this.heartbeatTimer = null;
  }

  /** Opens the connection; resolves with the welcome data, rejects with HubRefusal. */
  connect({ timeoutMs = 10_000 } = {}) {
    const url = streamUrl(this.url, this);
    const headers = signRequest(this.pair, { method: 'GET', target: requestTarget(url),
      receiver: this.validator, nonce: this.nonceClock.nonce() });
    const socket = new WebSocket(url, { headers, perMessageDeflate: true,
      handshakeTimeout: timeoutMs });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no welcome within ${timeoutMs} ms`));
        socket.terminate();
      }, timeoutMs);
      socket.once('unexpected-response', (request, response) => {
        const raw = request.socket; // detached from the request once the response ends
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          clearTimeout(timer);
          let detail = Buffer.concat(chunks).toString('utf8');
          try { detail = JSON.parse(detail).detail; } catch { /* plain-text refusal */ }
          const retry = response.headers['retry-after'];
          reject(new HubRefusal(response.statusCode, response.headers['x-bt-error'] ?? null,
            detail, retry === undefined ? null : Number(retry)));
          request.destroy();
          raw?.destroy(); // the upgrade failed: nothing more will use this connection
        });
      });
      socket.once('error', (err) => { clearTimeout(timer); reject(err); });
      const broken = (err) => {
        if (this.welcome !== null) return;
        clearTimeout(timer);
        reject(err);
        socket.terminate();
      };
      this.on('protocol_error', broken);
      socket.on('message', (data, isBinary) => {
        if (!isBinary) this.#onText(data.toString('utf8'));
      });
      socket.on('close', (code, reason) => this.#onClose(code, reason.toString('utf8')));
      this.once('welcome', (welcome) => { clearTimeout(timer); resolve(welcome); });
    });
  }

  /** Our best estimate of the hub clock in ms: the lowest-RTT heartbeat sample, else the
   * welcome's one-way estimate (§8). */
  hubNowMs() {
    const best = this.samples.reduce((a, b) => (b.rttNs < a.rttNs ? b : a), this.samples[0]);
    const offsetNs = best ? best.offsetNs : this.welcomeOffsetNs;
    return Number((this.nonceClock.nowNs() + offsetNs) / 1_000_000n);
  }

  /** Sends one heartbeat now; the reply (matched by `echo_ns`) adds a clock sample. */
  heartbeat() {
    this.#send(heartbeatFrame(this.nonceClock.nowNs()));
  }

  /** Resyncs the game table: the hub answers with a snapshot (§3.7). */
  subscribe(filter = { sports: this.sports, leagues: this.leagues }) {
    this.#send(subscribeFrame(filter));
  }

  /**
   * Signs (unless `sign` is false) and sends `prediction`; resolves with
   * `{ receipt, verification }` when its confirmation arrives, rejects with FrameError
   * when the hub answers with an `error` frame naming it, or on timeout / close.
   */
  submit(prediction, { sign = true, timeoutMs = 10_000 } = {}) {
    const id = prediction.prediction_id;
    if (this.pending.has(id)) return Promise.reject(new Error(`${id} is already in flight`));
    const signature = sign ? signPrediction(this.pair, prediction) : null;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no confirmation for ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.#send(predictionFrame(prediction, signature));
    });
  }

  /** Closes the connection (1000) and stops the heartbeats. */
  close() {
    this.#stopHeartbeats();
    this.socket?.close(1000);
  }

  #send(text) {
    if (this.socket?.readyState !== WebSocket.OPEN) throw new Error('the connection is not open');
    this.socket.send(text);
  }

  #onText(text) {
    let frame;
    try {
      frame = parseFrame(text);
    } catch (err) {
      this.emit('protocol_error', err, text);
      return;
    }
    const { type, data } = frame;
    try {
      if (type === 'welcome') this.#onWelcome(data);
      else if (type === 'game_update') this.#onGameUpdate(data);
      else if (type === 'heartbeat') this.#onHeartbeat(data);
      else if (type === 'confirmation') this.#onConfirmation(data);
      else if (type === 'error') this.#onErrorFrame(data);
      // other types: ignored, like unknown keys (§3.1)
    } catch (err) {
      this.emit('protocol_error', err, text);
    }
  }

  #onWelcome(data) {
    this.welcome = data;
    this.welcomeOffsetNs = nsValue(data.server_time_ns) - this.nonceClock.nowNs();
    this.#startHeartbeats(data.heartbeat_interval_s);
    this.emit('welcome', data);
  }

  #onGameUpdate(data) {
    const result = this.table.apply(data);
    if (result === 'resync') this.subscribe();
    else {
      this.epoch = this.table.epoch;
      this.since = this.table.lastSeq;
    }
    this.emit('game_update', data, result);
  }

  #onHeartbeat(data) {
    // never answered (§3.6): a reply carries our own time_ns back in echo_ns
    const echo = nsValue(data.echo_ns);
    let sample = null;
    if (echo !== null) {
      sample = clockSample(echo, nsValue(data.time_ns), this.nonceClock.nowNs());
      this.samples = [...this.samples, sample].slice(-SAMPLES_KEPT);
    }
    this.emit('heartbeat', data, sample);
  }

  #onConfirmation(data) {
    const verification = verifyReceipt(data, this.validator);
    const waiter = this.pending.get(data.prediction_id);
    if (waiter) {
      this.pending.delete(data.prediction_id);
      clearTimeout(waiter.timer);
      waiter.resolve({ receipt: data, verification });
    }
    this.emit('confirmation', data, verification);
  }

  #onErrorFrame(data) {
    const waiter = typeof data.ref === 'string' ? this.pending.get(data.ref) : undefined;
    if (waiter) {
      this.pending.delete(data.ref);
      clearTimeout(waiter.timer);
      waiter.reject(new FrameError(data));
    }
    this.emit('error_frame', data);
  }

  #onClose(code, reason) {
    this.#stopHeartbeats();
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error(`connection closed (${code}) before ${id} was confirmed`));
    }
    this.pending.clear();
    this.emit('close', { code, reason });
  }

  #startHeartbeats(intervalS) {
    this.#stopHeartbeats();
    this.heartbeatTimer = setInterval(() => {
      if (this.socket?.readyState !== WebSocket.OPEN) return;
      this.heartbeat();
      this.table.dropSettled(this.hubNowMs());
    }, intervalS * 1000);
  }

  #stopHeartbeats() {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }
}
