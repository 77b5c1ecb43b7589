// The drawing page's answer to a digit: the request (one at a time; a drawing's strokes drawn
// meanwhile wait for the next), then the prediction, the bars of the ten probabilities, how sure
// the network is, the pixels that decided (attribution) and every stage, drawn.
"use strict";
(() => {
const { state, SCALES, shapeText, fixed, paint, legend, showError, post, stageSection } = page;
const requests = { inFlight: false, pending: false };  // one prediction at a time, and whether one waits

async function predict(input, drawn = false) {
  state.lastInput = input;
  state.drawnLast = drawn;
  document.body.dataset.busy = "true";  // scripts wait for "false": every answer is shown
  if (requests.inFlight) { requests.pending = true; return; }
  requests.inFlight = true;
  try {
    const answer = await post("/predict", {});
    showError("");
    render(answer);
  } catch (error) {
    showError(error.message);
  } finally {
    requests.inFlight = false;
    if (requests.pending) {
      requests.pending = false;
      predict(state.lastInput, state.drawnLast);
    } else {
      document.body.dataset.busy = "false";
    }
  }
}

function render(answer) {
  state.lastAnswer = answer;
  const { lastInput, catalogue } = state;
  document.getElementById("prediction").textContent = answer.prediction;
  document.getElementById("truth").textContent = answer.label === null ? ""
    : `true label: ${answer.label} (${catalogue.sets[lastInput.set].name} #${lastInput.index})`;
  document.getElementById("status").textContent = `answered by ${answer.model}`;
  renderBars(answer.probabilities, answer.prediction);
  renderConfidence(answer.confidence);
  if (answer.attribution) {
    renderAttribution(answer.attribution);
  } else {
    document.getElementById("attribution-sentence").textContent
      = "The pixels that decided follow when the stroke ends.";
  }
  const input = { name: "input", ...answer.input };
  document.getElementById("input-shape").textContent = shapeText(input.shape);
  paint(document.getElementById("input"), input.values, input.shape[1], input.shape[2], SCALES.grey(1));
  const stages = document.getElementById("stages");
  stages.replaceChildren();
  let before = input;
  answer.layers.forEach((stage, index) => {
    stages.append(stageSection(stage, before, answer.layers[index + 1] || {}));
    if (stage.kind === "output") document.getElementById("output-shape").textContent = shapeText(stage.shape);
    before = stage;
  });
}

function renderBars(probabilities, predicted) {
  const bars = document.getElementById("bars");
  bars.replaceChildren();
  probabilities.forEach((p, digit) => {
    const label = document.createElement("span");
    label.className = "digit";
    label.dataset.digit = digit;
    label.textContent = digit;
    const track = document.createElement("div");
    track.className = "track";
    track.dataset.digit = digit;
    const bar = document.createElement("div");
    bar.className = digit === predicted ? "bar top" : "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.textContent = `${(100 * p).toFixed(1)}%`;
    bars.append(label, track, value);
  });
}

function renderConfidence(confidence) {
  const line = document.getElementById("confidence");
  const [[first, p1], [second, p2], [third, p3]] = confidence.top;
  const percent = (p) => `${(100 * p).toFixed(1)}%`;
  const top = `${first} (${percent(p1)}), then ${second} (${percent(p2)}) and ${third} (${percent(p3)})`;
  line.classList.toggle("unsure", confidence.unsure);
  if (confidence.unlike_a_digit) {
    const [low, high] = confidence.ink_range.map((share) => `${Math.round(100 * share)}%`);
    line.textContent = `This input is unlike MNIST's digits (ink covers ${percent(confidence.ink)} of the `
      + `field; theirs ${low} to ${high}). The network had to pick one of ten anyway: ${top}. The answer `
      + `means little.`;
  } else if (confidence.unsure) {
    line.textContent = `Not sure: the network had to pick one of ten anyway, and its top answer gets under `
      + `${Math.round(100 * confidence.unsure_below)}%: ${top}.`;
  } else {
    line.textContent = `Top three: ${top}.`;
  }
}

function renderAttribution(attribution) {
  const canvas = document.getElementById("attribution"), digit = attribution.digit;
  canvas.dataset.digit = digit;
  // Scaled so that the strongest 2% of the pixels that count show at full colour: a few extreme
  // pixels would otherwise leave the rest too pale to see.
  const magnitudes = attribution.values.map(Math.abs).filter((v) => v > 0).sort((a, b) => a - b);
  const largest = magnitudes[Math.floor(0.98 * (magnitudes.length - 1))] || 1;
  paint(canvas, attribution.values, 28, 28, SCALES.signed(largest));
  document.getElementById("attribution-legend").replaceChildren(legend("signed", largest));
  document.getElementById("attribution-digit").textContent = digit;
  document.querySelectorAll("#bars .digit").forEach((label) =>
    label.classList.toggle("explained", Number(label.dataset.digit) === digit));
  const change = `${attribution.total >= 0 ? "+" : ""}${fixed(attribution.total, 2)}`;
  document.getElementById("attribution-sentence").textContent =
    `Red pixels pushed the network towards ${digit}, blue ones away from it, compared with an `
    + `empty box; together they change the log-probability of ${digit} by ${change}. `
    + `It shows what this network used for this input (integrated gradients), not what makes a `
    + `${digit} a ${digit}, and a single pixel's colour proves little.`;
}

async function explainDigit(digit) {
  if (!state.lastInput) return;
  try {
    renderAttribution(await post("/attribution", { digit }));
  } catch (error) { showError(error.message); }
}

document.getElementById("bars").addEventListener("click", (event) => {
  const target = event.target.closest("[data-digit]");
  if (target) explainDigit(Number(target.dataset.digit));
});

Object.assign(page, { predict });
})();
