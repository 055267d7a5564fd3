// The web page: pick images, set parameters, submit a job, follow its event stream, show the result.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, content: null, styles: [], masks: [], job: null, source: null, lastEventId: null,
                look: null, lookControls: {}, sweep: null };
const RECENT_KEY = "nst.recentJobs";
const API_KEY = "nst.apiKey";

// With API keys on, fetches send the key from localStorage; EventSource, <img> and the download link cannot
// send headers, so they use the job's links, which the server signs for that one job (the key stays out of URLs).
function authHeaders() {
  const key = localStorage.getItem(API_KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function api(path, options = {}) {
  return fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
}

async function checkResponse(response) {
  if (response.status === 401) {
    $("key-box").hidden = false;
    $("key-state").textContent = "";
    $("api-key").focus();
  }
  return apiError(response);
}

function setupKey() {
  const box = $("key-box");
  box.hidden = !state.config.api_keys;
  $("api-key").value = localStorage.getItem(API_KEY) || "";
  box.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(API_KEY, key); else localStorage.removeItem(API_KEY);
    $("key-state").textContent = key ? "Saved in this browser." : "Removed.";
    showError("");
    refreshRecent();
  });
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function apiError(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error.field ? `${body.error.message}` : body.error.message;
  } catch (_) { /* not JSON */ }
  return `The server answered ${response.status}.`;
}

// A clip for the content (docs/video.md); an animated WebP is one too, which only the service can tell.
function isClip(file) { return file.type.startsWith("video/") || file.type === "image/gif"; }

function checkFile(file, { clip = false } = {}) {
  const cfg = state.config;
  if (!(clip && isClip(file)) && !cfg.formats.includes(file.type)) {
    return `${file.name}: use a JPEG, PNG, WebP, BMP or TIFF image${clip ? ", or an MP4, MOV, WebM or GIF clip" : ""}.`;
  }
  if (file.size > cfg.max_upload_bytes) {
    return `${file.name}: ${(file.size / 1e6).toFixed(1)} MB is over the ${(cfg.max_upload_bytes / 1e6).toFixed(0)} MB limit.`;
  }
  return null;
}

function thumb(file) {
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  img.title = file.name;
  return img;
}

function setContent(file) {
  const problem = checkFile(file, { clip: true });
  if (problem) return showError(problem);
  showError("");
  state.content = file;
  const url = URL.createObjectURL(file);
  const video = file.type.startsWith("video/");
  if (video) {
    const still = document.createElement("video");  // a clip's thumbnail: its first frame
    still.src = url;
    still.muted = true;
    still.title = file.name;
    $("content-thumbs").replaceChildren(still);
    $("content-video").src = url;
    $("content-view").removeAttribute("src");
  } else {
    $("content-thumbs").replaceChildren(thumb(file));
    $("content-view").src = url;
    $("content-video").removeAttribute("src");
  }
  $("content-video").hidden = !video;
  $("content-view").hidden = video;
}

function setStyles(files) {
  const max = state.config.max_styles;
  const list = Array.from(files).slice(0, max);
  for (const file of list) {
    const problem = checkFile(file);
    if (problem) return showError(problem);
  }
  showError(files.length > max ? `At most ${max} style images; the first ${max} are used.` : "");
  state.styles = list;
  state.masks = list.map(() => null);
  $("style-thumbs").replaceChildren(...list.map(thumb));
  renderBlend();
  renderMasks();
}

// One optional mask per style, in the styles' order: the API takes none, or one for each.
function renderMasks() {
  $("mask-field").hidden = state.styles.length === 0;
  $("masks").replaceChildren(...state.styles.map((file, i) => {
    const row = document.createElement("div");
    row.className = "mask-row";
    const input = Object.assign(document.createElement("input"),
      { type: "file", accept: state.config.formats.join(","), className: "style-mask", ariaLabel: `mask for ${file.name}` });
    const shown = document.createElement("span");
    shown.className = "mask-thumb";
    input.addEventListener("change", () => {
      const mask = input.files[0] || null;
      const problem = mask && checkFile(mask);
      if (problem) { input.value = ""; return showError(problem); }
      showError("");
      state.masks[i] = mask;
      shown.replaceChildren(...(mask ? [thumb(mask)] : []));
    });
    row.append(thumb(file), input, shown);
    return row;
  }));
}

