// Prediction and receipt signatures (PROTOCOL.md §5): sr25519 with the Substrate signing
// context over the canonical bytes (RFC 8785) of a JSON object, hex with a `0x` prefix.

import { hexToU8a, isHex, u8aToHex } from '@polkadot/util';
import { decodeAddress, sr25519Verify } from '@polkadot/util-crypto';

import { canonicalBytes } from './canonical.mjs';

/** The seven keys a receipt's signature covers (§5.3). */
export const RECEIPT_KEYS = Object.freeze(['code', 'message', 'miner_hotkey', 'prediction_id',
  'received_at_ns', 'status', 'validator_hotkey']);

/** `0x` + hex of `pair`'s signature over the canonical bytes of `prediction`. */
export function signPrediction(pair, prediction) {
  return u8aToHex(pair.sign(canonicalBytes(prediction)));
}

/** Whether `signature` is `hotkey`'s sr25519 signature over the canonical bytes of `value`. */
export function verifySigned(hotkey, value, signature) {
  if (typeof signature !== 'string' || !isHex(signature) || signature.length !== 130) return false;
  let publicKey;
  try {
    publicKey = decodeAddress(hotkey);
  } catch {
    return false;
  }
  return sr25519Verify(canonicalBytes(value), hexToU8a(signature), publicKey);
}

/**
 * Checks a confirmation's `data` (§3.5) as a receipt from the validator we meant to
 * reach: exactly the seven signed keys plus `signature`, all strings; `validator_hotkey`
 * is `expectedValidator`; and the signature verifies against that hotkey (not only
 * against the hotkey the receipt names). Returns `{ ok: true }` or `{ ok: false, reason }`.
 */
export function verifyReceipt(data, expectedValidator) {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { ok: false, reason: 'the receipt is not an object' };
  }
  const { signature, ...content } = data;
  const keys = Object.keys(content).sort();
  if (keys.join() !== RECEIPT_KEYS.join()) {
    return { ok: false, reason: `the receipt has the keys ${keys.join(', ')}` };
  }
  const notString = RECEIPT_KEYS.find((key) => typeof content[key] !== 'string');
  if (notString !== undefined) return { ok: false, reason: `${notString} is not a string` };
  if (content.validator_hotkey !== expectedValidator) {
    return { ok: false, reason: `signed for ${content.validator_hotkey}, not ${expectedValidator}` };
  }
  if (!verifySigned(expectedValidator, content, signature)) {
    return { ok: false, reason: 'the signature does not verify against the validator hotkey' };
  }
  return { ok: true };
}
