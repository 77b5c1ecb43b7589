// The drawing page's Network select (GET /models): the networks offered, and everything the page
// shows of the chosen one, again when another is chosen or its training here ends.
"use strict";
(() => {
const { state, showError, getJSON, predict, loadKernels, loadTestset, loadTraining } = page;
const modelSelect = document.getElementById("model");

async function refreshNetworks() {
  // The Network select from routes.models(), the user's choice kept; whether it is still there.
  const chosen = modelSelect.value;
  state.catalogue = await getJSON("/models");
  modelSelect.replaceChildren(...state.catalogue.models.map((name, index) => new Option(name, index)));
  const kept = Number(chosen) < state.catalogue.models.length;
  if (kept) modelSelect.value = chosen;
  return kept;
}

async function showChosenNetwork() {
  // Everything the page shows of the chosen network, again: a new choice, or its training ended.
  document.getElementById("step")?.remove();
  page.showStartingPoints();  // the Train panel's (train-panel.js)
  page.showDesignDownloads();  // the Design panel's (design-panel.js)
  try {
    await loadTraining();
    await Promise.all([loadKernels(), loadTestset()]);
  } catch (error) { showError(error.message); }
  if (state.lastInput) predict(state.lastInput, state.drawnLast);
}
modelSelect.addEventListener("change", showChosenNetwork);

Object.assign(page, { refreshNetworks, showChosenNetwork });
})();
