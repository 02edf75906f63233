// The Webcam tab's live view (the body of gr.HTML's js_on_load: element, trigger, props, watch, server).
// The browser shows its own camera preview at the camera's frame rate. Start opens a frame channel
// (a Gradio event whose answer is a token); then a downscaled JPEG of the newest frame goes to the
// component's server function with the token, and the next one leaves when its answer is back, so
// at most one frame per visitor is on its way. Answers are small JSON results (boxes, labels,
// probabilities) drawn here on a canvas over the preview.
const root = element.querySelector(".poster-live");
const stage = root.querySelector(".poster-live-stage");
const video = root.querySelector("video");
const overlay = root.querySelector("canvas");
const rateText = root.querySelector(".poster-live-rate");
const message = root.querySelector(".poster-live-message");
const startButton = root.querySelector(".poster-live-start");
const stopButton = root.querySelector(".poster-live-stop");
const grab = document.createElement("canvas");
const MAX_SIDE = __MAX_SIDE__;
const COLORS = __PALETTE__;
const JPEG_QUALITY = 0.8;
const WAIT_POLL_MS = 1000;
const RETRY_MS = 1000;
const LOST_MS = 15000; // an answer that never came (a dropped connection): send again

let stream = null;
let running = false;
let inFlight = false;
let token = null;       // opens this visitor's session on the server (from the Start event)
let sent = 0;           // frames sent; an answer to an older one (after the watchdog) is dropped
let starts = 0;         // presses of Start; a channel that never opened ends only the latest
let watchdog = null;
let shown = null;       // the newest result drawn
let arrivals = [];      // arrival times of recent results, for the rate
let lastText = 0;
const stats = {results: 0, arrivals: [], latencies: [], serverMs: [], steps: [], waiting: 0};
root.posterStats = stats;  // read by the benchmark

function say(text, kind) {
  message.textContent = text || "";
  message.dataset.kind = kind || "info";
}

function setState(state) {
  root.dataset.state = state;
  startButton.disabled = state === "running" || state === "opening";
  stopButton.disabled = !(state === "running");
}

function cameraError(err) {
  const name = (err && err.name) || String(err);
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "The camera was refused. Allow it for this page in the browser's site settings, then press Start.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return "No camera found. Connect one, then press Start.";
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return "The camera is in use by another application; close it, then press Start.";
  }
  return "The camera could not be opened (" + name + ").";
}

async function start() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say("No camera available: this browser gives the page no camera access (it needs https or localhost).", "error");
    setState("error");
    return;
  }
  setState("opening");
  say("Opening the camera…");
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (err) {
    stream = null;
    say(cameraError(err), "error");
    setState("error");
    return;
  }
  video.srcObject = stream;
  try { await video.play(); } catch (err) { /* autoplay of a muted stream: play() may reject harmlessly */ }
  running = true;
  inFlight = false;
  shown = null;
  arrivals = [];
  setState("running");
  say("Camera on; connecting to the server…");
  token = null;
  trigger("live_start", {});  // opened() sends the first frame once the channel's token is here
  const attempt = ++starts;
  setTimeout(() => {
    if (attempt === starts && running && !token) { stop("The server did not open the camera channel; press Start to try again.", "warn"); }
  }, LOST_MS);
  requestAnimationFrame(loop);
}

function stop(text, kind) {
  const wasRunning = running || stream;
  running = false;
  clearTimeout(watchdog);
  if (stream) { stream.getTracks().forEach((t) => t.stop()); }
  stream = null;
  video.srcObject = null;
  shown = null;
  token = null;
  sent += 1;  // a frame still in flight answers a stopped run: its answer is dropped, not drawn
  clearOverlay();
  setState("stopped");
  rateText.textContent = "";
  say(text || "Stopped. Press Start to continue.", kind || "info");
  if (wasRunning) { trigger("live_stop", {}); }
}

function send() {
  if (!running || inFlight || !token) { return; }  // without a token, opened() sends the first frame
  if (video.readyState < 2 || !video.videoWidth) { setTimeout(send, 30); return; }
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  inFlight = true;
  const t = performance.now();
  const number = ++sent;
  server.frame({token: token, frame: grab.toDataURL("image/jpeg", JPEG_QUALITY), t: t}).then(
    (answer) => { if (number === sent) { received(answer); } },
    (err) => { if (number === sent) { unanswered(err); } });
  clearTimeout(watchdog);
  watchdog = setTimeout(() => { inFlight = false; send(); }, LOST_MS);
}

// The Start event's answer: the token of this visitor's frame channel.
function opened() {
  let r = null;
  try { r = JSON.parse(props.value || "null"); } catch (err) { return; }
  if (!r || r.status !== "started" || typeof r.token !== "string") { return; }
  token = r.token;
  if (running && !inFlight) { say("Camera on; the first result is on its way."); send(); }
}

function unanswered(err) {
  clearTimeout(watchdog);
  inFlight = false;
  if (!running) { return; }
  say("The server did not answer (" + ((err && err.message) || err) + "); trying again…", "warn");
  setTimeout(send, RETRY_MS);
}

