// The exported page's back end (python draw.py model.pt --export page.html): the server's routes as
// functions on window.routes, with the same bodies and answers, computed here in the browser from
// the weights and the traced graph that the export put in the page. Nothing is fetched.
"use strict";
(() => {
const EXPORT = JSON.parse(document.getElementById("export-data").textContent);

maths.useKernels(bytesOf(EXPORT.kernels));  // WebAssembly SIMD where the browser has it, else plain loops
const { tensor, f32, forward, backward, paramsOf, evalOperation, logSoftmax, softmax,
        untrainable, adam, trainingStep } = maths;  // maths.js

function bytesOf(base64) { return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)); }
function floats(base64) { return new Float32Array(bytesOf(base64).buffer); }

// ---- A network: its graph (the export's translation of torch.fx's) run node by node.
function parameters(network, snapshot) {
  // The tensors of one snapshot, by state_dict key, cut from the snapshot's one block of floats.
  network.cache ??= [];
  const block = network.weights[snapshot];
  if (typeof block === "number") return parameters(network, block);  // the same weights as that block
  if (!network.cache[snapshot]) {
    const all = typeof block === "string" ? floats(block) : unpacked(block, network.tensors), found = {};
    let offset = 0;
    for (const [key, shape] of network.tensors) {
      const size = shape.reduce((a, b) => a * b, 1);
      found[key] = tensor(shape, all.subarray(offset, offset + size));
      offset += size;
    }
    network.cache[snapshot] = found;
  }
  return network.cache[snapshot];
}

function unpacked(block, tensors) {
  // Weights the export rounded (export.compact_weights): each row's codes times the row's scale.
  // A code is stored plus 2 ** (bits - 1), as an unsigned number of block.bits bits, lowest first.
  const scales = floats(block.scales), bytes = bytesOf(block.codes), perByte = 8 / block.bits;
  const mask = (1 << block.bits) - 1, zero = 1 << (block.bits - 1);
  const values = new Float32Array(tensors.reduce((total, [, shape]) => total + shape.reduce((a, b) => a * b, 1), 0));
  let n = 0, row = 0;
  for (const [, shape] of tensors) {
    const count = shape.reduce((a, b) => a * b, 1), rows = shape.length > 1 ? shape[0] : 1;
    for (let r = 0; r < rows; r++, row++) {
      for (let k = 0; k < count / rows; k++, n++) {
        const code = (bytes[Math.floor(n / perByte)] >> (block.bits * (n % perByte))) & mask;
        values[n] = (code - zero) * scales[row];
      }
    }
  }
  return values;
}


function run(network, snapshot, input) {
  return forward(network, parameters(network, snapshot), input, evalOperation);
}

function inputGradient(network, snapshot, outputs, outputGradient) {
  const weights = parameters(network, snapshot);
  return backward(network, weights, outputs, outputGradient, evalOperation)[network.graph[0].name];
}


// ---- Preparing a drawing exactly as extras.pictures.prepare_digit does: PyTorch's float32 steps, in order.
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
  for (; j < values.length; j++) sum = f32(sum + values[j] * weights[j]);  // a float32 product is exact in float64
  return sum;
}

let sumOrder = null;  // the order of the PyTorch that made this file, found at the first drawing
function findSumOrder() {
  // The export carries a few resizes that PyTorch computed; the first order that gives every one
  // of their numbers bit for bit is the one to use (another differs in the last bit, which the
  // 8-bit rounding turns into a grey level now and then), else the one closest to them.
  const probe = EXPORT.resize_probe, input = floats(probe.input), [rows, columns] = probe.shape;
  const outputs = probe.outputs.map(floats);
  const wrong = (order) => probe.widths.reduce((count, width, k) => count
    + resizeAxis(input, rows, columns, width, false, order).filter((value, i) => value !== outputs[k][i]).length, 0);
  const misses = Object.values(SUM_ORDERS).map((order) => [wrong(order), order]);
  return misses.find(([count]) => count === 0)?.[1] ?? misses.sort((a, b) => a[0] - b[0])[0][1];
}

