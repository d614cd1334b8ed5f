// The dashboard: every stream with its newest picture (kept patches and audio tokens drawn by the server,
// as `omnisift viz` draws them), live figures, an ask box and its answers; alerts with their clips; the
// standing questions. Everything comes from the HTTP API (docs/http-api.md); live events arrive over
// server-sent events read with fetch, so the bearer token travels in a header, never in a URL.
"use strict";

const state = { token: localStorage.getItem("omnisift-token") || "", streams: new Map(), frames: new Map(),
                watches: [], live: false };
const $ = (sel, root = document) => root.querySelector(sel);

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { $("#token-form").hidden = false; }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// ---- streams ------------------------------------------------------------------------------------------

function fmt(value, digits = 1, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

function card(name) {
  let el = state.streams.get(name);
  if (el) return el;
  el = $("#stream-card").content.firstElementChild.cloneNode(true);
  el.dataset.stream = name;
  $(".name", el).textContent = name;
  $(".pause", el).onclick = () => act(`/api/streams/${name}/pause`, "POST");
  $(".resume", el).onclick = () => act(`/api/streams/${name}/resume`, "POST");
  $(".remove", el).onclick = () => act(`/api/streams/${name}`, "DELETE");
  $(".ask", el).onsubmit = (ev) => { ev.preventDefault(); ask(name, el); };
  $("#streams").append(el);
  state.streams.set(name, el);
  return el;
}

function render(info) {
  const el = card(info.name);
  const badge = $(".state", el);
  badge.textContent = info.state;
  badge.className = `badge state ${info.state}`;
  $(".detail", el).textContent = info.detail || "";
  const kept = info.kept || {};
  const rows = [["lag", fmt(info.lag, 2, " s")], ["media time", fmt(info.media_time, 1, " s")],
                ["chunks", info.chunks], ["dropped / lost", `${info.dropped} / ${info.lost}`],
                ["reconnects / gaps", `${info.reconnects} / ${info.gaps ?? 0}`], ["KV cache", `${info.cache_tokens ?? "–"} tokens`],
                ["kept video", kept.video_before ? `${kept.video_after} / ${kept.video_before}` : "–"],
                ["kept audio", kept.audio_before ? `${kept.audio_after} / ${kept.audio_before}` : "–"]];
  $(".figures", el).replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.figure = k;
    return [dt, dd];
  }));
  $(".pause", el).hidden = info.state !== "running";
  $(".resume", el).hidden = info.state !== "paused";
  if (info.chunks > 0) refreshFrame(info.name);
}

async function refreshStreams() {
  try {
    const body = await (await api("/api/streams")).json();
    const names = new Set(body.streams.map((s) => s.name));
    for (const [name, el] of state.streams) if (!names.has(name)) { el.remove(); state.streams.delete(name); }
    body.streams.forEach(render);
    $("#no-streams").hidden = body.streams.length > 0;
    $("#summary").textContent = `${body.streams.length} stream(s)` + (body.model_is_tiny ? " · tiny random model" : "");
    updateStreamChoices(body.streams.map((s) => s.name));
  } catch (e) { $("#summary").textContent = `streams: ${e.message}`; }
}

async function refreshFrame(name) {
  const f = state.frames.get(name) || {};
  if (f.busy) return;
  state.frames.set(name, { ...f, busy: true });
  try {
    const response = await api(`/api/streams/${name}/frame.jpg`);
    const index = response.headers.get("X-OmniSIFT-Chunk");
    const blob = await response.blob();  // always read: an unread body keeps its connection busy
    const img = $(".frame img", card(name));
    if (index !== img.dataset.index) {
      const url = URL.createObjectURL(blob);
      img.onload = () => { if (f.url) URL.revokeObjectURL(f.url); };
      img.src = url;
      img.dataset.index = index;
      state.frames.set(name, { url, busy: false });
      return;
    }
  } catch (e) { /* no chunk yet, or the stream went away */ }
  state.frames.set(name, { ...(state.frames.get(name) || {}), busy: false });
}

async function act(path, method) {
  try { await (await api(path, { method })).text(); } catch (e) { alert(e.message); }
  refreshStreams();
}

// ---- questions and answers ----------------------------------------------------------------------------

function answerItem(a) {
  const li = document.createElement("li");
  const q = document.createElement("div"); q.className = "q";
  q.textContent = `Q: ${a.question}  (media ${fmt(a.media_time, 1, " s")}, lag ${fmt(a.lag, 2, " s")})`;
  const t = document.createElement("div"); t.className = "a"; t.textContent = a.text || "(empty answer)";
  li.append(q, t);
  return li;
}

function showAnswer(a) {
  if (!state.streams.has(a.stream)) return;
  const list = $(".answers", card(a.stream));
  list.prepend(answerItem(a));
  while (list.children.length > 20) list.lastChild.remove();
}

async function ask(name, el) {
  const input = $(".ask input", el);
  const question = input.value.trim();
  if (!question) return;
  const pending = answerItem({ question, text: "…", media_time: null, lag: null });
  pending.classList.add("pending");
  $(".answers", el).prepend(pending);
  input.value = "";
  try {
    await (await api(`/api/streams/${name}/ask`, { method: "POST", json: { question } })).json();
    pending.remove();  // the answer arrives as a live event (or from the history on reload)
  } catch (e) { $(".a", pending).textContent = `error: ${e.message}`; }
}

