// The status page: polls /status and draws the slot table, the counters, the
// poll-pass histogram and a 60 s chart of slot occupancy by state.
//
// The page is itself one of the polling clients the server is built for, so
// it keeps to one request at a time: the next starts only after the previous
// one finished (or timed out), never on a fixed clock, and a slow link cannot
// pile requests into the server's few slots.
"use strict";

const $ = (id) => document.getElementById(id);

// Every state the core reports, in the order they are stacked in the chart
// (bottom first). Their colours come from the stylesheet (--st-<name>), so
// the table, the legend and the chart agree.
const STATES = ["connected", "other-end-closed", "close-pending", "connecting", "allocated", "aborted"];
const WINDOW_MS = 60000;
const TIMEOUT_MS = 3000;

let period = 250;
let timer = null;
let inflight = false;
let refreshes = 0;          // successful redraws, for the page test
let prev = null;            // {t, accepted, requests} of the previous answer
const samples = [];         // {t, counts: {state: n}, total} over the last WINDOW_MS
let slotTotal = 8;

// ---- formatting --------------------------------------------------------

const nf = new Intl.NumberFormat("en-US");
const fmtInt = (n) => (typeof n === "number" ? nf.format(n) : "–");

function fmtUs(us) {
  if (typeof us !== "number") return "–";
  if (us < 1000) return us + " µs";
  if (us % 1000 === 0 && us < 1e6) return us / 1000 + " ms";
  if (us < 1e6) return (us / 1000).toFixed(us < 10000 ? 2 : 1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function fmtRate(r) {
  if (r === null || !isFinite(r)) return "–";
  return r < 10 ? r.toFixed(1) : nf.format(Math.round(r));
}

function fmtUptime(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}h ${String(m).padStart(2, "0")}m ${String(s % 60).padStart(2, "0")}s`;
}

function stateColour(state) {
  const v = getComputedStyle(document.documentElement).getPropertyValue("--st-" + state).trim();
  return v || "#888";
}

// ---- slot table --------------------------------------------------------

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function drawSlots(slots) {
  const body = $("slots").tBodies[0];
  // Rows are reused: rebuilding them several times a second would make the
  // text flicker under a selection and cost the browser for nothing.
  while (body.rows.length > slots.length) body.deleteRow(-1);
  while (body.rows.length < slots.length) {
    const row = body.insertRow();
    for (let i = 0; i < 8; i++) row.insertCell();
    row.cells[0].className = "num idx";
    row.cells[1].innerHTML = '<span class="badge"></span>';
    row.cells[2].className = "addr";
    row.cells[3].className = "addr";
    row.cells[4].className = "num";
    row.cells[5].className = "num";
    row.cells[6].className = "num";
    row.cells[7].className = "err";
  }
  slots.forEach((s, i) => {
    const row = body.rows[i];
    const free = s.state === "free";
    const safe = String(s.state).replace(/[^a-z-]/g, "");
    row.className = free ? "free" : "busy";
    row.dataset.state = s.state;
    const c = row.cells;
    c[0].textContent = s.index;
    const badge = c[1].firstChild;
    badge.textContent = s.state;
    badge.className = "badge state-" + safe;
    c[2].textContent = s.remote || "";
    c[3].textContent = s.local || "";
    c[4].textContent = free ? "" : fmtInt(s.readable);
    c[5].textContent = free ? "" : fmtInt(s.write_space);
    c[6].textContent = free ? "" : s.protocol ?? "";
    c[7].textContent = s.error || "";
    c[7].title = s.error || "";
  });
}

// ---- counters ----------------------------------------------------------

// Groups and labels for the counters the core has today; any counter not
// listed here still shows, under "other", so a new one is never hidden.
const GROUPS = [
  ["accept", [
    ["accepted", "accepted"], ["rejected", "rejected"],
    ["backlog_now", "waiting now"], ["backlog_peak", "waiting, peak"],
    ["emfile_events", "out of descriptors"], ["accept_errors", "accept errors"]]],
  ["connect", [
    ["connects", "connects"], ["connect_retries", "retries"],
    ["connect_failures", "failures"]]],
  ["close", [
    ["closed_graceful", "closed, delivered"], ["closed_peer", "closed, peer gone"],
    ["closed_timeout", "closed, timed out"], ["reset_by_peer", "reset by peer"],
    ["peer_closed", "peer closed first"], ["idle_timeouts", "idle timeouts"],
    ["terminated", "terminated"], ["aborted", "aborted"]]],
  ["loop", [
    ["poll_passes", "poll passes"], ["longest_poll_us", "longest poll pass"],
    ["longest_close_us", "longest close call"], ["write_retryable", "writes to retry"],
    ["releases", "releases"], ["releases_forced", "forced releases"]]],
];
// Counters that are worth a look whenever they are not zero.
const WARN = new Set(["rejected", "closed_timeout", "aborted", "connect_failures",
                      "emfile_events", "accept_errors", "releases_forced"]);

const counterCells = new Map(); // name -> dd

function buildCounters(counters) {
  const root = $("counters");
  root.replaceChildren();
  counterCells.clear();
  const known = new Set();
  const groups = GROUPS.map(([title, list]) => {
    list.forEach(([k]) => known.add(k));
    return [title, list.filter(([k]) => k in counters)];
  });
  const other = Object.keys(counters).filter((k) => !known.has(k)).map((k) => [k, k.replace(/_/g, " ")]);
  if (other.length) groups.push(["other", other]);
  for (const [title, list] of groups) {
    if (!list.length) continue;
    const box = document.createElement("div");
    box.className = "group";
    const h = document.createElement("h3");
    h.textContent = title;
    const dl = document.createElement("dl");
    for (const [key, label] of list) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dt.title = key;
      dd.dataset.counter = key;
      dl.append(dt, dd);
      counterCells.set(key, dd);
    }
    box.append(h, dl);
    root.append(box);
  }
}

function drawCounters(counters) {
  const keys = Object.keys(counters);
  if (keys.length !== counterCells.size || keys.some((k) => !counterCells.has(k)))
    buildCounters(counters);
  for (const [key, dd] of counterCells) {
    const v = counters[key];
    const text = key.endsWith("_us") ? fmtUs(v) : fmtInt(v);
    if (dd.textContent !== text) {
      // Only counters worth a look flash on a change: under load the others
      // change on every refresh, and a page that always flashes says nothing.
      if (dd.textContent !== "" && WARN.has(key)) {
        // a brief highlight on a change; restarting the animation needs a reflow
        dd.classList.remove("changed");
        void dd.offsetWidth;
        dd.classList.add("changed");
      }
      dd.textContent = text;
    }
    dd.classList.toggle("warn", WARN.has(key) && v > 0);
  }
}

// ---- poll-pass histogram -------------------------------------------------

function drawHist(hist) {
  const body = $("hist").tBodies[0];
  const total = hist.reduce((a, b) => a + (b.passes || 0), 0);
  $("hist-total").textContent = total ? `${fmtInt(total)} passes` : "";
  while (body.rows.length > hist.length) body.deleteRow(-1);
  while (body.rows.length < hist.length) {
    const row = body.insertRow();
    row.insertCell().className = "bucket";
    row.insertCell().innerHTML = '<div class="bar-track"><div class="bar"></div></div>';
    row.insertCell().className = "num count";
    row.insertCell().className = "num share";
  }
  let lower = 0;
  hist.forEach((b, i) => {
    const row = body.rows[i];
    const n = b.passes || 0;
    const share = total ? n / total : 0;
    row.cells[0].textContent = b.le_us === null ? `> ${fmtUs(lower)}` : `≤ ${fmtUs(b.le_us)}`;
    // Passes over 1 ms miss the core's target: they are drawn in the alert colour.
    row.classList.toggle("slow", b.le_us === null || b.le_us > 1000);
    row.classList.toggle("empty", n === 0);
    const bar = row.cells[1].firstChild.firstChild;
    // a bucket that holds anything is at least visible
    bar.style.width = n ? `max(2px, ${(share * 100).toFixed(2)}%)` : "0";
    row.cells[2].textContent = fmtInt(n);
    row.cells[3].textContent = total ? (share * 100 < 0.1 && n ? "<0.1%" : (share * 100).toFixed(1) + "%") : "";
    if (b.le_us !== null) lower = b.le_us;
  });
}

// ---- occupancy chart ---------------------------------------------------

function buildLegend() {
  const ul = $("legend");
  for (const st of ["free", ...STATES]) {
    const li = document.createElement("li");
    li.innerHTML = '<span class="swatch"></span><span class="name"></span> <span class="n"></span>';
    li.dataset.state = st;
    li.querySelector(".swatch").style.background = stateColour(st);
    li.querySelector(".name").textContent = st;
    ul.append(li);
  }
}

function drawLegend(counts, free) {
  for (const li of $("legend").children) {
    const st = li.dataset.state;
    const n = st === "free" ? free : counts[st] || 0;
    li.querySelector(".n").textContent = n;
    li.classList.toggle("zero", n === 0);
  }
}

function drawChart() {
  const canvas = $("chart");
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const css = getComputedStyle(document.documentElement);
  const muted = css.getPropertyValue("--muted").trim() || "#666";
  const grid = css.getPropertyValue("--line").trim() || "#ddd";
  const font = "11px " + (css.getPropertyValue("--sans").trim() || "sans-serif");

  const pad = { l: 26, r: 8, t: 8, b: 20 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const now = performance.now();
  const t0 = now - WINDOW_MS;
  const x = (t) => pad.l + ((t - t0) / WINDOW_MS) * pw;
  const y = (n) => pad.t + ph - (n / slotTotal) * ph;

  // grid: one line per slot (or fewer when there are many), ticks every 10 s
  ctx.font = font;
  ctx.lineWidth = 1;
  ctx.fillStyle = muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const step = slotTotal <= 8 ? 1 : slotTotal <= 16 ? 2 : 4;
  for (let n = 0; n <= slotTotal; n += step) {
    const yy = Math.round(y(n)) + 0.5;
    ctx.strokeStyle = grid;
    ctx.beginPath();
    ctx.moveTo(pad.l, yy);
    ctx.lineTo(pad.l + pw, yy);
    ctx.stroke();
    ctx.fillText(String(n), pad.l - 6, yy);
  }
  ctx.textBaseline = "top";
  for (let s = 60; s >= 0; s -= 10) {
    const xx = Math.round(x(now - s * 1000)) + 0.5;
    ctx.strokeStyle = grid;
    ctx.beginPath();
    ctx.moveTo(xx, pad.t + ph);
    ctx.lineTo(xx, pad.t + ph + 4);
    ctx.stroke();
    ctx.textAlign = s === 60 ? "left" : s === 0 ? "right" : "center";
    ctx.fillText(s === 0 ? "now" : `−${s} s`, xx, pad.t + ph + 6);
  }

  // Stacked step areas: a sample's counts hold until the next sample. A gap
  // longer than a few periods (no answer, or paused) is left empty.
  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.l, pad.t, pw, ph + 0.5);
  ctx.clip();
  const maxGap = Math.max(3 * period, 1500);
  const runs = [];
  let run = [];
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    const next = samples[i + 1];
    let end = next ? next.t : now;
    if (end - s.t > maxGap) end = s.t + Math.min(end - s.t, period || 250);
    run.push({ t: s.t, end, counts: s.counts });
    if (!next || next.t - s.t > maxGap) {
      runs.push(run);
      run = [];
    }
  }
  for (const r of runs) {
    const below = r.map(() => 0);
    for (const st of STATES) {
      const top = r.map((p, i) => below[i] + (p.counts[st] || 0));
      if (top.some((v, i) => v !== below[i])) {
        ctx.fillStyle = stateColour(st);
        ctx.beginPath();
        ctx.moveTo(x(r[0].t), y(below[0]));
        r.forEach((p, i) => {
          ctx.lineTo(x(p.t), y(top[i]));
          ctx.lineTo(x(p.end), y(top[i]));
        });
        for (let i = r.length - 1; i >= 0; i--) {
          ctx.lineTo(x(r[i].end), y(below[i]));
          ctx.lineTo(x(r[i].t), y(below[i]));
        }
        ctx.closePath();
        ctx.fill();
      }
      top.forEach((v, i) => (below[i] = v));
    }
  }
  ctx.restore();

  // the plot's frame on top of the areas
  ctx.strokeStyle = muted;
  ctx.beginPath();
  ctx.moveTo(pad.l + 0.5, pad.t);
  ctx.lineTo(pad.l + 0.5, pad.t + ph + 0.5);
  ctx.lineTo(pad.l + pw, pad.t + ph + 0.5);
  ctx.stroke();
}

// ---- the poll loop -----------------------------------------------------

function setLink(how, text) {
  const el = $("link");
  el.textContent = text;
  el.className = "link " + how; // up, down or paused
}

function draw(st, t) {
  const slots = st.slots || [];
  const counters = st.counters || {};
  slotTotal = Math.max(1, slots.length);

  const counts = {};
  for (const s of slots) counts[s.state] = (counts[s.state] || 0) + 1;
  const free = counts.free || 0;
  const busy = slots.length - free;
  samples.push({ t, counts });
  while (samples.length > 1 && samples[1].t < t - WINDOW_MS) samples.shift();

  // rates from the previous answer; the server's uptime is the clock, so a
  // late answer does not inflate them
  let cps = null;
  let rps = null;
  const up = st.uptime_ms || 0;
  if (prev && up > prev.up && counters.accepted >= prev.accepted) {
    const dt = (up - prev.up) / 1000;
    cps = (counters.accepted - prev.accepted) / dt;
    if (typeof st.requests === "number" && st.requests >= prev.requests)
      rps = (st.requests - prev.requests) / dt;
  }
  // average over at least ~1 s so the figure does not jump at 10 Hz
  if (!prev || up - prev.up >= 1000 || up < prev.up)
    prev = { up, accepted: counters.accepted || 0, requests: st.requests || 0, cps, rps };
  else {
    cps = prev.cps ?? cps;
    rps = prev.rps ?? rps;
  }

  drawSlots(slots);
  drawCounters(counters);
  drawHist(st.poll_hist || []);
  drawLegend(counts, free);
  drawChart();

  $("slots-summary").textContent = `${busy} of ${slots.length} in use`;
  $("t-busy").textContent = `${busy} / ${slots.length}`;
  $("t-cps").textContent = fmtRate(cps);
  $("t-rps").textContent = fmtRate(rps);
  $("t-backlog").textContent = `${fmtInt(counters.backlog_now)} (${fmtInt(counters.backlog_peak)})`;
  $("t-poll").textContent = fmtUs(counters.longest_poll_us);
  $("t-close").textContent = fmtUs(counters.longest_close_us);
  $("t-poll").classList.toggle("warn", counters.longest_poll_us >= 1000);
  const turn = (st.loop || {}).longest_turn_us;
  $("t-turn").textContent = fmtUs(turn);
  $("t-turn").classList.toggle("warn", turn >= 1000);
  $("meta").textContent =
    `up ${fmtUptime(up)}` +
    (typeof st.requests === "number" ? ` · ${fmtInt(st.requests)} requests` : "") +
    (st.backend ? ` · ${st.backend}` : "");
}

async function refresh() {
  timer = null;
  inflight = true;
  const abort = new AbortController();
  const guard = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const res = await fetch("/status", { cache: "no-store", signal: abort.signal });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const st = await res.json();
    draw(st, performance.now());
    refreshes++;
    document.body.dataset.refreshes = String(refreshes);
    setLink(period > 0 ? "up" : "paused", period > 0 ? "live" : "paused");
  } catch (e) {
    setLink("down", "no answer (" + (e.name === "AbortError" ? "timed out" : e.message) + ")");
    drawChart(); // the gap shows as it grows
  } finally {
    clearTimeout(guard);
    inflight = false;
  }
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
  if (period === 0) setLink("paused", "paused");
  schedule();
});

// The longest loop turn (sn_poll and the server's own work after it) goes
// beside the longest poll pass: a turn can stall where a pass does not.
function addTurnTile() {
  const tile = document.createElement("div");
  tile.className = "tile";
  tile.innerHTML =
    '<span class="label">longest loop turn</span><span class="value" id="t-turn">–</span>';
  $("t-poll").parentElement.after(tile);
}

new ResizeObserver(() => drawChart()).observe($("chart"));
addTurnTile();
buildLegend();
refresh();
