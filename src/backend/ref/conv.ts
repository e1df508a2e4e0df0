// im2col and its adjoint col2im, for one image, as the convolution lowering to matmul.
import type { FloatArray } from '../backend.js';

/**
 * x (C,H,W) → cols (C·kh·kw, outH·outW): cols[(c·kh + i)·kw + j, oy·outW + ox] is the input pixel
 * (oy·stride − pad + i, ox·stride − pad + j) of channel c, or 0 in the padding.
 */
export function im2col(x: FloatArray, cols: FloatArray, C: number, H: number, W: number, kh: number, kw: number,
  stride: number, pad: number, outH: number, outW: number): void {
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const row = (c * kh + i) * kw + j;
        for (let oy = 0; oy < outH; oy++) {
          for (let ox = 0; ox < outW; ox++) {
            const y = oy * stride - pad + i;
            const xx = ox * stride - pad + j;
            const inside = y >= 0 && y < H && xx >= 0 && xx < W;
            // cols is (C·kh·kw, outH·outW), x is (C,H,W)
            cols[(row * outH + oy) * outW + ox] = inside ? x[(c * H + y) * W + xx] : 0;
          }
        }
      }
    }
  }
}

/** The adjoint of im2col: every column entry is added back to the pixel it was read from. */
export function col2im(cols: FloatArray, dx: FloatArray, C: number, H: number, W: number, kh: number, kw: number,
  stride: number, pad: number, outH: number, outW: number): void {
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const row = (c * kh + i) * kw + j;
        for (let oy = 0; oy < outH; oy++) {
          for (let ox = 0; ox < outW; ox++) {
            const y = oy * stride - pad + i;
            const xx = ox * stride - pad + j;
            if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
            // cols is (C·kh·kw, outH·outW), dx is (C,H,W)
            dx[(c * H + y) * W + xx] += cols[(row * outH + oy) * outW + ox];
          }
        }
      }
    }
  }
}
