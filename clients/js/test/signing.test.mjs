// Signatures against PROTOCOL.md §5.4's worked example (real //Bob and //Alice
// signatures made by the Python SDK), so the JS side is checked against the document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { canonicalBytes, canonicalJson } from '../src/canonical.mjs';
import { pairFromUri } from '../src/keys.mjs';
import { signPrediction, verifyReceipt, verifySigned } from '../src/signing.mjs';

const BOB = '5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty';
const ALICE = '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY';

// §5.4, as a JSON text: 25.0 parses as the number 25, as in any JSON parser
const PREDICTION = JSON.parse(`{
  "prediction_id": "6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17", "game_id": "example-laliga-002",
  "miner_uid": 17, "prediction_date": "2030-08-16T18:30:00Z", "predicted_outcome": 0,
  "predicted_odds": 2.4, "team_a": "Atlético Madrid", "team_b": "Sevilla", "wager": 25.0,
  "team_a_odds": 2.4, "team_b_odds": 3.1, "tie_odds": 3.25, "model_name": "value-kelly",
  "confidence_score": 0.62}`);
const PREDICTION_TEXT = '{"confidence_score":0.62,"game_id":"example-laliga-002","miner_uid":17,'
  + '"model_name":"value-kelly","predicted_odds":2.4,"predicted_outcome":0,'
  + '"prediction_date":"2030-08-16T18:30:00Z","prediction_id":"6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17",'
  + '"team_a":"Atlético Madrid","team_a_odds":2.4,"team_b":"Sevilla","team_b_odds":3.1,'
  + '"tie_odds":3.25,"wager":25}';
const PREDICTION_SIGNATURE = '0x4230acc29ba3eda98838c430a35a1572de084d43d746b0fff56c72b6bd8ebe2b'
  + '12adf0aaab5a80caa58c46a39aac84aef3c389ba6b442a56cca69aeab48ec380';
const RECEIPT_TEXT = '{"code":"ok","message":"accepted","miner_hotkey":"' + BOB + '",'
  + '"prediction_id":"6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17","received_at_ns":"1913222400123456789",'
  + '"status":"accepted","validator_hotkey":"' + ALICE + '"}';
const RECEIPT = {
  prediction_id: '6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17', status: 'accepted', code: 'ok',
  message: 'accepted', received_at_ns: '1913222400123456789', miner_hotkey: BOB,
  validator_hotkey: ALICE,
  signature: '0x6409f4783daa675a677a62815caee1733ec6c39c55aa7502d03bc4c230b14766'
    + 'eca0ca6150866de85d11e4f6dffd46452b69b7b95abeaa71cbede967061c4c89',
};

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

test("§5.4: the prediction's canonical bytes", () => {
  assert.equal(canonicalJson(PREDICTION), PREDICTION_TEXT);
  const bytes = canonicalBytes(PREDICTION);
  assert.equal(bytes.length, 347);
  assert.equal(sha256(bytes), '788ba861510a94b6b094b638cc6fe7835786e1c7130cbb8e0d39d520e8ab6a44');
});

test("§5.4: //Bob's prediction signature verifies, and only over those values", () => {
  assert.ok(verifySigned(BOB, PREDICTION, PREDICTION_SIGNATURE));
  assert.ok(!verifySigned(ALICE, PREDICTION, PREDICTION_SIGNATURE));
  assert.ok(!verifySigned(BOB, { ...PREDICTION, wager: 25.5 }, PREDICTION_SIGNATURE));
  assert.ok(!verifySigned(BOB, PREDICTION, PREDICTION_SIGNATURE.slice(0, -2)));
});

test('a prediction signed here verifies as the hub would check it', async () => {
  const bob = await pairFromUri('//Bob');
  const signature = signPrediction(bob, PREDICTION);
  assert.match(signature, /^0x[0-9a-f]{128}$/);
  // the hub parses what was sent and rebuilds the bytes: 25.0 or 25 on the wire alike
  assert.ok(verifySigned(BOB, JSON.parse(PREDICTION_TEXT.replace('"wager":25', '"wager":25.0')),
    signature));
});

test("§5.4: the receipt's canonical bytes and //Alice's signature", () => {
  const { signature, ...content } = RECEIPT;
  assert.ok(signature);
  assert.equal(canonicalJson(content), RECEIPT_TEXT);
  assert.equal(canonicalBytes(content).length, 284);
  assert.equal(sha256(canonicalBytes(content)),
    'd71904cb27015257640922cae1fe33e310b3ea3370cf4ceb88ca0f4083baf6ab');
  assert.deepEqual(verifyReceipt(RECEIPT, ALICE), { ok: true });
});

test('a receipt is refused when anything in it or about it is off', () => {
  const refuse = (receipt, expected, reason) => {
    const result = verifyReceipt(receipt, expected);
    assert.equal(result.ok, false);
    assert.match(result.reason, reason);
  };
  refuse({ ...RECEIPT, status: 'rejected' }, ALICE, /does not verify/);
  refuse({ ...RECEIPT, received_at_ns: '1913222400123456788' }, ALICE, /does not verify/);
  refuse({ ...RECEIPT, received_at_ns: 1913222400123456789 }, ALICE, /not a string/);
  refuse({ ...RECEIPT, extra: 'x' }, ALICE, /keys/);
  refuse({ ...RECEIPT, signature: undefined }, ALICE, /does not verify/);
  // a hub that is not the one we meant to reach, even with a valid signature of its own
  refuse(RECEIPT, BOB, /signed for/);
  refuse(null, ALICE, /not an object/);
});
