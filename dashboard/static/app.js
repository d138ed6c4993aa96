// The Chargeback page: every view comes from /api/table, the query path of `chargeback export`.
// The page only formats what the API sends: sorting, filtering and rounding happen on the server.
"use strict";

const NAME = "Service Account";
const TOTAL = "Total";
const COLORS = ["#2456c7", "#e07b24", "#2a9d6f", "#c0392b", "#8e44ad", "#16a2b8", "#b8860b", "#d0598f"];
const OTHERS_COLOR = "#a8b0bd";
const params = new URLSearchParams(location.search);
const state = {
  tab: params.get("tab") || "cost",
  period: params.get("period") || (params.get("from") ? "custom" : "30D"),
  as_of: params.get("as_of") || "",
  from: params.get("from") || "",
  to: params.get("to") || "",
  bucket: params.get("bucket") || "day",
  filter: params.get("filter") || "",
  cluster: params.get("cluster") || "",
  sort: params.get("sort") || "",
};
let generation = 0;
let current = null; // the last table shown
let tokenRequired = false;

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function query() {
  const q = new URLSearchParams({ tab: state.tab });
  if (state.period === "custom") {
    q.set("from", state.from);
    q.set("to", state.to);
    q.set("bucket", state.bucket);
  } else {
    q.set("period", state.period);
    if (state.as_of) q.set("as_of", state.as_of);
  }
  if (state.filter) q.set("filter", state.filter);
  if (state.cluster) q.set("cluster", state.cluster);
  if (state.sort) q.set("sort", state.sort);
  return q.toString();
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.state = body.state;
    error.status = response.status;
    throw error;
  }
  return body;
}

// --- formatting --------------------------------------------------------------------------------

function unitsFor(unit) {
  return unit === "GiB"
    ? { base: 1024, names: ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] }
    : { base: 1000, names: ["B", "kB", "MB", "GB", "TB", "PB", "EB"] };
}

function bytesText(text, unit) {
  const { base, names } = unitsFor(unit);
  let value = Number(text);
  let i = 0;
  while (Math.abs(value) >= base && i < names.length - 1) { value /= base; i++; }
  return i === 0 ? `${value} B` : `${value.toFixed(2)} ${names[i]}`;
}

function moneyText(text) {
  const [whole, cents] = text.split(".");
  return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (cents === undefined ? "" : "." + cents);
}

// Money cells are plain numbers (the caption and the Total column carry the currency): one
// element less per cell keeps a 1,000-row table quick to lay out.
function cell(text, table, withCurrency) {
  if (table.kind === "money") return `<td>${moneyText(text)}${withCurrency ? " " + esc(table.currency) : ""}</td>`;
  return `<td title="${text} bytes">${bytesText(text, table.unit)}</td>`;
}

// --- loading -----------------------------------------------------------------------------------

async function load() {
  const mine = ++generation;
  history.replaceState(null, "", "?" + query());
  renderControls();
  let table;
  try {
    table = await api("/api/table?" + query());
  } catch (error) {
    if (mine !== generation) return;
    showError(error);
    return;
  }
  if (mine !== generation) return;
  current = table;
  $("error").hidden = true;
  render(table);
  document.body.dataset.loaded = String(mine); // tests wait for this
}

function showError(error) {
  document.body.dataset.loaded = String(generation);
  if (error.status === 409) {
    $("content").hidden = true;
    $("status").textContent = "";
    const hint = error.state === "no_store"
      ? "No data yet. Start the ingestion service (<code>chargeback ingest</code>), or try <code>chargeback demo</code>."
      : "The data cannot be read right now.";
    $("empty").innerHTML = `<h2>Nothing to show</h2><p>${hint}</p><p class="muted">${esc(error.message)}</p>`;
    $("empty").hidden = false;
    return;
  }
  $("error").textContent = error.message;
  $("error").hidden = false;
}

