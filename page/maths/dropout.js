// Dropout, forward and backward: in eval mode an identity (the page's answers), in training a
// random mask (dropping, which graph.js's trainingOperation uses), drawn from the generator that
// a run's seed starts. Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { written, zeros, pointwise } = maths;

function generator(seed) {
  // Random numbers in [0, 1) from a seed (mulberry32): the same seed, the same run. PyTorch's own
  // generator is not reproduced, so a seed here gives other numbers than train.py's. The nth
  // number depends on the seed and n alone, so skip(n) passes over n numbers at once, and
  // another's at(random.state()) goes on where random is: a worker holding part of a batch draws
  // the numbers a single worker would draw for its images.
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6D2B79F5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // count times the step, modulo 2 ** 32 (Math.imul takes count modulo 2 ** 32, exactly)
  random.skip = (count) => { state = (state + Math.imul(count, 0x6D2B79F5)) >>> 0; };
  random.state = () => state;
  random.at = (where) => { state = where; };
  return random;
}

const dropping = (random, share) => ({
  // Dropout in training: each value kept with probability 1 - p and scaled by 1 / (1 - p), as
  // F.dropout; the mask is kept for backward. random() gives numbers in [0, 1): PyTorch's own
  // random numbers cannot be reproduced here, so the masks differ from train.py's. share: x holds
  // images first ... of a batch of batch images (training.js's shareGradients): the numbers are
  // those the whole batch draws for these images, the others' passed over, so that the masks do
  // not depend on how many workers share the batch.
  forward(x, s) {
    const y = written(x.shape), scale = s.p < 1 ? 1 / (1 - s.p) : 0, values = x.data, out = y.data;
    const mask = y.mask = zeros(values.length, Float32Array, false), perImage = values.length / x.shape[0];
    random.skip(share.first * perImage);
    pointwise.dropout(out, mask, values, random, s.p, scale);
    random.skip((share.batch - share.first - x.shape[0]) * perImage);
    return y;
  },
  backward(g, x, s, p, y) {
    const dx = written(x.shape);
    pointwise.times(dx.data, g.data, y.mask);
    return dx;
  },
});

maths.operations.identity = { forward: (x) => x, backward: (g) => g };  // dropout in eval mode
Object.assign(maths, { generator, dropping });
})();
