// callshield dashboard: plain JavaScript, no build step. Every value from the API is shown with
// textContent (never as HTML): caller numbers, names and notes come from attackers.
"use strict";

const TOKEN_KEY = "callshield-token";
const ACTIONS = ["connect", "screen", "block"];
const COLORS = { connect: "#2e8540", screen: "#c98a00", block: "#c62828" };
const LIVE_EVERY = 3000;
const TABLES_EVERY = 5000;
const SLOW_EVERY = 15000;
const SAMPLES = 60;

const $ = (id) => document.getElementById(id);
const state = { timers: [], last: null, series: [], pending: null };

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1/" + path, Object.assign({}, options, { headers, cache: "no-store" }));
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401) throw new Unauthorized((data && data.error) || "unauthorized");
  if (!response.ok) {
    const field = data && data.field ? " (" + data.field + ")" : "";
    throw new Error(((data && data.error) || response.statusText) + field);
  }
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function fill(tableId, rows, empty) {
  const body = $(tableId).tBodies[0];
  const colspan = $(tableId).tHead.rows[0].cells.length;
  if (!rows.length) {
    const td = el("td", empty || "none", "muted");
    td.colSpan = colspan;
    body.replaceChildren(row([td]));
    return;
  }
  body.replaceChildren(...rows);
}

function numCell(value) { return el("td", value, "num"); }

function time(ts) {
  if (ts === null || ts === undefined) return "-";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + (Date.now() - d > 86400000 ? " " + d.toLocaleDateString() : "");
}

function toast(message) {
  const t = $("toast");
  t.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.textContent = ""; }, 6000);
}

function setStatus(text) { $("status").textContent = text; }

// --- sign in -------------------------------------------------------------------------------------

function showLogin(message) {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  sessionStorage.removeItem(TOKEN_KEY);
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api("live");
  } catch (err) {
    showLogin(err instanceof Unauthorized ? "That token was refused." : "Cannot reach the API: " + err.message);
    return;
  }
  start();
}

function start() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  state.last = null;
  state.series = [];
  const guard = (fn) => () => fn().catch(handleError);
  const live = guard(refreshLive), tables = guard(refreshTables), slow = guard(refreshSlow);
  live(); tables(); slow();
  state.timers = [setInterval(live, LIVE_EVERY), setInterval(tables, TABLES_EVERY), setInterval(slow, SLOW_EVERY)];
}

function handleError(err) {
  if (err instanceof Unauthorized) { showLogin("The token is no longer accepted: sign in again."); return; }
  setStatus("error: " + err.message);
}

// --- live rate chart -----------------------------------------------------------------------------

async function refreshLive() {
  const live = await api("live");
  $("node").textContent = "node " + live.node;
  if (state.last) {
    const seconds = Math.max(0.001, live.at - state.last.at);
    const sample = {};
    for (const a of ACTIONS) sample[a] = Math.max(0, (live.decisions[a] - state.last.decisions[a]) / seconds);
    state.series.push(sample);
    if (state.series.length > SAMPLES) state.series.shift();
  }
  state.last = live;
  drawChart();
  setStatus("updated " + time(live.at));
}

