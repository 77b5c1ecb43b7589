// The layers that apply a function to each value or to each line of values, forward and backward:
// ReLU, leaky ReLU, tanh, sigmoid, softmax and log_softmax (and the softmax of the answer itself).
// Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor, written, pointwise } = maths;

// Written out: the commonest operation, the pixels picture runs it 64 times and training runs it
// most: tensors.js's pointwise loops, or kernels.wasm's.
const relu = {
  forward(x) {
    const y = written(x.shape);
    pointwise.relu(y.data, x.data);
    return y;
  },
  backward(g, x) {
    const dx = written(x.shape);
    pointwise.reluGradient(dx.data, g.data, x.data);
    return dx;
  },
};

function elementwise(value, slope) {
  // value(x) and its derivative slope(x, y), applied to every element.
  return {
    forward(x, s) {
      const y = tensor(x.shape);
      for (let i = 0; i < y.data.length; i++) y.data[i] = value(x.data[i], s);
      return y;
    },
    backward(g, x, s, p, y) {
      const dx = tensor(x.shape);
      for (let i = 0; i < dx.data.length; i++) dx.data[i] = g.data[i] * slope(x.data[i], y.data[i], s);
      return dx;
    },
  };
}

// Both subtract the line's largest value before exp, so that no exp overflows.
function logSoftmax(row) {
  const top = Math.max(...row), total = Math.log(row.reduce((sum, v) => sum + Math.exp(v - top), 0));
  return Array.from(row, (v) => v - top - total);
}

function softmax(row) {
  const top = Math.max(...row), exps = Array.from(row, (v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

function lines(x, dim) {
  // The positions in x.data of each line of values along dimension dim, which a softmax normalises.
  const size = x.shape[dim], inner = x.shape.slice(dim + 1).reduce((a, b) => a * b, 1), found = [];
  for (let outer = 0; outer < x.data.length / (size * inner); outer++) {
    for (let i = 0; i < inner; i++) {
      found.push(Array.from({ length: size }, (_, k) => (outer * size + k) * inner + i));
    }
  }
  return found;
}

function alongLines(normalise, gradient) {
  // softmax or log_softmax over dimension s.dim: normalise(line of x) gives the line of y, and
  // gradient(line of g, line of y) the line of dx.
  const each = (x, dim, compute) => {
    const out = tensor(x.shape);
    for (const line of lines(x, dim)) compute(line).forEach((v, k) => { out.data[line[k]] = v; });
    return out;
  };
  const values = (t, line) => line.map((i) => t.data[i]);
  return {
    forward: (x, s) => each(x, s.dim, (line) => normalise(values(x, line))),
    backward: (g, x, s, p, y) => each(x, s.dim, (line) => gradient(values(g, line), values(y, line))),
  };
}

Object.assign(maths.operations, {
  relu,
  leaky_relu: elementwise((v, s) => (v > 0 ? v : v * s.slope), (v, y, s) => (v > 0 ? 1 : s.slope)),
  tanh: elementwise(Math.tanh, (v, y) => 1 - y * y),
  sigmoid: elementwise((v) => 1 / (1 + Math.exp(-v)), (v, y) => y * (1 - y)),
  // d softmax: y (g - sum(g y)); d log_softmax: g - exp(y) sum(g).
  softmax: alongLines(softmax, (g, y) => {
    const total = g.reduce((a, d, k) => a + d * y[k], 0);
    return y.map((v, k) => v * (g[k] - total));
  }),
  log_softmax: alongLines(logSoftmax, (g, y) => {
    const total = g.reduce((a, d) => a + d, 0);
    return g.map((d, k) => d - Math.exp(y[k]) * total);
  }),
});
Object.assign(maths, { softmax, logSoftmax });
})();
