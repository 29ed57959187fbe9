/**
 * XXH3-128 (seed 0, default secret) of 4096-byte blocks, in WebAssembly SIMD, many blocks per call.
 *
 * Why: @node-rs/xxhash hashes one buffer per call and returns a BigInt; its xxh3 runs at ~2 GB/s here and a 4 KiB
 * block costs ~2–4 µs with the call. This module hashes a whole request's blocks in one call at several GB/s and
 * writes the canonical (big-endian) 16 bytes of each, with nothing allocated per block.
 *
 * The module is assembled here, at load, from the algorithm as xxhash.h specifies it for inputs longer than 240
 * bytes (XXH3_hashLong_128b with XXH3_kSecret): 8 accumulators in 4 i64x2 vectors, 16 stripes of 64 bytes per
 * 1024-byte block, a scramble after each block, the last 15 stripes and the final stripe, then two mergeAccs.
 * Stripes run in a small loop (see stripeLoop: the fully unrolled form spilled to the stack under TurboFan), the
 * data half of each accumulate is summed and swapped once per 1 KiB block (foldSums), and the products of two
 * lanes share two shuffles (accumulatePair): ~80 µs per MiB and ~0.36 µs per single 4 KiB block with the copy
 * into wasm memory (was ~150 µs and ~0.75 µs). Tests check it bit for bit against @node-rs/xxhash;
 * fingerprint.ts falls back to that package if WebAssembly SIMD is unavailable.
 */

const BLOCK = 4096;
/** 4 KiB blocks hashed per call: the input window in wasm memory is this many 4 KiB blocks (more smaller ones). */
export const WASM_BLOCKS_PER_CALL = 256;
/** Block sizes a hasher can be built for: XXH3's long-input path, whole 1 KiB "blocks" of 16 stripes. */
export const WASM_BLOCK_SIZES = [1024, 2048, 4096] as const;

const MASK64 = (1n << 64n) - 1n;
const PRIME32_1 = 0x9e3779b1n;
const PRIME32_2 = 0x85ebca77n;
const PRIME32_3 = 0xc2b2ae3dn;
const PRIME64_1 = 0x9e3779b185ebca87n;
const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
const PRIME64_3 = 0x165667b19e3779f9n;
const PRIME64_4 = 0x85ebca77c2b2ae63n;
const PRIME64_5 = 0x27d4eb2f165667c5n;
const PRIME_MX1 = 0x165667919e3779f9n;

/** XXH3_kSecret (192 bytes). */
const SECRET = Uint8Array.from([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
]);

// Memory layout (bytes): secret | accumulator scratch | input window | output window.
const SECRET_AT = 0;
const SCRATCH_AT = 192;
const INPUT_AT = 4096;
const OUTPUT_AT = INPUT_AT + WASM_BLOCKS_PER_CALL * BLOCK;
/** Room for one fingerprint per 1 KiB of the input window (the smallest blocks). */
const MEMORY_PAGES = Math.ceil((OUTPUT_AT + ((WASM_BLOCKS_PER_CALL * BLOCK) / 1024) * 16) / 65536);

