// Convolution and resampling for image models: conv2d (im2col + one batched GEMM, hand-written
// backward through col2im), nearest upsampling and average pooling (written in primitives).
import type { FloatArray } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ArgumentError, ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkFloat, fdata } from './common.js';
import { full, zeros } from './creation.js';
import { add } from './elementwise.js';
import { contiguous, expand, reshape } from './movement.js';
import { sum } from './reduce.js';

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
}

/** 2-D cross-correlation (torch.nn.functional.conv2d): x (B, C, H, W), weight (O, C, kh, kw),
 *  bias (O) → (B, O, outH, outW). */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null = null, options: Conv2dOptions = {}): Tensor {
  checkFloat('conv2d', x, weight, ...(bias ? [bias] : []));
  const stride = options.stride ?? 1;
  const pad = options.padding ?? 0;
  if (!Number.isInteger(stride) || stride < 1 || !Number.isInteger(pad) || pad < 0) {
    throw new ArgumentError(`conv2d: stride must be a positive integer and padding a non-negative one, got ${stride} and ${pad}`);
  }
  if (x.ndim !== 4 || weight.ndim !== 4 || weight.shape[1] !== x.shape[1]) {
    throw new ShapeError(`conv2d: input ${formatShape(x.shape)} and weight ${formatShape(weight.shape)} do not fit: expected (B, C, H, W) and (O, C, kh, kw)`);
  }
  const [B, C, H, W] = x.shape;
  const [O, , kh, kw] = weight.shape;
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== O)) throw new ShapeError(`conv2d: bias ${formatShape(bias.shape)} must be (${O})`);
  const outH = Math.floor((H + 2 * pad - kh) / stride) + 1;
  const outW = Math.floor((W + 2 * pad - kw) / stride) + 1;
  if (outH < 1 || outW < 1) throw new ShapeError(`conv2d: kernel ${kh}x${kw} is larger than the padded input ${H + 2 * pad}x${W + 2 * pad}`);
  const CKK = C * kh * kw;
  const L = outH * outW;
  const k = kernels();
  // cols (B, C·kh·kw, L): one im2col per image, then out_b (O, L) = W (O, CKK) · cols_b
  const xd = fdata(x);
  const cols = new (xd.constructor as Float32ArrayConstructor)(B * CKK * L);
  for (let b = 0; b < B; b++) {
    k.im2col(xd.subarray(b * C * H * W), cols.subarray(b * CKK * L), C, H, W, kh, kw, stride, pad, outH, outW);
  }
  const wd = fdata(weight);
  const out = Tensor.empty([B, O, outH, outW], x.dtype);
  k.matmul(wd, cols, out.storage as FloatArray, O, L, CKK, false, false, B, 0, CKK * L, O * L, false);
  if (needsGrad(x, weight)) {
    record(out, 'conv2d', [x, weight], (g) => {
      const gd = fdata(g);
      let dx: Tensor | null = null;
      let dw: Tensor | null = null;
      if (weight.requiresGrad) {
        // dW (O, CKK) = Σ_b dOut_b (O, L) · cols_bᵀ (L, CKK)
        dw = zeros(weight.shape, { dtype: weight.dtype });
        for (let b = 0; b < B; b++) {
          k.matmul(gd.subarray(b * O * L), cols.subarray(b * CKK * L), dw.storage as FloatArray, O, CKK, L, false, true, 1, 0, 0, 0, true);
        }
      }
      if (x.requiresGrad) {
        // dcols_b (CKK, L) = Wᵀ · dOut_b, then col2im back onto the image
        dx = zeros(x.shape, { dtype: x.dtype });
        const dcols = new (xd.constructor as Float32ArrayConstructor)(B * CKK * L);
        k.matmul(wd, gd, dcols, CKK, L, O, true, false, B, 0, O * L, CKK * L, false);
        for (let b = 0; b < B; b++) {
          k.col2im(dcols.subarray(b * CKK * L), (dx.storage as FloatArray).subarray(b * C * H * W), C, H, W, kh, kw, stride, pad, outH, outW);
        }
      }
      return [dx, dw];
    });
  }
  return bias ? add(out, reshape(bias, [1, O, 1, 1])) : out;
}

/** Nearest-neighbour upsampling of (B, C, H, W) by an integer factor. */
export function upsampleNearest(x: Tensor, scale: number): Tensor {
  if (x.ndim !== 4) throw new ShapeError(`upsampleNearest: input must be (B, C, H, W), got ${formatShape(x.shape)}`);
  if (!Number.isInteger(scale) || scale < 1) throw new ArgumentError(`upsampleNearest: scale must be a positive integer, got ${scale}`);
  const [B, C, H, W] = x.shape;
  // (B,C,H,1,W,1) → expand (B,C,H,s,W,s) → (B,C,H·s,W·s)
  const e = expand(reshape(x, [B, C, H, 1, W, 1]), [B, C, H, scale, W, scale]);
  return reshape(contiguous(e), [B, C, H * scale, W * scale]);
}

/** Average pooling over k×k windows (torch avg_pool2d, padding counted in the average). */
export function avgPool2d(x: Tensor, kernelSize: number, stride = kernelSize, padding = 0): Tensor {
  if (x.ndim !== 4) throw new ShapeError(`avgPool2d: input must be (B, C, H, W), got ${formatShape(x.shape)}`);
  const [B, C, H, W] = x.shape;
  if (stride === kernelSize && padding === 0 && H % kernelSize === 0 && W % kernelSize === 0) {
    // Non-overlapping windows: (B,C,H/k,k,W/k,k) averaged over the window dims.
    const r = reshape(x, [B, C, H / kernelSize, kernelSize, W / kernelSize, kernelSize]);
    return sum(r, [3, 5]).mul(1 / (kernelSize * kernelSize));
  }
  // General windows: a depthwise convolution with a constant kernel, one channel at a time.
  const w = full([1, 1, kernelSize, kernelSize], 1 / (kernelSize * kernelSize), x.dtype);
  const y = conv2d(reshape(x, [B * C, 1, H, W]), w, null, { stride, padding });
  return reshape(y, [B, C, y.shape[2], y.shape[3]]);
}
