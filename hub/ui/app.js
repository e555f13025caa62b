// The hub's ops dashboard: plain JavaScript on the JSON API (/api). Data is only ever put
// into the page with textContent (never as HTML). Writes carry the session's CSRF token.
"use strict";

let me = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET" && me && me.csrf) opts.headers["X-CSRF-Token"] = me.csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch("/api" + path, opts);
  if (r.status === 401 && document.body.dataset.page !== "login") {
    location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
    return { ok: false, status: 401, data: null };
  }
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { ok: r.ok, status: r.status, data };
}

function main(...children) {
  const m = document.getElementById("main");
  m.replaceChildren(...children.filter(c => c !== null && c !== undefined));
  return m;
}

function problem(res) {
  const d = res.data || {};
  return el("p", { class: "error", role: "alert", text: `${res.status} ${d.error || ""}: ${d.message || ""}` });
}

function can(role) {
  const order = ["viewer", "operator", "steward", "admin"];
  return me && order.indexOf(me.role) >= order.indexOf(role);
}

function table(columns, rows) {
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, columns.map(c => el("th", { text: c[0] })))),
    el("tbody", {}, rows.map(r => el("tr", {}, columns.map(c => {
      const v = c[1](r);
      return el("td", {}, v instanceof Node ? v : (v === null || v === undefined ? "" : String(v)));
    }))))));
}

// -- login ----------------------------------------------------------------------------------

function loginPage() {
  document.getElementById("nav").replaceChildren();
  const out = el("p", { id: "login-error", class: "error", role: "alert" });
  const form = el("form", { id: "login", class: "card" },
    el("h1", { text: "Log in" }),
    el("label", {}, "Name", el("input", { name: "name", autocomplete: "username", required: true })),
    el("label", {}, "Password", el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    el("button", { type: "submit", text: "Log in" }), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const res = await api("POST", "/auth/login", { name: form.name.value, password: form.password.value });
    if (!res.ok) { out.textContent = (res.data && res.data.message) || `error ${res.status}`; return; }
    const next = new URLSearchParams(location.search).get("next") || "/ui/";
    location.assign(next.startsWith("/ui/") ? next : "/ui/");
  });
  main(form);
}

// -- overview -------------------------------------------------------------------------------

let previous = null;

async function overviewPage() {
  const res = await api("GET", "/overview");
  if (!res.ok) { main(problem(res)); return; }
  const d = res.data, now = Date.now();
  const counters = d.metrics.filter(m => m.name.endsWith("_total"));
  const before = new Map(previous ? previous.data.metrics.map(m => [m.name + JSON.stringify(m.labels), m.value]) : []);
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  const rate = (m) => {
    const b = before.get(m.name + JSON.stringify(m.labels));
    return b === undefined || !seconds ? "" : ((m.value - b) / seconds).toFixed(2);
  };
  previous = { at: now, data: d };
  const labels = (m) => Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(" ");
  // the same figures /metrics exposes: lag per group, sources' last poll, mappings live
  const named = (name) => d.metrics.filter(m => m.name === name);
  const lag = new Map();
  for (const m of named("hub_consumer_lag")) {
    const g = lag.get(m.labels.group) || { group: m.labels.group, lag: 0, partitions: 0 };
    g.lag += m.value; g.partitions += 1; lag.set(m.labels.group, g);
  }
  const lastPoll = new Map(named("hub_source_last_poll_timestamp_seconds").map(m => [m.labels.source, m.value]));
  const failing = new Map(named("hub_source_poll_failing").map(m => [m.labels.source, m.value]));
  const when = (seconds) => seconds ? new Date(seconds * 1000).toISOString() : "";
  const reloadAt = (named("hub_config_reload_timestamp_seconds")[0] || {}).value;
  const reloadOk = (named("hub_config_reload_ok")[0] || { value: 1 }).value;
  const live = named("hub_mapping_version_info").map(m => m.labels);
  main(
    el("h1", { text: "Overview" }),
    el("p", { class: "muted", id: "updated", text: `Updated ${new Date(now).toLocaleTimeString()}; refreshes every 5 s.` }),
    el("section", {}, el("h2", { text: "Open dead letters by error class" }),
      d.dead_letters.length ? table([["Stage", r => r.stage], ["Error class", r => el("a", { href: `/ui/failed?error_class=${encodeURIComponent(r.error_class)}&stage=${encodeURIComponent(r.stage)}&status=open`, text: r.error_class || "(none)" })], ["Count", r => r.count]], d.dead_letters)
        : el("p", { class: "muted", text: "None." })),
    el("section", {}, el("h2", { text: "Destinations" }),
      el("div", { id: "destinations" }, table([["Destination", r => r.name], ["Circuit", r => el("span", { class: `badge ${r.circuit}`, text: r.circuit })],
        ["Delivery", pauseCell], ["Parked", r => r.parked], ["Routes", r => r.routes.join(", ")]], d.destinations))),
    el("section", {}, el("h2", { text: "Consumer lag per group" }),
      lag.size ? el("div", { id: "lag" }, table([["Consumer group", g => g.group], ["Records behind", g => g.lag], ["Partitions", g => g.partitions]], [...lag.values()]))
        : el("p", { class: "muted", text: "No consumer runs in this process." })),
    el("section", {}, el("h2", { text: "Polling sources" }),
      !d.sources.length ? el("p", { class: "muted", text: "No polling sources." }) : el("div", { id: "polling" }, table([["Source", r => r.name], ["Last poll here", r => when(lastPoll.get(r.name))],
        ["State", r => failing.get(r.name) ? el("span", { class: "badge open", text: "failing" }) : (lastPoll.has(r.name) ? "ok" : "")],
        ["Last error", r => r.last_error], ["Cursor moved", r => r.cursor_moved_at], ["Polls here", r => r.polls]], d.sources))),
    el("section", {}, el("h2", { text: "Mapping versions live" }),
      el("p", { class: reloadOk ? "muted" : "error", id: "reload-state", text: reloadOk
        ? (reloadAt ? `Last reload ${when(reloadAt)}.` : "Not reloaded since the start.")
        : `The last change was refused (${when(reloadAt)}); the previous version runs: see Mappings and connections.` }),
      el("div", { id: "live-mappings" }, table([["Mapping", m => el("a", { href: "/ui/mappings", text: m.mapping })], ["Version", m => m.version]], live))),
    el("section", {}, el("h2", { text: "Events (this process)" }),
      table([["Figure", r => r.name], ["Labels", labels], ["Total", r => r.value], ["Per second", rate]], counters)),
  );
}