// ---------------------------------------------------------------------------------------------------------------
// A minimal assembler: just the opcodes used below.

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function sleb(value: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = Number(value & 0x7fn);
    value >>= 7n;
    const done = (value === 0n && (byte & 0x40) === 0) || (value === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

/** A u64 as the signed value wasm's i64.const encodes. */
function i64(value: bigint): bigint {
  return BigInt.asIntN(64, value & MASK64);
}

function bytes64(value: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 8; i++) out.push(Number((value >> BigInt(8 * i)) & 0xffn));
  return out;
}

const I32 = 0x7f;
const I64 = 0x7e;
const V128 = 0x7b;

const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  i32Const: (v: number) => [0x41, ...sleb(BigInt(v))],
  i64Const: (v: bigint) => [0x42, ...sleb(i64(v))],
  i32Add: [0x6a],
  i32Mul: [0x6c],
  i32GeU: [0x4f],
  i32LtU: [0x49],
  i64Load: (offset: number) => [0x29, 3, ...uleb(offset)],
  i64Add: [0x7c],
  i64Mul: [0x7e],
  i64And: [0x83],
  i64Or: [0x84],
  i64Xor: [0x85],
  i64Shl: [0x86],
  i64ShrU: [0x88],
  call: (f: number) => [0x10, ...uleb(f)],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  end: [0x0b],
  simd: (code: number, ...immediates: number[]) => [0xfd, ...uleb(code), ...immediates],
};
const v128Load = (offset: number) => op.simd(0x00, 0, ...uleb(offset));
const v128Store = (offset: number) => op.simd(0x0b, 0, ...uleb(offset));
const v128Const = (low: bigint, high: bigint) => op.simd(0x0c, ...bytes64(low & MASK64), ...bytes64(high & MASK64));
const shuffle = (lanes: number[]) => op.simd(0x0d, ...lanes);
const i64x2Splat = op.simd(0x12);
const i64x2ExtractLane = (lane: number) => op.simd(0x1d, lane);
const i64x2ReplaceLane = (lane: number) => op.simd(0x1e, lane);
const v128Xor = op.simd(0x51);
const i64x2ShrU = op.simd(0xcd);
const i64x2Add = op.simd(0xce);
const i64x2Mul = op.simd(0xd5);
const i64x2ExtmulLowI32x4U = op.simd(0xde);
const i64x2ExtmulHighI32x4U = op.simd(0xdf);

const SWAP_HALVES = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
/** i32 lanes [a0 a2 b0 b2] and [a1 a3 b1 b3] of two vectors a, b (the low and the high halves of their u64s). */
const EVEN_WORDS = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
const ODD_WORDS = [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31];
const REVERSE = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0];

// hash_blocks locals: 0 input, 1 count, 2 output, 3 p (block), 4 k, 5 stripe data pointer, 6 stripe secret offset,
// 7–10 accumulators, 11–14 data sums, 15–18 scratch vectors, 19 r, 20 low, 21 high.
const P = 3;
const K = 4;
const DP = 5;
const SP = 6;
const ACC = 7;
const SUM = 11;
const DATA_A = 15;
const DATA_B = 16;
const KEY_A = 17;
const KEY_B = 18;
const R = 19;
const LOW = 20;
const HIGH = 21;

/**
 * Two lanes (j, j+1) of one stripe: acc[j] += lo32(dk) * hi32(dk) per u64 with dk = data ^ key, and the data itself
 * goes to sum[j]. XXH3 adds each u64 of data to its neighbour's accumulator (acc[i ^ 1]); additions commute, so the
 * data of a whole 1 KiB block is summed first and swapped once (foldSums) instead of once per stripe.
 *
 * The products: i64x2.extmul_low/high_i32x4_u multiply i32 lanes (0,1) or (2,3) of two vectors, so the low and
 * high halves of both lanes' u64s are gathered with one two-input shuffle each (shufps on x64): X = [a0 a2 b0 b2],
 * Y = [a1 a3 b1 b3]; extmul_low(X, Y) = [a0·a1, a2·a3] for lane j, extmul_high(X, Y) = [b0·b1, b2·b3] for j+1.
 */
function accumulatePair(j: number, data: number, dataOffset: number, secret: number[], secretOffset: number): number[] {
  return [
    ...op.localGet(data), ...v128Load(dataOffset), ...op.localTee(DATA_A),
    ...op.localGet(SUM + j), ...i64x2Add, ...op.localSet(SUM + j),
    ...op.localGet(data), ...v128Load(dataOffset + 16), ...op.localTee(DATA_B),
    ...op.localGet(SUM + j + 1), ...i64x2Add, ...op.localSet(SUM + j + 1),
    ...op.localGet(DATA_A), ...secret, ...v128Load(SECRET_AT + secretOffset), ...v128Xor, ...op.localSet(KEY_A),
    ...op.localGet(DATA_B), ...secret, ...v128Load(SECRET_AT + secretOffset + 16), ...v128Xor, ...op.localSet(KEY_B),
    ...op.localGet(KEY_A), ...op.localGet(KEY_B), ...shuffle(EVEN_WORDS), ...op.localSet(DATA_A),
    ...op.localGet(KEY_A), ...op.localGet(KEY_B), ...shuffle(ODD_WORDS), ...op.localSet(DATA_B),
    ...op.localGet(ACC + j), ...op.localGet(DATA_A), ...op.localGet(DATA_B), ...i64x2ExtmulLowI32x4U, ...i64x2Add, ...op.localSet(ACC + j),
    ...op.localGet(ACC + j + 1), ...op.localGet(DATA_A), ...op.localGet(DATA_B), ...i64x2ExtmulHighI32x4U, ...i64x2Add, ...op.localSet(ACC + j + 1),
  ];
}

