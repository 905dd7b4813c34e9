// "Watch it learn": start a training (POST /api/train), follow its Server-Sent Events
// (GET /api/train/events), draw the curves, the first layer's filters and the validation grid.

const form = document.getElementById("train-form");
const trainButton = document.getElementById("train");
const stopButton = document.getElementById("stop");
const resetButton = document.getElementById("reset");
const statusEl = document.getElementById("train-status");
const filtersEl = document.getElementById("filters");
const gridEl = document.getElementById("grid");
const valAccuracyEl = document.getElementById("val-accuracy");
const trainedEl = document.getElementById("trained-model");
const lossChart = document.getElementById("loss-chart");
const accuracyChart = document.getElementById("accuracy-chart");

const TRAIN_COLOUR = "#9fb6dd";
const VAL_COLOUR = "#e0672a";
const RUNNING = ["starting", "running", "stopping"];

let hooks = { setTrainedModel: () => {} };
let source = null;   // the EventSource while a run is followed
let run = null;      // what the charts show: {steps, evals, stepsPerEpoch, epochs, labels}
let drawPending = false;

function newRun() {
  run = { steps: [], evals: [], stepsPerEpoch: 1, epochs: 1, labels: [], nVal: 0 };
  gridEl.replaceChildren();
  filtersEl.hidden = true;
  valAccuracyEl.textContent = "";
  valAccuracyEl.dataset.value = "0";
  redraw();
}

function setStatus(status, text) {
  statusEl.dataset.status = status;
  statusEl.textContent = text;
  const running = RUNNING.includes(status);
  trainButton.disabled = running;
  stopButton.disabled = !running || status === "stopping";
  for (const field of form.elements) if (field.name) field.disabled = running;
}

// -- charts: a line per batch (light, smoothed) and validation points joined (bold)

function smooth(values, k = 0.9) {
  let average = null;
  return values.map((v) => (average = average === null ? v : k * average + (1 - k) * v));
}

function drawChart(canvas, series, yMax, yLines, yLabel, percent) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 420;
  const height = canvas.clientHeight || 200;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const left = 48, right = 10, top = 10, bottom = 32;
  const w = width - left - right, h = height - top - bottom;
  // the x axis grows with the run (a little ahead of it), up to the epochs asked for
  const progress = run.steps.length ? run.steps[run.steps.length - 1].step / run.stepsPerEpoch : 0;
  const xMax = Math.min(Math.max(1, run.epochs), Math.max(1, Math.ceil(progress * 1.25)));
  const x = (epoch) => left + (epoch / xMax) * w;
  const y = (value) => top + h - (Math.min(value, yMax) / yMax) * h;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5d6679";
  ctx.strokeStyle = "#e3e7ee";
  ctx.lineWidth = 1;
  for (let i = 0; i <= yLines; i++) { // horizontal grid lines with their values
    const value = (yMax * i) / yLines;
    ctx.beginPath(); ctx.moveTo(left, y(value)); ctx.lineTo(left + w, y(value)); ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(percent ? `${Math.round(100 * value)}%` : value.toFixed(1), left - 4, y(value) + 4);
  }
  ctx.textAlign = "center";
  const tick = xMax <= 2 ? 0.5 : Math.ceil(xMax / 10);
  for (let e = 0; e <= xMax; e += tick) ctx.fillText(String(e), x(e), top + h + 14);
  ctx.fillText("epoch", left + w / 2, height - 3);
  ctx.save(); ctx.translate(9, top + h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(yLabel, 0, 0); ctx.restore();
  for (const { points, colour, lineWidth, dots } of series) {
    if (!points.length) continue;
    ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = lineWidth;
    ctx.beginPath();
    points.forEach(([e, v], i) => (i ? ctx.lineTo(x(e), y(v)) : ctx.moveTo(x(e), y(v))));
    ctx.stroke();
    if (dots) for (const [e, v] of points) { ctx.beginPath(); ctx.arc(x(e), y(v), 2.5, 0, 2 * Math.PI); ctx.fill(); }
  }
  canvas.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
}

function redraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    const perEpoch = run.stepsPerEpoch;
    const at = (s) => s.step / perEpoch;
    const loss = smooth(run.steps.map((s) => s.loss));
    const accuracy = smooth(run.steps.map((s) => s.accuracy));
    // ln 10 = 2.3 is the loss of a uniform guess: anything above is off the chart
    const lossMax = 2.5;
    drawChart(lossChart, [
      { points: run.steps.map((s, i) => [at(s), loss[i]]), colour: TRAIN_COLOUR, lineWidth: 1.5 },
      { points: run.evals.map((e) => [at(e), e.val_loss]), colour: VAL_COLOUR, lineWidth: 2, dots: true },
    ], lossMax, 5, "loss", false);
    drawChart(accuracyChart, [
      { points: run.steps.map((s, i) => [at(s), accuracy[i]]), colour: TRAIN_COLOUR, lineWidth: 1.5 },
      { points: run.evals.map((e) => [at(e), e.val_accuracy]), colour: VAL_COLOUR, lineWidth: 2, dots: true },
    ], 1, 4, "accuracy", true);
  });
}

// -- the validation grid: each digit framed green when read right, red when wrong

