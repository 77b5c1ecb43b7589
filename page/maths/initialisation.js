// A network's fresh weights: PyTorch's default initialisation, drawn from a seeded generator
// (dropout.js's), for a run from fresh weights (trainer.js) and a network designed in the page
// (page/offline/design.js), so that a designed network and a run from the same seed start from
// the same weights. Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
function freshWeights(network, weights, random) {
  // PyTorch's default initialisation, drawn from random: a convolution's or linear layer's
  // weight and bias uniform in +-1/sqrt(fan_in) (kaiming_uniform_ with a = sqrt(5)); batch norm
  // starts at weight 1, bias 0, mean 0, variance 1.
  const fresh = {};
  for (const node of network.graph) {
    for (const [role, key] of Object.entries(node.params || {})) {
      const { shape } = weights[key], values = new Float32Array(weights[key].data.length);
      if (node.op === "conv2d" || node.op === "linear") {
        // inputs x kernel's rows x columns
        const fanIn = weights[node.params.weight].shape.slice(1).reduce((a, b) => a * b, 1);
        const bound = 1 / Math.sqrt(fanIn);
        for (let i = 0; i < values.length; i++) values[i] = (2 * random() - 1) * bound;
      } else if (role === "weight" || role === "running_var") values.fill(1);
      fresh[key] = maths.tensor(shape, values);
    }
  }
  return fresh;
}

Object.assign(maths, { freshWeights });
})();
