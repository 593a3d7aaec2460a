// gem-edge viewer: upload an ECG, stream the report, show the image, the measurements beside the
// device's, and the grounding verdicts; then ask follow-up questions about the same ECG.
//
// Calls (docs/serve-api.md): POST /v1/interpret (multipart), POST /v1/ecgs/{id}/ask (JSON), both read as
// server-sent events through fetch (EventSource cannot POST); GET /v1/ecgs/{id}/image.png.
// Server text is model output: it only ever enters the page through textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN = new URLSearchParams(location.search).get("token");

// Table rows: [label, our key, the device's key, unit]. The device's QTc is its own formula's.
const ROWS = [
  ["heart rate", "hr_bpm", "hr_bpm", "bpm"],
  ["RR (mean)", "rr_ms", "rr_ms", "ms"],
  ["PR", "pr_ms", "pr_ms", "ms"],
  ["QRS duration", "qrs_ms", "qrs_ms", "ms"],
  ["QT", "qt_ms", "qt_ms", "ms"],
  ["QTc Bazett", "qtc_bazett_ms", "qtc_ms", "ms"],
  ["QTc Fridericia", "qtc_fridericia_ms", null, "ms"],
  ["P axis", "p_axis_deg", "p_axis_deg", "°"],
  ["QRS axis", "qrs_axis_deg", "qrs_axis_deg", "°"],
  ["T axis", "t_axis_deg", "t_axis_deg", "°"],
];
const QUANTITY = {   // grounding quantity -> [label, unit]
  hr_bpm: ["heart rate", "bpm"], pr_ms: ["PR", "ms"], qrs_ms: ["QRS", "ms"], qt_ms: ["QT", "ms"],
  qtc_ms: ["QTc", "ms"], p_axis_deg: ["P axis", "°"], qrs_axis_deg: ["QRS axis", "°"],
  t_axis_deg: ["T axis", "°"],
};

let ecgId = null;      // the ECG the follow-up box asks about
let imageUrl = null;   // object URL of the shown image, revoked when replaced

// --- HTTP ---------------------------------------------------------------------------------------

function headers(extra) {
  const h = Object.assign({}, extra);
  if (TOKEN) h["Authorization"] = "Bearer " + TOKEN;
  return h;
}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

// POST and read the answer: an SSE stream (token events go to onToken; the result event's data is
// returned) or, when the server answers plain JSON, that object. Non-2xx answers and `event: error`
// throw ApiError with the server's message.
async function postStream(url, body, contentType, onToken) {
  const h = headers({ Accept: "text/event-stream" });
  if (contentType) h["Content-Type"] = contentType;
  const response = await fetch(url, { method: "POST", headers: h, body });
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get("Content-Type") || "";
  if (!type.startsWith("text/event-stream")) return response.json();

  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let result = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.name === "token") onToken(JSON.parse(event.data).text);
      else if (event.name === "result") result = JSON.parse(event.data);
      else if (event.name === "error") {
        const data = JSON.parse(event.data);
        throw new ApiError(data.error, data.status);
      }
    }
    if (done) break;
  }
  if (result === null) throw new ApiError("the stream ended without a result", response.status);
  return result;
}

function parseEvent(block) {   // one SSE event: "event: name" and "data: ..." lines
  const event = { name: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue;                       // a comment (keep-alive)
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.name = value;
    else if (field === "data") data.push(value);
  }
  event.data = data.join("\n");
  return event;
}

async function errorOf(response) {
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch (e) { /* not JSON: keep the status text */ }
  return new ApiError(message, response.status);
}

// --- Rendering ----------------------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function number(value, unit) {
  if (value === null || value === undefined) return "—";
  return unit === "°" ? value + "°" : value + " " + unit;
}

