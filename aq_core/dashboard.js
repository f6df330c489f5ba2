"use strict";
// aq dashboard: polls /api/state (and /api/job/<id> while a job is open) and rebuilds the page with
// textContent and createElement only, so nothing a job record holds is ever parsed as markup.
const SECTIONS = [["building", "running"], ["inbox", "waiting"], ["failed", "failed"], ["done", "done"]];
const LIMIT = 300;
const SVGNS = "http://www.w3.org/2000/svg";
const RESULT_CLASS = {ok: "s0", crash: "s1", timeout: "s2", verify_failed: "s3"};
// A dashboard started with a token is opened as /?token=...: every request of the page carries it.
const TOKEN = new URLSearchParams(location.search).get("token") || "";
let timer = null, inflight = false, lastOk = null, lastHistory = "", openJob = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function api(path) {
  const headers = {"Accept": "application/json"};
  if (TOKEN) headers["Authorization"] = "Bearer " + TOKEN;
  return fetch(path, {cache: "no-store", headers: headers});
}
function hms(date) {
  const p = (n) => String(n).padStart(2, "0");
  return p(date.getHours()) + ":" + p(date.getMinutes()) + ":" + p(date.getSeconds());
}
function resultClass(job) {
  const r = job.result || "";
  if (job.state === "building") return "r-run";
  if (r === "ok") return "r-ok";
  if (!r || r === "queued") return "";
  return job.state === "inbox" ? "r-wait" : "r-bad";
}
function openView(id) {
  location.hash = "job/" + encodeURIComponent(id);
}

// -- the lists --------------------------------------------------------------------------------------

function jobRow(job) {
  const tr = el("tr");
  tr.dataset.job = job.id;
  tr.tabIndex = 0;
  tr.title = "open " + job.id;
  tr.addEventListener("click", () => openView(job.id));
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openView(job.id); });
  const d = job.display || {};
  tr.append(
    el("td", job.id, "id"),
    el("td", job.engine || ""),
    el("td", job.attempts || 0, "num"),
    el("td", job.state === "building" ? "running" : (job.result || ""), resultClass(job)),
    el("td", job.lock || "", "lock"),
    el("td", d.next || "", "next"),
    el("td", d.insights || "", "insights"),
  );
  if (job.error) tr.lastChild.title = job.error;  // the full error; the column shows its start
  return tr;
}
function fill(tbody, rows, cols, empty, more) {
  const fresh = el("tbody");
  for (const r of rows) fresh.append(r);
  for (const text of [rows.length ? "" : empty, more]) {
    if (!text) continue;
    const td = el("td", text, "empty");
    td.colSpan = cols;
    const tr = el("tr");
    tr.append(td);
    fresh.append(tr);
  }
  tbody.replaceWith(fresh);
}
function render(state) {
  const by = {building: [], inbox: [], failed: [], done: []};
  for (const job of state.jobs || []) (by[job.state] || (by[job.state] = [])).push(job);
  for (const st of ["failed", "done"]) by[st].sort((a, b) => (b.finished || 0) - (a.finished || 0));
  const chips = [];
  for (const [st, name] of SECTIONS) {
    const jobs = by[st];
    const section = document.getElementById(name);
    section.querySelector(".count").textContent = String(jobs.length);
    const extra = jobs.length > LIMIT ? "\u2026 and " + (jobs.length - LIMIT) + " more (aq status lists them all)" : "";
    fill(section.querySelector("tbody"), jobs.slice(0, LIMIT).map(jobRow), 7, "none", extra);
    const chip = el("span", null, "chip");
    chip.append(el("b", jobs.length), document.createTextNode(" " + name));
    chips.push(chip);
  }
  document.getElementById("summary").replaceChildren(...chips);
  const engines = state.engines || [];
  const rows = engines.map((e) => {
    const d = e.display || {};
    const tr = el("tr");
    tr.dataset.engine = e.engine;
    tr.append(
      el("td", e.engine, "id"),
      el("td", e.jobs, "num"),
      el("td", (e.succeeded || 0) + " ok / " + (e.failed || 0) + " failed", "num"),
      el("td", d.success || "", "num"),
      el("td", d.tokens || "", "num"),
      el("td", d.cost || "", "num"),
      el("td", d.avg_duration || "", "num"),
    );
    return tr;
  });
  fill(document.querySelector("#engines tbody"), rows, 7, "no finished jobs yet", "");
  const estimated = engines.some((e) => e.cost_estimated) || (state.jobs || []).some(
    (j) => (j.estimated || []).includes("cost_usd"));
  document.getElementById("estnote").hidden = !estimated;
  document.getElementById("root").textContent = state.root || "";
  const when = state.generated ? new Date(state.generated * 1000) : new Date();
  document.getElementById("updated").textContent = "updated " + hms(when);
  const history = JSON.stringify(state.history || {});
  if (history !== lastHistory) {  // redraw only on change: a tooltip being read stays put
    lastHistory = history;
    renderHistory(state.history || {days: [], results: {}, cost: {}, cost_estimated: []});
  }
}

