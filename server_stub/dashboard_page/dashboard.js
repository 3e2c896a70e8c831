// The hub dashboard: polls GET /dashboard/state about once a second and redraws.
// Vanilla DOM, no dependencies; every value from the hub is set as text, never as HTML.
"use strict";

const STATE_URL = "/dashboard/state";
const POLL_MS = 1000;
const SVG_NS = "http://www.w3.org/2000/svg";
const OUTCOMES = { 0: "team A won", 1: "team B won", 2: "tie" };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m + "m " + (s % 60) + "s";
}

function clock(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function shortKey(hotkey) {
  return hotkey.length > 16 ? hotkey.slice(0, 8) + "…" + hotkey.slice(-6) : hotkey;
}

function odds(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(2);
}

function fillRows(table, rows, columns, emptyText) {
  const body = table.tBodies[0];
  const fresh = document.createElement("tbody");
  if (rows.length === 0) {
    const cell = el("td", emptyText, "empty");
    cell.colSpan = columns;
    fresh.appendChild(el("tr")).appendChild(cell);
  }
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) tr.appendChild(cell);
    fresh.appendChild(tr);
  }
  table.replaceChild(fresh, body);
}

function keyValues(id, entries) {
  const rows = entries.map(([k, v]) => [el("td", k), el("td", v)]);
  fillRows($(id), rows, 2, "none");
}

function counted(id, counts) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
  keyValues(id, entries);
}

function drawChart(perMinute) {
  const svg = $("chart");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const max = Math.max(1, ...perMinute.map((row) => row[1]));
  const width = 600 / perMinute.length;
  perMinute.forEach(([minute, total, accepted], i) => {
    for (const [value, cls] of [[total, "total"], [accepted, "accepted"]]) {
      if (!value) continue;
      const height = (value / max) * 116;
      const bar = document.createElementNS(SVG_NS, "rect");
      bar.setAttribute("x", (i * width + 0.5).toFixed(2));
      bar.setAttribute("width", Math.max(1, width - 1).toFixed(2));
      bar.setAttribute("y", (120 - height).toFixed(2));
      bar.setAttribute("height", height.toFixed(2));
      bar.setAttribute("class", cls);
      if (cls === "total") {
        const title = document.createElementNS(SVG_NS, "title");
        title.textContent = clock(minute * 1000).slice(11, 16) + " UTC: " + total +
          " predictions, " + accepted + " accepted";
        bar.appendChild(title);
      }
      svg.appendChild(bar);
    }
  });
  $("chart-max").textContent = "max " + max + "/min";
}

function render(state) {
  const now = state.now_ms;
  const status = $("status");
  status.textContent = state.hub.status;
  status.className = "pill " + (state.hub.status === "ok" ? "ok" : "bad");
  $("updated").textContent = "updated " + clock(now);

  $("miner-count").textContent = state.miners.total;
  const perMinute = state.predictions.per_minute;
  $("minute-count").textContent = perMinute.length ? perMinute[perMinute.length - 1][1] : 0;
  const byStatus = state.predictions.by_status;
  $("prediction-totals").textContent = (byStatus.accepted || 0) + " / " +
    (byStatus.rejected || 0) + " / " + (byStatus.duplicate || 0);
  $("game-count").textContent = state.games.total;
  $("stream").textContent = state.stream.epoch + " · " + state.stream.seq;
  $("uptime").textContent = duration(state.hub.uptime_s);
  drawChart(perMinute);

  const miners = state.miners.shown.map((m) => {
    const key = el("td"); key.appendChild(el("code", shortKey(m.hotkey))).title = m.hotkey;
    return [
      el("td", m.uid === null ? "–" : m.uid), key, el("td", m.address),
      el("td", clock(m.since_ms)),
      el("td", m.rtt_ms === null ? "–" : m.rtt_ms.toFixed(1) + " ms", "num"),
      el("td", m.accepted, "num"), el("td", m.rejected, m.rejected ? "num bad" : "num"),
      el("td", m.duplicate, "num"), el("td", ago(now - m.last_seen_ms)),
    ];
  });
  fillRows($("miners"), miners, 9, "no miner connected");
  $("miners-note").textContent = state.miners.total > state.miners.shown.length
    ? "(first " + state.miners.shown.length + " of " + state.miners.total + ")" : "";

  const games = state.games.shown.map((g) => [
    el("td", clock(g.kickoff_ms)), el("td", g.sport + " · " + g.league),
    el("td", g.a + " vs " + g.b), el("td", odds(g.odds[0]), "num"),
    el("td", odds(g.odds[2]), "num"), el("td", odds(g.odds[1]), "num"),
    el("td", OUTCOMES[g.outcome] || (!g.active ? "inactive"
      : g.kickoff_ms <= now ? "in play" : "open")),
  ]);
  fillRows($("games"), games, 7, "no games");
  $("games-note").textContent = state.games.total > state.games.shown.length
    ? "(first " + state.games.shown.length + " of " + state.games.total + ")" : "";

  counted("errors", state.errors);
  counted("rejections", state.rejections);
  counted("refusals", state.refusals);
  counted("closes", state.closes);
  keyValues("stream-state", [["epoch", state.stream.epoch], ["seq", state.stream.seq],
    ["games", state.stream.games], ["broadcasts", state.stream.broadcasts]]);
  keyValues("store-state", [["commits", state.store.commits],
    ["committed operations", state.store.committed_ops], ["queued", state.store.queued]]);
  const c = state.connections;
  keyValues("connections", [["open", c.active], ["accepted since start", c.total],
    ["closing", c.closing], ["registered miners", c.registered === null ? "any" : c.registered]]);
  const inbound = Object.entries(state.messages.in).sort((a, b) => b[1] - a[1])
    .map(([type, n]) => ["in: " + type, n]);
  keyValues("messages", inbound.concat([["out", state.messages.out]]));
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function poll() {
  try {
    const response = await fetch(STATE_URL, { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (error) {
    const status = $("status");
    status.textContent = "unreachable: " + error.message;
    status.className = "pill bad";
  }
  setTimeout(poll, POLL_MS);
}

poll();
