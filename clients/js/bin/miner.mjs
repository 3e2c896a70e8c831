#!/usr/bin/env node
// A reference miner run: connect, read the welcome and the game stream, measure the
// clock, submit one valid signed prediction and one the hub must reject, verify both
// receipts. Every event is one JSON line on stdout; the exit code says whether every
// check passed (0), a check failed (1), the usage was wrong (2) or the hub refused (3).

import { parseArgs } from 'node:util';

import { HubRefusal, MinerClient } from '../src/client.mjs';
import { makePrediction } from '../src/frames.mjs';
import { pairFromUri } from '../src/keys.mjs';

const USAGE = `usage: node bin/miner.mjs --url ws://HOST:PORT/ws --validator SS58 --key URI
       [--game ID] [--sports a,b] [--leagues a,b] [--wager N] [--timeout SECONDS]`;

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

class CheckFailed extends Error {}

/** Resolves with the first `name` event whose arguments satisfy `test`, within `ms`. */
function waitFor(emitter, name, test, ms) {
  return new Promise((resolve, reject) => {
    const listener = (...args) => {
      if (!test(...args)) return;
      clearTimeout(timer);
      emitter.off(name, listener);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(name, listener);
      reject(new CheckFailed(`no ${name} within ${ms} ms`));
    }, ms);
    emitter.on(name, listener);
  });
}

function receiptFields(receipt, verification) {
  const { prediction_id, status, code, message, received_at_ns } = receipt;
  return { prediction_id, status, code, message, received_at_ns, verified: verification.ok,
    ...(verification.ok ? {} : { reason: verification.reason }) };
}

/** Submits, and resubmits (same id: rejections are not stored) after an odds move. */
async function submitAtCurrentOdds(client, game, options, label) {
  let prediction = makePrediction(game, { ...options, nowMs: client.hubNowMs() });
  for (let attempt = 1; ; attempt += 1) {
    emit('submit', { label, prediction_id: prediction.prediction_id, game_id: game.game_id,
      wager: prediction.wager, attempt });
    const { receipt, verification } = await client.submit(prediction);
    emit('receipt', { label, ...receiptFields(receipt, verification) });
    if (!verification.ok) throw new CheckFailed(`${label} receipt: ${verification.reason}`);
    if (receipt.code !== 'odds_mismatch' || attempt === 3) return receipt;
    const current = client.table.games.get(game.game_id) ?? game;
    prediction = makePrediction(current, { ...options, nowMs: client.hubNowMs(),
      predictionId: prediction.prediction_id });
  }
}

async function run(args) {
  const timeoutMs = Number(args.timeout) * 1000;
  const pair = await pairFromUri(args.key);
  const client = new MinerClient({ url: args.url, validator: args.validator, pair,
    sports: args.sports ? args.sports.split(',') : [],
    leagues: args.leagues ? args.leagues.split(',') : [] });
  client.on('game_update', (data, result) => emit('game_update', { epoch: data.epoch,
    seq: data.seq, prev_seq: data.prev_seq, snapshot: data.snapshot,
    games: data.games.length, result }));
  client.on('heartbeat', (data, sample) => emit('heartbeat', { time_ns: data.time_ns,
    echo_ns: data.echo_ns ?? null,
    ...(sample ? { rtt_ns: sample.rttNs.toString(), offset_ns: sample.offsetNs.toString() } : {}) }));
  client.on('error_frame', (data) => emit('error_frame', data));
  client.on('protocol_error', (err) => emit('protocol_error', { message: err.message }));
  client.on('close', ({ code, reason }) => emit('close', { code, reason }));

  emit('start', { miner: pair.address, validator: args.validator });
  let sawUpdate = false; // the snapshot may come in the same read as the welcome
  client.once('game_update', () => { sawUpdate = true; });
  const welcome = await client.connect({ timeoutMs });
  emit('welcome', { session_id: welcome.session_id, protocol: welcome.protocol,
    validator_hotkey: welcome.validator_hotkey, server_time_ns: welcome.server_time_ns,
    epoch: welcome.epoch, seq: welcome.seq, resumed: welcome.resumed, limits: welcome.limits });
  try {
    if (welcome.validator_hotkey !== args.validator) {
      throw new CheckFailed(`the hub says it is ${welcome.validator_hotkey}`);
    }
    if (!sawUpdate) await waitFor(client, 'game_update', () => true, timeoutMs);
    const reply = waitFor(client, 'heartbeat', (_data, sample) => sample !== null, timeoutMs);
    client.heartbeat();
    await reply;

    const deadline = Date.now() + timeoutMs;
    let game;
    while (!game) {
      game = args.game ? client.table.games.get(args.game) : client.table.openGames(client.hubNowMs())[0];
      if (game && args.game && client.table.openGames(client.hubNowMs()).indexOf(game) < 0) {
        throw new CheckFailed(`game ${args.game} is not open`);
      }
      if (!game) await waitFor(client, 'game_update', () => true, Math.max(1, deadline - Date.now()));
    }

    const limit = welcome.limits.daily_wager_limit;
    const wager = Math.min(Number(args.wager), limit);
    const accepted = await submitAtCurrentOdds(client, game, { wager }, 'valid');
    if (accepted.status !== 'accepted' && accepted.status !== 'duplicate') {
      throw new CheckFailed(`the valid prediction was ${accepted.status} (${accepted.code})`);
    }
    const refused = await submitAtCurrentOdds(client, game, { wager: limit + 1 }, 'over_limit');
    if (refused.status !== 'rejected' || refused.code !== 'wager_limit') {
      throw new CheckFailed(`the over-limit prediction got ${refused.status} (${refused.code})`);
    }
    emit('done', { ok: true });
  } finally {
    client.close();
  }
}

async function main() {
  let args;
  try {
    ({ values: args } = parseArgs({ options: {
      url: { type: 'string' }, validator: { type: 'string' }, key: { type: 'string' },
      game: { type: 'string' }, sports: { type: 'string' }, leagues: { type: 'string' },
      wager: { type: 'string', default: '1' }, timeout: { type: 'string', default: '30' },
    } }));
    if (!args.url || !args.validator || !args.key) throw new Error('--url, --validator and --key are required');
    if (!(Number(args.timeout) > 0) || !(Number(args.wager) > 0)) throw new Error('--timeout and --wager must be > 0');
  } catch (err) {
    process.stderr.write(`${err.message}\n${USAGE}\n`);
    return 2;
  }
  try {
    await run(args);
    return 0;
  } catch (err) {
    emit('done', { ok: false, error: err.message, ...(err instanceof HubRefusal
      ? { status: err.status, code: err.code } : {}) });
    return err instanceof HubRefusal ? 3 : 1;
  }
}

process.exitCode = await main();
// bounded exit: a hub that never completes the close handshake does not keep us here
setTimeout(() => process.exit(), 2000).unref();