// The text with each grounding item's span in a <mark>. Spans count Unicode code points (Python's
// str indices), so the text is split into code points, not UTF-16 units.
function markedText(container, text, grounding) {
  const out = document.createDocumentFragment();    // built apart, then swapped in at once
  const chars = Array.from(text);
  const items = (grounding || []).slice().sort((a, b) => a.span[0] - b.span[0]);
  let at = 0;
  for (const item of items) {
    const [start, end] = item.span;
    if (start < at || end > chars.length || end <= start) continue;   // overlapping or out of range
    out.append(chars.slice(at, start).join(""));
    const mark = el("mark", chars.slice(start, end).join(""), item.verdict.replace(/ /g, "-"));
    mark.title = verdictText(item);
    out.append(mark);
    at = end;
  }
  out.append(chars.slice(at).join(""));
  container.replaceChildren(out);
}

// What --revise-rhythm changed: each revised statement with its reason, and the model's own text.
function renderRevisions(result) {
  const box = $("revisions");
  const revisions = result.revisions || [];
  box.replaceChildren();
  box.hidden = !revisions.length;
  for (const r of revisions) {
    box.append(el("p", "revised \u201c" + r.original + "\u201d to \u201c" + (r.revised || "no rhythm named")
      + "\u201d: the measurements contradict it \u2014 " + r.reason, "revision"));
  }
  if (!revisions.length) return;
  const own = el("details");
  own.append(el("summary", "the model's own text"));
  own.append(el("p", result.model_text || "", "text model-text"));
  box.append(own);
}

// The numbers and the diagnoses a text states, each with its span and verdict, for markedText.
function checked(result) {
  return (result.grounding || []).concat(result.diagnoses || []);
}

function verdictText(item) {
  if (item.finding !== undefined) {   // a stated diagnosis: "atrial fibrillation: contradicted - RR regular ..."
    return item.name + ": " + item.verdict + " - " + item.reason
      + (item.device_verdict ? "; device: " + item.device_verdict : "");
  }
  return numberVerdictText(item);
}

function numberVerdictText(item) {   // "heart rate: stated 72, measured 71.4 bpm (±7.2): agree; device 70 bpm: agree"
  const [label, unit] = QUANTITY[item.quantity] || [item.quantity, ""];
  let text = label + ": stated " + item.stated;
  if (item.measured === null || item.measured === undefined) {
    text += ", not measurable" + (item.reason ? " (" + item.reason + ")" : "");
  } else {
    text += ", measured " + number(item.measured, unit);
    if (item.tolerance !== null && item.tolerance !== undefined) text += " (±" + item.tolerance + ")";
    text += ": " + item.verdict;
  }
  if (item.device !== null && item.device !== undefined) {
    text += "; device " + number(item.device, unit) + ": " + item.device_verdict;
  }
  return text;
}

function renderMeasurements(result) {
  const ours = result.measurements || {};
  const device = result.device;
  const theirs = (device && device.measurements) || {};
  const compared = {};
  for (const c of result.device_comparison || []) compared[c.quantity] = c;
  const reasons = (ours.quality && ours.quality.reasons) || {};

  const body = $("measurements").tBodies[0];
  body.replaceChildren();
  for (const [label, key, deviceKey, unit] of ROWS) {
    const row = el("tr");
    row.dataset.key = key;
    row.append(el("th", label));
    const cell = el("td", number(ours[key], unit));
    if (ours[key] === null && reasons[key]) cell.title = reasons[key];
    row.append(cell);
    row.append(el("td", device && deviceKey ? number(theirs[deviceKey], unit) : ""));
    const c = deviceKey && compared[deviceKey];
    if (c && c.verdict !== "agree") {
      row.className = c.verdict.replace(/ /g, "-");
      row.title = "measured " + number(c.measured, unit) + ", device " + number(c.device, unit)
        + (c.tolerance !== null ? " (±" + c.tolerance + ")" : "") + ": " + c.verdict;
    }
    body.append(row);
  }

  $("device-name").textContent = device
    ? "device: " + [device.vendor, device.model, device.program].filter(Boolean).join(" ")
    : "the file carries no device measurements";
  const notes = [];
  if (ours.quality && ours.quality.flags && ours.quality.flags.length) {
    notes.push("quality: " + ours.quality.flags.join(", "));
  }
  for (const w of result.warnings || []) notes.push(w);
  $("quality").textContent = notes.join("; ");

  const list = $("device-statements");
  list.replaceChildren();
  for (const s of (device && device.statements) || []) list.append(el("li", s));
  if (!list.children.length) list.append(el("li", "none", "note"));
}

