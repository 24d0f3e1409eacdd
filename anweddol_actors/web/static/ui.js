// The operator's page: polls api/state every 2 s and updates the table in place, so an
// expanded container stays expanded and its machine is fetched again only when its state
// changed. Everything from the server is written with textContent, never as HTML.
"use strict";

const POLL_MS = 2000;
const FETCH_TIMEOUT_MS = 10000;
const rows = new Map(); // container uuid -> {row, detail, state, drawn}

function $(id) {
  return document.getElementById(id);
}

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child);
  }
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

async function fetchBounded(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    return await fetch(url, { signal: controller.signal, cache: "no-store" });
  } finally {
    clearTimeout(timer);
  }
}

function showProblem(text) {
  const problem = $("problem");
  problem.textContent = text || "";
  problem.hidden = !text;
}

function showServer(server) {
  $("listen").textContent = `${server.listen} · version ${server.version}`;
  $("uptime").textContent = duration(server.uptime);
  $("containers").textContent = server.containers;
  $("available").textContent = server.available === "nolimit" ? "no limit" : server.available;
  $("runtime_errors").textContent = server.runtime_errors;
  $("requests").textContent = server.requests;
  const states = Object.entries(server.containers_by_state || {});
  $("by_state").textContent = states.length
    ? states.map(([state, count]) => `${state}: ${count}`).join(", ")
    : "none";
  $("updated").textContent = new Date().toLocaleTimeString();
}

function historyTable(history) {
  const body = element("tbody");
  for (const step of history) {
    const details = Object.entries(step.details || {})
      .map(([name, value]) => `${name}: ${value}`)
      .join("; ");
    body.append(
      element(
        "tr",
        {},
        element("td", { class: "when mono" }, (step.time || "").replace("T", " ").slice(0, 19) + " UTC"),
        element("td", {}, step.kind || ""),
        element("td", { class: "mono" }, step.trigger || ""),
        element("td", { class: "mono" }, `${step.source || "(new)"} → ${step.dest || ""}`),
        element("td", {}, details),
      ),
    );
  }
  const head = element(
    "thead",
    {},
    element(
      "tr",
      {},
      ...["time", "entity", "trigger", "from → to", "details"].map((t) => element("th", {}, t)),
    ),
  );
  return element("table", { class: "history" }, head, body);
}

async function drawMachine(entry, kind, state) {
  entry.drawn = state;
  const holder = entry.detail.querySelector(".machine");
  try {
    const url = `api/machine/${encodeURIComponent(kind)}.svg?state=${encodeURIComponent(state)}`;
    const answer = await fetchBounded(url);
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const parsed = new DOMParser().parseFromString(await answer.text(), "image/svg+xml");
    const svg = parsed.documentElement;
    if (svg.nodeName !== "svg") throw new Error("not an SVG");
    if (entry.drawn !== state) return; // the state moved on while this one loaded
    svg.setAttribute("data-state", state);
    holder.replaceChildren(document.importNode(svg, true));
  } catch (error) {
    entry.drawn = null; // try again at the next refresh
    holder.textContent = `machine not drawn: ${error.message}`;
  }
}

function newEntry(container) {
  const row = element("tr", { class: "container", "data-uuid": container.uuid });
  const detail = element("tr", { class: "detail", "data-uuid": container.uuid });
  const summary = element("summary", {}, "machine and journal history");
  const box = element(
    "details",
    { open: "" },
    summary,
    element("div", { class: "machine" }, "drawing…"),
    element("div", { class: "history" }),
  );
  detail.append(element("td", { colspan: "6" }, box));
  return { row, detail, summary, state: null, drawn: null, lastStep: undefined };
}

function updateEntry(entry, container) {
  const state = element("span", { class: "state" }, container.state);
  entry.row.replaceChildren(
    element("td", { class: "mono", title: container.uuid }, container.uuid),
    element("td", { class: "state-cell" }, state),
    element("td", { class: "num" }, duration(container.age)),
    element("td", { class: "mono" }, container.client || "unknown"),
    element("td", { class: "num" }, container.port === null ? "none" : String(container.port)),
    element(
      "td",
      { class: "num", title: container.expires_at || "no limit" },
      duration(container.expires_in),
    ),
  );
  entry.row.setAttribute("data-state", container.state);
  const history = container.history || [];
  const last = history.length ? history[history.length - 1].id : null;
  if (entry.lastStep !== last) {
    // Redrawn only when a step was added: a selection in the table survives the refresh.
    entry.lastStep = last;
    entry.summary.textContent = `machine and journal history (${history.length} transitions)`;
    entry.detail.querySelector("div.history").replaceChildren(historyTable(history));
  }
  entry.state = container.state;
  if (entry.drawn !== container.state) {
    drawMachine(entry, container.kind, container.state);
  }
}

function showContainers(containers) {
  const body = $("rows");
  const seen = new Set();
  for (const container of containers) {
    seen.add(container.uuid);
    let entry = rows.get(container.uuid);
    if (entry === undefined) {
      entry = newEntry(container);
      rows.set(container.uuid, entry);
      body.append(entry.row, entry.detail);
    }
    updateEntry(entry, container);
  }
  for (const [uuid, entry] of rows) {
    if (!seen.has(uuid)) {
      entry.row.remove();
      entry.detail.remove();
      rows.delete(uuid);
    }
  }
  $("empty").hidden = rows.size !== 0;
}

async function refresh() {
  try {
    const answer = await fetchBounded("api/state");
    if (!answer.ok) throw new Error(`the server answered HTTP ${answer.status}`);
    const state = (await answer.json()).data;
    showServer(state.server);
    showContainers(state.containers);
    showProblem(null);
  } catch (error) {
    const reason = error.name === "AbortError" ? "no answer in 10 s" : error.message;
    showProblem(`Cannot read the server's state (${reason}); retrying every 2 s.`);
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
