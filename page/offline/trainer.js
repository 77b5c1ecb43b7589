// Training in the exported page, off its main thread: training.js starts this file, after the
// maths (page/maths/), as a Web Worker (window.routes.trainRun and the Train panel,
// window.routes.trainSteps), so that drawing and every explanation keep answering while it trains.
// It runs train.py's loop with the maths' operations. In: one message, a job: a run (see run below)
// or trainSteps' steps (see steps), which every worker of a team runs alike, each on its share of
// every batch (sharedStep). Out, from the first (the lead): {kind: "progress" | "weights" | "done"
// | "failed"}; from the others only "failed".
"use strict";
(() => {
self.onmessage = ({ data }) => {
  const jobs = { run, steps };
  Promise.resolve(data).then(jobs[data.job]).catch((error) => {
    const message = error instanceof RunError ? error.message : `training stopped: ${error}`;
    self.postMessage({ kind: "failed", message });
  });
};

class RunError extends Error {}

const { freshWeights } = maths;  // initialisation.js

function shuffled(count, random) {  // a random order of 0 ... count - 1 (Fisher-Yates), as randperm gives one
  const order = Int32Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1)), kept = order[i];
    order[i] = order[j];
    order[j] = kept;
  }
  return order;
}

function batchOf(data, order, start, size, normalised) {
  // Images order[start ...] of the training set (MNIST's grey levels, then the extra pictures,
  // already prepared) as the network's input (size, 1, 28, 28), and their labels.
  const input = maths.written([size, 1, 28, 28]), labels = new Array(size), mnist = data.labels.length;
  for (let k = 0; k < size; k++) {
    const index = order[start + k];
    if (index < mnist) {
      const levels = data.images.subarray(index * 784, (index + 1) * 784);
      for (let i = 0; i < 784; i++) input.data[k * 784 + i] = normalised[levels[i]];
      labels[k] = data.labels[index];
    } else {
      const picture = (index - mnist) % data.extra.labels.length;
      input.data.set(data.extra.images.subarray(picture * 784, (picture + 1) * 784), k * 784);
      labels[k] = data.extra.labels[picture];
    }
  }
  return [input, labels];
}

function correct(logits, labels) {  // how many rows' largest logit is at their label
  let count = 0;
  labels.forEach((label, b) => {
    const row = logits.data.subarray(b * 10, b * 10 + 10);
    if (row.indexOf(Math.max(...row)) === label) count++;
  });
  return count;
}

function copies(weights) {
  return Object.fromEntries(Object.entries(weights).map(([key, t]) => [key, Float32Array.from(t.data)]));
}

async function run({ network, weights, settings, data, kernels, team, rank }) {
  // weights: the tensors it starts from, trained in place (the worker's own copy). settings:
  // epochs, batchSize, lr, weightDecay, seed, fresh (new weights from the seed instead),
  // logInterval (steps between progress lines), redrawInterval (steps between weights sent for
  // the page to redraw), snapshotSteps, divergedLoss, mean, std. team and rank: see sharedStep.
  // Every worker of the team draws the same numbers from the seed (the fresh weights, each
  // epoch's order, dropout's masks) and makes the same steps; the lead (rank 0) alone reports
  // them, and tests the network at the end.
  maths.useKernels(kernels ? [kernels] : []);
  const random = maths.generator(settings.seed), start = performance.now(), lead = rank === 0;
  if (settings.fresh) Object.assign(weights, freshWeights(network, weights, random));
  const count = data.labels.length + data.extra.labels.length * data.extra.repeats;
  const training = { network, weights, settings, data, random, start, count, done: 0, reported: 0, lead,
                     team: teamOf(team), rank, steps: Math.floor(count / settings.batchSize),
                     history: { loss: [], accuracy: [] },
                     normalised: maths.normalised(settings.mean, settings.std),
                     optimizer: maths.adam(network, weights, settings.lr, settings.weightDecay),
                     snapshots: [], keep: new Set(settings.snapshotSteps), scratchpad: { arrays: [] } };
  if (!lead) {
    for (let epoch = 1; epoch <= settings.epochs; epoch++) await trainEpoch(training, epoch);
    return;
  }
  const before = data.extra.labels.length ? accuracyOn(network, weights, data.extra) : null;
  if (training.keep.has(0)) training.snapshots.push({ step: 0, weights: copies(weights) });
  self.postMessage({ kind: "weights", step: 0, weights: copies(weights) });  // the start, for the page
  for (let epoch = 1; epoch <= settings.epochs; epoch++) await trainEpoch(training, epoch);
  const seconds = (performance.now() - start) / 1000, { snapshots, history, done } = training;
  const after = () => accuracyOn(network, weights, data.extra);
  self.postMessage({ kind: "done", seconds, weights: copies(weights), snapshots, history, steps: done,
                     test: data.test && answersOn(network, weights, data.test, training.normalised),
                     drawings: before === null ? null : { before, after: after() } });
}