// An operator's pause of a destination: its events wait in Kafka until it is resumed.
function pauseCell(r) {
  const p = r.pause;
  const state = p ? el("span", { class: "badge paused", text: "paused" }) : el("span", { class: "muted", text: "sending" });
  const why = p ? el("span", { class: "pause-why", text: ` by ${p.paused_by} since ${p.paused_at}${p.reason ? ": " + p.reason : ""}` }) : null;
  if (!can("operator")) return el("span", {}, state, why);
  const go = el("button", { type: "button", class: p ? "resume" : "pause", "data-destination": r.name, text: p ? "Resume" : "Pause" });
  go.addEventListener("click", async () => {
    let body;
    if (!p) {
      const reason = prompt(`Pause ${r.name}? Nothing is sent to it, from any hub process, until it is resumed; its events wait in Kafka. Why (shown to other operators)?`, "");
      if (reason === null) return;
      body = reason ? { reason } : {};
    }
    go.disabled = true;
    const res = await api("POST", `/destinations/${encodeURIComponent(r.name)}/${p ? "resume" : "pause"}`, body);
    if (!res.ok) { go.replaceWith(problem(res)); return; }
    overviewPage();
  });
  return el("span", {}, state, why, " ", go);
}

// -- failed messages ------------------------------------------------------------------------

const FILTERS = ["status", "connection", "destination", "stage", "error_class", "since", "until", "q"];

async function failedPage() {
  const params = new URLSearchParams(location.search);
  const form = el("form", { id: "filters", class: "filters" },
    FILTERS.map(f => el("label", {}, f.replace("_", " "),
      f === "status" ? el("select", { name: f }, ["", "open", "replayed", "discarded"].map(s => el("option", { value: s, selected: params.get(f) === s, text: s || "any" })))
        : el("input", { name: f, value: params.get(f) || "", placeholder: f === "since" || f === "until" ? "2026-12-01T00:00:00Z" : "" }))),
    el("button", { type: "submit", text: "Filter" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const f of FILTERS) if (form[f].value) q.set(f, form[f].value);
    location.assign("/ui/failed?" + q.toString());
  });
  const query = new URLSearchParams();
  for (const f of [...FILTERS, "after"]) if (params.get(f)) query.set(f, params.get(f));
  query.set("limit", "50");
  const res = await api("GET", "/deadletters?" + query.toString());
  if (!res.ok) { main(el("h1", { text: "Failed messages" }), form, problem(res)); return; }
  const d = res.data;
  const nextLink = d.next ? (() => { const n = new URLSearchParams(params); n.set("after", d.next); return el("a", { id: "next-page", href: "/ui/failed?" + n.toString(), text: "Next page →" }); })() : null;
  const firstLink = params.get("after") ? (() => { const n = new URLSearchParams(params); n.delete("after"); return el("a", { href: "/ui/failed?" + n.toString(), text: "← First page" }); })() : null;
  main(
    el("h1", { text: "Failed messages" }), form,
    el("p", { class: "muted", id: "total", text: `${d.total} matching` }),
    table([
      ["Failed at", r => r.failed_at],
      ["Stage", r => r.stage],
      ["Error class", r => r.error_class],
      ["Connection", r => r.connection],
      ["Destination", r => r.destination],
      ["Status", r => el("span", { class: `badge ${r.status}`, text: r.status })],
      ["Payload", r => el("a", { class: "open-item", href: `/ui/failed/${encodeURIComponent(r.id)}`, text: (r.payload_preview || "(empty)").slice(0, 80) })],
    ], d.items),
    el("p", { class: "pager" }, firstLink, " ", nextLink),
    can("operator") ? bulkReplay(params, d.total) : null);
}

function bulkReplay(params, total) {
  // Replay every dead letter the filter matches (open ones unless a status is chosen): the
  // count first, then a job whose progress shows here, with cancel.
  const q = new URLSearchParams();
  for (const f of FILTERS) if (params.get(f)) q.set(f, params.get(f));
  const status = params.get("status") || "open";
  const box = el("section", { id: "bulk", class: "card wide" }, el("h2", { text: "Replay all matching" }));
  const progress = el("p", { id: "bulk-progress", role: "status" });
  const start = el("button", { id: "bulk-start", type: "button", text: `Replay ${status} matching…` });
  const cancel = el("button", { id: "bulk-cancel", type: "button", class: "danger", text: "Cancel", hidden: true });
  let job = null;
  start.addEventListener("click", async () => {
    const preview = await api("GET", `/deadletters?${q.toString()}&status=${status}&limit=1`);
    if (!preview.ok) { progress.replaceChildren(problem(preview)); return; }
    if (!confirm(`Replay ${preview.data.total} ${status} dead letters?`)) return;
    const r = await api("POST", `/replays?${q.toString()}`);
    if (!r.ok) { progress.replaceChildren(problem(r)); return; }
    job = r.data; start.disabled = true; cancel.hidden = false;
    watch();
  });
  cancel.addEventListener("click", async () => {
    if (job) { const r = await api("DELETE", `/replays/${job.id}`); if (r.ok) job = r.data; show(); }
  });
  const show = () => {
    progress.textContent = `Job ${job.id.slice(0, 8)}: ${job.state}, ${job.done} of ${job.total} replayed, ${job.failed} failed`;
  };
  const watch = async () => {
    const r = await api("GET", `/replays/${job.id}`);
    if (r.ok) job = r.data;
    show();
    if (job.state === "running" || job.state === "cancelling") setTimeout(watch, 1000); else cancel.hidden = true;
  };
  box.append(el("p", { class: "muted", text: `${total} match the filter now; the count of those ${status} is asked again before starting.` }), start, " ", cancel, progress);
  return box;
}

