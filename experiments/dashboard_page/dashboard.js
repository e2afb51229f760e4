// The planners' dashboard (experiments/dashboard.py): reads the JSON API, draws with plotly.js.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const state = { run: null, overview: null };

async function api(path) {
  const reply = await fetch(path);
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    throw new Error(body.detail || `${reply.status} ${reply.statusText}`);
  }
  return reply.json();
}

// a run id is a path of folders: each segment encoded (a # or ? in a folder name must not end the path)
function runPath(id) { return id.split("/").map(encodeURIComponent).join("/"); }

function say(text) { $("message").textContent = text || ""; }

function options(select, items, label = (x) => x, value = (x) => x) {
  select.replaceChildren(...items.map((item) => {
    const option = document.createElement("option");
    option.value = value(item);
    option.textContent = label(item);
    return option;
  }));
}

function checkboxes(fieldset, items, name) {
  fieldset.querySelectorAll("label").forEach((l) => l.remove());
  items.forEach((item, i) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = name;
    box.value = item;
    box.checked = i < 4;
    box.addEventListener("change", draw);
    label.append(box, " " + item);
    fieldset.append(label);
  });
}

function ticked(name) {
  return [...document.querySelectorAll(`input[name=${name}]:checked`)].map((b) => b.value);
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined) return "-";
  return Math.abs(x) >= 1000 ? x.toLocaleString("en", { maximumFractionDigits: 0 }) : Number(x.toPrecision(digits)).toString();
}

function table(element, header, rows, textColumns = 0) {
  const head = "<tr>" + header.map((h, i) => `<th class="${i < textColumns ? "text" : ""}">${escape(String(h))}</th>`).join("") + "</tr>";
  const body = rows.map((r) => "<tr>" + r.map((c, i) =>
    `<td class="${i < textColumns ? "text" : ""}">${escape(String(c))}</td>`).join("") + "</tr>").join("");
  element.innerHTML = head + (body || `<tr><td class="text" colspan="${header.length}">none</td></tr>`);
}

