// devenv dashboard: plain JS, no build step. Everything live comes from one EventSource;
// data is put into the page with textContent only (never as HTML).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const q = (sel) => document.querySelector(sel);
const LOG_KEEP = 500;

let state = null;
let secrets = null;
let stats = {};
const seen = new Set();      // services that had a container while this page was open
const logLines = [];         // {service, line, at}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function api(path, options) {
  const headers = Object.assign({"X-Devenv-Token": TOKEN}, (options || {}).headers || {});
  return fetch(path, Object.assign({}, options, {headers, cache: "no-store"}));
}

function duration(seconds) {
  if (seconds == null) return "-";
  const s = Math.floor(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + String(Math.floor(s % 86400 / 3600)).padStart(2, "0") + "h";
}

function bytes(n) {
  if (n == null) return "-";
  if (n < 1024 * 1024) return (n / 1024).toFixed(0) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

function badge(text, cls) {
  return el("span", {class: "badge s-" + (cls || text).replace(/[^a-z]/g, "")}, text);
}

function shownState(s) {
  if (s.state === "absent") return seen.has(s.service) ? "removed" : "absent";
  return s.state;
}

// --- services -----------------------------------------------------------------------
function renderServices() {
  const body = q("#services tbody");
  body.replaceChildren();
  for (const s of state.services) {
    if (s.state !== "absent") seen.add(s.service);
    const st = shownState(s);
    const probe = s.probe == null ? "-" : (s.probe.ok ? badge("ready") : badge("waiting"));
    const probeCell = el("td", {class: "probe", title: s.probe ? s.probe.detail : ""}, probe);
    const url = secrets ? secrets.urls[s.service] : s.url;
    const link = s.state === "running"
      ? el("a", {href: url, target: "_blank", rel: "noreferrer noopener"}, url)
      : el("span", {class: "note"}, s.state === "absent" ? "" : url);
    const usage = stats[s.service];
    const button = el("button", {type: "button", class: "restart", disabled: s.state !== "running"},
                      "restart");
    button.addEventListener("click", () => restart(s.service));
    const stateText = st === "removed" ? "removed (container gone)"
      : (s.exit_code != null && st !== "absent" ? `${st} (${s.exit_code})` : st);
    body.append(el("tr", {"data-service": s.service, "data-state": st},
      el("td", {class: "name", title: s.title}, s.service),
      el("td", {class: "state"}, badge(stateText, st)),
      el("td", {class: "health"}, s.health || "-"),
      probeCell,
      el("td", {class: "uptime", "data-started": s.started_at || ""}, uptimeOf(s.started_at)),
      el("td", {class: "restarts"}, String(s.restarts)),
      el("td", {class: "url"}, link),
      el("td", {class: "cpu"}, usage && s.state === "running" ? usage.cpu_percent.toFixed(1) + " %" : "-"),
      el("td", {class: "memory"}, usage && s.state === "running" ? bytes(usage.memory_bytes) : "-"),
      el("td", {class: "action"}, state.features.restart ? button : "")));
  }
}

function uptimeOf(started) {
  if (!started) return "-";
  return duration((Date.now() - Date.parse(started)) / 1000);
}

setInterval(() => {
  for (const td of document.querySelectorAll("td.uptime")) td.textContent = uptimeOf(td.dataset.started);
}, 1000);

async function restart(service) {
  if (!confirm(`Restart ${service}? Its clients lose their connections while it restarts; data is kept.`)) return;
  const note = q("#action-note");
  note.hidden = false;
  note.textContent = `restarting ${service}…`;
  try {
    const r = await api(`/api/services/${encodeURIComponent(service)}/restart`, {method: "POST"});
    const body = await r.json();
    note.textContent = body.ok
      ? `${service} restarted; answering again after ${body.seconds_to_ready != null ? body.seconds_to_ready.toFixed(1) + " s" : "?"}`
      : `restart of ${service} failed: ${body.error}`;
  } catch (e) {
    note.textContent = `restart of ${service} failed: ${e}`;
  }
}

// --- snapshots --------------------------------------------------------------------------
let snapshotDoc = null;

function renderSnapshots() {
  const section = q("#snapshots-section");
  section.hidden = !(state && state.features.snapshots);
  if (section.hidden || !snapshotDoc) return;
  const busy = snapshotDoc.busy;
  q("#take-snapshot").disabled = !!busy;
  const body = q("#snapshots tbody");
  body.replaceChildren();
  if (!snapshotDoc.snapshots.length) {
    body.append(el("tr", {}, el("td", {colSpan: 5, class: "note"}, "no snapshots yet")));
  }
  for (const s of snapshotDoc.snapshots.slice().reverse()) {  // newest first
    const button = el("button", {type: "button", class: "restore", disabled: !!busy}, "restore");
    button.addEventListener("click", () => restoreSnapshot(s.name));
    body.append(el("tr", {"data-snapshot": s.name},
      el("td", {class: "name"}, s.name + (s.auto ? " (automatic)" : "")),
      el("td", {class: "size"}, s.size),
      el("td", {class: "created"}, s.created.replace("T", " ").replace("Z", " UTC")),
      el("td", {class: "holds"}, s.holds.join(", ") + (s.postgres_major ? ` (PostgreSQL ${s.postgres_major})` : "")),
      el("td", {class: "action"}, button)));
  }
}

async function loadSnapshots() {
  try {
    const r = await api("/api/snapshots");
    if (!r.ok) return;
    snapshotDoc = await r.json();
    renderSnapshots();
  } catch (e) { /* the feed says what is wrong */ }
}

function snapshotNote(text, failed) {
  const note = q("#snapshot-note");
  note.hidden = false;
  note.className = "note" + (failed ? " failed" : "");
  note.textContent = text.split("\n")[0];
}

async function dataAction(path, body, running, done) {
  snapshotNote(running, false);
  if (snapshotDoc) { snapshotDoc.busy = running; renderSnapshots(); }
  try {
    const options = {method: "POST"};
    if (body) { options.body = JSON.stringify(body); options.headers = {"Content-Type": "application/json"}; }
    const r = await api(path, options);
    let doc = null;
    try { doc = await r.json(); } catch (e) { doc = null; }
    if (doc && doc.ok) snapshotNote(done(doc), false);
    else snapshotNote(doc ? `${doc.error}${doc.hint ? " (" + doc.hint + ")" : ""}` : `failed: HTTP ${r.status}`, true);
  } catch (e) {
    snapshotNote(`failed: ${e}`, true);
  }
  await loadSnapshots();
}

function takeSnapshot() {
  const name = q("#snapshot-name").value.trim();
  dataAction("/api/snapshots", name ? {name} : null, "taking a snapshot (PostgreSQL and Redis stop for the copy)…",
    (doc) => { q("#snapshot-name").value = ""; return `snapshot ${doc.snapshot.name} taken: ${doc.snapshot.holds.join(", ")}`; });
}

function restoreSnapshot(name) {
  if (!confirm(`Restore snapshot ${name}? The current data is replaced. An automatic snapshot ` +
               "of it is taken first; to get back, restore that one (its name is shown here, " +
               "and listed as automatic). PostgreSQL and Redis stop for the copy.")) return;
  dataAction(`/api/snapshots/${encodeURIComponent(name)}/restore`, null, `restoring ${name}…`,
    (doc) => `restored ${doc.snapshot.name}` + (doc.before
      ? `; the data before is in snapshot ${doc.before.name} (to go back: restore it, or ${doc.back})`
      : "; there was no data before"));
}

// --- ports ----------------------------------------------------------------------------
function renderPorts() {
  const body = q("#ports tbody");
  body.replaceChildren();
  const na = (v) => v == null ? "N/A" : String(v);
  for (const p of state.ports) {
    let why = p.kind === "host app" ? p.text : (p.reason ? p.reason.text : "");
    if (p.kind !== "host app" && !p.reason) why = p.moved ? p.text : "the wanted port";
    body.append(el("tr", {"data-service": p.service, class: p.moved ? "moved" : ""},
      el("td", {class: "name", title: p.title}, p.service + (p.kind === "host app" ? " (host app)" : "")),
      el("td", {class: "wanted"}, String(p.wanted)),
      el("td", {class: "here"}, p.here == null ? "-" : String(p.here)),
      el("td", {class: "rule"}, p.rule),
      el("td", {class: "why", title: p.reason ? `${p.reason.kind}: ${p.reason.by}` : ""}, why),
      el("td", {class: "remembered"}, p.remembered == null ? "-" : String(p.remembered)),
      el("td", {}, na(p.dev)), el("td", {}, na(p.staging)), el("td", {}, na(p.prod))));
  }
}

// --- graph ----------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}
const FILL = {running: "#dafbe1", exited: "#ffebe9", dead: "#ffebe9", removed: "#ffebe9",
              restarting: "#fff8c5", created: "#fff8c5", absent: "#f6f8fa", paused: "#f6f8fa"};
const STROKE = {running: "#1a7f37", exited: "#cf222e", dead: "#cf222e", removed: "#cf222e",
                restarting: "#9a6700", created: "#9a6700", absent: "#8c959f", paused: "#8c959f"};

function renderGraph() {
  const g = state.graph;
  const byService = Object.fromEntries(state.services.map((s) => [s.service, s]));
  const layers = Math.max(...g.nodes.map((n) => n.layer)) + 1;
  const W = 560, rowH = 70, boxW = 96, boxH = 30;
  const H = layers * rowH + 10;
  const pos = {};
  for (let layer = 0; layer < layers; layer++) {
    const row = g.nodes.filter((n) => n.layer === layer);
    // above the first row, each node sits over what it needs (fewer crossing edges)
    const needs = (id) => g.edges.filter((e) => e.from === id).map((e) => pos[e.to].x);
    const mean = (xs) => xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
    if (layer > 0) row.sort((a, b) => mean(needs(a.id)) - mean(needs(b.id)));
    row.forEach((n, i) => {
      pos[n.id] = {x: (W / (row.length + 1)) * (i + 1), y: H - 30 - layer * rowH};
    });
  }
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "what needs what"});
  const defs = svg("defs", {});
  const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
                                markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"});
  marker.append(svg("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a"}));
  defs.append(marker);
  root.append(defs);
  for (const e of g.edges) {
    const a = pos[e.from], b = pos[e.to];
    root.append(svg("line", {x1: a.x, y1: a.y + boxH / 2, x2: b.x, y2: b.y - boxH / 2,
                             stroke: "#57606a", "marker-end": "url(#arrow)"}));
  }
  for (const n of g.nodes) {
    const st = shownState(byService[n.id] || {state: "absent", service: n.id});
    const p = pos[n.id];
    const group = svg("g", {"data-service": n.id, "data-state": st});
    group.append(svg("rect", {x: p.x - boxW / 2, y: p.y - boxH / 2, width: boxW, height: boxH, rx: 6,
                              fill: FILL[st] || "#fff", stroke: STROKE[st] || "#57606a"}));
    group.append(svg("text", {x: p.x, y: p.y + 4, "text-anchor": "middle"}, n.id));
    group.append(svg("title", {}, `${n.id}: ${st}`));
    root.append(group);
  }
  q("#graph").replaceChildren(root);
}

