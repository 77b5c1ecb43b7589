// The drawing page's "Where it fails" (GET /testset and /examples): the chosen network's accuracy
// and confusion matrix on a labelled set, the images of a cell (a click sends one through the
// network), and two networks compared: the images one reads right and the other wrong.
"use strict";
(() => {
const { state, SCALES, paint, showError, getJSON, query, predict, clearDrawing } = page;
const setSelect = document.getElementById("set");
const compareSelect = document.getElementById("compare");
const modelSelect = document.getElementById("model");

async function loadTestset() {
  const status = document.getElementById("testset-status"), table = document.getElementById("confusion");
  table.replaceChildren();
  document.getElementById("examples").replaceChildren();
  document.getElementById("examples-title").textContent = "";
  document.getElementById("comparison").replaceChildren();
  if (state.catalogue.sets.length === 0) {
    status.textContent = state.catalogue.missing || "No labelled images were given.";
    return;
  }
  if (Number(modelSelect.value) === state.liveModel) {
    status.textContent = "This network is still training: its accuracy and confusion matrix on the test set "
      + "show here when it ends.";
    return;
  }
  let answer;
  try {
    answer = await getJSON(`/testset?${query({ set: setSelect.value })}`);  // at the slider's step
  } catch (error) {  // a network trained in the exported file has answers for its final weights only
    status.textContent = error.message;
    return;
  }
  status.textContent = `${answer.model} reads ${(100 * answer.accuracy).toFixed(2)}% of the `
    + `${answer.count.toLocaleString("en")} images of the ${answer.set}. Rows are the true digits, columns `
    + `the network's answers: click a count to see those images.`;
  confusionTable(table, answer.confusion);
  await loadComparison();
}

function confusionTable(table, confusion) {
  const header = table.insertRow();
  header.append(...["said→\ntrue↓", ...Array.from({ length: 10 }, (_, d) => d)].map((text) => {
    const cell = document.createElement("th");
    cell.textContent = text;
    return cell;
  }));
  header.firstChild.className = "corner";  // two short lines: columns are answers, rows true digits
  const largest = Math.max(...confusion.flatMap((row, t) => row.filter((_, p) => p !== t)), 1);
  confusion.forEach((row, trueDigit) => {
    const line = table.insertRow();
    const label = document.createElement("th");
    label.textContent = trueDigit;
    line.append(label);
    row.forEach((count, predicted) => {
      const cell = line.insertCell();
      cell.textContent = count;
      Object.assign(cell.dataset, { true: trueDigit, predicted });
      const strength = trueDigit === predicted ? 0.15 : 0.6 * Math.sqrt(count / largest);
      cell.style.background = trueDigit === predicted ? `rgba(11, 128, 67, ${strength})`
                                                      : `rgba(178, 24, 43, ${strength})`;
    });
  });
}

function showExamples(answer, title) {
  const box = document.getElementById("examples");
  box.replaceChildren();
  const shown = answer.examples.length;
  document.getElementById("examples-title").textContent = `${title}: ${answer.count} image`
    + `${answer.count === 1 ? "" : "s"}${shown < answer.count ? `, the ${shown} most confident shown` : ""}`
    + `. Click one to send it through the network.`;
  for (const example of answer.examples) {
    const figure = document.createElement("figure");
    figure.dataset.index = example.index;
    const canvas = paint(document.createElement("canvas"), example.pixels, 28, 28, SCALES.grey(255));
    const caption = document.createElement("figcaption");
    const percent = (100 * example.probability).toFixed(0);
    caption.textContent = `#${example.index} · ${example.predicted} ${percent}%`;
    figure.append(canvas, caption);
    box.append(figure);
  }
}

document.getElementById("confusion").addEventListener("click", async (event) => {
  const cell = event.target.closest("td");
  if (!cell) return;
  document.querySelectorAll("#confusion td.open").forEach((open) => open.classList.remove("open"));
  cell.classList.add("open");
  const { true: trueDigit, predicted } = cell.dataset;
  try {
    const answer = await getJSON(`/examples?${query({ set: setSelect.value, true: trueDigit, predicted })}`);
    showExamples(answer, trueDigit === predicted
      ? `${trueDigit}s read right, most confident first`
      : `true ${trueDigit}, read as ${predicted}, most confident mistakes first`);
  } catch (error) { showError(error.message); }
});

document.getElementById("examples").addEventListener("click", (event) => {
  const figure = event.target.closest("figure");
  if (!figure) return;
  clearDrawing();
  predict({ set: Number(setSelect.value), index: Number(figure.dataset.index) });  // that exact image
});

async function loadComparison() {
  const box = document.getElementById("comparison");
  box.replaceChildren();
  const other = compareSelect.value;
  if (other === "" || other === modelSelect.value || state.catalogue.sets.length === 0) return;
  const names = state.catalogue.models;
  for (const [first, second] of [[modelSelect.value, other], [other, modelSelect.value]]) {
    // Both networks with their final weights, whatever the slider shows.
    const answer = await getJSON(`/examples?model=${first}&other=${second}&set=${setSelect.value}`);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${answer.count} read right only by ${names[first]}`;
    const title = `read right by ${names[first]}, wrong by ${names[second]}`;
    button.addEventListener("click", () => showExamples(answer, title));
    box.append(button);
  }
}

compareSelect.addEventListener("change", () => loadComparison().catch((error) => showError(error.message)));
setSelect.addEventListener("change", () => loadTestset().catch((error) => showError(error.message)));

Object.assign(page, { loadTestset });
})();