function renderBlend() {
  const field = $("blend-field");
  field.hidden = state.styles.length < 2;
  $("blend").replaceChildren(...state.styles.map((file, i) => {
    const row = document.createElement("div");
    row.className = "blend-row";
    const range = Object.assign(document.createElement("input"),
      { type: "range", min: 0, max: 100, value: 50, className: "blend-weight", ariaLabel: `weight of ${file.name}` });
    const out = document.createElement("output");
    out.textContent = "50";
    range.addEventListener("input", () => { out.textContent = range.value; });
    row.append(thumb(file), range, out);
    return row;
  }));
}

function wireDrop(dropId, inputId, onFiles) {
  const drop = $(dropId);
  $(inputId).addEventListener("change", (e) => onFiles(e.target.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); onFiles(e.dataTransfer.files); });
}

async function exampleFile(name) {
  const response = await fetch(`/examples/${name}`);
  const blob = await response.blob();
  return new File([blob], name, { type: "image/jpeg" });
}

const COLOR_MODES = { style: "The painting's", luminance: "The photo's (luminance only)",
                      match: "The photo's, matched into the style" };

function styleWeightFromSlider(value) { return Number(Math.pow(10, Number(value)).toPrecision(2)); }
function sliderFromStyleWeight(weight) { return Math.log10(Math.max(weight, 1)); }

function setupControls() {
  const p = state.config.params;
  const bind = (id, spec, format = (v) => v) => {
    const input = $(id);
    if (spec.min !== null && spec.min !== undefined) input.min = spec.min;
    if (spec.max !== null && spec.max !== undefined) input.max = spec.max;
    input.value = spec.default ?? "";
    const out = $(`${id}_out`);
    const show = () => { if (out) out.textContent = format(input.value); };
    input.addEventListener("input", show);
    show();
  };
  bind("max_size", { ...p.max_size, max: Math.min(p.max_size.max, SCREEN_MAX_PX) }, (v) => `${v} px`);
  setupPrintSizes(p.max_size.max);
  bind("steps", p.steps);
  bind("style_scale", p.style_scale, (v) => `× ${Number(v).toFixed(2)}`);
  $("content_weight").value = p.content_weight.default;
  $("content_weight").min = 0;
  $("tv_weight").value = p.tv_weight.default;
  $("tv_weight").min = 0;
  $("frame_steps").value = p.frame_steps.default;
  $("frame_steps").max = p.frame_steps.max ?? "";
  const strength = $("style_strength");
  strength.value = sliderFromStyleWeight(p.style_weight.default);
  const showStrength = () => { $("style_strength_out").textContent = `style weight ${styleWeightFromSlider(strength.value)}`; };
  strength.addEventListener("input", showStrength);
  showStrength();
  const colours = $("color_mode");
  for (const mode of p.color_mode.choices) colours.append(new Option(COLOR_MODES[mode] || mode, mode));
  colours.value = p.color_mode.default;
  $("color_mode_help").textContent = p.color_mode.help;
  for (const id of ["max_size", "steps", "content_weight", "tv_weight", "style_scale", "seed", "color_mode", "frame_steps"]) {
    $(id).title = p[id]?.help || "";
  }
}

// The looks: a row of thumbnails (the example photo painted in each). Picking one sets the controls it
// changes to its values; a control left at the look's value is not sent, so the look's other knobs
// (the style layer weights) come with it and a control moved by hand wins over the look.
function setupLooks() {
  const row = $("looks");
  row.replaceChildren(...state.config.looks.map((look) => {
    const button = Object.assign(document.createElement("button"), { type: "button", className: "look" });
    button.dataset.look = look.name;
    button.setAttribute("role", "radio");
    button.title = look.description;
    const img = Object.assign(document.createElement("img"), { src: look.thumbnail, alt: "" });
    const caption = Object.assign(document.createElement("span"), { textContent: look.name });
    button.append(img, caption);
    button.addEventListener("click", () => chooseLook(look.name));
    return button;
  }));
  chooseLook(state.config.params.look.default);
}

function lookValues() { return state.config.looks.find((l) => l.name === state.look).values; }

