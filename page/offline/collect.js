// Collecting in the exported file (draw.py --collect DIR --export): drawings kept in the page,
// labelled, checked as page/collect.py checks them, and downloaded as one zip of DIR/0 ... DIR/9
// that train.py --extra-images-dir reads; prepared as test.py --image prepares them, for training.
"use strict";
(() => {
const { EXPORT, BadRequest, said, has, body, wholeNumber } = offline;
const { prepareDigit, greyOfPixels, zipOf, downloaded } = offline;

// Per digit, the PNGs of its drawings and, for training, the digits prepared from them.
const collected = Array.from({ length: 10 }, () => []), prepared = Array.from({ length: 10 }, () => []);

async function collect(request) {
  body(request);
  if (!EXPORT.collect) throw new BadRequest(404, said("collecting_off", { how: "export" }));
  const label = wholeNumber(request, "label", 0, 9);
  const fields = ["label", "pixels", "model", "snapshot"];
  const unexpected = Object.keys(request).some((key) => !fields.includes(key));
  if (unexpected || !has(request, "pixels")) throw new BadRequest(400, said("collect_fields"));
  const levels = greyOfPixels(request.pixels, EXPORT.limits.collect_side);  // the page's canvas at most
  // A drawing without a digit would teach the network nothing.
  const digit = prepareDigit(levels, request.pixels.length, request.pixels[0].length);
  const { folder, limit } = EXPORT.collect;
  if (collected[label].length >= limit) {
    const pictures = `${limit} picture${limit === 1 ? "" : "s"}`;
    throw new BadRequest(409, said("folder_full", { folder, label, pictures }));
  }
  collected[label].push(await pngOf(request.pixels));
  prepared[label].push(digit.data);  // as trainRun mixes them in
  return { saved: nameOf(label, collected[label].length - 1), counts: collectedCounts() };
}

function collectedCounts() { return collected.map((pictures) => pictures.length); }

// A drawing's name in its folder, as page/collect.py names them.
function nameOf(label, number) { return `${label}/${String(number).padStart(4, "0")}.png`; }

function pngOf(pixels) {
  const canvas = document.createElement("canvas");
  canvas.height = pixels.length; canvas.width = pixels[0].length;
  const context = canvas.getContext("2d"), image = context.createImageData(canvas.width, canvas.height);
  pixels.flat().forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  context.putImageData(image, 0, 0);
  return new Promise((resolve) => canvas.toBlob(
    (blob) => blob.arrayBuffer().then((buffer) => resolve(new Uint8Array(buffer))), "image/png"));
}

function download() {
  // The drawings so far as FOLDER.zip; unzipped, FOLDER is what train.py --extra-images-dir reads.
  // FOLDER is a name of its own (export.py never gives a path), or none for the root folder.
  const folder = EXPORT.collect.folder;
  const files = collected.flatMap((pictures, label) =>
    pictures.map((png, k) => [`${folder ? `${folder}/` : ""}${nameOf(label, k)}`, png]));
  downloaded(zipOf(files), `${folder || "drawings"}.zip`);
  return files.length;
}

function preparedDrawings() {
  // The drawings collected so far, prepared: {images: Float32Array of 28 x 28 each, labels}.
  const labels = prepared.flatMap((digits, label) => digits.map(() => label));
  const images = new Float32Array(labels.length * 784);
  prepared.flat().forEach((digit, k) => images.set(digit, k * 784));
  return { images, labels };
}

Object.assign(offline, { collect, download, collectedCounts, preparedDrawings });
})();
