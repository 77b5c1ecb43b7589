// The exported file's networks: each snapshot's weights, cut from the blocks the export wrote
// (float32, or rounded to 8 or 4 bits: export.compact_weights), and a network run on an input
// through its graph, forward and backward, with the maths' operations in eval mode.
"use strict";
(() => {
const { EXPORT, bytesOf, floats } = offline;
const { tensor, forward, backward, evalOperation } = maths;

// WebAssembly with fused multiply-adds, or SIMD, where the browser has it, else the plain loops
maths.useKernels(EXPORT.kernels.map(([name, base64]) => [name, bytesOf(base64)]));

const size = (shape) => shape.reduce((a, b) => a * b, 1);

function parameters(network, snapshot) {
  // The tensors of one snapshot, by state_dict key, cut from the snapshot's one block of floats.
  network.cache ??= [];
  const block = network.weights[snapshot];
  if (typeof block === "number") return parameters(network, block);  // the same weights as that block
  if (!network.cache[snapshot]) {
    const all = typeof block === "string" ? floats(block) : unpacked(block, network.tensors), found = {};
    let offset = 0;
    for (const [key, shape] of network.tensors) {
      found[key] = tensor(shape, all.subarray(offset, offset + size(shape)));
      offset += size(shape);
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
  const values = new Float32Array(tensors.reduce((total, [, shape]) => total + size(shape), 0));
  let n = 0, row = 0;
  for (const [, shape] of tensors) {
    const rows = shape.length > 1 ? shape[0] : 1, perRow = size(shape) / rows;
    for (let r = 0; r < rows; r++, row++) {
      for (let k = 0; k < perRow; k++, n++) {
        const code = (bytes[Math.floor(n / perByte)] >> (block.bits * (n % perByte))) & mask;
        values[n] = (code - zero) * scales[row];
      }
    }
  }
  return values;
}

function tensorsOf(network, weights) {
  // A network's tensors by state_dict key from plain arrays of their values (a training worker's).
  return Object.fromEntries(network.tensors.map(([key, shape]) => [key, tensor(shape, weights[key])]));
}

function run(network, snapshot, input) {
  return forward(network, parameters(network, snapshot), input, evalOperation);
}

function inputGradient(network, snapshot, outputs, outputGradient) {
  const weights = parameters(network, snapshot);
  return backward(network, weights, outputs, outputGradient, evalOperation)[network.graph[0].name];
}

Object.assign(offline, { parameters, tensorsOf, run, inputGradient });
})();