function escape(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function loadRuns() {
  const runs = await api("/api/runs");
  if (!runs.length) { say("No stress runs found: run python -m experiments.stress first."); return; }
  options($("run"), runs, (r) => `${r.id} (${r.network}, ${r.scenarios.length} scenarios x ${r.policies.length} policies)`, (r) => r.id);
  await loadRun(runs[0].id);
}

async function loadRun(id) {
  state.run = id;
  const o = state.overview = await api(`/api/runs/${runPath(id)}/overview`);
  $("run-info").textContent = `${o.network}, ${o.replications} replications per cell, service target ${(o.target * 100).toFixed(0)}%`;
  checkboxes($("scenarios"), o.scenarios, "scenario");
  checkboxes($("policies"), o.policies, "policy");
  options($("figure"), o.figures, (f) => f.label, (f) => f.name);
  options($("metric"), o.fan_metrics, (m) => m.label, (m) => m.name);
  options($("dc"), ["network", ...o.dcs], (d) => (d === "network" ? "network-wide" : d));
  table($("alerts"), ["from", "to (excl.)", "scenario", "policy", "alert"],
    o.alerts.map((a) => [a.start_date, a.end_date, a.scenario, a.policy || "all", a.message]), 5);
  $("replan-section").hidden = !o.replan_decisions.length;
  if (o.replan_decisions.length) {
    const cols = Object.keys(o.replan_decisions[0]);
    table($("replan"), cols, o.replan_decisions.map((r) => cols.map((c) => r[c])), 1);
  }
  await Promise.all([draw(), lostSales(), orders(o.orders)]);
}

let drawing = 0;  // the latest draw: an older one's answers, arriving late, are not drawn over it

async function draw() {
  const mine = ++drawing;
  say("");
  try {
    await Promise.all([comparison(mine), fans(mine), stores(mine)]);
  } catch (error) {
    say(error.message);
  }
}

async function comparison(mine) {
  const figure = $("figure").value;
  const meta = state.overview.figures.find((f) => f.name === figure);
  const scenarios = ticked("scenario"), policies = ticked("policy");
  const cells = (await api(`/api/runs/${runPath(state.run)}/summary?figure=${encodeURIComponent(figure)}`))
    .filter((c) => scenarios.includes(c.scenario) && policies.includes(c.policy));
  const traces = policies.map((policy, i) => {
    const mine = scenarios.map((s) => cells.find((c) => c.scenario === s && c.policy === policy) || {});
    return { type: "bar", name: policy, x: scenarios, y: mine.map((c) => c.mean ?? null),
      error_y: { type: "data", array: mine.map((c) => c.ci95 ?? 0), visible: true }, marker: { color: COLOURS[i % COLOURS.length] } };
  });
  if (mine !== drawing) return;
  await Plotly.react("comparison", traces, {
    barmode: "group", margin: { t: 30, r: 10 }, title: { text: `${meta.label} (mean, 95% CI)`, font: { size: 14 } },
    yaxis: { title: meta.label + (meta.higher_is_better ? " (higher is better)" : " (lower is better)") },
  }, { responsive: true, displaylogo: false });
  table($("comparison-table"), ["scenario", "policy", "mean", "95% CI", "vs baseline scenario", "vs reference policy"],
    cells.map((c) => [c.scenario, c.policy, fmt(c.mean), c.ci95 === null ? "-" : "± " + fmt(c.ci95, 2),
      c.vs_baseline === null ? "-" : `${fmt(c.vs_baseline)} ± ${fmt(c.vs_baseline_ci95, 2)}`,
      c.vs_reference === null ? "-" : `${fmt(c.vs_reference)} ± ${fmt(c.vs_reference_ci95, 2)}`]), 2);
}

async function fans(mine) {
  const metric = $("metric").value, dc = $("dc").value;
  const scenarios = ticked("scenario"), policies = ticked("policy");
  const cells = scenarios.flatMap((s) => policies.map((p) => [s, p]));
  const query = (s, p) => `scenario=${encodeURIComponent(s)}&policy=${encodeURIComponent(p)}&metric=${metric}` +
    (dc === "network" ? "" : `&dc=${encodeURIComponent(dc)}`);
  const fans = await Promise.all(cells.map(([s, p]) => api(`/api/runs/${runPath(state.run)}/fan?${query(s, p)}`)));
  const traces = [];
  fans.forEach((fan, i) => {
    const colour = COLOURS[i % COLOURS.length], name = `${cells[i][0]} / ${cells[i][1]}`;
    const q = (p) => fan.values[fan.percentiles.indexOf(p)];
    const band = (lo, hi, opacity) => [
      { x: fan.dates, y: q(lo), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: name },
      { x: fan.dates, y: q(hi), mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: hexToRgba(colour, opacity),
        hoverinfo: "skip", showlegend: false, legendgroup: name },
    ];
    traces.push(...band(5, 95, 0.12), ...band(25, 75, 0.25),
      { x: fan.dates, y: q(50), mode: "lines", name, line: { color: colour, width: 2 }, legendgroup: name });
  });
  const label = state.overview.fan_metrics.find((m) => m.name === metric).label;
  if (mine !== drawing) return;
  await Plotly.react("fans", traces, {
    margin: { t: 30, r: 10 }, title: { text: `${label}, ${dc === "network" ? "network-wide" : dc}`, font: { size: 14 } },
    yaxis: { title: label }, hovermode: "x unified",
  }, { responsive: true, displaylogo: false });
}

function hexToRgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

async function lostSales() {
  for (const by of ["dc", "region"]) {
    const rows = await api(`/api/runs/${runPath(state.run)}/lost?by=${by}`);
    table($(`lost-${by}`), ["scenario", "policy", by === "dc" ? "DC" : "region", "lost sales (mean)", "95% CI"],
      rows.map((r) => [r.scenario, r.policy, r.name, fmt(r.mean), r.ci95 === null ? "-" : "± " + fmt(r.ci95, 2)]), 3);
  }
}

async function stores(mine) {
  const query = [...ticked("scenario").map((s) => `scenario=${encodeURIComponent(s)}`),
    ...ticked("policy").map((p) => `policy=${encodeURIComponent(p)}`), "limit=20"].join("&");
  const rows = ticked("scenario").length && ticked("policy").length ?
    await api(`/api/runs/${runPath(state.run)}/stores?${query}`) : [];
  if (mine !== drawing) return;
  table($("stores"), ["scenario", "policy", "store", "home DC", "region", "lost sales (mean)", "95% CI", "fill rate (mean)", "95% CI"],
    rows.map((r) => [r.scenario, r.policy, r.store, r.home_dc || "-", r.region, fmt(r.lost_sales),
      r.lost_sales_ci95 === null ? "-" : "± " + fmt(r.lost_sales_ci95, 2), fmt(r.fill_rate),
      r.fill_rate_ci95 === null ? "-" : "± " + fmt(r.fill_rate_ci95, 2)]), 5);
}

async function orders(available) {
  $("orders-section").hidden = !available;
  if (!available) return;
  const o = await api("/api/orders");
  $("orders-info").textContent = `(bundle ${o.bundle}, as of ${o.as_of})`;
  table($("orders"), ["location", "SKU", "order", "level", "position", "document", "from", "need by", "reasons"],
    o.orders.map((d) => [d.location, d.sku, fmt(d.order_quantity), fmt(d.order_up_to_level), fmt(d.inventory_position),
      d.document, d.supplying_location, d.need_by_date, d.reasons.map((r) => r.code).join(", ")]), 2);
}

$("run").addEventListener("change", (e) => loadRun(e.target.value).catch((error) => say(error.message)));
["figure", "metric", "dc"].forEach((id) => $(id).addEventListener("change", draw));
loadRuns().catch((error) => say(error.message));