function resizeAxis(values, height, width, size, alongRows, order) {
  const rows = antialiasWeights(alongRows ? height : width, size);
  const [outHeight, outWidth] = alongRows ? [size, width] : [height, size];
  const out = new Float32Array(outHeight * outWidth);
  for (let y = 0; y < outHeight; y++) for (let x = 0; x < outWidth; x++) {
    const [start, weights] = rows[alongRows ? y : x];
    const under = weights.map((w, j) => (alongRows ? values[(start + j) * width + x] : values[y * width + start + j]));
    out[y * outWidth + x] = weightedSum(under, weights, order);
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
  const cropHeight = bottom - top + 1, cropWidth = right - left + 1, crop = new Float32Array(cropHeight * cropWidth);
  for (let y = 0; y < cropHeight; y++) {
    crop.set(ink.subarray((top + y) * width + left, (top + y) * width + right + 1), y * cropWidth);
  }
  const scale = 20 / Math.max(cropHeight, cropWidth);  // the longer side becomes 20 pixels
  const outHeight = Math.max(1, roundHalfEven(cropHeight * scale)), outWidth = Math.max(1, roundHalfEven(cropWidth * scale));
  const small = resize(crop, cropHeight, cropWidth, outHeight, outWidth);
  // The centre of mass goes to row 14, column 14, as MNIST's.
  let mass = 0, massRow = 0, massColumn = 0;
  for (let i = 0; i < small.length; i++) {
    mass += small[i]; massRow += small[i] * Math.floor(i / outWidth); massColumn += small[i] * (i % outWidth);
  }
  const row0 = Math.min(Math.max(roundHalfEven(14 - f32(massRow / mass)), 0), 28 - outHeight);
  const column0 = Math.min(Math.max(roundHalfEven(14 - f32(massColumn / mass)), 0), 28 - outWidth);
  const input = tensor([1, 1, 28, 28]);
  input.data.fill(normalise(0));
  // 8-bit pixels, then the tutorial's transform: ToTensor (/ 255), Normalize ((x - mean) / std).
  for (let y = 0; y < outHeight; y++) for (let x = 0; x < outWidth; x++) {
    input.data[(row0 + y) * 28 + column0 + x] = normalise(Math.min(255, roundHalfEven(f32(small[y * outWidth + x] * 255))));
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
  if (largest < f32(0.1)) throw new BadRequest(422, "no digit found: the picture has (almost) one colour");
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
    top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
  }
  return [top, bottom, left, right];
}

const NORMALISED = maths.normalised(EXPORT.mean, EXPORT.std);
function normalise(level) { return NORMALISED[level]; }  // a whole grey level 0 ... 255
function toPixels(value) { return value * EXPORT.std + EXPORT.mean; }

function onWhite(value, alpha) {
  // Pillow's alpha_composite of one channel over opaque white, in its integer arithmetic.
  if (alpha === 255) return value;
  const mixed = value * alpha * 128 + 255 * (255 - alpha) * 128 + (0x80 << 7);
  return (((mixed >> 8) + mixed) >> 8) >> 7;
}

function greyOfRgba(data, count) {
  let transparent = false;
  for (let i = 0; i < count && !transparent; i++) transparent = data[4 * i + 3] < 255;
  // Pillow's convert("L") (ITU-R 601-2 luma, integer arithmetic), after laying the picture on white.
  const levels = new Uint8Array(count);
  const channel = (i, k) => (transparent ? onWhite(data[4 * i + k], data[4 * i + 3]) : data[4 * i + k]);
  for (let i = 0; i < count; i++) {
    levels[i] = (channel(i, 0) * 19595 + channel(i, 1) * 38470 + channel(i, 2) * 7471 + 0x8000) >> 16;
  }
  return levels;
}

function greyOfPixels(pixels, side) {
  // A drawing sent as rows of grey levels 0 (black) to 255 (white), at most side x side (the
  // server's limits, EXPORT.limits), rounded to 8 bits as page/routes.py does.
  const sized = (list) => Array.isArray(list) && list.length > 0 && list.length <= side;
  if (!(sized(pixels) && sized(pixels[0]) && pixels.every((row) => Array.isArray(row) && row.length === pixels[0].length))) {
    throw new BadRequest(400, `pixels must be a list of equally long rows, at most ${side} x ${side}`);
  }
  const width = pixels[0].length, levels = new Uint8Array(pixels.length * width);
  pixels.forEach((row, y) => {
    for (let x = 0; x < width; x++) {
      const v = row[x];
      if (typeof v !== "number" || !(v >= 0 && v <= 255)) throw new BadRequest(400, "pixels must be numbers from 0 to 255");
      levels[y * width + x] = roundHalfEven(f32(v));
    }
  });
  return levels;
}

async function decodePicture(picture) {
  // A data: URL as FileReader and toDataURL give it, or bare base64, decoded from its bytes within
  // the server's limit on pixels, which the size its header declares is held to first, before
  // any pixel is decoded (as extras.pictures.open_within_limit refuses).
  if (typeof picture !== "string") throw new BadRequest(400, "picture must be a base64 string");
  let bytes;
  try { bytes = bytesOf(picture.slice(picture.indexOf(",") + 1)); } catch (error) {
    throw new BadRequest(400, "picture is not valid base64");
  }
  const header = pictureHeader(bytes);
  if (!header) throw new BadRequest(422, `picture: not an image file of a format this reads (${EXPORT.limits.picture_formats.join(", ")})`);
  const jpeg = header.format === "JPEG";
  if (header.width !== undefined) decodedSize(header.width, header.height, jpeg);
  const image = await bitmapOf(bytes);  // the size it decodes at is held to the limit too: a header may say less
  return greyOf(image, ...decodedSize(image.width, image.height, jpeg));
}

function decodedSize(width, height, jpeg) {
  // [width, height] that extras.pictures.open_within_limit decodes a picture at for the server: as
  // it is, or a JPEG over the limit (a phone's photo) at the 1/2, 1/4 or 1/8 that Pillow's draft
  // picks for it; the server's 422 if that is still over the limit.
  const most = EXPORT.limits.picture_pixels;
  let scale = 1;
  if (jpeg && width * height > most) {
    const factor = [2, 4, 8].find((f) => (width / f) * (height / f) <= most) ?? 8;
    const fits = Math.min(Math.floor(width / Math.ceil(width / factor)), Math.floor(height / Math.ceil(height / factor)));
    scale = [8, 4, 2, 1].find((s) => fits >= s);
  }
  const size = [Math.ceil(width / scale), Math.ceil(height / scale)];
  if (size[0] * size[1] > most) {
    throw new BadRequest(422, `picture: too many pixels for a picture of one digit (${width} x ${height} `
                              + `pixels, at most ${most.toLocaleString("en-US")} are read); scale it down`);
  }
  return size;
}

function pictureHeader(bytes) {
  // {format, width, height} as Pillow reads them from a picture's first bytes, for the formats the
  // server opens (EXPORT.limits.picture_formats); {format} alone where the size cannot be read
  // there (the browser's decoder then says what it makes of the rest); null for any other file.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (at, length) => String.fromCharCode(...bytes.subarray(at, at + length));
  const formats = [
    ["PNG", text(0, 8) === "\x89PNG\r\n\x1a\n", () => [view.getUint32(16), view.getUint32(20)]],
    ["JPEG", text(0, 3) === "\xFF\xD8\xFF", () => jpegSize(bytes, view)],
    ["GIF", ["GIF87a", "GIF89a"].includes(text(0, 6)), () => gifSize(bytes, view)],
    ["BMP", text(0, 2) === "BM", () => bmpSize(view)],
    ["WEBP", text(0, 4) === "RIFF" && text(8, 4) === "WEBP", () => webpSize(bytes, view, text(12, 4))],
    ["TIFF", ["MM\0*", "II*\0", "MM*\0", "II\0*", "MM\0+", "II+\0"].includes(text(0, 4)), () => tiffSize(view, text(0, 4))],
  ];
  const [format, , sizeOf] = formats.find(([, matches]) => matches) ?? [];
  if (!format) return null;
  let size = null;
  try { size = sizeOf(); } catch (error) {
    if (!(error instanceof RangeError)) throw error;  // fewer bytes than the header needs: damaged
  }
  return size ? { format, width: size[0], height: size[1] } : { format };
}

function jpegSize(bytes, view) {
  // The frame's size, in the first start-of-frame segment (SOF0 ... SOF15 but DHT, JPG, DAC).
  for (let at = 2; at + 9 <= bytes.length;) {
    if (bytes[at] !== 0xFF) return null;
    const marker = bytes[at + 1];
    if (marker === 0xFF) { at += 1; continue; }  // fill bytes before a marker
    if (marker === 0x01 || (marker >= 0xD0 && marker <= 0xD8)) { at += 2; continue; }  // no length
    if (marker >= 0xC0 && marker <= 0xCF && ![0xC4, 0xC8, 0xCC].includes(marker)) {
      return [view.getUint16(at + 7), view.getUint16(at + 5)];
    }
    if (marker === 0xDA || marker === 0xD9) return null;  // the scan, or the end, before any frame
    at += 2 + view.getUint16(at + 2);
  }
  return null;
}

function gifSize(bytes, view) {
  // The logical screen, grown to the first frame where that frame reaches past it (as Pillow does).
  let width = view.getUint16(6, true), height = view.getUint16(8, true), at = 13;
  if (bytes[10] & 0x80) at += 3 * 2 ** ((bytes[10] & 7) + 1);  // the global colour table
  while (at < bytes.length && bytes[at] === 0x21) {  // extensions: a label, then sub-blocks up to an empty one
    at += 2;
    while (at < bytes.length && bytes[at] !== 0) at += bytes[at] + 1;
    at += 1;
  }
  if (bytes[at] === 0x2C) {  // the first frame: its left, top, width and height
    width = Math.max(width, view.getUint16(at + 1, true) + view.getUint16(at + 5, true));
    height = Math.max(height, view.getUint16(at + 3, true) + view.getUint16(at + 7, true));
  }
  return [width, height];
}

function bmpSize(view) {
  // OS/2's 12-byte header: 16-bit sizes; Windows' headers: 32-bit, a negative height (rows from the top) as its magnitude.
  const headerSize = view.getUint32(14, true);
  if (headerSize === 12) return [view.getUint16(18, true), view.getUint16(20, true)];
  if (![40, 52, 56, 64, 108, 124].includes(headerSize)) return null;
  return [view.getUint32(18, true), Math.abs(view.getInt32(22, true))];
}

function webpSize(bytes, view, chunk) {
  // The canvas's size in the first chunk, as Pillow's WebPImagePlugin._get_size reads it.
  if (chunk === "VP8 " && bytes[23] === 0x9D && bytes[24] === 0x01 && bytes[25] === 0x2A) {
    return [view.getUint16(26, true) & 0x3FFF, view.getUint16(28, true) & 0x3FFF];
  }
  if (chunk === "VP8X") return [(view.getUint32(24, true) & 0xFFFFFF) + 1, (view.getUint32(27, true) & 0xFFFFFF) + 1];
  if (chunk === "VP8L" && bytes[20] === 0x2F) {
    const bits = view.getUint32(21, true);
    return [(bits & 0x3FFF) + 1, ((bits >>> 14) & 0x3FFF) + 1];
  }
  return null;
}

function tiffSize(view, start) {
  // ImageWidth (256) and ImageLength (257) of the first directory, swapped by an Orientation (274)
  // of 5 to 8 as Pillow swaps them; a BigTIFF's are left to the decoder.
  const little = start[0] === "I", found = {};
  if (start.includes("+")) return null;
  const first = view.getUint32(4, little), count = view.getUint16(first, little);
  for (let k = 0, at = first + 2; k < count; k++, at += 12) {
    const tag = view.getUint16(at, little), type = view.getUint16(at + 2, little);
    if ([256, 257, 274].includes(tag)) found[tag] = type === 3 ? view.getUint16(at + 8, little) : view.getUint32(at + 8, little);
  }
  if (found[256] === undefined || found[257] === undefined) return null;
  return [5, 6, 7, 8].includes(found[274]) ? [found[257], found[256]] : [found[256], found[257]];
}

async function bitmapOf(bytes) {
  try { return await createImageBitmap(new Blob([bytes])); } catch (error) {
    throw new BadRequest(422, "picture: not an image file that this browser can read");
  }
}

const TILE = 4096;  // the side of the pieces a picture is drawn in: a canvas over a browser's limit stays blank

function greyOf(image, width = image.width, height = image.height) {
  // The picture's grey levels, drawn at width x height (smaller: a photo's JPEG, see decodedSize),
  // a piece of at most TILE x TILE at a time, so that a 1 x 1,000,000 picture is read whole too.
  const levels = new Uint8Array(width * height), canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const across = image.width / width, down = image.height / height;
  for (let top = 0; top < height; top += TILE) {
    for (let left = 0; left < width; left += TILE) {
      const pieceWidth = Math.min(TILE, width - left), pieceHeight = Math.min(TILE, height - top);
      canvas.width = pieceWidth; canvas.height = pieceHeight;  // which resets the context's settings
      context.imageSmoothingQuality = "high";  // a photo drawn smaller: smoothed, as a decoder's own scaling is
      context.drawImage(image, left * across, top * down, pieceWidth * across, pieceHeight * down, 0, 0, pieceWidth, pieceHeight);
      const grey = greyOfRgba(context.getImageData(0, 0, pieceWidth, pieceHeight).data, pieceWidth * pieceHeight);
      for (let y = 0; y < pieceHeight; y++) levels.set(grey.subarray(y * pieceWidth, (y + 1) * pieceWidth), (top + y) * width + left);
    }
  }
  return [levels, height, width];
}

// ---- The routes: the same checks, bodies and answers as page/routes.py's Page.
class BadRequest extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// A field a body sends is one of its own keys, never one that every object inherits (toString,
// constructor, __proto__), which the in operator would find: as the server sees a JSON object.
const has = (request, key) => Object.hasOwn(request, key);

function body(request) {
  // A POST route's body: a JSON object, as page.server.parse_json takes it.
  if (typeof request !== "object" || request === null || Array.isArray(request)) {
    throw new BadRequest(400, "the request must be a JSON object");
  }
  return request;
}

function onlyFields(request, allowed) {
  // Refuses, in one line, a body that is no object or that sends a field not in allowed (a list).
  const object = typeof request === "object" && request !== null && !Array.isArray(request);
  const unknown = object ? Object.keys(request).filter((key) => !allowed.includes(key)) : [];
  if (!object || unknown.length) {
    throw new BadRequest(400, `send ${allowed.join(", ")} only${unknown.length ? ` (not ${unknown.join(", ")})` : ""}`);
  }
  return request;
}

function wholeNumber(request, key, low, high) {
  const value = request[key];
  if (!Number.isInteger(value) || value < low || value > high) {
    throw new BadRequest(400, `${key} must be a whole number from ${low} to ${high}`);
  }
  return value;
}

function queryNumbers(query) {
  const fields = Object.fromEntries(new URLSearchParams(query || ""));
  for (const [key, value] of Object.entries(fields)) {
    if (!/^[+-]?\d+$/.test(value.trim())) throw new BadRequest(400, "each field of the query must be a whole number");
    fields[key] = Number(value);
  }
  return fields;
}

function chosen(request) {
  const model = wholeNumber({ model: 0, ...request }, "model", 0, EXPORT.networks.length - 1);
  const network = EXPORT.networks[model], last = network.weights.length - 1;
  return [model, network, wholeNumber({ snapshot: last, ...request }, "snapshot", 0, last)];
}

function round(value, digits) { const scale = 10 ** digits; return Math.round(value * scale) / scale; }
function describe(t, digits = 5) { return { shape: t.shape.slice(1), values: Array.from(t.data, (v) => round(v, digits)) }; }

let sprites = null;  // the explorer's images, decoded once: one Uint8Array of 28 x 28 pixels per set
function setImages() {
  // The promise is kept, not its result: the 60 images of a cell ask at once, and one decoding serves all.
  sprites ??= Promise.all(EXPORT.sets.map(async (set) => {
    if (!set.sprite) return new Uint8Array(0);
    const [levels] = greyOf(await bitmapOf(bytesOf(set.sprite.slice(set.sprite.indexOf(",") + 1))));  // the export's own PNG
    const columns = EXPORT.sprite_columns, count = set.indices.length, pixels = new Uint8Array(count * 784);
    const width = columns * 28;
    for (let k = 0; k < count; k++) for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
      const sy = Math.floor(k / columns) * 28 + y, sx = (k % columns) * 28 + x;
      pixels[k * 784 + y * 28 + x] = levels[sy * width + sx];
    }
    return pixels;
  }));
  return sprites;
}