// -- one failed message: inspect, fix, replay, discard ---------------------------------------

function lineDiff(a, b) {
  // Lines of a and b with "-"/"+"/" " marks (longest common subsequence).
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  if (n * m > 4000000) return [["!", "(too large to compare line by line)"]];
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(["-", x[i++]]);
    else out.push(["+", y[j++]]);
  }
  while (i < n) out.push(["-", x[i++]]);
  while (j < m) out.push(["+", y[j++]]);
  return out;
}

async function messagePage() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const res = await api("GET", `/deadletters/${encodeURIComponent(id)}`);
  if (!res.ok) { main(el("h1", { text: "Failed message" }), problem(res)); return; }
  const d = res.data;
  const original = typeof d.payload === "string" ? d.payload : JSON.stringify(d.payload, null, 2);
  const facts = [
    ["Status", d.status], ["Failed at", d.failed_at], ["Stage", d.stage], ["Error class", d.error_class],
    ["Error", d.error], ["Mapping", d.mapping ? `${d.mapping} (version ${d.mapping_version || "?"})` : null],
    ["Connection", d.connection], ["Route", d.route], ["Destination", d.destination],
    ["Event", `${d.event_type || ""} ${d.event_id || ""}`], ["Correlation id", d.correlation_id],
    ["Attempts", `${d.attempts}${d.attempt_times ? ": " + d.attempt_times.join(", ") : ""}`],
    ["Replays", d.replays], ["Outcome", d.outcome],
  ];
  const editor = el("textarea", { id: "payload", rows: 18, spellcheck: "false", "aria-label": "payload", readonly: !can("operator") });
  editor.value = typeof d.replayed_payload === "undefined" ? original
    : (typeof d.replayed_payload === "string" ? d.replayed_payload : JSON.stringify(d.replayed_payload, null, 2));
  const syntax = el("p", { id: "syntax", class: "muted" });
  const diff = el("pre", { id: "diff", class: "diff" });
  const result = el("div", { id: "result", role: "status" });
  const replayBtn = el("button", { id: "replay", type: "button", text: "Replay" });
  const discardReason = el("input", { id: "discard-reason", placeholder: "reason for discarding", "aria-label": "reason" });
  const discardBtn = el("button", { id: "discard", type: "button", class: "danger", text: "Discard" });
  const check = () => {
    let parsed;
    try { parsed = JSON.parse(editor.value); syntax.textContent = "Valid JSON."; syntax.className = "ok"; }
    catch (e) { syntax.textContent = "JSON syntax error: " + e.message; syntax.className = "error"; replayBtn.disabled = true; return undefined; }
    replayBtn.disabled = !can("operator") || d.status === "discarded";
    diff.replaceChildren(...lineDiff(original, editor.value).filter(l => l[0] !== " ").map(l => el("div", { class: l[0] === "+" ? "add" : "del", text: `${l[0]} ${l[1]}` })));
    if (!diff.childNodes.length) diff.append(el("div", { class: "muted", text: "No change from the original." }));
    return parsed;
  };
  editor.addEventListener("input", check);
  replayBtn.addEventListener("click", async () => {
    const parsed = check();
    if (parsed === undefined) return;
    const edited = editor.value !== original;
    replayBtn.disabled = true;
    const r = await api("POST", `/deadletters/${encodeURIComponent(id)}/replay`, edited ? { payload: parsed } : {});
    result.replaceChildren(r.ok ? el("p", { class: "ok", id: "replayed", text: `Replayed: attempt ${r.data.attempt || ""} sent.` }) : problem(r));
    if (r.ok) setTimeout(() => location.reload(), 800); else replayBtn.disabled = false;
  });
  discardBtn.addEventListener("click", async () => {
    if (!discardReason.value.trim()) { result.replaceChildren(el("p", { class: "error", text: "Give a reason for discarding." })); return; }
    const r = await api("POST", `/deadletters/${encodeURIComponent(id)}/discard`, { reason: discardReason.value });
    result.replaceChildren(r.ok ? el("p", { class: "ok", text: "Discarded." }) : problem(r));
    if (r.ok) setTimeout(() => location.reload(), 800);
  });
  const chain = d.correlation_id ? await api("GET", `/deadletters?correlation_id=${encodeURIComponent(d.correlation_id)}&limit=50`) : null;
  main(
    el("p", {}, el("a", { href: "/ui/failed", text: "← Failed messages" })),
    el("h1", { text: `Failed message ${id.slice(0, 12)}…` }),
    el("dl", { class: "facts" }, facts.filter(f => f[1] !== null && f[1] !== undefined && f[1] !== "").map(f => [el("dt", { text: f[0] }), el("dd", { text: String(f[1]) })])),
    el("section", {}, el("h2", { text: "Payload" }), editor, syntax,
      el("h3", { text: "Changes from the original" }), diff,
      can("operator") ? el("div", { class: "actions" }, replayBtn, discardReason, discardBtn) : el("p", { class: "muted", id: "read-only", text: `You are a ${me.role}: you can read, not replay.` }),
      result),
    el("section", {}, el("h2", { text: "Replay attempts" }),
      table([["At", a => a.replayed_at], ["Edited", a => a.edited ? "yes" : "no"], ["Sent", a => a.sent ? "yes" : "no"], ["Outcomes", a => (a.outcomes || []).map(o => `${o.at}: ${o.outcome}`).join("; ") || a.error]], d.replay_attempts || [])),
    el("section", {}, el("h2", { text: "Headers" }), table([["Name", h => h[0]], ["Value", h => h[1]]], d.headers || [])),
    chain && chain.ok ? el("section", {}, el("h2", { text: "Dead letters of the same chain (correlation id)" }),
      table([["Failed at", r => r.failed_at], ["Stage", r => r.stage], ["Status", r => r.status], ["Item", r => el("a", { href: `/ui/failed/${encodeURIComponent(r.id)}`, text: r.id.slice(0, 12) })]], chain.data.items)) : null,
  );
  check();
}

