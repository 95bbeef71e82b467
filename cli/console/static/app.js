// The Bulkhead console: plain JavaScript, no framework, nothing fetched but this server's API.
// One live stream (Server-Sent Events) at a time, closed when the page changes; the flows
// table keeps at most MAX_ROWS rows, so a page left open stays small.
"use strict";

const MAX_ROWS = 500;
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};
const svg = (tag, attrs = {}) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}};
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), data);
  return data;
}

function errorBox(err) {
  const box = el("div", {class: "error"}, err.message);
  for (const p of err.problems || []) box.append(el("div", {}, `${p.field}: ${p.description}`));
  return box;
}

// -- live streams ------------------------------------------------------------------------
let stream = null;
function live(path, onData, onError) {
  if (stream) stream.close();
  stream = new EventSource(path);
  stream.onopen = () => $("#live").classList.add("on");
  stream.onmessage = (e) => onData(JSON.parse(e.data));
  stream.addEventListener("error", (e) => {
    $("#live").classList.remove("on");
    if (e.data && onError) { onError(JSON.parse(e.data)); stream.close(); }
  });
}

// -- routing -----------------------------------------------------------------------------
const pages = {map: showMap, flows: showFlows, policies: showPolicies, cluster: showCluster};
function route() {
  const name = (location.hash || "#map").slice(1).split("?")[0];
  const page = pages[name] ? name : "map";
  for (const s of document.querySelectorAll(".page")) s.classList.toggle("active", s.id === `page-${page}`);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  if (stream) { stream.close(); stream = null; $("#live").classList.remove("on"); }
  pages[page]();
}
window.addEventListener("hashchange", route);

// -- map ---------------------------------------------------------------------------------
let mapData = null;
let selectedEdge = "";

function showMap() {
  const ns = $("#map-namespace").value;
  live(`/api/map/stream?namespace=${encodeURIComponent(ns)}`, drawMap,
       (err) => $("#map-info").replaceChildren(errorBox(err)));
}
$("#map-namespace").addEventListener("change", showMap);

function layout(groups, width, height) {
  // Groups on an ellipse, in id order, so a workload keeps its place between snapshots.
  const pos = {};
  const n = groups.length;
  groups.forEach((g, i) => {
    const a = (2 * Math.PI * i) / Math.max(n, 1) - Math.PI / 2;
    pos[g.id] = n === 1 ? {x: width / 2, y: height / 2}
      : {x: width / 2 + (width / 2 - 110) * Math.cos(a), y: height / 2 + (height / 2 - 60) * Math.sin(a)};
  });
  return pos;
}

function edgeLabel(e) {
  const parts = [`${e.ports.join(" ")}  ${e.forwarded} fwd / ${e.dropped} drop`];
  for (const r of e.l7) parts.push(`${r.request} ×${r.forwarded + r.dropped}` +
                                   (r.dropped ? ` (${r.dropped} denied)` : ""));
  return parts;
}

