// The drawing page's Train panel (the exported file only, when it carries training images): its
// settings, from train.py's defaults and the bounds the export sends (window.exportedData.training),
// and its Train and Stop buttons, which run window.routes.trainRun: train.py's loop in a Web Worker.
"use strict";
(() => {
const { state, refreshNetworks, showChosenNetwork, startLog, onTrainMessage, endLog } = page;
const modelSelect = document.getElementById("model");
// The settings' fields by their trainRun names.
const FIELDS = { epochs: "train-epochs", lr: "train-lr", batchSize: "train-batch", seed: "train-seed" };

function showStartingPoints() {
  // "Start from the chosen network's initial weights" needs its snapshot at step 0.
  const option = document.querySelector('#train-from option[value="initial"]');
  option.disabled = state.catalogue.snapshots[Number(modelSelect.value)]?.[0] !== 0;
  if (option.disabled && option.selected) document.getElementById("train-from").value = "fresh";
}

async function startTrainPanel() {
  if (!window.routes || !window.routes.trainRun) return;  // the served page trains with train.py
  const { bounds, defaults, redraw_interval: redrawInterval } = window.exportedData.training;
  for (const [name, id] of Object.entries(FIELDS)) {
    const field = document.getElementById(id);
    field.value = defaults[name];
    if (name !== "seed") field.max = bounds[name];
  }
  document.getElementById("train-panel").hidden = false;
  const about = document.getElementById("train-about");
  const sets = await window.exportedData.mnistImages();
  if (!sets) {  // trainRun refuses at once, before any run, and says how to export a file that trains
    const why = await window.routes.trainRun({}).then(() => "", (error) => error.message);
    about.textContent = `${why.charAt(0).toUpperCase()}${why.slice(1)}.`;
    return;
  }
  const images = sets.train.labels.length.toLocaleString("en");
  about.textContent = `Trains the chosen network's layers in this browser on the ${images} MNIST training `
    + `images this file carries, with the same maths as train.py: Adam, cross-entropy, dropout. It runs `
    + `in background workers, one for each of this device's cores (at most ${bounds.workers}), so the page `
    + `keeps answering: draw while it trains, and every ${redrawInterval} `
    + `steps you see the network as it is. Then it joins the networks above; "Download model.pt" saves it `
    + `for python test.py. A seed always gives the same run here, but not train.py's (PyTorch's random `
    + `numbers are its own).`;
  document.getElementById("train-extra-box").hidden = !state.catalogue.collect;
  document.getElementById("train-controls").hidden = false;
  showStartingPoints();
}

function trainingRuns(running) {
  document.getElementById("train-start").disabled = running;
  document.getElementById("train-stop").disabled = !running;
  const controls = document.querySelectorAll("#train-settings input, #train-settings select, #train-extra");
  for (const control of controls) control.disabled = running;
  if (!running) showStartingPoints();
}

function runBody() {
  // What the settings ask for; an empty field is NaN, and trainRun says what it takes.
  const number = (id) => Number(document.getElementById(id).value);
  const body = Object.fromEntries(Object.entries(FIELDS).map(([name, id]) => [name, number(id)]));
  return { model: Number(modelSelect.value), ...body, from: document.getElementById("train-from").value,
           extra: Boolean(state.catalogue.collect) && document.getElementById("train-extra").checked };
}

document.getElementById("train-start").addEventListener("click", async () => {
  const body = runBody(), chosenBefore = modelSelect.value, status = document.getElementById("train-status");
  const { collect } = state.catalogue, drawings = collect ? collect.counts.reduce((a, b) => a + b, 0) : 0;
  document.getElementById("train-error").textContent = "";
  startLog();
  status.textContent = "starting…";
  trainingRuns(true);
  try {
    const result = await window.routes.trainRun(body, onTrainMessage);
    state.liveModel = null;
    endLog(result, drawings);
    await refreshNetworks();
    document.getElementById("train-curves").hidden = true;  // they are the network's own now, with its slider
    const name = state.catalogue.models[result.model];
    status.textContent = `done: "${name}" is in the Network list, with its curves`;
    if (modelSelect.value === String(result.model)) await showChosenNetwork();
  } catch (error) {  // refused, stopped or failed: the run's network, if it had joined, is gone again
    const wasChosen = state.liveModel !== null && modelSelect.value === String(state.liveModel);
    state.liveModel = null;
    status.textContent = "";
    document.getElementById("train-error").textContent = error.message;
    if (!(await refreshNetworks()) || wasChosen) {
      modelSelect.value = chosenBefore;
      await showChosenNetwork();
    }
  } finally {
    trainingRuns(false);
  }
});
document.getElementById("train-stop").addEventListener("click", () => window.routes.trainStop());

Object.assign(page, { showStartingPoints, startTrainPanel });
})();
