// The drawing page's start, its last script: the box to draw in, the networks and sets offered,
// collecting when it is on, the chosen network shown, then (in the exported file) the Design and Train
// panels.
"use strict";
(() => {
const { state, showError, getJSON, startDrawing, loadTraining, loadKernels, loadTestset } = page;
const { showCollected, startTrainPanel, startDesignPanel } = page;

async function start() {
  startDrawing();
  const catalogue = state.catalogue = await getJSON("/models");
  const modelSelect = document.getElementById("model"), compareSelect = document.getElementById("compare");
  catalogue.models.forEach((name, index) => {
    modelSelect.add(new Option(name, index));
    compareSelect.add(new Option(name, index));
  });
  const setSelect = document.getElementById("set");
  catalogue.sets.forEach((set, index) => setSelect.add(new Option(`${set.name} (${set.count})`, index)));
  if (catalogue.collect) {
    document.getElementById("collect").hidden = false;
    document.getElementById("collect-download").hidden = !window.routes;
    showCollected(catalogue.collect.counts);
  }
  document.getElementById("checkpoint-download").hidden = !window.routes;  // the exported file only
  await loadTraining();
  await Promise.all([loadKernels(), loadTestset()]);
  document.body.dataset.ready = "true";  // scripts (and tests) wait for this
  startDesignPanel();
  await startTrainPanel();  // after ready: it decodes the training images first
}
start().catch((error) => showError(error.message));
})();
