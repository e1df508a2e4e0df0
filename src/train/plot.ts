// A loss-curve plot as a self-contained SVG: training loss as a line, validation loss as points.

export interface CurvePoint {
  step: number;
  loss: number;
}

export function lossCurveSvg(train: CurvePoint[], val: CurvePoint[], title = 'loss'): string {
  const W = 640, H = 400, L = 60, R = 20, T = 30, B = 45;
  const all = [...train, ...val].filter((p) => Number.isFinite(p.loss));
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const lo = Math.min(...all.map((p) => p.loss), Infinity);
  const hi = Math.max(...all.map((p) => p.loss), -Infinity);
  const [y0, y1] = Number.isFinite(lo) ? (hi > lo ? [lo, hi] : [lo - 1, lo + 1]) : [0, 1];
  const x = (s: number) => L + ((W - L - R) * s) / maxStep;
  const y = (v: number) => T + ((H - T - B) * (y1 - v)) / (y1 - y0);
  const line = train.filter((p) => Number.isFinite(p.loss)).map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join('');
  const dots = val.filter((p) => Number.isFinite(p.loss)).map((p) => `<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.loss).toFixed(1)}" r="3.5" fill="#d62728"/>`).join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = y0 + f * (y1 - y0);
    const s = Math.round(f * maxStep);
    return `<text x="${L - 6}" y="${y(v).toFixed(1)}" text-anchor="end" dominant-baseline="middle">${v.toFixed(3)}</text>`
      + `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`
      + `<text x="${x(s).toFixed(1)}" y="${H - B + 18}" text-anchor="middle">${s}</text>`;
  }).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`
    + `<rect width="${W}" height="${H}" fill="white"/>${ticks}`
    + `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`
    + `<path d="${line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>${dots}`
    + `<text x="${W / 2}" y="${T - 10}" text-anchor="middle" font-size="14">${title}</text>`
    + `<text x="${W / 2}" y="${H - 8}" text-anchor="middle">step</text>`
    + `<text x="${W - R}" y="${T + 4}" text-anchor="end" fill="#1f77b4">train</text><text x="${W - R}" y="${T + 20}" text-anchor="end" fill="#d62728">validation</text>`
    + '</svg>\n';
}
