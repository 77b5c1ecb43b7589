// The drawing page's box to draw in: the canvas and its pen (mouse, finger or pen), the drawing
// sent while it is drawn and again when the stroke ends, Clear, and a picture uploaded or dropped
// there, shown fitted in the box and sent as it is.
"use strict";
(() => {
const { state, showError, predict } = page;
const drawCanvas = document.getElementById("draw");
const pen = drawCanvas.getContext("2d", { willReadFrequently: true });
const stroke = { drawing: false };  // whether a stroke is being drawn

function clearDrawing() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, drawCanvas.width, drawCanvas.height);
}

function startDrawing() {
  clearDrawing();
  // A pen that gives MNIST-like strokes: once the digit is scaled to 20 pixels, about 2 to 3 wide.
  pen.lineWidth = 20;
  pen.lineCap = pen.lineJoin = "round";
  pen.strokeStyle = "#000";
}

function pixelsOfDrawing() {
  // Grey levels 0 (ink) to 255 (paper), row by row; the server prepares them as test.py does.
  const { data, width, height } = pen.getImageData(0, 0, drawCanvas.width, drawCanvas.height);
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = new Array(width);
    for (let x = 0; x < width; x++) row[x] = data[4 * (y * width + x)];
    rows.push(row);
  }
  return rows;
}

function predictDrawing(strokeEnded) {
  // The canvas as a PNG: a few kB instead of 78,400 numbers of JSON, and the same grey levels,
  // which the server prepares exactly as test.py --image prepares a picture file. While the pen
  // moves, the pixels picture (64 passes through the network) waits for the stroke's end, so
  // that the answer keeps up with the pen, for a whole class on one server too.
  const picture = drawCanvas.toDataURL("image/png");
  predict(strokeEnded ? { picture } : { picture, attribution: false }, true);
}

function pointAt(event) {
  const box = drawCanvas.getBoundingClientRect();
  return [(event.clientX - box.left) * drawCanvas.width / box.width,
          (event.clientY - box.top) * drawCanvas.height / box.height];
}

drawCanvas.addEventListener("pointerdown", (event) => {
  stroke.drawing = true;
  pen.beginPath();
  pen.moveTo(...pointAt(event));
  pen.lineTo(...pointAt(event));  // a tap leaves a dot
  pen.stroke();
  try {  // keep receiving the stroke when it leaves the box; a scripted pointer may have no capture
    drawCanvas.setPointerCapture(event.pointerId);
  } catch { /* the stroke still draws while it stays inside the box */ }
});
drawCanvas.addEventListener("pointermove", (event) => {
  if (!stroke.drawing) return;
  pen.lineTo(...pointAt(event));
  pen.stroke();
  predictDrawing(false);  // updates while you draw
});
for (const name of ["pointerup", "pointercancel"]) {
  drawCanvas.addEventListener(name, () => {
    if (!stroke.drawing) return;
    stroke.drawing = false;
    predictDrawing(true);
  });
}

document.getElementById("clear").addEventListener("click", () => {
  clearDrawing();
  state.lastInput = state.lastAnswer = null;
  showError("");
  document.getElementById("prediction").textContent = "?";
  for (const id of ["bars", "stages", "confidence", "attribution-sentence", "attribution-legend", "truth"]) {
    document.getElementById(id).replaceChildren();
  }
  document.getElementById("step")?.remove();
  document.getElementById("attribution-digit").textContent = "?";
  for (const id of ["input", "attribution"]) {
    const canvas = document.getElementById(id);
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }
});

function upload(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    clearDrawing();
    predict({ picture: reader.result });  // a data: URL; the server decodes and prepares it
    const picture = new Image();
    picture.onload = () => {  // show it in the box, fitted, so you see what you sent
      const scale = Math.min(drawCanvas.width / picture.width, drawCanvas.height / picture.height);
      pen.drawImage(picture, 0, 0, picture.width * scale, picture.height * scale);
    };
    picture.src = reader.result;
  };
  reader.readAsDataURL(file);
}
document.getElementById("upload").addEventListener("change", (event) => upload(event.target.files[0]));
drawCanvas.addEventListener("dragover", (event) => {
  event.preventDefault();
  drawCanvas.classList.add("dragover");
});
drawCanvas.addEventListener("dragleave", () => drawCanvas.classList.remove("dragover"));
drawCanvas.addEventListener("drop", (event) => {
  event.preventDefault();
  drawCanvas.classList.remove("dragover");
  upload(event.dataTransfer.files[0]);
});

Object.assign(page, { clearDrawing, startDrawing, pixelsOfDrawing, predictDrawing });
})();
