// The drawing page: pointer strokes on a canvas, debounced calls to the API, the answer as a
// number and a probability bar per class; the "inside the network" and "watch it learn" views
// live in inside.js and learn.js. No dependencies, so the page works offline.
import { fillBars } from "./bars.js";
import { showInside, clearInside } from "./inside.js";
import { startLearnView } from "./learn.js";

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
const positionsEl = document.getElementById("positions");
const seenEl = document.getElementById("seen");
const uploadEl = document.getElementById("upload");
const choiceEl = document.getElementById("model-choice");

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
let lastInput = null; // the latest picture sent, asked again when the view or the model changes
let shown = null;     // the answer on display
let position = 0;     // which digit of a number the bars show

// body[data-state] is "busy" while any prediction is pending, "idle" once the page shows
// the answer for the latest drawing (the browser tests wait on it).
function settle() {
  document.body.dataset.state = (timer !== null || encoding || inFlight) ? "busy" : "idle";
}

function insideVisible() {
  return !document.getElementById("view-inside").hidden;
}

function chosenModel() {
  const checked = document.querySelector('input[name="model"]:checked');
  return checked && !choiceEl.hidden ? checked.value : "served";
}

function clearPad() {
  position = 0;
  ctx.fillStyle = "#000"; // opaque: the PNG we send has no transparency to interpret
  ctx.fillRect(0, 0, pad.width, pad.height);
  blank = true;
  lastInput = null;
  generation++;
  clearTimeout(timer);
  timer = null;
  queued = null;
  settle();
  showResult(null);
  clearInside();
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

// Ask again about the picture on display (after the view or the model changed).
export function askAgain() {
  if (lastInput) send(lastInput);
}

async function send(blob) {
  lastInput = blob;
  if (inFlight) { queued = blob; return; }
  inFlight = true;
  settle();
  const asked = generation;
  // The inside view needs /api/explain, whose answer holds /api/predict's and more.
  const inside = insideVisible();
  const route = inside ? `/api/explain?model=${chosenModel()}&position=${position}`
    : `/api/predict?model=${chosenModel()}`;
  try {
    // The image itself as the body: lighter for the server than a multipart form.
    const response = await fetch(route, {
      method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" },
    });
    const body = await response.json();
    if (asked === generation) {
      if (response.ok) { // a reading, or a refusal: {"error": "not a digit", "probabilities": ...}
        showResult(body);
        if (inside) showInside(body, classes);
        statusEl.textContent = body.error ? "That does not look like a digit (0-9)." :
          body.low_confidence ? "Not sure: try a bigger, clearer digit." : "";
      } else {
        showResult(null);
        clearInside();
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

// The probabilities of digit `i` of the answer (a number's digits each carry theirs).
function digitReading(result, i) {
  const digits = result.digits || [result];
  const reading = digits[Math.min(i, digits.length - 1)];
  return { digit: reading.digit, probabilities: reading.probabilities || result.probabilities,
           confidence: reading.confidence };
}

function argmax(values) {
  return values.indexOf(Math.max(...values));
}

function showResult(result) {
  shown = result;
  const label = (k) => classes[k] ?? String(k);
  // A refusal ("not a digit") has no digit: its top bar is the "not a digit" class.
  const refused = Boolean(result && result.error);
  const number = !result ? "?" : refused ? "Not a digit"
    : result.lines ? result.lines.join(" ") : (result.number || label(result.digit));
  digitEl.textContent = number;
  digitEl.classList.toggle("word", number.length > 1 && !/^\d+$/.test(number));
  const sure = !result ? null : refused ? result.not_a_digit : result.confidence;
  confidenceEl.textContent = typeof sure === "number" ? `${(100 * sure).toFixed(1)}% sure` : "";
  // A number: one button per digit, choosing whose bars are shown.
  const digits = result && result.digits ? result.digits : [];
  positionsEl.hidden = digits.length < 2;
  if (digits.length < 2) position = 0;
  position = Math.min(position, Math.max(0, digits.length - 1));
  positionsEl.replaceChildren(...digits.map((d, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label(d.digit);
    button.title = `digit ${i + 1}: ${(100 * d.confidence).toFixed(1)}% sure`;
    button.setAttribute("aria-pressed", String(i === position));
    button.addEventListener("click", () => {
      position = i;
      showResult(shown);
      if (insideVisible()) askAgain(); // the inside view explains the digit chosen
    });
    return button;
  }));
  const reading = !result ? null : refused ? { probabilities: result.probabilities, digit: argmax(result.probabilities) }
    : digitReading(result, position);
  fillBars(barsEl, classes, reading && reading.probabilities, reading && reading.digit);
  if (result && result.image) seenEl.src = result.image;
  seenEl.style.visibility = result ? "visible" : "hidden";
}

// The trained model can read the canvas once there is one (learn.js calls this).
export function setTrainedModel(available) {
  choiceEl.hidden = !available;
  if (!available) document.querySelector('input[name="model"][value="served"]').checked = true;
  showModelInfo();
  askAgain();
}

for (const radio of document.querySelectorAll('input[name="model"]')) {
  radio.addEventListener("change", () => { showModelInfo(); askAgain(); });
}

function showView(name) {
  for (const view of ["inside", "learn"]) {
    document.getElementById(`view-${view}`).hidden = view !== name;
    document.getElementById(`tab-${view}`).setAttribute("aria-selected", String(view === name));
  }
  document.body.dataset.view = name;
  if (name === "inside") askAgain();
}
document.getElementById("tab-inside").addEventListener("click", () => showView("inside"));
document.getElementById("tab-learn").addEventListener("click", () => showView("learn"));

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

let servedInfo = "";

// The footer names the model reading the pad: the shipped one, or the one trained on the page.
async function showModelInfo() {
  const footer = document.getElementById("model-info");
  if (chosenModel() !== "trained") { footer.textContent = servedInfo; return; }
  try {
    const { model } = await (await fetch("/api/train")).json();
    const metrics = model.metrics || {};
    const parts = [`Reading with your model: ${model.name}`, `${model.parameters.toLocaleString()} parameters`];
    if (typeof metrics.accuracy === "number") {
      parts.push(`${(100 * metrics.accuracy).toFixed(1)}% ${metrics.split} accuracy`);
    }
    parts.push(`trained here on ${model.training.settings.images.toLocaleString()} MNIST images`);
    footer.textContent = parts.join(" \u00b7 ");
  } catch (error) {
    footer.textContent = "Reading with your model";
  }
}

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
    servedInfo = parts.join(" \u00b7 ");
    showModelInfo();
  } catch (error) {
    // The page still works with the default class names.
  }
  showResult(null);
}

clearPad();
showView(location.hash === "#learn" ? "learn" : "inside");
loadModelInfo();
startLearnView({ setTrainedModel });
