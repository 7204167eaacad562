// curvemon dashboard: availability checks. The Checks view (every check of
// the fleet, failing ones first, with the latency chart of the one picked)
// and the checks table of a host's page, both live over server-sent
// events. Uses app.js's helpers ($, el, chart, palette, getJSON, fmtDur,
// fmtSeconds, setLive), which are defined by the time these run.
"use strict";

const checksPage = { views: new Map(), source: null, selected: null, chart: null, data: null, timer: null };
const hostChecks = { id: null, views: new Map() };
const CHECK_RANK = { down: 0, stale: 1, unknown: 2, pending: 3, up: 4 };

function checkOrder(a, b) {
  return (CHECK_RANK[a.state] - CHECK_RANK[b.state]) || a.host.localeCompare(b.host) || a.name.localeCompare(b.name);
}
function checkExtra(c) {
  const parts = [];
  if (c.http_status != null) parts.push(`HTTP ${c.http_status}`);
  if (c.cert_not_after != null) parts.push(`certificate ends in ${fmtDur(c.cert_not_after - Date.now() / 1000)}`);
  if (c.server) parts.push(c.server);
  return parts.join(" · ");
}
function checkRow(c, withHost) {
  const tr = el("tr");
  tr.dataset.key = c.key;
  tr.dataset.check = c.name;
  if (withHost) tr.append(el("td", c.host));
  const name = el("td");
  name.append(el("strong", c.name));
  const st = el("td");
  st.append(el("span", c.state, `state ${c.state}`));
  if (c.since_ms) st.append(el("span", `for ${fmtDur((Date.now() - c.since_ms) / 1000)}`, "why"));
  const why = el("td", c.reason ? `${c.reason}: ${c.detail || ""}` : "", "detail");
  tr.append(name, el("td", c.kind), el("td", c.target), st, why,
    el("td", c.last_ms ? fmtDur((Date.now() - c.last_ms) / 1000) + " ago" : "", "num"),
    el("td", fmtSeconds(c.seconds), "num"), el("td", checkExtra(c)));
  return tr;
}

