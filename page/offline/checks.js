// The exported file's back end (python draw.py model.pt --export page.html), first part: the data
// the export put in the file (EXPORT), the namespace offline that the back end's other files add to,
// and the checks every route makes of a request, refused in one line with the server's own words
// (EXPORT.messages, from page/export.py) and status, as page/server.py and page/routes.py refuse.
"use strict";
/* exported offline */  // the namespace the other files add to
const offline = {};

(() => {
const EXPORT = JSON.parse(document.getElementById("export-data").textContent);

function bytesOf(base64) { return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)); }
function floats(base64) { return new Float32Array(bytesOf(base64).buffer); }

function base64Of(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {  // a piece at a time: arguments are limited
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

class BadRequest extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function filled(template, fields = {}) {
  // A str.format template of Python's with its {fields} filled in.
  return template.replace(/\{(\w+)\}/g, (_, name) => String(fields[name]));
}

// One of the server's messages (or the file's own: EXPORT.messages), its fields filled in.
function said(key, fields = {}) { return filled(EXPORT.messages[key], fields); }

// A field a body sends is one of its own keys, never one that every object inherits (toString,
// constructor, __proto__), which the in operator would find: as the server sees a JSON object.
const has = (request, key) => Object.hasOwn(request, key);

function isObject(request) {
  return typeof request === "object" && request !== null && !Array.isArray(request);
}

function body(request) {
  // A POST route's body: a JSON object, as page.server.parse_json takes it.
  if (!isObject(request)) throw new BadRequest(400, said("not_an_object"));
  return request;
}

function onlyFields(request, allowed) {
  // Refuses, in one line, a body that is no object or that sends a field not in allowed (a list).
  const unknown = isObject(request) ? Object.keys(request).filter((key) => !allowed.includes(key)) : [];
  if (!isObject(request) || unknown.length) {
    const not = unknown.length ? ` (not ${unknown.join(", ")})` : "";
    throw new BadRequest(400, `send ${allowed.join(", ")} only${not}`);
  }
  return request;
}

function wholeNumber(request, key, low, high) {
  const value = request[key];
  if (!Number.isInteger(value) || value < low || value > high) {
    throw new BadRequest(400, said("whole_number", { name: key, low, high }));
  }
  return value;
}

function queryNumbers(query) {
  const fields = Object.fromEntries(new URLSearchParams(query || ""));
  for (const [key, value] of Object.entries(fields)) {
    if (!/^[+-]?\d+$/.test(value.trim())) throw new BadRequest(400, said("query_not_whole"));
    fields[key] = Number(value);
  }
  return fields;
}

function chosen(request) {
  // [the model's index, its network, the snapshot's index] that a request chooses, checked.
  const model = wholeNumber({ model: 0, ...request }, "model", 0, EXPORT.networks.length - 1);
  const network = EXPORT.networks[model], last = network.weights.length - 1;
  return [model, network, wholeNumber({ snapshot: last, ...request }, "snapshot", 0, last)];
}

function chosenSet(request) {
  if (EXPORT.sets.length === 0) throw new BadRequest(404, EXPORT.missing || said("no_set"));
  return wholeNumber({ set: 0, ...request }, "set", 0, EXPORT.sets.length - 1);
}

function round(value, digits) { const scale = 10 ** digits; return Math.round(value * scale) / scale; }

function describe(t, digits = 5) {
  return { shape: t.shape.slice(1), values: Array.from(t.data, (v) => round(v, digits)) };
}

Object.assign(offline, { EXPORT, bytesOf, floats, base64Of, BadRequest, filled, said, has, isObject, body,
                         onlyFields,
                         wholeNumber, queryNumbers, chosen, chosenSet, round, describe });
})();
