// The checks of the exported file's training bodies (routes.trainSteps and routes.trainRun), each
// refused in one line: the bounds are EXPORT.limits.training (train.py's for the learning rate, the
// weight decay and the seed; the file's own for a phone's memory), the defaults train.py's
// (EXPORT.training_run), both from page/export.py.
"use strict";
(() => {
const { EXPORT, BadRequest, has, onlyFields, wholeNumber, chosen, roundHalfEven, normalise } = offline;
const { STORAGES, preparedDrawings } = offline;
const { tensor, untrainable } = maths;
const TRAINING = EXPORT.limits.training, RUN = EXPORT.training_run;
// Workers that share each batch: one a core (as many as the browser says it has), at most the
// export's bound; a body may ask for fewer (or more, up to the bound).
const WORKERS = Math.max(1, Math.min(TRAINING.workers, navigator.hardwareConcurrency || 1));
const RUN_DEFAULTS = { model: 0, ...RUN.defaults, extra: false, from: "fresh", workers: WORKERS };

function rates(request) {
  // lr and weightDecay, checked alike for both.
  const { lr, weightDecay } = request;
  if (typeof lr !== "number" || !(lr > 0 && lr <= TRAINING.lr)) {
    throw new BadRequest(400, `lr must be a number above 0, at most ${TRAINING.lr}`);
  }
  if (typeof weightDecay !== "number" || !(weightDecay >= 0 && weightDecay <= TRAINING.weightDecay)) {
    throw new BadRequest(400, `weightDecay must be a number from 0 to ${TRAINING.weightDecay}`);
  }
  return { lr, weightDecay };
}

function trainingImages(images) {
  // trainSteps' images: 1 to TRAINING.images of 28 rows of 28 grey levels, as the network's input.
  const most = TRAINING.images;
  if (!Array.isArray(images) || images.length < 1 || images.length > most) {
    throw new BadRequest(400, `images must be a list of 1 to ${most} images`);
  }
  const input = tensor([images.length, 1, 28, 28]);
  images.forEach((image, k) => {
    const rows = Array.isArray(image) && image.length === 28;
    if (!rows || !image.every((row) => Array.isArray(row) && row.length === 28)) {
      throw new BadRequest(400, `image ${k} must be 28 rows of 28 grey levels`);
    }
    image.forEach((row, y) => row.forEach((v, x) => {
      if (!Number.isInteger(v) || v < 0 || v > 255) {
        throw new BadRequest(400, `image ${k}: grey levels must be whole numbers from 0 to 255`);
      }
      input.data[k * 784 + y * 28 + x] = normalise(v);
    }));
  });
  return input;
}

function trainingBody(request) {
  // The checks of trainSteps' body, each refused in one line; returns what it asks for.
  onlyFields(request, ["model", "images", "labels", "lr", "steps", "dropout", "weightDecay", "workers"]);
  const [model, network] = chosen(has(request, "model") ? { model: request.model } : {});  // 0 unless named
  const input = trainingImages(request.images), labels = request.labels;
  const digits = (list) => list.every((d) => Number.isInteger(d) && d >= 0 && d <= 9);
  if (!Array.isArray(labels) || labels.length !== request.images.length || !digits(labels)) {
    throw new BadRequest(400, "labels must be one digit from 0 to 9 for each image");
  }
  const { lr, weightDecay } = rates({ weightDecay: 0, ...request });
  const dropout = has(request, "dropout") ? request.dropout : false;
  if (typeof dropout !== "boolean") throw new BadRequest(400, "dropout must be true or false");
  const steps = wholeNumber(request, "steps", 1, TRAINING.steps);
  const workers = wholeNumber({ workers: WORKERS, ...request }, "workers", 1, TRAINING.workers);
  return { model, network, input, labels, lr, weightDecay, steps, dropout, workers };
}

function runBody(request) {
  // trainRun's body, each value checked and refused in one line; the defaults are the tutorial's.
  onlyFields(request, Object.keys(RUN_DEFAULTS));
  const body = { ...RUN_DEFAULTS, ...request }, [model, network] = chosen({ model: body.model });
  for (const key of ["epochs", "batchSize", "workers"]) wholeNumber(body, key, 1, TRAINING[key]);
  wholeNumber(body, "seed", 0, TRAINING.seed);
  rates(body);
  if (typeof body.extra !== "boolean") throw new BadRequest(400, "extra must be true or false");
  if (!["fresh", "initial", "trained"].includes(body.from)) {
    throw new BadRequest(400, "from must be fresh, initial or trained");
  }
  if (body.from === "initial" && network.training.snapshots[0] !== 0) {
    throw new BadRequest(409, `network ${model} (${network.name}) has no initial weights in this file `
                              + "(trained with --no-snapshots): start from fresh or trained");
  }
  trainable(model, network);
  checkpointable(model, network);
  return { ...body, model, network };
}

function trainable(model, network) {
  // Refuses, in one line naming the node, a network the file cannot train.
  const why = untrainable(network);
  if (why) {
    throw new BadRequest(422, `network ${model} (${network.name}) cannot be trained in this file: ${why}`);
  }
}

function checkpointable(model, network) {
  // Refuses, before it trains, a network whose checkpoint the file could not write at the end.
  const [key, dtype] = network.state.find(([, type]) => !Object.hasOwn(STORAGES, type)) ?? [];
  if (key) {
    throw new BadRequest(422, `network ${model} (${network.name}) cannot be trained in this file: its `
                              + `${key} is ${dtype}, which the checkpoint it writes cannot hold`);
  }
}

function extraPictures(wanted) {
  // The drawings collected so far, prepared as test.py --image prepares them, and how many times
  // each is seen an epoch (train.py's rule, extras/pictures.py: about EXTRA_PER_EPOCH an epoch,
  // at most EXTRA_MOST each).
  if (!wanted) return { images: new Float32Array(0), labels: [], repeats: 0 };
  const { images, labels } = preparedDrawings();
  if (!labels.length) {
    throw new BadRequest(409, "no drawings are collected yet: save some with the digit buttons, then train "
                              + "with them");
  }
  const repeats = Math.min(RUN.extra_most, Math.max(1, roundHalfEven(RUN.extra_per_epoch / labels.length)));
  return { images, labels, repeats };
}

function snapshotSteps(total) {  // train.py's snapshots: 0, 1, 2, 5, 10, 20, 50, ... and the last step
  const steps = [0];
  for (let scale = 1; scale < total; scale *= 10) {
    steps.push(...[1, 2, 5].map((f) => f * scale).filter((step) => step < total));
  }
  return [...steps, total];
}

Object.assign(offline, { trainingBody, trainable, runBody, extraPictures, snapshotSteps });
})();
