// Builds the native addon with node-gyp. If it cannot be built, installation still succeeds and
// Plinth runs every kernel on the `ref` backend.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const candidates = [];
try {
  candidates.push([process.execPath, [require.resolve('node-gyp/bin/node-gyp.js'), 'rebuild']]);
} catch {
  // not installed as a package; fall back to the copy bundled with npm, then to PATH
}
if (process.env.npm_config_node_gyp) candidates.push([process.execPath, [process.env.npm_config_node_gyp, 'rebuild']]);
const npmGyp = path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
if (existsSync(npmGyp)) candidates.push([process.execPath, [npmGyp, 'rebuild']]);
candidates.push(['node-gyp', ['rebuild']]);

const verbose = process.env.PLINTH_BUILD_VERBOSE === '1';
let built = false;
for (const [cmd, args] of candidates) {
  const r = spawnSync(cmd, args, { stdio: verbose ? 'inherit' : 'pipe', encoding: 'utf8' });
  if (r.status === 0) { built = true; break; }
  if (verbose && r.error) console.error(r.error.message);
  if (r.status !== null && !r.error) break; // the tool ran and the build failed: do not retry with another copy
}
if (!built) {
  console.log('plinth: the native addon could not be built (PLINTH_BUILD_VERBOSE=1 shows why); the ref backend (plain TypeScript) will be used.');
}
