// btauth/1 request signing (PROTOCOL.md §2.2): eight lines joined with "\n", signed
// with the miner's sr25519 key, sent as X-Bittensor-* headers. Pure, apart from the
// nonce clock reading the system clock.

import { createHash } from 'node:crypto';
import { u8aToHex } from '@polkadot/util';

const encoder = new TextEncoder();

/**
 * Nonces are the signing time in nanoseconds (a decimal string), and the hub refuses a
 * (hotkey, nonce) pair it has seen. `Date.now() * 1e6` repeats within a millisecond
 * (and is not exact above 2^53), so this clock anchors `process.hrtime.bigint()` to the
 * wall clock once and never returns the same value twice.
 */
export class NonceClock {
  constructor(wallNowMs = Date.now, monoNowNs = process.hrtime.bigint) {
    this.monoNowNs = monoNowNs;
    this.anchor = BigInt(wallNowMs()) * 1_000_000n - monoNowNs();
    this.last = 0n;
  }

  /** Wall-clock nanoseconds since the epoch, strictly increasing (a BigInt). */
  nowNs() {
    let now = this.anchor + this.monoNowNs();
    if (now <= this.last) now = this.last + 1n;
    this.last = now;
    return now;
  }

  /** A fresh nonce: `nowNs()` as a decimal string. */
  nonce() {
    return this.nowNs().toString();
  }
}

/** Lower-case hex SHA-256 of the raw body (a string is taken as UTF-8). */
export function bodyDigest(body = '') {
  return createHash('sha256').update(typeof body === 'string' ? encoder.encode(body) : body)
    .digest('hex');
}

/**
 * The signed payload, as a string (§2.2). `target` is the request target exactly as it
 * goes on the request line: path plus "?query", percent-encoding included.
 */
export function buildPayload({ scheme = 'sr25519', method, target, body = '', nonce, sender,
  receiver }) {
  return ['btauth/1', scheme, method.toUpperCase(), target, bodyDigest(body), String(nonce),
    sender, receiver].join('\n');
}

/**
 * The btauth/1 headers for one request, signed by `pair` (a @polkadot/keyring sr25519
 * pair) and bound to the validator `receiver` (SS58). Each call needs a new `nonce`.
 */
export function signRequest(pair, { method, target, body = '', receiver, nonce }) {
  const payload = buildPayload({ method, target, body, nonce, sender: pair.address, receiver });
  return {
    'X-Bittensor-Version': '1',
    'X-Bittensor-Hotkey': pair.address,
    'X-Bittensor-Nonce': String(nonce),
    'X-Bittensor-Signature': u8aToHex(pair.sign(encoder.encode(payload))),
    'X-Bittensor-Receiver': receiver,
  };
}

/** The request target a URL is sent with: what `ws` and `fetch` put on the request line. */
export function requestTarget(url) {
  const parsed = new URL(url);
  return `${parsed.pathname || '/'}${parsed.search}`;
}
