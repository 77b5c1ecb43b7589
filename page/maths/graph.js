// The network as a whole: the export's graph (its translation of torch.fx's) walked forward, node by
// node, and backward, micrograd's way; which form of each operation eval and train() modes use, and
// whether the file can train a network. Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor, operations } = maths;

function argumentValue(argument, outputs) {
  if (Array.isArray(argument)) return argument.map((item) => argumentValue(item, outputs));
  return argument !== null && typeof argument === "object" ? outputs[argument.node] : argument;
}

function paramsOf(node, weights) {
  return Object.fromEntries(Object.entries(node.params || {}).map(([name, key]) => [name, weights[key]]));
}

function forward(network, weights, input, operationOf) {
  // input: (B, 1, 28, 28); returns every node's output by name, each computed by operationOf(node).
  const outputs = {};
  for (const node of network.graph) {
    if (node.op === "input") { outputs[node.name] = input; continue; }
    const [first, ...rest] = node.args.map((argument) => argumentValue(argument, outputs));
    const operation = operationOf(node);
    outputs[node.name] = operation.forward(first, node.settings || {}, paramsOf(node, weights), ...rest);
  }
  return outputs;
}

function addGradient(gradients, name, gradient) {
  // A value read twice (a module called twice, x + y) gets the sum of both gradients, in a new
  // tensor: the first may be another node's gradient too (x + y passes one to both), kept as it is.
  const first = gradients[name];
  if (!first) {
    gradients[name] = gradient;
    return;
  }
  const sum = tensor(first.shape), a = first.data, b = gradient.data;
  for (let i = 0; i < sum.data.length; i++) sum.data[i] = a[i] + b[i];
  gradients[name] = sum;
}

function backward(network, weights, outputs, outputGradient, operationOf, { input = true, visit } = {}) {
  // Backward through the graph from the logits' gradient (tensor arguments only); returns each
  // node's gradient by name, the image's too unless input is false. visit(node, operation,
  // gradient, x, settings, params) sees each node on the way, for its parameters' gradients.
  const gradients = { [network.output]: outputGradient }, image = network.graph[0].name;
  for (const node of [...network.graph].reverse()) {
    const gradient = gradients[node.name];
    if (!gradient || node.op === "input" || node.op === "size") continue;
    const operation = operationOf(node), [first, ...rest] = node.args, p = paramsOf(node, weights);
    const x = outputs[first.node], settings = node.settings || {};
    if (visit) visit(node, operation, gradient, x, settings, p);
    if (input || first.node !== image) {
      addGradient(gradients, first.node, operation.backward(gradient, x, settings, p, outputs[node.name]));
    }
    const other = rest[0];  // x + y: y's gradient too
    if (operation.both && other && typeof other === "object") addGradient(gradients, other.node, gradient);
  }
  return gradients;
}

const evalOperation = (node) => operations[node.op];

function trainingOperation(node, random, share) {
  // The operation as train() computes it: batch norm with the batch's statistics; a dropout (an
  // identity node with its p) drops only when given random numbers (random: a generator, or
  // null; share: which images of the batch the input holds, see dropout.js).
  if (node.op === "batch_norm") return maths.batchNormTraining;
  const dropout = node.op === "identity" && node.settings && "p" in node.settings;
  if (dropout && random) return maths.dropping(random, share);
  return operations[node.op];
}

function splittable(network) {
  // Whether a batch of this network can be shared among workers, each with some of its images:
  // not with batch norm (its statistics are the whole batch's), nor where an operation mixes the
  // images (a softmax along dimension 0, or counted from the end, which may be it; a flatten or
  // view that merges the batch away).
  return network.graph.every((node) => {
    const s = node.settings || {}, [, shape] = node.args || [];
    return !(node.op === "batch_norm"
      || (["softmax", "log_softmax"].includes(node.op) && (s.dim === 0 || s.dim < -1))
      || (node.op === "flatten" && s.start < 1)
      || (node.op === "view" && (shape.length < 2 || !(shape[0] === -1 || typeof shape[0] === "object"))));
  });
}

function untrainable(network) {
  // The first node that this file cannot train, as a sentence, or null.
  for (const node of network.graph) {
    if (node.op === "input" || node.op === "size") continue;
    const operation = operations[node.op] && trainingOperation(node, null);
    const learns = node.params && ["weight", "bias"].some((role) => node.params[role]);
    if (!operation || !operation.backward || (learns && !operation.paramsBackward)) {
      return `${node.name} (${node.op}) has no gradient in this file`;
    }
    if (node.op === "batch_norm" && typeof node.settings.momentum !== "number") {
      return `${node.name} (batch_norm with momentum=None, a cumulative average) is not trained in this file`;
    }
  }
  return null;
}

Object.assign(maths, { paramsOf, forward, addGradient, backward, evalOperation, trainingOperation,
                       untrainable, splittable });
})();
