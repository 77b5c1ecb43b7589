// The drawing page's stages: a section for each stage of the network's answer (its maps or values
// painted, and one sentence that says what it computed), built from the stage's name, shape and
// settings that the model gave, never from the tutorial's layers. Edit the wording here.
"use strict";
(() => {
const { SCALES, shapeText, count, paint, scaleFor, legend } = page;

function convolutionSentence(s, before) {
  const [kh, kw] = s.kernel, side = before.shape.at(-1), [left, right] = s.padding[1], stride = s.stride[1];
  const pad = left === right ? `2 × ${left}` : `${left} + ${right}`;  // 'same' with an even kernel: uneven
  const dilation = s.dilation[1], span = dilation * (kw - 1) + 1;  // the width the kernel covers
  const perKernel = s.inputs / s.groups;  // with groups, each kernel sees its group's maps only
  const source = before.name === "input" ? "the input" : `the ${before.shape[0]} maps of ${before.name}`;
  return `${s.shape[0]} feature maps: each is one learned kernel of ${perKernel} × ${kh} × ${kw} `
    + `(see the kernels below) slid over `
    + (s.groups > 1 ? `${perKernel} of ${source} (${s.groups} groups of maps, each with its own kernels)`
                    : source)
    + `, a weighted sum of the ${perKernel * kh * kw} values under it plus a bias. `
    + (dilation > 1 ? `Dilation ${dilation} spreads the kernel's values ${dilation} pixels apart, so it `
                      + `covers ${dilation} × (${kw} − 1) + 1 = ${span} pixels. ` : ``)
    + `Size: floor((${side} − ${span} + ${pad}) / ${stride}) + 1 = ${s.shape.at(-1)}. `
    + (s.activation
      ? `Then ReLU keeps the positive sums (shown together here: this picture is after the ReLU). `
      : `No ReLU follows directly, so values can be negative (red positive, blue negative). `)
    + `Click a pixel to see its sum.`;
}

// One sentence per kind of stage, from the stage (s), the one before and the one after.
const SENTENCES = {
  convolution: convolutionSentence,
  pool: (s, before) => `Max pooling keeps the largest value of each ${shapeText(s.kernel)} block `
    + `(stride ${s.stride[0]}): ${before.shape.at(-1)} → ${s.shape.at(-1)} per side, and small shifts `
    + `of the digit matter less. Nothing is learned here. Click a pixel to see its block.`,
  dropout: (s) => s.in_eval
    ? `Dropout (p = ${s.p}) zeroes values at random, and here even in eval mode: F.dropout drops unless `
      + `forward() passes training=self.training, so each answer differs a little (no picture).`
    : `Dropout (p = ${s.p}) zeroes values at random during training only. Here the network runs `
      + `in eval mode, as in test.py, so this stage passes its input on unchanged (no picture).`,
  relu: () => `ReLU: max(0, x) for every value; negative values become 0.`,
  batchnorm: () => `Batch normalisation: each channel is shifted and scaled by the mean and spread learned `
    + `during training, so the next layer sees values of a steady size.`,
  flatten: (s, before) => `${shapeText(before.shape)} values laid out in one row of ${count(s.shape)}: `
    + `nothing is computed, only the shape changes, so that a fully connected layer can take them.`,
  linear: (s, before, after) => `${s.name}: each of these ${s.shape[0]} values is a weighted sum of all `
    + `${s.inputs} values of ${before.name}, plus a bias`
    + (s.activation ? `, then ReLU. `
      : (after.kind === "output" ? `: the ${s.shape[0]} scores (logits), one per digit. `
                                 : `; no ReLU follows directly. `))
    + `Red is positive, blue negative. Click a value to see its largest contributions.`,
  other: (s) => `${s.code}: an operation this page has no special picture for, shown by its shape.`,
  output: (s, before) => `Softmax turns ${before.name}'s ${s.shape[0]} scores into probabilities that add `
    + `up to 1; the largest is the answer (shown at the top).`,
};

function sentenceFor(stage, before, after) {
  // A stage whose settings the wording needs but the model did not give gets the plain sentence.
  try {
    return (SENTENCES[stage.kind] || SENTENCES.other)(stage, before, after);
  } catch {
    return SENTENCES.other(stage);
  }
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

function stageSection(stage, before, after) {
  const section = element("section", "stage panel");
  section.dataset.stage = stage.name;
  const title = document.createElement("h2");
  title.textContent = stage.activation ? `${stage.name} + ${stage.activation}` : stage.name;
  title.append(element("span", "shape", shapeText(stage.shape)), element("span", "code", stage.code));
  const maps = element("div", "maps");
  section.append(title, maps, element("p", "why", sentenceFor(stage, before, after)));
  if (stage.kind === "dropout" || stage.kind === "output") return section;  // nothing new to see
  const [kind, largest] = scaleFor(stage.values);
  maps.append(...stageMaps(stage, SCALES[kind](largest)), legend(kind, largest));
  return section;
}

function stageMaps(stage, colour) {
  // A canvas for each map of the stage, or one row for a vector (or any other shape).
  if (stage.shape.length !== 3) {
    const canvas = paint(element("canvas", "map"), stage.values, 1, stage.values.length, colour);
    canvas.dataset.map = 0;
    canvas.style.width = `${Math.min(900, stage.values.length * 18)}px`;
    canvas.style.height = "18px";
    return [canvas];
  }
  const [channels, height, width] = stage.shape, size = Math.max(64, Math.min(120, 5 * width));
  return Array.from({ length: channels }, (_, c) => {
    const box = element("div", "map-box");
    const canvas = paint(element("canvas", "map"), stage.values, height, width, colour, c * height * width);
    canvas.dataset.map = c;
    canvas.style.width = canvas.style.height = `${size}px`;
    box.append(canvas, `map ${c}`);
    return box;
  });
}

Object.assign(page, { element, stageSection });
})();