/** One 64-byte stripe at local `data` + dataOffset, keyed by the secret at (the `secret` code's value) + secretOffset. */
function accumulateStripe(data: number, dataOffset: number, secret: number[], secretOffset: number): number[] {
  return [...accumulatePair(0, data, dataOffset, secret, secretOffset), ...accumulatePair(2, data, dataOffset + 32, secret, secretOffset + 32)];
}

/**
 * `count` stripes from the data pointer (advanced by 64 each), the secret moving by 8 from offset 0: a loop, not
 * unrolled. Fully unrolled straight-line code let TurboFan hoist the secret loads and interleave stripes until it
 * spilled most vectors to the stack (measured: ~2,600 spill moves per block, slower than the loop).
 */
function stripeLoop(count: number): number[] {
  return [
    ...op.i32Const(0), ...op.localSet(SP),
    ...op.loop,
    ...accumulateStripe(DP, 0, op.localGet(SP), 0),
    ...op.localGet(DP), ...op.i32Const(64), ...op.i32Add, ...op.localSet(DP),
    ...op.localGet(SP), ...op.i32Const(8), ...op.i32Add, ...op.localTee(SP),
    ...op.i32Const(count * 8), ...op.i32LtU, ...op.brIf(0),
    ...op.end,
  ];
}

/** acc[j] += swap64(sum[j]) (the data half of XXH3's accumulate, for every stripe since the last fold); sum = 0. */
function foldSums(): number[] {
  const code: number[] = [];
  for (let j = 0; j < 4; j++) {
    code.push(
      ...op.localGet(ACC + j), ...op.localGet(SUM + j), ...op.localGet(SUM + j), ...shuffle(SWAP_HALVES), ...i64x2Add, ...op.localSet(ACC + j),
      ...v128Const(0n, 0n), ...op.localSet(SUM + j),
    );
  }
  return code;
}

/** acc ^= acc >> 47; acc ^= secret[128..]; acc *= PRIME32_1. */
function scramble(): number[] {
  const code: number[] = [];
  for (let j = 0; j < 4; j++) {
    code.push(
      ...op.localGet(ACC + j), ...op.localGet(ACC + j), ...op.i32Const(47), ...i64x2ShrU, ...v128Xor,
      ...op.i32Const(SECRET_AT), ...v128Load(128 + 16 * j), ...v128Xor,
      ...v128Const(PRIME32_1, PRIME32_1), ...i64x2Mul,
      ...op.localSet(ACC + j),
    );
  }
  return code;
}

/** r = start + Σ mulfold(acc[2i] ^ secret[so+16i], acc[2i+1] ^ secret[so+16i+8]); then the XXH3 avalanche. */
function mergeAccs(secretOffset: number, start: bigint, into: number): number[] {
  const code: number[] = [...op.i64Const(start), ...op.localSet(R)];
  for (let i = 0; i < 4; i++) {
    code.push(
      ...op.localGet(R),
      ...op.i32Const(SCRATCH_AT), ...op.i64Load(16 * i), ...op.i32Const(SECRET_AT), ...op.i64Load(secretOffset + 16 * i), ...op.i64Xor,
      ...op.i32Const(SCRATCH_AT), ...op.i64Load(16 * i + 8), ...op.i32Const(SECRET_AT), ...op.i64Load(secretOffset + 16 * i + 8), ...op.i64Xor,
      ...op.call(0), ...op.i64Add, ...op.localSet(R),
    );
  }
  code.push(
    ...op.localGet(R), ...op.localGet(R), ...op.i64Const(37n), ...op.i64ShrU, ...op.i64Xor,
    ...op.i64Const(PRIME_MX1), ...op.i64Mul, ...op.localTee(R),
    ...op.localGet(R), ...op.i64Const(32n), ...op.i64ShrU, ...op.i64Xor, ...op.localSet(into),
  );
  return code;
}

