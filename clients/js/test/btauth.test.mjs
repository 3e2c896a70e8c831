// btauth/1 against PROTOCOL.md §2.2's worked example: //Bob signs GET /ws for //Alice.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { hexToU8a } from '@polkadot/util';
import { decodeAddress, sr25519Verify } from '@polkadot/util-crypto';

import { NonceClock, buildPayload, requestTarget, signRequest } from '../src/btauth.mjs';
import { pairFromUri } from '../src/keys.mjs';

const BOB = '5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty';
const ALICE = '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY';
const TARGET = '/ws?epoch=f2f467fd487b430e&since=42&sports=soccer';
const NONCE = '1913222400000000000';
const EXAMPLE_PAYLOAD = [
  'btauth/1',
  'sr25519',
  'GET',
  TARGET,
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  NONCE,
  BOB,
  ALICE,
].join('\n');
const EXAMPLE_SIGNATURE = '0xa005211673258ef570baaf005b9d8bdc22d30617e99be4973e38c2624f65366c'
  + '8a7c731030919cfd39af3e2c73a90e1987999948e30f83bcceec693772df5181';

const utf8 = (text) => new TextEncoder().encode(text);

test('the payload is the worked example, byte for byte', () => {
  const payload = buildPayload({ method: 'get', target: TARGET, body: '', nonce: NONCE,
    sender: BOB, receiver: ALICE });
  assert.equal(payload, EXAMPLE_PAYLOAD);
});

test("the worked example's signature verifies against //Bob", () => {
  assert.ok(sr25519Verify(utf8(EXAMPLE_PAYLOAD), hexToU8a(EXAMPLE_SIGNATURE), decodeAddress(BOB)));
  assert.ok(!sr25519Verify(utf8(EXAMPLE_PAYLOAD.replace('since=42', 'since=43')),
    hexToU8a(EXAMPLE_SIGNATURE), decodeAddress(BOB)));
});

test('signRequest gives the example headers with a signature that verifies', async () => {
  const bob = await pairFromUri('//Bob');
  assert.equal(bob.address, BOB);
  const headers = signRequest(bob, { method: 'GET', target: TARGET, receiver: ALICE, nonce: NONCE });
  assert.deepEqual(Object.keys(headers), ['X-Bittensor-Version', 'X-Bittensor-Hotkey',
    'X-Bittensor-Nonce', 'X-Bittensor-Signature', 'X-Bittensor-Receiver']);
  assert.equal(headers['X-Bittensor-Version'], '1');
  assert.equal(headers['X-Bittensor-Hotkey'], BOB);
  assert.equal(headers['X-Bittensor-Nonce'], NONCE);
  assert.equal(headers['X-Bittensor-Receiver'], ALICE);
  assert.match(headers['X-Bittensor-Signature'], /^0x[0-9a-f]{128}$/);
  assert.ok(sr25519Verify(utf8(EXAMPLE_PAYLOAD), hexToU8a(headers['X-Bittensor-Signature']),
    decodeAddress(BOB)));
});

test('a POST body is hashed as its raw bytes', () => {
  const payload = buildPayload({ method: 'POST', target: '/predictions', body: '{"a":"é"}',
    nonce: '1', sender: BOB, receiver: ALICE });
  // SHA-256 of the 10 UTF-8 bytes of {"a":"é"}, as Python's hashlib gives it
  assert.equal(payload.split('\n')[4],
    'b3a092a6af48807fa9482b2ee140105575daa26d5b24b3c0e60a7e2dee6683b1');
});

test('the signed target is what goes on the request line, percent-encoding kept', () => {
  assert.equal(requestTarget('ws://127.0.0.1:8091/ws?leagues=La%20Liga&sports=soccer'),
    '/ws?leagues=La%20Liga&sports=soccer');
  assert.equal(requestTarget('ws://127.0.0.1:8091/ws?leagues=La+Liga'), '/ws?leagues=La+Liga');
  assert.equal(requestTarget('ws://127.0.0.1:8091'), '/');
});

test('nonces are wall-clock nanoseconds and never repeat', () => {
  let mono = 5n;
  const clock = new NonceClock(() => 1_900_000_000_000, () => mono);
  const first = clock.nowNs();
  assert.equal(first, 1_900_000_000_000_000_000n);
  const second = clock.nowNs(); // the monotonic clock did not move
  assert.equal(second, first + 1n);
  mono += 1_000_000n;
  assert.equal(clock.nonce(), (first + 1_000_000n).toString());
  const real = new NonceClock();
  const nonces = Array.from({ length: 1000 }, () => real.nonce());
  assert.equal(new Set(nonces).size, 1000);
  assert.ok(Math.abs(Number(BigInt(nonces[0]) / 1_000_000n) - Date.now()) < 1000);
});