// ---- alerts -------------------------------------------------------------------------------------------

function showAlert(a) {
  const li = document.createElement("li");
  li.dataset.stream = a.stream;
  if (a.clip) li.dataset.clip = a.clip;
  const head = document.createElement("div"); head.className = "head";
  const when = new Date(1000 * (a.time || Date.now() / 1000)).toLocaleTimeString();
  head.textContent = `${a.stream} · p(yes) ${fmt(a.p_yes, 2)} · media ${fmt(a.media_time, 1, " s")} · ${when}`;
  const q = document.createElement("div"); q.textContent = a.question;
  li.append(head, q);
  if (a.clip) {
    const play = document.createElement("button");
    play.type = "button"; play.className = "play"; play.textContent = "Play clip";
    play.onclick = () => playClip(li, a.clip, 0);
    li.append(play);
  }
  $("#alerts").prepend(li);
  while ($("#alerts").children.length > 50) $("#alerts").lastChild.remove();
  $("#no-alerts").hidden = true;
}

async function playClip(li, clip, tries) {
  try {
    const response = await api(`/api/clips/${clip}`);
    if (response.status === 202) {  // still being written
      await response.text();
      if (tries < 30) setTimeout(() => playClip(li, clip, tries + 1), 1000);
      return;
    }
    const blob = await response.blob();
    let video = $("video", li);
    if (!video) { video = document.createElement("video"); video.controls = true; video.muted = true; li.append(video); }
    video.src = URL.createObjectURL(blob);
    video.play().catch(() => {});
  } catch (e) {
    li.append(Object.assign(document.createElement("div"), { className: "form-error", textContent: e.message }));
  }
}

// ---- standing questions -------------------------------------------------------------------------------

async function refreshWatches() {
  try {
    const watches = await (await api("/api/watches")).json();
    $("#watches").replaceChildren(...watches.map((w) => {
      const li = document.createElement("li"); li.dataset.watch = w.id;
      const what = document.createElement("span"); what.className = "what";
      what.textContent = `${w.question} — ${w.stream || "every stream"}, every ${w.every} s, alert at ${w.threshold}`;
      const del = document.createElement("button"); del.type = "button"; del.textContent = "×";
      del.title = "remove"; del.onclick = async () => { await act(`/api/watches/${w.id}`, "DELETE"); refreshWatches(); };
      li.append(what, del);
      return li;
    }));
  } catch (e) { /* shown by the streams summary */ }
}

function updateStreamChoices(names) {
  const select = $("#watch-form select");
  const have = new Set([...select.options].map((o) => o.value));
  names.filter((n) => !have.has(n)).forEach((n) => select.add(new Option(n, n)));
}

function formError(form, message) { $(".form-error", form).textContent = message || ""; }

$("#watch-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const body = { question: f.question.value.trim(), every: Number(f.every.value), threshold: Number(f.threshold.value) };
  if (f.stream.value) body.stream = f.stream.value;
  try { await (await api("/api/watches", { method: "POST", json: body })).json(); f.question.value = ""; formError(f); }
  catch (e) { formError(f, e.message); }
  refreshWatches();
};

$("#add-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  let source;
  try { source = JSON.parse(f.source.value); } catch (e) { formError(f, `source is not JSON: ${e.message}`); return; }
  try { await (await api("/api/streams", { method: "POST", json: { name: f.name.value, source } })).json(); formError(f); }
  catch (e) { formError(f, e.message); }
  refreshStreams();
};

$("#token-form").onsubmit = (ev) => {
  ev.preventDefault();
  state.token = $("#token").value;
  localStorage.setItem("omnisift-token", state.token);
  $("#token-form").hidden = true;
  start();
};

// ---- the live feed ------------------------------------------------------------------------------------

function onEvent(type, data) {
  if (type === "answer") showAnswer(data);
  else if (type === "alert") showAlert(data);
  else if (type === "stats") refreshFrame(data.stream);
  else if (type === "stream") refreshStreams();
}

function setLive(on) {
  state.live = on;
  const badge = $("#conn");
  badge.textContent = on ? "live" : "offline";
  badge.className = `badge ${on ? "on" : "off"}`;
}

async function follow() {
  // server-sent events over fetch: `event: <type>` / `data: <json>` blocks separated by a blank line
  for (let wait = 1000; ; wait = Math.min(wait * 2, 15000)) {
    try {
      const response = await api("/api/events/live?kind=answer&kind=alert&kind=stats&kind=stream");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      setLive(true);
      wait = 1000;
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          let type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onEvent(type, JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    setLive(false);
    await new Promise((r) => setTimeout(r, wait));
  }
}

async function loadHistory() {
  try {
    const status = await (await api("/api/status")).json();
    if (!status.history) return;  // the history is off
    const alerts = (await (await api("/api/events?kind=alert&limit=20")).json()).events;
    alerts.reverse().forEach(showAlert);
    const answers = (await (await api("/api/events?kind=answer&limit=20")).json()).events;
    answers.reverse().forEach(showAnswer);
  } catch (e) { /* history off */ }
}

let started = false;
async function start() {
  await refreshStreams();
  await refreshWatches();
  if (started) return;
  started = true;
  await loadHistory();
  follow();
  setInterval(refreshStreams, 2000);
  setInterval(refreshWatches, 10000);
}

start();
