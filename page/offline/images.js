// The images the exported file holds: the explorer's (one PNG a set, the export's sprite) and, when
// it carries them for training, MNIST's training and test sets (page/mnist_sets.py says how they
// are packed: base85 text of deflated runs of zeros and ink), each decoded once, when first needed.
"use strict";
(() => {
const { EXPORT, bytesOf, bitmapOf, greyOf } = offline;

let sprites = null;  // the explorer's images, decoded once: one Uint8Array of 28 x 28 pixels per set
function setImages() {
  // The promise is kept, not its result: the images of a cell ask at once, and one decoding serves all.
  sprites ??= Promise.all(EXPORT.sets.map(async (set) => {
    if (!set.sprite) return new Uint8Array(0);
    const png = bytesOf(set.sprite.slice(set.sprite.indexOf(",") + 1));  // the export's own PNG
    const [levels] = greyOf(await bitmapOf(png)), columns = EXPORT.sprite_columns, width = columns * 28;
    const count = set.indices.length, pixels = new Uint8Array(count * 784);
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
  const pixels = (await setImages())[set].subarray(position * 784, (position + 1) * 784);
  return [pixels, EXPORT.sets[set].labels[position]];
}

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

async function unpackedSet(set, alphabet) {
  const stream = new Blob([fromBase85(document.getElementById(set.element).textContent, alphabet)]).stream();
  const inflated = new Response(stream.pipeThrough(new DecompressionStream("deflate-raw")));
  const bytes = new Uint8Array(await inflated.arrayBuffer()), images = new Uint8Array(set.count * 784);
  let pixel = 0, ink = set.runs;  // the runs, then the ink's grey levels
  for (let run = 0; run < set.runs; run++) {  // alternately zeros (already there) and ink
    const end = pixel + bytes[run];
    if (run % 2 === 0) pixel = end;
    else while (pixel < end) images[pixel++] = bytes[ink++];
  }
  if (pixel !== images.length || ink !== bytes.length) {
    throw new Error(`the file's MNIST images (${set.element}) are damaged`);
  }
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

Object.assign(offline, { positionOf, wholeSetHeld, imageOf, mnistImages });
})();
