// The Design panel's rows (the exported file only): the network being designed as a list of layers,
// one row each, whose type (its menu), numbers (its fields) and place (its ↑ ↓ + × buttons) the
// student changes; design-panel.js plans the list after each change and shows what each row gives.
"use strict";
(() => {
const { element } = page;
// The panel's words for each layer type of routes.design.
const LABELS = { conv: "convolution", relu: "ReLU", sigmoid: "Sigmoid", tanh: "Tanh", maxpool: "max pooling",
                 avgpool: "average pooling", dropout: "dropout", batchnorm: "batch norm", flatten: "flatten",
                 linear: "linear" };
const BUTTONS = [["up", "↑", "Move up"], ["down", "↓", "Move down"], ["add", "+", "Add a layer below"],
                 ["remove", "×", "Remove"]];
const list = document.getElementById("design-layers");
// The layers as routes.design takes them (a number left empty is left out: PyTorch's default), the
// row changed last, and what design-panel.js does after a change.
const design = { layers: [], touched: 0, changed: () => {} };

function data() { return window.exportedData.design; }

function startingValue(field, from, low) {
  // A number for a row that has just become a layer that needs it: the one it had, else the
  // tutorial's first layer's with that number, else the smallest allowed.
  if (from[field] !== undefined) return from[field];
  const tutorial = data().tutorial.find((layer) => layer[field] !== undefined);
  return tutorial ? tutorial[field] : low;
}

function changedType(from, type) {
  // The layer a row becomes when its type is changed: the numbers it needs, the others it had kept.
  const layer = { type };
  for (const [field, [low, , fallback]] of Object.entries(data().fields[type])) {
    if (fallback === null) layer[field] = startingValue(field, from, low);
    else if (from[field] !== undefined) layer[field] = from[field];
  }
  return layer;
}

function numberField(layer, field, [low, high, fallback], number) {
  const input = element("input", "design-number");
  Object.assign(input, { type: "number", min: low, max: high, step: field === "p" ? "0.05" : "1" });
  input.dataset.field = field;
  input.value = layer[field] ?? "";
  // What an empty field means: PyTorch's default (a stride, the kernel's size), or that it is needed.
  const meaning = typeof fallback === "string" ? layer[fallback] : fallback;
  if (typeof fallback === "string") input.dataset.fallback = fallback;
  input.placeholder = meaning === null || meaning === undefined ? "needed" : String(meaning);
  input.setAttribute("aria-label", `layer ${number}'s ${field}`);
  const label = element("label", "design-field", `${field} `);
  label.append(input);
  return label;
}

function row(layer, index) {
  const item = element("li", "design-row"), number = index + 1;
  item.dataset.row = index;
  const type = element("select", "design-type");
  type.setAttribute("aria-label", `layer ${number}'s type`);
  type.append(...Object.keys(data().fields).map((name) => new Option(LABELS[name] ?? name, name)));
  type.value = layer.type;
  const head = element("div", "design-head"), buttons = element("span", "design-buttons");
  for (const [action, text, title] of BUTTONS) {
    const button = element("button", "", text);
    Object.assign(button, { type: "button", title });
    button.dataset.action = action;
    button.setAttribute("aria-label", `${title}: layer ${number}`);
    buttons.append(button);
  }
  head.append(element("span", "design-name"), type, element("span", "shape design-shape"),
              element("span", "axis design-parameters"), buttons);
  item.append(head);
  const numbers = Object.entries(data().fields[layer.type] ?? {});
  if (numbers.length) {
    const fields = element("div", "design-fields");
    fields.append(...numbers.map(([field, bounds]) => numberField(layer, field, bounds, number)));
    item.append(fields);
  }
  return item;
}

function showRows() {
  list.replaceChildren(...design.layers.map(row));
  const last = design.layers.length - 1;
  list.querySelectorAll("li").forEach((item, index) => {
    item.querySelector('[data-action="up"]').disabled = index === 0;
    item.querySelector('[data-action="down"]').disabled = index === last;
    item.querySelector('[data-action="remove"]').disabled = last === 0;
  });
}

function changeRows(update) {
  // A change of the rows' types, number or order: the rows again, then the plan.
  update();
  showRows();
  design.changed();
}

function startFrom(layers) {
  changeRows(() => {
    design.layers = structuredClone(layers);
    design.touched = 0;
  });
}

const ACTIONS = {
  up: (at) => { design.layers.splice(at - 1, 0, ...design.layers.splice(at, 1)); return at - 1; },
  down: (at) => { design.layers.splice(at + 1, 0, ...design.layers.splice(at, 1)); return at + 1; },
  add: (at) => { design.layers.splice(at + 1, 0, { type: "relu" }); return at + 1; },
  remove: (at) => { design.layers.splice(at, 1); return Math.min(at, design.layers.length - 1); },
};

list.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const at = Number(button.closest("li").dataset.row);
  changeRows(() => { design.touched = ACTIONS[button.dataset.action](at); });
});

list.addEventListener("change", (event) => {
  if (!event.target.matches("select.design-type")) return;
  const at = Number(event.target.closest("li").dataset.row);
  changeRows(() => {
    design.layers[at] = changedType(design.layers[at], event.target.value);
    design.touched = at;
  });
});

list.addEventListener("input", (event) => {
  // A number typed: the plan again, the rows as they are (the field keeps the focus).
  const input = event.target;
  if (!input.matches("input.design-number")) return;
  const at = Number(input.closest("li").dataset.row), layer = design.layers[at];
  if (input.value === "") delete layer[input.dataset.field];
  else layer[input.dataset.field] = Number(input.value);
  for (const other of input.closest("li").querySelectorAll("input[data-fallback]")) {
    other.placeholder = String(layer[other.dataset.fallback] ?? "");  // a stride's default is the kernel
  }
  design.touched = at;
  design.changed();
});

Object.assign(page, { design, startFrom });
})();
