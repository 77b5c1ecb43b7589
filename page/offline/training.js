// Training in the exported file: trainSteps (a few steps on one batch, for scripts) and trainRun (a
// whole run, and the Train panel that calls it), each in a team of Web Workers made of the file's
// maths and trainer.js (the scripts marked data-worker), so that the page keeps answering: each
// works out a share of every batch and all make the same steps, the first (the lead) reporting
// them; one training at a time, and trainStop() ends either. A run's network joins the page's
// networks while it trains (run-end.js).
"use strict";
(() => {
const { EXPORT, BadRequest, parameters, tensorsOf, mnistImages } = offline;
const { trainingBody, trainable, runBody, extraPictures, snapshotSteps, joinedNetwork, finished } = offline;
const { tensor, splittable } = maths;
const RUN = EXPORT.training_run;
let running = null;  // the training in progress: {stopped, halt(), stop()}

async function trainingAlone(work) {
  // work(run) as the page's one training; trainStop() at any moment until it ends makes it fail
  // with "training stopped": run.halt() ends a worker at once, run.stopped is looked at between
  // steps.
  if (running) {
    throw new BadRequest(409, "a network is training in this page already: wait for it to finish, or "
                              + "stop it");
  }
  const run = running = { stopped: false, halt() {}, stop() { this.stopped = true; this.halt(); } };
  try {
    return await work(run);
  } finally {
    running = null;
  }
}

function unlessStopped(run) { if (run.stopped) throw new BadRequest(409, "training stopped"); }

function newWorker() {
  // A worker of the file's own scripts (a blob: URL: the file requests nothing).
  const scripts = [...document.querySelectorAll("script[data-worker]")].map((script) => script.textContent);
  return new Worker(URL.createObjectURL(new Blob(scripts, { type: "text/javascript" })));
}

function teams(count) {
  // count new training workers and, for each, its team: a port by rank to each of the others (a
  // channel each pair), null at its own.
  let workers;
  try {
    workers = Array.from({ length: count }, newWorker);
  } catch (error) {  // a browser that runs no worker from a page's own script
    throw new BadRequest(500, `this browser cannot start the page's training worker: ${error.message}`);
  }
  const ports = workers.map(() => workers.map(() => null));
  workers.forEach((_, i) => workers.forEach((__, j) => {
    if (i >= j) return;
    const { port1, port2 } = new MessageChannel();
    [ports[i][j], ports[j][i]] = [port1, port2];
  }));
  return [workers, ports];
}

function inWorkers(run, count, messageOf, onMessage = () => {}) {
  // Sends messageOf(rank) to each of count new training workers, a team (trainer.js's sharedStep);
  // resolves to the lead's (rank 0's) "done" message, and is refused as the training ends
  // otherwise (a "failed" of any: 422; an error in any: 500; trainStop: 409). onMessage sees every
  // message the lead sends.
  return new Promise((resolve, reject) => {
    const [workers, ports] = teams(count), kernels = maths.kernelsInUse();  // the page's own maths
    const end = (error, data) => {
      for (const worker of workers) worker.terminate();
      run.halt = () => {};
      if (error) reject(error); else resolve(data);
    };
    run.halt = () => end(new BadRequest(409, "training stopped"));
    workers.forEach((worker, rank) => {
      worker.onerror = (event) => {
        event.preventDefault();
        end(new BadRequest(500, `training stopped: ${event.message}`));
      };
      // Settled first: the caller's promise goes on after onMessage, which may fail.
      worker.onmessage = ({ data }) => {
        if (data.kind === "failed") end(new BadRequest(422, data.message));
        if (rank > 0) return;
        if (data.kind === "done") end(null, data);
        onMessage(data);
      };
      const team = ports[rank];
      worker.postMessage({ ...messageOf(rank), kernels, team, rank }, team.filter(Boolean));
    });
  });
}

function workersFor(network, wanted, images) {
  // How many workers share each batch of images: as many as asked, unless the batch has fewer
  // images or the network needs the whole batch in one (maths.splittable).
  return splittable(network) ? Math.min(wanted, images) : 1;
}

function trainingCopy(network, snapshot) {
  // Copies of a snapshot's weights to train (the page keeps showing its own, unchanged).
  const copy = (t) => tensor(t.shape.slice(), Float32Array.from(t.data));
  return Object.fromEntries(Object.entries(parameters(network, snapshot)).map(([key, t]) => [key, copy(t)]));
}

function layersOf(network) {  // what a training worker needs of a network
  return { graph: network.graph, output: network.output, tensors: network.tensors };
}

async function trainSteps(request) {
  // K Adam steps on one batch from network N's final weights: the losses, the first step's
  // gradients and the weights (with batch norm's running statistics) after the last.
  const { model, network, input, labels, lr, weightDecay, steps, dropout, workers } = trainingBody(request);
  trainable(model, network);
  const weights = trainingCopy(network, network.weights.length - 1), count = workersFor(network, workers,
                                                                                        labels.length);
  // dropout's masks: drawn from a new seed each time, the same in every worker of the team
  const message = { job: "steps", network: layersOf(network), weights, input, labels, lr, weightDecay, steps,
                    dropout: dropout ? Math.floor(Math.random() * 2 ** 32) : null };
  const done = await trainingAlone((run) => inWorkers(run, count, () => message));
  const arrays = (entries) => Object.fromEntries(entries.map(([key, values]) => [key, Array.from(values)]));
  return { losses: done.losses, gradients: arrays(Object.entries(done.gradients)),
           state: arrays(network.tensors.map(([key]) => [key, done.weights[key]])), workers: count };
}

async function trainRun(request, onMessage = () => {}) {
  // A whole run (the contract for scripts, and the Train panel's button): resolves to the test
  // accuracy, the seconds it trained and the checkpoint's bytes in base64, once the trained
  // network has joined the page's networks (as the last one, model).
  const body = runBody(request);
  return trainingAlone(async (run) => {
    const sets = await mnistImages();
    unlessStopped(run);  // stopped while the images were decoded
    const message = runMessage(body, sets), workers = workersFor(body.network, body.workers, body.batchSize);
    // every worker holds the training images; the lead alone tests the network at the end
    const messageOf = (rank) => (rank === 0 ? message
      : { ...message, data: { ...message.data, test: null } });
    const epochs = `${body.epochs} epoch${body.epochs > 1 ? "s" : ""}`;
    const live = joinedNetwork(body.network, `trained in this page (${epochs}, seed ${body.seed})`);
    try {
      const done = await inWorkers(run, workers, messageOf, (sent) => {
        if (sent.kind === "weights") live.cache = [tensorsOf(live, sent.weights)];
        const model = EXPORT.networks.indexOf(live);
        onMessage({ ...sent, model, workers, weights: undefined, snapshots: undefined });
      });
      const result = await finished(live, body, done, sets.test);
      unlessStopped(run);  // stopped while it was tested and its checkpoint written
      return { ...result, workers };
    } catch (error) {  // refused, stopped or failed: the page keeps no network of a run that failed
      EXPORT.networks.splice(EXPORT.networks.indexOf(live), 1);
      throw error;
    }
  });
}

function runMessage(body, sets) {
  // What the worker's run takes (trainer.js says each): the network, its starting weights (fresh
  // ones are drawn over snapshot 0's), the settings with train.py's intervals, and the images.
  if (!sets) {
    throw new BadRequest(404, "this file carries no training images: export it with draw.py --data-dir DIR "
                              + "(see --train-images)");
  }
  const extra = extraPictures(body.extra);
  const count = sets.train.labels.length + extra.labels.length * extra.repeats;
  if (count < body.batchSize) {
    throw new BadRequest(400, `batchSize ${body.batchSize} is larger than the ${count} training images`);
  }
  const steps = Math.floor(count / body.batchSize) * body.epochs;
  const { epochs, batchSize, lr, weightDecay, seed } = body;
  const settings = { epochs, batchSize, lr, weightDecay, seed, fresh: body.from === "fresh",
                     logInterval: RUN.log_interval, redrawInterval: RUN.redraw_interval,
                     divergedLoss: RUN.diverged_loss, mean: EXPORT.mean, std: EXPORT.std,
                     snapshotSteps: snapshotSteps(steps) };
  const start = body.from === "trained" ? body.network.weights.length - 1 : 0;
  return { job: "run", network: layersOf(body.network), weights: trainingCopy(body.network, start), settings,
           data: { images: sets.train.images, labels: sets.train.labels, extra, test: sets.test } };
}

function trainStop() {
  // Stops the training in progress, at any moment (its trainRun or trainSteps is refused with
  // "training stopped"); whether one was.
  if (running) running.stop();
  return running !== null;
}

Object.assign(offline, { trainSteps, trainRun, trainStop });
})();
