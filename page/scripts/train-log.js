// The Train panel's record of a run (the exported file only): the lines train.py prints, the run's
// curves as it trains, and the network being trained shown as the chosen one, redrawn as its weights
// change (the messages of window.routes.trainRun, page/offline/training.js).
"use strict";
(() => {
const { state, drawCurves, showError, predict, loadKernels, refreshNetworks, showChosenNetwork } = page;
const trainLog = document.getElementById("train-log"), modelSelect = document.getElementById("model");
const run = { curves: null };  // the run's loss and batch accuracy of each step so far, and its total steps

function printed(value, digits) {
  // Python's f"{value:.2f}": the nearest, and a tie to the even digit, where toFixed takes the
  // larger (a batch accuracy of 58/64 is 90.625, which train.py prints as 90.62).
  const text = value.toFixed(digits), exact = Math.abs(value).toFixed(100);
  const tie = /^50*$/.test(exact.slice(exact.indexOf(".") + 1 + digits));
  return tie && Number(text.at(-1)) % 2 ? text.slice(0, -1) + (Number(text.at(-1)) - 1) : text;
}

function logLine(text) {
  // One line of what train.py would print; the box keeps its last lines in view.
  const line = document.createElement("div");
  line.textContent = text;
  trainLog.hidden = false;
  trainLog.append(line);
  trainLog.scrollTop = trainLog.scrollHeight;
}

function drawRunCurves() {
  if (!run.curves || run.curves.loss.length === 0) return;
  const canvas = document.getElementById("train-curves");
  canvas.hidden = false;
  drawCurves(canvas, run.curves, run.curves.loss.length, run.curves.total);
}
window.addEventListener("resize", drawRunCurves);  // a phone turned: the curves' new width

function startLog() {
  // A new run: no lines, no curves yet.
  trainLog.replaceChildren();
  trainLog.hidden = document.getElementById("train-curves").hidden = true;
  run.curves = { loss: [], accuracy: [], total: 0 };
}

function onTrainMessage(message) {
  if (state.liveModel === null) {  // the first message: the network being trained has joined the page's
    state.liveModel = message.model;
    refreshNetworks().then(() => {
      if (state.liveModel === null) return null;  // it failed at once, and is gone again
      modelSelect.value = state.liveModel;
      return showChosenNetwork();
    }).catch((error) => showError(error.message));
  }
  if (message.kind === "progress") {
    progressed(message);
  } else if (message.kind === "weights" && message.step > 0 && modelSelect.value === String(message.model)) {
    loadKernels().catch((error) => showError(error.message));  // the network you see, as it is now
    if (state.lastInput) predict(state.lastInput, state.drawnLast);
  } else if (message.kind === "done") {
    run.curves = { ...message.history, total: message.steps };
    drawRunCurves();
    document.getElementById("train-status").textContent = "testing and writing its checkpoint…";
  }
}

function progressed(message) {
  // A progress message: the curves so far, the line train.py prints (every log interval) and the
  // step reached.
  run.curves.loss.push(...message.recent.loss);
  run.curves.accuracy.push(...message.recent.accuracy);
  run.curves.total = message.total;
  if (message.printed) {  // the lines train.py prints
    logLine(`Epoch: ${message.epoch}/${message.epochs}, Step: ${message.step}/${message.steps}, `
            + `Loss: ${printed(message.loss, 4)}, Accuracy: ${printed(message.accuracy * 100, 2)}%`);
  }
  const of = `${message.done.toLocaleString("en")} of ${message.total.toLocaleString("en")}`;
  const workers = `${message.workers} worker${message.workers > 1 ? "s" : ""}`;
  const status = `step ${of}, ${message.seconds.toFixed(1)} s, on ${workers}`;
  document.getElementById("train-status").textContent = status;
  drawRunCurves();
}

function endLog(result, drawings) {
  // train.py's last lines, and what the run did to the drawings saved on this page.
  logLine(`Run Time: ${printed(result.seconds, 2)} s`);
  logLine(`Test Accuracy: ${printed(result.testAccuracy * 100, 2)}%`);
  if (result.drawings) {
    const { before, after } = result.drawings;
    logLine(`The ${drawings} drawing${drawings === 1 ? "" : "s"} saved on this page, read right: `
            + `${printed(before * 100, 2)}% before training, ${printed(after * 100, 2)}% after`);
  }
}

Object.assign(page, { startLog, onTrainMessage, endLog });
})();