// -- audit log ------------------------------------------------------------------------------

async function auditPage() {
  const params = new URLSearchParams(location.search);
  const res = await api("GET", "/audit?limit=100" + (params.get("before") ? `&before=${encodeURIComponent(params.get("before"))}` : ""));
  if (!res.ok) { main(el("h1", { text: "Audit log" }), problem(res)); return; }
  const short = (v) => v === null || v === undefined ? "" : JSON.stringify(v).slice(0, 300);
  main(el("h1", { text: "Audit log" }),
    table([["At", r => r.at], ["Who", r => r.actor], ["What", r => r.action], ["Before", r => short(r.before)], ["After", r => short(r.after)], ["From", r => r.ip]], res.data.items),
    res.data.next ? el("a", { href: `/ui/audit?before=${res.data.next}`, text: "Older →" }) : null);
}

// -- master data: quality, review queue, search, golden records ----------------------------

const ENTITIES = ["customer", "product", "order", "inventory"];

function short(v, n = 300) {
  return v === null || v === undefined ? "" : (typeof v === "string" ? v : JSON.stringify(v)).slice(0, n);
}

function goldenLink(entity, id) {
  return el("a", { class: "golden-link", href: `/ui/mdm/${encodeURIComponent(entity)}/${encodeURIComponent(id)}`, text: id });
}

function stewardReason(id) {
  return el("input", { id, class: "reason", placeholder: "reason (kept in the history)", "aria-label": "reason", maxlength: 2000 });
}

async function mdmPage() {
  const params = new URLSearchParams(location.search);
  const entity = ENTITIES.includes(params.get("entity")) ? params.get("entity") : "customer";
  const pick = el("select", { id: "entity", "aria-label": "entity" }, ENTITIES.map(e => el("option", { value: e, selected: e === entity, text: e })));
  pick.addEventListener("change", () => { const q = new URLSearchParams(params); q.set("entity", pick.value); location.assign("/ui/mdm?" + q.toString()); });
  const [quality, reviews] = await Promise.all([
    api("GET", `/mdm/quality?entity=${entity}`),
    api("GET", `/mdm/reviews?status=open&entity=${entity}&limit=50`),
  ]);
  const result = el("div", { id: "mdm-result", role: "status" });

  let qualityBox;
  if (!quality.ok) qualityBox = problem(quality);
  else {
    const q = quality.data;
    qualityBox = el("div", {},
      el("dl", { class: "facts", id: "quality" },
        [["Golden records active", q.golden_records.active], ["Golden records merged", q.golden_records.merged],
         ["Duplicates found", q.duplicates_found], ["Linked by a rule or score", q.duplicates_linked],
         ["Merged (net of unmerges)", q.duplicates_merged], ["Review tasks open", q.review_tasks.open],
         ["Review tasks accepted", q.review_tasks.accepted], ["Review tasks rejected", q.review_tasks.rejected]]
          .map(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])),
      el("h3", { text: "Records failing normalisation, by source and field" }),
      q.normalisation_failures.length
        ? table([["Source system", r => r.system], ["Field", r => r.field], ["Records", r => r.records]], q.normalisation_failures)
        : el("p", { class: "muted", text: "None." }));
  }

  let queue;
  if (!reviews.ok) queue = problem(reviews);
  else if (!reviews.data.items.length) queue = el("p", { class: "muted", id: "queue-empty", text: "No open review tasks." });
  else queue = el("div", { id: "queue" }, reviews.data.items.map(t => reviewCard(t, result)),
    reviews.data.total > reviews.data.items.length ? el("p", { class: "muted", text: `${reviews.data.total - reviews.data.items.length} more; decide these first.` }) : null);

  const search = el("form", { id: "search", class: "filters" },
    ["name", "email", "phone"].map(f => el("label", {}, f, el("input", { name: f, value: params.get(f) || "", maxlength: 200 }))),
    el("button", { type: "submit", text: "Search" }));
  search.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams({ entity });
    for (const f of ["name", "email", "phone"]) if (search[f].value.trim()) q.set(f, search[f].value.trim());
    location.assign("/ui/mdm?" + q.toString() + "#found");
  });
  let found = null;
  const terms = new URLSearchParams();
  for (const f of ["name", "email", "phone"]) if (params.get(f)) terms.set(f, params.get(f));
  if ([...terms].length) {
    const r = await api("GET", `/mdm/${entity}/search?${terms.toString()}&limit=50`);
    found = !r.ok ? problem(r) : (r.data.items.length
      ? table([["Golden id", g => goldenLink(entity, g.golden_id)], ["Status", g => g.status],
        ["Fields", g => Object.entries(g.fields).map(([k, v]) => `${k}: ${short(v, 60)}`).join("; ")],
        ["Known as", g => g.external_refs.map(x => `${x.system}:${x.id}`).join(", ")]], r.data.items)
      : el("p", { class: "muted", text: "No golden record matches." }));
  }
  const lookup = el("form", { id: "lookup", class: "filters" },
    el("label", {}, "system", el("input", { name: "system", required: true, maxlength: 64 })),
    el("label", {}, "external id", el("input", { name: "external_id", required: true, maxlength: 255 })),
    el("button", { type: "submit", text: "Look up" }));
  const lookupOut = el("div", { id: "lookup-result" });
  lookup.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams({ system: lookup.system.value, external_id: lookup.external_id.value });
    const r = await api("GET", `/mdm/${entity}/lookup?${q.toString()}`);
    lookupOut.replaceChildren(r.ok ? el("p", {}, `${r.data.system}:${r.data.external_id} → `, goldenLink(entity, r.data.resolves_to), ` (linked by ${r.data.linked_by}${r.data.reason ? ": " + r.data.reason : ""})`) : problem(r));
  });

  let mergeBox = null;
  if (can("steward")) {
    const survivor = el("input", { id: "merge-survivor", placeholder: "survivor golden id", "aria-label": "survivor", maxlength: 64 });
    const merged = el("input", { id: "merge-merged", placeholder: "golden id merged into it", "aria-label": "merged", maxlength: 64 });
    const reason = stewardReason("merge-reason");
    const go = el("button", { id: "merge", type: "button", text: "Merge" });
    go.addEventListener("click", async () => {
      const r = await api("POST", `/mdm/${entity}/merge`, { survivor: survivor.value.trim(), merged: merged.value.trim(), steward: me.name || undefined, reason: reason.value || undefined });
      result.replaceChildren(r.ok ? el("p", { class: "ok", text: `Merged ${r.data.merged} into ${r.data.survivor}.` }) : problem(r));
    });
    mergeBox = el("section", {}, el("h2", { text: "Merge two golden records" }), el("div", { class: "actions" }, survivor, merged, reason, go));
  }

  main(
    el("h1", { text: "Master data" }),
    el("label", { class: "inline" }, "Entity ", pick),
    result,
    el("section", {}, el("h2", { text: "Review queue" }), queue),
    el("section", {}, el("h2", { text: "Data quality" }), qualityBox),
    el("section", { id: "found" }, el("h2", { text: "Find a golden record" }), search, found, lookup, lookupOut),
    mergeBox);
}