async function trainEpoch(training, epoch) {
  // One pass over the images in a new random order, the last incomplete batch skipped, as train.py.
  const { weights, settings, data, random, history, normalised } = training;
  const order = shuffled(training.count, random), size = settings.batchSize;
  for (let step = 0; step < training.steps; step++, training.done++) {
    const at = step * size;
    const share = (first, count) => batchOf(data, order, at + first, count, normalised);
    const { loss, correct: right } = await sharedStep(training, size, share);
    if (!Number.isFinite(loss) || loss > settings.divergedLoss) {  // as train.py, which checks after the step
      const where = `loss ${loss.toPrecision(4)} at epoch ${epoch}, step ${step + 1}`;
      throw new RunError(`training diverged (${where}); try a smaller learning rate`);
    }
    if (!training.lead) continue;
    history.loss.push(loss);
    history.accuracy.push(right / size);
    const reached = training.done + 1;
    if (training.keep.has(reached)) training.snapshots.push({ step: reached, weights: copies(weights) });
    report(training, epoch, step, loss);
    if (reached % settings.redrawInterval === 0) {
      self.postMessage({ kind: "weights", step: reached, weights: copies(weights) });
    }
  }
}

function sharesOf(size, workers) {
  // [first, count] of each worker's images of a batch of size: as equal as they can be.
  return Array.from({ length: workers }, (_, k) => {
    const first = Math.floor((k * size) / workers);
    return [first, Math.floor(((k + 1) * size) / workers) - first];
  });
}

function flattened(tensors, keys) {  // the tensors' values one after another, in keys' order
  const flat = new Float32Array(keys.reduce((total, key) => total + tensors[key].data.length, 0));
  let offset = 0;
  for (const key of keys) {
    flat.set(tensors[key].data, offset);
    offset += tensors[key].data.length;
  }
  return flat;
}

function unflattened(flat, network, keys) {  // flattened's tensors again, as views of flat
  let offset = 0;
  return Object.fromEntries(keys.map((key) => {
    const shape = network.tensors.find(([name]) => name === key)[1], size = shape.reduce((a, b) => a * b, 1);
    offset += size;
    return [key, maths.tensor(shape, flat.subarray(offset - size, offset))];
  }));
}

function teamOf(ports) {
  // The team's ports by rank (null at this worker's own), each with next(): a promise of the next
  // message it brings, which are kept in order until asked for.
  return ports.map((port) => {
    if (!port) return null;
    const inbox = [], waiting = [];
    port.onmessage = ({ data }) => (waiting.length ? waiting.shift()(data) : inbox.push(data));
    return { port, next: () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => {
      waiting.push(resolve);
    })) };
  });
}

async function sharedStep(training, size, batch) {
  // One step of train.py's loop on a batch of size images shared among the team: the worker of
  // rank k (of team.length, each joined to each by a channel; page/offline/training.js) works out
  // share k's loss and gradients (batch(first, count): a share's [input, labels]) and sends them
  // to each of the others, as one array, and they send theirs: every worker adds the same shares
  // in the same order and makes the same optimizer step. One exchange a step, and no weights
  // sent: each worker keeps its own, equal to the others'.
  const { network, weights, optimizer, random, team, rank } = training, shares = sharesOf(size, team.length);
  const own = maths.reusing(training.scratchpad, () => {
    const [first, count] = shares[rank], [input, labels] = batch(first, count);
    const { lossSum, logits, gradients } = maths.shareGradients(network, weights, input, labels, random,
                                                                { first, batch: size });
    return { lossSum, gradients, correct: correct(logits, labels) };
  });
  const parameters = Object.keys(own.gradients), others = team.filter(Boolean);
  if (others.length) {
    const { lossSum, correct: right } = own, message = { lossSum, correct: right,
                                                         gradients: flattened(own.gradients, parameters) };
    // moved to the last (its transfer list), copied to the others
    const moved = (k) => (k === others.length - 1 ? [message.gradients.buffer] : []);
    others.forEach(({ port }, k) => port.postMessage(message, moved(k)));
  }
  const parts = await Promise.all(team.map((member) => (member ? member.next() : own)));
  const gradients = parts.length === 1 ? own.gradients : maths.addedShares(parts.map(
    (part) => (part === own ? own.gradients : unflattened(part.gradients, network, parameters))));
  optimizer.step(gradients);
  const total = (key) => parts.reduce((sum, part) => sum + part[key], 0);
  return { loss: total("lossSum") / size, correct: total("correct"), gradients };
}