function age(seconds) {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

function render(table) {
  $("empty").hidden = true;
  $("content").hidden = false;
  const p = table.period;
  const buckets = table.header.length - 2;
  const source = table.source;
  let where = source.kind === "published copy"
    ? `the published copy ${esc(source.path)}`
    : `the store ${esc(source.path)} itself (no ingestion service holds it)`;
  where += `, data as of ${esc(source.data_time)} (${age(source.age_seconds)} old)`;
  let status = `${esc(table.tab.title)} · ${p.first} – ${p.last} · ${buckets} ${p.bucket === "day" ? "daily" : "monthly"} buckets · read from ${where}`;
  if (source.kind === "published copy" && source.age_seconds > 120) {
    status += ` · <span class="warn">the copy is ${age(source.age_seconds)} old: is <code>chargeback ingest</code> running?</span>`;
  }
  if (table.kind === "money") {
    status += table.default_rates
      ? ` · <span class="warn">priced with the default rates (0.10 USD per GB each way): set yours in Configuration</span>`
      : ` · costs in ${esc(table.currency)}, rounded half up to cents`;
  }
  $("status").innerHTML = status;
  $("count").textContent = `${table.rows.length} service accounts` +
    (table.kind === "money" ? ` · costs in ${table.currency}` : ` · bytes in ${table.unit === "GiB" ? "KiB/MiB/GiB (2^10 steps)" : "kB/MB/GB (10^3 steps)"}; hover for the exact count`);
  renderChart(table);
  renderTable(table);
}

// --- the chart ---------------------------------------------------------------------------------

function niceStep(max) {
  const raw = max / 4;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function renderChart(table) {
  const labels = table.header.slice(1, -1);
  const series = table.chart.series;
  if (!series.length) {
    $("chart").innerHTML = `<p class="muted">No usage in ${table.period.first} – ${table.period.last}${state.filter || state.cluster ? " for this search and cluster" : ""}.</p>`;
    $("legend").innerHTML = "";
    return;
  }
  let scale = 1;
  let axis = table.currency;
  const stacks = labels.map((_, i) => series.reduce((sum, s) => sum + Number(s.values[i]), 0));
  const max = Math.max(...stacks, 0);
  if (table.kind === "bytes") {
    const { base, names } = unitsFor(table.unit);
    let i = 0;
    while (max / Math.pow(base, i) >= base && i < names.length - 1) i++;
    scale = Math.pow(base, i);
    axis = names[i];
  }
  const top = max / scale || 1;
  const step = niceStep(top);
  const ceiling = Math.ceil(top / step) * step;
  const W = Math.max($("chart").clientWidth, 400), H = 260, left = 64, right = 8, topPad = 16, bottom = 28;
  const plotW = W - left - right, plotH = H - topPad - bottom;
  const slot = plotW / labels.length, barW = Math.max(1, slot * 0.7);
  const y = (v) => topPad + plotH - (v / ceiling) * plotH;
  const parts = [];
  for (let v = 0; v <= ceiling + step / 2; v += step) {
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e3e7ee"/>`);
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${+v.toFixed(2)}</text>`);
  }
  parts.push(`<text x="12" y="${topPad + plotH / 2}" transform="rotate(-90 12 ${topPad + plotH / 2})" text-anchor="middle">${esc(axis)}</text>`);
  const every = Math.ceil(labels.length / 12);
  labels.forEach((label, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let base = 0;
    series.forEach((s, k) => {
      const raw = s.values[i];
      const v = Number(raw) / scale;
      if (v > 0) {
        const color = k < COLORS.length && !s.name.startsWith("others (") ? COLORS[k] : OTHERS_COLOR;
        const shown = table.kind === "money" ? `${moneyText(raw)} ${table.currency}` : `${bytesText(raw, table.unit)} (${raw} bytes)`;
        parts.push(`<rect x="${x}" y="${y(base + v)}" width="${barW}" height="${Math.max(0, y(base) - y(base + v))}" fill="${color}"><title>${esc(s.name)} · ${label}: ${esc(shown)}</title></rect>`);
      }
      base += v;
    });
    if (i % every === 0) {
      parts.push(`<text x="${left + i * slot + slot / 2}" y="${H - 8}" text-anchor="middle">${label}</text>`);
    }
  });
  $("chart").innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(table.tab.title)} per bucket, stacked by service account">${parts.join("")}</svg>`;
  $("legend").innerHTML = series.map((s, k) => {
    const color = k < COLORS.length && !s.name.startsWith("others (") ? COLORS[k] : OTHERS_COLOR;
    return `<span><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" rx="2" fill="${color}"/></svg> ${esc(s.name)}</span>`;
  }).join("");
}

// --- the table ---------------------------------------------------------------------------------

function currentSort() {
  if (!state.sort) return { column: TOTAL, descending: true };
  const i = state.sort.lastIndexOf(":");
  return { column: state.sort.slice(0, i), descending: state.sort.slice(i + 1) === "desc" };
}

function renderTable(table) {
  const sort = currentSort();
  const head = table.header.map((name) => {
    const aria = name === sort.column ? ` aria-sort="${sort.descending ? "descending" : "ascending"}"` : "";
    return `<th data-col="${esc(name)}"${aria}>${esc(name)}</th>`;
  }).join("");
  const parts = [`<thead><tr>${head}</tr></thead><tbody>`];
  for (const row of table.rows) {
    let line = `<tr><td>${esc(row[0])}</td>`;
    const last = row.length - 1;
    for (let i = 1; i < row.length; i++) line += cell(row[i], table, i === last);
    parts.push(line + "</tr>");
  }
  if (!table.rows.length) {
    parts.push(`<tr><td colspan="${table.header.length}" class="muted">No service account with usage in this period${state.filter || state.cluster ? " matches the search and cluster" : ""}.</td></tr>`);
  }
  parts.push(`</tbody><tfoot><tr><td>Total</td>${table.totals.map((t) => cell(t, table, true)).join("")}</tr></tfoot>`);
  $("table").innerHTML = parts.join("");
}

function onHeaderClick(event) {
  const th = event.target.closest("th[data-col]");
  if (!th) return;
  const column = th.dataset.col;
  const sort = currentSort();
  const descending = column === sort.column ? !sort.descending : column !== NAME;
  state.sort = `${column}:${descending ? "desc" : "asc"}`;
  load();
}

// --- controls ----------------------------------------------------------------------------------

function renderControls() {
  document.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === state.tab)));
  document.querySelectorAll("[data-period]").forEach((b) => b.classList.toggle("active", b.dataset.period === state.period));
  $("custom").hidden = state.period !== "custom";
  $("as-of").disabled = state.period === "custom";
}

