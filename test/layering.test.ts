// The folder layout is the architecture: a folder of src/ may import only from itself and from the
// folders listed above it in DESIGN.md's layer table. This test parses every import and fails on
// one that reaches down the table.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';

/** The layer table, top to bottom; folders on one row share a rank. */
const LAYERS: string[][] = [
  ['backend'], ['tensor'], ['nn'], ['models'], ['tokenizers'], ['io'], ['data'], ['train'],
  ['peft', 'quant'], ['align'], ['infer'], ['serve'], ['rag'], ['dist'], ['eval'], ['cli'],
];
const RANK = new Map<string, number>(LAYERS.flatMap((row, i) => row.map((f) => [f, i] as [string, number])));
/** Files at the root of src/: errors.ts is shared by every layer; index.ts is the public API. */
const ROOT_SHARED = new Set(['errors.ts']);

const srcDir = path.join(import.meta.dirname, '..', '..', 'src');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The relative import specifiers of a TypeScript source (static, dynamic and re-exports). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;
  for (const m of source.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith('.')) out.push(spec);
  }
  return out;
}

/** The layer folder of a path under src/ ('' for files at the root of src/). */
function folderOf(file: string): string {
  const rel = path.relative(srcDir, file).split(path.sep);
  return rel.length > 1 ? rel[0] : '';
}

export function violations(files: Map<string, string>): string[] {
  const bad: string[] = [];
  for (const [file, source] of files) {
    const from = folderOf(file);
    for (const spec of importsOf(source)) {
      const target = path.resolve(path.dirname(file), spec);
      const to = folderOf(target);
      const rel = path.relative(srcDir, file);
      if (from === to) continue;
      if (to === '') {
        // The package root re-exports every layer, so only the last layer (cli) may import it.
        const shared = ROOT_SHARED.has(path.basename(target).replace(/\.js$/, '.ts'));
        if (!shared && RANK.get(from) !== LAYERS.length - 1) bad.push(`${rel} imports ${spec} (the package root)`);
        continue;
      }
      if (from === '') continue; // the public API re-exports every layer
      const rf = RANK.get(from);
      const rt = RANK.get(to);
      if (rf === undefined) bad.push(`${rel} lives in src/${from}/, which is not in the layer table`);
      else if (rt === undefined) bad.push(`${rel} imports ${spec} from src/${to}/, which is not in the layer table`);
      else if (rt > rf) bad.push(`${rel} (layer ${from}) imports ${spec} from ${to}, which is listed below it`);
    }
  }
  return bad;
}

test('no folder imports from a folder listed below it in the layer table', () => {
  const files = new Map(walk(srcDir).map((f) => [f, readFileSync(f, 'utf8')] as [string, string]));
  assert.ok(files.size > 10, 'found the sources');
  assert.deepEqual(violations(files), []);
});

test('the layering check catches a downward import', () => {
  const files = new Map([
    [path.join(srcDir, 'tensor', 'bad.ts'), "import { Module } from '../nn/module.js';\n"],
    [path.join(srcDir, 'nn', 'ok.ts'), "import { Tensor } from '../tensor/index.js';\nexport * from './x.js';\n"],
    [path.join(srcDir, 'backend', 'worse.ts'), "const m = await import('../cli/main.js');\n"],
    [path.join(srcDir, 'models', 'root.ts'), "import * as pl from '../index.js';\n"],
  ]);
  const v = violations(files);
  assert.equal(v.length, 3, v.join('\n'));
  assert.ok(v.some((s) => s.includes('tensor/bad.ts')));
  assert.ok(v.some((s) => s.includes('backend/worse.ts')));
  assert.ok(v.some((s) => s.includes('models/root.ts')));
});