function chooseLook(name) {
  state.look = name;
  for (const button of $("looks").children) {
    button.setAttribute("aria-checked", String(button.dataset.look === name));
  }
  const values = lookValues();
  $("look_out").textContent = name;
  $("look-help").textContent = state.config.looks.find((l) => l.name === name).description;
  $("style_strength").value = sliderFromStyleWeight(values.style_weight);
  $("style_strength").dispatchEvent(new Event("input"));
  $("content_weight").value = values.content_weight;
  $("tv_weight").value = values.tv_weight;
  $("style_scale").value = values.style_scale;
  $("style_scale").dispatchEvent(new Event("input"));
  $("color_mode").value = values.color_mode;
  // As the controls hold them (a range snaps to its step): a control still there is left to the look.
  state.lookControls = Object.fromEntries(LOOK_CONTROLS.map(([id]) => [id, controlValue(id)]));
}

// The controls a look sets, and the parameter each one sends.
const LOOK_CONTROLS = [["style_strength", "style_weight"], ["content_weight", "content_weight"],
                       ["style_scale", "style_scale"], ["tv_weight", "tv_weight"],
                       ["color_mode", "color_mode"]];

function controlValue(id) {
  if (id === "style_strength") return String(styleWeightFromSlider($(id).value));
  return $(id).value;
}

// Sizes above the slider's are prints: offered up to this service's cap, with their size at 300 dpi.
const SCREEN_MAX_PX = 1024;
const PRINT_SIZES_PX = [2048, 4096, 8192];

function setupPrintSizes(maxPx) {
  const sizes = PRINT_SIZES_PX.filter((px) => px <= maxPx);
  if (maxPx > SCREEN_MAX_PX && !sizes.includes(maxPx)) sizes.push(maxPx);
  $("print-field").hidden = sizes.length === 0;
  const select = $("print_size");
  for (const px of sizes) {
    select.append(new Option(`${px} px · ${(px / 300 * 2.54).toFixed(0)} cm at 300 dpi`, String(px)));
  }
  select.addEventListener("change", () => { $("max_size").disabled = select.value !== ""; });
}

function chosenSize() { return $("print_size").value || $("max_size").value; }

function formData() {
  const data = new FormData();
  data.append("content", state.content, state.content.name);
  for (const file of state.styles) data.append("style", file, file.name);
  data.append("look", state.look);
  data.append("max_size", chosenSize());
  data.append("steps", $("steps").value);
  for (const [id, name] of LOOK_CONTROLS) {
    const value = controlValue(id);
    if (value !== "" && value !== state.lookControls[id]) data.append(name, value);
  }
  if ($("seed").value !== "") data.append("seed", $("seed").value);
  if (isClip(state.content) && $("frame_steps").value !== "") data.append("frame_steps", $("frame_steps").value);
  for (const mask of state.masks.filter(Boolean)) data.append("style_mask", mask, mask.name);
  data.append("preview_every", String(Math.max(1, Math.round(Number($("steps").value) / 30))));
  if (state.styles.length > 1) {
    const weights = Array.from(document.querySelectorAll(".blend-weight")).map((r) => Number(r.value) / 100);
    data.append("style_blend", weights.join(","));
  }
  return data;
}

function inputsProblem() {
  if (!state.content) return "Choose a content photo first.";
  if (state.styles.length === 0) return "Choose at least one style image.";
  const masks = state.masks.filter(Boolean).length;
  if (masks && masks !== state.styles.length) return "Give a mask for every style, or none.";
  return null;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const problem = inputsProblem();
  if (problem) return showError(problem);
  $("submit").disabled = true;
  try {
    const response = await api("/jobs", { method: "POST", body: formData() });
    if (!response.ok) {
      showError(await checkResponse(response));
      $("submit").disabled = false;
      return;
    }
    const job = await response.json();
    remember(job);
    follow(job);
  } catch (err) {
    showError(`Could not reach the service: ${err.message}`);
    $("submit").disabled = false;
  }
}

function setStatus(text) { $("status-line").textContent = text; }

