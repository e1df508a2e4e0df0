// LoRA (Hu et al., 2021): a frozen linear layer W0 plus a trainable low-rank update B·A, so adapting
// a model trains r·(in + out) numbers per layer instead of in·out. Layers are wrapped at
// construction through nn's LinearFactory hook; adapters are added by target name afterwards (so a
// base checkpoint loads into the wrapped model by the usual strict lookup), and several named
// adapters can live on one base with one of them active. Initialisation, scaling, names and target
// matching follow Hugging Face PEFT, so adapters move between the two unchanged.
import { ArgumentError, PlinthError } from '../errors.js';
import { Conv1D, Linear, type LinearFactory, type LinearLayer, type LinearOptions, Module, plainLinear } from '../nn/index.js';
import * as pl from '../tensor/index.js';
import { isGradEnabled, noGrad, type Tensor } from '../tensor/index.js';

export class AdapterError extends PlinthError {}

/** What to adapt and how (PEFT's LoraConfig, in camelCase). */
export interface LoraConfig {
  /** Rank r of the update B·A. */
  r: number;
  /** α: the update is scaled by α/r (α/√r with useRslora). */
  alpha: number;
  /** Dropout probability on the adapter's input. */
  dropout?: number;
  /** Module names (a module matches when its full name equals one or ends with '.' + one), a
   *  regular expression over full names (a string, matched whole), or 'all-linear' (every linear
   *  layer except the output head). */
  targetModules: string[] | string;
  /** Rank-stabilised LoRA (Kalajdzievski, 2023): scale by α/√r, which keeps high ranks learning. */
  useRslora?: boolean;
}

/** The linear layer names that hold a model's output head, left out by 'all-linear' as PEFT does. */
const OUTPUT_HEADS = new Set(['lm_head']);

/** PEFT's matching rule: a regex (string) must match the whole name; a list matches by suffix. */
export function matchesTarget(config: Pick<LoraConfig, 'targetModules'>, name: string): boolean {
  const t = config.targetModules;
  if (t === 'all-linear') return !OUTPUT_HEADS.has(name.slice(name.lastIndexOf('.') + 1));
  if (typeof t === 'string') return new RegExp(`^(?:${t})$`).test(name);
  return t.some((k) => name === k || name.endsWith(`.${k}`));
}

/** One adapter of a layer: A (r, in) and B (out, r) with its scale and dropout. */
export interface LoraAdapter {
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropout: number;
  readonly A: Tensor;
  readonly B: Tensor;
}

/** A base that stores its weight in another form (quantized) and can give it back as f32 (out, in),
 *  row-major. */
interface Dequantizable extends LinearLayer {
  dequantize(): Float32Array;
  readonly bias?: Tensor | null;
}

function isDequantizable(m: LinearLayer): m is Dequantizable {
  return typeof (m as unknown as Partial<Dequantizable>).dequantize === 'function';
}

export function validateLoraConfig(config: LoraConfig): void {
  if (!(Number.isInteger(config.r) && config.r > 0)) throw new ArgumentError(`LoRA rank r must be a positive integer, got ${config.r}`);
  if (!(Number.isFinite(config.alpha) && config.alpha > 0)) throw new ArgumentError(`LoRA alpha must be a positive number, got ${config.alpha}`);
  const p = config.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new ArgumentError(`LoRA dropout must be in [0, 1), got ${p}`);
  const t = config.targetModules;
  if (Array.isArray(t) ? t.length === 0 || t.some((k) => typeof k !== 'string' || k === '') : typeof t !== 'string' || t === '') {
    throw new ArgumentError(`LoRA targetModules must be module names, a regular expression or 'all-linear', got ${JSON.stringify(t)}`);
  }
  if (typeof t === 'string' && t !== 'all-linear') {
    try {
      new RegExp(t);
    } catch (e) {
      throw new ArgumentError(`LoRA targetModules '${t}' is not a valid regular expression: ${(e as Error).message}`);
    }
  }
}

/** Token rows [start, end) of a packed batch that apply `adapter` (null: the base alone). */
export interface AdapterSegment {
  start: number;
  end: number;
  adapter: string | null;
}

