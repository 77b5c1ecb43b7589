// The drawing page's scripts (draw.html loads them in order; python draw.py model.pt serves them,
// the exported file holds them inline), first part: the namespace page that the others add to, what
// they share of the page's state, and its requests: to the server, or in the exported file to the
// same routes in the browser (window.routes, page/offline/routes.js).
"use strict";
/* exported page */  // the namespace the other files add to
const page = {
  // What the page's scripts share of what it shows now (each script keeps the rest to itself).
  state: {
    catalogue: null,   // GET /models: the networks, their snapshots, the labelled sets, collecting
    lastInput: null,   // the last request's digit: {picture} or {set, index}, sent again on a model change
    drawnLast: false,  // whether that digit is a drawing, which the collect buttons save
    lastAnswer: null,  // the last /predict answer: the stages' values, for the step-by-step view
    liveModel: null,   // the index of the network training in this page, while it trains
  },
};

(() => {
const modelSelect = document.getElementById("model");
const errorLine = document.getElementById("error");
// A page served beyond this computer needs the token of the address it was opened with.
const TOKEN = new URLSearchParams(location.search).get("token");

function showError(message) { errorLine.textContent = message || ""; }

async function getJSON(url, options = {}) {
  // The exported file (draw.py --export) answers in the browser: its back end puts the same routes
  // on window.routes, taking the same bodies and query strings and giving the same answers.
  if (window.routes) {
    const [path, search = ""] = url.split("?");
    return window.routes[path.slice(1)](options.body ? JSON.parse(options.body) : search);
  }
  const headers = { ...options.headers, ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) };
  const response = await fetch(url, { ...options, headers });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
  return answer;
}

function chosenNetwork() {
  // The model index and, for a network with snapshots, the one the training slider shows.
  const chosen = { model: Number(modelSelect.value) };
  if (!document.getElementById("training").hidden) {
    chosen.snapshot = Number(document.getElementById("training-step").value);
  }
  return chosen;
}

function query(fields) {
  return new URLSearchParams({ ...chosenNetwork(), ...fields }).toString();
}

function post(url, fields, input = page.state.lastInput) {
  const body = JSON.stringify({ ...chosenNetwork(), ...input, ...fields });
  return getJSON(url, { method: "POST", body, headers: { "Content-Type": "application/json" } });
}

Object.assign(page, { showError, getJSON, query, post });
})();