function positionOf(set, index) {
  // Where image index of a set is among those the page holds (the explorer's), or undefined.
  const found = EXPORT.sets[set];
  found.position ??= new Map(found.indices.map((image, k) => [image, k]));
  return found.position.get(index);
}

function wholeSetHeld(set) {
  // Whether the file holds every image of the set: MNIST's test set, when it carries it for training
  // (a network trained here shows any of its images, not only those the explorer's images hold).
  return Boolean(EXPORT.sets[set].mnist && EXPORT.mnist);
}

async function imageOf(set, index) {
  // [its 28 x 28 grey levels, its label]: from the explorer's images, else from MNIST's whole test set.
  const position = positionOf(set, index);
  if (position === undefined && wholeSetHeld(set)) {
    const { test } = await mnistImages();
    return [test.images.subarray(index * 784, (index + 1) * 784), test.labels[index]];
  }
  return [(await setImages())[set].subarray(position * 784, (position + 1) * 784), EXPORT.sets[set].labels[position]];
}

// ---- MNIST's training images and test set, for training in the browser (page/mnist_sets.py
// says how they are packed). Not a route: the server has none such.
let mnist = null;
function mnistImages() {
  // {train: {images: Uint8Array(N * 784), labels: Uint8Array(N)}, test: {...}}: MNIST's own grey
  // levels (row by row, image after image) and digits, or null if the file carries none
  // (draw.py --train-images 0). Decoded once, when first asked: the promise is kept, and every
  // caller gets the same arrays, so a Worker gets a copy (postMessage without a transfer list).
  const packed = EXPORT.mnist;
  mnist ??= packed ? Promise.all([packed.train, packed.test].map((set) => unpackedSet(set, packed.alphabet)))
    .then(([train, test]) => ({ train, test })) : Promise.resolve(null);
  return mnist;
}
window.exportedData = { mnistImages };  // for tests and draw.html's script; code in this file calls it itself

async function unpackedSet(set, alphabet) {
  const stream = new Blob([fromBase85(document.getElementById(set.element).textContent, alphabet)]).stream();
  const bytes = new Uint8Array(await new Response(stream.pipeThrough(new DecompressionStream("deflate-raw"))).arrayBuffer());
  const images = new Uint8Array(set.count * 784);
  let pixel = 0, ink = set.runs;  // the runs, then the ink's grey levels
  for (let run = 0; run < set.runs; run++) {  // alternately zeros (already there) and ink
    const end = pixel + bytes[run];
    if (run % 2 === 0) pixel = end;
    else while (pixel < end) images[pixel++] = bytes[ink++];
  }
  if (pixel !== images.length || ink !== bytes.length) throw new Error(`the file's MNIST images (${set.element}) are damaged`);
  return { images, labels: Uint8Array.from(set.labels, (digit) => digit.charCodeAt(0) - 48) };
}

function fromBase85(text, alphabet) {
  // Every 5 digits 4 bytes, most significant first; a last group of n + 1 digits n bytes, read
  // with the digits it lacks as the largest, as Ascii85 does.
  const value = new Uint8Array(128), missing = (5 - (text.length % 5)) % 5;
  for (let digit = 0; digit < 85; digit++) value[alphabet.charCodeAt(digit)] = digit;
  const digits = text + alphabet[84].repeat(missing), bytes = new Uint8Array((digits.length / 5) * 4);
  for (let c = 0, b = 0; c < digits.length; c += 5, b += 4) {
    let word = 0;
    for (let k = c; k < c + 5; k++) word = word * 85 + value[digits.charCodeAt(k)];
    bytes[b] = word >>> 24; bytes[b + 1] = word >>> 16; bytes[b + 2] = word >>> 8; bytes[b + 3] = word;
  }
  return bytes.subarray(0, bytes.length - missing);
}

