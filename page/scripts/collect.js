// The drawing page's collecting of the class's own digits (draw.py --collect DIR): a button per
// digit saves the drawing as drawn (POST /collect), with how many each holds; the exported file
// keeps them until "Download the saved drawings", and writes the chosen network as a checkpoint.
"use strict";
(() => {
const { state, post, pixelsOfDrawing } = page;

function showCollected(counts) {
  const buttons = document.getElementById("collect-buttons");
  buttons.replaceChildren(...counts.map((count, digit) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = digit;
    button.innerHTML = `${digit}<span class="count" data-label="${digit}">${count} saved</span>`;
    return button;
  }));
}

document.getElementById("collect-buttons").addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const status = document.getElementById("collect-status");
  if (!state.lastInput || !state.drawnLast) {
    status.textContent = "Draw a digit first: only drawings are saved.";
    return;
  }
  try {  // the drawing as drawn, grey level by grey level
    const label = Number(button.dataset.label);
    const answer = await post("/collect", { label }, { pixels: pixelsOfDrawing() });
    const { collect } = state.catalogue;
    collect.counts = answer.counts;
    showCollected(answer.counts);
    status.textContent = window.routes  // the exported file keeps them until they are downloaded
      ? `Kept as ${answer.saved}; the button below downloads them all as ${collect.folder}.zip.`
      : `Saved as ${answer.saved} in ${collect.folder}.`;
  } catch (error) { status.textContent = error.message; }
});

// The exported file writes the chosen network as a checkpoint that test.py, draw.py and train.py read.
document.getElementById("checkpoint-download").addEventListener("click", () => {
  window.routes.downloadCheckpoint({ model: Number(document.getElementById("model").value) });
});

document.getElementById("collect-download").addEventListener("click", () => {
  const count = window.routes.download();  // unzipped: a folder train.py --extra-images-dir reads
  document.getElementById("collect-status").textContent
    = `Downloaded ${count} drawing${count === 1 ? "" : "s"} as ${state.catalogue.collect.folder}.zip.`;
});

Object.assign(page, { showCollected });
})();
