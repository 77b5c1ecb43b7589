// The drawing page's pictures of numbers: the colour scales, values painted pixel by pixel into a
// canvas, their legends, and the training curves (loss and batch accuracy of each step).
"use strict";
(() => {
// The colour scales, defined once. Each maps a value to [r, g, b] for a given largest magnitude.
const SCALES = {
  // 0 black, scale (or more) white: for values that are never negative (after ReLU, pixels).
  grey: (scale) => (value) => Array(3).fill(Math.round(255 * Math.min(1, Math.max(0, value / (scale || 1))))),
  // Blue for negative, white for zero, red for positive: when the sign matters.
  signed: (scale) => (value) => {
    const t = Math.max(-1, Math.min(1, value / (scale || 1)));
    const [r, g, b] = t < 0 ? [33, 102, 172] : [178, 24, 43];
    const a = Math.abs(t);
    return [255 + (r - 255) * a, 255 + (g - 255) * a, 255 + (b - 255) * a].map(Math.round);
  },
};

function shapeText(shape) { return shape.join(" × "); }
function count(shape) { return shape.reduce((a, b) => a * b, 1); }
function fixed(value, digits = 3) { return Number(value).toFixed(digits); }

function packed([r, g, b]) {
  // An opaque colour as one pixel of a Uint32Array over an ImageData's bytes (r, g, b, a, lowest
  // first: every browser's byte order is little-endian).
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

function paint(canvas, values, height, width, colour, offset = 0) {
  // One height x width block of values, from offset on, painted pixel by pixel with colour(value).
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height), pixels = new Uint32Array(image.data.buffer);
  for (let i = 0; i < width * height; i++) pixels[i] = packed(colour(values[offset + i]));
  context.putImageData(image, 0, 0);
  return canvas;
}

function scaleFor(values) {
  // Maps that are never negative in grey, the others signed, each scaled by its largest magnitude.
  const largest = Math.max(...values.map(Math.abs));
  return values.some((v) => v < 0) ? ["signed", largest] : ["grey", largest];
}

function legend(kind, largest) {
  const span = document.createElement("span");
  span.className = "axis";
  span.innerHTML = kind === "signed"
    ? `<span class="legend signed"></span> −${fixed(largest, 2)} … 0 … +${fixed(largest, 2)}`
    : `<span class="legend grey"></span> 0 … ${fixed(largest, 2)}`;
  return span;
}

function runningMean(values, size) {
  let total = 0;
  return values.map((value, i) => {
    total += value - (i >= size ? values[i - size] : 0);
    return total / Math.min(i + 1, size);
  });
}

function screenSized(canvas, height) {
  // The canvas given one pixel per screen pixel at the width it is shown: drawn at its own 640
  // pixels and shrunk to a phone's width, its labels were half their size. Returns the context,
  // in CSS pixels, and that width.
  const scale = window.devicePixelRatio || 1, width = canvas.clientWidth || 640;
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const context = canvas.getContext("2d");
  context.setTransform(scale, 0, 0, scale, 0, 0);
  return [context, width];
}

function drawCurves(canvas, run, marked, total = run.loss.length) {
  // Loss (left, log scale) and batch accuracy (right) of every step, and a line at the chosen step;
  // the steps axis goes to total (a run still training has done fewer).
  const height = 170, [context, width] = screenSized(canvas, height);
  context.font = "11px system-ui, sans-serif";
  const steps = Math.max(total, run.loss.length);
  if (run.loss.length === 0) return;
  const size = Math.max(1, Math.round(steps / 100)), half = width / 2;  // the running means' window
  const plots = [
    { values: runningMean(run.loss, size).map((v) => Math.log10(Math.max(v, 1e-4))), left: 34,
      title: "loss (log scale)", colour: "#1a73e8" },
    { values: runningMean(run.accuracy, size).map((v) => 100 * v), left: half + 34,
      title: "batch accuracy %", colour: "#0b8043" },
  ];
  for (const plot of plots) drawPlot(context, plot, { half, height, steps, marked });
}

function drawPlot(context, plot, { half, height, steps, marked }) {
  // One of the two curves, in its box with its title and axis, and the line at the chosen step.
  const top = 14, bottom = height - 18, low = Math.min(...plot.values), high = Math.max(...plot.values);
  const x = (step) => plot.left + (half - 46) * step / steps;
  const y = (value) => bottom - (bottom - top) * (value - low) / ((high - low) || 1);
  context.strokeStyle = "#bbb";
  context.strokeRect(plot.left, top, half - 46, bottom - top);
  context.fillStyle = "#555";
  context.fillText(plot.title, plot.left, top - 3);
  context.fillText(`step ${steps}`, plot.left + half - 96, height - 4);
  context.fillText("0", plot.left, height - 4);
  context.strokeStyle = plot.colour;
  context.beginPath();
  plot.values.forEach((value, i) => (i ? context.lineTo : context.moveTo).call(context, x(i + 1), y(value)));
  context.stroke();
  context.strokeStyle = "#b00020";
  context.beginPath();
  context.moveTo(x(marked), top);
  context.lineTo(x(marked), bottom);
  context.stroke();
}

Object.assign(page, { SCALES, shapeText, count, fixed, packed, paint, scaleFor, legend, drawCurves });
})();
