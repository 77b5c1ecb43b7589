// The drawing page's learned kernels (GET /kernels): each convolution's kernels as one canvas, a
// row per kernel and a square per input map, red weights adding the value under them, blue ones
// subtracting it.
"use strict";
(() => {
const { SCALES, shapeText, packed, legend, getJSON, query } = page;

async function loadKernels() {
  const answer = await getJSON(`/kernels?${query({})}`);
  document.getElementById("kernels").replaceChildren(...answer.kernels.map(kernelSection));
}

function kernelSection(layer) {
  const [outputs, inputs, height, width] = layer.shape;
  const largest = Math.max(...layer.values.map(Math.abs));
  const section = document.createElement("section");
  section.className = "stage panel";
  section.dataset.kernels = layer.name;
  const title = document.createElement("h2");
  title.textContent = `Learned kernels of ${layer.name}`;
  const shape = document.createElement("span");
  shape.className = "shape";
  shape.textContent = shapeText(layer.shape);
  title.append(shape);
  const sentence = document.createElement("p");
  sentence.className = "why";
  sentence.textContent = `${outputs} kernels of ${inputs} × ${height} × ${width}`
    + (inputs === 1 ? "" : ` (one row each, one ${height} × ${width} square per input map)`)
    + `: the weights training learned. Red weights add the value under them, blue ones subtract it. `;
  sentence.append(legend("signed", largest));
  section.append(title, kernelSheet(layer, SCALES.signed(largest)), sentence);
  return section;
}

function kernelSheet(layer, colour) {
  // A layer's kernels as one canvas: one row per kernel, one bordered square per input map, and
  // the kernels of a single map side by side, larger. A canvas for each square made every redraw
  // of the page slow (pytorch/examples' Net has 64 x 32 of them).
  const [outputs, inputs, height, width] = layer.shape;
  const [rows, columns] = inputs === 1 ? [1, outputs] : [outputs, inputs], gap = 3;
  const zoom = zoomOf(layer.shape, rows * columns, gap);
  const cellHeight = zoom * height + 2, cellWidth = zoom * width + 2;  // with a 1-pixel border
  const canvas = document.createElement("canvas");
  canvas.className = "kernel-sheet";
  canvas.width = columns * (cellWidth + gap) - gap;
  canvas.height = rows * (cellHeight + gap) - gap;
  const context = canvas.getContext("2d"), image = context.createImageData(canvas.width, canvas.height);
  const pixels = new Uint32Array(image.data.buffer);
  const fill = (left, top, across, down, rgb) => {
    for (let y = top; y < top + down; y++) {
      pixels.fill(packed(rgb), y * canvas.width + left, y * canvas.width + left + across);
    }
  };
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) {  // kernel (output, input) at (row, column)
      const left = column * (cellWidth + gap), top = row * (cellHeight + gap);
      const first = (row * inputs + column) * height * width;
      fill(left, top, cellWidth, cellHeight, [204, 204, 204]);  // the border, under the weights
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const weight = layer.values[first + y * width + x];
          fill(left + 1 + x * zoom, top + 1 + y * zoom, zoom, zoom, colour(weight));
        }
      }
    }
  }
  context.putImageData(image, 0, 0);
  canvas.style.width = `${canvas.width}px`;
  return canvas;
}

function zoomOf([, inputs, height, width], squares, gap) {
  // Canvas pixels a weight, each way: a square's side of about 60 page pixels (a single map's
  // kernels) or 30, fewer where the canvas would exceed 4 million pixels.
  const side = inputs === 1 ? 60 : 30, most = 4e6;
  let zoom = Math.max(1, Math.floor(side / Math.max(height, width)));
  while (zoom > 1 && squares * (zoom * height + 2 + gap) * (zoom * width + 2 + gap) > most) zoom -= 1;
  return zoom;
}

Object.assign(page, { loadKernels });
})();