function drawMap(data) {
  mapData = data;
  const select = $("#map-namespace");
  const current = select.value;
  select.replaceChildren(el("option", {value: ""}, "all"),
    ...data.namespaces.map((ns) => el("option", {value: ns}, ns)));
  select.value = current;
  $("#map-info").textContent = `${data.groups.length} workloads, ${data.edges.length} edges` +
    (data.flows_error ? ` — flows: ${data.flows_error}` : "");
  const root = $("#map-svg");
  const {width, height} = root.getBoundingClientRect();
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const pos = layout(data.groups, width, height);
  root.replaceChildren();
  const defs = svg("defs");
  for (const v of ["FORWARDED", "DROPPED"]) {
    const m = svg("marker", {id: `arrow-${v}`, viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerUnits: "userSpaceOnUse", markerWidth: 12, markerHeight: 12, orient: "auto-start-reverse"});
    m.append(svg("path", {d: "M0,0 L10,5 L0,10 z", fill: v === "DROPPED" ? "#d33c3c" : "#2e9d4f"}));
    defs.append(m);
  }
  root.append(defs);
  for (const e of data.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    const g = svg("g", {class: `edge ${e.verdict}${e.id === selectedEdge ? " selected" : ""}`,
      "data-edge": e.id, "data-verdict": e.verdict});
    let d, mid;
    if (e.source === e.target) {
      d = `M${a.x - 20},${a.y - 22} C${a.x - 60},${a.y - 90} ${a.x + 60},${a.y - 90} ${a.x + 20},${a.y - 22}`;
      mid = {x: a.x, y: a.y - 80};
    } else {
      // A slight curve, so the two directions between a pair do not overlap; the label sits
      // on the curve 40% of the way, so edges crossing in the middle keep their labels apart.
      const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
      const ux = dx / len, uy = dy / len;
      // Start and end where the line leaves the boxes (140 x 48), so arrows stay visible.
      const out = Math.min(74 / (Math.abs(ux) || 1e-9), 28 / (Math.abs(uy) || 1e-9));
      const sx = a.x + ux * out, sy = a.y + uy * out, tx = b.x - ux * out, ty = b.y - uy * out;
      const cx = (sx + tx) / 2 - uy * 30, cy = (sy + ty) / 2 + ux * 30;
      d = `M${sx},${sy} Q${cx},${cy} ${tx},${ty}`;
      const t = 0.4, u = 1 - t;
      mid = {x: u * u * sx + 2 * u * t * cx + t * t * tx, y: u * u * sy + 2 * u * t * cy + t * t * ty};
    }
    g.append(svg("path", {class: "line", d, "marker-end": `url(#arrow-${e.verdict})`}));
    g.append(svg("path", {class: "hit", d}));
    edgeLabel(e).forEach((line, i) => {
      const t = svg("text", {x: mid.x, y: mid.y + i * 13, "text-anchor": "middle"});
      t.textContent = line;
      g.append(t);
    });
    g.addEventListener("click", () => selectEdge(e.id));
    root.append(g);
  }
  for (const grp of data.groups) {
    const p = pos[grp.id];
    const g = svg("g", {class: "group", "data-group": grp.id, transform: `translate(${p.x},${p.y})`});
    g.append(svg("rect", {x: -70, y: -24, width: 140, height: 48}));
    const name = svg("text", {y: -2}); name.textContent = grp.name;
    const sub = svg("text", {y: 14, class: "ns"});
    sub.textContent = `${grp.namespace || "reserved"} · ${grp.pods.length} pod${grp.pods.length === 1 ? "" : "s"}`;
    g.append(name, sub);
    root.append(g);
  }
  if (selectedEdge) renderEdgePanel(selectedEdge, false);
}

function selectEdge(id) {
  selectedEdge = id;
  for (const g of document.querySelectorAll("#map-svg .edge")) g.classList.toggle("selected", g.dataset.edge === id);
  renderEdgePanel(id, true);
}

async function renderEdgePanel(id, fresh) {
  const e = mapData && mapData.edges.find((x) => x.id === id);
  const panel = $("#edge-panel");
  if (!e) return;
  if (!fresh && panel.dataset.edge === id && panel.dataset.last === e.last) return;
  panel.dataset.edge = id; panel.dataset.last = e.last;
  const rows = el("tbody");
  const table = el("table", {class: "grid", id: "edge-flows"},
    el("thead", {}, el("tr", {}, el("th", {}, "Time"), el("th", {}, "Pods"), el("th", {}, "Seen at"),
                     el("th", {}, "Verdict"), el("th", {}, "Decided by"))), rows);
  panel.replaceChildren(
    el("h3", {}, `${e.source} → ${e.target}`),
    el("div", {}, `Ports ${e.ports.join(", ")} · `, el("span", {class: "verdict-FORWARDED"}, `${e.forwarded} forwarded`),
       " · ", el("span", {class: "verdict-DROPPED"}, `${e.dropped} dropped`)),
    ...(e.l7.length ? [el("div", {class: "muted"}, "HTTP: " + e.l7.map((r) =>
        `${r.request} ×${r.forwarded + r.dropped}${r.dropped ? ` (${r.dropped} denied)` : ""}`).join("; "))] : []),
    el("p", {class: "muted"}, "Recent flows, newest first; the rule is the stored policies' " +
       "answer for the side that saw the flow (policy trace)."), table);
  let decisions = [];
  try { decisions = (await api("/api/flows/explain", {flows: e.flows})).decisions; }
  catch (err) { panel.append(errorBox(err)); }
  e.flows.forEach((f, i) => {
    const d = decisions[i] || {};
    rows.append(el("tr", {}, el("td", {}, f.time.slice(11, 23)),
      el("td", {}, `${f.source.pod || f.source.ip} → ${f.destination.pod || f.destination.ip}:${f.destination.port}` +
         (f.l7 ? ` ${requestOf(f)}` : "")),
      el("td", {}, `${f.direction || "-"} ${f.node}`),
      el("td", {class: `verdict-${f.verdict}`}, f.verdict),
      el("td", {class: "rule"}, d.error ? `(${d.error})` : d.rule || "")));
  });
}

