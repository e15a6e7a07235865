// Draw on the pad, or give an image file; each change is sent to /api/predict and the answer shown.
"use strict";

const PREDICT_DELAY_MS = 120; // while drawing, predict once the pen has paused this long
const LINE_WIDTH = 20; // pad pixels: about MNIST's stroke once the digit is scaled to 20x20

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const digitOut = document.getElementById("digit");
const confidenceOut = document.getElementById("confidence");
const statusOut = document.getElementById("status");
const bars = document.getElementById("bars");
const fileInput = document.getElementById("file");

let drawing = false;
let hasInk = false;
let timer = null;
let latestRequest = 0; // answers to older requests are dropped

for (let d = 0; d < 10; d++) {
  bars.insertAdjacentHTML(
    "beforeend",
    `<li data-digit="${d}"><span>${d}</span><span class="bar"><span class="fill"></span></span>` +
      `<span class="value">0%</span></li>`,
  );
}

function clearPad() {
  clearTimeout(timer);
  latestRequest++; // an answer still on its way is to the drawing cleared: dropped
  statusOut.textContent = "";
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
  showResult(null);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  hasInk = true;
  pad.setPointerCapture(event.pointerId);
  ink.lineWidth = LINE_WIDTH;
  ink.lineCap = ink.lineJoin = "round";
  ink.strokeStyle = "#000";
  ink.beginPath();
  ink.moveTo(...point(event));
  ink.lineTo(...point(event)); // a tap leaves a dot
  ink.stroke();
  event.preventDefault();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) {
    ink.lineTo(...point(e));
  }
  ink.stroke();
  schedulePrediction();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    schedulePrediction(0);
  });
}

function schedulePrediction(delay = PREDICT_DELAY_MS) {
  clearTimeout(timer);
  timer = setTimeout(() => {
    if (hasInk) pad.toBlob((blob) => predict(blob, { "Content-Type": "image/png" }), "image/png");
  }, delay);
}

async function predictFile(file) {
  if (!file) return;
  clearPad();
  try {
    const picture = await createImageBitmap(file); // shown on the pad, so the answer has its question beside it
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const [w, h] = [picture.width * scale, picture.height * scale];
    ink.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch {
    // not an image this browser shows; the server says what is wrong with it
  }
  const form = new FormData();
  form.append("image", file, file.name);
  predict(form, {});
}

async function predict(body, headers) {
  const request = ++latestRequest;
  statusOut.textContent = "";
  try {
    const response = await fetch("/api/predict", { method: "POST", body, headers });
    const answer = await response.json();
    if (request !== latestRequest) return;
    if (!response.ok) throw new Error(answer.detail);
    showResult(answer);
  } catch (error) {
    if (request !== latestRequest) return;
    showResult(null);
    statusOut.textContent = `Could not read that: ${error.message}`;
  }
}

// Where the server is not sure (below --min-confidence, or above the energy threshold of a model trained on
// non-digits) the model is guessing: say so, and show its two best guesses.
function confidenceText(answer) {
  if (answer.sure) return `${answer.confidence.toFixed(1)}% sure`;
  const guesses = answer.top3.slice(0, 2).map((t) => `${t.digit} (${t.probability.toFixed(1)}%)`);
  return `${answer.not_a_digit ? "Not a digit?" : "Not sure:"} maybe ${guesses.join(" or ")}`;
}

function showResult(answer) {
  digitOut.textContent = answer ? (answer.sure ? answer.digit : "?") : "–";
  confidenceOut.textContent = answer ? confidenceText(answer) : "";
  bars.querySelectorAll("li").forEach((row, d) => {
    const p = answer ? answer.probabilities[d] : 0;
    row.querySelector(".fill").style.width = `${p}%`;
    row.querySelector(".value").textContent = `${p.toFixed(p < 10 ? 1 : 0)}%`;
    row.classList.toggle("top", Boolean(answer) && d === answer.digit);
  });
  const image = seen.createImageData(28, 28);
  (answer ? answer.image.flat() : new Array(784).fill(0)).forEach((v, i) => {
    image.data.set([v, v, v, 255], i * 4);
  });
  seen.putImageData(image, 0, 0);
}

document.getElementById("clear").addEventListener("click", clearPad);
pad.addEventListener("keydown", (event) => {
  if (event.key === "Escape" || event.key === "Delete") clearPad();
});
fileInput.addEventListener("change", () => {
  predictFile(fileInput.files[0]);
  fileInput.value = ""; // choosing the same file again still counts
});
pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dragging");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragging");
  predictFile(event.dataTransfer.files[0]);
});

clearPad();