/** The hash of `blockBytes` at P: (blockBytes / 1024 − 1) full XXH3 blocks, then 15 stripes and the last stripe. */
function hashOneBlock(blockBytes: number): number[] {
  const code: number[] = [];
  const init: [bigint, bigint][] = [[PRIME32_3, PRIME64_1], [PRIME64_2, PRIME64_3], [PRIME64_4, PRIME32_2], [PRIME64_5, PRIME32_1]];
  init.forEach(([low, high], j) => code.push(...v128Const(low, high), ...op.localSet(ACC + j), ...v128Const(0n, 0n), ...op.localSet(SUM + j)));
  code.push(...op.localGet(P), ...op.localSet(DP));
  for (let block = 0; block < blockBytes / 1024 - 1; block++) code.push(...stripeLoop(16), ...foldSums(), ...scramble());
  code.push(...stripeLoop(15));
  code.push(...accumulateStripe(P, blockBytes - 64, op.i32Const(0), 192 - 64 - 7));
  code.push(...foldSums());
  for (let j = 0; j < 4; j++) code.push(...op.i32Const(SCRATCH_AT), ...op.localGet(ACC + j), ...v128Store(16 * j));
  code.push(...mergeAccs(11, (BigInt(blockBytes) * PRIME64_1) & MASK64, LOW));
  code.push(...mergeAccs(192 - 64 - 11, ~(BigInt(blockBytes) * PRIME64_2) & MASK64, HIGH));
  // Canonical form: high64 then low64, each big-endian = the 16 little-endian bytes reversed.
  code.push(
    ...op.localGet(K), ...op.i32Const(16), ...op.i32Mul, ...op.localGet(2), ...op.i32Add,
    ...op.localGet(LOW), ...i64x2Splat, ...op.localGet(HIGH), ...i64x2ReplaceLane(1),
    ...op.localGet(LOW), ...i64x2Splat, ...op.localGet(HIGH), ...i64x2ReplaceLane(1),
    ...shuffle(REVERSE), ...v128Store(0),
  );
  return code;
}