const peerName = (p) => p.pod ? `${p.namespace}/${p.pod}` : p.ip;
// An L7 flow is an HTTP request/response of the proxy or a DNS query/answer of the DNS proxy.
const requestOf = (f) => {
  if (!f.l7) return "";
  if (f.l7.http && f.l7.http.method) return `${f.l7.http.method} ${f.l7.http.url}`;
  if (f.l7.dns) return `DNS ${f.l7.dns.query}` + (f.l7.dns.rcode ? ` ${f.l7.dns.rcode}` : "");
  return "";
};

// -- flows -------------------------------------------------------------------------------
let paused = false;
let held = [];

// Labels are repeatable filters (a flow must have them all): one field, separated by commas.
const LABEL_FILTERS = new Set(["from-label", "to-label"]);

function filterQuery() {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#flow-filters"))) {
    const values = LABEL_FILTERS.has(k) ? v.split(",") : [v];
    for (const one of values) if (one.trim()) params.append(k, one.trim());
  }
  return params.toString();
}

// A refused filter: the message, and each bad field marked in the form and named by its label.
function showFilterError(err) {
  const box = $("#flows-error");
  box.hidden = false;
  const problems = (err.problems || []).map((p) => {
    const input = $(`#flow-filters [name="${CSS.escape(p.field)}"]`);
    if (!input) return p;
    input.classList.add("invalid");
    input.setAttribute("aria-invalid", "true");
    return {...p, field: input.closest("label").firstChild.textContent.trim()};
  });
  box.replaceChildren(errorBox({...err, message: problems.length ? "Filter refused" : err.message,
                                problems}));
}

function showFlows() {
  $("#flows-error").hidden = true;
  for (const input of document.querySelectorAll("#flow-filters .invalid")) {
    input.classList.remove("invalid");
    input.removeAttribute("aria-invalid");
  }
  $("#flows-table tbody").replaceChildren();
  held = [];
  live(`/api/flows/stream?${filterQuery()}`, addFlow, showFilterError);
  // A filter the server refuses is a 400, which an EventSource cannot read: ask for it.
  api(`/api/flows/check?${filterQuery()}`).catch((err) => {
    if (stream) stream.close();
    showFilterError(err);
  });
}

function addFlow(f) {
  if (paused) { held.push(f); if (held.length > MAX_ROWS) held.shift(); updateFlowInfo(); return; }
  const body = $("#flows-table tbody");
  const row = el("tr", {class: "clickable", "data-verdict": f.verdict},
    el("td", {}, f.time.slice(11, 23)), el("td", {}, f.node),
    el("td", {}, `${peerName(f.source)}:${f.source.port}`),
    el("td", {}, `${peerName(f.destination)}:${f.destination.port}`),
    el("td", {}, f.l7 ? `L7 ${f.l7.type}` : `${f.protocol} ${f.direction}`),
    el("td", {class: `verdict-${f.verdict}`}, f.verdict),
    el("td", {}, f.l7 ? requestOf(f) || `${(f.l7.http || {}).code || ""}` : f.drop_reason || f.tcp_flags.join(",")));
  row.addEventListener("click", () => drillFlow(f, row));
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  updateFlowInfo();
}