function formatSeconds(s) {
  if (s === null || s === undefined) return "…";
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function showProgress(p, ended = false) {
  $("bar").style.width = `${(p.fraction * 100).toFixed(1)}%`;
  setStatus(p.frames ? `Painting: frame ${p.frame} of ${p.frames} · step ${p.step} of ${p.steps}`
                     : `Painting: step ${p.step} of ${p.steps}`);
  const block = p.block ? ` · block ${p.block}/${p.blocks}` : "";
  const left = ended ? "" : ` · time left ${formatSeconds(p.eta_s)}`;  // none once the job has ended
  $("numbers").textContent = `scale ${p.scale}/${p.scales} (${p.width}×${p.height})${block}${left}`
    + ` · content ${p.losses.content.toExponential(2)} · style ${p.losses.style.toExponential(2)}`;
}

function showJob(job) {
  updateRecent(job);
  if (job.status === "queued") {
    setStatus(job.queue_position ? `Queued: position ${job.queue_position}` : "Queued");
  }
  if (job.progress) showProgress(job.progress, ["succeeded", "failed", "canceled"].includes(job.status));
  if (job.status === "running" && !job.progress) setStatus("Starting…");
  $("finish").hidden = job.status !== "running";  // a queued job has no picture to keep yet
}

function finish(job) {
  state.source?.close();
  state.source = null;
  $("cancel").hidden = true;
  $("submit").disabled = false;
  showJob(job);
  $("finish").hidden = true;
  if (job.status === "succeeded") {
    $("bar").style.width = "100%";
    const seconds = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
    const early = job.steps_done != null && job.steps_done < job.params.steps
      ? ` Finished early: ${job.steps_done} of ${job.params.steps} steps.` : "";
    setStatus((Number.isFinite(seconds)
      ? `Done in ${seconds.toFixed(1)} s on ${job.device}${job.precision ? ` (${job.precision})` : ""}.`
      : "Done.") + early);
    const url = job.links.result;
    const clip = job.kind === "video";
    if (clip) {  // the painted clip plays where its frames arrived
      $("result-video").src = url;
      $("result-video").hidden = false;
      $("live-view").hidden = true;
    } else {
      $("live-view").src = url;
    }
    $("live-caption").textContent = "Result";
    const link = $("download");
    link.href = url;
    link.download = `nst-${job.id.slice(0, 8)}.${clip ? job.video.format : "png"}`;
    link.textContent = clip ? `Download ${job.video.format.toUpperCase()}` : "Download PNG";
    link.hidden = false;
  } else if (job.status === "failed") {
    setStatus("Failed.");
    showError(job.error ? `${job.error.message} (${job.error.code})` : "The job failed.");
  } else if (job.status === "canceled") {
    setStatus("Canceled.");
  }
}

function follow(job) {
  state.job = job;
  state.source?.close();
  $("download").hidden = true;
  $("live-view").removeAttribute("src");
  $("live-view").hidden = false;
  $("result-video").hidden = true;
  $("result-video").removeAttribute("src");
  $("live-caption").textContent = "Preview";
  $("bar").style.width = "0";
  $("numbers").textContent = "";
  $("cancel").hidden = false;
  $("submit").disabled = true;
  showJob(job);
  connect(job);
}

// EventSource resends the last event id when it reconnects by itself; after a hard failure we open a new
// one, which cannot set headers, so the page passes the id it saw as ?last_event_id (the server reads both).
function connect(job) {
  const events = job.links.events;
  const url = state.lastEventId ? `${events}${events.includes("?") ? "&" : "?"}last_event_id=${encodeURIComponent(state.lastEventId)}`
                                : events;
  const source = new EventSource(url);
  state.source = source;
  const track = (e) => { if (e.lastEventId) state.lastEventId = e.lastEventId; };
  source.addEventListener("snapshot", (e) => showJob(JSON.parse(e.data)));
  source.addEventListener("status", (e) => {
    track(e);
    const d = JSON.parse(e.data);
    if (d.status === "running") { setStatus("Starting…"); $("finish").hidden = false; }
  });
  source.addEventListener("finished_early", (e) => {
    track(e);
    setStatus(job.kind === "video" ? "Finishing: encoding the frames done…" : "Finishing: keeping this picture…");
  });
  source.addEventListener("progress", (e) => { track(e); showProgress(JSON.parse(e.data)); });
  source.addEventListener("preview", (e) => { track(e); $("live-view").src = JSON.parse(e.data).url; });
  source.addEventListener("completed", (e) => { track(e); state.lastEventId = null; finish(JSON.parse(e.data)); });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && state.source === source) {
      setStatus("Connection lost; reconnecting…");
      setTimeout(() => { if (state.source === source) reconnect(job.id); }, 2000);
    }
  };
}

// A new EventSource after a hard failure: fetch the job again first, for links signed afresh.
async function reconnect(jobId) {
  try {
    const response = await api(`/jobs/${jobId}`);
    if (response.ok) { connect(await response.json()); return; }
    if (response.status === 401 || response.status === 404) { showError(await checkResponse(response)); return; }
  } catch (_) { /* still offline */ }
  setTimeout(() => { if (state.source && state.job?.id === jobId) reconnect(jobId); }, 2000);
}

