// The drawing page: pointer strokes on a canvas, debounced calls to POST /api/predict,
// one probability bar per class. No dependencies, so the page works offline.
"use strict";

const DEBOUNCE_MS = 120; // ask once the pen has paused this long ...
const MAX_WAIT_MS = 300; // ... or has moved this long without a pause: live while drawing
const LINE_WIDTH = 18;   // on the 280 px canvas: about an MNIST pen stroke once scaled to 28 px
// The drawing is sent at 112x112: four times the network's 28x28, plenty for preprocessing
// (which reduces every digit to 20x20) and about six times fewer pixels than the pad.
const SEND_SIDE = 112;

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const digitEl = document.getElementById("digit");
const confidenceEl = document.getElementById("confidence");
const statusEl = document.getElementById("status");
const barsEl = document.getElementById("bars");
const seenEl = document.getElementById("seen");
const uploadEl = document.getElementById("upload");

let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
let drawing = null;   // id of the pointer drawing now (one finger at a time), or null
let blank = true;     // nothing drawn since the last clear
let last = null;      // previous point of the current stroke
let timer = null;     // pending debounced prediction
let waitingSince = 0; // when the oldest change not yet asked about was made
let encoding = 0;     // canvas snapshots being encoded as PNG
let inFlight = false; // one request at a time ...
let queued = null;    // ... and the newest input waiting behind it
let generation = 0;   // bumped by Clear: answers about an older picture are dropped

// body[data-state] is "busy" while any prediction is pending, "idle" once the page shows
// the answer for the latest drawing (the browser test waits on it).
function settle() {
  document.body.dataset.state = (timer !== null || encoding || inFlight) ? "busy" : "idle";
}

function clearPad() {
  ctx.fillStyle = "#000"; // opaque: the PNG we send has no transparency to interpret
  ctx.fillRect(0, 0, pad.width, pad.height);
  blank = true;
  generation++;
  clearTimeout(timer);
  timer = null;
  queued = null;
  settle();
  showResult(null);
  statusEl.textContent = "Draw a digit.";
}

function point(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * pad.width / rect.width,
          (event.clientY - rect.top) * pad.height / rect.height];
}

function strokeTo(p) {
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = LINE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...last);
  ctx.lineTo(...p);
  ctx.stroke();
  last = p;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  if (drawing !== null) return;
  pad.setPointerCapture(event.pointerId);
  drawing = event.pointerId;
  blank = false;
  last = point(event);
  strokeTo(last); // a dot for a tap
});

pad.addEventListener("pointermove", (event) => {
  if (event.pointerId !== drawing) return;
  // Coalesced events keep fast strokes smooth where the browser batches them.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) strokeTo(point(e));
  schedule();
});

function endStroke(event) {
  if (event.pointerId !== drawing) return;
  drawing = null;
  schedule(0);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function schedule(delay = DEBOUNCE_MS) {
  const now = performance.now();
  if (timer === null) waitingSince = now;
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    if (!blank) {
      encoding++;
      snapshot().toBlob((blob) => { encoding--; send(blob); }, "image/png");
    }
    settle();
  }, Math.min(delay, Math.max(0, waitingSince + MAX_WAIT_MS - now)));
  settle();
}

function snapshot() {
  const small = document.createElement("canvas");
  small.width = small.height = SEND_SIDE;
  const smallCtx = small.getContext("2d");
  smallCtx.imageSmoothingQuality = "high";
  smallCtx.drawImage(pad, 0, 0, SEND_SIDE, SEND_SIDE);
  return small;
}

async function send(blob) {
  if (inFlight) { queued = blob; return; }
  inFlight = true;
  settle();
  const asked = generation;
  try {
    // The image itself as the body: lighter for the server than a multipart form.
    const response = await fetch("/api/predict", {
      method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" },
    });
    const body = await response.json();
    if (asked === generation) {
      if (response.ok) {
        showResult(body);
        const notes = [];
        if (body.number) notes.push(`Number: ${body.number}`);
        if (body.low_confidence) notes.push("Not sure: try a bigger, clearer digit.");
        if (body.error) notes.push("That does not look like a digit (0-9).");
        statusEl.textContent = notes.join(" ");
      } else {
        showResult(null);
        statusEl.textContent = body.error || `Error ${response.status}`;
      }
    }
  } catch (error) {
    statusEl.textContent = `Cannot reach the server: ${error.message}`;
  } finally {
    inFlight = false;
    if (queued) {
      const next = queued;
      queued = null;
      send(next);
    }
    settle();
  }
}

function buildBars() {
  barsEl.replaceChildren(...classes.map((label) => {
    const li = document.createElement("li");
    li.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span>' +
                   '<span class="value"></span>';
    li.querySelector(".label").textContent = label;
    return li;
  }));
}

function showResult(result) {
  const items = barsEl.children;
  // A refusal ("not a digit") has no digit: its top bar is the "not a digit" class.
  const refused = Boolean(result && result.error);
  const top = !result ? -1 : refused ? result.probabilities.indexOf(Math.max(...result.probabilities)) : result.digit;
  for (let i = 0; i < items.length; i++) {
    const p = result ? result.probabilities[i] : 0;
    items[i].querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    items[i].querySelector(".value").textContent = result ? `${(100 * p).toFixed(1)}%` : "";
    items[i].classList.toggle("top", i === top);
  }
  digitEl.textContent = !result ? "?" : refused ? "\u2717" : classes[result.digit];
  confidenceEl.textContent = !result ? "" : refused ? `not a digit (${(100 * result.not_a_digit).toFixed(1)}% sure)`
    : `${(100 * result.confidence).toFixed(1)}% sure`;
  if (result && result.image) seenEl.src = result.image;
  seenEl.style.visibility = result ? "visible" : "hidden";
}

document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("upload-button").addEventListener("click", () => uploadEl.click());
uploadEl.addEventListener("change", () => {
  const file = uploadEl.files[0];
  if (!file) return;
  uploadEl.value = ""; // choosing the same file again fires change again
  clearPad();
  statusEl.textContent = `Reading ${file.name}\u2026`;
  // Show the picture on the pad for reference; the server gets the original file.
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    const scale = Math.min(pad.width / img.width, pad.height / img.height);
    const w = img.width * scale, h = img.height * scale;
    ctx.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  img.onerror = () => URL.revokeObjectURL(url); // not an image: the server says so
  img.src = url;
  send(file);
});

async function loadModelInfo() {
  try {
    const info = await (await fetch("/api/model")).json();
    if (Array.isArray(info.classes)) classes = info.classes;
    const metrics = info.metrics || {};
    const parts = [`Model: ${info.name || "network"}`, `${info.parameters.toLocaleString()} parameters`];
    if (typeof metrics.accuracy === "number") {
      parts.push(`${(100 * metrics.accuracy).toFixed(2)}% ${metrics.split || "test"} accuracy`);
    }
    if (info.dataset) parts.push(`trained on ${info.dataset}`);
    document.getElementById("model-info").textContent = parts.join(" \u00b7 ");
  } catch (error) {
    // The page still works with the default class names.
  }
  buildBars();
  showResult(null);
}

clearPad();
buildBars();
loadModelInfo();