function updateFlowInfo() {
  const n = $("#flows-table tbody").rows.length;
  $("#flows-info").textContent = `${n} shown (at most ${MAX_ROWS})` + (paused ? ` · paused, ${held.length} waiting` : "");
}

$("#flow-filters").addEventListener("submit", (e) => { e.preventDefault(); showFlows(); });
$("#flows-pause").addEventListener("click", () => {
  paused = !paused;
  $("#flows-pause").textContent = paused ? "Resume" : "Pause";
  if (!paused) { const waiting = held; held = []; waiting.forEach(addFlow); }
  updateFlowInfo();
});

async function drillFlow(f, row) {
  for (const r of document.querySelectorAll("#flows-table tr.selected")) r.classList.remove("selected");
  row.classList.add("selected");
  const peer = (title, p) => [el("dt", {}, title), el("dd", {}, `${peerName(p)}:${p.port} (identity ${p.identity})`),
    el("dt", {}, "labels"), el("dd", {}, el("code", {class: "labels"}, (p.labels || []).join(", ")))];
  const rule = el("dd", {id: "flow-rule"}, "…");
  $("#flow-panel").replaceChildren(el("h3", {}, f.summary),
    el("dl", {class: "kv"}, el("dt", {}, "verdict"), el("dd", {class: `verdict-${f.verdict}`}, f.verdict),
      el("dt", {}, "node"), el("dd", {}, `${f.node} (${f.direction || "-"})`),
      el("dt", {}, "drop reason"), el("dd", {}, f.drop_reason || "-"),
      ...peer("source", f.source), ...peer("destination", f.destination),
      el("dt", {}, "decided by"), rule),
    el("pre", {class: "muted"}, JSON.stringify(f, null, 1)));
  try {
    const d = (await api("/api/flows/explain", {flows: [f]})).decisions[0];
    rule.textContent = d.error ? `(${d.error})` : `${d.verdict} on ${d.side}: ${d.rule}`;
  } catch (err) { rule.replaceChildren(errorBox(err)); }
}

// -- policies ----------------------------------------------------------------------------
const removed = new Set();
let validateTimer = null;
let validation = 0;

async function showPolicies() {
  try {
    const {policies} = await api("/api/policies");
    const body = $("#policy-list tbody");
    body.replaceChildren();
    for (const p of policies) {
      const name = p.namespace ? `${p.namespace}/${p.name}` : p.name;
      const box = el("input", {type: "checkbox", "data-remove": name});
      box.checked = removed.has(name);
      box.addEventListener("change", () => { box.checked ? removed.add(name) : removed.delete(name);
        $("#editor-state").textContent = describeEdit(); });
      const row = el("tr", {class: "clickable", "data-policy": name}, el("td", {}, name), el("td", {}, `${p.rules}`),
                     el("td", {}, box));
      row.firstChild.addEventListener("click", () => loadPolicy(p));
      body.append(row);
    }
  } catch (err) { $("#policy-list").after(errorBox(err)); }
  const endpoints = await api("/api/map").catch(() => null);
  if (endpoints) $("#pods").replaceChildren(...endpoints.groups.flatMap((g) => g.pods).map((p) => el("option", {value: p})));
}

function describeEdit() {
  const parts = [];
  if ($("#editor").value.trim()) parts.push("apply the YAML");
  if (removed.size) parts.push(`delete ${[...removed].join(", ")}`);
  return parts.length ? `(proposed: ${parts.join("; ")})` : "";
}

async function loadPolicy(p) {
  const info = await api(`/api/policies/${p.namespace || "-"}/${encodeURIComponent(p.name)}`);
  $("#editor").value = info.yaml;
  editorChanged();
}

$("#policy-new").addEventListener("click", () => {
  $("#editor").value = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: new-policy\n" +
    "  namespace: default\nspec:\n  endpointSelector:\n    matchLabels:\n      app: example\n  ingress:\n  - {}\n";
  editorChanged();
});