function resetBucketSort() {
  const column = currentSort().column;
  if (column !== NAME && column !== TOTAL) state.sort = "";
}

async function loadClusters() {
  try {
    const { clusters } = await api("/api/clusters");
    const options = clusters.map((c) => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
    $("cluster").innerHTML = `<option value="">All clusters</option>${options}`;
    $("cluster").value = state.cluster;
    $("cluster-names").innerHTML = options;
  } catch (error) {
    // No store yet: the table's empty state says so.
  }
}

// --- configuration -----------------------------------------------------------------------------

function renderRates(rates) {
  tokenRequired = rates.token_required;
  $("token-row").hidden = !tokenRequired;
  document.querySelectorAll(".unit-name").forEach((e) => { e.textContent = rates.unit; });
  $("rate-currency").placeholder = rates.currency;
  $("rates-file").textContent = `${rates.path}${rates.default_rates ? " (absent: the default rates apply until you save one)" : ""} · ${rates.currency} per ${rates.unit} (${rates.unit_text})`;
  const rows = rates.entries.map((e) =>
    `<tr><td>${e.from}</td><td>${e.cluster === null ? "all clusters" : esc(e.cluster)}</td><td>${e.ingress}</td><td>${e.egress}</td></tr>`).join("");
  $("history").innerHTML = `<thead><tr><th>From</th><th>Cluster</th><th>Ingress</th><th>Egress</th></tr></thead><tbody>${rows}</tbody>`;
}

async function openConfig() {
  $("config-error").hidden = true;
  if (!$("rate-from").value) $("rate-from").value = new Date().toISOString().slice(0, 10);
  $("config").showModal();
  try {
    renderRates(await api("/api/rates"));
  } catch (error) {
    $("config-error").textContent = error.message;
    $("config-error").hidden = false;
  }
}

async function saveRate() {
  const body = {
    ingress: $("rate-ingress").value.trim(),
    egress: $("rate-egress").value.trim(),
    from: $("rate-from").value,
  };
  if ($("rate-currency").value.trim()) body.currency = $("rate-currency").value.trim();
  if ($("rate-cluster").value.trim()) body.cluster = $("rate-cluster").value.trim();
  const headers = { "Content-Type": "application/json" };
  if (tokenRequired) headers.Authorization = `Bearer ${$("rate-token").value}`;
  try {
    renderRates(await api("/api/rates", { method: "POST", headers, body: JSON.stringify(body) }));
    $("config-error").hidden = true;
    document.body.dataset.saved = String(Date.now());
    load();
  } catch (error) {
    $("config-error").textContent = error.message;
    $("config-error").hidden = false;
  }
}

// --- wiring ------------------------------------------------------------------------------------

function init() {
  $("as-of").value = state.as_of;
  $("from").value = state.from;
  $("to").value = state.to;
  $("bucket").value = state.bucket;
  $("search").value = state.filter;
  document.querySelectorAll("[data-tab]").forEach((b) => b.addEventListener("click", () => { state.tab = b.dataset.tab; load(); }));
  document.querySelectorAll("[data-period]").forEach((b) => b.addEventListener("click", () => {
    state.period = b.dataset.period;
    resetBucketSort();
    if (state.period === "custom") {
      renderControls();
      if (current && !state.from) { $("from").value = current.period.first; $("to").value = current.period.last; }
      return;
    }
    load();
  }));
  $("custom-apply").addEventListener("click", () => {
    state.from = $("from").value;
    state.to = $("to").value;
    state.bucket = $("bucket").value;
    resetBucketSort();
    load();
  });
  $("as-of").addEventListener("change", () => { state.as_of = $("as-of").value; resetBucketSort(); load(); });
  let timer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.filter = $("search").value; load(); }, 200);
  });
  $("cluster").addEventListener("change", () => { state.cluster = $("cluster").value; load(); });
  $("table").addEventListener("click", onHeaderClick);
  $("export").addEventListener("click", () => {
    const a = document.createElement("a");
    a.href = "/api/export.csv?" + query();
    a.download = "";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
  $("config-open").addEventListener("click", openConfig);
  $("config-close").addEventListener("click", () => $("config").close());
  $("config-save").addEventListener("click", saveRate);
  // The table first: the cluster list waits for it, the two reads share one lock on the server.
  load().then(loadClusters);
}

document.addEventListener("DOMContentLoaded", init);
