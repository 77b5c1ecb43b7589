// The exported file's answers that the export worked out with PyTorch: the networks and sets it
// offers (models), each network's kernels and training curves, and the explorer's accuracy,
// confusion matrix and images (testset, examples), as page/routes.py's Page answers them.
"use strict";
(() => {
const { EXPORT, BadRequest, has, wholeNumber, queryNumbers, chosen, chosenSet, describe } = offline;
const { parameters, imageOf, collectedCounts } = offline;
const { tensor } = maths;

function kernels(query) {
  const [, network, snapshot] = chosen(queryNumbers(query)), weights = parameters(network, snapshot);
  const kernel = (name) => weights[`${name}.weight`];  // (out, in, rows, columns)
  const described = (name) => ({ name, ...describe(tensor([1, ...kernel(name).shape], kernel(name).data)) });
  return { model: network.name, kernels: network.kernels.map(described) };
}

function training(query) {
  const [, network] = chosen(queryNumbers(query));
  return network.training;
}

function answered(table, first, second) {
  // The export's (or a run's) answer at table[first][second]; a network trained in this page has
  // them for its final weights on MNIST's test set only.
  const found = table?.[first]?.[second];
  if (!found) {
    throw new BadRequest(404, "this page has the explorer's answers of a network trained here for its final "
                              + "weights on MNIST's test set only");
  }
  return found;
}

function testset(query) {
  const request = queryNumbers(query), [, network, snapshot] = chosen(request), set = chosenSet(request);
  return { model: network.name, ...answered(network.testsets, snapshot, set) };
}

async function examples(query) {
  const request = queryNumbers(query), [model, network, snapshot] = chosen(request), set = chosenSet(request);
  let count, indices, predicted, probabilities;
  if (has(request, "other")) {
    const other = wholeNumber(request, "other", 0, EXPORT.networks.length - 1);
    [count, indices, predicted, probabilities] = answered(EXPORT.comparisons[set], model, other);
  } else {
    const [trueDigit, given] = ["true", "predicted"].map((key) => wholeNumber(request, key, 0, 9));
    [count, indices, probabilities] = answered(network.cells, snapshot, set)[trueDigit * 10 + given];
    predicted = indices.map(() => given);
  }
  const images = await Promise.all(indices.map((index) => imageOf(set, index)));
  const example = (index, k) => ({ index, label: images[k][1], predicted: predicted[k],
                                   probability: probabilities[k], pixels: Array.from(images[k][0]) });
  return { count, examples: indices.map(example) };
}

function models() {
  return { models: EXPORT.networks.map((n) => n.name),
           snapshots: EXPORT.networks.map((n) => n.training.snapshots),
           sets: EXPORT.sets.map((set) => ({ name: set.name, count: set.count })), missing: EXPORT.missing,
           collect: EXPORT.collect && { ...EXPORT.collect, counts: collectedCounts() } };
}

Object.assign(offline, { kernels, training, testset, examples, models });
})();