function renderLines(bad) {
  const n = $("#editor").value.split("\n").length;
  const pre = $("#editor-lines");
  pre.replaceChildren(...Array.from({length: n}, (_, i) =>
    el("div", bad.has(i + 1) ? {class: "bad"} : {}, `${i + 1}`)));
  pre.scrollTop = $("#editor").scrollTop;
}
$("#editor").addEventListener("scroll", () => { $("#editor-lines").scrollTop = $("#editor").scrollTop; });

function editorChanged() {
  renderLines(new Set());
  $("#editor-state").textContent = describeEdit();
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 300);
}
$("#editor").addEventListener("input", editorChanged);

async function validate() {
  const text = $("#editor").value;
  const mine = ++validation;
  const list = $("#problems");
  if (!text.trim()) { list.replaceChildren(); renderLines(new Set()); return; }
  let result;
  try { result = await api("/api/policies/validate", {yaml: text}); }
  catch (err) { list.replaceChildren(el("li", {}, err.message)); return; }
  if (mine !== validation) return;  // an older answer after a newer edit
  const bad = new Set(result.problems.map((p) => p.line).filter(Boolean));
  renderLines(bad);
  list.replaceChildren(...(result.ok
    ? [el("li", {class: "ok"}, `valid: ${result.policies.map((p) => `${p.namespace ? p.namespace + "/" : ""}${p.name}`).join(", ")}`)]
    : result.problems.map((p) => el("li", {"data-field": p.field},
        p.line ? `line ${p.line} · ` : "", el("code", {}, p.field), `: ${p.description}`))));
}

function edited() {
  return {yaml: $("#editor").value, remove: [...removed]};
}

$("#whatif").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = Object.fromEntries(new FormData($("#whatif")));
  const out = $("#whatif-result");
  out.replaceChildren("…");
  try {
    const r = await api("/api/whatif", {...form, ...edited()});
    const block = (title, t) => el("div", {class: "result", "data-whatif": title},
      el("div", {class: `big verdict-${t.verdict}`}, `${t.verdict}`), el("div", {class: "muted"}, title),
      el("dl", {class: "kv"}, el("dt", {}, "egress"), el("dd", {}, el("span", {class: `verdict-${t.egress.verdict}`}, t.egress.verdict), ` ${t.egress.rule}`),
        el("dt", {}, "ingress"), el("dd", {}, el("span", {class: `verdict-${t.ingress.verdict}`}, t.ingress.verdict), ` ${t.ingress.rule}`)));
    out.replaceChildren(block("stored policies", r.current),
      ...(r.proposed ? [block("with the edits", r.proposed)] : []),
      el("div", {class: "muted"}, el("code", {class: "labels"}, `${r.src_labels.join(",")} → ${r.dst_labels.join(",")}`)));
  } catch (err) { out.replaceChildren(errorBox(err)); }
});

$("#impact-run").addEventListener("click", async () => {
  const out = $("#impact-result");
  out.replaceChildren("replaying recent flows…");
  try {
    const r = await api("/api/impact", edited());
    const rows = r.changed.map((c) => el("tr", {"data-impact": `${c.source}->${c.destination}`},
      el("td", {}, `${c.source} → ${c.destination}`), el("td", {}, `${c.port} ${c.request}`),
      el("td", {}, `${c.count}`),
      el("td", {}, el("span", {class: `verdict-${c.current.verdict}`}, c.current.verdict), ` ${c.current.rule}`),
      el("td", {}, el("span", {class: `verdict-${c.proposed.verdict}`}, c.proposed.verdict), ` ${c.proposed.rule}`)));
    out.replaceChildren(el("div", {class: "result", id: "impact-table"},
      el("div", {}, `${r.changed.length} of ${r.connections} connections (${r.flows_replayed} recent flows) would change`),
      el("table", {class: "grid"}, el("thead", {}, el("tr", {}, el("th", {}, "Connection"), el("th", {}, "Port"),
        el("th", {}, "Flows"), el("th", {}, "Now"), el("th", {}, "After"))), el("tbody", {}, ...rows))));
  } catch (err) { out.replaceChildren(errorBox(err)); }
});