// ---------- the Checks view ----------
function renderChecks() {
  const body = $("#checks tbody");
  body.replaceChildren();
  const views = [...checksPage.views.values()].sort(checkOrder);
  for (const c of views) {
    const tr = checkRow(c, true);
    tr.classList.toggle("picked", c.key === checksPage.selected);
    tr.addEventListener("click", () => pickCheck(c.key));
    body.append(tr);
  }
  const count = (s) => views.filter((c) => c.state === s).length;
  $("#checks-counts").textContent = `${views.length} checks: ${count("up")} passing, ${count("down")} failing` +
    (count("stale") + count("unknown") + count("pending") ? `, ${count("stale") + count("unknown") + count("pending")} without a fresh result` : "");
  $("#checks-empty").hidden = views.length > 0;
  if (!checksPage.selected && views.length) pickCheck(views[0].key);
}
function scheduleChecks() {
  if (!checksPage.timer) checksPage.timer = setTimeout(() => { checksPage.timer = null; renderChecks(); }, 200);
}
async function pickCheck(key) {
  checksPage.selected = key;
  const c = checksPage.views.get(key);
  if (!c) return;
  $("#check-caption").textContent = `${c.host} · ${c.name}: duration of each run, ms (failed runs in red)`;
  const since = Date.now() - HOUR * 1000;
  const h = await getJSON(`/api/hosts/${c.host_id}/checks/${encodeURIComponent(c.name)}/history?since=${since}`);
  if (checksPage.selected !== key) return;
  checksPage.data = { t: h.t.map((t) => t / 1000), ok: [], failed: [] };
  h.seconds.forEach((s, i) => {
    checksPage.data.ok.push(h.up[i] ? s * 1000 : null);
    checksPage.data.failed.push(h.up[i] ? null : s * 1000);
  });
  if (checksPage.chart) checksPage.chart.destroy();
  $("#check-chart").replaceChildren();
  checksPage.chart = chart($("#check-chart"), [
    { label: "passed", stroke: palette(0), width: 1.5, spanGaps: true, points: { show: true } },
    { label: "failed", stroke: "#c23b3b", width: 0, points: { show: true, size: 7 } },
  ], { scales: { y: { range: (u, min, max) => [0, Math.max((max || 0) * 1.15, 1)] } } });
  drawCheck();
  renderChecks();
}
function drawCheck() {
  const d = checksPage.data;
  if (!d || !checksPage.chart) return;
  trim([d.t, d.ok, d.failed]);
  checksPage.chart.setData([d.t, d.ok, d.failed]);
}
function onCheckEvent(c) {
  checksPage.views.set(c.key, c);
  if (c.key === checksPage.selected && checksPage.data && c.last_ms) {
    const d = checksPage.data;
    const t = c.last_ms / 1000;
    if (!d.t.length || d.t[d.t.length - 1] < t) {
      const ok = c.state !== "down";
      d.t.push(t); d.ok.push(ok ? c.seconds * 1000 : null); d.failed.push(ok ? null : c.seconds * 1000);
      drawCheck();
    }
  }
  scheduleChecks();
}
async function loadChecks() {
  const checks = await getJSON("/api/checks");
  checksPage.views = new Map(checks.map((c) => [c.key, c]));
  renderChecks();
}
function openChecks() {
  $("#crumb").textContent = "› checks";
  loadChecks();
  checksPage.source = new EventSource("/api/stream/checks");
  checksPage.source.onopen = () => setLive(true);
  checksPage.source.onerror = () => setLive(false);
  checksPage.source.addEventListener("check", (e) => onCheckEvent(JSON.parse(e.data)));
  checksPage.source.addEventListener("reset", loadChecks);
  // States that change without a result (a host going down, a check going
  // stale) and the "for ..." texts: refresh now and then.
  checksPage.refresh = setInterval(loadChecks, 5000);
}
function closeChecks() {
  if (checksPage.source) checksPage.source.close();
  if (checksPage.refresh) clearInterval(checksPage.refresh);
  checksPage.source = null;
  checksPage.refresh = null;
}

// ---------- a host's checks ----------
function renderHostChecks() {
  const body = $("#host-checks tbody");
  body.replaceChildren();
  const views = [...hostChecks.views.values()].sort(checkOrder);
  for (const c of views) body.append(checkRow(c, false));
  $("#host-checks-box").hidden = views.length === 0;
}
async function loadHostChecks(id) {
  hostChecks.id = id;
  const checks = await getJSON(`/api/hosts/${id}/checks`);
  if (hostChecks.id !== id) return;
  hostChecks.views = new Map(checks.map((c) => [c.key, c]));
  renderHostChecks();
}
// Called with every `check` event of the host page's stream.
function onHostCheckEvent(c) {
  if (c.host_id !== hostChecks.id) return;
  hostChecks.views.set(c.key, c);
  renderHostChecks();
}
function closeHostChecks() {
  hostChecks.id = null;
  hostChecks.views.clear();
}

// Test hooks, merged into window.curvemon by app.js.
const checkHooks = {
  // The state shown for check NAME of host HOST in the Checks view.
  checkState: (host, name) => [...document.querySelectorAll("#checks tbody tr")]
    .find((tr) => tr.children[0].textContent === host && tr.dataset.check === name)?.querySelector(".state")?.textContent ?? null,
  checkOrder: () => [...document.querySelectorAll("#checks tbody tr")].map((tr) => tr.dataset.check),
  checkPoints: () => checksPage.data ? checksPage.data.t.length : 0,
  pickedCheck: () => checksPage.selected,
  hostCheckState: (name) => document.querySelector(`#host-checks tr[data-check="${CSS.escape(name)}"] .state`)?.textContent ?? null,
};
