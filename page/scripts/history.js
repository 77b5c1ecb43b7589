// The drawing page's "How it learned" (GET /training): a slider over the snapshots train.py kept,
// the run's curves with a line at the chosen step, and the whole page shown again for the network
// as it was at that step.
"use strict";
(() => {
const { state, drawCurves, showError, getJSON, loadKernels, loadTestset, predict } = page;
const slider = document.getElementById("training-step");
const shown = { training: null };  // GET /training: the chosen network's history and snapshot steps

async function loadTraining() {
  const modelSelect = document.getElementById("model");
  const training = shown.training = await getJSON(`/training?model=${modelSelect.value}`);
  const panel = document.getElementById("training");
  // A network still training here has no snapshots yet: its weights are the ones it has now.
  panel.hidden = training.snapshots.length === 0 || Number(modelSelect.value) === state.liveModel;
  const note = document.getElementById("training-note");  // the exported file's, when it rounds snapshots
  note.textContent = training.note || "";
  note.hidden = !training.note;
  slider.max = Math.max(0, training.snapshots.length - 1);
  slider.value = slider.max;  // the final weights first
  showTrainingStep();
}

function showTrainingStep() {
  const { training } = shown;
  if (!training || training.snapshots.length === 0) return;
  const step = training.snapshots[Number(slider.value)];
  document.getElementById("training-label").textContent = `${step} of ${training.loss.length}`;
  drawCurves(document.getElementById("curves"), training, step);
}

window.addEventListener("resize", showTrainingStep);  // a phone turned: the curves' new width

slider.addEventListener("input", () => {
  showTrainingStep();
  document.getElementById("step")?.remove();
  Promise.all([loadKernels(), loadTestset()]).catch((error) => showError(error.message));
  if (state.lastInput) predict(state.lastInput, state.drawnLast);
});

Object.assign(page, { loadTraining, showTrainingStep });
})();