export class LoRALinear extends Module implements LinearLayer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** GPT-2's Conv1D stores W as (in, out): PEFT's fan_in_fan_out, which only changes merging. */
  readonly fanInFanOut: boolean;
  readonly adapters = new Map<string, LoraAdapter>();
  private baseLayer: LinearLayer;
  private activeName: string | null = null;
  private mergedName: string | null = null;
  private segments: readonly AdapterSegment[] | null = null;

  constructor(base: LinearLayer, options: LinearOptions) {
    super(options);
    this.baseLayer = this.add(base);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    this.fanInFanOut = base instanceof Conv1D;
  }

  /** The wrapped layer (a float layer again after merging a quantized one). */
  get base(): LinearLayer {
    return this.baseLayer;
  }

  /** The adapter applied in forward (null: the base alone). */
  get active(): string | null {
    return this.activeName;
  }

  /** The adapter folded into the base weight, if any. */
  get merged(): string | null {
    return this.mergedName;
  }

  /** Adds an adapter: A Kaiming-uniform (a = √5, as PEFT and nn.Linear initialise it, i.e.
   *  U(−1/√in, 1/√in)), B zero, so the adapted layer starts equal to the base. */
  addAdapter(name: string, config: Pick<LoraConfig, 'r' | 'alpha' | 'dropout' | 'useRslora'>): LoraAdapter {
    if (this.adapters.has(name)) throw new AdapterError(`${this.prefix} already has an adapter named '${name}'`);
    const { r, alpha } = config;
    if (!(Number.isInteger(r) && r > 0)) throw new ArgumentError(`LoRA rank r must be a positive integer, got ${r}`);
    const bound = 1 / Math.sqrt(this.inFeatures);
    const adapter: LoraAdapter = {
      r, alpha, dropout: config.dropout ?? 0,
      scaling: config.useRslora ? alpha / Math.sqrt(r) : alpha / r,
      A: this.param(`lora_A.${name}.weight`, pl.uniform([r, this.inFeatures], -bound, bound)),
      B: this.param(`lora_B.${name}.weight`, pl.zeros([this.outFeatures, r])),
    };
    this.adapters.set(name, adapter);
    return adapter;
  }

  /** Chooses the adapter forward applies (null: none). */
  setAdapter(name: string | null): void {
    if (name !== null && !this.adapters.has(name)) throw new AdapterError(`${this.prefix} has no adapter '${name}' (it has ${[...this.adapters.keys()].join(', ') || 'none'})`);
    if (this.mergedName !== null && name !== this.mergedName) {
      throw new AdapterError(`${this.prefix} has adapter '${this.mergedName}' merged into its weight: unmerge it before switching adapters`);
    }
    this.activeName = name;
  }

  /** Per-token adapters for a packed batch of several requests (serving many adapters on one
   *  base at once); null returns to the active adapter. The segments must tile the rows in order. */
  setSegments(segments: readonly AdapterSegment[] | null): void {
    if (segments && this.mergedName !== null) throw new AdapterError(`${this.prefix} has adapter '${this.mergedName}' merged: unmerge it to switch adapters per request`);
    this.segments = segments;
  }

  // h = W0·x + (α/r)·B·A·x
  forward(x: Tensor): Tensor {
    const h = this.baseLayer.forward(x);
    if (this.segments) return this.forwardSegments(x, h, this.segments);
    const a = this.activeName === null || this.mergedName !== null ? undefined : this.adapters.get(this.activeName);
    if (!a) return h;
    // The scale is applied on the r-wide intermediate, the cheapest place for it.
    const u = pl.mul(pl.linear(pl.dropout(x, a.dropout, this.training), a.A), a.scaling); // (…, r)
    return pl.add(h, pl.linear(u, a.B));
  }

  private forwardSegments(x: Tensor, h: Tensor, segments: readonly AdapterSegment[]): Tensor {
    const xf = x.reshape(-1, this.inFeatures); // (M, in): the packed tokens
    const hf = h.reshape(-1, this.outFeatures);
    const M = xf.shape[0];
    // Without gradients (serving), each update is added into its rows of the base output in place,
    // so the rows are neither copied nor concatenated again.
    const inPlace = !isGradEnabled();
    let at = 0;
    const parts = segments.map((s) => {
      if (s.start !== at || s.end <= s.start || s.end > M) throw new AdapterError(`${this.prefix}: adapter segments must tile the ${M} rows in order; got [${s.start}, ${s.end}) after row ${at}`);
      at = s.end;
      const hs = hf.slice(0, s.start, s.end);
      // No adapter, or one that does not target this layer: the base alone.
      const a = s.adapter === null ? undefined : this.adapters.get(s.adapter);
      if (!a) return hs;
      const u = pl.mul(pl.linear(pl.dropout(xf.slice(0, s.start, s.end), a.dropout, this.training), a.A), a.scaling);
      if (!inPlace) return pl.add(hs, pl.linear(u, a.B));
      pl.addInPlace(hs, pl.linear(u, a.B));
      return hs;
    });
    if (at !== M) throw new AdapterError(`${this.prefix}: adapter segments cover ${at} of ${M} rows`);
    return inPlace ? h : pl.cat(parts, 0).reshape([...h.shape]);
  }

  /** (α/r)·B·A as the base stores its weight: (out, in), or (in, out) for Conv1D. */
  deltaWeight(name: string): Tensor {
    const a = this.adapters.get(name);
    if (!a) throw new AdapterError(`${this.prefix} has no adapter '${name}'`);
    return noGrad(() => {
      const d = pl.mul(pl.matmul(a.B, a.A), a.scaling);
      return this.fanInFanOut ? d.T.contiguous() : d;
    });
  }

  /** W = W0 + (α/r)·B·A: forward then costs the base alone. A quantized base is dequantized and
   *  replaced by a float layer holding the sum (re-quantizing would lose the update). */
  merge(name = this.activeName): void {
    if (name === null) return;
    if (this.mergedName !== null) {
      if (this.mergedName === name) return;
      throw new AdapterError(`${this.prefix} already has adapter '${this.mergedName}' merged: unmerge it first`);
    }
    const delta = this.deltaWeight(name);
    const base = this.baseLayer;
    noGrad(() => {
      if (base instanceof Linear || base instanceof Conv1D) {
        pl.addInPlace(base.weight, delta);
      } else if (isDequantizable(base)) {
        const float = new Linear(this.inFeatures, this.outFeatures, { prefix: base.prefix, bias: !!base.bias, std: 0 });
        const w = float.weight.storage as Float32Array;
        w.set(base.dequantize());
        pl.addInPlace(float.weight, delta);
        if (base.bias && float.bias) (float.bias.storage as Float32Array).set(base.bias.toFloat32Array());
        float.train(base.training);
        for (const p of float.parameters()) p.requiresGrad_(false);
        this.replaceChild(base, float);
        this.baseLayer = float;
      } else {
        throw new AdapterError(`${this.prefix}: cannot merge into a ${base.constructor.name} (its weight is neither float nor dequantizable)`);
      }
    });
    this.mergedName = name;
    this.activeName = name;
  }

  /** W0 = W − (α/r)·B·A (exact up to float rounding). A formerly quantized base stays float. */
  unmerge(): void {
    const name = this.mergedName;
    if (name === null) return;
    const base = this.baseLayer as Linear | Conv1D;
    const delta = this.deltaWeight(name);
    noGrad(() => pl.addInPlace(base.weight, pl.mul(delta, -1)));
    this.mergedName = null;
  }
}