// "Try strengths": a sweep of small pictures at three style strengths around the slider's (a slider step of
// 0.45 is about x2.8), filled in as its cells finish; a click paints that strength at the chosen size.
const STRENGTH_OFFSETS = [-0.45, 0, 0.45];
const SWEEP_SIZE_PX = 256;

function strengthPositions() {
  const slider = $("style_strength");
  const here = Number(slider.value);
  const clamp = (v) => Math.min(Number(slider.max), Math.max(Number(slider.min), v));
  return [...new Set(STRENGTH_OFFSETS.map((d) => clamp(here + d).toFixed(2)))];
}

async function tryStrengths() {
  showError("");
  const problem = inputsProblem();
  if (problem) return showError(problem);
  const positions = strengthPositions();
  const weights = positions.map(styleWeightFromSlider);
  const data = formData();
  data.delete("style_weight");
  data.delete("preview_every");
  data.set("max_size", String(Math.min(Number(chosenSize()), SWEEP_SIZE_PX)));
  data.append("sweep", `style_weight=${weights.join(",")}`);
  $("try-strengths").disabled = true;
  try {
    const response = await api("/sweeps", { method: "POST", body: data });
    if (!response.ok) { showError(await checkResponse(response)); return; }
    const sweep = await response.json();
    state.sweep = { id: sweep.id, positions: Object.fromEntries(weights.map((w, i) => [String(w), positions[i]])) };
    $("strengths").hidden = false;
    showSweep(sweep);
    pollSweep(sweep.id);
  } catch (err) {
    showError(`Could not reach the service: ${err.message}`);
  } finally {
    $("try-strengths").disabled = false;
  }
}

function showSweep(sweep) {
  const p = sweep.progress;
  $("strengths-status").textContent = sweep.status === "completed"
    ? "Click a picture to paint it at full size."
    : `${p.ended} of ${p.cells} painted${p.running ? `, ${p.running} painting` : ""}…`;
  const grid = $("strength-grid");
  if (grid.dataset.sweep !== sweep.id) {
    grid.dataset.sweep = sweep.id;
    grid.replaceChildren(...sweep.cells.map((cell) => {
      const weight = cell.values.style_weight;
      const button = Object.assign(document.createElement("button"), { type: "button", className: "strength" });
      button.dataset.weight = weight;
      button.append(Object.assign(document.createElement("img"), { alt: "" }),  // the label names it
                    Object.assign(document.createElement("span"), { textContent: `style weight ${weight}` }));
      button.addEventListener("click", () => paintStrength(weight));
      return button;
    }));
  }
  sweep.cells.forEach((cell, i) => {
    const button = grid.children[i];
    const img = button.querySelector("img");
    if (cell.status === "succeeded" && !img.getAttribute("src")) img.src = cell.links.result;
    button.querySelector("span").textContent = `style weight ${cell.values.style_weight}`
      + (cell.status === "succeeded" ? "" : ` · ${cell.status ?? "gone"}`);
  });
}

function pollSweep(sweepId) {
  setTimeout(async () => {
    if (state.sweep?.id !== sweepId) return;
    const response = await api(`/sweeps/${sweepId}`);
    if (!response.ok) { showError(await checkResponse(response)); return; }
    const sweep = await response.json();
    showSweep(sweep);
    if (sweep.status !== "completed") pollSweep(sweepId);
  }, 1000);
}

function paintStrength(weight) {
  const slider = $("style_strength");
  slider.value = state.sweep.positions[weight];
  slider.dispatchEvent(new Event("input"));
  $("params").requestSubmit();
}

async function cancel() {
  if (!state.job) return;
  const response = await api(`/jobs/${state.job.id}/cancel`, { method: "POST" });
  if (!response.ok) showError(await checkResponse(response));
  else setStatus("Canceling…");
}

async function finishNow() {
  if (!state.job) return;
  const response = await api(`/jobs/${state.job.id}/finish`, { method: "POST" });
  if (!response.ok) showError(await checkResponse(response));
  else setStatus("Finishing after this step…");
}

function loadRecent() { try { return JSON.parse(localStorage.getItem(RECENT_KEY)) || []; } catch (_) { return []; } }
function saveRecent(list) { localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, 20))); }
function remember(job) { saveRecent([{ id: job.id, status: job.status, created_at: job.created_at }, ...loadRecent().filter((j) => j.id !== job.id)]); renderRecent(); }
function updateRecent(job) {
  const list = loadRecent();
  const entry = list.find((j) => j.id === job.id);
  if (entry && entry.status !== job.status) { entry.status = job.status; saveRecent(list); renderRecent(); }
}