// -- the last 14 days -------------------------------------------------------------------------------

function niceMax(v, whole) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of whole ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10]) if (m * p >= v) return Math.max(m * p, whole ? 2 : 0);
  return 10 * p;
}
function chart(host, days, series, fmt, whole, label) {
  const W = 560, H = 170, L = 48, R = 6, T = 8, B = 20;
  const totals = days.map((_, i) => series.reduce((s, x) => s + (x.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals), whole);
  const svg = svgEl("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": label});
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - T - B) * (1 - f);
    svg.append(svgEl("line", {x1: L, x2: W - R, y1: y, y2: y, class: "grid"}));
    const v = max * f;
    if (!whole || Number.isInteger(v)) svg.append(svgEl("text", {x: L - 6, y: y + 3, "text-anchor": "end", class: "axis"}, fmt(v)));
  }
  const slot = (W - L - R) / Math.max(1, days.length), bw = Math.max(4, slot * 0.64);
  days.forEach((day, i) => {
    let y = H - B;
    const x = L + slot * i + (slot - bw) / 2;
    for (const s of series) {
      const v = s.values[i] || 0;
      if (!v) continue;
      const h = (H - T - B) * v / max;
      y -= h;
      const bar = svgEl("rect", {x: x, y: y, width: bw, height: Math.max(h, 0.5), rx: 1.5, class: s.cls,
        "data-day": day, "data-series": s.name, "data-value": v});
      bar.append(svgEl("title", {}, day + " \u00b7 " + s.name + ": " + fmt(v)));
      svg.append(bar);
    }
    if ((days.length - 1 - i) % 2 === 0) {
      svg.append(svgEl("text", {x: x + bw / 2, y: H - 6, "text-anchor": "middle", class: "axis"}, day.slice(5)));
    }
  });
  if (!series.length) {
    svg.append(svgEl("text", {x: (L + W) / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, "nothing in the last 14 days"));
  }
  const legend = el("div", null, "legend");
  for (const s of series) {
    const item = el("span");
    item.append(el("i", null, s.cls), document.createTextNode(s.name + " " + fmt(s.values.reduce((a, b) => a + b, 0))));
    legend.append(item);
  }
  host.replaceChildren(svg, legend);
}
function renderHistory(h) {
  const results = Object.entries(h.results || {}).map(([name, values], i) => (
    {name: name, values: values, cls: RESULT_CLASS[name] || "s" + (4 + (i % 4))}));
  chart(document.getElementById("chart-results"), h.days || [], results, (v) => String(Math.round(v)), true,
    "jobs finished per day, by result");
  const est = new Set(h.cost_estimated || []);
  const cost = Object.entries(h.cost || {}).map(([name, values], i) => (
    {name: name + (est.has(name) ? "*" : ""), values: values, cls: "e" + (i % 6)}));
  chart(document.getElementById("chart-cost"), h.days || [], cost, (v) => "$" + v.toFixed(2), false,
    "cost per engine per day");
}

// -- one job ----------------------------------------------------------------------------------------

