// A small time-series plot on a canvas: points [t, v], zoom with the wheel, pan by dragging,
// double-click to go back to following the data. No library: it must work with no network.
"use strict";

class Plot {
  constructor(canvas, info) {
    this.c = canvas; this.ctx = canvas.getContext("2d"); this.info = info;
    this.points = []; this.title = ""; this.units = ""; this.view = null; // null: fit all
    this.maxPoints = 20000; this.dirty = true;
    canvas.addEventListener("wheel", (e) => { e.preventDefault(); this.zoom(e.offsetX, e.deltaY > 0 ? 1.25 : 0.8); });
    canvas.addEventListener("mousedown", (e) => { this.drag = { x: e.offsetX, view: this.range() }; });
    window.addEventListener("mouseup", () => { this.drag = null; });
    canvas.addEventListener("mousemove", (e) => {
      if (!this.drag) return;
      const [a, b] = this.drag.view, dt = (e.offsetX - this.drag.x) / this.plotW() * (b - a);
      this.view = [a - dt, b - dt]; this.dirty = true;
    });
    canvas.addEventListener("dblclick", () => this.reset());
    const tick = () => { if (this.dirty) this.draw(); requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  }
  set(title, units, points) { this.title = title; this.units = units || ""; this.points = points.slice(); this.view = null; this.dirty = true; }
  add(t, v) {
    const n = this.points.length;
    if (n && t < this.points[n - 1][0]) return;  // archive order already holds it
    this.points.push([t, v]);
    if (this.points.length > this.maxPoints) this.points.splice(0, this.points.length - this.maxPoints);
    this.dirty = true;
  }
  reset() { this.view = null; this.dirty = true; }
  plotW() { return this.c.width - 60; }
  range() {
    if (this.view) return this.view;
    if (!this.points.length) return [0, 1];
    const a = this.points[0][0], b = this.points[this.points.length - 1][0];
    return a === b ? [a - 1, b + 1] : [a, b];
  }
  zoom(px, f) {
    const [a, b] = this.range(), t = a + (px - 50) / this.plotW() * (b - a);
    this.view = [t - (t - a) * f, t + (b - t) * f]; this.dirty = true;
  }
  draw() {
    this.dirty = false;
    const ctx = this.ctx, W = this.c.width, H = this.c.height, L = 50, R = 10, T = 16, B = 20;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = "#111"; ctx.font = "11px sans-serif";
    ctx.fillText(this.title ? `${this.title} ${this.units ? "[" + this.units + "]" : ""}` : "choose a channel", L, 11);
    const [a, b] = this.range();
    const vis = this.points.filter((p) => p[0] >= a && p[0] <= b && typeof p[1] === "number");
    if (!vis.length) { this.info.textContent = this.title ? "no samples in view" : "wheel: zoom time, drag: pan"; return; }
    let lo = Infinity, hi = -Infinity;
    for (const p of vis) { if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; }
    if (lo === hi) { lo -= 1; hi += 1; }
    const x = (t) => L + (t - a) / (b - a) * (W - L - R), y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
    ctx.strokeStyle = "#ccc"; ctx.beginPath(); ctx.rect(L, T, W - L - R, H - T - B); ctx.stroke();
    ctx.fillStyle = "#555";
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4; ctx.fillText(v.toPrecision(4), 2, y(v) + 3);
      const t = a + (b - a) * i / 4; ctx.fillText(t.toFixed(1), Math.min(x(t) - 10, W - 40), H - 5);
    }
    ctx.strokeStyle = "#1d4ed8"; ctx.lineWidth = 1.2; ctx.beginPath();
    vis.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
    const last = vis[vis.length - 1];
    this.info.textContent = `${vis.length} samples in view, t ${a.toFixed(1)} to ${b.toFixed(1)} s, last ${last[1]}` +
      (this.view ? " (zoomed; double-click to follow)" : "");
  }
}
window.Plot = Plot;