function reviewCard(t, result) {
  const reason = stewardReason(`reason-${t.id}`);
  const decide = async (path, body) => {
    const r = await api("POST", `/mdm/reviews/${t.id}/${path}`, { steward: me.name || undefined, reason: reason.value || undefined, ...body });
    result.replaceChildren(r.ok ? el("p", { class: "ok", id: "decided", text: `Review task ${t.id} ${r.data.status}.` }) : problem(r));
    if (r.ok) setTimeout(() => location.reload(), 600);
  };
  const steward = can("steward");
  const reject = steward ? el("button", { type: "button", class: "danger reject", text: "Not the same: keep apart", onclick: () => decide("reject", {}) }) : null;
  return el("article", { class: "review card wide", "data-review": t.id },
    el("h3", {}, `Task ${t.id}: ${t.system}:${t.external_id} → `, goldenLink(t.entity, t.golden_id), ` (score ${Number(t.score).toFixed(3)})`),
    el("p", { class: "muted", text: `Since ${t.created_at}` }),
    table([["Candidate", c => goldenLink(t.entity, c.golden_id)], ["Score", c => c.score], ["Probability", c => c.probability],
      ["", c => steward ? el("button", { type: "button", class: "accept", "data-candidate": c.golden_id, text: "Same: merge into it", onclick: () => decide("accept", { golden_id: c.golden_id }) }) : ""]], t.candidates || []),
    el("details", {}, el("summary", { text: "Why: field by field" }),
      table([["Field", f => f.field], ["This record", f => short(f.left, 80)], ["Candidate", f => short(f.right, 80)], ["Similarity", f => f.similarity], ["Weight", f => f.weight]], Array.isArray(t.explanation) ? t.explanation : [])),
    steward ? el("div", { class: "actions" }, reason, reject) : null);
}

// What a golden record holds (fields, crosswalk, history), its sections' ids prefixed by `id`.
function goldenSections(g, id = "") {
  const fields = Object.entries(g.fields || {}).map(([name, f]) => ({ name, ...(f && typeof f === "object" ? f : { value: f }) }));
  return [
    el("section", {}, el("h2", { text: "Fields and where each came from" }),
      el("div", { id: id + "fields" }, table([["Field", f => f.name], ["Value", f => short(f.value, 200)], ["From system", f => f.system], ["Source id", f => f.source_id], ["At", f => f.at], ["Rule", f => f.rule]], fields))),
    el("section", {}, el("h2", { text: "Crosswalk" }),
      el("div", { id: id + "crosswalk" }, table([["System", r => r.system], ["External id", r => r.external_id], ["Linked at", r => r.linked_at], ["By", r => r.linked_by], ["Why", r => r.reason]], g.crosswalk))),
    (g.open_reviews || []).length ? el("section", {}, el("h2", { text: "Open review tasks" }),
      table([["Task", t => el("a", { href: `/ui/mdm?entity=${encodeURIComponent(g.entity)}`, text: String(t.id) })], ["Record", t => `${t.system}:${t.external_id}`], ["Score", t => t.score]], g.open_reviews)) : null,
    el("section", {}, el("h2", { text: "History (newest first)" }),
      el("div", { id: id + "history" }, table([["At", h => h.at], ["Action", h => h.action], ["By", h => h.actor], ["Why", h => h.reason], ["Detail", h => short(h.detail, 300)]], g.history))),
  ];
}

// An alias or a merged id stands for another golden record: say which, and why.
function standsFor(g) {
  const step = (g.history || []).find(h => h.action === "alias" || (h.action === "link" && h.detail && h.detail.alias === g.golden_id));
  const from = step && step.detail ? `${step.detail.system}:${step.detail.external_id}` : null;
  const words = g.status === "alias"
    ? [`${g.golden_id} is not a golden record of its own: it is the id ${from ? `derived for ${from}` : "a record had"} before it was linked to `, goldenLink(g.entity, g.merged_into), ". It stays valid and resolves to "]
    : [`${g.golden_id} was merged into `, goldenLink(g.entity, g.merged_into), ". It resolves to "];
  return el("p", { id: "golden-resolves", class: "notice" }, ...words, goldenLink(g.entity, g.resolves_to), ".");
}

