// curvemon dashboard: fleet view and host view, live through server-sent
// events, charts with uPlot. Everything comes from this collector's origin.
"use strict";

const HOUR = 3600;
const fleet = { hosts: new Map(), series: new Map(), charts: {}, sort: { key: "hostname", desc: false } };
const hostPage = { id: null, charts: {}, data: null, source: null };
const delays = [];
const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));
let fleetSource = null;

// ---------- helpers ----------
const $ = (sel) => document.querySelector(sel);
const gib = (b) => (b / 1073741824).toFixed(1);
const fmtBytes = (b) => b == null ? "" : b >= 1073741824 ? gib(b) + " GiB" : b >= 1048576 ? (b / 1048576).toFixed(1) + " MiB" : (b / 1024).toFixed(0) + " KiB";
const fmtDur = (s) => s == null ? "" : s >= 86400 ? (s / 86400).toFixed(1) + " d" : s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 60 ? Math.round(s / 60) + " min" : Math.round(s) + " s";
const ago = (iso) => fmtDur(Math.max(0, (Date.now() - Date.parse(iso)) / 1000)) + " ago";
function color(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 65%, 42%)`;
}
async function getJSON(url) {
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}
function memPercent(host, memUsed) {
  const total = host.model && host.model.mem_total_bytes;
  return total && memUsed != null ? (100 * memUsed) / total : null;
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function setLive(on) {
  const live = $("#live");
  live.textContent = on ? "live" : "reconnecting…";
  live.classList.toggle("on", on);
}
function trim(cols) {
  const cutoff = Date.now() / 1000 - HOUR;
  let i = 0;
  while (i < cols[0].length && cols[0][i] < cutoff) i++;
  if (i) cols.forEach((c) => c.splice(0, i));
}
// 1234567 → "1.2M": short axis labels for byte rates.
function si(v) {
  if (v == null) return "";
  const a = Math.abs(v);
  return a >= 1e9 ? (v / 1e9).toFixed(1) + "G" : a >= 1e6 ? (v / 1e6).toFixed(1) + "M" : a >= 1e3 ? (v / 1e3).toFixed(1) + "k" : String(Math.round(v * 10) / 10);
}
function chart(target, series, opts = {}) {
  const width = Math.max(320, target.clientWidth || 480);
  const y = { size: 56, ...(opts.si ? { values: (u, vals) => vals.map(si) } : {}) };
  return new uPlot({ width, height: 200, series: [{}, ...series], axes: [{}, y],
                     scales: opts.scales || {}, legend: { live: false } }, [[]].concat(series.map(() => [])), target);
}

// ---------- fleet view ----------
function ensureSeries(id) {
  if (!fleet.series.has(id)) fleet.series.set(id, { t: [], cpu: [], mem: [] });
  return fleet.series.get(id);
}
function sortedHosts() {
  const hosts = [...fleet.hosts.values()];
  const { key, desc } = fleet.sort;
  const val = (h) => ({
    hostname: h.hostname, state: h.state, seen: -Date.parse(h.last_seen), os: h.model?.os || "",
    kernel: h.model?.kernel || "", cpus: h.model?.cpu_count ?? -1, cpu: h.latest?.cpu_percent ?? -1,
    mem: h.latest && h.latest.mem_total_bytes ? 1 - h.latest.mem_available_bytes / h.latest.mem_total_bytes : -1,
    load: h.latest?.load1 ?? -1, uptime: h.latest?.uptime_seconds ?? -1,
  })[key];
  hosts.sort((a, b) => { const x = val(a), y = val(b); const c = x < y ? -1 : x > y ? 1 : 0; return desc ? -c : c; });
  return hosts;
}
function renderTable() {
  const filter = $("#filter").value.trim().toLowerCase();
  const state = $("#state-filter").value;
  const body = $("#hosts tbody");
  body.replaceChildren();
  const hosts = sortedHosts();
  let shown = 0;
  for (const h of hosts) {
    if (filter && !h.hostname.toLowerCase().includes(filter)) continue;
    if (state && h.state !== state) continue;
    shown++;
    const m = h.model || {}, l = h.latest || {};
    const tr = el("tr");
    tr.dataset.id = h.id;
    tr.dataset.host = h.hostname;
    const name = el("td");
    const swatch = el("span", null, "swatch");
    swatch.style.background = color(h.id);
    const link = el("a", h.hostname);
    link.href = `#/host/${h.id}`;
    name.append(swatch, link);
    const st = el("td");
    st.append(el("span", h.state, `state ${h.state}`));
    if (h.state_since) st.append(el("span", `for ${fmtDur((Date.now() - Date.parse(h.state_since)) / 1000)}`, "why"));
    if (h.state !== "up" && h.state_reason) st.append(el("div", h.state_reason, "why"));
    const mem = l.mem_total_bytes != null && l.mem_available_bytes != null
      ? `${gib(l.mem_total_bytes - l.mem_available_bytes)} / ${gib(l.mem_total_bytes)} GiB` : "";
    tr.append(name, st, el("td", ago(h.last_seen)), el("td", m.os || ""), el("td", m.kernel || ""),
      el("td", m.cpu_count ?? "", "num"), el("td", l.cpu_percent == null ? "" : l.cpu_percent.toFixed(1), "num"),
      el("td", mem, "num"), el("td", l.load1 == null ? "" : l.load1.toFixed(2), "num"), el("td", fmtDur(l.uptime_seconds), "num"));
    body.append(tr);
  }
  const count = (s) => hosts.filter((h) => h.state === s).length;
  $("#counts").textContent = `${hosts.length} hosts: ${count("up")} up, ${count("stale")} stale, ${count("down")} down` +
    (shown !== hosts.length ? ` (${shown} shown)` : "");
}
function fleetChartData(field) {
  const hosts = sortedHosts().filter((h) => fleet.series.has(h.id));
  const tables = hosts.map((h) => { const s = fleet.series.get(h.id); return [s.t, s[field]]; });
  return { hosts, data: tables.length ? uPlot.join(tables) : [[]] };
}
function renderFleetCharts() {
  for (const [field, target, max] of [["cpu", "#fleet-cpu", 100], ["mem", "#fleet-mem", 100]]) {
    const { hosts, data } = fleetChartData(field);
    const key = hosts.map((h) => h.id).join(",");
    let c = fleet.charts[field];
    if (!c || c.key !== key) {
      if (c) c.plot.destroy();
            // Hosts sample at different instants: joined columns alternate with
      // nulls, so each line spans them (a dead host's line simply ends).
      const series = hosts.map((h) => ({ label: h.hostname, stroke: color(h.id), width: 1.5, spanGaps: true }));
      const plot = chart($(target), series, { scales: { y: { range: [0, max] } } });
      c = fleet.charts[field] = { plot, key };
    }
    c.plot.setData(data);
  }
}
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => { renderPending = false; renderTable(); renderFleetCharts(); }, 250);
}
function applyHost(view) {
  fleet.hosts.set(view.id, view);
}
function applyPoint(view, point) {
  if (!point) return;
  const s = ensureSeries(view.id);
  s.t.push(point.t / 1000);
  s.cpu.push(point.cpu_percent);
  s.mem.push(memPercent(view, point.mem_used_bytes));
  trim([s.t, s.cpu, s.mem]);
  delays.push(Date.now() - point.t);
  if (delays.length > 500) delays.shift();
}
async function loadFleet() {
  const hosts = await getJSON("/api/hosts");
  fleet.hosts.clear();
  fleet.series.clear();
  hosts.forEach(applyHost);
  const since = Date.now() - HOUR * 1000;
  await Promise.all(hosts.slice(0, 100).map(async (h) => {
    const hist = await getJSON(`/api/hosts/${h.id}/history?since=${since}&metric=cpu_percent,mem_used_bytes`);
    const s = ensureSeries(h.id);
    s.t = hist.t.map((t) => t / 1000);
    s.cpu = hist.cpu_percent;
    s.mem = hist.mem_used_bytes.map((m) => memPercent(h, m));
  }));
  renderTable();
  renderFleetCharts();
}
function openFleetStream() {
  if (fleetSource) return;
  fleetSource = new EventSource("/api/stream");
  fleetSource.onopen = () => setLive(true);
  fleetSource.onerror = () => setLive(false);
  fleetSource.addEventListener("sample", (e) => {
    const { host, point } = JSON.parse(e.data);
    const known = fleet.hosts.get(host.id);
    applyHost(Object.assign(known || {}, host, { transitions: known?.transitions || [] }));
    applyPoint(host, point);
    scheduleRender();
  });
  fleetSource.addEventListener("state", (e) => {
    const { host } = JSON.parse(e.data);
    applyHost(Object.assign(fleet.hosts.get(host.id) || {}, host));
    renderTable();
  });
  fleetSource.addEventListener("reset", () => loadFleet());
}