/** hash_blocks(input, count, output): for k < count, hash blockBytes at input + blockBytes·k into output + 16k. */
function hashBlocksBody(blockBytes: number): number[] {
  return [
    ...op.block, ...op.loop,
    ...op.localGet(K), ...op.localGet(1), ...op.i32GeU, ...op.brIf(1),
    ...op.localGet(K), ...op.i32Const(blockBytes), ...op.i32Mul, ...op.localGet(0), ...op.i32Add, ...op.localSet(P),
    ...hashOneBlock(blockBytes),
    ...op.localGet(K), ...op.i32Const(1), ...op.i32Add, ...op.localSet(K),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
}

/** mulfold(a, b): the low and high halves of the 128-bit product a × b, xored (XXH3_mul128_fold64). */
function mulfoldBody(): number[] {
  const M32 = 0xffffffffn;
  const [A, B, LL, HL, LH, HH, CROSS] = [0, 1, 2, 3, 4, 5, 6];
  const lowOf = (i: number) => [...op.localGet(i), ...op.i64Const(M32), ...op.i64And];
  const highOf = (i: number) => [...op.localGet(i), ...op.i64Const(32n), ...op.i64ShrU];
  return [
    ...lowOf(A), ...lowOf(B), ...op.i64Mul, ...op.localSet(LL),
    ...highOf(A), ...lowOf(B), ...op.i64Mul, ...op.localSet(HL),
    ...lowOf(A), ...highOf(B), ...op.i64Mul, ...op.localSet(LH),
    ...highOf(A), ...highOf(B), ...op.i64Mul, ...op.localSet(HH),
    // cross = (ll >> 32) + (hl & M32) + lh
    ...highOf(LL), ...lowOf(HL), ...op.i64Add, ...op.localGet(LH), ...op.i64Add, ...op.localSet(CROSS),
    // lower = (cross << 32) | (ll & M32); upper = (hl >> 32) + (cross >> 32) + hh; result = lower ^ upper
    ...op.localGet(CROSS), ...op.i64Const(32n), ...op.i64Shl, ...lowOf(LL), ...op.i64Or,
    ...highOf(HL), ...highOf(CROSS), ...op.i64Add, ...op.localGet(HH), ...op.i64Add,
    ...op.i64Xor,
  ];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function functionBody(locals: [number, number][], body: number[]): number[] {
  const content = [...vector(locals.map(([count, type]) => [...uleb(count), type])), ...body, ...op.end];
  return [...uleb(content.length), ...content];
}

function assemble(blockBytes: number): Uint8Array {
  const name = (text: string) => [...uleb(text.length), ...Buffer.from(text, 'utf8')];
  const types = section(1, vector([[0x60, 2, I64, I64, 1, I64], [0x60, 3, I32, I32, I32, 0]]));
  const functions = section(3, vector([[0], [1]]));
  const memory = section(5, vector([[0x00, ...uleb(MEMORY_PAGES)]]));
  const exports = section(7, vector([[...name('memory'), 0x02, 0], [...name('hash_blocks'), 0x00, 1]]));
  const code = section(10, vector([
    functionBody([[5, I64]], mulfoldBody()),
    functionBody([[4, I32], [12, V128], [3, I64]], hashBlocksBody(blockBytes)),
  ]));
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...functions, ...memory, ...exports, ...code]);
}

// ---------------------------------------------------------------------------------------------------------------

export interface Xxh3BlockHasher {
  /** Writes the canonical XXH3-128 of `count` blocks (4096 bytes, or the size the hasher was built for) of `data` (from `dataOffset`) to `out` (from `outOffset`). */
  hashBlocks(data: Uint8Array, dataOffset: number, count: number, out: Uint8Array, outOffset: number): void;
}

/** The WebAssembly hasher of `blockBytes` blocks, or null when this runtime has no WebAssembly SIMD. */
export function createWasmBlockHasher(blockBytes: (typeof WASM_BLOCK_SIZES)[number] = BLOCK): Xxh3BlockHasher | null {
  if (!WASM_BLOCK_SIZES.includes(blockBytes)) throw new RangeError(`no XXH3 block hasher for ${blockBytes}-byte blocks`);
  const perCall = (WASM_BLOCKS_PER_CALL * BLOCK) / blockBytes;
  let instance: WebAssembly.Instance;
  try {
    const bytes = assemble(blockBytes);
    if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) return null;
    instance = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {});
  } catch {
    return null;
  }
  const memory = instance.exports.memory as WebAssembly.Memory;
  const hash = instance.exports.hash_blocks as (input: number, count: number, output: number) => void;
  // The memory never grows, so these views stay valid. Buffer.copy moves bytes without creating a view (a Buffer
  // subarray costs more than hashing a small block).
  const heap = Buffer.from(memory.buffer);
  heap.set(SECRET, SECRET_AT);
  return {
    hashBlocks(data, dataOffset, count, out, outOffset) {
      let done = 0;
      while (done < count) {
        const n = Math.min(count - done, perCall);
        const from = dataOffset + done * blockBytes;
        if (Buffer.isBuffer(data)) data.copy(heap, INPUT_AT, from, from + n * blockBytes);
        else heap.set(data.subarray(from, from + n * blockBytes), INPUT_AT);
        hash(INPUT_AT, n, OUTPUT_AT);
        const at = outOffset + done * 16;
        if (n <= 4) for (let i = 0; i < n * 16; i++) out[at + i] = heap[OUTPUT_AT + i]!;
        else heap.copy(out, at, OUTPUT_AT, OUTPUT_AT + n * 16);
        done += n;
      }
    },
  };
}
