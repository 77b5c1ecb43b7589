// Training: the same maths as PyTorch's train() mode, one batch at a time: the forward pass with
// each operation's training form, cross-entropy, the parameters' gradients, and Adam and AdamW as
// torch.optim computes them. Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { f32, tensor, forward, backward, addGradient, trainingOperation, logSoftmax } = maths;

function trainingForward(network, weights, input, random, share) {
  // As the page's forward, with the weights being trained and each operation in its training form.
  return forward(network, weights, input, (node) => trainingOperation(node, random, share));
}

function parameterGradients(network, weights, outputs, outputGradient, random, share) {
  // Each parameter's gradient (summed where a module is called twice) by state_dict key; the
  // image's own gradient is not needed.
  const found = {};
  const visit = (node, operation, gradient, x, settings, p) => {
    if (!operation.paramsBackward) return;
    const own = operation.paramsBackward(gradient, x, settings, p, outputs[node.name]);
    for (const role of ["weight", "bias"]) if (own[role]) addGradient(found, node.params[role], own[role]);
  };
  backward(network, weights, outputs, outputGradient, (node) => trainingOperation(node, random, share),
           { input: false, visit });
  return found;
}

function crossEntropy(logits, labels, batch) {
  // nn.CrossEntropyLoss, the mean over a batch of batch images of -log softmax(logits)[label]:
  // these images' sum of it, and its gradient with respect to their logits, (softmax - one-hot) /
  // batch.
  const classes = logits.data.length / labels.length, gradient = tensor(logits.shape);
  let total = 0;
  labels.forEach((label, b) => {
    const logs = logSoftmax(logits.data.subarray(b * classes, (b + 1) * classes));
    total -= logs[label];
    logs.forEach((v, k) => { gradient.data[b * classes + k] = (Math.exp(v) - (k === label)) / batch; });
  });
  return [total, gradient];
}

function adamStep(values, gradient, moments, step, lr, weightDecay) {
  // torch.optim.Adam's update (AdamW's when weightDecay > 0: the weights shrink by lr * decay
  // first, apart from the gradient), in float32 as PyTorch stores it: betas 0.9 and 0.999, eps 1e-8,
  // both averages corrected for starting at zero.
  const [beta1, beta2, eps] = [0.9, 0.999, 1e-8], stepSize = lr / (1 - beta1 ** step);
  const correction2 = f32(Math.sqrt(1 - beta2 ** step)), decay = f32(1 - lr * weightDecay);
  const weight1 = f32(1 - beta1), keep2 = f32(beta2), weight2 = f32(1 - beta2), size = f32(-stepSize);
  for (let i = 0; i < values.length; i++) {
    const g = gradient[i];
    if (weightDecay) values[i] = values[i] * decay;
    moments.first[i] = moments.first[i] + weight1 * f32(g - moments.first[i]);  // lerp towards g
    moments.second[i] = f32(moments.second[i] * keep2) + weight2 * f32(g * g);
    const denominator = f32(f32(f32(Math.sqrt(moments.second[i])) / correction2) + eps);
    values[i] = values[i] + size * f32(moments.first[i] / denominator);
  }
}

function adam(network, weights, lr, weightDecay) {
  // torch.optim.Adam (AdamW when weightDecay > 0) over the weights and biases the graph uses:
  // step(gradients) moves each by one update, in place, and counts the steps for the bias
  // correction. One that no path to the logits reaches has no gradient: PyTorch skips it too.
  const roles = (node) => ["weight", "bias"].map((role) => node.params?.[role]).filter(Boolean);
  const keys = [...new Set(network.graph.flatMap(roles))];
  const zeros = (key) => new Float32Array(weights[key].data.length);
  const moments = Object.fromEntries(keys.map((key) => [key, { first: zeros(key), second: zeros(key) }]));
  let steps = 0;
  return {
    keys,
    step(gradients) {
      steps += 1;
      for (const key of keys.filter((found) => gradients[found])) {
        adamStep(weights[key].data, gradients[key].data, moments[key], steps, lr, weightDecay);
      }
    },
  };
}

function shareGradients(network, weights, input, labels, random, share = { first: 0, batch: labels.length }) {
  // A batch's loss and gradients, or a share of them: input holds images first ... of a batch of
  // share.batch images (all of them by default). Forward in train() mode, cross-entropy, backward:
  // these images' sum of the loss (the batch's loss is the shares' sums over share.batch), their
  // logits and each parameter's gradient by state_dict key (the batch's is the shares' sum).
  const outputs = trainingForward(network, weights, input, random, share);
  const logits = outputs[network.output];
  const [lossSum, outputGradient] = crossEntropy(logits, labels, share.batch);
  const gradients = parameterGradients(network, weights, outputs, outputGradient, random, share);
  return { lossSum, logits, gradients };
}

function addedShares(shares) {
  // The batch's gradients from its shares' (shareGradients), added in the shares' order, each
  // value's sum in float64 and rounded once: the same shares give the same sums every time.
  const sums = {};
  for (const key of Object.keys(shares[0])) {
    const sum = tensor(shares[0][key].shape), values = new Float64Array(sum.data.length);
    for (const gradients of shares) {
      const part = gradients[key].data;
      for (let i = 0; i < values.length; i++) values[i] += part[i];
    }
    sum.data.set(values);
    sums[key] = sum;
  }
  return sums;
}

Object.assign(maths, { adam, shareGradients, addedShares });
})();