// ---------- host view ----------
const HOST_CHARTS = {
  cpu: { target: "#h-cpu", series: [["cpu_percent", "all CPUs", "#2763c4"]], y: { range: [0, 100] } },
  mem: { target: "#h-mem", series: [["mem_used_bytes", "used", "#c23b3b"], ["mem_cached_bytes", "cached", "#d98e04"],
         ["mem_available_bytes", "available", "#2e9b4f"], ["swap_used_bytes", "swap used", "#7d4cc2"]], scale: 1 / 1073741824 },
  load: { target: "#h-load", series: [["load1", "1 min", "#2763c4"], ["load5", "5 min", "#2e9b4f"], ["load15", "15 min", "#d98e04"]] },
    net: { target: "#h-net", si: true, series: [["net_rx_bytes_per_second", "received", "#2763c4"], ["net_tx_bytes_per_second", "sent", "#c23b3b"]] },
  disk: { target: "#h-disk", si: true, series: [["disk_read_bytes_per_second", "read", "#2e9b4f"], ["disk_write_bytes_per_second", "written", "#d98e04"]] },
};
function hostCharts(cores, numbers) {
  for (const c of Object.values(hostPage.charts)) c.destroy();
  hostPage.charts = {};
  for (const [key, def] of Object.entries(HOST_CHARTS)) {
    $(def.target).replaceChildren();
    hostPage.charts[key] = chart($(def.target), def.series.map(([, label, stroke]) => ({ label, stroke, width: 1.5 })),
            { scales: def.y ? { y: def.y } : {}, si: def.si });
  }
  $("#h-cores").replaceChildren();
  const palette = (i) => `hsl(${(i * 47) % 360}, 60%, 45%)`;
  hostPage.charts.cores = chart($("#h-cores"), Array.from({ length: cores }, (_, i) => ({ label: `cpu${numbers[i] ?? i}`, stroke: palette(i), width: 1 })),
    { scales: { y: { range: [0, 100] } } });
}
function hostDraw() {
  const d = hostPage.data;
  const t = d.t.map((x) => x / 1000);
  for (const [key, def] of Object.entries(HOST_CHARTS)) {
    const scale = def.scale || 1;
    hostPage.charts[key].setData([t, ...def.series.map(([field]) => d[field].map((v) => v == null ? null : v * scale))]);
  }
  hostPage.charts.cores.setData([t, ...d.cores]);
}
function hostHeader(view) {
  $("#host-name").textContent = view.hostname;
  $("#crumb").textContent = `› ${view.hostname}`;
  const st = $("#host-state");
  st.textContent = view.state;
  st.className = `state ${view.state}`;
  $("#host-reason").textContent = view.state === "up" ? `last seen ${ago(view.last_seen)}` : `${view.state_reason || ""}`;
  const m = view.model || {};
  $("#host-meta").textContent = [m.os, m.kernel && `kernel ${m.kernel}`, m.cpu_count && `${m.cpu_count} CPUs ${m.cpu_model || ""}`,
    m.mem_total_bytes && `${gib(m.mem_total_bytes)} GiB`, m.boot_time && `booted ${m.boot_time}`].filter(Boolean).join(" · ");
}
async function openHost(id) {
  closeHost();
  hostPage.id = id;
  const view = await getJSON(`/api/hosts/${id}`);
  hostHeader(view);
  const since = Date.now() - HOUR * 1000;
  hostPage.data = await getJSON(`/api/hosts/${id}/history?since=${since}`);
  const numbers = view.model?.cpus || [];
  hostCharts(Math.max(numbers.length, hostPage.data.cores.length), numbers);
  hostDraw();
  hostPage.source = new EventSource(`/api/hosts/${id}/stream`);
  hostPage.source.onopen = () => setLive(true);
  hostPage.source.onerror = () => setLive(false);
  hostPage.source.addEventListener("sample", (e) => {
    const { host, point } = JSON.parse(e.data);
    hostHeader(host);
    if (!point) return;
    const d = hostPage.data;
    d.t.push(point.t);
    for (const def of Object.values(HOST_CHARTS)) for (const [field] of def.series) d[field].push(point[field]);
    point.cores.forEach((v, i) => { (d.cores[i] = d.cores[i] || []).push(v); });
    const cutoff = Date.now() - HOUR * 1000;
    let i = 0;
    while (i < d.t.length && d.t[i] < cutoff) i++;
    if (i) { for (const k of Object.keys(d)) if (k !== "cores") d[k].splice(0, i); d.cores.forEach((c) => c.splice(0, i)); }
    hostDraw();
  });
  hostPage.source.addEventListener("state", (e) => hostHeader(JSON.parse(e.data).host));
  hostPage.source.addEventListener("reset", () => openHost(id));
}
function closeHost() {
  if (hostPage.source) hostPage.source.close();
  hostPage.source = null;
  hostPage.id = null;
}