$("#apply-run").addEventListener("click", async () => {
  const out = $("#apply-result");
  out.replaceChildren("applying, waiting for the nodes…");
  try {
    const r = await api("/api/apply", edited());
    removed.clear();
    $("#impact-result").replaceChildren();
    out.replaceChildren(el("div", {class: "result", id: "apply-table", "data-converged": `${r.converged}`},
      el("div", {class: r.converged ? "verdict-ALLOWED" : "verdict-DENIED"},
        r.converged ? `revision ${r.revision} applied on every concerned node` : `timed out waiting for revision ${r.revision}`),
      ...r.actions.map((a) => el("div", {}, a)),
      el("table", {class: "grid"}, el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "State"), el("th", {}, "Acked revision"))),
        el("tbody", {}, ...r.nodes.map((n) => el("tr", {"data-node": n.name}, el("td", {}, n.name),
          el("td", {class: n.state === "pending" ? "verdict-DENIED" : ""}, n.state), el("td", {}, `${n.acked_revision}`)))))));
    showPolicies();
  } catch (err) { out.replaceChildren(errorBox(err)); }
});

// -- cluster -----------------------------------------------------------------------------
function showCluster() {
  live("/api/cluster/stream", drawCluster, (err) => $("#cluster-summary").replaceChildren(errorBox(err)));
}

function drawCluster(c) {
  const s = c.status, counts = s.counts || {};
  const card = (title, value) => el("div", {class: "card"}, el("b", {}, `${value}`), title);
  $("#cluster-summary").replaceChildren(card("cluster", `${s.cluster_name} (id ${s.cluster_id})`),
    card("etcd revision", s.etcd ? s.etcd.revision : "-"), card("replicas", s.replicas.length),
    card("nodes", c.nodes.length), card("endpoints", counts.endpoints ?? "-"),
    card("identities", c.identities.length), card("policies", counts.policies ?? "-"),
    card("flows held", c.flows.flows_held ?? "-"));
  $("#cluster-nodes tbody").replaceChildren(...c.nodes.map((n) => {
    const sub = n.subscription || {};
    return el("tr", {"data-node": n.name}, el("td", {}, n.name), el("td", {}, `${n.node_id}`), el("td", {}, n.underlay_ip),
      el("td", {}, n.pod_cidr), el("td", {class: sub.connected ? "verdict-ALLOWED" : "verdict-DENIED"}, sub.connected ? "connected" : "not connected"),
      el("td", {}, sub.replica || "-"), el("td", {}, `${sub.acked_revision ?? "-"}`), el("td", {}, `${sub.lag_revisions ?? "-"}`));
  }));
  $("#cluster-services tbody").replaceChildren(...c.services.map((v) => el("tr", {},
    el("td", {}, `${v.namespace}/${v.name}`), el("td", {}, v.cluster_ip || "None"),
    el("td", {}, v.ports.map((p) => `${p.port}/${p.protocol}`).join(", ")),
    el("td", {}, v.backends.map((b) => `${b.endpoint} ${b.ip}:${b.port}`).join("; ")))));
  $("#cluster-identities tbody").replaceChildren(...c.identities.map((i) => el("tr", {},
    el("td", {}, `${i.id}`), el("td", {}, el("code", {class: "labels"}, i.labels.join(", "))), el("td", {}, `${i.references}`))));
  const mesh = c.clustermesh;
  $("#cluster-mesh").replaceChildren(mesh.remotes.length
    ? el("table", {class: "grid"}, el("thead", {}, el("tr", {}, ...["Remote", "Ready", "Nodes", "Endpoints", "Identities", "Last error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...mesh.remotes.map((r) => el("tr", {}, el("td", {}, r.cluster.name), el("td", {}, r.ready ? "ready" : "not ready"),
          el("td", {}, `${r.nodes}`), el("td", {}, `${r.endpoints}`), el("td", {}, `${r.identities}`), el("td", {}, r.last_error)))))
    : el("p", {class: "muted"}, `disabled (no remote cluster connected); ${mesh.nodes_with_all_remotes}/${mesh.nodes} nodes have every remote cluster's state`));
}

route();
