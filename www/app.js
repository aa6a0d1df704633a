// Polls /status and redraws the slot table and counters.
// One request at a time: the next starts only after the previous finished,
// so a slow link never piles requests into the server's few slots.
"use strict";

const $ = (id) => document.getElementById(id);
let period = 250;
let timer = null;
let inflight = false;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function stateClass(state) {
  return "state state-" + String(state).replace(/[^a-z-]/g, "");
}

function drawSlots(slots) {
  const body = $("slots").tBodies[0];
  body.replaceChildren();
  for (const s of slots) {
    const row = body.insertRow();
    if (s.state === "free") row.className = "free";
    const free = s.state === "free";
    cell(row, s.index);
    cell(row, s.state, stateClass(s.state));
    cell(row, free ? "" : s.protocol);
    cell(row, s.local || "");
    cell(row, s.remote || "");
    cell(row, free ? "" : s.readable ?? "", "num");
    cell(row, free ? "" : s.write_space ?? "", "num");
    cell(row, s.error || (s.last_error ? s.last_error : ""));
  }
}

function drawCounters(counters) {
  const dl = $("counters");
  dl.replaceChildren();
  for (const [name, value] of Object.entries(counters)) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name.replace(/_/g, " ");
    dd.textContent = value;
    div.append(dt, dd);
    dl.append(div);
  }
}

function formatUptime(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}h ${String(m).padStart(2, "0")}m ${String(s % 60).padStart(2, "0")}s`;
}

function setLink(up, text) {
  const el = $("link");
  el.textContent = text;
  el.className = "link " + (up ? "up" : "down");
}

async function refresh() {
  timer = null;
  inflight = true;
  try {
    const res = await fetch("/status", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const st = await res.json();
    drawSlots(st.slots || []);
    drawCounters(st.counters || {});
    const busy = (st.slots || []).filter((s) => s.state !== "free").length;
    $("meta").textContent =
      `${busy}/${(st.slots || []).length} slots in use · up ${formatUptime(st.uptime_ms || 0)}` +
      (st.backend ? ` · ${st.backend}` : "");
    setLink(true, "live");
  } catch (e) {
    setLink(false, "no answer (" + e.message + ")");
  }
  inflight = false;
  schedule();
}

function schedule() {
  if (timer === null && !inflight && period > 0) timer = setTimeout(refresh, period);
}

$("period").addEventListener("change", (ev) => {
  period = Number(ev.target.value);
  if (timer !== null) {
    clearTimeout(timer);
    timer = null;
  }
  schedule();
});

refresh();