async function showImage(url) {
  const img = $("ecg-image");
  // fetched rather than set as src, so the token goes along as a header
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw await errorOf(response);
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = URL.createObjectURL(await response.blob());
  img.src = imageUrl;
  img.hidden = false;
}

// --- Page state ---------------------------------------------------------------------------------

function setStatus(text) { $("status").textContent = text; }

function showError(error) {
  const line = $("error");
  const status = error && error.status ? " (HTTP " + error.status + ")" : "";
  line.textContent = (error && error.message ? error.message : String(error)) + status;
  line.hidden = false;
  setStatus("failed");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function busy(on) {
  $("interpret").disabled = on;
  $("ask").disabled = on || ecgId === null;
  $("followup").disabled = ecgId === null;
}

async function interpret(event) {
  event.preventDefault();
  const files = $("file").files;
  if (!files.length) { showError(new Error("pick an ECG file first")); return; }
  clearError();
  ecgId = null;
  busy(true);
  $("report").replaceChildren();
  renderRevisions({});
  $("answers").replaceChildren();
  $("measurements").tBodies[0].replaceChildren();
  $("device-statements").replaceChildren();
  $("device-name").textContent = $("quality").textContent = "";
  $("ecg-image").hidden = true;

  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  const question = $("question").value.trim();
  if (question) form.append("question", question);
  form.append("revise_rhythm", $("revise").checked ? "true" : "false");

  const t0 = performance.now();
  setStatus("interpreting " + Array.from(files, (f) => f.name).join(", ") + " …");
  try {
    const report = $("report");
    const result = await postStream("/v1/interpret", form, null, (text) => report.append(text));
    ecgId = result.ecg_id;
    markedText(report, result.text, checked(result));
    renderRevisions(result);
    renderMeasurements(result);
    setStatus("done in " + ((performance.now() - t0) / 1000).toFixed(1) + " s ("
      + result.new_tokens + " tokens)");
    if (result.image_url) await showImage(result.image_url);
  } catch (error) {
    showError(error);
  } finally {
    busy(false);
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("followup").value.trim();
  if (!question || ecgId === null) return;
  clearError();
  busy(true);
  const pair = el("div", null, "qa");
  pair.append(el("p", question, "q"));
  const answer = el("p", null, "a text");
  pair.append(answer);
  $("answers").append(pair);
  setStatus("asking …");
  try {
    const url = "/v1/ecgs/" + encodeURIComponent(ecgId) + "/ask";
    const result = await postStream(url, JSON.stringify({ question }), "application/json",
      (text) => answer.append(text));
    markedText(answer, result.text, checked(result));
    $("followup").value = "";
    setStatus("answered (" + result.new_tokens + " tokens)");
  } catch (error) {
    answer.append(answer.textContent ? " … (stopped)" : "(no answer)");
    showError(error);
  } finally {
    busy(false);
  }
}

// The revise box starts as the server's default (gem-run serve --revise-rhythm, [model] revise_rhythm).
fetch("/v1/health", { headers: headers() })
  .then((r) => (r.ok ? r.json() : {}))
  .then((health) => { $("revise").checked = Boolean(health.revise_rhythm); })
  .catch(() => {});

$("interpret-form").addEventListener("submit", interpret);
$("followup-form").addEventListener("submit", ask);
