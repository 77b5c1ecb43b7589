// Designing a network in the exported file, second part: a plan (design-plan.js) made into one of
// the page's networks, as page/export.py makes one from the same network written in PyTorch (its
// graph, stages and their details, weights and state_dict), untrained, with PyTorch's default
// initialisation drawn from a seed as a run from fresh weights draws it; and routes.design.
"use strict";
(() => {
const { EXPORT, filled, onlyFields, wholeNumber, designPlan, uniqueName } = offline;
const { tensor, generator, freshWeights } = maths;
const DESIGN = EXPORT.design, RUN = EXPORT.training_run;

function settingsOf(layer, node) {
  // The node's settings as page/nodes.py reads them: the traced probe's, with the layer's numbers.
  const v = layer.values, pair = (value) => [value, value];
  if (layer.type === "conv") {
    return { ...node.settings, kernel: pair(v.kernel), stride: pair(v.stride),
             padding: pair(pair(v.padding)), inputs: layer.input[0] };
  }
  if (layer.type === "maxpool" || layer.type === "avgpool") {
    return { ...node.settings, kernel: pair(v.kernel), stride: pair(v.stride) };
  }
  if (layer.type === "dropout") return { ...node.settings, p: v.p };
  if (layer.type === "linear") return { ...node.settings, inputs: layer.input[0] };
  return node.settings;
}

function shapesOf(layer) {
  // The shape of each of the module's parameters and running statistics, by role.
  const v = layer.values, inputs = layer.input[0];
  if (layer.type === "conv") return { weight: [v.channels, inputs, v.kernel, v.kernel], bias: [v.channels] };
  if (layer.type === "linear") return { weight: [v.features, inputs], bias: [v.features] };
  return { weight: [inputs], bias: [inputs], running_mean: [inputs], running_var: [inputs] };  // batch norm
}

function graphOf(plan) {
  // The graph, as page/export.py's graph_of gives the traced model.py: the input, then a node a
  // layer, each reading the one before.
  let previous = "x";
  const nodes = plan.layers.map((layer) => {
    const node = DESIGN.nodes[layer.kind];
    const params = node.roles.length
      ? Object.fromEntries(node.roles.map((role) => [role, `${layer.attribute}.${role}`])) : null;
    const made = { name: layer.name, op: node.op, args: [{ node: previous }],
                   settings: settingsOf(layer, node), params };
    previous = layer.name;
    return made;
  });
  return [{ name: "x", op: "input" }, ...nodes];
}

function stagesOf(plan, graph) {
  // The stages, as page/explain.py's find_stages finds them: a convolution or linear layer followed
  // by a ReLU shown with it, as one stage; each with the details page/nodes.py gives.
  const { kinds, activation } = DESIGN.shown_with_relu, relu = DESIGN.nodes.relu.kind;
  const stages = [], kindOf = (layer) => DESIGN.nodes[layer?.kind]?.kind;
  plan.layers.forEach((layer, k) => {
    if (k > 0 && stages.at(-1).shown === layer.name) return;  // shown with the layer before
    const node = DESIGN.nodes[layer.kind];
    const withRelu = kinds.includes(node.kind) && kindOf(plan.layers[k + 1]) === relu;
    const settings = graph[k + 1].settings, shown = DESIGN.shown[node.kind] ?? [];
    const details = { kind: node.kind, code: filled(node.code, { name: layer.attribute }),
                      activation: withRelu ? activation : null,
                      ...Object.fromEntries(shown.map((key) => [key, settings[key]])) };
    stages.push({ name: layer.name, node: layer.name, shown: withRelu ? plan.layers[k + 1].name : layer.name,
                  details });
  });
  return stages;
}

function stateOf(plan) {
  // The state_dict's entries in model.py's order (its modules as forward() first calls them), as
  // page/export.py's state_entries writes them, and the float32 tensors' shapes by key.
  const state = [], shapes = {};
  for (const layer of plan.layers.filter((found) => found.attribute && !found.reused)) {
    const own = DESIGN.nodes[layer.kind].state, roleShapes = own.length ? shapesOf(layer) : {};
    for (const [key, dtype, shape, bytes] of own) {
      const full = `${layer.attribute}.${key}`;
      if (bytes === null) shapes[full] = roleShapes[key];
      state.push([full, dtype, bytes === null ? roleShapes[key] : shape, bytes]);
    }
  }
  return [state, shapes];
}

function designedNetwork(plan, seed) {
  // The plan as one of the page's networks, untrained: fresh weights drawn from seed.
  const graph = graphOf(plan), [state, shapes] = stateOf(plan);
  const tensors = Object.keys(shapes).sort().map((key) => [key, shapes[key]]);
  const zeros = Object.fromEntries(tensors.map(([key, shape]) => [key, tensor(shape)]));
  const network = { graph, output: plan.layers.at(-1).name, stages: stagesOf(plan, graph), tensors, state,
                    kernels: plan.layers.filter((l) => l.type === "conv").map((l) => l.attribute),
                    testsets: [[]], cells: [[]], design: plan };
  network.cache = [freshWeights(network, zeros, generator(seed))];
  network.weights = [null];  // held as tensors in cache, not as the export's blocks
  network.name = uniqueName(`designed in this page (untrained, seed ${seed})`, "design");
  network.training = { model: network.name, snapshots: [], loss: [], accuracy: [] };
  return network;
}

function design(request) {
  // routes.design: the network of a list of layers joins the page's networks (as the last, model);
  // each layer's name, output shape and parameters, and their total.
  onlyFields(request, ["layers", "seed"]);
  const seed = wholeNumber({ seed: RUN.defaults.seed, ...request }, "seed", 0, EXPORT.limits.training.seed);
  const plan = designPlan(request.layers);
  EXPORT.networks.push(designedNetwork(plan, seed));
  const layers = plan.layers.map(({ name, shape, parameters }) => ({ name, shape, parameters }));
  return { model: EXPORT.networks.length - 1, layers, parameters: plan.parameters };
}

Object.assign(offline, { design });
})();
