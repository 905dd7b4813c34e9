// "Inside the network": the answer of POST /api/explain drawn step by step: the
// preprocessing pictures, the input and its saliency, every layer's output, the probabilities.
import { fillBars } from "./bars.js";

const emptyEl = document.getElementById("inside-empty");
const insideEl = document.getElementById("inside");
const stepsEl = document.getElementById("steps");
const layersEl = document.getElementById("layers");

const POSITIVE = "#e8892a";
const NEGATIVE = "#3f7fe0";

export function clearInside() {
  insideEl.hidden = true;
  emptyEl.hidden = false;
}

function figure(src, caption, className = "") {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  if (className) img.className = className;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

function describeShape(shape) {
  if (shape.length === 3) {
    const [c, h, w] = shape;
    return `${c} map${c === 1 ? "" : "s"} of ${h}\u00d7${w}`;
  }
  return `${shape[0]} number${shape[0] === 1 ? "" : "s"}`;
}

// A vector as bars around a zero line: orange above, blue below; labelled when short.
function drawVector(canvas, values, labels) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = labels ? 86 : 56;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const plot = labels ? height - 18 : height;
  const scale = Math.max(1e-6, ...values.map(Math.abs));
  const hasNegative = values.some((v) => v < 0);
  const zero = hasNegative ? plot / 2 : plot - 1;
  const span = hasNegative ? plot / 2 - 1 : plot - 2;
  const step = width / values.length;
  const gap = step > 4 ? 1 : 0;
  for (let i = 0; i < values.length; i++) {
    const h = (values[i] / scale) * span;
    ctx.fillStyle = values[i] >= 0 ? POSITIVE : NEGATIVE;
    ctx.fillRect(i * step, h >= 0 ? zero - h : zero, Math.max(step - gap, 0.6), Math.abs(h));
  }
  ctx.fillStyle = "#c5ccd8";
  ctx.fillRect(0, zero, width, 1);
  if (labels) {
    ctx.fillStyle = "#3b4252";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    // a long class name ("not a digit") would run into its neighbours: a cross stands for it
    labels.forEach((label, i) => ctx.fillText(label.length > 2 ? "\u2717" : label, (i + 0.5) * step, height - 4));
  }
}

function layerItem(layer, classes) {
  const li = document.createElement("li");
  li.className = "layer";
  li.dataset.type = layer.type;
  const title = document.createElement("div");
  title.className = "layer-title";
  title.innerHTML = '<span class="index"></span> <strong></strong> <span class="shape"></span>';
  title.querySelector(".index").textContent = layer.index + 1;
  title.querySelector("strong").textContent = layer.label;
  title.querySelector(".shape").textContent =
    `\u2192 ${describeShape(layer.shape)}${layer.role === "logits" ? " (class scores)" : ""}`;
  li.append(title);
  if (layer.maps) {
    const img = document.createElement("img");
    img.className = "pixel maps";
    img.src = layer.maps;
    img.alt = `${layer.label}: ${describeShape(layer.shape)}`;
    // Tiles of at most ~10 px are enlarged more, so that the small maps of deep layers stay visible.
    const tile = layer.shape.length === 3 ? layer.shape[1] : 1;
    const zoom = tile <= 4 ? 6 : tile <= 8 ? 4 : tile <= 14 ? 3 : 2;
    img.addEventListener("load", () => { img.style.width = `${img.naturalWidth * zoom}px`; });
    li.append(img);
  } else if (layer.values) {
    const canvas = document.createElement("canvas");
    canvas.className = "vector";
    li.classList.toggle("wide", layer.values.length > 200);
    li.append(canvas);
    // drawn once in the page, when it has a width
    requestAnimationFrame(() => drawVector(canvas, layer.values,
      layer.role === "logits" && layer.values.length === classes.length ? classes : null));
  }
  return li;
}

export function showInside(result, classes) {
  emptyEl.hidden = true;
  insideEl.hidden = false;
  stepsEl.replaceChildren(...result.steps.map((step) => figure(step.image, step.label, "pixel")));
  document.getElementById("inside-input").src = result.input;
  document.getElementById("saliency").src = result.saliency;
  layersEl.replaceChildren(...result.layers.map((layer) => layerItem(layer, classes)));
  fillBars(document.getElementById("inside-probabilities"), classes, result.probabilities,
           result.explained.digit);
}