function section(id, title, ...children) {
  const s = el("section");
  s.id = id;
  const h = el("h2", title);
  s.append(h, ...children);
  return s;
}
function table(head, rows, cls) {
  const t = el("table", null, cls || "");
  if (head) {
    const tr = el("tr");
    for (const name of head) tr.append(el("th", name));
    const thead = el("thead");
    thead.append(tr);
    t.append(thead);
  }
  const body = el("tbody");
  for (const cells of rows) {
    const tr = el("tr");
    for (const c of cells) tr.append(c !== null && typeof c === "object" ? el("td", c.text, c.cls) : el("td", c));
    body.append(tr);
  }
  t.append(body);
  const wrap = el("div", null, "table");
  wrap.append(t);
  return wrap;
}
function renderDetail(d) {
  const job = d.job;
  const view = document.getElementById("detail");
  const back = el("a", "\u2190 all jobs", "back");
  back.href = "#";
  const title = el("div", null, "title");
  const state = job.state === "building" ? "running" : job.state;
  title.append(el("h2", job.id), el("span", state + (job.result && job.result !== "running" ? " \u00b7 " + job.result : ""),
    "badge " + resultClass(job)));
  const work = [];
  if (d.work) work.push(["branch", d.work.branch || ""], ["commits", d.work.range]);
  const workBox = [table(null, work, "kv")];
  if (d.diffstat !== null && d.diffstat !== undefined) workBox.push(el("pre", d.diffstat || "(no changes)", "diffstat"));
  if (d.work_note) workBox.push(el("p", d.work_note, "note"));
  const grid = el("div", null, "grid2");
  grid.append(section("figures", "Figures", table(null, d.figures || [], "kv")), section("work", "Work", ...workBox));
  const runs = (d.runs || []).map((r) => [r.attempt, r.engine, r.model,
    {text: r.result, cls: r.result === "ok" ? "r-ok" : r.result === "running" ? "r-run" : "r-bad"},
    r.exit, r.duration, r.tokens, r.cost, r.changes, r.detail]);
  const parts = [back, title, grid,
    section("attempts", "Attempts", table(["#", "Engine", "Model", "Result", "Exit", "Duration", "Tokens", "Cost", "Lines", "Detail"], runs))];
  if (d.failure) {
    const box = el("div", null, "failure");
    box.append(el("b", d.failure["class"]));
    if (d.failure.last_failure) box.append(document.createTextNode(" (last failure: " + d.failure.last_failure + ")"));
    if (d.failure.failed_dependency) box.append(document.createTextNode(" (its dependency " + d.failure.failed_dependency + " failed)"));
    if (d.failure.detail) box.append(document.createTextNode(": " + d.failure.detail));
    parts.push(section("failure", "Failure", box));
  }
  const pr = el("div", null, "pr");
  if (d.pr_url) {
    const a = el("a", d.pr_url);
    a.href = d.pr_url;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    pr.append(a);
  } else if (d.pr_error) {
    pr.append(el("span", "not opened: " + d.pr_error, "r-bad"));
  } else {
    pr.append(el("span", d.pr_requested ? "asked for (" + d.pr_requested + "), not opened yet" :
      "none (aq pr " + job.id + " opens one)", "muted"));
  }
  parts.push(section("pr", "Pull request", pr));
  view.replaceChildren(...parts);
  document.title = job.id + " \u00b7 aq dashboard";
}
function renderMissing(id) {
  const back = el("a", "\u2190 all jobs", "back");
  back.href = "#";
  document.getElementById("detail").replaceChildren(back, el("p", "no job " + id + " in this queue", "note"));
}
function route() {
  const m = location.hash.match(/^#job\/(.+)$/);
  openJob = m ? decodeURIComponent(m[1]) : null;
  document.getElementById("list").hidden = openJob !== null;
  document.getElementById("detail").hidden = openJob === null;
  if (openJob === null) document.title = "aq dashboard";
  else document.getElementById("detail").replaceChildren(el("p", "loading " + openJob + "\u2026", "note"));
  window.scrollTo(0, 0);
}

// -- the live-update loop ---------------------------------------------------------------------------

function setLost(lost, why) {
  document.body.classList.toggle("stale", lost);
  const note = document.getElementById("lost");
  note.hidden = !lost;
  if (lost) note.textContent = "connection lost (" + why + "), retrying" +
    (lastOk ? "; showing " + hms(lastOk) : "");
}
function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(tick, ms);
}
async function tick() {
  if (inflight) return;
  inflight = true;
  try {
    const resp = await api("/api/state");
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    const id = openJob;
    if (id !== null) {
      const one = await api("/api/job/" + encodeURIComponent(id));
      if (one.status === 404) renderMissing(id);
      else if (!one.ok) throw new Error("HTTP " + one.status);
      else if (id === openJob) renderDetail(await one.json());
    }
    lastOk = new Date();
    setLost(false);
  } catch (err) {
    setLost(true, err && err.message ? err.message : "error");
  } finally {
    inflight = false;
    schedule(document.hidden ? 5000 : REFRESH_MS);
  }
}
document.addEventListener("visibilitychange", () => { if (!document.hidden && !inflight) schedule(0); });
window.addEventListener("hashchange", () => { route(); schedule(0); });
route();
tick();