function renderRecent() {
  $("recent").replaceChildren(...loadRecent().map((j) => {
    const li = document.createElement("li");
    const when = new Date(j.created_at).toLocaleString();
    const open = Object.assign(document.createElement("a"), { textContent: when });
    open.addEventListener("click", async () => {
      const response = await api(`/jobs/${j.id}`);
      if (!response.ok) { showError(await checkResponse(response)); return; }
      const job = await response.json();
      if (job.status === "queued" || job.status === "running") follow(job); else finish(job);
    });
    const badge = Object.assign(document.createElement("span"), { className: `badge ${j.status}`, textContent: j.status });
    li.append(open, badge);
    return li;
  }));
}

async function refreshRecent() {
  for (const j of loadRecent()) {
    const response = await api(`/jobs/${j.id}`);
    if (response.status === 401) { await checkResponse(response); return; }
    if (response.status === 404) { updateRecent({ id: j.id, status: "expired" }); continue; }
    if (response.ok) updateRecent(await response.json());
  }
}

// The result at full size: fit to the window, or 100% / 200% with the clicked point kept under the pointer;
// drag to move around. The result's own PNG, so a print can be checked stroke by stroke before downloading.
function setupZoom() {
  const dialog = $("zoom"), view = $("zoom-view"), img = $("zoom-img");
  let scale = "fit";
  const apply = (next, at) => {
    const before = img.getBoundingClientRect();
    const fx = at ? (at.x - before.left) / before.width : 0.5, fy = at ? (at.y - before.top) / before.height : 0.5;
    scale = next;
    const fit = Math.min(view.clientWidth / img.naturalWidth, view.clientHeight / img.naturalHeight, 1);
    const factor = scale === "fit" ? fit : Number(scale);
    img.style.width = `${img.naturalWidth * factor}px`;
    img.style.height = `${img.naturalHeight * factor}px`;
    view.scrollLeft = fx * img.offsetWidth - (at ? at.x - view.getBoundingClientRect().left : view.clientWidth / 2);
    view.scrollTop = fy * img.offsetHeight - (at ? at.y - view.getBoundingClientRect().top : view.clientHeight / 2);
    $("zoom-size").textContent = `${img.naturalWidth}×${img.naturalHeight} px · ${Math.round(factor * 100)}%`;
  };
  $("live-view").addEventListener("click", () => {
    if (!$("live-view").getAttribute("src")) return;
    img.onload = () => apply("fit");
    img.src = $("live-view").src;
    dialog.showModal();
    if (img.complete && img.naturalWidth) apply("fit");
  });
  for (const button of dialog.querySelectorAll("[data-zoom]")) {
    button.addEventListener("click", () => apply(button.dataset.zoom));
  }
  let drag = null;
  view.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, left: view.scrollLeft, top: view.scrollTop, moved: false };
    view.classList.add("dragging");
  });
  view.addEventListener("pointermove", (e) => {
    if (!drag) return;
    drag.moved = drag.moved || Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 4;
    view.scrollLeft = drag.left - (e.clientX - drag.x);
    view.scrollTop = drag.top - (e.clientY - drag.y);
  });
  view.addEventListener("pointerup", (e) => {
    if (drag && !drag.moved && e.target === img) apply(scale === "fit" ? "1" : "fit", { x: e.clientX, y: e.clientY });
    drag = null;
    view.classList.remove("dragging");
  });
  $("zoom-close").addEventListener("click", () => dialog.close());
}

async function main() {
  state.config = await (await fetch("/api/config")).json();
  setupControls();
  setupLooks();
  setupKey();
  setupZoom();
  wireDrop("content-drop", "content-input", (files) => files[0] && setContent(files[0]));
  wireDrop("style-drop", "style-input", setStyles);
  $("use-examples").addEventListener("click", async () => {
    const ex = state.config.examples;
    setContent(await exampleFile(ex.content[0]));
    setStyles([await exampleFile(ex.style[0])]);
  });
  $("params").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("try-strengths").addEventListener("click", tryStrengths);
  $("finish").addEventListener("click", finishNow);
  renderRecent();
  refreshRecent();
  document.body.dataset.ready = "true";  // the form is wired: what the page's tests wait for
}

main();