// --- timing ---------------------------------------------------------------------------
function renderTiming() {
  const t = state.timing;
  const box = q("#timing");
  if (!t) return;
  const entries = Object.entries(t.services);
  const max = Math.max(0.001, ...entries.map(([, v]) => v || 0));
  const rows = entries.sort((a, b) => (a[1] ?? 1e9) - (b[1] ?? 1e9)).map(([name, secs]) => {
    const critical = t.critical_chain.includes(name);
    const bar = el("span", {class: "bar" + (critical ? " critical" : "")});
    bar.style.width = secs == null ? "0" : (100 * secs / max).toFixed(1) + "%";
    return el("div", {class: "timing-row", "data-service": name},
      el("span", {}, name), el("span", {}, bar),
      el("span", {}, secs == null ? (t.failed[name] ? "failed" : "-") : secs.toFixed(2) + " s"));
  });
  const when = t.finished_at ? new Date(t.finished_at * 1000).toLocaleString() : "?";
  box.replaceChildren(...rows, el("p", {class: "note"},
    `total ${t.total_seconds != null ? t.total_seconds.toFixed(2) : "?"} s, finished ${when}` +
    (t.started ? "" : " (nothing needed starting)") +
    (t.critical_chain.length ? `; critical chain: ${t.critical_chain.join(" ← ")}` : "")));
}

