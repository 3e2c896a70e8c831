// RFC 8785's own test vectors, so the canonicalizer is checked against the standard and
// not against the hub it talks to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { canonicalBytes, canonicalJson, rfc8785 } from '../src/canonical.mjs';

/** A double from its IEEE 754 bit pattern, as RFC 8785 Appendix B gives it. */
function fromBits(hex) {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

test('RFC 8785 Appendix B: number serialization', () => {
  const vectors = [
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ];
  for (const [bits, expected] of vectors) {
    const value = fromBits(bits);
    assert.equal(rfc8785(value), expected, bits);
    // Whole doubles from 2^53 up to 1e21 are written as plain digits, which the hub
    // would read as an integer it cannot carry exactly: bt-ws/1 refuses them.
    if (/^-?\d+$/.test(expected) && !Number.isSafeInteger(value)) {
      assert.throws(() => canonicalJson(value), /outside/, bits);
    } else {
      assert.equal(canonicalJson(value), expected, bits);
    }
  }
});

test('RFC 8785 §3.2.2: the whole-object example', () => {
  const input = '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
    + '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
    + '"literals":[null,true,false]}';
  const expected = '{"literals":[null,true,false],'
    + '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    + '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}';
  assert.equal(canonicalJson(JSON.parse(input)), expected);
  // UTF-8 on the wire: € is three bytes
  assert.equal(canonicalBytes(JSON.parse(input)).length, Buffer.byteLength(expected, 'utf8'));
});

test('RFC 8785 §3.2.3: keys sorted by UTF-16 code units', () => {
  const input = '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh",'
    + '"1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control",'
    + '"\\u00f6":"Latin Small Letter O With Diaeresis"}';
  // compared as text: JSON.parse would put the integer-like key "1" first again
  const expected = '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
    + '"ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign",'
    + '"😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}';
  assert.equal(canonicalJson(JSON.parse(input)), expected);
});

test('whole-valued numbers have one form: 25.0 and 25 are both 25', () => {
  assert.equal(canonicalJson(JSON.parse('{"wager":25.0}')), '{"wager":25}');
  assert.equal(canonicalJson(JSON.parse('{"wager":2.5e1}')), '{"wager":25}');
  assert.equal(canonicalJson({ odds: 2.40, tiny: 1e-7 }), '{"odds":2.4,"tiny":1e-7}');
});

test('values without a canonical form are refused', () => {
  assert.throws(() => canonicalJson({ x: NaN }), /finite/);
  assert.throws(() => canonicalJson({ x: Infinity }), /finite/);
  assert.throws(() => canonicalJson({ x: 2 ** 53 }), /outside/);
  assert.throws(() => canonicalJson({ x: -(2 ** 60) }), /outside/);
  assert.equal(canonicalJson({ x: 1e21 }), '{"x":1e+21}');
  assert.throws(() => canonicalJson({ x: 10n }), /bigint/);
  assert.throws(() => canonicalJson({ x: '\ud800' }), /surrogate/i);
  assert.equal(canonicalJson({ x: Number.MAX_SAFE_INTEGER }), '{"x":9007199254740991}');
});

test('canonical bytes are UTF-8 with raw non-ASCII characters', () => {
  const bytes = canonicalBytes({ team_a: 'Atlético Madrid' });
  assert.equal(Buffer.from(bytes).toString('utf8'), '{"team_a":"Atlético Madrid"}');
  assert.equal(createHash('sha256').update(bytes).digest('hex').length, 64);
});