async function goldenPage() {
  const [, , , entity, id] = location.pathname.split("/").map(decodeURIComponent);
  const res = await api("GET", `/mdm/${encodeURIComponent(entity)}/golden/${encodeURIComponent(id)}`);
  const back = el("p", {}, el("a", { href: `/ui/mdm?entity=${encodeURIComponent(entity)}`, text: "← Master data" }));
  if (!res.ok) { main(back, el("h1", { text: `Golden ${entity}` }), problem(res)); return; }
  const g = res.data;
  const standsIn = g.status === "alias" || g.status === "merged";
  // the record it resolves to, shown below: an alias has no fields or crosswalk of its own
  const target = standsIn && g.resolves_to !== g.golden_id
    ? await api("GET", `/mdm/${encodeURIComponent(entity)}/golden/${encodeURIComponent(g.resolves_to)}`) : null;
  const result = el("div", { id: "golden-result", role: "status" });
  let actions = null;
  // only what can succeed: merge into an active record; unmerge a merged one whose survivor is
  // not merged itself; unlink an alias's record still linked; nothing on a crosswalk-only id
  if (can("steward")) {
    const reason = stewardReason("golden-reason");
    if (g.status === "merged" && g.merged_into === g.resolves_to) {
      const undo = el("button", { id: "unmerge", type: "button", class: "danger", text: `Unmerge from ${g.merged_into}` });
      undo.addEventListener("click", async () => {
        const r = await api("POST", `/mdm/${encodeURIComponent(entity)}/unmerge`, { merged: g.golden_id, steward: me.name || undefined, reason: reason.value || undefined });
        result.replaceChildren(r.ok ? el("p", { class: "ok", id: "unmerged", text: "Unmerged." }) : problem(r));
        if (r.ok) setTimeout(() => location.reload(), 600);
      });
      actions = el("div", { class: "actions" }, reason, undo);
    } else if (g.status === "alias") {
      // a record linked by a rule, a score or a destination: undone by unmerging its alias,
      // while the record is still linked to what the alias resolves to
      const step = (g.history || []).find(h => h.detail && h.detail.system && (h.action === "alias" || h.detail.alias === g.golden_id));
      const still = step && target && target.ok && target.data.status === "active" && (target.data.crosswalk || []).some(r => r.system === step.detail.system && r.external_id === step.detail.external_id);
      if (still) {
        const unlink = el("button", { id: "unlink", type: "button", class: "danger", text: `Unlink ${step.detail.system}:${step.detail.external_id}: a golden record of its own` });
        unlink.addEventListener("click", async () => {
          const r = await api("POST", `/mdm/${encodeURIComponent(entity)}/unmerge`, { merged: g.golden_id, steward: me.name || undefined, reason: reason.value || undefined });
          result.replaceChildren(r.ok ? el("p", { class: "ok", id: "unlinked", text: "Unlinked." }) : problem(r));
          if (r.ok) setTimeout(() => location.reload(), 600);
        });
        actions = el("div", { class: "actions" }, reason, unlink);
      }
    } else if (g.status === "merged") {
      actions = el("p", { class: "muted", id: "unmerge-first" }, "To unmerge it, unmerge ", goldenLink(entity, g.merged_into), " first (it was merged further).");
    } else if (g.status === "active") {
      const other = el("input", { id: "merge-other", placeholder: "golden id to merge into this one", "aria-label": "merged", maxlength: 64 });
      const go = el("button", { id: "merge-in", type: "button", text: "Merge into this" });
      go.addEventListener("click", async () => {
        const r = await api("POST", `/mdm/${encodeURIComponent(entity)}/merge`, { survivor: g.golden_id, merged: other.value.trim(), steward: me.name || undefined, reason: reason.value || undefined });
        result.replaceChildren(r.ok ? el("p", { class: "ok", text: "Merged." }) : problem(r));
        if (r.ok) setTimeout(() => location.reload(), 600);
      });
      actions = el("div", { class: "actions" }, other, reason, go);
    }
  }
  const own = g.status === "alias"
    ? [el("section", {}, el("h2", { text: "History (newest first)" }),
        el("div", { id: "history" }, table([["At", h => h.at], ["Action", h => h.action], ["By", h => h.actor], ["Why", h => h.reason], ["Detail", h => short(h.detail, 300)]], g.history)))]
    : goldenSections(g);
  const resolved = target === null ? null : target.ok
    ? el("section", { id: "resolved" }, el("h2", {}, "What it resolves to: ", goldenLink(entity, target.data.golden_id), ` (${target.data.status})`), ...goldenSections(target.data, "resolved-"))
    : el("section", { id: "resolved" }, problem(target));
  main(back,
    el("h1", { text: `${g.status === "alias" ? "Alias" : "Golden"} ${g.entity} ${g.golden_id}` }),
    el("dl", { class: "facts", id: "golden-facts" },
      [["Status", g.status], ["Merged into", g.merged_into], ["Resolves to", g.resolves_to], ["Created", g.created_at], ["Updated", g.updated_at]]
        .filter(f => f[1]).map(([k, v]) => [el("dt", { text: k }), el("dd", {}, k === "Merged into" || k === "Resolves to" ? goldenLink(g.entity, v) : String(v))])),
    standsIn ? standsFor(g) : null,
    g.status === "linked" ? el("p", { class: "muted", id: "golden-resolves" }, "The crosswalk links these ids to this golden id; master data keeps no golden record for it (no matching for this entity).") : null,
    actions, result, ...own, resolved);
}

// -- users and API tokens (admins) ------------------------------------------------------------

