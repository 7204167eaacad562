// curvemon dashboard: fleet view, host view and applications, live through
// server-sent events, charts with uPlot; checks.js adds the checks views.
// Everything comes from this collector's origin.
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
// Distinct colours for the lines of one chart: a categorical palette,
// then hues a golden angle apart.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#5b5b5b"];
function palette(i) {
  return i < PALETTE.length ? PALETTE[i] : `hsl(${Math.round((i * 137.508) % 360)}, 60%, 42%)`;
}
// A host's colour: its place among all hosts by name, so that it is the
// same in both fleet charts and its table row, and no two hosts share one.
function color(id) {
  const ids = [...fleet.hosts.values()].sort((a, b) => a.hostname.localeCompare(b.hostname)).map((h) => h.id);
  const i = ids.indexOf(id);
  return palette(i < 0 ? 0 : i);
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
  hostPage.charts.cores = chart($("#h-cores"), Array.from({ length: cores }, (_, i) => ({ label: `cpu${numbers[i] ?? i}`, stroke: palette(i), width: 1 })),
    { scales: { y: { range: [0, 100] } } });
}
// Services, containers and process groups: the busiest few, one line each.
function groupCharts() {
  const g = hostPage.groups;
  for (const [key, target, names] of [["gcpu", "#h-groups-cpu", Object.keys(g.cpu_percent)], ["gmem", "#h-groups-mem", Object.keys(g.mem_bytes)]]) {
    if (hostPage.charts[key]) hostPage.charts[key].destroy();
    $(target).replaceChildren();
    hostPage.charts[key] = chart($(target), names.map((n, i) => ({ label: n, stroke: palette(i), width: 1.5, spanGaps: true })));
  }
}
function groupDraw() {
  const g = hostPage.groups;
  const t = g.t.map((x) => x / 1000);
  hostPage.charts.gcpu.setData([t, ...Object.values(g.cpu_percent)]);
  hostPage.charts.gmem.setData([t, ...Object.values(g.mem_bytes).map((col) => col.map((v) => v == null ? null : v / 1048576))]);
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
// The host page's range: its history comes from the collector's store,
// bucketed there (min/max/avg) so a week is as quick to draw as an hour.
const HOST_POINTS = 1500;
function hostRange() { return hostPage.range || HOUR; }
function showGaps(gaps) {
  const p = $("#host-gaps");
  const lost = (gaps || []).filter((g) => g.samples > 0);
  p.hidden = lost.length === 0;
  p.textContent = lost.length === 0 ? "" : "Samples lost in this range: " + lost.map((g) =>
    `${g.samples} (${g.reason.replace("_", " ")}, ${new Date(g.from_ms).toLocaleString()} – ${new Date(g.to_ms).toLocaleTimeString()})`).join("; ");
}
async function loadHostHistory(id, view) {
  const since = Date.now() - hostRange() * 1000;
  hostPage.data = await getJSON(`/api/hosts/${id}/history?since=${since}&points=${HOST_POINTS}`);
  if (hostPage.id !== id) return;
  $("#host-step").textContent = hostPage.data.step_ms ? `averages per ${Math.round(hostPage.data.step_ms / 1000)} s` : "";
  showGaps(hostPage.data.gaps);
  const numbers = view.model?.cpus || [];
  hostCharts(Math.max(numbers.length, hostPage.data.cores.length), numbers);
  hostDraw();
}
document.querySelectorAll("#host-range button").forEach((b) => b.addEventListener("click", async () => {
  document.querySelectorAll("#host-range button").forEach((x) => x.classList.toggle("on", x === b));
  hostPage.range = Number(b.dataset.range);
  if (hostPage.id) await loadHostHistory(hostPage.id, await getJSON(`/api/hosts/${hostPage.id}`));
}));
async function openHost(id) {
  closeHost();
  hostPage.id = id;
  const view = await getJSON(`/api/hosts/${id}`);
  hostHeader(view);
  const since = Date.now() - HOUR * 1000;
  await loadHostHistory(id, view);
  hostPage.groups = await getJSON(`/api/hosts/${id}/groups?since=${since}`);
  groupCharts();
  groupDraw();
  hostPage.source = new EventSource(`/api/hosts/${id}/stream`);
  hostPage.source.onopen = () => setLive(true);
  hostPage.source.onerror = () => setLive(false);
  hostPage.source.addEventListener("sample", (e) => {
    const { host, point, groups } = JSON.parse(e.data);
    hostHeader(host);
    if (groups && hostPage.groups && groups.some((x) => !(x.name in hostPage.groups.cpu_percent) && !(x.name in hostPage.groups.mem_bytes))) {
      // A group the charts do not have yet: load them anew.
      const since = Date.now() - HOUR * 1000;
      getJSON(`/api/hosts/${id}/groups?since=${since}`).then((g) => { hostPage.groups = g; groupCharts(); groupDraw(); });
    } else if (groups && hostPage.groups) {
      const g = hostPage.groups;
      g.t.push(point ? point.t : Date.now());
      for (const [field, col] of [["cpu_percent", g.cpu_percent], ["mem_bytes", g.mem_bytes]]) {
        for (const name of Object.keys(col)) col[name].push(groups.find((x) => x.name === name)?.[field] ?? null);
      }
      const cutoff = Date.now() - HOUR * 1000;
      let k = 0;
      while (k < g.t.length && g.t[k] < cutoff) k++;
      if (k) { g.t.splice(0, k); for (const col of [g.cpu_percent, g.mem_bytes]) for (const c of Object.values(col)) c.splice(0, k); }
      groupDraw();
    }
    if (!point) return;
    const d = hostPage.data;
    d.t.push(point.t);
    for (const def of Object.values(HOST_CHARTS)) for (const [field] of def.series) d[field].push(point[field]);
    point.cores.forEach((v, i) => { (d.cores[i] = d.cores[i] || []).push(v); });
    const cutoff = Date.now() - hostRange() * 1000;
    let i = 0;
    while (i < d.t.length && d.t[i] < cutoff) i++;
    if (i) { for (const k of Object.keys(d)) if (k !== "cores") d[k].splice(0, i); d.cores.forEach((c) => c.splice(0, i)); }
    hostDraw();
  });
  hostPage.source.addEventListener("state", (e) => hostHeader(JSON.parse(e.data).host));
  hostPage.source.addEventListener("check", (e) => onHostCheckEvent(JSON.parse(e.data)));
  hostPage.source.addEventListener("reset", () => openHost(id));
  await loadHostChecks(id);
}
function closeHost() {
  if (hostPage.source) hostPage.source.close();
  hostPage.source = null;
  hostPage.id = null;
  closeHostChecks();
}

// ---------- applications ----------
const appsPage = { source: null, timer: null };
const appPage = { name: null, source: null, data: null, charts: {}, timerCharts: {}, refresh: null };
const fmtSeconds = (v) => v == null ? "" : v >= 1 ? v.toFixed(2) + " s" : (v * 1000).toFixed(v >= 0.01 ? 0 : 1) + " ms";
const fmtNum = (v, d = 1) => v == null ? "" : v.toFixed(d);
async function loadApps() {
  const apps = await getJSON("/api/apps");
  const body = $("#apps tbody");
  body.replaceChildren();
  for (const a of apps) {
    const tr = el("tr");
    tr.dataset.app = a.app;
    const name = el("td");
    const link = el("a", a.app);
    link.href = `#/app/${encodeURIComponent(a.app)}`;
    name.append(link);
    tr.append(name, el("td", `${a.instances_up} / ${a.instances}`, "num"), el("td", a.hosts.join(", ")),
      el("td", fmtNum(a.cpu_percent), "num"), el("td", fmtBytes(a.rss_bytes), "num"),
      el("td", fmtNum(a.calls_per_second), "num"), el("td", fmtSeconds(a.p99), "num"));
    body.append(tr);
  }
  $("#apps-empty").hidden = apps.length > 0;
}
function openApps() {
  loadApps();
  appsPage.source = new EventSource("/api/stream/apps");
  appsPage.source.onopen = () => setLive(true);
  appsPage.source.onerror = () => setLive(false);
  const later = () => { if (!appsPage.timer) appsPage.timer = setTimeout(() => { appsPage.timer = null; loadApps(); }, 1000); };
  for (const kind of ["instance", "step", "reset"]) appsPage.source.addEventListener(kind, later);
}
function closeApps() {
  if (appsPage.source) appsPage.source.close();
  appsPage.source = null;
}
function instanceCharts() {
  const d = appPage.data;
  for (const [key, target] of [["cpu", "#a-cpu"], ["mem", "#a-mem"]]) {
    if (appPage.charts[key]) appPage.charts[key].destroy();
    $(target).replaceChildren();
    appPage.charts[key] = chart($(target), d.instances.map((i, n) => ({ label: i.label, stroke: palette(n), width: 1.5, spanGaps: true })));
  }
}
function instanceDraw() {
  const d = appPage.data;
  const join = (field, scale) => d.instances.length
    ? uPlot.join(d.instances.map((i) => [i.t.map((x) => x / 1000), i[field].map((v) => v == null ? null : v * scale)]))
    : [[]];
  appPage.charts.cpu.setData(join("cpu_percent", 1));
  appPage.charts.mem.setData(join("rss_bytes", 1 / 1048576));
}
function timerCharts() {
  const box = $("#timers");
  for (const c of Object.values(appPage.timerCharts)) { c.calls.destroy(); c.latency.destroy(); }
  appPage.timerCharts = {};
  box.replaceChildren();
  for (const t of appPage.data.timers) {
    const ms = t.name.endsWith("_seconds");
    const calls = el("figure");
    calls.append(el("figcaption", `${t.key}: calls/s`));
    const lat = el("figure");
    lat.append(el("figcaption", `${t.key}: p50, p90, p99${ms ? ", ms" : ""}`));
    const c1 = el("div"), c2 = el("div");
    calls.append(c1); lat.append(c2);
    box.append(calls, lat);
    appPage.timerCharts[t.key] = {
      ms,
      calls: chart(c1, [{ label: "calls/s", stroke: palette(0), width: 1.5 }]),
      latency: chart(c2, [["p50", 0], ["p90", 1], ["p99", 2]].map(([label, i]) => ({ label, stroke: palette(i + 1), width: 1.5 }))),
    };
  }
}
function timerDraw() {
  for (const t of appPage.data.timers) {
    const c = appPage.timerCharts[t.key];
    if (!c) continue;
    const x = t.t.map((v) => v / 1000);
    const scale = (col) => col.map((v) => v == null ? null : c.ms ? v * 1000 : v);
    c.calls.setData([x, t.calls_per_second]);
    c.latency.setData([x, scale(t.p50), scale(t.p90), scale(t.p99)]);
  }
}
async function appTable() {
  const view = await getJSON(`/api/apps/${encodeURIComponent(appPage.name)}`);
  const up = view.instances.filter((i) => i.state === "up").length;
  $("#app-summary").textContent = `${up} of ${view.instances.length} instances up · timers per ${view.step_seconds} s step`;
  const body = $("#instances tbody");
  body.replaceChildren();
  for (const i of view.instances) {
    const tr = el("tr");
    tr.dataset.key = i.key;
    const st = el("td");
    st.append(el("span", i.state, `state ${i.state}`));
    tr.append(el("td", i.label), st, el("td", i.source), el("td", fmtNum(i.cpu_percent), "num"),
      el("td", fmtBytes(i.rss_bytes), "num"), el("td", fmtNum(i.calls_per_second), "num"), el("td", i.unit));
    body.append(tr);
  }
}
function trimApp() {
  const cutoff = Date.now() - HOUR * 1000;
  for (const series of [...appPage.data.instances, ...appPage.data.timers]) {
    let k = 0;
    while (k < series.t.length && series.t[k] < cutoff) k++;
    if (k) for (const [key, col] of Object.entries(series)) if (Array.isArray(col)) col.splice(0, k);
  }
}
async function openApp(name) {
  closeApp();
  appPage.name = name;
  $("#app-name").textContent = name;
  $("#crumb").textContent = `› ${name}`;
  const since = Date.now() - HOUR * 1000;
  appPage.data = await getJSON(`/api/apps/${encodeURIComponent(name)}/history?since=${since}`);
  instanceCharts(); instanceDraw();
  timerCharts(); timerDraw();
  await appTable();
  appPage.refresh = setInterval(appTable, 3000);
  appPage.source = new EventSource(`/api/apps/${encodeURIComponent(name)}/stream`);
  appPage.source.onopen = () => setLive(true);
  appPage.source.onerror = () => setLive(false);
  appPage.source.addEventListener("instance", (e) => {
    const p = JSON.parse(e.data);
    let i = appPage.data.instances.find((x) => x.key === p.key);
    const fresh = !i;
    if (fresh) {
      i = { key: p.key, label: p.label, t: [], cpu_percent: [], rss_bytes: [], calls_per_second: [] };
      appPage.data.instances.push(i);
    }
    i.t.push(p.t); i.cpu_percent.push(p.cpu_percent); i.rss_bytes.push(p.rss_bytes); i.calls_per_second.push(p.calls_per_second);
    trimApp();
    if (fresh) instanceCharts();
    instanceDraw();
  });
  appPage.source.addEventListener("step", (e) => {
    const p = JSON.parse(e.data);
    let t = appPage.data.timers.find((x) => x.key === p.key);
    const fresh = !t;
    if (fresh) {
      t = { key: p.key, name: p.name, labels: p.labels, t: [], calls_per_second: [], p50: [], p90: [], p99: [] };
      appPage.data.timers.push(t);
    }
    t.t.push(p.t); t.calls_per_second.push(p.calls_per_second); t.p50.push(p.p50); t.p90.push(p.p90); t.p99.push(p.p99);
    trimApp();
    if (fresh) timerCharts();
    timerDraw();
  });
  appPage.source.addEventListener("reset", () => openApp(name));
}
function closeApp() {
  if (appPage.source) appPage.source.close();
  if (appPage.refresh) clearInterval(appPage.refresh);
  appPage.source = null;
  appPage.refresh = null;
  appPage.name = null;
}

// ---------- routing ----------
async function route() {
  const host = location.hash.match(/^#\/host\/([0-9a-f]+)$/);
  const app = location.hash.match(/^#\/app\/(.+)$/);
  const apps = location.hash === "#/apps";
  const checks = location.hash === "#/checks";
  $("#fleet-view").hidden = !!(host || app || apps || checks);
  $("#host-view").hidden = !host;
  $("#apps-view").hidden = !apps;
  $("#app-view").hidden = !app;
  $("#checks-view").hidden = !checks;
  $("#nav-hosts").classList.toggle("active", !(app || apps || checks));
  $("#nav-apps").classList.toggle("active", !!(app || apps));
  $("#nav-checks").classList.toggle("active", checks);
  if (!host) closeHost();
  if (!apps) closeApps();
  if (!app) closeApp();
  if (!checks) closeChecks();
  if (checks) {
    openChecks();
  } else if (host) {
    await openHost(host[1]);
  } else if (app) {
    await openApp(decodeURIComponent(app[1]));
  } else if (apps) {
    $("#crumb").textContent = "› applications";
    openApps();
  } else {
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
  // The host page's range in seconds and the first point's time (Unix ms).
  hostRange: () => [hostRange(), hostPage.data?.t[0] ?? null],
  // Lines of the application page's CPU and memory charts (one per instance).
  appLines: () => appPage.charts.cpu ? appPage.charts.cpu.series.length - 1 : 0,
  appInstancePoints: () => appPage.data ? appPage.data.instances.map((i) => i.t.length) : [],
  appTimers: () => Object.keys(appPage.timerCharts),
  appTimerPoints: () => appPage.data ? appPage.data.timers.map((t) => t.t.length) : [],
  hostGroups: () => hostPage.groups ? Object.keys(hostPage.groups.cpu_percent) : [],
  lineColors: (target) => { const c = { "#fleet-cpu": fleet.charts.cpu?.plot, "#a-cpu": appPage.charts.cpu }[target]; return c ? c.series.slice(1).map((s) => s._stroke || s.stroke) : []; },
  delays: () => delays.slice(),
  errors: () => errors.slice(),
  ...checkHooks,
};