function report(training, epoch, step, loss) {
  // A progress message every logInterval steps (a line train.py prints) and at the epoch's last
  // step (for the curves), with the losses and accuracies since the last one, for the live curves.
  const { settings, history, reported } = training, printed = step % settings.logInterval === 0;
  if (!printed && step !== training.steps - 1) return;
  self.postMessage({ kind: "progress", printed, epoch, epochs: settings.epochs, step: step + 1,
                     steps: Math.ceil(training.count / settings.batchSize), done: training.done + 1,
                     total: training.steps * settings.epochs, loss, accuracy: history.accuracy.at(-1),
                     seconds: (performance.now() - training.start) / 1000,
                     recent: { loss: history.loss.slice(reported),
                               accuracy: history.accuracy.slice(reported) } });
  training.reported = history.loss.length;
}

async function steps({ network, weights, input, labels, lr, weightDecay, steps: count, dropout, kernels,
                      team, rank }) {
  // count Adam steps on one batch (run-checks.js checked it), shared in the team as a run's: each
  // step's loss, the first step's gradient of each weight and bias (zeros for one no path
  // reaches), the weights after the last (from the lead). dropout: the seed of its masks, or null.
  maths.useKernels(kernels ? [kernels] : []);
  const optimizer = maths.adam(network, weights, lr, weightDecay);
  const random = dropout === null ? null : maths.generator(dropout);
  const training = { network, weights, optimizer, random, team: teamOf(team), rank,
                     scratchpad: { arrays: [] } };
  const losses = [], shareOf = (first, size) => [maths.tensor([size, 1, 28, 28],
    input.data.slice(first * 784, (first + size) * 784)), labels.slice(first, first + size)];
  let first = null;
  for (let step = 1; step <= count; step++) {
    const { loss, gradients } = await sharedStep(training, labels.length, shareOf);
    losses.push(loss);
    first ??= gradients;
  }
  if (rank > 0) return;
  const zeros = (key) => new Float32Array(weights[key].data.length);
  const gradients = Object.fromEntries(optimizer.keys.map((key) => [key, first[key]?.data ?? zeros(key)]));
  self.postMessage({ kind: "done", losses, gradients, weights: copies(weights) });
}

function logitsOf(network, weights, input) {
  return maths.forward(network, weights, input, maths.evalOperation)[network.output];
}

function answersOn(network, weights, set, normalised) {
  // The network in eval mode on a set of grey levels, 500 images a batch: each image's predicted
  // digit and that digit's probability.
  const count = set.labels.length, predicted = new Uint8Array(count), probability = new Float32Array(count);
  for (let start = 0; start < count; start += 500) {
    const size = Math.min(500, count - start), input = maths.tensor([size, 1, 28, 28]);
    for (let i = 0; i < size * 784; i++) input.data[i] = normalised[set.images[start * 784 + i]];
    const logits = logitsOf(network, weights, input);
    for (let k = 0; k < size; k++) {
      const row = maths.softmax(logits.data.subarray(k * 10, k * 10 + 10));
      const best = row.indexOf(Math.max(...row));
      predicted[start + k] = best;
      probability[start + k] = row[best];
    }
  }
  return { predicted, probability };
}

function accuracyOn(network, weights, pictures) {  // the share of the prepared pictures read right
  const input = maths.tensor([pictures.labels.length, 1, 28, 28], Float32Array.from(pictures.images));
  return correct(logitsOf(network, weights, input), pictures.labels) / pictures.labels.length;
}
})();