// ---------- routing ----------
async function route() {
  const match = location.hash.match(/^#\/host\/([0-9a-f]+)$/);
  $("#fleet-view").hidden = !!match;
  $("#host-view").hidden = !match;
  if (match) {
    await openHost(match[1]);
  } else {
    closeHost();
    $("#crumb").textContent = "";
    await loadFleet();
  }
}

// ---------- wiring ----------
document.querySelectorAll("#hosts th").forEach((th) => th.addEventListener("click", () => {
  const key = th.dataset.key;
  fleet.sort = { key, desc: fleet.sort.key === key ? !fleet.sort.desc : false };
  document.querySelectorAll("#hosts th").forEach((x) => x.classList.remove("sorted", "desc"));
  th.classList.add("sorted");
  th.classList.toggle("desc", fleet.sort.desc);
  renderTable();
}));
$("#filter").addEventListener("input", renderTable);
$("#state-filter").addEventListener("change", renderTable);
window.addEventListener("hashchange", route);
setInterval(() => { if (!$("#fleet-view").hidden) renderTable(); }, 1000);
openFleetStream();
route();

// For tests and for the curious: what the page currently shows.
window.curvemon = {
  hostState: (name) => document.querySelector(`#hosts tr[data-host="${CSS.escape(name)}"] .state`)?.textContent ?? null,
  fleetPoints: (name) => { const h = [...fleet.hosts.values()].find((x) => x.hostname === name); return h ? (fleet.series.get(h.id)?.t.length ?? 0) : 0; },
  hostPoints: () => hostPage.data ? hostPage.data.t.length : 0,
    delays: () => delays.slice(),
  errors: () => errors.slice(),
};
