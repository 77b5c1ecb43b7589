// Back to Python: a network of the exported file as a checkpoint in train.py's format (written by
// pickle.js as torch.save writes one), which test.py, draw.py and train.py --init-from read: the
// route for scripts (checkpoint) and the page's "Download model.pt".
"use strict";
(() => {
const { EXPORT, bytesOf, base64Of, BadRequest, chosen, parameters } = offline;
const { Real, Ordered, Stored, torchSaved, downloaded } = offline;

function checkpointOf(state, fields) {
  // A checkpoint of train.py's format: state is the weights as [[key, Stored], ...] in
  // state_dict order; fields: epoch, history {loss, accuracy}, snapshots [{step, state}],
  // test_accuracy (each left out when undefined), and any other plain field as it is.
  const { history, snapshots, test_accuracy: accuracy, ...rest } = fields;
  const reals = (values) => values.map((v) => new Real(v));
  const given = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  const checkpoint = { model: new Ordered(state), ...given };
  if (history) checkpoint.history = { loss: reals(history.loss), accuracy: reals(history.accuracy) };
  if (snapshots) {
    const ordered = (snapshot) => ({ step: snapshot.step, model: new Ordered(snapshot.state) });
    checkpoint.snapshots = snapshots.map(ordered);
  }
  if (accuracy !== undefined) checkpoint.test_accuracy = accuracy === null ? null : new Real(accuracy);
  return torchSaved(checkpoint);
}

function stateOf(network, snapshot) {
  // One snapshot's state_dict as the file holds it: the weights block's tensors, and the rest
  // (num_batches_tracked) from the export's state entries, which are the final weights'.
  const weights = parameters(network, snapshot);
  return network.state.map(([key, dtype, shape, bytes]) =>
    [key, new Stored(dtype, shape, bytes === null ? weights[key].data : bytesOf(bytes))]);
}

function fileCheckpoint(request) {
  // Network N's checkpoint as the file holds it: its final weights, its snapshots, the run's
  // history (rounded to 5 digits, as the page has it) and, on MNIST's test set, its accuracy (a
  // network designed here and not trained has none).
  if (request === null || typeof request !== "object" || Array.isArray(request)
      || Object.keys(request).some((key) => key !== "model")) {
    throw new BadRequest(400, "send model (the number of a network) only");
  }
  const [, network] = chosen(request), last = network.weights.length - 1, run = network.training;
  const set = EXPORT.sets[0];
  return checkpointOf(stateOf(network, last), {
    history: { loss: run.loss, accuracy: run.accuracy },
    snapshots: run.snapshots.map((step, k) => ({ step, state: stateOf(network, k) })),
    test_accuracy: set && set.mnist ? network.testsets[last]?.[0]?.accuracy : undefined,
  });
}

async function checkpoint(request) {
  // The contract for scripts: the checkpoint's bytes, in base64.
  return base64Of(new Uint8Array(await fileCheckpoint(request).arrayBuffer()));
}

function downloadCheckpoint(request) {
  // The page's "Download model.pt": the chosen network's checkpoint, as a file.
  downloaded(fileCheckpoint(request), "model.pt");
}

Object.assign(offline, { checkpoint, downloadCheckpoint });
})();
