// The drawing page's step-by-step view: a click on a pixel of a stage's map asks how that value was
// computed (POST /step), and the page shows the numbers (a convolution's patch, kernel and products,
// a pooling's block, a linear unit's largest contributions), adds them up itself and checks the sum.
"use strict";
(() => {
const { state, SCALES, shapeText, fixed, showError, post } = page;

function numberGrid(values, height, width, offset = 0, kept = -1) {
  const table = document.createElement("table");
  const largest = Math.max(...values.slice(offset, offset + height * width).map(Math.abs));
  const colour = SCALES.signed(largest);
  for (let r = 0; r < height; r++) {
    const row = table.insertRow();
    for (let c = 0; c < width; c++) {
      const value = values[offset + r * width + c];
      const cell = row.insertCell();
      cell.textContent = fixed(value, 2);
      cell.style.background = `rgb(${colour(value).join(",")})`;
      if (r * width + c === kept) cell.className = "kept";
    }
  }
  return table;
}

function figure(caption, content) {
  const box = document.createElement("figure");
  const text = document.createElement("figcaption");
  text.textContent = caption;
  box.append(text, content);
  return box;
}

function convolutionParts(step) {
  // One group per input map: patch, kernel, products; then their sum and the bias.
  const [channels, height, width] = step.shape, area = height * width;
  const grids = document.createElement("div");
  grids.className = "grids";
  for (let c = 0; c < channels; c++) {
    const channel = step.channels[c], group = document.createElement("div");
    group.className = "channel";
    group.append(figure(`input map ${channel}, rows ${step.top}…${step.top + height - 1}`,
                        numberGrid(step.patch, height, width, c * area)),
                 figure(`× kernel ${step.map}, input ${channel}`,
                        numberGrid(step.kernel, height, width, c * area)),
                 figure(`= products`, numberGrid(step.products, height, width, c * area)));
    grids.append(group);
  }
  const total = step.products.reduce((a, b) => a + b, 0) + step.bias;
  return [[grids, `sum of the ${step.products.length} products = ${fixed(total - step.bias, 4)}; `
    + `+ bias ${fixed(step.bias, 4)} = ${fixed(total, 4)}`], total];
}

function poolParts(step) {
  const total = Math.max(...step.block);
  const title = `the ${shapeText(step.shape)} block at row ${step.top}, column ${step.left} of the maps `
    + "before";
  return [[figure(title, numberGrid(step.block, step.shape[0], step.shape[1], 0, step.kept)),
           `the largest value is kept: ${fixed(total, 4)}`], total];
}

function linearParts(step) {
  const table = document.createElement("table");
  table.insertRow().innerHTML = "<td>input</td><td>value</td><td>× weight</td><td>= product</td>";
  for (const term of step.largest) {
    table.insertRow().innerHTML = `<td>#${term.index}</td><td>${fixed(term.input)}</td>`
      + `<td>${fixed(term.weight)}</td><td>${fixed(term.product)}</td>`;
  }
  const total = step.largest.reduce((a, term) => a + term.product, 0) + step.rest + step.bias;
  const title = `the ${step.largest.length} largest of the ${step.inputs} contributions to unit ${step.unit}`;
  const others = step.inputs - step.largest.length;
  return [[figure(title, table),
           `their sum ${fixed(total - step.rest - step.bias, 4)}; + the other ${others} `
           + `products ${fixed(step.rest, 4)}; + bias ${fixed(step.bias, 4)} = ${fixed(total, 4)}`], total];
}

const PARTS = { convolution: convolutionParts, pool: poolParts, linear: linearParts };

function stepContent(step) {
  // Returns [what to show, the value this page adds up itself].
  if (!Object.hasOwn(PARTS, step.kind)) {
    return [["This kind of stage has no step-by-step view; the value is as the model computed it."], null];
  }
  const [parts, sum] = PARTS[step.kind](step);
  if (!step.activation) return [parts, sum];
  parts.push(`then ${step.activation}: max(0, ${fixed(sum, 4)}) = ${fixed(Math.max(0, sum), 4)}`);
  return [parts, Math.max(0, sum)];
}

async function openStep(stageName, mapIndex, row, column) {
  const stage = state.lastAnswer.layers.find((s) => s.name === stageName);
  const [height, width] = stage.shape.length === 3 ? stage.shape.slice(1) : [1, stage.values.length];
  const value = stage.values[mapIndex * height * width + row * width + column];
  let step;
  try {
    step = await post("/step", { stage: stageName, map: mapIndex, row, column });
  } catch (error) { showError(error.message); return; }
  const view = document.getElementById("step") || document.createElement("div");
  view.id = "step";
  view.className = "panel";
  Object.assign(view.dataset, { stage: stageName, map: mapIndex, row, column, value });
  const title = document.createElement("h2");
  title.textContent = stage.shape.length === 3
    ? `How ${stageName}, map ${mapIndex}, row ${row}, column ${column} was computed`
    : `How ${stageName}, value ${column} was computed`;
  const [parts, total] = stepContent(step);
  view.replaceChildren(title, ...parts.map((part) => {
    if (typeof part !== "string") return part;
    const line = document.createElement("p");
    line.className = "equation";
    line.textContent = part;
    return line;
  }));
  if (total !== null) view.append(checked(view, total, value));
  else delete view.dataset.sum;
  document.querySelector(`section[data-stage="${CSS.escape(stageName)}"]`).after(view);
}

function checked(view, total, value) {
  // The line that compares the page's own sum with the value in the map.
  view.dataset.sum = total;
  const ok = Math.abs(total - value) < 1e-4;
  const check = document.createElement("p");
  check.className = `check ${ok ? "ok" : "bad"}`;
  check.textContent = ok ? `= ${fixed(value, 4)}, the value in the map ✓`
                         : `differs from the value in the map, ${fixed(value, 4)} ✗`;
  return check;
}

document.getElementById("stages").addEventListener("click", (event) => {
  const canvas = event.target.closest("canvas.map");
  if (!canvas || !state.lastAnswer) return;
  const box = canvas.getBoundingClientRect();
  const row = Math.min(canvas.height - 1, Math.floor((event.clientY - box.top) / box.height * canvas.height));
  const column = Math.min(canvas.width - 1,
                          Math.floor((event.clientX - box.left) / box.width * canvas.width));
  openStep(canvas.closest("section").dataset.stage, Number(canvas.dataset.map), row, column);
});
})();
