// Designing a network in the exported file, first part: a list of layers (routes.design's body, the
// Design panel's rows) checked and planned as PyTorch would build the model.py it writes: each
// layer's numbers (PyTorch's defaults for those left out), names, input and output shapes and
// parameters; refused in one line that names the layer. The layers, bounds and words are
// page/design.py's (EXPORT.design, EXPORT.limits.design, EXPORT.messages).
"use strict";
(() => {
const { EXPORT, BadRequest, said, has, isObject } = offline;
const DESIGN = EXPORT.design, BOUNDS = EXPORT.limits.design, TYPES = Object.keys(DESIGN.fields);
const INPUT = [1, 28, 28];  // one grey image: the only input the page makes

function refused(message) { throw new BadRequest(400, message); }

const shapeText = (shape) => shape.join(" x ");
const count = (shape) => shape.reduce((a, b) => a * b, 1);
const thousands = (value) => value.toLocaleString("en");

function familyOf(type) {
  // The names' family of a layer type (DESIGN.names): pooling of either kind is one family.
  const names = DESIGN.names;
  return Object.keys(names).find((family) => family === type || names[family].types?.includes(type));
}

function namer() {
  // Names as torch.fx gives a traced graph's nodes: the first of a base name as it is, the next
  // ones base_1, base_2, ... (the input is x). peek: the name take would give, not taken.
  const used = new Set(["x"]), counts = {};
  const next = (base) => {
    let number = counts[base] ?? 0, name = base;
    while (used.has(name)) name = `${base}_${++number}`;
    return [name, number];
  };
  return {
    peek: (base) => next(base)[0],
    take(base) {
      const [name, number] = next(base);
      used.add(name);
      counts[base] = number;
      return name;
    },
  };
}

function attributeOf(layer, plan) {
  // The module's attribute in model.py, for a layer that is a module (see DESIGN.names), and
  // whether an earlier identical layer already made it.
  const family = familyOf(layer.type);
  if (!family) return [null, false];
  const names = DESIGN.names[family], seen = plan.modules[family] ??= [];
  const key = JSON.stringify([layer.type, layer.values]);
  const earlier = names.shared && seen.find((made) => made.key === key);
  if (earlier) return [earlier.attribute, true];
  const ordinal = seen.length + 1, flat = layer.input.length === 1;
  const tutorial = names.maps_only && flat ? undefined : names.tutorial[ordinal - 1];
  const attribute = tutorial ?? `${names.prefix}${ordinal}`;
  seen.push({ key, attribute });
  return [attribute, false];
}

function templateKind(type, flat) {  // the key of DESIGN.modules and DESIGN.nodes for a layer
  return Object.hasOwn(DESIGN.modules, `${type}_flat`) && flat ? `${type}_flat` : type;
}

function checkedType(layer, number) {
  const types = TYPES.join(", ");
  if (!isObject(layer) || !has(layer, "type")) refused(said("design_not_layer", { number, types }));
  if (typeof layer.type !== "string" || !Object.hasOwn(DESIGN.fields, layer.type)) {
    refused(said("design_type", { number, given: JSON.stringify(layer.type) ?? String(layer.type), types }));
  }
  return layer.type;
}

function checkedValues(layer, name) {
  // The layer's numbers, each checked against its bounds, PyTorch's default for one left out.
  const fields = DESIGN.fields[layer.type], allowed = ["type", ...Object.keys(fields)];
  const unknown = Object.keys(layer).filter((key) => !allowed.includes(key));
  if (unknown.length) {
    refused(said("design_fields", { name, fields: allowed.join(", "), unknown: unknown.join(", ") }));
  }
  const values = {};
  for (const [field, [low, high, fallback]] of Object.entries(fields)) {
    if (!has(layer, field)) {
      if (fallback === null) refused(said("design_missing", { name, field, low, high }));
      values[field] = typeof fallback === "string" ? values[fallback] : fallback;
      continue;
    }
    const value = layer[field];
    if (DESIGN.real.includes(field)) {
      const real = typeof value === "number" && value >= low && value <= high;
      if (!real) refused(said("design_p", { name, low, high }));
    } else if (!Number.isInteger(value) || value < low || value > high) {
      refused(said("whole_number", { name: `${name}'s ${field}`, low, high }));
    }
    values[field] = value;
  }
  return values;
}

function sliding(layer, side, name) {
  // A convolution's or pooling's output side, by the README's formula; refused if it does not fit.
  const { kernel, stride } = layer.values, padding = layer.values.padding ?? 0;
  if (side + 2 * padding < kernel) {
    const fields = { name, kernel, side };
    refused(layer.type === "conv" ? said("design_kernel", fields) : said("design_window", fields));
  }
  return Math.floor((side - kernel + 2 * padding) / stride) + 1;
}

function shaped(layer, name, plan) {
  // The layer's output shape and parameters from its input, and the in_features model.py writes.
  const input = layer.input, flat = input.length === 1, v = layer.values;
  const needsMaps = ["conv", "maxpool", "avgpool"].includes(layer.type);
  if (needsMaps && flat) refused(said("design_maps", { name, count: thousands(input[0]) }));
  if (layer.type === "linear" && !flat) refused(said("design_flatten", { name, shape: shapeText(input) }));
  if (layer.type === "conv") {
    const side = sliding(layer, input[1], name);
    return [[v.channels, side, side], v.channels * input[0] * v.kernel * v.kernel + v.channels, input[0]];
  }
  if (needsMaps) {
    const side = sliding(layer, input[1], name);
    return [[input[0], side, side], 0, null];
  }
  if (layer.type === "flatten") {
    if (!flat) plan.flattened = input.join(DESIGN.source.product);  // 16 * 4 * 4, as the tutorial writes it
    return [[count(input)], 0, null];
  }
  if (layer.type === "linear") {
    const inputs = plan.flattened ?? input[0];
    plan.flattened = null;
    return [[v.features], v.features * input[0] + v.features, inputs];
  }
  if (layer.type === "batchnorm") return [input, 2 * input[0], input[0]];  // a weight and a bias a channel
  return [input, 0, null];
}

function planned(layer, number, plan) {
  // One layer of the plan: its type, numbers, template kind, names, shapes and parameters.
  plan.naming = null;  // the name a refusal gives the layer, once it has one
  const type = checkedType(layer, number), input = plan.shape;
  const kind = templateKind(type, input.length === 1), node = DESIGN.nodes[kind];
  // Named before its numbers are checked: a pooling layer as if it were a new one.
  const provisional = { type, input, values: {} };
  const base = node.node ?? attributeOf(provisional, { modules: structuredClone(plan.modules) })[0];
  plan.naming = plan.names.peek(base);
  const values = checkedValues(layer, plan.naming);
  const [attribute, reused] = attributeOf({ type, input, values }, plan);
  const nodeName = plan.naming = plan.names.take(node.node ?? attribute);
  const [shape, parameters, inputs] = shaped({ type, input, values }, nodeName, plan);
  plan.parameters += parameters;
  if (plan.parameters > BOUNDS.parameters) {
    refused(said("design_parameters", { name: nodeName, count: thousands(plan.parameters),
                                   most: thousands(BOUNDS.parameters) }));
  }
  plan.shape = shape;
  return { type, kind, values, attribute, reused, name: nodeName, input, shape, parameters, inputs };
}

function partPlan(layers) {
  // The plan as far as it goes: {layers: the plan of each layer up to the first that cannot be
  // built, parameters, error: the sentence that names that layer, or null, and the name it gives
  // the layer, if it has one} (the Design panel's rows). At most BOUNDS.layers are planned.
  const most = BOUNDS.layers, found = [];
  const plan = { shape: INPUT, modules: {}, flattened: null, parameters: 0, names: namer(), naming: null };
  try {
    if (!Array.isArray(layers) || layers.length === 0) refused(said("design_layers", { most }));
    layers.slice(0, most).forEach((layer, index) => found.push(planned(layer, index + 1, plan)));
    plan.naming = null;
    if (layers.length > most) refused(said("design_too_many", { number: most + 1, most }));
    const { name, shape } = found.at(-1);
    if (shape.length !== 1) refused(said("design_ends_in_maps", { name, shape: shapeText(shape) }));
    if (shape[0] !== 10) refused(said("design_not_ten", { name, count: shape[0] }));
  } catch (error) {
    if (!(error instanceof BadRequest)) throw error;
    return { layers: found, parameters: plan.parameters, error: error.message, failed: plan.naming };
  }
  return { layers: found, parameters: plan.parameters, error: null, failed: null };
}

function designPlan(layers) {
  // The plan of a list of layers: {layers: [each layer's plan], parameters}; a 400 naming the first
  // layer that cannot be built.
  const plan = partPlan(layers);
  if (plan.error) throw new BadRequest(400, plan.error);
  return plan;
}

Object.assign(offline, { partPlan, designPlan });
})();