async function digitOf(request) {
  if (has(request, "index")) {
    if (has(request, "pixels") || has(request, "picture")) throw new BadRequest(400, "send one of pixels, picture or index");
    if (EXPORT.sets.length === 0) throw new BadRequest(404, EXPORT.missing || "no labelled set was given");
    const set = wholeNumber({ set: 0, ...request }, "set", 0, EXPORT.sets.length - 1);
    const index = wholeNumber(request, "index", 0, EXPORT.sets[set].count - 1);
    if (positionOf(set, index) === undefined && !wholeSetHeld(set)) {
      throw new BadRequest(404, `image ${index} is not in this page: it holds the images the explorer shows`);
    }
    const [pixels, label] = await imageOf(set, index);
    return [tensor([1, 1, 28, 28], Float32Array.from(pixels, normalise)), label];
  }
  if (has(request, "pixels") === has(request, "picture")) {
    throw new BadRequest(400, "send one of pixels (a drawing), picture (an image file, base64) or index (an image of a set)");
  }
  if (has(request, "picture")) return [await pictureDigit(request.picture), null];
  return [prepareDigit(greyOfPixels(request.pixels, EXPORT.limits.side), request.pixels.length, request.pixels[0].length), null];
}

async function pictureDigit(picture) {
  // A picture file's digit; a refusal names what it read, as extras.pictures.read_picture does.
  const decoded = await decodePicture(picture);
  try { return prepareDigit(...decoded); } catch (error) {
    if (error instanceof BadRequest) throw new BadRequest(error.status, `picture: ${error.message}`);
    throw error;
  }
}

function layers(network, outputs) {
  const found = network.stages.filter((stage) => outputs[stage.shown].data)  // tensors, not sizes
    .map((stage) => ({ ...stage.details, name: stage.name, output: outputs[stage.shown] }));
  const logits = outputs[network.output], probabilities = tensor([1, 10], Float32Array.from(softmax(logits.data)));
  const name = found.every((layer) => layer.name !== "softmax") ? "softmax" : "probabilities";
  return [...found, { name, kind: "output", code: "logits.softmax(dim=1)", activation: null, output: probabilities }];
}

function confidence(probabilities, digit) {
  const top = [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a] || a - b).slice(0, 3);
  const ink = Array.from(digit.data).filter((v) => toPixels(v) > 0.5).length / 784;
  const [low, high] = EXPORT.ink_range, unlike = !(low <= ink && ink <= high);
  return { top: top.map((d) => [d, round(probabilities[d], 6)]), ink,
           unsure: probabilities[top[0]] < EXPORT.unsure_below || unlike,
           unlike_a_digit: unlike, unsure_below: EXPORT.unsure_below, ink_range: EXPORT.ink_range };
}

function attributionOf(network, snapshot, digit, target) {
  // Integrated gradients from an empty box (every pixel black), midpoints of 64 equal steps.
  const steps = EXPORT.attribution_steps, empty = normalise(0), path = tensor([steps, 1, 28, 28]);
  for (let k = 0; k < steps; k++) {
    const fraction = f32((k + 0.5) / steps);
    digit.data.forEach((v, i) => { path.data[k * 784 + i] = f32(empty + f32(fraction * f32(v - empty))); });
  }
  const outputs = run(network, snapshot, path), logits = outputs[network.output], gradient = tensor([steps, 10]);
  for (let k = 0; k < steps; k++) {  // d log p(target) / d logits = one-hot - softmax
    softmax(logits.data.subarray(k * 10, k * 10 + 10)).forEach((p, d) => { gradient.data[k * 10 + d] = (d === target) - p; });
  }
  const grad = inputGradient(network, snapshot, outputs, gradient), values = tensor([1, 28, 28]);
  for (let i = 0; i < 784; i++) {
    let sum = 0;
    for (let k = 0; k < steps; k++) sum += grad.data[k * 784 + i];
    values.data[i] = (sum / steps) * (digit.data[i] - empty);
  }
  const ends = tensor([2, 1, 28, 28]);
  ends.data.fill(empty, 0, 784);
  ends.data.set(digit.data, 784);
  const endLogits = run(network, snapshot, ends)[network.output];
  return { digit: target, ...describe(values), total: logSoftmax(endLogits.data.subarray(10, 20))[target] - logSoftmax(endLogits.data.subarray(0, 10))[target] };
}

async function predict(request) {
  const [model, network, snapshot] = chosen(body(request)), withAttribution = has(request, "attribution") ? request.attribution : true;
  if (typeof withAttribution !== "boolean") throw new BadRequest(400, "attribution must be true or false");
  const [digit, label] = await digitOf(request);
  const stages = layers(network, run(network, snapshot, digit)), probabilities = Array.from(stages.at(-1).output.data);
  const prediction = probabilities.indexOf(Math.max(...probabilities));
  return {
    model: network.name, prediction, label, probabilities: probabilities.map((p) => round(p, 6)),
    confidence: confidence(probabilities, digit),
    input: describe(tensor([1, 1, 28, 28], digit.data.map(toPixels))),
    layers: stages.map(({ output, ...stage }) => ({ ...stage, ...describe(output) })),
    attribution: withAttribution ? attributionOf(network, snapshot, digit, prediction) : null,
  };
}

async function attribution(request) {
  const [, network, snapshot] = chosen(body(request)), target = wholeNumber(request, "digit", 0, 9);
  const [digit] = await digitOf(request);
  return attributionOf(network, snapshot, digit, target);
}

// ---- How one value was computed (explain.step_of): the same patches, sums and order.
async function step(request) {
  const [, network, snapshot] = chosen(body(request));
  if (typeof request.stage !== "string") throw new BadRequest(400, "stage must be the name of a stage");
  const [map, row, column] = ["map", "row", "column"].map((key) => wholeNumber(request, key, 0, 10000));
  const [digit] = await digitOf(request), outputs = run(network, snapshot, digit);
  const stage = network.stages.find((s) => s.name === request.stage && outputs[s.shown].data);
  if (!stage) throw new BadRequest(400, `no stage named '${request.stage}' in this network`);
  const value = outputs[stage.shown], shape = value.shape.slice(1);
  let position = null;
  if (shape.length === 3) position = [map, row, column];
  else if (shape.length === 1 && map === 0 && row === 0) position = [column];
  if (!position || !position.every((index, axis) => index < shape[axis])) {
    throw new BadRequest(400, `${request.stage} has no value at map ${map}, row ${row}, column ${column}`);
  }
  const node = network.graph.find((n) => n.name === stage.node), weights = parameters(network, snapshot);
  const input = node.args[0] && typeof node.args[0] === "object" ? outputs[node.args[0].node] : null;
  const answer = input ? stepOf(node, paramsOf(node, weights), input, map, row, column) : { kind: "none" };
  if (answer.kind !== "none" && stage.shown !== stage.node) {  // the ReLU shown with it
    Object.assign(answer, { activation: "ReLU", after: Math.max(answer.sum, 0) });
  }
  const flat = position.reduce((offset, index, axis) => offset * shape[axis] + index, 0);
  return { stage: request.stage, map, row, column, value: value.data[flat], ...answer };
}