/** A factory that builds every linear layer with `base` (plain float by default) and wraps it in
 *  a LoRALinear, ready for adapters. Without an active adapter the wrapper costs one call. */
export function loraFactory(base: LinearFactory = plainLinear): LinearFactory {
  return (inFeatures: number, outFeatures: number, options: LinearOptions) =>
    new LoRALinear(base(inFeatures, outFeatures, options), options);
}

/** Every LoRA layer of a model, in module order. */
export function loraLayers(model: Module): LoRALinear[] {
  return model.modules().filter((m): m is LoRALinear => m instanceof LoRALinear);
}

function wrappedLayers(model: Module): LoRALinear[] {
  const layers = loraLayers(model);
  if (layers.length === 0) {
    throw new AdapterError('the model has no LoRA-wrapped linear layers: build or load it with linearFactory: loraFactory(...)');
  }
  return layers;
}

/**
 * Adds adapter `name` to every wrapped layer that `config` targets, makes it the active adapter
 * and the only trainable parameters of the model (the base and other adapters are frozen).
 * Returns the adapted layers.
 */
export function addAdapter(model: Module, config: LoraConfig, name = 'default'): LoRALinear[] {
  validateLoraConfig(config);
  const layers = wrappedLayers(model);
  const targets = layers.filter((l) => matchesTarget(config, l.prefix));
  if (targets.length === 0) {
    const some = layers.slice(0, 4).map((l) => l.prefix);
    throw new ArgumentError(`LoRA target ${JSON.stringify(config.targetModules)} matches no linear layer of the model (its layers are named like ${some.join(', ')}, …)`);
  }
  if (Array.isArray(config.targetModules)) {
    for (const k of config.targetModules) {
      if (!targets.some((l) => l.prefix === k || l.prefix.endsWith(`.${k}`))) throw new ArgumentError(`LoRA target '${k}' matches no linear layer of the model`);
    }
  }
  for (const l of targets) l.addAdapter(name, config);
  setAdapter(model, name);
  return targets;
}

