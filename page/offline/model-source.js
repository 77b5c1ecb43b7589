// Designing a network in the exported file, last part: routes.modelSource, the model.py of a network
// designed in the page (or trained here from one) in the project's style: class Net, the tutorial's
// attribute names where a layer is the tutorial's, each line's output shape, tutorial_model = Net.
// Its words are page/design.py's templates (EXPORT.design.source and .modules).
"use strict";
(() => {
const { EXPORT, BadRequest, filled, said, onlyFields, chosen, downloaded } = offline;
const DESIGN = EXPORT.design, SOURCE = DESIGN.source;

function moduleText(layer) {
  // What __init__ builds for the layer: its module's template, with the numbers PyTorch would not
  // take by default written as options.
  const { template, options } = DESIGN.modules[layer.kind], fields = DESIGN.fields[layer.type];
  const given = Object.keys(options).filter((field) => {
    const fallback = fields[field][2];
    return layer.values[field] !== (typeof fallback === "string" ? layer.values[fallback] : fallback);
  });
  const written = given.map((field) => filled(options[field], layer.values)).join("");
  return filled(template, { ...layer.values, inputs: layer.inputs, options: written });
}

function forwardLine(layer, last) {
  // The line of forward() that runs the layer, and its output shape as a comment.
  const { attribute, type } = layer;
  const call = attribute ? filled(DESIGN.called, { name: attribute }) : DESIGN.functions[type];
  const code = filled(last ? SOURCE.last : SOURCE.line, { call });
  const comment = filled(last ? SOURCE.last_shape : SOURCE.shape, { shape: layer.shape.join(", ") });
  return code + " ".repeat(Math.max(2, SOURCE.column - code.length)) + comment;
}

function sourceOf(plan) {
  // model.py: its modules in the order forward() first calls them, then forward(), a line a layer.
  const modules = plan.layers.filter((layer) => layer.attribute && !layer.reused)
    .map((layer) => filled(SOURCE.module, { name: layer.attribute, module: moduleText(layer) }));
  const lines = plan.layers.map((layer, k) => forwardLine(layer, k === plan.layers.length - 1));
  const summary = filled(SOURCE.summary, { layers: plan.layers.length,
                                           parameters: plan.parameters.toLocaleString("en") });
  return filled(SOURCE.file, { summary, modules: modules.join("\n"), lines: lines.join("\n") });
}

function modelSource(request) {
  // routes.modelSource: {source}, the model.py of network model, if it was designed here.
  onlyFields(request, ["model"]);
  const [model, network] = chosen(request);
  if (!network.design) throw new BadRequest(400, said("design_not_designed", { model, given: network.name }));
  return { source: sourceOf(network.design) };
}

function downloadSource(request) {
  // The Design panel's "Download model.py": the chosen network's model.py, as a file.
  downloaded(new Blob([modelSource(request).source], { type: "text/x-python" }), "model.py");
}

Object.assign(offline, { modelSource, downloadSource });
})();