function stepOf(node, p, input, map, row, column) {
  const s = node.settings || {};
  if (node.op === "conv2d") {
    const [, C, H, W] = input.shape, [O, perGroup, KH, KW] = p.weight.shape, [[PT], [PL]] = s.padding;
    const first = Math.floor(map / (O / s.groups)) * perGroup, top = row * s.stride[0], left = column * s.stride[1];
    const patch = [], kernel = Array.from(p.weight.data.subarray(map * perGroup * KH * KW, (map + 1) * perGroup * KH * KW));
    for (let c = 0; c < perGroup; c++) for (let ky = 0; ky < KH; ky++) for (let kx = 0; kx < KW; kx++) {
      const iy = top - PT + ky * s.dilation[0], ix = left - PL + kx * s.dilation[1];
      patch.push(iy >= 0 && iy < H && ix >= 0 && ix < W ? input.data[((first + c) * H + iy) * W + ix] : 0);
    }
    const products = patch.map((v, i) => f32(v * kernel[i])), bias = p.bias ? p.bias.data[map] : 0;
    return { kind: "convolution", channels: [...Array(perGroup).keys()].map((c) => first + c), shape: [perGroup, KH, KW],
             patch, kernel, products, bias, sum: products.reduce((a, b) => a + b, 0) + bias, top: top - PT, left: left - PL };
  }
  if (node.op === "max_pool2d" && input.shape.length === 4 && s.plain) {
    const [, , H, W] = input.shape, [KH, KW] = s.kernel, top = row * s.stride[0], left = column * s.stride[1], block = [];
    const rows = Math.min(KH, H - top), columns = Math.min(KW, W - left);
    for (let y = top; y < top + rows; y++) {
      for (let x = left; x < left + columns; x++) block.push(input.data[(map * H + y) * W + x]);
    }
    const largest = Math.max(...block);
    return { kind: "pool", shape: [rows, columns], block, kept: block.indexOf(largest), sum: largest, top, left };
  }
  if (node.op === "linear") {
    const [, I] = p.weight.shape, weights = p.weight.data.subarray(column * I, (column + 1) * I);
    const contributions = Array.from(input.data, (v, i) => f32(weights[i] * v));
    const largest = [...contributions.keys()].sort((a, b) => Math.abs(contributions[b]) - Math.abs(contributions[a])).slice(0, 8);
    const total = contributions.reduce((a, b) => a + b, 0), bias = p.bias ? p.bias.data[column] : 0;
    return { kind: "linear", unit: column, inputs: I,
             largest: largest.map((i) => ({ index: i, input: input.data[i], weight: weights[i], product: contributions[i] })),
             rest: total - largest.reduce((sum, i) => sum + contributions[i], 0), bias, sum: total + bias };
  }
  return { kind: "none" };
}

// ---- What the export worked out with PyTorch: kernels, training curves, the explorer's answers.
function kernels(query) {
  const [, network, snapshot] = chosen(queryNumbers(query)), weights = parameters(network, snapshot);
  const kernel = (name) => weights[`${name}.weight`];  // (out, in, rows, columns)
  const described = (name) => ({ name, ...describe(tensor([1, ...kernel(name).shape], kernel(name).data)) });
  return { model: network.name, kernels: network.kernels.map(described) };
}

function training(query) {
  const [, network] = chosen(queryNumbers(query));
  return network.training;
}

function chosenSet(request) {
  if (EXPORT.sets.length === 0) throw new BadRequest(404, EXPORT.missing || "no labelled set was given");
  return wholeNumber({ set: 0, ...request }, "set", 0, EXPORT.sets.length - 1);
}

function answered(table, first, second) {
  // The export's (or a run's) answer at table[first][second]; a network trained in this page has
  // them for its final weights on MNIST's test set only.
  const found = table?.[first]?.[second];
  if (!found) throw new BadRequest(404, "this page has the explorer's answers of a network trained here for its final weights on MNIST's test set only");
  return found;
}

function testset(query) {
  const request = queryNumbers(query), [, network, snapshot] = chosen(request), set = chosenSet(request);
  return { model: network.name, ...answered(network.testsets, snapshot, set) };
}

async function examples(query) {
  const request = queryNumbers(query), [model, network, snapshot] = chosen(request), set = chosenSet(request);
  let count, indices, predicted, probabilities;
  if (has(request, "other")) {
    const other = wholeNumber(request, "other", 0, EXPORT.networks.length - 1);
    [count, indices, predicted, probabilities] = answered(EXPORT.comparisons[set], model, other);
  } else {
    const [trueDigit, said] = ["true", "predicted"].map((key) => wholeNumber(request, key, 0, 9));
    [count, indices, probabilities] = answered(network.cells, snapshot, set)[trueDigit * 10 + said];
    predicted = indices.map(() => said);
  }
  const images = await Promise.all(indices.map((index) => imageOf(set, index)));
  return { count, examples: indices.map((index, k) => ({ index, label: images[k][1], predicted: predicted[k],
                                                        probability: probabilities[k], pixels: Array.from(images[k][0]) })) };
}

function models() {
  return { models: EXPORT.networks.map((n) => n.name), snapshots: EXPORT.networks.map((n) => n.training.snapshots),
           sets: EXPORT.sets.map((set) => ({ name: set.name, count: set.count })), missing: EXPORT.missing,
           collect: EXPORT.collect && { ...EXPORT.collect, counts: collected.map((pictures) => pictures.length) } };
}

// ---- Collecting: drawings kept here, labelled, and downloaded as one zip of DIR/0 ... DIR/9.
const collected = Array.from({ length: 10 }, () => []), prepared = Array.from({ length: 10 }, () => []);  // PNGs; prepared digits

async function collect(request) {
  body(request);
  if (!EXPORT.collect) throw new BadRequest(404, "saving drawings is off: export with --collect DIR to turn it on");
  const label = wholeNumber(request, "label", 0, 9);
  if (Object.keys(request).some((key) => !["label", "pixels", "model", "snapshot"].includes(key)) || !has(request, "pixels")) {
    throw new BadRequest(400, "send label and pixels (a drawing) only");
  }
  const levels = greyOfPixels(request.pixels, EXPORT.limits.collect_side);  // the page's canvas at most
  const digit = prepareDigit(levels, request.pixels.length, request.pixels[0].length);  // a drawing without a digit would teach the network nothing
  if (collected[label].length >= EXPORT.collect.limit) {
    const limit = EXPORT.collect.limit;
    throw new BadRequest(409, `${EXPORT.collect.folder}/${label} holds ${limit} picture${limit === 1 ? "" : "s"} already, `
                              + "the most this page saves of one digit (draw.py --collect-limit)");
  }
  collected[label].push(await pngOf(request.pixels));
  prepared[label].push(digit.data);  // as trainRun mixes them in
  return { saved: nameOf(label, collected[label].length - 1), counts: collected.map((pictures) => pictures.length) };
}

function nameOf(label, number) { return `${label}/${String(number).padStart(4, "0")}.png`; }  // as collect.py names them

function pngOf(pixels) {
  const canvas = document.createElement("canvas");
  canvas.height = pixels.length; canvas.width = pixels[0].length;
  const context = canvas.getContext("2d"), image = context.createImageData(canvas.width, canvas.height);
  pixels.flat().forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  context.putImageData(image, 0, 0);
  return new Promise((resolve) => canvas.toBlob(
    (blob) => blob.arrayBuffer().then((buffer) => resolve(new Uint8Array(buffer))), "image/png"));
}

function zipOf(files, align = 1) {
  // A zip without compression (PNGs are compressed already): each file's header, its bytes, then
  // the central directory that lists them. With align, each file's bytes start at a multiple of
  // align in the archive (torch.save's 64, which lets torch.load map them), padded by an extra
  // field in the file's header as PyTorch's own writer pads them.
  const parts = [], directory = [], bytes = (n, size) => Array.from({ length: size }, (_, i) => (n >>> (8 * i)) & 255);
  let offset = 0;
  for (const [name, content] of files) {
    const nameBytes = new TextEncoder().encode(name), crc = crc32(content);
    // version 2.0, names in UTF-8 (a folder may be called "chiffres_é"), stored, 1980-01-01 00:00,
    // CRC-32, sizes, name length
    const common = [...bytes(20, 2), ...bytes(0x800, 2), ...bytes(0, 2), ...bytes(0, 2), ...bytes(33, 2), ...bytes(crc, 4),
                    ...bytes(content.length, 4), ...bytes(content.length, 4), ...bytes(nameBytes.length, 2)];
    const padding = align > 1 ? (align - ((offset + 30 + nameBytes.length + 4) % align)) % align : null;
    const extra = padding === null ? [] : [...bytes(0x4246, 2), ...bytes(padding, 2), ...new Array(padding).fill(0x5a)];
    const local = Uint8Array.from([...bytes(0x04034b50, 4), ...common, ...bytes(extra.length, 2), ...nameBytes, ...extra]);
    // + no extra field, no comment, disk 0, no attributes, where the file's header starts
    directory.push(Uint8Array.from([...bytes(0x02014b50, 4), ...bytes(20, 2), ...common, ...bytes(0, 2), ...bytes(0, 2), ...bytes(0, 2),
                                    ...bytes(0, 2), ...bytes(0, 4), ...bytes(offset, 4), ...nameBytes]));
    parts.push(local, content);
    offset += local.length + content.length;
  }
  const size = directory.reduce((total, entry) => total + entry.length, 0);
  const end = Uint8Array.from([...bytes(0x06054b50, 4), ...bytes(0, 4), ...bytes(files.length, 2), ...bytes(files.length, 2),
                               ...bytes(size, 4), ...bytes(offset, 4), ...bytes(0, 2)]);
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}

