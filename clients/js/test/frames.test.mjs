// The pure parts of the client: frame shapes, *_ns strings, the prev_seq rule, clock
// samples and the choice of an open game.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  GameTable, clockSample, heartbeatFrame, makePrediction, nsValue, parseFrame, predictionFrame,
} from '../src/frames.mjs';

const game = (id, fields = {}) => ({ game_id: id, team_a: 'Arsenal', team_b: 'Chelsea',
  sport: 'soccer', league: 'EPL', event_start_date: '2030-08-17T14:00:00Z', active: true,
  outcome: 3, team_a_odds: 2.05, team_b_odds: 3.6, tie_odds: 3.5, can_tie: true,
  last_update_date: '2030-08-10T09:00:00Z', ...fields });

test('parseFrame takes {type, data} and refuses anything else', () => {
  assert.deepEqual(parseFrame('{"type":"heartbeat","data":{"time_ns":"1"},"x":1}'),
    { type: 'heartbeat', data: { time_ns: '1' } });
  for (const text of ['[]', '{"type":1,"data":{}}', '{"type":"a","data":[]}', '{"type":"a"}']) {
    assert.throws(() => parseFrame(text), TypeError, text);
  }
  assert.throws(() => parseFrame('not json'), SyntaxError);
});

test('*_ns values are decimal strings read exactly as BigInt', () => {
  assert.equal(nsValue('1913222400123456789'), 1913222400123456789n);
  assert.equal(nsValue(null), null);
  assert.equal(nsValue(undefined), null);
  assert.throws(() => nsValue(1913222400123456789), TypeError);
  assert.throws(() => nsValue('1.5'), TypeError);
  assert.equal(heartbeatFrame(1913222400123456789n),
    '{"type":"heartbeat","data":{"time_ns":"1913222400123456789"}}');
});

test('clockSample: rtt and offset from one heartbeat reply (§8)', () => {
  const sample = clockSample(1_000_000_000n, 1_500_000_000n, 1_040_000_000n);
  assert.equal(sample.rttNs, 40_000_000n);
  assert.equal(sample.offsetNs, 480_000_000n);
});

test('the prediction goes out as its canonical text', () => {
  const prediction = makePrediction(game('g1'), { wager: 25.0, nowMs: Date.parse('2030-08-16T18:30:00Z'),
    predictionId: '6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17' });
  const frame = JSON.parse(predictionFrame(prediction, '0xab'));
  assert.deepEqual(frame.data.prediction, prediction);
  assert.equal(frame.data.signature, '0xab');
  assert.equal(prediction.prediction_date, '2030-08-16T18:30:00.000Z');
  assert.equal(prediction.predicted_odds, 2.05);
  assert.ok(predictionFrame(prediction, null).endsWith('"signature":null}}'));
  assert.ok(predictionFrame(prediction).includes('"team_a_odds":2.05,"team_b":"Chelsea"'));
  assert.match(makePrediction(game('g1'), { wager: 1, nowMs: 0 }).prediction_id,
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('GameTable: snapshot replaces, updates upsert, a gap asks for a resync (§6.4)', () => {
  const table = new GameTable();
  assert.equal(table.apply({ epoch: 'e1', seq: 5, prev_seq: 0, snapshot: true,
    games: [game('a'), game('b')] }), 'applied');
  assert.equal(table.apply({ epoch: 'e1', seq: 9, prev_seq: 5, snapshot: false,
    games: [game('a', { team_a_odds: 2.2 })] }), 'applied');
  assert.equal(table.games.get('a').team_a_odds, 2.2);
  assert.equal(table.lastSeq, 9);
  // a filtered stream jumps in seq without losing anything: prev_seq says so
  assert.equal(table.apply({ epoch: 'e1', seq: 14, prev_seq: 9, snapshot: false, games: [] }), 'applied');
  assert.equal(table.apply({ epoch: 'e1', seq: 20, prev_seq: 17, snapshot: false, games: [] }), 'resync');
  assert.equal(table.apply({ epoch: 'e2', seq: 1, prev_seq: 0, snapshot: false, games: [] }), 'resync');
  assert.equal(table.lastSeq, 14);
  assert.equal(table.apply({ epoch: 'e2', seq: 3, prev_seq: 0, snapshot: true, games: [game('c')] }), 'applied');
  assert.deepEqual([...table.games.keys()], ['c']);
});

test('GameTable: open games and the settled-game retention (§6.5)', () => {
  const table = new GameTable();
  const now = Date.parse('2030-08-17T13:00:00Z');
  table.apply({ epoch: 'e', seq: 1, prev_seq: 0, snapshot: true, games: [
    game('soon', { event_start_date: '2030-08-17T13:00:01Z' }),
    game('later', { event_start_date: '2030-08-17T15:00:00Z' }),
    game('open'),
    game('closed', { active: false }),
    game('settled', { active: false, outcome: 1, last_update_date: '2030-08-17T11:59:00Z' }),
    game('settled-recent', { active: false, outcome: 0, last_update_date: '2030-08-17T12:30:00Z' }),
  ] });
  assert.deepEqual(table.openGames(now).map((g) => g.game_id), ['later', 'open']);
  table.dropSettled(now);
  assert.ok(!table.games.has('settled'));
  assert.ok(table.games.has('settled-recent'));
});
