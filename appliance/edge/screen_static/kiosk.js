// The kiosk screen: renders the daemon's state (server-sent events from /events) in the
// chosen language. All texts come from messages.json; no page reload, no outside requests.
"use strict";
let messages = {};
let state = null;
// The customer's choices as this page knows them: set at once on a click, so a second click
// builds on the first even before the server's event confirms it; while a post is on its way
// (pendingPosts > 0), or an event older than its answer (version < answeredVersion), must not
// undo it.
let choice = null;
let pendingPosts = 0;
let answeredVersion = -1;

function text(key, vars) {
  const lang = (state && state.language) || "ja";
  let s = (messages[lang] || {})[key] ?? (messages.en || {})[key] ?? key;  // "" is a text too
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
}

function cell(row, content, cls) {
  const td = row.insertCell();
  td.textContent = content;
  if (cls) td.className = cls;
  return td;
}

function bandLabel(band) {
  return band === "all" ? text("band_all") : text("band_people", {band: band});
}

// A grade in the customer's language; a label the catalogue has no words for (a model trained on
// other graders' labels) as the model names it, never as the catalogue's key.
function gradeText(label) {
  const key = "grade_" + label;
  const shown = text(key);
  return shown === key ? label : shown;
}

// The grade (or, where the model cannot tell it from the next one, that it lies between the
// two), or why it was withheld: measurements it needs are outside the validated range
// (said with what the customer can do about it: measure again on another spot, never the
// names of features the screen does not show), or the picture as a whole is. A result with
// neither (a kiosk without a model) shows no grade at all: a heading over a dash would tell
// the customer nothing.
function renderGrade(result) {
  const withheld = result.grade ? null : result.grade_withheld;
  document.querySelector(".score .grade").hidden = !result.grade && !withheld;
  const grade = document.getElementById("grade");
  const between = result.grade ? result.grade_between : null;  // a near-tie: never one grade
  grade.textContent = between
    ? text("grade_between", {first: gradeText(between[0]), second: gradeText(between[1])})
    : result.grade ? gradeText(result.grade) : withheld ? text("grade_not_given") : "";
  grade.classList.toggle("not-measured", !!withheld);
  grade.classList.toggle("between", !!between);
  let why = "";
  if (withheld && (withheld.frame || withheld.features.length === 0)) why = text("grade_withheld_frame");
  else if (withheld) why = text("grade_withheld");
  document.getElementById("grade-why").textContent = why;
}

function renderResult(result) {
  document.getElementById("result").dataset.mid = result.measurement_id;
  const kime = document.getElementById("kime");  // null: outside the validated range
  kime.textContent = result.kime_score === null ? text("not_measured") : result.kime_score.toFixed(0);
  kime.classList.toggle("not-measured", result.kime_score === null);
  renderGrade(result);
  const overlay = document.getElementById("overlay");
  if (result.overlay) { if (overlay.getAttribute("src") !== result.overlay) overlay.src = result.overlay; }
  document.getElementById("live").classList.toggle("marked", !!result.overlay);
  const table = document.getElementById("features");
  table.replaceChildren();
  const kimeStanding = document.getElementById("kime-standing");
  kimeStanding.textContent = "";
  for (const f of result.features) {
    if (f.key === "kime_score") {
      if (f.standing && result.reference_band) {
        kimeStanding.textContent = text("standing_" + f.standing.where, {band: bandLabel(result.reference_band)});
      }
      continue;
    }
    const row = table.insertRow();
    row.dataset.key = f.key;
    cell(row, text("feature_" + f.key), "name");
    const value = f.measured ? f.value.toFixed(f.digits) + (f.unit ? " " + f.unit : "") : text("not_measured");
    cell(row, value, f.measured ? "value" : "value not-measured");
    const info = cell(row, text("explain_" + f.key), "explain");
    if (f.measured && f.standing && result.reference_band) {
      const p = document.createElement("div");
      p.className = "standing";
      p.textContent = text("standing_" + f.standing.where, {band: bandLabel(result.reference_band)});
      info.appendChild(p);
    }
  }
}