/** Makes `name` the adapter every LoRA layer applies and trains (null: the base alone, nothing
 *  trainable). Layers without that adapter compute their base. */
export function setAdapter(model: Module, name: string | null): void {
  const layers = wrappedLayers(model);
  if (name !== null && !layers.some((l) => l.adapters.has(name))) {
    const names = [...new Set(layers.flatMap((l) => [...l.adapters.keys()]))];
    throw new AdapterError(`the model has no adapter '${name}' (it has ${names.join(', ') || 'none'})`);
  }
  for (const l of layers) l.setAdapter(name !== null && l.adapters.has(name) ? name : null);
  markOnlyAdapterTrainable(model, name);
}

/** requiresGrad on the A and B of adapter `name` only (PEFT's mark_only_lora_as_trainable). */
export function markOnlyAdapterTrainable(model: Module, name: string | null): void {
  const trainable = new Set<Tensor>();
  if (name !== null) {
    for (const l of loraLayers(model)) {
      const a = l.adapters.get(name);
      if (a) trainable.add(a.A).add(a.B);
    }
  }
  for (const p of model.parameters()) p.requiresGrad = trainable.has(p);
}

/** Runs fn with every adapter switched off (the base model: DPO's and PPO's reference), then
 *  restores the active adapter. */
export function withoutAdapters<T>(model: Module, fn: () => T): T {
  const layers = loraLayers(model);
  const saved = layers.map((l) => l.active);
  for (const l of layers) if (l.merged === null) l.setAdapter(null);
  try {
    return fn();
  } finally {
    layers.forEach((l, i) => {
      if (l.merged === null) l.setAdapter(saved[i]);
    });
  }
}

/**
 * Assigns adapters to token rows of the next forward calls (a packed batch holding requests for
 * different adapters: row r of the flattened (B·T) tokens uses the adapter of its segment); null
 * goes back to the active adapter. Layers that lack a named adapter compute their base for it,
 * but a name no layer has is an error.
 */
export function setAdapterSegments(model: Module, segments: readonly AdapterSegment[] | null): void {
  const layers = wrappedLayers(model);
  if (segments) {
    const known = new Set(layers.flatMap((l) => [...l.adapters.keys()]));
    for (const s of segments) if (s.adapter !== null && !known.has(s.adapter)) throw new AdapterError(`the model has no adapter '${s.adapter}' (it has ${[...known].join(', ') || 'none'})`);
  }
  for (const l of layers) l.setSegments(segments);
}

/** Folds the active adapter into the base weights of every layer. */
export function mergeAdapter(model: Module): void {
  for (const l of wrappedLayers(model)) l.merge();
}

export function unmergeAdapter(model: Module): void {
  for (const l of wrappedLayers(model)) l.unmerge();
}

/** The names of every adapter on the model. */
export function adapterNames(model: Module): string[] {
  return [...new Set(loraLayers(model).flatMap((l) => [...l.adapters.keys()]))];
}

/** The parameters of the base model alone (no adapter tensors), by their Hugging Face names. */
export function baseStateDict(model: Module): Map<string, Tensor> {
  const adapterTensors = new Set<Tensor>(loraLayers(model).flatMap((l) => [...l.adapters.values()].flatMap((a) => [a.A, a.B])));
  return new Map(model.namedParameters().filter(([, t]) => !adapterTensors.has(t)));
}
