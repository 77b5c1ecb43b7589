// The network's maths in the exported file (python draw.py model.pt --export page.html), which both
// the page and its training worker (trainer.js) run; this first file holds the namespace maths that
// the others add to, tensors and the matrix products that convolutions and linear layers are made of.
// Each family of layers has a file of its own, forward and backward together (ConvNetJS's layout).
"use strict";
/* exported maths */  // the namespace the other files add to
const maths = {
  // Each operation of the export's graph by its op name, {forward, backward, ...}: the families'
  // files add theirs; an operation with parameters also has paramsBackward (their gradients).
  operations: {},
};

(() => {
const f32 = Math.fround;

// Tensors: {shape, data}, the batch first, values in a Float32Array as PyTorch keeps them.
function tensor(shape, data = zeros(shape.reduce((a, b) => a * b, 1))) {
  return { shape, data };
}

// A tensor that its maker writes whole (see zeros): an operation's output, not zeroed first.
const written = (shape) => tensor(shape, zeros(shape.reduce((a, b) => a * b, 1), Float32Array, false));

// A training step makes the same arrays, in the same order, at every step. In a scratchpad's
// steps (reusing) the nth array asked for is the nth of the step before, zeroed again, instead of
// a new one: a browser gives a new large array pages fresh from the system, whose first touch
// costs more than the arithmetic done in them (docs/page.md, "Why Chromium lagged"). Where the
// WebAssembly kernels run, kernels.js lays the arrays out in their memory (scratch.home), so that
// the kernels work on them where they are instead of on copies.
const scratch = { pad: null, home: null };  // the scratchpad of the step in progress, or null

function zeros(length, Type = Float32Array, cleared = true) {
  // A new array of length zeros, or, in a scratchpad's step, the one made at this point of the last
  // (zeroed again unless cleared is false: for an array that its maker writes whole).
  const { pad } = scratch;
  if (!pad) return new Type(length);
  const index = pad.next++, old = pad.arrays[index];
  if (old && old.length === length && old.constructor === Type) return cleared ? old.fill(0) : old;
  pad.arrays[index] = new Type(length);
  pad.homeless = true;
  return pad.arrays[index];
}

function reusing(scratchpad, work) {
  // work() with scratchpad's arrays ({arrays: []} to start), which are handed out again at its
  // next call: nothing made in one call may be kept past the next.
  const outer = scratch.pad;
  if (scratchpad.homeless && scratch.home) scratchpad.arrays = scratch.home(scratchpad);
  scratchpad.homeless = false;
  scratch.pad = scratchpad;
  scratchpad.next = 0;
  try {
    return work();
  } finally {
    scratch.pad = outer;
  }
}

function normalised(mean, std) {
  // The network's input for each grey level 0 ... 255: (level / 255 - mean) / std, in float32
  // steps as the tutorial's ToTensor() and Normalize((mean,), (std,)) compute it.
  return Float32Array.from({ length: 256 }, (_, level) => f32(f32(f32(level / 255) - mean) / std));
}

function outputSide(size, kernel, stride, before, after, dilation, ceil) {
  // An output's side for a window sliding over size values (convolutions and pooling alike).
  const span = (size + before + after - dilation * (kernel - 1) - 1) / stride;
  let side = (ceil ? Math.ceil(span) : Math.floor(span)) + 1;
  // PyTorch: with ceil_mode, the last window must start inside the input or the left padding.
  if (ceil && (side - 1) * stride >= size + before) side -= 1;
  return side;
}

// Matrix products: C[M x N] = (C if accumulate, else 0) + A B (nn) or + A B^T (nt), every matrix
// row-major in a Float32Array. kernels.js swaps in kernels.wasm's where the browser has it.
const matmul = {
  nn(C, A, B, M, K, N, accumulate) {
    for (let m = 0; m < M; m++) {
      const row = C.subarray(m * N, (m + 1) * N);
      if (!accumulate) row.fill(0);
      for (let k = 0; k < K; k++) {
        const a = A[m * K + k];
        for (let n = 0, b = k * N; n < N; n++, b++) row[n] += a * B[b];
      }
    }
  },
  nt(C, A, B, M, K, N, accumulate) {
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0, a = m * K, b = n * K; k < K; k++, a++, b++) sum += A[a] * B[b];
      C[m * N + n] = (accumulate ? C[m * N + n] : 0) + sum;
    }
  },
};

// Value by value, over whole arrays: ReLU (max(x, 0), a NaN kept), its gradient (g where x > 0,
// else 0), a product (dropout's gradient, g times the mask), dropout itself and the sums of maps
// (mapSums). kernels.js swaps in kernels.wasm's.
const pointwise = {
  relu(y, x) {
    for (let i = 0; i < y.length; i++) y[i] = Math.max(x[i], 0);
  },
  reluGradient(dx, g, x) {
    for (let i = 0; i < dx.length; i++) dx[i] = g[i] * (x[i] > 0);  // true is 1, false 0: no if to guess
  },
  times(out, a, b) {
    for (let i = 0; i < out.length; i++) out[i] = a[i] * b[i];
  },
  // y = x mask, the mask scale where random() gives at least p, else 0: one number a value.
  dropout(y, mask, x, random, p, scale) {
    for (let i = 0; i < y.length; i++) {
      mask[i] = (random() >= p) * scale;  // kept (true, 1) or dropped (false, 0), without an if
      y[i] = x[i] * mask[i];
    }
  },
  mapSums(sums, values, B, C, area) {  // values: B images of C maps of area values
    const totals = new Float64Array(C);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) {
      let sum = 0;
      for (let i = (b * C + c) * area, end = i + area; i < end; i++) sum += values[i];
      totals[c] += sum;
    }
    sums.set(totals);
  },
};

function transposed(values, rows, columns) {
  const out = zeros(rows * columns, Float32Array, false);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) out[c * rows + r] = values[r * columns + c];
  }
  return out;
}

function mapSums(g) {
  // Each map's (or unit's) sum over the batch and its positions: the bias gradient of a
  // convolution (B, C, H, W) or a linear layer (B, C). Added up in float64: a bias before a batch
  // norm has a gradient of zero, which float32 sums would turn into noise whose sign Adam follows.
  const [B, C] = g.shape, sums = new Float32Array(C);
  pointwise.mapSums(sums, g.data, B, C, g.data.length / B / C);
  return sums;
}

Object.assign(maths, { f32, tensor, written, scratch, zeros, reusing, normalised, outputSide, matmul,
                       pointwise, transposed, mapSums });
})();
