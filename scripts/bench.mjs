// `npm run bench -- NAME [args...]`: runs the compiled benchmark dist/bench/NAME.js.
// Without a NAME, or with an unknown one, lists the benchmarks that exist.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'dist', 'bench');
// common.js is the shared machinery, not a benchmark
const available = existsSync(dir)
  ? readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'common.js').map((f) => f.slice(0, -3)).sort()
  : [];

const [name, ...rest] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  if (name) console.error(`unknown benchmark '${name}'`);
  console.error(`usage: npm run bench -- NAME   (available: ${available.join(', ') || 'none; run tsc -p . first'})`);
  process.exit(name ? 1 : 0);
}
const r = spawnSync(process.execPath, [path.join(dir, `${name}.js`), ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