function crc32(content) {
  let crc = -1;
  for (const byte of content) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xEDB88320 & -(crc & 1));
  }
  return (crc ^ -1) >>> 0;
}

function download() {
  // The drawings so far as FOLDER.zip; unzipped, FOLDER is what train.py --extra-images-dir reads.
  // FOLDER is a name of its own (export.py never gives a path), or none for the root folder.
  const folder = EXPORT.collect.folder;
  const files = collected.flatMap((pictures, label) =>
    pictures.map((png, k) => [`${folder ? `${folder}/` : ""}${nameOf(label, k)}`, png]));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(zipOf(files));
  link.download = `${folder || "drawings"}.zip`;
  link.click();
  return files.length;
}

// ---- Back to Python: a checkpoint in train.py's format, written as torch.save writes one (a zip
// of a pickle, protocol 2, and each tensor's bytes), so that torch.load(path, weights_only=True),
// test.py, draw.py and train.py --init-from read it. The first step of training in the file.
class Real {  // a Python float that happens to be whole (a batch's accuracy of 1.0), not an int
  constructor(value) { this.value = value; }
}

class Ordered {  // collections.OrderedDict, as a state_dict is: [[key, value], ...] in order
  constructor(entries) { this.entries = entries; }
}

class Stored {  // a tensor: its dtype, its shape and a typed array that holds its values (little-endian)
  constructor(dtype, shape, values) { Object.assign(this, { dtype, shape, values }); }
}

// PyTorch's storage class and the bytes of one value, by dtype.
const STORAGES = { float32: ["FloatStorage", 4], float64: ["DoubleStorage", 8], float16: ["HalfStorage", 2],
                   bfloat16: ["BFloat16Storage", 2], int64: ["LongStorage", 8], int32: ["IntStorage", 4],
                   int16: ["ShortStorage", 2], int8: ["CharStorage", 1], uint8: ["ByteStorage", 1], bool: ["BoolStorage", 1] };

class Pickler {
  // The opcodes of pickle protocol 2 that torch.save's pickle uses and weights_only reads back:
  // dicts, lists, tuples, str, int, float, bool, None, and tensors as _rebuild_tensor_v2 of a
  // persistent id ("storage", class, key, "cpu", numel) whose bytes go to data/<key>.
  constructor() { this.out = [0x80, 2]; this.storages = []; }

  op(code, ...more) { this.out.push(typeof code === "string" ? code.charCodeAt(0) : code, ...more); }

  little(n, size) { for (let i = 0; i < size; i++) this.out.push((n >>> (8 * i)) & 255); }

  global(module, name) { this.op("c", ...new TextEncoder().encode(`${module}\n${name}\n`)); }

  tuple(items) {
    if (items.length === 0) return this.op(")");
    this.op("(");
    items.forEach((item) => this.value(item));
    this.op("t");
  }

  text(value) {
    const encoded = new TextEncoder().encode(value);
    this.op("X");
    this.little(encoded.length, 4);
    this.out.push(...encoded);
  }

  number(value, whole) {
    if (whole && value >= -(2 ** 31) && value < 2 ** 31) { this.op("J"); this.little(value, 4); return; }
    if (whole) {  // LONG1: a larger int, 8 bytes of two's complement, lowest first
      const view = new DataView(new ArrayBuffer(8));
      view.setBigInt64(0, BigInt(value), true);
      return this.op(0x8a, 8, ...new Uint8Array(view.buffer));
    }
    const view = new DataView(new ArrayBuffer(8));  // BINFLOAT: a double, big-endian
    view.setFloat64(0, value);
    this.op("G", ...new Uint8Array(view.buffer));
  }

  items(open, entries, close) {
    this.op(open);
    if (entries.length === 0) return;
    this.op("(");
    entries.forEach(([key, item]) => { if (key !== undefined) this.value(key); this.value(item); });
    this.op(close);
  }

  tensor(t) {
    if (!Object.hasOwn(STORAGES, t.dtype)) throw new BadRequest(400, `a tensor of dtype ${t.dtype} cannot be written`);
    const [storage, size] = STORAGES[t.dtype], count = t.shape.reduce((a, b) => a * b, 1), key = String(this.storages.length);
    if (t.values.byteLength !== count * size) throw new BadRequest(400, `a tensor of shape [${t.shape}] needs ${count} values`);
    this.storages.push(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength));
    const strides = t.shape.map((_, axis) => t.shape.slice(axis + 1).reduce((a, b) => a * b, 1));
    this.global("torch._utils", "_rebuild_tensor_v2");
    this.op("(");
    this.op("(");
    this.text("storage"); this.global("torch", storage); this.text(key); this.text("cpu"); this.number(count, true);
    this.op("t"); this.op("Q");  // the persistent id, then offset, size, stride, requires_grad, hooks
    this.number(0, true); this.tuple(t.shape); this.tuple(strides); this.op(0x89);
    this.global("collections", "OrderedDict"); this.op(")"); this.op("R");
    this.op("t"); this.op("R");
  }

  value(v) {
    if (v === null || v === undefined) this.op("N");
    else if (typeof v === "boolean") this.op(v ? 0x88 : 0x89);
    else if (typeof v === "number") this.number(v, Number.isInteger(v));
    else if (v instanceof Real) this.number(v.value, false);
    else if (typeof v === "string") this.text(v);
    else if (v instanceof Stored) this.tensor(v);
    else if (v instanceof Ordered) {
      this.global("collections", "OrderedDict"); this.op(")"); this.op("R");
      if (v.entries.length) { this.op("("); v.entries.forEach(([key, item]) => { this.value(key); this.value(item); }); this.op("u"); }
    } else if (Array.isArray(v)) this.items("]", v.map((item) => [undefined, item]), "e");
    else this.items("}", Object.entries(v), "u");
  }
}

function torchSaved(value, name = "model") {
  // torch.save(value) as a Blob: the records in torch.save's order under "<name>/", each tensor's
  // bytes 64-byte aligned.
  const pickler = new Pickler(), text = (t) => new TextEncoder().encode(t);
  pickler.value(value);
  pickler.op(".");
  return zipOf([[`${name}/data.pkl`, Uint8Array.from(pickler.out)], [`${name}/.format_version`, text("1")],
                [`${name}/.storage_alignment`, text("64")], [`${name}/byteorder`, text("little")],
                ...pickler.storages.map((bytes, key) => [`${name}/data/${key}`, bytes]), [`${name}/version`, text("3\n")]], 64);
}

function checkpointOf(state, fields) {
  // A checkpoint of train.py's format: state is the weights as [[key, Stored], ...] in
  // state_dict order; fields: epoch, history {loss, accuracy}, snapshots [{step, state}],
  // test_accuracy (each left out when undefined), and any other plain field as it is.
  const { history, snapshots, test_accuracy: accuracy, ...rest } = fields, reals = (values) => values.map((v) => new Real(v));
  const checkpoint = { model: new Ordered(state), ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) };
  if (history) checkpoint.history = { loss: reals(history.loss), accuracy: reals(history.accuracy) };
  if (snapshots) checkpoint.snapshots = snapshots.map(({ step, state: weights }) => ({ step, model: new Ordered(weights) }));
  if (accuracy !== undefined) checkpoint.test_accuracy = accuracy === null ? null : new Real(accuracy);
  return torchSaved(checkpoint);
}

function stateOf(network, snapshot) {
  // One snapshot's state_dict as the file holds it: the weights block's tensors, and the rest
  // (num_batches_tracked) from the export's state entries, which are the final weights'.
  const weights = parameters(network, snapshot);
  return network.state.map(([key, dtype, shape, bytes]) =>
    [key, new Stored(dtype, shape, bytes === null ? weights[key].data : bytesOf(bytes))]);
}

