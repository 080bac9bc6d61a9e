// A line plot on a <canvas>, no library: one line per series, the y axis
// from 0 to the largest value, time along x.
export const COLORS = ["#1f5fbf", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fb8", "#4d908e"];

// series: [{name, points: [[t_ms, value], ...]}]; windowMs: the x span.
export function drawPlot(canvas, series, { windowMs, format }) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const ht = canvas.clientHeight;
  if (w === 0 || ht === 0) return;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(ht * dpr);
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, ht);
  const left = 64;
  const bottom = 18;
  const top = 6;
  const now = Date.now();
  let max = 0;
  for (const s of series) for (const [, v] of s.points) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;
  const x = (t) => left + ((t - (now - windowMs)) / windowMs) * (w - left - 4);
  const y = (v) => top + (1 - v / max) * (ht - top - bottom);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#5b6575";
  g.strokeStyle = "#e3e7ed";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    g.beginPath();
    g.moveTo(left, yy);
    g.lineTo(w, yy);
    g.stroke();
    g.fillText(format(v), 2, yy + 4);
  }
  const minutes = windowMs / 60000;
  for (let m = 0; m <= minutes; m++) {
    const xx = x(now - m * 60000);
    g.fillText(m === 0 ? "now" : `-${m} min`, Math.max(left, xx - 18), ht - 4);
  }
  series.forEach((s, i) => {
    g.strokeStyle = COLORS[i % COLORS.length];
    g.lineWidth = 1.5;
    g.beginPath();
    s.points.forEach(([t, v], j) => (j ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
    g.stroke();
  });
}
