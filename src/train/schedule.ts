// Learning-rate schedules.

export interface CosineSchedule {
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  /** Steps of linear warm-up from lr/warmup to lr. */
  warmupSteps: number;
  /** Total steps; the cosine reaches minLr here. */
  totalSteps: number;
  /** Floor of the decay (default lr/10). */
  minLr?: number;
}

/** Linear warm-up, then cosine decay to minLr (nanoGPT's schedule); `step` counts from 0. */
export function cosineLr(s: CosineSchedule, step: number): number {
  const minLr = s.minLr ?? s.lr / 10;
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (step >= s.totalSteps) return minLr;
  const progress = (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps);
  return minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (s.lr - minLr);
}
