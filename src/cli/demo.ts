// `plinth demo`: an end-to-end autograd run — a two-layer MLP learns to classify points of three
// interleaved spirals with AdamW; the loss and accuracy are printed as they improve.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import * as pl from '../index.js';

interface DemoOptions {
  steps: string;
  hidden: string;
  seed: string;
  json?: boolean;
}

/** Three interleaved spirals: n points per class, (x, y) inputs and class labels. */
function spirals(n: number, classes: number): { x: pl.Tensor; y: pl.Tensor } {
  const x = new Float32Array(n * classes * 2);
  const y = new Int32Array(n * classes);
  const noise = pl.randn([n * classes * 2], { std: 0.2 }).toFloat32Array();
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < n; i++) {
      const r = i / n;
      const t = (c * 4 + 4 * r) + noise[2 * (c * n + i)];
      x[2 * (c * n + i)] = r * Math.sin(t);
      x[2 * (c * n + i) + 1] = r * Math.cos(t);
      y[c * n + i] = c;
    }
  }
  return { x: pl.tensor(x, { shape: [n * classes, 2] }), y: pl.tensor(y) };
}

export function runDemo(options: { steps: number; hidden: number; seed: number; json: boolean }): { loss: number; accuracy: number } {
  pl.manualSeed(options.seed);
  const { x, y } = spirals(200, 3);
  const H = options.hidden;
  const w1 = pl.randn([2, H], { std: Math.sqrt(2 / 2) }).requiresGrad_();
  const b1 = pl.zeros([H]).requiresGrad_();
  const w2 = pl.randn([H, 3], { std: Math.sqrt(1 / H) }).requiresGrad_();
  const b2 = pl.zeros([3]).requiresGrad_();
  const opt = new pl.AdamW([{ params: [w1, w2], weightDecay: 1e-4 }, { params: [b1, b2], weightDecay: 0 }], { lr: 0.02 });
  const forward = () => pl.matmul(pl.matmul(x, w1).add(b1).relu(), w2).add(b2);

  const log = !options.json && !process.stdout.isTTY;
  const bar = options.json || log ? null : new cliProgress.SingleBar({ format: 'training [{bar}] {value}/{total} steps | loss {loss}', hideCursor: true }, cliProgress.Presets.shades_classic);
  bar?.start(options.steps, 0, { loss: '-' });
  let loss = NaN;
  const reportEvery = Math.max(1, Math.floor(options.steps / 10));
  for (let step = 1; step <= options.steps; step++) {
    opt.zeroGrad();
    const l = pl.crossEntropy(forward(), y);
    l.backward();
    opt.step();
    loss = l.item();
    bar?.update(step, { loss: loss.toFixed(4) });
    if (options.json && step % reportEvery === 0) console.log(JSON.stringify({ step, loss }));
    if (log && step % reportEvery === 0) console.log(`step ${step}/${options.steps}  loss ${loss.toFixed(4)}`);
  }
  bar?.stop();
  const accuracy = pl.noGrad(() => {
    const pred = pl.argmax(forward(), 1).data() as Int32Array;
    const labels = y.data() as Int32Array;
    let ok = 0;
    for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) ok++;
    return ok / labels.length;
  });
  return { loss, accuracy };
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo', { isDefault: false })
    .description('fit a two-layer MLP on three interleaved spirals with AdamW (an end-to-end autograd check)')
    .option('--steps <n>', 'training steps', '300')
    .option('--hidden <n>', 'hidden units', '64')
    .option('--seed <n>', 'random seed', '0')
    .option('--json', 'machine-readable output')
    .action((o: DemoOptions) => {
      const t0 = performance.now();
      const r = runDemo({ steps: Number(o.steps), hidden: Number(o.hidden), seed: Number(o.seed), json: !!o.json });
      const seconds = (performance.now() - t0) / 1000;
      const summary = { backend: pl.getBackend(), steps: Number(o.steps), loss: r.loss, accuracy: r.accuracy, seconds };
      if (o.json) console.log(JSON.stringify(summary));
      else console.log(`demo: ${summary.steps} steps on ${summary.backend} in ${seconds.toFixed(2)} s — final loss ${r.loss.toFixed(4)}, accuracy ${(r.accuracy * 100).toFixed(1)}%`);
    });
}
