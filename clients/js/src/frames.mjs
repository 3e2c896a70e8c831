// bt-ws/1 frames and the client-side state they drive (PROTOCOL.md §3, §6, §8). Pure:
// no sockets, no clocks; times are BigInt nanoseconds, passed in.

import { randomUUID } from 'node:crypto';

import { canonicalJson } from './canonical.mjs';

/** Parses one text message into `{ type, data }`; throws on anything else (§3.1). */
export function parseFrame(text) {
  const frame = JSON.parse(text);
  if (frame === null || typeof frame !== 'object' || typeof frame.type !== 'string'
      || frame.data === null || typeof frame.data !== 'object' || Array.isArray(frame.data)) {
    throw new TypeError('not a bt-ws/1 frame: {"type": string, "data": object}');
  }
  return { type: frame.type, data: frame.data };
}

/** A `*_ns` wire value (a decimal string) as a BigInt; null stays null (§3.2, §3.6). */
export function nsValue(value) {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string' || !/^-?\d+$/.test(value)) {
    throw new TypeError(`a *_ns value must be a string of decimal digits, not ${JSON.stringify(value)}`);
  }
  return BigInt(value);
}

/** A heartbeat to send: `time_ns` is our clock, as a string (§3.6). */
export function heartbeatFrame(timeNs) {
  return JSON.stringify({ type: 'heartbeat', data: { time_ns: timeNs.toString() } });
}

/**
 * A prediction frame. The prediction goes out as its canonical text, so the hub parses
 * exactly the values that were signed (§5).
 */
export function predictionFrame(prediction, signature) {
  const sig = signature === undefined || signature === null ? 'null' : JSON.stringify(signature);
  return `{"type":"prediction","data":{"prediction":${canonicalJson(prediction)},"signature":${sig}}}`;
}

/** A subscribe frame (§3.7). */
export function subscribeFrame({ sports = [], leagues = [] } = {}) {
  return JSON.stringify({ type: 'subscribe', data: { sports, leagues } });
}

/**
 * RTT and clock offset from a heartbeat reply (§8): sent at local `t0`, answered with hub
 * time `ts`, received at local `t1` (BigInt ns). `offset` is hub clock minus ours.
 */
export function clockSample(t0, ts, t1) {
  return { rttNs: t1 - t0, offsetNs: ts - (t0 + t1) / 2n };
}

const SETTLED_RETENTION_MS = 3600_000;

/**
 * The games a connection knows, kept by the snapshot / upsert / `prev_seq` rules of §6.
 * `apply` returns `'applied'`, or `'resync'` when updates were missed (send `subscribe`).
 */
export class GameTable {
  constructor() {
    this.games = new Map();
    this.epoch = null;
    this.lastSeq = 0;
  }

  apply(update) {
    if (update.snapshot) {
      this.games = new Map(update.games.map((game) => [game.game_id, game]));
      this.epoch = update.epoch;
      this.lastSeq = update.seq;
      return 'applied';
    }
    if (update.epoch !== this.epoch || this.lastSeq < update.prev_seq) return 'resync';
    for (const game of update.games) this.games.set(game.game_id, game);
    this.lastSeq = Math.max(this.lastSeq, update.seq);
    return 'applied';
  }

  /** Drops settled games more than an hour old on the hub clock (§6.5). */
  dropSettled(hubNowMs) {
    for (const [id, game] of this.games) {
      if (game.outcome !== 3 && hubNowMs - Date.parse(game.last_update_date) > SETTLED_RETENTION_MS) {
        this.games.delete(id);
      }
    }
  }

  /** Games still open for predictions `marginMs` from now on the hub clock, the one
   * that starts last first (it leaves the most time to submit). */
  openGames(hubNowMs, marginMs = 2000) {
    return [...this.games.values()]
      .filter((game) => game.active && game.outcome === 3
        && Date.parse(game.event_start_date) > hubNowMs + marginMs)
      .sort((a, b) => Date.parse(b.event_start_date) - Date.parse(a.event_start_date));
  }
}

/**
 * A prediction on `game` (§4.2) at the game's current odds, with a fresh lower-case UUID.
 * `outcome` is 0 (team_a), 1 (team_b) or 2 (tie).
 */
export function makePrediction(game, { outcome = 0, wager, nowMs, modelName = 'js-reference',
  confidence = null, predictionId = randomUUID() }) {
  const odds = [game.team_a_odds, game.team_b_odds, game.tie_odds][outcome];
  return {
    prediction_id: predictionId,
    game_id: game.game_id,
    miner_uid: null,
    prediction_date: new Date(nowMs).toISOString(),
    predicted_outcome: outcome,
    predicted_odds: odds,
    team_a: game.team_a,
    team_b: game.team_b,
    wager,
    team_a_odds: game.team_a_odds,
    team_b_odds: game.team_b_odds,
    tie_odds: game.tie_odds,
    model_name: modelName,
    confidence_score: confidence,
  };
}
