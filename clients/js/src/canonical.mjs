// Canonical bytes (PROTOCOL.md §5): the RFC 8785 (JSON Canonicalization Scheme)
// serialization of a parsed JSON value, as UTF-8. Signatures cover these bytes, so a
// signer and a verifier in different languages agree as long as both parse the same
// values. The `canonicalize` package does the RFC 8785 work (keys sorted by UTF-16 code
// units, ECMAScript number form, minimal string escapes); this module adds the checks
// bt-ws/1 asks for on top: only plain JSON values, and integers within ±(2^53 − 1).
// ECMAScript writes a whole double below 1e21 as plain digits, which a Python (or any
// integer-aware) peer parses as an integer: from 2^53 up such an integer is not exact in
// a double, so the hub refuses it. From 1e21 up the form has an exponent (`1e+21`) and
// parses as a float on both sides, so it is allowed.

import canonicalize from 'canonicalize';

const encoder = new TextEncoder();

/** Throws a TypeError naming the first value that has no canonical form. */
function check(value, path) {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`${path}: ${value} is not a finite number`);
    if (Number.isInteger(value) && !Number.isSafeInteger(value) && Math.abs(value) < 1e21) {
      throw new TypeError(`${path}: integer ${value} is outside ±(2^53 − 1); send it as a string`);
    }
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => check(item, `${path}[${i}]`));
    return;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value)) check(item, `${path}.${key}`);
    return;
  }
  throw new TypeError(`${path}: a ${typeof value} is not a JSON value`);
}

/** The plain RFC 8785 text of `value`, without bt-ws/1's extra checks (for tests). */
export function rfc8785(value) {
  return canonicalize(value);
}

/** The RFC 8785 text of `value` (a string); throws a TypeError for a value bt-ws/1
 * cannot carry (NaN, infinities, unsafe integers, lone surrogates, non-JSON types). */
export function canonicalJson(value) {
  check(value, '$');
  return canonicalize(value);
}

/** The canonical bytes of `value`: its RFC 8785 text as UTF-8 (a Uint8Array). */
export function canonicalBytes(value) {
  return encoder.encode(canonicalJson(value));
}
