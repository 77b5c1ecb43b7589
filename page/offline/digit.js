// The digit's preparation in the exported file, exactly as extras.pictures.prepare_digit does it
// for the server (PyTorch's float32 steps, in order): grey levels to ink, cropped, resized so that
// the longer side is 20 pixels (PyTorch's antialiased bilinear resize, its sums in its own order),
// centred by mass in 28 x 28 and normalised as the tutorial's transform does.
"use strict";
(() => {
const { EXPORT, floats, BadRequest, said } = offline;
const { f32, tensor } = maths;

function roundHalfEven(value) {  // Python's round() and torch.round(): a half goes to the even side
  const rounded = Math.round(value);  // a half goes up
  return rounded - value === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

function antialiasWeights(inputSize, outputSize) {
  // torch.nn.functional.interpolate(mode="bilinear", antialias=True): a triangle filter as wide
  // as the scale, each output pixel's weights normalised to add up to 1 (float32 throughout).
  const scale = f32(inputSize / outputSize), support = scale >= 1 ? f32(scale * 1.0) : 1.0;
  const invscale = scale >= 1 ? f32(1 / scale) : 1.0, rows = [];
  for (let i = 0; i < outputSize; i++) {
    const center = f32(scale * f32(i + 0.5));
    const xmin = Math.max(Math.trunc(f32(center - support) + 0.5), 0);
    const xsize = Math.min(Math.trunc(f32(center + support) + 0.5), inputSize) - xmin;
    const weights = [];
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const t = Math.abs(f32((f32(j + xmin - center) + 0.5) * invscale));  // as C++ rounds it
      const w = t < 1 ? f32(1 - t) : 0;
      weights.push(w);
      total = f32(total + w);
    }
    rows.push([xmin, weights.map((w) => (total !== 0 ? f32(w / total) : 0))]);
  }
  return rows;
}

// The orders in which PyTorch's compiled kernel may add a weighted sum's products. Builds differ:
// torch 2.14's x86 build adds the first product, then four more at a time, each rounded, and
// fuses the last (n - 1) % 4 with their products (one rounding each, as an FMA does); torch 2.3's
// fuses every one. Each order is how many products, from the first, are rounded before adding.
const SUM_ORDERS = {
  unrolled: (n) => 1 + Math.floor((n - 1) / 4) * 4,
  fused: () => 1,
  rounded: (n) => n,
};

function weightedSum(values, weights, order) {
  const rounded = order(values.length);
  let sum = f32(values[0] * weights[0]), j = 1;
  for (; j < rounded; j++) sum = f32(sum + f32(values[j] * weights[j]));
  // The rest fused: a float32 product is exact in float64, rounded once with the sum.
  for (; j < values.length; j++) sum = f32(sum + values[j] * weights[j]);
  return sum;
}

let sumOrder = null;  // the order of the PyTorch that made this file, found at the first drawing
function findSumOrder() {
  // The export carries a few resizes that PyTorch computed; the first order that gives every one
  // of their numbers bit for bit is the one to use (another differs in the last bit, which the
  // 8-bit rounding turns into a grey level now and then), else the one closest to them.
  const probe = EXPORT.resize_probe, input = floats(probe.input), [rows, columns] = probe.shape;
  const outputs = probe.outputs.map(floats);
  const differing = (order, width, k) => resizeAxis(input, rows, columns, width, false, order)
    .filter((value, i) => value !== outputs[k][i]).length;
  const wrong = (order) => probe.widths.reduce((count, width, k) => count + differing(order, width, k), 0);
  const misses = Object.values(SUM_ORDERS).map((order) => [wrong(order), order]);
  return misses.find(([count]) => count === 0)?.[1] ?? misses.sort((a, b) => a[0] - b[0])[0][1];
}

function resizeAxis(values, height, width, size, alongRows, order) {
  const rows = antialiasWeights(alongRows ? height : width, size);
  const [outHeight, outWidth] = alongRows ? [size, width] : [height, size];
  const out = new Float32Array(outHeight * outWidth);
  const valueAt = alongRows ? (y, x, j) => values[j * width + x] : (y, x, j) => values[y * width + j];
  for (let y = 0; y < outHeight; y++) for (let x = 0; x < outWidth; x++) {
    const [start, weights] = rows[alongRows ? y : x];
    out[y * outWidth + x] = weightedSum(weights.map((w, j) => valueAt(y, x, start + j)), weights, order);
  }
  return out;
}

function resize(values, height, width, outHeight, outWidth) {
  // PyTorch resizes the columns first, then the rows, and skips an axis whose size stays.
  sumOrder ??= findSumOrder();
  let out = values;
  if (outWidth !== width) out = resizeAxis(out, height, width, outWidth, false, sumOrder);
  if (outHeight !== height) out = resizeAxis(out, height, outWidth, outHeight, true, sumOrder);
  return out;
}

function prepareDigit(levels, height, width) {
  // levels: grey levels 0 (black) to 255 (white), row by row. Returns the (1, 1, 28, 28) input.
  const ink = inkOf(levels), [top, bottom, left, right] = inkBox(ink, height, width);
  const cropHeight = bottom - top + 1, cropWidth = right - left + 1;
  const crop = new Float32Array(cropHeight * cropWidth);
  for (let y = 0; y < cropHeight; y++) {
    crop.set(ink.subarray((top + y) * width + left, (top + y) * width + right + 1), y * cropWidth);
  }
  const scale = 20 / Math.max(cropHeight, cropWidth);  // the longer side becomes 20 pixels
  const outHeight = Math.max(1, roundHalfEven(cropHeight * scale));
  const outWidth = Math.max(1, roundHalfEven(cropWidth * scale));
  return centred(resize(crop, cropHeight, cropWidth, outHeight, outWidth), outHeight, outWidth);
}

function centred(small, outHeight, outWidth) {
  // The centre of mass goes to row 14, column 14, as MNIST's.
  let mass = 0, massRow = 0, massColumn = 0;
  for (let i = 0; i < small.length; i++) {
    mass += small[i];
    massRow += small[i] * Math.floor(i / outWidth);
    massColumn += small[i] * (i % outWidth);
  }
  const row0 = Math.min(Math.max(roundHalfEven(14 - f32(massRow / mass)), 0), 28 - outHeight);
  const column0 = Math.min(Math.max(roundHalfEven(14 - f32(massColumn / mass)), 0), 28 - outWidth);
  const input = tensor([1, 1, 28, 28]);
  input.data.fill(normalise(0));
  // 8-bit pixels, then the tutorial's transform: ToTensor (/ 255), Normalize ((x - mean) / std).
  for (let y = 0; y < outHeight; y++) for (let x = 0; x < outWidth; x++) {
    const level = Math.min(255, roundHalfEven(f32(small[y * outWidth + x] * 255)));
    input.data[(row0 + y) * 28 + column0 + x] = normalise(level);
  }
  return input;
}

const GREY = Float32Array.from({ length: 256 }, (_, level) => level / 255);  // as pil_to_tensor(...) / 255

function inkOf(levels) {
  // Light ink on black whatever the picture's colours, from 0 (the paper's level) to 1.
  const median = medianLevel(levels), invert = GREY[median] > 0.5;  // mostly light: dark ink on a light page
  // Each level's ink, worked out once for the 256 levels instead of for every pixel.
  const inkOfLevel = GREY.map((grey) => (invert ? Math.max(f32(f32(1 - grey) - f32(1 - GREY[median])), 0)
                                                : Math.max(f32(grey - GREY[median]), 0)));
  const ink = new Float32Array(levels.length);
  let largest = 0;
  for (let i = 0; i < levels.length; i++) {
    ink[i] = inkOfLevel[levels[i]];
    largest = Math.max(largest, ink[i]);
  }
  // 422, as page/routes.py answers prepare_digit's DataError
  if (largest < f32(0.1)) throw new BadRequest(422, said("no_digit"));
  for (let i = 0; i < ink.length; i++) ink[i] = f32(ink[i] / largest);
  return ink;
}

function medianLevel(levels) {
  // torch.median: the lower of the two middle values, found by counting each level.
  const counts = new Uint32Array(256);
  for (let i = 0; i < levels.length; i++) counts[levels[i]]++;
  let level = 0;
  for (let below = counts[0]; below <= Math.floor((levels.length - 1) / 2); below += counts[++level]);
  return level;
}

function inkBox(ink, height, width) {
  // The first and last rows and columns with ink brighter than 0.2 (compared in float32, as PyTorch).
  let top = height, bottom = -1, left = width, right = -1;
  const threshold = f32(0.2);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    if (!(ink[y * width + x] > threshold)) continue;
    top = Math.min(top, y); bottom = Math.max(bottom, y);
    left = Math.min(left, x); right = Math.max(right, x);
  }
  return [top, bottom, left, right];
}

const NORMALISED = maths.normalised(EXPORT.mean, EXPORT.std);
function normalise(level) { return NORMALISED[level]; }  // a whole grey level 0 ... 255
function toPixels(value) { return value * EXPORT.std + EXPORT.mean; }

function greyOfPixels(pixels, side) {
  // A drawing sent as rows of grey levels 0 (black) to 255 (white), at most side x side (the
  // server's limits, EXPORT.limits), rounded to 8 bits as page/routes.py does.
  const sized = (list) => Array.isArray(list) && list.length > 0 && list.length <= side;
  const rows = (list) => list.every((row) => Array.isArray(row) && row.length === list[0].length);
  if (!(sized(pixels) && sized(pixels[0]) && rows(pixels))) {
    throw new BadRequest(400, said("pixel_rows", { side }));
  }
  const width = pixels[0].length, levels = new Uint8Array(pixels.length * width);
  pixels.forEach((row, y) => {
    for (let x = 0; x < width; x++) {
      const v = row[x];
      if (typeof v !== "number" || !(v >= 0 && v <= 255)) throw new BadRequest(400, said("pixel_values"));
      levels[y * width + x] = roundHalfEven(f32(v));
    }
  });
  return levels;
}

Object.assign(offline, { roundHalfEven, prepareDigit, normalise, toPixels, greyOfPixels });
})();