function fileCheckpoint(request) {
  // Network N's checkpoint as the file holds it: its final weights, its snapshots, the run's
  // history (rounded to 5 digits, as the page has it) and, on MNIST's test set, its accuracy.
  if (request === null || typeof request !== "object" || Array.isArray(request)
      || Object.keys(request).some((key) => key !== "model")) {
    throw new BadRequest(400, "send model (the number of a network) only");
  }
  const [, network] = chosen(request), last = network.weights.length - 1, run = network.training;
  const set = EXPORT.sets[0];
  return checkpointOf(stateOf(network, last), {
    history: { loss: run.loss, accuracy: run.accuracy },
    snapshots: run.snapshots.map((step, k) => ({ step, state: stateOf(network, k) })),
    test_accuracy: set && set.mnist ? network.testsets[last][0].accuracy : undefined,
  });
}

async function checkpoint(request) {
  // The contract for scripts: the checkpoint's bytes, in base64.
  return base64Of(new Uint8Array(await fileCheckpoint(request).arrayBuffer()));
}

function base64Of(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function downloadCheckpoint(request) {
  // The page's "Download model.pt": the chosen network's checkpoint, as a file.
  const link = document.createElement("a");
  link.href = URL.createObjectURL(fileCheckpoint(request));
  link.download = "model.pt";
  link.click();
}


// ---- Training in the file: trainSteps (a few steps on one batch, for scripts) and trainRun (a
// whole run, and the Train panel that calls it), each in a Web Worker made of maths.js and
// trainer.js, so that the page keeps answering; one at a time, and trainStop() ends either.
const TRAINING = EXPORT.limits.training;  // the bounds of their bodies, from page/export.py
let running = null;  // the training in progress: {stopped, halt(), stop()}

async function trainingAlone(work) {
  // work(run) as the page's one training; trainStop() at any moment until it ends makes it fail
  // with "training stopped": run.halt() ends a worker at once, run.stopped is looked at between steps.
  if (running) throw new BadRequest(409, "a network is training in this page already: wait for it to finish, or stop it");
  const run = running = { stopped: false, halt() {}, stop() { this.stopped = true; this.halt(); } };
  try {
    return await work(run);
  } finally {
    running = null;
  }
}

function unlessStopped(run) { if (run.stopped) throw new BadRequest(409, "training stopped"); }

function inWorker(run, message, onMessage = () => {}) {
  // Sends message to a new training worker; resolves to its "done" message, and is refused as
  // the training ends otherwise (its "failed": 422; an error: 500; trainStop: 409). onMessage sees
  // every message it sends.
  let worker;
  try {
    worker = new Worker(URL.createObjectURL(new Blob(["maths-js", "trainer-js"].map((id) => document.getElementById(id).textContent),
                                                     { type: "text/javascript" })));
  } catch (error) {  // a browser that runs no worker from a page's own script
    return Promise.reject(new BadRequest(500, `this browser cannot start the page's training worker: ${error.message}`));
  }
  return new Promise((resolve, reject) => {
    const end = (error, data) => { worker.terminate(); run.halt = () => {}; if (error) reject(error); else resolve(data); };
    run.halt = () => end(new BadRequest(409, "training stopped"));
    worker.onerror = (event) => { event.preventDefault(); end(new BadRequest(500, `training stopped: ${event.message}`)); };
    worker.onmessage = ({ data }) => {  // settled first: the caller's promise goes on after onMessage, which may fail
      if (data.kind === "failed") end(new BadRequest(422, data.message));
      if (data.kind === "done") end(null, data);
      onMessage(data);
    };
    worker.postMessage({ ...message, kernels: maths.kernelsInUse() });  // the page's own maths: kernels.wasm or the plain loops
  });
}

function rates(request) {
  // lr and weightDecay, checked alike for both.
  const { lr, weightDecay } = request;
  if (typeof lr !== "number" || !(lr > 0 && lr <= TRAINING.lr)) throw new BadRequest(400, `lr must be a number above 0, at most ${TRAINING.lr}`);
  if (typeof weightDecay !== "number" || !(weightDecay >= 0 && weightDecay <= TRAINING.weightDecay)) {
    throw new BadRequest(400, `weightDecay must be a number from 0 to ${TRAINING.weightDecay}`);
  }
  return { lr, weightDecay };
}

function trainingBody(request) {
  // The checks of trainSteps' body, each refused in one line; returns what it asks for.
  onlyFields(request, ["model", "images", "labels", "lr", "steps", "dropout", "weightDecay"]);
  const [model, network] = chosen(has(request, "model") ? { model: request.model } : {});  // 0 unless named
  const images = request.images, most = TRAINING.images;
  if (!Array.isArray(images) || images.length < 1 || images.length > most) {
    throw new BadRequest(400, `images must be a list of 1 to ${most} images`);
  }
  const input = tensor([images.length, 1, 28, 28]);
  images.forEach((image, k) => {
    if (!Array.isArray(image) || image.length !== 28 || !image.every((row) => Array.isArray(row) && row.length === 28)) {
      throw new BadRequest(400, `image ${k} must be 28 rows of 28 grey levels`);
    }
    image.forEach((row, y) => row.forEach((v, x) => {
      if (!Number.isInteger(v) || v < 0 || v > 255) throw new BadRequest(400, `image ${k}: grey levels must be whole numbers from 0 to 255`);
      input.data[k * 784 + y * 28 + x] = normalise(v);
    }));
  });
  const labels = request.labels;
  if (!Array.isArray(labels) || labels.length !== images.length || !labels.every((d) => Number.isInteger(d) && d >= 0 && d <= 9)) {
    throw new BadRequest(400, "labels must be one digit from 0 to 9 for each image");
  }
  const { lr, weightDecay } = rates({ weightDecay: 0, ...request });
  const dropout = has(request, "dropout") ? request.dropout : false;
  if (typeof dropout !== "boolean") throw new BadRequest(400, "dropout must be true or false");
  return { model, network, input, labels, lr, weightDecay, steps: wholeNumber(request, "steps", 1, TRAINING.steps), dropout };
}

function trainingCopy(network, snapshot) {
  // Copies of a snapshot's weights to train (the page keeps showing its own, unchanged).
  return Object.fromEntries(Object.entries(parameters(network, snapshot)).map(([key, t]) => [key, tensor(t.shape.slice(), Float32Array.from(t.data))]));
}

function trainable(model, network) {
  // Refuses, in one line naming the node, a network the file cannot train.
  const why = untrainable(network);
  if (why) throw new BadRequest(422, `network ${model} (${network.name}) cannot be trained in this file: ${why}`);
}

function layersOf(network) {  // what a training worker needs of a network
  return { graph: network.graph, output: network.output, tensors: network.tensors };
}

async function trainSteps(request) {
  // K Adam steps on one batch from network N's final weights: the losses, the first step's
  // gradients and the weights (with batch norm's running statistics) after the last.
  const { model, network, input, labels, lr, weightDecay, steps, dropout } = trainingBody(request);
  trainable(model, network);
  const weights = trainingCopy(network, network.weights.length - 1);
  const done = await trainingAlone((run) => inWorker(run, { job: "steps", network: layersOf(network), weights, input, labels,
                                                            lr, weightDecay, steps, dropout }));
  return { losses: done.losses, gradients: Object.fromEntries(Object.entries(done.gradients).map(([key, values]) => [key, Array.from(values)])),
           state: Object.fromEntries(network.tensors.map(([key]) => [key, Array.from(done.weights[key])])) };
}

const RUN_DEFAULTS = { model: 0, epochs: 3, batchSize: 64, lr: 0.01, weightDecay: 0, seed: 0, extra: false, from: "fresh" };
const LOG_INTERVAL = 100, REDRAW_INTERVAL = 200, DIVERGED_LOSS = 100;  // as train.py: --log-interval, cli.DIVERGED_LOSS
const EXTRA_PER_EPOCH = 8000, EXTRA_MOST = 30;  // as extras/pictures.py repeats --extra-images-dir pictures

function runBody(request) {
  // trainRun's body, each value checked and refused in one line; the defaults are the tutorial's.
  onlyFields(request, Object.keys(RUN_DEFAULTS));
  const body = { ...RUN_DEFAULTS, ...request }, [model, network] = chosen({ model: body.model });
  for (const key of ["epochs", "batchSize"]) wholeNumber(body, key, 1, TRAINING[key]);
  wholeNumber(body, "seed", 0, TRAINING.seed);
  rates(body);
  if (typeof body.extra !== "boolean") throw new BadRequest(400, "extra must be true or false");
  if (!["fresh", "initial", "trained"].includes(body.from)) throw new BadRequest(400, "from must be fresh, initial or trained");
  if (body.from === "initial" && network.training.snapshots[0] !== 0) {
    throw new BadRequest(409, `network ${model} (${network.name}) has no initial weights in this file (trained with --no-snapshots): start from fresh or trained`);
  }
  trainable(model, network);
  checkpointable(model, network);
  return { ...body, model, network };
}

function checkpointable(model, network) {
  // Refuses, before it trains, a network whose checkpoint the file could not write at the end.
  const [key, dtype] = network.state.find(([, type]) => !Object.hasOwn(STORAGES, type)) ?? [];
  if (key) {
    throw new BadRequest(422, `network ${model} (${network.name}) cannot be trained in this file: its ${key} is ${dtype}, `
                              + "which the checkpoint it writes cannot hold");
  }
}

function extraPictures(wanted) {
  // The drawings collected so far, prepared as test.py --image prepares them, and how many times
  // each is seen an epoch (train.py's rule: about 8,000 an epoch, at most 30 each).
  const labels = prepared.flatMap((digits, label) => digits.map(() => label));
  if (!wanted) return { images: new Float32Array(0), labels: [], repeats: 0 };
  if (!labels.length) throw new BadRequest(409, "no drawings are collected yet: save some with the digit buttons, then train with them");
  const images = new Float32Array(labels.length * 784);
  prepared.flat().forEach((digit, k) => images.set(digit, k * 784));
  return { images, labels, repeats: Math.min(EXTRA_MOST, Math.max(1, roundHalfEven(EXTRA_PER_EPOCH / labels.length))) };
}

function snapshotSteps(total) {  // cli.snapshot_steps: 0, 1, 2, 5, 10, 20, 50, ... and the last step
  const steps = [0];
  for (let scale = 1; scale < total; scale *= 10) steps.push(...[1, 2, 5].map((f) => f * scale).filter((step) => step < total));
  return [...steps, total];
}

async function trainRun(request, onMessage = () => {}) {
  // A whole run (the contract for scripts, and the Train panel's button): resolves to the test
  // accuracy, the seconds it trained and the checkpoint's bytes in base64, once the trained
  // network has joined the page's networks (as the last one, model).
  const body = runBody(request);
  return trainingAlone(async (run) => {
    const sets = await mnistImages();
    unlessStopped(run);  // stopped while the images were decoded
    if (!sets) throw new BadRequest(404, "this file carries no training images: export it with draw.py --data-dir DIR (see --train-images)");
    const extra = extraPictures(body.extra), count = sets.train.labels.length + extra.labels.length * extra.repeats;
    if (count < body.batchSize) throw new BadRequest(400, `batchSize ${body.batchSize} is larger than the ${count} training images`);
    const steps = Math.floor(count / body.batchSize) * body.epochs;
    const settings = { epochs: body.epochs, batchSize: body.batchSize, lr: body.lr, weightDecay: body.weightDecay, seed: body.seed,
                       fresh: body.from === "fresh", logInterval: LOG_INTERVAL, redrawInterval: REDRAW_INTERVAL,
                       snapshotSteps: snapshotSteps(steps), divergedLoss: DIVERGED_LOSS, mean: EXPORT.mean, std: EXPORT.std };
    const start = body.from === "trained" ? body.network.weights.length - 1 : 0;  // fresh weights are drawn over snapshot 0's
    const live = joinedNetwork(body.network, `trained in this page (${body.epochs} epoch${body.epochs > 1 ? "s" : ""}, seed ${body.seed})`);
    try {
      const done = await inWorker(run, { job: "run", network: layersOf(body.network), weights: trainingCopy(body.network, start), settings,
                                         data: { images: sets.train.images, labels: sets.train.labels, extra, test: sets.test } }, (data) => {
        if (data.kind === "weights") live.cache = [tensorsOf(live, data.weights)];
        onMessage({ ...data, model: EXPORT.networks.indexOf(live), weights: undefined, snapshots: undefined });
      });
      const result = await finished(live, body, done, sets.test);
      unlessStopped(run);  // stopped while it was tested and its checkpoint written
      return result;
    } catch (error) {  // refused, stopped or failed: the page keeps no network of a run that did not end
      EXPORT.networks.splice(EXPORT.networks.indexOf(live), 1);
      throw error;
    }
  });
}

function trainStop() {
  // Stops the training in progress, at any moment (its trainRun or trainSteps is refused with
  // "training stopped"); whether one was.
  if (running) running.stop();
  return running !== null;
}

function tensorsOf(network, weights) {
  return Object.fromEntries(network.tensors.map(([key, shape]) => [key, tensor(shape, weights[key])]));
}

function joinedNetwork(base, name) {
  // The network being trained, added to the page's networks as its last: base's graph, stages and
  // kernels, and its weights as they are now (the worker sends them every REDRAW_INTERVAL steps).
  const taken = new Set(EXPORT.networks.map((network) => network.name));
  let unique = name;
  for (let run = 2; taken.has(unique); run++) unique = `${name}, run ${run}`;
  const network = { ...base, name: unique, weights: [null], cache: [parameters(base, base.weights.length - 1)],
                    training: { model: unique, snapshots: [0], loss: [], accuracy: [] }, testsets: [[]], cells: [[]] };
  EXPORT.networks.push(network);
  return network;
}

async function finished(network, body, data, test) {
  // The run's end: the network's snapshots (for the training slider), its curves, its answers on
  // MNIST's test set (for the explorer, at its final weights) and its checkpoint.
  network.weights = data.snapshots.map(() => null);  // held as tensors in cache, not as the export's blocks
  network.cache = data.snapshots.map((snapshot) => tensorsOf(network, snapshot.weights));
  network.training = { model: network.name, snapshots: data.snapshots.map((snapshot) => snapshot.step),
                       loss: data.history.loss.map((v) => round(v, 5)), accuracy: data.history.accuracy.map((v) => round(v, 5)) };
  network.state = countedState(network.state, data.steps, body.from === "fresh");
  const last = data.snapshots.length - 1, answers = explorerAnswers(data.test, test);
  network.testsets = Object.assign([], { [last]: [answers.testset] });
  network.cells = Object.assign([], { [last]: [answers.cells] });
  const model = EXPORT.networks.indexOf(network), bytes = new Uint8Array(await fileCheckpoint({ model }).arrayBuffer());
  return { model, testAccuracy: answers.testset.accuracy, confusion: answers.testset.confusion, seconds: data.seconds,
           steps: data.steps, drawings: data.drawings, checkpoint: base64Of(bytes) };
}

function countedState(entries, steps, fresh) {
  // The state entries with each batch norm's num_batches_tracked moved on by the run's steps.
  return entries.map(([key, dtype, shape, bytes]) => {
    if (!key.endsWith("num_batches_tracked") || bytes === null) return [key, dtype, shape, bytes];
    const count = new BigInt64Array(1);
    count[0] = (fresh ? 0n : new BigInt64Array(bytesOf(bytes).buffer)[0]) + BigInt(steps);
    return [key, dtype, shape, base64Of(new Uint8Array(count.buffer))];
  });
}

function explorerAnswers({ predicted, probability }, test) {
  // What the explorer shows of a network on MNIST's test set (page.routes.Explorer): accuracy,
  // confusion matrix and each cell's 60 most confident images.
  const confusion = Array.from({ length: 10 }, () => new Array(10).fill(0)), members = Array.from({ length: 100 }, () => []);
  test.labels.forEach((label, i) => { confusion[label][predicted[i]]++; members[label * 10 + predicted[i]].push(i); });
  const right = confusion.reduce((sum, row, digit) => sum + row[digit], 0);
  const cells = members.map((indices) => {
    const shown = indices.sort((a, b) => probability[b] - probability[a] || a - b).slice(0, 60);
    return [indices.length, shown, shown.map((i) => round(probability[i], 4))];
  });
  return { testset: { set: EXPORT.sets[0].name, count: test.labels.length, accuracy: right / test.labels.length, confusion }, cells };
}

window.routes = { models, kernels, training, testset, examples, predict, step, attribution, collect, download,
                  checkpoint, downloadCheckpoint, trainSteps, trainRun, trainStop };
})();