function drawChart() {
  const canvas = $("rate-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 900, height = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const series = state.series;
  let max = 1;
  for (const s of series) for (const a of ACTIONS) max = Math.max(max, s[a]);
  const left = 40, bottom = height - 18, top = 8, right = width - 8;
  ctx.strokeStyle = "#dde1e7"; ctx.fillStyle = "#6b7380"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - top) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.fillText((max * i / 4).toFixed(max < 4 ? 2 : 0), 4, y + 4);
  }
  const step = (right - left) / (SAMPLES - 1);
  for (const a of ACTIONS) {
    ctx.strokeStyle = COLORS[a]; ctx.lineWidth = 2; ctx.beginPath();
    series.forEach((s, i) => {
      const x = left + step * (SAMPLES - series.length + i), y = bottom - (bottom - top) * s[a] / max;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = COLORS[a];
    series.forEach((s, i) => {
      const x = left + step * (SAMPLES - series.length + i), y = bottom - (bottom - top) * s[a] / max;
      ctx.fillRect(x - 2, y - 2, 4, 4);
    });
  }
  canvas.dataset.samples = String(series.length);
  const latest = series[series.length - 1];
  const items = ACTIONS.map((a) => {
    const li = el("li");
    li.append(el("span", null, "swatch " + a), el("span", a + " " + (latest ? latest[a].toFixed(1) : "-") + "/s"));
    return li;
  });
  $("rate-legend").replaceChildren(...items);
}

// --- tables --------------------------------------------------------------------------------------

function filters() {
  const params = new URLSearchParams({ limit: "50" });
  const number = $("filter-number").value.trim();
  const action = $("filter-action").value;
  if (number) params.set("number", number);
  if (action) params.set("action", action);
  return params;
}

function reasonsCell(decision) {
  const td = el("td", null, "reasons");
  const list = el("ul");
  const reasons = decision.reasons.length ? decision.reasons : [{ code: decision.reason, points: 0, detail: "" }];
  for (const r of reasons) {
    const li = el("li", r.code + (r.points ? " (" + (r.points > 0 ? "+" : "") + Math.round(r.points) + ")" : ""));
    li.className = "reason";
    if (r.detail) li.title = r.detail;
    list.append(li);
  }
  td.append(list);
  return td;
}

function buttonsCell(caller) {
  const td = el("td", null, "buttons");
  const allow = el("button", "Allow everywhere", "allow");
  allow.type = "button";
  allow.dataset.caller = caller;
  allow.dataset.action = "allow";
  const block = el("button", "Block", "block");
  block.type = "button";
  block.dataset.caller = caller;
  block.dataset.action = "deny";
  td.append(allow, block);
  return td;
}

async function refreshTables() {
  const [decisions, stats] = await Promise.all([api("decisions?" + filters()), api("stats?since=1h&top=10")]);
  fill("decisions", decisions.decisions.map((d) => {
    const tr = row([
      el("td", time(d.ts)),
      el("td", d.caller, "mono caller"),
      el("td", d.callee, "mono"),
      (() => { const td = el("td"); td.append(el("span", d.action, "badge " + (ACTIONS.includes(d.action) ? d.action : ""))); return td; })(),
      numCell(d.score),
      reasonsCell(d),
      buttonsCell(d.caller),
    ]);
    tr.dataset.id = d.id;
    tr.dataset.caller = d.caller;
    return tr;
  }), "no decisions yet");
  fill("top-blocked", stats.top_blocked.map((t) => row([el("td", t.caller, "mono"), numCell(t.blocks)])), "no blocks");
  fill("top-ranges", stats.top_ranges.map((t) => row([el("td", t.prefix, "mono"), numCell(t.blocks), numCell(t.callers)])), "no blocks");
  fill("top-reasons", Object.entries(stats.reasons).map(([reason, n]) => row([el("td", reason, "mono"), numCell(n)])), "none");
}

async function refreshSlow() {
  const [mesh, actions] = await Promise.all([api("mesh"), api("admin-actions?limit=20")]);
  let text;
  if (!mesh.enabled) text = "The mesh is off on this node.";
  else text = (mesh.cluster || "") + "/" + (mesh.node || "") + ": " + (mesh.connected ? "connected" : "not connected") + ", outbox " + mesh.outbox;
  $("mesh-state").textContent = text;
  const peers = Array.isArray(mesh.peers) ? mesh.peers : [];
  fill("mesh-peers", peers.map((p) => row([el("td", p.node, "mono"), el("td", time(p.last_seen)), numCell(Number(p.lag).toFixed(1)), numCell(p.accepted)])), "no peers");
  fill("admin-actions", actions.actions.map((a) => row([
    el("td", time(a.ts)), el("td", a.actor), el("td", a.action), el("td", a.target, "mono"), el("td", a.status + " " + a.result),
  ])), "none yet");
}

// --- one-click allow / block, with confirmation -------------------------------------------------

function askConfirm(event) {
  const button = event.target.closest("button[data-caller]");
  if (!button) return;
  const caller = button.dataset.caller, action = button.dataset.action;
  state.pending = { caller, action };
  $("confirm-text").textContent = action === "deny"
    ? "Block every call from " + caller + " on this node?"
    : "Allow " + caller + " everywhere (every DID, no expiry)?";
  $("confirm-ok").textContent = action === "deny" ? "Block" : "Allow";
  $("confirm-note").value = "";
  $("confirm").showModal();
}

async function confirmed() {
  const dialog = $("confirm");
  const pending = state.pending;
  state.pending = null;
  if (dialog.returnValue !== "ok" || !pending) return;
  const note = $("confirm-note").value.trim() || "dashboard";
  try {
    const entry = await api("lists", { method: "POST", body: JSON.stringify({ action: pending.action, pattern: pending.caller, note }) });
    toast((pending.action === "deny" ? "Blocked " : "Allowed ") + entry.pattern + " (" + entry.source + ")");
    refreshSlow().catch(handleError);
  } catch (err) {
    handleError(err);
    if (!(err instanceof Unauthorized)) toast("Failed: " + err.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => showLogin(""));
  $("decisions").addEventListener("click", askConfirm);
  $("confirm").addEventListener("close", confirmed);
  $("filter-form").addEventListener("submit", (event) => { event.preventDefault(); refreshTables().catch(handleError); });
  if (sessionStorage.getItem(TOKEN_KEY)) start(); else showLogin("");
});
