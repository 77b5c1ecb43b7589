// The Design panel (the exported file only): the network being designed (design-rows.js) planned
// after each change, as routes.design would build it: each row's name, output shape and parameters,
// the README's formula worked for the row changed last, the total, or the sentence that names the
// layer that cannot be built and why; "Use this network" (routes.design) adds it to the networks,
// and the chosen network's model.py and model.pt download, when it was designed here.
"use strict";
(() => {
const { design, startFrom, shapeText, count, refreshNetworks, showChosenNetwork } = page;
const modelSelect = document.getElementById("model");
const thousands = (value) => value.toLocaleString("en");

function data() { return window.exportedData.design; }

function sliding(layer) {
  // The README's out = floor((in - kernel + 2 x padding) / stride) + 1, worked out.
  const { kernel, stride } = layer.values, padding = layer.values.padding ?? 0, side = layer.input[1];
  return `out = floor((in − kernel + 2 × padding) / stride) + 1 = `
    + `floor((${side} − ${kernel} + 2 × ${padding}) / ${stride}) + 1 = ${layer.shape[1]}, `
    + `so ${shapeText(layer.shape)}`;
}

function worked(layer) {
  // How the row's shape and parameters come about, in numbers.
  const { name, input, shape, parameters } = layer, v = layer.values;
  if (layer.type === "conv") {
    return `${name}: ${sliding(layer)}; parameters ${v.channels} × (${input[0]} × ${v.kernel} × ${v.kernel}) `
      + `+ ${v.channels} = ${thousands(parameters)}, a kernel and a bias for each of its maps.`;
  }
  if (["maxpool", "avgpool"].includes(layer.type)) return `${name}: ${sliding(layer)}; no parameters.`;
  if (layer.type === "linear") {
    return `${name}: ${v.features} × ${input[0]} + ${v.features} = ${thousands(parameters)} parameters: `
      + `a weight for each of its ${input[0]} inputs in each of its ${v.features} outputs, and a bias each.`;
  }
  if (layer.type === "flatten") {
    return `${name}: ${shapeText(input)} = ${thousands(count(input))} values in one row.`;
  }
  if (layer.type === "batchnorm") {
    const each = `${input[0]} ${input.length === 1 ? "values" : "maps"}`;
    return `${name}: a weight and a bias for each of its ${each}: 2 × ${input[0]} = ${parameters} `
      + `parameters.`;
  }
  return `${name}: the same shape as its input, ${shapeText(shape)}; no parameters.`;
}

function showRow(item, layer) {
  // A row's name, shape and parameters (a dash for a row after one that cannot be built), and
  // what each of its empty fields stands for.
  item.querySelector(".design-name").textContent = layer ? layer.name : "—";
  item.querySelector(".design-shape").textContent = layer ? shapeText(layer.shape) : "?";
  const parameters = layer?.parameters ?? 0;
  item.querySelector(".design-parameters").textContent
    = layer ? `${thousands(parameters)} parameter${parameters === 1 ? "" : "s"}` : "";
  for (const input of item.querySelectorAll("input.design-number")) {
    if (layer && input.value === "") input.placeholder = String(layer.values[input.dataset.field]);
  }
}

function showPlan() {
  // The plan of the rows as they are now: every row's result, the total and the sentence.
  const plan = data().plan(design.layers), rows = document.querySelectorAll("#design-layers li");
  rows.forEach((item, index) => {
    showRow(item, plan.layers[index]);
    // The row the sentence names, when it is a row's, by the name the sentence gives it.
    const named = Boolean(plan.error) && index === plan.layers.length;
    item.classList.toggle("design-bad", named);
    if (named && plan.failed) item.querySelector(".design-name").textContent = plan.failed;
  });
  const touched = plan.layers[design.touched];
  document.getElementById("design-worked").textContent = touched ? worked(touched) : "";
  document.getElementById("design-total").textContent = plan.error ? ""
    : `${thousands(plan.parameters)} parameters in all; it ends in 10 values, one score for each digit.`;
  // A layer's name starts the sentence as model.py writes it (pool2's ...); a layer named by its
  // place is the sentence's first word (Layer 17 ...).
  const error = plan.error && plan.error.startsWith("layer ") ? `L${plan.error.slice(1)}` : plan.error;
  const sentence = error ? `${error}.` : "";
  document.getElementById("design-error").textContent = sentence;
  document.getElementById("design-use").hidden = Boolean(plan.error);
  document.getElementById("design-status").textContent = "";
}

async function useNetwork() {
  // routes.design: the network joins the Network list, untrained, and is chosen.
  const status = document.getElementById("design-status");
  // The Train panel's seed, from which a run draws fresh weights.
  const seed = Number(document.getElementById("train-seed").value);
  try {
    const answer = window.routes.design({ layers: design.layers, seed });
    await refreshNetworks();
    modelSelect.value = answer.model;
    await showChosenNetwork();
    const name = modelSelect.selectedOptions[0].text;
    status.textContent = `Added to the Network list as "${name}" and chosen: every stage below is its own. `
      + `Train it in "Train it here", then download it.`;
  } catch (error) { status.textContent = error.message; }
}

function showDesignDownloads() {
  // The downloads are for the chosen network, when it was designed here (or trained from one).
  if (!window.routes?.modelSource) return;
  let designed = true;
  try { window.routes.modelSource({ model: Number(modelSelect.value) }); } catch { designed = false; }
  document.getElementById("design-downloads").hidden = !designed;
  document.getElementById("design-chosen").textContent = designed
    ? `The chosen network, "${modelSelect.selectedOptions[0]?.text}", for Python:` : "";
}

function startDesignPanel() {
  if (!window.routes?.design) return;  // the served page: edit model.py instead
  const { bounds } = data();
  document.getElementById("design-about").textContent = `Start from the tutorial's network, change a layer's `
    + `type or numbers, add (+), remove (×) or move (↑ ↓) layers: each row shows its output shape and `
    + `parameters as you type, and the formula is worked for the row you change. At most ${bounds.layers} `
    + `layers, ${bounds.channels} channels a convolution, kernels up to ${bounds.kernel} × ${bounds.kernel}, `
    + `${bounds.features} features a linear layer and ${thousands(bounds.parameters)} parameters in all, so `
    + `that this file stays quick on a phone. "Use this network" adds it, untrained, with fresh weights `
    + `drawn from the Train panel's seed.`;
  design.changed = showPlan;
  startFrom(data().tutorial);
  document.getElementById("design-panel").hidden = false;
  showDesignDownloads();
}

document.getElementById("design-use").addEventListener("click", useNetwork);
document.getElementById("design-reset").addEventListener("click", () => startFrom(data().tutorial));
document.getElementById("design-source").addEventListener("click", () => {
  window.routes.downloadSource({ model: Number(modelSelect.value) });
});
document.getElementById("design-checkpoint").addEventListener("click", () => {
  window.routes.downloadCheckpoint({ model: Number(modelSelect.value) });
});

Object.assign(page, { startDesignPanel, showDesignDownloads });
})();