// --- logs -----------------------------------------------------------------------------
function logNode(entry) {
  return el("div", {"data-service": entry.service}, el("span", {class: "svc"}, entry.service.padEnd(11)), entry.line);
}

function renderLogs() {
  const only = q("#log-service").value;
  const pre = q("#logs");
  pre.replaceChildren(...logLines.filter((e) => !only || e.service === only).map(logNode));
  pre.scrollTop = pre.scrollHeight;
}

function addLog(entry) {
  logLines.push(entry);
  if (logLines.length > LOG_KEEP) logLines.shift();
  const only = q("#log-service").value;
  if (only && entry.service !== only) return;
  const pre = q("#logs");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(logNode(entry));
  while (pre.childElementCount > LOG_KEEP) pre.firstChild.remove();
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// --- stats and secrets ------------------------------------------------------------------
async function refreshStats() {
  try {
    const r = await api("/api/stats");
    if (!r.ok) return;
    const doc = await r.json();
    stats = Object.fromEntries(doc.services.map((s) => [s.service, s]));
    q("#stats-at").textContent = "sampled " + new Date(doc.at * 1000).toLocaleTimeString();
    if (state) renderServices();
  } catch (e) { /* the feed says what is wrong */ }
}

async function toggleSecrets() {
  const button = q("#show-secrets");
  const box = q("#secrets");
  if (secrets) {
    secrets = null;
    box.hidden = true;
    box.replaceChildren();
    button.textContent = "Show credentials";
  } else {
    const r = await api("/api/secrets");
    secrets = await r.json();
    box.replaceChildren(...Object.entries(secrets.logins).map(([name, login]) =>
      el("div", {class: "login"}, `${name} login: ${login.user} / ${login.password}`)));
    box.hidden = false;
    button.textContent = "Hide credentials";
  }
  if (state) renderServices();
}

// --- the feed ---------------------------------------------------------------------------
function setEngine(engine) {
  const badgeNode = q("#engine");
  const banner = q("#banner");
  if (engine.connected) {
    badgeNode.textContent = "engine: connected";
    badgeNode.className = "badge s-connected";
    banner.hidden = true;
  } else {
    badgeNode.textContent = "engine: lost";
    badgeNode.className = "badge s-lost";
    banner.textContent = `The Docker engine is unreachable (${engine.error}). ` +
      "The dashboard keeps trying and updates when it is back; what is shown below may be stale.";
    banner.hidden = false;
  }
}

function render() {
  q("#project").textContent = state.project;
  document.title = `devenv: ${state.project}`;
  const select = q("#log-service");
  if (select.options.length === 1) {
    for (const s of state.services) select.append(el("option", {value: s.service}, s.service));
  }
  renderServices();
  renderPorts();
  renderGraph();
  renderTiming();
  renderSnapshots();
  // how long the first view took from navigation start (bench/dashboard.py reads it)
  if (!performance.getEntriesByName("devenv:first-render").length) {
    performance.mark("devenv:first-render");
  }
}

function connect() {
  const link = q("#link");
  const source = new EventSource(`/api/events?token=${encodeURIComponent(TOKEN)}`);
  source.addEventListener("open", () => {
    link.textContent = "live";
    link.className = "badge s-live";
  });
  source.addEventListener("error", () => {
    link.textContent = "dashboard server unreachable, retrying…";
    link.className = "badge s-reconnecting";
  });
  source.addEventListener("snapshot", (ev) => {
    const data = JSON.parse(ev.data);
    setEngine(data.engine);
    if (data.state) { state = data.state; render(); }
  });
  source.addEventListener("logs", (ev) => {  // the backlog, after the snapshot
    logLines.length = 0;
    for (const entry of JSON.parse(ev.data).lines.slice(-LOG_KEEP)) logLines.push(entry);
    renderLogs();
  });
  source.addEventListener("state", (ev) => {
    state = JSON.parse(ev.data);
    setEngine(state.engine);
    render();
  });
  source.addEventListener("engine", (ev) => setEngine(JSON.parse(ev.data)));
  source.addEventListener("log", (ev) => addLog(JSON.parse(ev.data)));
  source.addEventListener("snapshots", (ev) => { snapshotDoc = JSON.parse(ev.data); renderSnapshots(); });
}

document.addEventListener("DOMContentLoaded", () => {
  q("#show-secrets").addEventListener("click", toggleSecrets);
  q("#refresh-stats").addEventListener("click", refreshStats);
  q("#log-service").addEventListener("change", renderLogs);
  q("#take-snapshot").addEventListener("click", takeSnapshot);
  loadSnapshots();
  connect();
  // a plain fetch answers sooner than the event stream opens: the first view from it
  api("/api/state").then((r) => r.ok ? r.json() : null).then((doc) => {
    if (doc && !state) { state = doc; setEngine(doc.engine); render(); }
  }).catch(() => {});
  refreshStats();
  setInterval(() => { if (!document.hidden) refreshStats(); }, 10000);
});