function received(answer) {
  let r = null;
  try { r = typeof answer === "string" ? JSON.parse(answer) : answer; } catch (err) { r = null; }
  clearTimeout(watchdog);
  if (!r || !r.status) { unanswered("an answer that is not a result"); return; }
  inFlight = false;
  if (!running) { return; }
  if (r.status === "waiting") {
    stats.waiting += 1;
    say(r.message, "wait");
    rateText.textContent = "";
    setTimeout(send, WAIT_POLL_MS);
    return;
  }
  if (r.status === "closed" || r.status === "ended") { stop(r.message, "warn"); return; }
  if (r.status === "busy") { setTimeout(send, 50); return; }
  if (r.status === "error") { say(r.message, "warn"); send(); return; }
  const now = performance.now();
  send();  // the next frame leaves before this one is drawn
  arrivals.push(now);
  while (arrivals.length > 2 && now - arrivals[0] > 2000) { arrivals.shift(); }
  stats.results += 1;
  stats.arrivals.push(now);
  stats.latencies.push(typeof r.t === "number" ? now - r.t : null);
  stats.serverMs.push(typeof r.server_ms === "number" ? r.server_ms : null);
  stats.steps.push(r.step || "");
  if (stats.arrivals.length > 6000) {
    for (const key of ["arrivals", "latencies", "serverMs", "steps"]) { stats[key].splice(0, 1000); }
  }
  shown = r;
  if (r.message) { say(r.message, "warn"); }
  else { say(r.faces.length ? "" : "No face in view.", "info"); }
  draw();
}

function rate(now) {
  if (arrivals.length < 3) { return null; }
  const span = now - arrivals[0];
  return span > 0 ? (1000 * (arrivals.length - 1)) / span : null;
}

function loop() {
  if (!running) { return; }
  const now = performance.now();
  if (now - lastText > 250) {
    lastText = now;
    if (shown && typeof shown.t === "number") {
      const r = rate(now);
      rateText.textContent = (r === null ? "–" : r.toFixed(1)) + " results/s · " + Math.round(now - shown.t) + " ms" +
        (shown.precision ? " · " + shown.precision : "") +
        (shown.engine === "compiled" || shown.engine === "compiling" ? ", " + shown.engine : "");
    }
  }
  if (overlay.width !== Math.round(stage.clientWidth * devicePixelRatio)) { draw(); }
  requestAnimationFrame(loop);
}

function clearOverlay() {
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
}

// The video is shown mirrored (a selfie view) and letterboxed (object-fit: contain); the result's
// boxes are in the pixels of the frame that was sent.
function draw() {
  const dpr = devicePixelRatio || 1;
  const cw = stage.clientWidth;
  const ch = stage.clientHeight;
  overlay.width = Math.round(cw * dpr);
  overlay.height = Math.round(ch * dpr);
  const ctx = overlay.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cw, ch);
  if (!shown || !shown.width || !video.videoWidth) { return; }
  const fit = Math.min(cw / video.videoWidth, ch / video.videoHeight);
  const dw = video.videoWidth * fit;
  const dh = video.videoHeight * fit;
  const ox = (cw - dw) / 2;
  const oy = (ch - dh) / 2;
  const sx = dw / shown.width;
  const sy = dh / shown.height;
  ctx.font = "600 13px ui-sans-serif, system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const face of shown.faces) {
    const [x1, y1, x2, y2] = face.box;
    const left = ox + dw - x2 * sx;  // mirrored
    const top = oy + y1 * sy;
    const w = (x2 - x1) * sx;
    const h = (y2 - y1) * sy;
    const color = COLORS[face.track % COLORS.length];
    ctx.lineWidth = 3;
    ctx.strokeStyle = color;
    ctx.strokeRect(left, top, w, h);
    let label = face.label;
    if (face.p) { label += " " + Math.round(100 * Math.max(...face.p)) + "%"; }
    const tw = ctx.measureText(label).width + 10;
    ctx.fillStyle = color;
    ctx.fillRect(left - 1.5, top - 20, tw, 20);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, left + 4, top - 17);
    if (face.p) { bars(ctx, face, left, top, w, color, cw); }
  }
}

function bars(ctx, face, left, top, w, color, cw) {
  const names = shown.classes;
  const rowH = 14;
  const barW = 70;
  const nameW = 64;
  const panelW = nameW + barW + 12;
  const x = left + w + 6 + panelW <= cw ? left + w + 6 : Math.max(0, left - panelW - 6);
  ctx.fillStyle = "rgba(15, 23, 42, 0.62)";
  ctx.fillRect(x, top, panelW, rowH * names.length + 6);
  ctx.font = "500 11px ui-sans-serif, system-ui, sans-serif";
  names.forEach((name, i) => {
    const y = top + 3 + i * rowH;
    ctx.fillStyle = "#e2e8f0";
    ctx.fillText(name.slice(0, 9), x + 4, y + 1);
    ctx.fillStyle = "rgba(255, 255, 255, 0.18)";
    ctx.fillRect(x + nameW + 4, y + 2, barW, rowH - 5);
    ctx.fillStyle = color;
    ctx.fillRect(x + nameW + 4, y + 2, barW * face.p[i], rowH - 5);
  });
  ctx.font = "600 13px ui-sans-serif, system-ui, sans-serif";
}

startButton.addEventListener("click", start);
stopButton.addEventListener("click", () => stop());
watch("value", opened);
window.addEventListener("pagehide", () => { if (running) { stop(); } });
setState("idle");
