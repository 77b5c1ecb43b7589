// Dropout, forward and backward: in eval mode an identity (the page's answers), in training a
// random mask (dropping, which graph.js's trainingOperation uses). Part of the exported file's
// maths (tensors.js says more).
"use strict";
(() => {
const { tensor, zeros } = maths;

const dropping = (random) => ({
  // Dropout in training: each value kept with probability 1 - p and scaled by 1 / (1 - p), as
  // F.dropout; the mask is kept for backward. random() gives numbers in [0, 1): PyTorch's own
  // random numbers cannot be reproduced here, so the masks differ from train.py's.
  forward(x, s) {
    const y = tensor(x.shape), scale = s.p < 1 ? 1 / (1 - s.p) : 0, values = x.data, out = y.data;
    const mask = y.mask = zeros(values.length);
    for (let i = 0; i < values.length; i++) {
      // kept (true, 1) or dropped (false, 0), without an if (see relu in nonlinearities.js)
      mask[i] = (random() >= s.p) * scale;
      out[i] = values[i] * mask[i];
    }
    return y;
  },
  backward(g, x, s, p, y) {
    const dx = tensor(x.shape), mask = y.mask, gradients = g.data, out = dx.data;
    for (let i = 0; i < out.length; i++) out[i] = gradients[i] * mask[i];
    return dx;
  },
});

maths.operations.identity = { forward: (x) => x, backward: (g) => g };  // dropout in eval mode
maths.dropping = dropping;
})();
