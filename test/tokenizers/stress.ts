// The stress corpus for tokenizer tests: the hard cases of byte-level BPE, generated from a fixed
// seed so every run tests the same strings.

/** mulberry32: a small deterministic PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAGMENTS = [
  // emoji: single, skin tones, ZWJ families, flags, keycaps, variation selectors
  '🙂', '👍🏽', '👩‍👩‍👧‍👦', '🇫🇷🇯🇵', '1️⃣', '❤️', '🏳️‍🌈', '🤷‍♀️',
  // CJK, kana, hangul, and astral ideographs
  '日本語のテキスト', '中文分词测试', '한국어 문장입니다', '𠀋𡈽𡌛', 'カタカナ',
  // combining marks, decomposed accents, zalgo
  'e\u0301', 'Cafe\u0301 naïve résumé', 'Z̷̡̢̛̖͈̈́a̵̢̛͎͔̓l̸̨̛͈͙̓g̶̢̛͇͎̊o̴̡̧̪͌', 'ﬁ ﬂ Å Å', 'ᾅ ǅ',
  // other scripts
  'Привет, мир!', 'Γειά σου Κόσμε', 'שלום עולם', 'مرحبا بالعالم ٣٤٥', 'नमस्ते दुनिया', 'สวัสดีชาวโลก',
  // numbers of every kind
  '1234567890123', '3.14159265358979', '٠١٢٣٤٥٦٧٨٩', 'Ⅻ ⅷ', '²³¹ ½ ¾', '12,345,678.90', '0x7fffffff',
  // whitespace runs and unusual whitespace
  '    ', '\t\t\t', '\n\n\n', '\r\n\r\n', ' \n \n', '\u00a0\u00a0', '\u3000', '\u2028\u2029', '\u0085', '\ufeff', '\u200b', '\f\v',
  '                                                                ',
  // contractions in all cases
  "don't", "I'LL", "we'Re", "it's", "'S", "they've", "'d", "'m", "''", "'x", "O'Neil", "rock 'n' roll",
  // code
  'function f(x) {\n  return x * 2;\n}\n', 'def f(x):\n    return {"a": [1, 2, 3]}\n', 'for (let i = 0; i < n; i++) a[i] += b[i];',
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); }', '<div class="x">&amp;</div>', 'SELECT * FROM t WHERE a >= 10;',
  // punctuation runs
  '...!!!???', '---===+++', '»«„“”‘’', '/* */ // #', '@user #tag $100 %50 ^_^',
  // special tokens (matched as tokens when allowed)
  '<|endoftext|>', '<|endofprompt|>', '<|fim_prefix|>', '<|im_start|>',
  // ordinary words
  'the', ' quick', ' brown', ' fox', 'Hello', ' World', 'HELLO', 'tokenization', ' supercalifragilistic',
];

function randomCodePoint(r: () => number): string {
  const ranges: [number, number][] = [
    [0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f],
    [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x10000, 0x1ffff], [0x0, 0x1f], [0x2000, 0x206f],
  ];
  const [lo, hi] = ranges[Math.floor(r() * ranges.length)]!;
  const cp = lo + Math.floor(r() * (hi - lo + 1));
  return String.fromCodePoint(cp >= 0xd800 && cp <= 0xdfff ? 0x41 : cp);
}

/** Random bytes decoded as UTF-8 (invalid sequences become U+FFFD). */
function randomBytesText(r: () => number, n: number): string {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return new TextDecoder().decode(b);
}

/**
 * Strings with no lone surrogates (so decode(encode(x)) === x must hold): each fragment alone,
 * random mixes of fragments, random code points, random bytes decoded as UTF-8, long runs.
 */
export function stressCorpus(seed = 1234, mixes = 300): string[] {
  const r = rng(seed);
  const out = [...FRAGMENTS];
  for (let i = 0; i < mixes; i++) {
    let s = '';
    const n = 1 + Math.floor(r() * 12);
    for (let k = 0; k < n; k++) {
      const pick = r();
      if (pick < 0.6) s += FRAGMENTS[Math.floor(r() * FRAGMENTS.length)]!;
      else if (pick < 0.75) for (let j = Math.floor(r() * 8); j >= 0; j--) s += randomCodePoint(r);
      else if (pick < 0.85) s += randomBytesText(r, 1 + Math.floor(r() * 24));
      else if (pick < 0.9) s += ' '.repeat(Math.floor(r() * 40));
      else if (pick < 0.95) s += String(Math.floor(r() * 1e12)).repeat(1 + Math.floor(r() * 3));
      else s += ['\n', '\r\n', '\t', ' ', '\u00a0'][Math.floor(r() * 5)]!.repeat(1 + Math.floor(r() * 6));
    }
    out.push(s);
  }
  // Long pieces take the heap merge path (and are slow in the oracle, whose merge is quadratic).
  out.push('a'.repeat(1200), ' '.repeat(700) + 'x', '9'.repeat(600), '🙂'.repeat(150), randomBytesText(r, 1200), '\n'.repeat(300));
  return out;
}

/** Strings with lone surrogates: encoders see U+FFFD for each (as TextEncoder does). */
export function loneSurrogates(): string[] {
  return ['\ud800', 'a\udc00b', '\ud83d', 'x\ud83d\ud83dy', '\udfff\ud800 ok', '🙂\ud83d'];
}