async function usersPage(flash) {
  const [users, tokens] = await Promise.all([api("GET", "/users"), api("GET", "/tokens")]);
  if (!users.ok) { main(el("h1", { text: "Users and tokens" }), problem(users)); return; }
  const roles = users.data.roles;
  const result = el("div", { id: "users-result", role: "status" }, flash ? el("p", { class: "ok", text: flash }) : null);
  const done = async (r, text) => {
    if (r.ok) await usersPage(text); else result.replaceChildren(problem(r));
  };
  const userRow = (u) => {
    const role = el("select", { class: "role", "aria-label": `role of ${u.name}` }, roles.map(x => el("option", { value: x, selected: x === u.role, text: x })));
    role.addEventListener("change", async () => done(await api("PATCH", `/users/${encodeURIComponent(u.name)}`, { role: role.value }), `${u.name} is ${role.value} now.`));
    const toggle = el("button", { type: "button", class: u.disabled ? "enable" : "danger disable", text: u.disabled ? "Enable" : "Disable" });
    toggle.addEventListener("click", async () => done(await api("PATCH", `/users/${encodeURIComponent(u.name)}`, { disabled: !u.disabled }), `${u.name} ${u.disabled ? "enabled" : "disabled"}.`));
    const pw = el("input", { type: "password", class: "new-password", placeholder: "new password", autocomplete: "new-password", "aria-label": `new password of ${u.name}`, maxlength: 1024 });
    const reset = el("button", { type: "button", class: "reset", text: "Set password" });
    reset.addEventListener("click", async () => done(await api("PATCH", `/users/${encodeURIComponent(u.name)}`, { password: pw.value }), `${u.name}'s password is set; their sessions ended.`));
    return el("tr", { "data-user": u.name }, el("td", { text: u.name }), el("td", {}, role),
      el("td", { text: u.disabled ? "disabled" : "enabled" }), el("td", { text: u.created_at }),
      el("td", {}, el("div", { class: "actions" }, toggle, pw, reset)));
  };
  const add = el("form", { id: "add-user", class: "filters" },
    el("label", {}, "name", el("input", { name: "name", required: true, maxlength: 64, autocomplete: "off" })),
    el("label", {}, "password", el("input", { name: "password", type: "password", required: true, autocomplete: "new-password", maxlength: 1024 })),
    el("label", {}, "role", el("select", { name: "role" }, roles.map(x => el("option", { value: x, text: x })))),
    el("button", { type: "submit", text: "Add user" }));
  add.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    done(await api("POST", "/users", { name: add.name.value, password: add.password.value, role: add.role.value }), `${add.name.value} added.`);
  });
  const shown = el("div", { id: "new-token", role: "status" });
  const mint = el("form", { id: "add-token", class: "filters" },
    el("label", {}, "name", el("input", { name: "name", required: true, maxlength: 64, autocomplete: "off" })),
    el("label", {}, "role", el("select", { name: "role" }, roles.map(x => el("option", { value: x, text: x })))),
    el("button", { type: "submit", text: "Create token" }));
  mint.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/tokens", { name: mint.name.value, role: mint.role.value });
    if (!r.ok) { shown.replaceChildren(problem(r)); return; }
    // the only time the value is shown: not kept anywhere in the page once it is left
    shown.replaceChildren(el("div", { class: "card wide" },
      el("p", { text: `Token ${r.data.name} (${r.data.role}): copy it now, it is not shown again.` }),
      el("code", { id: "token-value", text: r.data.token })));
    const list = await api("GET", "/tokens");
    if (list.ok) tokenTable.replaceChildren(tokensTable(list.data.items));
  });
  const tokensTable = (items) => table([["Id", t => t.id], ["Name", t => t.name], ["Role", t => t.role], ["Created by", t => t.created_by],
    ["Created", t => t.created_at], ["Last used", t => t.last_used_at], ["State", t => t.revoked_at ? `revoked ${t.revoked_at}` : "active"],
    ["", t => t.revoked_at ? "" : el("button", { type: "button", class: "danger revoke", "data-token": t.id, text: "Revoke", onclick: async () => done(await api("DELETE", `/tokens/${encodeURIComponent(t.id)}`), `Token ${t.id} revoked.`) })]], items);
  const tokenTable = el("div", { id: "tokens" }, tokens.ok ? tokensTable(tokens.data.items) : problem(tokens));
  main(el("h1", { text: "Users and tokens" }), result,
    el("section", {}, el("h2", { text: "Users" }),
      el("div", { class: "scroll" }, el("table", { id: "users" },
        el("thead", {}, el("tr", {}, ["Name", "Role", "State", "Created", ""].map(h => el("th", { text: h })))),
        el("tbody", {}, users.data.items.map(userRow)))),
      el("h3", { text: "Add a user" }), add),
    el("section", {}, el("h2", { text: "API tokens" }), el("p", { class: "muted", text: "For scripts: Authorization: Bearer <token>. Only a hash is kept." }),
      tokenTable, el("h3", { text: "Create a token" }), mint, shown),
    el("p", { class: "muted", text: "Every change here is in the audit log." }));
}

// -- mappings and connections --------------------------------------------------------------

async function mappingsPage() {
  const [maps, conns] = await Promise.all([api("GET", "/mappings"), api("GET", "/connections")]);
  const reloadBox = (r, interval) => el("div", { id: "reload" },
    el("p", { class: r.ok ? "ok" : "error", text: r.at
      ? `Last reload ${r.at}: ${r.ok ? (r.changed.length ? "taken, changed " + r.changed.join(", ") : "taken, no mapping changed") : "refused; the previous version keeps running"}.`
      : "Not reloaded since the hub started." }),
    r.problems && r.problems.length ? el("ul", { id: "reload-problems" }, r.problems.map(p => el("li", { class: "error", text: p }))) : null,
    el("p", { class: "muted", text: interval > 0 ? `hub.yaml and the mappings are checked for changes every ${interval} s.` : "Reloading is off (HUB_RELOAD_INTERVAL_S=0)." }));
  const checkCell = (c) => {
    if (!can("operator")) return "";
    const out = el("span", { class: "check-result", role: "status" });
    const go = el("button", { type: "button", class: "check", "data-connection": c.name, text: "Check" });
    go.addEventListener("click", async () => {
      go.disabled = true; out.textContent = " checking…"; out.className = "check-result muted";
      const r = await api("POST", `/connections/${encodeURIComponent(c.name)}/check`);
      go.disabled = false;
      if (!r.ok) { out.replaceChildren(problem(r)); return; }
      out.className = `check-result ${r.data.ok ? "ok" : "error"}`;
      out.textContent = ` ${r.data.ok ? "ok" : "failed"}: ${r.data.message}`;
    });
    return el("span", {}, go, out);
  };
  main(el("h1", { text: "Mappings and connections" }),
    el("section", {}, el("h2", { text: "Mappings live" }),
      maps.ok ? [reloadBox(maps.data.reload, maps.data.reload_interval_s),
        el("div", { id: "mappings" }, table([["Mapping", m => m.name], ["Version", m => m.version], ["From", m => m.source], ["To", m => m.target],
          ["Routes", m => m.routes.join(", ")], ["File", m => m.file]], maps.data.items))] : problem(maps)),
    el("section", {}, el("h2", { text: "Connections" }),
      conns.ok ? el("div", { id: "connections" }, table([["Connection", c => c.name], ["Connector", c => c.connector], ["System", c => c.system],
        ["Does", c => c.kinds.join(", ") + (c.idle ? " (idle: no enabled route uses it)" : "")], ["Routes", c => [...c.inbound_routes, ...c.outbound_routes].join(", ")],
        ["Options", c => Object.entries(c.options).filter(([, v]) => v !== null && v !== "" && !(typeof v === "object" && !Object.keys(v).length)).map(([k, v]) => `${k}: ${short(v, 80)}`).join("; ")],
        ["", checkCell]], conns.data.items)) : problem(conns)));
}

