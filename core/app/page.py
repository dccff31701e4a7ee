"""The web app's single page (HTML, CSS and JavaScript in one string: no files to install, no network assets).

Element ids (stable, used by tests/test_app.py): ``frame0``, ``frame1``, ``gt`` (file inputs, also drop zones
``drop-frame0`` ...), ``t`` (the slider), ``t-value``, ``result`` (the interpolated frame, a PNG data URL),
``flow01``, ``flow10``, ``diff``, ``psnr``; ``clip`` (file input, drop zone ``drop-clip``), ``rate-mode``
(select: x2, x4, fps), ``fps`` (target rate), ``convert`` (button), ``progress`` (a <progress>), ``progress-text``,
``download``, ``download-montage`` (links), ``montage`` (a <video>); ``message`` (the last error or note, one
line; ``data-kind`` is "error" or "info").
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>UPR-Net frame interpolation</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
 h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
 .note { color: #666; font-size: 0.9em; }
 .zones { display: flex; gap: 1em; flex-wrap: wrap; }
 .zone { border: 2px dashed #999; border-radius: 8px; padding: 0.8em; width: 220px; min-height: 90px;
         text-align: center; font-size: 0.9em; }
 .zone.over { border-color: #06c; background: #eef5ff; }
 .zone img { max-width: 200px; max-height: 120px; display: block; margin: 0.4em auto 0; }
 .zone .name { color: #444; word-break: break-all; }
 .views { display: flex; gap: 1em; flex-wrap: wrap; margin-top: 1em; }
 .views figure { margin: 0; } .views figcaption { font-size: 0.85em; color: #555; }
 .views img { image-rendering: pixelated; max-width: 520px; border: 1px solid #ccc; }
 #message { min-height: 1.4em; padding: 0.4em 0.6em; margin: 0.8em 0; border-radius: 4px; }
 #message[data-kind="error"] { background: #fde8e8; color: #900; }
 #message[data-kind="info"] { background: #eef5ff; color: #024; }
 .row { display: flex; gap: 0.8em; align-items: center; flex-wrap: wrap; margin: 0.6em 0; }
 progress { width: 320px; } video { max-width: 100%; border: 1px solid #ccc; }
 [hidden] { display: none !important; }
</style>
</head>
<body>
<h1>UPR-Net frame interpolation</h1>
<div class="note" id="config-line">loading...</div>
<div id="message" data-kind="info" role="status"></div>

<h2>Two frames</h2>
<div class="zones">
 <label class="zone" id="drop-frame0">frame 0<br><input type="file" id="frame0" accept="image/*">
  <div class="name"></div><img alt="" hidden></label>
 <label class="zone" id="drop-frame1">frame 1<br><input type="file" id="frame1" accept="image/*">
  <div class="name"></div><img alt="" hidden></label>
 <label class="zone" id="drop-gt">ground truth (optional)<br><input type="file" id="gt" accept="image/*">
  <div class="name"></div><img alt="" hidden></label>
</div>
<div class="row">
 <label for="t">t</label>
 <input type="range" id="t" min="0" max="1" step="0.01" value="0.5" style="width: 320px">
 <span id="t-value">0.50</span>
 <span id="psnr"></span>
 <span id="frame-state" class="note"></span>
</div>
<div class="views">
 <figure><img id="result" alt="interpolated frame" hidden><figcaption>interpolated frame</figcaption></figure>
 <figure><img id="flow01" alt="flow 0 to 1" hidden><figcaption>flow frame 0 &rarr; 1</figcaption></figure>
 <figure><img id="flow10" alt="flow 1 to 0" hidden><figcaption>flow frame 1 &rarr; 0</figcaption></figure>
 <figure><img id="diff" alt="difference to the ground truth" hidden>
  <figcaption id="diff-caption">difference to the ground truth (x4)</figcaption></figure>
</div>

<h2>A clip</h2>
<div class="zones">
 <label class="zone" id="drop-clip">clip<br><input type="file" id="clip" accept="video/*">
  <div class="name"></div></label>
</div>
<div class="row">
 <select id="rate-mode">
  <option value="2">x2</option><option value="4">x4</option><option value="fps">target rate</option>
 </select>
 <input id="fps" placeholder="e.g. 60 or 60000/1001" size="16" hidden>
 <button id="convert" disabled>Interpolate the clip</button>
</div>
<div class="row">
 <progress id="progress" max="1" value="0" hidden></progress> <span id="progress-text"></span>
</div>
<div class="row">
 <a id="download" hidden download>download the result</a>
 <a id="download-montage" hidden download>download the side-by-side montage</a>
</div>
<video id="montage" controls muted loop hidden></video>

<script>
"use strict";
const state = { frame0: null, frame1: null, gt: null, clip: null, limits: null, busy: false, again: false };
const $ = (id) => document.getElementById(id);

function say(text, kind) {
  const box = $("message");
  box.textContent = text || "";
  box.dataset.kind = kind || "info";
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("the server cannot be reached (" + error.message + ")");
  }
  let payload = null;
  try { payload = await response.json(); } catch (error) { payload = null; }
  if (!response.ok || payload === null) {
    throw new Error((payload && payload.error) || ("the server answered " + response.status));
  }
  return payload;
}

function megabytes(bytes) { return String(Number((bytes / 1e6).toPrecision(4))) + " MB"; }

async function upload(slot, file) {
  const kind = slot === "clip" ? "clip" : "image";
  const zone = $("drop-" + slot);
  zone.querySelector(".name").textContent = file.name;
  state[slot] = null;
  if (state.limits && file.size > state.limits.max_upload_mb * 1e6) {
    say(file.name + ": " + megabytes(file.size) + " is larger than the limit of " +
        state.limits.max_upload_mb + " MB", "error");
    refresh();
    return;
  }
  say("uploading " + file.name + " ...", "info");
  try {
    const info = await api("/api/upload?kind=" + kind + "&name=" + encodeURIComponent(file.name),
                           { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
    state[slot] = info;
    const text = kind === "clip"
      ? file.name + ": " + info.width + "x" + info.height + ", " + info.frames + " frames at " +
        info.fps_value.toFixed(3).replace(/\.?0+$/, "") + " fps"
      : file.name + ": " + info.width + "x" + info.height;
    say(text, "info");
    const img = zone.querySelector("img");
    if (img) { img.src = URL.createObjectURL(file); img.hidden = false; }
  } catch (error) {
    const img = zone.querySelector("img");
    if (img) { img.hidden = true; }
    say(error.message, "error");
  }
  refresh();
}

function refresh() {
  $("convert").disabled = !(state.clip && state.limits);
  if (state.frame0 && state.frame1) { requestFrame(); }
}

async function requestFrame() {
  if (!(state.frame0 && state.frame1)) { return; }
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  const t = parseFloat($("t").value);
  $("frame-state").textContent = "interpolating ...";
  $("result").dataset.ready = "0";
  try {
    const answer = await api("/api/interpolate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ frame0: state.frame0.id, frame1: state.frame1.id,
                             gt: state.gt ? state.gt.id : null, t: t }) });
    if (!state.again) {
      for (const name of ["result", "flow01", "flow10", "diff"]) {
        const src = name === "result" ? answer.frame : answer[name];
        $(name).hidden = !src;
        if (src) { $(name).src = src; }
      }
      $("result").dataset.t = String(answer.t);
      $("result").dataset.ready = "1";
      $("psnr").textContent = answer.psnr === null ? "" : "PSNR " + answer.psnr.toFixed(2) + " dB";
      $("frame-state").textContent = "";
      if ($("message").dataset.kind === "error") { say("", "info"); }
    }
  } catch (error) {
    $("frame-state").textContent = "";
    say(error.message, "error");
  }
  state.busy = false;
  if (state.again) { state.again = false; requestFrame(); }
}

async function convert() {
  const mode = $("rate-mode").value;
  const request = { clip: state.clip.id };
  if (mode === "fps") { request.fps = $("fps").value; } else { request.multi = parseInt(mode, 10); }
  for (const id of ["download", "download-montage", "montage"]) { $(id).hidden = true; }
  $("convert").disabled = true;
  try {
    const { job } = await api("/api/clip", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify(request) });
    $("progress").hidden = false;
    $("progress").value = 0;
    await poll(job);
  } catch (error) {
    say(error.message, "error");
  }
  $("convert").disabled = !state.clip;
}

async function poll(job) {
  for (;;) {
    const s = await api("/api/job/" + job);
    if (s.state === "queued") {
      $("progress-text").textContent = "waiting: " + s.position + " in the queue";
    } else if (s.state === "running") {
      $("progress").value = s.total ? s.done / s.total : 0;
      $("progress-text").textContent = s.stage + ": " + s.done + " / " + s.total + " frames";
    } else if (s.state === "done") {
      $("progress").value = 1;
      $("progress-text").textContent = "done: " + s.frames_in + " frames at " + s.fps_in + " fps -> " +
        s.frames_out + " frames at " + s.fps_out + " fps";
      $("download").href = s.result; $("download").hidden = false;
      $("download-montage").href = s.montage; $("download-montage").hidden = false;
      $("montage").src = s.montage; $("montage").hidden = false;
      say(s.clip + ": done", "info");
      return;
    } else {
      $("progress-text").textContent = "failed";
      say(s.error || "the conversion failed", "error");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function wire(slot) {
  const input = $(slot), zone = $("drop-" + slot);
  input.addEventListener("change", () => { if (input.files.length) { upload(slot, input.files[0]); } });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) { upload(slot, event.dataTransfer.files[0]); }
  });
}

for (const slot of ["frame0", "frame1", "gt", "clip"]) { wire(slot); }
$("t").addEventListener("input", () => {
  $("t-value").textContent = parseFloat($("t").value).toFixed(2);
  requestFrame();
});
$("rate-mode").addEventListener("change", () => { $("fps").hidden = $("rate-mode").value !== "fps"; });
$("convert").addEventListener("click", convert);

(async () => {
  try {
    const config = await api("/api/config");
    state.limits = config.limits;
    const l = config.limits;
    $("config-line").textContent = "UPR-Net " + (config.model || "") + " on " + config.device +
      ". Limits: " + l.max_upload_mb + " MB per file, " + l.max_pixels.toLocaleString("en") +
      " pixels per frame, " + l.max_frames + " frames per clip.";
    document.body.dataset.ready = "1";
  } catch (error) {
    say(error.message, "error");
  }
})();
</script>
</body>
</html>
"""
