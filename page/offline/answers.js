// The exported file's answers to a digit, as page/routes.py's Page and page/explain.py work them
// out: the digit a request sends (a drawing, a picture or an image of a set), every stage's values
// (predict), which pixels decided (attribution: integrated gradients) and how one value was
// computed (step), with the same checks, bodies and answers as the server's.
"use strict";
(() => {
const { EXPORT, BadRequest, said, has, body, wholeNumber, chosen, chosenSet, round, describe } = offline;
const { parameters, run, inputGradient, prepareDigit, normalise, toPixels, greyOfPixels } = offline;
const { decodePicture, positionOf, wholeSetHeld, imageOf } = offline;
const { f32, tensor, paramsOf, logSoftmax, softmax } = maths;

async function digitOf(request) {
  // [the (1, 1, 28, 28) input, its label or null] that a request sends.
  if (has(request, "index")) {
    if (has(request, "pixels") || has(request, "picture")) throw new BadRequest(400, said("one_of_three"));
    const set = chosenSet(request), index = wholeNumber(request, "index", 0, EXPORT.sets[set].count - 1);
    if (positionOf(set, index) === undefined && !wholeSetHeld(set)) {
      throw new BadRequest(404, `image ${index} is not in this page: it holds the images the explorer shows`);
    }
    const [pixels, label] = await imageOf(set, index);
    return [tensor([1, 1, 28, 28], Float32Array.from(pixels, normalise)), label];
  }
  if (has(request, "pixels") === has(request, "picture")) throw new BadRequest(400, said("one_input"));
  if (has(request, "picture")) return [await pictureDigit(request.picture), null];
  const levels = greyOfPixels(request.pixels, EXPORT.limits.side);
  return [prepareDigit(levels, request.pixels.length, request.pixels[0].length), null];
}

async function pictureDigit(picture) {
  // A picture file's digit; a refusal names what it read, as extras.pictures.read_picture does.
  const decoded = await decodePicture(picture);
  try { return prepareDigit(...decoded); } catch (error) {
    if (error instanceof BadRequest) throw new BadRequest(error.status, `picture: ${error.message}`);
    throw error;
  }
}

function layers(network, outputs) {
  const found = network.stages.filter((stage) => outputs[stage.shown].data)  // tensors, not sizes
    .map((stage) => ({ ...stage.details, name: stage.name, output: outputs[stage.shown] }));
  const logits = outputs[network.output];
  const probabilities = tensor([1, 10], Float32Array.from(softmax(logits.data)));
  const name = found.every((layer) => layer.name !== "softmax") ? "softmax" : "probabilities";
  const code = "logits.softmax(dim=1)";
  return [...found, { name, kind: "output", code, activation: null, output: probabilities }];
}

function confidence(probabilities, digit) {
  const order = (a, b) => probabilities[b] - probabilities[a] || a - b;
  const top = [...probabilities.keys()].sort(order).slice(0, 3);
  const ink = Array.from(digit.data).filter((v) => toPixels(v) > 0.5).length / 784;
  const [low, high] = EXPORT.ink_range, unlike = !(low <= ink && ink <= high);
  return { top: top.map((d) => [d, round(probabilities[d], 6)]), ink,
           unsure: probabilities[top[0]] < EXPORT.unsure_below || unlike,
           unlike_a_digit: unlike, unsure_below: EXPORT.unsure_below, ink_range: EXPORT.ink_range };
}

function attributionOf(network, snapshot, digit, target) {
  // Integrated gradients from an empty box (every pixel black), midpoints of EXPORT.attribution_steps
  // equal steps.
  const steps = EXPORT.attribution_steps, empty = normalise(0), path = tensor([steps, 1, 28, 28]);
  for (let k = 0; k < steps; k++) {
    const fraction = f32((k + 0.5) / steps);
    digit.data.forEach((v, i) => {
      path.data[k * 784 + i] = f32(empty + f32(fraction * f32(v - empty)));
    });
  }
  const outputs = run(network, snapshot, path), logits = outputs[network.output];
  const gradient = tensor([steps, 10]);
  for (let k = 0; k < steps; k++) {  // d log p(target) / d logits = one-hot - softmax
    softmax(logits.data.subarray(k * 10, k * 10 + 10)).forEach((p, d) => {
      gradient.data[k * 10 + d] = (d === target) - p;
    });
  }
  const grad = inputGradient(network, snapshot, outputs, gradient), values = tensor([1, 28, 28]);
  for (let i = 0; i < 784; i++) {
    let sum = 0;
    for (let k = 0; k < steps; k++) sum += grad.data[k * 784 + i];
    values.data[i] = (sum / steps) * (digit.data[i] - empty);
  }
  const ends = tensor([2, 1, 28, 28]);
  ends.data.fill(empty, 0, 784);
  ends.data.set(digit.data, 784);
  const endLogits = run(network, snapshot, ends)[network.output].data;
  const logProbability = (k) => logSoftmax(endLogits.subarray(10 * k, 10 * k + 10))[target];
  return { digit: target, ...describe(values), total: logProbability(1) - logProbability(0) };
}

async function predict(request) {
  const [, network, snapshot] = chosen(body(request));
  const withAttribution = has(request, "attribution") ? request.attribution : true;
  if (typeof withAttribution !== "boolean") throw new BadRequest(400, said("attribution_not_bool"));
  const [digit, label] = await digitOf(request);
  const stages = layers(network, run(network, snapshot, digit));
  const probabilities = Array.from(stages.at(-1).output.data);
  const prediction = probabilities.indexOf(Math.max(...probabilities));
  return {
    model: network.name, prediction, label, probabilities: probabilities.map((p) => round(p, 6)),
    confidence: confidence(probabilities, digit),
    input: describe(tensor([1, 1, 28, 28], digit.data.map(toPixels))),
    layers: stages.map(({ output, ...stage }) => ({ ...stage, ...describe(output) })),
    attribution: withAttribution ? attributionOf(network, snapshot, digit, prediction) : null,
  };
}

async function attribution(request) {
  const [, network, snapshot] = chosen(body(request)), target = wholeNumber(request, "digit", 0, 9);
  const [digit] = await digitOf(request);
  return attributionOf(network, snapshot, digit, target);
}

// ---- How one value was computed (explain.step_of): the same patches, sums and order.
async function step(request) {
  const [, network, snapshot] = chosen(body(request));
  if (typeof request.stage !== "string") throw new BadRequest(400, said("stage_not_name"));
  const bound = EXPORT.limits.position;
  const [map, row, column] = ["map", "row", "column"].map((key) => wholeNumber(request, key, 0, bound));
  const [digit] = await digitOf(request), outputs = run(network, snapshot, digit);
  const stage = network.stages.find((s) => s.name === request.stage && outputs[s.shown].data);
  if (!stage) throw new BadRequest(400, `no stage named '${request.stage}' in this network`);
  const value = outputs[stage.shown], shape = value.shape.slice(1);
  let position = null;
  if (shape.length === 3) position = [map, row, column];
  else if (shape.length === 1 && map === 0 && row === 0) position = [column];
  if (!position || !position.every((index, axis) => index < shape[axis])) {
    throw new BadRequest(400, said("no_value", { name: request.stage, map, row, column }));
  }
  const node = network.graph.find((n) => n.name === stage.node), weights = parameters(network, snapshot);
  const input = node.args[0] && typeof node.args[0] === "object" ? outputs[node.args[0].node] : null;
  const answer = input ? stepOf(node, paramsOf(node, weights), input, map, row, column) : { kind: "none" };
  if (answer.kind !== "none" && stage.shown !== stage.node) {  // the ReLU shown with it
    Object.assign(answer, { activation: "ReLU", after: Math.max(answer.sum, 0) });
  }
  const flat = position.reduce((offset, index, axis) => offset * shape[axis] + index, 0);
  return { stage: request.stage, map, row, column, value: value.data[flat], ...answer };
}

function stepOf(node, p, input, map, row, column) {
  const s = node.settings || {};
  if (node.op === "conv2d") return convolutionStep(s, p, input, map, row, column);
  const plainPool = node.op === "max_pool2d" && input.shape.length === 4 && s.plain;
  if (plainPool) return poolStep(s, input, map, row, column);
  if (node.op === "linear") return linearStep(p, input, column);
  return { kind: "none" };
}

function convolutionStep(s, p, input, map, row, column) {
  // The input patch under the kernel of map at (row, column), the kernel, their products, the bias.
  const [, , H, W] = input.shape, [O, perGroup, KH, KW] = p.weight.shape, [[PT], [PL]] = s.padding;
  const first = Math.floor(map / (O / s.groups)) * perGroup;
  const top = row * s.stride[0], left = column * s.stride[1];
  const size = perGroup * KH * KW, kernel = Array.from(p.weight.data.subarray(map * size, (map + 1) * size));
  const patch = [];
  for (let c = 0; c < perGroup; c++) for (let ky = 0; ky < KH; ky++) for (let kx = 0; kx < KW; kx++) {
    const iy = top - PT + ky * s.dilation[0], ix = left - PL + kx * s.dilation[1];
    patch.push(iy >= 0 && iy < H && ix >= 0 && ix < W ? input.data[((first + c) * H + iy) * W + ix] : 0);
  }
  const products = patch.map((v, i) => f32(v * kernel[i])), bias = p.bias ? p.bias.data[map] : 0;
  return { kind: "convolution", channels: [...Array(perGroup).keys()].map((c) => first + c),
           shape: [perGroup, KH, KW], patch, kernel, products, bias,
           sum: products.reduce((a, b) => a + b, 0) + bias, top: top - PT, left: left - PL };
}

function poolStep(s, input, map, row, column) {
  // The block that a max pooling's value at (row, column) of map was the largest of.
  const [, , H, W] = input.shape, [KH, KW] = s.kernel;
  const top = row * s.stride[0], left = column * s.stride[1];
  const rows = Math.min(KH, H - top), columns = Math.min(KW, W - left), block = [];
  for (let y = top; y < top + rows; y++) {
    for (let x = left; x < left + columns; x++) block.push(input.data[(map * H + y) * W + x]);
  }
  const largest = Math.max(...block);
  return { kind: "pool", shape: [rows, columns], block, kept: block.indexOf(largest), sum: largest,
           top, left };
}

function linearStep(p, input, column) {
  // The largest contributions weight x input to the unit at column (as many as the server shows),
  // the rest, the bias and the sum.
  const [, I] = p.weight.shape, weights = p.weight.data.subarray(column * I, (column + 1) * I);
  const contributions = Array.from(input.data, (v, i) => f32(weights[i] * v));
  const order = (a, b) => Math.abs(contributions[b]) - Math.abs(contributions[a]);
  const largest = [...contributions.keys()].sort(order).slice(0, EXPORT.limits.contributions);
  const total = contributions.reduce((a, b) => a + b, 0), bias = p.bias ? p.bias.data[column] : 0;
  const term = (i) => ({ index: i, input: input.data[i], weight: weights[i], product: contributions[i] });
  return { kind: "linear", unit: column, inputs: I, largest: largest.map(term),
           rest: total - largest.reduce((sum, i) => sum + contributions[i], 0), bias, sum: total + bias };
}

Object.assign(offline, { predict, attribution, step });
})();