function renderChoices() {
  const subject = choice;
  for (const b of document.querySelectorAll("#bands button")) {
    b.classList.toggle("on", !!subject && subject.age_band === (b.dataset.band || null));
  }
  document.getElementById("consent-yes").classList.toggle("on", !!subject && subject.consent);
  document.getElementById("consent-no").classList.toggle("on", !!subject && !subject.consent);
}

function render() {
  if (!state) return;
  document.documentElement.lang = state.language;
  document.body.dataset.phase = state.phase;
  for (const el of document.querySelectorAll("[data-msg]")) el.textContent = text(el.dataset.msg);
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("on", b.dataset.lang === state.language);
  // why the kiosk cannot measure is followed by who knows: staff were told (its status reached
  // the back office's broker), or the customer is asked to tell them
  const staff = state.staff ? text("sentence_separator") + text("staff_" + state.staff) : "";
  document.getElementById("guidance").textContent = state.guidance ? text(state.guidance) + staff : "";
  // what staff read about a kiosk down for good (appliance/edge/out_of_order.py): why, in
  // systemd's words
  const detail = state.guidance && state.detail;
  document.getElementById("staff-detail").textContent = detail ? text(detail.key, detail) : "";
  const progress = document.getElementById("progress");
  progress.max = state.burst;
  progress.value = state.progress;
  const working = {guiding: "", measuring: "measuring", analysing: "analysing"}[state.phase];
  document.getElementById("working-text").textContent = working ? text(working) : "";
  if (state.result) renderResult(state.result);
  renderChoices();
}

function post(path, body) {
  return fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
}

// A choice is for the measurement about to start (the count and the daemon run in the state):
// one that reaches the daemon after that measurement started, or a restarted daemon, is
// refused, never kept for the next customer, and the buttons then show what the daemon holds
// (showHeldChoices).
function choose(band, consent) {
  if (!state) return;  // no state read yet: no measurement to choose for
  const base = choice || {age_band: null, consent: false};
  choice = {age_band: band === undefined ? base.age_band : band,
            consent: consent === undefined ? base.consent : consent};
  pendingPosts += 1;
  renderChoices();
  let accepted = false;
  post("/subject", {...choice, measurement: state.measurements, run: state.run})
    .then((r) => r.json())
    .then((answer) => {
      if (answer.version === undefined) return;
      answeredVersion = answer.version;
      accepted = true;
    })
    .catch(() => {})
    .finally(() => {
      pendingPosts -= 1;
      if (!accepted && pendingPosts === 0) showHeldChoices();
    });
}

// After a refused choice: the choices the daemon holds, read from it now. What this page last
// heard may be an ended run's (a restarted daemon's events are not back yet): the last
// customer's, which the new run does not hold. Without an answer, what the page last heard.
function showHeldChoices() {
  fetch("/state")
    .then((r) => r.json())
    .then((held) => {
      if (pendingPosts !== 0) return;
      const overtaken = held.run === state.run && held.version < state.version;  // by an event
      if (!overtaken) state = held;
      choice = state.subject;
      render();
    })
    .catch(() => { if (pendingPosts === 0) { choice = state.subject; renderChoices(); } });
}

// The event stream is back after it dropped: the daemon went away (systemd restarts it) and a
// new one answers. Its live preview is a new MJPEG response (an <img> never asks again by
// itself), and it counts versions from 0 again without the last customer's choices: an answer
// of the old daemon must not hold its state off.
function daemonBack() {
  askPreview();
  answeredVersion = -1;
}

function askPreview() {
  document.getElementById("preview").src = "/preview.mjpg?t=" + Date.now();
}

function setUp() {
  const bands = document.getElementById("bands");
  for (const band of ["10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+", ""]) {
    const b = document.createElement("button");
    b.dataset.band = band;
    if (band) b.textContent = band; else b.dataset.msg = "age_none";
    b.addEventListener("click", () => choose(band || null, undefined));
    bands.appendChild(b);
  }
  document.getElementById("consent-yes").addEventListener("click", () => choose(undefined, true));
  document.getElementById("consent-no").addEventListener("click", () => choose(undefined, false));
  for (const b of document.querySelectorAll("nav button")) {
    b.addEventListener("click", () => post("/language", {language: b.dataset.lang}));
  }
  listen();
}