// -- order journey ------------------------------------------------------------------------------

function uiDeadLetter(href) {
  // the API's /api/deadletters/{id} as the page of that failed message
  const id = String(href || "").split("/").pop();
  return el("a", { class: "dead-letter-link", href: `/ui/failed/${id}`, text: decodeURIComponent(id).slice(0, 12) + "…" });
}

async function ordersPage() {
  const params = new URLSearchParams(location.search);
  const ref = (params.get("ref") || "").trim();
  const form = el("form", { id: "order-search", class: "filters" },
    el("label", {}, "Order number, any system's id, golden id or customer e-mail",
      el("input", { name: "ref", value: ref, required: true, maxlength: 255, placeholder: "#1001, SO-17, ord_…, ann@example.com" })),
    el("button", { type: "submit", text: "Find" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.assign("/ui/orders?ref=" + encodeURIComponent(form.ref.value.trim()));
  });
  const head = [el("h1", { text: "Order journey" }), form];
  if (!ref) { main(...head, el("p", { class: "muted", text: "Every event about one order, across systems, in time order." })); return; }
  if (ref.includes("@")) {
    const r = await api("GET", "/orders?email=" + encodeURIComponent(ref));
    if (!r.ok) { main(...head, problem(r)); return; }
    main(...head, el("h2", { text: `Orders of ${ref}` }),
      r.data.items.length ? el("div", { id: "orders" }, table([["Order", o => el("a", { class: "order-link", href: "/ui/orders?ref=" + encodeURIComponent(o.golden_id), text: o.number || o.golden_id })],
        ["Golden id", o => o.golden_id], ["Status", o => o.status], ["Last event", o => o.last_at]], r.data.items))
        : el("p", { class: "muted", id: "no-orders", text: "No order of that e-mail is known." }));
    return;
  }
  const r = await api("GET", "/orders/" + encodeURIComponent(ref));
  if (!r.ok) { main(...head, problem(r)); return; }
  const o = r.data;
  main(...head,
    el("h2", { text: `Order ${o.number || o.golden_id}` }),
    el("dl", { class: "facts", id: "order-facts" },
      [["Golden id", o.golden_id], ["Number", o.number], ["Status now", o.status], ["Customer e-mail", o.email]]
        .filter(f => f[1]).map(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])),
    el("section", {}, el("h3", { text: "Its id in every system" }),
      el("div", { id: "order-ids" }, table([["System", i => i.system], ["Id", i => i.id], ["Known from", i => i.from]], o.ids))),
    el("section", {}, el("h3", { text: "Every event, in time order" }),
      el("div", { id: "journey" }, el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, ["At", "Step", "Status", "What happened", ""].map(h => el("th", { text: h })))),
        el("tbody", {}, o.events.map(e => el("tr", { class: `step ${e.step}`, "data-step": e.step },
          el("td", { text: e.at }), el("td", {}, el("span", { class: `badge ${e.step === "dead_letter" ? "open" : ""}`, text: e.step.replace("_", " ") })),
          el("td", { text: e.status || "" }), el("td", { text: e.summary || "" }),
          el("td", {}, e.dead_letter ? uiDeadLetter(e.dead_letter) : "")))))))),
    o.dead_letters.length ? el("section", {}, el("h3", { text: "Its dead letters" }),
      el("div", { id: "order-dead-letters" }, table([["Failed at", d => d.failed_at], ["Stage", d => d.stage], ["Destination", d => d.destination || d.connection],
        ["Status", d => el("span", { class: `badge ${d.status}`, text: d.status })], ["Error", d => short(d.error, 160)], ["", d => uiDeadLetter(d.href)]], o.dead_letters))) : null);
}

// -- the frame ------------------------------------------------------------------------------

async function start() {
  const page = document.body.dataset.page;
  if (page === "login") { loginPage(); return; }
  const who = await api("GET", "/auth/me");
  if (!who.ok) { main(problem(who)); return; }
  me = who.data;
  const links = [["/ui/", "Overview"], ["/ui/failed", "Failed messages"], ["/ui/orders", "Orders"], ["/ui/mdm", "Master data"], ["/ui/mappings", "Mappings and connections"]];
  if (can("admin")) links.push(["/ui/users", "Users and tokens"], ["/ui/audit", "Audit log"]);
  document.getElementById("nav").replaceChildren(...links.map(([href, text]) => el("a", { href, text })));
  const logout = el("button", { id: "logout", type: "button", class: "link", text: "Log out" });
  logout.addEventListener("click", async () => { await api("POST", "/auth/logout"); location.assign("/ui/login"); });
  document.getElementById("who").replaceChildren(el("span", { id: "role", text: `${me.name || me.actor} (${me.role})` }), " ", logout);
  const pages = { overview: overviewPage, failed: failedPage, message: messagePage, audit: auditPage,
    mdm: mdmPage, golden: goldenPage, users: usersPage,
    mappings: mappingsPage, orders: ordersPage };
  await pages[page]();
  if (page === "overview") setInterval(overviewPage, 5000);
}

document.addEventListener("DOMContentLoaded", start);
