// A run of the exported file's training as one of the page's networks: joined to them while it
// trains (its weights as the worker last sent them), then, at its end, with its snapshots, curves,
// answers on MNIST's test set (for the explorer) and checkpoint, as the export gives a network.
"use strict";
(() => {
const { EXPORT, round, parameters, tensorsOf, checkpoint, bytesOf, base64Of } = offline;

function uniqueName(name, word) {
  // name, or "name, word 2", "name, word 3", ... if a network of the page has it already.
  const taken = new Set(EXPORT.networks.map((network) => network.name));
  let unique = name;
  for (let number = 2; taken.has(unique); number++) unique = `${name}, ${word} ${number}`;
  return unique;
}

function joinedNetwork(base, name) {
  // The network being trained, added to the page's networks as its last: base's graph, stages and
  // kernels, and its weights as they are now (the worker sends them every redraw_interval steps).
  const now = parameters(base, base.weights.length - 1);
  const unique = uniqueName(name, "run");
  const network = { ...base, name: unique, weights: [null], cache: [now],
                    training: { model: unique, snapshots: [0], loss: [], accuracy: [] },
                    testsets: [[]], cells: [[]] };
  EXPORT.networks.push(network);
  return network;
}

async function finished(network, body, data, test) {
  // The run's end: the network's snapshots (for the training slider), its curves, its answers on
  // MNIST's test set (for the explorer, at its final weights) and its checkpoint.
  network.weights = data.snapshots.map(() => null);  // held as tensors in cache, not as the export's blocks
  network.cache = data.snapshots.map((snapshot) => tensorsOf(network, snapshot.weights));
  const rounded = (values) => values.map((v) => round(v, 5));
  network.training = { model: network.name, snapshots: data.snapshots.map((snapshot) => snapshot.step),
                       loss: rounded(data.history.loss), accuracy: rounded(data.history.accuracy) };
  network.state = countedState(network.state, data.steps, body.from === "fresh");
  const last = data.snapshots.length - 1, answers = explorerAnswers(data.test, test);
  network.testsets = Object.assign([], { [last]: [answers.testset] });
  network.cells = Object.assign([], { [last]: [answers.cells] });
  const model = EXPORT.networks.indexOf(network), { accuracy, confusion } = answers.testset;
  return { model, testAccuracy: accuracy, confusion, seconds: data.seconds, steps: data.steps,
           drawings: data.drawings, checkpoint: await checkpoint({ model }) };
}

function countedState(entries, steps, fresh) {
  // The state entries with each batch norm's num_batches_tracked moved on by the run's steps.
  return entries.map(([key, dtype, shape, bytes]) => {
    if (!key.endsWith("num_batches_tracked") || bytes === null) return [key, dtype, shape, bytes];
    const count = new BigInt64Array(1);
    count[0] = (fresh ? 0n : new BigInt64Array(bytesOf(bytes).buffer)[0]) + BigInt(steps);
    return [key, dtype, shape, base64Of(new Uint8Array(count.buffer))];
  });
}

function explorerAnswers({ predicted, probability }, test) {
  // What the explorer shows of a network on MNIST's test set (page.routes.Explorer): accuracy,
  // confusion matrix and each cell's most confident images, as many as the server shows.
  const confusion = Array.from({ length: 10 }, () => new Array(10).fill(0));
  const members = Array.from({ length: 100 }, () => []);
  test.labels.forEach((label, i) => {
    confusion[label][predicted[i]]++;
    members[label * 10 + predicted[i]].push(i);
  });
  const right = confusion.reduce((sum, row, digit) => sum + row[digit], 0);
  const order = (a, b) => probability[b] - probability[a] || a - b;
  const cells = members.map((indices) => {
    const shown = indices.sort(order).slice(0, EXPORT.limits.shown);
    return [indices.length, shown, shown.map((i) => round(probability[i], 4))];
  });
  const count = test.labels.length;
  return { testset: { set: EXPORT.sets[0].name, count, accuracy: right / count, confusion }, cells };
}

Object.assign(offline, { uniqueName, joinedNetwork, finished });
})();