// The event stream. A dropped one the browser opens again by itself; one refused with an HTTP
// error (the kiosk's server answers 503 while every place is taken) it closes for good, so a
// new one is opened here, or the screen would stop following the kiosk until reloaded. A
// refused preview (an <img>'s error) is asked for again the same way.
const REFUSED_RETRY_MS = 1000;
// The daemon clears the screen after its idle time; while it is gone (a crash systemd has not
// restarted yet, a restart loop) nothing would, and the last customer's result stayed on screen
// for the next one. After this long without it the page clears itself and says why.
const AWAY_AFTER_MS = 5000;
// A daemon gone this long is not starting again (a start may take systemd's TimeoutStartSec=,
// 120 s, after RestartSec=, 5 s): nothing serves the page (systemd gave up on it and its
// out-of-order screen, appliance/edge/out_of_order.py, is not there either), so the page
// says the kiosk is out of order, not that it is starting again.
const DOWN_AFTER_MS = 180000;
let lost = false;  // the event stream dropped: the daemon went away, its preview with it
let awayTimer = null;
let downTimer = null;
function listen() {
  const events = new EventSource("/events");
  events.onerror = () => {
    lost = true;
    if (awayTimer === null) awayTimer = setTimeout(showAway, AWAY_AFTER_MS);
    if (downTimer === null) downTimer = setTimeout(showDown, DOWN_AFTER_MS);
    if (events.readyState === EventSource.CLOSED) setTimeout(listen, REFUSED_RETRY_MS);
  };
  events.onopen = () => {
    clearTimeout(awayTimer);
    clearTimeout(downTimer);
    awayTimer = null;
    downTimer = null;
    if (lost) { lost = false; daemonBack(); }
  };
  events.onmessage = (event) => {
    state = JSON.parse(event.data);
    if (pendingPosts === 0 && state.version >= answeredVersion) choice = state.subject;
    render();
  };
}

// What the page shows while no daemon answers is built on what it last heard; a page whose
// daemon went before its first event (a crash at once, a restart loop) heard nothing, and stayed
// blank for good: it builds on a fresh screen in the page's own language instead.
function heardOrFresh() {
  return state || {language: document.documentElement.lang, phase: "welcome", burst: 1,
                   progress: 0, guidance: null, staff: null, detail: null, result: null,
                   subject: null};
}

// The daemon is still gone: nothing of the last customer stays on screen until it is back
// (its first event is the whole state again).
function showAway() {
  awayTimer = null;
  if (!lost || (state && state.guidance === "guide_out_of_order")) return;  // never promise again
  state = {...heardOrFresh(), phase: "guiding", guidance: "guide_kiosk_away", staff: null, detail: null, progress: 0,
           result: null, subject: null};
  choice = null;
  render();
}

// The daemon has not come back: the kiosk is out of order, and the customer is asked to tell
// staff (nothing here can tell them).
function showDown() {
  downTimer = null;
  if (!lost) return;
  state = {...heardOrFresh(), phase: "guiding", guidance: "guide_out_of_order", staff: "ask",
           detail: {key: "down_unreachable"}, progress: 0, result: null, subject: null};
  choice = null;
  render();
}

document.getElementById("preview").addEventListener(
  "error", () => setTimeout(askPreview, REFUSED_RETRY_MS));
// The words, once: a page loaded just before its daemon went away asks again until they come
// (without them it would show no words and no buttons until it is reloaded).
function loadMessages() {
  fetch("/messages.json")
    .then((r) => { if (!r.ok) throw new Error("messages: HTTP " + r.status); return r.json(); })
    .then((m) => { messages = m; setUp(); render(); })
    .catch(() => setTimeout(loadMessages, REFUSED_RETRY_MS));
}
loadMessages();
