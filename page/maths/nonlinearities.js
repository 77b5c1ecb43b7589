// The layers that apply a function to each value or to each line of values, forward and backward:
// ReLU, leaky ReLU, tanh, sigmoid, softmax and log_softmax (and the softmax of the answer itself).
// Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor } = maths;

// Written out: the commonest operation, the pixels picture runs it 64 times and training runs it most.
const relu = {
  // Written without an if: half the values are negative at random, and a processor that guesses
  // which way each if goes guesses wrong half the time, which costs more than the arithmetic.
  forward(x) {
    const y = tensor(x.shape), values = x.data, out = y.data;
    // v if v > 0, else 0
    for (let i = 0; i < out.length; i++) out[i] = (values[i] + Math.abs(values[i])) * 0.5;
    return y;
  },
  backward(g, x) {
    const dx = tensor(x.shape), values = x.data, gradients = g.data, out = dx.data;
    for (let i = 0; i < out.length; i++) out[i] = gradients[i] * (values[i] > 0);  // true is 1, false 0
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