function buildGrid(images, labels) {
  run.labels = labels;
  gridEl.replaceChildren(...images.map((src, i) => {
    const cell = document.createElement("figure");
    cell.className = "cell";
    cell.innerHTML = '<img class="pixel" alt=""><figcaption></figcaption>';
    cell.querySelector("img").src = src;
    cell.querySelector("img").alt = `a ${labels[i]} from the validation set`;
    return cell;
  }));
}

function showPredictions(predictions) {
  predictions.forEach((k, i) => {
    const cell = gridEl.children[i];
    if (!cell) return;
    const right = k === run.labels[i];
    cell.classList.toggle("right", right);
    cell.classList.toggle("wrong", !right);
    cell.querySelector("figcaption").textContent = String(k);
    cell.title = right ? `a ${run.labels[i]}, read right` : `a ${run.labels[i]}, read as ${k}`;
  });
}

// -- events

function settingsText(settings) {
  return `${settings.architecture}, ${settings.images.toLocaleString()} images, batch ${settings.batch_size}, ` +
         `learning rate ${settings.learning_rate}`;
}

function onEvent(event) {
  switch (event.event) {
    case "session":
      newRun();
      if (event.status === "idle") { setStatus("idle", "No training yet."); follow(false); }
      else setStatus(event.status, "Loading the training images\u2026");
      trainedEl.hidden = true;
      hooks.setTrainedModel(false);
      break;
    case "start":
      run.stepsPerEpoch = event.steps_per_epoch;
      run.epochs = event.epochs;
      run.nVal = event.n_val;
      buildGrid(event.grid, event.grid_labels);
      filtersEl.src = event.filters;
      filtersEl.hidden = false;
      setStatus("running", `Training ${settingsText(event.settings)}: ${event.parameters.toLocaleString()} weights.`);
      break;
    case "step":
      run.steps.push(event);
      if (statusEl.dataset.status === "running") {
        statusEl.textContent = statusEl.textContent.replace(/( Epoch .*)?$/,
          ` Epoch ${event.epoch} of ${run.epochs}, step ${event.step}.`);
      }
      redraw();
      break;
    case "eval":
      run.evals.push(event);
      showPredictions(event.grid_predictions);
      filtersEl.src = event.filters;
      valAccuracyEl.textContent = `${(100 * event.val_accuracy).toFixed(1)}%`;
      valAccuracyEl.dataset.value = String(event.val_accuracy);
      redraw();
      break;
    case "stopping":
      setStatus("stopping", "Stopping after this batch\u2026");
      break;
    case "done": {
      const accuracy = event.val_accuracy === null ? "no step taken" :
        `${(100 * event.val_accuracy).toFixed(1)}% right on ${run.nVal.toLocaleString()} validation digits`;
      setStatus(event.status, `${event.status === "finished" ? "Finished" : "Stopped"} after ${event.steps} steps ` +
                              `(${event.seconds.toFixed(1)} s): ${accuracy}.`);
      document.getElementById("trained-summary").textContent =
        "Your model reads the pad now: draw a digit (or switch back to the shipped model).";
      trainedEl.hidden = false;
      hooks.setTrainedModel(true);
      if (event.steps) document.querySelector('input[name="model"][value="trained"]').click();
      follow(false);
      break;
    }
    case "failed":
      setStatus("failed", `Training failed: ${event.error}`);
      follow(false);
      break;
    default:
      break;
  }
}

// Follow the event stream (the server ends it now and then; EventSource resumes where it was).
function follow(on) {
  if (source) { source.close(); source = null; }
  if (!on) return;
  source = new EventSource("/api/train/events");
  source.onmessage = (message) => onEvent(JSON.parse(message.data));
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `error ${response.status}`);
  return answer;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const settings = {
    architecture: data.get("architecture"), learning_rate: Number(data.get("learning_rate")),
    batch_size: Number(data.get("batch_size")), images: Number(data.get("images")),
    epochs: Number(data.get("epochs")),
  };
  try {
    await post("/api/train", settings);
    follow(true);
  } catch (error) {
    statusEl.textContent = error.message; // e.g. one is already running, or a setting out of range
  }
});

stopButton.addEventListener("click", async () => {
  try { await post("/api/train/stop"); } catch (error) { statusEl.textContent = error.message; }
});

resetButton.addEventListener("click", async () => {
  try {
    await post("/api/train/reset");
    follow(true); // shows the fresh, idle session
  } catch (error) {
    statusEl.textContent = error.message;
  }
});

window.addEventListener("resize", () => run && redraw());
// Filters are a few pixels each: shown enlarged, pixel for pixel.
filtersEl.addEventListener("load", () => {
  const zoom = Math.min(12, Math.max(2, Math.floor(320 / filtersEl.naturalWidth)));
  filtersEl.style.width = `${filtersEl.naturalWidth * zoom}px`;
});

export async function startLearnView(pageHooks) {
  hooks = pageHooks;
  newRun();
  setStatus("idle", "No training yet.");
  try {
    const state = await (await fetch("/api/train")).json();
    if (state.enabled === false) {
      setStatus("idle", "Training is turned off on this server.");
      trainButton.disabled = true;
    } else if (state.status !== "idle") {
      follow(true); // a run in progress, or one to show again
    }
  } catch (error) {
    // the drawing still works without this view
  }
}
