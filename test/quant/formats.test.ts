// The weight formats against bitsandbytes' definitions: the NF4 code table, the dynamic map, NF4
// quantization (codes, nibble order, absmax), double quantization and int8, compared with values
// PyTorch computed the way bitsandbytes does (test/fixtures/quant/make_fixtures.py), plus
// hand-computed blocks and error bounds.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  DQ_BLOCK, dequantizeAbsmax, dequantizeNF4, dynamicMap, int8Scales, NF4_CODE, nearestCode, quantizeAbsmax,
  quantizeInt8, quantizeNF4,
} from '../../src/quant/index.js';
import { assertClose } from '../helpers.js';

interface Fixture {
  dynamic_map: number[]; W: number[]; W_shape: [number, number];
  nf4_packed: number[]; nf4_absmax: number[]; nf4_dequant: number[];
  absmax_in: number[]; dq_offset: number; dq_codes: number[]; dq_nested_absmax: number[]; dq_absmax: number[];
  int8_q: number[]; int8_scb: number[];
}
const fx = JSON.parse(readFileSync(new URL('../../../test/fixtures/quant/bnb.json', import.meta.url), 'utf8')) as Fixture;

test('NF4 code table: 16 sorted values from -1 to 1 with an exact zero at index 7', () => {
  assert.equal(NF4_CODE.length, 16);
  assert.equal(NF4_CODE[0], -1);
  assert.equal(NF4_CODE[7], 0);
  assert.equal(NF4_CODE[15], 1);
  for (let i = 1; i < 16; i++) assert.ok(NF4_CODE[i] > NF4_CODE[i - 1]);
  // 8 positive and 7 negative values: the asymmetric type of create_normal_map(use_extra_value=True)
  assert.equal(NF4_CODE.filter((v) => v > 0).length, 8);
  assert.equal(NF4_CODE[8], Math.fround(0.07958029955625534));
});

test('dynamic map equals bitsandbytes create_dynamic_map() bit for bit', () => {
  const m = dynamicMap();
  assert.equal(m.length, 256);
  assert.deepEqual(Array.from(m), fx.dynamic_map.map(Math.fround));
  assert.equal(m[255], 1);
});

test('nearestCode: midpoints go to the lower code (torch.argmin takes the first minimum)', () => {
  const mid = Math.fround((NF4_CODE[8] + NF4_CODE[9]) / 2);
  assert.equal(nearestCode(NF4_CODE, mid), Math.abs(mid - NF4_CODE[8]) <= Math.abs(mid - NF4_CODE[9]) ? 8 : 9);
  assert.equal(nearestCode(NF4_CODE, -5), 0);
  assert.equal(nearestCode(NF4_CODE, 5), 15);
  assert.equal(nearestCode(NF4_CODE, 0.01), 7);
});

test('NF4: a hand-computed block — codes, absmax and nibble order (first element high)', () => {
  const w = new Float32Array(64);
  w[0] = -2; // → -1 (code 0)
  w[1] = 2; // → 1 (code 15)
  w[2] = 0.16093020141124725 * 2; // → code 9
  w[3] = 0; // → code 7
  const q = quantizeNF4(w);
  assert.deepEqual(Array.from(q.absmax), [2]);
  assert.equal(q.packed.length, 32);
  assert.equal(q.packed[0], (0 << 4) | 15);
  assert.equal(q.packed[1], (9 << 4) | 7);
  assert.equal(q.packed[2], (7 << 4) | 7); // zeros
  const d = dequantizeNF4(q);
  assert.deepEqual(Array.from(d.subarray(0, 4)), [-2, 2, Math.fround(Math.fround(0.16093020141124725) * 2), 0]);
});

test('NF4 matches bitsandbytes quantize_4bit: packed bytes, absmax and dequantized values', () => {
  const q = quantizeNF4(Float32Array.from(fx.W));
  assert.deepEqual(Array.from(q.packed), fx.nf4_packed);
  assertClose(q.absmax, fx.nf4_absmax, 0, 'absmax');
  assertClose(dequantizeNF4(q), fx.nf4_dequant, 0, 'dequantized');
});

test('NF4: odd lengths and a partial last block; all-zero blocks stay zero', () => {
  const w = new Float32Array(131);
  for (let i = 0; i < w.length; i++) w[i] = i < 64 ? 0 : Math.sin(i) * 0.1;
  const q = quantizeNF4(w);
  assert.equal(q.packed.length, 66);
  assert.equal(q.absmax.length, 3);
  assert.equal(q.absmax[0], 0);
  const d = dequantizeNF4(q);
  for (let i = 0; i < 64; i++) assert.equal(d[i], 0);
  // every value is within half the widest code gap (between -1 and -0.696) of the original
  let gap = 0;
  for (let i = 1; i < 16; i++) gap = Math.max(gap, NF4_CODE[i] - NF4_CODE[i - 1]);
  for (let i = 64; i < w.length; i++) assert.ok(Math.abs(d[i] - w[i]) <= (gap / 2) * q.absmax[Math.floor(i / 64)] + 1e-7);
  assert.equal(q.packed[65] & 15, 0); // the pad nibble
});

test('double quantization matches bitsandbytes: offset, 8-bit codes, nested absmax, reconstruction', () => {
  const absmax = Float32Array.from(fx.absmax_in);
  const q = quantizeAbsmax(absmax);
  assert.ok(Math.abs(q.offset - fx.dq_offset) <= 2e-9, `offset ${q.offset} vs ${fx.dq_offset}`);
  assert.equal(q.nestedAbsmax.length, Math.ceil(600 / DQ_BLOCK));
  assertClose(q.nestedAbsmax, fx.dq_nested_absmax, 1e-8, 'nested absmax');
  let same = 0;
  for (let i = 0; i < 600; i++) if (q.codes[i] === fx.dq_codes[i]) same++;
  assert.ok(same >= 598, `${600 - same} codes differ from bitsandbytes`); // only ulp-level ties in the offset may flip
  const d = dequantizeAbsmax(q);
  assertClose(d, fx.dq_absmax, 2e-4, 'dequantized absmax');
  // the dynamic map's step near 1 is 1/71, so the error is at most half a step of each nested absmax
  for (let i = 0; i < 600; i++) assert.ok(Math.abs(d[i] - absmax[i]) <= q.nestedAbsmax[Math.floor(i / DQ_BLOCK)] * 0.0071 + 1e-7);
});

test('int8 per output channel matches bitsandbytes int8_vectorwise_quant', () => {
  const [N, K] = fx.W_shape;
  const q = quantizeInt8(Float32Array.from(fx.W), N, K);
  assert.deepEqual(Array.from(q.q), fx.int8_q);
  assertClose(q.scb, fx.int8_scb, 0, 'SCB');
  const s = int8Scales(q.scb);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const w = fx.W[n * K + k];
      assert.ok(Math.abs(q.q[n * K + k] * s[n] - w) <= s[n] * 0.5 + 1e-7);
    }
  }
});
